/* The tile GEMM oracle: every output is one q_vec_dot call (see kernels/gemm.h). Portable,
 * slow; the SIMD tiles are tested against it. */
#include "kernels/gemm.h"
#include "quant/quant.h"

void k_gemm_ref_tile(uint32_t wtype, const void *W, size_t w_row, int nr, uint32_t atype,
                     const void *A, size_t a_row, int64_t M, int64_t K, float *Y, int64_t ldy) {
    const uint8_t *w = W, *a = A;
    for (int64_t t = 0; t < M; t++)
        for (int r = 0; r < nr; r++)
            Y[t * ldy + r] = q_vec_dot(wtype, w + (size_t)r * w_row, atype, a + (size_t)t * a_row, K);
}
