/* test_resume - durable subscriptions resume after the last acknowledgement.
 *
 * A consumer acknowledges part of what it received and goes away (its client
 * destroyed, the hub restarted, or the hub killed); more events are published;
 * the subscription, opened again under the same name from its cursor, must
 * deliver exactly the events after the acknowledged one: none at or below the
 * cursor, none missing, in order. These hubs run with sync on, since what
 * survives a restart is the point.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include "itest.h"

#define A "agency-a"
#define C "agency-c"
#define FIRST_BATCH 100
#define ACKED 40
#define SECOND_BATCH 50
#define TOTAL (FIRST_BATCH + SECOND_BATCH)

static const char *const s_agencies[] = {A, C, NULL};

static int s_setup(void **state)
{
    *state = it_fix_new(s_agencies);
    return 0;
}

static int s_teardown(void **state)
{
    it_fix_t *f = *state;
    it_fix_destroy(&f);
    return 0;
}

/* Publish events first..first+n-1 of A and check they got seqs first+1.. */
static void s_publish(civ_client_t *pa, int first, int n)
{
    uint64_t *seqs = calloc((size_t)n, sizeof *seqs);
    assert_non_null(seqs);
    it_publish_many(pa, first, n, 256, seqs);
    for (int k = 0; k < n; k++)
        if (seqs[k] != (uint64_t)(first + k + 1))
            fail_msg("event %d got seq %" PRIu64 ", expected %d", first + k, seqs[k], first + k + 1);
    free(seqs);
}

/* Receive events seq from..to (inclusive) on c, exactly and in order. */
static void s_expect_range(civ_client_t *c, const char *name, uint64_t from, uint64_t to, int timeout_ms)
{
    size_t n = (size_t)(to - from + 1);
    civ_delivery_t **got = calloc(n, sizeof *got);
    assert_non_null(got);
    it_receive(c, name, got, n, timeout_ms, 0);
    for (size_t k = 0; k < n; k++) {
        assert_string_equal(got[k]->subscription, name);
        it_ev_check(got[k], A, (int)(from + k - 1), from + k);
    }
    it_free_all(got, n);
    free(got);
}

/* Wait until the hub reports cursor `want` for (agency, name). */
static void s_wait_cursor(civ_client_t *c, const char *agency, const char *name, uint64_t want)
{
    uint64_t seen = UINT64_MAX;
    int64_t deadline = it_mono_ms() + 5000;
    while (it_mono_ms() < deadline) {
        civ_status_t *st = NULL;
        int rc = civ_status(c, &st);
        if (rc != CIV_OK)
            fail_msg("civ_status: %s", civ_error_name(rc));
        for (size_t i = 0; i < st->n_subscriptions; i++)
            if (strcmp(st->subscriptions[i].agency, agency) == 0 && strcmp(st->subscriptions[i].name, name) == 0)
                seen = st->subscriptions[i].cursor;
        civ_status_destroy(&st);
        if (seen == want)
            return;
        it_sleep_ms(50);
    }
    fail_msg("cursor of %s/%s is %" PRIu64 ", expected %" PRIu64, agency, name, seen, want);
}

/* Subscribe from the start, take the first FIRST_BATCH events' first ACKED,
 * acknowledge them, and take a few more without acknowledging. */
static civ_client_t *s_consume_part(it_fix_t *f, const char *name)
{
    civ_client_t *c = it_client(f, C, 10000);
    const char *all[] = {"*"};
    assert_int_equal(civ_subscribe(c, name, all, 1, it_from_first(), 16), CIV_OK);
    s_expect_range(c, name, 1, ACKED, 10000);
    assert_int_equal(civ_ack(c, name, ACKED), CIV_OK);
    /* Received but never acknowledged: these must come again. */
    s_expect_range(c, name, ACKED + 1, ACKED + 5, 10000);
    s_wait_cursor(c, C, name, ACKED);
    return c;
}

static void test_resume_after_disconnect(void **state)
{
    it_fix_t *f = *state;
    it_start(f, NULL);
    civ_client_t *pa = it_client(f, A, 10000);
    s_publish(pa, 0, FIRST_BATCH);
    civ_client_t *c1 = s_consume_part(f, "resume");
    it_drop(f, &c1);

    s_publish(pa, FIRST_BATCH, SECOND_BATCH);
    civ_client_t *c2 = it_client(f, C, 10000);
    const char *all[] = {"*"};
    assert_int_equal(civ_subscribe(c2, "resume", all, 1, (civ_start_t){.kind = CIV_START_CURSOR}, 16), CIV_OK);
    s_expect_range(c2, "resume", ACKED + 1, TOTAL, 15000);
    it_expect_quiet(c2, 500);
    assert_int_equal(civ_ack(c2, "resume", TOTAL), CIV_OK);
    s_wait_cursor(c2, C, "resume", TOTAL);
}

/* Another name of the same agency, and the same name of the same agency
 * subscribed with an explicit start, do not see the old cursor. */
static void test_cursor_is_per_name(void **state)
{
    it_fix_t *f = *state;
    it_start(f, NULL);
    civ_client_t *pa = it_client(f, A, 10000);
    s_publish(pa, 0, FIRST_BATCH);
    civ_client_t *c1 = s_consume_part(f, "one");
    it_drop(f, &c1);

    civ_client_t *c2 = it_client(f, C, 10000);
    const char *all[] = {"*"};
    assert_int_equal(civ_subscribe(c2, "two", all, 1, (civ_start_t){.kind = CIV_START_CURSOR}, 16), CIV_OK);
    s_expect_range(c2, "two", 1, 10, 10000);
    assert_int_equal(civ_unsubscribe(c2, "two"), CIV_OK);
    /* An explicit start overrides the saved cursor. */
    assert_int_equal(civ_subscribe(c2, "one", all, 1, it_from_seq(90), 16), CIV_OK);
    s_expect_range(c2, "one", 90, FIRST_BATCH, 10000);
    it_expect_quiet(c2, 500);
}

static void test_resume_across_restart_same_client(void **state)
{
    it_fix_t *f = *state;
    it_start(f, NULL);
    civ_client_t *pa = it_client(f, A, 10000);
    s_publish(pa, 0, FIRST_BATCH);
    civ_client_t *c1 = s_consume_part(f, "kept");

    assert_int_equal(harness_stop(f->h), 0);
    it_start(f, NULL);
    /* Both clients live on; the SDK reconnects and re-subscribes itself. */
    assert_int_equal(it_last_seq(pa), FIRST_BATCH);
    s_publish(pa, FIRST_BATCH, SECOND_BATCH);
    /* What was handed out (1..ACKED+5) is not handed out again; the rest
     * follows in order. */
    s_expect_range(c1, "kept", ACKED + 6, TOTAL, 30000);
    it_expect_quiet(c1, 500);
    assert_int_equal(civ_ack(c1, "kept", TOTAL), CIV_OK);
    s_wait_cursor(c1, C, "kept", TOTAL);
}

static void test_resume_across_restart_new_client(void **state)
{
    it_fix_t *f = *state;
    it_start(f, NULL);
    civ_client_t *pa = it_client(f, A, 10000);
    s_publish(pa, 0, FIRST_BATCH);
    civ_client_t *c1 = s_consume_part(f, "fresh");
    it_drop(f, &c1);
    it_drop(f, &pa);

    assert_int_equal(harness_stop(f->h), 0);
    it_start(f, NULL);
    pa = it_client(f, A, 10000);
    assert_int_equal(it_last_seq(pa), FIRST_BATCH);
    s_publish(pa, FIRST_BATCH, SECOND_BATCH);

    civ_client_t *c2 = it_client(f, C, 10000);
    const char *all[] = {"*"};
    assert_int_equal(civ_subscribe(c2, "fresh", all, 1, (civ_start_t){.kind = CIV_START_CURSOR}, 16), CIV_OK);
    s_expect_range(c2, "fresh", ACKED + 1, TOTAL, 15000);
    it_expect_quiet(c2, 500);

    /* And the log itself came through the restart whole. */
    civ_client_t *c3 = it_client(f, C, 10000);
    assert_int_equal(civ_subscribe(c3, "audit", all, 1, it_from_first(), 64), CIV_OK);
    s_expect_range(c3, "audit", 1, TOTAL, 15000);
}

/* kill -9: every acknowledged event, and a cursor acknowledged well over the
 * flush interval ago, survive. */
static void test_resume_after_kill(void **state)
{
    it_fix_t *f = *state;
    it_start(f, NULL);
    civ_client_t *pa = it_client(f, A, 10000);
    s_publish(pa, 0, FIRST_BATCH);
    civ_client_t *c1 = s_consume_part(f, "killed");
    it_drop(f, &c1);
    it_sleep_ms(1000); /* cursor_flush_ms is 200 */

    harness_kill(f->h);
    it_start(f, NULL);
    assert_int_equal(it_last_seq(pa), FIRST_BATCH);
    s_publish(pa, FIRST_BATCH, SECOND_BATCH);
    civ_client_t *c2 = it_client(f, C, 10000);
    const char *all[] = {"*"};
    assert_int_equal(civ_subscribe(c2, "killed", all, 1, (civ_start_t){.kind = CIV_START_CURSOR}, 16), CIV_OK);
    s_expect_range(c2, "killed", ACKED + 1, TOTAL, 15000);
    it_expect_quiet(c2, 500);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_setup_teardown(test_resume_after_disconnect, s_setup, s_teardown),
        cmocka_unit_test_setup_teardown(test_cursor_is_per_name, s_setup, s_teardown),
        cmocka_unit_test_setup_teardown(test_resume_across_restart_same_client, s_setup, s_teardown),
        cmocka_unit_test_setup_teardown(test_resume_across_restart_new_client, s_setup, s_teardown),
        cmocka_unit_test_setup_teardown(test_resume_after_kill, s_setup, s_teardown),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
