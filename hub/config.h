/* config - the hub's settings: one table drives the file parser, the
 * command-line flags, validation, --help and the commented sample config.
 *
 * Sources, later ones winning: built-in defaults, the config file
 * (--config FILE; "key = value" lines, '#' comments), command-line flags
 * (every key is also a flag: map_size_max -> --map-size-max VALUE; booleans
 * take no value and have a --no- form). Sizes accept K, M, G suffixes (powers
 * of 1024, optionally followed by "iB"). Every value is checked against its
 * bounds; an error names the key, the source and the line.
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
    char *registry;          /* agency registry folder */
    char *key;               /* hub secret key file */
    char *policy;            /* access policy file; "" for none */
    char *log_level;
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
    uint64_t agency_subscriptions_max; /* live subscriptions of one agency */
    uint64_t agency_connections_max;   /* live connections of one agency */
    uint64_t agency_publish_rate;      /* events per second of one agency; 0: no ceiling */
    uint64_t agency_publish_bytes;     /* bytes of events per second of one agency; 0: no ceiling */
} config_t;

enum config_err {
    CONFIG_OK = 0,
    CONFIG_INVALID = -1, /* message printed to stderr */
    CONFIG_HELP = 1,     /* --help or --version or --print-config was handled */
};

/* Fill *cfg from defaults, the file named by --config (if any) and argv.
 * Prints errors, or the help/version/sample text, itself. Returns CONFIG_OK,
 * CONFIG_INVALID or CONFIG_HELP. On CONFIG_OK the caller owns the strings
 * (config_free). */
int config_load(config_t *cfg, int argc, char **argv);
void config_free(config_t *cfg);

/* Write the commented sample config (every key, its default and help). */
void config_write_sample(FILE *out);

#endif
