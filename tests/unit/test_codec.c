/* test_codec - unit tests of the shared wire codec.
 *
 * Messages are built with the generated protobuf-c structs and packed with the
 * generated pack functions (what a peer sends), then decoded with codec_*,
 * whose bounds are the point: input ceilings, the capped allocator, and the
 * protocol's field rules and name syntax.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include <stdlib.h>
#include <string.h>

#include "codec.h"

#define MAX_MSG (1u << 20)

/* --- helpers ------------------------------------------------------------- */

static Civibus__V1__Header s_h1 = CIVIBUS__V1__HEADER__INIT;
static Civibus__V1__Header s_h2 = CIVIBUS__V1__HEADER__INIT;
static Civibus__V1__Header *s_headers[2] = {&s_h1, &s_h2};
static const uint8_t s_payload[] = {'{', '"', 'a', '"', ':', 0, 1, 0xff, '}'};

/* A full event with every field set. */
static Civibus__V1__ServiceEvent s_sample_event(void)
{
    Civibus__V1__ServiceEvent ev = CIVIBUS__V1__SERVICE_EVENT__INIT;
    s_h1.key = "trace";
    s_h1.value = "abc-123";
    s_h2.key = "lang";
    s_h2.value = "";
    ev.event_id = "0b9e6c7a-3f4d-4a8e-9c1d-2e5f6a7b8c9d";
    ev.source = "ee.population-register";
    ev.type = "population.birth.registered";
    ev.subject = "person/38001010000";
    ev.occurred_at = 1795000000123456;
    ev.content_type = "application/json";
    ev.payload.data = (uint8_t *)s_payload;
    ev.payload.len = sizeof s_payload;
    ev.correlation_id = "req-42";
    ev.n_headers = 2;
    ev.headers = s_headers;
    return ev;
}

/* Pack an event into a new buffer (caller frees). */
static uint8_t *s_pack_event(const Civibus__V1__ServiceEvent *ev, size_t *len)
{
    *len = civibus__v1__service_event__get_packed_size(ev);
    uint8_t *buf = malloc(*len + 16); /* room for appended unknown fields */
    assert_non_null(buf);
    assert_int_equal(civibus__v1__service_event__pack(ev, buf), *len);
    return buf;
}

/* A decoded event (owned by caller) for the validity tests. */
static codec_event_t *s_decoded_sample(void)
{
    Civibus__V1__ServiceEvent ev = s_sample_event();
    size_t len;
    uint8_t *buf = s_pack_event(&ev, &len);
    codec_event_t *out = NULL;
    assert_int_equal(codec_event_decode(buf, len, MAX_MSG, &out), CODEC_OK);
    free(buf);
    return out;
}

/* --- round trips --------------------------------------------------------- */

static void test_event_round_trip(void **state)
{
    (void)state;
    Civibus__V1__ServiceEvent ev = s_sample_event();
    size_t len;
    uint8_t *buf = s_pack_event(&ev, &len);
    codec_event_t *out = NULL;
    assert_int_equal(codec_event_decode(buf, len, MAX_MSG, &out), CODEC_OK);
    assert_non_null(out);
    assert_string_equal(out->event_id, ev.event_id);
    assert_string_equal(out->source, ev.source);
    assert_string_equal(out->type, ev.type);
    assert_string_equal(out->subject, ev.subject);
    assert_int_equal(out->occurred_at, ev.occurred_at);
    assert_string_equal(out->content_type, ev.content_type);
    assert_int_equal(out->payload.len, sizeof s_payload);
    assert_memory_equal(out->payload.data, s_payload, sizeof s_payload);
    assert_string_equal(out->correlation_id, "req-42");
    assert_int_equal(out->n_headers, 2);
    assert_string_equal(out->headers[0]->key, "trace");
    assert_string_equal(out->headers[0]->value, "abc-123");
    assert_string_equal(out->headers[1]->key, "lang");
    assert_string_equal(out->headers[1]->value, "");
    /* the decoded copy does not point into the input */
    memset(buf, 0, len);
    assert_string_equal(out->type, "population.birth.registered");

    char reason[128] = "";
    assert_true(codec_event_valid(out, reason, sizeof reason));
    assert_string_equal(reason, "");

    /* repacking gives the same bytes */
    size_t len2 = civibus__v1__service_event__get_packed_size(out);
    assert_int_equal(len2, len);
    uint8_t *buf2 = malloc(len2);
    civibus__v1__service_event__pack(out, buf2);
    uint8_t *orig = s_pack_event(&ev, &len);
    assert_memory_equal(buf2, orig, len);
    free(orig);
    free(buf2);
    codec_event_free(&out);
    assert_null(out);
    codec_event_free(&out); /* NULL-safe */
    codec_event_free(NULL);
    free(buf);
}

static void test_client_publish_round_trip(void **state)
{
    (void)state;
    uint8_t *evs[3];
    size_t lens[3];
    ProtobufCBinaryData events[3];
    const char *ids[3] = {"e1", "e2", "e3"};
    for (int i = 0; i < 3; i++) {
        Civibus__V1__ServiceEvent ev = s_sample_event();
        ev.event_id = (char *)ids[i];
        evs[i] = s_pack_event(&ev, &lens[i]);
        events[i] = (ProtobufCBinaryData){.len = lens[i], .data = evs[i]};
    }
    Civibus__V1__Publish pub = CIVIBUS__V1__PUBLISH__INIT;
    pub.request_id = 0xfedcba9876543210ull;
    pub.n_events = 3;
    pub.events = events;
    Civibus__V1__ClientMessage msg = CIVIBUS__V1__CLIENT_MESSAGE__INIT;
    msg.version = CODEC_PROTOCOL_VERSION;
    msg.body_case = CIVIBUS__V1__CLIENT_MESSAGE__BODY_PUBLISH;
    msg.publish = &pub;
    size_t len = civibus__v1__client_message__get_packed_size(&msg);
    uint8_t *buf = malloc(len);
    civibus__v1__client_message__pack(&msg, buf);

    codec_client_msg_t *out = NULL;
    assert_int_equal(codec_client_decode(buf, len, MAX_MSG, &out), CODEC_OK);
    assert_int_equal(out->version, 1);
    assert_int_equal(out->body_case, CIVIBUS__V1__CLIENT_MESSAGE__BODY_PUBLISH);
    assert_int_equal(out->publish->request_id, 0xfedcba9876543210ull);
    assert_int_equal(out->publish->n_events, 3);
    for (int i = 0; i < 3; i++) {
        assert_int_equal(out->publish->events[i].len, lens[i]);
        assert_memory_equal(out->publish->events[i].data, evs[i], lens[i]);
        /* and each inner event decodes to its id */
        codec_event_t *ev = NULL;
        assert_int_equal(codec_event_decode(out->publish->events[i].data,
                                            out->publish->events[i].len, MAX_MSG, &ev),
                         CODEC_OK);
        assert_string_equal(ev->event_id, ids[i]);
        codec_event_free(&ev);
    }
    codec_client_free(&out);
    assert_null(out);
    codec_client_free(NULL);
    free(buf);
    for (int i = 0; i < 3; i++)
        free(evs[i]);
}

static void test_hub_deliver_round_trip(void **state)
{
    (void)state;
    Civibus__V1__Delivery d = CIVIBUS__V1__DELIVERY__INIT;
    d.seq = 77;
    d.received_at = 1795000000000001;
    d.event = (ProtobufCBinaryData){.len = sizeof s_payload, .data = (uint8_t *)s_payload};
    Civibus__V1__Delivery *ds[1] = {&d};
    Civibus__V1__Deliver del = CIVIBUS__V1__DELIVER__INIT;
    del.subscription = "main";
    del.n_events = 1;
    del.events = ds;
    Civibus__V1__HubMessage msg = CIVIBUS__V1__HUB_MESSAGE__INIT;
    msg.version = 1;
    msg.body_case = CIVIBUS__V1__HUB_MESSAGE__BODY_DELIVER;
    msg.deliver = &del;
    size_t len = civibus__v1__hub_message__get_packed_size(&msg);
    uint8_t *buf = malloc(len);
    civibus__v1__hub_message__pack(&msg, buf);
    codec_hub_msg_t *out = NULL;
    assert_int_equal(codec_hub_decode(buf, len, MAX_MSG, &out), CODEC_OK);
    assert_int_equal(out->body_case, CIVIBUS__V1__HUB_MESSAGE__BODY_DELIVER);
    assert_string_equal(out->deliver->subscription, "main");
    assert_int_equal(out->deliver->n_events, 1);
    assert_int_equal(out->deliver->events[0]->seq, 77);
    assert_int_equal(out->deliver->events[0]->received_at, 1795000000000001);
    assert_memory_equal(out->deliver->events[0]->event.data, s_payload, sizeof s_payload);
    codec_hub_free(&out);
    assert_null(out);
    free(buf);
}

static void test_unknown_fields_preserved(void **state)
{
    (void)state;
    Civibus__V1__ServiceEvent ev = s_sample_event();
    size_t len;
    uint8_t *buf = s_pack_event(&ev, &len);
    /* field 100, varint 150: key (100 << 3 | 0) = 800 = a0 06, value 96 01 */
    static const uint8_t unknown[] = {0xa0, 0x06, 0x96, 0x01};
    memcpy(buf + len, unknown, sizeof unknown);
    size_t len_u = len + sizeof unknown;

    codec_event_t *out = NULL;
    assert_int_equal(codec_event_decode(buf, len_u, MAX_MSG, &out), CODEC_OK);
    assert_string_equal(out->event_id, ev.event_id);
    assert_int_equal(out->base.n_unknown_fields, 1);
    size_t len2 = civibus__v1__service_event__get_packed_size(out);
    assert_int_equal(len2, len_u);
    uint8_t *buf2 = malloc(len2);
    assert_int_equal(civibus__v1__service_event__pack(out, buf2), len2);
    assert_memory_equal(buf2, buf, len_u); /* known fields then the unknown one */
    free(buf2);
    codec_event_free(&out);
    free(buf);
}

/* --- hostile input ------------------------------------------------------- */

static void test_truncated_prefixes(void **state)
{
    (void)state;
    Civibus__V1__ServiceEvent ev = s_sample_event();
    size_t len;
    uint8_t *full = s_pack_event(&ev, &len);
    size_t refused = 0;
    for (size_t n = 0; n <= len; n++) {
        /* an exact-size heap copy, so ASan sees any read past the end */
        uint8_t *p = malloc(n ? n : 1);
        memcpy(p, full, n);
        codec_event_t *out = (codec_event_t *)p; /* must be overwritten */
        int rc = codec_event_decode(p, n, MAX_MSG, &out);
        if (rc == CODEC_OK) {
            assert_non_null(out);
            codec_event_free(&out);
        } else {
            assert_int_equal(rc, CODEC_MALFORMED);
            assert_null(out);
            refused++;
        }
        free(p);
    }
    assert_true(refused > 0);       /* cuts inside a field are refused */
    assert_true(refused < len + 1); /* cuts between fields decode */

    /* the same over a client message */
    uint8_t *evs[1] = {full};
    ProtobufCBinaryData events[1] = {{.len = len, .data = evs[0]}};
    Civibus__V1__Publish pub = CIVIBUS__V1__PUBLISH__INIT;
    pub.request_id = 5;
    pub.n_events = 1;
    pub.events = events;
    Civibus__V1__ClientMessage msg = CIVIBUS__V1__CLIENT_MESSAGE__INIT;
    msg.version = 1;
    msg.body_case = CIVIBUS__V1__CLIENT_MESSAGE__BODY_PUBLISH;
    msg.publish = &pub;
    size_t mlen = civibus__v1__client_message__get_packed_size(&msg);
    uint8_t *mbuf = malloc(mlen);
    civibus__v1__client_message__pack(&msg, mbuf);
    for (size_t n = 0; n <= mlen; n++) {
        uint8_t *p = malloc(n ? n : 1);
        memcpy(p, mbuf, n);
        codec_client_msg_t *out = NULL;
        int rc = codec_client_decode(p, n, MAX_MSG, &out);
        assert_true(rc == CODEC_OK || rc == CODEC_MALFORMED);
        assert_true((rc == CODEC_OK) == (out != NULL));
        codec_client_free(&out);
        free(p);
    }
    free(mbuf);
    free(full);
}

static void test_garbage_refused(void **state)
{
    (void)state;
    static const struct {
        const char *what;
        uint8_t bytes[8];
        size_t len;
        bool event_only; /* field 1 of the envelopes is a varint: valid there */
    } cases[] = {
        {"wire type 7", {0x0f, 0x00}, 2, false},
        {"length past the end", {0x0a, 0x05, 'a', 'b'}, 4, false},
        {"unterminated varint", {0x28, 0xff, 0xff, 0xff}, 4, false},
        {"field number 0", {0x00, 0x01}, 2, false},
        {"end group without start", {0x0c}, 1, false},
        {"string field as varint", {0x08, 0x01}, 2, true},
    };
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        codec_event_t *ev = NULL;
        int rc = codec_event_decode(cases[i].bytes, cases[i].len, MAX_MSG, &ev);
        if (rc != CODEC_MALFORMED)
            fail_msg("event case '%s' gave %d", cases[i].what, rc);
        assert_null(ev);
        if (cases[i].event_only)
            continue;
        codec_client_msg_t *cm = NULL;
        rc = codec_client_decode(cases[i].bytes, cases[i].len, MAX_MSG, &cm);
        if (rc != CODEC_MALFORMED)
            fail_msg("client case '%s' gave %d", cases[i].what, rc);
        codec_hub_msg_t *hm = NULL;
        rc = codec_hub_decode(cases[i].bytes, cases[i].len, MAX_MSG, &hm);
        if (rc != CODEC_MALFORMED)
            fail_msg("hub case '%s' gave %d", cases[i].what, rc);
    }
    codec_event_t *ev = NULL;

    /* pseudo-random bytes: any outcome but a crash or a leak */
    uint8_t junk[512];
    uint32_t x = 2463534242u;
    for (int round = 0; round < 2000; round++) {
        size_t n = (size_t)round % sizeof junk;
        for (size_t i = 0; i < n; i++) {
            x ^= x << 13;
            x ^= x >> 17;
            x ^= x << 5;
            junk[i] = (uint8_t)x;
        }
        codec_client_msg_t *cm = NULL;
        int rc = codec_client_decode(junk, n, MAX_MSG, &cm);
        assert_true(rc == CODEC_OK || rc == CODEC_MALFORMED);
        codec_client_free(&cm);
        rc = codec_event_decode(junk, n, MAX_MSG, &ev);
        assert_true(rc == CODEC_OK || rc == CODEC_MALFORMED);
        codec_event_free(&ev);
    }
}

static void test_too_large(void **state)
{
    (void)state;
    Civibus__V1__ServiceEvent ev = s_sample_event();
    size_t len;
    uint8_t *buf = s_pack_event(&ev, &len);
    codec_event_t *out = (codec_event_t *)buf;
    assert_int_equal(codec_event_decode(buf, len, len - 1, &out), CODEC_TOO_LARGE);
    assert_null(out);
    assert_int_equal(codec_event_decode(buf, len, len, &out), CODEC_OK);
    codec_event_free(&out);
    codec_client_msg_t *cm = NULL;
    assert_int_equal(codec_client_decode(buf, len, 10, &cm), CODEC_TOO_LARGE);
    assert_null(cm);
    codec_hub_msg_t *hm = NULL;
    assert_int_equal(codec_hub_decode(buf, len, 0, &hm), CODEC_TOO_LARGE);
    assert_null(hm);
    free(buf);
}

static void test_many_empty_repeated_fields(void **state)
{
    (void)state;
    /* 100k empty headers: tag 9 length-delimited (0x4a), length 0 */
    enum { N = 100000 };
    static const uint8_t head[] = {0x0a, 0x01, 'x', 0x1a, 0x01, 'a'}; /* event_id, type */
    size_t len = sizeof head + 2 * (size_t)N;
    uint8_t *buf = malloc(len);
    memcpy(buf, head, sizeof head);
    for (size_t i = 0; i < N; i++) {
        buf[sizeof head + 2 * i] = 0x4a;
        buf[sizeof head + 2 * i + 1] = 0x00;
    }
    codec_event_t *ev = NULL;
    int rc = codec_event_decode(buf, len, MAX_MSG, &ev);
    if (rc == CODEC_OK) {
        /* the budget allowed it: validation must still refuse it */
        char reason[64];
        assert_false(codec_event_valid(ev, reason, sizeof reason));
        assert_string_equal(reason, "more than 32 headers");
        codec_event_free(&ev);
    } else {
        assert_int_equal(rc, CODEC_MALFORMED);
        assert_null(ev);
    }

    /* the same shape for a Publish of 100k empty events inside a ClientMessage:
     * body field 2 (0x12), then the Publish length, then 0x12 0x00 pairs */
    size_t inner = 2 * (size_t)N;
    uint8_t *m = malloc(inner + 16);
    size_t p = 0;
    m[p++] = 0x08; /* version 1 */
    m[p++] = 0x01;
    m[p++] = 0x12;
    for (size_t v = inner; ; v >>= 7) { /* varint length */
        m[p++] = (uint8_t)((v & 0x7f) | (v >= 0x80 ? 0x80 : 0));
        if (v < 0x80)
            break;
    }
    for (size_t i = 0; i < N; i++) {
        m[p++] = 0x12;
        m[p++] = 0x00;
    }
    codec_client_msg_t *cm = NULL;
    rc = codec_client_decode(m, p, MAX_MSG, &cm);
    assert_true(rc == CODEC_OK || rc == CODEC_MALFORMED);
    if (rc == CODEC_OK) {
        assert_int_equal(cm->publish->n_events, N);
        codec_client_free(&cm);
    }
    free(m);

    /* 33 real headers decode (within budget) and fail validation */
    Civibus__V1__ServiceEvent e33 = s_sample_event();
    Civibus__V1__Header hs[33], *hp[33];
    for (int i = 0; i < 33; i++) {
        hs[i] = (Civibus__V1__Header)CIVIBUS__V1__HEADER__INIT;
        hs[i].key = "k";
        hs[i].value = "v";
        hp[i] = &hs[i];
    }
    e33.n_headers = 33;
    e33.headers = hp;
    size_t l33;
    uint8_t *b33 = s_pack_event(&e33, &l33);
    assert_int_equal(codec_event_decode(b33, l33, MAX_MSG, &ev), CODEC_OK);
    char reason[64];
    assert_false(codec_event_valid(ev, reason, sizeof reason));
    assert_string_equal(reason, "more than 32 headers");
    ev->n_headers = 32; /* exactly the ceiling is fine */
    assert_true(codec_event_valid(ev, reason, sizeof reason));
    ev->n_headers = 33;
    codec_event_free(&ev);
    free(b33);
    free(buf);
}

/* --- validity and syntax ------------------------------------------------- */

static void s_expect_invalid(codec_event_t *ev, const char *why)
{
    char reason[128] = "";
    assert_false(codec_event_valid(ev, reason, sizeof reason));
    assert_string_equal(reason, why);
    assert_false(codec_event_valid(ev, NULL, 0)); /* no reason buffer: still refused */
}

static void test_event_valid_reasons(void **state)
{
    (void)state;
    char s129[130], s257[258], s1025[1026];
    memset(s129, 'a', 129);
    s129[129] = '\0';
    memset(s257, 'a', 257);
    s257[257] = '\0';
    memset(s1025, 'a', 1025);
    s1025[1025] = '\0';

    codec_event_t *ev = s_decoded_sample();
    char *saved;

#define TRY(field, value, why)                                                                 \
    do {                                                                                       \
        saved = ev->field;                                                                     \
        ev->field = (value);                                                                   \
        s_expect_invalid(ev, why);                                                             \
        ev->field = saved;                                                                     \
        assert_true(codec_event_valid(ev, NULL, 0));                                           \
    } while (0)

    TRY(event_id, "", "event_id is empty");
    TRY(event_id, NULL, "event_id is empty");
    TRY(event_id, s129, "event_id is longer than 128 bytes");
    TRY(type, "", "type is not a dotted name of [A-Za-z0-9_-] up to 128 bytes");
    TRY(type, "a..b", "type is not a dotted name of [A-Za-z0-9_-] up to 128 bytes");
    TRY(type, "has space", "type is not a dotted name of [A-Za-z0-9_-] up to 128 bytes");
    TRY(type, s129, "type is not a dotted name of [A-Za-z0-9_-] up to 128 bytes");
    TRY(subject, s257, "subject is longer than 256 bytes");
    TRY(content_type, s129, "content_type is longer than 128 bytes");
    TRY(correlation_id, s129, "correlation_id is longer than 128 bytes");
    TRY(headers[0]->key, "", "a header has an empty key");
    TRY(headers[1]->key, s1025, "a header key or value is longer than 1024 bytes");
    TRY(headers[1]->value, s1025, "a header key or value is longer than 1024 bytes");
#undef TRY

    /* exactly at the ceilings is valid */
    s129[128] = '\0';
    s257[256] = '\0';
    saved = ev->event_id;
    ev->event_id = s129;
    char *saved_subject = ev->subject;
    ev->subject = s257;
    assert_true(codec_event_valid(ev, NULL, 0));
    ev->event_id = saved;
    ev->subject = saved_subject;

    ev->occurred_at = -1;
    s_expect_invalid(ev, "occurred_at is negative");
    ev->occurred_at = 0;
    assert_true(codec_event_valid(ev, NULL, 0));

    /* a short reason buffer is truncated, still terminated */
    ev->event_id = "";
    char small[6];
    assert_false(codec_event_valid(ev, small, sizeof small));
    assert_string_equal(small, "event");
    ev->event_id = saved;
    codec_event_free(&ev);
}

static void test_syntax(void **state)
{
    (void)state;
    char a64[65], a65[66], t128[129], t129[130];
    memset(a64, 'a', 64);
    a64[64] = '\0';
    memset(a65, 'a', 65);
    a65[65] = '\0';
    memset(t128, 'T', 128);
    t128[128] = '\0';
    memset(t129, 'T', 129);
    t129[129] = '\0';

    assert_true(codec_agency_valid("ee.population-register"));
    assert_true(codec_agency_valid("tax-office"));
    assert_true(codec_agency_valid("a1.b2.c3"));
    assert_true(codec_agency_valid(a64));
    assert_false(codec_agency_valid(a65));
    assert_false(codec_agency_valid(""));
    assert_false(codec_agency_valid(NULL));
    assert_false(codec_agency_valid("Tax-office"));
    assert_false(codec_agency_valid("tax_office"));
    assert_false(codec_agency_valid(".tax"));
    assert_false(codec_agency_valid("tax."));
    assert_false(codec_agency_valid("a..b"));
    assert_false(codec_agency_valid("a b"));
    assert_false(codec_agency_valid("a/b"));

    assert_true(codec_type_valid("population.birth.registered"));
    assert_true(codec_type_valid("Health_Visit-2.x"));
    assert_true(codec_type_valid("a"));
    assert_true(codec_type_valid(t128));
    assert_false(codec_type_valid(t129));
    assert_false(codec_type_valid(""));
    assert_false(codec_type_valid(NULL));
    assert_false(codec_type_valid("a..b"));
    assert_false(codec_type_valid(".a"));
    assert_false(codec_type_valid("a."));
    assert_false(codec_type_valid("a.*"));
    assert_false(codec_type_valid("a b"));
    assert_false(codec_type_valid("a\xc3\xa9"));

    assert_true(codec_filter_valid("*"));
    assert_true(codec_filter_valid("population.*"));
    assert_true(codec_filter_valid("population.birth.registered"));
    assert_true(codec_filter_valid("a.*"));
    assert_false(codec_filter_valid(".*"));
    assert_false(codec_filter_valid("*.a"));
    assert_false(codec_filter_valid("a*"));
    assert_false(codec_filter_valid("a.*.b"));
    assert_false(codec_filter_valid("a..*"));
    assert_false(codec_filter_valid("**"));
    assert_false(codec_filter_valid(""));
    assert_false(codec_filter_valid(NULL));

    assert_true(codec_name_valid("main"));
    assert_true(codec_name_valid("audit.v2_x-1"));
    assert_true(codec_name_valid(a64));
    assert_false(codec_name_valid(a65));
    assert_false(codec_name_valid(""));
    assert_false(codec_name_valid(NULL));
    assert_false(codec_name_valid("a b"));
    assert_false(codec_name_valid("a/b"));
    assert_false(codec_name_valid("a\nb"));
}

static bool s_match(const char *filter, const char *type)
{
    return codec_filter_match(filter, type, strlen(type));
}

static void test_filter_match(void **state)
{
    (void)state;
    assert_true(s_match("a.*", "a.b"));
    assert_true(s_match("a.*", "a.b.c"));
    assert_false(s_match("a.*", "a"));
    assert_false(s_match("a.*", "a."));
    assert_false(s_match("a.*", "ab.c"));
    assert_false(s_match("a.*", "b.a.c"));
    assert_true(s_match("population.*", "population.birth.registered"));
    assert_true(s_match("*", "anything.at.all"));
    assert_true(s_match("*", "x"));
    assert_true(s_match("a.b", "a.b"));
    assert_false(s_match("a.b", "a.b.c"));
    assert_false(s_match("a.b", "a"));
    assert_false(s_match("a.b", "a.c"));
    /* the type need not be NUL-terminated: only type_len bytes count */
    assert_true(codec_filter_match("a.b", "a.bc", 3));
    assert_false(codec_filter_match("a.bc", "a.bc", 3));
    assert_true(codec_filter_match("a.*", "a.bXXXX", 3));
    assert_false(codec_filter_match("a.*", "a.bXXXX", 2));
}

static void test_error_names(void **state)
{
    (void)state;
    assert_string_equal(codec_error_name(CIVIBUS__V1__ERROR_CODE__OK), "ok");
    assert_string_equal(codec_error_name(CIVIBUS__V1__ERROR_CODE__STORAGE_FULL), "storage_full");
    assert_string_equal(codec_error_name(CIVIBUS__V1__ERROR_CODE__NOT_AUTHORISED), "not_authorised");
    assert_string_equal(codec_error_name((Civibus__V1__ErrorCode)999), "unknown");
    int64_t t = codec_now_us();
    assert_true(t > (int64_t)1700000000 * 1000000);
    int64_t m1 = codec_mono_ms(), m2 = codec_mono_ms();
    assert_true(m2 >= m1);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_event_round_trip),
        cmocka_unit_test(test_client_publish_round_trip),
        cmocka_unit_test(test_hub_deliver_round_trip),
        cmocka_unit_test(test_unknown_fields_preserved),
        cmocka_unit_test(test_truncated_prefixes),
        cmocka_unit_test(test_garbage_refused),
        cmocka_unit_test(test_too_large),
        cmocka_unit_test(test_many_empty_repeated_fields),
        cmocka_unit_test(test_event_valid_reasons),
        cmocka_unit_test(test_syntax),
        cmocka_unit_test(test_filter_match),
        cmocka_unit_test(test_error_names),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
