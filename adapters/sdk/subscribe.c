/* subscribe - durable subscriptions: open, receive, credit, ack, re-open.
 *
 * Each subscription of the client is an sdk_sub_t; Deliver messages from the
 * hub wait in one queue (oldest first, across subscriptions) until civ_next
 * hands their events out one by one. Flow control is credit: a subscription
 * opens with credit = window, and for every max(1, window / 2) events that
 * civ_next consumes (handed out, or dropped as already seen) the library
 * grants that many again, so the hub never has more than `window` events
 * outstanding and the queue stays bounded by it.
 *
 * Per subscription the highest seq handed out is kept, and events at or below
 * it are dropped: after a re-open the hub resends from the last acknowledged
 * one, which the application has partly seen.
 *
 * Re-open: the hub forgets a client's subscriptions when the connection is
 * lost or the hub restarts. The library notices in three ways - a new
 * connection (client.c's monitor), an UNKNOWN_SUBSCRIPTION answer to an ack or
 * credit, or a pong / subscribe reply whose hub_instance differs from the one
 * the subscription was opened under (civ_next pings after SDK_IDLE_PING_MS of
 * silence) - and then re-subscribes from the saved CURSOR with full credit,
 * dropping the events it had queued for that subscription (they are resent).
 * The last ack is repeated once the hub confirms, in case it was lost.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "sdk.h"

struct sdk_sub {
    sdk_sub_t *next;
    char name[CODEC_NAME_MAX + 1];
    char **filters;
    size_t n_filters;
    uint32_t window;
    civ_start_t start; /* of the Subscribe in progress */
    sdk_sub_state_t state;
    int open_error;    /* the hub's refusal of an OPENING subscribe */
    int report;        /* an error civ_next reports once, then drops the subscription */
    char report_why[CIV_REASON_MAX]; /* the hub's reason for it */
    char hub_instance[SDK_INSTANCE_MAX + 1];
    uint64_t handed;   /* highest seq handed out */
    uint64_t acked;    /* highest seq the application acknowledged */
    uint32_t consumed; /* events consumed since the last credit grant */
    size_t queued;     /* events waiting in the queue */
    int64_t sent_ms;   /* last Subscribe sent */
    unsigned epoch;    /* link_epoch of the last Subscribe */
};

struct sdk_chunk {
    sdk_chunk_t *next;
    codec_hub_msg_t *msg; /* a Deliver */
    size_t next_event;
    sdk_sub_t *sub;
};

static sdk_sub_t *s_find(civ_client_t *self, const char *name)
{
    for (sdk_sub_t *sub = self->subs.list; sub; sub = sub->next)
        if (strcmp(sub->name, name) == 0)
            return sub;
    return NULL;
}

static void s_free_filters(sdk_sub_t *sub)
{
    for (size_t i = 0; i < sub->n_filters; i++)
        free(sub->filters[i]);
    free(sub->filters);
    sub->filters = NULL;
    sub->n_filters = 0;
}

static void s_chunk_free(sdk_chunk_t **chunk_p)
{
    codec_hub_free(&(*chunk_p)->msg);
    free(*chunk_p);
    *chunk_p = NULL;
}

/* Drop every queued event of sub (or of all subscriptions when sub is NULL). */
static void s_purge(civ_client_t *self, sdk_sub_t *sub)
{
    sdk_subs_t *subs = &self->subs;
    sdk_chunk_t **link = &subs->head;
    subs->tail = NULL;
    while (*link) {
        if (!sub || (*link)->sub == sub) {
            sdk_chunk_t *dead = *link;
            *link = dead->next;
            s_chunk_free(&dead);
        } else {
            subs->tail = *link;
            link = &(*link)->next;
        }
    }
    if (sub)
        sub->queued = 0;
}

static void s_remove(civ_client_t *self, sdk_sub_t *sub)
{
    s_purge(self, sub);
    for (sdk_sub_t **link = &self->subs.list; *link; link = &(*link)->next) {
        if (*link == sub) {
            *link = sub->next;
            break;
        }
    }
    s_free_filters(sub);
    free(sub);
}

void sdk_subs_free(civ_client_t *self)
{
    s_purge(self, NULL);
    while (self->subs.list)
        s_remove(self, self->subs.list);
}

static int s_send_subscribe(civ_client_t *self, sdk_sub_t *sub)
{
    Civibus__V1__StartPoint start = CIVIBUS__V1__START_POINT__INIT;
    start.kind = (Civibus__V1__StartPoint__Kind)sub->start.kind;
    start.seq = sub->start.seq;
    start.time = sub->start.time_us;
    Civibus__V1__Subscribe subscribe = CIVIBUS__V1__SUBSCRIBE__INIT;
    subscribe.name = sub->name;
    subscribe.n_filters = sub->n_filters;
    subscribe.filters = sub->filters;
    subscribe.start = &start;
    subscribe.credit = sub->window;
    Civibus__V1__ClientMessage msg = CIVIBUS__V1__CLIENT_MESSAGE__INIT;
    msg.body_case = CIVIBUS__V1__CLIENT_MESSAGE__BODY_SUBSCRIBE;
    msg.subscribe = &subscribe;
    sub->sent_ms = codec_mono_ms();
    sub->epoch = self->link_epoch;
    return sdk_send(self, &msg);
}

/* Re-subscribe from the saved cursor with fresh credit. */
static void s_reopen(civ_client_t *self, sdk_sub_t *sub)
{
    s_purge(self, sub);
    sub->state = SDK_SUB_RESUB;
    sub->start = (civ_start_t){.kind = CIV_START_CURSOR};
    sub->consumed = 0;
    s_send_subscribe(self, sub);
}

static int s_send_ack(civ_client_t *self, const sdk_sub_t *sub, uint64_t seq)
{
    Civibus__V1__Ack ack = CIVIBUS__V1__ACK__INIT;
    ack.subscription = (char *)sub->name;
    ack.seq = seq;
    Civibus__V1__ClientMessage msg = CIVIBUS__V1__CLIENT_MESSAGE__INIT;
    msg.body_case = CIVIBUS__V1__CLIENT_MESSAGE__BODY_ACK;
    msg.ack = &ack;
    return sdk_send(self, &msg);
}

/* Give the hub back the credit consumed, once it is worth a message. */
static void s_grant(civ_client_t *self, sdk_sub_t *sub)
{
    uint32_t threshold = sub->window / 2 ? sub->window / 2 : 1;
    if (sub->state != SDK_SUB_ACTIVE || sub->consumed < threshold)
        return;
    Civibus__V1__Credit credit = CIVIBUS__V1__CREDIT__INIT;
    credit.subscription = sub->name;
    credit.credit = sub->consumed;
    Civibus__V1__ClientMessage msg = CIVIBUS__V1__CLIENT_MESSAGE__INIT;
    msg.body_case = CIVIBUS__V1__CLIENT_MESSAGE__BODY_CREDIT;
    msg.credit = &credit;
    if (sdk_send(self, &msg) == CIV_OK)
        sub->consumed = 0;
}

static int s_copy_filters(sdk_sub_t *sub, const char *const *filters, size_t n_filters)
{
    sub->filters = calloc(n_filters, sizeof *sub->filters);
    if (!sub->filters)
        return CIV_E_NOMEM;
    for (size_t i = 0; i < n_filters; i++) {
        sub->filters[i] = strdup(filters[i]);
        if (!sub->filters[i]) {
            sub->n_filters = i;
            s_free_filters(sub);
            return CIV_E_NOMEM;
        }
    }
    sub->n_filters = n_filters;
    return CIV_OK;
}

static int s_check_args(civ_client_t *self, const char *name, const char *const *filters, size_t n_filters,
                        civ_start_t start, uint32_t window)
{
    civ_error_t *err = &self->err;
    if (!codec_name_valid(name))
        return sdk_error_set(err, CIV_E_INVALID, "subscription name must be 1-%d chars of [A-Za-z0-9._-]",
                             CODEC_NAME_MAX);
    if (n_filters == 0 || !filters)
        return sdk_error_set(err, CIV_E_INVALID, "a subscription needs at least one filter");
    for (size_t i = 0; i < n_filters; i++)
        if (!codec_filter_valid(filters[i]))
            return sdk_error_set(err, CIV_E_INVALID, "filter %zu is not \"*\", a type or \"type.*\"", i);
    if (start.kind < CIV_START_CURSOR || start.kind > CIV_START_TIME)
        return sdk_error_set(err, CIV_E_INVALID, "unknown start kind %d", (int)start.kind);
    if (window > SDK_WINDOW_MAX)
        return sdk_error_set(err, CIV_E_INVALID, "window over %u", SDK_WINDOW_MAX);
    return CIV_OK;
}

int civ_subscribe(civ_client_t *self, const char *name, const char *const *filters, size_t n_filters,
                  civ_start_t start, uint32_t window)
{
    if (!self)
        return CIV_E_INVALID;
    int rc = s_check_args(self, name, filters, n_filters, start, window);
    if (rc != CIV_OK)
        return rc;
    sdk_link_check(self); /* so that the Subscribe gets the current link_epoch */
    sdk_sub_t *sub = s_find(self, name);
    if (sub) { /* re-open with new arguments: forget what the old one queued and saw */
        s_purge(self, sub);
        s_free_filters(sub);
    } else {
        sub = calloc(1, sizeof *sub);
        if (!sub)
            return sdk_error_set(&self->err, CIV_E_NOMEM, "no memory for a subscription");
        snprintf(sub->name, sizeof sub->name, "%s", name);
        sub->next = self->subs.list;
        self->subs.list = sub;
    }
    if (s_copy_filters(sub, filters, n_filters) != CIV_OK) {
        s_remove(self, sub);
        return sdk_error_set(&self->err, CIV_E_NOMEM, "no memory for a subscription");
    }
    sub->window = window ? window : SDK_DEFAULT_WINDOW;
    sub->start = start;
    sub->state = SDK_SUB_OPENING;
    sub->open_error = CIV_OK;
    sub->report = CIV_OK;
    sub->hub_instance[0] = '\0';
    sub->handed = sub->acked = 0;
    sub->consumed = 0;
    /* A full send queue is not fatal: the tick re-sends an unanswered Subscribe. */
    s_send_subscribe(self, sub);

    int64_t deadline = sdk_deadline(self, -1);
    rc = CIV_OK;
    while (sub->state == SDK_SUB_OPENING && sub->open_error == CIV_OK && rc == CIV_OK)
        rc = sdk_wait(self, deadline);
    if (sub->state == SDK_SUB_ACTIVE)
        return CIV_OK;
    if (sub->open_error != CIV_OK) {
        rc = sub->open_error;
    } else {
        /* Gave up: tell the hub, in case the Subscribe arrives after all. */
        Civibus__V1__Unsubscribe unsubscribe = CIVIBUS__V1__UNSUBSCRIBE__INIT;
        unsubscribe.subscription = sub->name;
        Civibus__V1__ClientMessage msg = CIVIBUS__V1__CLIENT_MESSAGE__INIT;
        msg.body_case = CIVIBUS__V1__CLIENT_MESSAGE__BODY_UNSUBSCRIBE;
        msg.unsubscribe = &unsubscribe;
        sdk_send(self, &msg);
    }
    s_remove(self, sub);
    return rc;
}

/* Hand out the next queued event. Returns CIV_OK with *out, 1 when nothing
 * is queued, or an error to report. */
static int s_take(civ_client_t *self, civ_delivery_t **out)
{
    sdk_subs_t *subs = &self->subs;
    for (sdk_sub_t *sub = subs->list; sub; sub = sub->next) {
        /* What the hub sent before it ended the subscription comes first:
         * the events before a loss to retention, for one. */
        if (sub->report != CIV_OK && sub->queued == 0) {
            int code = sub->report;
            sdk_error_set(&self->err, code, "subscription %s ended by the hub: %s: %s", sub->name,
                          civ_error_name(code), sub->report_why);
            s_remove(self, sub);
            return code;
        }
    }
    while (subs->head) {
        sdk_chunk_t *chunk = subs->head;
        const Civibus__V1__Deliver *deliver = chunk->msg->deliver;
        if (chunk->next_event >= deliver->n_events) {
            subs->head = chunk->next;
            if (!subs->head)
                subs->tail = NULL;
            s_chunk_free(&chunk);
            continue;
        }
        const Civibus__V1__Delivery *d = deliver->events[chunk->next_event++];
        sdk_sub_t *sub = chunk->sub;
        sub->queued--;
        sub->consumed++;
        bool fresh = d->seq > sub->handed;
        int rc = CIV_OK;
        if (fresh) {
            sub->handed = d->seq;
            rc = sdk_delivery_new(sub->name, d, out);
            if (rc != CIV_OK)
                sdk_error_set(&self->err, rc, "event %llu of subscription %s cannot be decoded",
                              (unsigned long long)d->seq, sub->name);
        }
        s_grant(self, sub);
        if (fresh)
            return rc;
    }
    return 1;
}

int civ_next(civ_client_t *self, civ_delivery_t **out, int timeout_ms)
{
    if (!self || !out)
        return CIV_E_INVALID;
    *out = NULL;
    int64_t deadline = sdk_deadline(self, timeout_ms);
    int rc = CIV_OK;
    for (;;) {
        int got = s_take(self, out);
        if (got <= 0)
            return got;
        if (rc != CIV_OK)
            return rc;
        rc = sdk_wait(self, deadline);
    }
}

int civ_ack(civ_client_t *self, const char *name, uint64_t seq)
{
    if (!self || !name)
        return CIV_E_INVALID;
    sdk_sub_t *sub = s_find(self, name);
    if (!sub)
        return sdk_error_set(&self->err, CIV_E_UNKNOWN_SUBSCRIPTION, "no subscription %s on this client", name);
    if (seq > sub->acked)
        sub->acked = seq;
    /* While re-opening, the ack is repeated when the hub confirms. */
    return sub->state == SDK_SUB_ACTIVE ? s_send_ack(self, sub, seq) : CIV_OK;
}

int civ_unsubscribe(civ_client_t *self, const char *name)
{
    if (!self || !name)
        return CIV_E_INVALID;
    sdk_sub_t *sub = s_find(self, name);
    if (!sub)
        return sdk_error_set(&self->err, CIV_E_UNKNOWN_SUBSCRIPTION, "no subscription %s on this client", name);
    Civibus__V1__Unsubscribe unsubscribe = CIVIBUS__V1__UNSUBSCRIBE__INIT;
    unsubscribe.subscription = sub->name;
    Civibus__V1__ClientMessage msg = CIVIBUS__V1__CLIENT_MESSAGE__INIT;
    msg.body_case = CIVIBUS__V1__CLIENT_MESSAGE__BODY_UNSUBSCRIBE;
    msg.unsubscribe = &unsubscribe;
    int rc = sdk_send(self, &msg);
    s_remove(self, sub);
    return rc;
}

void sdk_subs_on_reply(civ_client_t *self, const Civibus__V1__SubscribeReply *reply)
{
    self->subs.last_traffic_ms = codec_mono_ms();
    sdk_sub_t *sub = s_find(self, reply->subscription);
    if (sub) {
        bool reopened = sub->state == SDK_SUB_RESUB;
        if (sub->state != SDK_SUB_ACTIVE)
            sub->state = SDK_SUB_ACTIVE;
        /* The hub caps credit at its credit_max; granting in halves of more
         * than it gave would never grant at all. */
        if (reply->credit > 0 && reply->credit < sub->window)
            sub->window = reply->credit;
        /* An explicit start may go back in the log: hand those events out
         * again. A re-open from the cursor keeps dropping what was handed. */
        if (!reopened && reply->next_seq > 0)
            sub->handed = reply->next_seq - 1;
        snprintf(sub->hub_instance, sizeof sub->hub_instance, "%s", reply->hub_instance);
        if (reopened && sub->acked)
            s_send_ack(self, sub, sub->acked);
    }
    sdk_subs_on_instance(self, reply->hub_instance);
}

void sdk_subs_on_deliver(civ_client_t *self, codec_hub_msg_t **msg_p)
{
    sdk_subs_t *subs = &self->subs;
    const Civibus__V1__Deliver *deliver = (*msg_p)->deliver;
    subs->last_traffic_ms = codec_mono_ms();
    sdk_sub_t *sub = s_find(self, deliver->subscription);
    if (!sub || deliver->n_events == 0)
        return; /* unsubscribed meanwhile */
    /* The hub answers a Subscribe before it delivers on the new session, so
     * anything arriving before that answer belongs to the old session. */
    if (sub->state != SDK_SUB_ACTIVE)
        return;
    /* The hub owes us at most window events; twice that (a Subscribe sent
     * twice around a reconnect) is the most a correct hub can get to. */
    if (sub->queued + deliver->n_events > 2 * (size_t)sub->window) {
        sdk_error_set(&self->err, CIV_E_PROTOCOL, "hub sent %s more events than its credit",
                      sub->name);
        return;
    }
    sdk_chunk_t *chunk = calloc(1, sizeof *chunk);
    if (!chunk)
        return; /* the events come again after the next re-open */
    chunk->msg = *msg_p;
    *msg_p = NULL;
    chunk->sub = sub;
    sub->queued += deliver->n_events;
    if (subs->tail)
        subs->tail->next = chunk;
    else
        subs->head = chunk;
    subs->tail = chunk;
}

static bool s_transient(int code)
{
    return code == CIV_E_UNAVAILABLE || code == CIV_E_INTERNAL || code == CIV_E_STORAGE_FULL;
}

bool sdk_subs_on_error(civ_client_t *self, const Civibus__V1__Error *error)
{
    sdk_sub_t *sub = s_find(self, error->subscription);
    if (!sub)
        return false;
    int code = sdk_code_from_wire(error->code);
    if (code == CIV_OK)
        code = CIV_E_PROTOCOL;
    sdk_error_set(&self->err, code, "subscription %s: %s: %s", sub->name, codec_error_name(error->code),
                  error->reason);
    snprintf(sub->report_why, sizeof sub->report_why, "%s", error->reason);
    switch (sub->state) {
    case SDK_SUB_OPENING:
        /* UNKNOWN_SUBSCRIPTION answers an ack or credit of the old one. */
        if (code != CIV_E_UNKNOWN_SUBSCRIPTION)
            sub->open_error = code;
        break;
    case SDK_SUB_RESUB:
        if (code != CIV_E_UNKNOWN_SUBSCRIPTION && !s_transient(code))
            sub->report = code; /* transient refusals are retried by the tick */
        break;
    case SDK_SUB_ACTIVE:
        /* Retention overtaking the session is final for it, as a refusal:
         * going on past the lost events is the application's decision. */
        if (code == CIV_E_UNKNOWN_SUBSCRIPTION)
            s_reopen(self, sub);
        else if (code == CIV_E_NOT_AUTHORISED || code == CIV_E_BEHIND_RETENTION)
            sub->report = code;
        /* Anything else answers an ack or credit (e.g. an ack past the
         * delivered events): kept in self->err, the subscription goes on. */
        break;
    }
    return true;
}

void sdk_subs_on_instance(civ_client_t *self, const char *hub_instance)
{
    if (!hub_instance[0])
        return;
    snprintf(self->hub_instance, sizeof self->hub_instance, "%s", hub_instance);
    for (sdk_sub_t *sub = self->subs.list; sub; sub = sub->next)
        if (sub->state == SDK_SUB_ACTIVE && sub->hub_instance[0] &&
            strncmp(sub->hub_instance, hub_instance, SDK_INSTANCE_MAX) != 0)
            s_reopen(self, sub);
}

void sdk_subs_tick(civ_client_t *self, int64_t now_ms)
{
    sdk_subs_t *subs = &self->subs;
    if (!subs->list)
        return;
    for (sdk_sub_t *sub = subs->list; sub; sub = sub->next) {
        if (sub->state != SDK_SUB_ACTIVE && sub->report == CIV_OK && now_ms - sub->sent_ms >= self->retry_ms)
            s_send_subscribe(self, sub);
        s_grant(self, sub); /* a grant that found the send queue full */
    }
    if (now_ms - subs->last_traffic_ms >= SDK_IDLE_PING_MS && now_ms - subs->last_ping_ms >= SDK_IDLE_PING_MS) {
        subs->last_ping_ms = now_ms;
        sdk_status_ping(self);
    }
}

/* The hub knows nothing of this connection: re-open what it had, and re-send
 * a pending Subscribe unless it was queued after the link went down (then
 * it goes out on the new connection by itself). */
void sdk_subs_on_reconnect(civ_client_t *self)
{
    for (sdk_sub_t *sub = self->subs.list; sub; sub = sub->next) {
        if (sub->report != CIV_OK || (sub->state != SDK_SUB_ACTIVE && sub->epoch == self->link_epoch))
            continue;
        if (sub->state == SDK_SUB_OPENING)
            s_send_subscribe(self, sub);
        else
            s_reopen(self, sub);
    }
}
