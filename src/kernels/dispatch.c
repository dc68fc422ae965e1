/* Kernel selection (scalar table from quant/, ISA overrides by cpuid) and the threaded,
 * tiled matmul every weight product of the model goes through. */
#include <stdatomic.h>
#include <string.h>

#include "kernels/gemm.h" /* k_gemm_matmul, k_install_gemm_avx512 (gemm helper) */
#include "kernels/kernels.h"
#include "quant/quant.h"
#if defined(__x86_64__) || defined(__i386__)
#include "kernels/x86/x86.h" /* k_install_avx2 / k_install_avx512 (kernels helper) */
#endif
#if defined(__aarch64__)
#include <sys/auxv.h>

#include "kernels/arm/arm.h" /* k_install_neon / k_install_neon_dotprod */
#endif

/* ------------------------------------------------------- scalar entries */

/* quant/ exposes one generic q_vec_dot(wtype, .., atype, ..); the table wants one function
 * per weight type, so each supported type gets a two-line wrapper. */
#define K_SCALAR(T, A)                                                                   \
    static float dot_##T(const void *w, const void *a, int64_t n) {                      \
        return q_vec_dot(ND_TYPE_##T, w, ND_TYPE_##A, a, n);                             \
    }                                                                                    \
    static int quant_##T(const float *x, void *dst, int64_t n) {                        \
        return q_quantize_act(ND_TYPE_##A, x, dst, n);                                   \
    }
K_SCALAR(F32, F32)
K_SCALAR(F16, F16)
K_SCALAR(BF16, BF16)
K_SCALAR(Q4_0, Q8_0)
K_SCALAR(Q4_1, Q8_1)
K_SCALAR(Q5_0, Q8_0)
K_SCALAR(Q5_1, Q8_1)
K_SCALAR(Q8_0, Q8_0)
K_SCALAR(Q2_K, Q8_K)
K_SCALAR(Q3_K, Q8_K)
K_SCALAR(Q4_K, Q8_K)
K_SCALAR(Q5_K, Q8_K)
K_SCALAR(Q6_K, Q8_K)
#undef K_SCALAR

static void set_scalar(k_kernels *k) {
#define E(T) k->ops[ND_TYPE_##T] = (k_ops){.name = "scalar", .atype = q_vec_dot_type(ND_TYPE_##T), .vec_dot = dot_##T, .quantize = quant_##T}
    E(F32); E(F16); E(BF16); E(Q4_0); E(Q4_1); E(Q5_0); E(Q5_1); E(Q8_0);
    E(Q2_K); E(Q3_K); E(Q4_K); E(Q5_K); E(Q6_K);
#undef E
    k->vec = (k_vec_ops){"scalar", k_ref_silu_mul, k_ref_attend_f32, k_ref_attend_f16};
}

const char *k_isa_name(k_isa isa) {
    switch (isa) {
    case K_ISA_SCALAR: return "scalar";
    case K_ISA_AVX2: return "avx2";
    case K_ISA_AVX512: return "avx512";
    case K_ISA_NEON: return "neon";
    case K_ISA_NEON_DOTPROD: return "neon-dotprod";
    default: return "best";
    }
}

#if defined(__x86_64__) || defined(__i386__)
#include <cpuid.h>

/* CPU features the kernels need, from cpuid, and whether the OS saves the wider register
 * state (xgetbv): a CPU may have AVX-512 that the kernel does not enable. */
typedef struct cpu_feat {
    bool avx2, fma, f16c, bmi2, avx512, vnni, bf16, bitalg;
} cpu_feat;

static cpu_feat cpu_features(void) {
    cpu_feat f = {0};
    unsigned a, b, c, d;
    if (!__get_cpuid(1, &a, &b, &c, &d)) return f;
    bool osxsave = c & (1u << 27), fma = c & (1u << 12), f16c = c & (1u << 29);
    if (!osxsave) return f;
    unsigned lo, hi;
    __asm__ volatile("xgetbv" : "=a"(lo), "=d"(hi) : "c"(0));
    bool os_avx = (lo & 0x6) == 0x6, os_avx512 = (lo & 0xE6) == 0xE6;
    if (!__get_cpuid_count(7, 0, &a, &b, &c, &d)) return f;
    f.avx2 = os_avx && (b & (1u << 5));
    f.bmi2 = b & (1u << 8);
    f.fma = os_avx && fma;
    f.f16c = os_avx && f16c;
    f.avx512 = os_avx512 && (b & (1u << 16)) && (b & (1u << 17)) && (b & (1u << 30)) && (b & (1u << 31));
    f.vnni = f.avx512 && (c & (1u << 11));
    f.bitalg = f.avx512 && (c & (1u << 12));
    if (f.avx512 && __get_cpuid_count(7, 1, &a, &b, &c, &d)) f.bf16 = a & (1u << 5);
    return f;
}
#endif

static k_isa cpu_isa(void) {
#if defined(__x86_64__) || defined(__i386__)
    cpu_feat f = cpu_features();
    if (!f.avx2 || !f.fma || !f.f16c || !f.bmi2) return K_ISA_SCALAR;
    return f.avx512 ? K_ISA_AVX512 : K_ISA_AVX2;
#else
    return K_ISA_SCALAR;
#endif
}

#if defined(__aarch64__)
/* aarch64: AdvSIMD is part of the Linux ABI but checked anyway; sdot (ARMv8.2 dotprod) is
 * optional, told by the kernel through the auxiliary vector. */
#ifndef HWCAP_ASIMD
#define HWCAP_ASIMD (1UL << 1)
#endif
#ifndef HWCAP_ASIMDDP
#define HWCAP_ASIMDDP (1UL << 20)
#endif
static k_isa arm_isa(k_isa want) {
    const unsigned long hw = getauxval(AT_HWCAP);
    const k_isa have = !(hw & HWCAP_ASIMD) ? K_ISA_SCALAR
                       : (hw & HWCAP_ASIMDDP) ? K_ISA_NEON_DOTPROD
                                              : K_ISA_NEON;
    if (want < K_ISA_NEON) return K_ISA_SCALAR; /* scalar asked for, or an x86 ISA */
    return want < have ? want : have;
}
#endif

void k_select(k_kernels *k, k_isa want) {
    memset(k, 0, sizeof *k);
    set_scalar(k);
    k_isa have = cpu_isa();
    k->isa = want < have ? want : have;
    /* ISA entries register here, lowest first so higher ones override (kernels helper). */
#if defined(__x86_64__) || defined(__i386__)
    if (k->isa >= K_ISA_AVX2) k_install_avx2(k);
    if (k->isa >= K_ISA_AVX512) {
        cpu_feat f = cpu_features();
        if (f.vnni) {
            k_install_avx512(k);
            k_install_gemm_avx512(k);
            if (f.bitalg) k_install_avx512_bitalg(k);
            if (f.bf16) {
                k_install_avx512_bf16(k);
                k_install_gemm_avx512_bf16(k);
            }
        } else {
            k->isa = K_ISA_AVX2; /* our AVX-512 kernels need VNNI */
        }
    }
#endif
#if defined(__aarch64__)
    k->isa = arm_isa(want);
    if (k->isa >= K_ISA_NEON) k_install_neon(k);
    if (k->isa >= K_ISA_NEON_DOTPROD) k_install_neon_dotprod(k);
#endif
}

int k_check(const k_kernels *k, uint32_t wtype, int64_t K, nd_err *err) {
    const nd_type_traits *tr = nd_type_info(wtype);
    if (!tr || wtype >= ND_TYPE_COUNT || !k->ops[wtype].vec_dot)
        return nd_seterr(err, ND_EUNSUPPORTED, "no matmul kernel for weight type %s (%u)",
                         tr && tr->name ? tr->name : "unknown", wtype);
    if (K <= 0 || K % tr->blck != 0 || q_row_size(k->ops[wtype].atype, K) == 0)
        return nd_seterr(err, ND_EFORMAT,
                         "row length %lld is not a multiple of the %s block (%u)", (long long)K,
                         tr->name, tr->blck);
    return 0;
}

void k_scratch_free(k_scratch *s) {
    nd_free(s->data);
    s->data = NULL;
    s->cap = 0;
}

static int scratch_reserve(k_scratch *s, size_t n) {
    if (n <= s->cap) return 0;
    void *d = nd_malloc(n);
    if (!d) return ND_ENOMEM;
    nd_free(s->data);
    s->data = d;
    s->cap = n;
    return 0;
}

/* --------------------------------------------------------------- matmul */

/* The read-only description of one product, copied by each worker into its own frame:
 * read through the caller's stack it shared cache lines with the caller's spilled locals,
 * and every write there stalled the other core's next read. */
typedef struct mm_args {
    const k_ops *ops;
    const uint8_t *W;   /* N rows of w_row bytes */
    size_t w_row;
    const uint8_t *A;   /* M activation rows of a_row bytes */
    size_t a_row;
    const uint8_t *P;   /* what vec_dot4 / vec_dot4n read: A, or M prepared rows of p_row bytes */
    size_t p_row;
    const float *X;     /* for the quantize pass */
    int64_t K, N, M;
    float *Y;           /* [M][N] */
    int64_t unit;       /* output rows a work item is a whole multiple of (a kernel's row group) */
    int64_t item_max, item_min; /* units a work item takes: while its lane has plenty left, last */
    k_act_prep_fn prep; /* A -> P (NULL: P is A) */
    bool quant;         /* this part converts X into A (and P); false: shares an earlier part's */
    bool x16;           /* W in the X16 layout: ops->vec_dot16 on groups of 16 rows */
    int64_t x16_slice;  /* X16: the K-slice the matrix is stored by (k_x16_slice; K: whole groups) */
    size_t x16_sbytes, x16_lbytes; /* a group's bytes in a whole slice, in the last one */
    size_t x16_astep;   /* the prepared row's advance per slice */
} mm_args;

/* Rows are dealt in lanes, one per pool item, each a range of work units [next, end) in
 * one atomic word on its own cache line. A thread claims items from the front of its own
 * lane (a line its core owns); when the lane is empty it steals the back half of the
 * fullest other lane and makes that its lane, so uneven cores balance with a few steals.
 * One shared counter made every claim a cross-core line transfer (~170 ns; perf: ~5% of
 * decode and ~13% of a 4-token batch went to it); claiming a thief's items one by one
 * from a victim's lane made the last items of a product ping-pong that line (~240 ns a
 * transfer on this VM, more than a 16-row group of a small matrix takes). */
typedef struct mm_lane {
    _Alignas(64) _Atomic uint64_t range; /* next | end << 32, in units */
} mm_lane;

static inline uint64_t lane_pack(int64_t next, int64_t end) { return (uint64_t)next | (uint64_t)end << 32; }

#define MM_LANES 64 /* pool items of a product: each owns a lane (more threads than this: idle) */

/* Up to K_MATMUL_PARTS products share one job (k_matmul_n): part p owns the global work
 * units (a.unit rows each) [first[p], first[p + 1]). */
typedef struct mm_job {
    mm_args a[K_MATMUL_PARTS];
    int n_parts;
    int64_t first[K_MATMUL_PARTS + 1];
    _Atomic int status; /* first quantize error */
    int n_lanes;
    void (*before)(void *user, int ith); /* k_env.before, for decode */
    void *before_user;
    mm_lane lane[MM_LANES];
} mm_job;

/* Decode work items hold at most this many weight bytes: the last item of a product is
 * what one thread finishes alone, and an eighth of the 151936-row output matrix (4.8 MB)
 * left the other thread waiting 20-60 us (pool join wait, tg128 Q4_0 0.5B: 55 -> 31 ms
 * a run; 64 KB split ffn_down's 4-group K-slice walk and lost 20% there). */
#define MM_CHUNK_BYTES ((int64_t)256 << 10)
#define MM_TOKEN_BLOCK 16 /* tokens sharing one weight row while it is hot in L1 */

/* Activation rows: every part that owns its buffers (a.quant) converts the M rows of X. */
static void mm_quantize_worker(void *arg, int ith, int nth) {
    mm_job *j = arg;
    int64_t i = 0;
    for (int p = 0; p < j->n_parts; p++) {
        const mm_args *a = &j->a[p];
        if (!a->quant) continue;
        for (int64_t m = 0; m < a->M; m++, i++) {
            if (i % nth != ith) continue;
            int rc = a->ops->quantize(a->X + m * a->K, (uint8_t *)a->A + m * a->a_row, a->K);
            if (rc) atomic_store(&j->status, rc);
            else if (a->prep) a->prep(a->A + m * a->a_row, a->K, (uint8_t *)a->P + m * a->p_row);
        }
    }
}

/* X16 groups [r0 / 16, r1 / 16). A matrix stored by K-slices (runs of K_X16_SUPER groups,
 * slice-major) is walked run by run, slice by slice: the run's groups in one stream, each
 * group's sums carried between slices in its state; each token in turn when M > 1 (a
 * short batch: the run, at most 4 x 16 rows, stays in L2 for the next token). */
static void mm_rows_x16(const mm_args *j, int64_t r0, int64_t r1) {
    const k_vec_dot16_fn dot16 = j->ops->vec_dot16;
    if (j->x16_slice >= j->K) { /* whole groups: group by group, token by token */
        for (int64_t r = r0; r < r1; r += 16)
            for (int64_t t = 0; t < j->M; t++)
                dot16(j->W + r * j->w_row, j->P + t * j->p_row, j->K, j->Y + t * j->N + r, NULL,
                      K_X16_BEGIN | K_X16_END);
        return;
    }
    const int64_t S = j->x16_slice, groups = j->N / 16;
    float state[K_X16_SUPER][K_X16_STATE];
    for (int64_t g = r0 / 16; g < r1 / 16;) {
        const int64_t run = g / K_X16_SUPER * K_X16_SUPER; /* first group of g's run */
        const int64_t ng = groups - run < K_X16_SUPER ? groups - run : K_X16_SUPER;
        const int64_t i0 = g - run, i1 = (r1 / 16 - run < ng ? r1 / 16 - run : ng);
        for (int64_t t = 0; t < j->M; t++) {
            const uint8_t *w = j->W + run * 16 * j->w_row, *a = j->P + t * j->p_row;
            float *y = j->Y + t * j->N + run * 16;
            for (int64_t k0 = 0; k0 < j->K; k0 += S, w += ng * j->x16_sbytes, a += j->x16_astep) {
                const int64_t n = j->K - k0 < S ? j->K - k0 : S;
                const unsigned part = (k0 == 0 ? K_X16_BEGIN : 0) | (k0 + n == j->K ? K_X16_END : 0);
                const size_t gb = k0 + S < j->K ? j->x16_sbytes : j->x16_lbytes;
                for (int64_t i = i0; i < i1; i++) dot16(w + i * gb, a, n, y + 16 * i, state[i], part);
            }
        }
        g = run + i1;
    }
}

/* output rows [r0, r1) for every token */
static void mm_rows(const mm_args *j, int64_t r0, int64_t r1) {
    const k_vec_dot_fn dot = j->ops->vec_dot;
    if (j->x16) {
        mm_rows_x16(j, r0, r1);
        return;
    }
    if (j->M == 1) {
        int64_t r = r0;
        if (j->ops->vec_dot4) /* decode: activation loads shared by 4 rows */
            for (; r + 4 <= r1; r += 4)
                j->ops->vec_dot4(j->W + r * j->w_row, j->w_row, j->P, j->K, j->Y + r);
        for (; r < r1; r++) j->Y[r] = dot(j->W + r * j->w_row, j->A, j->K);
        return;
    }
    for (int64_t t0 = 0; t0 < j->M; t0 += MM_TOKEN_BLOCK) {
        int64_t t1 = t0 + MM_TOKEN_BLOCK < j->M ? t0 + MM_TOKEN_BLOCK : j->M;
        int64_t r = r0;
        /* short batches (speculative verification, several server slots): the 4-row
         * decode kernel — the same bits as M == 1 — either over up to K_DOT4N_MAX tokens
         * per call (the rows unpacked once) or per token while the 4 rows stay in L1 */
        if (j->ops->vec_dot4n)
            for (; r + 4 <= r1; r += 4)
                for (int64_t t = t0; t < t1; t += K_DOT4N_MAX) {
                    const int nt = (int)(t1 - t < K_DOT4N_MAX ? t1 - t : K_DOT4N_MAX);
                    j->ops->vec_dot4n(j->W + r * j->w_row, j->w_row, j->P + t * j->p_row, j->p_row,
                                      nt, j->K, j->Y + t * j->N + r, (size_t)j->N);
                }
        else if (j->ops->vec_dot4)
            for (; r + 4 <= r1; r += 4)
                for (int64_t t = t0; t < t1; t++)
                    j->ops->vec_dot4(j->W + r * j->w_row, j->w_row, j->P + t * j->p_row, j->K,
                                     j->Y + t * j->N + r);
        for (; r < r1; r++) {
            const uint8_t *w = j->W + r * j->w_row;
            for (int64_t t = t0; t < t1; t++)
                j->Y[t * j->N + r] = dot(w, j->A + t * j->a_row, j->K);
        }
    }
}

/* Work items shrink as their lane runs out (guided self-scheduling): an item takes a
 * quarter of what is left in the lane, within [item_min, item_max] units, so the item a
 * thread is on when the other runs dry is small. With fixed items of an eighth of a
 * thread's rows, the two threads' ends were 1-5 us apart per decode product (Q4_0 0.5B:
 * ~1 us for Q/K/V, 3-4 for gate/up, 5 for ffn_down). */
#define MM_GUIDE 4

/* Claims an item from the front of lane l: true with [*u0, *u1) and its part *pp. */
static bool lane_claim(mm_lane *l, const mm_args *a, const int64_t *first, int64_t *u0, int64_t *u1, int *pp) {
    uint64_t r = atomic_load_explicit(&l->range, memory_order_relaxed);
    for (;;) {
        const int64_t next = (int64_t)(uint32_t)r, end = (int64_t)(r >> 32);
        if (next >= end) return false;
        int p = 0;
        while (next >= first[p + 1]) p++;
        int64_t size = (end - next) / MM_GUIDE;
        size = size > a[p].item_max ? a[p].item_max : size < a[p].item_min ? a[p].item_min : size;
        int64_t e = next + size < end ? next + size : end;
        if (e > first[p + 1]) e = first[p + 1];
        if (atomic_compare_exchange_weak_explicit(&l->range, &r, lane_pack(e, end), memory_order_relaxed,
                                                  memory_order_relaxed)) {
            *u0 = next, *u1 = e, *pp = p;
            return true;
        }
    }
}

/* Moves the back half of the fullest other lane into (empty) lane `own`: false if every
 * lane is empty. */
static bool lane_steal(mm_job *j, int own) {
    for (;;) {
        int best = -1;
        int64_t most = 0;
        uint64_t r = 0;
        for (int k = 1; k < j->n_lanes; k++) {
            const int v = (own + k) % j->n_lanes;
            const uint64_t rv = atomic_load_explicit(&j->lane[v].range, memory_order_relaxed);
            const int64_t left = (int64_t)(rv >> 32) - (int64_t)(uint32_t)rv;
            if (left > most) best = v, most = left, r = rv;
        }
        if (best < 0) return false;
        const int64_t next = (int64_t)(uint32_t)r, end = (int64_t)(r >> 32), cut = end - (most + 1) / 2;
        if (!atomic_compare_exchange_strong_explicit(&j->lane[best].range, &r, lane_pack(next, cut),
                                                     memory_order_relaxed, memory_order_relaxed))
            continue; /* it moved: look again */
        atomic_store_explicit(&j->lane[own].range, lane_pack(cut, end), memory_order_relaxed);
        return true;
    }
}

static void mm_dot_worker(void *arg, int ith, int nth) {
    mm_job *j = arg;
    (void)nth;
    const int np = j->n_parts;
    mm_args a[K_MATMUL_PARTS];
    int64_t first[K_MATMUL_PARTS + 1];
    memcpy(a, j->a, (size_t)np * sizeof a[0]);
    memcpy(first, j->first, (size_t)(np + 1) * sizeof first[0]);
    mm_lane *own = &j->lane[ith];
    if (j->before) j->before(j->before_user, ith);
    for (;;) {
        int64_t u0, u1;
        int p;
        while (lane_claim(own, a, first, &u0, &u1, &p)) {
            const int64_t r0 = (u0 - first[p]) * a[p].unit, r1 = (u1 - first[p]) * a[p].unit;
            mm_rows(&a[p], r0, r1 < a[p].N ? r1 : a[p].N);
        }
        if (!lane_steal(j, ith)) return;
    }
}

/* The K-slice an X16 matrix is stored by, and the strides of its walk. */
static void x16_slicing(mm_args *a, uint32_t wtype) {
    a->x16_slice = k_x16_slice(wtype, a->K);
    a->x16_sbytes = 16 * q_row_size(wtype, a->x16_slice);
    a->x16_lbytes = 16 * q_row_size(wtype, a->K - (a->K - 1) / a->x16_slice * a->x16_slice);
    a->x16_astep = a->prep ? a->prep(NULL, a->x16_slice, NULL) : q_row_size(a->ops->atype, a->x16_slice);
}

/* The per-row path for n products sharing X: activations converted once per distinct
 * activation format, then one pool run over all parts' rows. */
static int mm_run(const k_env *env, const k_mat *mats, int n, int64_t K, const float *X, int64_t M,
                  nd_err *err) {
    const int nth = nd_pool_size(env->pool);
    mm_job j = {.n_parts = n};
    size_t bytes = 0; /* scratch: quantized rows, then prepared rows, per owning part */
    size_t off_a[K_MATMUL_PARTS], off_p[K_MATMUL_PARTS];
    for (int p = 0; p < n; p++) {
        const k_ops *ops = &env->kern->ops[mats[p].wtype];
        mm_args *a = &j.a[p];
        *a = (mm_args){.ops = ops, .W = mats[p].W, .w_row = q_row_size(mats[p].wtype, K), .X = X,
                       .K = K, .N = mats[p].N, .M = M, .Y = mats[p].Y, .x16 = mats[p].layout == K_LAYOUT_X16};
        a->a_row = q_row_size(ops->atype, K);
        /* the 4-row (or X16) kernels' own activation layout, made with the quantized rows */
        a->prep = a->x16 ? ops->act_prep16
                  : ops->act_prep && ops->vec_dot4 && a->N >= 4 && ops->atype != ND_TYPE_F32 ? ops->act_prep
                                                                                         : NULL;
        const bool prep = a->prep != NULL;
        a->p_row = prep ? a->prep(NULL, K, NULL) : a->a_row;
        if (a->x16) x16_slicing(a, mats[p].wtype);
        if (ops->atype == ND_TYPE_F32) continue; /* X is already in the activation format */
        int q = 0; /* an earlier part converting X the same way */
        for (; q < p; q++) {
            const mm_args *b = &j.a[q];
            if (b->ops->atype == ops->atype && b->ops->quantize == ops->quantize && b->prep == a->prep) break;
        }
        if (q < p) {
            off_a[p] = off_a[q], off_p[p] = off_p[q];
            continue;
        }
        a->quant = true;
        off_a[p] = bytes;
        bytes += ((size_t)M * a->a_row + 63) & ~(size_t)63;
        off_p[p] = prep ? bytes : off_a[p];
        if (prep) bytes += ((size_t)M * a->p_row + 63) & ~(size_t)63;
    }
    if (bytes && scratch_reserve(env->scratch, bytes))
        return nd_seterr(err, ND_ENOMEM, "out of memory for %lld activation rows", (long long)M);
    bool any_quant = false;
    for (int p = 0; p < n; p++) {
        mm_args *a = &j.a[p];
        if (a->ops->atype == ND_TYPE_F32) {
            a->A = a->P = (const uint8_t *)X;
            continue;
        }
        a->A = (const uint8_t *)env->scratch->data + off_a[p];
        a->P = (const uint8_t *)env->scratch->data + off_p[p];
        any_quant |= a->quant;
    }
    if (any_quant) {
        if (M >= 4 && nth > 1)
            nd_pool_run(env->pool, mm_quantize_worker, &j);
        else
            mm_quantize_worker(&j, 0, 1);
        if (atomic_load(&j.status)) {
            const k_ops *ops = j.a[0].ops;
            return nd_seterr(err, atomic_load(&j.status), "cannot quantize activations to %s",
                             nd_type_info(ops->atype)->name);
        }
    }
    /* Work items: at most about 8 per thread and part (balances uneven cores); batches
     * longer than one token block cap an item at a block of rows whose weights stay in L2
     * while all token blocks pass over them (shorter ones keep each 4-row group in L1 for
     * all tokens). Decode items shrink at the end of a lane down to ~4 KB of weights, or
     * one X16 group, or one run of groups stored by K-slices (an item always whole runs). */
    int64_t work = 0;
    j.first[0] = 0;
    for (int p = 0; p < n; p++) {
        mm_args *a = &j.a[p];
        const int64_t items = (int64_t)nth * 8;
        int64_t chunk = (a->N + items - 1) / items;
        if (M > MM_TOKEN_BLOCK && chunk > 16) chunk = 16;
        /* whole groups; whole runs of groups stored by K-slices (the last may be short) */
        a->unit = !a->x16 ? (a->ops->vec_dot4 ? 4 : 1) : a->x16_slice < K ? 16 * K_X16_SUPER : 16;
        a->item_max = (chunk + a->unit - 1) / a->unit;
        const int64_t unit_bytes = a->unit * (int64_t)a->w_row;
        if (M == 1 && a->item_max * unit_bytes > MM_CHUNK_BYTES)
            a->item_max = MM_CHUNK_BYTES / unit_bytes > 1 ? MM_CHUNK_BYTES / unit_bytes : 1;
        a->item_min = a->item_max;
        if (M == 1) {
            const int64_t small = 4096 / unit_bytes;
            a->item_min = small < 1 ? 1 : small > a->item_max ? a->item_max : small;
        }
        j.first[p + 1] = j.first[p] + (a->N + a->unit - 1) / a->unit;
        work += a->N * M;
    }
    if (nth == 1 || work < 64) {
        for (int p = 0; p < n; p++)
            if (j.a[p].N > 0) mm_rows(&j.a[p], 0, j.a[p].N);
        return 0;
    }
    /* lanes: nth contiguous ranges of the units of all parts */
    j.n_lanes = nth < MM_LANES ? nth : MM_LANES;
    const int64_t n_units = j.first[n];
    if (n_units > INT32_MAX) return nd_seterr(err, ND_EINVAL, "matmul: %lld row groups", (long long)n_units);
    for (int l = 0; l < j.n_lanes; l++)
        atomic_init(&j.lane[l].range, lane_pack(n_units * l / j.n_lanes, n_units * (l + 1) / j.n_lanes));
    if (M == 1) j.before = env->before, j.before_user = env->before_user;
    nd_pool_run_items(env->pool, mm_dot_worker, &j, j.n_lanes);
    return 0;
}

int k_matmul(const k_env *env, uint32_t wtype, const void *W, int64_t K, int64_t N,
             const float *X, int64_t M, float *Y, nd_err *err) {
    const k_mat m = {wtype, W, N, Y, K_LAYOUT_ROWS};
    return k_matmul_n(env, &m, 1, K, X, M, err);
}

int k_matmul_n(const k_env *env, const k_mat *mats, int n, int64_t K, const float *X, int64_t M,
               nd_err *err) {
    if (n < 1 || n > K_MATMUL_PARTS)
        return nd_seterr(err, ND_EINVAL, "k_matmul_n: %d products (1..%d)", n, K_MATMUL_PARTS);
    for (int p = 0; p < n; p++) {
        int rc = k_check(env->kern, mats[p].wtype, K, err);
        if (rc) return rc;
        if (mats[p].layout == K_LAYOUT_X16 && !(k_x16_supported(env->kern, mats[p].wtype) &&
                                                 k_x16_fits(mats[p].wtype, K, mats[p].N, mats[p].W)))
            return nd_seterr(err, ND_EUNSUPPORTED, "%s weights in the X16 layout: no kernel for them on this "
                             "table, or a shape that does not fit it", nd_type_info(mats[p].wtype)->name);
    }
    if (M <= 0) return 0;
    /* Long prefills: blocked tiles, one product at a time (compute-bound: nothing to share).
     * Everything shorter than K_GEMM_MIN_TOKENS — decode, speculative verification (draft +
     * 1 tokens), a decode step over several server slots — runs the per-row dots, so a
     * token's logits do not depend on what else is in the batch: speculative greedy
     * decoding then reproduces plain decoding token for token (the tiles sum the same
     * exact integer block products in another float order). */
    if (M >= K_GEMM_MIN_TOKENS) {
        k_mat rest[K_MATMUL_PARTS]; /* the parts without tiles */
        int nr = 0;
        for (int p = 0; p < n; p++) {
            const k_mat *w = &mats[p];
            if (w->N <= 0 || !env->kern->gemm[w->wtype] || q_row_size(w->wtype, K) > K_GEMM_MAX_ROW) {
                rest[nr++] = *w;
                continue;
            }
            int rc = w->layout == K_LAYOUT_X16 ? k_gemm_matmul_x16(env, w->wtype, w->W, K, w->N, X, M, w->Y, err)
                                               : k_gemm_matmul(env, w->wtype, w->W, K, w->N, X, M, w->Y, err);
            if (rc) return rc;
        }
        return nr ? mm_run(env, rest, nr, K, X, M, err) : 0;
    }
    return mm_run(env, mats, n, K, X, M, err);
}
