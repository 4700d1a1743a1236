/* subs - durable subscriptions: sessions, credit, cursors and delivery.
 *
 * Sessions live in a hash table keyed by agency and name (acks and credits
 * look them up at message rate) and in an array (the pump visits them all).
 * Invariant per session: acked <= delivered < next_seq; credit counts events
 * the peer still accepts; events (acked, delivered] are in flight. A rewind
 * sets delivered back to acked; events up to sent_hw went out before, so a
 * late ack up to sent_hw is still taken.
 *
 * Per subscription, in a second table that outlives sessions (s_stat_t):
 * the head (the oldest delivered, unacknowledged event) and how many counted
 * deliveries it had, the redriven dead letter being tried, the dead-letter
 * counts and the redelivery counter. The head is known by seq when its
 * attempt began with it: a window opened by it, or a pass that re-sent it.
 * After an ack moves the cursor with events still in flight, the head is
 * HEAD_UNKNOWN with one attempt; a failure (timeout, nack) finds it in the
 * log. A pass (after a rewind, or a new session) counts one more attempt for
 * its first event when that is the known head.
 *
 * Retention may delete entries a subscription has not been sent: a cursor
 * is never moved over them. A Subscribe from such a cursor, a SEQ or a TIME
 * before the log's start is refused with BEHIND_RETENTION; a live session
 * that retention overtakes is told so once, by an Error with the range
 * lost, and is sent nothing more until its consumer subscribes again with
 * an explicit start (FIRST or SEQ), which is logged. Retention may also
 * delete events in flight: a failed attempt then rewinds to a cursor before
 * the log's start, which the pump reports the same way (no dead letter is
 * made of an entry the log no longer holds).
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
#define HEAD_NONE 0
#define HEAD_UNKNOWN UINT64_MAX
#define REDELIVERY_LOG_EVERY_MS 10000 /* one redelivery line per subscription, at most */

typedef enum { CAUSE_ACK_TIMEOUT, CAUSE_NACK, CAUSE_SESSION_ENDED } s_cause_t;

static const char *const s_cause_names[] = {"ack_timeout", "nack", "session_ended"};

/* What the hub remembers of a subscription beyond its sessions. */
typedef struct s_stat {
    char agency[CODEC_AGENCY_MAX + 1];
    char name[CODEC_NAME_MAX + 1];
    uint64_t redeliveries;   /* deliveries with attempt > 1 since start */
    uint64_t dead_letters;   /* records in the journal */
    uint64_t redrive;        /* of them flagged for redrive */
    uint64_t head_seq;       /* HEAD_NONE, a seq, or HEAD_UNKNOWN */
    uint32_t head_attempts;  /* counted deliveries of the head */
    uint64_t rd_seq;         /* redriven dead letter being tried; 0: none */
    uint32_t rd_attempts;    /* its deliveries in this redrive */
    s_cause_t rd_cause;      /* what failed its last attempt (or will have: session_ended) */
    int64_t log_after_ms;    /* no redelivery line before this */
    uint64_t log_suppressed; /* redelivery lines not written since the last */
    struct s_stat *hnext;
} s_stat_t;

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
    s_stat_t *st;            /* the subscription's figures; owned by subs */
    uint64_t sent_hw;        /* highest seq sent on this session */
    bool pass;               /* the next send re-sends from the cursor (rewind, new session) */
    s_cause_t pass_cause;    /* why: what failed the attempt before it */
    bool marker;             /* a rewind marker is owed to the peer */
    bool rd_sent;            /* st->rd_seq is in flight */
    int64_t ack_deadline_ms; /* the attempt in flight fails then; 0: none in flight */
    int64_t resume_ms;       /* backoff: nothing is sent before this; 0: none */
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
    s_stat_t *stats[BUCKETS];
    uint64_t dead_letters_created; /* events given up since start, redriven ones again included */
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

static s_session_t *s_find(const subs_t *self, const char *agency, const char *name)
{
    for (s_session_t *s = self->buckets[s_hash(agency, name)]; s; s = s->hnext)
        if (strcmp(s->agency, agency) == 0 && strcmp(s->name, name) == 0)
            return s;
    return NULL;
}

static s_stat_t *s_stat_find(const subs_t *self, const char *agency, const char *name)
{
    for (s_stat_t *st = self->stats[s_hash(agency, name)]; st; st = st->hnext)
        if (strcmp(st->agency, agency) == 0 && strcmp(st->name, name) == 0)
            return st;
    return NULL;
}

/* The figures of agency/name, created when missing; NULL without memory
 * (or for names too long to be a subscription's). */
static s_stat_t *s_stat_get(subs_t *self, const char *agency, const char *name)
{
    s_stat_t *st = s_stat_find(self, agency, name);
    if (st || strlen(agency) > CODEC_AGENCY_MAX || strlen(name) > CODEC_NAME_MAX)
        return st;
    st = calloc(1, sizeof *st);
    if (!st)
        return NULL;
    snprintf(st->agency, sizeof st->agency, "%s", agency);
    snprintf(st->name, sizeof st->name, "%s", name);
    size_t b = s_hash(agency, name);
    st->hnext = self->stats[b];
    self->stats[b] = st;
    return st;
}

static int s_stat_count_one(const journal_dead_letter_t *dl, void *arg)
{
    s_stat_t *st = arg;
    st->dead_letters++;
    st->redrive += dl->redrive;
    return 0;
}

/* Count st's dead letters again from the journal. */
static void s_stat_recount(subs_t *self, s_stat_t *st)
{
    st->dead_letters = st->redrive = 0;
    int rc = journal_dead_letters_each(self->journal, st->agency, st->name, 0, s_stat_count_one, st);
    if (rc < 0)
        log_error("subs", "event=dead_letters_count_failed agency=%s subscription=%s error=\"%s\"", st->agency,
                  st->name, journal_strerror(rc));
}

static int s_stat_load_one(const journal_dead_letter_t *dl, void *arg)
{
    subs_t *self = arg;
    s_stat_t *st = s_stat_get(self, dl->agency, dl->name);
    if (!st)
        return JOURNAL_IO;
    return s_stat_count_one(dl, st);
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
    subs_set_opts(self, opts);
    /* A record that cannot be read costs its count, not the hub. */
    int rc = journal_dead_letters_each(journal, NULL, NULL, 0, s_stat_load_one, self);
    if (rc < 0)
        log_error("subs", "event=dead_letters_load_failed error=\"%s\"", journal_strerror(rc));
    uint64_t total = 0, subscriptions = 0, redrive = 0;
    for (size_t b = 0; b < BUCKETS; b++) {
        for (const s_stat_t *st = self->stats[b]; st; st = st->hnext) {
            total += st->dead_letters;
            redrive += st->redrive;
            subscriptions++;
        }
    }
    log_info("subs", "event=dead_letters_loaded dead_letters=%llu subscriptions=%llu redrive=%llu",
             (unsigned long long)total, (unsigned long long)subscriptions, (unsigned long long)redrive);
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
    for (size_t b = 0; b < BUCKETS; b++) {
        while (self->stats[b]) {
            s_stat_t *st = self->stats[b];
            self->stats[b] = st->hnext;
            free(st);
        }
    }
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
    s->st = s_stat_get(self, agency, req->name);
    if (!s->st) {
        code = CIVIBUS__V1__ERROR_CODE__INTERNAL;
        goto fail;
    }
    s->next_seq = next;
    s->acked = has_cursor ? saved : next - 1;
    s->delivered = next - 1;
    s->sent_hw = next - 1;
    /* The first send re-sends what an earlier session may have left in
     * flight: a head delivered before counts one more attempt. An explicit
     * start is a new beginning. */
    s->pass = true;
    s->pass_cause = CAUSE_SESSION_ENDED;
    if (req->start && req->start->kind != CIVIBUS__V1__START_POINT__KIND__CURSOR) {
        s->st->head_seq = HEAD_NONE;
        s->st->head_attempts = 0;
    }
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
    if (self->opts.max_attempts < 1)
        self->opts.max_attempts = 1;
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

/* A redriven dead letter is the operator's choice, not the filters': only
 * the policy decides whether it may still go out. */
static bool s_policy_allows(const void *arg, const char *type, size_t len)
{
    const s_match_t *m = arg;
    return !m->policy || policy_allows(m->policy, m->s->agency, POLICY_SUBSCRIBE, type, len, NULL);
}

/* ---- redelivery ---------------------------------------------------------- */

/* The wait before the attempt after `failed` failed ones. */
static int64_t s_backoff_ms(const subs_opts_t *o, uint32_t failed)
{
    int64_t d = o->backoff_ms;
    for (uint32_t i = 1; i < failed && d < o->backoff_max_ms; i++)
        d *= 2;
    return d < o->backoff_max_ms ? d : o->backoff_max_ms;
}

/* Send everything again from the cursor: the head first. */
static void s_rewind(s_session_t *s, s_cause_t cause)
{
    s->delivered = s->acked;
    s->next_seq = s->acked + 1;
    s->pass = true;
    s->pass_cause = cause;
    s->ack_deadline_ms = 0;
}

/* One line per subscription per REDELIVERY_LOG_EVERY_MS, counting the rest. */
static void s_log_redelivery(s_session_t *s, uint64_t seq, uint32_t attempt, s_cause_t cause, int64_t now)
{
    s_stat_t *st = s->st;
    if (now < st->log_after_ms) {
        st->log_suppressed++;
        return;
    }
    log_info("subs", "event=redelivery agency=%s subscription=%s seq=%llu attempt=%u cause=%s suppressed=%llu",
             s->agency, s->name, (unsigned long long)seq, attempt, s_cause_names[cause],
             (unsigned long long)st->log_suppressed);
    st->log_suppressed = 0;
    st->log_after_ms = now + REDELIVERY_LOG_EVERY_MS;
}

static const char *s_default_reason(s_cause_t cause)
{
    switch (cause) {
    case CAUSE_ACK_TIMEOUT: return "not acknowledged within ack_timeout_ms";
    case CAUSE_NACK: return "nacked";
    default: return "not acknowledged before its session ended";
    }
}

/* Record seq as a dead letter of s's subscription and move the cursor past
 * it, both in one synced transaction. Returns a journal code; on failure the
 * session is unchanged. */
static int s_dead_letter_head(subs_t *self, s_session_t *s, uint64_t seq, uint32_t attempts, s_cause_t cause,
                              const char *reason)
{
    if (!reason || !reason[0])
        reason = s_default_reason(cause);
    journal_dead_letter_t dl = {.agency = s->agency,
                                .name = s->name,
                                .seq = seq,
                                .attempts = attempts,
                                .redrive = false,
                                .dead_at = codec_now_us(),
                                .reason = reason};
    journal_cursor_t cur = {.agency = s->agency, .name = s->name, .acked = seq, .filters = s->filters_joined};
    int rc = journal_dead_letter_put(self->journal, &dl, &cur);
    char quoted[JOURNAL_REASON_MAX * 2 + 8];
    if (rc != JOURNAL_OK) {
        log_limited(LOG_ERROR, "subs", "subs.dead_letter", "event=dead_letter_failed agency=%s subscription=%s "
                    "seq=%llu error=\"%s\" effect=\"delivered again later\"", s->agency, s->name,
                    (unsigned long long)seq, journal_strerror(rc));
        return rc;
    }
    s->acked = seq;
    s->dirty = false;
    if (s->delivered < seq)
        s->delivered = seq;
    if (s->next_seq <= seq)
        s->next_seq = seq + 1;
    s->st->head_seq = HEAD_NONE;
    s->st->head_attempts = 0;
    s_stat_recount(self, s->st);
    self->dead_letters_created++;
    log_warn("subs", "event=dead_letter agency=%s subscription=%s seq=%llu attempts=%u cause=%s reason=%s", s->agency,
             s->name, (unsigned long long)seq, attempts, s_cause_names[cause],
             log_quote(reason, quoted, sizeof quoted));
    return JOURNAL_OK;
}

/* The oldest delivered, unacknowledged event of s, by scanning what is in
 * flight; 0 when none matches any more (the policy changed). */
static uint64_t s_find_head(subs_t *self, s_session_t *s)
{
    batch_t *b = &self->batch;
    s_match_t match = {.s = s, .policy = self->policy};
    uint64_t span = s->delivered - s->acked;
    int rc = batch_fill(b, self->journal, s->acked + 1, 1, DELIVER_MAX_BYTES, span < SCAN_MAX ? span : SCAN_MAX,
                        s_matches, &match);
    uint64_t seq = rc == JOURNAL_OK && b->n ? b->ptrs[0]->seq : 0;
    batch_release(b);
    return seq <= s->delivered ? seq : 0;
}

/* The attempt at s's head failed: deliver it again after a backoff, or make
 * it a dead letter once it had max_attempts deliveries. Nothing in flight:
 * nothing failed. Either way the peer is owed a rewind marker. */
static void s_fail_head(subs_t *self, s_session_t *s, s_cause_t cause, const char *reason)
{
    s->marker = true;
    s->ack_deadline_ms = 0;
    if (s->acked >= s->delivered)
        return;
    if (subs_cursor_behind(self, s->acked)) {
        /* Retention deleted entries after the cursor while they were in
         * flight: they cannot be sent again, nor recorded as dead letters.
         * The rewind leaves next_seq before the log's start, so the pump
         * tells the consumer it is behind retention. */
        s_rewind(s, cause);
        return;
    }
    s_stat_t *st = s->st;
    if (st->head_seq == HEAD_UNKNOWN || st->head_seq == HEAD_NONE || st->head_seq <= s->acked ||
        st->head_seq > s->delivered) {
        /* Its attempt began behind an event since acknowledged: it was sent
         * once; the log says which it is. */
        st->head_seq = s_find_head(self, s);
        st->head_attempts = st->head_seq ? 1 : 0;
    }
    int64_t delay = s_backoff_ms(&self->opts, st->head_attempts ? st->head_attempts : 1);
    if (st->head_seq && st->head_attempts >= self->opts.max_attempts) {
        if (s_dead_letter_head(self, s, st->head_seq, st->head_attempts, cause, reason) == JOURNAL_OK) {
            s_rewind(s, cause); /* what followed it comes again, fresh */
            s->resume_ms = 0;
            return;
        }
        /* Not recorded (storage): it stays in the stream, retried slowly. */
        delay = self->opts.backoff_max_ms;
    }
    s_rewind(s, cause);
    s->resume_ms = codec_mono_ms() + delay;
}

/* The redriven dead letter of s failed its last attempt: it is a dead letter
 * again, no longer flagged, with the new attempts and reason. */
static void s_redrive_dead(subs_t *self, s_session_t *s, s_cause_t cause, const char *reason)
{
    s_stat_t *st = s->st;
    journal_dead_letter_t dl;
    int rc = journal_dead_letter_get(self->journal, s->agency, s->name, st->rd_seq, &dl);
    if (!reason || !reason[0])
        reason = s_default_reason(cause);
    if (rc == JOURNAL_OK) {
        char kept[JOURNAL_REASON_MAX + 1];
        snprintf(kept, sizeof kept, "%s", reason);
        dl.attempts = st->rd_attempts;
        dl.redrive = false;
        dl.dead_at = codec_now_us();
        dl.reason = kept;
        rc = journal_dead_letter_put(self->journal, &dl, NULL);
    }
    if (rc == JOURNAL_OK) {
        char quoted[JOURNAL_REASON_MAX * 2 + 8];
        self->dead_letters_created++;
        log_warn("subs", "event=dead_letter agency=%s subscription=%s seq=%llu attempts=%u cause=%s redriven=1 "
                 "reason=%s", s->agency, s->name, (unsigned long long)st->rd_seq, st->rd_attempts,
                 s_cause_names[cause], log_quote(reason, quoted, sizeof quoted));
    } else if (rc != JOURNAL_NOTFOUND) { /* NOTFOUND: dropped meanwhile */
        log_limited(LOG_ERROR, "subs", "subs.dead_letter", "event=dead_letter_failed agency=%s subscription=%s "
                    "seq=%llu error=\"%s\" effect=\"redriven again later\"", s->agency, s->name,
                    (unsigned long long)st->rd_seq, journal_strerror(rc));
        s->resume_ms = codec_mono_ms() + self->opts.backoff_max_ms;
        return;
    }
    st->rd_seq = 0;
    st->rd_attempts = 0;
    s_stat_recount(self, st);
}

/* The attempt at the redriven dead letter in flight failed: try again after
 * a backoff, or put it back among the dead letters. */
static void s_fail_redrive(subs_t *self, s_session_t *s, s_cause_t cause, const char *reason)
{
    s->marker = true;
    s->ack_deadline_ms = 0;
    s->rd_sent = false;
    s->st->rd_cause = cause;
    if (s->st->rd_attempts < self->opts.max_attempts)
        s->resume_ms = codec_mono_ms() + s_backoff_ms(&self->opts, s->st->rd_attempts);
    else
        s_redrive_dead(self, s, cause, reason);
}

/* The redriven dead letter in flight was acknowledged: it is done. */
static void s_redrive_done(subs_t *self, s_session_t *s)
{
    s_stat_t *st = s->st;
    uint64_t seq = st->rd_seq;
    uint8_t outcome = JOURNAL_DL_MISSING;
    journal_dl_change_t c = {.agency = s->agency, .name = s->name, .drop = true, .seqs = &seq, .n = 1,
                             .outcome = &outcome};
    int rc = journal_dead_letters_change(self->journal, &c);
    if (rc != JOURNAL_OK) {
        /* Still flagged: it is delivered again, and acknowledged again. */
        log_limited(LOG_ERROR, "subs", "subs.dead_letter", "event=redrive_clear_failed agency=%s subscription=%s "
                    "seq=%llu error=\"%s\"", s->agency, s->name, (unsigned long long)seq, journal_strerror(rc));
    } else {
        log_info("subs", "event=redrive_done agency=%s subscription=%s seq=%llu attempts=%u", s->agency, s->name,
                 (unsigned long long)seq, st->rd_attempts);
    }
    s->rd_sent = false;
    s->ack_deadline_ms = 0;
    st->rd_seq = 0;
    st->rd_attempts = 0;
    s_stat_recount(self, st);
}

/* ---- acks ------------------------------------------------------------------ */

/* A cumulative ack of seq on the session's stream. */
static void s_apply_ack(subs_t *self, s_session_t *s, uint64_t seq)
{
    /* Events sent before a rewind were delivered all the same: a late ack
     * for them still counts. An ack cannot cover what was never sent. */
    uint64_t top = s->sent_hw > s->delivered ? s->sent_hw : s->delivered;
    if (seq > top)
        seq = top;
    s_stat_t *st = s->st;
    if (seq > s->acked) {
        s->acked = seq;
        s->dirty = true;
        if (s->delivered < seq)
            s->delivered = seq;
        if (s->next_seq <= seq)
            s->next_seq = seq + 1;
        bool head_acked = st->head_seq == HEAD_UNKNOWN || st->head_seq <= seq;
        if (s->acked < s->delivered) {
            if (head_acked) { /* the next in flight had one delivery */
                st->head_seq = HEAD_UNKNOWN;
                st->head_attempts = 1;
            }
            s->ack_deadline_ms = codec_mono_ms() + self->opts.ack_timeout_ms;
        } else {
            s->ack_deadline_ms = 0;
            if (head_acked) {
                st->head_seq = HEAD_NONE;
                st->head_attempts = 0;
                s->resume_ms = 0; /* acknowledged late, after all: no backoff */
            }
        }
    }
    if (s->acked == s->delivered && s->next_seq - 1 > s->acked) {
        /* Everything sent is acknowledged and what was scanned after it did
         * not match: the cursor moves past it, so lag means unread events. */
        s->acked = s->delivered = s->next_seq - 1;
        s->dirty = true;
    }
}

Civibus__V1__ErrorCode subs_ack(subs_t *self, const char *agency, const wire_peer_t *peer, const char *name,
                                uint64_t seq)
{
    s_session_t *s = s_session_of(self, agency, peer, name);
    if (!s)
        return CIVIBUS__V1__ERROR_CODE__UNKNOWN_SUBSCRIPTION;
    if (s->rd_sent && seq == s->st->rd_seq)
        s_redrive_done(self, s);
    else
        s_apply_ack(self, s, seq);
    return CIVIBUS__V1__ERROR_CODE__OK;
}

Civibus__V1__ErrorCode subs_nack(subs_t *self, const char *agency, const wire_peer_t *peer, const char *name,
                                 uint64_t seq, const char *reason)
{
    s_session_t *s = s_session_of(self, agency, peer, name);
    if (!s)
        return CIVIBUS__V1__ERROR_CODE__UNKNOWN_SUBSCRIPTION;
    if (s->rd_sent && seq == s->st->rd_seq) {
        s_fail_redrive(self, s, CAUSE_NACK, reason);
        return CIVIBUS__V1__ERROR_CODE__OK;
    }
    if (seq > 0)
        s_apply_ack(self, s, seq - 1);
    s_fail_head(self, s, CAUSE_NACK, reason);
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

void subs_dead_letters_changed(subs_t *self, const char *agency, const char *name)
{
    s_stat_t *st = s_stat_find(self, agency, name);
    if (!st) {
        /* Only redrive and drop change records, and a subscription with any
         * was counted at start or when it was recorded. */
        st = s_stat_get(self, agency, name);
        if (!st)
            return;
    }
    s_stat_recount(self, st);
}

/* ---- delivery ---------------------------------------------------------------- */

/* Send one Deliver of n events (none: a rewind marker) to s. */
static int s_send(subs_t *self, s_session_t *s, Civibus__V1__Delivery **events, size_t n)
{
    Civibus__V1__Deliver dl = CIVIBUS__V1__DELIVER__INIT;
    dl.subscription = s->name;
    dl.n_events = n;
    dl.events = events;
    Civibus__V1__HubMessage msg = CIVIBUS__V1__HUB_MESSAGE__INIT;
    msg.body_case = CIVIBUS__V1__HUB_MESSAGE__BODY_DELIVER;
    msg.deliver = &dl;
    return wire_send(self->router, &s->peer, &msg);
}

/* Note a send's outcome: busy sessions are retried later, gone ones end. */
static bool s_sent(s_session_t *s, int rc, bool *gone)
{
    if (rc == WIRE_OK) {
        s->busy = false;
        return true;
    }
    if (rc == WIRE_BUSY)
        s->busy = true;
    else
        *gone = true;
    return false;
}

typedef struct {
    uint64_t seq; /* first flagged record; 0: none */
} s_first_redrive_t;

static int s_first_redrive(const journal_dead_letter_t *dl, void *arg)
{
    s_first_redrive_t *f = arg;
    if (!dl->redrive)
        return 0;
    f->seq = dl->seq;
    return 1;
}

/* Deliver the lowest dead letter flagged for redrive, alone and after a
 * rewind marker (the consumer has seen it, or later events, before).
 * Returns events sent. */
static size_t s_pump_redrive(subs_t *self, s_session_t *s, int64_t now, bool *gone)
{
    s_stat_t *st = s->st;
    s_first_redrive_t f = {0};
    int rc = journal_dead_letters_each(self->journal, s->agency, s->name, 0, s_first_redrive, &f);
    if (rc < 0) {
        log_limited(LOG_ERROR, "subs", "subs.scan", "event=scan_failed subscription=%s error=\"%s\"", s->name,
                    journal_strerror(rc));
        s->resume_ms = now + BUSY_RETRY_MS;
        return 0;
    }
    if (f.seq == 0) {
        s_stat_recount(self, st); /* dropped meanwhile */
        return 0;
    }
    if (f.seq != st->rd_seq) {
        st->rd_seq = f.seq;
        st->rd_attempts = 0;
    }
    if (st->rd_attempts >= self->opts.max_attempts) {
        /* Its last delivery went out on a session that ended without an ack. */
        s_redrive_dead(self, s, st->rd_cause, NULL);
        return 0;
    }
    batch_t *b = &self->batch;
    s_match_t match = {.s = s, .policy = self->policy};
    rc = batch_fill(b, self->journal, f.seq, 1, DELIVER_MAX_BYTES, 1, s_policy_allows, &match);
    size_t sent = 0;
    if (rc < 0) {
        log_limited(LOG_ERROR, "subs", "subs.scan", "event=scan_failed subscription=%s error=\"%s\"", s->name,
                    journal_strerror(rc));
        s->resume_ms = now + BUSY_RETRY_MS;
        goto done;
    }
    if (b->n == 0 || b->ptrs[0]->seq != f.seq) {
        /* Gone from the log, or the policy withholds it now: it stays a dead
         * letter, no longer flagged. */
        const char *why = b->scanned_to == f.seq ? "withheld_by_policy" : "event_gone";
        journal_dead_letter_t dl;
        rc = journal_dead_letter_get(self->journal, s->agency, s->name, f.seq, &dl);
        if (rc == JOURNAL_OK) {
            char kept[JOURNAL_REASON_MAX + 1];
            snprintf(kept, sizeof kept, "%s", dl.reason);
            dl.reason = kept;
            dl.redrive = false;
            rc = journal_dead_letter_put(self->journal, &dl, NULL);
        }
        log_warn("subs", "event=redrive_skipped agency=%s subscription=%s seq=%llu reason=%s", s->agency, s->name,
                 (unsigned long long)f.seq, why);
        if (rc != JOURNAL_OK && rc != JOURNAL_NOTFOUND)
            s->resume_ms = now + self->opts.backoff_max_ms;
        st->rd_seq = 0;
        st->rd_attempts = 0;
        s_stat_recount(self, st);
        goto done;
    }
    /* The consumer has had this seq, or later ones, before: a marker tells
     * it to take this one all the same. */
    if (!s_sent(s, s_send(self, s, NULL, 0), gone))
        goto done;
    b->items[0].attempt = st->rd_attempts + 1;
    if (!s_sent(s, s_send(self, s, b->ptrs, 1), gone))
        goto done;
    st->rd_attempts++;
    s->rd_sent = true;
    s->credit--;
    s->ack_deadline_ms = now + self->opts.ack_timeout_ms;
    if (st->rd_attempts > 1) {
        st->redeliveries++;
        s_log_redelivery(s, f.seq, st->rd_attempts, st->rd_cause, now);
    }
    /* Should its session end before an answer, that is what failed it. */
    st->rd_cause = CAUSE_SESSION_ENDED;
    sent = 1;
done:
    batch_release(b);
    return sent;
}

/* The first event of a pass: count its attempt when it is the head again.
 * An event that was only in flight behind an acknowledged one when its
 * session ended (HEAD_UNKNOWN) starts afresh: the consumer may never have
 * looked at it, and a consumer stopping with events queued is no failure.
 * Returns the attempt, or 0 when it is past max_attempts and became a dead
 * letter instead (the cursor is past it). */
static uint32_t s_pass_attempt(subs_t *self, s_session_t *s, uint64_t seq, int64_t now)
{
    s_stat_t *st = s->st;
    uint32_t n = st->head_seq == seq ? st->head_attempts + 1 : 1;
    if (n > self->opts.max_attempts &&
        s_dead_letter_head(self, s, seq, n - 1, s->pass_cause, NULL) == JOURNAL_OK)
        return 0; /* the pass goes on with what follows, fresh */
    s->pass = false;
    st->head_seq = seq;
    st->head_attempts = n;
    if (n > 1) {
        st->redeliveries++;
        s_log_redelivery(s, seq, n, s->pass_cause, now);
    }
    return n;
}

/* One Deliver to one session. Returns events sent. */
static size_t s_pump_one(subs_t *self, s_session_t *s, uint64_t last, int64_t now, bool *gone)
{
    if (s->marker) {
        if (!s_sent(s, s_send(self, s, NULL, 0), gone))
            return 0;
        s->marker = false;
    }
    if (s->resume_ms && now < s->resume_ms)
        return 0;
    s->resume_ms = 0;
    if (s->rd_sent || s->credit == 0)
        return 0;
    if (s->st->redrive) {
        /* Redriven dead letters go first, once what is in flight is done. */
        return s->acked == s->delivered ? s_pump_redrive(self, s, now, gone) : 0;
    }
    if (s->next_seq > last)
        return 0;
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
    bool opening = s->acked == s->delivered; /* this send opens the window */
    uint32_t attempt = 1;
    if (s->pass) {
        attempt = s_pass_attempt(self, s, b->ptrs[0]->seq, now);
        if (attempt == 0)
            goto done; /* dead-lettered: the next pump goes on after it */
    } else if (opening) {
        s->st->head_seq = b->ptrs[0]->seq;
        s->st->head_attempts = 1;
    }
    for (size_t i = 0; i < b->n; i++)
        b->ptrs[i]->attempt = 1;
    b->ptrs[0]->attempt = attempt;
    if (s_sent(s, s_send(self, s, b->ptrs, b->n), gone)) {
        uint64_t last_sent = b->ptrs[b->n - 1]->seq;
        s->delivered = last_sent;
        s->next_seq = last_sent + 1;
        if (last_sent > s->sent_hw)
            s->sent_hw = last_sent;
        s->credit -= (uint32_t)b->n;
        if (opening)
            s->ack_deadline_ms = now + self->opts.ack_timeout_ms;
        sent = b->n;
    }
done:
    batch_release(b);
    return sent;
}

/* Could the pump send s anything now? */
static bool s_ready(const s_session_t *s, uint64_t last, int64_t now)
{
    if (s->marker)
        return true;
    if (s->credit == 0 || s->rd_sent || (s->resume_ms && now < s->resume_ms))
        return false;
    if (s->st->redrive)
        return s->acked == s->delivered;
    return s->next_seq <= last;
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
        if (!s->behind_to && s->ack_deadline_ms && now >= s->ack_deadline_ms) {
            if (s->rd_sent)
                s_fail_redrive(self, s, CAUSE_ACK_TIMEOUT, NULL);
            else
                s_fail_head(self, s, CAUSE_ACK_TIMEOUT, NULL);
        }
        /* After the timeout: a rewind to a cursor retention overtook is
         * reported here, not skipped over. */
        if (s_behind(self, s, first, &gone)) {
            if (gone)
                s_remove(self, s, "peer_gone");
            else
                i++;
            continue;
        }
        if (!s_ready(s, last, now)) {
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
        total += s_pump_one(self, s, last, now, &gone);
        if (s->busy)
            s->retry_at_ms = now + BUSY_RETRY_MS;
        if (gone) {
            s_remove(self, s, "peer_gone");
            continue; /* list[i] now holds another session */
        }
        if (s_ready(s, last, now)) {
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
    const s_stat_t *st = s_stat_find(c->self, cur->agency, cur->name);
    if (st) {
        ss->redeliveries = st->redeliveries;
        ss->dead_letters = st->dead_letters;
    }
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
        ss->in_flight = s->delivered - s->acked + s->rd_sent;
        ss->redeliveries = s->st->redeliveries;
        ss->dead_letters = s->st->dead_letters;
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

uint64_t subs_dead_letter_count(const subs_t *self, const char *agency, const char *name)
{
    const s_stat_t *st = s_stat_find(self, agency, name);
    return st ? st->dead_letters : 0;
}

uint64_t subs_dead_letters_created(const subs_t *self)
{
    return self->dead_letters_created;
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
    /* Every subscription with figures has a saved cursor: a session saves
     * one when it opens, and a dead letter is stored with one. */
    const s_stat_t *st = s_stat_find(c->self, cur->agency, cur->name);
    if (st) {
        info.redeliveries = st->redeliveries;
        info.dead_letters = st->dead_letters;
    }
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
                            .in_flight = s->delivered - s->acked + s->rd_sent,
                            .credit = s->credit,
                            .redeliveries = s->st->redeliveries,
                            .dead_letters = s->st->dead_letters,
                            .behind_retention = subs_cursor_behind(self, s->acked)};
        int rc = fn(&info, arg);
        if (rc)
            return rc;
    }
    s_each_ctx_t c = {.self = self, .fn = fn, .arg = arg};
    return journal_cursor_each(self->journal, s_each_saved, &c);
}
