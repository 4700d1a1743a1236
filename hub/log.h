/* log - the hub's diagnostic log: one line per event on stderr.
 *
 * Text format (log_format = text, the default):
 *   2026-11-23T04:23:57.123Z info router event=listening endpoint=...
 * i.e. UTC time, level, module, then key=value pairs written by the caller.
 * JSON format (log_format = json): the same line as one JSON object,
 *   {"time":"2026-11-23T04:23:57.123Z","level":"info","module":"router",
 *    "event":"listening","endpoint":"..."}
 * with every key=value pair as a field: a bare decimal value becomes a JSON
 * number, anything else (and every value of an identifier key such as key,
 * key_id, code, agency) a string. Callers always write key=value text;
 * values with spaces, quotes, '=' or control characters are quoted with
 * log_quote(), so the pairs can be taken apart again.
 *
 * Never log a payload, a secret key or a whole message.
 *
 * log_limited() rate-limits a repeated per-message error: at most a burst of
 * lines per key in each interval (10 per second unless configured), then one
 * line "event=suppressed key=K suppressed=N" when the interval is over
 * (written by the next line of that key or by log_flush_suppressed).
 *
 * Thread-safe: each line is formatted into one buffer and written with one
 * write(2); level and format are atomics, the limiter has a lock.
 */
#ifndef CIVIBUS_LOG_H
#define CIVIBUS_LOG_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

typedef enum { LOG_DEBUG = 0, LOG_INFO = 1, LOG_WARN = 2, LOG_ERROR = 3 } log_level_t;
typedef enum { LOG_TEXT = 0, LOG_JSON = 1 } log_format_t;

/* Longest line written, newline included; longer ones are cut (a JSON line
 * is then closed properly and gets "truncated":true). */
#define LOG_LINE_MAX 4096

/* Minimum level written (default LOG_INFO); may be called at any time. */
void log_set_level(log_level_t level);
/* Parse "debug|info|warn|error"; -1 when unknown. */
int log_level_parse(const char *name);
/* Line format (default LOG_TEXT); may be called at any time. */
void log_set_format(log_format_t format);
/* Parse "text|json"; -1 when unknown. */
int log_format_parse(const char *name);

/* Write one line: time level module, then fmt (printf-style "key=value ..."). */
void log_write(log_level_t level, const char *module, const char *fmt, ...) __attribute__((format(printf, 3, 4)));

/* As log_write, but at most the configured burst of lines per interval for
 * one (module, key); key is a short name of the kind of error, such as
 * "publish_refused.bad_signature" (copied; up to 47 bytes count). The lines
 * withheld are counted and reported in one "event=suppressed" line. */
void log_limited(log_level_t level, const char *module, const char *key, const char *fmt, ...)
    __attribute__((format(printf, 4, 5)));

/* Report the keys whose interval is over and that had lines withheld (all
 * of them, over or not, when all is true: at stop). The router calls it
 * once a second, so a burst that stops is still summed up. */
void log_flush_suppressed(bool all);

/* Limiter settings: burst lines per key per interval_ms (defaults 10 and
 * 1000; 0 keeps a value). */
void log_limit_configure(unsigned burst, unsigned interval_ms);

/* The clock the limiter reads, in milliseconds (default: CLOCK_MONOTONIC);
 * NULL restores the default. For tests, which must not depend on timing. */
void log_set_clock(int64_t (*now_ms)(void));

/* Write one line whose key=value text kv is fixed (no formatting), in the
 * configured format and at the given level. Async-signal-safe: for signal
 * handlers (a second SIGTERM, a drain that timed out). When stderr cannot
 * take the line at once (a full pipe), it is skipped rather than waited for. */
void log_write_signal_safe(log_level_t level, const char *module, const char *kv);

/* Render one line into out (out_len bytes, LOG_LINE_MAX is enough): time_ms
 * (Unix milliseconds), level, module and the key=value text kv, in format,
 * ending with a newline. Returns the length written (no NUL is added).
 * Async-signal-safe (no stdio, no allocation). */
size_t log_render(char *out, size_t out_len, log_format_t format, int64_t time_ms, log_level_t level,
                  const char *module, const char *kv);

/* Copy s into buf as a log value: as is when it has only safe characters,
 * else in double quotes with '"', '\\' and control characters escaped.
 * Always NUL-terminates; truncates long values. Returns buf. */
const char *log_quote(const char *s, char *buf, size_t buf_len);

#define log_debug(mod, ...) log_write(LOG_DEBUG, mod, __VA_ARGS__)
#define log_info(mod, ...) log_write(LOG_INFO, mod, __VA_ARGS__)
#define log_warn(mod, ...) log_write(LOG_WARN, mod, __VA_ARGS__)
#define log_error(mod, ...) log_write(LOG_ERROR, mod, __VA_ARGS__)

#endif
