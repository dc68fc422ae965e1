/* AVX2 element-wise and attention kernels (k_vec_ops, kernels.h): 8 floats a vector, the
 * tails element by element with the same formulas (AVX2 has no masked 16-bit loads).
 *
 * exp: x = n*ln2 + r, |r| <= ln2/2, exp(r) by its Taylor series to r^6 (as the AVX-512
 * file), times 2^n built in the exponent field. Results below 2^-126 (x < -87.3) are 0
 * where expf gives a subnormal (an absolute error under 1.2e-38), x > ln(FLT_MAX) gives
 * inf, NaN stays NaN. */
#include <immintrin.h>
#include <math.h>

#include "kernels/x86/avx2/avx2_inl.h"
#include "kernels/x86/x86.h"

#define VEC_INLINE static inline __attribute__((always_inline))

VEC_INLINE __m256 exp256(__m256 x) {
    const __m256 xc = _mm256_min_ps(_mm256_max_ps(x, _mm256_set1_ps(-87.3f)), _mm256_set1_ps(88.72283f));
    K_EXP_REDUCE(256, _mm256_round_ps, xc, n, p);
    /* n in [-126, 128]: 2^min(n, 127) from the exponent field, times 2 more when n = 128 */
    const __m256i ni = _mm256_cvtps_epi32(n);
    const __m256i e = _mm256_slli_epi32(_mm256_add_epi32(_mm256_min_epi32(ni, _mm256_set1_epi32(127)),
                                                         _mm256_set1_epi32(127)), 23);
    __m256 y = _mm256_mul_ps(p, _mm256_castsi256_ps(e));
    y = _mm256_mul_ps(y, _mm256_blendv_ps(_mm256_set1_ps(1.0f), _mm256_set1_ps(2.0f),
                                          _mm256_castsi256_ps(_mm256_cmpgt_epi32(ni, _mm256_set1_epi32(127)))));
    y = _mm256_blendv_ps(y, _mm256_setzero_ps(), _mm256_cmp_ps(x, _mm256_set1_ps(-87.3f), _CMP_LT_OQ));
    y = _mm256_blendv_ps(y, _mm256_set1_ps(INFINITY), _mm256_cmp_ps(x, _mm256_set1_ps(88.72283f), _CMP_GT_OQ));
    return _mm256_blendv_ps(y, x, _mm256_cmp_ps(x, x, _CMP_UNORD_Q)); /* NaN */
}

/* one element through the vector formula (the tails) */
static inline float exp1(float x) {
    float v[8];
    _mm256_storeu_ps(v, exp256(_mm256_set1_ps(x)));
    return v[0];
}

void k_avx2_silu_mul(const float *g, const float *u, float *out, int64_t n) {
    int64_t i = 0;
    for (; i + 8 <= n; i += 8) {
        const __m256 x = _mm256_loadu_ps(g + i);
        const __m256 e = exp256(_mm256_sub_ps(_mm256_setzero_ps(), x));
        const __m256 y = _mm256_div_ps(x, _mm256_add_ps(_mm256_set1_ps(1.0f), e));
        _mm256_storeu_ps(out + i, _mm256_mul_ps(y, _mm256_loadu_ps(u + i)));
    }
    for (; i < n; i++) out[i] = g[i] / (1.0f + exp1(-g[i])) * u[i];
}

/* 8 elements of a cache row from element i: F16 (f16 != 0) or F32 */
VEC_INLINE __m256 ld8(const uint8_t *row, int64_t i, int f16) {
    if (f16) return _mm256_cvtph_ps(loadu128(row + 2 * i));
    return _mm256_loadu_ps((const float *)(row + 4 * i));
}
VEC_INLINE float ld1(const uint8_t *row, int64_t i, int f16) {
    if (f16) return h2f(row + 2 * i);
    float v;
    memcpy(&v, row + 4 * i, 4);
    return v;
}

/* floats rounded to the cache type: F16 (f16 != 0) or F32 */
VEC_INLINE __m256 rnd8(__m256 x, int f16) {
    return f16 ? _mm256_cvtph_ps(_mm256_cvtps_ph(x, _MM_FROUND_TO_NEAREST_INT | _MM_FROUND_NO_EXC)) : x;
}
VEC_INLINE float rnd1(float x, int f16) { return f16 ? _cvtsh_ss(_cvtss_sh(x, _MM_FROUND_TO_NEAREST_INT)) : x; }

/* sum_j c(a[j]) * row[j], j < n; c rounds to the cache type when ra */
VEC_INLINE float dot_row(const float *a, const uint8_t *row, int64_t n, int f16, int ra) {
    __m256 acc = _mm256_setzero_ps();
    int64_t j = 0;
    for (; j + 8 <= n; j += 8) acc = _mm256_fmadd_ps(ld8(row, j, f16), rnd8(_mm256_loadu_ps(a + j), f16 && ra), acc);
    float r = hsum_ps(acc);
    for (; j < n; j++) r += rnd1(a[j], f16 && ra) * ld1(row, j, f16);
    return r;
}

/* out[d0 + 8c ..] = sum_i p[i] * V_i[d0 + 8c ..], c < nc (a constant after inlining) */
VEC_INLINE void values(int f16, int nc, const float *p, const uint8_t *V, size_t vs, int64_t n, int64_t d0,
                       float *out) {
    __m256 acc[8];
    for (int c = 0; c < nc; c++) acc[c] = _mm256_setzero_ps();
    for (int64_t i = 0; i < n; i++) {
        const uint8_t *v = V + (size_t)i * vs;
        const __m256 pi = _mm256_set1_ps(p[i]);
#pragma GCC unroll 8
        for (int c = 0; c < nc; c++) acc[c] = _mm256_fmadd_ps(ld8(v, d0 + 8 * c, f16), pi, acc[c]);
    }
    for (int c = 0; c < nc; c++) _mm256_storeu_ps(out + d0 + 8 * c, acc[c]);
}

VEC_INLINE void attend(int f16, const float *q, const uint8_t *K, size_t ks, const uint8_t *V, size_t vs,
                       int64_t n, int64_t hdk, int64_t hdv, float scale, float *s, float *out) {
    float mx = -INFINITY;
    for (int64_t i = 0; i < n; i++) {
        s[i] = dot_row(q, K + (size_t)i * ks, hdk, f16, 1) * scale;
        mx = s[i] > mx ? s[i] : mx;
    }
    const __m256 vmx = _mm256_set1_ps(mx);
    __m256 vsum = _mm256_setzero_ps();
    int64_t i = 0;
    for (; i + 8 <= n; i += 8) {
        const __m256 e = exp256(_mm256_sub_ps(_mm256_loadu_ps(s + i), vmx));
        _mm256_storeu_ps(s + i, e);
        vsum = _mm256_add_ps(vsum, e);
    }
    float sum = hsum_ps(vsum);
    for (; i < n; i++) {
        s[i] = exp1(s[i] - mx);
        sum += s[i];
    }
    const float inv = 1.0f / sum;
    for (i = 0; i < n; i++) s[i] = rnd1(s[i] * inv, f16); /* probabilities in the cache type */
    /* out += p[i] * V_i: 64 dimensions (8 accumulators) a pass over the positions, the
     * last hdv % 8 one at a time */
    int64_t d = 0;
    for (; d + 64 <= hdv; d += 64) values(f16, 8, s, V, vs, n, d, out);
    switch ((hdv - d) / 8) {
    case 1: values(f16, 1, s, V, vs, n, d, out); break;
    case 2: values(f16, 2, s, V, vs, n, d, out); break;
    case 3: values(f16, 3, s, V, vs, n, d, out); break;
    case 4: values(f16, 4, s, V, vs, n, d, out); break;
    case 5: values(f16, 5, s, V, vs, n, d, out); break;
    case 6: values(f16, 6, s, V, vs, n, d, out); break;
    case 7: values(f16, 7, s, V, vs, n, d, out); break;
    default: break;
    }
    for (d += (hdv - d) / 8 * 8; d < hdv; d++) {
        float acc = 0;
        for (i = 0; i < n; i++) acc += s[i] * ld1(V + (size_t)i * vs, d, f16);
        out[d] = acc;
    }
}

void k_avx2_attend_f32(const float *q, const void *K, size_t ks, const void *V, size_t vs, int64_t n,
                       int64_t hdk, int64_t hdv, int64_t ng, float scale, float *s, float *out) {
    for (int64_t g = 0; g < ng; g++) /* head by head: the cache rows are read ng times */
        attend(0, q + g * hdk, K, ks, V, vs, n, hdk, hdv, scale, s + g * n, out + g * hdv);
}

void k_avx2_attend_f16(const float *q, const void *K, size_t ks, const void *V, size_t vs, int64_t n,
                       int64_t hdk, int64_t hdv, int64_t ng, float scale, float *s, float *out) {
    for (int64_t g = 0; g < ng; g++) /* head by head: the cache rows are read ng times */
        attend(1, q + g * hdk, K, ks, V, vs, n, hdk, hdv, scale, s + g * n, out + g * hdv);
}
