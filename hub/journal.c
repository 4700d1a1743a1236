/* journal - the hub's durable, totally ordered event log, in LMDB.
 *
 * One LMDB environment (data.mdb, lock.mdb) in the data directory, with five
 * named databases: log, cursors, meta, checkpoints, dead_letters (see journal.h). The hub is the only
 * writer; offline tools may open the same files read-only at the same time,
 * which LMDB supports across processes.
 *
 * On-disk format, version 2 (meta "version" = u32 LE 2; version 1 had no
 * chain hash and is refused). All integers inside values are little-endian;
 * the `log` and `checkpoints` keys are native uint64 because MDB_INTEGERKEY
 * compares them natively (LMDB files are not portable across byte orders
 * anyway). Entries and checkpoints are encoded by proto/logfile.c, the one
 * copy of their format, shared with the offline verifier:
 *   log     key  seq (uint64, native)
 *           val  byte 0      entry version (2)
 *                byte 1      flags (0)
 *                bytes 2-3   type length T (u16 LE)
 *                byte 4      source length S (u8, 1-255)
 *                byte 5      event_id length I (u8, 1-255)
 *                bytes 6-7   reserved (0)
 *                bytes 8-15  received_at (i64 LE, µs since the Unix epoch)
 *                bytes 16-47 chain hash: SHA-256(chain of seq-1 (zeros for
 *                            seq 1) || seq u64 LE || bytes 0-15 || bytes 48..)
 *                48 ..       the event type (T bytes), the source (S bytes),
 *                            the event_id (I bytes), none NUL-terminated,
 *                then        the serialized ServiceEvent, exactly as received
 *   cursors key  agency "\0" name            val  acked (u64 LE), updated_at
 *                                                 (i64 LE µs), filters ('\n'-joined, no NUL)
 *   meta    key  "version"                   val  u32 LE
 *           key  "anchor"                    val  48 bytes, once retention
 *                deleted entries: the last deleted seq, its received_at and
 *                chain hash (proto/logfile.h)
 *   checkpoints key seq (uint64, native)     val  128 bytes: version 1, seq,
 *                time, chain hash at seq, key id, Ed25519 signature
 *                (proto/logfile.h gives the layout and the signed bytes)
 *   dead_letters key agency "\0" name "\0" seq (u64 big-endian, so that one
 *                subscription's records sort by seq)
 *                val  attempts (u32 LE), flags (u32 LE; bit 0: redrive
 *                     pending), dead_at (i64 LE µs), reason (no NUL)
 *                Added without a format change: a log without this database
 *                simply has no dead letters.
 * A reader refuses an entry whose version is not 2 or whose lengths do not
 * add up (JOURNAL_CORRUPT); flags and reserved bytes are ignored on read.
 * The journal does not check chain hashes when reading (that is
 * `civibus verify`'s job); it computes them when appending, from the last
 * one, which it caches (read from the last entry at open).
 * Source and event_id are in the entry so that the de-duplication window can
 * be rebuilt, and a candidate original verified, without decoding protobuf.
 *
 * De-duplication (writable handles): a dedup_t holds hash -> seq for the last
 * `window` entries. An append looks up each event's hash there and reads
 * every candidate entry in the write transaction to compare source and
 * event_id byte for byte, so hash collisions cost a read, never an event.
 * New events go into the window only after their commit succeeded.
 *
 * Retention (journal_retain) deletes from the front in its own write
 * transactions: it reads the limits that hold it (the newest entry, the
 * newest checkpoint, the cursors of kept subscriptions) and the size due in
 * the same transaction, deletes through one cursor, and writes the anchor
 * (proto/logfile.h) and drops the checkpoints before it before committing.
 * The dedup window may still name deleted seqs; a candidate that is gone is
 * simply not an original.
 *
 * Invariants kept here: the cached first/last seq, last received_at, last
 * chain hash and the window change only after a successful commit, so a failed batch leaves no
 * trace; every
 * transaction ends before its function returns, so no LMDB pointer escapes
 * and the map can be resized between calls. A scan or cursor callback runs
 * inside a read transaction and must not call back into the journal (LMDB
 * allows one transaction per thread).
 */
#include "journal.h"

#include <assert.h>
#include <errno.h>
#include <fcntl.h>
#include <libgen.h>
#include <lmdb.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/types.h>
#include <time.h>
#include <unistd.h>

#include "codec.h"
#include "crypto.h"
#include "dedup.h"
#include "keyfile.h"
#include "log.h"
#include "logfile.h"

#define FORMAT_VERSION LOGFILE_FORMAT_VERSION
#define CURSOR_HDR 16
#define MIB ((size_t)1 << 20)
#define DEFAULT_MAP_INIT (64 * MIB)
#define DEFAULT_MAP_MAX ((size_t)64 << 30)
#define DEFAULT_DEDUP_WINDOW 1000000u
/* Longest source or event_id: its length is one byte of the entry header. */
#define ID_MAX 255
/* Enough pages for the meta pages and three empty named databases. */
#define MAP_FLOOR (256 * (size_t)1024)
/* LMDB's compiled-in key limit is 511; keys are built on the stack. */
#define KEY_BUF 512
/* Zero-filled space kept ahead of LMDB's last page: refilled in chunks when
 * less than the low mark remains. Small chunks keep each refill short (about
 * 1.5 ms for 2 MiB here), so it never stalls a commit for long. */
#define PREFILL_CHUNK (2 * MIB)
#define PREFILL_LOW (1 * MIB)
#define RETENTION_BATCH 1000
/* Retention's summary and "held" lines: at most one each per this. */
#define RETENTION_LOG_MS 60000
/* Map lent beyond map_max to a deletion that found it full (see
 * journal_retain): far more than the few pages a deletion copies. */
#define RETENTION_RESERVE (1 * MIB)

/* A subscription retention keeps entries for: its cursor's key, and its
 * name as agency/name for the log. */
typedef struct {
    char key[KEY_BUF];
    size_t key_len;
    char name[KEY_BUF];
} s_keep_t;

/* What journal_append_batch works out about each entry before writing. */
typedef struct {
    uint64_t hash;       /* dedup_hash of (source, event_id) */
    size_t first;        /* index of this key's first entry in the batch */
    uint16_t type_len;
    uint8_t source_len;
    uint8_t event_id_len;
} s_pending_t;

struct journal {
    MDB_env *env;
    MDB_dbi log_db;
    MDB_dbi cursors_db;
    MDB_dbi meta_db;
    MDB_dbi checkpoints_db;
    bool has_checkpoints;      /* false only read-only, before any hub made it */
    MDB_dbi dead_letters_db;
    bool has_dead_letters;     /* false only read-only, before a hub made it */
    char *data_path;  /* dir/data.mdb, for journal_stats */
    size_t map_size;  /* current map size */
    size_t map_max;   /* configured ceiling */
    size_t max_key;   /* longest key LMDB accepts here */
    bool read_only;
    uint64_t first_seq;        /* committed bounds, 0 when empty */
    uint64_t last_seq;
    int64_t last_received_at;  /* received_at of last_seq, 0 when empty */
    uint8_t last_chain[LOGFILE_CHAIN_LEN]; /* chain hash of last_seq, zeros when empty */
    crypto_sha256_t *hasher;   /* reused for every chain hash */
    char *scratch;             /* copies of one cursor or dead letter (s_scratch) */
    size_t scratch_cap;
    bool prefill;              /* keep written space ahead of the log (durable mode) */
    uint64_t file_size;        /* data.mdb's size as last seen or written */
    dedup_t *dedup;            /* the de-duplication window; NULL read-only */
    s_pending_t *pending;      /* per entry of the batch being appended */
    size_t pending_cap;
    size_t *batch_slots;       /* in-batch duplicate table: entry index + 1, 0 empty */
    size_t batch_slots_cap;
    int64_t first_received_at; /* received_at of first_seq, 0 when empty */
    logfile_anchor_t anchor;   /* seq 0: retention never deleted anything */
    journal_retention_t ret;   /* ret.keep unused: parsed into keep */
    s_keep_t *keep;
    size_t n_keep;
    bool held;                 /* the last journal_retain found due entries held by keep */
    uint64_t ret_unlogged;     /* entries deleted since the last summary line */
    bool ret_by_age, ret_by_size; /* what made them due */
    int64_t ret_logged_ms;     /* when the last summary line was written (monotonic) */
    int64_t held_logged_ms;    /* when the last retention_held line was written */
};

/* --- little helpers ---------------------------------------------------- */

static void s_put_u32le(uint8_t *p, uint32_t v)
{
    for (int i = 0; i < 4; i++)
        p[i] = (uint8_t)(v >> (8 * i));
}

static uint32_t s_get_u32le(const uint8_t *p)
{
    return (uint32_t)p[0] | (uint32_t)p[1] << 8 | (uint32_t)p[2] << 16 | (uint32_t)p[3] << 24;
}

static int64_t s_now_us(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_REALTIME, &ts);
    return (int64_t)ts.tv_sec * 1000000 + ts.tv_nsec / 1000;
}

/* Log an LMDB failure once, here at the boundary, and map it. MDB_MAP_FULL
 * is not logged: the caller grows the map or reports JOURNAL_FULL. */
static int s_fail(const char *event, int rc)
{
    if (rc == MDB_MAP_FULL)
        return JOURNAL_FULL;
    char buf[160];
    log_limited(LOG_ERROR, "journal", "journal.fail", "event=%s code=%d error=%s", event, rc,
                log_quote(mdb_strerror(rc), buf, sizeof buf));
    /* A full disk is the operator's to fix; the hub refuses and goes on. */
    return (rc == ENOSPC || rc == EDQUOT) ? JOURNAL_NOSPACE : JOURNAL_IO;
}

static int s_corrupt(const char *what, uint64_t seq)
{
    log_error("journal", "event=corrupt what=%s seq=%llu", what, (unsigned long long)seq);
    return JOURNAL_CORRUPT;
}

/* Build "a\0b" into buf. Returns its length, or 0 when a part is empty or the
 * key would exceed LMDB's limit. */
static size_t s_pair_key(const journal_t *self, const char *a, const char *b, char *buf)
{
    if (!a || !b || !a[0] || !b[0])
        return 0;
    size_t la = strlen(a), lb = strlen(b);
    if (la + 1 + lb > self->max_key)
        return 0;
    memcpy(buf, a, la);
    buf[la] = '\0';
    memcpy(buf + la + 1, b, lb);
    return la + 1 + lb;
}

/* Split a log value into rec (pointers into the value). Returns NULL, or
 * what does not parse (not logged: the caller decides). */
static const char *s_entry_split(uint64_t seq, const MDB_val *val, journal_record_t *rec)
{
    return logfile_entry_split(seq, val->mv_data, val->mv_size, rec);
}

/* Parse a log value into rec; JOURNAL_CORRUPT (logged) when it does not. */
static int s_entry_parse(uint64_t seq, const MDB_val *val, journal_record_t *rec)
{
    const char *bad = s_entry_split(seq, val, rec);
    return bad ? s_corrupt(bad, seq) : JOURNAL_OK;
}

/* Read entry seq in txn. JOURNAL_NOTFOUND when absent. */
static int s_entry_get(journal_t *self, MDB_txn *txn, uint64_t seq, journal_record_t *rec)
{
    MDB_val key = {sizeof seq, &seq}, val;
    int rc = mdb_get(txn, self->log_db, &key, &val);
    if (rc == MDB_NOTFOUND)
        return JOURNAL_NOTFOUND;
    if (rc)
        return s_fail("log_get", rc);
    return s_entry_parse(seq, &val, rec);
}

/* Read the log's bounds as txn sees them. */
static int s_load_bounds(journal_t *self, MDB_txn *txn)
{
    MDB_cursor *cur;
    int rc = mdb_cursor_open(txn, self->log_db, &cur);
    if (rc)
        return s_fail("cursor_open", rc);
    uint64_t first = 0, last = 0;
    int64_t received_at = 0, first_received_at = 0;
    uint8_t chain[LOGFILE_CHAIN_LEN] = {0};
    int jrc = JOURNAL_OK;
    MDB_val key, val;
    rc = mdb_cursor_get(cur, &key, &val, MDB_FIRST);
    if (rc == 0) {
        journal_record_t rec;
        if (key.mv_size != sizeof first) {
            jrc = s_corrupt("log_key", 0);
            goto close_cursor;
        }
        memcpy(&first, key.mv_data, sizeof first);
        if ((jrc = s_entry_parse(first, &val, &rec)))
            goto close_cursor;
        first_received_at = rec.received_at;
        rc = mdb_cursor_get(cur, &key, &val, MDB_LAST);
    }
    if (rc == 0) {
        journal_record_t rec;
        if (key.mv_size != sizeof last) {
            jrc = s_corrupt("log_key", 0);
            goto close_cursor;
        }
        memcpy(&last, key.mv_data, sizeof last);
        jrc = s_entry_parse(last, &val, &rec);
        if (jrc)
            goto close_cursor;
        received_at = rec.received_at;
        memcpy(chain, rec.chain, sizeof chain);
    } else if (rc != MDB_NOTFOUND) {
        jrc = s_fail("log_bounds", rc);
        goto close_cursor;
    }
    self->first_seq = first;
    self->first_received_at = first_received_at;
    self->last_seq = last;
    self->last_received_at = received_at;
    memcpy(self->last_chain, chain, sizeof chain);
close_cursor:
    mdb_cursor_close(cur);
    return jrc;
}

/* Begin a read transaction. A writer in another process may have grown the
 * map since we mapped it (MDB_MAP_RESIZED): adopt its size and retry. In
 * read-only mode the cached bounds are refreshed, since the hub appends. */
static int s_read_begin(journal_t *self, MDB_txn **txn)
{
    int rc = mdb_txn_begin(self->env, NULL, MDB_RDONLY, txn);
    if (rc == MDB_MAP_RESIZED) {
        rc = mdb_env_set_mapsize(self->env, 0);
        if (rc == 0)
            rc = mdb_txn_begin(self->env, NULL, MDB_RDONLY, txn);
    }
    if (rc) {
        *txn = NULL;
        return s_fail("read_begin", rc);
    }
    if (self->read_only) {
        int jrc = s_load_bounds(self, *txn);
        if (jrc) {
            mdb_txn_abort(*txn);
            *txn = NULL;
            return jrc;
        }
    }
    return JOURNAL_OK;
}

/* Begin a read transaction and open a cursor on dbi in it; on failure
 * nothing stays open. s_read_end closes both. */
static int s_read_cursor(journal_t *self, MDB_dbi dbi, MDB_txn **txn, MDB_cursor **cur)
{
    int jrc = s_read_begin(self, txn);
    if (jrc)
        return jrc;
    int rc = mdb_cursor_open(*txn, dbi, cur);
    if (rc) {
        mdb_txn_abort(*txn);
        *txn = NULL;
        return s_fail("cursor_open", rc);
    }
    return JOURNAL_OK;
}

static void s_read_end(MDB_txn *txn, MDB_cursor *cur)
{
    mdb_cursor_close(cur);
    mdb_txn_abort(txn);
}

/* Make a directory entry durable: fsync the directory holding it. */
static int s_fsync_dir(const char *dir)
{
    int fd = open(dir, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
    if (fd < 0)
        return -1;
    int rc = fsync(fd);
    close(fd);
    return rc;
}

/* Create dir and its missing parents, new ones private (0700). */
static int s_mkdirs(const char *dir)
{
    char *path = strdup(dir);
    if (!path)
        return -1;
    int rc = 0;
    for (char *p = path + 1; *p && rc == 0; p++) {
        if (*p != '/')
            continue;
        *p = '\0';
        if (mkdir(path, 0700) != 0 && errno != EEXIST)
            rc = -1;
        *p = '/';
    }
    if (rc == 0 && mkdir(path, 0700) != 0 && errno != EEXIST)
        rc = -1;
    free(path);
    return rc;
}

static int s_env_mapsize(journal_t *self)
{
    MDB_envinfo info;
    int rc = mdb_env_info(self->env, &info);
    if (rc)
        return s_fail("env_info", rc);
    self->map_size = info.me_mapsize;
    return JOURNAL_OK;
}

/* Resize the map (no transaction may be open) and note the size LMDB took. */
static int s_set_mapsize(journal_t *self, size_t size)
{
    int rc = mdb_env_set_mapsize(self->env, size);
    return rc ? s_fail("set_mapsize", rc) : s_env_mapsize(self);
}

/* Open the named databases, check or write the format version, and load the
 * bounds, in one transaction that is committed so the handles stay valid. */
static int s_open_dbs(journal_t *self)
{
    unsigned create = self->read_only ? 0 : MDB_CREATE;
    MDB_txn *txn;
    int rc = mdb_txn_begin(self->env, NULL, self->read_only ? MDB_RDONLY : 0, &txn);
    if (rc)
        return s_fail("open_begin", rc);
    int jrc = JOURNAL_OK;
    if ((rc = mdb_dbi_open(txn, "log", create | MDB_INTEGERKEY, &self->log_db)) ||
        (rc = mdb_dbi_open(txn, "cursors", create, &self->cursors_db)) ||
        (rc = mdb_dbi_open(txn, "meta", create, &self->meta_db))) {
        jrc = s_fail("dbi_open", rc);
        goto abort_txn;
    }
    /* Absent from a log that a read-only handle opens before any writable
     * one made it: then there are simply no checkpoints. */
    rc = mdb_dbi_open(txn, "checkpoints", create | MDB_INTEGERKEY, &self->checkpoints_db);
    self->has_checkpoints = rc == 0;
    if (rc == MDB_NOTFOUND && self->read_only) {
        self->has_checkpoints = false;
    } else if (rc) {
        jrc = s_fail("dbi_open", rc);
        goto abort_txn;
    }
    rc = mdb_dbi_open(txn, "dead_letters", create, &self->dead_letters_db);
    self->has_dead_letters = rc == 0;
    if (rc && !(rc == MDB_NOTFOUND && self->read_only)) {
        jrc = s_fail("dbi_open", rc);
        goto abort_txn;
    }
    MDB_val key = {7, "version"}, val;
    rc = mdb_get(txn, self->meta_db, &key, &val);
    if (rc == 0) {
        uint32_t version = val.mv_size == 4 ? s_get_u32le(val.mv_data) : 0;
        if (version != FORMAT_VERSION) {
            log_error("journal", "event=unsupported_format version=%u size=%zu expected=%u", version,
                      val.mv_size, FORMAT_VERSION);
            jrc = JOURNAL_CORRUPT;
            goto abort_txn;
        }
    } else if (rc == MDB_NOTFOUND) {
        /* A fresh environment gets the version; one with entries but no
         * version was not written by us. */
        MDB_stat st;
        if ((rc = mdb_stat(txn, self->log_db, &st))) {
            jrc = s_fail("log_stat", rc);
            goto abort_txn;
        }
        if (self->read_only || st.ms_entries > 0) {
            log_error("journal", "event=unsupported_format version=none entries=%zu", st.ms_entries);
            jrc = JOURNAL_CORRUPT;
            goto abort_txn;
        }
        uint8_t buf[4];
        s_put_u32le(buf, FORMAT_VERSION);
        val = (MDB_val){sizeof buf, buf};
        if ((rc = mdb_put(txn, self->meta_db, &key, &val, 0))) {
            jrc = s_fail("meta_put", rc);
            goto abort_txn;
        }
    } else {
        jrc = s_fail("meta_get", rc);
        goto abort_txn;
    }
    key = (MDB_val){sizeof LOGFILE_ANCHOR_KEY - 1, LOGFILE_ANCHOR_KEY};
    rc = mdb_get(txn, self->meta_db, &key, &val);
    if (rc == 0 && logfile_anchor_decode(val.mv_data, val.mv_size, &self->anchor) != LOGFILE_OK) {
        jrc = s_corrupt("anchor", 0);
        goto abort_txn;
    } else if (rc && rc != MDB_NOTFOUND) {
        jrc = s_fail("meta_get", rc);
        goto abort_txn;
    }
    if ((jrc = s_load_bounds(self, txn)))
        goto abort_txn;
    rc = mdb_txn_commit(txn);
    return rc ? s_fail("open_commit", rc) : JOURNAL_OK;
abort_txn:
    mdb_txn_abort(txn);
    return jrc;
}

/* An fdatasync after a write that grew the file must also commit the file
 * system's own journal (new size, new blocks), which costs about a
 * millisecond here; after overwriting blocks already written it flushes only
 * data (about 0.1 ms). So in durable mode the journal keeps zero-filled space
 * ahead of LMDB's last page, written between transactions, and a commit
 * overwrites instead of appending. LMDB ignores the file's length beyond its
 * last page. Failing here costs speed only, never correctness. */
static void s_prefill(journal_t *self)
{
    if (!self->prefill)
        return;
    MDB_envinfo info;
    MDB_stat st;
    int fd;
    if (mdb_env_info(self->env, &info) || mdb_env_stat(self->env, &st) || mdb_env_get_fd(self->env, &fd))
        return;
    uint64_t used = ((uint64_t)info.me_last_pgno + 1) * st.ms_psize;
    if (self->file_size >= used + PREFILL_LOW)
        return;
    uint64_t target = used + PREFILL_CHUNK;
    if (target > info.me_mapsize)
        target = info.me_mapsize;
    struct stat fst;
    if (fstat(fd, &fst) != 0)
        return;
    self->file_size = (uint64_t)fst.st_size;
    if (self->file_size >= target)
        return;
    static const uint8_t zeros[1 << 16];
    uint64_t off = self->file_size;
    while (off < target) {
        size_t n = target - off < sizeof zeros ? (size_t)(target - off) : sizeof zeros;
        ssize_t w = pwrite(fd, zeros, n, (off_t)off);
        if (w <= 0) {
            log_limited(LOG_WARN, "journal", "journal.prefill", "event=prefill_failed error=\"%s\"",
                        strerror(errno));
            break;
        }
        off += (uint64_t)w;
    }
    if (fdatasync(fd) == 0)
        self->file_size = off;
}

static double s_ms_since(const struct timespec *t0)
{
    struct timespec t1;
    clock_gettime(CLOCK_MONOTONIC, &t1);
    return (double)(t1.tv_sec - t0->tv_sec) * 1e3 + (double)(t1.tv_nsec - t0->tv_nsec) / 1e6;
}

/* Create the de-duplication window and fill it with the last `window`
 * entries of the log, in one read transaction. Only the headers are read:
 * source and event_id are in the entry. An entry that does not parse cannot
 * be de-duplicated against; it is skipped and counted (reads of it keep
 * failing with JOURNAL_CORRUPT), so one bad entry does not stop the hub. */
static int s_dedup_rebuild(journal_t *self, uint64_t window)
{
    struct timespec t0;
    clock_gettime(CLOCK_MONOTONIC, &t0);
    self->dedup = dedup_new(window);
    if (!self->dedup) {
        log_error("journal", "event=open_failed reason=dedup_window_alloc window=%llu",
                  (unsigned long long)window);
        return JOURNAL_IO;
    }
    uint64_t count = 0, skipped = 0, first_skipped = 0;
    if (self->last_seq) {
        uint64_t from = self->last_seq >= window ? self->last_seq - window + 1 : 1;
        if (from < self->first_seq)
            from = self->first_seq;
        MDB_txn *txn;
        MDB_cursor *cur;
        int jrc = s_read_cursor(self, self->log_db, &txn, &cur);
        if (jrc)
            return jrc;
        MDB_val key = {sizeof from, &from}, val;
        int rc;
        for (rc = mdb_cursor_get(cur, &key, &val, MDB_SET_RANGE); rc == 0;
             rc = mdb_cursor_get(cur, &key, &val, MDB_NEXT)) {
            uint64_t seq = 0;
            journal_record_t rec;
            if (key.mv_size == sizeof seq)
                memcpy(&seq, key.mv_data, sizeof seq);
            if (seq == 0 || s_entry_split(seq, &val, &rec)) {
                if (skipped++ == 0)
                    first_skipped = seq;
                continue;
            }
            uint64_t h = dedup_hash(self->dedup, rec.source, rec.source_len, rec.event_id,
                                    rec.event_id_len);
            dedup_insert(self->dedup, h, seq);
            count++;
        }
        s_read_end(txn, cur);
        if (rc != MDB_NOTFOUND)
            return s_fail("dedup_rebuild", rc);
    }
    if (skipped)
        log_error("journal", "event=corrupt what=dedup_rebuild entries=%llu first_seq=%llu",
                  (unsigned long long)skipped, (unsigned long long)first_skipped);
    log_info("journal", "event=dedup_rebuilt entries=%llu window=%llu ms=%.0f",
             (unsigned long long)count, (unsigned long long)window, s_ms_since(&t0));
    return JOURNAL_OK;
}

journal_t *journal_new(const journal_opts_t *opts)
{
    if (!opts || !opts->dir || !opts->dir[0]) {
        log_error("journal", "event=open_failed reason=no_directory");
        return NULL;
    }
    char qdir[256];
    log_quote(opts->dir, qdir, sizeof qdir);
    journal_t *self = calloc(1, sizeof *self);
    if (!self)
        return NULL;
    self->read_only = opts->read_only;
    self->hasher = crypto_sha256_new();
    if (!self->hasher) {
        log_error("journal", "event=open_failed reason=sha256_unavailable");
        goto free_self;
    }
    size_t plen = strlen(opts->dir) + sizeof "/data.mdb";
    self->data_path = malloc(plen);
    if (!self->data_path)
        goto free_self;
    snprintf(self->data_path, plen, "%s/data.mdb", opts->dir);

    size_t map_max = opts->map_max ? opts->map_max : DEFAULT_MAP_MAX;
    size_t map_init = opts->map_init ? opts->map_init : DEFAULT_MAP_INIT;
    if (map_init > map_max)
        map_init = map_max;
    if (map_init < MAP_FLOOR)
        map_init = MAP_FLOOR;
    if (map_max < map_init)
        map_max = map_init;
    self->map_max = map_max;

    struct stat st;
    bool dir_existed = stat(opts->dir, &st) == 0;
    if (!self->read_only && s_mkdirs(opts->dir) != 0) {
        log_error("journal", "event=open_failed dir=%s error=%s", qdir, strerror(errno));
        goto free_self;
    }
    int rc = mdb_env_create(&self->env);
    if (rc) {
        (void)s_fail("env_create", rc);
        goto free_self;
    }
    /* An existing file keeps the map size it was last committed with (never
     * less than its data): size 0 tells LMDB to adopt it. A new one starts
     * at map_init. */
    bool exists = stat(self->data_path, &st) == 0;
    if ((rc = mdb_env_set_maxdbs(self->env, 5)) ||
        (rc = mdb_env_set_mapsize(self->env, exists ? 0 : map_init))) {
        (void)s_fail("env_setup", rc);
        goto close_env;
    }
    unsigned flags = (self->read_only ? MDB_RDONLY : 0) | (opts->no_sync ? MDB_NOSYNC : 0);
    rc = mdb_env_open(self->env, opts->dir, flags, 0600);
    if (rc) {
        char buf[160];
        log_error("journal", "event=open_failed dir=%s error=%s", qdir,
                  log_quote(mdb_strerror(rc), buf, sizeof buf));
        goto close_env;
    }
    if (!self->read_only && !opts->no_sync && !exists) {
        /* LMDB syncs the file, not the directory entries we just created:
         * without this a crash could lose a fresh journal after its first
         * acknowledged commit. */
        bool synced = s_fsync_dir(opts->dir) == 0;
        if (synced && !dir_existed) {
            char *parent = strdup(opts->dir);
            synced = parent && s_fsync_dir(dirname(parent)) == 0;
            free(parent);
        }
        if (!synced) {
            log_error("journal", "event=open_failed dir=%s step=fsync_dir error=%s", qdir,
                      strerror(errno));
            goto close_env;
        }
    }
    if (!self->read_only) {
        /* Reader slots of crashed processes would pin old pages forever. */
        int dead = 0;
        if ((rc = mdb_reader_check(self->env, &dead))) {
            (void)s_fail("reader_check", rc);
            goto close_env;
        }
        if (dead)
            log_warn("journal", "event=stale_readers_cleared count=%d", dead);
    }
    if (s_env_mapsize(self))
        goto close_env;
    if (!self->read_only && self->map_size < map_init && s_set_mapsize(self, map_init))
        goto close_env;
    int mk = mdb_env_get_maxkeysize(self->env);
    self->max_key = mk > 0 && (size_t)mk < KEY_BUF ? (size_t)mk : KEY_BUF - 1;
    if (s_open_dbs(self))
        goto close_env;
    if (!self->read_only &&
        s_dedup_rebuild(self, opts->dedup_window ? opts->dedup_window : DEFAULT_DEDUP_WINDOW))
        goto close_env;
    self->prefill = !self->read_only && !opts->no_sync;
    s_prefill(self);
    log_info("journal",
             "event=opened dir=%s first_seq=%llu last_seq=%llu deleted=%llu map_size=%zu map_max=%zu "
             "read_only=%d sync=%d",
             qdir, (unsigned long long)self->first_seq, (unsigned long long)self->last_seq,
             (unsigned long long)self->anchor.seq,
             self->map_size, self->map_max, self->read_only, !opts->no_sync);
    return self;

close_env:
    dedup_destroy(&self->dedup);
    mdb_env_close(self->env);
free_self:
    crypto_sha256_destroy(&self->hasher);
    free(self->data_path);
    free(self);
    return NULL;
}

void journal_destroy(journal_t **self_p)
{
    if (!self_p || !*self_p)
        return;
    journal_t *self = *self_p;
    mdb_env_close(self->env);
    dedup_destroy(&self->dedup);
    free(self->pending);
    free(self->batch_slots);
    free(self->scratch);
    free(self->keep);
    crypto_sha256_destroy(&self->hasher);
    free(self->data_path);
    free(self);
    *self_p = NULL;
}

/* --- writing ------------------------------------------------------------- */

/* Grow the map towards the ceiling. JOURNAL_FULL at the ceiling. Only called
 * with no transaction open, as mdb_env_set_mapsize requires. */
static int s_grow(journal_t *self)
{
    if (self->map_size >= self->map_max) {
        log_limited(LOG_WARN, "journal", "journal.full", "event=map_full map_size=%zu map_max=%zu",
                    self->map_size, self->map_max);
        return JOURNAL_FULL;
    }
    size_t old = self->map_size;
    size_t next = old > self->map_max / 2 ? self->map_max : old * 2;
    int jrc = s_set_mapsize(self, next);
    if (jrc)
        return jrc;
    if (self->map_size <= old) /* LMDB kept the old size: do not loop */
        return JOURNAL_FULL;
    log_info("journal", "event=map_grown from=%zu to=%zu map_max=%zu", old, self->map_size,
             self->map_max);
    return JOURNAL_OK;
}

static int s_put_cursors(journal_t *self, MDB_txn *txn, const journal_cursor_t *cursors, size_t n,
                         int64_t now)
{
    for (size_t i = 0; i < n; i++) {
        const journal_cursor_t *c = &cursors[i];
        char kbuf[KEY_BUF];
        size_t klen = s_pair_key(self, c->agency, c->name, kbuf);
        size_t flen = c->filters ? strlen(c->filters) : 0;
        MDB_val key = {klen, kbuf}, val = {CURSOR_HDR + flen, NULL};
        int rc = mdb_put(txn, self->cursors_db, &key, &val, MDB_RESERVE);
        if (rc)
            return s_fail("cursor_put", rc);
        uint8_t *p = val.mv_data;
        logfile_put_u64le(p, c->acked);
        logfile_put_u64le(p + 8, (uint64_t)now);
        if (flen)
            memcpy(p + CURSOR_HDR, c->filters, flen);
    }
    return JOURNAL_OK;
}

static int s_cursors_check(const journal_t *self, const journal_cursor_t *cursors, size_t n)
{
    if (n && !cursors)
        return JOURNAL_INVALID;
    for (size_t i = 0; i < n; i++) {
        char kbuf[KEY_BUF];
        if (s_pair_key(self, cursors[i].agency, cursors[i].name, kbuf) == 0)
            return JOURNAL_INVALID;
    }
    return JOURNAL_OK;
}

/* A dedup_find visitor: is candidate seq the original of m->e? Keeps the
 * smallest matching seq (two copies can both be in the window only when the
 * window grew across a restart; the first is the original). */
typedef struct {
    journal_t *self;
    MDB_txn *txn;
    const journal_entry_t *e;
    const s_pending_t *p;
    uint64_t seq;        /* 0: no match yet */
    int64_t received_at;
} s_match_t;

static int s_match(uint64_t seq, void *arg)
{
    s_match_t *m = arg;
    journal_record_t rec;
    int jrc = s_entry_get(m->self, m->txn, seq, &rec);
    if (jrc == JOURNAL_NOTFOUND)
        return 0; /* cannot be verified, so it is not the original */
    if (jrc)
        return jrc;
    if (rec.source_len == m->p->source_len && rec.event_id_len == m->p->event_id_len &&
        memcmp(rec.source, m->e->source, rec.source_len) == 0 &&
        memcmp(rec.event_id, m->e->event_id, rec.event_id_len) == 0 &&
        (m->seq == 0 || seq < m->seq)) {
        m->seq = seq;
        m->received_at = rec.received_at;
    }
    return 0;
}

/* One attempt at a batch in one write transaction. On success the new last
 * seq and received_at are returned through *last and *received_at; nothing
 * in self changes here (the window included). JOURNAL_FULL means
 * MDB_MAP_FULL: nothing written. Needs self->pending from s_prepare. */
/* What one write attempt produced, published by s_write after the commit. */
typedef struct {
    uint64_t last;
    int64_t received_at;
    uint8_t chain[LOGFILE_CHAIN_LEN];
} s_head_t;

static int s_checkpoint_write(journal_t *self, MDB_txn *txn, const logfile_checkpoint_t *cp)
{
    uint8_t buf[LOGFILE_CHECKPOINT_LEN];
    logfile_checkpoint_encode(cp, buf);
    uint64_t seq = cp->seq;
    MDB_val key = {sizeof seq, &seq}, val = {sizeof buf, buf};
    int rc = mdb_put(txn, self->checkpoints_db, &key, &val, 0);
    return rc ? s_fail("checkpoint_put", rc) : JOURNAL_OK;
}

/* One attempt at writing the batch (and the checkpoint, when cp is set) in
 * one transaction; *head gets the new log head on success. */
static int s_try_batch(journal_t *self, journal_entry_t *entries, size_t n,
                       const journal_cursor_t *cursors, size_t n_cursors,
                       const logfile_checkpoint_t *cp, s_head_t *head)
{
    MDB_txn *txn;
    int rc = mdb_txn_begin(self->env, NULL, 0, &txn);
    if (rc)
        return s_fail("write_begin", rc);
    int jrc = JOURNAL_OK;
    uint64_t seq = self->last_seq;
    uint8_t chain[LOGFILE_CHAIN_LEN];
    memcpy(chain, self->last_chain, sizeof chain);
    int64_t now = s_now_us();
    /* One time per batch, clamped so the log's times never go backwards
     * (the wall clock may, and seq_at_time relies on order). */
    if (now < self->last_received_at)
        now = self->last_received_at;

    for (size_t i = 0; i < n; i++) {
        journal_entry_t *e = &entries[i];
        const s_pending_t *p = &self->pending[i];
        if (p->first != i) {
            /* Repeated inside the batch: resolves to the first occurrence,
             * already handled (new, or itself a duplicate). */
            const journal_entry_t *f = &entries[p->first];
            e->seq = f->seq;
            e->received_at = f->received_at;
            e->duplicate = true;
            continue;
        }
        s_match_t m = {self, txn, e, p, 0, 0};
        if ((jrc = dedup_find(self->dedup, p->hash, s_match, &m)))
            goto abort_txn;
        if (m.seq) {
            e->seq = m.seq;
            e->received_at = m.received_at;
            e->duplicate = true;
            continue;
        }
        seq++;
        size_t size = logfile_entry_size(p->type_len, p->source_len, p->event_id_len, e->event_len);
        MDB_val key = {sizeof seq, &seq}, val = {size, NULL};
        /* MDB_APPEND: keys only grow, so LMDB skips the search and fills
         * pages completely; MDB_RESERVE lets us write the value in place. */
        rc = mdb_put(txn, self->log_db, &key, &val, MDB_APPEND | MDB_RESERVE);
        if (rc) {
            jrc = s_fail("log_put", rc);
            goto abort_txn;
        }
        uint8_t *v = val.mv_data;
        logfile_entry_encode(v, now, e->type, p->type_len, e->source, p->source_len, e->event_id,
                             p->event_id_len, e->event, e->event_len);
        /* Hashed from the bytes as stored, so the verifier, which reads the
         * same bytes, cannot disagree with the writer about the input. */
        if (logfile_chain(self->hasher, chain, seq, v, size, chain) != CRYPTO_OK) {
            log_error("journal", "event=chain_hash_failed seq=%llu", (unsigned long long)seq);
            jrc = JOURNAL_IO;
            goto abort_txn;
        }
        memcpy(v + LOGFILE_CHAIN_OFF, chain, sizeof chain);
        e->seq = seq;
        e->received_at = now;
        e->duplicate = false;
    }
    if ((jrc = s_put_cursors(self, txn, cursors, n_cursors, s_now_us())))
        goto abort_txn;
    if (cp && (jrc = s_checkpoint_write(self, txn, cp)))
        goto abort_txn;
    /* Commit frees the transaction even when it fails. */
    rc = mdb_txn_commit(txn);
    if (rc)
        return s_fail("commit", rc);
    head->last = seq;
    head->received_at = now;
    memcpy(head->chain, chain, sizeof chain);
    return JOURNAL_OK;

abort_txn:
    mdb_txn_abort(txn);
    return jrc;
}

/* Run a write attempt, growing the map after MDB_MAP_FULL until it fits or
 * the ceiling is reached; then, and only then, publish the new bounds and
 * chain head and put the batch's new events into the window. */
static int s_write(journal_t *self, journal_entry_t *entries, size_t n,
                   const journal_cursor_t *cursors, size_t n_cursors, const logfile_checkpoint_t *cp)
{
    for (;;) {
        s_head_t head = {0}; /* gcc -O2 cannot see that a successful attempt sets it */
        int jrc = s_try_batch(self, entries, n, cursors, n_cursors, cp, &head);
        if (jrc == JOURNAL_FULL) {
            if ((jrc = s_grow(self)))
                return jrc;
            continue;
        }
        if (jrc)
            return jrc;
        if (head.last != self->last_seq) {
            if (self->first_seq == 0) {
                self->first_seq = self->last_seq + 1;
                self->first_received_at = head.received_at;
            }
            self->last_seq = head.last;
            self->last_received_at = head.received_at;
            memcpy(self->last_chain, head.chain, sizeof head.chain);
        }
        for (size_t i = 0; i < n; i++)
            if (!entries[i].duplicate)
                dedup_insert(self->dedup, self->pending[i].hash, entries[i].seq);
        s_prefill(self);
        return JOURNAL_OK;
    }
}

/* Make room for n entries in the per-batch arrays (kept between batches;
 * bounded by the largest batch, which the router caps with batch_max). */
static int s_reserve(journal_t *self, size_t n, size_t slots)
{
    if (n > self->pending_cap) {
        s_pending_t *p = realloc(self->pending, n * sizeof *p);
        if (!p)
            goto out_of_memory;
        self->pending = p;
        self->pending_cap = n;
    }
    if (slots > self->batch_slots_cap) {
        size_t *b = realloc(self->batch_slots, slots * sizeof *b);
        if (!b)
            goto out_of_memory;
        self->batch_slots = b;
        self->batch_slots_cap = slots;
    }
    return JOURNAL_OK;
out_of_memory:
    log_error("journal", "event=out_of_memory what=batch entries=%zu", n);
    return JOURNAL_IO;
}

/* Hash every entry and find repeats inside the batch with a small
 * open-addressing table of entry indexes (at most half full), so that
 * s_try_batch, which may run more than once, only has to look at the window.
 * Lengths were checked by the caller. */
static int s_prepare(journal_t *self, const journal_entry_t *entries, size_t n)
{
    size_t slots = 4;
    while (slots < 2 * n)
        slots <<= 1;
    int jrc = s_reserve(self, n, slots);
    if (jrc)
        return jrc;
    size_t mask = slots - 1;
    memset(self->batch_slots, 0, slots * sizeof *self->batch_slots);
    for (size_t i = 0; i < n; i++) {
        const journal_entry_t *e = &entries[i];
        s_pending_t *p = &self->pending[i];
        size_t sl = strlen(e->source), il = strlen(e->event_id);
        *p = (s_pending_t){
            .hash = dedup_hash(self->dedup, e->source, sl, e->event_id, il),
            .first = i,
            .type_len = (uint16_t)strlen(e->type),
            .source_len = (uint8_t)sl,
            .event_id_len = (uint8_t)il,
        };
        size_t k = (size_t)p->hash & mask;
        for (; self->batch_slots[k]; k = (k + 1) & mask) {
            size_t j = self->batch_slots[k] - 1;
            const s_pending_t *q = &self->pending[j];
            if (q->hash == p->hash && q->source_len == p->source_len &&
                q->event_id_len == p->event_id_len &&
                memcmp(entries[j].source, e->source, sl) == 0 &&
                memcmp(entries[j].event_id, e->event_id, il) == 0) {
                p->first = j;
                break;
            }
        }
        if (p->first == i)
            self->batch_slots[k] = i + 1;
    }
    return JOURNAL_OK;
}

/* 1 to ID_MAX bytes; a longer string is not even read to its end. */
static bool s_id_ok(const char *s)
{
    return s && s[0] && strnlen(s, ID_MAX + 1) <= ID_MAX;
}

int journal_append_batch(journal_t *self, journal_entry_t *entries, size_t n,
                         const journal_cursor_t *cursors, size_t n_cursors)
{
    assert(self);
    if (self->read_only || (n && !entries))
        return JOURNAL_INVALID;
    /* Check everything before the transaction, so a bad argument never
     * costs a rollback and "all or nothing" holds trivially. */
    for (size_t i = 0; i < n; i++) {
        const journal_entry_t *e = &entries[i];
        if (!s_id_ok(e->source) || !s_id_ok(e->event_id) || !e->type ||
            strnlen(e->type, (size_t)UINT16_MAX + 1) > UINT16_MAX || (e->event_len && !e->event))
            return JOURNAL_INVALID;
    }
    if (s_cursors_check(self, cursors, n_cursors))
        return JOURNAL_INVALID;
    if (n == 0 && n_cursors == 0)
        return JOURNAL_OK;
    int jrc = n ? s_prepare(self, entries, n) : JOURNAL_OK;
    if (jrc)
        return jrc;
    return s_write(self, entries, n, cursors, n_cursors, NULL);
}

int journal_save_cursors(journal_t *self, const journal_cursor_t *cursors, size_t n)
{
    assert(self);
    if (self->read_only || s_cursors_check(self, cursors, n))
        return JOURNAL_INVALID;
    if (n == 0)
        return JOURNAL_OK;
    return s_write(self, NULL, 0, cursors, n, NULL);
}

void journal_chain_head(const journal_t *self, uint8_t out[JOURNAL_CHAIN_LEN])
{
    memcpy(out, self->last_chain, JOURNAL_CHAIN_LEN);
}

int journal_checkpoint_put(journal_t *self, const logfile_checkpoint_t *cp)
{
    assert(self && cp);
    /* Only the head can be vouched for: the journal knows its chain hash,
     * and refusing anything else keeps a wrong hash from being signed. */
    if (self->read_only || cp->seq == 0 || cp->seq != self->last_seq ||
        memcmp(cp->chain, self->last_chain, JOURNAL_CHAIN_LEN) != 0)
        return JOURNAL_INVALID;
    return s_write(self, NULL, 0, NULL, 0, cp);
}

/* Read one checkpoint record: at seq (op MDB_SET) or the last (MDB_LAST). */
static int s_checkpoint_read(journal_t *self, uint64_t seq, MDB_cursor_op op, logfile_checkpoint_t *out)
{
    if (!self->has_checkpoints)
        return JOURNAL_NOTFOUND;
    MDB_txn *txn;
    MDB_cursor *cur;
    int jrc = s_read_cursor(self, self->checkpoints_db, &txn, &cur);
    if (jrc)
        return jrc;
    MDB_val key = {sizeof seq, &seq}, val;
    int rc = mdb_cursor_get(cur, &key, &val, op);
    if (rc == MDB_NOTFOUND)
        jrc = JOURNAL_NOTFOUND;
    else if (rc)
        jrc = s_fail("checkpoint_get", rc);
    else if (logfile_checkpoint_decode(val.mv_data, val.mv_size, out) != LOGFILE_OK)
        jrc = s_corrupt("checkpoint", seq);
    s_read_end(txn, cur);
    return jrc;
}

int journal_checkpoint_get(journal_t *self, uint64_t seq, logfile_checkpoint_t *out)
{
    assert(self && out);
    return s_checkpoint_read(self, seq, MDB_SET, out);
}

int journal_checkpoint_last(journal_t *self, logfile_checkpoint_t *out)
{
    assert(self && out);
    return s_checkpoint_read(self, 0, MDB_LAST, out);
}

/* --- reading ------------------------------------------------------------- */

int journal_scan(journal_t *self, uint64_t from, size_t max, journal_visit_fn visit, void *arg)
{
    assert(self && visit);
    MDB_txn *txn;
    MDB_cursor *cur;
    int jrc = s_read_cursor(self, self->log_db, &txn, &cur);
    if (jrc)
        return jrc;
    int rc;
    MDB_val key = {sizeof from, &from}, val;
    size_t count = 0;
    for (rc = mdb_cursor_get(cur, &key, &val, MDB_SET_RANGE); rc == 0;
         rc = mdb_cursor_get(cur, &key, &val, MDB_NEXT)) {
        if (key.mv_size != sizeof(uint64_t)) {
            jrc = s_corrupt("log_key", 0);
            goto close_cursor;
        }
        uint64_t seq;
        memcpy(&seq, key.mv_data, sizeof seq);
        journal_record_t rec;
        if ((jrc = s_entry_parse(seq, &val, &rec)))
            goto close_cursor;
        int v = visit(&rec, arg);
        if (v) {
            jrc = v;
            goto close_cursor;
        }
        if (max && ++count == max)
            goto close_cursor;
    }
    if (rc != MDB_NOTFOUND)
        jrc = s_fail("scan", rc);
close_cursor:
    s_read_end(txn, cur);
    return jrc;
}

uint64_t journal_first_seq(const journal_t *self)
{
    return self->first_seq;
}

uint64_t journal_last_seq(const journal_t *self)
{
    return self->last_seq;
}

int journal_seq_at_time(journal_t *self, int64_t time_us, uint64_t *seq)
{
    assert(self && seq);
    MDB_txn *txn;
    int jrc = s_read_begin(self, &txn);
    if (jrc)
        return jrc;
    /* received_at never decreases along the log and seqs have no gaps, so
     * the answer is a lower bound over [first, last + 1). */
    uint64_t lo = self->first_seq ? self->first_seq : 1, hi = self->last_seq + 1;
    while (lo < hi) {
        uint64_t mid = lo + (hi - lo) / 2;
        journal_record_t rec;
        jrc = s_entry_get(self, txn, mid, &rec);
        if (jrc == JOURNAL_NOTFOUND)
            jrc = s_corrupt("log_gap", mid);
        if (jrc)
            goto abort_txn;
        if (rec.received_at >= time_us)
            hi = mid;
        else
            lo = mid + 1;
    }
    *seq = lo;
abort_txn:
    mdb_txn_abort(txn);
    return jrc;
}

/* The scratch buffer grown to at least need bytes; NULL when out of memory. */
static char *s_scratch(journal_t *self, size_t need)
{
    if (need > self->scratch_cap) {
        char *p = realloc(self->scratch, need);
        if (!p)
            return NULL;
        self->scratch = p;
        self->scratch_cap = need;
    }
    return self->scratch;
}

/* Split a cursor record into a journal_cursor_t whose strings live in the
 * journal's scratch buffer (valid until the next call that uses it). */
static int s_cursor_parse(journal_t *self, const MDB_val *key, const MDB_val *val,
                          journal_cursor_t *c)
{
    const char *sep = memchr(key->mv_data, '\0', key->mv_size);
    if (!sep || sep == key->mv_data || val->mv_size < CURSOR_HDR)
        return s_corrupt("cursor", 0);
    size_t flen = val->mv_size - CURSOR_HDR;
    size_t need = key->mv_size + 1 + flen + 1;
    char *s = s_scratch(self, need);
    if (!s)
        return JOURNAL_IO;
    memcpy(s, key->mv_data, key->mv_size);
    s[key->mv_size] = '\0';
    memcpy(s + key->mv_size + 1, (const uint8_t *)val->mv_data + CURSOR_HDR, flen);
    s[key->mv_size + 1 + flen] = '\0';
    c->agency = s;
    c->name = s + (sep - (const char *)key->mv_data) + 1;
    c->filters = s + key->mv_size + 1;
    c->acked = logfile_get_u64le(val->mv_data);
    return JOURNAL_OK;
}

int journal_cursor_get(journal_t *self, const char *agency, const char *name, uint64_t *acked,
                       char **filters)
{
    assert(self && acked);
    char kbuf[KEY_BUF];
    size_t klen = s_pair_key(self, agency, name, kbuf);
    if (klen == 0)
        return JOURNAL_INVALID;
    MDB_txn *txn;
    int jrc = s_read_begin(self, &txn);
    if (jrc)
        return jrc;
    MDB_val key = {klen, kbuf}, val;
    int rc = mdb_get(txn, self->cursors_db, &key, &val);
    if (rc == MDB_NOTFOUND) {
        jrc = JOURNAL_NOTFOUND;
        goto abort_txn;
    }
    if (rc) {
        jrc = s_fail("cursor_get", rc);
        goto abort_txn;
    }
    if (val.mv_size < CURSOR_HDR) {
        jrc = s_corrupt("cursor", 0);
        goto abort_txn;
    }
    if (filters) {
        size_t flen = val.mv_size - CURSOR_HDR;
        char *copy = malloc(flen + 1);
        if (!copy) {
            jrc = JOURNAL_IO;
            goto abort_txn;
        }
        memcpy(copy, (const uint8_t *)val.mv_data + CURSOR_HDR, flen);
        copy[flen] = '\0';
        *filters = copy;
    }
    *acked = logfile_get_u64le(val.mv_data);
abort_txn:
    mdb_txn_abort(txn);
    return jrc;
}

int journal_cursor_each(journal_t *self, journal_cursor_fn fn, void *arg)
{
    assert(self && fn);
    MDB_txn *txn;
    MDB_cursor *cur;
    int jrc = s_read_cursor(self, self->cursors_db, &txn, &cur);
    if (jrc)
        return jrc;
    int rc;
    MDB_val key, val;
    for (rc = mdb_cursor_get(cur, &key, &val, MDB_FIRST); rc == 0;
         rc = mdb_cursor_get(cur, &key, &val, MDB_NEXT)) {
        journal_cursor_t c;
        if ((jrc = s_cursor_parse(self, &key, &val, &c)))
            goto close_cursor;
        int v = fn(&c, arg);
        if (v) {
            jrc = v;
            goto close_cursor;
        }
    }
    if (rc != MDB_NOTFOUND)
        jrc = s_fail("cursor_each", rc);
close_cursor:
    s_read_end(txn, cur);
    return jrc;
}

int journal_stats(journal_t *self, journal_stats_t *out)
{
    assert(self && out);
    MDB_txn *txn;
    int jrc = s_read_begin(self, &txn);
    if (jrc)
        return jrc;
    MDB_stat st;
    MDB_envinfo info;
    journal_record_t first = {.received_at = 0};
    int rc = mdb_stat(txn, self->log_db, &st);
    if (rc == 0 && self->first_seq)
        jrc = s_entry_get(self, txn, self->first_seq, &first);
    mdb_txn_abort(txn);
    if (rc)
        return s_fail("stat", rc);
    if (jrc)
        return jrc;
    if ((rc = mdb_env_info(self->env, &info)))
        return s_fail("env_info", rc);
    struct stat fst;
    if (stat(self->data_path, &fst) != 0) {
        log_error("journal", "event=stat_failed error=%s", strerror(errno));
        return JOURNAL_IO;
    }
    self->map_size = info.me_mapsize;
    *out = (journal_stats_t){
        .entries = st.ms_entries,
        .log_bytes = (uint64_t)(st.ms_branch_pages + st.ms_leaf_pages + st.ms_overflow_pages) * st.ms_psize,
        .map_size = info.me_mapsize,
        .map_max = self->map_max,
        .used_bytes = ((uint64_t)info.me_last_pgno + 1) * st.ms_psize,
        .file_bytes = (uint64_t)fst.st_size,
        .first_time = first.received_at,
    };
    return JOURNAL_OK;
}

/* --- dead letters -------------------------------------------------------- */

#define DL_HDR 16
#define DL_FLAG_REDRIVE 1u

/* Build agency "\0" name "\0" [seq big-endian] into buf; with_seq false
 * gives the prefix of the subscription's records. Returns the length, or 0
 * when a part is empty or the key would exceed LMDB's limit. */
static size_t s_dl_key(const journal_t *self, const char *agency, const char *name, uint64_t seq, bool with_seq,
                       char *buf)
{
    size_t len = s_pair_key(self, agency, name, buf);
    if (len == 0 || len + 1 + 8 > self->max_key)
        return 0;
    buf[len++] = '\0';
    if (with_seq) {
        for (int i = 7; i >= 0; i--)
            buf[len++] = (char)(uint8_t)(seq >> (8 * i));
    }
    return len;
}

/* Split a record into dl, copying its strings into the scratch buffer
 * (valid until the next call that uses it). */
static int s_dl_parse(journal_t *self, const MDB_val *key, const MDB_val *val, journal_dead_letter_t *dl)
{
    const char *k = key->mv_data;
    const char *sep1 = memchr(k, '\0', key->mv_size);
    const char *sep2 = sep1 ? memchr(sep1 + 1, '\0', key->mv_size - (size_t)(sep1 + 1 - k)) : NULL;
    if (!sep1 || sep1 == k || !sep2 || sep2 == sep1 + 1 || (size_t)(sep2 + 1 - k) + 8 != key->mv_size ||
        val->mv_size < DL_HDR)
        return s_corrupt("dead_letter", 0);
    size_t head = (size_t)(sep2 + 1 - k), rlen = val->mv_size - DL_HDR;
    size_t need = head + rlen + 1;
    char *out = s_scratch(self, need);
    if (!out)
        return JOURNAL_IO;
    memcpy(out, k, head); /* both NUL-terminated by their separators */
    memcpy(out + head, (const uint8_t *)val->mv_data + DL_HDR, rlen);
    out[head + rlen] = '\0';
    const uint8_t *sq = (const uint8_t *)k + head, *v = val->mv_data;
    uint64_t seq = 0;
    for (int i = 0; i < 8; i++)
        seq = (seq << 8) | sq[i];
    uint32_t flags = s_get_u32le(v + 4);
    *dl = (journal_dead_letter_t){.agency = out,
                                  .name = out + (sep1 + 1 - k),
                                  .seq = seq,
                                  .attempts = s_get_u32le(v),
                                  .redrive = (flags & DL_FLAG_REDRIVE) != 0,
                                  .dead_at = (int64_t)logfile_get_u64le(v + 8),
                                  .reason = out + head};
    return JOURNAL_OK;
}

static int s_dl_write(journal_t *self, MDB_txn *txn, const journal_dead_letter_t *dl)
{
    char kbuf[KEY_BUF];
    size_t klen = s_dl_key(self, dl->agency, dl->name, dl->seq, true, kbuf);
    size_t rlen = dl->reason ? strnlen(dl->reason, JOURNAL_REASON_MAX) : 0;
    MDB_val key = {klen, kbuf}, val = {DL_HDR + rlen, NULL};
    int rc = mdb_put(txn, self->dead_letters_db, &key, &val, MDB_RESERVE);
    if (rc)
        return s_fail("dead_letter_put", rc);
    uint8_t *p = val.mv_data;
    s_put_u32le(p, dl->attempts);
    s_put_u32le(p + 4, dl->redrive ? DL_FLAG_REDRIVE : 0);
    logfile_put_u64le(p + 8, (uint64_t)dl->dead_at);
    if (rlen)
        memcpy(p + DL_HDR, dl->reason, rlen);
    return JOURNAL_OK;
}

/* One write transaction running fn, committed (and synced unless no_sync)
 * when fn returns JOURNAL_OK. A full map is grown and fn run again, so fn
 * must set its outputs afresh each time. */
typedef int (*s_txn_fn)(journal_t *self, MDB_txn *txn, void *arg);

static int s_write_txn(journal_t *self, s_txn_fn fn, void *arg)
{
    for (;;) {
        MDB_txn *txn;
        int rc = mdb_txn_begin(self->env, NULL, 0, &txn);
        if (rc)
            return s_fail("write_begin", rc);
        int jrc = fn(self, txn, arg);
        if (jrc) {
            mdb_txn_abort(txn);
        } else if ((rc = mdb_txn_commit(txn))) {
            jrc = s_fail("commit", rc);
        }
        if (jrc == JOURNAL_FULL) {
            if ((jrc = s_grow(self)))
                return jrc;
            continue;
        }
        if (jrc == JOURNAL_OK)
            s_prefill(self);
        return jrc;
    }
}

typedef struct {
    const journal_dead_letter_t *dl;
    const journal_cursor_t *cursor;
} s_dl_put_t;

static int s_dl_put_txn(journal_t *self, MDB_txn *txn, void *arg)
{
    const s_dl_put_t *p = arg;
    int jrc = s_dl_write(self, txn, p->dl);
    if (jrc == JOURNAL_OK && p->cursor)
        jrc = s_put_cursors(self, txn, p->cursor, 1, s_now_us());
    return jrc;
}

int journal_dead_letter_put(journal_t *self, const journal_dead_letter_t *dl, const journal_cursor_t *cursor)
{
    assert(self && dl);
    char kbuf[KEY_BUF];
    if (self->read_only || !self->has_dead_letters || s_dl_key(self, dl->agency, dl->name, dl->seq, true, kbuf) == 0 ||
        dl->seq == 0 || s_cursors_check(self, cursor, cursor ? 1 : 0))
        return JOURNAL_INVALID;
    s_dl_put_t p = {.dl = dl, .cursor = cursor};
    return s_write_txn(self, s_dl_put_txn, &p);
}

int journal_dead_letter_get(journal_t *self, const char *agency, const char *name, uint64_t seq,
                            journal_dead_letter_t *out)
{
    assert(self && out);
    char kbuf[KEY_BUF];
    size_t klen = s_dl_key(self, agency, name, seq, true, kbuf);
    if (klen == 0)
        return JOURNAL_INVALID;
    if (!self->has_dead_letters)
        return JOURNAL_NOTFOUND;
    MDB_txn *txn;
    int jrc = s_read_begin(self, &txn);
    if (jrc)
        return jrc;
    MDB_val key = {klen, kbuf}, val;
    int rc = mdb_get(txn, self->dead_letters_db, &key, &val);
    if (rc == MDB_NOTFOUND)
        jrc = JOURNAL_NOTFOUND;
    else if (rc)
        jrc = s_fail("dead_letter_get", rc);
    else
        jrc = s_dl_parse(self, &key, &val, out);
    mdb_txn_abort(txn);
    return jrc;
}

int journal_dead_letters_each(journal_t *self, const char *agency, const char *name, uint64_t after,
                              journal_dead_letter_fn fn, void *arg)
{
    assert(self && fn);
    char kbuf[KEY_BUF];
    size_t plen = 0, klen = 0;
    if (agency) {
        plen = s_dl_key(self, agency, name, 0, false, kbuf);
        klen = s_dl_key(self, agency, name, after, true, kbuf);
        if (klen == 0)
            return JOURNAL_INVALID;
    }
    if (!self->has_dead_letters)
        return JOURNAL_OK;
    MDB_txn *txn;
    MDB_cursor *cur;
    int jrc = s_read_cursor(self, self->dead_letters_db, &txn, &cur);
    if (jrc)
        return jrc;
    MDB_val key = {klen, kbuf}, val;
    int rc = mdb_cursor_get(cur, &key, &val, agency ? MDB_SET_RANGE : MDB_FIRST);
    for (; rc == 0; rc = mdb_cursor_get(cur, &key, &val, MDB_NEXT)) {
        if (agency && (key.mv_size < plen || memcmp(key.mv_data, kbuf, plen) != 0))
            break; /* past the subscription's records */
        journal_dead_letter_t dl;
        if ((jrc = s_dl_parse(self, &key, &val, &dl)))
            goto close_cursor;
        if (agency && dl.seq <= after)
            continue; /* the record at `after` itself */
        int v = fn(&dl, arg);
        if (v) {
            jrc = v;
            goto close_cursor;
        }
    }
    if (rc && rc != MDB_NOTFOUND)
        jrc = s_fail("dead_letters_each", rc);
close_cursor:
    s_read_end(txn, cur);
    return jrc;
}

/* Apply the change to one record at key: a redrive flags it when the log
 * holds its event, a drop deletes it. Sets *outcome. */
static int s_dl_change_one(journal_t *self, MDB_txn *txn, MDB_cursor *cur, journal_dl_change_t *c, MDB_val *key,
                           MDB_val *val, uint8_t *outcome)
{
    journal_dead_letter_t dl;
    int jrc = s_dl_parse(self, key, val, &dl);
    if (jrc)
        return jrc;
    int rc;
    if (c->drop) {
        if ((rc = mdb_cursor_del(cur, 0)))
            return s_fail("dead_letter_del", rc);
        *outcome = JOURNAL_DL_DONE;
        c->affected++;
        return JOURNAL_OK;
    }
    uint64_t seq = dl.seq;
    MDB_val lkey = {sizeof seq, &seq}, lval;
    rc = mdb_get(txn, self->log_db, &lkey, &lval);
    if (rc == MDB_NOTFOUND) {
        *outcome = JOURNAL_DL_GONE;
        if (c->n_gone < c->gone_cap)
            c->gone[c->n_gone++] = seq;
        return JOURNAL_OK;
    }
    if (rc)
        return s_fail("log_get", rc);
    *outcome = JOURNAL_DL_DONE;
    c->affected++;
    if (dl.redrive)
        return JOURNAL_OK;
    dl.redrive = true;
    return s_dl_write(self, txn, &dl);
}

static int s_dl_change_txn(journal_t *self, MDB_txn *txn, void *arg)
{
    journal_dl_change_t *c = arg;
    c->affected = 0;
    c->n_gone = 0;
    c->remaining = 0;
    char pbuf[KEY_BUF];
    size_t plen = s_dl_key(self, c->agency, c->name, 0, false, pbuf);
    MDB_cursor *cur;
    int rc = mdb_cursor_open(txn, self->dead_letters_db, &cur);
    if (rc)
        return s_fail("cursor_open", rc);
    int jrc = JOURNAL_OK;
    MDB_val key, val;
    if (c->seqs) {
        for (size_t i = 0; i < c->n && jrc == JOURNAL_OK; i++) {
            char kbuf[KEY_BUF];
            key = (MDB_val){s_dl_key(self, c->agency, c->name, c->seqs[i], true, kbuf), kbuf};
            c->outcome[i] = JOURNAL_DL_MISSING;
            rc = mdb_cursor_get(cur, &key, &val, MDB_SET_KEY);
            if (rc == 0)
                jrc = s_dl_change_one(self, txn, cur, c, &key, &val, &c->outcome[i]);
            else if (rc != MDB_NOTFOUND)
                jrc = s_fail("dead_letter_get", rc);
        }
    } else {
        key = (MDB_val){plen, pbuf};
        rc = mdb_cursor_get(cur, &key, &val, MDB_SET_RANGE);
        while (rc == 0 && jrc == JOURNAL_OK && key.mv_size >= plen && memcmp(key.mv_data, pbuf, plen) == 0) {
            uint8_t outcome;
            jrc = s_dl_change_one(self, txn, cur, c, &key, &val, &outcome);
            /* After a delete LMDB's MDB_NEXT returns the record that moved
             * under the cursor, so one step serves both operations. */
            rc = mdb_cursor_get(cur, &key, &val, MDB_NEXT);
        }
        if (jrc == JOURNAL_OK && rc && rc != MDB_NOTFOUND)
            jrc = s_fail("dead_letters_change", rc);
    }
    if (jrc == JOURNAL_OK) {
        key = (MDB_val){plen, pbuf};
        for (rc = mdb_cursor_get(cur, &key, &val, MDB_SET_RANGE);
             rc == 0 && key.mv_size >= plen && memcmp(key.mv_data, pbuf, plen) == 0;
             rc = mdb_cursor_get(cur, &key, &val, MDB_NEXT))
            c->remaining++;
        if (rc && rc != MDB_NOTFOUND)
            jrc = s_fail("dead_letters_count", rc);
    }
    mdb_cursor_close(cur);
    return jrc;
}

int journal_dead_letters_change(journal_t *self, journal_dl_change_t *c)
{
    assert(self && c);
    char kbuf[KEY_BUF];
    if (self->read_only || !self->has_dead_letters || s_dl_key(self, c->agency, c->name, 0, false, kbuf) == 0 ||
        (c->seqs && c->n && !c->outcome) || (c->gone_cap && !c->gone))
        return JOURNAL_INVALID;
    return s_write_txn(self, s_dl_change_txn, c);
}

/* --- retention ------------------------------------------------------------ */

/* Parse "agency/name, agency/name" into self->keep. */
static int s_keep_parse(journal_t *self, const char *list)
{
    size_t n = 0, len = list ? strlen(list) : 0;
    for (size_t i = 0; i < len; i++)
        n += list[i] == ',';
    s_keep_t *keep = calloc(n + 1, sizeof *keep);
    char *copy = len ? strdup(list) : NULL;
    if (!keep || (len && !copy)) {
        free(keep);
        free(copy);
        return JOURNAL_IO;
    }
    size_t k = 0;
    char *save = NULL;
    for (char *tok = copy ? strtok_r(copy, ",", &save) : NULL; tok; tok = strtok_r(NULL, ",", &save)) {
        while (*tok == ' ' || *tok == '\t')
            tok++;
        size_t tl = strlen(tok);
        while (tl && (tok[tl - 1] == ' ' || tok[tl - 1] == '\t'))
            tok[--tl] = '\0';
        if (!tl)
            continue;
        char *slash = strchr(tok, '/');
        char quoted[KEY_BUF];
        if (slash)
            *slash = '\0';
        if (!slash || !codec_agency_valid(tok) || !codec_name_valid(slash + 1)) {
            if (slash)
                *slash = '/';
            log_error("journal", "event=retention_invalid keep=%s reason=\"not agency/subscription\"",
                      log_quote(tok, quoted, sizeof quoted));
            free(keep);
            free(copy);
            return JOURNAL_INVALID;
        }
        s_keep_t *e = &keep[k++];
        e->key_len = s_pair_key(self, tok, slash + 1, e->key);
        snprintf(e->name, sizeof e->name, "%s/%s", tok, slash + 1);
    }
    free(copy);
    free(self->keep);
    self->keep = keep;
    self->n_keep = k;
    return JOURNAL_OK;
}

int journal_retention_set(journal_t *self, const journal_retention_t *rules)
{
    assert(self && rules);
    if (self->read_only)
        return JOURNAL_INVALID;
    int jrc = s_keep_parse(self, rules->keep);
    if (jrc)
        return jrc;
    self->ret = *rules;
    self->ret.keep = NULL;
    if (!self->ret.batch)
        self->ret.batch = RETENTION_BATCH;
    for (size_t i = 0; i < self->n_keep; i++)
        log_info("journal", "event=retention_keep subscription=%s", self->keep[i].name);
    return JOURNAL_OK;
}

/* The last seq retention may delete in txn, and what holds it there: the
 * newest entry, the newest checkpoint, or a kept subscription (*keep_of then
 * names it, and *limit is its cursor). */
static int s_retain_limit(journal_t *self, MDB_txn *txn, uint64_t *limit, const s_keep_t **keep_of)
{
    *limit = self->last_seq - 1;
    *keep_of = NULL;
    if (self->ret.covered_only) {
        uint64_t cp = 0, probe = 0;
        MDB_cursor *cur;
        int rc = self->has_checkpoints ? mdb_cursor_open(txn, self->checkpoints_db, &cur) : MDB_NOTFOUND;
        if (rc == 0) {
            MDB_val key = {sizeof probe, &probe}, val;
            rc = mdb_cursor_get(cur, &key, &val, MDB_LAST);
            if (rc == 0 && key.mv_size == sizeof cp)
                memcpy(&cp, key.mv_data, sizeof cp);
            mdb_cursor_close(cur);
        }
        if (rc && rc != MDB_NOTFOUND)
            return s_fail("checkpoint_last", rc);
        if (cp < *limit)
            *limit = cp;
    }
    for (size_t i = 0; i < self->n_keep; i++) {
        const s_keep_t *k = &self->keep[i];
        MDB_val key = {k->key_len, (void *)k->key}, val;
        uint64_t acked = 0; /* no cursor yet: it has acknowledged nothing */
        int rc = mdb_get(txn, self->cursors_db, &key, &val);
        if (rc == 0 && val.mv_size >= CURSOR_HDR)
            acked = logfile_get_u64le(val.mv_data);
        else if (rc == 0)
            return s_corrupt("cursor", 0);
        else if (rc != MDB_NOTFOUND)
            return s_fail("cursor_get", rc);
        if (acked < *limit) {
            *limit = acked;
            *keep_of = k;
        }
    }
    return JOURNAL_OK;
}

/* Entries the size limit makes due now, from the log's pages and their
 * average entry: an estimate, corrected by the next call. */
static int s_retain_size_due(journal_t *self, MDB_txn *txn, uint64_t *due)
{
    *due = 0;
    if (!self->ret.max_bytes)
        return JOURNAL_OK;
    MDB_stat st;
    int rc = mdb_stat(txn, self->log_db, &st);
    if (rc)
        return s_fail("log_stat", rc);
    uint64_t bytes = (uint64_t)(st.ms_branch_pages + st.ms_leaf_pages + st.ms_overflow_pages) * st.ms_psize;
    if (bytes <= self->ret.max_bytes || st.ms_entries == 0)
        return JOURNAL_OK;
    uint64_t avg = bytes / st.ms_entries;
    avg = avg ? avg : 1;
    *due = (bytes - self->ret.max_bytes + avg - 1) / avg;
    return JOURNAL_OK;
}

/* What one deleting transaction did, published after its commit. */
typedef struct {
    size_t deleted;
    logfile_anchor_t anchor;   /* the last entry deleted */
    uint64_t first;            /* the new first seq and its received_at */
    int64_t first_received_at;
    bool by_age, by_size;
    const s_keep_t *held_by;   /* a kept subscription held due entries */
    uint64_t held_at;          /* its cursor */
} s_retained_t;

/* Read the first entry through cur. JOURNAL_NOTFOUND when the log is empty. */
static int s_retain_first(MDB_cursor *cur, journal_record_t *rec)
{
    MDB_val key, val;
    int rc = mdb_cursor_get(cur, &key, &val, MDB_FIRST);
    if (rc == MDB_NOTFOUND)
        return JOURNAL_NOTFOUND;
    if (rc)
        return s_fail("retain_first", rc);
    uint64_t seq = 0;
    if (key.mv_size == sizeof seq)
        memcpy(&seq, key.mv_data, sizeof seq);
    if (seq == 0 || s_entry_split(seq, &val, rec)) {
        log_limited(LOG_ERROR, "journal", "journal.retain", "event=corrupt what=retain_first seq=%llu",
                    (unsigned long long)seq);
        return JOURNAL_CORRUPT;
    }
    return JOURNAL_OK;
}

/* Drop the checkpoints older than the anchor: they name entries that are
 * gone, so nothing can check them any more. One at the anchor's seq stays:
 * it names the anchor's chain hash, and so vouches for it. */
static int s_retain_checkpoints(journal_t *self, MDB_txn *txn, uint64_t anchor)
{
    if (!self->has_checkpoints)
        return JOURNAL_OK;
    MDB_cursor *cur;
    int rc = mdb_cursor_open(txn, self->checkpoints_db, &cur);
    if (rc)
        return s_fail("cursor_open", rc);
    MDB_val key, val;
    while ((rc = mdb_cursor_get(cur, &key, &val, MDB_FIRST)) == 0) {
        uint64_t seq = 0;
        if (key.mv_size == sizeof seq)
            memcpy(&seq, key.mv_data, sizeof seq);
        if (seq >= anchor)
            break;
        if ((rc = mdb_cursor_del(cur, 0)))
            break;
    }
    mdb_cursor_close(cur);
    return rc && rc != MDB_NOTFOUND ? s_fail("checkpoint_del", rc) : JOURNAL_OK;
}

/* One attempt at one deleting transaction; nothing in self changes. */
static int s_try_retain(journal_t *self, int64_t now_us, s_retained_t *out)
{
    memset(out, 0, sizeof *out);
    MDB_txn *txn;
    int rc = mdb_txn_begin(self->env, NULL, 0, &txn);
    if (rc)
        return s_fail("write_begin", rc);
    uint64_t limit, size_due;
    const s_keep_t *keep_of;
    int jrc = s_retain_limit(self, txn, &limit, &keep_of);
    if (!jrc)
        jrc = s_retain_size_due(self, txn, &size_due);
    if (jrc)
        goto abort_txn;
    int64_t cutoff = self->ret.max_age_us ? now_us - self->ret.max_age_us : INT64_MIN;
    MDB_cursor *cur;
    if ((rc = mdb_cursor_open(txn, self->log_db, &cur))) {
        jrc = s_fail("cursor_open", rc);
        goto abort_txn;
    }
    journal_record_t rec;
    while ((jrc = s_retain_first(cur, &rec)) == JOURNAL_OK && out->deleted < self->ret.batch) {
        bool by_size = out->deleted < size_due, by_age = rec.received_at < cutoff;
        if (!by_size && !by_age)
            break;
        if (rec.seq > limit) {
            if (keep_of) {
                out->held_by = keep_of;
                out->held_at = limit;
            }
            break;
        }
        out->anchor = (logfile_anchor_t){.seq = rec.seq, .received_at = rec.received_at};
        memcpy(out->anchor.chain, rec.chain, sizeof rec.chain);
        out->by_age |= by_age;
        out->by_size |= by_size;
        if ((rc = mdb_cursor_del(cur, 0))) {
            jrc = s_fail("log_del", rc);
            break;
        }
        out->deleted++;
    }
    if (jrc == JOURNAL_OK) {
        out->first = rec.seq;
        out->first_received_at = rec.received_at;
    }
    mdb_cursor_close(cur);
    if (jrc || out->deleted == 0) /* the newest entry is kept, so NOTFOUND is a fault too */
        goto abort_txn;
    uint8_t buf[LOGFILE_ANCHOR_LEN];
    logfile_anchor_encode(&out->anchor, buf);
    MDB_val key = {sizeof LOGFILE_ANCHOR_KEY - 1, LOGFILE_ANCHOR_KEY}, val = {sizeof buf, buf};
    if ((rc = mdb_put(txn, self->meta_db, &key, &val, 0))) {
        jrc = s_fail("anchor_put", rc);
        goto abort_txn;
    }
    if ((jrc = s_retain_checkpoints(self, txn, out->anchor.seq)))
        goto abort_txn;
    rc = mdb_txn_commit(txn);
    return rc ? s_fail("commit", rc) : JOURNAL_OK;
abort_txn:
    mdb_txn_abort(txn);
    if (jrc == JOURNAL_NOTFOUND)
        jrc = s_corrupt("log_empty", self->last_seq);
    out->deleted = 0;
    return jrc;
}

/* The lines of journal_retain: a summary at the first deletion and then at
 * most once a minute; a warning at most once a minute while held. */
static void s_retain_log(journal_t *self, const s_retained_t *r)
{
    int64_t now = codec_mono_ms();
    self->ret_unlogged += r->deleted;
    self->ret_by_age |= r->by_age;
    self->ret_by_size |= r->by_size;
    if (self->ret_unlogged && (!self->ret_logged_ms || now - self->ret_logged_ms >= RETENTION_LOG_MS)) {
        char oldest[KEYFILE_TIME_LEN];
        keyfile_time_format(self->first_received_at / 1000000, oldest, sizeof oldest);
        log_info("journal", "event=retention_deleted entries=%llu by=%s first_seq=%llu oldest=%s deleted_total=%llu",
                 (unsigned long long)self->ret_unlogged,
                 self->ret_by_age && self->ret_by_size ? "age,size" : self->ret_by_age ? "age" : "size",
                 (unsigned long long)self->first_seq, oldest, (unsigned long long)self->anchor.seq);
        self->ret_unlogged = 0;
        self->ret_by_age = self->ret_by_size = false;
        self->ret_logged_ms = now;
    }
    if (r->held_by && (!self->held_logged_ms || now - self->held_logged_ms >= RETENTION_LOG_MS)) {
        log_warn("journal",
                 "event=retention_held subscription=%s cursor=%llu first_seq=%llu effect=\"due entries after the "
                 "subscription's cursor are kept until it acknowledges them\"",
                 r->held_by->name, (unsigned long long)r->held_at, (unsigned long long)self->first_seq);
        self->held_logged_ms = now;
    }
}

int journal_retain(journal_t *self, int64_t now_us, size_t *deleted)
{
    assert(self && deleted);
    *deleted = 0;
    if (self->read_only)
        return JOURNAL_INVALID;
    if ((!self->ret.max_age_us && !self->ret.max_bytes) || self->first_seq == 0 ||
        self->first_seq >= self->last_seq)
        return JOURNAL_OK;
    /* Nothing can be due by age alone before the first entry is: no
     * transaction at all, which is what an idle turn mostly finds. */
    if (!self->ret.max_bytes && self->first_received_at >= now_us - self->ret.max_age_us)
        return JOURNAL_OK;
    s_retained_t r;
    int jrc;
    bool lent = false;
    while ((jrc = s_try_retain(self, now_us, &r)) == JOURNAL_FULL) {
        if (s_grow(self) == JOURNAL_OK)
            continue;
        /* At the ceiling LMDB has no page left even for the copies a
         * deletion makes, though only a deletion can make room: lend it a
         * little map beyond the ceiling, once, and take back after the
         * commit what it did not use (LMDB keeps the map at least as large
         * as the pages in use, so the file ends a few pages over map_max). */
        if (lent || (jrc = s_set_mapsize(self, self->map_max + RETENTION_RESERVE)))
            break;
        lent = true;
        log_limited(LOG_WARN, "journal", "journal.ceiling", "event=retention_at_ceiling map_max=%zu lent=%zu",
                    self->map_max, (size_t)RETENTION_RESERVE);
    }
    if (lent) {
        int src = s_set_mapsize(self, self->map_max);
        jrc = jrc ? jrc : src;
    }
    if (jrc)
        return jrc;
    self->held = r.held_by != NULL;
    if (r.deleted) {
        self->anchor = r.anchor;
        self->first_seq = r.first;
        self->first_received_at = r.first_received_at;
        *deleted = r.deleted;
    }
    s_retain_log(self, &r);
    return JOURNAL_OK;
}

void journal_retention_stats(const journal_t *self, journal_retention_stats_t *out)
{
    *out = (journal_retention_stats_t){
        .first_seq = self->first_seq,
        .deleted_total = self->anchor.seq,
        .oldest_us = self->first_seq ? self->first_received_at : 0,
        .anchor_seq = self->anchor.seq,
        .anchor_us = self->anchor.received_at,
        .held = self->held,
    };
}

const char *journal_strerror(int code)
{
    switch (code) {
    case JOURNAL_OK: return "ok";
    case JOURNAL_FULL: return "journal full: map size ceiling reached";
    case JOURNAL_IO: return "journal I/O or LMDB error";
    case JOURNAL_CORRUPT: return "journal entry or record does not parse";
    case JOURNAL_NOTFOUND: return "no such journal record";
    case JOURNAL_INVALID: return "invalid argument";
    case JOURNAL_NOSPACE: return "no space left on the file system";
    default: return "unknown journal error";
    }
}
