/* fuzz_config - the hub's config file parser (config_load).
 *
 * Writes the input to a temporary file and loads it as --config, with the
 * required flags given on the command line, so that every key, value, size
 * suffix and bound check of the file parser is reachable. config_load prints
 * its errors on the stdio stream stderr; that stream is pointed at /dev/null
 * (glibc lets stderr be assigned), so that libFuzzer's output stays
 * readable, while file descriptor 2 stays open for libFuzzer's statistics
 * and the sanitizers' reports (freopen would close those too).
 */
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <unistd.h>

#include "config.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    static bool quiet;
    if (!quiet) {
        FILE *null = fopen("/dev/null", "w");
        if (null)
            stderr = null;
        quiet = true;
    }
    char path[] = "/tmp/civibus-fuzz-config-XXXXXX";
    int fd = mkstemp(path);
    if (fd < 0)
        return 0;
    if (write(fd, data, size) == (ssize_t)size) {
        char *argv[] = {"civibusd", "--config", path, "--data", "d", "--registry", "r", "--key", "k", NULL};
        config_t cfg;
        if (config_load(&cfg, 9, argv) == CONFIG_OK)
            config_free(&cfg);
    }
    close(fd);
    unlink(path);
    return 0;
}
