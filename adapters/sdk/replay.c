/* replay - reading the log in order, ahead of the reader.
 *
 * A replay asks the hub for chunks of the log with Replay requests and hands
 * the events out one by one. The hub caps a reply (replay_max events,
 * at most 4096, or about 512 KiB) and says in next_seq where to continue. To keep the pipe full, up to
 * SDK_REPLAY_AHEAD requests are in flight beyond the reply being read; each
 * one after the first is a guess that the previous chunk will be complete
 * (start + count). When a reply's next_seq shows a guess was wrong, the
 * requests after it are forgotten - their replies are ignored by request_id -
 * and asked again from the right place. The chunk size adapts down to what
 * the hub returns, so that a hub with a smaller cap does not make every guess
 * wrong.
 *
 * The end: count events were handed out; or (count 0) the last_seq of the
 * first reply was passed; or a reply had no events and next_seq > last_seq.
 * A request unanswered for retry_ms is sent again with the same request_id.
 *
 * Memory: at most SDK_REPLAY_AHEAD + 1 decoded replies per replay.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "sdk.h"

#define SLOTS (SDK_REPLAY_AHEAD + 1)

typedef struct {
    uint64_t request_id;
    uint64_t start;         /* seq asked for; 0 when from FIRST or TIME */
    uint32_t count;
    int64_t sent_ms;
    codec_hub_msg_t *reply; /* NULL until answered */
    size_t next_event;
} s_slot_t;

struct civ_replay {
    civ_replay_t *next;   /* the client's list of open replays */
    civ_client_t *client; /* NULL once the client is destroyed */
    civ_start_t from;
    uint64_t count;       /* 0: up to end_seq */
    uint64_t delivered;
    uint64_t end_seq;     /* count 0: last_seq of the first reply */
    bool started;         /* the first reply came */
    bool done;
    int error;
    uint64_t handed;      /* highest seq handed out */
    uint64_t ask_next;    /* where the next request starts */
    uint32_t chunk;       /* events asked per request */
    uint32_t best;        /* most events one reply ever held */
    s_slot_t slots[SLOTS];
    size_t n_slots;
};

static int s_send(civ_replay_t *self, s_slot_t *slot)
{
    Civibus__V1__StartPoint from = CIVIBUS__V1__START_POINT__INIT;
    if (slot->start) {
        from.kind = CIVIBUS__V1__START_POINT__KIND__SEQ;
        from.seq = slot->start;
    } else {
        from.kind = (Civibus__V1__StartPoint__Kind)self->from.kind;
        from.seq = self->from.seq;
        from.time = self->from.time_us;
    }
    Civibus__V1__Replay replay = CIVIBUS__V1__REPLAY__INIT;
    replay.request_id = slot->request_id;
    replay.from = &from;
    replay.count = slot->count;
    Civibus__V1__ClientMessage msg = CIVIBUS__V1__CLIENT_MESSAGE__INIT;
    msg.body_case = CIVIBUS__V1__CLIENT_MESSAGE__BODY_REPLAY;
    msg.replay = &replay;
    slot->sent_ms = codec_mono_ms();
    int rc = sdk_send(self->client, &msg);
    return rc == CIV_E_TIMEOUT ? CIV_OK : rc; /* re-sent by the tick */
}

static void s_drop_from(civ_replay_t *self, size_t first)
{
    for (size_t i = first; i < self->n_slots; i++)
        codec_hub_free(&self->slots[i].reply);
    if (first < self->n_slots)
        self->n_slots = first;
}

static void s_finish(civ_replay_t *self)
{
    self->done = true;
    s_drop_from(self, 0);
}

/* Events the requests and replies held will still yield at most. */
static uint64_t s_outstanding(const civ_replay_t *self)
{
    uint64_t n = 0;
    for (size_t i = 0; i < self->n_slots; i++) {
        const s_slot_t *s = &self->slots[i];
        n += s->reply ? s->reply->replay_reply->n_events - s->next_event : s->count;
    }
    return n;
}

/* Keep SDK_REPLAY_AHEAD requests in flight, within the replay's bounds. */
static int s_refill(civ_replay_t *self)
{
    if (!self->started || self->done || !self->client)
        return CIV_OK;
    for (;;) {
        size_t unanswered = 0;
        for (size_t i = 0; i < self->n_slots; i++)
            unanswered += self->slots[i].reply == NULL;
        if (self->n_slots == SLOTS || unanswered >= SDK_REPLAY_AHEAD)
            return CIV_OK;
        uint64_t want = self->chunk;
        if (self->count) {
            uint64_t left = self->count - self->delivered, ahead = s_outstanding(self);
            if (left <= ahead)
                return CIV_OK;
            want = left - ahead < want ? left - ahead : want;
        } else {
            if (self->ask_next > self->end_seq)
                return CIV_OK;
            uint64_t left = self->end_seq - self->ask_next + 1;
            want = left < want ? left : want;
        }
        s_slot_t *slot = &self->slots[self->n_slots++];
        memset(slot, 0, sizeof *slot);
        slot->request_id = sdk_request_id(self->client);
        slot->start = self->ask_next;
        slot->count = (uint32_t)want;
        self->ask_next += want;
        int rc = s_send(self, slot);
        if (rc != CIV_OK)
            return rc;
    }
}

/* A reply came for slots[i]: check the guesses that follow it. */
static void s_check_guesses(civ_replay_t *self)
{
    for (size_t i = 0; i + 1 < self->n_slots; i++) {
        const s_slot_t *s = &self->slots[i];
        if (!s->reply)
            return;
        uint64_t next = s->reply->replay_reply->next_seq;
        if (self->slots[i + 1].start != next) {
            s_drop_from(self, i + 1);
            self->ask_next = next;
            return;
        }
    }
}

civ_replay_t *civ_replay_open(civ_client_t *client, civ_start_t from, uint64_t count, civ_error_t *err)
{
    if (err)
        memset(err, 0, sizeof *err);
    if (!client) {
        sdk_error_set(err, CIV_E_INVALID, "client is NULL");
        return NULL;
    }
    if (from.kind != CIV_START_FIRST && from.kind != CIV_START_SEQ && from.kind != CIV_START_TIME) {
        sdk_error_set(err, CIV_E_INVALID, "a replay starts from FIRST, SEQ or TIME");
        return NULL;
    }
    civ_replay_t *self = calloc(1, sizeof *self);
    if (!self) {
        sdk_error_set(err, CIV_E_NOMEM, "no memory for a replay");
        return NULL;
    }
    self->client = client;
    self->from = from;
    self->count = count;
    self->end_seq = UINT64_MAX;
    self->chunk = SDK_REPLAY_CHUNK;
    s_slot_t *first = &self->slots[self->n_slots++];
    first->request_id = sdk_request_id(client);
    first->count = (uint32_t)(count && count < self->chunk ? count : self->chunk);
    int rc = s_send(self, first);
    if (rc != CIV_OK) {
        sdk_error_set(err, rc, "%s", client->err.message);
        free(self);
        return NULL;
    }
    self->next = client->replays;
    client->replays = self;
    return self;
}

/* The reply at the head has been read to its end: decide what follows. */
static int s_advance(civ_replay_t *self)
{
    s_slot_t *head = &self->slots[0];
    const Civibus__V1__ReplayReply *r = head->reply->replay_reply;
    if (r->n_events == 0 && r->next_seq > r->last_seq) {
        s_finish(self); /* nothing more in the log */
        return CIV_OK;
    }
    if (r->n_events == 0 && r->next_seq <= head->start) {
        self->error = sdk_error_set(&self->client->err, CIV_E_PROTOCOL,
                                    "replay reply makes no progress (next_seq %llu)",
                                    (unsigned long long)r->next_seq);
        return self->error;
    }
    if (!self->count && r->next_seq > self->end_seq) {
        s_finish(self);
        return CIV_OK;
    }
    uint64_t next = r->next_seq;
    codec_hub_free(&head->reply);
    memmove(&self->slots[0], &self->slots[1], (self->n_slots - 1) * sizeof self->slots[0]);
    self->n_slots--;
    if (self->n_slots == 0 || self->slots[0].start != next) {
        s_drop_from(self, 0);
        self->ask_next = next;
    }
    s_check_guesses(self);
    return s_refill(self);
}

int civ_replay_next(civ_replay_t *self, civ_delivery_t **out, int timeout_ms)
{
    if (!self || !out)
        return CIV_E_INVALID;
    *out = NULL;
    if (!self->client)
        return CIV_E_INVALID;
    civ_client_t *client = self->client;
    int64_t deadline = sdk_deadline(client, timeout_ms);
    int rc = CIV_OK;
    for (;;) {
        if (self->error != CIV_OK)
            return self->error;
        if (self->done)
            return CIV_OK;
        s_slot_t *head = self->n_slots ? &self->slots[0] : NULL;
        if (head && head->reply) {
            const Civibus__V1__ReplayReply *r = head->reply->replay_reply;
            while (head->next_event < r->n_events) {
                const Civibus__V1__Delivery *d = r->events[head->next_event++];
                if (d->seq <= self->handed)
                    continue; /* overlap with what was handed out */
                if (d->seq > self->end_seq) {
                    s_finish(self);
                    return CIV_OK;
                }
                self->handed = d->seq;
                self->delivered++;
                int drc = sdk_delivery_new("", d, out);
                if (self->count && self->delivered >= self->count)
                    s_finish(self);
                if (drc != CIV_OK)
                    return sdk_error_set(&client->err, drc, "replayed event %llu cannot be decoded",
                                         (unsigned long long)d->seq);
                return CIV_OK;
            }
            int arc = s_advance(self);
            if (arc != CIV_OK)
                return arc;
            continue;
        }
        if (!head) { /* every guess was dropped and the refill could not send */
            int frc = s_refill(self);
            if (frc != CIV_OK)
                return frc;
        }
        if (rc != CIV_OK)
            return rc;
        rc = sdk_wait(client, deadline);
    }
}

void civ_replay_destroy(civ_replay_t **self_p)
{
    if (!self_p || !*self_p)
        return;
    civ_replay_t *self = *self_p;
    if (self->client) {
        for (civ_replay_t **link = &self->client->replays; *link; link = &(*link)->next) {
            if (*link == self) {
                *link = self->next;
                break;
            }
        }
    }
    s_drop_from(self, 0);
    free(self);
    *self_p = NULL;
}

bool sdk_replay_on_reply(civ_client_t *client, codec_hub_msg_t **msg_p)
{
    const Civibus__V1__ReplayReply *r = (*msg_p)->replay_reply;
    for (civ_replay_t *self = client->replays; self; self = self->next) {
        for (size_t i = 0; i < self->n_slots; i++) {
            s_slot_t *slot = &self->slots[i];
            if (slot->request_id != r->request_id)
                continue;
            if (slot->reply)
                return true; /* the answer to a re-send */
            slot->reply = *msg_p;
            *msg_p = NULL;
            /* A hub that answers less than asked while more is there has a
             * lower cap: ask for that much, so that guesses hold. */
            /* What the hub covered: entries looked at, delivered or not (an
             * access policy may hold some back), known when the start was. */
            uint64_t covered = slot->start && r->next_seq > slot->start ? r->next_seq - slot->start : r->n_events;
            if (covered > slot->count)
                covered = slot->count;
            if (covered > self->best)
                self->best = (uint32_t)covered;
            if (covered && covered < slot->count && r->next_seq <= r->last_seq)
                self->chunk = (uint32_t)covered;
            else if (covered == slot->count && self->chunk < self->best)
                /* A full answer after a short one (a few large events hit the
                 * byte cap): grow back towards the most the hub ever gave,
                 * or one big event would slow the rest of the replay. */
                self->chunk = self->chunk * 2 < self->best ? self->chunk * 2 : self->best;
            if (!self->started) {
                self->started = true;
                if (!self->count)
                    self->end_seq = r->last_seq;
                self->ask_next = r->next_seq;
            }
            s_check_guesses(self);
            int rc = s_refill(self);
            if (rc != CIV_OK)
                self->error = rc;
            return true;
        }
    }
    return false; /* stale: a dropped guess or a finished replay */
}

bool sdk_replay_on_error(civ_client_t *client, const Civibus__V1__Error *error)
{
    for (civ_replay_t *self = client->replays; self; self = self->next) {
        for (size_t i = 0; i < self->n_slots; i++) {
            if (self->slots[i].request_id != error->request_id)
                continue;
            int code = sdk_code_from_wire(error->code);
            self->error = code == CIV_OK ? CIV_E_PROTOCOL : code;
            sdk_error_set(&client->err, self->error, "replay: %s: %s", codec_error_name(error->code),
                          error->reason);
            return true;
        }
    }
    return false;
}

void sdk_replay_tick(civ_client_t *client, int64_t now_ms)
{
    for (civ_replay_t *self = client->replays; self; self = self->next) {
        for (size_t i = 0; i < self->n_slots; i++) {
            s_slot_t *slot = &self->slots[i];
            if (!slot->reply && now_ms - slot->sent_ms >= client->retry_ms)
                s_send(self, slot);
        }
    }
}

void sdk_replay_detach_all(civ_client_t *client)
{
    while (client->replays) {
        civ_replay_t *self = client->replays;
        client->replays = self->next;
        self->next = NULL;
        self->client = NULL;
        s_drop_from(self, 0);
    }
}
