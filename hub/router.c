/* router - the hub's socket loop and message dispatch.
 *
 * A publish passes: frame size (ZMQ_MAXMSGSIZE, then max_message_size) ->
 * decode under the codec's allocation cap -> per event: size, decode,
 * field rules, source == authenticated agency -> the batch. The decoded
 * request stays alive until its batch is committed, because the journal
 * entries point into it; the answer for every event of a request goes back
 * in one PublishReply, in event order.
 *
 * A socket monitor on the ROUTER reports handshakes that fail inside libzmq
 * (s_on_monitor): the only trace of garbage, a wrong mechanism, a wrong
 * server key or a timeout, which never reach the ZAP handler; they are
 * logged with the peer's address when the connection closes.
 */
#include "router.h"

#include <errno.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/random.h>
#include <time.h>
#include <zmq.h>

#include "auth.h"
#include "crypto.h"
#include "http.h"
#include "metrics.h"
#include "peers.h"
#include "evsign.h"
#include "batch.h"
#include "chain.h"
#include "deadletter.h"
#include "journal.h"
#include "keyfile.h"
#include "log.h"
#include "policy.h"
#include "quota.h"
#include "subs.h"
#include "wire.h"

/* Draft option of libzmq 4.3: refuse CURVE handshakes when no ZAP handler
 * answers, instead of letting every key in. Debian's libzmq accepts it. */
#ifndef ZMQ_ZAP_ENFORCE_DOMAIN
#define ZMQ_ZAP_ENFORCE_DOMAIN 93
#endif

#define ZAP_DOMAIN "civibus"
/* One router per context, so the name is unique where it must be. */
#define MONITOR_ENDPOINT "inproc://civibus-monitor"
#define MONITOR_EVENTS                                                                                          \
    (ZMQ_EVENT_HANDSHAKE_FAILED_NO_DETAIL | ZMQ_EVENT_HANDSHAKE_FAILED_PROTOCOL | ZMQ_EVENT_HANDSHAKE_FAILED_AUTH | \
     ZMQ_EVENT_HANDSHAKE_SUCCEEDED | ZMQ_EVENT_ACCEPTED | ZMQ_EVENT_DISCONNECTED)
#define READ_BURST 4096       /* messages read before the batch is committed */
#define REPLAY_MAX_BYTES (128 * 1024)
/* Messages queued per peer, each way. Publish replies must not be dropped
 * when a burst of commits answers many requests at once (a lost reply stalls
 * the publisher until its retry), so the queue is generous; replies are small
 * except replay chunks and Deliver messages, which are bounded in bytes and,
 * for Deliver, by credit. A peer that floods replay requests without reading
 * holds at most PEER_HWM chunks (128 MiB); one that takes credit and never
 * reads, its credit's worth of events or PEER_HWM Deliver messages of 256 KiB,
 * whichever is less. Across connections, hub/quota.h bounds the connections
 * of one agency. */
#define PEER_HWM 1000
/* A commit this slow is worth a line: the disk holds every publisher up. */
#define SLOW_COMMIT_MS 20
#define IDLE_POLL_MS 250
#define BUSY_POLL_MS 5
#define EXPIRE_EVERY_MS 1000
#define RETAIN_RETRY_MS 1000 /* retention waits this long after a failure */
#define CODE_COUNT 12
#define TRANSPORT_SLACK (64 * 1024)
#define KEY_WARN_EVERY_MS (24 * 3600 * 1000LL) /* expiring keys are logged daily */
#define DAY_S (24 * 3600)
#define REPORT_EVERY_MS 1000 /* documents rendered for the monitoring endpoint */

typedef Civibus__V1__ErrorCode s_code_t;
#define C(x) CIVIBUS__V1__ERROR_CODE__##x

/* One received Publish waiting for its commit. */
typedef struct {
    wire_peer_t peer;
    uint64_t request_id;
    codec_client_msg_t *msg;       /* owns the event bytes the entries point to */
    codec_event_t **events;        /* decoded, for the strings the entries use */
    Civibus__V1__PublishResult *results;
    Civibus__V1__PublishResult **result_ptrs;
    size_t n;
    int64_t received_us; /* metrics_clock_us() at receipt */
} s_request_t;

typedef struct {
    uint64_t accepted;
    uint64_t duplicates;
    uint64_t refused[CODE_COUNT];
    uint64_t commits;
    uint64_t replies_lost;
    uint64_t key_refused; /* messages of a key revoked or expired since its handshake */
    uint64_t handshakes_failed; /* every failure the monitor saw, ZAP refusals and closes before a handshake included */
} s_stats_t;

struct router {
    config_t *cfg; /* borrowed; config_reload updates it */
    void *ctx;
    void *sock;
    void *monitor; /* PAIR reading the ROUTER's monitor events; NULL if it could not start */
    auth_t *auth;
    policy_t *policy; /* NULL: no policy file, everything allowed */
    journal_t *journal;
    chain_t *chain; /* NULL: no signing key, no checkpoints */
    subs_t *subs;
    metrics_t *metrics;
    peers_t *peers; /* who is connected, from the monitor and the messages */
    /* The last HANDSHAKE_FAILED event read, waiting for the DISCONNECTED
     * that follows it and names the connection (fail_event 0: none). */
    uint16_t fail_event;
    uint32_t fail_code;
    quota_t *quota; /* per-agency ceilings; its connections are peers' */
    http_t *http;   /* borrowed; NULL: no monitoring endpoint */
    char endpoint[256];
    char instance[33];
    int64_t started_at;

    s_request_t *reqs;
    size_t n_reqs, cap_reqs;
    journal_entry_t *entries;
    uint32_t *entry_req; /* entries[i] belongs to reqs[entry_req[i]] ... */
    uint32_t *entry_idx; /* ... as its event number entry_idx[i] */
    size_t n_entries, cap_entries;
    size_t n_held; /* events of all pending requests, refused ones included */

    batch_t replay;
    bool retention;   /* a retention limit is set */
    bool retain_more; /* the last turn's retention stopped at its budget */
    int64_t retain_after_ms; /* after a failure, retention waits until then */
    s_stats_t stats;
    int64_t last_flush_ms;
    int64_t last_expire_ms;
    int64_t last_key_warn_ms;
    int64_t last_report_ms;
};

/* Count a coded refusal sent to agency (NULL: a sender without identity),
 * and keep it for the monitoring endpoint with the reason it was given. */
static void s_refuse_count(router_t *self, const char *agency, s_code_t code, const char *reason)
{
    if ((int)code >= 0 && (int)code < CODE_COUNT)
        self->stats.refused[code]++;
    metrics_refused(self->metrics, agency, (int)code, reason);
}

/* ---- publish --------------------------------------------------------- */

static int s_grow_entries(router_t *self, size_t need)
{
    if (self->n_entries + need <= self->cap_entries)
        return 0;
    size_t cap = self->cap_entries ? self->cap_entries : 1024;
    while (cap < self->n_entries + need)
        cap *= 2;
    journal_entry_t *e = realloc(self->entries, cap * sizeof *e);
    if (!e)
        return -1;
    self->entries = e;
    uint32_t *r = realloc(self->entry_req, cap * sizeof *r);
    if (!r)
        return -1;
    self->entry_req = r;
    uint32_t *x = realloc(self->entry_idx, cap * sizeof *x);
    if (!x)
        return -1;
    self->entry_idx = x;
    self->cap_entries = cap;
    return 0;
}

static void s_request_free(s_request_t *r)
{
    for (size_t i = 0; i < r->n; i++)
        codec_event_free(&r->events[i]);
    free(r->events);
    free(r->results);
    free(r->result_ptrs);
    codec_client_free(&r->msg);
}

/* One line per refused event, rate-limited per code so that a flood of one
 * kind (bad_signature) does not hide another (not_authorised). The reason
 * is the hub's own text; quoted all the same. */
static void s_log_refusal(const char *agency, s_code_t code, const char *reason)
{
    char key[64], quoted[600];
    snprintf(key, sizeof key, "publish_refused.%s", codec_error_name(code));
    log_limited(LOG_WARN, "router", key, "event=publish_refused agency=%s code=%s reason=%s", agency,
                codec_error_name(code), log_quote(reason, quoted, sizeof quoted));
}

static void s_result_refuse(router_t *self, s_request_t *r, size_t i, s_code_t code, const char *reason,
                            const char *agency)
{
    Civibus__V1__PublishResult *res = &r->results[i];
    res->code = code;
    res->reason = strdup(reason);
    s_refuse_count(self, agency, code, reason);
    s_log_refusal(agency, code, reason);
}

/* Validate every event of a Publish and queue the good ones for the batch.
 * Takes ownership of *msg_p. */
/* Batch signatures verified within one Publish: all events of a batch share
 * (key id, signature, leaf count), so one Ed25519 verify serves them all,
 * and the proof of the last event checked of each batch lets the next one be
 * hashed only up to the first node already proven (evsign_proof_extend). */
#define SIG_CACHE 8
typedef struct {
    evsign_proof_t seen[SIG_CACHE]; /* each verified against its signature */
    size_t n, next;
} s_sig_cache_t;

/* Check ev's signature (docs/SIGNING.md) against agency's signing keys at
 * the hub's receive time. true when it verifies, or when ev is unsigned and
 * signatures are not required; else false with a reason. */
static bool s_signature_ok(router_t *self, const char *agency, codec_event_t *ev, s_sig_cache_t *cache,
                           char *reason, size_t reason_len)
{
    evsign_claim_t claim;
    char why[160];
    int rc = evsign_event_claim(ev, &claim, why, sizeof why);
    if (rc == EVSIGN_UNSIGNED) {
        if (!self->cfg->require_signatures)
            return true;
        snprintf(reason, reason_len, "unsigned event (this hub requires signatures)");
        return false;
    }
    if (rc != EVSIGN_OK) {
        snprintf(reason, reason_len, "%s", why);
        return false;
    }
    char hex[CRYPTO_KEYID_HEX];
    crypto_hex(claim.key_id, CRYPTO_KEYID_LEN, hex);
    uint8_t pub[CRYPTO_PUB_LEN];
    auth_key_status_t st = auth_sign_key(self->auth, agency, claim.key_id, (int64_t)time(NULL), pub);
    if (st == AUTH_KEY_UNREGISTERED) {
        snprintf(reason, reason_len, "unknown signing key id %s for agency %s", hex, agency);
        return false;
    }
    if (st != AUTH_KEY_VALID) {
        snprintf(reason, reason_len, "signing key %s of agency %s is %s", hex, agency, auth_key_status_name(st));
        return false;
    }
    /* The key id is checked against this agency's keys above, for every
     * event; a proof only stands in for hashing and the signature check. */
    for (size_t i = 0; i < cache->n; i++)
        if (evsign_proof_extend(&cache->seen[i], &claim) == EVSIGN_OK)
            return true;
    evsign_proof_t *fresh = &cache->seen[cache->next];
    evsign_proof_t saved = *fresh;
    rc = evsign_proof_build(fresh, &claim);
    if (rc == EVSIGN_OK) {
        crypto_key_t *key = crypto_key_from_public(pub);
        rc = key ? evsign_verify_root(key, evsign_proof_root(fresh), claim.sig) : EVSIGN_INTERNAL;
        crypto_key_destroy(&key);
    }
    if (rc != EVSIGN_OK) {
        *fresh = saved; /* only verified proofs stay */
        snprintf(reason, reason_len, "%s with key %s of agency %s",
                 rc == EVSIGN_BAD_SIGNATURE ? "bad signature" : "signature not checkable", hex, agency);
        return false;
    }
    cache->next = (cache->next + 1) % SIG_CACHE;
    if (cache->n < SIG_CACHE)
        cache->n++;
    return true;
}

static void s_on_publish(router_t *self, const wire_peer_t *peer, const char *agency, codec_client_msg_t **msg_p)
{
    codec_client_msg_t *msg = *msg_p;
    *msg_p = NULL;
    Civibus__V1__Publish *pub = msg->publish;
    uint64_t request_id = pub->request_id;
    if (self->n_reqs == self->cap_reqs) {
        size_t cap = self->cap_reqs ? self->cap_reqs * 2 : 64;
        s_request_t *grown = realloc(self->reqs, cap * sizeof *grown);
        if (!grown)
            goto nomem;
        self->reqs = grown;
        self->cap_reqs = cap;
    }
    size_t n = pub->n_events;
    if (n > self->cfg->batch_max) {
        /* Each event costs the hub a decoded copy until the commit; one
         * message must not hold more than one batch. */
        char reason[128];
        snprintf(reason, sizeof reason, "a publish may carry at most %" PRIu64 " events (batch_max), not %zu",
                 self->cfg->batch_max, n);
        s_refuse_count(self, agency, C(TOO_LARGE), reason);
        s_log_refusal(agency, C(TOO_LARGE), reason);
        wire_send_error(self->sock, peer, request_id, NULL, C(TOO_LARGE), reason);
        codec_client_free(&msg);
        return;
    }
    s_request_t *r = &self->reqs[self->n_reqs];
    memset(r, 0, sizeof *r);
    r->peer = *peer;
    r->request_id = pub->request_id;
    r->received_us = metrics_clock_us();
    r->msg = msg;
    r->events = calloc(n ? n : 1, sizeof *r->events);
    r->results = calloc(n ? n : 1, sizeof *r->results);
    r->result_ptrs = calloc(n ? n : 1, sizeof *r->result_ptrs);
    if (!r->events || !r->results || !r->result_ptrs || s_grow_entries(self, n) != 0) {
        r->n = 0;
        s_request_free(r);
        msg = NULL;
        goto nomem;
    }
    r->n = n;
    self->n_reqs++;
    self->n_held += n;
    s_sig_cache_t sig_cache = {.n = 0, .next = 0};
    int64_t now_ms = codec_mono_ms();
    for (size_t i = 0; i < n; i++) {
        Civibus__V1__PublishResult *res = &r->results[i];
        civibus__v1__publish_result__init(res);
        res->index = (uint32_t)i;
        r->result_ptrs[i] = res;
        const ProtobufCBinaryData *raw = &pub->events[i];
        char reason[256];
        int rc = codec_event_decode(raw->data, raw->len, self->cfg->max_event_size, &r->events[i]);
        if (rc == CODEC_TOO_LARGE) {
            snprintf(reason, sizeof reason, "event of %zu bytes exceeds max_event_size %" PRIu64, raw->len,
                     self->cfg->max_event_size);
            s_result_refuse(self, r, i, C(TOO_LARGE), reason, agency);
            continue;
        }
        if (rc != CODEC_OK) {
            s_result_refuse(self, r, i, C(MALFORMED), "event is not a valid ServiceEvent encoding", agency);
            continue;
        }
        codec_event_t *ev = r->events[i];
        /* Echoed only when it is valid UTF-8: strict decoders would refuse
         * the whole reply otherwise. Points into ev, freed after the reply. */
        if (codec_utf8_valid(ev->event_id))
            res->event_id = ev->event_id;
        if (!codec_event_canonical(ev, raw->len)) {
            s_result_refuse(self, r, i, C(MALFORMED),
                            "event is not canonically encoded (a NUL inside a string, a field given twice, "
                            "or a default value written out)",
                            agency);
            continue;
        }
        if (!codec_event_valid(ev, reason, sizeof reason)) {
            s_result_refuse(self, r, i, C(MALFORMED), reason, agency);
            continue;
        }
        if (strcmp(ev->source, agency) != 0) {
            snprintf(reason, sizeof reason, "source must be the authenticated agency %s", agency);
            s_result_refuse(self, r, i, C(NOT_AUTHORISED), reason, agency);
            continue;
        }
        if (!s_signature_ok(self, agency, ev, &sig_cache, reason, sizeof reason)) {
            s_result_refuse(self, r, i, C(BAD_SIGNATURE), reason, agency);
            continue;
        }
        if (self->policy && !policy_allows(self->policy, agency, POLICY_PUBLISH, ev->type, strlen(ev->type), NULL)) {
            snprintf(reason, sizeof reason, "the access policy does not allow %s to publish %s", agency, ev->type);
            s_result_refuse(self, r, i, C(NOT_AUTHORISED), reason, agency);
            continue;
        }
        if (quota_publish(self->quota, agency, raw->len, now_ms, reason, sizeof reason) != QUOTA_OK) {
            s_result_refuse(self, r, i, C(UNAVAILABLE), reason, agency);
            continue;
        }
        journal_entry_t *e = &self->entries[self->n_entries];
        memset(e, 0, sizeof *e);
        e->source = ev->source;
        e->event_id = ev->event_id;
        e->type = ev->type;
        e->event = raw->data;
        e->event_len = raw->len;
        self->entry_req[self->n_entries] = (uint32_t)(self->n_reqs - 1);
        self->entry_idx[self->n_entries] = (uint32_t)i;
        self->n_entries++;
    }
    return;
nomem:
    codec_client_free(&msg);
    wire_send_error(self->sock, peer, request_id, NULL, C(UNAVAILABLE), "hub out of memory; retry later");
    s_refuse_count(self, agency, C(UNAVAILABLE), "hub out of memory; retry later");
}

/* Commit the batch and answer every pending request. */
static void s_commit(router_t *self)
{
    if (self->n_reqs == 0)
        return;
    const journal_cursor_t *cursors = NULL;
    size_t n_cursors = 0;
    int rc = JOURNAL_OK;
    if (self->n_entries) {
        n_cursors = subs_take_dirty(self->subs, &cursors);
        int64_t t0 = metrics_clock_us();
        rc = journal_append_batch(self->journal, self->entries, self->n_entries, cursors, n_cursors);
        int64_t took_us = metrics_clock_us() - t0, took = took_us / 1000;
        metrics_commit(self->metrics, took_us, self->n_entries);
        metrics_storage_full(self->metrics, rc == JOURNAL_FULL || rc == JOURNAL_NOSPACE);
        if (took >= SLOW_COMMIT_MS)
            log_limited(LOG_WARN, "router", "router.slow_commit", "event=slow_commit ms=%" PRId64 " events=%zu",
                        took, self->n_entries);
        self->stats.commits++;
        if (rc == JOURNAL_OK) {
            subs_saved(self->subs);
            self->last_flush_ms = codec_mono_ms();
        }
    }
    for (size_t i = 0; i < self->n_entries; i++) {
        s_request_t *r = &self->reqs[self->entry_req[i]];
        Civibus__V1__PublishResult *res = &r->results[self->entry_idx[i]];
        const journal_entry_t *e = &self->entries[i];
        if (rc == JOURNAL_OK) {
            res->seq = e->seq;
            res->duplicate = e->duplicate;
            metrics_event(self->metrics, e->source, e->duplicate);
            if (e->duplicate)
                self->stats.duplicates++;
            else
                self->stats.accepted++;
        } else if (rc == JOURNAL_FULL || rc == JOURNAL_NOSPACE) {
            res->code = C(STORAGE_FULL);
            res->reason = strdup(rc == JOURNAL_FULL
                                     ? "the log reached its storage ceiling (map_size_max); retry later"
                                     : "the hub's disk is full; retry later");
            s_refuse_count(self, e->source, res->code, res->reason);
        } else {
            res->code = C(INTERNAL);
            res->reason = strdup("the hub could not write its log; retry later");
            s_refuse_count(self, e->source, res->code, res->reason);
        }
    }
    if (rc != JOURNAL_OK)
        log_limited(LOG_ERROR, "router", "router.commit", "event=commit_failed events=%zu error=\"%s\"",
                    self->n_entries, journal_strerror(rc));
    for (size_t i = 0; i < self->n_reqs; i++) {
        s_request_t *r = &self->reqs[i];
        Civibus__V1__PublishReply reply = CIVIBUS__V1__PUBLISH_REPLY__INIT;
        reply.request_id = r->request_id;
        reply.n_results = r->n;
        reply.results = r->result_ptrs;
        Civibus__V1__HubMessage msg = CIVIBUS__V1__HUB_MESSAGE__INIT;
        msg.body_case = CIVIBUS__V1__HUB_MESSAGE__BODY_PUBLISH_REPLY;
        msg.publish_reply = &reply;
        int wrc = wire_send(self->sock, &r->peer, &msg);
        metrics_publish_replied(self->metrics, metrics_clock_us() - r->received_us);
        if (wrc != WIRE_OK) {
            /* The events are durable; the publisher's retry gets them
             * answered as duplicates with the same sequence numbers. */
            self->stats.replies_lost++;
            log_limited(LOG_WARN, "router", "router.reply", "event=publish_reply_lost reason=%s",
                        wrc == WIRE_BUSY ? "peer_queue_full" : "peer_gone");
        }
        for (size_t j = 0; j < r->n; j++) {
            if (r->results[j].code != C(OK))
                free(r->results[j].reason);
        }
        s_request_free(r);
    }
    self->n_reqs = 0;
    self->n_entries = 0;
    self->n_held = 0;
}

/* ---- other requests ------------------------------------------------------ */

static void s_on_subscribe(router_t *self, const wire_peer_t *peer, const char *agency, const char *key,
                           const Civibus__V1__Subscribe *req)
{
    char reason[256] = "";
    uint64_t next = 0;
    s_code_t code = C(UNAVAILABLE);
    if (quota_subscription(self->quota, agency, subs_agency_count(self->subs, agency, req->name), reason,
                           sizeof reason) == QUOTA_OK)
        code = subs_open(self->subs, agency, key, peer, req, &next, reason, sizeof reason);
    if (code != C(OK)) {
        s_refuse_count(self, agency, code, reason);
        char quoted[600];
        log_limited(LOG_WARN, "router", "subscribe_refused", "event=subscribe_refused agency=%s code=%s reason=%s",
                    agency, codec_error_name(code), log_quote(reason, quoted, sizeof quoted));
        if (code == C(BEHIND_RETENTION))
            wire_send_behind(self->sock, peer, 0, req->name, next, journal_first_seq(self->journal) - 1);
        else
            wire_send_error(self->sock, peer, 0, req->name, code, reason);
        return;
    }
    Civibus__V1__SubscribeReply rep = CIVIBUS__V1__SUBSCRIBE_REPLY__INIT;
    rep.subscription = req->name;
    rep.next_seq = next;
    rep.last_seq = journal_last_seq(self->journal);
    rep.hub_instance = self->instance;
    rep.credit = req->credit < self->cfg->credit_max ? req->credit : (uint32_t)self->cfg->credit_max;
    Civibus__V1__HubMessage msg = CIVIBUS__V1__HUB_MESSAGE__INIT;
    msg.body_case = CIVIBUS__V1__HUB_MESSAGE__BODY_SUBSCRIBE_REPLY;
    msg.subscribe_reply = &rep;
    wire_send(self->sock, peer, &msg);
}

static void s_session_answer(router_t *self, const wire_peer_t *peer, const char *agency, const char *name,
                             s_code_t code)
{
    if (code == C(OK))
        return;
    const char *reason = "no such subscription on this connection; subscribe again";
    s_refuse_count(self, agency, code, reason);
    log_limited(LOG_INFO, "router", "router.nosession", "event=unknown_subscription subscription=%s",
                codec_name_valid(name) ? name : "-");
    wire_send_error(self->sock, peer, 0, name, code, reason);
}

typedef struct {
    const policy_t *policy;
    const char *agency;
} s_replay_match_t;

/* A replay shows an agency what it may subscribe to, nothing more. */
static bool s_replay_allows(const void *arg, const char *type, size_t len)
{
    const s_replay_match_t *m = arg;
    return policy_allows(m->policy, m->agency, POLICY_SUBSCRIBE, type, len, NULL);
}

/* A replay asked for entries retention deleted: never start after them
 * silently. */
static void s_replay_behind(router_t *self, const wire_peer_t *peer, const char *agency, uint64_t request_id,
                            uint64_t lost_from, uint64_t lost_to)
{
    s_refuse_count(self, agency, C(BEHIND_RETENTION), "replay asked for entries retention deleted");
    log_limited(LOG_INFO, "router", "router.replay", "event=replay_refused agency=%s code=behind_retention "
                "lost_from=%" PRIu64 " lost_to=%" PRIu64, agency, lost_from, lost_to);
    wire_send_behind(self->sock, peer, request_id, NULL, lost_from, lost_to);
}

static void s_on_replay(router_t *self, const wire_peer_t *peer, const char *agency, const Civibus__V1__Replay *req)
{
    uint64_t first = journal_first_seq(self->journal), last = journal_last_seq(self->journal);
    if (first == 0)
        first = last + 1;
    uint64_t from = first;
    const Civibus__V1__StartPoint *sp = req->from;
    Civibus__V1__StartPoint__Kind kind = sp ? sp->kind : CIVIBUS__V1__START_POINT__KIND__FIRST;
    if (kind == CIVIBUS__V1__START_POINT__KIND__SEQ) {
        if (sp->seq == 0) {
            s_refuse_count(self, agency, C(BAD_REQUEST), "sequence numbers start at 1");
            log_limited(LOG_WARN, "router", "router.badreq", "event=replay_refused reason=seq_zero");
            wire_send_error(self->sock, peer, req->request_id, NULL, C(BAD_REQUEST), "sequence numbers start at 1");
            return;
        }
        from = sp->seq;
        if (from < first) {
            s_replay_behind(self, peer, agency, req->request_id, from, first - 1);
            return;
        }
    } else if (kind == CIVIBUS__V1__START_POINT__KIND__TIME) {
        journal_retention_stats_t rs;
        journal_retention_stats(self->journal, &rs);
        if (rs.anchor_seq && sp->time <= rs.anchor_us) {
            s_replay_behind(self, peer, agency, req->request_id, 0, first - 1);
            return;
        }
        if (journal_seq_at_time(self->journal, sp->time, &from) != JOURNAL_OK) {
            wire_send_error(self->sock, peer, req->request_id, NULL, C(INTERNAL), "cannot search the log by time");
            return;
        }
    } else if (kind != CIVIBUS__V1__START_POINT__KIND__FIRST && kind != CIVIBUS__V1__START_POINT__KIND__CURSOR) {
        s_refuse_count(self, agency, C(BAD_REQUEST), "replay starts at first, a sequence number or a time");
        wire_send_error(self->sock, peer, req->request_id, NULL, C(BAD_REQUEST),
                        "replay starts at first, a sequence number or a time");
        return;
    }
    size_t count = req->count && req->count < self->cfg->replay_max ? req->count : self->cfg->replay_max;
    batch_t *b = &self->replay;
    s_replay_match_t match = {.policy = self->policy, .agency = agency};
    int rc = batch_fill(b, self->journal, from, count, REPLAY_MAX_BYTES, count, self->policy ? s_replay_allows : NULL,
                        &match);
    if (rc != JOURNAL_OK) {
        s_refuse_count(self, agency, C(INTERNAL), "cannot read the log");
        log_limited(LOG_ERROR, "router", "router.replay", "event=replay_failed error=\"%s\"", journal_strerror(rc));
        wire_send_error(self->sock, peer, req->request_id, NULL, C(INTERNAL), "cannot read the log");
        return;
    }
    Civibus__V1__ReplayReply rep = CIVIBUS__V1__REPLAY_REPLY__INIT;
    rep.request_id = req->request_id;
    rep.n_events = b->n;
    rep.events = b->ptrs;
    /* Continue after what was looked at: entries the policy withheld were
     * passed over, not lost. */
    rep.next_seq = b->scanned_to ? b->scanned_to + 1 : (from > last ? from : last + 1);
    rep.last_seq = last;
    Civibus__V1__HubMessage msg = CIVIBUS__V1__HUB_MESSAGE__INIT;
    msg.body_case = CIVIBUS__V1__HUB_MESSAGE__BODY_REPLAY_REPLY;
    msg.replay_reply = &rep;
    if (wire_send(self->sock, peer, &msg) != WIRE_OK)
        self->stats.replies_lost++;
    batch_release(b);
}

static void s_on_nack(router_t *self, const wire_peer_t *peer, const char *agency, const Civibus__V1__Nack *req)
{
    /* The reason is stored and shown to people and other decoders later. */
    if (strnlen(req->reason, JOURNAL_REASON_MAX + 1) > JOURNAL_REASON_MAX || !codec_utf8_valid(req->reason)) {
        char reason[96];
        snprintf(reason, sizeof reason, "a nack's reason must be valid UTF-8 of at most %d bytes",
                 JOURNAL_REASON_MAX);
        s_refuse_count(self, agency, C(BAD_REQUEST), reason);
        log_limited(LOG_WARN, "router", "nack_refused.bad_request",
                    "event=nack_refused agency=%s code=bad_request reason=bad_reason", agency);
        wire_send_error(self->sock, peer, 0, codec_name_valid(req->subscription) ? req->subscription : NULL,
                        C(BAD_REQUEST), reason);
        return;
    }
    s_session_answer(self, peer, agency, req->subscription,
                     subs_nack(self->subs, agency, peer, req->subscription, req->seq, req->reason));
}

static void s_on_dead_letters(router_t *self, const wire_peer_t *peer, const char *agency,
                              const Civibus__V1__DeadLettersRequest *req)
{
    char reason[256] = "";
    Civibus__V1__DeadLettersReply rep = CIVIBUS__V1__DEAD_LETTERS_REPLY__INIT;
    s_code_t code = deadletter_request(self->journal, self->subs, self->policy, agency, req, &rep, reason,
                                       sizeof reason);
    if (code != C(OK)) {
        char key[64], quoted[600];
        snprintf(key, sizeof key, "dead_letters_refused.%s", codec_error_name(code));
        s_refuse_count(self, agency, code, reason);
        log_limited(LOG_WARN, "router", key, "event=dead_letters_refused agency=%s code=%s reason=%s", agency,
                    codec_error_name(code), log_quote(reason, quoted, sizeof quoted));
        /* No subscription in the error: it answers the request, not a session. */
        wire_send_error(self->sock, peer, req->request_id, NULL, code, reason);
    } else {
        Civibus__V1__HubMessage msg = CIVIBUS__V1__HUB_MESSAGE__INIT;
        msg.body_case = CIVIBUS__V1__HUB_MESSAGE__BODY_DEAD_LETTERS_REPLY;
        msg.dead_letters_reply = &rep;
        if (wire_send(self->sock, peer, &msg) != WIRE_OK)
            self->stats.replies_lost++;
    }
    deadletter_reply_free(&rep);
}

static void s_on_ping(router_t *self, const wire_peer_t *peer, const Civibus__V1__Ping *req)
{
    subs_touch(self->subs, peer);
    Civibus__V1__Pong pong = CIVIBUS__V1__PONG__INIT;
    pong.request_id = req->request_id;
    pong.hub_instance = self->instance;
    pong.last_seq = journal_last_seq(self->journal);
    Civibus__V1__HubMessage msg = CIVIBUS__V1__HUB_MESSAGE__INIT;
    msg.body_case = CIVIBUS__V1__HUB_MESSAGE__BODY_PONG;
    msg.pong = &pong;
    wire_send(self->sock, peer, &msg);
}

static void s_on_status(router_t *self, const wire_peer_t *peer, const char *agency,
                        const Civibus__V1__StatusRequest *req)
{
    Civibus__V1__StatusReply st = CIVIBUS__V1__STATUS_REPLY__INIT;
    st.request_id = req->request_id;
    st.version = CIVIBUS_VERSION;
    st.hub_instance = self->instance;
    st.first_seq = journal_first_seq(self->journal);
    st.last_seq = journal_last_seq(self->journal);
    st.started_at = self->started_at;
    if (subs_status(self->subs, agency, &st) != 0) {
        subs_status_free(&st);
        wire_send_error(self->sock, peer, req->request_id, NULL, C(INTERNAL), "cannot list subscriptions");
        return;
    }
    /* The caller's own keys close to their not-after (an entry holds at
     * most KEYFILE_MAX_KEYS keys). */
    auth_expiring_t exp[KEYFILE_MAX_KEYS + KEYFILE_MAX_SIGN];
    char texts[KEYFILE_MAX_KEYS + KEYFILE_MAX_SIGN][200];
    char *warnings[KEYFILE_MAX_KEYS + KEYFILE_MAX_SIGN];
    int64_t now = (int64_t)time(NULL);
    size_t n_exp = 0;
    if (self->cfg->key_expiry_warn_days)
        n_exp = auth_expiring(self->auth, agency, now, (int64_t)self->cfg->key_expiry_warn_days * DAY_S, exp,
                              KEYFILE_MAX_KEYS + KEYFILE_MAX_SIGN);
    if (n_exp > KEYFILE_MAX_KEYS + KEYFILE_MAX_SIGN)
        n_exp = KEYFILE_MAX_KEYS + KEYFILE_MAX_SIGN;
    for (size_t i = 0; i < n_exp; i++) {
        char when[KEYFILE_TIME_LEN];
        keyfile_time_format(exp[i].not_after, when, sizeof when);
        snprintf(texts[i], sizeof texts[i],
                 "%s %.8s of %s expires at %s (in %" PRId64 " days); rotate it: civibus registry rotate",
                 exp[i].kind, exp[i].key, agency, when, (exp[i].not_after - now) / DAY_S);
        warnings[i] = texts[i];
    }
    st.n_warnings = n_exp;
    st.warnings = n_exp ? warnings : NULL;
    Civibus__V1__HubMessage msg = CIVIBUS__V1__HUB_MESSAGE__INIT;
    msg.body_case = CIVIBUS__V1__HUB_MESSAGE__BODY_STATUS_REPLY;
    msg.status_reply = &st;
    wire_send(self->sock, peer, &msg);
    st.n_warnings = 0;
    st.warnings = NULL;
    subs_status_free(&st);
}

/* The latest signed checkpoint, for whoever keeps them outside the hub
 * (docs/LOG.md). It is the one the hub made last, not a fresh one: a
 * request must not cost the hub a signature and an fsync. */
static void s_on_checkpoint(router_t *self, const wire_peer_t *peer, const char *agency,
                            const Civibus__V1__CheckpointRequest *req)
{
    logfile_checkpoint_t cp;
    int rc = self->chain ? journal_checkpoint_last(self->journal, &cp) : JOURNAL_NOTFOUND;
    if (rc != JOURNAL_OK) {
        s_code_t code = rc == JOURNAL_NOTFOUND ? C(UNAVAILABLE) : C(INTERNAL);
        const char *reason = !self->chain           ? "this hub signs no checkpoints (it has no signing_key)"
                             : code == C(INTERNAL) ? "cannot read the log"
                                                   : "no checkpoint yet: the log is empty";
        s_refuse_count(self, agency, code, reason);
        wire_send_error(self->sock, peer, req->request_id, NULL, code, reason);
        return;
    }
    Civibus__V1__CheckpointReply rep = CIVIBUS__V1__CHECKPOINT_REPLY__INIT;
    rep.request_id = req->request_id;
    rep.seq = cp.seq;
    rep.chain = (ProtobufCBinaryData){.len = sizeof cp.chain, .data = cp.chain};
    rep.time = cp.time;
    rep.key_id = (ProtobufCBinaryData){.len = sizeof cp.key_id, .data = cp.key_id};
    rep.signature = (ProtobufCBinaryData){.len = sizeof cp.sig, .data = cp.sig};
    rep.last_seq = journal_last_seq(self->journal);
    Civibus__V1__HubMessage msg = CIVIBUS__V1__HUB_MESSAGE__INIT;
    msg.body_case = CIVIBUS__V1__HUB_MESSAGE__BODY_CHECKPOINT_REPLY;
    msg.checkpoint_reply = &rep;
    if (wire_send(self->sock, peer, &msg) != WIRE_OK)
        self->stats.replies_lost++;
}

/* Log every valid key of the registry expiring within key_expiry_warn_days:
 * at start, after each reload, and daily. */
static void s_warn_expiring(router_t *self)
{
    self->last_key_warn_ms = codec_mono_ms();
    chain_check_published(self->chain, self->cfg->registry, self->cfg->key_expiry_warn_days);
    if (!self->cfg->key_expiry_warn_days)
        return;
    int64_t now = (int64_t)time(NULL), within = (int64_t)self->cfg->key_expiry_warn_days * DAY_S;
    size_t n = auth_expiring(self->auth, NULL, now, within, NULL, 0);
    auth_expiring_t *exp = n ? calloc(n, sizeof *exp) : NULL;
    if (!exp)
        return;
    n = auth_expiring(self->auth, NULL, now, within, exp, n);
    for (size_t i = 0; i < n; i++) {
        char when[KEYFILE_TIME_LEN];
        keyfile_time_format(exp[i].not_after, when, sizeof when);
        log_warn("auth", "event=key_expiring agency=%s key=%.8s not_after=%s days=%" PRId64 " kind=%s", exp[i].agency,
                 exp[i].key, when, (exp[i].not_after - now) / DAY_S, exp[i].kind[0] == 's' ? "sign" : "curve");
    }
    free(exp);
}

/* What an Error refusing the whole of msg carries: the request id of a
 * request that has one, else the subscription name (NULL when invalid). */
static void s_request_ids(const codec_client_msg_t *msg, uint64_t *request_id_out, const char **sub_out)
{
    uint64_t request_id = 0;
    const char *sub = NULL;
    switch (msg->body_case) {
    case CIVIBUS__V1__CLIENT_MESSAGE__BODY_PUBLISH: request_id = msg->publish->request_id; break;
    case CIVIBUS__V1__CLIENT_MESSAGE__BODY_REPLAY: request_id = msg->replay->request_id; break;
    case CIVIBUS__V1__CLIENT_MESSAGE__BODY_PING: request_id = msg->ping->request_id; break;
    case CIVIBUS__V1__CLIENT_MESSAGE__BODY_STATUS: request_id = msg->status->request_id; break;
    case CIVIBUS__V1__CLIENT_MESSAGE__BODY_CHECKPOINT: request_id = msg->checkpoint->request_id; break;
    case CIVIBUS__V1__CLIENT_MESSAGE__BODY_SUBSCRIBE: sub = msg->subscribe->name; break;
    case CIVIBUS__V1__CLIENT_MESSAGE__BODY_ACK: sub = msg->ack->subscription; break;
    case CIVIBUS__V1__CLIENT_MESSAGE__BODY_CREDIT: sub = msg->credit->subscription; break;
    case CIVIBUS__V1__CLIENT_MESSAGE__BODY_UNSUBSCRIBE: sub = msg->unsubscribe->subscription; break;
    case CIVIBUS__V1__CLIENT_MESSAGE__BODY_NACK: sub = msg->nack->subscription; break;
    case CIVIBUS__V1__CLIENT_MESSAGE__BODY_DEAD_LETTERS: request_id = msg->dead_letters->request_id; break;
    default: break;
    }
    if (sub && !codec_name_valid(sub))
        sub = NULL;
    *request_id_out = request_id;
    *sub_out = sub;
}

/* Answer a request from a connection whose key was revoked or expired after
 * its handshake (ZAP checks keys only then): an Error for the whole request,
 * and a subscription it touches is closed so that deliveries stop. */
static void s_refuse_key(router_t *self, const wire_peer_t *peer, const char *agency, const char *key,
                         auth_key_status_t status, const codec_client_msg_t *msg)
{
    uint64_t request_id;
    const char *sub;
    s_request_ids(msg, &request_id, &sub);
    /* Whatever this connection follows stops too, not only the subscription
     * this message names. */
    subs_drop_peer(self->subs, peer, "key_no_longer_valid");
    const char *reason = status == AUTH_KEY_REVOKED   ? "key revoked"
                         : status == AUTH_KEY_EXPIRED ? "key expired"
                                                      : "key not registered";
    s_refuse_count(self, agency, C(NOT_AUTHORISED), reason);
    self->stats.key_refused++;
    metrics_auth_failure(self->metrics, METRICS_KEY_REFUSED);
    log_limited(LOG_WARN, "router", "message_refused.key",
                "event=message_refused agency=%s code=not_authorised reason=key_%s key=%.8s", agency,
                auth_key_status_name(status), key ? key : "-");
    wire_send_error(self->sock, peer, request_id, sub, C(NOT_AUTHORISED), reason);
}

/* Answer a request on a connection over its agency's ceiling of live
 * connections (hub/quota.h): an Error for the whole request. */
static void s_refuse_connection(router_t *self, const wire_peer_t *peer, const char *agency, const char *reason,
                                const codec_client_msg_t *msg)
{
    uint64_t request_id;
    const char *sub;
    s_request_ids(msg, &request_id, &sub);
    s_refuse_count(self, agency, C(UNAVAILABLE), reason);
    log_limited(LOG_WARN, "router", "message_refused.connection_limit",
                "event=message_refused agency=%s code=unavailable reason=connection_limit", agency);
    wire_send_error(self->sock, peer, request_id, sub, C(UNAVAILABLE), reason);
}

/* fd: the connection's descriptor (ZMQ_SRCFD); key: its key (ZAP metadata),
 * key_status: the key's status now. */
static void s_dispatch(router_t *self, const wire_peer_t *peer, int fd, const char *agency, const char *key,
                       auth_key_status_t key_status, const uint8_t *data, size_t len)
{
    codec_client_msg_t *msg = NULL;
    int rc = codec_client_decode(data, len, self->cfg->max_message_size, &msg);
    uint64_t request_id = 0;
    if (rc == CODEC_TOO_LARGE) {
        /* Decode it anyway (the transport bounded it) for its request id, so
         * the sender can fail that request instead of retrying it forever. */
        codec_client_msg_t *big = NULL;
        if (codec_client_decode(data, len, self->cfg->max_message_size + TRANSPORT_SLACK, &big) == CODEC_OK &&
            big->body_case == CIVIBUS__V1__CLIENT_MESSAGE__BODY_PUBLISH)
            request_id = big->publish->request_id;
        codec_client_free(&big);
    }
    if (rc != CODEC_OK) {
        s_code_t code = rc == CODEC_TOO_LARGE ? C(TOO_LARGE) : C(MALFORMED);
        const char *reason = code == C(TOO_LARGE) ? "message exceeds max_message_size"
                                                  : "message is not a valid ClientMessage encoding";
        s_refuse_count(self, agency, code, reason);
        const char *kind = code == C(TOO_LARGE) ? "message_refused.too_large" : "message_refused.malformed";
        log_limited(LOG_WARN, "router", kind, "event=message_refused agency=%s code=%s bytes=%zu", agency,
                    codec_error_name(code), len);
        wire_send_error(self->sock, peer, request_id, NULL, code, reason);
        return;
    }
    if (msg->version != CODEC_PROTOCOL_VERSION && msg->version != 0) {
        char reason[96];
        snprintf(reason, sizeof reason, "protocol version %u is not supported; this hub speaks %d", msg->version,
                 CODEC_PROTOCOL_VERSION);
        s_refuse_count(self, agency, C(UNSUPPORTED_VERSION), reason);
        log_limited(LOG_WARN, "router", "message_refused.unsupported_version",
                    "event=message_refused agency=%s code=unsupported_version version=%u", agency, msg->version);
        wire_send_error(self->sock, peer, 0, NULL, C(UNSUPPORTED_VERSION), reason);
        codec_client_free(&msg);
        return;
    }
    if (msg->version == 0 || msg->body_case == CIVIBUS__V1__CLIENT_MESSAGE__BODY__NOT_SET) {
        /* An empty frame decodes as an empty message: nothing was asked. */
        s_refuse_count(self, agency, C(MALFORMED), "message has no version or no request");
        log_limited(LOG_WARN, "router", "message_refused.malformed",
                    "event=message_refused agency=%s code=malformed reason=no_version_or_request", agency);
        wire_send_error(self->sock, peer, 0, NULL, C(MALFORMED), "message has no version or no request");
        codec_client_free(&msg);
        return;
    }
    if (key_status != AUTH_KEY_VALID) {
        s_refuse_key(self, peer, agency, key, key_status, msg);
        codec_client_free(&msg);
        return;
    }
    char reason[256];
    if (quota_connection(self->quota, fd, agency, reason, sizeof reason) != QUOTA_OK) {
        s_refuse_connection(self, peer, agency, reason, msg);
        codec_client_free(&msg);
        return;
    }
    switch (msg->body_case) {
    case CIVIBUS__V1__CLIENT_MESSAGE__BODY_PUBLISH:
        s_on_publish(self, peer, agency, &msg);
        break;
    case CIVIBUS__V1__CLIENT_MESSAGE__BODY_SUBSCRIBE:
        s_on_subscribe(self, peer, agency, key, msg->subscribe);
        break;
    case CIVIBUS__V1__CLIENT_MESSAGE__BODY_ACK:
        s_session_answer(self, peer, agency, msg->ack->subscription,
                         subs_ack(self->subs, agency, peer, msg->ack->subscription, msg->ack->seq));
        break;
    case CIVIBUS__V1__CLIENT_MESSAGE__BODY_CREDIT:
        s_session_answer(self, peer, agency, msg->credit->subscription,
                         subs_credit(self->subs, agency, peer, msg->credit->subscription, msg->credit->credit));
        break;
    case CIVIBUS__V1__CLIENT_MESSAGE__BODY_UNSUBSCRIBE:
        s_session_answer(self, peer, agency, msg->unsubscribe->subscription,
                         subs_close(self->subs, agency, peer, msg->unsubscribe->subscription));
        break;
    case CIVIBUS__V1__CLIENT_MESSAGE__BODY_REPLAY:
        s_on_replay(self, peer, agency, msg->replay);
        break;
    case CIVIBUS__V1__CLIENT_MESSAGE__BODY_PING:
        s_on_ping(self, peer, msg->ping);
        break;
    case CIVIBUS__V1__CLIENT_MESSAGE__BODY_STATUS:
        s_on_status(self, peer, agency, msg->status);
        break;
    case CIVIBUS__V1__CLIENT_MESSAGE__BODY_NACK:
        s_on_nack(self, peer, agency, msg->nack);
        break;
    case CIVIBUS__V1__CLIENT_MESSAGE__BODY_DEAD_LETTERS:
        s_on_dead_letters(self, peer, agency, msg->dead_letters);
        break;
    case CIVIBUS__V1__CLIENT_MESSAGE__BODY_CHECKPOINT:
        s_on_checkpoint(self, peer, agency, msg->checkpoint);
        break;
    default:
        s_refuse_count(self, agency, C(BAD_REQUEST), "unknown request");
        log_limited(LOG_WARN, "router", "message_refused.bad_request",
                    "event=message_refused agency=%s code=bad_request reason=unknown_request", agency);
        wire_send_error(self->sock, peer, 0, NULL, C(BAD_REQUEST), "unknown request");
        break;
    }
    codec_client_free(&msg);
}

static void s_on_monitor(router_t *self);

/* Label the connection a message came over (peers). A client that connects
 * and sends at once can have its message read in the turn that accepted it,
 * before the monitor's ACCEPTED event; and its HANDSHAKE_SUCCEEDED, sent
 * before its first message, must be counted before that message marks it
 * handshaken. So the monitor is read before a connection's first message
 * (once per connection: peers_handshaken is an array index). A connection
 * still unknown then has closed since. */
static void s_seen(router_t *self, int fd, const wire_peer_t *peer, const char *agency, const char *key)
{
    if (self->monitor && !peers_handshaken(self->peers, fd))
        s_on_monitor(self);
    peers_seen(self->peers, fd, peer, agency, key);
}

/* Read one message. Returns 1 when one was handled, 0 when none was waiting,
 * -1 on a socket error. */
static int s_read_one(router_t *self)
{
    zmq_msg_t part;
    wire_peer_t peer = {.len = 0};
    zmq_msg_init(&part);
    if (zmq_msg_recv(&part, self->sock, ZMQ_DONTWAIT) < 0) {
        int e = zmq_errno();
        zmq_msg_close(&part);
        return (e == EAGAIN || e == EINTR) ? 0 : -1;
    }
    size_t idlen = zmq_msg_size(&part);
    peer.len = (uint8_t)(idlen > sizeof peer.id ? sizeof peer.id : idlen);
    memcpy(peer.id, zmq_msg_data(&part), peer.len);
    int more = zmq_msg_more(&part);
    zmq_msg_close(&part);
    if (!more)
        return 1; /* a ROUTER always prefixes the routing id; nothing else came */
    zmq_msg_init(&part);
    if (zmq_msg_recv(&part, self->sock, 0) < 0) {
        zmq_msg_close(&part);
        return -1;
    }
    bool extra = zmq_msg_more(&part);
    const char *agency = zmq_msg_gets(&part, "User-Id");
    char who[CODEC_AGENCY_MAX + 1];
    snprintf(who, sizeof who, "%s", agency ? agency : "");
    if (extra) {
        /* The protocol is one frame per message; drop the rest whole. */
        zmq_msg_t rest;
        do {
            zmq_msg_init(&rest);
            if (zmq_msg_recv(&rest, self->sock, 0) < 0) {
                zmq_msg_close(&rest);
                break;
            }
            more = zmq_msg_more(&rest);
            zmq_msg_close(&rest);
        } while (more);
        s_refuse_count(self, codec_agency_valid(who) ? who : NULL, C(MALFORMED), "a message must be exactly one frame");
        log_limited(LOG_WARN, "router", "message_refused.malformed",
                    "event=message_refused agency=%s code=malformed reason=multipart", who[0] ? who : "-");
        wire_send_error(self->sock, &peer, 0, NULL, C(MALFORMED), "a message must be exactly one frame");
    } else if (!agency || !codec_agency_valid(who)) {
        /* Cannot happen with ZAP enforced; refuse rather than guess. */
        s_refuse_count(self, NULL, C(NOT_AUTHORISED), "connection has no authenticated agency");
        log_limited(LOG_ERROR, "router", "router.noid", "event=message_without_identity");
        wire_send_error(self->sock, &peer, 0, NULL, C(NOT_AUTHORISED), "connection has no authenticated agency");
    } else {
        /* ZAP admitted the key at the handshake; it may have been revoked or
         * expired since. */
        const char *key = zmq_msg_gets(&part, AUTH_KEY_PROPERTY);
        auth_key_status_t ks = auth_key_status(self->auth, who, key, (int64_t)time(NULL));
        int fd = zmq_msg_get(&part, ZMQ_SRCFD);
        s_seen(self, fd, &peer, who, key);
        s_dispatch(self, &peer, fd, who, key, ks, zmq_msg_data(&part), zmq_msg_size(&part));
    }
    zmq_msg_close(&part);
    return 1;
}

/* ---- handshake monitor --------------------------------------------------- */

/* Start the ROUTER's monitor and connect self->monitor to it. A hub without
 * it still serves, only blind to failed handshakes, so a failure is a warning,
 * not a reason to refuse to start. */
static void s_monitor_open(router_t *self)
{
    int err;
    if (zmq_socket_monitor(self->sock, MONITOR_ENDPOINT, MONITOR_EVENTS) != 0) {
        err = zmq_errno();
        goto failed;
    }
    self->monitor = zmq_socket(self->ctx, ZMQ_PAIR);
    if (!self->monitor) {
        err = zmq_errno();
        goto stop_monitor;
    }
    int linger = 0, unlimited = 0;
    zmq_setsockopt(self->monitor, ZMQ_LINGER, &linger, sizeof linger);
    /* No high-water mark on the events' way to us (libzmq sums both ends'
     * marks for inproc, and 0 on either end means none): an event dropped, or
     * libzmq's I/O thread blocked on a full queue, would leave peers counting
     * a closed connection, and quota holding its place. */
    zmq_setsockopt(self->monitor, ZMQ_RCVHWM, &unlimited, sizeof unlimited);
    if (zmq_connect(self->monitor, MONITOR_ENDPOINT) != 0) {
        err = zmq_errno();
        goto close_pair;
    }
    return;
close_pair:
    zmq_close(self->monitor);
    self->monitor = NULL;
stop_monitor:
    zmq_socket_monitor(self->sock, NULL, 0);
failed:
    log_warn("router", "event=monitor_failed error=\"%s\" effect=\"failed handshakes are not logged, connections "
             "are not counted, agency_connections_max is not enforced\"",
             zmq_strerror(err));
}

/* Stop the monitor before the ROUTER closes and the context terminates: the
 * monitor's own PAIR inside libzmq must be gone, and ours closed, or
 * zmq_ctx_term waits on them. */
static void s_monitor_close(router_t *self)
{
    if (!self->monitor)
        return;
    zmq_socket_monitor(self->sock, NULL, 0);
    zmq_close(self->monitor);
    self->monitor = NULL;
}

/* Read one monitor event: frame 1 is a 16-bit event id and a 32-bit value
 * (native byte order), frame 2 the endpoint. Returns 1 when one was read, 0
 * when none was waiting. */
static int s_monitor_read(router_t *self, uint16_t *event, uint32_t *value, char *addr, size_t addr_len)
{
    zmq_msg_t frame;
    zmq_msg_init(&frame);
    if (zmq_msg_recv(&frame, self->monitor, ZMQ_DONTWAIT) < 0) {
        zmq_msg_close(&frame);
        return 0;
    }
    bool ok = zmq_msg_size(&frame) == 6;
    if (ok) {
        const uint8_t *d = zmq_msg_data(&frame);
        memcpy(event, d, sizeof *event);
        memcpy(value, d + 2, sizeof *value);
    }
    int more = zmq_msg_more(&frame);
    zmq_msg_close(&frame);
    addr[0] = '\0';
    while (more) {
        zmq_msg_init(&frame);
        if (zmq_msg_recv(&frame, self->monitor, 0) < 0) {
            zmq_msg_close(&frame);
            break;
        }
        size_t n = zmq_msg_size(&frame);
        if (!addr[0] && addr_len) {
            n = n < addr_len - 1 ? n : addr_len - 1;
            memcpy(addr, zmq_msg_data(&frame), n);
            addr[n] = '\0';
        }
        more = zmq_msg_more(&frame);
        zmq_msg_close(&frame);
    }
    if (!ok)
        *event = 0;
    return 1;
}

/* Log a handshake libzmq gave up on, with the peer's address when known.
 * The code is an errno for no_detail, a ZMQ_PROTOCOL_ERROR_* for protocol
 * (hex reads better: 0x11000002 is a mechanism mismatch). libzmq's v1
 * monitor names the hub's listening endpoint, hence endpoint= as well. */
static void s_log_handshake_failed(uint16_t event, uint32_t code, const char *peer, const char *endpoint)
{
    char address[300];
    log_quote(endpoint[0] ? endpoint : "-", address, sizeof address);
    if (event == ZMQ_EVENT_HANDSHAKE_FAILED_NO_DETAIL)
        log_limited(LOG_WARN, "router", "router.handshake", "event=handshake_failed reason=no_detail code=%" PRIu32
                    " peer=%s endpoint=%s", code, peer, address);
    else
        log_limited(LOG_WARN, "router", "router.handshake", "event=handshake_failed reason=protocol code=0x%08" PRIx32
                    " peer=%s endpoint=%s", code, peer, address);
}

/* A connection closed (DISCONNECTED names it): report the failed handshake
 * read just before, or a connection that ended without any, with the peer's
 * address recorded at ACCEPTED. libzmq (one I/O thread) sends a failure
 * event immediately before the DISCONNECTED of the same connection; random
 * bytes (taken for ZMTP 1.0 and dropped, ZAP being enforced) send none. A
 * ZAP refusal (HANDSHAKE_FAILED_AUTH) is counted but not logged again: the
 * ZAP handler already wrote handshake_refused with the agency, key and
 * address. */
static void s_on_closed(router_t *self, int fd, const char *endpoint)
{
    char peer[PEERS_ADDR_MAX], quoted[PEERS_ADDR_MAX + 8];
    peers_closed_t closed = peers_disconnected(self->peers, fd, peer);
    log_quote(peer, quoted, sizeof quoted);
    uint16_t failed = self->fail_event;
    self->fail_event = 0;
    if (failed) {
        if (failed != ZMQ_EVENT_HANDSHAKE_FAILED_AUTH)
            s_log_handshake_failed(failed, self->fail_code, quoted, endpoint);
        return;
    }
    if (closed != PEERS_CLOSED_EARLY)
        return;
    self->stats.handshakes_failed++;
    metrics_auth_failure(self->metrics, METRICS_HANDSHAKE_FAILED);
    log_limited(LOG_WARN, "router", "router.no_handshake", "event=connection_closed_before_handshake peer=%s", quoted);
}

/* Read the monitor's events: connections opened, completing their handshake
 * and closed go to peers, and every handshake libzmq gave up on is counted
 * and logged when its connection closes (s_on_closed). */
static void s_on_monitor(router_t *self)
{
    uint16_t event;
    uint32_t value;
    char addr[256];
    bool closed = false;
    for (int i = 0; i < READ_BURST && s_monitor_read(self, &event, &value, addr, sizeof addr); i++) {
        if (self->fail_event && event != ZMQ_EVENT_DISCONNECTED) {
            /* Not followed by its connection's close: log it unnamed. */
            if (self->fail_event != ZMQ_EVENT_HANDSHAKE_FAILED_AUTH)
                s_log_handshake_failed(self->fail_event, self->fail_code, "-", addr);
            self->fail_event = 0;
        }
        switch (event) {
        case ZMQ_EVENT_ACCEPTED: /* value: the connection's descriptor */
            peers_accepted(self->peers, (int)value);
            break;
        case ZMQ_EVENT_HANDSHAKE_SUCCEEDED: /* value: 0, not the descriptor */
            peers_handshake_ok(self->peers);
            break;
        case ZMQ_EVENT_DISCONNECTED: /* value: the connection's descriptor */
            s_on_closed(self, (int)value, addr);
            closed = true;
            break;
        case ZMQ_EVENT_HANDSHAKE_FAILED_NO_DETAIL:
        case ZMQ_EVENT_HANDSHAKE_FAILED_PROTOCOL:
        case ZMQ_EVENT_HANDSHAKE_FAILED_AUTH:
            self->stats.handshakes_failed++;
            if (event != ZMQ_EVENT_HANDSHAKE_FAILED_AUTH)
                metrics_auth_failure(self->metrics, METRICS_HANDSHAKE_FAILED);
            self->fail_event = event;
            self->fail_code = value;
            break;
        default:
            break;
        }
    }
    /* A place under an agency's ceiling may be free again. */
    if (closed && self->quota)
        quota_refresh(self->quota);
}

/* ---- set-up and loop ----------------------------------------------------- */

static int s_setopt_int(void *sock, int opt, int value)
{
    return zmq_setsockopt(sock, opt, &value, sizeof value);
}

static int s_socket_open(router_t *self)
{
    const config_t *cfg = self->cfg;
    char err[512];
    keyfile_t key;
    if (keyfile_read(cfg->key, &key, err, sizeof err) != KEYFILE_OK) {
        log_error("router", "event=hub_key_invalid error=\"%s\"", err);
        return -1;
    }
    if (!key.curve_secret[0]) {
        char why[600], quoted[700];
        snprintf(why, sizeof why, "%s has no curve-secret", cfg->key);
        log_error("router", "event=hub_key_invalid error=%s", log_quote(why, quoted, sizeof quoted));
        return -1;
    }
    self->sock = zmq_socket(self->ctx, ZMQ_ROUTER);
    /* The transport's limit sits above the hub's own check, so a frame
     * slightly over max_message_size is answered with too_large; only a frame
     * far beyond it costs the sender its connection. */
    int64_t maxmsg = (int64_t)(cfg->max_message_size + TRANSPORT_SLACK);
    int hb = (int)cfg->heartbeat_ms;
    int rc = self->sock ? 0 : -1;
    rc = rc ? rc : s_setopt_int(self->sock, ZMQ_CURVE_SERVER, 1);
    rc = rc ? rc : zmq_setsockopt(self->sock, ZMQ_CURVE_SECRETKEY, key.curve_secret, KEYFILE_Z85_LEN);
    rc = rc ? rc : zmq_setsockopt(self->sock, ZMQ_ZAP_DOMAIN, ZAP_DOMAIN, strlen(ZAP_DOMAIN));
    memset(&key, 0, sizeof key);
    if (rc == 0 && s_setopt_int(self->sock, ZMQ_ZAP_ENFORCE_DOMAIN, 1) != 0) {
        log_error("router", "event=zap_enforce_unsupported error=\"%s\" action=refusing_to_start",
                  zmq_strerror(zmq_errno()));
        return -1;
    }
    rc = rc ? rc : s_setopt_int(self->sock, ZMQ_ROUTER_MANDATORY, 1);
    rc = rc ? rc : zmq_setsockopt(self->sock, ZMQ_MAXMSGSIZE, &maxmsg, sizeof maxmsg);
    rc = rc ? rc : s_setopt_int(self->sock, ZMQ_HANDSHAKE_IVL, (int)cfg->handshake_timeout_ms);
    rc = rc ? rc : s_setopt_int(self->sock, ZMQ_HEARTBEAT_IVL, hb);
    rc = rc ? rc : s_setopt_int(self->sock, ZMQ_HEARTBEAT_TIMEOUT, hb * 3);
    rc = rc ? rc : s_setopt_int(self->sock, ZMQ_HEARTBEAT_TTL, hb * 3);
    rc = rc ? rc : s_setopt_int(self->sock, ZMQ_SNDHWM, PEER_HWM);
    rc = rc ? rc : s_setopt_int(self->sock, ZMQ_RCVHWM, PEER_HWM);
    rc = rc ? rc : s_setopt_int(self->sock, ZMQ_LINGER, 2000);
    if (rc != 0) {
        log_error("router", "event=socket_setup_failed error=\"%s\"", zmq_strerror(zmq_errno()));
        return -1;
    }
    s_monitor_open(self);
    if (zmq_bind(self->sock, cfg->listen) != 0) {
        log_error("router", "event=bind_failed endpoint=%s error=\"%s\"", cfg->listen, zmq_strerror(zmq_errno()));
        return -1;
    }
    size_t len = sizeof self->endpoint;
    if (zmq_getsockopt(self->sock, ZMQ_LAST_ENDPOINT, self->endpoint, &len) != 0)
        snprintf(self->endpoint, sizeof self->endpoint, "%s", cfg->listen);
    return 0;
}

/* Load the policy file named in the config into self->policy, replacing the
 * one in force only when the new one parses. */
static int s_policy_load(router_t *self)
{
    if (!self->cfg->policy[0]) {
        log_warn("router", "event=no_policy effect=\"every registered agency may publish and subscribe to everything\"");
        return 0;
    }
    char err[512], quoted[600];
    policy_t *p = policy_load(self->cfg->policy, err, sizeof err);
    if (!p) {
        /* subs exists once the hub started: a reload keeps what is in force. */
        log_error("router", "event=policy_invalid error=%s action=%s", log_quote(err, quoted, sizeof quoted),
                  self->subs ? "kept_previous" : "refusing_to_start");
        return -1;
    }
    policy_destroy(&self->policy);
    self->policy = p;
    if (self->subs)
        subs_set_policy(self->subs, p);
    char qfile[600];
    log_info("router", "event=policy_loaded file=%s rules=%zu", log_quote(self->cfg->policy, qfile, sizeof qfile),
             policy_rule_count(p));
    return 0;
}

/* The subscription settings, at start and after a reload: subs copies them,
 * and applies new ones to the next grant, subscribe, expiry check, ack
 * deadline or backoff. */
static subs_opts_t s_subs_opts(const config_t *cfg)
{
    return (subs_opts_t){.max_sessions = cfg->subscriptions_max,
                         .credit_max = (uint32_t)cfg->credit_max,
                         .session_timeout_ms = (int64_t)cfg->session_timeout_ms,
                         .ack_timeout_ms = (int64_t)cfg->ack_timeout_ms,
                         .max_attempts = (uint32_t)cfg->max_attempts,
                         .backoff_ms = (int64_t)cfg->redelivery_backoff_ms,
                         .backoff_max_ms = (int64_t)cfg->redelivery_backoff_max_ms};
}

/* Below; for quota too: a connection whose key is no longer valid frees its
 * agency's place. */
static bool s_key_still_valid(void *arg, const char *agency, const char *key);

/* For quota: while an agency holds its maximum of connections, ZAP refuses
 * its new handshakes. */
static void s_on_full(void *arg, const char *agency, bool full)
{
    router_t *self = arg;
    auth_set_full(self->auth, agency, full);
}

static void s_quota_opts(const config_t *cfg, quota_opts_t *out)
{
    *out = (quota_opts_t){.connections_max = cfg->agency_connections_max,
                          .subscriptions_max = cfg->agency_subscriptions_max,
                          .publish_rate = cfg->agency_publish_rate,
                          .publish_bytes = cfg->agency_publish_bytes};
}

/* Hand the retention settings to the journal. Deleting only what a signed
 * checkpoint covers keeps the retained log verifiable from its anchor; a hub
 * without a signing key has no checkpoints to wait for. */
static int s_retention_set(router_t *self)
{
    const config_t *cfg = self->cfg;
    journal_retention_t rules = {.max_age_us = (int64_t)cfg->retention_max_age * 1000000,
                                 .max_bytes = cfg->retention_max_bytes,
                                 .keep = cfg->retention_keep_subscriptions,
                                 .batch = (size_t)cfg->retention_batch,
                                 .covered_only = cfg->signing_key[0] != '\0'};
    if (journal_retention_set(self->journal, &rules) != JOURNAL_OK) {
        log_error("router", "event=retention_invalid action=%s", self->subs ? "keeping_previous" : "refusing_to_start");
        return -1;
    }
    self->retention = cfg->retention_max_age || cfg->retention_max_bytes;
    if (self->retention)
        log_info("router", "event=retention max_age_s=%" PRIu64 " max_bytes=%" PRIu64 " batch=%" PRIu64
                 " covered_only=%d", cfg->retention_max_age, cfg->retention_max_bytes, cfg->retention_batch,
                 rules.covered_only);
    return 0;
}

router_t *router_new(config_t *cfg)
{
    router_t *self = calloc(1, sizeof *self);
    if (!self)
        return NULL;
    self->cfg = cfg;
    self->started_at = codec_now_us();
    uint8_t rnd[16];
    if (getrandom(rnd, sizeof rnd, 0) != (ssize_t)sizeof rnd) {
        log_error("router", "event=getrandom_failed error=\"%s\"", strerror(errno));
        goto fail;
    }
    for (int i = 0; i < 16; i++)
        snprintf(self->instance + 2 * i, 3, "%02x", rnd[i]);
    journal_opts_t jo = {.dir = cfg->data,
                         .map_init = cfg->map_size_initial,
                         .map_max = cfg->map_size_max,
                         .no_sync = !cfg->sync,
                         .read_only = false,
                         .dedup_window = cfg->dedup_window};
    self->journal = journal_new(&jo);
    if (!self->journal)
        goto fail;
    if (s_retention_set(self) != 0)
        goto fail;
    if (cfg->signing_key[0]) {
        self->chain = chain_new(self->journal, cfg->signing_key, cfg->checkpoint_events,
                                cfg->checkpoint_seconds * 1000);
        if (!self->chain)
            goto fail;
    } else {
        log_warn("router", "event=no_signing_key effect=\"no signed checkpoints: civibus verify can check the "
                           "chain, not who wrote it\"");
    }
    self->metrics = metrics_new();
    self->peers = peers_new();
    if (!self->metrics || !self->peers)
        goto fail;
    self->ctx = zmq_ctx_new();
    if (!self->ctx)
        goto fail;
    self->auth = auth_new(self->ctx, cfg->registry);
    if (!self->auth)
        goto fail;
    s_warn_expiring(self);
    if (s_policy_load(self) != 0)
        goto fail;
    if (s_socket_open(self) != 0)
        goto fail;
    quota_opts_t qo;
    s_quota_opts(cfg, &qo);
    self->quota = quota_new(&qo, self->peers, s_on_full, s_key_still_valid, self);
    if (!self->quota)
        goto fail;
    subs_opts_t so = s_subs_opts(cfg);
    self->subs = subs_new(self->journal, self->sock, &so);
    if (!self->subs)
        goto fail;
    subs_set_policy(self->subs, self->policy);
    if (!cfg->sync)
        log_warn("router", "event=durability_off reason=\"sync = false: acknowledged events can be lost on a crash\"");
    log_info("router", "event=listening endpoint=%s instance=%s last_seq=%" PRIu64, self->endpoint, self->instance,
             journal_last_seq(self->journal));
    return self;
fail:
    router_destroy(&self);
    return NULL;
}

void router_destroy(router_t **self_p)
{
    router_t *self = self_p ? *self_p : NULL;
    if (!self)
        return;
    subs_destroy(&self->subs);
    quota_destroy(&self->quota);
    s_monitor_close(self);
    if (self->sock)
        zmq_close(self->sock);
    if (self->ctx)
        zmq_ctx_shutdown(self->ctx);
    auth_destroy(&self->auth);
    if (self->ctx)
        zmq_ctx_term(self->ctx);
    chain_destroy(&self->chain);
    journal_destroy(&self->journal);
    policy_destroy(&self->policy);
    metrics_destroy(&self->metrics);
    peers_destroy(&self->peers);
    free(self->reqs);
    free(self->entries);
    free(self->entry_req);
    free(self->entry_idx);
    free(self);
    *self_p = NULL;
}

const char *router_endpoint(const router_t *self)
{
    return self->endpoint;
}

/* For subs_drop_invalid and quota: a key revoked or expired since the
 * handshake, or removed by a reload, ends its subscriptions and frees its
 * connection's place within a second. */
static bool s_key_still_valid(void *arg, const char *agency, const char *key)
{
    router_t *self = arg;
    return !key[0] || auth_key_status(self->auth, agency, key, (int64_t)time(NULL)) == AUTH_KEY_VALID;
}

/* Retention's share of a turn, after the commit answered its publishers and
 * the deliveries went out: transactions of retention_batch entries while
 * entries are due, as many as cover what this turn appended and one more.
 * So under a steady load the log stops growing, a backlog shrinks by a
 * transaction a turn, and no turn does unbounded work; while a backlog is
 * left the loop does not wait in poll (retain_more), so an idle hub catches
 * up quickly and a busy one between its commits. */
static void s_retain(router_t *self, uint64_t appended)
{
    self->retain_more = false;
    if (!self->retention || codec_mono_ms() < self->retain_after_ms)
        return;
    uint64_t budget = appended + self->cfg->retention_batch;
    int64_t now = codec_now_us();
    for (uint64_t done = 0;;) {
        if (done >= budget) {
            self->retain_more = true;
            return;
        }
        size_t n = 0;
        int rc = journal_retain(self->journal, now, &n);
        if (rc != JOURNAL_OK) {
            log_limited(LOG_ERROR, "router", "router.retention", "event=retention_failed error=\"%s\" retry_ms=%d",
                        journal_strerror(rc), RETAIN_RETRY_MS);
            self->retain_after_ms = codec_mono_ms() + RETAIN_RETRY_MS;
            return;
        }
        if (n == 0)
            return;
        done += n;
    }
}

/* Render the monitoring documents and hand them to http. A failed render
 * (logged) leaves the previous documents in place. */
static void s_report(router_t *self, int64_t now)
{
    self->last_report_ms = now;
    metrics_sources_t src = {.cfg = self->cfg,
                             .journal = self->journal,
                             .subs = self->subs,
                             .auth = self->auth,
                             .peers = self->peers,
                             .quota = self->quota,
                             .instance = self->instance,
                             .started_at_us = self->started_at,
                             .http_refused = http_refused(self->http)};
    metrics_report_t rep;
    if (metrics_render(self->metrics, &src, now, &rep) != 0)
        return;
    http_publish(self->http, &rep.prometheus, rep.prometheus_len, &rep.status, rep.status_len, rep.not_ready);
}

void router_set_http(router_t *self, http_t *http)
{
    self->http = http;
    if (!http)
        return;
    http_beat(http);
    s_report(self, codec_mono_ms());
}

/* Read what is waiting (up to a burst or a full batch), commit, deliver. */
static int s_turn(router_t *self)
{
    for (int i = 0; i < READ_BURST && self->n_held < self->cfg->batch_max; i++) {
        int rc = s_read_one(self);
        if (rc < 0)
            return -1;
        if (rc == 0)
            break;
    }
    uint64_t last = journal_last_seq(self->journal);
    s_commit(self);
    metrics_delivered(self->metrics, subs_pump(self->subs));
    s_retain(self, journal_last_seq(self->journal) - last);
    int64_t now = codec_mono_ms();
    if (now - self->last_flush_ms >= (int64_t)self->cfg->cursor_flush_ms) {
        const journal_cursor_t *cursors;
        size_t n = subs_take_dirty(self->subs, &cursors);
        if (n && journal_save_cursors(self->journal, cursors, n) == JOURNAL_OK)
            subs_saved(self->subs);
        self->last_flush_ms = now;
    }
    chain_tick(self->chain, now);
    if (now - self->last_expire_ms >= EXPIRE_EVERY_MS) {
        subs_expire(self->subs, now);
        subs_drop_invalid(self->subs, s_key_still_valid, self);
        quota_tick(self->quota);
        log_flush_suppressed(false);
        self->last_expire_ms = now;
    }
    if (self->http && now - self->last_report_ms >= REPORT_EVERY_MS)
        s_report(self, now);
    return 0;
}

static void s_log_stats(router_t *self)
{
    const s_stats_t *s = &self->stats;
    log_info("router",
             "event=stats accepted=%" PRIu64 " duplicates=%" PRIu64 " commits=%" PRIu64 " not_authorised=%" PRIu64
             " malformed=%" PRIu64 " too_large=%" PRIu64 " storage_full=%" PRIu64 " internal=%" PRIu64
             " bad_request=%" PRIu64 " unavailable=%" PRIu64 " unsupported_version=%" PRIu64 " bad_signature=%" PRIu64
             " unknown_subscription=%" PRIu64 " behind_retention=%" PRIu64 " replies_lost=%" PRIu64
             " key_refused=%" PRIu64
             " handshakes_refused=%" PRIu64 " handshakes_failed=%" PRIu64 " last_seq=%" PRIu64,
             s->accepted, s->duplicates, s->commits, s->refused[C(NOT_AUTHORISED)], s->refused[C(MALFORMED)],
             s->refused[C(TOO_LARGE)], s->refused[C(STORAGE_FULL)], s->refused[C(INTERNAL)],
             s->refused[C(BAD_REQUEST)], s->refused[C(UNAVAILABLE)], s->refused[C(UNSUPPORTED_VERSION)],
             s->refused[C(BAD_SIGNATURE)], s->refused[C(UNKNOWN_SUBSCRIPTION)], s->refused[C(BEHIND_RETENTION)],
             s->replies_lost, s->key_refused,
             auth_refused(self->auth), s->handshakes_failed, journal_last_seq(self->journal));
}

/* SIGHUP: the config file first (its reloadable keys, told to the modules
 * that copied them), then the registry and the policy as before. */
static void s_reload(router_t *self)
{
    const config_t *cfg = self->cfg;
    size_t changed;
    if (config_reload(self->cfg, &changed) == CONFIG_OK) {
        log_set_level((log_level_t)log_level_parse(cfg->log_level));
        log_set_format((log_format_t)log_format_parse(cfg->log_format));
        subs_opts_t so = s_subs_opts(cfg);
        subs_set_opts(self->subs, &so);
        quota_opts_t qo;
        s_quota_opts(cfg, &qo);
        quota_set_opts(self->quota, &qo);
        chain_set_interval(self->chain, cfg->checkpoint_events, cfg->checkpoint_seconds * 1000);
        s_retention_set(self);
        log_info("router", "event=config_reloaded changed=%zu", changed);
    }
    auth_reload(self->auth);
    s_warn_expiring(self);
    if (cfg->policy[0])
        s_policy_load(self);
}

int router_run(router_t *self, volatile sig_atomic_t *stop, volatile sig_atomic_t *reload)
{
    while (!*stop) {
        if (*reload) {
            *reload = 0;
            s_reload(self);
        }
        if (codec_mono_ms() - self->last_key_warn_ms >= KEY_WARN_EVERY_MS)
            s_warn_expiring(self);
        int pending = subs_pending(self->subs);
        long timeout = pending == SUBS_MORE || self->retain_more ? 0
                       : pending == SUBS_BUSY                 ? BUSY_POLL_MS
                                                              : IDLE_POLL_MS;
        zmq_pollitem_t items[2] = {{.socket = self->sock, .events = ZMQ_POLLIN},
                                   {.socket = self->monitor, .events = ZMQ_POLLIN}};
        int rc = zmq_poll(items, self->monitor ? 2 : 1, timeout);
        if (rc < 0 && zmq_errno() != EINTR) {
            log_error("router", "event=poll_failed error=\"%s\"", zmq_strerror(zmq_errno()));
            return -1;
        }
        if (self->monitor && rc > 0 && (items[1].revents & ZMQ_POLLIN))
            s_on_monitor(self);
        if (s_turn(self) != 0) {
            log_error("router", "event=recv_failed error=\"%s\"", zmq_strerror(zmq_errno()));
            return -1;
        }
        if (self->http)
            http_beat(self->http);
    }
    if (self->http)
        http_stopping(self->http);
    /* The drain. What connected adapters already sent is committed and
     * acknowledged; nothing more is read after this turn. (zmq_unbind would
     * also cut the established connections, losing those
     * acknowledgements.) main's watchdog bounds all of it. */
    int64_t t0 = codec_mono_ms();
    const s_stats_t before = self->stats;
    log_info("router", "event=draining sessions=%zu last_seq=%" PRIu64, subs_count(self->subs),
             journal_last_seq(self->journal));
    s_turn(self);
    const journal_cursor_t *cursors;
    size_t n = subs_take_dirty(self->subs, &cursors);
    int crc = n ? journal_save_cursors(self->journal, cursors, n) : JOURNAL_OK;
    if (n && crc == JOURNAL_OK)
        subs_saved(self->subs);
    /* The last word on the log: an outsider can tell a later truncation. */
    int cprc = chain_checkpoint(self->chain);
    if (self->monitor)
        s_on_monitor(self);
    uint64_t refused = 0;
    for (int i = 0; i < CODE_COUNT; i++)
        refused += self->stats.refused[i] - before.refused[i];
    log_info("router",
             "event=drained accepted=%" PRIu64 " duplicates=%" PRIu64 " refused=%" PRIu64 " replies_lost=%" PRIu64
             " cursors_saved=%zu cursors_failed=%zu checkpoint=%s ms=%" PRId64,
             self->stats.accepted - before.accepted, self->stats.duplicates - before.duplicates, refused,
             self->stats.replies_lost - before.replies_lost, crc == JOURNAL_OK ? n : 0, crc == JOURNAL_OK ? 0 : n,
             !self->chain ? "none" : cprc == 0 ? "ok" : "failed", codec_mono_ms() - t0);
    log_flush_suppressed(true);
    s_log_stats(self);
    log_info("router", "event=stopped last_seq=%" PRIu64, journal_last_seq(self->journal));
    return 0;
}
