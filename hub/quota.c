/* quota - per-agency ceilings: live connections and publish rate.
 *
 * Agencies live in a small hash table keyed by id; each holds the routing
 * ids of its counted connections in an array of at most connections_max,
 * with the index of the last one seen, since consecutive messages mostly
 * come from the same connection. Buckets hold thousandths of a token, so
 * that a refill every millisecond is exact in integers.
 */
#include "quota.h"

#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "codec.h"
#include "log.h"

#define BUCKETS 256
#define MILLI 1000

/* A counted connection, and the key it was admitted with. */
typedef struct {
    wire_peer_t peer;
    char key[41];
} s_conn_t;

typedef struct s_agency {
    char name[CODEC_AGENCY_MAX + 1];
    s_conn_t *peers; /* counted connections */
    size_t n_peers, cap_peers;
    size_t last;        /* index of the peer seen last */
    bool full;
    int64_t events_milli; /* tokens x MILLI */
    int64_t bytes_milli;
    int64_t refill_ms;    /* when the buckets were last filled */
    bool buckets_ready;
    uint64_t refused_connections;
    uint64_t refused_rate;
    struct s_agency *next;
} s_agency_t;

struct quota {
    quota_opts_t opts;
    quota_probe_fn probe;
    quota_full_fn on_full;
    quota_key_valid_fn key_valid;
    void *arg;
    s_agency_t *buckets[BUCKETS];
};

static size_t s_hash(const char *agency)
{
    uint64_t h = 1469598103934665603ULL;
    for (const char *p = agency; *p; p++)
        h = (h ^ (uint8_t)*p) * 1099511628211ULL;
    return (size_t)(h % BUCKETS);
}

quota_t *quota_new(const quota_opts_t *opts, quota_probe_fn probe, quota_full_fn full, quota_key_valid_fn valid,
                   void *arg)
{
    quota_t *self = calloc(1, sizeof *self);
    if (!self)
        return NULL;
    self->opts = *opts;
    if (self->opts.connections_max == 0)
        self->opts.connections_max = 1;
    self->probe = probe;
    self->on_full = full;
    self->key_valid = valid;
    self->arg = arg;
    return self;
}

void quota_destroy(quota_t **self_p)
{
    quota_t *self = self_p ? *self_p : NULL;
    if (!self)
        return;
    for (size_t b = 0; b < BUCKETS; b++) {
        for (s_agency_t *a = self->buckets[b], *next; a; a = next) {
            next = a->next;
            free(a->peers);
            free(a);
        }
    }
    free(self);
    *self_p = NULL;
}

/* The entry of agency, made when missing; NULL when out of memory. */
static s_agency_t *s_agency(quota_t *self, const char *agency)
{
    size_t b = s_hash(agency);
    for (s_agency_t *a = self->buckets[b]; a; a = a->next)
        if (strcmp(a->name, agency) == 0)
            return a;
    s_agency_t *a = calloc(1, sizeof *a);
    if (!a)
        return NULL;
    snprintf(a->name, sizeof a->name, "%s", agency);
    a->next = self->buckets[b];
    self->buckets[b] = a;
    return a;
}

static bool s_same(const wire_peer_t *x, const wire_peer_t *y)
{
    return x->len == y->len && memcmp(x->id, y->id, x->len) == 0;
}

static void s_set_full(quota_t *self, s_agency_t *a, bool full)
{
    if (a->full == full)
        return;
    a->full = full;
    if (full)
        log_warn("quota", "event=connections_full agency=%s connections=%zu max=%" PRIu64
                 " effect=\"new handshakes of this agency are refused\"",
                 a->name, a->n_peers, self->opts.connections_max);
    else
        log_info("quota", "event=connections_free agency=%s connections=%zu max=%" PRIu64, a->name, a->n_peers,
                 self->opts.connections_max);
    if (self->on_full)
        self->on_full(self->arg, a->name, full);
}

/* Forget the connections of a that have closed, or whose key is no longer
 * valid (the router refuses all they send). */
static void s_probe_all(quota_t *self, s_agency_t *a)
{
    for (size_t i = 0; i < a->n_peers;) {
        const s_conn_t *c = &a->peers[i];
        if (!self->key_valid(self->arg, a->name, c->key) || self->probe(self->arg, &c->peer) == WIRE_GONE)
            a->peers[i] = a->peers[--a->n_peers]; /* peers[i] now holds another */
        else
            i++;
    }
    a->last = 0;
}

int quota_connection(quota_t *self, const char *agency, const char *key, const wire_peer_t *peer, char *reason,
                     size_t reason_len)
{
    s_agency_t *a = s_agency(self, agency);
    if (!a)
        return QUOTA_OK; /* out of memory: do not refuse service for it */
    if (a->last < a->n_peers && s_same(&a->peers[a->last].peer, peer))
        return QUOTA_OK;
    for (size_t i = 0; i < a->n_peers; i++) {
        if (s_same(&a->peers[i].peer, peer)) {
            a->last = i;
            return QUOTA_OK;
        }
    }
    /* Not probed here: a flood on one more connection would make the hub
     * send max probes per message. quota_tick frees closed places. */
    uint64_t max = self->opts.connections_max;
    if (a->n_peers >= max) {
        a->refused_connections++;
        s_set_full(self, a, true);
        snprintf(reason, reason_len,
                 "agency %s holds its maximum of %" PRIu64 " live connections (agency_connections_max); close one "
                 "and retry",
                 agency, max);
        return QUOTA_CONNECTIONS;
    }
    if (a->n_peers == a->cap_peers) {
        size_t cap = a->cap_peers ? 2 * a->cap_peers : 4;
        if (cap > max)
            cap = (size_t)max;
        s_conn_t *grown = realloc(a->peers, cap * sizeof *grown);
        if (!grown)
            return QUOTA_OK;
        a->peers = grown;
        a->cap_peers = cap;
    }
    s_conn_t *c = &a->peers[a->n_peers];
    c->peer = *peer;
    snprintf(c->key, sizeof c->key, "%s", key ? key : "");
    a->last = a->n_peers++;
    if (a->n_peers >= max)
        s_set_full(self, a, true);
    return QUOTA_OK;
}

/* Refill a's buckets up to now_ms; each holds at most one second's worth. */
static void s_refill(const quota_t *self, s_agency_t *a, int64_t now_ms)
{
    int64_t ev_cap = (int64_t)self->opts.publish_rate * MILLI, by_cap = (int64_t)self->opts.publish_bytes * MILLI;
    if (!a->buckets_ready) {
        a->events_milli = ev_cap;
        a->bytes_milli = by_cap;
        a->refill_ms = now_ms;
        a->buckets_ready = true;
        return;
    }
    int64_t dt = now_ms - a->refill_ms;
    if (dt <= 0)
        return;
    if (dt > MILLI)
        dt = MILLI; /* a full second refills any bucket; larger products could overflow */
    a->refill_ms = now_ms;
    a->events_milli += (int64_t)self->opts.publish_rate * dt;
    if (a->events_milli > ev_cap)
        a->events_milli = ev_cap;
    a->bytes_milli += (int64_t)self->opts.publish_bytes * dt;
    if (a->bytes_milli > by_cap)
        a->bytes_milli = by_cap;
}

int quota_publish(quota_t *self, const char *agency, size_t len, int64_t now_ms, char *reason, size_t reason_len)
{
    if (!self->opts.publish_rate && !self->opts.publish_bytes)
        return QUOTA_OK;
    s_agency_t *a = s_agency(self, agency);
    if (!a)
        return QUOTA_OK;
    s_refill(self, a, now_ms);
    bool events_ok = !self->opts.publish_rate || a->events_milli >= MILLI;
    bool bytes_ok = !self->opts.publish_bytes || a->bytes_milli >= 0;
    if (!events_ok || !bytes_ok) {
        a->refused_rate++;
        if (!events_ok)
            snprintf(reason, reason_len,
                     "agency %s is over its publish rate of %" PRIu64 " events per second (agency_publish_rate); "
                     "retry later",
                     agency, self->opts.publish_rate);
        else
            snprintf(reason, reason_len,
                     "agency %s is over its publish budget of %" PRIu64 " bytes per second (agency_publish_bytes); "
                     "retry later",
                     agency, self->opts.publish_bytes);
        return QUOTA_RATE;
    }
    if (self->opts.publish_rate)
        a->events_milli -= MILLI;
    if (self->opts.publish_bytes)
        a->bytes_milli -= (int64_t)(len > (size_t)INT64_MAX / MILLI ? INT64_MAX / MILLI : len) * MILLI;
    return QUOTA_OK;
}

void quota_tick(quota_t *self)
{
    for (size_t b = 0; b < BUCKETS; b++) {
        for (s_agency_t *a = self->buckets[b]; a; a = a->next) {
            if (!a->full)
                continue;
            s_probe_all(self, a);
            if (a->n_peers < self->opts.connections_max)
                s_set_full(self, a, false);
        }
    }
}

void quota_foreach(const quota_t *self, void (*fn)(void *arg, const quota_agency_t *a), void *arg)
{
    for (size_t b = 0; b < BUCKETS; b++) {
        for (const s_agency_t *a = self->buckets[b]; a; a = a->next) {
            quota_agency_t out = {.agency = a->name,
                                   .connections = a->n_peers,
                                   .full = a->full,
                                   .refused_connections = a->refused_connections,
                                   .refused_rate = a->refused_rate};
            fn(arg, &out);
        }
    }
}
