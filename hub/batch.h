/* batch - read a run of journal entries into Delivery messages.
 *
 * Subscriptions and replays both send events as repeated Delivery; this
 * module fills one such run from the journal, copying each event's bytes out
 * of LMDB before the read transaction ends, and frees it after sending.
 * A batch is bounded by an event count and by bytes, so one reply never grows
 * past what a peer was promised.
 */
#ifndef CIVIBUS_BATCH_H
#define CIVIBUS_BATCH_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "codec.h"
#include "journal.h"
#include "logfile.h"

#define BATCH_MAX_EVENTS 4096

/* Decides whether an entry of this type goes into the batch; NULL: all. */
typedef bool (*batch_match_fn)(const void *arg, const char *type, size_t type_len);

typedef struct {
    Civibus__V1__Delivery items[BATCH_MAX_EVENTS];
    Civibus__V1__Delivery *ptrs[BATCH_MAX_EVENTS]; /* what a message points to */
    uint8_t chains[BATCH_MAX_EVENTS][LOGFILE_CHAIN_LEN]; /* items[i].chain's bytes */
    size_t n;
    size_t bytes;
    uint64_t scanned_to; /* last seq looked at (matching or not); 0: none */
} batch_t;

/* Fill b (reset first) from seq `from`: at most max_events (<= BATCH_MAX_EVENTS)
 * matching events and about max_bytes, looking at no more than scan_max
 * entries. Returns JOURNAL_OK or a negative journal error. */
int batch_fill(batch_t *b, journal_t *journal, uint64_t from, size_t max_events, size_t max_bytes,
               size_t scan_max, batch_match_fn match, const void *match_arg);

/* Free the copied event bytes; the batch can be filled again. */
void batch_release(batch_t *b);

#endif
