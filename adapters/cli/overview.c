/* overview - `civibus status --http` and `civibus top`: the operator's view
 * of a hub, read from its monitoring endpoint (/api/status, see
 * docs/MONITORING.md) rather than over ZeroMQ, so it needs no agency key
 * and shows every agency and subscription.
 *
 * status prints the overview once (or passes the JSON through with
 * --json); top clears the terminal and prints it again every --interval
 * seconds, for --count rounds or until interrupted, and keeps trying while
 * the hub does not answer. Fields missing from the answer show as 0 or "-",
 * so that the tool keeps working against a hub of another version.
 */
#include <curl/curl.h>
#include <inttypes.h>
#include <jansson.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "cli.h"
#include "keyfile.h"
#include "opts.h"

#define S_DEFAULT_HTTP "127.0.0.1:7401"
#define S_BODY_MAX (64u * 1024 * 1024) /* a status document this big is not one */
#define S_TIMEOUT_MS 5000
#define S_TOP_REFUSALS 5 /* top keeps to one screen */
#define S_CLEAR "\033[H\033[2J"

/* ---- fetching ------------------------------------------------------------ */

typedef struct {
    char *data;
    size_t len;
    bool too_big;
} s_body_t;

static size_t s_collect(char *ptr, size_t size, size_t n, void *arg)
{
    s_body_t *b = arg;
    size_t add = size * n;
    if (b->len + add > S_BODY_MAX) {
        b->too_big = true;
        return 0;
    }
    char *grown = realloc(b->data, b->len + add + 1);
    if (!grown)
        return 0;
    memcpy(grown + b->len, ptr, add);
    b->len += add;
    grown[b->len] = '\0';
    b->data = grown;
    return add;
}

/* GET /api/status from http ("ADDR:PORT" or a URL's "http://host:port").
 * Returns CLI_EXIT_OK with *body (malloc'd, NUL-terminated), or
 * CLI_EXIT_UNREACHABLE / CLI_EXIT_INTERNAL with a message in err. */
static int s_fetch(const char *http, int timeout_ms, char **body, char *err, size_t err_len)
{
    *body = NULL;
    char url[512];
    bool has_scheme = strncmp(http, "http://", 7) == 0 || strncmp(http, "https://", 8) == 0;
    size_t n = strlen(http);
    while (n && http[n - 1] == '/')
        n--;
    snprintf(url, sizeof url, "%s%.*s/api/status", has_scheme ? "" : "http://", (int)n, http);
    CURL *curl = curl_easy_init();
    if (!curl) {
        snprintf(err, err_len, "cannot start an HTTP client");
        return CLI_EXIT_INTERNAL;
    }
    s_body_t b = {.data = NULL};
    char curl_err[CURL_ERROR_SIZE] = "";
    curl_easy_setopt(curl, CURLOPT_URL, url);
    curl_easy_setopt(curl, CURLOPT_TIMEOUT_MS, (long)timeout_ms);
    curl_easy_setopt(curl, CURLOPT_NOSIGNAL, 1L);
    curl_easy_setopt(curl, CURLOPT_ERRORBUFFER, curl_err);
    curl_easy_setopt(curl, CURLOPT_WRITEFUNCTION, s_collect);
    curl_easy_setopt(curl, CURLOPT_WRITEDATA, &b);
    CURLcode rc = curl_easy_perform(curl);
    long status = 0;
    if (rc == CURLE_OK)
        curl_easy_getinfo(curl, CURLINFO_RESPONSE_CODE, &status);
    curl_easy_cleanup(curl);
    int exit_code = CLI_EXIT_OK;
    if (rc != CURLE_OK) {
        snprintf(err, err_len, "%s: %s", url,
                 b.too_big ? "answer too large" : curl_err[0] ? curl_err : curl_easy_strerror(rc));
        exit_code = b.too_big ? CLI_EXIT_INTERNAL : CLI_EXIT_UNREACHABLE;
    } else if (status != 200) {
        snprintf(err, err_len, "%s: HTTP status %ld%s", url, status, status == 503 ? " (hub starting)" : "");
        exit_code = CLI_EXIT_UNREACHABLE;
    }
    if (exit_code != CLI_EXIT_OK) {
        free(b.data);
        return exit_code;
    }
    *body = b.data ? b.data : calloc(1, 1);
    return *body ? CLI_EXIT_OK : CLI_EXIT_INTERNAL;
}

/* ---- printing -------------------------------------------------------------- */

static json_int_t s_int(json_t *obj, const char *key)
{
    json_t *v = json_object_get(obj, key);
    return json_is_integer(v) ? json_integer_value(v) : 0;
}

static const char *s_str(json_t *obj, const char *key)
{
    const char *s = json_string_value(json_object_get(obj, key));
    return s ? s : "-";
}

static void s_time(json_t *obj, const char *key, char *buf, size_t len)
{
    json_t *v = json_object_get(obj, key);
    if (json_is_integer(v))
        keyfile_time_format(json_integer_value(v), buf, len);
    else
        snprintf(buf, len, "-");
}

static void s_bytes(json_int_t v, char *buf, size_t len)
{
    static const char *const units[] = {"B", "KiB", "MiB", "GiB", "TiB"};
    double d = (double)v;
    size_t u = 0;
    while (d >= 1024 && u + 1 < sizeof units / sizeof units[0]) {
        d /= 1024;
        u++;
    }
    if (u == 0)
        snprintf(buf, len, "%" JSON_INTEGER_FORMAT " B", v);
    else
        snprintf(buf, len, "%.1f %s", d, units[u]);
}

static void s_duration(json_int_t s, char *buf, size_t len)
{
    if (s < 0)
        s = 0;
    json_int_t d = s / 86400;
    if (d)
        snprintf(buf, len, "%" JSON_INTEGER_FORMAT "d %02d:%02d:%02d", d, (int)(s % 86400 / 3600),
                 (int)(s % 3600 / 60), (int)(s % 60));
    else
        snprintf(buf, len, "%02d:%02d:%02d", (int)(s / 3600), (int)(s % 3600 / 60), (int)(s % 60));
}

/* The last value of a throughput series and its maximum. */
static double s_series_last(json_t *arr, double *max)
{
    size_t i;
    json_t *v;
    double last = 0;
    *max = 0;
    json_array_foreach(arr, i, v)
    {
        last = json_number_value(v);
        if (last > *max)
            *max = last;
    }
    return last;
}

/* A series as one character per step, from ' ' (0) to '@' (its maximum). */
static void s_spark(FILE *out, const char *label, json_t *arr)
{
    static const char levels[] = " .:-=+*#%@";
    double max;
    s_series_last(arr, &max);
    fprintf(out, "%-14s |", label);
    size_t i;
    json_t *v;
    json_array_foreach(arr, i, v)
    {
        double x = json_number_value(v);
        size_t l = max > 0 ? (size_t)(x / max * (double)(sizeof levels - 2) + 0.5) : 0;
        if (x > 0 && l == 0)
            l = 1;
        fputc(levels[l], out);
    }
    fprintf(out, "| max %.1f/s\n", max);
}

static int s_width(json_t *arr, const char *key, int w)
{
    size_t i;
    json_t *e;
    json_array_foreach(arr, i, e)
    {
        int n = (int)strlen(s_str(e, key));
        if (n > w)
            w = n;
    }
    return w;
}

static void s_print_agencies(FILE *out, json_t *agencies)
{
    if (json_array_size(agencies) == 0)
        return;
    int wa = s_width(agencies, "agency", 6);
    fprintf(out, "\n%-*s  %11s  %12s  %10s  %10s\n", wa, "AGENCY", "CONNECTIONS", "ACCEPTED", "DUPLICATES",
            "REFUSED");
    size_t i;
    json_t *a;
    json_array_foreach(agencies, i, a)
    {
        fprintf(out, "%-*s  %11" JSON_INTEGER_FORMAT "  %12" JSON_INTEGER_FORMAT "  %10" JSON_INTEGER_FORMAT
                     "  %10" JSON_INTEGER_FORMAT "\n",
                wa, s_str(a, "agency"), s_int(a, "connections"), s_int(a, "accepted"), s_int(a, "duplicates"),
                s_int(a, "refused"));
    }
}

static void s_print_subs(FILE *out, json_t *subs)
{
    if (json_array_size(subs) == 0)
        return;
    int wn = s_width(subs, "name", 12), wa = s_width(subs, "agency", 6);
    fprintf(out, "\n%-*s  %-*s  %9s  %12s  %10s  %9s  %11s  %12s\n", wn, "SUBSCRIPTION", wa, "AGENCY", "CONNECTED",
            "CURSOR", "LAG", "IN FLIGHT", "REDELIVERED", "DEAD LETTERS");
    size_t i;
    json_t *s;
    json_array_foreach(subs, i, s)
    {
        bool behind = json_is_true(json_object_get(s, "behind_retention"));
        fprintf(out, "%-*s  %-*s  %9s  %12" JSON_INTEGER_FORMAT "  %10" JSON_INTEGER_FORMAT "  %9" JSON_INTEGER_FORMAT
                     "  %11" JSON_INTEGER_FORMAT "  %12" JSON_INTEGER_FORMAT "%s\n",
                wn, s_str(s, "name"), wa, s_str(s, "agency"),
                json_is_true(json_object_get(s, "connected")) ? "yes" : "no", s_int(s, "cursor"), s_int(s, "lag"),
                s_int(s, "in_flight"), s_int(s, "redeliveries"), s_int(s, "dead_letters"),
                behind ? "  behind retention" : "");
    }
}

/* The last `most` entries of arr (time, then the given fields), newest last. */
static void s_print_list(FILE *out, const char *title, json_t *arr, size_t most, const char *const *fields)
{
    size_t n = json_array_size(arr);
    if (n == 0)
        return;
    fprintf(out, "\n%s\n", title);
    for (size_t i = n > most ? n - most : 0; i < n; i++) {
        json_t *e = json_array_get(arr, i);
        char when[KEYFILE_TIME_LEN];
        s_time(e, "time", when, sizeof when);
        fprintf(out, "%s", when);
        for (size_t k = 0; fields[k]; k++)
            fprintf(out, "  %s", s_str(e, fields[k]));
        fputc('\n', out);
    }
}

static void s_print(FILE *out, const char *http, json_t *st, size_t most_refusals)
{
    char a[64], b[64], c[64], when[KEYFILE_TIME_LEN];
    bool ready = json_is_true(json_object_get(st, "ready"));
    fprintf(out, "hub            %s  %s", http, ready ? "ready" : "NOT READY");
    if (!ready)
        fprintf(out, " (%s)", s_str(st, "not_ready"));
    fputc('\n', out);
    s_duration(s_int(st, "uptime_s"), a, sizeof a);
    s_time(st, "started_at", when, sizeof when);
    fprintf(out, "version        %s, instance %s, up %s since %s\n", s_str(st, "version"), s_str(st, "instance"), a,
            when);
    json_t *log = json_object_get(st, "log");
    s_bytes(s_int(log, "bytes"), a, sizeof a);
    fprintf(out, "log            seq %" JSON_INTEGER_FORMAT " to %" JSON_INTEGER_FORMAT ", %" JSON_INTEGER_FORMAT
                 " entries, %s\n",
            s_int(log, "first_seq"), s_int(log, "last_seq"), s_int(log, "entries"), a);
    s_bytes(s_int(log, "map_used_bytes"), a, sizeof a);
    s_bytes(s_int(log, "map_size_bytes"), b, sizeof b);
    s_bytes(s_int(log, "map_max_bytes"), c, sizeof c);
    fprintf(out, "storage        %s used of a %s map, ceiling %s%s\n", a, b, c,
            json_is_true(json_object_get(st, "storage_full")) ? "  FULL" : "");
    s_time(log, "checkpoint_time", when, sizeof when);
    fprintf(out, "checkpoint     seq %" JSON_INTEGER_FORMAT " at %s\n", s_int(log, "checkpoint_seq"), when);
    json_t *t = json_object_get(st, "totals");
    fprintf(out, "totals         accepted %" JSON_INTEGER_FORMAT ", duplicates %" JSON_INTEGER_FORMAT
                 ", refused %" JSON_INTEGER_FORMAT ", delivered %" JSON_INTEGER_FORMAT
                 ", auth failures %" JSON_INTEGER_FORMAT "\n",
            s_int(t, "accepted"), s_int(t, "duplicates"), s_int(t, "refused"), s_int(t, "delivered"),
            s_int(t, "auth_failures"));
    json_t *tp = json_object_get(st, "throughput");
    double max;
    double acc = s_series_last(json_object_get(tp, "accepted"), &max);
    double del = s_series_last(json_object_get(tp, "delivered"), &max);
    double ref = s_series_last(json_object_get(tp, "refused"), &max);
    fprintf(out, "per second     accepted %.1f, delivered %.1f, refused %.1f (last %" JSON_INTEGER_FORMAT " s)\n", acc,
            del, ref, s_int(tp, "step_s"));
    if (json_array_size(json_object_get(tp, "accepted"))) {
        s_spark(out, "accepted", json_object_get(tp, "accepted"));
        s_spark(out, "delivered", json_object_get(tp, "delivered"));
    }
    fprintf(out, "connections    %" JSON_INTEGER_FORMAT " open\n", s_int(st, "connections_open"));
    json_t *warnings = json_object_get(st, "warnings");
    fprintf(out, "warnings       %zu\n", json_array_size(warnings));
    s_print_agencies(out, json_object_get(st, "agencies"));
    s_print_subs(out, json_object_get(st, "subscriptions"));
    static const char *const refusal_fields[] = {"agency", "code", "reason", NULL};
    static const char *const warning_fields[] = {"kind", "message", NULL};
    s_print_list(out, "REFUSALS (newest last)", json_object_get(st, "refusals"), most_refusals, refusal_fields);
    s_print_list(out, "WARNINGS", warnings, SIZE_MAX, warning_fields);
}

/* Fetch and print the overview once; the exit code. Errors are printed as
 * "civibus: cmd: ...". */
static int s_show(const char *cmd, const char *http, int timeout_ms, bool as_json, size_t most_refusals)
{
    FILE *out = stdout;
    char err[1024];
    char *body = NULL;
    int rc = s_fetch(http, timeout_ms, &body, err, sizeof err);
    if (rc != CLI_EXIT_OK) {
        cli_err("%s: %s", cmd, err);
        if (as_json) {
            json_t *o = json_pack("{s:s, s:b, s:s}", "endpoint", http, "reachable", 0, "error", err);
            char *text = o ? json_dumps(o, JSON_COMPACT) : NULL;
            if (text)
                fprintf(out, "%s\n", text);
            free(text);
            json_decref(o);
        }
        return rc;
    }
    json_error_t jerr;
    json_t *st = json_loads(body, 0, &jerr);
    if (!json_is_object(st)) {
        cli_err("%s: %s did not answer with a JSON object (%s)", cmd, http, jerr.text);
        rc = CLI_EXIT_INTERNAL;
    } else if (as_json) {
        fprintf(out, "%s\n", body);
    } else {
        s_print(out, http, st, most_refusals);
    }
    json_decref(st);
    free(body);
    return rc;
}

int cli_status_http(const char *http, int timeout_ms, bool as_json)
{
    return s_show("status", http, timeout_ms ? timeout_ms : S_TIMEOUT_MS, as_json, SIZE_MAX);
}

/* ---- civibus top -------------------------------------------------------------- */

enum { S_OPT_HTTP = CLI_OPT_CMD, S_OPT_INTERVAL, S_OPT_COUNT };

static const struct option s_top_opts[] = {
    CLI_OPTS_HELP,
    {"http", required_argument, NULL, S_OPT_HTTP},
    {"interval", required_argument, NULL, S_OPT_INTERVAL},
    {"count", required_argument, NULL, S_OPT_COUNT},
    {"timeout", required_argument, NULL, CLI_OPT_TIMEOUT},
    {NULL, 0, NULL, 0},
};

static void s_top_usage(void)
{
    printf("usage: civibus top [--http ADDR:PORT] [--interval S] [--count N] [--timeout MS]\n\n"
           "Show the hub's operator overview (log, rates, agencies, subscriptions and their\n"
           "lag, recent refusals, warnings) from its monitoring endpoint, refreshed in the\n"
           "terminal until interrupted. Needs no agency key.\n\n"
           "Options:\n"
           "  --http ADDR:PORT  the hub's monitoring endpoint [CIVIBUS_HTTP] (default " S_DEFAULT_HTTP ")\n"
           "  --interval S      seconds between refreshes, 1 to 3600 (default 2)\n"
           "  --count N         stop after N refreshes (default: never)\n"
           "  --timeout MS      timeout of each request, milliseconds (default 5000)\n"
           "  --help            this text\n");
}

int cmd_top(int argc, char **argv)
{
    const char *http = NULL;
    uint64_t interval = 2, count = 0, timeout = S_TIMEOUT_MS;
    int c;
    while ((c = cli_getopt(argc, argv, s_top_opts)) != -1) {
        switch (c) {
        case CLI_OPT_HELP: s_top_usage(); return CLI_EXIT_OK;
        case S_OPT_HTTP: http = optarg; break;
        case S_OPT_INTERVAL:
            if (cli_parse_u64("--interval", optarg, 1, 3600, &interval) != 0)
                return CLI_EXIT_USAGE;
            break;
        case S_OPT_COUNT:
            if (cli_parse_u64("--count", optarg, 1, UINT32_MAX, &count) != 0)
                return CLI_EXIT_USAGE;
            break;
        case CLI_OPT_TIMEOUT:
            if (cli_parse_u64("--timeout", optarg, 1, 3600000, &timeout) != 0)
                return CLI_EXIT_USAGE;
            break;
        default: return CLI_EXIT_USAGE;
        }
    }
    if (!http)
        http = getenv("CIVIBUS_HTTP") && getenv("CIVIBUS_HTTP")[0] ? getenv("CIVIBUS_HTTP") : S_DEFAULT_HTTP;
    int rc = CLI_EXIT_OK;
    for (uint64_t round = 0; count == 0 || round < count; round++) {
        if (round) {
            struct timespec ts = {.tv_sec = (time_t)interval, .tv_nsec = 0};
            nanosleep(&ts, NULL);
        }
        fputs(S_CLEAR, stdout);
        rc = s_show("top", http, (int)timeout, false, S_TOP_REFUSALS);
        if (cli_flush() != 0)
            break; /* the reader has gone: nothing more to show */
    }
    return rc;
}
