/* test_http - hub/http.c alone: a real libmicrohttpd server on a free port
 * of 127.0.0.1, driven through its API and queried over a plain socket.
 *
 * Covers what the integration test cannot reach from outside a hub: the
 * answers before anything was published ("starting"), documents replaced
 * by a later publish, the page hook at /, the "stopping" verdict, and
 * addresses that must be refused.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include <arpa/inet.h>
#include <netinet/in.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/time.h>
#include <unistd.h>

#include "http.h"

/* Send "METHOD path HTTP/1.0" to address and read the whole answer (the
 * server closes after it) into buf. Returns the status code. */
static int s_request(const char *address, const char *method, const char *path, char *buf, size_t len)
{
    const char *colon = strrchr(address, ':');
    assert_non_null(colon);
    struct sockaddr_in sa = {.sin_family = AF_INET, .sin_port = htons((uint16_t)atoi(colon + 1))};
    assert_int_equal(inet_pton(AF_INET, "127.0.0.1", &sa.sin_addr), 1);
    int fd = socket(AF_INET, SOCK_STREAM, 0);
    assert_true(fd >= 0);
    struct timeval tv = {.tv_sec = 10, .tv_usec = 0};
    setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof tv);
    assert_int_equal(connect(fd, (struct sockaddr *)&sa, sizeof sa), 0);
    char req[256];
    int n = snprintf(req, sizeof req, "%s %s HTTP/1.0\r\nHost: %s\r\n\r\n", method, path, address);
    assert_int_equal(write(fd, req, (size_t)n), n);
    size_t have = 0;
    for (ssize_t got; have < len - 1 && (got = read(fd, buf + have, len - 1 - have)) > 0;)
        have += (size_t)got;
    buf[have] = '\0';
    close(fd);
    int status = 0;
    assert_int_equal(sscanf(buf, "HTTP/1.%*d %d", &status), 1);
    return status;
}

static const char *s_body(const char *answer)
{
    const char *b = strstr(answer, "\r\n\r\n");
    assert_non_null(b);
    return b + 4;
}

static char *s_dup(const char *s)
{
    char *d = strdup(s);
    assert_non_null(d);
    return d;
}

static void test_lifecycle(void **state)
{
    (void)state;
    http_t *h = http_new("127.0.0.1:0");
    assert_non_null(h);
    const char *addr = http_address(h);
    assert_true(strncmp(addr, "127.0.0.1:", 10) == 0);
    assert_true(atoi(addr + 10) > 0);
    static char ans[65536];

    /* Nothing published, no heartbeat yet. */
    assert_int_equal(s_request(addr, "GET", "/healthz", ans, sizeof ans), 503);
    assert_non_null(strstr(s_body(ans), "\"starting\""));
    assert_int_equal(s_request(addr, "GET", "/readyz", ans, sizeof ans), 503);
    assert_non_null(strstr(s_body(ans), "\"reason\":\"starting\""));
    assert_int_equal(s_request(addr, "GET", "/metrics", ans, sizeof ans), 503);

    /* A heartbeat and documents: served as published. */
    http_beat(h);
    char *m = s_dup("# HELP a_total x\n# TYPE a_total counter\na_total 1\n"), *st = s_dup("{\"v\":1}");
    http_publish(h, &m, strlen(m), &st, strlen(st), NULL);
    assert_null(m);
    assert_null(st);
    assert_int_equal(s_request(addr, "GET", "/healthz", ans, sizeof ans), 200);
    assert_non_null(strstr(s_body(ans), "\"status\":\"ok\""));
    assert_int_equal(s_request(addr, "GET", "/readyz", ans, sizeof ans), 200);
    assert_string_equal(s_body(ans), "{\"ready\":true}\n");
    assert_int_equal(s_request(addr, "GET", "/metrics", ans, sizeof ans), 200);
    assert_non_null(strstr(ans, "Content-Type: text/plain; version=0.0.4"));
    assert_string_equal(s_body(ans), "# HELP a_total x\n# TYPE a_total counter\na_total 1\n");
    assert_int_equal(s_request(addr, "GET", "/api/status", ans, sizeof ans), 200);
    assert_non_null(strstr(ans, "Content-Type: application/json"));
    assert_string_equal(s_body(ans), "{\"v\":1}");

    /* Replaced by the next publish, with a readiness reason. */
    m = s_dup("a_total 2\n");
    st = s_dup("{\"v\":2}");
    http_publish(h, &m, strlen(m), &st, strlen(st), "storage_full");
    assert_int_equal(s_request(addr, "GET", "/readyz", ans, sizeof ans), 503);
    assert_string_equal(s_body(ans), "{\"ready\":false,\"reason\":\"storage_full\"}\n");
    assert_int_equal(s_request(addr, "GET", "/api/status", ans, sizeof ans), 200);
    assert_string_equal(s_body(ans), "{\"v\":2}");
    assert_int_equal(s_request(addr, "GET", "/healthz", ans, sizeof ans), 200);

    /* The page hook, methods, unknown paths. */
    assert_int_equal(s_request(addr, "GET", "/", ans, sizeof ans), 200);
    assert_non_null(strstr(s_body(ans), "/api/status"));
    const char page[] = "<!doctype html><title>hub</title>";
    assert_int_equal(http_set_page(h, page, sizeof page - 1), 0);
    assert_int_equal(s_request(addr, "GET", "/", ans, sizeof ans), 200);
    assert_non_null(strstr(ans, "Content-Type: text/html"));
    assert_string_equal(s_body(ans), page);
    assert_int_equal(s_request(addr, "HEAD", "/", ans, sizeof ans), 200);
    assert_string_equal(s_body(ans), "");
    assert_int_equal(s_request(addr, "PUT", "/metrics", ans, sizeof ans), 405);
    assert_non_null(strstr(ans, "Allow: GET, HEAD"));
    assert_int_equal(s_request(addr, "GET", "/metrics/", ans, sizeof ans), 404);
    assert_int_equal(http_refused(h), 2);

    /* Stopping wins over whatever is published later. */
    http_stopping(h);
    m = s_dup("a_total 3\n");
    st = s_dup("{}");
    http_publish(h, &m, strlen(m), &st, strlen(st), NULL);
    assert_int_equal(s_request(addr, "GET", "/readyz", ans, sizeof ans), 503);
    assert_non_null(strstr(s_body(ans), "\"reason\":\"stopping\""));
    http_destroy(&h);
    assert_null(h);
    http_destroy(&h);
}

static void test_addresses(void **state)
{
    (void)state;
    static const char *const bad[] = {"", "127.0.0.1", "localhost:7401", "127.0.0.1:65536", "127.0.0.1:-1",
                                      "127.0.0.1:", "::1:7401", "[::1]7401", "[::1", "1.2.3.4.5:80", NULL};
    for (int i = 0; bad[i]; i++) {
        http_t *h = http_new(bad[i]);
        if (h)
            fail_msg("address '%s' was accepted", bad[i]);
    }
    /* A port in use. */
    http_t *a = http_new("127.0.0.1:0");
    assert_non_null(a);
    http_t *b = http_new(http_address(a));
    assert_null(b);
    http_destroy(&a);
    /* IPv6, where the machine has it. */
    http_t *v6 = http_new("[::1]:0");
    if (v6) {
        assert_true(strncmp(http_address(v6), "[::1]:", 6) == 0);
        http_destroy(&v6);
    }
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_lifecycle),
        cmocka_unit_test(test_addresses),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
