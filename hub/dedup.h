/* dedup - an in-memory window of recently appended events, for de-duplication.
 *
 * Remembers, for the most recent `window` sequence numbers, a 64-bit hash of
 * each event's (source, event_id) and its seq, so the journal can find the
 * candidate originals of a retried event without an on-disk index. It holds
 * hashes only: a hash match is a candidate, never a verdict; the journal
 * checks every candidate against the stored entry, so a collision costs one
 * read and never drops an event.
 *
 * Layout: an open-addressing hash table (power-of-two capacity >= 2 * window,
 * so at most half full; linear probing; deletion by backward shift, so there
 * are no tombstones and lookups never slow down with age) of {hash, seq}, and
 * a ring of `window` hashes indexed by seq % window, which names the entry a
 * new seq evicts. Memory is fixed at creation: 16 bytes per table slot and 8
 * per ring slot, 40 to 72 bytes per event of window (the table rounds up to a
 * power of two); 40 MiB for a window of a million.
 *
 * Invariants: seqs are inserted in increasing order; the table holds at most
 * one entry per residue seq % window, the latest inserted, so
 * dedup_count() <= window. With consecutive seqs (the journal's) it holds
 * exactly the last `window` of them; after a gap an older entry stays until
 * a seq with its residue replaces it.
 *
 * Not thread-safe: one dedup_t is used by one thread (the journal's).
 */
#ifndef CIVIBUS_DEDUP_H
#define CIVIBUS_DEDUP_H

#include <stddef.h>
#include <stdint.h>

typedef struct dedup dedup_t;

/* A window of the last `window` seqs. Returns NULL when window is 0, too
 * large for the address space, or the tables cannot be allocated. */
dedup_t *dedup_new(uint64_t window);
/* Free; NULL-safe; nulls *self_p. */
void dedup_destroy(dedup_t **self_p);

/* The hash of (source, event_id), keyed by a random seed chosen at
 * dedup_new, so hashes differ between instances and processes (they are never
 * stored) and an agency cannot pick event ids that all collide. The encoding
 * is unambiguous for any bytes: ("ab", "c") and ("a", "bc") hash apart. */
uint64_t dedup_hash(const dedup_t *self, const char *source, size_t source_len,
                    const char *event_id, size_t event_id_len);

/* Remember that seq has this hash. seq must be greater than every seq
 * inserted before (asserted) and non-zero. Forgets the entry of seq - window,
 * if it was inserted, so the window never holds more than `window` entries. */
void dedup_insert(dedup_t *self, uint64_t hash, uint64_t seq);

/* Called for each candidate; return 0 to go on, non-zero to stop (that value
 * is what dedup_find returns). Must not insert into the window. */
typedef int (*dedup_fn)(uint64_t seq, void *arg);

/* Visit the seq of every entry in the window with this hash, in no particular
 * order. Returns 0 after the last one (or when there is none), or the
 * callback's non-zero value. */
int dedup_find(const dedup_t *self, uint64_t hash, dedup_fn fn, void *arg);

/* Entries held now (<= window). */
uint64_t dedup_count(const dedup_t *self);
/* The window, in seqs, as given to dedup_new. */
uint64_t dedup_window(const dedup_t *self);
/* Slots in the hash table: fixed at creation, >= 2 * window. */
uint64_t dedup_capacity(const dedup_t *self);

#endif
