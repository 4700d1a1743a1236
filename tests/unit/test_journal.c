/* test_journal - unit tests of the LMDB journal, on real files.
 *
 * Each test gets a fresh directory from mkdtemp under /tmp, removed by the
 * teardown. Events are generated from their number, so any entry can be
 * checked byte for byte after reopening; its id is "ev-<k>". Tests of the
 * de-duplication window use small windows (journal_opts_t accepts any size;
 * the config bounds are the hub's). The read-only test forks: LMDB
 * forbids opening one environment twice in one process, and offline tools
 * read from another process anyway; for the same reason the retention tests
 * close the journal before the offline verifier (proto/logfile.h) reads it.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include <ftw.h>
#include <lmdb.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "crypto.h"
#include "journal.h"
#include "log.h"
#include "logfile.h"

#define MIB ((size_t)1 << 20)

typedef struct {
    char dir[64];
    journal_opts_t opts;
} fixture_t;

/* --- helpers ------------------------------------------------------------- */

static int s_rm(const char *path, const struct stat *st, int flag, struct FTW *ftw)
{
    (void)st;
    (void)flag;
    (void)ftw;
    return remove(path);
}

static int s_setup(void **state)
{
    fixture_t *f = calloc(1, sizeof *f);
    assert_non_null(f);
    snprintf(f->dir, sizeof f->dir, "/tmp/civibus-journal-XXXXXX");
    assert_non_null(mkdtemp(f->dir));
    f->opts = (journal_opts_t){.dir = f->dir, .no_sync = true};
    *state = f;
    return 0;
}

static int s_teardown(void **state)
{
    fixture_t *f = *state;
    nftw(f->dir, s_rm, 8, FTW_DEPTH | FTW_PHYS);
    free(f);
    return 0;
}

/* Event number k: 8 bytes of k (LE) then len-8 pseudo-random bytes seeded by k,
 * zero bytes included on purpose. */
static void s_event_fill(uint8_t *buf, size_t len, uint64_t k)
{
    assert_true(len >= 8);
    for (int i = 0; i < 8; i++)
        buf[i] = (uint8_t)(k >> (8 * i));
    uint64_t x = k * 0x9E3779B97F4A7C15ull + 1;
    for (size_t i = 8; i < len; i++) {
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        buf[i] = (uint8_t)(x % 7 == 0 ? 0 : x);
    }
}

static uint64_t s_event_number(const uint8_t *buf)
{
    uint64_t k = 0;
    for (int i = 7; i >= 0; i--)
        k = (k << 8) | buf[i];
    return k;
}

static bool s_event_check(const uint8_t *buf, size_t len, uint64_t k)
{
    if (len < 8)
        return false;
    uint8_t *want = malloc(len);
    s_event_fill(want, len, k);
    bool ok = memcmp(want, buf, len) == 0;
    free(want);
    return ok;
}

static size_t s_event_len(uint64_t k)
{
    return 64 + (size_t)(k * 37 % 300);
}

static const char *s_type_of(uint64_t k)
{
    static const char *types[] = {"population.birth.registered", "tax.return.filed",
                                  "health.visit", "a"};
    return types[k % 4];
}

/* A batch of events numbered first..first+n-1 from one source, with ids
 * "ev-<k>". Owns its memory; s_batch_free releases it. */
typedef struct {
    journal_entry_t *e;
    uint8_t **bufs;
    char **ids;
    size_t n;
} batch_t;

static batch_t s_batch(const char *source, uint64_t first, size_t n, size_t len)
{
    batch_t b = {calloc(n, sizeof(journal_entry_t)), calloc(n, sizeof(uint8_t *)),
                 calloc(n, sizeof(char *)), n};
    assert_non_null(b.e);
    for (size_t i = 0; i < n; i++) {
        uint64_t k = first + i;
        size_t l = len ? len : s_event_len(k);
        b.bufs[i] = malloc(l);
        s_event_fill(b.bufs[i], l, k);
        b.ids[i] = malloc(32);
        snprintf(b.ids[i], 32, "ev-%llu", (unsigned long long)k);
        b.e[i] = (journal_entry_t){.source = source, .event_id = b.ids[i], .type = s_type_of(k),
                                   .event = b.bufs[i], .event_len = l};
    }
    return b;
}

static void s_batch_free(batch_t *b)
{
    for (size_t i = 0; i < b->n; i++) {
        free(b->bufs[i]);
        free(b->ids[i]);
    }
    free(b->bufs);
    free(b->ids);
    free(b->e);
}

/* Scan visitor collecting what it saw; checks order and content as it goes. */
typedef struct {
    uint64_t count;
    uint64_t first;
    uint64_t last;
    int64_t last_received_at;
    bool ordered;     /* seqs consecutive, received_at non-decreasing */
    bool content_ok;  /* event = s_event_fill(event number), type matches */
    bool number_is_seq; /* event number equals seq (no duplicates appended) */
    bool ids_ok;      /* event_id is "ev-<event number>", source is `source` */
    const char *source; /* expected source (NULL: any non-empty one) */
    uint64_t stop_at; /* return 42 at this seq (0: never) */
} scan_t;

static int s_visit(const journal_record_t *rec, void *arg)
{
    scan_t *s = arg;
    if (s->count == 0) {
        s->first = rec->seq;
    } else if (rec->seq != s->last + 1 || rec->received_at < s->last_received_at) {
        s->ordered = false;
    }
    s->count++;
    s->last = rec->seq;
    s->last_received_at = rec->received_at;
    uint64_t k = rec->event_len >= 8 ? s_event_number(rec->event) : 0;
    const char *type = s_type_of(k);
    if (!s_event_check(rec->event, rec->event_len, k) || rec->type_len != strlen(type) ||
        memcmp(rec->type, type, rec->type_len) != 0)
        s->content_ok = false;
    if (k != rec->seq)
        s->number_is_seq = false;
    char id[32];
    int idlen = snprintf(id, sizeof id, "ev-%llu", (unsigned long long)k);
    if (rec->event_id_len != (size_t)idlen || memcmp(rec->event_id, id, rec->event_id_len) != 0 ||
        rec->source_len == 0 ||
        (s->source && (rec->source_len != strlen(s->source) ||
                       memcmp(rec->source, s->source, rec->source_len) != 0)))
        s->ids_ok = false;
    return s->stop_at && rec->seq == s->stop_at ? 42 : 0;
}

static scan_t s_scan(journal_t *j, uint64_t from, size_t max, int *rc)
{
    scan_t s = {.ordered = true, .content_ok = true, .number_is_seq = true, .ids_ok = true};
    *rc = journal_scan(j, from, max, s_visit, &s);
    return s;
}

/* Check that the whole log is 1..last, gapless, intact, event k at seq k. */
static void s_check_log(journal_t *j, uint64_t last)
{
    int rc;
    scan_t s = s_scan(j, 0, 0, &rc);
    assert_int_equal(rc, JOURNAL_OK);
    assert_int_equal(s.count, last);
    if (last) {
        assert_int_equal(s.first, 1);
        assert_int_equal(s.last, last);
    }
    assert_true(s.ordered);
    assert_true(s.content_ok);
    assert_true(s.number_is_seq);
    assert_int_equal(journal_last_seq(j), last);
    assert_int_equal(journal_first_seq(j), last ? 1 : 0);
}

/* Append events first..first+n-1 (expected to be new) and check outputs. */
static void s_append(journal_t *j, uint64_t first, size_t n)
{
    batch_t b = s_batch("ee.population-register", first, n, 0);
    assert_int_equal(journal_append_batch(j, b.e, n, NULL, 0), JOURNAL_OK);
    for (size_t i = 0; i < n; i++) {
        assert_int_equal(b.e[i].seq, first + i);
        assert_false(b.e[i].duplicate);
        assert_int_equal(b.e[i].received_at, b.e[0].received_at);
    }
    s_batch_free(&b);
}

/* --- tests --------------------------------------------------------------- */

static void test_append_and_read_back(void **state)
{
    fixture_t *f = *state;
    journal_t *j = journal_new(&f->opts);
    assert_non_null(j);
    assert_int_equal(journal_first_seq(j), 0);
    assert_int_equal(journal_last_seq(j), 0);
    s_check_log(j, 0);

    int64_t before = (int64_t)time(NULL) * 1000000 - 1000000;
    batch_t b = s_batch("ee.population-register", 1, 100, 0);
    assert_int_equal(journal_append_batch(j, b.e, b.n, NULL, 0), JOURNAL_OK);
    for (size_t i = 0; i < b.n; i++) {
        assert_int_equal(b.e[i].seq, i + 1);
        assert_false(b.e[i].duplicate);
        assert_true(b.e[i].received_at >= before);
        assert_int_equal(b.e[i].received_at, b.e[0].received_at);
    }
    s_batch_free(&b);
    s_append(j, 101, 50);
    s_check_log(j, 150);

    /* source and event_id come back with every record */
    int rc;
    scan_t s = {.ordered = true, .content_ok = true, .number_is_seq = true, .ids_ok = true,
                .source = "ee.population-register"};
    assert_int_equal(journal_scan(j, 1, 0, s_visit, &s), JOURNAL_OK);
    assert_int_equal(s.count, 150);
    assert_true(s.ids_ok);
    s.source = "ee.population-registe"; /* a prefix is not the source */
    s.ids_ok = true;
    assert_int_equal(journal_scan(j, 1, 1, s_visit, &s), JOURNAL_OK);
    assert_false(s.ids_ok);

    /* from/max windows */
    s = s_scan(j, 51, 10, &rc);
    assert_int_equal(rc, JOURNAL_OK);
    assert_int_equal(s.count, 10);
    assert_int_equal(s.first, 51);
    assert_int_equal(s.last, 60);
    s = s_scan(j, 151, 0, &rc);
    assert_int_equal(rc, JOURNAL_OK);
    assert_int_equal(s.count, 0);
    s = s_scan(j, 140, 0, &rc);
    assert_int_equal(s.count, 11);
    /* the visitor's non-zero value stops the scan and is returned */
    scan_t stop = {.ordered = true, .content_ok = true, .number_is_seq = true, .stop_at = 5};
    assert_int_equal(journal_scan(j, 1, 0, s_visit, &stop), 42);
    assert_int_equal(stop.count, 5);

    journal_stats_t st;
    assert_int_equal(journal_stats(j, &st), JOURNAL_OK);
    assert_int_equal(st.entries, 150);
    assert_true(st.used_bytes > 150 * 64);
    assert_true(st.used_bytes <= st.map_size);
    assert_true(st.file_bytes > 0);
    assert_int_equal(st.map_size, 64 * MIB);
    assert_int_equal(st.map_max, (uint64_t)64 << 30);
    journal_destroy(&j);
    assert_null(j);
    journal_destroy(&j); /* NULL-safe */
    journal_destroy(NULL);
}

static void test_reopen_continues(void **state)
{
    fixture_t *f = *state;
    f->opts.no_sync = false; /* the durable path, once */
    journal_t *j = journal_new(&f->opts);
    assert_non_null(j);
    s_append(j, 1, 10);
    journal_destroy(&j);

    j = journal_new(&f->opts);
    assert_non_null(j);
    assert_int_equal(journal_first_seq(j), 1);
    assert_int_equal(journal_last_seq(j), 10);
    s_append(j, 11, 5);
    s_check_log(j, 15);
    journal_destroy(&j);

    j = journal_new(&f->opts);
    assert_non_null(j);
    s_check_log(j, 15);
    journal_destroy(&j);
}

static void test_duplicates(void **state)
{
    fixture_t *f = *state;
    journal_t *j = journal_new(&f->opts);
    assert_non_null(j);
    s_append(j, 1, 3); /* ev-1..ev-3 from ee.population-register */
    int rc;
    scan_t s0 = s_scan(j, 0, 0, &rc);
    int64_t t1 = s0.last_received_at;

    uint8_t other[100], ev4[100], ev5[80];
    s_event_fill(other, sizeof other, 999);
    s_event_fill(ev4, sizeof ev4, 4);
    s_event_fill(ev5, sizeof ev5, 5);
    journal_entry_t e[4] = {
        /* same source and id as seq 2, different bytes: a duplicate */
        {.source = "ee.population-register", .event_id = "ev-2", .type = "x",
         .event = other, .event_len = sizeof other},
        {.source = "ee.population-register", .event_id = "ev-4", .type = s_type_of(4),
         .event = ev4, .event_len = sizeof ev4},
        /* repeated inside the batch: resolves to the first */
        {.source = "ee.population-register", .event_id = "ev-4", .type = "x",
         .event = other, .event_len = sizeof other},
        /* same id, other source: not a duplicate */
        {.source = "tax-office", .event_id = "ev-1", .type = s_type_of(5),
         .event = ev5, .event_len = sizeof ev5},
    };
    assert_int_equal(journal_append_batch(j, e, 4, NULL, 0), JOURNAL_OK);
    assert_true(e[0].duplicate);
    assert_int_equal(e[0].seq, 2);
    assert_int_equal(e[0].received_at, t1);
    assert_false(e[1].duplicate);
    assert_int_equal(e[1].seq, 4);
    assert_true(e[2].duplicate);
    assert_int_equal(e[2].seq, 4);
    assert_int_equal(e[2].received_at, e[1].received_at);
    assert_false(e[3].duplicate);
    assert_int_equal(e[3].seq, 5);
    assert_true(e[1].received_at >= t1);
    s_check_log(j, 5); /* nothing of the duplicates was written */

    /* a batch of only duplicates writes nothing and moves nothing */
    journal_entry_t d = e[3];
    assert_int_equal(journal_append_batch(j, &d, 1, NULL, 0), JOURNAL_OK);
    assert_true(d.duplicate);
    assert_int_equal(d.seq, 5);
    assert_int_equal(journal_last_seq(j), 5);

    /* the window is rebuilt from the log at reopen */
    journal_destroy(&j);
    j = journal_new(&f->opts);
    assert_non_null(j);
    d.duplicate = false;
    d.seq = 0;
    assert_int_equal(journal_append_batch(j, &d, 1, NULL, 0), JOURNAL_OK);
    assert_true(d.duplicate);
    assert_int_equal(d.seq, 5);
    s_check_log(j, 5);
    journal_destroy(&j);
}

static void test_invalid_arguments(void **state)
{
    fixture_t *f = *state;
    journal_t *j = journal_new(&f->opts);
    assert_non_null(j);
    uint8_t ev[16] = {0};
    journal_entry_t ok = {.source = "a", .event_id = "1", .type = "t", .event = ev, .event_len = 16};
    journal_entry_t bad[5] = {ok, ok, ok, ok, ok};
    bad[0].source = "";
    bad[1].event_id = NULL;
    bad[2].type = NULL;
    bad[3].event = NULL;
    char longid[600];
    memset(longid, 'x', sizeof longid - 1);
    longid[sizeof longid - 1] = '\0';
    bad[4].event_id = longid; /* beyond 255 bytes */
    for (int i = 0; i < 5; i++) {
        journal_entry_t batch[2] = {ok, bad[i]};
        assert_int_equal(journal_append_batch(j, batch, 2, NULL, 0), JOURNAL_INVALID);
    }
    journal_cursor_t c = {.agency = "a", .name = "", .acked = 1};
    assert_int_equal(journal_save_cursors(j, &c, 1), JOURNAL_INVALID);
    assert_int_equal(journal_append_batch(j, &ok, 1, &c, 1), JOURNAL_INVALID);
    assert_int_equal(journal_last_seq(j), 0);
    s_check_log(j, 0);
    assert_int_equal(journal_append_batch(j, NULL, 0, NULL, 0), JOURNAL_OK);
    journal_destroy(&j);

    journal_opts_t none = {.dir = NULL};
    assert_null(journal_new(&none));
    assert_null(journal_new(NULL));
    assert_string_equal(journal_strerror(JOURNAL_FULL), "journal full: map size ceiling reached");
    assert_string_equal(journal_strerror(12345), "unknown journal error");
}

static void test_received_at_monotonic(void **state)
{
    fixture_t *f = *state;
    journal_t *j = journal_new(&f->opts);
    assert_non_null(j);
    int64_t prev = 0;
    for (uint64_t k = 1; k <= 200; k += 4) {
        batch_t b = s_batch("ee.population-register", k, 4, 0);
        assert_int_equal(journal_append_batch(j, b.e, 4, NULL, 0), JOURNAL_OK);
        assert_true(b.e[0].received_at >= prev);
        prev = b.e[0].received_at;
        s_batch_free(&b);
    }
    s_check_log(j, 200); /* checks received_at never decreases along the log */
    journal_destroy(&j);
}

static void test_seq_at_time(void **state)
{
    fixture_t *f = *state;
    journal_t *j = journal_new(&f->opts);
    assert_non_null(j);
    uint64_t seq = 99;
    assert_int_equal(journal_seq_at_time(j, 0, &seq), JOURNAL_OK);
    assert_int_equal(seq, 1); /* empty: last + 1 */

    int64_t t[6];
    for (int i = 0; i < 6; i++) {
        batch_t b = s_batch("ee.population-register", (uint64_t)i * 3 + 1, 3, 0);
        assert_int_equal(journal_append_batch(j, b.e, 3, NULL, 0), JOURNAL_OK);
        t[i] = b.e[0].received_at;
        s_batch_free(&b);
        usleep(3000); /* distinct batch times, microseconds apart at least */
    }
    for (int i = 0; i < 6; i++) {
        assert_true(i == 0 || t[i] > t[i - 1]);
        assert_int_equal(journal_seq_at_time(j, t[i], &seq), JOURNAL_OK);
        assert_int_equal(seq, (uint64_t)i * 3 + 1);
        assert_int_equal(journal_seq_at_time(j, t[i] - 1, &seq), JOURNAL_OK);
        assert_int_equal(seq, (uint64_t)i * 3 + 1);
        assert_int_equal(journal_seq_at_time(j, t[i] + 1, &seq), JOURNAL_OK);
        assert_int_equal(seq, (uint64_t)i * 3 + 4); /* next batch, or last + 1 */
    }
    assert_int_equal(journal_seq_at_time(j, INT64_MIN, &seq), JOURNAL_OK);
    assert_int_equal(seq, 1);
    assert_int_equal(journal_seq_at_time(j, INT64_MAX, &seq), JOURNAL_OK);
    assert_int_equal(seq, 19);
    journal_destroy(&j);
}

typedef struct {
    int n;
    char seen[8][160];
} each_t;

static int s_each(const journal_cursor_t *c, void *arg)
{
    each_t *e = arg;
    if (e->n < 8)
        snprintf(e->seen[e->n], sizeof e->seen[0], "%s|%s|%llu|%s", c->agency, c->name,
                 (unsigned long long)c->acked, c->filters);
    e->n++;
    return 0;
}

static int s_each_stop(const journal_cursor_t *c, void *arg)
{
    (void)c;
    ++*(int *)arg;
    return 7;
}

static void test_cursors(void **state)
{
    fixture_t *f = *state;
    journal_t *j = journal_new(&f->opts);
    assert_non_null(j);
    uint64_t acked = 77;
    char *filters = NULL;
    assert_int_equal(journal_cursor_get(j, "tax-office", "main", &acked, &filters),
                     JOURNAL_NOTFOUND);
    assert_null(filters);

    journal_cursor_t cs[3] = {
        {.agency = "tax-office", .name = "main", .acked = 0, .filters = "population.*"},
        {.agency = "tax-office", .name = "audit", .acked = 12, .filters = "*"},
        {.agency = "health", .name = "main", .acked = 3, .filters = "a.b\nc.*"},
    };
    assert_int_equal(journal_save_cursors(j, cs, 3), JOURNAL_OK);
    assert_int_equal(journal_cursor_get(j, "tax-office", "main", &acked, &filters), JOURNAL_OK);
    assert_int_equal(acked, 0);
    assert_string_equal(filters, "population.*");
    free(filters);
    assert_int_equal(journal_cursor_get(j, "health", "main", &acked, NULL), JOURNAL_OK);
    assert_int_equal(acked, 3);
    /* agency and name are separate: "tax-office"+"main" is not "tax"+"-office..." */
    assert_int_equal(journal_cursor_get(j, "tax", "office", &acked, NULL), JOURNAL_NOTFOUND);

    /* overwrite; NULL filters store as empty */
    cs[1].acked = 40;
    cs[1].filters = NULL;
    assert_int_equal(journal_save_cursors(j, &cs[1], 1), JOURNAL_OK);
    assert_int_equal(journal_cursor_get(j, "tax-office", "audit", &acked, &filters), JOURNAL_OK);
    assert_int_equal(acked, 40);
    assert_string_equal(filters, "");
    free(filters);

    /* a cursor saved together with a batch */
    batch_t b = s_batch("health", 1, 5, 0);
    journal_cursor_t c = {.agency = "tax-office", .name = "main", .acked = 4,
                          .filters = "population.*\ntax.*"};
    assert_int_equal(journal_append_batch(j, b.e, 5, &c, 1), JOURNAL_OK);
    s_batch_free(&b);
    assert_int_equal(journal_cursor_get(j, "tax-office", "main", &acked, &filters), JOURNAL_OK);
    assert_int_equal(acked, 4);
    assert_string_equal(filters, "population.*\ntax.*");
    free(filters);

    /* survives reopen; each visits in key order */
    journal_destroy(&j);
    j = journal_new(&f->opts);
    assert_non_null(j);
    each_t e = {0};
    assert_int_equal(journal_cursor_each(j, s_each, &e), JOURNAL_OK);
    assert_int_equal(e.n, 3);
    assert_string_equal(e.seen[0], "health|main|3|a.b\nc.*");
    assert_string_equal(e.seen[1], "tax-office|audit|40|");
    assert_string_equal(e.seen[2], "tax-office|main|4|population.*\ntax.*");
    int calls = 0;
    assert_int_equal(journal_cursor_each(j, s_each_stop, &calls), 7);
    assert_int_equal(calls, 1);
    assert_int_equal(journal_save_cursors(j, NULL, 0), JOURNAL_OK);
    journal_destroy(&j);
}

static void test_map_growth(void **state)
{
    fixture_t *f = *state;
    f->opts.map_init = 1 * MIB;
    f->opts.map_max = 256 * MIB;
    journal_t *j = journal_new(&f->opts);
    assert_non_null(j);
    journal_stats_t st;
    assert_int_equal(journal_stats(j, &st), JOURNAL_OK);
    assert_int_equal(st.map_size, 1 * MIB);

    /* ~10 MiB in batches of 100 x 1 KiB */
    uint64_t k = 1;
    for (int i = 0; i < 100; i++, k += 100) {
        batch_t b = s_batch("ee.population-register", k, 100, 1024);
        assert_int_equal(journal_append_batch(j, b.e, 100, NULL, 0), JOURNAL_OK);
        assert_int_equal(b.e[99].seq, k + 99);
        s_batch_free(&b);
    }
    /* one entry bigger than two doublings, in a single batch */
    batch_t big = s_batch("ee.population-register", k, 1, 24 * MIB);
    assert_int_equal(journal_append_batch(j, big.e, 1, NULL, 0), JOURNAL_OK);
    assert_int_equal(big.e[0].seq, k);
    s_batch_free(&big);

    assert_int_equal(journal_stats(j, &st), JOURNAL_OK);
    assert_true(st.map_size >= 32 * MIB);
    assert_true(st.map_size <= 256 * MIB);
    assert_true(st.used_bytes > 34 * MIB);
    assert_int_equal(st.entries, k);
    s_check_log(j, k);
    journal_destroy(&j);

    /* the grown size is kept, not shrunk back to map_init */
    j = journal_new(&f->opts);
    assert_non_null(j);
    journal_stats_t st2;
    assert_int_equal(journal_stats(j, &st2), JOURNAL_OK);
    assert_int_equal(st2.map_size, st.map_size);
    s_check_log(j, k);
    journal_destroy(&j);
}

static void test_map_full(void **state)
{
    fixture_t *f = *state;
    f->opts.map_init = 1 * MIB;
    f->opts.map_max = 2 * MIB;
    journal_t *j = journal_new(&f->opts);
    assert_non_null(j);

    uint64_t k = 1;
    int rc = JOURNAL_OK;
    int batches = 0;
    for (; batches < 1000; batches++) {
        batch_t b = s_batch("ee.population-register", k, 10, 4000);
        rc = journal_append_batch(j, b.e, 10, NULL, 0);
        s_batch_free(&b);
        if (rc != JOURNAL_OK)
            break;
        k += 10;
    }
    assert_int_equal(rc, JOURNAL_FULL);
    assert_true(batches > 10); /* it did grow past 1 MiB first */
    uint64_t last = k - 1;
    assert_int_equal(journal_last_seq(j), last);
    journal_stats_t st;
    assert_int_equal(journal_stats(j, &st), JOURNAL_OK);
    assert_int_equal(st.map_size, 2 * MIB);
    assert_int_equal(st.entries, last);
    s_check_log(j, last); /* reads work, no gaps, nothing of the failed batch */

    /* still full for the same batch; cursors alone may still fit */
    batch_t b = s_batch("ee.population-register", k, 10, 4000);
    assert_int_equal(journal_append_batch(j, b.e, 10, NULL, 0), JOURNAL_FULL);
    s_batch_free(&b);
    assert_int_equal(journal_last_seq(j), last);
    journal_cursor_t c = {.agency = "tax-office", .name = "main", .acked = last, .filters = "*"};
    rc = journal_save_cursors(j, &c, 1);
    assert_true(rc == JOURNAL_OK || rc == JOURNAL_FULL);
    /* a small entry can still fit in the remaining space; it gets seq last + 1 */
    b = s_batch("ee.population-register", k, 1, 64);
    rc = journal_append_batch(j, b.e, 1, NULL, 0);
    assert_true(rc == JOURNAL_OK || rc == JOURNAL_FULL);
    if (rc == JOURNAL_OK) {
        assert_int_equal(b.e[0].seq, last + 1);
        last++;
    }
    s_batch_free(&b);
    journal_destroy(&j);

    /* everything acknowledged is intact after reopen */
    j = journal_new(&f->opts);
    assert_non_null(j);
    s_check_log(j, last);
    journal_destroy(&j);
}

/* --- the de-duplication window ------------------------------------------- */

/* Append events first..first+n-1 again and expect them all to be duplicates
 * of seqs orig..orig+n-1 (orig 0: of themselves, seq k for event k). */
static void s_expect_dups(journal_t *j, uint64_t first, size_t n, uint64_t orig)
{
    uint64_t last = journal_last_seq(j);
    batch_t b = s_batch("ee.population-register", first, n, 64);
    assert_int_equal(journal_append_batch(j, b.e, n, NULL, 0), JOURNAL_OK);
    for (size_t i = 0; i < n; i++) {
        assert_true(b.e[i].duplicate);
        assert_int_equal(b.e[i].seq, (orig ? orig : first) + i);
    }
    s_batch_free(&b);
    assert_int_equal(journal_last_seq(j), last);
}

/* Append event k once and return the seq it got; *dup says if it was one. */
static uint64_t s_append_one(journal_t *j, uint64_t k, bool *dup)
{
    batch_t b = s_batch("ee.population-register", k, 1, 0);
    assert_int_equal(journal_append_batch(j, b.e, 1, NULL, 0), JOURNAL_OK);
    uint64_t seq = b.e[0].seq;
    *dup = b.e[0].duplicate;
    s_batch_free(&b);
    return seq;
}

typedef struct {
    uint64_t numbers[8]; /* event number at each visited seq */
    int64_t times[8];
    size_t n;
} numbers_t;

static int s_numbers(const journal_record_t *rec, void *arg)
{
    numbers_t *nb = arg;
    if (nb->n < 8) {
        nb->times[nb->n] = rec->received_at;
        nb->numbers[nb->n++] = s_event_number(rec->event);
    }
    return 0;
}

static void test_window_rebuilt_after_reopen(void **state)
{
    fixture_t *f = *state;
    f->opts.dedup_window = 1000;
    journal_t *j = journal_new(&f->opts);
    assert_non_null(j);
    for (uint64_t k = 1; k <= 2500; k += 500)
        s_append(j, k, 500);
    journal_destroy(&j);

    j = journal_new(&f->opts);
    assert_non_null(j);
    /* the last 1000 are recognised, with their original times */
    numbers_t orig = {.n = 0};
    assert_int_equal(journal_scan(j, 1501, 1, s_numbers, &orig), JOURNAL_OK);
    batch_t b = s_batch("ee.population-register", 1501, 1000, 64);
    assert_int_equal(journal_append_batch(j, b.e, b.n, NULL, 0), JOURNAL_OK);
    for (size_t i = 0; i < b.n; i++) {
        assert_true(b.e[i].duplicate);
        assert_int_equal(b.e[i].seq, 1501 + i);
    }
    assert_int_equal(b.e[0].received_at, orig.times[0]);
    s_batch_free(&b);
    assert_int_equal(journal_last_seq(j), 2500);

    /* event 1500 is just older than the window: appended anew */
    bool dup;
    assert_int_equal(s_append_one(j, 1500, &dup), 2501);
    assert_false(dup);
    assert_int_equal(s_append_one(j, 1500, &dup), 2501);
    assert_true(dup);
    journal_destroy(&j);

    /* a larger window after a restart holds both copies of event 1500: a
     * retry resolves to the first, the original */
    f->opts.dedup_window = 5000;
    j = journal_new(&f->opts);
    assert_non_null(j);
    assert_int_equal(s_append_one(j, 1500, &dup), 1500);
    assert_true(dup);
    s_expect_dups(j, 1, 500, 0);
    journal_destroy(&j);

    /* a smaller one holds only the last entries */
    f->opts.dedup_window = 1;
    j = journal_new(&f->opts);
    assert_non_null(j);
    assert_int_equal(s_append_one(j, 1500, &dup), 2501);
    assert_true(dup);
    assert_int_equal(s_append_one(j, 2500, &dup), 2502);
    assert_false(dup);
    journal_destroy(&j);
}

static void test_window_older_original(void **state)
{
    fixture_t *f = *state;
    f->opts.dedup_window = 1000;
    journal_t *j = journal_new(&f->opts);
    assert_non_null(j);
    for (uint64_t k = 1; k <= 1500; k += 500)
        s_append(j, k, 500);
    /* the window is seqs 501..1500 */
    bool dup;
    assert_int_equal(s_append_one(j, 501, &dup), 501);
    assert_true(dup);
    assert_int_equal(s_append_one(j, 500, &dup), 1501); /* too old: new */
    assert_false(dup);
    assert_int_equal(s_append_one(j, 501, &dup), 1502); /* 1501 pushed it out */
    assert_false(dup);

    /* in one batch: an old event twice, and one inside the window; the
     * window only moves after the commit, so 1000 is found as before */
    batch_t b = s_batch("ee.population-register", 100, 1, 0);
    batch_t c = s_batch("ee.population-register", 1000, 1, 0);
    journal_entry_t e[3] = {b.e[0], b.e[0], c.e[0]};
    assert_int_equal(journal_append_batch(j, e, 3, NULL, 0), JOURNAL_OK);
    assert_false(e[0].duplicate);
    assert_int_equal(e[0].seq, 1503);
    assert_true(e[1].duplicate);
    assert_int_equal(e[1].seq, 1503);
    assert_int_equal(e[1].received_at, e[0].received_at);
    assert_true(e[2].duplicate);
    assert_int_equal(e[2].seq, 1000);
    s_batch_free(&b);
    s_batch_free(&c);

    /* the re-appended events are stored whole, with their ids */
    numbers_t nb = {.n = 0};
    assert_int_equal(journal_scan(j, 1501, 0, s_numbers, &nb), JOURNAL_OK);
    assert_int_equal(nb.n, 3);
    assert_int_equal(nb.numbers[0], 500);
    assert_int_equal(nb.numbers[1], 501);
    assert_int_equal(nb.numbers[2], 100);
    int rc;
    scan_t s = s_scan(j, 1501, 0, &rc);
    assert_int_equal(rc, JOURNAL_OK);
    assert_true(s.content_ok);
    assert_true(s.ids_ok);
    journal_destroy(&j);
}

static void test_full_batch_leaves_window(void **state)
{
    fixture_t *f = *state;
    f->opts.map_init = 1 * MIB;
    f->opts.map_max = 2 * MIB;
    f->opts.dedup_window = 50;
    journal_t *j = journal_new(&f->opts);
    assert_non_null(j);
    uint64_t k = 1;
    int rc = JOURNAL_OK;
    while (rc == JOURNAL_OK) {
        batch_t b = s_batch("ee.population-register", k, 10, 4000);
        rc = journal_append_batch(j, b.e, 10, NULL, 0);
        s_batch_free(&b);
        if (rc == JOURNAL_OK)
            k += 10;
    }
    assert_int_equal(rc, JOURNAL_FULL);
    uint64_t last = k - 1;
    assert_true(last > 50);
    /* Had the failed batch entered the window, its ten seqs would have
     * pushed out last-49..last-40. They are all still recognised (and a
     * batch of duplicates only writes nothing, so it succeeds when full). */
    s_expect_dups(j, last - 49, 50, 0);
    journal_destroy(&j);

    /* with a higher ceiling the same events get fresh seqs, then are
     * duplicates */
    f->opts.map_max = 4 * MIB;
    j = journal_new(&f->opts);
    assert_non_null(j);
    batch_t b = s_batch("ee.population-register", k, 10, 4000);
    assert_int_equal(journal_append_batch(j, b.e, 10, NULL, 0), JOURNAL_OK);
    for (size_t i = 0; i < 10; i++) {
        assert_false(b.e[i].duplicate);
        assert_int_equal(b.e[i].seq, last + 1 + i);
    }
    assert_int_equal(journal_append_batch(j, b.e, 10, NULL, 0), JOURNAL_OK);
    for (size_t i = 0; i < 10; i++) {
        assert_true(b.e[i].duplicate);
        assert_int_equal(b.e[i].seq, last + 1 + i);
    }
    s_batch_free(&b);
    s_check_log(j, last + 10);
    journal_destroy(&j);
}

typedef struct {
    size_t source_len, event_id_len;
    bool bytes_ok;
} limits_t;

static int s_limits(const journal_record_t *rec, void *arg)
{
    limits_t *l = arg;
    l->source_len = rec->source_len;
    l->event_id_len = rec->event_id_len;
    l->bytes_ok = rec->type_len == 1 && rec->type[0] == 't' && rec->event_len == 64 &&
                  s_event_check(rec->event, rec->event_len, 1);
    for (size_t i = 0; i < rec->source_len; i++)
        l->bytes_ok = l->bytes_ok && rec->source[i] == 's';
    for (size_t i = 0; i < rec->event_id_len; i++)
        l->bytes_ok = l->bytes_ok && rec->event_id[i] == 'i';
    return 0;
}

static void test_id_limits(void **state)
{
    fixture_t *f = *state;
    journal_t *j = journal_new(&f->opts);
    assert_non_null(j);
    char src[257], id[257];
    memset(src, 's', 256);
    memset(id, 'i', 256);
    src[256] = id[256] = '\0';
    uint8_t ev[64];
    s_event_fill(ev, sizeof ev, 1);
    /* 255 bytes each: the most one header byte can say */
    journal_entry_t e = {.source = src + 1, .event_id = id + 1, .type = "t", .event = ev,
                         .event_len = sizeof ev};
    journal_entry_t too_long = e;
    too_long.source = src;
    assert_int_equal(journal_append_batch(j, &too_long, 1, NULL, 0), JOURNAL_INVALID);
    too_long = e;
    too_long.event_id = id;
    assert_int_equal(journal_append_batch(j, &too_long, 1, NULL, 0), JOURNAL_INVALID);
    assert_int_equal(journal_last_seq(j), 0);

    assert_int_equal(journal_append_batch(j, &e, 1, NULL, 0), JOURNAL_OK);
    assert_int_equal(e.seq, 1);
    assert_false(e.duplicate);
    limits_t l = {0};
    assert_int_equal(journal_scan(j, 1, 0, s_limits, &l), JOURNAL_OK);
    assert_int_equal(l.source_len, 255);
    assert_int_equal(l.event_id_len, 255);
    assert_true(l.bytes_ok);

    /* one byte less of id is another event; both are recognised later */
    journal_entry_t shorter = e;
    shorter.event_id = id + 2;
    assert_int_equal(journal_append_batch(j, &shorter, 1, NULL, 0), JOURNAL_OK);
    assert_false(shorter.duplicate);
    assert_int_equal(shorter.seq, 2);
    journal_destroy(&j);
    j = journal_new(&f->opts);
    assert_non_null(j);
    journal_entry_t again[2] = {e, shorter};
    assert_int_equal(journal_append_batch(j, again, 2, NULL, 0), JOURNAL_OK);
    assert_true(again[0].duplicate);
    assert_int_equal(again[0].seq, 1);
    assert_true(again[1].duplicate);
    assert_int_equal(again[1].seq, 2);
    assert_int_equal(journal_last_seq(j), 2);
    journal_destroy(&j);
}

/* The child's side of test_read_only_concurrent: plain checks, exit codes.
 * It opens the journal only after the writer has committed 20 entries. */
static int s_reader(const char *dir, int ready_fd, int go_fd)
{
    char c;
    if (read(go_fd, &c, 1) != 1)
        return 9;
    journal_opts_t ro = {.dir = dir, .read_only = true};
    journal_t *j = journal_new(&ro);
    if (!j)
        return 10;
    int code = 0;
    scan_t s = {.ordered = true, .content_ok = true, .number_is_seq = true};
    uint64_t acked = 0;
    journal_entry_t e = {.source = "a", .event_id = "b", .type = "t"};
    s.ids_ok = true;
    if (journal_last_seq(j) != 20 || journal_first_seq(j) != 1)
        code = 11;
    else if (journal_scan(j, 1, 0, s_visit, &s) != JOURNAL_OK || s.count != 20 || !s.ordered ||
             !s.content_ok || !s.ids_ok)
        code = 12;
    else if (journal_append_batch(j, &e, 1, NULL, 0) != JOURNAL_INVALID)
        code = 13;
    else if (write(ready_fd, "r", 1) != 1 || read(go_fd, &c, 1) != 1)
        code = 14;
    if (code)
        goto done;
    /* the writer appended 21..40 and grew the map meanwhile */
    s = (scan_t){.ordered = true, .content_ok = true, .number_is_seq = true};
    if (journal_scan(j, 0, 0, s_visit, &s) != JOURNAL_OK || s.count != 40 || s.last != 40 ||
        !s.ordered || !s.content_ok)
        code = 15;
    else if (journal_last_seq(j) != 40)
        code = 16;
    else if (journal_cursor_get(j, "tax-office", "main", &acked, NULL) != JOURNAL_OK || acked != 40)
        code = 17;
done:
    journal_destroy(&j);
    return code;
}

static void test_read_only_concurrent(void **state)
{
    fixture_t *f = *state;
    /* nothing there yet: a reader does not create */
    journal_opts_t ro = {.dir = f->dir, .read_only = true};
    assert_null(journal_new(&ro));

    /* fork before opening anything: LMDB environments must not cross a fork */
    int ready[2], go[2];
    assert_int_equal(pipe(ready), 0);
    assert_int_equal(pipe(go), 0);
    pid_t pid = fork();
    assert_true(pid >= 0);
    if (pid == 0) {
        close(ready[0]);
        close(go[1]);
        _exit(s_reader(f->dir, ready[1], go[0]));
    }
    close(ready[1]);
    close(go[0]);

    f->opts.map_init = 1 * MIB;
    f->opts.no_sync = false;
    journal_t *j = journal_new(&f->opts);
    assert_non_null(j);
    s_append(j, 1, 20);
    assert_int_equal(write(go[1], "g", 1), 1);
    char c;
    assert_int_equal(read(ready[0], &c, 1), 1);
    /* grow the map (1 MiB -> 8 MiB) while the reader holds the old mapping */
    batch_t b = s_batch("ee.population-register", 21, 20, 200 * 1024);
    journal_cursor_t cur = {.agency = "tax-office", .name = "main", .acked = 40, .filters = "*"};
    assert_int_equal(journal_append_batch(j, b.e, 20, &cur, 1), JOURNAL_OK);
    s_batch_free(&b);
    journal_stats_t st;
    assert_int_equal(journal_stats(j, &st), JOURNAL_OK);
    assert_true(st.map_size > 1 * MIB);
    assert_int_equal(write(go[1], "g", 1), 1);
    int status = 0;
    assert_int_equal(waitpid(pid, &status, 0), pid);
    close(ready[0]);
    close(go[1]);
    journal_destroy(&j);
    assert_true(WIFEXITED(status));
    assert_int_equal(WEXITSTATUS(status), 0);
}

/* Read (put false) or rewrite (put true) a record in place with raw LMDB
 * (the journal closed meanwhile). */
static void s_raw_op(const char *dir, const char *db, unsigned db_flags, MDB_val *key, MDB_val *val, bool put)
{
    MDB_env *env;
    MDB_txn *txn;
    MDB_dbi dbi;
    assert_int_equal(mdb_env_create(&env), 0);
    assert_int_equal(mdb_env_set_maxdbs(env, 4), 0);
    assert_int_equal(mdb_env_open(env, dir, 0, 0600), 0);
    assert_int_equal(mdb_txn_begin(env, NULL, 0, &txn), 0);
    assert_int_equal(mdb_dbi_open(txn, db, db_flags, &dbi), 0);
    assert_int_equal(put ? mdb_put(txn, dbi, key, val, 0) : mdb_get(txn, dbi, key, val), 0);
    if (!put) { /* LMDB's copy dies with the transaction */
        void *copy = malloc(val->mv_size);
        assert_non_null(copy);
        memcpy(copy, val->mv_data, val->mv_size);
        val->mv_data = copy;
    }
    assert_int_equal(mdb_txn_commit(txn), 0);
    mdb_env_close(env);
}

static void s_raw_put(const char *dir, const char *db, unsigned db_flags, MDB_val *key, MDB_val *val)
{
    s_raw_op(dir, db, db_flags, key, val, true);
}

static void test_corrupt_entry_and_version(void **state)
{
    fixture_t *f = *state;
    journal_t *j = journal_new(&f->opts);
    assert_non_null(j);
    s_append(j, 1, 3);
    journal_destroy(&j);

    /* entry 2 claims a type longer than itself */
    uint64_t seq = 2;
    uint8_t bad[52] = {2, 0, 0xe8, 0x03};
    MDB_val key = {sizeof seq, &seq}, val = {sizeof bad, bad};
    s_raw_put(f->dir, "log", MDB_INTEGERKEY, &key, &val);
    j = journal_new(&f->opts);
    assert_non_null(j);
    int rc;
    scan_t s = s_scan(j, 1, 0, &rc);
    assert_int_equal(rc, JOURNAL_CORRUPT);
    assert_int_equal(s.count, 1);
    /* the window was rebuilt around the bad entry (logged, not fatal): its
     * neighbours are recognised, a retry of event 2 is appended anew */
    s_expect_dups(j, 1, 1, 0);
    s_expect_dups(j, 3, 1, 0);
    bool dup;
    assert_int_equal(s_append_one(j, 2, &dup), 4);
    assert_false(dup);
    journal_destroy(&j);

    /* entry 3 claims source and event_id longer than itself */
    seq = 3;
    uint8_t bad_ids[56] = {2, 0, 1, 0, 200, 200};
    key = (MDB_val){sizeof seq, &seq};
    val = (MDB_val){sizeof bad_ids, bad_ids};
    s_raw_put(f->dir, "log", MDB_INTEGERKEY, &key, &val);
    j = journal_new(&f->opts);
    assert_non_null(j);
    s = s_scan(j, 3, 0, &rc);
    assert_int_equal(rc, JOURNAL_CORRUPT);
    assert_int_equal(s.count, 0);
    s = s_scan(j, 4, 0, &rc);
    assert_int_equal(rc, JOURNAL_OK);
    assert_int_equal(s.count, 1);
    assert_true(s.content_ok);
    journal_destroy(&j);

    /* an unknown format version is refused */
    uint8_t v2[4] = {3, 0, 0, 0};
    key = (MDB_val){7, "version"};
    val = (MDB_val){sizeof v2, v2};
    s_raw_put(f->dir, "meta", 0, &key, &val);
    assert_null(journal_new(&f->opts));
    journal_opts_t ro = {.dir = f->dir, .read_only = true};
    assert_null(journal_new(&ro));
}

static void test_creates_missing_dirs(void **state)
{
    fixture_t *f = *state;
    char sub[128];
    snprintf(sub, sizeof sub, "%s/a/b", f->dir);
    journal_opts_t o = {.dir = sub, .no_sync = true};
    journal_t *j = journal_new(&o);
    assert_non_null(j);
    s_append(j, 1, 2);
    journal_destroy(&j);
    struct stat st;
    assert_int_equal(stat(sub, &st), 0);
    assert_int_equal(st.st_mode & 0777, 0700);
}

/* --- retention ------------------------------------------------------------ */

/* Call journal_retain until nothing more is due; the total deleted. Each
 * call deletes at most batch entries. */
static uint64_t s_retain_all(journal_t *j, int64_t now_us, size_t batch, int *calls)
{
    uint64_t total = 0;
    *calls = 0;
    for (int i = 0; i < 100000; i++) {
        size_t n = 99;
        assert_int_equal(journal_retain(j, now_us, &n), JOURNAL_OK);
        assert_true(n <= batch);
        if (n == 0)
            return total;
        total += n;
        ++*calls;
    }
    fail_msg("retention never finished");
    return total;
}

static int64_t s_now_us(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_REALTIME, &ts);
    return (int64_t)ts.tv_sec * 1000000 + ts.tv_nsec / 1000;
}

/* The log is first..last, gapless and intact, and the journal says so. */
static void s_check_range(journal_t *j, uint64_t first, uint64_t last)
{
    int rc;
    scan_t s = s_scan(j, 0, 0, &rc);
    assert_int_equal(rc, JOURNAL_OK);
    assert_int_equal(s.count, last - first + 1);
    assert_int_equal(s.first, first);
    assert_int_equal(s.last, last);
    assert_true(s.ordered);
    assert_true(s.content_ok);
    assert_true(s.number_is_seq);
    assert_int_equal(journal_first_seq(j), first);
    assert_int_equal(journal_last_seq(j), last);
    journal_retention_stats_t rs;
    journal_retention_stats(j, &rs);
    assert_int_equal(rs.first_seq, first);
    assert_int_equal(rs.anchor_seq, first - 1);
    assert_int_equal(rs.deleted_total, first - 1);
}

/* Sign a checkpoint of the journal's head with key and store it; returns it. */
static logfile_checkpoint_t s_checkpoint(journal_t *j, const crypto_key_t *key)
{
    logfile_checkpoint_t cp = {.seq = journal_last_seq(j), .time = s_now_us()};
    journal_chain_head(j, cp.chain);
    assert_int_equal(logfile_checkpoint_sign(&cp, key), CRYPTO_OK);
    assert_int_equal(journal_checkpoint_put(j, &cp), JOURNAL_OK);
    return cp;
}

/* Run the offline verifier on dir (the journal must be closed) with key as
 * the hub's only signing key, and n witnessed checkpoints. */
static int s_verify_witness(const char *dir, const crypto_key_t *key, uint64_t from, const logfile_witness_t *w,
                            size_t n, logfile_report_t *rep)
{
    char err[256];
    logfile_t *lf = logfile_open(dir, err, sizeof err);
    if (!lf)
        fail_msg("logfile_open: %s", err);
    keyfile_hub_t keys = {.n_sign = 1};
    crypto_key_public(key, keys.sign[0].pub);
    keys.sign[0].not_after = KEYFILE_FOREVER;
    keys.sign[0].revoked_at = KEYFILE_FOREVER;
    int rc = logfile_verify(lf, &keys, from, w, n, rep);
    logfile_destroy(&lf);
    return rc;
}

static int s_verify(const char *dir, const crypto_key_t *key, uint64_t from, logfile_report_t *rep)
{
    return s_verify_witness(dir, key, from, NULL, 0, rep);
}

/* Read (put false) or replace (put true) the retention anchor with raw LMDB. */
static void s_raw_anchor(const char *dir, uint8_t anchor[LOGFILE_ANCHOR_LEN], bool put)
{
    MDB_val key = {sizeof LOGFILE_ANCHOR_KEY - 1, LOGFILE_ANCHOR_KEY}, val = {LOGFILE_ANCHOR_LEN, anchor};
    s_raw_op(dir, "meta", 0, &key, &val, put);
    if (!put) {
        assert_int_equal(val.mv_size, LOGFILE_ANCHOR_LEN);
        memcpy(anchor, val.mv_data, LOGFILE_ANCHOR_LEN);
        free(val.mv_data);
    }
}

static void test_retention_by_size(void **state)
{
    fixture_t *f = *state;
    journal_t *j = journal_new(&f->opts);
    assert_non_null(j);
    for (uint64_t k = 1; k <= 4000; k += 100)
        s_append(j, k, 100);
    journal_stats_t st;
    assert_int_equal(journal_stats(j, &st), JOURNAL_OK);
    assert_true(st.log_bytes > 4000 * 64);
    assert_true(st.log_bytes <= st.used_bytes);

    /* no rules, or rules without a limit: nothing is deleted */
    int calls;
    assert_int_equal(s_retain_all(j, s_now_us(), 0, &calls), 0);
    journal_retention_t rules = {.batch = 100};
    assert_int_equal(journal_retention_set(j, &rules), JOURNAL_OK);
    assert_int_equal(s_retain_all(j, s_now_us(), 0, &calls), 0);
    s_check_range(j, 1, 4000);

    uint64_t limit = st.log_bytes / 4;
    rules.max_bytes = limit;
    assert_int_equal(journal_retention_set(j, &rules), JOURNAL_OK);
    uint64_t deleted = s_retain_all(j, s_now_us(), 100, &calls);
    assert_true(deleted > 2000 && deleted < 4000);
    assert_true(calls >= 20); /* in transactions of at most 100 */
    assert_int_equal(journal_stats(j, &st), JOURNAL_OK);
    assert_true(st.log_bytes <= limit);
    assert_int_equal(st.entries, 4000 - deleted);
    s_check_range(j, deleted + 1, 4000);
    journal_retention_stats_t rs;
    journal_retention_stats(j, &rs);
    assert_false(rs.held);
    assert_true(rs.oldest_us > 0 && rs.oldest_us >= rs.anchor_us);

    /* a time before the first retained entry maps to it */
    uint64_t seq = 0;
    assert_int_equal(journal_seq_at_time(j, INT64_MIN, &seq), JOURNAL_OK);
    assert_int_equal(seq, deleted + 1);
    /* appending goes on where it was, and stays under the limit */
    for (uint64_t k = 4001; k <= 6000; k += 100) {
        s_append(j, k, 100);
        s_retain_all(j, s_now_us(), 100, &calls);
    }
    assert_int_equal(journal_stats(j, &st), JOURNAL_OK);
    assert_true(st.log_bytes <= limit);
    s_check_range(j, journal_first_seq(j), 6000);
    journal_destroy(&j);
}

static void test_retention_by_age(void **state)
{
    fixture_t *f = *state;
    journal_t *j = journal_new(&f->opts);
    assert_non_null(j);
    batch_t b = s_batch("ee.population-register", 1, 10, 0);
    assert_int_equal(journal_append_batch(j, b.e, 10, NULL, 0), JOURNAL_OK);
    int64_t t1 = b.e[0].received_at;
    s_batch_free(&b);
    usleep(3000); /* a later batch time */
    b = s_batch("ee.population-register", 11, 10, 0);
    assert_int_equal(journal_append_batch(j, b.e, 10, NULL, 0), JOURNAL_OK);
    int64_t t2 = b.e[0].received_at;
    s_batch_free(&b);
    assert_true(t2 > t1);

    journal_retention_t rules = {.max_age_us = 1000000};
    assert_int_equal(journal_retention_set(j, &rules), JOURNAL_OK);
    int calls;
    /* exactly max_age old is not older than it */
    assert_int_equal(s_retain_all(j, t1 + 1000000, 1000, &calls), 0);
    assert_int_equal(calls, 0);
    assert_int_equal(s_retain_all(j, t1 + 1000001, 1000, &calls), 10);
    assert_int_equal(calls, 1);
    s_check_range(j, 11, 20);
    journal_retention_stats_t rs;
    journal_retention_stats(j, &rs);
    assert_int_equal(rs.oldest_us, t2);
    assert_int_equal(rs.anchor_us, t1);

    /* everything is old: all but the newest entry go */
    assert_int_equal(s_retain_all(j, t2 + 3600 * 1000000LL, 1000, &calls), 9);
    s_check_range(j, 20, 20);
    s_append(j, 21, 5);
    s_check_range(j, 20, 25);
    journal_destroy(&j);

    /* the bounds and the anchor survive a restart */
    j = journal_new(&f->opts);
    assert_non_null(j);
    s_check_range(j, 20, 25);
    journal_retention_stats(j, &rs);
    assert_int_equal(rs.oldest_us, t2);
    assert_int_equal(rs.anchor_us, t2);
    s_append(j, 26, 5);
    s_check_range(j, 20, 30);
    journal_destroy(&j);
}

static void test_retention_anchor_verifies(void **state)
{
    fixture_t *f = *state;
    crypto_key_t *key = crypto_key_generate();
    assert_non_null(key);
    journal_t *j = journal_new(&f->opts);
    assert_non_null(j);
    s_append(j, 1, 50);
    logfile_witness_t w[2] = {{.cp = s_checkpoint(j, key), .line = 1}};
    s_append(j, 51, 50);
    w[1] = (logfile_witness_t){.cp = s_checkpoint(j, key), .line = 2};
    s_append(j, 101, 50);
    /* everything is due; only what the checkpoint at 100 covers goes */
    journal_retention_t rules = {.max_bytes = 1, .batch = 30, .covered_only = true};
    assert_int_equal(journal_retention_set(j, &rules), JOURNAL_OK);
    int calls;
    assert_int_equal(s_retain_all(j, s_now_us(), 30, &calls), 100);
    assert_int_equal(calls, 4);
    s_check_range(j, 101, 150);
    logfile_checkpoint_t cp;
    assert_int_equal(journal_checkpoint_get(j, 50, &cp), JOURNAL_NOTFOUND);
    assert_int_equal(journal_checkpoint_get(j, 100, &cp), JOURNAL_OK);
    journal_destroy(&j);

    /* the chain verifies from the anchor; the checkpoint at the anchor's seq
     * vouches for the anchor itself */
    logfile_report_t rep;
    assert_int_equal(s_verify(f->dir, key, 0, &rep), LOGFILE_OK);
    assert_int_equal(rep.anchor_seq, 100);
    assert_int_equal(rep.first_seq, 101);
    assert_int_equal(rep.last_seq, 150);
    assert_int_equal(rep.entries, 50);
    assert_int_equal(rep.checkpoints, 1);
    assert_int_equal(rep.last_checkpoint, 100);
    /* a start among the deleted entries starts at the anchor */
    assert_int_equal(s_verify(f->dir, key, 7, &rep), LOGFILE_OK);
    assert_int_equal(rep.first_seq, 101);
    assert_int_equal(s_verify(f->dir, key, 120, &rep), LOGFILE_OK);
    assert_int_equal(rep.first_seq, 120);
    assert_int_equal(rep.checkpoints, 0);

    /* Checkpoints kept outside: the one at 50 names an entry retention
     * deleted and cannot be compared (counted, not failed); the one at the
     * anchor's seq is compared with the anchor's chain hash. */
    assert_int_equal(s_verify_witness(f->dir, key, 0, w, 2, &rep), LOGFILE_OK);
    assert_int_equal(rep.witness_deleted, 1);
    assert_int_equal(rep.witnessed, 1);
    assert_int_equal(rep.last_witnessed, 100);
    /* from 120 on: entry 100 is as gone as entry 50 */
    assert_int_equal(s_verify_witness(f->dir, key, 120, w, 2, &rep), LOGFILE_OK);
    assert_int_equal(rep.witness_deleted, 2);
    assert_int_equal(rep.witnessed, 0);
    logfile_witness_t other = w[1];
    other.cp.chain[5] ^= 1;
    assert_int_equal(logfile_checkpoint_sign(&other.cp, key), CRYPTO_OK);
    assert_int_equal(s_verify_witness(f->dir, key, 0, &other, 1, &rep), LOGFILE_TAMPERED);
    assert_int_equal(rep.bad_seq, 100);
    assert_non_null(strstr(rep.problem, "witnessed checkpoint (line 2) differs"));
    /* witnessed beyond the retained log's end: cut back */
    other = w[1];
    other.cp.seq = 151;
    assert_int_equal(logfile_checkpoint_sign(&other.cp, key), CRYPTO_OK);
    assert_int_equal(s_verify_witness(f->dir, key, 0, &other, 1, &rep), LOGFILE_TAMPERED);
    assert_int_equal(rep.bad_seq, 151);
    assert_non_null(strstr(rep.problem, "covers seq 151 (truncated)"));

    /* a forged anchor is caught by the checkpoint at its seq */
    uint8_t anchor[LOGFILE_ANCHOR_LEN], forged[LOGFILE_ANCHOR_LEN];
    s_raw_anchor(f->dir, anchor, false);
    memcpy(forged, anchor, sizeof forged);
    forged[20] ^= 1;
    s_raw_anchor(f->dir, forged, true);
    assert_int_equal(s_verify(f->dir, key, 0, &rep), LOGFILE_TAMPERED);
    assert_int_equal(rep.bad_seq, 100);
    s_raw_anchor(f->dir, anchor, true);

    /* on after a restart: more entries, a checkpoint, more deletion */
    j = journal_new(&f->opts);
    assert_non_null(j);
    s_check_range(j, 101, 150);
    s_append(j, 151, 10);
    s_checkpoint(j, key);
    assert_int_equal(journal_retention_set(j, &rules), JOURNAL_OK);
    assert_int_equal(s_retain_all(j, s_now_us(), 30, &calls), 59); /* the newest entry stays */
    s_check_range(j, 160, 160);
    assert_int_equal(journal_checkpoint_get(j, 100, &cp), JOURNAL_NOTFOUND);
    assert_int_equal(journal_checkpoint_get(j, 160, &cp), JOURNAL_OK);
    journal_destroy(&j);
    assert_int_equal(s_verify(f->dir, key, 0, &rep), LOGFILE_OK);
    assert_int_equal(rep.anchor_seq, 159);
    assert_int_equal(rep.entries, 1);
    assert_int_equal(rep.checkpoints, 1);
    assert_int_equal(rep.last_checkpoint, 160);
    /* with no checkpoint at its seq, the anchor is vouched for by the
     * entries chained to it, up to the next checkpoint */
    s_raw_anchor(f->dir, anchor, false);
    anchor[40] ^= 1;
    s_raw_anchor(f->dir, anchor, true);
    assert_int_equal(s_verify(f->dir, key, 0, &rep), LOGFILE_TAMPERED);
    assert_int_equal(rep.bad_seq, 160);
    /* and one that does not parse (too short) is named */
    MDB_val k = {sizeof LOGFILE_ANCHOR_KEY - 1, LOGFILE_ANCHOR_KEY}, v = {8, anchor};
    s_raw_put(f->dir, "meta", 0, &k, &v);
    assert_int_equal(s_verify(f->dir, key, 0, &rep), LOGFILE_TAMPERED);
    assert_non_null(strstr(rep.problem, "anchor"));
    assert_null(journal_new(&f->opts));
    crypto_key_destroy(&key);
}

static void test_retention_keeps_subscriptions(void **state)
{
    fixture_t *f = *state;
    journal_t *j = journal_new(&f->opts);
    assert_non_null(j);
    s_append(j, 1, 100);
    journal_cursor_t c = {.agency = "tax-office", .name = "main", .acked = 30, .filters = "*"};
    assert_int_equal(journal_save_cursors(j, &c, 1), JOURNAL_OK);

    /* a kept subscription that has no cursor yet holds the whole log */
    journal_retention_t rules = {.max_bytes = 1, .keep = "tax-office/main,health/audit"};
    assert_int_equal(journal_retention_set(j, &rules), JOURNAL_OK);
    int calls;
    assert_int_equal(s_retain_all(j, s_now_us(), 1000, &calls), 0);
    journal_retention_stats_t rs;
    journal_retention_stats(j, &rs);
    assert_true(rs.held);
    s_check_range(j, 1, 100);

    /* entries after the cursor stay, however far over the limit */
    rules.keep = " tax-office/main ,, ";
    assert_int_equal(journal_retention_set(j, &rules), JOURNAL_OK);
    assert_int_equal(s_retain_all(j, s_now_us(), 1000, &calls), 30);
    s_check_range(j, 31, 100);
    journal_retention_stats(j, &rs);
    assert_true(rs.held);
    c.acked = 60;
    assert_int_equal(journal_save_cursors(j, &c, 1), JOURNAL_OK);
    assert_int_equal(s_retain_all(j, s_now_us(), 1000, &calls), 30);
    s_check_range(j, 61, 100);

    /* a bad list is refused and the rules in force stay */
    const char *bad[] = {"tax-office", "Tax/main", "tax-office/", "/main", "a/b/c", "tax-office/m ain"};
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
        journal_retention_t r = {.max_bytes = 1, .keep = bad[i]};
        assert_int_equal(journal_retention_set(j, &r), JOURNAL_INVALID);
    }
    c.acked = 90;
    assert_int_equal(journal_save_cursors(j, &c, 1), JOURNAL_OK);
    assert_int_equal(s_retain_all(j, s_now_us(), 1000, &calls), 30);
    s_check_range(j, 91, 100);
    journal_destroy(&j);

    journal_opts_t ro = {.dir = f->dir, .read_only = true};
    j = journal_new(&ro);
    assert_non_null(j);
    size_t n;
    assert_int_equal(journal_retention_set(j, &rules), JOURNAL_INVALID);
    assert_int_equal(journal_retain(j, s_now_us(), &n), JOURNAL_INVALID);
    journal_destroy(&j);
}

static void test_retention_dedup(void **state)
{
    fixture_t *f = *state;
    f->opts.dedup_window = 1000;
    journal_t *j = journal_new(&f->opts);
    assert_non_null(j);
    s_append(j, 1, 100);
    journal_retention_t rules = {.max_bytes = 1};
    assert_int_equal(journal_retention_set(j, &rules), JOURNAL_OK);
    int calls;
    assert_int_equal(s_retain_all(j, s_now_us(), 1000, &calls), 99);
    /* a retry of a deleted event cannot be recognised: it is new */
    bool dup;
    assert_int_equal(s_append_one(j, 50, &dup), 101);
    assert_false(dup);
    assert_int_equal(s_append_one(j, 100, &dup), 100);
    assert_true(dup);
    journal_destroy(&j);
    /* the window is rebuilt from the first retained entry */
    j = journal_new(&f->opts);
    assert_non_null(j);
    assert_int_equal(journal_first_seq(j), 100);
    assert_int_equal(s_append_one(j, 100, &dup), 100);
    assert_true(dup);
    assert_int_equal(s_append_one(j, 50, &dup), 101);
    assert_true(dup);
    journal_destroy(&j);
}

/* Under a steady load with a size limit LMDB reuses the freed pages: the
 * file stops growing. Measured against itself, not against a constant: after
 * three times the limit's volume it is at most twice what it was after one. */
static void test_retention_file_stays_flat(void **state)
{
    fixture_t *f = *state;
    f->opts.map_init = 1 * MIB;
    journal_t *j = journal_new(&f->opts);
    assert_non_null(j);
    const uint64_t limit = 2 * MIB, event = 1000, per_batch = 100;
    journal_retention_t rules = {.max_bytes = limit};
    assert_int_equal(journal_retention_set(j, &rules), JOURNAL_OK);
    uint64_t volume = 0, k = 1, after_one = 0;
    journal_stats_t st;
    while (volume < 3 * limit) {
        batch_t b = s_batch("ee.population-register", k, per_batch, event);
        assert_int_equal(journal_append_batch(j, b.e, per_batch, NULL, 0), JOURNAL_OK);
        s_batch_free(&b);
        k += per_batch;
        volume += per_batch * event;
        size_t n;
        do
            assert_int_equal(journal_retain(j, s_now_us(), &n), JOURNAL_OK);
        while (n);
        assert_int_equal(journal_stats(j, &st), JOURNAL_OK);
        assert_true(st.log_bytes <= limit);
        if (!after_one && volume >= limit)
            after_one = st.file_bytes;
    }
    assert_true(journal_first_seq(j) > 1);
    assert_true(st.file_bytes <= 2 * after_one);
    print_message("file %llu bytes after %llu written, %llu after %llu\n", (unsigned long long)after_one,
                  (unsigned long long)limit, (unsigned long long)st.file_bytes, (unsigned long long)volume);
    journal_destroy(&j);
}

int main(void)
{
    log_set_level(LOG_ERROR);
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_setup_teardown(test_append_and_read_back, s_setup, s_teardown),
        cmocka_unit_test_setup_teardown(test_reopen_continues, s_setup, s_teardown),
        cmocka_unit_test_setup_teardown(test_duplicates, s_setup, s_teardown),
        cmocka_unit_test_setup_teardown(test_invalid_arguments, s_setup, s_teardown),
        cmocka_unit_test_setup_teardown(test_received_at_monotonic, s_setup, s_teardown),
        cmocka_unit_test_setup_teardown(test_seq_at_time, s_setup, s_teardown),
        cmocka_unit_test_setup_teardown(test_cursors, s_setup, s_teardown),
        cmocka_unit_test_setup_teardown(test_map_growth, s_setup, s_teardown),
        cmocka_unit_test_setup_teardown(test_map_full, s_setup, s_teardown),
        cmocka_unit_test_setup_teardown(test_window_rebuilt_after_reopen, s_setup, s_teardown),
        cmocka_unit_test_setup_teardown(test_window_older_original, s_setup, s_teardown),
        cmocka_unit_test_setup_teardown(test_full_batch_leaves_window, s_setup, s_teardown),
        cmocka_unit_test_setup_teardown(test_id_limits, s_setup, s_teardown),
        cmocka_unit_test_setup_teardown(test_read_only_concurrent, s_setup, s_teardown),
        cmocka_unit_test_setup_teardown(test_corrupt_entry_and_version, s_setup, s_teardown),
        cmocka_unit_test_setup_teardown(test_creates_missing_dirs, s_setup, s_teardown),
        cmocka_unit_test_setup_teardown(test_retention_by_size, s_setup, s_teardown),
        cmocka_unit_test_setup_teardown(test_retention_by_age, s_setup, s_teardown),
        cmocka_unit_test_setup_teardown(test_retention_anchor_verifies, s_setup, s_teardown),
        cmocka_unit_test_setup_teardown(test_retention_keeps_subscriptions, s_setup, s_teardown),
        cmocka_unit_test_setup_teardown(test_retention_dedup, s_setup, s_teardown),
        cmocka_unit_test_setup_teardown(test_retention_file_stays_flat, s_setup, s_teardown),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
