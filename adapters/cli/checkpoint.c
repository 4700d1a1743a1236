/* checkpoint - `civibus checkpoint fetch`: keep the hub's checkpoints
 * outside the hub.
 *
 * Asks the hub for its latest signed checkpoint (civ_client_checkpoint),
 * checks its signature when the hub's signing keys are given, and prints it
 * as a witness line (proto/logfile.h), appending it with --out to a witness
 * file (witness.h) that `civibus verify --witness` later checks a log
 * against. Before appending, the new checkpoint is compared with what the
 * file already holds: a seq lower than one witnessed before, or another
 * chain hash for a witnessed seq, means the hub's log was cut back or
 * rewritten since, and is reported (exit 1) while the line is still
 * appended, as evidence; a checkpoint witnessed already is not appended
 * again. A checkpoint whose signature does not verify is never appended.
 */
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

enum { S_OPT_OUT = CLI_OPT_CMD, S_OPT_SIGN_KEY, S_OPT_REGISTRY };

static const struct option s_longopts[] = {
    CLI_OPTS_HELP,
    CLI_OPTS_CONN,
    {"out", required_argument, NULL, S_OPT_OUT},
    {"hub-sign-key", required_argument, NULL, S_OPT_SIGN_KEY},
    {"registry", required_argument, NULL, S_OPT_REGISTRY},
    {NULL, 0, NULL, 0},
};

static void s_usage(FILE *to)
{
    fprintf(to,
            "usage: civibus checkpoint fetch [--out FILE] [--hub-sign-key FILE | --registry DIR]\n"
            "                                [HUB OPTIONS]\n\n"
            "Fetch the hub's latest signed checkpoint of its log and print it as one witness\n"
            "line (event=checkpoint seq= time_us= chain= key_id= sig=). Kept outside the hub,\n"
            "such lines later show whether the log was cut back or rewritten:\n"
            "civibus verify --witness FILE. See docs/LOG.md.\n\n"
            "Options:\n"
            "  --out FILE           append the line to the witness file FILE (created when\n"
            "                       missing); a checkpoint it holds already is not added again,\n"
            "                       and one that contradicts it is added and reported (exit 1)\n"
            "  --hub-sign-key FILE  verify the checkpoint with the hub's signing keys (PEM, or\n"
            "                       the registry's hub-sign.pub list) before keeping it\n"
            "  --registry DIR       the same with DIR/hub-sign.pub\n"
            "  --help               this text\n\n" CLI_CONN_USAGE
            "\nExit codes: 0 kept (or known already), 1 the checkpoint does not verify, contradicts\n"
            "the witness file, or the hub has none; 2 usage; 3 hub unreachable; 4 file error.\n");
}

/* Compare cp with the witness file's checkpoints: 1 when it is there
 * already, -1 when it contradicts one (printed), 0 when it is new. */
static int s_compare(const char *path, const logfile_witness_t *w, size_t n, const logfile_checkpoint_t *cp)
{
    int result = 0;
    const logfile_witness_t *newest = NULL;
    for (size_t i = 0; i < n; i++) {
        if (!newest || w[i].cp.seq > newest->cp.seq)
            newest = &w[i];
        if (w[i].cp.seq != cp->seq)
            continue;
        if (memcmp(w[i].cp.chain, cp->chain, sizeof cp->chain) != 0) {
            cli_err("checkpoint fetch: the hub's checkpoint for seq %" PRIu64 " has another chain hash than the one "
                    "witnessed at %s:%d: the hub signed two different logs",
                    cp->seq, path, w[i].line);
            return -1;
        }
        if (w[i].cp.time == cp->time && memcmp(w[i].cp.sig, cp->sig, sizeof cp->sig) == 0)
            result = 1;
    }
    if (newest && newest->cp.seq > cp->seq) {
        cli_err("checkpoint fetch: the hub's latest checkpoint covers seq %" PRIu64 ", but seq %" PRIu64
                " was witnessed at %s:%d: the hub's log was cut back or replaced",
                cp->seq, newest->cp.seq, path, newest->line);
        return -1;
    }
    return result;
}

/* Read the hub's signing keys from sign_key or registry/hub-sign.pub into a
 * new civ_hub_keys_t; NULL (nothing to check) when neither is given. */
static int s_keys(const char *sign_key, const char *registry, civ_hub_keys_t **out)
{
    *out = NULL;
    char path[4096];
    int rc = witness_keys_path("checkpoint fetch", sign_key, registry, path, sizeof path, &sign_key);
    if (rc != 0 || !sign_key)
        return rc;
    civ_error_t err = {0};
    *out = civ_hub_keys_new(sign_key, &err);
    if (!*out) {
        cli_err("checkpoint fetch: %s", err.message);
        return CLI_EXIT_FILE;
    }
    return CLI_EXIT_OK;
}

static int s_fetch(int argc, char **argv)
{
    cli_conn_t conn = {0};
    const char *out = NULL, *sign_key = NULL, *registry = NULL;
    int c;
    while ((c = cli_getopt_conn(argc, argv, s_longopts, &conn)) != -1) {
        switch (c) {
        case CLI_OPT_HELP: s_usage(stdout); return CLI_EXIT_OK;
        case S_OPT_OUT: out = optarg; break;
        case S_OPT_SIGN_KEY: sign_key = optarg; break;
        case S_OPT_REGISTRY: registry = optarg; break;
        default: return CLI_EXIT_USAGE;
        }
    }
    int rc = cli_conn_finish(&conn);
    if (rc != 0)
        return rc;
    civ_hub_keys_t *keys = NULL;
    if ((rc = s_keys(sign_key, registry, &keys)) != CLI_EXIT_OK)
        return rc;
    logfile_witness_t *known = NULL;
    size_t n_known = 0;
    civ_client_t *client = NULL;
    rc = CLI_EXIT_FILE;
    if (out && witness_read("checkpoint fetch", out, true, &known, &n_known) != 0)
        goto done;
    client = cli_connect(&conn, 0, &rc);
    if (!client)
        goto done;
    civ_checkpoint_t cp;
    int err = civ_client_checkpoint(client, &cp);
    if (err != CIV_OK) {
        cli_err("checkpoint fetch: %s", civ_client_error(client)[0] ? civ_client_error(client) : civ_strerror(err));
        rc = cli_exit_code(err);
        goto done;
    }
    char why[256];
    if (keys && (err = civ_checkpoint_verify(keys, &cp, why, sizeof why)) != CIV_OK) {
        cli_err("checkpoint fetch: the hub's checkpoint for seq %" PRIu64 " does not verify: %s; not kept", cp.seq,
                why);
        rc = cli_exit_code(err);
        goto done;
    }
    logfile_checkpoint_t lc = {.seq = cp.seq, .time = cp.time_us};
    memcpy(lc.chain, cp.chain, sizeof lc.chain);
    memcpy(lc.key_id, cp.key_id, sizeof lc.key_id);
    memcpy(lc.sig, cp.signature, sizeof lc.sig);
    char fields[LOGFILE_WITNESS_LEN], now[KEYFILE_TIME_LEN], line[LOGFILE_WITNESS_LEN + 400];
    logfile_witness_format(&lc, fields);
    keyfile_time_format((int64_t)time(NULL), now, sizeof now);
    snprintf(line, sizeof line, "%s hub=%s %s", now, conn.hub, fields);
    int known_already = out ? s_compare(out, known, n_known, &lc) : 0;
    rc = known_already < 0 ? CLI_EXIT_REFUSED : CLI_EXIT_OK;
    if (out && known_already != 1 && witness_append("checkpoint fetch", out, line) != 0) {
        rc = CLI_EXIT_FILE;
        goto done;
    }
    puts(line);
    fprintf(stderr, "civibus: checkpoint fetch: seq %" PRIu64 " of %" PRIu64 ", %s%s%s\n", cp.seq, cp.last_seq,
            keys ? "signature verified" : "signature not verified (give --hub-sign-key or --registry)",
            out ? (known_already == 1 ? "; witnessed already in " : "; appended to ") : "", out ? out : "");
done:
    civ_client_destroy(&client);
    civ_hub_keys_destroy(&keys);
    free(known);
    return rc;
}

int cmd_checkpoint(int argc, char **argv)
{
    if (argc < 2) {
        s_usage(stderr);
        return CLI_EXIT_USAGE;
    }
    if (strcmp(argv[1], "--help") == 0 || strcmp(argv[1], "help") == 0) {
        s_usage(stdout);
        return CLI_EXIT_OK;
    }
    if (strcmp(argv[1], "fetch") == 0)
        return s_fetch(argc - 1, argv + 1);
    cli_err("checkpoint: unknown subcommand '%s' (fetch; see civibus checkpoint --help)", argv[1]);
    return CLI_EXIT_USAGE;
}
