/* nindub kernels, aarch64: the NEON entries k_select installs over the scalar table (see
 * kernels/kernels.h for the contract every entry keeps). Compiled on aarch64 only (the
 * Makefile filters src/kernels/arm/ out elsewhere).
 *
 * kernels/arm/neon/ is baseline ARMv8-A Advanced SIMD (every aarch64 Linux CPU has it; the
 * caller still checks HWCAP_ASIMD); kernels/arm/dotprod/ is compiled with
 * -march=armv8.2-a+dotprod and may only be reached when getauxval(AT_HWCAP) has
 * HWCAP_ASIMDDP. Both integer-dot files are the same source (neon/neon_dots.h) around a
 * different 16-byte int8 dot primitive (vmull_s8 + vpadalq_s16, or sdot).
 *
 * Semantics (quant/'s reference is the oracle):
 *   - activation quantizers write bytes identical to q_quantize_act for finite inputs
 *     (nearest even via fcvtns, inverse scale 127/amax, tiny-scale blocks to zero);
 *   - quantized dots (Q4_0 .. Q6_K) are bit-identical to q_vec_dot: the per-block (or
 *     per-super-block) integer sum is exact and reduced to one int, then the float part runs
 *     the reference's own expression in the reference's block order (no FMA: the C11 build
 *     does not contract). Batch invariance on aarch64 is then trivial: there are no tiles;
 *   - F32 / F16 / BF16 dots accumulate in float lanes with FMA (the reference uses a double
 *     accumulator): within tests/test_kernels.c's summation-order tolerance, exact when all
 *     partial sums are;
 *   - preconditions as on x86: activation quants in [-127, 127]; weight quants any byte;
 *     rows aligned only to their scalar fields (unaligned vector loads only).
 */
#ifndef ND_KERNELS_ARM_H
#define ND_KERNELS_ARM_H

#include "kernels/kernels.h"

/* Requires AdvSIMD (HWCAP_ASIMD). Overrides every type it has a kernel for. */
void k_install_neon(k_kernels *k);
/* Requires HWCAP_ASIMDDP on top of k_install_neon: replaces the integer dots. */
void k_install_neon_dotprod(k_kernels *k);

/* ---- per-kernel entry points (tests, benches) ---- */
float k_neon_dot_f32(const void *w, const void *a, int64_t n);
float k_neon_dot_f16(const void *w, const void *a, int64_t n);
float k_neon_dot_bf16(const void *w, const void *a, int64_t n);

#define K_ARM_INT_DOTS(ISA)                                                              \
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
K_ARM_INT_DOTS(neon)
K_ARM_INT_DOTS(neon_dotprod)
#undef K_ARM_INT_DOTS

/* Activation quantizers. Same errors as q_quantize_act: ND_EINVAL if n < 0 or not a
 * multiple of the block. */
int k_neon_quantize_q8_0(const float *x, void *dst, int64_t n);
int k_neon_quantize_q8_1(const float *x, void *dst, int64_t n);
int k_neon_quantize_q8_K(const float *x, void *dst, int64_t n);
int k_neon_quantize_f16(const float *x, void *dst, int64_t n);
int k_neon_quantize_bf16(const float *x, void *dst, int64_t n);

#endif
