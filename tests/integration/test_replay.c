/* test_replay - reading the log with civ_replay_*.
 *
 * Replays from a sequence number with and without a count, from the first
 * entry, and from a wall-clock time taken between two publish phases, each
 * checked event by event (seq and content) and for its exact end. A larger
 * log (20,000 events) must come back whole and in order, which takes several
 * replay replies (the hub caps each at replay_max).
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include "itest.h"

#define A "agency-a"
#define B "agency-b"
#define N_LARGE 20000

static const char *const s_agencies[] = {A, B, NULL};
static const char *const s_flags[] = {"--no-sync", NULL};

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

/* Replay `from`/count on c and expect exactly seqs first..last of agency A
 * (event i has seq i + 1), then the end. Returns the received_at of each
 * event through at (may be NULL; indexed by seq - first). */
static void s_expect_replay(civ_client_t *c, civ_start_t from, uint64_t count, uint64_t first, uint64_t last,
                            int64_t *at)
{
    civ_error_t err = {0};
    civ_replay_t *r = civ_replay_open(c, from, count, &err);
    if (!r)
        fail_msg("civ_replay_open: %s (%s)", err.message, civ_error_name(err.code));
    uint64_t want = first;
    int64_t deadline = it_mono_ms() + 30000;
    for (;;) {
        if (it_mono_ms() > deadline) {
            civ_replay_destroy(&r);
            fail_msg("replay stalled before seq %" PRIu64, want);
        }
        civ_delivery_t *d = NULL;
        int rc = civ_replay_next(r, &d, 5000);
        if (rc != CIV_OK) {
            civ_replay_destroy(&r);
            fail_msg("civ_replay_next before seq %" PRIu64 ": %s", want, civ_error_name(rc));
        }
        if (!d)
            break;
        if (want > last || d->seq != want) {
            uint64_t got = d->seq;
            civ_delivery_destroy(&d);
            civ_replay_destroy(&r);
            fail_msg("replay returned seq %" PRIu64 ", expected %s%" PRIu64, got, want > last ? "the end after " : "",
                     want > last ? last : want);
        }
        assert_string_equal(d->subscription, "");
        it_ev_check(d, A, (int)(d->seq - 1), want);
        if (at)
            at[want - first] = d->received_at;
        civ_delivery_destroy(&d);
        want++;
    }
    /* The end stays the end. */
    civ_delivery_t *d = NULL;
    assert_int_equal(civ_replay_next(r, &d, 1000), CIV_OK);
    assert_null(d);
    civ_replay_destroy(&r);
    if (want != last + 1)
        fail_msg("replay ended after seq %" PRIu64 ", expected %" PRIu64, want - 1, last);
}

static void test_replay_ranges(void **state)
{
    it_fix_t *f = *state;
    it_start(f, s_flags);
    civ_client_t *pa = it_client(f, A, 10000);
    civ_client_t *rb = it_client(f, B, 10000);
    it_publish_many(pa, 0, 100, 128, NULL);
    assert_int_equal(it_last_seq(rb), 100);

    s_expect_replay(rb, it_from_seq(30), 10, 30, 39, NULL);
    s_expect_replay(rb, it_from_seq(1), 1, 1, 1, NULL);
    s_expect_replay(rb, it_from_first(), 0, 1, 100, NULL);
    s_expect_replay(rb, it_from_first(), 7, 1, 7, NULL);
    s_expect_replay(rb, it_from_seq(95), 0, 95, 100, NULL);
    s_expect_replay(rb, it_from_seq(90), 50, 90, 100, NULL); /* count beyond the end */
    s_expect_replay(rb, it_from_seq(100), 0, 100, 100, NULL);
    s_expect_replay(rb, it_from_seq(101), 0, 101, 100, NULL); /* nothing */
    s_expect_replay(rb, it_from_seq(5000), 3, 5000, 4999, NULL);
    /* The publisher's own client replays too. */
    s_expect_replay(pa, it_from_seq(50), 2, 50, 51, NULL);
}

/* count 0 means up to the last seq when the replay was opened: events
 * published while it is read are not part of it. */
static void test_replay_to_end_is_fixed_at_open(void **state)
{
    it_fix_t *f = *state;
    it_start(f, s_flags);
    civ_client_t *pa = it_client(f, A, 10000);
    civ_client_t *rb = it_client(f, B, 10000);
    it_publish_many(pa, 0, 50, 128, NULL);
    assert_int_equal(it_last_seq(rb), 50);

    civ_error_t err = {0};
    civ_replay_t *r = civ_replay_open(rb, it_from_first(), 0, &err);
    assert_non_null(r);
    civ_delivery_t *d = NULL;
    int rc = civ_replay_next(r, &d, 5000);
    if (rc != CIV_OK || !d) {
        civ_replay_destroy(&r);
        fail_msg("first replay event: %s", civ_error_name(rc));
    }
    assert_int_equal(d->seq, 1);
    civ_delivery_destroy(&d);
    it_publish_many(pa, 50, 20, 128, NULL); /* seqs 51..70 */
    uint64_t want = 2;
    for (int guard = 0; guard < 200; guard++) {
        rc = civ_replay_next(r, &d, 5000);
        if (rc != CIV_OK || !d)
            break;
        if (d->seq != want) {
            uint64_t got = d->seq;
            civ_delivery_destroy(&d);
            civ_replay_destroy(&r);
            fail_msg("replay returned seq %" PRIu64 ", expected %" PRIu64, got, want);
        }
        civ_delivery_destroy(&d);
        want++;
    }
    civ_replay_destroy(&r);
    assert_int_equal(rc, CIV_OK);
    if (want != 51)
        fail_msg("replay opened at last seq 50 ended after seq %" PRIu64, want - 1);
    s_expect_replay(rb, it_from_seq(45), 0, 45, 70, NULL);
}

static void test_replay_from_time(void **state)
{
    it_fix_t *f = *state;
    it_start(f, s_flags);
    civ_client_t *pa = it_client(f, A, 10000);
    civ_client_t *rb = it_client(f, B, 10000);

    it_publish_many(pa, 0, 60, 128, NULL); /* seqs 1..60 */
    it_sleep_ms(50);
    int64_t t = it_wall_us();
    it_sleep_ms(50);
    it_publish_many(pa, 60, 40, 128, NULL); /* seqs 61..100 */

    int64_t before[60], after[40];
    s_expect_replay(rb, it_from_first(), 60, 1, 60, before);
    s_expect_replay(rb, (civ_start_t){.kind = CIV_START_TIME, .time_us = t}, 0, 61, 100, after);
    for (int i = 0; i < 60; i++)
        if (before[i] >= t)
            fail_msg("seq %d received at %" PRId64 ", after t %" PRId64, i + 1, before[i], t);
    for (int i = 0; i < 40; i++) {
        if (after[i] < t)
            fail_msg("seq %d received at %" PRId64 ", before t %" PRId64, i + 61, after[i], t);
        if (i && after[i] < after[i - 1])
            fail_msg("received_at goes back at seq %d", i + 61);
    }
    /* Exactly the first event's time starts at it; with a count. */
    s_expect_replay(rb, (civ_start_t){.kind = CIV_START_TIME, .time_us = after[0]}, 5, 61, 65, NULL);
    /* A time before everything is the whole log; after everything, nothing. */
    s_expect_replay(rb, (civ_start_t){.kind = CIV_START_TIME, .time_us = before[0] - 1000000}, 0, 1, 100, NULL);
    s_expect_replay(rb, (civ_start_t){.kind = CIV_START_TIME, .time_us = it_wall_us() + 3600000000LL}, 0, 101, 100,
                    NULL);
}

static void test_replay_large_log(void **state)
{
    it_fix_t *f = *state;
    it_start(f, s_flags);
    civ_client_t *pa = it_client(f, A, 20000);
    civ_client_t *rb = it_client(f, B, 20000);
    int64_t t0 = it_mono_ms();
    it_publish_many(pa, 0, N_LARGE, 4096, NULL);
    int64_t t1 = it_mono_ms();
    assert_int_equal(it_last_seq(rb), N_LARGE);
    s_expect_replay(rb, it_from_first(), 0, 1, N_LARGE, NULL);
    int64_t t2 = it_mono_ms();
    print_message("published %d events in %" PRId64 " ms, replayed them in %" PRId64 " ms\n", N_LARGE, t1 - t0,
                  t2 - t1);
    /* A window in the middle, across reply boundaries. */
    s_expect_replay(rb, it_from_seq(4000), 9000, 4000, 12999, NULL);
}

/* The hub's side of replay, without the SDK in between: one Replay request,
 * one ReplayReply holding at most `count` events, and next_seq/last_seq. */
static Civibus__V1__HubMessage *s_raw_replay(it_raw_t *raw, uint64_t request_id, Civibus__V1__StartPoint__Kind kind,
                                             uint64_t seq, uint32_t count)
{
    Civibus__V1__StartPoint sp = CIVIBUS__V1__START_POINT__INIT;
    sp.kind = kind;
    sp.seq = seq;
    Civibus__V1__Replay rp = CIVIBUS__V1__REPLAY__INIT;
    rp.request_id = request_id;
    rp.from = &sp;
    rp.count = count;
    Civibus__V1__ClientMessage msg = CIVIBUS__V1__CLIENT_MESSAGE__INIT;
    msg.version = 1;
    msg.body_case = CIVIBUS__V1__CLIENT_MESSAGE__BODY_REPLAY;
    msg.replay = &rp;
    assert_int_equal(it_raw_send(raw, &msg, false), 0);
    Civibus__V1__HubMessage *m = it_raw_recv(raw, 5000);
    if (!m)
        fail_msg("no answer to replay request %" PRIu64, request_id);
    return m;
}

static void s_raw_expect_events(Civibus__V1__HubMessage *m, uint64_t request_id, uint64_t first, size_t n,
                                uint64_t next_seq, uint64_t last_seq)
{
    if (m->body_case != CIVIBUS__V1__HUB_MESSAGE__BODY_REPLAY_REPLY)
        fail_msg("replay %" PRIu64 ": expected a ReplayReply, got body %d", request_id, (int)m->body_case);
    const Civibus__V1__ReplayReply *rr = m->replay_reply;
    assert_int_equal(rr->request_id, request_id);
    if (rr->n_events != n)
        fail_msg("replay %" PRIu64 ": %zu events, expected %zu", request_id, rr->n_events, n);
    for (size_t i = 0; i < n; i++) {
        assert_int_equal(rr->events[i]->seq, first + i);
        Civibus__V1__ServiceEvent *ev =
            civibus__v1__service_event__unpack(NULL, rr->events[i]->event.len, rr->events[i]->event.data);
        assert_non_null(ev);
        char want[64];
        snprintf(want, sizeof want, "%s-%06d", A, (int)(first + i - 1));
        bool same = strcmp(ev->event_id, want) == 0 && strcmp(ev->source, A) == 0;
        civibus__v1__service_event__free_unpacked(ev, NULL);
        if (!same)
            fail_msg("replay %" PRIu64 ": seq %" PRIu64 " is not %s", request_id, first + i, want);
    }
    assert_int_equal(rr->next_seq, next_seq);
    assert_int_equal(rr->last_seq, last_seq);
}

static void test_replay_raw_protocol(void **state)
{
    it_fix_t *f = *state;
    const char *flags[] = {"--no-sync", "--replay-max", "64", NULL};
    it_start(f, flags);
    civ_client_t *pa = it_client(f, A, 10000);
    it_publish_many(pa, 0, 100, 128, NULL);
    it_raw_t *raw = it_raw(f, B);

    Civibus__V1__HubMessage *m = s_raw_replay(raw, 1, CIVIBUS__V1__START_POINT__KIND__SEQ, 30, 10);
    s_raw_expect_events(m, 1, 30, 10, 40, 100);
    it_hub_msg_free(&m);
    m = s_raw_replay(raw, 2, CIVIBUS__V1__START_POINT__KIND__FIRST, 0, 1);
    s_raw_expect_events(m, 2, 1, 1, 2, 100);
    it_hub_msg_free(&m);
    /* count 0 and a count over replay_max are capped at replay_max. */
    m = s_raw_replay(raw, 3, CIVIBUS__V1__START_POINT__KIND__FIRST, 0, 0);
    s_raw_expect_events(m, 3, 1, 64, 65, 100);
    it_hub_msg_free(&m);
    m = s_raw_replay(raw, 4, CIVIBUS__V1__START_POINT__KIND__SEQ, 65, 1000);
    s_raw_expect_events(m, 4, 65, 36, 101, 100);
    it_hub_msg_free(&m);
    m = s_raw_replay(raw, 5, CIVIBUS__V1__START_POINT__KIND__SEQ, 101, 10);
    s_raw_expect_events(m, 5, 101, 0, 101, 100);
    it_hub_msg_free(&m);
    /* LATEST is no place to replay from. */
    m = s_raw_replay(raw, 6, CIVIBUS__V1__START_POINT__KIND__LATEST, 0, 10);
    assert_int_equal(m->body_case, CIVIBUS__V1__HUB_MESSAGE__BODY_ERROR);
    assert_int_equal(m->error->request_id, 6);
    assert_int_equal(m->error->code, CIVIBUS__V1__ERROR_CODE__BAD_REQUEST);
    it_hub_msg_free(&m);
    /* Through the SDK, replay_max only means more round trips. */
    s_expect_replay(pa, it_from_first(), 0, 1, 100, NULL);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_setup_teardown(test_replay_ranges, s_setup, s_teardown),
        cmocka_unit_test_setup_teardown(test_replay_raw_protocol, s_setup, s_teardown),
        cmocka_unit_test_setup_teardown(test_replay_to_end_is_fixed_at_open, s_setup, s_teardown),
        cmocka_unit_test_setup_teardown(test_replay_from_time, s_setup, s_teardown),
        cmocka_unit_test_setup_teardown(test_replay_large_log, s_setup, s_teardown),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
