/* verify - `civibus verify`: check the hub's log offline.
 *
 * Opens the log's LMDB files read-only (proto/logfile.h), so it runs beside
 * a live hub, on a copy, or on a backup, and never changes a byte. It
 * recomputes the hash chain from the first entry, compares every stored
 * chain hash, checks every checkpoint's Ed25519 signature with the hub's
 * signing public key, and names the first bad sequence number. A log whose
 * oldest entries retention deleted is checked from its anchor (the chain
 * hash of the last deleted entry, kept in the log's meta data). What a
 * passing check proves, and what it cannot, is in docs/LOG.md.
 *
 * --hub-key here is the hub's *signing* public key (hub-sign.pub), not the
 * CURVE key other commands take; so CIVIBUS_HUB_KEY is not consulted.
 * --registry DIR instead reads DIR/hub-sign.pub (KEYFILE_HUB_SIGN_FILE),
 * where `civibus keygen --hub --registry DIR` publishes it.
 */
#include <errno.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "cli.h"
#include "crypto.h"
#include "keyfile.h"
#include "logfile.h"
#include "opts.h"

enum { S_OPT_DATA = CLI_OPT_CMD, S_OPT_HUB_KEY, S_OPT_FROM, S_OPT_REGISTRY };

static const struct option s_longopts[] = {
    CLI_OPTS_HELP,
    {"data", required_argument, NULL, S_OPT_DATA},
    {"hub-key", required_argument, NULL, S_OPT_HUB_KEY},
    {"from", required_argument, NULL, S_OPT_FROM},
    {"registry", required_argument, NULL, S_OPT_REGISTRY},
    {NULL, 0, NULL, 0},
};

static void s_usage(void)
{
    printf("usage: civibus verify --data DIR (--hub-key FILE | --registry DIR) [--from SEQ]\n\n"
           "Check the hub's log offline: recompute its SHA-256 hash chain, compare every\n"
           "stored chain hash, verify every signed checkpoint with the hub's signing key,\n"
           "and check that no sequence number is missing. Reads the LMDB files read-only;\n"
           "safe while the hub runs. See docs/LOG.md.\n\n"
           "Options:\n"
           "  --data DIR       the hub's data directory (its `data` setting)\n"
           "  --hub-key FILE   the hub's signing public key (hub-sign.pub from\n"
           "                   civibus keygen --hub), PEM\n"
           "  --registry DIR   instead of --hub-key: the agency registry folder holding\n"
           "                   hub-sign.pub (civibus keygen --hub --registry DIR)\n"
           "  --from SEQ       start at SEQ, trusting the stored chain hash of SEQ-1\n"
           "                   (default: from the first entry: seq 1, or the first one\n"
           "                   retention kept, from its anchor)\n"
           "  --help           this text\n\n"
           "Prints `ok: N entries, M checkpoints, last seq S, last checkpoint C` (and\n"
           "`, first seq F` when retention deleted the entries before F) and exits\n"
           "0, or names the first bad sequence number and exits 1. Exit 4: the log or the\n"
           "key cannot be read; 2: usage.\n");
}

static double s_secs_since(const struct timespec *t0)
{
    struct timespec t1;
    clock_gettime(CLOCK_MONOTONIC, &t1);
    return (double)(t1.tv_sec - t0->tv_sec) + (double)(t1.tv_nsec - t0->tv_nsec) / 1e9;
}

int cmd_verify(int argc, char **argv)
{
    const char *data = NULL, *key_path = NULL, *registry = NULL;
    uint64_t from = 0;
    int c;
    while ((c = cli_getopt(argc, argv, s_longopts)) != -1) {
        switch (c) {
        case CLI_OPT_HELP: s_usage(); return CLI_EXIT_OK;
        case S_OPT_DATA: data = optarg; break;
        case S_OPT_HUB_KEY: key_path = optarg; break;
        case S_OPT_REGISTRY: registry = optarg; break;
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
    if (!data || !key_path == !registry) {
        cli_err("verify: --data DIR and one of --hub-key FILE and --registry DIR are required");
        return CLI_EXIT_USAGE;
    }
    char reg_key[4096];
    if (registry) {
        int n = snprintf(reg_key, sizeof reg_key, "%s/%s", registry, KEYFILE_HUB_SIGN_FILE);
        if (n < 0 || (size_t)n >= sizeof reg_key) {
            cli_err("verify: --registry: path too long");
            return CLI_EXIT_USAGE;
        }
        key_path = reg_key;
    }
    char err[512];
    crypto_key_t *key = NULL;
    if (crypto_key_read_public(key_path, &key, err, sizeof err) != CRYPTO_OK) {
        cli_err("verify: %s", err);
        return CLI_EXIT_FILE;
    }
    int rc = CLI_EXIT_FILE;
    logfile_t *log = logfile_open(data, err, sizeof err);
    if (!log) {
        cli_err("verify: %s", err);
        goto free_key;
    }
    struct timespec t0;
    clock_gettime(CLOCK_MONOTONIC, &t0);
    logfile_report_t rep;
    int lrc = logfile_verify(log, key, from, &rep);
    double secs = s_secs_since(&t0);
    if (lrc == LOGFILE_OK) {
        printf("ok: %" PRIu64 " entries, %" PRIu64 " checkpoints, last seq %" PRIu64 ", last checkpoint %" PRIu64,
               rep.entries, rep.checkpoints, rep.last_seq, rep.last_checkpoint);
        if (rep.anchor_seq)
            printf(", first seq %" PRIu64, rep.first_seq);
        printf("\n");
        if (rep.anchor_seq)
            fprintf(stderr,
                    "civibus: verify: entries 1 to %" PRIu64 " were deleted by retention; the chain was checked "
                    "from the anchor kept with the log (the chain hash of seq %" PRIu64 "), which only a signed "
                    "checkpoint after it vouches for\n",
                    rep.anchor_seq, rep.anchor_seq);
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
    logfile_destroy(&log);
free_key:
    crypto_key_destroy(&key);
    return rc;
}
