/* main - civibusd: parse the configuration, run the router until a signal.
 *
 * Signals are blocked before any thread starts (ZeroMQ's I/O threads, the
 * ZAP handler, the HTTP server) so that they are delivered to the main thread, whose
 * zmq_poll they interrupt; SIGTERM and SIGINT stop the hub cleanly, SIGHUP
 * re-reads the agency registry.
 */
#include <pthread.h>
#include <signal.h>
#include <stdio.h>
#include <string.h>

#include "config.h"
#include "http.h"
#include "log.h"
#include "page.h"
#include "router.h"

static volatile sig_atomic_t s_stop;
static volatile sig_atomic_t s_reload;

static void s_on_signal(int sig)
{
    if (sig == SIGHUP)
        s_reload = 1;
    else
        s_stop = 1;
}

int main(int argc, char **argv)
{
    config_t cfg;
    int rc = config_load(&cfg, argc, argv);
    if (rc == CONFIG_HELP)
        return 0;
    if (rc != CONFIG_OK)
        return 2;
    int level = log_level_parse(cfg.log_level);
    if (level < 0) {
        fprintf(stderr, "civibusd: log_level must be debug, info, warn or error\n");
        config_free(&cfg);
        return 2;
    }
    log_set_level((log_level_t)level);

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
    signal(SIGPIPE, SIG_IGN);

    router_t *router = router_new(&cfg);
    http_t *http = router && cfg.http[0] ? http_new(cfg.http) : NULL;
    pthread_sigmask(SIG_SETMASK, &old, NULL);
    if (!router || (cfg.http[0] && !http) ||
        (http && http_set_page(http, page_status_html, page_status_html_len) != 0)) {
        log_error("main", "event=start_failed");
        http_destroy(&http);
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
    http_destroy(&http);
    config_free(&cfg);
    log_info("main", "event=exit code=%d", rc == 0 ? 0 : 1);
    return rc == 0 ? 0 : 1;
}
