/* nindub kernels: tile GEMM for prefill (M > 1 activation rows), the compute-bound case.
 *
 * k_matmul with M > 1 and a k_kernels.gemm[wtype] entry goes through k_gemm_matmul
 * instead of one vec_dot per (row, token) pair:
 *
 *   1. every activation row is quantized once to the entry's atype (ops->quantize), then
 *      converted by gemm->act_pack into the layout the tile kernel broadcasts from
 *      (act_pack NULL: the atype row is used as is);
 *   2. the N output rows are cut into row groups of gemm->rows rows (16; F16/BF16: 32); a
 *      work item is one row group x a range of tokens. The worker repacks its group's
 *      weight rows into a small per-thread buffer (gemm->w_size(K) bytes, 64-aligned) —
 *      rows interleaved so one vector lane = one weight row, nothing reduced horizontally
 *      — and sweeps the tokens over it, a few tokens at a time held in registers.
 *      Resident weights stay the GGUF mapping: the repack is per tile, never a second copy
 *      of the matrix.
 *
 * Decode (M = 1) goes through the same entry's gemv: a token's outputs must not depend on
 * whether it was computed in a batch or alone (bit for bit: the model tests compare
 * batched prefill with token-by-token decode, and on random-weight models any rounding
 * difference is amplified through the next layer's activation quantization). The gemv
 * forms the same exact integers and runs the tile's per-lane float sequence.
 *
 * Semantics are q_vec_dot's per (row, token) pair: the integer part of every block dot is
 * exact, only the float accumulation (order, FMA) differs; F16/BF16: the products of two
 * halves are exact, summed in a float FMA chain over k (tolerance: tests/test_gemm.c).
 * k_gemm_ref_tile is the oracle: a portable tile that calls q_vec_dot for every pair.
 */
#ifndef ND_KERNELS_GEMM_H
#define ND_KERNELS_GEMM_H

#include "kernels/kernels.h"

#define K_GEMM_ALIGN 64 /* packed activation rows and weight buffers */
/* Longest weight row (bytes) the tiles take: they address a row group with 32-bit
 * offsets (16 rows). Longer rows go through the vec_dot path. */
#define K_GEMM_MAX_ROW ((size_t)1 << 26)

/* One weight type's tile GEMM (a static const table in the ISA file).
 *
 * tile: Y[t * ldy + r] = dot(weight row r, activation row t) for r < nr, t < M, where
 *   W  = the first weight row of the group (rows w_row bytes apart), 1 <= nr <= rows;
 *   P  = the first packed activation row (rows p_row bytes apart, 64-aligned);
 *   wtmp = w_size(K) bytes, 64-aligned, owned by the calling thread.
 * Only the nr x M outputs are written. K is a multiple of the weight block (k_check). */
struct k_gemm_ops {
    const char *name;                          /* e.g. "avx512-vnni" */
    int rows;                                  /* weight rows per tile */
    size_t (*act_size)(int64_t K);             /* bytes of a packed row; 0 if act_pack NULL */
    void (*act_pack)(const void *arow, void *dst, int64_t K);
    size_t (*w_size)(int64_t K);
    void (*tile)(const void *W, size_t w_row, int nr, const void *P, size_t p_row, int64_t M,
                 int64_t K, float *Y, int64_t ldy, void *wtmp);
    /* M = 1: y[n] for n < N from one packed activation row, on the native layout (no
     * repack), with bit-identical results to tile for the same (row, token). */
    void (*gemv)(const void *W, size_t w_row, int64_t N, const void *P, int64_t K, float *y);
    /* optional: tile on a group of 16 rows in the X16 layout (nr = 16), bit-identical to
     * tile on the same rows in GGUF layout */
    void (*tile_x16)(const void *W, size_t w_row, int nr, const void *P, size_t p_row, int64_t M,
                     int64_t K, float *Y, int64_t ldy, void *wtmp);
};

/* Y[M][N] = X[M][K] · W^T through env->kern->gemm[wtype] (which must be set; activations
 * quantized with ops[wtype].quantize), threaded over env->pool. Same contract and errors
 * as k_matmul (the caller has run k_check; the row is <= K_GEMM_MAX_ROW bytes). */
int k_gemm_matmul(const k_env *env, uint32_t wtype, const void *W, int64_t K, int64_t N,
                  const float *X, int64_t M, float *Y, nd_err *err);
/* the same on a matrix in the X16 layout (gemm[wtype]->tile_x16 set, N % 16 == 0, M > 1) */
int k_gemm_matmul_x16(const k_env *env, uint32_t wtype, const void *W, int64_t K, int64_t N,
                      const float *X, int64_t M, float *Y, nd_err *err);

/* The oracle: Y[t * ldy + r] = q_vec_dot(wtype, row r, atype, activation row t, K) for
 * r < nr, t < M, A = M rows of atype (a_row bytes apart, as ops->quantize writes them). */
void k_gemm_ref_tile(uint32_t wtype, const void *W, size_t w_row, int nr, uint32_t atype,
                     const void *A, size_t a_row, int64_t M, int64_t K, float *Y, int64_t ldy);

/* Installers (cpuid checked by the caller, as for k_install_avx512): set k->gemm[t] for
 * the weight types the ISA file has tiles for. */
void k_install_gemm_avx512(k_kernels *k); /* AVX-512 F/BW/VL/DQ + VNNI */
void k_install_gemm_avx512_bf16(k_kernels *k); /* + AVX-512 BF16: the BF16 tile */

/* Per-type tables (tests, benches); NULL-safe lookup by weight type. */
const struct k_gemm_ops *k_gemm_avx512_ops(uint32_t wtype);

#endif
