/* fuzz_keyfile - the key file and registry entry parser, and the reader of
 * the hub's signing key list (a list, or a PEM key). */
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <unistd.h>

#include "keyfile.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    char path[] = "/tmp/civibus-fuzz-keyfile-XXXXXX";
    int fd = mkstemp(path);
    if (fd < 0)
        return 0;
    if (write(fd, data, size) == (ssize_t)size) {
        keyfile_t kf;
        char err[512];
        keyfile_read(path, &kf, err, sizeof err);
        static keyfile_hub_t hub;
        keyfile_read_hub_sign(path, &hub, err, sizeof err);
    }
    close(fd);
    unlink(path);
    return 0;
}
