/* codec - decoding and validation of civibus wire messages.
 *
 * The capped allocator is the only defence against a small frame that asks
 * protobuf-c for a large amount of memory; it counts what one unpack has taken
 * and fails the unpack once the budget is spent. free() needs no accounting
 * because the budget belongs to one call.
 */
#include "codec.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

/* Worst case protobuf-c expands input: struct per submessage, pointer arrays
 * for repeated fields, NUL per string. 8x plus slack covers legitimate input. */
#define ALLOC_FACTOR 8
#define ALLOC_SLACK 65536

typedef struct {
    size_t used;
    size_t cap;
} s_budget_t;

static void *s_alloc(void *data, size_t size)
{
    s_budget_t *b = data;
    if (size > b->cap - b->used)
        return NULL;
    b->used += size;
    return malloc(size);
}

static void s_free(void *data, void *ptr)
{
    (void)data;
    free(ptr);
}

static ProtobufCAllocator s_free_allocator = {.alloc = s_alloc, .free = s_free, .allocator_data = NULL};

static int s_decode(const ProtobufCMessageDescriptor *desc, const uint8_t *data, size_t len,
                    size_t max_len, ProtobufCMessage **out)
{
    *out = NULL;
    if (len > max_len)
        return CODEC_TOO_LARGE;
    s_budget_t budget = {.used = 0, .cap = len * ALLOC_FACTOR + ALLOC_SLACK};
    ProtobufCAllocator a = {.alloc = s_alloc, .free = s_free, .allocator_data = &budget};
    *out = protobuf_c_message_unpack(desc, &a, len, data);
    return *out ? CODEC_OK : CODEC_MALFORMED;
}

static void s_release(ProtobufCMessage **msg_p)
{
    if (*msg_p)
        protobuf_c_message_free_unpacked(*msg_p, &s_free_allocator);
    *msg_p = NULL;
}

int codec_client_decode(const uint8_t *data, size_t len, size_t max_len, codec_client_msg_t **out)
{
    return s_decode(&civibus__v1__client_message__descriptor, data, len, max_len,
                    (ProtobufCMessage **)out);
}

void codec_client_free(codec_client_msg_t **msg_p)
{
    if (msg_p)
        s_release((ProtobufCMessage **)msg_p);
}

int codec_hub_decode(const uint8_t *data, size_t len, size_t max_len, codec_hub_msg_t **out)
{
    return s_decode(&civibus__v1__hub_message__descriptor, data, len, max_len,
                    (ProtobufCMessage **)out);
}

void codec_hub_free(codec_hub_msg_t **msg_p)
{
    if (msg_p)
        s_release((ProtobufCMessage **)msg_p);
}

int codec_event_decode(const uint8_t *data, size_t len, size_t max_len, codec_event_t **out)
{
    return s_decode(&civibus__v1__service_event__descriptor, data, len, max_len,
                    (ProtobufCMessage **)out);
}

void codec_event_free(codec_event_t **ev_p)
{
    if (ev_p)
        s_release((ProtobufCMessage **)ev_p);
}

static bool s_labels_valid(const char *s, size_t max, bool (*ok)(char))
{
    size_t len = strlen(s);
    if (len == 0 || len > max || s[0] == '.' || s[len - 1] == '.')
        return false;
    for (size_t i = 0; i < len; i++) {
        if (s[i] == '.') {
            if (s[i + 1] == '.')
                return false;
        } else if (!ok(s[i])) {
            return false;
        }
    }
    return true;
}

static bool s_agency_char(char c)
{
    return (c >= 'a' && c <= 'z') || (c >= '0' && c <= '9') || c == '-';
}

static bool s_type_char(char c)
{
    return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') || c == '-' ||
           c == '_';
}

bool codec_agency_valid(const char *id)
{
    return id && s_labels_valid(id, CODEC_AGENCY_MAX, s_agency_char);
}

bool codec_type_valid(const char *type)
{
    return type && s_labels_valid(type, CODEC_TYPE_MAX, s_type_char);
}

bool codec_filter_valid(const char *filter)
{
    if (!filter)
        return false;
    if (strcmp(filter, "*") == 0)
        return true;
    size_t len = strlen(filter);
    if (len > 2 && len <= CODEC_TYPE_MAX && strcmp(filter + len - 2, ".*") == 0) {
        char prefix[CODEC_TYPE_MAX + 1];
        memcpy(prefix, filter, len - 2);
        prefix[len - 2] = '\0';
        return codec_type_valid(prefix);
    }
    return codec_type_valid(filter);
}

bool codec_name_valid(const char *name)
{
    if (!name)
        return false;
    size_t len = strlen(name);
    if (len == 0 || len > CODEC_NAME_MAX)
        return false;
    for (size_t i = 0; i < len; i++)
        if (!s_type_char(name[i]) && name[i] != '.')
            return false;
    return true;
}

bool codec_filter_match(const char *filter, const char *type, size_t type_len)
{
    size_t flen = strlen(filter);
    if (flen == 1 && filter[0] == '*')
        return true;
    if (flen >= 2 && filter[flen - 1] == '*' && filter[flen - 2] == '.') {
        /* "a.*": the type must start with "a." and have something after it */
        size_t plen = flen - 1;
        return type_len > plen && memcmp(type, filter, plen) == 0;
    }
    return flen == type_len && memcmp(filter, type, flen) == 0;
}

bool codec_event_canonical(const codec_event_t *ev, size_t raw_len)
{
    return civibus__v1__service_event__get_packed_size(ev) == raw_len;
}

static bool s_len_ok(const char *s, size_t max)
{
    return s == NULL || strlen(s) <= max;
}

/* protobuf-c does not check that string fields are UTF-8; stricter decoders
 * (Go, Python, Java) refuse such events, so the hub must not accept them. */
bool codec_utf8_valid(const char *s)
{
    const unsigned char *p = (const unsigned char *)(s ? s : "");
    while (*p) {
        int n;
        uint32_t cp;
        if (*p < 0x80) {
            p++;
            continue;
        } else if ((*p & 0xE0) == 0xC0) {
            n = 1;
            cp = *p & 0x1F;
        } else if ((*p & 0xF0) == 0xE0) {
            n = 2;
            cp = *p & 0x0F;
        } else if ((*p & 0xF8) == 0xF0) {
            n = 3;
            cp = *p & 0x07;
        } else {
            return false;
        }
        p++;
        for (int i = 0; i < n; i++, p++) {
            if ((*p & 0xC0) != 0x80)
                return false;
            cp = (cp << 6) | (*p & 0x3F);
        }
        /* overlong forms, surrogates, beyond Unicode */
        if ((n == 1 && cp < 0x80) || (n == 2 && cp < 0x800) || (n == 3 && cp < 0x10000) ||
            (cp >= 0xD800 && cp <= 0xDFFF) || cp > 0x10FFFF)
            return false;
    }
    return true;
}

bool codec_event_valid(const codec_event_t *ev, char *reason, size_t reason_len)
{
    const char *why = NULL;
    if (!ev->event_id || !ev->event_id[0])
        why = "event_id is empty";
    else if (!s_len_ok(ev->event_id, CODEC_ID_MAX))
        why = "event_id is longer than 128 bytes";
    else if (!codec_type_valid(ev->type))
        why = "type is not a dotted name of [A-Za-z0-9_-] up to 128 bytes";
    else if (!s_len_ok(ev->subject, CODEC_SUBJECT_MAX))
        why = "subject is longer than 256 bytes";
    else if (!s_len_ok(ev->content_type, CODEC_CTYPE_MAX))
        why = "content_type is longer than 128 bytes";
    else if (!s_len_ok(ev->correlation_id, CODEC_ID_MAX))
        why = "correlation_id is longer than 128 bytes";
    else if (ev->n_headers > CODEC_HEADERS_MAX)
        why = "more than 32 headers";
    else if (ev->occurred_at < 0)
        why = "occurred_at is negative";
    else if (!codec_utf8_valid(ev->event_id) || !codec_utf8_valid(ev->source) || !codec_utf8_valid(ev->subject) ||
             !codec_utf8_valid(ev->content_type) || !codec_utf8_valid(ev->correlation_id))
        why = "a string field is not valid UTF-8";
    for (size_t i = 0; !why && i < ev->n_headers; i++) {
        const Civibus__V1__Header *h = ev->headers[i];
        if (!h->key || !h->key[0])
            why = "a header has an empty key";
        else if (!s_len_ok(h->key, CODEC_HEADER_MAX) || !s_len_ok(h->value, CODEC_HEADER_MAX))
            why = "a header key or value is longer than 1024 bytes";
        else if (!codec_utf8_valid(h->key) || !codec_utf8_valid(h->value))
            why = "a header key or value is not valid UTF-8";
    }
    if (why && reason && reason_len)
        snprintf(reason, reason_len, "%s", why);
    return why == NULL;
}

const char *codec_error_name(Civibus__V1__ErrorCode code)
{
    switch (code) {
    case CIVIBUS__V1__ERROR_CODE__OK: return "ok";
    case CIVIBUS__V1__ERROR_CODE__NOT_AUTHORISED: return "not_authorised";
    case CIVIBUS__V1__ERROR_CODE__MALFORMED: return "malformed";
    case CIVIBUS__V1__ERROR_CODE__TOO_LARGE: return "too_large";
    case CIVIBUS__V1__ERROR_CODE__STORAGE_FULL: return "storage_full";
    case CIVIBUS__V1__ERROR_CODE__UNAVAILABLE: return "unavailable";
    case CIVIBUS__V1__ERROR_CODE__INTERNAL: return "internal";
    case CIVIBUS__V1__ERROR_CODE__UNKNOWN_SUBSCRIPTION: return "unknown_subscription";
    case CIVIBUS__V1__ERROR_CODE__BAD_REQUEST: return "bad_request";
    case CIVIBUS__V1__ERROR_CODE__UNSUPPORTED_VERSION: return "unsupported_version";
    case CIVIBUS__V1__ERROR_CODE__BAD_SIGNATURE: return "bad_signature";
    case CIVIBUS__V1__ERROR_CODE__BEHIND_RETENTION: return "behind_retention";
    default: return "unknown";
    }
}

int64_t codec_now_us(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_REALTIME, &ts);
    return (int64_t)ts.tv_sec * 1000000 + ts.tv_nsec / 1000;
}

int64_t codec_mono_ms(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}
