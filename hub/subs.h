/* subs - durable subscriptions: sessions, credit, cursors and delivery.
 *
 * A subscription is named per agency; its cursor (last acknowledged seq) and
 * filters are saved in the journal, so it outlives connections and restarts.
 * A session binds a subscription to one connection (a ROUTER routing id); a
 * new subscribe under the same name takes the subscription over, so a
 * consumer that reconnects simply subscribes again.
 *
 * Delivery is pull-by-credit: subs_pump sends a session at most as many
 * events as it has credit for, reading them from the journal in short read
 * transactions, so a slow consumer costs nothing but its cursor: nothing is
 * buffered for it, and it is served from the log when it grants credit again.
 * Filtered-out events are skipped without using credit.
 *
 * Cursors changed by acks are "dirty" until the router saves them, with the
 * next publish batch or after cursor_flush_ms (subs_take_dirty). A hub crash
 * can therefore lose the last acks, and the consumer then sees those events
 * again: delivery is at-least-once.
 *
 * Redelivery (docs/PROTOCOL.md §13): acks are cumulative, so what can fail is
 * the oldest delivered, unacknowledged event of a subscription, its "head".
 * When no ack moved the cursor for ack_timeout_ms while events are in flight,
 * when the consumer nacks, or when a session ends with the head in flight,
 * that attempt has failed: the session is rewound to its cursor (go-back-N:
 * the head and everything after it are sent again), a rewind marker (an empty
 * Deliver) tells the consumer to drop what it holds, and the next pass waits
 * a backoff doubling per failure. After max_attempts failed deliveries the
 * head becomes a dead letter of the subscription: a record in the journal
 * (saved in one transaction with the cursor moved past it) and delivery goes
 * on. Redriven dead letters are delivered one at a time before the
 * subscription's other events and are cleared by an ack of their own seq.
 * Attempt counts live in memory per subscription (they outlive sessions, not
 * the process); dead letters and redrive requests are durable.
 */
#ifndef CIVIBUS_SUBS_H
#define CIVIBUS_SUBS_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "codec.h"
#include "journal.h"
#include "policy.h"
#include "wire.h"

typedef struct subs subs_t;

typedef struct {
    size_t max_sessions;
    uint32_t credit_max;
    int64_t session_timeout_ms;
    int64_t ack_timeout_ms;    /* an in-flight head fails when no ack moved the cursor this long */
    uint32_t max_attempts;     /* failed deliveries of an event before it is a dead letter (>= 1) */
    int64_t backoff_ms;        /* wait before the second attempt, doubled after each failure ... */
    int64_t backoff_max_ms;    /* ... up to this */
} subs_opts_t;

/* The journal is borrowed and must outlive the subs. Counts the dead letters
 * the journal holds per subscription (logged as event=dead_letters_loaded). */
subs_t *subs_new(journal_t *journal, void *router, const subs_opts_t *opts);
void subs_destroy(subs_t **self_p);

/* Open (or take over) subscription req->name of agency on peer. Saves the
 * cursor before returning. Returns OK (0) and fills *next_seq, or an
 * ErrorCode with a reason: UNAVAILABLE when a new session would exceed
 * max_sessions (a takeover never does); BEHIND_RETENTION when the start (the
 * cursor, a SEQ or a TIME) asks for entries retention deleted: *next_seq is
 * then the first seq asked for (0 for a TIME), and the log starts at
 * journal_first_seq. The ceiling per agency is hub/quota.h's, asked before
 * with subs_agency_count. */
Civibus__V1__ErrorCode subs_open(subs_t *self, const char *agency, const char *key, const wire_peer_t *peer,
                                 const Civibus__V1__Subscribe *req, uint64_t *next_seq, char *reason,
                                 size_t reason_len);

/* Live sessions of agency, leaving out the one named except (NULL: none):
 * with except the name a subscribe asks for, the sessions it would add to,
 * since taking over an open session adds none. A scan, but subscribing is
 * rare. */
size_t subs_agency_count(const subs_t *self, const char *agency, const char *except);

/* Close every session whose connection's key (as given to subs_open) valid
 * no longer accepts: keys revoked or expired after the handshake stop
 * receiving at once, not at the connection's next message. */
typedef bool (*subs_key_valid_fn)(void *arg, const char *agency, const char *key);
void subs_drop_invalid(subs_t *self, subs_key_valid_fn valid, void *arg);

/* Close every session of peer (its key was refused). */
void subs_drop_peer(subs_t *self, const wire_peer_t *peer, const char *why);

/* Ack, credit and unsubscribe from peer; UNKNOWN_SUBSCRIPTION when peer holds
 * no such session (e.g. the hub restarted, or another connection took it). */
Civibus__V1__ErrorCode subs_ack(subs_t *self, const char *agency, const wire_peer_t *peer, const char *name,
                                uint64_t seq);
Civibus__V1__ErrorCode subs_credit(subs_t *self, const char *agency, const wire_peer_t *peer, const char *name,
                                   uint32_t credit);
Civibus__V1__ErrorCode subs_close(subs_t *self, const char *agency, const wire_peer_t *peer, const char *name);

/* A Nack from peer: acknowledges everything before seq, and fails the
 * attempt at the oldest unacknowledged event (or at the redriven event seq):
 * it is delivered again after a backoff, or becomes a dead letter with
 * reason (a valid UTF-8 string of at most JOURNAL_REASON_MAX bytes, checked
 * by the caller). Answered by a rewind marker, also when nothing was in
 * flight. UNKNOWN_SUBSCRIPTION as for subs_ack. */
Civibus__V1__ErrorCode subs_nack(subs_t *self, const char *agency, const wire_peer_t *peer, const char *name,
                                 uint64_t seq, const char *reason);

/* The dead letters of agency/name changed in the journal (a redrive or a
 * drop): re-count them, and let a live session deliver redriven ones. */
void subs_dead_letters_changed(subs_t *self, const char *agency, const char *name);

/* The dead letters agency/name has stored now (0 for a name the hub does
 * not know). Kept in memory: free. */
uint64_t subs_dead_letter_count(const subs_t *self, const char *agency, const char *name);

/* Events given up since the hub started, in all subscriptions, a redriven
 * dead letter given up again included (civibus_dead_letters_created_total).
 * Free. */
uint64_t subs_dead_letters_created(const subs_t *self);

/* New limits (a config reload). A lower credit_max applies to the next
 * grant, a lower max_sessions to the next subscribe, a new session timeout
 * at the next expiry check; nothing open is closed for it. A new
 * ack_timeout_ms applies from the next delivery or ack (a deadline already
 * set stays), new backoffs from the next failure, a new max_attempts at the
 * next failure or pass (an event past a lowered one becomes a dead letter
 * then; attempts already counted are kept). */
void subs_set_opts(subs_t *self, const subs_opts_t *opts);

/* The access policy to enforce (borrowed; NULL allows everything). A
 * subscription none of whose filters the policy allows is refused; events
 * the policy withholds are skipped like filtered-out ones. */
void subs_set_policy(subs_t *self, const policy_t *policy);

/* A sign of life from peer (a Ping): its sessions do not expire. */
void subs_touch(subs_t *self, const wire_peer_t *peer);

/* Fail the attempts whose ack timed out, send owed rewind markers, and
 * deliver what sessions have credit for, up to last_seq (redriven dead
 * letters first). Call after every commit, whenever credit arrived, and at
 * least every few hundred milliseconds (the timers). Returns events sent. */
size_t subs_pump(subs_t *self);

/* What the last subs_pump left: SUBS_IDLE, nothing to send; SUBS_MORE, a
 * session has credit and more events (pump again at once); SUBS_BUSY, only
 * sessions whose peer's queue was full (pump again in a few milliseconds). */
enum { SUBS_IDLE = 0, SUBS_MORE = 1, SUBS_BUSY = 2 };
int subs_pending(const subs_t *self);

/* Close sessions silent for longer than the session timeout. */
void subs_expire(subs_t *self, int64_t now_ms);

/* The dirty cursors, as an array valid until the next call into subs; the
 * caller saves them and then calls subs_saved(). */
size_t subs_take_dirty(subs_t *self, const journal_cursor_t **out);
void subs_saved(subs_t *self);

/* Fill status->subscriptions with agency's subscriptions (live sessions and
 * saved cursors): an agency sees its own, not others' names and filters. The
 * strings and array are allocated; free them with subs_status_free. */
int subs_status(subs_t *self, const char *agency, Civibus__V1__StatusReply *status);
void subs_status_free(Civibus__V1__StatusReply *status);

/* Did retention delete entries after this cursor (acknowledged seq), so
 * that the subscription cannot resume from it? The
 * civibus_subscription_behind_retention{agency,subscription} gauge and
 * SubscriptionStatus.behind_retention. */
bool subs_cursor_behind(const subs_t *self, uint64_t cursor);

size_t subs_count(const subs_t *self);

/* One subscription as the monitoring endpoint shows it (subs_foreach).
 * Strings are valid during the callback only. */
typedef struct {
    const char *agency;
    const char *name;
    bool connected;        /* a session is open on a connection now */
    uint64_t cursor;       /* last acknowledged seq; lag = last_seq - cursor
                            * (civibus_subscription_lag_events) */
    uint64_t in_flight;    /* sent, not acknowledged, a redriven dead letter
                            * included; 0 when not connected
                            * (civibus_subscription_inflight_events) */
    uint32_t credit;       /* events the consumer still accepts */
    uint64_t redeliveries; /* deliveries with attempt > 1 since the hub started
                            * (civibus_subscription_redeliveries_total) */
    uint64_t dead_letters; /* dead letters stored now
                            * (civibus_subscription_dead_letters) */
    bool behind_retention; /* its cursor points before the oldest entry kept
                            * (civibus_subscription_behind_retention) */
} subs_info_t;

/* Return 0 to go on, non-zero to stop (that value is returned). The callback
 * must not call into subs or the journal. */
typedef int (*subs_info_fn)(const subs_info_t *info, void *arg);

/* Visit every subscription of every agency: the live sessions first, then
 * the saved cursors of those not live. For the monitoring endpoint, which
 * must not see another module's state any other way. Returns 0, the
 * callback's non-zero value, or a negative journal_err. */
int subs_foreach(subs_t *self, subs_info_fn fn, void *arg);

#endif
