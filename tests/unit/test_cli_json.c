/* test_cli_json - unit tests of the civibus CLI's JSON line formats.
 *
 * Compiles adapters/cli/jsonev.c into the test (the CLI's objects are not a
 * library), then checks input lines -> events, events -> printed lines, the
 * ack/nack/invalid lines, ISO 8601 times and base64, without a hub.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include <stdlib.h>
#include <string.h>

#include "../../adapters/cli/jsonev.c"

/* --- helpers ------------------------------------------------------------- */

static jsonev_in_t *s_parse(const char *line, char *reason)
{
    return jsonev_in_parse(line, strlen(line), reason, JSONEV_REASON_LEN);
}

/* Parse line, expect failure, and expect reason to contain want. */
static void s_expect_invalid(const char *line, const char *want)
{
    char reason[JSONEV_REASON_LEN] = "";
    jsonev_in_t *in = s_parse(line, reason);
    if (in)
        fail_msg("accepted: %s", line);
    if (!strstr(reason, want))
        fail_msg("line %s: reason '%s' lacks '%s'", line, reason, want);
}

static void s_expect_payload(const civ_event_t *ev, const char *want)
{
    assert_int_equal(ev->payload_len, strlen(want));
    assert_memory_equal(ev->payload, want, strlen(want));
}

static bool s_is_uuid4(const char *s)
{
    if (strlen(s) != JSONEV_UUID_LEN || s[14] != '4' || !strchr("89ab", s[19]))
        return false;
    for (int i = 0; i < JSONEV_UUID_LEN; i++) {
        bool dash = i == 8 || i == 13 || i == 18 || i == 23;
        if (dash ? s[i] != '-' : !strchr("0123456789abcdef", s[i]))
            return false;
    }
    return true;
}

/* --- input lines ----------------------------------------------------------- */

static void test_in_full_line(void **state)
{
    (void)state;
    const char *line = "{\"type\":\"population.birth.registered\",\"event_id\":\"e-1\",\"subject\":\"person/1\","
                       "\"correlation_id\":\"c-9\",\"occurred_at\":\"2026-11-23T06:23:57.5+02:00\","
                       "\"headers\":{\"trace\":\"abc\",\"lang\":\"\"},"
                       "\"data\": {\"x\" : 0.1, \"big\": 123456789012345678901234567890, \"s\":\"a b\\n\"},"
                       "\"seq\":7,\"source\":\"ignored\"}";
    char reason[JSONEV_REASON_LEN];
    jsonev_in_t *in = s_parse(line, reason);
    if (!in)
        fail_msg("rejected: %s", reason);
    const civ_event_t *ev = jsonev_in_event(in);
    assert_string_equal(ev->type, "population.birth.registered");
    assert_string_equal(ev->event_id, "e-1");
    assert_string_equal(ev->subject, "person/1");
    assert_string_equal(ev->correlation_id, "c-9");
    assert_null(ev->source);
    assert_int_equal(ev->occurred_at, 1795407837500000LL);
    assert_string_equal(ev->content_type, "application/json");
    /* exact digits kept, whitespace inside strings kept */
    s_expect_payload(ev, "{\"x\":0.1,\"big\":123456789012345678901234567890,\"s\":\"a b\\n\"}");
    assert_int_equal(ev->n_headers, 2);
    assert_string_equal(ev->headers[0].key, "trace");
    assert_string_equal(ev->headers[0].value, "abc");
    assert_string_equal(ev->headers[1].key, "lang");
    assert_string_equal(ev->headers[1].value, "");
    jsonev_in_destroy(&in);
    assert_null(in);
    jsonev_in_destroy(&in); /* NULL is fine */
}

static void test_in_minimal_and_defaults(void **state)
{
    (void)state;
    char reason[JSONEV_REASON_LEN];
    jsonev_in_t *in = s_parse("{\"type\":\"a.b\"}", reason);
    assert_non_null(in);
    const civ_event_t *ev = jsonev_in_event(in);
    assert_true(s_is_uuid4(ev->event_id));
    assert_null(ev->subject);
    assert_null(ev->content_type);
    assert_int_equal(ev->payload_len, 0);
    assert_int_equal(ev->occurred_at, 0);
    assert_int_equal(ev->n_headers, 0);
    char first[JSONEV_UUID_LEN + 1];
    strcpy(first, ev->event_id);
    jsonev_in_destroy(&in);

    /* empty event_id and nulls count as absent */
    in = s_parse("{\"type\":\"a.b\",\"event_id\":\"\",\"subject\":null,\"headers\":null}", reason);
    assert_non_null(in);
    ev = jsonev_in_event(in);
    assert_true(s_is_uuid4(ev->event_id));
    assert_string_not_equal(ev->event_id, first);
    assert_null(ev->subject);
    jsonev_in_destroy(&in);
}

static void test_in_data_kinds(void **state)
{
    (void)state;
    char reason[JSONEV_REASON_LEN];
    const char *cases[][2] = {
        {"{\"type\":\"t\",\"data\":null}", "null"},
        {"{\"type\":\"t\",\"data\":\"text\"}", "\"text\""},
        {"{\"type\":\"t\",\"data\": [ 1 , { } , \"{\\\"q\\\" : 1}\" ] }", "[1,{},\"{\\\"q\\\" : 1}\"]"},
        {"{\"data\":-1.5e3,\"type\":\"t\"}", "-1.5e3"},
        {"{\"type\":\"t\",\"data\":{\"a\":{\"data\":1}},\"z\":{\"data\":2}}", "{\"a\":{\"data\":1}}"},
        {"{\"type\":\"t\",\"content_type\":\"application/json; charset=utf-8\",\"data\":true}", "true"},
    };
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        jsonev_in_t *in = s_parse(cases[i][0], reason);
        if (!in)
            fail_msg("rejected %s: %s", cases[i][0], reason);
        s_expect_payload(jsonev_in_event(in), cases[i][1]);
        assert_true(s_is_json_type(jsonev_in_event(in)->content_type));
        jsonev_in_destroy(&in);
    }

    jsonev_in_t *in = s_parse("{\"type\":\"t\",\"data_base64\":\"AAEC/w==\"}", reason);
    assert_non_null(in);
    const civ_event_t *ev = jsonev_in_event(in);
    assert_string_equal(ev->content_type, "application/octet-stream");
    assert_memory_equal(ev->payload, "\x00\x01\x02\xff", 4);
    assert_int_equal(ev->payload_len, 4);
    jsonev_in_destroy(&in);

    in = s_parse("{\"type\":\"t\",\"data_base64\":\"\",\"content_type\":\"text/plain\"}", reason);
    assert_non_null(in);
    assert_string_equal(jsonev_in_event(in)->content_type, "text/plain");
    assert_int_equal(jsonev_in_event(in)->payload_len, 0);
    jsonev_in_destroy(&in);
}

static void test_in_invalid(void **state)
{
    (void)state;
    s_expect_invalid("", "not valid JSON");
    s_expect_invalid("{\"type\":\"a\"", "not valid JSON");
    s_expect_invalid("{\"type\":\"a\"} x", "not valid JSON");
    s_expect_invalid("[1,2]", "not a JSON object");
    s_expect_invalid("\"type\"", "not a JSON object");
    s_expect_invalid("{}", "type is missing");
    s_expect_invalid("{\"type\":null}", "type is missing");
    s_expect_invalid("{\"type\":5}", "type must be a string");
    s_expect_invalid("{\"type\":\"a..b\"}", "type is not an event type");
    s_expect_invalid("{\"type\":\"a b\"}", "type is not an event type");
    s_expect_invalid("{\"type\":\"a\",\"type\":\"b\"}", "not valid JSON: duplicate");
    s_expect_invalid("{\"type\":\"a\",\"subject\":[]}", "subject must be a string");
    s_expect_invalid("{\"type\":\"a\",\"subject\":\"x\\u0000y\"}", "subject contains a NUL");
    s_expect_invalid("{\"type\":\"a\",\"occurred_at\":\"yesterday\"}", "occurred_at is not an ISO 8601");
    s_expect_invalid("{\"type\":\"a\",\"occurred_at\":12}", "occurred_at must be a string");
    s_expect_invalid("{\"type\":\"a\",\"headers\":[]}", "headers must be an object");
    s_expect_invalid("{\"type\":\"a\",\"headers\":{\"k\":1}}", "headers must be an object");
    s_expect_invalid("{\"type\":\"a\",\"headers\":{\"\":\"v\"}}", "empty name");
    s_expect_invalid("{\"type\":\"a\",\"data\":1,\"data_base64\":\"AA==\"}", "not both");
    s_expect_invalid("{\"type\":\"a\",\"data_base64\":\"AA=\"}", "not valid base64");
    s_expect_invalid("{\"type\":\"a\",\"data_base64\":\"A*==\"}", "not valid base64");
    s_expect_invalid("{\"type\":\"a\",\"data_base64\":7}", "data_base64 must be a string");
    s_expect_invalid("{\"type\":\"a\",\"content_type\":\"text/plain\",\"data\":1}", "use data_base64");
    s_expect_invalid("{\"type\":\"a\",\"data\":1e999}", "not valid JSON");
    s_expect_invalid("{\"type\":\"a\",\"data\":\"\xff\"}", "not valid JSON");

    char line[512];
    snprintf(line, sizeof line, "{\"type\":\"a\",\"event_id\":\"%0129d\"}", 0);
    s_expect_invalid(line, "event_id is longer than 128 bytes");
    snprintf(line, sizeof line, "{\"type\":\"a%0128d\"}", 0);
    s_expect_invalid(line, "type is not an event type");

    char big[4096];
    int n = snprintf(big, sizeof big, "{\"type\":\"a\",\"headers\":{");
    for (int i = 0; i <= CODEC_HEADERS_MAX; i++)
        n += snprintf(big + n, sizeof big - (size_t)n, "%s\"h%d\":\"v\"", i ? "," : "", i);
    snprintf(big + n, sizeof big - (size_t)n, "}}");
    s_expect_invalid(big, "more than 32 headers");
}

static void test_json_compact(void **state)
{
    (void)state;
    char *out = NULL, reason[JSONEV_REASON_LEN];
    size_t len = 0;
    const char *text = " { \"a\" : [ 1 , 2 ] ,\n \"b\" : \" x \" } ";
    assert_int_equal(jsonev_json_compact(text, strlen(text), &out, &len, reason, sizeof reason), JSONEV_OK);
    assert_string_equal(out, "{\"a\":[1,2],\"b\":\" x \"}");
    assert_int_equal(len, strlen(out));
    free(out);
    assert_int_equal(jsonev_json_compact("42", 2, &out, &len, reason, sizeof reason), JSONEV_OK);
    assert_string_equal(out, "42");
    free(out);
    assert_int_equal(jsonev_json_compact("{a:1}", 5, &out, &len, reason, sizeof reason), JSONEV_INVALID);
    assert_non_null(strstr(reason, "not valid JSON"));
    assert_int_equal(jsonev_json_compact("", 0, &out, &len, reason, sizeof reason), JSONEV_INVALID);
}

/* --- printed lines ---------------------------------------------------------- */

static civ_delivery_t s_delivery(void)
{
    static const civ_header_t headers[] = {{"trace", "abc"}, {"lang", "et"}};
    civ_delivery_t d;
    memset(&d, 0, sizeof d);
    d.subscription = "births";
    d.seq = 42;
    d.received_at = 1795407837123456LL; /* 2026-11-23T04:23:57.123456Z */
    d.event.event_id = "e-1";
    d.event.source = "ee.population-register";
    d.event.type = "population.birth.registered";
    d.event.subject = "person/1";
    d.event.correlation_id = "";
    d.event.occurred_at = 1795407837000000LL;
    d.event.content_type = "application/json";
    d.event.payload = "{ \"x\": 0.1,\n \"n\": 12345678901234567890 }";
    d.event.payload_len = strlen(d.event.payload);
    d.event.headers = headers;
    d.event.n_headers = 2;
    return d;
}

static void test_delivery_line_json(void **state)
{
    (void)state;
    civ_delivery_t d = s_delivery();
    char *line = jsonev_delivery_line(&d);
    assert_non_null(line);
    assert_string_equal(line, "{\"seq\":42,\"received_at\":\"2026-11-23T04:23:57.123456Z\","
                              "\"source\":\"ee.population-register\",\"event_id\":\"e-1\","
                              "\"type\":\"population.birth.registered\",\"subject\":\"person/1\","
                              "\"occurred_at\":\"2026-11-23T04:23:57.000000Z\",\"content_type\":\"application/json\","
                              "\"headers\":{\"trace\":\"abc\",\"lang\":\"et\"},"
                              "\"data\":{\"x\":0.1,\"n\":12345678901234567890}}");
    free(line);
}

static void test_delivery_line_binary(void **state)
{
    (void)state;
    civ_delivery_t d = s_delivery();
    d.event.subject = "";
    d.event.correlation_id = "c-1";
    d.event.n_headers = 0;
    d.event.source = "bad\xff";
    /* JSON content type but not JSON: printed as base64 */
    d.event.payload = "{not json";
    d.event.payload_len = 9;
    char *line = jsonev_delivery_line(&d);
    assert_string_equal(line, "{\"seq\":42,\"received_at\":\"2026-11-23T04:23:57.123456Z\","
                              "\"source\":\"bad\xEF\xBF\xBD\",\"event_id\":\"e-1\","
                              "\"type\":\"population.birth.registered\",\"correlation_id\":\"c-1\","
                              "\"occurred_at\":\"2026-11-23T04:23:57.000000Z\",\"content_type\":\"application/json\","
                              "\"data_base64\":\"e25vdCBqc29u\"}");
    free(line);

    d.event.content_type = "application/octet-stream";
    d.event.payload = "[1]";
    d.event.payload_len = 3;
    line = jsonev_delivery_line(&d);
    assert_non_null(strstr(line, ",\"data_base64\":\"WzFd\"}"));
    free(line);

    d.event.payload = NULL;
    d.event.payload_len = 0;
    d.event.content_type = "";
    line = jsonev_delivery_line(&d);
    assert_non_null(strstr(line, "\"content_type\":\"\",\"data_base64\":\"\"}"));
    free(line);
}

/* A printed event, read back as input, gives the same event. */
static void test_delivery_round_trip(void **state)
{
    (void)state;
    static const unsigned char bin[] = {0, 1, 2, 0xfe, 0xff, '\n'};
    for (int kind = 0; kind < 2; kind++) {
        civ_delivery_t d = s_delivery();
        d.event.correlation_id = "c-7";
        if (kind == 1) {
            d.event.content_type = "image/png";
            d.event.payload = bin;
            d.event.payload_len = sizeof bin;
        }
        char *line = jsonev_delivery_line(&d);
        char reason[JSONEV_REASON_LEN];
        jsonev_in_t *in = s_parse(line, reason);
        if (!in)
            fail_msg("rejected own line %s: %s", line, reason);
        const civ_event_t *ev = jsonev_in_event(in);
        assert_string_equal(ev->event_id, d.event.event_id);
        assert_string_equal(ev->type, d.event.type);
        assert_string_equal(ev->subject, d.event.subject);
        assert_string_equal(ev->correlation_id, d.event.correlation_id);
        assert_int_equal(ev->occurred_at, d.event.occurred_at);
        assert_string_equal(ev->content_type, d.event.content_type);
        assert_int_equal(ev->n_headers, 2);
        assert_string_equal(ev->headers[1].value, "et");
        if (kind == 0)
            s_expect_payload(ev, "{\"x\":0.1,\"n\":12345678901234567890}");
        else
            assert_memory_equal(ev->payload, bin, sizeof bin);
        jsonev_in_destroy(&in);
        free(line);
    }
}

static void test_result_lines(void **state)
{
    (void)state;
    char *line = jsonev_ack_line("e-1", 17, false);
    assert_string_equal(line, "{\"event_id\":\"e-1\",\"seq\":17}");
    free(line);
    line = jsonev_ack_line("e-1", 17, true);
    assert_string_equal(line, "{\"event_id\":\"e-1\",\"seq\":17,\"duplicate\":true}");
    free(line);
    line = jsonev_nack_line("e-2", "not_authorised", "may not publish \"x.y\"");
    assert_string_equal(line, "{\"event_id\":\"e-2\",\"error\":\"not_authorised\","
                              "\"reason\":\"may not publish \\\"x.y\\\"\"}");
    free(line);
    line = jsonev_invalid_line(3, "type is missing");
    assert_string_equal(line, "{\"line\":3,\"error\":\"invalid\",\"reason\":\"type is missing\"}");
    free(line);
}

/* --- times ------------------------------------------------------------------ */

static int64_t s_time(const char *s)
{
    int64_t us = INT64_MIN;
    if (jsonev_time_parse(s, &us) != JSONEV_OK)
        fail_msg("rejected %s", s);
    return us;
}

static void test_time_parse(void **state)
{
    (void)state;
    assert_int_equal(s_time("1970-01-01T00:00:00Z"), 0);
    assert_int_equal(s_time("2026-11-23T04:23:57Z"), 1795407837000000LL);
    assert_int_equal(s_time("2026-11-23T04:23:57.123456Z"), 1795407837123456LL);
    assert_int_equal(s_time("2026-11-23T04:23:57.1z"), 1795407837100000LL);
    assert_int_equal(s_time("2026-11-23T04:23:57.123456789Z"), 1795407837123456LL);
    assert_int_equal(s_time("2026-11-23T06:23:57+02:00"), 1795407837000000LL);
    assert_int_equal(s_time("2026-11-22T23:53:57.5-04:30"), 1795407837500000LL);
    assert_int_equal(s_time("2024-02-29t12:00:00Z"), 1709208000000000LL);
    assert_int_equal(s_time("1969-12-31T23:59:59.999999Z"), -1);
    assert_int_equal(s_time("0000-01-01T00:00:00Z"), -62167219200000000LL);

    const char *bad[] = {
        "",
        "2026-11-23",
        "2026-11-23T04:23:57",        /* no zone */
        "2026-11-23 04:23:57Z",
        "2026-11-23T04:23:57.Z",
        "2026-11-23T04:23:57.1234567890Z",
        "2026-13-01T00:00:00Z",
        "2026-02-29T00:00:00Z",       /* not a leap year */
        "2026-04-31T00:00:00Z",
        "2026-11-23T24:00:00Z",
        "2026-11-23T04:60:00Z",
        "2026-11-23T04:23:60Z",
        "2026-11-23T04:23:57+0200",
        "2026-11-23T04:23:57+24:00",
        "2026-11-23T04:23:57Zjunk",
        "26-11-23T04:23:57Z",
        "+2026-11-23T04:23:57Z",
    };
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
        int64_t us;
        if (jsonev_time_parse(bad[i], &us) != JSONEV_INVALID)
            fail_msg("accepted %s", bad[i]);
    }
}

static void test_time_round_trip(void **state)
{
    (void)state;
    char buf[JSONEV_TIME_LEN];
    jsonev_time_format(1795407837123456LL, buf, sizeof buf);
    assert_string_equal(buf, "2026-11-23T04:23:57.123456Z");
    jsonev_time_format(0, buf, sizeof buf);
    assert_string_equal(buf, "1970-01-01T00:00:00.000000Z");
    jsonev_time_format(-1, buf, sizeof buf);
    assert_string_equal(buf, "1969-12-31T23:59:59.999999Z");
    jsonev_time_format(951782400000000LL, buf, sizeof buf); /* leap day of a %400 year */
    assert_string_equal(buf, "2000-02-29T00:00:00.000000Z");
    jsonev_time_format(INT64_MIN, buf, sizeof buf); /* formats without overflow */
    jsonev_time_format(INT64_MAX, buf, sizeof buf);

    /* every 7777777.777777 s over four centuries, and around the epoch */
    for (int64_t us = -12622780800000000LL; us < 253402300799000000LL; us += 7777777777777LL + 1) {
        jsonev_time_format(us, buf, sizeof buf);
        int64_t back = INT64_MIN;
        assert_int_equal(jsonev_time_parse(buf, &back), JSONEV_OK);
        assert_int_equal(back, us);
    }
}

/* --- base64 ------------------------------------------------------------------- */

static void test_b64_round_trip(void **state)
{
    (void)state;
    unsigned char data[300];
    for (size_t i = 0; i < sizeof data; i++)
        data[i] = (unsigned char)(i * 37 + 11);
    for (size_t len = 0; len <= sizeof data; len++) {
        char *text = jsonev_b64_encode(data, len);
        assert_non_null(text);
        assert_int_equal(strlen(text), (len + 2) / 3 * 4);
        unsigned char *back = NULL;
        size_t back_len = 99;
        assert_int_equal(jsonev_b64_decode(text, strlen(text), &back, &back_len), JSONEV_OK);
        assert_int_equal(back_len, len);
        if (len)
            assert_memory_equal(back, data, len);
        free(back);
        free(text);
    }
    char *text = jsonev_b64_encode("foobar", 6);
    assert_string_equal(text, "Zm9vYmFy");
    free(text);
}

static void test_b64_decode(void **state)
{
    (void)state;
    unsigned char *out = NULL;
    size_t len = 0;
    const char *wrapped = "Zm9v\nYmE=\r\n";
    assert_int_equal(jsonev_b64_decode(wrapped, strlen(wrapped), &out, &len), JSONEV_OK);
    assert_int_equal(len, 5);
    assert_memory_equal(out, "fooba", 5);
    free(out);

    const char *bad[] = {"Zm9vY", "Zm9vYm=", "Zm=9", "Zm9v====", "Z===", "Zm9-", "Zm9_", "Zm9v\x01", "=AAA"};
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
        out = (unsigned char *)"x";
        if (jsonev_b64_decode(bad[i], strlen(bad[i]), &out, &len) != JSONEV_INVALID)
            fail_msg("accepted %s", bad[i]);
        assert_null(out);
    }
}

static void test_uuid(void **state)
{
    (void)state;
    char a[JSONEV_UUID_LEN + 1], b[JSONEV_UUID_LEN + 1];
    assert_int_equal(jsonev_uuid(a, sizeof a), JSONEV_OK);
    assert_int_equal(jsonev_uuid(b, sizeof b), JSONEV_OK);
    assert_true(s_is_uuid4(a));
    assert_true(s_is_uuid4(b));
    assert_string_not_equal(a, b);
    assert_int_equal(jsonev_uuid(a, JSONEV_UUID_LEN), JSONEV_NOMEM);
}

/* --- checks of events built from command-line options ------------------------- */

static void test_event_check(void **state)
{
    (void)state;
    char reason[JSONEV_REASON_LEN];
    civ_header_t h[] = {{"k", "v"}};
    civ_event_t ev = {.type = "a.b-c.d_e", .subject = "s", .headers = h, .n_headers = 1};
    assert_int_equal(jsonev_event_check(&ev, reason, sizeof reason), JSONEV_OK);
    ev.subject = "\xc3\x28";
    assert_int_equal(jsonev_event_check(&ev, reason, sizeof reason), JSONEV_INVALID);
    assert_string_equal(reason, "subject is not valid UTF-8");
    ev.subject = "\xed\xa0\x80"; /* a UTF-16 surrogate */
    assert_int_equal(jsonev_event_check(&ev, reason, sizeof reason), JSONEV_INVALID);
    ev.subject = "\xe2\x82\xac \xf0\x9f\x98\x80";
    assert_int_equal(jsonev_event_check(&ev, reason, sizeof reason), JSONEV_OK);
    ev.type = NULL;
    assert_int_equal(jsonev_event_check(&ev, reason, sizeof reason), JSONEV_INVALID);
    assert_string_equal(reason, "type is missing");
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_in_full_line),
        cmocka_unit_test(test_in_minimal_and_defaults),
        cmocka_unit_test(test_in_data_kinds),
        cmocka_unit_test(test_in_invalid),
        cmocka_unit_test(test_json_compact),
        cmocka_unit_test(test_delivery_line_json),
        cmocka_unit_test(test_delivery_line_binary),
        cmocka_unit_test(test_delivery_round_trip),
        cmocka_unit_test(test_result_lines),
        cmocka_unit_test(test_time_parse),
        cmocka_unit_test(test_time_round_trip),
        cmocka_unit_test(test_b64_round_trip),
        cmocka_unit_test(test_b64_decode),
        cmocka_unit_test(test_uuid),
        cmocka_unit_test(test_event_check),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
