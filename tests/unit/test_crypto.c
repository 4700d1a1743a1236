/* test_crypto - SHA-256, Ed25519 signatures and key files (proto/crypto.h).
 *
 * Key files go to a fresh mkdtemp directory per test. Known-answer values
 * come from FIPS 180-2 (SHA-256 of "abc") so a wrong wiring of OpenSSL shows.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "crypto.h"

typedef struct {
    char dir[64];
    char key[128];
    char pub[128];
} fixture_t;

static int s_setup(void **state)
{
    fixture_t *f = calloc(1, sizeof *f);
    assert_non_null(f);
    snprintf(f->dir, sizeof f->dir, "/tmp/civibus-crypto-XXXXXX");
    assert_non_null(mkdtemp(f->dir));
    snprintf(f->key, sizeof f->key, "%s/k.key", f->dir);
    snprintf(f->pub, sizeof f->pub, "%s/k.pub", f->dir);
    *state = f;
    return 0;
}

static int s_teardown(void **state)
{
    fixture_t *f = *state;
    unlink(f->key);
    unlink(f->pub);
    rmdir(f->dir);
    free(f);
    return 0;
}

static void test_sha256_known_answer(void **state)
{
    (void)state;
    uint8_t out[CRYPTO_SHA256_LEN];
    char hex[2 * CRYPTO_SHA256_LEN + 1];
    assert_int_equal(crypto_sha256("abc", 3, out), CRYPTO_OK);
    crypto_hex(out, sizeof out, hex);
    assert_string_equal(hex, "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad");
    /* the streaming context gives the same, in pieces, twice in a row */
    crypto_sha256_t *h = crypto_sha256_new();
    assert_non_null(h);
    for (int round = 0; round < 2; round++) {
        uint8_t again[CRYPTO_SHA256_LEN];
        assert_int_equal(crypto_sha256_begin(h), CRYPTO_OK);
        assert_int_equal(crypto_sha256_update(h, "a", 1), CRYPTO_OK);
        assert_int_equal(crypto_sha256_update(h, "", 0), CRYPTO_OK);
        assert_int_equal(crypto_sha256_update(h, "bc", 2), CRYPTO_OK);
        assert_int_equal(crypto_sha256_end(h, again), CRYPTO_OK);
        assert_memory_equal(again, out, sizeof out);
    }
    crypto_sha256_destroy(&h);
    assert_null(h);
    crypto_sha256_destroy(NULL);
}

static void test_sign_verify(void **state)
{
    (void)state;
    crypto_key_t *k = crypto_key_generate(), *other = crypto_key_generate();
    assert_non_null(k);
    assert_non_null(other);
    assert_true(crypto_key_has_secret(k));
    const char msg[] = "checkpoint 42";
    uint8_t sig[CRYPTO_SIG_LEN];
    assert_int_equal(crypto_sign(k, msg, sizeof msg, sig), CRYPTO_OK);
    assert_int_equal(crypto_verify(k, msg, sizeof msg, sig), CRYPTO_OK);
    /* a changed message, a changed signature, another key: all refused */
    char bad[sizeof msg];
    memcpy(bad, msg, sizeof msg);
    bad[0] ^= 1;
    assert_int_equal(crypto_verify(k, bad, sizeof bad, sig), CRYPTO_BAD_SIGNATURE);
    assert_int_equal(crypto_verify(k, msg, sizeof msg - 1, sig), CRYPTO_BAD_SIGNATURE);
    for (size_t i = 0; i < CRYPTO_SIG_LEN; i += 21) {
        uint8_t s2[CRYPTO_SIG_LEN];
        memcpy(s2, sig, sizeof s2);
        s2[i] ^= 0x80;
        assert_int_equal(crypto_verify(k, msg, sizeof msg, s2), CRYPTO_BAD_SIGNATURE);
    }
    assert_int_equal(crypto_verify(other, msg, sizeof msg, sig), CRYPTO_BAD_SIGNATURE);
    /* key ids differ and are 16 hex digits */
    char a[CRYPTO_KEYID_HEX], b[CRYPTO_KEYID_HEX];
    crypto_key_id_hex(k, a);
    crypto_key_id_hex(other, b);
    assert_int_equal(strlen(a), 16);
    assert_string_not_equal(a, b);
    crypto_key_destroy(&k);
    crypto_key_destroy(&other);
    assert_null(k);
    crypto_key_destroy(NULL);
}

static void test_pem_round_trip(void **state)
{
    fixture_t *f = *state;
    char err[512];
    crypto_key_t *k = crypto_key_generate();
    assert_non_null(k);
    assert_int_equal(crypto_key_write_secret(k, f->key, err, sizeof err), CRYPTO_OK);
    assert_int_equal(crypto_key_write_public(k, f->pub, err, sizeof err), CRYPTO_OK);
    struct stat st;
    assert_int_equal(stat(f->key, &st), 0);
    assert_int_equal(st.st_mode & 0777, 0600);

    crypto_key_t *sec = NULL, *pub = NULL;
    assert_int_equal(crypto_key_read_secret(f->key, &sec, err, sizeof err), CRYPTO_OK);
    assert_int_equal(crypto_key_read_public(f->pub, &pub, err, sizeof err), CRYPTO_OK);
    assert_false(crypto_key_has_secret(pub));
    uint8_t p1[CRYPTO_PUB_LEN], p2[CRYPTO_PUB_LEN], p3[CRYPTO_PUB_LEN];
    crypto_key_public(k, p1);
    crypto_key_public(sec, p2);
    crypto_key_public(pub, p3);
    assert_memory_equal(p1, p2, sizeof p1);
    assert_memory_equal(p1, p3, sizeof p1);
    /* what the reloaded secret signs, the public file verifies */
    uint8_t sig[CRYPTO_SIG_LEN];
    assert_int_equal(crypto_sign(sec, "x", 1, sig), CRYPTO_OK);
    assert_int_equal(crypto_verify(pub, "x", 1, sig), CRYPTO_OK);
    /* a public key cannot sign */
    assert_int_equal(crypto_sign(pub, "x", 1, sig), CRYPTO_FORMAT);
    /* a secret file is never overwritten */
    assert_int_equal(crypto_key_write_secret(k, f->key, err, sizeof err), CRYPTO_EXISTS);
    crypto_key_destroy(&sec);
    /* the wrong kind of file */
    crypto_key_t *none = NULL;
    assert_int_equal(crypto_key_read_public(f->key, &none, err, sizeof err), CRYPTO_FORMAT);
    assert_null(none);
    assert_int_equal(crypto_key_read_public("/nonexistent/k.pub", &none, err, sizeof err), CRYPTO_IO);
    assert_non_null(strstr(err, "/nonexistent/k.pub"));
    crypto_key_destroy(&k);
    crypto_key_destroy(&pub);
}

static void test_secret_file_mode(void **state)
{
    fixture_t *f = *state;
    char err[512];
    crypto_key_t *k = crypto_key_generate(), *got = NULL;
    assert_int_equal(crypto_key_write_secret(k, f->key, err, sizeof err), CRYPTO_OK);
    crypto_key_destroy(&k);
    assert_int_equal(chmod(f->key, 0640), 0);
    assert_int_equal(crypto_key_read_secret(f->key, &got, err, sizeof err), CRYPTO_MODE);
    assert_null(got);
    assert_non_null(strstr(err, "chmod 600"));
    assert_int_equal(chmod(f->key, 0604), 0);
    assert_int_equal(crypto_key_read_secret(f->key, &got, err, sizeof err), CRYPTO_MODE);
    assert_int_equal(chmod(f->key, 0400), 0);
    assert_int_equal(crypto_key_read_secret(f->key, &got, err, sizeof err), CRYPTO_OK);
    crypto_key_destroy(&got);
    /* garbage is a format error, not a crash */
    FILE *fp = fopen(f->pub, "w");
    assert_non_null(fp);
    fputs("-----BEGIN PUBLIC KEY-----\nAAAA\n-----END PUBLIC KEY-----\n", fp);
    fclose(fp);
    assert_int_equal(crypto_key_read_public(f->pub, &got, err, sizeof err), CRYPTO_FORMAT);
    assert_null(got);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_sha256_known_answer),
        cmocka_unit_test(test_sign_verify),
        cmocka_unit_test_setup_teardown(test_pem_round_trip, s_setup, s_teardown),
        cmocka_unit_test_setup_teardown(test_secret_file_mode, s_setup, s_teardown),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
