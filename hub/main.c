/* main - civibusd: parse the configuration, run the router until a signal.
 *
 * Signals are blocked before any thread starts (ZeroMQ's I/O threads, the
 * ZAP handler, the HTTP server) so that they are delivered to the main thread, whose
 * zmq_poll they interrupt. SIGHUP asks the router to reload (config file,
 * registry, policy). The first SIGTERM or SIGINT asks it to drain and stop,
 * and arms a watchdog of drain_timeout_ms; a second one, or the watchdog,
 * ends the process at once with _exit. Both log their line with
 * log_write_signal_safe (one write(2), no stdio, no allocation). SIGALRM,
 * the watchdog's signal, is left unblocked in every thread, so that it is
 * taken even while the main thread waits in a system call.
 */
#include <pthread.h>
#include <signal.h>
#include <stdio.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "config.h"
#include "http.h"
#include "log.h"
#include "router.h"

/* Exit codes besides 0 (clean stop), 1 (start or loop failed) and 2 (bad
 * configuration). */
#define EXIT_SECOND_SIGNAL 3
#define EXIT_DRAIN_TIMEOUT 4

static volatile sig_atomic_t s_stop;
static volatile sig_atomic_t s_reload;
/* Set up before the handlers are installed, only read by them. */
static timer_t s_watchdog;
static volatile sig_atomic_t s_have_watchdog;
static struct itimerspec s_drain_after;
static char s_timeout_line[128];

static void s_on_signal(int sig)
{
    if (sig == SIGHUP) {
        s_reload = 1;
        return;
    }
    if (sig == SIGALRM) {
        log_write_signal_safe(LOG_ERROR, "main", s_timeout_line);
        _exit(EXIT_DRAIN_TIMEOUT);
    }
    if (s_stop) {
        log_write_signal_safe(LOG_WARN, "main",
                              sig == SIGINT ? "event=second_signal signal=SIGINT action=exit_now code=3"
                                            : "event=second_signal signal=SIGTERM action=exit_now code=3");
        _exit(EXIT_SECOND_SIGNAL);
    }
    s_stop = 1;
    if (s_have_watchdog)
        timer_settime(s_watchdog, 0, &s_drain_after, NULL);
}

/* The drain watchdog: a one-shot POSIX timer raising SIGALRM, armed by the
 * first stop signal. Without it the hub still stops, only unbounded. */
static void s_watchdog_init(const config_t *cfg)
{
    struct sigevent sev;
    memset(&sev, 0, sizeof sev);
    sev.sigev_notify = SIGEV_SIGNAL;
    sev.sigev_signo = SIGALRM;
    if (timer_create(CLOCK_MONOTONIC, &sev, &s_watchdog) != 0) {
        log_warn("main", "event=drain_watchdog_unavailable effect=\"a stop is not bounded by drain_timeout_ms\"");
        return;
    }
    s_drain_after.it_value.tv_sec = (time_t)(cfg->drain_timeout_ms / 1000);
    s_drain_after.it_value.tv_nsec = (long)(cfg->drain_timeout_ms % 1000) * 1000000L;
    snprintf(s_timeout_line, sizeof s_timeout_line, "event=drain_timeout timeout_ms=%llu action=exit_now code=%d",
             (unsigned long long)cfg->drain_timeout_ms, EXIT_DRAIN_TIMEOUT);
    s_have_watchdog = 1;
}

int main(int argc, char **argv)
{
    config_t cfg;
    int rc = config_load(&cfg, argc, argv);
    if (rc == CONFIG_HELP)
        return 0;
    if (rc != CONFIG_OK)
        return 2;
    /* Both are choices the config checked. */
    log_set_level((log_level_t)log_level_parse(cfg.log_level));
    log_set_format((log_format_t)log_format_parse(cfg.log_format));
    s_watchdog_init(&cfg);

    sigset_t set, old;
    sigemptyset(&set);
    sigaddset(&set, SIGTERM);
    sigaddset(&set, SIGINT);
    sigaddset(&set, SIGHUP);
    pthread_sigmask(SIG_BLOCK, &set, &old);
    struct sigaction sa;
    memset(&sa, 0, sizeof sa);
    sa.sa_handler = s_on_signal;
    sigemptyset(&sa.sa_mask);
    sigaction(SIGTERM, &sa, NULL);
    sigaction(SIGINT, &sa, NULL);
    sigaction(SIGHUP, &sa, NULL);
    sigaction(SIGALRM, &sa, NULL);
    signal(SIGPIPE, SIG_IGN);

    router_t *router = router_new(&cfg);
    http_t *http = router && cfg.http[0] ? http_new(cfg.http) : NULL;
    pthread_sigmask(SIG_SETMASK, &old, NULL);
    if (!router || (cfg.http[0] && !http)) {
        log_error("main", "event=start_failed");
        router_destroy(&router);
        config_free(&cfg);
        return 1;
    }
    router_set_http(router, http);
    printf("civibusd ready endpoint=%s%s%s\n", router_endpoint(router), http ? " http=" : "",
           http ? http_address(http) : "");
    fflush(stdout);
    rc = router_run(router, &s_stop, &s_reload);
    router_destroy(&router);
    if (s_have_watchdog) {
        s_have_watchdog = 0;
        timer_delete(s_watchdog);
    }
    http_destroy(&http);
    config_free(&cfg);
    log_info("main", "event=exit code=%d", rc == 0 ? 0 : 1);
    return rc == 0 ? 0 : 1;
}
