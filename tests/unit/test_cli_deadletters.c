/* test_cli_deadletters - unit tests of the JSON that `civibus deadletters`
 * prints, and of the attempt in a printed event line.
 *
 * Compiles adapters/cli/jsonev.c into the test, as test_cli_json does, and
 * compares whole lines: they are a contract with scripts (docs/CLI.md).
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include <stdlib.h>
#include <string.h>

#include "../../adapters/cli/jsonev.c"

#define T0 1795392000000000LL /* 2026-11-23T00:00:00Z */

static void s_expect_line(char *line, const char *want)
{
    assert_non_null(line);
    char got[2048];
    snprintf(got, sizeof got, "%s", line);
    free(line); /* before a failure jumps away */
    if (strcmp(got, want) != 0)
        fail_msg("got  %s\nwant %s", got, want);
}

static void test_list(void **state)
{
    (void)state;
    civ_dead_letter_t items[3];
    memset(items, 0, sizeof items);
    items[0] = (civ_dead_letter_t){.seq = 3, .attempts = 5, .dead_at = T0 + 1, .received_at = T0};
    snprintf(items[0].reason, sizeof items[0].reason, "record \"3\" is broken");
    snprintf(items[0].type, sizeof items[0].type, "tax.return.filed");
    snprintf(items[0].source, sizeof items[0].source, "tax-office");
    snprintf(items[0].event_id, sizeof items[0].event_id, "r-3");
    /* Gone from the log: no event fields. */
    items[1] = (civ_dead_letter_t){.seq = 9, .attempts = 1, .dead_at = T0, .gone = true, .redrive = true};
    snprintf(items[1].reason, sizeof items[1].reason, "nacked");
    /* Withheld by the policy: the entry's time, no description. Bad bytes
     * from the hub are printed as U+FFFD. */
    items[2] = (civ_dead_letter_t){.seq = 12, .attempts = 2, .dead_at = T0, .received_at = T0};
    snprintf(items[2].reason, sizeof items[2].reason, "bad \xff byte");
    civ_dead_letters_t r = {.n = 3, .items = items, .total = 40, .next_after = 12};
    s_expect_line(jsonev_dead_letters_line("list", "work", &r),
                  "{\"op\":\"list\",\"subscription\":\"work\",\"total\":40,\"dead_letters\":["
                  "{\"seq\":3,\"attempts\":5,\"dead_at\":\"2026-11-23T00:00:00.000001Z\","
                  "\"reason\":\"record \\\"3\\\" is broken\",\"redrive\":false,\"gone\":false,"
                  "\"received_at\":\"2026-11-23T00:00:00.000000Z\",\"type\":\"tax.return.filed\","
                  "\"source\":\"tax-office\",\"event_id\":\"r-3\"},"
                  "{\"seq\":9,\"attempts\":1,\"dead_at\":\"2026-11-23T00:00:00.000000Z\",\"reason\":\"nacked\","
                  "\"redrive\":true,\"gone\":true},"
                  "{\"seq\":12,\"attempts\":2,\"dead_at\":\"2026-11-23T00:00:00.000000Z\","
                  "\"reason\":\"bad \xef\xbf\xbd byte\",\"redrive\":false,\"gone\":false,"
                  "\"received_at\":\"2026-11-23T00:00:00.000000Z\"}],\"next_after\":12}");
    civ_dead_letters_t empty = {0};
    s_expect_line(jsonev_dead_letters_line("list", "work", &empty),
                  "{\"op\":\"list\",\"subscription\":\"work\",\"total\":0,\"dead_letters\":[]}");
}

static void test_redrive_drop(void **state)
{
    (void)state;
    uint64_t not_found[] = {5, 6};
    uint64_t gone[] = {9};
    civ_dead_letters_t r = {.total = 3, .affected = 2, .n_not_found = 2, .not_found = not_found, .n_gone = 1,
                            .gone = gone};
    s_expect_line(jsonev_dead_letters_line("redrive", "work", &r),
                  "{\"op\":\"redrive\",\"subscription\":\"work\",\"total\":3,\"affected\":2,\"not_found\":[5,6],"
                  "\"gone\":[9]}");
    r.n_gone = 0;
    s_expect_line(jsonev_dead_letters_line("drop", "work", &r),
                  "{\"op\":\"drop\",\"subscription\":\"work\",\"total\":3,\"affected\":2,\"not_found\":[5,6]}");
}

static void test_delivery_attempt(void **state)
{
    (void)state;
    civ_delivery_t d;
    memset(&d, 0, sizeof d);
    d.subscription = "work";
    d.seq = 7;
    d.received_at = T0;
    d.event = (civ_event_t){.event_id = "e-7", .source = "tax-office", .type = "tax.x", .subject = "",
                            .occurred_at = T0, .content_type = "application/octet-stream", .payload = "",
                            .correlation_id = ""};
    d.attempt = 1;
    s_expect_line(jsonev_delivery_line(&d),
                  "{\"seq\":7,\"received_at\":\"2026-11-23T00:00:00.000000Z\",\"source\":\"tax-office\","
                  "\"event_id\":\"e-7\",\"type\":\"tax.x\",\"occurred_at\":\"2026-11-23T00:00:00.000000Z\","
                  "\"content_type\":\"application/octet-stream\",\"data_base64\":\"\"}");
    d.attempt = 3;
    s_expect_line(jsonev_delivery_line(&d),
                  "{\"seq\":7,\"received_at\":\"2026-11-23T00:00:00.000000Z\",\"attempt\":3,"
                  "\"source\":\"tax-office\",\"event_id\":\"e-7\",\"type\":\"tax.x\","
                  "\"occurred_at\":\"2026-11-23T00:00:00.000000Z\",\"content_type\":\"application/octet-stream\","
                  "\"data_base64\":\"\"}");
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_list),
        cmocka_unit_test(test_redrive_drop),
        cmocka_unit_test(test_delivery_attempt),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
