/* jsonev - JSON lines <-> civibus events, ISO 8601 times, base64.
 *
 * The CLI reads events to publish as JSON lines and prints received events,
 * acks and nacks as JSON lines; this module owns those formats (docs/CLI.md)
 * and nothing else, so that they can be unit-tested without a hub.
 *
 * JSON payloads travel as the producer wrote them, minus insignificant
 * whitespace: they are validated with jansson but never re-serialised, so a
 * number such as 0.1 or 12345678901234567890 keeps its exact text both on the
 * way in and on the way out.
 *
 * Every string handed out by this module is valid UTF-8; text from the hub
 * that is not gets U+FFFD in place of the bad bytes.
 */
#ifndef CIVIBUS_CLI_JSONEV_H
#define CIVIBUS_CLI_JSONEV_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "civibus.h"

enum jsonev_err {
    JSONEV_OK = 0,
    JSONEV_INVALID = -1, /* the input breaks the format; the reason says how */
    JSONEV_NOMEM = -2
};

#define JSONEV_TIME_LEN 40    /* buffer size for jsonev_time_format */
#define JSONEV_UUID_LEN 36    /* characters of a UUID, without the NUL */
#define JSONEV_REASON_LEN 256 /* a comfortable reason buffer */

#define JSONEV_CT_JSON "application/json"
#define JSONEV_CT_BINARY "application/octet-stream"

/* An event read from one JSON input line; owns everything its civ_event_t
 * points to. */
typedef struct jsonev_in jsonev_in_t;

/* Parse one input line (len bytes, no NUL needed) into an event: "type"
 * (required), "event_id" (a random UUID when absent), "subject",
 * "correlation_id", "occurred_at" (ISO 8601), "headers" (object of strings),
 * and "data" (any JSON value, sent as compact JSON, application/json) or
 * "data_base64" (bytes; "content_type" defaults to application/octet-stream).
 * Other members, such as seq or source of a printed event, are ignored; null
 * counts as absent except for data. Returns a new object for
 * jsonev_in_destroy, or NULL with a one-line reason (JSONEV_REASON_LEN is
 * enough) that quotes no payload. */
jsonev_in_t *jsonev_in_parse(const char *text, size_t len, char *reason, size_t reason_len);
/* The parsed event; valid until jsonev_in_destroy. event_id is never empty. */
const civ_event_t *jsonev_in_event(const jsonev_in_t *self);
void jsonev_in_destroy(jsonev_in_t **self_p);

/* Check an event against the protocol's field rules before it is sent: the
 * type's syntax, the length ceilings of codec.h, UTF-8 text. Returns
 * JSONEV_OK or JSONEV_INVALID with a reason. */
int jsonev_event_check(const civ_event_t *ev, char *reason, size_t reason_len);

/* Check that text (len bytes) is one JSON value of any kind and return it
 * without insignificant whitespace in *out (NUL-terminated, out_len bytes,
 * the caller frees). Returns JSONEV_OK, JSONEV_INVALID with a reason, or
 * JSONEV_NOMEM. */
int jsonev_json_compact(const char *text, size_t len, char **out, size_t *out_len, char *reason,
                        size_t reason_len);

/* One printed line, without the newline, for a received event:
 * {"seq":N,"received_at":...,"source":...,"event_id":...,"type":...,
 *  "subject":...,"correlation_id":...,"occurred_at":...,"content_type":...,
 *  "headers":{...},"data":... | "data_base64":...}
 * subject, correlation_id and headers are left out when empty; data holds the
 * payload when the content type is application/json and the payload is JSON,
 * data_base64 otherwise. Of repeated header keys the last wins. A delivery
 * attempt after the first adds "attempt":N after "received_at". The caller
 * frees the result; NULL when out of memory. */
char *jsonev_delivery_line(const civ_delivery_t *d);

/* The object printed by `civibus deadletters` for op "list", "redrive" or
 * "drop" on subscription name (docs/CLI.md):
 *   {"op":OP,"subscription":NAME,"total":N, then for list
 *    "dead_letters":[{"seq":N,"attempts":N,"dead_at":TIME,"reason":...,
 *                     "redrive":BOOL,"gone":BOOL,"received_at":TIME,
 *                     "type":...,"source":...,"event_id":...}, ...]
 *    and "next_after":N when more follow; for redrive and drop
 *    "affected":N,"not_found":[N, ...], and for redrive "gone":[N, ...]}
 * received_at, type, source and event_id are left out when the event is gone,
 * the last three also when the hub withholds them. The caller frees; NULL
 * when out of memory. */
char *jsonev_dead_letters_line(const char *op, const char *name, const civ_dead_letters_t *r);

/* The line for an accepted event: {"event_id":...,"seq":N}, with
 * "duplicate":true when the hub had accepted it before (seq is then the
 * original). The caller frees; NULL when out of memory. */
char *jsonev_ack_line(const char *event_id, uint64_t seq, bool duplicate);
/* The line for a refused event: {"event_id":...,"error":CODE,"reason":...},
 * CODE being a short error name such as "not_authorised". The caller frees. */
char *jsonev_nack_line(const char *event_id, const char *code, const char *reason);

/* The line for an input line that could not be read as an event:
 * {"line":N,"error":"invalid","reason":...}. The caller frees. */
char *jsonev_invalid_line(uint64_t lineno, const char *reason);

/* Parse an ISO 8601 date and time with a zone into microseconds since the
 * Unix epoch: 2026-11-23T04:23:57Z, 2026-11-23T04:23:57.123456Z,
 * 2026-11-23T06:23:57+02:00. Fractions of up to 9 digits are accepted and
 * truncated to microseconds. Returns JSONEV_OK or JSONEV_INVALID. */
int jsonev_time_parse(const char *s, int64_t *us);
/* Format microseconds since the epoch as 2026-11-23T04:23:57.123456Z into
 * buf of at least JSONEV_TIME_LEN bytes. */
void jsonev_time_format(int64_t us, char *buf, size_t len);

/* Standard base64 with padding, no line breaks. The caller frees the result;
 * NULL when out of memory. */
char *jsonev_b64_encode(const void *data, size_t len);
/* Decode standard base64 (padding required, whitespace ignored) into a new
 * buffer *out of *out_len bytes (the caller frees; one spare NUL byte at the
 * end). Returns JSONEV_OK, JSONEV_INVALID or JSONEV_NOMEM. */
int jsonev_b64_decode(const char *text, size_t len, unsigned char **out, size_t *out_len);

/* A random (version 4) UUID in lower case into buf of at least
 * JSONEV_UUID_LEN + 1 bytes. Returns JSONEV_OK, or JSONEV_NOMEM when the
 * random generator fails. */
int jsonev_uuid(char *buf, size_t len);

#endif
