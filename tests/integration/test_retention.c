/* test_retention - a real hub deleting the front of its log.
 *
 * The hub runs with a signing key (the harness always gives it one), so it
 * deletes only what a signed checkpoint covers; checkpoints come every 50
 * events here, so that boundary follows the log closely. The cases:
 *   - size: a kept subscription holds the log until it acknowledges; then
 *     the log is cut to the limit. A live subscription that retention
 *     overtakes gets behind_retention with the range lost (after the events
 *     it had been sent); a saved one is refused from its cursor and starts
 *     again from FIRST; replays from FIRST start at the new first seq, and
 *     from a deleted SEQ or an earlier TIME get behind_retention (the CLI
 *     says so too); `civibus verify` passes on the retained log, which goes
 *     on after a restart.
 *   - age: entries older than retention_max_age go, the newest stays.
 *   - pinned: a kept subscription holds the log until the map is full, and
 *     publishes get storage_full; once it acknowledges, retention frees the
 *     space and publishes are accepted again.
 *   - flat: under continuous, synced publishing of a multiple of
 *     retention_max_bytes, the data file stops growing.
 * Waits are bounded loops on what the hub reports (status, its log), never
 * on elapsed time.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include <sys/stat.h>
#include <sys/wait.h>

#include "itest.h"

#define POP "population-register"
#define TAX "tax-office"
#define ARCH "archive"
#define BIG_PAYLOAD 1000

static const char *const s_agencies[] = {POP, TAX, ARCH, NULL};

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

/* The hub's status as c's agency sees it (caller destroys). */
static civ_status_t *s_status(civ_client_t *c)
{
    civ_status_t *st = NULL;
    int rc = civ_status(c, &st);
    if (rc != CIV_OK)
        fail_msg("civ_status: %s", civ_error_name(rc));
    return st;
}

static uint64_t s_first_seq(civ_client_t *c)
{
    civ_status_t *st = s_status(c);
    uint64_t first = st->first_seq;
    civ_status_destroy(&st);
    return first;
}

/* Wait (bounded) until the log's first seq is at least `at_least`; returns it. */
static uint64_t s_wait_first(civ_client_t *c, uint64_t at_least, int timeout_ms)
{
    uint64_t first = 0;
    for (int64_t deadline = it_mono_ms() + timeout_ms; it_mono_ms() < deadline; it_sleep_ms(50)) {
        first = s_first_seq(c);
        if (first >= at_least)
            return first;
    }
    fail_msg("first_seq still %" PRIu64 ", expected at least %" PRIu64, first, at_least);
    return first;
}

/* The status of c's subscription `name`. */
static civ_sub_status_t s_sub(civ_client_t *c, const char *name)
{
    civ_status_t *st = s_status(c);
    for (size_t i = 0; i < st->n_subscriptions; i++) {
        if (strcmp(st->subscriptions[i].name, name) == 0) {
            civ_sub_status_t s = st->subscriptions[i];
            civ_status_destroy(&st);
            return s;
        }
    }
    civ_status_destroy(&st);
    fail_msg("no subscription %s in the status", name);
    return (civ_sub_status_t){0};
}

/* Receive n events of subscription `name` on c, in order from seq `from`,
 * acknowledging the last. */
static void s_take(civ_client_t *c, const char *name, uint64_t from, size_t n)
{
    civ_delivery_t **ds = calloc(n, sizeof *ds);
    assert_non_null(ds);
    it_receive(c, name, ds, n, 30000, 0);
    for (size_t i = 0; i < n; i++)
        if (ds[i]->seq != from + i)
            fail_msg("%s: expected seq %" PRIu64 ", got %" PRIu64, name, from + i, ds[i]->seq);
    assert_int_equal(civ_ack(c, name, from + n - 1), CIV_OK);
    it_free_all(ds, n);
    free(ds);
}

/* The first event a replay from `from` returns: its seq, or the error. */
static int s_replay_first(civ_client_t *c, civ_start_t from, uint64_t *seq)
{
    civ_error_t err = {0};
    civ_replay_t *r = civ_replay_open(c, from, 1, &err);
    if (!r)
        fail_msg("civ_replay_open: %s", err.message);
    civ_delivery_t *d = NULL;
    int rc = civ_replay_next(r, &d, 10000);
    *seq = d ? d->seq : 0;
    civ_delivery_destroy(&d);
    civ_replay_destroy(&r);
    return rc;
}

/* Run a shell command; its exit code, stdout+stderr in out. */
static int s_run(const char *cmd, char *out, size_t out_len)
{
    FILE *p = popen(cmd, "r");
    assert_non_null(p);
    size_t n = fread(out, 1, out_len - 1, p);
    out[n] = '\0';
    int status = pclose(p);
    assert_true(WIFEXITED(status));
    return WEXITSTATUS(status);
}

static const char *s_cli_path(void)
{
    return getenv("CIVIBUS_CLI") ? getenv("CIVIBUS_CLI") : "build/civibus";
}

/* Run the CLI as agency with shell words args. */
static int s_cli(it_fix_t *f, const char *agency, const char *args, char *out, size_t out_len)
{
    char cmd[2048];
    snprintf(cmd, sizeof cmd, "'%s' %s --hub '%s' --hub-key '%s' --key '%s' 2>&1", s_cli_path(), args,
             harness_endpoint(f->h), harness_hub_pub(f->h), harness_key(f->h, agency));
    return s_run(cmd, out, out_len);
}

static int s_verify(it_fix_t *f, char *out, size_t out_len)
{
    char cmd[1024];
    snprintf(cmd, sizeof cmd, "'%s' verify --data '%s' --hub-key '%s' 2>&1", s_cli_path(), harness_data_dir(f->h),
             harness_hub_sign_pub(f->h));
    return s_run(cmd, out, out_len);
}

static void test_retention_by_size(void **state)
{
    it_fix_t *f = *state;
    const char *flags[] = {"--no-sync", "--checkpoint-events", "50", "--retention-max-bytes", "128KiB",
                           "--retention-batch", "50", "--retention-keep-subscriptions", ARCH "/all", NULL};
    it_start(f, flags);
    civ_client_t *pop = it_client(f, POP, 10000);
    civ_client_t *arch = it_client(f, ARCH, 10000);
    civ_client_t *slow = it_client_opts(f, TAX, 10000, 0, 0);
    civ_client_t *tax = it_client(f, TAX, 10000);
    const char *all[] = {"*"};

    /* The kept subscription, the one a saved cursor at 0, one live and slow. */
    assert_int_equal(civ_subscribe(arch, "all", all, 1, it_from_first(), 4096), CIV_OK);
    assert_int_equal(civ_subscribe(tax, "idle", all, 1, it_from_first(), 16), CIV_OK);
    assert_int_equal(civ_unsubscribe(tax, "idle"), CIV_OK);
    assert_int_equal(civ_subscribe(slow, "slow", all, 1, it_from_first(), 10), CIV_OK);

    /* 2000 events: far over the limit, but the archive holds them all. */
    it_publish_many(pop, 0, 2000, 512, NULL);
    if (!it_log_contains(f, "event=retention_held subscription=archive/all cursor=0", 15000))
        fail_msg("retention never reported the archive holding the log");
    assert_int_equal(s_first_seq(pop), 1);

    /* The archive acknowledges 1000: exactly those go. */
    s_take(arch, "all", 1, 1000);
    assert_int_equal(s_wait_first(pop, 1001, 15000), 1001);
    if (!it_log_contains(f, "event=retention_deleted", 5000))
        fail_msg("no retention_deleted line");

    /* The slow subscription was sent 1..10 before; from 11 on entries were
     * deleted before it got them: it gets those 10, then behind_retention
     * naming the range deleted when the hub noticed (retention deletes in
     * transactions of 50, and may have been part way). */
    civ_delivery_t *ten[10];
    it_receive(slow, "slow", ten, 10, 10000, 0);
    for (int i = 0; i < 10; i++)
        assert_int_equal(ten[i]->seq, (uint64_t)i + 1);
    it_free_all(ten, 10);
    civ_delivery_t *d = NULL;
    int rc = CIV_E_TIMEOUT;
    for (int64_t deadline = it_mono_ms() + 15000; rc == CIV_E_TIMEOUT && it_mono_ms() < deadline;)
        rc = civ_next(slow, &d, 1000);
    assert_null(d);
    if (rc != CIV_E_BEHIND_RETENTION)
        fail_msg("slow subscription: %s, expected behind_retention", civ_error_name(rc));
    const char *why = strstr(civ_client_error(slow), "entries 11 to ");
    if (!why || !strstr(why, "were deleted by retention"))
        fail_msg("slow subscription's error: %s", civ_client_error(slow));
    uint64_t lost_to = strtoull(why + strlen("entries 11 to "), NULL, 10);
    assert_true(lost_to >= 50 && lost_to <= 1000);
    if (!it_log_contains(f, "event=behind_retention agency=tax-office subscription=slow cursor=0 lost_from=11 ",
                         5000))
        fail_msg("no behind_retention line for the slow subscription");
    civ_sub_status_t ss = s_sub(tax, "slow");
    assert_true(ss.behind_retention);
    assert_true(s_sub(tax, "idle").behind_retention);
    assert_false(s_sub(arch, "all").behind_retention);
    assert_string_equal(civ_error_name(CIV_E_BEHIND_RETENTION), "behind_retention");

    /* The archive takes the rest: the log is cut to the size limit, but
     * never past the last checkpoint, and the newest entry stays. */
    s_take(arch, "all", 1001, 1000);
    uint64_t first = s_wait_first(pop, 1100, 15000);
    assert_true(first <= 2000);
    print_message("the log starts at %" PRIu64 " after 2000 events with retention_max_bytes 128KiB\n", first);

    /* From its cursor the saved subscription is refused with the range;
     * with FIRST it starts again at the log's start, and that is logged. */
    rc = civ_subscribe(tax, "idle", all, 1, (civ_start_t){.kind = CIV_START_CURSOR}, 16);
    assert_int_equal(rc, CIV_E_BEHIND_RETENTION);
    if (!strstr(civ_client_error(tax), "entries 1 to"))
        fail_msg("cursor refusal: %s", civ_client_error(tax));
    rc = civ_subscribe(tax, "idle", all, 1, it_from_seq(5), 16);
    assert_int_equal(rc, CIV_E_BEHIND_RETENTION);
    rc = civ_subscribe(tax, "idle", all, 1, (civ_start_t){.kind = CIV_START_TIME, .time_us = IT_T0}, 16);
    assert_int_equal(rc, CIV_E_BEHIND_RETENTION);
    if (!strstr(civ_client_error(tax), "received at or after that time were deleted by retention"))
        fail_msg("time refusal: %s", civ_client_error(tax));
    assert_int_equal(civ_subscribe(tax, "idle", all, 1, it_from_first(), 16), CIV_OK);
    first = s_first_seq(pop);
    civ_delivery_t *one = NULL;
    it_receive(tax, "idle", &one, 1, 10000, 0);
    assert_true(one->seq >= first); /* retention may have gone on meanwhile */
    civ_delivery_destroy(&one);
    if (!it_log_contains(f, "event=cursor_reset_past_retention agency=tax-office subscription=idle cursor=0", 5000))
        fail_msg("no cursor_reset_past_retention line");
    assert_int_equal(civ_unsubscribe(tax, "idle"), CIV_OK);

    /* Replays: FIRST starts at the first retained entry; a deleted SEQ and
     * a time before the cut are refused. */
    civ_client_t *reader = it_client(f, TAX, 10000);
    uint64_t seq = 0;
    first = s_first_seq(pop);
    assert_int_equal(s_replay_first(reader, it_from_first(), &seq), CIV_OK);
    assert_int_equal(seq, first);
    assert_int_equal(s_replay_first(reader, it_from_seq(first), &seq), CIV_OK);
    assert_int_equal(seq, first);
    assert_int_equal(s_replay_first(reader, it_from_seq(3), &seq), CIV_E_BEHIND_RETENTION);
    assert_int_equal(s_replay_first(reader, (civ_start_t){.kind = CIV_START_TIME, .time_us = IT_T0}, &seq),
                     CIV_E_BEHIND_RETENTION);
    assert_int_equal(s_replay_first(reader, (civ_start_t){.kind = CIV_START_TIME, .time_us = INT64_MAX}, &seq),
                     CIV_OK);
    assert_int_equal(seq, 0); /* nothing after that time: the end */
    char out[4096];
    assert_int_equal(s_cli(f, TAX, "replay --from seq:1 --count 1", out, sizeof out), 1);
    if (!strstr(out, "behind retention") || !strstr(out, "were deleted by retention"))
        fail_msg("civibus replay: %s", out);
    assert_int_equal(s_cli(f, TAX, "status --json", out, sizeof out), 0);
    if (!strstr(out, "\"behind_retention\":true"))
        fail_msg("civibus status: %s", out);

    /* The retained log verifies, from its anchor, before and after a
     * restart, and goes on from where it was. */
    assert_int_equal(harness_stop(f->h), 0);
    first = 0;
    assert_int_equal(s_verify(f, out, sizeof out), 0);
    const char *fs = strstr(out, "first seq ");
    if (!fs || !strstr(out, "ok: ") || !strstr(out, "were deleted by retention"))
        fail_msg("civibus verify: %s", out);
    first = strtoull(fs + strlen("first seq "), NULL, 10);
    assert_true(first > 1100 && first <= 2000);
    it_start(f, flags);
    assert_int_equal(s_first_seq(pop), first);
    uint64_t seqs[10];
    it_publish_many(pop, 2000, 10, 10, seqs);
    assert_int_equal(seqs[0], 2001);
    assert_int_equal(harness_stop(f->h), 0);
    assert_int_equal(s_verify(f, out, sizeof out), 0);
    if (!strstr(out, "last seq 2010"))
        fail_msg("civibus verify after the restart: %s", out);
}

static void test_retention_by_age(void **state)
{
    it_fix_t *f = *state;
    const char *flags[] = {"--no-sync", "--checkpoint-events", "10", "--retention-max-age", "1s", NULL};
    it_start(f, flags);
    civ_client_t *pop = it_client(f, POP, 10000);
    it_publish_many(pop, 0, 100, 100, NULL);
    /* One second on, everything but the newest entry is due; the last
     * checkpoint bounds the cut, and a clean stop would write one at 100.
     * At least the checkpoint at 100 or before follows. */
    uint64_t first = s_wait_first(pop, 91, 20000);
    civ_status_t *st = s_status(pop);
    assert_int_equal(st->last_seq, 100);
    civ_status_destroy(&st);
    uint64_t seq = 0;
    assert_int_equal(s_replay_first(pop, it_from_first(), &seq), CIV_OK);
    assert_true(seq >= first);
    if (!it_log_contains(f, "event=retention_deleted", 5000) || !it_log_contains(f, "by=age", 1000))
        fail_msg("no retention_deleted line by age");
    /* The log goes on; the newest entry is always there. */
    uint64_t seqs[5];
    it_publish_many(pop, 100, 5, 5, seqs);
    assert_int_equal(seqs[0], 101);
    assert_true(s_first_seq(pop) <= 105);
}

typedef struct {
    char id[40];
    uint8_t payload[BIG_PAYLOAD];
    civ_event_t ev;
} s_big_t;

static void s_big_make(s_big_t *b, const char *tag, int i)
{
    snprintf(b->id, sizeof b->id, "%s-%07d", tag, i);
    for (size_t k = 0; k < BIG_PAYLOAD; k++)
        b->payload[k] = (uint8_t)((size_t)i * 131 + k);
    b->ev = (civ_event_t){.event_id = b->id,
                          .type = "population.address.changed",
                          .subject = "person/1",
                          .occurred_at = IT_T0 + i,
                          .payload = b->payload,
                          .payload_len = BIG_PAYLOAD};
}

/* Publish big events from..from+n-1, pipelined; counts the accepted ones and
 * the storage_full refusals. Any other outcome fails. */
static void s_publish_big(civ_client_t *c, const char *tag, int from, int n, int *accepted, int *full)
{
    static s_big_t b;
    int sent = 0, acked = 0;
    for (int64_t deadline = it_mono_ms() + 120000; acked < n;) {
        if (it_mono_ms() > deadline)
            fail_msg("%d of %d big events answered", acked, n);
        if (sent < n && civ_publish_pending(c) < 256) {
            uint64_t token;
            s_big_make(&b, tag, from + sent);
            int rc = civ_publish_send(c, &b.ev, &token);
            if (rc != CIV_OK)
                fail_msg("civ_publish_send: %s", civ_error_name(rc));
            sent++;
            continue;
        }
        civ_ack_t ack;
        int rc = civ_publish_recv(c, &ack, -1);
        if (rc != CIV_OK)
            fail_msg("civ_publish_recv: %s", civ_error_name(rc));
        if (ack.error == CIV_OK)
            ++*accepted;
        else if (ack.error == CIV_E_STORAGE_FULL)
            ++*full;
        else
            fail_msg("big event refused: %s (%s)", civ_error_name(ack.error), ack.reason);
        acked++;
    }
}

static void test_retention_pinned_until_full(void **state)
{
    it_fix_t *f = *state;
    const char *flags[] = {"--no-sync", "--checkpoint-events", "20", "--map-size-initial", "1MiB",
                           "--map-size-max", "2MiB", "--retention-max-bytes", "256KiB",
                           "--retention-keep-subscriptions", ARCH "/all", NULL};
    it_start(f, flags);
    civ_client_t *pop = it_client_opts(f, POP, 10000, 64, 8);
    civ_client_t *arch = it_client(f, ARCH, 10000);
    const char *all[] = {"*"};
    assert_int_equal(civ_subscribe(arch, "all", all, 1, it_from_first(), 1), CIV_OK);
    /* The archive acknowledges nothing: the map fills, storage_full. */
    int accepted = 0, full = 0;
    s_publish_big(pop, "pin", 0, 3000, &accepted, &full);
    assert_true(full > 0);
    assert_int_equal(s_first_seq(pop), 1);
    uint64_t last = it_last_seq(pop);
    assert_int_equal(last, (uint64_t)accepted);
    print_message("held by the archive: storage_full after %d events\n", accepted);

    /* It acknowledges everything (a new session from LATEST moves its
     * cursor): retention frees the space, publishes go in again. */
    assert_int_equal(civ_subscribe(arch, "all", all, 1, (civ_start_t){.kind = CIV_START_LATEST}, 1), CIV_OK);
    s_wait_first(pop, 2, 15000);
    int again = 0, still_full = 0;
    for (int round = 0; round < 50 && again == 0; round++) {
        s_publish_big(pop, "again", round * 10, 10, &again, &still_full);
        if (again == 0)
            it_sleep_ms(100);
    }
    assert_true(again > 0);
}

static int64_t s_file_size(it_fix_t *f)
{
    char path[512];
    snprintf(path, sizeof path, "%s/data.mdb", harness_data_dir(f->h));
    struct stat st;
    assert_int_equal(stat(path, &st), 0);
    return (int64_t)st.st_size;
}

/* The data file under continuous, synced publishing of six times the
 * retention limit: after three times it is at most twice its size after
 * one time, and so after six. */
static void test_retention_file_stays_flat(void **state)
{
    it_fix_t *f = *state;
    const int64_t limit = 2 << 20;
    const char *flags[] = {"--checkpoint-events", "200", "--retention-max-bytes", "2MiB", NULL};
    it_start(f, flags);
    civ_client_t *pop = it_client_opts(f, POP, 10000, 1024, 64);
    int per_limit = (int)(limit / BIG_PAYLOAD), accepted = 0, full = 0;
    int64_t sizes[7] = {s_file_size(f)};
    for (int k = 1; k <= 6; k++) {
        s_publish_big(pop, "flat", (k - 1) * per_limit, per_limit, &accepted, &full);
        sizes[k] = s_file_size(f);
        print_message("after %d x retention_max_bytes (%d events): data.mdb %" PRId64 " bytes, first seq %" PRIu64
                      "\n", k, accepted, sizes[k], s_first_seq(pop));
    }
    assert_int_equal(full, 0);
    assert_true(s_first_seq(pop) > (uint64_t)per_limit);
    assert_true(sizes[3] <= 2 * sizes[1]);
    assert_true(sizes[6] <= 2 * sizes[1]);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_setup_teardown(test_retention_by_size, s_setup, s_teardown),
        cmocka_unit_test_setup_teardown(test_retention_by_age, s_setup, s_teardown),
        cmocka_unit_test_setup_teardown(test_retention_pinned_until_full, s_setup, s_teardown),
        cmocka_unit_test_setup_teardown(test_retention_file_stays_flat, s_setup, s_teardown),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
