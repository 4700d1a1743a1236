/* publish - publishing events, blocking and pipelined.
 *
 * Every published event becomes an entry in one ordered queue (a ring indexed
 * by slot number). Entries are packed when queued, gathered into batches of
 * at most `batch` events or SDK_BATCH_BYTES, and each batch goes out as one
 * Publish with a fresh request_id. A batch keeps its packed frame until every
 * event in it is answered, and is re-sent unchanged - same request_id, same
 * bytes - whenever it has had no answer for retry_ms (clamp(timeout / 2, 200,
 * 2000) ms) or the connection was re-established. That is safe because the hub
 * de-duplicates on (source, event_id) and answers a repeat with the original
 * seq, flagged duplicate; answers to unknown or finished requests are ignored.
 *
 * Acks wait in the queue until civ_publish_recv takes them, so a pipelined
 * publisher that never receives grows the queue by one small entry per event.
 *
 * Window: at most `window` entries are unanswered; queuing another one first
 * sends any partial batch and then waits for answers. Answers are returned by
 * civ_publish_recv strictly in queue order. civ_publish runs on the same queue:
 * its entry is marked sync, sent at once, taken out of order when answered and
 * never returned by civ_publish_recv. An entry whose caller gave up (a timed
 * out civ_publish) is "gone": it stops counting against the window and its
 * batch stops being re-sent once nothing else in it waits.
 */
#include <assert.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "sdk.h"

/* The re-send scan runs at most this often. */
#define PUB_SCAN_MS 50

static sdk_pub_entry_t *s_entry(sdk_pub_t *pub, uint64_t slot)
{
    return &pub->ring[slot & (pub->cap - 1)];
}

static sdk_pub_batch_t *s_batch(sdk_pub_t *pub, size_t i)
{
    return &pub->batches[(pub->b_head + i) % pub->b_cap];
}

void sdk_pub_init(sdk_pub_t *pub)
{
    memset(pub, 0, sizeof *pub);
    pub->next_token = 1;
}

static void s_entry_clear(sdk_pub_entry_t *e)
{
    free(e->data);
    free(e->event_id);
    free(e->reason);
    memset(e, 0, sizeof *e);
}

void sdk_pub_free(sdk_pub_t *pub)
{
    for (uint64_t slot = pub->base; slot < pub->end; slot++)
        s_entry_clear(s_entry(pub, slot));
    for (size_t i = 0; i < pub->b_len; i++)
        free(s_batch(pub, i)->frame);
    free(pub->ring);
    free(pub->batches);
    memset(pub, 0, sizeof *pub);
}

/* Make room for one more entry. */
static int s_ring_reserve(sdk_pub_t *pub)
{
    if (pub->end - pub->base < pub->cap)
        return CIV_OK;
    uint64_t cap = pub->cap ? pub->cap * 2 : 64;
    sdk_pub_entry_t *ring = calloc(cap, sizeof *ring);
    if (!ring)
        return CIV_E_NOMEM;
    for (uint64_t slot = pub->base; slot < pub->end; slot++)
        ring[slot & (cap - 1)] = *s_entry(pub, slot);
    free(pub->ring);
    pub->ring = ring;
    pub->cap = cap;
    return CIV_OK;
}

static sdk_pub_batch_t *s_batch_push(sdk_pub_t *pub)
{
    if (pub->b_len == pub->b_cap) {
        size_t cap = pub->b_cap ? pub->b_cap * 2 : 16;
        sdk_pub_batch_t *b = malloc(cap * sizeof *b);
        if (!b)
            return NULL;
        for (size_t i = 0; i < pub->b_len; i++)
            b[i] = *s_batch(pub, i);
        free(pub->batches);
        pub->batches = b;
        pub->b_cap = cap;
        pub->b_head = 0;
    }
    sdk_pub_batch_t *b = s_batch(pub, pub->b_len++);
    memset(b, 0, sizeof *b);
    return b;
}

/* Batches are pushed in request_id order, so a binary search finds one. */
static sdk_pub_batch_t *s_batch_find(sdk_pub_t *pub, uint64_t request_id)
{
    size_t lo = 0, hi = pub->b_len;
    while (lo < hi) {
        size_t mid = lo + (hi - lo) / 2;
        sdk_pub_batch_t *b = s_batch(pub, mid);
        if (b->request_id == request_id)
            return b;
        if (b->request_id < request_id)
            lo = mid + 1;
        else
            hi = mid;
    }
    return NULL;
}

/* Does an event of this batch still wait for its answer? */
static bool s_batch_live(sdk_pub_t *pub, const sdk_pub_batch_t *b)
{
    for (uint64_t slot = b->first_slot; slot < b->first_slot + b->count; slot++) {
        if (slot < pub->base)
            continue;
        const sdk_pub_entry_t *e = s_entry(pub, slot);
        if (!e->done && !e->gone)
            return true;
    }
    return false;
}

/* Release finished batches and gone entries from the fronts of both rings. */
static void s_trim(sdk_pub_t *pub)
{
    while (pub->b_len && s_batch(pub, 0)->complete) {
        free(s_batch(pub, 0)->frame);
        pub->b_head = (pub->b_head + 1) % pub->b_cap;
        pub->b_len--;
    }
    while (pub->base < pub->open_first && s_entry(pub, pub->base)->gone) {
        s_entry_clear(s_entry(pub, pub->base));
        pub->base++;
    }
}

static void s_resolve(sdk_pub_t *pub, sdk_pub_entry_t *e, int code, uint64_t seq, bool duplicate,
                      const char *reason)
{
    if (e->done)
        return;
    e->done = true;
    e->code = code;
    e->seq = seq;
    e->duplicate = duplicate;
    if (code != CIV_OK && reason && reason[0])
        e->reason = strdup(reason);
    if (!e->gone)
        pub->n_unacked--;
}

static void s_abandon(sdk_pub_t *pub, sdk_pub_entry_t *e)
{
    if (!e->done && !e->gone)
        pub->n_unacked--;
    e->gone = true;
}

/* Sign the n packed events of a batch (docs/SIGNING.md): a hash tree over
 * their bytes, one signature over its root, and each event's signature
 * fields appended to its bytes (they are numbered above every other field,
 * so the result is the canonical encoding of the signed event). The signed
 * events are written one after the other into one buffer, *arena (the
 * caller frees it once the Publish is packed), and events[] is pointed at
 * them; on failure events[] is unchanged and *arena NULL. */
static int s_sign(civ_client_t *self, ProtobufCBinaryData *events, uint64_t n, uint8_t **arena)
{
    *arena = NULL;
    if (n > EVSIGN_MAX_LEAVES)
        return CIV_E_INVALID;
    size_t total = 0;
    for (uint64_t i = 0; i < n; i++)
        total += events[i].len + EVSIGN_FIELDS_MAX;
    uint8_t (*leaves)[CRYPTO_SHA256_LEN] = malloc(n * sizeof *leaves);
    size_t *lens = malloc(n * sizeof *lens);
    uint8_t *buf = malloc(total);
    evsign_tree_t *tree = NULL;
    int rc = CIV_E_NOMEM;
    if (!leaves || !lens || !buf)
        goto done;
    for (uint64_t i = 0; i < n; i++)
        if (evsign_leaf(events[i].data, events[i].len, leaves[i]) != EVSIGN_OK)
            goto done;
    tree = evsign_tree_new((const uint8_t(*)[CRYPTO_SHA256_LEN])leaves, n);
    uint8_t sig[CRYPTO_SIG_LEN];
    if (!tree || evsign_sign_root(self->sign_key, evsign_tree_root(tree), sig) != EVSIGN_OK)
        goto done;
    size_t at = 0;
    for (uint64_t i = 0; i < n; i++) {
        uint8_t path[EVSIGN_MAX_DEPTH][CRYPTO_SHA256_LEN];
        size_t n_path = evsign_tree_path(tree, i, path), fields_len = 0;
        memcpy(buf + at, events[i].data, events[i].len);
        if (evsign_fields_encode(self->sign_key_id, sig, (const uint8_t(*)[CRYPTO_SHA256_LEN])path, n_path,
                                 (uint32_t)i, (uint32_t)n, buf + at + events[i].len, &fields_len) != EVSIGN_OK)
            goto done;
        lens[i] = events[i].len + fields_len;
        at += lens[i];
    }
    at = 0;
    for (uint64_t i = 0; i < n; i++) {
        events[i].data = buf + at;
        events[i].len = lens[i];
        at += lens[i];
    }
    rc = CIV_OK;
done:
    free(leaves);
    free(lens);
    evsign_tree_destroy(&tree);
    if (rc == CIV_OK)
        *arena = buf;
    else
        free(buf);
    return rc;
}

/* Send the events not yet in a batch as one Publish. A send that finds the
 * queue full is not an error: the batch is re-sent by the timer. */
static int s_cut(civ_client_t *self)
{
    sdk_pub_t *pub = &self->pub;
    uint64_t n = pub->end - pub->open_first;
    if (n == 0)
        return CIV_OK;
    sdk_link_check(self); /* so that the batch gets the current link_epoch */
    ProtobufCBinaryData *events = malloc(n * sizeof *events);
    sdk_pub_batch_t *b = events ? s_batch_push(pub) : NULL;
    if (!b) {
        free(events);
        return sdk_error_set(&self->err, CIV_E_NOMEM, "no memory for a publish batch");
    }
    for (uint64_t i = 0; i < n; i++) {
        sdk_pub_entry_t *e = s_entry(pub, pub->open_first + i);
        events[i].data = e->data;
        events[i].len = e->len;
    }
    uint8_t *signed_events = NULL;
    if (self->sign_key && s_sign(self, events, n, &signed_events) != CIV_OK) {
        free(events);
        pub->b_len--;
        return sdk_error_set(&self->err, CIV_E_NOMEM, "cannot sign a publish batch");
    }
    Civibus__V1__Publish publish = CIVIBUS__V1__PUBLISH__INIT;
    publish.request_id = sdk_request_id(self);
    publish.n_events = n;
    publish.events = events;
    Civibus__V1__ClientMessage msg = CIVIBUS__V1__CLIENT_MESSAGE__INIT;
    msg.version = CODEC_PROTOCOL_VERSION;
    msg.body_case = CIVIBUS__V1__CLIENT_MESSAGE__BODY_PUBLISH;
    msg.publish = &publish;
    size_t len = civibus__v1__client_message__get_packed_size(&msg);
    uint8_t *frame = malloc(len);
    if (!frame) {
        free(signed_events);
        free(events);
        pub->b_len--;
        return sdk_error_set(&self->err, CIV_E_NOMEM, "no memory for a publish batch");
    }
    civibus__v1__client_message__pack(&msg, frame);
    free(signed_events);
    free(events);
    for (uint64_t i = 0; i < n; i++) {
        sdk_pub_entry_t *e = s_entry(pub, pub->open_first + i);
        free(e->data);
        e->data = NULL;
    }
    b->request_id = publish.request_id;
    b->first_slot = pub->open_first;
    b->count = (uint32_t)n;
    b->frame = frame;
    b->frame_len = len;
    b->sent_ms = codec_mono_ms();
    b->epoch = self->link_epoch;
    pub->open_first = pub->end;
    pub->open_bytes = 0;
    sdk_send_frame(self, frame, len);
    return CIV_OK;
}

/* Queue one packed event (taking data and event_id) and cut the batch when it
 * is full. Returns the entry's slot through *slot. */
static int s_append(civ_client_t *self, uint8_t **data, size_t len, const char *event_id, uint64_t token,
                    bool sync, uint64_t *slot)
{
    sdk_pub_t *pub = &self->pub;
    if (pub->end > pub->open_first && pub->open_bytes + len > SDK_BATCH_BYTES) {
        int rc = s_cut(self);
        if (rc != CIV_OK)
            return rc;
    }
    char *id = strdup(event_id);
    if (!id || s_ring_reserve(pub) != CIV_OK) {
        free(id);
        return sdk_error_set(&self->err, CIV_E_NOMEM, "no memory to queue an event");
    }
    sdk_pub_entry_t *e = s_entry(pub, pub->end);
    memset(e, 0, sizeof *e);
    e->token = token;
    e->data = *data;
    *data = NULL;
    e->len = len;
    e->event_id = id;
    e->sync = sync;
    *slot = pub->end++;
    pub->open_bytes += len;
    pub->n_unacked++;
    if (!sync)
        pub->n_pending++;
    /* The event is queued: a failed cut leaves it for the next one. */
    if (sync || pub->end - pub->open_first >= self->batch)
        s_cut(self);
    return CIV_OK;
}

/* Wait until the window has room for one more event. */
static int s_make_room(civ_client_t *self, int64_t deadline)
{
    sdk_pub_t *pub = &self->pub;
    if (pub->n_unacked < self->window)
        return CIV_OK;
    int rc = s_cut(self); /* answers come only for what was sent */
    while (rc == CIV_OK && pub->n_unacked >= self->window)
        rc = sdk_wait(self, deadline);
    return pub->n_unacked < self->window ? CIV_OK : rc;
}

static int s_pack(civ_client_t *self, const civ_event_t *event, uint8_t **data, size_t *len,
                  char event_id[CIV_ID_MAX + 1])
{
    char why[CIV_REASON_MAX];
    int rc = sdk_event_pack(event, self->agency, &self->rnd, data, len, event_id, why, sizeof why);
    if (rc != CIV_OK)
        sdk_error_set(&self->err, rc, "%s", why);
    return rc;
}

static void s_fill_ack(const sdk_pub_entry_t *e, civ_ack_t *ack)
{
    memset(ack, 0, sizeof *ack);
    ack->token = e->token;
    snprintf(ack->event_id, sizeof ack->event_id, "%s", e->event_id);
    ack->seq = e->seq;
    ack->duplicate = e->duplicate;
    ack->error = e->code;
    if (e->code != CIV_OK)
        snprintf(ack->reason, sizeof ack->reason, "%s", e->reason ? e->reason : civ_strerror(e->code));
}

int civ_publish(civ_client_t *self, const civ_event_t *event, civ_ack_t *ack)
{
    if (!self)
        return CIV_E_INVALID;
    uint8_t *data = NULL;
    size_t len = 0;
    char event_id[CIV_ID_MAX + 1];
    int rc = s_pack(self, event, &data, &len, event_id);
    if (rc != CIV_OK)
        return rc;
    int64_t deadline = sdk_deadline(self, -1);
    uint64_t slot = 0;
    rc = s_make_room(self, deadline);
    if (rc == CIV_OK)
        rc = s_append(self, &data, len, event_id, 0, true, &slot);
    free(data);
    if (rc != CIV_OK)
        return rc;

    sdk_pub_t *pub = &self->pub;
    while (!s_entry(pub, slot)->done && rc == CIV_OK)
        rc = sdk_wait(self, deadline);
    sdk_pub_entry_t *e = s_entry(pub, slot);
    if (e->done)
        rc = CIV_OK;
    if (ack) {
        /* Unanswered, the ack still names the event id, so that a retry by
         * the application can use the same one and be de-duplicated. */
        s_fill_ack(e, ack);
        if (!e->done) {
            ack->error = rc;
            snprintf(ack->reason, sizeof ack->reason, "%s", civ_strerror(rc));
        }
    }
    s_abandon(pub, e);
    s_trim(pub);
    return rc;
}

int civ_publish_send(civ_client_t *self, const civ_event_t *event, uint64_t *token)
{
    if (!self)
        return CIV_E_INVALID;
    uint8_t *data = NULL;
    size_t len = 0;
    char event_id[CIV_ID_MAX + 1];
    int rc = s_pack(self, event, &data, &len, event_id);
    if (rc != CIV_OK)
        return rc;
    uint64_t slot = 0, t = self->pub.next_token;
    rc = s_make_room(self, sdk_deadline(self, -1));
    if (rc == CIV_OK)
        rc = s_append(self, &data, len, event_id, t, false, &slot);
    free(data);
    if (rc != CIV_OK)
        return rc;
    self->pub.next_token++;
    if (token)
        *token = t;
    return CIV_OK;
}

int civ_publish_flush(civ_client_t *self)
{
    return self ? s_cut(self) : CIV_E_INVALID;
}

int civ_publish_recv(civ_client_t *self, civ_ack_t *ack, int timeout_ms)
{
    if (!self || !ack)
        return CIV_E_INVALID;
    sdk_pub_t *pub = &self->pub;
    int rc = CIV_OK;
    s_trim(pub);
    if (pub->n_pending == 0)
        return sdk_error_set(&self->err, CIV_E_INVALID, "no published event is pending");
    /* Send the open batch only when the ack waited for is in it: a caller
     * polling for acks between sends must not cut every batch to one event. */
    if (pub->base >= pub->open_first && (rc = s_cut(self)) != CIV_OK)
        return rc;
    /* Gone entries are trimmed and sync ones are gone outside civ_publish, so
     * the head is the oldest pipelined event. */
    int64_t deadline = sdk_deadline(self, timeout_ms);
    while (!s_entry(pub, pub->base)->done && rc == CIV_OK)
        rc = sdk_wait(self, deadline);
    sdk_pub_entry_t *e = s_entry(pub, pub->base);
    if (!e->done)
        return rc;
    s_fill_ack(e, ack);
    s_entry_clear(e);
    pub->base++;
    pub->n_pending--;
    s_trim(pub);
    return CIV_OK;
}

size_t civ_publish_pending(const civ_client_t *self)
{
    return self ? self->pub.n_pending : 0;
}

void sdk_pub_on_reply(civ_client_t *self, const Civibus__V1__PublishReply *reply)
{
    sdk_pub_t *pub = &self->pub;
    sdk_pub_batch_t *b = s_batch_find(pub, reply->request_id);
    if (!b || b->complete)
        return;
    for (size_t i = 0; i < reply->n_results; i++) {
        const Civibus__V1__PublishResult *r = reply->results[i];
        if (r->index >= b->count) {
            sdk_error_set(&self->err, CIV_E_PROTOCOL, "publish result index %u of a %u-event batch",
                          r->index, b->count);
            continue;
        }
        uint64_t slot = b->first_slot + r->index;
        if (slot >= pub->base)
            s_resolve(pub, s_entry(pub, slot), sdk_code_from_wire(r->code), r->seq, r->duplicate, r->reason);
    }
    b->complete = !s_batch_live(pub, b);
    s_trim(pub);
}

bool sdk_pub_on_error(civ_client_t *self, const Civibus__V1__Error *error)
{
    sdk_pub_t *pub = &self->pub;
    sdk_pub_batch_t *b = s_batch_find(pub, error->request_id);
    if (!b)
        return false;
    if (b->complete)
        return true;
    int code = sdk_code_from_wire(error->code);
    if (code == CIV_OK)
        code = CIV_E_PROTOCOL;
    for (uint64_t slot = b->first_slot; slot < b->first_slot + b->count; slot++)
        if (slot >= pub->base)
            s_resolve(pub, s_entry(pub, slot), code, 0, false, error->reason);
    b->complete = true;
    s_trim(pub);
    return true;
}

/* Re-send unanswered batches: on a new connection those sent before the link
 * went down (later ones were queued and go out on it by themselves); on the
 * same connection after retry_ms, doubling up to 16 times that, so that a
 * slow hub is not sent its backlog again and again. */
static void s_resend(civ_client_t *self, int64_t now_ms, bool reconnected)
{
    sdk_pub_t *pub = &self->pub;
    for (size_t i = 0; i < pub->b_len; i++) {
        sdk_pub_batch_t *b = s_batch(pub, i);
        unsigned shift = b->resends < 4 ? b->resends : 4;
        bool due = reconnected ? b->epoch != self->link_epoch
                               : now_ms - b->sent_ms >= (int64_t)self->retry_ms << shift;
        if (b->complete || !due)
            continue;
        if (!s_batch_live(pub, b)) {
            b->complete = true;
            continue;
        }
        sdk_send_frame(self, b->frame, b->frame_len);
        b->resends = reconnected ? 0 : b->resends + 1;
        b->sent_ms = now_ms;
        b->epoch = self->link_epoch;
    }
    s_trim(pub);
}

void sdk_pub_tick(civ_client_t *self, int64_t now_ms)
{
    static_assert(PUB_SCAN_MS < SDK_RETRY_MIN_MS, "the scan must be finer than the retry");
    if (self->pub.b_len == 0 || now_ms - self->pub.last_scan_ms < PUB_SCAN_MS)
        return;
    self->pub.last_scan_ms = now_ms;
    s_resend(self, now_ms, false);
}

void sdk_pub_on_reconnect(civ_client_t *self)
{
    s_resend(self, codec_mono_ms(), true);
}
