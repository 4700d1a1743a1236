/* policy - `civibus policy`: check an access policy file, explain a decision.
 *
 * Works offline on a policy file (proto/policy.h, docs/POLICY.md), with the
 * same parser and evaluation the hub uses, so that an operator can try a
 * policy before the hub loads it and see which rule grants what.
 *   check FILE                             does FILE parse? exit 0 or 1
 *   explain [--policy FILE] AGENCY ACTION TYPE   allowed (0) or denied (1)
 * A file that cannot be read is exit 4; for explain an invalid policy is too,
 * as a bad key file is for the commands that talk to a hub, so that exit 1
 * always means "denied".
 */
#include <getopt.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "cli.h"
#include "codec.h"
#include "opts.h"
#include "policy.h"

#define S_ERR_MAX 512
#define S_ARGS_MAX 3 /* positional arguments of explain */

enum { S_OPT_POLICY = CLI_OPT_CMD };

static const struct option s_check_opts[] = {
    CLI_OPTS_HELP,
    {NULL, 0, NULL, 0},
};

static const struct option s_explain_opts[] = {
    CLI_OPTS_HELP,
    {"policy", required_argument, NULL, S_OPT_POLICY},
    {NULL, 0, NULL, 0},
};

static void s_check_usage(void)
{
    printf("usage: civibus policy check FILE\n\n"
           "Parse the access policy FILE as the hub would. Prints \"FILE: N rules, M agencies\"\n"
           "and exits 0, or prints the first error as FILE:LINE: what is wrong and exits 1.\n"
           "Exit 4 when FILE cannot be read. See docs/POLICY.md for the format.\n");
}

static void s_explain_usage(void)
{
    printf("usage: civibus policy explain [--policy FILE] AGENCY ACTION TYPE\n\n"
           "May AGENCY do ACTION (publish or subscribe) on the event type TYPE? Prints\n"
           "  allowed: FILE:LINE: RULE          the first rule that allows it (exit 0)\n"
           "  denied: no rule allows ...        nothing allows it (exit 1)\n"
           "For subscribe, TYPE may be a filter ('*', 'population.*'): then the question is\n"
           "whether anything it matches is allowed, and the rule named overlaps it. The hub\n"
           "delivers only the events that some rule allows, however wide the filter.\n\n"
           "Options:\n"
           "  --policy FILE     the policy file (required)            [CIVIBUS_POLICY]\n"
           "  --help            this text\n\n"
           "Exit 2 for a usage error, 4 when FILE cannot be read or is not a valid policy.\n");
}

static void s_usage(FILE *out)
{
    fprintf(out, "usage: civibus policy check FILE\n"
                 "       civibus policy explain [--policy FILE] AGENCY ACTION TYPE\n"
                 "       civibus policy SUBCOMMAND --help\n\n"
                 "Work with an access policy file offline, without a hub (docs/POLICY.md).\n\n"
                 "Subcommands:\n"
                 "  check     parse FILE: print its rule count, or its first error (exit 1)\n"
                 "  explain   may AGENCY publish or subscribe TYPE, and by which rule?\n"
                 "            (exit 0 allowed, 1 denied)\n\n"
                 "Environment:\n"
                 "  CIVIBUS_POLICY    the policy file of explain      (--policy)\n");
}

/* Parse options and positional arguments (in order, up to max into args).
 * cli_getopt refuses positional arguments, which these subcommands take.
 * Returns -1 to go on, else an exit code (after printing): 0 for --help. */
static int s_args(int argc, char **argv, const struct option *longopts, void (*usage)(void),
                  const char **policy, const char **args, size_t max, size_t *n_args)
{
    *n_args = 0;
    opterr = 0;
    int c;
    /* "-": positional arguments come back as 1, in order, so that options
     * may stand anywhere; "--" ends the options (a type may start with '-'). */
    while ((c = getopt_long(argc, argv, "-:", longopts, NULL)) != -1) {
        switch (c) {
        case CLI_OPT_HELP: usage(); return CLI_EXIT_OK;
        case S_OPT_POLICY: *policy = optarg; break;
        case 1:
            if (*n_args == max) {
                cli_err("%s: unexpected argument '%s' (see civibus %s --help)", argv[0], optarg, argv[0]);
                return CLI_EXIT_USAGE;
            }
            args[(*n_args)++] = optarg;
            break;
        case ':': cli_err("%s: option '%s' needs an argument", argv[0], argv[optind - 1]); return CLI_EXIT_USAGE;
        default:
            cli_err("%s: unknown option '%s' (see civibus %s --help)", argv[0],
                    optind > 0 && optind <= argc ? argv[optind - 1] : "?", argv[0]);
            return CLI_EXIT_USAGE;
        }
    }
    for (; optind < argc; optind++) {
        if (*n_args == max) {
            cli_err("%s: unexpected argument '%s' (see civibus %s --help)", argv[0], argv[optind], argv[0]);
            return CLI_EXIT_USAGE;
        }
        args[(*n_args)++] = argv[optind];
    }
    return -1;
}

/* Read and parse path. Returns the policy, or NULL after printing, with
 * *exit_code CLI_EXIT_FILE when unreadable, else invalid_code. */
static policy_t *s_load(const char *path, int invalid_code, int *exit_code)
{
    char err[S_ERR_MAX], *text;
    size_t len;
    int rc = policy_read_file(path, &text, &len, err, sizeof err);
    if (rc != POLICY_OK) {
        cli_err("%s", err);
        *exit_code = rc == POLICY_IO ? CLI_EXIT_FILE : invalid_code;
        return NULL;
    }
    policy_t *policy = policy_parse(text, len, path, err, sizeof err);
    free(text);
    if (!policy) {
        cli_err("%s", err);
        *exit_code = invalid_code;
    }
    return policy;
}

static int s_check(int argc, char **argv)
{
    const char *file = NULL, *unused = NULL;
    size_t n;
    int rc = s_args(argc, argv, s_check_opts, s_check_usage, &unused, &file, 1, &n);
    if (rc >= 0)
        return rc;
    if (n != 1) {
        cli_err("policy check: expected FILE (see civibus policy check --help)");
        return CLI_EXIT_USAGE;
    }
    policy_t *policy = s_load(file, CLI_EXIT_REFUSED, &rc);
    if (!policy)
        return rc;
    printf("%s: %zu rules, %zu agencies\n", file, policy_rule_count(policy), policy_agency_count(policy));
    policy_destroy(&policy);
    return CLI_EXIT_OK;
}

static int s_explain(int argc, char **argv)
{
    const char *file = NULL, *args[S_ARGS_MAX];
    size_t n;
    int rc = s_args(argc, argv, s_explain_opts, s_explain_usage, &file, args, S_ARGS_MAX, &n);
    if (rc >= 0)
        return rc;
    if (n != S_ARGS_MAX) {
        cli_err("policy explain: expected AGENCY ACTION TYPE (see civibus policy explain --help)");
        return CLI_EXIT_USAGE;
    }
    const char *agency = args[0], *action_name = args[1], *type = args[2];
    if (!file) {
        const char *env = getenv("CIVIBUS_POLICY");
        file = env && *env ? env : NULL;
    }
    if (!file) {
        cli_err("policy explain: --policy FILE (or CIVIBUS_POLICY) is required");
        return CLI_EXIT_USAGE;
    }
    if (!codec_agency_valid(agency)) {
        cli_err("policy explain: invalid agency id '%s': 1-%d characters of a-z 0-9 - in dot-separated labels",
                agency, CODEC_AGENCY_MAX);
        return CLI_EXIT_USAGE;
    }
    int action = policy_action_parse(action_name);
    if (action < 0) {
        cli_err("policy explain: unknown action '%s': expected publish or subscribe", action_name);
        return CLI_EXIT_USAGE;
    }
    bool is_filter = action == POLICY_SUBSCRIBE && !codec_type_valid(type);
    if (action == POLICY_SUBSCRIBE ? !codec_filter_valid(type) : !codec_type_valid(type)) {
        cli_err("policy explain: invalid %s '%s': expected %s", action == POLICY_SUBSCRIBE ? "filter" : "event type",
                type,
                action == POLICY_SUBSCRIBE ? "'*', an event type, or a prefix such as 'population.*'"
                                           : "dot-separated labels of A-Z a-z 0-9 _ -, at most 128 bytes");
        return CLI_EXIT_USAGE;
    }

    policy_t *policy = s_load(file, CLI_EXIT_FILE, &rc);
    if (!policy)
        return rc;
    const policy_rule_t *rule = NULL;
    if (is_filter)
        rule = policy_filter_rule(policy, agency, type);
    else
        policy_allows(policy, agency, (policy_action_t)action, type, strlen(type), &rule);
    if (rule)
        printf("allowed: %s: %s\n", policy_rule_where(rule), policy_rule_text(rule));
    else
        printf("denied: no rule allows %s to %s %s (default deny)\n", agency, action_name, type);
    policy_destroy(&policy);
    return rule ? CLI_EXIT_OK : CLI_EXIT_REFUSED;
}

int cmd_policy(int argc, char **argv)
{
    /* The subcommand's messages name it in full: "policy check: ...". */
    static char s_check_name[] = "policy check", s_explain_name[] = "policy explain";
    if (argc < 2) {
        s_usage(stderr);
        return CLI_EXIT_USAGE;
    }
    const char *sub = argv[1];
    if (strcmp(sub, "--help") == 0 || strcmp(sub, "-h") == 0 || strcmp(sub, "help") == 0) {
        s_usage(stdout);
        return CLI_EXIT_OK;
    }
    if (strcmp(sub, "check") == 0) {
        argv[1] = s_check_name;
        return s_check(argc - 1, argv + 1);
    }
    if (strcmp(sub, "explain") == 0) {
        argv[1] = s_explain_name;
        return s_explain(argc - 1, argv + 1);
    }
    cli_err("policy: unknown subcommand '%s': expected check or explain (see civibus policy --help)", sub);
    return CLI_EXIT_USAGE;
}
