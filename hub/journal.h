/* journal - the hub's durable, totally ordered event log, in LMDB.
 *
 * Owns the LMDB environment under the data directory and everything in it:
 *   log     seq (uint64, MDB_INTEGERKEY, appended with MDB_APPEND) -> entry
 *           (type, source, event_id, event bytes, chain hash)
 *   cursors agency "\0" subscription name -> acknowledged seq, filters
 *   meta    format version and bookkeeping
 *   checkpoints seq -> the hub's signed statement of the chain hash at seq
 * The entry and checkpoint formats live in proto/logfile.h, shared with the
 * offline verifier; docs/LOG.md explains them. Every appended entry carries
 * chain[seq] = SHA-256(chain[seq-1] || seq || entry without its hash), so
 * any change to a stored entry breaks the chain from there on.
 * and, in memory, a de-duplication window (dedup.h) over the last
 * dedup_window entries, rebuilt from the log when a writable journal opens.
 * A retried event is recognised while its original is among the last
 * dedup_window entries of the log; an older original is not, and the retry
 * is appended as a new event. On-disk random-key indexes are avoided on
 * purpose: every batch would rewrite one B-tree page per event.
 * Invariants: sequence numbers start at 1 and have no gaps; received_at never
 * decreases along the log (the journal clamps it), so a time maps to a
 * sequence by binary search; an append is durable once journal_append_batch
 * returned JOURNAL_OK in durable mode (one fsync per batch: group commit).
 *
 * Retention (journal_retain) deletes entries from the front only, so the
 * log is always first_seq..last_seq without gaps, first_seq grows, and the
 * newest entry is never deleted. Each deleting transaction also writes the
 * anchor (meta "anchor": the last deleted seq, its received_at and chain
 * hash), from which the retained chain still verifies, and drops the
 * checkpoints older than the anchor. LMDB puts the freed pages on its free
 * list and later appends reuse them, so under a steady load the file stops
 * growing; that needs no long-lived read transaction, and there is none.
 *
 * The map grows by doubling (only between transactions) up to map_max; past
 * that, batches fail with JOURNAL_FULL and nothing of them is written, while
 * reads keep working. No read transaction outlives a call, so LMDB can always
 * reuse freed pages. LMDB's pointers never leave journal.c: readers get copies
 * or pointers valid only during a callback.
 *
 * Single-writer, single-thread: one journal_t is used by one thread.
 */
#ifndef CIVIBUS_JOURNAL_H
#define CIVIBUS_JOURNAL_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "logfile.h"

#define JOURNAL_CHAIN_LEN LOGFILE_CHAIN_LEN

typedef struct journal journal_t;

enum journal_err {
    JOURNAL_OK = 0,
    JOURNAL_FULL = -1,     /* map ceiling reached: refuse with storage_full */
    JOURNAL_IO = -2,       /* LMDB or file system error (logged with detail) */
    JOURNAL_CORRUPT = -3,  /* an entry or record does not parse */
    JOURNAL_NOTFOUND = -4, /* no such record */
    JOURNAL_INVALID = -5,  /* bad argument (empty key, oversize field) */
    JOURNAL_NOSPACE = -6,  /* the file system is full (ENOSPC, EDQUOT) */
};

typedef struct {
    const char *dir;  /* data directory; created if missing */
    size_t map_init;  /* initial map size in bytes (0: 64 MiB) */
    size_t map_max;   /* ceiling in bytes (0: 64 GiB) */
    bool no_sync;     /* true only for tests and benchmarks: no fsync */
    bool read_only;   /* open for reading only (offline tools) */
    uint64_t dedup_window; /* entries a retry is checked against (0: 1,000,000);
                            * costs 40-72 bytes of memory each; ignored read-only */
} journal_opts_t;

/* Open or create the journal. A writable one rebuilds its de-duplication
 * window by reading the last dedup_window entries (logged as
 * event=dedup_rebuilt). Returns NULL on error (logged). */
journal_t *journal_new(const journal_opts_t *opts);
/* Close; NULL-safe; nulls *self_p. */
void journal_destroy(journal_t **self_p);

/* One event to append. The caller fills the inputs; the journal fills the
 * outputs. Pointers are borrowed for the duration of the call. */
typedef struct {
    const char *source;   /* agency id (authenticated sender), 1-255 bytes */
    const char *event_id; /* 1-255 bytes */
    const char *type;     /* stored beside the event so filters need no decode */
    const uint8_t *event; /* serialized ServiceEvent, stored as is */
    size_t event_len;
    uint64_t seq;         /* out: assigned, or the original one for a duplicate */
    int64_t received_at;  /* out: hub receive time (µs since epoch) */
    bool duplicate;       /* out: (source, event_id) is in the window or earlier
                           * in this batch */
} journal_entry_t;

/* A subscription's cursor, saved with a batch or alone. */
typedef struct {
    const char *agency;
    const char *name;
    uint64_t acked;       /* last acknowledged seq (0: none) */
    const char *filters;  /* filters joined by '\n' */
} journal_cursor_t;

/* Append n entries and save n_cursors cursors in one transaction, then commit
 * (fsync unless no_sync). An entry whose (source, event_id) matches one of the
 * last dedup_window entries of the log is a duplicate: not written, and given
 * the original's seq and received_at. Duplicates inside the batch resolve to
 * the first. All or nothing: on error no entry is written, the window is
 * unchanged and outputs are unspecified. Grows the map as needed. Returns
 * JOURNAL_OK, JOURNAL_FULL, JOURNAL_NOSPACE, JOURNAL_IO,
 * JOURNAL_INVALID (empty or oversize source, event_id, type or cursor key;
 * read-only handle) or
 * JOURNAL_CORRUPT (a stored entry checked as a possible original does not
 * parse). */
int journal_append_batch(journal_t *self, journal_entry_t *entries, size_t n,
                         const journal_cursor_t *cursors, size_t n_cursors);

/* Save cursors alone (one synced transaction). */
int journal_save_cursors(journal_t *self, const journal_cursor_t *cursors, size_t n);

/* The chain hash of the last entry (32 zero bytes when the log is empty),
 * as of the last successful commit. Cached: free. */
void journal_chain_head(const journal_t *self, uint8_t out[JOURNAL_CHAIN_LEN]);

/* Store a signed checkpoint (made by the caller, see hub/chain.h) in its own
 * synced transaction, replacing one at the same seq. It must name the
 * current head: cp->seq == journal_last_seq and cp->chain ==
 * journal_chain_head, else JOURNAL_INVALID (also for a read-only handle).
 * The journal does not check the signature. Grows the map like a batch;
 * JOURNAL_FULL, JOURNAL_NOSPACE, JOURNAL_IO as journal_append_batch. */
int journal_checkpoint_put(journal_t *self, const logfile_checkpoint_t *cp);

/* Copy the checkpoint at seq, or the last one, into *out. JOURNAL_NOTFOUND
 * when there is none; JOURNAL_CORRUPT when it does not parse. */
int journal_checkpoint_get(journal_t *self, uint64_t seq, logfile_checkpoint_t *out);
int journal_checkpoint_last(journal_t *self, logfile_checkpoint_t *out);

/* A stored entry, as seen by a scan callback: pointers valid only inside it.
 * The strings are not NUL-terminated; chain is the entry's stored chain hash
 * (a copy). */
typedef logfile_entry_t journal_record_t;

/* Return 0 to go on, non-zero to stop the scan (that value is returned).
 * A callback must not call into the journal: LMDB allows one transaction
 * per thread, and the scan's read transaction is open during the call. */
typedef int (*journal_visit_fn)(const journal_record_t *rec, void *arg);

/* Visit entries in order from seq `from` (inclusive) on, at most max of them
 * (0: no limit), in one short read transaction. Returns JOURNAL_OK at the end
 * of the log or max, the visitor's non-zero value, or a negative error. */
int journal_scan(journal_t *self, uint64_t from, size_t max, journal_visit_fn visit, void *arg);

/* First and last sequence numbers (0 when the log is empty). Cached: free.
 * A read-only handle refreshes them at every read call (scan, seq_at_time,
 * cursor, stats), so they are as of the last such call. */
uint64_t journal_first_seq(const journal_t *self);
uint64_t journal_last_seq(const journal_t *self);

/* Smallest seq whose received_at >= time_us; last_seq + 1 when none. */
int journal_seq_at_time(journal_t *self, int64_t time_us, uint64_t *seq);

/* Look up one cursor. On success *acked is set and, when filters is non-NULL,
 * *filters is a malloc'd copy of the '\n'-joined filters (caller frees).
 * JOURNAL_NOTFOUND when the subscription has no saved cursor. */
int journal_cursor_get(journal_t *self, const char *agency, const char *name, uint64_t *acked,
                       char **filters);

/* Visit every saved cursor (pointers valid only inside the callback). */
typedef int (*journal_cursor_fn)(const journal_cursor_t *c, void *arg);
int journal_cursor_each(journal_t *self, journal_cursor_fn fn, void *arg);

typedef struct {
    uint64_t entries;      /* entries in the log */
    uint64_t log_bytes;    /* the log's pages (entries and B-tree) * page size */
    uint64_t map_size;     /* current map size, bytes */
    uint64_t map_max;      /* ceiling, bytes */
    uint64_t used_bytes;   /* pages in use * page size */
    uint64_t file_bytes;   /* size of data.mdb on disk */
    int64_t first_time;    /* received_at of the first entry (µs), 0 when empty */
} journal_stats_t;
/* The figures above, from one short read transaction (civibus_log_entries,
 * civibus_log_bytes, civibus_map_*_bytes,
 * civibus_retention_oldest_timestamp_seconds). */
int journal_stats(journal_t *self, journal_stats_t *out);

/* --- retention ------------------------------------------------------------ */

/* Which entries retention deletes. An entry is due when it was received more
 * than max_age_us ago, or while the log's pages (journal_stats_t.log_bytes)
 * exceed max_bytes; due entries are deleted oldest first, and deletion stops
 * at the first entry that is not due or that is held:
 *   - the newest entry is always kept (the numbering and the chain head
 *     then survive a restart);
 *   - with covered_only, an entry after the newest checkpoint is kept, so
 *     that a signed checkpoint always covers the anchor (docs/LOG.md);
 *   - an entry after the saved cursor of a subscription named in keep is
 *     kept, whatever the limits; a named subscription without a saved cursor
 *     holds the whole log. */
typedef struct {
    int64_t max_age_us; /* 0: no limit by age */
    uint64_t max_bytes; /* 0: no limit by size */
    const char *keep;   /* "agency/name,agency/name" (NULL or "": none); copied */
    size_t batch;       /* entries deleted per transaction, at most (0: 1000) */
    bool covered_only;  /* keep what no checkpoint covers yet (a hub with a signing key) */
} journal_retention_t;

/* Set or replace the retention rules (none by default: keep everything).
 * JOURNAL_INVALID (logged) on a read-only handle or when an entry of keep
 * is not a valid agency id, '/', and a valid subscription name. */
int journal_retention_set(journal_t *self, const journal_retention_t *rules);

/* Delete the due entries at the front of the log, at most `batch` of them,
 * in one write transaction (synced unless no_sync) that also updates the
 * anchor and drops the checkpoints before it. Opens no transaction at all
 * when no limit is set. *deleted gets the number deleted: 0 when nothing is
 * due or everything due is held (then nothing was committed). Logs one
 * summary line (event=retention_deleted) at the first deletion and then at
 * most one a minute, and event=retention_held, at most once a minute, while
 * a kept subscription holds due entries. A deletion writes a few pages too
 * (copy-on-write), so it grows the map like a batch; at map_max, where only
 * a deletion can make room, it may take up to 1 MiB more (logged as
 * event=retention_at_ceiling), of which the map keeps only the pages used.
 * Returns JOURNAL_OK, JOURNAL_FULL (not even that was enough: nothing
 * deleted), JOURNAL_NOSPACE, JOURNAL_IO, JOURNAL_CORRUPT (the first entry
 * does not parse), or JOURNAL_INVALID for a read-only handle. */
int journal_retain(journal_t *self, int64_t now_us, size_t *deleted);

/* For metrics and status, as of the last commit. Free. */
typedef struct {
    uint64_t first_seq;     /* journal_first_seq */
    uint64_t deleted_total; /* civibus_retention_deleted_total: entries retention
                             * deleted over the log's life (= anchor_seq, as
                             * seqs start at 1 and only the front is deleted) */
    int64_t oldest_us;      /* civibus_retention_oldest_timestamp_seconds (÷ 1e6):
                             * received_at of first_seq; 0 when the log is empty */
    uint64_t anchor_seq;    /* the last deleted seq (0: nothing deleted) */
    int64_t anchor_us;      /* its received_at: a start time at or before it
                             * asks for deleted entries */
    bool held;              /* a kept subscription holds entries that are due */
} journal_retention_stats_t;
void journal_retention_stats(const journal_t *self, journal_retention_stats_t *out);

const char *journal_strerror(int code);

#endif
