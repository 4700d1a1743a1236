/* test_journal_dl - unit tests of the journal's dead-letter records, on real
 * files.
 *
 * Records are keyed by (agency, subscription, seq); these tests check their
 * order (seq across byte boundaries, names that are prefixes of others), the
 * page walk, the record stored in one transaction with its cursor, redrive
 * and drop of some or all records with their outcomes, events gone from the
 * log, the reason's ceiling, refused arguments, that everything is there
 * after a reopen, and that retention deleting the front of the log leaves
 * the records of its events in place, reported gone.
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

#include "journal.h"

typedef struct {
    char dir[64];
    journal_opts_t opts;
    journal_t *j;
} fixture_t;

static int s_rm(const char *path, const struct stat *st, int flag, struct FTW *ftw)
{
    (void)st;
    (void)flag;
    (void)ftw;
    return remove(path);
}

/* A journal holding log entries 1..300 (so redrives find their events). */
static int s_setup(void **state)
{
    fixture_t *f = calloc(1, sizeof *f);
    assert_non_null(f);
    snprintf(f->dir, sizeof f->dir, "/tmp/civibus-journal-dl-XXXXXX");
    assert_non_null(mkdtemp(f->dir));
    f->opts = (journal_opts_t){.dir = f->dir, .no_sync = true, .dedup_window = 1000};
    f->j = journal_new(&f->opts);
    assert_non_null(f->j);
    journal_entry_t e[300];
    char ids[300][16];
    for (int i = 0; i < 300; i++) {
        snprintf(ids[i], sizeof ids[i], "ev-%d", i);
        e[i] = (journal_entry_t){.source = "prod", .event_id = ids[i], .type = "t.x", .event = (const uint8_t *)"x",
                                 .event_len = 1};
    }
    assert_int_equal(journal_append_batch(f->j, e, 300, NULL, 0), JOURNAL_OK);
    *state = f;
    return 0;
}

static int s_teardown(void **state)
{
    fixture_t *f = *state;
    journal_destroy(&f->j);
    nftw(f->dir, s_rm, 8, FTW_DEPTH | FTW_PHYS);
    free(f);
    return 0;
}

static void s_put(journal_t *j, const char *agency, const char *name, uint64_t seq, const char *reason)
{
    journal_dead_letter_t dl = {.agency = agency, .name = name, .seq = seq, .attempts = (uint32_t)seq % 7 + 1,
                                .dead_at = 1700000000000000 + (int64_t)seq, .reason = reason};
    assert_int_equal(journal_dead_letter_put(j, &dl, NULL), JOURNAL_OK);
}

typedef struct {
    uint64_t seqs[64];
    char names[64][80];
    size_t n;
    size_t stop_after; /* 0: never */
} s_seen_t;

static int s_see(const journal_dead_letter_t *dl, void *arg)
{
    s_seen_t *s = arg;
    assert_true(s->n < 64);
    s->seqs[s->n] = dl->seq;
    snprintf(s->names[s->n], sizeof s->names[s->n], "%s/%s", dl->agency, dl->name);
    s->n++;
    return s->stop_after && s->n == s->stop_after ? 7 : 0;
}

static void test_order_and_walk(void **state)
{
    fixture_t *f = *state;
    /* Inserted out of order, across the byte boundary at 256, with names
     * that are prefixes of one another. */
    static const uint64_t seqs[] = {257, 3, 256, 1, 255};
    for (size_t i = 0; i < sizeof seqs / sizeof seqs[0]; i++)
        s_put(f->j, "tax", "main", seqs[i], "r");
    s_put(f->j, "tax", "mai", 2, "r");
    s_put(f->j, "tax", "main2", 4, "r");
    s_put(f->j, "ta", "xmain", 5, "r");

    s_seen_t s = {0};
    assert_int_equal(journal_dead_letters_each(f->j, "tax", "main", 0, s_see, &s), JOURNAL_OK);
    assert_int_equal(s.n, 5);
    static const uint64_t want[] = {1, 3, 255, 256, 257};
    for (size_t i = 0; i < 5; i++) {
        assert_int_equal(s.seqs[i], want[i]);
        assert_string_equal(s.names[i], "tax/main");
    }
    /* A page after 3, and a walk the callback stops. */
    memset(&s, 0, sizeof s);
    assert_int_equal(journal_dead_letters_each(f->j, "tax", "main", 3, s_see, &s), JOURNAL_OK);
    assert_int_equal(s.n, 3);
    assert_int_equal(s.seqs[0], 255);
    memset(&s, 0, sizeof s);
    s.stop_after = 2;
    assert_int_equal(journal_dead_letters_each(f->j, "tax", "main", 0, s_see, &s), 7);
    assert_int_equal(s.n, 2);
    memset(&s, 0, sizeof s);
    assert_int_equal(journal_dead_letters_each(f->j, "tax", "nothing", 0, s_see, &s), JOURNAL_OK);
    assert_int_equal(s.n, 0);
    /* Everything, every subscription. */
    memset(&s, 0, sizeof s);
    assert_int_equal(journal_dead_letters_each(f->j, NULL, NULL, 0, s_see, &s), JOURNAL_OK);
    assert_int_equal(s.n, 8);

    journal_dead_letter_t dl;
    assert_int_equal(journal_dead_letter_get(f->j, "tax", "main", 256, &dl), JOURNAL_OK);
    assert_int_equal(dl.seq, 256);
    assert_int_equal(dl.attempts, 256 % 7 + 1);
    assert_int_equal(dl.dead_at, 1700000000000256);
    assert_false(dl.redrive);
    assert_string_equal(dl.reason, "r");
    assert_string_equal(dl.agency, "tax");
    assert_string_equal(dl.name, "main");
    assert_int_equal(journal_dead_letter_get(f->j, "tax", "main", 2, &dl), JOURNAL_NOTFOUND);
}

static void test_put_with_cursor_and_reason(void **state)
{
    fixture_t *f = *state;
    char reason[400];
    memset(reason, 'r', sizeof reason - 1);
    reason[sizeof reason - 1] = '\0';
    journal_dead_letter_t dl = {.agency = "tax", .name = "main", .seq = 9, .attempts = 5, .reason = reason};
    journal_cursor_t cur = {.agency = "tax", .name = "main", .acked = 9, .filters = "t.*"};
    assert_int_equal(journal_dead_letter_put(f->j, &dl, &cur), JOURNAL_OK);
    uint64_t acked = 0;
    char *filters = NULL;
    assert_int_equal(journal_cursor_get(f->j, "tax", "main", &acked, &filters), JOURNAL_OK);
    assert_int_equal(acked, 9);
    assert_string_equal(filters, "t.*");
    free(filters);
    journal_dead_letter_t got;
    assert_int_equal(journal_dead_letter_get(f->j, "tax", "main", 9, &got), JOURNAL_OK);
    assert_int_equal(strlen(got.reason), JOURNAL_REASON_MAX);
    assert_int_equal(got.attempts, 5);
    /* Replacing keeps one record. */
    dl.reason = "again";
    dl.redrive = true;
    assert_int_equal(journal_dead_letter_put(f->j, &dl, NULL), JOURNAL_OK);
    assert_int_equal(journal_dead_letter_get(f->j, "tax", "main", 9, &got), JOURNAL_OK);
    assert_string_equal(got.reason, "again");
    assert_true(got.redrive);
    s_seen_t s = {0};
    assert_int_equal(journal_dead_letters_each(f->j, "tax", "main", 0, s_see, &s), JOURNAL_OK);
    assert_int_equal(s.n, 1);

    /* Refused: seq 0, empty or oversize names, a bad cursor. */
    dl.seq = 0;
    assert_int_equal(journal_dead_letter_put(f->j, &dl, NULL), JOURNAL_INVALID);
    dl.seq = 1;
    dl.name = "";
    assert_int_equal(journal_dead_letter_put(f->j, &dl, NULL), JOURNAL_INVALID);
    char huge[600];
    memset(huge, 'n', sizeof huge - 1);
    huge[sizeof huge - 1] = '\0';
    dl.name = huge;
    assert_int_equal(journal_dead_letter_put(f->j, &dl, NULL), JOURNAL_INVALID);
    dl.name = "main";
    cur.name = "";
    assert_int_equal(journal_dead_letter_put(f->j, &dl, &cur), JOURNAL_INVALID);
    assert_int_equal(journal_dead_letter_get(f->j, "tax", "main", 1, &got), JOURNAL_NOTFOUND);
}

static void test_redrive_and_drop(void **state)
{
    fixture_t *f = *state;
    for (uint64_t seq = 10; seq <= 14; seq++)
        s_put(f->j, "tax", "main", seq, "r");
    s_put(f->j, "tax", "main", 999, "beyond the log"); /* its entry does not exist */
    s_put(f->j, "tax", "other", 10, "r");

    uint64_t named[] = {11, 20, 999, 11};
    uint8_t outcome[4];
    uint64_t gone[4];
    journal_dl_change_t c = {.agency = "tax", .name = "main", .seqs = named, .n = 4, .outcome = outcome,
                             .gone = gone, .gone_cap = 4};
    assert_int_equal(journal_dead_letters_change(f->j, &c), JOURNAL_OK);
    assert_int_equal(outcome[0], JOURNAL_DL_DONE);
    assert_int_equal(outcome[1], JOURNAL_DL_MISSING);
    assert_int_equal(outcome[2], JOURNAL_DL_GONE);
    assert_int_equal(outcome[3], JOURNAL_DL_DONE); /* flagged already: still done */
    assert_int_equal(c.affected, 2);
    assert_int_equal(c.n_gone, 1);
    assert_int_equal(gone[0], 999);
    assert_int_equal(c.remaining, 6);
    journal_dead_letter_t got;
    assert_int_equal(journal_dead_letter_get(f->j, "tax", "main", 11, &got), JOURNAL_OK);
    assert_true(got.redrive);
    assert_int_equal(journal_dead_letter_get(f->j, "tax", "main", 999, &got), JOURNAL_OK);
    assert_false(got.redrive);

    /* Redrive all: every record whose event exists. */
    c = (journal_dl_change_t){.agency = "tax", .name = "main", .gone = gone, .gone_cap = 4};
    assert_int_equal(journal_dead_letters_change(f->j, &c), JOURNAL_OK);
    assert_int_equal(c.affected, 5);
    assert_int_equal(c.n_gone, 1);
    assert_int_equal(journal_dead_letter_get(f->j, "tax", "other", 10, &got), JOURNAL_OK);
    assert_false(got.redrive); /* another subscription is untouched */

    /* Drop some, then all. */
    uint64_t drop[] = {10, 12, 77};
    c = (journal_dl_change_t){.agency = "tax", .name = "main", .drop = true, .seqs = drop, .n = 3,
                              .outcome = outcome};
    assert_int_equal(journal_dead_letters_change(f->j, &c), JOURNAL_OK);
    assert_int_equal(c.affected, 2);
    assert_int_equal(outcome[2], JOURNAL_DL_MISSING);
    assert_int_equal(c.remaining, 4);
    c = (journal_dl_change_t){.agency = "tax", .name = "main", .drop = true};
    assert_int_equal(journal_dead_letters_change(f->j, &c), JOURNAL_OK);
    assert_int_equal(c.affected, 4);
    assert_int_equal(c.remaining, 0);
    s_seen_t s = {0};
    assert_int_equal(journal_dead_letters_each(f->j, NULL, NULL, 0, s_see, &s), JOURNAL_OK);
    assert_int_equal(s.n, 1);
    assert_string_equal(s.names[0], "tax/other");

    /* Outcomes are needed for named seqs. */
    c = (journal_dl_change_t){.agency = "tax", .name = "main", .seqs = drop, .n = 3};
    assert_int_equal(journal_dead_letters_change(f->j, &c), JOURNAL_INVALID);
}

static void test_reopen(void **state)
{
    fixture_t *f = *state;
    s_put(f->j, "tax", "main", 7, "kept");
    uint64_t seven = 7;
    uint8_t outcome;
    journal_dl_change_t c = {.agency = "tax", .name = "main", .seqs = &seven, .n = 1, .outcome = &outcome};
    assert_int_equal(journal_dead_letters_change(f->j, &c), JOURNAL_OK);
    journal_destroy(&f->j);
    f->j = journal_new(&f->opts);
    assert_non_null(f->j);
    journal_dead_letter_t got;
    assert_int_equal(journal_dead_letter_get(f->j, "tax", "main", 7, &got), JOURNAL_OK);
    assert_string_equal(got.reason, "kept");
    assert_true(got.redrive);
    assert_int_equal(got.attempts, 7 % 7 + 1);
}

static int s_count(const journal_dead_letter_t *dl, void *arg)
{
    (void)dl;
    ++*(size_t *)arg;
    return 0;
}

/* Retention deletes entries 1..200 (a kept subscription's cursor holds the
 * rest): the records of 5 and 150 stay, a redrive reports them gone and
 * leaves them as they were, a drop still removes one, and all of it is
 * there after a reopen. */
static void test_retention_leaves_records(void **state)
{
    fixture_t *f = *state;
    s_put(f->j, "tax", "main", 5, "early");
    s_put(f->j, "tax", "main", 150, "middle");
    s_put(f->j, "tax", "main", 250, "late");
    uint64_t five = 5;
    uint8_t outcome[3];
    journal_dl_change_t c = {.agency = "tax", .name = "main", .seqs = &five, .n = 1, .outcome = outcome};
    assert_int_equal(journal_dead_letters_change(f->j, &c), JOURNAL_OK); /* 5 flagged for redrive */
    journal_cursor_t holder = {.agency = "tax", .name = "holder", .acked = 200, .filters = "*"};
    assert_int_equal(journal_save_cursors(f->j, &holder, 1), JOURNAL_OK);
    journal_retention_t rules = {.max_age_us = 1, .keep = "tax/holder", .batch = 64};
    assert_int_equal(journal_retention_set(f->j, &rules), JOURNAL_OK);
    int64_t later = 4102444800000000; /* 2100: every entry is due */
    size_t n, total = 0;
    for (int i = 0; i < 100; i++) {
        assert_int_equal(journal_retain(f->j, later, &n), JOURNAL_OK);
        if (n == 0)
            break;
        total += n;
    }
    assert_int_equal(total, 200);
    assert_int_equal(journal_first_seq(f->j), 201);

    size_t count = 0;
    assert_int_equal(journal_dead_letters_each(f->j, "tax", "main", 0, s_count, &count), JOURNAL_OK);
    assert_int_equal(count, 3);
    journal_dead_letter_t got;
    assert_int_equal(journal_dead_letter_get(f->j, "tax", "main", 5, &got), JOURNAL_OK);
    assert_true(got.redrive); /* retention does not touch the records */
    assert_string_equal(got.reason, "early");

    uint64_t gone[4];
    c = (journal_dl_change_t){.agency = "tax", .name = "main", .gone = gone, .gone_cap = 4};
    assert_int_equal(journal_dead_letters_change(f->j, &c), JOURNAL_OK);
    assert_int_equal(c.affected, 1); /* 250 only */
    assert_int_equal(c.n_gone, 2);
    assert_int_equal(gone[0], 5);
    assert_int_equal(gone[1], 150);
    assert_int_equal(c.remaining, 3);
    assert_int_equal(journal_dead_letter_get(f->j, "tax", "main", 150, &got), JOURNAL_OK);
    assert_false(got.redrive); /* left as it was */
    assert_int_equal(journal_dead_letter_get(f->j, "tax", "main", 250, &got), JOURNAL_OK);
    assert_true(got.redrive);

    uint64_t drop = 150;
    c = (journal_dl_change_t){.agency = "tax", .name = "main", .drop = true, .seqs = &drop, .n = 1,
                              .outcome = outcome};
    assert_int_equal(journal_dead_letters_change(f->j, &c), JOURNAL_OK);
    assert_int_equal(outcome[0], JOURNAL_DL_DONE);
    assert_int_equal(c.remaining, 2);

    journal_destroy(&f->j);
    f->j = journal_new(&f->opts);
    assert_non_null(f->j);
    assert_int_equal(journal_first_seq(f->j), 201);
    count = 0;
    assert_int_equal(journal_dead_letters_each(f->j, "tax", "main", 0, s_count, &count), JOURNAL_OK);
    assert_int_equal(count, 2);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_setup_teardown(test_order_and_walk, s_setup, s_teardown),
        cmocka_unit_test_setup_teardown(test_put_with_cursor_and_reason, s_setup, s_teardown),
        cmocka_unit_test_setup_teardown(test_redrive_and_drop, s_setup, s_teardown),
        cmocka_unit_test_setup_teardown(test_reopen, s_setup, s_teardown),
        cmocka_unit_test_setup_teardown(test_retention_leaves_records, s_setup, s_teardown),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
