/* wire - send one HubMessage to one peer of the hub's ROUTER socket.
 *
 * Sends never block: the ROUTER runs with ZMQ_ROUTER_MANDATORY, so a peer
 * that is gone is reported (WIRE_GONE) instead of its messages vanishing, and
 * a peer whose queue is full is reported (WIRE_BUSY) so the caller can keep
 * the work and retry, rather than buffering without bound.
 */
#ifndef CIVIBUS_WIRE_H
#define CIVIBUS_WIRE_H

#include <stddef.h>
#include <stdint.h>

#include "codec.h"

enum wire_err {
    WIRE_OK = 0,
    WIRE_BUSY = -1, /* the peer's send queue is full (EAGAIN) */
    WIRE_GONE = -2, /* the peer is not connected any more (EHOSTUNREACH) */
    WIRE_FAIL = -3, /* any other ZeroMQ error (logged) */
};

/* A routing id as the ROUTER gives it (at most 255 bytes). */
typedef struct {
    uint8_t id[255];
    uint8_t len;
} wire_peer_t;

/* Pack msg (its version is set here) and send it to peer. */
int wire_send(void *router, const wire_peer_t *peer, Civibus__V1__HubMessage *msg);

/* Send an Error message; convenience for refusals. */
int wire_send_error(void *router, const wire_peer_t *peer, uint64_t request_id, const char *subscription,
                    Civibus__V1__ErrorCode code, const char *reason);

/* Send Error{BEHIND_RETENTION}: entries lost_from..lost_to were deleted by
 * retention (lost_from 0: where the loss begins is not known, as for a start
 * time), so the log starts at lost_to + 1. The reason says so and how to go
 * on: a subscription (subscription set) subscribes again with an explicit
 * start, a replay starts again from FIRST. */
int wire_send_behind(void *router, const wire_peer_t *peer, uint64_t request_id, const char *subscription,
                     uint64_t lost_from, uint64_t lost_to);

#endif
