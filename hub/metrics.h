/* metrics - the hub's counters and histograms, and the two documents the
 * monitoring endpoint serves: /metrics (Prometheus text format 0.0.4) and
 * /api/status (JSON).
 *
 * The router records what happens as it happens (metrics_event,
 * metrics_refused, metrics_commit, ...): plain increments, no lock, no
 * allocation except the first time an agency is seen. About once a second
 * it calls metrics_render, which reads what the other modules know (the
 * journal's figures and last checkpoint, the subscriptions, the registry's
 * key expiry, the open connections, the per-agency ceilings' refusals,
 * /proc/self) and writes both documents; the router hands them
 * to http, whose thread never sees any of this state. docs/MONITORING.md
 * lists every metric and field.
 *
 * Single-threaded: the router's thread only. Memory is bounded: counters
 * exist per agency admitted by the registry, the refusal list and the
 * throughput history are rings, and at most METRICS_SUBS_MAX subscriptions
 * are reported.
 */
#ifndef CIVIBUS_METRICS_H
#define CIVIBUS_METRICS_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "auth.h"
#include "config.h"
#include "journal.h"
#include "peers.h"
#include "quota.h"
#include "subs.h"

/* Subscriptions reported, at most (saved cursors accumulate without bound
 * in principle; the documents must not). */
#define METRICS_SUBS_MAX 10000
/* Refusals kept for /api/status, newest last. */
#define METRICS_REFUSALS 20
/* Throughput history: steps of METRICS_STEP_S seconds. */
#define METRICS_STEPS 60
#define METRICS_STEP_S 5

typedef struct metrics metrics_t;

/* Authentication failures counted here; ZAP refusals are counted by auth
 * (auth_refused) and read at render time. */
typedef enum {
    METRICS_HANDSHAKE_FAILED, /* a handshake libzmq gave up on before ZAP */
    METRICS_KEY_REFUSED,      /* a message of a key revoked or expired since its handshake */
} metrics_auth_t;

/* NULL when out of memory. */
metrics_t *metrics_new(void);
/* Free; NULL-safe; nulls *self_p. */
void metrics_destroy(metrics_t **self_p);

/* A monotonic clock in microseconds, for the latencies below. */
int64_t metrics_clock_us(void);

/* An event of agency was committed: written, or recognised as a duplicate. */
void metrics_event(metrics_t *self, const char *agency, bool duplicate);
/* A coded refusal was sent to agency (NULL when the sender has no identity):
 * code is the ErrorCode, reason the text sent with it (copied; cut to fit). */
void metrics_refused(metrics_t *self, const char *agency, int code, const char *reason);
/* Subscriptions were sent n events. */
void metrics_delivered(metrics_t *self, size_t n);
/* A PublishReply went out latency_us after its Publish was received. */
void metrics_publish_replied(metrics_t *self, int64_t latency_us);
/* A batch of events was committed (or failed to be) in latency_us. */
void metrics_commit(metrics_t *self, int64_t latency_us, size_t events);
/* Whether the log is at its storage ceiling (or the disk is full), as the
 * last write found it. */
void metrics_storage_full(metrics_t *self, bool full);
void metrics_auth_failure(metrics_t *self, metrics_auth_t kind);

/* What metrics_render reads besides its own counters (all borrowed). */
typedef struct {
    const config_t *cfg;
    journal_t *journal;
    subs_t *subs;
    auth_t *auth;
    const peers_t *peers;
    const quota_t *quota; /* may be NULL */
    const char *instance;  /* the hub instance id (hex) */
    int64_t started_at_us; /* when the hub started, µs since the epoch */
    uint64_t http_refused; /* requests the monitoring endpoint answered 404 or 405 */
} metrics_sources_t;

/* The documents of one render; the caller owns the strings. */
typedef struct {
    char *prometheus; /* text format 0.0.4 */
    size_t prometheus_len;
    char *status;     /* the /api/status JSON object */
    size_t status_len;
    const char *not_ready; /* NULL when ready; else a static reason for
                            * /readyz: "storage_full", "no_agency_keys" */
} metrics_report_t;

/* Render both documents at now_ms (monotonic); also closes a throughput
 * step when METRICS_STEP_S have passed. Returns 0, or -1 when out of memory
 * or a module's figures could not be read (logged; *out is then empty). */
int metrics_render(metrics_t *self, const metrics_sources_t *src, int64_t now_ms, metrics_report_t *out);
/* Free the strings of a report; NULL-safe. */
void metrics_report_free(metrics_report_t *report);

#endif
