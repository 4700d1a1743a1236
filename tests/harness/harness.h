/* harness - start real civibusd processes for integration tests and benchmarks.
 *
 * A harness owns a temporary directory holding the hub's keys, an agency
 * registry, agency keys and the hub's data directory, and at most one running
 * civibusd (its PID is kept, and it is killed in harness_destroy whatever
 * happened). The hub listens on 127.0.0.1 on a port chosen at the first start
 * and reused at every restart, so clients reconnect to the same endpoint.
 * The daemon's binary is $CIVIBUSD, else build/civibusd. Its stderr goes to
 * DIR/hub.log; harness_dump_log prints it after a failure. Its monitoring
 * endpoint listens on 127.0.0.1 on a free port (harness_http), which
 * harness_http_get queries.
 */
#ifndef CIVIBUS_HARNESS_H
#define CIVIBUS_HARNESS_H

#include <stdbool.h>
#include <sys/types.h>

#include "civibus.h"

typedef struct harness harness_t;

/* Create the temporary directory and the hub's keys. NULL on error. */
harness_t *harness_new(void);
/* Stop the hub if it runs (SIGTERM, SIGKILL after 15 s), remove the
 * directory (unless $KEEP_TEST_DIRS). */
void harness_destroy(harness_t **self_p);

/* Generate keys for agency and add it to the registry; 0 on success. */
int harness_add_agency(harness_t *self, const char *agency);
/* Generate keys for agency WITHOUT registering them (an outsider's key). */
int harness_add_outsider(harness_t *self, const char *agency);

/* Start civibusd with the harness's settings, plus extra flags (NULL-ended
 * list, may be NULL), and wait up to 15 s for its ready line. 0 on success. */
int harness_start(harness_t *self, const char *const *extra_args);
/* SIGTERM and wait up to 15 s (then SIGKILL). Returns the exit status
 * (0..255), 128+signal if killed, -1 on error. */
int harness_stop(harness_t *self);
/* Send sig to the hub; 0 on success, -1 when none runs. */
int harness_signal(harness_t *self, int sig);
/* Wait up to timeout_ms for the hub to exit by itself, sending nothing.
 * Returns its exit status as harness_stop does, -2 when it still runs. */
int harness_wait(harness_t *self, int timeout_ms);
/* SIGKILL the hub and reap it. */
int harness_kill(harness_t *self);
bool harness_running(const harness_t *self);
pid_t harness_pid(const harness_t *self);

/* The hub's monitoring endpoint as the ready line gave it ("127.0.0.1:PORT",
 * a free port chosen at each start: the harness passes --http 127.0.0.1:0
 * before the test's own flags), or "" when the hub runs without one. */
const char *harness_http(const harness_t *self);
/* Send an HTTP request (method "GET", "HEAD", "POST", ...) for path to the
 * monitoring endpoint, waiting at most 10 s. On success (any HTTP status)
 * returns 0 with *status set and, when body is non-NULL, *body a
 * NUL-terminated malloc'd copy of the body (caller frees) of *len bytes.
 * -1 when no answer came (printed). */
int harness_http_request(const harness_t *self, const char *method, const char *path, long *status, char **body,
                         size_t *len);
/* harness_http_request with GET. */
int harness_http_get(const harness_t *self, const char *path, long *status, char **body, size_t *len);

const char *harness_dir(const harness_t *self);
const char *harness_data_dir(const harness_t *self);
/* The hub's agency registry folder. */
const char *harness_registry(const harness_t *self);
const char *harness_endpoint(const harness_t *self);
const char *harness_hub_pub(const harness_t *self);
/* The hub's signing public key (PEM), for civibus verify --hub-key; the hub
 * always runs with the matching signing_key. */
const char *harness_hub_sign_pub(const harness_t *self);
/* Path of agency's Ed25519 signing key (AGENCY-sign.key; its public half is
 * in the registry entry as a "sign" line for registered agencies). Valid
 * until the next call in this thread. */
const char *harness_sign_key(harness_t *self, const char *agency);
/* Path of agency's secret key file (valid while the harness lives). */
const char *harness_key(harness_t *self, const char *agency);

/* A connected SDK client for agency (timeout_ms 0: 5000). NULL on error
 * (printed). */
civ_client_t *harness_client(harness_t *self, const char *agency, int timeout_ms);

/* Print the hub's log to stderr (for a failing test). */
void harness_dump_log(const harness_t *self);

/* Run cmd (a shell command) and return its exit status; for tests that use
 * the CLI. */
int harness_sh(const char *cmd);

#endif
