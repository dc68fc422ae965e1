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
    const __m512 n = _mm512_roundscale_ps(_mm512_mul_ps(x, _mm512_set1_ps(1.44269504088896341f)),
                                          _MM_FROUND_TO_NEAREST_INT | _MM_FROUND_NO_EXC);
    __m512 r = _mm512_fnmadd_ps(n, _mm512_set1_ps(0.693359375f), x);
    r = _mm512_fnmadd_ps(n, _mm512_set1_ps(-2.12194440e-4f), r);
    __m512 p = _mm512_set1_ps(1.0f / 720);
    p = _mm512_fmadd_ps(p, r, _mm512_set1_ps(1.0f / 120));
    p = _mm512_fmadd_ps(p, r, _mm512_set1_ps(1.0f / 24));
    p = _mm512_fmadd_ps(p, r, _mm512_set1_ps(1.0f / 6));
    p = _mm512_fmadd_ps(p, r, _mm512_set1_ps(0.5f));
    p = _mm512_fmadd_ps(p, r, _mm512_set1_ps(1.0f));
    p = _mm512_fmadd_ps(p, r, _mm512_set1_ps(1.0f));
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

/* out[c*16 ..] = sum_i p[i] * V_i[c*16 ..] for nc chunks of 16 dimensions (the last one
 * masked to left); nc a constant after inlining, so the accumulators stay in registers */
VEC_INLINE void values(int f16, int nc, const float *p, const uint8_t *V, size_t vs, int64_t n, int64_t left,
                       float *out) {
    __m512 acc[8];
    __mmask16 m[8];
    for (int c = 0; c < nc; c++) acc[c] = _mm512_setzero_ps(), m[c] = tail_mask(left - 16 * c);
    for (int64_t i = 0; i < n; i++) {
        const uint8_t *v = V + (size_t)i * vs;
        const __m512 pi = _mm512_set1_ps(p[i]);
#pragma GCC unroll 8
        for (int c = 0; c < nc; c++) acc[c] = _mm512_fmadd_ps(ld16(v, 16 * c, m[c], f16), pi, acc[c]);
    }
    for (int c = 0; c < nc; c++) _mm512_mask_storeu_ps(out + 16 * c, m[c], acc[c]);
}

VEC_INLINE void attend(int f16, const float *q, const uint8_t *K, size_t ks, const uint8_t *V, size_t vs,
                       int64_t n, int64_t hdk, int64_t hdv, float scale, float *s, float *out) {
    /* scores, two positions a step (two independent reduction chains) */
    int64_t i = 0;
    for (; i + 2 <= n; i += 2) {
        const uint8_t *k0 = K + (size_t)i * ks, *k1 = k0 + ks;
        __m512 a0 = _mm512_setzero_ps(), a1 = a0;
        for (int64_t d = 0; d < hdk; d += 16) {
            const __mmask16 m = tail_mask(hdk - d);
            const __m512 qd = rnd16(_mm512_maskz_loadu_ps(m, q + d), f16);
            a0 = _mm512_fmadd_ps(ld16(k0, d, m, f16), qd, a0);
            a1 = _mm512_fmadd_ps(ld16(k1, d, m, f16), qd, a1);
        }
        s[i] = _mm512_reduce_add_ps(a0) * scale;
        s[i + 1] = _mm512_reduce_add_ps(a1) * scale;
    }
    if (i < n) {
        const uint8_t *k0 = K + (size_t)i * ks;
        __m512 a0 = _mm512_setzero_ps();
        for (int64_t d = 0; d < hdk; d += 16) {
            const __mmask16 m = tail_mask(hdk - d);
            a0 = _mm512_fmadd_ps(ld16(k0, d, m, f16), rnd16(_mm512_maskz_loadu_ps(m, q + d), f16), a0);
        }
        s[i] = _mm512_reduce_add_ps(a0) * scale;
    }
    /* softmax in place */
    __m512 mx = _mm512_set1_ps(-INFINITY);
    for (i = 0; i < n; i += 16) mx = _mm512_max_ps(mx, _mm512_mask_loadu_ps(mx, tail_mask(n - i), s + i));
    const __m512 vmx = _mm512_set1_ps(_mm512_reduce_max_ps(mx));
    __m512 sum = _mm512_setzero_ps();
    for (i = 0; i < n; i += 16) {
        const __mmask16 m = tail_mask(n - i);
        const __m512 e = _mm512_maskz_mov_ps(m, exp512(_mm512_sub_ps(_mm512_maskz_loadu_ps(m, s + i), vmx)));
        _mm512_mask_storeu_ps(s + i, m, e);
        sum = _mm512_add_ps(sum, e);
    }
    const __m512 inv = _mm512_set1_ps(1.0f / _mm512_reduce_add_ps(sum));
    for (i = 0; i < n; i += 16) {
        const __mmask16 m = tail_mask(n - i);
        _mm512_mask_storeu_ps(s + i, m, rnd16(_mm512_mul_ps(_mm512_maskz_loadu_ps(m, s + i), inv), f16));
    }
    /* out += p[i] * V_i, up to 128 dimensions (8 accumulators) a pass over the positions */
    for (int64_t d = 0; d < hdv; d += 128) {
        const int nc = (int)((hdv - d + 15) / 16 < 8 ? (hdv - d + 15) / 16 : 8);
        switch (nc) {
        case 1: values(f16, 1, s, V + (size_t)d * (f16 ? 2 : 4), vs, n, hdv - d, out + d); break;
        case 2: values(f16, 2, s, V + (size_t)d * (f16 ? 2 : 4), vs, n, hdv - d, out + d); break;
        case 3: values(f16, 3, s, V + (size_t)d * (f16 ? 2 : 4), vs, n, hdv - d, out + d); break;
        case 4: values(f16, 4, s, V + (size_t)d * (f16 ? 2 : 4), vs, n, hdv - d, out + d); break;
        case 5: values(f16, 5, s, V + (size_t)d * (f16 ? 2 : 4), vs, n, hdv - d, out + d); break;
        case 6: values(f16, 6, s, V + (size_t)d * (f16 ? 2 : 4), vs, n, hdv - d, out + d); break;
        case 7: values(f16, 7, s, V + (size_t)d * (f16 ? 2 : 4), vs, n, hdv - d, out + d); break;
        default: values(f16, 8, s, V + (size_t)d * (f16 ? 2 : 4), vs, n, hdv - d, out + d); break;
        }
    }
}

void k_avx512_attend_f32(const float *q, const void *K, size_t ks, const void *V, size_t vs, int64_t n,
                         int64_t hdk, int64_t hdv, float scale, float *s, float *out) {
    attend(0, q, K, ks, V, vs, n, hdk, hdv, scale, s, out);
}

void k_avx512_attend_f16(const float *q, const void *K, size_t ks, const void *V, size_t vs, int64_t n,
                         int64_t hdk, int64_t hdv, float scale, float *s, float *out) {
    attend(1, q, K, ks, V, vs, n, hdk, hdv, scale, s, out);
}
