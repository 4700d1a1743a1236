/* config - the hub's settings, driven by one table.
 *
 * s_keys[] is the single source of truth: name, type, default, bounds, help.
 * The parser, the flags, --help and the sample file in deploy/ are all
 * generated from it, so documentation and behaviour cannot drift.
 */
#include "config.h"

#include <errno.h>
#include <inttypes.h>
#include <stdlib.h>
#include <string.h>

typedef enum { T_STRING, T_BOOL, T_SIZE, T_UINT } s_type_t;

typedef struct {
    const char *name;
    s_type_t type;
    size_t offset;
    const char *def; /* default, as text; NULL: required */
    uint64_t min, max;
    const char *help;
    const char *example; /* for required keys: a value for the sample file */
} s_key_t;

#define OFF(f) offsetof(config_t, f)
#define KiB 1024ULL
#define MiB (1024ULL * KiB)
#define GiB (1024ULL * MiB)

static const s_key_t s_keys[] = {
    {"data", T_STRING, OFF(data), NULL, 0, 0, "data directory holding the LMDB log (created if missing)",
     "/var/lib/civibus"},
    {"listen", T_STRING, OFF(listen), "tcp://127.0.0.1:7400", 0, 0,
     "ZeroMQ endpoint adapters connect to (tcp://ADDR:PORT; port * picks a free one)", NULL},
    {"registry", T_STRING, OFF(registry), NULL, 0, 0, "agency registry folder: one AGENCY.pub file per agency",
     "/etc/civibus/registry"},
    {"key", T_STRING, OFF(key), NULL, 0, 0, "the hub's secret key file (civibus keygen --hub)",
     "/etc/civibus/hub.key"},
    {"policy", T_STRING, OFF(policy), "", 0, 0,
     "access policy file (docs/POLICY.md), re-read on SIGHUP; empty: every registered agency may publish and "
     "subscribe to everything",
     NULL},
    {"log_level", T_STRING, OFF(log_level), "info", 0, 0, "diagnostic log level: debug, info, warn, error", NULL},
    {"sync", T_BOOL, OFF(sync), "true", 0, 0,
     "fsync every commit before acknowledging; false loses acknowledged events on a crash (tests only)", NULL},
    {"max_event_size", T_SIZE, OFF(max_event_size), "1MiB", 256, 16 * MiB,
     "largest serialized event accepted; larger ones are refused with too_large", NULL},
    {"max_message_size", T_SIZE, OFF(max_message_size), "2MiB", 1 * MiB, 32 * MiB,
     "largest message accepted from an adapter (refused with too_large); the transport drops a connection whose frame exceeds it by 64KiB", NULL},
    {"map_size_initial", T_SIZE, OFF(map_size_initial), "64MiB", 1 * MiB, 1024 * GiB,
     "initial size of the LMDB map; it doubles as needed", NULL},
    {"map_size_max", T_SIZE, OFF(map_size_max), "64GiB", 1 * MiB, 1024 * 1024 * GiB,
     "storage ceiling; at it, publishes are refused with storage_full while reads go on", NULL},
    {"dedup_window", T_UINT, OFF(dedup_window), "1000000", 1000, 100000000,
     "recent events whose (source, event_id) a retry is checked against; an older original is not recognised",
     NULL},
    {"batch_max", T_UINT, OFF(batch_max), "4096", 1, 1000000, "events committed in one transaction, at most", NULL},
    {"credit_max", T_UINT, OFF(credit_max), "65536", 1, 1000000, "credit one subscription may hold", NULL},
    {"replay_max", T_UINT, OFF(replay_max), "4096", 1, 4096, "events in one replay reply, at most", NULL},
    {"subscriptions_max", T_UINT, OFF(subscriptions_max), "10000", 1, 1000000, "live subscriptions, at most", NULL},
    {"handshake_timeout_ms", T_UINT, OFF(handshake_timeout_ms), "5000", 100, 600000,
     "time a new connection has to finish the CURVE handshake", NULL},
    {"heartbeat_ms", T_UINT, OFF(heartbeat_ms), "5000", 100, 600000,
     "ZMTP heartbeat interval; a peer silent for three intervals is disconnected", NULL},
    {"session_timeout_ms", T_UINT, OFF(session_timeout_ms), "60000", 1000, 86400000,
     "a subscription whose connection sent no ping, ack or credit this long is closed (its cursor stays)", NULL},
    {"cursor_flush_ms", T_UINT, OFF(cursor_flush_ms), "200", 1, 60000,
     "how long an acknowledged cursor may wait before it is saved when no publish carries it", NULL},
    {"key_expiry_warn_days", T_UINT, OFF(key_expiry_warn_days), "30", 0, 3650,
     "warn (log event=key_expiring, and in the agency's status) of registry keys expiring within this many days; "
     "checked at start, on SIGHUP and daily; 0: never",
     NULL},
    {"require_signatures", T_BOOL, OFF(require_signatures), "false", 0, 0,
     "refuse unsigned events with bad_signature; signed events are verified either way (docs/SIGNING.md)", NULL},
    {"signing_key", T_STRING, OFF(signing_key), "", 0, 0,
     "the hub's Ed25519 signing key (PEM, mode 0600; civibus keygen --hub writes hub-sign.key) for signed "
     "checkpoints of the log (docs/LOG.md); empty: no checkpoints, and civibus verify can check the chain only",
     NULL},
    {"checkpoint_events", T_UINT, OFF(checkpoint_events), "10000", 1, 100000000,
     "write a signed checkpoint after this many new log entries", NULL},
    {"checkpoint_seconds", T_UINT, OFF(checkpoint_seconds), "60", 1, 86400,
     "write a signed checkpoint after this many seconds if the log grew (and always at a clean stop)", NULL},
    {"agency_subscriptions_max", T_UINT, OFF(agency_subscriptions_max), "1000", 1, 1000000,
     "live subscriptions of one agency, at most; more are refused with unavailable (docs/SECURITY.md)", NULL},
    {"agency_connections_max", T_UINT, OFF(agency_connections_max), "100", 1, 100000,
     "live connections of one agency, at most, counted from their first message; a message on one more is "
     "refused with unavailable, and new handshakes of the agency are refused while it is at the ceiling",
     NULL},
    {"agency_publish_rate", T_UINT, OFF(agency_publish_rate), "0", 0, 100000000,
     "events one agency may publish per second (bursts of one second's worth); more are refused with "
     "unavailable; 0: no ceiling",
     NULL},
    {"agency_publish_bytes", T_SIZE, OFF(agency_publish_bytes), "0", 0, 64 * GiB,
     "bytes of events one agency may publish per second (bursts of one second's worth); more are refused with "
     "unavailable; 0: no ceiling",
     NULL},
};
#define N_KEYS (sizeof s_keys / sizeof s_keys[0])

static int s_parse_size(const char *text, uint64_t *out)
{
    errno = 0;
    char *end;
    unsigned long long v = strtoull(text, &end, 10);
    if (errno || end == text || text[0] == '-')
        return -1;
    uint64_t mult = 1;
    switch (*end) {
    case 'K': case 'k': mult = KiB; end++; break;
    case 'M': case 'm': mult = MiB; end++; break;
    case 'G': case 'g': mult = GiB; end++; break;
    case 'T': case 't': mult = 1024 * GiB; end++; break;
    default: break;
    }
    if (mult > 1 && strcmp(end, "iB") == 0)
        end += 2;
    else if (mult > 1 && *end == 'B')
        end++;
    if (*end != '\0' || (v && mult > UINT64_MAX / v))
        return -1;
    *out = v * mult;
    return 0;
}

static int s_set(config_t *cfg, const s_key_t *k, const char *value, const char *where)
{
    void *field = (char *)cfg + k->offset;
    uint64_t v = 0;
    switch (k->type) {
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
    case T_UINT: {
        char *end;
        errno = 0;
        v = strtoull(value, &end, 10);
        if (errno || end == value || *end || value[0] == '-')
            goto invalid;
        break;
    }
    }
    if (v < k->min || v > k->max) {
        fprintf(stderr, "civibusd: %s: %s = %s is out of bounds [%" PRIu64 ", %" PRIu64 "]\n", where,
                k->name, value, k->min, k->max);
        return -1;
    }
    *(uint64_t *)field = v;
    return 0;
invalid:
    fprintf(stderr, "civibusd: %s: %s = %s is not a valid %s\n", where, k->name, value,
            k->type == T_BOOL ? "boolean (true/false)" : k->type == T_SIZE ? "size (e.g. 64MiB)" : "number");
    return -1;
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

static int s_load_file(config_t *cfg, const char *path)
{
    FILE *f = fopen(path, "r");
    if (!f) {
        fprintf(stderr, "civibusd: %s: %s\n", path, strerror(errno));
        return -1;
    }
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
            fprintf(stderr, "civibusd: %s: expected 'key = value'\n", where);
            rc = -1;
            break;
        }
        *eq = '\0';
        char *key = p, *val = eq + 1;
        s_trim(&key);
        s_trim(&val);
        const s_key_t *k = s_find(key);
        if (!k) {
            fprintf(stderr, "civibusd: %s: unknown key '%s' (civibusd --help lists them)\n", where, key);
            rc = -1;
            break;
        }
        rc = s_set(cfg, k, val, where);
    }
    fclose(f);
    return rc;
}

static void s_usage(FILE *out)
{
    fprintf(out, "usage: civibusd [--config FILE] --data DIR --registry DIR --key FILE [options]\n"
                 "\n"
                 "The civibus hub: authenticates agencies over CURVE, logs their service events\n"
                 "durably in LMDB and delivers them to subscribers. Runs in the foreground and\n"
                 "prints 'civibusd ready endpoint=...' on stdout once it accepts connections.\n"
                 "SIGTERM or SIGINT stops it cleanly.\n\n"
                 "  --config FILE        read settings from FILE (flags override it)\n"
                 "  --print-config       print a commented config file with every default\n"
                 "  --help, --version\n\n"
                 "Settings (config key, or the same name as a flag with dashes):\n");
    for (size_t i = 0; i < N_KEYS; i++) {
        const s_key_t *k = &s_keys[i];
        char flag[64];
        size_t j;
        for (j = 0; k->name[j] && j < sizeof flag - 1; j++)
            flag[j] = k->name[j] == '_' ? '-' : k->name[j];
        flag[j] = '\0';
        if (!k->def)
            fprintf(out, "  --%-20s %s (required)\n", flag, k->help);
        else if (!k->def[0])
            fprintf(out, "  --%-20s %s (optional)\n", flag, k->help);
        else
            fprintf(out, "  --%-20s %s (default %s)\n", flag, k->help, k->def);
    }
}

void config_write_sample(FILE *out)
{
    fprintf(out, "# civibusd.conf - configuration of the civibus hub.\n"
                 "# Generated by 'civibusd --print-config'; every key with its default.\n"
                 "# Command-line flags (--key-name VALUE) override this file.\n"
                 "# Sizes take K, M, G suffixes (powers of 1024).\n");
    for (size_t i = 0; i < N_KEYS; i++) {
        const s_key_t *k = &s_keys[i];
        fprintf(out, "\n# %s\n", k->help);
        if (k->type == T_SIZE || k->type == T_UINT)
            fprintf(out, "# bounds: %" PRIu64 " to %" PRIu64 "\n", k->min, k->max);
        if (k->def && k->def[0])
            fprintf(out, "#%s = %s\n", k->name, k->def);
        else if (k->def)
            fprintf(out, "#%s =\n", k->name);
        else
            fprintf(out, "%s = %s\n", k->name, k->example);
    }
}

void config_free(config_t *cfg)
{
    for (size_t i = 0; i < N_KEYS; i++) {
        if (s_keys[i].type == T_STRING) {
            char **s = (char **)((char *)cfg + s_keys[i].offset);
            free(*s);
            *s = NULL;
        }
    }
}

int config_load(config_t *cfg, int argc, char **argv)
{
    memset(cfg, 0, sizeof *cfg);
    for (size_t i = 0; i < N_KEYS; i++)
        if (s_keys[i].def && s_set(cfg, &s_keys[i], s_keys[i].def, "default") != 0)
            goto fail;
    /* The file first, so that flags override it wherever --config stands. */
    for (int i = 1; i < argc; i++) {
        if (strcmp(argv[i], "--config") == 0) {
            if (i + 1 >= argc) {
                fprintf(stderr, "civibusd: --config needs a file\n");
                goto fail;
            }
            if (s_load_file(cfg, argv[i + 1]) != 0)
                goto fail;
        }
    }
    for (int i = 1; i < argc; i++) {
        const char *a = argv[i];
        if (strcmp(a, "--help") == 0 || strcmp(a, "-h") == 0) {
            s_usage(stdout);
            config_free(cfg);
            return CONFIG_HELP;
        }
        if (strcmp(a, "--version") == 0) {
            printf("civibusd %s\n", CIVIBUS_VERSION);
            config_free(cfg);
            return CONFIG_HELP;
        }
        if (strcmp(a, "--print-config") == 0) {
            config_write_sample(stdout);
            config_free(cfg);
            return CONFIG_HELP;
        }
        if (strcmp(a, "--config") == 0) {
            i++;
            continue;
        }
        bool negated;
        const s_key_t *k = strncmp(a, "--", 2) == 0 ? s_find_flag(a + 2, &negated) : NULL;
        if (!k) {
            fprintf(stderr, "civibusd: unknown option '%s' (see civibusd --help)\n", a);
            goto fail;
        }
        if (k->type == T_BOOL) {
            if (s_set(cfg, k, negated ? "false" : "true", "command line") != 0)
                goto fail;
            continue;
        }
        if (i + 1 >= argc) {
            fprintf(stderr, "civibusd: %s needs a value\n", a);
            goto fail;
        }
        if (s_set(cfg, k, argv[++i], "command line") != 0)
            goto fail;
    }
    for (size_t i = 0; i < N_KEYS; i++) {
        const s_key_t *k = &s_keys[i];
        const char *v = k->type == T_STRING ? *(char **)((char *)cfg + k->offset) : "set";
        if (!k->def && (!v || !v[0])) {
            fprintf(stderr, "civibusd: %s is required (--%s or in the config file)\n", k->name, k->name);
            goto fail;
        }
    }
    if (cfg->max_message_size < cfg->max_event_size + 4 * KiB) {
        fprintf(stderr, "civibusd: max_message_size must exceed max_event_size by 4KiB at least\n");
        goto fail;
    }
    if (cfg->map_size_initial > cfg->map_size_max) {
        fprintf(stderr, "civibusd: map_size_initial is larger than map_size_max\n");
        goto fail;
    }
    return CONFIG_OK;
fail:
    config_free(cfg);
    return CONFIG_INVALID;
}
