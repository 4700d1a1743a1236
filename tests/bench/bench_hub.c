/* bench_hub - civibus benchmarks: throughput, latency, fan-out, replay, disk.
 *
 * usage: bench_hub [--runs N] [--quick] [--no-sync] [--publish-only]
 * Starts real civibusd processes (durable unless said otherwise) through the
 * test harness and drives them with the SDK from threads of this process.
 * Every figure is the median of --runs runs (default 3), measured in the same
 * process as the baseline: a bare ZeroMQ CURVE DEALER->ROUTER echo with a
 * window of 256 messages, so the hub's publish rate is also given as a ratio
 * of what the transport alone achieves on this machine, now.
 * --publish-only runs just the unsigned and signed publish throughput on
 * one hub, each run measuring one right after the other so that both see
 * about the same share of the machine (the figures of docs/SIGNING.md).
 */
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>
#include <zmq.h>

#include "codec.h"
#include "harness.h"
#include "keyfile.h"

#define PAYLOAD 256
#define MAX_RUNS 9

static int s_runs = 3;
static int s_quick = 0;
static int s_nosync = 0; /* --no-sync: publish figures without fsync, to see its share */
static int s_publish_only = 0; /* --publish-only: unsigned vs signed publish throughput only */

static int s_cmp_double(const void *a, const void *b)
{
    double x = *(const double *)a, y = *(const double *)b;
    return x < y ? -1 : x > y;
}

static double s_median(double *v, int n)
{
    qsort(v, (size_t)n, sizeof *v, s_cmp_double);
    return n % 2 ? v[n / 2] : (v[n / 2 - 1] + v[n / 2]) / 2;
}

static double s_now(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

static void s_die(const char *what)
{
    fprintf(stderr, "bench: %s\n", what);
    exit(1);
}

/* ---- baseline: bare CURVE DEALER -> ROUTER echo ---------------------- */

typedef struct {
    void *ctx;
    char endpoint[128];
    char server_secret[41];
    volatile int ready;
    volatile int stop;
} s_echo_t;

static void *s_echo_server(void *arg)
{
    s_echo_t *e = arg;
    void *r = zmq_socket(e->ctx, ZMQ_ROUTER);
    int one = 1, timeout = 100, linger = 0;
    zmq_setsockopt(r, ZMQ_LINGER, &linger, sizeof linger);
    zmq_setsockopt(r, ZMQ_CURVE_SERVER, &one, sizeof one);
    zmq_setsockopt(r, ZMQ_CURVE_SECRETKEY, e->server_secret, 40);
    zmq_setsockopt(r, ZMQ_RCVTIMEO, &timeout, sizeof timeout);
    if (zmq_bind(r, "tcp://127.0.0.1:*") != 0)
        s_die("echo bind");
    size_t len = sizeof e->endpoint;
    zmq_getsockopt(r, ZMQ_LAST_ENDPOINT, e->endpoint, &len);
    __atomic_store_n(&e->ready, 1, __ATOMIC_RELEASE);
    while (!e->stop) {
        zmq_msg_t id, body;
        zmq_msg_init(&id);
        zmq_msg_init(&body);
        if (zmq_msg_recv(&id, r, 0) < 0 || zmq_msg_recv(&body, r, 0) < 0) {
            zmq_msg_close(&id);
            zmq_msg_close(&body);
            continue;
        }
        zmq_msg_send(&id, r, ZMQ_SNDMORE);
        zmq_msg_send(&body, r, 0);
    }
    zmq_close(r);
    return NULL;
}

static double s_baseline_once(int seconds)
{
    char spub[41], ssec[41], cpub[41], csec[41];
    zmq_curve_keypair(spub, ssec);
    zmq_curve_keypair(cpub, csec);
    s_echo_t e = {.ctx = zmq_ctx_new()};
    memcpy(e.server_secret, ssec, 41);
    pthread_t t;
    pthread_create(&t, NULL, s_echo_server, &e);
    while (!__atomic_load_n(&e.ready, __ATOMIC_ACQUIRE))
        usleep(1000);
    void *d = zmq_socket(e.ctx, ZMQ_DEALER);
    zmq_setsockopt(d, ZMQ_CURVE_SERVERKEY, spub, 40);
    zmq_setsockopt(d, ZMQ_CURVE_PUBLICKEY, cpub, 40);
    zmq_setsockopt(d, ZMQ_CURVE_SECRETKEY, csec, 40);
    zmq_connect(d, e.endpoint);
    char payload[PAYLOAD];
    memset(payload, 'x', sizeof payload);
    const int window = 256;
    for (int i = 0; i < window; i++)
        zmq_send(d, payload, sizeof payload, 0);
    uint64_t done = 0;
    double start = s_now(), end = start + seconds;
    char buf[PAYLOAD];
    while (s_now() < end) {
        if (zmq_recv(d, buf, sizeof buf, 0) < 0)
            s_die("echo recv");
        done++;
        zmq_send(d, payload, sizeof payload, 0);
    }
    double rate = (double)done / (s_now() - start);
    e.stop = 1;
    int linger = 0;
    zmq_setsockopt(d, ZMQ_LINGER, &linger, sizeof linger);
    zmq_close(d);
    pthread_join(t, NULL);
    zmq_ctx_term(e.ctx);
    return rate;
}

/* ---- publish throughput -------------------------------------------------- */

typedef struct {
    harness_t *h;
    const char *agency;
    double seconds;
    bool sign; /* sign every batch with the agency's key (docs/SIGNING.md) */
    uint64_t acked;
    int failed;
    char why[CIV_REASON_MAX + 64]; /* what failed */
} s_pub_t;

/* A refusal is a failure: every event the bench sends is valid. */
static void s_count_ack(s_pub_t *p, const civ_ack_t *ack)
{
    if (ack->error == CIV_OK) {
        p->acked++;
    } else if (!p->failed) {
        p->failed = 4;
        snprintf(p->why, sizeof p->why, "event refused: %s", ack->reason);
    }
}

static void *s_publisher(void *arg)
{
    s_pub_t *p = arg;
    civ_client_t *c = NULL;
    civ_error_t err = {.code = 0};
    if (p->sign) {
        char sign_key[1200];
        snprintf(sign_key, sizeof sign_key, "%s", harness_sign_key(p->h, p->agency));
        civ_options_t o = {.endpoint = harness_endpoint(p->h),
                           .hub_key_file = harness_hub_pub(p->h),
                           .key_file = harness_key(p->h, p->agency),
                           .timeout_ms = 10000,
                           .sign_key_file = sign_key};
        c = civ_client_new(&o, &err);
    } else {
        c = harness_client(p->h, p->agency, 10000);
    }
    if (!c) {
        p->failed = 1;
        snprintf(p->why, sizeof p->why, "cannot create a client: %s", err.message[0] ? err.message : "see the log");
        return NULL;
    }
    char payload[PAYLOAD];
    memset(payload, 'p', sizeof payload);
    civ_event_t ev = {.type = "bench.event", .subject = "bench", .payload = payload, .payload_len = PAYLOAD};
    double end = s_now() + p->seconds;
    civ_ack_t ack;
    uint64_t token;
    while (s_now() < end) {
        if (civ_publish_send(c, &ev, &token) != CIV_OK) {
            p->failed = 2;
            snprintf(p->why, sizeof p->why, "publish: %s", civ_client_error(c));
            break;
        }
        while (civ_publish_recv(c, &ack, 0) == CIV_OK)
            s_count_ack(p, &ack);
    }
    while (civ_publish_pending(c) > 0) {
        if (civ_publish_recv(c, &ack, 10000) != CIV_OK) {
            p->failed = 3;
            snprintf(p->why, sizeof p->why, "waiting for acks: %s", civ_client_error(c));
            break;
        }
        s_count_ack(p, &ack);
    }
    civ_client_destroy(&c);
    return NULL;
}

static const char *s_agencies[] = {"agency-a", "agency-b", "agency-c", "agency-d", "agency-e"};

/* CPU seconds (user + system) used so far by the hub process, or -1. */
static double s_hub_cpu(const harness_t *h)
{
    char path[64], buf[1024];
    snprintf(path, sizeof path, "/proc/%d/stat", (int)harness_pid(h));
    FILE *f = fopen(path, "r");
    if (!f)
        return -1;
    size_t n = fread(buf, 1, sizeof buf - 1, f);
    fclose(f);
    buf[n] = '\0';
    /* Fields 14 and 15 (utime, stime, in clock ticks) follow the command
     * name in parentheses, which may itself hold spaces. */
    const char *p = strrchr(buf, ')');
    unsigned long utime, stime;
    if (!p || sscanf(p + 1, " %*c %*d %*d %*d %*d %*d %*u %*u %*u %*u %*u %lu %lu", &utime, &stime) != 2)
        return -1;
    return (double)(utime + stime) / (double)sysconf(_SC_CLK_TCK);
}

/* CPU seconds used so far by this process: the publishers and their
 * ZeroMQ threads while a throughput run is on. */
static double s_self_cpu(void)
{
    struct rusage ru;
    getrusage(RUSAGE_SELF, &ru);
    return (double)ru.ru_utime.tv_sec + (double)ru.ru_utime.tv_usec / 1e6 + (double)ru.ru_stime.tv_sec +
           (double)ru.ru_stime.tv_usec / 1e6;
}

/* CPU time per acked event of one run, in microseconds. */
typedef struct {
    double hub, publishers;
} s_cpu_t;

static double s_throughput_once(harness_t *h, int publishers, double seconds, bool sign, s_cpu_t *cpu)
{
    pthread_t t[8];
    s_pub_t p[8];
    double hub0 = s_hub_cpu(h), self0 = s_self_cpu();
    double start = s_now();
    for (int i = 0; i < publishers; i++) {
        p[i] = (s_pub_t){.h = h, .agency = s_agencies[i], .seconds = seconds, .sign = sign};
        pthread_create(&t[i], NULL, s_publisher, &p[i]);
    }
    uint64_t total = 0;
    bool failed = false;
    for (int i = 0; i < publishers; i++) {
        pthread_join(t[i], NULL);
        if (p[i].failed)
            fprintf(stderr, "bench: publisher %s failed: %s\n", p[i].agency, p[i].why);
        failed |= p[i].failed != 0;
        total += p[i].acked;
    }
    if (failed) {
        harness_dump_log(h);
        harness_destroy(&h); /* stops the hub: none is left behind */
        exit(1);
    }
    double rate = (double)total / (s_now() - start);
    if (cpu && total) {
        double hub1 = s_hub_cpu(h);
        cpu->hub = hub0 < 0 || hub1 < 0 ? -1 : (hub1 - hub0) * 1e6 / (double)total; /* -1: unknown */
        cpu->publishers = (s_self_cpu() - self0) * 1e6 / (double)total;
    }
    return rate;
}

/* ---- latency at a steady rate ------------------------------------------- */

static void s_latency_once(harness_t *h, int rate, double seconds, double *p50, double *p99)
{
    civ_client_t *c = harness_client(h, s_agencies[0], 10000);
    if (!c)
        s_die("client");
    size_t n = (size_t)(rate * seconds);
    double *sent = calloc(n + 1, sizeof *sent), *lat = calloc(n + 1, sizeof *lat);
    char payload[PAYLOAD];
    memset(payload, 'l', sizeof payload);
    civ_event_t ev = {.type = "bench.latency", .payload = payload, .payload_len = PAYLOAD};
    double interval = 1.0 / rate, start = s_now();
    size_t next = 0, got = 0;
    civ_ack_t ack;
    while (got < n) {
        double now = s_now();
        if (next < n && now >= start + (double)next * interval) {
            uint64_t token;
            if (civ_publish_send(c, &ev, &token) != CIV_OK || civ_publish_flush(c) != CIV_OK)
                s_die("latency publish");
            sent[token] = s_now();
            next++;
            continue;
        }
        double wait = next < n ? start + (double)next * interval - now : 1.0;
        int ms = (int)(wait * 1000);
        if (ms == 0 && wait > 0) {
            /* Sleep through sub-millisecond gaps instead of spinning: the
             * hub shares this machine's cores with the benchmark. */
            struct timespec ts = {.tv_sec = 0, .tv_nsec = (long)(wait * 1e9)};
            nanosleep(&ts, NULL);
        }
        int wait_ms = ms > 0 ? ms : 0;
        while (civ_publish_pending(c) > 0 && civ_publish_recv(c, &ack, wait_ms) == CIV_OK) {
            if (ack.error != CIV_OK)
                s_die("latency nack");
            lat[got++] = (s_now() - sent[ack.token]) * 1000.0;
            wait_ms = 0; /* then take what else has arrived, without waiting */
        }
    }
    qsort(lat, n, sizeof *lat, s_cmp_double);
    *p50 = lat[n / 2];
    *p99 = lat[(size_t)((double)n * 0.99)];
    free(sent);
    free(lat);
    civ_client_destroy(&c);
}

/* ---- fan-out and replay -------------------------------------------------- */

typedef struct {
    harness_t *h;
    const char *agency;
    uint64_t want;
    uint64_t got;
} s_sub_t;

static void *s_subscriber(void *arg)
{
    s_sub_t *s = arg;
    civ_client_t *c = harness_client(s->h, s->agency, 10000);
    if (!c)
        return NULL;
    const char *filters[] = {"*"};
    char name[64];
    snprintf(name, sizeof name, "fan-%lld", (long long)codec_mono_ms());
    civ_start_t start = {.kind = CIV_START_FIRST};
    if (civ_subscribe(c, name, filters, 1, start, 4096) != CIV_OK)
        s_die("subscribe");
    civ_delivery_t *d;
    while (s->got < s->want) {
        if (civ_next(c, &d, 10000) != CIV_OK)
            s_die("fan-out stalled");
        s->got++;
        if (s->got % 1024 == 0)
            civ_ack(c, name, d->seq);
        civ_delivery_destroy(&d);
    }
    civ_client_destroy(&c);
    return NULL;
}

static double s_fanout_once(harness_t *h, int subscribers, uint64_t events)
{
    pthread_t t[8];
    s_sub_t s[8];
    double start = s_now();
    for (int i = 0; i < subscribers; i++) {
        s[i] = (s_sub_t){.h = h, .agency = s_agencies[i], .want = events};
        pthread_create(&t[i], NULL, s_subscriber, &s[i]);
    }
    for (int i = 0; i < subscribers; i++)
        pthread_join(t[i], NULL);
    return (double)events * subscribers / (s_now() - start);
}

static double s_replay_once(harness_t *h, uint64_t events)
{
    civ_client_t *c = harness_client(h, s_agencies[0], 10000);
    civ_error_t err;
    civ_start_t from = {.kind = CIV_START_FIRST};
    double start = s_now();
    civ_replay_t *r = civ_replay_open(c, from, events, &err);
    if (!r)
        s_die(err.message);
    civ_delivery_t *d;
    uint64_t n = 0;
    while (civ_replay_next(r, &d, 10000) == CIV_OK && d) {
        n++;
        civ_delivery_destroy(&d);
    }
    double rate = (double)n / (s_now() - start);
    if (n != events)
        s_die("replay returned fewer events than the log holds");
    civ_replay_destroy(&r);
    civ_client_destroy(&c);
    return rate;
}

static uint64_t s_fill(harness_t *h, uint64_t events)
{
    civ_client_t *c = harness_client(h, s_agencies[0], 10000);
    char payload[PAYLOAD];
    memset(payload, 'f', sizeof payload);
    civ_event_t ev = {.type = "bench.fill", .subject = "bench", .payload = payload, .payload_len = PAYLOAD};
    uint64_t token = 0;
    civ_ack_t ack;
    for (uint64_t i = 0; i < events; i++) {
        if (civ_publish_send(c, &ev, &token) != CIV_OK)
            s_die("fill");
        while (civ_publish_recv(c, &ack, 0) == CIV_OK)
            if (ack.error != CIV_OK)
                s_die("fill nack");
    }
    while (civ_publish_pending(c) > 0)
        if (civ_publish_recv(c, &ack, 10000) != CIV_OK || ack.error != CIV_OK)
            s_die("fill ack");
    civ_client_destroy(&c);
    return token;
}

static harness_t *s_hub(const char *const *args)
{
    harness_t *h = harness_new();
    if (!h)
        s_die("harness");
    for (int i = 0; i < 5; i++)
        harness_add_agency(h, s_agencies[i]);
    if (harness_start(h, args) != 0)
        s_die("hub start");
    return h;
}

static void s_row(const char *what, double *v, int n, const char *unit)
{
    printf("%-44s %12.0f %s   (runs:", what, s_median(v, n), unit);
    for (int i = 0; i < n; i++)
        printf(" %.0f", v[i]);
    printf(")\n");
    fflush(stdout);
}

/* Unsigned and signed publish, 4 publishers each, on the same hub. Each run
 * measures both back to back, so that a neighbour's load on this shared
 * machine falls on both alike; the ratio is of the two medians, and each
 * run's own ratio is printed to show the spread. t4 gets the unsigned runs. */
static void s_signed_vs_unsigned(harness_t *h, double secs, const char *mode, double *t4)
{
    double ts4[MAX_RUNS], ratio[MAX_RUNS], hub_u[MAX_RUNS], hub_s[MAX_RUNS], pub_u[MAX_RUNS], pub_s[MAX_RUNS];
    char label[96];
    for (int r = 0; r < s_runs; r++) {
        s_cpu_t cu = {0}, cs = {0};
        t4[r] = s_throughput_once(h, 4, secs, false, &cu);
        ts4[r] = s_throughput_once(h, 4, secs, true, &cs);
        ratio[r] = 100.0 * ts4[r] / t4[r];
        hub_u[r] = cu.hub;
        hub_s[r] = cs.hub;
        pub_u[r] = cu.publishers;
        pub_s[r] = cs.publishers;
    }
    snprintf(label, sizeof label, "%s publish, 4 publishers", mode);
    s_row(label, t4, s_runs, "acked events/s");
    snprintf(label, sizeof label, "signed %s publish, 4 publishers", mode);
    s_row(label, ts4, s_runs, "acked events/s");
    /* Each run's signed rate over its own unsigned one, which ran just
     * before it: the median of these is what the target is checked on, as
     * it leaves out most of the drift in a shared machine's load. */
    printf("%-44s %12.2f %% of unsigned (target >= 50 %%; per run:", "signed / unsigned, 4 publishers",
           s_median(ratio, s_runs));
    for (int r = 0; r < s_runs; r++)
        printf(" %.1f", ratio[r]);
    printf("; ratio of the medians %.1f)\n", 100.0 * s_median(ts4, s_runs) / s_median(t4, s_runs));
    /* CPU per event does not depend on what else runs on the machine the
     * way a rate does: it says what signing costs where. */
    double hu = s_median(hub_u, s_runs), hs = s_median(hub_s, s_runs);
    double pu = s_median(pub_u, s_runs), ps = s_median(pub_s, s_runs);
    printf("%-44s %12.2f us unsigned, %.2f us signed (hub %.2f / %.2f, publishers %.2f / %.2f)\n",
           "CPU per acked event, hub + publishers", hu + pu, hs + ps, hu, hs, pu, ps);
    fflush(stdout);
}

int main(int argc, char **argv)
{
    for (int i = 1; i < argc; i++) {
        if (strcmp(argv[i], "--runs") == 0 && i + 1 < argc)
            s_runs = atoi(argv[++i]);
        else if (strcmp(argv[i], "--quick") == 0)
            s_quick = 1;
        else if (strcmp(argv[i], "--no-sync") == 0)
            s_nosync = 1;
        else if (strcmp(argv[i], "--publish-only") == 0)
            s_publish_only = 1;
    }
    if (s_runs < 1 || s_runs > MAX_RUNS)
        s_runs = 3;
    double secs = s_quick ? 1.0 : 3.0;
    uint64_t replay_n = s_quick ? 100000 : 1000000;
    uint64_t fan_n = s_quick ? 50000 : 200000;
    double base[MAX_RUNS], t1[MAX_RUNS], t4[MAX_RUNS], p50[MAX_RUNS], p99[MAX_RUNS], fan[MAX_RUNS],
        rep[MAX_RUNS];
    const char *nosync_pub[] = {"--no-sync", NULL};
    const char *mode = s_nosync ? "NO-SYNC" : "durable";
    char label[96];

    printf("civibus benchmark: %d runs per figure, medians; payload %d bytes\n\n", s_runs, PAYLOAD);
    if (s_publish_only) {
        harness_t *h = s_hub(s_nosync ? nosync_pub : NULL);
        s_signed_vs_unsigned(h, secs, mode, t4);
        harness_destroy(&h);
        return 0;
    }
    for (int r = 0; r < s_runs; r++)
        base[r] = s_baseline_once((int)secs);
    s_row("baseline: bare CURVE DEALER->ROUTER echo, window 256", base, s_runs, "msg/s");

    /* Latency first, on a hub of its own: steady load on a quiet disk, not
     * the tail of the throughput runs' writeback and the discards that
     * follow deleting their logs. */
    harness_t *h = s_hub(s_nosync ? nosync_pub : NULL);
    for (int r = 0; r < s_runs; r++)
        s_latency_once(h, 5000, secs, &p50[r], &p99[r]);
    double m50 = s_median(p50, s_runs), m99 = s_median(p99, s_runs);
    printf("%-44s %12.3f ms   p99 %.3f ms (medians; p99 of runs:", "publish->ack latency at 5,000 events/s, p50",
           m50, m99);
    for (int r = 0; r < s_runs; r++)
        printf(" %.3f", p99[r]);
    printf(")\n");
    fflush(stdout);
    harness_destroy(&h);

    h = s_hub(s_nosync ? nosync_pub : NULL);
    for (int r = 0; r < s_runs; r++)
        t1[r] = s_throughput_once(h, 1, secs, false, NULL);
    snprintf(label, sizeof label, "%s publish, 1 publisher", mode);
    s_row(label, t1, s_runs, "acked events/s");
    s_signed_vs_unsigned(h, secs, mode, t4);
    double m_base = s_median(base, s_runs), m_t4 = s_median(t4, s_runs);
    snprintf(label, sizeof label, "%s publish 4 publishers / baseline", mode);
    printf("%-44s %12.2f x baseline\n", label, m_t4 / m_base);
    fflush(stdout);
    harness_destroy(&h);

    /* Reading benchmarks: a log filled fast (no fsync; reads do not care). */
    const char *nosync[] = {"--no-sync", "--map-size-initial", "1GiB", NULL};
    h = s_hub(nosync);
    uint64_t filled = s_fill(h, replay_n);
    for (int r = 0; r < s_runs; r++)
        fan[r] = s_fanout_once(h, 4, fan_n);
    s_row("fan-out to 4 subscribers", fan, s_runs, "deliveries/s");
    for (int r = 0; r < s_runs; r++)
        rep[r] = s_replay_once(h, filled);
    snprintf(label, sizeof label, "replay of a %llu-event log", (unsigned long long)filled);
    s_row(label, rep, s_runs, "events/s");
    harness_stop(h);
    char path[512];
    snprintf(path, sizeof path, "%s/data.mdb", harness_data_dir(h));
    struct stat st;
    if (stat(path, &st) == 0)
        printf("%-44s %12.0f bytes/event (file %lld bytes, %llu events of %d-byte payload)\n", "disk per event",
               (double)st.st_blocks * 512 / (double)filled, (long long)st.st_blocks * 512,
               (unsigned long long)filled, PAYLOAD);
    harness_destroy(&h);
    return 0;
}
