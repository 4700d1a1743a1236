/* test_log - diagnostic lines: text and JSON rendering, escaping, the limiter.
 *
 * JSON lines are checked by parsing them with jansson, so "valid JSON" means
 * what a log shipper's parser means. The limiter runs on a clock the test
 * sets, so no assertion depends on how fast this machine is. Lines written to
 * stderr are caught by pointing descriptor 2 at a temporary file.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <cmocka.h>
#include <jansson.h>

#include "log.h"

/* 2026-11-23T04:23:57.123Z */
#define T_MS 1795407837123LL

static json_t *s_json(const char *kv)
{
    char line[LOG_LINE_MAX];
    size_t n = log_render(line, sizeof line, LOG_JSON, T_MS, LOG_WARN, "router", kv);
    assert_true(n > 2 && n <= sizeof line);
    assert_int_equal(line[n - 1], '\n');
    assert_null(memchr(line, '\n', n - 1)); /* one line, whatever the values held */
    json_error_t err;
    json_t *obj = json_loadb(line, n, 0, &err);
    if (!obj)
        fail_msg("not JSON (%s): %.*s", err.text, (int)n, line);
    assert_true(json_is_object(obj));
    return obj;
}

static const char *s_str(json_t *obj, const char *key)
{
    json_t *v = json_object_get(obj, key);
    if (!json_is_string(v))
        fail_msg("field %s is not a string", key);
    return json_string_value(v);
}

static void test_text_format(void **state)
{
    (void)state;
    char line[LOG_LINE_MAX];
    size_t n = log_render(line, sizeof line, LOG_TEXT, T_MS, LOG_INFO, "router", "event=listening last_seq=0");
    const char *want = "2026-11-23T04:23:57.123Z info router event=listening last_seq=0\n";
    assert_int_equal(n, strlen(want));
    assert_memory_equal(line, want, n);
    /* a date in a leap year, and the epoch */
    n = log_render(line, sizeof line, LOG_TEXT, 1709164800000LL, LOG_ERROR, "m", "x=1");
    assert_memory_equal(line, "2024-02-29T00:00:00.000Z error m x=1\n", n);
    n = log_render(line, sizeof line, LOG_TEXT, 0, LOG_DEBUG, "m", "x=1");
    assert_memory_equal(line, "1970-01-01T00:00:00.000Z debug m x=1\n", n);
}

static void test_json_fields_and_types(void **state)
{
    (void)state;
    json_t *o = s_json("event=publish_refused agency=tax-office code=not_authorised seq=42 ms=0.5 neg=-3 "
                       "lead=007 hex=0x11000002 key=12345678 key_id=0011223344556677 big=123456789012345678901");
    assert_string_equal(s_str(o, "time"), "2026-11-23T04:23:57.123Z");
    assert_string_equal(s_str(o, "level"), "warn");
    assert_string_equal(s_str(o, "module"), "router");
    assert_string_equal(s_str(o, "event"), "publish_refused");
    assert_string_equal(s_str(o, "agency"), "tax-office");
    assert_string_equal(s_str(o, "code"), "not_authorised");
    assert_true(json_is_integer(json_object_get(o, "seq")));
    assert_int_equal(json_integer_value(json_object_get(o, "seq")), 42);
    assert_true(json_is_real(json_object_get(o, "ms")));
    assert_int_equal(json_integer_value(json_object_get(o, "neg")), -3);
    /* not numbers: a leading zero, hex, identifiers, too long */
    assert_string_equal(s_str(o, "lead"), "007");
    assert_string_equal(s_str(o, "hex"), "0x11000002");
    assert_string_equal(s_str(o, "key"), "12345678");
    assert_string_equal(s_str(o, "key_id"), "0011223344556677");
    assert_string_equal(s_str(o, "big"), "123456789012345678901");
    json_decref(o);
}

/* What log_quote escapes comes back exactly, as one JSON string. */
static void test_json_escaping(void **state)
{
    (void)state;
    const char *nasty[] = {
        "plain",
        "with spaces and \"quotes\" and \\backslashes\\",
        "line\nbreak\r\tand\x01\x1f\x7f controls",
        "fake=pair event=forged",
        "\"} {\"level\":\"error\"",
        "caf\xc3\xa9 \xe2\x82\xac \xf0\x9f\x98\x80", /* valid UTF-8 passes */
        "",
    };
    for (size_t i = 0; i < sizeof nasty / sizeof nasty[0]; i++) {
        char quoted[600], kv[700];
        snprintf(kv, sizeof kv, "event=test reason=%s after=1", log_quote(nasty[i], quoted, sizeof quoted));
        json_t *o = s_json(kv);
        assert_string_equal(s_str(o, "event"), "test");
        assert_string_equal(s_str(o, "reason"), nasty[i]);
        assert_int_equal(json_integer_value(json_object_get(o, "after")), 1);
        assert_int_equal(json_object_size(o), 6); /* time level module event reason after */
        json_decref(o);
    }
    /* bytes that are not UTF-8 become U+FFFD rather than breaking the line */
    char quoted[64], kv[128];
    snprintf(kv, sizeof kv, "event=test reason=%s", log_quote("a\xff\xc3(b\xed\xa0\x80", quoted, sizeof quoted));
    json_t *o = s_json(kv);
    assert_string_equal(s_str(o, "reason"), "a\xef\xbf\xbd\xef\xbf\xbd(b\xef\xbf\xbd\xef\xbf\xbd\xef\xbf\xbd");
    json_decref(o);
    /* text that is not a pair is kept, not dropped */
    o = s_json("event=x this is prose");
    assert_string_equal(s_str(o, "text"), "this is prose");
    json_decref(o);
}

static void test_json_truncation(void **state)
{
    (void)state;
    static char kv[3 * LOG_LINE_MAX];
    /* control characters grow six-fold in JSON */
    memcpy(kv, "event=big reason=\"", 18);
    size_t n = 18;
    for (int i = 0; i < 1200; i++) {
        memcpy(kv + n, "\\x01", 4);
        n += 4;
    }
    kv[n++] = '"';
    memcpy(kv + n, " tail=1", 8);
    json_t *o = s_json(kv);
    assert_true(json_is_true(json_object_get(o, "truncated")));
    assert_string_equal(s_str(o, "event"), "big");
    assert_true(strlen(s_str(o, "reason")) > 100);
    json_decref(o);
    /* a small buffer still gets a closed object */
    char line[200];
    size_t len = log_render(line, sizeof line, LOG_JSON, T_MS, LOG_INFO, "router",
                            "event=x a=aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa "
                            "b=bbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbb c=12345678901234567");
    json_error_t err;
    o = json_loadb(line, len, 0, &err);
    assert_non_null(o);
    assert_true(json_is_true(json_object_get(o, "truncated")));
    json_decref(o);
}

/* ---- the limiter ------------------------------------------------------------- */

static int64_t s_now;
static int64_t s_clock(void)
{
    return s_now;
}

typedef struct {
    int saved;
    FILE *file;
} s_capture_t;

static void s_capture_start(s_capture_t *c)
{
    fflush(stderr);
    c->file = tmpfile();
    assert_non_null(c->file);
    c->saved = dup(STDERR_FILENO);
    assert_true(c->saved >= 0);
    assert_true(dup2(fileno(c->file), STDERR_FILENO) >= 0);
}

/* Stop capturing; the lines written meanwhile, as one string (free it). */
static char *s_capture_end(s_capture_t *c)
{
    assert_true(dup2(c->saved, STDERR_FILENO) >= 0);
    close(c->saved);
    long len = ftell(c->file);
    if (len < 0)
        len = 0;
    char *text = calloc(1, (size_t)len + 1);
    rewind(c->file);
    size_t got = fread(text, 1, (size_t)len, c->file);
    text[got] = '\0';
    fclose(c->file);
    return text;
}

static int s_count(const char *text, const char *needle)
{
    int n = 0;
    for (const char *p = strstr(text, needle); p; p = strstr(p + 1, needle))
        n++;
    return n;
}

static void test_limiter(void **state)
{
    (void)state;
    log_set_level(LOG_DEBUG);
    log_set_format(LOG_TEXT);
    log_set_clock(s_clock);
    log_limit_configure(3, 1000);
    s_now = 5000;
    s_capture_t c;
    s_capture_start(&c);
    for (int i = 0; i < 10; i++)
        log_limited(LOG_WARN, "router", "publish_refused.bad_signature", "event=publish_refused n=%d", i);
    /* another kind has its own budget */
    for (int i = 0; i < 2; i++)
        log_limited(LOG_WARN, "router", "publish_refused.not_authorised", "event=other n=%d", i);
    /* still within the interval: nothing summed up yet */
    s_now = 5999;
    log_flush_suppressed(false);
    char *text = s_capture_end(&c);
    assert_int_equal(s_count(text, "event=publish_refused"), 3);
    assert_non_null(strstr(text, "n=2\n"));
    assert_null(strstr(text, "n=3\n"));
    assert_int_equal(s_count(text, "event=other"), 2);
    assert_int_equal(s_count(text, "suppressed"), 0);
    free(text);

    /* the interval is over: one summary, by the flush */
    s_now = 6000;
    s_capture_start(&c);
    log_flush_suppressed(false);
    log_flush_suppressed(false);
    text = s_capture_end(&c);
    assert_int_equal(s_count(text, "\n"), 1);
    assert_non_null(strstr(text, " warn router event=suppressed key=publish_refused.bad_signature suppressed=7 "
                                 "interval_ms=1000\n"));
    free(text);

    /* or by the next line of that kind, which then gets through */
    s_now = 7000;
    s_capture_start(&c);
    for (int i = 0; i < 5; i++)
        log_limited(LOG_ERROR, "router", "publish_refused.bad_signature", "event=publish_refused n=%d", i);
    s_now = 8500;
    log_limited(LOG_WARN, "router", "publish_refused.bad_signature", "event=publish_refused n=last");
    text = s_capture_end(&c);
    assert_int_equal(s_count(text, "event=publish_refused"), 4);
    /* reported at the highest level withheld, before the new line */
    char *sum = strstr(text, " error router event=suppressed key=publish_refused.bad_signature suppressed=2 ");
    assert_non_null(sum);
    assert_true(sum < strstr(text, "n=last"));
    free(text);

    /* at stop every count is written, interval over or not */
    s_capture_start(&c);
    for (int i = 0; i < 6; i++)
        log_limited(LOG_WARN, "auth", "handshake_refused", "event=handshake_refused n=%d", i);
    log_flush_suppressed(true);
    text = s_capture_end(&c);
    assert_non_null(strstr(text, "warn auth event=suppressed key=handshake_refused suppressed=3 "));
    free(text);

    /* lines below the level are neither written nor counted */
    log_set_level(LOG_ERROR);
    s_capture_start(&c);
    for (int i = 0; i < 20; i++)
        log_limited(LOG_WARN, "router", "quiet", "event=quiet");
    log_flush_suppressed(true);
    text = s_capture_end(&c);
    assert_string_equal(text, "");
    free(text);
    log_set_level(LOG_INFO);
}

/* More kinds than slots: the overflow shares one budget, still limited. */
static void test_limiter_many_kinds(void **state)
{
    (void)state;
    log_set_clock(s_clock);
    log_limit_configure(2, 1000);
    s_now = 100000;
    s_capture_t c;
    s_capture_start(&c);
    for (int i = 0; i < 500; i++) {
        char key[32];
        snprintf(key, sizeof key, "kind.%d", i);
        log_limited(LOG_WARN, "router", key, "event=kind n=%d", i);
    }
    log_flush_suppressed(true);
    char *text = s_capture_end(&c);
    int lines = s_count(text, "event=kind");
    /* each of the 63 own slots lets 2 through, the shared one 2 */
    assert_true(lines <= 64 * 2);
    assert_true(lines >= 63);
    assert_non_null(strstr(text, "log event=suppressed key=other suppressed="));
    free(text);
    log_set_clock(NULL);
    log_limit_configure(10, 1000);
}

static void test_json_output_and_parse(void **state)
{
    (void)state;
    assert_int_equal(log_format_parse("text"), LOG_TEXT);
    assert_int_equal(log_format_parse("json"), LOG_JSON);
    assert_int_equal(log_format_parse("xml"), -1);
    assert_int_equal(log_level_parse("warn"), LOG_WARN);
    assert_int_equal(log_level_parse("loud"), -1);
    log_set_format(LOG_JSON);
    s_capture_t c;
    s_capture_start(&c);
    log_info("main", "event=exit code=%d", 0);
    log_write_signal_safe(LOG_WARN, "main", "event=second_signal signal=SIGTERM action=exit_now code=3");
    log_debug("main", "event=hidden");
    char *text = s_capture_end(&c);
    log_set_format(LOG_TEXT);
    char *nl = strchr(text, '\n');
    assert_non_null(nl);
    json_error_t err;
    json_t *a = json_loadb(text, (size_t)(nl - text), 0, &err);
    json_t *b = json_loads(nl + 1, JSON_DISABLE_EOF_CHECK, &err);
    assert_non_null(a);
    assert_non_null(b);
    assert_string_equal(s_str(a, "event"), "exit");
    assert_string_equal(s_str(a, "code"), "0");
    assert_string_equal(s_str(b, "event"), "second_signal");
    assert_string_equal(s_str(b, "level"), "warn");
    assert_null(strstr(text, "hidden"));
    json_decref(a);
    json_decref(b);
    free(text);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_text_format),
        cmocka_unit_test(test_json_fields_and_types),
        cmocka_unit_test(test_json_escaping),
        cmocka_unit_test(test_json_truncation),
        cmocka_unit_test(test_limiter),
        cmocka_unit_test(test_limiter_many_kinds),
        cmocka_unit_test(test_json_output_and_parse),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
