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
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "codec.h"
#include "crypto.h"
#include "keyfile.h"
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
    /* Everything a verifier needs, in the form `civibus verify --witness`
     * reads: a log shipped off the host keeps the checkpoints with it. */
    char line[LOGFILE_WITNESS_LEN];
    logfile_witness_format(&cp, line);
    log_info("chain", "%s", line);
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

void chain_check_published(const chain_t *self, const char *registry_dir, uint64_t warn_days)
{
    if (!self)
        return;
    char path[4096], err[512], quoted[600];
    snprintf(path, sizeof path, "%s/%s", registry_dir, KEYFILE_HUB_SIGN_FILE);
    if (access(path, F_OK) != 0) {
        log_info("chain", "event=signing_key_not_in_registry file=%s key_id=%s", log_quote(path, quoted, sizeof quoted),
                 self->key_id);
        return;
    }
    keyfile_hub_t *hub = malloc(sizeof *hub);
    if (!hub)
        return;
    if (keyfile_read_hub_sign(path, hub, err, sizeof err) != KEYFILE_OK) {
        log_warn("chain", "event=hub_sign_keys_invalid error=%s effect=\"verifiers cannot read the hub's signing keys\"",
                 log_quote(err, quoted, sizeof quoted));
        goto done;
    }
    uint8_t pub[CRYPTO_PUB_LEN];
    crypto_key_public(self->key, pub);
    const keyfile_sign_t *k = NULL;
    for (int i = 0; i < hub->n_sign && !k; i++)
        if (memcmp(hub->sign[i].pub, pub, sizeof pub) == 0)
            k = &hub->sign[i];
    int64_t now = codec_now_us() / 1000000;
    if (!k) {
        log_warn("chain", "event=signing_key_unpublished key_id=%s file=%s effect=\"verifiers that read the registry "
                 "refuse this hub's checkpoints\" fix=\"civibus registry rotate --hub\"",
                 self->key_id, log_quote(path, quoted, sizeof quoted));
        goto done;
    }
    keyfile_status_t st = keyfile_sign_status(k, now);
    if (st != KEYFILE_VALID) {
        log_error("chain", "event=signing_key_%s key_id=%s effect=\"verifiers refuse the checkpoints signed from now "
                  "on\" fix=\"sign with a valid key: civibus registry rotate --hub, then signing_key\"",
                  keyfile_status_name(st), self->key_id);
        goto done;
    }
    char when[KEYFILE_TIME_LEN] = "-";
    if (k->not_after != KEYFILE_FOREVER)
        keyfile_time_format(k->not_after, when, sizeof when);
    if (warn_days && k->not_after != KEYFILE_FOREVER && k->not_after - now <= (int64_t)warn_days * 24 * 3600)
        log_warn("chain", "event=key_expiring agency=- key=%s not_after=%s days=%" PRId64 " kind=hub_sign",
                 self->key_id, when, (k->not_after - now) / (24 * 3600));
    else
        log_info("chain", "event=signing_key_published key_id=%s not_after=%s", self->key_id, when);
done:
    free(hub);
}
