/* status - `civibus status`: is the hub there, and how far are its subscribers?
 *
 * With --http ADDR:PORT the operator's overview of the whole hub is read from
 * its monitoring endpoint instead (overview.c), and no hub option is needed.
 *
 * A ping proves the hub reachable, then a status request lists the log's
 * range and every durable subscription with its lag (last_seq - cursor), and
 * marks those behind the log's retention.
 * Warnings of the hub for the calling agency (its keys expiring soon) are
 * printed on stdout as "warning" lines after the hub's summary, before the
 * subscription table, and, with --json, as "warnings".
 * Printed as an aligned table, or as one JSON object with --json; with --json
 * an unreachable hub still gives an object ({"reachable":false,...}) on stdout
 * besides the exit code 3, for monitoring scripts.
 */
#include <inttypes.h>
#include <jansson.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "cli.h"
#include "jsonev.h"
#include "opts.h"

enum { S_OPT_JSON = CLI_OPT_CMD, S_OPT_HTTP };

static const struct option s_longopts[] = {
    CLI_OPTS_HELP,
    CLI_OPTS_CONN,
    {"json", no_argument, NULL, S_OPT_JSON},
    {"http", required_argument, NULL, S_OPT_HTTP},
    {NULL, 0, NULL, 0},
};

static void s_usage(void)
{
    printf("usage: civibus status [--json] [HUB OPTIONS]\n"
           "       civibus status --http ADDR:PORT [--json] [--timeout MS]\n\n"
           "Check that the hub answers and show its version, instance, the range of its\n"
           "log and every subscription of this agency with its cursor and lag (last seq -\n"
           "cursor). With --http, show the operator's overview of the whole hub instead\n"
           "(rates, agencies, every subscription, refusals, warnings), read from the hub's\n"
           "monitoring endpoint; no agency key is needed.\n\n"
           "Options:\n"
           "  --json             print one JSON object instead of a table (with --http: the\n"
           "                     endpoint's /api/status document as it came)\n"
           "  --http ADDR:PORT   the hub's monitoring endpoint (civibusd's http setting)\n"
           "  --help             this text\n\n" CLI_CONN_USAGE);
}

static uint64_t s_lag(const civ_status_t *st, const civ_sub_status_t *sub)
{
    return st->last_seq > sub->cursor ? st->last_seq - sub->cursor : 0;
}

static json_t *s_filters_json(const char *csv)
{
    json_t *arr = json_array();
    char buf[sizeof ((civ_sub_status_t *)0)->filters];
    snprintf(buf, sizeof buf, "%s", csv);
    for (char *save = NULL, *f = strtok_r(buf, ",", &save); arr && f; f = strtok_r(NULL, ",", &save))
        json_array_append_new(arr, json_string(f));
    return arr;
}

/* Print obj as one line and free it. */
static int s_print_json(json_t *obj)
{
    char *text = obj ? json_dumps(obj, JSON_COMPACT) : NULL;
    json_decref(obj);
    if (!text) {
        cli_err("status: cannot encode the answer as JSON");
        return CLI_EXIT_INTERNAL;
    }
    puts(text);
    free(text);
    return CLI_EXIT_OK;
}

static int s_json(const char *endpoint, const civ_status_t *st)
{
    char started[JSONEV_TIME_LEN];
    jsonev_time_format(st->started_at, started, sizeof started);
    json_t *subs = json_array();
    for (size_t i = 0; subs && i < st->n_subscriptions; i++) {
        const civ_sub_status_t *s = &st->subscriptions[i];
        json_array_append_new(
            subs, json_pack("{s:s, s:s, s:o, s:I, s:I, s:b, s:I, s:I, s:I, s:I, s:b}", "agency", s->agency, "name",
                            s->name, "filters", s_filters_json(s->filters), "cursor", (json_int_t)s->cursor, "lag",
                            (json_int_t)s_lag(st, s), "connected", s->connected, "credit", (json_int_t)s->credit,
                            "in_flight", (json_int_t)s->in_flight, "redeliveries", (json_int_t)s->redeliveries,
                            "dead_letters", (json_int_t)s->dead_letters, "behind_retention", s->behind_retention));
    }
    json_t *warnings = json_array();
    for (size_t i = 0; warnings && i < st->n_warnings; i++)
        json_array_append_new(warnings, json_string(st->warnings[i]));
    json_t *obj = json_pack("{s:s, s:b, s:s, s:s, s:s, s:I, s:I, s:o, s:o}", "endpoint", endpoint, "reachable", 1,
                            "version", st->version, "hub_instance", st->hub_instance, "started_at", started,
                            "first_seq", (json_int_t)st->first_seq, "last_seq", (json_int_t)st->last_seq,
                            "subscriptions", subs, "warnings", warnings);
    return s_print_json(obj);
}

static int s_width(int w, const char *s)
{
    int n = (int)strlen(s);
    return n > w ? n : w;
}

static int s_table(const char *endpoint, const civ_status_t *st)
{
    char started[JSONEV_TIME_LEN];
    jsonev_time_format(st->started_at, started, sizeof started);
    printf("hub            %s (reachable)\n"
           "version        %s\n"
           "instance       %s\n"
           "started        %s\n"
           "log            first seq %" PRIu64 ", last seq %" PRIu64 "\n"
           "subscriptions  %zu\n",
           endpoint, st->version, st->hub_instance, started, st->first_seq, st->last_seq, st->n_subscriptions);
    for (size_t i = 0; i < st->n_warnings; i++)
        printf("warning        %s\n", st->warnings[i]);
    if (st->n_subscriptions == 0)
        return CLI_EXIT_OK;
    int wa = 6, wn = 4, wf = 7; /* widths of the header words */
    for (size_t i = 0; i < st->n_subscriptions; i++) {
        wa = s_width(wa, st->subscriptions[i].agency);
        wn = s_width(wn, st->subscriptions[i].name);
        wf = s_width(wf, st->subscriptions[i].filters);
    }
    printf("\n%-*s  %-*s  %-*s  %12s  %12s  %s\n", wa, "AGENCY", wn, "NAME", wf, "FILTERS", "CURSOR", "LAG",
           "CONNECTED");
    for (size_t i = 0; i < st->n_subscriptions; i++) {
        const civ_sub_status_t *s = &st->subscriptions[i];
        printf("%-*s  %-*s  %-*s  %12" PRIu64 "  %12" PRIu64 "  %s%s\n", wa, s->agency, wn, s->name, wf, s->filters,
               s->cursor, s_lag(st, s), s->connected ? "yes" : "no",
               s->behind_retention ? "  (behind retention: events after the cursor were deleted)" : "");
    }
    return CLI_EXIT_OK;
}

int cmd_status(int argc, char **argv)
{
    cli_conn_t conn = {0};
    bool as_json = false;
    const char *http = NULL;
    int c;
    while ((c = cli_getopt_conn(argc, argv, s_longopts, &conn)) != -1) {
        switch (c) {
        case CLI_OPT_HELP: s_usage(); return CLI_EXIT_OK;
        case S_OPT_JSON: as_json = true; break;
        case S_OPT_HTTP: http = optarg; break;
        default: return CLI_EXIT_USAGE;
        }
    }
    if (http)
        return cli_status_http(http, conn.timeout_ms, as_json);
    int rc = cli_conn_finish(&conn);
    if (rc != CLI_EXIT_OK)
        return rc;
    civ_client_t *client = cli_connect(&conn, 0, &rc);
    if (!client)
        return rc;
    civ_status_t *st = NULL;
    int err = civ_ping(client, NULL);
    if (err == CIV_OK)
        err = civ_status(client, &st);
    if (err != CIV_OK) {
        if (err == CIV_E_TIMEOUT)
            cli_err("status: hub %s unreachable: no answer in time", conn.hub);
        else
            cli_err("status: %s", civ_strerror(err));
        rc = cli_exit_code(err);
        if (as_json)
            s_print_json(json_pack("{s:s, s:b, s:s}", "endpoint", conn.hub, "reachable", err != CIV_E_TIMEOUT,
                                   "error", civ_error_name(err)));
    } else {
        rc = as_json ? s_json(conn.hub, st) : s_table(conn.hub, st);
    }
    civ_status_destroy(&st);
    civ_client_destroy(&client);
    return rc;
}
