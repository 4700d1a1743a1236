/* log - the hub's diagnostic log: one line per event on stderr.
 *
 * Callers write "key=value ..." text. log_render turns it into a line: in
 * text format the text follows time, level and module as it is; in JSON the
 * pairs are taken apart again (quoted values unescaped) and written as the
 * fields of one object. Rendering uses no stdio and no allocation, so the
 * same code serves signal handlers (log_write_signal_safe).
 *
 * The limiter keeps a small table of (module, key) slots, each counting the
 * lines of its current interval. When the table is full, kinds without a
 * slot share the last one (key "other"), so a flood of distinct kinds is
 * limited too.
 */
#include "log.h"

#include <poll.h>
#include <pthread.h>
#include <stdarg.h>
#include <stdatomic.h>
#include <stdio.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "crypto.h"

#define LIMIT_SLOTS 64
#define LIMIT_KEY_MAX 48
#define LIMIT_MODULE_MAX 16
#define DEFAULT_BURST 10
#define DEFAULT_INTERVAL_MS 1000
/* Room a cut JSON line needs to close: "  ,"truncated":true}\n  */
#define JSON_RESERVE 24

static atomic_int s_level = LOG_INFO;
static atomic_int s_format = LOG_TEXT;
static const char *const s_names[] = {"debug", "info", "warn", "error"};

/* Keys whose values are identifiers, never numbers, even when they happen
 * to be all digits (a key id in hex, the first characters of a Z85 key). */
static const char *const s_string_keys[] = {"event", "key",   "key_id", "code",    "agency", "agencies",
                                            "subscription", "instance", "chain", "endpoint", "address",
                                            "file",  "dir",  "old",    "new",    "running", "configured", NULL};

typedef struct {
    bool used;
    char module[LIMIT_MODULE_MAX];
    char key[LIMIT_KEY_MAX];
    int64_t start_ms;     /* the current interval began here */
    unsigned count;       /* lines written in it */
    unsigned suppressed;  /* lines withheld in it */
    log_level_t level;    /* the highest level withheld */
} s_limit_t;

typedef struct {
    char module[LIMIT_MODULE_MAX];
    char key[LIMIT_KEY_MAX];
    unsigned suppressed;
    unsigned interval_ms;
    log_level_t level;
} s_report_t;

static s_limit_t s_limits[LIMIT_SLOTS];
static unsigned s_burst = DEFAULT_BURST;
static unsigned s_interval_ms = DEFAULT_INTERVAL_MS;
static int64_t (*s_clock)(void);
static pthread_mutex_t s_limits_lock = PTHREAD_MUTEX_INITIALIZER;

void log_set_level(log_level_t level)
{
    atomic_store_explicit(&s_level, (int)level, memory_order_relaxed);
}

int log_level_parse(const char *name)
{
    for (int i = 0; i < 4; i++)
        if (strcmp(name, s_names[i]) == 0)
            return i;
    return -1;
}

void log_set_format(log_format_t format)
{
    atomic_store_explicit(&s_format, (int)format, memory_order_relaxed);
}

int log_format_parse(const char *name)
{
    if (strcmp(name, "text") == 0)
        return LOG_TEXT;
    if (strcmp(name, "json") == 0)
        return LOG_JSON;
    return -1;
}

static bool s_enabled(log_level_t level)
{
    return (int)level >= atomic_load_explicit(&s_level, memory_order_relaxed);
}

/* ---- rendering (async-signal-safe) ------------------------------------------ */

typedef struct {
    char *buf;
    size_t len;
    size_t cap; /* what content may use; the reserve after it closes the line */
    bool cut;
} s_out_t;

/* Append all of s or, when it does not fit, nothing (and mark the line cut). */
static bool s_put(s_out_t *o, const char *s, size_t n)
{
    if (o->cut || o->len + n > o->cap) {
        o->cut = true;
        return false;
    }
    memcpy(o->buf + o->len, s, n);
    o->len += n;
    return true;
}

static bool s_puts(s_out_t *o, const char *s)
{
    return s_put(o, s, strlen(s));
}

static void s_digits(char *out, unsigned v, int width)
{
    for (int i = width - 1; i >= 0; i--) {
        out[i] = (char)('0' + v % 10);
        v /= 10;
    }
}

/* "YYYY-MM-DDTHH:MM:SS.mmmZ" (24 characters) for Unix milliseconds, by
 * arithmetic (gmtime_r is not async-signal-safe): days to a civil date as in
 * H. Hinnant's days_from_civil inverse. */
static void s_time(char out[24], int64_t ms)
{
    if (ms < 0)
        ms = 0;
    int64_t secs = ms / 1000, days = secs / 86400, rem = secs % 86400;
    int64_t z = days + 719468;
    int64_t era = z / 146097;
    unsigned doe = (unsigned)(z - era * 146097);
    unsigned yoe = (doe - doe / 1460 + doe / 36524 - doe / 146096) / 365;
    unsigned doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    unsigned mp = (5 * doy + 2) / 153;
    unsigned day = doy - (153 * mp + 2) / 5 + 1;
    unsigned month = mp < 10 ? mp + 3 : mp - 9;
    unsigned year = (unsigned)(yoe + era * 400 + (month <= 2));
    s_digits(out, year % 10000, 4);
    out[4] = '-';
    s_digits(out + 5, month, 2);
    out[7] = '-';
    s_digits(out + 8, day, 2);
    out[10] = 'T';
    s_digits(out + 11, (unsigned)(rem / 3600), 2);
    out[13] = ':';
    s_digits(out + 14, (unsigned)(rem / 60 % 60), 2);
    out[16] = ':';
    s_digits(out + 17, (unsigned)(rem % 60), 2);
    out[19] = '.';
    s_digits(out + 20, (unsigned)(ms % 1000), 3);
    out[23] = 'Z';
}

/* Length of the valid UTF-8 sequence at s (n bytes left), 0 if invalid. */
static size_t s_utf8_len(const unsigned char *s, size_t n)
{
    unsigned char c = s[0];
    size_t len;
    unsigned char lo = 0x80, hi = 0xbf;
    if (c < 0x80)
        return 1;
    if (c >= 0xc2 && c <= 0xdf)
        len = 2;
    else if (c >= 0xe0 && c <= 0xef)
        len = 3, lo = c == 0xe0 ? 0xa0 : 0x80, hi = c == 0xed ? 0x9f : 0xbf;
    else if (c >= 0xf0 && c <= 0xf4)
        len = 4, lo = c == 0xf0 ? 0x90 : 0x80, hi = c == 0xf4 ? 0x8f : 0xbf;
    else
        return 0;
    if (n < len || s[1] < lo || s[1] > hi)
        return 0;
    for (size_t i = 2; i < len; i++)
        if (s[i] < 0x80 || s[i] > 0xbf)
            return 0;
    return len;
}

/* Append s (n bytes) as the inside of a JSON string, escape by escape; stops
 * at the first that does not fit. Bytes that are not UTF-8 become U+FFFD. */
static void s_json_chars(s_out_t *o, const char *s, size_t n)
{
    static const char hex[] = "0123456789abcdef";
    const unsigned char *u = (const unsigned char *)s;
    for (size_t i = 0; i < n && !o->cut;) {
        unsigned char c = u[i];
        char esc[6] = {'\\', 'u', '0', '0', hex[c >> 4], hex[c & 15]};
        if (c == '"' || c == '\\') {
            char two[2] = {'\\', (char)c};
            s_put(o, two, 2);
        } else if (c == '\n') {
            s_put(o, "\\n", 2);
        } else if (c == '\t') {
            s_put(o, "\\t", 2);
        } else if (c < 0x20 || c == 0x7f) {
            s_put(o, esc, 6);
        } else if (c >= 0x80) {
            size_t len = s_utf8_len(u + i, n - i);
            if (len == 0) {
                s_put(o, "\\ufffd", 6);
                i++;
                continue;
            }
            s_put(o, s + i, len);
            i += len;
            continue;
        } else {
            s_put(o, s + i, 1);
        }
        i++;
    }
}

static bool s_key_char(char c)
{
    return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') || c == '_' || c == '.' ||
           c == '-';
}

/* A JSON number: -?(0|[1-9][0-9]*)(.[0-9]+)?, at most 20 characters. */
static bool s_is_number(const char *v, size_t n)
{
    size_t i = 0;
    if (n == 0 || n > 20)
        return false;
    if (v[i] == '-')
        i++;
    if (i == n || v[i] < '0' || v[i] > '9')
        return false;
    if (v[i] == '0' && i + 1 < n && v[i + 1] != '.')
        return false;
    while (i < n && v[i] >= '0' && v[i] <= '9')
        i++;
    if (i < n && v[i] == '.') {
        size_t frac = ++i;
        while (i < n && v[i] >= '0' && v[i] <= '9')
            i++;
        if (i == frac)
            return false;
    }
    return i == n;
}

static bool s_string_key(const char *k, size_t n)
{
    for (int i = 0; s_string_keys[i]; i++)
        if (strlen(s_string_keys[i]) == n && memcmp(s_string_keys[i], k, n) == 0)
            return true;
    return false;
}

/* One field: ,"key":value. A number goes in whole or not at all; a string
 * may be cut, and then *open says its quote is still to be closed. */
static void s_json_field(s_out_t *o, const char *k, size_t kn, const char *v, size_t vn, bool number, bool *open)
{
    size_t head = 2 + kn + 2; /* ,"key": */
    if (o->cut || o->len + head + (number ? vn : 2) > o->cap) {
        o->cut = true;
        return;
    }
    s_put(o, ",\"", 2);
    s_put(o, k, kn);
    s_put(o, "\":", 2);
    if (number) {
        s_put(o, v, vn);
        return;
    }
    s_put(o, "\"", 1);
    *open = true;
    s_json_chars(o, v, vn);
    if (s_put(o, "\"", 1))
        *open = false;
}

/* The key=value pairs of kv as JSON fields. Text that is not a pair (which
 * callers should not write) ends the pairs and goes whole into "text". */
static void s_json_pairs(s_out_t *o, const char *kv, bool *open)
{
    char val[LOG_LINE_MAX];
    const char *p = kv;
    while (*p && !o->cut) {
        while (*p == ' ')
            p++;
        if (!*p)
            break;
        const char *k = p;
        while (s_key_char(*p))
            p++;
        if (p == k || *p != '=') {
            s_json_field(o, "text", 4, k, strlen(k), false, open);
            return;
        }
        size_t kn = (size_t)(p - k), vn = 0;
        p++;
        bool quoted = *p == '"';
        if (quoted) {
            p++;
            while (*p && *p != '"' && vn < sizeof val) {
                if (*p == '\\' && p[1] == 'x' && crypto_hexval(p[2]) >= 0 && crypto_hexval(p[3]) >= 0) {
                    val[vn++] = (char)(crypto_hexval(p[2]) << 4 | crypto_hexval(p[3]));
                    p += 4;
                } else if (*p == '\\' && p[1]) {
                    val[vn++] = p[1];
                    p += 2;
                } else {
                    val[vn++] = *p++;
                }
            }
            if (*p == '"')
                p++;
        } else {
            while (*p && *p != ' ' && vn < sizeof val)
                val[vn++] = *p++;
        }
        bool number = !quoted && !s_string_key(k, kn) && s_is_number(val, vn);
        s_json_field(o, k, kn, val, vn, number, open);
    }
}

size_t log_render(char *out, size_t out_len, log_format_t format, int64_t time_ms, log_level_t level,
                  const char *module, const char *kv)
{
    size_t reserve = format == LOG_JSON ? JSON_RESERVE : 1;
    if (out_len <= reserve + 64)
        return 0;
    s_out_t o = {.buf = out, .len = 0, .cap = out_len - reserve, .cut = false};
    char when[24];
    s_time(when, time_ms);
    const char *lv = s_names[level <= LOG_ERROR ? level : LOG_ERROR];
    if (format == LOG_JSON) {
        bool open = false;
        s_puts(&o, "{\"time\":\"");
        s_put(&o, when, sizeof when);
        s_puts(&o, "\",\"level\":\"");
        s_puts(&o, lv);
        s_puts(&o, "\",\"module\":\"");
        s_json_chars(&o, module, strlen(module));
        s_puts(&o, "\"");
        s_json_pairs(&o, kv, &open);
        if (o.cut) {
            /* Close what was cut, in the reserve. */
            o.cap = out_len;
            o.cut = false;
            if (open)
                s_put(&o, "\"", 1);
            s_puts(&o, ",\"truncated\":true");
        }
        o.cap = out_len;
        o.cut = false;
        s_puts(&o, "}\n");
        return o.len;
    }
    s_put(&o, when, sizeof when);
    s_puts(&o, " ");
    s_puts(&o, lv);
    s_puts(&o, " ");
    s_puts(&o, module);
    s_puts(&o, " ");
    size_t n = strlen(kv);
    if (o.len + n > o.cap)
        n = o.cap - o.len;
    s_put(&o, kv, n);
    o.cap = out_len;
    o.cut = false;
    s_puts(&o, "\n");
    return o.len;
}

static int64_t s_wall_ms(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_REALTIME, &ts);
    return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

static void s_emit(log_level_t level, const char *module, const char *kv)
{
    char line[LOG_LINE_MAX];
    log_format_t format = (log_format_t)atomic_load_explicit(&s_format, memory_order_relaxed);
    size_t len = log_render(line, sizeof line, format, s_wall_ms(), level, module, kv);
    ssize_t w = write(STDERR_FILENO, line, len);
    (void)w; /* nowhere to report a failing stderr */
}

void log_write_signal_safe(log_level_t level, const char *module, const char *kv)
{
    if (!s_enabled(level))
        return;
    /* The _exit that follows must not wait on a stderr that cannot take the
     * line (a full pipe to a stuck reader): then the line is skipped. */
    struct pollfd p = {.fd = STDERR_FILENO, .events = POLLOUT, .revents = 0};
    if (poll(&p, 1, 0) != 1 || !(p.revents & POLLOUT))
        return;
    s_emit(level, module, kv);
}

static void s_vwrite(log_level_t level, const char *module, const char *fmt, va_list ap)
{
    char kv[LOG_LINE_MAX];
    if (vsnprintf(kv, sizeof kv, fmt, ap) < 0)
        kv[0] = '\0';
    s_emit(level, module, kv);
}

void log_write(log_level_t level, const char *module, const char *fmt, ...)
{
    if (!s_enabled(level))
        return;
    va_list ap;
    va_start(ap, fmt);
    s_vwrite(level, module, fmt, ap);
    va_end(ap);
}

/* ---- rate limiting ----------------------------------------------------------- */

static int64_t s_mono_ms(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

void log_limit_configure(unsigned burst, unsigned interval_ms)
{
    pthread_mutex_lock(&s_limits_lock);
    if (burst)
        s_burst = burst;
    if (interval_ms)
        s_interval_ms = interval_ms;
    pthread_mutex_unlock(&s_limits_lock);
}

void log_set_clock(int64_t (*now_ms)(void))
{
    pthread_mutex_lock(&s_limits_lock);
    s_clock = now_ms;
    pthread_mutex_unlock(&s_limits_lock);
}

/* Move slot's withheld count into *r (if any); true when there was one. */
static bool s_take_report(s_limit_t *slot, s_report_t *r)
{
    if (!slot->used || !slot->suppressed)
        return false;
    memcpy(r->module, slot->module, sizeof r->module);
    memcpy(r->key, slot->key, sizeof r->key);
    r->suppressed = slot->suppressed;
    r->interval_ms = s_interval_ms;
    r->level = slot->level;
    slot->suppressed = 0;
    return true;
}

static void s_write_report(const s_report_t *r)
{
    char kv[160], quoted[LIMIT_KEY_MAX * 4 + 3];
    snprintf(kv, sizeof kv, "event=suppressed key=%s suppressed=%u interval_ms=%u",
             log_quote(r->key, quoted, sizeof quoted), r->suppressed, r->interval_ms);
    if (s_enabled(r->level))
        s_emit(r->level, r->module, kv);
}

/* The slot of (module, key): its own, a free one, one whose interval is
 * over (its count reported first), or the shared last one. Under the lock. */
static s_limit_t *s_slot(const char *module, const char *key, int64_t now, s_report_t *r, bool *report)
{
    s_limit_t *free_slot = NULL, *stale = NULL;
    for (int i = 0; i < LIMIT_SLOTS - 1; i++) {
        s_limit_t *s = &s_limits[i];
        if (!s->used) {
            if (!free_slot)
                free_slot = s;
            continue;
        }
        if (strncmp(s->key, key, LIMIT_KEY_MAX - 1) == 0 && strncmp(s->module, module, LIMIT_MODULE_MAX - 1) == 0)
            return s;
        if (!stale && now - s->start_ms >= (int64_t)s_interval_ms)
            stale = s;
    }
    s_limit_t *s = free_slot ? free_slot : stale;
    if (!s) {
        s = &s_limits[LIMIT_SLOTS - 1];
        if (!s->used) {
            s->used = true;
            snprintf(s->module, sizeof s->module, "log");
            snprintf(s->key, sizeof s->key, "other");
            s->start_ms = now;
        }
        return s;
    }
    *report = s_take_report(s, r);
    s->used = true;
    snprintf(s->module, sizeof s->module, "%s", module);
    snprintf(s->key, sizeof s->key, "%s", key);
    s->start_ms = now;
    s->count = 0;
    s->suppressed = 0;
    return s;
}

void log_limited(log_level_t level, const char *module, const char *key, const char *fmt, ...)
{
    if (!s_enabled(level))
        return;
    s_report_t r;
    bool report = false, allow = false;
    pthread_mutex_lock(&s_limits_lock);
    int64_t now = s_clock ? s_clock() : s_mono_ms();
    s_limit_t *slot = s_slot(module, key, now, &r, &report);
    if (now - slot->start_ms >= (int64_t)s_interval_ms) {
        report = s_take_report(slot, &r) || report;
        slot->start_ms = now;
        slot->count = 0;
    }
    if (slot->count < s_burst) {
        slot->count++;
        allow = true;
    } else {
        if (!slot->suppressed || level > slot->level)
            slot->level = level;
        slot->suppressed++;
    }
    pthread_mutex_unlock(&s_limits_lock);
    if (report)
        s_write_report(&r);
    if (!allow)
        return;
    va_list ap;
    va_start(ap, fmt);
    s_vwrite(level, module, fmt, ap);
    va_end(ap);
}

void log_flush_suppressed(bool all)
{
    s_report_t reports[LIMIT_SLOTS];
    size_t n = 0;
    pthread_mutex_lock(&s_limits_lock);
    int64_t now = s_clock ? s_clock() : s_mono_ms();
    for (int i = 0; i < LIMIT_SLOTS; i++)
        if (all || now - s_limits[i].start_ms >= (int64_t)s_interval_ms)
            n += s_take_report(&s_limits[i], &reports[n]);
    pthread_mutex_unlock(&s_limits_lock);
    for (size_t i = 0; i < n; i++)
        s_write_report(&reports[i]);
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
