/* keygen - `civibus keygen`: create an agency's or the hub's key pair.
 *
 * The keys are made by keyfile_generate (proto/keyfile.h), which writes the
 * secret file with mode 0600 and never overwrites one. With --registry the
 * agency's public file is also placed in the hub's agency registry (a folder
 * of AGENCY.pub files): written under a temporary name, then linked into
 * place, so that the hub never reads half a file and an agency that is
 * already registered is never replaced. For the hub, a second pair is made:
 * its Ed25519 signing key for the log's checkpoints (hub-sign.key, PEM, mode
 * 0600, and hub-sign.pub, which `civibus verify --hub-key` takes), written
 * by proto/crypto.h. With --registry, the hub's hub-sign.pub is published
 * in the registry folder as KEYFILE_HUB_SIGN_FILE (which registry readers
 * skip), for `civibus verify --registry`. Only paths are printed, never keys.
 */
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <stdbool.h>
#include <stdio.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "cli.h"
#include "codec.h"
#include "crypto.h"
#include "keyfile.h"
#include "opts.h"

#define S_PUB_MAX 4096 /* a public key file is a few lines */

enum { S_OPT_AGENCY = CLI_OPT_CMD, S_OPT_HUB, S_OPT_DIR, S_OPT_REGISTRY };

static const struct option s_longopts[] = {
    CLI_OPTS_HELP,
    {"agency", required_argument, NULL, S_OPT_AGENCY},
    {"hub", no_argument, NULL, S_OPT_HUB},
    {"dir", required_argument, NULL, S_OPT_DIR},
    {"registry", required_argument, NULL, S_OPT_REGISTRY},
    {NULL, 0, NULL, 0},
};

static void s_usage(void)
{
    printf("usage: civibus keygen --agency ID --dir DIR [--registry REGDIR]\n"
           "       civibus keygen --hub --dir DIR [--registry REGDIR]\n\n"
           "Generate a CURVE key pair: DIR/ID.key (secret, mode 0600) and DIR/ID.pub,\n"
           "or DIR/hub.key and DIR/hub.pub for the hub. For the hub also an Ed25519\n"
           "signing key for the log's checkpoints: DIR/hub-sign.key (PEM, mode 0600;\n"
           "civibusd's signing_key) and DIR/hub-sign.pub (PEM; civibus verify --hub-key).\n"
           "For an agency also its Ed25519 event signing key: DIR/ID-sign.key (PEM, mode\n"
           "0600; civibus publish --sign-key) and DIR/ID-sign.pub; with --registry its public\n"
           "key becomes the entry's \"sign = HEX\" line (docs/SIGNING.md).\n"
           "An existing secret key file is never overwritten.\n\n"
           "Options:\n"
           "  --agency ID       the agency id: dotted labels of a-z 0-9 -, e.g. tax-office\n"
           "  --hub             generate the hub's keys instead\n"
           "  --dir DIR         where to write the files (created, mode 0700, if missing)\n"
           "  --registry REGDIR also copy ID.pub into the hub's agency registry REGDIR;\n"
           "                    refuses to replace an agency that is already registered.\n"
           "                    With --hub: publish hub-sign.pub as REGDIR/hub-sign.pub\n"
           "                    (for civibus verify --registry); never replaces one\n"
           "  --help            this text\n");
}

static int s_path(char *buf, size_t len, const char *dir, const char *base, const char *suffix)
{
    int n = snprintf(buf, len, "%s/%s%s", dir, base, suffix);
    if (n < 0 || (size_t)n >= len) {
        cli_err("path too long: %s/%s%s", dir, base, suffix);
        return -1;
    }
    return 0;
}

static int s_read_small(const char *path, char *buf, size_t len, size_t *got)
{
    FILE *f = fopen(path, "r");
    if (!f) {
        cli_err("%s: %s", path, strerror(errno));
        return -1;
    }
    *got = fread(buf, 1, len, f);
    bool bad = ferror(f) || !feof(f);
    fclose(f);
    if (bad) {
        cli_err("%s: cannot read (or larger than %zu bytes)", path, len);
        return -1;
    }
    return 0;
}

/* Write text to path, which must not exist, atomically. */
static int s_publish_file(const char *regdir, const char *path, const char *text, size_t len)
{
    char tmp[PATH_MAX];
    if (snprintf(tmp, sizeof tmp, "%s/.keygen.%ld.tmp", regdir, (long)getpid()) >= (int)sizeof tmp) {
        cli_err("path too long: %s", regdir);
        return -1;
    }
    int fd = open(tmp, O_WRONLY | O_CREAT | O_EXCL, 0644);
    if (fd < 0) {
        cli_err("%s: %s", tmp, strerror(errno));
        return -1;
    }
    bool ok = write(fd, text, len) == (ssize_t)len && fsync(fd) == 0;
    int saved = errno;
    if (close(fd) != 0 && ok) {
        ok = false;
        saved = errno;
    }
    if (ok && link(tmp, path) != 0) {
        saved = errno;
        ok = false;
    }
    unlink(tmp);
    if (!ok) {
        cli_err("%s: %s", saved == EEXIST ? path : tmp, saved == EEXIST ? "already registered; not replaced" : strerror(saved));
        return -1;
    }
    return 0;
}

/* Publish the hub's signing public key pubpath as REGDIR/hub-sign.pub. */
static int s_publish_hub_sign(const char *pubpath, const char *regdir)
{
    char dst[PATH_MAX], text[S_PUB_MAX];
    size_t len;
    if (s_path(dst, sizeof dst, regdir, KEYFILE_HUB_SIGN_FILE, "") != 0 ||
        s_read_small(pubpath, text, sizeof text, &len) != 0 || s_publish_file(regdir, dst, text, len) != 0)
        return CLI_EXIT_FILE;
    printf("published %s (the hub's signing public key, for civibus verify --registry)\n", dst);
    return CLI_EXIT_OK;
}

static int s_register(const char *dir, const char *regdir, const char *agency, const char *sign_line)
{
    char src[PATH_MAX], dst[PATH_MAX], text[S_PUB_MAX + 160];
    size_t len;
    if (s_path(src, sizeof src, dir, agency, ".pub") != 0 || s_path(dst, sizeof dst, regdir, agency, ".pub") != 0)
        return CLI_EXIT_FILE;
    if (s_read_small(src, text, S_PUB_MAX, &len) != 0)
        return CLI_EXIT_FILE;
    int n = snprintf(text + len, sizeof text - len, "%s", sign_line);
    len += n > 0 ? (size_t)n : 0;
    if (s_publish_file(regdir, dst, text, len) != 0)
        return CLI_EXIT_FILE;
    printf("registered %s\n", dst);
    return CLI_EXIT_OK;
}

/* An Ed25519 signing key pair (the hub's, or an agency's); when sign_line
 * is not NULL it gets the registry line "sign = HEX\n" of the public key. */
static int s_signing_keygen(const char *keypath, const char *pubpath, char *sign_line, size_t line_len)
{
    char err[512];
    crypto_key_t *key = crypto_key_generate();
    if (!key) {
        cli_err("keygen: cannot generate an Ed25519 key pair");
        return CLI_EXIT_INTERNAL;
    }
    int rc = crypto_key_write_secret(key, keypath, err, sizeof err);
    if (rc == CRYPTO_OK)
        rc = crypto_key_write_public(key, pubpath, err, sizeof err);
    char id[CRYPTO_KEYID_HEX];
    crypto_key_id_hex(key, id);
    if (sign_line) {
        uint8_t pub[CRYPTO_PUB_LEN];
        char hex[2 * CRYPTO_PUB_LEN + 1];
        crypto_key_public(key, pub);
        crypto_hex(pub, sizeof pub, hex);
        snprintf(sign_line, line_len, "sign = %s\n", hex);
    }
    crypto_key_destroy(&key);
    if (rc != CRYPTO_OK) {
        cli_err("keygen: %s", err);
        return CLI_EXIT_FILE;
    }
    printf("wrote %s (signing key, mode 0600: keep it private; key id %s)\n", keypath, id);
    printf("wrote %s (signing public key%s)\n", pubpath, sign_line ? "" : ", for civibus verify --hub-key");
    return CLI_EXIT_OK;
}

int cmd_keygen(int argc, char **argv)
{
    const char *agency = NULL, *dir = NULL, *regdir = NULL;
    bool hub = false;
    int c;
    while ((c = cli_getopt(argc, argv, s_longopts)) != -1) {
        switch (c) {
        case CLI_OPT_HELP: s_usage(); return CLI_EXIT_OK;
        case S_OPT_AGENCY: agency = optarg; break;
        case S_OPT_HUB: hub = true; break;
        case S_OPT_DIR: dir = optarg; break;
        case S_OPT_REGISTRY: regdir = optarg; break;
        default: return CLI_EXIT_USAGE;
        }
    }
    if (hub == (agency != NULL)) {
        cli_err("keygen: give either --agency ID or --hub");
        return CLI_EXIT_USAGE;
    }
    if (!dir) {
        cli_err("keygen: --dir DIR is required");
        return CLI_EXIT_USAGE;
    }
    if (agency && strcmp(agency, "hub-sign") == 0 && regdir) {
        cli_err("keygen: 'hub-sign' is reserved in a registry: %s is the hub's signing key", KEYFILE_HUB_SIGN_FILE);
        return CLI_EXIT_USAGE;
    }
    if (agency && !codec_agency_valid(agency)) {
        cli_err("keygen: invalid agency id '%s': 1-%d characters of a-z 0-9 - in dot-separated labels", agency,
                CODEC_AGENCY_MAX);
        return CLI_EXIT_USAGE;
    }
    const char *base = hub ? "hub" : agency;
    char keypath[PATH_MAX], pubpath[PATH_MAX];
    if (s_path(keypath, sizeof keypath, dir, base, ".key") != 0 || s_path(pubpath, sizeof pubpath, dir, base, ".pub") != 0)
        return CLI_EXIT_FILE;

    if (regdir) {
        /* Check before generating, so that a refusal leaves no orphan keys. */
        char dst[PATH_MAX];
        struct stat st;
        if (s_path(dst, sizeof dst, regdir, hub ? KEYFILE_HUB_SIGN_FILE : agency, hub ? "" : ".pub") != 0)
            return CLI_EXIT_FILE;
        if (mkdir(regdir, 0755) != 0 && errno != EEXIST) {
            cli_err("%s: %s", regdir, strerror(errno));
            return CLI_EXIT_FILE;
        }
        if (lstat(dst, &st) == 0) {
            cli_err("%s: already %s; not replaced", dst, hub ? "published" : "registered");
            return CLI_EXIT_FILE;
        }
    }

    char signkey[PATH_MAX], signpub[PATH_MAX], signbase[CODEC_AGENCY_MAX + 8];
    snprintf(signbase, sizeof signbase, "%s-sign", base);
    {
        struct stat st;
        if (s_path(signkey, sizeof signkey, dir, signbase, ".key") != 0 ||
            s_path(signpub, sizeof signpub, dir, signbase, ".pub") != 0)
            return CLI_EXIT_FILE;
        /* Checked first, so that a refusal leaves no orphan CURVE keys. */
        if (lstat(signkey, &st) == 0) {
            cli_err("keygen: %s: exists; a secret key is never overwritten", signkey);
            return CLI_EXIT_FILE;
        }
    }

    char err[512];
    if (keyfile_generate(dir, base, agency, err, sizeof err) != KEYFILE_OK) {
        cli_err("keygen: %s", err);
        return CLI_EXIT_FILE;
    }
    printf("wrote %s (secret key, mode 0600: keep it private)\n", keypath);
    printf("wrote %s (public key)\n", pubpath);
    if (hub) {
        int rc = s_signing_keygen(signkey, signpub, NULL, 0);
        return rc == CLI_EXIT_OK && regdir ? s_publish_hub_sign(signpub, regdir) : rc;
    }
    /* The agency's signing key (docs/SIGNING.md): its public half goes into
     * the registry entry as a "sign" line. */
    char sign_line[160];
    int rc = s_signing_keygen(signkey, signpub, sign_line, sizeof sign_line);
    if (rc != CLI_EXIT_OK)
        return rc;
    return regdir ? s_register(dir, regdir, agency, sign_line) : CLI_EXIT_OK;
}
