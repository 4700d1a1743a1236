/* itest - helpers shared by the integration tests (header only).
 *
 * The Makefile links each tests/integration/test_*.c alone with the harness
 * and libcivibus, so what the tests share lives here as static inline
 * functions. Included after <cmocka.h>; the helpers assert with cmocka.
 *
 *   fixture   a harness with agencies, the clients and raw sockets a test
 *             opened; the teardown destroys all of them and kills the hub,
 *             whatever happened (a failed assert longjmps past the test's own
 *             clean-up).
 *   events    it_ev_make builds event i of an agency from its number alone,
 *             so a received event can be checked field by field and byte for
 *             byte (it_ev_check) without keeping what was sent.
 *   publish   it_publish_many: pipelined publishing with bounded waits.
 *   metrics   it_prom_sample reads one sample out of /metrics.
 *   raw       a CURVE DEALER speaking the protocol without the SDK, for the
 *             cases the SDK never produces (forged source, bad bytes).
 *
 * Every loop is bounded by a count and a deadline.
 */
#ifndef CIVIBUS_ITEST_H
#define CIVIBUS_ITEST_H

#include <inttypes.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <zmq.h>

#include "civibus.h"
#include "civibus.pb-c.h"
#include "harness.h"
#include "keyfile.h"

#define IT_MAX_CLIENTS 16
#define IT_MAX_RAW 8

/* ---- time ------------------------------------------------------------------ */

/* Wall clock, µs since the Unix epoch (the same clock as the hub's received_at). */
static inline int64_t it_wall_us(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_REALTIME, &ts);
    return (int64_t)ts.tv_sec * 1000000 + ts.tv_nsec / 1000;
}

static inline int64_t it_mono_ms(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

static inline void it_sleep_ms(int ms)
{
    struct timespec ts = {.tv_sec = ms / 1000, .tv_nsec = (long)(ms % 1000) * 1000000L};
    nanosleep(&ts, NULL);
}

/* ---- monitoring endpoint ------------------------------------------------------ */

/* The value of the sample `series` (exact name and labels) in the
 * Prometheus text of /metrics, or -1 when it is absent. */
static inline double it_prom_sample(const char *text, const char *series)
{
    size_t n = strlen(series);
    for (const char *p = text; p && *p; p = strchr(p, '\n') ? strchr(p, '\n') + 1 : NULL) {
        if (strncmp(p, series, n) == 0 && p[n] == ' ')
            return strtod(p + n + 1, NULL);
    }
    return -1;
}

/* ---- raw protocol socket ------------------------------------------------------ */

typedef struct {
    void *ctx;
    void *sock;
    void *mon; /* PAIR receiving the socket's handshake events */
} it_raw_t;

static inline void it_raw_close(it_raw_t **self_p)
{
    it_raw_t *self = self_p ? *self_p : NULL;
    if (!self)
        return;
    if (self->mon) {
        zmq_socket_monitor(self->sock, NULL, 0);
        zmq_close(self->mon);
    }
    if (self->sock)
        zmq_close(self->sock);
    if (self->ctx)
        zmq_ctx_term(self->ctx);
    free(self);
    *self_p = NULL;
}

/* A CURVE DEALER connected to the hub with agency's keys, or NULL.
 * rcvhwm and rcvbuf (0: libzmq's defaults) are set before it connects: small
 * values make a peer that reads slowly, or not at all, for the hub. */
static inline it_raw_t *it_raw_new_opts(harness_t *h, const char *agency, int rcvhwm, int rcvbuf)
{
    keyfile_t hub, mine;
    char err[512];
    const char *key = harness_key(h, agency);
    if (!key || keyfile_read(harness_hub_pub(h), &hub, err, sizeof err) != KEYFILE_OK ||
        keyfile_read(key, &mine, err, sizeof err) != KEYFILE_OK) {
        fprintf(stderr, "itest: raw %s: cannot read keys\n", agency);
        return NULL;
    }
    it_raw_t *self = calloc(1, sizeof *self);
    if (!self)
        return NULL;
    self->ctx = zmq_ctx_new();
    self->sock = self->ctx ? zmq_socket(self->ctx, ZMQ_DEALER) : NULL;
    int linger = 0;
    if (self->sock && rcvhwm)
        zmq_setsockopt(self->sock, ZMQ_RCVHWM, &rcvhwm, sizeof rcvhwm);
    if (self->sock && rcvbuf)
        zmq_setsockopt(self->sock, ZMQ_RCVBUF, &rcvbuf, sizeof rcvbuf);
    if (self->sock &&
        zmq_socket_monitor(self->sock, "inproc://it-raw-monitor",
                           ZMQ_EVENT_HANDSHAKE_SUCCEEDED | ZMQ_EVENT_HANDSHAKE_FAILED_AUTH) == 0) {
        self->mon = zmq_socket(self->ctx, ZMQ_PAIR);
        if (self->mon && zmq_connect(self->mon, "inproc://it-raw-monitor") != 0) {
            zmq_close(self->mon);
            self->mon = NULL;
        }
    }
    if (!self->sock || !self->mon || zmq_setsockopt(self->sock, ZMQ_LINGER, &linger, sizeof linger) != 0 ||
        zmq_setsockopt(self->sock, ZMQ_CURVE_SERVERKEY, hub.curve[0], KEYFILE_Z85_LEN + 1) != 0 ||
        zmq_setsockopt(self->sock, ZMQ_CURVE_PUBLICKEY, mine.curve[0], KEYFILE_Z85_LEN + 1) != 0 ||
        zmq_setsockopt(self->sock, ZMQ_CURVE_SECRETKEY, mine.curve_secret, KEYFILE_Z85_LEN + 1) != 0 ||
        zmq_connect(self->sock, harness_endpoint(h)) != 0) {
        fprintf(stderr, "itest: raw %s: %s\n", agency, zmq_strerror(zmq_errno()));
        it_raw_close(&self);
    }
    memset(&mine, 0, sizeof mine);
    return self;
}

static inline it_raw_t *it_raw_new(harness_t *h, const char *agency)
{
    return it_raw_new_opts(h, agency, 0, 0);
}

/* Wait up to timeout_ms for the outcome of the raw socket's (next)
 * handshake: 1 when it succeeded, -1 when the hub refused it (ZAP), 0 when
 * neither happened in time. */
static inline int it_raw_handshake(it_raw_t *self, int timeout_ms)
{
    int64_t deadline = it_mono_ms() + timeout_ms;
    for (;;) {
        int64_t left = deadline - it_mono_ms();
        zmq_pollitem_t item = {self->mon, 0, ZMQ_POLLIN, 0};
        if (left <= 0 || zmq_poll(&item, 1, (long)left) <= 0)
            return 0;
        zmq_msg_t frame;
        zmq_msg_init(&frame);
        if (zmq_msg_recv(&frame, self->mon, 0) < 0) {
            zmq_msg_close(&frame);
            return 0;
        }
        uint16_t event = 0;
        if (zmq_msg_size(&frame) >= 2)
            memcpy(&event, zmq_msg_data(&frame), sizeof event);
        while (zmq_msg_more(&frame)) { /* the endpoint frame */
            zmq_msg_close(&frame);
            zmq_msg_init(&frame);
            if (zmq_msg_recv(&frame, self->mon, 0) < 0)
                break;
        }
        zmq_msg_close(&frame);
        if (event == ZMQ_EVENT_HANDSHAKE_SUCCEEDED)
            return 1;
        if (event == ZMQ_EVENT_HANDSHAKE_FAILED_AUTH)
            return -1;
    }
}

/* Send bytes as one frame (more: as a non-final frame). 0 on success. */
static inline int it_raw_send_bytes(it_raw_t *self, const void *data, size_t len, bool more)
{
    return zmq_send(self->sock, data, len, more ? ZMQ_SNDMORE : 0) == (int)len ? 0 : -1;
}

static inline int it_raw_send(it_raw_t *self, Civibus__V1__ClientMessage *msg, bool more)
{
    size_t len = civibus__v1__client_message__get_packed_size(msg);
    uint8_t *buf = malloc(len ? len : 1);
    if (!buf)
        return -1;
    civibus__v1__client_message__pack(msg, buf);
    int rc = it_raw_send_bytes(self, buf, len, more);
    free(buf);
    return rc;
}

/* Next hub message within timeout_ms, or NULL. Free it with
 * civibus__v1__hub_message__free_unpacked(msg, NULL). Pongs of keep-alive
 * are not filtered: the raw socket sends none of its own. */
static inline Civibus__V1__HubMessage *it_raw_recv(it_raw_t *self, int timeout_ms)
{
    zmq_pollitem_t item = {self->sock, 0, ZMQ_POLLIN, 0};
    if (zmq_poll(&item, 1, timeout_ms) <= 0)
        return NULL;
    zmq_msg_t frame;
    zmq_msg_init(&frame);
    if (zmq_msg_recv(&frame, self->sock, ZMQ_DONTWAIT) < 0) {
        zmq_msg_close(&frame);
        return NULL;
    }
    Civibus__V1__HubMessage *msg =
        civibus__v1__hub_message__unpack(NULL, zmq_msg_size(&frame), zmq_msg_data(&frame));
    if (zmq_msg_more(&frame))
        fprintf(stderr, "itest: the hub sent a multi-frame message\n");
    zmq_msg_close(&frame);
    return msg;
}

static inline void it_hub_msg_free(Civibus__V1__HubMessage **msg_p)
{
    if (msg_p && *msg_p) {
        civibus__v1__hub_message__free_unpacked(*msg_p, NULL);
        *msg_p = NULL;
    }
}

/* Send a version-1 Ping with request_id. */
static inline int it_raw_ping(it_raw_t *self, uint64_t request_id)
{
    Civibus__V1__Ping ping = CIVIBUS__V1__PING__INIT;
    ping.request_id = request_id;
    Civibus__V1__ClientMessage msg = CIVIBUS__V1__CLIENT_MESSAGE__INIT;
    msg.version = 1;
    msg.body_case = CIVIBUS__V1__CLIENT_MESSAGE__BODY_PING;
    msg.ping = &ping;
    return it_raw_send(self, &msg, false);
}

/* Send a version-1 Publish of n events (each packed here). */
static inline int it_raw_publish(it_raw_t *self, uint64_t request_id, Civibus__V1__ServiceEvent *const *events,
                                 size_t n)
{
    ProtobufCBinaryData bins[16];
    if (n > 16)
        return -1;
    for (size_t i = 0; i < n; i++) {
        bins[i].len = civibus__v1__service_event__get_packed_size(events[i]);
        bins[i].data = malloc(bins[i].len ? bins[i].len : 1);
        civibus__v1__service_event__pack(events[i], bins[i].data);
    }
    Civibus__V1__Publish pub = CIVIBUS__V1__PUBLISH__INIT;
    pub.request_id = request_id;
    pub.n_events = n;
    pub.events = bins;
    Civibus__V1__ClientMessage msg = CIVIBUS__V1__CLIENT_MESSAGE__INIT;
    msg.version = 1;
    msg.body_case = CIVIBUS__V1__CLIENT_MESSAGE__BODY_PUBLISH;
    msg.publish = &pub;
    int rc = it_raw_send(self, &msg, false);
    for (size_t i = 0; i < n; i++)
        free(bins[i].data);
    return rc;
}

/* ---- fixture ------------------------------------------------------------------ */

typedef struct {
    harness_t *h;
    civ_client_t *clients[IT_MAX_CLIENTS];
    it_raw_t *raws[IT_MAX_RAW];
} it_fix_t;

/* A harness with the given registered agencies (NULL-ended); the hub is not
 * started. */
static inline it_fix_t *it_fix_new(const char *const *agencies)
{
    it_fix_t *f = calloc(1, sizeof *f);
    assert_non_null(f);
    f->h = harness_new();
    assert_non_null(f->h);
    for (int i = 0; agencies && agencies[i]; i++)
        assert_int_equal(harness_add_agency(f->h, agencies[i]), 0);
    return f;
}

static inline void it_fix_destroy(it_fix_t **f_p)
{
    it_fix_t *f = f_p ? *f_p : NULL;
    if (!f)
        return;
    for (int i = 0; i < IT_MAX_CLIENTS; i++)
        civ_client_destroy(&f->clients[i]);
    for (int i = 0; i < IT_MAX_RAW; i++)
        it_raw_close(&f->raws[i]);
    if (f->h && getenv("IT_DUMP_LOG"))
        harness_dump_log(f->h);
    harness_destroy(&f->h);
    free(f);
    *f_p = NULL;
}

/* Start the hub with extra flags (NULL-ended, may be NULL). */
static inline void it_start(it_fix_t *f, const char *const *extra)
{
    if (harness_start(f->h, extra) != 0)
        fail_msg("civibusd did not start");
}

/* A client of agency (timeout_ms 0: the SDK's default), destroyed by the
 * teardown unless the test drops it earlier with it_drop. */
static inline civ_client_t *it_client_opts(it_fix_t *f, const char *agency, int timeout_ms, unsigned window,
                                           unsigned batch)
{
    civ_options_t o = {.endpoint = harness_endpoint(f->h),
                       .hub_key_file = harness_hub_pub(f->h),
                       .key_file = harness_key(f->h, agency),
                       .timeout_ms = timeout_ms,
                       .window = window,
                       .batch = batch};
    civ_error_t err = {0};
    civ_client_t *c = civ_client_new(&o, &err);
    if (!c)
        fail_msg("client %s: %s (%s)", agency, err.message, civ_error_name(err.code));
    for (int i = 0; i < IT_MAX_CLIENTS; i++) {
        if (!f->clients[i]) {
            f->clients[i] = c;
            return c;
        }
    }
    civ_client_destroy(&c);
    fail_msg("too many clients in one test");
    return NULL;
}

static inline civ_client_t *it_client(it_fix_t *f, const char *agency, int timeout_ms)
{
    return it_client_opts(f, agency, timeout_ms, 0, 0);
}

/* Destroy a client before the teardown (e.g. to simulate a disconnect). */
static inline void it_drop(it_fix_t *f, civ_client_t **c)
{
    for (int i = 0; i < IT_MAX_CLIENTS; i++)
        if (f->clients[i] == *c)
            f->clients[i] = NULL;
    civ_client_destroy(c);
}

static inline it_raw_t *it_raw(it_fix_t *f, const char *agency)
{
    it_raw_t *r = it_raw_new(f->h, agency);
    assert_non_null(r);
    for (int i = 0; i < IT_MAX_RAW; i++) {
        if (!f->raws[i]) {
            f->raws[i] = r;
            return r;
        }
    }
    it_raw_close(&r);
    fail_msg("too many raw sockets in one test");
    return NULL;
}

/* Does the hub's log contain needle (waiting up to timeout_ms for it)? */
static inline bool it_log_contains(it_fix_t *f, const char *needle, int timeout_ms)
{
    char path[512];
    snprintf(path, sizeof path, "%s/hub.log", harness_dir(f->h));
    int64_t deadline = it_mono_ms() + timeout_ms;
    do {
        FILE *fp = fopen(path, "r");
        if (fp) {
            char line[4096];
            bool found = false;
            while (!found && fgets(line, sizeof line, fp))
                found = strstr(line, needle) != NULL;
            fclose(fp);
            if (found)
                return true;
        }
        it_sleep_ms(50);
    } while (it_mono_ms() < deadline);
    return false;
}

/* The hub's last sequence number, by a ping. */
static inline uint64_t it_last_seq(civ_client_t *c)
{
    uint64_t last = UINT64_MAX;
    int rc = civ_ping(c, &last);
    if (rc != CIV_OK)
        fail_msg("civ_ping: %s", civ_error_name(rc));
    return last;
}

/* ---- events ------------------------------------------------------------------- */

#define IT_T0 1700000000000000LL

typedef struct {
    char event_id[64];
    char type[64];
    char subject[64];
    char corr[32];
    char hval[32];
    uint8_t payload[256];
    civ_header_t headers[2];
    civ_event_t ev;
} it_ev_t;

/* The default type of event i (three kinds, so that filters have work). */
static inline const char *it_type_of(int i)
{
    static const char *const types[] = {"population.birth.registered", "population.address.changed",
                                        "tax.return.filed"};
    return types[i % 3];
}

/* Event i of agency, every field derived from (agency, i): the payload is
 * JSON for even i and binary (with NUL and 0xff bytes) for odd i, of a length
 * varying with i; every fifth has a correlation id, every seventh headers. */
static inline void it_ev_make(it_ev_t *e, const char *agency, int i)
{
    memset(e, 0, sizeof *e);
    snprintf(e->event_id, sizeof e->event_id, "%s-%06d", agency, i);
    snprintf(e->type, sizeof e->type, "%s", it_type_of(i));
    snprintf(e->subject, sizeof e->subject, "person/%d", i * 7);
    size_t len;
    if (i % 2 == 0) {
        int n = snprintf((char *)e->payload, sizeof e->payload, "{\"n\":%d,\"from\":\"%s\",\"pad\":\"%.*s\"}", i,
                         agency, i % 61, "xxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxx");
        len = (size_t)n;
    } else {
        len = 3 + (size_t)(i % 97);
        for (size_t k = 0; k < len; k++)
            e->payload[k] = (uint8_t)((size_t)i * 31 + k * 17 + (size_t)agency[0]);
        e->payload[0] = 0x00;
        e->payload[1] = 0xff;
    }
    e->ev.event_id = e->event_id;
    e->ev.type = e->type;
    e->ev.subject = e->subject;
    e->ev.occurred_at = IT_T0 + i;
    e->ev.content_type = i % 2 == 0 ? "application/json" : "application/octet-stream";
    e->ev.payload = e->payload;
    e->ev.payload_len = len;
    if (i % 5 == 0) {
        snprintf(e->corr, sizeof e->corr, "corr-%d", i);
        e->ev.correlation_id = e->corr;
    }
    if (i % 7 == 0) {
        snprintf(e->hval, sizeof e->hval, "v%d", i);
        e->headers[0] = (civ_header_t){.key = "k1", .value = e->hval};
        e->headers[1] = (civ_header_t){.key = "trace", .value = "abc"};
        e->ev.headers = e->headers;
        e->ev.n_headers = 2;
    }
}

/* Check that a delivery carries exactly event i of agency, with seq. */
static inline void it_ev_check(const civ_delivery_t *d, const char *agency, int i, uint64_t seq)
{
    it_ev_t want;
    it_ev_make(&want, agency, i);
    if (d->seq != seq)
        fail_msg("expected seq %" PRIu64 ", got %" PRIu64 " (event %s)", seq, d->seq, d->event.event_id);
    assert_string_equal(d->event.event_id, want.event_id);
    assert_string_equal(d->event.source, agency);
    assert_string_equal(d->event.type, want.type);
    assert_string_equal(d->event.subject, want.subject);
    assert_int_equal(d->event.occurred_at, want.ev.occurred_at);
    assert_string_equal(d->event.content_type, want.ev.content_type);
    assert_string_equal(d->event.correlation_id, want.ev.correlation_id ? want.ev.correlation_id : "");
    assert_int_equal(d->event.payload_len, want.ev.payload_len);
    assert_memory_equal(d->event.payload, want.ev.payload, want.ev.payload_len);
    assert_int_equal(d->event.n_headers, want.ev.n_headers);
    for (size_t k = 0; k < want.ev.n_headers; k++) {
        assert_string_equal(d->event.headers[k].key, want.headers[k].key);
        assert_string_equal(d->event.headers[k].value, want.headers[k].value);
    }
    assert_true(d->raw_len > 0);
    assert_true(d->received_at > IT_T0);
}

/* Parse "AGENCY-NNNNNN" back into its number; -1 when it is not of agency. */
static inline int it_ev_index(const char *event_id, const char *agency)
{
    size_t n = strlen(agency);
    if (strncmp(event_id, agency, n) != 0 || event_id[n] != '-')
        return -1;
    return atoi(event_id + n + 1);
}

/* ---- publishing ----------------------------------------------------------------- */

/* Publish events first..first+n-1 of c's agency, pipelined, keeping at most
 * `ahead` unreturned acks. Every ack must be an acceptance (not duplicate) of
 * the right event, in order; seqs (may be NULL) receives the seq of event
 * first+k at [k]. Bounded by each call's own timeout. */
static inline void it_publish_many(civ_client_t *c, int first, int n, size_t ahead, uint64_t *seqs)
{
    const char *agency = civ_client_agency(c);
    int acked = 0;
    uint64_t prev = 0;
    for (int k = 0; k < n || acked < n;) {
        bool can_send = k < n && civ_publish_pending(c) < ahead;
        if (can_send) {
            it_ev_t e;
            it_ev_make(&e, agency, first + k);
            uint64_t token = 0;
            int rc = civ_publish_send(c, &e.ev, &token);
            if (rc != CIV_OK)
                fail_msg("civ_publish_send %s #%d: %s", agency, first + k, civ_error_name(rc));
            k++;
            continue;
        }
        civ_ack_t ack;
        int rc = civ_publish_recv(c, &ack, -1);
        if (rc != CIV_OK)
            fail_msg("civ_publish_recv %s after %d acks: %s", agency, acked, civ_error_name(rc));
        char want[64];
        snprintf(want, sizeof want, "%s-%06d", agency, first + acked);
        if (ack.error != CIV_OK)
            fail_msg("event %s refused: %s (%s)", want, civ_error_name(ack.error), ack.reason);
        assert_string_equal(ack.event_id, want);
        assert_false(ack.duplicate);
        assert_true(ack.seq > prev); /* one publisher's events keep their order */
        prev = ack.seq;
        if (seqs)
            seqs[acked] = ack.seq;
        acked++;
    }
    assert_int_equal(civ_publish_pending(c), 0);
}

/* Receive exactly n events of any subscription of c into out[] (owned by the
 * caller afterwards), each within the deadline; acks every `ack_every` on
 * `name` (0: never). */
static inline void it_receive(civ_client_t *c, const char *name, civ_delivery_t **out, size_t n, int timeout_ms,
                              size_t ack_every)
{
    int64_t deadline = it_mono_ms() + timeout_ms;
    for (size_t got = 0; got < n;) {
        int64_t left = deadline - it_mono_ms();
        if (left <= 0)
            fail_msg("received %zu of %zu events within %d ms", got, n, timeout_ms);
        civ_delivery_t *d = NULL;
        int rc = civ_next(c, &d, (int)(left > 1000 ? 1000 : left));
        if (rc == CIV_E_TIMEOUT)
            continue;
        if (rc != CIV_OK)
            fail_msg("civ_next after %zu events: %s", got, civ_error_name(rc));
        assert_non_null(d);
        out[got++] = d;
        if (ack_every && got % ack_every == 0) {
            rc = civ_ack(c, name, d->seq);
            if (rc != CIV_OK)
                fail_msg("civ_ack %" PRIu64 ": %s", d->seq, civ_error_name(rc));
        }
    }
}

/* Nothing more arrives on c within ms. */
static inline void it_expect_quiet(civ_client_t *c, int ms)
{
    civ_delivery_t *d = NULL;
    int rc = civ_next(c, &d, ms);
    if (rc == CIV_OK) {
        uint64_t seq = d ? d->seq : 0;
        civ_delivery_destroy(&d);
        fail_msg("unexpected extra delivery seq %" PRIu64, seq);
    }
    assert_int_equal(rc, CIV_E_TIMEOUT);
}

static inline void it_free_all(civ_delivery_t **ds, size_t n)
{
    for (size_t i = 0; i < n; i++)
        civ_delivery_destroy(&ds[i]);
}

static inline civ_start_t it_from_first(void)
{
    return (civ_start_t){.kind = CIV_START_FIRST};
}

static inline civ_start_t it_from_seq(uint64_t seq)
{
    return (civ_start_t){.kind = CIV_START_SEQ, .seq = seq};
}

#endif
