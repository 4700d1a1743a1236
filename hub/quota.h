/* quota - per-agency ceilings: live connections, live subscriptions and
 * publish rate.
 *
 * One compromised adapter, or one stolen key, should harm nobody but its own
 * agency. The router asks this module about every message
 * (quota_connection), every new subscription (quota_subscription) and every
 * published event (quota_publish); a refusal is answered with unavailable
 * and the setting named. docs/SECURITY.md says what each ceiling defends.
 *
 * Connections. Which connection belongs to which agency is known to
 * hub/peers.h, from the ROUTER's socket monitor (a connection opens with
 * ACCEPTED, closes with DISCONNECTED, both naming its descriptor) and from
 * every message (its descriptor, routing id and the agency ZAP admitted).
 * peers also holds the admission of each connection, so there is one table
 * of connections in the hub and a closed connection frees its place as soon
 * as its DISCONNECTED event is read. A connection takes one of its agency's
 * connections_max places with its first message; a message on one more is
 * refused. An agency holding all its places is "full": the `full` callback
 * tells the ZAP handler to refuse the agency's new handshakes until a place
 * is free again (quota_refresh, after connections closed). A connection
 * whose key was revoked, expired or removed since its handshake gives its
 * place up at the next quota_tick, though it stays open: otherwise a stolen
 * key's connections would keep the agency's new key out. A connection that
 * never sends a message takes no place; it costs the hub a file descriptor
 * and libzmq's buffers, nothing more. Without the socket monitor (it failed
 * to start, which the router logs) connections cannot be told apart, and
 * this ceiling is not enforced.
 *
 * Subscriptions. A new subscription is refused while the agency holds
 * subscriptions_max others (subs knows how many; a takeover of a durable
 * subscription by name is no new one).
 *
 * Publish rate. Two token buckets per agency, refilled continuously: events
 * (publish_rate per second, holding at most one second's worth) and bytes
 * of events (publish_bytes per second; an event passes while the bucket is
 * not negative and may take it below zero, so an event larger than a
 * second's budget still passes, and the agency then waits). A refused event
 * takes nothing from either bucket.
 *
 * Every ceiling can change at run time (quota_set_opts, on SIGHUP): a lower
 * one applies to what comes next and closes nothing. Refusals are counted
 * per agency and ceiling for civibus_quota_refused_total.
 *
 * Single-threaded: the router's loop only. Memory: one small entry per
 * agency that ever spoke.
 */
#ifndef CIVIBUS_QUOTA_H
#define CIVIBUS_QUOTA_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "peers.h"

typedef struct quota quota_t;

/* The ceilings, indexes of quota_agency_t.refused. */
typedef enum {
    QUOTA_CONNECTIONS = 0, /* agency_connections_max */
    QUOTA_SUBSCRIPTIONS,   /* agency_subscriptions_max */
    QUOTA_PUBLISH_RATE,    /* agency_publish_rate (events per second) */
    QUOTA_PUBLISH_BYTES,   /* agency_publish_bytes (bytes per second) */
    QUOTA_CEILINGS
} quota_ceiling_t;

enum quota_err {
    QUOTA_OK = 0,
    QUOTA_REFUSED = -1, /* over a ceiling; the reason names it */
};

typedef struct {
    uint64_t connections_max;   /* live connections per agency, at least 1 */
    uint64_t subscriptions_max; /* live subscriptions per agency, at least 1 */
    uint64_t publish_rate;      /* events per second per agency; 0: no ceiling */
    uint64_t publish_bytes;     /* bytes of events per second per agency; 0: no ceiling */
} quota_opts_t;

/* agency became full (true), or is not full any more (false). */
typedef void (*quota_full_fn)(void *arg, const char *agency, bool full);

/* NULL on allocation failure. peers, the callbacks and arg are borrowed;
 * key_valid tells whether a connection's key is still valid (quota_tick). */
quota_t *quota_new(const quota_opts_t *opts, peers_t *peers, quota_full_fn full, peers_key_valid_fn key_valid,
                   void *arg);
/* NULL-safe; nulls *self_p. */
void quota_destroy(quota_t **self_p);

/* New ceilings (a config reload). Agencies become full, or not, at once. */
void quota_set_opts(quota_t *self, const quota_opts_t *opts);

/* A message of agency over connection fd (ZMQ_SRCFD), after peers_seen:
 * QUOTA_OK (the connection holds one of the agency's places, or cannot be
 * told apart: see above), or QUOTA_REFUSED with a reason for the sender. */
int quota_connection(quota_t *self, int fd, const char *agency, char *reason, size_t reason_len);

/* A new subscription of agency, which holds live others now: QUOTA_OK, or
 * QUOTA_REFUSED with a reason. */
int quota_subscription(quota_t *self, const char *agency, size_t live, char *reason, size_t reason_len);

/* One event of len bytes published by agency at now_ms (monotonic):
 * QUOTA_OK (its tokens are taken), or QUOTA_REFUSED with a reason. */
int quota_publish(quota_t *self, const char *agency, size_t len, int64_t now_ms, char *reason, size_t reason_len);

/* Connections closed (peers_disconnected): tell auth which full agencies
 * have a free place again. Cheap: one look per agency. */
void quota_refresh(quota_t *self);

/* Free the places of connections whose key is no longer valid, when an
 * agency is full, then quota_refresh; call about once a second. */
void quota_tick(quota_t *self);

/* What quota_foreach reports per agency. The metric built on it is
 * civibus_quota_refused_total{agency,ceiling} (refused[], named by
 * quota_ceiling_name); the same refusals are in
 * civibus_events_refused_total{agency,reason="unavailable"}, and the
 * handshakes auth refuses while the agency is full in
 * civibus_auth_failures_total{kind="zap_refused"}. */
typedef struct {
    const char *agency;
    bool full; /* holds connections_max connections */
    uint64_t refused[QUOTA_CEILINGS];
} quota_agency_t;

/* Call fn for every agency known; the struct lives for the call. NULL-safe
 * (self NULL: no call). */
void quota_foreach(const quota_t *self, void (*fn)(void *arg, const quota_agency_t *a), void *arg);

/* "connections", "subscriptions", "publish_rate", "publish_bytes". */
const char *quota_ceiling_name(quota_ceiling_t ceiling);

#endif
