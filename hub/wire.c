/* wire - send one HubMessage to one peer of the hub's ROUTER socket.
 *
 * The body is packed straight into the zmq_msg_t's buffer: one allocation,
 * no copy.
 */
#include "wire.h"

#include <errno.h>
#include <stdio.h>
#include <zmq.h>

#include "log.h"

int wire_send(void *router, const wire_peer_t *peer, Civibus__V1__HubMessage *msg)
{
    msg->version = CODEC_PROTOCOL_VERSION;
    size_t len = civibus__v1__hub_message__get_packed_size(msg);
    zmq_msg_t body;
    if (zmq_msg_init_size(&body, len) != 0)
        return WIRE_FAIL;
    civibus__v1__hub_message__pack(msg, zmq_msg_data(&body));
    if (zmq_send(router, peer->id, peer->len, ZMQ_SNDMORE | ZMQ_DONTWAIT) < 0) {
        int e = zmq_errno();
        zmq_msg_close(&body);
        if (e == EAGAIN)
            return WIRE_BUSY;
        if (e == EHOSTUNREACH)
            return WIRE_GONE;
        log_limited(LOG_ERROR, "wire", "wire.send", "event=send_failed error=\"%s\"", zmq_strerror(e));
        return WIRE_FAIL;
    }
    /* With the routing frame accepted, the body frame cannot fail for lack of
     * room: ZeroMQ checks the high-water mark at the first frame. */
    if (zmq_msg_send(&body, router, ZMQ_DONTWAIT) < 0) {
        zmq_msg_close(&body);
        log_limited(LOG_ERROR, "wire", "wire.send", "event=send_failed error=\"%s\"", zmq_strerror(zmq_errno()));
        return WIRE_FAIL;
    }
    return WIRE_OK;
}

int wire_send_error(void *router, const wire_peer_t *peer, uint64_t request_id, const char *subscription,
                    Civibus__V1__ErrorCode code, const char *reason)
{
    Civibus__V1__Error err = CIVIBUS__V1__ERROR__INIT;
    err.request_id = request_id;
    err.subscription = (char *)(subscription ? subscription : "");
    err.code = code;
    err.reason = (char *)reason;
    Civibus__V1__HubMessage msg = CIVIBUS__V1__HUB_MESSAGE__INIT;
    msg.body_case = CIVIBUS__V1__HUB_MESSAGE__BODY_ERROR;
    msg.error = &err;
    return wire_send(router, peer, &msg);
}

int wire_send_behind(void *router, const wire_peer_t *peer, uint64_t request_id, const char *subscription,
                     uint64_t lost_from, uint64_t lost_to)
{
    char what[96], reason[256];
    if (lost_from)
        snprintf(what, sizeof what, "entries %llu to %llu", (unsigned long long)lost_from,
                 (unsigned long long)lost_to);
    else
        snprintf(what, sizeof what, "entries up to %llu received at or after that time",
                 (unsigned long long)lost_to);
    snprintf(reason, sizeof reason, "%s were deleted by retention; the log starts at %llu: %s", what,
             (unsigned long long)lost_to + 1,
             subscription ? "subscribe again with start FIRST or SEQ to go on from there"
                          : "replay from FIRST or a later SEQ");
    Civibus__V1__Error err = CIVIBUS__V1__ERROR__INIT;
    err.request_id = request_id;
    err.subscription = (char *)(subscription ? subscription : "");
    err.code = CIVIBUS__V1__ERROR_CODE__BEHIND_RETENTION;
    err.reason = reason;
    err.lost_from = lost_from;
    err.lost_to = lost_to;
    Civibus__V1__HubMessage msg = CIVIBUS__V1__HUB_MESSAGE__INIT;
    msg.body_case = CIVIBUS__V1__HUB_MESSAGE__BODY_ERROR;
    msg.error = &err;
    return wire_send(router, peer, &msg);
}
