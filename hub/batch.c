/* batch - read a run of journal entries into Delivery messages. */
#include "batch.h"

#include <stdlib.h>
#include <string.h>

typedef struct {
    batch_t *b;
    size_t max_events;
    size_t max_bytes;
    batch_match_fn match;
    const void *match_arg;
} s_fill_t;

static int s_visit(const journal_record_t *rec, void *arg)
{
    s_fill_t *f = arg;
    batch_t *b = f->b;
    b->scanned_to = rec->seq;
    if (f->match && !f->match(f->match_arg, rec->type, rec->type_len))
        return 0;
    Civibus__V1__Delivery *d = &b->items[b->n];
    civibus__v1__delivery__init(d);
    d->seq = rec->seq;
    d->received_at = rec->received_at;
    memcpy(b->chains[b->n], rec->chain, LOGFILE_CHAIN_LEN);
    d->chain.data = b->chains[b->n];
    d->chain.len = LOGFILE_CHAIN_LEN;
    d->event.data = malloc(rec->event_len ? rec->event_len : 1);
    if (!d->event.data)
        return JOURNAL_IO;
    memcpy(d->event.data, rec->event, rec->event_len);
    d->event.len = rec->event_len;
    b->ptrs[b->n++] = d;
    b->bytes += rec->event_len;
    return (b->n >= f->max_events || b->bytes >= f->max_bytes) ? 1 : 0;
}

int batch_fill(batch_t *b, journal_t *journal, uint64_t from, size_t max_events, size_t max_bytes,
               size_t scan_max, batch_match_fn match, const void *match_arg)
{
    b->n = 0;
    b->bytes = 0;
    b->scanned_to = 0;
    if (max_events > BATCH_MAX_EVENTS)
        max_events = BATCH_MAX_EVENTS;
    if (max_events == 0)
        return JOURNAL_OK;
    s_fill_t f = {.b = b, .max_events = max_events, .max_bytes = max_bytes, .match = match, .match_arg = match_arg};
    int rc = journal_scan(journal, from, scan_max, s_visit, &f);
    if (rc < 0) {
        batch_release(b);
        return rc;
    }
    return JOURNAL_OK;
}

void batch_release(batch_t *b)
{
    for (size_t i = 0; i < b->n; i++) {
        free(b->items[i].event.data);
        b->items[i].event.data = NULL;
    }
    b->n = 0;
    b->bytes = 0;
}
