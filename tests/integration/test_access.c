/* test_access - the access policy enforced by a real hub.
 *
 * Publishing beyond the policy is refused with not_authorised while allowed
 * events flow; a subscription whose filters the policy allows nothing of is
 * refused; a subscriber with filter "*" and a replay see only what the
 * policy lets their agency receive; SIGHUP applies a new policy without
 * dropping connections, and a broken policy file keeps the old one.
 */
#include <setjmp.h>
#include <signal.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include "itest.h"

#define POP "population-register"
#define TAX "tax-office"

static const char *const s_agencies[] = {POP, TAX, NULL};

static char s_policy_path[600];

static void s_write_policy(it_fix_t *f, const char *text)
{
    snprintf(s_policy_path, sizeof s_policy_path, "%s/policy.conf", harness_dir(f->h));
    FILE *out = fopen(s_policy_path, "w");
    assert_non_null(out);
    fputs(text, out);
    fclose(out);
}

static const char *s_policy_v1 = "allow population-register publish population.*\n"
                                 "allow tax-office subscribe population.birth.*\n"
                                 "allow tax-office publish tax.*\n";

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

static int s_publish(civ_client_t *c, const char *type, const char *id, civ_ack_t *ack)
{
    civ_event_t ev = {.event_id = id, .type = type, .payload = "{}", .payload_len = 2};
    int rc = civ_publish(c, &ev, ack);
    assert_int_equal(rc, CIV_OK);
    return ack->error;
}

static void s_start(it_fix_t *f)
{
    s_write_policy(f, s_policy_v1);
    const char *flags[] = {"--no-sync", "--policy", s_policy_path, NULL};
    it_start(f, flags);
}

static void test_publish_and_subscribe_enforced(void **state)
{
    it_fix_t *f = *state;
    s_start(f);
    civ_client_t *pop = it_client(f, POP, 5000);
    civ_client_t *tax = it_client(f, TAX, 5000);
    civ_ack_t ack;

    /* Beyond the policy: refused with a reason, others keep flowing. */
    assert_int_equal(s_publish(pop, "population.birth.registered", "b1", &ack), CIV_OK);
    assert_int_equal(ack.seq, 1);
    assert_int_equal(s_publish(tax, "population.birth.registered", "forged", &ack), CIV_E_NOT_AUTHORISED);
    assert_non_null(strstr(ack.reason, "policy"));
    assert_int_equal(s_publish(pop, "tax.assessment.issued", "t0", &ack), CIV_E_NOT_AUTHORISED);
    assert_int_equal(s_publish(pop, "population.address.changed", "a1", &ack), CIV_OK);
    assert_int_equal(ack.seq, 2);
    assert_int_equal(s_publish(tax, "tax.assessment.issued", "t1", &ack), CIV_OK);
    assert_int_equal(ack.seq, 3);
    assert_int_equal(s_publish(pop, "population.birth.registered", "b2", &ack), CIV_OK);
    assert_int_equal(ack.seq, 4);
    assert_true(it_log_contains(f, "the access policy does not allow tax-office to publish", 2000));

    /* A subscription that the policy allows nothing of is refused. */
    const char *tax_only[] = {"tax.*"};
    assert_int_equal(civ_subscribe(tax, "nothing", tax_only, 1, it_from_first(), 16), CIV_E_NOT_AUTHORISED);
    const char *none_for_pop[] = {"population.*"};
    assert_int_equal(civ_subscribe(pop, "own", none_for_pop, 1, it_from_first(), 16), CIV_E_NOT_AUTHORISED);

    /* "*" is accepted, but delivers only births to the tax office. */
    const char *all[] = {"*"};
    assert_int_equal(civ_subscribe(tax, "all", all, 1, it_from_first(), 16), CIV_OK);
    civ_delivery_t *got[2] = {0};
    it_receive(tax, "all", got, 2, 5000, 0);
    assert_int_equal(got[0]->seq, 1);
    assert_int_equal(got[1]->seq, 4);
    assert_string_equal(got[1]->event.event_id, "b2");
    assert_int_equal(civ_ack(tax, "all", 4), CIV_OK);
    it_free_all(got, 2);
    it_expect_quiet(tax, 300);

    /* A replay is held to the same rule. */
    civ_error_t err;
    civ_replay_t *r = civ_replay_open(tax, it_from_first(), 0, &err);
    assert_non_null(r);
    uint64_t seqs[4];
    size_t n = 0;
    civ_delivery_t *d = NULL;
    while (civ_replay_next(r, &d, 5000) == CIV_OK && d) {
        assert_true(n < 4);
        seqs[n++] = d->seq;
        civ_delivery_destroy(&d);
    }
    civ_replay_destroy(&r);
    assert_int_equal(n, 2);
    assert_int_equal(seqs[0], 1);
    assert_int_equal(seqs[1], 4);
}

static void test_reload_keeps_connections(void **state)
{
    it_fix_t *f = *state;
    s_start(f);
    civ_client_t *pop = it_client(f, POP, 5000);
    civ_client_t *tax = it_client(f, TAX, 5000);
    civ_ack_t ack;
    const char *all[] = {"*"};
    assert_int_equal(civ_subscribe(tax, "live", all, 1, it_from_first(), 16), CIV_OK);
    assert_int_equal(s_publish(pop, "population.address.changed", "a1", &ack), CIV_OK);

    /* A broken file is refused and the old policy stays in force. */
    s_write_policy(f, "allow tax-office subscribe\n");
    assert_int_equal(kill(harness_pid(f->h), SIGHUP), 0);
    assert_true(it_log_contains(f, "action=kept_previous", 5000));
    assert_int_equal(s_publish(tax, "tax.assessment.issued", "t1", &ack), CIV_OK);

    /* The new policy lets the tax office follow addresses too, and stops its
     * own publishing; the same connections go on. */
    s_write_policy(f, "allow population-register publish population.*\n"
                      "allow tax-office subscribe population.*\n");
    assert_int_equal(kill(harness_pid(f->h), SIGHUP), 0);
    assert_true(it_log_contains(f, "event=policy_loaded", 5000));
    for (int i = 0; i < 50 && s_publish(tax, "tax.assessment.issued", "t2", &ack) == CIV_OK; i++) {
        /* the reload happens between two turns of the hub's loop */
        it_sleep_ms(50);
    }
    assert_int_equal(ack.error, CIV_E_NOT_AUTHORISED);
    assert_int_equal(s_publish(pop, "population.address.changed", "a2", &ack), CIV_OK);
    uint64_t a2 = ack.seq;
    civ_delivery_t *d = NULL;
    uint64_t last = 0;
    for (int i = 0; i < 50 && last != a2; i++) {
        if (civ_next(tax, &d, 200) == CIV_OK && d) {
            last = d->seq;
            civ_delivery_destroy(&d);
        }
    }
    assert_int_equal(last, a2);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_setup_teardown(test_publish_and_subscribe_enforced, s_setup, s_teardown),
        cmocka_unit_test_setup_teardown(test_reload_keeps_connections, s_setup, s_teardown),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
