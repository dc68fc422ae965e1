/* Prompt-lookup drafting: the accepted tokens predict themselves. When the text echoes
 * earlier text (code being edited, a document being summarised or quoted, a model that
 * repeats itself), the tokens that followed the last occurrence of the current suffix are
 * a good guess for what comes next. */
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
            size_t from = j + (size_t)g, avail = n - from;
            int len = avail < (size_t)k ? (int)avail : k;
            memcpy(draft, h + from, (size_t)len * sizeof *h);
            return len;
        }
    }
    return 0;
}
