/* auth - who may connect: the agency registry and the ZAP handler.
 *
 * The registry is a folder with one AGENCY.pub file per agency (see
 * proto/keyfile.h for the format; the file name must match its agency key).
 * Each CURVE public key in it admits that agency.
 *
 * The ZAP handler is a thread with a REP socket on inproc://zeromq.zap.01 of
 * the hub's ZeroMQ context. It answers every CURVE handshake: 200 with the
 * agency id as User-Id for a registered key, 400 otherwise. The router reads
 * that User-Id from each message, so identity comes from the handshake and
 * never from message content. auth_new binds the socket before it returns,
 * so a hub that could not start its handler refuses to start at all.
 *
 * The registry snapshot is swapped under a lock, so auth_reload can run from
 * the main thread while the handler answers handshakes.
 */
#ifndef CIVIBUS_AUTH_H
#define CIVIBUS_AUTH_H

#include <stdint.h>

typedef struct auth auth_t;

enum auth_err {
    AUTH_OK = 0,
    AUTH_REGISTRY = -1, /* the registry folder or an entry in it is invalid */
    AUTH_ZMQ = -2,      /* the ZAP socket or thread could not be started */
};

/* Load the registry from dir and start the ZAP handler on ctx. NULL on error
 * (logged). */
auth_t *auth_new(void *zmq_ctx, const char *registry_dir);
/* Stop the handler. Call after zmq_ctx_shutdown(ctx) so that the handler's
 * blocking receive returns; nulls *self_p. */
void auth_destroy(auth_t **self_p);

/* Re-read the registry. On error the old one stays in force. */
int auth_reload(auth_t *self);

/* Number of agencies and keys in force. */
int auth_agencies(auth_t *self);

/* Handshakes refused since start. */
uint64_t auth_refused(auth_t *self);

#endif
