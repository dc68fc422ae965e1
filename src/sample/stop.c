/* Stop-string scanning (see stop.h). */
#include <string.h>

#include "sample/stop.h"

long smp_stop_scan(const char *const *stops, int n_stops, const char *text, size_t len, size_t from,
                   size_t *safe) {
    long best = -1;
    *safe = len;
    for (int s = 0; s < n_stops; s++) {
        const char *st = stops[s];
        size_t sl = strlen(st);
        if (!sl) continue;
        for (size_t i = from; i + sl <= len && (best < 0 || (long)i < best); i++)
            if (!memcmp(text + i, st, sl)) {
                best = (long)i;
                break;
            }
        for (size_t k = sl - 1 < len ? sl - 1 : len; k > 0; k--) /* held-back partial match */
            if (!memcmp(text + len - k, st, k)) {
                if (len - k < *safe) *safe = len - k;
                break;
            }
    }
    return best;
}
