/* chain - the hub's signed checkpoints over its log's hash chain.
 *
 * The journal links every entry to the one before with a SHA-256 chain hash;
 * this module vouches for the head of that chain with the hub's Ed25519
 * signing key, so that a log can be checked offline against the hub's public
 * key (`civibus verify`, docs/LOG.md). A checkpoint {seq, chain hash, time,
 * key id, signature} is written every `every_events` new entries, or after
 * `every_ms` if the log grew at all, and once more at a clean stop. Signing
 * costs about 50 µs, so it runs per checkpoint, never per event. Each
 * checkpoint is also logged in full (seq, time, chain hash, key id,
 * signature) as a witness line (proto/logfile.h), so that a log shipped off
 * the host carries them. The journal keeps the checkpoints
 * (journal_checkpoint_last answers a CheckpointRequest and the metrics).
 *
 * Single-threaded, used by the router's loop.
 */
#ifndef CIVIBUS_CHAIN_H
#define CIVIBUS_CHAIN_H

#include <stdint.h>

#include "journal.h"
#include "logfile.h"

typedef struct chain chain_t;

/* Load the secret key at key_path (an Ed25519 PEM file, mode 0600, made by
 * `civibus keygen --hub`) and find the journal's last checkpoint. The
 * journal is borrowed and must outlive the chain. NULL on error (logged). */
chain_t *chain_new(journal_t *journal, const char *key_path, uint64_t every_events, uint64_t every_ms);
/* Free (the key's memory is cleared); NULL-safe; nulls *self_p. */
void chain_destroy(chain_t **self_p);

/* Write a checkpoint when one is due at now_ms (a monotonic clock).
 * NULL-safe (no signing key: nothing to do). A failure is logged and retried
 * at the next call; returns 0, or a journal_err / crypto_err code. */
int chain_tick(chain_t *self, int64_t now_ms);

/* New intervals (a config reload), counted from the last checkpoint.
 * NULL-safe. */
void chain_set_interval(chain_t *self, uint64_t every_events, uint64_t every_ms);

/* Write a checkpoint now if the log grew since the last one (clean stop).
 * NULL-safe; returns as chain_tick. */
int chain_checkpoint(chain_t *self);

/* Check that the hub's signing key is published, and valid now, in
 * registry_dir's KEYFILE_HUB_SIGN_FILE, and log what is wrong (a key not
 * listed, revoked or expired: verifiers that read the registry would refuse
 * the checkpoints) or a key_expiring warning within warn_days (0: none).
 * Called at start, after a reload and daily. NULL-safe. */
void chain_check_published(const chain_t *self, const char *registry_dir, uint64_t warn_days);

#endif
