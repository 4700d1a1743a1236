/* test_verify - `civibus verify` against a real hub's log, checkpoints kept
 * outside the hub (`civibus checkpoint fetch`, civ_client_checkpoint,
 * `verify --witness`, also of a backup file and of a log retention cut at the
 * front), and the rotation of the hub's signing key.
 *
 * The hub runs with a signing key (the harness always gives it one) and a
 * checkpoint every 5 events; events are published one per batch, so
 * checkpoints land at 5, 10, ..., 40, the last one written at the clean
 * stop. Each tampering is done on a copy of the stopped hub's data
 * directory, directly through the LMDB API, as an attacker with file access
 * (and, for the rewrite, the hub's signing key) would; the built CLI
 * ($CIVIBUS_CLI) must name the first bad seq.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include <lmdb.h>
#include <sys/wait.h>

#include "itest.h"
#include "logfile.h"

#define A "tax-office"
#define N 40

static const char *const s_agencies[] = {A, NULL};
static const char *const s_flags[] = {"--no-sync", "--checkpoint-events", "5", NULL};

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

/* Run the CLI with the arguments of fmt; its exit code, and stdout+stderr
 * in out. */
__attribute__((format(printf, 3, 4))) static int s_cli(char *out, size_t out_len, const char *fmt, ...)
{
    const char *cli = getenv("CIVIBUS_CLI") ? getenv("CIVIBUS_CLI") : "build/civibus";
    char args[3000], cmd[3500];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(args, sizeof args, fmt, ap);
    va_end(ap);
    snprintf(cmd, sizeof cmd, "'%s' %s 2>&1", cli, args);
    FILE *p = popen(cmd, "r");
    assert_non_null(p);
    size_t n = fread(out, 1, out_len - 1, p);
    out[n] = '\0';
    int status = pclose(p);
    assert_true(WIFEXITED(status));
    return WEXITSTATUS(status);
}

/* Run civibus verify on dir; its exit code, and stdout+stderr in out. */
static int s_verify(it_fix_t *f, const char *dir, char *out, size_t out_len)
{
    return s_cli(out, out_len, "verify --data '%s' --hub-key '%s'", dir, harness_hub_sign_pub(f->h));
}

static void s_expect_ok(it_fix_t *f, const char *dir, const char *want)
{
    char out[2048];
    int rc = s_verify(f, dir, out, sizeof out);
    if (rc != 0 || !strstr(out, want))
        fail_msg("verify %s: exit %d, wanted '%s', got:\n%s", dir, rc, want, out);
}

static void s_expect_bad(it_fix_t *f, const char *dir, uint64_t seq, const char *what)
{
    char out[2048], want[64];
    int rc = s_verify(f, dir, out, sizeof out);
    snprintf(want, sizeof want, "bad: seq %" PRIu64 ":", seq);
    if (rc != 1 || !strstr(out, want) || !strstr(out, what))
        fail_msg("verify %s: exit %d, wanted '%s ... %s', got:\n%s", dir, rc, want, what, out);
}

/* A fresh copy of the hub's data directory, named after the case. */
static void s_copy(it_fix_t *f, const char *name, char *dir, size_t len)
{
    snprintf(dir, len, "%s/%s", harness_dir(f->h), name);
    char cmd[1200];
    snprintf(cmd, sizeof cmd, "cp -r '%s' '%s'", harness_data_dir(f->h), dir);
    assert_int_equal(harness_sh(cmd), 0);
}

/* Raw LMDB access to a copy, as an attacker would have. */
typedef struct {
    MDB_env *env;
    MDB_txn *txn;
    MDB_dbi log, cps;
} s_raw_t;

static void s_raw_open(s_raw_t *r, const char *dir)
{
    assert_int_equal(mdb_env_create(&r->env), 0);
    assert_int_equal(mdb_env_set_maxdbs(r->env, 8), 0);
    assert_int_equal(mdb_env_open(r->env, dir, 0, 0600), 0);
    assert_int_equal(mdb_txn_begin(r->env, NULL, 0, &r->txn), 0);
    assert_int_equal(mdb_dbi_open(r->txn, "log", MDB_INTEGERKEY, &r->log), 0);
    assert_int_equal(mdb_dbi_open(r->txn, "checkpoints", MDB_INTEGERKEY, &r->cps), 0);
}

static void s_raw_close(s_raw_t *r)
{
    assert_int_equal(mdb_txn_commit(r->txn), 0);
    mdb_env_close(r->env);
}

/* A malloc'd copy of the value at seq in dbi (caller frees). */
static uint8_t *s_raw_get(s_raw_t *r, MDB_dbi dbi, uint64_t seq, size_t *len)
{
    MDB_val key = {sizeof seq, &seq}, val;
    assert_int_equal(mdb_get(r->txn, dbi, &key, &val), 0);
    uint8_t *copy = malloc(val.mv_size);
    assert_non_null(copy);
    memcpy(copy, val.mv_data, val.mv_size);
    *len = val.mv_size;
    return copy;
}

static void s_raw_put(s_raw_t *r, MDB_dbi dbi, uint64_t seq, const uint8_t *v, size_t len)
{
    MDB_val key = {sizeof seq, &seq}, val = {len, (void *)v};
    assert_int_equal(mdb_put(r->txn, dbi, &key, &val, 0), 0);
}

static void s_raw_del(s_raw_t *r, MDB_dbi dbi, uint64_t seq)
{
    MDB_val key = {sizeof seq, &seq};
    assert_int_equal(mdb_del(r->txn, dbi, &key, NULL), 0);
}

/* Change a byte of entry `at` of the log copy in dir and recompute every
 * chain hash from there to last; with key (the hub's secret signing key,
 * as its holder would), also sign every checkpoint from `at` on again over
 * the new chain. */
static void s_rewrite(const char *dir, uint64_t at, uint64_t last, const crypto_key_t *key)
{
    s_raw_t r;
    s_raw_open(&r, dir);
    crypto_sha256_t *h = crypto_sha256_new();
    assert_non_null(h);
    uint8_t chain[LOGFILE_CHAIN_LEN];
    size_t len;
    uint8_t *v = s_raw_get(&r, r.log, at - 1, &len);
    memcpy(chain, v + LOGFILE_CHAIN_OFF, sizeof chain);
    free(v);
    for (uint64_t s = at; s <= last; s++) {
        v = s_raw_get(&r, r.log, s, &len);
        if (s == at)
            v[len - 1] ^= 0x01;
        assert_int_equal(logfile_chain(h, chain, s, v, len, chain), CRYPTO_OK);
        memcpy(v + LOGFILE_CHAIN_OFF, chain, sizeof chain);
        s_raw_put(&r, r.log, s, v, len);
        free(v);
        MDB_val k = {sizeof s, &s}, cv;
        if (key && mdb_get(r.txn, r.cps, &k, &cv) == 0) {
            logfile_checkpoint_t cp;
            uint8_t enc[LOGFILE_CHECKPOINT_LEN];
            assert_int_equal(logfile_checkpoint_decode(cv.mv_data, cv.mv_size, &cp), LOGFILE_OK);
            memcpy(cp.chain, chain, sizeof chain);
            assert_int_equal(logfile_checkpoint_sign(&cp, key), CRYPTO_OK);
            logfile_checkpoint_encode(&cp, enc);
            s_raw_put(&r, r.cps, s, enc, sizeof enc);
        }
    }
    crypto_sha256_destroy(&h);
    s_raw_close(&r);
}

static void test_verify_and_tamper(void **state)
{
    it_fix_t *f = *state;
    it_start(f, s_flags);
    civ_client_t *c = it_client(f, A, 0);
    it_publish_many(c, 0, N / 2, 1, NULL);
    /* read-only while the hub runs, and the hub goes on appending after */
    s_expect_ok(f, harness_data_dir(f->h), "ok: 20 entries, 4 checkpoints, last seq 20, last checkpoint 20");
    it_publish_many(c, N / 2, N / 2, 1, NULL);
    s_expect_ok(f, harness_data_dir(f->h), "ok: 40 entries");
    /* Every delivered event carries its entry's chain hash. */
    static uint8_t delivered[N + 1][LOGFILE_CHAIN_LEN];
    civ_error_t err;
    civ_replay_t *rp = civ_replay_open(c, it_from_first(), 0, &err);
    assert_non_null(rp);
    civ_delivery_t *d = NULL;
    uint64_t got = 0;
    while (civ_replay_next(rp, &d, 5000) == CIV_OK && d) {
        assert_true(d->has_chain);
        assert_true(d->seq >= 1 && d->seq <= N);
        memcpy(delivered[d->seq], d->chain, LOGFILE_CHAIN_LEN);
        got++;
        civ_delivery_destroy(&d);
    }
    civ_replay_destroy(&rp);
    assert_int_equal(got, N);
    it_drop(f, &c);
    assert_int_equal(harness_stop(f->h), 0);
    s_expect_ok(f, harness_data_dir(f->h), "ok: 40 entries, 8 checkpoints, last seq 40, last checkpoint 40");

    char dir[600];
    s_raw_t r;
    s_copy(f, "delivered", dir, sizeof dir);
    s_raw_open(&r, dir);
    for (uint64_t s = 1; s <= N; s++) {
        size_t vlen;
        uint8_t *stored = s_raw_get(&r, r.log, s, &vlen);
        assert_memory_equal(stored + LOGFILE_CHAIN_OFF, delivered[s], LOGFILE_CHAIN_LEN);
        free(stored);
    }
    s_raw_close(&r);
    size_t len, len2;

    /* one byte of one stored event */
    s_copy(f, "flip", dir, sizeof dir);
    s_raw_open(&r, dir);
    uint8_t *v = s_raw_get(&r, r.log, 17, &len);
    v[len - 1] ^= 0x01;
    s_raw_put(&r, r.log, 17, v, len);
    free(v);
    s_raw_close(&r);
    s_expect_bad(f, dir, 17, "chain hash differs");

    /* an entry deleted */
    s_copy(f, "delete", dir, sizeof dir);
    s_raw_open(&r, dir);
    s_raw_del(&r, r.log, 23);
    s_raw_close(&r);
    s_expect_bad(f, dir, 23, "missing");

    /* two entries swapped */
    s_copy(f, "swap", dir, sizeof dir);
    s_raw_open(&r, dir);
    v = s_raw_get(&r, r.log, 12, &len);
    uint8_t *w = s_raw_get(&r, r.log, 30, &len2);
    s_raw_put(&r, r.log, 12, w, len2);
    s_raw_put(&r, r.log, 30, v, len);
    free(v);
    free(w);
    s_raw_close(&r);
    s_expect_bad(f, dir, 12, "chain hash differs");

    /* a checkpoint's signature altered */
    s_copy(f, "sig", dir, sizeof dir);
    s_raw_open(&r, dir);
    v = s_raw_get(&r, r.cps, 15, &len);
    assert_int_equal(len, LOGFILE_CHECKPOINT_LEN);
    v[100] ^= 0x40;
    s_raw_put(&r, r.cps, 15, v, len);
    free(v);
    s_raw_close(&r);
    s_expect_bad(f, dir, 15, "signature does not verify");

    /* the tail cut off below the last checkpoint */
    s_copy(f, "truncate", dir, sizeof dir);
    s_raw_open(&r, dir);
    for (uint64_t s = 38; s <= N; s++)
        s_raw_del(&r, r.log, s);
    s_raw_close(&r);
    s_expect_bad(f, dir, 38, "truncated");

    /* an entry altered and every later chain hash recomputed: consistent, but
     * the next signed checkpoint no longer matches */
    s_copy(f, "rechain", dir, sizeof dir);
    s_rewrite(dir, 17, N, NULL);
    s_expect_bad(f, dir, 20, "checkpoint's chain hash differs");

    /* usage and file errors have their own exit codes */
    char out[2048], cmd[1200];
    const char *cli = getenv("CIVIBUS_CLI") ? getenv("CIVIBUS_CLI") : "build/civibus";
    snprintf(cmd, sizeof cmd, "'%s' verify --data '%s' >/dev/null 2>&1", cli, harness_data_dir(f->h));
    assert_int_equal(harness_sh(cmd), 2);
    snprintf(cmd, sizeof cmd, "'%s' verify --data '%s' --hub-key '%s' >/dev/null 2>&1", cli,
             harness_data_dir(f->h), harness_hub_pub(f->h));
    assert_int_equal(harness_sh(cmd), 4);
    snprintf(dir, sizeof dir, "%s/nothing-here", harness_dir(f->h));
    assert_int_equal(s_verify(f, dir, out, sizeof out), 4);
}

/* Lines of a file (0 when it does not exist). */
static int s_lines(const char *path)
{
    FILE *fp = fopen(path, "r");
    int n = 0, c;
    while (fp && (c = fgetc(fp)) != EOF)
        n += c == '\n';
    if (fp)
        fclose(fp);
    return n;
}

/* `civibus checkpoint fetch` as agency A of the running hub, with args. */
static int s_fetch(it_fix_t *f, char *out, size_t len, const char *args)
{
    return s_cli(out, len, "checkpoint fetch --hub '%s' --hub-key '%s' --key '%s' %s", harness_endpoint(f->h),
                 harness_hub_pub(f->h), harness_key(f->h, A), args);
}

static void s_expect(int rc, int want, const char *out, const char *needle, const char *what)
{
    if (rc != want || (needle && !strstr(out, needle)))
        fail_msg("%s: exit %d (wanted %d), wanted '%s', got:\n%s", what, rc, want, needle ? needle : "", out);
}

/* Checkpoints fetched while the hub runs pin the log: cutting it back or
 * rewriting it (even with the hub's signing key) no longer verifies
 * against them, though it still verifies alone. */
static void test_witness(void **state)
{
    it_fix_t *f = *state;
    it_start(f, s_flags);
    civ_client_t *c = it_client(f, A, 0);
    civ_checkpoint_t cp;
    assert_int_equal(civ_client_checkpoint(c, &cp), CIV_E_UNAVAILABLE);
    assert_non_null(strstr(civ_client_error(c), "no checkpoint yet"));
    it_publish_many(c, 0, 10, 1, NULL);
    assert_int_equal(civ_client_checkpoint(c, &cp), CIV_OK);
    assert_int_equal(cp.seq, 10);
    assert_int_equal(cp.last_seq, 10);

    /* The SDK checks it against the hub's public key; the chain hash is the
     * one delivered with entry 10. */
    civ_error_t err;
    civ_hub_keys_t *keys = civ_hub_keys_new(harness_hub_sign_pub(f->h), &err);
    assert_non_null(keys);
    char why[256];
    assert_int_equal(civ_checkpoint_verify(keys, &cp, why, sizeof why), CIV_OK);
    civ_checkpoint_t bad = cp;
    bad.chain[5] ^= 1;
    assert_int_equal(civ_checkpoint_verify(keys, &bad, why, sizeof why), CIV_E_BAD_SIGNATURE);
    bad = cp;
    bad.key_id[0] ^= 1;
    assert_int_equal(civ_checkpoint_verify(keys, &bad, why, sizeof why), CIV_E_UNKNOWN_KEY);
    civ_hub_keys_destroy(&keys);
    assert_null(keys);
    civ_replay_t *rp = civ_replay_open(c, it_from_seq(10), 1, &err);
    assert_non_null(rp);
    civ_delivery_t *d = NULL;
    assert_int_equal(civ_replay_next(rp, &d, 5000), CIV_OK);
    assert_non_null(d);
    assert_int_equal(d->seq, 10);
    assert_memory_equal(d->chain, cp.chain, sizeof cp.chain);
    civ_delivery_destroy(&d);
    civ_replay_destroy(&rp);

    /* fetch: verified, appended once, then only when there is a new one */
    char w[600], args[1400], out[8192];
    snprintf(w, sizeof w, "%s/witness", harness_dir(f->h));
    snprintf(args, sizeof args, "--out '%s' --hub-sign-key '%s'", w, harness_hub_sign_pub(f->h));
    s_expect(s_fetch(f, out, sizeof out, args), 0, out, "event=checkpoint seq=10 ", "fetch");
    assert_int_equal(s_lines(w), 1);
    s_expect(s_fetch(f, out, sizeof out, args), 0, out, "witnessed already", "fetch again");
    assert_int_equal(s_lines(w), 1);
    it_publish_many(c, 10, 10, 1, NULL);
    s_expect(s_fetch(f, out, sizeof out, args), 0, out, "event=checkpoint seq=20 ", "fetch after 20");
    assert_int_equal(s_lines(w), 2);
    it_publish_many(c, 20, 5, 1, NULL);
    it_drop(f, &c);
    assert_int_equal(harness_stop(f->h), 0);

    s_expect(s_cli(out, sizeof out, "verify --data '%s' --hub-key '%s' --witness '%s'", harness_data_dir(f->h),
                   harness_hub_sign_pub(f->h), w),
             0, out, "ok: 25 entries, 5 checkpoints, last seq 25, last checkpoint 25, 2 witnessed, last witnessed 20",
             "verify --witness");
    /* The hub's own log holds every checkpoint it signed, as witness lines. */
    char hub_log[600];
    snprintf(hub_log, sizeof hub_log, "%s/hub.log", harness_dir(f->h));
    s_expect(s_cli(out, sizeof out, "verify --data '%s' --hub-key '%s' --witness '%s'", harness_data_dir(f->h),
                   harness_hub_sign_pub(f->h), hub_log),
             0, out, "5 witnessed, last witnessed 25", "verify --witness hub.log");

    /* Cut back to checkpoint 15, the later checkpoints deleted too: alone
     * it verifies; the witness file names the truncation. */
    char cut[600];
    s_copy(f, "cut", cut, sizeof cut);
    s_raw_t r;
    s_raw_open(&r, cut);
    for (uint64_t s = 16; s <= 25; s++)
        s_raw_del(&r, r.log, s);
    s_raw_del(&r, r.cps, 20);
    s_raw_del(&r, r.cps, 25);
    s_raw_close(&r);
    s_expect_ok(f, cut, "ok: 15 entries, 3 checkpoints, last seq 15, last checkpoint 15");
    s_expect(s_cli(out, sizeof out, "verify --data '%s' --hub-key '%s' --witness '%s'", cut,
                   harness_hub_sign_pub(f->h), w),
             1, out, "bad: seq 16: the log ends at 15 but a witnessed checkpoint (line 2) covers seq 20 (truncated)",
             "verify --witness of a cut log");

    /* Entry 7 rewritten by the holder of the signing key, every chain hash
     * and checkpoint after it made again: alone it verifies. */
    char rewritten[600], key_path[600];
    s_copy(f, "rewritten", rewritten, sizeof rewritten);
    snprintf(key_path, sizeof key_path, "%s", harness_hub_sign_pub(f->h));
    strcpy(key_path + strlen(key_path) - 4, ".key");
    crypto_key_t *key = NULL;
    assert_int_equal(crypto_key_read_secret(key_path, &key, why, sizeof why), CRYPTO_OK);
    s_rewrite(rewritten, 7, 25, key);
    crypto_key_destroy(&key);
    s_expect_ok(f, rewritten, "ok: 25 entries, 5 checkpoints");
    s_expect(s_cli(out, sizeof out, "verify --data '%s' --hub-key '%s' --witness '%s'", rewritten,
                   harness_hub_sign_pub(f->h), w),
             1, out, "bad: seq 10: the witnessed checkpoint (line 1) differs", "verify --witness of a rewritten log");

    /* A hub restarted on the cut log: fetch sees its checkpoint go back. */
    char cmd[1400];
    snprintf(cmd, sizeof cmd, "rm -rf '%s' && mv '%s' '%s'", harness_data_dir(f->h), cut, harness_data_dir(f->h));
    assert_int_equal(harness_sh(cmd), 0);
    it_start(f, s_flags);
    s_expect(s_fetch(f, out, sizeof out, args), 1, out, "cut back or replaced", "fetch from a cut log");
    assert_int_equal(s_lines(w), 3); /* kept, as evidence */
}

/* The hub's first_seq as /metrics shows it (-1 when it cannot be read). */
static long long s_first_seq(it_fix_t *f)
{
    long status = 0;
    char *body = NULL;
    long long v = -1;
    if (harness_http_get(f->h, "/metrics", &status, &body, NULL) == 0 && status == 200) {
        const char *p = strstr(body, "\ncivibus_log_first_seq ");
        if (p)
            v = strtoll(p + strlen("\ncivibus_log_first_seq "), NULL, 10);
    }
    free(body);
    return v;
}

/* Witnessed checkpoints with a backup file, and with a log whose front
 * retention deleted: one of a deleted entry is reported and not held
 * against the log; a later one is checked. */
static void test_witness_backup_retention(void **state)
{
    it_fix_t *f = *state;
    it_start(f, s_flags);
    civ_client_t *c = it_client(f, A, 0);
    it_publish_many(c, 0, 10, 1, NULL);
    char w[600], args[1400], out[8192], copy[600];
    snprintf(w, sizeof w, "%s/witness", harness_dir(f->h));
    snprintf(args, sizeof args, "--out '%s' --hub-sign-key '%s'", w, harness_hub_sign_pub(f->h));
    s_expect(s_fetch(f, out, sizeof out, args), 0, out, "event=checkpoint seq=10 ", "fetch");
    it_drop(f, &c);

    /* a hot backup file verifies against the witness like the directory */
    snprintf(copy, sizeof copy, "%s/backup.mdb", harness_dir(f->h));
    s_expect(s_cli(out, sizeof out, "backup --data '%s' --out '%s'", harness_data_dir(f->h), copy), 0, out, NULL,
             "backup");
    s_expect(s_cli(out, sizeof out, "verify --data '%s' --hub-key '%s' --witness '%s'", copy,
                   harness_hub_sign_pub(f->h), w),
             0, out, "last seq 10, last checkpoint 10, 1 witnessed, last witnessed 10", "verify a backup file");
    assert_int_equal(harness_stop(f->h), 0);

    /* retention deletes all a checkpoint covers but the newest entry */
    const char *retain[] = {"--no-sync", "--checkpoint-events", "5", "--retention-max-bytes", "1", NULL};
    it_start(f, retain);
    c = it_client(f, A, 0);
    it_publish_many(c, 10, 5, 1, NULL);
    s_expect(s_fetch(f, out, sizeof out, args), 0, out, "event=checkpoint seq=15 ", "fetch after 15");
    it_drop(f, &c);
    long long first = -1;
    for (int64_t deadline = it_mono_ms() + 15000; first != 15 && it_mono_ms() < deadline; it_sleep_ms(200))
        first = s_first_seq(f);
    assert_int_equal(first, 15);
    assert_int_equal(harness_stop(f->h), 0);
    s_expect(s_cli(out, sizeof out, "verify --data '%s' --hub-key '%s' --witness '%s'", harness_data_dir(f->h),
                   harness_hub_sign_pub(f->h), w),
             0, out, "last checkpoint 15, first seq 15, 1 witnessed, last witnessed 15", "verify a retained log");
    s_expect(0, 0, out, "1 witnessed checkpoints are before the retained log (seq 14 and earlier", "its note");
    /* the backup still holds entry 10: both witnessed checkpoints count
     * against it, and the one at 15 is beyond its end */
    s_expect(s_cli(out, sizeof out, "verify --data '%s' --hub-key '%s' --witness '%s'", copy,
                   harness_hub_sign_pub(f->h), w),
             1, out, "bad: seq 11: the log ends at 10 but a witnessed checkpoint (line 2) covers seq 15",
             "an older backup against a newer witness");
}

/* The hub's signing key rotates: checkpoints of the old and the new key all
 * verify against the registry's list; an unknown key, or one revoked before
 * a checkpoint was made, is reported. */
static void test_rotation(void **state)
{
    it_fix_t *f = *state;
    char reg[600], reg_key[700], keys2[600], new_key[700], new_pub[700], out[8192], cmd[2000];
    snprintf(reg, sizeof reg, "%s", harness_registry(f->h));
    snprintf(reg_key, sizeof reg_key, "%s/hub-sign.pub", reg);
    snprintf(keys2, sizeof keys2, "%s/keys2", harness_dir(f->h));
    snprintf(new_key, sizeof new_key, "%s/hub-sign.key", keys2);
    snprintf(new_pub, sizeof new_pub, "%s/hub-sign.pub", keys2);
    /* the first key published as keygen --hub --registry does: a PEM copy */
    snprintf(cmd, sizeof cmd, "cp '%s' '%s'", harness_hub_sign_pub(f->h), reg_key);
    assert_int_equal(harness_sh(cmd), 0);
    it_start(f, s_flags);
    civ_client_t *c = it_client(f, A, 0);
    it_publish_many(c, 0, 6, 1, NULL); /* checkpoint 5, and 6 at the stop */
    it_drop(f, &c);
    assert_int_equal(harness_stop(f->h), 0);
    assert_true(it_log_contains(f, "event=signing_key_published", 0));

    s_expect(s_cli(out, sizeof out, "keygen --hub --dir '%s'", keys2), 0, out, NULL, "keygen");
    s_expect(s_cli(out, sizeof out, "registry rotate --hub --registry '%s' --sign-key-file '%s' --overlap-days 1",
                   reg, new_pub),
             0, out, "stays valid until", "registry rotate --hub");
    s_expect(s_cli(out, sizeof out, "registry list --registry '%s'", reg), 0, out, "(hub)", "registry list");
    crypto_key_t *k2 = NULL;
    char why[256], k2_id[CRYPTO_KEYID_HEX];
    assert_int_equal(crypto_key_read_public(new_pub, &k2, why, sizeof why), CRYPTO_OK);
    crypto_key_id_hex(k2, k2_id);
    crypto_key_destroy(&k2);

    const char *const with_k2[] = {"--no-sync", "--checkpoint-events", "5", "--signing-key", new_key, NULL};
    it_start(f, with_k2);
    c = it_client(f, A, 0);
    it_publish_many(c, 6, 6, 1, NULL); /* seqs 7..12: checkpoint 11, and 12 at the stop */
    civ_checkpoint_t cp;
    assert_int_equal(civ_client_checkpoint(c, &cp), CIV_OK);
    assert_int_equal(cp.seq, 11);
    civ_error_t err;
    civ_hub_keys_t *listed = civ_hub_keys_new(reg_key, &err), *old_only = civ_hub_keys_new(harness_hub_sign_pub(f->h), &err);
    assert_non_null(listed);
    assert_non_null(old_only);
    assert_int_equal(civ_checkpoint_verify(listed, &cp, why, sizeof why), CIV_OK);
    assert_int_equal(civ_checkpoint_verify(old_only, &cp, why, sizeof why), CIV_E_UNKNOWN_KEY);
    it_drop(f, &c);
    assert_int_equal(harness_stop(f->h), 0);
    int64_t stopped = (int64_t)time(NULL);

    s_expect(s_cli(out, sizeof out, "verify --data '%s' --registry '%s'", harness_data_dir(f->h), reg), 0, out,
             "ok: 12 entries, 4 checkpoints, last seq 12, last checkpoint 12", "verify --registry after rotation");
    char want[200];
    snprintf(want, sizeof want, "bad: seq 11: checkpoint signed by key id %s, which is not a hub signing key", k2_id);
    s_expect(s_verify(f, harness_data_dir(f->h), out, sizeof out), 1, out, want, "verify with the old key only");

    /* Revoked from the next second on (keys' times are whole seconds):
     * what it signed before still verifies, what it signs after does not. */
    while ((int64_t)time(NULL) <= stopped)
        it_sleep_ms(50);
    char prefix[9];
    snprintf(prefix, sizeof prefix, "%.8s", k2_id);
    s_expect(s_cli(out, sizeof out, "registry revoke --hub --registry '%s' --sign-key %s --reason test", reg, prefix),
             0, out, "revoked hub signing key", "registry revoke --hub");
    s_expect(s_cli(out, sizeof out, "verify --data '%s' --registry '%s'", harness_data_dir(f->h), reg), 0, out,
             "ok: 12 entries, 4 checkpoints", "verify --registry after the revocation");
    it_start(f, with_k2);
    assert_true(it_log_contains(f, "event=signing_key_revoked", 5000));
    c = it_client(f, A, 0);
    it_publish_many(c, 12, 5, 1, NULL); /* checkpoint 17 */
    assert_int_equal(civ_client_checkpoint(c, &cp), CIV_OK);
    assert_int_equal(cp.seq, 17);
    civ_hub_keys_destroy(&listed);
    listed = civ_hub_keys_new(reg_key, &err);
    assert_non_null(listed);
    assert_int_equal(civ_checkpoint_verify(listed, &cp, why, sizeof why), CIV_E_UNKNOWN_KEY);
    assert_non_null(strstr(why, "revoked at"));
    it_drop(f, &c);
    assert_int_equal(harness_stop(f->h), 0);
    snprintf(want, sizeof want, "bad: seq 17: checkpoint signed by key id %s, revoked at", k2_id);
    s_expect(s_cli(out, sizeof out, "verify --data '%s' --registry '%s'", harness_data_dir(f->h), reg), 1, out, want,
             "verify --registry of a checkpoint after the revocation");
    civ_hub_keys_destroy(&listed);
    civ_hub_keys_destroy(&old_only);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_setup_teardown(test_verify_and_tamper, s_setup, s_teardown),
        cmocka_unit_test_setup_teardown(test_witness, s_setup, s_teardown),
        cmocka_unit_test_setup_teardown(test_witness_backup_retention, s_setup, s_teardown),
        cmocka_unit_test_setup_teardown(test_rotation, s_setup, s_teardown),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
