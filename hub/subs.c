/* subs - durable subscriptions: sessions, credit, cursors and delivery.
 *
 * Sessions live in a hash table keyed by agency and name (acks and credits
 * look them up at message rate) and in an array (the pump visits them all).
 * Invariant per session: acked <= delivered < next_seq; credit counts events
 * the peer still accepts; events (acked, delivered] are in flight.
 *
 * Retention may delete entries a subscription has not been sent: a cursor
 * is never moved over them. A Subscribe from such a cursor, a SEQ or a TIME
 * before the log's start is refused with BEHIND_RETENTION; a live session
 * that retention overtakes is told so once, by an Error with the range
 * lost, and is sent nothing more until its consumer subscribes again with
 * an explicit start (FIRST or SEQ), which is logged.
 */
#include "subs.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "batch.h"
#include "policy.h"
#include "log.h"

#define DELIVER_MAX_EVENTS 1024
#define DELIVER_MAX_BYTES (256 * 1024)
#define SCAN_MAX 16384 /* entries one pump reads for one session */
#define FILTERS_MAX 32
#define BUCKETS 1024
#define BUSY_RETRY_MS 20

typedef struct s_session {
    char agency[CODEC_AGENCY_MAX + 1];
    char name[CODEC_NAME_MAX + 1];
    char key[41];          /* the connection's CURVE key (Z85), "" if unknown */
    char **filters;
    size_t n_filters;
    char *filters_joined; /* '\n'-joined, as saved */
    wire_peer_t peer;
    uint64_t next_seq;
    uint64_t delivered;
    uint64_t acked;
    uint32_t credit;
    uint64_t behind_from; /* retention deleted behind_from..behind_to before they were sent: */
    uint64_t behind_to;   /* nothing more is sent (0: not behind) */
    bool behind_told;     /* the Error saying so went out */
    bool dirty;
    bool busy;
    int64_t retry_at_ms; /* a busy session is not read for again before this */
    int64_t last_seen_ms;
    struct s_session *hnext;
} s_session_t;

struct subs {
    journal_t *journal;
    void *router;
    subs_opts_t opts;
    s_session_t *buckets[BUCKETS];
    s_session_t **list;
    size_t n, cap;
    journal_cursor_t *dirty;
    s_session_t **dirty_of;
    size_t n_dirty;
    int pending;
    const policy_t *policy; /* borrowed; NULL: everything allowed */
    batch_t batch;          /* reused by every pump */
};

static size_t s_hash(const char *agency, const char *name)
{
    uint64_t h = 1469598103934665603ULL;
    for (const char *p = agency; *p; p++)
        h = (h ^ (uint8_t)*p) * 1099511628211ULL;
    h = (h ^ 0) * 1099511628211ULL;
    for (const char *p = name; *p; p++)
        h = (h ^ (uint8_t)*p) * 1099511628211ULL;
    return (size_t)(h % BUCKETS);
}

static s_session_t *s_find(subs_t *self, const char *agency, const char *name)
{
    for (s_session_t *s = self->buckets[s_hash(agency, name)]; s; s = s->hnext)
        if (strcmp(s->agency, agency) == 0 && strcmp(s->name, name) == 0)
            return s;
    return NULL;
}

static bool s_same_peer(const wire_peer_t *a, const wire_peer_t *b)
{
    return a->len == b->len && memcmp(a->id, b->id, a->len) == 0;
}

static void s_session_free(s_session_t *s)
{
    for (size_t i = 0; i < s->n_filters; i++)
        free(s->filters[i]);
    free(s->filters);
    free(s->filters_joined);
    free(s);
}

static int s_save_one(subs_t *self, s_session_t *s)
{
    journal_cursor_t c = {.agency = s->agency, .name = s->name, .acked = s->acked, .filters = s->filters_joined};
    int rc = journal_save_cursors(self->journal, &c, 1);
    if (rc == JOURNAL_OK)
        s->dirty = false;
    else
        log_error("subs", "event=cursor_save_failed agency=%s subscription=%s error=\"%s\"", s->agency, s->name,
                  journal_strerror(rc));
    return rc;
}

/* Unlink and free a session, saving its cursor first when it is dirty. */
static void s_remove(subs_t *self, s_session_t *s, const char *why)
{
    if (s->dirty)
        s_save_one(self, s);
    s_session_t **pp = &self->buckets[s_hash(s->agency, s->name)];
    while (*pp != s)
        pp = &(*pp)->hnext;
    *pp = s->hnext;
    for (size_t i = 0; i < self->n; i++) {
        if (self->list[i] == s) {
            self->list[i] = self->list[--self->n];
            break;
        }
    }
    log_info("subs", "event=session_closed agency=%s subscription=%s reason=%s cursor=%llu", s->agency, s->name,
             why, (unsigned long long)s->acked);
    s_session_free(s);
}

subs_t *subs_new(journal_t *journal, void *router, const subs_opts_t *opts)
{
    subs_t *self = calloc(1, sizeof *self);
    if (!self)
        return NULL;
    self->journal = journal;
    self->router = router;
    self->opts = *opts;
    return self;
}

void subs_destroy(subs_t **self_p)
{
    subs_t *self = self_p ? *self_p : NULL;
    if (!self)
        return;
    while (self->n)
        s_remove(self, self->list[0], "shutdown");
    free(self->list);
    free(self->dirty);
    free(self->dirty_of);
    free(self);
    *self_p = NULL;
}

static Civibus__V1__ErrorCode s_parse_filters(s_session_t *s, const Civibus__V1__Subscribe *req, char *reason,
                                              size_t reason_len)
{
    if (req->n_filters == 0 || req->n_filters > FILTERS_MAX) {
        snprintf(reason, reason_len, "a subscription needs 1 to %d filters", FILTERS_MAX);
        return CIVIBUS__V1__ERROR_CODE__BAD_REQUEST;
    }
    size_t joined = 0;
    for (size_t i = 0; i < req->n_filters; i++) {
        if (!codec_filter_valid(req->filters[i])) {
            snprintf(reason, reason_len, "filter %zu is not '*', a type or 'prefix.*'", i + 1);
            return CIVIBUS__V1__ERROR_CODE__BAD_REQUEST;
        }
        joined += strlen(req->filters[i]) + 1;
    }
    s->filters = calloc(req->n_filters, sizeof *s->filters);
    s->filters_joined = calloc(1, joined);
    if (!s->filters || !s->filters_joined)
        return CIVIBUS__V1__ERROR_CODE__INTERNAL;
    for (size_t i = 0; i < req->n_filters; i++) {
        s->filters[i] = strdup(req->filters[i]);
        if (!s->filters[i])
            return CIVIBUS__V1__ERROR_CODE__INTERNAL;
        s->n_filters++;
        if (i)
            strcat(s->filters_joined, "\n");
        strcat(s->filters_joined, req->filters[i]);
    }
    return CIVIBUS__V1__ERROR_CODE__OK;
}

/* First sequence number a start point designates. */
static Civibus__V1__ErrorCode s_resolve_start(subs_t *self, const Civibus__V1__StartPoint *start, bool *has_cursor,
                                              uint64_t saved, uint64_t *next, char *reason, size_t reason_len)
{
    uint64_t first = journal_first_seq(self->journal), last = journal_last_seq(self->journal);
    if (first == 0)
        first = last + 1;
    Civibus__V1__StartPoint__Kind kind = start ? start->kind : CIVIBUS__V1__START_POINT__KIND__CURSOR;
    switch (kind) {
    case CIVIBUS__V1__START_POINT__KIND__CURSOR:
        if (*has_cursor) {
            *next = saved + 1;
            if (*next < first)
                goto behind;
            return CIVIBUS__V1__ERROR_CODE__OK;
        }
        *next = first;
        break;
    case CIVIBUS__V1__START_POINT__KIND__FIRST:
        *next = first;
        break;
    case CIVIBUS__V1__START_POINT__KIND__LATEST:
        *next = last + 1;
        break;
    case CIVIBUS__V1__START_POINT__KIND__SEQ:
        if (start->seq == 0) {
            snprintf(reason, reason_len, "sequence numbers start at 1");
            return CIVIBUS__V1__ERROR_CODE__BAD_REQUEST;
        }
        if (start->seq > last + 1) {
            snprintf(reason, reason_len, "sequence %llu is beyond the end of the log (last %llu)",
                     (unsigned long long)start->seq, (unsigned long long)last);
            return CIVIBUS__V1__ERROR_CODE__BAD_REQUEST;
        }
        *next = start->seq;
        if (*next < first)
            goto behind;
        break;
    case CIVIBUS__V1__START_POINT__KIND__TIME: {
        journal_retention_stats_t rs;
        journal_retention_stats(self->journal, &rs);
        if (rs.anchor_seq && start->time <= rs.anchor_us) {
            *next = 0; /* deleted entries were received then: which is not known */
            goto behind;
        }
        if (journal_seq_at_time(self->journal, start->time, next) != JOURNAL_OK) {
            snprintf(reason, reason_len, "cannot search the log by time");
            return CIVIBUS__V1__ERROR_CODE__INTERNAL;
        }
        break;
    }
    default:
        snprintf(reason, reason_len, "unknown start kind %d", (int)kind);
        return CIVIBUS__V1__ERROR_CODE__BAD_REQUEST;
    }
    *has_cursor = false; /* an explicit start resets the cursor */
    return CIVIBUS__V1__ERROR_CODE__OK;
behind:
    if (*next)
        snprintf(reason, reason_len, "entries %llu to %llu were deleted by retention", (unsigned long long)*next,
                 (unsigned long long)first - 1);
    else
        snprintf(reason, reason_len, "entries up to %llu received at or after the start time were deleted by "
                 "retention", (unsigned long long)first - 1);
    return CIVIBUS__V1__ERROR_CODE__BEHIND_RETENTION;
}

size_t subs_agency_count(const subs_t *self, const char *agency, const char *except)
{
    size_t n = 0;
    for (size_t i = 0; i < self->n; i++)
        n += strcmp(self->list[i]->agency, agency) == 0 && (!except || strcmp(self->list[i]->name, except) != 0);
    return n;
}

Civibus__V1__ErrorCode subs_open(subs_t *self, const char *agency, const char *key, const wire_peer_t *peer,
                                 const Civibus__V1__Subscribe *req, uint64_t *next_seq, char *reason,
                                 size_t reason_len)
{
    if (!codec_name_valid(req->name)) {
        snprintf(reason, reason_len, "subscription name must be 1-64 characters of [A-Za-z0-9._-]");
        return CIVIBUS__V1__ERROR_CODE__BAD_REQUEST;
    }
    s_session_t *old = s_find(self, agency, req->name);
    if (!old && self->n >= self->opts.max_sessions) {
        snprintf(reason, reason_len, "the hub holds its maximum of %zu subscriptions", self->opts.max_sessions);
        return CIVIBUS__V1__ERROR_CODE__UNAVAILABLE;
    }
    s_session_t *s = calloc(1, sizeof *s);
    if (!s)
        return CIVIBUS__V1__ERROR_CODE__INTERNAL;
    snprintf(s->agency, sizeof s->agency, "%s", agency);
    snprintf(s->name, sizeof s->name, "%s", req->name);
    snprintf(s->key, sizeof s->key, "%s", key ? key : "");
    Civibus__V1__ErrorCode code = s_parse_filters(s, req, reason, reason_len);
    if (code != CIVIBUS__V1__ERROR_CODE__OK)
        goto fail;
    if (self->policy) {
        bool any = false;
        for (size_t i = 0; i < s->n_filters && !any; i++)
            any = policy_filter_allowed(self->policy, agency, s->filters[i]);
        if (!any) {
            snprintf(reason, reason_len, "the access policy lets %s subscribe to none of these filters", agency);
            code = CIVIBUS__V1__ERROR_CODE__NOT_AUTHORISED;
            goto fail;
        }
    }

    bool has_cursor = false;
    uint64_t saved = 0;
    if (old) {
        has_cursor = true;
        saved = old->acked;
    } else {
        int rc = journal_cursor_get(self->journal, agency, req->name, &saved, NULL);
        if (rc == JOURNAL_OK)
            has_cursor = true;
        else if (rc != JOURNAL_NOTFOUND) {
            snprintf(reason, reason_len, "cannot read the saved cursor");
            code = CIVIBUS__V1__ERROR_CODE__INTERNAL;
            goto fail;
        }
    }
    uint64_t next = 0;
    bool had_cursor = has_cursor;
    code = s_resolve_start(self, req->start, &has_cursor, saved, &next, reason, reason_len);
    if (code == CIVIBUS__V1__ERROR_CODE__BEHIND_RETENTION)
        *next_seq = next;
    if (code != CIVIBUS__V1__ERROR_CODE__OK)
        goto fail;
    if (had_cursor && !has_cursor && subs_cursor_behind(self, saved))
        log_warn("subs", "event=cursor_reset_past_retention agency=%s subscription=%s cursor=%llu first_seq=%llu "
                 "next_seq=%llu", agency, s->name, (unsigned long long)saved,
                 (unsigned long long)journal_first_seq(self->journal), (unsigned long long)next);
    s->next_seq = next;
    s->acked = has_cursor ? saved : next - 1;
    s->delivered = next - 1;
    s->peer = *peer;
    s->credit = req->credit > self->opts.credit_max ? self->opts.credit_max : req->credit;
    s->last_seen_ms = codec_mono_ms();
    int src = s_save_one(self, s);
    if (src != JOURNAL_OK) {
        bool full = src == JOURNAL_FULL || src == JOURNAL_NOSPACE;
        snprintf(reason, reason_len, "cannot save the subscription's cursor: %s", journal_strerror(src));
        code = full ? CIVIBUS__V1__ERROR_CODE__STORAGE_FULL : CIVIBUS__V1__ERROR_CODE__INTERNAL;
        goto fail;
    }
    if (old) {
        old->dirty = false; /* its cursor was carried over and saved above */
        s_remove(self, old, "taken_over");
    }
    if (self->n == self->cap) {
        size_t cap = self->cap ? self->cap * 2 : 16;
        s_session_t **grown = realloc(self->list, cap * sizeof *grown);
        if (!grown) {
            code = CIVIBUS__V1__ERROR_CODE__INTERNAL;
            goto fail;
        }
        self->list = grown;
        self->cap = cap;
    }
    self->list[self->n++] = s;
    size_t b = s_hash(agency, req->name);
    s->hnext = self->buckets[b];
    self->buckets[b] = s;
    *next_seq = next;
    log_info("subs", "event=subscribed agency=%s subscription=%s next_seq=%llu credit=%u", agency, s->name,
             (unsigned long long)next, s->credit);
    return CIVIBUS__V1__ERROR_CODE__OK;
fail:
    s_session_free(s);
    return code;
}

static s_session_t *s_session_of(subs_t *self, const char *agency, const wire_peer_t *peer, const char *name)
{
    if (!name)
        return NULL;
    s_session_t *s = s_find(self, agency, name);
    if (!s || !s_same_peer(&s->peer, peer))
        return NULL;
    s->last_seen_ms = codec_mono_ms();
    return s;
}

void subs_drop_invalid(subs_t *self, subs_key_valid_fn valid, void *arg)
{
    for (size_t i = 0; i < self->n;) {
        s_session_t *s = self->list[i];
        if (!valid(arg, s->agency, s->key))
            s_remove(self, s, "key_no_longer_valid"); /* list[i] now holds another */
        else
            i++;
    }
}

void subs_drop_peer(subs_t *self, const wire_peer_t *peer, const char *why)
{
    for (size_t i = 0; i < self->n;) {
        s_session_t *s = self->list[i];
        if (s_same_peer(&s->peer, peer))
            s_remove(self, s, why);
        else
            i++;
    }
}

void subs_set_opts(subs_t *self, const subs_opts_t *opts)
{
    self->opts = *opts;
}

void subs_set_policy(subs_t *self, const policy_t *policy)
{
    self->policy = policy;
}

void subs_touch(subs_t *self, const wire_peer_t *peer)
{
    int64_t now = codec_mono_ms();
    for (size_t i = 0; i < self->n; i++)
        if (s_same_peer(&self->list[i]->peer, peer))
            self->list[i]->last_seen_ms = now;
}

Civibus__V1__ErrorCode subs_ack(subs_t *self, const char *agency, const wire_peer_t *peer, const char *name,
                                uint64_t seq)
{
    s_session_t *s = s_session_of(self, agency, peer, name);
    if (!s)
        return CIVIBUS__V1__ERROR_CODE__UNKNOWN_SUBSCRIPTION;
    if (seq > s->delivered)
        seq = s->delivered; /* an ack cannot cover what was never sent */
    if (seq > s->acked) {
        s->acked = seq;
        s->dirty = true;
    }
    if (s->acked == s->delivered && s->next_seq - 1 > s->acked) {
        /* Everything sent is acknowledged and what was scanned after it did
         * not match: the cursor moves past it, so lag means unread events. */
        s->acked = s->delivered = s->next_seq - 1;
        s->dirty = true;
    }
    return CIVIBUS__V1__ERROR_CODE__OK;
}

Civibus__V1__ErrorCode subs_credit(subs_t *self, const char *agency, const wire_peer_t *peer, const char *name,
                                   uint32_t credit)
{
    s_session_t *s = s_session_of(self, agency, peer, name);
    if (!s)
        return CIVIBUS__V1__ERROR_CODE__UNKNOWN_SUBSCRIPTION;
    uint64_t c = (uint64_t)s->credit + credit;
    s->credit = c > self->opts.credit_max ? self->opts.credit_max : (uint32_t)c;
    return CIVIBUS__V1__ERROR_CODE__OK;
}

Civibus__V1__ErrorCode subs_close(subs_t *self, const char *agency, const wire_peer_t *peer, const char *name)
{
    s_session_t *s = s_session_of(self, agency, peer, name);
    if (!s)
        return CIVIBUS__V1__ERROR_CODE__UNKNOWN_SUBSCRIPTION;
    s_remove(self, s, "unsubscribed");
    return CIVIBUS__V1__ERROR_CODE__OK;
}

/* The pump's match: the session's filters, within what the policy lets its
 * agency receive. The policy is consulted per event, because a filter may be
 * wider than the rules, and a reload applies at once. */
typedef struct {
    const s_session_t *s;
    const policy_t *policy;
} s_match_t;

static bool s_matches(const void *arg, const char *type, size_t len)
{
    const s_match_t *m = arg;
    bool hit = false;
    for (size_t i = 0; i < m->s->n_filters && !hit; i++)
        hit = codec_filter_match(m->s->filters[i], type, len);
    return hit && (!m->policy || policy_allows(m->policy, m->s->agency, POLICY_SUBSCRIBE, type, len, NULL));
}

/* One Deliver to one session. Returns events sent. */
static size_t s_pump_one(subs_t *self, s_session_t *s, uint64_t last, bool *gone)
{
    batch_t *b = &self->batch;
    s_match_t match = {.s = s, .policy = self->policy};
    int rc = batch_fill(b, self->journal, s->next_seq, s->credit < DELIVER_MAX_EVENTS ? s->credit : DELIVER_MAX_EVENTS,
                        DELIVER_MAX_BYTES, SCAN_MAX, s_matches, &match);
    size_t sent = 0;
    if (rc < 0) {
        log_limited(LOG_ERROR, "subs", "subs.scan", "event=scan_failed subscription=%s error=\"%s\"", s->name,
                    journal_strerror(rc));
        goto done;
    }
    if (b->scanned_to == 0) {
        /* Nothing at next_seq although last >= next_seq, and retention did
         * not delete it (subs_pump checked): a fault, and skipping ahead
         * would lose events: retry later. */
        log_limited(LOG_ERROR, "subs", "subs.hole", "event=log_hole subscription=%s seq=%llu last_seq=%llu",
                    s->name, (unsigned long long)s->next_seq, (unsigned long long)last);
        s->busy = true;
        goto done;
    }
    if (b->n == 0) {
        s->next_seq = b->scanned_to + 1;
        if (s->acked == s->delivered) {
            /* Nothing in flight: the skipped events need no ack. */
            s->acked = s->delivered = b->scanned_to;
            s->dirty = true;
        }
        goto done;
    }
    Civibus__V1__Deliver dl = CIVIBUS__V1__DELIVER__INIT;
    dl.subscription = s->name;
    dl.n_events = b->n;
    dl.events = b->ptrs;
    Civibus__V1__HubMessage msg = CIVIBUS__V1__HUB_MESSAGE__INIT;
    msg.body_case = CIVIBUS__V1__HUB_MESSAGE__BODY_DELIVER;
    msg.deliver = &dl;
    rc = wire_send(self->router, &s->peer, &msg);
    if (rc == WIRE_OK) {
        uint64_t last_sent = b->ptrs[b->n - 1]->seq;
        s->delivered = last_sent;
        s->next_seq = last_sent + 1;
        s->credit -= (uint32_t)b->n;
        s->busy = false;
        sent = b->n;
    } else if (rc == WIRE_BUSY) {
        s->busy = true;
    } else {
        *gone = true;
    }
done:
    batch_release(b);
    return sent;
}

/* Has retention deleted entries s was still to be sent? Then s is told so
 * once (retried while its peer's queue is full) and sent nothing more.
 * *gone when its peer is. */
static bool s_behind(subs_t *self, s_session_t *s, uint64_t first, bool *gone)
{
    if (!s->behind_to && s->next_seq < first) {
        s->behind_from = s->next_seq;
        s->behind_to = first - 1;
        log_warn("subs", "event=behind_retention agency=%s subscription=%s cursor=%llu lost_from=%llu lost_to=%llu",
                 s->agency, s->name, (unsigned long long)s->acked, (unsigned long long)s->behind_from,
                 (unsigned long long)s->behind_to);
    }
    if (s->behind_to && !s->behind_told) {
        int rc = wire_send_behind(self->router, &s->peer, 0, s->name, s->behind_from, s->behind_to);
        s->behind_told = rc == WIRE_OK;
        *gone = rc == WIRE_GONE;
        if (rc == WIRE_BUSY && self->pending == SUBS_IDLE)
            self->pending = SUBS_BUSY;
    }
    return s->behind_to != 0;
}

size_t subs_pump(subs_t *self)
{
    uint64_t last = journal_last_seq(self->journal), first = journal_first_seq(self->journal);
    size_t total = 0;
    int64_t now = codec_mono_ms();
    self->pending = SUBS_IDLE;
    for (size_t i = 0; i < self->n;) {
        s_session_t *s = self->list[i];
        bool gone = false;
        if (s_behind(self, s, first, &gone)) {
            if (gone)
                s_remove(self, s, "peer_gone");
            else
                i++;
            continue;
        }
        if (s->credit == 0 || s->next_seq > last) {
            i++;
            continue;
        }
        if (s->busy && now < s->retry_at_ms) {
            /* Its peer's queue was full: reading the log again for it now
             * would only be thrown away. */
            if (self->pending == SUBS_IDLE)
                self->pending = SUBS_BUSY;
            i++;
            continue;
        }
        total += s_pump_one(self, s, last, &gone);
        if (s->busy)
            s->retry_at_ms = now + BUSY_RETRY_MS;
        if (gone) {
            s_remove(self, s, "peer_gone");
            continue; /* list[i] now holds another session */
        }
        if (s->credit > 0 && s->next_seq <= last) {
            if (s->busy) {
                if (self->pending == SUBS_IDLE)
                    self->pending = SUBS_BUSY;
            } else {
                self->pending = SUBS_MORE;
            }
        }
        i++;
    }
    return total;
}

int subs_pending(const subs_t *self)
{
    return self->pending;
}

void subs_expire(subs_t *self, int64_t now_ms)
{
    for (size_t i = 0; i < self->n;) {
        s_session_t *s = self->list[i];
        if (now_ms - s->last_seen_ms > self->opts.session_timeout_ms)
            s_remove(self, s, "idle_timeout");
        else
            i++;
    }
}

size_t subs_take_dirty(subs_t *self, const journal_cursor_t **out)
{
    free(self->dirty);
    free(self->dirty_of);
    self->dirty = NULL;
    self->dirty_of = NULL;
    self->n_dirty = 0;
    size_t n = 0;
    for (size_t i = 0; i < self->n; i++)
        n += self->list[i]->dirty;
    if (n == 0) {
        *out = NULL;
        return 0;
    }
    self->dirty = calloc(n, sizeof *self->dirty);
    self->dirty_of = calloc(n, sizeof *self->dirty_of);
    if (!self->dirty || !self->dirty_of) {
        *out = NULL;
        return 0;
    }
    for (size_t i = 0; i < self->n; i++) {
        s_session_t *s = self->list[i];
        if (!s->dirty)
            continue;
        self->dirty[self->n_dirty] = (journal_cursor_t){
            .agency = s->agency, .name = s->name, .acked = s->acked, .filters = s->filters_joined};
        self->dirty_of[self->n_dirty++] = s;
    }
    *out = self->dirty;
    return self->n_dirty;
}

void subs_saved(subs_t *self)
{
    for (size_t i = 0; i < self->n_dirty; i++) {
        s_session_t *s = self->dirty_of[i];
        if (s->acked == self->dirty[i].acked)
            s->dirty = false;
    }
    self->n_dirty = 0;
}

typedef struct {
    subs_t *self;
    const char *agency;
    Civibus__V1__StatusReply *status;
    size_t cap;
    int failed;
} s_status_ctx_t;

static Civibus__V1__SubscriptionStatus *s_status_add(s_status_ctx_t *c, const char *agency, const char *name,
                                                     const char *filters_joined)
{
    Civibus__V1__StatusReply *st = c->status;
    if (st->n_subscriptions == c->cap) {
        size_t cap = c->cap ? c->cap * 2 : 16;
        Civibus__V1__SubscriptionStatus **grown = realloc(st->subscriptions, cap * sizeof *grown);
        if (!grown)
            return NULL;
        st->subscriptions = grown;
        c->cap = cap;
    }
    Civibus__V1__SubscriptionStatus *ss = calloc(1, sizeof *ss);
    if (!ss)
        return NULL;
    civibus__v1__subscription_status__init(ss);
    ss->agency = strdup(agency);
    ss->name = strdup(name);
    char *copy = strdup(filters_joined ? filters_joined : "");
    size_t nf = 0;
    for (char *p = copy; p && *p; p++)
        nf += *p == '\n';
    ss->filters = calloc(nf + 1, sizeof *ss->filters);
    if (copy && ss->filters && copy[0]) {
        char *save = NULL;
        for (char *tok = strtok_r(copy, "\n", &save); tok; tok = strtok_r(NULL, "\n", &save))
            ss->filters[ss->n_filters++] = strdup(tok);
    }
    free(copy);
    st->subscriptions[st->n_subscriptions++] = ss;
    return ss;
}

static int s_status_saved(const journal_cursor_t *cur, void *arg)
{
    s_status_ctx_t *c = arg;
    if (strcmp(cur->agency, c->agency) != 0 || s_find(c->self, cur->agency, cur->name))
        return 0; /* another agency's, or live: reported from memory */
    Civibus__V1__SubscriptionStatus *ss = s_status_add(c, cur->agency, cur->name, cur->filters);
    if (!ss) {
        c->failed = 1;
        return 1;
    }
    ss->cursor = cur->acked;
    ss->behind_retention = subs_cursor_behind(c->self, cur->acked);
    return 0;
}

int subs_status(subs_t *self, const char *agency, Civibus__V1__StatusReply *status)
{
    s_status_ctx_t c = {.self = self, .agency = agency, .status = status};
    for (size_t i = 0; i < self->n; i++) {
        s_session_t *s = self->list[i];
        if (strcmp(s->agency, agency) != 0)
            continue;
        Civibus__V1__SubscriptionStatus *ss = s_status_add(&c, s->agency, s->name, s->filters_joined);
        if (!ss)
            return -1;
        ss->cursor = s->acked;
        ss->connected = true;
        ss->credit = s->credit;
        ss->in_flight = s->delivered - s->acked;
        ss->behind_retention = subs_cursor_behind(self, s->acked);
    }
    int rc = journal_cursor_each(self->journal, s_status_saved, &c);
    return (rc < 0 || c.failed) ? -1 : 0;
}

void subs_status_free(Civibus__V1__StatusReply *status)
{
    for (size_t i = 0; i < status->n_subscriptions; i++) {
        Civibus__V1__SubscriptionStatus *ss = status->subscriptions[i];
        for (size_t j = 0; j < ss->n_filters; j++)
            free(ss->filters[j]);
        free(ss->filters);
        free(ss->agency);
        free(ss->name);
        free(ss);
    }
    free(status->subscriptions);
    status->subscriptions = NULL;
    status->n_subscriptions = 0;
}

bool subs_cursor_behind(const subs_t *self, uint64_t cursor)
{
    return cursor + 1 < journal_first_seq(self->journal);
}

size_t subs_count(const subs_t *self)
{
    return self->n;
}

typedef struct {
    subs_t *self;
    subs_info_fn fn;
    void *arg;
} s_each_ctx_t;

static int s_each_saved(const journal_cursor_t *cur, void *arg)
{
    s_each_ctx_t *c = arg;
    if (s_find(c->self, cur->agency, cur->name))
        return 0; /* live: visited from memory */
    subs_info_t info = {.agency = cur->agency,
                        .name = cur->name,
                        .cursor = cur->acked,
                        .behind_retention = subs_cursor_behind(c->self, cur->acked)};
    return c->fn(&info, c->arg);
}

int subs_foreach(subs_t *self, subs_info_fn fn, void *arg)
{
    for (size_t i = 0; i < self->n; i++) {
        const s_session_t *s = self->list[i];
        subs_info_t info = {.agency = s->agency,
                            .name = s->name,
                            .connected = true,
                            .cursor = s->acked,
                            .in_flight = s->delivered - s->acked,
                            .credit = s->credit,
                            .behind_retention = subs_cursor_behind(self, s->acked)};
        int rc = fn(&info, arg);
        if (rc)
            return rc;
    }
    s_each_ctx_t c = {.self = self, .fn = fn, .arg = arg};
    return journal_cursor_each(self->journal, s_each_saved, &c);
}
