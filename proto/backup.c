/* backup - hot copies of the hub's log into one file, and putting one back.
 *
 * Owns the file handling around logfile_copy: temporary files beside their
 * target, fsync of the file and of its directory, the rename that publishes
 * a finished copy, and the checks that keep a restore away from a live or
 * non-empty data directory. LMDB itself stays inside proto/logfile.c; this
 * file sees only its opaque reader. Every function cleans up after itself:
 * on failure no temporary file, and no directory it created, remains.
 */
#include "backup.h"

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#define S_PATH_MAX 4096
#define S_COPY_CHUNK ((size_t)1 << 20)

/* The directory part of path ("." when it has none). 0, or -1 when too long. */
static int s_dirname(const char *path, char *out, size_t len)
{
    const char *slash = strrchr(path, '/');
    int n;
    if (!slash)
        n = snprintf(out, len, ".");
    else if (slash == path)
        n = snprintf(out, len, "/");
    else
        n = snprintf(out, len, "%.*s", (int)(slash - path), path);
    return n < 0 || (size_t)n >= len ? -1 : 0;
}

static const char *s_basename(const char *path)
{
    const char *slash = strrchr(path, '/');
    return slash ? slash + 1 : path;
}

/* Make a rename or a new file in dir durable. 0, or -1 (errno). */
static int s_fsync_dir(const char *dir)
{
    int fd = open(dir, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
    if (fd < 0)
        return -1;
    int rc = fsync(fd);
    int saved = errno;
    close(fd);
    errno = saved;
    return rc;
}

/* Is dir empty? 1 yes, 0 no, -1 error (errno). */
static int s_dir_empty(const char *dir)
{
    DIR *d = opendir(dir);
    if (!d)
        return -1;
    int empty = 1;
    struct dirent *e;
    errno = 0;
    while (empty && (e = readdir(d)) != NULL)
        if (strcmp(e->d_name, ".") != 0 && strcmp(e->d_name, "..") != 0)
            empty = 0;
    if (empty && errno)
        empty = -1;
    int saved = errno;
    closedir(d);
    errno = saved;
    return empty;
}

/* A new temporary file (mode 0600) named after base in dir; its path in
 * tmp. The fd, or -1 with err filled. */
static int s_tempfile(const char *dir, const char *base, char *tmp, size_t len, char *err, size_t err_len)
{
    int n = snprintf(tmp, len, "%s/.%s.XXXXXX", dir, base);
    if (n < 0 || (size_t)n >= len) {
        snprintf(err, err_len, "%s: path too long", dir);
        return -1;
    }
    int fd = mkostemp(tmp, O_CLOEXEC);
    if (fd < 0)
        snprintf(err, err_len, "%s: cannot create a file there: %s", dir, strerror(errno));
    return fd;
}

/* Give the finished file tmp the name dst. Without overwrite, an existing
 * dst is never replaced: link fails on it. File systems without hard links
 * get a check and a rename instead. BACKUP_OK, BACKUP_EXISTS or BACKUP_IO. */
static int s_publish(const char *tmp, const char *dst, bool overwrite, char *err, size_t err_len)
{
    if (overwrite) {
        if (rename(tmp, dst) == 0)
            return BACKUP_OK;
        snprintf(err, err_len, "%s: %s", dst, strerror(errno));
        return BACKUP_IO;
    }
    if (link(tmp, dst) == 0) {
        unlink(tmp);
        return BACKUP_OK;
    }
    int saved = errno;
    struct stat st;
    if (saved == EEXIST || lstat(dst, &st) == 0) {
        snprintf(err, err_len, "%s exists; not overwritten", dst);
        return BACKUP_EXISTS;
    }
    if ((saved == EPERM || saved == EOPNOTSUPP || saved == ENOSYS) && rename(tmp, dst) == 0)
        return BACKUP_OK;
    snprintf(err, err_len, "%s: %s", dst, strerror(saved));
    return BACKUP_IO;
}

/* Check the input of a restore before anything is written: not a hub's
 * own data.mdb while a process has it open (its pages may change under a
 * plain read), and a log this version reads. */
static int s_check_input(const char *path, char *err, size_t err_len)
{
    char dir[S_PATH_MAX];
    long pid = 0;
    if (strcmp(s_basename(path), "data.mdb") == 0 && s_dirname(path, dir, sizeof dir) == 0 &&
        logfile_in_use(dir, &pid) > 0) {
        snprintf(err, err_len, "%s: process %ld has this log open; copy it with civibus backup first", path,
                 pid);
        return BACKUP_IN_USE;
    }
    logfile_t *lf = logfile_open(path, err, err_len);
    if (!lf)
        return BACKUP_NOT_LOG;
    logfile_destroy(&lf);
    return BACKUP_OK;
}

int backup_make(const char *data_dir, const char *out, unsigned flags, backup_info_t *info, char *err,
                size_t err_len)
{
    memset(info, 0, sizeof *info);
    bool overwrite = (flags & BACKUP_OVERWRITE) != 0;
    struct stat st;
    if (!overwrite && lstat(out, &st) == 0) {
        snprintf(err, err_len, "%s exists; not overwritten", out);
        return BACKUP_EXISTS;
    }
    char dir[S_PATH_MAX], tmp[S_PATH_MAX];
    if (s_dirname(out, dir, sizeof dir) != 0) {
        snprintf(err, err_len, "%s: path too long", out);
        return BACKUP_IO;
    }
    logfile_t *src = logfile_open(data_dir, err, err_len);
    if (!src)
        return BACKUP_IO;
    int rc = BACKUP_IO;
    int fd = s_tempfile(dir, s_basename(out), tmp, sizeof tmp, err, err_len);
    if (fd < 0)
        goto close_src;
    if (logfile_copy(src, fd, (flags & BACKUP_COMPACT) != 0, err, err_len) != LOGFILE_OK)
        goto remove_tmp;
    logfile_destroy(&src);
    if (fsync(fd) != 0 || fstat(fd, &st) != 0) {
        snprintf(err, err_len, "%s: %s", tmp, strerror(errno));
        goto remove_tmp;
    }
    info->bytes = (uint64_t)st.st_size;
    int crc = close(fd);
    fd = -1;
    if (crc != 0) {
        snprintf(err, err_len, "%s: %s", tmp, strerror(errno));
        goto remove_tmp;
    }
    /* Read the summary from the copy itself: it is what the backup holds,
     * and opening it proves it is a log this version reads. */
    logfile_t *copy = logfile_open(tmp, err, err_len);
    if (!copy)
        goto remove_tmp;
    int sum_rc = logfile_summary(copy, &info->log, err, err_len);
    logfile_destroy(&copy);
    if (sum_rc != LOGFILE_OK)
        goto remove_tmp;
    rc = s_publish(tmp, out, overwrite, err, err_len);
    if (rc != BACKUP_OK)
        goto remove_tmp;
    if (s_fsync_dir(dir) != 0) {
        /* The file is complete under its name; only its durability across a
         * crash is in doubt, so it stays for the caller to judge. */
        snprintf(err, err_len, "%s: fsync: %s", dir, strerror(errno));
        return BACKUP_IO;
    }
    return BACKUP_OK;

remove_tmp:
    if (fd >= 0)
        close(fd);
    unlink(tmp);
close_src:
    logfile_destroy(&src);
    return rc;
}

/* Copy everything from in_fd to out_fd. 0, or -1 (errno). */
static int s_copy_fd(int in_fd, int out_fd)
{
    char *buf = malloc(S_COPY_CHUNK);
    if (!buf)
        return -1;
    int rc = 0;
    for (;;) {
        ssize_t n = read(in_fd, buf, S_COPY_CHUNK);
        if (n < 0 && errno == EINTR)
            continue;
        if (n <= 0) {
            rc = n < 0 ? -1 : 0;
            break;
        }
        for (ssize_t done = 0; done < n;) {
            ssize_t w = write(out_fd, buf + done, (size_t)(n - done));
            if (w < 0 && errno == EINTR)
                continue;
            if (w < 0) {
                rc = -1;
                goto done;
            }
            done += w;
        }
    }
done:;
    int saved = errno;
    free(buf);
    errno = saved;
    return rc;
}

/* Check that data_dir may receive a restore; create it when missing
 * (*created). BACKUP_OK or a backup_err with err. */
static int s_restore_target(const char *data_dir, struct stat *st, bool *created, char *err, size_t err_len)
{
    *created = false;
    if (stat(data_dir, st) != 0) {
        if (errno != ENOENT || mkdir(data_dir, 0700) != 0 || stat(data_dir, st) != 0) {
            snprintf(err, err_len, "%s: %s", data_dir, strerror(errno));
            return BACKUP_IO;
        }
        *created = true;
        return BACKUP_OK;
    }
    if (!S_ISDIR(st->st_mode)) {
        snprintf(err, err_len, "%s: not a directory", data_dir);
        return BACKUP_IO;
    }
    long pid = 0;
    int used = logfile_in_use(data_dir, &pid);
    if (used > 0) {
        snprintf(err, err_len, "%s: process %ld has the log in this directory open (a running hub?); stop it first",
                 data_dir, pid);
        return BACKUP_IN_USE;
    }
    int empty = used < 0 ? -1 : s_dir_empty(data_dir);
    if (empty < 0) {
        snprintf(err, err_len, "%s: %s", data_dir, strerror(errno));
        return BACKUP_IO;
    }
    if (!empty) {
        snprintf(err, err_len, "%s is not empty; restore into a new or empty directory (move the old one aside)",
                 data_dir);
        return BACKUP_NOT_EMPTY;
    }
    return BACKUP_OK;
}

/* Open the written copy tmp, describe it in info and verify it. */
static int s_restore_check(const char *tmp, const keyfile_hub_t *keys, backup_info_t *info,
                           logfile_report_t *report, char *err, size_t err_len)
{
    logfile_t *lf = logfile_open(tmp, err, err_len);
    if (!lf)
        return BACKUP_NOT_LOG;
    int rc = BACKUP_IO;
    if (logfile_summary(lf, &info->log, err, err_len) != LOGFILE_OK)
        goto close_lf;
    int vrc = logfile_verify(lf, keys, 0, NULL, 0, report);
    if (vrc == LOGFILE_OK) {
        rc = BACKUP_OK;
    } else if (vrc == LOGFILE_TAMPERED) {
        snprintf(err, err_len, "the copy does not verify at seq %llu: %s", (unsigned long long)report->bad_seq,
                 report->problem);
        rc = BACKUP_TAMPERED;
    } else {
        snprintf(err, err_len, "%s", report->problem);
    }
close_lf:
    logfile_destroy(&lf);
    return rc;
}

int backup_restore(const char *in, const char *data_dir, const keyfile_hub_t *keys, backup_info_t *info,
                   logfile_report_t *report, char *err, size_t err_len)
{
    memset(info, 0, sizeof *info);
    memset(report, 0, sizeof *report);
    int rc = s_check_input(in, err, err_len);
    if (rc != BACKUP_OK)
        return rc;
    int in_fd = open(in, O_RDONLY | O_CLOEXEC);
    if (in_fd < 0) {
        snprintf(err, err_len, "%s: %s", in, strerror(errno));
        return BACKUP_IO;
    }
    struct stat st;
    if (fstat(in_fd, &st) != 0 || !S_ISREG(st.st_mode)) {
        snprintf(err, err_len, "%s: not a file made by civibus backup", in);
        close(in_fd);
        return BACKUP_IO;
    }
    struct stat dst;
    bool created;
    if ((rc = s_restore_target(data_dir, &dst, &created, err, err_len)) != BACKUP_OK)
        goto close_in;
    rc = BACKUP_IO;
    char tmp[S_PATH_MAX], final[S_PATH_MAX], parent[S_PATH_MAX];
    int n = snprintf(final, sizeof final, "%s/data.mdb", data_dir);
    if (n < 0 || (size_t)n >= sizeof final || s_dirname(data_dir, parent, sizeof parent) != 0) {
        snprintf(err, err_len, "%s: path too long", data_dir);
        goto remove_dir;
    }
    int fd = s_tempfile(data_dir, "restore", tmp, sizeof tmp, err, err_len);
    if (fd < 0)
        goto remove_dir;
    /* Run as root into a directory the hub's user owns, the file must be
     * that user's too, or the hub could not open it. */
    bool chown_needed = geteuid() == 0 && !created && (dst.st_uid != 0 || dst.st_gid != 0);
    if (s_copy_fd(in_fd, fd) != 0 || (chown_needed && fchown(fd, dst.st_uid, dst.st_gid) != 0) ||
        fsync(fd) != 0 || fstat(fd, &st) != 0) {
        snprintf(err, err_len, "%s: %s", tmp, strerror(errno));
        close(fd);
        goto remove_tmp;
    }
    info->bytes = (uint64_t)st.st_size;
    if (close(fd) != 0) {
        snprintf(err, err_len, "%s: %s", tmp, strerror(errno));
        goto remove_tmp;
    }
    if ((rc = s_restore_check(tmp, keys, info, report, err, err_len)) != BACKUP_OK)
        goto remove_tmp;
    rc = s_publish(tmp, final, false, err, err_len);
    if (rc == BACKUP_EXISTS) {
        snprintf(err, err_len, "%s appeared during the restore; not overwritten", final);
        rc = BACKUP_NOT_EMPTY;
    }
    if (rc != BACKUP_OK)
        goto remove_tmp;
    if (s_fsync_dir(data_dir) != 0 || (created && s_fsync_dir(parent) != 0)) {
        snprintf(err, err_len, "%s: fsync: %s", data_dir, strerror(errno));
        rc = BACKUP_IO;
    }
    close(in_fd);
    return rc;

remove_tmp:
    unlink(tmp);
remove_dir:
    if (created)
        rmdir(data_dir);
close_in:
    close(in_fd);
    return rc;
}

const char *backup_strerror(int code)
{
    switch (code) {
    case BACKUP_OK: return "ok";
    case BACKUP_IO: return "cannot read or write a file";
    case BACKUP_EXISTS: return "the output file exists";
    case BACKUP_IN_USE: return "the data directory is in use";
    case BACKUP_NOT_EMPTY: return "the data directory is not empty";
    case BACKUP_NOT_LOG: return "not a civibus log of a known format";
    case BACKUP_TAMPERED: return "the copy does not verify";
    default: return "unknown backup error";
    }
}
