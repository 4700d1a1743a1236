/* test_config - the settings table: defaults, file, flags, bounds, reload,
 * and the generated texts (sample config, docs/OPERATIONS.md reference). */
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

/* argv is static: a config keeps it for config_reload, as main's stays. */
static int s_load(config_t *cfg, const char **args)
{
    static const char *argv[32];
    argv[0] = "civibusd";
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
    /* --check-config validates everything, then stops */
    const char *check[] = {"--check-config", "--config", path, NULL};
    assert_int_equal(s_load(&cfg, check), CONFIG_HELP);
    const char *check_bad[] = {"--config", path, "--check-config", "--batch-max", "0", NULL};
    assert_int_equal(s_load(&cfg, check_bad), CONFIG_INVALID);
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

/* Read a whole file (NUL-terminated; free it). */
static char *s_slurp(const char *path)
{
    FILE *f = fopen(path, "r");
    assert_non_null(f);
    assert_int_equal(fseek(f, 0, SEEK_END), 0);
    long len = ftell(f);
    assert_true(len >= 0);
    rewind(f);
    char *buf = calloc(1, (size_t)len + 1);
    assert_non_null(buf);
    assert_int_equal(fread(buf, 1, (size_t)len, f), (size_t)len);
    fclose(f);
    return buf;
}

/* What gen() writes, as one NUL-terminated string (free it). */
static char *s_generate(void (*gen)(FILE *))
{
    char *buf = NULL;
    size_t len = 0;
    FILE *mem = open_memstream(&buf, &len);
    assert_non_null(mem);
    gen(mem);
    fclose(mem);
    return buf;
}

/* The sample shipped in deploy/ is what the table generates: they cannot drift. */
static void test_sample_matches_table(void **state)
{
    (void)state;
    char *buf = s_generate(config_write_sample);
    char *shipped = s_slurp("deploy/civibusd.conf");
    if (strcmp(shipped, buf) != 0)
        fail_msg("deploy/civibusd.conf differs from 'civibusd --print-config'; regenerate it with 'make config-docs'");
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

/* Replace the file at path with text (same path, as an operator edits it). */
static void s_rewrite(const char *path, const char *text)
{
    FILE *f = fopen(path, "w");
    assert_non_null(f);
    assert_int_equal(fputs(text, f) >= 0, 1);
    assert_int_equal(fclose(f), 0);
}

static void test_reload(void **state)
{
    (void)state;
    char *path = s_write_file("data = /srv/a\n"
                              "listen = tcp://127.0.0.1:9000\n"
                              "log_level = info\n"
                              "batch_max = 100\n"
                              "policy = /etc/p1\n");
    char file[64];
    snprintf(file, sizeof file, "%s", path);
    config_t cfg;
    const char *args[] = {"--config", file, "--registry", "/r", "--key", "/k", "--credit-max", "500", NULL};
    assert_int_equal(s_load(&cfg, args), CONFIG_OK);
    assert_int_equal(cfg.batch_max, 100);

    /* reloadable keys change; a restart-only key and a flag do not */
    s_rewrite(file, "data = /srv/a\n"
                    "listen = tcp://127.0.0.1:9999\n"
                    "log_level = debug\n"
                    "log_format = json\n"
                    "batch_max = 200\n"
                    "credit_max = 9\n"
                    "require_signatures = true\n"
                    "policy = /etc/p2\n");
    size_t changed = 99;
    assert_int_equal(config_reload(&cfg, &changed), CONFIG_OK);
    assert_int_equal(changed, 5);
    assert_string_equal(cfg.log_level, "debug");
    assert_string_equal(cfg.log_format, "json");
    assert_int_equal(cfg.batch_max, 200);
    assert_true(cfg.require_signatures);
    assert_string_equal(cfg.policy, "/etc/p2");
    assert_string_equal(cfg.listen, "tcp://127.0.0.1:9000");
    assert_int_equal(cfg.credit_max, 500);

    /* a policy cannot be taken away by a reload; the rest still applies */
    s_rewrite(file, "data = /srv/a\nlisten = tcp://127.0.0.1:9000\nlog_level = warn\n");
    assert_int_equal(config_reload(&cfg, &changed), CONFIG_OK);
    assert_string_equal(cfg.policy, "/etc/p2");
    assert_string_equal(cfg.log_level, "warn");
    assert_int_equal(cfg.batch_max, 4096); /* back to its default */
    assert_false(cfg.require_signatures);

    /* an invalid file changes nothing, even the keys before the error */
    const char *bad[] = {"data = /d\nlog_level = error\nbatch_max = 0\n",
                         "data = /d\nlog_level = error\nno_such_key = 1\n", "data = /d\nlog_level = loud\n",
                         "data = /d\nlog_level = error\nmax_message_size = 1MiB\n",
                         "data = /d\nlog_level = error\nthis is not a setting\n", "log_level = error\n"};
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
        s_rewrite(file, bad[i]);
        assert_int_equal(config_reload(&cfg, &changed), CONFIG_INVALID);
        assert_string_equal(cfg.log_level, "warn");
        assert_string_equal(cfg.data, "/srv/a");
    }
    unlink(file);
    assert_int_equal(config_reload(&cfg, &changed), CONFIG_INVALID);
    assert_string_equal(cfg.log_level, "warn");
    config_free(&cfg);
}

/* The reference in docs/OPERATIONS.md is what the table generates. */
static void test_doc_matches_table(void **state)
{
    (void)state;
    char *gen = s_generate(config_write_markdown);
    char *doc = s_slurp("docs/OPERATIONS.md");
    const char *begin_mark = "<!-- BEGIN config reference";
    const char *end_mark = "<!-- END config reference -->";
    char *begin = strstr(doc, begin_mark);
    assert_non_null(begin);
    begin = strchr(begin, '\n');
    assert_non_null(begin);
    begin++;
    char *end = strstr(begin, end_mark);
    assert_non_null(end);
    *end = '\0';
    if (strcmp(begin, gen) != 0)
        fail_msg("docs/OPERATIONS.md's config reference differs from 'civibusd --print-config-md'; "
                 "regenerate it with 'make config-docs'");
    /* one row per key, each with its reload column */
    assert_non_null(strstr(gen, "| `log_level` | choice | `info` | debug, info, warn, error | yes |"));
    assert_non_null(strstr(gen, "| `data` | string | required"));
    assert_non_null(strstr(gen, "| 256 B – 16 MiB | restart |"));
    free(doc);
    free(gen);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_defaults_and_required),
        cmocka_unit_test(test_file_then_flags),
        cmocka_unit_test(test_refusals),
        cmocka_unit_test(test_sample_matches_table),
        cmocka_unit_test(test_reload),
        cmocka_unit_test(test_doc_matches_table),
        cmocka_unit_test(test_retention_keys),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
