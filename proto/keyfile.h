/* keyfile - civibus key files and agency registry entries.
 *
 * One text format for all of them: "name = value" lines, '#' comments, blank
 * lines ignored. Keys used here:
 *   agency       the agency id the keys belong to (absent for the hub)
 *   name         a display name (registry entries)
 *   curve        a CURVE public key in Z85 (40 chars); may repeat in a registry
 *                entry, so that two keys are valid during a rotation
 *   curve-secret the matching CURVE secret key in Z85 (secret key files only)
 * Unknown keys are kept out of the parsed result but are not an error, so that
 * later versions can add fields. Secret key files are written mode 0600 and
 * their secret is checked against the public key when read.
 */
#ifndef CIVIBUS_KEYFILE_H
#define CIVIBUS_KEYFILE_H

#include <stdbool.h>
#include <stddef.h>

#define KEYFILE_Z85_LEN 40
#define KEYFILE_MAX_CURVE 4
#define KEYFILE_NAME_MAX 128

enum keyfile_err {
    KEYFILE_OK = 0,
    KEYFILE_IO = -1,      /* cannot open, read or write (errno in the message) */
    KEYFILE_SYNTAX = -2,  /* a line is not "name = value", a value is invalid */
    KEYFILE_MISSING = -3, /* a required key is absent */
    KEYFILE_MISMATCH = -4, /* curve-secret does not belong to curve */
    KEYFILE_MODE = -5      /* a secret key file is readable by group or others */
};

typedef struct {
    char agency[65];                                  /* "" when absent */
    char name[KEYFILE_NAME_MAX + 1];                  /* "" when absent */
    char curve[KEYFILE_MAX_CURVE][KEYFILE_Z85_LEN + 1]; /* public keys */
    int n_curve;
    char curve_secret[KEYFILE_Z85_LEN + 1];           /* "" when absent */
} keyfile_t;

/* Parse path into *out. Requires at least one curve key; when curve-secret is
 * present it must match the first curve key. On error writes a one-line
 * explanation (path and line number, never a key) into err. */
int keyfile_read(const char *path, keyfile_t *out, char *err, size_t err_len);

/* Generate a fresh CURVE key pair and write DIR/BASE.key (mode 0600, public
 * and secret) and DIR/BASE.pub (public only, usable as a registry entry when
 * agency is set). agency may be NULL (the hub's keys). Refuses to overwrite
 * an existing secret key file. */
int keyfile_generate(const char *dir, const char *base, const char *agency, char *err, size_t err_len);

const char *keyfile_strerror(int code);

#endif
