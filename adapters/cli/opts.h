/* opts - option parsing shared by the commands of the civibus tool.
 *
 * Commands parse with getopt_long (long options only). The options that say
 * how to reach a hub (--hub, --hub-key, --key, --timeout) are the same for
 * every command that talks to one; each falls back to an environment variable
 * (CIVIBUS_HUB, CIVIBUS_HUB_KEY, CIVIBUS_KEY, CIVIBUS_TIMEOUT) and a flag
 * always wins over the environment. Errors are printed here, in the tool's
 * "civibus: message" form, and reported to the caller as exit codes.
 */
#ifndef CIVIBUS_CLI_OPTS_H
#define CIVIBUS_CLI_OPTS_H

#include <getopt.h>
#include <stdbool.h>
#include <stdint.h>

#include "civibus.h"

/* getopt_long values of the shared options; commands number theirs from
 * CLI_OPT_CMD upwards. */
enum {
    CLI_OPT_HELP = 0x100,
    CLI_OPT_HUB,
    CLI_OPT_HUB_KEY,
    CLI_OPT_KEY,
    CLI_OPT_TIMEOUT,
    CLI_OPT_CMD = 0x200
};

#define CLI_OPTS_HELP {"help", no_argument, NULL, CLI_OPT_HELP}
#define CLI_OPTS_CONN                                        \
    {"hub", required_argument, NULL, CLI_OPT_HUB},           \
        {"hub-key", required_argument, NULL, CLI_OPT_HUB_KEY}, \
        {"key", required_argument, NULL, CLI_OPT_KEY},       \
        {"timeout", required_argument, NULL, CLI_OPT_TIMEOUT}

/* Usage lines of the shared options, for the commands' --help. */
#define CLI_CONN_USAGE                                                                  \
    "Hub options (each also from the environment; a flag wins):\n"                     \
    "  --hub ENDPOINT    hub endpoint, e.g. tcp://hub.example:7400   [CIVIBUS_HUB]\n"   \
    "  --hub-key FILE    the hub's public key file (hub.pub)         [CIVIBUS_HUB_KEY]\n" \
    "  --key FILE        this agency's secret key file (AGENCY.key)  [CIVIBUS_KEY]\n"   \
    "  --timeout MS      timeout of each hub request, milliseconds   [CIVIBUS_TIMEOUT]\n" \
    "                    (default 5000)\n"

/* How to reach the hub. Strings are borrowed from argv or the environment. */
typedef struct {
    const char *hub;
    const char *hub_key;
    const char *key;
    int timeout_ms; /* 0: not given */
    const char *sign_key; /* Ed25519 signing key (publish --sign-key); NULL: unsigned */
} cli_conn_t;

/* Next option, as getopt_long with argv[0] the command name. Returns the
 * option's value, -1 at the end, or '?' after printing a message about an
 * unknown option, a missing argument or a stray positional argument. */
int cli_getopt(int argc, char **argv, const struct option *longopts);

/* As cli_getopt for a command that talks to a hub: the hub options are
 * stored in conn as they come, and the command sees only its own. Returns
 * '?' also after printing a message about a hub option's invalid argument. */
int cli_getopt_conn(int argc, char **argv, const struct option *longopts, cli_conn_t *conn);

/* Fill what the flags left unset from the environment and check that
 * everything needed is there. Returns 0, or CLI_EXIT_USAGE after printing. */
int cli_conn_finish(cli_conn_t *conn);

/* Create a client from conn (after cli_conn_finish). window is the publish
 * window (0: the library's default). Returns the client, or NULL after
 * printing and setting *exit_code. */
civ_client_t *cli_connect(const cli_conn_t *conn, unsigned window, int *exit_code);

/* Parse a start point: "first", "latest", "cursor", "seq:N", "time:ISO8601".
 * allowed is a bit set of (1 << civ_start_kind_t) accepted kinds. Returns 0,
 * or -1 after printing a message naming option. */
int cli_parse_start(const char *option, const char *s, unsigned allowed, civ_start_t *out);

/* Parse a decimal unsigned integer within [min, max]. Returns 0, or -1 after
 * printing a message naming option. */
int cli_parse_u64(const char *option, const char *s, uint64_t min, uint64_t max, uint64_t *out);

#endif
