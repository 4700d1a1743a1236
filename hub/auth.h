/* auth - who may connect: the agency registry and the ZAP handler.
 *
 * The registry is a folder with one AGENCY.pub file per agency (see
 * proto/keyfile.h and certs/README.md for the format). Each CURVE public key
 * in it admits that agency while it is valid: not revoked (revoked_at <=
 * now) and not expired (now < not_after). Two valid keys of one agency at
 * once are a rotation overlap.
 *
 * The ZAP handler is a thread with a REP socket on inproc://zeromq.zap.01 of
 * the hub's ZeroMQ context. It answers every CURVE handshake: 200 with the
 * agency id as User-Id and the admitted key (Z85) as the metadata property
 * AUTH_KEY_PROPERTY for a valid key, 400 otherwise. libzmq attaches both to
 * every message of that connection (zmq_msg_gets), so identity comes from
 * the handshake and never from message content. auth_new binds the socket
 * before it returns, so a hub that could not start its handler refuses to
 * start at all.
 *
 * ZAP runs at the handshake only. A key revoked or expired later is caught
 * by auth_key_valid, which the router asks for every message. An agency at
 * its ceiling of live connections (auth_set_full) is refused at ZAP too.
 *
 * The registry snapshot is swapped under a lock, so auth_reload can run from
 * the main thread while the handler answers handshakes.
 */
#ifndef CIVIBUS_AUTH_H
#define CIVIBUS_AUTH_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

typedef struct auth auth_t;

/* The ZAP metadata property holding the key a connection was admitted with. */
#define AUTH_KEY_PROPERTY "X-Civibus-Key"

enum auth_err {
    AUTH_OK = 0,
    AUTH_REGISTRY = -1, /* the registry folder or an entry in it is invalid */
    AUTH_ZMQ = -2,      /* the ZAP socket or thread could not be started */
};

typedef enum {
    AUTH_KEY_VALID = 0,
    AUTH_KEY_EXPIRED,
    AUTH_KEY_REVOKED,
    AUTH_KEY_UNREGISTERED /* not in the registry, or under another agency */
} auth_key_status_t;

/* A valid key close to its not-after (auth_expiring). */
typedef struct {
    char agency[65];
    const char *kind;  /* "key" (CURVE) or "signing key" (Ed25519) */
    char key[41];      /* CURVE: Z85; signing: the key id in hex */
    int64_t not_after; /* Unix seconds */
} auth_expiring_t;

/* Load the registry from dir and start the ZAP handler on ctx. NULL on error
 * (logged). */
auth_t *auth_new(void *zmq_ctx, const char *registry_dir);
/* Stop the handler. Call after zmq_ctx_shutdown(ctx) so that the handler's
 * blocking receive returns; nulls *self_p. */
void auth_destroy(auth_t **self_p);

/* Re-read the registry. On error the old one stays in force. */
int auth_reload(auth_t *self);

/* Number of agencies in force. */
int auth_agencies(auth_t *self);

/* Handshakes refused since start. */
uint64_t auth_refused(auth_t *self);

/* Mark agency as holding its ceiling of live connections (full true) or not
 * any more (hub/quota.h): while it is full, the ZAP handler refuses its new
 * handshakes (400, logged as handshake_refused reason=connection_limit and
 * counted in auth_refused). Thread-safe. */
void auth_set_full(auth_t *self, const char *agency, bool full);

/* Status of key_z85 (40 characters of Z85) for agency in the registry in
 * force, at now (Unix seconds). A key registered under another agency is
 * AUTH_KEY_UNREGISTERED. A lock and a binary search: cheap enough for every
 * message. */
auth_key_status_t auth_key_status(auth_t *self, const char *agency, const char *key_z85, int64_t now);
/* auth_key_status(...) == AUTH_KEY_VALID at the current time. */
bool auth_key_valid(auth_t *self, const char *agency, const char *key_z85);
/* "valid", "expired", "revoked", "unregistered". */
const char *auth_key_status_name(auth_key_status_t status);

/* The signing public key (docs/SIGNING.md) of agency whose key id is
 * key_id (CRYPTO_KEYID_LEN bytes), and its status at now (Unix seconds):
 * AUTH_KEY_VALID, _EXPIRED or _REVOKED with the raw key copied into pub (32
 * bytes), or AUTH_KEY_UNREGISTERED (no such key of that agency; pub
 * untouched). A lock and a binary search. */
auth_key_status_t auth_sign_key(auth_t *self, const char *agency, const uint8_t *key_id, int64_t now,
                                uint8_t *pub);

/* The valid keys, CURVE and signing, whose not-after is before now + within
 * (seconds), of agency only, or of every agency when agency is NULL. Copies up to max of them
 * into out (ordered by not-after) and returns how many there are, which may
 * be more than max (call with max 0 to count). */
size_t auth_expiring(auth_t *self, const char *agency, int64_t now, int64_t within, auth_expiring_t *out,
                     size_t max);

#endif
