/* codec - decoding and validation of civibus wire messages.
 *
 * Owns protobuf-c unpacking for the hub and the SDK alike. Every decode is
 * bounded twice: the input length is checked against a caller's ceiling before
 * anything is parsed, and the unpack runs on an allocator that refuses to grow
 * past a fixed multiple of the input, because protobuf-c has no limits of its
 * own (a 1 MiB frame of empty repeated fields would otherwise cost far more).
 * Decoded messages are freed with the matching codec_*_free, never with
 * protobuf-c directly. Encoding uses the generated get_packed_size and pack functions.
 *
 * Also here: the syntax of agency ids, event types and subscription filters,
 * and the names of error codes, so that hub, SDK and CLI agree on them.
 */
#ifndef CIVIBUS_CODEC_H
#define CIVIBUS_CODEC_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "civibus.pb-c.h"

#define CODEC_PROTOCOL_VERSION 1

/* Field ceilings that every event must respect (bytes, excluding NUL). */
#define CODEC_ID_MAX 128     /* event_id, correlation_id */
#define CODEC_AGENCY_MAX 64  /* agency id */
#define CODEC_TYPE_MAX 128   /* event type, filter */
#define CODEC_SUBJECT_MAX 256
#define CODEC_CTYPE_MAX 128
#define CODEC_HEADERS_MAX 32
#define CODEC_HEADER_MAX 1024 /* key or value */
#define CODEC_NAME_MAX 64    /* subscription name */

enum codec_err {
    CODEC_OK = 0,
    CODEC_TOO_LARGE = -1, /* input longer than the caller's ceiling */
    CODEC_MALFORMED = -2, /* not a valid encoding, or over the allocation cap */
};

typedef Civibus__V1__ClientMessage codec_client_msg_t;
typedef Civibus__V1__HubMessage codec_hub_msg_t;
typedef Civibus__V1__ServiceEvent codec_event_t;

/* Decode one adapter->hub message of len bytes, refusing input over max_len.
 * On success *out is a new message owned by the caller (codec_client_free);
 * it does not point into data. Returns CODEC_OK, CODEC_TOO_LARGE or
 * CODEC_MALFORMED; *out is NULL on error. */
int codec_client_decode(const uint8_t *data, size_t len, size_t max_len, codec_client_msg_t **out);
void codec_client_free(codec_client_msg_t **msg_p);

/* The same for hub->adapter messages. */
int codec_hub_decode(const uint8_t *data, size_t len, size_t max_len, codec_hub_msg_t **out);
void codec_hub_free(codec_hub_msg_t **msg_p);

/* The same for one serialized ServiceEvent. */
int codec_event_decode(const uint8_t *data, size_t len, size_t max_len, codec_event_t **out);
void codec_event_free(codec_event_t **ev_p);

/* Check an event's fields against the protocol's rules (required fields,
 * syntax of type and source, field ceilings). Returns true when valid; else
 * writes a short reason (no payload bytes) into reason. */
bool codec_event_valid(const codec_event_t *ev, char *reason, size_t reason_len);

/* Is ev, decoded from raw_len bytes, in the one encoding a standard
 * protobuf encoder produces? protobuf-c cuts a string at an embedded NUL and
 * keeps only the last of a repeated singular field, so an event failing this
 * would mean different things to different decoders: "src\0junk" would pass
 * as source "src". Unknown fields keep their size and do not matter. */
bool codec_event_canonical(const codec_event_t *ev, size_t raw_len);

/* Is s (NUL-terminated; NULL counts as empty) valid UTF-8, with no overlong
 * forms, surrogates or code points beyond U+10FFFF? */
bool codec_utf8_valid(const char *s);

/* Syntax checks. Agency ids: 1-64 chars of [a-z0-9-] in dot-separated
 * non-empty labels. Event types: 1-128 chars of [A-Za-z0-9_-] in dot-separated
 * non-empty labels. Filters: "*", an event type, or an event type followed by
 * ".*" (a prefix). Subscription names: 1-64 chars of [A-Za-z0-9._-]. */
bool codec_agency_valid(const char *id);
bool codec_type_valid(const char *type);
bool codec_filter_valid(const char *filter);
bool codec_name_valid(const char *name);

/* Does event type (of type_len bytes, not NUL-terminated) match filter?
 * "a.*" matches "a.b" and "a.b.c" but not "a" nor "ab.c". */
bool codec_filter_match(const char *filter, const char *type, size_t type_len);

/* Lower-case wire name of an ErrorCode ("not_authorised"), or "unknown". */
const char *codec_error_name(Civibus__V1__ErrorCode code);

/* Microseconds since the Unix epoch (CLOCK_REALTIME). */
int64_t codec_now_us(void);
/* Milliseconds of CLOCK_MONOTONIC, for timeouts. */
int64_t codec_mono_ms(void);

#endif
