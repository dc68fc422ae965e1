/* AVX-512 element-wise and attention kernels (k_vec_ops, kernels.h): 16 floats a vector,
 * masked loads for the tails (no scalar remainder loops, no read past a row).
 *
 * exp: x = n*ln2 + r with n = round(x / ln2) and |r| <= ln2/2 (ln2 split in a short high
 * part, exact times n, and a low part); exp(r) by its Taylor series to r^6 (truncation
 * <= 0.35^7/7! ~ 1.2e-7, one float ulp at 1) in Horner form; vscalefps multiplies by 2^n
 * and gives 0 / inf where the result underflows / overflows. Within ~2 ulp of expf over
 * the float range; NaN stays NaN. */
#include <immintrin.h>
#include <math.h>

#include "kernels/x86/x86.h"

#define VEC_INLINE static inline __attribute__((always_inline))

VEC_INLINE __m512 exp512(__m512 x) {
    /* clamp (NaN kept: max/min return their second operand when one is NaN) to where n
     * fits vscalefps' useful range and the result is already 0 / inf */
    x = _mm512_max_ps(_mm512_set1_ps(-104.0f), x);
    x = _mm512_min_ps(_mm512_set1_ps(89.0f), x);
    K_EXP_REDUCE(512, _mm512_roundscale_ps, x, n, p);
    return _mm512_scalef_ps(p, n);
}

static inline __mmask16 tail_mask(int64_t left) { return left >= 16 ? 0xFFFF : (__mmask16)((1u << left) - 1); }

void k_avx512_silu_mul(const float *g, const float *u, float *out, int64_t n) {
    for (int64_t i = 0; i < n; i += 16) {
        const __mmask16 m = tail_mask(n - i);
        const __m512 x = _mm512_maskz_loadu_ps(m, g + i);
        const __m512 e = exp512(_mm512_sub_ps(_mm512_setzero_ps(), x));
        const __m512 y = _mm512_div_ps(x, _mm512_add_ps(_mm512_set1_ps(1.0f), e));
        _mm512_mask_storeu_ps(out + i, m, _mm512_mul_ps(y, _mm512_maskz_loadu_ps(m, u + i)));
    }
}

/* 16 floats rounded to the cache type: F16 (f16 != 0) or F32 */
VEC_INLINE __m512 rnd16(__m512 x, int f16) {
    return f16 ? _mm512_cvtph_ps(_mm512_cvtps_ph(x, _MM_FROUND_TO_NEAREST_INT | _MM_FROUND_NO_EXC)) : x;
}

/* 16 elements (masked) of a cache row from element i: F16 (f16 != 0) or F32 */
VEC_INLINE __m512 ld16(const uint8_t *row, int64_t i, __mmask16 m, int f16) {
    if (f16) return _mm512_cvtph_ps(_mm256_maskz_loadu_epi16(m, row + 2 * i));
    return _mm512_maskz_loadu_ps(m, row + 4 * i);
}

/* r[m] = the sum of the 16 lanes of row (m % 4) * 4 + m / 4 of t (16 rows of 16 floats):
 * four rounds of shuffles and adds, each halving the vectors (a 16-way transpose-and-add
 * instead of 16 horizontal reductions) */
VEC_INLINE __m512 hsum16(const float *t) {
    __m512 w[8], x[4], y[2];
    for (int k = 0; k < 8; k++) {
        const __m512 a = _mm512_load_ps(t + 32 * k), b = _mm512_load_ps(t + 32 * k + 16);
        w[k] = _mm512_add_ps(_mm512_shuffle_f32x4(a, b, 0x44), _mm512_shuffle_f32x4(a, b, 0xEE));
    }
    for (int k = 0; k < 4; k++)
        x[k] = _mm512_add_ps(_mm512_shuffle_f32x4(w[2 * k], w[2 * k + 1], 0x88),
                             _mm512_shuffle_f32x4(w[2 * k], w[2 * k + 1], 0xDD));
    for (int k = 0; k < 2; k++) {
        const __m512d a = _mm512_castps_pd(x[2 * k]), b = _mm512_castps_pd(x[2 * k + 1]);
        y[k] = _mm512_add_ps(_mm512_castpd_ps(_mm512_unpacklo_pd(a, b)), _mm512_castpd_ps(_mm512_unpackhi_pd(a, b)));
    }
    return _mm512_add_ps(_mm512_shuffle_ps(y[0], y[1], 0x88), _mm512_shuffle_ps(y[0], y[1], 0xDD));
}

#define ATT_G 8           /* heads a pass: 8 score accumulators, 16 value ones */
#define ATT_QR (8 * 256)  /* floats of rounded q a pass holds (hdk <= 256 at 8 heads) */
#define ATT_PF 32         /* cache rows prefetched this many positions ahead */

/* s_g[i] for G heads (qr: their q rounded, hdkp floats each, zero past hdk), positions 16 a
 * block: each K row is loaded (and converted) once for the G heads, its G dot vectors go to
 * tb, and hsum16 reduces a block's 16 positions at once */
VEC_INLINE void scores(int f16, const int G, const float *qr, int64_t hdkp, const uint8_t *K, size_t ks,
                       int64_t n, int64_t hdk, float scale, float *s) {
    _Alignas(64) float tb[ATT_G][16 * 16];
    for (int64_t i0 = 0; i0 < n; i0 += 16) {
        const int nb = (int)(n - i0 < 16 ? n - i0 : 16);
        for (int b = 0; b < 16; b++) {
            __m512 acc[ATT_G];
#pragma GCC unroll 8
            for (int g = 0; g < G; g++) acc[g] = _mm512_setzero_ps();
            if (b < nb) {
                const uint8_t *k = K + (size_t)(i0 + b) * ks;
                if (i0 + b + ATT_PF < n) /* the cache is read once a token: from RAM at depth */
                    for (int64_t l = 0; l < hdk * (f16 ? 2 : 4); l += 64) _mm_prefetch((const char *)k + ATT_PF * ks + l, _MM_HINT_T0);
                for (int64_t d = 0; d < hdk; d += 16) {
                    const __m512 kv = ld16(k, d, tail_mask(hdk - d), f16);
#pragma GCC unroll 8
                    for (int g = 0; g < G; g++) acc[g] = _mm512_fmadd_ps(kv, _mm512_load_ps(qr + g * hdkp + d), acc[g]);
                }
            }
            const int slot = (b % 4) * 4 + b / 4;
#pragma GCC unroll 8
            for (int g = 0; g < G; g++) _mm512_store_ps(tb[g] + 16 * slot, acc[g]);
        }
        const __mmask16 m = tail_mask(n - i0);
#pragma GCC unroll 8
        for (int g = 0; g < G; g++)
            _mm512_mask_storeu_ps(s + g * n + i0, m, _mm512_mul_ps(hsum16(tb[g]), _mm512_set1_ps(scale)));
    }
}

/* s[0..n) = c(softmax(s)) in place */
VEC_INLINE void softmax(int f16, float *s, int64_t n) {
    __m512 mx = _mm512_set1_ps(-INFINITY);
    for (int64_t i = 0; i < n; i += 16) mx = _mm512_max_ps(mx, _mm512_mask_loadu_ps(mx, tail_mask(n - i), s + i));
    const __m512 vmx = _mm512_set1_ps(_mm512_reduce_max_ps(mx));
    __m512 sum = _mm512_setzero_ps();
    for (int64_t i = 0; i < n; i += 16) {
        const __mmask16 m = tail_mask(n - i);
        const __m512 e = _mm512_maskz_mov_ps(m, exp512(_mm512_sub_ps(_mm512_maskz_loadu_ps(m, s + i), vmx)));
        _mm512_mask_storeu_ps(s + i, m, e);
        sum = _mm512_add_ps(sum, e);
    }
    const __m512 inv = _mm512_set1_ps(1.0f / _mm512_reduce_add_ps(sum));
    for (int64_t i = 0; i < n; i += 16) {
        const __mmask16 m = tail_mask(n - i);
        _mm512_mask_storeu_ps(s + i, m, rnd16(_mm512_mul_ps(_mm512_maskz_loadu_ps(m, s + i), inv), f16));
    }
}

/* out_g = sum_i p_g[i] * V_i for G heads (p_g = p + g*n), 32 dimensions a pass over the
 * positions: each V row loaded (and converted) once for the G heads */
VEC_INLINE void values(int f16, const int G, const float *p, int64_t n, const uint8_t *V, size_t vs,
                       int64_t hdv, float *out) {
    for (int64_t d = 0; d < hdv; d += 32) {
        const __mmask16 m0 = tail_mask(hdv - d), m1 = hdv - d > 16 ? tail_mask(hdv - d - 16) : 0;
        __m512 a0[ATT_G], a1[ATT_G];
#pragma GCC unroll 8
        for (int g = 0; g < G; g++) a0[g] = a1[g] = _mm512_setzero_ps();
        for (int64_t i = 0; i < n; i++) {
            const uint8_t *v = V + (size_t)i * vs;
            if (i + ATT_PF < n) /* this pass's 32 dimensions: one line of F16, two of F32 */
                for (int64_t l = 0; l < (f16 ? 64 : 128); l += 64)
                    _mm_prefetch((const char *)v + ATT_PF * vs + d * (f16 ? 2 : 4) + l, _MM_HINT_T0);
            const __m512 v0 = ld16(v, d, m0, f16), v1 = ld16(v, d + 16, m1, f16);
#pragma GCC unroll 8
            for (int g = 0; g < G; g++) {
                const __m512 pg = _mm512_set1_ps(p[g * n + i]);
                a0[g] = _mm512_fmadd_ps(v0, pg, a0[g]);
                a1[g] = _mm512_fmadd_ps(v1, pg, a1[g]);
            }
        }
#pragma GCC unroll 8
        for (int g = 0; g < G; g++) {
            _mm512_mask_storeu_ps(out + g * hdv + d, m0, a0[g]);
            _mm512_mask_storeu_ps(out + g * hdv + d + 16, m1, a1[g]);
        }
    }
}

/* G <= ATT_G heads (a constant after inlining, so the accumulators stay in registers) */
VEC_INLINE void attend_heads(int f16, const int G, const float *q, const uint8_t *K, size_t ks, const uint8_t *V,
                             size_t vs, int64_t n, int64_t hdk, int64_t hdv, float scale, float *s, float *out) {
    _Alignas(64) float qr[ATT_QR];
    const int64_t hdkp = (hdk + 15) & ~(int64_t)15;
#pragma GCC unroll 8
    for (int g = 0; g < G; g++)
        for (int64_t d = 0; d < hdkp; d += 16)
            _mm512_store_ps(qr + g * hdkp + d, rnd16(_mm512_maskz_loadu_ps(tail_mask(hdk - d), q + g * hdk + d), f16));
    scores(f16, G, qr, hdkp, K, ks, n, hdk, scale, s);
#pragma GCC unroll 8
    for (int g = 0; g < G; g++) softmax(f16, s + g * n, n);
    values(f16, G, s, n, V, vs, hdv, out);
}

VEC_INLINE void attend(int f16, const float *q, const uint8_t *K, size_t ks, const uint8_t *V, size_t vs, int64_t n,
                   int64_t hdk, int64_t hdv, int64_t ng, float scale, float *s, float *out) {
    const int64_t hdkp = (hdk + 15) & ~(int64_t)15;
    const int64_t per = ATT_QR / hdkp < ATT_G ? ATT_QR / hdkp : ATT_G; /* heads a pass */
    if (per < 1) { /* hdk > 2048: beyond any model; the reference */
        (f16 ? k_ref_attend_f16 : k_ref_attend_f32)(q, K, ks, V, vs, n, hdk, hdv, ng, scale, s, out);
        return;
    }
    for (int64_t g0 = 0; g0 < ng; g0 += per) {
        const int G = (int)(ng - g0 < per ? ng - g0 : per);
        const float *qg = q + g0 * hdk;
        float *sg = s + g0 * n, *og = out + g0 * hdv;
#define HEADS(NG) attend_heads(f16, NG, qg, K, ks, V, vs, n, hdk, hdv, scale, sg, og)
        switch (G) {
        case 1: HEADS(1); break;
        case 2: HEADS(2); break;
        case 3: HEADS(3); break;
        case 4: HEADS(4); break;
        case 5: HEADS(5); break;
        case 6: HEADS(6); break;
        case 7: HEADS(7); break;
        default: HEADS(8); break;
        }
#undef HEADS
    }
}

void k_avx512_attend_f32(const float *q, const void *K, size_t ks, const void *V, size_t vs, int64_t n,
                         int64_t hdk, int64_t hdv, int64_t ng, float scale, float *s, float *out) {
    attend(0, q, K, ks, V, vs, n, hdk, hdv, ng, scale, s, out);
}

void k_avx512_attend_f16(const float *q, const void *K, size_t ks, const void *V, size_t vs, int64_t n,
                         int64_t hdk, int64_t hdv, int64_t ng, float scale, float *s, float *out) {
    attend(1, q, K, ks, V, vs, n, hdk, hdv, ng, scale, s, out);
}
