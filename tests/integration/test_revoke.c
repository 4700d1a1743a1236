/* test_revoke - key lifecycle against a real hub: revocation, rotation,
 * expiry and its warnings.
 *
 *   revoke   an agency's key is revoked with `civibus registry revoke` and
 *            the hub gets SIGHUP: its live connection's next publish (and
 *            ping) is refused not_authorised "key revoked", a new connection
 *            with the key is refused at the handshake, and another agency
 *            publishes throughout.
 *   rotate   `civibus registry rotate` adds a second key; after SIGHUP both
 *            keys publish during the overlap; the old key, expiring a few
 *            seconds later, is refused on its live connection and at the
 *            handshake, while the new one goes on.
 *   warning  a key expiring within key_expiry_warn_days is logged at start
 *            (event=key_expiring) and listed in the agency's status
 *            warnings (SDK and `civibus status --json`), and only in its own.
 * The CLI is $CIVIBUS_CLI (tests/run.sh sets it); without it, the entries
 * are rewritten with proto/keyfile directly.
 */
#include <setjmp.h>
#include <signal.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>

#include <cmocka.h>

#include "itest.h"

#define TAX "tax-office"
#define POP "population-register"

static const char *const s_agencies[] = {TAX, POP, NULL};

static int s_setup(void **state)
{
    *state = it_fix_new(s_agencies);
    return 0;
}

static int s_teardown(void **state)
{
    it_fix_t *f = *state;
    it_fix_destroy(&f);
    return 0;
}

static void s_entry_path(it_fix_t *f, const char *agency, char *out, size_t len)
{
    snprintf(out, len, "%s/registry/%s.pub", harness_dir(f->h), agency);
}

static void s_read_entry(it_fix_t *f, const char *agency, keyfile_t *kf)
{
    char path[512], err[600];
    s_entry_path(f, agency, path, sizeof path);
    if (keyfile_read_entry(path, kf, err, sizeof err) != KEYFILE_OK)
        fail_msg("%s", err);
}

static void s_write_entry(it_fix_t *f, const keyfile_t *kf)
{
    char path[512], err[600];
    s_entry_path(f, kf->agency, path, sizeof path);
    if (keyfile_write_entry(path, kf, false, err, sizeof err) != KEYFILE_OK)
        fail_msg("%s", err);
}

/* Run `$CIVIBUS_CLI registry ARGS --registry DIR`; false without a CLI. */
static bool s_cli(it_fix_t *f, const char *args, int want)
{
    const char *cli = getenv("CIVIBUS_CLI");
    if (!cli || !cli[0])
        return false;
    char cmd[2048];
    snprintf(cmd, sizeof cmd, "'%s' registry %s --registry '%s/registry'", cli, args, harness_dir(f->h));
    int rc = harness_sh(cmd);
    if (rc != want)
        fail_msg("`%s` exited %d, not %d", cmd, rc, want);
    return true;
}

/* SIGHUP the hub and wait for its (n-th) reload line. */
static void s_reload(it_fix_t *f)
{
    assert_int_equal(kill(harness_pid(f->h), SIGHUP), 0);
    if (!it_log_contains(f, "event=registry_reloaded", 5000))
        fail_msg("the hub did not reload its registry");
}

/* Publish event i of c's agency and wait for its ack. */
static void s_publish(civ_client_t *c, int i, civ_ack_t *ack)
{
    it_ev_t e;
    it_ev_make(&e, civ_client_agency(c), i);
    int rc = civ_publish(c, &e.ev, ack);
    if (rc != CIV_OK)
        fail_msg("civ_publish %s #%d: %s", civ_client_agency(c), i, civ_error_name(rc));
}

static void s_publish_ok(civ_client_t *c, int i)
{
    civ_ack_t ack;
    s_publish(c, i, &ack);
    if (ack.error != CIV_OK)
        fail_msg("%s #%d refused: %s (%s)", civ_client_agency(c), i, civ_error_name(ack.error), ack.reason);
}

static void s_publish_refused(civ_client_t *c, int i, const char *reason)
{
    civ_ack_t ack;
    s_publish(c, i, &ack);
    if (ack.error != CIV_E_NOT_AUTHORISED || !strstr(ack.reason, reason))
        fail_msg("%s #%d: expected not_authorised \"%s\", got %s (%s)", civ_client_agency(c), i, reason,
                 civ_error_name(ack.error), ack.reason);
}

/* A raw connection with agency's harness key gets no answer: the handshake
 * was refused. */
static void s_handshake_refused(it_fix_t *f, const char *agency)
{
    it_raw_t *raw = it_raw(f, agency);
    assert_int_equal(it_raw_ping(raw, 7), 0);
    Civibus__V1__HubMessage *msg = it_raw_recv(raw, 1500);
    if (msg) {
        it_hub_msg_free(&msg);
        fail_msg("the hub answered a connection with %s's refused key", agency);
    }
}

/* A client of agency with the key file at key_path (teardown destroys it). */
static civ_client_t *s_client_with_key(it_fix_t *f, const char *key_path)
{
    civ_options_t o = {.endpoint = harness_endpoint(f->h),
                       .hub_key_file = harness_hub_pub(f->h),
                       .key_file = key_path,
                       .timeout_ms = 5000};
    civ_error_t err = {0};
    civ_client_t *c = civ_client_new(&o, &err);
    if (!c)
        fail_msg("client %s: %s", key_path, err.message);
    for (int i = 0; i < IT_MAX_CLIENTS; i++) {
        if (!f->clients[i]) {
            f->clients[i] = c;
            return c;
        }
    }
    civ_client_destroy(&c);
    fail_msg("too many clients");
    return NULL;
}

/* ---- revoke ---------------------------------------------------------------------- */

static void test_revoke(void **state)
{
    it_fix_t *f = *state;
    it_start(f, NULL);
    civ_client_t *tax = it_client(f, TAX, 5000);
    civ_client_t *pop = it_client(f, POP, 5000);
    s_publish_ok(tax, 0);
    s_publish_ok(pop, 0);

    if (!s_cli(f, "revoke --agency " TAX " --all --reason 'test: key left on a train'", 0)) {
        keyfile_t kf;
        s_read_entry(f, TAX, &kf);
        kf.keys[0].revoked_at = (int64_t)time(NULL);
        snprintf(kf.keys[0].reason, sizeof kf.keys[0].reason, "test");
        s_write_entry(f, &kf);
    }
    keyfile_t kf;
    s_read_entry(f, TAX, &kf);
    assert_int_equal(keyfile_key_status(&kf.keys[0], (int64_t)time(NULL)), KEYFILE_REVOKED);
    /* Before the SIGHUP the hub has not read it. */
    s_publish_ok(tax, 1);
    s_reload(f);

    /* The live connection: its next publish and ping are refused. */
    s_publish_refused(tax, 2, "key revoked");
    assert_int_equal(civ_ping(tax, NULL), CIV_E_NOT_AUTHORISED);
    assert_true(
        it_log_contains(f, "event=message_refused agency=" TAX " code=not_authorised reason=key_revoked", 3000));
    /* Another agency is not affected. */
    s_publish_ok(pop, 1);
    it_publish_many(pop, 2, 50, 16, NULL);
    /* A new connection with the revoked key is refused at the handshake. */
    s_handshake_refused(f, TAX);
    assert_true(it_log_contains(f, "event=handshake_refused reason=revoked agency=" TAX, 3000));
    s_publish_ok(pop, 52);
    /* The refusals were counted. */
    assert_int_equal(harness_stop(f->h), 0);
    assert_true(it_log_contains(f, "key_refused=", 1000));
    assert_false(it_log_contains(f, "key_refused=0 ", 100));

    /* Revoking again changes nothing and says so. */
    s_cli(f, "revoke --agency " TAX " --all", 0);
    s_cli(f, "revoke --agency nobody --all", 1);
}

/* A subscriber that only listens: once its key is revoked and the hub
 * reloads, deliveries stop within about a second, without it sending
 * anything, and the hub logs why. */
static void test_revoke_stops_listener(void **state)
{
    it_fix_t *f = *state;
    it_start(f, NULL);
    civ_client_t *tax = it_client(f, TAX, 5000);
    civ_client_t *pop = it_client(f, POP, 5000);
    const char *all[] = {"*"};
    assert_int_equal(civ_subscribe(tax, "listen", all, 1, it_from_first(), 1024), CIV_OK);
    s_publish_ok(pop, 0);
    civ_delivery_t *d = NULL;
    assert_int_equal(civ_next(tax, &d, 5000), CIV_OK);
    civ_delivery_destroy(&d);

    keyfile_t kf;
    s_read_entry(f, TAX, &kf);
    kf.keys[0].revoked_at = (int64_t)time(NULL);
    snprintf(kf.keys[0].reason, sizeof kf.keys[0].reason, "test");
    s_write_entry(f, &kf);
    s_reload(f);
    assert_true(it_log_contains(f, "subscription=listen reason=key_no_longer_valid", 5000));

    /* Published after the session was closed: never delivered to it. */
    it_publish_many(pop, 1, 20, 16, NULL);
    int got = 0;
    int64_t until = it_mono_ms() + 1500;
    while (it_mono_ms() < until) {
        if (civ_next(tax, &d, 200) == CIV_OK && d) {
            got++;
            civ_delivery_destroy(&d);
        }
    }
    assert_int_equal(got, 0);
}

/* ---- rotate --------------------------------------------------------------------- */

static void test_rotate(void **state)
{
    it_fix_t *f = *state;
    it_start(f, NULL);
    civ_client_t *old = it_client(f, TAX, 5000);
    civ_client_t *pop = it_client(f, POP, 5000);
    s_publish_ok(old, 0);

    /* The agency's new key pair, made in a folder of its own. */
    char newdir[512], newkey[600], newpub[600], err[600];
    snprintf(newdir, sizeof newdir, "%s/newkeys", harness_dir(f->h));
    assert_int_equal(keyfile_generate(newdir, TAX, TAX, err, sizeof err), KEYFILE_OK);
    snprintf(newkey, sizeof newkey, "%s/%s.key", newdir, TAX);
    snprintf(newpub, sizeof newpub, "%s/%s.pub", newdir, TAX);

    keyfile_t kf;
    char args[1024];
    snprintf(args, sizeof args, "rotate --agency " TAX " --key-file '%s' --overlap-days 1", newpub);
    if (s_cli(f, args, 0)) {
        s_cli(f, args, 1); /* the same key twice: refused */
        s_read_entry(f, TAX, &kf);
        assert_int_equal(kf.n_keys, 2);
        assert_true(kf.keys[0].not_after <= (int64_t)time(NULL) + 86400);
    } else {
        keyfile_t fresh;
        assert_int_equal(keyfile_read(newpub, &fresh, err, sizeof err), KEYFILE_OK);
        s_read_entry(f, TAX, &kf);
        kf.keys[1] = (keyfile_key_t){.not_after = KEYFILE_FOREVER, .revoked_at = KEYFILE_FOREVER};
        snprintf(kf.keys[1].z85, sizeof kf.keys[1].z85, "%s", fresh.curve[0]);
        kf.n_keys = 2;
    }
    /* Shorten the overlap to a few seconds, for the test's sake. */
    s_read_entry(f, TAX, &kf);
    int64_t not_after = (int64_t)time(NULL) + 4;
    kf.keys[0].not_after = not_after;
    s_write_entry(f, &kf);
    char old_prefix[9];
    snprintf(old_prefix, sizeof old_prefix, "%.8s", kf.keys[0].z85);
    s_reload(f);

    /* During the overlap both keys work, on the old connection and a new one. */
    civ_client_t *fresh = s_client_with_key(f, newkey);
    s_publish_ok(old, 1);
    s_publish_ok(fresh, 2);
    /* The expiring key is in the log and in the agency's status. */
    char needle[128];
    snprintf(needle, sizeof needle, "event=key_expiring agency=" TAX " key=%s", old_prefix);
    assert_true(it_log_contains(f, needle, 3000));
    civ_status_t *st = NULL;
    assert_int_equal(civ_status(fresh, &st), CIV_OK);
    assert_int_equal(st->n_warnings, 1);
    assert_non_null(strstr(st->warnings[0], old_prefix));
    civ_status_destroy(&st);

    /* After the not-after: the old key's live connection is refused ... */
    while ((int64_t)time(NULL) <= not_after)
        it_sleep_ms(100);
    s_publish_refused(old, 3, "key expired");
    /* ... and so is a new handshake with it; the new key goes on. */
    s_handshake_refused(f, TAX);
    assert_true(it_log_contains(f, "event=handshake_refused reason=expired agency=" TAX, 3000));
    s_publish_ok(fresh, 4);
    s_publish_ok(pop, 0);
    assert_int_equal(civ_status(fresh, &st), CIV_OK);
    assert_int_equal(st->n_warnings, 0); /* an expired key warns no more */
    civ_status_destroy(&st);
}

/* ---- expiry warning ------------------------------------------------------------- */

static void test_expiry_warning(void **state)
{
    it_fix_t *f = *state;
    keyfile_t kf;
    s_read_entry(f, POP, &kf);
    int64_t now = (int64_t)time(NULL);
    kf.keys[0].not_after = now + 10 * 86400 + 3600;
    s_write_entry(f, &kf);
    char prefix[9];
    snprintf(prefix, sizeof prefix, "%.8s", kf.keys[0].z85);
    const char *const extra[] = {"--key-expiry-warn-days", "30", NULL};
    it_start(f, extra);

    char needle[160];
    snprintf(needle, sizeof needle, "event=key_expiring agency=" POP " key=%s not_after=", prefix);
    assert_true(it_log_contains(f, needle, 3000));
    assert_true(it_log_contains(f, " days=10", 100));

    civ_client_t *pop = it_client(f, POP, 5000);
    civ_client_t *tax = it_client(f, TAX, 5000);
    civ_status_t *st = NULL;
    assert_int_equal(civ_status(pop, &st), CIV_OK);
    assert_int_equal(st->n_warnings, 1);
    assert_non_null(strstr(st->warnings[0], prefix));
    assert_non_null(strstr(st->warnings[0], "(in 10 days)"));
    civ_status_destroy(&st);
    /* Only the calling agency's keys. */
    assert_int_equal(civ_status(tax, &st), CIV_OK);
    assert_int_equal(st->n_warnings, 0);
    civ_status_destroy(&st);
    s_publish_ok(pop, 0); /* still valid */

    const char *cli = getenv("CIVIBUS_CLI");
    if (cli && cli[0]) {
        char cmd[2048];
        snprintf(cmd, sizeof cmd,
                 "'%s' status --json --hub '%s' --hub-key '%s' --key '%s' | grep -q '\"warnings\":\\[\"key '",
                 cli, harness_endpoint(f->h), harness_hub_pub(f->h), harness_key(f->h, POP));
        assert_int_equal(harness_sh(cmd), 0);
    }

    /* A warning window of 0 days warns of nothing. */
    assert_int_equal(harness_stop(f->h), 0);
    const char *const off[] = {"--key-expiry-warn-days", "0", NULL};
    it_drop(f, &pop);
    it_start(f, off);
    pop = it_client(f, POP, 5000);
    assert_int_equal(civ_status(pop, &st), CIV_OK);
    assert_int_equal(st->n_warnings, 0);
    civ_status_destroy(&st);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_setup_teardown(test_revoke, s_setup, s_teardown),
        cmocka_unit_test_setup_teardown(test_revoke_stops_listener, s_setup, s_teardown),
        cmocka_unit_test_setup_teardown(test_rotate, s_setup, s_teardown),
        cmocka_unit_test_setup_teardown(test_expiry_warning, s_setup, s_teardown),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
