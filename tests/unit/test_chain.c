/* test_chain - the log's hash chain and signed checkpoints: hub/journal.c
 * writing them, hub/chain.c deciding when, proto/logfile.c verifying them
 * against the hub's keys with their validity, and against witnessed
 * checkpoints (witness lines).
 *
 * Each test gets a fresh mkdtemp directory. The journal is always closed
 * before logfile_open reads the same files: LMDB forbids one environment
 * being open twice in one process (the verifier runs as its own process in
 * real life, see tests/integration/test_verify.c).
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include <ftw.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "chain.h"
#include "crypto.h"
#include "journal.h"
#include "log.h"
#include "logfile.h"

typedef struct {
    char dir[64];
    char key_path[128];
    journal_opts_t opts;
    crypto_key_t *key;
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
    snprintf(f->dir, sizeof f->dir, "/tmp/civibus-chain-XXXXXX");
    assert_non_null(mkdtemp(f->dir));
    snprintf(f->key_path, sizeof f->key_path, "%s/sign.key", f->dir);
    f->opts = (journal_opts_t){.dir = f->dir, .no_sync = true, .dedup_window = 1000};
    f->key = crypto_key_generate();
    assert_non_null(f->key);
    char err[256];
    assert_int_equal(crypto_key_write_secret(f->key, f->key_path, err, sizeof err), CRYPTO_OK);
    *state = f;
    return 0;
}

static int s_teardown(void **state)
{
    fixture_t *f = *state;
    crypto_key_destroy(&f->key);
    nftw(f->dir, s_rm, 8, FTW_DEPTH | FTW_PHYS);
    free(f);
    return 0;
}

/* Append n events numbered from first, each with event_len payload bytes. */
static int s_append(journal_t *j, uint64_t first, size_t n, size_t event_len)
{
    journal_entry_t *e = calloc(n, sizeof *e);
    char (*ids)[32] = calloc(n, sizeof *ids);
    uint8_t *payload = calloc(1, event_len + 1);
    assert_true(e && ids && payload);
    memset(payload, 0xab, event_len);
    for (size_t i = 0; i < n; i++) {
        snprintf(ids[i], sizeof ids[i], "ev-%llu", (unsigned long long)(first + i));
        e[i] = (journal_entry_t){.source = "tax-office", .event_id = ids[i], .type = "tax.return.filed",
                                 .event = payload, .event_len = event_len};
    }
    int rc = journal_append_batch(j, e, n, NULL, 0);
    free(payload);
    free(ids);
    free(e);
    return rc;
}

static int s_last_chain(const journal_record_t *rec, void *arg)
{
    memcpy(arg, rec->chain, LOGFILE_CHAIN_LEN);
    return 0;
}

/* A list of one hub signing key, key, valid from revoked_at... to
 * not_after (KEYFILE_FOREVER: no limit). */
static void s_keys_of(keyfile_hub_t *keys, const crypto_key_t *key, int64_t not_after, int64_t revoked_at)
{
    memset(keys, 0, sizeof *keys);
    crypto_key_public(key, keys->sign[0].pub);
    keys->sign[0].not_after = not_after;
    keys->sign[0].revoked_at = revoked_at;
    keys->n_sign = 1;
}

/* Verify the closed log under f->dir from `from` against n witnessed
 * checkpoints; returns the logfile code. */
static int s_verify_witness(fixture_t *f, uint64_t from, const logfile_witness_t *w, size_t n, logfile_report_t *rep)
{
    char err[512];
    logfile_t *lf = logfile_open(f->dir, err, sizeof err);
    if (!lf)
        fprintf(stderr, "logfile_open: %s\n", err);
    assert_non_null(lf);
    keyfile_hub_t keys;
    s_keys_of(&keys, f->key, KEYFILE_FOREVER, KEYFILE_FOREVER);
    int rc = logfile_verify(lf, &keys, from, w, n, rep);
    logfile_destroy(&lf);
    assert_null(lf);
    return rc;
}

static int s_verify(fixture_t *f, uint64_t from, logfile_report_t *rep)
{
    return s_verify_witness(f, from, NULL, 0, rep);
}

static void test_chain_continues_across_reopen(void **state)
{
    fixture_t *f = *state;
    uint8_t head[JOURNAL_CHAIN_LEN], zero[JOURNAL_CHAIN_LEN] = {0}, stored[JOURNAL_CHAIN_LEN];
    journal_t *j = journal_new(&f->opts);
    assert_non_null(j);
    journal_chain_head(j, head);
    assert_memory_equal(head, zero, sizeof head);
    assert_int_equal(s_append(j, 1, 5, 100), JOURNAL_OK);
    journal_chain_head(j, head);
    assert_memory_not_equal(head, zero, sizeof head);
    assert_int_equal(journal_scan(j, 5, 1, s_last_chain, stored), JOURNAL_OK);
    assert_memory_equal(head, stored, sizeof head);
    journal_destroy(&j);

    /* reopening reads the head from the last entry and chains on from it */
    j = journal_new(&f->opts);
    assert_non_null(j);
    uint8_t reopened[JOURNAL_CHAIN_LEN];
    journal_chain_head(j, reopened);
    assert_memory_equal(reopened, head, sizeof head);
    assert_int_equal(s_append(j, 6, 5, 100), JOURNAL_OK);
    journal_destroy(&j);

    logfile_report_t rep;
    assert_int_equal(s_verify(f, 0, &rep), LOGFILE_OK);
    assert_int_equal(rep.entries, 10);
    assert_int_equal(rep.last_seq, 10);
    assert_int_equal(rep.checkpoints, 0);
    /* starting later trusts entry 6's hash and checks 7..10 */
    assert_int_equal(s_verify(f, 7, &rep), LOGFILE_OK);
    assert_int_equal(rep.entries, 4);
    assert_int_equal(rep.first_seq, 7);
}

static void test_failed_batch_keeps_chain(void **state)
{
    fixture_t *f = *state;
    f->opts.map_init = f->opts.map_max = 1 << 20;
    journal_t *j = journal_new(&f->opts);
    assert_non_null(j);
    uint8_t before[JOURNAL_CHAIN_LEN], after[JOURNAL_CHAIN_LEN];
    uint64_t k = 1;
    int rc;
    for (;;) {
        journal_chain_head(j, before);
        rc = s_append(j, k, 8, 8000);
        if (rc != JOURNAL_OK)
            break;
        k += 8;
        assert_true(k < 10000);
    }
    assert_int_equal(rc, JOURNAL_FULL);
    journal_chain_head(j, after);
    assert_memory_equal(before, after, sizeof before);
    uint64_t last = journal_last_seq(j);
    assert_int_equal(last, k - 1);
    /* a smaller batch still fits and chains from the unchanged head */
    assert_int_equal(s_append(j, k, 1, 10), JOURNAL_OK);
    journal_destroy(&j);
    logfile_report_t rep;
    assert_int_equal(s_verify(f, 0, &rep), LOGFILE_OK);
    assert_int_equal(rep.entries, last + 1);
}

static void test_checkpoint_put_get(void **state)
{
    fixture_t *f = *state;
    journal_t *j = journal_new(&f->opts);
    assert_non_null(j);
    logfile_checkpoint_t cp = {0}, got;
    assert_int_equal(journal_checkpoint_last(j, &got), JOURNAL_NOTFOUND);
    assert_int_equal(s_append(j, 1, 3, 50), JOURNAL_OK);
    cp.seq = 3;
    cp.time = 1700000000000000;
    journal_chain_head(j, cp.chain);
    assert_int_equal(logfile_checkpoint_sign(&cp, f->key), CRYPTO_OK);
    assert_int_equal(logfile_checkpoint_verify(&cp, f->key), CRYPTO_OK);
    /* only the head can be checkpointed */
    logfile_checkpoint_t wrong = cp;
    wrong.seq = 2;
    assert_int_equal(journal_checkpoint_put(j, &wrong), JOURNAL_INVALID);
    wrong = cp;
    wrong.chain[0] ^= 1;
    assert_int_equal(journal_checkpoint_put(j, &wrong), JOURNAL_INVALID);
    assert_int_equal(journal_checkpoint_put(j, &cp), JOURNAL_OK);
    assert_int_equal(journal_checkpoint_get(j, 3, &got), JOURNAL_OK);
    assert_memory_equal(&got, &cp, sizeof cp);
    assert_int_equal(journal_checkpoint_get(j, 2, &got), JOURNAL_NOTFOUND);
    journal_destroy(&j);

    j = journal_new(&f->opts);
    assert_non_null(j);
    assert_int_equal(journal_checkpoint_last(j, &got), JOURNAL_OK);
    assert_int_equal(got.seq, 3);
    assert_int_equal(logfile_checkpoint_verify(&got, f->key), CRYPTO_OK);
    /* a signature does not survive a change of any signed field */
    got.time++;
    assert_int_equal(logfile_checkpoint_verify(&got, f->key), CRYPTO_BAD_SIGNATURE);
    journal_destroy(&j);
    logfile_report_t rep;
    assert_int_equal(s_verify(f, 0, &rep), LOGFILE_OK);
    assert_int_equal(rep.checkpoints, 1);
    assert_int_equal(rep.last_checkpoint, 3);
}

static void test_chain_module(void **state)
{
    fixture_t *f = *state;
    journal_t *j = journal_new(&f->opts);
    assert_non_null(j);
    /* a group-readable signing key is refused */
    assert_int_equal(chmod(f->key_path, 0640), 0);
    assert_null(chain_new(j, f->key_path, 4, 60000));
    assert_int_equal(chmod(f->key_path, 0600), 0);
    chain_t *c = chain_new(j, f->key_path, 4, 60000);
    assert_non_null(c);
    logfile_checkpoint_t got;
    assert_int_equal(s_append(j, 1, 3, 20), JOURNAL_OK);
    assert_int_equal(chain_tick(c, 1), 0);
    assert_int_equal(journal_checkpoint_last(j, &got), JOURNAL_NOTFOUND); /* 3 < 4 events, no time */
    assert_int_equal(s_append(j, 4, 2, 20), JOURNAL_OK);
    assert_int_equal(chain_tick(c, 2), 0);
    assert_int_equal(journal_checkpoint_last(j, &got), JOURNAL_OK);
    assert_int_equal(got.seq, 5);
    /* after the interval, one new event is enough */
    assert_int_equal(s_append(j, 6, 1, 20), JOURNAL_OK);
    assert_int_equal(chain_tick(c, INT64_MAX / 2), 0);
    assert_int_equal(journal_checkpoint_last(j, &got), JOURNAL_OK);
    assert_int_equal(got.seq, 6);
    /* the closing checkpoint is written only when the log grew */
    assert_int_equal(chain_checkpoint(c), 0);
    assert_int_equal(s_append(j, 7, 1, 20), JOURNAL_OK);
    assert_int_equal(chain_checkpoint(c), 0);
    assert_int_equal(journal_checkpoint_last(j, &got), JOURNAL_OK);
    assert_int_equal(got.seq, 7);
    chain_destroy(&c);
    assert_null(c);
    chain_destroy(NULL);
    assert_int_equal(chain_tick(NULL, 0), 0);
    journal_destroy(&j);
    logfile_report_t rep;
    assert_int_equal(s_verify(f, 0, &rep), LOGFILE_OK);
    assert_int_equal(rep.checkpoints, 3);
}

/* A checkpoint counts when a listed key, valid at the checkpoint's time,
 * signed it. */
static void test_checkpoint_keys(void **state)
{
    fixture_t *f = *state;
    crypto_key_t *old = f->key, *next = crypto_key_generate(), *stranger = crypto_key_generate();
    assert_non_null(next);
    assert_non_null(stranger);
    const int64_t t = 1800000000; /* seconds */
    keyfile_hub_t keys;
    memset(&keys, 0, sizeof keys);
    crypto_key_public(old, keys.sign[0].pub);
    keys.sign[0].not_after = t; /* rotated: valid until t */
    keys.sign[0].revoked_at = KEYFILE_FOREVER;
    crypto_key_public(next, keys.sign[1].pub);
    keys.sign[1].not_after = KEYFILE_FOREVER;
    keys.sign[1].revoked_at = t + 100; /* revoked later */
    keys.n_sign = 2;
    char why[256];
    logfile_checkpoint_t cp = {.seq = 7, .time = (t - 1) * 1000000};
    memset(cp.chain, 0x5a, sizeof cp.chain);
    assert_int_equal(logfile_checkpoint_sign(&cp, old), CRYPTO_OK);
    assert_int_equal(logfile_checkpoint_check(&cp, &keys, why, sizeof why), LOGFILE_OK);
    cp.time = t * 1000000; /* at not-after: expired */
    assert_int_equal(logfile_checkpoint_sign(&cp, old), CRYPTO_OK);
    assert_int_equal(logfile_checkpoint_check(&cp, &keys, why, sizeof why), LOGFILE_UNKNOWN_KEY);
    assert_non_null(strstr(why, "expired"));
    assert_int_equal(logfile_checkpoint_sign(&cp, next), CRYPTO_OK);
    assert_int_equal(logfile_checkpoint_check(&cp, &keys, why, sizeof why), LOGFILE_OK);
    cp.time = (t + 100) * 1000000 + 5; /* in the second of the revocation */
    assert_int_equal(logfile_checkpoint_sign(&cp, next), CRYPTO_OK);
    assert_int_equal(logfile_checkpoint_check(&cp, &keys, why, sizeof why), LOGFILE_UNKNOWN_KEY);
    assert_non_null(strstr(why, "revoked at"));
    cp.time = (t + 99) * 1000000;
    assert_int_equal(logfile_checkpoint_sign(&cp, stranger), CRYPTO_OK);
    assert_int_equal(logfile_checkpoint_check(&cp, &keys, why, sizeof why), LOGFILE_UNKNOWN_KEY);
    assert_non_null(strstr(why, "not a hub signing key"));
    assert_int_equal(logfile_checkpoint_sign(&cp, next), CRYPTO_OK);
    assert_int_equal(logfile_checkpoint_check(&cp, &keys, why, sizeof why), LOGFILE_OK);
    cp.seq++; /* any signed field changed */
    assert_int_equal(logfile_checkpoint_check(&cp, &keys, why, sizeof why), LOGFILE_TAMPERED);
    assert_non_null(strstr(why, "does not verify"));
    crypto_key_destroy(&next);
    crypto_key_destroy(&stranger);
}

static void test_witness_lines(void **state)
{
    fixture_t *f = *state;
    logfile_checkpoint_t cp = {.seq = 12345, .time = 1790000000123456}, back;
    for (size_t i = 0; i < sizeof cp.chain; i++)
        cp.chain[i] = (uint8_t)(i * 7);
    assert_int_equal(logfile_checkpoint_sign(&cp, f->key), CRYPTO_OK);
    char line[LOGFILE_WITNESS_LEN + 100], why[128];
    logfile_witness_format(&cp, line);
    assert_true(strlen(line) < LOGFILE_WITNESS_LEN - 1);
    assert_int_equal(logfile_witness_parse(line, &back, why, sizeof why), LOGFILE_OK);
    assert_memory_equal(&back, &cp, sizeof cp);
    /* as the hub logs it, and as fetch appends it */
    char logged[sizeof line + 80];
    snprintf(logged, sizeof logged, "2026-01-02T03:04:05.678Z info chain %s\n", line);
    assert_int_equal(logfile_witness_parse(logged, &back, why, sizeof why), LOGFILE_OK);
    assert_memory_equal(&back, &cp, sizeof cp);
    snprintf(logged, sizeof logged, "2026-01-02T03:04:05Z hub=tcp://127.0.0.1:7400 %s", line);
    assert_int_equal(logfile_witness_parse(logged, &back, why, sizeof why), LOGFILE_OK);
    /* other lines of a log */
    assert_int_equal(logfile_witness_parse("", &back, why, sizeof why), LOGFILE_NOT_WITNESS);
    assert_int_equal(logfile_witness_parse("x info router event=listening seq=4", &back, why, sizeof why),
                     LOGFILE_NOT_WITNESS);
    assert_int_equal(logfile_witness_parse("x error chain event=checkpoint_failed seq=4", &back, why, sizeof why),
                     LOGFILE_NOT_WITNESS);
    /* broken checkpoint lines */
    static const char *const bad[][2] = {
        {"seq=12345 ", "seq=0 "},         {"seq=12345 ", "seq=12x45 "},  {"seq=12345 ", ""},
        {"key_id=", "key_id=zz"},         {"chain=", "chain=0"},         {"sig=", "sig=A"},
        {"time_us=", "time_us=1 time_us="}, {"seq=12345 ", "seq=99999999999999999999999 "},
    };
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
        char broken[sizeof line + 16];
        const char *at = strstr(line, bad[i][0]);
        assert_non_null(at);
        snprintf(broken, sizeof broken, "%.*s%s%s", (int)(at - line), line, bad[i][1], at + strlen(bad[i][0]));
        if (logfile_witness_parse(broken, &back, why, sizeof why) != LOGFILE_FORMAT)
            fail_msg("accepted '%s'", broken);
    }
}

/* Checkpoints kept outside: matched against the recomputed chain, and a log
 * shorter than one of them is a truncation. */
static void test_verify_witness(void **state)
{
    fixture_t *f = *state;
    journal_t *j = journal_new(&f->opts);
    assert_non_null(j);
    chain_t *c = chain_new(j, f->key_path, 4, 60000);
    assert_non_null(c);
    logfile_checkpoint_t last;
    assert_int_equal(journal_checkpoint_last(j, &last), JOURNAL_NOTFOUND);
    logfile_witness_t w[3];
    for (int i = 0; i < 3; i++) {
        assert_int_equal(s_append(j, (uint64_t)(4 * i + 1), 4, 30), JOURNAL_OK);
        assert_int_equal(chain_tick(c, 1), 0);
        assert_int_equal(journal_checkpoint_last(j, &w[i].cp), JOURNAL_OK);
        assert_int_equal(w[i].cp.seq, 4 * (i + 1));
        w[i].line = i + 1;
    }
    assert_int_equal(s_append(j, 13, 2, 30), JOURNAL_OK); /* 13, 14: not checkpointed */
    chain_destroy(&c);
    journal_destroy(&j);

    logfile_report_t rep;
    logfile_witness_t shuffled[3] = {w[2], w[0], w[1]};
    assert_int_equal(s_verify_witness(f, 0, shuffled, 3, &rep), LOGFILE_OK);
    assert_int_equal(rep.witnessed, 3);
    assert_int_equal(rep.last_witnessed, 12);
    assert_int_equal(s_verify_witness(f, 6, shuffled, 3, &rep), LOGFILE_OK);
    assert_int_equal(rep.witnessed, 2);
    assert_int_equal(rep.witness_skipped, 1);

    /* A witnessed checkpoint the log does not match. */
    logfile_witness_t other = w[1];
    other.cp.chain[0] ^= 1;
    assert_int_equal(logfile_checkpoint_sign(&other.cp, f->key), CRYPTO_OK);
    assert_int_equal(s_verify_witness(f, 0, &other, 1, &rep), LOGFILE_TAMPERED);
    assert_int_equal(rep.bad_seq, 8);
    assert_non_null(strstr(rep.problem, "witnessed checkpoint (line 2) differs"));
    /* Witnessed beyond the end: the log was cut back. */
    other = w[2];
    other.cp.seq = 20;
    other.line = 9;
    assert_int_equal(logfile_checkpoint_sign(&other.cp, f->key), CRYPTO_OK);
    assert_int_equal(s_verify_witness(f, 0, &other, 1, &rep), LOGFILE_TAMPERED);
    assert_int_equal(rep.bad_seq, 15);
    assert_non_null(strstr(rep.problem, "witnessed checkpoint (line 9) covers seq 20 (truncated)"));
    /* A witness line the hub never signed counts for nothing. */
    other.cp.sig[3] ^= 1;
    assert_int_equal(s_verify_witness(f, 0, &other, 1, &rep), LOGFILE_TAMPERED);
    assert_non_null(strstr(rep.problem, "witness line 9: checkpoint signature does not verify"));

    /* The last checkpoint is known again after a restart. */
    j = journal_new(&f->opts);
    assert_non_null(j);
    assert_int_equal(journal_checkpoint_last(j, &last), JOURNAL_OK);
    assert_memory_equal(&last, &w[2].cp, sizeof last);
    journal_destroy(&j);
}

int main(void)
{
    log_set_level(LOG_ERROR);
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_setup_teardown(test_chain_continues_across_reopen, s_setup, s_teardown),
        cmocka_unit_test_setup_teardown(test_failed_batch_keeps_chain, s_setup, s_teardown),
        cmocka_unit_test_setup_teardown(test_checkpoint_put_get, s_setup, s_teardown),
        cmocka_unit_test_setup_teardown(test_chain_module, s_setup, s_teardown),
        cmocka_unit_test_setup_teardown(test_checkpoint_keys, s_setup, s_teardown),
        cmocka_unit_test_setup_teardown(test_witness_lines, s_setup, s_teardown),
        cmocka_unit_test_setup_teardown(test_verify_witness, s_setup, s_teardown),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
