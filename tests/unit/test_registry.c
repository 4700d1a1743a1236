/* test_registry - registry entries (proto/keyfile) and the hub's key checks
 * (hub/auth): attributes, validity at given times, errors with their line
 * numbers, the atomic rewrite, and auth_key_status / auth_expiring on a
 * loaded and reloaded registry.
 *
 * Each test works in a fresh temporary folder, removed at the end.
 */
#include <dirent.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>
#include <zmq.h>

#include <cmocka.h>

#include "auth.h"
#include "crypto.h"
#include "keyfile.h"

#define T_2026 1795392000LL /* 2026-11-23T00:00:00Z */

typedef struct {
    char dir[64];
    char k[4][41]; /* fresh public keys */
} s_fix_t;

static int s_setup(void **state)
{
    s_fix_t *f = calloc(1, sizeof *f);
    snprintf(f->dir, sizeof f->dir, "/tmp/civibus-test-registry-XXXXXX");
    if (!f || !mkdtemp(f->dir))
        return -1;
    for (int i = 0; i < 4; i++) {
        char sec[41];
        if (zmq_curve_keypair(f->k[i], sec) != 0)
            return -1;
    }
    *state = f;
    return 0;
}

static int s_teardown(void **state)
{
    s_fix_t *f = *state;
    DIR *d = opendir(f->dir);
    struct dirent *de;
    while (d && (de = readdir(d)) != NULL) {
        if (strcmp(de->d_name, ".") && strcmp(de->d_name, "..")) {
            char p[400];
            snprintf(p, sizeof p, "%s/%s", f->dir, de->d_name);
            unlink(p);
        }
    }
    if (d)
        closedir(d);
    rmdir(f->dir);
    free(f);
    return 0;
}

static void s_write(const s_fix_t *f, const char *name, const char *text)
{
    char p[400];
    snprintf(p, sizeof p, "%s/%s", f->dir, name);
    FILE *fp = fopen(p, "w");
    assert_non_null(fp);
    fputs(text, fp);
    assert_int_equal(fclose(fp), 0);
}

/* Read DIR/name as a registry entry; returns the code, err filled. */
static int s_read(const s_fix_t *f, const char *name, keyfile_t *kf, char *err, size_t len)
{
    char p[400];
    snprintf(p, sizeof p, "%s/%s", f->dir, name);
    err[0] = '\0';
    return keyfile_read_entry(p, kf, err, len);
}

/* ---- times --------------------------------------------------------------------- */

static void test_time_parse(void **state)
{
    (void)state;
    int64_t t;
    assert_int_equal(keyfile_time_parse("2026-11-23T00:00:00Z", &t), 0);
    assert_int_equal(t, T_2026);
    assert_int_equal(keyfile_time_parse("1970-01-01T00:00:00Z", &t), 0);
    assert_int_equal(t, 0);
    assert_int_equal(keyfile_time_parse("2024-02-29T23:59:59Z", &t), 0);
    char buf[KEYFILE_TIME_LEN];
    keyfile_time_format(t, buf, sizeof buf);
    assert_string_equal(buf, "2024-02-29T23:59:59Z");
    static const char *const bad[] = {"2026-11-23",           "2026-11-23T00:00:00",  "2026-11-23 00:00:00Z",
                                      "2026-13-01T00:00:00Z", "2025-02-29T00:00:00Z", "2026-11-23T24:00:00Z",
                                      "2026-11-23T00:00:00+01:00", "1969-12-31T23:59:59Z", "2026-11-2aT00:00:00Z",
                                      ""};
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++)
        if (keyfile_time_parse(bad[i], &t) == 0)
            fail_msg("accepted '%s'", bad[i]);
}

/* ---- parsing -------------------------------------------------------------------- */

static void test_attributes(void **state)
{
    s_fix_t *f = *state;
    char text[1024];
    snprintf(text, sizeof text,
             "# a comment\n"
             "agency = tax-office\n"
             "name = Tax and Customs Board\n"
             "curve = %s not-after=2027-11-23T00:00:00Z\n"
             "curve =   %s\n"
             "revoked = %s at=2026-11-23T10:00:00Z reason=\"laptop lost\" not-after=2030-01-01T00:00:00Z\n"
             "revoked = %s\treason=compromised\n",
             f->k[0], f->k[1], f->k[2], f->k[3]);
    s_write(f, "tax-office.pub", text);
    keyfile_t kf;
    char err[512];
    assert_int_equal(s_read(f, "tax-office.pub", &kf, err, sizeof err), KEYFILE_OK);
    assert_string_equal(kf.agency, "tax-office");
    assert_string_equal(kf.name, "Tax and Customs Board");
    assert_int_equal(kf.n_keys, 4);
    assert_int_equal(kf.n_curve, 2); /* revoked keys are not current keys */
    assert_string_equal(kf.curve[0], f->k[0]);
    assert_string_equal(kf.curve[1], f->k[1]);
    assert_string_equal(kf.keys[0].z85, f->k[0]);
    assert_int_equal(kf.keys[0].not_after, T_2026 + 365 * 86400);
    assert_true(kf.keys[0].revoked_at == KEYFILE_FOREVER);
    assert_int_equal(kf.keys[0].line, 4);
    assert_true(kf.keys[1].not_after == KEYFILE_FOREVER);
    assert_int_equal(kf.keys[2].revoked_at, T_2026 + 10 * 3600);
    assert_string_equal(kf.keys[2].reason, "laptop lost");
    assert_int_equal(kf.keys[2].line, 6);
    assert_int_equal(kf.keys[3].revoked_at, 0); /* no at=: revoked for ever */
    assert_string_equal(kf.keys[3].reason, "compromised");

    /* keyfile_read takes the same file; the key files of keygen stay valid. */
    char p[400];
    snprintf(p, sizeof p, "%s/tax-office.pub", f->dir);
    assert_int_equal(keyfile_read(p, &kf, err, sizeof err), KEYFILE_OK);
    assert_int_equal(keyfile_generate(f->dir, "gen", "gen", err, sizeof err), KEYFILE_OK);
    snprintf(p, sizeof p, "%s/gen.key", f->dir);
    assert_int_equal(keyfile_read(p, &kf, err, sizeof err), KEYFILE_OK);
    assert_int_equal(kf.n_curve, 1);
    assert_true(kf.curve_secret[0] != '\0');
    assert_int_equal(s_read(f, "gen.pub", &kf, err, sizeof err), KEYFILE_OK);
    assert_true(kf.keys[0].not_after == KEYFILE_FOREVER);
}

static void test_validity(void **state)
{
    (void)state;
    keyfile_key_t k = {.not_after = T_2026, .revoked_at = KEYFILE_FOREVER};
    assert_int_equal(keyfile_key_status(&k, T_2026 - 1), KEYFILE_VALID);
    assert_int_equal(keyfile_key_status(&k, T_2026), KEYFILE_EXPIRED); /* now < not-after */
    assert_int_equal(keyfile_key_status(&k, T_2026 + 86400), KEYFILE_EXPIRED);
    k.revoked_at = T_2026 - 100;
    assert_int_equal(keyfile_key_status(&k, T_2026 - 101), KEYFILE_VALID); /* revoked from at on */
    assert_int_equal(keyfile_key_status(&k, T_2026 - 100), KEYFILE_REVOKED);
    assert_int_equal(keyfile_key_status(&k, T_2026 + 1), KEYFILE_REVOKED); /* revoked wins */
    keyfile_key_t forever = {.not_after = KEYFILE_FOREVER, .revoked_at = KEYFILE_FOREVER};
    assert_int_equal(keyfile_key_status(&forever, INT64_MAX - 1), KEYFILE_VALID);
    assert_string_equal(keyfile_status_name(KEYFILE_REVOKED), "revoked");
}

/* Each bad line, as line 3 of an entry, fails with "name:3: <what>". */
static void test_errors(void **state)
{
    s_fix_t *f = *state;
    struct {
        const char *line; /* %s: a valid key */
        const char *what;
    } cases[] = {
        {"curve = %s not-afer=2027-01-01T00:00:00Z", "unknown attribute 'not-afer'"},
        {"curve = %s at=2027-01-01T00:00:00Z", "unknown attribute 'at'"},
        {"curve = %s not-after=2027-01-01", "not-after=2027-01-01 is not a UTC time"},
        {"curve = %s not-after=2027-01-01T00:00:00Z not-after=2028-01-01T00:00:00Z", "given twice"},
        {"curve = %s # old", "expected NAME=VALUE"},
        {"curve = %s not-after=", "has no value"},
        {"revoked = %s reason=\"unterminated", "closing"},
        {"revoked = %s reason=\"a\"b", "a blank must follow"},
        {"revoked = %s reason=a\"b", "inside a value"},
        {"revoked = %s at=yesterday", "at=yesterday is not a UTC time"},
        {"revoke = %s", "unknown name 'revoke'"},
        {"curve = x%s", "not a 40-character Z85 key"},
    };
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        char line[256], text[512], err[512];
        snprintf(line, sizeof line, cases[i].line, f->k[1]);
        snprintf(text, sizeof text, "agency = a\ncurve = %s\n%s\n", f->k[0], line);
        s_write(f, "a.pub", text);
        keyfile_t kf;
        int rc = s_read(f, "a.pub", &kf, err, sizeof err);
        if (rc != KEYFILE_SYNTAX || !strstr(err, "a.pub:3: ") || !strstr(err, cases[i].what))
            fail_msg("case %zu '%s': rc %d, err '%s' (want '%s')", i, cases[i].line, rc, err, cases[i].what);
        assert_null(strstr(err, f->k[1])); /* never a key in a message */
    }

    /* A key given twice (also once current, once revoked). */
    char text[1024], err[512];
    keyfile_t kf;
    snprintf(text, sizeof text, "agency = a\ncurve = %s\n\nrevoked = %s\n", f->k[0], f->k[0]);
    s_write(f, "a.pub", text);
    assert_int_equal(s_read(f, "a.pub", &kf, err, sizeof err), KEYFILE_SYNTAX);
    assert_non_null(strstr(err, "a.pub:4: the key appears twice (first on line 2)"));

    /* Unknown names: an error in an entry, ignored in other key files. */
    snprintf(text, sizeof text, "agency = a\ncurve = %s\nfuture = 1\n", f->k[0]);
    s_write(f, "a.pub", text);
    assert_int_equal(s_read(f, "a.pub", &kf, err, sizeof err), KEYFILE_SYNTAX);
    char p[400];
    snprintf(p, sizeof p, "%s/a.pub", f->dir);
    assert_int_equal(keyfile_read(p, &kf, err, sizeof err), KEYFILE_OK);

    /* The agency must match the file name, and is required. */
    snprintf(text, sizeof text, "agency = b\ncurve = %s\n", f->k[0]);
    s_write(f, "a.pub", text);
    assert_int_equal(s_read(f, "a.pub", &kf, err, sizeof err), KEYFILE_SYNTAX);
    assert_non_null(strstr(err, "must match the file name"));
    snprintf(text, sizeof text, "curve = %s\n", f->k[0]);
    s_write(f, "a.pub", text);
    assert_int_equal(s_read(f, "a.pub", &kf, err, sizeof err), KEYFILE_MISSING);

    /* An entry of revoked keys only is an entry; keyfile_read wants a key. */
    snprintf(text, sizeof text, "agency = a\nrevoked = %s at=2026-01-01T00:00:00Z\n", f->k[0]);
    s_write(f, "a.pub", text);
    assert_int_equal(s_read(f, "a.pub", &kf, err, sizeof err), KEYFILE_OK);
    assert_int_equal(keyfile_read(p, &kf, err, sizeof err), KEYFILE_MISSING);

    /* At most KEYFILE_MAX_KEYS keys; a reason of at most 128 characters. */
    size_t used = (size_t)snprintf(text, sizeof text, "agency = a\n");
    char big[4096];
    memcpy(big, text, used);
    for (int i = 0; i <= KEYFILE_MAX_KEYS; i++) {
        char pub[41], sec[41];
        assert_int_equal(zmq_curve_keypair(pub, sec), 0);
        used += (size_t)snprintf(big + used, sizeof big - used, "curve = %s\n", pub);
    }
    s_write(f, "a.pub", big);
    assert_int_equal(s_read(f, "a.pub", &kf, err, sizeof err), KEYFILE_SYNTAX);
    assert_non_null(strstr(err, "a.pub:18: more than 16 keys"));
    char reason[200];
    memset(reason, 'r', 129);
    reason[129] = '\0';
    snprintf(big, sizeof big, "agency = a\nrevoked = %s reason=%s\n", f->k[0], reason);
    s_write(f, "a.pub", big);
    assert_int_equal(s_read(f, "a.pub", &kf, err, sizeof err), KEYFILE_SYNTAX);
    assert_non_null(strstr(err, "a.pub:2: reason is longer than 128"));
}

/* ---- atomic rewrite ------------------------------------------------------------ */

static int s_count_files(const s_fix_t *f)
{
    int n = 0;
    DIR *d = opendir(f->dir);
    struct dirent *de;
    while (d && (de = readdir(d)) != NULL)
        n += de->d_name[0] != '.' || (strcmp(de->d_name, ".") && strcmp(de->d_name, ".."));
    if (d)
        closedir(d);
    return n;
}

static void test_write_entry(void **state)
{
    s_fix_t *f = *state;
    keyfile_t kf;
    memset(&kf, 0, sizeof kf);
    snprintf(kf.agency, sizeof kf.agency, "tax-office");
    snprintf(kf.name, sizeof kf.name, "Tax = Customs # Board");
    kf.keys[0] = (keyfile_key_t){.not_after = T_2026, .revoked_at = KEYFILE_FOREVER};
    kf.keys[1] = (keyfile_key_t){.not_after = KEYFILE_FOREVER, .revoked_at = T_2026 - 60};
    kf.keys[2] = (keyfile_key_t){.not_after = KEYFILE_FOREVER, .revoked_at = KEYFILE_FOREVER};
    for (int i = 0; i < 3; i++)
        snprintf(kf.keys[i].z85, sizeof kf.keys[i].z85, "%s", f->k[i]);
    snprintf(kf.keys[1].reason, sizeof kf.keys[1].reason, "key left on a train");
    kf.n_keys = 3;
    snprintf(kf.curve_secret, sizeof kf.curve_secret, "%s", f->k[3]); /* never written */

    char p[400], err[512];
    snprintf(p, sizeof p, "%s/tax-office.pub", f->dir);
    assert_int_equal(keyfile_write_entry(p, &kf, true, err, sizeof err), KEYFILE_OK);
    assert_int_equal(s_count_files(f), 1); /* no temporary file left */
    struct stat st;
    assert_int_equal(stat(p, &st), 0);
    assert_int_equal(st.st_mode & 0777, 0644);

    keyfile_t back;
    assert_int_equal(keyfile_read_entry(p, &back, err, sizeof err), KEYFILE_OK);
    assert_string_equal(back.name, kf.name);
    assert_int_equal(back.n_keys, 3);
    for (int i = 0; i < 3; i++) {
        assert_string_equal(back.keys[i].z85, kf.keys[i].z85);
        assert_true(back.keys[i].not_after == kf.keys[i].not_after);
        assert_true(back.keys[i].revoked_at == kf.keys[i].revoked_at);
        assert_string_equal(back.keys[i].reason, kf.keys[i].reason);
    }
    FILE *fp = fopen(p, "r");
    char text[4096];
    size_t n = fread(text, 1, sizeof text - 1, fp);
    fclose(fp);
    text[n] = '\0';
    assert_null(strstr(text, f->k[3]));
    assert_non_null(strstr(text, "reason=\"key left on a train\""));

    /* Exclusive: an existing entry is never replaced. */
    keyfile_t other = kf;
    other.n_keys = 1;
    assert_int_equal(keyfile_write_entry(p, &other, true, err, sizeof err), KEYFILE_EXISTS);
    assert_int_equal(keyfile_read_entry(p, &back, err, sizeof err), KEYFILE_OK);
    assert_int_equal(back.n_keys, 3);
    assert_int_equal(s_count_files(f), 1);

    /* Replace: the new entry in one step. */
    assert_int_equal(keyfile_write_entry(p, &other, false, err, sizeof err), KEYFILE_OK);
    assert_int_equal(keyfile_read_entry(p, &back, err, sizeof err), KEYFILE_OK);
    assert_int_equal(back.n_keys, 1);
    assert_int_equal(s_count_files(f), 1);

    /* What the format cannot hold is refused, and nothing is written. */
    snprintf(other.keys[0].reason, sizeof other.keys[0].reason, "a \"quote\"");
    other.keys[0].revoked_at = T_2026;
    assert_int_equal(keyfile_write_entry(p, &other, false, err, sizeof err), KEYFILE_SYNTAX);
    snprintf(other.keys[0].reason, sizeof other.keys[0].reason, "ok");
    snprintf(other.name, sizeof other.name, "two\nlines");
    assert_int_equal(keyfile_write_entry(p, &other, false, err, sizeof err), KEYFILE_SYNTAX);
    assert_int_equal(keyfile_read_entry(p, &back, err, sizeof err), KEYFILE_OK);
    assert_true(back.keys[0].revoked_at == KEYFILE_FOREVER);
    assert_int_equal(s_count_files(f), 1);
    snprintf(p, sizeof p, "%s/missing-dir/x.pub", f->dir);
    snprintf(other.name, sizeof other.name, "x");
    snprintf(other.agency, sizeof other.agency, "x");
    assert_int_equal(keyfile_write_entry(p, &other, false, err, sizeof err), KEYFILE_IO);
}

/* ---- the hub's signing key list ----------------------------------------------------- */

static void test_hub_sign_list(void **state)
{
    s_fix_t *f = *state;
    char p[400], err[512], text[1024];
    keyfile_hub_t *hub = calloc(1, sizeof *hub), *back = calloc(1, sizeof *back);
    assert_non_null(hub);
    assert_non_null(back);
    static const char k1[] = "a1a1a1a1a1a1a1a1a1a1a1a1a1a1a1a1a1a1a1a1a1a1a1a1a1a1a1a1a1a1a1a1";
    static const char k2[] = "b2b2b2b2b2b2b2b2b2b2b2b2b2b2b2b2b2b2b2b2b2b2b2b2b2b2b2b2b2b2b2b2";
    snprintf(p, sizeof p, "%s/hub-sign.pub", f->dir);

    /* A list with validity. */
    snprintf(text, sizeof text,
             "# the hub's keys\nsign = %s not-after=2026-11-23T00:00:00Z\n"
             "revoked-sign = %s at=2026-11-23T00:00:00Z reason=\"rotated out\"\n",
             k1, k2);
    s_write(f, "hub-sign.pub", text);
    assert_int_equal(keyfile_read_hub_sign(p, hub, err, sizeof err), KEYFILE_OK);
    assert_int_equal(hub->n_sign, 2);
    assert_true(hub->sign[0].not_after == T_2026);
    assert_int_equal(keyfile_sign_status(&hub->sign[0], T_2026 - 1), KEYFILE_VALID);
    assert_int_equal(keyfile_sign_status(&hub->sign[0], T_2026), KEYFILE_EXPIRED);
    assert_int_equal(keyfile_sign_status(&hub->sign[1], T_2026 - 1), KEYFILE_VALID);
    assert_int_equal(keyfile_sign_status(&hub->sign[1], T_2026), KEYFILE_REVOKED);
    assert_string_equal(hub->sign[1].reason, "rotated out");

    /* Rewritten atomically, and read back the same. */
    assert_int_equal(keyfile_write_hub_sign(p, hub, true, err, sizeof err), KEYFILE_EXISTS);
    assert_int_equal(keyfile_write_hub_sign(p, hub, false, err, sizeof err), KEYFILE_OK);
    assert_int_equal(s_count_files(f), 1);
    assert_int_equal(keyfile_read_hub_sign(p, back, err, sizeof err), KEYFILE_OK);
    assert_int_equal(back->n_sign, 2);
    for (int i = 0; i < 2; i++) {
        assert_memory_equal(back->sign[i].pub, hub->sign[i].pub, KEYFILE_SIGN_LEN);
        assert_true(back->sign[i].not_after == hub->sign[i].not_after);
        assert_true(back->sign[i].revoked_at == hub->sign[i].revoked_at);
    }

    /* A PEM public key, as keygen --hub writes it: one key, no limit. */
    crypto_key_t *key = crypto_key_generate();
    assert_non_null(key);
    assert_int_equal(unlink(p), 0);
    assert_int_equal(crypto_key_write_public(key, p, err, sizeof err), CRYPTO_OK);
    assert_int_equal(keyfile_read_hub_sign(p, back, err, sizeof err), KEYFILE_OK);
    assert_int_equal(back->n_sign, 1);
    uint8_t pub[CRYPTO_PUB_LEN];
    crypto_key_public(key, pub);
    assert_memory_equal(back->sign[0].pub, pub, sizeof pub);
    assert_true(back->sign[0].not_after == KEYFILE_FOREVER && back->sign[0].revoked_at == KEYFILE_FOREVER);
    crypto_key_destroy(&key);

    /* Anything but signing keys is refused: the list decides which
     * checkpoints count. */
    static const char *const bad[] = {"agency = hub\n", "curve = x\n", "signs = x\n", "", "# only a comment\n",
                                      "-----BEGIN PUBLIC KEY-----\nnot base64\n-----END PUBLIC KEY-----\n"};
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
        snprintf(text, sizeof text, "sign = %s\n%s", k1, bad[i]);
        s_write(f, "hub-sign.pub", i < 3 ? text : bad[i]);
        if (keyfile_read_hub_sign(p, back, err, sizeof err) == KEYFILE_OK)
            fail_msg("accepted case %zu", i);
    }
    /* More keys than a list holds. */
    hub->n_sign = KEYFILE_MAX_HUB_SIGN + 1;
    assert_int_equal(keyfile_write_hub_sign(p, hub, false, err, sizeof err), KEYFILE_SYNTAX);
    free(hub);
    free(back);
}

/* ---- the hub's view (auth) -------------------------------------------------------- */

static void test_auth_status(void **state)
{
    s_fix_t *f = *state;
    int64_t now = (int64_t)time(NULL);
    char soon[KEYFILE_TIME_LEN], past[KEYFILE_TIME_LEN], later[KEYFILE_TIME_LEN], text[1024];
    keyfile_time_format(now + 5 * 86400, soon, sizeof soon);
    keyfile_time_format(now - 60, past, sizeof past);
    keyfile_time_format(now + 400 * 86400, later, sizeof later);
    /* a: k0 expiring in 5 days (rotation overlap with k1), k1 for 400 days;
     * b: k2 expired, k3 revoked a minute ago. */
    snprintf(text, sizeof text, "agency = a\ncurve = %s not-after=%s\ncurve = %s not-after=%s\n", f->k[0], soon,
             f->k[1], later);
    s_write(f, "a.pub", text);
    snprintf(text, sizeof text, "agency = b\ncurve = %s not-after=%s\nrevoked = %s at=%s reason=test\n", f->k[2],
             past, f->k[3], past);
    s_write(f, "b.pub", text);

    void *ctx = zmq_ctx_new();
    assert_non_null(ctx);
    auth_t *auth = auth_new(ctx, f->dir);
    assert_non_null(auth);
    assert_int_equal(auth_agencies(auth), 2);
    assert_int_equal(auth_key_status(auth, "a", f->k[0], now), AUTH_KEY_VALID);
    assert_int_equal(auth_key_status(auth, "a", f->k[1], now), AUTH_KEY_VALID);
    assert_true(auth_key_valid(auth, "a", f->k[0]));
    assert_int_equal(auth_key_status(auth, "a", f->k[0], now + 6 * 86400), AUTH_KEY_EXPIRED);
    assert_int_equal(auth_key_status(auth, "b", f->k[2], now), AUTH_KEY_EXPIRED);
    assert_int_equal(auth_key_status(auth, "b", f->k[3], now), AUTH_KEY_REVOKED);
    assert_int_equal(auth_key_status(auth, "b", f->k[3], now - 3600), AUTH_KEY_VALID); /* before at= */
    assert_int_equal(auth_key_status(auth, "b", f->k[0], now), AUTH_KEY_UNREGISTERED); /* a's key */
    assert_int_equal(auth_key_status(auth, "a", NULL, now), AUTH_KEY_UNREGISTERED);
    assert_int_equal(auth_key_status(auth, "a", "short", now), AUTH_KEY_UNREGISTERED);
    assert_false(auth_key_valid(auth, "b", f->k[3]));

    auth_expiring_t exp[4];
    assert_int_equal(auth_expiring(auth, NULL, now, 30 * 86400, exp, 4), 1);
    assert_string_equal(exp[0].agency, "a");
    assert_string_equal(exp[0].key, f->k[0]);
    assert_int_equal(auth_expiring(auth, "a", now, 30 * 86400, exp, 4), 1);
    assert_int_equal(auth_expiring(auth, "b", now, 30 * 86400, exp, 4), 0);
    assert_int_equal(auth_expiring(auth, NULL, now, 4 * 86400, exp, 4), 0);
    assert_int_equal(auth_expiring(auth, NULL, now, 500 * 86400, NULL, 0), 2);
    assert_int_equal(auth_expiring(auth, NULL, now, 500 * 86400, exp, 4), 2);
    assert_true(exp[0].not_after < exp[1].not_after);

    /* Revoke k1 and reload: the change is in force at once. */
    snprintf(text, sizeof text, "agency = a\ncurve = %s not-after=%s\nrevoked = %s at=%s\n", f->k[0], soon, f->k[1],
             past);
    s_write(f, "a.pub", text);
    assert_int_equal(auth_reload(auth), AUTH_OK);
    assert_int_equal(auth_key_status(auth, "a", f->k[1], now), AUTH_KEY_REVOKED);
    assert_int_equal(auth_key_status(auth, "a", f->k[0], now), AUTH_KEY_VALID);

    /* An invalid entry: the reload keeps the registry in force. */
    snprintf(text, sizeof text, "agency = a\ncurve = %s not-after=soon\n", f->k[0]);
    s_write(f, "a.pub", text);
    assert_int_equal(auth_reload(auth), AUTH_REGISTRY);
    assert_int_equal(auth_key_status(auth, "a", f->k[1], now), AUTH_KEY_REVOKED);
    /* A key under two agencies, revoked in one of them, is refused too. */
    snprintf(text, sizeof text, "agency = a\ncurve = %s\nrevoked = %s\n", f->k[0], f->k[2]);
    s_write(f, "a.pub", text);
    assert_int_equal(auth_reload(auth), AUTH_REGISTRY);

    zmq_ctx_shutdown(ctx);
    auth_destroy(&auth);
    assert_null(auth);
    zmq_ctx_term(ctx);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_time_parse),
        cmocka_unit_test_setup_teardown(test_hub_sign_list, s_setup, s_teardown),
        cmocka_unit_test(test_validity),
        cmocka_unit_test_setup_teardown(test_attributes, s_setup, s_teardown),
        cmocka_unit_test_setup_teardown(test_errors, s_setup, s_teardown),
        cmocka_unit_test_setup_teardown(test_write_entry, s_setup, s_teardown),
        cmocka_unit_test_setup_teardown(test_auth_status, s_setup, s_teardown),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
