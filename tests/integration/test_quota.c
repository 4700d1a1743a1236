/* test_quota - per-agency ceilings against a real hub.
 *
 * One agency (tax-office) misbehaves: it opens more subscriptions, more
 * connections, or publishes faster than its ceiling allows, and is refused
 * with a coded error (unavailable, with the ceiling's setting named in the
 * reason), while another agency (population-register) keeps publishing and
 * receiving through its own subscription on the same hub. Connections whose
 * key was revoked give their places back. Every refusal shows in /metrics as
 * civibus_quota_refused_total{agency,ceiling} and among the unavailable
 * refusals.
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

#define BAD "tax-office"
#define GOOD "population-register"

static const char *const s_agencies[] = {BAD, GOOD, NULL};
static const char *const s_all[] = {"*"};

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

/* The value of the sample `name{labels}` in the hub's /metrics, or -1 when
 * it is not there. */
static long long s_metric(it_fix_t *f, const char *sample)
{
    long status = 0;
    char *body = NULL;
    if (harness_http_get(f->h, "/metrics", &status, &body, NULL) != 0 || status != 200) {
        free(body);
        return -1;
    }
    long long v = -1;
    size_t n = strlen(sample);
    for (const char *p = body; p && *p; p = strchr(p, '\n') ? strchr(p, '\n') + 1 : NULL) {
        if (strncmp(p, sample, n) == 0 && p[n] == ' ') {
            v = strtoll(p + n + 1, NULL, 10);
            break;
        }
    }
    free(body);
    return v;
}

/* Wait (the documents are rendered about once a second) until sample's value
 * is at least want; fails with the last value seen. Returns it. */
static long long s_metric_at_least(it_fix_t *f, const char *sample, long long want)
{
    long long v = -1;
    for (int64_t deadline = it_mono_ms() + 15000; it_mono_ms() < deadline; it_sleep_ms(200))
        if ((v = s_metric(f, sample)) >= want)
            return v;
    fail_msg("/metrics: %s is %lld, expected at least %lld", sample, v, want);
    return v;
}

/* The well-behaved agency: a subscriber of everything and a publisher. */
typedef struct {
    civ_client_t *c;
    int next; /* number of its next event */
} s_good_t;

static void s_good_open(it_fix_t *f, s_good_t *g)
{
    g->c = it_client(f, GOOD, 0);
    g->next = 0;
    assert_int_equal(civ_subscribe(g->c, "watch", s_all, 1, it_from_first(), 64), CIV_OK);
}

/* The good agency publishes one event and receives it on its subscription
 * (after whatever else the log holds before it). */
static void s_good_flows(s_good_t *g)
{
    uint64_t seq;
    it_publish_many(g->c, g->next++, 1, 1, &seq);
    int64_t deadline = it_mono_ms() + 15000;
    for (;;) {
        if (it_mono_ms() > deadline)
            fail_msg("%s did not receive its own event %" PRIu64, GOOD, seq);
        civ_delivery_t *d = NULL;
        int rc = civ_next(g->c, &d, 1000);
        if (rc == CIV_E_TIMEOUT)
            continue;
        assert_int_equal(rc, CIV_OK);
        uint64_t got = d->seq;
        civ_delivery_destroy(&d);
        assert_int_equal(civ_ack(g->c, "watch", got), CIV_OK);
        if (got == seq)
            return;
        assert_true(got < seq);
    }
}

/* Write the config file at path with text. */
static void s_conf(const char *path, const char *text)
{
    FILE *fp = fopen(path, "w");
    assert_non_null(fp);
    assert_true(fputs(text, fp) >= 0);
    assert_int_equal(fclose(fp), 0);
}

static void test_subscriptions(void **state)
{
    it_fix_t *f = *state;
    char conf[600];
    snprintf(conf, sizeof conf, "%s/civibusd.conf", harness_dir(f->h));
    s_conf(conf, "agency_subscriptions_max = 2\n");
    const char *flags[] = {"--no-sync", "--config", conf, NULL};
    it_start(f, flags);
    s_good_t g;
    s_good_open(f, &g);
    civ_client_t *bad = it_client(f, BAD, 0);
    assert_int_equal(civ_subscribe(bad, "s1", s_all, 1, it_from_first(), 8), CIV_OK);
    assert_int_equal(civ_subscribe(bad, "s2", s_all, 1, it_from_first(), 8), CIV_OK);
    assert_int_equal(civ_subscribe(bad, "s3", s_all, 1, it_from_first(), 8), CIV_E_UNAVAILABLE);
    assert_non_null(strstr(civ_client_error(bad), "agency_subscriptions_max"));
    assert_true(it_log_contains(f, "event=subscribe_refused agency=tax-office code=unavailable", 5000));
    /* taking one over is not one more */
    civ_client_t *again = it_client(f, BAD, 0);
    assert_int_equal(civ_subscribe(again, "s1", s_all, 1, it_from_first(), 8), CIV_OK);
    /* the other agency subscribes and receives all along */
    s_good_flows(&g);
    civ_client_t *good2 = it_client(f, GOOD, 0);
    assert_int_equal(civ_subscribe(good2, "second", s_all, 1, it_from_first(), 8), CIV_OK);
    s_good_flows(&g);
    /* one closed, one more fits */
    assert_int_equal(civ_unsubscribe(bad, "s2"), CIV_OK);
    assert_int_equal(civ_subscribe(bad, "s3", s_all, 1, it_from_first(), 8), CIV_OK);
    /* counted: one refusal by this ceiling, also among the unavailable ones */
    assert_int_equal(
        s_metric_at_least(f, "civibus_quota_refused_total{agency=\"" BAD "\",ceiling=\"subscriptions\"}", 1), 1);
    s_metric_at_least(f, "civibus_events_refused_total{agency=\"" BAD "\",reason=\"unavailable\"}", 1);
    assert_int_equal(s_metric(f, "civibus_quota_refused_total{agency=\"" GOOD "\",ceiling=\"subscriptions\"}"), -1);

    /* the ceiling reloads on SIGHUP: one more fits; lowered, nothing closes */
    assert_int_equal(civ_subscribe(bad, "s4", s_all, 1, it_from_first(), 8), CIV_E_UNAVAILABLE);
    s_conf(conf, "agency_subscriptions_max = 3\n");
    assert_int_equal(kill(harness_pid(f->h), SIGHUP), 0);
    assert_true(it_log_contains(f, "event=config_changed key=agency_subscriptions_max old=2 new=3", 10000));
    assert_true(it_log_contains(f, "event=config_reloaded", 10000));
    assert_int_equal(civ_subscribe(bad, "s4", s_all, 1, it_from_first(), 8), CIV_OK);
    s_conf(conf, "agency_subscriptions_max = 1\n");
    assert_int_equal(kill(harness_pid(f->h), SIGHUP), 0);
    assert_true(it_log_contains(f, "event=config_changed key=agency_subscriptions_max old=3 new=1", 10000));
    assert_int_equal(civ_subscribe(bad, "s5", s_all, 1, it_from_first(), 8), CIV_E_UNAVAILABLE);
    civ_status_t *st = NULL;
    assert_int_equal(civ_status(bad, &st), CIV_OK);
    size_t connected = 0;
    for (size_t i = 0; i < st->n_subscriptions; i++)
        connected += st->subscriptions[i].connected;
    civ_status_destroy(&st);
    assert_int_equal(connected, 3); /* s1, s3 and s4 stay open */
    s_good_flows(&g);
}

/* The answer to request_id on r, skipping anything else; NULL when none came
 * in time. */
static Civibus__V1__HubMessage *s_answer(it_raw_t *r, uint64_t request_id)
{
    int64_t deadline = it_mono_ms() + 10000;
    while (it_mono_ms() < deadline) {
        Civibus__V1__HubMessage *m = it_raw_recv(r, 1000);
        if (!m)
            continue;
        if (m->body_case == CIVIBUS__V1__HUB_MESSAGE__BODY_PONG && m->pong->request_id == request_id)
            return m;
        if (m->body_case == CIVIBUS__V1__HUB_MESSAGE__BODY_ERROR && m->error->request_id == request_id)
            return m;
        it_hub_msg_free(&m);
    }
    return NULL;
}

/* r pings with request_id and gets a Pong. */
static void s_ping_ok(it_raw_t *r, uint64_t request_id)
{
    assert_int_equal(it_raw_ping(r, request_id), 0);
    Civibus__V1__HubMessage *m = s_answer(r, request_id);
    assert_non_null(m);
    if (m->body_case != CIVIBUS__V1__HUB_MESSAGE__BODY_PONG)
        fail_msg("ping %" PRIu64 " refused: %s", request_id, m->error->reason);
    it_hub_msg_free(&m);
}

static void s_raw_drop(it_fix_t *f, it_raw_t **r)
{
    for (int i = 0; i < IT_MAX_RAW; i++)
        if (f->raws[i] == *r)
            f->raws[i] = NULL;
    it_raw_close(r);
}

static void test_connections(void **state)
{
    it_fix_t *f = *state;
    const char *flags[] = {"--no-sync", "--agency-connections-max", "2", NULL};
    it_start(f, flags);
    s_good_t g;
    s_good_open(f, &g);
    it_raw_t *r1 = it_raw(f, BAD), *r2 = it_raw(f, BAD), *r3 = it_raw(f, BAD);
    assert_int_equal(it_raw_handshake(r1, 10000), 1);
    assert_int_equal(it_raw_handshake(r2, 10000), 1);
    assert_int_equal(it_raw_handshake(r3, 10000), 1);
    s_ping_ok(r1, 1);
    s_ping_ok(r2, 2);
    /* a third connection of the agency is refused, coded, per message */
    assert_int_equal(it_raw_ping(r3, 3), 0);
    Civibus__V1__HubMessage *m = s_answer(r3, 3);
    assert_non_null(m);
    assert_int_equal(m->body_case, CIVIBUS__V1__HUB_MESSAGE__BODY_ERROR);
    assert_int_equal(m->error->code, CIVIBUS__V1__ERROR_CODE__UNAVAILABLE);
    assert_non_null(strstr(m->error->reason, "agency_connections_max"));
    it_hub_msg_free(&m);
    /* and, while it is at its ceiling, its new handshakes are refused */
    it_raw_t *r4 = it_raw(f, BAD);
    assert_int_equal(it_raw_handshake(r4, 10000), -1);
    assert_true(it_log_contains(f, "event=handshake_refused reason=connection_limit agency=tax-office", 5000));
    s_raw_drop(f, &r4);
    civ_client_t *sdk = it_client(f, BAD, 5000);
    assert_int_equal(civ_ping(sdk, NULL), CIV_E_NOT_AUTHORISED);
    it_drop(f, &sdk);
    /* the other agency is not affected */
    s_good_flows(&g);
    civ_client_t *more = it_client(f, GOOD, 0);
    assert_int_equal(civ_ping(more, NULL), CIV_OK);
    s_good_flows(&g);
    s_ping_ok(r1, 4); /* the counted ones keep their service */
    /* the refused connection is open, and shown; its refusal counted */
    s_metric_at_least(f, "civibus_adapters_connected{agency=\"" BAD "\"}", 3);
    s_metric_at_least(f, "civibus_quota_refused_total{agency=\"" BAD "\",ceiling=\"connections\"}", 1);

    /* one closes: its place is free again once the hub reads the socket
     * monitor's DISCONNECTED event */
    s_raw_drop(f, &r1);
    bool admitted = false;
    for (int64_t deadline = it_mono_ms() + 20000; !admitted && it_mono_ms() < deadline;) {
        it_raw_t *r5 = it_raw(f, BAD);
        int hs = it_raw_handshake(r5, 10000);
        if (hs == 1) {
            s_ping_ok(r5, 5);
            admitted = true;
        }
        s_raw_drop(f, &r5);
        if (!admitted)
            it_sleep_ms(200);
    }
    assert_true(admitted);
    assert_true(it_log_contains(f, "event=connections_free agency=tax-office", 5000));
    s_good_flows(&g);
}

/* A connection whose key was revoked frees its place, though it stays
 * open: a stolen key's connections must not keep the agency's new key out. */
static void test_connections_revoked(void **state)
{
    it_fix_t *f = *state;
    const char *flags[] = {"--no-sync", "--agency-connections-max", "2", NULL};
    it_start(f, flags);
    it_raw_t *r1 = it_raw(f, BAD), *r2 = it_raw(f, BAD);
    s_ping_ok(r1, 1);
    s_ping_ok(r2, 2);
    assert_true(it_log_contains(f, "event=connections_full agency=tax-office", 5000));

    /* the agency's next key; the one in use revoked, applied on SIGHUP */
    const char *cli = getenv("CIVIBUS_CLI") ? getenv("CIVIBUS_CLI") : "build/civibus";
    char dir[600], cmd[2400], old_prefix[9];
    keyfile_t kf;
    char err[512];
    assert_int_equal(keyfile_read(harness_key(f->h, BAD), &kf, err, sizeof err), KEYFILE_OK);
    snprintf(old_prefix, sizeof old_prefix, "%.8s", kf.curve[0]);
    memset(&kf, 0, sizeof kf);
    snprintf(dir, sizeof dir, "%s/next", harness_dir(f->h));
    snprintf(cmd, sizeof cmd,
             "'%s' keygen --agency %s --dir '%s' >/dev/null && "
             "'%s' registry rotate --registry '%s' --agency %s --key-file '%s/%s.pub' >/dev/null && "
             "'%s' registry revoke --registry '%s' --agency %s --key '%s' >/dev/null",
             cli, BAD, dir, cli, harness_registry(f->h), BAD, dir, BAD, cli, harness_registry(f->h), BAD, old_prefix);
    assert_int_equal(harness_sh(cmd), 0);
    assert_int_equal(kill(harness_pid(f->h), SIGHUP), 0);
    assert_true(it_log_contains(f, "event=registry_reloaded", 10000));

    char next_key[700];
    snprintf(next_key, sizeof next_key, "%s/%s.key", dir, BAD);
    civ_options_t o = {.endpoint = harness_endpoint(f->h), .hub_key_file = harness_hub_pub(f->h),
                       .key_file = next_key, .timeout_ms = 2000};
    bool admitted = false;
    for (int64_t deadline = it_mono_ms() + 20000; !admitted && it_mono_ms() < deadline;) {
        civ_error_t e;
        civ_client_t *c = civ_client_new(&o, &e);
        assert_non_null(c);
        admitted = civ_ping(c, NULL) == CIV_OK;
        civ_client_destroy(&c);
        if (!admitted)
            it_sleep_ms(200);
    }
    assert_true(admitted);
    /* the old connections are still open, and refused */
    assert_int_equal(it_raw_ping(r1, 3), 0);
    Civibus__V1__HubMessage *m = s_answer(r1, 3);
    assert_non_null(m);
    assert_int_equal(m->body_case, CIVIBUS__V1__HUB_MESSAGE__BODY_ERROR);
    assert_int_equal(m->error->code, CIVIBUS__V1__ERROR_CODE__NOT_AUTHORISED);
    it_hub_msg_free(&m);
}

/* Publish events first..first+n-1 of c's agency in one batch (payload_len
 * bytes each); counts the accepted ones and the ones refused with
 * unavailable whose reason names setting. */
static void s_burst(civ_client_t *c, int first, int n, size_t payload_len, const char *setting, int *accepted,
                    int *refused)
{
    static uint8_t payload[2048];
    memset(payload, 'p', sizeof payload);
    assert_true(payload_len <= sizeof payload);
    *accepted = *refused = 0;
    for (int i = 0; i < n; i++) {
        char id[32];
        snprintf(id, sizeof id, "burst-%d", first + i);
        civ_event_t ev = {.event_id = id, .type = "tax.return.filed", .payload = payload, .payload_len = payload_len};
        uint64_t token;
        assert_int_equal(civ_publish_send(c, &ev, &token), CIV_OK);
    }
    assert_int_equal(civ_publish_flush(c), CIV_OK);
    for (int i = 0; i < n; i++) {
        civ_ack_t ack;
        assert_int_equal(civ_publish_recv(c, &ack, -1), CIV_OK);
        if (ack.error == CIV_OK) {
            (*accepted)++;
        } else {
            assert_int_equal(ack.error, CIV_E_UNAVAILABLE);
            if (!strstr(ack.reason, setting))
                fail_msg("refused for another reason: %s", ack.reason);
            (*refused)++;
        }
    }
}

/* With flag = value, the misbehaving agency publishes n events of
 * payload_len bytes in one Publish: some are refused naming flag's setting,
 * while the other agency's own budget is untouched. */
static void s_rate_case(it_fix_t *f, const char *flag, const char *value, int n, size_t payload_len,
                        const char *setting)
{
    const char *flags[] = {"--no-sync", flag, value, NULL};
    it_start(f, flags);
    s_good_t g;
    s_good_open(f, &g);
    civ_client_t *bad = it_client(f, BAD, 0);
    int accepted, refused;
    s_burst(bad, 0, n, payload_len, setting, &accepted, &refused);
    assert_true(accepted >= 1);
    assert_true(refused >= 1);
    assert_int_equal(accepted + refused, n);
    assert_true(it_log_contains(f, "event=publish_refused agency=tax-office code=unavailable", 5000));
    s_good_flows(&g);
    char sample[160];
    snprintf(sample, sizeof sample, "civibus_quota_refused_total{agency=\"%s\",ceiling=\"%s\"}", BAD,
             strcmp(setting, "agency_publish_rate") == 0 ? "publish_rate" : "publish_bytes");
    assert_int_equal(s_metric_at_least(f, sample, refused), refused);
}

static void test_publish_rate(void **state)
{
    /* 20 events against a bucket of 2 per second */
    s_rate_case(*state, "--agency-publish-rate", "2", 20, 10, "agency_publish_rate");
}

static void test_publish_bytes(void **state)
{
    /* 10 events of about 1 KiB against 2000 bytes a second */
    s_rate_case(*state, "--agency-publish-bytes", "2000", 10, 1000, "agency_publish_bytes");
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_setup_teardown(test_subscriptions, s_setup, s_teardown),
        cmocka_unit_test_setup_teardown(test_connections, s_setup, s_teardown),
        cmocka_unit_test_setup_teardown(test_connections_revoked, s_setup, s_teardown),
        cmocka_unit_test_setup_teardown(test_publish_rate, s_setup, s_teardown),
        cmocka_unit_test_setup_teardown(test_publish_bytes, s_setup, s_teardown),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
