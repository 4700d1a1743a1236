/* witness - the witness file: checkpoints of the hub's log kept outside it,
 * and the hub's signing keys that vouch for them.
 *
 * A text file, one checkpoint per line in the form of proto/logfile.h
 * (logfile_witness_format), as `civibus checkpoint fetch` appends them and
 * the hub logs them; `civibus verify --witness` checks a log against it.
 * Lines without event=checkpoint (blank lines, comments, other lines of a
 * hub log) are skipped, so the hub's own log, shipped off its host, serves
 * as a witness file too.
 */
#ifndef CIVIBUS_CLI_WITNESS_H
#define CIVIBUS_CLI_WITNESS_H

#include <stdbool.h>
#include <stddef.h>

#include "keyfile.h"
#include "logfile.h"

/* Read the checkpoints of path into *out (malloc'd, the caller frees; NULL
 * when there are none), their number into *n. With missing_ok, a file that
 * does not exist holds none. Returns 0, or -1 after printing (as "civibus:
 * CMD: ...") a file that cannot be read or a checkpoint line that does not
 * parse (with its line number). */
int witness_read(const char *cmd, const char *path, bool missing_ok, logfile_witness_t **out, size_t *n);

/* Append line and a newline to path in one write (O_APPEND, created mode
 * 0644 when missing), then fsync. Returns 0, or -1 after printing. */
int witness_append(const char *cmd, const char *path, const char *line);

/* The file holding the hub's signing keys, from the options --hub-key FILE
 * (key_path) or --registry DIR (DIR/KEYFILE_HUB_SIGN_FILE, written into buf):
 * *path is key_path, buf, or NULL when neither is given. Returns 0, or
 * CLI_EXIT_USAGE after printing when both are given or the path is too
 * long. */
int witness_keys_path(const char *cmd, const char *key_path, const char *registry, char *buf, size_t buf_len,
                      const char **path);

/* Read the hub's signing keys from path (a PEM key, or a list with validity:
 * keyfile_read_hub_sign) into a new keyfile_hub_t the caller frees. NULL
 * after printing. */
keyfile_hub_t *witness_keys_read(const char *cmd, const char *path);

#endif
