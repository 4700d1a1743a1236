/* test_config - the settings table: defaults, file, flags, bounds, sample. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <cmocka.h>

#include "config.h"

static int s_load(config_t *cfg, const char **args)
{
    const char *argv[32] = {"civibusd"};
    int argc = 1;
    while (args[argc - 1])
        argv[argc] = args[argc - 1], argc++;
    return config_load(cfg, argc, (char **)argv);
}

static char *s_write_file(const char *text)
{
    static char path[64];
    snprintf(path, sizeof path, "/tmp/civibus-config-XXXXXX");
    int fd = mkstemp(path);
    assert_true(fd >= 0);
    assert_int_equal(write(fd, text, strlen(text)), (ssize_t)strlen(text));
    close(fd);
    return path;
}

static void test_defaults_and_required(void **state)
{
    (void)state;
    config_t cfg;
    const char *missing[] = {"--data", "/tmp/d", NULL};
    assert_int_equal(s_load(&cfg, missing), CONFIG_INVALID);
    const char *ok[] = {"--data", "/tmp/d", "--registry", "/tmp/r", "--key", "/tmp/k", NULL};
    assert_int_equal(s_load(&cfg, ok), CONFIG_OK);
    assert_string_equal(cfg.listen, "tcp://127.0.0.1:7400");
    assert_true(cfg.sync);
    assert_int_equal(cfg.max_event_size, 1024 * 1024);
    assert_int_equal(cfg.map_size_max, 64ULL * 1024 * 1024 * 1024);
    assert_int_equal(cfg.batch_max, 4096);
    config_free(&cfg);
}

static void test_file_then_flags(void **state)
{
    (void)state;
    char *path = s_write_file("# comment\n"
                              "data = /srv/civibus\n"
                              "registry = /etc/reg\n"
                              "key = /etc/hub.key\n"
                              "max_event_size = 64KiB\n"
                              "sync = false\n"
                              "listen = tcp://127.0.0.1:9000\n");
    config_t cfg;
    /* the flag stands before --config and still wins over the file */
    const char *args[] = {"--listen", "tcp://127.0.0.1:9100", "--config", path, "--map-size-max", "2G", NULL};
    assert_int_equal(s_load(&cfg, args), CONFIG_OK);
    assert_string_equal(cfg.data, "/srv/civibus");
    assert_string_equal(cfg.listen, "tcp://127.0.0.1:9100");
    assert_int_equal(cfg.max_event_size, 64 * 1024);
    assert_false(cfg.sync);
    assert_int_equal(cfg.map_size_max, 2ULL * 1024 * 1024 * 1024);
    config_free(&cfg);
    const char *sync_back[] = {"--config", path, "--sync", NULL};
    assert_int_equal(s_load(&cfg, sync_back), CONFIG_OK);
    assert_true(cfg.sync);
    config_free(&cfg);
    unlink(path);
}

static void test_refusals(void **state)
{
    (void)state;
    config_t cfg;
    const char *unknown_flag[] = {"--data", "d", "--registry", "r", "--key", "k", "--bogus", "1", NULL};
    assert_int_equal(s_load(&cfg, unknown_flag), CONFIG_INVALID);
    const char *bounds[] = {"--data", "d", "--registry", "r", "--key", "k", "--max-event-size", "10", NULL};
    assert_int_equal(s_load(&cfg, bounds), CONFIG_INVALID);
    const char *bad_size[] = {"--data", "d", "--registry", "r", "--key", "k", "--map-size-max", "12X", NULL};
    assert_int_equal(s_load(&cfg, bad_size), CONFIG_INVALID);
    const char *negative[] = {"--data", "d", "--registry", "r", "--key", "k", "--batch-max", "-1", NULL};
    assert_int_equal(s_load(&cfg, negative), CONFIG_INVALID);
    const char *msg_small[] = {"--data", "d", "--registry", "r", "--key", "k", "--max-message-size", "1MiB", NULL};
    assert_int_equal(s_load(&cfg, msg_small), CONFIG_INVALID);
    const char *no_value[] = {"--data", "d", "--registry", "r", "--key", NULL};
    assert_int_equal(s_load(&cfg, no_value), CONFIG_INVALID);
    const char *empty[] = {"--data", "", "--registry", "r", "--key", "k", NULL};
    assert_int_equal(s_load(&cfg, empty), CONFIG_INVALID);

    char *path = s_write_file("data = /d\nno_such_key = 1\n");
    const char *unknown_key[] = {"--config", path, "--registry", "r", "--key", "k", NULL};
    assert_int_equal(s_load(&cfg, unknown_key), CONFIG_INVALID);
    unlink(path);
    path = s_write_file("data /d\n");
    const char *syntax[] = {"--config", path, "--registry", "r", "--key", "k", NULL};
    assert_int_equal(s_load(&cfg, syntax), CONFIG_INVALID);
    unlink(path);
    const char *missing_file[] = {"--config", "/nonexistent/civibusd.conf", NULL};
    assert_int_equal(s_load(&cfg, missing_file), CONFIG_INVALID);
}

static void test_retention_keys(void **state)
{
    (void)state;
    config_t cfg;
    const char *defaults[] = {"--data", "d", "--registry", "r", "--key", "k", NULL};
    assert_int_equal(s_load(&cfg, defaults), CONFIG_OK);
    assert_int_equal(cfg.retention_max_age, 0);
    assert_int_equal(cfg.retention_max_bytes, 0);
    assert_string_equal(cfg.retention_keep_subscriptions, "");
    assert_int_equal(cfg.retention_batch, 1000);
    config_free(&cfg);
    struct {
        const char *text;
        uint64_t seconds;
    } ages[] = {{"0", 0}, {"45", 45}, {"45s", 45}, {"90m", 5400}, {"36h", 129600}, {"30d", 2592000}};
    for (size_t i = 0; i < sizeof ages / sizeof ages[0]; i++) {
        const char *args[] = {"--data", "d", "--registry", "r", "--key", "k", "--retention-max-age", ages[i].text,
                              "--retention-max-bytes", "10GiB", NULL};
        assert_int_equal(s_load(&cfg, args), CONFIG_OK);
        assert_int_equal(cfg.retention_max_age, ages[i].seconds);
        assert_int_equal(cfg.retention_max_bytes, 10ULL << 30);
        config_free(&cfg);
    }
    const char *bad[] = {"1w", "d", "-1", "5dd", "101000d", "1.5h"};
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
        const char *args[] = {"--data", "d", "--registry", "r", "--key", "k", "--retention-max-age", bad[i], NULL};
        assert_int_equal(s_load(&cfg, args), CONFIG_INVALID);
    }
    char *path = s_write_file("retention_keep_subscriptions = tax-office/main, health/audit\n"
                              "retention_batch = 250\n");
    const char *file[] = {"--config", path, "--data", "d", "--registry", "r", "--key", "k", NULL};
    assert_int_equal(s_load(&cfg, file), CONFIG_OK);
    assert_string_equal(cfg.retention_keep_subscriptions, "tax-office/main, health/audit");
    assert_int_equal(cfg.retention_batch, 250);
    config_free(&cfg);
    unlink(path);
}

/* The sample shipped in deploy/ is what the table generates: they cannot drift. */
static void test_sample_matches_table(void **state)
{
    (void)state;
    char *buf = NULL;
    size_t len = 0;
    FILE *mem = open_memstream(&buf, &len);
    assert_non_null(mem);
    config_write_sample(mem);
    fclose(mem);
    FILE *f = fopen("deploy/civibusd.conf", "r");
    assert_non_null(f);
    char *shipped = calloc(1, len + 2);
    size_t got = fread(shipped, 1, len + 1, f);
    fclose(f);
    assert_int_equal(got, len);
    assert_memory_equal(shipped, buf, len);
    free(shipped);

    /* and the sample, with its example paths, loads */
    char *path = s_write_file(buf);
    config_t cfg;
    const char *args[] = {"--config", path, NULL};
    assert_int_equal(s_load(&cfg, args), CONFIG_OK);
    assert_string_equal(cfg.data, "/var/lib/civibus");
    config_free(&cfg);
    unlink(path);
    free(buf);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_defaults_and_required),
        cmocka_unit_test(test_file_then_flags),
        cmocka_unit_test(test_refusals),
        cmocka_unit_test(test_sample_matches_table),
        cmocka_unit_test(test_retention_keys),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
