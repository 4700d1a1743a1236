/* fuzz_registry - the hub's agency registry loader (auth_new).
 *
 * Two things per input. First the input as one registry entry, read with
 * keyfile_read (DIR/agency.pub). Then the input split on the byte 0x00 into
 * up to four files a.pub .. d.pub of a fresh registry folder, loaded by
 * auth_new, which also checks that each entry's agency matches its file
 * name and that no key belongs to two agencies. auth_new binds the ZAP
 * endpoint of its context and starts the handler thread; the handler only
 * stops when the context is shut down, so each input gets a context of its
 * own: new, auth_new, shutdown, auth_destroy, term. The hub's diagnostic log
 * (write(2) to descriptor 2) is turned off by a level above every message,
 * so that libFuzzer's statistics and the sanitizers' reports stay visible.
 */
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>
#include <zmq.h>

#include "auth.h"
#include "keyfile.h"
#include "log.h"

#define SEPARATOR 0x00
#define MAX_FILES 4

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

static int s_write(const char *path, const uint8_t *data, size_t size)
{
    FILE *f = fopen(path, "wb");
    if (!f)
        return -1;
    int rc = size && fwrite(data, 1, size, f) != size ? -1 : 0;
    return fclose(f) != 0 ? -1 : rc;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    log_set_level((log_level_t)(LOG_ERROR + 1));
    char dir[] = "/tmp/civibus-fuzz-registry-XXXXXX";
    if (!mkdtemp(dir))
        return 0;
    char paths[MAX_FILES + 1][sizeof dir + 16];
    int n_paths = 0;

    /* One entry, whole. */
    snprintf(paths[n_paths], sizeof paths[0], "%s/agency.pub", dir);
    if (s_write(paths[n_paths], data, size) == 0) {
        keyfile_t kf;
        char err[512];
        keyfile_read(paths[n_paths], &kf, err, sizeof err);
    }
    unlink(paths[n_paths]);

    /* A registry of up to four entries. */
    size_t start = 0;
    for (int i = 0; i < MAX_FILES && start <= size; i++) {
        const uint8_t *sep = i < MAX_FILES - 1 ? memchr(data + start, SEPARATOR, size - start) : NULL;
        size_t end = sep ? (size_t)(sep - data) : size;
        snprintf(paths[n_paths], sizeof paths[0], "%s/%c.pub", dir, 'a' + i);
        if (s_write(paths[n_paths], data + start, end - start) == 0)
            n_paths++;
        start = end + 1;
        if (!sep)
            break;
    }
    void *ctx = zmq_ctx_new();
    if (ctx) {
        auth_t *auth = auth_new(ctx, dir);
        zmq_ctx_shutdown(ctx);
        auth_destroy(&auth);
        zmq_ctx_term(ctx);
    }
    for (int i = 0; i < n_paths; i++)
        unlink(paths[i]);
    rmdir(dir);
    return 0;
}
