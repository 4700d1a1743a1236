/* router - the hub's socket loop and message dispatch.
 *
 * Owns the ZeroMQ context, the CURVE ROUTER socket adapters connect to, and
 * the hub's parts (auth, journal, subs). One thread runs the loop:
 *   read a burst of messages -> validate publishes into a batch -> one
 *   journal commit (group commit: whatever arrived during the previous fsync
 *   forms the next batch) -> acks -> deliver to subscriptions.
 * Nothing is acknowledged before its commit returned. Every refusal gets a
 * coded answer to the sender and a (rate-limited) log line, and is counted.
 * What happens is also recorded in metrics.h, and about once a second the
 * loop renders the monitoring documents and hands them to http.h.
 */
#ifndef CIVIBUS_ROUTER_H
#define CIVIBUS_ROUTER_H

#include <signal.h>

#include "config.h"
#include "http.h"

typedef struct router router_t;

/* Open the journal, load the registry, start ZAP, bind the socket. NULL on
 * error (logged). cfg is borrowed and must outlive the router; a reload
 * updates its reloadable keys in place. */
router_t *router_new(config_t *cfg);
/* Close everything in order: socket, subscriptions (cursors saved), ZAP
 * handler, context, journal. NULL-safe; nulls *self_p. */
void router_destroy(router_t **self_p);

/* The endpoint actually bound (with the port chosen for "*"). */
const char *router_endpoint(const router_t *self);

/* Feed the monitoring endpoint (borrowed; it must outlive the router's
 * loop): the loop beats its heartbeat at every turn and hands it freshly
 * rendered documents every second, the first ones before this returns. */
void router_set_http(router_t *self, http_t *http);

/* Serve until *stop becomes non-zero; then drain: stop reading, commit and
 * ack what was already received, save cursors, write a checkpoint, log the
 * figures (event=draining, event=drained) and return 0. When *reload is
 * non-zero it is cleared and the config file (config_reload: the
 * reloadable keys are applied to the modules), the registry and the policy
 * are re-read. */
int router_run(router_t *self, volatile sig_atomic_t *stop, volatile sig_atomic_t *reload);

#endif
