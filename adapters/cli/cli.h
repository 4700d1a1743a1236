/* cli - what the files of the civibus command-line tool share.
 *
 * The tool is one binary with subcommands; main.c dispatches to the cmd_*
 * functions below, each of which parses its own arguments and returns the
 * process exit code. Exit codes are part of the contract with scripts (see
 * docs/CLI.md) and never change meaning.
 */
#ifndef CIVIBUS_CLI_H
#define CIVIBUS_CLI_H

#include <stdbool.h>
#include <stdio.h>

/* Process exit codes. */
enum cli_exit {
    CLI_EXIT_OK = 0,          /* success */
    CLI_EXIT_REFUSED = 1,     /* the hub refused something (nack) or a check failed */
    CLI_EXIT_USAGE = 2,       /* bad option, missing argument */
    CLI_EXIT_UNREACHABLE = 3, /* hub unreachable or timeout */
    CLI_EXIT_FILE = 4,        /* key or file error */
    CLI_EXIT_INTERNAL = 5     /* internal or protocol error */
};

/* Print "civibus: message" and a newline on stderr. */
void cli_err(const char *fmt, ...) __attribute__((format(printf, 1, 2)));

/* Flush stdout. Returns 0; 1 when the reader has gone (EPIPE: the command
 * should stop quietly and succeed); -1 after printing any other error. */
int cli_flush(void);

/* The exit code for a civ_err code of libcivibus (CIV_OK gives 0). */
int cli_exit_code(int civ_err);

/* Subcommands. argv[0] is the command name; each returns an exit code and
 * handles --help itself (usage on stdout, exit 0). */
int cmd_keygen(int argc, char **argv);
int cmd_publish(int argc, char **argv);
int cmd_tail(int argc, char **argv);
int cmd_replay(int argc, char **argv);
int cmd_status(int argc, char **argv);
int cmd_deadletters(int argc, char **argv);
int cmd_policy(int argc, char **argv);
int cmd_registry(int argc, char **argv);
int cmd_verify(int argc, char **argv);
int cmd_checkpoint(int argc, char **argv);
int cmd_backup(int argc, char **argv);
int cmd_restore(int argc, char **argv);
int cmd_top(int argc, char **argv);

/* `civibus status --http`: print the operator overview from the monitoring
 * endpoint http ("ADDR:PORT"), or with as_json its /api/status document as
 * received. timeout_ms 0: 5000. Returns the exit code. */
int cli_status_http(const char *http, int timeout_ms, bool as_json);

#endif
