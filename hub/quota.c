/* quota - per-agency ceilings: live connections, live subscriptions and
 * publish rate.
 *
 * Agencies live in a small hash table keyed by id, holding what peers does
 * not: whether the agency is full (as last told to auth), its publish
 * buckets and its refusal counters. Buckets hold thousandths of a token, so
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

typedef struct s_agency {
    char name[CODEC_AGENCY_MAX + 1];
    bool full;
    int64_t events_milli; /* tokens x MILLI */
    int64_t bytes_milli;
    int64_t refill_ms; /* when the buckets were last filled */
    bool buckets_ready;
    uint64_t refused[QUOTA_CEILINGS];
    struct s_agency *next;
} s_agency_t;

struct quota {
    quota_opts_t opts;
    peers_t *peers;
    quota_full_fn on_full;
    peers_key_valid_fn key_valid;
    void *arg;
    size_t n_full; /* agencies full now */
    s_agency_t *buckets[BUCKETS];
};

static size_t s_hash(const char *agency)
{
    uint64_t h = 1469598103934665603ULL;
    for (const char *p = agency; *p; p++)
        h = (h ^ (uint8_t)*p) * 1099511628211ULL;
    return (size_t)(h % BUCKETS);
}

static void s_opts(quota_t *self, const quota_opts_t *opts)
{
    self->opts = *opts;
    if (self->opts.connections_max == 0)
        self->opts.connections_max = 1;
    if (self->opts.subscriptions_max == 0)
        self->opts.subscriptions_max = 1;
}

quota_t *quota_new(const quota_opts_t *opts, peers_t *peers, quota_full_fn full, peers_key_valid_fn key_valid,
                   void *arg)
{
    quota_t *self = calloc(1, sizeof *self);
    if (!self)
        return NULL;
    s_opts(self, opts);
    self->peers = peers;
    self->on_full = full;
    self->key_valid = key_valid;
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

static void s_set_full(quota_t *self, s_agency_t *a, bool full)
{
    if (a->full == full)
        return;
    a->full = full;
    self->n_full += full ? 1 : (size_t)-1;
    size_t n = peers_admitted(self->peers, a->name);
    if (full)
        log_warn("quota", "event=connections_full agency=%s connections=%zu max=%" PRIu64
                 " effect=\"new handshakes of this agency are refused\"",
                 a->name, n, self->opts.connections_max);
    else
        log_info("quota", "event=connections_free agency=%s connections=%zu max=%" PRIu64, a->name, n,
                 self->opts.connections_max);
    if (self->on_full)
        self->on_full(self->arg, a->name, full);
}

/* For peers_each: agency holds all its places now (after a lower ceiling). */
static void s_check_full(const char *agency, size_t connections, void *arg)
{
    (void)connections;
    quota_t *self = arg;
    if (peers_admitted(self->peers, agency) < self->opts.connections_max)
        return;
    s_agency_t *a = s_agency(self, agency);
    if (a)
        s_set_full(self, a, true);
}

void quota_set_opts(quota_t *self, const quota_opts_t *opts)
{
    s_opts(self, opts);
    peers_each(self->peers, s_check_full, self);
    quota_refresh(self);
}

int quota_connection(quota_t *self, int fd, const char *agency, char *reason, size_t reason_len)
{
    size_t admitted = 0;
    peers_admit_t st = peers_admit(self->peers, fd, (size_t)self->opts.connections_max, &admitted);
    if (st == PEERS_UNKNOWN || (st == PEERS_ADMITTED && admitted < self->opts.connections_max))
        return QUOTA_OK;
    /* The agency holds all its places, with this connection or without. */
    s_agency_t *a = s_agency(self, agency);
    if (a)
        s_set_full(self, a, true);
    if (st == PEERS_ADMITTED)
        return QUOTA_OK;
    if (a)
        a->refused[QUOTA_CONNECTIONS]++;
    snprintf(reason, reason_len,
             "agency %s holds its maximum of %" PRIu64 " live connections (agency_connections_max); close one "
             "and retry",
             agency, self->opts.connections_max);
    return QUOTA_REFUSED;
}

int quota_subscription(quota_t *self, const char *agency, size_t live, char *reason, size_t reason_len)
{
    if (live < self->opts.subscriptions_max)
        return QUOTA_OK;
    s_agency_t *a = s_agency(self, agency);
    if (a)
        a->refused[QUOTA_SUBSCRIPTIONS]++;
    /* One agency must not take every slot of the hub. */
    snprintf(reason, reason_len,
             "agency %s holds its maximum of %" PRIu64 " live subscriptions (agency_subscriptions_max); close one",
             agency, self->opts.subscriptions_max);
    return QUOTA_REFUSED;
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
    if (dt > MILLI)
        dt = MILLI; /* a full second refills any bucket; larger products could overflow */
    if (dt > 0) {
        a->refill_ms = now_ms;
        a->events_milli += (int64_t)self->opts.publish_rate * dt;
        a->bytes_milli += (int64_t)self->opts.publish_bytes * dt;
    }
    /* Also after a reload lowered a ceiling. */
    if (a->events_milli > ev_cap)
        a->events_milli = ev_cap;
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
    if (self->opts.publish_rate && a->events_milli < MILLI) {
        a->refused[QUOTA_PUBLISH_RATE]++;
        snprintf(reason, reason_len,
                 "agency %s is over its publish rate of %" PRIu64 " events per second (agency_publish_rate); "
                 "retry later",
                 agency, self->opts.publish_rate);
        return QUOTA_REFUSED;
    }
    if (self->opts.publish_bytes && a->bytes_milli < 0) {
        a->refused[QUOTA_PUBLISH_BYTES]++;
        snprintf(reason, reason_len,
                 "agency %s is over its publish budget of %" PRIu64 " bytes per second (agency_publish_bytes); "
                 "retry later",
                 agency, self->opts.publish_bytes);
        return QUOTA_REFUSED;
    }
    if (self->opts.publish_rate)
        a->events_milli -= MILLI;
    if (self->opts.publish_bytes)
        a->bytes_milli -= (int64_t)(len > (size_t)INT64_MAX / MILLI ? INT64_MAX / MILLI : len) * MILLI;
    return QUOTA_OK;
}

void quota_refresh(quota_t *self)
{
    if (!self->n_full)
        return;
    for (size_t b = 0; b < BUCKETS; b++)
        for (s_agency_t *a = self->buckets[b]; a; a = a->next)
            if (a->full && peers_admitted(self->peers, a->name) < self->opts.connections_max)
                s_set_full(self, a, false);
}

void quota_tick(quota_t *self)
{
    if (!self->n_full)
        return;
    peers_release_invalid(self->peers, self->key_valid, self->arg);
    quota_refresh(self);
}

void quota_foreach(const quota_t *self, void (*fn)(void *arg, const quota_agency_t *a), void *arg)
{
    if (!self)
        return;
    for (size_t b = 0; b < BUCKETS; b++) {
        for (const s_agency_t *a = self->buckets[b]; a; a = a->next) {
            quota_agency_t out = {.agency = a->name, .full = a->full};
            memcpy(out.refused, a->refused, sizeof out.refused);
            fn(arg, &out);
        }
    }
}

const char *quota_ceiling_name(quota_ceiling_t ceiling)
{
    switch (ceiling) {
    case QUOTA_CONNECTIONS: return "connections";
    case QUOTA_SUBSCRIPTIONS: return "subscriptions";
    case QUOTA_PUBLISH_RATE: return "publish_rate";
    case QUOTA_PUBLISH_BYTES: return "publish_bytes";
    default: return "unknown";
    }
}
