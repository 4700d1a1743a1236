/* jsonev - JSON lines <-> civibus events, ISO 8601 times, base64.
 *
 * jansson validates every JSON text; payloads are then cut out of the input
 * text and stripped of whitespace by a small scanner that trusts that
 * validation (s_skip_value, s_minify), so numbers keep their exact digits.
 * Everything here is bounded by its input: the caller caps the line length,
 * jansson caps nesting depth, and the scanner keeps no stack.
 * OpenSSL is used for base64 and random UUIDs only and stays in this file.
 */
#include "jsonev.h"

#include <inttypes.h>
#include <jansson.h>
#include <limits.h>
#include <openssl/evp.h>
#include <openssl/rand.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include "codec.h"

struct jsonev_in {
    json_t *root;          /* the parsed line; strings of event point into it */
    civ_event_t event;
    civ_header_t *headers; /* event.n_headers entries */
    void *payload;         /* compact JSON or decoded base64 */
    char event_id[JSONEV_UUID_LEN + 1];
};

/* --- UTF-8 ------------------------------------------------------------------ */

/* Length of the valid UTF-8 sequence at s (n bytes left), or 0 if invalid. */
static size_t s_utf8_seq(const unsigned char *s, size_t n)
{
    unsigned c = s[0];
    size_t len;
    unsigned min;
    if (c < 0x80)
        return 1;
    if (c >= 0xC2 && c <= 0xDF) {
        len = 2;
        min = 0x80;
    } else if (c >= 0xE0 && c <= 0xEF) {
        len = 3;
        min = 0x800;
    } else if (c >= 0xF0 && c <= 0xF4) {
        len = 4;
        min = 0x10000;
    } else {
        return 0;
    }
    if (n < len)
        return 0;
    unsigned cp = c & (0x7F >> len);
    for (size_t i = 1; i < len; i++) {
        if ((s[i] & 0xC0) != 0x80)
            return 0;
        cp = (cp << 6) | (s[i] & 0x3F);
    }
    if (cp < min || cp > 0x10FFFF || (cp >= 0xD800 && cp <= 0xDFFF))
        return 0;
    return len;
}

static bool s_utf8_valid(const char *s)
{
    const unsigned char *p = (const unsigned char *)s;
    size_t n = strlen(s);
    while (n) {
        size_t k = s_utf8_seq(p, n);
        if (!k)
            return false;
        p += k;
        n -= k;
    }
    return true;
}

/* A JSON string of s, with U+FFFD for each byte that is not valid UTF-8. */
static json_t *s_jstr(const char *s)
{
    if (!s)
        s = "";
    if (s_utf8_valid(s))
        return json_string(s);
    size_t n = strlen(s);
    char *clean = malloc(n * 3 + 1);
    if (!clean)
        return NULL;
    const unsigned char *p = (const unsigned char *)s;
    char *q = clean;
    while (n) {
        size_t k = s_utf8_seq(p, n);
        if (k) {
            memcpy(q, p, k);
            q += k;
        } else {
            memcpy(q, "\xEF\xBF\xBD", 3);
            q += 3;
            k = 1;
        }
        p += k;
        n -= k;
    }
    *q = '\0';
    json_t *j = json_string(clean);
    free(clean);
    return j;
}

/* --- JSON text scanning -------------------------------------------------------- */

static const char *s_skip_ws(const char *p, const char *end)
{
    while (p < end && (*p == ' ' || *p == '\t' || *p == '\n' || *p == '\r'))
        p++;
    return p;
}

/* p is at the opening quote of a valid JSON string; return past its end. */
static const char *s_skip_string(const char *p, const char *end)
{
    for (p++; p < end; p++) {
        if (*p == '\\')
            p++;
        else if (*p == '"')
            return p + 1;
    }
    return end;
}

/* p is at the start of a valid JSON value; return past its end. */
static const char *s_skip_value(const char *p, const char *end)
{
    if (p >= end)
        return end;
    if (*p == '"')
        return s_skip_string(p, end);
    if (*p == '{' || *p == '[') {
        size_t depth = 0;
        while (p < end) {
            if (*p == '"') {
                p = s_skip_string(p, end);
                continue;
            }
            if (*p == '{' || *p == '[')
                depth++;
            else if ((*p == '}' || *p == ']') && --depth == 0)
                return p + 1;
            p++;
        }
        return end;
    }
    while (p < end && !strchr(",}] \t\n\r", *p))
        p++;
    return p;
}

/* The text of member number index of the valid JSON object text. */
static bool s_member_span(const char *text, size_t len, size_t index, const char **start, size_t *span)
{
    const char *end = text + len;
    const char *p = s_skip_ws(text, end);
    if (p >= end || *p != '{')
        return false;
    p++;
    for (size_t i = 0;; i++) {
        p = s_skip_ws(p, end);
        if (p >= end || *p != '"')
            return false;
        p = s_skip_ws(s_skip_string(p, end), end);
        if (p >= end || *p != ':')
            return false;
        p = s_skip_ws(p + 1, end);
        const char *v = p;
        p = s_skip_value(p, end);
        if (i == index) {
            *start = v;
            *span = (size_t)(p - v);
            return true;
        }
        p = s_skip_ws(p, end);
        if (p >= end || *p != ',')
            return false;
        p++;
    }
}

/* Copy the valid JSON text without whitespace outside strings. */
static char *s_minify(const char *text, size_t len, size_t *out_len)
{
    char *out = malloc(len + 1);
    if (!out)
        return NULL;
    char *q = out;
    const char *end = text + len;
    for (const char *p = text; p < end;) {
        if (*p == '"') {
            const char *s = s_skip_string(p, end);
            memcpy(q, p, (size_t)(s - p));
            q += s - p;
            p = s;
        } else if (*p == ' ' || *p == '\t' || *p == '\n' || *p == '\r') {
            p++;
        } else {
            *q++ = *p++;
        }
    }
    *q = '\0';
    *out_len = (size_t)(q - out);
    return out;
}

/* jansson flags for validating a payload: any value, integers of any size
 * (their text is kept, only validity matters), NUL escapes allowed. */
#define S_JSON_FLAGS (JSON_DECODE_ANY | JSON_DECODE_INT_AS_REAL | JSON_ALLOW_NUL)

static void s_json_reason(const json_error_t *e, const char *what, char *reason, size_t reason_len)
{
    snprintf(reason, reason_len, "%snot valid JSON: %s (column %d)", what, e->text, e->column);
}

int jsonev_json_compact(const char *text, size_t len, char **out, size_t *out_len, char *reason,
                        size_t reason_len)
{
    json_error_t e;
    json_t *v = json_loadb(text, len, S_JSON_FLAGS, &e);
    if (!v) {
        s_json_reason(&e, "", reason, reason_len);
        return JSONEV_INVALID;
    }
    json_decref(v);
    *out = s_minify(text, len, out_len);
    return *out ? JSONEV_OK : JSONEV_NOMEM;
}

/* --- times ---------------------------------------------------------------------- */

/* Days since 1970-01-01 of a proleptic Gregorian date (H. Hinnant's algorithm). */
static int64_t s_days_from_civil(int64_t y, unsigned m, unsigned d)
{
    y -= m <= 2;
    int64_t era = (y >= 0 ? y : y - 399) / 400;
    unsigned yoe = (unsigned)(y - era * 400);
    unsigned doy = (153 * (m > 2 ? m - 3 : m + 9) + 2) / 5 + d - 1;
    unsigned doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    return era * 146097 + (int64_t)doe - 719468;
}

static void s_civil_from_days(int64_t z, int64_t *y, unsigned *m, unsigned *d)
{
    z += 719468;
    int64_t era = (z >= 0 ? z : z - 146096) / 146097;
    unsigned doe = (unsigned)(z - era * 146097);
    unsigned yoe = (doe - doe / 1460 + doe / 36524 - doe / 146096) / 365;
    unsigned doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    unsigned mp = (5 * doy + 2) / 153;
    *d = doy - (153 * mp + 2) / 5 + 1;
    *m = mp < 10 ? mp + 3 : mp - 9;
    *y = (int64_t)yoe + era * 400 + (*m <= 2);
}

/* n decimal digits at *p into *out; advances *p. */
static bool s_digits(const char **p, int n, unsigned *out)
{
    unsigned v = 0;
    for (int i = 0; i < n; i++) {
        char c = (*p)[i];
        if (c < '0' || c > '9')
            return false;
        v = v * 10 + (unsigned)(c - '0');
    }
    *p += n;
    *out = v;
    return true;
}

static bool s_leap(unsigned y)
{
    return (y % 4 == 0 && y % 100 != 0) || y % 400 == 0;
}

int jsonev_time_parse(const char *s, int64_t *us)
{
    static const unsigned mdays[12] = {31, 28, 31, 30, 31, 30, 31, 31, 30, 31, 30, 31};
    const char *p = s;
    unsigned y, mo, d, h, mi, sec, frac = 0;
    if (!s_digits(&p, 4, &y) || *p++ != '-' || !s_digits(&p, 2, &mo) || *p++ != '-' || !s_digits(&p, 2, &d))
        return JSONEV_INVALID;
    if (*p != 'T' && *p != 't')
        return JSONEV_INVALID;
    p++;
    if (!s_digits(&p, 2, &h) || *p++ != ':' || !s_digits(&p, 2, &mi) || *p++ != ':' || !s_digits(&p, 2, &sec))
        return JSONEV_INVALID;
    if (mo < 1 || mo > 12 || d < 1 || d > mdays[mo - 1] + (mo == 2 && s_leap(y)) || h > 23 || mi > 59 || sec > 59)
        return JSONEV_INVALID;
    if (*p == '.') {
        p++;
        int n = 0;
        while (*p >= '0' && *p <= '9') {
            if (++n > 9)
                return JSONEV_INVALID;
            if (n <= 6)
                frac = frac * 10 + (unsigned)(*p - '0');
            p++;
        }
        if (n == 0)
            return JSONEV_INVALID;
        for (; n < 6; n++)
            frac *= 10;
    }
    int64_t offset = 0;
    if (*p == 'Z' || *p == 'z') {
        p++;
    } else if (*p == '+' || *p == '-') {
        int sign = *p++ == '-' ? -1 : 1;
        unsigned oh, om;
        if (!s_digits(&p, 2, &oh) || *p++ != ':' || !s_digits(&p, 2, &om) || oh > 23 || om > 59)
            return JSONEV_INVALID;
        offset = sign * (int64_t)(oh * 3600 + om * 60);
    } else {
        return JSONEV_INVALID;
    }
    if (*p != '\0')
        return JSONEV_INVALID;
    int64_t secs = s_days_from_civil(y, mo, d) * 86400 + h * 3600 + mi * 60 + sec - offset;
    *us = secs * 1000000 + frac;
    return JSONEV_OK;
}

void jsonev_time_format(int64_t us, char *buf, size_t len)
{
    int64_t secs = us / 1000000, frac = us % 1000000;
    if (frac < 0) {
        frac += 1000000;
        secs--;
    }
    int64_t days = secs / 86400, rem = secs % 86400;
    if (rem < 0) {
        rem += 86400;
        days--;
    }
    int64_t y;
    unsigned m, d;
    s_civil_from_days(days, &y, &m, &d);
    snprintf(buf, len, "%04" PRId64 "-%02u-%02uT%02u:%02u:%02u.%06uZ", y, m, d, (unsigned)(rem / 3600),
             (unsigned)(rem / 60 % 60), (unsigned)(rem % 60), (unsigned)frac);
}

/* --- base64 and UUIDs --------------------------------------------------------------- */

char *jsonev_b64_encode(const void *data, size_t len)
{
    if (len > (size_t)INT_MAX / 4 * 3)
        return NULL;
    unsigned char *out = malloc((len + 2) / 3 * 4 + 1);
    if (!out)
        return NULL;
    EVP_EncodeBlock(out, data, (int)len);
    return (char *)out;
}

static bool s_b64_char(char c)
{
    return (c >= 'A' && c <= 'Z') || (c >= 'a' && c <= 'z') || (c >= '0' && c <= '9') || c == '+' || c == '/';
}

int jsonev_b64_decode(const char *text, size_t len, unsigned char **out, size_t *out_len)
{
    *out = NULL;
    *out_len = 0;
    if (len > (size_t)INT_MAX)
        return JSONEV_INVALID;
    char *clean = malloc(len + 1);
    if (!clean)
        return JSONEV_NOMEM;
    size_t n = 0, pad = 0;
    for (size_t i = 0; i < len; i++) {
        char c = text[i];
        if (c == ' ' || c == '\t' || c == '\n' || c == '\r')
            continue;
        if (c == '=')
            pad++;
        else if (!s_b64_char(c) || pad > 0) /* nothing may follow padding */
            goto invalid;
        clean[n++] = c;
    }
    if (n % 4 != 0 || pad > 2)
        goto invalid;
    unsigned char *bin = malloc(n / 4 * 3 + 1);
    if (!bin) {
        free(clean);
        return JSONEV_NOMEM;
    }
    int got = n ? EVP_DecodeBlock(bin, (unsigned char *)clean, (int)n) : 0;
    free(clean);
    if (got < 0 || (size_t)got < pad) {
        free(bin);
        return JSONEV_INVALID;
    }
    *out_len = (size_t)got - pad;
    bin[*out_len] = '\0';
    *out = bin;
    return JSONEV_OK;
invalid:
    free(clean);
    return JSONEV_INVALID;
}

int jsonev_uuid(char *buf, size_t len)
{
    unsigned char r[16];
    if (len < JSONEV_UUID_LEN + 1 || RAND_bytes(r, sizeof r) != 1)
        return JSONEV_NOMEM;
    r[6] = (unsigned char)((r[6] & 0x0F) | 0x40);
    r[8] = (unsigned char)((r[8] & 0x3F) | 0x80);
    snprintf(buf, len, "%02x%02x%02x%02x-%02x%02x-%02x%02x-%02x%02x-%02x%02x%02x%02x%02x%02x", r[0], r[1], r[2],
             r[3], r[4], r[5], r[6], r[7], r[8], r[9], r[10], r[11], r[12], r[13], r[14], r[15]);
    return JSONEV_OK;
}

/* --- event checks ----------------------------------------------------------------- */

static bool s_check_text(const char *name, const char *value, size_t max, char *reason, size_t reason_len)
{
    if (!value)
        return true;
    if (strlen(value) > max) {
        snprintf(reason, reason_len, "%s is longer than %zu bytes", name, max);
        return false;
    }
    if (!s_utf8_valid(value)) {
        snprintf(reason, reason_len, "%s is not valid UTF-8", name);
        return false;
    }
    return true;
}

int jsonev_event_check(const civ_event_t *ev, char *reason, size_t reason_len)
{
    if (!ev->type || !*ev->type) {
        snprintf(reason, reason_len, "type is missing");
        return JSONEV_INVALID;
    }
    if (strlen(ev->type) > CODEC_TYPE_MAX || !codec_type_valid(ev->type)) {
        snprintf(reason, reason_len,
                 "type is not an event type (dotted labels of A-Z a-z 0-9 _ -, at most %d bytes)", CODEC_TYPE_MAX);
        return JSONEV_INVALID;
    }
    if (!s_check_text("event_id", ev->event_id, CODEC_ID_MAX, reason, reason_len) ||
        !s_check_text("subject", ev->subject, CODEC_SUBJECT_MAX, reason, reason_len) ||
        !s_check_text("correlation_id", ev->correlation_id, CODEC_ID_MAX, reason, reason_len) ||
        !s_check_text("content_type", ev->content_type, CODEC_CTYPE_MAX, reason, reason_len))
        return JSONEV_INVALID;
    if (ev->n_headers > CODEC_HEADERS_MAX) {
        snprintf(reason, reason_len, "more than %d headers", CODEC_HEADERS_MAX);
        return JSONEV_INVALID;
    }
    for (size_t i = 0; i < ev->n_headers; i++) {
        if (!ev->headers[i].key || !*ev->headers[i].key) {
            snprintf(reason, reason_len, "a header has an empty name");
            return JSONEV_INVALID;
        }
        if (!s_check_text("a header name", ev->headers[i].key, CODEC_HEADER_MAX, reason, reason_len) ||
            !s_check_text("a header value", ev->headers[i].value, CODEC_HEADER_MAX, reason, reason_len))
            return JSONEV_INVALID;
    }
    return JSONEV_OK;
}

/* --- input lines ------------------------------------------------------------------- */

/* Optional string member name of obj into *out (NULL when absent or null). */
static bool s_get_string(json_t *obj, const char *name, const char **out, char *reason, size_t reason_len)
{
    json_t *v = json_object_get(obj, name);
    *out = NULL;
    if (!v || json_is_null(v))
        return true;
    if (!json_is_string(v)) {
        snprintf(reason, reason_len, "%s must be a string", name);
        return false;
    }
    if (json_string_length(v) != strlen(json_string_value(v))) {
        snprintf(reason, reason_len, "%s contains a NUL character", name);
        return false;
    }
    *out = json_string_value(v);
    return true;
}

static bool s_get_headers(jsonev_in_t *self, char *reason, size_t reason_len)
{
    json_t *h = json_object_get(self->root, "headers");
    if (!h || json_is_null(h))
        return true;
    if (!json_is_object(h)) {
        snprintf(reason, reason_len, "headers must be an object of strings");
        return false;
    }
    size_t n = json_object_size(h);
    if (n > CODEC_HEADERS_MAX) {
        snprintf(reason, reason_len, "more than %d headers", CODEC_HEADERS_MAX);
        return false;
    }
    if (n == 0)
        return true;
    self->headers = calloc(n, sizeof *self->headers);
    if (!self->headers) {
        snprintf(reason, reason_len, "out of memory");
        return false;
    }
    const char *key;
    size_t key_len;
    json_t *value;
    size_t i = 0;
    json_object_keylen_foreach(h, key, key_len, value)
    {
        if (!json_is_string(value) || json_string_length(value) != strlen(json_string_value(value))) {
            snprintf(reason, reason_len, "headers must be an object of strings");
            return false;
        }
        if (strlen(key) != key_len) {
            snprintf(reason, reason_len, "a header name contains a NUL character");
            return false;
        }
        self->headers[i].key = key;
        self->headers[i].value = json_string_value(value);
        i++;
    }
    self->event.headers = self->headers;
    self->event.n_headers = i;
    return true;
}

/* Is the media type ct application/json (parameters and case aside)? */
static bool s_is_json_type(const char *ct)
{
    if (!ct)
        return false;
    size_t n = strlen(JSONEV_CT_JSON);
    if (strncasecmp(ct, JSONEV_CT_JSON, n) != 0)
        return false;
    const char *p = ct + n;
    while (*p == ' ' || *p == '\t')
        p++;
    return *p == '\0' || *p == ';';
}

/* Position of member name among the members of obj, in text order. */
static bool s_member_index(json_t *obj, const char *name, size_t *index)
{
    size_t i = 0;
    for (void *it = json_object_iter(obj); it; it = json_object_iter_next(obj, it), i++) {
        if (strcmp(json_object_iter_key(it), name) == 0) {
            *index = i;
            return true;
        }
    }
    return false;
}

static bool s_get_payload(jsonev_in_t *self, const char *text, size_t len, char *reason, size_t reason_len)
{
    civ_event_t *ev = &self->event;
    json_t *data = json_object_get(self->root, "data");
    const char *b64;
    if (!s_get_string(self->root, "data_base64", &b64, reason, reason_len) ||
        !s_get_string(self->root, "content_type", &ev->content_type, reason, reason_len))
        return false;
    if (data && b64) {
        snprintf(reason, reason_len, "give data or data_base64, not both");
        return false;
    }
    if (data) {
        if (ev->content_type && !s_is_json_type(ev->content_type)) {
            snprintf(reason, reason_len, "data is sent as %s; use data_base64 for other content types",
                     JSONEV_CT_JSON);
            return false;
        }
        size_t index, span;
        const char *start;
        if (!s_member_index(self->root, "data", &index) || !s_member_span(text, len, index, &start, &span)) {
            snprintf(reason, reason_len, "cannot locate data in the line");
            return false;
        }
        self->payload = s_minify(start, span, &ev->payload_len);
        if (!self->payload) {
            snprintf(reason, reason_len, "out of memory");
            return false;
        }
        if (!ev->content_type)
            ev->content_type = JSONEV_CT_JSON;
    } else if (b64) {
        unsigned char *bin;
        int rc = jsonev_b64_decode(b64, strlen(b64), &bin, &ev->payload_len);
        if (rc != JSONEV_OK) {
            snprintf(reason, reason_len, "%s", rc == JSONEV_NOMEM ? "out of memory" : "data_base64 is not valid base64");
            return false;
        }
        self->payload = bin;
        if (!ev->content_type)
            ev->content_type = JSONEV_CT_BINARY;
    }
    ev->payload = self->payload;
    return true;
}

jsonev_in_t *jsonev_in_parse(const char *text, size_t len, char *reason, size_t reason_len)
{
    jsonev_in_t *self = calloc(1, sizeof *self);
    if (!self) {
        snprintf(reason, reason_len, "out of memory");
        return NULL;
    }
    civ_event_t *ev = &self->event;
    json_error_t e;
    self->root = json_loadb(text, len, S_JSON_FLAGS | JSON_REJECT_DUPLICATES, &e);
    if (!self->root) {
        s_json_reason(&e, "the line is ", reason, reason_len);
        goto failed;
    }
    if (!json_is_object(self->root)) {
        snprintf(reason, reason_len, "the line is not a JSON object");
        goto failed;
    }
    const char *occurred = NULL;
    if (!s_get_string(self->root, "type", &ev->type, reason, reason_len) ||
        !s_get_string(self->root, "event_id", &ev->event_id, reason, reason_len) ||
        !s_get_string(self->root, "subject", &ev->subject, reason, reason_len) ||
        !s_get_string(self->root, "correlation_id", &ev->correlation_id, reason, reason_len) ||
        !s_get_string(self->root, "occurred_at", &occurred, reason, reason_len))
        goto failed;
    if (!ev->type) {
        snprintf(reason, reason_len, "type is missing");
        goto failed;
    }
    if (occurred && jsonev_time_parse(occurred, &ev->occurred_at) != JSONEV_OK) {
        snprintf(reason, reason_len, "occurred_at is not an ISO 8601 time such as 2026-11-23T04:23:57Z");
        goto failed;
    }
    if (!s_get_headers(self, reason, reason_len) || !s_get_payload(self, text, len, reason, reason_len))
        goto failed;
    if (!ev->event_id || !*ev->event_id) {
        if (jsonev_uuid(self->event_id, sizeof self->event_id) != JSONEV_OK) {
            snprintf(reason, reason_len, "cannot generate an event id");
            goto failed;
        }
        ev->event_id = self->event_id;
    }
    if (jsonev_event_check(ev, reason, reason_len) != JSONEV_OK)
        goto failed;
    return self;
failed:
    jsonev_in_destroy(&self);
    return NULL;
}

const civ_event_t *jsonev_in_event(const jsonev_in_t *self)
{
    return &self->event;
}

void jsonev_in_destroy(jsonev_in_t **self_p)
{
    if (!self_p || !*self_p)
        return;
    jsonev_in_t *self = *self_p;
    json_decref(self->root);
    free(self->headers);
    free(self->payload);
    free(self);
    *self_p = NULL;
}

/* --- output lines -------------------------------------------------------------------- */

/* Set obj[name] to a new value, taking it; false when out of memory. */
static bool s_set(json_t *obj, const char *name, json_t *value)
{
    return value && json_object_set_new(obj, name, value) == 0;
}

static bool s_set_time(json_t *obj, const char *name, int64_t us)
{
    char buf[JSONEV_TIME_LEN];
    jsonev_time_format(us, buf, sizeof buf);
    return s_set(obj, name, json_string(buf));
}

static bool s_set_headers(json_t *obj, const civ_event_t *ev)
{
    if (ev->n_headers == 0)
        return true;
    json_t *h = json_object();
    if (!h)
        return false;
    for (size_t i = 0; i < ev->n_headers; i++) {
        json_t *key = s_jstr(ev->headers[i].key);
        bool ok = key && s_set(h, json_string_value(key), s_jstr(ev->headers[i].value));
        json_decref(key);
        if (!ok) {
            json_decref(h);
            return false;
        }
    }
    return s_set(obj, "headers", h);
}

/* The payload as compact JSON text, or NULL when it is not JSON. */
static char *s_payload_json(const civ_event_t *ev, size_t *out_len)
{
    if (!s_is_json_type(ev->content_type) || ev->payload_len == 0)
        return NULL;
    json_error_t e;
    json_t *v = json_loadb(ev->payload, ev->payload_len, S_JSON_FLAGS, &e);
    if (!v)
        return NULL;
    json_decref(v);
    return s_minify(ev->payload, ev->payload_len, out_len);
}

char *jsonev_delivery_line(const civ_delivery_t *d)
{
    const civ_event_t *ev = &d->event;
    char *line = NULL, *data = NULL;
    json_t *obj = json_object();
    if (!obj)
        return NULL;
    bool ok = s_set(obj, "seq", json_integer((json_int_t)d->seq)) && s_set_time(obj, "received_at", d->received_at) &&
              (d->attempt <= 1 || s_set(obj, "attempt", json_integer((json_int_t)d->attempt))) &&
              s_set(obj, "source", s_jstr(ev->source)) && s_set(obj, "event_id", s_jstr(ev->event_id)) &&
              s_set(obj, "type", s_jstr(ev->type));
    if (ok && ev->subject && *ev->subject)
        ok = s_set(obj, "subject", s_jstr(ev->subject));
    if (ok && ev->correlation_id && *ev->correlation_id)
        ok = s_set(obj, "correlation_id", s_jstr(ev->correlation_id));
    ok = ok && s_set_time(obj, "occurred_at", ev->occurred_at) && s_set(obj, "content_type", s_jstr(ev->content_type)) &&
         s_set_headers(obj, ev);
    if (ok && d->has_chain) {
        char hex[2 * sizeof d->chain + 1];
        for (size_t i = 0; i < sizeof d->chain; i++)
            snprintf(hex + 2 * i, 3, "%02x", d->chain[i]);
        ok = s_set(obj, "chain", json_string(hex));
    }
    if (!ok)
        goto done;
    size_t data_len = 0;
    data = s_payload_json(ev, &data_len);
    if (!data) {
        char *b64 = jsonev_b64_encode(ev->payload ? ev->payload : "", ev->payload_len);
        if (!b64 || !s_set(obj, "data_base64", json_string(b64))) {
            free(b64);
            goto done;
        }
        free(b64);
        line = json_dumps(obj, JSON_COMPACT);
        goto done;
    }
    /* Splice the payload's own text in as the last member. */
    char *head = json_dumps(obj, JSON_COMPACT);
    if (!head)
        goto done;
    size_t head_len = strlen(head); /* ends with '}' */
    static const char key[] = ",\"data\":";
    line = malloc(head_len - 1 + sizeof key - 1 + data_len + 2);
    if (line) {
        char *q = line;
        memcpy(q, head, head_len - 1);
        q += head_len - 1;
        memcpy(q, key, sizeof key - 1);
        q += sizeof key - 1;
        memcpy(q, data, data_len);
        q += data_len;
        memcpy(q, "}", 2);
    }
    free(head);
done:
    free(data);
    json_decref(obj);
    return line;
}

static json_t *s_seq_array(const uint64_t *seqs, size_t n)
{
    json_t *arr = json_array();
    for (size_t i = 0; arr && i < n; i++) {
        if (json_array_append_new(arr, json_integer((json_int_t)seqs[i])) != 0) {
            json_decref(arr);
            return NULL;
        }
    }
    return arr;
}

static json_t *s_dead_letter(const civ_dead_letter_t *d)
{
    json_t *o = json_object();
    if (!o)
        return NULL;
    bool ok = s_set(o, "seq", json_integer((json_int_t)d->seq)) &&
              s_set(o, "attempts", json_integer((json_int_t)d->attempts)) && s_set_time(o, "dead_at", d->dead_at) &&
              s_set(o, "reason", s_jstr(d->reason)) && s_set(o, "redrive", json_boolean(d->redrive)) &&
              s_set(o, "gone", json_boolean(d->gone));
    if (ok && !d->gone)
        ok = s_set_time(o, "received_at", d->received_at);
    if (ok && !d->gone && d->type[0])
        ok = s_set(o, "type", s_jstr(d->type)) && s_set(o, "source", s_jstr(d->source)) &&
             s_set(o, "event_id", s_jstr(d->event_id));
    if (!ok) {
        json_decref(o);
        return NULL;
    }
    return o;
}

char *jsonev_dead_letters_line(const char *op, const char *name, const civ_dead_letters_t *r)
{
    json_t *obj = json_object();
    if (!obj)
        return NULL;
    bool list = strcmp(op, "list") == 0;
    bool ok = s_set(obj, "op", s_jstr(op)) && s_set(obj, "subscription", s_jstr(name)) &&
              s_set(obj, "total", json_integer((json_int_t)r->total));
    if (ok && list) {
        json_t *arr = json_array();
        ok = s_set(obj, "dead_letters", arr);
        for (size_t i = 0; ok && i < r->n; i++)
            ok = json_array_append_new(arr, s_dead_letter(&r->items[i])) == 0;
        if (ok && r->next_after)
            ok = s_set(obj, "next_after", json_integer((json_int_t)r->next_after));
    } else if (ok) {
        ok = s_set(obj, "affected", json_integer((json_int_t)r->affected)) &&
             s_set(obj, "not_found", s_seq_array(r->not_found, r->n_not_found));
        if (ok && strcmp(op, "redrive") == 0)
            ok = s_set(obj, "gone", s_seq_array(r->gone, r->n_gone));
    }
    char *line = ok ? json_dumps(obj, JSON_COMPACT) : NULL;
    json_decref(obj);
    return line;
}

char *jsonev_ack_line(const char *event_id, uint64_t seq, bool duplicate)
{
    json_t *obj = json_object();
    if (!obj)
        return NULL;
    bool ok = s_set(obj, "event_id", s_jstr(event_id)) && s_set(obj, "seq", json_integer((json_int_t)seq)) &&
              (!duplicate || s_set(obj, "duplicate", json_true()));
    char *line = ok ? json_dumps(obj, JSON_COMPACT) : NULL;
    json_decref(obj);
    return line;
}

char *jsonev_nack_line(const char *event_id, const char *code, const char *reason)
{
    json_t *obj = json_object();
    if (!obj)
        return NULL;
    bool ok = s_set(obj, "event_id", s_jstr(event_id)) && s_set(obj, "error", s_jstr(code)) &&
              s_set(obj, "reason", s_jstr(reason));
    char *line = ok ? json_dumps(obj, JSON_COMPACT) : NULL;
    json_decref(obj);
    return line;
}

char *jsonev_invalid_line(uint64_t lineno, const char *reason)
{
    json_t *obj = json_object();
    if (!obj)
        return NULL;
    bool ok = s_set(obj, "line", json_integer((json_int_t)lineno)) && s_set(obj, "error", json_string("invalid")) &&
              s_set(obj, "reason", s_jstr(reason));
    char *line = ok ? json_dumps(obj, JSON_COMPACT) : NULL;
    json_decref(obj);
    return line;
}
