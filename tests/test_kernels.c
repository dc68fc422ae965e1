/* tests for src/kernels: every SIMD entry (AVX2, AVX-512; on aarch64 NEON and NEON-dotprod,
 * run under qemu by `make cross-arm`; each ISA separately, through k_select and by direct
 * call) against the quant/ reference, which is the oracle.
 *
 * Activation quantizers: q_quantize_act follows llama.cpp's x86 runtime rules
 * (test_act_rules: ties to even, inverse scale 127/amax, tiny blocks to zero); every SIMD
 * quantizer's output bytes are identical to it (random rows, ties at .5, all-zero blocks,
 * sign ties of the Q8_K max, tiny/huge/denormal magnitudes, odd lengths for the float
 * formats).
 *
 * Dots: weight rows of random bytes (every bit pattern of the quants and packed scales is a
 * valid block) with controlled fp16 scale fields (random, zero, negative, subnormal, large),
 * all-zero and max-magnitude rows (0xFF / 0x80 fill), activations both from the quantizer
 * and synthetic (quants in [-127, 127], the activation formats' range; consistent bsums).
 * Lengths: 1 block, odd block counts, 256, 896, 4864.
 *
 * Tolerance. The integer sums are exact in both; the kernels only add the float terms in
 * another order (lanes, FMA). Each rounding is at most FLT_EPSILON/2 relative to a partial
 * sum bounded by S = sum_i |term_i|, where the terms are the per-element products including
 * the separately applied min/offset parts (|w_i| + 2|offset_i|) * |a_i|; a float summation
 * of m terms in any order errs by at most about m * eps * S. With m <= blocks + 16 (float
 * types: n/8 + 16) we allow tol = 4 * (m + 16) * FLT_EPSILON * S (4x margin for the scale
 * products d_w*d_a and the int->float conversions), plus n * 2^-126 for AVX-512 BF16, which
 * flushes denormal products. A second mode uses power-of-two unit scales and small sums
 * (S < 2^23) where every float operation is exact: there the results must be bit-equal,
 * which checks the integer parts exactly.
 */
#include "t.h"

#include <float.h>
#include <stdint.h>

#include "core/nd.h"
#include "kernels/kernels.h"
#if defined(__x86_64__) || defined(__i386__)
#include "kernels/x86/x86.h"
#define T_X86 1
#else
#define T_X86 0
#endif
#if defined(__aarch64__)
#include <sys/auxv.h>

#include "kernels/arm/arm.h"
#ifndef HWCAP_ASIMDDP
#define HWCAP_ASIMDDP (1UL << 20)
#endif
#endif
#include "quant/quant.h"

static const uint32_t w_types[] = {
    ND_TYPE_Q4_0, ND_TYPE_Q8_0, ND_TYPE_Q4_K, ND_TYPE_Q6_K, ND_TYPE_Q5_K, ND_TYPE_Q3_K,
    ND_TYPE_Q2_K, ND_TYPE_Q4_1, ND_TYPE_Q5_0, ND_TYPE_Q5_1, ND_TYPE_F16, ND_TYPE_BF16,
    ND_TYPE_F32,
};
#define N_WTYPES (sizeof w_types / sizeof w_types[0])

static const char *tname(uint32_t t) { return nd_type_info(t)->name; }

static int cpu_has(k_isa isa) {
#if defined(__aarch64__)
    const unsigned long hw = getauxval(AT_HWCAP);
    if (isa == K_ISA_NEON) return (hw & HWCAP_ASIMD) != 0;
    if (isa == K_ISA_NEON_DOTPROD) return (hw & HWCAP_ASIMD) && (hw & HWCAP_ASIMDDP);
    return isa == K_ISA_SCALAR;
#elif !T_X86
    return isa == K_ISA_SCALAR;
#else
    __builtin_cpu_init();
    if (isa == K_ISA_AVX2)
        return __builtin_cpu_supports("avx2") && __builtin_cpu_supports("fma") &&
               __builtin_cpu_supports("f16c");
    if (isa == K_ISA_AVX512)
        return cpu_has(K_ISA_AVX2) && __builtin_cpu_supports("avx512f") &&
               __builtin_cpu_supports("avx512bw") && __builtin_cpu_supports("avx512vl") &&
               __builtin_cpu_supports("avx512dq") && __builtin_cpu_supports("avx512vnni");
    return isa == K_ISA_SCALAR;
#endif
}

/* ------------------------------------------------------------ direct entry points */

typedef struct direct_dot {
    uint32_t wtype;
    k_vec_dot_fn fn;
} direct_dot;

#define DIRECT(ISA)                                                                      \
    static const direct_dot direct_##ISA[] = {                                           \
        {ND_TYPE_F32, k_##ISA##_dot_f32},   {ND_TYPE_F16, k_##ISA##_dot_f16},            \
        {ND_TYPE_BF16, k_##ISA##_dot_bf16}, {ND_TYPE_Q4_0, k_##ISA##_dot_q4_0},          \
        {ND_TYPE_Q4_1, k_##ISA##_dot_q4_1}, {ND_TYPE_Q5_0, k_##ISA##_dot_q5_0},          \
        {ND_TYPE_Q5_1, k_##ISA##_dot_q5_1}, {ND_TYPE_Q8_0, k_##ISA##_dot_q8_0},          \
        {ND_TYPE_Q2_K, k_##ISA##_dot_q2_K}, {ND_TYPE_Q3_K, k_##ISA##_dot_q3_K},          \
        {ND_TYPE_Q4_K, k_##ISA##_dot_q4_K}, {ND_TYPE_Q5_K, k_##ISA##_dot_q5_K},          \
        {ND_TYPE_Q6_K, k_##ISA##_dot_q6_K},                                              \
    };
#if T_X86
DIRECT(avx2)
DIRECT(avx512)
#endif
#if defined(__aarch64__)
DIRECT(neon)
/* the sdot file has the integer dots only (float dots and quantizers are NEON's) */
static const direct_dot direct_neon_dotprod[] = {
    {ND_TYPE_Q4_0, k_neon_dotprod_dot_q4_0}, {ND_TYPE_Q4_1, k_neon_dotprod_dot_q4_1},
    {ND_TYPE_Q5_0, k_neon_dotprod_dot_q5_0}, {ND_TYPE_Q5_1, k_neon_dotprod_dot_q5_1},
    {ND_TYPE_Q8_0, k_neon_dotprod_dot_q8_0}, {ND_TYPE_Q2_K, k_neon_dotprod_dot_q2_K},
    {ND_TYPE_Q3_K, k_neon_dotprod_dot_q3_K}, {ND_TYPE_Q4_K, k_neon_dotprod_dot_q4_K},
    {ND_TYPE_Q5_K, k_neon_dotprod_dot_q5_K}, {ND_TYPE_Q6_K, k_neon_dotprod_dot_q6_K},
};
#endif
#undef DIRECT

/* ------------------------------------------------------------ generators */

static uint16_t h_of(float f) { return nd_fp32_to_fp16(f); }

/* byte offsets of the fp16 scale fields in a weight block */
static int scale_fields(uint32_t t, int off[2]) {
    switch (t) {
    case ND_TYPE_Q4_0: case ND_TYPE_Q5_0: case ND_TYPE_Q8_0: case ND_TYPE_Q3_K:
        off[0] = t == ND_TYPE_Q3_K ? 108 : 0;
        return 1;
    case ND_TYPE_Q4_1: case ND_TYPE_Q5_1: case ND_TYPE_Q4_K: case ND_TYPE_Q5_K:
        off[0] = 0, off[1] = 2;
        return 2;
    case ND_TYPE_Q2_K: off[0] = 80, off[1] = 82; return 2;
    case ND_TYPE_Q6_K: off[0] = 208; return 1;
    default: return 0;
    }
}

enum { M_RANDOM, M_ZERO_D, M_NEG_D, M_SUBNORMAL_D, M_LARGE_D, M_FILL00, M_FILLFF, M_FILL80,
       M_UNIT, M_COUNT };
static const char *mode_name[M_COUNT] = {"random", "d=0", "neg-d", "subnormal-d", "large-d",
                                         "fill00", "fillFF", "fill80", "unit"};

static float rand_scale(int mode, unsigned long long *s) {
    float u = t_rand_f(s);
    switch (mode) {
    case M_ZERO_D: return (t_rand_u64(s) & 1) ? 0.0f : u * 0.01f;
    case M_NEG_D: return -fabsf(u) * 0.01f - 1e-4f;
    case M_SUBNORMAL_D: return u * 6e-5f; /* fp16 subnormals are < 6.1e-5 */
    case M_LARGE_D: return u * 60000.0f;
    case M_UNIT: return (t_rand_u64(s) & 1) ? 1.0f : 0.5f;
    default: return u * 0.02f;
    }
}

static void gen_weights(uint32_t t, uint8_t *w, int64_t n, int mode, unsigned long long *s) {
    const size_t bytes = q_row_size(t, n);
    const uint32_t bb = q_block_bytes(t);
    if (t == ND_TYPE_F32 || t == ND_TYPE_F16 || t == ND_TYPE_BF16) {
        for (int64_t i = 0; i < n; i++) {
            float v = mode == M_UNIT ? (float)((int)(t_rand_u64(s) % 17) - 8)
                      : mode == M_FILL00 ? 0.0f
                      : mode == M_SUBNORMAL_D ? t_rand_f(s) * 1e-6f
                      : mode == M_LARGE_D ? t_rand_f(s) * 6e4f
                                          : t_rand_f(s);
            if (t == ND_TYPE_F32) memcpy(w + 4 * i, &v, 4);
            else {
                uint16_t h = t == ND_TYPE_F16 ? nd_fp32_to_fp16(v) : nd_fp32_to_bf16(v);
                memcpy(w + 2 * i, &h, 2);
            }
        }
        return;
    }
    int fill = mode == M_FILL00 ? 0x00 : mode == M_FILLFF ? 0xFF : mode == M_FILL80 ? 0x80 : -1;
    for (size_t i = 0; i < bytes; i++) w[i] = fill >= 0 ? (uint8_t)fill : (uint8_t)t_rand_u64(s);
    int off[2];
    int nf = scale_fields(t, off);
    for (size_t b = 0; b < bytes / bb; b++)
        for (int f = 0; f < nf; f++) {
            uint16_t h = h_of(fill >= 0 && mode != M_FILL00 ? 1000.0f : rand_scale(mode, s));
            if (mode == M_FILL00) h = 0;
            memcpy(w + b * bb + off[f], &h, 2);
        }
}

/* Synthetic activation row of type at: quants in [-127,127] (or +-127 for the fill modes),
 * consistent Q8_K bsums, random scales per mode. */
static void gen_act(uint32_t at, uint8_t *a, int64_t n, int mode, unsigned long long *s) {
    if (at == ND_TYPE_F32 || at == ND_TYPE_F16 || at == ND_TYPE_BF16) {
        gen_weights(at, a, n, mode == M_FILL80 || mode == M_FILLFF ? M_LARGE_D : mode, s);
        return;
    }
    const int fillm = mode == M_FILLFF || mode == M_FILL80;
    if (at == ND_TYPE_Q8_K) {
        for (int64_t b = 0; b < n / Q_QK_K; b++) {
            q_block_q8_K *y = (q_block_q8_K *)a + b;
            y->d = mode == M_UNIT ? 1.0f : fillm ? 1e-2f : rand_scale(mode, s);
            for (int j = 0; j < Q_QK_K; j++)
                y->qs[j] = (int8_t)(fillm ? (mode == M_FILL80 ? -127 : 127)
                                    : mode == M_UNIT ? (int)(t_rand_u64(s) % 15) - 7
                                                     : (int)(t_rand_u64(s) % 255) - 127);
            for (int g = 0; g < 16; g++) {
                int sum = 0;
                for (int j = 0; j < 16; j++) sum += y->qs[16 * g + j];
                y->bsums[g] = (int16_t)sum;
            }
        }
        return;
    }
    const int has_s = at == ND_TYPE_Q8_1;
    const uint32_t bb = q_block_bytes(at);
    for (int64_t b = 0; b < n / Q_QK; b++) {
        uint8_t *blk = a + b * bb;
        /* large-d stays on the weights: large activation scales overflow s = d*sum */
        const int am = mode == M_LARGE_D ? M_RANDOM : mode;
        uint16_t d = h_of(mode == M_UNIT ? 1.0f : fillm ? 1e-2f : rand_scale(am, s));
        memcpy(blk, &d, 2);
        int8_t *qs = (int8_t *)(blk + (has_s ? 4 : 2));
        int sum = 0;
        for (int j = 0; j < Q_QK; j++) {
            qs[j] = (int8_t)(fillm ? (mode == M_FILL80 ? -127 : 127) : (int)(t_rand_u64(s) % 255) - 127);
            sum += qs[j];
        }
        if (has_s) {
            uint16_t sh = h_of(mode == M_UNIT ? (float)sum : nd_fp16_to_fp32(d) * (float)sum);
            memcpy(blk + 2, &sh, 2);
        }
    }
}

/* ------------------------------------------------------------ tolerance */

static void k4_mins(const uint8_t *b, uint8_t mn[8]) {
    for (int j = 0; j < 4; j++) {
        mn[j] = b[j + 4] & 63;
        mn[j + 4] = (uint8_t)((b[j + 8] >> 4) | ((b[j + 4] >> 6) << 4));
    }
}

/* S = sum |terms| (see the header comment), computed in double. */
static double abs_sum(uint32_t wt, const uint8_t *w, uint32_t at, const uint8_t *a, int64_t n,
                      float *wf, float *af) {
    ND_ASSERT(q_dequantize_row(wt, w, wf, n) == 0);
    ND_ASSERT(q_dequantize_row(at, a, af, n) == 0);
    double S = 0;
    for (int64_t i = 0; i < n; i++) {
        double off = 0;
        const int64_t b32 = i / 32, b256 = i / 256;
        if (wt == ND_TYPE_Q4_1 || wt == ND_TYPE_Q5_1) {
            uint16_t m;
            memcpy(&m, w + b32 * q_block_bytes(wt) + 2, 2);
            off = fabs(nd_fp16_to_fp32(m));
        } else if (wt == ND_TYPE_Q2_K) {
            const q_block_q2_K *x = (const q_block_q2_K *)w + b256;
            off = fabs(nd_fp16_to_fp32(x->dmin)) * (x->scales[(i % 256) / 16] >> 4);
        } else if (wt == ND_TYPE_Q4_K || wt == ND_TYPE_Q5_K) {
            const uint8_t *blk = w + b256 * q_block_bytes(wt);
            uint16_t dm;
            memcpy(&dm, blk + 2, 2);
            uint8_t mn[8];
            k4_mins(blk + 4, mn);
            off = fabs(nd_fp16_to_fp32(dm)) * mn[(i % 256) / 32];
        }
        S += (fabs(wf[i]) + 2 * off) * fabs(af[i]);
    }
    if (wt == ND_TYPE_Q4_1 || wt == ND_TYPE_Q5_1) /* the m * s terms */
        for (int64_t b = 0; b < n / 32; b++) {
            uint16_t m, sh;
            memcpy(&m, w + b * q_block_bytes(wt) + 2, 2);
            memcpy(&sh, a + b * 36 + 2, 2);
            S += fabs(nd_fp16_to_fp32(m) * nd_fp16_to_fp32(sh));
        }
    return S;
}

/* ------------------------------------------------------------ dot checks */

typedef struct stats {
    double max_rel; /* max |err| / S seen */
    int exact_checked;
} stats;

static const int64_t lengths_32[] = {32, 96, 256, 896, 4864};
static const int64_t lengths_256[] = {256, 768, 2560, 4864};

/* Compares fn against q_vec_dot for one weight type over all modes and lengths. */
static void check_dot(const char *isa, uint32_t wt, k_vec_dot_fn fn, int bf16_flush, stats *st) {
    const uint32_t at = q_vec_dot_type(wt);
    const uint32_t blk = q_blck(wt);
    const int64_t *lens = blk == Q_QK_K ? lengths_256 : lengths_32;
    const int nlens = blk == Q_QK_K ? 4 : 5;
    const int64_t nmax = 4864 + 64;
    uint8_t *w = malloc(q_row_size(wt == ND_TYPE_F32 ? wt : ND_TYPE_F32, nmax) + 64);
    uint8_t *a = malloc(q_row_size(ND_TYPE_F32, nmax) + 64);
    float *wf = malloc(sizeof(float) * nmax), *af = malloc(sizeof(float) * nmax);
    float *xf = malloc(sizeof(float) * nmax);
    unsigned long long s = 0x1234567ull + wt;
    for (int li = 0; li < nlens + 2; li++) {
        int64_t n = li < nlens ? lens[li] : (int64_t)(blk == 1 ? (li == nlens ? 1 : 37) : blk);
        if (n % blk) continue;
        for (int mode = 0; mode < M_COUNT; mode++)
            for (int rep = 0; rep < 3; rep++) {
                /* rows aligned only to their scalar fields (4 bytes), never to vectors:
                 * GGUF blocks of 18, 34, 210 ... bytes land anywhere mod 32 */
                uint8_t *wr = w + 4 + 4 * rep, *ar = a + 12 - 4 * rep;
                gen_weights(wt, wr, n, mode, &s);
                if (rep == 2 && mode == M_RANDOM) { /* realistic activations */
                    for (int64_t i = 0; i < n; i++) xf[i] = t_rand_f(&s) * (i % 7 ? 1.0f : 10.0f);
                    ND_ASSERT(q_quantize_act(at, xf, ar, n) == 0);
                } else {
                    gen_act(at, ar, n, mode, &s);
                }
                const float ref = q_vec_dot(wt, wr, at, ar, n);
                const float got = fn(wr, ar, n);
                const double S = abs_sum(wt, wr, at, ar, n, wf, af);
                const double m = (blk == 1 ? (double)n / 8 : (double)(n / blk)) + 16;
                double tol = 4 * (m + 16) * FLT_EPSILON * S;
                if (bf16_flush) tol += (double)n * 0x1p-126;
                const double err = fabs((double)got - (double)ref);
                if (S > 0 && err / S > st->max_rel) st->max_rel = err / S;
                T_CHECKF(isfinite(got) && err <= tol,
                         "%s %s n=%lld mode=%s rep=%d: got %.9g ref %.9g (S %.3g, tol %.3g)", isa,
                         tname(wt), (long long)n, mode_name[mode], rep, got, ref, S, tol);
                if (mode == M_UNIT && S < 0x1p23) {
                    st->exact_checked++;
                    T_CHECKF(got == ref, "%s %s n=%lld unit scales: got %.9g, exact ref %.9g", isa,
                             tname(wt), (long long)n, got, ref);
                }
            }
    }
    free(w), free(a), free(wf), free(af), free(xf);
}

static void check_table(k_isa isa) {
    k_kernels k;
    k_select(&k, isa);
    T_EQ_INT(k.isa, isa);
    for (size_t i = 0; i < N_WTYPES; i++) {
        const uint32_t wt = w_types[i];
        const k_ops *o = &k.ops[wt];
        T_CHECKF(o->name && strcmp(o->name, "scalar") != 0, "%s: %s still scalar",
                 k_isa_name(isa), tname(wt));
        T_EQ_INT(o->atype, q_vec_dot_type(wt));
        stats st = {0};
        check_dot(o->name ? o->name : "?", wt, o->vec_dot, isa == K_ISA_AVX512 && wt == ND_TYPE_BF16, &st);
        printf("  %-6s %-5s (%s) max |err|/S = %.2e, exact checks %d\n", k_isa_name(isa), tname(wt),
               o->name, st.max_rel, st.exact_checked);
    }
}

static void check_direct(const direct_dot *d, size_t nd, const char *isa, int avx512) {
    for (size_t i = 0; i < nd; i++) {
        stats st = {0};
        check_dot(isa, d[i].wtype, d[i].fn, avx512 && d[i].wtype == ND_TYPE_BF16, &st);
    }
}

static void test_table_avx2(void) {
    if (!cpu_has(K_ISA_AVX2)) T_SKIP("CPU lacks AVX2/FMA/F16C");
    check_table(K_ISA_AVX2);
}

static void test_table_avx512(void) {
    if (!cpu_has(K_ISA_AVX512)) T_SKIP("CPU lacks AVX-512 F/BW/VL/DQ/VNNI");
    check_table(K_ISA_AVX512);
}

#if T_X86
static void test_direct_avx2(void) {
    if (!cpu_has(K_ISA_AVX2)) T_SKIP("CPU lacks AVX2/FMA/F16C");
    check_direct(direct_avx2, sizeof direct_avx2 / sizeof direct_avx2[0], "avx2", 0);
}

static void test_direct_avx512(void) {
    if (!cpu_has(K_ISA_AVX512)) T_SKIP("CPU lacks AVX-512 F/BW/VL/DQ/VNNI");
    if (!__builtin_cpu_supports("avx512bf16")) T_SKIP("CPU lacks AVX-512 BF16");
    check_direct(direct_avx512, sizeof direct_avx512 / sizeof direct_avx512[0], "avx512", 1);
}
#endif

/* ------------------------------------------------------------ quantizers */

/* Rows that stress the rounding rules and scale logic. kind selects the pattern. */
static void gen_floats(float *x, int64_t n, int kind, unsigned long long *s) {
    for (int64_t i = 0; i < n; i++) {
        float u = t_rand_f(s);
        switch (kind) {
        case 0: x[i] = u; break;
        case 1: x[i] = 0.0f; break;
        /* max 127 -> d = 1 (Q8_0) and -127/max = -1 (Q8_K): x*id lands on .5 exactly */
        case 2: x[i] = (i % 32 == 5) ? 127.0f : (float)((int)(t_rand_u64(s) % 253) - 126) + 0.5f; break;
        case 3: x[i] = (i % 256 == 17) ? -127.0f : (float)((int)(t_rand_u64(s) % 253) - 126) + 0.5f; break;
        case 4: x[i] = (i % 3 == 0) ? ((i & 1) ? 3.0f : -3.0f) : u; break; /* sign ties of |max| */
        case 5: x[i] = u * 1e-30f; break;
        case 6: x[i] = u * 1e-40f; break; /* denormal floats */
        case 7: x[i] = u * 1e30f; break;
        case 8: x[i] = (i % 64 < 32) ? 0.0f : u * 100.0f; break; /* zero blocks between */
        default: x[i] = u * 70000.0f; break; /* beyond fp16 range */
        }
    }
}

typedef struct qfn {
    uint32_t atype;
    k_quantize_fn fn;
} qfn;

static void check_quantizer(const char *isa, uint32_t at, k_quantize_fn fn) {
    const int64_t lens_q[] = {0, 32, 256, 896, 4864, 512 + 256};
    const int64_t lens_f[] = {0, 1, 7, 8, 15, 16, 17, 33, 896, 4864};
    const int is_f = at == ND_TYPE_F16 || at == ND_TYPE_BF16;
    const int nl = is_f ? 10 : 6;
    const int64_t nmax = 4864;
    float *x = malloc(sizeof(float) * nmax);
    uint8_t *r = malloc(q_row_size(ND_TYPE_F32, nmax) + 8), *g = malloc(q_row_size(ND_TYPE_F32, nmax) + 8);
    ND_ASSERT(r && g && x);
    unsigned long long s = 99 + at;
    for (int li = 0; li < nl; li++) {
        int64_t n = is_f ? lens_f[li] : lens_q[li];
        if (n % q_blck(at)) continue;
        const size_t bytes = q_row_size(at, n);
        for (int kind = 0; kind < 10; kind++) {
            if (at == ND_TYPE_F16 && kind == 9) continue; /* beyond range: inf, both agree? skip */
            gen_floats(x, n, kind, &s);
            memset(r, 0xAA, bytes + 8);
            memset(g, 0x55, bytes + 8); /* g has 8 spare bytes: +4 fits */
            T_EQ_INT(q_quantize_act(at, x, r, n), 0);
            T_EQ_INT(fn(x, g + 4, n), 0); /* destination not vector-aligned */
            T_CHECKF(memcmp(r, g + 4, bytes) == 0, "%s quantize %s n=%lld kind=%d: bytes differ",
                     isa, tname(at), (long long)n, kind);
            if (memcmp(r, g + 4, bytes) != 0)
                for (size_t b = 0; b < bytes; b++)
                    if (r[b] != g[4 + b]) {
                        fprintf(stderr, "    first diff at byte %zu: ref %02x got %02x\n", b, r[b], g[4 + b]);
                        break;
                    }
        }
    }
    if (!is_f) T_EQ_INT(fn(x, g, (int64_t)q_blck(at) + 1), ND_EINVAL);
    T_EQ_INT(fn(x, g, -1), ND_EINVAL);
    free(x), free(r), free(g);
}

#if T_X86
static void test_quantizers_avx2(void) {
    if (!cpu_has(K_ISA_AVX2)) T_SKIP("CPU lacks AVX2/FMA/F16C");
    const qfn q[] = {{ND_TYPE_Q8_0, k_avx2_quantize_q8_0}, {ND_TYPE_Q8_1, k_avx2_quantize_q8_1},
                     {ND_TYPE_Q8_K, k_avx2_quantize_q8_K}, {ND_TYPE_F16, k_avx2_quantize_f16},
                     {ND_TYPE_BF16, k_avx2_quantize_bf16}};
    for (size_t i = 0; i < sizeof q / sizeof q[0]; i++) check_quantizer("avx2", q[i].atype, q[i].fn);
}

static void test_quantizers_avx512(void) {
    if (!cpu_has(K_ISA_AVX512)) T_SKIP("CPU lacks AVX-512 F/BW/VL/DQ/VNNI");
    check_quantizer("avx512", ND_TYPE_Q8_0, k_avx512_quantize_q8_0);
}
#endif

#if defined(__aarch64__)
/* ------------------------------------------------------------ aarch64 (NEON) */

static void test_table_neon(void) {
    if (!cpu_has(K_ISA_NEON)) T_SKIP("CPU lacks AdvSIMD");
    check_table(K_ISA_NEON);
}

static void test_table_neon_dotprod(void) {
    if (!cpu_has(K_ISA_NEON_DOTPROD)) T_SKIP("CPU lacks the ARMv8.2 dot product (asimddp)");
    check_table(K_ISA_NEON_DOTPROD);
}

static void test_direct_neon(void) {
    if (!cpu_has(K_ISA_NEON)) T_SKIP("CPU lacks AdvSIMD");
    check_direct(direct_neon, sizeof direct_neon / sizeof direct_neon[0], "neon", 0);
    if (cpu_has(K_ISA_NEON_DOTPROD))
        check_direct(direct_neon_dotprod, sizeof direct_neon_dotprod / sizeof direct_neon_dotprod[0],
                     "neon-dotprod", 0);
}

static void test_quantizers_neon(void) {
    if (!cpu_has(K_ISA_NEON)) T_SKIP("CPU lacks AdvSIMD");
    const qfn q[] = {{ND_TYPE_Q8_0, k_neon_quantize_q8_0}, {ND_TYPE_Q8_1, k_neon_quantize_q8_1},
                     {ND_TYPE_Q8_K, k_neon_quantize_q8_K}, {ND_TYPE_F16, k_neon_quantize_f16},
                     {ND_TYPE_BF16, k_neon_quantize_bf16}};
    for (size_t i = 0; i < sizeof q / sizeof q[0]; i++) check_quantizer("neon", q[i].atype, q[i].fn);
}

/* The NEON quantized dots promise more than the tolerance: the reference's float bit for
 * bit (exact integer block sums, then the reference's float expression in its order; see
 * kernels/arm/arm.h). Every mode of the generators, synthetic and quantized activations,
 * weight rows aligned to 2 bytes only. */
static void check_bit_exact(const direct_dot *d, size_t nd, const char *isa) {
    const int64_t nmax = 4864;
    uint8_t *w = malloc(q_row_size(ND_TYPE_F32, nmax) + 8), *a = malloc(q_row_size(ND_TYPE_F32, nmax) + 8);
    float *x = malloc(sizeof(float) * nmax);
    ND_ASSERT(w && a && x);
    unsigned long long s = 31337;
    int checked = 0;
    for (size_t i = 0; i < nd; i++) {
        const uint32_t wt = d[i].wtype, at = q_vec_dot_type(wt), blk = q_blck(wt);
        if (blk == 1) continue; /* float types: tolerance only (float lanes vs double) */
        const int64_t lens[] = {blk, 3 * (int64_t)blk, nmax};
        for (int li = 0; li < 3; li++)
            for (int mode = 0; mode < M_COUNT; mode++)
                for (int r = 0; r < 2; r++) {
                    const int64_t n = lens[li];
                    gen_weights(wt, w + 2, n, mode, &s);
                    if (r == 1 && mode == M_RANDOM) {
                        for (int64_t j = 0; j < n; j++) x[j] = t_rand_f(&s) * (j % 7 ? 1.0f : 10.0f);
                        ND_ASSERT(q_quantize_act(at, x, a + 4, n) == 0);
                    } else {
                        gen_act(at, a + 4, n, mode, &s);
                    }
                    const float ref = q_vec_dot(wt, w + 2, at, a + 4, n), got = d[i].fn(w + 2, a + 4, n);
                    T_CHECKF(memcmp(&ref, &got, sizeof ref) == 0 || (isnan(ref) && isnan(got)),
                             "%s %s n=%lld mode=%s: got %.9g, reference %.9g (not bit-identical)", isa,
                             tname(wt), (long long)n, mode_name[mode], got, ref);
                    checked++;
                }
    }
    T_CHECK(checked > 0);
    free(w), free(a), free(x);
}

static void test_neon_bit_exact(void) {
    if (!cpu_has(K_ISA_NEON)) T_SKIP("CPU lacks AdvSIMD");
    check_bit_exact(direct_neon, sizeof direct_neon / sizeof direct_neon[0], "neon");
    if (cpu_has(K_ISA_NEON_DOTPROD))
        check_bit_exact(direct_neon_dotprod, sizeof direct_neon_dotprod / sizeof direct_neon_dotprod[0],
                        "neon-dotprod");
}
#endif

/* Four weight rows of type wt (n elements, row i at w + i * stride): random bytes with
 * finite random fp16 scales in every block. */
static void rand_rows4(uint8_t *w, uint32_t wt, int64_t n, size_t stride, unsigned long long *s) {
    for (size_t i = 0; i < stride * 4; i++) w[i] = (uint8_t)t_rand_u64(s);
    int off[2];
    const int nf = scale_fields(wt, off);
    for (int r = 0; r < 4; r++)
        for (int64_t b = 0; b < n / (int64_t)q_blck(wt); b++)
            for (int f = 0; f < nf; f++) {
                uint16_t h = h_of(t_rand_f(s) * 0.01f);
                memcpy(w + r * stride + b * q_block_bytes(wt) + off[f], &h, 2);
            }
}

/* Decode entries: dot4 over four rows equals the single-row entry on each row, bit for
 * bit (the matmul may use either for any row), and the single-row entry is within the
 * derived tolerance of the reference through test_table_avx512. Rows of random bytes with
 * finite random scales, several lengths, strides with padding between rows. */
static void test_dot4(void) {
    if (!cpu_has(K_ISA_AVX512)) T_SKIP("CPU lacks AVX-512 VNNI");
    k_kernels k;
    k_select(&k, K_ISA_AVX512);
    unsigned long long s = 77;
    int checked = 0;
    for (size_t ti = 0; ti < N_WTYPES; ti++) {
        const uint32_t wt = w_types[ti];
        const k_ops *o = &k.ops[wt];
        if (!o->vec_dot4) continue;
        const int64_t lens[] = {32, 96, 896, 4864, 256, 1280};
        for (size_t lr = 0; lr < 8 * (sizeof lens / sizeof lens[0]); lr++) { /* 8 draws a length */
            const size_t li = lr % (sizeof lens / sizeof lens[0]);
            const int64_t n = lens[li];
            if (n % q_blck(wt)) continue;
            const size_t wr = q_row_size(wt, n), stride = wr + 2 * (li % 2);
            uint8_t *w = malloc(stride * 4), *a = malloc(q_row_size(o->atype, n));
            float *x = malloc(sizeof(float) * n);
            rand_rows4(w, wt, n, stride, &s);
            for (int64_t i = 0; i < n; i++) /* a few outliers: other quants saturate */
                x[i] = t_rand_f(&s) * (i % 37 == 3 ? 50.0f : 1.0f);
            ND_ASSERT(o->quantize(x, a, n) == 0);
            /* the 4-row entry reads the prepared layout when the type has one */
            uint8_t *pa = o->act_prep ? malloc(o->act_prep(NULL, n, NULL)) : a;
            if (o->act_prep) T_EQ_INT((long long)o->act_prep(a, n, pa), (long long)o->act_prep(NULL, n, NULL));
            float out[4];
            o->vec_dot4(w, stride, pa, n, out);
            for (int r = 0; r < 4; r++) {
                const float one = o->vec_dot(w + r * stride, a, n);
                T_CHECKF(memcmp(&one, &out[r], 4) == 0, "%s n=%lld row %d: dot4 %.9g vs dot %.9g",
                         tname(wt), (long long)n, r, out[r], one);
                checked++;
            }
            if (pa != a) free(pa);
            free(w), free(a), free(x);
        }
    }
    T_CHECK(checked > 0);
}

/* Short-batch entries: dot4n over nt tokens equals dot4 on each token, bit for bit (the
 * matmul uses dot4n for batches of 2..63 tokens and dot4 for decode, and speculative
 * greedy decoding relies on the two agreeing). Every token count 1..K_DOT4N_MAX, lengths
 * with and without a partial 4-block tail, padded row and activation strides, output
 * written with a stride and guarded around. */
static void test_dot4n(void) {
    if (!cpu_has(K_ISA_AVX512)) T_SKIP("CPU lacks AVX-512 VNNI");
    k_kernels k;
    k_select(&k, K_ISA_AVX512);
    unsigned long long s = 91;
    int checked = 0;
    for (size_t ti = 0; ti < N_WTYPES; ti++) {
        const uint32_t wt = w_types[ti];
        const k_ops *o = &k.ops[wt];
        if (!o->vec_dot4n) continue;
        T_CHECKF(o->vec_dot4 != NULL, "%s: dot4n without dot4", tname(wt));
        const int64_t lens[] = {32, 96, 160, 896, 4864, 256, 1280};
        for (size_t li = 0; li < sizeof lens / sizeof lens[0]; li++)
            for (int nt = 1; nt <= K_DOT4N_MAX; nt++) {
                const int64_t n = lens[li];
                if (n % q_blck(wt)) continue;
                const size_t wr = q_row_size(wt, n), stride = wr + 2 * (nt % 2);
                const size_t ar = q_row_size(o->atype, n);
                const size_t pr = o->act_prep ? o->act_prep(NULL, n, NULL) : ar; /* what dot4n reads */
                /* padded strides; 36 keeps Q8_K rows (a float d) 4-byte aligned */
                const size_t astride = ar + 36 * (nt % 3 == 0), pstride = pr + 64 * (nt % 3 == 0);
                const size_t os = 4 + (size_t)(nt % 4); /* output stride >= 4 */
                uint8_t *w = malloc(stride * 4), *a = malloc(astride * nt);
                uint8_t *pa = o->act_prep ? malloc(pstride * nt) : a;
                float *x = malloc(sizeof(float) * n), *out = malloc(sizeof(float) * (os * nt + 8));
                rand_rows4(w, wt, n, stride, &s);
                for (int t = 0; t < nt; t++) {
                    for (int64_t i = 0; i < n; i++)
                        x[i] = t_rand_f(&s) * (i % 37 == t ? 50.0f : 1.0f);
                    ND_ASSERT(o->quantize(x, a + t * astride, n) == 0);
                    if (o->act_prep) o->act_prep(a + t * astride, n, pa + t * pstride);
                }
                const float guard = -12345.0f;
                for (size_t i = 0; i < os * nt + 8; i++) out[i] = guard;
                o->vec_dot4n(w, stride, pa, o->act_prep ? pstride : astride, nt, n, out + 4, os);
                for (int t = 0; t < nt; t++) {
                    float one[4];
                    o->vec_dot4(w, stride, o->act_prep ? pa + t * pstride : a + t * astride, n, one);
                    for (int r = 0; r < 4; r++) {
                        T_CHECKF(memcmp(&one[r], &out[4 + t * os + r], 4) == 0,
                                 "%s n=%lld nt=%d token %d row %d: dot4n %.9g vs dot4 %.9g",
                                 tname(wt), (long long)n, nt, t, r, out[4 + t * os + r], one[r]);
                        checked++;
                    }
                    for (size_t i = 4; i < os && t + 1 < nt; i++) /* the gap between tokens */
                        T_CHECKF(out[4 + t * os + i] == guard, "%s nt=%d: wrote into the stride gap",
                                 tname(wt), nt);
                }
                for (int i = 0; i < 4; i++) T_CHECK(out[i] == guard); /* nothing before */
                for (int i = 0; i < 4; i++) T_CHECK(out[4 + (nt - 1) * os + 4 + i] == guard);
                if (pa != a) free(pa);
                free(w), free(a), free(x), free(out);
            }
    }
    T_CHECK(checked > 0);
}

/* q_quantize_act's own rules (llama.cpp's x86 runtime quantizers), which the byte-identity
 * tests above then carry over to every SIMD quantizer:
 *   - Q8_0/Q8_1: ties go to EVEN (the *_ref rule, kept by q_quantize_row, is roundf);
 *   - the inverse scale is 127/amax, not 1/(amax/127) (they differ by an ulp for some amax;
 *     found by search, then an element placed just across the rounding boundary);
 *   - blocks with an infinite inverse scale (amax < ~3.7e-37) quantize to zero. */
static void test_act_rules(void) {
    float x[Q_QK_K];
    q_block_q8_0 a[8], r[8];
    q_block_q8_1 b;
    q_block_q8_K k;
    /* amax 127 -> id 1: 2.5 -> 2 (even), -3.5 -> -4, 4.5 -> 4; the reference gives 3, -4, 5 */
    for (int j = 0; j < Q_QK; j++) x[j] = 0.0f;
    x[0] = 127.0f, x[1] = 2.5f, x[2] = -3.5f, x[3] = 4.5f;
    T_EQ_INT(q_quantize_act(ND_TYPE_Q8_0, x, a, Q_QK), 0);
    T_EQ_INT(q_quantize_row(ND_TYPE_Q8_0, x, r, Q_QK), 0);
    T_EQ_INT(a[0].qs[1], 2);
    T_EQ_INT(a[0].qs[2], -4);
    T_EQ_INT(a[0].qs[3], 4);
    T_EQ_INT(r[0].qs[1], 3);
    T_EQ_INT(r[0].qs[2], -4);
    T_EQ_INT(r[0].qs[3], 5);
    T_EQ_INT(q_quantize_act(ND_TYPE_Q8_1, x, &b, Q_QK), 0);
    T_EQ_INT(b.qs[1], 2);
    T_EQ_INT(nd_fp16_to_fp32(b.s), 127 + 2 - 4 + 4);
    /* an amax where 127/amax != 1/(amax/127), and an x whose product with the two inverse
     * scales rounds differently: the act quantizer must follow 127/amax */
    int found = 0;
    for (uint32_t bits = 0x3f800001u; bits < 0x3f800001u + 100000 && !found; bits++) {
        float amax;
        memcpy(&amax, &bits, 4);
        const volatile float id_x86 = 127.f / amax, d = amax / 127.f, id_ref = 1.0f / d;
        if (id_x86 == id_ref) continue;
        for (int q = 1; q < 127 && !found; q++) {
            /* the largest float whose product with id_x86 stays below q + 0.5 */
            float v = ((float)q + 0.5f) / id_x86;
            while (v * id_x86 >= (float)q + 0.5f) v = nextafterf(v, 0.f);
            while (nextafterf(v, 1e9f) * id_x86 < (float)q + 0.5f) v = nextafterf(v, 1e9f);
            const float pr = v * id_ref, px = v * id_x86;
            if (rintf(pr) == rintf(px) && roundf(pr) == rintf(px)) continue;
            for (int j = 0; j < Q_QK; j++) x[j] = 0.0f;
            x[0] = amax, x[1] = v;
            T_EQ_INT(q_quantize_act(ND_TYPE_Q8_0, x, a, Q_QK), 0);
            T_EQ_INT(a[0].qs[1], (int)rintf(px));
            found = 1;
        }
    }
    T_CHECK(found);
    /* tiny blocks: zero quants (and zero scale), scalar and every SIMD table alike */
    for (int j = 0; j < Q_QK_K; j++) x[j] = (j % 3 - 1) * 1e-38f * (float)(j % 7 + 1);
    T_EQ_INT(q_quantize_act(ND_TYPE_Q8_0, x, a, Q_QK_K), 0);
    for (int i = 0; i < 8; i++) {
        T_EQ_INT(a[i].d, 0);
        for (int j = 0; j < Q_QK; j++) T_EQ_INT(a[i].qs[j], 0);
    }
    T_EQ_INT(q_quantize_act(ND_TYPE_Q8_K, x, &k, Q_QK_K), 0);
    for (int j = 0; j < Q_QK_K; j++) T_EQ_INT(k.qs[j], 0);
    for (int j = 0; j < Q_QK_K / 16; j++) T_EQ_INT(k.bsums[j], 0);
    T_CHECK(k.d == 0.0f);
}

/* Every selected table's quantize entry (whatever ISA it came from) matches the reference. */
static void test_quantizers_tables(void) {
    const k_isa isas[] = {K_ISA_SCALAR, K_ISA_AVX2, K_ISA_AVX512, K_ISA_NEON, K_ISA_NEON_DOTPROD};
    for (size_t j = 0; j < sizeof isas / sizeof isas[0]; j++) {
        if (!cpu_has(isas[j])) continue;
        k_kernels k;
        k_select(&k, isas[j]);
        for (size_t i = 0; i < N_WTYPES; i++) {
            const k_ops *o = &k.ops[w_types[i]];
            if (o->atype == ND_TYPE_F32) continue;
            check_quantizer(k_isa_name(isas[j]), o->atype, o->quantize);
        }
    }
}

/* The scalar table must still be the reference (dispatch sanity). */
static void test_scalar_table(void) {
    k_kernels k;
    k_select(&k, K_ISA_SCALAR);
    T_EQ_INT(k.isa, K_ISA_SCALAR);
    for (size_t i = 0; i < N_WTYPES; i++) T_EQ_STR(k.ops[w_types[i]].name, "scalar");
}

/* k_matmul with the best table vs the scalar table on a small Qwen-like shape. */
static void test_matmul_best(void) {
    k_kernels ks, kb;
    k_select(&ks, K_ISA_SCALAR);
    k_select(&kb, K_ISA_BEST);
    const int64_t Kmax = 4864, N = 40, M = 3;
    float *X = malloc(sizeof(float) * Kmax * M), *W = malloc(sizeof(float) * Kmax * N);
    float *Y0 = malloc(sizeof(float) * N * M), *Y1 = malloc(sizeof(float) * N * M);
    uint8_t *Wq = malloc(q_row_size(ND_TYPE_F32, Kmax * N));
    unsigned long long s = 5;
    for (int64_t i = 0; i < Kmax * M; i++) X[i] = t_rand_f(&s);
    for (int64_t i = 0; i < Kmax * N; i++) W[i] = t_rand_f(&s) * 0.05f;
    for (size_t t = 0; t < N_WTYPES; t++) {
        const uint32_t wt = w_types[t];
        const int64_t K = q_blck(wt) == Q_QK_K ? 4864 : 896; /* Qwen2.5-0.5B row lengths */
        ND_ASSERT(q_quantize_row(wt, W, Wq, K * N) == 0);
        k_scratch sc = {0};
        k_env e0 = {.kern = &ks, .pool = NULL, .scratch = &sc},
              e1 = {.kern = &kb, .pool = NULL, .scratch = &sc};
        nd_err err;
        T_EQ_INT(k_matmul(&e0, wt, Wq, K, N, X, M, Y0, &err), 0);
        T_EQ_INT(k_matmul(&e1, wt, Wq, K, N, X, M, Y1, &err), 0);
        double maxd = 0, maxy = 0;
        for (int64_t i = 0; i < N * M; i++) {
            /* (not fmax: Debian's aarch64 GCC 12 crashes vectorizing two fmax reductions) */
            const double di = fabs((double)Y0[i] - Y1[i]), yi = fabs((double)Y0[i]);
            maxd = di > maxd ? di : maxd;
            maxy = yi > maxy ? yi : maxy;
        }
        T_CHECKF(maxd <= 1e-4 * maxy + 1e-6, "%s matmul best vs scalar: max diff %g (max |y| %g)",
                 tname(wt), maxd, maxy);
        k_scratch_free(&sc);
    }
    free(X), free(W), free(Y0), free(Y1), free(Wq);
}

/* ---------------------------------------------------------- X16 layout */

/* The X16 layout (Q4_0, Q8_0, Q5_0, Q4_K): repack and k_x16_row round-trip every row exactly; k_matmul_n on the
 * repacked matrix gives the GGUF-layout product's bits for decode (M = 1), short batches
 * (the per-row path) and prefill tiles (M >= K_GEMM_MIN_TOKENS), and stays within the
 * scalar reference's tolerance through that. Random rows with random, zero, subnormal and
 * large scales. */
static void test_x16(void) {
    k_kernels k;
    k_select(&k, K_ISA_BEST);
    if (!k_x16_supported(&k, ND_TYPE_Q4_0) || !k_x16_supported(&k, ND_TYPE_Q8_0)) T_SKIP("no X16 kernels on this CPU");
    const bool q5 = k_x16_supported(&k, ND_TYPE_Q5_0); /* with AVX512_BITALG */
    int tested = 0;
    T_CHECK(!k_x16_fits(ND_TYPE_Q4_0, 96, 32, (void *)(uintptr_t)64));   /* K % 64 */
    T_CHECK(!k_x16_fits(ND_TYPE_Q4_0, 128, 24, (void *)(uintptr_t)64));  /* N % 16 */
    T_CHECK(!k_x16_fits(ND_TYPE_Q4_0, 128, 32, (void *)(uintptr_t)96));  /* alignment */
    T_CHECK(!k_x16_fits(ND_TYPE_Q5_1, 128, 32, (void *)(uintptr_t)64));  /* type */
    /* long Q4_0 rows are stored by 256-element slices, slice-major within runs of 4 groups
     * (3 in the last run of 48 rows); everything else whole */
    T_EQ_INT(k_x16_slice(ND_TYPE_Q4_0, 896), 896);
    T_EQ_INT(k_x16_slice(ND_TYPE_Q4_0, 4864), 256);
    T_EQ_INT(k_x16_slice(ND_TYPE_Q8_0, 4864), 4864);
    T_EQ_INT(k_x16_offset(ND_TYPE_Q4_0, 4928, 48, 1, 0), 16 * 8 * 18);       /* group 1, slice 0 */
    T_EQ_INT(k_x16_offset(ND_TYPE_Q4_0, 4928, 48, 2, 19), 19 * 3 * 2304 + 2 * 16 * 2 * 18); /* short last slice */
    T_EQ_INT(k_x16_offset(ND_TYPE_Q4_0, 4928, 80, 4, 1), 4 * 16 * 2772 + 2304); /* the second run: 1 group */
    T_EQ_INT(k_x16_offset(ND_TYPE_Q8_0, 4864, 48, 2, 0), 2 * 16 * 5168);
    /* 4864 and 4928: Q4_0 stored by K-slices (4928: a short last slice); N = 48 groups
     * the slices in a run of 3 groups */
    const int64_t Ks[] = {64, 256, 896, 4864, 4928}, N = 48, Ms[] = {1, 5, 64, 70};
    const int64_t Kmax = 4928, Mmax = 70;
    const size_t rmax = q_row_size(ND_TYPE_Q8_0, Kmax);
    uint8_t *W = aligned_alloc(64, rmax * N), *Wx = aligned_alloc(64, rmax * N), *tmp = malloc(K_X16_TMP_ROWS * rmax);
    uint8_t *row = malloc(rmax), *grp = aligned_alloc(64, 16 * rmax);
    float *X = malloc(sizeof(float) * Kmax * Mmax), *Y0 = malloc(sizeof(float) * N * Mmax),
          *Y1 = malloc(sizeof(float) * N * Mmax);
    unsigned long long sd = 21;
    k_scratch sc = {0};
    nd_err err;
    nd_pool *pool = nd_pool_new(2, &err);
    const k_env env = {.kern = &k, .pool = pool, .scratch = &sc};
    const uint32_t wts[] = {ND_TYPE_Q4_0, ND_TYPE_Q8_0, ND_TYPE_Q4_K, ND_TYPE_Q5_0};
    for (size_t ti = 0; ti < (q5 ? 4u : 3u); ti++)
    for (size_t ki = 0; ki < sizeof Ks / sizeof Ks[0]; ki++) {
        const uint32_t wt = wts[ti];
        const int64_t K = Ks[ki];
        if (!k_x16_supported(&k, wt) || !k_x16_fits(wt, K, N, W)) continue;
        const size_t rb = q_row_size(wt, K);
        for (int64_t r = 0; r < N; r++) gen_weights(wt, W + (size_t)r * rb, K, (int)(r % M_COUNT), &sd);
        memcpy(Wx, W, rb * N);
        tested++;
        k_x16_repack(wt, Wx, K, N, tmp);
        T_CHECK(memcmp(Wx, W, rb * N) != 0);
        int bad_rows = 0;
        for (int64_t r = 0; r < N; r++) {
            k_x16_row(wt, Wx, K, N, r, row);
            bad_rows += memcmp(row, W + (size_t)r * rb, rb) != 0;
        }
        T_CHECKF(bad_rows == 0, "%s K %lld: %d rows do not round-trip", tname(wt), (long long)K, bad_rows);
        for (int64_t i = 0; i < K * Mmax; i++) X[i] = t_rand_f(&sd);
        for (size_t mi = 0; mi < sizeof Ms / sizeof Ms[0]; mi++) {
            const int64_t M = Ms[mi];
            const k_mat a = {wt, W, N, Y0, K_LAYOUT_ROWS}, b = {wt, Wx, N, Y1, K_LAYOUT_X16};
            T_EQ_INT(k_matmul_n(&env, &a, 1, K, X, M, &err), 0);
            T_EQ_INT(k_matmul_n(&env, &b, 1, K, X, M, &err), 0);
            T_CHECKF(memcmp(Y0, Y1, sizeof(float) * (size_t)(N * M)) == 0,
                     "%s K %lld M %lld: X16 product differs from the GGUF-layout one", tname(wt), (long long)K,
                     (long long)M);
        }
        /* the dot over K-slices (state carried between calls) gives the whole dot's bits,
         * for every group and random cuts at multiples of K_X16_SLICE_ALIGN */
        const uint32_t at = q_vec_dot_type(wt);
        {
            const k_ops *ops = &k.ops[wt];
            uint8_t *aq = malloc(q_row_size(at, K)), *ap = NULL;
            const void *arow = aq;
            T_EQ_INT(ops->quantize(X, aq, K), 0);
            if (ops->act_prep16) {
                ap = aligned_alloc(64, (ops->act_prep16(NULL, K, NULL) + 63) & ~(size_t)63);
                ops->act_prep16(aq, K, ap);
                arow = ap;
            }
            int bad = 0;
            for (int64_t g = 0; g < N / 16; g++) {
                k_x16_group(wt, Wx, K, N, g, grp); /* whole, whatever the matrix is stored by */
                const uint8_t *G = grp;
                float whole[16], part[16], state[K_X16_STATE];
                ops->vec_dot16(G, arow, K, whole, NULL, K_X16_BEGIN | K_X16_END);
                for (int trial = 0; trial < 4; trial++) {
                    memset(part, 0xff, sizeof part);
                    for (int64_t k0 = 0; k0 < K;) {
                        int64_t n = K_X16_SLICE_ALIGN * (1 + (int64_t)(t_rand_u64(&sd) % 3));
                        if (trial == 0 || k0 + n > K) n = K - k0; /* trial 0: whole through the state */
                        const size_t aoff = ops->act_prep16 ? ops->act_prep16(NULL, k0, NULL) : q_row_size(at, k0);
                        const unsigned pt = (k0 == 0 ? K_X16_BEGIN : 0) | (k0 + n == K ? K_X16_END : 0);
                        ops->vec_dot16(G + 16 * q_row_size(wt, k0), (const uint8_t *)arow + aoff, n, part, state, pt);
                        k0 += n;
                    }
                    bad += memcmp(part, whole, sizeof whole) != 0;
                }
            }
            T_CHECKF(bad == 0, "%s K %lld: %d sliced X16 dots differ from the whole one", tname(wt), (long long)K, bad);
            free(aq), free(ap);
        }
        /* and against the scalar reference, row by row (decode) */
        uint8_t *aq = malloc(q_row_size(at, K));
        float *wf = malloc(sizeof(float) * (size_t)K), *af = malloc(sizeof(float) * (size_t)K);
        q_quantize_act(at, X, aq, K);
        const k_mat b = {wt, Wx, N, Y1, K_LAYOUT_X16};
        T_EQ_INT(k_matmul_n(&env, &b, 1, K, X, 1, &err), 0);
        for (int64_t r = 0; r < N; r++) {
            const double ref = q_vec_dot(wt, W + (size_t)r * rb, at, aq, K);
            const double bound = abs_sum(wt, W + (size_t)r * rb, at, aq, K, wf, af);
            T_CHECKF(fabs(Y1[r] - ref) <= 1e-5 * bound + 1e-30, "%s K %lld row %lld: %.9g vs reference %.9g",
                     tname(wt), (long long)K, (long long)r, Y1[r], ref);
        }
        free(aq), free(wf), free(af);
    }
    T_EQ_INT(tested, q5 ? 17 : 12); /* (type, K) pairs: Q4_0 / Q8_0 / Q5_0 x 5 K, Q4_K x 2 */
    /* enough rows that a work item holds several groups, walked together by K-slices when
     * the kernel asks for them (Q4_0): still the GGUF-layout product's bits */
    {
        const int64_t K2 = 1024, N2 = 1024;
        const size_t rb = q_row_size(ND_TYPE_Q4_0, K2);
        uint8_t *W2 = aligned_alloc(64, rb * N2), *Wx2 = aligned_alloc(64, rb * N2);
        float *Ya = malloc(sizeof(float) * N2), *Yb = malloc(sizeof(float) * N2);
        for (int64_t r = 0; r < N2; r++) gen_weights(ND_TYPE_Q4_0, W2 + (size_t)r * rb, K2, (int)(r % M_COUNT), &sd);
        memcpy(Wx2, W2, rb * N2);
        k_x16_repack(ND_TYPE_Q4_0, Wx2, K2, N2, tmp);
        const k_mat a = {ND_TYPE_Q4_0, W2, N2, Ya, K_LAYOUT_ROWS}, b = {ND_TYPE_Q4_0, Wx2, N2, Yb, K_LAYOUT_X16};
        T_EQ_INT(k_matmul_n(&env, &a, 1, K2, X, 1, &err), 0);
        T_EQ_INT(k_matmul_n(&env, &b, 1, K2, X, 1, &err), 0);
        T_CHECK(memcmp(Ya, Yb, sizeof(float) * (size_t)N2) == 0);
        free(W2), free(Wx2), free(Ya), free(Yb);
    }
    /* rows so long that a decode work item is capped below its share (a group of 16
     * Q8_0 rows at K = 16384 is 272 KB): whole groups still, and every row computed */
    {
        const int64_t K3 = 16384, N3 = 512;
        const size_t rb = q_row_size(ND_TYPE_Q8_0, K3);
        uint8_t *W3 = aligned_alloc(64, rb * N3), *Wx3 = aligned_alloc(64, rb * N3), *tmp3 = malloc(K_X16_TMP_ROWS * rb);
        float *X3 = malloc(sizeof(float) * K3), *Ya = malloc(sizeof(float) * N3), *Yb = malloc(sizeof(float) * N3);
        for (int64_t r = 0; r < N3; r++) gen_weights(ND_TYPE_Q8_0, W3 + (size_t)r * rb, K3, (int)(r % M_COUNT), &sd);
        for (int64_t i = 0; i < K3; i++) X3[i] = t_rand_f(&sd);
        memcpy(Wx3, W3, rb * N3);
        k_x16_repack(ND_TYPE_Q8_0, Wx3, K3, N3, tmp3);
        for (int64_t i = 0; i < N3; i++) Ya[i] = Yb[i] = NAN;
        const k_mat a = {ND_TYPE_Q8_0, W3, N3, Ya, K_LAYOUT_ROWS}, b = {ND_TYPE_Q8_0, Wx3, N3, Yb, K_LAYOUT_X16};
        T_EQ_INT(k_matmul_n(&env, &a, 1, K3, X3, 1, &err), 0);
        T_EQ_INT(k_matmul_n(&env, &b, 1, K3, X3, 1, &err), 0);
        int bad = 0;
        for (int64_t r = 0; r < N3; r++) bad += isnan(Ya[r]) || memcmp(&Ya[r], &Yb[r], sizeof(float)) != 0;
        T_CHECKF(bad == 0, "Q8_0 K %lld: %d rows missing or different", (long long)K3, bad);
        free(W3), free(Wx3), free(tmp3), free(X3), free(Ya), free(Yb);
    }
    /* a table without the kernels refuses the layout instead of misreading it */
    k_kernels ks;
    k_select(&ks, K_ISA_SCALAR);
    const k_env es = {.kern = &ks, .pool = NULL, .scratch = &sc};
    const k_mat b = {ND_TYPE_Q4_0, Wx, N, Y1, K_LAYOUT_X16};
    T_EQ_INT(k_matmul_n(&es, &b, 1, 64, X, 1, &err), ND_EUNSUPPORTED);
    k_scratch_free(&sc);
    nd_pool_free(pool);
    free(W), free(Wx), free(tmp), free(row), free(grp), free(X), free(Y0), free(Y1);
}

/* ------------------------------------------------- element-wise, attention */

/* The ISA tables whose k_vec_ops are not the scalar reference (this CPU's). */
static int vec_tables(k_kernels *out, int max) {
    const k_isa isas[] = {K_ISA_AVX2, K_ISA_AVX512, K_ISA_NEON, K_ISA_NEON_DOTPROD};
    int n = 0;
    for (size_t j = 0; j < sizeof isas / sizeof isas[0] && n < max; j++) {
        if (!cpu_has(isas[j])) continue;
        k_select(&out[n], isas[j]);
        if (strcmp(out[n].vec.name, "scalar") != 0) n++;
    }
    return n;
}

/* silu_mul against the reference: random inputs over the range where exp matters, the
 * overflow / underflow edges, signed zeros and ragged lengths (vector tails). */
static void test_vec_silu(void) {
    k_kernels tabs[4];
    const int nt = vec_tables(tabs, 4);
    if (!nt) T_SKIP("no ISA element-wise kernels on this CPU");
    static const float edges[] = {0.0f, -0.0f, 1e-30f, -1e-30f, 1.0f, -1.0f, 20.0f, -20.0f, 87.0f,
                                  -87.0f, 87.4f, -87.4f, 88.5f, -88.5f, 88.72f, -88.72f, 88.8f, -88.8f,
                                  100.0f, -100.0f, 1e4f, -1e4f, 3e38f, -3e38f};
    const int64_t lens[] = {1, 7, 8, 15, 16, 17, 31, 100, 4864};
    const int64_t nmax = 4864;
    float *g = malloc(sizeof(float) * nmax), *u = malloc(sizeof(float) * nmax);
    float *r = malloc(sizeof(float) * nmax), *y = malloc(sizeof(float) * nmax);
    unsigned long long sd = 11;
    for (int k = 0; k < nt; k++) {
        double worst = 0;
        for (size_t li = 0; li < sizeof lens / sizeof lens[0]; li++) {
            const int64_t n = lens[li];
            for (int64_t i = 0; i < n; i++) {
                g[i] = (i % 3 == 0) ? edges[(size_t)(i / 3 + li) % (sizeof edges / sizeof edges[0])]
                                    : 20.0f * t_rand_f(&sd);
                u[i] = 2.0f * t_rand_f(&sd);
            }
            k_ref_silu_mul(g, u, r, n);
            tabs[k].vec.silu_mul(g, u, y, n);
            for (int64_t i = 0; i < n; i++) {
                const double d = y[i] == r[i] ? 0 : fabs((double)y[i] - r[i]), tol = 2e-6 * fabs((double)r[i]) + 1e-30;
                if (d > worst) worst = d;
                T_CHECKF(d <= tol, "%s silu_mul n=%lld i=%lld: g %g u %g -> %.9g, reference %.9g",
                         tabs[k].vec.name, (long long)n, (long long)i, g[i], u[i], y[i], r[i]);
            }
            /* in place (out == u) gives the same */
            memcpy(r, u, sizeof(float) * (size_t)n);
            tabs[k].vec.silu_mul(g, r, r, n);
            T_CHECK(memcmp(r, y, sizeof(float) * (size_t)n) == 0);
        }
        printf("  %-7s silu_mul: worst |diff| %.2e\n", tabs[k].vec.name, worst);
    }
    free(g), free(u), free(r), free(y);
}

/* attend against the reference on both cache types: head sizes with and without vector
 * tails, padded row strides (K and V rows of several heads), 1..300 positions (with and
 * without a partial 16-position block), 1..11 query heads sharing the KV head (more than
 * one pass of the AVX-512 kernel's 8), flat and peaked softmaxes. Tolerances: F32, float sums; F16, also the
 * probabilities' rounding to f16, where a float-vs-double difference can flip one ulp. */
static void test_vec_attend(void) {
    k_kernels tabs[4];
    const int nt = vec_tables(tabs, 4);
    if (!nt) T_SKIP("no ISA attention kernels on this CPU");
    const int64_t hds[][2] = {{64, 64}, {128, 128}, {80, 80}, {96, 64}, {40, 40}, {17, 23}};
    const int64_t ns[] = {1, 2, 3, 15, 16, 17, 64, 300};
    const float scales[] = {0.125f, 4.0f};
    const int64_t ngs[] = {1, 2, 7, 8, 11}; /* query heads sharing the KV head */
    const int64_t nmax = 300, hmax = 128, pad = 9, gmax = 11;
    float *q = malloc(sizeof(float) * hmax * gmax), *s0 = malloc(sizeof(float) * nmax * gmax),
          *s1 = malloc(sizeof(float) * nmax * gmax);
    float *o0 = malloc(sizeof(float) * hmax * gmax), *o1 = malloc(sizeof(float) * hmax * gmax);
    uint8_t *K = malloc((size_t)nmax * (hmax + pad) * 4), *V = malloc((size_t)nmax * (hmax + pad) * 4);
    unsigned long long sd = 12;
    for (int k = 0; k < nt; k++) {
        const k_vec_ops *v = &tabs[k].vec;
        for (int f16 = 0; f16 < 2; f16++) {
            const size_t elt = f16 ? 2 : 4;
            const k_attend_fn ref = f16 ? k_ref_attend_f16 : k_ref_attend_f32, fn = f16 ? v->attend_f16 : v->attend_f32;
            double worst = 0;
            for (size_t hi = 0; hi < sizeof hds / sizeof hds[0]; hi++)
                for (size_t ni = 0; ni < sizeof ns / sizeof ns[0]; ni++)
                    for (size_t si = 0; si < 2; si++) {
                        const int64_t hdk = hds[hi][0], hdv = hds[hi][1], n = ns[ni];
                        const int64_t ng = ngs[(hi + ni + si) % (sizeof ngs / sizeof ngs[0])];
                        const size_t ks = (size_t)(hdk + pad) * elt, vs = (size_t)(hdv + pad) * elt;
                        for (int64_t i = 0; i < hdk * ng; i++) q[i] = t_rand_f(&sd);
                        for (int64_t i = 0; i < n * (hdk + pad); i++) {
                            const float x = t_rand_f(&sd);
                            if (f16) ((uint16_t *)K)[i] = nd_fp32_to_fp16(x);
                            else ((float *)K)[i] = x;
                        }
                        double vmax = 0;
                        for (int64_t i = 0; i < n * (hdv + pad); i++) {
                            const float x = 3.0f * t_rand_f(&sd);
                            if (f16) ((uint16_t *)V)[i] = nd_fp32_to_fp16(x);
                            else ((float *)V)[i] = x;
                            vmax = fabs(x) > vmax ? fabs(x) : vmax;
                        }
                        ref(q, K, ks, V, vs, n, hdk, hdv, ng, scales[si], s0, o0);
                        fn(q, K, ks, V, vs, n, hdk, hdv, ng, scales[si], s1, o1);
                        const double tol = (f16 ? 1e-3 : 2e-5) * vmax;
                        for (int64_t d = 0; d < hdv * ng; d++) {
                            const double df = fabs((double)o1[d] - o0[d]);
                            if (df / vmax > worst) worst = df / vmax;
                            T_CHECKF(df <= tol,
                                     "%s attend %s hd %lld/%lld n %lld heads %lld scale %g: out[%lld] %.7g, reference %.7g",
                                     v->name, f16 ? "f16" : "f32", (long long)hdk, (long long)hdv, (long long)n,
                                     (long long)ng, scales[si], (long long)d, o1[d], o0[d]);
                        }
                        for (int64_t i = 0; i < n * ng; i++) /* the probabilities left in s */
                            T_CHECKF(fabs((double)s1[i] - s0[i]) <= 1e-3 * s0[i] + 1e-6,
                                     "%s attend %s n %lld: p[%lld] %.7g, reference %.7g", v->name,
                                     f16 ? "f16" : "f32", (long long)n, (long long)i, s1[i], s0[i]);
                        if (n == 1) /* one position: its V row, exactly, for every head */
                            for (int64_t d = 0; d < hdv * ng; d++)
                                T_CHECK(o1[d] == (f16 ? nd_fp16_to_fp32(((uint16_t *)V)[d % hdv]) : ((float *)V)[d % hdv]));
                    }
            printf("  %-7s attend %s: worst |diff| / max|V| %.2e\n", v->name, f16 ? "f16" : "f32", worst);
        }
    }
    free(q), free(s0), free(s1), free(o0), free(o1), free(K), free(V);
}

int main(void) {
    T_RUN(test_scalar_table);
    T_RUN(test_act_rules);
#if T_X86
    T_RUN(test_quantizers_avx2);
    T_RUN(test_quantizers_avx512);
#endif
    T_RUN(test_quantizers_tables);
    T_RUN(test_table_avx2);
    T_RUN(test_table_avx512);
#if T_X86
    T_RUN(test_direct_avx2);
    T_RUN(test_direct_avx512);
#endif
#if defined(__aarch64__)
    T_RUN(test_quantizers_neon);
    T_RUN(test_table_neon);
    T_RUN(test_table_neon_dotprod);
    T_RUN(test_direct_neon);
    T_RUN(test_neon_bit_exact);
#endif
    T_RUN(test_dot4);
    T_RUN(test_dot4n);
    T_RUN(test_matmul_best);
    T_RUN(test_x16);
    T_RUN(test_vec_silu);
    T_RUN(test_vec_attend);
    return t_done();
}
