/* test_verify - `civibus verify` against a real hub's log.
 *
 * The hub runs with a signing key (the harness always gives it one) and a
 * checkpoint every 5 events; events are published one per batch, so
 * checkpoints land at 5, 10, ..., 40, the last one written at the clean
 * stop. Each tampering is done on a copy of the stopped hub's data
 * directory, directly through the LMDB API, as an attacker with file access
 * would; the built CLI ($CIVIBUS_CLI) must name the first bad seq.
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

/* Run civibus verify on dir; its exit code, and stdout+stderr in out. */
static int s_verify(it_fix_t *f, const char *dir, char *out, size_t out_len)
{
    const char *cli = getenv("CIVIBUS_CLI") ? getenv("CIVIBUS_CLI") : "build/civibus";
    char cmd[1024];
    snprintf(cmd, sizeof cmd, "'%s' verify --data '%s' --hub-key '%s' 2>&1", cli, dir, harness_hub_sign_pub(f->h));
    FILE *p = popen(cmd, "r");
    assert_non_null(p);
    size_t n = fread(out, 1, out_len - 1, p);
    out[n] = '\0';
    int status = pclose(p);
    assert_true(WIFEXITED(status));
    return WEXITSTATUS(status);
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

static void s_raw_del(s_raw_t *r, uint64_t seq)
{
    MDB_val key = {sizeof seq, &seq};
    assert_int_equal(mdb_del(r->txn, r->log, &key, NULL), 0);
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
    s_raw_del(&r, 23);
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
        s_raw_del(&r, s);
    s_raw_close(&r);
    s_expect_bad(f, dir, 38, "truncated");

    /* an entry altered and every later chain hash recomputed: consistent, but
     * the next signed checkpoint no longer matches */
    s_copy(f, "rechain", dir, sizeof dir);
    s_raw_open(&r, dir);
    crypto_sha256_t *h = crypto_sha256_new();
    assert_non_null(h);
    uint8_t chain[LOGFILE_CHAIN_LEN];
    v = s_raw_get(&r, r.log, 16, &len);
    memcpy(chain, v + LOGFILE_CHAIN_OFF, sizeof chain);
    free(v);
    for (uint64_t s = 17; s <= N; s++) {
        v = s_raw_get(&r, r.log, s, &len);
        if (s == 17)
            v[len - 1] ^= 0x01;
        assert_int_equal(logfile_chain(h, chain, s, v, len, chain), CRYPTO_OK);
        memcpy(v + LOGFILE_CHAIN_OFF, chain, sizeof chain);
        s_raw_put(&r, r.log, s, v, len);
        free(v);
    }
    crypto_sha256_destroy(&h);
    s_raw_close(&r);
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

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_setup_teardown(test_verify_and_tamper, s_setup, s_teardown),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
