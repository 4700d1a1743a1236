/* logfile - the log's byte format, its chain hash, checkpoints, and the
 * offline verifier.
 *
 * The format functions work on plain bytes, so hub/journal.c can apply them
 * to values inside its own LMDB transactions. The reader below opens the
 * same LMDB environment read-only, and keeps LMDB's types inside this file,
 * as journal.c does for the writer: the two share the format, never handles.
 * A verification runs in one read transaction, so it sees one consistent
 * snapshot even while the hub appends or retention deletes; LMDB keeps the
 * pages of that snapshot alive until it ends (the file may grow meanwhile,
 * never break). A log cut by retention is walked from its anchor.
 */
#include "logfile.h"

#include <errno.h>
#include <fcntl.h>
#include <lmdb.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

static const char s_domain[] = "civibus-checkpoint-v1"; /* signed with its NUL */

struct logfile {
    MDB_env *env;
    MDB_dbi log_db;
    MDB_dbi checkpoints_db;
    MDB_dbi cursors_db;
    MDB_dbi meta_db;
    bool has_checkpoints; /* a hub without a signing key never made the DB */
    bool has_cursors;
    crypto_sha256_t *hasher;
};

void logfile_put_u64le(uint8_t *p, uint64_t v)
{
    for (int i = 0; i < 8; i++)
        p[i] = (uint8_t)(v >> (8 * i));
}

uint64_t logfile_get_u64le(const uint8_t *p)
{
    uint64_t v = 0;
    for (int i = 7; i >= 0; i--)
        v = (v << 8) | p[i];
    return v;
}

/* --- entries ------------------------------------------------------------- */

size_t logfile_entry_size(size_t type_len, size_t source_len, size_t event_id_len, size_t event_len)
{
    return LOGFILE_ENTRY_HDR + type_len + source_len + event_id_len + event_len;
}

void logfile_entry_encode(uint8_t *v, int64_t received_at, const char *type, size_t type_len,
                          const char *source, size_t source_len, const char *event_id,
                          size_t event_id_len, const uint8_t *event, size_t event_len)
{
    v[0] = LOGFILE_ENTRY_VERSION;
    v[1] = 0;
    v[2] = (uint8_t)type_len;
    v[3] = (uint8_t)(type_len >> 8);
    v[4] = (uint8_t)source_len;
    v[5] = (uint8_t)event_id_len;
    v[6] = 0;
    v[7] = 0;
    logfile_put_u64le(v + 8, (uint64_t)received_at);
    memset(v + LOGFILE_CHAIN_OFF, 0, LOGFILE_CHAIN_LEN);
    uint8_t *w = v + LOGFILE_ENTRY_HDR;
    memcpy(w, type, type_len);
    w += type_len;
    memcpy(w, source, source_len);
    w += source_len;
    memcpy(w, event_id, event_id_len);
    w += event_id_len;
    if (event_len)
        memcpy(w, event, event_len);
}

const char *logfile_entry_split(uint64_t seq, const uint8_t *v, size_t len, logfile_entry_t *out)
{
    if (len < LOGFILE_ENTRY_HDR || v[0] != LOGFILE_ENTRY_VERSION)
        return "entry_header";
    size_t type_len = (size_t)v[2] | (size_t)v[3] << 8;
    size_t source_len = v[4], event_id_len = v[5];
    size_t strings = type_len + source_len + event_id_len;
    if (source_len == 0 || event_id_len == 0 || strings > len - LOGFILE_ENTRY_HDR)
        return "entry_lengths";
    const char *s = (const char *)v + LOGFILE_ENTRY_HDR;
    out->seq = seq;
    out->received_at = (int64_t)logfile_get_u64le(v + 8);
    memcpy(out->chain, v + LOGFILE_CHAIN_OFF, LOGFILE_CHAIN_LEN);
    out->type = s;
    out->type_len = type_len;
    out->source = s + type_len;
    out->source_len = source_len;
    out->event_id = s + type_len + source_len;
    out->event_id_len = event_id_len;
    out->event = v + LOGFILE_ENTRY_HDR + strings;
    out->event_len = len - LOGFILE_ENTRY_HDR - strings;
    return NULL;
}

int logfile_chain(crypto_sha256_t *h, const uint8_t prev[LOGFILE_CHAIN_LEN], uint64_t seq,
                  const uint8_t *v, size_t len, uint8_t out[LOGFILE_CHAIN_LEN])
{
    if (len < LOGFILE_ENTRY_HDR)
        return CRYPTO_INTERNAL;
    uint8_t seq_le[8];
    logfile_put_u64le(seq_le, seq);
    int rc = crypto_sha256_begin(h);
    rc = rc ? rc : crypto_sha256_update(h, prev, LOGFILE_CHAIN_LEN);
    rc = rc ? rc : crypto_sha256_update(h, seq_le, sizeof seq_le);
    rc = rc ? rc : crypto_sha256_update(h, v, LOGFILE_CHAIN_OFF);
    rc = rc ? rc : crypto_sha256_update(h, v + LOGFILE_ENTRY_HDR, len - LOGFILE_ENTRY_HDR);
    return rc ? rc : crypto_sha256_end(h, out);
}

/* --- checkpoints --------------------------------------------------------- */

void logfile_checkpoint_signed(const logfile_checkpoint_t *cp, uint8_t out[LOGFILE_SIGNED_LEN])
{
    uint8_t *p = out;
    memcpy(p, s_domain, sizeof s_domain);
    p += sizeof s_domain;
    logfile_put_u64le(p, cp->seq);
    logfile_put_u64le(p + 8, (uint64_t)cp->time);
    p += 16;
    memcpy(p, cp->chain, LOGFILE_CHAIN_LEN);
    p += LOGFILE_CHAIN_LEN;
    memcpy(p, cp->key_id, CRYPTO_KEYID_LEN);
    _Static_assert(sizeof s_domain + 16 + LOGFILE_CHAIN_LEN + CRYPTO_KEYID_LEN == LOGFILE_SIGNED_LEN,
                   "signed checkpoint bytes");
}

void logfile_checkpoint_encode(const logfile_checkpoint_t *cp, uint8_t out[LOGFILE_CHECKPOINT_LEN])
{
    memset(out, 0, 8);
    out[0] = LOGFILE_CHECKPOINT_VERSION;
    logfile_put_u64le(out + 8, cp->seq);
    logfile_put_u64le(out + 16, (uint64_t)cp->time);
    memcpy(out + 24, cp->chain, LOGFILE_CHAIN_LEN);
    memcpy(out + 56, cp->key_id, CRYPTO_KEYID_LEN);
    memcpy(out + 64, cp->sig, CRYPTO_SIG_LEN);
}

int logfile_checkpoint_decode(const uint8_t *v, size_t len, logfile_checkpoint_t *out)
{
    if (len != LOGFILE_CHECKPOINT_LEN || v[0] != LOGFILE_CHECKPOINT_VERSION)
        return LOGFILE_FORMAT;
    out->seq = logfile_get_u64le(v + 8);
    out->time = (int64_t)logfile_get_u64le(v + 16);
    memcpy(out->chain, v + 24, LOGFILE_CHAIN_LEN);
    memcpy(out->key_id, v + 56, CRYPTO_KEYID_LEN);
    memcpy(out->sig, v + 64, CRYPTO_SIG_LEN);
    return LOGFILE_OK;
}

int logfile_checkpoint_sign(logfile_checkpoint_t *cp, const crypto_key_t *key)
{
    uint8_t msg[LOGFILE_SIGNED_LEN];
    crypto_key_id(key, cp->key_id);
    logfile_checkpoint_signed(cp, msg);
    return crypto_sign(key, msg, sizeof msg, cp->sig);
}

int logfile_checkpoint_verify(const logfile_checkpoint_t *cp, const crypto_key_t *key)
{
    uint8_t id[CRYPTO_KEYID_LEN], msg[LOGFILE_SIGNED_LEN];
    crypto_key_id(key, id);
    if (memcmp(id, cp->key_id, sizeof id) != 0)
        return CRYPTO_BAD_SIGNATURE;
    logfile_checkpoint_signed(cp, msg);
    return crypto_verify(key, msg, sizeof msg, cp->sig);
}

int logfile_checkpoint_check(const logfile_checkpoint_t *cp, const keyfile_hub_t *keys, char *why, size_t why_len)
{
    char hex[CRYPTO_KEYID_HEX];
    crypto_hex(cp->key_id, CRYPTO_KEYID_LEN, hex);
    const keyfile_sign_t *found = NULL;
    for (int i = 0; i < keys->n_sign && !found; i++) {
        uint8_t id[CRYPTO_KEYID_LEN];
        crypto_key_id_raw(keys->sign[i].pub, id);
        if (memcmp(id, cp->key_id, sizeof id) == 0)
            found = &keys->sign[i];
    }
    if (!found) {
        snprintf(why, why_len, "signed by key id %s, which is not a hub signing key", hex);
        return LOGFILE_UNKNOWN_KEY;
    }
    /* Whole seconds, as the keys' times are: a checkpoint made in the
     * second of a revocation no longer counts. */
    int64_t at = cp->time >= 0 ? cp->time / 1000000 : -1 - (-1 - cp->time) / 1000000;
    keyfile_status_t st = keyfile_sign_status(found, at);
    if (st != KEYFILE_VALID) {
        char when[KEYFILE_TIME_LEN], made[KEYFILE_TIME_LEN];
        keyfile_time_format(st == KEYFILE_REVOKED ? found->revoked_at : found->not_after, when, sizeof when);
        keyfile_time_format(at, made, sizeof made);
        snprintf(why, why_len, "signed by key id %s, %s at %s, before the checkpoint's time %s", hex,
                 st == KEYFILE_REVOKED ? "revoked" : "which expired", when, made);
        return LOGFILE_UNKNOWN_KEY;
    }
    crypto_key_t *key = crypto_key_from_public(found->pub);
    if (!key) {
        snprintf(why, why_len, "signing key id %s is not a usable Ed25519 key", hex);
        return LOGFILE_TAMPERED;
    }
    int rc = logfile_checkpoint_verify(cp, key);
    crypto_key_destroy(&key);
    if (rc == CRYPTO_OK)
        return LOGFILE_OK;
    if (rc == CRYPTO_INTERNAL) {
        snprintf(why, why_len, "OpenSSL failed to verify a signature");
        return LOGFILE_IO;
    }
    snprintf(why, why_len, "signature does not verify (key id %s)", hex);
    return LOGFILE_TAMPERED;
}

/* --- witness lines ------------------------------------------------------- */

void logfile_witness_format(const logfile_checkpoint_t *cp, char out[LOGFILE_WITNESS_LEN])
{
    char chain[2 * LOGFILE_CHAIN_LEN + 1], id[CRYPTO_KEYID_HEX], sig[2 * CRYPTO_SIG_LEN + 1];
    crypto_hex(cp->chain, LOGFILE_CHAIN_LEN, chain);
    crypto_hex(cp->key_id, CRYPTO_KEYID_LEN, id);
    crypto_hex(cp->sig, CRYPTO_SIG_LEN, sig);
    snprintf(out, LOGFILE_WITNESS_LEN, "event=checkpoint seq=%llu time_us=%lld chain=%s key_id=%s sig=%s",
             (unsigned long long)cp->seq, (long long)cp->time, chain, id, sig);
}

static bool s_unhex(const char *s, size_t n, uint8_t *out, size_t len)
{
    if (n != 2 * len)
        return false;
    for (size_t i = 0; i < len; i++) {
        uint8_t v = 0;
        for (int k = 0; k < 2; k++) {
            char c = s[2 * i + (size_t)k];
            int d = c >= '0' && c <= '9' ? c - '0' : c >= 'a' && c <= 'f' ? c - 'a' + 10 : -1;
            if (d < 0)
                return false;
            v = (uint8_t)(v << 4 | d);
        }
        out[i] = v;
    }
    return true;
}

static bool s_decimal(const char *s, size_t n, bool negative_ok, int64_t *out_signed, uint64_t *out)
{
    bool neg = negative_ok && n > 1 && s[0] == '-';
    size_t i = neg ? 1 : 0;
    if (n == i || n - i > 20)
        return false;
    uint64_t v = 0;
    for (; i < n; i++) {
        if (s[i] < '0' || s[i] > '9' || v > (UINT64_MAX - (uint64_t)(s[i] - '0')) / 10)
            return false;
        v = v * 10 + (uint64_t)(s[i] - '0');
    }
    if (out)
        *out = v;
    if (out_signed) {
        if (v > (uint64_t)INT64_MAX)
            return false;
        *out_signed = neg ? -(int64_t)v : (int64_t)v;
    }
    return true;
}

int logfile_witness_parse(const char *line, logfile_checkpoint_t *out, char *why, size_t why_len)
{
    static const char *const names[] = {"event", "seq", "time_us", "chain", "key_id", "sig"};
    enum { N_FIELDS = sizeof names / sizeof names[0] };
    bool seen[N_FIELDS] = {false};
    memset(out, 0, sizeof *out);
    for (const char *p = line; *p;) {
        while (*p == ' ' || *p == '\t' || *p == '\n' || *p == '\r')
            p++;
        const char *word = p;
        while (*p && *p != ' ' && *p != '\t' && *p != '\n' && *p != '\r')
            p++;
        const char *eq = memchr(word, '=', (size_t)(p - word));
        if (!eq)
            continue;
        size_t name_len = (size_t)(eq - word), n = (size_t)(p - eq - 1);
        const char *v = eq + 1;
        int f = -1;
        for (int i = 0; i < N_FIELDS && f < 0; i++)
            if (strlen(names[i]) == name_len && memcmp(word, names[i], name_len) == 0)
                f = i;
        if (f < 0)
            continue; /* another word of a log line */
        if (seen[f]) {
            snprintf(why, why_len, "%s= given twice", names[f]);
            return LOGFILE_FORMAT;
        }
        seen[f] = true;
        if (f == 0 && (n != 10 || memcmp(v, "checkpoint", 10) != 0)) {
            snprintf(why, why_len, "not a checkpoint (event=%.*s)", n > 32 ? 32 : (int)n, v);
            return LOGFILE_NOT_WITNESS;
        }
        bool ok;
        switch (f) {
        case 0: ok = true; break;
        case 1: ok = s_decimal(v, n, false, NULL, &out->seq) && out->seq > 0; break;
        case 2: ok = s_decimal(v, n, true, &out->time, NULL); break;
        case 3: ok = s_unhex(v, n, out->chain, LOGFILE_CHAIN_LEN); break;
        case 4: ok = s_unhex(v, n, out->key_id, CRYPTO_KEYID_LEN); break;
        default: ok = s_unhex(v, n, out->sig, CRYPTO_SIG_LEN); break;
        }
        if (!ok) {
            snprintf(why, why_len, "%s= is not valid", names[f]);
            return LOGFILE_FORMAT;
        }
    }
    if (!seen[0]) {
        snprintf(why, why_len, "no event=checkpoint");
        return LOGFILE_NOT_WITNESS;
    }
    for (int i = 1; i < N_FIELDS; i++) {
        if (!seen[i]) {
            snprintf(why, why_len, "no %s= field", names[i]);
            return LOGFILE_FORMAT;
        }
    }
    return LOGFILE_OK;
}

/* --- retention anchor ----------------------------------------------------- */

void logfile_anchor_encode(const logfile_anchor_t *a, uint8_t out[LOGFILE_ANCHOR_LEN])
{
    logfile_put_u64le(out, a->seq);
    logfile_put_u64le(out + 8, (uint64_t)a->received_at);
    memcpy(out + 16, a->chain, LOGFILE_CHAIN_LEN);
}

int logfile_anchor_decode(const uint8_t *v, size_t len, logfile_anchor_t *out)
{
    if (len != LOGFILE_ANCHOR_LEN)
        return LOGFILE_FORMAT;
    out->seq = logfile_get_u64le(v);
    out->received_at = (int64_t)logfile_get_u64le(v + 8);
    memcpy(out->chain, v + 16, LOGFILE_CHAIN_LEN);
    return out->seq ? LOGFILE_OK : LOGFILE_FORMAT;
}

/* --- reader -------------------------------------------------------------- */

int logfile_in_use(const char *dir, long *pid)
{
    char lock[4096];
    int n = snprintf(lock, sizeof lock, "%s/lock.mdb", dir);
    if (n < 0 || (size_t)n >= sizeof lock) {
        errno = ENAMETOOLONG;
        return -1;
    }
    int fd = open(lock, O_RDONLY | O_CLOEXEC);
    if (fd < 0)
        return errno == ENOENT ? 0 : -1;
    /* Every process with the environment open holds a shared lock on the
     * lock file's first byte for as long as it is open; an exclusive one
     * could not be granted, and F_GETLK names the holder. */
    struct flock fl = {.l_type = F_WRLCK, .l_whence = SEEK_SET, .l_start = 0, .l_len = 1};
    int rc = fcntl(fd, F_GETLK, &fl);
    int saved = errno;
    close(fd);
    if (rc != 0) {
        errno = saved;
        return -1;
    }
    if (fl.l_type == F_UNLCK)
        return 0;
    if (pid)
        *pid = (long)fl.l_pid;
    return 1;
}

/* How to open path. A directory is a hub's data directory: data.mdb beside
 * LMDB's lock.mdb, shared with a running hub through the lock. A regular
 * file is a copy (civibus backup) that nobody writes, read without a lock
 * file. A hub's own data.mdb named as a file while a process holds its lock
 * is refused: read without the lock, a commit could change pages under the
 * reader. Checking for data.mdb first also keeps LMDB from creating a
 * lock.mdb in a directory that holds no log. 0, or -1 with err filled. */
static int s_open_flags(const char *path, unsigned *flags, char *err, size_t err_len)
{
    struct stat st;
    if (stat(path, &st) != 0) {
        snprintf(err, err_len, "%s: %s", path, strerror(errno));
        return -1;
    }
    if (S_ISDIR(st.st_mode)) {
        char data[4096];
        int n = snprintf(data, sizeof data, "%s/data.mdb", path);
        if (n < 0 || (size_t)n >= sizeof data) {
            snprintf(err, err_len, "%s: path too long", path);
            return -1;
        }
        if (stat(data, &st) != 0) {
            snprintf(err, err_len, "%s: no log in this directory (data.mdb: %s)", path, strerror(errno));
            return -1;
        }
        *flags = MDB_RDONLY;
        return 0;
    }
    if (!S_ISREG(st.st_mode)) {
        snprintf(err, err_len, "%s: neither a data directory nor a copy of a log", path);
        return -1;
    }
    const char *base = strrchr(path, '/');
    base = base ? base + 1 : path;
    if (strcmp(base, "data.mdb") == 0) {
        char dir[4096];
        int n = snprintf(dir, sizeof dir, "%.*s", base == path ? 1 : (int)(base - path), base == path ? "." : path);
        long pid = 0;
        if (n > 0 && (size_t)n < sizeof dir && logfile_in_use(dir, &pid) > 0) {
            snprintf(err, err_len,
                     "%s: process %ld has this log open; give its directory, or a copy made by civibus backup",
                     path, pid);
            return -1;
        }
    }
    *flags = MDB_RDONLY | MDB_NOSUBDIR | MDB_NOLOCK;
    return 0;
}

/* Begin a read transaction. When the hub grew the map since this handle
 * mapped it, LMDB answers MDB_MAP_RESIZED: adopt the new size and retry. */
static int s_read_begin(logfile_t *self, MDB_txn **txn)
{
    int rc = mdb_txn_begin(self->env, NULL, MDB_RDONLY, txn);
    if (rc == MDB_MAP_RESIZED) {
        rc = mdb_env_set_mapsize(self->env, 0);
        if (rc == 0)
            rc = mdb_txn_begin(self->env, NULL, MDB_RDONLY, txn);
    }
    return rc;
}

logfile_t *logfile_open(const char *dir, char *err, size_t err_len)
{
    unsigned flags;
    if (s_open_flags(dir, &flags, err, err_len) != 0)
        return NULL;
    logfile_t *self = calloc(1, sizeof *self);
    if (!self) {
        snprintf(err, err_len, "out of memory");
        return NULL;
    }
    self->hasher = crypto_sha256_new();
    if (!self->hasher) {
        snprintf(err, err_len, "SHA-256 is not available from OpenSSL");
        goto free_self;
    }
    int rc = mdb_env_create(&self->env);
    if (rc)
        goto lmdb_error;
    /* Map size 0: adopt the size the hub last committed with. */
    if ((rc = mdb_env_set_maxdbs(self->env, 8)) || (rc = mdb_env_set_mapsize(self->env, 0)) ||
        (rc = mdb_env_open(self->env, dir, flags, 0600)))
        goto lmdb_error;
    MDB_txn *txn;
    if ((rc = mdb_txn_begin(self->env, NULL, MDB_RDONLY, &txn)))
        goto lmdb_error;
    if ((rc = mdb_dbi_open(txn, "log", MDB_INTEGERKEY, &self->log_db)) ||
        (rc = mdb_dbi_open(txn, "meta", 0, &self->meta_db))) {
        mdb_txn_abort(txn);
        if (rc == MDB_NOTFOUND) {
            snprintf(err, err_len, "%s: not a civibus log (no log or meta database)", dir);
            goto close_env;
        }
        goto lmdb_error;
    }
    MDB_val key = {7, "version"}, val;
    rc = mdb_get(txn, self->meta_db, &key, &val);
    uint32_t version = 0;
    if (rc == 0 && val.mv_size == 4) {
        const uint8_t *p = val.mv_data;
        version = (uint32_t)p[0] | (uint32_t)p[1] << 8 | (uint32_t)p[2] << 16 | (uint32_t)p[3] << 24;
    }
    if (version != LOGFILE_FORMAT_VERSION) {
        mdb_txn_abort(txn);
        snprintf(err, err_len, "%s: log format version %u, this tool reads %u", dir, version,
                 LOGFILE_FORMAT_VERSION);
        goto close_env;
    }
    rc = mdb_dbi_open(txn, "checkpoints", MDB_INTEGERKEY, &self->checkpoints_db);
    self->has_checkpoints = rc == 0;
    if (rc == 0 || rc == MDB_NOTFOUND) {
        rc = mdb_dbi_open(txn, "cursors", 0, &self->cursors_db);
        self->has_cursors = rc == 0;
    }
    /* Committing a read-only transaction keeps the handles for later ones. */
    if (rc && rc != MDB_NOTFOUND) {
        mdb_txn_abort(txn);
        goto lmdb_error;
    }
    if ((rc = mdb_txn_commit(txn)))
        goto lmdb_error;
    return self;

lmdb_error:
    snprintf(err, err_len, "%s: %s", dir, mdb_strerror(rc));
close_env:
    if (self->env)
        mdb_env_close(self->env);
free_self:
    crypto_sha256_destroy(&self->hasher);
    free(self);
    return NULL;
}

void logfile_destroy(logfile_t **self_p)
{
    if (!self_p || !*self_p)
        return;
    logfile_t *self = *self_p;
    mdb_env_close(self->env);
    crypto_sha256_destroy(&self->hasher);
    free(self);
    *self_p = NULL;
}

__attribute__((format(printf, 3, 4))) static int s_bad(logfile_report_t *out, uint64_t seq, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(out->problem, sizeof out->problem, fmt, ap);
    va_end(ap);
    out->bad_seq = seq;
    return LOGFILE_TAMPERED;
}

static int s_io(logfile_report_t *out, const char *what, int rc)
{
    snprintf(out->problem, sizeof out->problem, "%s: %s", what, mdb_strerror(rc));
    return LOGFILE_IO;
}

/* Where the walk stands: the next checkpoint not yet matched to an entry. */
typedef struct {
    MDB_cursor *cur;
    bool have;
    logfile_checkpoint_t cp;
} s_cp_walk_t;

/* Move to the next checkpoint. 0, or a logfile_err (problem set). */
static int s_cp_next(s_cp_walk_t *w, MDB_cursor_op op, uint64_t from, logfile_report_t *out)
{
    MDB_val key = {sizeof from, &from}, val;
    w->have = false;
    if (!w->cur)
        return LOGFILE_OK;
    int rc = mdb_cursor_get(w->cur, &key, &val, op);
    if (rc == MDB_NOTFOUND)
        return LOGFILE_OK;
    if (rc)
        return s_io(out, "checkpoints", rc);
    uint64_t seq = 0;
    if (key.mv_size == sizeof seq)
        memcpy(&seq, key.mv_data, sizeof seq);
    if (seq == 0 || logfile_checkpoint_decode(val.mv_data, val.mv_size, &w->cp) != LOGFILE_OK ||
        w->cp.seq != seq)
        return s_bad(out, seq, "checkpoint at seq %llu does not parse or names another seq",
                     (unsigned long long)seq);
    w->have = true;
    return LOGFILE_OK;
}

/* Read entry seq's stored chain hash: the anchor of a walk that starts after
 * the beginning. */
static int s_anchor(logfile_t *self, MDB_txn *txn, uint64_t seq, uint8_t chain[LOGFILE_CHAIN_LEN],
                    logfile_report_t *out)
{
    MDB_val key = {sizeof seq, &seq}, val;
    int rc = mdb_get(txn, self->log_db, &key, &val);
    if (rc == MDB_NOTFOUND)
        return s_bad(out, seq, "entry %llu (the start point's predecessor) is missing",
                     (unsigned long long)seq);
    if (rc)
        return s_io(out, "log", rc);
    logfile_entry_t e;
    if (logfile_entry_split(seq, val.mv_data, val.mv_size, &e))
        return s_bad(out, seq, "entry does not parse");
    memcpy(chain, e.chain, LOGFILE_CHAIN_LEN);
    return LOGFILE_OK;
}

/* Check the checkpoint(s) sitting at entry seq, whose recomputed chain hash
 * is chain. */
static int s_cp_check(s_cp_walk_t *w, uint64_t seq, const uint8_t chain[LOGFILE_CHAIN_LEN],
                      const keyfile_hub_t *keys, logfile_report_t *out)
{
    if (!w->have || w->cp.seq != seq)
        return LOGFILE_OK;
    if (memcmp(w->cp.chain, chain, LOGFILE_CHAIN_LEN) != 0)
        return s_bad(out, seq, "checkpoint's chain hash differs from the recomputed chain");
    char why[256];
    int rc = keys ? logfile_checkpoint_check(&w->cp, keys, why, sizeof why) : LOGFILE_OK;
    if (rc == LOGFILE_IO) {
        snprintf(out->problem, sizeof out->problem, "%s", why);
        return rc;
    }
    if (rc != LOGFILE_OK)
        return s_bad(out, seq, "checkpoint %s", why);
    out->checkpoints++;
    out->last_checkpoint = seq;
    return s_cp_next(w, MDB_NEXT, 0, out);
}

/* The witnessed checkpoints not yet matched, in seq order. */
typedef struct {
    const logfile_witness_t *list;
    size_t n, next;
} s_wit_walk_t;

/* Compare what was witnessed at entry seq with its recomputed chain hash. */
static int s_wit_check(s_wit_walk_t *w, uint64_t seq, const uint8_t chain[LOGFILE_CHAIN_LEN], logfile_report_t *out)
{
    for (; w->next < w->n && w->list[w->next].cp.seq == seq; w->next++) {
        if (memcmp(w->list[w->next].cp.chain, chain, LOGFILE_CHAIN_LEN) != 0)
            return s_bad(out, seq, "the witnessed checkpoint (line %d) differs from the recomputed chain: the log "
                                   "was changed at or before this seq, or rewritten",
                         w->list[w->next].line);
        out->witnessed++;
        out->last_witnessed = seq;
    }
    return LOGFILE_OK;
}

/* Read the retention anchor into *a (a->seq 0 when retention never deleted
 * anything). */
static int s_retention_anchor(logfile_t *self, MDB_txn *txn, logfile_anchor_t *a, logfile_report_t *out)
{
    memset(a, 0, sizeof *a);
    MDB_val key = {sizeof LOGFILE_ANCHOR_KEY - 1, LOGFILE_ANCHOR_KEY}, val;
    int rc = mdb_get(txn, self->meta_db, &key, &val);
    if (rc == MDB_NOTFOUND)
        return LOGFILE_OK;
    if (rc)
        return s_io(out, "meta", rc);
    if (logfile_anchor_decode(val.mv_data, val.mv_size, a) != LOGFILE_OK)
        return s_bad(out, 0, "the retention anchor does not parse");
    out->anchor_seq = a->seq;
    return LOGFILE_OK;
}

static int s_walk(logfile_t *self, MDB_txn *txn, const keyfile_hub_t *keys, uint64_t from, s_wit_walk_t *wit,
                  logfile_report_t *out)
{
    uint8_t chain[LOGFILE_CHAIN_LEN] = {0};
    logfile_anchor_t anchor;
    int lrc = s_retention_anchor(self, txn, &anchor, out);
    if (lrc)
        return lrc;
    /* Entries up to the anchor are gone: the walk cannot start among them. */
    uint64_t base = anchor.seq;
    uint64_t start = from > base + 1 ? from : base + 1;
    if (start == base + 1)
        memcpy(chain, anchor.chain, sizeof chain);
    else if ((lrc = s_anchor(self, txn, start - 1, chain, out)))
        return lrc;
    s_cp_walk_t w = {0};
    int rc;
    if (self->has_checkpoints && (rc = mdb_cursor_open(txn, self->checkpoints_db, &w.cur)))
        return s_io(out, "checkpoints", rc);
    MDB_cursor *cur;
    if ((rc = mdb_cursor_open(txn, self->log_db, &cur))) {
        lrc = s_io(out, "log", rc);
        goto close_cp;
    }
    /* A checkpoint at the anchor's seq outlives the entry it names: it must
     * name the anchor's chain hash, which it then vouches for. */
    bool at_anchor = base && start == base + 1;
    if ((lrc = s_cp_next(&w, MDB_SET_RANGE, at_anchor ? base : start, out)))
        goto close_log;
    /* What was witnessed of entries retention deleted cannot be compared
     * (their chain hashes went with them), except at the anchor's seq; what
     * was witnessed before `from` is not looked at. Neither is a failure: a
     * witnessed checkpoint further on covers the same history. */
    for (uint64_t first = at_anchor ? base : start; wit->next < wit->n && wit->list[wit->next].cp.seq < first;
         wit->next++) {
        if (wit->list[wit->next].cp.seq <= base)
            out->witness_deleted++;
        else
            out->witness_skipped++;
    }
    if (at_anchor && ((lrc = s_wit_check(wit, base, chain, out)) || (lrc = s_cp_check(&w, base, chain, keys, out))))
        goto close_log;
    uint64_t expect = start;
    MDB_val key = {sizeof start, &start}, val;
    for (rc = mdb_cursor_get(cur, &key, &val, MDB_SET_RANGE); rc == 0;
         rc = mdb_cursor_get(cur, &key, &val, MDB_NEXT)) {
        uint64_t seq = 0;
        if (key.mv_size == sizeof seq)
            memcpy(&seq, key.mv_data, sizeof seq);
        if (seq != expect) {
            lrc = s_bad(out, expect, "entry %llu is missing (the next stored entry is %llu)",
                        (unsigned long long)expect, (unsigned long long)seq);
            goto close_log;
        }
        if (w.have && w.cp.seq < seq) { /* only possible for a malformed DB */
            lrc = s_bad(out, w.cp.seq, "checkpoint names an entry that is not in the log");
            goto close_log;
        }
        logfile_entry_t e;
        const char *what = logfile_entry_split(seq, val.mv_data, val.mv_size, &e);
        if (what) {
            lrc = s_bad(out, seq, "entry does not parse (%s)", what);
            goto close_log;
        }
        uint8_t next[LOGFILE_CHAIN_LEN];
        if (logfile_chain(self->hasher, chain, seq, val.mv_data, val.mv_size, next) != CRYPTO_OK) {
            snprintf(out->problem, sizeof out->problem, "SHA-256 failed");
            lrc = LOGFILE_IO;
            goto close_log;
        }
        if (memcmp(next, e.chain, LOGFILE_CHAIN_LEN) != 0) {
            lrc = s_bad(out, seq, "stored chain hash differs from the recomputed one (entry altered, "
                                  "moved or an earlier one removed)");
            goto close_log;
        }
        memcpy(chain, next, sizeof chain);
        if ((lrc = s_wit_check(wit, seq, chain, out)) || (lrc = s_cp_check(&w, seq, chain, keys, out)))
            goto close_log;
        if (out->entries++ == 0)
            out->first_seq = seq;
        out->last_seq = seq;
        expect = seq + 1;
    }
    if (rc != MDB_NOTFOUND) {
        lrc = s_io(out, "log", rc);
        goto close_log;
    }
    if (w.have)
        lrc = s_bad(out, expect, "the log ends at %llu but a signed checkpoint covers seq %llu (truncated)",
                    (unsigned long long)(expect - 1), (unsigned long long)w.cp.seq);
    else if (wit->next < wit->n)
        lrc = s_bad(out, expect,
                    "the log ends at %llu but a witnessed checkpoint (line %d) covers seq %llu (truncated)",
                    (unsigned long long)(expect - 1), wit->list[wit->next].line,
                    (unsigned long long)wit->list[wit->next].cp.seq);
close_log:
    mdb_cursor_close(cur);
close_cp:
    if (w.cur)
        mdb_cursor_close(w.cur);
    return lrc;
}

static int s_witness_cmp(const void *a, const void *b)
{
    uint64_t x = ((const logfile_witness_t *)a)->cp.seq, y = ((const logfile_witness_t *)b)->cp.seq;
    return x < y ? -1 : x > y;
}

int logfile_verify(logfile_t *self, const keyfile_hub_t *keys, uint64_t from, const logfile_witness_t *witness,
                   size_t n_witness, logfile_report_t *out)
{
    memset(out, 0, sizeof *out);
    /* A witnessed checkpoint counts only when the hub really signed it: a
     * forged line must not make a good log look tampered. */
    if (n_witness && !keys) {
        snprintf(out->problem, sizeof out->problem, "witnessed checkpoints need the hub's signing keys");
        return LOGFILE_IO;
    }
    char why[256];
    for (size_t i = 0; i < n_witness; i++) {
        int crc = logfile_checkpoint_check(&witness[i].cp, keys, why, sizeof why);
        if (crc == LOGFILE_IO) {
            snprintf(out->problem, sizeof out->problem, "%s", why);
            return crc;
        }
        if (crc != LOGFILE_OK)
            return s_bad(out, witness[i].cp.seq, "witness line %d: checkpoint %s", witness[i].line, why);
    }
    logfile_witness_t *sorted = NULL;
    if (n_witness) {
        sorted = malloc(n_witness * sizeof *sorted);
        if (!sorted) {
            snprintf(out->problem, sizeof out->problem, "out of memory");
            return LOGFILE_IO;
        }
        memcpy(sorted, witness, n_witness * sizeof *sorted);
        qsort(sorted, n_witness, sizeof *sorted, s_witness_cmp);
    }
    s_wit_walk_t wit = {.list = sorted, .n = n_witness, .next = 0};
    MDB_txn *txn;
    int rc = s_read_begin(self, &txn);
    int lrc;
    if (rc) {
        lrc = s_io(out, "read", rc);
    } else {
        lrc = s_walk(self, txn, keys, from, &wit, out);
        mdb_txn_abort(txn);
    }
    free(sorted);
    return lrc;
}

/* The first and last key of an integer-keyed database (0, 0 when empty). */
static int s_bounds(MDB_txn *txn, MDB_dbi dbi, uint64_t *first, uint64_t *last)
{
    *first = *last = 0;
    MDB_cursor *cur;
    int rc = mdb_cursor_open(txn, dbi, &cur);
    if (rc)
        return rc;
    MDB_val key, val;
    rc = mdb_cursor_get(cur, &key, &val, MDB_FIRST);
    if (rc == 0 && key.mv_size == sizeof *first) {
        memcpy(first, key.mv_data, sizeof *first);
        rc = mdb_cursor_get(cur, &key, &val, MDB_LAST);
        if (rc == 0 && key.mv_size == sizeof *last)
            memcpy(last, key.mv_data, sizeof *last);
    }
    mdb_cursor_close(cur);
    return rc == MDB_NOTFOUND ? 0 : rc;
}

int logfile_summary(logfile_t *self, logfile_summary_t *out, char *err, size_t err_len)
{
    memset(out, 0, sizeof *out);
    MDB_txn *txn;
    int rc = s_read_begin(self, &txn);
    if (rc)
        goto fail;
    MDB_stat st;
    uint64_t first_cp;
    if ((rc = mdb_stat(txn, self->log_db, &st)) ||
        (rc = s_bounds(txn, self->log_db, &out->first_seq, &out->last_seq)))
        goto abort;
    out->entries = st.ms_entries;
    if (self->has_checkpoints) {
        if ((rc = mdb_stat(txn, self->checkpoints_db, &st)) ||
            (rc = s_bounds(txn, self->checkpoints_db, &first_cp, &out->last_checkpoint)))
            goto abort;
        out->checkpoints = st.ms_entries;
    }
    if (self->has_cursors) {
        if ((rc = mdb_stat(txn, self->cursors_db, &st)))
            goto abort;
        out->cursors = st.ms_entries;
    }
abort:
    mdb_txn_abort(txn);
    if (rc == 0)
        return LOGFILE_OK;
fail:
    snprintf(err, err_len, "read: %s", mdb_strerror(rc));
    return LOGFILE_IO;
}

int logfile_copy(logfile_t *self, int fd, bool compact, char *err, size_t err_len)
{
    unsigned flags = compact ? MDB_CP_COMPACT : 0;
    int rc = mdb_env_copyfd2(self->env, fd, flags);
    if (rc == MDB_MAP_RESIZED) {
        /* Refused before anything was written: the hub grew the map since
         * this handle mapped it. Adopt the new size and start over. */
        rc = mdb_env_set_mapsize(self->env, 0);
        if (rc == 0 && (ftruncate(fd, 0) != 0 || lseek(fd, 0, SEEK_SET) != 0))
            rc = errno;
        if (rc == 0)
            rc = mdb_env_copyfd2(self->env, fd, flags);
    }
    if (rc == 0)
        return LOGFILE_OK;
    if (rc == MDB_INCOMPATIBLE && compact)
        snprintf(err, err_len,
                 "the compacting copy found pages that belong to no database (a page leak); "
                 "a plain copy can still be made");
    else
        snprintf(err, err_len, "copy: %s", mdb_strerror(rc));
    return LOGFILE_IO;
}

const char *logfile_strerror(int code)
{
    switch (code) {
    case LOGFILE_OK: return "ok";
    case LOGFILE_IO: return "cannot read the log";
    case LOGFILE_FORMAT: return "not a civibus log of a known format";
    case LOGFILE_TAMPERED: return "the log does not verify";
    case LOGFILE_NOT_WITNESS: return "not a witness line";
    case LOGFILE_UNKNOWN_KEY: return "not signed by a hub key valid at the time";
    default: return "unknown log file error";
    }
}
