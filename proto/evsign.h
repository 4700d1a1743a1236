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
 * A verifier of many events of one batch (the hub) keeps an evsign_proof_t
 * of an event it has verified, so that the batch's other events cost a few
 * hashes and no further signature verification.
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

/* Encoded signature fields of one event, at most: key id 11, signature 67,
 * 16 path hashes of 35, index and count 5 each (a batch of 65536). */
#define EVSIGN_FIELDS_MAX 648

/* The encoded signature fields (16-20) of one event: appended to the event's
 * canonical encoding E they give the canonical encoding of the signed event,
 * because the fields are numbered above every field of E. Written to out
 * (room for EVSIGN_FIELDS_MAX), their length to *out_len. EVSIGN_OK, or
 * EVSIGN_INTERNAL when n_path is over EVSIGN_MAX_DEPTH. */
int evsign_fields_encode(const uint8_t key_id[CRYPTO_KEYID_LEN], const uint8_t sig[CRYPTO_SIG_LEN],
                         const uint8_t (*path)[CRYPTO_SHA256_LEN], size_t n_path, uint32_t index, uint32_t count,
                         uint8_t out[EVSIGN_FIELDS_MAX], size_t *out_len);

/* The signature fields of one event and its leaf, as evsign_event_claim
 * finds them. key_id and sig point into the decoded event (valid while it
 * lives); the path is copied. */
typedef struct {
    const uint8_t *key_id; /* CRYPTO_KEYID_LEN bytes */
    const uint8_t *sig;    /* CRYPTO_SIG_LEN bytes */
    uint8_t path[EVSIGN_MAX_DEPTH][CRYPTO_SHA256_LEN];
    size_t n_path;
    uint32_t index, count;
    uint8_t leaf[CRYPTO_SHA256_LEN];
} evsign_claim_t;

/* From a decoded event: check the shape of its signature fields (sizes, and
 * that index, count and the number of path hashes form a position in a
 * tree), rebuild E (ev re-encoded with fields 16-31 cleared; ev is restored
 * before return) and hash it into the leaf. No node is hashed yet. Returns
 * EVSIGN_OK, EVSIGN_UNSIGNED (none of the fields set), EVSIGN_MALFORMED
 * (some set, or of a wrong size, or unknown fields in a signed event),
 * EVSIGN_BAD_PATH or EVSIGN_INTERNAL; why gets a short reason. */
int evsign_event_claim(codec_event_t *ev, evsign_claim_t *claim, char *why, size_t why_len);

/* evsign_event_claim, then the walk to the batch root. key_id and sig point
 * into ev (valid while ev lives). Same returns. */
int evsign_event_root(codec_event_t *ev, uint8_t root[CRYPTO_SHA256_LEN], const uint8_t **key_id,
                      const uint8_t **sig, char *why, size_t why_len);

/* What one event's path proves about its batch tree: the nodes of its walk
 * from the leaf to the root and their siblings. Once the signature over the
 * root has been verified, each of these nodes is known to be in the signed
 * tree, and another event of the same batch needs hashing only up to the
 * first of them it meets: a batch checked in order costs about one leaf hash
 * and half a node hash per event instead of log2(n) node hashes, and one
 * signature verification for the whole batch. A plain value: copy it,
 * keep it on the stack. */
typedef struct {
    uint8_t key_id[CRYPTO_KEYID_LEN];
    uint8_t sig[CRYPTO_SIG_LEN];
    uint32_t index, count;
    int levels; /* levels above the leaves */
    /* walk[0] is the leaf, walk[levels] the root; sibling[lv] is set where
     * has_sibling has bit lv (a promoted node has none). */
    uint8_t walk[EVSIGN_MAX_DEPTH + 1][CRYPTO_SHA256_LEN];
    uint8_t sibling[EVSIGN_MAX_DEPTH][CRYPTO_SHA256_LEN];
    uint32_t has_sibling;
} evsign_proof_t;

/* Walk claim's path all the way up and describe it in *proof. EVSIGN_OK
 * (the root is evsign_proof_root(proof)), EVSIGN_BAD_PATH or
 * EVSIGN_INTERNAL. The proof proves nothing until the caller has verified
 * the signature over that root; only then may it be used with
 * evsign_proof_extend. */
int evsign_proof_build(evsign_proof_t *proof, const evsign_claim_t *claim);

/* The root of the proof's tree. Valid while proof is. */
const uint8_t *evsign_proof_root(const evsign_proof_t *proof);

/* Is claim an event of the tree that the verified proof describes: the same
 * key id, signature and leaf count, and a path that leads into that tree?
 * The path is hashed from the leaf up to the first node the proof holds, the
 * rest of it must equal the proof's nodes, and the path must have the
 * length of claim's position, so that an event that passes also verifies
 * alone. EVSIGN_OK: *proof now describes claim's walk (in the same tree) and
 * claim's root is evsign_proof_root(proof). EVSIGN_BAD_PATH: not shown to be
 * of this tree (another batch, or a wrong path: check it in full);
 * EVSIGN_INTERNAL: hashing failed. proof is unchanged unless EVSIGN_OK. */
int evsign_proof_extend(evsign_proof_t *proof, const evsign_claim_t *claim);

const char *evsign_strerror(int code);

#endif
