/* http - the hub's monitoring endpoint, served by libmicrohttpd.
 *
 * Paths (GET and HEAD only; anything else is 405, unknown paths 404, both
 * counted and logged):
 *   /metrics     Prometheus text format 0.0.4
 *   /healthz     200 while the router's loop has turned within the last
 *                HTTP_STALE_MS, else 503: the process is alive and not stuck
 *   /readyz      200 when the hub can take publishes: the loop turns, the
 *                log is writable (not storage_full), agency keys are
 *                loaded and the hub is not stopping; else 503 with
 *                {"ready":false,"reason":"..."}
 *   /api/status  the operator overview (JSON)
 *   /            the status page plugged in by http_set_page, else a short
 *                plain-text index of the paths above
 * docs/MONITORING.md describes each of them.
 *
 * The server runs on its own thread (MHD's internal polling thread) and
 * never touches the router's state. The router's thread renders the
 * documents (metrics.h) and hands them over with http_publish about once a
 * second, and marks every turn of its loop with http_beat; a request only
 * copies the latest documents under a mutex. Connections are bounded in
 * number, memory and time, so a misbehaving client cannot hold the hub up.
 */
#ifndef CIVIBUS_HTTP_H
#define CIVIBUS_HTTP_H

#include <stddef.h>
#include <stdint.h>

/* A loop that has not turned for this long is reported stalled. The loop
 * turns at least every 250 ms when idle; only a commit stuck on the disk, or
 * a hung hub, keeps it away this long. */
#define HTTP_STALE_MS 5000

typedef struct http http_t;

/* Listen on address "ADDR:PORT" or "[IPv6]:PORT" (numeric; port 0 picks a
 * free one) and start the server's thread. Call with the hub's signals
 * blocked, so that the thread inherits the mask. NULL on error (logged:
 * a malformed address, a port in use). */
http_t *http_new(const char *address);
/* Stop the server (waits for requests in progress); NULL-safe; nulls
 * *self_p. */
void http_destroy(http_t **self_p);

/* The address actually bound, "127.0.0.1:PORT" (the port chosen for 0),
 * valid while the server lives. */
const char *http_address(const http_t *self);

/* Requests answered 404 or 405 since start (civibus_http_requests_refused_total).
 * Lock-free; any thread. */
uint64_t http_refused(http_t *self);

/* The router's loop turned: /healthz and /readyz stay 200 for HTTP_STALE_MS
 * after this. Lock-free; any thread. */
void http_beat(http_t *self);

/* Serve these documents from now on: the Prometheus text and the status
 * JSON, whose buffers (malloc'd) http takes over; *metrics_p and *status_p
 * are nulled, success or failure. not_ready is NULL when the hub is ready,
 * else a reason that /readyz reports; it must be a static string. */
void http_publish(http_t *self, char **metrics_p, size_t metrics_len, char **status_p, size_t status_len,
                  const char *not_ready);

/* The hub is stopping: /readyz answers 503 "stopping" from now on, whatever
 * is published after. */
void http_stopping(http_t *self);

/* Serve html (copied) as the page at /. Returns 0, or -1 when out of memory
 * (the previous page stays). */
int http_set_page(http_t *self, const char *html, size_t len);

#endif
