/* witness - reading and appending witness files (see witness.h).
 *
 * Appends are one write(2) of a whole line to a file opened O_APPEND, so two
 * fetches running at once never interleave inside a line, and an fsync
 * before returning, so a line reported written survives a crash.
 */
#include "witness.h"

#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "cli.h"

#define S_LINE_MAX 4096 /* a hub log line holding a checkpoint is about 300 bytes */

int witness_read(const char *cmd, const char *path, bool missing_ok, logfile_witness_t **out, size_t *n)
{
    *out = NULL;
    *n = 0;
    FILE *f = fopen(path, "r");
    if (!f) {
        if (missing_ok && errno == ENOENT)
            return 0;
        cli_err("%s: %s: %s", cmd, path, strerror(errno));
        return -1;
    }
    char *line = malloc(S_LINE_MAX);
    size_t cap = 0;
    int rc = line ? 0 : -1;
    if (!line)
        cli_err("%s: out of memory", cmd);
    for (int lineno = 1; rc == 0 && fgets(line, S_LINE_MAX, f); lineno++) {
        size_t len = strlen(line);
        if (len && line[len - 1] != '\n' && !feof(f)) {
            /* Not a checkpoint: skip the rest of an overlong line. */
            int c;
            while ((c = fgetc(f)) != EOF && c != '\n')
                ;
            continue;
        }
        logfile_checkpoint_t cp;
        char why[128];
        int prc = logfile_witness_parse(line, &cp, why, sizeof why);
        if (prc == LOGFILE_NOT_WITNESS)
            continue;
        if (prc != LOGFILE_OK) {
            cli_err("%s: %s:%d: %s", cmd, path, lineno, why);
            rc = -1;
            break;
        }
        if (*n == cap) {
            cap = cap ? 2 * cap : 64;
            logfile_witness_t *grown = realloc(*out, cap * sizeof *grown);
            if (!grown) {
                cli_err("%s: out of memory", cmd);
                rc = -1;
                break;
            }
            *out = grown;
        }
        (*out)[(*n)++] = (logfile_witness_t){.cp = cp, .line = lineno};
    }
    if (rc == 0 && ferror(f)) {
        cli_err("%s: %s: read error", cmd, path);
        rc = -1;
    }
    fclose(f);
    free(line);
    if (rc != 0) {
        free(*out);
        *out = NULL;
        *n = 0;
    }
    return rc;
}

int witness_append(const char *cmd, const char *path, const char *line)
{
    size_t len = strlen(line);
    char *buf = malloc(len + 1);
    if (!buf) {
        cli_err("%s: out of memory", cmd);
        return -1;
    }
    memcpy(buf, line, len);
    buf[len] = '\n';
    int fd = open(path, O_WRONLY | O_APPEND | O_CREAT, 0644);
    bool ok = fd >= 0 && write(fd, buf, len + 1) == (ssize_t)(len + 1) && fsync(fd) == 0;
    int saved = errno;
    if (fd >= 0 && close(fd) != 0 && ok) {
        ok = false;
        saved = errno;
    }
    free(buf);
    if (!ok) {
        cli_err("%s: %s: %s", cmd, path, strerror(saved));
        return -1;
    }
    return 0;
}

int witness_keys_path(const char *cmd, const char *key_path, const char *registry, char *buf, size_t buf_len,
                      const char **path)
{
    *path = key_path;
    if (key_path && registry) {
        cli_err("%s: give the hub's signing keys as a file or with --registry DIR, not both", cmd);
        return CLI_EXIT_USAGE;
    }
    if (!registry)
        return 0;
    int n = snprintf(buf, buf_len, "%s/%s", registry, KEYFILE_HUB_SIGN_FILE);
    if (n < 0 || (size_t)n >= buf_len) {
        cli_err("%s: --registry: path too long", cmd);
        return CLI_EXIT_USAGE;
    }
    *path = buf;
    return 0;
}

keyfile_hub_t *witness_keys_read(const char *cmd, const char *path)
{
    /* Up to KEYFILE_MAX_HUB_SIGN keys with their attributes: kept off the
     * stack. */
    keyfile_hub_t *keys = malloc(sizeof *keys);
    if (!keys) {
        cli_err("%s: out of memory", cmd);
        return NULL;
    }
    char err[512];
    if (keyfile_read_hub_sign(path, keys, err, sizeof err) != KEYFILE_OK) {
        cli_err("%s: %s", cmd, err);
        free(keys);
        return NULL;
    }
    return keys;
}
