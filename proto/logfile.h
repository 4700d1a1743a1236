/* logfile - the bytes of the hub's log, and its offline read-only verifier.
 *
 * The one description of the log's on-disk format that both sides link: the
 * hub's journal (hub/journal.c) writes entries and checkpoints with these
 * functions, and `civibus verify` (adapters/cli/verify.c) reads them back
 * through logfile_open/logfile_verify, without the hub's private modules;
 * `civibus backup` and `restore` copy it with logfile_copy (proto/backup.h).
 * docs/LOG.md is the prose version of this header.
 *
 * Entry (the value of log key seq), format 2, integers little-endian:
 *   byte 0      entry version (2)
 *   byte 1      flags (0)
 *   bytes 2-3   type length T (u16)
 *   byte 4      source length S (1-255)
 *   byte 5      event_id length I (1-255)
 *   bytes 6-7   reserved (0)
 *   bytes 8-15  received_at (i64, µs since the Unix epoch)
 *   bytes 16-47 chain hash of this entry (32 bytes)
 *   48 ..       type (T), source (S), event_id (I), then the serialized event
 * Chain hash:
 *   chain[0]   = 32 zero bytes
 *   chain[seq] = SHA-256( chain[seq-1] || seq as u64 LE
 *                         || entry bytes 0-15 || entry bytes 48..end )
 * i.e. the entry exactly as stored with its own chain field left out, bound
 * to its predecessor and to its position.
 *
 * Checkpoint (the value of checkpoints key seq), 128 bytes:
 *   byte 0 version (1), bytes 1-7 reserved (0), 8-15 seq (u64),
 *   16-23 time (i64 µs), 24-55 chain hash at seq, 56-63 key id, 64-127 signature
 * The signature is Ed25519 over the 78-byte string
 *   "civibus-checkpoint-v1" NUL || seq u64 LE || time i64 LE || chain || key id
 *
 * Retention anchor (the value of meta key "anchor", absent until retention
 * first deleted entries), 48 bytes:
 *   bytes 0-7 seq A of the last deleted entry (u64), 8-15 its received_at
 *   (i64), 16-47 chain[A]
 * Entries 1..A are gone; the log starts at A+1 and its chain goes on from
 * chain[A], so the rest still verifies. The anchor is written in the same
 * transaction that deletes the entries.
 *
 * Not thread-safe per object; one logfile_t per thread.
 */
#ifndef CIVIBUS_LOGFILE_H
#define CIVIBUS_LOGFILE_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "crypto.h"
#include "keyfile.h"

#define LOGFILE_FORMAT_VERSION 2u /* meta "version" */
#define LOGFILE_ENTRY_VERSION 2u
#define LOGFILE_CHAIN_LEN 32
#define LOGFILE_CHAIN_OFF 16
#define LOGFILE_ENTRY_HDR 48 /* fixed part of an entry, chain hash included */
#define LOGFILE_CHECKPOINT_VERSION 1u
#define LOGFILE_CHECKPOINT_LEN 128
#define LOGFILE_SIGNED_LEN 78
#define LOGFILE_ANCHOR_KEY "anchor" /* meta key of the retention anchor */
#define LOGFILE_ANCHOR_LEN 48

enum logfile_err {
    LOGFILE_OK = 0,
    LOGFILE_IO = -1,       /* cannot open or read the files (message in the report) */
    LOGFILE_FORMAT = -2,   /* not a civibus log, or another format version */
    LOGFILE_TAMPERED = -3, /* verification found a problem (report says where) */
    LOGFILE_NOT_WITNESS = -4, /* logfile_witness_parse: the line holds no checkpoint */
    LOGFILE_UNKNOWN_KEY = -5, /* logfile_checkpoint_check: no such hub key valid at the time */
};

/* One entry split into its parts. Pointers point into the stored bytes and
 * live as long as those do; the strings are not NUL-terminated. */
typedef struct {
    uint64_t seq;
    int64_t received_at;
    const char *type;
    size_t type_len;
    const char *source;
    size_t source_len;
    const char *event_id;
    size_t event_id_len;
    const uint8_t *event;
    size_t event_len;
    uint8_t chain[LOGFILE_CHAIN_LEN]; /* as stored in the entry */
} logfile_entry_t;

/* Bytes an entry with these lengths takes. */
size_t logfile_entry_size(size_t type_len, size_t source_len, size_t event_id_len, size_t event_len);

/* Write an entry into v (logfile_entry_size bytes) with a zero chain field;
 * the caller checked the lengths (type <= 65535, source and event_id 1-255). */
void logfile_entry_encode(uint8_t *v, int64_t received_at, const char *type, size_t type_len,
                          const char *source, size_t source_len, const char *event_id,
                          size_t event_id_len, const uint8_t *event, size_t event_len);

/* Split len bytes at v (entry seq) into *out. Returns NULL, or a short
 * name of what does not parse ("entry_header", "entry_lengths"). */
const char *logfile_entry_split(uint64_t seq, const uint8_t *v, size_t len, logfile_entry_t *out);

/* Compute chain[seq] of the len stored bytes at v (len >= LOGFILE_ENTRY_HDR)
 * from prev = chain[seq-1], with h as scratch. CRYPTO_OK or CRYPTO_INTERNAL. */
int logfile_chain(crypto_sha256_t *h, const uint8_t prev[LOGFILE_CHAIN_LEN], uint64_t seq,
                  const uint8_t *v, size_t len, uint8_t out[LOGFILE_CHAIN_LEN]);

typedef struct {
    uint64_t seq;                     /* the last entry it covers */
    int64_t time;                     /* when it was made, µs since the epoch */
    uint8_t chain[LOGFILE_CHAIN_LEN]; /* chain[seq] */
    uint8_t key_id[CRYPTO_KEYID_LEN];
    uint8_t sig[CRYPTO_SIG_LEN];
} logfile_checkpoint_t;

/* The exact bytes a checkpoint's signature covers. */
void logfile_checkpoint_signed(const logfile_checkpoint_t *cp, uint8_t out[LOGFILE_SIGNED_LEN]);
void logfile_checkpoint_encode(const logfile_checkpoint_t *cp, uint8_t out[LOGFILE_CHECKPOINT_LEN]);
/* LOGFILE_OK, or LOGFILE_FORMAT when the bytes are not a version 1 checkpoint. */
int logfile_checkpoint_decode(const uint8_t *v, size_t len, logfile_checkpoint_t *out);
/* Fill cp->key_id and cp->sig with key (a secret key). A crypto_err code. */
int logfile_checkpoint_sign(logfile_checkpoint_t *cp, const crypto_key_t *key);
/* CRYPTO_OK when cp carries key's id and a valid signature by it, else
 * CRYPTO_BAD_SIGNATURE. */
int logfile_checkpoint_verify(const logfile_checkpoint_t *cp, const crypto_key_t *key);
/* Check cp against the hub's signing keys (keyfile.h): the key with cp's key
 * id must be listed and valid at cp's time (in whole seconds: not revoked
 * at or before it, not expired), and the signature must verify by it.
 * LOGFILE_OK, or with a one-line reason in why: LOGFILE_UNKNOWN_KEY (the
 * key id is not listed, or its key was revoked or expired by then),
 * LOGFILE_TAMPERED (the signature does not verify), LOGFILE_IO (OpenSSL
 * itself failed). */
int logfile_checkpoint_check(const logfile_checkpoint_t *cp, const keyfile_hub_t *keys, char *why, size_t why_len);

/* --- witness lines --------------------------------------------------------
 * A checkpoint kept outside the hub, as one line of text:
 *   event=checkpoint seq=S time_us=T chain=HEX64 key_id=HEX16 sig=HEX128
 * The hub logs every checkpoint it signs in this form, and `civibus
 * checkpoint fetch` appends such lines (after a time stamp and the hub's
 * endpoint) to a witness file; the parser reads both, ignoring other words. */
#define LOGFILE_WITNESS_LEN 360 /* bytes of the fields above, NUL included */

/* Write cp's fields into out (LOGFILE_WITNESS_LEN bytes), without newline. */
void logfile_witness_format(const logfile_checkpoint_t *cp, char out[LOGFILE_WITNESS_LEN]);
/* Parse a witness line. LOGFILE_OK; LOGFILE_NOT_WITNESS when it has no
 * event=checkpoint word (another line of a log; readers skip it);
 * LOGFILE_FORMAT with why when a field is missing, given twice or
 * malformed. */
int logfile_witness_parse(const char *line, logfile_checkpoint_t *out, char *why, size_t why_len);

/* A witnessed checkpoint and where it came from (a line number, for the
 * report). */
typedef struct {
    logfile_checkpoint_t cp;
    int line;
} logfile_witness_t;

/* Where a log cut at the front by retention begins: entry seq was the last
 * one deleted, and chain[seq] is what the first retained entry chains to. */
typedef struct {
    uint64_t seq;        /* last deleted seq (>= 1) */
    int64_t received_at; /* its received_at, µs since the epoch */
    uint8_t chain[LOGFILE_CHAIN_LEN];
} logfile_anchor_t;

void logfile_anchor_encode(const logfile_anchor_t *a, uint8_t out[LOGFILE_ANCHOR_LEN]);
/* LOGFILE_OK, or LOGFILE_FORMAT when the bytes are not an anchor (length,
 * or seq 0). */
int logfile_anchor_decode(const uint8_t *v, size_t len, logfile_anchor_t *out);

/* --- offline reader ------------------------------------------------------ */

typedef struct logfile logfile_t;

/* The log's integers are little-endian: write v into p[0..7], read it back.
 * Shared with the hub's journal, which stores cursors and dead letters the
 * same way. */
void logfile_put_u64le(uint8_t *p, uint64_t v);
uint64_t logfile_get_u64le(const uint8_t *p);

/* Open a log read-only. dir is either a hub's data directory (data.mdb and
 * lock.mdb; MDB_RDONLY with LMDB's lock, so a running hub keeps writing
 * meanwhile), or a single file holding a copy of data.mdb, such as one made
 * by logfile_copy, read without a lock file (nothing may write it; a hub's
 * own data.mdb named as a file while a process has it open is refused).
 * NULL on error (no such path, no data.mdb in the directory, not a civibus
 * log, another format version), with one line in err. */
logfile_t *logfile_open(const char *dir, char *err, size_t err_len);
void logfile_destroy(logfile_t **self_p);

typedef struct {
    uint64_t entries;         /* entries checked */
    uint64_t checkpoints;     /* checkpoints checked */
    uint64_t first_seq;       /* first entry checked (0: none) */
    uint64_t last_seq;        /* last entry checked (0: none) */
    uint64_t last_checkpoint; /* seq of the last good checkpoint (0: none) */
    uint64_t anchor_seq;      /* retention deleted entries 1..anchor_seq (0: none) */
    uint64_t witnessed;       /* witnessed checkpoints matched */
    uint64_t last_witnessed;  /* seq of the last one (0: none) */
    uint64_t witness_skipped; /* witnessed checkpoints before `from`, not checked */
    uint64_t witness_deleted; /* witnessed checkpoints of entries retention deleted, not checkable */
    uint64_t bad_seq;         /* LOGFILE_TAMPERED: the first bad sequence number */
    char problem[320];        /* what is wrong (or the I/O error) */
} logfile_report_t;

/* Verify the log from seq `from` (0 or 1: from the beginning, which must be
 * seq 1, or the first entry after the retention anchor) to its end as of one
 * read transaction: every entry parses, seqs have no gap, every stored chain
 * hash equals the recomputed one, and every checkpoint at or after `from` is
 * signed by a key of keys valid at its time (logfile_checkpoint_check) and
 * names the recomputed chain hash of an entry that exists (or, at the
 * anchor's seq, the anchor's chain hash). Starting at the anchor trusts its
 * chain hash until a signed or witnessed checkpoint vouches for it; starting
 * later trusts the stored chain hash of entry from-1. Checkpoints older than
 * the anchor are not looked at. NULL keys checks all of that except the
 * checkpoints' signatures.
 * The witnessed checkpoints (n_witness of them, in any order; witness may be
 * NULL when there are none; they need keys) must each be signed by a key of
 * keys valid at its time, and name the recomputed chain hash of their entry:
 * a witnessed seq beyond the log's end is a truncation. Those of entries
 * retention deleted (seq below the anchor's) cannot be compared and are
 * counted in witness_deleted, those before `from` in witness_skipped.
 * Stops at the first problem.
 * Returns LOGFILE_OK, LOGFILE_TAMPERED (out->bad_seq, out->problem) or
 * LOGFILE_IO (out->problem). */
int logfile_verify(logfile_t *self, const keyfile_hub_t *keys, uint64_t from, const logfile_witness_t *witness,
                   size_t n_witness, logfile_report_t *out);

typedef struct {
    uint64_t first_seq;       /* first entry (0: the log is empty) */
    uint64_t last_seq;        /* last entry (0: the log is empty) */
    uint64_t entries;         /* entries in the log */
    uint64_t checkpoints;     /* signed checkpoints */
    uint64_t last_checkpoint; /* seq of the last one (0: none) */
    uint64_t cursors;         /* saved subscription cursors */
} logfile_summary_t;

/* Count what the log holds, as of one read transaction. LOGFILE_OK, or
 * LOGFILE_IO with the LMDB error in err. */
int logfile_summary(logfile_t *self, logfile_summary_t *out, char *err, size_t err_len);

/* Write a consistent copy of the whole environment (every database, the
 * subscription cursors included) to fd, from its current offset, as of one
 * read transaction: a running hub goes on committing meanwhile, and the
 * copy holds none of its later commits. compact omits free pages and
 * renumbers the others (MDB_CP_COMPACT): smaller, costs more CPU, and fails
 * on an environment with leaked pages, where a plain copy still works. The
 * caller syncs and closes fd; the copy opens with logfile_open as a file.
 * LOGFILE_OK, or LOGFILE_IO with the reason in err (fd then holds a partial
 * copy to throw away). */
int logfile_copy(logfile_t *self, int fd, bool compact, char *err, size_t err_len);

/* Does a process hold dir's LMDB lock file open (a running hub, or a reader
 * such as civibus verify)? 1 (its pid in *pid, may be NULL), 0 (no process,
 * or no lock.mdb), -1 on error (errno). Probes with F_GETLK, so it must not
 * be called while this process has an environment in dir open: closing the
 * probe's descriptor would drop the process's own fcntl locks on the file. */
int logfile_in_use(const char *dir, long *pid);

const char *logfile_strerror(int code);

#endif
