/* crypto - SHA-256 and Ed25519 over OpenSSL 3's EVP interface.
 *
 * The one place that includes OpenSSL headers. Every failure drains
 * OpenSSL's per-thread error queue before returning, so that a stale error
 * never surfaces in an unrelated later call. Secret files are opened once
 * and their mode is checked on that descriptor (fstat), so the file checked
 * is the file read.
 */
#include "crypto.h"

#include <errno.h>
#include <fcntl.h>
#include <openssl/err.h>
#include <openssl/evp.h>
#include <openssl/pem.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

struct crypto_key {
    EVP_PKEY *pkey;
    bool secret;
    uint8_t pub[CRYPTO_PUB_LEN];
};

struct crypto_sha256 {
    EVP_MD_CTX *ctx;
};

/* Take OpenSSL's first queued error as text and empty the queue. */
static const char *s_ssl_error(char *buf, size_t len)
{
    unsigned long e = ERR_get_error();
    if (e)
        ERR_error_string_n(e, buf, len);
    else
        snprintf(buf, len, "unknown OpenSSL error");
    ERR_clear_error();
    return buf;
}

static void s_err(char *err, size_t err_len, const char *fmt, const char *a, const char *b)
{
    if (err && err_len)
        snprintf(err, err_len, fmt, a, b);
}

/* --- SHA-256 ------------------------------------------------------------- */

/* EVP_sha256() makes OpenSSL 3 look the algorithm up again at every digest,
 * which costs more than hashing the few dozen bytes of a tree node; fetch it
 * once for the process (it stays referenced until exit) and use it for the
 * one-shot digests and every crypto_sha256_t alike. */
static EVP_MD *s_sha256_md;
static pthread_once_t s_sha256_once = PTHREAD_ONCE_INIT;

static void s_sha256_fetch(void)
{
    s_sha256_md = EVP_MD_fetch(NULL, "SHA256", NULL);
}

int crypto_sha256(const void *data, size_t len, uint8_t out[CRYPTO_SHA256_LEN])
{
    pthread_once(&s_sha256_once, s_sha256_fetch);
    EVP_MD_CTX *ctx = s_sha256_md ? EVP_MD_CTX_new() : NULL;
    unsigned int n = 0;
    int ok = ctx && EVP_DigestInit_ex(ctx, s_sha256_md, NULL) == 1 && EVP_DigestUpdate(ctx, data, len) == 1 &&
             EVP_DigestFinal_ex(ctx, out, &n) == 1 && n == CRYPTO_SHA256_LEN;
    EVP_MD_CTX_free(ctx);
    if (!ok) {
        ERR_clear_error();
        return CRYPTO_INTERNAL;
    }
    return CRYPTO_OK;
}

crypto_sha256_t *crypto_sha256_new(void)
{
    pthread_once(&s_sha256_once, s_sha256_fetch);
    if (!s_sha256_md)
        return NULL;
    crypto_sha256_t *self = calloc(1, sizeof *self);
    if (!self)
        return NULL;
    self->ctx = EVP_MD_CTX_new();
    if (!self->ctx) {
        ERR_clear_error();
        crypto_sha256_destroy(&self);
    }
    return self;
}

void crypto_sha256_destroy(crypto_sha256_t **self_p)
{
    if (!self_p || !*self_p)
        return;
    crypto_sha256_t *self = *self_p;
    EVP_MD_CTX_free(self->ctx);
    free(self);
    *self_p = NULL;
}

int crypto_sha256_begin(crypto_sha256_t *self)
{
    if (EVP_DigestInit_ex(self->ctx, s_sha256_md, NULL) != 1) {
        ERR_clear_error();
        return CRYPTO_INTERNAL;
    }
    return CRYPTO_OK;
}

int crypto_sha256_update(crypto_sha256_t *self, const void *data, size_t len)
{
    if (len && EVP_DigestUpdate(self->ctx, data, len) != 1) {
        ERR_clear_error();
        return CRYPTO_INTERNAL;
    }
    return CRYPTO_OK;
}

int crypto_sha256_end(crypto_sha256_t *self, uint8_t out[CRYPTO_SHA256_LEN])
{
    unsigned int n = 0;
    if (EVP_DigestFinal_ex(self->ctx, out, &n) != 1 || n != CRYPTO_SHA256_LEN) {
        ERR_clear_error();
        return CRYPTO_INTERNAL;
    }
    return CRYPTO_OK;
}

/* --- keys ---------------------------------------------------------------- */

/* Wrap pkey (taken) after checking it is Ed25519; caches the raw public key. */
static crypto_key_t *s_key_wrap(EVP_PKEY *pkey, bool secret)
{
    size_t len = CRYPTO_PUB_LEN;
    crypto_key_t *self = NULL;
    if (EVP_PKEY_get_base_id(pkey) != EVP_PKEY_ED25519)
        goto free_pkey;
    self = calloc(1, sizeof *self);
    if (!self)
        goto free_pkey;
    if (EVP_PKEY_get_raw_public_key(pkey, self->pub, &len) != 1 || len != CRYPTO_PUB_LEN)
        goto free_self;
    self->pkey = pkey;
    self->secret = secret;
    return self;
free_self:
    free(self);
free_pkey:
    EVP_PKEY_free(pkey);
    ERR_clear_error();
    return NULL;
}

crypto_key_t *crypto_key_generate(void)
{
    EVP_PKEY *pkey = EVP_PKEY_Q_keygen(NULL, NULL, "ED25519");
    if (!pkey) {
        ERR_clear_error();
        return NULL;
    }
    return s_key_wrap(pkey, true);
}

void crypto_key_destroy(crypto_key_t **self_p)
{
    if (!self_p || !*self_p)
        return;
    EVP_PKEY_free((*self_p)->pkey); /* clears the secret's memory */
    free(*self_p);
    *self_p = NULL;
}

bool crypto_key_has_secret(const crypto_key_t *self)
{
    return self && self->secret;
}

/* PEM's passphrase callback: never prompt (a daemon has no terminal), so an
 * encrypted key simply fails to load. */
static int s_no_passphrase(char *buf, int size, int rwflag, void *u)
{
    (void)buf, (void)size, (void)rwflag, (void)u;
    return -1;
}

static int s_key_read(const char *path, bool secret, crypto_key_t **out, char *err, size_t err_len)
{
    *out = NULL;
    int fd = open(path, O_RDONLY | O_CLOEXEC);
    if (fd < 0) {
        s_err(err, err_len, "%s: %s", path, strerror(errno));
        return CRYPTO_IO;
    }
    struct stat st;
    if (fstat(fd, &st) != 0) {
        s_err(err, err_len, "%s: %s", path, strerror(errno));
        close(fd);
        return CRYPTO_IO;
    }
    if (secret && (st.st_mode & 077)) {
        char mode[16];
        snprintf(mode, sizeof mode, "%04o", (unsigned)(st.st_mode & 07777));
        s_err(err, err_len, "%s: a secret key file must not be accessible to others (mode %s; chmod 600)", path,
              mode);
        close(fd);
        return CRYPTO_MODE;
    }
    FILE *f = fdopen(fd, "r");
    if (!f) {
        s_err(err, err_len, "%s: %s", path, strerror(errno));
        close(fd);
        return CRYPTO_IO;
    }
    EVP_PKEY *pkey = secret ? PEM_read_PrivateKey(f, NULL, s_no_passphrase, NULL)
                            : PEM_read_PUBKEY(f, NULL, s_no_passphrase, NULL);
    fclose(f);
    if (!pkey) {
        char buf[256];
        s_err(err, err_len, "%s: not a readable PEM key (%s)", path, s_ssl_error(buf, sizeof buf));
        return CRYPTO_FORMAT;
    }
    *out = s_key_wrap(pkey, secret);
    if (!*out) {
        s_err(err, err_len, "%s: %s", path, "not an Ed25519 key");
        return CRYPTO_FORMAT;
    }
    return CRYPTO_OK;
}

int crypto_key_read_secret(const char *path, crypto_key_t **out, char *err, size_t err_len)
{
    return s_key_read(path, true, out, err, err_len);
}

int crypto_key_read_public(const char *path, crypto_key_t **out, char *err, size_t err_len)
{
    return s_key_read(path, false, out, err, err_len);
}

static int s_key_write(const crypto_key_t *self, const char *path, bool secret, char *err, size_t err_len)
{
    int flags = O_WRONLY | O_CREAT | O_CLOEXEC | (secret ? O_EXCL : O_TRUNC);
    int fd = open(path, flags, secret ? 0600 : 0644);
    if (fd < 0) {
        int saved = errno;
        s_err(err, err_len, "%s: %s", path, saved == EEXIST ? "exists; a secret key is never overwritten"
                                                             : strerror(saved));
        return saved == EEXIST ? CRYPTO_EXISTS : CRYPTO_IO;
    }
    FILE *f = fdopen(fd, "w");
    if (!f) {
        s_err(err, err_len, "%s: %s", path, strerror(errno));
        close(fd);
        goto remove_file;
    }
    int ok = secret ? PEM_write_PrivateKey(f, self->pkey, NULL, NULL, 0, NULL, NULL)
                    : PEM_write_PUBKEY(f, self->pkey);
    if (ok != 1) {
        char buf[256];
        s_err(err, err_len, "%s: cannot encode the key (%s)", path, s_ssl_error(buf, sizeof buf));
        fclose(f);
        goto remove_file;
    }
    bool written = fflush(f) == 0 && fsync(fileno(f)) == 0;
    int saved = errno;
    if (fclose(f) != 0 && written) {
        written = false;
        saved = errno;
    }
    if (!written) {
        s_err(err, err_len, "%s: %s", path, strerror(saved));
        goto remove_file;
    }
    return CRYPTO_OK;
remove_file:
    /* Never leave half a key behind: the next keygen would refuse to replace it. */
    unlink(path);
    return CRYPTO_IO;
}

int crypto_key_write_secret(const crypto_key_t *self, const char *path, char *err, size_t err_len)
{
    if (!crypto_key_has_secret(self)) {
        s_err(err, err_len, "%s: %s", path, "the key has no secret half");
        return CRYPTO_FORMAT;
    }
    return s_key_write(self, path, true, err, err_len);
}

int crypto_key_write_public(const crypto_key_t *self, const char *path, char *err, size_t err_len)
{
    return s_key_write(self, path, false, err, err_len);
}

void crypto_key_public(const crypto_key_t *self, uint8_t out[CRYPTO_PUB_LEN])
{
    memcpy(out, self->pub, CRYPTO_PUB_LEN);
}

void crypto_key_id_raw(const uint8_t pub[CRYPTO_PUB_LEN], uint8_t out[CRYPTO_KEYID_LEN])
{
    uint8_t h[CRYPTO_SHA256_LEN];
    if (crypto_sha256(pub, CRYPTO_PUB_LEN, h) != CRYPTO_OK)
        memset(h, 0, sizeof h); /* SHA-256 missing: nothing would verify anyway */
    memcpy(out, h, CRYPTO_KEYID_LEN);
}

void crypto_key_id(const crypto_key_t *self, uint8_t out[CRYPTO_KEYID_LEN])
{
    crypto_key_id_raw(self->pub, out);
}

crypto_key_t *crypto_key_from_public(const uint8_t pub[CRYPTO_PUB_LEN])
{
    EVP_PKEY *pkey = EVP_PKEY_new_raw_public_key(EVP_PKEY_ED25519, NULL, pub, CRYPTO_PUB_LEN);
    if (!pkey) {
        ERR_clear_error();
        return NULL;
    }
    return s_key_wrap(pkey, false);
}

void crypto_hex(const uint8_t *bytes, size_t len, char *out)
{
    static const char digits[] = "0123456789abcdef";
    for (size_t i = 0; i < len; i++) {
        out[2 * i] = digits[bytes[i] >> 4];
        out[2 * i + 1] = digits[bytes[i] & 15];
    }
    out[2 * len] = '\0';
}

int crypto_hexval(char c)
{
    if (c >= '0' && c <= '9')
        return c - '0';
    if (c >= 'a' && c <= 'f')
        return c - 'a' + 10;
    if (c >= 'A' && c <= 'F')
        return c - 'A' + 10;
    return -1;
}

void crypto_key_id_hex(const crypto_key_t *self, char out[CRYPTO_KEYID_HEX])
{
    uint8_t id[CRYPTO_KEYID_LEN];
    crypto_key_id(self, id);
    crypto_hex(id, sizeof id, out);
}

/* --- signatures ---------------------------------------------------------- */

int crypto_sign(const crypto_key_t *self, const void *msg, size_t len, uint8_t sig[CRYPTO_SIG_LEN])
{
    if (!crypto_key_has_secret(self))
        return CRYPTO_FORMAT;
    EVP_MD_CTX *ctx = EVP_MD_CTX_new();
    size_t siglen = CRYPTO_SIG_LEN;
    /* Ed25519 hashes internally: the digest argument must be NULL. */
    int ok = ctx && EVP_DigestSignInit(ctx, NULL, NULL, NULL, self->pkey) == 1 &&
             EVP_DigestSign(ctx, sig, &siglen, msg, len) == 1 && siglen == CRYPTO_SIG_LEN;
    EVP_MD_CTX_free(ctx);
    if (!ok) {
        ERR_clear_error();
        return CRYPTO_INTERNAL;
    }
    return CRYPTO_OK;
}

int crypto_verify(const crypto_key_t *self, const void *msg, size_t len, const uint8_t sig[CRYPTO_SIG_LEN])
{
    EVP_MD_CTX *ctx = EVP_MD_CTX_new();
    if (!ctx || EVP_DigestVerifyInit(ctx, NULL, NULL, NULL, self->pkey) != 1) {
        EVP_MD_CTX_free(ctx);
        ERR_clear_error();
        return CRYPTO_INTERNAL;
    }
    int rc = EVP_DigestVerify(ctx, sig, CRYPTO_SIG_LEN, msg, len);
    EVP_MD_CTX_free(ctx);
    /* 0 is a wrong signature; a negative value a malformed one (for
     * Ed25519, e.g. a non-canonical point): either way, not valid. */
    ERR_clear_error();
    return rc == 1 ? CRYPTO_OK : CRYPTO_BAD_SIGNATURE;
}

const char *crypto_strerror(int code)
{
    switch (code) {
    case CRYPTO_OK: return "ok";
    case CRYPTO_IO: return "cannot read or write the key file";
    case CRYPTO_FORMAT: return "not an Ed25519 PEM key";
    case CRYPTO_MODE: return "secret key file is accessible to others";
    case CRYPTO_BAD_SIGNATURE: return "signature does not verify";
    case CRYPTO_INTERNAL: return "OpenSSL failure";
    case CRYPTO_EXISTS: return "secret key file exists; not overwritten";
    default: return "unknown crypto error";
    }
}
