/* NEON + ARMv8.2 dot product (sdot) kernels: the integer dots of every quantized weight type,
 * the same source as kernels/arm/neon/ (neon_dots.h) around vdotq_s32, which sums four int8
 * products per int32 lane in one instruction. Semantics: kernels/arm/arm.h (bit-identical to
 * the reference, like the baseline kernels). Compiled with -march=armv8.2-a+dotprod only;
 * reached through k_install_neon_dotprod after a HWCAP_ASIMDDP check. Quantizers and float
 * dots stay the baseline ones.
 */
#include <arm_neon.h>

#include "kernels/arm/arm.h"

#define K_DOT16(acc, a, b) vdotq_s32(acc, a, b)
#define K_FN(name) k_neon_dotprod_##name
#include "kernels/arm/neon/neon_dots.h"
#undef K_FN
#undef K_DOT16

void k_install_neon_dotprod(k_kernels *k) {
#define E(T, DOT)                                                                        \
    do {                                                                                 \
        k->ops[ND_TYPE_##T].name = "neon-dotprod";                                       \
        k->ops[ND_TYPE_##T].vec_dot = DOT;                                               \
        k->ops[ND_TYPE_##T].vec_dot4 = NULL;                                             \
        k->ops[ND_TYPE_##T].vec_dot4n = NULL;                                            \
        k->ops[ND_TYPE_##T].act_prep = NULL;                                             \
    } while (0)
    E(Q4_0, k_neon_dotprod_dot_q4_0);
    E(Q4_1, k_neon_dotprod_dot_q4_1);
    E(Q5_0, k_neon_dotprod_dot_q5_0);
    E(Q5_1, k_neon_dotprod_dot_q5_1);
    E(Q8_0, k_neon_dotprod_dot_q8_0);
    E(Q2_K, k_neon_dotprod_dot_q2_K);
    E(Q3_K, k_neon_dotprod_dot_q3_K);
    E(Q4_K, k_neon_dotprod_dot_q4_K);
    E(Q5_K, k_neon_dotprod_dot_q5_K);
    E(Q6_K, k_neon_dotprod_dot_q6_K);
#undef E
}
