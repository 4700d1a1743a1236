/* dedup - an in-memory window of recently appended events, for de-duplication.
 *
 * See dedup.h for the contract. Here: a table slot is empty when its seq is 0
 * (seqs start at 1); an entry's home slot is its hash's low bits. Linear
 * probing keeps every entry in the run of non-empty slots that starts at or
 * before its home, which is what lookups rely on and what backward-shift
 * deletion preserves. The ring is zero-filled at creation, and ring[i] is only
 * trusted when the table holds an entry whose seq % window == i.
 */
#include "dedup.h"

#include <assert.h>
#include <stdbool.h>
#include <stdlib.h>
#include <sys/random.h>
#include <time.h>
#include <unistd.h>

typedef struct {
    uint64_t hash;
    uint64_t seq; /* 0: empty */
} s_slot_t;

struct dedup {
    s_slot_t *slots;    /* capacity = mask + 1, a power of two >= 2 * window */
    uint64_t mask;
    uint64_t *ring;     /* window hashes: ring[seq % window] */
    uint64_t window;
    uint64_t count;     /* entries in the table */
    uint64_t first_seq; /* first seq inserted, 0 before any */
    uint64_t last_seq;  /* last seq inserted */
    uint64_t seed;
};

/* splitmix64's finaliser: every input bit affects every output bit with
 * probability close to 1/2. Also used to turn entropy into a seed. */
static uint64_t s_mix(uint64_t x)
{
    x ^= x >> 30;
    x *= 0xbf58476d1ce4e5b9ull;
    x ^= x >> 27;
    x *= 0x94d049bb133111ebull;
    x ^= x >> 31;
    return x;
}

static uint64_t s_seed(void)
{
    uint64_t seed;
    if (getrandom(&seed, sizeof seed, GRND_NONBLOCK) == (ssize_t)sizeof seed)
        return seed;
    /* No entropy yet (early boot): still different per process and start. */
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return s_mix((uint64_t)ts.tv_nsec ^ (uint64_t)ts.tv_sec << 30 ^ (uint64_t)getpid() << 48);
}

dedup_t *dedup_new(uint64_t window)
{
    /* 2 * window slots of 16 bytes, rounded up to a power of two, and window
     * ring words must be addressable; 2^40 is far beyond any real window. */
    if (window == 0 || window > ((uint64_t)1 << 40) || window > SIZE_MAX / 64)
        return NULL;
    dedup_t *self = calloc(1, sizeof *self);
    if (!self)
        return NULL;
    uint64_t cap = 2;
    while (cap < 2 * window)
        cap <<= 1;
    /* calloc: large blocks come zeroed from the kernel, page by page. */
    self->slots = calloc((size_t)cap, sizeof *self->slots);
    self->ring = calloc((size_t)window, sizeof *self->ring);
    if (!self->slots || !self->ring) {
        dedup_destroy(&self);
        return NULL;
    }
    self->mask = cap - 1;
    self->window = window;
    self->seed = s_mix(s_seed());
    return self;
}

void dedup_destroy(dedup_t **self_p)
{
    if (!self_p || !*self_p)
        return;
    dedup_t *self = *self_p;
    free(self->slots);
    free(self->ring);
    free(self);
    *self_p = NULL;
}

/* FNV-1a over an unambiguous encoding (source length, source, event_id),
 * starting from a seeded state, then the finaliser: FNV alone mixes high
 * input bits poorly into low output bits, and the table indexes by low bits.
 * Not a cryptographic PRF; the seed only makes collisions hard to aim. */
#define FNV_PRIME 0x100000001b3ull
#define FNV_BASIS 0xcbf29ce484222325ull

uint64_t dedup_hash(const dedup_t *self, const char *source, size_t source_len,
                    const char *event_id, size_t event_id_len)
{
    assert(self);
    uint64_t h = FNV_BASIS ^ self->seed;
    h = (h ^ (uint64_t)source_len) * FNV_PRIME;
    for (size_t i = 0; i < source_len; i++)
        h = (h ^ (uint8_t)source[i]) * FNV_PRIME;
    for (size_t i = 0; i < event_id_len; i++)
        h = (h ^ (uint8_t)event_id[i]) * FNV_PRIME;
    return s_mix(h ^ (uint64_t)event_id_len << 32);
}

/* Remove the entry in slot i, moving later entries of the run back so each
 * stays reachable from its home without tombstones: an entry at j may fill
 * the hole at i only if its home is not cyclically within (i, j]. */
static void s_delete_at(dedup_t *self, uint64_t i)
{
    uint64_t j = i;
    for (;;) {
        j = (j + 1) & self->mask;
        if (self->slots[j].seq == 0)
            break;
        uint64_t home = self->slots[j].hash & self->mask;
        /* distance from the hole and from home, going forward to j */
        if (((j - home) & self->mask) >= ((j - i) & self->mask)) {
            self->slots[i] = self->slots[j];
            i = j;
        }
    }
    self->slots[i] = (s_slot_t){0, 0};
    self->count--;
}

/* Forget the entry whose seq has the same residue as seq, if any. */
static void s_evict(dedup_t *self, uint64_t seq)
{
    if (self->first_seq == 0 || seq - self->first_seq < self->window)
        return; /* no seq inserted so far can be seq - k * window */
    uint64_t r = seq % self->window;
    uint64_t hash = self->ring[r];
    for (uint64_t i = hash & self->mask; self->slots[i].seq; i = (i + 1) & self->mask) {
        if (self->slots[i].hash == hash && self->slots[i].seq % self->window == r) {
            s_delete_at(self, i);
            return;
        }
    }
}

void dedup_insert(dedup_t *self, uint64_t hash, uint64_t seq)
{
    assert(self && seq > self->last_seq);
    s_evict(self, seq);
    uint64_t i = hash & self->mask;
    while (self->slots[i].seq)
        i = (i + 1) & self->mask;
    self->slots[i] = (s_slot_t){hash, seq};
    self->ring[seq % self->window] = hash;
    self->count++;
    if (self->first_seq == 0)
        self->first_seq = seq;
    self->last_seq = seq;
    assert(self->count <= self->window);
}

int dedup_find(const dedup_t *self, uint64_t hash, dedup_fn fn, void *arg)
{
    assert(self && fn);
    for (uint64_t i = hash & self->mask; self->slots[i].seq; i = (i + 1) & self->mask) {
        if (self->slots[i].hash != hash)
            continue;
        int rc = fn(self->slots[i].seq, arg);
        if (rc)
            return rc;
    }
    return 0;
}

uint64_t dedup_count(const dedup_t *self)
{
    return self->count;
}

uint64_t dedup_window(const dedup_t *self)
{
    return self->window;
}

uint64_t dedup_capacity(const dedup_t *self)
{
    return self->mask + 1;
}
