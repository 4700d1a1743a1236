/* chain - the hub's signed checkpoints over its log's hash chain.
 *
 * Checkpoints go into the journal in their own small synced transaction,
 * after the batch that grew the log has committed: the chain head they sign
 * is then durable, and a failed checkpoint never costs a batch. The cached
 * "last checkpoint" moves only once journal_checkpoint_put succeeded, so a
 * failure is simply retried at the next tick.
 */
#include "chain.h"

#include <inttypes.h>
#include <stdlib.h>
#include <string.h>

#include "codec.h"
#include "crypto.h"
#include "log.h"
#include "logfile.h"

struct chain {
    journal_t *journal; /* borrowed */
    crypto_key_t *key;
    char key_id[CRYPTO_KEYID_HEX];
    uint64_t every_events;
    int64_t every_ms;
    uint64_t last_cp_seq; /* seq of the last checkpoint written (0: none) */
    int64_t last_cp_ms;   /* when it was written (monotonic), or start time */
    int64_t retry_ms;     /* after a failure, no new attempt before this */
};

/* A failing disk is not helped by a signature per loop turn. */
#define RETRY_MS 1000

chain_t *chain_new(journal_t *journal, const char *key_path, uint64_t every_events, uint64_t every_ms)
{
    chain_t *self = calloc(1, sizeof *self);
    if (!self)
        return NULL;
    self->journal = journal;
    self->every_events = every_events ? every_events : 1;
    self->every_ms = (int64_t)every_ms;
    char err[512], quoted[600];
    int rc = crypto_key_read_secret(key_path, &self->key, err, sizeof err);
    if (rc != CRYPTO_OK) {
        log_error("chain", "event=signing_key_invalid error=%s", log_quote(err, quoted, sizeof quoted));
        goto free_self;
    }
    crypto_key_id_hex(self->key, self->key_id);
    logfile_checkpoint_t cp;
    rc = journal_checkpoint_last(journal, &cp);
    if (rc == JOURNAL_OK)
        self->last_cp_seq = cp.seq;
    else if (rc != JOURNAL_NOTFOUND)
        goto free_key;
    self->last_cp_ms = codec_mono_ms();
    log_info("chain", "event=signing key_id=%s every_events=%" PRIu64 " every_ms=%" PRIu64
             " last_checkpoint=%" PRIu64, self->key_id, self->every_events, every_ms, self->last_cp_seq);
    return self;
free_key:
    crypto_key_destroy(&self->key);
free_self:
    free(self);
    return NULL;
}

void chain_destroy(chain_t **self_p)
{
    if (!self_p || !*self_p)
        return;
    crypto_key_destroy(&(*self_p)->key);
    free(*self_p);
    *self_p = NULL;
}

static int s_write(chain_t *self, int64_t now_ms)
{
    uint64_t seq = journal_last_seq(self->journal);
    logfile_checkpoint_t cp = {.seq = seq, .time = codec_now_us()};
    journal_chain_head(self->journal, cp.chain);
    int rc = logfile_checkpoint_sign(&cp, self->key);
    if (rc != CRYPTO_OK) {
        log_limited(LOG_ERROR, "chain", "chain.sign", "event=checkpoint_failed seq=%" PRIu64 " error=\"%s\"", seq,
                    crypto_strerror(rc));
        self->retry_ms = now_ms + RETRY_MS;
        return rc;
    }
    rc = journal_checkpoint_put(self->journal, &cp);
    if (rc != JOURNAL_OK) {
        log_limited(LOG_ERROR, "chain", "chain.put", "event=checkpoint_failed seq=%" PRIu64 " error=\"%s\"", seq,
                    journal_strerror(rc));
        self->retry_ms = now_ms + RETRY_MS;
        return rc;
    }
    self->last_cp_seq = seq;
    self->last_cp_ms = now_ms;
    char hex[2 * LOGFILE_CHAIN_LEN + 1];
    crypto_hex(cp.chain, sizeof cp.chain, hex);
    log_debug("chain", "event=checkpoint seq=%" PRIu64 " chain=%s key_id=%s", seq, hex, self->key_id);
    return 0;
}

int chain_tick(chain_t *self, int64_t now_ms)
{
    if (!self)
        return 0;
    uint64_t last = journal_last_seq(self->journal);
    if (last <= self->last_cp_seq || now_ms < self->retry_ms)
        return 0;
    if (last - self->last_cp_seq >= self->every_events || now_ms - self->last_cp_ms >= self->every_ms)
        return s_write(self, now_ms);
    return 0;
}

void chain_set_interval(chain_t *self, uint64_t every_events, uint64_t every_ms)
{
    if (!self)
        return;
    self->every_events = every_events ? every_events : 1;
    self->every_ms = (int64_t)every_ms;
}

int chain_checkpoint(chain_t *self)
{
    if (!self || journal_last_seq(self->journal) <= self->last_cp_seq)
        return 0;
    return s_write(self, codec_mono_ms());
}
