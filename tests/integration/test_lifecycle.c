/* test_lifecycle - reload on SIGHUP, drain on SIGTERM, and the ways out of a drain.
 *
 *   reload          a config file edited under a running hub: reloadable keys
 *                   (log_level, require_signatures, log_format) change what the
 *                   hub does, a restart-only key (dedup_window) is reported and
 *                   kept, an invalid file keeps everything.
 *   rate limiting   a burst of refusals is logged in part, and the rest is
 *                   counted in "suppressed" lines: the two add up.
 *   drain           SIGTERM while three publishers pipeline events: the hub
 *                   exits 0, and the events in the log are exactly the events
 *                   that were acknowledged (nothing committed goes unanswered,
 *                   nothing answered is missing); a consumer's cursor survives.
 *   second signal   a second stop signal during the drain exits at once (3),
 *                   and what was acknowledged before is still there.
 *   drain timeout   a drain that cannot finish (a peer that reads nothing
 *                   holds the socket's linger) ends at drain_timeout_ms (4).
 */
#include <pthread.h>
#include <setjmp.h>
#include <signal.h>
#include <stdarg.h>
#include <stdatomic.h>
#include <stddef.h>
#include <stdint.h>

#include <cmocka.h>
#include <jansson.h>

#include "itest.h"

#define PUBLISHERS 3
#define PUB_MAX 200000 /* events one publisher sends, at most */
#define PUB_AHEAD 128

/* ---- helpers ----------------------------------------------------------------- */

static void s_write(const char *path, const char *text)
{
    FILE *f = fopen(path, "w");
    assert_non_null(f);
    assert_true(fputs(text, f) >= 0);
    assert_int_equal(fclose(f), 0);
}

/* Lines of the hub's log containing needle. */
static int s_log_count(it_fix_t *f, const char *needle)
{
    char path[512], line[8192];
    snprintf(path, sizeof path, "%s/hub.log", harness_dir(f->h));
    FILE *fp = fopen(path, "r");
    if (!fp)
        return 0;
    int n = 0;
    while (fgets(line, sizeof line, fp))
        n += strstr(line, needle) != NULL;
    fclose(fp);
    return n;
}

/* Wait (bounded) until the log holds at least n lines with needle. */
static void s_log_wait(it_fix_t *f, const char *needle, int n)
{
    int64_t deadline = it_mono_ms() + 20000;
    while (s_log_count(f, needle) < n) {
        if (it_mono_ms() > deadline) {
            harness_dump_log(f->h);
            fail_msg("the hub's log has fewer than %d lines with '%s'", n, needle);
        }
        it_sleep_ms(50);
    }
}

/* Publish event i of c's agency unsigned; the ack's error code. */
static int s_publish_one(civ_client_t *c, int i)
{
    it_ev_t e;
    it_ev_make(&e, civ_client_agency(c), i);
    civ_ack_t ack;
    int rc = civ_publish(c, &e.ev, &ack);
    if (rc != CIV_OK)
        fail_msg("civ_publish: %s", civ_error_name(rc));
    return ack.error;
}

/* Debug lines are written: a new connection of agency logs its handshake. */
static void s_expect_debug_lines(it_fix_t *f, const char *agency)
{
    char needle[128];
    it_last_seq(it_client(f, agency, 0));
    snprintf(needle, sizeof needle, "debug auth event=handshake_ok agency=%s ", agency);
    s_log_wait(f, needle, 1);
}

static int s_setup(void **state)
{
    const char *agencies[] = {"pub-a", "pub-b", "pub-c", "reader", NULL};
    *state = it_fix_new(agencies);
    return 0;
}

static int s_teardown(void **state)
{
    it_fix_t *f = *state;
    it_fix_destroy(&f);
    return 0;
}

/* ---- reload ------------------------------------------------------------------ */

static void test_reload(void **state)
{
    it_fix_t *f = *state;
    char conf[512];
    snprintf(conf, sizeof conf, "%s/civibusd.conf", harness_dir(f->h));
    s_write(conf, "log_level = info\nrequire_signatures = false\ndedup_window = 1000000\n");
    const char *extra[] = {"--config", conf, NULL};
    it_start(f, extra);
    civ_client_t *c = it_client(f, "pub-a", 0);
    assert_int_equal(s_publish_one(c, 1), CIV_OK);
    assert_int_equal(s_log_count(f, "event=handshake_ok"), 0); /* a debug line */

    /* two reloadable keys and a restart-only one */
    s_write(conf, "log_level = debug\nrequire_signatures = true\ndedup_window = 5000\n");
    assert_int_equal(harness_signal(f->h, SIGHUP), 0);
    s_log_wait(f, "event=config_reloaded changed=2", 1);
    assert_int_equal(s_log_count(f, "info config event=config_changed key=log_level old=info new=debug"), 1);
    assert_int_equal(s_log_count(f, "info config event=config_changed key=require_signatures old=false new=true"), 1);
    assert_int_equal(s_log_count(f, "warn config event=config_restart_needed key=dedup_window running=1000000 "
                                    "configured=5000 reason=not_reloadable"),
                     1);
    s_log_wait(f, "event=registry_reloaded", 1);
    /* require_signatures is in force on the connection that was open */
    assert_int_equal(s_publish_one(c, 2), CIV_E_BAD_SIGNATURE);
    s_expect_debug_lines(f, "pub-b");

    /* an invalid file keeps the whole configuration in force */
    s_write(conf, "log_level = error\nrequire_signatures = false\nbatch_max = 0\n");
    assert_int_equal(harness_signal(f->h, SIGHUP), 0);
    s_log_wait(f, "event=config_reload_failed", 1);
    assert_int_equal(s_log_count(f, "batch_max = 0 is out of bounds"), 1);
    assert_int_equal(s_log_count(f, "action=kept_previous"), 1);
    s_log_wait(f, "event=registry_reloaded", 2); /* the registry is still re-read */
    assert_int_equal(s_publish_one(c, 3), CIV_E_BAD_SIGNATURE);
    s_expect_debug_lines(f, "pub-c");

    /* the format too: JSON lines from the reload on */
    s_write(conf, "log_format = json\nrequire_signatures = false\n");
    assert_int_equal(harness_signal(f->h, SIGHUP), 0);
    s_log_wait(f, "\"event\":\"config_reloaded\"", 1);
    assert_int_equal(s_publish_one(c, 4), CIV_OK);
    assert_int_equal(harness_stop(f->h), 0);

    char path[512], line[8192], last[8192] = "";
    snprintf(path, sizeof path, "%s/hub.log", harness_dir(f->h));
    FILE *fp = fopen(path, "r");
    assert_non_null(fp);
    int json_lines = 0;
    bool in_json = false;
    while (fgets(line, sizeof line, fp)) {
        if (strstr(line, "\"event\":\"config_reloaded\""))
            in_json = true;
        if (!in_json)
            continue;
        /* every line after the switch is one JSON object */
        json_error_t err;
        json_t *o = json_loads(line, 0, &err);
        if (!o)
            fail_msg("not a JSON line: %s", line);
        assert_true(json_is_string(json_object_get(o, "time")));
        assert_true(json_is_string(json_object_get(o, "event")));
        json_decref(o);
        json_lines++;
        snprintf(last, sizeof last, "%s", line);
    }
    fclose(fp);
    assert_true(json_lines >= 4); /* reloaded, stats, stopped, exit at least */
    assert_non_null(strstr(last, "\"module\":\"main\",\"event\":\"exit\",\"code\":\"0\""));
}

/* ---- rate-limited refusals --------------------------------------------------------- */

/* Sum of N over the log's "suppressed=N" lines for key. */
static int s_suppressed(it_fix_t *f, const char *key)
{
    char path[512], line[8192], needle[128];
    snprintf(path, sizeof path, "%s/hub.log", harness_dir(f->h));
    snprintf(needle, sizeof needle, "event=suppressed key=%s suppressed=", key);
    FILE *fp = fopen(path, "r");
    assert_non_null(fp);
    int sum = 0;
    while (fgets(line, sizeof line, fp)) {
        const char *p = strstr(line, needle);
        if (p)
            sum += atoi(p + strlen(needle));
    }
    fclose(fp);
    return sum;
}

/* A burst of refusals: a few lines, and a count of the rest, adding up. */
static void test_refusals_rate_limited(void **state)
{
    it_fix_t *f = *state;
    const char *extra[] = {"--require-signatures", NULL};
    it_start(f, extra);
    civ_client_t *c = it_client_opts(f, "pub-a", 0, 64, 64);
    for (int i = 0; i < 30; i++) {
        it_ev_t e;
        it_ev_make(&e, "pub-a", i);
        uint64_t token;
        assert_int_equal(civ_publish_send(c, &e.ev, &token), CIV_OK);
    }
    for (int i = 0; i < 30; i++) {
        civ_ack_t ack;
        assert_int_equal(civ_publish_recv(c, &ack, -1), CIV_OK);
        assert_int_equal(ack.error, CIV_E_BAD_SIGNATURE);
    }
    assert_int_equal(harness_stop(f->h), 0); /* a stop writes what is pending */
    int lines = s_log_count(f, "warn router event=publish_refused agency=pub-a code=bad_signature reason=");
    int withheld = s_suppressed(f, "publish_refused.bad_signature");
    print_message("refusals: %d lines, %d withheld\n", lines, withheld);
    assert_int_equal(lines + withheld, 30);
    assert_true(lines >= 10 && lines <= 20);
    assert_true(s_log_count(f, "bad_signature=30 ") == 1); /* the stats line counts them all */
}

/* ---- drain under load ---------------------------------------------------------- */

typedef struct {
    harness_t *h;
    const char *agency;
    uint8_t *acked; /* acked[i]: event i was acknowledged */
    atomic_int n_acked;
    int n_sent;
    int last_error;
    char why[512];
} s_pub_t;

/* Publish pipelined until the hub stops answering; record every ack. */
static void *s_publisher(void *arg)
{
    s_pub_t *p = arg;
    civ_client_t *c = harness_client(p->h, p->agency, 5000);
    if (!c) {
        p->last_error = CIV_E_TRANSPORT;
        return NULL;
    }
    for (;;) {
        if (p->n_sent < PUB_MAX && civ_publish_pending(c) < PUB_AHEAD) {
            it_ev_t e;
            it_ev_make(&e, p->agency, p->n_sent);
            uint64_t token;
            int rc = civ_publish_send(c, &e.ev, &token);
            if (rc != CIV_OK) {
                p->last_error = rc;
                break;
            }
            p->n_sent++;
            continue;
        }
        if (!civ_publish_pending(c))
            break;
        civ_ack_t ack;
        int rc = civ_publish_recv(c, &ack, -1);
        if (rc != CIV_OK) {
            p->last_error = rc;
            break;
        }
        int i = it_ev_index(ack.event_id, p->agency);
        if (ack.error != CIV_OK || i < 0 || i >= PUB_MAX) {
            p->last_error = ack.error ? ack.error : CIV_E_PROTOCOL;
            snprintf(p->why, sizeof p->why, "%s: %s", ack.event_id, ack.reason);
            break;
        }
        p->acked[i] = 1;
        atomic_fetch_add(&p->n_acked, 1);
    }
    civ_client_destroy(&c);
    return NULL;
}

static void test_drain_under_load(void **state)
{
    it_fix_t *f = *state;
    it_start(f, NULL);
    static const char *const names[PUBLISHERS] = {"pub-a", "pub-b", "pub-c"};
    s_pub_t pubs[PUBLISHERS];
    pthread_t tids[PUBLISHERS];
    for (int p = 0; p < PUBLISHERS; p++) {
        memset(&pubs[p], 0, sizeof pubs[p]);
        pubs[p].h = f->h;
        pubs[p].agency = names[p];
        pubs[p].acked = calloc(PUB_MAX, 1);
        assert_non_null(pubs[p].acked);
        assert_int_equal(pthread_create(&tids[p], NULL, s_publisher, &pubs[p]), 0);
    }
    /* Load first, then a consumer acknowledges part of the log, then stop. */
    int64_t deadline = it_mono_ms() + 60000;
    int total = 0;
    while (total < 3000 && it_mono_ms() < deadline) {
        it_sleep_ms(20);
        total = 0;
        for (int p = 0; p < PUBLISHERS; p++)
            total += atomic_load(&pubs[p].n_acked);
    }
    assert_true(total >= 3000);
    civ_client_t *reader = it_client(f, "reader", 0);
    const char *all[] = {"*"};
    assert_int_equal(civ_subscribe(reader, "main", all, 1, it_from_first(), 256), CIV_OK);
    civ_delivery_t *got[500];
    it_receive(reader, "main", got, 500, 20000, 0);
    uint64_t cursor = got[499]->seq;
    it_free_all(got, 500);
    assert_int_equal(civ_ack(reader, "main", cursor), CIV_OK);
    it_last_seq(reader); /* the ack was read before this answer */
    it_drop(f, &reader);

    int at_signal = 0;
    for (int p = 0; p < PUBLISHERS; p++)
        at_signal += atomic_load(&pubs[p].n_acked);
    assert_int_equal(harness_signal(f->h, SIGTERM), 0);
    int rc = harness_wait(f->h, 60000);
    if (rc != 0)
        harness_dump_log(f->h);
    assert_int_equal(rc, 0);
    for (int p = 0; p < PUBLISHERS; p++)
        pthread_join(tids[p], NULL);
    int acked = 0;
    for (int p = 0; p < PUBLISHERS; p++) {
        if (pubs[p].why[0])
            fail_msg("%s: refused %s", pubs[p].agency, pubs[p].why);
        acked += atomic_load(&pubs[p].n_acked);
    }
    print_message("drain: %d events acknowledged, %d of them after SIGTERM was sent\n", acked, acked - at_signal);
    assert_int_equal(s_log_count(f, "info router event=draining "), 1);
    assert_int_equal(s_log_count(f, "info router event=drained accepted="), 1);
    assert_int_equal(s_log_count(f, "replies_lost=0 cursors_saved="), 1);

    /* The log holds exactly what was acknowledged, once each. */
    it_start(f, NULL);
    civ_client_t *c = it_client(f, "reader", 0);
    civ_error_t err;
    civ_replay_t *r = civ_replay_open(c, it_from_first(), 0, &err);
    assert_non_null(r);
    int in_log = 0;
    for (;;) {
        civ_delivery_t *d = NULL;
        int nrc = civ_replay_next(r, &d, 10000);
        if (nrc != CIV_OK)
            fail_msg("replay: %s", civ_error_name(nrc));
        if (!d)
            break;
        int p = 0;
        while (p < PUBLISHERS && strcmp(d->event.source, names[p]) != 0)
            p++;
        assert_true(p < PUBLISHERS);
        int i = it_ev_index(d->event.event_id, names[p]);
        assert_true(i >= 0 && i < PUB_MAX);
        if (pubs[p].acked[i] != 1)
            fail_msg("%s is in the log (seq %" PRIu64 ") but was %s", d->event.event_id, d->seq,
                     pubs[p].acked[i] ? "seen twice" : "never acknowledged");
        pubs[p].acked[i] = 2;
        in_log++;
        civ_delivery_destroy(&d);
    }
    civ_replay_destroy(&r);
    assert_int_equal(in_log, acked);
    assert_int_equal(it_last_seq(c), (uint64_t)acked);

    /* and the consumer's acknowledged cursor was saved */
    civ_status_t *st = NULL;
    assert_int_equal(civ_status(c, &st), CIV_OK);
    assert_int_equal(st->n_subscriptions, 1);
    assert_int_equal(st->subscriptions[0].cursor, cursor);
    civ_status_destroy(&st);
    for (int p = 0; p < PUBLISHERS; p++)
        free(pubs[p].acked);
}

/* ---- the ways out of a drain ------------------------------------------------- */

static void test_second_signal(void **state)
{
    it_fix_t *f = *state;
    it_start(f, NULL);
    civ_client_t *c = it_client(f, "pub-a", 0);
    it_publish_many(c, 0, 200, 64, NULL);
    it_drop(f, &c);
    /* Both signals wait while the hub is stopped, and are taken one after
     * the other when it continues: the second always finds the drain begun. */
    assert_int_equal(harness_signal(f->h, SIGSTOP), 0);
    assert_int_equal(harness_signal(f->h, SIGTERM), 0);
    assert_int_equal(harness_signal(f->h, SIGINT), 0);
    assert_int_equal(harness_signal(f->h, SIGCONT), 0);
    int rc = harness_wait(f->h, 20000);
    if (rc != 3)
        harness_dump_log(f->h);
    assert_int_equal(rc, 3);
    assert_int_equal(s_log_count(f, "warn main event=second_signal signal=SIG"), 1);
    assert_int_equal(s_log_count(f, "action=exit_now code=3"), 1);
    assert_int_equal(s_log_count(f, "event=drained"), 0);
    /* like a crash: everything acknowledged is there */
    it_start(f, NULL);
    c = it_client(f, "pub-a", 0);
    assert_int_equal(it_last_seq(c), 200);
}

/* Replay the log from the start on raw, without reading the answers. */
static void s_replay_unread(it_raw_t *raw, int n)
{
    for (int i = 0; i < n; i++) {
        Civibus__V1__Replay rep = CIVIBUS__V1__REPLAY__INIT;
        rep.request_id = (uint64_t)i + 1;
        Civibus__V1__ClientMessage msg = CIVIBUS__V1__CLIENT_MESSAGE__INIT;
        msg.version = 1;
        msg.body_case = CIVIBUS__V1__CLIENT_MESSAGE__BODY_REPLAY;
        msg.replay = &rep;
        assert_int_equal(it_raw_send(raw, &msg, false), 0);
    }
}

static void test_drain_timeout(void **state)
{
    it_fix_t *f = *state;
    const char *extra[] = {"--drain-timeout-ms", "100", NULL};
    it_start(f, extra);
    civ_client_t *c = it_client(f, "pub-a", 0);
    it_publish_many(c, 0, 2000, 256, NULL);
    /* A peer that asked for about 25 MiB of replays and reads none: the
     * socket's linger (2 s) keeps the stop waiting for it. */
    it_raw_t *raw = it_raw_new_opts(f->h, "pub-b", 1, 4096);
    assert_non_null(raw);
    f->raws[0] = raw; /* closed by the teardown */
    s_replay_unread(raw, 200);
    /* The first answer says the connection is up and its requests are in. */
    Civibus__V1__HubMessage *first = it_raw_recv(raw, 10000);
    assert_non_null(first);
    assert_int_equal(first->body_case, CIVIBUS__V1__HUB_MESSAGE__BODY_REPLAY_REPLY);
    it_hub_msg_free(&first);
    assert_int_equal(harness_signal(f->h, SIGTERM), 0);
    int rc = harness_wait(f->h, 20000);
    if (rc != 4)
        harness_dump_log(f->h);
    assert_int_equal(rc, 4);
    assert_int_equal(s_log_count(f, "error main event=drain_timeout timeout_ms=100 action=exit_now code=4"), 1);
    it_start(f, NULL);
    it_drop(f, &c);
    c = it_client(f, "pub-a", 0);
    assert_int_equal(it_last_seq(c), 2000);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_setup_teardown(test_reload, s_setup, s_teardown),
        cmocka_unit_test_setup_teardown(test_refusals_rate_limited, s_setup, s_teardown),
        cmocka_unit_test_setup_teardown(test_drain_under_load, s_setup, s_teardown),
        cmocka_unit_test_setup_teardown(test_second_signal, s_setup, s_teardown),
        cmocka_unit_test_setup_teardown(test_drain_timeout, s_setup, s_teardown),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
