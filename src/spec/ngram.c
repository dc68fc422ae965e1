/* Prompt-lookup drafting: the accepted tokens predict themselves. When the text echoes
 * earlier text (code being edited, a document being summarised or quoted, a model that
 * repeats itself), the tokens that followed the last occurrence of the current suffix are
 * a good guess for what comes next. A match whose continuation reaches the present is a
 * loop: the draft goes on around it, up to k tokens. */
#include <string.h>

#include "spec/spec_internal.h"

int spec_ngram_lookup(const int32_t *h, size_t n, int nmin, int nmax, int k, int32_t *draft) {
    if (nmin < 1) nmin = 1;
    if (k <= 0) return 0;
    for (int g = nmax; g >= nmin; g--) {
        if ((size_t)g >= n) continue; /* the suffix needs an earlier occurrence */
        const int32_t *suf = h + n - g;
        /* most recent earlier start j < n - g; the continuation starts at j + g <= n - 1 */
        for (size_t j = n - g; j-- > 0;) {
            if (h[j] != suf[0] || memcmp(h + j, suf, (size_t)g * sizeof *h)) continue;
            /* copy what followed; where that runs into the present (a loop of period
             * n - from), keep copying from the draft itself: h + draft continues the period */
            size_t from = j + (size_t)g;
            for (int i = 0; i < k; i++) {
                size_t src = from + (size_t)i;
                draft[i] = src < n ? h[src] : draft[src - n];
            }
            return k;
        }
    }
    return 0;
}
