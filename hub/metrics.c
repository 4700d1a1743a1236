/* metrics - the hub's counters and histograms, and the documents the
 * monitoring endpoint serves.
 *
 * Counters per agency live in agencies[], sorted by name and found by binary
 * search (with the last hit tried first: events of one batch mostly come
 * from one agency). Histograms keep per-bucket counts in integer
 * microseconds or events and become cumulative only when rendered. Both
 * documents are written by hand into a growing buffer (s_buf_t), without
 * printf on the hot path, and rebuilt whole at each render, in the router's
 * thread: with 10000 subscriptions that takes about 10 ms (the two
 * documents are then some 6 MB together).
 */
#include "metrics.h"

#include <dirent.h>
#include <inttypes.h>
#include <math.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <time.h>
#include <unistd.h>

#include "codec.h"
#include "keyfile.h"
#include "log.h"

#define CODES 32      /* ErrorCode values counted one by one */
#define REASON_MAX 200
#define NO_AGENCY "-" /* the sender of a refusal that has no identity */
#define DAY_S (24 * 3600)

/* ---- histograms ---------------------------------------------------------- */

typedef struct {
    uint64_t upper; /* bucket bound in the recorded unit (µs or events) */
    const char *le; /* the same bound as Prometheus shows it */
} s_bound_t;

/* Seconds, from 100 µs (a commit without fsync) to 10 s (a disk in trouble). */
static const s_bound_t s_latency_bounds[] = {
    {100, "0.0001"},   {250, "0.00025"},  {500, "0.0005"},   {1000, "0.001"},   {2500, "0.0025"},
    {5000, "0.005"},   {10000, "0.01"},   {25000, "0.025"},  {50000, "0.05"},   {100000, "0.1"},
    {250000, "0.25"},  {500000, "0.5"},   {1000000, "1"},    {2500000, "2.5"},  {5000000, "5"},
    {10000000, "10"},
};
/* Events per commit, up to beyond the default batch_max (4096). */
static const s_bound_t s_batch_bounds[] = {
    {1, "1"},       {2, "2"},       {4, "4"},       {8, "8"},         {16, "16"},
    {32, "32"},     {64, "64"},     {128, "128"},   {256, "256"},     {512, "512"},
    {1024, "1024"}, {2048, "2048"}, {4096, "4096"}, {16384, "16384"}, {65536, "65536"},
};
#define BOUNDS_MAX 16

typedef struct {
    const s_bound_t *bounds;
    size_t n_bounds;
    uint64_t buckets[BOUNDS_MAX + 1]; /* the last one: above every bound */
    uint64_t count;
    uint64_t sum; /* in the recorded unit */
} s_hist_t;

static void s_hist_observe(s_hist_t *h, uint64_t v)
{
    size_t i = 0;
    while (i < h->n_bounds && v > h->bounds[i].upper)
        i++;
    h->buckets[i]++;
    h->count++;
    h->sum += v;
}

/* ---- state ----------------------------------------------------------------- */

typedef struct {
    char name[CODEC_AGENCY_MAX + 1];
    uint64_t accepted;
    uint64_t duplicates;
    uint64_t refused_total;
    uint64_t refused[CODES];
} s_agency_t;

typedef struct {
    int64_t time; /* Unix seconds */
    char agency[CODEC_AGENCY_MAX + 1];
    int code;
    char reason[REASON_MAX];
} s_refusal_t;

typedef struct {
    double accepted, delivered, refused; /* events per second */
} s_step_t;

/* A subscription as reported: copied out of subs_foreach's callback. */
typedef struct {
    char agency[CODEC_AGENCY_MAX + 1];
    char name[CODEC_NAME_MAX + 1];
    subs_info_t info; /* its strings point into agency and name above */
} s_sub_t;

struct metrics {
    s_agency_t *agencies; /* sorted by name */
    size_t n_agencies, cap_agencies;
    size_t last_hit;

    uint64_t accepted, duplicates, refused, delivered;
    uint64_t auth_failures[2]; /* by metrics_auth_t */
    s_hist_t ack_latency, commit_latency, batch_events;
    bool storage_full;
    int64_t storage_full_since; /* Unix seconds */

    s_refusal_t refusals[METRICS_REFUSALS];
    size_t n_refusals, next_refusal;

    s_step_t steps[METRICS_STEPS];
    size_t n_steps, next_step;
    int64_t step_start_ms; /* 0: no step started yet */
    uint64_t step_accepted, step_delivered, step_refused; /* totals at the step's start */

    s_sub_t *subs; /* reused by every render */
    size_t n_subs, cap_subs;
    bool subs_truncated;
    size_t prometheus_hint, status_hint; /* sizes of the last documents */
};

metrics_t *metrics_new(void)
{
    metrics_t *self = calloc(1, sizeof *self);
    if (!self)
        return NULL;
    self->ack_latency.bounds = s_latency_bounds;
    self->ack_latency.n_bounds = sizeof s_latency_bounds / sizeof s_latency_bounds[0];
    self->commit_latency.bounds = s_latency_bounds;
    self->commit_latency.n_bounds = self->ack_latency.n_bounds;
    self->batch_events.bounds = s_batch_bounds;
    self->batch_events.n_bounds = sizeof s_batch_bounds / sizeof s_batch_bounds[0];
    return self;
}

void metrics_destroy(metrics_t **self_p)
{
    metrics_t *self = self_p ? *self_p : NULL;
    if (!self)
        return;
    free(self->agencies);
    free(self->subs);
    free(self);
    *self_p = NULL;
}

int64_t metrics_clock_us(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (int64_t)ts.tv_sec * 1000000 + ts.tv_nsec / 1000;
}

/* The counters of agency, created when new; NULL when out of memory (the
 * event is then counted in the totals only). */
static s_agency_t *s_agency(metrics_t *self, const char *agency)
{
    if (self->last_hit < self->n_agencies && strcmp(self->agencies[self->last_hit].name, agency) == 0)
        return &self->agencies[self->last_hit];
    size_t lo = 0, hi = self->n_agencies;
    while (lo < hi) {
        size_t mid = lo + (hi - lo) / 2;
        int c = strcmp(self->agencies[mid].name, agency);
        if (c == 0) {
            self->last_hit = mid;
            return &self->agencies[mid];
        }
        if (c < 0)
            lo = mid + 1;
        else
            hi = mid;
    }
    if (self->n_agencies == self->cap_agencies) {
        size_t cap = self->cap_agencies ? self->cap_agencies * 2 : 16;
        s_agency_t *grown = realloc(self->agencies, cap * sizeof *grown);
        if (!grown)
            return NULL;
        self->agencies = grown;
        self->cap_agencies = cap;
    }
    memmove(&self->agencies[lo + 1], &self->agencies[lo], (self->n_agencies - lo) * sizeof *self->agencies);
    s_agency_t *a = &self->agencies[lo];
    memset(a, 0, sizeof *a);
    snprintf(a->name, sizeof a->name, "%s", agency);
    self->n_agencies++;
    self->last_hit = lo;
    return a;
}

void metrics_event(metrics_t *self, const char *agency, bool duplicate)
{
    s_agency_t *a = s_agency(self, agency);
    if (duplicate) {
        self->duplicates++;
        if (a)
            a->duplicates++;
    } else {
        self->accepted++;
        if (a)
            a->accepted++;
    }
}

void metrics_refused(metrics_t *self, const char *agency, int code, const char *reason)
{
    const char *who = agency && agency[0] ? agency : NO_AGENCY;
    self->refused++;
    s_agency_t *a = s_agency(self, who);
    if (a) {
        a->refused_total++;
        if (code >= 0 && code < CODES)
            a->refused[code]++;
    }
    s_refusal_t *r = &self->refusals[self->next_refusal];
    r->time = codec_now_us() / 1000000;
    snprintf(r->agency, sizeof r->agency, "%s", who);
    r->code = code;
    snprintf(r->reason, sizeof r->reason, "%s", reason ? reason : "");
    self->next_refusal = (self->next_refusal + 1) % METRICS_REFUSALS;
    if (self->n_refusals < METRICS_REFUSALS)
        self->n_refusals++;
}

void metrics_delivered(metrics_t *self, size_t n)
{
    self->delivered += n;
}

void metrics_publish_replied(metrics_t *self, int64_t latency_us)
{
    s_hist_observe(&self->ack_latency, latency_us > 0 ? (uint64_t)latency_us : 0);
}

void metrics_commit(metrics_t *self, int64_t latency_us, size_t events)
{
    s_hist_observe(&self->commit_latency, latency_us > 0 ? (uint64_t)latency_us : 0);
    s_hist_observe(&self->batch_events, events);
}

void metrics_storage_full(metrics_t *self, bool full)
{
    if (full && !self->storage_full)
        self->storage_full_since = codec_now_us() / 1000000;
    self->storage_full = full;
}

void metrics_auth_failure(metrics_t *self, metrics_auth_t kind)
{
    if ((size_t)kind < sizeof self->auth_failures / sizeof self->auth_failures[0])
        self->auth_failures[kind]++;
}

/* ---- the process, from /proc/self --------------------------------------------- */

typedef struct {
    bool ok;
    double cpu_s;
    uint64_t vsize, rss;
    double start_time; /* Unix seconds */
    uint64_t fds, max_fds;
} s_proc_t;

static int64_t s_boot_time(void)
{
    FILE *f = fopen("/proc/stat", "r");
    if (!f)
        return -1;
    char line[256];
    long long btime = -1;
    while (fgets(line, sizeof line, f))
        if (sscanf(line, "btime %lld", &btime) == 1)
            break;
    fclose(f);
    return btime;
}

static void s_proc_read(s_proc_t *p)
{
    memset(p, 0, sizeof *p);
    FILE *f = fopen("/proc/self/stat", "r");
    if (!f)
        return;
    char buf[1024];
    size_t n = fread(buf, 1, sizeof buf - 1, f);
    fclose(f);
    buf[n] = '\0';
    /* The command name (field 2) may hold spaces and parentheses: fields
     * are counted from the last ')'. */
    char *s = strrchr(buf, ')');
    if (!s)
        return;
    unsigned long long field[25] = {0};
    int i = 3;
    char *save = NULL;
    for (char *tok = strtok_r(s + 1, " ", &save); tok && i < 25; tok = strtok_r(NULL, " ", &save), i++)
        field[i] = strtoull(tok, NULL, 10);
    if (i < 25)
        return;
    long tick = sysconf(_SC_CLK_TCK), page = sysconf(_SC_PAGESIZE);
    int64_t boot = s_boot_time();
    if (tick <= 0 || page <= 0 || boot < 0)
        return;
    p->cpu_s = (double)(field[14] + field[15]) / (double)tick;
    p->start_time = (double)boot + (double)field[22] / (double)tick;
    p->vsize = field[23];
    p->rss = field[24] * (uint64_t)page;
    DIR *d = opendir("/proc/self/fd");
    if (!d)
        return;
    for (struct dirent *e = readdir(d); e; e = readdir(d))
        p->fds += e->d_name[0] != '.';
    closedir(d);
    p->fds--; /* the descriptor opendir itself holds */
    struct rlimit rl;
    if (getrlimit(RLIMIT_NOFILE, &rl) == 0 && rl.rlim_cur != RLIM_INFINITY)
        p->max_fds = (uint64_t)rl.rlim_cur;
    p->ok = true;
}

/* ---- what the other modules know ---------------------------------------------- */

typedef struct {
    journal_stats_t js;
    uint64_t first_seq, last_seq;
    uint64_t checkpoint_seq;
    int64_t checkpoint_time; /* µs, 0: none */
    auth_expiring_t *keys;   /* valid keys with a not-after, soonest first */
    size_t n_keys;
    s_proc_t proc;
    int64_t now;             /* Unix seconds */
    uint64_t zap_refused;
    uint64_t dead_letters_created;
    size_t connections_open;
} s_figures_t;

static int s_sub_add(const subs_info_t *info, void *arg)
{
    metrics_t *self = arg;
    if (self->n_subs == METRICS_SUBS_MAX) {
        self->subs_truncated = true;
        return 1;
    }
    if (self->n_subs == self->cap_subs) {
        size_t cap = self->cap_subs ? self->cap_subs * 2 : 64;
        s_sub_t *grown = realloc(self->subs, cap * sizeof *grown);
        if (!grown)
            return -1;
        self->subs = grown;
        self->cap_subs = cap;
    }
    s_sub_t *s = &self->subs[self->n_subs++];
    snprintf(s->agency, sizeof s->agency, "%s", info->agency);
    snprintf(s->name, sizeof s->name, "%s", info->name);
    s->info = *info;
    return 0;
}

static void s_add_connected(const char *agency, size_t connections, void *arg)
{
    (void)connections;
    s_agency((metrics_t *)arg, agency);
}

static int s_gather(metrics_t *self, const metrics_sources_t *src, s_figures_t *f)
{
    memset(f, 0, sizeof *f);
    f->now = codec_now_us() / 1000000;
    int rc = journal_stats(src->journal, &f->js);
    if (rc != JOURNAL_OK)
        goto journal_failed;
    f->first_seq = journal_first_seq(src->journal);
    f->last_seq = journal_last_seq(src->journal);
    logfile_checkpoint_t cp;
    rc = journal_checkpoint_last(src->journal, &cp);
    if (rc == JOURNAL_OK) {
        f->checkpoint_seq = cp.seq;
        f->checkpoint_time = cp.time;
    } else if (rc != JOURNAL_NOTFOUND) {
        goto journal_failed;
    }
    self->n_subs = 0;
    self->subs_truncated = false;
    rc = subs_foreach(src->subs, s_sub_add, self);
    if (rc < 0)
        goto journal_failed;
    for (size_t i = 0; i < self->n_subs; i++) {
        self->subs[i].info.agency = self->subs[i].agency;
        self->subs[i].info.name = self->subs[i].name;
    }
    size_t n = auth_expiring(src->auth, NULL, f->now, INT64_MAX, NULL, 0);
    if (n) {
        f->keys = calloc(n, sizeof *f->keys);
        if (!f->keys)
            return -1;
        f->n_keys = auth_expiring(src->auth, NULL, f->now, INT64_MAX, f->keys, n);
        if (f->n_keys > n)
            f->n_keys = n; /* a reload in between added keys */
    }
    f->zap_refused = auth_refused(src->auth);
    f->dead_letters_created = subs_dead_letters_created(src->subs);
    f->connections_open = peers_open(src->peers);
    /* Every agency with a connection shows, with its counters at zero. */
    peers_each(src->peers, s_add_connected, self);
    s_proc_read(&f->proc);
    return 0;
journal_failed:
    log_limited(LOG_ERROR, "metrics", "metrics.read", "event=render_failed error=\"%s\"", journal_strerror(rc));
    return -1;
}

static uint64_t s_lag(const s_figures_t *f, const subs_info_t *info)
{
    return f->last_seq > info->cursor ? f->last_seq - info->cursor : 0;
}

/* ---- Prometheus text format 0.0.4 ------------------------------------------- */

typedef struct {
    char *data;
    size_t len, cap;
    bool failed;
    bool comma;  /* JSON only: the next value needs a comma first */
    size_t hint; /* the size of the last such document: allocated at once */
} s_buf_t;

/* The writer is called some ten times per subscription and second, so it
 * copies bytes rather than going through printf. */
static void s_put(s_buf_t *b, const char *s, size_t n)
{
    if (b->failed)
        return;
    if (b->cap - b->len < n + 1) {
        size_t cap = b->cap ? b->cap : b->hint > 65536 ? b->hint : 65536;
        while (cap - b->len < n + 1)
            cap *= 2;
        char *grown = realloc(b->data, cap);
        if (!grown) {
            b->failed = true;
            return;
        }
        b->data = grown;
        b->cap = cap;
    }
    memcpy(b->data + b->len, s, n);
    b->len += n;
    b->data[b->len] = '\0';
}

static void s_puts(s_buf_t *b, const char *s)
{
    s_put(b, s, strlen(s));
}

static void s_put_u64(s_buf_t *b, uint64_t v)
{
    char digits[24];
    size_t i = sizeof digits;
    do {
        digits[--i] = (char)('0' + v % 10);
        v /= 10;
    } while (v);
    s_put(b, digits + i, sizeof digits - i);
}

static void s_family(s_buf_t *b, const char *name, const char *type, const char *help)
{
    s_puts(b, "# HELP ");
    s_puts(b, name);
    s_puts(b, " ");
    s_puts(b, help);
    s_puts(b, "\n# TYPE ");
    s_puts(b, name);
    s_puts(b, " ");
    s_puts(b, type);
    s_puts(b, "\n");
}

/* A label value, escaped as the text format requires: \\, \" and \n. */
static void s_label_value(s_buf_t *b, const char *v)
{
    for (;;) {
        size_t run = strcspn(v, "\\\"\n");
        s_put(b, v, run);
        v += run;
        if (!*v)
            return;
        s_puts(b, *v == '\\' ? "\\\\" : *v == '"' ? "\\\"" : "\\n");
        v++;
    }
}

/* name{k1="v1",k2="v2"} for labels {k1, v1, k2, v2, NULL} (or NULL). */
static void s_series(s_buf_t *b, const char *name, const char *const *labels)
{
    s_puts(b, name);
    if (!labels || !labels[0])
        return;
    for (size_t i = 0; labels[i]; i += 2) {
        s_puts(b, i ? "," : "{");
        s_puts(b, labels[i]);
        s_puts(b, "=\"");
        s_label_value(b, labels[i + 1]);
        s_puts(b, "\"");
    }
    s_puts(b, "}");
}

static void s_sample_u(s_buf_t *b, const char *name, const char *const *labels, uint64_t v)
{
    s_series(b, name, labels);
    s_puts(b, " ");
    s_put_u64(b, v);
    s_puts(b, "\n");
}

static void s_sample_d(s_buf_t *b, const char *name, const char *const *labels, double v)
{
    char text[40];
    s_series(b, name, labels);
    int n = snprintf(text, sizeof text, " %.10g\n", v);
    s_put(b, text, n > 0 ? (size_t)n : 0);
}

/* One unlabelled gauge or counter, with its HELP and TYPE. */
static void s_single_u(s_buf_t *b, const char *name, const char *type, const char *help, uint64_t v)
{
    s_family(b, name, type, help);
    s_sample_u(b, name, NULL, v);
}

static void s_single_d(s_buf_t *b, const char *name, const char *type, const char *help, double v)
{
    s_family(b, name, type, help);
    s_sample_d(b, name, NULL, v);
}

/* scale: the recorded unit per shown unit (1e6 for µs shown as seconds). */
static void s_histogram(s_buf_t *b, const char *name, const char *help, const s_hist_t *h, double scale)
{
    char series[128];
    s_family(b, name, "histogram", help);
    snprintf(series, sizeof series, "%s_bucket", name);
    uint64_t cum = 0;
    for (size_t i = 0; i < h->n_bounds; i++) {
        cum += h->buckets[i];
        const char *le[] = {"le", h->bounds[i].le, NULL};
        s_sample_u(b, series, le, cum);
    }
    const char *inf[] = {"le", "+Inf", NULL};
    s_sample_u(b, series, inf, h->count);
    snprintf(series, sizeof series, "%s_sum", name);
    s_sample_d(b, series, NULL, (double)h->sum / scale);
    snprintf(series, sizeof series, "%s_count", name);
    s_sample_u(b, series, NULL, h->count);
}

/* The counters of a sender without identity hold refusals only. */
static bool s_identified(const s_agency_t *a)
{
    return strcmp(a->name, NO_AGENCY) != 0;
}

static void s_prom_events(s_buf_t *b, const metrics_t *self, const peers_t *peers)
{
    s_family(b, "civibus_events_accepted_total", "counter", "Events written to the log, by source agency.");
    for (size_t i = 0; i < self->n_agencies; i++) {
        const char *l[] = {"agency", self->agencies[i].name, NULL};
        if (s_identified(&self->agencies[i]))
            s_sample_u(b, "civibus_events_accepted_total", l, self->agencies[i].accepted);
    }
    s_family(b, "civibus_events_duplicate_total", "counter",
             "Retried events recognised as duplicates and answered with their original seq, by source agency.");
    for (size_t i = 0; i < self->n_agencies; i++) {
        const char *l[] = {"agency", self->agencies[i].name, NULL};
        if (s_identified(&self->agencies[i]))
            s_sample_u(b, "civibus_events_duplicate_total", l, self->agencies[i].duplicates);
    }
    s_family(b, "civibus_events_refused_total", "counter",
             "Events and requests refused with an error code, by sender agency and code.");
    for (size_t i = 0; i < self->n_agencies; i++) {
        for (int c = 0; c < CODES; c++) {
            if (!self->agencies[i].refused[c])
                continue;
            const char *l[] = {"agency", self->agencies[i].name, "reason",
                               codec_error_name((Civibus__V1__ErrorCode)c), NULL};
            s_sample_u(b, "civibus_events_refused_total", l, self->agencies[i].refused[c]);
        }
    }
    s_family(b, "civibus_adapters_connected", "gauge",
             "Open connections of each agency (counted from their first message).");
    for (size_t i = 0; i < self->n_agencies; i++) {
        const char *l[] = {"agency", self->agencies[i].name, NULL};
        if (s_identified(&self->agencies[i]))
            s_sample_u(b, "civibus_adapters_connected", l, peers_count(peers, self->agencies[i].name));
    }
}

static void s_quota_sample(void *arg, const quota_agency_t *a)
{
    for (int c = 0; c < QUOTA_CEILINGS; c++) {
        if (!a->refused[c])
            continue;
        const char *l[] = {"agency", a->agency, "ceiling", quota_ceiling_name((quota_ceiling_t)c), NULL};
        s_sample_u(arg, "civibus_quota_refused_total", l, a->refused[c]);
    }
}

static void s_prom_quota(s_buf_t *b, const quota_t *quota)
{
    s_family(b, "civibus_quota_refused_total", "counter",
             "Refusals (unavailable) by a per-agency ceiling: connections, subscriptions, publish_rate, "
             "publish_bytes.");
    quota_foreach(quota, s_quota_sample, b);
}

static void s_prom_subs(s_buf_t *b, const metrics_t *self, const s_figures_t *f)
{
    static const struct {
        const char *name, *type, *help;
    } fam[] = {
        {"civibus_subscription_lag_events", "gauge", "Events in the log after the subscription's cursor."},
        {"civibus_subscription_inflight_events", "gauge", "Events sent to the subscription and not acknowledged."},
        {"civibus_subscription_redeliveries_total", "counter", "Events sent to the subscription again."},
        {"civibus_subscription_dead_letters", "gauge", "Events of the subscription set aside as undeliverable."},
        {"civibus_subscription_behind_retention", "gauge",
         "1 when the subscription's cursor points before the oldest entry kept."},
    };
    for (size_t k = 0; k < sizeof fam / sizeof fam[0]; k++) {
        s_family(b, fam[k].name, fam[k].type, fam[k].help);
        for (size_t i = 0; i < self->n_subs; i++) {
            const subs_info_t *s = &self->subs[i].info;
            const char *l[] = {"agency", s->agency, "subscription", s->name, NULL};
            uint64_t v = k == 0   ? s_lag(f, s)
                         : k == 1 ? s->in_flight
                         : k == 2 ? s->redeliveries
                         : k == 3 ? s->dead_letters
                                  : (uint64_t)s->behind_retention;
            s_sample_u(b, fam[k].name, l, v);
        }
    }
}

static void s_prom_process(s_buf_t *b, const s_proc_t *p)
{
    if (!p->ok)
        return;
    s_single_u(b, "process_resident_memory_bytes", "gauge", "Resident memory size in bytes.", p->rss);
    s_single_u(b, "process_virtual_memory_bytes", "gauge", "Virtual memory size in bytes.", p->vsize);
    s_single_u(b, "process_open_fds", "gauge", "Open file descriptors.", p->fds);
    if (p->max_fds)
        s_single_u(b, "process_max_fds", "gauge", "Maximum number of open file descriptors.", p->max_fds);
    s_single_d(b, "process_cpu_seconds_total", "counter", "User and system CPU time spent in seconds.", p->cpu_s);
    s_single_d(b, "process_start_time_seconds", "gauge", "Start time of the process since the Unix epoch in seconds.",
               p->start_time);
}

static int s_prometheus(metrics_t *self, const metrics_sources_t *src, const s_figures_t *f, metrics_report_t *out)
{
    s_buf_t b = {.hint = self->prometheus_hint + self->prometheus_hint / 8};
    const char *version[] = {"version", CIVIBUS_VERSION, NULL};
    s_family(&b, "civibus_build_info", "gauge", "The hub's version; always 1.");
    s_sample_u(&b, "civibus_build_info", version, 1);
    s_single_d(&b, "civibus_start_time_seconds", "gauge", "When the hub started, seconds since the Unix epoch.",
               (double)src->started_at_us / 1e6);
    s_prom_events(&b, self, src->peers);
    s_prom_quota(&b, src->quota);
    s_single_u(&b, "civibus_connections_open", "gauge",
               "Open connections on the hub's socket, including those that have not sent a message yet.",
               f->connections_open);
    s_histogram(&b, "civibus_publish_ack_latency_seconds",
                "Time from the receipt of a Publish to its reply being sent.", &self->ack_latency, 1e6);
    s_histogram(&b, "civibus_commit_latency_seconds", "Time one commit of a batch took, fsync included.",
                &self->commit_latency, 1e6);
    s_histogram(&b, "civibus_commit_batch_events", "Events per commit.", &self->batch_events, 1);
    s_single_u(&b, "civibus_log_first_seq", "gauge", "Sequence number of the first entry of the log (0: empty).",
               f->first_seq);
    s_single_u(&b, "civibus_log_last_seq", "gauge", "Sequence number of the last entry of the log (0: empty).",
               f->last_seq);
    s_single_u(&b, "civibus_log_entries", "gauge", "Entries in the log.", f->js.entries);
    s_single_u(&b, "civibus_log_bytes", "gauge", "Bytes of the pages holding the log's entries.", f->js.log_bytes);
    s_single_u(&b, "civibus_map_used_bytes", "gauge", "Bytes of the LMDB map in use.", f->js.used_bytes);
    s_single_u(&b, "civibus_map_size_bytes", "gauge", "Current size of the LMDB map.", f->js.map_size);
    s_single_u(&b, "civibus_map_max_bytes", "gauge", "The storage ceiling (map_size_max).", f->js.map_max);
    s_single_u(&b, "civibus_storage_full", "gauge", "1 while publishes are refused with storage_full.",
               self->storage_full);
    s_single_u(&b, "civibus_retention_deleted_total", "counter",
               "Entries removed from the front of the log (first_seq - 1).", f->first_seq ? f->first_seq - 1 : 0);
    if (f->js.first_time)
        s_single_d(&b, "civibus_retention_oldest_timestamp_seconds", "gauge",
                   "When the oldest entry of the log was received, seconds since the Unix epoch.",
                   (double)f->js.first_time / 1e6);
    s_prom_subs(&b, self, f);
    s_single_u(&b, "civibus_dead_letters_created_total", "counter",
               "Events given up after max_attempts failed deliveries and stored as dead letters, in all "
               "subscriptions, since the hub started.",
               f->dead_letters_created);
    s_family(&b, "civibus_auth_failures_total", "counter",
             "Authentication failures: handshakes refused by the registry (zap_refused), handshakes that failed "
             "before it (handshake_failed), messages of keys revoked or expired since their handshake (key_refused).");
    const char *zap[] = {"kind", "zap_refused", NULL}, *hs[] = {"kind", "handshake_failed", NULL},
               *key[] = {"kind", "key_refused", NULL};
    s_sample_u(&b, "civibus_auth_failures_total", zap, f->zap_refused);
    s_sample_u(&b, "civibus_auth_failures_total", hs, self->auth_failures[METRICS_HANDSHAKE_FAILED]);
    s_sample_u(&b, "civibus_auth_failures_total", key, self->auth_failures[METRICS_KEY_REFUSED]);
    s_family(&b, "civibus_key_expiry_timestamp_seconds", "gauge",
             "Not-after of each valid registry key that has one, seconds since the Unix epoch.");
    for (size_t i = 0; i < f->n_keys; i++) {
        const auth_expiring_t *k = &f->keys[i];
        const char *l[] = {"agency", k->agency, "usage", strcmp(k->kind, "key") == 0 ? "curve" : "sign",
                           "key", k->key, NULL};
        s_sample_u(&b, "civibus_key_expiry_timestamp_seconds", l, (uint64_t)k->not_after);
    }
    s_single_u(&b, "civibus_checkpoint_last_seq", "gauge", "Sequence number the last signed checkpoint covers.",
               f->checkpoint_seq);
    if (f->checkpoint_time)
        s_single_d(&b, "civibus_checkpoint_last_timestamp_seconds", "gauge",
                   "When the last signed checkpoint was made, seconds since the Unix epoch.",
                   (double)f->checkpoint_time / 1e6);
    s_single_u(&b, "civibus_http_requests_refused_total", "counter",
               "Requests to the monitoring endpoint answered 404 (unknown path) or 405 (not GET or HEAD).",
               src->http_refused);
    s_prom_process(&b, &f->proc);
    if (b.failed) {
        free(b.data);
        return -1;
    }
    out->prometheus = b.data;
    out->prometheus_len = b.len;
    self->prometheus_hint = b.len;
    return 0;
}

/* ---- /api/status ---------------------------------------------------------------- */

/* JSON is written with the same writer, for the same reason. b->comma says
 * whether the next value or field needs a comma before it. */
static void s_jsep(s_buf_t *b)
{
    if (b->comma)
        s_puts(b, ",");
    b->comma = true;
}

static void s_jfield(s_buf_t *b, const char *name)
{
    s_jsep(b);
    s_puts(b, "\"");
    s_puts(b, name);
    s_puts(b, "\":");
    b->comma = false;
}

static void s_jopen(s_buf_t *b, const char *bracket)
{
    s_jsep(b);
    s_puts(b, bracket);
    b->comma = false;
}

static void s_jclose(s_buf_t *b, const char *bracket)
{
    s_puts(b, bracket);
    b->comma = true;
}

/* A string, escaped; bytes of s that are not valid UTF-8 become '?', so
 * that a reason quoting odd input still shows. */
static void s_jstr(s_buf_t *b, const char *s)
{
    bool utf8 = codec_utf8_valid(s);
    s_jsep(b);
    s_puts(b, "\"");
    for (const unsigned char *p = (const unsigned char *)s; *p; p++) {
        size_t run = 0;
        while (p[run] >= 0x20 && p[run] != '"' && p[run] != '\\' && (utf8 || p[run] < 0x80))
            run++;
        s_put(b, (const char *)p, run);
        p += run;
        if (!*p)
            break;
        char esc[8];
        if (*p == '"' || *p == '\\')
            snprintf(esc, sizeof esc, "\\%c", *p);
        else if (*p < 0x20)
            snprintf(esc, sizeof esc, "\\u%04x", *p);
        else
            snprintf(esc, sizeof esc, "?");
        s_puts(b, esc);
    }
    s_puts(b, "\"");
}

static void s_jint(s_buf_t *b, int64_t v)
{
    s_jsep(b);
    if (v < 0) {
        s_puts(b, "-");
        s_put_u64(b, (uint64_t)0 - (uint64_t)v);
    } else {
        s_put_u64(b, (uint64_t)v);
    }
}

static void s_jbool(s_buf_t *b, bool v)
{
    s_jsep(b);
    s_puts(b, v ? "true" : "false");
}

static void s_jnull(s_buf_t *b)
{
    s_jsep(b);
    s_puts(b, "null");
}

/* A finite number, to six significant digits. */
static void s_jnum(s_buf_t *b, double v)
{
    char text[32];
    s_jsep(b);
    int n = snprintf(text, sizeof text, "%.6g", isfinite(v) ? v : 0.0);
    s_put(b, text, n > 0 ? (size_t)n : 0);
}

static void s_steps(s_buf_t *b, const metrics_t *self, const char *name, size_t which)
{
    s_jfield(b, name);
    s_jopen(b, "[");
    size_t first = (self->next_step + METRICS_STEPS - self->n_steps) % METRICS_STEPS;
    for (size_t i = 0; i < self->n_steps; i++) {
        const s_step_t *s = &self->steps[(first + i) % METRICS_STEPS];
        s_jnum(b, which == 0 ? s->accepted : which == 1 ? s->delivered : s->refused);
    }
    s_jclose(b, "]");
}

/* Open a warning object with its common fields; the caller adds its own
 * and closes it. */
static void s_warn(s_buf_t *b, int64_t time, const char *kind, const char *fmt, ...)
    __attribute__((format(printf, 4, 5)));
static void s_warn(s_buf_t *b, int64_t time, const char *kind, const char *fmt, ...)
{
    char msg[400];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(msg, sizeof msg, fmt, ap);
    va_end(ap);
    s_jopen(b, "{");
    s_jfield(b, "time");
    s_jint(b, time);
    s_jfield(b, "kind");
    s_jstr(b, kind);
    s_jfield(b, "message");
    s_jstr(b, msg);
}

static void s_warnings(s_buf_t *b, const metrics_t *self, const metrics_sources_t *src, const s_figures_t *f)
{
    s_jfield(b, "warnings");
    s_jopen(b, "[");
    if (self->storage_full) {
        s_warn(b, self->storage_full_since, "storage_full",
               "the log is at its storage ceiling (map_size_max %" PRIu64 " bytes) or the disk is full: publishes "
               "are refused with storage_full",
               f->js.map_max);
        s_jclose(b, "}");
    }
    uint64_t warn_days = src->cfg->key_expiry_warn_days;
    for (size_t i = 0; warn_days && i < f->n_keys; i++) {
        const auth_expiring_t *k = &f->keys[i];
        if (k->not_after - f->now >= (int64_t)warn_days * DAY_S)
            break; /* soonest first */
        char when[KEYFILE_TIME_LEN];
        keyfile_time_format(k->not_after, when, sizeof when);
        s_warn(b, f->now, "key_expiring",
               "%s %.8s of %s expires at %s (in %" PRId64 " days); rotate it: civibus registry rotate", k->kind,
               k->key, k->agency, when, (k->not_after - f->now) / DAY_S);
        s_jfield(b, "agency");
        s_jstr(b, k->agency);
        s_jfield(b, "key");
        s_jstr(b, k->key);
        s_jfield(b, "not_after");
        s_jint(b, k->not_after);
        s_jclose(b, "}");
    }
    uint64_t lag_warn = src->cfg->subscription_lag_warn;
    for (size_t i = 0; lag_warn && i < self->n_subs; i++) {
        const subs_info_t *s = &self->subs[i].info;
        uint64_t lag = s_lag(f, s);
        if (lag < lag_warn)
            continue;
        s_warn(b, f->now, "subscription_behind", "subscription %s of %s is %" PRIu64 " events behind the log (%s)",
               s->name, s->agency, lag, s->connected ? "connected" : "not connected");
        s_jfield(b, "agency");
        s_jstr(b, s->agency);
        s_jfield(b, "subscription");
        s_jstr(b, s->name);
        s_jfield(b, "lag");
        s_jint(b, (int64_t)lag);
        s_jclose(b, "}");
    }
    if (self->subs_truncated) {
        s_warn(b, f->now, "subscriptions_truncated", "only the first %d subscriptions are reported",
               METRICS_SUBS_MAX);
        s_jclose(b, "}");
    }
    s_jclose(b, "]");
}

static void s_agencies_json(s_buf_t *b, const metrics_t *self, const peers_t *peers)
{
    s_jfield(b, "agencies");
    s_jopen(b, "[");
    for (size_t i = 0; i < self->n_agencies; i++) {
        const s_agency_t *a = &self->agencies[i];
        s_jopen(b, "{");
        s_jfield(b, "agency");
        s_jstr(b, a->name);
        s_jfield(b, "connections");
        s_jint(b, (int64_t)peers_count(peers, a->name));
        s_jfield(b, "accepted");
        s_jint(b, (int64_t)a->accepted);
        s_jfield(b, "duplicates");
        s_jint(b, (int64_t)a->duplicates);
        s_jfield(b, "refused");
        s_jint(b, (int64_t)a->refused_total);
        s_jclose(b, "}");
    }
    s_jclose(b, "]");
}

static void s_subs_json(s_buf_t *b, const metrics_t *self, const s_figures_t *f)
{
    s_jfield(b, "subscriptions");
    s_jopen(b, "[");
    for (size_t i = 0; i < self->n_subs; i++) {
        const subs_info_t *s = &self->subs[i].info;
        s_jopen(b, "{");
        s_jfield(b, "agency");
        s_jstr(b, s->agency);
        s_jfield(b, "name");
        s_jstr(b, s->name);
        s_jfield(b, "connected");
        s_jbool(b, s->connected);
        s_jfield(b, "cursor");
        s_jint(b, (int64_t)s->cursor);
        s_jfield(b, "lag");
        s_jint(b, (int64_t)s_lag(f, s));
        s_jfield(b, "in_flight");
        s_jint(b, (int64_t)s->in_flight);
        s_jfield(b, "credit");
        s_jint(b, s->credit);
        s_jfield(b, "redeliveries");
        s_jint(b, (int64_t)s->redeliveries);
        s_jfield(b, "dead_letters");
        s_jint(b, (int64_t)s->dead_letters);
        s_jfield(b, "behind_retention");
        s_jbool(b, s->behind_retention);
        s_jclose(b, "}");
    }
    s_jclose(b, "]");
}

static void s_refusals_json(s_buf_t *b, const metrics_t *self)
{
    s_jfield(b, "refusals");
    s_jopen(b, "[");
    size_t first = (self->next_refusal + METRICS_REFUSALS - self->n_refusals) % METRICS_REFUSALS;
    for (size_t i = 0; i < self->n_refusals; i++) {
        const s_refusal_t *r = &self->refusals[(first + i) % METRICS_REFUSALS];
        s_jopen(b, "{");
        s_jfield(b, "time");
        s_jint(b, r->time);
        s_jfield(b, "agency");
        s_jstr(b, r->agency);
        s_jfield(b, "code");
        s_jstr(b, codec_error_name((Civibus__V1__ErrorCode)r->code));
        s_jfield(b, "reason");
        s_jstr(b, r->reason);
        s_jclose(b, "}");
    }
    s_jclose(b, "]");
}

/* A field holding a time in µs as Unix seconds, or null when there is none. */
static void s_jtime(s_buf_t *b, const char *name, int64_t us)
{
    s_jfield(b, name);
    if (us)
        s_jint(b, us / 1000000);
    else
        s_jnull(b);
}

static void s_log_json(s_buf_t *b, const s_figures_t *f)
{
    s_jfield(b, "log");
    s_jopen(b, "{");
    static const char *const names[] = {"first_seq", "last_seq", "entries", "bytes", "map_used_bytes",
                                        "map_size_bytes", "map_max_bytes", "checkpoint_seq"};
    const uint64_t values[] = {f->first_seq,     f->last_seq,     f->js.entries, f->js.log_bytes,
                               f->js.used_bytes, f->js.map_size, f->js.map_max, f->checkpoint_seq};
    for (size_t i = 0; i < sizeof names / sizeof names[0]; i++) {
        s_jfield(b, names[i]);
        s_jint(b, (int64_t)values[i]);
    }
    s_jtime(b, "oldest_time", f->js.first_time);
    s_jtime(b, "checkpoint_time", f->checkpoint_time);
    s_jclose(b, "}");
}

static int s_status(metrics_t *self, const metrics_sources_t *src, const s_figures_t *f, metrics_report_t *out)
{
    s_buf_t b = {.hint = self->status_hint + self->status_hint / 8};
    int64_t started = src->started_at_us / 1000000;
    s_jopen(&b, "{");
    s_jfield(&b, "version");
    s_jstr(&b, CIVIBUS_VERSION);
    s_jfield(&b, "instance");
    s_jstr(&b, src->instance);
    s_jfield(&b, "time");
    s_jint(&b, f->now);
    s_jfield(&b, "started_at");
    s_jint(&b, started);
    s_jfield(&b, "uptime_s");
    s_jint(&b, f->now - started);
    s_jfield(&b, "ready");
    s_jbool(&b, out->not_ready == NULL);
    if (out->not_ready) {
        s_jfield(&b, "not_ready");
        s_jstr(&b, out->not_ready);
    }
    s_jfield(&b, "storage_full");
    s_jbool(&b, self->storage_full);
    s_jfield(&b, "connections_open");
    s_jint(&b, (int64_t)f->connections_open);
    s_log_json(&b, f);
    s_jfield(&b, "totals");
    s_jopen(&b, "{");
    s_jfield(&b, "accepted");
    s_jint(&b, (int64_t)self->accepted);
    s_jfield(&b, "duplicates");
    s_jint(&b, (int64_t)self->duplicates);
    s_jfield(&b, "refused");
    s_jint(&b, (int64_t)self->refused);
    s_jfield(&b, "delivered");
    s_jint(&b, (int64_t)self->delivered);
    s_jfield(&b, "auth_failures");
    s_jint(&b, (int64_t)(f->zap_refused + self->auth_failures[METRICS_HANDSHAKE_FAILED] +
                         self->auth_failures[METRICS_KEY_REFUSED]));
    s_jfield(&b, "dead_letters_created");
    s_jint(&b, (int64_t)f->dead_letters_created);
    s_jclose(&b, "}");
    s_jfield(&b, "throughput");
    s_jopen(&b, "{");
    s_jfield(&b, "step_s");
    s_jint(&b, METRICS_STEP_S);
    s_steps(&b, self, "accepted", 0);
    s_steps(&b, self, "delivered", 1);
    s_steps(&b, self, "refused", 2);
    s_jclose(&b, "}");
    s_agencies_json(&b, self, src->peers);
    s_subs_json(&b, self, f);
    s_refusals_json(&b, self);
    s_warnings(&b, self, src, f);
    s_jclose(&b, "}");
    s_puts(&b, "\n");
    if (b.failed) {
        free(b.data);
        return -1;
    }
    out->status = b.data;
    out->status_len = b.len;
    self->status_hint = b.len;
    return 0;
}

/* ---- render -------------------------------------------------------------------- */

static void s_step(metrics_t *self, int64_t now_ms)
{
    if (self->step_start_ms == 0) {
        self->step_start_ms = now_ms;
        self->step_accepted = self->accepted;
        self->step_delivered = self->delivered;
        self->step_refused = self->refused;
        return;
    }
    int64_t took = now_ms - self->step_start_ms;
    if (took < METRICS_STEP_S * 1000)
        return;
    double secs = (double)took / 1000.0;
    s_step_t *s = &self->steps[self->next_step];
    s->accepted = (double)(self->accepted - self->step_accepted) / secs;
    s->delivered = (double)(self->delivered - self->step_delivered) / secs;
    s->refused = (double)(self->refused - self->step_refused) / secs;
    self->next_step = (self->next_step + 1) % METRICS_STEPS;
    if (self->n_steps < METRICS_STEPS)
        self->n_steps++;
    self->step_start_ms = 0;
    s_step(self, now_ms);
}

int metrics_render(metrics_t *self, const metrics_sources_t *src, int64_t now_ms, metrics_report_t *out)
{
    memset(out, 0, sizeof *out);
    s_step(self, now_ms);
    s_figures_t f;
    int rc = s_gather(self, src, &f);
    if (rc == 0) {
        out->not_ready = self->storage_full ? "storage_full" : auth_agencies(src->auth) == 0 ? "no_agency_keys" : NULL;
        rc = s_prometheus(self, src, &f, out);
    }
    if (rc == 0)
        rc = s_status(self, src, &f, out);
    free(f.keys);
    if (rc != 0)
        metrics_report_free(out);
    return rc;
}

void metrics_report_free(metrics_report_t *report)
{
    if (!report)
        return;
    free(report->prometheus);
    free(report->status);
    memset(report, 0, sizeof *report);
}
