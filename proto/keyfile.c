/* keyfile - civibus key files and agency registry entries.
 *
 * The secret file is created with O_EXCL and mode 0600 so that a key is never
 * readable by others, not even for an instant, and an existing key is never
 * replaced by accident.
 */
#include "keyfile.h"

#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>
#include <zmq.h>

#include "codec.h"

static void s_trim(char **s)
{
    while (**s == ' ' || **s == '\t')
        (*s)++;
    size_t n = strlen(*s);
    while (n && ((*s)[n - 1] == ' ' || (*s)[n - 1] == '\t' || (*s)[n - 1] == '\n' || (*s)[n - 1] == '\r'))
        (*s)[--n] = '\0';
}

static bool s_z85_valid(const char *v)
{
    uint8_t bin[32];
    return strlen(v) == KEYFILE_Z85_LEN && zmq_z85_decode(bin, v) != NULL;
}

int keyfile_read(const char *path, keyfile_t *out, char *err, size_t err_len)
{
    memset(out, 0, sizeof *out);
    FILE *f = fopen(path, "r");
    if (!f) {
        snprintf(err, err_len, "%s: %s", path, strerror(errno));
        return KEYFILE_IO;
    }
    char line[512];
    int lineno = 0;
    int rc = KEYFILE_OK;
    while (fgets(line, sizeof line, f)) {
        lineno++;
        if (!strchr(line, '\n') && !feof(f)) {
            snprintf(err, err_len, "%s:%d: line longer than %zu bytes", path, lineno, sizeof line - 2);
            rc = KEYFILE_SYNTAX;
            break;
        }
        char *p = line;
        s_trim(&p);
        if (*p == '\0' || *p == '#')
            continue;
        char *eq = strchr(p, '=');
        if (!eq) {
            snprintf(err, err_len, "%s:%d: expected 'name = value'", path, lineno);
            rc = KEYFILE_SYNTAX;
            break;
        }
        *eq = '\0';
        char *key = p, *val = eq + 1;
        s_trim(&key);
        s_trim(&val);
        if (strcmp(key, "agency") == 0) {
            if (!codec_agency_valid(val)) {
                snprintf(err, err_len, "%s:%d: invalid agency id", path, lineno);
                rc = KEYFILE_SYNTAX;
                break;
            }
            snprintf(out->agency, sizeof out->agency, "%s", val);
        } else if (strcmp(key, "name") == 0) {
            snprintf(out->name, sizeof out->name, "%s", val);
        } else if (strcmp(key, "curve") == 0 || strcmp(key, "curve-secret") == 0) {
            if (!s_z85_valid(val)) {
                snprintf(err, err_len, "%s:%d: %s is not a 40-character Z85 key", path, lineno, key);
                rc = KEYFILE_SYNTAX;
                break;
            }
            if (key[5] == '-') {
                snprintf(out->curve_secret, sizeof out->curve_secret, "%s", val);
            } else if (out->n_curve < KEYFILE_MAX_CURVE) {
                snprintf(out->curve[out->n_curve++], KEYFILE_Z85_LEN + 1, "%s", val);
            } else {
                snprintf(err, err_len, "%s:%d: more than %d curve keys", path, lineno, KEYFILE_MAX_CURVE);
                rc = KEYFILE_SYNTAX;
                break;
            }
        }
    }
    if (rc == KEYFILE_OK && ferror(f)) {
        snprintf(err, err_len, "%s: read error", path);
        rc = KEYFILE_IO;
    }
    fclose(f);
    if (rc != KEYFILE_OK)
        return rc;
    if (out->n_curve == 0) {
        snprintf(err, err_len, "%s: no 'curve' public key", path);
        return KEYFILE_MISSING;
    }
    if (out->curve_secret[0]) {
        struct stat st;
        if (stat(path, &st) == 0 && (st.st_mode & 077)) {
            snprintf(err, err_len, "%s: a secret key file must not be accessible to others (mode %04o; chmod 600)",
                     path, (unsigned)(st.st_mode & 07777));
            memset(out->curve_secret, 0, sizeof out->curve_secret);
            return KEYFILE_MODE;
        }
        char derived[KEYFILE_Z85_LEN + 1];
        if (zmq_curve_public(derived, out->curve_secret) != 0 || strcmp(derived, out->curve[0]) != 0) {
            snprintf(err, err_len, "%s: curve-secret does not match curve", path);
            memset(out->curve_secret, 0, sizeof out->curve_secret);
            return KEYFILE_MISMATCH;
        }
    }
    return KEYFILE_OK;
}

static int s_write(const char *path, int flags, mode_t mode, const char *text, char *err, size_t err_len)
{
    int fd = open(path, O_WRONLY | O_CREAT | flags, mode);
    if (fd < 0) {
        snprintf(err, err_len, "%s: %s", path, strerror(errno));
        return KEYFILE_IO;
    }
    size_t len = strlen(text);
    ssize_t n = write(fd, text, len);
    int ok = n == (ssize_t)len && fsync(fd) == 0;
    int saved = errno;
    if (close(fd) != 0)
        ok = 0;
    if (!ok) {
        snprintf(err, err_len, "%s: %s", path, strerror(saved));
        return KEYFILE_IO;
    }
    return KEYFILE_OK;
}

int keyfile_generate(const char *dir, const char *base, const char *agency, char *err, size_t err_len)
{
    char pub[KEYFILE_Z85_LEN + 1], sec[KEYFILE_Z85_LEN + 1];
    if (zmq_curve_keypair(pub, sec) != 0) {
        snprintf(err, err_len, "cannot generate a CURVE key pair: %s", zmq_strerror(zmq_errno()));
        return KEYFILE_IO;
    }
    if (mkdir(dir, 0700) != 0 && errno != EEXIST) {
        snprintf(err, err_len, "%s: %s", dir, strerror(errno));
        return KEYFILE_IO;
    }
    char path[4096], text[1024], who[96];
    if (agency)
        snprintf(who, sizeof who, "agency %s", agency);
    else
        snprintf(who, sizeof who, "the hub");
    char agency_line[96] = "";
    if (agency)
        snprintf(agency_line, sizeof agency_line, "agency = %s\n", agency);

    snprintf(path, sizeof path, "%s/%s.key", dir, base);
    snprintf(text, sizeof text,
             "# civibus secret key of %s. Keep it private: whoever holds it speaks as %s.\n"
             "%scurve = %s\ncurve-secret = %s\n",
             who, agency ? agency : "the hub", agency_line, pub, sec);
    int rc = s_write(path, O_EXCL, 0600, text, err, err_len);
    memset(sec, 0, sizeof sec);
    memset(text, 0, sizeof text);
    if (rc != KEYFILE_OK)
        return rc;

    snprintf(path, sizeof path, "%s/%s.pub", dir, base);
    snprintf(text, sizeof text, "# civibus public key of %s\n%scurve = %s\n", who, agency_line, pub);
    return s_write(path, O_TRUNC, 0644, text, err, err_len);
}

const char *keyfile_strerror(int code)
{
    switch (code) {
    case KEYFILE_OK: return "ok";
    case KEYFILE_IO: return "cannot read or write the key file";
    case KEYFILE_SYNTAX: return "key file syntax error";
    case KEYFILE_MISSING: return "key file lacks a required key";
    case KEYFILE_MISMATCH: return "secret key does not match public key";
    case KEYFILE_MODE: return "secret key file is accessible to others";
    default: return "unknown key file error";
    }
}
