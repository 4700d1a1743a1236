/* opts - option parsing shared by the commands of the civibus tool.
 *
 * See opts.h. getopt's own messages are switched off (opterr = 0) so that
 * every message has the tool's "civibus: ..." form and names the command.
 */
#include "opts.h"

#include <errno.h>
#include <inttypes.h>
#include <stdlib.h>
#include <string.h>

#include "cli.h"
#include "jsonev.h"

#define CLI_TIMEOUT_MAX 3600000 /* one hour, in milliseconds */

int cli_getopt(int argc, char **argv, const struct option *longopts)
{
    opterr = 0;
    int c = getopt_long(argc, argv, ":", longopts, NULL);
    if (c == -1) {
        if (optind < argc) {
            cli_err("%s: unexpected argument '%s' (see civibus %s --help)", argv[0], argv[optind], argv[0]);
            return '?';
        }
        return -1;
    }
    if (c == ':') {
        const char *opt = argv[optind - 1];
        cli_err("%s: option '%s' needs an argument", argv[0], opt);
        return '?';
    }
    if (c == '?') {
        const char *opt = optind > 0 && optind <= argc ? argv[optind - 1] : "?";
        cli_err("%s: unknown option '%s' (see civibus %s --help)", argv[0], opt, argv[0]);
        return '?';
    }
    return c;
}

int cli_parse_u64(const char *option, const char *s, uint64_t min, uint64_t max, uint64_t *out)
{
    char *end = NULL;
    errno = 0;
    if (*s < '0' || *s > '9') /* strtoull would accept " -1" */
        goto bad;
    unsigned long long v = strtoull(s, &end, 10);
    if (errno != 0 || *end != '\0' || v < min || v > max)
        goto bad;
    *out = v;
    return 0;
bad:
    cli_err("%s: expected a number from %" PRIu64 " to %" PRIu64 ", got '%s'", option, min, max, s);
    return -1;
}

static int s_parse_timeout(const char *what, const char *s, int *out)
{
    uint64_t v;
    if (cli_parse_u64(what, s, 1, CLI_TIMEOUT_MAX, &v) != 0)
        return -1;
    *out = (int)v;
    return 0;
}

/* If opt is one of the hub options, store it and return 1; return 0 when it
 * is not one, or -1 after printing a message when its argument is invalid. */
static int s_conn_option(cli_conn_t *conn, int opt, const char *arg)
{
    switch (opt) {
    case CLI_OPT_HUB: conn->hub = arg; return 1;
    case CLI_OPT_HUB_KEY: conn->hub_key = arg; return 1;
    case CLI_OPT_KEY: conn->key = arg; return 1;
    case CLI_OPT_TIMEOUT: return s_parse_timeout("--timeout", arg, &conn->timeout_ms) == 0 ? 1 : -1;
    default: return 0;
    }
}

int cli_getopt_conn(int argc, char **argv, const struct option *longopts, cli_conn_t *conn)
{
    int c;
    while ((c = cli_getopt(argc, argv, longopts)) != -1) {
        int r = s_conn_option(conn, c, optarg);
        if (r < 0)
            return '?';
        if (r == 0)
            return c;
    }
    return -1;
}

static const char *s_env(const char *name)
{
    const char *v = getenv(name);
    return v && *v ? v : NULL;
}

int cli_conn_finish(cli_conn_t *conn)
{
    if (!conn->hub)
        conn->hub = s_env("CIVIBUS_HUB");
    if (!conn->hub_key)
        conn->hub_key = s_env("CIVIBUS_HUB_KEY");
    if (!conn->key)
        conn->key = s_env("CIVIBUS_KEY");
    if (conn->timeout_ms == 0) {
        const char *t = s_env("CIVIBUS_TIMEOUT");
        if (t && s_parse_timeout("CIVIBUS_TIMEOUT", t, &conn->timeout_ms) != 0)
            return CLI_EXIT_USAGE;
    }
    if (!conn->hub) {
        cli_err("no hub endpoint: give --hub or set CIVIBUS_HUB");
        return CLI_EXIT_USAGE;
    }
    if (!conn->hub_key) {
        cli_err("no hub public key: give --hub-key or set CIVIBUS_HUB_KEY");
        return CLI_EXIT_USAGE;
    }
    if (!conn->key) {
        cli_err("no agency secret key: give --key or set CIVIBUS_KEY");
        return CLI_EXIT_USAGE;
    }
    return 0;
}

civ_client_t *cli_connect(const cli_conn_t *conn, unsigned window, int *exit_code)
{
    civ_options_t options = {
        .endpoint = conn->hub,
        .hub_key_file = conn->hub_key,
        .key_file = conn->key,
        .sign_key_file = conn->sign_key,
        .timeout_ms = conn->timeout_ms,
        .window = window,
    };
    civ_error_t err = {0};
    civ_client_t *client = civ_client_new(&options, &err);
    if (!client) {
        /* A bad endpoint string is the user's mistake, not the network's. */
        int code = err.code == CIV_E_INVALID ? CLI_EXIT_USAGE : cli_exit_code(err.code);
        if (err.message[0])
            cli_err("%s", err.message);
        else
            cli_err("cannot connect to %s: %s", conn->hub, civ_strerror(err.code));
        *exit_code = code ? code : CLI_EXIT_INTERNAL;
    }
    return client;
}

int cli_parse_start(const char *option, const char *s, unsigned allowed, civ_start_t *out)
{
    civ_start_t st = {0};
    if (strcmp(s, "first") == 0) {
        st.kind = CIV_START_FIRST;
    } else if (strcmp(s, "latest") == 0) {
        st.kind = CIV_START_LATEST;
    } else if (strcmp(s, "cursor") == 0) {
        st.kind = CIV_START_CURSOR;
    } else if (strncmp(s, "seq:", 4) == 0) {
        st.kind = CIV_START_SEQ;
        if (cli_parse_u64(option, s + 4, 1, UINT64_MAX, &st.seq) != 0)
            return -1;
    } else if (strncmp(s, "time:", 5) == 0) {
        st.kind = CIV_START_TIME;
        if (jsonev_time_parse(s + 5, &st.time_us) != JSONEV_OK) {
            cli_err("%s: '%s' is not an ISO 8601 time such as 2026-11-23T04:23:57Z", option, s + 5);
            return -1;
        }
    } else {
        goto bad;
    }
    if (!(allowed & (1u << st.kind)))
        goto bad;
    *out = st;
    return 0;
bad:
    cli_err("%s: expected first%s%s, seq:N or time:ISO8601, got '%s'", option,
            (allowed & (1u << CIV_START_LATEST)) ? ", latest" : "",
            (allowed & (1u << CIV_START_CURSOR)) ? ", cursor" : "", s);
    return -1;
}
