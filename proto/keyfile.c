/* keyfile - civibus key files and agency registry entries.
 *
 * The secret file is created with O_EXCL and mode 0600 so that a key is never
 * readable by others, not even for an instant, and an existing key is never
 * replaced by accident. Registry entries are replaced atomically (temporary
 * file, fsync, rename, fsync of the folder), so the hub reads either the old
 * entry or the new one, never half of one, also after a crash.
 */
#include "keyfile.h"

#include <errno.h>
#include <fcntl.h>
#include <stdarg.h>
#include <stdio.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>
#include <zmq.h>

#include "codec.h"
#include "crypto.h"

/* S_HUB_SIGN: the hub's signing key list, sign and revoked-sign lines only. */
typedef enum { S_ANY_FILE, S_ENTRY, S_HUB_SIGN } s_mode_t;

/* Where a parse error is reported: "path:line: ". */
typedef struct {
    const char *path;
    int line;
    char *err;
    size_t err_len;
} s_where_t;

#define S_FAIL(w, ...)                                                        \
    do {                                                                      \
        int n_ = snprintf((w)->err, (w)->err_len, "%s:%d: ", (w)->path, (w)->line); \
        if (n_ >= 0 && (size_t)n_ < (w)->err_len)                             \
            snprintf((w)->err + n_, (w)->err_len - (size_t)n_, __VA_ARGS__);  \
        return KEYFILE_SYNTAX;                                                \
    } while (0)

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

static bool s_digits(const char *s, int n, int *out)
{
    int v = 0;
    for (int i = 0; i < n; i++) {
        if (s[i] < '0' || s[i] > '9')
            return false;
        v = v * 10 + (s[i] - '0');
    }
    *out = v;
    return true;
}

int keyfile_time_parse(const char *s, int64_t *out)
{
    int y, mo, d, h, mi, se;
    if (strlen(s) != 20 || s[4] != '-' || s[7] != '-' || s[10] != 'T' || s[13] != ':' || s[16] != ':' ||
        s[19] != 'Z' || !s_digits(s, 4, &y) || !s_digits(s + 5, 2, &mo) || !s_digits(s + 8, 2, &d) ||
        !s_digits(s + 11, 2, &h) || !s_digits(s + 14, 2, &mi) || !s_digits(s + 17, 2, &se))
        return -1;
    static const int mdays[] = {31, 29, 31, 30, 31, 30, 31, 31, 30, 31, 30, 31};
    bool leap = (y % 4 == 0 && y % 100 != 0) || y % 400 == 0;
    if (y < 1970 || mo < 1 || mo > 12 || d < 1 || d > mdays[mo - 1] || (mo == 2 && d == 29 && !leap) || h > 23 ||
        mi > 59 || se > 59)
        return -1;
    struct tm tm = {.tm_year = y - 1900, .tm_mon = mo - 1, .tm_mday = d, .tm_hour = h, .tm_min = mi, .tm_sec = se};
    *out = (int64_t)timegm(&tm);
    return 0;
}

void keyfile_time_format(int64_t t, char *buf, size_t len)
{
    time_t tt = (time_t)t;
    struct tm tm;
    if (t < 0 || t > 253402300799LL || !gmtime_r(&tt, &tm)) { /* beyond 9999-12-31 */
        snprintf(buf, len, "%s", t < 0 ? "1970-01-01T00:00:00Z" : "9999-12-31T23:59:59Z");
        return;
    }
    strftime(buf, len, "%Y-%m-%dT%H:%M:%SZ", &tm);
}

keyfile_status_t keyfile_key_status(const keyfile_key_t *key, int64_t now)
{
    if (key->revoked_at <= now)
        return KEYFILE_REVOKED;
    if (key->not_after <= now)
        return KEYFILE_EXPIRED;
    return KEYFILE_VALID;
}

bool keyfile_is_entry_name(const char *name)
{
    size_t n = strlen(name);
    return name[0] != '.' && n > 4 && strcmp(name + n - 4, ".pub") == 0 && strcmp(name, KEYFILE_HUB_SIGN_FILE) != 0;
}

keyfile_status_t keyfile_sign_status(const keyfile_sign_t *key, int64_t now)
{
    keyfile_key_t k = {.not_after = key->not_after, .revoked_at = key->revoked_at};
    return keyfile_key_status(&k, now);
}

const char *keyfile_status_name(keyfile_status_t status)
{
    switch (status) {
    case KEYFILE_VALID: return "valid";
    case KEYFILE_EXPIRED: return "expired";
    case KEYFILE_REVOKED: return "revoked";
    default: return "unknown";
    }
}

/* Next attribute word of *p: NAME=VALUE or NAME="VALUE" (no '"' or '\'
 * inside, no control characters). Cuts the line in place; name and value
 * point into it. 1 when one was read, 0 at the end of the line. */
static int s_next_attr(char **p, char **name, char **value, const s_where_t *w)
{
    char *s = *p;
    while (*s == ' ' || *s == '\t')
        s++;
    if (!*s)
        return 0;
    char *eq = s;
    while (*eq && *eq != '=' && *eq != ' ' && *eq != '\t')
        eq++;
    if (*eq != '=' || eq == s)
        S_FAIL(w, "expected NAME=VALUE after the key, not '%.*s'", (int)(eq - s) > 40 ? 40 : (int)(eq - s), s);
    *eq = '\0';
    *name = s;
    char *v = eq + 1, *end;
    if (*v == '"') {
        v++;
        end = v;
        while (*end && *end != '"' && *end != '\\' && (unsigned char)*end >= 0x20)
            end++;
        if (*end != '"')
            S_FAIL(w, "attribute %s: a quoted value needs its closing '\"' and may not hold '\\'", *name);
        *end++ = '\0';
        if (*end && *end != ' ' && *end != '\t')
            S_FAIL(w, "attribute %s: a blank must follow the closing '\"'", *name);
    } else {
        end = v;
        while (*end && *end != ' ' && *end != '\t') {
            if (*end == '"' || *end == '\\')
                S_FAIL(w, "attribute %s: '\"' or '\\' inside a value", *name);
            end++;
        }
        if (end == v)
            S_FAIL(w, "attribute %s has no value", *name);
    }
    if (*end)
        *end++ = '\0';
    *value = v;
    *p = end;
    return 1;
}

/* Parse the attributes after a key on a curve/revoked or sign/revoked-sign
 * line: not-after= always, at= and reason= only on revoked lines, each once. */
static int s_attrs(char **p, bool revoked, const char *what, const char *kind, int64_t *not_after,
                   int64_t *revoked_at, char reason[KEYFILE_REASON_MAX + 1], const s_where_t *w)
{
    bool seen_na = false, seen_at = false, seen_reason = false;
    char *name, *value;
    int rc;
    while ((rc = s_next_attr(p, &name, &value, w)) == 1) {
        bool *seen = NULL;
        if (strcmp(name, "not-after") == 0) {
            seen = &seen_na;
            if (keyfile_time_parse(value, not_after) != 0)
                S_FAIL(w, "not-after=%.32s is not a UTC time YYYY-MM-DDTHH:MM:SSZ", value);
        } else if (revoked && strcmp(name, "at") == 0) {
            seen = &seen_at;
            if (keyfile_time_parse(value, revoked_at) != 0)
                S_FAIL(w, "at=%.32s is not a UTC time YYYY-MM-DDTHH:MM:SSZ", value);
        } else if (revoked && strcmp(name, "reason") == 0) {
            seen = &seen_reason;
            if (strlen(value) > KEYFILE_REASON_MAX)
                S_FAIL(w, "reason is longer than %d characters", KEYFILE_REASON_MAX);
            snprintf(reason, KEYFILE_REASON_MAX + 1, "%s", value);
        } else {
            if (revoked)
                S_FAIL(w, "unknown attribute '%.32s' of %s (a revoked %s takes at=, reason= and not-after=)", name,
                       what, kind);
            S_FAIL(w, "unknown attribute '%.32s' of %s (a %s takes not-after=)", name, what, kind);
        }
        if (*seen)
            S_FAIL(w, "attribute %s given twice", name);
        *seen = true;
    }
    return rc == 0 ? KEYFILE_OK : rc;
}

/* Parse "KEY [attributes]" of a curve (revoked false) or revoked line. */
static int s_key_line(keyfile_t *out, char *val, bool revoked, const s_where_t *w)
{
    const char *what = revoked ? "revoked" : "curve";
    char *p = val;
    while (*p && *p != ' ' && *p != '\t')
        p++;
    if (*p)
        *p++ = '\0';
    if (!s_z85_valid(val))
        S_FAIL(w, "%s is not a 40-character Z85 key", what);
    for (int i = 0; i < out->n_keys; i++)
        if (strcmp(out->keys[i].z85, val) == 0)
            S_FAIL(w, "the key appears twice (first on line %d)", out->keys[i].line);
    if (out->n_keys == KEYFILE_MAX_KEYS)
        S_FAIL(w, "more than %d keys", KEYFILE_MAX_KEYS);
    keyfile_key_t k = {.not_after = KEYFILE_FOREVER, .revoked_at = revoked ? 0 : KEYFILE_FOREVER, .line = w->line};
    snprintf(k.z85, sizeof k.z85, "%s", val);
    int rc = s_attrs(&p, revoked, what, "curve key", &k.not_after, &k.revoked_at, k.reason, w);
    if (rc != KEYFILE_OK)
        return rc;
    out->keys[out->n_keys++] = k;
    if (!revoked)
        snprintf(out->curve[out->n_curve++], KEYFILE_Z85_LEN + 1, "%s", k.z85);
    return KEYFILE_OK;
}

/* Where the signing keys of a file go: an agency file's few, or the hub's
 * list (keyfile_hub_t). */
typedef struct {
    keyfile_sign_t *keys;
    int *n;
    int max;
} s_signs_t;

/* Parse "HEX [attributes]" of a sign (revoked false) or revoked-sign line. */
static int s_sign_line(const s_signs_t *to, char *val, bool revoked, const s_where_t *w)
{
    const char *what = revoked ? "revoked-sign" : "sign";
    char *p = val;
    while (*p && *p != ' ' && *p != '\t')
        p++;
    if (*p)
        *p++ = '\0';
    keyfile_sign_t k = {.not_after = KEYFILE_FOREVER, .revoked_at = revoked ? 0 : KEYFILE_FOREVER, .line = w->line};
    if (strlen(val) != 2 * KEYFILE_SIGN_LEN)
        S_FAIL(w, "%s is not a 64-hex-digit Ed25519 public key", what);
    for (int i = 0; i < KEYFILE_SIGN_LEN; i++) {
        int hi = crypto_hexval(val[2 * i]), lo = crypto_hexval(val[2 * i + 1]);
        if (hi < 0 || lo < 0)
            S_FAIL(w, "%s is not a 64-hex-digit Ed25519 public key", what);
        k.pub[i] = (uint8_t)(hi << 4 | lo);
    }
    for (int i = 0; i < *to->n; i++)
        if (memcmp(to->keys[i].pub, k.pub, KEYFILE_SIGN_LEN) == 0)
            S_FAIL(w, "the signing key appears twice (first on line %d)", to->keys[i].line);
    if (*to->n == to->max)
        S_FAIL(w, "more than %d signing keys", to->max);
    int rc = s_attrs(&p, revoked, what, "signing key", &k.not_after, &k.revoked_at, k.reason, w);
    if (rc != KEYFILE_OK)
        return rc;
    to->keys[(*to->n)++] = k;
    return KEYFILE_OK;
}

static int s_line(keyfile_t *out, const s_signs_t *signs, char *key, char *val, s_mode_t mode,
                  const s_where_t *w)
{
    if (strcmp(key, "sign") == 0 || strcmp(key, "revoked-sign") == 0)
        return s_sign_line(signs, val, key[0] == 'r', w);
    if (mode == S_HUB_SIGN)
        S_FAIL(w, "unknown name '%.32s' (the hub's signing key list holds sign and revoked-sign lines)", key);
    if (strcmp(key, "agency") == 0) {
        if (!codec_agency_valid(val))
            S_FAIL(w, "invalid agency id");
        snprintf(out->agency, sizeof out->agency, "%s", val);
    } else if (strcmp(key, "name") == 0) {
        snprintf(out->name, sizeof out->name, "%s", val);
    } else if (strcmp(key, "curve") == 0 || strcmp(key, "revoked") == 0) {
        return s_key_line(out, val, key[0] == 'r', w);
    } else if (strcmp(key, "curve-secret") == 0) {
        if (!s_z85_valid(val))
            S_FAIL(w, "curve-secret is not a 40-character Z85 key");
        snprintf(out->curve_secret, sizeof out->curve_secret, "%s", val);
    } else if (mode == S_ENTRY) {
        S_FAIL(w, "unknown name '%.32s' (a registry entry holds agency, name, curve, revoked, sign and revoked-sign)", key);
    }
    return KEYFILE_OK;
}

/* Parse the lines of f into out (and signs). KEYFILE_OK or an error in err. */
static int s_parse(FILE *f, const char *path, keyfile_t *out, const s_signs_t *signs, s_mode_t mode, char *err,
                   size_t err_len)
{
    char line[512];
    s_where_t w = {.path = path, .line = 0, .err = err, .err_len = err_len};
    int rc = KEYFILE_OK;
    while (rc == KEYFILE_OK && fgets(line, sizeof line, f)) {
        w.line++;
        if (!strchr(line, '\n') && !feof(f)) {
            snprintf(err, err_len, "%s:%d: line longer than %zu bytes", path, w.line, sizeof line - 2);
            return KEYFILE_SYNTAX;
        }
        char *p = line;
        s_trim(&p);
        if (*p == '\0' || *p == '#')
            continue;
        char *eq = strchr(p, '=');
        if (!eq) {
            snprintf(err, err_len, "%s:%d: expected 'name = value'", path, w.line);
            return KEYFILE_SYNTAX;
        }
        *eq = '\0';
        char *key = p, *val = eq + 1;
        s_trim(&key);
        s_trim(&val);
        rc = s_line(out, signs, key, val, mode, &w);
    }
    if (rc == KEYFILE_OK && ferror(f)) {
        snprintf(err, err_len, "%s: read error", path);
        rc = KEYFILE_IO;
    }
    return rc;
}

static int s_read(const char *path, keyfile_t *out, s_mode_t mode, char *err, size_t err_len)
{
    memset(out, 0, sizeof *out);
    FILE *f = fopen(path, "r");
    if (!f) {
        snprintf(err, err_len, "%s: %s", path, strerror(errno));
        return KEYFILE_IO;
    }
    s_signs_t signs = {.keys = out->sign, .n = &out->n_sign, .max = KEYFILE_MAX_SIGN};
    int rc = s_parse(f, path, out, &signs, mode, err, err_len);
    fclose(f);
    if (rc != KEYFILE_OK) {
        memset(out->curve_secret, 0, sizeof out->curve_secret);
        return rc;
    }
    if (mode == S_ANY_FILE ? out->n_curve == 0 : out->n_keys == 0) {
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
        if (out->n_curve == 0 || zmq_curve_public(derived, out->curve_secret) != 0 ||
            strcmp(derived, out->curve[0]) != 0) {
            snprintf(err, err_len, "%s: curve-secret does not match curve", path);
            memset(out->curve_secret, 0, sizeof out->curve_secret);
            return KEYFILE_MISMATCH;
        }
    }
    return KEYFILE_OK;
}

int keyfile_read(const char *path, keyfile_t *out, char *err, size_t err_len)
{
    return s_read(path, out, S_ANY_FILE, err, err_len);
}

int keyfile_read_entry(const char *path, keyfile_t *out, char *err, size_t err_len)
{
    int rc = s_read(path, out, S_ENTRY, err, err_len);
    memset(out->curve_secret, 0, sizeof out->curve_secret);
    if (rc != KEYFILE_OK)
        return rc;
    const char *base = strrchr(path, '/');
    base = base ? base + 1 : path;
    size_t n = strlen(base);
    if (!out->agency[0]) {
        snprintf(err, err_len, "%s: no 'agency' line (hub.pub does not belong in the registry)", path);
        return KEYFILE_MISSING;
    }
    if (n <= 4 || strcmp(base + n - 4, ".pub") != 0 || strlen(out->agency) != n - 4 ||
        strncmp(out->agency, base, n - 4) != 0) {
        snprintf(err, err_len, "%s: agency %s must match the file name (%s.pub)", path, out->agency, out->agency);
        return KEYFILE_SYNTAX;
    }
    return KEYFILE_OK;
}

int keyfile_read_hub_sign(const char *path, keyfile_hub_t *out, char *err, size_t err_len)
{
    memset(out, 0, sizeof *out);
    FILE *f = fopen(path, "r");
    if (!f) {
        snprintf(err, err_len, "%s: %s", path, strerror(errno));
        return KEYFILE_IO;
    }
    /* A PEM file is a single public key as keygen writes it (and as the
     * registry held it before lists): one key, no attributes. */
    char head[16] = "";
    int c;
    while ((c = fgetc(f)) == ' ' || c == '\t' || c == '\n' || c == '\r')
        ;
    if (c != EOF)
        ungetc(c, f);
    bool pem = fgets(head, sizeof head, f) && strncmp(head, "-----BEGIN", 10) == 0;
    if (pem) {
        fclose(f);
        crypto_key_t *key = NULL;
        int crc = crypto_key_read_public(path, &key, err, err_len);
        if (crc != CRYPTO_OK)
            return crc == CRYPTO_IO ? KEYFILE_IO : KEYFILE_SYNTAX;
        keyfile_sign_t *k = &out->sign[out->n_sign++];
        crypto_key_public(key, k->pub);
        crypto_key_destroy(&key);
        k->not_after = KEYFILE_FOREVER;
        k->revoked_at = KEYFILE_FOREVER;
        return KEYFILE_OK;
    }
    rewind(f);
    s_signs_t signs = {.keys = out->sign, .n = &out->n_sign, .max = KEYFILE_MAX_HUB_SIGN};
    int rc = s_parse(f, path, NULL, &signs, S_HUB_SIGN, err, err_len);
    fclose(f);
    if (rc == KEYFILE_OK && out->n_sign == 0) {
        snprintf(err, err_len, "%s: no 'sign' key", path);
        rc = KEYFILE_MISSING;
    }
    return rc;
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

/* Append printf-style text to buf (of len, used *used); what does not fit is
 * dropped (callers size buf for the largest entry). */
static void s_append(char *buf, size_t len, size_t *used, const char *fmt, ...)
    __attribute__((format(printf, 4, 5)));
static void s_append(char *buf, size_t len, size_t *used, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    int n = vsnprintf(buf + *used, len - *used, fmt, ap);
    va_end(ap);
    if (n > 0 && (size_t)n < len - *used)
        *used += (size_t)n;
}

/* Append the line "NAME = VALUE [at=...] [reason=...] [not-after=...]". */
static void s_line_text(const char *name, const char *value, int64_t revoked_at, const char *reason,
                        int64_t not_after, char *buf, size_t len, size_t *used)
{
    char t[KEYFILE_TIME_LEN];
    s_append(buf, len, used, "%s = %s", name, value);
    if (revoked_at != KEYFILE_FOREVER) {
        keyfile_time_format(revoked_at, t, sizeof t);
        s_append(buf, len, used, " at=%s", t);
        if (reason[0])
            s_append(buf, len, used, " reason=\"%s\"", reason);
    }
    if (not_after != KEYFILE_FOREVER) {
        keyfile_time_format(not_after, t, sizeof t);
        s_append(buf, len, used, " not-after=%s", t);
    }
    if (*used + 1 < len)
        buf[(*used)++] = '\n';
    buf[*used] = '\0';
}

/* Append one CURVE key line to buf (of len, used *used). */
static void s_key_text(const keyfile_key_t *k, char *buf, size_t len, size_t *used)
{
    bool revoked = k->revoked_at != KEYFILE_FOREVER;
    s_line_text(revoked ? "revoked" : "curve", k->z85, k->revoked_at, k->reason, k->not_after, buf, len, used);
}

/* Append one signing key line to buf (of len, used *used). */
static void s_sign_text(const keyfile_sign_t *k, char *buf, size_t len, size_t *used)
{
    char hex[2 * KEYFILE_SIGN_LEN + 1];
    static const char digits[] = "0123456789abcdef";
    for (int i = 0; i < KEYFILE_SIGN_LEN; i++) {
        hex[2 * i] = digits[k->pub[i] >> 4];
        hex[2 * i + 1] = digits[k->pub[i] & 15];
    }
    hex[2 * KEYFILE_SIGN_LEN] = '\0';
    bool revoked = k->revoked_at != KEYFILE_FOREVER;
    s_line_text(revoked ? "revoked-sign" : "sign", hex, k->revoked_at, k->reason, k->not_after, buf, len, used);
}

static bool s_text_safe(const char *s)
{
    for (; *s; s++)
        if ((unsigned char)*s < 0x20 || *s == 0x7f)
            return false;
    return true;
}

/* Append the lines of n signing keys; refuses a reason the format cannot
 * hold. */
static int s_signs_text(const keyfile_sign_t *keys, int n, char *buf, size_t len, size_t *used, const char *path,
                        char *err, size_t err_len)
{
    for (int i = 0; i < n; i++) {
        const keyfile_sign_t *k = &keys[i];
        if (!s_text_safe(k->reason) || strchr(k->reason, '"') || strchr(k->reason, '\\')) {
            snprintf(err, err_len, "%s: refusing to write an invalid signing key line", path);
            return KEYFILE_SYNTAX;
        }
        s_sign_text(k, buf, len, used);
    }
    return KEYFILE_OK;
}

/* Write text to path atomically: a temporary ".NAME.PID.tmp" in the same
 * folder (which the hub ignores), fsync, then rename over path, or with
 * exclusive link to path (KEYFILE_EXISTS when it exists); then fsync the
 * folder. */
static int s_write_atomic(const char *path, const char *text, bool exclusive, char *err, size_t err_len)
{
    char dir[4096], tmp[4200];
    const char *slash = strrchr(path, '/');
    const char *base = slash ? slash + 1 : path;
    if (slash)
        snprintf(dir, sizeof dir, "%.*s", (int)(slash - path), path);
    else
        snprintf(dir, sizeof dir, ".");
    if (slash == path)
        snprintf(dir, sizeof dir, "/");
    snprintf(tmp, sizeof tmp, "%s/.%s.%ld.tmp", dir, base, (long)getpid());
    unlink(tmp); /* a leftover of a crashed run of the same pid */
    int rc = s_write(tmp, O_EXCL, 0644, text, err, err_len);
    if (rc != KEYFILE_OK) {
        unlink(tmp);
        return rc;
    }
    if (exclusive) {
        if (link(tmp, path) != 0) {
            int e = errno;
            unlink(tmp);
            snprintf(err, err_len, "%s: %s", path, e == EEXIST ? "exists already" : strerror(e));
            return e == EEXIST ? KEYFILE_EXISTS : KEYFILE_IO;
        }
        unlink(tmp);
    } else if (rename(tmp, path) != 0) {
        int e = errno;
        unlink(tmp);
        snprintf(err, err_len, "%s: %s", path, strerror(e));
        return KEYFILE_IO;
    }
    /* The new name is durable only once the folder is. */
    int dfd = open(dir, O_RDONLY | O_DIRECTORY);
    if (dfd < 0 || fsync(dfd) != 0) {
        snprintf(err, err_len, "%s: cannot sync the folder: %s", dir, strerror(errno));
        if (dfd >= 0)
            close(dfd);
        return KEYFILE_IO;
    }
    close(dfd);
    return KEYFILE_OK;
}

int keyfile_write_entry(const char *path, const keyfile_t *kf, bool exclusive, char *err, size_t err_len)
{
    if (!codec_agency_valid(kf->agency) || !s_text_safe(kf->name) || kf->n_keys < 1 ||
        kf->n_keys > KEYFILE_MAX_KEYS || kf->n_sign < 0 || kf->n_sign > KEYFILE_MAX_SIGN) {
        snprintf(err, err_len, "%s: refusing to write an invalid entry", path);
        return KEYFILE_SYNTAX;
    }
    char text[(KEYFILE_MAX_KEYS + KEYFILE_MAX_SIGN) * 320 + 512];
    size_t used = 0;
    int n = snprintf(text, sizeof text,
                     "# civibus registry entry of agency %s (format: certs/README.md).\n"
                     "# Written by `civibus registry`; send the hub SIGHUP after a change.\n"
                     "agency = %s\n",
                     kf->agency, kf->agency);
    used = n > 0 ? (size_t)n : 0;
    if (kf->name[0]) {
        n = snprintf(text + used, sizeof text - used, "name = %s\n", kf->name);
        used += n > 0 ? (size_t)n : 0;
    }
    for (int i = 0; i < kf->n_keys; i++) {
        const keyfile_key_t *k = &kf->keys[i];
        if (!s_z85_valid(k->z85) || !s_text_safe(k->reason) || strchr(k->reason, '"') || strchr(k->reason, '\\')) {
            snprintf(err, err_len, "%s: refusing to write an invalid key line", path);
            return KEYFILE_SYNTAX;
        }
        s_key_text(k, text, sizeof text, &used);
    }
    int rc = s_signs_text(kf->sign, kf->n_sign, text, sizeof text, &used, path, err, err_len);
    return rc != KEYFILE_OK ? rc : s_write_atomic(path, text, exclusive, err, err_len);
}

int keyfile_write_hub_sign(const char *path, const keyfile_hub_t *hub, bool exclusive, char *err, size_t err_len)
{
    if (hub->n_sign < 1 || hub->n_sign > KEYFILE_MAX_HUB_SIGN) {
        snprintf(err, err_len, "%s: refusing to write a list of %d hub signing keys", path, hub->n_sign);
        return KEYFILE_SYNTAX;
    }
    char text[KEYFILE_MAX_HUB_SIGN * 320 + 512];
    size_t used = 0;
    s_append(text, sizeof text, &used,
             "# civibus hub signing keys (format: certs/README.md): a checkpoint of the log counts when\n"
             "# it is signed by one of these keys, valid at the checkpoint's time. Written by\n"
             "# `civibus registry`; read by civibus verify --registry and the SDK.\n");
    int rc = s_signs_text(hub->sign, hub->n_sign, text, sizeof text, &used, path, err, err_len);
    return rc != KEYFILE_OK ? rc : s_write_atomic(path, text, exclusive, err, err_len);
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
    case KEYFILE_EXISTS: return "the file exists already";
    default: return "unknown key file error";
    }
}
