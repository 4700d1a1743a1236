/* log - the hub's diagnostic log: one line per event on stderr.
 *
 * Format: "2026-11-23T04:23:57.123Z info router event=listening endpoint=..."
 * i.e. UTC time, level, module, then key=value pairs written by the caller.
 * Values containing spaces or quotes are written quoted by log_quote().
 * Never log a payload, a secret key or a whole message.
 * log_limited() rate-limits a repeated per-message error: at most a burst per
 * key every second, then one line saying how many were suppressed.
 * Thread-safe (each line is one write).
 */
#ifndef CIVIBUS_LOG_H
#define CIVIBUS_LOG_H

#include <stddef.h>

typedef enum { LOG_DEBUG = 0, LOG_INFO = 1, LOG_WARN = 2, LOG_ERROR = 3 } log_level_t;

/* Minimum level written (default LOG_INFO). */
void log_set_level(log_level_t level);
/* Parse "debug|info|warn|error"; -1 when unknown. */
int log_level_parse(const char *name);

/* Write one line: time level module, then fmt (printf-style "key=value ..."). */
void log_write(log_level_t level, const char *module, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));

/* As log_write, but at most 10 lines per second for the same key (a short
 * static string such as "router.malformed"); the rest are counted and reported. */
void log_limited(log_level_t level, const char *module, const char *key, const char *fmt, ...)
    __attribute__((format(printf, 4, 5)));

/* Copy s into buf as a log value: as is when it has only safe characters,
 * else in double quotes with '"', '\\' and control characters escaped.
 * Always NUL-terminates; truncates long values. Returns buf. */
const char *log_quote(const char *s, char *buf, size_t buf_len);

#define log_debug(mod, ...) log_write(LOG_DEBUG, mod, __VA_ARGS__)
#define log_info(mod, ...) log_write(LOG_INFO, mod, __VA_ARGS__)
#define log_warn(mod, ...) log_write(LOG_WARN, mod, __VA_ARGS__)
#define log_error(mod, ...) log_write(LOG_ERROR, mod, __VA_ARGS__)

#endif
