/* backup - `civibus backup` and `civibus restore`: hot copies of the log.
 *
 * backup copies a hub's data directory into one file while the hub runs
 * (one LMDB read transaction, so the copy is consistent as of its start;
 * proto/backup.h); restore writes such a file into an empty data directory
 * and verifies it before the hub may use it. Both print one JSON object on
 * stdout. They work on local files only and never talk to a hub. How to
 * back up and restore a hub, step by step: docs/HUB.md, "Backup and
 * restore"; options and output: docs/CLI.md.
 */
#include <jansson.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "backup.h"
#include "cli.h"
#include "keyfile.h"
#include "opts.h"
#include "witness.h"

enum {
    S_OPT_DATA = CLI_OPT_CMD,
    S_OPT_OUT,
    S_OPT_IN,
    S_OPT_NO_COMPACT,
    S_OPT_FORCE,
    S_OPT_HUB_KEY,
    S_OPT_REGISTRY,
};

static const struct option s_backup_opts[] = {
    CLI_OPTS_HELP,
    {"data", required_argument, NULL, S_OPT_DATA},
    {"out", required_argument, NULL, S_OPT_OUT},
    {"no-compact", no_argument, NULL, S_OPT_NO_COMPACT},
    {"force", no_argument, NULL, S_OPT_FORCE},
    {NULL, 0, NULL, 0},
};

static const struct option s_restore_opts[] = {
    CLI_OPTS_HELP,
    {"in", required_argument, NULL, S_OPT_IN},
    {"data", required_argument, NULL, S_OPT_DATA},
    {"hub-key", required_argument, NULL, S_OPT_HUB_KEY},
    {"registry", required_argument, NULL, S_OPT_REGISTRY},
    {NULL, 0, NULL, 0},
};

static void s_backup_usage(void)
{
    printf("usage: civibus backup --data DIR --out FILE [--no-compact] [--force]\n\n"
           "Copy the hub's log into one file while the hub runs. The copy is consistent\n"
           "as of the moment it starts (one LMDB read transaction): every event the hub\n"
           "had acknowledged by then, the subscriptions' saved cursors and the signed\n"
           "checkpoints. The hub goes on serving meanwhile. The file is written beside\n"
           "FILE under a temporary name, synced, then renamed; its mode is 0600.\n\n"
           "Options:\n"
           "  --data DIR      the hub's data directory (its `data` setting)\n"
           "  --out FILE      the backup file to write\n"
           "  --no-compact    copy every page as it is, free ones too (faster, larger;\n"
           "                  also works when the compacting copy reports a page leak)\n"
           "  --force         replace FILE if it exists (default: refuse)\n"
           "  --help          this text\n\n"
           "Prints {\"out\":FILE,\"bytes\":N,\"first_seq\":N,\"last_seq\":N,\"entries\":N,\n"
           "\"checkpoints\":N,\"last_checkpoint\":N,\"cursors\":N,\"compact\":BOOL,\"seconds\":S}\n"
           "and exits 0. Exit 4: the log cannot be read, FILE exists, or cannot be written;\n"
           "2: usage. Restore with `civibus restore`. See docs/HUB.md.\n");
}

static void s_restore_usage(void)
{
    printf("usage: civibus restore --in FILE --data DIR [--hub-key FILE | --registry DIR]\n\n"
           "Write a backup made by `civibus backup` into DIR as the hub's log. DIR must be\n"
           "empty or missing (it is created, mode 0700), and no process may have it open:\n"
           "stop the hub and move its old data directory aside first. The written copy is\n"
           "verified like `civibus verify` does (hash chain, sequence numbers, and the\n"
           "checkpoints' signatures when the hub's signing key is given) before it takes\n"
           "the name DIR/data.mdb; a copy that does not verify is removed again. Run as\n"
           "root into an existing DIR, the file gets DIR's owner and group.\n\n"
           "Options:\n"
           "  --in FILE       the backup file\n"
           "  --data DIR      the data directory to restore into\n"
           "  --hub-key FILE  the hub's signing public key (hub-sign.pub), or the list of\n"
           "                  its keys (the registry's hub-sign.pub), to check the\n"
           "                  checkpoints' signatures too\n"
           "  --registry DIR  instead of --hub-key: the registry folder holding\n"
           "                  hub-sign.pub\n"
           "  --help          this text\n\n"
           "Prints {\"data\":DIR,\"bytes\":N,\"first_seq\":N,\"last_seq\":N,\"entries\":N,\n"
           "\"checkpoints\":N,\"last_checkpoint\":N,\"cursors\":N,\"signatures_checked\":BOOL}\n"
           "and exits 0. Exit 1: the copy does not verify (nothing restored); 4: FILE\n"
           "cannot be read or is not a log, DIR is in use, not empty or not writable;\n"
           "2: usage. See docs/HUB.md.\n");
}

static int s_exit_code(int brc)
{
    switch (brc) {
    case BACKUP_OK: return CLI_EXIT_OK;
    case BACKUP_TAMPERED: return CLI_EXIT_REFUSED;
    default: return CLI_EXIT_FILE;
    }
}

/* Print {name: path, what the copy holds, then extra's members} as one
 * line; frees extra. */
static int s_print(const char *name, const char *path, const backup_info_t *info, json_t *extra)
{
    const logfile_summary_t *l = &info->log;
    json_t *obj = json_pack("{s:s, s:I, s:I, s:I, s:I, s:I, s:I, s:I}", name, path, "bytes", (json_int_t)info->bytes,
                            "first_seq", (json_int_t)l->first_seq, "last_seq", (json_int_t)l->last_seq, "entries",
                            (json_int_t)l->entries, "checkpoints", (json_int_t)l->checkpoints, "last_checkpoint",
                            (json_int_t)l->last_checkpoint, "cursors", (json_int_t)l->cursors);
    int rc = obj && extra ? json_object_update(obj, extra) : -1;
    json_decref(extra);
    char *text = rc == 0 ? json_dumps(obj, JSON_COMPACT | JSON_PRESERVE_ORDER | JSON_REAL_PRECISION(6)) : NULL;
    json_decref(obj);
    if (!text) {
        cli_err("out of memory");
        return CLI_EXIT_INTERNAL;
    }
    printf("%s\n", text);
    free(text);
    return CLI_EXIT_OK;
}

static double s_secs_since(const struct timespec *t0)
{
    struct timespec t1;
    clock_gettime(CLOCK_MONOTONIC, &t1);
    return (double)(t1.tv_sec - t0->tv_sec) + (double)(t1.tv_nsec - t0->tv_nsec) / 1e9;
}

int cmd_backup(int argc, char **argv)
{
    const char *data = NULL, *out = NULL;
    unsigned flags = BACKUP_COMPACT;
    int c;
    while ((c = cli_getopt(argc, argv, s_backup_opts)) != -1) {
        switch (c) {
        case CLI_OPT_HELP: s_backup_usage(); return CLI_EXIT_OK;
        case S_OPT_DATA: data = optarg; break;
        case S_OPT_OUT: out = optarg; break;
        case S_OPT_NO_COMPACT: flags &= ~BACKUP_COMPACT; break;
        case S_OPT_FORCE: flags |= BACKUP_OVERWRITE; break;
        default: return CLI_EXIT_USAGE;
        }
    }
    if (!data || !out || !*data || !*out) {
        cli_err("backup: --data DIR and --out FILE are required");
        return CLI_EXIT_USAGE;
    }
    struct timespec t0;
    clock_gettime(CLOCK_MONOTONIC, &t0);
    backup_info_t info;
    char err[1024];
    int brc = backup_make(data, out, flags, &info, err, sizeof err);
    if (brc != BACKUP_OK) {
        cli_err("backup: %s", err);
        return s_exit_code(brc);
    }
    return s_print("out", out, &info,
                   json_pack("{s:b, s:f}", "compact", (flags & BACKUP_COMPACT) != 0, "seconds", s_secs_since(&t0)));
}

int cmd_restore(int argc, char **argv)
{
    const char *in = NULL, *data = NULL, *key_path = NULL, *registry = NULL;
    int c;
    while ((c = cli_getopt(argc, argv, s_restore_opts)) != -1) {
        switch (c) {
        case CLI_OPT_HELP: s_restore_usage(); return CLI_EXIT_OK;
        case S_OPT_IN: in = optarg; break;
        case S_OPT_DATA: data = optarg; break;
        case S_OPT_HUB_KEY: key_path = optarg; break;
        case S_OPT_REGISTRY: registry = optarg; break;
        default: return CLI_EXIT_USAGE;
        }
    }
    if (!in || !data || !*in || !*data) {
        cli_err("restore: --in FILE and --data DIR are required");
        return CLI_EXIT_USAGE;
    }
    char reg_key[4096];
    int rc = witness_keys_path("restore", key_path, registry, reg_key, sizeof reg_key, &key_path);
    if (rc != 0)
        return rc;
    keyfile_hub_t *keys = key_path ? witness_keys_read("restore", key_path) : NULL;
    if (key_path && !keys)
        return CLI_EXIT_FILE;
    char err[1024];
    backup_info_t info;
    logfile_report_t rep;
    int brc = backup_restore(in, data, keys, &info, &rep, err, sizeof err);
    free(keys);
    if (brc != BACKUP_OK) {
        cli_err("restore: %s", err);
        if (brc == BACKUP_TAMPERED)
            cli_err("restore: nothing was restored; %s was left as it was", data);
        return s_exit_code(brc);
    }
    if (!key_path)
        fprintf(stderr, "civibus: restore: the checkpoints' signatures were not checked (no --hub-key)\n");
    return s_print("data", data, &info, json_pack("{s:b}", "signatures_checked", key_path != NULL));
}
