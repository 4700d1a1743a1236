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
 * The monitor's queue holds about 2000 events and the loop reads it at every
 * turn; should a storm of connections overflow it, libzmq drops events, and
 * a connection whose DISCONNECTED was lost stays counted until its
 * descriptor is reused.
 *
 * Single-threaded: used by the router's loop. Memory grows with the highest
 * descriptor number, which the process's descriptor limit bounds.
 */
#ifndef CIVIBUS_PEERS_H
#define CIVIBUS_PEERS_H

#include <stddef.h>
#include <stdint.h>

#include "wire.h"

typedef struct peers peers_t;

/* An empty table. NULL when out of memory. */
peers_t *peers_new(void);
/* Free; NULL-safe; nulls *self_p. */
void peers_destroy(peers_t **self_p);

/* The monitor reported connection fd accepted (its owner still unknown). */
void peers_accepted(peers_t *self, int fd);
/* The monitor reported connection fd closed. */
void peers_disconnected(peers_t *self, int fd);

/* A message of agency arrived from peer over connection fd (ZMQ_SRCFD; a
 * negative fd is ignored). Cheap enough for every message: an array index
 * and a comparison of the routing id. Only an fd the monitor reported open
 * is labelled, so a message still queued from a connection already closed
 * does not bring it back. */
void peers_seen(peers_t *self, int fd, const wire_peer_t *peer, const char *agency);

/* Connections open now, identified or not (civibus_connections_open). */
size_t peers_open(const peers_t *self);

/* Connections of agency open now (civibus_adapters_connected{agency}). */
size_t peers_count(const peers_t *self, const char *agency);

/* Call fn for every agency with at least one connection open, with the
 * number of them; in no particular order, each agency once. The agency
 * string is valid during the call only. */
typedef void (*peers_fn)(const char *agency, size_t connections, void *arg);
void peers_each(const peers_t *self, peers_fn fn, void *arg);

#endif
