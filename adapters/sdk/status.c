/* status - round trips that ask the hub about itself: ping, status and its
 * latest signed checkpoint.
 *
 * One request of each kind can be awaited at a time (the client belongs to
 * one thread). Their requests are re-sent with the same request_id
 * every retry_ms until answered or timed out. Every pong, awaited or not (the
 * keep-alive pings of subscribe.c), tells the subscriptions the hub's
 * current instance.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "sdk.h"

void sdk_status_free(sdk_status_t *st)
{
    codec_hub_free(&st->status_reply);
    codec_hub_free(&st->checkpoint_reply);
    memset(st, 0, sizeof *st);
}

static int s_send_ping(civ_client_t *self, uint64_t request_id)
{
    Civibus__V1__Ping ping = CIVIBUS__V1__PING__INIT;
    ping.request_id = request_id;
    Civibus__V1__ClientMessage msg = CIVIBUS__V1__CLIENT_MESSAGE__INIT;
    msg.body_case = CIVIBUS__V1__CLIENT_MESSAGE__BODY_PING;
    msg.ping = &ping;
    return sdk_send(self, &msg);
}

static int s_send_status(civ_client_t *self, uint64_t request_id)
{
    Civibus__V1__StatusRequest req = CIVIBUS__V1__STATUS_REQUEST__INIT;
    req.request_id = request_id;
    Civibus__V1__ClientMessage msg = CIVIBUS__V1__CLIENT_MESSAGE__INIT;
    msg.body_case = CIVIBUS__V1__CLIENT_MESSAGE__BODY_STATUS;
    msg.status = &req;
    return sdk_send(self, &msg);
}

static int s_send_checkpoint(civ_client_t *self, uint64_t request_id)
{
    Civibus__V1__CheckpointRequest req = CIVIBUS__V1__CHECKPOINT_REQUEST__INIT;
    req.request_id = request_id;
    Civibus__V1__ClientMessage msg = CIVIBUS__V1__CLIENT_MESSAGE__INIT;
    msg.body_case = CIVIBUS__V1__CLIENT_MESSAGE__BODY_CHECKPOINT;
    msg.checkpoint = &req;
    return sdk_send(self, &msg);
}

int sdk_status_ping(civ_client_t *self)
{
    return s_send_ping(self, sdk_request_id(self));
}

int civ_ping(civ_client_t *self, uint64_t *last_seq)
{
    if (!self)
        return CIV_E_INVALID;
    sdk_status_t *st = &self->status;
    st->ping_id = sdk_request_id(self);
    st->ping_done = false;
    st->ping_error = CIV_OK;
    int rc = sdk_round_trip(self, s_send_ping, st->ping_id, &st->ping_done, &st->ping_error);
    st->ping_id = 0;
    if (rc == CIV_OK && last_seq)
        *last_seq = st->ping_last_seq;
    return rc;
}

void sdk_status_on_pong(civ_client_t *self, const Civibus__V1__Pong *pong)
{
    sdk_status_t *st = &self->status;
    if (st->ping_id && pong->request_id == st->ping_id) {
        st->ping_done = true;
        st->ping_last_seq = pong->last_seq;
    }
    sdk_subs_on_instance(self, pong->hub_instance);
}

void sdk_status_on_reply(civ_client_t *self, codec_hub_msg_t **msg_p)
{
    sdk_status_t *st = &self->status;
    if (!st->status_id || (*msg_p)->status_reply->request_id != st->status_id || st->status_reply)
        return;
    st->status_reply = *msg_p;
    *msg_p = NULL;
    st->status_done = true;
}

void sdk_status_on_checkpoint(civ_client_t *self, codec_hub_msg_t **msg_p)
{
    sdk_status_t *st = &self->status;
    if (!st->checkpoint_id || (*msg_p)->checkpoint_reply->request_id != st->checkpoint_id || st->checkpoint_reply)
        return;
    st->checkpoint_reply = *msg_p;
    *msg_p = NULL;
    st->checkpoint_done = true;
}

bool sdk_status_on_error(civ_client_t *self, const Civibus__V1__Error *error)
{
    sdk_status_t *st = &self->status;
    int code = sdk_code_from_wire(error->code);
    if (code == CIV_OK)
        code = CIV_E_PROTOCOL;
    int *slot = NULL;
    if (st->ping_id && error->request_id == st->ping_id)
        slot = &st->ping_error;
    else if (st->status_id && error->request_id == st->status_id)
        slot = &st->status_error;
    else if (st->checkpoint_id && error->request_id == st->checkpoint_id)
        slot = &st->checkpoint_error;
    if (!slot)
        return false;
    *slot = code;
    sdk_error_set(&self->err, code, "hub error %s: %s", codec_error_name(error->code), error->reason);
    return true;
}

static void s_join_filters(char *out, size_t out_len, char *const *filters, size_t n)
{
    size_t used = 0;
    out[0] = '\0';
    for (size_t i = 0; i < n && used < out_len; i++) {
        int w = snprintf(out + used, out_len - used, "%s%s", i ? "," : "", filters[i]);
        if (w < 0)
            break;
        used += (size_t)w;
    }
}

static int s_fill(const Civibus__V1__StatusReply *r, civ_status_t **out)
{
    size_t n_warn = r->n_warnings < 64 ? r->n_warnings : 64; /* a hub's chatter is bounded */
    civ_status_t *s = calloc(1, sizeof *s + r->n_subscriptions * sizeof *s->subscriptions +
                                    n_warn * sizeof *s->warnings);
    if (!s)
        return CIV_E_NOMEM;
    snprintf(s->version, sizeof s->version, "%s", r->version);
    snprintf(s->hub_instance, sizeof s->hub_instance, "%s", r->hub_instance);
    s->first_seq = r->first_seq;
    s->last_seq = r->last_seq;
    s->started_at = r->started_at;
    s->n_subscriptions = r->n_subscriptions;
    s->subscriptions = r->n_subscriptions ? (civ_sub_status_t *)(s + 1) : NULL;
    for (size_t i = 0; i < r->n_subscriptions; i++) {
        const Civibus__V1__SubscriptionStatus *in = r->subscriptions[i];
        civ_sub_status_t *o = &s->subscriptions[i];
        snprintf(o->agency, sizeof o->agency, "%s", in->agency);
        snprintf(o->name, sizeof o->name, "%s", in->name);
        s_join_filters(o->filters, sizeof o->filters, in->filters, in->n_filters);
        o->cursor = in->cursor;
        o->connected = in->connected;
        o->credit = in->credit;
        o->in_flight = in->in_flight;
        o->redeliveries = in->redeliveries;
        o->dead_letters = in->dead_letters;
        o->behind_retention = in->behind_retention;
    }
    s->n_warnings = n_warn;
    s->warnings = n_warn ? (char(*)[CIV_WARNING_MAX])((char *)(s + 1) + r->n_subscriptions * sizeof *s->subscriptions)
                         : NULL;
    for (size_t i = 0; i < n_warn; i++)
        snprintf(s->warnings[i], CIV_WARNING_MAX, "%s", r->warnings[i]);
    *out = s;
    return CIV_OK;
}

int civ_status(civ_client_t *self, civ_status_t **out)
{
    if (!self || !out)
        return CIV_E_INVALID;
    *out = NULL;
    sdk_status_t *st = &self->status;
    codec_hub_free(&st->status_reply);
    st->status_id = sdk_request_id(self);
    st->status_error = CIV_OK;
    st->status_done = false;
    int rc = sdk_round_trip(self, s_send_status, st->status_id, &st->status_done, &st->status_error);
    st->status_id = 0;
    if (rc == CIV_OK)
        rc = s_fill(st->status_reply->status_reply, out);
    codec_hub_free(&st->status_reply);
    return rc;
}

void civ_status_destroy(civ_status_t **self_p)
{
    if (self_p) {
        free(*self_p);
        *self_p = NULL;
    }
}

static int s_checkpoint_fill(civ_client_t *self, const Civibus__V1__CheckpointReply *r, civ_checkpoint_t *out)
{
    if (r->chain.len != sizeof out->chain || r->key_id.len != sizeof out->key_id ||
        r->signature.len != sizeof out->signature || r->seq == 0)
        return sdk_error_set(&self->err, CIV_E_PROTOCOL, "the hub's checkpoint has fields of the wrong length");
    out->seq = r->seq;
    out->time_us = r->time;
    memcpy(out->chain, r->chain.data, sizeof out->chain);
    memcpy(out->key_id, r->key_id.data, sizeof out->key_id);
    memcpy(out->signature, r->signature.data, sizeof out->signature);
    out->last_seq = r->last_seq;
    return CIV_OK;
}

int civ_client_checkpoint(civ_client_t *self, civ_checkpoint_t *out)
{
    if (!self || !out)
        return CIV_E_INVALID;
    memset(out, 0, sizeof *out);
    sdk_status_t *st = &self->status;
    codec_hub_free(&st->checkpoint_reply);
    st->checkpoint_id = sdk_request_id(self);
    st->checkpoint_error = CIV_OK;
    st->checkpoint_done = false;
    int rc = sdk_round_trip(self, s_send_checkpoint, st->checkpoint_id, &st->checkpoint_done, &st->checkpoint_error);
    st->checkpoint_id = 0;
    if (rc == CIV_OK)
        rc = s_checkpoint_fill(self, st->checkpoint_reply->checkpoint_reply, out);
    codec_hub_free(&st->checkpoint_reply);
    return rc;
}
