/* event - service events between the application's civ_event_t and the wire.
 *
 * Packing turns a borrowed civ_event_t into the serialized ServiceEvent that
 * the hub stores byte for byte: the library sets source to the client's
 * agency, generates a random UUIDv4 event_id when none is given, fills
 * occurred_at with now when it is 0, and checks the event with the codec's
 * rules (plus UTF-8 in string fields, which proto3 requires of every reader)
 * so that a bad event is refused here rather than by the hub.
 *
 * Decoding turns the bytes of a Delivery into a civ_delivery_t that lives in
 * one allocation - the struct, the header array, the raw bytes, the payload
 * and every string - so civ_delivery_destroy is a single free().
 */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/random.h>

#include "sdk.h"

void sdk_rand_init(sdk_rand_t *rnd)
{
    rnd->used = SDK_RAND_POOL;
}

static int s_rand_fill(sdk_rand_t *rnd)
{
    size_t got = 0;
    while (got < SDK_RAND_POOL) {
        ssize_t n = getrandom(rnd->pool + got, SDK_RAND_POOL - got, 0);
        if (n < 0) {
            if (errno == EINTR)
                continue;
            return CIV_E_INTERNAL;
        }
        got += (size_t)n;
    }
    rnd->used = 0;
    return CIV_OK;
}

int sdk_uuid4(sdk_rand_t *rnd, char out[SDK_UUID_LEN + 1])
{
    if (rnd->used + 16 > SDK_RAND_POOL && s_rand_fill(rnd) != CIV_OK)
        return CIV_E_INTERNAL;
    uint8_t b[16];
    memcpy(b, rnd->pool + rnd->used, sizeof b);
    /* Used bytes are wiped so that no later id can be predicted from memory. */
    memset(rnd->pool + rnd->used, 0, sizeof b);
    rnd->used += sizeof b;
    b[6] = (uint8_t)((b[6] & 0x0f) | 0x40); /* version 4 */
    b[8] = (uint8_t)((b[8] & 0x3f) | 0x80); /* RFC 4122 variant */
    static const char hex[] = "0123456789abcdef";
    char *p = out;
    for (int i = 0; i < 16; i++) {
        if (i == 4 || i == 6 || i == 8 || i == 10)
            *p++ = '-';
        *p++ = hex[b[i] >> 4];
        *p++ = hex[b[i] & 0x0f];
    }
    *p = '\0';
    return CIV_OK;
}

/* Well-formed UTF-8 (no overlongs, no surrogates, at most U+10FFFF). */
static bool s_utf8_valid(const char *str)
{
    const unsigned char *s = (const unsigned char *)str;
    while (*s) {
        unsigned char c = *s;
        size_t n;
        uint32_t cp;
        if (c < 0x80) {
            s++;
            continue;
        } else if ((c & 0xe0) == 0xc0) {
            n = 1;
            cp = c & 0x1f;
        } else if ((c & 0xf0) == 0xe0) {
            n = 2;
            cp = c & 0x0f;
        } else if ((c & 0xf8) == 0xf0) {
            n = 3;
            cp = c & 0x07;
        } else {
            return false;
        }
        for (size_t i = 1; i <= n; i++) {
            if ((s[i] & 0xc0) != 0x80)
                return false; /* also stops at the NUL */
            cp = (cp << 6) | (s[i] & 0x3f);
        }
        static const uint32_t min_cp[4] = {0, 0x80, 0x800, 0x10000};
        if (cp < min_cp[n] || cp > 0x10ffff || (cp >= 0xd800 && cp <= 0xdfff))
            return false;
        s += n + 1;
    }
    return true;
}

static const char *s_str(const char *s)
{
    return s ? s : "";
}

int sdk_event_pack(const civ_event_t *event, const char *source, sdk_rand_t *rnd, uint8_t **out,
                   size_t *out_len, char event_id[CIV_ID_MAX + 1], char *why, size_t why_len)
{
    *out = NULL;
    *out_len = 0;
    if (!event) {
        snprintf(why, why_len, "event is NULL");
        return CIV_E_INVALID;
    }
    if (event->n_headers > CODEC_HEADERS_MAX) {
        snprintf(why, why_len, "more than %d headers", CODEC_HEADERS_MAX);
        return CIV_E_INVALID;
    }
    if (event->n_headers && !event->headers) {
        snprintf(why, why_len, "headers is NULL but n_headers is %zu", event->n_headers);
        return CIV_E_INVALID;
    }
    if (event->payload_len && !event->payload) {
        snprintf(why, why_len, "payload is NULL but payload_len is %zu", event->payload_len);
        return CIV_E_INVALID;
    }
    if (event->event_id && event->event_id[0]) {
        if (strlen(event->event_id) > CIV_ID_MAX) {
            snprintf(why, why_len, "event_id is longer than %d bytes", CIV_ID_MAX);
            return CIV_E_INVALID;
        }
        snprintf(event_id, CIV_ID_MAX + 1, "%s", event->event_id);
    } else if (sdk_uuid4(rnd, event_id) != CIV_OK) {
        snprintf(why, why_len, "no random bytes for an event id: %s", strerror(errno));
        return CIV_E_INTERNAL;
    }

    /* protobuf-c wants non-const pointers; it only reads them when packing. */
    Civibus__V1__Header hdrs[CODEC_HEADERS_MAX];
    Civibus__V1__Header *hdr_ptrs[CODEC_HEADERS_MAX];
    for (size_t i = 0; i < event->n_headers; i++) {
        civibus__v1__header__init(&hdrs[i]);
        hdrs[i].key = (char *)s_str(event->headers[i].key);
        hdrs[i].value = (char *)s_str(event->headers[i].value);
        hdr_ptrs[i] = &hdrs[i];
    }
    Civibus__V1__ServiceEvent ev = CIVIBUS__V1__SERVICE_EVENT__INIT;
    ev.event_id = event_id;
    ev.source = (char *)s_str(source);
    ev.type = (char *)s_str(event->type);
    ev.subject = (char *)s_str(event->subject);
    ev.occurred_at = event->occurred_at ? event->occurred_at : codec_now_us();
    ev.content_type = (char *)s_str(event->content_type);
    ev.payload.data = (uint8_t *)event->payload;
    ev.payload.len = event->payload_len;
    ev.correlation_id = (char *)s_str(event->correlation_id);
    ev.n_headers = event->n_headers;
    ev.headers = event->n_headers ? hdr_ptrs : NULL;

    if (!codec_event_valid(&ev, why, why_len))
        return CIV_E_INVALID;
    const char *strings[] = {ev.event_id, ev.subject, ev.content_type, ev.correlation_id};
    static const char *const names[] = {"event_id", "subject", "content_type", "correlation_id"};
    for (size_t i = 0; i < sizeof strings / sizeof strings[0]; i++) {
        if (!s_utf8_valid(strings[i])) {
            snprintf(why, why_len, "%s is not valid UTF-8", names[i]);
            return CIV_E_INVALID;
        }
    }
    for (size_t i = 0; i < ev.n_headers; i++) {
        if (!s_utf8_valid(hdrs[i].key) || !s_utf8_valid(hdrs[i].value)) {
            snprintf(why, why_len, "header %zu is not valid UTF-8", i);
            return CIV_E_INVALID;
        }
    }

    size_t len = civibus__v1__service_event__get_packed_size(&ev);
    if (len > SDK_EVENT_MAX) {
        snprintf(why, why_len, "event of %zu bytes is over the %zu-byte limit", len, SDK_EVENT_MAX);
        return CIV_E_TOO_LARGE;
    }
    uint8_t *buf = malloc(len ? len : 1);
    if (!buf) {
        snprintf(why, why_len, "no memory for an event of %zu bytes", len);
        return CIV_E_NOMEM;
    }
    civibus__v1__service_event__pack(&ev, buf);
    *out = buf;
    *out_len = len;
    return CIV_OK;
}

/* Copy a string into the delivery's block and advance the cursor. */
static const char *s_put(char **cursor, const char *s)
{
    size_t n = strlen(s) + 1;
    char *dst = *cursor;
    memcpy(dst, s, n);
    *cursor += n;
    return dst;
}

int sdk_delivery_new(const char *subscription, const Civibus__V1__Delivery *from, civ_delivery_t **out)
{
    *out = NULL;
    const uint8_t *raw = from->event.data;
    size_t raw_len = from->event.len;
    codec_event_t *ev = NULL;
    if (codec_event_decode(raw, raw_len, SDK_MAX_FRAME, &ev) != CODEC_OK)
        return CIV_E_PROTOCOL;

    size_t strings = strlen(subscription) + strlen(ev->event_id) + strlen(ev->source) + strlen(ev->type) +
                     strlen(ev->subject) + strlen(ev->content_type) + strlen(ev->correlation_id) + 7;
    for (size_t i = 0; i < ev->n_headers; i++)
        strings += strlen(ev->headers[i]->key) + strlen(ev->headers[i]->value) + 2;
    size_t head = sizeof(civ_delivery_t) + ev->n_headers * sizeof(civ_header_t);
    civ_delivery_t *d = malloc(head + raw_len + ev->payload.len + strings);
    if (!d) {
        codec_event_free(&ev);
        return CIV_E_NOMEM;
    }
    civ_header_t *hdrs = (civ_header_t *)(d + 1);
    uint8_t *bytes = (uint8_t *)d + head;
    memcpy(bytes, raw, raw_len);
    if (ev->payload.len)
        memcpy(bytes + raw_len, ev->payload.data, ev->payload.len);
    char *cursor = (char *)bytes + raw_len + ev->payload.len;

    d->seq = from->seq;
    d->received_at = from->received_at;
    d->has_chain = from->chain.len == sizeof d->chain;
    if (d->has_chain)
        memcpy(d->chain, from->chain.data, sizeof d->chain);
    else
        memset(d->chain, 0, sizeof d->chain);
    /* A hub before Delivery.attempt sends none: a first delivery, as far as
     * anyone can tell. Replays are no delivery attempt at all. */
    d->attempt = from->attempt ? from->attempt : subscription[0] ? 1 : 0;
    d->raw = bytes;
    d->raw_len = raw_len;
    d->subscription = s_put(&cursor, subscription);
    civ_event_t *e = &d->event;
    e->event_id = s_put(&cursor, ev->event_id);
    e->source = s_put(&cursor, ev->source);
    e->type = s_put(&cursor, ev->type);
    e->subject = s_put(&cursor, ev->subject);
    e->occurred_at = ev->occurred_at;
    e->content_type = s_put(&cursor, ev->content_type);
    e->payload = bytes + raw_len;
    e->payload_len = ev->payload.len;
    e->correlation_id = s_put(&cursor, ev->correlation_id);
    for (size_t i = 0; i < ev->n_headers; i++) {
        hdrs[i].key = s_put(&cursor, ev->headers[i]->key);
        hdrs[i].value = s_put(&cursor, ev->headers[i]->value);
    }
    e->headers = ev->n_headers ? hdrs : NULL;
    e->n_headers = ev->n_headers;
    codec_event_free(&ev);
    *out = d;
    return CIV_OK;
}

void civ_delivery_destroy(civ_delivery_t **self_p)
{
    if (self_p) {
        free(*self_p);
        *self_p = NULL;
    }
}
