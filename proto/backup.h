/* backup - hot copies of the hub's log into one file, and putting one back.
 *
 * backup_make copies a data directory while the hub runs: one LMDB read
 * transaction (logfile_copy) gives a consistent snapshot of every database,
 * log, subscription cursors, checkpoints and meta, as of the moment it
 * began; the hub's later commits are not in it. The copy goes to a
 * temporary file beside the target, is synced, and only then takes the
 * target's name, so a crash or a failed copy never leaves a half backup
 * under that name.
 *
 * backup_restore is the way back: it writes a copy into an empty data
 * directory as its data.mdb (again through a synced temporary file), and
 * checks the copy's hash chain and checkpoints before naming it data.mdb.
 * A directory that a process has open (a running hub) or that holds
 * anything is refused, so a restore never mixes with a live log.
 *
 * Used by `civibus backup` and `civibus restore` (adapters/cli/backup.c);
 * docs/CLI.md describes both, and docs/HUB.md how to restore a hub.
 */
#ifndef CIVIBUS_BACKUP_H
#define CIVIBUS_BACKUP_H

#include <stdbool.h>
#include <stdint.h>

#include "keyfile.h"
#include "logfile.h"

enum backup_err {
    BACKUP_OK = 0,
    BACKUP_IO = -1,        /* cannot read or write a file (err says which and why) */
    BACKUP_EXISTS = -2,    /* the output file exists and overwriting was not asked for */
    BACKUP_IN_USE = -3,    /* a process has the target data directory open */
    BACKUP_NOT_EMPTY = -4, /* the target data directory holds files */
    BACKUP_NOT_LOG = -5,   /* the source is not a civibus log of this format */
    BACKUP_TAMPERED = -6,  /* the copy does not verify (the report says where) */
};

#define BACKUP_COMPACT 1u   /* backup_make: omit free pages (MDB_CP_COMPACT) */
#define BACKUP_OVERWRITE 2u /* backup_make: replace an existing output file */

typedef struct {
    uint64_t bytes;        /* size of the file written */
    logfile_summary_t log; /* what the copy holds */
} backup_info_t;

/* Copy the log in data_dir (or a copy of one, a file) to the file out, mode
 * 0600. Without BACKUP_OVERWRITE an existing out is refused
 * (BACKUP_EXISTS), also when it appears during the copy. Returns BACKUP_OK
 * with *info describing the copy, or a backup_err with one line in err;
 * nothing is left behind on failure. */
int backup_make(const char *data_dir, const char *out, unsigned flags, backup_info_t *info, char *err,
                size_t err_len);

/* Write the copy `in` (a file made by backup_make) into data_dir as
 * data.mdb. data_dir must be empty or missing (it is then created, mode
 * 0700; its parent must exist), and not open in any process. The written
 * file is verified with logfile_verify (checkpoint signatures only when
 * hub_key is not NULL) before it takes its name; when run as root it gets
 * the owner and group of an existing data_dir, so that the hub's user can
 * open it. Returns BACKUP_OK with *info; BACKUP_TAMPERED with *report
 * saying where; or another backup_err with err. On failure data_dir is left
 * as it was (a directory it created is removed). */
int backup_restore(const char *in, const char *data_dir, const keyfile_hub_t *keys, backup_info_t *info,
                   logfile_report_t *report, char *err, size_t err_len);

const char *backup_strerror(int code);

#endif
