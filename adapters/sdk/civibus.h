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
 * civ_next, civ_replay_open, civ_status, civ_dead_letters_*, civ_verifier_new,
 * civ_hub_keys_new) hand it to the caller, who frees it
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
    CIV_E_BEHIND_RETENTION = -11, /* retention deleted entries a subscription or replay needs */
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
 * "bad_request", "unsupported_version", "bad_signature", "behind_retention", "timeout",
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
    uint32_t attempt;         /* subscriptions: the delivery attempt, 1 the first
                               * time; more when the hub delivers it again after a
                               * nack, an ack timeout or a lost session (counted
                               * while it is the oldest unacknowledged event, see
                               * civ_nack); 0 for replay */
} civ_delivery_t;

void civ_delivery_destroy(civ_delivery_t **self_p);

/* Open (or re-open) the durable subscription `name` of this agency, receiving
 * events whose type matches any of the filters ("*", "a.b.c", "a.b.*"). The
 * hub sends at most `window` unacknowledged-by-consumption events (credit);
 * the library grants more as civ_next hands events out. window 0 means 1024;
 * at most 65536. Waits for the hub's confirmation: CIV_OK, the hub's refusal
 * (e.g. CIV_E_NOT_AUTHORISED, CIV_E_BAD_REQUEST), CIV_E_INVALID or
 * CIV_E_TIMEOUT. A client may hold several subscriptions.
 * CIV_E_BEHIND_RETENTION: the hub's retention deleted entries the start
 * asks for (after the saved cursor, or a SEQ or TIME before the log's
 * start); civ_client_error() names them. Nothing was skipped: to accept the
 * loss, subscribe again with CIV_START_FIRST (or a SEQ from the log's
 * start, civ_status first_seq). */
int civ_subscribe(civ_client_t *self, const char *name, const char *const *filters, size_t n_filters,
                  civ_start_t start, uint32_t window);

/* Next event of any subscription of this client; *out is the caller's.
 * CIV_E_TIMEOUT when none arrived within timeout_ms (-1: default). Events
 * arrive in log order per subscription; after a reconnect the hub resends from
 * the last acknowledged one, and the library drops those it already handed out.
 * When the hub delivers again (after civ_nack, an ack timeout, or a redrive of
 * a dead letter) the events come again, even those handed out before, with
 * d->attempt telling the attempt; events the library held but had not handed
 * out yet are dropped then, and come in order again.
 * When the hub refuses to re-open a subscription after a reconnect or a hub
 * restart (e.g. CIV_E_NOT_AUTHORISED because the access policy changed),
 * civ_next returns that code once and the subscription is closed on this
 * client. So does CIV_E_BEHIND_RETENTION when the hub's retention deleted
 * events before they were delivered (the range is in civ_client_error());
 * subscribe again with an explicit start to go on. Either comes after the
 * events of that subscription already received. */
int civ_next(civ_client_t *self, civ_delivery_t **out, int timeout_ms);

/* Acknowledge everything up to seq on subscription name (cumulative). The hub
 * saves the cursor; after a restart delivery resumes after it. */
int civ_ack(civ_client_t *self, const char *name, uint64_t seq);

/* The application failed the event seq of subscription name: everything
 * before seq is processed (as civ_ack(name, seq - 1)), and seq is to be
 * delivered again. The hub delivers it again after a backoff, with a higher
 * attempt, together with what followed it (acks are cumulative: nothing after
 * seq is taken as processed until seq is); once it has failed max_attempts
 * times (a hub setting, 5 by default) it becomes a dead letter of the
 * subscription and delivery goes on after it. Events the library holds for
 * the subscription are dropped at once, and civ_next hands out nothing of it
 * until the hub has taken the nack back in hand. reason (may be NULL) is for
 * people and kept with a dead letter: valid UTF-8, at most 256 bytes, else
 * CIV_E_INVALID. A dead letter being redriven (civ_dead_letters_redrive) is
 * nacked by its own seq. Returns CIV_OK, CIV_E_UNKNOWN_SUBSCRIPTION, or a send
 * error. An event not acknowledged within the hub's ack_timeout_ms (30 s by
 * default) is delivered again the same way. */
int civ_nack(civ_client_t *self, const char *name, uint64_t seq, const char *reason);

/* Close a subscription on this connection (its cursor stays saved). */
int civ_unsubscribe(civ_client_t *self, const char *name);

/* ---- dead letters (docs/PROTOCOL.md §13) -------------------------------- */

#define CIV_DEAD_LETTERS_SEQS_MAX 1000 /* seqs one redrive or drop may name */

/* One dead letter: an event the hub gave up delivering to a subscription. */
typedef struct {
    uint64_t seq;          /* the log entry; the event stays in the log */
    uint32_t attempts;     /* deliveries made before it was given up */
    int64_t dead_at;       /* when, µs since the Unix epoch */
    bool redrive;          /* a redrive is pending */
    bool gone;             /* the log no longer holds the event (retention) */
    int64_t received_at;   /* the entry's receive time; 0 when gone */
    char reason[CIV_REASON_MAX + 1]; /* the last failure: a nack's reason, or the hub's */
    char type[CIV_ID_MAX + 1];       /* "" when gone, or when the access policy no
                                      * longer lets this agency receive it */
    char source[CIV_ID_MAX + 1];
    char event_id[CIV_ID_MAX + 1];
} civ_dead_letter_t;

/* The answer to a dead-letter request; everything lives in one allocation. */
typedef struct {
    size_t n;                  /* list: dead letters of this page, ascending seq */
    civ_dead_letter_t *items;
    uint64_t next_after;       /* list: after_seq of the next page; 0 at the end */
    uint64_t total;            /* dead letters of the subscription now */
    uint64_t affected;         /* redrive, drop: records redriven or removed */
    size_t n_not_found;        /* redrive, drop: named seqs that are no dead letter */
    uint64_t *not_found;
    size_t n_gone;             /* redrive: not redriven, the log no longer holds the event */
    uint64_t *gone;
} civ_dead_letters_t;

/* List the dead letters of this agency's subscription name with seq >
 * after_seq, at most limit (0: 100; the hub gives at most 1000). An agency
 * sees only its own subscriptions'. *out is the caller's
 * (civ_dead_letters_destroy). Returns CIV_OK, CIV_E_INVALID, CIV_E_TIMEOUT or
 * the hub's refusal. */
int civ_dead_letters_list(civ_client_t *self, const char *name, uint64_t after_seq, uint32_t limit,
                          civ_dead_letters_t **out);
/* Deliver dead letters again to subscription name: seqs[0..n_seqs) (at most
 * CIV_DEAD_LETTERS_SEQS_MAX), or every one when all is true (then n_seqs is
 * 0). They go out one at a time, before the subscription's other events, with
 * attempt 1 again; an ack of its seq clears one, a nack or an ack timeout
 * counts an attempt, and after max_attempts it is a dead letter again. The
 * request is durable: a subscription without a live session gets them when
 * it next subscribes. out may be NULL. */
int civ_dead_letters_redrive(civ_client_t *self, const char *name, const uint64_t *seqs, size_t n_seqs, bool all,
                             civ_dead_letters_t **out);
/* Delete dead-letter records (the events stay in the log); arguments as for
 * civ_dead_letters_redrive. */
int civ_dead_letters_drop(civ_client_t *self, const char *name, const uint64_t *seqs, size_t n_seqs, bool all,
                          civ_dead_letters_t **out);
void civ_dead_letters_destroy(civ_dead_letters_t **self_p);

typedef struct civ_replay civ_replay_t;

/* Read the log from `from` (FIRST, SEQ or TIME), at most count events (0: up
 * to the last sequence number at the time of the call). Fetches in batches
 * ahead of the reader. The replay borrows the client until destroyed. */
civ_replay_t *civ_replay_open(civ_client_t *self, civ_start_t from, uint64_t count, civ_error_t *err);
/* Next event, or CIV_OK with *out NULL at the end. A refusal by the hub is
 * returned as its code (CIV_E_BEHIND_RETENTION when retention deleted
 * entries the replay still had to read: open a new one from FIRST);
 * CIV_E_INVALID once the client was destroyed. */
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

/* ---- the hub's signed checkpoints (docs/LOG.md) -------------------------- */

/* A checkpoint: the hub's Ed25519 signature over the chain hash of its log at
 * seq. Kept outside the hub (a witness file, `civibus checkpoint fetch`), it
 * later shows whether the log was cut back or rewritten before seq
 * (`civibus verify --witness`). */
typedef struct {
    uint64_t seq;          /* the last log entry it covers */
    int64_t time_us;       /* when the hub signed it, µs since the Unix epoch */
    uint8_t chain[32];     /* the chain hash of entry seq (civ_delivery_t.chain) */
    uint8_t key_id[8];     /* id of the hub signing key that signed it */
    uint8_t signature[64]; /* Ed25519 */
    uint64_t last_seq;     /* the log's last sequence number when asked (>= seq) */
} civ_checkpoint_t;

/* Ask the hub for its latest signed checkpoint (any admitted agency may).
 * CIV_OK; CIV_E_UNAVAILABLE when it has none (a hub without a signing key,
 * or an empty log: civ_client_error says which); CIV_E_PROTOCOL when the
 * reply's fields have the wrong lengths; else as civ_ping. The checkpoint
 * is not verified here: see civ_checkpoint_verify. */
int civ_client_checkpoint(civ_client_t *self, civ_checkpoint_t *out);

/* The hub's signing public keys with their validity, loaded once. */
typedef struct civ_hub_keys civ_hub_keys_t;
/* Load them from path: the registry's hub-sign.pub (a list of keys with
 * not-after and revocations, certs/README.md) or a single PEM public key
 * (hub-sign.pub as civibus keygen --hub writes it, valid for ever). NULL on
 * error, with *err filled when not NULL. */
civ_hub_keys_t *civ_hub_keys_new(const char *path, civ_error_t *err);
void civ_hub_keys_destroy(civ_hub_keys_t **self_p);
/* Check cp's signature: made by a key of keys that was valid at
 * cp->time_us (listed, not revoked or expired by then). CIV_OK;
 * CIV_E_UNKNOWN_KEY (no such key, or not valid then); CIV_E_BAD_SIGNATURE;
 * CIV_E_INVALID for NULL arguments; CIV_E_INTERNAL when OpenSSL failed. why
 * (may be NULL) gets a one-line reason. */
int civ_checkpoint_verify(const civ_hub_keys_t *keys, const civ_checkpoint_t *cp, char *why, size_t why_len);

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
    uint64_t redeliveries; /* events delivered again since the hub started */
    uint64_t dead_letters; /* dead letters stored now */
    bool behind_retention; /* retention deleted entries after the cursor: a
                            * subscribe from the cursor gets CIV_E_BEHIND_RETENTION */
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
