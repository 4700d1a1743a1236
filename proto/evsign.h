/* evsign - batch signatures of service events (docs/SIGNING.md).
 *
 * A publisher signs each Publish batch once: the leaves of a SHA-256 hash
 * tree are its events' signed bytes E (the event encoded without fields
 * 16-31), leaf = SHA-256(0x00 || E), node = SHA-256(0x01 || left || right),
 * a node without a right sibling is promoted unchanged, and one Ed25519
 * signature covers EVSIGN_CONTEXT || root. Each event carries its key id,
 * the signature, its index, the leaf count and its path (sibling hashes from
 * leaf to root), so that it verifies alone.
 *
 * Shared by the SDK (signing, civ_verifier_t) and the hub (verification
 * before a publish is accepted); OpenSSL stays in crypto.c.
 */
#ifndef CIVIBUS_EVSIGN_H
#define CIVIBUS_EVSIGN_H

#include <stddef.h>
#include <stdint.h>

#include "codec.h"
#include "crypto.h"

#define EVSIGN_CONTEXT "civibus-batch-v1" /* followed by one NUL byte */
#define EVSIGN_CONTEXT_LEN 17             /* including that NUL */
#define EVSIGN_MAX_LEAVES 65536           /* leaves of one tree, at most */
#define EVSIGN_MAX_DEPTH 16               /* path length for EVSIGN_MAX_LEAVES */

enum evsign_err {
    EVSIGN_OK = 0,
    EVSIGN_UNSIGNED = -1,      /* no signature fields at all */
    EVSIGN_MALFORMED = -2,     /* signature fields of the wrong size or shape */
    EVSIGN_BAD_PATH = -3,      /* index, count and path do not form a tree */
    EVSIGN_BAD_SIGNATURE = -4, /* the signature does not verify */
    EVSIGN_INTERNAL = -5,      /* hashing or OpenSSL failed, or no memory */
};

/* leaf = SHA-256(0x00 || E). */
int evsign_leaf(const void *e, size_t len, uint8_t leaf[CRYPTO_SHA256_LEN]);

/* A whole tree over n (1..EVSIGN_MAX_LEAVES) leaves, for the signer. */
typedef struct evsign_tree evsign_tree_t;
/* Build the tree; leaves are copied. NULL on a bad n or no memory. */
evsign_tree_t *evsign_tree_new(const uint8_t (*leaves)[CRYPTO_SHA256_LEN], size_t n);
void evsign_tree_destroy(evsign_tree_t **self_p);
/* The root. Valid while the tree lives. */
const uint8_t *evsign_tree_root(const evsign_tree_t *self);
/* Copy leaf index's path (sibling hashes, leaf to root) into path (room
 * for EVSIGN_MAX_DEPTH) and return its length. */
size_t evsign_tree_path(const evsign_tree_t *self, size_t index, uint8_t (*path)[CRYPTO_SHA256_LEN]);

/* Recompute the root from one leaf, its index among count leaves, and its
 * path of n_path hashes. EVSIGN_OK, or EVSIGN_BAD_PATH when index >= count,
 * count is 0 or above EVSIGN_MAX_LEAVES, or n_path is not the path length
 * of that position. */
int evsign_path_root(const uint8_t leaf[CRYPTO_SHA256_LEN], uint32_t index, uint32_t count,
                     const uint8_t (*path)[CRYPTO_SHA256_LEN], size_t n_path, uint8_t root[CRYPTO_SHA256_LEN]);

/* Sign / verify EVSIGN_CONTEXT || root. sign: EVSIGN_OK or EVSIGN_INTERNAL;
 * verify: EVSIGN_OK, EVSIGN_BAD_SIGNATURE or EVSIGN_INTERNAL. */
int evsign_sign_root(const crypto_key_t *key, const uint8_t root[CRYPTO_SHA256_LEN], uint8_t sig[CRYPTO_SIG_LEN]);
int evsign_verify_root(const crypto_key_t *key, const uint8_t root[CRYPTO_SHA256_LEN],
                       const uint8_t sig[CRYPTO_SIG_LEN]);

/* The encoded signature fields (16-20) of one event: appended to the event's
 * canonical encoding E they give the canonical encoding of the signed event,
 * because the fields are numbered above every field of E. *out is malloc'd
 * (caller frees). EVSIGN_OK or EVSIGN_INTERNAL. */
int evsign_fields_encode(const uint8_t key_id[CRYPTO_KEYID_LEN], const uint8_t sig[CRYPTO_SIG_LEN],
                         const uint8_t (*path)[CRYPTO_SHA256_LEN], size_t n_path, uint32_t index, uint32_t count,
                         uint8_t **out, size_t *out_len);

/* From a decoded event: check the shape of its signature fields, rebuild E
 * (ev re-encoded with fields 16-31 cleared; ev is restored before return),
 * and recompute the batch root. key_id and sig point into ev (valid while
 * ev lives). Returns EVSIGN_OK, EVSIGN_UNSIGNED (none of the fields set),
 * EVSIGN_MALFORMED (some set, or of a wrong size, or unknown fields in a
 * signed event), EVSIGN_BAD_PATH or EVSIGN_INTERNAL; why gets a short reason. */
int evsign_event_root(codec_event_t *ev, uint8_t root[CRYPTO_SHA256_LEN], const uint8_t **key_id,
                      const uint8_t **sig, char *why, size_t why_len);

const char *evsign_strerror(int code);

#endif
