/* verify - `civibus verify`: check the hub's log offline.
 *
 * Opens the log's LMDB files read-only (proto/logfile.h), so it runs beside
 * a live hub, on a copy, or on a backup, and never changes a byte. It
 * recomputes the hash chain from the first entry, compares every stored
 * chain hash, checks every checkpoint's Ed25519 signature with the hub's
 * signing public key, and names the first bad sequence number. A log whose
 * oldest entries retention deleted is checked from its anchor (the chain
 * hash of the last deleted entry, kept in the log's meta data). What a
 * passing check proves, and what it cannot, is in docs/LOG.md. --data takes
 * a data directory or a file written by `civibus backup`.
 *
 * --hub-key here is the hub's *signing* public key (hub-sign.pub), not the
 * CURVE key other commands take; so CIVIBUS_HUB_KEY is not consulted. It
 * is a PEM key or a list of keys with their validity (keyfile_hub_t); a
 * checkpoint counts when a key valid at its time signed it, so a log
 * signed by several keys in turn (rotation) verifies. --registry DIR instead
 * reads DIR/hub-sign.pub (KEYFILE_HUB_SIGN_FILE), where `civibus keygen
 * --hub --registry DIR` and `civibus registry rotate --hub` keep the list.
 * --witness FILE adds checkpoints kept outside the hub (witness.h): each
 * must be signed by a hub key and match the log, and a log shorter than one
 * of them was cut back. Those of entries retention deleted cannot be
 * compared any more; they are reported, not failed, since the witnessed
 * checkpoints after the anchor cover the same history.
 */
#include <errno.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "cli.h"
#include "keyfile.h"
#include "logfile.h"
#include "opts.h"
#include "witness.h"

enum { S_OPT_DATA = CLI_OPT_CMD, S_OPT_HUB_KEY, S_OPT_FROM, S_OPT_REGISTRY, S_OPT_WITNESS };

static const struct option s_longopts[] = {
    CLI_OPTS_HELP,
    {"data", required_argument, NULL, S_OPT_DATA},
    {"hub-key", required_argument, NULL, S_OPT_HUB_KEY},
    {"from", required_argument, NULL, S_OPT_FROM},
    {"registry", required_argument, NULL, S_OPT_REGISTRY},
    {"witness", required_argument, NULL, S_OPT_WITNESS},
    {NULL, 0, NULL, 0},
};

static void s_usage(void)
{
    printf("usage: civibus verify --data DIR|FILE (--hub-key FILE | --registry DIR)\n"
           "                      [--witness FILE] [--from SEQ]\n\n"
           "Check the hub's log offline: recompute its SHA-256 hash chain, compare every\n"
           "stored chain hash, verify every signed checkpoint with the hub's signing keys,\n"
           "and check that no sequence number is missing. Reads the LMDB files read-only;\n"
           "safe while the hub runs. See docs/LOG.md.\n\n"
           "Options:\n"
           "  --data DIR|FILE  the hub's data directory (its `data` setting), or a file\n"
           "                   written by civibus backup\n"
           "  --hub-key FILE   the hub's signing public key (hub-sign.pub from civibus\n"
           "                   keygen --hub, PEM), or a list of its keys with their validity\n"
           "                   (the registry's hub-sign.pub); a checkpoint counts when a key\n"
           "                   valid at the checkpoint's time signed it\n"
           "  --registry DIR   instead of --hub-key: the agency registry folder holding\n"
           "                   hub-sign.pub (civibus keygen --hub --registry, registry rotate --hub)\n"
           "  --witness FILE   checkpoints kept outside the hub (civibus checkpoint fetch, or\n"
           "                   the hub's own log): each must match the log; a log shorter\n"
           "                   than one of them was cut back\n"
           "  --from SEQ       start at SEQ, trusting the stored chain hash of SEQ-1\n"
           "                   (default: from the first entry: seq 1, or the first one\n"
           "                   retention kept, from its anchor)\n"
           "  --help           this text\n\n"
           "Prints `ok: N entries, M checkpoints, last seq S, last checkpoint C` (then\n"
           "`, first seq F` when retention deleted the entries before F, and with --witness\n"
           "`, W witnessed, last witnessed X`) and exits 0, or names the first bad\n"
           "sequence number and exits 1. Exit 4: the log, the keys or the witness file\n"
           "cannot be read; 2: usage.\n");
}

static double s_secs_since(const struct timespec *t0)
{
    struct timespec t1;
    clock_gettime(CLOCK_MONOTONIC, &t1);
    return (double)(t1.tv_sec - t0->tv_sec) + (double)(t1.tv_nsec - t0->tv_nsec) / 1e9;
}

int cmd_verify(int argc, char **argv)
{
    const char *data = NULL, *key_path = NULL, *registry = NULL, *witness_path = NULL;
    uint64_t from = 0;
    int c;
    while ((c = cli_getopt(argc, argv, s_longopts)) != -1) {
        switch (c) {
        case CLI_OPT_HELP: s_usage(); return CLI_EXIT_OK;
        case S_OPT_DATA: data = optarg; break;
        case S_OPT_HUB_KEY: key_path = optarg; break;
        case S_OPT_REGISTRY: registry = optarg; break;
        case S_OPT_WITNESS: witness_path = optarg; break;
        case S_OPT_FROM: {
            char *end;
            errno = 0;
            unsigned long long v = strtoull(optarg, &end, 10);
            if (errno || end == optarg || *end || optarg[0] == '-' || v == 0) {
                cli_err("verify: --from needs a sequence number >= 1, not '%s'", optarg);
                return CLI_EXIT_USAGE;
            }
            from = v;
            break;
        }
        default: return CLI_EXIT_USAGE;
        }
    }
    if (!data || (!key_path && !registry)) {
        cli_err("verify: --data DIR and one of --hub-key FILE and --registry DIR are required");
        return CLI_EXIT_USAGE;
    }
    char reg_key[4096];
    int rc = witness_keys_path("verify", key_path, registry, reg_key, sizeof reg_key, &key_path);
    if (rc != 0)
        return rc;
    keyfile_hub_t *keys = witness_keys_read("verify", key_path);
    if (!keys)
        return CLI_EXIT_FILE;
    char err[512];
    logfile_witness_t *witness = NULL;
    size_t n_witness = 0;
    logfile_t *log = NULL;
    rc = CLI_EXIT_FILE;
    if (witness_path && witness_read("verify", witness_path, false, &witness, &n_witness) != 0)
        goto done;
    log = logfile_open(data, err, sizeof err);
    if (!log) {
        cli_err("verify: %s", err);
        goto done;
    }
    struct timespec t0;
    clock_gettime(CLOCK_MONOTONIC, &t0);
    logfile_report_t rep;
    int lrc = logfile_verify(log, keys, from, witness, n_witness, &rep);
    double secs = s_secs_since(&t0);
    if (lrc == LOGFILE_OK) {
        printf("ok: %" PRIu64 " entries, %" PRIu64 " checkpoints, last seq %" PRIu64 ", last checkpoint %" PRIu64,
               rep.entries, rep.checkpoints, rep.last_seq, rep.last_checkpoint);
        if (rep.anchor_seq)
            printf(", first seq %" PRIu64, rep.first_seq);
        if (witness_path)
            printf(", %" PRIu64 " witnessed, last witnessed %" PRIu64, rep.witnessed, rep.last_witnessed);
        printf("\n");
        if (rep.anchor_seq)
            fprintf(stderr,
                    "civibus: verify: entries 1 to %" PRIu64 " were deleted by retention; the chain was checked "
                    "from the anchor kept with the log (the chain hash of seq %" PRIu64 "), which only a signed "
                    "or witnessed checkpoint after it vouches for\n",
                    rep.anchor_seq, rep.anchor_seq);
        if (witness_path && n_witness == 0)
            fprintf(stderr, "civibus: verify: %s holds no checkpoint\n", witness_path);
        if (rep.witness_deleted)
            fprintf(stderr,
                    "civibus: verify: %" PRIu64 " witnessed checkpoints are before the retained log (seq %" PRIu64
                    " and earlier were deleted by retention) and could not be compared\n",
                    rep.witness_deleted, rep.anchor_seq);
        if (rep.witness_skipped)
            fprintf(stderr, "civibus: verify: %" PRIu64 " witnessed checkpoints before seq %" PRIu64
                    " were not checked (--from)\n", rep.witness_skipped, from);
        if (rep.last_seq > rep.last_checkpoint)
            fprintf(stderr,
                    "civibus: verify: entries after seq %" PRIu64 " are chained but not yet covered by a "
                    "signed checkpoint\n",
                    rep.last_checkpoint);
        fprintf(stderr, "civibus: verify: checked in %.3f s\n", secs);
        rc = CLI_EXIT_OK;
    } else if (lrc == LOGFILE_TAMPERED) {
        printf("bad: seq %" PRIu64 ": %s\n", rep.bad_seq, rep.problem);
        printf("(%" PRIu64 " entries and %" PRIu64 " checkpoints before it verified)\n", rep.entries,
               rep.checkpoints);
        rc = CLI_EXIT_REFUSED;
    } else {
        cli_err("verify: %s: %s", data, rep.problem);
    }
done:
    logfile_destroy(&log);
    free(witness);
    free(keys);
    return rc;
}
