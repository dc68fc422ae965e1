/* NEON (baseline ARMv8-A Advanced SIMD) kernels: activation quantizers, float dots and the
 * integer dots of every weight type. Semantics: kernels/arm/arm.h. Compiled on aarch64 only,
 * with no extra flags (AdvSIMD and the fp16 conversions are part of ARMv8-A); reached through
 * k_install_neon after a HWCAP_ASIMD check.
 *
 * Integer technique (neon_dots.h): 16 int8 pairs -> vmull_s8 + vmlal_high_s8 (pair sums fit
 * int16) -> vpadalq_s16 into int32 lanes; sub-block scales multiply the int32 lanes; one
 * vaddvq per block. kernels/arm/dotprod/ builds the same source around sdot.
 */
#include <arm_neon.h>
#include <string.h>

#include "kernels/arm/arm.h"

/* acc + the 16 products of a and b: |a[i] b[i] + a[i+8] b[i+8]| <= 2 * 128 * 127 < 2^15 */
static inline int32x4_t dot16_s8(int32x4_t acc, int8x16_t a, int8x16_t b) {
    const int16x8_t p = vmlal_high_s8(vmull_s8(vget_low_s8(a), vget_low_s8(b)), a, b);
    return vpadalq_s16(acc, p);
}

#define K_DOT16(acc, a, b) dot16_s8(acc, a, b)
#define K_FN(name) k_neon_##name
#include "kernels/arm/neon/neon_dots.h"
#undef K_FN
#undef K_DOT16

/* ================================================================ quantizers */

/* x * id -> int8 as q_quantize_act: nearest even (fcvtns); a product that is not finite
 * within [-127.5, 127.5] (infinite inverse scale of a tiny block, NaN) gives 0; clamped to
 * [-127, 127]. */
static inline int32x4_t act_round(float32x4_t v) {
    const uint32x4_t ok = vcaleq_f32(v, vdupq_n_f32(127.5f)); /* |v| <= 127.5, false for NaN */
    const int32x4_t r = vcvtnq_s32_f32(v);
    const int32x4_t c = vmaxq_s32(vminq_s32(r, vdupq_n_s32(127)), vdupq_n_s32(-127));
    return vandq_s32(c, vreinterpretq_s32_u32(ok));
}

/* 8 vectors of 4 int32 in [-127, 127] (elements in order) -> 32 int8 at qs */
static inline void store_32(const int32x4_t q[8], int8_t *qs) {
    for (int k = 0; k < 2; k++) {
        const int16x8_t a = vcombine_s16(vmovn_s32(q[4 * k]), vmovn_s32(q[4 * k + 1]));
        const int16x8_t b = vcombine_s16(vmovn_s32(q[4 * k + 2]), vmovn_s32(q[4 * k + 3]));
        vst1q_s8(qs + 16 * k, vcombine_s8(vmovn_s16(a), vmovn_s16(b)));
    }
}

/* One 32-block as Q8_0 / Q8_1: qs out, returns d = amax/127 and the sum of the quants. */
static inline float quant_block32(const float *x, int8_t *qs, int *sum) {
    float32x4_t v[8], m = vdupq_n_f32(0.0f);
    for (int k = 0; k < 8; k++) {
        v[k] = vld1q_f32(x + 4 * k);
        m = vmaxq_f32(m, vabsq_f32(v[k]));
    }
    const float amax = vmaxvq_f32(m);
    const float d = amax / 127.f;
    const float id = amax != 0.f ? 127.f / amax : 0.0f;
    int32x4_t q[8], s = vdupq_n_s32(0);
    for (int k = 0; k < 8; k++) {
        q[k] = act_round(vmulq_n_f32(v[k], id));
        s = vaddq_s32(s, q[k]);
    }
    store_32(q, qs);
    *sum = vaddvq_s32(s);
    return d;
}

/* fp32 -> fp16 with the hardware's nearest-even conversion (same bits as nd_fp32_to_fp16,
 * NaNs included: both keep the top payload bits and set the quiet bit) */
static inline uint16_t f2h(float f) {
    const __fp16 h = (__fp16)f;
    uint16_t u;
    memcpy(&u, &h, 2);
    return u;
}

int k_neon_quantize_q8_0(const float *x, void *dst, int64_t n) {
    if (n < 0 || n % Q_QK) return ND_EINVAL;
    q_block_q8_0 *y = dst;
    for (int64_t i = 0; i < n / Q_QK; i++) {
        int sum;
        y[i].d = f2h(quant_block32(x + i * Q_QK, y[i].qs, &sum));
    }
    return 0;
}

int k_neon_quantize_q8_1(const float *x, void *dst, int64_t n) {
    if (n < 0 || n % Q_QK) return ND_EINVAL;
    q_block_q8_1 *y = dst;
    for (int64_t i = 0; i < n / Q_QK; i++) {
        int sum;
        const float d = quant_block32(x + i * Q_QK, y[i].qs, &sum);
        y[i].d = f2h(d);
        y[i].s = f2h(d * (float)sum);
    }
    return 0;
}

/* Q8_K as the reference: d = max / -127 where max is the first element of largest |x|
 * (sign kept), quants nearest-even of x * (-127 / max) capped at 127 (the product never
 * goes below -127.5 for a finite scale), bsums over 16. */
static void quant_q8_K_block(const float *x, q_block_q8_K *y) {
    float32x4_t m = vdupq_n_f32(0.0f);
    for (int k = 0; k < Q_QK_K; k += 4) m = vmaxq_f32(m, vabsq_f32(vld1q_f32(x + k)));
    const float amax = vmaxvq_f32(m);
    if (amax == 0.f) {
        memset(y, 0, sizeof *y);
        return;
    }
    int first = 0;
    for (int k = 0; k < Q_QK_K; k += 4)
        if (vmaxvq_u32(vceqq_f32(vabsq_f32(vld1q_f32(x + k)), vdupq_n_f32(amax)))) {
            first = k;
            while (first < k + 3 && !(x[first] == amax || x[first] == -amax)) first++;
            break;
        }
    const float iscale = -127.f / x[first];
    for (int g = 0; g < Q_QK_K; g += 32) {
        int32x4_t q[8];
        for (int k = 0; k < 8; k++) {
            const float32x4_t v = vmulq_n_f32(vld1q_f32(x + g + 4 * k), iscale);
            const uint32x4_t ok = vcaleq_f32(v, vdupq_n_f32(127.5f));
            const int32x4_t r = vminq_s32(vcvtnq_s32_f32(v), vdupq_n_s32(127));
            q[k] = vandq_s32(r, vreinterpretq_s32_u32(ok));
        }
        store_32(q, y->qs + g);
        y->bsums[g / 16] = vaddlvq_s8(vld1q_s8(y->qs + g));
        y->bsums[g / 16 + 1] = vaddlvq_s8(vld1q_s8(y->qs + g + 16));
    }
    y->d = 1 / iscale;
}

int k_neon_quantize_q8_K(const float *x, void *dst, int64_t n) {
    if (n < 0 || n % Q_QK_K) return ND_EINVAL;
    q_block_q8_K *y = dst;
    for (int64_t i = 0; i < n / Q_QK_K; i++) quant_q8_K_block(x + i * Q_QK_K, &y[i]);
    return 0;
}

int k_neon_quantize_f16(const float *x, void *dst, int64_t n) {
    if (n < 0) return ND_EINVAL;
    uint8_t *d = dst;
    int64_t i = 0;
    for (; i + 8 <= n; i += 8) {
        const float16x8_t h = vcvt_high_f16_f32(vcvt_f16_f32(vld1q_f32(x + i)), vld1q_f32(x + i + 4));
        vst1q_u8(d + 2 * i, vreinterpretq_u8_f16(h));
    }
    for (; i < n; i++) {
        const uint16_t h = f2h(x[i]);
        memcpy(d + 2 * i, &h, 2);
    }
    return 0;
}

/* bf16 round to nearest even: (u + 0x7fff + ((u >> 16) & 1)) >> 16; NaN -> quiet NaN */
int k_neon_quantize_bf16(const float *x, void *dst, int64_t n) {
    if (n < 0) return ND_EINVAL;
    uint8_t *d = dst;
    int64_t i = 0;
    const uint32x4_t one = vdupq_n_u32(1), bias = vdupq_n_u32(0x7fff);
    const uint32x4_t absm = vdupq_n_u32(0x7fffffff), inf = vdupq_n_u32(0x7f800000);
    for (; i + 8 <= n; i += 8) {
        uint16x4_t r[2];
        for (int k = 0; k < 2; k++) {
            const uint32x4_t u = vreinterpretq_u32_f32(vld1q_f32(x + i + 4 * k));
            const uint32x4_t lsb = vandq_u32(vshrq_n_u32(u, 16), one);
            const uint16x4_t v = vshrn_n_u32(vaddq_u32(u, vaddq_u32(bias, lsb)), 16);
            const uint16x4_t qn = vorr_u16(vshrn_n_u32(u, 16), vdup_n_u16(64));
            const uint16x4_t nan = vmovn_u32(vcgtq_u32(vandq_u32(u, absm), inf));
            r[k] = vbsl_u16(nan, qn, v);
        }
        vst1q_u8(d + 2 * i, vreinterpretq_u8_u16(vcombine_u16(r[0], r[1])));
    }
    for (; i < n; i++) {
        const uint16_t h = nd_fp32_to_bf16(x[i]);
        memcpy(d + 2 * i, &h, 2);
    }
    return 0;
}

/* ================================================================ float dots */

/* Four float32x4 accumulators with FMA; the reference sums in double (see arm.h). */
float k_neon_dot_f32(const void *w, const void *a, int64_t n) {
    const float *x = w, *y = a;
    float32x4_t acc[4] = {vdupq_n_f32(0), vdupq_n_f32(0), vdupq_n_f32(0), vdupq_n_f32(0)};
    int64_t i = 0;
    for (; i + 16 <= n; i += 16)
        for (int k = 0; k < 4; k++)
            acc[k] = vfmaq_f32(acc[k], vld1q_f32(x + i + 4 * k), vld1q_f32(y + i + 4 * k));
    for (; i + 4 <= n; i += 4) acc[0] = vfmaq_f32(acc[0], vld1q_f32(x + i), vld1q_f32(y + i));
    float s = vaddvq_f32(vaddq_f32(vaddq_f32(acc[0], acc[1]), vaddq_f32(acc[2], acc[3])));
    for (; i < n; i++) s += x[i] * y[i];
    return s;
}

/* 8 halves at p (any alignment) -> two float32x4 (elements 0..3, 4..7); exact */
static inline void load_f16x8(const uint8_t *p, float32x4_t *lo, float32x4_t *hi) {
    const float16x8_t h = vreinterpretq_f16_u8(vld1q_u8(p));
    *lo = vcvt_f32_f16(vget_low_f16(h));
    *hi = vcvt_high_f32_f16(h);
}

static inline void load_bf16x8(const uint8_t *p, float32x4_t *lo, float32x4_t *hi) {
    const uint16x8_t u = vreinterpretq_u16_u8(vld1q_u8(p));
    *lo = vreinterpretq_f32_u32(vshll_n_u16(vget_low_u16(u), 16));
    *hi = vreinterpretq_f32_u32(vshll_high_n_u16(u, 16));
}

static inline float bf2f(const uint8_t *p) {
    uint16_t h;
    memcpy(&h, p, 2);
    return nd_bf16_to_fp32(h);
}

/* products of two halves are exact in f32; 16 elements per step in four accumulators */
#define HALF_DOT(NAME, LOAD, CVT)                                                        \
    float NAME(const void *w, const void *a, int64_t n) {                                \
        const uint8_t *x = w, *y = a;                                                    \
        float32x4_t acc[4] = {vdupq_n_f32(0), vdupq_n_f32(0), vdupq_n_f32(0), vdupq_n_f32(0)}; \
        float32x4_t x0, x1, x2, x3, y0, y1, y2, y3;                                      \
        int64_t i = 0;                                                                   \
        for (; i + 16 <= n; i += 16) {                                                   \
            LOAD(x + 2 * i, &x0, &x1);                                                   \
            LOAD(x + 2 * i + 16, &x2, &x3);                                              \
            LOAD(y + 2 * i, &y0, &y1);                                                   \
            LOAD(y + 2 * i + 16, &y2, &y3);                                              \
            acc[0] = vfmaq_f32(acc[0], x0, y0);                                          \
            acc[1] = vfmaq_f32(acc[1], x1, y1);                                          \
            acc[2] = vfmaq_f32(acc[2], x2, y2);                                          \
            acc[3] = vfmaq_f32(acc[3], x3, y3);                                          \
        }                                                                                \
        for (; i + 8 <= n; i += 8) {                                                     \
            LOAD(x + 2 * i, &x0, &x1);                                                   \
            LOAD(y + 2 * i, &y0, &y1);                                                   \
            acc[0] = vfmaq_f32(acc[0], x0, y0);                                          \
            acc[1] = vfmaq_f32(acc[1], x1, y1);                                          \
        }                                                                                \
        float s = vaddvq_f32(vaddq_f32(vaddq_f32(acc[0], acc[1]), vaddq_f32(acc[2], acc[3]))); \
        for (; i < n; i++) s += CVT(x + 2 * i) * CVT(y + 2 * i);                         \
        return s;                                                                        \
    }
HALF_DOT(k_neon_dot_f16, load_f16x8, h2f)
HALF_DOT(k_neon_dot_bf16, load_bf16x8, bf2f)
#undef HALF_DOT

/* ================================================================ install */

#define K_ARM_SET(T, A, NAME, DOT, Q)                                                    \
    do {                                                                                 \
        k_ops *o_ = &k->ops[ND_TYPE_##T];                                                \
        o_->name = NAME;                                                                 \
        o_->atype = ND_TYPE_##A;                                                         \
        o_->vec_dot = DOT;                                                               \
        o_->quantize = Q;                                                                \
        o_->vec_dot4 = NULL;                                                             \
        o_->vec_dot4n = NULL;                                                            \
        o_->act_prep = NULL;                                                             \
    } while (0)

void k_install_neon(k_kernels *k) {
#define E(T, A, DOT, Q) K_ARM_SET(T, A, "neon", DOT, Q)
    E(F32, F32, k_neon_dot_f32, k->ops[ND_TYPE_F32].quantize);
    E(F16, F16, k_neon_dot_f16, k_neon_quantize_f16);
    E(BF16, BF16, k_neon_dot_bf16, k_neon_quantize_bf16);
    E(Q4_0, Q8_0, k_neon_dot_q4_0, k_neon_quantize_q8_0);
    E(Q4_1, Q8_1, k_neon_dot_q4_1, k_neon_quantize_q8_1);
    E(Q5_0, Q8_0, k_neon_dot_q5_0, k_neon_quantize_q8_0);
    E(Q5_1, Q8_1, k_neon_dot_q5_1, k_neon_quantize_q8_1);
    E(Q8_0, Q8_0, k_neon_dot_q8_0, k_neon_quantize_q8_0);
    E(Q2_K, Q8_K, k_neon_dot_q2_K, k_neon_quantize_q8_K);
    E(Q3_K, Q8_K, k_neon_dot_q3_K, k_neon_quantize_q8_K);
    E(Q4_K, Q8_K, k_neon_dot_q4_K, k_neon_quantize_q8_K);
    E(Q5_K, Q8_K, k_neon_dot_q5_K, k_neon_quantize_q8_K);
    E(Q6_K, Q8_K, k_neon_dot_q6_K, k_neon_quantize_q8_K);
#undef E
}
