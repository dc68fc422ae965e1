/* Private to src/quant: shared helpers and the per-format entry points the dispatcher in
 * quant.c calls. Not part of the module's API (include quant/quant.h instead). */
#ifndef ND_QUANT_INTERNAL_H
#define ND_QUANT_INTERNAL_H

#include <stdint.h>
#include <string.h>

#include "quant/quant.h"

/* Scale groups whose largest |x| is below this are treated as all-zero (llama.cpp's
 * GROUP_MAX_EPS). */
#define Q_GROUP_MAX_EPS 1e-15f

/* Round to nearest, ties to even, for |f| <= 2^22: adding 1.5*2^23 leaves the integer in
 * the low mantissa bits. Same results as llama.cpp's nearest_int (which the byte-exact
 * quantizers depend on), and no UB for out-of-range inputs (garbage instead). */
static inline int q_nearest_int(float f) {
    float v = f + 12582912.f;
    int32_t i;
    memcpy(&i, &v, sizeof i);
    return (i & 0x007fffff) - 0x00400000;
}

static inline float q_h2f(uint16_t h) { return nd_fp16_to_fp32(h); }
static inline uint16_t q_f2h(float f) { return nd_fp32_to_fp16(f); }

/* ---- scale searches (q_search.c); semantics of llama.cpp's make_*_quants ---- */

/* Symmetric: L[i] in [0, 2*nmax), x ~ scale*(L[i]-nmax); weighted least squares with
 * weights qw (NULL: x^2), trying 19 candidate inverse scales. Returns the scale. */
float q_make_qx_quants(int n, int nmax, const float *x, int8_t *L, const float *qw);
/* Symmetric with coordinate-descent refinement, weights x^2 (Q3_K reference). */
float q_make_q3_quants(int n, int nmax, const float *x, int8_t *L);
/* Asymmetric x ~ scale*L + min (min <= 0): grid search over nstep+1 inverse scales with a
 * weighted least-squares fit of (scale, min) each. *the_min = -min. */
float q_make_qkx2_quants(int n, int nmax, const float *x, const float *weights, uint8_t *L,
                         float *the_min, uint8_t *Laux, float rmin, float rdelta, int nstep,
                         int use_mad);
/* As qkx2 (weights NULL: x^2), the variant llama.cpp uses with an imatrix. */
float q_make_qkx3_quants(int n, int nmax, const float *x, const float *weights, uint8_t *L,
                         float *the_min, uint8_t *Laux, float rmin, float rdelta, int nstep,
                         int use_mad);
/* Non-negative x ~ scale*L, L in [0, nmax], weighted (used to quantize K-quant scales). */
float q_make_qp_quants(int n, int nmax, const float *x, uint8_t *L, const float *qw);

/* ---- 32-block formats (q_blocks32.c); nb = number of blocks ---- */
void q_quant_q4_0(const float *x, q_block_q4_0 *y, int64_t nb);
void q_quant_q4_1(const float *x, q_block_q4_1 *y, int64_t nb);
void q_quant_q5_0(const float *x, q_block_q5_0 *y, int64_t nb);
void q_quant_q5_1(const float *x, q_block_q5_1 *y, int64_t nb);
void q_quant_q8_0(const float *x, q_block_q8_0 *y, int64_t nb);
void q_quant_q8_1(const float *x, q_block_q8_1 *y, int64_t nb);
/* activation variants: llama.cpp's x86 runtime quantizers (see q_blocks32.c) */
void q_quant_act_q8_0(const float *x, q_block_q8_0 *y, int64_t nb);
void q_quant_act_q8_1(const float *x, q_block_q8_1 *y, int64_t nb);
/* imatrix variants: one row of n = 32*nb elements, qw has n weights */
void q_quant_q4_0_imat(const float *x, q_block_q4_0 *y, int64_t nb, const float *qw);
void q_quant_q4_1_imat(const float *x, q_block_q4_1 *y, int64_t nb, const float *qw);
void q_quant_q5_0_imat(const float *x, q_block_q5_0 *y, int64_t nb, const float *qw);
void q_quant_q5_1_imat(const float *x, q_block_q5_1 *y, int64_t nb, const float *qw);

void q_dequant_q4_0(const q_block_q4_0 *x, float *y, int64_t nb);
void q_dequant_q4_1(const q_block_q4_1 *x, float *y, int64_t nb);
void q_dequant_q5_0(const q_block_q5_0 *x, float *y, int64_t nb);
void q_dequant_q5_1(const q_block_q5_1 *x, float *y, int64_t nb);
void q_dequant_q8_0(const q_block_q8_0 *x, float *y, int64_t nb);
void q_dequant_q8_1(const q_block_q8_1 *x, float *y, int64_t nb);

float q_dot_q4_0_q8_0(const q_block_q4_0 *x, const q_block_q8_0 *y, int64_t nb);
float q_dot_q4_1_q8_1(const q_block_q4_1 *x, const q_block_q8_1 *y, int64_t nb);
float q_dot_q5_0_q8_0(const q_block_q5_0 *x, const q_block_q8_0 *y, int64_t nb);
float q_dot_q5_1_q8_1(const q_block_q5_1 *x, const q_block_q8_1 *y, int64_t nb);
float q_dot_q8_0_q8_0(const q_block_q8_0 *x, const q_block_q8_0 *y, int64_t nb);

/* ---- K-quants (q_kquants.c, q_kdot.c); nb = number of 256-element super-blocks ---- */
void q_quant_q2_K(const float *x, q_block_q2_K *y, int64_t nb);
void q_quant_q3_K(const float *x, q_block_q3_K *y, int64_t nb);
void q_quant_q4_K(const float *x, q_block_q4_K *y, int64_t nb);
void q_quant_q5_K(const float *x, q_block_q5_K *y, int64_t nb);
void q_quant_q6_K(const float *x, q_block_q6_K *y, int64_t nb);
void q_quant_q8_K(const float *x, q_block_q8_K *y, int64_t nb);
void q_quant_q2_K_imat(const float *x, q_block_q2_K *y, int64_t nb, const float *qw);
void q_quant_q3_K_imat(const float *x, q_block_q3_K *y, int64_t nb, const float *qw);
void q_quant_q4_K_imat(const float *x, q_block_q4_K *y, int64_t nb, const float *qw);
void q_quant_q5_K_imat(const float *x, q_block_q5_K *y, int64_t nb, const float *qw);
void q_quant_q6_K_imat(const float *x, q_block_q6_K *y, int64_t nb, const float *qw);

void q_dequant_q2_K(const q_block_q2_K *x, float *y, int64_t nb);
void q_dequant_q3_K(const q_block_q3_K *x, float *y, int64_t nb);
void q_dequant_q4_K(const q_block_q4_K *x, float *y, int64_t nb);
void q_dequant_q5_K(const q_block_q5_K *x, float *y, int64_t nb);
void q_dequant_q6_K(const q_block_q6_K *x, float *y, int64_t nb);
void q_dequant_q8_K(const q_block_q8_K *x, float *y, int64_t nb);

float q_dot_q2_K_q8_K(const q_block_q2_K *x, const q_block_q8_K *y, int64_t nb);
float q_dot_q3_K_q8_K(const q_block_q3_K *x, const q_block_q8_K *y, int64_t nb);
float q_dot_q4_K_q8_K(const q_block_q4_K *x, const q_block_q8_K *y, int64_t nb);
float q_dot_q5_K_q8_K(const q_block_q5_K *x, const q_block_q8_K *y, int64_t nb);
float q_dot_q6_K_q8_K(const q_block_q6_K *x, const q_block_q8_K *y, int64_t nb);

/* Unpack the 6-bit scale and min of sub-block j (0..7) of a Q4_K/Q5_K scales array. */
static inline void q_get_scale_min_k4(int j, const uint8_t *q, uint8_t *sc, uint8_t *m) {
    if (j < 4) {
        *sc = q[j] & 63;
        *m = q[j + 4] & 63;
    } else {
        *sc = (uint8_t)((q[j + 4] & 0xF) | ((q[j - 4] >> 6) << 4));
        *m = (uint8_t)((q[j + 4] >> 4) | ((q[j] >> 6) << 4));
    }
}

/* The 16 signed 6-bit scales of a Q3_K block, unpacked (offset 32 removed). */
static inline void q_unpack_q3_K_scales(const uint8_t *s, int8_t out[16]) {
    for (int j = 0; j < 16; j++) {
        int lo = j < 8 ? (s[j] & 0xF) : (s[j - 8] >> 4);
        int hi = (s[8 + j % 4] >> (2 * (j / 4))) & 3;
        out[j] = (int8_t)((lo | (hi << 4)) - 32);
    }
}

#endif
