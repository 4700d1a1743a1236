/* crypto - SHA-256 and Ed25519 for civibus, the only module that sees OpenSSL.
 *
 * Everything else uses these functions and the opaque crypto_key_t, so that
 * OpenSSL's types, its error queue and its version quirks stay in crypto.c.
 * OpenSSL errors (ERR_get_error) are mapped once, here, to a crypto_err code
 * and, where the caller passes a buffer, a one-line message that never
 * contains key material.
 *
 * Key files (docs/LOG.md, "Key handling"):
 *   secret  PKCS#8 PEM ("-----BEGIN PRIVATE KEY-----"), unencrypted, created
 *           with O_EXCL and mode 0600; refused when group or others may read it
 *   public  SubjectPublicKeyInfo PEM ("-----BEGIN PUBLIC KEY-----"), so that
 *           `openssl pkey -pubin -in FILE -text` can inspect it
 * A key id is the first 8 bytes of SHA-256 over the raw 32-byte public key,
 * shown as 16 lowercase hex digits.
 */
#ifndef CIVIBUS_CRYPTO_H
#define CIVIBUS_CRYPTO_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#define CRYPTO_SHA256_LEN 32
#define CRYPTO_PUB_LEN 32
#define CRYPTO_SIG_LEN 64
#define CRYPTO_KEYID_LEN 8
#define CRYPTO_KEYID_HEX (2 * CRYPTO_KEYID_LEN + 1)

enum crypto_err {
    CRYPTO_OK = 0,
    CRYPTO_IO = -1,            /* cannot open, read or write a file */
    CRYPTO_FORMAT = -2,        /* not a PEM key, or not an Ed25519 one */
    CRYPTO_MODE = -3,          /* a secret key file is accessible to others */
    CRYPTO_BAD_SIGNATURE = -4, /* the signature does not verify */
    CRYPTO_INTERNAL = -5,      /* OpenSSL failed (out of memory, no provider) */
    CRYPTO_EXISTS = -6,        /* refusing to overwrite a secret key file */
};

typedef struct crypto_key crypto_key_t;
typedef struct crypto_sha256 crypto_sha256_t;

/* One-shot SHA-256 of len bytes. CRYPTO_OK or CRYPTO_INTERNAL. */
int crypto_sha256(const void *data, size_t len, uint8_t out[CRYPTO_SHA256_LEN]);

/* A reusable SHA-256 context: hashing many small inputs (the log's chain)
 * without allocating per input. NULL when OpenSSL cannot provide SHA-256. */
crypto_sha256_t *crypto_sha256_new(void);
void crypto_sha256_destroy(crypto_sha256_t **self_p);
/* Start, feed, finish one digest. Each returns CRYPTO_OK or CRYPTO_INTERNAL;
 * after an error, start again. */
int crypto_sha256_begin(crypto_sha256_t *self);
int crypto_sha256_update(crypto_sha256_t *self, const void *data, size_t len);
int crypto_sha256_end(crypto_sha256_t *self, uint8_t out[CRYPTO_SHA256_LEN]);

/* A fresh Ed25519 key pair from the system's random source. NULL on error. */
crypto_key_t *crypto_key_generate(void);
/* Free; NULL-safe; nulls *self_p. */
void crypto_key_destroy(crypto_key_t **self_p);
/* True when the key holds the secret half (it can sign). */
bool crypto_key_has_secret(const crypto_key_t *self);

/* Read a secret key file into *out (caller destroys). Refuses a file that
 * group or others may access (CRYPTO_MODE), a passphrase-protected one and
 * any key that is not Ed25519 (CRYPTO_FORMAT). err gets one line naming the
 * path, never key bytes. */
int crypto_key_read_secret(const char *path, crypto_key_t **out, char *err, size_t err_len);
/* Read a public key file (SubjectPublicKeyInfo PEM, Ed25519 only). */
int crypto_key_read_public(const char *path, crypto_key_t **out, char *err, size_t err_len);

/* Write the secret key to path: created with O_EXCL, mode 0600, fsynced;
 * CRYPTO_EXISTS if path exists; a partial file is removed on failure. */
int crypto_key_write_secret(const crypto_key_t *self, const char *path, char *err, size_t err_len);
/* Write the public key to path (mode 0644, replaced if present). */
int crypto_key_write_public(const crypto_key_t *self, const char *path, char *err, size_t err_len);

/* A verify-only key from a raw 32-byte Ed25519 public key (a registry's
 * "sign" line). NULL when OpenSSL refuses it. Caller destroys. */
crypto_key_t *crypto_key_from_public(const uint8_t pub[CRYPTO_PUB_LEN]);
/* The key id of a raw public key (as crypto_key_id). */
void crypto_key_id_raw(const uint8_t pub[CRYPTO_PUB_LEN], uint8_t out[CRYPTO_KEYID_LEN]);

/* The raw 32-byte public key, and its id (binary and hex). */
void crypto_key_public(const crypto_key_t *self, uint8_t out[CRYPTO_PUB_LEN]);
void crypto_key_id(const crypto_key_t *self, uint8_t out[CRYPTO_KEYID_LEN]);
void crypto_key_id_hex(const crypto_key_t *self, char out[CRYPTO_KEYID_HEX]);
/* Hex of len bytes into out (2 * len + 1 bytes). */
void crypto_hex(const uint8_t *bytes, size_t len, char *out);
/* The value of one hex digit (either case), or -1 when c is not one. */
int crypto_hexval(char c);

/* Sign len bytes (Ed25519, pure: no pre-hash). Returns CRYPTO_OK,
 * CRYPTO_FORMAT (the key has no secret half) or CRYPTO_INTERNAL. */
int crypto_sign(const crypto_key_t *self, const void *msg, size_t len, uint8_t sig[CRYPTO_SIG_LEN]);
/* CRYPTO_OK when sig is self's signature over msg, else CRYPTO_BAD_SIGNATURE
 * (or CRYPTO_INTERNAL when OpenSSL itself failed). */
int crypto_verify(const crypto_key_t *self, const void *msg, size_t len, const uint8_t sig[CRYPTO_SIG_LEN]);

const char *crypto_strerror(int code);

#endif
