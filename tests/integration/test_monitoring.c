/* test_monitoring - the hub's HTTP monitoring endpoint, on a real hub.
 *
 * A hub with a policy and an expiring key serves publishes (with a retried
 * duplicate), a subscription that acknowledges only part of what it got, a
 * refusal by the policy and a handshake refused by the registry; then
 * /api/status must show exactly those figures, /metrics the same in
 * Prometheus form (and pass `promtool check metrics`), /healthz and /readyz
 * 200, and the HTTP rules hold (405, 404, HEAD). A second case fills the
 * log to its ceiling: /readyz turns 503 storage_full while /healthz stays
 * 200, and a restart with a higher ceiling is ready again. A third starts
 * hubs without the endpoint and with a malformed address. The last runs the
 * CLI ($CIVIBUS_CLI): `civibus status --http` (table and --json), `civibus
 * top --count 2`, and the agency's own `civibus status` over ZeroMQ.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include <cmocka.h>
#include <jansson.h>

#include "itest.h"

#define POP "population-register"
#define TAX "tax-office"
#define OUT "outsider"
#define EVENTS 20
#define ACKED 15 /* the subscriber acknowledges this many of the EVENTS */
#define EXPIRY_DAYS 10

static const char *const s_agencies[] = {POP, TAX, NULL};

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

/* GET path; the status must be want; returns the body (caller frees). */
static char *s_get(it_fix_t *f, const char *path, long want)
{
    long status = 0;
    char *body = NULL;
    if (harness_http_get(f->h, path, &status, &body, NULL) != 0)
        fail_msg("GET %s: no answer", path);
    if (status != want) {
        harness_dump_log(f->h);
        fail_msg("GET %s: status %ld, expected %ld; body: %s", path, status, want, body);
    }
    return body;
}

static json_t *s_get_json(it_fix_t *f, const char *path, long want)
{
    char *body = s_get(f, path, want);
    json_error_t err;
    json_t *j = json_loads(body, 0, &err);
    if (!j)
        fail_msg("GET %s: not JSON (%s): %s", path, err.text, body);
    free(body);
    return j;
}

static json_int_t s_int(json_t *obj, const char *path)
{
    json_t *v = obj;
    char buf[128];
    snprintf(buf, sizeof buf, "%s", path);
    char *save = NULL;
    for (char *k = strtok_r(buf, ".", &save); k && v; k = strtok_r(NULL, ".", &save))
        v = json_object_get(v, k);
    if (!json_is_integer(v))
        fail_msg("%s is not an integer", path);
    return json_integer_value(v);
}

/* The element of array whose key is value, or NULL. */
static json_t *s_find(json_t *array, const char *key, const char *value)
{
    size_t i;
    json_t *e;
    json_array_foreach(array, i, e)
    {
        const char *v = json_string_value(json_object_get(e, key));
        if (v && strcmp(v, value) == 0)
            return e;
    }
    return NULL;
}

/* The value of the sample `series` (exact name and labels) in text, or -1. */
static double s_sample(const char *text, const char *series)
{
    size_t n = strlen(series);
    for (const char *p = text; p && *p; p = strchr(p, '\n') ? strchr(p, '\n') + 1 : NULL) {
        if (strncmp(p, series, n) == 0 && p[n] == ' ')
            return strtod(p + n + 1, NULL);
    }
    return -1;
}

static void s_expect_sample(const char *text, const char *series, double want)
{
    double got = s_sample(text, series);
    if (got != want)
        fail_msg("%s is %g, expected %g", series, got, want);
}

/* `promtool check metrics` must find nothing wrong with text. */
static void s_promtool(it_fix_t *f, const char *text)
{
    char path[512], cmd[1200];
    snprintf(path, sizeof path, "%s/metrics.txt", harness_dir(f->h));
    FILE *out = fopen(path, "w");
    assert_non_null(out);
    fputs(text, out);
    fclose(out);
    snprintf(cmd, sizeof cmd, "promtool check metrics < '%s' > '%s.lint' 2>&1", path, path);
    int rc = harness_sh(cmd);
    if (rc != 0) {
        snprintf(cmd, sizeof cmd, "cat '%s.lint' >&2", path);
        harness_sh(cmd);
        fail_msg("promtool check metrics exited %d (127: promtool missing, see deploy/install-deps.sh)", rc);
    }
}

static void s_write(it_fix_t *f, const char *name, const char *text)
{
    char path[512];
    snprintf(path, sizeof path, "%s/%s", harness_dir(f->h), name);
    FILE *out = fopen(path, "w");
    assert_non_null(out);
    fputs(text, out);
    fclose(out);
}

/* Give agency's registered CURVE key a not-after `days` from now; returns
 * that time. */
static int64_t s_expire_key(it_fix_t *f, const char *agency, int days)
{
    time_t t = time(NULL) + (time_t)days * 24 * 3600;
    struct tm tm;
    gmtime_r(&t, &tm);
    char when[32], cmd[1200];
    strftime(when, sizeof when, "%Y-%m-%dT%H:%M:%SZ", &tm);
    snprintf(cmd, sizeof cmd, "sed -i 's/^\\(curve = [^ ]*\\)$/\\1 not-after=%s/' '%s/registry/%s.pub'", when,
             harness_dir(f->h), agency);
    assert_int_equal(harness_sh(cmd), 0);
    return (int64_t)t;
}

/* Poll /api/status until ready(status) or 20 s passed. */
static json_t *s_status_when(it_fix_t *f, bool (*ready)(json_t *st))
{
    int64_t deadline = it_mono_ms() + 20000;
    for (;;) {
        json_t *st = s_get_json(f, "/api/status", 200);
        if (ready(st))
            return st;
        if (it_mono_ms() > deadline) {
            char *text = json_dumps(st, JSON_INDENT(1));
            fprintf(stderr, "%s\n", text);
            free(text);
            json_decref(st);
            fail_msg("/api/status never showed what the test did");
        }
        json_decref(st);
        it_sleep_ms(200);
    }
}

static bool s_all_seen(json_t *st)
{
    json_t *sub = s_find(json_object_get(st, "subscriptions"), "name", "main");
    return s_int(st, "totals.accepted") == EVENTS && s_int(st, "totals.duplicates") == 1 &&
           s_int(st, "totals.auth_failures") >= 1 && json_array_size(json_object_get(st, "refusals")) >= 1 && sub &&
           json_integer_value(json_object_get(sub, "cursor")) == ACKED &&
           s_find(json_object_get(st, "agencies"), "agency", POP) &&
           json_integer_value(json_object_get(s_find(json_object_get(st, "agencies"), "agency", POP),
                                              "connections")) == 1;
}

static void test_endpoints(void **state)
{
    it_fix_t *f = *state;
    s_write(f, "policy.conf", "allow population-register publish *\n"
                              "allow tax-office subscribe *\n"
                              "allow tax-office publish tax.*\n");
    int64_t not_after = s_expire_key(f, TAX, EXPIRY_DAYS);
    char policy[600];
    snprintf(policy, sizeof policy, "%s/policy.conf", harness_dir(f->h));
    const char *flags[] = {"--no-sync", "--policy", policy, "--subscription-lag-warn", "5", NULL};
    it_start(f, flags);
    assert_true(strncmp(harness_http(f->h), "127.0.0.1:", 10) == 0);

    json_t *j = s_get_json(f, "/healthz", 200);
    assert_string_equal(json_string_value(json_object_get(j, "status")), "ok");
    json_decref(j);
    j = s_get_json(f, "/readyz", 200);
    assert_true(json_is_true(json_object_get(j, "ready")));
    json_decref(j);

    /* Publishes, and one retry answered as a duplicate. */
    civ_client_t *pop = it_client(f, POP, 10000);
    it_publish_many(pop, 0, EVENTS, 8, NULL);
    it_ev_t again;
    it_ev_make(&again, POP, 3);
    civ_ack_t ack;
    assert_int_equal(civ_publish(pop, &again.ev, &ack), CIV_OK);
    assert_int_equal(ack.error, CIV_OK);
    assert_true(ack.duplicate);

    /* A refusal by the policy. */
    civ_client_t *tax = it_client(f, TAX, 10000);
    civ_event_t beyond = {.event_id = "beyond-1", .type = "population.birth.registered", .payload = "{}",
                          .payload_len = 2};
    assert_int_equal(civ_publish(tax, &beyond, &ack), CIV_OK);
    assert_int_equal(ack.error, CIV_E_NOT_AUTHORISED);

    /* A subscription that acknowledges ACKED of the EVENTS it receives. */
    const char *all[] = {"*"};
    assert_int_equal(civ_subscribe(tax, "main", all, 1, it_from_first(), 100), CIV_OK);
    civ_delivery_t *got[EVENTS];
    it_receive(tax, "main", got, EVENTS, 20000, 0);
    assert_int_equal(civ_ack(tax, "main", got[ACKED - 1]->seq), CIV_OK);
    assert_int_equal(got[ACKED - 1]->seq, ACKED);
    it_free_all(got, EVENTS);

    /* A key the registry does not know: refused at the handshake. */
    assert_int_equal(harness_add_outsider(f->h, OUT), 0);
    civ_client_t *out = it_client(f, OUT, 3000);
    assert_int_not_equal(civ_ping(out, NULL), CIV_OK);
    it_drop(f, &out);

    json_t *st = s_status_when(f, s_all_seen);
    assert_string_equal(json_string_value(json_object_get(st, "version")), CIVIBUS_VERSION);
    assert_true(json_is_true(json_object_get(st, "ready")));
    assert_true(json_is_false(json_object_get(st, "storage_full")));
    assert_int_equal(s_int(st, "log.first_seq"), 1);
    assert_int_equal(s_int(st, "log.last_seq"), EVENTS);
    assert_int_equal(s_int(st, "log.entries"), EVENTS);
    assert_true(s_int(st, "log.bytes") > 0);
    assert_true(s_int(st, "log.map_used_bytes") > 0);
    assert_true(s_int(st, "log.oldest_time") > 0);
    assert_int_equal(s_int(st, "totals.refused"), 1);
    assert_int_equal(s_int(st, "totals.delivered"), EVENTS);
    assert_int_equal(s_int(st, "throughput.step_s"), 5);
    json_t *a = s_find(json_object_get(st, "agencies"), "agency", POP);
    assert_int_equal(json_integer_value(json_object_get(a, "accepted")), EVENTS);
    assert_int_equal(json_integer_value(json_object_get(a, "refused")), 0);
    a = s_find(json_object_get(st, "agencies"), "agency", TAX);
    assert_non_null(a);
    assert_int_equal(json_integer_value(json_object_get(a, "accepted")), 0);
    assert_int_equal(json_integer_value(json_object_get(a, "refused")), 1);
    assert_int_equal(json_integer_value(json_object_get(a, "connections")), 1);
    json_t *sub = s_find(json_object_get(st, "subscriptions"), "name", "main");
    assert_string_equal(json_string_value(json_object_get(sub, "agency")), TAX);
    assert_true(json_is_true(json_object_get(sub, "connected")));
    assert_int_equal(json_integer_value(json_object_get(sub, "lag")), EVENTS - ACKED);
    assert_int_equal(json_integer_value(json_object_get(sub, "in_flight")), EVENTS - ACKED);
    json_t *refusals = json_object_get(st, "refusals");
    json_t *last = json_array_get(refusals, json_array_size(refusals) - 1);
    assert_string_equal(json_string_value(json_object_get(last, "agency")), TAX);
    assert_string_equal(json_string_value(json_object_get(last, "code")), "not_authorised");
    assert_non_null(strstr(json_string_value(json_object_get(last, "reason")), "policy"));
    json_t *warnings = json_object_get(st, "warnings");
    json_t *w = s_find(warnings, "kind", "subscription_behind");
    assert_non_null(w);
    assert_string_equal(json_string_value(json_object_get(w, "subscription")), "main");
    w = s_find(warnings, "kind", "key_expiring");
    assert_non_null(w);
    assert_string_equal(json_string_value(json_object_get(w, "agency")), TAX);
    assert_int_equal(json_integer_value(json_object_get(w, "not_after")), not_after);
    json_decref(st);

    /* The same figures in Prometheus form, and a clean bill from promtool. */
    char *m = s_get(f, "/metrics", 200);
    s_promtool(f, m);
    s_expect_sample(m, "civibus_build_info{version=\"" CIVIBUS_VERSION "\"}", 1);
    s_expect_sample(m, "civibus_events_accepted_total{agency=\"" POP "\"}", EVENTS);
    s_expect_sample(m, "civibus_events_duplicate_total{agency=\"" POP "\"}", 1);
    s_expect_sample(m, "civibus_events_refused_total{agency=\"" TAX "\",reason=\"not_authorised\"}", 1);
    s_expect_sample(m, "civibus_adapters_connected{agency=\"" POP "\"}", 1);
    s_expect_sample(m, "civibus_adapters_connected{agency=\"" TAX "\"}", 1);
    s_expect_sample(m, "civibus_subscription_lag_events{agency=\"" TAX "\",subscription=\"main\"}", EVENTS - ACKED);
    s_expect_sample(m, "civibus_subscription_inflight_events{agency=\"" TAX "\",subscription=\"main\"}",
                    EVENTS - ACKED);
    s_expect_sample(m, "civibus_log_first_seq", 1);
    s_expect_sample(m, "civibus_log_last_seq", EVENTS);
    s_expect_sample(m, "civibus_log_entries", EVENTS);
    s_expect_sample(m, "civibus_storage_full", 0);
    assert_true(s_sample(m, "civibus_auth_failures_total{kind=\"zap_refused\"}") >= 1);
    /* Every Publish got a reply: EVENTS pipelined ones, the retry, the refused one. */
    assert_true(s_sample(m, "civibus_publish_ack_latency_seconds_count") >= 3);
    assert_true(s_sample(m, "civibus_commit_batch_events_sum") == EVENTS + 1);
    assert_true(s_sample(m, "process_resident_memory_bytes") > 0);
    assert_true(s_sample(m, "process_open_fds") > 0);
    char key_series[300];
    const char *z85 = strstr(m, "civibus_key_expiry_timestamp_seconds{agency=\"" TAX "\",usage=\"curve\",key=\"");
    assert_non_null(z85);
    snprintf(key_series, sizeof key_series, "%.*s", (int)(strchr(z85, ' ') - z85), z85);
    s_expect_sample(m, key_series, (double)not_after);
    free(m);

    /* HTTP rules. */
    long status = 0;
    assert_int_equal(harness_http_request(f->h, "POST", "/metrics", &status, NULL, NULL), 0);
    assert_int_equal(status, 405);
    assert_int_equal(harness_http_request(f->h, "HEAD", "/api/status", &status, NULL, NULL), 0);
    assert_int_equal(status, 200);
    free(s_get(f, "/no/such/path", 404));
    char *index = s_get(f, "/", 200);
    assert_non_null(strstr(index, "/metrics"));
    free(index);
}

/* ---- readiness at the storage ceiling ---------------------------------------- */

#define PAYLOAD 1500

static bool s_is_full(json_t *st)
{
    return json_is_true(json_object_get(st, "storage_full"));
}

static void test_readyz_storage_full(void **state)
{
    it_fix_t *f = *state;
    const char *small[] = {"--no-sync", "--map-size-initial", "1MiB", "--map-size-max", "2MiB", NULL};
    it_start(f, small);
    free(s_get(f, "/readyz", 200));
    civ_client_t *pop = it_client(f, POP, 10000);
    static uint8_t payload[PAYLOAD];
    memset(payload, 'x', sizeof payload);
    bool full = false;
    for (int i = 0; i < 5000 && !full; i++) {
        char id[32];
        snprintf(id, sizeof id, "full-%06d", i);
        civ_event_t ev = {.event_id = id, .type = "population.address.changed", .payload = payload,
                          .payload_len = PAYLOAD};
        civ_ack_t ack;
        assert_int_equal(civ_publish(pop, &ev, &ack), CIV_OK);
        if (ack.error == CIV_E_STORAGE_FULL)
            full = true;
        else if (ack.error != CIV_OK)
            fail_msg("%s: %s (%s)", id, civ_error_name(ack.error), ack.reason);
    }
    assert_true(full);

    json_t *st = s_status_when(f, s_is_full);
    assert_false(json_is_true(json_object_get(st, "ready")));
    assert_non_null(s_find(json_object_get(st, "warnings"), "kind", "storage_full"));
    json_decref(st);
    json_t *j = s_get_json(f, "/readyz", 503);
    assert_true(json_is_false(json_object_get(j, "ready")));
    assert_string_equal(json_string_value(json_object_get(j, "reason")), "storage_full");
    json_decref(j);
    free(s_get(f, "/healthz", 200)); /* full, not dead */
    char *m = s_get(f, "/metrics", 200);
    s_expect_sample(m, "civibus_storage_full", 1);
    assert_true(s_sample(m, "civibus_events_refused_total{agency=\"" POP "\",reason=\"storage_full\"}") >= 1);
    s_promtool(f, m);
    free(m);

    /* Restarted with room: ready again. */
    assert_int_equal(harness_stop(f->h), 0);
    const char *larger[] = {"--no-sync", "--map-size-initial", "1MiB", "--map-size-max", "16MiB", NULL};
    it_start(f, larger);
    j = s_get_json(f, "/readyz", 200);
    assert_true(json_is_true(json_object_get(j, "ready")));
    json_decref(j);
}

/* ---- configuration ------------------------------------------------------------ */

static void test_http_setting(void **state)
{
    it_fix_t *f = *state;
    const char *off[] = {"--no-sync", "--http", "", NULL};
    it_start(f, off);
    assert_string_equal(harness_http(f->h), "");
    assert_int_equal(harness_stop(f->h), 0);
    /* A malformed address: the hub refuses to start, and says why. */
    const char *bad[] = {"--no-sync", "--http", "localhost:http", NULL};
    assert_int_not_equal(harness_start(f->h, bad), 0);
    assert_true(it_log_contains(f, "event=address_invalid", 2000));
}

/* ---- the CLI ---------------------------------------------------------------- */

/* Run the CLI with args, its stdout into a string (caller frees); the exit
 * status must be want. */
static char *s_cli(it_fix_t *f, const char *args, int want)
{
    const char *cli = getenv("CIVIBUS_CLI") ? getenv("CIVIBUS_CLI") : "build/civibus";
    char out[512], cmd[2048];
    snprintf(out, sizeof out, "%s/cli.out", harness_dir(f->h));
    snprintf(cmd, sizeof cmd, "'%s' %s > '%s'", cli, args, out);
    int rc = harness_sh(cmd);
    FILE *in = fopen(out, "r");
    assert_non_null(in);
    static char buf[65536];
    size_t n = fread(buf, 1, sizeof buf - 1, in);
    fclose(in);
    buf[n] = '\0';
    if (rc != want)
        fail_msg("`%s` exited %d, not %d; it printed:\n%s", cmd, rc, want, buf);
    return strdup(buf);
}

static size_t s_count(const char *text, const char *needle)
{
    size_t n = 0;
    for (const char *p = strstr(text, needle); p; p = strstr(p + 1, needle))
        n++;
    return n;
}

static void test_cli_overview(void **state)
{
    it_fix_t *f = *state;
    const char *flags[] = {"--no-sync", NULL};
    it_start(f, flags);
    civ_client_t *pop = it_client(f, POP, 10000);
    it_publish_many(pop, 0, 6, 4, NULL);
    civ_client_t *tax = it_client(f, TAX, 10000);
    const char *all[] = {"*"};
    assert_int_equal(civ_subscribe(tax, "audit", all, 1, it_from_first(), 100), CIV_OK);
    civ_delivery_t *got[6];
    it_receive(tax, "audit", got, 6, 20000, 0);
    assert_int_equal(civ_ack(tax, "audit", got[1]->seq), CIV_OK);
    it_free_all(got, 6);

    /* The JSON goes through as the endpoint serves it. */
    char args[600];
    int64_t deadline = it_mono_ms() + 20000;
    json_t *st = NULL;
    for (;;) {
        snprintf(args, sizeof args, "status --http %s --json", harness_http(f->h));
        char *out = s_cli(f, args, 0);
        st = json_loads(out, 0, NULL);
        free(out);
        assert_non_null(st);
        json_t *sub = s_find(json_object_get(st, "subscriptions"), "name", "audit");
        if (sub && json_integer_value(json_object_get(sub, "cursor")) == 2 && s_int(st, "totals.accepted") == 6)
            break;
        json_decref(st);
        if (it_mono_ms() > deadline)
            fail_msg("civibus status --http --json never showed the publishes and the ack");
        it_sleep_ms(200);
    }
    json_decref(st);

    /* The table. */
    snprintf(args, sizeof args, "status --http %s", harness_http(f->h));
    char *out = s_cli(f, args, 0);
    assert_non_null(strstr(out, "ready"));
    assert_non_null(strstr(out, "totals         accepted 6,"));
    assert_non_null(strstr(out, "SUBSCRIPTION"));
    const char *row = strstr(out, "audit ");
    assert_non_null(row);
    assert_non_null(strstr(row, TAX));
    int cursor = 0, lag = 0;
    assert_int_equal(sscanf(row + strlen("audit ") + strspn(row + strlen("audit "), " ") + strlen(TAX),
                            " yes %d %d", &cursor, &lag),
                     2);
    assert_int_equal(cursor, 2);
    assert_int_equal(lag, 4);
    free(out);

    /* top: two refreshes, each starting with a clear screen. */
    snprintf(args, sizeof args, "top --http %s --count 2 --interval 1", harness_http(f->h));
    out = s_cli(f, args, 0);
    assert_int_equal(s_count(out, "\033[H\033[2J"), 2);
    assert_int_equal(s_count(out, "SUBSCRIPTION"), 2);
    free(out);

    /* The agency's own view over ZeroMQ still works. */
    snprintf(args, sizeof args, "status --hub '%s' --hub-key '%s' --key '%s'", harness_endpoint(f->h),
             harness_hub_pub(f->h), harness_key(f->h, TAX));
    out = s_cli(f, args, 0);
    assert_non_null(strstr(out, "(reachable)"));
    assert_non_null(strstr(out, "audit"));
    free(out);

    /* No endpoint there: exit code 3, and --json still prints an object. */
    char gone[80];
    snprintf(gone, sizeof gone, "%s", harness_http(f->h));
    assert_int_equal(harness_stop(f->h), 0);
    snprintf(args, sizeof args, "status --http %s --json 2>/dev/null", gone);
    out = s_cli(f, args, 3);
    assert_non_null(strstr(out, "\"reachable\":false"));
    free(out);
    snprintf(args, sizeof args, "top --http %s --count 1 2>/dev/null", gone);
    free(s_cli(f, args, 3));
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_setup_teardown(test_endpoints, s_setup, s_teardown),
        cmocka_unit_test_setup_teardown(test_readyz_storage_full, s_setup, s_teardown),
        cmocka_unit_test_setup_teardown(test_http_setting, s_setup, s_teardown),
        cmocka_unit_test_setup_teardown(test_cli_overview, s_setup, s_teardown),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
