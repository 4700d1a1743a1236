/* main - the civibus command-line tool: dispatch to a subcommand.
 *
 * `civibus COMMAND [OPTIONS]`. Each command lives in its own file and parses
 * its own options (opts.h); this file owns the command table, the overall
 * help, the mapping of library errors to exit codes, and the error format
 * "civibus: message" on stderr. Key material is never printed by any command.
 */
#include <errno.h>
#include <signal.h>
#include <stdarg.h>
#include <stdio.h>
#include <string.h>

#include "civibus.h"
#include "cli.h"

typedef struct {
    const char *name;
    int (*run)(int argc, char **argv);
    const char *summary;
} s_command_t;

static const s_command_t s_commands[] = {
    {"keygen", cmd_keygen, "generate an agency's or the hub's key pair"},
    {"publish", cmd_publish, "publish one event, or JSON lines from stdin"},
    {"tail", cmd_tail, "follow a durable subscription, printing JSON lines"},
    {"replay", cmd_replay, "print the hub's log as JSON lines"},
    {"status", cmd_status, "show the hub's state and its subscriptions"},
    {"deadletters", cmd_deadletters, "list, redrive or drop a subscription's dead letters"},
    {"top", cmd_top, "watch the hub's overview from its monitoring endpoint"},
    {"policy", cmd_policy, "check an access policy file, explain a decision"},
    {"registry", cmd_registry, "add, list, rotate and revoke agency keys in a registry folder"},
    {"verify", cmd_verify, "check the log's hash chain and signed checkpoints offline"},
    {"checkpoint", cmd_checkpoint, "fetch the hub's latest signed checkpoint into a witness file"},
    {"backup", cmd_backup, "copy the hub's log into one file while the hub runs"},
    {"restore", cmd_restore, "write a backup into an empty data directory, verified"},
};
#define S_N_COMMANDS (sizeof s_commands / sizeof s_commands[0])

void cli_err(const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    fputs("civibus: ", stderr);
    vfprintf(stderr, fmt, ap);
    fputc('\n', stderr);
    va_end(ap);
}

int cli_flush(void)
{
    static int s_failed; /* stdout stays failed once it failed */
    if (s_failed)
        return s_failed;
    errno = 0;
    if (fflush(stdout) == 0 && !ferror(stdout))
        return 0;
    if (errno == EPIPE)
        return s_failed = 1;
    cli_err("cannot write to stdout: %s", errno ? strerror(errno) : "write error");
    return s_failed = -1;
}

int cli_exit_code(int civ_err)
{
    switch (civ_err) {
    case CIV_OK: return CLI_EXIT_OK;
    case CIV_E_NOT_AUTHORISED:
    case CIV_E_MALFORMED:
    case CIV_E_TOO_LARGE:
    case CIV_E_STORAGE_FULL:
    case CIV_E_UNAVAILABLE:
    case CIV_E_INTERNAL:
    case CIV_E_UNKNOWN_SUBSCRIPTION:
    case CIV_E_BAD_REQUEST:
    case CIV_E_UNSUPPORTED_VERSION:
    case CIV_E_BAD_SIGNATURE:
    case CIV_E_BEHIND_RETENTION:
    case CIV_E_UNSIGNED:
    case CIV_E_UNKNOWN_KEY: return CLI_EXIT_REFUSED;
    case CIV_E_TIMEOUT:
    case CIV_E_TRANSPORT: return CLI_EXIT_UNREACHABLE;
    case CIV_E_INVALID: return CLI_EXIT_USAGE;
    case CIV_E_KEY: return CLI_EXIT_FILE;
    default: return CLI_EXIT_INTERNAL;
    }
}

static void s_usage(FILE *out)
{
    fprintf(out, "usage: civibus COMMAND [OPTIONS]\n"
                 "       civibus COMMAND --help\n\n"
                 "Talk to a civibus hub by hand or from scripts.\n\n"
                 "Commands:\n");
    for (size_t i = 0; i < S_N_COMMANDS; i++)
        fprintf(out, "  %-11s %s\n", s_commands[i].name, s_commands[i].summary);
    fprintf(out, "  %-11s %s\n  %-11s %s\n", "help", "this text, or `civibus help COMMAND`", "version",
            "print the version");
    fprintf(out, "\n"
                 "Environment (a command-line flag wins):\n"
                 "  CIVIBUS_HUB       hub endpoint, e.g. tcp://hub.example:7400   (--hub)\n"
                 "  CIVIBUS_HUB_KEY   the hub's public key file                   (--hub-key)\n"
                 "  CIVIBUS_KEY       this agency's secret key file               (--key)\n"
                 "  CIVIBUS_TIMEOUT   timeout of each hub request, milliseconds   (--timeout)\n"
                 "  CIVIBUS_POLICY    access policy file of `policy explain`      (--policy)\n"
                 "  CIVIBUS_REGISTRY  agency registry folder of `registry ...`    (--registry)\n"
                 "  CIVIBUS_SIGN_KEY  this agency's signing key for `publish`     (--sign-key)\n"
                 "  CIVIBUS_HTTP      the hub's monitoring endpoint for `top`      (--http)\n"
                 "\n"
                 "Exit codes:\n"
                 "  0  success\n"
                 "  1  the hub refused something (nack) or a check failed\n"
                 "  2  usage error (bad option, missing argument)\n"
                 "  3  hub unreachable or timeout\n"
                 "  4  key or file error\n"
                 "  5  internal or protocol error\n"
                 "\n"
                 "Errors go to stderr as \"civibus: message\". See docs/CLI.md.\n");
}

static const s_command_t *s_find(const char *name)
{
    for (size_t i = 0; i < S_N_COMMANDS; i++)
        if (strcmp(s_commands[i].name, name) == 0)
            return &s_commands[i];
    return NULL;
}

static int s_help(const char *name)
{
    if (!name) {
        s_usage(stdout);
        return CLI_EXIT_OK;
    }
    const s_command_t *cmd = s_find(name);
    if (!cmd) {
        cli_err("unknown command '%s' (see civibus --help)", name);
        return CLI_EXIT_USAGE;
    }
    char help[] = "--help";
    char *argv[] = {(char *)cmd->name, help, NULL};
    return cmd->run(2, argv);
}

int main(int argc, char **argv)
{
    /* A closed stdout shows up as EPIPE on write, so that a command can stop
     * cleanly, never acknowledging what it could not print. */
    signal(SIGPIPE, SIG_IGN);

    if (argc < 2) {
        s_usage(stderr);
        return CLI_EXIT_USAGE;
    }
    const char *name = argv[1];
    if (strcmp(name, "help") == 0 || strcmp(name, "--help") == 0 || strcmp(name, "-h") == 0)
        return s_help(argc > 2 ? argv[2] : NULL);
    if (strcmp(name, "version") == 0 || strcmp(name, "--version") == 0) {
        printf("civibus %s\n", CIVIBUS_VERSION);
        return CLI_EXIT_OK;
    }
    const s_command_t *cmd = s_find(name);
    if (!cmd) {
        cli_err("unknown command '%s' (see civibus --help)", name);
        return CLI_EXIT_USAGE;
    }
    int rc = cmd->run(argc - 1, argv + 1);
    if (cli_flush() < 0 && rc == CLI_EXIT_OK)
        rc = CLI_EXIT_FILE;
    return rc;
}
