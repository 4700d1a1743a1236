/* test_evsign - batch signature trees, event signature fields, civ_event_verify
 * and registry "sign" lines (docs/SIGNING.md).
 *
 * Usage example (what the SDK and the hub do):
 *     leaves[i] = evsign_leaf(E_i); tree = evsign_tree_new(leaves, n);
 *     evsign_sign_root(key, evsign_tree_root(tree), sig);
 *     n_path = evsign_tree_path(tree, i, path);      -> fields 16-20 of event i
 *     evsign_path_root(leaf, i, n, path, n_path, root); evsign_verify_root(pub, root, sig);
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <cmocka.h>

#include "civibus.h"
#include "codec.h"
#include "crypto.h"
#include "evsign.h"
#include "keyfile.h"

#define H CRYPTO_SHA256_LEN

/* RFC 6962's recursive definition (split at the largest power of two below
 * n): an independent reference that must agree with the level-wise tree
 * whose odd node is promoted. */
static void s_ref_root(const uint8_t (*leaves)[H], size_t n, uint8_t out[H])
{
    if (n == 1) {
        memcpy(out, leaves[0], H);
        return;
    }
    size_t k = 1;
    while (k * 2 < n)
        k *= 2;
    uint8_t buf[1 + 2 * H];
    buf[0] = 1;
    s_ref_root(leaves, k, buf + 1);
    s_ref_root(leaves + k, n - k, buf + 1 + H);
    assert_int_equal(crypto_sha256(buf, sizeof buf, out), CRYPTO_OK);
}

static void s_leaves(uint8_t (*leaves)[H], size_t n)
{
    for (size_t i = 0; i < n; i++) {
        char e[32];
        int len = snprintf(e, sizeof e, "event %zu", i);
        assert_int_equal(evsign_leaf(e, (size_t)len, leaves[i]), EVSIGN_OK);
    }
}

/* A tree over n leaves made by s_leaves; *leaves_p is the caller's to free. */
static evsign_tree_t *s_tree(size_t n, uint8_t (**leaves_p)[H])
{
    *leaves_p = malloc(n * H);
    s_leaves(*leaves_p, n);
    evsign_tree_t *t = evsign_tree_new((const uint8_t(*)[H])*leaves_p, n);
    assert_non_null(t);
    return t;
}

static void test_tree_sizes(void **state)
{
    (void)state;
    static const size_t sizes[] = {1, 2, 3, 5, 6, 7, 64, 100};
    for (size_t s = 0; s < sizeof sizes / sizeof sizes[0]; s++) {
        size_t n = sizes[s];
        uint8_t(*leaves)[H] = NULL;
        evsign_tree_t *t = s_tree(n, &leaves);
        uint8_t ref[H];
        s_ref_root((const uint8_t(*)[H])leaves, n, ref);
        assert_memory_equal(evsign_tree_root(t), ref, H);
        for (size_t i = 0; i < n; i++) {
            uint8_t path[EVSIGN_MAX_DEPTH][H], root[H];
            size_t n_path = evsign_tree_path(t, i, path);
            assert_true(n_path <= 7);
            assert_int_equal(evsign_path_root(leaves[i], (uint32_t)i, (uint32_t)n, (const uint8_t(*)[H])path,
                                              n_path, root),
                             EVSIGN_OK);
            assert_memory_equal(root, ref, H);
            /* Tampered leaf, path hash, index, count or path length. */
            uint8_t bad[H];
            memcpy(bad, leaves[i], H);
            bad[0] ^= 1;
            assert_int_equal(evsign_path_root(bad, (uint32_t)i, (uint32_t)n, (const uint8_t(*)[H])path, n_path, root),
                             EVSIGN_OK);
            assert_memory_not_equal(root, ref, H);
            if (n_path) {
                path[n_path - 1][5] ^= 1;
                assert_int_equal(evsign_path_root(leaves[i], (uint32_t)i, (uint32_t)n, (const uint8_t(*)[H])path,
                                                  n_path, root),
                                 EVSIGN_OK);
                assert_memory_not_equal(root, ref, H);
                path[n_path - 1][5] ^= 1;
                int rc = evsign_path_root(leaves[i], (uint32_t)i, (uint32_t)n, (const uint8_t(*)[H])path,
                                          n_path - 1, root);
                assert_int_equal(rc, EVSIGN_BAD_PATH);
            }
            if (n > 1) {
                uint32_t other = (uint32_t)((i + 1) % n);
                int rc = evsign_path_root(leaves[i], other, (uint32_t)n, (const uint8_t(*)[H])path, n_path, root);
                assert_true(rc != EVSIGN_OK || memcmp(root, ref, H) != 0);
            }
            assert_int_equal(evsign_path_root(leaves[i], (uint32_t)n, (uint32_t)n, (const uint8_t(*)[H])path,
                                              n_path, root),
                             EVSIGN_BAD_PATH);
        }
        evsign_tree_destroy(&t);
        assert_null(t);
        free(leaves);
    }
    assert_null(evsign_tree_new(NULL, 0));
}

/* The claim of leaf i of tree t, as evsign_event_claim gives it. */
static void s_claim(evsign_claim_t *c, const evsign_tree_t *t, const uint8_t (*leaves)[H], size_t i, size_t n,
                    const uint8_t *key_id, const uint8_t *sig)
{
    memset(c, 0, sizeof *c);
    c->key_id = key_id;
    c->sig = sig;
    c->n_path = evsign_tree_path(t, i, c->path);
    c->index = (uint32_t)i;
    c->count = (uint32_t)n;
    memcpy(c->leaf, leaves[i], H);
}

/* What a proof says: its position and the nodes of its walk. */
static void s_proof_same(const evsign_proof_t *a, const evsign_proof_t *b)
{
    assert_int_equal(a->index, b->index);
    assert_int_equal(a->count, b->count);
    assert_int_equal(a->levels, b->levels);
    assert_int_equal(a->has_sibling, b->has_sibling);
    for (int lv = 0; lv <= a->levels; lv++)
        assert_memory_equal(a->walk[lv], b->walk[lv], H);
    for (int lv = 0; lv < a->levels; lv++)
        if (a->has_sibling >> lv & 1)
            assert_memory_equal(a->sibling[lv], b->sibling[lv], H);
}

/* Proofs (what the hub uses to check one batch's events with one signature
 * verification): every event of the tree extends a proof of any other, in
 * any order, and ends at the same root; any change to an event's leaf, path,
 * position, key id or signature is refused and leaves the proof as it was. */
static void test_proofs(void **state)
{
    (void)state;
    static const size_t sizes[] = {1, 2, 3, 5, 7, 8, 13, 64, 100};
    uint8_t key_id[CRYPTO_KEYID_LEN] = {1, 2, 3, 4, 5, 6, 7, 8}, sig[CRYPTO_SIG_LEN] = {9};
    uint8_t other_id[CRYPTO_KEYID_LEN] = {1, 2, 3, 4, 5, 6, 7, 9}, other_sig[CRYPTO_SIG_LEN] = {10};
    for (size_t s = 0; s < sizeof sizes / sizeof sizes[0]; s++) {
        size_t n = sizes[s];
        uint8_t(*leaves)[H] = NULL;
        evsign_tree_t *t = s_tree(n, &leaves);
        const uint8_t *root = evsign_tree_root(t);
        /* In order, backwards, and shuffled (37 is prime to every size). */
        for (int order = 0; order < 3; order++) {
            evsign_claim_t c;
            evsign_proof_t proof, before;
            memset(&proof, 0, sizeof proof);
            size_t first = order == 0 ? 0 : order == 1 ? n - 1 : 11 % n;
            s_claim(&c, t, (const uint8_t(*)[H])leaves, first, n, key_id, sig);
            assert_int_equal(evsign_proof_build(&proof, &c), EVSIGN_OK);
            assert_memory_equal(evsign_proof_root(&proof), root, H);
            for (size_t k = 1; k < n; k++) {
                size_t i = order == 0 ? k : order == 1 ? n - 1 - k : (k * 37 + 11) % n;
                s_claim(&c, t, (const uint8_t(*)[H])leaves, i, n, key_id, sig);
                before = proof;
                for (size_t p = 0; p < c.n_path; p++) {
                    c.path[p][p % H] ^= 0x40;
                    assert_int_equal(evsign_proof_extend(&proof, &c), EVSIGN_BAD_PATH);
                    s_proof_same(&proof, &before);
                    c.path[p][p % H] ^= 0x40;
                }
                c.leaf[3] ^= 1;
                assert_int_equal(evsign_proof_extend(&proof, &c), EVSIGN_BAD_PATH);
                c.leaf[3] ^= 1;
                if (c.n_path) {
                    c.n_path--;
                    assert_int_equal(evsign_proof_extend(&proof, &c), EVSIGN_BAD_PATH);
                    c.n_path++;
                }
                if (c.n_path < EVSIGN_MAX_DEPTH) {
                    memcpy(c.path[c.n_path++], root, H);
                    assert_int_equal(evsign_proof_extend(&proof, &c), EVSIGN_BAD_PATH);
                    c.n_path--;
                }
                /* Another position with the same path is accepted exactly
                 * when that path leads to the root from there too. */
                c.index = (uint32_t)((i + 1) % n);
                uint8_t alone[H];
                bool leads = evsign_path_root(c.leaf, c.index, c.count, (const uint8_t(*)[H])c.path, c.n_path,
                                              alone) == EVSIGN_OK &&
                             memcmp(alone, root, H) == 0;
                evsign_proof_t probe = proof;
                assert_int_equal(evsign_proof_extend(&probe, &c) == EVSIGN_OK, leads);
                c.index = (uint32_t)i;
                c.count = (uint32_t)n + 1;
                assert_int_equal(evsign_proof_extend(&proof, &c), EVSIGN_BAD_PATH);
                c.count = (uint32_t)n;
                c.key_id = other_id;
                assert_int_equal(evsign_proof_extend(&proof, &c), EVSIGN_BAD_PATH);
                c.key_id = key_id;
                c.sig = other_sig;
                assert_int_equal(evsign_proof_extend(&proof, &c), EVSIGN_BAD_PATH);
                c.sig = sig;
                s_proof_same(&proof, &before);
                assert_int_equal(evsign_proof_extend(&proof, &c), EVSIGN_OK);
                assert_int_equal(proof.index, i);
                assert_memory_equal(evsign_proof_root(&proof), root, H);
            }
        }
        /* Events of another tree of the same size, key id and signature (a
         * forgery reusing the signature fields) do not extend it. */
        if (n > 1) {
            uint8_t(*forged)[H] = malloc(n * H);
            memcpy(forged, leaves, n * H);
            forged[n / 2][0] ^= 1;
            evsign_tree_t *ft = evsign_tree_new((const uint8_t(*)[H])forged, n);
            evsign_claim_t c;
            evsign_proof_t proof;
            s_claim(&c, t, (const uint8_t(*)[H])leaves, 0, n, key_id, sig);
            assert_int_equal(evsign_proof_build(&proof, &c), EVSIGN_OK);
            for (size_t i = 0; i < n; i++) {
                s_claim(&c, ft, (const uint8_t(*)[H])forged, i, n, key_id, sig);
                assert_int_equal(evsign_proof_extend(&proof, &c), EVSIGN_BAD_PATH);
            }
            evsign_tree_destroy(&ft);
            free(forged);
        }
        evsign_tree_destroy(&t);
        free(leaves);
    }
}

static void test_sign_verify(void **state)
{
    (void)state;
    crypto_key_t *a = crypto_key_generate(), *b = crypto_key_generate();
    assert_non_null(a);
    assert_non_null(b);
    uint8_t root[H] = {7}, sig[CRYPTO_SIG_LEN], pub[CRYPTO_PUB_LEN];
    assert_int_equal(evsign_sign_root(a, root, sig), EVSIGN_OK);
    crypto_key_public(a, pub);
    crypto_key_t *va = crypto_key_from_public(pub);
    assert_non_null(va);
    assert_int_equal(evsign_verify_root(va, root, sig), EVSIGN_OK);
    assert_int_equal(evsign_verify_root(b, root, sig), EVSIGN_BAD_SIGNATURE);
    sig[10] ^= 1;
    assert_int_equal(evsign_verify_root(va, root, sig), EVSIGN_BAD_SIGNATURE);
    sig[10] ^= 1;
    root[0] ^= 1;
    assert_int_equal(evsign_verify_root(va, root, sig), EVSIGN_BAD_SIGNATURE);
    /* The key id of the raw key is the key's id. */
    uint8_t id1[CRYPTO_KEYID_LEN], id2[CRYPTO_KEYID_LEN];
    crypto_key_id(a, id1);
    crypto_key_id_raw(pub, id2);
    assert_memory_equal(id1, id2, CRYPTO_KEYID_LEN);
    crypto_key_destroy(&va);
    crypto_key_destroy(&a);
    crypto_key_destroy(&b);
}

/* A batch of n events signed as the SDK does; checked as the hub and a
 * subscriber do. */
static void test_event_fields(void **state)
{
    (void)state;
    crypto_key_t *key = crypto_key_generate(), *other = crypto_key_generate();
    uint8_t key_id[CRYPTO_KEYID_LEN], pub[CRYPTO_PUB_LEN], other_pub[CRYPTO_PUB_LEN];
    crypto_key_id(key, key_id);
    crypto_key_public(key, pub);
    crypto_key_public(other, other_pub);
    enum { N = 5 };
    uint8_t *e[N], leaves[N][H];
    size_t e_len[N];
    for (int i = 0; i < N; i++) {
        codec_event_t ev = CIVIBUS__V1__SERVICE_EVENT__INIT;
        char id[16];
        snprintf(id, sizeof id, "ev-%d", i);
        ev.event_id = id;
        ev.source = "population-register";
        ev.type = "population.birth.registered";
        ev.occurred_at = 1000 + i;
        e_len[i] = civibus__v1__service_event__get_packed_size(&ev);
        e[i] = malloc(e_len[i]);
        civibus__v1__service_event__pack(&ev, e[i]);
        assert_int_equal(evsign_leaf(e[i], e_len[i], leaves[i]), EVSIGN_OK);
    }
    evsign_tree_t *t = evsign_tree_new((const uint8_t(*)[H])leaves, N);
    uint8_t sig[CRYPTO_SIG_LEN];
    assert_int_equal(evsign_sign_root(key, evsign_tree_root(t), sig), EVSIGN_OK);
    for (int i = 0; i < N; i++) {
        uint8_t path[EVSIGN_MAX_DEPTH][H];
        size_t n_path = evsign_tree_path(t, (size_t)i, path);
        uint8_t fields[EVSIGN_FIELDS_MAX];
        size_t fields_len;
        assert_int_equal(evsign_fields_encode(key_id, sig, (const uint8_t(*)[H])path, n_path, (uint32_t)i, N, fields,
                                              &fields_len),
                         EVSIGN_OK);
        size_t len = e_len[i] + fields_len;
        uint8_t *raw = malloc(len);
        memcpy(raw, e[i], e_len[i]);
        memcpy(raw + e_len[i], fields, fields_len);
        /* The appended form is the canonical encoding the hub requires. */
        codec_event_t *ev = NULL;
        assert_int_equal(codec_event_decode(raw, len, len, &ev), CODEC_OK);
        assert_true(codec_event_canonical(ev, len));
        uint8_t root[H];
        const uint8_t *kid, *s;
        char why[160];
        assert_int_equal(evsign_event_root(ev, root, &kid, &s, why, sizeof why), EVSIGN_OK);
        assert_memory_equal(root, evsign_tree_root(t), H);
        assert_memory_equal(kid, key_id, CRYPTO_KEYID_LEN);
        codec_event_free(&ev);

        civ_delivery_t d = {.raw = raw, .raw_len = len};
        assert_int_equal(civ_event_verify(&d, pub), CIV_OK);
        assert_int_equal(civ_event_verify(&d, other_pub), CIV_E_UNKNOWN_KEY); /* key id mismatch */
        raw[2] ^= 0x01; /* inside event_id */
        assert_int_not_equal(civ_event_verify(&d, pub), CIV_OK);
        raw[2] ^= 0x01;
        raw[len - 40] ^= 0x01; /* inside the signature or the path */
        assert_int_not_equal(civ_event_verify(&d, pub), CIV_OK);
        raw[len - 40] ^= 0x01;
        assert_int_equal(civ_event_verify(&d, pub), CIV_OK);
        free(raw);
        /* The bare event is unsigned. */
        civ_delivery_t u = {.raw = e[i], .raw_len = e_len[i]};
        assert_int_equal(civ_event_verify(&u, pub), CIV_E_UNSIGNED);
    }
    for (int i = 0; i < N; i++)
        free(e[i]);
    evsign_tree_destroy(&t);
    crypto_key_destroy(&key);
    crypto_key_destroy(&other);
    assert_string_equal(civ_error_name(CIV_E_BAD_SIGNATURE), "bad_signature");
    assert_string_equal(civ_error_name(CIV_E_UNSIGNED), "unsigned");
}

/* The sizes PROTOCOL.md §10 gives for the signature fields of an event. */
static void test_fields_sizes(void **state)
{
    (void)state;
    uint8_t key_id[CRYPTO_KEYID_LEN] = {1}, sig[CRYPTO_SIG_LEN] = {2}, path[EVSIGN_MAX_DEPTH][H];
    memset(path, 7, sizeof path);
    static const struct {
        size_t n_path;
        uint32_t index, count;
        size_t len;
    } cases[] = {
        {0, 0, 1, 81},           /* a batch of one */
        {6, 63, 64, 294},        /* the last event of a batch of 64 */
        {8, 255, 256, 366},      /* ... of 256, libcivibus's batch when signing */
        {16, 65535, 65536, 648}, /* ... of the largest batch: EVSIGN_FIELDS_MAX */
    };
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        uint8_t out[EVSIGN_FIELDS_MAX];
        size_t len = 0;
        assert_int_equal(evsign_fields_encode(key_id, sig, (const uint8_t(*)[H])path, cases[i].n_path, cases[i].index,
                                              cases[i].count, out, &len),
                         EVSIGN_OK);
        assert_int_equal(len, cases[i].len);
    }
    assert_int_equal(cases[3].len, EVSIGN_FIELDS_MAX);
}

static void test_registry_sign_lines(void **state)
{
    (void)state;
    char dir[] = "/tmp/civibus-evsign-XXXXXX";
    assert_non_null(mkdtemp(dir));
    char path[256], err[512];
    snprintf(path, sizeof path, "%s/pop.pub", dir);
    static const char *hex = "0102030405060708091011121314151617181920212223242526272829303132";
    FILE *f = fopen(path, "w");
    fprintf(f, "agency = pop\ncurve = rq:rM>}U?@Lns47E1%%kR.o@n%%FcmmsL/@{H8]yf7\n"
               "sign = %s not-after=2030-01-01T00:00:00Z\n"
               "revoked-sign = %.62s99 at=2020-01-01T00:00:00Z reason=\"lost\"\n",
            hex, hex);
    fclose(f);
    keyfile_t kf;
    int rc = keyfile_read_entry(path, &kf, err, sizeof err);
    if (rc != KEYFILE_OK)
        fail_msg("%s", err);
    assert_int_equal(kf.n_sign, 2);
    assert_int_equal(kf.sign[0].pub[0], 1);
    assert_int_equal(keyfile_sign_status(&kf.sign[0], 1700000000), KEYFILE_VALID);
    assert_int_equal(keyfile_sign_status(&kf.sign[0], 1900000000), KEYFILE_EXPIRED);
    assert_int_equal(keyfile_sign_status(&kf.sign[1], 1700000000), KEYFILE_REVOKED);
    /* Round trip through the writer (registry rotate/revoke use it). */
    assert_int_equal(keyfile_write_entry(path, &kf, false, err, sizeof err), KEYFILE_OK);
    keyfile_t again;
    assert_int_equal(keyfile_read_entry(path, &again, err, sizeof err), KEYFILE_OK);
    assert_int_equal(again.n_sign, 2);
    for (int i = 0; i < 2; i++) {
        assert_memory_equal(again.sign[i].pub, kf.sign[i].pub, KEYFILE_SIGN_LEN);
        assert_true(again.sign[i].not_after == kf.sign[i].not_after);
        assert_true(again.sign[i].revoked_at == kf.sign[i].revoked_at);
        assert_string_equal(again.sign[i].reason, kf.sign[i].reason);
    }
    /* Bad hex, a duplicate and a fifth key are refused. */
    static const char *const bad[] = {
        "sign = 01zz\n",
        "sign = 0102030405060708091011121314151617181920212223242526272829303132\n"
        "sign = 0102030405060708091011121314151617181920212223242526272829303132\n",
        "sign = a102030405060708091011121314151617181920212223242526272829303132\n"
        "sign = a202030405060708091011121314151617181920212223242526272829303132\n"
        "sign = a302030405060708091011121314151617181920212223242526272829303132\n"
        "sign = a402030405060708091011121314151617181920212223242526272829303132\n"
        "sign = a502030405060708091011121314151617181920212223242526272829303132\n",
        "sign = 0102030405060708091011121314151617181920212223242526272829303132 at=2020-01-01T00:00:00Z\n",
    };
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
        f = fopen(path, "w");
        fprintf(f, "agency = pop\ncurve = rq:rM>}U?@Lns47E1%%kR.o@n%%FcmmsL/@{H8]yf7\n%s", bad[i]);
        fclose(f);
        assert_int_equal(keyfile_read_entry(path, &kf, err, sizeof err), KEYFILE_SYNTAX);
    }
    unlink(path);
    rmdir(dir);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_tree_sizes),
        cmocka_unit_test(test_proofs),
        cmocka_unit_test(test_sign_verify),
        cmocka_unit_test(test_event_fields),
        cmocka_unit_test(test_fields_sizes),
        cmocka_unit_test(test_registry_sign_lines),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
