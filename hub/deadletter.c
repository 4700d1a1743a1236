/* deadletter - the dead-letter requests of the protocol: list, redrive, drop.
 *
 * A list reads one page of records (one more than asked, to know whether
 * another page follows), then the log entry of each, in separate short read
 * transactions: a journal callback may not call into the journal. A dead
 * letter whose entry retention removed is kept and reported as gone (a dead
 * letter does not pin the log). A redrive or drop is one synced write.
 */
#include "deadletter.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "log.h"

typedef Civibus__V1__ErrorCode s_code_t;
#define C(x) CIVIBUS__V1__ERROR_CODE__##x

/* Strings left unset hold protobuf-c's shared empty string, not ours. */
static void s_free_string(char *s)
{
    if (s != protobuf_c_empty_string)
        free(s);
}

typedef struct {
    Civibus__V1__DeadLettersReply *reply;
    size_t want; /* records to collect: the page and one more */
    int failed;
} s_page_t;

static int s_collect(const journal_dead_letter_t *dl, void *arg)
{
    s_page_t *p = arg;
    Civibus__V1__DeadLettersReply *r = p->reply;
    Civibus__V1__DeadLetter *d = calloc(1, sizeof *d);
    if (!d) {
        p->failed = 1;
        return 1;
    }
    civibus__v1__dead_letter__init(d);
    d->seq = dl->seq;
    d->attempts = dl->attempts;
    d->dead_at = dl->dead_at;
    d->redrive = dl->redrive;
    d->reason = strdup(dl->reason);
    r->dead_letters[r->n_dead_letters++] = d;
    if (!d->reason) {
        p->failed = 1;
        return 1;
    }
    return r->n_dead_letters == p->want ? 1 : 0;
}

typedef struct {
    Civibus__V1__DeadLetter *d;
    const policy_t *policy;
    const char *agency;
    int failed;
} s_entry_t;

/* Fill a listed dead letter from the first entry at or after its seq. */
static int s_visit_entry(const journal_record_t *rec, void *arg)
{
    s_entry_t *e = arg;
    Civibus__V1__DeadLetter *d = e->d;
    if (rec->seq != d->seq) {
        d->gone = true;
        return 1;
    }
    d->received_at = rec->received_at;
    /* The policy may have narrowed since: what an agency may no longer
     * receive it no longer sees described either. */
    if (e->policy && !policy_allows(e->policy, e->agency, POLICY_SUBSCRIBE, rec->type, rec->type_len, NULL))
        return 1;
    d->type = strndup(rec->type, rec->type_len);
    d->source = strndup(rec->source, rec->source_len);
    d->event_id = strndup(rec->event_id, rec->event_id_len);
    if (!d->type || !d->source || !d->event_id)
        e->failed = 1;
    return 1;
}

static s_code_t s_list(journal_t *journal, subs_t *subs, const policy_t *policy, const char *agency,
                       const Civibus__V1__DeadLettersRequest *req, Civibus__V1__DeadLettersReply *reply,
                       char *reason, size_t reason_len)
{
    size_t limit = req->limit ? req->limit : DEADLETTER_LIST_DEFAULT;
    if (limit > DEADLETTER_LIST_MAX)
        limit = DEADLETTER_LIST_MAX;
    reply->dead_letters = calloc(limit + 1, sizeof *reply->dead_letters);
    if (!reply->dead_letters) {
        snprintf(reason, reason_len, "hub out of memory; retry later");
        return C(INTERNAL);
    }
    s_page_t page = {.reply = reply, .want = limit + 1};
    int rc = journal_dead_letters_each(journal, agency, req->subscription, req->after_seq, s_collect, &page);
    if (rc < 0 || page.failed) {
        snprintf(reason, reason_len, "cannot read the dead letters");
        return C(INTERNAL);
    }
    if (reply->n_dead_letters > limit) {
        /* The extra one only says that another page follows. */
        Civibus__V1__DeadLetter *extra = reply->dead_letters[--reply->n_dead_letters];
        s_free_string(extra->reason);
        free(extra);
        reply->next_after_seq = reply->dead_letters[limit - 1]->seq;
    }
    for (size_t i = 0; i < reply->n_dead_letters; i++) {
        Civibus__V1__DeadLetter *d = reply->dead_letters[i];
        s_entry_t e = {.d = d, .policy = policy, .agency = agency};
        rc = journal_scan(journal, d->seq, 1, s_visit_entry, &e);
        if (rc == JOURNAL_OK) /* nothing at or after seq */
            d->gone = true;
        else if (rc < 0 || e.failed) {
            snprintf(reason, reason_len, "cannot read the log");
            return C(INTERNAL);
        }
    }
    reply->total = subs_dead_letter_count(subs, agency, req->subscription);
    return C(OK);
}

static s_code_t s_change(journal_t *journal, subs_t *subs, const char *agency,
                         const Civibus__V1__DeadLettersRequest *req, Civibus__V1__DeadLettersReply *reply,
                         char *reason, size_t reason_len)
{
    bool drop = req->op == CIVIBUS__V1__DEAD_LETTERS_REQUEST__OP__DROP;
    const char *op = drop ? "drop" : "redrive";
    if (req->all == (req->n_seqs > 0)) {
        snprintf(reason, reason_len, "a %s names seqs or sets all, not both and not neither", op);
        return C(BAD_REQUEST);
    }
    if (req->n_seqs > DEADLETTER_SEQS_MAX) {
        snprintf(reason, reason_len, "a %s may name at most %d seqs", op, DEADLETTER_SEQS_MAX);
        return C(BAD_REQUEST);
    }
    for (size_t i = 0; i < req->n_seqs; i++) {
        if (req->seqs[i] == 0) {
            snprintf(reason, reason_len, "sequence numbers start at 1");
            return C(BAD_REQUEST);
        }
    }
    uint8_t *outcome = calloc(req->n_seqs ? req->n_seqs : 1, sizeof *outcome);
    reply->not_found = calloc(req->n_seqs ? req->n_seqs : 1, sizeof *reply->not_found);
    reply->gone = calloc(DEADLETTER_SEQS_MAX, sizeof *reply->gone);
    if (!outcome || !reply->not_found || !reply->gone) {
        free(outcome);
        snprintf(reason, reason_len, "hub out of memory; retry later");
        return C(INTERNAL);
    }
    journal_dl_change_t c = {.agency = agency,
                             .name = req->subscription,
                             .drop = drop,
                             .seqs = req->n_seqs ? req->seqs : NULL,
                             .n = req->n_seqs,
                             .outcome = outcome,
                             .gone = reply->gone,
                             .gone_cap = DEADLETTER_SEQS_MAX};
    int rc = journal_dead_letters_change(journal, &c);
    if (rc != JOURNAL_OK) {
        free(outcome);
        bool full = rc == JOURNAL_FULL || rc == JOURNAL_NOSPACE;
        snprintf(reason, reason_len, "cannot %s dead letters: %s", op, journal_strerror(rc));
        return full ? C(STORAGE_FULL) : C(INTERNAL);
    }
    for (size_t i = 0; i < req->n_seqs; i++)
        if (outcome[i] == JOURNAL_DL_MISSING)
            reply->not_found[reply->n_not_found++] = req->seqs[i];
    free(outcome);
    reply->n_gone = c.n_gone;
    reply->affected = c.affected;
    reply->total = c.remaining;
    subs_dead_letters_changed(subs, agency, req->subscription);
    log_info("deadletter", "event=dead_letters_%s agency=%s subscription=%s affected=%llu not_found=%zu gone=%zu "
             "remaining=%llu", op, agency, req->subscription, (unsigned long long)c.affected, reply->n_not_found,
             reply->n_gone, (unsigned long long)c.remaining);
    return C(OK);
}

s_code_t deadletter_request(journal_t *journal, subs_t *subs, const policy_t *policy, const char *agency,
                            const Civibus__V1__DeadLettersRequest *req, Civibus__V1__DeadLettersReply *reply,
                            char *reason, size_t reason_len)
{
    reply->request_id = req->request_id;
    reply->subscription = req->subscription;
    if (!codec_name_valid(req->subscription)) {
        snprintf(reason, reason_len, "subscription name must be 1-64 characters of [A-Za-z0-9._-]");
        return C(BAD_REQUEST);
    }
    switch (req->op) {
    case CIVIBUS__V1__DEAD_LETTERS_REQUEST__OP__LIST:
        return s_list(journal, subs, policy, agency, req, reply, reason, reason_len);
    case CIVIBUS__V1__DEAD_LETTERS_REQUEST__OP__REDRIVE:
    case CIVIBUS__V1__DEAD_LETTERS_REQUEST__OP__DROP:
        return s_change(journal, subs, agency, req, reply, reason, reason_len);
    default:
        snprintf(reason, reason_len, "unknown dead-letter operation %d", (int)req->op);
        return C(BAD_REQUEST);
    }
}

void deadletter_reply_free(Civibus__V1__DeadLettersReply *reply)
{
    for (size_t i = 0; i < reply->n_dead_letters; i++) {
        Civibus__V1__DeadLetter *d = reply->dead_letters[i];
        s_free_string(d->reason);
        s_free_string(d->type);
        s_free_string(d->source);
        s_free_string(d->event_id);
        free(d);
    }
    free(reply->dead_letters);
    free(reply->not_found);
    free(reply->gone);
    reply->dead_letters = NULL;
    reply->n_dead_letters = 0;
    reply->not_found = NULL;
    reply->n_not_found = 0;
    reply->gone = NULL;
    reply->n_gone = 0;
}
