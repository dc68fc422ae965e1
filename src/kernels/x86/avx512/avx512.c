/* AVX-512 (F/BW/VL/DQ + VNNI, BF16 for the bf16 dot) kernels: weight x activation dots.
 * Semantics: kernels/x86/x86.h; the activation quantizers are the AVX2 ones, but for Q8_0
 * (below: the same bytes, 16 lanes a vector).
 *
 * Integer technique: vpdpbusd (u8 x s8, four products summed into an int32 lane, no
 * saturation) on 64 bytes at a time — two 32-blocks, or two 32-element chunks of a
 * K-quant super-block. Each int32 lane holds products of one sub-block only, so sub-block
 * scales are applied per lane (vpmulld with a permuted scale vector) and the block's lanes
 * are converted to float and scaled with one FMA, as in the AVX2 file.
 */
#include <math.h>
#include <stddef.h>
#include "kernels/x86/avx2/avx2_inl.h"
#include "kernels/x86/x86.h"

static inline __m512i loadu512(const void *p) { return _mm512_loadu_si512(p); }

/* two 32-byte rows side by side */
static inline __m512i load2x256(const void *lo, const void *hi) {
    return _mm512_inserti64x4(_mm512_castsi256_si512(loadu256(lo)), loadu256(hi), 1);
}

static inline __m512 set2_ps(float lo, float hi) {
    return _mm512_insertf32x8(_mm512_castps256_ps512(_mm256_set1_ps(lo)), _mm256_set1_ps(hi), 1);
}

static inline __m512i dpbusd(__m512i u, __m512i s) {
    return _mm512_dpbusd_epi32(_mm512_setzero_si512(), u, s);
}

/* ================================================================ Q8_0 activations */

/* x -> int8 as the AVX2 act_round (q_quantize_act's rule): nearest even; a product not
 * finite within [-127.5, 127.5] gives 0; clamped to [-127, 127]. */
static inline __m512i act_round16(__m512 v) {
    const __mmask16 ok = _mm512_cmp_ps_mask(_mm512_abs_ps(v), _mm512_set1_ps(127.5f), _CMP_LE_OQ);
    const __m512i r = _mm512_cvt_roundps_epi32(v, _MM_FROUND_TO_NEAREST_INT | _MM_FROUND_NO_EXC);
    const __m512i c = _mm512_max_epi32(_mm512_min_epi32(r, _mm512_set1_epi32(127)), _mm512_set1_epi32(-127));
    return _mm512_maskz_mov_epi32(ok, c);
}

/* The AVX2 quantizer's bytes (d = amax / 127, quants of x * (127 / amax)) with a block in
 * two vectors: 4864 activations (ffn_down's, every decode layer) 1.35 -> 0.75 us, 896
 * 0.26 -> 0.14 us. */
int k_avx512_quantize_q8_0(const float *x, void *dst, int64_t n) {
    if (n < 0 || n % Q_QK) return ND_EINVAL;
    q_block_q8_0 *y = dst;
    for (int64_t i = 0; i < n / Q_QK; i++, x += Q_QK) {
        const __m512 v0 = _mm512_loadu_ps(x), v1 = _mm512_loadu_ps(x + 16);
        const float amax = _mm512_reduce_max_ps(_mm512_max_ps(_mm512_abs_ps(v0), _mm512_abs_ps(v1)));
        const __m512 vid = _mm512_set1_ps(amax != 0.f ? 127.f / amax : 0.0f);
        _mm_storeu_si128((__m128i *)y[i].qs, _mm512_cvtepi32_epi8(act_round16(_mm512_mul_ps(v0, vid))));
        _mm_storeu_si128((__m128i *)(y[i].qs + 16), _mm512_cvtepi32_epi8(act_round16(_mm512_mul_ps(v1, vid))));
        y[i].d = (uint16_t)_cvtss_sh(amax / 127.f, _MM_FROUND_TO_NEAREST_INT);
    }
    return 0;
}

/* lanes k = 0..15 -> base + k / 4 (sub-blocks of 16 elements = 4 lanes of dpbusd) */
static inline __m512i idx_by4(int base) {
    return _mm512_add_epi32(_mm512_set1_epi32(base),
                            _mm512_setr_epi32(0, 0, 0, 0, 1, 1, 1, 1, 2, 2, 2, 2, 3, 3, 3, 3));
}
/* lanes k = 0..15 -> base + k / 8 (sub-blocks of 32 elements) */
static inline __m512i idx_by8(int base) {
    return _mm512_add_epi32(_mm512_set1_epi32(base),
                            _mm512_setr_epi32(0, 0, 0, 0, 0, 0, 0, 0, 1, 1, 1, 1, 1, 1, 1, 1));
}

/* per-256-bit-half shift counts for vpsrlvw / vpsllvw */
static inline __m512i shifts2(int lo, int hi) {
    return _mm512_inserti64x4(_mm512_set1_epi16((short)lo), _mm256_set1_epi16((short)hi), 1);
}

/* ================================================================ float dots */

float k_avx512_dot_f32(const void *w, const void *a, int64_t n) {
    const float *x = w, *y = a;
    __m512 acc[4] = {_mm512_setzero_ps(), _mm512_setzero_ps(), _mm512_setzero_ps(), _mm512_setzero_ps()};
    int64_t i = 0;
    for (; i + 64 <= n; i += 64)
#pragma GCC unroll 4 /* keeps acc[] in registers (not unrolled, GCC spills it every step) */
        for (int k = 0; k < 4; k++)
            acc[k] = _mm512_fmadd_ps(_mm512_loadu_ps(x + i + 16 * k), _mm512_loadu_ps(y + i + 16 * k), acc[k]);
    for (; i < n; i += 16) {
        const __mmask16 m = n - i >= 16 ? 0xFFFF : (__mmask16)((1u << (n - i)) - 1);
        acc[0] = _mm512_fmadd_ps(_mm512_maskz_loadu_ps(m, x + i), _mm512_maskz_loadu_ps(m, y + i), acc[0]);
    }
    return _mm512_reduce_add_ps(_mm512_add_ps(_mm512_add_ps(acc[0], acc[1]), _mm512_add_ps(acc[2], acc[3])));
}

float k_avx512_dot_f16(const void *w, const void *a, int64_t n) {
    const uint16_t *x = w, *y = a;
    __m512 acc[4] = {_mm512_setzero_ps(), _mm512_setzero_ps(), _mm512_setzero_ps(), _mm512_setzero_ps()};
    int64_t i = 0;
    for (; i + 64 <= n; i += 64)
#pragma GCC unroll 4 /* as above: 2x for short rows (attention), decode no longer compute-bound */
        for (int k = 0; k < 4; k++)
            acc[k] = _mm512_fmadd_ps(_mm512_cvtph_ps(loadu256(x + i + 16 * k)),
                                     _mm512_cvtph_ps(loadu256(y + i + 16 * k)), acc[k]);
    for (; i < n; i += 16) {
        const __mmask16 m = n - i >= 16 ? 0xFFFF : (__mmask16)((1u << (n - i)) - 1);
        acc[0] = _mm512_fmadd_ps(_mm512_cvtph_ps(_mm256_maskz_loadu_epi16(m, x + i)),
                                 _mm512_cvtph_ps(_mm256_maskz_loadu_epi16(m, y + i)), acc[0]);
    }
    return _mm512_reduce_add_ps(_mm512_add_ps(_mm512_add_ps(acc[0], acc[1]), _mm512_add_ps(acc[2], acc[3])));
}

/* vdpbf16ps: products of bf16 pairs are exact in fp32; the instruction treats denormal
 * inputs as zero and flushes denormal results (see the test's tolerance). */
float k_avx512_dot_bf16(const void *w, const void *a, int64_t n) {
    const uint16_t *x = w, *y = a;
    __m512 acc[2] = {_mm512_setzero_ps(), _mm512_setzero_ps()};
    int64_t i = 0;
    for (; i + 64 <= n; i += 64)
#pragma GCC unroll 2
        for (int k = 0; k < 2; k++)
            acc[k] = _mm512_dpbf16_ps(acc[k], (__m512bh)loadu512(x + i + 32 * k),
                                      (__m512bh)loadu512(y + i + 32 * k));
    for (; i < n; i += 32) {
        const __mmask32 m = n - i >= 32 ? 0xFFFFFFFFu : (__mmask32)((1u << (n - i)) - 1);
        acc[0] = _mm512_dpbf16_ps(acc[0], (__m512bh)_mm512_maskz_loadu_epi16(m, x + i),
                                  (__m512bh)_mm512_maskz_loadu_epi16(m, y + i));
    }
    return _mm512_reduce_add_ps(_mm512_add_ps(acc[0], acc[1]));
}

/* ================================================================ 32-blocks */

/* Two Q8_0 blocks: |x| (u8) x (y with x's sign); x may be -128, y may not. */
float k_avx512_dot_q8_0(const void *w, const void *a, int64_t n) {
    const q_block_q8_0 *x = w;
    const q_block_q8_0 *y = a;
    const int64_t nb = n / Q_QK;
    const __m512i zero = _mm512_setzero_si512();
    __m512 acc = _mm512_setzero_ps();
    int64_t i = 0;
    for (; i + 2 <= nb; i += 2) {
        const __m512i qx = load2x256(x[i].qs, x[i + 1].qs), qy = load2x256(y[i].qs, y[i + 1].qs);
        const __m512i sy = _mm512_mask_sub_epi8(qy, _mm512_movepi8_mask(qx), zero, qy);
        const __m512i p = dpbusd(_mm512_abs_epi8(qx), sy);
        const __m512 d = set2_ps(h2f(&x[i].d) * h2f(&y[i].d), h2f(&x[i + 1].d) * h2f(&y[i + 1].d));
        acc = _mm512_fmadd_ps(d, _mm512_cvtepi32_ps(p), acc);
    }
    float s = _mm512_reduce_add_ps(acc);
    if (i < nb) {
        const __m256i qx = loadu256(x[i].qs), qy = loadu256(y[i].qs);
        const __m256i p = _mm256_dpbusd_epi32(_mm256_setzero_si256(), _mm256_sign_epi8(qx, qx),
                                              _mm256_sign_epi8(qy, qx));
        s += h2f(&x[i].d) * h2f(&y[i].d) * (float)hsum_epi32(p);
    }
    return s;
}

/* Two Q4_0 blocks' nibbles in element order: [q0 & 15, q0 >> 4, q1 & 15, q1 >> 4]. */
static inline __m512i nibbles_2x32(const uint8_t *qs0, const uint8_t *qs1) {
    const __m256i q = _mm256_set_m128i(loadu128(qs1), loadu128(qs0));
    const __m512i z = _mm512_permutexvar_epi64(_mm512_setr_epi64(0, 1, 0, 1, 2, 3, 2, 3),
                                               _mm512_castsi256_si512(q));
    const __m512i sh = _mm512_setr_epi64(0, 0, 0x0004000400040004, 0x0004000400040004, 0, 0,
                                         0x0004000400040004, 0x0004000400040004);
    return _mm512_and_si512(_mm512_srlv_epi16(z, sh), _mm512_set1_epi8(0x0F));
}

float k_avx512_dot_q4_0(const void *w, const void *a, int64_t n) {
    const q_block_q4_0 *x = w;
    const q_block_q8_0 *y = a;
    const int64_t nb = n / Q_QK;
    const __m512i c8 = _mm512_set1_epi8(8);
    __m512 acc0 = _mm512_setzero_ps(), acc1 = _mm512_setzero_ps();
    int64_t i = 0;
    for (; i + 4 <= nb; i += 4) {
        const __m512i y0 = load2x256(y[i].qs, y[i + 1].qs), y1 = load2x256(y[i + 2].qs, y[i + 3].qs);
        const __m512i p0 = _mm512_sub_epi32(dpbusd(nibbles_2x32(x[i].qs, x[i + 1].qs), y0), dpbusd(c8, y0));
        const __m512i p1 = _mm512_sub_epi32(dpbusd(nibbles_2x32(x[i + 2].qs, x[i + 3].qs), y1), dpbusd(c8, y1));
        const __m512 d0 = set2_ps(h2f(&x[i].d) * h2f(&y[i].d), h2f(&x[i + 1].d) * h2f(&y[i + 1].d));
        const __m512 d1 = set2_ps(h2f(&x[i + 2].d) * h2f(&y[i + 2].d), h2f(&x[i + 3].d) * h2f(&y[i + 3].d));
        acc0 = _mm512_fmadd_ps(d0, _mm512_cvtepi32_ps(p0), acc0);
        acc1 = _mm512_fmadd_ps(d1, _mm512_cvtepi32_ps(p1), acc1);
    }
    for (; i + 2 <= nb; i += 2) {
        const __m512i y0 = load2x256(y[i].qs, y[i + 1].qs);
        const __m512i p0 = _mm512_sub_epi32(dpbusd(nibbles_2x32(x[i].qs, x[i + 1].qs), y0), dpbusd(c8, y0));
        const __m512 d0 = set2_ps(h2f(&x[i].d) * h2f(&y[i].d), h2f(&x[i + 1].d) * h2f(&y[i + 1].d));
        acc0 = _mm512_fmadd_ps(d0, _mm512_cvtepi32_ps(p0), acc0);
    }
    float s = _mm512_reduce_add_ps(_mm512_add_ps(acc0, acc1));
    if (i < nb) {
        const __m256i qy = loadu256(y[i].qs), z = _mm256_setzero_si256();
        const __m256i p = _mm256_sub_epi32(_mm256_dpbusd_epi32(z, nibbles_32(x[i].qs), qy),
                                           _mm256_dpbusd_epi32(z, _mm256_set1_epi8(8), qy));
        s += h2f(&x[i].d) * h2f(&y[i].d) * (float)hsum_epi32(p);
    }
    return s;
}

/* 32 bits of two Q5 blocks -> 0x10 bytes in element order, 64 bytes */
static inline __m512i bits_2x32(const uint8_t *qh0, const uint8_t *qh1) {
    uint32_t a, b;
    memcpy(&a, qh0, 4);
    memcpy(&b, qh1, 4);
    const __mmask64 m = (__mmask64)a | ((__mmask64)b << 32);
    return _mm512_maskz_mov_epi8(m, _mm512_set1_epi8(0x10));
}

static inline __m512i nib5_2x32(const uint8_t *qs0, const uint8_t *qh0, const uint8_t *qs1,
                                const uint8_t *qh1) {
    return _mm512_or_si512(nibbles_2x32(qs0, qs1), bits_2x32(qh0, qh1));
}

float k_avx512_dot_q5_0(const void *w, const void *a, int64_t n) {
    const q_block_q5_0 *x = w;
    const q_block_q8_0 *y = a;
    const int64_t nb = n / Q_QK;
    const __m512i c16 = _mm512_set1_epi8(16);
    __m512 acc = _mm512_setzero_ps();
    int64_t i = 0;
    for (; i + 2 <= nb; i += 2) {
        const __m512i qy = load2x256(y[i].qs, y[i + 1].qs);
        const __m512i q = nib5_2x32(x[i].qs, x[i].qh, x[i + 1].qs, x[i + 1].qh);
        const __m512i p = _mm512_sub_epi32(dpbusd(q, qy), dpbusd(c16, qy));
        const __m512 d = set2_ps(h2f(&x[i].d) * h2f(&y[i].d), h2f(&x[i + 1].d) * h2f(&y[i + 1].d));
        acc = _mm512_fmadd_ps(d, _mm512_cvtepi32_ps(p), acc);
    }
    float s = _mm512_reduce_add_ps(acc);
    if (i < nb) {
        const __m256i qy = loadu256(y[i].qs), z = _mm256_setzero_si256();
        const __m256i q = _mm256_or_si256(nibbles_32(x[i].qs), bits_to_0x10(x[i].qh));
        const __m256i p = _mm256_sub_epi32(_mm256_dpbusd_epi32(z, q, qy),
                                           _mm256_dpbusd_epi32(z, _mm256_set1_epi8(16), qy));
        s += h2f(&x[i].d) * h2f(&y[i].d) * (float)hsum_epi32(p);
    }
    return s;
}

float k_avx512_dot_q4_1(const void *w, const void *a, int64_t n) {
    const q_block_q4_1 *x = w;
    const q_block_q8_1 *y = a;
    const int64_t nb = n / Q_QK;
    __m512 acc = _mm512_setzero_ps();
    float summ = 0;
    int64_t i = 0;
    for (; i + 2 <= nb; i += 2) {
        const __m512i p = dpbusd(nibbles_2x32(x[i].qs, x[i + 1].qs), load2x256(y[i].qs, y[i + 1].qs));
        const __m512 d = set2_ps(h2f(&x[i].d) * h2f(&y[i].d), h2f(&x[i + 1].d) * h2f(&y[i + 1].d));
        acc = _mm512_fmadd_ps(d, _mm512_cvtepi32_ps(p), acc);
        summ += h2f(&x[i].m) * h2f(&y[i].s) + h2f(&x[i + 1].m) * h2f(&y[i + 1].s);
    }
    float s = _mm512_reduce_add_ps(acc);
    if (i < nb) {
        const __m256i p = _mm256_dpbusd_epi32(_mm256_setzero_si256(), nibbles_32(x[i].qs), loadu256(y[i].qs));
        s += h2f(&x[i].d) * h2f(&y[i].d) * (float)hsum_epi32(p);
        summ += h2f(&x[i].m) * h2f(&y[i].s);
    }
    return s + summ;
}

float k_avx512_dot_q5_1(const void *w, const void *a, int64_t n) {
    const q_block_q5_1 *x = w;
    const q_block_q8_1 *y = a;
    const int64_t nb = n / Q_QK;
    __m512 acc = _mm512_setzero_ps();
    float summ = 0;
    int64_t i = 0;
    for (; i + 2 <= nb; i += 2) {
        const __m512i q = nib5_2x32(x[i].qs, x[i].qh, x[i + 1].qs, x[i + 1].qh);
        const __m512i p = dpbusd(q, load2x256(y[i].qs, y[i + 1].qs));
        const __m512 d = set2_ps(h2f(&x[i].d) * h2f(&y[i].d), h2f(&x[i + 1].d) * h2f(&y[i + 1].d));
        acc = _mm512_fmadd_ps(d, _mm512_cvtepi32_ps(p), acc);
        summ += h2f(&x[i].m) * h2f(&y[i].s) + h2f(&x[i + 1].m) * h2f(&y[i + 1].s);
    }
    float s = _mm512_reduce_add_ps(acc);
    if (i < nb) {
        const __m256i q = _mm256_or_si256(nibbles_32(x[i].qs), bits_to_0x10(x[i].qh));
        const __m256i p = _mm256_dpbusd_epi32(_mm256_setzero_si256(), q, loadu256(y[i].qs));
        s += h2f(&x[i].d) * h2f(&y[i].d) * (float)hsum_epi32(p);
        summ += h2f(&x[i].m) * h2f(&y[i].s);
    }
    return s + summ;
}

/* ================================================================ K-quants */

/* Q4_K / Q5_K: chunk j = 64 elements = sub-blocks 2j (lanes 0..7) and 2j+1 (lanes 8..15). */
static inline float dot_k4_tail(const uint8_t *scales12, const q_block_q8_K *y, float *summ,
                                uint16_t dh, uint16_t dminh, __m512i q[4]) {
    uint64_t s8, mn;
    unpack_scales_k4(scales12, &s8, &mn);
    const float d = y->d * h2f(&dh), dmin = y->d * h2f(&dminh);
    *summ += dmin * (float)mins_dot_bsums8(mn, y->bsums);
    const __m512i S = _mm512_cvtepu8_epi32(_mm_cvtsi64_si128((long long)s8));
    __m512i isum = _mm512_setzero_si512();
    for (int j = 0; j < 4; j++) {
        const __m512i p = dpbusd(q[j], loadu512(y->qs + 64 * j));
        isum = _mm512_add_epi32(isum, _mm512_mullo_epi32(p, _mm512_permutexvar_epi32(idx_by8(2 * j), S)));
    }
    return d * (float)_mm512_reduce_add_epi32(isum);
}

float k_avx512_dot_q4_K(const void *w, const void *a, int64_t n) {
    const q_block_q4_K *x = w;
    const q_block_q8_K *y = a;
    const int64_t nb = n / Q_QK_K;
    const __m512i m4 = _mm512_set1_epi8(0x0F), sh = shifts2(0, 4);
    float sum = 0, summ = 0;
    for (int64_t i = 0; i < nb; i++) {
        __m512i q[4];
        for (int j = 0; j < 4; j++) {
            const __m512i q4 = _mm512_broadcast_i64x4(loadu256(x[i].qs + 32 * j));
            q[j] = _mm512_and_si512(_mm512_srlv_epi16(q4, sh), m4);
        }
        sum += dot_k4_tail(x[i].scales, &y[i], &summ, x[i].d, x[i].dmin, q);
    }
    return sum - summ;
}

float k_avx512_dot_q5_K(const void *w, const void *a, int64_t n) {
    const q_block_q5_K *x = w;
    const q_block_q8_K *y = a;
    const int64_t nb = n / Q_QK_K;
    const __m512i m4 = _mm512_set1_epi8(0x0F), b1 = _mm512_set1_epi8(1), sh = shifts2(0, 4);
    float sum = 0, summ = 0;
    for (int64_t i = 0; i < nb; i++) {
        const __m512i qh = _mm512_broadcast_i64x4(loadu256(x[i].qh));
        __m512i q[4];
        for (int j = 0; j < 4; j++) {
            const __m512i q4 = _mm512_broadcast_i64x4(loadu256(x[i].qs + 32 * j));
            const __m512i hb = _mm512_and_si512(_mm512_srlv_epi16(qh, shifts2(2 * j, 2 * j + 1)), b1);
            q[j] = _mm512_or_si512(_mm512_and_si512(_mm512_srlv_epi16(q4, sh), m4), _mm512_slli_epi16(hb, 4));
        }
        sum += dot_k4_tail(x[i].scales, &y[i], &summ, x[i].d, x[i].dmin, q);
    }
    return sum - summ;
}

/* Sub-blocks of 16 (Q2_K, Q3_K, Q6_K): pair p of chunks = 64 elements = sub-blocks 4p..4p+3.
 * isum = sum_p dpbusd(q_p, y_p) * scales, plus corr (int32, already scaled). */
static inline int isum_16(const __m512i q[4], const int8_t *y8, __m128i scales8) {
    const __m512i S = _mm512_cvtepi8_epi32(scales8);
    __m512i isum = _mm512_setzero_si512();
    for (int p = 0; p < 4; p++) {
        const __m512i d = dpbusd(q[p], loadu512(y8 + 64 * p));
        isum = _mm512_add_epi32(isum, _mm512_mullo_epi32(d, _mm512_permutexvar_epi32(idx_by4(4 * p), S)));
    }
    return _mm512_reduce_add_epi32(isum);
}

float k_avx512_dot_q6_K(const void *w, const void *a, int64_t n) {
    const q_block_q6_K *x = w;
    const q_block_q8_K *y = a;
    const int64_t nb = n / Q_QK_K;
    const __m512i m4 = _mm512_set1_epi8(0x0F), m2 = _mm512_set1_epi8(0x30);
    const __m512i shA = shifts2(4, 2), shB = shifts2(0, 2);
    float sum = 0;
    for (int64_t i = 0; i < nb; i++) {
        const __m128i s8 = loadu128(x[i].scales);
        const int corr = hsum_epi32(_mm256_madd_epi16(loadu256(y[i].bsums), _mm256_cvtepi8_epi16(s8)));
        __m512i q[4];
        for (int h = 0; h < 2; h++) {
            const __m512i L = loadu512(x[i].ql + 64 * h);                      /* [l0 | l1] */
            const __m512i H = _mm512_broadcast_i64x4(loadu256(x[i].qh + 32 * h)); /* [qh | qh] */
            q[2 * h] = _mm512_or_si512(_mm512_and_si512(L, m4), _mm512_and_si512(_mm512_sllv_epi16(H, shA), m2));
            q[2 * h + 1] = _mm512_or_si512(_mm512_and_si512(_mm512_srli_epi16(L, 4), m4),
                                           _mm512_and_si512(_mm512_srlv_epi16(H, shB), m2));
        }
        const int isum = isum_16(q, y[i].qs, s8) - 32 * corr;
        sum += y[i].d * h2f(&x[i].d) * (float)isum;
    }
    return sum;
}

float k_avx512_dot_q3_K(const void *w, const void *a, int64_t n) {
    const q_block_q3_K *x = w;
    const q_block_q8_K *y = a;
    const int64_t nb = n / Q_QK_K;
    const __m512i m3 = _mm512_set1_epi8(3), b1 = _mm512_set1_epi8(1);
    float sum = 0;
    for (int64_t i = 0; i < nb; i++) {
        const __m128i s8 = unpack_scales_q3(x[i].scales);
        const int corr = hsum_epi32(_mm256_madd_epi16(loadu256(y[i].bsums), _mm256_cvtepi8_epi16(s8)));
        const __m512i hm = _mm512_broadcast_i64x4(loadu256(x[i].hmask));
        __m512i q[4];
        for (int p = 0; p < 4; p++) { /* chunks c = 2p, 2p+1: half p/2, shifts 2s, 2s+2 */
            const __m512i q2 = _mm512_broadcast_i64x4(loadu256(x[i].qs + 32 * (p / 2)));
            const int s = 2 * (p % 2);
            const __m512i lo = _mm512_and_si512(_mm512_srlv_epi16(q2, shifts2(2 * s, 2 * s + 2)), m3);
            const __m512i hb = _mm512_and_si512(_mm512_srlv_epi16(hm, shifts2(2 * p, 2 * p + 1)), b1);
            q[p] = _mm512_or_si512(lo, _mm512_slli_epi16(hb, 2));
        }
        const int isum = isum_16(q, y[i].qs, s8) - 4 * corr;
        sum += y[i].d * h2f(&x[i].d) * (float)isum;
    }
    return sum;
}

float k_avx512_dot_q2_K(const void *w, const void *a, int64_t n) {
    const q_block_q2_K *x = w;
    const q_block_q8_K *y = a;
    const int64_t nb = n / Q_QK_K;
    const __m512i m3 = _mm512_set1_epi8(3);
    const __m128i m4 = _mm_set1_epi8(0x0F);
    float sum = 0, summ = 0;
    for (int64_t i = 0; i < nb; i++) {
        const __m128i sm = loadu128(x[i].scales);
        const __m128i s8 = _mm_and_si128(sm, m4), m8 = _mm_and_si128(_mm_srli_epi16(sm, 4), m4);
        const int mins = hsum_epi32(_mm256_madd_epi16(loadu256(y[i].bsums), _mm256_cvtepu8_epi16(m8)));
        __m512i q[4];
        for (int p = 0; p < 4; p++) {
            const __m512i q2 = _mm512_broadcast_i64x4(loadu256(x[i].qs + 32 * (p / 2)));
            const int s = 2 * (p % 2);
            q[p] = _mm512_and_si512(_mm512_srlv_epi16(q2, shifts2(2 * s, 2 * s + 2)), m3);
        }
        const int isum = isum_16(q, y[i].qs, s8);
        sum += y[i].d * h2f(&x[i].d) * (float)isum;
        summ += y[i].d * h2f(&x[i].dmin) * (float)mins;
    }
    return sum - summ;
}

/* ================================================================ decode: 4 rows per call */
/* Matrix-vector products are bound by the weight stream; these kernels take four weight
 * rows per call so the activation block, its scale and its offset correction are loaded
 * and prepared once for four rows. Q8_0 uses 256-bit VNNI (full rate on Zen 4, which
 * splits 512-bit ops), Q4_0 512-bit (Zen 5 has full-width units). The single-row entries
 * compute the same integers and float sequence, so a row's result never depends on which
 * entry or which neighbours computed it (bit-identical). Loops over rows are unrolled by
 * pragma: left rolled, GCC keeps the accumulator arrays on the stack (store-to-load
 * latency on every step: it made these kernels compute-bound at ~10 GB/s a core). */

#define PF_GROUPS 2 /* software prefetch distance, in 4-row groups */
/* Q4_0's rows are half as long as Q8_0's: with weights on 2 MiB pages, 4 groups ahead (the
 * same ~8 KiB at K = 896) decode 1.05x faster than 2 (A/B, tg128 0.5B Q4_0, 4 rounds
 * 0.999-1.061), 1 group 0.93x, 8 groups 0.97x; Q8_0 at 4 groups 0.96x. */
#define PF_GROUPS_Q4 4
/* The K-quant 4-row kernels: as many whole groups as make ~8 KB, at least one. A fixed 2
 * groups put 22-32 KB in flight at K = 4864 (Q4_K / Q6_K ffn_down); 1 group there: Q4_K_M
 * 0.5B tg128 1.03x (7 rounds, median), while K = 1536 rows (1.5B Q4_K) keep 2 (1 group
 * was 0.94x). */
static inline size_t pf_ahead_k(size_t stride) {
    const size_t g = 4 * stride, n = (8192 + g / 2) / g;
    return (n ? n : 1) * g;
}

/* Q4_0: four blocks (72 bytes of a row) a step, one 512-bit vector per row: 128-bit
 * segment j = the 16 quant bytes of block j, cut out of two loads with one word permute
 * (the 18-byte blocks keep every field 2-byte aligned). Against the activation blocks'
 * low / high halves (segment j = elements 0..15 / 16..31 of block j), vpdpbusd gives
 * lane sums of u8 nibbles x s8 activations, seeded with -8 x the activations' lane sums:
 * the four lanes of a segment add up to the block's exact signed integer dot. Four rows'
 * vectors reduce to one (segment j, lane i = row i's block j), and each row's float
 * chain runs in block order, acc = fma((float)isum, d_w * d_a, acc): the prefill tiles'
 * per-block float sequence (batch invariance, tests/test_gemm.c). ~6 instructions a
 * row-block where the previous two-rows-per-256-bit kernel took ~11: from L2 on Zen 5,
 * ~27 (K = 896) / ~42 (K = 4864) GB/s a core instead of ~10 / ~15. The last nb % 4
 * blocks use zero-masked loads (no read past the row) and the same code. */

#define Q4_INLINE static inline __attribute__((always_inline))

/* 32 word indices (vpermw / vpermt2w operands) */
#define IDX16(...) _mm512_loadu_si512((const uint16_t[32]){__VA_ARGS__})

static inline __mmask64 mask_bytes(int64_t n) {
    return n >= 64 ? ~(__mmask64)0 : n <= 0 ? 0 : (((__mmask64)1 << n) - 1);
}

/* 64 bytes at p; the first n only when !full */
Q4_INLINE __m512i load64(const uint8_t *p, int full, int64_t n) {
    return full ? loadu512(p) : _mm512_maskz_loadu_epi8(mask_bytes(n), p);
}

/* 32 bytes at p; the first n only when !full */
Q4_INLINE __m256i load32(const uint8_t *p, int full, int64_t n) {
    return full ? loadu256(p) : _mm256_maskz_loadu_epi8((__mmask32)mask_bytes(n < 32 ? n : 32), p);
}

/* activations of 4 blocks: halves, the seed, d_a per segment */
typedef struct {
    __m512i lo, hi, seed;
    __m512 da;
} q4_act4;

Q4_INLINE q4_act4 q4_act_prep(const uint8_t *y, int full, int cnt) {
    const int64_t n = 34 * (int64_t)cnt; /* bytes of the cnt activation blocks */
    const __m512i A0 = load64(y, full, n), A1 = load64(y + 64, full, n - 64);
    const __m512i B0 = load64(y + 8, full, n - 8), B1 = load64(y + 72, full, n - 72);
    /* words: block j's qs at byte 34j + 2 (low half) and 34j + 18 (high half), d at 34j */
    const __m512i ilo = IDX16(1, 2, 3, 4, 5, 6, 7, 8, 18, 19, 20, 21, 22, 23, 24, 25,
                              35, 36, 37, 38, 39, 40, 41, 42, 52, 53, 54, 55, 56, 57, 58, 59);
    const __m512i ihi = IDX16(5, 6, 7, 8, 9, 10, 11, 12, 22, 23, 24, 25, 26, 27, 28, 29,
                              39, 40, 41, 42, 43, 44, 45, 46, 56, 57, 58, 59, 60, 61, 62, 63);
    const __m512i ida = IDX16(0, 0, 0, 0, 17, 17, 17, 17, 34, 34, 34, 34, 51, 51, 51, 51,
                              0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0);
    q4_act4 r;
    r.lo = _mm512_permutex2var_epi16(A0, ilo, A1);
    r.hi = _mm512_permutex2var_epi16(B0, ihi, B1);
    const __m512i c8 = _mm512_set1_epi8(8);
    r.seed = _mm512_sub_epi32(_mm512_setzero_si512(), _mm512_dpbusd_epi32(dpbusd(c8, r.lo), c8, r.hi));
    r.da = _mm512_cvtph_ps(_mm512_castsi512_si256(_mm512_permutex2var_epi16(A0, ida, A1)));
    return r;
}

/* Prepared activations (k_ops.act_prep): the q4_act4 of every 4-block window of a row,
 * computed once per product instead of once per 4-row group (it was ~1/5 of the decode
 * kernel's instructions): Q4_ACT_BYTES a window, lo | hi | seed | da. Q5_0 uses the same. */
#define Q4_ACT_BYTES 256

size_t k_avx512_prep_q4(const void *arow, int64_t n, void *dst) {
    const int64_t nb = n / Q_QK, nw = (nb + 3) / 4;
    if (!dst) return (size_t)nw * Q4_ACT_BYTES;
    const uint8_t *y = arow;
    uint8_t *o = dst;
    for (int64_t w = 0; w < nw; w++, o += Q4_ACT_BYTES) {
        const int64_t b = 4 * w;
        const q4_act4 A = b + 4 <= nb ? q4_act_prep(y + 34 * b, 1, 4) : q4_act_prep(y + 34 * b, 0, (int)(nb - b));
        _mm512_storeu_si512(o, A.lo);
        _mm512_storeu_si512(o + 64, A.hi);
        _mm512_storeu_si512(o + 128, A.seed);
        _mm512_storeu_ps(o + 192, A.da);
    }
    return (size_t)nw * Q4_ACT_BYTES;
}

Q4_INLINE q4_act4 q4_act_load(const uint8_t *p) {
    return (q4_act4){loadu512(p), loadu512(p + 64), loadu512(p + 128), _mm512_loadu_ps(p + 192)};
}

/* one row's 4 blocks at x, unpacked: lo / hi = the low / high nibbles, segment j = block
 * j; *l0 = its first 64 bytes (the d fields: words 0, 9, 18, 27). The row is read with
 * 256-bit loads (at +0, +32, +40): 512-bit loads straddling cache lines stream from RAM at
 * ~2/3 the rate of 256-bit ones on this CPU (Zen 4 splits them) */
typedef struct {
    __m512i lo, hi;
} q4_w4;

Q4_INLINE q4_w4 q4_wprep(const uint8_t *x, int full, int cnt, __m512i *l0) {
    const int64_t n = 18 * (int64_t)cnt;
    const __m512i L0 = _mm512_inserti64x4(_mm512_castsi256_si512(load32(x, full, n)), load32(x + 32, full, n - 32), 1);
    const __m512i L1 = _mm512_castsi256_si512(load32(x + 40, full, n - 40)); /* bytes 64..71: words 12..15 */
    const __m512i iq = IDX16(1, 2, 3, 4, 5, 6, 7, 8, 10, 11, 12, 13, 14, 15, 16, 17,
                             19, 20, 21, 22, 23, 24, 25, 26, 28, 29, 30, 31, 44, 45, 46, 47);
    const __m512i q = _mm512_permutex2var_epi16(L0, iq, L1), m4 = _mm512_set1_epi8(0x0F);
    *l0 = L0;
    return (q4_w4){_mm512_and_si512(q, m4), _mm512_and_si512(_mm512_srli_epi16(q, 4), m4)};
}

/* the seeded lane sums of an unpacked row against one token's activations */
Q4_INLINE __m512i q4_wdot(const q4_w4 *w, const q4_act4 *A) {
    return _mm512_dpbusd_epi32(_mm512_dpbusd_epi32(A->seed, w->lo, A->lo), w->hi, A->hi);
}

Q4_INLINE __m512i q4_row4(const uint8_t *x, const q4_act4 *A, int full, int cnt, __m512i *l0) {
    const q4_w4 w = q4_wprep(x, full, cnt, l0);
    return q4_wdot(&w, A);
}

/* d_w of 4 rows' 4 blocks from their first 64 bytes: lane 4j + i = row i's block j */
Q4_INLINE __m512 q4_dw4(const __m512i l0[4]) {
    const __m512i id01 = IDX16(0, 32, 0, 0, 9, 41, 0, 0, 18, 50, 0, 0, 27, 59, 0, 0,
                               0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0);
    const __m512i id23 = IDX16(0, 0, 0, 32, 0, 0, 9, 41, 0, 0, 18, 50, 0, 0, 27, 59,
                               0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0);
    const __m512i dw = _mm512_mask_blend_epi16(0xCCCCCCCC, _mm512_permutex2var_epi16(l0[0], id01, l0[1]),
                                               _mm512_permutex2var_epi16(l0[2], id23, l0[3]));
    return _mm512_cvtph_ps(_mm512_castsi512_si256(dw));
}

/* 4 rows' lane sums (segment j = block j) -> one float chain per row, blocks in order:
 * acc lane i = fma((float)isum_ij, d_w * d_a, acc) for j < cnt. Shared by every 4-row
 * entry, so all of them give the same bits for a (row, token). */
Q4_INLINE __m128 fold4(const __m512i z[4], __m512 dw, __m512 da, int cnt, __m128 acc) {
    /* lanes of a segment -> one per row: segment j, lane i = row i's block j */
    const __m512i t01 = _mm512_add_epi32(_mm512_unpacklo_epi32(z[0], z[1]), _mm512_unpackhi_epi32(z[0], z[1]));
    const __m512i t23 = _mm512_add_epi32(_mm512_unpacklo_epi32(z[2], z[3]), _mm512_unpackhi_epi32(z[2], z[3]));
    const __m512 u = _mm512_cvtepi32_ps(
        _mm512_add_epi32(_mm512_unpacklo_epi64(t01, t23), _mm512_unpackhi_epi64(t01, t23)));
    const __m512 dd = _mm512_mul_ps(dw, da);
    /* blocks in order (written out: the extract immediates must be constants at -O1) */
    acc = _mm_fmadd_ps(_mm512_castps512_ps128(u), _mm512_castps512_ps128(dd), acc);
    if (cnt > 1) acc = _mm_fmadd_ps(_mm512_extractf32x4_ps(u, 1), _mm512_extractf32x4_ps(dd, 1), acc);
    if (cnt > 2) acc = _mm_fmadd_ps(_mm512_extractf32x4_ps(u, 2), _mm512_extractf32x4_ps(dd, 2), acc);
    if (cnt > 3) acc = _mm_fmadd_ps(_mm512_extractf32x4_ps(u, 3), _mm512_extractf32x4_ps(dd, 3), acc);
    return acc;
}

/* 4 rows, blocks b..b+cnt-1, nt tokens (token t's prepared window at y + t * ys):
 * acc[t] lane i = row i's chain for token t. The rows are unpacked once for all tokens. */
Q4_INLINE void q4_step4n(const uint8_t *const r[4], size_t xoff, const uint8_t *y, size_t ys, int nt,
                         int full, int cnt, __m128 *acc) {
    q4_w4 w[4];
    __m512i l0[4];
#pragma GCC unroll 4
    for (int i = 0; i < 4; i++) w[i] = q4_wprep(r[i] + xoff, full, cnt, &l0[i]);
    const __m512 dw = q4_dw4(l0);
    for (int t = 0; t < nt; t++) {
        const q4_act4 A = q4_act_load(y + t * ys);
        __m512i z[4];
#pragma GCC unroll 4
        for (int i = 0; i < 4; i++) z[i] = q4_wdot(&w[i], &A);
        acc[t] = fold4(z, dw, A.da, cnt, acc[t]);
    }
}

/* lane 4j of v (segment j's first lane) -> lane j, j < 4 */
Q4_INLINE __m128 seg_first_ps(__m512 v) {
    return _mm512_castps512_ps128(_mm512_permutexvar_ps(_mm512_setr_epi32(0, 4, 8, 12, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0), v));
}

/* One row's seeded lane sums (segment j = block j) -> its float chain over blocks
 * 0..cnt-1, acc = fma((float)isum_j, dd_j, acc): a lane of fold4, shared by the single-row
 * entries of Q4_0, Q5_0 and Q8_0. */
Q4_INLINE __m128 fold1(__m512i z, __m128 dd, int cnt, __m128 acc) {
    z = _mm512_add_epi32(z, _mm512_shuffle_epi32(z, _MM_PERM_BADC));
    z = _mm512_add_epi32(z, _mm512_shuffle_epi32(z, _MM_PERM_CDAB)); /* every lane: its segment's sum */
    const __m512i pick = _mm512_setr_epi32(0, 4, 8, 12, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0);
    const __m128 u = _mm_cvtepi32_ps(_mm512_castsi512_si128(_mm512_permutexvar_epi32(pick, z)));
    acc = _mm_fmadd_ss(u, dd, acc);
    if (cnt > 1) acc = _mm_fmadd_ss(_mm_permute_ps(u, 1), _mm_permute_ps(dd, 1), acc);
    if (cnt > 2) acc = _mm_fmadd_ss(_mm_permute_ps(u, 2), _mm_permute_ps(dd, 2), acc);
    if (cnt > 3) acc = _mm_fmadd_ss(_mm_permute_ps(u, 3), _mm_permute_ps(dd, 3), acc);
    return acc;
}

/* 1 row, blocks b..b+cnt-1, the same integers and float sequence as a lane of q4_step4n */
Q4_INLINE __m128 q4_step1(const uint8_t *x, const uint8_t *y, int full, int cnt, __m128 acc) {
    const q4_act4 A = q4_act_prep(y, full, cnt);
    __m512i l0;
    const __m512i z = q4_row4(x, &A, full, cnt, &l0);
    const __m512i idw = IDX16(0, 9, 18, 27, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0,
                              0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0);
    const __m128 dw = _mm_cvtph_ps(_mm512_castsi512_si128(_mm512_permutexvar_epi16(idw, l0)));
    return fold1(z, _mm_mul_ps(dw, seg_first_ps(A.da)), cnt, acc);
}

/* 4 rows x nt tokens; nt a constant after inlining (the accumulators stay in registers) */
Q4_INLINE void q4_dot4n(const void *w, size_t stride, const void *a, size_t as, int nt, int64_t n,
                        float *out, size_t os) {
    const uint8_t *p = w, *y = a;
    const uint8_t *r[4] = {p, p + stride, p + 2 * stride, p + 3 * stride};
    const int64_t nb = n / Q_QK;
    /* four interleaved row streams defeat the hardware prefetcher: sweep the span
     * PF_GROUPS_Q4 groups ahead (rows of a group are adjacent) at the pace we consume
     * (without: -30% decode tok/s) */
    const char *pf = (const char *)p + PF_GROUPS_Q4 * 4 * stride;
    __m128 acc[K_DOT4N_MAX];
    for (int t = 0; t < nt; t++) acc[t] = _mm_setzero_ps();
    int64_t b = 0;
    for (; b + 4 <= nb; b += 4) {
        for (int l = 0; l < 5; l++) _mm_prefetch(pf + 4 * 18 * b + 64 * l, _MM_HINT_T0); /* 288 bytes */
        q4_step4n(r, 18 * (size_t)b, y + Q4_ACT_BYTES / 4 * b, as, nt, 1, 4, acc);
    }
    if (b < nb) q4_step4n(r, 18 * (size_t)b, y + Q4_ACT_BYTES / 4 * b, as, nt, 0, (int)(nb - b), acc);
    for (int t = 0; t < nt; t++) _mm_storeu_ps(out + t * os, acc[t]);
}

void k_avx512_dot4_q4_0(const void *w, size_t stride, const void *a, int64_t n, float *out) {
    q4_dot4n(w, stride, a, 0, 1, n, out, 0);
}

/* one instantiation per token count, 1..K_DOT4N_MAX */
#define DOT4N_SWITCH(IMPL)                                                                   \
    switch (nt) {                                                                            \
    case 1: IMPL(w, stride, a, as, 1, n, out, os); break;                                    \
    case 2: IMPL(w, stride, a, as, 2, n, out, os); break;                                    \
    case 3: IMPL(w, stride, a, as, 3, n, out, os); break;                                    \
    case 4: IMPL(w, stride, a, as, 4, n, out, os); break;                                    \
    case 5: IMPL(w, stride, a, as, 5, n, out, os); break;                                    \
    case 6: IMPL(w, stride, a, as, 6, n, out, os); break;                                    \
    case 7: IMPL(w, stride, a, as, 7, n, out, os); break;                                    \
    case 8: IMPL(w, stride, a, as, 8, n, out, os); break;                                    \
    default: break;                                                                          \
    }

void k_avx512_dot4n_q4_0(const void *w, size_t stride, const void *a, size_t as, int nt, int64_t n,
                         float *out, size_t os) {
    DOT4N_SWITCH(q4_dot4n)
}

float k_avx512_dot_q4_0_r(const void *w, const void *a, int64_t n) {
    const uint8_t *x = w, *y = a;
    const int64_t nb = n / Q_QK;
    __m128 acc = _mm_setzero_ps();
    int64_t b = 0;
    for (; b + 4 <= nb; b += 4) acc = q4_step1(x + 18 * b, y + 34 * b, 1, 4, acc);
    if (b < nb) acc = q4_step1(x + 18 * b, y + 34 * b, 0, (int)(nb - b), acc);
    return _mm_cvtss_f32(acc);
}

/* Q8_0: four blocks (136 bytes of a row) a step, two 512-bit vectors per row: one per
 * pair of blocks, 256-bit half h = the 32 quant bytes of block h. Every load is 256 bits
 * wide (the qs of one block; 512-bit loads that straddle cache lines halve the rate at
 * which this CPU streams from RAM, ~20 vs ~35 GB/s a core) and the fp16 scales of the four
 * rows' four blocks come with one dword gather. Weights are made unsigned by +128 (xor
 * 0x80) so vpdpbusd takes them as the u8 operand, seeded with -128 x the activations'
 * lane sums (shared by the four rows): exact signed block partials in 8 lanes per block.
 * The two 128-bit quarters of a block fold into one (segment j = block j, 4 lanes), four
 * rows reduce as in q4_step4n, and each row's float chain runs in block order,
 * acc = fma((float)isum, d_w * d_a, acc): the prefill tiles' per-block float sequence
 * (batch invariance, tests/test_gemm.c). The last nb % 4 blocks use zero-masked loads
 * (no read past the row; absent weights xor 0x80 meet zero activations) and the same
 * code. */

/* the 32 qs bytes of block j of a 4-block window at p (zero for a block past cnt) */
Q4_INLINE __m256i q8_qs(const uint8_t *p, int j, int full, int cnt) {
    return full ? loadu256(p + 34 * j + 2)
                : _mm256_maskz_loadu_epi8(j < cnt ? ~(__mmask32)0 : 0, p + 34 * j + 2);
}
Q4_INLINE __m512i q8_qs2(const uint8_t *p, int j, int full, int cnt) {
    return _mm512_inserti64x4(_mm512_castsi256_si512(q8_qs(p, j, full, cnt)), q8_qs(p, j + 1, full, cnt), 1);
}
/* fp16 at base + idx lane k (lanes of blocks past cnt: 0) -> float */
Q4_INLINE __m512 q8_d16(const uint8_t *base, __m512i idx, int full, int cnt) {
    const __mmask16 m = full ? 0xFFFF : (__mmask16)((1u << (4 * cnt)) - 1);
    const __m512i g = _mm512_mask_i32gather_epi32(_mm512_setzero_si512(), m, idx, base, 1);
    return _mm512_cvtph_ps(_mm512_cvtepi32_epi16(g));
}

/* the fp16 scales leading blocks 0..3 (bb bytes each) of a window at p (0 past cnt) -> float */
Q4_INLINE __m128 d4_fp16(const uint8_t *p, int bb, int full, int cnt) {
    uint16_t h[4];
    for (int j = 0; j < 4; j++) {
        h[j] = 0;
        if (full || j < cnt) memcpy(&h[j], p + bb * j, 2);
    }
    return _mm_cvtph_ps(_mm_setr_epi16((short)h[0], (short)h[1], (short)h[2], (short)h[3], 0, 0, 0, 0));
}

typedef struct {
    __m512i a01, a23, seed01, seed23;
    __m128 da; /* d_a of blocks 0..3 */
} q8_act4;

Q4_INLINE q8_act4 q8_act_prep(const uint8_t *y, int full, int cnt) {
    const __m512i c80 = _mm512_set1_epi8((char)0x80), z = _mm512_setzero_si512();
    q8_act4 r;
    r.a01 = q8_qs2(y, 0, full, cnt);
    r.a23 = q8_qs2(y, 2, full, cnt);
    r.seed01 = _mm512_sub_epi32(z, dpbusd(c80, r.a01));
    r.seed23 = _mm512_sub_epi32(z, dpbusd(c80, r.a23));
    r.da = d4_fp16(y, 34, full, cnt);
    return r;
}

/* prepared activations for Q8_0 (see Q4_ACT_BYTES): a01 | a23 | seed01 | seed23 | da (16
 * bytes, padded) */
#define Q8_ACT_BYTES 320

size_t k_avx512_prep_q8(const void *arow, int64_t n, void *dst) {
    const int64_t nb = n / Q_QK, nw = (nb + 3) / 4;
    if (!dst) return (size_t)nw * Q8_ACT_BYTES;
    const uint8_t *y = arow;
    uint8_t *o = dst;
    for (int64_t w = 0; w < nw; w++, o += Q8_ACT_BYTES) {
        const int64_t b = 4 * w;
        const q8_act4 A = b + 4 <= nb ? q8_act_prep(y + 34 * b, 1, 4) : q8_act_prep(y + 34 * b, 0, (int)(nb - b));
        _mm512_storeu_si512(o, A.a01);
        _mm512_storeu_si512(o + 64, A.a23);
        _mm512_storeu_si512(o + 128, A.seed01);
        _mm512_storeu_si512(o + 192, A.seed23);
        _mm512_storeu_ps(o + 256, _mm512_zextps128_ps512(A.da));
    }
    return (size_t)nw * Q8_ACT_BYTES;
}

Q4_INLINE q8_act4 q8_act_load(const uint8_t *p) {
    return (q8_act4){loadu512(p), loadu512(p + 64), loadu512(p + 128), loadu512(p + 192), _mm_loadu_ps((const float *)(p + 256))};
}

/* one row's 4 blocks at x, made unsigned (xor 0x80): blocks 0-1 / 2-3 */
typedef struct {
    __m512i w01, w23;
} q8_w4;

Q4_INLINE q8_w4 q8_wprep(const uint8_t *x, int full, int cnt) {
    const __m512i c80 = _mm512_set1_epi8((char)0x80);
    return (q8_w4){_mm512_xor_si512(q8_qs2(x, 0, full, cnt), c80), _mm512_xor_si512(q8_qs2(x, 2, full, cnt), c80)};
}

/* the seeded lane sums of a prepared row against one token, 128-bit segment j = block j */
Q4_INLINE __m512i q8_wdot(const q8_w4 *w, const q8_act4 *A) {
    const __m512i z01 = _mm512_dpbusd_epi32(A->seed01, w->w01, A->a01);
    const __m512i z23 = _mm512_dpbusd_epi32(A->seed23, w->w23, A->a23);
    return _mm512_add_epi32(_mm512_shuffle_i64x2(z01, z23, _MM_SHUFFLE(2, 0, 2, 0)),
                            _mm512_shuffle_i64x2(z01, z23, _MM_SHUFFLE(3, 1, 3, 1)));
}

Q4_INLINE __m512i q8_row4(const uint8_t *x, const q8_act4 *A, int full, int cnt) {
    const q8_w4 w = q8_wprep(x, full, cnt);
    return q8_wdot(&w, A);
}

/* 4 rows (row i at x + i * stride), blocks b..b+cnt-1, nt tokens (token t's window at
 * y + t * ys): acc[t] lane i = row i's chain; idw lane 4j + i = i * stride + 34 j */
Q4_INLINE void q8_step4n(const uint8_t *x, size_t stride, __m512i idw, const uint8_t *y, size_t ys,
                         int nt, int full, int cnt, __m128 *acc) {
    q8_w4 w[4];
#pragma GCC unroll 4
    for (int i = 0; i < 4; i++) w[i] = q8_wprep(x + i * stride, full, cnt);
    const __m512 dw = q8_d16(x, idw, full, cnt);
    for (int t = 0; t < nt; t++) {
        const q8_act4 A = q8_act_load(y + t * ys);
        __m512i z[4];
#pragma GCC unroll 4
        for (int i = 0; i < 4; i++) z[i] = q8_wdot(&w[i], &A);
        const __m512 da = _mm512_permutexvar_ps(idx_by4(0), _mm512_castps128_ps512(A.da));
        acc[t] = fold4(z, dw, da, cnt, acc[t]);
    }
}

/* 1 row, blocks b..b+cnt-1, the same integers and float sequence as a lane of q8_step4n */
Q4_INLINE __m128 q8_step1(const uint8_t *x, const uint8_t *y, int full, int cnt, __m128 acc) {
    const q8_act4 A = q8_act_prep(y, full, cnt);
    return fold1(q8_row4(x, &A, full, cnt), _mm_mul_ps(d4_fp16(x, 34, full, cnt), A.da), cnt, acc);
}

float k_avx512_dot_q8_0_r(const void *w, const void *a, int64_t n) {
    const uint8_t *x = w, *y = a;
    const int64_t nb = n / Q_QK;
    __m128 acc = _mm_setzero_ps();
    int64_t b = 0;
    for (; b + 4 <= nb; b += 4) acc = q8_step1(x + 34 * b, y + 34 * b, 1, 4, acc);
    if (b < nb) acc = q8_step1(x + 34 * b, y + 34 * b, 0, (int)(nb - b), acc);
    return _mm_cvtss_f32(acc);
}

Q4_INLINE void q8_dot4n(const void *w, size_t stride, const void *a, size_t as, int nt, int64_t n,
                        float *out, size_t os) {
    const uint8_t *p = w, *y = a;
    const int64_t nb = n / Q_QK;
    /* gather offsets of the scales: int32 (rows of up to ~700 MB) */
    const __m512i js = _mm512_setr_epi32(0, 0, 0, 0, 34, 34, 34, 34, 68, 68, 68, 68, 102, 102, 102, 102);
    const __m512i is = _mm512_mullo_epi32(_mm512_setr_epi32(0, 1, 2, 3, 0, 1, 2, 3, 0, 1, 2, 3, 0, 1, 2, 3),
                                          _mm512_set1_epi32((int)stride));
    const __m512i idw = _mm512_add_epi32(js, is);
    const char *pf = (const char *)p + PF_GROUPS * 4 * stride; /* as in q4_dot4n */
    __m128 acc[K_DOT4N_MAX];
    for (int t = 0; t < nt; t++) acc[t] = _mm_setzero_ps();
    int64_t b = 0;
    for (; b + 4 <= nb; b += 4) {
        for (int l = 0; l < 9; l++) _mm_prefetch(pf + 4 * 34 * b + 64 * l, _MM_HINT_T0); /* 544 bytes */
        q8_step4n(p + 34 * b, stride, idw, y + Q8_ACT_BYTES / 4 * b, as, nt, 1, 4, acc);
    }
    if (b < nb) q8_step4n(p + 34 * b, stride, idw, y + Q8_ACT_BYTES / 4 * b, as, nt, 0, (int)(nb - b), acc);
    for (int t = 0; t < nt; t++) _mm_storeu_ps(out + t * os, acc[t]);
}

void k_avx512_dot4_q8_0(const void *w, size_t stride, const void *a, int64_t n, float *out) {
    q8_dot4n(w, stride, a, 0, 1, n, out, 0);
}

void k_avx512_dot4n_q8_0(const void *w, size_t stride, const void *a, size_t as, int nt, int64_t n,
                         float *out, size_t os) {
    DOT4N_SWITCH(q8_dot4n)
}

/* Q5_0: as Q4_0, four blocks (88 bytes of a row) a step, with the fifth bit of every
 * element (qh, 32 bits a block) or'ed in as 0x10 through byte masks, and the seed
 * -16 x the activations' lane sums (twice Q4_0's). The d fields come with one dword
 * gather (as Q8_0). Each row's float chain is the Q4_0 one (fold4), which is also the
 * prefill tiles' per-block order: Q5_0 is batch-invariant too (tests/test_gemm.c). */

/* word w of an 88-byte window from L0 (bytes 0..63) or L1 (bytes 56..87) */
#define Q5W(w) ((w) < 32 ? (w) : 32 + (w) - 28)

/* the qh word of block j of the window at p (0 for a block past cnt) */
Q4_INLINE uint32_t q5_qh(const uint8_t *p, int j, int full, int cnt) {
    uint32_t h = 0;
    if (full || j < cnt) memcpy(&h, p + 22 * j + 2, 4);
    return h;
}

Q4_INLINE q4_w4 q5_wprep(const uint8_t *x, int full, int cnt) {
    const int64_t n = 22 * (int64_t)cnt;
    const __m512i L0 = _mm512_inserti64x4(_mm512_castsi256_si512(load32(x, full, n)), load32(x + 32, full, n - 32), 1);
    const __m512i L1 = _mm512_castsi256_si512(load32(x + 56, full, n - 56));
    const __m512i iq = IDX16(Q5W(3), Q5W(4), Q5W(5), Q5W(6), Q5W(7), Q5W(8), Q5W(9), Q5W(10),
                             Q5W(14), Q5W(15), Q5W(16), Q5W(17), Q5W(18), Q5W(19), Q5W(20), Q5W(21),
                             Q5W(25), Q5W(26), Q5W(27), Q5W(28), Q5W(29), Q5W(30), Q5W(31), Q5W(32),
                             Q5W(36), Q5W(37), Q5W(38), Q5W(39), Q5W(40), Q5W(41), Q5W(42), Q5W(43));
    const __m512i q = _mm512_permutex2var_epi16(L0, iq, L1), m4 = _mm512_set1_epi8(0x0F);
    const __m512i c10 = _mm512_set1_epi8(0x10);
    uint64_t mlo = 0, mhi = 0;
    for (int j = 0; j < 4; j++) {
        const uint64_t h = q5_qh(x, j, full, cnt);
        mlo |= (h & 0xFFFF) << (16 * j);
        mhi |= (h >> 16) << (16 * j);
    }
    return (q4_w4){_mm512_or_si512(_mm512_and_si512(q, m4), _mm512_maskz_mov_epi8((__mmask64)mlo, c10)),
                   _mm512_or_si512(_mm512_and_si512(_mm512_srli_epi16(q, 4), m4),
                                   _mm512_maskz_mov_epi8((__mmask64)mhi, c10))};
}

/* seeded lane sums with the Q5 seed (seed16 = -16 x the activations' lane sums) */
Q4_INLINE __m512i q5_wdot(const q4_w4 *w, const q4_act4 *A, __m512i seed16) {
    return _mm512_dpbusd_epi32(_mm512_dpbusd_epi32(seed16, w->lo, A->lo), w->hi, A->hi);
}

/* The 4-row kernels get the fifth bits and the scales with AVX512_BITALG: one word permute
 * puts block j's qh dword in the low half of 64-bit lanes 2j and 2j + 1 (d_j in word 2 of
 * lane 2j), and vpshufbitqmb picks the bit of each element into a byte mask (lane 2j:
 * elements 0..7 of the low nibbles, 2j + 1: 8..15; bits 16..31 for the high nibbles).
 * The bytes are those of q5_wprep, so the integers and sums are the same. */
#define Q5_BITALG static inline __attribute__((always_inline, target("avx512bitalg")))

Q5_BITALG q4_w4 q5_wprep_ba(const uint8_t *x, int full, int cnt, __m512i *qhd) {
    const int64_t n = 22 * (int64_t)cnt;
    const __m512i L0 = _mm512_inserti64x4(_mm512_castsi256_si512(load32(x, full, n)), load32(x + 32, full, n - 32), 1);
    const __m512i L1 = _mm512_castsi256_si512(load32(x + 56, full, n - 56));
    const __m512i iq = IDX16(Q5W(3), Q5W(4), Q5W(5), Q5W(6), Q5W(7), Q5W(8), Q5W(9), Q5W(10),
                             Q5W(14), Q5W(15), Q5W(16), Q5W(17), Q5W(18), Q5W(19), Q5W(20), Q5W(21),
                             Q5W(25), Q5W(26), Q5W(27), Q5W(28), Q5W(29), Q5W(30), Q5W(31), Q5W(32),
                             Q5W(36), Q5W(37), Q5W(38), Q5W(39), Q5W(40), Q5W(41), Q5W(42), Q5W(43));
    const __m512i ih = IDX16(Q5W(1), Q5W(2), Q5W(0), 0, Q5W(1), Q5W(2), 0, 0,
                             Q5W(12), Q5W(13), Q5W(11), 0, Q5W(12), Q5W(13), 0, 0,
                             Q5W(23), Q5W(24), Q5W(22), 0, Q5W(23), Q5W(24), 0, 0,
                             Q5W(34), Q5W(35), Q5W(33), 0, Q5W(34), Q5W(35), 0, 0);
    const __m512i q = _mm512_permutex2var_epi16(L0, iq, L1), m4 = _mm512_set1_epi8(0x0F);
    const __m512i qh = _mm512_permutex2var_epi16(L0, ih, L1), c10 = _mm512_set1_epi8(0x10);
    const __m512i blo = _mm512_set_epi64(0x0F0E0D0C0B0A0908, 0x0706050403020100, 0x0F0E0D0C0B0A0908,
                                         0x0706050403020100, 0x0F0E0D0C0B0A0908, 0x0706050403020100,
                                         0x0F0E0D0C0B0A0908, 0x0706050403020100);
    const __m512i bhi = _mm512_add_epi8(blo, c10); /* bits 16..31 */
    *qhd = qh;
    return (q4_w4){_mm512_or_si512(_mm512_and_si512(q, m4),
                                   _mm512_maskz_mov_epi8(_mm512_bitshuffle_epi64_mask(qh, blo), c10)),
                   _mm512_or_si512(_mm512_and_si512(_mm512_srli_epi16(q, 4), m4),
                                   _mm512_maskz_mov_epi8(_mm512_bitshuffle_epi64_mask(qh, bhi), c10))};
}

/* d_w of 4 rows' 4 blocks (word 8j + 2 of each row's qh vector): lane 4j + i = row i's block j */
Q4_INLINE __m512 q5_dw4(const __m512i h[4]) {
    const __m512i id01 = IDX16(2, 34, 0, 0, 10, 42, 0, 0, 18, 50, 0, 0, 26, 58, 0, 0,
                               0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0);
    const __m512i id23 = IDX16(0, 0, 2, 34, 0, 0, 10, 42, 0, 0, 18, 50, 0, 0, 26, 58,
                               0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0);
    const __m512i dw = _mm512_mask_blend_epi16(0xCCCCCCCC, _mm512_permutex2var_epi16(h[0], id01, h[1]),
                                               _mm512_permutex2var_epi16(h[2], id23, h[3]));
    return _mm512_cvtph_ps(_mm512_castsi512_si256(dw));
}

/* 4 rows (row i at x + i * stride), blocks b..b+cnt-1, nt tokens (token t's prepared
 * window at y + t * ys) */
Q5_BITALG void q5_step4n(const uint8_t *x, size_t stride, const uint8_t *y, size_t ys, int nt, int full,
                         int cnt, __m128 *acc) {
    q4_w4 w[4];
    __m512i h[4];
#pragma GCC unroll 4
    for (int i = 0; i < 4; i++) w[i] = q5_wprep_ba(x + i * stride, full, cnt, &h[i]);
    const __m512 dw = q5_dw4(h);
    for (int t = 0; t < nt; t++) {
        const q4_act4 A = q4_act_load(y + t * ys);
        const __m512i seed16 = _mm512_add_epi32(A.seed, A.seed);
        __m512i z[4];
#pragma GCC unroll 4
        for (int i = 0; i < 4; i++) z[i] = q5_wdot(&w[i], &A, seed16);
        acc[t] = fold4(z, dw, A.da, cnt, acc[t]);
    }
}

/* 1 row, blocks b..b+cnt-1, the same integers and float sequence as a lane of q5_step4n */
Q4_INLINE __m128 q5_step1(const uint8_t *x, const uint8_t *y, int full, int cnt, __m128 acc) {
    const q4_act4 A = q4_act_prep(y, full, cnt);
    const q4_w4 w = q5_wprep(x, full, cnt);
    const __m512i z = q5_wdot(&w, &A, _mm512_add_epi32(A.seed, A.seed));
    return fold1(z, _mm_mul_ps(d4_fp16(x, 22, full, cnt), seg_first_ps(A.da)), cnt, acc);
}

float k_avx512_dot_q5_0_r(const void *w, const void *a, int64_t n) {
    const uint8_t *x = w, *y = a;
    const int64_t nb = n / Q_QK;
    __m128 acc = _mm_setzero_ps();
    int64_t b = 0;
    for (; b + 4 <= nb; b += 4) acc = q5_step1(x + 22 * b, y + 34 * b, 1, 4, acc);
    if (b < nb) acc = q5_step1(x + 22 * b, y + 34 * b, 0, (int)(nb - b), acc);
    return _mm_cvtss_f32(acc);
}

Q5_BITALG void q5_dot4n(const void *w, size_t stride, const void *a, size_t as, int nt, int64_t n,
                        float *out, size_t os) {
    const uint8_t *p = w, *y = a;
    const int64_t nb = n / Q_QK;
    const char *pf = (const char *)p + PF_GROUPS * 4 * stride; /* as in q4_dot4n */
    __m128 acc[K_DOT4N_MAX];
    for (int t = 0; t < nt; t++) acc[t] = _mm_setzero_ps();
    int64_t b = 0;
    for (; b + 4 <= nb; b += 4) {
        for (int l = 0; l < 6; l++) _mm_prefetch(pf + 4 * 22 * b + 64 * l, _MM_HINT_T0); /* 352 bytes */
        q5_step4n(p + 22 * b, stride, y + Q4_ACT_BYTES / 4 * b, as, nt, 1, 4, acc);
    }
    if (b < nb) q5_step4n(p + 22 * b, stride, y + Q4_ACT_BYTES / 4 * b, as, nt, 0, (int)(nb - b), acc);
    for (int t = 0; t < nt; t++) _mm_storeu_ps(out + t * os, acc[t]);
}

__attribute__((target("avx512bitalg"))) void k_avx512_dot4_q5_0(const void *w, size_t stride, const void *a,
                                                                int64_t n, float *out) {
    q5_dot4n(w, stride, a, 0, 1, n, out, 0);
}

__attribute__((target("avx512bitalg"))) void k_avx512_dot4n_q5_0(const void *w, size_t stride, const void *a,
                                                                 size_t as, int nt, int64_t n, float *out,
                                                                 size_t os) {
    DOT4N_SWITCH(q5_dot4n)
}

/* Q6_K: one super-block (210 bytes of a row) a step, four rows sharing the activation
 * quants and bsums. Bit-identical to k_avx2_dot_q6_K, which stays the single-row entry:
 * its float order (8 lanes, acc += d * isum per super-block, then hsum_ps) is llama.cpp's,
 * which the model goldens (tests/test_model.c) sit close to; the tiles' order (one chain
 * per row) moves near-ties there. Decode (M = 1, this kernel) and short batches (M < 64:
 * spec verification, the AVX2 entry) thus agree bit for bit; only long prefills (tiles)
 * differ, as before. Integers: as k_avx512_dot_q6_K (levels 0..63 from ql / qh, vpdpbusd,
 * sub-block scales per lane with vpmulld, the -32 offset through the bsums as
 * -32 x scale int16 pairs); lane k' and k' + 8 of the 512-bit sums add up to exactly the
 * AVX2 kernel's int32 lane k (element groups 4k..4k+3 of every 32-element chunk). Weight
 * loads are 256 bits wide (see Q8_0); prefetch as in k_avx512_dot4_q4_0. */

/* row x, block against activation quants y8 (4 x 64 bytes) and bsums: 16 int32 lanes,
 * lane k + lane k + 8 = the AVX2 kernel's isum lane k */
Q4_INLINE __m512i q6_row(const q_block_q6_K *x, const __m512i y8[4], __m256i bsums) {
    const __m512i m4 = _mm512_set1_epi8(0x0F), m3 = _mm512_set1_epi8(3);
    const __m512i shA = shifts2(0, 2), shB = shifts2(4, 6);
    const __m512i S = _mm512_cvtepi8_epi32(loadu128(x->scales));
    const __m256i sc16 = _mm256_cvtepi8_epi16(loadu128(x->scales));
    const __m256i c = _mm256_madd_epi16(bsums, _mm256_sub_epi16(_mm256_setzero_si256(), _mm256_slli_epi16(sc16, 5)));
    __m512i is = _mm512_zextsi256_si512(c);
#pragma GCC unroll 2
    for (int h = 0; h < 2; h++) {
        const __m512i L = _mm512_inserti64x4(_mm512_castsi256_si512(loadu256(x->ql + 64 * h)),
                                             loadu256(x->ql + 64 * h + 32), 1);
        const __m512i H = _mm512_broadcast_i64x4(loadu256(x->qh + 32 * h));
        /* elements 0..63 of the half: low nibbles, qh bits 0-1 / 2-3; 64..127: high, 4-5 / 6-7 */
        const __m512i qA = _mm512_or_si512(_mm512_and_si512(L, m4),
                                           _mm512_slli_epi16(_mm512_and_si512(_mm512_srlv_epi16(H, shA), m3), 4));
        const __m512i qB = _mm512_or_si512(_mm512_and_si512(_mm512_srli_epi16(L, 4), m4),
                                           _mm512_slli_epi16(_mm512_and_si512(_mm512_srlv_epi16(H, shB), m3), 4));
        const __m512i sA = _mm512_permutexvar_epi32(idx_by4(8 * h), S);
        const __m512i sB = _mm512_permutexvar_epi32(idx_by4(8 * h + 4), S);
        is = _mm512_add_epi32(is, _mm512_mullo_epi32(dpbusd(qA, y8[2 * h]), sA));
        is = _mm512_add_epi32(is, _mm512_mullo_epi32(dpbusd(qB, y8[2 * h + 1]), sB));
    }
    return is;
}

/* two rows' lane sums -> [row a's 8 AVX2 lanes | row b's] as float */
static inline __m512 q6_fold2(__m512i za, __m512i zb) {
    return _mm512_cvtepi32_ps(_mm512_add_epi32(_mm512_shuffle_i64x2(za, zb, _MM_SHUFFLE(1, 0, 1, 0)),
                                               _mm512_shuffle_i64x2(za, zb, _MM_SHUFFLE(3, 2, 3, 2))));
}

void k_avx512_dot4_q6_K(const void *w, size_t stride, const void *a, int64_t n, float *out) {
    const uint8_t *p = w;
    const q_block_q8_K *y = a;
    const int64_t nb = n / Q_QK_K;
    const char *pf = (const char *)p + pf_ahead_k(stride);
    __m512 acc01 = _mm512_setzero_ps(), acc23 = _mm512_setzero_ps(); /* [row 0 | row 1], [2 | 3] */
    for (int64_t b = 0; b < nb; b++) {
        for (int l = 0; l < 14; l++) _mm_prefetch(pf + 4 * 210 * b + 64 * l, _MM_HINT_T0); /* 840 bytes */
        __m512i y8[4];
        for (int k = 0; k < 4; k++) y8[k] = loadu512(y[b].qs + 64 * k);
        const __m256i bs = loadu256(y[b].bsums);
        __m512i z[4];
        float d[4];
#pragma GCC unroll 4
        for (int i = 0; i < 4; i++) {
            const q_block_q6_K *x = (const q_block_q6_K *)(p + i * stride) + b;
            z[i] = q6_row(x, y8, bs);
            d[i] = y[b].d * h2f(&x->d);
        }
        acc01 = _mm512_fmadd_ps(set2_ps(d[0], d[1]), q6_fold2(z[0], z[1]), acc01);
        acc23 = _mm512_fmadd_ps(set2_ps(d[2], d[3]), q6_fold2(z[2], z[3]), acc23);
    }
    out[0] = hsum_ps(_mm512_castps512_ps256(acc01));
    out[1] = hsum_ps(_mm512_extractf32x8_ps(acc01, 1));
    out[2] = hsum_ps(_mm512_castps512_ps256(acc23));
    out[3] = hsum_ps(_mm512_extractf32x8_ps(acc23, 1));
}

/* Q4_K: one super-block (144 bytes of a row) a step, four rows sharing the activation
 * quants. Bit-identical to k_avx2_dot_q4_K, which stays the single-row entry (llama.cpp's
 * float order, as for Q6_K above): per row, 8 lanes of acc += d * isum per super-block,
 * then hsum_ps, minus the chain of dmin * mins . bsums. Integers: a 512-bit half h holds
 * 64-element chunks 2h (lanes 0..7) and 2h + 1 (lanes 8..15); vpdpbusd against the
 * matching activation bytes, times the sub-block scale per lane; lane k + lane k + 8 is
 * the AVX2 kernel's lane k. Weight loads are 256 bits wide, prefetch as for Q6_K. */
void k_avx512_dot4_q4_K(const void *w, size_t stride, const void *a, int64_t n, float *out) {
    const uint8_t *p = w;
    const q_block_q8_K *y = a;
    const int64_t nb = n / Q_QK_K;
    const char *pf = (const char *)p + pf_ahead_k(stride);
    const __m512i m4 = _mm512_set1_epi8(0x0F);
    /* scale lanes: half h, low nibbles: sub-blocks 4h | 4h + 2; high: 4h + 1 | 4h + 3 */
    const __m512i isl[2] = {_mm512_setr_epi32(0, 0, 0, 0, 0, 0, 0, 0, 2, 2, 2, 2, 2, 2, 2, 2),
                            _mm512_setr_epi32(4, 4, 4, 4, 4, 4, 4, 4, 6, 6, 6, 6, 6, 6, 6, 6)};
    const __m512i ish[2] = {_mm512_setr_epi32(1, 1, 1, 1, 1, 1, 1, 1, 3, 3, 3, 3, 3, 3, 3, 3),
                            _mm512_setr_epi32(5, 5, 5, 5, 5, 5, 5, 5, 7, 7, 7, 7, 7, 7, 7, 7)};
    __m512 acc01 = _mm512_setzero_ps(), acc23 = _mm512_setzero_ps(); /* [row 0 | row 1], [2 | 3] */
    float summ[4] = {0, 0, 0, 0};
    for (int64_t b = 0; b < nb; b++) {
        for (int l = 0; l < 9; l++) _mm_prefetch(pf + 4 * 144 * b + 64 * l, _MM_HINT_T0); /* 576 bytes */
        __m512i yl[2], yh[2];
        for (int h = 0; h < 2; h++) {
            const int8_t *q8 = y[b].qs + 128 * h;
            yl[h] = _mm512_inserti64x4(_mm512_castsi256_si512(loadu256(q8)), loadu256(q8 + 64), 1);
            yh[h] = _mm512_inserti64x4(_mm512_castsi256_si512(loadu256(q8 + 32)), loadu256(q8 + 96), 1);
        }
        __m512i z[4];
        float d[4];
#pragma GCC unroll 4
        for (int i = 0; i < 4; i++) {
            const q_block_q4_K *x = (const q_block_q4_K *)(p + i * stride) + b;
            uint64_t sc, mn;
            unpack_scales_k4(x->scales, &sc, &mn);
            d[i] = y[b].d * h2f(&x->d);
            const float dmin = y[b].d * h2f(&x->dmin);
            summ[i] += dmin * (float)mins_dot_bsums8(mn, y[b].bsums);
            const __m512i S = _mm512_cvtepu8_epi32(_mm_cvtsi64_si128((long long)sc));
            __m512i is = _mm512_setzero_si512();
#pragma GCC unroll 2
            for (int h = 0; h < 2; h++) {
                const __m512i L = _mm512_inserti64x4(_mm512_castsi256_si512(loadu256(x->qs + 64 * h)),
                                                     loadu256(x->qs + 64 * h + 32), 1);
                const __m512i lo = _mm512_and_si512(L, m4), hi = _mm512_and_si512(_mm512_srli_epi16(L, 4), m4);
                is = _mm512_add_epi32(is, _mm512_mullo_epi32(dpbusd(lo, yl[h]), _mm512_permutexvar_epi32(isl[h], S)));
                is = _mm512_add_epi32(is, _mm512_mullo_epi32(dpbusd(hi, yh[h]), _mm512_permutexvar_epi32(ish[h], S)));
            }
            z[i] = is;
        }
        acc01 = _mm512_fmadd_ps(set2_ps(d[0], d[1]), q6_fold2(z[0], z[1]), acc01);
        acc23 = _mm512_fmadd_ps(set2_ps(d[2], d[3]), q6_fold2(z[2], z[3]), acc23);
    }
    out[0] = hsum_ps(_mm512_castps512_ps256(acc01)) - summ[0];
    out[1] = hsum_ps(_mm512_extractf32x8_ps(acc01, 1)) - summ[1];
    out[2] = hsum_ps(_mm512_castps512_ps256(acc23)) - summ[2];
    out[3] = hsum_ps(_mm512_extractf32x8_ps(acc23, 1)) - summ[3];
}

/* Q4_K / Q5_K (five), 4 rows x nt tokens (nt <= 4 a pass; more tokens take more passes):
 * each row's super-block is unpacked once for the pass's tokens; every (row, token) runs
 * the integer and float sequence of k_avx512_dot4_q4_K, i.e. of the AVX2 single-row dot,
 * so the bits are the same. Q5_K's fifth bits (qh byte e: bit 2j / 2j + 1 for element e of
 * chunk j's low / high nibbles) are or'ed in as 0x10. */
Q4_INLINE void kq_dot4n(const void *w, size_t stride, const void *a, size_t as, int nt, int64_t n,
                        float *out, size_t os, const int five) {
    const uint8_t *p = w;
    const int64_t nb = n / Q_QK_K;
    const size_t bb = five ? sizeof(q_block_q5_K) : sizeof(q_block_q4_K);
    const size_t qs_off = five ? offsetof(q_block_q5_K, qs) : offsetof(q_block_q4_K, qs);
    const char *pf = (const char *)p + pf_ahead_k(stride);
    const __m512i m4 = _mm512_set1_epi8(0x0F), b1 = _mm512_set1_epi8(1);
    const __m512i isl[2] = {_mm512_setr_epi32(0, 0, 0, 0, 0, 0, 0, 0, 2, 2, 2, 2, 2, 2, 2, 2),
                            _mm512_setr_epi32(4, 4, 4, 4, 4, 4, 4, 4, 6, 6, 6, 6, 6, 6, 6, 6)};
    const __m512i ish[2] = {_mm512_setr_epi32(1, 1, 1, 1, 1, 1, 1, 1, 3, 3, 3, 3, 3, 3, 3, 3),
                            _mm512_setr_epi32(5, 5, 5, 5, 5, 5, 5, 5, 7, 7, 7, 7, 7, 7, 7, 7)};
    __m512 acc[2][4];
    float summ[4][4];
    for (int t = 0; t < nt; t++) {
        acc[0][t] = acc[1][t] = _mm512_setzero_ps();
        for (int i = 0; i < 4; i++) summ[i][t] = 0;
    }
    for (int64_t b = 0; b < nb; b++) {
        for (size_t l = 0; l < (4 * bb + 63) / 64; l++) _mm_prefetch(pf + 4 * bb * b + 64 * l, _MM_HINT_T0);
        __m512i Y[4][4]; /* token t: low / high nibbles' activation bytes of halves 0, 1 */
        const q_block_q8_K *yb[4];
        for (int t = 0; t < nt; t++) {
            yb[t] = (const q_block_q8_K *)((const uint8_t *)a + t * as) + b;
            for (int h = 0; h < 2; h++) {
                const int8_t *q8 = yb[t]->qs + 128 * h;
                Y[t][2 * h] = _mm512_inserti64x4(_mm512_castsi256_si512(loadu256(q8)), loadu256(q8 + 64), 1);
                Y[t][2 * h + 1] = _mm512_inserti64x4(_mm512_castsi256_si512(loadu256(q8 + 32)), loadu256(q8 + 96), 1);
            }
        }
        for (int pr = 0; pr < 2; pr++) {
            __m512i z[2][4];
            float d[2][4];
            for (int ii = 0; ii < 2; ii++) {
                const int i = 2 * pr + ii;
                const uint8_t *xb = p + i * stride + (size_t)b * bb; /* d, dmin, scales[12] lead both */
                const q_block_q4_K *x = (const q_block_q4_K *)xb;
                uint64_t sc, mn;
                unpack_scales_k4(x->scales, &sc, &mn);
                const __m512i S = _mm512_cvtepu8_epi32(_mm_cvtsi64_si128((long long)sc));
                const __m512i QH = five ? _mm512_broadcast_i64x4(loadu256(((const q_block_q5_K *)xb)->qh))
                                        : _mm512_setzero_si512();
                __m512i lo[2], hi[2], Sl[2], Sh[2];
                for (int h = 0; h < 2; h++) {
                    const __m512i L = _mm512_inserti64x4(_mm512_castsi256_si512(loadu256(xb + qs_off + 64 * h)),
                                                         loadu256(xb + qs_off + 64 * h + 32), 1);
                    lo[h] = _mm512_and_si512(L, m4);
                    hi[h] = _mm512_and_si512(_mm512_srli_epi16(L, 4), m4);
                    if (five) { /* half h holds chunks 2h (bytes 0..31) and 2h + 1 (32..63) */
                        const __m512i bl = _mm512_and_si512(_mm512_srlv_epi16(QH, shifts2(4 * h, 4 * h + 2)), b1);
                        const __m512i bh = _mm512_and_si512(_mm512_srlv_epi16(QH, shifts2(4 * h + 1, 4 * h + 3)), b1);
                        lo[h] = _mm512_or_si512(lo[h], _mm512_slli_epi16(bl, 4));
                        hi[h] = _mm512_or_si512(hi[h], _mm512_slli_epi16(bh, 4));
                    }
                    Sl[h] = _mm512_permutexvar_epi32(isl[h], S);
                    Sh[h] = _mm512_permutexvar_epi32(ish[h], S);
                }
                for (int t = 0; t < nt; t++) {
                    d[ii][t] = yb[t]->d * h2f(&x->d);
                    const float dmin = yb[t]->d * h2f(&x->dmin);
                    summ[i][t] += dmin * (float)mins_dot_bsums8(mn, yb[t]->bsums);
                    __m512i is = _mm512_setzero_si512();
                    for (int h = 0; h < 2; h++) {
                        is = _mm512_add_epi32(is, _mm512_mullo_epi32(dpbusd(lo[h], Y[t][2 * h]), Sl[h]));
                        is = _mm512_add_epi32(is, _mm512_mullo_epi32(dpbusd(hi[h], Y[t][2 * h + 1]), Sh[h]));
                    }
                    z[ii][t] = is;
                }
            }
            for (int t = 0; t < nt; t++)
                acc[pr][t] = _mm512_fmadd_ps(set2_ps(d[0][t], d[1][t]), q6_fold2(z[0][t], z[1][t]), acc[pr][t]);
        }
    }
    for (int t = 0; t < nt; t++) {
        float *o = out + t * os;
        o[0] = hsum_ps(_mm512_castps512_ps256(acc[0][t])) - summ[0][t];
        o[1] = hsum_ps(_mm512_extractf32x8_ps(acc[0][t], 1)) - summ[1][t];
        o[2] = hsum_ps(_mm512_castps512_ps256(acc[1][t])) - summ[2][t];
        o[3] = hsum_ps(_mm512_extractf32x8_ps(acc[1][t], 1)) - summ[3][t];
    }
}

/* K-quant x N entries: passes of up to 4 tokens (registers), each token count its own
 * instantiation of IMPL(w, stride, a, as, nt, n, out, os) */
#define KQ_PASSES(IMPL)                                                                      \
    for (int t0 = 0; t0 < nt; t0 += 4) {                                                     \
        const void *at = (const uint8_t *)a + (size_t)t0 * as;                               \
        float *ot = out + (size_t)t0 * os;                                                   \
        switch (nt - t0 < 4 ? nt - t0 : 4) {                                                 \
        case 1: IMPL(w, stride, at, as, 1, n, ot, os); break;                                \
        case 2: IMPL(w, stride, at, as, 2, n, ot, os); break;                                \
        case 3: IMPL(w, stride, at, as, 3, n, ot, os); break;                                \
        default: IMPL(w, stride, at, as, 4, n, ot, os); break;                               \
        }                                                                                    \
    }

Q4_INLINE void q4k_dot4n(const void *w, size_t stride, const void *a, size_t as, int nt, int64_t n,
                         float *out, size_t os) {
    kq_dot4n(w, stride, a, as, nt, n, out, os, 0);
}

Q4_INLINE void q5k_dot4n(const void *w, size_t stride, const void *a, size_t as, int nt, int64_t n,
                         float *out, size_t os) {
    kq_dot4n(w, stride, a, as, nt, n, out, os, 1);
}

void k_avx512_dot4n_q4_K(const void *w, size_t stride, const void *a, size_t as, int nt, int64_t n,
                         float *out, size_t os) {
    KQ_PASSES(q4k_dot4n)
}

void k_avx512_dot4_q5_K(const void *w, size_t stride, const void *a, int64_t n, float *out) {
    kq_dot4n(w, stride, a, 0, 1, n, out, 0, 1);
}

void k_avx512_dot4n_q5_K(const void *w, size_t stride, const void *a, size_t as, int nt, int64_t n,
                         float *out, size_t os) {
    KQ_PASSES(q5k_dot4n)
}

/* Q6_K, 4 rows x nt tokens (as q4k_dot4n): each row's super-block is unpacked once for the
 * pass's tokens (levels, sub-block scales per lane, -32 x scale pairs); every (row, token)
 * runs the integers and float sequence of k_avx512_dot4_q6_K, so the bits are the same. */
Q4_INLINE void q6k_dot4n(const void *w, size_t stride, const void *a, size_t as, int nt, int64_t n,
                         float *out, size_t os) {
    const uint8_t *p = w;
    const int64_t nb = n / Q_QK_K;
    const char *pf = (const char *)p + pf_ahead_k(stride);
    const __m512i m4 = _mm512_set1_epi8(0x0F), m3 = _mm512_set1_epi8(3);
    const __m512i shA = shifts2(0, 2), shB = shifts2(4, 6);
    __m512 acc[2][4];
    for (int t = 0; t < nt; t++) acc[0][t] = acc[1][t] = _mm512_setzero_ps();
    for (int64_t b = 0; b < nb; b++) {
        for (int l = 0; l < 14; l++) _mm_prefetch(pf + 4 * 210 * b + 64 * l, _MM_HINT_T0); /* 840 bytes */
        const q_block_q8_K *yb[4];
        for (int t = 0; t < nt; t++) yb[t] = (const q_block_q8_K *)((const uint8_t *)a + t * as) + b;
        for (int pr = 0; pr < 2; pr++) {
            __m512i z[2][4];
            float d[2][4];
            for (int ii = 0; ii < 2; ii++) {
                const q_block_q6_K *x = (const q_block_q6_K *)(p + (2 * pr + ii) * stride) + b;
                const __m512i S = _mm512_cvtepi8_epi32(loadu128(x->scales));
                const __m256i sc16 = _mm256_cvtepi8_epi16(loadu128(x->scales));
                const __m256i nsc = _mm256_sub_epi16(_mm256_setzero_si256(), _mm256_slli_epi16(sc16, 5));
                __m512i qA[2], qB[2], sA[2], sB[2];
                for (int h = 0; h < 2; h++) {
                    const __m512i L = _mm512_inserti64x4(_mm512_castsi256_si512(loadu256(x->ql + 64 * h)),
                                                         loadu256(x->ql + 64 * h + 32), 1);
                    const __m512i H = _mm512_broadcast_i64x4(loadu256(x->qh + 32 * h));
                    qA[h] = _mm512_or_si512(_mm512_and_si512(L, m4),
                                            _mm512_slli_epi16(_mm512_and_si512(_mm512_srlv_epi16(H, shA), m3), 4));
                    qB[h] = _mm512_or_si512(_mm512_and_si512(_mm512_srli_epi16(L, 4), m4),
                                            _mm512_slli_epi16(_mm512_and_si512(_mm512_srlv_epi16(H, shB), m3), 4));
                    sA[h] = _mm512_permutexvar_epi32(idx_by4(8 * h), S);
                    sB[h] = _mm512_permutexvar_epi32(idx_by4(8 * h + 4), S);
                }
                for (int t = 0; t < nt; t++) {
                    const int8_t *q8 = yb[t]->qs;
                    __m512i is = _mm512_zextsi256_si512(_mm256_madd_epi16(loadu256(yb[t]->bsums), nsc));
                    for (int h = 0; h < 2; h++) {
                        is = _mm512_add_epi32(is, _mm512_mullo_epi32(dpbusd(qA[h], loadu512(q8 + 128 * h)), sA[h]));
                        is = _mm512_add_epi32(is, _mm512_mullo_epi32(dpbusd(qB[h], loadu512(q8 + 128 * h + 64)), sB[h]));
                    }
                    z[ii][t] = is;
                    d[ii][t] = yb[t]->d * h2f(&x->d);
                }
            }
            for (int t = 0; t < nt; t++)
                acc[pr][t] = _mm512_fmadd_ps(set2_ps(d[0][t], d[1][t]), q6_fold2(z[0][t], z[1][t]), acc[pr][t]);
        }
    }
    for (int t = 0; t < nt; t++) {
        float *o = out + t * os;
        o[0] = hsum_ps(_mm512_castps512_ps256(acc[0][t]));
        o[1] = hsum_ps(_mm512_extractf32x8_ps(acc[0][t], 1));
        o[2] = hsum_ps(_mm512_castps512_ps256(acc[1][t]));
        o[3] = hsum_ps(_mm512_extractf32x8_ps(acc[1][t], 1));
    }
}

void k_avx512_dot4n_q6_K(const void *w, size_t stride, const void *a, size_t as, int nt, int64_t n,
                         float *out, size_t os) {
    KQ_PASSES(q6k_dot4n)
}

/* ================================================================ install */

/* Only where the AVX-512 kernel measured faster than the AVX2 one (bench_kernels, in-cache
 * and from RAM, Zen 4, which splits 512-bit ops in two): F32, F16, Q5_0, Q5_1 (and BF16
 * below). For Q4_0, Q8_0, Q4_1 and the K-quants the AVX2 kernels stay installed; their
 * AVX-512 versions are kept, tested and benched (k_avx512_dot_*) for CPUs with full-width
 * units and for the prefill work. */
void k_install_avx512(k_kernels *k) {
    k->vec = (k_vec_ops){"avx512", k_avx512_silu_mul, k_avx512_attend_f32, k_avx512_attend_f16};
#define E(T, DOT)                                                                        \
    do {                                                                                 \
        k->ops[ND_TYPE_##T].name = "avx512";                                             \
        k->ops[ND_TYPE_##T].vec_dot = DOT;                                               \
    } while (0)
    E(F32, k_avx512_dot_f32);
    E(F16, k_avx512_dot_f16);
    E(Q5_0, k_avx512_dot_q5_0_r);
    E(Q5_1, k_avx512_dot_q5_1);
    E(Q4_0, k_avx512_dot_q4_0_r);
    E(Q8_0, k_avx512_dot_q8_0_r);
#undef E
    /* decode: four rows per call (bit-identical to the single-row entries above) */
    k->ops[ND_TYPE_Q4_0].vec_dot4 = k_avx512_dot4_q4_0;
    k->ops[ND_TYPE_Q8_0].vec_dot4 = k_avx512_dot4_q8_0;
    k->ops[ND_TYPE_Q6_K].vec_dot4 = k_avx512_dot4_q6_K; /* vec_dot: k_avx2_dot_q6_K (same bits) */
    k->ops[ND_TYPE_Q4_K].vec_dot4 = k_avx512_dot4_q4_K; /* vec_dot: k_avx2_dot_q4_K (same bits) */
    k->ops[ND_TYPE_Q4_K].vec_dot4n = k_avx512_dot4n_q4_K;
    k->ops[ND_TYPE_Q6_K].vec_dot4n = k_avx512_dot4n_q6_K;
    k->ops[ND_TYPE_Q5_K].vec_dot4 = k_avx512_dot4_q5_K; /* vec_dot: k_avx2_dot_q5_K (same bits) */
    k->ops[ND_TYPE_Q5_K].vec_dot4n = k_avx512_dot4n_q5_K;
    /* short batches: 4 rows x up to K_DOT4N_MAX tokens (bit-identical to vec_dot4) */
    k->ops[ND_TYPE_Q4_0].vec_dot4n = k_avx512_dot4n_q4_0;
    k->ops[ND_TYPE_Q8_0].vec_dot4n = k_avx512_dot4n_q8_0;
    k->ops[ND_TYPE_Q4_0].quantize = k_avx512_quantize_q8_0;
    k->ops[ND_TYPE_Q5_0].quantize = k_avx512_quantize_q8_0;
    k->ops[ND_TYPE_Q8_0].quantize = k_avx512_quantize_q8_0;
    /* their dot4 / dot4n read activations prepared once per product */
    k->ops[ND_TYPE_Q4_0].act_prep = k_avx512_prep_q4;
    k->ops[ND_TYPE_Q8_0].act_prep = k_avx512_prep_q8;
}

void k_install_avx512_bitalg(k_kernels *k) {
    k->ops[ND_TYPE_Q5_0].vec_dot16 = k_avx512_dot16_q5_0; /* the X16 layout's decode side */
    k->ops[ND_TYPE_Q5_0].act_prep16 = k_avx512_prep16_q5_0;
    k->ops[ND_TYPE_Q5_0].vec_dot4 = k_avx512_dot4_q5_0;
    k->ops[ND_TYPE_Q5_0].vec_dot4n = k_avx512_dot4n_q5_0;
    k->ops[ND_TYPE_Q5_0].act_prep = k_avx512_prep_q4;
}

void k_install_avx512_bf16(k_kernels *k) {
    k->ops[ND_TYPE_BF16].name = "avx512";
    k->ops[ND_TYPE_BF16].vec_dot = k_avx512_dot_bf16;
}
