/* test_refusals - what the hub refuses, and that refusing costs others nothing.
 *
 * An unregistered key gets no service at all; a registered agency cannot
 * publish as another; oversize events, undecodable bytes, multi-frame
 * messages and unknown protocol versions get their error code while the
 * connection (and other publishers) keep working; a consumer that never
 * consumes holds up neither publishers nor other consumers. The cases the SDK
 * cannot produce are sent from a raw CURVE DEALER (it_raw_*).
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include "itest.h"

#define A "agency-a"
#define B "agency-b"
#define C "agency-c"
#define ROGUE "rogue-agency"

static const char *const s_agencies[] = {A, B, C, NULL};
static const char *const s_flags[] = {"--no-sync", NULL};

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

/* The next hub message on r, which must be of body `want`. */
static Civibus__V1__HubMessage *s_raw_expect(it_raw_t *r, Civibus__V1__HubMessage__BodyCase want, int timeout_ms)
{
    Civibus__V1__HubMessage *m = it_raw_recv(r, timeout_ms);
    if (!m)
        fail_msg("no answer from the hub within %d ms (expected body %d)", timeout_ms, (int)want);
    if (m->body_case != want) {
        int got = (int)m->body_case;
        int code = m->body_case == CIVIBUS__V1__HUB_MESSAGE__BODY_ERROR ? (int)m->error->code : -1;
        it_hub_msg_free(&m);
        fail_msg("expected hub message body %d, got body %d (error code %d)", (int)want, got, code);
    }
    assert_int_equal(m->version, 1);
    return m;
}

static void s_raw_expect_error(it_raw_t *r, Civibus__V1__ErrorCode code)
{
    Civibus__V1__HubMessage *m = s_raw_expect(r, CIVIBUS__V1__HUB_MESSAGE__BODY_ERROR, 5000);
    if (m->error->code != code) {
        int got = (int)m->error->code;
        it_hub_msg_free(&m);
        fail_msg("expected error code %d, got %d", (int)code, got);
    }
    assert_true(m->error->reason && m->error->reason[0]);
    it_hub_msg_free(&m);
}

static void s_raw_expect_pong(it_raw_t *r, uint64_t request_id, uint64_t last_seq)
{
    Civibus__V1__HubMessage *m = s_raw_expect(r, CIVIBUS__V1__HUB_MESSAGE__BODY_PONG, 5000);
    assert_int_equal(m->pong->request_id, request_id);
    assert_int_equal(m->pong->last_seq, last_seq);
    it_hub_msg_free(&m);
}

/* A publish of one event from a raw socket, answered by a PublishReply with
 * one result. Returns the result's code and fills *seq. */
static int s_raw_publish_one(it_raw_t *r, uint64_t request_id, const char *source, const char *event_id,
                             uint64_t *seq)
{
    Civibus__V1__ServiceEvent ev = CIVIBUS__V1__SERVICE_EVENT__INIT;
    ev.event_id = (char *)event_id;
    ev.source = (char *)source;
    ev.type = "population.birth.registered";
    ev.occurred_at = IT_T0;
    Civibus__V1__ServiceEvent *evs[1] = {&ev};
    assert_int_equal(it_raw_publish(r, request_id, evs, 1), 0);
    Civibus__V1__HubMessage *m = s_raw_expect(r, CIVIBUS__V1__HUB_MESSAGE__BODY_PUBLISH_REPLY, 5000);
    assert_int_equal(m->publish_reply->request_id, request_id);
    assert_int_equal(m->publish_reply->n_results, 1);
    const Civibus__V1__PublishResult *res = m->publish_reply->results[0];
    assert_int_equal(res->index, 0);
    assert_string_equal(res->event_id, event_id);
    int code = (int)res->code;
    *seq = res->seq;
    if (code != 0)
        assert_true(res->reason && res->reason[0]);
    it_hub_msg_free(&m);
    return code;
}

/* ---- an unregistered key ------------------------------------------------------ */

static void test_unregistered_key(void **state)
{
    it_fix_t *f = *state;
    assert_int_equal(harness_add_outsider(f->h, ROGUE), 0);
    it_start(f, s_flags);
    civ_client_t *rogue = it_client(f, ROGUE, 1500);

    civ_event_t ev = {.event_id = "rogue-1", .type = "population.birth.registered", .payload = "x", .payload_len = 1};
    civ_ack_t ack;
    memset(&ack, 0, sizeof ack);
    int64_t t0 = it_mono_ms();
    int rc = civ_publish(rogue, &ev, &ack);
    assert_true(rc == CIV_E_NOT_AUTHORISED || rc == CIV_E_TIMEOUT);
    assert_true(it_mono_ms() - t0 < 5000); /* bounded by the client's timeout */
    uint64_t token;
    rc = civ_publish_send(rogue, &ev, &token);
    if (rc == CIV_OK) {
        rc = civ_publish_recv(rogue, &ack, 1500);
        assert_true(rc != CIV_OK || ack.error != CIV_OK);
    }
    const char *all[] = {"*"};
    rc = civ_subscribe(rogue, "spy", all, 1, it_from_first(), 16);
    assert_true(rc == CIV_E_NOT_AUTHORISED || rc == CIV_E_TIMEOUT);
    uint64_t last = 0;
    rc = civ_ping(rogue, &last);
    assert_true(rc == CIV_E_NOT_AUTHORISED || rc == CIV_E_TIMEOUT);
    civ_error_t err = {0};
    civ_replay_t *r = civ_replay_open(rogue, it_from_first(), 0, &err);
    if (r) {
        civ_delivery_t *d = NULL;
        rc = civ_replay_next(r, &d, 1500);
        civ_delivery_destroy(&d);
        civ_replay_destroy(&r);
        assert_int_not_equal(rc, CIV_OK);
    }

    assert_true(it_log_contains(f, "handshake_refused", 3000));
    /* Nothing got into the log, and the rogue holds no subscription. */
    civ_client_t *ca = it_client(f, A, 5000);
    assert_int_equal(it_last_seq(ca), 0);
    civ_status_t *st = NULL;
    assert_int_equal(civ_status(ca, &st), CIV_OK);
    assert_int_equal(st->last_seq, 0);
    for (size_t i = 0; i < st->n_subscriptions; i++)
        assert_string_not_equal(st->subscriptions[i].agency, ROGUE);
    civ_status_destroy(&st);
    /* A raw socket with the rogue key gets no answer either. */
    it_raw_t *raw = it_raw(f, ROGUE);
    assert_int_equal(it_raw_ping(raw, 1), 0);
    Civibus__V1__HubMessage *m = it_raw_recv(raw, 1500);
    if (m) {
        it_hub_msg_free(&m);
        fail_msg("the hub answered an unregistered key");
    }
    /* The registered agencies are served as usual. */
    civ_event_t ok = {.event_id = "a-1", .type = "population.birth.registered", .payload = "x", .payload_len = 1};
    assert_int_equal(civ_publish(ca, &ok, &ack), CIV_OK);
    assert_int_equal(ack.error, CIV_OK);
    assert_int_equal(ack.seq, 1);
}

/* ---- a forged source -------------------------------------------------------------- */

static void test_forged_source(void **state)
{
    it_fix_t *f = *state;
    it_start(f, s_flags);
    it_raw_t *raw = it_raw(f, A);
    uint64_t seq = 99;
    assert_int_equal(s_raw_publish_one(raw, 7, B, "forged-1", &seq), CIVIBUS__V1__ERROR_CODE__NOT_AUTHORISED);
    assert_int_equal(seq, 0);
    /* An unregistered agency id is not better. */
    assert_int_equal(s_raw_publish_one(raw, 8, "nobody", "forged-2", &seq), CIVIBUS__V1__ERROR_CODE__NOT_AUTHORISED);
    assert_int_equal(seq, 0);
    assert_int_equal(it_raw_ping(raw, 9), 0);
    s_raw_expect_pong(raw, 9, 0);
    /* The connection keeps working for the honest case. */
    assert_int_equal(s_raw_publish_one(raw, 10, A, "honest-1", &seq), CIVIBUS__V1__ERROR_CODE__OK);
    assert_int_equal(seq, 1);

    /* One Publish with a forged event between two honest ones: only the
     * forged one is refused. */
    Civibus__V1__ServiceEvent e1 = CIVIBUS__V1__SERVICE_EVENT__INIT, e2 = CIVIBUS__V1__SERVICE_EVENT__INIT,
                              e3 = CIVIBUS__V1__SERVICE_EVENT__INIT;
    e1.event_id = "mix-1";
    e1.source = A;
    e1.type = "tax.return.filed";
    e2 = e1;
    e2.event_id = "mix-2";
    e2.source = C;
    e3 = e1;
    e3.event_id = "mix-3";
    Civibus__V1__ServiceEvent *evs[3] = {&e1, &e2, &e3};
    assert_int_equal(it_raw_publish(raw, 11, evs, 3), 0);
    Civibus__V1__HubMessage *m = s_raw_expect(raw, CIVIBUS__V1__HUB_MESSAGE__BODY_PUBLISH_REPLY, 5000);
    assert_int_equal(m->publish_reply->request_id, 11);
    assert_int_equal(m->publish_reply->n_results, 3);
    Civibus__V1__PublishResult **res = m->publish_reply->results;
    assert_int_equal(res[0]->index, 0);
    assert_int_equal(res[0]->code, CIVIBUS__V1__ERROR_CODE__OK);
    assert_int_equal(res[0]->seq, 2);
    assert_int_equal(res[1]->index, 1);
    assert_int_equal(res[1]->code, CIVIBUS__V1__ERROR_CODE__NOT_AUTHORISED);
    assert_int_equal(res[1]->seq, 0);
    assert_string_equal(res[1]->event_id, "mix-2");
    assert_int_equal(res[2]->index, 2);
    assert_int_equal(res[2]->code, CIVIBUS__V1__ERROR_CODE__OK);
    assert_int_equal(res[2]->seq, 3);
    it_hub_msg_free(&m);

    /* The log holds the three honest events only, all from A. */
    civ_client_t *cb = it_client(f, B, 5000);
    assert_int_equal(it_last_seq(cb), 3);
    civ_error_t err = {0};
    civ_replay_t *r = civ_replay_open(cb, it_from_first(), 0, &err);
    assert_non_null(r);
    static const char *const ids[] = {"honest-1", "mix-1", "mix-3"};
    for (int i = 0; i < 3; i++) {
        civ_delivery_t *d = NULL;
        assert_int_equal(civ_replay_next(r, &d, 5000), CIV_OK);
        assert_non_null(d);
        assert_int_equal(d->seq, i + 1);
        assert_string_equal(d->event.source, A);
        assert_string_equal(d->event.event_id, ids[i]);
        civ_delivery_destroy(&d);
    }
    civ_delivery_t *d = NULL;
    assert_int_equal(civ_replay_next(r, &d, 5000), CIV_OK);
    assert_null(d);
    civ_replay_destroy(&r);
}

/* ---- oversize events ---------------------------------------------------------------- */

static void test_too_large(void **state)
{
    it_fix_t *f = *state;
    const char *flags[] = {"--no-sync", "--max-event-size", "4096", NULL};
    it_start(f, flags);
    civ_client_t *pa = it_client(f, A, 10000);
    civ_client_t *pb = it_client(f, B, 10000);
    static uint8_t big[8192];
    memset(big, 'B', sizeof big);

    /* Interleave: A sends big, small, big; B sends small ones meanwhile. */
    enum { ROUNDS = 20 };
    uint64_t tok_a[3 * ROUNDS], tok_b[ROUNDS];
    for (int i = 0; i < ROUNDS; i++) {
        char id[32];
        civ_event_t ev = {.event_id = id, .type = "population.birth.registered"};
        for (int k = 0; k < 3; k++) {
            snprintf(id, sizeof id, "a-%d-%d", i, k);
            ev.payload = big;
            ev.payload_len = k == 1 ? 100 : sizeof big;
            assert_int_equal(civ_publish_send(pa, &ev, &tok_a[3 * i + k]), CIV_OK);
        }
        assert_int_equal(civ_publish_flush(pa), CIV_OK);
        snprintf(id, sizeof id, "b-%d", i);
        ev.payload = "small";
        ev.payload_len = 5;
        assert_int_equal(civ_publish_send(pb, &ev, &tok_b[i]), CIV_OK);
        assert_int_equal(civ_publish_flush(pb), CIV_OK);
    }
    bool seen[2 * ROUNDS + 1] = {false};
    uint64_t prev_a = 0, prev_b = 0;
    for (int i = 0; i < 3 * ROUNDS; i++) {
        civ_ack_t ack;
        assert_int_equal(civ_publish_recv(pa, &ack, -1), CIV_OK);
        assert_int_equal(ack.token, tok_a[i]);
        if (i % 3 == 1) {
            if (ack.error != CIV_OK)
                fail_msg("small event %s of A refused: %s", ack.event_id, civ_error_name(ack.error));
            assert_true(ack.seq > prev_a && ack.seq <= 2 * ROUNDS && !seen[ack.seq]);
            seen[ack.seq] = true;
            prev_a = ack.seq;
        } else {
            if (ack.error != CIV_E_TOO_LARGE)
                fail_msg("8 KiB event %s: error %s (seq %" PRIu64 "), expected too_large", ack.event_id,
                         civ_error_name(ack.error), ack.seq);
            assert_int_equal(ack.seq, 0);
            assert_true(ack.reason[0] != '\0');
        }
    }
    for (int i = 0; i < ROUNDS; i++) {
        civ_ack_t ack;
        assert_int_equal(civ_publish_recv(pb, &ack, -1), CIV_OK);
        assert_int_equal(ack.token, tok_b[i]);
        if (ack.error != CIV_OK)
            fail_msg("B's event %d refused: %s", i, civ_error_name(ack.error));
        assert_true(ack.seq > prev_b && ack.seq <= 2 * ROUNDS && !seen[ack.seq]);
        seen[ack.seq] = true;
        prev_b = ack.seq;
    }
    for (int s = 1; s <= 2 * ROUNDS; s++)
        assert_true(seen[s]);
    assert_int_equal(it_last_seq(pb), 2 * ROUNDS);

    /* Just under and at the limit: the serialized event counts, so a payload
     * of 4096 bytes is over it and one of 3900 is under. */
    civ_event_t ev = {.event_id = "edge-under", .type = "population.birth.registered", .payload = big,
                      .payload_len = 3900};
    civ_ack_t ack;
    assert_int_equal(civ_publish(pa, &ev, &ack), CIV_OK);
    assert_int_equal(ack.error, CIV_OK);
    assert_int_equal(ack.seq, 2 * ROUNDS + 1);
    ev.event_id = "edge-over";
    ev.payload_len = 4096;
    assert_int_equal(civ_publish(pa, &ev, &ack), CIV_OK);
    assert_int_equal(ack.error, CIV_E_TOO_LARGE);
    assert_int_equal(it_last_seq(pa), 2 * ROUNDS + 1);
}

/* ---- undecodable, multi-frame and unknown-version messages ----------------------------- */

static void test_malformed_messages(void **state)
{
    it_fix_t *f = *state;
    it_start(f, s_flags);
    it_raw_t *raw = it_raw(f, A);
    uint64_t seq = 0;
    /* Warm up: the connection works. */
    assert_int_equal(it_raw_ping(raw, 1), 0);
    s_raw_expect_pong(raw, 1, 0);

    static const struct {
        const char *what;
        uint8_t bytes[8];
        size_t len;
    } bad[] = {
        {"truncated length-delimited field", {0x12, 0x50, 0x01}, 3},
        {"truncated varint", {0x08, 0xff}, 2},
        {"wire type 7", {0x0f, 0x01}, 2},
        {"field number 0", {0x00, 0x01}, 2},
        {"publish body truncated", {0x08, 0x01, 0x12, 0x04, 0x0a, 0x02}, 6},
    };
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
        assert_int_equal(it_raw_send_bytes(raw, bad[i].bytes, bad[i].len, false), 0);
        Civibus__V1__HubMessage *m = it_raw_recv(raw, 5000);
        if (!m)
            fail_msg("%s: no answer", bad[i].what);
        if (m->body_case != CIVIBUS__V1__HUB_MESSAGE__BODY_ERROR ||
            m->error->code != CIVIBUS__V1__ERROR_CODE__MALFORMED) {
            int body = (int)m->body_case;
            it_hub_msg_free(&m);
            fail_msg("%s: expected an Error malformed, got body %d", bad[i].what, body);
        }
        it_hub_msg_free(&m);
        /* ... and the connection goes on. */
        char id[32];
        snprintf(id, sizeof id, "after-bad-%zu", i);
        assert_int_equal(s_raw_publish_one(raw, 100 + i, A, id, &seq), CIVIBUS__V1__ERROR_CODE__OK);
        assert_int_equal(seq, i + 1);
    }
    /* An empty frame (a message of version 0 without a body) is refused
     * as malformed or as an unsupported version, either is fair. */
    assert_int_equal(it_raw_send_bytes(raw, "", 0, false), 0);
    Civibus__V1__HubMessage *em = s_raw_expect(raw, CIVIBUS__V1__HUB_MESSAGE__BODY_ERROR, 5000);
    assert_true(em->error->code == CIVIBUS__V1__ERROR_CODE__MALFORMED ||
                em->error->code == CIVIBUS__V1__ERROR_CODE__UNSUPPORTED_VERSION);
    it_hub_msg_free(&em);

    /* Two frames, each a valid ping on its own: one malformed error, no pong. */
    Civibus__V1__Ping ping = CIVIBUS__V1__PING__INIT;
    ping.request_id = 50;
    Civibus__V1__ClientMessage msg = CIVIBUS__V1__CLIENT_MESSAGE__INIT;
    msg.version = 1;
    msg.body_case = CIVIBUS__V1__CLIENT_MESSAGE__BODY_PING;
    msg.ping = &ping;
    assert_int_equal(it_raw_send(raw, &msg, true), 0);
    ping.request_id = 51;
    assert_int_equal(it_raw_send(raw, &msg, false), 0);
    s_raw_expect_error(raw, CIVIBUS__V1__ERROR_CODE__MALFORMED);
    assert_int_equal(it_raw_ping(raw, 52), 0);
    s_raw_expect_pong(raw, 52, 5);

    /* Protocol version 2: unsupported_version, whatever the body. */
    msg.version = 2;
    ping.request_id = 60;
    assert_int_equal(it_raw_send(raw, &msg, false), 0);
    s_raw_expect_error(raw, CIVIBUS__V1__ERROR_CODE__UNSUPPORTED_VERSION);
    Civibus__V1__ServiceEvent ev = CIVIBUS__V1__SERVICE_EVENT__INIT;
    ev.event_id = "v2-event";
    ev.source = A;
    ev.type = "population.birth.registered";
    ProtobufCBinaryData bin;
    bin.len = civibus__v1__service_event__get_packed_size(&ev);
    uint8_t evbuf[128];
    assert_true(bin.len <= sizeof evbuf);
    civibus__v1__service_event__pack(&ev, evbuf);
    bin.data = evbuf;
    Civibus__V1__Publish pub = CIVIBUS__V1__PUBLISH__INIT;
    pub.request_id = 61;
    pub.n_events = 1;
    pub.events = &bin;
    Civibus__V1__ClientMessage pmsg = CIVIBUS__V1__CLIENT_MESSAGE__INIT;
    pmsg.version = 2;
    pmsg.body_case = CIVIBUS__V1__CLIENT_MESSAGE__BODY_PUBLISH;
    pmsg.publish = &pub;
    assert_int_equal(it_raw_send(raw, &pmsg, false), 0);
    s_raw_expect_error(raw, CIVIBUS__V1__ERROR_CODE__UNSUPPORTED_VERSION);

    /* A valid message still works, and nothing refused reached the log. */
    assert_int_equal(s_raw_publish_one(raw, 200, A, "final", &seq), CIVIBUS__V1__ERROR_CODE__OK);
    assert_int_equal(seq, 6);
    assert_int_equal(it_raw_ping(raw, 201), 0);
    s_raw_expect_pong(raw, 201, 6);
    Civibus__V1__HubMessage *extra = it_raw_recv(raw, 300);
    if (extra) {
        int body = (int)extra->body_case;
        it_hub_msg_free(&extra);
        fail_msg("unexpected extra hub message (body %d)", body);
    }
    /* An event that decodes but breaks the field rules is malformed too. */
    assert_int_equal(s_raw_publish_one(raw, 202, A, "", &seq), CIVIBUS__V1__ERROR_CODE__MALFORMED);
    assert_int_equal(seq, 0);
    civ_client_t *cb = it_client(f, B, 5000);
    assert_int_equal(it_last_seq(cb), 6);
}

/* ---- a consumer that never consumes -------------------------------------------------------- */

#define N_SLOW 3000

static void test_stalled_consumer_costs_nothing(void **state)
{
    it_fix_t *f = *state;
    it_start(f, s_flags);
    civ_client_t *stalled = it_client(f, C, 5000);
    civ_client_t *reader = it_client(f, B, 10000);
    civ_client_t *pa = it_client(f, A, 10000);
    const char *all[] = {"*"};
    assert_int_equal(civ_subscribe(stalled, "stalled", all, 1, it_from_first(), 1), CIV_OK);
    assert_int_equal(civ_subscribe(reader, "reader", all, 1, it_from_first(), 128), CIV_OK);

    int64_t t0 = it_mono_ms();
    it_publish_many(pa, 0, N_SLOW, 2048, NULL);
    int64_t t_pub = it_mono_ms() - t0;
    civ_delivery_t **got = calloc(N_SLOW, sizeof *got);
    assert_non_null(got);
    it_receive(reader, "reader", got, N_SLOW, 20000, 500);
    int64_t t_all = it_mono_ms() - t0;
    for (size_t i = 0; i < N_SLOW; i++)
        it_ev_check(got[i], A, (int)i, i + 1);
    it_free_all(got, N_SLOW);
    free(got);
    print_message("published %d events in %" PRId64 " ms; the other consumer had them all after %" PRId64 " ms\n",
                  N_SLOW, t_pub, t_all);
    assert_true(t_pub < 20000);

    /* The stalled subscription holds at most its window: the hub reports one
     * event in flight and a cursor of 0. */
    civ_status_t *st = NULL;
    /* An agency sees its own subscriptions in the status: ask as C. */
    civ_client_t *observer = it_client(f, C, 5000);
    assert_int_equal(civ_status(observer, &st), CIV_OK);
    bool found = false;
    for (size_t i = 0; i < st->n_subscriptions; i++) {
        const civ_sub_status_t *s = &st->subscriptions[i];
        if (strcmp(s->agency, C) == 0 && strcmp(s->name, "stalled") == 0) {
            found = true;
            assert_true(s->connected);
            assert_int_equal(s->cursor, 0);
            assert_true(s->in_flight <= 1);
            assert_int_equal(s->credit, 0);
        }
    }
    civ_status_destroy(&st);
    assert_true(found);
    /* Woken up at last, it starts at the beginning, in order. */
    civ_delivery_t *few[3] = {0};
    it_receive(stalled, "stalled", few, 3, 5000, 0);
    for (int i = 0; i < 3; i++)
        it_ev_check(few[i], A, i, (uint64_t)i + 1);
    it_free_all(few, 3);
}

/* One Publish may not carry more than batch_max events: refused whole with
 * too_large and its request id, and the connection keeps working. A source
 * with a NUL inside ("agency-a\0x" would read as agency-a to protobuf-c) is
 * refused as malformed, not accepted as the authenticated agency. */
static void test_oversize_publish_and_hidden_nul(void **state)
{
    it_fix_t *f = *state;
    const char *flags[] = {"--no-sync", "--batch-max", "8", NULL};
    it_start(f, flags);
    it_raw_t *raw = it_raw(f, A);

    Civibus__V1__ServiceEvent evs[9];
    Civibus__V1__ServiceEvent *ptrs[9];
    char ids[9][24];
    for (int i = 0; i < 9; i++) {
        civibus__v1__service_event__init(&evs[i]);
        snprintf(ids[i], sizeof ids[i], "many-%d", i);
        evs[i].event_id = ids[i];
        evs[i].source = A;
        evs[i].type = "population.birth.registered";
        ptrs[i] = &evs[i];
    }
    assert_int_equal(it_raw_publish(raw, 77, ptrs, 9), 0);
    Civibus__V1__HubMessage *m = it_raw_recv(raw, 5000);
    assert_non_null(m);
    assert_int_equal(m->body_case, CIVIBUS__V1__HUB_MESSAGE__BODY_ERROR);
    assert_int_equal(m->error->code, CIVIBUS__V1__ERROR_CODE__TOO_LARGE);
    assert_int_equal(m->error->request_id, 77);
    it_hub_msg_free(&m);

    /* Eight fit. */
    assert_int_equal(it_raw_publish(raw, 78, ptrs, 8), 0);
    m = it_raw_recv(raw, 5000);
    assert_non_null(m);
    assert_int_equal(m->body_case, CIVIBUS__V1__HUB_MESSAGE__BODY_PUBLISH_REPLY);
    assert_int_equal(m->publish_reply->n_results, 8);
    for (size_t i = 0; i < 8; i++)
        assert_int_equal(m->publish_reply->results[i]->code, CIVIBUS__V1__ERROR_CODE__OK);
    it_hub_msg_free(&m);

    /* A source with a NUL hidden inside, written by hand: field 2, length 10. */
    static const uint8_t hidden[] = {0x0a, 0x03, 'n', 'u', 'l', 0x12, 0x0a, 'a', 'g', 'e', 'n', 'c',
                                     'y', '-', 'a', 0x00, 'x', 0x1a, 0x03, 'a', '.', 'b'};
    ProtobufCBinaryData bin = {sizeof hidden, (uint8_t *)hidden};
    Civibus__V1__Publish pub = CIVIBUS__V1__PUBLISH__INIT;
    pub.request_id = 79;
    pub.n_events = 1;
    pub.events = &bin;
    Civibus__V1__ClientMessage msg = CIVIBUS__V1__CLIENT_MESSAGE__INIT;
    msg.version = 1;
    msg.body_case = CIVIBUS__V1__CLIENT_MESSAGE__BODY_PUBLISH;
    msg.publish = &pub;
    assert_int_equal(it_raw_send(raw, &msg, false), 0);
    m = it_raw_recv(raw, 5000);
    assert_non_null(m);
    assert_int_equal(m->body_case, CIVIBUS__V1__HUB_MESSAGE__BODY_PUBLISH_REPLY);
    assert_int_equal(m->publish_reply->n_results, 1);
    assert_int_equal(m->publish_reply->results[0]->code, CIVIBUS__V1__ERROR_CODE__MALFORMED);
    it_hub_msg_free(&m);
    assert_true(it_log_contains(f, "code=too_large", 2000));
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_setup_teardown(test_unregistered_key, s_setup, s_teardown),
        cmocka_unit_test_setup_teardown(test_forged_source, s_setup, s_teardown),
        cmocka_unit_test_setup_teardown(test_too_large, s_setup, s_teardown),
        cmocka_unit_test_setup_teardown(test_malformed_messages, s_setup, s_teardown),
        cmocka_unit_test_setup_teardown(test_stalled_consumer_costs_nothing, s_setup, s_teardown),
        cmocka_unit_test_setup_teardown(test_oversize_publish_and_hidden_nul, s_setup, s_teardown),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
