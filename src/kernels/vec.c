/* The scalar references of the element-wise and attention kernels (kernels.h, k_vec_ops):
 * what the ISA versions are tested against, and what runs where there is none. Sums in
 * double, exp from libm. */
#include <math.h>
#include <string.h>

#include "kernels/kernels.h"

void k_ref_silu_mul(const float *g, const float *u, float *out, int64_t n) {
    for (int64_t i = 0; i < n; i++) out[i] = g[i] / (1.0f + expf(-g[i])) * u[i];
}

static inline float ld_f32(const uint8_t *p, int64_t i) {
    float v;
    memcpy(&v, p + 4 * i, 4);
    return v;
}
static inline float ld_f16(const uint8_t *p, int64_t i) {
    uint16_t h;
    memcpy(&h, p + 2 * i, 2);
    return nd_fp16_to_fp32(h);
}
static inline float round_f32(float x) { return x; }
static inline float round_f16(float x) { return nd_fp16_to_fp32(nd_fp32_to_fp16(x)); }

/* One definition for both cache types: ld reads element i of a row, rnd rounds a float to
 * the cache type (q and the probabilities meet the cache in its own type, as in llama.cpp:
 * with an F16 cache its logits agree with ours to ~1e-6 instead of ~1e-1 on quantized
 * models, where one activation rounding flip is a whole quantization step). */
static inline void attend_ref(float (*ld)(const uint8_t *, int64_t), float (*rnd)(float), const float *q,
                              const uint8_t *K, size_t ks, const uint8_t *V, size_t vs, int64_t n, int64_t hdk,
                              int64_t hdv, float scale, float *s, float *out) {
    float mx = -INFINITY;
    for (int64_t i = 0; i < n; i++) {
        double acc = 0;
        for (int64_t d = 0; d < hdk; d++) acc += (double)rnd(q[d]) * (double)ld(K + (size_t)i * ks, d);
        s[i] = (float)acc * scale;
        if (s[i] > mx) mx = s[i];
    }
    double sum = 0;
    for (int64_t i = 0; i < n; i++) {
        s[i] = expf(s[i] - mx);
        sum += (double)s[i];
    }
    const float inv = (float)(1.0 / sum);
    for (int64_t i = 0; i < n; i++) s[i] = rnd(s[i] * inv);
    for (int64_t d = 0; d < hdv; d++) {
        double acc = 0;
        for (int64_t i = 0; i < n; i++) acc += (double)s[i] * (double)ld(V + (size_t)i * vs, d);
        out[d] = (float)acc;
    }
}

void k_ref_attend_f32(const float *q, const void *K, size_t ks, const void *V, size_t vs, int64_t n,
                      int64_t hdk, int64_t hdv, int64_t ng, float scale, float *s, float *out) {
    for (int64_t g = 0; g < ng; g++)
        attend_ref(ld_f32, round_f32, q + g * hdk, K, ks, V, vs, n, hdk, hdv, scale, s + g * n, out + g * hdv);
}

void k_ref_attend_f16(const float *q, const void *K, size_t ks, const void *V, size_t vs, int64_t n,
                      int64_t hdk, int64_t hdv, int64_t ng, float scale, float *s, float *out) {
    for (int64_t g = 0; g < ng; g++)
        attend_ref(ld_f16, round_f16, q + g * hdk, K, ks, V, vs, n, hdk, hdv, scale, s + g * n, out + g * hdv);
}
