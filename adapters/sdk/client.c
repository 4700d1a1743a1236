/* client - the connection of libcivibus to a hub.
 *
 * Owns the ZeroMQ context, the DEALER socket (a CURVE client keyed from the
 * agency's and the hub's key files) and a monitor socket that reports
 * handshakes. Every frame sent is one packed ClientMessage; every frame
 * received is decoded once, through codec_hub_decode with a 64 MiB ceiling,
 * and handed to the module it concerns. Nothing is dropped for being
 * unexpected at the moment: deliveries that arrive while the caller waits for
 * a publish ack go to the subscription queue, replay replies to their replay,
 * and so on, each bounded by its own window.
 *
 * The monitor matters for two things the socket alone does not say: a
 * handshake refused by the hub's authentication (blocking calls then fail
 * with CIV_E_NOT_AUTHORISED instead of waiting out their timeout), and a new
 * connection after a lost one (the hub then knows nothing of this client's
 * subscriptions, so they are re-opened, and unanswered publish batches are
 * re-sent at once). ZeroMQ keeps what was queued while the link was down and
 * sends it on the new connection; only what went out before the disconnect
 * may be lost. So every send is stamped with link_epoch (incremented at each
 * disconnect), and a new connection re-sends only older sends.
 */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <zmq.h>

#include "keyfile.h"
#include "sdk.h"

static int s_setopt_int(civ_client_t *self, int opt, const char *name, int value, civ_error_t *err)
{
    if (zmq_setsockopt(self->sock, opt, &value, sizeof value) == 0)
        return CIV_OK;
    return sdk_error_set(err, CIV_E_TRANSPORT, "zmq_setsockopt(%s): %s", name, zmq_strerror(zmq_errno()));
}

static int s_configure(civ_client_t *self, const keyfile_t *mine, const keyfile_t *hub, civ_error_t *err)
{
    int64_t maxmsg = (int64_t)SDK_MAX_FRAME;
    if (zmq_setsockopt(self->sock, ZMQ_MAXMSGSIZE, &maxmsg, sizeof maxmsg) != 0)
        return sdk_error_set(err, CIV_E_TRANSPORT, "zmq_setsockopt(ZMQ_MAXMSGSIZE): %s",
                             zmq_strerror(zmq_errno()));
    static const struct {
        int opt;
        const char *name;
        int value;
    } opts[] = {
        {ZMQ_LINGER, "ZMQ_LINGER", 1000},
        {ZMQ_HEARTBEAT_IVL, "ZMQ_HEARTBEAT_IVL", 2000},
        {ZMQ_HEARTBEAT_TIMEOUT, "ZMQ_HEARTBEAT_TIMEOUT", 6000},
        {ZMQ_HEARTBEAT_TTL, "ZMQ_HEARTBEAT_TTL", 6000},
        {ZMQ_RECONNECT_IVL, "ZMQ_RECONNECT_IVL", 100},
        {ZMQ_RECONNECT_IVL_MAX, "ZMQ_RECONNECT_IVL_MAX", 2000},
        {ZMQ_HANDSHAKE_IVL, "ZMQ_HANDSHAKE_IVL", 5000},
        {ZMQ_SNDHWM, "ZMQ_SNDHWM", 10000},
        {ZMQ_RCVHWM, "ZMQ_RCVHWM", 10000},
    };
    for (size_t i = 0; i < sizeof opts / sizeof opts[0]; i++) {
        int rc = s_setopt_int(self, opts[i].opt, opts[i].name, opts[i].value, err);
        if (rc != CIV_OK)
            return rc;
    }
    if (zmq_setsockopt(self->sock, ZMQ_CURVE_SERVERKEY, hub->curve[0], KEYFILE_Z85_LEN + 1) != 0 ||
        zmq_setsockopt(self->sock, ZMQ_CURVE_PUBLICKEY, mine->curve[0], KEYFILE_Z85_LEN + 1) != 0 ||
        zmq_setsockopt(self->sock, ZMQ_CURVE_SECRETKEY, mine->curve_secret, KEYFILE_Z85_LEN + 1) != 0)
        return sdk_error_set(err, CIV_E_KEY, "CURVE keys refused by ZeroMQ: %s", zmq_strerror(zmq_errno()));
    return CIV_OK;
}

/* Watch the socket's handshakes through a PAIR socket on an inproc endpoint,
 * which is private to this client's context. */
static int s_monitor_open(civ_client_t *self, civ_error_t *err)
{
    const char *ep = "inproc://civibus-monitor";
    int events = ZMQ_EVENT_HANDSHAKE_SUCCEEDED | ZMQ_EVENT_HANDSHAKE_FAILED_AUTH |
                 ZMQ_EVENT_HANDSHAKE_FAILED_PROTOCOL | ZMQ_EVENT_DISCONNECTED;
    if (zmq_socket_monitor(self->sock, ep, events) != 0)
        return sdk_error_set(err, CIV_E_TRANSPORT, "zmq_socket_monitor: %s", zmq_strerror(zmq_errno()));
    self->monitor = zmq_socket(self->ctx, ZMQ_PAIR);
    int linger = 0;
    if (!self->monitor || zmq_setsockopt(self->monitor, ZMQ_LINGER, &linger, sizeof linger) != 0 ||
        zmq_connect(self->monitor, ep) != 0)
        return sdk_error_set(err, CIV_E_TRANSPORT, "monitor socket: %s", zmq_strerror(zmq_errno()));
    return CIV_OK;
}

static int s_read_keys(const civ_options_t *options, keyfile_t *mine, keyfile_t *hub, civ_error_t *err)
{
    char why[256];
    if (!options->key_file || !options->hub_key_file)
        return sdk_error_set(err, CIV_E_INVALID, "key_file and hub_key_file are required");
    if (keyfile_read(options->key_file, mine, why, sizeof why) != KEYFILE_OK)
        return sdk_error_set(err, CIV_E_KEY, "agency key: %s", why);
    if (!mine->agency[0])
        return sdk_error_set(err, CIV_E_KEY, "%s: no 'agency = ID' line", options->key_file);
    if (!mine->curve_secret[0])
        return sdk_error_set(err, CIV_E_KEY, "%s: no 'curve-secret' (a .pub file instead of the .key?)",
                             options->key_file);
    if (keyfile_read(options->hub_key_file, hub, why, sizeof why) != KEYFILE_OK)
        return sdk_error_set(err, CIV_E_KEY, "hub key: %s", why);
    return CIV_OK;
}

civ_client_t *civ_client_new(const civ_options_t *options, civ_error_t *err)
{
    if (err)
        memset(err, 0, sizeof *err);
    if (!options || !options->endpoint || !options->endpoint[0]) {
        sdk_error_set(err, CIV_E_INVALID, "options and options->endpoint are required");
        return NULL;
    }
    if (options->timeout_ms < 0 || options->window > SDK_WINDOW_MAX || options->batch > SDK_BATCH_MAX) {
        sdk_error_set(err, CIV_E_INVALID, "timeout_ms must be >= 0, window <= %u, batch <= %u",
                      SDK_WINDOW_MAX, SDK_BATCH_MAX);
        return NULL;
    }
    keyfile_t mine, hub;
    int rc = s_read_keys(options, &mine, &hub, err);
    if (rc != CIV_OK)
        goto wipe_keys;

    civ_client_t *self = calloc(1, sizeof *self);
    if (!self) {
        rc = sdk_error_set(err, CIV_E_NOMEM, "no memory for a client");
        goto wipe_keys;
    }
    snprintf(self->agency, sizeof self->agency, "%s", mine.agency);
    self->timeout_ms = options->timeout_ms ? options->timeout_ms : SDK_DEFAULT_TIMEOUT_MS;
    /* Re-send period of unanswered requests: half the timeout, in [200 ms, 2 s]. */
    int retry = self->timeout_ms / 2;
    if (retry < SDK_RETRY_MIN_MS)
        retry = SDK_RETRY_MIN_MS;
    self->retry_ms = retry > SDK_RETRY_MAX_MS ? SDK_RETRY_MAX_MS : retry;
    self->window = options->window ? options->window : SDK_DEFAULT_WINDOW;
    self->batch = options->batch            ? options->batch
                  : options->sign_key_file ? SDK_DEFAULT_SIGNED_BATCH
                                           : SDK_DEFAULT_BATCH;
    if (self->batch > self->window)
        self->batch = self->window;
    self->next_request_id = 1;
    sdk_rand_init(&self->rnd);
    sdk_pub_init(&self->pub);
    if (options->sign_key_file) {
        char why[512];
        int crc = crypto_key_read_secret(options->sign_key_file, &self->sign_key, why, sizeof why);
        if (crc != CRYPTO_OK) {
            rc = sdk_error_set(err, CIV_E_KEY, "signing key: %s", why);
            goto destroy_client;
        }
        crypto_key_id(self->sign_key, self->sign_key_id);
    }

    self->ctx = zmq_ctx_new();
    self->sock = self->ctx ? zmq_socket(self->ctx, ZMQ_DEALER) : NULL;
    if (!self->sock) {
        rc = sdk_error_set(err, CIV_E_TRANSPORT, "cannot create a ZeroMQ socket: %s", zmq_strerror(zmq_errno()));
        goto destroy_client;
    }
    rc = s_configure(self, &mine, &hub, err);
    if (rc == CIV_OK)
        rc = s_monitor_open(self, err);
    if (rc != CIV_OK)
        goto destroy_client;
    if (zmq_connect(self->sock, options->endpoint) != 0) {
        rc = sdk_error_set(err, CIV_E_TRANSPORT, "cannot connect to %s: %s", options->endpoint,
                           zmq_strerror(zmq_errno()));
        goto destroy_client;
    }
    explicit_bzero(&mine, sizeof mine);
    return self;

destroy_client:
    civ_client_destroy(&self);
wipe_keys:
    explicit_bzero(&mine, sizeof mine);
    return NULL;
}

void civ_client_destroy(civ_client_t **self_p)
{
    if (!self_p || !*self_p)
        return;
    civ_client_t *self = *self_p;
    sdk_replay_detach_all(self);
    sdk_subs_free(self);
    sdk_pub_free(&self->pub);
    sdk_status_free(&self->status);
    sdk_dl_free(&self->dl);
    crypto_key_destroy(&self->sign_key);
    if (self->monitor) {
        zmq_socket_monitor(self->sock, NULL, 0);
        zmq_close(self->monitor);
    }
    if (self->sock)
        zmq_close(self->sock); /* ZMQ_LINGER bounds what zmq_ctx_term waits for */
    if (self->ctx)
        zmq_ctx_term(self->ctx);
    free(self);
    *self_p = NULL;
}

const char *civ_client_agency(const civ_client_t *self)
{
    return self ? self->agency : "";
}

const char *civ_client_error(const civ_client_t *self)
{
    return self ? self->err.message : "";
}

uint64_t sdk_request_id(civ_client_t *self)
{
    uint64_t id = self->next_request_id++;
    if (self->next_request_id == 0)
        self->next_request_id = 1;
    return id;
}

int64_t sdk_deadline(const civ_client_t *self, int timeout_ms)
{
    return codec_mono_ms() + (timeout_ms < 0 ? self->timeout_ms : timeout_ms);
}

static int s_send_result(civ_client_t *self, int rc)
{
    if (rc >= 0)
        return CIV_OK;
    int e = zmq_errno();
    if (e == EAGAIN || e == EINTR)
        return sdk_error_set(&self->err, CIV_E_TIMEOUT, "send queue full");
    return sdk_error_set(&self->err, CIV_E_TRANSPORT, "zmq send: %s", zmq_strerror(e));
}

int sdk_send(civ_client_t *self, Civibus__V1__ClientMessage *msg)
{
    msg->version = CODEC_PROTOCOL_VERSION;
    size_t len = civibus__v1__client_message__get_packed_size(msg);
    zmq_msg_t frame;
    if (zmq_msg_init_size(&frame, len) != 0)
        return sdk_error_set(&self->err, CIV_E_NOMEM, "no memory for a %zu-byte message", len);
    civibus__v1__client_message__pack(msg, zmq_msg_data(&frame));
    int rc = zmq_msg_send(&frame, self->sock, ZMQ_DONTWAIT);
    if (rc < 0)
        zmq_msg_close(&frame);
    return s_send_result(self, rc);
}

int sdk_send_frame(civ_client_t *self, const uint8_t *frame, size_t len)
{
    return s_send_result(self, zmq_send(self->sock, frame, len, ZMQ_DONTWAIT));
}

int sdk_round_trip(civ_client_t *self, int (*send)(civ_client_t *, uint64_t), uint64_t id, const bool *done,
                   const int *error)
{
    int64_t deadline = sdk_deadline(self, -1);
    int64_t sent = codec_mono_ms();
    send(self, id);
    int rc = CIV_OK;
    while (!*done && *error == CIV_OK && rc == CIV_OK) {
        rc = sdk_wait(self, deadline);
        int64_t now = codec_mono_ms();
        if (!*done && now - sent >= self->retry_ms) {
            sent = now;
            send(self, id);
        }
    }
    if (*error != CIV_OK)
        return *error;
    return *done ? CIV_OK : rc;
}

static void s_dispatch_error(civ_client_t *self, const Civibus__V1__Error *e)
{
    if (e->subscription[0] && sdk_subs_on_error(self, e))
        return;
    if (e->request_id &&
        (sdk_pub_on_error(self, e) || sdk_replay_on_error(self, e) || sdk_status_on_error(self, e) ||
         sdk_dl_on_error(self, e)))
        return;
    /* Not tied to anything we wait for (e.g. unsupported_version): keep the detail. */
    sdk_error_set(&self->err, sdk_code_from_wire(e->code), "hub error %s: %s",
                  codec_error_name(e->code), e->reason);
}

static void s_dispatch(civ_client_t *self, codec_hub_msg_t **msg_p)
{
    codec_hub_msg_t *msg = *msg_p;
    if (msg->version != CODEC_PROTOCOL_VERSION) {
        sdk_error_set(&self->err, CIV_E_PROTOCOL, "hub message of version %u ignored", msg->version);
        return;
    }
    switch (msg->body_case) {
    case CIVIBUS__V1__HUB_MESSAGE__BODY_PUBLISH_REPLY: sdk_pub_on_reply(self, msg->publish_reply); break;
    case CIVIBUS__V1__HUB_MESSAGE__BODY_SUBSCRIBE_REPLY: sdk_subs_on_reply(self, msg->subscribe_reply); break;
    case CIVIBUS__V1__HUB_MESSAGE__BODY_DELIVER: sdk_subs_on_deliver(self, msg_p); break;
    case CIVIBUS__V1__HUB_MESSAGE__BODY_REPLAY_REPLY: sdk_replay_on_reply(self, msg_p); break;
    case CIVIBUS__V1__HUB_MESSAGE__BODY_PONG: sdk_status_on_pong(self, msg->pong); break;
    case CIVIBUS__V1__HUB_MESSAGE__BODY_STATUS_REPLY: sdk_status_on_reply(self, msg_p); break;
    case CIVIBUS__V1__HUB_MESSAGE__BODY_CHECKPOINT_REPLY: sdk_status_on_checkpoint(self, msg_p); break;
    case CIVIBUS__V1__HUB_MESSAGE__BODY_ERROR: s_dispatch_error(self, msg->error); break;
    case CIVIBUS__V1__HUB_MESSAGE__BODY_DEAD_LETTERS_REPLY: sdk_dl_on_reply(self, msg_p); break;
    default: sdk_error_set(&self->err, CIV_E_PROTOCOL, "hub message without a body ignored"); break;
    }
}

/* Receive and dispatch what is waiting, without blocking. Returns the number
 * of frames handled, or CIV_E_TRANSPORT. */
static int s_drain(civ_client_t *self)
{
    int handled = 0;
    while (handled < SDK_DRAIN_MAX) {
        zmq_msg_t frame;
        zmq_msg_init(&frame);
        if (zmq_msg_recv(&frame, self->sock, ZMQ_DONTWAIT) < 0) {
            int e = zmq_errno();
            zmq_msg_close(&frame);
            if (e == EAGAIN || e == EINTR)
                break;
            return sdk_error_set(&self->err, CIV_E_TRANSPORT, "zmq receive: %s", zmq_strerror(e));
        }
        handled++;
        codec_hub_msg_t *msg = NULL;
        int rc = codec_hub_decode(zmq_msg_data(&frame), zmq_msg_size(&frame), SDK_MAX_FRAME, &msg);
        bool more = zmq_msg_more(&frame);
        zmq_msg_close(&frame);
        if (rc != CODEC_OK || more) {
            /* More than one frame is not our protocol either: the rest of it
             * arrives as further frames and fails to decode alone, or not. */
            sdk_error_set(&self->err, CIV_E_PROTOCOL, "undecodable hub message ignored");
            codec_hub_free(&msg);
            continue;
        }
        s_dispatch(self, &msg);
        codec_hub_free(&msg);
    }
    return handled;
}

void sdk_link_check(civ_client_t *self)
{
    if (self->in_link_check)
        return;
    self->in_link_check = true;
    for (;;) {
        zmq_msg_t frame;
        zmq_msg_init(&frame);
        if (zmq_msg_recv(&frame, self->monitor, ZMQ_DONTWAIT) < 0) {
            zmq_msg_close(&frame);
            break;
        }
        bool more = zmq_msg_more(&frame);
        uint16_t event = 0;
        if (zmq_msg_size(&frame) >= 6)
            memcpy(&event, zmq_msg_data(&frame), sizeof event);
        zmq_msg_close(&frame);
        while (more) { /* the endpoint frame */
            zmq_msg_init(&frame);
            if (zmq_msg_recv(&frame, self->monitor, 0) < 0) {
                zmq_msg_close(&frame);
                break;
            }
            more = zmq_msg_more(&frame);
            zmq_msg_close(&frame);
        }
        if (event == ZMQ_EVENT_HANDSHAKE_SUCCEEDED) {
            self->auth_refused = false;
            if (self->handshakes++ > 0) {
                sdk_subs_on_reconnect(self);
                sdk_pub_on_reconnect(self);
            }
        } else if (event == ZMQ_EVENT_DISCONNECTED) {
            self->link_epoch++;
        } else if (event == ZMQ_EVENT_HANDSHAKE_FAILED_AUTH) {
            self->auth_refused = true;
            /* ZAP gives no reason: 400 for every refusal (docs/PROTOCOL.md §2.3, §2.9). */
            sdk_error_set(&self->err, CIV_E_NOT_AUTHORISED,
                          "the hub refused the handshake: this agency's key is not valid, or the agency holds "
                          "its maximum of connections");
        } else if (event == ZMQ_EVENT_HANDSHAKE_FAILED_PROTOCOL) {
            sdk_error_set(&self->err, CIV_E_TRANSPORT, "handshake with the hub failed (wrong hub key?)");
        }
    }
    self->in_link_check = false;
}

int sdk_wait(civ_client_t *self, int64_t deadline_ms)
{
    /* Connection events first, so that what the hub sent on a new connection
     * is seen after the connection itself. */
    sdk_link_check(self);
    int64_t now = codec_mono_ms();
    sdk_pub_tick(self, now);
    sdk_subs_tick(self, now);
    sdk_replay_tick(self, now);

    int handled = s_drain(self);
    if (handled < 0)
        return handled;
    if (handled == 0) {
        int64_t wait = deadline_ms - now;
        wait = wait < 0 ? 0 : wait > SDK_TICK_MS ? SDK_TICK_MS : wait;
        zmq_pollitem_t items[2] = {{self->sock, 0, ZMQ_POLLIN, 0}, {self->monitor, 0, ZMQ_POLLIN, 0}};
        int rc = zmq_poll(items, 2, (long)wait);
        if (rc < 0 && zmq_errno() != EINTR)
            return sdk_error_set(&self->err, CIV_E_TRANSPORT, "zmq_poll: %s", zmq_strerror(zmq_errno()));
        if (rc > 0 && (items[0].revents & ZMQ_POLLIN)) {
            handled = s_drain(self);
            if (handled < 0)
                return handled;
        }
    }
    sdk_link_check(self);
    if (self->auth_refused)
        return CIV_E_NOT_AUTHORISED;
    if (codec_mono_ms() < deadline_ms)
        return CIV_OK;
    if (self->handshakes == 0)
        sdk_error_set(&self->err, CIV_E_TIMEOUT, "no connection to the hub yet (hub down, or a wrong hub key?)");
    return CIV_E_TIMEOUT;
}
