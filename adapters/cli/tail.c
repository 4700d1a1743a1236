/* tail - `civibus tail` (follow a subscription) and `civibus replay` (read the log).
 *
 * Both print events as JSON lines (jsonev_delivery_line). tail acknowledges
 * only what it has printed and flushed: after a batch, when no further event is
 * immediately available or every S_ACK_EVERY events, it flushes stdout and then
 * acks the last printed sequence number. So an event is acknowledged only once
 * the reader has it, and a crash or a closed pipe leads to redelivery, never to
 * loss. SIGINT and SIGTERM stop tail after acknowledging what was printed.
 */
#include <inttypes.h>
#include <signal.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "cli.h"
#include "codec.h"
#include "jsonev.h"
#include "opts.h"

#define S_ACK_EVERY 256    /* events printed between acks, at most */
#define S_WINDOW 256       /* default credit of a subscription */
#define S_WINDOW_MAX 65536
#define S_FILTERS_MAX 32 /* the hub's limit per subscription */
#define S_ALL_STARTS (1u << CIV_START_CURSOR | 1u << CIV_START_FIRST | 1u << CIV_START_LATEST | \
                      1u << CIV_START_SEQ | 1u << CIV_START_TIME)
#define S_POLL_MS 200      /* how often a waiting tail looks at the signal flag */

enum { S_OPT_NAME = CLI_OPT_CMD, S_OPT_FILTER, S_OPT_FROM, S_OPT_COUNT, S_OPT_WINDOW, S_OPT_VERIFY, S_OPT_REGISTRY };

static const struct option s_tail_opts[] = {
    CLI_OPTS_HELP,
    CLI_OPTS_CONN,
    {"name", required_argument, NULL, S_OPT_NAME},
    {"filter", required_argument, NULL, S_OPT_FILTER},
    {"from", required_argument, NULL, S_OPT_FROM},
    {"count", required_argument, NULL, S_OPT_COUNT},
    {"window", required_argument, NULL, S_OPT_WINDOW},
    {"verify", no_argument, NULL, S_OPT_VERIFY},
    {"registry", required_argument, NULL, S_OPT_REGISTRY},
    {NULL, 0, NULL, 0},
};

static const struct option s_replay_opts[] = {
    CLI_OPTS_HELP,
    CLI_OPTS_CONN,
    {"from", required_argument, NULL, S_OPT_FROM},
    {"count", required_argument, NULL, S_OPT_COUNT},
    {"verify", no_argument, NULL, S_OPT_VERIFY},
    {"registry", required_argument, NULL, S_OPT_REGISTRY},
    {NULL, 0, NULL, 0},
};

#define S_EVENT_USAGE                                                                              \
    "Each event is printed as one JSON line:\n"                                                   \
    "  {\"seq\":N,\"received_at\":TIME,\"source\":...,\"event_id\":...,\"type\":...,\"subject\":...,\n"   \
    "   \"correlation_id\":...,\"occurred_at\":TIME,\"content_type\":...,\"headers\":{...},\n"         \
    "   \"data\":JSON | \"data_base64\":...}\n"                                                      \
    "subject, correlation_id and headers are left out when empty; data is used when the\n"        \
    "content type is application/json and the payload is JSON. Times are UTC ISO 8601.\n\n"

static void s_tail_usage(void)
{
    printf("usage: civibus tail --name SUB --filter F [--filter F ...]\n"
           "                    [--from first|latest|cursor|seq:N|time:ISO8601] [--count N]\n"
           "                    [--window N] [HUB OPTIONS]\n\n"
           "Open (or re-open) the durable subscription SUB of this agency and print its\n"
           "events until --count events were printed or SIGINT/SIGTERM. Printed events are\n"
           "acknowledged, so the next tail of SUB continues after them.\n\n"
           "Options:\n"
           "  --name SUB      subscription name: 1-64 characters of A-Z a-z 0-9 . _ -\n"
           "  --filter F      event types to receive: \"*\", a type, or a prefix \"a.b.*\";\n"
           "                  repeatable, or comma-separated\n"
           "  --from START    where to start (default: the saved cursor, or first if none):\n"
           "                  first, latest (only new events), cursor, seq:N, time:ISO8601\n"
           "  --count N       stop after N events\n"
           "  --window N      events the hub may send ahead of printing (default %d)\n"
           "  --verify        check each event's signature (docs/SIGNING.md): print \"verified\":true,\n"
           "                  or name the seq and why on stderr; exit 1 at the end if any failed\n"
           "  --registry DIR  the agency registry holding the signing keys  [CIVIBUS_REGISTRY]\n"
           "  --help          this text\n\n" S_EVENT_USAGE CLI_CONN_USAGE,
           S_WINDOW);
}

static void s_replay_usage(void)
{
    printf("usage: civibus replay [--from first|seq:N|time:ISO8601] [--count N] [HUB OPTIONS]\n\n"
           "Print the hub's log from a point (default: first), up to the last event at the\n"
           "time of the call or N events.\n\n"
           "Options:\n"
           "  --from START    first, seq:N, or time:ISO8601 (the first event received then\n"
           "                  or later)\n"
           "  --count N       print at most N events\n"
           "  --verify        check each event's signature (docs/SIGNING.md): print \"verified\":true,\n"
           "                  or name the seq and why on stderr; exit 1 at the end if any failed\n"
           "  --registry DIR  the agency registry holding the signing keys  [CIVIBUS_REGISTRY]\n"
           "  --help          this text\n\n" S_EVENT_USAGE CLI_CONN_USAGE);
}

/* --verify: the registry's signing keys, and how many events failed. */
static civ_verifier_t *s_verifier;
static uint64_t s_unverified;

/* Load the verifier for --verify (registry: --registry or CIVIBUS_REGISTRY).
 * Returns an exit code. */
static int s_verify_open(const char *cmd, bool verify, const char *registry)
{
    if (!verify)
        return CLI_EXIT_OK;
    if (!registry || !registry[0])
        registry = getenv("CIVIBUS_REGISTRY");
    if (!registry || !registry[0]) {
        cli_err("%s: --verify needs the agency registry: give --registry DIR or set CIVIBUS_REGISTRY", cmd);
        return CLI_EXIT_USAGE;
    }
    civ_error_t err = {0};
    s_verifier = civ_verifier_new(registry, &err);
    if (!s_verifier) {
        cli_err("%s: %s", cmd, err.message);
        return CLI_EXIT_FILE;
    }
    return CLI_EXIT_OK;
}

/* After --verify: rc, or CLI_EXIT_REFUSED when an event failed. */
static int s_verify_close(const char *cmd, int rc)
{
    if (!s_verifier)
        return rc;
    civ_verifier_destroy(&s_verifier);
    if (s_unverified) {
        cli_err("%s: %" PRIu64 " event(s) failed verification", cmd, s_unverified);
        return rc == CLI_EXIT_OK ? CLI_EXIT_REFUSED : rc;
    }
    return rc;
}

/* Print one event line (with "verified":true when --verify passed; a failure
 * is named on stderr). Returns 0, or -1 when out of memory. */
static int s_print(const civ_delivery_t *d)
{
    char *line = jsonev_delivery_line(d);
    if (!line) {
        cli_err("out of memory");
        return -1;
    }
    if (s_verifier) {
        char why[256];
        int v = civ_verifier_check(s_verifier, d, why, sizeof why);
        size_t len = strlen(line);
        if (v == CIV_OK && len && line[len - 1] == '}') {
            line[len - 1] = '\0';
            fputs(line, stdout);
            fputs(",\"verified\":true}\n", stdout);
            free(line);
            return 0;
        }
        s_unverified++;
        cli_err("seq %" PRIu64 ": not verified: %s: %s", d->seq, civ_error_name(v), why[0] ? why : civ_strerror(v));
    }
    fputs(line, stdout);
    fputc('\n', stdout);
    free(line);
    return 0;
}

/* --- tail ------------------------------------------------------------------------ */

static volatile sig_atomic_t s_stop;

static void s_on_signal(int sig)
{
    (void)sig;
    s_stop = 1;
}

/* Stop on the first SIGINT/SIGTERM; a second one kills as usual. No
 * SA_RESTART, so that a blocking wait returns early. */
static void s_catch_signals(void)
{
    struct sigaction sa;
    memset(&sa, 0, sizeof sa);
    sa.sa_handler = s_on_signal;
    sa.sa_flags = (int)SA_RESETHAND;
    sigemptyset(&sa.sa_mask);
    sigaction(SIGINT, &sa, NULL);
    sigaction(SIGTERM, &sa, NULL);
}

/* Add the comma-separated filters of arg (modified in place). */
static int s_add_filters(char *arg, const char **filters, size_t *n)
{
    for (char *save = NULL, *f = strtok_r(arg, ",", &save); f; f = strtok_r(NULL, ",", &save)) {
        if (!codec_filter_valid(f)) {
            cli_err("tail: invalid filter '%s': use \"*\", an event type or a prefix such as population.*", f);
            return -1;
        }
        if (*n == S_FILTERS_MAX) {
            cli_err("tail: more than %d filters", S_FILTERS_MAX);
            return -1;
        }
        filters[(*n)++] = f;
    }
    return 0;
}

typedef struct {
    civ_client_t *client;
    const char *name;
    uint64_t last;    /* last printed sequence number */
    uint64_t unacked; /* printed since the last ack */
    bool out_closed;  /* the reader of stdout went away */
} s_tail_t;

/* Flush what was printed and acknowledge it. Returns an exit code. */
static int s_commit(s_tail_t *t)
{
    if (t->unacked == 0 || t->out_closed)
        return CLI_EXIT_OK;
    int f = cli_flush();
    if (f != 0) {
        t->out_closed = true; /* not acknowledged: it is delivered again */
        return f < 0 ? CLI_EXIT_FILE : CLI_EXIT_OK;
    }
    int rc = civ_ack(t->client, t->name, t->last);
    if (rc != CIV_OK) {
        cli_err("tail: cannot acknowledge seq %" PRIu64 ": %s", t->last, civ_strerror(rc));
        return cli_exit_code(rc);
    }
    t->unacked = 0;
    return CLI_EXIT_OK;
}

static int s_follow(s_tail_t *t, uint64_t count)
{
    uint64_t printed = 0;
    while (!s_stop && !t->out_closed && (count == 0 || printed < count)) {
        civ_delivery_t *d = NULL;
        int rc = civ_next(t->client, &d, t->unacked ? 0 : S_POLL_MS);
        if (rc == CIV_E_TIMEOUT) {
            rc = s_commit(t);
            if (rc != CLI_EXIT_OK)
                return rc;
            continue;
        }
        if (rc != CIV_OK) {
            if (s_stop) /* the signal interrupted the wait */
                break;
            if (rc == CIV_E_BEHIND_RETENTION) /* the hub's words name the events lost */
                cli_err("tail: %s (%s)", civ_strerror(rc), civ_client_error(t->client));
            else
                cli_err("tail: %s", civ_strerror(rc));
            int commit = s_commit(t);
            return commit != CLI_EXIT_OK ? commit : cli_exit_code(rc);
        }
        int p = s_print(d);
        uint64_t seq = d->seq;
        civ_delivery_destroy(&d);
        if (p != 0)
            return CLI_EXIT_INTERNAL;
        t->last = seq;
        t->unacked++;
        printed++;
        if (t->unacked >= S_ACK_EVERY) {
            rc = s_commit(t);
            if (rc != CLI_EXIT_OK)
                return rc;
        }
    }
    return s_commit(t);
}

int cmd_tail(int argc, char **argv)
{
    cli_conn_t conn = {0};
    const char *name = NULL;
    const char *filters[S_FILTERS_MAX];
    size_t n_filters = 0;
    civ_start_t start = {.kind = CIV_START_CURSOR};
    uint64_t count = 0, window = S_WINDOW;
    bool verify = false;
    const char *registry = NULL;
    int c;
    while ((c = cli_getopt_conn(argc, argv, s_tail_opts, &conn)) != -1) {
        switch (c) {
        case CLI_OPT_HELP: s_tail_usage(); return CLI_EXIT_OK;
        case S_OPT_NAME: name = optarg; break;
        case S_OPT_FILTER:
            if (s_add_filters(optarg, filters, &n_filters) != 0)
                return CLI_EXIT_USAGE;
            break;
        case S_OPT_FROM:
            if (cli_parse_start("--from", optarg, S_ALL_STARTS, &start) != 0)
                return CLI_EXIT_USAGE;
            break;
        case S_OPT_COUNT:
            if (cli_parse_u64("--count", optarg, 1, UINT64_MAX, &count) != 0)
                return CLI_EXIT_USAGE;
            break;
        case S_OPT_WINDOW:
            if (cli_parse_u64("--window", optarg, 1, S_WINDOW_MAX, &window) != 0)
                return CLI_EXIT_USAGE;
            break;
        case S_OPT_VERIFY: verify = true; break;
        case S_OPT_REGISTRY: registry = optarg; break;
        default: return CLI_EXIT_USAGE;
        }
    }
    if (!name) {
        cli_err("tail: --name SUB is required");
        return CLI_EXIT_USAGE;
    }
    if (!codec_name_valid(name)) {
        cli_err("tail: invalid subscription name '%s': 1-%d characters of A-Z a-z 0-9 . _ -", name, CODEC_NAME_MAX);
        return CLI_EXIT_USAGE;
    }
    if (n_filters == 0) {
        cli_err("tail: at least one --filter is required (\"*\" for every event type)");
        return CLI_EXIT_USAGE;
    }
    int rc = cli_conn_finish(&conn);
    if (rc != CLI_EXIT_OK)
        return rc;
    if ((rc = s_verify_open("tail", verify, registry)) != CLI_EXIT_OK)
        return rc;
    s_tail_t t = {.name = name};
    t.client = cli_connect(&conn, 0, &rc);
    if (!t.client)
        return s_verify_close("tail", rc);
    s_catch_signals();
    int err = civ_subscribe(t.client, name, filters, n_filters, start, (uint32_t)window);
    if (err != CIV_OK) {
        if (err == CIV_E_TIMEOUT)
            cli_err("tail: no answer from the hub %s in time", conn.hub);
        else
            cli_err("tail: cannot subscribe %s: %s", name,
                    civ_client_error(t.client)[0] ? civ_client_error(t.client) : civ_strerror(err));
        rc = cli_exit_code(err);
    } else {
        rc = s_follow(&t, count);
        /* A round trip makes sure the last ack reached the hub before the
         * socket goes away; failing it only means redelivery next time. */
        if (rc == CLI_EXIT_OK && t.last > 0 && civ_ping(t.client, NULL) != CIV_OK)
            cli_err("tail: the hub did not confirm the last acknowledgement; "
                    "some events may be delivered again");
        civ_unsubscribe(t.client, name);
    }
    civ_client_destroy(&t.client);
    return s_verify_close("tail", rc);
}

/* --- replay ---------------------------------------------------------------------- */

int cmd_replay(int argc, char **argv)
{
    cli_conn_t conn = {0};
    civ_start_t from = {.kind = CIV_START_FIRST};
    uint64_t count = 0;
    bool verify = false;
    const char *registry = NULL;
    int c;
    while ((c = cli_getopt_conn(argc, argv, s_replay_opts, &conn)) != -1) {
        switch (c) {
        case CLI_OPT_HELP: s_replay_usage(); return CLI_EXIT_OK;
        case S_OPT_FROM: {
            unsigned allowed = 1u << CIV_START_FIRST | 1u << CIV_START_SEQ | 1u << CIV_START_TIME;
            if (cli_parse_start("--from", optarg, allowed, &from) != 0)
                return CLI_EXIT_USAGE;
            break;
        }
        case S_OPT_COUNT:
            if (cli_parse_u64("--count", optarg, 1, UINT64_MAX, &count) != 0)
                return CLI_EXIT_USAGE;
            break;
        case S_OPT_VERIFY: verify = true; break;
        case S_OPT_REGISTRY: registry = optarg; break;
        default: return CLI_EXIT_USAGE;
        }
    }
    int rc = cli_conn_finish(&conn);
    if (rc != CLI_EXIT_OK)
        return rc;
    if ((rc = s_verify_open("replay", verify, registry)) != CLI_EXIT_OK)
        return rc;
    civ_client_t *client = cli_connect(&conn, 0, &rc);
    if (!client)
        return s_verify_close("replay", rc);
    civ_error_t err = {0};
    civ_replay_t *replay = civ_replay_open(client, from, count, &err);
    if (!replay) {
        if (err.code == CIV_E_TIMEOUT)
            cli_err("replay: no answer from the hub %s in time", conn.hub);
        else
            cli_err("replay: %s", err.message[0] ? err.message : civ_strerror(err.code));
        rc = err.code ? cli_exit_code(err.code) : CLI_EXIT_INTERNAL;
        goto destroy_client;
    }
    rc = CLI_EXIT_OK;
    for (;;) {
        civ_delivery_t *d = NULL;
        int e = civ_replay_next(replay, &d, -1);
        if (e != CIV_OK) {
            if (e == CIV_E_BEHIND_RETENTION)
                cli_err("replay: %s (%s)", civ_strerror(e), civ_client_error(client));
            else
                cli_err("replay: %s", e == CIV_E_TIMEOUT ? "no answer from the hub in time" : civ_strerror(e));
            rc = cli_exit_code(e);
            break;
        }
        if (!d)
            break;
        int p = s_print(d);
        civ_delivery_destroy(&d);
        if (p != 0) {
            rc = CLI_EXIT_INTERNAL;
            break;
        }
        if (ferror(stdout)) { /* found early by stdio's own flushes */
            int f = cli_flush();
            rc = f < 0 ? CLI_EXIT_FILE : CLI_EXIT_OK;
            break;
        }
    }
    civ_replay_destroy(&replay);
destroy_client:
    civ_client_destroy(&client);
    return s_verify_close("replay", rc);
}
