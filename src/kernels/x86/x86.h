/* nindub kernels, x86: the AVX2 and AVX-512 entries k_select installs over the scalar
 * table (see kernels/kernels.h for the contract every entry keeps).
 *
 * Files under kernels/x86/avx2/ are compiled with -mavx2 -mfma -mf16c -mbmi2, files under
 * kernels/x86/avx512/ additionally with AVX-512 F/BW/VL/DQ/VNNI/BF16. Nothing here may be
 * called unless cpuid says the ISA is present; the install functions are the only entry
 * points dispatch.c uses, the per-kernel functions are exported for the tests and benches.
 *
 * Semantics (same as quant/'s reference, the oracle):
 *   - activation quantizers (F32 -> Q8_0 / Q8_1 / Q8_K / F16 / BF16) write bytes identical
 *     to q_quantize_act (llama.cpp's x86 runtime rules: same scale arithmetic, nearest-even
 *     rounding everywhere, tiny-scale blocks to zero) for finite inputs;
 *   - integer parts of the dots are exact; only the float accumulation order differs from
 *     the reference (per-lane partial sums, FMA);
 *   - preconditions inherited from the reference's activation formats: Q8_0 / Q8_1 / Q8_K
 *     activation quants lie in [-127, 127] (what the quantizers produce); weight quants
 *     may be any byte (a Q8_0 weight of -128 is fine);
 *   - rows are aligned only to their scalar fields, as in GGUF files (2 bytes for the
 *     fp16-scaled blocks, 4 for F32 and Q8_K), never to vectors (blocks of 18, 34, 210 ...
 *     bytes): unaligned vector loads only.
 */
#ifndef ND_KERNELS_X86_H
#define ND_KERNELS_X86_H

#include "kernels/kernels.h"

/* Requires AVX2 + FMA + F16C. Overrides every type it has a kernel for. */
void k_install_avx2(k_kernels *k);
/* Requires AVX-512 F/BW/VL/DQ + VNNI (and k_install_avx2 first: entries without an AVX-512
 * kernel keep the AVX2 one). */
void k_install_avx512(k_kernels *k);
/* Requires AVX-512 BF16 on top of k_install_avx512. */
void k_install_avx512_bf16(k_kernels *k);
/* Requires AVX512_BITALG on top of k_install_avx512 (the 4-row Q5_0 kernels). */
void k_install_avx512_bitalg(k_kernels *k);

/* ---- per-kernel entry points (tests, benches) ---- */
#define K_X86_DOTS(ISA)                                                                  \
    float k_##ISA##_dot_f32(const void *w, const void *a, int64_t n);                     \
    float k_##ISA##_dot_f16(const void *w, const void *a, int64_t n);                     \
    float k_##ISA##_dot_bf16(const void *w, const void *a, int64_t n);                    \
    float k_##ISA##_dot_q4_0(const void *w, const void *a, int64_t n);                    \
    float k_##ISA##_dot_q4_1(const void *w, const void *a, int64_t n);                    \
    float k_##ISA##_dot_q5_0(const void *w, const void *a, int64_t n);                    \
    float k_##ISA##_dot_q5_1(const void *w, const void *a, int64_t n);                    \
    float k_##ISA##_dot_q8_0(const void *w, const void *a, int64_t n);                    \
    float k_##ISA##_dot_q2_K(const void *w, const void *a, int64_t n);                    \
    float k_##ISA##_dot_q3_K(const void *w, const void *a, int64_t n);                    \
    float k_##ISA##_dot_q4_K(const void *w, const void *a, int64_t n);                    \
    float k_##ISA##_dot_q5_K(const void *w, const void *a, int64_t n);                    \
    float k_##ISA##_dot_q6_K(const void *w, const void *a, int64_t n);
K_X86_DOTS(avx2)
K_X86_DOTS(avx512)
#undef K_X86_DOTS

/* X16 layout (kernels/x16.c): 16 rows of a group with one prepared activation row */
void k_avx512_dot16_q4_0(const void *group, const void *arow, int64_t n, float *out, float *state, unsigned part);
void k_avx512_dot16_q8_0(const void *group, const void *arow, int64_t n, float *out, float *state, unsigned part);
size_t k_avx512_prep16_q4_0(const void *arow, int64_t n, void *dst);
size_t k_avx512_prep16_q8_0(const void *arow, int64_t n, void *dst);
void k_avx512_dot16_q4_K(const void *group, const void *arow, int64_t n, float *out, float *state, unsigned part);
/* Q5_0 (also AVX512_BITALG) */
void k_avx512_dot16_q5_0(const void *group, const void *arow, int64_t n, float *out, float *state, unsigned part);
size_t k_avx512_prep16_q5_0(const void *arow, int64_t n, void *dst);

/* element-wise and attention kernels (k_vec_ops) */

/* The core of the vector exps (vec_avx2.c, vec_avx512.c), one definition for both widths
 * (W = 256 or 512, ROUND the width's round-to-nearest): n = round(x / ln2), r = x - n*ln2
 * with ln2 split in a short high part (exact times n) and a low part, so |r| <= ln2/2;
 * declares n and p = exp(r) by its Taylor series to r^6 in Horner form (truncation <=
 * 0.35^7/7! ~ 1.2e-7). The caller scales p by 2^n its own way. */
#define K_EXP_REDUCE(W, ROUND, x, n, p)                                                   \
    const __m##W n = ROUND(_mm##W##_mul_ps(x, _mm##W##_set1_ps(1.44269504088896341f)),     \
                           _MM_FROUND_TO_NEAREST_INT | _MM_FROUND_NO_EXC);                 \
    __m##W p;                                                                            \
    do {                                                                                 \
        __m##W r_ = _mm##W##_fnmadd_ps(n, _mm##W##_set1_ps(0.693359375f), x);             \
        r_ = _mm##W##_fnmadd_ps(n, _mm##W##_set1_ps(-2.12194440e-4f), r_);                \
        p = _mm##W##_set1_ps(1.0f / 720);                                                 \
        p = _mm##W##_fmadd_ps(p, r_, _mm##W##_set1_ps(1.0f / 120));                       \
        p = _mm##W##_fmadd_ps(p, r_, _mm##W##_set1_ps(1.0f / 24));                        \
        p = _mm##W##_fmadd_ps(p, r_, _mm##W##_set1_ps(1.0f / 6));                         \
        p = _mm##W##_fmadd_ps(p, r_, _mm##W##_set1_ps(0.5f));                             \
        p = _mm##W##_fmadd_ps(p, r_, _mm##W##_set1_ps(1.0f));                             \
        p = _mm##W##_fmadd_ps(p, r_, _mm##W##_set1_ps(1.0f));                             \
    } while (0)

#define K_X86_VEC(ISA)                                                                   \
    void k_##ISA##_silu_mul(const float *g, const float *u, float *out, int64_t n);      \
    void k_##ISA##_attend_f32(const float *q, const void *K, size_t ks, const void *V,    \
                              size_t vs, int64_t n, int64_t hdk, int64_t hdv, int64_t ng,  \
                              float scale, float *s, float *out);                        \
    void k_##ISA##_attend_f16(const float *q, const void *K, size_t ks, const void *V,    \
                              size_t vs, int64_t n, int64_t hdk, int64_t hdv, int64_t ng,  \
                              float scale, float *s, float *out);
K_X86_VEC(avx2)
K_X86_VEC(avx512)
#undef K_X86_VEC

/* Decode kernels (AVX-512 BW/VL + VNNI, 512-bit vectors; Q4_0, Q8_0, Q6_K): the *_r
 * single-row dots are the installed vec_dot (Q6_K: k_avx2_dot_q6_K); dot4 computes four
 * rows (row i at w + i*stride) into out[4], each bit-identical to the single-row entry. */
float k_avx512_dot_q4_0_r(const void *w, const void *a, int64_t n);
float k_avx512_dot_q8_0_r(const void *w, const void *a, int64_t n);
void k_avx512_dot4_q4_0(const void *w, size_t stride, const void *a, int64_t n, float *out);
void k_avx512_dot4_q8_0(const void *w, size_t stride, const void *a, int64_t n, float *out);
void k_avx512_dot4_q6_K(const void *w, size_t stride, const void *a, int64_t n, float *out);
void k_avx512_dot4_q4_K(const void *w, size_t stride, const void *a, int64_t n, float *out);
void k_avx512_dot4n_q4_K(const void *w, size_t stride, const void *a, size_t as, int nt, int64_t n,
                         float *out, size_t os);
void k_avx512_dot4n_q6_K(const void *w, size_t stride, const void *a, size_t as, int nt, int64_t n,
                         float *out, size_t os);
void k_avx512_dot4_q5_K(const void *w, size_t stride, const void *a, int64_t n, float *out);
void k_avx512_dot4n_q5_K(const void *w, size_t stride, const void *a, size_t as, int nt, int64_t n,
                         float *out, size_t os);
/* activations prepared for the dot4 / dot4n entries below (k_act_prep_fn): Q4_0 and Q5_0
 * share one layout, Q8_0 has its own */
size_t k_avx512_prep_q4(const void *arow, int64_t n, void *dst);
size_t k_avx512_prep_q8(const void *arow, int64_t n, void *dst);
/* short batches: 4 rows x nt tokens (k_vec_dot4n_fn), each bit-identical to dot4 */
void k_avx512_dot4n_q4_0(const void *w, size_t stride, const void *a, size_t as, int nt, int64_t n,
                         float *out, size_t os);
void k_avx512_dot4n_q8_0(const void *w, size_t stride, const void *a, size_t as, int nt, int64_t n,
                         float *out, size_t os);
/* Q5_0 (the fallback type of Q4_K_M files for rows that are not a multiple of 256): the
 * single-row entry, 4 rows, 4 rows x nt tokens, all in the prefill tiles' float order; the
 * last two need AVX512_BITALG */
float k_avx512_dot_q5_0_r(const void *w, const void *a, int64_t n);
void k_avx512_dot4_q5_0(const void *w, size_t stride, const void *a, int64_t n, float *out);
void k_avx512_dot4n_q5_0(const void *w, size_t stride, const void *a, size_t as, int nt, int64_t n,
                         float *out, size_t os);

/* Activation quantizers (AVX2; the AVX-512 table reuses them). Same errors as
 * q_quantize_act: ND_EINVAL if n < 0 or not a multiple of the block. */
int k_avx2_quantize_q8_0(const float *x, void *dst, int64_t n);
int k_avx512_quantize_q8_0(const float *x, void *dst, int64_t n);
int k_avx2_quantize_q8_1(const float *x, void *dst, int64_t n);
int k_avx2_quantize_q8_K(const float *x, void *dst, int64_t n);
int k_avx2_quantize_f16(const float *x, void *dst, int64_t n);
int k_avx2_quantize_bf16(const float *x, void *dst, int64_t n);

#endif
