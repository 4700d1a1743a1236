/* test_deadletters - redelivery and dead letters against a real hub.
 *
 * A consumer fails one given event every time: by nacking it, by never
 * acknowledging it (short ack_timeout_ms), or by losing its session while the
 * event is in flight. The event must come again with increasing attempts,
 * become a dead letter after max_attempts, and the events after it must be
 * delivered. Then the dead letter is listed, redriven (delivered again with
 * attempt 1, cleared by an ack, or a dead letter again after max_attempts
 * more failures) and dropped; dead letters and redrive requests survive a hub
 * restart; an agency reaches only its own; bad requests are refused. The
 * monitoring endpoint shows the figures (/metrics, /api/status); the
 * settings reload on SIGHUP. With
 * retention, a dead letter whose event was deleted is listed gone and its
 * redrive skipped, and a failed attempt at events retention deleted while
 * they were in flight ends in behind_retention, not a dead letter. Every wait
 * is bounded; nothing is timed.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>
#include <jansson.h>
#include <signal.h>

#include "itest.h"

#define A "agency-a" /* producer */
#define C "agency-c" /* consumer */
#define B "agency-b" /* another consumer agency */
#define MAX_ATTEMPTS 3
#define WAIT_MS 20000

static const char *const s_agencies[] = {A, B, C, NULL};

/* Short timers, so that failures come fast; max_attempts small. */
static const char *const s_flags[] = {"--no-sync", "--ack-timeout-ms", "400", "--max-attempts", "3",
                                      "--redelivery-backoff-ms", "20", "--redelivery-backoff-max-ms", "100",
                                      NULL};
/* Only nacks fail attempts (a long ack timeout), for tests that hold events. */
static const char *const s_flags_nack[] = {"--no-sync", "--ack-timeout-ms", "600000", "--max-attempts", "3",
                                           "--redelivery-backoff-ms", "20", "--redelivery-backoff-max-ms", "100",
                                           NULL};
/* The same, durable, for the restart test. */
static const char *const s_flags_sync[] = {"--ack-timeout-ms", "400", "--max-attempts", "3",
                                           "--redelivery-backoff-ms", "20", "--redelivery-backoff-max-ms", "100",
                                           NULL};

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

static const char *const s_all[] = {"*"};

/* The next delivery on c within WAIT_MS; the caller destroys it. */
static civ_delivery_t *s_next(civ_client_t *c)
{
    int64_t deadline = it_mono_ms() + WAIT_MS;
    while (it_mono_ms() < deadline) {
        civ_delivery_t *d = NULL;
        int rc = civ_next(c, &d, 500);
        if (rc == CIV_E_TIMEOUT)
            continue;
        if (rc != CIV_OK)
            fail_msg("civ_next: %s (%s)", civ_error_name(rc), civ_client_error(c));
        return d;
    }
    fail_msg("no delivery within %d ms", WAIT_MS);
    return NULL;
}

/* Expect the next delivery to be seq with attempt; returns it. */
static civ_delivery_t *s_expect(civ_client_t *c, uint64_t seq, uint32_t attempt)
{
    civ_delivery_t *d = s_next(c);
    if (d->seq != seq || d->attempt != attempt)
        fail_msg("expected seq %" PRIu64 " attempt %u, got seq %" PRIu64 " attempt %u", seq, attempt, d->seq,
                 d->attempt);
    return d;
}

static void s_expect_ack(civ_client_t *c, const char *name, uint64_t seq, uint32_t attempt)
{
    civ_delivery_t *d = s_expect(c, seq, attempt);
    civ_delivery_destroy(&d);
    assert_int_equal(civ_ack(c, name, seq), CIV_OK);
}

static void s_expect_nack(civ_client_t *c, const char *name, uint64_t seq, uint32_t attempt, const char *reason)
{
    civ_delivery_t *d = s_expect(c, seq, attempt);
    civ_delivery_destroy(&d);
    assert_int_equal(civ_nack(c, name, seq, reason), CIV_OK);
}

/* The dead letters of name as c's agency sees them (the caller destroys). */
static civ_dead_letters_t *s_list(civ_client_t *c, const char *name)
{
    civ_dead_letters_t *l = NULL;
    int rc = civ_dead_letters_list(c, name, 0, 0, &l);
    if (rc != CIV_OK)
        fail_msg("civ_dead_letters_list: %s (%s)", civ_error_name(rc), civ_client_error(c));
    return l;
}

static const civ_dead_letter_t *s_find(const civ_dead_letters_t *l, uint64_t seq)
{
    for (size_t i = 0; i < l->n; i++)
        if (l->items[i].seq == seq)
            return &l->items[i];
    return NULL;
}

/* Wait until name's dead letters are exactly `total` and, when seq is not
 * 0, hold seq not flagged for redrive with `attempts`. */
static void s_wait_dead(civ_client_t *c, const char *name, uint64_t total, uint64_t seq, uint32_t attempts)
{
    int64_t deadline = it_mono_ms() + WAIT_MS;
    for (;;) {
        civ_dead_letters_t *l = s_list(c, name);
        const civ_dead_letter_t *d = seq ? s_find(l, seq) : NULL;
        bool ok = l->total == total && l->n == total && (!seq || (d && !d->redrive && d->attempts == attempts));
        civ_dead_letters_destroy(&l);
        if (ok)
            return;
        if (it_mono_ms() > deadline)
            fail_msg("dead letters of %s did not become %" PRIu64 " (seq %" PRIu64 ")", name, total, seq);
        it_sleep_ms(50);
    }
}

static civ_sub_status_t s_sub_status(civ_client_t *c, const char *name)
{
    civ_status_t *st = NULL;
    assert_int_equal(civ_status(c, &st), CIV_OK);
    civ_sub_status_t out = {0};
    bool found = false;
    for (size_t i = 0; i < st->n_subscriptions; i++) {
        if (strcmp(st->subscriptions[i].name, name) == 0) {
            out = st->subscriptions[i];
            found = true;
        }
    }
    civ_status_destroy(&st);
    if (!found)
        fail_msg("no status for subscription %s", name);
    return out;
}

static void s_publish(civ_client_t *pa, int first, int n)
{
    it_publish_many(pa, first, n, 64, NULL);
}

/* Nack one event every time: attempts 1..MAX, then a dead letter, and the
 * events after it come; list, status, redrive (ack clears), drop. */
static void test_nack_dead_letter_redrive_drop(void **state)
{
    it_fix_t *f = *state;
    it_start(f, s_flags);
    civ_client_t *pa = it_client(f, A, 10000);
    civ_client_t *c = it_client(f, C, 10000);
    s_publish(pa, 0, 6); /* seqs 1..6 */
    assert_int_equal(civ_subscribe(c, "work", s_all, 1, it_from_first(), 16), CIV_OK);

    s_expect_ack(c, "work", 1, 1);
    s_expect_ack(c, "work", 2, 1);
    for (uint32_t attempt = 1; attempt <= MAX_ATTEMPTS; attempt++)
        s_expect_nack(c, "work", 3, attempt, "record 3 is broken");
    /* Given up on 3: the cursor is past it, and delivery goes on. */
    civ_delivery_t *d = s_expect(c, 4, 1);
    it_ev_check(d, A, 3, 4);
    civ_delivery_destroy(&d);
    assert_int_equal(civ_ack(c, "work", 4), CIV_OK);
    s_expect_ack(c, "work", 5, 1);
    s_expect_ack(c, "work", 6, 1);
    it_expect_quiet(c, 300);

    civ_client_t *ops = it_client(f, C, 10000);
    s_wait_dead(ops, "work", 1, 3, MAX_ATTEMPTS);
    civ_dead_letters_t *l = s_list(ops, "work");
    const civ_dead_letter_t *dl = s_find(l, 3);
    assert_non_null(dl);
    assert_string_equal(dl->reason, "record 3 is broken");
    assert_false(dl->gone);
    assert_string_equal(dl->type, it_type_of(2));
    assert_string_equal(dl->source, A);
    assert_string_equal(dl->event_id, "agency-a-000002");
    assert_true(dl->dead_at > IT_T0 && dl->received_at > IT_T0);
    civ_dead_letters_destroy(&l);
    civ_sub_status_t ss = s_sub_status(ops, "work");
    assert_int_equal(ss.dead_letters, 1);
    assert_int_equal(ss.redeliveries, MAX_ATTEMPTS - 1);
    assert_true(it_log_contains(f, "event=dead_letter agency=agency-c subscription=work seq=3 attempts=3 cause=nack",
                                5000));

    /* Redrive: 3 comes again, attempt 1, before anything newer; an ack of
     * its seq clears it. */
    civ_dead_letters_t *r = NULL;
    uint64_t three = 3;
    assert_int_equal(civ_dead_letters_redrive(ops, "work", &three, 1, false, &r), CIV_OK);
    assert_int_equal(r->affected, 1);
    assert_int_equal(r->n_not_found, 0);
    civ_dead_letters_destroy(&r);
    d = s_expect(c, 3, 1);
    it_ev_check(d, A, 2, 3);
    civ_delivery_destroy(&d);
    s_publish(pa, 6, 1); /* seq 7 waits behind the redriven one */
    it_expect_quiet(c, 300);
    assert_int_equal(civ_ack(c, "work", 3), CIV_OK);
    s_expect_ack(c, "work", 7, 1);
    s_wait_dead(ops, "work", 0, 0, 0);

    /* A second dead letter, then drop it (and a seq that is none). */
    s_publish(pa, 7, 2); /* seqs 8, 9 */
    for (uint32_t attempt = 1; attempt <= MAX_ATTEMPTS; attempt++)
        s_expect_nack(c, "work", 8, attempt, NULL);
    s_expect_ack(c, "work", 9, 1);
    s_wait_dead(ops, "work", 1, 8, MAX_ATTEMPTS);
    l = s_list(ops, "work");
    assert_string_equal(l->items[0].reason, "nacked");
    civ_dead_letters_destroy(&l);
    uint64_t drop[] = {8, 5};
    assert_int_equal(civ_dead_letters_drop(ops, "work", drop, 2, false, &r), CIV_OK);
    assert_int_equal(r->affected, 1);
    assert_int_equal(r->total, 0);
    assert_int_equal(r->n_not_found, 1);
    assert_int_equal(r->not_found[0], 5);
    civ_dead_letters_destroy(&r);
    s_wait_dead(ops, "work", 0, 0, 0);
    assert_int_equal(s_sub_status(ops, "work").dead_letters, 0);
    it_expect_quiet(c, 300);
}

/* Never acknowledge one event: the ack timeout delivers it again, then it
 * becomes a dead letter; what is published after is delivered. */
static void test_ack_timeout(void **state)
{
    it_fix_t *f = *state;
    it_start(f, s_flags);
    civ_client_t *pa = it_client(f, A, 10000);
    civ_client_t *c = it_client(f, C, 10000);
    assert_int_equal(civ_subscribe(c, "slow", s_all, 1, it_from_first(), 16), CIV_OK);
    s_publish(pa, 0, 1); /* seq 1, never acknowledged */
    for (uint32_t attempt = 1; attempt <= MAX_ATTEMPTS; attempt++) {
        civ_delivery_t *d = s_expect(c, 1, attempt);
        civ_delivery_destroy(&d);
    }
    civ_client_t *ops = it_client(f, C, 10000);
    s_wait_dead(ops, "slow", 1, 1, MAX_ATTEMPTS);
    civ_dead_letters_t *l = s_list(ops, "slow");
    assert_string_equal(l->items[0].reason, "not acknowledged within ack_timeout_ms");
    civ_dead_letters_destroy(&l);
    assert_true(it_log_contains(f, "cause=ack_timeout", 5000));

    s_publish(pa, 1, 2); /* seqs 2, 3 */
    s_expect_ack(c, "slow", 2, 1);
    s_expect_ack(c, "slow", 3, 1);
    it_expect_quiet(c, 1000); /* acknowledged in time: nothing comes again */
    civ_sub_status_t ss = s_sub_status(ops, "slow");
    assert_int_equal(ss.cursor, 3);
    assert_int_equal(ss.in_flight, 0);
    assert_int_equal(ss.dead_letters, 1);
}

/* A consumer that dies with the event in flight, again and again: each new
 * session counts an attempt, and the next one after max_attempts finds it a
 * dead letter and goes on. */
static void test_session_ended(void **state)
{
    it_fix_t *f = *state;
    it_start(f, s_flags);
    civ_client_t *pa = it_client(f, A, 10000);
    s_publish(pa, 0, 2); /* seqs 1, 2 */
    for (uint32_t attempt = 1; attempt <= MAX_ATTEMPTS; attempt++) {
        civ_client_t *c = it_client(f, C, 10000);
        assert_int_equal(civ_subscribe(c, "crashy", s_all, 1, (civ_start_t){.kind = CIV_START_CURSOR}, 1),
                         CIV_OK);
        civ_delivery_t *d = s_expect(c, 1, attempt);
        civ_delivery_destroy(&d);
        it_drop(f, &c);
    }
    civ_client_t *c = it_client(f, C, 10000);
    assert_int_equal(civ_subscribe(c, "crashy", s_all, 1, (civ_start_t){.kind = CIV_START_CURSOR}, 1), CIV_OK);
    s_expect_ack(c, "crashy", 2, 1);
    s_wait_dead(c, "crashy", 1, 1, MAX_ATTEMPTS);
    civ_dead_letters_t *l = s_list(c, "crashy");
    assert_string_equal(l->items[0].reason, "not acknowledged before its session ended");
    civ_dead_letters_destroy(&l);
    /* Closed before anything newer is published: a session left open could
     * be sent the next event, and that would be an attempt. */
    assert_int_equal(civ_unsubscribe(c, "crashy"), CIV_OK);
    assert_int_equal(civ_ping(c, NULL), CIV_OK);
    it_drop(f, &c);

    /* A consumer that stops with events queued behind an acknowledged one
     * (as `civibus tail --count 1` does) has failed nothing. */
    s_publish(pa, 2, 3); /* seqs 3..5 */
    for (uint64_t seq = 3; seq <= 5; seq++) {
        c = it_client(f, C, 10000);
        assert_int_equal(civ_subscribe(c, "crashy", s_all, 1, (civ_start_t){.kind = CIV_START_CURSOR}, 16),
                         CIV_OK);
        s_expect_ack(c, "crashy", seq, 1);
        assert_int_equal(civ_unsubscribe(c, "crashy"), CIV_OK);
        assert_int_equal(civ_ping(c, NULL), CIV_OK); /* the ack and the unsubscribe are in */
        it_drop(f, &c);
    }
    c = it_client(f, C, 10000);
    assert_int_equal(s_sub_status(c, "crashy").redeliveries, MAX_ATTEMPTS - 1);
}

/* A redriven dead letter that fails again max_attempts times is a dead
 * letter again, with the new reason, and no longer flagged. */
static void test_redrive_fails_again(void **state)
{
    it_fix_t *f = *state;
    it_start(f, s_flags);
    civ_client_t *pa = it_client(f, A, 10000);
    civ_client_t *c = it_client(f, C, 10000);
    s_publish(pa, 0, 2); /* seqs 1, 2 */
    assert_int_equal(civ_subscribe(c, "again", s_all, 1, it_from_first(), 16), CIV_OK);
    for (uint32_t attempt = 1; attempt <= MAX_ATTEMPTS; attempt++)
        s_expect_nack(c, "again", 1, attempt, "first try");
    s_expect_ack(c, "again", 2, 1);
    civ_client_t *ops = it_client(f, C, 10000);
    s_wait_dead(ops, "again", 1, 1, MAX_ATTEMPTS);

    assert_int_equal(civ_dead_letters_redrive(ops, "again", NULL, 0, true, NULL), CIV_OK);
    for (uint32_t attempt = 1; attempt <= MAX_ATTEMPTS; attempt++)
        s_expect_nack(c, "again", 1, attempt, "second try");
    s_wait_dead(ops, "again", 1, 1, MAX_ATTEMPTS);
    civ_dead_letters_t *l = s_list(ops, "again");
    assert_string_equal(l->items[0].reason, "second try");
    assert_false(l->items[0].redrive);
    civ_dead_letters_destroy(&l);
    it_expect_quiet(c, 500);
    /* The stream goes on. */
    s_publish(pa, 2, 1);
    s_expect_ack(c, "again", 3, 1);
}

/* Dead letters and a redrive requested while no session is open survive a
 * restart; the next session gets the redriven event first. */
static void test_restart(void **state)
{
    it_fix_t *f = *state;
    it_start(f, s_flags_sync);
    civ_client_t *pa = it_client(f, A, 10000);
    civ_client_t *c = it_client(f, C, 10000);
    s_publish(pa, 0, 3); /* seqs 1..3 */
    assert_int_equal(civ_subscribe(c, "kept", s_all, 1, it_from_first(), 16), CIV_OK);
    s_expect_ack(c, "kept", 1, 1);
    for (uint32_t attempt = 1; attempt <= MAX_ATTEMPTS; attempt++)
        s_expect_nack(c, "kept", 2, attempt, "two");
    s_expect_ack(c, "kept", 3, 1);
    s_wait_dead(c, "kept", 1, 2, MAX_ATTEMPTS);
    assert_int_equal(civ_ping(c, NULL), CIV_OK); /* the last ack is in */
    it_drop(f, &c);
    it_drop(f, &pa);

    assert_int_equal(harness_stop(f->h), 0);
    it_start(f, s_flags_sync);
    civ_client_t *ops = it_client(f, C, 10000);
    s_wait_dead(ops, "kept", 1, 2, MAX_ATTEMPTS);
    civ_dead_letters_t *l = s_list(ops, "kept");
    assert_string_equal(l->items[0].reason, "two");
    civ_dead_letters_destroy(&l);
    assert_int_equal(s_sub_status(ops, "kept").dead_letters, 1);
    assert_int_equal(civ_dead_letters_redrive(ops, "kept", NULL, 0, true, NULL), CIV_OK);

    assert_int_equal(harness_stop(f->h), 0);
    it_start(f, s_flags_sync);
    ops = it_client(f, C, 10000);
    l = s_list(ops, "kept");
    assert_int_equal(l->n, 1);
    assert_true(l->items[0].redrive);
    civ_dead_letters_destroy(&l);
    pa = it_client(f, A, 10000);
    s_publish(pa, 3, 1); /* seq 4 */
    c = it_client(f, C, 10000);
    assert_int_equal(civ_subscribe(c, "kept", s_all, 1, (civ_start_t){.kind = CIV_START_CURSOR}, 16), CIV_OK);
    s_expect_ack(c, "kept", 2, 1);
    s_expect_ack(c, "kept", 4, 1);
    s_wait_dead(ops, "kept", 0, 0, 0);
}

/* An agency reaches only its own subscriptions' dead letters; bad requests
 * are refused with a code, and the hub goes on. */
static void test_isolation_and_refusals(void **state)
{
    it_fix_t *f = *state;
    it_start(f, s_flags);
    civ_client_t *pa = it_client(f, A, 10000);
    civ_client_t *c = it_client(f, C, 10000);
    s_publish(pa, 0, 1);
    assert_int_equal(civ_subscribe(c, "mine", s_all, 1, it_from_first(), 16), CIV_OK);
    for (uint32_t attempt = 1; attempt <= MAX_ATTEMPTS; attempt++)
        s_expect_nack(c, "mine", 1, attempt, "no");
    s_wait_dead(c, "mine", 1, 1, MAX_ATTEMPTS);

    civ_client_t *b = it_client(f, B, 10000);
    civ_dead_letters_t *l = s_list(b, "mine");
    assert_int_equal(l->n, 0);
    assert_int_equal(l->total, 0);
    civ_dead_letters_destroy(&l);
    civ_dead_letters_t *r = NULL;
    assert_int_equal(civ_dead_letters_drop(b, "mine", NULL, 0, true, &r), CIV_OK);
    assert_int_equal(r->affected, 0);
    civ_dead_letters_destroy(&r);
    s_wait_dead(c, "mine", 1, 1, MAX_ATTEMPTS);

    /* The library refuses what it can check itself... */
    assert_int_equal(civ_dead_letters_redrive(c, "mine", NULL, 0, false, NULL), CIV_E_INVALID);
    assert_int_equal(civ_nack(c, "mine", 1, "\xff"), CIV_E_INVALID);
    /* ... and the hub what comes from elsewhere. */
    it_raw_t *raw = it_raw(f, C);
    Civibus__V1__DeadLettersRequest req = CIVIBUS__V1__DEAD_LETTERS_REQUEST__INIT;
    req.request_id = 77;
    req.subscription = "mine";
    req.op = CIVIBUS__V1__DEAD_LETTERS_REQUEST__OP__REDRIVE; /* neither seqs nor all */
    Civibus__V1__ClientMessage msg = CIVIBUS__V1__CLIENT_MESSAGE__INIT;
    msg.version = 1;
    msg.body_case = CIVIBUS__V1__CLIENT_MESSAGE__BODY_DEAD_LETTERS;
    msg.dead_letters = &req;
    assert_int_equal(it_raw_send(raw, &msg, false), 0);
    Civibus__V1__HubMessage *m = it_raw_recv(raw, WAIT_MS);
    assert_non_null(m);
    assert_int_equal(m->body_case, CIVIBUS__V1__HUB_MESSAGE__BODY_ERROR);
    assert_int_equal(m->error->request_id, 77);
    assert_int_equal(m->error->code, CIVIBUS__V1__ERROR_CODE__BAD_REQUEST);
    assert_string_equal(m->error->subscription, "");
    it_hub_msg_free(&m);

    char reason[300];
    memset(reason, 'x', sizeof reason - 1);
    reason[sizeof reason - 1] = '\0';
    Civibus__V1__Nack nack = CIVIBUS__V1__NACK__INIT;
    nack.subscription = "mine";
    nack.seq = 1;
    nack.reason = reason;
    msg.body_case = CIVIBUS__V1__CLIENT_MESSAGE__BODY_NACK;
    msg.nack = &nack;
    assert_int_equal(it_raw_send(raw, &msg, false), 0);
    m = it_raw_recv(raw, WAIT_MS);
    assert_non_null(m);
    assert_int_equal(m->body_case, CIVIBUS__V1__HUB_MESSAGE__BODY_ERROR);
    assert_int_equal(m->error->code, CIVIBUS__V1__ERROR_CODE__BAD_REQUEST);
    assert_string_equal(m->error->subscription, "mine");
    it_hub_msg_free(&m);
    /* A valid nack for a session this connection does not hold. */
    nack.reason = "";
    assert_int_equal(it_raw_send(raw, &msg, false), 0);
    m = it_raw_recv(raw, WAIT_MS);
    assert_non_null(m);
    assert_int_equal(m->body_case, CIVIBUS__V1__HUB_MESSAGE__BODY_ERROR);
    assert_int_equal(m->error->code, CIVIBUS__V1__ERROR_CODE__UNKNOWN_SUBSCRIPTION);
    it_hub_msg_free(&m);

    assert_int_equal(it_last_seq(c), 1);
    s_wait_dead(c, "mine", 1, 1, MAX_ATTEMPTS);
}

typedef struct {
    const char *series;
    double want;
} s_want_t;

/* Wait until /metrics shows every series of want (NULL-terminated) with its
 * value: the hub renders the document about once a second. */
static void s_wait_metrics(it_fix_t *f, const s_want_t *want)
{
    int64_t deadline = it_mono_ms() + WAIT_MS;
    for (;;) {
        long status = 0;
        char *body = NULL;
        if (harness_http_get(f->h, "/metrics", &status, &body, NULL) != 0 || status != 200)
            fail_msg("GET /metrics: status %ld", status);
        const s_want_t *w = want;
        while (w->series && it_prom_sample(body, w->series) == w->want)
            w++;
        if (!w->series) {
            free(body);
            return;
        }
        if (it_mono_ms() > deadline) {
            double got = it_prom_sample(body, w->series);
            free(body);
            fail_msg("/metrics: %s is %g, expected %g", w->series, got, w->want);
        }
        free(body);
        it_sleep_ms(100);
    }
}

/* The /api/status entry of agency/name, once it shows dead_letters as
 * wanted (the caller decrefs). */
static json_t *s_wait_status_sub(it_fix_t *f, const char *agency, const char *name, json_int_t dead_letters)
{
    int64_t deadline = it_mono_ms() + WAIT_MS;
    for (;;) {
        long status = 0;
        char *body = NULL;
        if (harness_http_get(f->h, "/api/status", &status, &body, NULL) != 0 || status != 200)
            fail_msg("GET /api/status: status %ld", status);
        json_t *st = json_loads(body, 0, NULL);
        free(body);
        assert_non_null(st);
        size_t i;
        json_t *e, *found = NULL;
        json_array_foreach(json_object_get(st, "subscriptions"), i, e)
        {
            if (strcmp(json_string_value(json_object_get(e, "agency")), agency) == 0 &&
                strcmp(json_string_value(json_object_get(e, "name")), name) == 0)
                found = e;
        }
        if (found && json_integer_value(json_object_get(found, "dead_letters")) == dead_letters) {
            json_incref(found);
            json_decref(st);
            return found;
        }
        json_decref(st);
        if (it_mono_ms() > deadline)
            fail_msg("/api/status never showed %s/%s with %" JSON_INTEGER_FORMAT " dead letters", agency, name,
                     dead_letters);
        it_sleep_ms(100);
    }
}

static json_int_t s_jint(json_t *obj, const char *key)
{
    json_t *v = json_object_get(obj, key);
    if (!json_is_integer(v))
        fail_msg("%s is not an integer", key);
    return json_integer_value(v);
}

/* The monitoring endpoint shows a subscription's redeliveries, dead letters
 * and in-flight events, live and, after its session ended, from the saved
 * cursor; and the dead letters created in all. */
static void test_metrics(void **state)
{
    it_fix_t *f = *state;
    it_start(f, s_flags_nack);
    civ_client_t *pa = it_client(f, A, 10000);
    civ_client_t *c = it_client(f, C, 10000);
    s_publish(pa, 0, 3); /* seqs 1..3 */
    assert_int_equal(civ_subscribe(c, "watched", s_all, 1, it_from_first(), 16), CIV_OK);
    for (uint32_t attempt = 1; attempt <= MAX_ATTEMPTS; attempt++)
        s_expect_nack(c, "watched", 1, attempt, "cannot");
    civ_delivery_t *d = s_expect(c, 2, 1); /* 2 and 3 held, not acknowledged */
    civ_delivery_destroy(&d);
    d = s_expect(c, 3, 1);
    civ_delivery_destroy(&d);
    s_wait_dead(c, "watched", 1, 1, MAX_ATTEMPTS);

    const s_want_t live[] = {
        {"civibus_subscription_dead_letters{agency=\"agency-c\",subscription=\"watched\"}", 1},
        {"civibus_subscription_redeliveries_total{agency=\"agency-c\",subscription=\"watched\"}", MAX_ATTEMPTS - 1},
        {"civibus_subscription_inflight_events{agency=\"agency-c\",subscription=\"watched\"}", 2},
        {"civibus_dead_letters_created_total", 1},
        {NULL, 0},
    };
    s_wait_metrics(f, live);
    json_t *sub = s_wait_status_sub(f, C, "watched", 1);
    assert_int_equal(s_jint(sub, "redeliveries"), MAX_ATTEMPTS - 1);
    assert_int_equal(s_jint(sub, "in_flight"), 2);
    assert_int_equal(s_jint(sub, "cursor"), 1);
    assert_true(json_is_true(json_object_get(sub, "connected")));
    json_decref(sub);

    /* Acknowledged and closed: the figures stay with the saved cursor. */
    assert_int_equal(civ_ack(c, "watched", 3), CIV_OK);
    assert_int_equal(civ_unsubscribe(c, "watched"), CIV_OK);
    assert_int_equal(civ_ping(c, NULL), CIV_OK);
    const s_want_t saved[] = {
        {"civibus_subscription_dead_letters{agency=\"agency-c\",subscription=\"watched\"}", 1},
        {"civibus_subscription_redeliveries_total{agency=\"agency-c\",subscription=\"watched\"}", MAX_ATTEMPTS - 1},
        {"civibus_subscription_inflight_events{agency=\"agency-c\",subscription=\"watched\"}", 0},
        {"civibus_subscription_lag_events{agency=\"agency-c\",subscription=\"watched\"}", 0},
        {NULL, 0},
    };
    s_wait_metrics(f, saved);
    sub = s_wait_status_sub(f, C, "watched", 1);
    assert_false(json_is_true(json_object_get(sub, "connected")));
    json_decref(sub);

    /* Dropped: the gauge falls, the counter of those created does not. */
    assert_int_equal(civ_dead_letters_drop(c, "watched", NULL, 0, true, NULL), CIV_OK);
    const s_want_t dropped[] = {
        {"civibus_subscription_dead_letters{agency=\"agency-c\",subscription=\"watched\"}", 0},
        {"civibus_dead_letters_created_total", 1},
        {NULL, 0},
    };
    s_wait_metrics(f, dropped);
}

static void s_write_conf(const char *path, const char *text)
{
    FILE *fp = fopen(path, "w");
    assert_non_null(fp);
    assert_true(fputs(text, fp) >= 0);
    assert_int_equal(fclose(fp), 0);
}

/* The four settings reload on SIGHUP and apply at the next failure: an
 * event that failed twice under max_attempts 5 is given up at its next
 * failure once max_attempts is 2. */
static void test_reload(void **state)
{
    it_fix_t *f = *state;
    char conf[512];
    snprintf(conf, sizeof conf, "%s/civibusd.conf", harness_dir(f->h));
    s_write_conf(conf, "max_attempts = 5\nack_timeout_ms = 600000\nredelivery_backoff_ms = 20\n"
                       "redelivery_backoff_max_ms = 100\n");
    const char *flags[] = {"--no-sync", "--config", conf, NULL};
    it_start(f, flags);
    civ_client_t *pa = it_client(f, A, 10000);
    civ_client_t *c = it_client(f, C, 10000);
    s_publish(pa, 0, 2); /* seqs 1, 2 */
    assert_int_equal(civ_subscribe(c, "reloaded", s_all, 1, it_from_first(), 1), CIV_OK);
    s_expect_nack(c, "reloaded", 1, 1, "one");

    s_write_conf(conf, "max_attempts = 2\nack_timeout_ms = 600000\nredelivery_backoff_ms = 20\n"
                       "redelivery_backoff_max_ms = 100\n");
    assert_int_equal(harness_signal(f->h, SIGHUP), 0);
    if (!it_log_contains(f, "event=config_reloaded changed=1", WAIT_MS))
        fail_msg("no config_reloaded line");
    assert_true(it_log_contains(f, "event=config_changed key=max_attempts old=5 new=2", 0));
    s_expect_nack(c, "reloaded", 1, 2, "two");
    s_expect_ack(c, "reloaded", 2, 1);
    s_wait_dead(c, "reloaded", 1, 1, 2);
}

/* Wait until retention has deleted up to seq (first_seq > seq). */
static void s_wait_first(civ_client_t *c, uint64_t above)
{
    int64_t deadline = it_mono_ms() + WAIT_MS;
    for (;;) {
        civ_status_t *st = NULL;
        assert_int_equal(civ_status(c, &st), CIV_OK);
        uint64_t first = st->first_seq;
        civ_status_destroy(&st);
        if (first > above)
            return;
        if (it_mono_ms() > deadline)
            fail_msg("retention did not delete up to %" PRIu64 " (first_seq %" PRIu64 ")", above, first);
        it_sleep_ms(100);
    }
}

/* Retention with dead letters. An archive subscription that retention
 * keeps holds the log until the test lets it go: then entries older than a
 * second (and covered by a checkpoint, one per entry here) are deleted. */
static void test_retention(void **state)
{
    it_fix_t *f = *state;
    /* A long ack timeout: only nacks fail attempts here. */
    const char *flags[] = {"--no-sync", "--ack-timeout-ms", "600000", "--max-attempts", "3",
                           "--redelivery-backoff-ms", "20", "--redelivery-backoff-max-ms", "100",
                           "--checkpoint-events", "1", "--retention-max-age", "1",
                           "--retention-keep-subscriptions", B "/archive", NULL};
    it_start(f, flags);
    civ_client_t *pa = it_client(f, A, 10000);
    civ_client_t *c = it_client(f, C, 10000);
    s_publish(pa, 0, 3); /* seqs 1..3 */

    /* A dead letter of 1, flagged for redrive while no session is open. */
    assert_int_equal(civ_subscribe(c, "work", s_all, 1, it_from_first(), 16), CIV_OK);
    for (uint32_t attempt = 1; attempt <= MAX_ATTEMPTS; attempt++)
        s_expect_nack(c, "work", 1, attempt, "bad record");
    s_expect_ack(c, "work", 2, 1);
    s_expect_ack(c, "work", 3, 1);
    assert_int_equal(civ_unsubscribe(c, "work"), CIV_OK);
    s_wait_dead(c, "work", 1, 1, MAX_ATTEMPTS);
    uint64_t one = 1;
    civ_dead_letters_t *r = NULL;
    assert_int_equal(civ_dead_letters_redrive(c, "work", &one, 1, false, &r), CIV_OK);
    assert_int_equal(r->affected, 1);
    civ_dead_letters_destroy(&r);

    /* In flight on another subscription, never acknowledged: 1 failed
     * MAX_ATTEMPTS - 1 times, so the next failure would make it a dead
     * letter. */
    civ_client_t *slow = it_client(f, C, 10000);
    assert_int_equal(civ_subscribe(slow, "slow", s_all, 1, it_from_first(), 16), CIV_OK);
    for (uint32_t attempt = 1; attempt <= MAX_ATTEMPTS; attempt++) {
        for (uint64_t seq = 1; seq <= 3; seq++) {
            civ_delivery_t *d = s_expect(slow, seq, seq == 1 ? attempt : 1);
            civ_delivery_destroy(&d);
        }
        if (attempt < MAX_ATTEMPTS)
            assert_int_equal(civ_nack(slow, "slow", 1, "not yet"), CIV_OK);
    }

    /* Let the archive go: 1..3 are deleted (4, the newest, stays). */
    s_publish(pa, 3, 1); /* seq 4, in flight on slow too */
    civ_delivery_t *d = s_expect(slow, 4, 1);
    civ_delivery_destroy(&d);
    civ_client_t *arch = it_client(f, B, 10000);
    assert_int_equal(civ_subscribe(arch, "archive", s_all, 1, it_from_first(), 16), CIV_OK);
    for (uint64_t seq = 1; seq <= 4; seq++)
        s_expect_ack(arch, "archive", seq, 1);
    s_wait_first(c, 3);

    /* The record stays, listed gone, still flagged; a redrive reports it. */
    civ_dead_letters_t *l = s_list(c, "work");
    assert_int_equal(l->n, 1);
    assert_int_equal(l->items[0].seq, 1);
    assert_true(l->items[0].gone);
    assert_true(l->items[0].redrive);
    assert_string_equal(l->items[0].reason, "bad record");
    civ_dead_letters_destroy(&l);
    assert_int_equal(civ_dead_letters_redrive(c, "work", &one, 1, false, &r), CIV_OK);
    assert_int_equal(r->affected, 0);
    assert_int_equal(r->n_gone, 1);
    assert_int_equal(r->gone[0], 1);
    civ_dead_letters_destroy(&r);

    /* The next session cannot be sent it: the flag is cleared, the record
     * stays, and the subscription's own events go on. */
    assert_int_equal(civ_subscribe(c, "work", s_all, 1, (civ_start_t){.kind = CIV_START_CURSOR}, 16), CIV_OK);
    s_expect_ack(c, "work", 4, 1);
    if (!it_log_contains(f, "event=redrive_skipped agency=agency-c subscription=work seq=1 reason=event_gone", 5000))
        fail_msg("no redrive_skipped line");
    l = s_list(c, "work");
    assert_int_equal(l->n, 1);
    assert_true(l->items[0].gone);
    assert_false(l->items[0].redrive);
    civ_dead_letters_destroy(&l);

    /* A nack of events retention deleted in flight: they cannot come
     * again, so the session is behind retention, and no dead letter is made. */
    assert_int_equal(civ_nack(slow, "slow", 1, "too late"), CIV_OK);
    d = NULL;
    int rc = CIV_OK;
    int64_t deadline = it_mono_ms() + WAIT_MS;
    while (it_mono_ms() < deadline && (rc = civ_next(slow, &d, 500)) == CIV_E_TIMEOUT)
        ;
    if (rc != CIV_E_BEHIND_RETENTION)
        fail_msg("slow subscription: %s (%s), expected behind_retention", civ_error_name(rc),
                 civ_client_error(slow));
    if (!it_log_contains(f, "event=behind_retention agency=agency-c subscription=slow cursor=0 lost_from=1 lost_to=3",
                         5000))
        fail_msg("no behind_retention line for the slow subscription");
    assert_false(it_log_contains(f, "subscription=slow seq=1 attempts=3", 0));
    assert_true(s_sub_status(c, "slow").behind_retention);
    l = s_list(c, "slow");
    assert_int_equal(l->total, 0);
    civ_dead_letters_destroy(&l);

    /* Dropping the gone record still works. */
    assert_int_equal(civ_dead_letters_drop(c, "work", &one, 1, false, &r), CIV_OK);
    assert_int_equal(r->affected, 1);
    assert_int_equal(r->total, 0);
    civ_dead_letters_destroy(&r);
    const s_want_t want[] = {
        {"civibus_subscription_dead_letters{agency=\"agency-c\",subscription=\"work\"}", 0},
        {"civibus_subscription_behind_retention{agency=\"agency-c\",subscription=\"slow\"}", 1},
        {"civibus_dead_letters_created_total", 1},
        {NULL, 0},
    };
    s_wait_metrics(f, want);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_setup_teardown(test_nack_dead_letter_redrive_drop, s_setup, s_teardown),
        cmocka_unit_test_setup_teardown(test_ack_timeout, s_setup, s_teardown),
        cmocka_unit_test_setup_teardown(test_session_ended, s_setup, s_teardown),
        cmocka_unit_test_setup_teardown(test_redrive_fails_again, s_setup, s_teardown),
        cmocka_unit_test_setup_teardown(test_restart, s_setup, s_teardown),
        cmocka_unit_test_setup_teardown(test_isolation_and_refusals, s_setup, s_teardown),
        cmocka_unit_test_setup_teardown(test_metrics, s_setup, s_teardown),
        cmocka_unit_test_setup_teardown(test_reload, s_setup, s_teardown),
        cmocka_unit_test_setup_teardown(test_retention, s_setup, s_teardown),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
