/* test_backup - `civibus backup` of a live hub under load, and `restore`.
 *
 * Two agencies publish, pipelined, while the built CLI ($CIVIBUS_CLI) copies
 * the hub's data directory, several times (compacting and plain copies);
 * the hub keeps answering throughout. Then the hub stops, its data
 * directory is moved aside, and each backup in turn is restored into a
 * fresh one and served by a new hub: it must hold every event acknowledged
 * before that backup started, exactly once, at its acknowledged sequence
 * number and byte for byte, with no gap up to the last seq the backup
 * reported, and the subscription cursor saved before the backups; `civibus
 * verify` must pass on it, and the restored hub must go on from there
 * (new events after the last seq, retries recognised as duplicates).
 * The other cases check the refusals: missing or foreign directories, an
 * existing output, a live or non-empty target, a tampered or foreign copy.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include <fcntl.h>
#include <jansson.h>
#include <lmdb.h>
#include <signal.h>
#include <spawn.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include "itest.h"

#define A "population-register"
#define B "tax-office"
#define ROUNDS 3
#define PER_ROUND 1500 /* events per publisher while one backup runs */
#define MAX_EV (300 + ROUNDS * PER_ROUND + 8)
#define CURSOR_EVENTS 300
#define CURSOR_ACKED 200

extern char **environ;

static const char *const s_agencies[] = {A, B, NULL};
static const char *const s_flags[] = {"--checkpoint-events", "500", NULL};
static const char *const s_small_flags[] = {"--checkpoint-events", "5", NULL};

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

static const char *s_cli(void)
{
    return getenv("CIVIBUS_CLI") ? getenv("CIVIBUS_CLI") : "build/civibus";
}

/* Run a shell command; its exit code, and stdout+stderr in out. */
static int s_run(char *out, size_t out_len, const char *fmt, ...)
{
    char cmd[2048];
    va_list ap;
    va_start(ap, fmt);
    int n = vsnprintf(cmd, sizeof cmd, fmt, ap);
    va_end(ap);
    assert_true(n > 0 && (size_t)n < sizeof cmd - 8);
    strcat(cmd, " 2>&1");
    FILE *p = popen(cmd, "r");
    assert_non_null(p);
    size_t got = fread(out, 1, out_len - 1, p);
    out[got] = '\0';
    int status = pclose(p);
    assert_true(WIFEXITED(status));
    return WEXITSTATUS(status);
}

/* The JSON object on a line of its own in text; fails the test if none. */
static json_t *s_json_line(const char *text)
{
    const char *line = text;
    while (line && *line) {
        if (*line == '{') {
            const char *end = strchr(line, '\n');
            json_error_t jerr;
            json_t *obj = json_loadb(line, end ? (size_t)(end - line) : strlen(line), 0, &jerr);
            if (obj)
                return obj;
        }
        line = strchr(line, '\n');
        if (line)
            line++;
    }
    fail_msg("no JSON line in:\n%s", text);
    return NULL;
}

static uint64_t s_json_u64(json_t *obj, const char *key)
{
    json_t *v = json_object_get(obj, key);
    if (!json_is_integer(v))
        fail_msg("no integer '%s' in the output", key);
    return (uint64_t)json_integer_value(v);
}

/* ---- publishing under load -------------------------------------------------- */

typedef struct {
    civ_client_t *c;
    const char *agency;
    int sent;
    int acked;
    uint64_t seqs[MAX_EV]; /* seq of event i, from its ack */
} s_pub_t;

/* One step of a pipelined publisher towards `target` events: queue one
 * more if the window allows, else take an ack if one comes within 20 ms.
 * Every ack must accept the next event of this publisher. */
static void s_pub_step(s_pub_t *p, int target)
{
    if (p->sent < target && civ_publish_pending(p->c) < 128) {
        it_ev_t e;
        it_ev_make(&e, p->agency, p->sent);
        uint64_t token;
        int rc = civ_publish_send(p->c, &e.ev, &token);
        if (rc != CIV_OK)
            fail_msg("civ_publish_send %s #%d: %s", p->agency, p->sent, civ_error_name(rc));
        p->sent++;
        return;
    }
    if (civ_publish_pending(p->c) == 0)
        return;
    civ_ack_t ack;
    int rc = civ_publish_recv(p->c, &ack, 20);
    if (rc == CIV_E_TIMEOUT)
        return;
    if (rc != CIV_OK)
        fail_msg("civ_publish_recv %s after %d acks: %s", p->agency, p->acked, civ_error_name(rc));
    char want[64];
    snprintf(want, sizeof want, "%s-%06d", p->agency, p->acked);
    if (ack.error != CIV_OK)
        fail_msg("event %s refused: %s (%s)", want, civ_error_name(ack.error), ack.reason);
    assert_string_equal(ack.event_id, want);
    assert_false(ack.duplicate);
    p->seqs[p->acked++] = ack.seq;
}

static bool s_pub_done(const s_pub_t *p, int target)
{
    return p->acked >= target;
}

/* Start `civibus backup` in the background, its output into log. */
static pid_t s_backup_spawn(const char *data, const char *out, bool compact, const char *log)
{
    char cmd[4096];
    int n = snprintf(cmd, sizeof cmd, "exec '%s' backup --data '%s' --out '%s' %s >'%s' 2>&1", s_cli(), data, out,
                     compact ? "" : "--no-compact", log);
    assert_true(n > 0 && (size_t)n < sizeof cmd);
    char *argv[] = {"sh", "-c", cmd, NULL};
    pid_t pid;
    assert_int_equal(posix_spawn(&pid, "/bin/sh", NULL, NULL, argv, environ), 0);
    return pid;
}

static char *s_slurp(const char *path)
{
    FILE *fp = fopen(path, "r");
    assert_non_null(fp);
    static char buf[8192];
    size_t n = fread(buf, 1, sizeof buf - 1, fp);
    buf[n] = '\0';
    fclose(fp);
    return buf;
}

/* ---- checking a restored hub ----------------------------------------------- */

typedef struct {
    char file[600];
    int acked_before[2]; /* acks of A and B received before it started */
    uint64_t last_seq;   /* as the backup reported it */
    uint64_t entries;
    uint64_t cursors;
} s_backup_t;

/* Replay the whole log of the running (restored) hub and check it against
 * what was acknowledged live: seqs 1..last_seq without a gap, each event
 * once, at its acknowledged seq, byte for byte, and every event acked
 * before the backup started present. */
static void s_check_restored(it_fix_t *f, s_pub_t *pubs[2], const s_backup_t *b)
{
    civ_client_t *c = it_client(f, A, 0);
    assert_int_equal(it_last_seq(c), b->last_seq);
    static bool seen[2][MAX_EV];
    memset(seen, 0, sizeof seen);
    civ_error_t err;
    civ_replay_t *rp = civ_replay_open(c, it_from_first(), 0, &err);
    assert_non_null(rp);
    uint64_t expect = 1;
    civ_delivery_t *d = NULL;
    int rc;
    while ((rc = civ_replay_next(rp, &d, 10000)) == CIV_OK && d) {
        if (d->seq != expect)
            fail_msg("restored log: seq %" PRIu64 " where %" PRIu64 " was expected", d->seq, expect);
        int who = strcmp(d->event.source, A) == 0 ? 0 : strcmp(d->event.source, B) == 0 ? 1 : -1;
        assert_true(who >= 0);
        int i = it_ev_index(d->event.event_id, pubs[who]->agency);
        if (i < 0 || i >= pubs[who]->acked)
            fail_msg("restored log holds %s, never acknowledged live", d->event.event_id);
        if (seen[who][i])
            fail_msg("restored log holds %s twice", d->event.event_id);
        seen[who][i] = true;
        it_ev_check(d, pubs[who]->agency, i, pubs[who]->seqs[i]);
        civ_delivery_destroy(&d);
        expect++;
    }
    assert_int_equal(rc, CIV_OK);
    civ_replay_destroy(&rp);
    assert_int_equal(expect - 1, b->last_seq);
    assert_int_equal(b->entries, b->last_seq);
    for (int who = 0; who < 2; who++)
        for (int i = 0; i < b->acked_before[who]; i++)
            if (!seen[who][i])
                fail_msg("%s-%06d was acknowledged before the backup started but is not in it", pubs[who]->agency,
                         i);
    it_drop(f, &c);
}

/* The subscription cursor saved before the backups came along. */
static void s_check_cursor(it_fix_t *f, uint64_t want)
{
    civ_client_t *c = it_client(f, A, 0);
    civ_status_t *st = NULL;
    assert_int_equal(civ_status(c, &st), CIV_OK);
    bool found = false;
    for (size_t i = 0; i < st->n_subscriptions; i++) {
        if (strcmp(st->subscriptions[i].name, "main") == 0) {
            found = true;
            assert_int_equal(st->subscriptions[i].cursor, want);
        }
    }
    civ_status_destroy(&st);
    assert_true(found);
    it_drop(f, &c);
}

static void test_backup_under_load(void **state)
{
    it_fix_t *f = *state;
    it_start(f, s_flags);
    static s_pub_t pa, pb;
    memset(&pa, 0, sizeof pa);
    memset(&pb, 0, sizeof pb);
    s_pub_t *pubs[2] = {&pa, &pb};
    pa.agency = A;
    pb.agency = B;
    pa.c = it_client_opts(f, A, 10000, 256, 32);
    pb.c = it_client_opts(f, B, 10000, 256, 32);

    /* A durable subscription acknowledged up to the 200th event, closed:
     * its cursor is saved in the log before any backup starts. */
    while (!s_pub_done(&pa, CURSOR_EVENTS))
        s_pub_step(&pa, CURSOR_EVENTS);
    civ_client_t *sub = it_client(f, A, 0);
    const char *all[] = {"*"};
    assert_int_equal(civ_subscribe(sub, "main", all, 1, it_from_first(), 1024), CIV_OK);
    civ_delivery_t *got[CURSOR_EVENTS];
    it_receive(sub, "main", got, CURSOR_EVENTS, 30000, 0);
    uint64_t cursor = got[CURSOR_ACKED - 1]->seq;
    assert_int_equal(cursor, pa.seqs[CURSOR_ACKED - 1]);
    assert_int_equal(civ_ack(sub, "main", cursor), CIV_OK);
    it_free_all(got, CURSOR_EVENTS);
    assert_int_equal(civ_unsubscribe(sub, "main"), CIV_OK);
    it_drop(f, &sub);

    static s_backup_t backups[ROUNDS];
    int target = CURSOR_EVENTS;
    int64_t deadline = it_mono_ms() + 300000;
    for (int r = 0; r < ROUNDS; r++) {
        s_backup_t *b = &backups[r];
        snprintf(b->file, sizeof b->file, "%s/backup-%d.mdb", harness_dir(f->h), r);
        char log[600];
        snprintf(log, sizeof log, "%s/backup-%d.out", harness_dir(f->h), r);
        /* Keep the pipelines full, then start the copy mid-stream. */
        for (int k = 0; k < 200; k++) {
            s_pub_step(&pa, target + PER_ROUND);
            s_pub_step(&pb, target + PER_ROUND - CURSOR_EVENTS);
        }
        b->acked_before[0] = pa.acked;
        b->acked_before[1] = pb.acked;
        pid_t pid = s_backup_spawn(harness_data_dir(f->h), b->file, r != 1, log);
        int status = 0, acks_during = 0;
        bool exited = false;
        while (!exited || !s_pub_done(&pa, target + PER_ROUND) ||
               !s_pub_done(&pb, target + PER_ROUND - CURSOR_EVENTS)) {
            if (it_mono_ms() > deadline) {
                kill(pid, SIGKILL);
                waitpid(pid, &status, 0);
                fail_msg("round %d did not finish in time", r);
            }
            int before = pa.acked + pb.acked;
            s_pub_step(&pa, target + PER_ROUND);
            s_pub_step(&pb, target + PER_ROUND - CURSOR_EVENTS);
            if (!exited) {
                acks_during += pa.acked + pb.acked - before;
                pid_t w = waitpid(pid, &status, WNOHANG);
                assert_true(w == 0 || w == pid);
                exited = w == pid;
            }
        }
        target += PER_ROUND;
        const char *out = s_slurp(log);
        if (!WIFEXITED(status) || WEXITSTATUS(status) != 0)
            fail_msg("backup %d failed (status %d):\n%s", r, status, out);
        json_t *obj = s_json_line(out);
        b->last_seq = s_json_u64(obj, "last_seq");
        b->entries = s_json_u64(obj, "entries");
        b->cursors = s_json_u64(obj, "cursors");
        assert_int_equal(s_json_u64(obj, "first_seq"), 1);
        struct stat st;
        assert_int_equal(stat(b->file, &st), 0);
        assert_int_equal(s_json_u64(obj, "bytes"), (uint64_t)st.st_size);
        assert_int_equal(st.st_mode & 0777, 0600);
        json_decref(obj);
        assert_int_equal(b->cursors, 1);
        uint64_t acked_seq = 0;
        for (int who = 0; who < 2; who++)
            if (b->acked_before[who] > 0 && pubs[who]->seqs[b->acked_before[who] - 1] > acked_seq)
                acked_seq = pubs[who]->seqs[b->acked_before[who] - 1];
        assert_true(b->last_seq >= acked_seq);
        print_message("backup %d: last_seq %" PRIu64 " (acked before it started: up to seq %" PRIu64
                      "), %d acks while it ran\n",
                      r, b->last_seq, acked_seq, acks_during);
    }
    assert_int_equal(civ_publish_pending(pa.c), 0);
    assert_int_equal(civ_publish_pending(pb.c), 0);
    uint64_t live_last = it_last_seq(pa.c);
    assert_int_equal(live_last, (uint64_t)(pa.acked + pb.acked));
    it_drop(f, &pa.c);
    it_drop(f, &pb.c);
    assert_int_equal(harness_stop(f->h), 0);

    char live[600], out[4096];
    snprintf(live, sizeof live, "%s/data.live", harness_dir(f->h));
    assert_int_equal(rename(harness_data_dir(f->h), live), 0);
    for (int r = 0; r < ROUNDS; r++) {
        const s_backup_t *b = &backups[r];
        int rc = s_run(out, sizeof out, "'%s' restore --in '%s' --data '%s' --hub-key '%s'", s_cli(), b->file,
                       harness_data_dir(f->h), harness_hub_sign_pub(f->h));
        if (rc != 0)
            fail_msg("restore %d: exit %d:\n%s", r, rc, out);
        json_t *obj = s_json_line(out);
        assert_int_equal(s_json_u64(obj, "last_seq"), b->last_seq);
        assert_true(json_is_true(json_object_get(obj, "signatures_checked")));
        json_decref(obj);
        rc = s_run(out, sizeof out, "'%s' verify --data '%s' --hub-key '%s'", s_cli(), harness_data_dir(f->h),
                   harness_hub_sign_pub(f->h));
        if (rc != 0)
            fail_msg("verify of restore %d: exit %d:\n%s", r, rc, out);
        it_start(f, s_flags);
        s_check_restored(f, pubs, b);
        s_check_cursor(f, cursor);
        if (r == ROUNDS - 1) {
            /* The restored hub goes on from its last seq, and its rebuilt
             * de-duplication window knows the restored events. */
            civ_client_t *c = it_client(f, A, 0);
            it_ev_t e;
            it_ev_make(&e, A, 0);
            civ_ack_t ack;
            assert_int_equal(civ_publish(c, &e.ev, &ack), CIV_OK);
            assert_int_equal(ack.error, CIV_OK);
            assert_true(ack.duplicate);
            assert_int_equal(ack.seq, pa.seqs[0]);
            it_ev_make(&e, A, MAX_EV - 1);
            assert_int_equal(civ_publish(c, &e.ev, &ack), CIV_OK);
            assert_int_equal(ack.error, CIV_OK);
            assert_false(ack.duplicate);
            assert_int_equal(ack.seq, b->last_seq + 1);
            it_drop(f, &c);
        }
        assert_int_equal(harness_stop(f->h), 0);
        char cmd[700];
        snprintf(cmd, sizeof cmd, "rm -rf '%s'", harness_data_dir(f->h));
        assert_int_equal(harness_sh(cmd), 0);
    }
}

static void s_expect_fail(int want_rc, const char *want_text, const char *fmt, const char *a, const char *b,
                          const char *c)
{
    char out[4096];
    int rc = s_run(out, sizeof out, fmt, s_cli(), a, b, c);
    if (rc != want_rc || !strstr(out, want_text))
        fail_msg("exit %d (wanted %d), output (wanted '%s'):\n%s", rc, want_rc, want_text, out);
}

static void test_backup_refusals(void **state)
{
    it_fix_t *f = *state;
    char missing[600], empty[600], outf[600], other[700];
    snprintf(missing, sizeof missing, "%s/no-such-dir", harness_dir(f->h));
    snprintf(empty, sizeof empty, "%s/empty", harness_dir(f->h));
    snprintf(outf, sizeof outf, "%s/out.mdb", harness_dir(f->h));
    assert_int_equal(mkdir(empty, 0700), 0);

    s_expect_fail(4, "no-such-dir: No such file or directory", "'%s' backup --data '%s' --out '%s'%s", missing, outf,
                  "");
    assert_int_equal(access(outf, F_OK), -1);
    /* A directory without a log: refused, and no lock file left in it. */
    s_expect_fail(4, "no log in this directory", "'%s' backup --data '%s' --out '%s'%s", empty, outf, "");
    snprintf(other, sizeof other, "%s/lock.mdb", empty);
    assert_int_equal(access(other, F_OK), -1);
    s_expect_fail(2, "--data DIR and --out FILE are required", "'%s' backup --data '%s'%s%s", empty, "", "");

    it_start(f, s_small_flags);
    civ_client_t *c = it_client(f, A, 0);
    it_publish_many(c, 0, 20, 1, NULL);
    char out[4096];
    int rc = s_run(out, sizeof out, "'%s' backup --data '%s' --out '%s'", s_cli(), harness_data_dir(f->h), outf);
    if (rc != 0)
        fail_msg("backup: exit %d:\n%s", rc, out);
    s_expect_fail(4, "exists; not overwritten", "'%s' backup --data '%s' --out '%s'%s", harness_data_dir(f->h), outf,
                  "");
    it_publish_many(c, 20, 5, 1, NULL);
    rc = s_run(out, sizeof out, "'%s' backup --data '%s' --out '%s' --force", s_cli(), harness_data_dir(f->h), outf);
    if (rc != 0 || !strstr(out, "\"last_seq\":25") || !strstr(out, "\"last_checkpoint\":25"))
        fail_msg("backup --force: exit %d:\n%s", rc, out);

    /* restore: never into a live hub's directory, nor a non-empty one, and
     * never from a live data.mdb read as a file. */
    s_expect_fail(4, "has the log in this directory open", "'%s' restore --in '%s' --data '%s'%s", outf,
                  harness_data_dir(f->h), "");
    snprintf(other, sizeof other, "%s/data.mdb", harness_data_dir(f->h));
    s_expect_fail(4, "has this log open", "'%s' restore --in '%s' --data '%s'%s", other, empty, "");
    it_drop(f, &c);
    assert_int_equal(harness_stop(f->h), 0);
    s_expect_fail(4, "is not empty", "'%s' restore --in '%s' --data '%s'%s", outf, harness_data_dir(f->h), "");
    s_expect_fail(4, "not an LMDB file", "'%s' restore --in '%s' --data '%s'%s", harness_hub_sign_pub(f->h), empty,
                  "");
    assert_int_equal(access(other, F_OK), 0);

    /* A copy signed by another hub's key does not verify with this one. */
    char keys[600];
    snprintf(keys, sizeof keys, "%s/otherhub", harness_dir(f->h));
    snprintf(out, sizeof out, "'%s' keygen --hub --dir '%s' >/dev/null", s_cli(), keys);
    assert_int_equal(harness_sh(out), 0);
    snprintf(other, sizeof other, "%s/restored", harness_dir(f->h));
    strcat(keys, "/hub-sign.pub");
    s_expect_fail(1, "which is not a hub signing key", "'%s' restore --in '%s' --data '%s' --hub-key '%s'", outf, other,
                  keys);
    assert_int_equal(access(other, F_OK), -1);

    /* One byte of one stored event changed in the copy: refused, nothing
     * left behind. */
    MDB_env *env;
    MDB_txn *txn;
    MDB_dbi log;
    assert_int_equal(mdb_env_create(&env), 0);
    assert_int_equal(mdb_env_set_maxdbs(env, 8), 0);
    assert_int_equal(mdb_env_open(env, outf, MDB_NOSUBDIR | MDB_NOLOCK, 0600), 0);
    assert_int_equal(mdb_txn_begin(env, NULL, 0, &txn), 0);
    assert_int_equal(mdb_dbi_open(txn, "log", MDB_INTEGERKEY, &log), 0);
    uint64_t seq = 9;
    MDB_val key = {sizeof seq, &seq}, val;
    assert_int_equal(mdb_get(txn, log, &key, &val), 0);
    uint8_t *v = malloc(val.mv_size);
    assert_non_null(v);
    memcpy(v, val.mv_data, val.mv_size);
    v[val.mv_size - 1] ^= 0x01;
    val.mv_data = v;
    assert_int_equal(mdb_put(txn, log, &key, &val, 0), 0);
    free(v);
    assert_int_equal(mdb_txn_commit(txn), 0);
    mdb_env_close(env);
    s_expect_fail(1, "does not verify at seq 9", "'%s' restore --in '%s' --data '%s'%s", outf, other, "");
    assert_int_equal(access(other, F_OK), -1);
    s_expect_fail(1, "bad: seq 9", "'%s' verify --data '%s' --hub-key '%s'", outf, harness_hub_sign_pub(f->h), "");
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_setup_teardown(test_backup_under_load, s_setup, s_teardown),
        cmocka_unit_test_setup_teardown(test_backup_refusals, s_setup, s_teardown),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
