/* test_signed - signed events end to end, against a real civibusd
 * (docs/SIGNING.md).
 *
 *   flow       a publisher with a signing key publishes batches of several
 *              sizes; the hub accepts them, a subscriber receives them and
 *              civ_verifier_check / civ_event_verify succeed on every one;
 *              an unsigned publisher still flows and reads as unsigned
 *   other key  events signed with another agency's valid key: bad_signature
 *   tampered   a payload changed under its original signature, and a
 *              tampered path: bad_signature; the untouched event passes
 *   partly bad one Publish of a signed batch in which some events have a
 *              wrong path or forged content: only those are refused, also
 *              after good events of the same batch; batches interleaved and
 *              out of order are accepted
 *   required   with --require-signatures an unsigned event is refused with
 *              bad_signature while signed events flow
 *   revoked    a signing key revoked in the registry: bad_signature after
 *              SIGHUP
 */
#include <setjmp.h>
#include <signal.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include <cmocka.h>

#include "crypto.h"
#include "evsign.h"
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

/* A client of agency signing with sign_key (NULL: unsigned). */
static civ_client_t *s_client(it_fix_t *f, const char *agency, const char *sign_key, unsigned batch)
{
    civ_options_t o = {.endpoint = harness_endpoint(f->h),
                       .hub_key_file = harness_hub_pub(f->h),
                       .key_file = harness_key(f->h, agency),
                       .timeout_ms = 5000,
                       .batch = batch,
                       .sign_key_file = sign_key};
    civ_error_t err = {0};
    civ_client_t *c = civ_client_new(&o, &err);
    if (!c)
        fail_msg("client %s: %s", agency, err.message);
    for (int i = 0; i < IT_MAX_CLIENTS; i++) {
        if (!f->clients[i]) {
            f->clients[i] = c;
            return c;
        }
    }
    fail_msg("too many clients");
    return NULL;
}

static char s_sign_path[1200];
static const char *s_sign(it_fix_t *f, const char *agency)
{
    snprintf(s_sign_path, sizeof s_sign_path, "%s", harness_sign_key(f->h, agency));
    return s_sign_path;
}

static void s_entry(it_fix_t *f, const char *agency, keyfile_t *kf)
{
    char path[512], err[600];
    snprintf(path, sizeof path, "%s/registry/%s.pub", harness_dir(f->h), agency);
    if (keyfile_read_entry(path, kf, err, sizeof err) != KEYFILE_OK)
        fail_msg("%s", err);
}

static void s_publish_expect(civ_client_t *c, int i, int want, const char *reason_part)
{
    it_ev_t e;
    it_ev_make(&e, civ_client_agency(c), i);
    civ_ack_t ack;
    assert_int_equal(civ_publish(c, &e.ev, &ack), CIV_OK);
    if (ack.error != want)
        fail_msg("event %d: %s (%s), wanted %s", i, civ_error_name(ack.error), ack.reason, civ_error_name(want));
    if (reason_part && !strstr(ack.reason, reason_part))
        fail_msg("reason '%s' lacks '%s'", ack.reason, reason_part);
}

static void test_flow(void **state)
{
    it_fix_t *f = *state;
    it_start(f, NULL);
    civ_client_t *sub = it_client(f, TAX, 5000);
    const char *all[] = {"*"};
    assert_int_equal(civ_subscribe(sub, "all", all, 1, it_from_first(), 0), CIV_OK);

    /* Batches of 5: 23 events give trees of 5 and one of 3 (or fewer, when
     * acks cut a batch early); civ_publish gives trees of one leaf. */
    civ_client_t *pop = s_client(f, POP, s_sign(f, POP), 5);
    it_publish_many(pop, 0, 23, 64, NULL);
    s_publish_expect(pop, 23, CIV_OK, NULL);
    civ_client_t *plain = s_client(f, TAX, NULL, 0);
    s_publish_expect(plain, 100, CIV_OK, NULL);

    civ_delivery_t *ds[25];
    it_receive(sub, "all", ds, 25, 10000, 0);
    civ_error_t err;
    char regdir[512];
    snprintf(regdir, sizeof regdir, "%s/registry", harness_dir(f->h));
    civ_verifier_t *v = civ_verifier_new(regdir, &err);
    if (!v)
        fail_msg("verifier: %s", err.message);
    keyfile_t pop_kf, tax_kf;
    s_entry(f, POP, &pop_kf);
    s_entry(f, TAX, &tax_kf);
    assert_int_equal(pop_kf.n_sign, 1);
    int signed_ok = 0, unsigned_seen = 0;
    for (int i = 0; i < 25; i++) {
        char why[256];
        int rc = civ_verifier_check(v, ds[i], why, sizeof why);
        if (strcmp(ds[i]->event.source, POP) == 0) {
            if (rc != CIV_OK)
                fail_msg("seq %" PRIu64 ": %s (%s)", ds[i]->seq, civ_error_name(rc), why);
            assert_int_equal(civ_event_verify(ds[i], pop_kf.sign[0].pub), CIV_OK);
            assert_int_equal(civ_event_verify(ds[i], tax_kf.sign[0].pub), CIV_E_UNKNOWN_KEY);
            int idx = it_ev_index(ds[i]->event.event_id, POP);
            assert_true(idx >= 0);
            it_ev_check(ds[i], POP, idx, ds[i]->seq);
            signed_ok++;
        } else {
            assert_int_equal(rc, CIV_E_UNSIGNED);
            unsigned_seen++;
        }
    }
    assert_int_equal(signed_ok, 24);
    assert_int_equal(unsigned_seen, 1);
    /* One byte of the delivered payload flipped: the subscriber notices. */
    uint8_t *raw = (uint8_t *)ds[0]->raw;
    raw[ds[0]->raw_len / 3] ^= 0x01;
    assert_int_not_equal(civ_verifier_check(v, ds[0], NULL, 0), CIV_OK);
    civ_verifier_destroy(&v);
    it_free_all(ds, 25);
}

static void test_other_agency_key(void **state)
{
    it_fix_t *f = *state;
    it_start(f, NULL);
    civ_client_t *pop = s_client(f, POP, s_sign(f, TAX), 0);
    s_publish_expect(pop, 1, CIV_E_BAD_SIGNATURE, "unknown signing key id");
    assert_true(it_log_contains(f, "code=bad_signature", 5000));
    /* The hub serves the honest publisher throughout. */
    civ_client_t *ok = s_client(f, POP, s_sign(f, POP), 0);
    s_publish_expect(ok, 2, CIV_OK, NULL);
}

/* Pack event i of POP, signed alone (a tree of one leaf) with POP's key. */
static void s_signed_event(it_fix_t *f, int i, Civibus__V1__ServiceEvent *ev, uint8_t sig[CRYPTO_SIG_LEN],
                           uint8_t key_id[CRYPTO_KEYID_LEN], uint8_t **e_bytes, size_t *e_len)
{
    it_ev_t e;
    it_ev_make(&e, POP, i);
    civibus__v1__service_event__init(ev);
    ev->event_id = strdup(e.event_id);
    ev->source = (char *)POP;
    ev->type = strdup(e.type);
    ev->occurred_at = e.ev.occurred_at;
    ev->payload.data = malloc(e.ev.payload_len);
    memcpy(ev->payload.data, e.ev.payload, e.ev.payload_len);
    ev->payload.len = e.ev.payload_len;
    *e_len = civibus__v1__service_event__get_packed_size(ev);
    *e_bytes = malloc(*e_len);
    civibus__v1__service_event__pack(ev, *e_bytes);
    uint8_t leaf[CRYPTO_SHA256_LEN];
    assert_int_equal(evsign_leaf(*e_bytes, *e_len, leaf), EVSIGN_OK);
    crypto_key_t *key = NULL;
    char err[256];
    assert_int_equal(crypto_key_read_secret(harness_sign_key(f->h, POP), &key, err, sizeof err), CRYPTO_OK);
    assert_int_equal(evsign_sign_root(key, leaf, sig), EVSIGN_OK); /* one leaf: the root is the leaf */
    crypto_key_id(key, key_id);
    crypto_key_destroy(&key);
    ev->sign_key_id.data = key_id;
    ev->sign_key_id.len = CRYPTO_KEYID_LEN;
    ev->batch_signature.data = sig;
    ev->batch_signature.len = CRYPTO_SIG_LEN;
    ev->leaf_count = 1;
}

static void s_event_free(Civibus__V1__ServiceEvent *ev, uint8_t *e_bytes)
{
    free(ev->event_id);
    free(ev->type);
    free(ev->payload.data);
    free(e_bytes);
}

/* Send one event raw and return its result code and reason. */
static int s_raw_one(it_raw_t *r, uint64_t rid, Civibus__V1__ServiceEvent *ev, char *reason, size_t len)
{
    Civibus__V1__ServiceEvent *evs[1] = {ev};
    assert_int_equal(it_raw_publish(r, rid, evs, 1), 0);
    Civibus__V1__HubMessage *m = it_raw_recv(r, 5000);
    assert_non_null(m);
    assert_int_equal(m->body_case, CIVIBUS__V1__HUB_MESSAGE__BODY_PUBLISH_REPLY);
    assert_int_equal(m->publish_reply->n_results, 1);
    int code = m->publish_reply->results[0]->code;
    snprintf(reason, len, "%s", m->publish_reply->results[0]->reason ? m->publish_reply->results[0]->reason : "");
    it_hub_msg_free(&m);
    return code;
}

static void test_tampered(void **state)
{
    it_fix_t *f = *state;
    it_start(f, NULL);
    it_raw_t *r = it_raw(f, POP);
    Civibus__V1__ServiceEvent ev;
    uint8_t sig[CRYPTO_SIG_LEN], key_id[CRYPTO_KEYID_LEN], *e_bytes;
    size_t e_len;
    char reason[256];
    s_signed_event(f, 7, &ev, sig, key_id, &e_bytes, &e_len);

    /* The payload changed under the original signature. */
    ev.payload.data[0] ^= 0x20;
    assert_int_equal(s_raw_one(r, 1, &ev, reason, sizeof reason), CIVIBUS__V1__ERROR_CODE__BAD_SIGNATURE);
    assert_non_null(strstr(reason, "bad signature"));
    ev.payload.data[0] ^= 0x20;
    /* A path where a tree of one has none. */
    uint8_t junk[CRYPTO_SHA256_LEN] = {1};
    ProtobufCBinaryData path[1] = {{.len = sizeof junk, .data = junk}};
    ev.n_path = 1;
    ev.path = path;
    assert_int_equal(s_raw_one(r, 2, &ev, reason, sizeof reason), CIVIBUS__V1__ERROR_CODE__BAD_SIGNATURE);
    assert_non_null(strstr(reason, "bad path"));
    ev.n_path = 0;
    ev.path = NULL;
    /* A truncated signature. */
    ev.batch_signature.len = 63;
    assert_int_equal(s_raw_one(r, 3, &ev, reason, sizeof reason), CIVIBUS__V1__ERROR_CODE__BAD_SIGNATURE);
    ev.batch_signature.len = CRYPTO_SIG_LEN;
    /* Untouched, it is accepted. */
    assert_int_equal(s_raw_one(r, 4, &ev, reason, sizeof reason), CIVIBUS__V1__ERROR_CODE__OK);
    s_event_free(&ev, e_bytes);
}

/* A batch of n events of POP signed as one tree, as the SDK signs it, each
 * event with its own signature fields; free with s_batch_free. */
typedef struct {
    size_t n;
    Civibus__V1__ServiceEvent ev[16];
    uint8_t *e_bytes[16];
    uint8_t path[16][EVSIGN_MAX_DEPTH][CRYPTO_SHA256_LEN];
    ProtobufCBinaryData items[16][EVSIGN_MAX_DEPTH];
    uint8_t sig[CRYPTO_SIG_LEN], key_id[CRYPTO_KEYID_LEN];
} s_batch_t;

static void s_batch_make(it_fix_t *f, int first, size_t n, s_batch_t *b)
{
    memset(b, 0, sizeof *b);
    b->n = n;
    uint8_t leaves[16][CRYPTO_SHA256_LEN];
    crypto_key_t *key = NULL;
    char err[256];
    assert_int_equal(crypto_key_read_secret(harness_sign_key(f->h, POP), &key, err, sizeof err), CRYPTO_OK);
    for (size_t i = 0; i < n; i++) {
        uint8_t unused_sig[CRYPTO_SIG_LEN], unused_id[CRYPTO_KEYID_LEN];
        size_t len;
        s_signed_event(f, first + (int)i, &b->ev[i], unused_sig, unused_id, &b->e_bytes[i], &len);
        assert_int_equal(evsign_leaf(b->e_bytes[i], len, leaves[i]), EVSIGN_OK);
    }
    evsign_tree_t *t = evsign_tree_new((const uint8_t(*)[CRYPTO_SHA256_LEN])leaves, n);
    assert_non_null(t);
    assert_int_equal(evsign_sign_root(key, evsign_tree_root(t), b->sig), EVSIGN_OK);
    crypto_key_id(key, b->key_id);
    crypto_key_destroy(&key);
    for (size_t i = 0; i < n; i++) {
        Civibus__V1__ServiceEvent *ev = &b->ev[i];
        ev->n_path = evsign_tree_path(t, i, b->path[i]);
        for (size_t p = 0; p < ev->n_path; p++)
            b->items[i][p] = (ProtobufCBinaryData){.len = CRYPTO_SHA256_LEN, .data = b->path[i][p]};
        ev->path = b->items[i];
        ev->sign_key_id.data = b->key_id;
        ev->batch_signature.data = b->sig;
        ev->leaf_index = (uint32_t)i;
        ev->leaf_count = (uint32_t)n;
    }
    evsign_tree_destroy(&t);
}

static void s_batch_free(s_batch_t *b)
{
    for (size_t i = 0; i < b->n; i++)
        s_event_free(&b->ev[i], b->e_bytes[i]);
}

/* Publish n events raw in one Publish; check each result against want
 * (an ErrorCode) and, for OK, against dup. */
static void s_raw_expect(it_raw_t *r, uint64_t rid, Civibus__V1__ServiceEvent **evs, size_t n, const int *want,
                         const bool *dup)
{
    assert_int_equal(it_raw_publish(r, rid, evs, n), 0);
    Civibus__V1__HubMessage *m = it_raw_recv(r, 10000);
    assert_non_null(m);
    assert_int_equal(m->body_case, CIVIBUS__V1__HUB_MESSAGE__BODY_PUBLISH_REPLY);
    assert_int_equal(m->publish_reply->n_results, n);
    for (size_t i = 0; i < n; i++) {
        const Civibus__V1__PublishResult *res = m->publish_reply->results[i];
        assert_int_equal(res->index, i);
        if ((int)res->code != want[i])
            fail_msg("publish %" PRIu64 " event %zu: code %d (%s), wanted %d", rid, i, res->code,
                     res->reason ? res->reason : "", want[i]);
        if (want[i] == CIVIBUS__V1__ERROR_CODE__OK) {
            assert_true(res->seq > 0);
            if (res->duplicate != dup[i])
                fail_msg("publish %" PRIu64 " event %zu: duplicate %d, wanted %d", rid, i, res->duplicate, dup[i]);
        } else {
            assert_non_null(strstr(res->reason, "bad signature"));
        }
    }
    it_hub_msg_free(&m);
}

/* The hub checks a batch with one signature verification and reuses what it
 * proved for the batch's other events: an event whose path or content is
 * wrong is still refused, alone, wherever it stands in the Publish. */
static void test_batch_partly_bad(void **state)
{
    it_fix_t *f = *state;
    it_start(f, NULL);
    it_raw_t *r = it_raw(f, POP);
    enum { OK = CIVIBUS__V1__ERROR_CODE__OK, BAD = CIVIBUS__V1__ERROR_CODE__BAD_SIGNATURE };
    s_batch_t *a = malloc(sizeof *a), *b = malloc(sizeof *b);
    s_batch_make(f, 100, 7, a);
    s_batch_make(f, 200, 13, b);

    /* In order; event 3's first path hash (its sibling leaf) and event 5's
     * last (near the root) are wrong. The others are accepted. */
    a->path[3][0][0] ^= 0x01;
    a->path[5][a->ev[5].n_path - 1][31] ^= 0x80;
    Civibus__V1__ServiceEvent *evs[16];
    for (size_t i = 0; i < 7; i++)
        evs[i] = &a->ev[i];
    const int want1[] = {OK, OK, OK, BAD, OK, BAD, OK};
    const bool no_dup[16] = {false};
    s_raw_expect(r, 1, evs, 7, want1, no_dup);
    a->path[3][0][0] ^= 0x01;
    a->path[5][a->ev[5].n_path - 1][31] ^= 0x80;

    /* Forgeries after good events of the same batch: event 4's content
     * changed under its fields, and a new event carrying event 5's fields.
     * Events 0 and 6 again are duplicates; events 3 and 5, right now, pass. */
    it_ev_t extra;
    it_ev_make(&extra, POP, 150);
    Civibus__V1__ServiceEvent forged = a->ev[5];
    forged.event_id = extra.event_id;
    a->ev[4].occurred_at += 1;
    Civibus__V1__ServiceEvent *evs2[] = {&a->ev[0], &a->ev[4], &a->ev[3], &forged, &a->ev[6], &a->ev[5]};
    const int want2[] = {OK, BAD, OK, BAD, OK, OK};
    const bool dup2[] = {true, false, false, false, true, false};
    s_raw_expect(r, 2, evs2, 6, want2, dup2);
    a->ev[4].occurred_at -= 1;

    /* Two batches interleaved, one shuffled, in one Publish: all accepted. */
    static const int order[] = {12, 0, 7, 3, 11, 1, 5, 9, 2, 10, 4, 8, 6};
    size_t n = 0;
    const int want3[16] = {OK, OK, OK, OK, OK, OK, OK, OK, OK, OK, OK, OK, OK, OK, OK, OK};
    bool dup3[16] = {false};
    for (size_t i = 0; i < 13; i++) {
        evs[n++] = &b->ev[order[i]];
        if (i == 4 || i == 9) {
            dup3[n] = true;
            evs[n++] = &a->ev[i == 4 ? 1 : 2];
        }
    }
    s_raw_expect(r, 3, evs, n, want3, dup3);
    /* Event 4 restored passes its check again (a duplicate of Publish 1). */
    Civibus__V1__ServiceEvent *evs4[] = {&a->ev[4]};
    const bool dup4[] = {true};
    s_raw_expect(r, 4, evs4, 1, want3, dup4);
    s_batch_free(a);
    s_batch_free(b);
    free(a);
    free(b);
}

static void test_required(void **state)
{
    it_fix_t *f = *state;
    const char *const req[] = {"--require-signatures", NULL};
    it_start(f, req);
    civ_client_t *plain = s_client(f, POP, NULL, 0);
    s_publish_expect(plain, 1, CIV_E_BAD_SIGNATURE, "unsigned event");
    civ_client_t *pop = s_client(f, POP, s_sign(f, POP), 0);
    s_publish_expect(pop, 2, CIV_OK, NULL);
    it_publish_many(pop, 10, 40, 64, NULL);
}

static void test_revoked(void **state)
{
    it_fix_t *f = *state;
    it_start(f, NULL);
    civ_client_t *pop = s_client(f, POP, s_sign(f, POP), 0);
    s_publish_expect(pop, 1, CIV_OK, NULL);
    keyfile_t kf;
    s_entry(f, POP, &kf);
    kf.sign[0].revoked_at = (int64_t)time(NULL) - 1;
    snprintf(kf.sign[0].reason, sizeof kf.sign[0].reason, "key lost");
    char path[512], err[600];
    snprintf(path, sizeof path, "%s/registry/%s.pub", harness_dir(f->h), POP);
    if (keyfile_write_entry(path, &kf, false, err, sizeof err) != KEYFILE_OK)
        fail_msg("%s", err);
    assert_int_equal(kill(harness_pid(f->h), SIGHUP), 0);
    if (!it_log_contains(f, "event=registry_reloaded", 5000))
        fail_msg("the hub did not reload its registry");
    s_publish_expect(pop, 2, CIV_E_BAD_SIGNATURE, "revoked");
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_setup_teardown(test_flow, s_setup, s_teardown),
        cmocka_unit_test_setup_teardown(test_other_agency_key, s_setup, s_teardown),
        cmocka_unit_test_setup_teardown(test_tampered, s_setup, s_teardown),
        cmocka_unit_test_setup_teardown(test_batch_partly_bad, s_setup, s_teardown),
        cmocka_unit_test_setup_teardown(test_required, s_setup, s_teardown),
        cmocka_unit_test_setup_teardown(test_revoked, s_setup, s_teardown),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
