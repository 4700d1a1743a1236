/* test_storage_full - the log at its storage ceiling.
 *
 * A hub with a 1 MiB map that may grow to 2 MiB is fed 1.5 KiB events until
 * it answers storage_full, first pipelined, then one event at a time until
 * even a single event no longer fits. At that point the hub must keep
 * serving: ping, status, replay and subscriptions work, and exactly the
 * acknowledged events are in the log, with gapless seqs and their bytes.
 * Restarted with a higher ceiling, it accepts events again, and the events
 * acknowledged before are all still there. Sync stays on: the journal's
 * promise about acknowledged events is what is tested.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include "itest.h"

#define A "agency-a"
#define C "agency-c"
#define PAYLOAD 1500
#define MAX_EVENTS 5000 /* 2 MiB hold far fewer */

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

typedef struct {
    char id[32];
    uint8_t payload[PAYLOAD];
    civ_event_t ev;
} s_big_t;

static void s_big_make(s_big_t *b, int i)
{
    snprintf(b->id, sizeof b->id, "full-%06d", i);
    for (size_t k = 0; k < PAYLOAD; k++)
        b->payload[k] = (uint8_t)((size_t)i * 131 + k);
    b->ev = (civ_event_t){.event_id = b->id,
                          .type = "population.address.changed",
                          .subject = "person/1",
                          .occurred_at = IT_T0 + i,
                          .payload = b->payload,
                          .payload_len = PAYLOAD};
}

/* The log's event for seq must be big event `index`. */
static void s_check(const civ_delivery_t *d, uint64_t seq, int index)
{
    s_big_t want;
    s_big_make(&want, index);
    if (d->seq != seq)
        fail_msg("expected seq %" PRIu64 ", got %" PRIu64, seq, d->seq);
    assert_string_equal(d->event.event_id, want.id);
    assert_string_equal(d->event.source, A);
    assert_int_equal(d->event.payload_len, PAYLOAD);
    assert_memory_equal(d->event.payload, want.payload, PAYLOAD);
}

/* Replay everything (count 0) and check it against index_of[seq]. */
static void s_check_log(civ_client_t *c, const int *index_of, uint64_t last)
{
    civ_error_t err = {0};
    civ_replay_t *r = civ_replay_open(c, it_from_first(), 0, &err);
    if (!r)
        fail_msg("civ_replay_open: %s", err.message);
    uint64_t seq = 1;
    for (int64_t deadline = it_mono_ms() + 30000; it_mono_ms() < deadline;) {
        civ_delivery_t *d = NULL;
        int rc = civ_replay_next(r, &d, 5000);
        if (rc != CIV_OK || !d) {
            if (rc != CIV_OK) {
                civ_replay_destroy(&r);
                fail_msg("civ_replay_next at seq %" PRIu64 ": %s", seq, civ_error_name(rc));
            }
            break;
        }
        if (seq > last) {
            civ_delivery_destroy(&d);
            civ_replay_destroy(&r);
            fail_msg("the log holds more than the %" PRIu64 " acknowledged events", last);
        }
        s_check(d, seq, index_of[seq]);
        civ_delivery_destroy(&d);
        seq++;
    }
    civ_replay_destroy(&r);
    if (seq != last + 1)
        fail_msg("replay ended after seq %" PRIu64 ", expected %" PRIu64, seq - 1, last);
}

static void test_storage_full(void **state)
{
    it_fix_t *f = *state;
    const char *small[] = {"--map-size-initial", "1MiB", "--map-size-max", "2MiB", NULL};
    it_start(f, small);
    civ_client_t *pa = it_client_opts(f, A, 10000, 64, 8);

    static int index_of[MAX_EVENTS + 1000]; /* seq -> event number */
    memset(index_of, 0, sizeof index_of);
    uint64_t accepted = 0, prev = 0;
    int full = 0, sent = 0;
    static s_big_t big;
    s_big_t *b = &big;

    /* Pipelined, until the first storage_full comes back. */
    int64_t deadline = it_mono_ms() + 45000;
    int acked = 0;
    while ((full == 0 && sent < MAX_EVENTS) || acked < sent) {
        if (it_mono_ms() > deadline)
            fail_msg("no storage_full after %d events (%" PRIu64 " accepted)", sent, accepted);
        if (full == 0 && sent < MAX_EVENTS && civ_publish_pending(pa) < 256) {
            uint64_t token;
            s_big_make(b, sent);
            int rc = civ_publish_send(pa, &b->ev, &token);
            if (rc != CIV_OK)
                fail_msg("civ_publish_send #%d: %s", sent, civ_error_name(rc));
            sent++;
            continue;
        }
        civ_ack_t ack;
        int rc = civ_publish_recv(pa, &ack, -1);
        if (rc != CIV_OK)
            fail_msg("civ_publish_recv after %d acks: %s", acked, civ_error_name(rc));
        char want[32];
        snprintf(want, sizeof want, "full-%06d", acked);
        assert_string_equal(ack.event_id, want);
        if (ack.error == CIV_OK) {
            assert_false(ack.duplicate);
            if (ack.seq <= prev || ack.seq > MAX_EVENTS)
                fail_msg("%s accepted with seq %" PRIu64 " after %" PRIu64, want, ack.seq, prev);
            index_of[ack.seq] = acked;
            prev = ack.seq;
            accepted++;
        } else if (ack.error == CIV_E_STORAGE_FULL) {
            assert_int_equal(ack.seq, 0);
            assert_true(ack.reason[0] != '\0');
            full++;
        } else {
            fail_msg("%s: unexpected error %s (%s)", want, civ_error_name(ack.error), ack.reason);
        }
        acked++;
    }
    assert_true(full > 0);
    assert_true(accepted > 100); /* 2 MiB hold several hundred 1.5 KiB events */

    /* One at a time, until even one event does not fit. */
    bool single_full = false;
    for (int tries = 0; tries < 500 && !single_full; tries++) {
        s_big_make(b, sent);
        civ_ack_t ack;
        int rc = civ_publish(pa, &b->ev, &ack);
        if (rc != CIV_OK)
            fail_msg("civ_publish #%d: %s", sent, civ_error_name(rc));
        if (ack.error == CIV_OK) {
            if (ack.seq != prev + 1 || ack.seq > MAX_EVENTS)
                fail_msg("accepted with seq %" PRIu64 " after %" PRIu64, ack.seq, prev);
            index_of[ack.seq] = sent;
            prev = ack.seq;
            accepted++;
        } else if (ack.error == CIV_E_STORAGE_FULL) {
            single_full = true;
        } else {
            fail_msg("unexpected error %s (%s)", civ_error_name(ack.error), ack.reason);
        }
        sent++;
    }
    assert_true(single_full);
    print_message("storage_full after %" PRIu64 " accepted events (%d sent)\n", accepted, sent);

    /* Every acknowledged seq is taken, gapless: the accepted ones were
     * increasing, so they are 1..accepted exactly when the last is. */
    assert_int_equal(prev, accepted);
    assert_int_equal(it_last_seq(pa), accepted);

    /* The hub keeps serving reads, status and subscriptions. */
    civ_client_t *cc = it_client(f, C, 10000);
    assert_int_equal(it_last_seq(cc), accepted);
    civ_status_t *st = NULL;
    assert_int_equal(civ_status(cc, &st), CIV_OK);
    assert_int_equal(st->last_seq, accepted);
    assert_int_equal(st->first_seq, 1);
    civ_status_destroy(&st);
    s_check_log(cc, index_of, accepted);
    const char *all[] = {"*"};
    int rc = civ_subscribe(cc, "at-the-ceiling", all, 1, it_from_first(), 256);
    if (rc != CIV_OK)
        fail_msg("civ_subscribe on a full hub: %s", civ_error_name(rc));
    civ_delivery_t **got = calloc(accepted, sizeof *got);
    assert_non_null(got);
    it_receive(cc, "at-the-ceiling", got, accepted, 20000, 100);
    for (uint64_t s = 1; s <= accepted; s++)
        s_check(got[s - 1], s, index_of[s]);
    it_free_all(got, accepted);
    free(got);
    it_expect_quiet(cc, 300);
    /* Publishing goes on being refused or, when LMDB could reuse pages
     * freed meanwhile, accepted with the next seq: never anything else. */
    s_big_make(b, sent);
    civ_ack_t ack;
    assert_int_equal(civ_publish(pa, &b->ev, &ack), CIV_OK);
    if (ack.error == CIV_OK) {
        assert_int_equal(ack.seq, accepted + 1);
        index_of[++accepted] = sent;
    } else if (ack.error != CIV_E_STORAGE_FULL) {
        fail_msg("on a full hub: %s (%s)", civ_error_name(ack.error), ack.reason);
    }
    sent++;

    /* A higher ceiling after a restart: accepted again, history intact. */
    it_drop(f, &cc);
    assert_int_equal(harness_stop(f->h), 0);
    const char *larger[] = {"--map-size-initial", "1MiB", "--map-size-max", "16MiB", NULL};
    it_start(f, larger);
    assert_int_equal(it_last_seq(pa), accepted);
    s_big_make(b, sent);
    assert_int_equal(civ_publish(pa, &b->ev, &ack), CIV_OK);
    if (ack.error != CIV_OK)
        fail_msg("after raising map_size_max: %s (%s)", civ_error_name(ack.error), ack.reason);
    assert_int_equal(ack.seq, accepted + 1);
    assert_false(ack.duplicate);
    index_of[accepted + 1] = sent;
    sent++;
    for (int k = 0; k < 200; k++, sent++) {
        s_big_make(b, sent);
        uint64_t token;
        assert_int_equal(civ_publish_send(pa, &b->ev, &token), CIV_OK);
    }
    for (int k = 0; k < 200; k++) {
        assert_int_equal(civ_publish_recv(pa, &ack, -1), CIV_OK);
        if (ack.error != CIV_OK)
            fail_msg("event %d after the restart: %s", k, civ_error_name(ack.error));
        assert_int_equal(ack.seq, accepted + 2 + (uint64_t)k);
        index_of[ack.seq] = sent - 200 + k;
    }
    civ_client_t *cc2 = it_client(f, C, 10000);
    s_check_log(cc2, index_of, accepted + 201);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_setup_teardown(test_storage_full, s_setup, s_teardown),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
