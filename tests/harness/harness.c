/* harness - start real civibusd processes for integration tests and benchmarks.
 *
 * The ready line is read from a pipe with poll(), so a hub that never gets
 * ready fails the test after a bounded wait instead of hanging it. HTTP
 * requests to the monitoring endpoint go through libcurl, with a timeout.
 */
#include "harness.h"

#include <curl/curl.h>
#include <errno.h>
#include <fcntl.h>
#include <poll.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "crypto.h"
#include "keyfile.h"

#define MAX_ARGS 64
#define MAX_KEYS 16

struct harness {
    char dir[256];
    char data[300];
    char registry[300];
    char keys[300];
    char hub_pub[320];
    char hub_key[320];
    char sign_key[320];
    char sign_pub[320];
    char log[300];
    char endpoint[128];
    char http[80]; /* the monitoring endpoint's ADDR:PORT, "" when off */
    char key_paths[MAX_KEYS][400];
    char key_names[MAX_KEYS][80];
    int n_keys;
    pid_t pid;
};

static void s_sleep_ms(int ms)
{
    struct timespec ts = {.tv_sec = ms / 1000, .tv_nsec = (long)(ms % 1000) * 1000000L};
    nanosleep(&ts, NULL);
}

harness_t *harness_new(void)
{
    harness_t *self = calloc(1, sizeof *self);
    if (!self)
        return NULL;
    snprintf(self->dir, sizeof self->dir, "/tmp/civibus-test-XXXXXX");
    if (!mkdtemp(self->dir)) {
        perror("harness: mkdtemp");
        free(self);
        return NULL;
    }
    snprintf(self->data, sizeof self->data, "%s/data", self->dir);
    snprintf(self->registry, sizeof self->registry, "%s/registry", self->dir);
    snprintf(self->keys, sizeof self->keys, "%s/keys", self->dir);
    snprintf(self->hub_pub, sizeof self->hub_pub, "%s/hub.pub", self->keys);
    snprintf(self->hub_key, sizeof self->hub_key, "%s/hub.key", self->keys);
    snprintf(self->sign_key, sizeof self->sign_key, "%s/hub-sign.key", self->keys);
    snprintf(self->sign_pub, sizeof self->sign_pub, "%s/hub-sign.pub", self->keys);
    snprintf(self->log, sizeof self->log, "%s/hub.log", self->dir);
    snprintf(self->endpoint, sizeof self->endpoint, "tcp://127.0.0.1:*");
    char err[512];
    if (mkdir(self->registry, 0700) != 0 || keyfile_generate(self->keys, "hub", NULL, err, sizeof err) != 0) {
        fprintf(stderr, "harness: set-up failed: %s\n", err);
        harness_destroy(&self);
        return NULL;
    }
    /* The hub signs checkpoints of its log in every test, as in production. */
    crypto_key_t *sign = crypto_key_generate();
    int rc = sign ? crypto_key_write_secret(sign, self->sign_key, err, sizeof err) : CRYPTO_INTERNAL;
    if (rc == CRYPTO_OK)
        rc = crypto_key_write_public(sign, self->sign_pub, err, sizeof err);
    crypto_key_destroy(&sign);
    if (rc != CRYPTO_OK) {
        fprintf(stderr, "harness: signing key: %s\n", crypto_strerror(rc));
        harness_destroy(&self);
        return NULL;
    }
    return self;
}

void harness_destroy(harness_t **self_p)
{
    harness_t *self = self_p ? *self_p : NULL;
    if (!self)
        return;
    if (self->pid > 0)
        harness_stop(self); /* SIGTERM, then SIGKILL after 15 s */
    if (!getenv("KEEP_TEST_DIRS")) {
        char cmd[400];
        snprintf(cmd, sizeof cmd, "rm -rf '%s'", self->dir);
        if (system(cmd) != 0)
            fprintf(stderr, "harness: could not remove %s\n", self->dir);
    }
    free(self);
    *self_p = NULL;
}

static int s_keygen(harness_t *self, const char *agency, bool registered)
{
    char err[512];
    if (self->n_keys == MAX_KEYS)
        return -1;
    if (keyfile_generate(self->keys, agency, agency, err, sizeof err) != 0) {
        fprintf(stderr, "harness: keygen %s: %s\n", agency, err);
        return -1;
    }
    /* Every agency also gets an Ed25519 signing key (docs/SIGNING.md). */
    char spath[1200];
    crypto_key_t *sign = crypto_key_generate();
    snprintf(spath, sizeof spath, "%s/%s-sign.key", self->keys, agency);
    int rc = sign ? crypto_key_write_secret(sign, spath, err, sizeof err) : CRYPTO_INTERNAL;
    uint8_t pub[CRYPTO_PUB_LEN];
    char hex[2 * CRYPTO_PUB_LEN + 1];
    if (rc == CRYPTO_OK) {
        crypto_key_public(sign, pub);
        crypto_hex(pub, sizeof pub, hex);
        snprintf(spath, sizeof spath, "%s/%s-sign.pub", self->keys, agency);
        rc = crypto_key_write_public(sign, spath, err, sizeof err);
    }
    crypto_key_destroy(&sign);
    if (rc != CRYPTO_OK) {
        fprintf(stderr, "harness: signing key of %s: %s\n", agency, crypto_strerror(rc));
        return -1;
    }
    snprintf(self->key_names[self->n_keys], sizeof self->key_names[0], "%s", agency);
    snprintf(self->key_paths[self->n_keys], sizeof self->key_paths[0], "%s/%s.key", self->keys, agency);
    self->n_keys++;
    if (!registered)
        return 0;
    char cmd[1400];
    snprintf(cmd, sizeof cmd, "cp '%s/%s.pub' '%s/%s.pub' && echo 'sign = %s' >> '%s/%s.pub'", self->keys, agency,
             self->registry, agency, hex, self->registry, agency);
    return system(cmd) == 0 ? 0 : -1;
}

int harness_add_agency(harness_t *self, const char *agency)
{
    return s_keygen(self, agency, true);
}

int harness_add_outsider(harness_t *self, const char *agency)
{
    return s_keygen(self, agency, false);
}

const char *harness_sign_key(harness_t *self, const char *agency)
{
    static __thread char path[1200];
    if (!harness_key(self, agency))
        return NULL;
    snprintf(path, sizeof path, "%s/%s-sign.key", self->keys, agency);
    return path;
}

const char *harness_key(harness_t *self, const char *agency)
{
    for (int i = 0; i < self->n_keys; i++)
        if (strcmp(self->key_names[i], agency) == 0)
            return self->key_paths[i];
    return NULL;
}

/* "civibusd ready endpoint=E [http=A]": fields separated by spaces. */
static int s_parse_ready(harness_t *self, char *line)
{
    self->endpoint[0] = '\0';
    self->http[0] = '\0';
    char *save = NULL;
    for (char *f = strtok_r(line, " ", &save); f; f = strtok_r(NULL, " ", &save)) {
        if (strncmp(f, "endpoint=", 9) == 0)
            snprintf(self->endpoint, sizeof self->endpoint, "%s", f + 9);
        else if (strncmp(f, "http=", 5) == 0)
            snprintf(self->http, sizeof self->http, "%s", f + 5);
    }
    if (!self->endpoint[0]) {
        fprintf(stderr, "harness: the ready line names no endpoint\n");
        return -1;
    }
    return 0;
}

int harness_start(harness_t *self, const char *const *extra_args)
{
    if (self->pid > 0)
        return -1;
    const char *bin = getenv("CIVIBUSD") ? getenv("CIVIBUSD") : "build/civibusd";
    const char *argv[MAX_ARGS];
    int n = 0;
    argv[n++] = bin;
    argv[n++] = "--data";
    argv[n++] = self->data;
    argv[n++] = "--listen";
    argv[n++] = self->endpoint;
    argv[n++] = "--registry";
    argv[n++] = self->registry;
    argv[n++] = "--key";
    argv[n++] = self->hub_key;
    argv[n++] = "--signing-key";
    argv[n++] = self->sign_key;
    /* A free port for every hub (tests run in parallel); a test may pass
     * its own --http, which wins as the later flag. */
    argv[n++] = "--http";
    argv[n++] = "127.0.0.1:0";
    for (int i = 0; extra_args && extra_args[i] && n < MAX_ARGS - 1; i++)
        argv[n++] = extra_args[i];
    argv[n] = NULL;

    int out[2];
    if (pipe(out) != 0)
        return -1;
    pid_t pid = fork();
    if (pid < 0) {
        close(out[0]);
        close(out[1]);
        return -1;
    }
    if (pid == 0) {
        int logfd = open(self->log, O_WRONLY | O_CREAT | O_APPEND, 0600);
        dup2(out[1], STDOUT_FILENO);
        if (logfd >= 0)
            dup2(logfd, STDERR_FILENO);
        close(out[0]);
        execv(bin, (char *const *)argv);
        fprintf(stderr, "harness: exec %s: %s\n", bin, strerror(errno));
        _exit(127);
    }
    close(out[1]);
    self->pid = pid;
    char buf[512];
    size_t have = 0;
    int waited = 0, rc = -1;
    while (waited < 15000 && have < sizeof buf - 1) {
        struct pollfd p = {.fd = out[0], .events = POLLIN};
        int r = poll(&p, 1, 100);
        waited += 100;
        if (r > 0) {
            ssize_t got = read(out[0], buf + have, sizeof buf - 1 - have);
            if (got <= 0)
                break;
            have += (size_t)got;
            buf[have] = '\0';
            char *line = strstr(buf, "civibusd ready ");
            char *nl = line ? strchr(line, '\n') : NULL;
            if (nl) {
                *nl = '\0';
                rc = s_parse_ready(self, line);
                break;
            }
        }
    }
    close(out[0]);
    if (rc != 0) {
        fprintf(stderr, "harness: civibusd did not get ready\n");
        harness_dump_log(self);
        harness_kill(self);
    }
    return rc;
}

static int s_reap(harness_t *self, int timeout_ms)
{
    int status;
    for (int waited = 0; waited <= timeout_ms; waited += 20) {
        pid_t r = waitpid(self->pid, &status, WNOHANG);
        if (r == self->pid) {
            self->pid = 0;
            if (WIFEXITED(status))
                return WEXITSTATUS(status);
            return 128 + WTERMSIG(status);
        }
        if (r < 0)
            return -1;
        s_sleep_ms(20);
    }
    return -2;
}

int harness_stop(harness_t *self)
{
    if (self->pid <= 0)
        return -1;
    kill(self->pid, SIGTERM);
    int rc = s_reap(self, 15000);
    if (rc == -2) {
        fprintf(stderr, "harness: civibusd ignored SIGTERM for 15 s; killing it\n");
        harness_kill(self);
        return -1;
    }
    return rc;
}

int harness_signal(harness_t *self, int sig)
{
    if (self->pid <= 0)
        return -1;
    return kill(self->pid, sig) == 0 ? 0 : -1;
}

int harness_wait(harness_t *self, int timeout_ms)
{
    if (self->pid <= 0)
        return -1;
    return s_reap(self, timeout_ms);
}

int harness_kill(harness_t *self)
{
    if (self->pid <= 0)
        return -1;
    kill(self->pid, SIGKILL);
    return s_reap(self, 15000);
}

bool harness_running(const harness_t *self)
{
    return self->pid > 0;
}

pid_t harness_pid(const harness_t *self)
{
    return self->pid;
}

const char *harness_dir(const harness_t *self)
{
    return self->dir;
}

const char *harness_data_dir(const harness_t *self)
{
    return self->data;
}

const char *harness_endpoint(const harness_t *self)
{
    return self->endpoint;
}

const char *harness_registry(const harness_t *self)
{
    return self->registry;
}

const char *harness_http(const harness_t *self)
{
    return self->http;
}

typedef struct {
    char *data;
    size_t len;
} s_body_t;

static size_t s_body_write(char *ptr, size_t size, size_t n, void *arg)
{
    s_body_t *b = arg;
    size_t add = size * n;
    char *grown = realloc(b->data, b->len + add + 1);
    if (!grown)
        return 0; /* curl then fails the transfer */
    memcpy(grown + b->len, ptr, add);
    b->len += add;
    grown[b->len] = '\0';
    b->data = grown;
    return add;
}

int harness_http_request(const harness_t *self, const char *method, const char *path, long *status, char **body,
                         size_t *len)
{
    *status = 0;
    if (body)
        *body = NULL;
    if (len)
        *len = 0;
    if (!self->http[0]) {
        fprintf(stderr, "harness: the hub has no HTTP endpoint\n");
        return -1;
    }
    char url[256];
    snprintf(url, sizeof url, "http://%s%s", self->http, path);
    CURL *curl = curl_easy_init();
    if (!curl)
        return -1;
    s_body_t b = {.data = NULL, .len = 0};
    curl_easy_setopt(curl, CURLOPT_URL, url);
    curl_easy_setopt(curl, CURLOPT_TIMEOUT_MS, 10000L);
    curl_easy_setopt(curl, CURLOPT_NOSIGNAL, 1L);
    curl_easy_setopt(curl, CURLOPT_WRITEFUNCTION, s_body_write);
    curl_easy_setopt(curl, CURLOPT_WRITEDATA, &b);
    if (strcmp(method, "HEAD") == 0)
        curl_easy_setopt(curl, CURLOPT_NOBODY, 1L);
    else if (strcmp(method, "GET") != 0)
        curl_easy_setopt(curl, CURLOPT_CUSTOMREQUEST, method);
    CURLcode rc = curl_easy_perform(curl);
    if (rc == CURLE_OK)
        curl_easy_getinfo(curl, CURLINFO_RESPONSE_CODE, status);
    else
        fprintf(stderr, "harness: %s %s: %s\n", method, url, curl_easy_strerror(rc));
    curl_easy_cleanup(curl);
    if (rc != CURLE_OK) {
        free(b.data);
        return -1;
    }
    if (!b.data)
        b.data = calloc(1, 1);
    if (body)
        *body = b.data;
    else
        free(b.data);
    if (len)
        *len = b.len;
    return 0;
}

int harness_http_get(const harness_t *self, const char *path, long *status, char **body, size_t *len)
{
    return harness_http_request(self, "GET", path, status, body, len);
}

const char *harness_hub_sign_pub(const harness_t *self)
{
    return self->sign_pub;
}

const char *harness_hub_pub(const harness_t *self)
{
    return self->hub_pub;
}

civ_client_t *harness_client(harness_t *self, const char *agency, int timeout_ms)
{
    civ_options_t o = {.endpoint = self->endpoint,
                       .hub_key_file = self->hub_pub,
                       .key_file = harness_key(self, agency),
                       .timeout_ms = timeout_ms};
    civ_error_t err;
    civ_client_t *c = civ_client_new(&o, &err);
    if (!c)
        fprintf(stderr, "harness: client %s: %s\n", agency, err.message);
    return c;
}

void harness_dump_log(const harness_t *self)
{
    FILE *f = fopen(self->log, "r");
    if (!f)
        return;
    char line[2048];
    fprintf(stderr, "---- %s ----\n", self->log);
    while (fgets(line, sizeof line, f))
        fputs(line, stderr);
    fclose(f);
}

int harness_sh(const char *cmd)
{
    int st = system(cmd);
    if (st == -1 || !WIFEXITED(st))
        return -1;
    return WEXITSTATUS(st);
}
