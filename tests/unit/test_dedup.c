/* test_dedup - unit tests of the de-duplication window (hub/dedup.c).
 *
 * Hashes are crafted where the layout matters: equal hashes force long probe
 * runs, hashes whose low bits point at the end of the table force runs that
 * wrap around, so backward-shift deletion is exercised in every shape. A
 * model (the last `window` inserted pairs, kept in an array) is the reference
 * for the randomised test.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "dedup.h"

/* --- helpers ------------------------------------------------------------- */

/* Candidates found for one hash, sorted. */
typedef struct {
    uint64_t seqs[256];
    size_t n;
} found_t;

static int s_collect(uint64_t seq, void *arg)
{
    found_t *f = arg;
    assert_true(f->n < sizeof f->seqs / sizeof f->seqs[0]);
    f->seqs[f->n++] = seq;
    return 0;
}

static int s_cmp_u64(const void *a, const void *b)
{
    uint64_t x = *(const uint64_t *)a, y = *(const uint64_t *)b;
    return x < y ? -1 : x > y;
}

static found_t s_find(const dedup_t *d, uint64_t hash)
{
    found_t f = {.n = 0};
    assert_int_equal(dedup_find(d, hash, s_collect, &f), 0);
    qsort(f.seqs, f.n, sizeof f.seqs[0], s_cmp_u64);
    return f;
}

/* Exactly one candidate, seq, for hash. */
static void s_assert_one(const dedup_t *d, uint64_t hash, uint64_t seq)
{
    found_t f = s_find(d, hash);
    assert_int_equal(f.n, 1);
    assert_int_equal(f.seqs[0], seq);
}

static void s_assert_none(const dedup_t *d, uint64_t hash)
{
    assert_int_equal(s_find(d, hash).n, 0);
}

/* A well-spread hash for seq k, distinct for distinct k. */
static uint64_t s_spread(uint64_t k)
{
    uint64_t x = k * 0x9E3779B97F4A7C15ull;
    x ^= x >> 29;
    return x * 0xBF58476D1CE4E5B9ull;
}

static uint64_t s_xorshift(uint64_t *s)
{
    *s ^= *s << 13;
    *s ^= *s >> 7;
    *s ^= *s << 17;
    return *s;
}

/* --- tests --------------------------------------------------------------- */

static void test_new_and_destroy(void **state)
{
    (void)state;
    assert_null(dedup_new(0));
    assert_null(dedup_new(UINT64_MAX));
    dedup_t *d = dedup_new(1);
    assert_non_null(d);
    assert_int_equal(dedup_window(d), 1);
    assert_true(dedup_capacity(d) >= 2);
    assert_int_equal(dedup_count(d), 0);
    s_assert_none(d, 0);
    dedup_insert(d, 7, 1);
    s_assert_one(d, 7, 1);
    dedup_insert(d, 7, 2); /* a window of one keeps only the newest */
    s_assert_one(d, 7, 2);
    assert_int_equal(dedup_count(d), 1);
    dedup_destroy(&d);
    assert_null(d);
    dedup_destroy(&d);
    dedup_destroy(NULL);

    uint64_t windows[] = {2, 3, 1000, 1024, 1025, 1000000};
    for (size_t i = 0; i < sizeof windows / sizeof windows[0]; i++) {
        d = dedup_new(windows[i]);
        assert_non_null(d);
        uint64_t cap = dedup_capacity(d);
        assert_true(cap >= 2 * windows[i]);
        assert_true(cap < 4 * windows[i]);
        assert_int_equal(cap & (cap - 1), 0);
        dedup_destroy(&d);
    }
}

static void test_insert_find_evict_at_boundary(void **state)
{
    (void)state;
    dedup_t *d = dedup_new(10);
    assert_non_null(d);
    for (uint64_t k = 1; k <= 10; k++)
        dedup_insert(d, s_spread(k), k);
    assert_int_equal(dedup_count(d), 10);
    for (uint64_t k = 1; k <= 10; k++)
        s_assert_one(d, s_spread(k), k);
    s_assert_none(d, s_spread(11));

    /* seq 11 pushes out seq 1, and only seq 1 */
    dedup_insert(d, s_spread(11), 11);
    assert_int_equal(dedup_count(d), 10);
    s_assert_none(d, s_spread(1));
    for (uint64_t k = 2; k <= 11; k++)
        s_assert_one(d, s_spread(k), k);

    /* the same hash again under a new seq (a re-append after the original
     * left the window): both are candidates while both are in the window */
    dedup_insert(d, s_spread(5), 12);
    found_t f = s_find(d, s_spread(5));
    assert_int_equal(f.n, 2);
    assert_int_equal(f.seqs[0], 5);
    assert_int_equal(f.seqs[1], 12);
    for (uint64_t k = 13; k <= 15; k++)
        dedup_insert(d, s_spread(k), k);
    s_assert_one(d, s_spread(5), 12); /* seq 5 evicted by seq 15 */
    dedup_destroy(&d);
}

static int s_stop_at_second(uint64_t seq, void *arg)
{
    (void)seq;
    return ++*(int *)arg == 2 ? 99 : 0;
}

static void test_find_stops(void **state)
{
    (void)state;
    dedup_t *d = dedup_new(100);
    assert_non_null(d);
    for (uint64_t k = 1; k <= 5; k++)
        dedup_insert(d, 42, k);
    int calls = 0;
    assert_int_equal(dedup_find(d, 42, s_stop_at_second, &calls), 99);
    assert_int_equal(calls, 2);
    calls = 0;
    assert_int_equal(dedup_find(d, 43, s_stop_at_second, &calls), 0);
    assert_int_equal(calls, 0);
    dedup_destroy(&d);
}

static void test_ring_wraparound(void **state)
{
    (void)state;
    const uint64_t w = 7;
    dedup_t *d = dedup_new(w);
    assert_non_null(d);
    uint64_t cap = dedup_capacity(d);
    for (uint64_t k = 1; k <= 1000; k++) {
        dedup_insert(d, s_spread(k), k);
        assert_int_equal(dedup_count(d), k < w ? k : w);
        if (k > w)
            s_assert_none(d, s_spread(k - w));
        for (uint64_t j = k > w ? k - w + 1 : 1; j <= k; j++)
            s_assert_one(d, s_spread(j), j);
    }
    assert_int_equal(dedup_capacity(d), cap);
    dedup_destroy(&d);
}

static void test_gaps_in_seqs(void **state)
{
    (void)state;
    /* The journal inserts consecutive seqs; with gaps an entry stays until a
     * seq with its residue replaces it, and the count never exceeds window. */
    dedup_t *d = dedup_new(10);
    assert_non_null(d);
    dedup_insert(d, 1, 1);
    dedup_insert(d, 5, 5);
    dedup_insert(d, 20, 20); /* residue 0: nothing to evict */
    assert_int_equal(dedup_count(d), 3);
    s_assert_one(d, 1, 1);
    dedup_insert(d, 21, 21); /* residue 1: replaces seq 1 */
    s_assert_none(d, 1);
    s_assert_one(d, 5, 5);
    dedup_insert(d, 35, 35); /* residue 5: replaces seq 5 */
    s_assert_none(d, 5);
    assert_int_equal(dedup_count(d), 3);
    for (uint64_t k = 100; k < 200; k += 3)
        dedup_insert(d, k, k);
    assert_true(dedup_count(d) <= 10);
    dedup_destroy(&d);
}

/* Collisions and runs that wrap around the end of the table: two keys share
 * one hash, one key's home is the last slot, and deleting from the front or
 * the middle of the run must keep every other entry findable. */
static void test_backward_shift_keeps_others(void **state)
{
    (void)state;
    const uint64_t w = 16;
    dedup_t *d = dedup_new(w);
    assert_non_null(d);
    uint64_t mask = dedup_capacity(d) - 1;
    /* Homes: A and A2 at mask-1 (same hash: a forced collision), B at mask,
     * C at 0 (the run wraps), D elsewhere. A and A2 differ above the mask. */
    uint64_t A = (mask - 1) | ((uint64_t)1 << 40), B = mask | ((uint64_t)2 << 40);
    uint64_t C = (uint64_t)3 << 40, D = 8 | ((uint64_t)4 << 40);
    uint64_t hash_of[33];
    for (uint64_t k = 1; k <= 16; k++) {
        /* 1..4 are C (home 0, then pushed along), 5..8 B, 9..16 A: inserted
         * in this order, later arrivals probe past the earlier ones and the
         * run wraps from the end of the table into C's slots. */
        hash_of[k] = k <= 4 ? C : k <= 8 ? B : A;
        dedup_insert(d, hash_of[k], k);
    }
    found_t f = s_find(d, A);
    assert_int_equal(f.n, 8);
    assert_int_equal(f.seqs[0], 9);
    assert_int_equal(f.seqs[7], 16);
    assert_int_equal(s_find(d, B).n, 4);
    assert_int_equal(s_find(d, C).n, 4);

    /* Now evict 1..16 one by one (C first: the middle of the wrapped run),
     * inserting D entries; after every deletion, the rest is found. */
    for (uint64_t k = 17; k <= 32; k++) {
        hash_of[k] = D;
        dedup_insert(d, D, k);
        uint64_t gone = k - w;
        uint64_t want[4] = {0};
        uint64_t hashes[4] = {A, B, C, D};
        for (uint64_t j = gone + 1; j <= k; j++)
            for (int h = 0; h < 4; h++)
                want[h] += hash_of[j] == hashes[h];
        for (int h = 0; h < 4; h++) {
            found_t got = s_find(d, hashes[h]);
            assert_int_equal(got.n, want[h]);
            for (size_t i = 0; i < got.n; i++) {
                assert_true(got.seqs[i] > gone && got.seqs[i] <= k);
                assert_int_equal(hash_of[got.seqs[i]], hashes[h]);
            }
        }
        assert_int_equal(dedup_count(d), w);
    }
    dedup_destroy(&d);
}

/* Random inserts from a handful of hashes crowded at the end of the table,
 * checked after every insert against a model of the last `window` pairs. */
static void test_against_model(void **state)
{
    (void)state;
    const uint64_t w = 50;
    dedup_t *d = dedup_new(w);
    assert_non_null(d);
    uint64_t mask = dedup_capacity(d) - 1;
    uint64_t pool[6] = {mask, mask - 1, 0, 1, mask | (uint64_t)1 << 50, 17};
    uint64_t model[50];
    uint64_t rng = 0x2545F4914F6CDD1Dull;
    for (uint64_t seq = 1; seq <= 5000; seq++) {
        uint64_t h = pool[s_xorshift(&rng) % 6];
        model[seq % w] = h;
        dedup_insert(d, h, seq);
        assert_int_equal(dedup_count(d), seq < w ? seq : w);
        uint64_t lo = seq >= w ? seq - w + 1 : 1;
        for (int p = 0; p < 6; p++) {
            found_t got = s_find(d, pool[p]);
            size_t want = 0;
            for (uint64_t s = lo; s <= seq; s++)
                want += model[s % w] == pool[p];
            assert_int_equal(got.n, want);
            for (size_t i = 0; i < got.n; i++) {
                assert_true(got.seqs[i] >= lo && got.seqs[i] <= seq);
                assert_int_equal(model[got.seqs[i] % w], pool[p]);
            }
        }
    }
    dedup_destroy(&d);
}

static void test_capacity_bounded(void **state)
{
    (void)state;
    dedup_t *d = dedup_new(1000);
    assert_non_null(d);
    uint64_t cap = dedup_capacity(d);
    assert_int_equal(cap, 2048);
    for (uint64_t k = 1; k <= 200000; k++)
        dedup_insert(d, s_spread(k), k);
    assert_int_equal(dedup_count(d), 1000);
    assert_int_equal(dedup_capacity(d), cap);
    s_assert_none(d, s_spread(199000));
    s_assert_one(d, s_spread(199001), 199001);
    s_assert_one(d, s_spread(200000), 200000);
    dedup_destroy(&d);
}

static int s_popcount(uint64_t x)
{
    int n = 0;
    for (; x; x &= x - 1)
        n++;
    return n;
}

static void test_hash(void **state)
{
    (void)state;
    dedup_t *d = dedup_new(8), *e = dedup_new(8);
    assert_non_null(d);
    assert_non_null(e);
    uint64_t h = dedup_hash(d, "tax-office", 10, "ev-1", 4);
    assert_int_equal(dedup_hash(d, "tax-office", 10, "ev-1", 4), h);
    /* the boundary between source and event_id is part of the key */
    assert_true(dedup_hash(d, "ab", 2, "c", 1) != dedup_hash(d, "a", 1, "bc", 2));
    assert_true(dedup_hash(d, "a", 1, "b", 1) != dedup_hash(d, "b", 1, "a", 1));
    assert_true(dedup_hash(d, "a", 1, "b", 1) != dedup_hash(d, "a", 1, "b\0", 2));
    /* keyed per instance (equal by chance with probability 2^-64) */
    assert_true(dedup_hash(e, "tax-office", 10, "ev-1", 4) != h);

    /* avalanche: flipping any one input bit flips about half the output
     * bits, and each output bit about half the time */
    uint64_t rng = 88172645463325252ull;
    long total = 0, trials = 0;
    long per_bit[64] = {0};
    for (int t = 0; t < 400; t++) {
        char src[24], id[37];
        for (size_t i = 0; i < sizeof src; i++)
            src[i] = (char)('a' + s_xorshift(&rng) % 26);
        for (size_t i = 0; i < sizeof id; i++)
            id[i] = (char)('0' + s_xorshift(&rng) % 10);
        uint64_t base = dedup_hash(d, src, sizeof src, id, sizeof id);
        for (size_t bit = 0; bit < 8 * (sizeof src + sizeof id); bit += 7) {
            char s2[24], i2[37];
            memcpy(s2, src, sizeof src);
            memcpy(i2, id, sizeof id);
            if (bit < 8 * sizeof src)
                s2[bit / 8] ^= (char)(1 << (bit % 8));
            else
                i2[bit / 8 - sizeof src] ^= (char)(1 << (bit % 8));
            uint64_t diff = base ^ dedup_hash(d, s2, sizeof s2, i2, sizeof i2);
            total += s_popcount(diff);
            trials++;
            for (int b = 0; b < 64; b++)
                per_bit[b] += (long)(diff >> b & 1);
        }
    }
    double mean = (double)total / (double)trials;
    assert_true(mean > 31.0 && mean < 33.0);
    for (int b = 0; b < 64; b++) {
        double p = (double)per_bit[b] / (double)trials;
        assert_true(p > 0.45 && p < 0.55);
    }

    /* sequential ids spread evenly over the low bits the table uses */
    long buckets[256] = {0};
    for (int k = 0; k < 256 * 200; k++) {
        char id[16];
        int n = snprintf(id, sizeof id, "ev-%d", k);
        buckets[dedup_hash(d, "ee.population-register", 22, id, (size_t)n) & 255]++;
    }
    for (int b = 0; b < 256; b++)
        assert_true(buckets[b] > 115 && buckets[b] < 285); /* ±6 sigma */
    dedup_destroy(&d);
    dedup_destroy(&e);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_new_and_destroy),
        cmocka_unit_test(test_insert_find_evict_at_boundary),
        cmocka_unit_test(test_find_stops),
        cmocka_unit_test(test_ring_wraparound),
        cmocka_unit_test(test_gaps_in_seqs),
        cmocka_unit_test(test_backward_shift_keeps_others),
        cmocka_unit_test(test_against_model),
        cmocka_unit_test(test_capacity_bounded),
        cmocka_unit_test(test_hash),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
