/* deadletters - `civibus deadletters list|redrive|drop`: the dead letters of
 * one of this agency's subscriptions.
 *
 * Each operation prints one JSON object on stdout (jsonev_dead_letters_line,
 * docs/CLI.md). list reads every page unless --limit asks for one page;
 * redrive and drop name seqs (--seq, repeatable or comma-separated) or take
 * --all. Naming a seq that is no dead letter (or, for redrive, whose event
 * the log no longer holds) still prints the object, and exits 1.
 */
#include <inttypes.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "cli.h"
#include "codec.h"
#include "jsonev.h"
#include "opts.h"

#define S_LIST_PAGE 1000 /* records asked for per page when reading them all */

enum { S_OPT_NAME = CLI_OPT_CMD, S_OPT_SEQ, S_OPT_ALL, S_OPT_AFTER, S_OPT_LIMIT };

static const struct option s_longopts[] = {
    CLI_OPTS_HELP,
    CLI_OPTS_CONN,
    {"name", required_argument, NULL, S_OPT_NAME},
    {"seq", required_argument, NULL, S_OPT_SEQ},
    {"all", no_argument, NULL, S_OPT_ALL},
    {"after", required_argument, NULL, S_OPT_AFTER},
    {"limit", required_argument, NULL, S_OPT_LIMIT},
    {NULL, 0, NULL, 0},
};

static void s_usage(void)
{
    printf("usage: civibus deadletters list --name SUB [--after N] [--limit N] [HUB OPTIONS]\n"
           "       civibus deadletters redrive --name SUB (--seq N ... | --all) [HUB OPTIONS]\n"
           "       civibus deadletters drop --name SUB (--seq N ... | --all) [HUB OPTIONS]\n\n"
           "The dead letters of this agency's subscription SUB: events the hub gave up\n"
           "delivering after max_attempts failed attempts (a nack, an ack timeout, a lost\n"
           "session). The events themselves stay in the log.\n\n"
           "  list      print them (every page, or one page with --limit)\n"
           "  redrive   deliver them again to SUB, before its other events, attempt 1 again;\n"
           "            an ack clears one, and after max_attempts it is a dead letter again\n"
           "  drop      delete the records\n\n"
           "Options:\n"
           "  --name SUB   subscription name\n"
           "  --seq N      a dead letter's sequence number; repeatable, or comma-separated\n"
           "               (at most %d)\n"
           "  --all        every dead letter of SUB\n"
           "  --after N    list: only dead letters with a larger sequence number\n"
           "  --limit N    list: one page of at most N (1-1000), with \"next_after\" when more\n"
           "               follow\n"
           "  --help       this text\n\n"
           "Prints one JSON object (docs/CLI.md). Exit 1 when a named seq is no dead letter\n"
           "or, for redrive, its event is gone from the log.\n\n" CLI_CONN_USAGE,
           CIV_DEAD_LETTERS_SEQS_MAX);
}

/* Add the comma-separated seqs of arg (modified in place). */
static int s_add_seqs(char *arg, uint64_t *seqs, size_t *n)
{
    for (char *save = NULL, *t = strtok_r(arg, ",", &save); t; t = strtok_r(NULL, ",", &save)) {
        if (*n == CIV_DEAD_LETTERS_SEQS_MAX) {
            cli_err("deadletters: more than %d --seq", CIV_DEAD_LETTERS_SEQS_MAX);
            return -1;
        }
        if (cli_parse_u64("--seq", t, 1, UINT64_MAX, &seqs[*n]) != 0)
            return -1;
        (*n)++;
    }
    return 0;
}

static int s_print(const char *op, const char *name, const civ_dead_letters_t *r)
{
    char *line = jsonev_dead_letters_line(op, name, r);
    if (!line) {
        cli_err("out of memory");
        return CLI_EXIT_INTERNAL;
    }
    puts(line);
    free(line);
    return CLI_EXIT_OK;
}

static int s_fail(civ_client_t *client, const char *hub, int err)
{
    if (err == CIV_E_TIMEOUT)
        cli_err("deadletters: no answer from the hub %s in time", hub);
    else
        cli_err("deadletters: %s", civ_client_error(client)[0] ? civ_client_error(client) : civ_strerror(err));
    return cli_exit_code(err);
}

/* Every page from after on, or the one page of limit. */
static int s_list(civ_client_t *client, const char *hub, const char *name, uint64_t after, uint32_t limit)
{
    civ_dead_letters_t *page = NULL;
    civ_dead_letter_t *all = NULL;
    size_t n = 0;
    int rc = CLI_EXIT_OK;
    for (;;) {
        int err = civ_dead_letters_list(client, name, after, limit ? limit : S_LIST_PAGE, &page);
        if (err != CIV_OK) {
            rc = s_fail(client, hub, err);
            goto done;
        }
        if (limit || (n == 0 && page->next_after == 0))
            break; /* one page says it all */
        civ_dead_letter_t *grown = realloc(all, (n + page->n) * sizeof *grown);
        if (!grown && n + page->n) {
            cli_err("out of memory");
            rc = CLI_EXIT_INTERNAL;
            goto done;
        }
        all = grown;
        memcpy(all + n, page->items, page->n * sizeof *all);
        n += page->n;
        if (page->next_after == 0 || page->n == 0)
            break;
        after = page->next_after;
        civ_dead_letters_destroy(&page);
    }
    if (all) {
        page->items = all;
        page->n = n;
        page->next_after = 0;
    }
    rc = s_print("list", name, page);
done:
    free(all);
    civ_dead_letters_destroy(&page);
    return rc;
}

static int s_change(civ_client_t *client, const char *hub, const char *op, const char *name, const uint64_t *seqs,
                    size_t n_seqs, bool all)
{
    civ_dead_letters_t *r = NULL;
    int err = strcmp(op, "drop") == 0 ? civ_dead_letters_drop(client, name, seqs, n_seqs, all, &r)
                                      : civ_dead_letters_redrive(client, name, seqs, n_seqs, all, &r);
    if (err != CIV_OK)
        return s_fail(client, hub, err);
    int rc = s_print(op, name, r);
    if (rc == CLI_EXIT_OK && (r->n_not_found || r->n_gone)) {
        if (r->n_not_found)
            cli_err("deadletters: %zu of the named seqs are no dead letter of %s", r->n_not_found, name);
        if (r->n_gone)
            cli_err("deadletters: %zu dead letters not redriven: the log no longer holds their events", r->n_gone);
        rc = CLI_EXIT_REFUSED;
    }
    civ_dead_letters_destroy(&r);
    return rc;
}

int cmd_deadletters(int argc, char **argv)
{
    if (argc >= 2 && (strcmp(argv[1], "--help") == 0 || strcmp(argv[1], "help") == 0)) {
        s_usage();
        return CLI_EXIT_OK;
    }
    if (argc < 2 || argv[1][0] == '-') {
        cli_err("deadletters: say list, redrive or drop (see civibus deadletters --help)");
        return CLI_EXIT_USAGE;
    }
    const char *op = argv[1];
    if (strcmp(op, "list") != 0 && strcmp(op, "redrive") != 0 && strcmp(op, "drop") != 0) {
        cli_err("deadletters: unknown operation '%s': list, redrive or drop", op);
        return CLI_EXIT_USAGE;
    }
    /* getopt reads the options after the operation, which names the
     * command in messages. */
    argc--;
    argv++;
    argv[0] = (char *)"deadletters";
    cli_conn_t conn = {0};
    const char *name = NULL;
    uint64_t seqs[CIV_DEAD_LETTERS_SEQS_MAX];
    size_t n_seqs = 0;
    bool all = false, has_after = false;
    uint64_t after = 0, limit = 0;
    int c;
    while ((c = cli_getopt_conn(argc, argv, s_longopts, &conn)) != -1) {
        switch (c) {
        case CLI_OPT_HELP: s_usage(); return CLI_EXIT_OK;
        case S_OPT_NAME: name = optarg; break;
        case S_OPT_SEQ:
            if (s_add_seqs(optarg, seqs, &n_seqs) != 0)
                return CLI_EXIT_USAGE;
            break;
        case S_OPT_ALL: all = true; break;
        case S_OPT_AFTER:
            if (cli_parse_u64("--after", optarg, 0, UINT64_MAX, &after) != 0)
                return CLI_EXIT_USAGE;
            has_after = true;
            break;
        case S_OPT_LIMIT:
            if (cli_parse_u64("--limit", optarg, 1, 1000, &limit) != 0)
                return CLI_EXIT_USAGE;
            break;
        default: return CLI_EXIT_USAGE;
        }
    }
    if (!name) {
        cli_err("deadletters: --name SUB is required");
        return CLI_EXIT_USAGE;
    }
    if (!codec_name_valid(name)) {
        cli_err("deadletters: invalid subscription name '%s': 1-%d characters of A-Z a-z 0-9 . _ -", name,
                CODEC_NAME_MAX);
        return CLI_EXIT_USAGE;
    }
    bool list = strcmp(op, "list") == 0;
    if (list && (n_seqs || all)) {
        cli_err("deadletters: list takes no --seq or --all (use --after and --limit)");
        return CLI_EXIT_USAGE;
    }
    if (!list && (has_after || limit)) {
        cli_err("deadletters: --after and --limit are for list");
        return CLI_EXIT_USAGE;
    }
    if (!list && all == (n_seqs > 0)) {
        cli_err("deadletters: %s needs --seq N or --all, not both", op);
        return CLI_EXIT_USAGE;
    }
    int rc = cli_conn_finish(&conn);
    if (rc != CLI_EXIT_OK)
        return rc;
    civ_client_t *client = cli_connect(&conn, 0, &rc);
    if (!client)
        return rc;
    rc = list ? s_list(client, conn.hub, name, after, (uint32_t)limit)
              : s_change(client, conn.hub, op, name, seqs, n_seqs, all);
    civ_client_destroy(&client);
    return rc;
}
