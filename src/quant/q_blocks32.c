/* The 32-element block formats: Q4_0, Q4_1, Q5_0, Q5_1, Q8_0 (weights) and Q8_1
 * (activations): reference quantize (byte-identical to llama.cpp's quantize_row_*_ref),
 * imatrix quantize (llama.cpp's quantize_row_*_impl), dequantize, and the integer dot
 * products against Q8_0 / Q8_1 activations (ggml_vec_dot_*_generic semantics).
 */
#include <float.h>
#include <math.h>

#include "quant/q_internal.h"

/* Byte-exactness depends on every multiply and add rounding separately (no fused
 * multiply-add): GCC in ISO C mode never contracts; clang needs to be told. */
#if defined(__clang__)
#pragma STDC FP_CONTRACT OFF
#endif

/* Both nibble formats store element j in the low nibble of byte j and element j+16 in the
 * high nibble. */
static inline void q_pack_nibbles(const uint8_t *L, uint8_t *qs) {
    for (int j = 0; j < Q_QK / 2; j++) qs[j] = (uint8_t)(L[j] | (L[j + Q_QK / 2] << 4));
}

/* 5-bit formats: low nibbles as above, the 5th bits gathered in a LE u32. */
static inline void q_pack_5bit(const uint8_t *L, uint8_t *qs, uint8_t qh_out[4]) {
    uint32_t qh = 0;
    for (int j = 0; j < Q_QK / 2; j++) {
        uint8_t a = L[j], b = L[j + Q_QK / 2];
        qs[j] = (uint8_t)((a & 0x0F) | ((b & 0x0F) << 4));
        qh |= (uint32_t)((a & 0x10u) >> 4) << j;
        qh |= (uint32_t)((b & 0x10u) >> 4) << (j + Q_QK / 2);
    }
    for (int k = 0; k < 4; k++) qh_out[k] = (uint8_t)(qh >> (8 * k));
}

static inline uint32_t q_load_qh(const uint8_t qh[4]) {
    return (uint32_t)qh[0] | (uint32_t)qh[1] << 8 | (uint32_t)qh[2] << 16 |
           (uint32_t)qh[3] << 24;
}

/* (int)v truncated toward zero and clamped to [lo, hi], as the reference's int8 casts plus
 * MIN() for every finite v the reference can produce; NaN gives lo (a bare cast of NaN or
 * of an out-of-range value would be undefined behaviour). */
static inline int q_trunc_clamp(float v, int lo, int hi) {
    if (!(v > (float)lo)) return lo;
    if (v >= (float)hi) return hi;
    return (int)v;
}

/* roundf(v) as int8 (ties away from zero, as the reference), NaN -> 0. */
static inline int8_t q_round_i8(float v) {
    float r = roundf(v);
    return (int8_t)(r >= -128.f && r <= 127.f ? (int)r : 0);
}

/* The value with the largest magnitude (first one on ties), and that magnitude. */
static inline float q_absmax_signed(const float *x, int n, float *amax_out) {
    float amax = 0.0f, max = 0.0f;
    for (int j = 0; j < n; j++) {
        if (amax < fabsf(x[j])) {
            amax = fabsf(x[j]);
            max = x[j];
        }
    }
    *amax_out = amax;
    return max;
}

static inline void q_minmax(const float *x, int n, float *mn, float *mx) {
    float min = FLT_MAX, max = -FLT_MAX;
    for (int j = 0; j < n; j++) {
        if (x[j] < min) min = x[j];
        if (x[j] > max) max = x[j];
    }
    *mn = min;
    *mx = max;
}

/* ================================================================ reference quantize */

void q_quant_q4_0(const float *x, q_block_q4_0 *y, int64_t nb) {
    for (int64_t i = 0; i < nb; i++, x += Q_QK) {
        float amax;
        const float max = q_absmax_signed(x, Q_QK, &amax);
        /* the extreme value maps to level 0 (-8): the sign of d follows it */
        const float d = max / -8;
        const float id = d != 0.f ? 1.0f / d : 0.0f;
        y[i].d = q_f2h(d);
        uint8_t L[Q_QK];
        for (int j = 0; j < Q_QK; j++) {
            L[j] = (uint8_t)q_trunc_clamp(x[j] * id + 8.5f, 0, 15);
        }
        q_pack_nibbles(L, y[i].qs);
    }
}

void q_quant_q4_1(const float *x, q_block_q4_1 *y, int64_t nb) {
    for (int64_t i = 0; i < nb; i++, x += Q_QK) {
        float min, max;
        q_minmax(x, Q_QK, &min, &max);
        const float d = (max - min) / ((1 << 4) - 1);
        const float id = d != 0.f ? 1.0f / d : 0.0f;
        y[i].d = q_f2h(d);
        y[i].m = q_f2h(min);
        uint8_t L[Q_QK];
        for (int j = 0; j < Q_QK; j++) {
            L[j] = (uint8_t)q_trunc_clamp((x[j] - min) * id + 0.5f, 0, 15);
        }
        q_pack_nibbles(L, y[i].qs);
    }
}

void q_quant_q5_0(const float *x, q_block_q5_0 *y, int64_t nb) {
    for (int64_t i = 0; i < nb; i++, x += Q_QK) {
        float amax;
        const float max = q_absmax_signed(x, Q_QK, &amax);
        const float d = max / -16;
        const float id = d != 0.f ? 1.0f / d : 0.0f;
        y[i].d = q_f2h(d);
        uint8_t L[Q_QK];
        for (int j = 0; j < Q_QK; j++) {
            L[j] = (uint8_t)q_trunc_clamp(x[j] * id + 16.5f, 0, 31);
        }
        q_pack_5bit(L, y[i].qs, y[i].qh);
    }
}

void q_quant_q5_1(const float *x, q_block_q5_1 *y, int64_t nb) {
    for (int64_t i = 0; i < nb; i++, x += Q_QK) {
        float min, max;
        q_minmax(x, Q_QK, &min, &max);
        const float d = (max - min) / ((1 << 5) - 1);
        const float id = d != 0.f ? 1.0f / d : 0.0f;
        y[i].d = q_f2h(d);
        y[i].m = q_f2h(min);
        uint8_t L[Q_QK];
        /* the reference does not clamp; finite inputs never exceed 31.5 here */
        for (int j = 0; j < Q_QK; j++)
            L[j] = (uint8_t)q_trunc_clamp((x[j] - min) * id + 0.5f, 0, 31);
        q_pack_5bit(L, y[i].qs, y[i].qh);
    }
}

void q_quant_q8_0(const float *x, q_block_q8_0 *y, int64_t nb) {
    for (int64_t i = 0; i < nb; i++, x += Q_QK) {
        float amax = 0.0f;
        for (int j = 0; j < Q_QK; j++) amax = amax > fabsf(x[j]) ? amax : fabsf(x[j]);
        const float d = amax / ((1 << 7) - 1);
        const float id = d != 0.f ? 1.0f / d : 0.0f;
        y[i].d = q_f2h(d);
        for (int j = 0; j < Q_QK; j++) y[i].qs[j] = q_round_i8(x[j] * id);
    }
}

void q_quant_q8_1(const float *x, q_block_q8_1 *y, int64_t nb) {
    for (int64_t i = 0; i < nb; i++, x += Q_QK) {
        float amax = 0.0f;
        for (int j = 0; j < Q_QK; j++) amax = amax > fabsf(x[j]) ? amax : fabsf(x[j]);
        const float d = amax / ((1 << 7) - 1);
        const float id = d != 0.f ? 1.0f / d : 0.0f;
        y[i].d = q_f2h(d);
        int sum = 0;
        for (int j = 0; j < Q_QK; j++) {
            y[i].qs[j] = q_round_i8(x[j] * id);
            sum += y[i].qs[j];
        }
        /* s uses the unrounded d, as the reference */
        y[i].s = q_f2h((float)sum * d);
    }
}

/* ================================================================ activation quantize */

/* Q8_0 / Q8_1 activations as llama.cpp's CPU backend quantizes them at run time on x86
 * (quantize_row_q8_0 / quantize_row_q8_1 and the repacked-path ggml_quantize_mat_q8_0_4x8,
 * AVX2 builds): d = amax/127 as the reference, but the inverse scale is 127/amax (not
 * 1/d, which can differ by an ulp) and x*id rounds to nearest EVEN (vroundps + vcvtps2dq),
 * not half away from zero. Q8_1's s = fp16(d * sum(q)) as the reference.
 * Safety: a block with amax < ~3.7e-37 has an infinite 127/amax; every x*id that is not a
 * finite value within [-127.5, 127.5] (inf, NaN from 0*inf or non-finite inputs) gives 0,
 * so such blocks quantize to zero (llama.cpp casts these to int8: undefined there). The
 * SIMD quantizers in kernels/x86 apply the same rule. */
static inline int8_t q_act_round(float v) {
    if (!(fabsf(v) <= 127.5f)) return 0;
    const int r = q_nearest_int(v); /* ties to even, exact for |v| <= 2^22 */
    return (int8_t)(r > 127 ? 127 : r < -127 ? -127 : r);
}

static inline float q_act_block32(const float *x, int8_t *qs, int *sum) {
    float amax = 0.0f;
    for (int j = 0; j < Q_QK; j++) amax = amax > fabsf(x[j]) ? amax : fabsf(x[j]);
    const float d = amax / 127.f;
    const float id = amax != 0.f ? 127.f / amax : 0.0f;
    int s = 0;
    for (int j = 0; j < Q_QK; j++) {
        qs[j] = q_act_round(x[j] * id);
        s += qs[j];
    }
    *sum = s;
    return d;
}

void q_quant_act_q8_0(const float *x, q_block_q8_0 *y, int64_t nb) {
    for (int64_t i = 0; i < nb; i++, x += Q_QK) {
        int sum;
        y[i].d = q_f2h(q_act_block32(x, y[i].qs, &sum));
    }
}

void q_quant_act_q8_1(const float *x, q_block_q8_1 *y, int64_t nb) {
    for (int64_t i = 0; i < nb; i++, x += Q_QK) {
        int sum;
        const float d = q_act_block32(x, y[i].qs, &sum);
        y[i].d = q_f2h(d);
        y[i].s = q_f2h(d * (float)sum);
    }
}

/* ================================================================ imatrix quantize */

/* Per-element weights of one block: imatrix * sqrt(sigma^2 + x^2). */
static inline void q_block_weights(const float *xb, const float *qw, float sigma2, float *w) {
    for (int j = 0; j < Q_QK; j++) w[j] = qw[j] * sqrtf(sigma2 + xb[j] * xb[j]);
}

static float q_row_sigma2(const float *x, int64_t n) {
    float sum_x2 = 0;
    for (int64_t j = 0; j < n; j++) sum_x2 += x[j] * x[j];
    return sum_x2 / (float)n;
}

void q_quant_q4_0_imat(const float *x, q_block_q4_0 *y, int64_t nb, const float *qw) {
    const float sigma2 = q_row_sigma2(x, nb * Q_QK);
    for (int64_t ib = 0; ib < nb; ib++) {
        const float *xb = x + Q_QK * ib;
        float w[Q_QK];
        int8_t L[Q_QK];
        q_block_weights(xb, qw + Q_QK * ib, sigma2, w);
        float d = q_make_qx_quants(Q_QK, 8, xb, L, w);
        y[ib].d = q_f2h(d);
        q_pack_nibbles((const uint8_t *)L, y[ib].qs);
    }
}

void q_quant_q5_0_imat(const float *x, q_block_q5_0 *y, int64_t nb, const float *qw) {
    const float sigma2 = q_row_sigma2(x, nb * Q_QK);
    for (int64_t ib = 0; ib < nb; ib++) {
        const float *xb = x + Q_QK * ib;
        float w[Q_QK];
        int8_t L[Q_QK];
        q_block_weights(xb, qw + Q_QK * ib, sigma2, w);
        float d = q_make_qx_quants(Q_QK, 16, xb, L, w);
        y[ib].d = q_f2h(d);
        q_pack_5bit((const uint8_t *)L, y[ib].qs, y[ib].qh);
    }
}

void q_quant_q4_1_imat(const float *x, q_block_q4_1 *y, int64_t nb, const float *qw) {
    const float sigma2 = q_row_sigma2(x, nb * Q_QK);
    for (int64_t ib = 0; ib < nb; ib++) {
        const float *xb = x + Q_QK * ib;
        float w[Q_QK], min;
        uint8_t L[Q_QK], Laux[Q_QK];
        q_block_weights(xb, qw + Q_QK * ib, sigma2, w);
        float d = q_make_qkx3_quants(Q_QK, 15, xb, w, L, &min, Laux, -0.9f, 0.05f, 36, 0);
        y[ib].d = q_f2h(d);
        y[ib].m = q_f2h(-min);
        q_pack_nibbles(L, y[ib].qs);
    }
}

void q_quant_q5_1_imat(const float *x, q_block_q5_1 *y, int64_t nb, const float *qw) {
    const float sigma2 = q_row_sigma2(x, nb * Q_QK);
    for (int64_t ib = 0; ib < nb; ib++) {
        const float *xb = x + Q_QK * ib;
        float w[Q_QK], min;
        uint8_t L[Q_QK], Laux[Q_QK];
        q_block_weights(xb, qw + Q_QK * ib, sigma2, w);
        float d = q_make_qkx3_quants(Q_QK, 31, xb, w, L, &min, Laux, -0.9f, 0.05f, 36, 0);
        y[ib].d = q_f2h(d);
        y[ib].m = q_f2h(-min);
        q_pack_5bit(L, y[ib].qs, y[ib].qh);
    }
}

/* ================================================================ dequantize */

void q_dequant_q4_0(const q_block_q4_0 *x, float *y, int64_t nb) {
    for (int64_t i = 0; i < nb; i++, y += Q_QK) {
        const float d = q_h2f(x[i].d);
        for (int j = 0; j < Q_QK / 2; j++) {
            y[j] = (float)((x[i].qs[j] & 0x0F) - 8) * d;
            y[j + Q_QK / 2] = (float)((x[i].qs[j] >> 4) - 8) * d;
        }
    }
}

void q_dequant_q4_1(const q_block_q4_1 *x, float *y, int64_t nb) {
    for (int64_t i = 0; i < nb; i++, y += Q_QK) {
        const float d = q_h2f(x[i].d), m = q_h2f(x[i].m);
        for (int j = 0; j < Q_QK / 2; j++) {
            y[j] = (float)(x[i].qs[j] & 0x0F) * d + m;
            y[j + Q_QK / 2] = (float)(x[i].qs[j] >> 4) * d + m;
        }
    }
}

void q_dequant_q5_0(const q_block_q5_0 *x, float *y, int64_t nb) {
    for (int64_t i = 0; i < nb; i++, y += Q_QK) {
        const float d = q_h2f(x[i].d);
        const uint32_t qh = q_load_qh(x[i].qh);
        for (int j = 0; j < Q_QK / 2; j++) {
            int h0 = (int)((qh >> j) & 1) << 4, h1 = (int)((qh >> (j + 16)) & 1) << 4;
            y[j] = (float)(((x[i].qs[j] & 0x0F) | h0) - 16) * d;
            y[j + Q_QK / 2] = (float)(((x[i].qs[j] >> 4) | h1) - 16) * d;
        }
    }
}

void q_dequant_q5_1(const q_block_q5_1 *x, float *y, int64_t nb) {
    for (int64_t i = 0; i < nb; i++, y += Q_QK) {
        const float d = q_h2f(x[i].d), m = q_h2f(x[i].m);
        const uint32_t qh = q_load_qh(x[i].qh);
        for (int j = 0; j < Q_QK / 2; j++) {
            int h0 = (int)((qh >> j) & 1) << 4, h1 = (int)((qh >> (j + 16)) & 1) << 4;
            y[j] = (float)((x[i].qs[j] & 0x0F) | h0) * d + m;
            y[j + Q_QK / 2] = (float)((x[i].qs[j] >> 4) | h1) * d + m;
        }
    }
}

void q_dequant_q8_0(const q_block_q8_0 *x, float *y, int64_t nb) {
    for (int64_t i = 0; i < nb; i++, y += Q_QK) {
        const float d = q_h2f(x[i].d);
        for (int j = 0; j < Q_QK; j++) y[j] = (float)x[i].qs[j] * d;
    }
}

void q_dequant_q8_1(const q_block_q8_1 *x, float *y, int64_t nb) {
    for (int64_t i = 0; i < nb; i++, y += Q_QK) {
        const float d = q_h2f(x[i].d);
        for (int j = 0; j < Q_QK; j++) y[j] = (float)x[i].qs[j] * d;
    }
}

/* ================================================================ dot products */
/* Per block: exact integer sum of products, then one float multiply-add with the scales. */

float q_dot_q4_0_q8_0(const q_block_q4_0 *x, const q_block_q8_0 *y, int64_t nb) {
    float sumf = 0;
    for (int64_t ib = 0; ib < nb; ib++) {
        int sumi = 0;
        for (int j = 0; j < Q_QK / 2; j++) {
            sumi += ((x[ib].qs[j] & 0x0F) - 8) * y[ib].qs[j];
            sumi += ((x[ib].qs[j] >> 4) - 8) * y[ib].qs[j + Q_QK / 2];
        }
        sumf += (float)sumi * q_h2f(x[ib].d) * q_h2f(y[ib].d);
    }
    return sumf;
}

float q_dot_q4_1_q8_1(const q_block_q4_1 *x, const q_block_q8_1 *y, int64_t nb) {
    float sumf = 0;
    for (int64_t ib = 0; ib < nb; ib++) {
        int sumi = 0;
        for (int j = 0; j < Q_QK / 2; j++) {
            sumi += (x[ib].qs[j] & 0x0F) * y[ib].qs[j];
            sumi += (x[ib].qs[j] >> 4) * y[ib].qs[j + Q_QK / 2];
        }
        /* sum (q*dw + m) * a = dw*da*sum(q*qa) + m * (da*sum(qa)) = ... + m*s */
        sumf += (q_h2f(x[ib].d) * q_h2f(y[ib].d)) * (float)sumi +
                q_h2f(x[ib].m) * q_h2f(y[ib].s);
    }
    return sumf;
}

float q_dot_q5_0_q8_0(const q_block_q5_0 *x, const q_block_q8_0 *y, int64_t nb) {
    float sumf = 0;
    for (int64_t ib = 0; ib < nb; ib++) {
        const uint32_t qh = q_load_qh(x[ib].qh);
        int sumi = 0;
        for (int j = 0; j < Q_QK / 2; j++) {
            int h0 = (int)((qh >> j) & 1) << 4, h1 = (int)((qh >> (j + 16)) & 1) << 4;
            sumi += (((x[ib].qs[j] & 0x0F) | h0) - 16) * y[ib].qs[j];
            sumi += (((x[ib].qs[j] >> 4) | h1) - 16) * y[ib].qs[j + Q_QK / 2];
        }
        sumf += (q_h2f(x[ib].d) * q_h2f(y[ib].d)) * (float)sumi;
    }
    return sumf;
}

float q_dot_q5_1_q8_1(const q_block_q5_1 *x, const q_block_q8_1 *y, int64_t nb) {
    float sumf = 0;
    for (int64_t ib = 0; ib < nb; ib++) {
        const uint32_t qh = q_load_qh(x[ib].qh);
        int sumi = 0;
        for (int j = 0; j < Q_QK / 2; j++) {
            int h0 = (int)((qh >> j) & 1) << 4, h1 = (int)((qh >> (j + 16)) & 1) << 4;
            sumi += ((x[ib].qs[j] & 0x0F) | h0) * y[ib].qs[j];
            sumi += ((x[ib].qs[j] >> 4) | h1) * y[ib].qs[j + Q_QK / 2];
        }
        sumf += (q_h2f(x[ib].d) * q_h2f(y[ib].d)) * (float)sumi +
                q_h2f(x[ib].m) * q_h2f(y[ib].s);
    }
    return sumf;
}

float q_dot_q8_0_q8_0(const q_block_q8_0 *x, const q_block_q8_0 *y, int64_t nb) {
    float sumf = 0;
    for (int64_t ib = 0; ib < nb; ib++) {
        int sumi = 0;
        for (int j = 0; j < Q_QK; j++) sumi += x[ib].qs[j] * y[ib].qs[j];
        sumf += (float)sumi * (q_h2f(x[ib].d) * q_h2f(y[ib].d));
    }
    return sumf;
}
