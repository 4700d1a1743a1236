/* keyfile - civibus key files and agency registry entries.
 *
 * One text format for all of them: "name = value" lines, '#' comments, blank
 * lines ignored. Names used here:
 *   agency       the agency id the keys belong to (absent for the hub)
 *   name         a display name (registry entries)
 *   curve        a CURVE public key in Z85 (40 chars), optionally followed by
 *                attributes: "curve = KEY not-after=2027-11-23T00:00:00Z";
 *                may repeat, so that two keys are valid during a rotation
 *   revoked      a CURVE public key that no longer admits anyone, with its
 *                attributes: "revoked = KEY at=TIME reason="text""
 *   curve-secret the matching CURVE secret key in Z85 (secret key files only)
 *   sign         an Ed25519 signing public key, 64 hex digits of the raw 32
 *                bytes, with the attributes of curve (not-after=); at most
 *                KEYFILE_MAX_SIGN sign and revoked-sign lines per file
 *   revoked-sign a revoked signing public key, with the attributes of revoked
 *                (at=, reason=, not-after=); signatures made with it are
 *                refused from at= on (docs/SIGNING.md)
 * The hub's own checkpoint signing keys are a list of sign and revoked-sign
 * lines alone (keyfile_hub_t, KEYFILE_HUB_SIGN_FILE).
 * Attributes are NAME=VALUE words separated by blanks; a value holding blanks
 * is written in double quotes (no '"' or '\' inside). An unknown attribute is
 * always an error. Times are UTC, exactly YYYY-MM-DDTHH:MM:SSZ.
 *
 * keyfile_read reads any key file and ignores unknown names, so that later
 * versions can add fields to key files. keyfile_read_entry reads a registry
 * entry and refuses unknown names too: an entry decides who gets in, and a
 * typo ("revokd = ...") must not leave a key valid unnoticed.
 *
 * A key appears on one line only: it is either current (curve) or revoked.
 * Validity at time t (keyfile_key_status): revoked when revoked_at <= t,
 * else expired when not_after <= t, else valid. Secret key files are written
 * mode 0600 and their secret is checked against the public key when read.
 */
#ifndef CIVIBUS_KEYFILE_H
#define CIVIBUS_KEYFILE_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#define KEYFILE_Z85_LEN 40
#define KEYFILE_MAX_KEYS 16   /* curve and revoked lines of one file together */
#define KEYFILE_MAX_CURVE KEYFILE_MAX_KEYS
#define KEYFILE_MAX_SIGN 4   /* sign and revoked-sign lines of one file together */
#define KEYFILE_SIGN_LEN 32   /* a raw Ed25519 public key */
#define KEYFILE_NAME_MAX 128
#define KEYFILE_REASON_MAX 128
#define KEYFILE_TIME_LEN 21   /* "2027-11-23T00:00:00Z" and its NUL */
#define KEYFILE_FOREVER INT64_MAX /* no not-after, not revoked */

enum keyfile_err {
    KEYFILE_OK = 0,
    KEYFILE_IO = -1,      /* cannot open, read or write (errno in the message) */
    KEYFILE_SYNTAX = -2,  /* a line is not "name = value", a value is invalid */
    KEYFILE_MISSING = -3, /* a required key is absent */
    KEYFILE_MISMATCH = -4, /* curve-secret does not belong to curve */
    KEYFILE_MODE = -5,     /* a secret key file is readable by group or others */
    KEYFILE_EXISTS = -6    /* keyfile_write_entry: the entry exists already */
};

typedef enum { KEYFILE_VALID = 0, KEYFILE_EXPIRED = 1, KEYFILE_REVOKED = 2 } keyfile_status_t;

/* One public key of a file with its attributes. */
typedef struct {
    char z85[KEYFILE_Z85_LEN + 1];
    int64_t not_after;  /* Unix seconds; KEYFILE_FOREVER when unlimited */
    int64_t revoked_at; /* Unix seconds; KEYFILE_FOREVER for a curve line */
    char reason[KEYFILE_REASON_MAX + 1]; /* revocation reason, "" when none */
    int line;           /* where it was read, 0 when made in memory */
} keyfile_key_t;

/* One signing public key of a file with its attributes (times as above). */
typedef struct {
    uint8_t pub[KEYFILE_SIGN_LEN];
    int64_t not_after;
    int64_t revoked_at;
    char reason[KEYFILE_REASON_MAX + 1];
    int line;
} keyfile_sign_t;

typedef struct {
    char agency[65];                                  /* "" when absent */
    char name[KEYFILE_NAME_MAX + 1];                  /* "" when absent */
    /* The curve lines' keys in file order (keys that are revoked are not
     * here); curve[0] is the key of curve-secret in a secret key file. */
    char curve[KEYFILE_MAX_CURVE][KEYFILE_Z85_LEN + 1];
    int n_curve;
    char curve_secret[KEYFILE_Z85_LEN + 1];           /* "" when absent */
    /* Every key, curve and revoked lines alike, in file order. */
    keyfile_key_t keys[KEYFILE_MAX_KEYS];
    int n_keys;
    /* Every signing key, sign and revoked-sign lines alike, in file order. */
    keyfile_sign_t sign[KEYFILE_MAX_SIGN];
    int n_sign;
} keyfile_t;

/* Parse path into *out. Requires at least one curve key; when curve-secret is
 * present it must match the first curve key. Unknown names are ignored. On
 * error writes a one-line explanation (path and line number, never a key)
 * into err. */
int keyfile_read(const char *path, keyfile_t *out, char *err, size_t err_len);

/* Parse the registry entry at path (".../AGENCY.pub") into *out: as
 * keyfile_read, but unknown names are an error, the agency line is required
 * and must equal the file name without ".pub", and at least one key (curve
 * or revoked) is required instead of one curve key. curve-secret is checked
 * as in keyfile_read and then cleared. */
int keyfile_read_entry(const char *path, keyfile_t *out, char *err, size_t err_len);

/* The hub's checkpoint signing public keys as published in a registry folder
 * (`civibus keygen --hub --registry`, `civibus registry rotate --hub`) for
 * `civibus verify --registry` and the SDK. It is not an agency entry: readers
 * of the folder skip it (keyfile_is_entry_name). */
#define KEYFILE_HUB_SIGN_FILE "hub-sign.pub"
/* Keys such a list may hold: every key that ever signed a checkpoint stays
 * listed (expired or revoked), or its checkpoints no longer verify. */
#define KEYFILE_MAX_HUB_SIGN 64

/* The hub's signing keys with their validity, in file order. A checkpoint
 * counts when a key of the list, valid at the checkpoint's time
 * (keyfile_sign_status), signed it. */
typedef struct {
    keyfile_sign_t sign[KEYFILE_MAX_HUB_SIGN];
    int n_sign;
} keyfile_hub_t;

/* Read the hub's signing keys from path: either a list of "sign" and
 * "revoked-sign" lines with their attributes (any other name is an error:
 * the list decides which checkpoints count), or a single Ed25519 public key
 * in PEM (as keygen writes hub-sign.pub), which is one key without expiry.
 * At least one key. Errors as keyfile_read_entry; a PEM file that is not an
 * Ed25519 public key is KEYFILE_SYNTAX. */
int keyfile_read_hub_sign(const char *path, keyfile_hub_t *out, char *err, size_t err_len);

/* Write the list hub (1 to KEYFILE_MAX_HUB_SIGN keys) to path atomically, as
 * keyfile_write_entry does. */
int keyfile_write_hub_sign(const char *path, const keyfile_hub_t *hub, bool exclusive, char *err, size_t err_len);

/* True when name (a file name inside a registry folder) is an agency entry:
 * it ends in ".pub", does not start with '.' (temporary files) and is not
 * KEYFILE_HUB_SIGN_FILE. */
bool keyfile_is_entry_name(const char *name);

/* Write the registry entry kf to path atomically: a temporary file in the
 * same folder (".NAME.PID.tmp", which the hub ignores), fsync, then rename
 * over path (or, when exclusive, link to path, failing with KEYFILE_EXISTS
 * when path exists), then fsync the folder. Comments of an earlier version
 * are not kept. kf's curve_secret is never written. */
int keyfile_write_entry(const char *path, const keyfile_t *kf, bool exclusive, char *err, size_t err_len);

/* The status of key at time now (Unix seconds). */
keyfile_status_t keyfile_key_status(const keyfile_key_t *key, int64_t now);
/* The same for a signing key. */
keyfile_status_t keyfile_sign_status(const keyfile_sign_t *key, int64_t now);
const char *keyfile_status_name(keyfile_status_t status);

/* Parse "YYYY-MM-DDTHH:MM:SSZ" into Unix seconds; -1 when it is not one. */
int keyfile_time_parse(const char *s, int64_t *out);
/* Format Unix seconds as "YYYY-MM-DDTHH:MM:SSZ" into buf (KEYFILE_TIME_LEN). */
void keyfile_time_format(int64_t t, char *buf, size_t len);

/* Generate a fresh CURVE key pair and write DIR/BASE.key (mode 0600, public
 * and secret) and DIR/BASE.pub (public only, usable as a registry entry when
 * agency is set). agency may be NULL (the hub's keys). Refuses to overwrite
 * an existing secret key file. */
int keyfile_generate(const char *dir, const char *base, const char *agency, char *err, size_t err_len);

const char *keyfile_strerror(int code);

#endif
