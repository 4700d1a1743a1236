/* test_crash - kill the hub with SIGKILL under load; nothing acknowledged is lost.
 *
 * Two publisher threads publish continuously (pipelined, durable hub) while
 * the main thread kills civibusd at random moments and restarts it, several
 * times. A consumer thread follows a durable subscription and acknowledges
 * as it goes. At the end: every acknowledged event is in the log exactly
 * once, at the sequence number its ack named; the log has no gaps; the
 * consumer saw every sequence number in order (redeliveries allowed after a
 * crash, nothing skipped); its saved cursor is no further than the log.
 */
#include <pthread.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include <cmocka.h>

#include "codec.h"
#include "harness.h"

#define PUBLISHERS 2
#define KILLS 5
#define MAX_ACKED 400000

typedef struct {
    harness_t *h;
    const char *agency;
    volatile int stop;
    uint64_t *acked_seq; /* acked_seq[i]: seq of event i (0: not acked) */
    uint64_t n_sent;
    uint64_t n_acked;
    uint64_t n_nacked;
    int failed;
} s_pub_t;

typedef struct {
    harness_t *h;
    volatile int stop;
    uint64_t last_seen;
    uint64_t received;
    int out_of_order;
} s_con_t;

static void *s_publisher(void *arg)
{
    s_pub_t *p = arg;
    civ_client_t *c = harness_client(p->h, p->agency, 2000);
    if (!c) {
        p->failed = 1;
        return NULL;
    }
    char id[64], payload[256];
    memset(payload, 'x', sizeof payload);
    civ_ack_t ack;
    int64_t deadline = 0;
    while (1) {
        if (p->stop && deadline == 0)
            deadline = codec_mono_ms() + 60000;
        if (!p->stop && p->n_sent < MAX_ACKED) {
            snprintf(id, sizeof id, "%s-%llu", p->agency, (unsigned long long)p->n_sent);
            civ_event_t ev = {.event_id = id, .type = "crash.test", .payload = payload, .payload_len = 256};
            uint64_t token;
            int rc = civ_publish_send(c, &ev, &token);
            if (rc == CIV_OK) {
                p->n_sent++;
                continue;
            }
            if (rc != CIV_E_TIMEOUT) {
                p->failed = 2;
                break;
            }
        }
        if (civ_publish_pending(c) == 0) {
            if (p->stop)
                break;
            continue;
        }
        if (deadline && codec_mono_ms() > deadline) {
            p->failed = 3; /* could not get acks for everything within a minute */
            break;
        }
        int rc = civ_publish_recv(c, &ack, 200);
        if (rc == CIV_E_TIMEOUT)
            continue;
        if (rc != CIV_OK) {
            p->failed = 4;
            break;
        }
        if (ack.error == CIV_OK) {
            p->acked_seq[ack.token - 1] = ack.seq;
            p->n_acked++;
        } else {
            p->n_nacked++;
        }
    }
    civ_client_destroy(&c);
    return NULL;
}

static void *s_consumer(void *arg)
{
    s_con_t *k = arg;
    civ_client_t *c = harness_client(k->h, "consumer", 2000);
    if (!c)
        return NULL;
    const char *filters[] = {"crash.*"};
    civ_start_t start = {.kind = CIV_START_CURSOR};
    int64_t until = codec_mono_ms() + 30000;
    while (civ_subscribe(c, "follow", filters, 1, start, 256) != CIV_OK && codec_mono_ms() < until)
        ;
    while (!k->stop) {
        civ_delivery_t *d = NULL;
        if (civ_next(c, &d, 200) != CIV_OK || !d)
            continue;
        if (d->seq > k->last_seen + 1)
            k->out_of_order++; /* a gap: something was skipped */
        if (d->seq > k->last_seen)
            k->last_seen = d->seq;
        k->received++;
        if (k->received % 64 == 0)
            civ_ack(c, "follow", d->seq);
        civ_delivery_destroy(&d);
    }
    civ_ack(c, "follow", k->last_seen);
    civ_client_destroy(&c);
    return NULL;
}

static void s_sleep_ms(int ms)
{
    struct timespec ts = {.tv_sec = ms / 1000, .tv_nsec = (long)(ms % 1000) * 1000000L};
    nanosleep(&ts, NULL);
}

static void test_kill9_under_load(void **state)
{
    harness_t *h = *state;
    const char *agencies[PUBLISHERS] = {"ee.population-register", "tax-office"};
    for (int i = 0; i < PUBLISHERS; i++)
        assert_int_equal(harness_add_agency(h, agencies[i]), 0);
    assert_int_equal(harness_add_agency(h, "consumer"), 0);
    assert_int_equal(harness_start(h, NULL), 0);

    s_pub_t pubs[PUBLISHERS];
    pthread_t threads[PUBLISHERS], con_thread;
    for (int i = 0; i < PUBLISHERS; i++) {
        memset(&pubs[i], 0, sizeof pubs[i]);
        pubs[i].h = h;
        pubs[i].agency = agencies[i];
        pubs[i].acked_seq = calloc(MAX_ACKED, sizeof(uint64_t));
        assert_non_null(pubs[i].acked_seq);
        assert_int_equal(pthread_create(&threads[i], NULL, s_publisher, &pubs[i]), 0);
    }
    s_con_t con = {.h = h};
    assert_int_equal(pthread_create(&con_thread, NULL, s_consumer, &con), 0);

    unsigned seed = (unsigned)time(NULL);
    fprintf(stderr, "crash: seed %u\n", seed);
    for (int k = 0; k < KILLS; k++) {
        s_sleep_ms(300 + (int)(rand_r(&seed) % 900));
        assert_int_equal(harness_kill(h), 128 + 9);
        s_sleep_ms(50 + (int)(rand_r(&seed) % 300));
        assert_int_equal(harness_start(h, NULL), 0);
    }
    s_sleep_ms(500);
    for (int i = 0; i < PUBLISHERS; i++)
        pubs[i].stop = 1;
    for (int i = 0; i < PUBLISHERS; i++)
        pthread_join(threads[i], NULL);

    /* Everything is acknowledged now; let the consumer catch up. */
    civ_client_t *c = harness_client(h, "consumer", 5000);
    assert_non_null(c);
    uint64_t last = 0;
    assert_int_equal(civ_ping(c, &last), CIV_OK);
    for (int i = 0; i < 300 && con.last_seen < last; i++)
        s_sleep_ms(100);
    con.stop = 1;
    pthread_join(con_thread, NULL);

    uint64_t total_acked = 0;
    for (int i = 0; i < PUBLISHERS; i++) {
        fprintf(stderr, "crash: %s sent %llu acked %llu nacked %llu\n", agencies[i],
                (unsigned long long)pubs[i].n_sent, (unsigned long long)pubs[i].n_acked,
                (unsigned long long)pubs[i].n_nacked);
        assert_int_equal(pubs[i].failed, 0);
        assert_int_equal(pubs[i].n_nacked, 0);
        assert_int_equal(pubs[i].n_acked, pubs[i].n_sent);
        total_acked += pubs[i].n_acked;
    }
    assert_true(total_acked > 0);

    /* Replay the whole log: gapless, each event once, at its acked seq. */
    uint8_t *seen[PUBLISHERS];
    for (int i = 0; i < PUBLISHERS; i++)
        seen[i] = calloc(MAX_ACKED, 1);
    civ_start_t from = {.kind = CIV_START_FIRST};
    civ_error_t err;
    civ_replay_t *r = civ_replay_open(c, from, 0, &err);
    assert_non_null(r);
    uint64_t expect = 1;
    civ_delivery_t *d = NULL;
    while (civ_replay_next(r, &d, 5000) == CIV_OK && d) {
        assert_int_equal(d->seq, expect);
        expect++;
        int which = strcmp(d->event.source, agencies[0]) == 0 ? 0 : 1;
        const char *num = strrchr(d->event.event_id, '-');
        assert_non_null(num);
        unsigned long long idx = strtoull(num + 1, NULL, 10);
        assert_true(idx < MAX_ACKED);
        assert_int_equal(seen[which][idx], 0); /* exactly once */
        seen[which][idx] = 1;
        if (pubs[which].acked_seq[idx])
            assert_int_equal(pubs[which].acked_seq[idx], d->seq);
        civ_delivery_destroy(&d);
    }
    civ_replay_destroy(&r);
    assert_int_equal(expect - 1, last);
    for (int i = 0; i < PUBLISHERS; i++) {
        for (uint64_t j = 0; j < pubs[i].n_sent; j++)
            if (pubs[i].acked_seq[j] && !seen[i][j])
                fail_msg("acked event %s-%llu (seq %llu) is missing from the log", agencies[i],
                         (unsigned long long)j, (unsigned long long)pubs[i].acked_seq[j]);
        free(seen[i]);
        free(pubs[i].acked_seq);
    }

    /* The consumer saw everything in order; its cursor is within the log. */
    assert_int_equal(con.out_of_order, 0);
    assert_int_equal(con.last_seen, last);
    civ_status_t *st = NULL;
    assert_int_equal(civ_status(c, &st), CIV_OK);
    int found = 0;
    for (size_t i = 0; i < st->n_subscriptions; i++) {
        if (strcmp(st->subscriptions[i].name, "follow") == 0) {
            found = 1;
            assert_true(st->subscriptions[i].cursor <= last);
            assert_true(st->subscriptions[i].cursor > 0);
        }
    }
    assert_true(found);
    civ_status_destroy(&st);
    civ_client_destroy(&c);
    assert_int_equal(harness_stop(h), 0);
}

static int s_setup(void **state)
{
    *state = harness_new();
    return *state ? 0 : -1;
}

static int s_teardown(void **state)
{
    harness_t *h = *state;
    harness_destroy(&h);
    return 0;
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_setup_teardown(test_kill9_under_load, s_setup, s_teardown),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
