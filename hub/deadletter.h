/* deadletter - the dead-letter requests of the protocol: list, redrive, drop.
 *
 * A DeadLettersRequest names one subscription of the calling agency: the
 * agency is always the authenticated one, so an agency reaches only its own
 * subscriptions' dead letters. The records themselves live in the journal
 * (journal_dead_letter_*); redelivery and the delivery of redriven dead
 * letters belong to subs. This module checks a request, runs it against the
 * journal, tells subs what changed, and builds the reply (docs/PROTOCOL.md
 * §13.6). It holds no state.
 */
#ifndef CIVIBUS_DEADLETTER_H
#define CIVIBUS_DEADLETTER_H

#include <stddef.h>

#include "codec.h"
#include "journal.h"
#include "policy.h"
#include "subs.h"

#define DEADLETTER_LIST_DEFAULT 100 /* records per page when the request says 0 */
#define DEADLETTER_LIST_MAX 1000    /* records per page, at most */
#define DEADLETTER_SEQS_MAX 1000    /* seqs one redrive or drop may name */

/* Answer req of agency into *reply (initialised by the caller; its arrays
 * and strings are allocated here: free them with deadletter_reply_free, also
 * after a failure). policy (NULL: none) decides whether a listed dead
 * letter's type, source and event_id are shown. Returns OK, or BAD_REQUEST,
 * STORAGE_FULL or INTERNAL with a reason for people. */
Civibus__V1__ErrorCode deadletter_request(journal_t *journal, subs_t *subs, const policy_t *policy,
                                          const char *agency, const Civibus__V1__DeadLettersRequest *req,
                                          Civibus__V1__DeadLettersReply *reply, char *reason, size_t reason_len);

void deadletter_reply_free(Civibus__V1__DeadLettersReply *reply);

#endif
