/* AVX2 (+FMA, F16C) kernels: activation quantizers and weight x activation dots for every
 * weight type. Semantics: kernels/x86/x86.h. Compiled with -mavx2 -mfma -mf16c -mbmi2
 * only; reached through k_install_avx2 after a cpuid check.
 *
 * Integer technique: weights are expanded to bytes, activations stay int8; u8 x s8 pairs go
 * through vpmaddubsw (pair sums fit int16 for every format: at most 2*63*128 for Q6_K,
 * 2*128*127 for Q8_0 after the sign trick), then vpmaddwd against ones or the sub-block
 * scales gives exact int32 lanes. Each block's int32 lanes are converted to float (exact:
 * |lane| < 2^24) and scaled into float accumulators with FMA, so the per-block integer sum
 * is never rounded before it is scaled — the result differs from the reference only in the
 * order of float additions.
 */
#include <immintrin.h>
#include <string.h>

#include "kernels/x86/x86.h"
#include "kernels/x86/avx2/avx2_inl.h"

/* sum over pairs of u8 x s8, then over pairs of int16 -> 8 int32 lanes */
static inline __m256i dot_u8s8(__m256i u, __m256i s) {
    return _mm256_madd_epi16(_mm256_maddubs_epi16(u, s), _mm256_set1_epi16(1));
}

/* s8 x s8 (x may be -128; y must not be): |x| as u8, y with x's sign. */
static inline __m256i dot_s8s8(__m256i x, __m256i y) {
    return dot_u8s8(_mm256_sign_epi8(x, x), _mm256_sign_epi8(y, x));
}

/* ================================================================ quantizers */

/* x -> int8 as q_quantize_act (llama.cpp's x86 rule): nearest even; a product that is not
 * finite within [-127.5, 127.5] (infinite inverse scale of a tiny block, NaN) gives 0;
 * clamped to [-127, 127]. Returns 8 int32 lanes. */
static inline __m256i act_round(__m256 v) {
    const __m256 a = _mm256_andnot_ps(_mm256_set1_ps(-0.0f), v);
    const __m256 ok = _mm256_cmp_ps(a, _mm256_set1_ps(127.5f), _CMP_LE_OQ);
    const __m256i r = _mm256_cvtps_epi32(_mm256_round_ps(v, _MM_FROUND_TO_NEAREST_INT | _MM_FROUND_NO_EXC));
    const __m256i c = _mm256_max_epi32(_mm256_min_epi32(r, _mm256_set1_epi32(127)), _mm256_set1_epi32(-127));
    return _mm256_and_si256(c, _mm256_castps_si256(ok));
}

/* four vectors of 8 int32 in [-127, 127] (elements 0..31 in order) -> 32 bytes in order */
static inline __m256i pack_32(__m256i i0, __m256i i1, __m256i i2, __m256i i3) {
    const __m256i p = _mm256_packs_epi16(_mm256_packs_epi32(i0, i1), _mm256_packs_epi32(i2, i3));
    return _mm256_permutevar8x32_epi32(p, _mm256_setr_epi32(0, 4, 1, 5, 2, 6, 3, 7));
}

/* One 32-block as Q8_0 / Q8_1: qs out, returns d = amax/127 and the sum of the quants. */
static inline float quant_block32(const float *x, int8_t *qs, int *sum) {
    const __m256 sgn = _mm256_set1_ps(-0.0f);
    __m256 v[4];
    for (int k = 0; k < 4; k++) v[k] = _mm256_loadu_ps(x + 8 * k);
    __m256 m = _mm256_max_ps(_mm256_max_ps(_mm256_andnot_ps(sgn, v[0]), _mm256_andnot_ps(sgn, v[1])),
                             _mm256_max_ps(_mm256_andnot_ps(sgn, v[2]), _mm256_andnot_ps(sgn, v[3])));
    const float amax = hmax_ps(m);
    const float d = amax / 127.f;
    const __m256 vid = _mm256_set1_ps(amax != 0.f ? 127.f / amax : 0.0f);
    __m256i q[4];
    for (int k = 0; k < 4; k++) q[k] = act_round(_mm256_mul_ps(v[k], vid));
    _mm256_storeu_si256((__m256i *)qs, pack_32(q[0], q[1], q[2], q[3]));
    if (sum)
        *sum = hsum_epi32(_mm256_add_epi32(_mm256_add_epi32(q[0], q[1]), _mm256_add_epi32(q[2], q[3])));
    return d;
}

int k_avx2_quantize_q8_0(const float *x, void *dst, int64_t n) {
    if (n < 0 || n % Q_QK) return ND_EINVAL;
    q_block_q8_0 *y = dst;
    for (int64_t i = 0; i < n / Q_QK; i++) {
        const float d = quant_block32(x + i * Q_QK, y[i].qs, NULL);
        y[i].d = (uint16_t)_cvtss_sh(d, _MM_FROUND_TO_NEAREST_INT);
    }
    return 0;
}

int k_avx2_quantize_q8_1(const float *x, void *dst, int64_t n) {
    if (n < 0 || n % Q_QK) return ND_EINVAL;
    q_block_q8_1 *y = dst;
    for (int64_t i = 0; i < n / Q_QK; i++) {
        int sum;
        const float d = quant_block32(x + i * Q_QK, y[i].qs, &sum);
        y[i].d = (uint16_t)_cvtss_sh(d, _MM_FROUND_TO_NEAREST_INT);
        y[i].s = (uint16_t)_cvtss_sh(d * (float)sum, _MM_FROUND_TO_NEAREST_INT);
    }
    return 0;
}

/* Q8_K: d = max / -127 where max is the first element of largest |x| (sign kept), quants
 * nearest-even of x * (-127 / max) clamped to 127, bsums over 16 (the reference, which is
 * also llama.cpp's x86 runtime quantizer; its 4-row ggml_quantize_mat_q8_K_4x8 differs only
 * on sign ties of the max, with identical dot products). */
static void quant_q8_K_block(const float *x, q_block_q8_K *y) {
    const __m256 sgn = _mm256_set1_ps(-0.0f);
    __m256 m = _mm256_setzero_ps();
    for (int k = 0; k < Q_QK_K; k += 8) m = _mm256_max_ps(m, _mm256_andnot_ps(sgn, _mm256_loadu_ps(x + k)));
    const float amax = hmax_ps(m);
    if (amax == 0.f) {
        memset(y, 0, sizeof *y);
        return;
    }
    const __m256 vmax = _mm256_set1_ps(amax);
    int first = 0;
    for (int k = 0; k < Q_QK_K; k += 8) {
        const __m256 a = _mm256_andnot_ps(sgn, _mm256_loadu_ps(x + k));
        const int mask = _mm256_movemask_ps(_mm256_cmp_ps(a, vmax, _CMP_EQ_OQ));
        if (mask) {
            first = k + __builtin_ctz((unsigned)mask);
            break;
        }
    }
    const float iscale = -127.f / x[first];
    const __m256 vis = _mm256_set1_ps(iscale);
    const __m256i c127 = _mm256_set1_epi32(127);
    for (int g = 0; g < Q_QK_K; g += 64) { /* 4 bsum groups at a time */
        __m256i q[8];
        for (int k = 0; k < 8; k++) {
            /* nearest even as the reference's magic-number rounding, min 127 as its MIN();
             * the [-127.5, 127.5] guard only bites for infinite scales (tiny blocks) */
            const __m256 v = _mm256_mul_ps(_mm256_loadu_ps(x + g + 8 * k), vis);
            const __m256 ok = _mm256_cmp_ps(_mm256_andnot_ps(sgn, v), _mm256_set1_ps(127.5f), _CMP_LE_OQ);
            const __m256i r = _mm256_cvtps_epi32(_mm256_round_ps(v, _MM_FROUND_TO_NEAREST_INT | _MM_FROUND_NO_EXC));
            q[k] = _mm256_and_si256(_mm256_min_epi32(r, c127), _mm256_castps_si256(ok));
        }
        const __m256i p0 = pack_32(q[0], q[1], q[2], q[3]), p1 = pack_32(q[4], q[5], q[6], q[7]);
        _mm256_storeu_si256((__m256i *)(y->qs + g), p0);
        _mm256_storeu_si256((__m256i *)(y->qs + g + 32), p1);
        /* bsums of the stored int8 (as the reference): per 128-bit lane 4 sums of 4 */
        const __m256i m0 = dot_u8s8(_mm256_set1_epi8(1), p0), m1 = dot_u8s8(_mm256_set1_epi8(1), p1);
        __m256i t = _mm256_hadd_epi32(m0, m1);
        t = _mm256_hadd_epi32(t, t); /* lane 0: groups 0, 2; lane 1: groups 1, 3 */
        const __m128i b = _mm_unpacklo_epi32(_mm256_castsi256_si128(t), _mm256_extracti128_si256(t, 1));
        _mm_storel_epi64((__m128i *)(y->bsums + g / 16), _mm_packs_epi32(b, b));
    }
    y->d = 1 / iscale;
}

int k_avx2_quantize_q8_K(const float *x, void *dst, int64_t n) {
    if (n < 0 || n % Q_QK_K) return ND_EINVAL;
    q_block_q8_K *y = dst;
    for (int64_t i = 0; i < n / Q_QK_K; i++) quant_q8_K_block(x + i * Q_QK_K, &y[i]);
    return 0;
}

int k_avx2_quantize_f16(const float *x, void *dst, int64_t n) {
    if (n < 0) return ND_EINVAL;
    uint8_t *d = dst;
    int64_t i = 0;
    for (; i + 8 <= n; i += 8)
        _mm_storeu_si128((__m128i *)(d + 2 * i),
                         _mm256_cvtps_ph(_mm256_loadu_ps(x + i), _MM_FROUND_TO_NEAREST_INT));
    for (; i < n; i++) {
        uint16_t h = nd_fp32_to_fp16(x[i]);
        memcpy(d + 2 * i, &h, 2);
    }
    return 0;
}

/* bf16 round to nearest even: (u + 0x7fff + ((u >> 16) & 1)) >> 16; NaN -> quiet NaN */
int k_avx2_quantize_bf16(const float *x, void *dst, int64_t n) {
    if (n < 0) return ND_EINVAL;
    uint8_t *d = dst;
    int64_t i = 0;
    const __m256i one = _mm256_set1_epi32(1), bias = _mm256_set1_epi32(0x7fff);
    const __m256i absm = _mm256_set1_epi32(0x7fffffff), inf = _mm256_set1_epi32(0x7f800000);
    for (; i + 16 <= n; i += 16) {
        __m256i r[2];
        for (int k = 0; k < 2; k++) {
            const __m256i u = _mm256_castps_si256(_mm256_loadu_ps(x + i + 8 * k));
            const __m256i lsb = _mm256_and_si256(_mm256_srli_epi32(u, 16), one);
            __m256i v = _mm256_srli_epi32(_mm256_add_epi32(u, _mm256_add_epi32(bias, lsb)), 16);
            const __m256i nan = _mm256_cmpgt_epi32(_mm256_and_si256(u, absm), inf);
            const __m256i qn = _mm256_or_si256(_mm256_srli_epi32(u, 16), _mm256_set1_epi32(64));
            r[k] = _mm256_blendv_epi8(v, qn, nan);
        }
        const __m256i p = _mm256_permute4x64_epi64(_mm256_packus_epi32(r[0], r[1]), 0xD8);
        _mm256_storeu_si256((__m256i *)(d + 2 * i), p);
    }
    for (; i < n; i++) {
        uint16_t h = nd_fp32_to_bf16(x[i]);
        memcpy(d + 2 * i, &h, 2);
    }
    return 0;
}

/* ================================================================ float dots */

float k_avx2_dot_f32(const void *w, const void *a, int64_t n) {
    const float *x = w, *y = a;
    __m256 acc[4] = {_mm256_setzero_ps(), _mm256_setzero_ps(), _mm256_setzero_ps(), _mm256_setzero_ps()};
    int64_t i = 0;
    for (; i + 32 <= n; i += 32)
#pragma GCC unroll 4 /* keeps acc[] in registers (not unrolled, GCC spills it every step) */
        for (int k = 0; k < 4; k++)
            acc[k] = _mm256_fmadd_ps(_mm256_loadu_ps(x + i + 8 * k), _mm256_loadu_ps(y + i + 8 * k), acc[k]);
    for (; i + 8 <= n; i += 8)
        acc[0] = _mm256_fmadd_ps(_mm256_loadu_ps(x + i), _mm256_loadu_ps(y + i), acc[0]);
    float s = hsum_ps(_mm256_add_ps(_mm256_add_ps(acc[0], acc[1]), _mm256_add_ps(acc[2], acc[3])));
    for (; i < n; i++) s += x[i] * y[i];
    return s;
}

static inline __m256 load_f16x8(const uint8_t *p) { return _mm256_cvtph_ps(loadu128(p)); }
static inline __m256 load_bf16x8(const uint8_t *p) {
    return _mm256_castsi256_ps(_mm256_slli_epi32(_mm256_cvtepu16_epi32(loadu128(p)), 16));
}

#define FLOAT16_DOT(NAME, LOAD, CVT)                                                    \
    float NAME(const void *w, const void *a, int64_t n) {                                \
        const uint8_t *x = w, *y = a;                                                    \
        __m256 acc[4] = {_mm256_setzero_ps(), _mm256_setzero_ps(), _mm256_setzero_ps(), \
                         _mm256_setzero_ps()};                                           \
        int64_t i = 0;                                                                   \
        for (; i + 32 <= n; i += 32)                                                     \
            _Pragma("GCC unroll 4") for (int k = 0; k < 4; k++)                          \
                acc[k] = _mm256_fmadd_ps(LOAD(x + 2 * (i + 8 * k)), LOAD(y + 2 * (i + 8 * k)), \
                                         acc[k]);                                        \
        for (; i + 8 <= n; i += 8)                                                       \
            acc[0] = _mm256_fmadd_ps(LOAD(x + 2 * i), LOAD(y + 2 * i), acc[0]);          \
        float s = hsum_ps(_mm256_add_ps(_mm256_add_ps(acc[0], acc[1]),                   \
                                        _mm256_add_ps(acc[2], acc[3])));                 \
        for (; i < n; i++) {                                                             \
            uint16_t hx, hy;                                                             \
            memcpy(&hx, x + 2 * i, 2);                                                   \
            memcpy(&hy, y + 2 * i, 2);                                                   \
            s += CVT(hx) * CVT(hy);                                                      \
        }                                                                                \
        return s;                                                                        \
    }
FLOAT16_DOT(k_avx2_dot_f16, load_f16x8, _cvtsh_ss)
FLOAT16_DOT(k_avx2_dot_bf16, load_bf16x8, nd_bf16_to_fp32)
#undef FLOAT16_DOT

/* ================================================================ 32-blocks */

float k_avx2_dot_q8_0(const void *w, const void *a, int64_t n) {
    const q_block_q8_0 *x = w;
    const q_block_q8_0 *y = a;
    const int64_t nb = n / Q_QK;
    __m256 acc0 = _mm256_setzero_ps(), acc1 = _mm256_setzero_ps();
    int64_t i = 0;
    for (; i + 2 <= nb; i += 2) {
        const __m256i p0 = dot_s8s8(loadu256(x[i].qs), loadu256(y[i].qs));
        const __m256i p1 = dot_s8s8(loadu256(x[i + 1].qs), loadu256(y[i + 1].qs));
        acc0 = _mm256_fmadd_ps(_mm256_set1_ps(h2f(&x[i].d) * h2f(&y[i].d)), _mm256_cvtepi32_ps(p0), acc0);
        acc1 = _mm256_fmadd_ps(_mm256_set1_ps(h2f(&x[i + 1].d) * h2f(&y[i + 1].d)),
                               _mm256_cvtepi32_ps(p1), acc1);
    }
    for (; i < nb; i++) {
        const __m256i p = dot_s8s8(loadu256(x[i].qs), loadu256(y[i].qs));
        acc0 = _mm256_fmadd_ps(_mm256_set1_ps(h2f(&x[i].d) * h2f(&y[i].d)), _mm256_cvtepi32_ps(p), acc0);
    }
    return hsum_ps(_mm256_add_ps(acc0, acc1));
}

/* sum (q - off) * y for u8 q: maddubs(q, y) - maddubs(off, y), exact in int16 */
static inline __m256i dot_off_u8s8(__m256i q, __m256i y, __m256i off) {
    const __m256i d = _mm256_sub_epi16(_mm256_maddubs_epi16(q, y), _mm256_maddubs_epi16(off, y));
    return _mm256_madd_epi16(d, _mm256_set1_epi16(1));
}

float k_avx2_dot_q4_0(const void *w, const void *a, int64_t n) {
    const q_block_q4_0 *x = w;
    const q_block_q8_0 *y = a;
    const int64_t nb = n / Q_QK;
    const __m256i off = _mm256_set1_epi8(8);
    __m256 acc0 = _mm256_setzero_ps(), acc1 = _mm256_setzero_ps();
    int64_t i = 0;
    for (; i + 2 <= nb; i += 2) {
        const __m256i p0 = dot_off_u8s8(nibbles_32(x[i].qs), loadu256(y[i].qs), off);
        const __m256i p1 = dot_off_u8s8(nibbles_32(x[i + 1].qs), loadu256(y[i + 1].qs), off);
        acc0 = _mm256_fmadd_ps(_mm256_set1_ps(h2f(&x[i].d) * h2f(&y[i].d)), _mm256_cvtepi32_ps(p0), acc0);
        acc1 = _mm256_fmadd_ps(_mm256_set1_ps(h2f(&x[i + 1].d) * h2f(&y[i + 1].d)),
                               _mm256_cvtepi32_ps(p1), acc1);
    }
    for (; i < nb; i++) {
        const __m256i p = dot_off_u8s8(nibbles_32(x[i].qs), loadu256(y[i].qs), off);
        acc0 = _mm256_fmadd_ps(_mm256_set1_ps(h2f(&x[i].d) * h2f(&y[i].d)), _mm256_cvtepi32_ps(p), acc0);
    }
    return hsum_ps(_mm256_add_ps(acc0, acc1));
}

float k_avx2_dot_q5_0(const void *w, const void *a, int64_t n) {
    const q_block_q5_0 *x = w;
    const q_block_q8_0 *y = a;
    const int64_t nb = n / Q_QK;
    const __m256i off = _mm256_set1_epi8(16);
    __m256 acc = _mm256_setzero_ps();
    for (int64_t i = 0; i < nb; i++) {
        const __m256i q = _mm256_or_si256(nibbles_32(x[i].qs), bits_to_0x10(x[i].qh));
        const __m256i p = dot_off_u8s8(q, loadu256(y[i].qs), off);
        acc = _mm256_fmadd_ps(_mm256_set1_ps(h2f(&x[i].d) * h2f(&y[i].d)), _mm256_cvtepi32_ps(p), acc);
    }
    return hsum_ps(acc);
}

/* Q4_1 / Q5_1: sum (q*dw + m) * a = dw*da*sum(q*qa) + m*s; the min terms are scalar. */
float k_avx2_dot_q4_1(const void *w, const void *a, int64_t n) {
    const q_block_q4_1 *x = w;
    const q_block_q8_1 *y = a;
    const int64_t nb = n / Q_QK;
    __m256 acc = _mm256_setzero_ps();
    float summ = 0;
    for (int64_t i = 0; i < nb; i++) {
        const __m256i p = dot_u8s8(nibbles_32(x[i].qs), loadu256(y[i].qs));
        acc = _mm256_fmadd_ps(_mm256_set1_ps(h2f(&x[i].d) * h2f(&y[i].d)), _mm256_cvtepi32_ps(p), acc);
        summ += h2f(&x[i].m) * h2f(&y[i].s);
    }
    return hsum_ps(acc) + summ;
}

float k_avx2_dot_q5_1(const void *w, const void *a, int64_t n) {
    const q_block_q5_1 *x = w;
    const q_block_q8_1 *y = a;
    const int64_t nb = n / Q_QK;
    __m256 acc = _mm256_setzero_ps();
    float summ = 0;
    for (int64_t i = 0; i < nb; i++) {
        const __m256i q = _mm256_or_si256(nibbles_32(x[i].qs), bits_to_0x10(x[i].qh));
        const __m256i p = dot_u8s8(q, loadu256(y[i].qs));
        acc = _mm256_fmadd_ps(_mm256_set1_ps(h2f(&x[i].d) * h2f(&y[i].d)), _mm256_cvtepi32_ps(p), acc);
        summ += h2f(&x[i].m) * h2f(&y[i].s);
    }
    return hsum_ps(acc) + summ;
}

/* ================================================================ K-quants */

float k_avx2_dot_q4_K(const void *w, const void *a, int64_t n) {
    const q_block_q4_K *x = w;
    const q_block_q8_K *y = a;
    const int64_t nb = n / Q_QK_K;
    const __m256i m4 = _mm256_set1_epi8(0x0F);
    __m256 acc = _mm256_setzero_ps();
    float summ = 0;
    for (int64_t i = 0; i < nb; i++) {
        uint64_t sc, mn;
        unpack_scales_k4(x[i].scales, &sc, &mn);
        const __m256i SC = _mm256_set1_epi64x((long long)sc);
        const float d = y[i].d * h2f(&x[i].d), dmin = y[i].d * h2f(&x[i].dmin);
        summ += dmin * (float)mins_dot_bsums8(mn, y[i].bsums);
        __m256i isum0 = _mm256_setzero_si256(), isum1 = _mm256_setzero_si256();
        for (int j = 0; j < 4; j++) {
            const __m256i q4 = loadu256(x[i].qs + 32 * j);
            const __m256i lo = _mm256_and_si256(q4, m4);
            const __m256i hi = _mm256_and_si256(_mm256_srli_epi16(q4, 4), m4);
            const __m256i plo = _mm256_maddubs_epi16(lo, loadu256(y[i].qs + 64 * j));
            const __m256i phi = _mm256_maddubs_epi16(hi, loadu256(y[i].qs + 64 * j + 32));
            isum0 = _mm256_add_epi32(isum0, _mm256_madd_epi16(plo, bcast_byte16(SC, 2 * j)));
            isum1 = _mm256_add_epi32(isum1, _mm256_madd_epi16(phi, bcast_byte16(SC, 2 * j + 1)));
        }
        acc = _mm256_fmadd_ps(_mm256_set1_ps(d), _mm256_cvtepi32_ps(_mm256_add_epi32(isum0, isum1)), acc);
    }
    return hsum_ps(acc) - summ;
}

float k_avx2_dot_q5_K(const void *w, const void *a, int64_t n) {
    const q_block_q5_K *x = w;
    const q_block_q8_K *y = a;
    const int64_t nb = n / Q_QK_K;
    const __m256i m4 = _mm256_set1_epi8(0x0F), b1 = _mm256_set1_epi8(1);
    __m256 acc = _mm256_setzero_ps();
    float summ = 0;
    for (int64_t i = 0; i < nb; i++) {
        uint64_t sc, mn;
        unpack_scales_k4(x[i].scales, &sc, &mn);
        const __m256i SC = _mm256_set1_epi64x((long long)sc);
        const float d = y[i].d * h2f(&x[i].d), dmin = y[i].d * h2f(&x[i].dmin);
        summ += dmin * (float)mins_dot_bsums8(mn, y[i].bsums);
        const __m256i qh = loadu256(x[i].qh);
        __m256i isum0 = _mm256_setzero_si256(), isum1 = _mm256_setzero_si256();
        for (int j = 0; j < 4; j++) {
            const __m256i q4 = loadu256(x[i].qs + 32 * j);
            /* bit 2j / 2j+1 of each qh byte -> 0x10 (shift within bytes: mask before moving) */
            const __m256i hlo = _mm256_slli_epi16(_mm256_and_si256(_mm256_srli_epi16(qh, 2 * j), b1), 4);
            const __m256i hhi = _mm256_slli_epi16(_mm256_and_si256(_mm256_srli_epi16(qh, 2 * j + 1), b1), 4);
            const __m256i lo = _mm256_or_si256(_mm256_and_si256(q4, m4), hlo);
            const __m256i hi = _mm256_or_si256(_mm256_and_si256(_mm256_srli_epi16(q4, 4), m4), hhi);
            const __m256i plo = _mm256_maddubs_epi16(lo, loadu256(y[i].qs + 64 * j));
            const __m256i phi = _mm256_maddubs_epi16(hi, loadu256(y[i].qs + 64 * j + 32));
            isum0 = _mm256_add_epi32(isum0, _mm256_madd_epi16(plo, bcast_byte16(SC, 2 * j)));
            isum1 = _mm256_add_epi32(isum1, _mm256_madd_epi16(phi, bcast_byte16(SC, 2 * j + 1)));
        }
        acc = _mm256_fmadd_ps(_mm256_set1_ps(d), _mm256_cvtepi32_ps(_mm256_add_epi32(isum0, isum1)), acc);
    }
    return hsum_ps(acc) - summ;
}

/* Q6_K: q in 0..63, value q - 32. isum = sum_j sc_j * sum q*y - 32 * sum_j sc_j * bsum_j. */
float k_avx2_dot_q6_K(const void *w, const void *a, int64_t n) {
    const q_block_q6_K *x = w;
    const q_block_q8_K *y = a;
    const int64_t nb = n / Q_QK_K;
    const __m256i m4 = _mm256_set1_epi8(0x0F), m2 = _mm256_set1_epi8(0x30);
    __m256 acc = _mm256_setzero_ps();
    for (int64_t i = 0; i < nb; i++) {
        const __m128i s8 = loadu128(x[i].scales);
        const __m256i sc16 = _mm256_cvtepi8_epi16(s8);
        __m256i isum = _mm256_mullo_epi32(_mm256_madd_epi16(loadu256(y[i].bsums), sc16),
                                          _mm256_set1_epi32(-32));
        for (int h = 0; h < 2; h++) {
            const uint8_t *ql = x[i].ql + 64 * h, *qhp = x[i].qh + 32 * h;
            const int8_t *q8 = y[i].qs + 128 * h;
            const __m256i l0 = loadu256(ql), l1 = loadu256(ql + 32), qh = loadu256(qhp);
            __m256i q[4];
            q[0] = _mm256_or_si256(_mm256_and_si256(l0, m4), _mm256_and_si256(_mm256_slli_epi16(qh, 4), m2));
            q[1] = _mm256_or_si256(_mm256_and_si256(l1, m4), _mm256_and_si256(_mm256_slli_epi16(qh, 2), m2));
            q[2] = _mm256_or_si256(_mm256_and_si256(_mm256_srli_epi16(l0, 4), m4), _mm256_and_si256(qh, m2));
            q[3] = _mm256_or_si256(_mm256_and_si256(_mm256_srli_epi16(l1, 4), m4),
                                   _mm256_and_si256(_mm256_srli_epi16(qh, 2), m2));
            for (int s = 0; s < 4; s++) {
                const __m256i p = _mm256_maddubs_epi16(q[s], loadu256(q8 + 32 * s));
                isum = _mm256_add_epi32(isum, _mm256_madd_epi16(p, scale_pair_16(s8, 4 * h + s)));
            }
        }
        const float d = y[i].d * h2f(&x[i].d);
        acc = _mm256_fmadd_ps(_mm256_set1_ps(d), _mm256_cvtepi32_ps(isum), acc);
    }
    return hsum_ps(acc);
}

/* Q3_K: unsigned level u = q2 + 4*hbit in 0..7, value u - 4. */
float k_avx2_dot_q3_K(const void *w, const void *a, int64_t n) {
    const q_block_q3_K *x = w;
    const q_block_q8_K *y = a;
    const int64_t nb = n / Q_QK_K;
    const __m256i m3 = _mm256_set1_epi8(3), b1 = _mm256_set1_epi8(1);
    __m256 acc = _mm256_setzero_ps();
    for (int64_t i = 0; i < nb; i++) {
        const __m128i s8 = unpack_scales_q3(x[i].scales);
        __m256i isum = _mm256_mullo_epi32(
            _mm256_madd_epi16(loadu256(y[i].bsums), _mm256_cvtepi8_epi16(s8)), _mm256_set1_epi32(-4));
        const __m256i hm = loadu256(x[i].hmask);
        for (int h = 0; h < 2; h++) {
            const __m256i q2 = loadu256(x[i].qs + 32 * h);
            for (int s = 0; s < 4; s++) {
                const int c = 4 * h + s;
                const __m256i lo = _mm256_and_si256(_mm256_srli_epi16(q2, 2 * s), m3);
                const __m256i hb = _mm256_slli_epi16(_mm256_and_si256(_mm256_srli_epi16(hm, c), b1), 2);
                const __m256i p = _mm256_maddubs_epi16(_mm256_or_si256(lo, hb), loadu256(y[i].qs + 32 * c));
                isum = _mm256_add_epi32(isum, _mm256_madd_epi16(p, scale_pair_16(s8, c)));
            }
        }
        const float d = y[i].d * h2f(&x[i].d);
        acc = _mm256_fmadd_ps(_mm256_set1_ps(d), _mm256_cvtepi32_ps(isum), acc);
    }
    return hsum_ps(acc);
}

/* Q2_K: scales byte j = scale (low nibble) | min (high nibble) of sub-block j of 16. */
float k_avx2_dot_q2_K(const void *w, const void *a, int64_t n) {
    const q_block_q2_K *x = w;
    const q_block_q8_K *y = a;
    const int64_t nb = n / Q_QK_K;
    const __m256i m3 = _mm256_set1_epi8(3);
    const __m128i m4 = _mm_set1_epi8(0x0F);
    __m256 acc = _mm256_setzero_ps();
    float summ = 0;
    for (int64_t i = 0; i < nb; i++) {
        const __m128i sm = loadu128(x[i].scales);
        const __m128i s8 = _mm_and_si128(sm, m4);
        const __m128i m8 = _mm_and_si128(_mm_srli_epi16(sm, 4), m4);
        const int mins = hsum_epi32(_mm256_madd_epi16(loadu256(y[i].bsums), _mm256_cvtepu8_epi16(m8)));
        const float d = y[i].d * h2f(&x[i].d), dmin = y[i].d * h2f(&x[i].dmin);
        summ += dmin * (float)mins;
        __m256i isum = _mm256_setzero_si256();
        for (int h = 0; h < 2; h++) {
            const __m256i q2 = loadu256(x[i].qs + 32 * h);
            for (int s = 0; s < 4; s++) {
                const int c = 4 * h + s;
                const __m256i q = _mm256_and_si256(_mm256_srli_epi16(q2, 2 * s), m3);
                const __m256i p = _mm256_maddubs_epi16(q, loadu256(y[i].qs + 32 * c));
                isum = _mm256_add_epi32(isum, _mm256_madd_epi16(p, scale_pair_16(s8, c)));
            }
        }
        acc = _mm256_fmadd_ps(_mm256_set1_ps(d), _mm256_cvtepi32_ps(isum), acc);
    }
    return hsum_ps(acc) - summ;
}

/* ================================================================ install */

void k_install_avx2(k_kernels *k) {
    k->vec = (k_vec_ops){"avx2", k_avx2_silu_mul, k_avx2_attend_f32, k_avx2_attend_f16};
#define E(T, A, DOT, Q)                                                                  \
    do {                                                                                 \
        k_ops *o_ = &k->ops[ND_TYPE_##T];                                                \
        o_->name = "avx2";                                                               \
        o_->atype = ND_TYPE_##A;                                                         \
        o_->vec_dot = DOT;                                                               \
        o_->quantize = Q;                                                                \
        o_->vec_dot4 = NULL;                                                             \
        o_->vec_dot4n = NULL;                                                            \
        o_->act_prep = NULL;                                                             \
    } while (0)
    E(F32, F32, k_avx2_dot_f32, k->ops[ND_TYPE_F32].quantize);
    E(F16, F16, k_avx2_dot_f16, k_avx2_quantize_f16);
    E(BF16, BF16, k_avx2_dot_bf16, k_avx2_quantize_bf16);
    E(Q4_0, Q8_0, k_avx2_dot_q4_0, k_avx2_quantize_q8_0);
    E(Q4_1, Q8_1, k_avx2_dot_q4_1, k_avx2_quantize_q8_1);
    E(Q5_0, Q8_0, k_avx2_dot_q5_0, k_avx2_quantize_q8_0);
    E(Q5_1, Q8_1, k_avx2_dot_q5_1, k_avx2_quantize_q8_1);
    E(Q8_0, Q8_0, k_avx2_dot_q8_0, k_avx2_quantize_q8_0);
    E(Q2_K, Q8_K, k_avx2_dot_q2_K, k_avx2_quantize_q8_K);
    E(Q3_K, Q8_K, k_avx2_dot_q3_K, k_avx2_quantize_q8_K);
    E(Q4_K, Q8_K, k_avx2_dot_q4_K, k_avx2_quantize_q8_K);
    E(Q5_K, Q8_K, k_avx2_dot_q5_K, k_avx2_quantize_q8_K);
    E(Q6_K, Q8_K, k_avx2_dot_q6_K, k_avx2_quantize_q8_K);
#undef E
}
