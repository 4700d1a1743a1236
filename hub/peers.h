/* peers - the connections open on the hub's ROUTER socket, and whose they are.
 *
 * libzmq does not tell the application when a peer connects or leaves (the
 * ROUTER_NOTIFY option is a draft that Debian's libzmq 4.3.4 lacks), so the
 * picture is assembled from two sources, both keyed by the connection's
 * file descriptor:
 *   - the ROUTER's socket monitor: ZMQ_EVENT_ACCEPTED opens a connection,
 *     ZMQ_EVENT_DISCONNECTED closes it (both carry the descriptor);
 *   - every authenticated message: its descriptor (ZMQ_SRCFD), its routing
 *     id and the agency ZAP admitted (User-Id) name the connection's owner.
 * A connection is thus counted for its agency from its first message on; a
 * connection that completed its handshake but never sent anything, or that
 * is still in its handshake, counts as open but unidentified. When a closed
 * connection's descriptor is reused at once, a message the old connection
 * left queued may label the new one until the new one's own first message,
 * which the routing id (never reused by the ROUTER) tells apart.
 *
 * The router reads the monitor through a pipe without a high-water mark, at
 * every turn and whenever a message comes from a connection not reported
 * yet, so no event is lost; a connection is counted until its DISCONNECTED
 * event is read, which libzmq sends for every accepted connection when it
 * closes (a failed handshake included).
 *
 * Each connection also keeps the peer's address (ip:port), read with
 * getpeername when ACCEPTED is read, and whether its handshake completed, so
 * that a connection closing without one can be reported with its address
 * (random bytes leave libzmq's monitor silent but for ACCEPTED and
 * DISCONNECTED). Two limits of the monitor shape this:
 *   - ACCEPTED is read some time after libzmq accepted the connection: if it
 *     closed meanwhile, the descriptor may be closed ("-" is recorded) or
 *     already reused by another connection or file (its address, or "-",
 *     is recorded). A connection libzmq drops at once (bytes sent with the
 *     connect) often loses that race when the hub is busy.
 *   - HANDSHAKE_SUCCEEDED does not name the descriptor (libzmq 4.3.4 gives 0).
 *     A connection is known to have completed its handshake when its first
 *     message arrives, or when the successes read outnumber or equal the
 *     connections still unaccounted for (all of them completed). A
 *     connection that closes while other handshakes complete at the same
 *     time, without having sent a message, may therefore be reported as
 *     closed before its handshake, or a garbage one not reported; the
 *     bookkeeping settles whenever no connection is in that state.
 *
 * The table also holds, per connection, whether it is admitted as one of its
 * agency's connections under the ceiling hub/quota.h enforces
 * (peers_admit): the places of an agency are freed by the same events that
 * end its connections, so the ceiling and the counts never disagree.
 *
 * Single-threaded: used by the router's loop. Memory grows with the highest
 * descriptor number, which the process's descriptor limit bounds.
 */
#ifndef CIVIBUS_PEERS_H
#define CIVIBUS_PEERS_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "wire.h"

typedef struct peers peers_t;

/* An empty table. NULL when out of memory. */
peers_t *peers_new(void);
/* Free; NULL-safe; nulls *self_p. */
void peers_destroy(peers_t **self_p);

/* Longest address recorded, with its terminating NUL ("[v6]:port"). */
#define PEERS_ADDR_MAX 64

/* The monitor reported connection fd accepted (its owner still unknown);
 * records the peer's address (getpeername; "-" when that fails). */
void peers_accepted(peers_t *self, int fd);
/* The monitor reported a handshake completed, on a connection it does not
 * name (ZMQ_EVENT_HANDSHAKE_SUCCEEDED). */
void peers_handshake_ok(peers_t *self);
/* Did connection fd complete its handshake, as far as is known? (false for
 * an fd not open). The router reads the monitor before a connection's first
 * message is labelled, so that its HANDSHAKE_SUCCEEDED has been counted. */
bool peers_handshaken(const peers_t *self, int fd);

typedef enum {
    PEERS_CLOSED,          /* a connection that completed its handshake */
    PEERS_CLOSED_EARLY,    /* a connection that never completed its handshake */
    PEERS_CLOSED_UNKNOWN,  /* fd was not an open connection */
} peers_closed_t;

/* The monitor reported connection fd closed. addr (PEERS_ADDR_MAX bytes)
 * receives the peer's address recorded at ACCEPTED, "-" when none. */
peers_closed_t peers_disconnected(peers_t *self, int fd, char addr[PEERS_ADDR_MAX]);

/* A message of agency arrived from peer over connection fd (ZMQ_SRCFD; a
 * negative fd is ignored), whose handshake admitted key (Z85; NULL or "" when
 * unknown). Cheap enough for every message: an array index and a comparison
 * of the routing id. Only an fd the monitor reported open is labelled, so a
 * message still queued from a connection already closed does not bring it
 * back. Returns true when fd is such an open connection, false when the
 * monitor has not reported it (yet, or any more). */
bool peers_seen(peers_t *self, int fd, const wire_peer_t *peer, const char *agency, const char *key);

/* Connections open now, identified or not (civibus_connections_open). */
size_t peers_open(const peers_t *self);

/* Connections of agency open now (civibus_adapters_connected{agency}). */
size_t peers_count(const peers_t *self, const char *agency);

/* Call fn for every agency with at least one connection open, with the
 * number of them; in no particular order, each agency once. The agency
 * string is valid during the call only. */
typedef void (*peers_fn)(const char *agency, size_t connections, void *arg);
void peers_each(const peers_t *self, peers_fn fn, void *arg);

/* ---- admission under a per-agency ceiling (hub/quota.h) ---- */

typedef enum {
    PEERS_ADMITTED, /* the connection holds one of its agency's places */
    PEERS_OVER,     /* its agency's places are all held by other connections */
    PEERS_UNKNOWN,  /* fd is not an open connection labelled by peers_seen */
} peers_admit_t;

/* Admit connection fd as one of at most max of its agency: PEERS_ADMITTED
 * when it was already, or is now (then *admitted, when not NULL, is the
 * agency's admitted connections with it), else PEERS_OVER or PEERS_UNKNOWN.
 * A connection keeps its place until it closes, its descriptor changes
 * hands, or peers_release_invalid; a lower max frees none. */
peers_admit_t peers_admit(peers_t *self, int fd, size_t max, size_t *admitted);

/* Connections of agency admitted now. */
size_t peers_admitted(const peers_t *self, const char *agency);

/* Free the place of every admitted connection whose key valid no longer
 * accepts (revoked, expired or removed since its handshake): it stays open
 * and counted in peers_count, but no longer keeps the agency's new key out.
 * A scan of the table; call it about once a second at most. */
typedef bool (*peers_key_valid_fn)(void *arg, const char *agency, const char *key);
void peers_release_invalid(peers_t *self, peers_key_valid_fn valid, void *arg);

#endif
