/* config - the hub's settings, driven by one table.
 *
 * s_keys[] is the single source of truth: name, type, default, bounds,
 * whether a reload may change it, help. The parser, the flags, --help, the
 * sample file in deploy/ and the reference table in docs/OPERATIONS.md are
 * all generated from it, so documentation and behaviour cannot drift.
 *
 * A key is reloadable when the module using it reads it live or has a
 * setter the router calls after a reload, and a change at run time is safe
 * for what is in flight. The cross-checks between keys (message vs. event
 * size, initial vs. maximum map) involve restart-only keys alone, so a
 * merged configuration is as valid as the one running.
 *
 * Parse errors go into a caller's buffer: config_load prints them, and
 * config_reload logs them.
 */
#include "config.h"

#include <errno.h>
#include <inttypes.h>
#include <stdarg.h>
#include <stdlib.h>
#include <string.h>

#include "log.h"

typedef enum { T_STRING, T_BOOL, T_SIZE, T_UINT, T_DURATION, T_CHOICE } s_type_t;

typedef struct {
    const char *name;
    s_type_t type;
    size_t offset;
    const char *def; /* default, as text; NULL: required */
    uint64_t min, max; /* bounds of T_SIZE, T_UINT and T_DURATION */
    bool reloadable;   /* a SIGHUP applies a change (else: restart) */
    const char *help;
    /* Required keys: a value for the sample file. T_CHOICE: the values
     * allowed, separated by '|'. */
    const char *example;
} s_key_t;

#define RELOAD true
#define RESTART false

#define OFF(f) offsetof(config_t, f)
#define KiB 1024ULL
#define MiB (1024ULL * KiB)
#define GiB (1024ULL * MiB)

static const s_key_t s_keys[] = {
    {"data", T_STRING, OFF(data), NULL, 0, 0, RESTART, "data directory holding the LMDB log (created if missing)",
     "/var/lib/civibus"},
    {"listen", T_STRING, OFF(listen), "tcp://127.0.0.1:7400", 0, 0, RESTART,
     "ZeroMQ endpoint adapters connect to (tcp://ADDR:PORT; port * picks a free one)", NULL},
    {"http", T_STRING, OFF(http), "127.0.0.1:7401", 0, 0, RESTART,
     "monitoring endpoint (/metrics, /healthz, /readyz, /api/status; docs/MONITORING.md), ADDR:PORT or "
     "[IPv6]:PORT; port 0 picks a free one; empty: no HTTP listener",
     NULL},
    {"registry", T_STRING, OFF(registry), NULL, 0, 0, RESTART,
     "agency registry folder: one AGENCY.pub file per agency; its contents are re-read on SIGHUP",
     "/etc/civibus/registry"},
    {"key", T_STRING, OFF(key), NULL, 0, 0, RESTART, "the hub's secret key file (civibus keygen --hub)",
     "/etc/civibus/hub.key"},
    {"policy", T_STRING, OFF(policy), "", 0, 0, RELOAD,
     "access policy file (docs/POLICY.md), re-read on SIGHUP; empty: every registered agency may publish and "
     "subscribe to everything (a reload cannot empty it)",
     NULL},
    {"log_level", T_CHOICE, OFF(log_level), "info", 0, 0, RELOAD, "diagnostic log level: debug, info, warn, error",
     "debug|info|warn|error"},
    {"log_format", T_CHOICE, OFF(log_format), "text", 0, 0, RELOAD,
     "diagnostic log format: text (time level module key=value ...) or json (one object per line)", "text|json"},
    {"sync", T_BOOL, OFF(sync), "true", 0, 0, RESTART,
     "fsync every commit before acknowledging; false loses acknowledged events on a crash (tests only)", NULL},
    {"max_event_size", T_SIZE, OFF(max_event_size), "1MiB", 256, 16 * MiB, RESTART,
     "largest serialized event accepted; larger ones are refused with too_large", NULL},
    {"max_message_size", T_SIZE, OFF(max_message_size), "2MiB", 1 * MiB, 32 * MiB, RESTART,
     "largest message accepted from an adapter (refused with too_large); the transport drops a connection whose frame exceeds it by 64KiB", NULL},
    {"map_size_initial", T_SIZE, OFF(map_size_initial), "64MiB", 1 * MiB, 1024 * GiB, RESTART,
     "initial size of the LMDB map; it doubles as needed", NULL},
    {"map_size_max", T_SIZE, OFF(map_size_max), "64GiB", 1 * MiB, 1024 * 1024 * GiB, RESTART,
     "storage ceiling; at it, publishes are refused with storage_full while reads go on", NULL},
    {"dedup_window", T_UINT, OFF(dedup_window), "1000000", 1000, 100000000, RESTART,
     "recent events whose (source, event_id) a retry is checked against; an older original is not recognised",
     NULL},
    {"batch_max", T_UINT, OFF(batch_max), "4096", 1, 1000000, RELOAD, "events committed in one transaction, at most",
     NULL},
    {"credit_max", T_UINT, OFF(credit_max), "65536", 1, 1000000, RELOAD, "credit one subscription may hold", NULL},
    {"replay_max", T_UINT, OFF(replay_max), "4096", 1, 4096, RELOAD, "events in one replay reply, at most", NULL},
    {"subscriptions_max", T_UINT, OFF(subscriptions_max), "10000", 1, 1000000, RELOAD, "live subscriptions, at most",
     NULL},
    {"handshake_timeout_ms", T_UINT, OFF(handshake_timeout_ms), "5000", 100, 600000, RESTART,
     "time a new connection has to finish the CURVE handshake", NULL},
    {"heartbeat_ms", T_UINT, OFF(heartbeat_ms), "5000", 100, 600000, RESTART,
     "ZMTP heartbeat interval; a peer silent for three intervals is disconnected", NULL},
    {"session_timeout_ms", T_UINT, OFF(session_timeout_ms), "60000", 1000, 86400000, RELOAD,
     "a subscription whose connection sent no ping, ack or credit this long is closed (its cursor stays)", NULL},
    {"cursor_flush_ms", T_UINT, OFF(cursor_flush_ms), "200", 1, 60000, RELOAD,
     "how long an acknowledged cursor may wait before it is saved when no publish carries it", NULL},
    {"key_expiry_warn_days", T_UINT, OFF(key_expiry_warn_days), "30", 0, 3650, RELOAD,
     "warn (log event=key_expiring, and in the agency's status) of registry keys expiring within this many days; "
     "checked at start, on SIGHUP and daily; 0: never",
     NULL},
    {"require_signatures", T_BOOL, OFF(require_signatures), "false", 0, 0, RELOAD,
     "refuse unsigned events with bad_signature; signed events are verified either way (docs/SIGNING.md)", NULL},
    {"signing_key", T_STRING, OFF(signing_key), "", 0, 0, RESTART,
     "the hub's Ed25519 signing key (PEM, mode 0600; civibus keygen --hub writes hub-sign.key) for signed "
     "checkpoints of the log (docs/LOG.md); empty: no checkpoints, and civibus verify can check the chain only",
     NULL},
    {"checkpoint_events", T_UINT, OFF(checkpoint_events), "10000", 1, 100000000, RELOAD,
     "write a signed checkpoint after this many new log entries", NULL},
    {"checkpoint_seconds", T_UINT, OFF(checkpoint_seconds), "60", 1, 86400, RELOAD,
     "write a signed checkpoint after this many seconds if the log grew (and always at a clean stop)", NULL},
    {"ack_timeout_ms", T_UINT, OFF(ack_timeout_ms), "30000", 100, 86400000, RELOAD,
     "a subscription's oldest unacknowledged event is delivered again when no ack moved its cursor this long",
     NULL},
    {"max_attempts", T_UINT, OFF(max_attempts), "5", 1, 1000, RELOAD,
     "deliveries of an event to a subscription before it becomes a dead letter of it (docs/PROTOCOL.md 13)",
     NULL},
    {"redelivery_backoff_ms", T_UINT, OFF(redelivery_backoff_ms), "1000", 0, 3600000, RELOAD,
     "wait after a failed first attempt before the next; doubled after each further failure", NULL},
    {"redelivery_backoff_max_ms", T_UINT, OFF(redelivery_backoff_max_ms), "60000", 0, 86400000, RELOAD,
     "longest wait between two attempts at one event; at least redelivery_backoff_ms", NULL},
    {"agency_subscriptions_max", T_UINT, OFF(agency_subscriptions_max), "1000", 1, 1000000, RELOAD,
     "live subscriptions of one agency, at most; more are refused with unavailable (docs/SECURITY.md)", NULL},
    {"agency_connections_max", T_UINT, OFF(agency_connections_max), "100", 1, 100000, RELOAD,
     "live connections of one agency, at most, counted from their first message; a message on one more is "
     "refused with unavailable, and new handshakes of the agency are refused while it is at the ceiling",
     NULL},
    {"agency_publish_rate", T_UINT, OFF(agency_publish_rate), "0", 0, 100000000, RELOAD,
     "events one agency may publish per second (bursts of one second's worth); more are refused with "
     "unavailable; 0: no ceiling",
     NULL},
    {"agency_publish_bytes", T_SIZE, OFF(agency_publish_bytes), "0", 0, 64 * GiB, RELOAD,
     "bytes of events one agency may publish per second (bursts of one second's worth); more are refused with "
     "unavailable; 0: no ceiling",
     NULL},
    {"drain_timeout_ms", T_UINT, OFF(drain_timeout_ms), "30000", 100, 3600000, RESTART,
     "a stop (SIGTERM, SIGINT) that takes longer than this exits at once, with code 4 (a wedged disk)", NULL},
    {"retention_max_age", T_DURATION, OFF(retention_max_age), "0", 0, 100ULL * 366 * 86400, RELOAD,
     "delete log entries received longer ago than this (seconds, or with an s, m, h or d suffix; docs/LOG.md); "
     "0: keep them",
     NULL},
    {"retention_max_bytes", T_SIZE, OFF(retention_max_bytes), "0", 0, 1024 * 1024 * GiB, RELOAD,
     "delete the oldest log entries while the log takes more than this (its LMDB pages); 0: no limit", NULL},
    {"retention_keep_subscriptions", T_STRING, OFF(retention_keep_subscriptions), "", 0, 0, RELOAD,
     "comma-separated agency/name of durable subscriptions whose unacknowledged entries retention keeps, past "
     "the limits; when they hold the log until map_size_max, publishes get storage_full",
     NULL},
    {"retention_batch", T_UINT, OFF(retention_batch), "1000", 1, 100000, RELOAD,
     "log entries retention deletes per transaction, at most", NULL},
    {"subscription_lag_warn", T_UINT, OFF(subscription_lag_warn), "100000", 0, 1000000000000ULL, RELOAD,
     "warn in /api/status (subscription_behind) of a subscription this many events behind the log; 0: never",
     NULL},
};
#define N_KEYS (sizeof s_keys / sizeof s_keys[0])

/* A decimal number, optionally followed by one of the unit letters in units,
 * which scales it by the matching mults[]; *rest gets what follows the
 * number and its unit, *unit whether there was one. -1 when there is no
 * number, it is negative, or it overflows. */
static int s_parse_scaled(const char *text, const char *units, const uint64_t *mults, const char **rest,
                          bool *unit, uint64_t *out)
{
    errno = 0;
    char *end;
    unsigned long long v = strtoull(text, &end, 10);
    if (errno || end == text || text[0] == '-')
        return -1;
    uint64_t mult = 1;
    const char *u = *end ? strchr(units, *end) : NULL;
    if (u) {
        mult = mults[u - units];
        end++;
    }
    if (v && mult > UINT64_MAX / v)
        return -1;
    *rest = end;
    *unit = u != NULL;
    *out = v * mult;
    return 0;
}

/* Put a message into err (err_len bytes). Returns -1, for "return s_err(...)". */
static int s_err(char *err, size_t err_len, const char *fmt, ...) __attribute__((format(printf, 3, 4)));
static int s_err(char *err, size_t err_len, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(err, err_len, fmt, ap);
    va_end(ap);
    return -1;
}

static bool s_choice_ok(const char *choices, const char *value)
{
    size_t n = strlen(value);
    for (const char *p = choices; *p;) {
        const char *bar = strchr(p, '|');
        size_t len = bar ? (size_t)(bar - p) : strlen(p);
        if (len == n && strncmp(p, value, n) == 0)
            return true;
        p += len + (bar ? 1 : 0);
    }
    return false;
}

static int s_parse_size(const char *text, uint64_t *out)
{
    static const uint64_t mults[] = {KiB, KiB, MiB, MiB, GiB, GiB, 1024 * GiB, 1024 * GiB};
    const char *end;
    bool unit;
    if (s_parse_scaled(text, "KkMmGgTt", mults, &end, &unit, out) != 0)
        return -1;
    if (unit && strcmp(end, "iB") == 0)
        end += 2;
    else if (unit && *end == 'B')
        end++;
    return *end == '\0' ? 0 : -1;
}

/* Seconds, or a number with an s, m, h or d suffix. */
static int s_parse_duration(const char *text, uint64_t *out)
{
    static const uint64_t mults[] = {1, 60, 3600, 86400};
    const char *end;
    bool unit;
    return s_parse_scaled(text, "smhd", mults, &end, &unit, out) == 0 && *end == '\0' ? 0 : -1;
}

static int s_set(config_t *cfg, const s_key_t *k, const char *value, const char *where, char *err, size_t err_len)
{
    void *field = (char *)cfg + k->offset;
    uint64_t v = 0;
    switch (k->type) {
    case T_CHOICE:
        if (!s_choice_ok(k->example, value))
            return s_err(err, err_len, "%s: %s = %s is not one of %s", where, k->name, value, k->example);
        /* fall through */
    case T_STRING: {
        char **s = field;
        free(*s);
        *s = strdup(value);
        return 0;
    }
    case T_BOOL:
        if (strcmp(value, "true") == 0 || strcmp(value, "yes") == 0 || strcmp(value, "1") == 0)
            *(bool *)field = true;
        else if (strcmp(value, "false") == 0 || strcmp(value, "no") == 0 || strcmp(value, "0") == 0)
            *(bool *)field = false;
        else
            goto invalid;
        return 0;
    case T_SIZE:
        if (s_parse_size(value, &v) != 0)
            goto invalid;
        break;
    case T_DURATION:
        if (s_parse_duration(value, &v) != 0)
            goto invalid;
        break;
    case T_UINT: {
        char *end;
        errno = 0;
        v = strtoull(value, &end, 10);
        if (errno || end == value || *end || value[0] == '-')
            goto invalid;
        break;
    }
    }
    if (v < k->min || v > k->max)
        return s_err(err, err_len, "%s: %s = %s is out of bounds [%" PRIu64 ", %" PRIu64 "]", where, k->name, value,
                     k->min, k->max);
    *(uint64_t *)field = v;
    return 0;
invalid:
    return s_err(err, err_len, "%s: %s = %s is not a valid %s", where, k->name, value,
                 k->type == T_BOOL       ? "boolean (true/false)"
                 : k->type == T_SIZE     ? "size (e.g. 64MiB)"
                 : k->type == T_DURATION ? "duration (seconds, or e.g. 90m, 30d)"
                                         : "number");
}

static const s_key_t *s_find(const char *name)
{
    for (size_t i = 0; i < N_KEYS; i++)
        if (strcmp(s_keys[i].name, name) == 0)
            return &s_keys[i];
    return NULL;
}

/* Flag "--map-size-max" names key "map_size_max". */
static const s_key_t *s_find_flag(const char *flag, bool *negated)
{
    char name[64];
    *negated = false;
    if (strncmp(flag, "no-", 3) == 0) {
        const s_key_t *k = s_find_flag(flag + 3, negated);
        if (k && k->type == T_BOOL) {
            *negated = true;
            return k;
        }
    }
    size_t len = strlen(flag);
    if (len >= sizeof name)
        return NULL;
    for (size_t i = 0; i <= len; i++)
        name[i] = flag[i] == '-' ? '_' : flag[i];
    return s_find(name);
}

static void s_trim(char **s)
{
    while (**s == ' ' || **s == '\t')
        (*s)++;
    size_t n = strlen(*s);
    while (n && strchr(" \t\r\n", (*s)[n - 1]))
        (*s)[--n] = '\0';
}

static int s_load_file(config_t *cfg, const char *path, char *err, size_t err_len)
{
    FILE *f = fopen(path, "r");
    if (!f)
        return s_err(err, err_len, "%s: %s", path, strerror(errno));
    char line[4096], where[4200];
    int lineno = 0, rc = 0;
    while (rc == 0 && fgets(line, sizeof line, f)) {
        lineno++;
        snprintf(where, sizeof where, "%s:%d", path, lineno);
        char *p = line;
        s_trim(&p);
        if (*p == '\0' || *p == '#')
            continue;
        char *eq = strchr(p, '=');
        if (!eq) {
            rc = s_err(err, err_len, "%s: expected 'key = value'", where);
            break;
        }
        *eq = '\0';
        char *key = p, *val = eq + 1;
        s_trim(&key);
        s_trim(&val);
        const s_key_t *k = s_find(key);
        if (!k) {
            rc = s_err(err, err_len, "%s: unknown key '%s' (civibusd --help lists them)", where, key);
            break;
        }
        rc = s_set(cfg, k, val, where, err, err_len);
    }
    fclose(f);
    return rc;
}

/* The flag of key k: "--" and its name with dashes. */
static void s_flag_name(const s_key_t *k, char *flag, size_t len)
{
    size_t j;
    for (j = 0; k->name[j] && j < len - 1; j++)
        flag[j] = k->name[j] == '_' ? '-' : k->name[j];
    flag[j] = '\0';
}

static void s_usage(FILE *out)
{
    fprintf(out, "usage: civibusd [--config FILE] --data DIR --registry DIR --key FILE [options]\n"
                 "\n"
                 "The civibus hub: authenticates agencies over CURVE, logs their service events\n"
                 "durably in LMDB and delivers them to subscribers. Runs in the foreground and\n"
                 "prints 'civibusd ready endpoint=... [http=ADDR:PORT]' on stdout once it accepts\n"
                 "connections. SIGTERM or SIGINT stops it cleanly (a second one at once); SIGHUP\n"
                 "reloads the config file, the registry and the policy.\n\n"
                 "  --config FILE        read settings from FILE (flags override it)\n"
                 "  --print-config       print a commented config file with every default\n"
                 "  --print-config-md    print the settings as a Markdown table\n"
                 "  --check-config       check the file and flags as a start would, then exit\n"
                 "  --help, --version\n\n"
                 "Settings (config key, or the same name as a flag with dashes; [reload]: a\n"
                 "SIGHUP applies a change, the others need a restart):\n");
    for (size_t i = 0; i < N_KEYS; i++) {
        const s_key_t *k = &s_keys[i];
        char flag[64];
        s_flag_name(k, flag, sizeof flag);
        const char *rl = k->reloadable ? " [reload]" : "";
        if (!k->def)
            fprintf(out, "  --%-20s %s (required)%s\n", flag, k->help, rl);
        else if (!k->def[0])
            fprintf(out, "  --%-20s %s (optional)%s\n", flag, k->help, rl);
        else
            fprintf(out, "  --%-20s %s (default %s)%s\n", flag, k->help, k->def, rl);
    }
}

void config_write_sample(FILE *out)
{
    fprintf(out, "# civibusd.conf - configuration of the civibus hub.\n"
                 "# Generated by 'civibusd --print-config'; every key with its default.\n"
                 "# Command-line flags (--key-name VALUE) override this file.\n"
                 "# Sizes take K, M, G suffixes (powers of 1024).\n"
                 "# SIGHUP re-reads this file: keys marked 'reloadable' take effect at once,\n"
                 "# the others keep their running value until a restart.\n");
    for (size_t i = 0; i < N_KEYS; i++) {
        const s_key_t *k = &s_keys[i];
        fprintf(out, "\n# %s\n", k->help);
        if (k->type == T_SIZE || k->type == T_UINT || k->type == T_DURATION)
            fprintf(out, "# bounds: %" PRIu64 " to %" PRIu64 "\n", k->min, k->max);
        else if (k->type == T_CHOICE)
            fprintf(out, "# one of: %s\n", k->example);
        fprintf(out, "# %s\n", k->reloadable ? "reloadable (SIGHUP)" : "needs a restart");
        if (k->def && k->def[0])
            fprintf(out, "#%s = %s\n", k->name, k->def);
        else if (k->def)
            fprintf(out, "#%s =\n", k->name);
        else
            fprintf(out, "%s = %s\n", k->name, k->example);
    }
}

/* A size in the largest binary unit that divides it: "64 MiB", "256 B". */
static void s_size_text(uint64_t v, char *buf, size_t len)
{
    static const char *const units[] = {"B", "KiB", "MiB", "GiB", "TiB", "PiB"};
    int u = 0;
    while (u < 5 && v && v % 1024 == 0) {
        v /= 1024;
        u++;
    }
    snprintf(buf, len, "%" PRIu64 " %s", v, units[u]);
}

/* text in a Markdown table cell: '|' escaped. */
static void s_md_cell(FILE *out, const char *text)
{
    for (const char *p = text; *p; p++) {
        if (*p == '|')
            fputc('\\', out);
        fputc(*p, out);
    }
}

void config_write_markdown(FILE *out)
{
    static const char *const types[] = {"string", "bool", "size", "number", "duration", "choice"};
    fprintf(out, "| key | type | default | bounds | reload | meaning |\n"
                 "|---|---|---|---|---|---|\n");
    for (size_t i = 0; i < N_KEYS; i++) {
        const s_key_t *k = &s_keys[i];
        fprintf(out, "| `%s` | %s | ", k->name, types[k->type]);
        if (!k->def)
            fprintf(out, "required (e.g. `%s`)", k->example);
        else if (!k->def[0])
            fprintf(out, "empty");
        else
            fprintf(out, "`%s`", k->def);
        fprintf(out, " | ");
        char lo[32], hi[32];
        switch (k->type) {
        case T_SIZE:
            s_size_text(k->min, lo, sizeof lo);
            s_size_text(k->max, hi, sizeof hi);
            fprintf(out, "%s – %s", lo, hi);
            break;
        case T_UINT:
            fprintf(out, "%" PRIu64 " – %" PRIu64, k->min, k->max);
            break;
        case T_DURATION:
            fprintf(out, "%" PRIu64 " – %" PRIu64 " s", k->min, k->max);
            break;
        case T_CHOICE:
            for (const char *p = k->example; *p; p++) {
                if (*p == '|')
                    fputs(", ", out);
                else
                    fputc(*p, out);
            }
            break;
        case T_BOOL:
            fprintf(out, "true, false");
            break;
        case T_STRING:
            break;
        }
        fprintf(out, " | %s | ", k->reloadable ? "yes" : "restart");
        s_md_cell(out, k->help);
        fprintf(out, " |\n");
    }
}

void config_free(config_t *cfg)
{
    for (size_t i = 0; i < N_KEYS; i++) {
        if (s_keys[i].type == T_STRING || s_keys[i].type == T_CHOICE) {
            char **s = (char **)((char *)cfg + s_keys[i].offset);
            free(*s);
            *s = NULL;
        }
    }
}

enum { S_RUN, S_HELP, S_VERSION, S_SAMPLE, S_MARKDOWN, S_CHECK };

/* Defaults, then the --config file, then the flags, then the checks that
 * involve several keys. *action says whether an informational flag came
 * first. On error cfg holds what was read so far (config_free it). */
static int s_read_sources(config_t *cfg, int argc, char **argv, int *action, char *err, size_t err_len)
{
    memset(cfg, 0, sizeof *cfg);
    cfg->argc = argc;
    cfg->argv = argv;
    *action = S_RUN;
    bool check = false;
    for (size_t i = 0; i < N_KEYS; i++)
        if (s_keys[i].def && s_set(cfg, &s_keys[i], s_keys[i].def, "default", err, err_len) != 0)
            return -1;
    /* The file first, so that flags override it wherever --config stands. */
    for (int i = 1; i < argc; i++) {
        if (strcmp(argv[i], "--config") == 0) {
            if (i + 1 >= argc)
                return s_err(err, err_len, "--config needs a file");
            if (s_load_file(cfg, argv[i + 1], err, err_len) != 0)
                return -1;
        }
    }
    static const struct {
        const char *flag;
        int action;
    } infos[] = {{"--help", S_HELP},
                 {"-h", S_HELP},
                 {"--version", S_VERSION},
                 {"--print-config", S_SAMPLE},
                 {"--print-config-md", S_MARKDOWN}};
    for (int i = 1; i < argc; i++) {
        const char *a = argv[i];
        for (size_t j = 0; j < sizeof infos / sizeof infos[0]; j++) {
            if (strcmp(a, infos[j].flag) == 0) {
                *action = infos[j].action;
                return 0;
            }
        }
        if (strcmp(a, "--config") == 0) {
            i++;
            continue;
        }
        if (strcmp(a, "--check-config") == 0) {
            check = true;
            continue;
        }
        bool negated;
        const s_key_t *k = strncmp(a, "--", 2) == 0 ? s_find_flag(a + 2, &negated) : NULL;
        if (!k)
            return s_err(err, err_len, "unknown option '%s' (see civibusd --help)", a);
        if (k->type == T_BOOL) {
            if (s_set(cfg, k, negated ? "false" : "true", "command line", err, err_len) != 0)
                return -1;
            continue;
        }
        if (i + 1 >= argc)
            return s_err(err, err_len, "%s needs a value", a);
        if (s_set(cfg, k, argv[++i], "command line", err, err_len) != 0)
            return -1;
    }
    for (size_t i = 0; i < N_KEYS; i++) {
        const s_key_t *k = &s_keys[i];
        const char *v = k->type == T_STRING ? *(char **)((char *)cfg + k->offset) : "set";
        if (!k->def && (!v || !v[0]))
            return s_err(err, err_len, "%s is required (--%s or in the config file)", k->name, k->name);
    }
    if (cfg->max_message_size < cfg->max_event_size + 4 * KiB)
        return s_err(err, err_len, "max_message_size must exceed max_event_size by 4KiB at least");
    if (cfg->redelivery_backoff_max_ms < cfg->redelivery_backoff_ms)
        return s_err(err, err_len, "redelivery_backoff_max_ms is smaller than redelivery_backoff_ms");
    if (cfg->map_size_initial > cfg->map_size_max)
        return s_err(err, err_len, "map_size_initial is larger than map_size_max");
    if (check)
        *action = S_CHECK;
    return 0;
}

int config_load(config_t *cfg, int argc, char **argv)
{
    char err[4400];
    int action;
    if (s_read_sources(cfg, argc, argv, &action, err, sizeof err) != 0) {
        fprintf(stderr, "civibusd: %s\n", err);
        config_free(cfg);
        return CONFIG_INVALID;
    }
    if (action == S_RUN)
        return CONFIG_OK;
    if (action == S_HELP)
        s_usage(stdout);
    else if (action == S_VERSION)
        printf("civibusd %s\n", CIVIBUS_VERSION);
    else if (action == S_SAMPLE)
        config_write_sample(stdout);
    else if (action == S_MARKDOWN)
        config_write_markdown(stdout);
    else
        printf("civibusd: configuration ok\n");
    config_free(cfg);
    return CONFIG_HELP;
}

/* k's value in cfg as text, for the log. */
static const char *s_value_text(const config_t *cfg, const s_key_t *k, char *buf, size_t len)
{
    const void *field = (const char *)cfg + k->offset;
    switch (k->type) {
    case T_STRING:
    case T_CHOICE:
        return log_quote(*(char *const *)field, buf, len);
    case T_BOOL:
        return *(const bool *)field ? "true" : "false";
    case T_SIZE:
    case T_UINT:
    case T_DURATION:
        snprintf(buf, len, "%" PRIu64, *(const uint64_t *)field);
        return buf;
    }
    return "";
}

static bool s_same(const config_t *a, const config_t *b, const s_key_t *k)
{
    const void *fa = (const char *)a + k->offset, *fb = (const char *)b + k->offset;
    switch (k->type) {
    case T_STRING:
    case T_CHOICE:
        return strcmp(*(char *const *)fa, *(char *const *)fb) == 0;
    case T_BOOL:
        return *(const bool *)fa == *(const bool *)fb;
    case T_SIZE:
    case T_UINT:
    case T_DURATION:
        return *(const uint64_t *)fa == *(const uint64_t *)fb;
    }
    return true;
}

int config_reload(config_t *cfg, size_t *changed)
{
    char err[4400], quoted[4500];
    int action;
    config_t next;
    size_t n = 0;
    if (changed)
        *changed = 0;
    if (s_read_sources(&next, cfg->argc, cfg->argv, &action, err, sizeof err) != 0) {
        log_error("config", "event=config_reload_failed error=%s action=kept_previous",
                  log_quote(err, quoted, sizeof quoted));
        config_free(&next);
        return CONFIG_INVALID;
    }
    for (size_t i = 0; i < N_KEYS; i++) {
        const s_key_t *k = &s_keys[i];
        if (s_same(cfg, &next, k))
            continue;
        char was_buf[512], now_buf[512];
        const char *was = s_value_text(cfg, k, was_buf, sizeof was_buf);
        const char *now = s_value_text(&next, k, now_buf, sizeof now_buf);
        /* An optional path emptied would lift what it enforces (no policy:
         * everything allowed); that is a decision for a restart. */
        bool emptied = k->type == T_STRING && !(*(char **)((char *)&next + k->offset))[0];
        if (!k->reloadable || emptied) {
            log_warn("config", "event=config_restart_needed key=%s running=%s configured=%s reason=%s", k->name, was,
                     now, k->reloadable ? "cannot_be_emptied_at_run_time" : "not_reloadable");
            continue;
        }
        void *to = (char *)cfg + k->offset, *from = (char *)&next + k->offset;
        if (k->type == T_STRING || k->type == T_CHOICE) {
            char *tmp = *(char **)to;
            *(char **)to = *(char **)from;
            *(char **)from = tmp; /* the old value is freed with next */
        } else if (k->type == T_BOOL) {
            *(bool *)to = *(bool *)from;
        } else {
            *(uint64_t *)to = *(uint64_t *)from;
        }
        log_info("config", "event=config_changed key=%s old=%s new=%s", k->name, was, now);
        n++;
    }
    config_free(&next);
    if (changed)
        *changed = n;
    return CONFIG_OK;
}
