/* registry - `civibus registry`: add, list, rotate and revoke agency keys.
 *
 * Works offline on the hub's agency registry folder (--registry DIR or
 * CIVIBUS_REGISTRY), one AGENCY.pub entry per agency in the format of
 * proto/keyfile.h (certs/README.md), read with the same parser the hub uses:
 *   add     --agency ID --key-file FILE.pub [--name NAME] [--not-after T]
 *   list    [--json]
 *   rotate  --agency ID --key-file NEW.pub [--not-after T] [--overlap-days N]
 *   revoke  --agency ID (--key PREFIX | --all) [--reason TEXT]
 * Every change rewrites one entry atomically (keyfile_write_entry) while
 * holding an exclusive flock on the folder, so two runs never lose each
 * other's change. Before a key is added, the whole folder is searched for
 * it: a key under two agencies would make the hub refuse the registry.
 * The hub applies a change on SIGHUP; each command says so. Only key
 * prefixes (8 characters) are printed, never whole keys.
 * Exit codes: 0 done, 1 refused (agency exists or is unknown, key in use,
 * no such key), 2 usage, 4 a file cannot be read or written, or an entry is
 * invalid.
 */
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <jansson.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/file.h>
#include <time.h>
#include <unistd.h>

#include "cli.h"
#include "codec.h"
#include "keyfile.h"
#include "opts.h"

#define S_PREFIX 8          /* key characters printed */
#define S_PREFIX_MIN 4      /* shortest prefix revoke accepts */
#define S_OVERLAP_DEFAULT 7 /* days both keys work after a rotation */
#define S_DAY (24 * 3600)
#define S_PATH_MAX 4096

enum {
    S_OPT_REGISTRY = CLI_OPT_CMD,
    S_OPT_AGENCY,
    S_OPT_KEY_FILE,
    S_OPT_NAME,
    S_OPT_NOT_AFTER,
    S_OPT_OVERLAP,
    S_OPT_KEY,
    S_OPT_ALL,
    S_OPT_REASON,
    S_OPT_JSON
};

/* Every option of every subcommand; each subcommand refuses those it does
 * not take (s_only). */
static const struct option s_longopts[] = {
    CLI_OPTS_HELP,
    {"registry", required_argument, NULL, S_OPT_REGISTRY},
    {"agency", required_argument, NULL, S_OPT_AGENCY},
    {"key-file", required_argument, NULL, S_OPT_KEY_FILE},
    {"name", required_argument, NULL, S_OPT_NAME},
    {"not-after", required_argument, NULL, S_OPT_NOT_AFTER},
    {"overlap-days", required_argument, NULL, S_OPT_OVERLAP},
    {"key", required_argument, NULL, S_OPT_KEY},
    {"all", no_argument, NULL, S_OPT_ALL},
    {"reason", required_argument, NULL, S_OPT_REASON},
    {"json", no_argument, NULL, S_OPT_JSON},
    {NULL, 0, NULL, 0},
};

typedef struct {
    const char *cmd;
    const char *registry;
    const char *agency;
    const char *key_file;
    const char *name;
    const char *key_prefix;
    const char *reason;
    int64_t not_after; /* KEYFILE_FOREVER: not given */
    uint64_t overlap_days;
    bool all;
    bool json;
} s_args_t;

#define S_REMINDER                                                                            \
    "The hub applies registry changes when it re-reads the folder on SIGHUP:\n"               \
    "  kill -HUP $(pidof civibusd)\n"

static void s_usage(FILE *out)
{
    fprintf(out,
            "usage: civibus registry add    --agency ID --key-file FILE.pub [--name NAME] [--not-after T]\n"
            "       civibus registry list   [--json]\n"
            "       civibus registry rotate --agency ID --key-file NEW.pub [--not-after T] [--overlap-days N]\n"
            "       civibus registry revoke --agency ID (--key PREFIX | --all) [--reason TEXT]\n"
            "       (each with --registry DIR, or CIVIBUS_REGISTRY in the environment)\n\n"
            "Manage the hub's agency registry folder offline (certs/README.md): one ID.pub\n"
            "entry per agency with its CURVE public keys, their expiry (not-after) and\n"
            "revocations.\n\n"
            "  add      register agency ID with the key of FILE.pub (written by civibus keygen);\n"
            "           refused when ID is registered already or the key is in use\n"
            "  list     every agency and key: key prefix, status (valid, expired, revoked),\n"
            "           not-after; --json prints one JSON object\n"
            "  rotate   add the key of NEW.pub to ID; the old valid keys keep working for\n"
            "           --overlap-days N (default %d; 0: they expire now), then expire\n"
            "  revoke   revoke one key of ID (--key: a prefix of at least %d characters, as\n"
            "           list shows it) or all of them (--all); the hub refuses it from the\n"
            "           next SIGHUP on, on live connections too\n\n"
            "Options:\n"
            "  --registry DIR       the registry folder                     [CIVIBUS_REGISTRY]\n"
            "  --not-after T        the key's expiry, UTC: YYYY-MM-DDTHH:MM:SSZ (default: none)\n"
            "  --name NAME          a display name for people (at most %d characters)\n"
            "  --reason TEXT        why a key is revoked (at most %d characters, no '\"' or '\\')\n"
            "  --help               this text\n\n" S_REMINDER
            "\nExit codes: 0 done, 1 refused, 2 usage error, 4 file error or invalid entry.\n",
            S_OVERLAP_DEFAULT, S_PREFIX_MIN, KEYFILE_NAME_MAX, KEYFILE_REASON_MAX);
}

/* Text for a name or a reason: printable, within max; for a reason also no
 * '"' or '\', which the entry format cannot quote. */
static bool s_text_ok(const char *s, size_t max, bool reason)
{
    if (strlen(s) > max)
        return false;
    for (; *s; s++) {
        if ((unsigned char)*s < 0x20 || *s == 0x7f || (reason && (*s == '"' || *s == '\\')))
            return false;
    }
    return true;
}

/* Parse the options of subcommand argv[0]. allowed: the S_OPT_* it takes, 0
 * ended. Returns -1 to go on, else an exit code (after printing). */
static int s_parse(int argc, char **argv, const int *allowed, s_args_t *a)
{
    memset(a, 0, sizeof *a);
    a->cmd = argv[0];
    a->not_after = KEYFILE_FOREVER;
    a->overlap_days = S_OVERLAP_DEFAULT;
    int c;
    while ((c = cli_getopt(argc, argv, s_longopts)) != -1) {
        if (c == '?')
            return CLI_EXIT_USAGE;
        if (c == CLI_OPT_HELP) {
            s_usage(stdout);
            return CLI_EXIT_OK;
        }
        bool ok = c == S_OPT_REGISTRY;
        for (int i = 0; !ok && allowed[i]; i++)
            ok = allowed[i] == c;
        if (!ok) {
            const char *name = "?";
            for (int i = 0; s_longopts[i].name; i++)
                if (s_longopts[i].val == c)
                    name = s_longopts[i].name;
            cli_err("registry %s: option --%s does not apply (see civibus registry --help)", a->cmd, name);
            return CLI_EXIT_USAGE;
        }
        switch (c) {
        case S_OPT_REGISTRY: a->registry = optarg; break;
        case S_OPT_AGENCY:
            if (!codec_agency_valid(optarg)) {
                cli_err("registry %s: '%s' is not a valid agency id (a-z 0-9 - in dot-separated labels)", a->cmd,
                        optarg);
                return CLI_EXIT_USAGE;
            }
            a->agency = optarg;
            break;
        case S_OPT_KEY_FILE: a->key_file = optarg; break;
        case S_OPT_NAME:
            if (!s_text_ok(optarg, KEYFILE_NAME_MAX, false)) {
                cli_err("registry %s: --name: at most %d printable characters", a->cmd, KEYFILE_NAME_MAX);
                return CLI_EXIT_USAGE;
            }
            a->name = optarg;
            break;
        case S_OPT_NOT_AFTER:
            if (keyfile_time_parse(optarg, &a->not_after) != 0) {
                cli_err("registry %s: --not-after: expected a UTC time YYYY-MM-DDTHH:MM:SSZ, got '%s'", a->cmd,
                        optarg);
                return CLI_EXIT_USAGE;
            }
            if (a->not_after <= (int64_t)time(NULL)) {
                cli_err("registry %s: --not-after %s is not in the future", a->cmd, optarg);
                return CLI_EXIT_USAGE;
            }
            break;
        case S_OPT_OVERLAP:
            if (cli_parse_u64("--overlap-days", optarg, 0, 3650, &a->overlap_days) != 0)
                return CLI_EXIT_USAGE;
            break;
        case S_OPT_KEY:
            if (strlen(optarg) < S_PREFIX_MIN || strlen(optarg) > KEYFILE_Z85_LEN) {
                cli_err("registry %s: --key: a key prefix of %d to %d characters, as `registry list` shows it",
                        a->cmd, S_PREFIX_MIN, KEYFILE_Z85_LEN);
                return CLI_EXIT_USAGE;
            }
            a->key_prefix = optarg;
            break;
        case S_OPT_ALL: a->all = true; break;
        case S_OPT_REASON:
            if (!s_text_ok(optarg, KEYFILE_REASON_MAX, true)) {
                cli_err("registry %s: --reason: at most %d printable characters, without '\"' or '\\'", a->cmd,
                        KEYFILE_REASON_MAX);
                return CLI_EXIT_USAGE;
            }
            a->reason = optarg;
            break;
        case S_OPT_JSON: a->json = true; break;
        default: return CLI_EXIT_USAGE;
        }
    }
    if (!a->registry)
        a->registry = getenv("CIVIBUS_REGISTRY");
    if (!a->registry || !a->registry[0]) {
        cli_err("registry %s: no registry folder: give --registry DIR or set CIVIBUS_REGISTRY", a->cmd);
        return CLI_EXIT_USAGE;
    }
    return -1;
}

static int s_require(const s_args_t *a, const char *value, const char *option)
{
    if (value)
        return -1;
    cli_err("registry %s: %s is required (see civibus registry --help)", a->cmd, option);
    return CLI_EXIT_USAGE;
}

static bool s_is_entry_name(const char *name)
{
    size_t n = strlen(name);
    return name[0] != '.' && n > 4 && strcmp(name + n - 4, ".pub") == 0;
}

static int s_entry_filter(const struct dirent *de)
{
    return s_is_entry_name(de->d_name);
}

/* The entry names of the folder, sorted, into *list (may be NULL when
 * there are none). Returns their number, or -1 after printing. */
static int s_names(const s_args_t *a, struct dirent ***list)
{
    *list = NULL;
    int n = scandir(a->registry, list, s_entry_filter, alphasort);
    if (n < 0)
        cli_err("registry %s: %s: %s", a->cmd, a->registry, strerror(errno));
    return n;
}

static void s_names_free(struct dirent **list, int n)
{
    for (int i = 0; i < n; i++)
        free(list[i]);
    free(list);
}

/* Hold an exclusive lock on the folder for the rest of the process (the
 * descriptor is closed at exit), so that concurrent changes serialise. */
static int s_lock(const s_args_t *a)
{
    int fd = open(a->registry, O_RDONLY | O_DIRECTORY);
    if (fd < 0 || flock(fd, LOCK_EX) != 0) {
        cli_err("registry %s: %s: %s", a->cmd, a->registry, strerror(errno));
        if (fd >= 0)
            close(fd);
        return CLI_EXIT_FILE;
    }
    return -1;
}

/* Read the public key file of add and rotate: one curve key, no secret, and
 * when it names an agency, that of --agency. */
static int s_read_new_key(const s_args_t *a, keyfile_key_t *out)
{
    keyfile_t kf;
    char err[600];
    if (keyfile_read(a->key_file, &kf, err, sizeof err) != KEYFILE_OK) {
        cli_err("registry %s: %s", a->cmd, err);
        return CLI_EXIT_FILE;
    }
    bool secret = kf.curve_secret[0] != '\0';
    memset(kf.curve_secret, 0, sizeof kf.curve_secret);
    if (secret) {
        cli_err("registry %s: %s holds a secret key; give the agency's public .pub file (the secret never "
                "leaves the agency)",
                a->cmd, a->key_file);
        return CLI_EXIT_FILE;
    }
    if (kf.n_curve != 1) {
        cli_err("registry %s: %s holds %d current keys; give a file with exactly one", a->cmd, a->key_file,
                kf.n_curve);
        return CLI_EXIT_FILE;
    }
    if (kf.agency[0] && strcmp(kf.agency, a->agency) != 0) {
        cli_err("registry %s: %s is the key of agency %s, not %s", a->cmd, a->key_file, kf.agency, a->agency);
        return CLI_EXIT_REFUSED;
    }
    memset(out, 0, sizeof *out);
    snprintf(out->z85, sizeof out->z85, "%s", kf.curve[0]);
    out->not_after = a->not_after;
    out->revoked_at = KEYFILE_FOREVER;
    return -1;
}

/* Is z85 in any entry of the folder? Its agency into owner. Returns -1 when
 * it is not, 1 when it is, or an exit code after printing. */
static int s_key_in_use(const s_args_t *a, const char *z85, char *owner, size_t owner_len)
{
    struct dirent **names;
    int n = s_names(a, &names);
    if (n < 0)
        return CLI_EXIT_FILE;
    int rc = -1;
    for (int i = 0; i < n && rc == -1; i++) {
        char path[S_PATH_MAX], err[600];
        keyfile_t kf;
        snprintf(path, sizeof path, "%s/%s", a->registry, names[i]->d_name);
        if (keyfile_read_entry(path, &kf, err, sizeof err) != KEYFILE_OK) {
            cli_err("registry %s: %s (fix it first: the hub refuses the whole registry)", a->cmd, err);
            rc = CLI_EXIT_FILE;
            break;
        }
        for (int k = 0; k < kf.n_keys; k++) {
            if (strcmp(kf.keys[k].z85, z85) == 0) {
                snprintf(owner, owner_len, "%s", kf.agency);
                rc = 1;
            }
        }
    }
    s_names_free(names, n);
    return rc;
}

static void s_entry_path(const s_args_t *a, char *path, size_t len)
{
    snprintf(path, len, "%s/%s.pub", a->registry, a->agency);
}

/* Read the entry of --agency; exit 1 when there is none. */
static int s_read_entry(const s_args_t *a, keyfile_t *kf)
{
    char path[S_PATH_MAX], err[600];
    s_entry_path(a, path, sizeof path);
    if (access(path, F_OK) != 0 && errno == ENOENT) {
        cli_err("registry %s: agency %s is not registered (no %s)", a->cmd, a->agency, path);
        return CLI_EXIT_REFUSED;
    }
    if (keyfile_read_entry(path, kf, err, sizeof err) != KEYFILE_OK) {
        cli_err("registry %s: %s", a->cmd, err);
        return CLI_EXIT_FILE;
    }
    return -1;
}

static int s_write_entry(const s_args_t *a, const keyfile_t *kf, bool exclusive)
{
    char path[S_PATH_MAX], err[600];
    s_entry_path(a, path, sizeof path);
    int rc = keyfile_write_entry(path, kf, exclusive, err, sizeof err);
    if (rc == KEYFILE_EXISTS) {
        cli_err("registry %s: agency %s is registered already (%s); use rotate to add a key", a->cmd, a->agency,
                path);
        return CLI_EXIT_REFUSED;
    }
    if (rc != KEYFILE_OK) {
        cli_err("registry %s: %s", a->cmd, err);
        return CLI_EXIT_FILE;
    }
    return -1;
}

static void s_until(int64_t not_after, char *buf, size_t len)
{
    if (not_after == KEYFILE_FOREVER) {
        snprintf(buf, len, "without expiry");
        return;
    }
    char t[KEYFILE_TIME_LEN];
    keyfile_time_format(not_after, t, sizeof t);
    snprintf(buf, len, "until %s", t);
}

/* ---- add ------------------------------------------------------------------------ */

static int s_add(int argc, char **argv)
{
    static const int allowed[] = {S_OPT_AGENCY, S_OPT_KEY_FILE, S_OPT_NAME, S_OPT_NOT_AFTER, 0};
    s_args_t a;
    int rc = s_parse(argc, argv, allowed, &a);
    if (rc == -1)
        rc = s_require(&a, a.agency, "--agency");
    if (rc == -1)
        rc = s_require(&a, a.key_file, "--key-file");
    if (rc != -1)
        return rc;
    keyfile_t kf;
    memset(&kf, 0, sizeof kf);
    if ((rc = s_read_new_key(&a, &kf.keys[0])) != -1 || (rc = s_lock(&a)) != -1)
        return rc;
    char path[S_PATH_MAX], owner[65];
    s_entry_path(&a, path, sizeof path);
    if (access(path, F_OK) == 0) {
        cli_err("registry add: agency %s is registered already (%s); use rotate to add a key", a.agency, path);
        return CLI_EXIT_REFUSED;
    }
    rc = s_key_in_use(&a, kf.keys[0].z85, owner, sizeof owner);
    if (rc == 1) {
        cli_err("registry add: the key of %s is registered already, for agency %s", a.key_file, owner);
        return CLI_EXIT_REFUSED;
    }
    if (rc != -1)
        return rc;
    snprintf(kf.agency, sizeof kf.agency, "%s", a.agency);
    snprintf(kf.name, sizeof kf.name, "%s", a.name ? a.name : "");
    kf.n_keys = 1;
    if ((rc = s_write_entry(&a, &kf, true)) != -1)
        return rc;
    char until[64];
    s_until(kf.keys[0].not_after, until, sizeof until);
    printf("registered agency %s in %s: key %.*s, valid %s\n" S_REMINDER, a.agency, path, S_PREFIX,
           kf.keys[0].z85, until);
    return CLI_EXIT_OK;
}

/* ---- list ------------------------------------------------------------------------ */

static json_t *s_time_json(int64_t t)
{
    if (t == KEYFILE_FOREVER)
        return json_null();
    char buf[KEYFILE_TIME_LEN];
    keyfile_time_format(t, buf, sizeof buf);
    return json_string(buf);
}

static int s_list(int argc, char **argv)
{
    static const int allowed[] = {S_OPT_JSON, 0};
    s_args_t a;
    int rc = s_parse(argc, argv, allowed, &a);
    if (rc != -1)
        return rc;
    struct dirent **names;
    int n = s_names(&a, &names);
    if (n < 0)
        return CLI_EXIT_FILE;
    int64_t now = (int64_t)time(NULL);
    json_t *agencies = a.json ? json_array() : NULL;
    rc = CLI_EXIT_OK;
    if (!a.json)
        printf("%-32s  %-24s  %-8s  %-7s  %-20s  %s\n", "AGENCY", "NAME", "KEY", "STATUS", "NOT-AFTER",
               "REVOKED");
    for (int i = 0; i < n; i++) {
        char path[S_PATH_MAX], err[600];
        keyfile_t kf;
        snprintf(path, sizeof path, "%s/%s", a.registry, names[i]->d_name);
        if (keyfile_read_entry(path, &kf, err, sizeof err) != KEYFILE_OK) {
            cli_err("registry list: %s", err);
            rc = CLI_EXIT_FILE;
            continue;
        }
        json_t *keys = a.json ? json_array() : NULL;
        for (int k = 0; k < kf.n_keys; k++) {
            const keyfile_key_t *key = &kf.keys[k];
            const char *status = keyfile_status_name(keyfile_key_status(key, now));
            char prefix[S_PREFIX + 1];
            snprintf(prefix, sizeof prefix, "%s", key->z85);
            if (a.json) {
                json_t *o = json_pack("{s:s, s:s, s:o, s:o}", "key", prefix, "status", status, "not_after",
                                      s_time_json(key->not_after), "revoked_at", s_time_json(key->revoked_at));
                if (o && key->reason[0])
                    json_object_set_new(o, "reason", json_string(key->reason));
                json_array_append_new(keys, o);
                continue;
            }
            char na[KEYFILE_TIME_LEN] = "-", rv[KEYFILE_TIME_LEN + KEYFILE_REASON_MAX + 8] = "-";
            if (key->not_after != KEYFILE_FOREVER)
                keyfile_time_format(key->not_after, na, sizeof na);
            if (key->revoked_at != KEYFILE_FOREVER) {
                char at[KEYFILE_TIME_LEN];
                keyfile_time_format(key->revoked_at, at, sizeof at);
                snprintf(rv, sizeof rv, "%s%s%s%s", at, key->reason[0] ? " (" : "", key->reason,
                         key->reason[0] ? ")" : "");
            }
            const char *name = k > 0 ? "" : kf.name[0] ? kf.name : "-";
            printf("%-32s  %-24s  %-8s  %-7s  %-20s  %s\n", k == 0 ? kf.agency : "", name, prefix, status, na, rv);
        }
        if (a.json)
            json_array_append_new(agencies, json_pack("{s:s, s:s, s:o}", "agency", kf.agency, "name", kf.name,
                                                      "keys", keys));
    }
    s_names_free(names, n);
    if (a.json) {
        json_t *obj = json_pack("{s:s, s:o}", "registry", a.registry, "agencies", agencies);
        char *text = obj ? json_dumps(obj, JSON_COMPACT) : NULL;
        json_decref(obj);
        if (!text) {
            cli_err("registry list: cannot encode the answer as JSON");
            return CLI_EXIT_INTERNAL;
        }
        puts(text);
        free(text);
    }
    return rc;
}

/* ---- rotate ------------------------------------------------------------------------ */

static int s_rotate(int argc, char **argv)
{
    static const int allowed[] = {S_OPT_AGENCY, S_OPT_KEY_FILE, S_OPT_NOT_AFTER, S_OPT_OVERLAP, 0};
    s_args_t a;
    int rc = s_parse(argc, argv, allowed, &a);
    if (rc == -1)
        rc = s_require(&a, a.agency, "--agency");
    if (rc == -1)
        rc = s_require(&a, a.key_file, "--key-file");
    if (rc != -1)
        return rc;
    keyfile_key_t fresh;
    keyfile_t kf;
    if ((rc = s_read_new_key(&a, &fresh)) != -1 || (rc = s_lock(&a)) != -1 || (rc = s_read_entry(&a, &kf)) != -1)
        return rc;
    char owner[65];
    rc = s_key_in_use(&a, fresh.z85, owner, sizeof owner);
    if (rc == 1) {
        cli_err("registry rotate: the key of %s is registered already, for agency %s", a.key_file, owner);
        return CLI_EXIT_REFUSED;
    }
    if (rc != -1)
        return rc;
    if (kf.n_keys == KEYFILE_MAX_KEYS) {
        cli_err("registry rotate: %s holds %d keys already, the most an entry may; remove old expired or revoked "
                "lines from %s/%s.pub by hand first",
                a.agency, KEYFILE_MAX_KEYS, a.registry, a.agency);
        return CLI_EXIT_REFUSED;
    }
    int64_t now = (int64_t)time(NULL);
    int64_t cutoff = now + (int64_t)a.overlap_days * S_DAY;
    int shortened[KEYFILE_MAX_KEYS], n_short = 0;
    for (int k = 0; k < kf.n_keys; k++) {
        keyfile_key_t *key = &kf.keys[k];
        if (keyfile_key_status(key, now) == KEYFILE_VALID && key->not_after > cutoff) {
            key->not_after = cutoff;
            shortened[n_short++] = k;
        }
    }
    fresh.line = 0;
    kf.keys[kf.n_keys++] = fresh;
    if ((rc = s_write_entry(&a, &kf, false)) != -1)
        return rc;
    char until[64];
    s_until(fresh.not_after, until, sizeof until);
    printf("rotated agency %s: added key %.*s, valid %s\n", a.agency, S_PREFIX, fresh.z85, until);
    for (int i = 0; i < n_short; i++) {
        s_until(kf.keys[shortened[i]].not_after, until, sizeof until);
        printf("old key %.*s stays valid %s (overlap of %llu days), then expires\n", S_PREFIX,
               kf.keys[shortened[i]].z85, until, (unsigned long long)a.overlap_days);
    }
    printf("Switch the agency's adapters to the new key before the overlap ends.\n" S_REMINDER);
    return CLI_EXIT_OK;
}

/* ---- revoke ------------------------------------------------------------------------ */

static int s_revoke(int argc, char **argv)
{
    static const int allowed[] = {S_OPT_AGENCY, S_OPT_KEY, S_OPT_ALL, S_OPT_REASON, 0};
    s_args_t a;
    int rc = s_parse(argc, argv, allowed, &a);
    if (rc == -1)
        rc = s_require(&a, a.agency, "--agency");
    if (rc != -1)
        return rc;
    if (!a.key_prefix == !a.all) {
        cli_err("registry revoke: give exactly one of --key PREFIX and --all");
        return CLI_EXIT_USAGE;
    }
    keyfile_t kf;
    if ((rc = s_lock(&a)) != -1 || (rc = s_read_entry(&a, &kf)) != -1)
        return rc;
    int match = -1, n_match = 0;
    for (int k = 0; a.key_prefix && k < kf.n_keys; k++) {
        if (strncmp(kf.keys[k].z85, a.key_prefix, strlen(a.key_prefix)) == 0) {
            match = k;
            n_match++;
        }
    }
    if (a.key_prefix && n_match != 1) {
        cli_err(n_match ? "registry revoke: %d keys of %s start with %s; give more characters"
                        : "registry revoke: %d keys of %s start with %s (see civibus registry list)",
                n_match, a.agency, a.key_prefix);
        return CLI_EXIT_REFUSED;
    }
    int64_t now = (int64_t)time(NULL);
    char at[KEYFILE_TIME_LEN];
    keyfile_time_format(now, at, sizeof at);
    int revoked[KEYFILE_MAX_KEYS], n_rev = 0;
    for (int k = 0; k < kf.n_keys; k++) {
        keyfile_key_t *key = &kf.keys[k];
        if ((a.key_prefix && k != match) || key->revoked_at != KEYFILE_FOREVER)
            continue;
        key->revoked_at = now;
        snprintf(key->reason, sizeof key->reason, "%s", a.reason ? a.reason : "");
        revoked[n_rev++] = k;
    }
    if (n_rev == 0) {
        if (a.key_prefix) {
            char when[KEYFILE_TIME_LEN];
            keyfile_time_format(kf.keys[match].revoked_at, when, sizeof when);
            printf("key %.*s of %s was revoked already, at %s; nothing changed\n", S_PREFIX, kf.keys[match].z85,
                   a.agency, when);
        } else {
            printf("every key of %s is revoked already; nothing changed\n", a.agency);
        }
        return CLI_EXIT_OK;
    }
    if ((rc = s_write_entry(&a, &kf, false)) != -1)
        return rc;
    for (int i = 0; i < n_rev; i++)
        printf("revoked key %.*s of %s at %s%s%s%s\n", S_PREFIX, kf.keys[revoked[i]].z85, a.agency, at,
               a.reason ? " (" : "", a.reason ? a.reason : "", a.reason ? ")" : "");
    int valid = 0;
    for (int k = 0; k < kf.n_keys; k++)
        valid += keyfile_key_status(&kf.keys[k], now) == KEYFILE_VALID;
    if (valid == 0)
        printf("%s has no valid key left: it cannot connect until a new key is added (registry rotate)\n",
               a.agency);
    printf("After the SIGHUP, new connections with a revoked key are refused at the handshake and live ones\n"
           "at their next message.\n" S_REMINDER);
    return CLI_EXIT_OK;
}

int cmd_registry(int argc, char **argv)
{
    static const struct {
        const char *name;
        int (*run)(int, char **);
    } subs[] = {{"add", s_add}, {"list", s_list}, {"rotate", s_rotate}, {"revoke", s_revoke}};
    if (argc < 2) {
        s_usage(stderr);
        return CLI_EXIT_USAGE;
    }
    if (strcmp(argv[1], "--help") == 0 || strcmp(argv[1], "help") == 0) {
        s_usage(stdout);
        return CLI_EXIT_OK;
    }
    for (size_t i = 0; i < sizeof subs / sizeof subs[0]; i++)
        if (strcmp(argv[1], subs[i].name) == 0)
            return subs[i].run(argc - 1, argv + 1);
    cli_err("registry: unknown subcommand '%s' (add, list, rotate, revoke; see civibus registry --help)", argv[1]);
    return CLI_EXIT_USAGE;
}
