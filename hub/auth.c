/* auth - the agency registry and the ZAP handler.
 *
 * ZAP (RFC 27) request frames: version, request id, domain, address,
 * identity, mechanism, then the mechanism's credentials (for CURVE the
 * client's 32-byte public key). The reply: version, request id, status code,
 * status text, user id, metadata. A malformed request is answered with 500
 * when it can be, and never crashes the handler.
 *
 * The metadata frame of a 200 reply carries one property in RFC 27's
 * encoding (name length: 1 byte, name, value length: 4 bytes big-endian,
 * value): AUTH_KEY_PROPERTY = the admitted key in Z85.
 *
 * The registry in force is one array of every key, sorted by key, each with
 * its agency, not-after and revocation time; validity is decided at the time
 * of the question, so a key expires without a reload.
 */
#include "auth.h"

#include <dirent.h>
#include <errno.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <zmq.h>

#include "crypto.h"
#include "keyfile.h"
#include "log.h"

#define ZAP_ENDPOINT "inproc://zeromq.zap.01"
#define MAX_KEYS 100000

typedef struct {
    uint8_t key[32];
    char agency[65];
    int64_t not_after;  /* Unix seconds; KEYFILE_FOREVER when unlimited */
    int64_t revoked_at; /* Unix seconds; KEYFILE_FOREVER when not revoked */
} s_entry_t;

/* A signing key (docs/SIGNING.md), found by (key id, agency). */
typedef struct {
    uint8_t id[CRYPTO_KEYID_LEN];
    char agency[65];
    uint8_t pub[CRYPTO_PUB_LEN];
    int64_t not_after;
    int64_t revoked_at;
} s_sign_t;

typedef struct {
    s_entry_t *entries; /* sorted by key for bsearch */
    size_t n;
    s_sign_t *signs;    /* sorted by (id, agency) for bsearch */
    size_t n_signs;
    int agencies;
} s_registry_t;

struct auth {
    void *ctx;
    void *zap;
    char *dir;
    pthread_t thread;
    bool thread_started;
    pthread_mutex_t lock;
    s_registry_t *registry;
    atomic_uint_fast64_t refused;
    /* Agencies at their ceiling of live connections (under lock); few. */
    char (*full)[65];
    size_t n_full, cap_full;
};

static int64_t s_now(void)
{
    return (int64_t)time(NULL);
}

static keyfile_status_t s_entry_status(const s_entry_t *e, int64_t now)
{
    keyfile_key_t k = {.not_after = e->not_after, .revoked_at = e->revoked_at};
    return keyfile_key_status(&k, now);
}

static int s_entry_cmp(const void *a, const void *b)
{
    return memcmp(((const s_entry_t *)a)->key, ((const s_entry_t *)b)->key, 32);
}

static int s_sign_cmp(const void *a, const void *b)
{
    const s_sign_t *x = a, *y = b;
    int c = memcmp(x->id, y->id, CRYPTO_KEYID_LEN);
    return c ? c : strcmp(x->agency, y->agency);
}

static void s_registry_free(s_registry_t **reg_p)
{
    if (*reg_p) {
        free((*reg_p)->signs);
        free((*reg_p)->entries);
        free(*reg_p);
        *reg_p = NULL;
    }
}

static int s_name_ends_pub(const char *name)
{
    size_t n = strlen(name);
    return n > 4 && strcmp(name + n - 4, ".pub") == 0;
}

static s_registry_t *s_registry_load(const char *dir)
{
    s_registry_t *reg = calloc(1, sizeof *reg);
    size_t cap = 0, sign_cap = 0;
    DIR *d = opendir(dir);
    if (!reg || !d) {
        char qdir[600];
        log_error("auth", "event=registry_unreadable dir=%s error=\"%s\"", log_quote(dir, qdir, sizeof qdir),
                  strerror(errno));
        goto fail;
    }
    struct dirent *de;
    while ((de = readdir(d)) != NULL) {
        /* hub-sign.pub is the hub's own signing public key, published for
         * civibus verify --registry (keyfile.h): not an agency entry. */
        if (de->d_name[0] == '.' || !s_name_ends_pub(de->d_name) || strcmp(de->d_name, KEYFILE_HUB_SIGN_FILE) == 0)
            continue;
        char path[4096], err[512];
        snprintf(path, sizeof path, "%s/%s", dir, de->d_name);
        keyfile_t kf;
        if (keyfile_read_entry(path, &kf, err, sizeof err) != KEYFILE_OK) {
            char quoted[600];
            log_error("auth", "event=registry_entry_invalid error=%s", log_quote(err, quoted, sizeof quoted));
            goto fail;
        }
        reg->agencies++;
        for (int i = 0; i < kf.n_keys; i++) {
            if (reg->n == MAX_KEYS) {
                log_error("auth", "event=registry_too_large max_keys=%d", MAX_KEYS);
                goto fail;
            }
            if (reg->n == cap) {
                cap = cap ? cap * 2 : 64;
                s_entry_t *grown = realloc(reg->entries, cap * sizeof *grown);
                if (!grown)
                    goto fail;
                reg->entries = grown;
            }
            s_entry_t *e = &reg->entries[reg->n++];
            zmq_z85_decode(e->key, kf.keys[i].z85);
            snprintf(e->agency, sizeof e->agency, "%s", kf.agency);
            e->not_after = kf.keys[i].not_after;
            e->revoked_at = kf.keys[i].revoked_at;
        }
        for (int i = 0; i < kf.n_sign; i++) {
            if (reg->n_signs == MAX_KEYS) {
                log_error("auth", "event=registry_too_large max_keys=%d", MAX_KEYS);
                goto fail;
            }
            if (reg->n_signs == sign_cap) {
                sign_cap = sign_cap ? sign_cap * 2 : 64;
                s_sign_t *grown = realloc(reg->signs, sign_cap * sizeof *grown);
                if (!grown)
                    goto fail;
                reg->signs = grown;
            }
            s_sign_t *s = &reg->signs[reg->n_signs++];
            memcpy(s->pub, kf.sign[i].pub, CRYPTO_PUB_LEN);
            crypto_key_id_raw(s->pub, s->id);
            snprintf(s->agency, sizeof s->agency, "%s", kf.agency);
            s->not_after = kf.sign[i].not_after;
            s->revoked_at = kf.sign[i].revoked_at;
        }
    }
    closedir(d);
    d = NULL;
    if (reg->n)
        qsort(reg->entries, reg->n, sizeof *reg->entries, s_entry_cmp);
    for (size_t i = 1; i < reg->n; i++) {
        if (memcmp(reg->entries[i - 1].key, reg->entries[i].key, 32) == 0) {
            log_error("auth", "event=registry_duplicate_key agencies=%s,%s", reg->entries[i - 1].agency,
                      reg->entries[i].agency);
            goto fail;
        }
    }
    if (reg->n_signs)
        qsort(reg->signs, reg->n_signs, sizeof *reg->signs, s_sign_cmp);
    for (size_t i = 0; i < reg->n_signs; i++) {
        for (size_t j = i + 1; j < reg->n_signs && memcmp(reg->signs[i].id, reg->signs[j].id, CRYPTO_KEYID_LEN) == 0;
             j++) {
            if (memcmp(reg->signs[i].pub, reg->signs[j].pub, CRYPTO_PUB_LEN) == 0) {
                log_error("auth", "event=registry_duplicate_sign_key agencies=%s,%s", reg->signs[i].agency,
                          reg->signs[j].agency);
                goto fail;
            }
        }
    }
    return reg;
fail:
    if (d)
        closedir(d);
    s_registry_free(&reg);
    return NULL;
}

/* The entry of key, or NULL; call with the lock held. */
static const s_entry_t *s_find(const s_registry_t *reg, const uint8_t *key)
{
    s_entry_t probe;
    memcpy(probe.key, key, 32);
    return reg->n ? bsearch(&probe, reg->entries, reg->n, sizeof probe, s_entry_cmp) : NULL;
}

/* Index of agency in self->full, or -1; call with the lock held. */
static long s_full_index(const auth_t *self, const char *agency)
{
    for (size_t i = 0; i < self->n_full; i++)
        if (strcmp(self->full[i], agency) == 0)
            return (long)i;
    return -1;
}

/* Status of key at now; its agency into out (65 bytes) when registered, and
 * into *full whether that agency is at its ceiling of connections. */
static auth_key_status_t s_lookup(auth_t *self, const uint8_t *key, int64_t now, char *out, bool *full)
{
    auth_key_status_t st = AUTH_KEY_UNREGISTERED;
    pthread_mutex_lock(&self->lock);
    const s_entry_t *e = s_find(self->registry, key);
    if (e) {
        memcpy(out, e->agency, 65);
        keyfile_status_t ks = s_entry_status(e, now);
        st = ks == KEYFILE_VALID ? AUTH_KEY_VALID : ks == KEYFILE_EXPIRED ? AUTH_KEY_EXPIRED : AUTH_KEY_REVOKED;
        *full = s_full_index(self, e->agency) >= 0;
    }
    pthread_mutex_unlock(&self->lock);
    return st;
}

static int s_send(void *sock, const void *data, size_t len, bool more)
{
    return zmq_send(sock, data, len, more ? ZMQ_SNDMORE : 0) < 0 ? -1 : 0;
}

/* key: the admitted key in Z85 for the metadata, NULL for none. */
static void s_reply(void *sock, const char *req_id, size_t req_id_len, const char *status, const char *text,
                    const char *user, const char *key)
{
    uint8_t meta[1 + sizeof AUTH_KEY_PROPERTY + 4 + KEYFILE_Z85_LEN];
    size_t meta_len = 0;
    if (key) {
        size_t nlen = strlen(AUTH_KEY_PROPERTY), vlen = strlen(key);
        meta[meta_len++] = (uint8_t)nlen;
        memcpy(meta + meta_len, AUTH_KEY_PROPERTY, nlen);
        meta_len += nlen;
        meta[meta_len++] = 0;
        meta[meta_len++] = 0;
        meta[meta_len++] = 0;
        meta[meta_len++] = (uint8_t)vlen;
        memcpy(meta + meta_len, key, vlen);
        meta_len += vlen;
    }
    if (s_send(sock, "1.0", 3, true) || s_send(sock, req_id, req_id_len, true) ||
        s_send(sock, status, strlen(status), true) || s_send(sock, text, strlen(text), true) ||
        s_send(sock, user, strlen(user), true) || s_send(sock, meta, meta_len, false))
        log_error("auth", "event=zap_reply_failed error=\"%s\"", zmq_strerror(zmq_errno()));
}

/* Receive one whole request into frames; false on context termination. */
#define ZAP_FRAMES 8
static bool s_handle_one(auth_t *self)
{
    char frames[ZAP_FRAMES][256];
    size_t lens[ZAP_FRAMES];
    int n = 0;
    int more = 1;
    while (more) {
        char buf[256];
        int r = zmq_recv(self->zap, buf, sizeof buf, 0);
        if (r < 0) {
            int e = zmq_errno();
            if (e == EINTR)
                continue;
            if (e != ETERM) /* without its handler the hub admits nobody */
                log_error("auth", "event=zap_handler_stopped error=\"%s\" effect=all_handshakes_refused",
                          zmq_strerror(e));
            return false;
        }
        if (n < ZAP_FRAMES) {
            lens[n] = (size_t)r > sizeof buf ? sizeof buf : (size_t)r;
            memcpy(frames[n], buf, lens[n]);
            n++;
        }
        size_t sz = sizeof more;
        if (zmq_getsockopt(self->zap, ZMQ_RCVMORE, &more, &sz) != 0) {
            log_error("auth", "event=zap_handler_stopped error=\"%s\"", zmq_strerror(zmq_errno()));
            return false;
        }
    }
    if (n < 2) {
        s_reply(self->zap, "", 0, "500", "malformed ZAP request", "", NULL);
        return true;
    }
    if (n < 7 || lens[0] != 3 || memcmp(frames[0], "1.0", 3) != 0 || lens[5] != 5 ||
        memcmp(frames[5], "CURVE", 5) != 0 || lens[6] != 32) {
        atomic_fetch_add(&self->refused, 1);
        log_limited(LOG_WARN, "auth", "auth.mechanism", "event=handshake_refused reason=\"not CURVE\"");
        s_reply(self->zap, frames[1], lens[1], "400", "CURVE required", "", NULL);
        return true;
    }
    char agency[65];
    char addr[64];
    size_t alen = lens[3] < sizeof addr - 1 ? lens[3] : sizeof addr - 1;
    memcpy(addr, frames[3], alen);
    addr[alen] = '\0';
    char z85[KEYFILE_Z85_LEN + 1];
    zmq_z85_encode(z85, (const uint8_t *)frames[6], 32);
    bool full = false;
    auth_key_status_t st = s_lookup(self, (const uint8_t *)frames[6], s_now(), agency, &full);
    if (st == AUTH_KEY_VALID && full) {
        atomic_fetch_add(&self->refused, 1);
        log_limited(LOG_WARN, "auth", "auth.full",
                    "event=handshake_refused reason=connection_limit agency=%s key=%.8s address=%s", agency, z85, addr);
        s_reply(self->zap, frames[1], lens[1], "400", "too many connections", "", NULL);
    } else if (st == AUTH_KEY_VALID) {
        log_limited(LOG_DEBUG, "auth", "auth.ok", "event=handshake_ok agency=%s key=%.8s address=%s", agency, z85,
                    addr);
        s_reply(self->zap, frames[1], lens[1], "200", "OK", agency, z85);
    } else if (st == AUTH_KEY_UNREGISTERED) {
        atomic_fetch_add(&self->refused, 1);
        log_limited(LOG_WARN, "auth", "auth.unknown", "event=handshake_refused reason=unregistered key=%s address=%s",
                    z85, addr);
        s_reply(self->zap, frames[1], lens[1], "400", "unregistered key", "", NULL);
    } else {
        const char *why = auth_key_status_name(st);
        atomic_fetch_add(&self->refused, 1);
        log_limited(LOG_WARN, "auth", "auth.invalid", "event=handshake_refused reason=%s agency=%s key=%.8s address=%s",
                    why, agency, z85, addr);
        s_reply(self->zap, frames[1], lens[1], "400", st == AUTH_KEY_REVOKED ? "revoked key" : "expired key", "",
                NULL);
    }
    return true;
}

static void *s_thread(void *arg)
{
    auth_t *self = arg;
    while (s_handle_one(self))
        ;
    zmq_close(self->zap);
    self->zap = NULL;
    return NULL;
}

auth_t *auth_new(void *zmq_ctx, const char *registry_dir)
{
    auth_t *self = calloc(1, sizeof *self);
    if (!self)
        return NULL;
    pthread_mutex_init(&self->lock, NULL);
    self->ctx = zmq_ctx;
    self->dir = strdup(registry_dir);
    self->registry = s_registry_load(registry_dir);
    if (!self->dir || !self->registry)
        goto fail;
    if (self->registry->agencies == 0) {
        char qdir[600];
        log_warn("auth", "event=registry_empty dir=%s", log_quote(registry_dir, qdir, sizeof qdir));
    }
    self->zap = zmq_socket(zmq_ctx, ZMQ_REP);
    int linger = 0;
    if (!self->zap || zmq_setsockopt(self->zap, ZMQ_LINGER, &linger, sizeof linger) != 0 ||
        zmq_bind(self->zap, ZAP_ENDPOINT) != 0) {
        log_error("auth", "event=zap_bind_failed error=\"%s\"", zmq_strerror(zmq_errno()));
        goto fail;
    }
    if (pthread_create(&self->thread, NULL, s_thread, self) != 0) {
        log_error("auth", "event=zap_thread_failed");
        goto fail;
    }
    self->thread_started = true;
    log_info("auth", "event=registry_loaded agencies=%d keys=%zu", self->registry->agencies, self->registry->n);
    return self;
fail:
    auth_destroy(&self);
    return NULL;
}

void auth_destroy(auth_t **self_p)
{
    auth_t *self = self_p ? *self_p : NULL;
    if (!self)
        return;
    if (self->thread_started)
        pthread_join(self->thread, NULL);
    else if (self->zap)
        zmq_close(self->zap);
    s_registry_free(&self->registry);
    free(self->full);
    pthread_mutex_destroy(&self->lock);
    free(self->dir);
    free(self);
    *self_p = NULL;
}

int auth_reload(auth_t *self)
{
    s_registry_t *reg = s_registry_load(self->dir);
    if (!reg) {
        log_error("auth", "event=registry_reload_failed action=kept_previous");
        return AUTH_REGISTRY;
    }
    pthread_mutex_lock(&self->lock);
    s_registry_t *old = self->registry;
    self->registry = reg;
    pthread_mutex_unlock(&self->lock);
    s_registry_free(&old);
    log_info("auth", "event=registry_reloaded agencies=%d keys=%zu", reg->agencies, reg->n);
    return AUTH_OK;
}

int auth_agencies(auth_t *self)
{
    pthread_mutex_lock(&self->lock);
    int n = self->registry->agencies;
    pthread_mutex_unlock(&self->lock);
    return n;
}

uint64_t auth_refused(auth_t *self)
{
    return atomic_load(&self->refused);
}

void auth_set_full(auth_t *self, const char *agency, bool full)
{
    pthread_mutex_lock(&self->lock);
    long i = s_full_index(self, agency);
    if (full && i < 0) {
        if (self->n_full == self->cap_full) {
            size_t cap = self->cap_full ? 2 * self->cap_full : 8;
            char(*grown)[65] = realloc(self->full, cap * sizeof *grown);
            if (!grown) {
                /* Connections over the ceiling are still refused per message. */
                pthread_mutex_unlock(&self->lock);
                log_error("auth", "event=out_of_memory effect=\"handshakes of %s not refused at its connection ceiling\"",
                          agency);
                return;
            }
            self->full = grown;
            self->cap_full = cap;
        }
        snprintf(self->full[self->n_full++], sizeof self->full[0], "%s", agency);
    } else if (!full && i >= 0) {
        memcpy(self->full[i], self->full[--self->n_full], sizeof self->full[0]);
    }
    pthread_mutex_unlock(&self->lock);
}

const char *auth_key_status_name(auth_key_status_t status)
{
    switch (status) {
    case AUTH_KEY_VALID: return "valid";
    case AUTH_KEY_EXPIRED: return "expired";
    case AUTH_KEY_REVOKED: return "revoked";
    case AUTH_KEY_UNREGISTERED: return "unregistered";
    default: return "unknown";
    }
}

auth_key_status_t auth_key_status(auth_t *self, const char *agency, const char *key_z85, int64_t now)
{
    uint8_t key[32];
    if (!agency || !key_z85 || strlen(key_z85) != KEYFILE_Z85_LEN || !zmq_z85_decode(key, key_z85))
        return AUTH_KEY_UNREGISTERED;
    char owner[65];
    bool full;
    auth_key_status_t st = s_lookup(self, key, now, owner, &full);
    if (st != AUTH_KEY_UNREGISTERED && strcmp(owner, agency) != 0)
        st = AUTH_KEY_UNREGISTERED; /* moved to another agency since the handshake */
    return st;
}

bool auth_key_valid(auth_t *self, const char *agency, const char *key_z85)
{
    return auth_key_status(self, agency, key_z85, s_now()) == AUTH_KEY_VALID;
}

static int s_expiring_cmp(const void *a, const void *b)
{
    int64_t x = ((const auth_expiring_t *)a)->not_after, y = ((const auth_expiring_t *)b)->not_after;
    return x < y ? -1 : x > y;
}

size_t auth_expiring(auth_t *self, const char *agency, int64_t now, int64_t within, auth_expiring_t *out,
                     size_t max)
{
    size_t n = 0;
    int64_t until = within > INT64_MAX - now ? INT64_MAX : now + within;
    pthread_mutex_lock(&self->lock);
    const s_registry_t *reg = self->registry;
    for (size_t i = 0; i < reg->n; i++) {
        const s_entry_t *e = &reg->entries[i];
        if (e->not_after == KEYFILE_FOREVER || e->not_after > until || s_entry_status(e, now) != KEYFILE_VALID ||
            (agency && strcmp(e->agency, agency) != 0))
            continue;
        if (n < max) {
            auth_expiring_t *x = &out[n];
            memcpy(x->agency, e->agency, sizeof x->agency);
            x->kind = "key";
            zmq_z85_encode(x->key, e->key, 32);
            x->not_after = e->not_after;
        }
        n++;
    }
    for (size_t i = 0; i < reg->n_signs; i++) {
        const s_sign_t *s = &reg->signs[i];
        keyfile_sign_t k = {.not_after = s->not_after, .revoked_at = s->revoked_at};
        if (s->not_after == KEYFILE_FOREVER || s->not_after > until || keyfile_sign_status(&k, now) != KEYFILE_VALID ||
            (agency && strcmp(s->agency, agency) != 0))
            continue;
        if (n < max) {
            auth_expiring_t *x = &out[n];
            memcpy(x->agency, s->agency, sizeof x->agency);
            x->kind = "signing key";
            crypto_hex(s->id, CRYPTO_KEYID_LEN, x->key);
            x->not_after = s->not_after;
        }
        n++;
    }
    pthread_mutex_unlock(&self->lock);
    if (out && n)
        qsort(out, n < max ? n : max, sizeof *out, s_expiring_cmp);
    return n;
}

auth_key_status_t auth_sign_key(auth_t *self, const char *agency, const uint8_t *key_id, int64_t now,
                                uint8_t *pub)
{
    s_sign_t probe;
    memcpy(probe.id, key_id, CRYPTO_KEYID_LEN);
    snprintf(probe.agency, sizeof probe.agency, "%s", agency);
    auth_key_status_t st = AUTH_KEY_UNREGISTERED;
    pthread_mutex_lock(&self->lock);
    const s_registry_t *reg = self->registry;
    const s_sign_t *s = reg->n_signs ? bsearch(&probe, reg->signs, reg->n_signs, sizeof probe, s_sign_cmp) : NULL;
    if (s) {
        keyfile_sign_t k = {.not_after = s->not_after, .revoked_at = s->revoked_at};
        keyfile_status_t ks = keyfile_sign_status(&k, now);
        st = ks == KEYFILE_VALID ? AUTH_KEY_VALID : ks == KEYFILE_EXPIRED ? AUTH_KEY_EXPIRED : AUTH_KEY_REVOKED;
        memcpy(pub, s->pub, CRYPTO_PUB_LEN);
    }
    pthread_mutex_unlock(&self->lock);
    return st;
}
