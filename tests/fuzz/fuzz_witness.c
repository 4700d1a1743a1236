/* fuzz_witness - the witness line parser (logfile_witness_parse): lines of
 * a witness file or of a hub log, which `civibus verify --witness` reads. */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "logfile.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    char *line = malloc(size + 1);
    if (!line)
        return 0;
    memcpy(line, data, size);
    line[size] = '\0';
    logfile_checkpoint_t cp;
    char why[128];
    if (logfile_witness_parse(line, &cp, why, sizeof why) == LOGFILE_OK) {
        /* what parses, formats back to a line that parses the same */
        char again[LOGFILE_WITNESS_LEN];
        logfile_checkpoint_t back;
        logfile_witness_format(&cp, again);
        if (logfile_witness_parse(again, &back, why, sizeof why) != LOGFILE_OK || memcmp(&back, &cp, sizeof cp) != 0)
            abort();
    }
    free(line);
    return 0;
}
