/* evsign - batch signatures of service events.
 *
 * The tree keeps every level in one array (level 0 the leaves, then each
 * level half the size of the one below it, rounded up), so that the signer
 * hashes each node once and copies paths out of it. The path walk is the
 * same on both sides: at a level of m nodes, an odd index has its left
 * sibling, an even one its right sibling when index + 1 < m, and the last
 * node of an odd level has none and is promoted unchanged.
 *
 * A verifier that checks many events of one batch keeps an evsign_proof_t:
 * one event's walk, proven by one signature verification, after which each
 * further event is hashed only until its walk meets a node of the proof and
 * must agree with the proof from there to the root. The proof then moves to
 * the new event, so that the next one in order meets it at its first level
 * or two.
 */
#include "evsign.h"

#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define H CRYPTO_SHA256_LEN

struct evsign_tree {
    uint8_t (*nodes)[H];
    size_t level_start[EVSIGN_MAX_DEPTH + 2];
    size_t level_size[EVSIGN_MAX_DEPTH + 2];
    int levels;
};

int evsign_leaf(const void *e, size_t len, uint8_t leaf[H])
{
    crypto_sha256_t *ctx = crypto_sha256_new();
    static const uint8_t zero = 0x00;
    int ok = ctx && crypto_sha256_begin(ctx) == CRYPTO_OK && crypto_sha256_update(ctx, &zero, 1) == CRYPTO_OK &&
             crypto_sha256_update(ctx, e, len) == CRYPTO_OK && crypto_sha256_end(ctx, leaf) == CRYPTO_OK;
    crypto_sha256_destroy(&ctx);
    return ok ? EVSIGN_OK : EVSIGN_INTERNAL;
}

static int s_node(const uint8_t left[H], const uint8_t right[H], uint8_t out[H])
{
    uint8_t buf[1 + 2 * H];
    buf[0] = 0x01;
    memcpy(buf + 1, left, H);
    memcpy(buf + 1 + H, right, H);
    return crypto_sha256(buf, sizeof buf, out) == CRYPTO_OK ? EVSIGN_OK : EVSIGN_INTERNAL;
}

evsign_tree_t *evsign_tree_new(const uint8_t (*leaves)[H], size_t n)
{
    if (n == 0 || n > EVSIGN_MAX_LEAVES)
        return NULL;
    evsign_tree_t *self = calloc(1, sizeof *self);
    if (!self)
        return NULL;
    /* n + ceil(n/2) + ... < 2n + one promoted node per level */
    self->nodes = malloc((2 * n + EVSIGN_MAX_DEPTH + 1) * sizeof *self->nodes);
    if (!self->nodes) {
        free(self);
        return NULL;
    }
    memcpy(self->nodes, leaves, n * sizeof *self->nodes);
    size_t start = 0, m = n, next = n;
    int lv = 0;
    self->level_start[0] = 0;
    self->level_size[0] = n;
    while (m > 1) {
        for (size_t i = 0; i < m; i += 2) {
            uint8_t *dst = self->nodes[next + i / 2];
            if (i + 1 < m) {
                if (s_node(self->nodes[start + i], self->nodes[start + i + 1], dst) != EVSIGN_OK) {
                    evsign_tree_destroy(&self);
                    return NULL;
                }
            } else {
                memcpy(dst, self->nodes[start + i], H);
            }
        }
        start = next;
        m = (m + 1) / 2;
        next += m;
        lv++;
        self->level_start[lv] = start;
        self->level_size[lv] = m;
    }
    self->levels = lv + 1;
    return self;
}

void evsign_tree_destroy(evsign_tree_t **self_p)
{
    if (self_p && *self_p) {
        free((*self_p)->nodes);
        free(*self_p);
        *self_p = NULL;
    }
}

const uint8_t *evsign_tree_root(const evsign_tree_t *self)
{
    return self->nodes[self->level_start[self->levels - 1]];
}

size_t evsign_tree_path(const evsign_tree_t *self, size_t index, uint8_t (*path)[H])
{
    size_t n_path = 0;
    for (int lv = 0; lv < self->levels - 1; lv++) {
        size_t m = self->level_size[lv], start = self->level_start[lv];
        if (index & 1)
            memcpy(path[n_path++], self->nodes[start + index - 1], H);
        else if (index + 1 < m)
            memcpy(path[n_path++], self->nodes[start + index + 1], H);
        index >>= 1;
    }
    return n_path;
}

/* Walk from leaf to the root, recording every node and sibling in *proof. */
static int s_walk(const uint8_t leaf[H], uint32_t index, uint32_t count, const uint8_t (*path)[H], size_t n_path,
                  evsign_proof_t *proof)
{
    if (count == 0 || count > EVSIGN_MAX_LEAVES || index >= count)
        return EVSIGN_BAD_PATH;
    proof->index = index;
    proof->count = count;
    proof->has_sibling = 0;
    memcpy(proof->walk[0], leaf, H);
    size_t p = 0;
    uint64_t idx = index, m = count;
    int lv = 0;
    for (; m > 1; lv++, idx >>= 1, m = (m + 1) / 2) {
        if (!(idx & 1) && idx + 1 >= m) {
            memcpy(proof->walk[lv + 1], proof->walk[lv], H); /* promoted */
            continue;
        }
        if (p == n_path)
            return EVSIGN_BAD_PATH;
        memcpy(proof->sibling[lv], path[p], H);
        proof->has_sibling |= 1u << lv;
        int rc = (idx & 1) ? s_node(path[p], proof->walk[lv], proof->walk[lv + 1])
                           : s_node(proof->walk[lv], path[p], proof->walk[lv + 1]);
        if (rc != EVSIGN_OK)
            return rc;
        p++;
    }
    if (p != n_path)
        return EVSIGN_BAD_PATH;
    proof->levels = lv;
    return EVSIGN_OK;
}

int evsign_path_root(const uint8_t leaf[H], uint32_t index, uint32_t count, const uint8_t (*path)[H],
                     size_t n_path, uint8_t root[H])
{
    evsign_proof_t proof;
    int rc = s_walk(leaf, index, count, path, n_path, &proof);
    if (rc == EVSIGN_OK)
        memcpy(root, evsign_proof_root(&proof), H);
    return rc;
}

int evsign_proof_build(evsign_proof_t *proof, const evsign_claim_t *claim)
{
    memcpy(proof->key_id, claim->key_id, CRYPTO_KEYID_LEN);
    memcpy(proof->sig, claim->sig, CRYPTO_SIG_LEN);
    return s_walk(claim->leaf, claim->index, claim->count, (const uint8_t(*)[H])claim->path, claim->n_path, proof);
}

const uint8_t *evsign_proof_root(const evsign_proof_t *proof)
{
    return proof->walk[proof->levels];
}

/* The proof's nodes at one level are its walk node, at index pidx >> lv,
 * and that node's sibling. Below the first of them that claim's walk meets,
 * claim's own path is hashed; from there on each hash of its path must be
 * the proof's (the walk node when claim met the sibling, else the sibling),
 * and its parents are the proof's walk. The root is always met. */
int evsign_proof_extend(evsign_proof_t *proof, const evsign_claim_t *claim)
{
    if (claim->count != proof->count || claim->index >= claim->count ||
        memcmp(claim->key_id, proof->key_id, CRYPTO_KEYID_LEN) != 0 ||
        memcmp(claim->sig, proof->sig, CRYPTO_SIG_LEN) != 0)
        return EVSIGN_BAD_PATH;
    evsign_proof_t next;
    memcpy(next.key_id, proof->key_id, CRYPTO_KEYID_LEN);
    memcpy(next.sig, proof->sig, CRYPTO_SIG_LEN);
    next.index = claim->index;
    next.count = claim->count;
    next.has_sibling = 0;
    memcpy(next.walk[0], claim->leaf, H);
    bool met = false;
    size_t p = 0;
    uint64_t idx = claim->index, m = claim->count;
    int lv = 0;
    for (; m > 1; lv++, idx >>= 1, m = (m + 1) / 2) {
        uint64_t mine = (uint64_t)proof->index >> lv;
        if (!met) {
            const uint8_t *known = idx == mine                                           ? proof->walk[lv]
                                   : idx == (mine ^ 1) && (proof->has_sibling >> lv & 1) ? proof->sibling[lv]
                                                                                         : NULL;
            if (known && memcmp(next.walk[lv], known, H) != 0)
                return EVSIGN_BAD_PATH;
            met = known != NULL;
        }
        if (!(idx & 1) && idx + 1 >= m) {
            memcpy(next.walk[lv + 1], next.walk[lv], H); /* promoted */
            continue;
        }
        if (p == claim->n_path)
            return EVSIGN_BAD_PATH;
        const uint8_t *sib = claim->path[p++];
        memcpy(next.sibling[lv], sib, H);
        next.has_sibling |= 1u << lv;
        if (met) {
            if (memcmp(sib, idx == mine ? proof->sibling[lv] : proof->walk[lv], H) != 0)
                return EVSIGN_BAD_PATH;
            memcpy(next.walk[lv + 1], proof->walk[lv + 1], H);
            continue;
        }
        int rc = (idx & 1) ? s_node(sib, next.walk[lv], next.walk[lv + 1])
                           : s_node(next.walk[lv], sib, next.walk[lv + 1]);
        if (rc != EVSIGN_OK)
            return rc;
    }
    if (p != claim->n_path || lv != proof->levels || (!met && memcmp(next.walk[lv], proof->walk[lv], H) != 0))
        return EVSIGN_BAD_PATH;
    next.levels = lv;
    *proof = next;
    return EVSIGN_OK;
}

static void s_message(const uint8_t root[H], uint8_t msg[EVSIGN_CONTEXT_LEN + H])
{
    memcpy(msg, EVSIGN_CONTEXT, EVSIGN_CONTEXT_LEN); /* the literal's NUL included */
    memcpy(msg + EVSIGN_CONTEXT_LEN, root, H);
}

int evsign_sign_root(const crypto_key_t *key, const uint8_t root[H], uint8_t sig[CRYPTO_SIG_LEN])
{
    uint8_t msg[EVSIGN_CONTEXT_LEN + H];
    s_message(root, msg);
    return crypto_sign(key, msg, sizeof msg, sig) == CRYPTO_OK ? EVSIGN_OK : EVSIGN_INTERNAL;
}

int evsign_verify_root(const crypto_key_t *key, const uint8_t root[H], const uint8_t sig[CRYPTO_SIG_LEN])
{
    uint8_t msg[EVSIGN_CONTEXT_LEN + H];
    s_message(root, msg);
    int rc = crypto_verify(key, msg, sizeof msg, sig);
    return rc == CRYPTO_OK ? EVSIGN_OK : rc == CRYPTO_BAD_SIGNATURE ? EVSIGN_BAD_SIGNATURE : EVSIGN_INTERNAL;
}

int evsign_fields_encode(const uint8_t key_id[CRYPTO_KEYID_LEN], const uint8_t sig[CRYPTO_SIG_LEN],
                         const uint8_t (*path)[H], size_t n_path, uint32_t index, uint32_t count,
                         uint8_t out[EVSIGN_FIELDS_MAX], size_t *out_len)
{
    ProtobufCBinaryData items[EVSIGN_MAX_DEPTH];
    if (n_path > EVSIGN_MAX_DEPTH)
        return EVSIGN_INTERNAL;
    for (size_t i = 0; i < n_path; i++) {
        items[i].data = (uint8_t *)path[i];
        items[i].len = H;
    }
    codec_event_t ev = CIVIBUS__V1__SERVICE_EVENT__INIT;
    ev.sign_key_id.data = (uint8_t *)key_id;
    ev.sign_key_id.len = CRYPTO_KEYID_LEN;
    ev.batch_signature.data = (uint8_t *)sig;
    ev.batch_signature.len = CRYPTO_SIG_LEN;
    ev.n_path = n_path;
    ev.path = items;
    ev.leaf_index = index;
    ev.leaf_count = count;
    if (civibus__v1__service_event__get_packed_size(&ev) > EVSIGN_FIELDS_MAX)
        return EVSIGN_INTERNAL;
    *out_len = civibus__v1__service_event__pack(&ev, out);
    return EVSIGN_OK;
}

#define S_WHY(...) (snprintf(why, why_len, __VA_ARGS__))

/* The number of path hashes of leaf index among count leaves, or -1 when
 * that is no position in a tree. */
static long s_path_len(uint32_t index, uint32_t count)
{
    if (count == 0 || count > EVSIGN_MAX_LEAVES || index >= count)
        return -1;
    long n = 0;
    for (uint64_t idx = index, m = count; m > 1; idx >>= 1, m = (m + 1) / 2)
        n += (idx & 1) || idx + 1 < m;
    return n;
}

int evsign_event_claim(codec_event_t *ev, evsign_claim_t *claim, char *why, size_t why_len)
{
    if (!ev->sign_key_id.len && !ev->batch_signature.len && !ev->n_path && !ev->leaf_index && !ev->leaf_count) {
        S_WHY("unsigned event");
        return EVSIGN_UNSIGNED;
    }
    if (ev->sign_key_id.len != CRYPTO_KEYID_LEN) {
        S_WHY("sign_key_id must be %d bytes, not %zu", CRYPTO_KEYID_LEN, ev->sign_key_id.len);
        return EVSIGN_MALFORMED;
    }
    if (ev->batch_signature.len != CRYPTO_SIG_LEN) {
        S_WHY("batch_signature must be %d bytes, not %zu", CRYPTO_SIG_LEN, ev->batch_signature.len);
        return EVSIGN_MALFORMED;
    }
    if (ev->n_path > EVSIGN_MAX_DEPTH) {
        S_WHY("path of %zu hashes is longer than %d", ev->n_path, EVSIGN_MAX_DEPTH);
        return EVSIGN_BAD_PATH;
    }
    for (size_t i = 0; i < ev->n_path; i++) {
        if (ev->path[i].len != H) {
            S_WHY("path hash %zu is %zu bytes, not %d", i, ev->path[i].len, H);
            return EVSIGN_BAD_PATH;
        }
        memcpy(claim->path[i], ev->path[i].data, H);
    }
    if (ev->base.n_unknown_fields) {
        S_WHY("a signed event may not carry unknown fields");
        return EVSIGN_MALFORMED;
    }
    if (s_path_len(ev->leaf_index, ev->leaf_count) != (long)ev->n_path) {
        S_WHY("bad path: leaf %u of %u with %zu hashes is not a position in a tree", ev->leaf_index,
              ev->leaf_count, ev->n_path);
        return EVSIGN_BAD_PATH;
    }
    /* E: the same event without fields 16-31. */
    codec_event_t saved = *ev;
    ev->sign_key_id.len = 0;
    ev->sign_key_id.data = NULL;
    ev->batch_signature.len = 0;
    ev->batch_signature.data = NULL;
    ev->n_path = 0;
    ev->path = NULL;
    ev->leaf_index = 0;
    ev->leaf_count = 0;
    /* Packed after the leaf's 0x00 prefix, so that one digest covers both. */
    size_t len = 1 + civibus__v1__service_event__get_packed_size(ev);
    uint8_t stack[4096];
    uint8_t *e = len <= sizeof stack ? stack : malloc(len);
    if (!e) {
        *ev = saved;
        S_WHY("out of memory");
        return EVSIGN_INTERNAL;
    }
    e[0] = 0x00;
    civibus__v1__service_event__pack(ev, e + 1);
    *ev = saved;
    int rc = crypto_sha256(e, len, claim->leaf) == CRYPTO_OK ? EVSIGN_OK : EVSIGN_INTERNAL;
    if (e != stack)
        free(e);
    if (rc != EVSIGN_OK) {
        S_WHY("hashing failed");
        return rc;
    }
    claim->key_id = ev->sign_key_id.data;
    claim->sig = ev->batch_signature.data;
    claim->n_path = ev->n_path;
    claim->index = ev->leaf_index;
    claim->count = ev->leaf_count;
    return EVSIGN_OK;
}

int evsign_event_root(codec_event_t *ev, uint8_t root[H], const uint8_t **key_id, const uint8_t **sig, char *why,
                      size_t why_len)
{
    evsign_claim_t claim;
    int rc = evsign_event_claim(ev, &claim, why, why_len);
    if (rc != EVSIGN_OK)
        return rc;
    rc = evsign_path_root(claim.leaf, claim.index, claim.count, (const uint8_t(*)[H])claim.path, claim.n_path, root);
    if (rc != EVSIGN_OK) {
        S_WHY("hashing failed");
        return rc;
    }
    *key_id = claim.key_id;
    *sig = claim.sig;
    return EVSIGN_OK;
}

const char *evsign_strerror(int code)
{
    switch (code) {
    case EVSIGN_OK: return "ok";
    case EVSIGN_UNSIGNED: return "unsigned event";
    case EVSIGN_MALFORMED: return "malformed signature fields";
    case EVSIGN_BAD_PATH: return "bad inclusion path";
    case EVSIGN_BAD_SIGNATURE: return "bad signature";
    case EVSIGN_INTERNAL: return "internal error";
    default: return "unknown evsign error";
    }
}
