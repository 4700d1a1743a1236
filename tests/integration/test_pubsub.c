/* test_pubsub - publishing and live subscriptions against a real civibusd.
 *
 * Two agencies publish pipelined while a third one's subscriber, running in
 * its own thread with its own client, receives everything in log order; the
 * publishers' acks tell which event got which seq, so every delivery is
 * checked against the event that owns its seq, field by field. Filters,
 * blocking publish and de-duplication on (source, event_id) each get a test.
 * Every test has its own hub (--no-sync: durability is not tested here).
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include <pthread.h>

#include "itest.h"

#define N_EACH 2000
#define A "agency-a"
#define B "agency-b"
#define C "agency-c"

static const char *const s_agencies[] = {A, B, C, NULL};
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

/* ---- two publishers, one live subscriber ----------------------------------------- */

typedef struct {
    civ_client_t *client;
    civ_delivery_t **got;
    size_t want;
    size_t n;
    size_t extra;   /* deliveries after the expected ones */
    int last_error; /* last civ_next error other than timeout */
    int timeout_ms;
} s_consumer_t;

/* Runs in its own thread: no cmocka asserts here, only recording. */
static void *s_consume(void *arg)
{
    s_consumer_t *c = arg;
    int64_t deadline = it_mono_ms() + c->timeout_ms;
    while (c->n < c->want && it_mono_ms() < deadline) {
        civ_delivery_t *d = NULL;
        int rc = civ_next(c->client, &d, 500);
        if (rc == CIV_E_TIMEOUT)
            continue;
        if (rc != CIV_OK || !d) {
            c->last_error = rc;
            it_sleep_ms(10);
            continue;
        }
        c->got[c->n++] = d;
        if (c->n % 100 == 0)
            civ_ack(c->client, "everything", d->seq);
    }
    /* Anything beyond the expected events is a bug (duplicate or phantom). */
    civ_delivery_t *d = NULL;
    while (civ_next(c->client, &d, 500) == CIV_OK && c->extra < 100) {
        c->extra++;
        civ_delivery_destroy(&d);
    }
    return NULL;
}

static void test_two_publishers_one_subscriber(void **state)
{
    it_fix_t *f = *state;
    it_start(f, s_flags);
    civ_client_t *pa = it_client(f, A, 10000);
    civ_client_t *pb = it_client(f, B, 10000);
    civ_client_t *sub = it_client(f, C, 10000);

    const char *all[] = {"*"};
    assert_int_equal(civ_subscribe(sub, "everything", all, 1, it_from_first(), 256), CIV_OK);

    s_consumer_t cons = {.client = sub, .want = 2 * N_EACH, .timeout_ms = 45000};
    cons.got = calloc(cons.want, sizeof *cons.got);
    assert_non_null(cons.got);
    pthread_t tid;
    assert_int_equal(pthread_create(&tid, NULL, s_consume, &cons), 0);

    /* Interleave the two publishers so that their batches mix in the log. */
    uint64_t *seq_a = calloc(N_EACH, sizeof *seq_a), *seq_b = calloc(N_EACH, sizeof *seq_b);
    int sent_rc = CIV_OK;
    for (int i = 0; i < N_EACH && sent_rc == CIV_OK; i++) {
        it_ev_t e;
        uint64_t token;
        it_ev_make(&e, A, i);
        sent_rc = civ_publish_send(pa, &e.ev, &token);
        if (sent_rc == CIV_OK && token != (uint64_t)i + 1)
            sent_rc = -1000;
        it_ev_make(&e, B, i);
        if (sent_rc == CIV_OK)
            sent_rc = civ_publish_send(pb, &e.ev, &token);
    }
    /* Collect acks (bounded by the clients' 10 s timeout per call). */
    int ack_rc = CIV_OK;
    civ_ack_t ack;
    for (int i = 0; i < N_EACH && sent_rc == CIV_OK && ack_rc == CIV_OK; i++) {
        ack_rc = civ_publish_recv(pa, &ack, -1);
        if (ack_rc == CIV_OK) {
            char want[64];
            snprintf(want, sizeof want, "%s-%06d", A, i);
            seq_a[i] = ack.error == CIV_OK && !ack.duplicate && strcmp(ack.event_id, want) == 0 &&
                               ack.token == (uint64_t)i + 1
                           ? ack.seq
                           : 0;
        }
    }
    for (int i = 0; i < N_EACH && sent_rc == CIV_OK && ack_rc == CIV_OK; i++) {
        ack_rc = civ_publish_recv(pb, &ack, -1);
        if (ack_rc == CIV_OK) {
            char want[64];
            snprintf(want, sizeof want, "%s-%06d", B, i);
            seq_b[i] = ack.error == CIV_OK && !ack.duplicate && strcmp(ack.event_id, want) == 0 ? ack.seq : 0;
        }
    }
    pthread_join(tid, NULL);

    /* Only now assert: the consumer thread has ended. */
    int failed_rc = sent_rc != CIV_OK ? sent_rc : ack_rc;
    if (failed_rc != CIV_OK) {
        it_free_all(cons.got, cons.n);
        fail_msg("publishing failed: %d (%s)", failed_rc, civ_error_name(failed_rc));
    }
    /* seq -> (agency, i): every seq 1..2N owned exactly once, per publisher increasing. */
    const size_t total = 2 * N_EACH;
    int *owner = calloc(total + 1, sizeof *owner); /* +1 A, -1 B, 0 none; index stored separately */
    int *index = calloc(total + 1, sizeof *index);
    for (int pass = 0; pass < 2; pass++) {
        uint64_t *seqs = pass == 0 ? seq_a : seq_b;
        uint64_t prev = 0;
        for (int i = 0; i < N_EACH; i++) {
            if (seqs[i] == 0 || seqs[i] > total || owner[seqs[i]] != 0 || seqs[i] <= prev)
                fail_msg("%s event %d: bad ack (seq %" PRIu64 ", previous %" PRIu64 ")", pass ? B : A, i,
                         seqs[i], prev);
            owner[seqs[i]] = pass == 0 ? 1 : -1;
            index[seqs[i]] = i;
            prev = seqs[i];
        }
    }
    assert_int_equal(it_last_seq(pa), total);

    if (cons.n != total)
        fail_msg("subscriber received %zu of %zu events (last error %s)", cons.n, total,
                 civ_error_name(cons.last_error));
    assert_int_equal(cons.extra, 0);
    for (size_t k = 0; k < total; k++) {
        const civ_delivery_t *d = cons.got[k];
        uint64_t seq = k + 1;
        assert_string_equal(d->subscription, "everything");
        it_ev_check(d, owner[seq] > 0 ? A : B, index[seq], seq);
    }
    it_free_all(cons.got, cons.n);
    free(cons.got);
    free(owner);
    free(index);
    free(seq_a);
    free(seq_b);
}

/* ---- filters --------------------------------------------------------------------- */

static const char *const s_types[] = {
    "population.birth.registered", /* 1 */
    "population.birth.corrected",  /* 2 */
    "population.address.changed",  /* 3 */
    "tax.return.filed",            /* 4 */
    "tax.refund.paid.late",        /* 5 */
    "taxes.misc",                  /* 6: not under tax.* */
    "tax",                         /* 7: "tax.*" needs something after the dot */
    "population.birth.registered", /* 8 */
    "population.birthday.party",   /* 9: not under population.birth.* */
};
#define N_TYPES (sizeof s_types / sizeof s_types[0])

static void s_expect_seqs(civ_client_t *c, const char *name, const uint64_t *want, size_t n)
{
    civ_delivery_t *got[N_TYPES] = {0};
    it_receive(c, name, got, n, 10000, 0);
    for (size_t i = 0; i < n; i++) {
        assert_string_equal(got[i]->subscription, name);
        if (got[i]->seq != want[i])
            fail_msg("%s: delivery %zu is seq %" PRIu64 ", expected %" PRIu64, name, i, got[i]->seq, want[i]);
        assert_string_equal(got[i]->event.type, s_types[want[i] - 1]);
        char id[32];
        snprintf(id, sizeof id, "typed-%" PRIu64, want[i]);
        assert_string_equal(got[i]->event.event_id, id);
    }
    assert_int_equal(civ_ack(c, name, want[n - 1]), CIV_OK);
    it_free_all(got, n);
    it_expect_quiet(c, 700);
}

static void test_filters(void **state)
{
    it_fix_t *f = *state;
    it_start(f, s_flags);
    civ_client_t *pa = it_client(f, A, 10000);
    civ_client_t *exact = it_client(f, C, 10000);
    civ_client_t *prefix = it_client(f, C, 10000);
    civ_client_t *mixed = it_client(f, B, 10000);

    /* Live: subscribed before anything is published. */
    const char *f_exact[] = {"population.birth.registered"};
    assert_int_equal(civ_subscribe(exact, "births", f_exact, 1, it_from_first(), 4), CIV_OK);

    for (size_t i = 0; i < N_TYPES; i++) {
        char id[32];
        snprintf(id, sizeof id, "typed-%zu", i + 1);
        civ_event_t ev = {.event_id = id, .type = s_types[i], .payload = "{}", .payload_len = 2};
        civ_ack_t ack;
        assert_int_equal(civ_publish(pa, &ev, &ack), CIV_OK);
        assert_int_equal(ack.error, CIV_OK);
        assert_int_equal(ack.seq, i + 1);
    }

    /* From the log: subscribed after. */
    const char *f_prefix[] = {"tax.*"};
    assert_int_equal(civ_subscribe(prefix, "taxes", f_prefix, 1, it_from_first(), 4), CIV_OK);
    const char *f_mixed[] = {"population.birth.*", "tax.return.filed"};
    assert_int_equal(civ_subscribe(mixed, "mixed", f_mixed, 2, it_from_first(), 2), CIV_OK);

    const uint64_t w_exact[] = {1, 8};
    const uint64_t w_prefix[] = {4, 5};
    const uint64_t w_mixed[] = {1, 2, 4, 8};
    s_expect_seqs(exact, "births", w_exact, 2);
    s_expect_seqs(prefix, "taxes", w_prefix, 2);
    s_expect_seqs(mixed, "mixed", w_mixed, 4);

    /* A matching event published now reaches the live subscriptions only. */
    civ_event_t ev = {.event_id = "typed-10", .type = "tax.return.filed", .payload = "{}", .payload_len = 2};
    civ_ack_t ack;
    assert_int_equal(civ_publish(pa, &ev, &ack), CIV_OK);
    assert_int_equal(ack.seq, 10);
    civ_delivery_t *d = NULL;
    assert_int_equal(civ_next(prefix, &d, 5000), CIV_OK);
    assert_int_equal(d->seq, 10);
    civ_delivery_destroy(&d);
    assert_int_equal(civ_next(mixed, &d, 5000), CIV_OK);
    assert_int_equal(d->seq, 10);
    civ_delivery_destroy(&d);
    it_expect_quiet(exact, 700);
}

/* ---- blocking publish and duplicates ------------------------------------------------ */

static void s_publish_one(civ_client_t *c, const char *id, const char *payload, uint64_t want_seq, bool want_dup)
{
    civ_event_t ev = {.event_id = id,
                      .type = "population.birth.registered",
                      .subject = "person/1",
                      .content_type = "text/plain",
                      .payload = payload,
                      .payload_len = strlen(payload)};
    civ_ack_t ack;
    memset(&ack, 0x5a, sizeof ack);
    int rc = civ_publish(c, &ev, &ack);
    if (rc != CIV_OK)
        fail_msg("civ_publish %s: %s", id, civ_error_name(rc));
    if (ack.error != CIV_OK)
        fail_msg("civ_publish %s refused: %s (%s)", id, civ_error_name(ack.error), ack.reason);
    if (ack.seq != want_seq || ack.duplicate != want_dup)
        fail_msg("%s from %s: seq %" PRIu64 " duplicate %d, expected seq %" PRIu64 " duplicate %d", id,
                 civ_client_agency(c), ack.seq, ack.duplicate, want_seq, want_dup);
    assert_string_equal(ack.event_id, id);
    assert_int_equal(ack.token, 0);
}

static void test_blocking_publish_and_duplicates(void **state)
{
    it_fix_t *f = *state;
    it_start(f, s_flags);
    civ_client_t *pa = it_client(f, A, 5000);
    civ_client_t *pb = it_client(f, B, 5000);
    civ_client_t *sub = it_client(f, C, 5000);

    s_publish_one(pa, "ev-1", "first", 1, false);
    s_publish_one(pa, "ev-2", "second", 2, false);
    /* Same source and event_id, even with other content: the original seq. */
    s_publish_one(pa, "ev-1", "changed content", 1, true);
    s_publish_one(pa, "ev-2", "second", 2, true);
    assert_int_equal(it_last_seq(pa), 2);
    /* The same event_id from another agency is another event. */
    s_publish_one(pb, "ev-1", "from b", 3, false);
    s_publish_one(pb, "ev-1", "from b", 3, true);
    s_publish_one(pa, "ev-3", "third", 4, false);

    /* Duplicates through the pipeline, mixed with a new event. */
    civ_event_t ev = {.event_id = "ev-2", .type = "population.birth.registered", .payload = "x", .payload_len = 1};
    uint64_t t1, t2, t3;
    assert_int_equal(civ_publish_send(pa, &ev, &t1), CIV_OK);
    ev.event_id = "ev-4";
    assert_int_equal(civ_publish_send(pa, &ev, &t2), CIV_OK);
    ev.event_id = "ev-1";
    assert_int_equal(civ_publish_send(pa, &ev, &t3), CIV_OK);
    assert_int_equal(civ_publish_pending(pa), 3);
    civ_ack_t ack;
    assert_int_equal(civ_publish_recv(pa, &ack, -1), CIV_OK);
    assert_int_equal(ack.token, t1);
    assert_int_equal(ack.seq, 2);
    assert_true(ack.duplicate);
    assert_int_equal(civ_publish_recv(pa, &ack, -1), CIV_OK);
    assert_int_equal(ack.token, t2);
    assert_string_equal(ack.event_id, "ev-4");
    assert_int_equal(ack.seq, 5);
    assert_false(ack.duplicate);
    assert_int_equal(civ_publish_recv(pa, &ack, -1), CIV_OK);
    assert_int_equal(ack.token, t3);
    assert_int_equal(ack.seq, 1);
    assert_true(ack.duplicate);
    assert_int_equal(civ_publish_pending(pa), 0);
    /* Nothing pending: no ack to wait for (the SDK says invalid at once). */
    int rc = civ_publish_recv(pa, &ack, 200);
    assert_true(rc == CIV_E_INVALID || rc == CIV_E_TIMEOUT);

    /* An event without an id gets a generated UUID. */
    civ_event_t anon = {.type = "population.birth.registered", .payload = "y", .payload_len = 1};
    assert_int_equal(civ_publish(pb, &anon, &ack), CIV_OK);
    assert_int_equal(ack.error, CIV_OK);
    assert_int_equal(ack.seq, 6);
    assert_int_equal(strlen(ack.event_id), 36);
    char anon_id[CIV_ID_MAX + 1];
    snprintf(anon_id, sizeof anon_id, "%s", ack.event_id);

    /* The log holds each event once, with its original content. */
    assert_int_equal(it_last_seq(pb), 6);
    const char *all[] = {"*"};
    assert_int_equal(civ_subscribe(sub, "dups", all, 1, it_from_first(), 16), CIV_OK);
    civ_delivery_t *got[6] = {0};
    it_receive(sub, "dups", got, 6, 10000, 0);
    static const struct {
        const char *id, *source, *payload;
    } want[6] = {{"ev-1", A, "first"}, {"ev-2", A, "second"}, {"ev-1", B, "from b"},
                 {"ev-3", A, "third"}, {"ev-4", A, "x"},      {NULL, B, "y"}};
    for (int i = 0; i < 6; i++) {
        assert_int_equal(got[i]->seq, i + 1);
        assert_string_equal(got[i]->event.event_id, want[i].id ? want[i].id : anon_id);
        assert_string_equal(got[i]->event.source, want[i].source);
        assert_int_equal(got[i]->event.payload_len, strlen(want[i].payload));
        assert_memory_equal(got[i]->event.payload, want[i].payload, strlen(want[i].payload));
    }
    it_free_all(got, 6);
    it_expect_quiet(sub, 500);
}

/* The hub caps credit at credit_max; a consumer asking for a larger window
 * must still get everything (it grants in halves of what it was given). */
static void test_credit_capped_by_hub(void **state)
{
    it_fix_t *f = *state;
    const char *flags[] = {"--no-sync", "--credit-max", "100", NULL};
    it_start(f, flags);
    civ_client_t *pa = it_client(f, A, 5000);
    civ_client_t *sub = it_client_opts(f, C, 5000, 1024, 0);
    it_publish_many(pa, 0, 1000, 256, NULL);
    const char *all[] = {"*"};
    assert_int_equal(civ_subscribe(sub, "capped", all, 1, it_from_first(), 1024), CIV_OK);
    civ_delivery_t **got = calloc(1000, sizeof *got);
    it_receive(sub, "capped", got, 1000, 20000, 100);
    for (int i = 0; i < 1000; i++)
        assert_int_equal(got[i]->seq, (uint64_t)i + 1);
    it_free_all(got, 1000);
    free(got);
}

/* Subscribing again under the same name with an explicit start, on a live
 * connection with events in flight, starts over there: nothing from the old
 * session is handed out, nothing of the new one is dropped. */
static void test_resubscribe_from_first_live(void **state)
{
    it_fix_t *f = *state;
    it_start(f, s_flags);
    civ_client_t *pa = it_client(f, A, 5000);
    civ_client_t *sub = it_client(f, C, 5000);
    it_publish_many(pa, 0, 3000, 256, NULL);
    const char *all[] = {"*"};
    assert_int_equal(civ_subscribe(sub, "again", all, 1, it_from_first(), 1024), CIV_OK);
    civ_delivery_t **got = calloc(3000, sizeof *got);
    it_receive(sub, "again", got, 600, 10000, 0);
    assert_int_equal(got[599]->seq, 600);
    it_free_all(got, 600);
    assert_int_equal(civ_subscribe(sub, "again", all, 1, it_from_first(), 1024), CIV_OK);
    it_receive(sub, "again", got, 3000, 20000, 500);
    for (int i = 0; i < 3000; i++)
        assert_int_equal(got[i]->seq, (uint64_t)i + 1);
    it_free_all(got, 3000);
    free(got);
    it_expect_quiet(sub, 300);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_setup_teardown(test_two_publishers_one_subscriber, s_setup, s_teardown),
        cmocka_unit_test_setup_teardown(test_filters, s_setup, s_teardown),
        cmocka_unit_test_setup_teardown(test_blocking_publish_and_duplicates, s_setup, s_teardown),
        cmocka_unit_test_setup_teardown(test_credit_capped_by_hub, s_setup, s_teardown),
        cmocka_unit_test_setup_teardown(test_resubscribe_from_first_live, s_setup, s_teardown),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
