/* peers - the connections open on the hub's ROUTER socket, and whose they are.
 *
 * conns[] is indexed by file descriptor. An identified connection holds the
 * index of its agency in agencies[], where the open connections of each
 * agency are counted; agencies are never removed (their number is bounded
 * by the agencies the registry ever admitted), so those indexes stay valid.
 * A connection remembers a hash of its routing id rather than the id (up to
 * 255 bytes): it only serves to notice that a descriptor changed hands. It
 * keeps its key (Z85) for peers_release_invalid. Whatever ends a
 * connection's ownership (closed, descriptor reused, relabelled) also frees
 * its admitted place, in s_forget_owner alone.
 *
 * Handshakes: n_pending counts the open connections whose handshake is not
 * known to have completed, ok_unplaced the HANDSHAKE_SUCCEEDED events not
 * yet matched to one of them (the event names no descriptor). s_settle
 * marks them all completed once ok_unplaced reaches n_pending, and keeps
 * ok_unplaced at most n_pending, so a mismatch cannot outlive the moment no
 * connection is pending.
 */
#include "peers.h"

#include <arpa/inet.h>
#include <netinet/in.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>

#include "codec.h"
#include "keyfile.h"

typedef struct {
    bool open;
    bool identified;
    bool admitted;   /* holds one of its agency's places (peers_admit) */
    bool handshaken; /* its handshake is known to have completed */
    uint32_t agency; /* index into agencies[], when identified */
    uint64_t rid_hash;
    char key[KEYFILE_Z85_LEN + 1]; /* when identified; "" when unknown */
    char addr[PEERS_ADDR_MAX];     /* ip:port at ACCEPTED, "-" when unknown */
} s_conn_t;

typedef struct {
    char name[CODEC_AGENCY_MAX + 1];
    size_t open;
    size_t admitted;
} s_agency_t;

struct peers {
    s_conn_t *conns;
    size_t cap; /* entries of conns[] */
    size_t n_open;
    size_t n_pending;   /* open connections not known to have completed their handshake */
    size_t ok_unplaced; /* HANDSHAKE_SUCCEEDED events not matched to one of them */
    s_agency_t *agencies;
    size_t n_agencies, cap_agencies;
};

peers_t *peers_new(void)
{
    return calloc(1, sizeof(peers_t));
}

void peers_destroy(peers_t **self_p)
{
    peers_t *self = self_p ? *self_p : NULL;
    if (!self)
        return;
    free(self->conns);
    free(self->agencies);
    free(self);
    *self_p = NULL;
}

/* Make conns[fd] exist. -1 when out of memory (the connection is then not
 * tracked: the figures are only a view, and the hub serves on). */
static int s_reserve(peers_t *self, int fd)
{
    if ((size_t)fd < self->cap)
        return 0;
    size_t cap = self->cap ? self->cap : 64;
    while (cap <= (size_t)fd)
        cap *= 2;
    s_conn_t *grown = realloc(self->conns, cap * sizeof *grown);
    if (!grown)
        return -1;
    memset(grown + self->cap, 0, (cap - self->cap) * sizeof *grown);
    self->conns = grown;
    self->cap = cap;
    return 0;
}

static void s_forget_owner(peers_t *self, s_conn_t *c)
{
    if (c->identified)
        self->agencies[c->agency].open--;
    if (c->admitted)
        self->agencies[c->agency].admitted--;
    c->identified = false;
    c->admitted = false;
}

/* The peer of socket fd as ip:port ("[ip]:port" for IPv6), "-" when fd is
 * not a connected IP socket (closed, reused by a file, a Unix socket). */
static void s_peer_address(int fd, char addr[PEERS_ADDR_MAX])
{
    struct sockaddr_storage ss;
    socklen_t len = sizeof ss;
    char ip[INET6_ADDRSTRLEN];
    snprintf(addr, PEERS_ADDR_MAX, "-");
    if (getpeername(fd, (struct sockaddr *)&ss, &len) != 0)
        return;
    if (ss.ss_family == AF_INET) {
        const struct sockaddr_in *in = (const struct sockaddr_in *)&ss;
        if (inet_ntop(AF_INET, &in->sin_addr, ip, sizeof ip))
            snprintf(addr, PEERS_ADDR_MAX, "%s:%u", ip, (unsigned)ntohs(in->sin_port));
    } else if (ss.ss_family == AF_INET6) {
        const struct sockaddr_in6 *in6 = (const struct sockaddr_in6 *)&ss;
        if (inet_ntop(AF_INET6, &in6->sin6_addr, ip, sizeof ip))
            snprintf(addr, PEERS_ADDR_MAX, "[%s]:%u", ip, (unsigned)ntohs(in6->sin6_port));
    }
}

/* Mark every pending connection completed when the successes read account
 * for all of them; a scan, done only when that happens (once per handshake
 * at most). */
static void s_settle(peers_t *self)
{
    if (self->ok_unplaced > self->n_pending)
        self->ok_unplaced = self->n_pending;
    if (self->n_pending == 0 || self->ok_unplaced < self->n_pending)
        return;
    for (size_t fd = 0; fd < self->cap; fd++)
        if (self->conns[fd].open)
            self->conns[fd].handshaken = true;
    self->n_pending = 0;
    self->ok_unplaced = 0;
}

/* Connection c completed its handshake (its first message came). */
static void s_handshaken(peers_t *self, s_conn_t *c)
{
    if (c->handshaken)
        return;
    c->handshaken = true;
    self->n_pending--;
    if (self->ok_unplaced)
        self->ok_unplaced--;
    s_settle(self);
}

void peers_accepted(peers_t *self, int fd)
{
    if (fd < 0 || s_reserve(self, fd) != 0)
        return;
    s_conn_t *c = &self->conns[fd];
    s_forget_owner(self, c);
    if (!c->open)
        self->n_open++;
    else if (!c->handshaken)
        self->n_pending--;
    c->open = true;
    c->handshaken = false;
    self->n_pending++;
    s_peer_address(fd, c->addr);
}

void peers_handshake_ok(peers_t *self)
{
    self->ok_unplaced++;
    s_settle(self);
}

bool peers_handshaken(const peers_t *self, int fd)
{
    return fd >= 0 && (size_t)fd < self->cap && self->conns[fd].open && self->conns[fd].handshaken;
}

peers_closed_t peers_disconnected(peers_t *self, int fd, char addr[PEERS_ADDR_MAX])
{
    snprintf(addr, PEERS_ADDR_MAX, "-");
    if (fd < 0 || (size_t)fd >= self->cap || !self->conns[fd].open)
        return PEERS_CLOSED_UNKNOWN;
    s_conn_t *c = &self->conns[fd];
    snprintf(addr, PEERS_ADDR_MAX, "%s", c->addr);
    s_forget_owner(self, c);
    c->open = false;
    self->n_open--;
    if (c->handshaken)
        return PEERS_CLOSED;
    self->n_pending--;
    s_settle(self);
    return PEERS_CLOSED_EARLY;
}

static uint64_t s_hash(const wire_peer_t *peer)
{
    uint64_t h = 1469598103934665603ULL;
    for (size_t i = 0; i < peer->len; i++)
        h = (h ^ peer->id[i]) * 1099511628211ULL;
    return h;
}

/* Index of agency in agencies[], added when new; -1 when out of memory. */
static long s_agency_index(peers_t *self, const char *agency)
{
    for (size_t i = 0; i < self->n_agencies; i++)
        if (strcmp(self->agencies[i].name, agency) == 0)
            return (long)i;
    if (self->n_agencies == self->cap_agencies) {
        size_t cap = self->cap_agencies ? self->cap_agencies * 2 : 16;
        s_agency_t *grown = realloc(self->agencies, cap * sizeof *grown);
        if (!grown)
            return -1;
        self->agencies = grown;
        self->cap_agencies = cap;
    }
    s_agency_t *a = &self->agencies[self->n_agencies];
    memset(a, 0, sizeof *a);
    strncpy(a->name, agency, CODEC_AGENCY_MAX);
    return (long)self->n_agencies++;
}

bool peers_seen(peers_t *self, int fd, const wire_peer_t *peer, const char *agency, const char *key)
{
    if (fd < 0 || (size_t)fd >= self->cap || !self->conns[fd].open)
        return false;
    s_conn_t *c = &self->conns[fd];
    s_handshaken(self, c);
    uint64_t h = s_hash(peer);
    if (c->identified && c->rid_hash == h)
        return true;
    s_forget_owner(self, c);
    long idx = s_agency_index(self, agency);
    if (idx < 0)
        return true;
    c->identified = true;
    c->agency = (uint32_t)idx;
    c->rid_hash = h;
    snprintf(c->key, sizeof c->key, "%s", key ? key : "");
    self->agencies[idx].open++;
    return true;
}

size_t peers_open(const peers_t *self)
{
    return self->n_open;
}

size_t peers_count(const peers_t *self, const char *agency)
{
    for (size_t i = 0; i < self->n_agencies; i++)
        if (strcmp(self->agencies[i].name, agency) == 0)
            return self->agencies[i].open;
    return 0;
}

void peers_each(const peers_t *self, peers_fn fn, void *arg)
{
    for (size_t i = 0; i < self->n_agencies; i++)
        if (self->agencies[i].open)
            fn(self->agencies[i].name, self->agencies[i].open, arg);
}

peers_admit_t peers_admit(peers_t *self, int fd, size_t max, size_t *admitted)
{
    if (fd < 0 || (size_t)fd >= self->cap || !self->conns[fd].open || !self->conns[fd].identified)
        return PEERS_UNKNOWN;
    s_conn_t *c = &self->conns[fd];
    s_agency_t *a = &self->agencies[c->agency];
    if (!c->admitted) {
        if (a->admitted >= max)
            return PEERS_OVER;
        c->admitted = true;
        a->admitted++;
    }
    if (admitted)
        *admitted = a->admitted;
    return PEERS_ADMITTED;
}

size_t peers_admitted(const peers_t *self, const char *agency)
{
    for (size_t i = 0; i < self->n_agencies; i++)
        if (strcmp(self->agencies[i].name, agency) == 0)
            return self->agencies[i].admitted;
    return 0;
}

void peers_release_invalid(peers_t *self, peers_key_valid_fn valid, void *arg)
{
    for (size_t fd = 0; fd < self->cap; fd++) {
        s_conn_t *c = &self->conns[fd];
        if (c->admitted && !valid(arg, self->agencies[c->agency].name, c->key)) {
            c->admitted = false;
            self->agencies[c->agency].admitted--;
        }
    }
}
