/* quota - per-agency ceilings: live connections and publish rate.
 *
 * One compromised adapter, or one stolen key, should harm nobody but its own
 * agency. The router asks this module about every message
 * (quota_connection) and every published event (quota_publish); the
 * ceiling on live subscriptions per agency is kept by subs
 * (agency_subscriptions_max). docs/SECURITY.md says what each defends.
 *
 * Connections. libzmq 4.3.4 as Debian builds it has no draft API
 * (ZMQ_ROUTER_NOTIFY is refused with EINVAL), and neither a ZAP request nor
 * the socket monitor's events say which routing id or agency a connection
 * that closed had. So a connection is counted from its first message, whose
 * routing id and ZAP User-Id name it, and its end is learned by probing: the
 * ROUTER runs with ZMQ_ROUTER_MANDATORY, so a send to a routing id whose
 * connection has closed fails (WIRE_GONE). An agency holding
 * connections_max live connections is "full": a message on one more
 * connection is refused, and the `full` callback tells the ZAP handler to
 * refuse the agency's new handshakes until it is not full any more. The
 * connections of a full agency are probed once a second, so a closed one
 * frees its place within about a second of libzmq noticing the close (at
 * once for a closed TCP connection, after 3 x heartbeat_ms for a peer that
 * vanished). A connection whose key was revoked, expired or removed since
 * frees its place at the same check, though it stays open: otherwise a
 * stolen key's connections would keep the agency's new key out. A connection that never sends a message is not counted; it
 * costs the hub a file descriptor and libzmq's buffers, nothing more.
 *
 * Publish rate. Two token buckets per agency, refilled continuously: events
 * (publish_rate per second, holding at most one second's worth) and bytes
 * of events (publish_bytes per second; an event passes while the bucket is
 * not negative and may take it below zero, so an event larger than a
 * second's budget still passes, and the agency then waits). A refused event
 * takes nothing from either bucket.
 *
 * Single-threaded: the router's loop only. Memory: one entry per agency that
 * ever spoke, holding at most connections_max routing ids.
 */
#ifndef CIVIBUS_QUOTA_H
#define CIVIBUS_QUOTA_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "wire.h"

typedef struct quota quota_t;

enum quota_err {
    QUOTA_OK = 0,
    QUOTA_CONNECTIONS = -1, /* the agency holds its maximum of live connections */
    QUOTA_RATE = -2,        /* the agency is over its publish rate (events or bytes) */
};

typedef struct {
    uint64_t connections_max; /* live connections per agency, at least 1 */
    uint64_t publish_rate;    /* events per second per agency; 0: no ceiling */
    uint64_t publish_bytes;   /* bytes of events per second per agency; 0: no ceiling */
} quota_opts_t;

/* Send a harmless message to peer (the router sends a Pong with request_id
 * 0): WIRE_OK or WIRE_BUSY when the connection is there, WIRE_GONE when it
 * has closed. */
typedef int (*quota_probe_fn)(void *arg, const wire_peer_t *peer);
/* agency became full (true), or is not full any more (false). */
typedef void (*quota_full_fn)(void *arg, const char *agency, bool full);
/* Is key (Z85, "" when unknown) still a valid key of agency? */
typedef bool (*quota_key_valid_fn)(void *arg, const char *agency, const char *key);

/* NULL on allocation failure. The callbacks and arg are borrowed. */
quota_t *quota_new(const quota_opts_t *opts, quota_probe_fn probe, quota_full_fn full, quota_key_valid_fn valid,
                   void *arg);
/* NULL-safe; nulls *self_p. */
void quota_destroy(quota_t **self_p);

/* A message from peer, of agency, admitted with key (Z85; NULL or "" when
 * unknown): QUOTA_OK (peer is, or now becomes, one of the agency's counted
 * connections), or QUOTA_CONNECTIONS with a reason for the sender. */
int quota_connection(quota_t *self, const char *agency, const char *key, const wire_peer_t *peer, char *reason,
                     size_t reason_len);

/* One event of len bytes published by agency at now_ms (monotonic):
 * QUOTA_OK (its tokens are taken), or QUOTA_RATE with a reason. */
int quota_publish(quota_t *self, const char *agency, size_t len, int64_t now_ms, char *reason, size_t reason_len);

/* Check the connections of full agencies (closed, or their key no longer
 * valid); call about once a second. */
void quota_tick(quota_t *self);

/* What quota_foreach reports per agency. The metrics built on it:
 * civibus_adapters_connected{agency} (connections), and the refusals counted
 * in civibus_events_refused_total{agency,reason="unavailable"}
 * (refused_rate) and civibus_auth_failures_total (the handshakes auth
 * refuses while full). */
typedef struct {
    const char *agency;
    size_t connections;           /* counted live connections */
    bool full;                    /* at connections_max */
    uint64_t refused_connections; /* messages refused on connections over the ceiling */
    uint64_t refused_rate;        /* events refused for the publish rate */
} quota_agency_t;

/* Call fn for every agency known; the struct lives for the call. */
void quota_foreach(const quota_t *self, void (*fn)(void *arg, const quota_agency_t *a), void *arg);

#endif
