/* http - the hub's monitoring endpoint, served by libmicrohttpd.
 *
 * What the router hands over (the two documents, the readiness verdict, the
 * page) lives under one mutex; a request copies what it needs into its
 * response while holding it (MHD_RESPMEM_MUST_COPY), so a document is never
 * freed under a response still being sent. The loop's heartbeat is one
 * atomic, so that /healthz can tell a stuck loop even if the router never
 * publishes again.
 */
#include "http.h"

#include <arpa/inet.h>
#include <inttypes.h>
#include <microhttpd.h>
#include <netinet/in.h>
#include <pthread.h>
#include <stdarg.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>

#include "codec.h"
#include "log.h"

/* Scrapers and operators, not the public: a few connections suffice, and a
 * client that stalls is dropped after CONN_TIMEOUT_S. */
#define CONN_LIMIT 32
#define CONN_TIMEOUT_S 10
#define CONN_MEMORY (32 * 1024) /* per connection: request line and headers */

#define TYPE_JSON "application/json"
#define TYPE_TEXT "text/plain; charset=utf-8"
#define TYPE_PROMETHEUS "text/plain; version=0.0.4; charset=utf-8"
#define TYPE_HTML "text/html; charset=utf-8"

static const char s_index[] = "civibusd monitoring endpoint\n"
                              "\n"
                              "/metrics     Prometheus metrics (text format 0.0.4)\n"
                              "/healthz     200 while the hub's loop turns\n"
                              "/readyz      200 while the hub accepts publishes\n"
                              "/api/status  the operator overview (JSON)\n";

struct http {
    struct MHD_Daemon *daemon;
    char address[80];
    atomic_int_fast64_t last_beat_ms; /* monotonic; 0: the loop never turned */
    atomic_uint_fast64_t refused;     /* requests answered 404 or 405 */
    pthread_mutex_t lock;             /* guards everything below */
    char *metrics;
    size_t metrics_len;
    char *status;
    size_t status_len;
    const char *not_ready;
    bool published; /* documents were handed over at least once */
    bool stopping;
    char *page;
    size_t page_len;
};

/* MHD's own diagnostics (a failed bind, a broken request) into our log. */
static void s_mhd_log(void *cls, const char *fmt, va_list ap)
{
    (void)cls;
    char msg[512], quoted[600];
    vsnprintf(msg, sizeof msg, fmt, ap);
    size_t n = strlen(msg);
    while (n && (msg[n - 1] == '\n' || msg[n - 1] == '\r'))
        msg[--n] = '\0';
    log_limited(LOG_WARN, "http", "http.server", "event=server_message message=%s",
                log_quote(msg, quoted, sizeof quoted));
}

static enum MHD_Result s_reply(struct MHD_Connection *conn, unsigned status, const char *type, const char *body,
                               size_t len)
{
    struct MHD_Response *r = MHD_create_response_from_buffer(len, (void *)body, MHD_RESPMEM_MUST_COPY);
    if (!r)
        return MHD_NO;
    enum MHD_Result ok = MHD_add_response_header(r, MHD_HTTP_HEADER_CONTENT_TYPE, type);
    if (ok == MHD_YES)
        ok = MHD_add_response_header(r, MHD_HTTP_HEADER_CACHE_CONTROL, "no-store");
    if (ok == MHD_YES && status == MHD_HTTP_METHOD_NOT_ALLOWED)
        ok = MHD_add_response_header(r, MHD_HTTP_HEADER_ALLOW, "GET, HEAD");
    if (ok == MHD_YES)
        ok = MHD_queue_response(conn, status, r);
    MHD_destroy_response(r);
    return ok;
}

static enum MHD_Result s_reply_text(struct MHD_Connection *conn, unsigned status, const char *type, const char *text)
{
    return s_reply(conn, status, type, text, strlen(text));
}

/* Milliseconds since the loop last turned; -1 when it never did. */
static int64_t s_loop_age(http_t *self)
{
    int64_t last = atomic_load(&self->last_beat_ms);
    return last ? codec_mono_ms() - last : -1;
}

static enum MHD_Result s_healthz(http_t *self, struct MHD_Connection *conn)
{
    char body[128];
    int64_t age = s_loop_age(self);
    if (age < 0) {
        snprintf(body, sizeof body, "{\"status\":\"starting\"}\n");
        return s_reply_text(conn, MHD_HTTP_SERVICE_UNAVAILABLE, TYPE_JSON, body);
    }
    bool ok = age < HTTP_STALE_MS;
    snprintf(body, sizeof body, "{\"status\":\"%s\",\"loop_age_ms\":%" PRId64 "}\n", ok ? "ok" : "stalled", age);
    return s_reply_text(conn, ok ? MHD_HTTP_OK : MHD_HTTP_SERVICE_UNAVAILABLE, TYPE_JSON, body);
}

static enum MHD_Result s_readyz(http_t *self, struct MHD_Connection *conn)
{
    int64_t age = s_loop_age(self);
    pthread_mutex_lock(&self->lock);
    const char *reason = self->stopping                   ? "stopping"
                         : !self->published || age < 0 ? "starting"
                         : age >= HTTP_STALE_MS        ? "loop_stalled"
                                                       : self->not_ready;
    pthread_mutex_unlock(&self->lock);
    char body[128];
    if (!reason)
        snprintf(body, sizeof body, "{\"ready\":true}\n");
    else
        snprintf(body, sizeof body, "{\"ready\":false,\"reason\":\"%s\"}\n", reason);
    return s_reply_text(conn, reason ? MHD_HTTP_SERVICE_UNAVAILABLE : MHD_HTTP_OK, TYPE_JSON, body);
}

/* One of the published documents, copied into the response under the lock. */
static enum MHD_Result s_document(http_t *self, struct MHD_Connection *conn, bool metrics)
{
    pthread_mutex_lock(&self->lock);
    const char *doc = metrics ? self->metrics : self->status;
    size_t len = metrics ? self->metrics_len : self->status_len;
    enum MHD_Result rc = doc ? s_reply(conn, MHD_HTTP_OK, metrics ? TYPE_PROMETHEUS : TYPE_JSON, doc, len)
                             : s_reply_text(conn, MHD_HTTP_SERVICE_UNAVAILABLE, TYPE_TEXT, "starting\n");
    pthread_mutex_unlock(&self->lock);
    return rc;
}

static enum MHD_Result s_root(http_t *self, struct MHD_Connection *conn)
{
    pthread_mutex_lock(&self->lock);
    enum MHD_Result rc = self->page ? s_reply(conn, MHD_HTTP_OK, TYPE_HTML, self->page, self->page_len)
                                    : s_reply(conn, MHD_HTTP_OK, TYPE_TEXT, s_index, sizeof s_index - 1);
    pthread_mutex_unlock(&self->lock);
    return rc;
}

/* A request for something that is not served: counted, and logged at most
 * ten times a second. */
static void s_refused(http_t *self, const char *method, const char *url, unsigned status)
{
    char m[64], u[200];
    atomic_fetch_add(&self->refused, 1);
    log_limited(LOG_INFO, "http", "http.refused", "event=request_refused method=%s path=%s status=%u",
                log_quote(method, m, sizeof m), log_quote(url, u, sizeof u), status);
}

static enum MHD_Result s_handle(void *cls, struct MHD_Connection *conn, const char *url, const char *method,
                                const char *version, const char *upload_data, size_t *upload_data_size,
                                void **req_cls)
{
    (void)version;
    (void)upload_data;
    (void)upload_data_size;
    (void)req_cls;
    http_t *self = cls;
    if (strcmp(method, MHD_HTTP_METHOD_GET) != 0 && strcmp(method, MHD_HTTP_METHOD_HEAD) != 0) {
        s_refused(self, method, url, MHD_HTTP_METHOD_NOT_ALLOWED);
        return s_reply_text(conn, MHD_HTTP_METHOD_NOT_ALLOWED, TYPE_TEXT, "only GET and HEAD\n");
    }
    if (strcmp(url, "/metrics") == 0)
        return s_document(self, conn, true);
    if (strcmp(url, "/api/status") == 0)
        return s_document(self, conn, false);
    if (strcmp(url, "/healthz") == 0)
        return s_healthz(self, conn);
    if (strcmp(url, "/readyz") == 0)
        return s_readyz(self, conn);
    if (strcmp(url, "/") == 0)
        return s_root(self, conn);
    s_refused(self, method, url, MHD_HTTP_NOT_FOUND);
    return s_reply_text(conn, MHD_HTTP_NOT_FOUND, TYPE_TEXT, "not found (see /)\n");
}

/* Parse "ADDR:PORT" or "[IPv6]:PORT" with a numeric address. */
static int s_parse(const char *address, struct sockaddr_storage *ss, bool *v6)
{
    char host[64];
    const char *port_text;
    if (address[0] == '[') {
        const char *end = strchr(address, ']');
        if (!end || end[1] != ':' || (size_t)(end - address - 1) >= sizeof host)
            return -1;
        memcpy(host, address + 1, (size_t)(end - address - 1));
        host[end - address - 1] = '\0';
        port_text = end + 2;
    } else {
        const char *colon = strchr(address, ':');
        if (!colon || colon != strrchr(address, ':') || (size_t)(colon - address) >= sizeof host)
            return -1; /* an IPv6 address goes in brackets */
        memcpy(host, address, (size_t)(colon - address));
        host[colon - address] = '\0';
        port_text = colon + 1;
    }
    char *end;
    unsigned long port = strtoul(port_text, &end, 10);
    if (!port_text[0] || *end || port > 65535 || port_text[0] == '-' || port_text[0] == '+')
        return -1;
    memset(ss, 0, sizeof *ss);
    struct sockaddr_in *in4 = (struct sockaddr_in *)ss;
    struct sockaddr_in6 *in6 = (struct sockaddr_in6 *)ss;
    if (inet_pton(AF_INET, host, &in4->sin_addr) == 1) {
        in4->sin_family = AF_INET;
        in4->sin_port = htons((uint16_t)port);
        *v6 = false;
        return 0;
    }
    if (inet_pton(AF_INET6, host, &in6->sin6_addr) == 1) {
        in6->sin6_family = AF_INET6;
        in6->sin6_port = htons((uint16_t)port);
        *v6 = true;
        return 0;
    }
    return -1;
}

http_t *http_new(const char *address)
{
    struct sockaddr_storage ss;
    bool v6 = false;
    char quoted[300];
    if (s_parse(address, &ss, &v6) != 0) {
        log_error("http", "event=address_invalid address=%s expected=ADDR:PORT",
                  log_quote(address, quoted, sizeof quoted));
        return NULL;
    }
    http_t *self = calloc(1, sizeof *self);
    if (!self)
        return NULL;
    atomic_init(&self->last_beat_ms, 0);
    atomic_init(&self->refused, 0);
    if (pthread_mutex_init(&self->lock, NULL) != 0) {
        free(self);
        return NULL;
    }
    unsigned flags = MHD_USE_INTERNAL_POLLING_THREAD | MHD_USE_AUTO | MHD_USE_ERROR_LOG | (v6 ? MHD_USE_IPv6 : 0);
    self->daemon = MHD_start_daemon(flags, 0, NULL, NULL, s_handle, self, MHD_OPTION_EXTERNAL_LOGGER, s_mhd_log,
                                    NULL, MHD_OPTION_SOCK_ADDR, (struct sockaddr *)&ss, MHD_OPTION_CONNECTION_LIMIT,
                                    (unsigned)CONN_LIMIT, MHD_OPTION_CONNECTION_TIMEOUT, (unsigned)CONN_TIMEOUT_S,
                                    MHD_OPTION_CONNECTION_MEMORY_LIMIT, (size_t)CONN_MEMORY, MHD_OPTION_END);
    if (!self->daemon) {
        log_error("http", "event=listen_failed address=%s", log_quote(address, quoted, sizeof quoted));
        goto fail;
    }
    const union MHD_DaemonInfo *info = MHD_get_daemon_info(self->daemon, MHD_DAEMON_INFO_BIND_PORT);
    if (!info || !info->port) {
        log_error("http", "event=listen_failed address=%s error=\"no bound port\"",
                  log_quote(address, quoted, sizeof quoted));
        goto fail;
    }
    char host[INET6_ADDRSTRLEN];
    if (v6)
        inet_ntop(AF_INET6, &((struct sockaddr_in6 *)&ss)->sin6_addr, host, sizeof host);
    else
        inet_ntop(AF_INET, &((struct sockaddr_in *)&ss)->sin_addr, host, sizeof host);
    snprintf(self->address, sizeof self->address, v6 ? "[%s]:%u" : "%s:%u", host, (unsigned)info->port);
    log_info("http", "event=listening address=%s", self->address);
    return self;
fail:
    http_destroy(&self);
    return NULL;
}

void http_destroy(http_t **self_p)
{
    http_t *self = self_p ? *self_p : NULL;
    if (!self)
        return;
    if (self->daemon)
        MHD_stop_daemon(self->daemon);
    pthread_mutex_destroy(&self->lock);
    free(self->metrics);
    free(self->status);
    free(self->page);
    free(self);
    *self_p = NULL;
}

const char *http_address(const http_t *self)
{
    return self->address;
}

uint64_t http_refused(http_t *self)
{
    return atomic_load(&self->refused);
}

void http_beat(http_t *self)
{
    atomic_store(&self->last_beat_ms, codec_mono_ms());
}

void http_publish(http_t *self, char **metrics_p, size_t metrics_len, char **status_p, size_t status_len,
                  const char *not_ready)
{
    char *metrics = *metrics_p, *status = *status_p;
    *metrics_p = NULL;
    *status_p = NULL;
    pthread_mutex_lock(&self->lock);
    char *old_metrics = self->metrics, *old_status = self->status;
    self->metrics = metrics;
    self->metrics_len = metrics_len;
    self->status = status;
    self->status_len = status_len;
    self->not_ready = not_ready;
    self->published = true;
    pthread_mutex_unlock(&self->lock);
    free(old_metrics);
    free(old_status);
}

void http_stopping(http_t *self)
{
    pthread_mutex_lock(&self->lock);
    self->stopping = true;
    pthread_mutex_unlock(&self->lock);
}

int http_set_page(http_t *self, const char *html, size_t len)
{
    char *copy = malloc(len ? len : 1);
    if (!copy)
        return -1;
    if (len)
        memcpy(copy, html, len);
    pthread_mutex_lock(&self->lock);
    char *old = self->page;
    self->page = copy;
    self->page_len = len;
    pthread_mutex_unlock(&self->lock);
    free(old);
    return 0;
}
