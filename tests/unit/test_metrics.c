/* test_metrics - hub/metrics.c rendering /metrics and /api/status, and
 * hub/peers.c tracking connections (hub/quota.c's ceilings on them), over a real journal, subscriptions and
 * registry in a temporary directory.
 *
 * What a running hub cannot easily show is checked here: label values that
 * need escaping (agency ids never do), cumulative histogram buckets, the
 * refusal ring keeping the newest 20, throughput steps against a clock the
 * test drives, readiness reasons, saved subscriptions with their lag, the
 * peer table's reuse of descriptors, and the per-agency ceilings of
 * hub/quota.c over that table. The rendered text must also pass `promtool
 * check metrics`.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include <ftw.h>
#include <jansson.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <time.h>
#include <zmq.h>

#include "auth.h"
#include "journal.h"
#include "keyfile.h"
#include "metrics.h"
#include "peers.h"
#include "quota.h"
#include "subs.h"

typedef struct {
    char dir[64];
    char registry[128];
    journal_t *journal;
    subs_t *subs;
    void *ctx;
    auth_t *auth;
    peers_t *peers;
    const quota_t *quota; /* NULL unless a test sets one */
    metrics_t *metrics;
    config_t cfg;
    metrics_report_t report;
} fixture_t;

static int s_rm(const char *path, const struct stat *st, int flag, struct FTW *ftw)
{
    (void)st, (void)flag, (void)ftw;
    return remove(path);
}

static int s_setup(void **state)
{
    fixture_t *f = calloc(1, sizeof *f);
    assert_non_null(f);
    snprintf(f->dir, sizeof f->dir, "/tmp/civibus-metrics-XXXXXX");
    assert_non_null(mkdtemp(f->dir));
    snprintf(f->registry, sizeof f->registry, "%s/registry", f->dir);
    assert_int_equal(mkdir(f->registry, 0700), 0);
    journal_opts_t jo = {.dir = f->dir, .no_sync = true, .dedup_window = 1000};
    f->journal = journal_new(&jo);
    assert_non_null(f->journal);
    subs_opts_t so = {.max_sessions = 10, .credit_max = 100, .session_timeout_ms = 60000};
    f->subs = subs_new(f->journal, NULL, &so);
    f->ctx = zmq_ctx_new();
    f->auth = auth_new(f->ctx, f->registry);
    f->peers = peers_new();
    f->metrics = metrics_new();
    assert_true(f->subs && f->auth && f->peers && f->metrics);
    f->cfg.key_expiry_warn_days = 30;
    f->cfg.subscription_lag_warn = 5;
    *state = f;
    return 0;
}

static int s_teardown(void **state)
{
    fixture_t *f = *state;
    metrics_report_free(&f->report);
    metrics_destroy(&f->metrics);
    peers_destroy(&f->peers);
    subs_destroy(&f->subs);
    zmq_ctx_shutdown(f->ctx);
    auth_destroy(&f->auth);
    zmq_ctx_term(f->ctx);
    journal_destroy(&f->journal);
    nftw(f->dir, s_rm, 8, FTW_DEPTH | FTW_PHYS);
    free(f);
    return 0;
}

static void s_render(fixture_t *f, int64_t now_ms)
{
    metrics_sources_t src = {.cfg = &f->cfg,
                             .journal = f->journal,
                             .subs = f->subs,
                             .auth = f->auth,
                             .peers = f->peers,
                             .quota = f->quota,
                             .instance = "0123456789abcdef",
                             .started_at_us = 1790000000000000LL};
    metrics_report_free(&f->report);
    assert_int_equal(metrics_render(f->metrics, &src, now_ms, &f->report), 0);
    assert_non_null(f->report.prometheus);
    assert_non_null(f->report.status);
    assert_int_equal(strlen(f->report.prometheus), f->report.prometheus_len);
    assert_int_equal(strlen(f->report.status), f->report.status_len);
}

static json_t *s_status(fixture_t *f)
{
    json_t *j = json_loads(f->report.status, 0, NULL);
    assert_non_null(j);
    return j;
}

/* The text contains this exact line. */
static void s_has_line(const char *text, const char *line)
{
    size_t n = strlen(line);
    for (const char *p = text; p; p = strchr(p, '\n') ? strchr(p, '\n') + 1 : NULL)
        if (strncmp(p, line, n) == 0 && (p[n] == '\n' || p[n] == '\0'))
            return;
    fail_msg("no line '%s' in:\n%s", line, text);
}

static void s_promtool(fixture_t *f)
{
    char path[128], cmd[400];
    snprintf(path, sizeof path, "%s/metrics.txt", f->dir);
    FILE *out = fopen(path, "w");
    assert_non_null(out);
    fputs(f->report.prometheus, out);
    fclose(out);
    snprintf(cmd, sizeof cmd, "promtool check metrics < '%s'", path);
    int st = system(cmd);
    if (st == -1 || !WIFEXITED(st) || WEXITSTATUS(st) != 0)
        fail_msg("promtool check metrics failed (exit %d) on:\n%s", WIFEXITED(st) ? WEXITSTATUS(st) : -1,
                 f->report.prometheus);
}

static void s_append(fixture_t *f, size_t n)
{
    journal_entry_t e[16];
    char ids[16][32];
    assert_true(n <= 16);
    uint64_t base = journal_last_seq(f->journal);
    for (size_t i = 0; i < n; i++) {
        snprintf(ids[i], sizeof ids[i], "ev-%llu", (unsigned long long)(base + i));
        e[i] = (journal_entry_t){.source = "tax-office", .event_id = ids[i], .type = "tax.return.filed",
                                 .event = (const uint8_t *)"x", .event_len = 1};
    }
    assert_int_equal(journal_append_batch(f->journal, e, n, NULL, 0), JOURNAL_OK);
}

static void test_counters_histograms_escaping(void **state)
{
    fixture_t *f = *state;
    for (int i = 0; i < 3; i++)
        metrics_event(f->metrics, "tax-office", false);
    metrics_event(f->metrics, "tax-office", true);
    metrics_event(f->metrics, "agency-b", false);
    metrics_refused(f->metrics, "we\"ird\\agency\nx", 10, "bad signature \xff\xfe here");
    metrics_refused(f->metrics, NULL, 1, "connection has no authenticated agency");
    metrics_publish_replied(f->metrics, 50);
    metrics_publish_replied(f->metrics, 300);
    metrics_publish_replied(f->metrics, 20000000);
    metrics_commit(f->metrics, 1000, 3);
    metrics_commit(f->metrics, 999, 5000);
    metrics_delivered(f->metrics, 7);
    metrics_auth_failure(f->metrics, METRICS_HANDSHAKE_FAILED);
    metrics_auth_failure(f->metrics, METRICS_KEY_REFUSED);
    metrics_auth_failure(f->metrics, METRICS_KEY_REFUSED);
    s_append(f, 4);
    s_render(f, 1000);
    const char *m = f->report.prometheus;
    s_has_line(m, "civibus_events_accepted_total{agency=\"tax-office\"} 3");
    s_has_line(m, "civibus_events_accepted_total{agency=\"agency-b\"} 1");
    s_has_line(m, "civibus_events_duplicate_total{agency=\"tax-office\"} 1");
    s_has_line(m, "civibus_events_refused_total{agency=\"we\\\"ird\\\\agency\\nx\",reason=\"bad_signature\"} 1");
    s_has_line(m, "civibus_events_refused_total{agency=\"-\",reason=\"not_authorised\"} 1");
    assert_null(strstr(m, "civibus_events_accepted_total{agency=\"-\"}"));
    s_has_line(m, "civibus_publish_ack_latency_seconds_bucket{le=\"0.0001\"} 1");
    s_has_line(m, "civibus_publish_ack_latency_seconds_bucket{le=\"0.00025\"} 1");
    s_has_line(m, "civibus_publish_ack_latency_seconds_bucket{le=\"0.0005\"} 2");
    s_has_line(m, "civibus_publish_ack_latency_seconds_bucket{le=\"10\"} 2");
    s_has_line(m, "civibus_publish_ack_latency_seconds_bucket{le=\"+Inf\"} 3");
    s_has_line(m, "civibus_publish_ack_latency_seconds_sum 20.00035");
    s_has_line(m, "civibus_publish_ack_latency_seconds_count 3");
    s_has_line(m, "civibus_commit_latency_seconds_bucket{le=\"0.001\"} 2");
    s_has_line(m, "civibus_commit_batch_events_bucket{le=\"4\"} 1");
    s_has_line(m, "civibus_commit_batch_events_bucket{le=\"4096\"} 1");
    s_has_line(m, "civibus_commit_batch_events_bucket{le=\"16384\"} 2");
    s_has_line(m, "civibus_commit_batch_events_sum 5003");
    s_has_line(m, "civibus_auth_failures_total{kind=\"zap_refused\"} 0");
    s_has_line(m, "civibus_auth_failures_total{kind=\"handshake_failed\"} 1");
    s_has_line(m, "civibus_auth_failures_total{kind=\"key_refused\"} 2");
    s_has_line(m, "civibus_log_first_seq 1");
    s_has_line(m, "civibus_log_last_seq 4");
    s_has_line(m, "civibus_log_entries 4");
    s_has_line(m, "civibus_storage_full 0");
    s_promtool(f);

    json_t *st = s_status(f);
    json_t *totals = json_object_get(st, "totals");
    assert_int_equal(json_integer_value(json_object_get(totals, "accepted")), 4);
    assert_int_equal(json_integer_value(json_object_get(totals, "duplicates")), 1);
    assert_int_equal(json_integer_value(json_object_get(totals, "refused")), 2);
    assert_int_equal(json_integer_value(json_object_get(totals, "delivered")), 7);
    assert_int_equal(json_integer_value(json_object_get(totals, "auth_failures")), 3);
    json_t *r = json_array_get(json_object_get(st, "refusals"), 0);
    assert_string_equal(json_string_value(json_object_get(r, "code")), "bad_signature");
    assert_string_equal(json_string_value(json_object_get(r, "reason")), "bad signature ?? here");
    json_decref(st);
}

static void test_refusal_ring_and_throughput(void **state)
{
    fixture_t *f = *state;
    s_render(f, 10000); /* the first step starts here */
    for (int i = 0; i < 25; i++) {
        char reason[16];
        snprintf(reason, sizeof reason, "r%d", i);
        metrics_refused(f->metrics, "tax-office", 2, reason);
    }
    for (int i = 0; i < 50; i++)
        metrics_event(f->metrics, "tax-office", false);
    metrics_delivered(f->metrics, 100);
    s_render(f, 14999);
    json_t *st = s_status(f);
    assert_int_equal(json_array_size(json_object_get(json_object_get(st, "throughput"), "accepted")), 0);
    json_decref(st);
    s_render(f, 15000);
    st = s_status(f);
    json_t *tp = json_object_get(st, "throughput");
    assert_int_equal(json_integer_value(json_object_get(tp, "step_s")), METRICS_STEP_S);
    assert_int_equal(json_array_size(json_object_get(tp, "accepted")), 1);
    assert_true(json_number_value(json_array_get(json_object_get(tp, "accepted"), 0)) == 10.0);
    assert_true(json_number_value(json_array_get(json_object_get(tp, "delivered"), 0)) == 20.0);
    assert_true(json_number_value(json_array_get(json_object_get(tp, "refused"), 0)) == 5.0);
    json_t *refusals = json_object_get(st, "refusals");
    assert_int_equal(json_array_size(refusals), METRICS_REFUSALS);
    assert_string_equal(json_string_value(json_object_get(json_array_get(refusals, 0), "reason")), "r5");
    assert_string_equal(json_string_value(json_object_get(json_array_get(refusals, METRICS_REFUSALS - 1), "reason")),
                        "r24");
    json_decref(st);
    /* Steps beyond the history's length push the oldest out. */
    for (int i = 1; i <= METRICS_STEPS + 3; i++) {
        metrics_event(f->metrics, "tax-office", false);
        s_render(f, 15000 + (int64_t)i * METRICS_STEP_S * 1000);
    }
    st = s_status(f);
    tp = json_object_get(st, "throughput");
    assert_int_equal(json_array_size(json_object_get(tp, "accepted")), METRICS_STEPS);
    assert_true(json_number_value(json_array_get(json_object_get(tp, "accepted"), METRICS_STEPS - 1)) == 0.2);
    json_decref(st);
}

static void test_readiness_and_warnings(void **state)
{
    fixture_t *f = *state;
    s_render(f, 1000);
    assert_string_equal(f->report.not_ready, "no_agency_keys");
    json_t *st = s_status(f);
    assert_true(json_is_false(json_object_get(st, "ready")));
    json_decref(st);

    /* An agency whose key expires in 3 days: ready, warned of, and shown. */
    char err[256], cmd[600];
    assert_int_equal(keyfile_generate(f->dir, "tax-office", "tax-office", err, sizeof err), 0);
    time_t t = time(NULL) + 3 * 24 * 3600;
    struct tm tm;
    gmtime_r(&t, &tm);
    char when[32];
    strftime(when, sizeof when, "%Y-%m-%dT%H:%M:%SZ", &tm);
    snprintf(cmd, sizeof cmd, "sed 's/^\\(curve = [^ ]*\\)$/\\1 not-after=%s/' '%s/tax-office.pub' > '%s/tax-office.pub'",
             when, f->dir, f->registry);
    assert_int_equal(system(cmd), 0);
    assert_int_equal(auth_reload(f->auth), AUTH_OK);
    s_render(f, 2000);
    assert_null(f->report.not_ready);
    st = s_status(f);
    assert_true(json_is_true(json_object_get(st, "ready")));
    json_t *w = json_array_get(json_object_get(st, "warnings"), 0);
    assert_string_equal(json_string_value(json_object_get(w, "kind")), "key_expiring");
    assert_int_equal(json_integer_value(json_object_get(w, "not_after")), (json_int_t)t);
    json_decref(st);
    char line[200];
    assert_non_null(strstr(f->report.prometheus, "civibus_key_expiry_timestamp_seconds{agency=\"tax-office\",usage=\"curve\""));
    snprintf(line, sizeof line, "} %lld\n", (long long)t);
    assert_non_null(strstr(strstr(f->report.prometheus, "civibus_key_expiry_timestamp_seconds{"), line));

    /* At the storage ceiling: not ready, warned of, and back when it clears. */
    metrics_storage_full(f->metrics, true);
    s_render(f, 3000);
    assert_string_equal(f->report.not_ready, "storage_full");
    s_has_line(f->report.prometheus, "civibus_storage_full 1");
    st = s_status(f);
    assert_true(json_is_true(json_object_get(st, "storage_full")));
    json_t *warnings = json_object_get(st, "warnings");
    bool seen = false;
    for (size_t i = 0; i < json_array_size(warnings); i++)
        seen |= strcmp(json_string_value(json_object_get(json_array_get(warnings, i), "kind")), "storage_full") == 0;
    assert_true(seen);
    json_decref(st);
    metrics_storage_full(f->metrics, false);
    s_render(f, 4000);
    assert_null(f->report.not_ready);
    s_promtool(f);
}

static void test_saved_subscription_lag(void **state)
{
    fixture_t *f = *state;
    s_append(f, 10);
    journal_cursor_t c = {.agency = "tax-office", .name = "nightly", .acked = 3, .filters = "tax.*"};
    assert_int_equal(journal_save_cursors(f->journal, &c, 1), JOURNAL_OK);
    s_render(f, 1000);
    s_has_line(f->report.prometheus,
               "civibus_subscription_lag_events{agency=\"tax-office\",subscription=\"nightly\"} 7");
    s_has_line(f->report.prometheus,
               "civibus_subscription_inflight_events{agency=\"tax-office\",subscription=\"nightly\"} 0");
    json_t *st = s_status(f);
    json_t *sub = json_array_get(json_object_get(st, "subscriptions"), 0);
    assert_string_equal(json_string_value(json_object_get(sub, "name")), "nightly");
    assert_true(json_is_false(json_object_get(sub, "connected")));
    assert_int_equal(json_integer_value(json_object_get(sub, "cursor")), 3);
    assert_int_equal(json_integer_value(json_object_get(sub, "lag")), 7);
    json_t *w = json_array_get(json_object_get(st, "warnings"), 0);
    assert_string_equal(json_string_value(json_object_get(w, "kind")), "subscription_behind");
    assert_int_equal(json_integer_value(json_object_get(w, "lag")), 7);
    json_decref(st);
    s_promtool(f);
}

static void test_peers(void **state)
{
    fixture_t *f = *state;
    peers_t *p = f->peers;
    wire_peer_t a = {.id = {0, 0, 0, 0, 1}, .len = 5}, b = {.id = {0, 0, 0, 0, 2}, .len = 5};
    assert_false(peers_seen(p, 7, &a, "tax-office", NULL)); /* not reported open: ignored */
    assert_int_equal(peers_open(p), 0);
    assert_int_equal(peers_count(p, "tax-office"), 0);
    peers_accepted(p, 7);
    peers_accepted(p, 300); /* grows the table */
    assert_int_equal(peers_open(p), 2);
    assert_true(peers_seen(p, 7, &a, "tax-office", "k1"));
    assert_true(peers_seen(p, 7, &a, "tax-office", "k1"));
    assert_int_equal(peers_count(p, "tax-office"), 1);
    /* The descriptor changed hands (a new routing id): relabelled. */
    assert_true(peers_seen(p, 7, &b, "agency-b", "k2"));
    assert_int_equal(peers_count(p, "tax-office"), 0);
    assert_int_equal(peers_count(p, "agency-b"), 1);
    peers_seen(p, 300, &a, "agency-b", "k2");
    assert_int_equal(peers_count(p, "agency-b"), 2);
    s_render(f, 1000);
    s_has_line(f->report.prometheus, "civibus_adapters_connected{agency=\"agency-b\"} 2");
    /* Without a connection or a count an agency does not show. */
    assert_null(strstr(f->report.prometheus, "agency=\"tax-office\""));
    s_has_line(f->report.prometheus, "civibus_connections_open 2");
    char addr[PEERS_ADDR_MAX];
    assert_int_equal(peers_disconnected(p, 7, addr), PEERS_CLOSED);
    assert_int_equal(peers_disconnected(p, 7, addr), PEERS_CLOSED_UNKNOWN); /* twice: no effect */
    assert_string_equal(addr, "-");
    assert_int_equal(peers_disconnected(p, 12345, addr), PEERS_CLOSED_UNKNOWN);
    assert_int_equal(peers_open(p), 1);
    assert_int_equal(peers_count(p, "agency-b"), 1);
    peers_disconnected(p, 300, addr);
    assert_int_equal(peers_open(p), 0);
    assert_int_equal(peers_count(p, "agency-b"), 0);
}

/* Which connections completed their handshake, when the success events
 * name none: a first message proves one, successes covering every pending
 * connection prove them all, the rest closed before a handshake. */
static void test_peers_handshakes(void **state)
{
    fixture_t *f = *state;
    peers_t *p = f->peers;
    wire_peer_t a = {.id = {0, 0, 0, 0, 1}, .len = 5};
    char addr[PEERS_ADDR_MAX];
    peers_accepted(p, 1000); /* not a socket: no address */
    peers_accepted(p, 1001);
    assert_false(peers_handshaken(p, 1000));
    peers_handshake_ok(p); /* one of the two: which is unknown */
    assert_false(peers_handshaken(p, 1000));
    assert_false(peers_handshaken(p, 1001));
    assert_true(peers_seen(p, 1000, &a, "tax-office", "k1")); /* its first message: that one */
    assert_true(peers_handshaken(p, 1000));
    assert_false(peers_handshaken(p, 1001));
    assert_int_equal(peers_disconnected(p, 1001, addr), PEERS_CLOSED_EARLY);
    assert_string_equal(addr, "-");
    /* A success when one connection is pending is that one's. */
    peers_accepted(p, 1002);
    peers_handshake_ok(p);
    assert_true(peers_handshaken(p, 1002));
    assert_int_equal(peers_disconnected(p, 1002, addr), PEERS_CLOSED);
    /* A success left over (its connection proven by a message first) does
     * not outlive the pending connections. */
    peers_accepted(p, 1003);
    peers_handshake_ok(p);
    peers_accepted(p, 1004);
    assert_false(peers_handshaken(p, 1004));
    assert_int_equal(peers_disconnected(p, 1004, addr), PEERS_CLOSED_EARLY);
    assert_int_equal(peers_disconnected(p, 1003, addr), PEERS_CLOSED);
    assert_int_equal(peers_disconnected(p, 1000, addr), PEERS_CLOSED);
    assert_int_equal(peers_open(p), 0);
}

/* For quota: which agencies auth was told are full. */
typedef struct {
    char full[4][32];
    size_t n;
    const char *revoked; /* key no longer valid */
} s_quota_seen_t;

static void s_on_full(void *arg, const char *agency, bool full)
{
    s_quota_seen_t *q = arg;
    if (full) {
        assert_true(q->n < 4);
        snprintf(q->full[q->n++], sizeof q->full[0], "%s", agency);
        return;
    }
    for (size_t i = 0; i < q->n; i++) {
        if (strcmp(q->full[i], agency) == 0) {
            memcpy(q->full[i], q->full[--q->n], sizeof q->full[0]);
            return;
        }
    }
    fail_msg("%s freed but never full", agency);
}

static bool s_key_valid(void *arg, const char *agency, const char *key)
{
    (void)agency;
    const s_quota_seen_t *q = arg;
    return !q->revoked || strcmp(q->revoked, key) != 0;
}

/* The ceilings of hub/quota.h over the connections peers knows, and the
 * refusals they count in civibus_quota_refused_total. */
static void test_quota_ceilings(void **state)
{
    fixture_t *f = *state;
    peers_t *p = f->peers;
    s_quota_seen_t seen = {.n = 0};
    quota_opts_t opts = {.connections_max = 2, .subscriptions_max = 3, .publish_rate = 5, .publish_bytes = 0};
    quota_t *q = quota_new(&opts, p, s_on_full, s_key_valid, &seen);
    assert_non_null(q);
    char reason[256];
    wire_peer_t r[4];
    for (int i = 0; i < 4; i++) {
        r[i] = (wire_peer_t){.id = {0, 0, 0, 9, (uint8_t)i}, .len = 5};
        peers_accepted(p, 10 + i);
        assert_true(peers_seen(p, 10 + i, &r[i], "tax-office", i == 0 ? "stolen" : "good"));
    }
    /* A connection the monitor never reported cannot be counted. */
    assert_int_equal(quota_connection(q, 99, "tax-office", reason, sizeof reason), QUOTA_OK);
    assert_int_equal(quota_connection(q, 10, "tax-office", reason, sizeof reason), QUOTA_OK);
    assert_int_equal(seen.n, 0);
    assert_int_equal(quota_connection(q, 11, "tax-office", reason, sizeof reason), QUOTA_OK);
    assert_int_equal(seen.n, 1); /* full with its second: ZAP refuses more */
    assert_string_equal(seen.full[0], "tax-office");
    assert_int_equal(quota_connection(q, 12, "tax-office", reason, sizeof reason), QUOTA_REFUSED);
    assert_non_null(strstr(reason, "agency_connections_max"));
    assert_int_equal(quota_connection(q, 10, "tax-office", reason, sizeof reason), QUOTA_OK); /* holds a place */
    assert_int_equal(peers_admitted(p, "tax-office"), 2);
    assert_int_equal(peers_count(p, "tax-office"), 4);
    /* A closed connection frees its place at once. */
    char addr[PEERS_ADDR_MAX];
    assert_int_equal(peers_disconnected(p, 11, addr), PEERS_CLOSED);
    quota_refresh(q);
    assert_int_equal(seen.n, 0);
    assert_int_equal(quota_connection(q, 12, "tax-office", reason, sizeof reason), QUOTA_OK);
    assert_int_equal(seen.n, 1);
    /* A connection whose key was revoked gives its place up. */
    seen.revoked = "stolen";
    quota_tick(q);
    assert_int_equal(seen.n, 0);
    assert_int_equal(peers_admitted(p, "tax-office"), 1);
    assert_int_equal(quota_connection(q, 13, "tax-office", reason, sizeof reason), QUOTA_OK);
    assert_int_equal(seen.n, 1);
    /* A higher ceiling on reload frees the agency, a lower one fills it. */
    opts.connections_max = 3;
    quota_set_opts(q, &opts);
    assert_int_equal(seen.n, 0);
    opts.connections_max = 1;
    quota_set_opts(q, &opts);
    assert_int_equal(seen.n, 1);

    /* Subscriptions: a fourth is refused, a takeover (3 others) is not. */
    assert_int_equal(quota_subscription(q, "tax-office", 2, reason, sizeof reason), QUOTA_OK);
    assert_int_equal(quota_subscription(q, "tax-office", 3, reason, sizeof reason), QUOTA_REFUSED);
    assert_non_null(strstr(reason, "agency_subscriptions_max"));
    /* Publish rate: a second's worth, then refusals until it refills. */
    for (int i = 0; i < 5; i++)
        assert_int_equal(quota_publish(q, "agency-b", 10, 1000, reason, sizeof reason), QUOTA_OK);
    assert_int_equal(quota_publish(q, "agency-b", 10, 1000, reason, sizeof reason), QUOTA_REFUSED);
    assert_non_null(strstr(reason, "agency_publish_rate"));
    assert_int_equal(quota_publish(q, "agency-b", 10, 1200, reason, sizeof reason), QUOTA_OK);
    assert_int_equal(quota_publish(q, "agency-b", 10, 1200, reason, sizeof reason), QUOTA_REFUSED);

    f->quota = q;
    s_render(f, 1000);
    s_has_line(f->report.prometheus, "civibus_quota_refused_total{agency=\"tax-office\",ceiling=\"connections\"} 1");
    s_has_line(f->report.prometheus,
               "civibus_quota_refused_total{agency=\"tax-office\",ceiling=\"subscriptions\"} 1");
    s_has_line(f->report.prometheus,
               "civibus_quota_refused_total{agency=\"agency-b\",ceiling=\"publish_rate\"} 2");
    assert_null(strstr(f->report.prometheus, "ceiling=\"publish_bytes\""));
    s_promtool(f);
    f->quota = NULL;
    quota_destroy(&q);
    assert_null(q);
    for (int i = 0; i < 4; i++)
        peers_disconnected(p, 10 + i, addr);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_setup_teardown(test_counters_histograms_escaping, s_setup, s_teardown),
        cmocka_unit_test_setup_teardown(test_refusal_ring_and_throughput, s_setup, s_teardown),
        cmocka_unit_test_setup_teardown(test_readiness_and_warnings, s_setup, s_teardown),
        cmocka_unit_test_setup_teardown(test_saved_subscription_lag, s_setup, s_teardown),
        cmocka_unit_test_setup_teardown(test_peers, s_setup, s_teardown),
        cmocka_unit_test_setup_teardown(test_peers_handshakes, s_setup, s_teardown),
        cmocka_unit_test_setup_teardown(test_quota_ceilings, s_setup, s_teardown),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
