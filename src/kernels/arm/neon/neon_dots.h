/* Integer weight x activation dots for aarch64 (Q4_0 .. Q8_0, Q2_K .. Q6_K), one source for
 * two files: kernels/arm/neon/neon.c (baseline ARMv8-A) and kernels/arm/dotprod/dotprod.c
 * (ARMv8.2 sdot). Include once per file after defining
 *
 *   K_DOT16(acc, a, b)  acc (int32x4_t) plus the 16 products a[i] * b[i] of two int8x16_t,
 *                       spread over the 4 lanes in any grouping, exactly;
 *   K_FN(name)          the exported name of kernel `name` (k_neon_##name, ...).
 *
 * Every kernel forms the exact integer sum of a block (32-blocks) or super-block (K-quants,
 * sub-block scales applied in int32 lanes), reduces it to one int, and then evaluates the
 * reference's float expression for that block in the reference's order (quant/q_blocks32.c,
 * quant/q_kdot.c): the result is q_vec_dot's float, bit for bit. The C11 build does not
 * contract a*b+c into FMA, here or in the reference.
 *
 * Ranges: weights become int8 in [-128, 127] (Q8_0 may hold -128), activations are in
 * [-127, 127]; a product is at most 128 * 127 and two of them fit int16 (K_DOT16's baseline
 * form). Sub-block sums times 6-bit (or int8) scales stay far below 2^31 per lane.
 */
#ifndef K_DOT16
#error "define K_DOT16 and K_FN before including neon_dots.h"
#endif

#include <arm_neon.h>
#include <string.h>

#include "kernels/arm/arm.h"
#include "quant/quant.h"

/* fp16 at an unaligned address; exact for every finite value (as nd_fp16_to_fp32) */
static inline float h2f(const void *p) {
    __fp16 h;
    memcpy(&h, p, 2);
    return (float)h;
}

static inline int8x16_t s8(uint8x16_t v) { return vreinterpretq_s8_u8(v); }

/* sum of x[i] * y[i] over 32 int8 pairs, exact */
static inline int dot32(int8x16_t x0, int8x16_t x1, const int8_t *y) {
    const int32x4_t p = K_DOT16(K_DOT16(vdupq_n_s32(0), x0, vld1q_s8(y)), x1, vld1q_s8(y + 16));
    return vaddvq_s32(p);
}

/* bits of b0 (elements 0..7) and b1 (8..15) -> 16 bytes: 0x10 where the bit is set */
static inline uint8x16_t bits_to_0x10(uint8_t b0, uint8_t b1) {
    const uint8x16_t v = vcombine_u8(vdup_n_u8(b0), vdup_n_u8(b1));
    const uint8x16_t bit = vreinterpretq_u8_u64(vdupq_n_u64(0x8040201008040201ull));
    return vandq_u8(vtstq_u8(v, bit), vdupq_n_u8(0x10));
}

/* ================================================================ 32-blocks */

float K_FN(dot_q8_0)(const void *w, const void *a, int64_t n) {
    const q_block_q8_0 *x = w;
    const q_block_q8_0 *y = a;
    const int64_t nb = n / Q_QK;
    float sumf = 0;
    for (int64_t i = 0; i < nb; i++) {
        const int sumi = dot32(vld1q_s8(x[i].qs), vld1q_s8(x[i].qs + 16), y[i].qs);
        sumf += (float)sumi * (h2f(&x[i].d) * h2f(&y[i].d));
    }
    return sumf;
}

float K_FN(dot_q4_0)(const void *w, const void *a, int64_t n) {
    const q_block_q4_0 *x = w;
    const q_block_q8_0 *y = a;
    const int64_t nb = n / Q_QK;
    const uint8x16_t m4 = vdupq_n_u8(0x0F);
    const int8x16_t off = vdupq_n_s8(8);
    float sumf = 0;
    for (int64_t i = 0; i < nb; i++) {
        const uint8x16_t q = vld1q_u8(x[i].qs); /* byte j: element j low, j + 16 high */
        const int8x16_t lo = vsubq_s8(s8(vandq_u8(q, m4)), off);
        const int8x16_t hi = vsubq_s8(s8(vshrq_n_u8(q, 4)), off);
        const int sumi = dot32(lo, hi, y[i].qs);
        sumf += (float)sumi * h2f(&x[i].d) * h2f(&y[i].d);
    }
    return sumf;
}

float K_FN(dot_q5_0)(const void *w, const void *a, int64_t n) {
    const q_block_q5_0 *x = w;
    const q_block_q8_0 *y = a;
    const int64_t nb = n / Q_QK;
    const uint8x16_t m4 = vdupq_n_u8(0x0F);
    const int8x16_t off = vdupq_n_s8(16);
    float sumf = 0;
    for (int64_t i = 0; i < nb; i++) {
        const uint8x16_t q = vld1q_u8(x[i].qs);
        const uint8_t *qh = x[i].qh; /* bit j of the LE u32 = 5th bit of element j */
        const int8x16_t lo = vsubq_s8(s8(vorrq_u8(vandq_u8(q, m4), bits_to_0x10(qh[0], qh[1]))), off);
        const int8x16_t hi = vsubq_s8(s8(vorrq_u8(vshrq_n_u8(q, 4), bits_to_0x10(qh[2], qh[3]))), off);
        const int sumi = dot32(lo, hi, y[i].qs);
        sumf += (h2f(&x[i].d) * h2f(&y[i].d)) * (float)sumi;
    }
    return sumf;
}

/* Q4_1 / Q5_1: sum (q*dw + m) * a = dw*da*sum(q*qa) + m*s (s = da * sum(qa) from Q8_1) */
float K_FN(dot_q4_1)(const void *w, const void *a, int64_t n) {
    const q_block_q4_1 *x = w;
    const q_block_q8_1 *y = a;
    const int64_t nb = n / Q_QK;
    const uint8x16_t m4 = vdupq_n_u8(0x0F);
    float sumf = 0;
    for (int64_t i = 0; i < nb; i++) {
        const uint8x16_t q = vld1q_u8(x[i].qs);
        const int sumi = dot32(s8(vandq_u8(q, m4)), s8(vshrq_n_u8(q, 4)), y[i].qs);
        sumf += (h2f(&x[i].d) * h2f(&y[i].d)) * (float)sumi + h2f(&x[i].m) * h2f(&y[i].s);
    }
    return sumf;
}

float K_FN(dot_q5_1)(const void *w, const void *a, int64_t n) {
    const q_block_q5_1 *x = w;
    const q_block_q8_1 *y = a;
    const int64_t nb = n / Q_QK;
    const uint8x16_t m4 = vdupq_n_u8(0x0F);
    float sumf = 0;
    for (int64_t i = 0; i < nb; i++) {
        const uint8x16_t q = vld1q_u8(x[i].qs);
        const uint8_t *qh = x[i].qh;
        const uint8x16_t lo = vorrq_u8(vandq_u8(q, m4), bits_to_0x10(qh[0], qh[1]));
        const uint8x16_t hi = vorrq_u8(vshrq_n_u8(q, 4), bits_to_0x10(qh[2], qh[3]));
        const int sumi = dot32(s8(lo), s8(hi), y[i].qs);
        sumf += (h2f(&x[i].d) * h2f(&y[i].d)) * (float)sumi + h2f(&x[i].m) * h2f(&y[i].s);
    }
    return sumf;
}

/* ================================================================ K-quants */

/* Q4_K/Q5_K packed 6-bit scales and mins (layout in quant.h) -> sc[j], mn[j] for the 8
 * sub-blocks of 32, with 32-bit word operations. */
static inline void unpack_scales_k4(const uint8_t *b, uint8_t sc[8], uint8_t mn[8]) {
    uint32_t u0, u1, u2;
    memcpy(&u0, b, 4);
    memcpy(&u1, b + 4, 4);
    memcpy(&u2, b + 8, 4);
    const uint32_t s[2] = {u0 & 0x3f3f3f3fu, (u2 & 0x0f0f0f0fu) | ((u0 >> 2) & 0x30303030u)};
    const uint32_t m[2] = {u1 & 0x3f3f3f3fu, ((u2 >> 4) & 0x0f0f0f0fu) | ((u1 >> 2) & 0x30303030u)};
    memcpy(sc, s, 8);
    memcpy(mn, m, 8);
}

/* sum_j mn[j] * (bsums[2j] + bsums[2j+1]) over the 8 sub-blocks of 32 */
static inline int mins_dot_bsums8(const uint8_t mn[8], const int16_t *bsums) {
    const int16x8_t b = vpaddq_s16(vld1q_s16(bsums), vld1q_s16(bsums + 8));
    const int16x8_t m = vreinterpretq_s16_u16(vmovl_u8(vld1_u8(mn)));
    return vaddvq_s32(vmlal_high_s16(vmull_s16(vget_low_s16(b), vget_low_s16(m)), b, m));
}

/* Q4_K and Q5_K after the levels of one 64-element chunk j are in lo0 lo1 (sub-block 2j)
 * and hi0 hi1 (sub-block 2j + 1): acc += scale * dot, per lane */
static inline int32x4_t k4_chunk(int32x4_t acc, uint8x16_t lo0, uint8x16_t lo1, uint8x16_t hi0,
                                 uint8x16_t hi1, const int8_t *y, uint8_t sc_lo, uint8_t sc_hi) {
    const int32x4_t z = vdupq_n_s32(0);
    const int32x4_t plo = K_DOT16(K_DOT16(z, s8(lo0), vld1q_s8(y)), s8(lo1), vld1q_s8(y + 16));
    const int32x4_t phi = K_DOT16(K_DOT16(z, s8(hi0), vld1q_s8(y + 32)), s8(hi1), vld1q_s8(y + 48));
    return vmlaq_n_s32(vmlaq_n_s32(acc, plo, sc_lo), phi, sc_hi);
}

float K_FN(dot_q4_K)(const void *w, const void *a, int64_t n) {
    const q_block_q4_K *x = w;
    const q_block_q8_K *y = a;
    const int64_t nb = n / Q_QK_K;
    const uint8x16_t m4 = vdupq_n_u8(0x0F);
    float sumf = 0;
    for (int64_t i = 0; i < nb; i++) {
        uint8_t sc[8], mn[8];
        unpack_scales_k4(x[i].scales, sc, mn);
        const int summs = mins_dot_bsums8(mn, y[i].bsums);
        int32x4_t acc = vdupq_n_s32(0);
        for (int j = 0; j < 4; j++) {
            const uint8x16_t q0 = vld1q_u8(x[i].qs + 32 * j), q1 = vld1q_u8(x[i].qs + 32 * j + 16);
            acc = k4_chunk(acc, vandq_u8(q0, m4), vandq_u8(q1, m4), vshrq_n_u8(q0, 4),
                           vshrq_n_u8(q1, 4), y[i].qs + 64 * j, sc[2 * j], sc[2 * j + 1]);
        }
        const int isum = vaddvq_s32(acc);
        const float d = h2f(&x[i].d) * y[i].d;
        const float dmin = h2f(&x[i].dmin) * y[i].d;
        sumf += d * (float)isum - dmin * (float)summs;
    }
    return sumf;
}

float K_FN(dot_q5_K)(const void *w, const void *a, int64_t n) {
    const q_block_q5_K *x = w;
    const q_block_q8_K *y = a;
    const int64_t nb = n / Q_QK_K;
    const uint8x16_t m4 = vdupq_n_u8(0x0F), b1 = vdupq_n_u8(1), b2 = vdupq_n_u8(2);
    float sumf = 0;
    for (int64_t i = 0; i < nb; i++) {
        uint8_t sc[8], mn[8];
        unpack_scales_k4(x[i].scales, sc, mn);
        const int summs = mins_dot_bsums8(mn, y[i].bsums);
        /* bit 2j of qh byte l: 5th bit of element 64j + l; bit 2j + 1: of 64j + 32 + l.
         * h0, h1 are shifted right by 2 per chunk so the chunk's bits sit at 0 and 1. */
        uint8x16_t h0 = vld1q_u8(x[i].qh), h1 = vld1q_u8(x[i].qh + 16);
        int32x4_t acc = vdupq_n_s32(0);
        for (int j = 0; j < 4; j++) {
            const uint8x16_t q0 = vld1q_u8(x[i].qs + 32 * j), q1 = vld1q_u8(x[i].qs + 32 * j + 16);
            const uint8x16_t lo0 = vorrq_u8(vandq_u8(q0, m4), vshlq_n_u8(vandq_u8(h0, b1), 4));
            const uint8x16_t lo1 = vorrq_u8(vandq_u8(q1, m4), vshlq_n_u8(vandq_u8(h1, b1), 4));
            const uint8x16_t hi0 = vorrq_u8(vshrq_n_u8(q0, 4), vshlq_n_u8(vandq_u8(h0, b2), 3));
            const uint8x16_t hi1 = vorrq_u8(vshrq_n_u8(q1, 4), vshlq_n_u8(vandq_u8(h1, b2), 3));
            acc = k4_chunk(acc, lo0, lo1, hi0, hi1, y[i].qs + 64 * j, sc[2 * j], sc[2 * j + 1]);
            h0 = vshrq_n_u8(h0, 2);
            h1 = vshrq_n_u8(h1, 2);
        }
        const int isum = vaddvq_s32(acc);
        const float d = h2f(&x[i].d) * y[i].d;
        const float dmin = h2f(&x[i].dmin) * y[i].d;
        sumf += d * (float)isum - dmin * (float)summs;
    }
    return sumf;
}

/* Q6_K: level q in 0..63, value q - 32; one 16-byte vector = one sub-block of 16. */
float K_FN(dot_q6_K)(const void *w, const void *a, int64_t n) {
    const q_block_q6_K *x = w;
    const q_block_q8_K *y = a;
    const int64_t nb = n / Q_QK_K;
    const uint8x16_t m4 = vdupq_n_u8(0x0F), m30 = vdupq_n_u8(0x30);
    const int8x16_t off = vdupq_n_s8(32);
    const int32x4_t z = vdupq_n_s32(0);
    float sumf = 0;
    for (int64_t i = 0; i < nb; i++) {
        int32x4_t acc = vdupq_n_s32(0);
        for (int h = 0; h < 2; h++) {
            const uint8_t *ql = x[i].ql + 64 * h, *qh = x[i].qh + 32 * h;
            const int8_t *q8 = y[i].qs + 128 * h, *sc = x[i].scales + 8 * h;
            for (int k = 0; k < 2; k++) { /* elements l = 16k .. 16k + 15 of each quarter */
                const uint8x16_t l0 = vld1q_u8(ql + 16 * k), l1 = vld1q_u8(ql + 32 + 16 * k);
                const uint8x16_t hb = vld1q_u8(qh + 16 * k);
                uint8x16_t q[4];
                q[0] = vorrq_u8(vandq_u8(l0, m4), vandq_u8(vshlq_n_u8(hb, 4), m30));
                q[1] = vorrq_u8(vandq_u8(l1, m4), vandq_u8(vshlq_n_u8(hb, 2), m30));
                q[2] = vorrq_u8(vshrq_n_u8(l0, 4), vandq_u8(hb, m30));
                q[3] = vorrq_u8(vshrq_n_u8(l1, 4), vandq_u8(vshrq_n_u8(hb, 2), m30));
                for (int s = 0; s < 4; s++) { /* elements 32s + 16k + 0..15: sub-block 2s + k */
                    const int32x4_t p = K_DOT16(z, vsubq_s8(s8(q[s]), off), vld1q_s8(q8 + 32 * s + 16 * k));
                    acc = vmlaq_n_s32(acc, p, sc[2 * s + k]);
                }
            }
        }
        const int isum = vaddvq_s32(acc);
        const float d = h2f(&x[i].d) * y[i].d;
        sumf += d * (float)isum;
    }
    return sumf;
}

/* Q3_K scales: 16 6-bit values, offset 32 removed (layout in quant.h), with 32-bit word
 * operations: word k holds scales 4k..4k+3 = low nibbles | (bits 2k..2k+1 of s[8..11]) << 4. */
static inline void unpack_scales_q3(const uint8_t *s, int8_t out[16]) {
    uint32_t u0, u1, u2;
    memcpy(&u0, s, 4);
    memcpy(&u1, s + 4, 4);
    memcpy(&u2, s + 8, 4);
    const uint32_t m4 = 0x0f0f0f0fu, m2 = 0x03030303u;
    const uint32_t v[4] = {(u0 & m4) | ((u2 & m2) << 4), (u1 & m4) | (((u2 >> 2) & m2) << 4),
                           ((u0 >> 4) & m4) | (((u2 >> 4) & m2) << 4),
                           ((u1 >> 4) & m4) | (((u2 >> 6) & m2) << 4)};
    vst1q_s8(out, vsubq_s8(vreinterpretq_s8_u32(vld1q_u32(v)), vdupq_n_s8(32)));
}

/* Q3_K: level u = q2 + 4*hbit in 0..7, value u - 4. Chunk c (32 elements: sub-blocks 2c,
 * 2c + 1) takes bits 2s..2s+1 of qs half h (c = 4h + s) and bit c of hmask. */
float K_FN(dot_q3_K)(const void *w, const void *a, int64_t n) {
    const q_block_q3_K *x = w;
    const q_block_q8_K *y = a;
    const int64_t nb = n / Q_QK_K;
    const uint8x16_t m3 = vdupq_n_u8(3), b1 = vdupq_n_u8(1);
    const int8x16_t off = vdupq_n_s8(4);
    const int32x4_t z = vdupq_n_s32(0);
    float sumf = 0;
    for (int64_t i = 0; i < nb; i++) {
        int8_t sc[16];
        unpack_scales_q3(x[i].scales, sc);
        uint8x16_t h0 = vld1q_u8(x[i].hmask), h1 = vld1q_u8(x[i].hmask + 16); /* >> 1 per chunk */
        int32x4_t acc = vdupq_n_s32(0);
        for (int h = 0; h < 2; h++) {
            uint8x16_t q0 = vld1q_u8(x[i].qs + 32 * h), q1 = vld1q_u8(x[i].qs + 32 * h + 16);
            for (int s = 0; s < 4; s++) {
                const int c = 4 * h + s;
                const uint8x16_t u0 = vorrq_u8(vandq_u8(q0, m3), vshlq_n_u8(vandq_u8(h0, b1), 2));
                const uint8x16_t u1 = vorrq_u8(vandq_u8(q1, m3), vshlq_n_u8(vandq_u8(h1, b1), 2));
                const int32x4_t p0 = K_DOT16(z, vsubq_s8(s8(u0), off), vld1q_s8(y[i].qs + 32 * c));
                const int32x4_t p1 = K_DOT16(z, vsubq_s8(s8(u1), off), vld1q_s8(y[i].qs + 32 * c + 16));
                acc = vmlaq_n_s32(vmlaq_n_s32(acc, p0, sc[2 * c]), p1, sc[2 * c + 1]);
                q0 = vshrq_n_u8(q0, 2);
                q1 = vshrq_n_u8(q1, 2);
                h0 = vshrq_n_u8(h0, 1);
                h1 = vshrq_n_u8(h1, 1);
            }
        }
        const int isum = vaddvq_s32(acc);
        const float d = h2f(&x[i].d) * y[i].d;
        sumf += d * (float)isum;
    }
    return sumf;
}

/* Q2_K: scales byte j = scale (low nibble) | min (high nibble) of sub-block j of 16; the
 * level layout is Q3_K's low bits. */
float K_FN(dot_q2_K)(const void *w, const void *a, int64_t n) {
    const q_block_q2_K *x = w;
    const q_block_q8_K *y = a;
    const int64_t nb = n / Q_QK_K;
    const uint8x16_t m3 = vdupq_n_u8(3), m4 = vdupq_n_u8(0x0F);
    const int32x4_t z = vdupq_n_s32(0);
    float sumf = 0;
    for (int64_t i = 0; i < nb; i++) {
        const uint8x16_t sm = vld1q_u8(x[i].scales);
        uint8_t sc[16];
        vst1q_u8(sc, vandq_u8(sm, m4));
        const uint8x16_t mins = vshrq_n_u8(sm, 4);
        const int16x8_t mlo = vreinterpretq_s16_u16(vmovl_u8(vget_low_u8(mins)));
        const int16x8_t mhi = vreinterpretq_s16_u16(vmovl_high_u8(mins));
        const int16x8_t blo = vld1q_s16(y[i].bsums), bhi = vld1q_s16(y[i].bsums + 8);
        int32x4_t ms = vmlal_high_s16(vmull_s16(vget_low_s16(blo), vget_low_s16(mlo)), blo, mlo);
        ms = vmlal_high_s16(vmlal_s16(ms, vget_low_s16(bhi), vget_low_s16(mhi)), bhi, mhi);
        const int summs = vaddvq_s32(ms);
        int32x4_t acc = vdupq_n_s32(0);
        for (int h = 0; h < 2; h++) {
            uint8x16_t q0 = vld1q_u8(x[i].qs + 32 * h), q1 = vld1q_u8(x[i].qs + 32 * h + 16);
            for (int s = 0; s < 4; s++) {
                const int c = 4 * h + s;
                const int32x4_t p0 = K_DOT16(z, s8(vandq_u8(q0, m3)), vld1q_s8(y[i].qs + 32 * c));
                const int32x4_t p1 = K_DOT16(z, s8(vandq_u8(q1, m3)), vld1q_s8(y[i].qs + 32 * c + 16));
                acc = vmlaq_n_s32(vmlaq_n_s32(acc, p0, sc[2 * c]), p1, sc[2 * c + 1]);
                q0 = vshrq_n_u8(q0, 2);
                q1 = vshrq_n_u8(q1, 2);
            }
        }
        const int isum = vaddvq_s32(acc);
        const float dall = y[i].d * h2f(&x[i].d);
        const float dmin = y[i].d * h2f(&x[i].dmin);
        sumf += dall * (float)isum - dmin * (float)summs;
    }
    return sumf;
}
