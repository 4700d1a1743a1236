/* test_sdk_wire - libcivibus against a scripted fake hub.
 *
 * The fake hub is a CURVE ROUTER in a thread of this process that decodes
 * every ClientMessage and answers as each test scripts it, which lets the
 * tests provoke what a real hub rarely does on cue: a lost request (the SDK
 * must re-send the same request_id and bytes), a whole request refused, stray
 * and repeated replies, a hub restart under a subscription (UNKNOWN_SUBSCRIPTION
 * or a new hub_instance: the SDK must re-subscribe from the cursor and drop
 * what it already handed out), credit accounting, and replay replies shorter
 * than asked (the SDK's guesses of the next chunk go stale).
 *
 * Handlers run in the fake hub's thread under its mutex; tests read the
 * scenario state under the same mutex.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>

#include <cmocka.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>
#include <zmq.h>

#include "civibus.h"
#include "codec.h"
#include "keyfile.h"

/* ---- the fake hub ---------------------------------------------------------- */

typedef struct fake fake_t;
typedef void (*fake_fn)(fake_t *f, const codec_client_msg_t *m);

struct fake {
    void *ctx, *sock;
    char endpoint[128];
    pthread_t thread;
    volatile int stop;
    pthread_mutex_t mu;
    uint8_t peer[256];
    size_t peer_len;
    fake_fn handler;
    char instance[32];
    int n_msgs[16]; /* per ClientMessage body case */
    /* publish scenario */
    int drop_publishes;    /* drop this many Publish messages */
    uint64_t first_id;
    uint8_t *first_frame;
    size_t first_len;
    int same_resend;       /* a re-send matched the dropped one byte for byte */
    uint64_t next_seq;
    bool refuse;           /* answer Publish with a whole-request error */
    /* subscription scenario */
    char sub[64];
    bool sub_known;
    uint32_t credit;
    uint64_t granted;      /* initial plus granted credit over the life of the test */
    uint64_t cursor;       /* last ack */
    uint64_t sent_upto;    /* last seq delivered */
    uint64_t log_last;     /* events 1..log_last exist */
    int subscribes;
    int last_start_kind;
    uint32_t last_sub_credit;
    bool mute;             /* deliver nothing */
    bool quiet;            /* do not answer acks and credits of unknown subscriptions */
    /* replay scenario */
    uint32_t replay_cap;
    uint64_t gap_from, gap_to; /* seqs missing from the log */
    int replays;
    int replay_misses;     /* requests not starting where the last reply ended */
    uint64_t last_next;
    bool replay_refuse;
};

static void fake_send(fake_t *f, Civibus__V1__HubMessage *m)
{
    m->version = CODEC_PROTOCOL_VERSION;
    size_t len = civibus__v1__hub_message__get_packed_size(m);
    uint8_t *buf = malloc(len ? len : 1);
    civibus__v1__hub_message__pack(m, buf);
    zmq_send(f->sock, f->peer, f->peer_len, ZMQ_SNDMORE);
    zmq_send(f->sock, buf, len, 0);
    free(buf);
}

static void *fake_run(void *arg)
{
    fake_t *f = arg;
    while (!f->stop) {
        zmq_pollitem_t item = {f->sock, 0, ZMQ_POLLIN, 0};
        if (zmq_poll(&item, 1, 20) <= 0)
            continue;
        uint8_t peer[256];
        int plen = zmq_recv(f->sock, peer, sizeof peer, 0);
        zmq_msg_t frame;
        zmq_msg_init(&frame);
        if (plen < 0 || zmq_msg_recv(&frame, f->sock, 0) < 0) {
            zmq_msg_close(&frame);
            continue;
        }
        codec_client_msg_t *m = NULL;
        int rc = codec_client_decode(zmq_msg_data(&frame), zmq_msg_size(&frame), 64 << 20, &m);
        pthread_mutex_lock(&f->mu);
        memcpy(f->peer, peer, (size_t)plen);
        f->peer_len = (size_t)plen;
        if (rc == CODEC_OK && m->version == 1) {
            f->n_msgs[m->body_case & 15]++;
            if (m->body_case == CIVIBUS__V1__CLIENT_MESSAGE__BODY_PUBLISH && f->drop_publishes > 0) {
                f->drop_publishes--;
                f->first_id = m->publish->request_id;
                f->first_frame = malloc(zmq_msg_size(&frame));
                memcpy(f->first_frame, zmq_msg_data(&frame), zmq_msg_size(&frame));
                f->first_len = zmq_msg_size(&frame);
            } else if (m->body_case == CIVIBUS__V1__CLIENT_MESSAGE__BODY_PUBLISH && f->first_frame &&
                       m->publish->request_id == f->first_id) {
                f->same_resend = f->first_len == zmq_msg_size(&frame) &&
                                 memcmp(f->first_frame, zmq_msg_data(&frame), f->first_len) == 0;
                f->handler(f, m);
            } else {
                f->handler(f, m);
            }
        }
        pthread_mutex_unlock(&f->mu);
        codec_client_free(&m);
        zmq_msg_close(&frame);
    }
    return NULL;
}

/* ---- common handlers ------------------------------------------------------- */

static void s_pong(fake_t *f, const codec_client_msg_t *m)
{
    Civibus__V1__Pong pong = CIVIBUS__V1__PONG__INIT;
    pong.request_id = m->ping->request_id;
    pong.hub_instance = f->instance;
    pong.last_seq = f->log_last;
    Civibus__V1__HubMessage h = CIVIBUS__V1__HUB_MESSAGE__INIT;
    h.body_case = CIVIBUS__V1__HUB_MESSAGE__BODY_PONG;
    h.pong = &pong;
    fake_send(f, &h);
}

static void s_error(fake_t *f, uint64_t request_id, const char *sub, int code, const char *reason)
{
    Civibus__V1__Error e = CIVIBUS__V1__ERROR__INIT;
    e.request_id = request_id;
    e.subscription = (char *)sub;
    e.code = (Civibus__V1__ErrorCode)code;
    e.reason = (char *)reason;
    Civibus__V1__HubMessage h = CIVIBUS__V1__HUB_MESSAGE__INIT;
    h.body_case = CIVIBUS__V1__HUB_MESSAGE__BODY_ERROR;
    h.error = &e;
    fake_send(f, &h);
}

/* The serialized ServiceEvent the fake log holds at seq. */
static size_t s_event_bytes(uint64_t seq, uint8_t *buf, size_t cap)
{
    char id[32];
    snprintf(id, sizeof id, "e-%llu", (unsigned long long)seq);
    Civibus__V1__ServiceEvent ev = CIVIBUS__V1__SERVICE_EVENT__INIT;
    ev.event_id = id;
    ev.source = "tax-office";
    ev.type = "tax.x";
    ev.occurred_at = 1;
    size_t len = civibus__v1__service_event__get_packed_size(&ev);
    assert_true(len <= cap);
    civibus__v1__service_event__pack(&ev, buf);
    return len;
}

typedef struct {
    Civibus__V1__Delivery *d;
    Civibus__V1__Delivery **ptrs;
    uint8_t (*bytes)[64];
    size_t n;
} s_batch_t;

static void s_batch_init(s_batch_t *b, size_t cap)
{
    b->d = calloc(cap ? cap : 1, sizeof *b->d);
    b->ptrs = calloc(cap ? cap : 1, sizeof *b->ptrs);
    b->bytes = calloc(cap ? cap : 1, sizeof *b->bytes);
    b->n = 0;
}

static void s_batch_add(s_batch_t *b, uint64_t seq)
{
    Civibus__V1__Delivery *d = &b->d[b->n];
    civibus__v1__delivery__init(d);
    d->seq = seq;
    d->received_at = (int64_t)seq * 10;
    d->event.len = s_event_bytes(seq, b->bytes[b->n], sizeof b->bytes[b->n]);
    d->event.data = b->bytes[b->n];
    b->ptrs[b->n++] = d;
}

static void s_batch_free(s_batch_t *b)
{
    free(b->d);
    free(b->ptrs);
    free(b->bytes);
}

/* ---- fixture ------------------------------------------------------------------ */

typedef struct {
    char dir[64];
    char agency_key[128], hub_key[128], hub_pub[128], agency_pub[128];
    fake_t fake;
} fixture_t;

static void s_default_handler(fake_t *f, const codec_client_msg_t *m);

static int s_setup(void **state)
{
    fixture_t *x = calloc(1, sizeof *x);
    snprintf(x->dir, sizeof x->dir, "/tmp/civ-sdk-wire-XXXXXX");
    assert_non_null(mkdtemp(x->dir));
    char err[256];
    assert_int_equal(keyfile_generate(x->dir, "tax-office", "tax-office", err, sizeof err), KEYFILE_OK);
    assert_int_equal(keyfile_generate(x->dir, "hub", NULL, err, sizeof err), KEYFILE_OK);
    snprintf(x->agency_key, sizeof x->agency_key, "%s/tax-office.key", x->dir);
    snprintf(x->agency_pub, sizeof x->agency_pub, "%s/tax-office.pub", x->dir);
    snprintf(x->hub_key, sizeof x->hub_key, "%s/hub.key", x->dir);
    snprintf(x->hub_pub, sizeof x->hub_pub, "%s/hub.pub", x->dir);
    keyfile_t hub;
    assert_int_equal(keyfile_read(x->hub_key, &hub, err, sizeof err), KEYFILE_OK);

    fake_t *f = &x->fake;
    pthread_mutex_init(&f->mu, NULL);
    f->handler = s_default_handler;
    snprintf(f->instance, sizeof f->instance, "instance-a");
    f->next_seq = 1;
    f->ctx = zmq_ctx_new();
    f->sock = zmq_socket(f->ctx, ZMQ_ROUTER);
    int one = 1, linger = 0;
    zmq_setsockopt(f->sock, ZMQ_CURVE_SERVER, &one, sizeof one);
    zmq_setsockopt(f->sock, ZMQ_CURVE_SECRETKEY, hub.curve_secret, KEYFILE_Z85_LEN + 1);
    zmq_setsockopt(f->sock, ZMQ_LINGER, &linger, sizeof linger);
    assert_int_equal(zmq_bind(f->sock, "tcp://127.0.0.1:*"), 0);
    size_t len = sizeof f->endpoint;
    zmq_getsockopt(f->sock, ZMQ_LAST_ENDPOINT, f->endpoint, &len);
    assert_int_equal(pthread_create(&f->thread, NULL, fake_run, f), 0);
    *state = x;
    return 0;
}

static int s_teardown(void **state)
{
    fixture_t *x = *state;
    fake_t *f = &x->fake;
    f->stop = 1;
    pthread_join(f->thread, NULL);
    zmq_close(f->sock);
    zmq_ctx_term(f->ctx);
    free(f->first_frame);
    pthread_mutex_destroy(&f->mu);
    const char *files[] = {x->agency_key, x->agency_pub, x->hub_key, x->hub_pub};
    for (size_t i = 0; i < 4; i++)
        unlink(files[i]);
    rmdir(x->dir);
    free(x);
    return 0;
}

static civ_client_t *s_client(fixture_t *x, int timeout_ms, unsigned window, unsigned batch)
{
    civ_options_t o = {.endpoint = x->fake.endpoint, .hub_key_file = x->hub_pub, .key_file = x->agency_key,
                       .timeout_ms = timeout_ms, .window = window, .batch = batch};
    civ_error_t err;
    civ_client_t *c = civ_client_new(&o, &err);
    assert_non_null(c);
    return c;
}

#define LOCKED(f, stmt)                                                                                     \
    do {                                                                                                    \
        pthread_mutex_lock(&(f)->mu);                                                                       \
        stmt;                                                                                               \
        pthread_mutex_unlock(&(f)->mu);                                                                     \
    } while (0)

/* ---- handlers -------------------------------------------------------------- */

static void s_on_publish(fake_t *f, const Civibus__V1__Publish *p)
{
    if (f->refuse) {
        s_error(f, p->request_id, "", CIVIBUS__V1__ERROR_CODE__TOO_LARGE, "message too large");
        return;
    }
    size_t n = p->n_events;
    Civibus__V1__PublishResult *res = calloc(n ? n : 1, sizeof *res);
    Civibus__V1__PublishResult **ptrs = calloc(n ? n : 1, sizeof *ptrs);
    codec_event_t **evs = calloc(n ? n : 1, sizeof *evs);
    for (size_t i = 0; i < n; i++) {
        civibus__v1__publish_result__init(&res[i]);
        res[i].index = (uint32_t)i;
        assert_int_equal(codec_event_decode(p->events[i].data, p->events[i].len, 1 << 20, &evs[i]), CODEC_OK);
        assert_string_equal(evs[i]->source, "tax-office");
        res[i].event_id = evs[i]->event_id;
        if (strcmp(evs[i]->type, "tax.refused") == 0) {
            res[i].code = CIVIBUS__V1__ERROR_CODE__NOT_AUTHORISED;
            res[i].reason = "not for you";
        } else {
            res[i].seq = f->next_seq++;
        }
        ptrs[n - 1 - i] = &res[i]; /* results in any order: index says which */
    }
    /* A stray reply first: the SDK must ignore an unknown request id. */
    Civibus__V1__PublishReply stray = CIVIBUS__V1__PUBLISH_REPLY__INIT;
    stray.request_id = p->request_id + 1000000;
    stray.n_results = n;
    stray.results = ptrs;
    Civibus__V1__HubMessage h = CIVIBUS__V1__HUB_MESSAGE__INIT;
    h.body_case = CIVIBUS__V1__HUB_MESSAGE__BODY_PUBLISH_REPLY;
    h.publish_reply = &stray;
    fake_send(f, &h);
    Civibus__V1__PublishReply rep = CIVIBUS__V1__PUBLISH_REPLY__INIT;
    rep.request_id = p->request_id;
    rep.n_results = n;
    rep.results = ptrs;
    h.publish_reply = &rep;
    fake_send(f, &h);
    fake_send(f, &h); /* and a repeat, which must change nothing */
    for (size_t i = 0; i < n; i++)
        codec_event_free(&evs[i]);
    free(evs);
    free(ptrs);
    free(res);
}

static bool s_skipped(const fake_t *f, uint64_t seq)
{
    return seq >= f->gap_from && seq <= f->gap_to;
}

/* Deliver from the cursor while there is credit, 3 events per Deliver. */
static void s_pump_deliveries(fake_t *f)
{
    while (f->sub_known && !f->mute && f->credit > 0 && f->sent_upto < f->log_last) {
        s_batch_t b;
        s_batch_init(&b, 3);
        while (b.n < 3 && f->credit > 0 && f->sent_upto < f->log_last) {
            s_batch_add(&b, ++f->sent_upto);
            f->credit--;
        }
        Civibus__V1__Deliver d = CIVIBUS__V1__DELIVER__INIT;
        d.subscription = f->sub;
        d.n_events = b.n;
        d.events = b.ptrs;
        Civibus__V1__HubMessage h = CIVIBUS__V1__HUB_MESSAGE__INIT;
        h.body_case = CIVIBUS__V1__HUB_MESSAGE__BODY_DELIVER;
        h.deliver = &d;
        fake_send(f, &h);
        s_batch_free(&b);
    }
}

static void s_on_subscribe(fake_t *f, const Civibus__V1__Subscribe *s)
{
    f->subscribes++;
    f->last_start_kind = s->start ? (int)s->start->kind : -1;
    f->last_sub_credit = s->credit;
    snprintf(f->sub, sizeof f->sub, "%s", s->name);
    f->sub_known = true;
    f->credit = s->credit;
    f->granted += s->credit;
    /* CURSOR resumes after the last ack; FIRST from 1. */
    f->sent_upto = f->last_start_kind == CIVIBUS__V1__START_POINT__KIND__CURSOR ? f->cursor : 0;
    Civibus__V1__SubscribeReply rep = CIVIBUS__V1__SUBSCRIBE_REPLY__INIT;
    rep.subscription = f->sub;
    rep.next_seq = f->sent_upto + 1;
    rep.last_seq = f->log_last;
    rep.hub_instance = f->instance;
    Civibus__V1__HubMessage h = CIVIBUS__V1__HUB_MESSAGE__INIT;
    h.body_case = CIVIBUS__V1__HUB_MESSAGE__BODY_SUBSCRIBE_REPLY;
    h.subscribe_reply = &rep;
    fake_send(f, &h);
    s_pump_deliveries(f);
}

static void s_on_replay(fake_t *f, const Civibus__V1__Replay *r)
{
    f->replays++;
    if (f->replay_refuse) {
        s_error(f, r->request_id, "", CIVIBUS__V1__ERROR_CODE__NOT_AUTHORISED, "no replay for you");
        return;
    }
    uint64_t from = 1;
    if (r->from && r->from->kind == CIVIBUS__V1__START_POINT__KIND__SEQ)
        from = r->from->seq ? r->from->seq : 1;
    if (f->last_next && from != f->last_next)
        f->replay_misses++;
    uint32_t want = r->count < f->replay_cap ? r->count : f->replay_cap;
    s_batch_t b;
    s_batch_init(&b, want);
    uint64_t seq = from;
    for (; seq <= f->log_last && b.n < want; seq++)
        if (!s_skipped(f, seq))
            s_batch_add(&b, seq);
    /* next_seq skips a gap that starts where the reply ends */
    while (seq <= f->log_last && s_skipped(f, seq))
        seq++;
    f->last_next = seq;
    Civibus__V1__ReplayReply rep = CIVIBUS__V1__REPLAY_REPLY__INIT;
    rep.request_id = r->request_id;
    rep.n_events = b.n;
    rep.events = b.ptrs;
    rep.next_seq = seq;
    rep.last_seq = f->log_last;
    Civibus__V1__HubMessage h = CIVIBUS__V1__HUB_MESSAGE__INIT;
    h.body_case = CIVIBUS__V1__HUB_MESSAGE__BODY_REPLAY_REPLY;
    h.replay_reply = &rep;
    fake_send(f, &h);
    s_batch_free(&b);
}

static void s_default_handler(fake_t *f, const codec_client_msg_t *m)
{
    switch (m->body_case) {
    case CIVIBUS__V1__CLIENT_MESSAGE__BODY_PING: s_pong(f, m); break;
    case CIVIBUS__V1__CLIENT_MESSAGE__BODY_PUBLISH: s_on_publish(f, m->publish); break;
    case CIVIBUS__V1__CLIENT_MESSAGE__BODY_SUBSCRIBE: s_on_subscribe(f, m->subscribe); break;
    case CIVIBUS__V1__CLIENT_MESSAGE__BODY_CREDIT:
        if (!f->sub_known || strcmp(m->credit->subscription, f->sub) != 0) {
            if (!f->quiet)
                s_error(f, 0, m->credit->subscription, CIVIBUS__V1__ERROR_CODE__UNKNOWN_SUBSCRIPTION, "who?");
            break;
        }
        f->credit += m->credit->credit;
        f->granted += m->credit->credit;
        s_pump_deliveries(f);
        break;
    case CIVIBUS__V1__CLIENT_MESSAGE__BODY_ACK:
        if (!f->sub_known) {
            if (!f->quiet)
                s_error(f, 0, m->ack->subscription, CIVIBUS__V1__ERROR_CODE__UNKNOWN_SUBSCRIPTION, "who?");
            break;
        }
        if (m->ack->seq > f->cursor)
            f->cursor = m->ack->seq;
        break;
    case CIVIBUS__V1__CLIENT_MESSAGE__BODY_UNSUBSCRIBE: f->sub_known = false; break;
    case CIVIBUS__V1__CLIENT_MESSAGE__BODY_REPLAY: s_on_replay(f, m->replay); break;
    case CIVIBUS__V1__CLIENT_MESSAGE__BODY_STATUS: {
        char *filters[] = {"tax.*", "population.birth.registered"};
        Civibus__V1__SubscriptionStatus ss[2];
        Civibus__V1__SubscriptionStatus *ssp[2] = {&ss[0], &ss[1]};
        for (int i = 0; i < 2; i++) {
            civibus__v1__subscription_status__init(&ss[i]);
            ss[i].agency = "tax-office";
            ss[i].name = i ? "second" : "first";
            ss[i].n_filters = i ? 2 : 1;
            ss[i].filters = filters;
            ss[i].cursor = 10 + (uint64_t)i;
            ss[i].connected = i == 0;
            ss[i].credit = 5;
            ss[i].in_flight = 3;
        }
        Civibus__V1__StatusReply st = CIVIBUS__V1__STATUS_REPLY__INIT;
        st.request_id = m->status->request_id;
        st.version = "9.9.9";
        st.hub_instance = f->instance;
        st.first_seq = 1;
        st.last_seq = 77;
        st.started_at = 123;
        st.n_subscriptions = 2;
        st.subscriptions = ssp;
        Civibus__V1__HubMessage h = CIVIBUS__V1__HUB_MESSAGE__INIT;
        h.body_case = CIVIBUS__V1__HUB_MESSAGE__BODY_STATUS_REPLY;
        h.status_reply = &st;
        /* A message of another protocol version first: the SDK ignores it. */
        Civibus__V1__StatusReply wrong = st;
        wrong.version = "wrong";
        Civibus__V1__HubMessage odd = h;
        odd.status_reply = &wrong;
        odd.version = 2;
        size_t len = civibus__v1__hub_message__get_packed_size(&odd);
        uint8_t *buf = malloc(len);
        civibus__v1__hub_message__pack(&odd, buf);
        zmq_send(f->sock, f->peer, f->peer_len, ZMQ_SNDMORE);
        zmq_send(f->sock, buf, len, 0);
        free(buf);
        fake_send(f, &h);
        break;
    }
    default: break;
    }
}

/* ---- tests --------------------------------------------------------------------- */

static void test_publish_resend(void **state)
{
    fixture_t *x = *state;
    fake_t *f = &x->fake;
    LOCKED(f, f->drop_publishes = 1);
    civ_client_t *c = s_client(x, 1000, 0, 0); /* retry every 500 ms */
    civ_event_t ev = {.type = "tax.return.filed", .payload = "{}", .payload_len = 2};
    civ_ack_t ack;
    int64_t t0 = codec_mono_ms();
    assert_int_equal(civ_publish(c, &ev, &ack), CIV_OK);
    int64_t took = codec_mono_ms() - t0;
    assert_true(took >= 400 && took < 1000);
    assert_int_equal(ack.error, CIV_OK);
    assert_int_equal(ack.seq, 1);
    assert_int_equal(ack.token, 0);
    int same;
    LOCKED(f, same = f->same_resend);
    assert_true(same); /* the same request_id and the same bytes */
    civ_client_destroy(&c);
}

static void test_publish_pipeline(void **state)
{
    fixture_t *x = *state;
    fake_t *f = &x->fake;
    LOCKED(f, f->next_seq = 100);
    civ_client_t *c = s_client(x, 2000, 16, 5);
    civ_event_t ev = {.type = "tax.return.filed"};
    civ_event_t no = {.type = "tax.refused"};
    /* More than the window: civ_publish_send waits for acks meanwhile. */
    for (int i = 0; i < 40; i++) {
        uint64_t token = 0;
        assert_int_equal(civ_publish_send(c, i == 7 ? &no : &ev, &token), CIV_OK);
        assert_int_equal(token, (uint64_t)i + 1);
    }
    /* A blocking publish in the middle of the pipeline takes its own ack. */
    civ_ack_t ack;
    assert_int_equal(civ_publish(c, &ev, &ack), CIV_OK);
    assert_int_equal(ack.token, 0);
    assert_int_equal(ack.error, CIV_OK);
    assert_int_equal(civ_publish_pending(c), 40);
    uint64_t prev = 0;
    for (int i = 0; i < 40; i++) {
        assert_int_equal(civ_publish_recv(c, &ack, -1), CIV_OK);
        assert_int_equal(ack.token, (uint64_t)i + 1);
        if (i == 7) {
            assert_int_equal(ack.error, CIV_E_NOT_AUTHORISED);
            assert_string_equal(ack.reason, "not for you");
            assert_int_equal(ack.seq, 0);
        } else {
            assert_int_equal(ack.error, CIV_OK);
            assert_true(ack.seq > prev);
            prev = ack.seq;
        }
        assert_int_equal(strlen(ack.event_id), 36);
    }
    assert_int_equal(civ_publish_pending(c), 0);
    assert_int_equal(civ_publish_recv(c, &ack, 0), CIV_E_INVALID);

    /* A whole request refused: every event of it gets the error. */
    LOCKED(f, f->refuse = true);
    for (int i = 0; i < 3; i++)
        assert_int_equal(civ_publish_send(c, &ev, NULL), CIV_OK);
    for (int i = 0; i < 3; i++) {
        assert_int_equal(civ_publish_recv(c, &ack, -1), CIV_OK);
        assert_int_equal(ack.error, CIV_E_TOO_LARGE);
        assert_string_equal(ack.reason, "message too large");
    }
    LOCKED(f, f->refuse = false);
    civ_client_destroy(&c);
}

/* Receive n events and check they continue the sequence without repeats. */
static void s_consume(civ_client_t *c, uint64_t *prev, int n, bool ack)
{
    for (int i = 0; i < n; i++) {
        civ_delivery_t *d = NULL;
        int rc = civ_next(c, &d, 3000);
        assert_int_equal(rc, CIV_OK);
        assert_int_equal(d->seq, *prev + 1);
        char id[32];
        snprintf(id, sizeof id, "e-%llu", (unsigned long long)d->seq);
        assert_string_equal(d->event.event_id, id);
        assert_string_equal(d->subscription, "follow");
        assert_int_equal(d->received_at, (int64_t)d->seq * 10);
        *prev = d->seq;
        if (ack)
            assert_int_equal(civ_ack(c, "follow", d->seq), CIV_OK);
        civ_delivery_destroy(&d);
    }
}

static void test_subscribe_credit_and_restarts(void **state)
{
    fixture_t *x = *state;
    fake_t *f = &x->fake;
    LOCKED(f, f->log_last = 1000);
    civ_client_t *c = s_client(x, 2000, 0, 0);
    const char *filters[] = {"tax.*"};
    assert_int_equal(civ_subscribe(c, "follow", filters, 1, (civ_start_t){.kind = CIV_START_FIRST}, 8), CIV_OK);
    uint64_t prev = 0, granted;
    int kind;
    s_consume(c, &prev, 50, false);
    usleep(50000);
    /* The hub was never allowed more than window events beyond what was consumed. */
    LOCKED(f, granted = f->granted; kind = f->last_start_kind);
    assert_int_equal(kind, CIVIBUS__V1__START_POINT__KIND__FIRST);
    assert_true(granted <= 50 + 8);
    assert_true(granted >= 50);
    assert_int_equal(civ_ack(c, "follow", 40), CIV_OK);
    usleep(50000);

    /* The hub restarts: it forgets the subscription and answers the next
     * credit with unknown_subscription. The SDK re-subscribes from the cursor
     * (40), and drops 41..50 which it had handed out already. */
    LOCKED(f, f->sub_known = false; snprintf(f->instance, sizeof f->instance, "instance-b"));
    s_consume(c, &prev, 30, false);
    int subscribes;
    uint32_t credit;
    LOCKED(f, subscribes = f->subscribes; kind = f->last_start_kind; credit = f->last_sub_credit);
    assert_int_equal(subscribes, 2);
    assert_int_equal(kind, CIVIBUS__V1__START_POINT__KIND__CURSOR);
    assert_int_equal(credit, 8);

    /* Another restart, noticed only through the pong of an idle ping: the
     * hub delivers nothing until the SDK re-subscribes. */
    assert_int_equal(civ_ack(c, "follow", prev), CIV_OK);
    usleep(50000);
    LOCKED(f, f->mute = true);
    civ_delivery_t *d = NULL;
    int rc;
    while ((rc = civ_next(c, &d, 300)) == CIV_OK) { /* what was queued still comes */
        assert_int_equal(d->seq, prev + 1);
        prev = d->seq;
        civ_delivery_destroy(&d);
    }
    assert_int_equal(rc, CIV_E_TIMEOUT);
    LOCKED(f, f->sub_known = false; f->quiet = true; f->mute = false;
           snprintf(f->instance, sizeof f->instance, "instance-c"));
    int64_t t0 = codec_mono_ms();
    s_consume(c, &prev, 20, true);
    assert_true(codec_mono_ms() - t0 < 2500); /* one idle second, one ping */
    LOCKED(f, subscribes = f->subscribes; kind = f->last_start_kind);
    assert_int_equal(subscribes, 3);
    assert_int_equal(kind, CIVIBUS__V1__START_POINT__KIND__CURSOR);

    assert_int_equal(civ_unsubscribe(c, "follow"), CIV_OK);
    assert_int_equal(civ_unsubscribe(c, "follow"), CIV_E_UNKNOWN_SUBSCRIPTION);
    civ_client_destroy(&c);
}

static void s_refuse(fake_t *f, const codec_client_msg_t *m)
{
    if (m->body_case == CIVIBUS__V1__CLIENT_MESSAGE__BODY_SUBSCRIBE)
        s_error(f, 0, m->subscribe->name, CIVIBUS__V1__ERROR_CODE__NOT_AUTHORISED, "not yours");
}

static void test_subscribe_refused(void **state)
{
    fixture_t *x = *state;
    fake_t *f = &x->fake;
    fake_fn saved = f->handler;
    civ_client_t *c = s_client(x, 2000, 0, 0);
    /* The hub refuses: the subscribe call returns the hub's code. */
    LOCKED(f, f->handler = s_refuse);
    const char *filters[] = {"*"};
    assert_int_equal(civ_subscribe(c, "nope", filters, 1, (civ_start_t){.kind = CIV_START_LATEST}, 0),
                     CIV_E_NOT_AUTHORISED);
    assert_int_equal(civ_ack(c, "nope", 1), CIV_E_UNKNOWN_SUBSCRIPTION);
    LOCKED(f, f->handler = saved);
    civ_client_destroy(&c);
}

static void s_replay_all(civ_client_t *c, civ_start_t from, uint64_t count, uint64_t first, uint64_t last,
                         const fake_t *f)
{
    civ_error_t err;
    civ_replay_t *r = civ_replay_open(c, from, count, &err);
    assert_non_null(r);
    uint64_t expect = first, n = 0;
    civ_delivery_t *d = NULL;
    int rc;
    while ((rc = civ_replay_next(r, &d, 3000)) == CIV_OK && d) {
        while (s_skipped(f, expect))
            expect++;
        assert_int_equal(d->seq, expect);
        assert_string_equal(d->subscription, "");
        expect++;
        n++;
        civ_delivery_destroy(&d);
    }
    assert_int_equal(rc, CIV_OK);
    assert_int_equal(expect - 1, last);
    /* After the end it stays at the end. */
    assert_int_equal(civ_replay_next(r, &d, 0), CIV_OK);
    assert_null(d);
    civ_replay_destroy(&r);
    (void)n;
}

static void test_replay(void **state)
{
    fixture_t *x = *state;
    fake_t *f = &x->fake;
    LOCKED(f, f->log_last = 20000; f->replay_cap = 1000; f->gap_from = f->gap_to = 0);
    civ_client_t *c = s_client(x, 2000, 0, 0);

    /* A hub capping at 1000: the first guesses go stale, then the chunk adapts. */
    s_replay_all(c, (civ_start_t){.kind = CIV_START_FIRST}, 0, 1, 20000, f);
    int replays, misses;
    LOCKED(f, replays = f->replays; misses = f->replay_misses);
    assert_int_equal(misses, 0); /* the chunk adapted before any guess was made */
    assert_true(replays >= 20 && replays <= 21);

    /* count bounded, from a seq */
    s_replay_all(c, (civ_start_t){.kind = CIV_START_SEQ, .seq = 10}, 2500, 10, 2509, f);
    /* count 0 ends at the last_seq of the first reply, even if the log grows */
    LOCKED(f, f->replay_cap = 4096);
    s_replay_all(c, (civ_start_t){.kind = CIV_START_SEQ, .seq = 19990}, 0, 19990, 20000, f);

    /* A gap in the log (next_seq jumps): guesses are dropped and re-asked. */
    LOCKED(f, f->gap_from = 5000; f->gap_to = 5999; f->replays = 0; f->last_next = 0; f->replay_misses = 0);
    s_replay_all(c, (civ_start_t){.kind = CIV_START_FIRST}, 0, 1, 20000, f);
    LOCKED(f, misses = f->replay_misses);
    (void)misses;

    /* Past the end: an empty reply with next_seq > last_seq ends it. */
    civ_error_t err;
    civ_replay_t *r = civ_replay_open(c, (civ_start_t){.kind = CIV_START_SEQ, .seq = 30000}, 10, &err);
    civ_delivery_t *d = NULL;
    assert_int_equal(civ_replay_next(r, &d, 3000), CIV_OK);
    assert_null(d);
    civ_replay_destroy(&r);

    /* Refused */
    LOCKED(f, f->replay_refuse = true);
    r = civ_replay_open(c, (civ_start_t){.kind = CIV_START_FIRST}, 0, &err);
    assert_int_equal(civ_replay_next(r, &d, 3000), CIV_E_NOT_AUTHORISED);
    civ_replay_destroy(&r);
    LOCKED(f, f->replay_refuse = false; f->gap_from = f->gap_to = 0);
    civ_client_destroy(&c);
}

static void test_status_and_ping(void **state)
{
    fixture_t *x = *state;
    fake_t *f = &x->fake;
    LOCKED(f, f->log_last = 77);
    civ_client_t *c = s_client(x, 2000, 0, 0);
    uint64_t last = 0;
    assert_int_equal(civ_ping(c, &last), CIV_OK);
    assert_int_equal(last, 77);
    civ_status_t *st = NULL;
    assert_int_equal(civ_status(c, &st), CIV_OK);
    assert_string_equal(st->version, "9.9.9");
    assert_int_equal(st->last_seq, 77);
    assert_int_equal(st->started_at, 123);
    assert_int_equal(st->n_subscriptions, 2);
    assert_string_equal(st->subscriptions[0].name, "first");
    assert_string_equal(st->subscriptions[0].filters, "tax.*");
    assert_string_equal(st->subscriptions[1].filters, "tax.*,population.birth.registered");
    assert_true(st->subscriptions[0].connected);
    assert_int_equal(st->subscriptions[1].cursor, 11);
    assert_int_equal(st->subscriptions[1].in_flight, 3);
    civ_status_destroy(&st);
    assert_null(st);
    civ_client_destroy(&c);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_setup_teardown(test_publish_resend, s_setup, s_teardown),
        cmocka_unit_test_setup_teardown(test_publish_pipeline, s_setup, s_teardown),
        cmocka_unit_test_setup_teardown(test_subscribe_credit_and_restarts, s_setup, s_teardown),
        cmocka_unit_test_setup_teardown(test_subscribe_refused, s_setup, s_teardown),
        cmocka_unit_test_setup_teardown(test_replay, s_setup, s_teardown),
        cmocka_unit_test_setup_teardown(test_status_and_ping, s_setup, s_teardown),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
