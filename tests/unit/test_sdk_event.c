/* test_sdk_event - libcivibus without a hub: event packing and decoding,
 * event ids, error names, and the ways civ_client_new and the API refuse.
 *
 * Usage example of the packing path (what civ_publish does inside):
 *   sdk_rand_t rnd; sdk_rand_init(&rnd);
 *   sdk_event_pack(&ev, "tax-office", &rnd, &bytes, &len, id, why, sizeof why);
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>

#include <cmocka.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "civibus.h"
#include "codec.h"
#include "keyfile.h"
#include "sdk.h"

typedef struct {
    char dir[64];
    char agency_key[128];
    char agency_pub[128];
    char hub_key[128];
    char hub_pub[128];
} keys_t;

static int s_keys_setup(void **state)
{
    keys_t *k = calloc(1, sizeof *k);
    snprintf(k->dir, sizeof k->dir, "/tmp/civ-sdk-test-XXXXXX");
    assert_non_null(mkdtemp(k->dir));
    char err[256];
    assert_int_equal(keyfile_generate(k->dir, "tax-office", "tax-office", err, sizeof err), KEYFILE_OK);
    assert_int_equal(keyfile_generate(k->dir, "hub", NULL, err, sizeof err), KEYFILE_OK);
    snprintf(k->agency_key, sizeof k->agency_key, "%s/tax-office.key", k->dir);
    snprintf(k->agency_pub, sizeof k->agency_pub, "%s/tax-office.pub", k->dir);
    snprintf(k->hub_key, sizeof k->hub_key, "%s/hub.key", k->dir);
    snprintf(k->hub_pub, sizeof k->hub_pub, "%s/hub.pub", k->dir);
    *state = k;
    return 0;
}

static int s_keys_teardown(void **state)
{
    keys_t *k = *state;
    const char *files[] = {k->agency_key, k->agency_pub, k->hub_key, k->hub_pub};
    for (size_t i = 0; i < 4; i++)
        unlink(files[i]);
    rmdir(k->dir);
    free(k);
    return 0;
}

static void s_assert_uuid4(const char *id)
{
    assert_int_equal(strlen(id), 36);
    for (int i = 0; i < 36; i++) {
        if (i == 8 || i == 13 || i == 18 || i == 23)
            assert_int_equal(id[i], '-');
        else
            assert_non_null(strchr("0123456789abcdef", id[i]));
    }
    assert_int_equal(id[14], '4');
    assert_non_null(strchr("89ab", id[19]));
}

static void test_pack_round_trip(void **state)
{
    (void)state;
    static const uint8_t payload[] = {'{', 0, 1, 2, 0xff, '}'};
    civ_header_t headers[] = {{"trace", "abc"}, {"empty", ""}, {"utf8", "K\xc3\xb5ik"}};
    civ_event_t ev = {
        .event_id = "evt-1",
        .source = "someone-else",
        .type = "population.birth.registered",
        .subject = "person/39001010000",
        .occurred_at = 1700000000123456,
        .content_type = "application/json",
        .payload = payload,
        .payload_len = sizeof payload,
        .correlation_id = "corr-9",
        .headers = headers,
        .n_headers = 3,
    };
    sdk_rand_t rnd;
    sdk_rand_init(&rnd);
    uint8_t *bytes = NULL;
    size_t len = 0;
    char id[CIV_ID_MAX + 1], why[256];
    assert_int_equal(sdk_event_pack(&ev, "tax-office", &rnd, &bytes, &len, id, why, sizeof why), CIV_OK);
    assert_string_equal(id, "evt-1");

    codec_event_t *out = NULL;
    assert_int_equal(codec_event_decode(bytes, len, 1 << 20, &out), CODEC_OK);
    assert_string_equal(out->event_id, "evt-1");
    assert_string_equal(out->source, "tax-office"); /* the library's, not the caller's */
    assert_string_equal(out->type, ev.type);
    assert_string_equal(out->subject, ev.subject);
    assert_int_equal(out->occurred_at, ev.occurred_at);
    assert_string_equal(out->content_type, ev.content_type);
    assert_int_equal(out->payload.len, sizeof payload);
    assert_memory_equal(out->payload.data, payload, sizeof payload);
    assert_string_equal(out->correlation_id, ev.correlation_id);
    assert_int_equal(out->n_headers, 3);
    for (size_t i = 0; i < 3; i++) {
        assert_string_equal(out->headers[i]->key, headers[i].key);
        assert_string_equal(out->headers[i]->value, headers[i].value);
    }
    assert_true(codec_event_valid(out, why, sizeof why));
    codec_event_free(&out);

    /* The delivery side gives back the same fields and the bytes unchanged. */
    civ_delivery_t *d = NULL;
    uint8_t chain[32];
    for (int i = 0; i < 32; i++)
        chain[i] = (uint8_t)(i * 7);
    Civibus__V1__Delivery from = CIVIBUS__V1__DELIVERY__INIT;
    from.seq = 42;
    from.received_at = 1700000000999999;
    from.event.data = bytes;
    from.event.len = len;
    from.chain.data = chain;
    from.chain.len = sizeof chain;
    assert_int_equal(sdk_delivery_new("births", &from, &d), CIV_OK);
    assert_true(d->has_chain);
    assert_memory_equal(d->chain, chain, sizeof chain);
    assert_string_equal(d->subscription, "births");
    assert_int_equal(d->seq, 42);
    assert_int_equal(d->received_at, 1700000000999999);
    assert_int_equal(d->raw_len, len);
    assert_memory_equal(d->raw, bytes, len);
    assert_string_equal(d->event.event_id, "evt-1");
    assert_string_equal(d->event.source, "tax-office");
    assert_string_equal(d->event.type, ev.type);
    assert_string_equal(d->event.subject, ev.subject);
    assert_int_equal(d->event.occurred_at, ev.occurred_at);
    assert_string_equal(d->event.content_type, ev.content_type);
    assert_int_equal(d->event.payload_len, sizeof payload);
    assert_memory_equal(d->event.payload, payload, sizeof payload);
    assert_string_equal(d->event.correlation_id, ev.correlation_id);
    assert_int_equal(d->event.n_headers, 3);
    for (size_t i = 0; i < 3; i++) {
        assert_string_equal(d->event.headers[i].key, headers[i].key);
        assert_string_equal(d->event.headers[i].value, headers[i].value);
    }
    civ_delivery_destroy(&d);
    assert_null(d);
    civ_delivery_destroy(&d);
    civ_delivery_destroy(NULL);
    free(bytes);
}

static void test_pack_defaults(void **state)
{
    (void)state;
    civ_event_t ev = {.type = "tax.return.filed"};
    sdk_rand_t rnd;
    sdk_rand_init(&rnd);
    enum { N = 2000 };
    char (*ids)[CIV_ID_MAX + 1] = calloc(N, sizeof *ids);
    for (int i = 0; i < N; i++) {
        uint8_t *bytes = NULL;
        size_t len = 0;
        char why[256];
        int64_t before = codec_now_us();
        assert_int_equal(sdk_event_pack(&ev, "tax-office", &rnd, &bytes, &len, ids[i], why, sizeof why), CIV_OK);
        int64_t after = codec_now_us();
        s_assert_uuid4(ids[i]);
        codec_event_t *out = NULL;
        assert_int_equal(codec_event_decode(bytes, len, 1 << 20, &out), CODEC_OK);
        assert_string_equal(out->event_id, ids[i]);
        assert_true(out->occurred_at >= before && out->occurred_at <= after);
        assert_string_equal(out->subject, "");
        assert_int_equal(out->payload.len, 0);
        assert_int_equal(out->n_headers, 0);
        codec_event_free(&out);
        free(bytes);
    }
    for (int i = 0; i < N; i++)
        for (int j = i + 1; j < N; j++)
            assert_string_not_equal(ids[i], ids[j]);
    free(ids);

    /* An empty id is generated too. */
    ev.event_id = "";
    uint8_t *bytes = NULL;
    size_t len = 0;
    char id[CIV_ID_MAX + 1], why[256];
    assert_int_equal(sdk_event_pack(&ev, "tax-office", &rnd, &bytes, &len, id, why, sizeof why), CIV_OK);
    s_assert_uuid4(id);
    free(bytes);
}

static void test_pack_refuses(void **state)
{
    (void)state;
    sdk_rand_t rnd;
    sdk_rand_init(&rnd);
    char long_id[CIV_ID_MAX + 2];
    memset(long_id, 'x', sizeof long_id - 1);
    long_id[sizeof long_id - 1] = '\0';
    civ_header_t many[CODEC_HEADERS_MAX + 1];
    for (size_t i = 0; i < CODEC_HEADERS_MAX + 1; i++)
        many[i] = (civ_header_t){"k", "v"};
    civ_header_t empty_key = {"", "v"};
    civ_header_t bad_utf8 = {"k", "\xc3("};
    struct {
        civ_event_t ev;
        const char *why;
    } cases[] = {
        {{.type = NULL}, "type"},
        {{.type = "a..b"}, "type"},
        {{.type = "a.b", .event_id = long_id}, "event_id"},
        {{.type = "a.b", .headers = many, .n_headers = CODEC_HEADERS_MAX + 1}, "headers"},
        {{.type = "a.b", .headers = NULL, .n_headers = 1}, "headers"},
        {{.type = "a.b", .headers = &empty_key, .n_headers = 1}, "key"},
        {{.type = "a.b", .headers = &bad_utf8, .n_headers = 1}, "UTF-8"},
        {{.type = "a.b", .subject = "\xed\xa0\x80"}, "UTF-8"},  /* a surrogate */
        {{.type = "a.b", .subject = "\xc0\xaf"}, "UTF-8"},      /* overlong */
        {{.type = "a.b", .payload = NULL, .payload_len = 3}, "payload"},
        {{.type = "a.b", .occurred_at = -5}, "occurred_at"},
    };
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        uint8_t *bytes = (uint8_t *)"not touched";
        size_t len = 99;
        char id[CIV_ID_MAX + 1], why[256] = "";
        assert_int_equal(sdk_event_pack(&cases[i].ev, "tax-office", &rnd, &bytes, &len, id, why, sizeof why),
                         CIV_E_INVALID);
        assert_null(bytes);
        assert_non_null(strstr(why, cases[i].why));
    }
    uint8_t *bytes = NULL;
    size_t len = 0;
    char id[CIV_ID_MAX + 1], why[256];
    assert_int_equal(sdk_event_pack(NULL, "tax-office", &rnd, &bytes, &len, id, why, sizeof why), CIV_E_INVALID);

    /* Over the SDK's event ceiling: refused here, never sent. */
    size_t big = SDK_EVENT_MAX + 1;
    void *payload = calloc(1, big);
    civ_event_t huge = {.type = "a.b", .payload = payload, .payload_len = big};
    assert_int_equal(sdk_event_pack(&huge, "tax-office", &rnd, &bytes, &len, id, why, sizeof why), CIV_E_TOO_LARGE);
    assert_null(bytes);
    huge.payload_len = SDK_EVENT_MAX - 1024;
    assert_int_equal(sdk_event_pack(&huge, "tax-office", &rnd, &bytes, &len, id, why, sizeof why), CIV_OK);
    assert_true(len <= SDK_EVENT_MAX);
    free(bytes);
    free(payload);
}

static void test_delivery_refuses_garbage(void **state)
{
    (void)state;
    static const uint8_t garbage[] = {0x0a, 0x50, 'x'}; /* a string claiming 80 bytes */
    civ_delivery_t *d = (civ_delivery_t *)1;
    Civibus__V1__Delivery from = CIVIBUS__V1__DELIVERY__INIT;
    from.seq = 1;
    from.event.data = (uint8_t *)garbage;
    from.event.len = sizeof garbage;
    assert_int_equal(sdk_delivery_new("s", &from, &d), CIV_E_PROTOCOL);
    assert_null(d);
    /* An empty event decodes to empty fields, not NULL ones; no chain sent. */
    from.seq = 7;
    from.event.len = 0;
    assert_int_equal(sdk_delivery_new("", &from, &d), CIV_OK);
    assert_false(d->has_chain);
    assert_string_equal(d->event.type, "");
    assert_string_equal(d->event.event_id, "");
    assert_int_equal(d->event.n_headers, 0);
    assert_null(d->event.headers);
    civ_delivery_destroy(&d);
}

static void test_error_names(void **state)
{
    (void)state;
    struct {
        int code;
        const char *name;
    } codes[] = {
        {CIV_OK, "ok"},
        {CIV_E_NOT_AUTHORISED, "not_authorised"},
        {CIV_E_MALFORMED, "malformed"},
        {CIV_E_TOO_LARGE, "too_large"},
        {CIV_E_STORAGE_FULL, "storage_full"},
        {CIV_E_UNAVAILABLE, "unavailable"},
        {CIV_E_INTERNAL, "internal"},
        {CIV_E_UNKNOWN_SUBSCRIPTION, "unknown_subscription"},
        {CIV_E_BAD_REQUEST, "bad_request"},
        {CIV_E_UNSUPPORTED_VERSION, "unsupported_version"},
        {CIV_E_BAD_SIGNATURE, "bad_signature"},
        {CIV_E_BEHIND_RETENTION, "behind_retention"},
        {CIV_E_UNSIGNED, "unsigned"},
        {CIV_E_UNKNOWN_KEY, "unknown_key"},
        {CIV_E_TIMEOUT, "timeout"},
        {CIV_E_INVALID, "invalid"},
        {CIV_E_KEY, "key"},
        {CIV_E_TRANSPORT, "transport"},
        {CIV_E_PROTOCOL, "protocol"},
        {CIV_E_NOMEM, "nomem"},
    };
    size_t n = sizeof codes / sizeof codes[0];
    const char *unknown = civ_strerror(-999);
    for (size_t i = 0; i < n; i++) {
        assert_string_equal(civ_error_name(codes[i].code), codes[i].name);
        const char *text = civ_strerror(codes[i].code);
        assert_non_null(text);
        assert_true(strlen(text) > 3);
        assert_string_not_equal(text, unknown);
        for (size_t j = 0; j < i; j++)
            assert_string_not_equal(text, civ_strerror(codes[j].code));
    }
    assert_string_equal(civ_error_name(-999), "unknown");
    assert_string_equal(civ_error_name(5), "unknown");
    assert_string_equal(civ_error_name(-10), "bad_signature");
    assert_string_equal(civ_error_name(-11), "behind_retention");
    assert_string_equal(civ_error_name(-12), "unknown");

    /* Wire codes map by negation. */
    assert_int_equal(sdk_code_from_wire(CIVIBUS__V1__ERROR_CODE__OK), CIV_OK);
    for (int w = 1; w <= 11; w++)
        assert_int_equal(sdk_code_from_wire(w), -w);
    assert_int_equal(sdk_code_from_wire(12), CIV_E_PROTOCOL);
    assert_int_equal(sdk_code_from_wire(-1), CIV_E_PROTOCOL);
}

static civ_client_t *s_new(const char *endpoint, const char *hub_key, const char *key, civ_error_t *err)
{
    civ_options_t opts = {.endpoint = endpoint, .hub_key_file = hub_key, .key_file = key, .timeout_ms = 300};
    return civ_client_new(&opts, err);
}

static void test_client_new_errors(void **state)
{
    keys_t *k = *state;
    civ_error_t err;
    char missing[160];
    snprintf(missing, sizeof missing, "%s/nobody.key", k->dir);

    assert_null(s_new("tcp://127.0.0.1:1", k->hub_pub, missing, &err));
    assert_int_equal(err.code, CIV_E_KEY);
    assert_non_null(strstr(err.message, "nobody.key"));

    assert_null(s_new("tcp://127.0.0.1:1", missing, k->agency_key, &err));
    assert_int_equal(err.code, CIV_E_KEY);
    assert_non_null(strstr(err.message, "nobody.key"));

    /* The hub's own key file has no agency line. */
    assert_null(s_new("tcp://127.0.0.1:1", k->hub_pub, k->hub_key, &err));
    assert_int_equal(err.code, CIV_E_KEY);
    assert_non_null(strstr(err.message, "agency"));

    /* A public key file has no secret. */
    assert_null(s_new("tcp://127.0.0.1:1", k->hub_pub, k->agency_pub, &err));
    assert_int_equal(err.code, CIV_E_KEY);
    assert_non_null(strstr(err.message, "curve-secret"));

    assert_null(s_new("nonsense", k->hub_pub, k->agency_key, &err));
    assert_int_equal(err.code, CIV_E_TRANSPORT);
    assert_true(strlen(err.message) > 0);
    assert_null(s_new("bogus://x", k->hub_pub, k->agency_key, &err));
    assert_int_equal(err.code, CIV_E_TRANSPORT);

    assert_null(civ_client_new(NULL, &err));
    assert_int_equal(err.code, CIV_E_INVALID);
    assert_null(s_new(NULL, k->hub_pub, k->agency_key, &err));
    assert_int_equal(err.code, CIV_E_INVALID);
    civ_options_t opts = {.endpoint = "tcp://127.0.0.1:1", .hub_key_file = k->hub_pub,
                          .key_file = k->agency_key, .window = SDK_WINDOW_MAX + 1};
    assert_null(civ_client_new(&opts, &err));
    assert_int_equal(err.code, CIV_E_INVALID);
    assert_null(s_new(NULL, k->hub_pub, k->agency_key, NULL)); /* err may be NULL */
    civ_client_destroy(NULL);
}

/* Without a hub every round trip times out, on time, and arguments are
 * still checked. */
static void test_client_without_hub(void **state)
{
    keys_t *k = *state;
    civ_error_t err;
    civ_client_t *c = s_new("tcp://127.0.0.1:1", k->hub_pub, k->agency_key, &err);
    assert_non_null(c);
    assert_string_equal(civ_client_agency(c), "tax-office");

    int64_t t0 = codec_mono_ms();
    uint64_t last = 0;
    assert_int_equal(civ_ping(c, &last), CIV_E_TIMEOUT);
    int64_t took = codec_mono_ms() - t0;
    assert_true(took >= 290 && took < 2000);

    civ_event_t ev = {.type = "tax.return.filed", .payload = "{}", .payload_len = 2};
    uint64_t token = 0;
    assert_int_equal(civ_publish_pending(c), 0);
    assert_int_equal(civ_publish_send(c, &ev, &token), CIV_OK);
    assert_int_equal(token, 1);
    assert_int_equal(civ_publish_send(c, &ev, &token), CIV_OK);
    assert_int_equal(token, 2);
    assert_int_equal(civ_publish_pending(c), 2);
    civ_ack_t ack;
    assert_int_equal(civ_publish_recv(c, &ack, 50), CIV_E_TIMEOUT);
    assert_int_equal(civ_publish_pending(c), 2);
    civ_event_t bad = {.type = "no spaces"};
    assert_int_equal(civ_publish_send(c, &bad, &token), CIV_E_INVALID);
    assert_int_equal(civ_publish(c, &bad, &ack), CIV_E_INVALID);
    assert_int_equal(civ_publish(c, &ev, &ack), CIV_E_TIMEOUT);
    assert_int_equal(ack.error, CIV_E_TIMEOUT);
    assert_int_equal(strlen(ack.event_id), 36); /* the generated id, for a retry */
    assert_int_equal(civ_publish_pending(c), 2);

    const char *filters[] = {"tax.*"};
    const char *bad_filters[] = {"tax*"};
    civ_start_t first = {.kind = CIV_START_FIRST};
    assert_int_equal(civ_subscribe(c, "returns", bad_filters, 1, first, 10), CIV_E_INVALID);
    assert_int_equal(civ_subscribe(c, "bad name", filters, 1, first, 10), CIV_E_INVALID);
    assert_int_equal(civ_subscribe(c, "returns", filters, 0, first, 10), CIV_E_INVALID);
    assert_int_equal(civ_subscribe(c, "returns", filters, 1, first, 10), CIV_E_TIMEOUT);
    assert_int_equal(civ_ack(c, "returns", 1), CIV_E_UNKNOWN_SUBSCRIPTION);
    assert_int_equal(civ_unsubscribe(c, "returns"), CIV_E_UNKNOWN_SUBSCRIPTION);
    civ_delivery_t *d = (civ_delivery_t *)1;
    assert_int_equal(civ_next(c, &d, 0), CIV_E_TIMEOUT);
    assert_null(d);

    assert_null(civ_replay_open(c, (civ_start_t){.kind = CIV_START_LATEST}, 0, &err));
    assert_int_equal(err.code, CIV_E_INVALID);
    civ_replay_t *r = civ_replay_open(c, first, 10, &err);
    assert_non_null(r);
    assert_int_equal(civ_replay_next(r, &d, 50), CIV_E_TIMEOUT);
    civ_status_t *st = NULL;
    assert_int_equal(civ_status(c, &st), CIV_E_TIMEOUT);
    assert_null(st);

    /* A replay outliving its client reports it instead of crashing. */
    civ_client_destroy(&c);
    assert_null(c);
    assert_int_equal(civ_replay_next(r, &d, 0), CIV_E_INVALID);
    civ_replay_destroy(&r);
    assert_null(r);
    civ_replay_destroy(NULL);
    civ_status_destroy(NULL);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_pack_round_trip),
        cmocka_unit_test(test_pack_defaults),
        cmocka_unit_test(test_pack_refuses),
        cmocka_unit_test(test_delivery_refuses_garbage),
        cmocka_unit_test(test_error_names),
        cmocka_unit_test(test_client_new_errors),
        cmocka_unit_test(test_client_without_hub),
    };
    return cmocka_run_group_tests(tests, s_keys_setup, s_keys_teardown);
}
