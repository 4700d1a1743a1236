/* test_chain - the log's hash chain and signed checkpoints: hub/journal.c
 * writing them, hub/chain.c deciding when, proto/logfile.c verifying.
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

/* Verify the closed log under f->dir from `from`; returns the logfile code. */
static int s_verify(fixture_t *f, uint64_t from, logfile_report_t *rep)
{
    char err[512];
    logfile_t *lf = logfile_open(f->dir, err, sizeof err);
    if (!lf)
        fprintf(stderr, "logfile_open: %s\n", err);
    assert_non_null(lf);
    int rc = logfile_verify(lf, f->key, from, rep);
    logfile_destroy(&lf);
    assert_null(lf);
    return rc;
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

int main(void)
{
    log_set_level(LOG_ERROR);
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_setup_teardown(test_chain_continues_across_reopen, s_setup, s_teardown),
        cmocka_unit_test_setup_teardown(test_failed_batch_keeps_chain, s_setup, s_teardown),
        cmocka_unit_test_setup_teardown(test_checkpoint_put_get, s_setup, s_teardown),
        cmocka_unit_test_setup_teardown(test_chain_module, s_setup, s_teardown),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
