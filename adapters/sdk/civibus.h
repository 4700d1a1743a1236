/* civibus.h - libcivibus, the civibus adapter SDK.
 *
 * An agency system uses this library to talk to a civibus hub: publish service
 * events, follow durable subscriptions, replay the log. Everything travels over
 * one CURVE-encrypted ZeroMQ DEALER socket per client, speaking the protocol of
 * docs/PROTOCOL.md.
 *
 * Threads: a civ_client_t and everything obtained from it belong to one thread
 * at a time. Use one client per thread; clients are independent.
 *
 * Ownership: functions that return a new object (civ_client_new,
 * civ_next, civ_replay_open, civ_status) hand it to the caller, who frees it
 * with the matching _destroy; every _destroy accepts NULL and nulls the
 * caller's pointer. Pointers passed in are borrowed for the call only.
 *
 * Errors: functions return CIV_OK (0) or a negative civ_err code, described by
 * civ_strerror(); civ_error_name() gives the short wire name ("storage_full").
 * Every blocking call has a timeout and returns CIV_E_TIMEOUT when it passes.
 *
 * Reconnects: the socket reconnects on its own. A publish that times out may be
 * retried with the same event_id: the hub de-duplicates on (source, event_id)
 * and answers the original sequence number, flagged duplicate. Subscriptions
 * are re-opened from the saved cursor after the hub restarts.
 */
#ifndef CIVIBUS_H
#define CIVIBUS_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#ifdef __cplusplus
extern "C" {
#endif

enum civ_err {
    CIV_OK = 0,
    /* Codes the hub sends (mirroring ErrorCode of the protocol). */
    CIV_E_NOT_AUTHORISED = -1,
    CIV_E_MALFORMED = -2,
    CIV_E_TOO_LARGE = -3,
    CIV_E_STORAGE_FULL = -4,
    CIV_E_UNAVAILABLE = -5,
    CIV_E_INTERNAL = -6,
    CIV_E_UNKNOWN_SUBSCRIPTION = -7,
    CIV_E_BAD_REQUEST = -8,
    CIV_E_UNSUPPORTED_VERSION = -9,
    CIV_E_BAD_SIGNATURE = -10, /* a signature does not verify (hub or civ_verifier_check) */
    /* Codes of the library itself. */
    CIV_E_TIMEOUT = -20,   /* no answer in time; safe to retry */
    CIV_E_INVALID = -21,   /* bad argument (the message says which) */
    CIV_E_KEY = -22,       /* a key file cannot be read or is invalid */
    CIV_E_TRANSPORT = -23, /* ZeroMQ refused (endpoint, socket option) */
    CIV_E_PROTOCOL = -24,  /* the hub sent something undecodable or unexpected */
    CIV_E_NOMEM = -25,
    CIV_E_UNSIGNED = -26,    /* civ_verifier_check: the event carries no signature */
    CIV_E_UNKNOWN_KEY = -27, /* civ_verifier_check: no signing key of the source with that id */
};

/* Human-readable description of a civ_err code. Static string. */
const char *civ_strerror(int code);
/* Short machine name: "not_authorised", "malformed", "too_large",
 * "storage_full", "unavailable", "internal", "unknown_subscription",
 * "bad_request", "unsupported_version", "bad_signature", "timeout",
 * "invalid", "key", "transport", "protocol", "nomem", "unsigned",
 * "unknown_key". Static string. */
const char *civ_error_name(int code);

#define CIV_ID_MAX 128
#define CIV_REASON_MAX 256

/* A detailed error: code and a one-line message. */
typedef struct {
    int code;
    char message[CIV_REASON_MAX];
} civ_error_t;

typedef struct civ_client civ_client_t;

typedef struct {
    const char *endpoint;     /* hub endpoint, e.g. "tcp://127.0.0.1:7400" */
    const char *hub_key_file; /* the hub's public key file (hub.pub) */
    const char *key_file;     /* this agency's secret key file (AGENCY.key) */
    int timeout_ms;           /* default for blocking calls (0: 5000) */
    unsigned window;          /* publish events in flight, at most (0: 1024) */
    unsigned batch;           /* events per Publish message, at most (0: 64, or 256 with sign_key_file) */
    /* This agency's Ed25519 signing key (AGENCY-sign.key, PKCS#8 PEM, mode
     * 0600; civibus keygen writes it). When set, every Publish batch is
     * signed (docs/SIGNING.md); NULL publishes unsigned events. */
    const char *sign_key_file;
} civ_options_t;

/* Create a client and connect (ZeroMQ connects in the background; the first
 * call that needs the hub waits for it within its timeout). Returns NULL on
 * error and fills *err when err is not NULL. */
civ_client_t *civ_client_new(const civ_options_t *options, civ_error_t *err);
/* Close the socket (unsent messages are dropped after 1 s) and free. */
void civ_client_destroy(civ_client_t **self_p);
/* The agency id read from the key file. Valid while the client lives. */
const char *civ_client_agency(const civ_client_t *self);
/* A one-line description of the last error this client met, with the hub's
 * reason when it gave one ("" when none). Valid until the next call on the
 * client. */
const char *civ_client_error(const civ_client_t *self);

typedef struct {
    const char *key;
    const char *value;
} civ_header_t;

/* A service event. On publish all pointers are borrowed; event_id NULL or ""
 * makes the library generate a random UUID, occurred_at 0 means now, source is
 * ignored (the hub knows who is speaking; the library sets it). */
typedef struct {
    const char *event_id;
    const char *source;
    const char *type;         /* required, e.g. "population.birth.registered" */
    const char *subject;
    int64_t occurred_at;      /* µs since the Unix epoch */
    const char *content_type; /* e.g. "application/json" */
    const void *payload;
    size_t payload_len;
    const char *correlation_id;
    const civ_header_t *headers;
    size_t n_headers;
} civ_event_t;

/* The hub's answer to one published event. */
typedef struct {
    uint64_t token;                    /* from civ_publish_send; 0 for civ_publish */
    char event_id[CIV_ID_MAX + 1];
    uint64_t seq;                      /* sequence number when accepted */
    bool duplicate;                    /* accepted before; seq is the original */
    int error;                         /* CIV_OK or a negative civ_err code */
    char reason[CIV_REASON_MAX];       /* set when error != CIV_OK */
} civ_ack_t;

/* Publish one event and wait for its ack. Retries (same event_id) until
 * timeout. Returns CIV_OK when the hub answered (ack->error tells whether it
 * accepted), or CIV_E_TIMEOUT / another library error. After a timeout
 * ack->event_id still holds the id used (generated or given), for a retry. */
int civ_publish(civ_client_t *self, const civ_event_t *event, civ_ack_t *ack);

/* Pipelined publishing: queue an event; it is sent in a batch when the batch
 * is full, at civ_publish_flush, or when civ_publish_recv waits for one of
 * its acks. Blocks (up to
 * the timeout) only while `window` events are unacknowledged, collecting acks
 * meanwhile. *token identifies the event in its ack (1, 2, 3, ...). */
int civ_publish_send(civ_client_t *self, const civ_event_t *event, uint64_t *token);
/* Send any partly filled batch now. */
int civ_publish_flush(civ_client_t *self);
/* Take the next ack, in the order events were queued. Sends the partly
 * filled batch first when that ack's event is in it (so polling for acks
 * between sends keeps batches full). Waits up
 * to timeout_ms (-1: the client's default); unanswered batches are re-sent
 * meanwhile (every clamp(timeout_ms of the options / 2, 200, 2000) ms).
 * CIV_E_TIMEOUT when no ack arrived in time; CIV_E_INVALID when no event is
 * pending. Acks wait in the client until taken here, so a pipelined publisher
 * must also call this. */
int civ_publish_recv(civ_client_t *self, civ_ack_t *ack, int timeout_ms);
/* Events queued or sent and not yet returned by civ_publish_recv. */
size_t civ_publish_pending(const civ_client_t *self);

typedef enum {
    CIV_START_CURSOR = 0, /* the subscription's saved cursor; FIRST if none */
    CIV_START_FIRST = 1,
    CIV_START_LATEST = 2,
    CIV_START_SEQ = 3,    /* start.seq */
    CIV_START_TIME = 4,   /* start.time_us */
} civ_start_kind_t;

typedef struct {
    civ_start_kind_t kind;
    uint64_t seq;
    int64_t time_us;
} civ_start_t;

/* A received event. Everything it points to lives until civ_delivery_destroy. */
typedef struct {
    const char *subscription; /* "" for replay */
    uint64_t seq;
    int64_t received_at;      /* hub receive time, µs since the Unix epoch */
    civ_event_t event;        /* decoded fields ("" for absent strings) */
    const void *raw;          /* the serialized ServiceEvent as published */
    size_t raw_len;
    bool has_chain;           /* the hub sent the entry's chain hash */
    uint8_t chain[32];        /* its chain hash: proves the entry against a
                               * signed checkpoint (docs/LOG.md) */
} civ_delivery_t;

void civ_delivery_destroy(civ_delivery_t **self_p);

/* Open (or re-open) the durable subscription `name` of this agency, receiving
 * events whose type matches any of the filters ("*", "a.b.c", "a.b.*"). The
 * hub sends at most `window` unacknowledged-by-consumption events (credit);
 * the library grants more as civ_next hands events out. window 0 means 1024;
 * at most 65536. Waits for the hub's confirmation: CIV_OK, the hub's refusal
 * (e.g. CIV_E_NOT_AUTHORISED, CIV_E_BAD_REQUEST), CIV_E_INVALID or
 * CIV_E_TIMEOUT. A client may hold several subscriptions. */
int civ_subscribe(civ_client_t *self, const char *name, const char *const *filters, size_t n_filters,
                  civ_start_t start, uint32_t window);

/* Next event of any subscription of this client; *out is the caller's.
 * CIV_E_TIMEOUT when none arrived within timeout_ms (-1: default). Events
 * arrive in log order per subscription; after a reconnect the hub resends from
 * the last acknowledged one, and the library drops those it already handed out.
 * When the hub refuses to re-open a subscription after a reconnect or a hub
 * restart (e.g. CIV_E_NOT_AUTHORISED because the access policy changed),
 * civ_next returns that code once and the subscription is closed on this
 * client. */
int civ_next(civ_client_t *self, civ_delivery_t **out, int timeout_ms);

/* Acknowledge everything up to seq on subscription name (cumulative). The hub
 * saves the cursor; after a restart delivery resumes after it. */
int civ_ack(civ_client_t *self, const char *name, uint64_t seq);

/* Close a subscription on this connection (its cursor stays saved). */
int civ_unsubscribe(civ_client_t *self, const char *name);

typedef struct civ_replay civ_replay_t;

/* Read the log from `from` (FIRST, SEQ or TIME), at most count events (0: up
 * to the last sequence number at the time of the call). Fetches in batches
 * ahead of the reader. The replay borrows the client until destroyed. */
civ_replay_t *civ_replay_open(civ_client_t *self, civ_start_t from, uint64_t count, civ_error_t *err);
/* Next event, or CIV_OK with *out NULL at the end. A refusal by the hub is
 * returned as its code; CIV_E_INVALID once the client was destroyed. */
int civ_replay_next(civ_replay_t *self, civ_delivery_t **out, int timeout_ms);
void civ_replay_destroy(civ_replay_t **self_p);

/* ---- verifying signed events (docs/SIGNING.md) ------------------------- */

/* Check one received event's signature against the raw 32-byte Ed25519
 * public key of its source. CIV_OK when it verifies; CIV_E_UNSIGNED when the
 * event carries no signature; CIV_E_UNKNOWN_KEY when its key id is not that
 * key's; CIV_E_BAD_SIGNATURE when the fields are malformed, the inclusion
 * path is wrong or the signature fails; CIV_E_MALFORMED when d->raw is not
 * an event; CIV_E_INVALID for NULL arguments. */
int civ_event_verify(const civ_delivery_t *d, const uint8_t *public_key32);

/* The signing keys of every agency of a registry folder (one AGENCY.pub per
 * agency, certs/README.md), loaded once. */
typedef struct civ_verifier civ_verifier_t;
/* Load registry_dir's "sign" and "revoked-sign" lines. NULL on error (an
 * unreadable folder or an invalid entry), with *err filled when not NULL. */
civ_verifier_t *civ_verifier_new(const char *registry_dir, civ_error_t *err);
void civ_verifier_destroy(civ_verifier_t **self_p);
/* Check d against its source agency's key with the event's key id, valid
 * (not expired, not revoked) at d->received_at, the hub's receive time.
 * Returns as civ_event_verify, and CIV_E_UNKNOWN_KEY also for a key that
 * was not valid then. why (may be NULL) gets a one-line reason. */
int civ_verifier_check(const civ_verifier_t *self, const civ_delivery_t *d, char *why, size_t why_len);

/* Round trip to the hub. Fills the hub's last sequence number (may be NULL). */
int civ_ping(civ_client_t *self, uint64_t *last_seq);

typedef struct {
    char agency[CIV_ID_MAX + 1];
    char name[CIV_ID_MAX + 1];
    char filters[1024]; /* comma-separated */
    uint64_t cursor;    /* last acknowledged seq */
    bool connected;
    uint32_t credit;
    uint64_t in_flight;
} civ_sub_status_t;

#define CIV_WARNING_MAX 256

typedef struct {
    char version[32];
    char hub_instance[64];
    uint64_t first_seq;
    uint64_t last_seq;
    int64_t started_at;       /* µs since the Unix epoch */
    size_t n_subscriptions;
    civ_sub_status_t *subscriptions;
    /* Warnings of the hub for this agency, e.g. its keys that expire soon
     * (one sentence each, cut at CIV_WARNING_MAX - 1 bytes). */
    size_t n_warnings;
    char (*warnings)[CIV_WARNING_MAX];
} civ_status_t;

int civ_status(civ_client_t *self, civ_status_t **out);
void civ_status_destroy(civ_status_t **self_p);

#ifdef __cplusplus
}
#endif
#endif
