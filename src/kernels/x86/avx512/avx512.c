/* AVX-512 (F/BW/VL/DQ + VNNI, BF16 for the bf16 dot) kernels: weight x activation dots.
 * Semantics: kernels/x86/x86.h; the activation quantizers are the AVX2 ones.
 *
 * Integer technique: vpdpbusd (u8 x s8, four products summed into an int32 lane, no
 * saturation) on 64 bytes at a time — two 32-blocks, or two 32-element chunks of a
 * K-quant super-block. Each int32 lane holds products of one sub-block only, so sub-block
 * scales are applied per lane (vpmulld with a permuted scale vector) and the block's lanes
 * are converted to float and scaled with one FMA, as in the AVX2 file.
 */
#include <math.h>
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
 * and prepared once for four rows, and use 256-bit VNNI (vpdpbusd: one instruction for
 * what AVX2 needs maddubs + madd for; full rate on Zen 4, which splits 512-bit ops).
 * The single-row entries run the same code on (row, row), so a row's result never depends
 * on which entry or which neighbours computed it (bit-identical). */

#define PF_GROUPS 2 /* software prefetch distance, in 4-row groups */

static inline __m256i dpbusd256(__m256i acc, __m256i u, __m256i s) {
    return _mm256_dpbusd_epi32(acc, u, s);
}

/* Q4_0: two rows per vector (row a's 16 quant bytes in the low 128 bits, row b's in the
 * high), activation halves broadcast to both. Lane k of a half = elements 4k..4k+3 and
 * 16+4k..16+4k+3 of the block; u8 nibbles x s8 activations, minus 8 * (their activation
 * sum) precomputed once per block, is the exact signed block partial. */
static inline __attribute__((always_inline)) void q4_0_rows(const q_block_q4_0 *const *r, int np,
                                                            const q_block_q8_0 *y, int64_t nb,
                                                            float *out) {
    const __m256i m4 = _mm256_set1_epi8(0x0F), c8 = _mm256_set1_epi8(8), z = _mm256_setzero_si256();
    const size_t pf_off = PF_GROUPS * 4 * (size_t)nb * sizeof(q_block_q4_0);
    __m256 acc[2] = {_mm256_setzero_ps(), _mm256_setzero_ps()};
    for (int64_t b = 0; b < nb; b++) {
        const __m256i ylo = _mm256_broadcastsi128_si256(loadu128(y[b].qs));
        const __m256i yhi = _mm256_broadcastsi128_si256(loadu128(y[b].qs + 16));
        const __m256i corr = dpbusd256(dpbusd256(z, c8, ylo), c8, yhi);
        uint16_t dyh;
        memcpy(&dyh, &y[b].d, 2);
        const __m256 dy = _mm256_cvtph_ps(_mm_set1_epi16((short)dyh));
        /* four interleaved row streams defeat the hardware prefetcher: sweep the span
         * PF_GROUPS groups ahead (rows of a group are adjacent) at the pace we consume */
        if (np == 2) _mm_prefetch((const char *)(r[0] + b * 4) + pf_off, _MM_HINT_T0);
        for (int p = 0; p < np; p++) {
            const q_block_q4_0 *xa = r[2 * p] + b, *xb = r[2 * p + 1] + b;
            const __m256i q = _mm256_inserti128_si256(_mm256_castsi128_si256(loadu128(xa->qs)),
                                                      loadu128(xb->qs), 1);
            const __m256i lo = _mm256_and_si256(q, m4), hi = _mm256_and_si256(_mm256_srli_epi16(q, 4), m4);
            const __m256i si = _mm256_sub_epi32(dpbusd256(dpbusd256(z, lo, ylo), hi, yhi), corr);
            uint16_t da, db;
            memcpy(&da, &xa->d, 2);
            memcpy(&db, &xb->d, 2);
            const __m256 dx = _mm256_cvtph_ps(_mm_blend_epi32(_mm_set1_epi16((short)da), _mm_set1_epi16((short)db), 0xC));
            /* the block's exact integer sum per row (lanes 0-3: row a, 4-7: row b), then
             * acc += isum * (d_w * d_a) with one rounding: the float order of the prefill
             * GEMM tiles, so a token's logits do not depend on the batch it is in */
            __m256i h = _mm256_hadd_epi32(si, si);
            h = _mm256_hadd_epi32(h, h);
            acc[p] = _mm256_fmadd_ps(_mm256_cvtepi32_ps(h), _mm256_mul_ps(dx, dy), acc[p]);
        }
    }
    for (int p = 0; p < np; p++) {
        out[2 * p] = _mm256_cvtss_f32(acc[p]);
        out[2 * p + 1] = _mm_cvtss_f32(_mm256_extractf128_ps(acc[p], 1));
    }
}

float k_avx512_dot_q4_0_r(const void *w, const void *a, int64_t n) {
    const q_block_q4_0 *r[2] = {w, w};
    float out[2];
    q4_0_rows(r, 1, a, n / Q_QK, out);
    return out[0];
}

void k_avx512_dot4_q4_0(const void *w, size_t stride, const void *a, int64_t n, float *out) {
    const uint8_t *p = w;
    const q_block_q4_0 *r[4] = {(const void *)p, (const void *)(p + stride),
                                (const void *)(p + 2 * stride), (const void *)(p + 3 * stride)};
    q4_0_rows(r, 2, a, n / Q_QK, out);
}

/* Q8_0: a block is one vector; weights made unsigned by +128 (xor 0x80) so vpdpbusd takes
 * them as the u8 operand, and 128 * (activation lane sums), shared by all rows, is taken
 * off: exact signed block partials in 8 lanes per row. */
static inline __attribute__((always_inline)) void q8_0_rows(const q_block_q8_0 *const *r, int nr,
                                                            const q_block_q8_0 *y, int64_t nb,
                                                            float *out) {
    const __m256i c80 = _mm256_set1_epi8((char)0x80), z = _mm256_setzero_si256();
    const size_t pf_off = PF_GROUPS * 4 * (size_t)nb * sizeof(q_block_q8_0);
    float acc[4] = {0, 0, 0, 0};
    for (int64_t b = 0; b < nb; b++) {
        const __m256i yv = loadu256(y[b].qs);
        const __m256i corr = dpbusd256(z, c80, yv);
        const float dy = h2f(&y[b].d);
        if (nr == 4) {
            const char *pf = (const char *)(r[0] + b * 4) + pf_off;
            _mm_prefetch(pf, _MM_HINT_T0);
            _mm_prefetch(pf + 64, _MM_HINT_T0);
            _mm_prefetch(pf + 128, _MM_HINT_T0);
        }
        for (int i = 0; i < nr; i++) {
            const __m256i wu = _mm256_xor_si256(loadu256(r[i][b].qs), c80);
            const __m256i si = _mm256_sub_epi32(dpbusd256(z, wu, yv), corr);
            /* exact block integer sum, then acc += isum * (d_w * d_a) in one rounding: the
             * prefill GEMM tiles' float order (batch-invariant logits) */
            __m128i h = _mm_add_epi32(_mm256_castsi256_si128(si), _mm256_extracti128_si256(si, 1));
            h = _mm_hadd_epi32(h, h);
            h = _mm_hadd_epi32(h, h);
            acc[i] = fmaf((float)_mm_cvtsi128_si32(h), h2f(&r[i][b].d) * dy, acc[i]);
        }
    }
    for (int i = 0; i < nr; i++) out[i] = acc[i];
}

float k_avx512_dot_q8_0_r(const void *w, const void *a, int64_t n) {
    const q_block_q8_0 *r[1] = {w};
    float out[1];
    q8_0_rows(r, 1, a, n / Q_QK, out);
    return out[0];
}

void k_avx512_dot4_q8_0(const void *w, size_t stride, const void *a, int64_t n, float *out) {
    const uint8_t *p = w;
    const q_block_q8_0 *r[4] = {(const void *)p, (const void *)(p + stride),
                                (const void *)(p + 2 * stride), (const void *)(p + 3 * stride)};
    q8_0_rows(r, 4, a, n / Q_QK, out);
}

/* ================================================================ install */

/* Only where the AVX-512 kernel measured faster than the AVX2 one (bench_kernels, in-cache
 * and from RAM, Zen 4, which splits 512-bit ops in two): F32, F16, Q5_0, Q5_1 (and BF16
 * below). For Q4_0, Q8_0, Q4_1 and the K-quants the AVX2 kernels stay installed; their
 * AVX-512 versions are kept, tested and benched (k_avx512_dot_*) for CPUs with full-width
 * units and for the prefill work. */
void k_install_avx512(k_kernels *k) {
#define E(T, DOT)                                                                        \
    do {                                                                                 \
        k->ops[ND_TYPE_##T].name = "avx512";                                             \
        k->ops[ND_TYPE_##T].vec_dot = DOT;                                               \
    } while (0)
    E(F32, k_avx512_dot_f32);
    E(F16, k_avx512_dot_f16);
    E(Q5_0, k_avx512_dot_q5_0);
    E(Q5_1, k_avx512_dot_q5_1);
    E(Q4_0, k_avx512_dot_q4_0_r);
    E(Q8_0, k_avx512_dot_q8_0_r);
#undef E
    /* decode: four rows per call (bit-identical to the single-row entries above) */
    k->ops[ND_TYPE_Q4_0].vec_dot4 = k_avx512_dot4_q4_0;
    k->ops[ND_TYPE_Q8_0].vec_dot4 = k_avx512_dot4_q8_0;
}

void k_install_avx512_bf16(k_kernels *k) {
    k->ops[ND_TYPE_BF16].name = "avx512";
    k->ops[ND_TYPE_BF16].vec_dot = k_avx512_dot_bf16;
}
