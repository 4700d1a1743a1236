/* config - the hub's settings: one table drives the file parser, the
 * command-line flags, validation, --help, the commented sample config and
 * the configuration reference in docs/OPERATIONS.md.
 *
 * Sources, later ones winning: built-in defaults, the config file
 * (--config FILE; "key = value" lines, '#' comments), command-line flags
 * (every key is also a flag: map_size_max -> --map-size-max VALUE; booleans
 * take no value and have a --no- form). Sizes accept K, M, G suffixes (powers
 * of 1024, optionally followed by "iB"); durations are seconds, or take an
 * s, m, h or d suffix. Every value is checked against its
 * bounds; an error names the key, the source and the line.
 *
 * Reload (SIGHUP): config_reload reads the same sources again, validates
 * all of it, and takes over only the keys the table marks reloadable; the
 * modules that use them are then told by the router.
 */
#ifndef CIVIBUS_CONFIG_H
#define CIVIBUS_CONFIG_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>

typedef struct {
    char *data;              /* data directory (LMDB) */
    char *listen;            /* ZeroMQ endpoint the ROUTER binds */
    char *http;              /* monitoring endpoint ADDR:PORT; "" for none */
    char *registry;          /* agency registry folder */
    char *key;               /* hub secret key file */
    char *policy;            /* access policy file; "" for none */
    char *log_level;         /* debug|info|warn|error */
    char *log_format;        /* text|json */
    bool sync;               /* fsync every commit (durable); false for tests only */
    uint64_t max_event_size;
    uint64_t max_message_size;
    uint64_t map_size_initial;
    uint64_t map_size_max;
    uint64_t dedup_window;    /* events in the de-duplication window */
    uint64_t batch_max;       /* events per commit, at most */
    uint64_t credit_max;      /* credit one subscription may hold */
    uint64_t replay_max;      /* events in one replay reply */
    uint64_t subscriptions_max;
    uint64_t handshake_timeout_ms;
    uint64_t heartbeat_ms;
    uint64_t session_timeout_ms;
    uint64_t cursor_flush_ms;
    uint64_t key_expiry_warn_days; /* warn of keys expiring within; 0: never */
    bool require_signatures;     /* refuse unsigned events (bad_signature) */
    char *signing_key;           /* Ed25519 secret key for checkpoints; "" for none */
    uint64_t checkpoint_events;  /* a checkpoint after this many new entries ... */
    uint64_t checkpoint_seconds; /* ... or this long, if the log grew */
    uint64_t ack_timeout_ms;     /* an unacknowledged delivery fails after this long */
    uint64_t max_attempts;       /* deliveries of an event before it is a dead letter */
    uint64_t redelivery_backoff_ms;     /* wait before the second attempt, doubled for each next ... */
    uint64_t redelivery_backoff_max_ms; /* ... up to this */
    uint64_t agency_subscriptions_max; /* live subscriptions of one agency */
    uint64_t agency_connections_max;   /* live connections of one agency */
    uint64_t agency_publish_rate;      /* events per second of one agency; 0: no ceiling */
    uint64_t agency_publish_bytes;     /* bytes of events per second of one agency; 0: no ceiling */
    uint64_t drain_timeout_ms;   /* a stop that takes longer exits at once */
    uint64_t retention_max_age;   /* seconds; entries older are deleted (0: keep) */
    uint64_t retention_max_bytes; /* the log's pages are kept under this (0: keep) */
    char *retention_keep_subscriptions; /* "agency/name,..." whose unacknowledged entries stay */
    uint64_t retention_batch;     /* entries deleted per transaction */
    uint64_t subscription_lag_warn; /* lag that /api/status warns of; 0: never */

    /* The sources, kept for config_reload: main's argv (borrowed). */
    int argc;
    char **argv;
} config_t;

enum config_err {
    CONFIG_OK = 0,
    CONFIG_INVALID = -1, /* message printed to stderr */
    CONFIG_HELP = 1,     /* --help, --version, --print-config(-md), --check-config was handled */
};

/* Fill *cfg from defaults, the file named by --config (if any) and argv.
 * Prints errors, or the help/version/sample text, itself. Returns CONFIG_OK,
 * CONFIG_INVALID or CONFIG_HELP. On CONFIG_OK the caller owns the strings
 * (config_free), and argv must outlive *cfg (config_reload reads it). */
int config_load(config_t *cfg, int argc, char **argv);
void config_free(config_t *cfg);

/* Read cfg's sources again (defaults, the --config file, the same flags) and
 * validate the whole result. When it is valid, every reloadable key whose
 * value changed is copied into *cfg and logged (info config
 * event=config_changed key= old= new=); a changed key that is not reloadable
 * keeps its running value and is logged (warn config
 * event=config_restart_needed key= running= configured=). A reloadable
 * optional path (policy) is not emptied by a reload: that too needs a
 * restart. When the sources are invalid, *cfg is left whole and the reason
 * is logged (error config event=config_reload_failed error=
 * action=kept_previous). Returns CONFIG_OK, with the number of keys
 * changed in *changed (may be NULL), or CONFIG_INVALID. */
int config_reload(config_t *cfg, size_t *changed);

/* Write the commented sample config (every key, its default and help). */
void config_write_sample(FILE *out);

/* Write the configuration reference as a Markdown table (key, type,
 * default, bounds, reloadable, meaning): docs/OPERATIONS.md holds it. */
void config_write_markdown(FILE *out);

#endif
