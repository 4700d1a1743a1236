/* registry - `civibus registry`: add, list, rotate and revoke agency keys.
 *
 * Works offline on the hub's agency registry folder (--registry DIR or
 * CIVIBUS_REGISTRY), one AGENCY.pub entry per agency in the format of
 * proto/keyfile.h (certs/README.md), read with the same parser the hub uses:
 *   add     --agency ID --key-file FILE.pub [--sign-key-file ID-sign.pub]
 *           [--name NAME] [--not-after T]
 *   list    [--json]
 *   rotate  --agency ID (--key-file NEW.pub | --sign-key-file NEW-sign.pub)...
 *           [--not-after T] [--overlap-days N]
 *   revoke  --agency ID (--key PREFIX | --all | --sign-key PREFIX | --all-sign)
 *           [--reason TEXT]
 * With --hub instead of --agency ID, add, rotate and revoke work on the
 * hub's own checkpoint signing keys, the list KEYFILE_HUB_SIGN_FILE
 * (keyfile_hub_t), with the same rules as an agency's signing keys; list
 * shows them as agency "(hub)".
 * An entry holds two kinds of keys, CURVE keys (curve/revoked lines, who may
 * connect) and Ed25519 signing keys (sign/revoked-sign lines, whose event
 * signatures count); rotate, revoke and list treat both through one view
 * (s_view_t), so that the two kinds follow the same rules.
 * Every change rewrites one entry atomically (keyfile_write_entry) while
 * holding an exclusive flock on the folder, so two runs never lose each
 * other's change. Before a key is added, the whole folder is searched for
 * it: a key under two agencies would make the hub refuse the registry.
 * The hub applies a change on SIGHUP; each command says so. Only key
 * prefixes (8 characters) are printed, never whole keys; a signing key is
 * shown by its key id (16 hex digits, proto/crypto.h), as the hub logs it.
 * The registry folder may also hold hub-sign.pub (KEYFILE_HUB_SIGN_FILE),
 * the hub's own signing public key, which is not an entry and is skipped.
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
#include "crypto.h"
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
    S_OPT_JSON,
    S_OPT_SIGN_KEY_FILE,
    S_OPT_SIGN_KEY,
    S_OPT_ALL_SIGN,
    S_OPT_HUB
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
    {"sign-key-file", required_argument, NULL, S_OPT_SIGN_KEY_FILE},
    {"sign-key", required_argument, NULL, S_OPT_SIGN_KEY},
    {"all-sign", no_argument, NULL, S_OPT_ALL_SIGN},
    {"hub", no_argument, NULL, S_OPT_HUB},
    {NULL, 0, NULL, 0},
};

typedef struct {
    const char *cmd;
    const char *registry;
    const char *agency;
    const char *key_file;      /* a CURVE public key file */
    const char *sign_key_file; /* a signing public key file (PEM) */
    const char *name;
    const char *key_prefix;
    const char *sign_prefix;
    const char *reason;
    int64_t not_after; /* KEYFILE_FOREVER: not given */
    uint64_t overlap_days;
    bool all;
    bool all_sign;
    bool json;
    bool hub; /* the hub's signing keys instead of an agency */
} s_args_t;

/* The two kinds of keys of an entry, and the hub's signing keys. */
typedef enum { S_CURVE = 0, S_SIGN = 1, S_HUB = 2 } s_kind_t;

/* One key of an entry, of either kind, as rotate, revoke and list see it:
 * pointers into the keyfile_t it was made from (valid while that lives). */
typedef struct {
    keyfile_key_t *curve; /* exactly one of curve and sign is set */
    keyfile_sign_t *sign;
    int64_t *not_after;
    int64_t *revoked_at;
    char *reason;                       /* KEYFILE_REASON_MAX + 1 bytes */
    char key[2 * KEYFILE_SIGN_LEN + 1]; /* the whole key: Z85, or hex of the raw key */
    char id[KEYFILE_Z85_LEN + 1];       /* what a prefix matches: Z85, or the key id */
} s_view_t;

static const struct {
    const char *what;     /* in messages */
    const char *kind;     /* list's KIND column */
    int shown;            /* characters of id printed */
    int max;              /* keys of this kind an entry may hold */
    const char *file_opt; /* rotate's option */
} s_kinds[] = {
    [S_CURVE] = {"key", "curve", S_PREFIX, KEYFILE_MAX_KEYS, "--key-file"},
    [S_SIGN] = {"signing key", "sign", CRYPTO_KEYID_HEX - 1, KEYFILE_MAX_SIGN, "--sign-key-file"},
    [S_HUB] = {"hub signing key", "hub-sign", CRYPTO_KEYID_HEX - 1, KEYFILE_MAX_HUB_SIGN, "--sign-key-file"},
};

#define S_REMINDER                                                                            \
    "The hub applies registry changes when it re-reads the folder on SIGHUP:\n"               \
    "  kill -HUP $(pidof civibusd)\n"

static void s_usage(FILE *out)
{
    fprintf(out,
            "usage: civibus registry add    --agency ID --key-file FILE.pub [--sign-key-file ID-sign.pub]\n"
            "                               [--name NAME] [--not-after T]\n"
            "       civibus registry list   [--json]\n"
            "       civibus registry rotate --agency ID [--key-file NEW.pub] [--sign-key-file NEW-sign.pub]\n"
            "                               [--not-after T] [--overlap-days N]\n"
            "       civibus registry revoke --agency ID (--key PREFIX | --all | --sign-key PREFIX | --all-sign)\n"
            "                               [--reason TEXT]\n"
            "       civibus registry add|rotate --hub --sign-key-file HUB-sign.pub [--not-after T]\n"
            "                               [--overlap-days N]\n"
            "       civibus registry revoke --hub (--sign-key PREFIX | --all-sign) [--reason TEXT]\n"
            "       (each with --registry DIR, or CIVIBUS_REGISTRY in the environment)\n\n"
            "Manage the hub's agency registry folder offline (certs/README.md): one ID.pub\n"
            "entry per agency with its CURVE public keys and its Ed25519 signing keys, their\n"
            "expiry (not-after) and revocations.\n\n"
            "  add      register agency ID with the key of FILE.pub (written by civibus keygen)\n"
            "           and the signing key of ID-sign.pub (PEM); refused when ID is\n"
            "           registered already or a key is in use\n"
            "  list     every agency and key: kind (curve, sign), key prefix or signing key\n"
            "           id, status (valid, expired, revoked), not-after, and the hub's signing\n"
            "           keys as agency (hub), kind hub-sign; --json: one object\n"
            "  rotate   add the key of NEW.pub and/or the signing key of NEW-sign.pub to ID;\n"
            "           the old valid keys of that kind keep working for --overlap-days N\n"
            "           (default %d; 0: they expire now), then expire\n"
            "  revoke   revoke one CURVE key of ID (--key: a prefix of at least %d characters,\n"
            "           as list shows it) or all of them (--all), or one signing key (--sign-key:\n"
            "           a prefix of its key id) or all of them (--all-sign); the hub refuses it\n"
            "           from the next SIGHUP on, on live connections too\n"
            "  --hub    instead of --agency ID: the hub's own checkpoint signing keys, the list\n"
            "           %s in the folder (add creates it, rotate adds the hub's next key,\n"
            "           revoke ends one); a checkpoint counts when a key of the list valid at\n"
            "           its time signed it, so keep old keys listed\n\n"
            "Options:\n"
            "  --registry DIR       the registry folder                     [CIVIBUS_REGISTRY]\n"
            "  --not-after T        the key's expiry, UTC: YYYY-MM-DDTHH:MM:SSZ (default: none)\n"
            "  --name NAME          a display name for people (at most %d characters)\n"
            "  --reason TEXT        why a key is revoked (at most %d characters, no '\"' or '\\')\n"
            "  --help               this text\n\n" S_REMINDER
            "\nExit codes: 0 done, 1 refused, 2 usage error, 4 file error or invalid entry.\n",
            S_OVERLAP_DEFAULT, S_PREFIX_MIN, KEYFILE_HUB_SIGN_FILE, KEYFILE_NAME_MAX, KEYFILE_REASON_MAX);
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
            if (strcmp(optarg, "hub-sign") == 0) {
                cli_err("registry %s: 'hub-sign' is reserved: %s is the hub's signing key, not an agency",
                        a->cmd, KEYFILE_HUB_SIGN_FILE);
                return CLI_EXIT_USAGE;
            }
            a->agency = optarg;
            break;
        case S_OPT_KEY_FILE: a->key_file = optarg; break;
        case S_OPT_SIGN_KEY_FILE: a->sign_key_file = optarg; break;
        case S_OPT_SIGN_KEY:
            if (strlen(optarg) < S_PREFIX_MIN || strlen(optarg) > CRYPTO_KEYID_HEX - 1) {
                cli_err("registry %s: --sign-key: a key id prefix of %d to %d hex digits, as `registry list` "
                        "shows it",
                        a->cmd, S_PREFIX_MIN, CRYPTO_KEYID_HEX - 1);
                return CLI_EXIT_USAGE;
            }
            a->sign_prefix = optarg;
            break;
        case S_OPT_ALL_SIGN: a->all_sign = true; break;
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
        case S_OPT_HUB: a->hub = true; break;
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

static int s_entry_filter(const struct dirent *de)
{
    return keyfile_is_entry_name(de->d_name);
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

/* n signing keys (an agency's, or the hub's list) as views, into v;
 * returns n. */
static int s_sign_views(keyfile_sign_t *keys, int n, s_view_t *v)
{
    for (int i = 0; i < n; i++) {
        keyfile_sign_t *k = &keys[i];
        uint8_t id[CRYPTO_KEYID_LEN];
        memset(&v[i], 0, sizeof v[i]);
        v[i].sign = k;
        v[i].not_after = &k->not_after;
        v[i].revoked_at = &k->revoked_at;
        v[i].reason = k->reason;
        crypto_hex(k->pub, sizeof k->pub, v[i].key);
        crypto_key_id_raw(k->pub, id);
        crypto_hex(id, sizeof id, v[i].id);
    }
    return n;
}

/* The keys of kind (S_CURVE or S_SIGN) in kf as views, into v (room for
 * KEYFILE_MAX_KEYS); returns their number. */
static int s_views(keyfile_t *kf, s_kind_t kind, s_view_t *v)
{
    if (kind != S_CURVE)
        return s_sign_views(kf->sign, kf->n_sign, v);
    for (int i = 0; i < kf->n_keys; i++) {
        keyfile_key_t *k = &kf->keys[i];
        memset(&v[i], 0, sizeof v[i]);
        v[i].curve = k;
        v[i].not_after = &k->not_after;
        v[i].revoked_at = &k->revoked_at;
        v[i].reason = k->reason;
        snprintf(v[i].key, sizeof v[i].key, "%s", k->z85);
        snprintf(v[i].id, sizeof v[i].id, "%s", k->z85);
    }
    return kf->n_keys;
}

static keyfile_status_t s_view_status(const s_view_t *v, int64_t now)
{
    return v->curve ? keyfile_key_status(v->curve, now) : keyfile_sign_status(v->sign, now);
}

/* Read the public key files of add and rotate into in: --key-file (one
 * curve key, no secret, and when it names an agency, that of --agency) as
 * in->keys[0], --sign-key-file (an Ed25519 public key, PEM) as in->sign[0];
 * either may be absent. */
static int s_read_new_keys(const s_args_t *a, keyfile_t *in)
{
    memset(in, 0, sizeof *in);
    char err[600];
    if (a->sign_key_file) {
        crypto_key_t *key = NULL;
        if (crypto_key_read_public(a->sign_key_file, &key, err, sizeof err) != CRYPTO_OK) {
            cli_err("registry %s: %s", a->cmd, err);
            return CLI_EXIT_FILE;
        }
        keyfile_sign_t *s = &in->sign[in->n_sign++];
        crypto_key_public(key, s->pub);
        crypto_key_destroy(&key);
        s->not_after = a->not_after;
        s->revoked_at = KEYFILE_FOREVER;
    }
    if (!a->key_file)
        return -1;
    keyfile_t kf;
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
    keyfile_key_t *k = &in->keys[in->n_keys++];
    snprintf(k->z85, sizeof k->z85, "%s", kf.curve[0]);
    k->not_after = a->not_after;
    k->revoked_at = KEYFILE_FOREVER;
    return -1;
}

/* Is any key of in (of either kind) in an entry of the folder already? A
 * key under two agencies would make the hub refuse the registry. Returns -1
 * when none is, else an exit code after printing. */
static int s_keys_in_use(const s_args_t *a, keyfile_t *in)
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
        for (s_kind_t kind = S_CURVE; kind <= S_SIGN && rc == -1; kind++) {
            s_view_t old[KEYFILE_MAX_KEYS], fresh[KEYFILE_MAX_KEYS];
            int n_old = s_views(&kf, kind, old), n_fresh = s_views(in, kind, fresh);
            for (int f = 0; f < n_fresh && rc == -1; f++) {
                for (int k = 0; k < n_old && rc == -1; k++) {
                    if (strcmp(old[k].key, fresh[f].key) == 0) {
                        cli_err("registry %s: the %s of %s is registered already, for agency %s", a->cmd,
                                s_kinds[kind].what, kind == S_CURVE ? a->key_file : a->sign_key_file,
                                kf.agency);
                        rc = CLI_EXIT_REFUSED;
                    }
                }
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

/* ---- the hub's signing keys ----------------------------------------------------------- */

#define S_HUB_REMINDER                                                                           \
    "Verifiers read this list (civibus verify --registry, civ_hub_keys_new): publish the new\n"   \
    "file where they take it from. The hub signs with its signing_key setting; point it at a\n" \
    "valid key and restart the hub before an old key's not-after.\n"

static void s_hub_path(const s_args_t *a, char *path, size_t len)
{
    snprintf(path, len, "%s/%s", a->registry, KEYFILE_HUB_SIGN_FILE);
}

/* Read the hub's list into hub; exit 1 when there is none. */
static int s_read_hub(const s_args_t *a, keyfile_hub_t *hub)
{
    char path[S_PATH_MAX], err[600];
    s_hub_path(a, path, sizeof path);
    if (access(path, F_OK) != 0 && errno == ENOENT) {
        cli_err("registry %s: the hub has no signing keys in %s yet (civibus registry add --hub)", a->cmd, path);
        return CLI_EXIT_REFUSED;
    }
    if (keyfile_read_hub_sign(path, hub, err, sizeof err) != KEYFILE_OK) {
        cli_err("registry %s: %s", a->cmd, err);
        return CLI_EXIT_FILE;
    }
    return -1;
}

static int s_write_hub(const s_args_t *a, const keyfile_hub_t *hub, bool exclusive)
{
    char path[S_PATH_MAX], err[600];
    s_hub_path(a, path, sizeof path);
    int rc = keyfile_write_hub_sign(path, hub, exclusive, err, sizeof err);
    if (rc == KEYFILE_EXISTS) {
        cli_err("registry %s: the hub's signing keys are listed already (%s); use rotate --hub to add one", a->cmd,
                path);
        return CLI_EXIT_REFUSED;
    }
    if (rc != KEYFILE_OK) {
        cli_err("registry %s: %s", a->cmd, err);
        return CLI_EXIT_FILE;
    }
    return -1;
}

/* The options of add and rotate --hub: a signing key file, nothing else
 * about an agency. */
static int s_hub_args(const s_args_t *a)
{
    if (a->agency || a->key_file || a->name) {
        cli_err("registry %s --hub: --agency, --key-file and --name do not apply to the hub's signing keys", a->cmd);
        return CLI_EXIT_USAGE;
    }
    return s_require(a, a->sign_key_file, "--sign-key-file");
}

static int s_hub_add(const s_args_t *a)
{
    int rc;
    keyfile_t in;
    if ((rc = s_hub_args(a)) != -1 || (rc = s_read_new_keys(a, &in)) != -1 || (rc = s_lock(a)) != -1 ||
        (rc = s_keys_in_use(a, &in)) != -1)
        return rc;
    keyfile_hub_t *hub = calloc(1, sizeof *hub);
    if (!hub) {
        cli_err("registry add: out of memory");
        return CLI_EXIT_INTERNAL;
    }
    hub->sign[hub->n_sign++] = in.sign[0];
    rc = s_write_hub(a, hub, true);
    if (rc == -1) {
        s_view_t v[1];
        char path[S_PATH_MAX], until[64];
        s_sign_views(hub->sign, 1, v);
        s_hub_path(a, path, sizeof path);
        s_until(hub->sign[0].not_after, until, sizeof until);
        printf("listed the hub's signing key %s in %s, valid %s\n" S_HUB_REMINDER, v[0].id, path, until);
        rc = CLI_EXIT_OK;
    }
    free(hub);
    return rc;
}

/* ---- add ------------------------------------------------------------------------ */

static int s_add(int argc, char **argv)
{
    static const int allowed[] = {S_OPT_AGENCY,    S_OPT_KEY_FILE, S_OPT_SIGN_KEY_FILE, S_OPT_NAME,
                                  S_OPT_NOT_AFTER, S_OPT_HUB,      0};
    s_args_t a;
    int rc = s_parse(argc, argv, allowed, &a);
    if (rc == -1 && a.hub)
        return s_hub_add(&a);
    if (rc == -1)
        rc = s_require(&a, a.agency, "--agency");
    if (rc == -1)
        rc = s_require(&a, a.key_file, "--key-file");
    if (rc != -1)
        return rc;
    keyfile_t kf;
    if ((rc = s_read_new_keys(&a, &kf)) != -1 || (rc = s_lock(&a)) != -1)
        return rc;
    char path[S_PATH_MAX];
    s_entry_path(&a, path, sizeof path);
    if (access(path, F_OK) == 0) {
        cli_err("registry add: agency %s is registered already (%s); use rotate to add a key", a.agency, path);
        return CLI_EXIT_REFUSED;
    }
    if ((rc = s_keys_in_use(&a, &kf)) != -1)
        return rc;
    snprintf(kf.agency, sizeof kf.agency, "%s", a.agency);
    snprintf(kf.name, sizeof kf.name, "%s", a.name ? a.name : "");
    if ((rc = s_write_entry(&a, &kf, true)) != -1)
        return rc;
    char until[64];
    s_until(kf.keys[0].not_after, until, sizeof until);
    printf("registered agency %s in %s: key %.*s, valid %s\n", a.agency, path, S_PREFIX, kf.keys[0].z85, until);
    s_view_t v[KEYFILE_MAX_KEYS];
    if (s_views(&kf, S_SIGN, v) == 1)
        printf("signing key %s, valid %s\n", v[0].id, until);
    printf(S_REMINDER);
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

/* One key of list: a row of the table, under agency and name (both "" on
 * the rows after an agency's first), or with --json an object appended to
 * arr. */
static void s_list_key(const s_args_t *a, s_kind_t kind, const s_view_t *v, int64_t now, const char *agency,
                       const char *name, json_t *arr)
{
    const char *status = keyfile_status_name(s_view_status(v, now));
    char shown[KEYFILE_Z85_LEN + 1];
    snprintf(shown, sizeof shown, "%.*s", s_kinds[kind].shown, v->id);
    if (a->json) {
        json_t *o = json_pack("{s:s, s:s, s:o, s:o}", kind == S_CURVE ? "key" : "key_id", shown, "status", status,
                              "not_after", s_time_json(*v->not_after), "revoked_at", s_time_json(*v->revoked_at));
        if (o && v->reason[0])
            json_object_set_new(o, "reason", json_string(v->reason));
        json_array_append_new(arr, o);
        return;
    }
    char na[KEYFILE_TIME_LEN] = "-", rv[KEYFILE_TIME_LEN + KEYFILE_REASON_MAX + 8] = "-";
    if (*v->not_after != KEYFILE_FOREVER)
        keyfile_time_format(*v->not_after, na, sizeof na);
    if (*v->revoked_at != KEYFILE_FOREVER) {
        char at[KEYFILE_TIME_LEN];
        keyfile_time_format(*v->revoked_at, at, sizeof at);
        snprintf(rv, sizeof rv, "%s%s%s%s", at, v->reason[0] ? " (" : "", v->reason, v->reason[0] ? ")" : "");
    }
    printf("%-32s  %-24s  %-8s  %-16s  %-7s  %-20s  %s\n", agency, name, s_kinds[kind].kind, shown, status, na, rv);
}

/* The hub's signing keys, when the folder lists them: rows of agency
 * "(hub)", or with --json objects appended to arr. Returns an exit code. */
static int s_list_hub(const s_args_t *a, int64_t now, json_t *arr)
{
    char path[S_PATH_MAX], err[600];
    s_hub_path(a, path, sizeof path);
    if (access(path, F_OK) != 0 && errno == ENOENT)
        return CLI_EXIT_OK;
    keyfile_hub_t *hub = malloc(sizeof *hub);
    if (!hub) {
        cli_err("registry list: out of memory");
        return CLI_EXIT_INTERNAL;
    }
    int rc = CLI_EXIT_OK;
    if (keyfile_read_hub_sign(path, hub, err, sizeof err) != KEYFILE_OK) {
        cli_err("registry list: %s", err);
        rc = CLI_EXIT_FILE;
    } else {
        s_view_t v[KEYFILE_MAX_HUB_SIGN];
        int nv = s_sign_views(hub->sign, hub->n_sign, v);
        for (int k = 0; k < nv; k++)
            s_list_key(a, S_HUB, &v[k], now, k ? "" : "(hub)", k ? "" : "-", arr);
    }
    free(hub);
    return rc;
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
        printf("%-32s  %-24s  %-8s  %-16s  %-7s  %-20s  %s\n", "AGENCY", "NAME", "KIND", "KEY", "STATUS",
               "NOT-AFTER", "REVOKED");
    for (int i = 0; i < n; i++) {
        char path[S_PATH_MAX], err[600];
        keyfile_t kf;
        snprintf(path, sizeof path, "%s/%s", a.registry, names[i]->d_name);
        if (keyfile_read_entry(path, &kf, err, sizeof err) != KEYFILE_OK) {
            cli_err("registry list: %s", err);
            rc = CLI_EXIT_FILE;
            continue;
        }
        json_t *keys[2] = {a.json ? json_array() : NULL, a.json ? json_array() : NULL};
        int row = 0;
        for (s_kind_t kind = S_CURVE; kind <= S_SIGN; kind++) {
            s_view_t v[KEYFILE_MAX_KEYS];
            int nv = s_views(&kf, kind, v);
            for (int k = 0; k < nv; k++, row++)
                s_list_key(&a, kind, &v[k], now, row ? "" : kf.agency, row ? "" : kf.name[0] ? kf.name : "-",
                           keys[kind]);
        }
        if (a.json)
            json_array_append_new(agencies, json_pack("{s:s, s:s, s:o, s:o}", "agency", kf.agency, "name", kf.name,
                                                      "keys", keys[S_CURVE], "sign_keys", keys[S_SIGN]));
    }
    s_names_free(names, n);
    json_t *hub_keys = a.json ? json_array() : NULL;
    int hrc = s_list_hub(&a, now, hub_keys);
    if (hrc != CLI_EXIT_OK)
        rc = hrc;
    if (a.json) {
        json_t *obj = json_pack("{s:s, s:o, s:o}", "registry", a.registry, "agencies", agencies, "hub_sign_keys",
                                hub_keys);
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

/* Limit the not-after of the valid keys among v (nv of them) to cutoff;
 * their indexes into shortened (*n_short). */
static void s_shorten(s_view_t *v, int nv, int64_t now, int64_t cutoff, int *shortened, int *n_short)
{
    *n_short = 0;
    for (int k = 0; k < nv; k++) {
        if (s_view_status(&v[k], now) == KEYFILE_VALID && *v[k].not_after > cutoff) {
            *v[k].not_after = cutoff;
            shortened[(*n_short)++] = k;
        }
    }
}

/* Say what a rotation did: the key added last of v (nv keys of kind, of
 * who) and the old ones whose not-after it shortened. */
static void s_print_rotated(const char *who, s_kind_t kind, const s_view_t *v, int nv, const int *shortened,
                            int n_short, uint64_t overlap_days)
{
    char until[64];
    s_until(*v[nv - 1].not_after, until, sizeof until);
    printf("rotated %s: added %s %.*s, valid %s\n", who, s_kinds[kind].what, s_kinds[kind].shown, v[nv - 1].id,
           until);
    for (int i = 0; i < n_short; i++) {
        const s_view_t *old = &v[shortened[i]];
        s_until(*old->not_after, until, sizeof until);
        printf("old %s %.*s stays valid %s (overlap of %llu days), then expires\n", s_kinds[kind].what,
               s_kinds[kind].shown, old->id, until, (unsigned long long)overlap_days);
    }
}

/* Add the fresh key of kind (in's only one) to kf after limiting kf's valid
 * keys of that kind to cutoff; their indexes into shortened (*n_short). */
static int s_rotate_kind(const s_args_t *a, keyfile_t *kf, keyfile_t *in, s_kind_t kind, int64_t now,
                         int64_t cutoff, int *shortened, int *n_short)
{
    *n_short = 0;
    s_view_t v[KEYFILE_MAX_KEYS];
    int nv = s_views(kf, kind, v);
    if (nv == s_kinds[kind].max) {
        cli_err("registry rotate: %s holds %d %ss already, the most an entry may; remove old expired or "
                "revoked lines from %s/%s.pub by hand first",
                a->agency, s_kinds[kind].max, s_kinds[kind].what, a->registry, a->agency);
        return CLI_EXIT_REFUSED;
    }
    s_shorten(v, nv, now, cutoff, shortened, n_short);
    if (kind == S_CURVE)
        kf->keys[kf->n_keys++] = in->keys[0];
    else
        kf->sign[kf->n_sign++] = in->sign[0];
    return -1;
}

/* rotate --hub: add the hub's next signing key, and give the valid ones an
 * overlap. */
static int s_hub_rotate(const s_args_t *a)
{
    int rc;
    keyfile_t in;
    if ((rc = s_hub_args(a)) != -1 || (rc = s_read_new_keys(a, &in)) != -1 || (rc = s_lock(a)) != -1 ||
        (rc = s_keys_in_use(a, &in)) != -1)
        return rc;
    keyfile_hub_t *hub = malloc(sizeof *hub);
    if (!hub) {
        cli_err("registry rotate: out of memory");
        return CLI_EXIT_INTERNAL;
    }
    if ((rc = s_read_hub(a, hub)) != -1)
        goto done;
    rc = CLI_EXIT_REFUSED;
    for (int i = 0; i < hub->n_sign; i++) {
        if (memcmp(hub->sign[i].pub, in.sign[0].pub, KEYFILE_SIGN_LEN) == 0) {
            cli_err("registry rotate: the key of %s is listed already as a hub signing key", a->sign_key_file);
            goto done;
        }
    }
    if (hub->n_sign == KEYFILE_MAX_HUB_SIGN) {
        cli_err("registry rotate: the hub lists %d signing keys already, the most a list may hold", hub->n_sign);
        goto done;
    }
    s_view_t v[KEYFILE_MAX_HUB_SIGN];
    int shortened[KEYFILE_MAX_HUB_SIGN], n_short;
    int64_t now = (int64_t)time(NULL);
    int nv = s_sign_views(hub->sign, hub->n_sign, v);
    s_shorten(v, nv, now, now + (int64_t)a->overlap_days * S_DAY, shortened, &n_short);
    hub->sign[hub->n_sign++] = in.sign[0];
    if ((rc = s_write_hub(a, hub, false)) != -1)
        goto done;
    nv = s_sign_views(hub->sign, hub->n_sign, v);
    s_print_rotated("the hub", S_HUB, v, nv, shortened, n_short, a->overlap_days);
    printf(S_HUB_REMINDER);
    rc = CLI_EXIT_OK;
done:
    free(hub);
    return rc;
}

static int s_rotate(int argc, char **argv)
{
    static const int allowed[] = {S_OPT_AGENCY,  S_OPT_KEY_FILE, S_OPT_SIGN_KEY_FILE, S_OPT_NOT_AFTER,
                                  S_OPT_OVERLAP, S_OPT_HUB,      0};
    s_args_t a;
    int rc = s_parse(argc, argv, allowed, &a);
    if (rc == -1 && a.hub)
        return s_hub_rotate(&a);
    if (rc == -1)
        rc = s_require(&a, a.agency, "--agency");
    if (rc == -1 && !a.key_file)
        rc = s_require(&a, a.sign_key_file, "--key-file or --sign-key-file");
    if (rc != -1)
        return rc;
    keyfile_t in, kf;
    if ((rc = s_read_new_keys(&a, &in)) != -1 || (rc = s_lock(&a)) != -1 || (rc = s_read_entry(&a, &kf)) != -1 ||
        (rc = s_keys_in_use(&a, &in)) != -1)
        return rc;
    int64_t now = (int64_t)time(NULL);
    int64_t cutoff = now + (int64_t)a.overlap_days * S_DAY;
    int shortened[2][KEYFILE_MAX_KEYS], n_short[2] = {0, 0};
    bool given[2] = {in.n_keys > 0, in.n_sign > 0};
    for (s_kind_t kind = S_CURVE; kind <= S_SIGN; kind++)
        if (given[kind] &&
            (rc = s_rotate_kind(&a, &kf, &in, kind, now, cutoff, shortened[kind], &n_short[kind])) != -1)
            return rc;
    if ((rc = s_write_entry(&a, &kf, false)) != -1)
        return rc;
    char who[96];
    snprintf(who, sizeof who, "agency %s", a.agency);
    for (s_kind_t kind = S_CURVE; kind <= S_SIGN; kind++) {
        if (!given[kind])
            continue;
        s_view_t v[KEYFILE_MAX_KEYS];
        int nv = s_views(&kf, kind, v);
        s_print_rotated(who, kind, v, nv, shortened[kind], n_short[kind], a.overlap_days);
    }
    printf("Switch the agency's adapters to the new key before the overlap ends.\n" S_REMINDER);
    return CLI_EXIT_OK;
}

/* ---- revoke ------------------------------------------------------------------------ */

/* Revoke, among v (nv keys of kind, of who), the one prefix matches, or all
 * when prefix is NULL, from now; their indexes into revoked (*n_rev).
 * Returns -1 to go on and write, else an exit code (after printing: no
 * match, or nothing left to revoke). */
static int s_revoke_views(const s_args_t *a, const char *who, s_kind_t kind, const char *prefix, s_view_t *v,
                          int nv, int64_t now, int *revoked, int *n_rev)
{
    const char *what = s_kinds[kind].what;
    int shown = s_kinds[kind].shown;
    int match = -1, n_match = 0;
    for (int k = 0; prefix && k < nv; k++) {
        if (strncmp(v[k].id, prefix, strlen(prefix)) == 0) {
            match = k;
            n_match++;
        }
    }
    if (prefix && n_match != 1) {
        cli_err(n_match ? "registry revoke: %d %ss of %s start with %s; give more characters"
                        : "registry revoke: %d %ss of %s start with %s (see civibus registry list)",
                n_match, what, who, prefix);
        return CLI_EXIT_REFUSED;
    }
    *n_rev = 0;
    for (int k = 0; k < nv; k++) {
        if ((prefix && k != match) || *v[k].revoked_at != KEYFILE_FOREVER)
            continue;
        *v[k].revoked_at = now;
        snprintf(v[k].reason, KEYFILE_REASON_MAX + 1, "%s", a->reason ? a->reason : "");
        revoked[(*n_rev)++] = k;
    }
    if (*n_rev)
        return -1;
    if (prefix) {
        char when[KEYFILE_TIME_LEN];
        keyfile_time_format(*v[match].revoked_at, when, sizeof when);
        printf("%s %.*s of %s was revoked already, at %s; nothing changed\n", what, shown, v[match].id, who, when);
    } else {
        printf("every %s of %s is revoked already; nothing changed\n", what, who);
    }
    return CLI_EXIT_OK;
}

static int s_revoke(int argc, char **argv)
{
    static const int allowed[] = {S_OPT_AGENCY,   S_OPT_KEY,    S_OPT_ALL, S_OPT_SIGN_KEY,
                                  S_OPT_ALL_SIGN, S_OPT_REASON, S_OPT_HUB, 0};
    s_args_t a;
    int rc = s_parse(argc, argv, allowed, &a);
    if (rc == -1 && !a.hub)
        rc = s_require(&a, a.agency, "--agency");
    if (rc != -1)
        return rc;
    if (a.hub && (a.agency || a.key_prefix || a.all)) {
        cli_err("registry revoke --hub: give --sign-key PREFIX or --all-sign (the hub's signing keys)");
        return CLI_EXIT_USAGE;
    }
    if ((a.key_prefix != NULL) + a.all + (a.sign_prefix != NULL) + a.all_sign != 1) {
        cli_err("registry revoke: give exactly one of --key PREFIX, --all, --sign-key PREFIX and --all-sign");
        return CLI_EXIT_USAGE;
    }
    s_kind_t kind = a.hub ? S_HUB : a.key_prefix || a.all ? S_CURVE : S_SIGN;
    const char *prefix = kind == S_CURVE ? a.key_prefix : a.sign_prefix;
    const char *what = s_kinds[kind].what;
    int shown = s_kinds[kind].shown;
    char who[96];
    snprintf(who, sizeof who, "%s", a.hub ? "the hub" : a.agency);
    keyfile_t kf;
    keyfile_hub_t *hub = malloc(sizeof *hub);
    if (!hub) {
        cli_err("registry revoke: out of memory");
        return CLI_EXIT_INTERNAL;
    }
    if ((rc = s_lock(&a)) != -1 || (rc = a.hub ? s_read_hub(&a, hub) : s_read_entry(&a, &kf)) != -1)
        goto done;
    s_view_t v[KEYFILE_MAX_HUB_SIGN];
    int nv = a.hub ? s_sign_views(hub->sign, hub->n_sign, v) : s_views(&kf, kind, v);
    int64_t now = (int64_t)time(NULL);
    char at[KEYFILE_TIME_LEN];
    keyfile_time_format(now, at, sizeof at);
    int revoked[KEYFILE_MAX_HUB_SIGN], n_rev = 0;
    if ((rc = s_revoke_views(&a, who, kind, prefix, v, nv, now, revoked, &n_rev)) != -1)
        goto done;
    if ((rc = a.hub ? s_write_hub(&a, hub, false) : s_write_entry(&a, &kf, false)) != -1)
        goto done;
    for (int i = 0; i < n_rev; i++)
        printf("revoked %s %.*s of %s at %s%s%s%s\n", what, shown, v[revoked[i]].id, who, at, a.reason ? " (" : "",
               a.reason ? a.reason : "", a.reason ? ")" : "");
    int valid = 0;
    for (int k = 0; k < nv; k++)
        valid += s_view_status(&v[k], now) == KEYFILE_VALID;
    if (valid == 0)
        printf(kind == S_CURVE  ? "%s has no valid key left: it cannot connect until a new key is added "
                                  "(registry rotate)\n"
               : kind == S_SIGN ? "%s has no valid signing key left: its signed events are refused until a new "
                                  "one is added (registry rotate --sign-key-file)\n"
                                : "%s has no valid signing key left: its checkpoints are refused by verifiers until "
                                  "a new one is added (registry rotate --hub)\n",
               who);
    if (kind == S_CURVE)
        printf("After the SIGHUP, new connections with a revoked key are refused at the handshake and live ones\n"
               "at their next message.\n" S_REMINDER);
    else if (kind == S_SIGN)
        printf("After the SIGHUP, events signed with the revoked signing key are refused.\n" S_REMINDER);
    else
        printf("Checkpoints signed with the revoked key from now on no longer verify; earlier ones still do.\n"
               S_HUB_REMINDER);
    rc = CLI_EXIT_OK;
done:
    free(hub);
    return rc;
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
