/* sdk - private interface shared by the modules of libcivibus.
 *
 * The public contract is civibus.h; this header is what the modules say to
 * each other. It owns the definition of struct civ_client, which is split into
 * one part per module, and each part is read and written only by its module:
 *
 *   client.c     socket set-up (CURVE, options, connection monitor), sending,
 *                the receive pump that decodes HubMessages and hands each one
 *                to the module it concerns, the wait step of every blocking call
 *   error.c      civ_strerror, civ_error_name, wire code mapping, error details
 *   event.c      civ_event_t -> serialized ServiceEvent (UUIDv4 ids) and
 *                Delivery bytes -> civ_delivery_t in one allocation
 *   publish.c    sdk_pub_t: the ordered queue of published events, batches in
 *                flight, their re-sends, the window, acks in queue order
 *   subscribe.c  sdk_subs_t: subscriptions, the queue of received deliveries,
 *                credit, acks, re-subscribing after a reconnect or hub restart
 *   replay.c     civ_replay_t: reading the log with two requests in flight
 *   status.c     ping, status and checkpoint round trips (sdk_status_t)
 *   deadletters.c  list, redrive and drop of dead letters (sdk_dl_t)
 *   verify.c     consumer-side checks: event signatures, hub checkpoints
 *
 * Invariants: no global state; a client and all it owns belong to one thread.
 * Every wait is bounded by a deadline from codec_mono_ms(). Decoded hub
 * messages (codec_hub_msg_t) are freed with codec_hub_free by whoever holds
 * them; a handler that keeps one takes it with a `**` argument and nulls it.
 * Request ids come from one counter per client, so an id names one request of
 * one module.
 */
#ifndef CIVIBUS_SDK_H
#define CIVIBUS_SDK_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "civibus.h"
#include "codec.h"
#include "crypto.h"
#include "evsign.h"

/* Largest frame accepted from the hub (bytes). */
#define SDK_MAX_FRAME ((size_t)64 << 20)
/* Largest serialized event we send. A bigger event goes alone in its batch,
 * so this bounds the frame too, and it stays under the hub's default
 * max-message-size (16 MiB): a frame over the hub's limit makes the transport
 * drop the connection instead of answering too_large, and the batch would be
 * re-sent after every reconnect. Events over the hub's max-event-size (1 MiB
 * by default) but under this are answered too_large by the hub. */
#define SDK_EVENT_MAX (((size_t)16 << 20) - 4096)
#define SDK_DEFAULT_TIMEOUT_MS 5000
#define SDK_DEFAULT_WINDOW 1024u
#define SDK_DEFAULT_BATCH 64u
/* With a signing key: one Ed25519 signature (and one verification at the
 * hub, ~0.1 ms) per batch is spread over 4 times as many events, for 2 more
 * path hashes (70 bytes) per event (docs/SIGNING.md, "Performance"). */
#define SDK_DEFAULT_SIGNED_BATCH 256u
/* Ceilings on what a caller may ask for: each bounds memory held per client. */
#define SDK_WINDOW_MAX 65536u
#define SDK_BATCH_MAX 4096u
/* A publish batch is cut before it grows past this many bytes of events. */
#define SDK_BATCH_BYTES ((size_t)512 << 10)
/* Longest single sleep of a blocking call, so that timers run meanwhile. */
#define SDK_TICK_MS 100
/* Re-send period bounds: retry = clamp(timeout / 2, MIN, MAX). */
#define SDK_RETRY_MIN_MS 200
#define SDK_RETRY_MAX_MS 2000
/* With subscriptions open and no subscription traffic for this long, ping. */
#define SDK_IDLE_PING_MS 1000
/* Events asked for per Replay request; the hub may cap it lower. */
#define SDK_REPLAY_CHUNK 4096u
/* Replay requests kept in flight ahead of the reader. */
#define SDK_REPLAY_AHEAD 2
/* Hub messages handled per pump before the caller looks at its condition. */
#define SDK_DRAIN_MAX 64
#define SDK_UUID_LEN 36
#define SDK_INSTANCE_MAX 63
#define SDK_RAND_POOL 512

/* ---- event.c ------------------------------------------------------------ */

/* A buffer of random bytes refilled with getrandom(), so that generating an
 * event id costs a system call only once per SDK_RAND_POOL / 16 events. */
typedef struct {
    uint8_t pool[SDK_RAND_POOL];
    size_t used; /* bytes of pool already handed out; SDK_RAND_POOL: empty */
} sdk_rand_t;

void sdk_rand_init(sdk_rand_t *rnd);

/* Write a random (version 4) UUID in lower-case text form into out.
 * Returns CIV_OK, or CIV_E_INTERNAL when the kernel gives no random bytes. */
int sdk_uuid4(sdk_rand_t *rnd, char out[SDK_UUID_LEN + 1]);

/* Serialize event as a ServiceEvent from source: generates event_id when it
 * is NULL or "", uses now when occurred_at is 0, ignores event->source. On
 * success *out is a new malloc'd buffer of *out_len bytes owned by the caller
 * and event_id holds the id used. Returns CIV_OK, CIV_E_INVALID (why says
 * which field), CIV_E_TOO_LARGE (over SDK_EVENT_MAX), CIV_E_INTERNAL (no
 * random bytes) or CIV_E_NOMEM. */
int sdk_event_pack(const civ_event_t *event, const char *source, sdk_rand_t *rnd, uint8_t **out,
                   size_t *out_len, char event_id[CIV_ID_MAX + 1], char *why, size_t why_len);

/* Decode a Delivery (its event a serialized ServiceEvent) into a new
 * civ_delivery_t that owns copies of everything, in a single allocation.
 * Returns CIV_OK, CIV_E_PROTOCOL when the event is not a ServiceEvent, or
 * CIV_E_NOMEM. */
int sdk_delivery_new(const char *subscription, const Civibus__V1__Delivery *from, civ_delivery_t **out);

/* ---- error.c ------------------------------------------------------------ */

/* Map a wire ErrorCode to a civ_err (negation); unknown codes map to
 * CIV_E_PROTOCOL. OK maps to CIV_OK. */
int sdk_code_from_wire(int wire_code);

/* Record a detailed error in *err (may be NULL) and return code. */
int sdk_error_set(civ_error_t *err, int code, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));

/* ---- publish.c ---------------------------------------------------------- */

typedef struct {
    uint64_t token;   /* public token; 0 for civ_publish */
    uint8_t *data;    /* packed ServiceEvent until its batch is cut */
    size_t len;
    char *event_id;   /* heap copy */
    char *reason;     /* the hub's reason when refused; heap, or NULL */
    uint64_t seq;
    int code;         /* civ_err once done */
    bool duplicate;
    bool done;        /* the hub answered */
    bool sync;        /* belongs to civ_publish, not to the pipeline */
    bool gone;        /* nobody will return it: taken by civ_publish or abandoned */
} sdk_pub_entry_t;

typedef struct {
    uint64_t request_id;
    uint64_t first_slot; /* slot of its first event */
    uint32_t count;
    bool complete;       /* every live event has its answer */
    int64_t sent_ms;     /* last (re-)send */
    unsigned resends;    /* re-sends on the same connection, for the back-off */
    unsigned epoch;      /* link_epoch of the last (re-)send */
    uint8_t *frame;      /* the packed ClientMessage, kept for re-sends */
    size_t frame_len;
} sdk_pub_batch_t;

/* Entries live in a ring indexed by slot (a counter over all events ever
 * queued): slots [base, end) are held, [open_first, end) are not yet in a
 * batch. Batches live in a ring ordered by request_id. */
typedef struct {
    sdk_pub_entry_t *ring;
    uint64_t cap; /* power of two */
    uint64_t base, end, open_first;
    size_t open_bytes;
    sdk_pub_batch_t *batches;
    size_t b_head, b_len, b_cap;
    uint64_t next_token;
    size_t n_unacked; /* not done and not gone: what the window counts */
    size_t n_pending; /* pipelined entries not yet returned by civ_publish_recv */
    int64_t last_scan_ms; /* last look for batches to re-send */
} sdk_pub_t;

/* ---- subscribe.c -------------------------------------------------------- */

typedef enum {
    SDK_SUB_OPENING, /* civ_subscribe sent Subscribe and waits */
    SDK_SUB_ACTIVE,
    SDK_SUB_RESUB,   /* re-subscribing from the cursor */
} sdk_sub_state_t;

typedef struct sdk_sub sdk_sub_t;
typedef struct sdk_chunk sdk_chunk_t;

typedef struct {
    sdk_sub_t *list;
    sdk_chunk_t *head, *tail; /* received Deliver messages, oldest first */
    int64_t last_traffic_ms;  /* last subscribe_reply or deliver */
    int64_t last_ping_ms;     /* last keep-alive ping */
} sdk_subs_t;

/* ---- status.c ----------------------------------------------------------- */

typedef struct {
    uint64_t ping_id; /* outstanding civ_ping, 0 when none */
    bool ping_done;
    int ping_error;
    uint64_t ping_last_seq;
    uint64_t status_id; /* outstanding civ_status, 0 when none */
    bool status_done;
    codec_hub_msg_t *status_reply;
    int status_error;
    uint64_t checkpoint_id; /* outstanding civ_client_checkpoint, 0 when none */
    bool checkpoint_done;
    codec_hub_msg_t *checkpoint_reply;
    int checkpoint_error;
} sdk_status_t;

/* ---- deadletters.c ------------------------------------------------------ */

typedef struct {
    uint64_t id;            /* outstanding request, 0 when none */
    bool done;
    int error;
    codec_hub_msg_t *reply; /* the DeadLettersReply, once done */
    uint8_t *frame;         /* the packed request, re-sent until answered */
    size_t frame_len;
} sdk_dl_t;

/* ---- client.c ----------------------------------------------------------- */

struct civ_client {
    void *ctx;
    void *sock;    /* DEALER, CURVE client */
    void *monitor; /* PAIR receiving the socket's handshake events */
    char agency[CODEC_AGENCY_MAX + 1];
    int timeout_ms;
    int retry_ms;
    unsigned window;
    unsigned batch;
    uint64_t next_request_id;
    unsigned handshakes;   /* successful handshakes so far */
    unsigned link_epoch;   /* disconnects seen so far */
    bool in_link_check;
    bool auth_refused;     /* the last handshake was refused by the hub */
    char hub_instance[SDK_INSTANCE_MAX + 1]; /* latest seen; "" before any */
    civ_error_t err;       /* detail of the last error, for diagnostics */
    sdk_rand_t rnd;
    sdk_pub_t pub;
    sdk_subs_t subs;
    civ_replay_t *replays; /* open replays, linked through civ_replay */
    sdk_status_t status;
    sdk_dl_t dl;
    crypto_key_t *sign_key; /* NULL: publish unsigned */
    uint8_t sign_key_id[CRYPTO_KEYID_LEN];
};

/* A fresh request id (never 0). */
uint64_t sdk_request_id(civ_client_t *self);

/* Pack msg (version is set here) and send it as one frame without blocking.
 * Returns CIV_OK, CIV_E_TIMEOUT when the send queue is full, CIV_E_TRANSPORT. */
int sdk_send(civ_client_t *self, Civibus__V1__ClientMessage *msg);
/* Send an already packed ClientMessage frame. Same returns. */
int sdk_send_frame(civ_client_t *self, const uint8_t *frame, size_t len);

/* Read the connection monitor without blocking: count disconnects, and on a
 * new connection call the modules' on_reconnect hooks. Called by sdk_wait and
 * before a module stamps a send with link_epoch; not from inside a hook. */
void sdk_link_check(civ_client_t *self);

/* The absolute deadline for a call with timeout_ms (negative: the default). */
int64_t sdk_deadline(const civ_client_t *self, int timeout_ms);

/* One step of every blocking call: run the timers of all modules, then wait
 * for hub messages until deadline_ms (at most SDK_TICK_MS) and dispatch them.
 * Returns CIV_OK while time remains, CIV_E_TIMEOUT once deadline_ms passed,
 * CIV_E_NOT_AUTHORISED when the hub refused our key at the handshake,
 * CIV_E_TRANSPORT when the socket failed. Callers test their condition after
 * every step, whatever it returned. */
int sdk_wait(civ_client_t *self, int64_t deadline_ms);

/* A request's round trip: send(self, id) now and again every retry_ms until
 * *done or *error is set (by the module's reply and error hooks) or the
 * client's timeout passes. Returns *error, CIV_OK once done, or the last
 * sdk_wait result (CIV_E_TIMEOUT, ...). */
int sdk_round_trip(civ_client_t *self, int (*send)(civ_client_t *, uint64_t), uint64_t id, const bool *done,
                   const int *error);

/* Module hooks called by the pump (client.c) and by sdk_wait. */
void sdk_pub_init(sdk_pub_t *pub);
void sdk_pub_free(sdk_pub_t *pub);
void sdk_pub_on_reply(civ_client_t *self, const Civibus__V1__PublishReply *reply);
bool sdk_pub_on_error(civ_client_t *self, const Civibus__V1__Error *error);
void sdk_pub_tick(civ_client_t *self, int64_t now_ms);
void sdk_pub_on_reconnect(civ_client_t *self);

void sdk_subs_free(civ_client_t *self);
void sdk_subs_on_reply(civ_client_t *self, const Civibus__V1__SubscribeReply *reply);
void sdk_subs_on_deliver(civ_client_t *self, codec_hub_msg_t **msg_p);
bool sdk_subs_on_error(civ_client_t *self, const Civibus__V1__Error *error);
/* A hub_instance seen in a pong or subscribe reply: re-subscribe every
 * subscription opened under another instance. */
void sdk_subs_on_instance(civ_client_t *self, const char *hub_instance);
void sdk_subs_tick(civ_client_t *self, int64_t now_ms);
void sdk_subs_on_reconnect(civ_client_t *self);

bool sdk_replay_on_reply(civ_client_t *self, codec_hub_msg_t **msg_p);
bool sdk_replay_on_error(civ_client_t *self, const Civibus__V1__Error *error);
void sdk_replay_tick(civ_client_t *self, int64_t now_ms);
/* The client is going away: open replays keep working only to report it. */
void sdk_replay_detach_all(civ_client_t *self);

void sdk_status_free(sdk_status_t *st);
void sdk_status_on_pong(civ_client_t *self, const Civibus__V1__Pong *pong);
void sdk_status_on_reply(civ_client_t *self, codec_hub_msg_t **msg_p);
void sdk_status_on_checkpoint(civ_client_t *self, codec_hub_msg_t **msg_p);
bool sdk_status_on_error(civ_client_t *self, const Civibus__V1__Error *error);
/* Send a keep-alive ping whose answer nobody waits for. */
int sdk_status_ping(civ_client_t *self);

void sdk_dl_free(sdk_dl_t *dl);
void sdk_dl_on_reply(civ_client_t *self, codec_hub_msg_t **msg_p);
bool sdk_dl_on_error(civ_client_t *self, const Civibus__V1__Error *error);

#endif
