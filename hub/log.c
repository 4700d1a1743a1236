/* log - the hub's diagnostic log: one line per event on stderr.
 *
 * Each line is formatted into one buffer and written with a single write(2),
 * so lines from the ZAP thread and the main loop never interleave.
 */
#include "log.h"

#include <pthread.h>
#include <stdbool.h>
#include <stdarg.h>
#include <stdio.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#define LINE_MAX_BYTES 2048
#define LIMIT_PER_SECOND 10
#define LIMIT_KEYS 32

static log_level_t s_level = LOG_INFO;
static const char *s_names[] = {"debug", "info", "warn", "error"};

typedef struct {
    const char *key;
    time_t second;
    unsigned count;
    unsigned suppressed;
} s_limit_t;

static s_limit_t s_limits[LIMIT_KEYS];
static pthread_mutex_t s_limits_lock = PTHREAD_MUTEX_INITIALIZER;

void log_set_level(log_level_t level)
{
    s_level = level;
}

int log_level_parse(const char *name)
{
    for (int i = 0; i < 4; i++)
        if (strcmp(name, s_names[i]) == 0)
            return i;
    return -1;
}

static void s_vwrite(log_level_t level, const char *module, const char *fmt, va_list ap)
{
    char line[LINE_MAX_BYTES];
    struct timespec ts;
    struct tm tm;
    clock_gettime(CLOCK_REALTIME, &ts);
    gmtime_r(&ts.tv_sec, &tm);
    int n = snprintf(line, sizeof line, "%04d-%02d-%02dT%02d:%02d:%02d.%03ldZ %s %s ", tm.tm_year + 1900,
                     tm.tm_mon + 1, tm.tm_mday, tm.tm_hour, tm.tm_min, tm.tm_sec, ts.tv_nsec / 1000000,
                     s_names[level], module);
    int m = vsnprintf(line + n, sizeof line - (size_t)n - 1, fmt, ap);
    size_t len = (size_t)n + (m < 0 ? 0 : (size_t)m);
    if (len > sizeof line - 2)
        len = sizeof line - 2;
    line[len++] = '\n';
    ssize_t w = write(STDERR_FILENO, line, len);
    (void)w; /* nowhere to report a failing stderr */
}

void log_write(log_level_t level, const char *module, const char *fmt, ...)
{
    if (level < s_level)
        return;
    va_list ap;
    va_start(ap, fmt);
    s_vwrite(level, module, fmt, ap);
    va_end(ap);
}

void log_limited(log_level_t level, const char *module, const char *key, const char *fmt, ...)
{
    if (level < s_level)
        return;
    time_t now = time(NULL);
    unsigned report = 0;
    int allow = 1;
    pthread_mutex_lock(&s_limits_lock);
    s_limit_t *slot = NULL;
    for (int i = 0; i < LIMIT_KEYS; i++) {
        if (s_limits[i].key == key || s_limits[i].key == NULL) {
            slot = &s_limits[i];
            break;
        }
    }
    if (slot) {
        if (slot->key == NULL || slot->second != now) {
            report = slot->suppressed;
            slot->key = key;
            slot->second = now;
            slot->count = 0;
            slot->suppressed = 0;
        }
        if (++slot->count > LIMIT_PER_SECOND) {
            slot->suppressed++;
            allow = 0;
        }
    }
    pthread_mutex_unlock(&s_limits_lock);
    if (report)
        log_write(level, module, "event=suppressed key=%s count=%u", key, report);
    if (!allow)
        return;
    va_list ap;
    va_start(ap, fmt);
    s_vwrite(level, module, fmt, ap);
    va_end(ap);
}

const char *log_quote(const char *s, char *buf, size_t buf_len)
{
    if (!s)
        s = "";
    int plain = *s != '\0';
    for (const char *p = s; *p; p++)
        if (*p <= ' ' || *p == '"' || *p == '\\' || *p == '=' || (unsigned char)*p >= 0x7f)
            plain = 0;
    size_t o = 0;
    if (plain) {
        snprintf(buf, buf_len, "%s", s);
        return buf;
    }
    if (buf_len < 3) {
        buf[0] = '\0';
        return buf;
    }
    buf[o++] = '"';
    for (const char *p = s; *p && o + 5 < buf_len; p++) {
        unsigned char c = (unsigned char)*p;
        if (c == '"' || c == '\\') {
            buf[o++] = '\\';
            buf[o++] = (char)c;
        } else if (c < ' ' || c == 0x7f) {
            o += (size_t)snprintf(buf + o, buf_len - o, "\\x%02x", c);
        } else {
            buf[o++] = (char)c;
        }
    }
    buf[o++] = '"';
    buf[o] = '\0';
    return buf;
}
