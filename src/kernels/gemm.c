/* Threaded driver of the tile GEMM (kernels/gemm.h): quantize + pack the activation rows
 * once, then hand out (row group x token range) tiles to the pool. */
#include <stdatomic.h>

#include "kernels/gemm.h"
#include "quant/quant.h"

#define GEMM_ROUND(x) (((x) + (K_GEMM_ALIGN - 1)) & ~(size_t)(K_GEMM_ALIGN - 1))

typedef struct gm_job {
    const k_ops *ops;
    const k_gemm_ops *g;
    const uint8_t *W;   /* N rows of w_row bytes */
    size_t w_row;
    const float *X;     /* [M][K] */
    uint8_t *A;         /* atype rows: one per thread if packed, else M */
    size_t a_row;
    uint8_t *P;         /* M packed rows of p_row bytes (= A when act_pack is NULL) */
    size_t p_row;
    uint8_t *wtmp;      /* one w_size buffer per thread */
    size_t w_size;
    int64_t K, N, M;
    float *Y;           /* [M][N] */
    int64_t chunks;     /* token ranges per row group */
    int64_t m_chunk;    /* tokens per range */
    int64_t items;      /* row groups x chunks */
    _Atomic int64_t next;
    _Atomic int status; /* first quantize error */
    bool x16;           /* W in the X16 layout: tile_x16 */
    uint32_t wtype;
    uint8_t *gtmp;      /* X16 stored by K-slices: one whole group per thread (else NULL) */
    size_t g_size;
} gm_job;

static void gm_quantize_worker(void *arg, int ith, int nth) {
    gm_job *j = arg;
    for (int64_t m = ith; m < j->M; m += nth) {
        uint8_t *a = j->g->act_pack ? j->A + (size_t)ith * j->a_row : j->A + (size_t)m * j->a_row;
        int rc = j->ops->quantize(j->X + m * j->K, a, j->K);
        if (rc) atomic_store(&j->status, rc);
        else if (j->g->act_pack) j->g->act_pack(a, j->P + (size_t)m * j->p_row, j->K);
    }
}

/* M = 1: blocks of GM_GEMV_ROWS rows */
#define GM_GEMV_ROWS 64
static void gm_gemv_worker(void *arg, int ith, int nth) {
    gm_job *j = arg;
    (void)ith;
    (void)nth;
    for (;;) {
        int64_t n0 = atomic_fetch_add_explicit(&j->next, GM_GEMV_ROWS, memory_order_relaxed);
        if (n0 >= j->N) break;
        int64_t n = j->N - n0 < GM_GEMV_ROWS ? j->N - n0 : GM_GEMV_ROWS;
        j->g->gemv(j->W + (size_t)n0 * j->w_row, j->w_row, n, j->P, j->K, j->Y + n0);
    }
}

static void gm_tile_worker(void *arg, int ith, int nth) {
    gm_job *j = arg;
    (void)nth;
    const int rows = j->g->rows;
    void *wtmp = j->wtmp + (size_t)ith * j->w_size;
    for (;;) {
        int64_t i = atomic_fetch_add_explicit(&j->next, 1, memory_order_relaxed);
        if (i >= j->items) break;
        int64_t n0 = (i / j->chunks) * rows, m0 = (i % j->chunks) * j->m_chunk;
        int nr = (int)(j->N - n0 < rows ? j->N - n0 : rows);
        int64_t mm = j->M - m0 < j->m_chunk ? j->M - m0 : j->m_chunk;
        if (mm <= 0) continue;
        const uint8_t *w = j->W + (size_t)n0 * j->w_row;
        if (j->gtmp) { /* the group's slices into one whole group */
            w = j->gtmp + (size_t)ith * j->g_size;
            k_x16_group(j->wtype, j->W, j->K, j->N, n0 / 16, (void *)w);
        }
        (j->x16 ? j->g->tile_x16 : j->g->tile)(w, j->w_row, nr,
                                              j->P + (size_t)m0 * j->p_row, j->p_row, mm, j->K,
                                              j->Y + m0 * j->N + n0, j->N, wtmp);
    }
}

/* Scratch layout (64-aligned parts): [P: M packed rows][A: atype rows][wtmp: per thread]. */
static int gm_scratch(k_scratch *s, gm_job *j, int nth) {
    const size_t a_rows = j->g->act_pack ? (size_t)nth : (size_t)j->M;
    const size_t p_bytes = j->g->act_pack ? GEMM_ROUND((size_t)j->M * j->p_row) : 0;
    const size_t a_bytes = GEMM_ROUND(a_rows * j->a_row);
    const size_t need = p_bytes + a_bytes + (size_t)nth * (j->w_size + j->g_size) + K_GEMM_ALIGN;
    if (need > s->cap) {
        void *d = nd_malloc(need);
        if (!d) return ND_ENOMEM;
        nd_free(s->data);
        s->data = d;
        s->cap = need;
    }
    uint8_t *base = (uint8_t *)GEMM_ROUND((uintptr_t)s->data);
    j->P = base;
    j->A = base + p_bytes;
    j->wtmp = base + p_bytes + a_bytes;
    j->gtmp = j->g_size ? j->wtmp + (size_t)nth * j->w_size : NULL;
    if (!j->g->act_pack) {
        j->P = j->A;
        j->p_row = j->a_row;
    }
    return 0;
}

static int gemm_run(const k_env *env, uint32_t wtype, const void *W, int64_t K, int64_t N, const float *X,
                    int64_t M, float *Y, bool x16, nd_err *err) {
    const int nth = nd_pool_size(env->pool);
    const k_ops *ops = &env->kern->ops[wtype];
    gm_job j = {.ops = ops, .g = env->kern->gemm[wtype], .W = W, .w_row = q_row_size(wtype, K), .X = X,
                .K = K, .N = N, .M = M, .Y = Y, .x16 = x16, .wtype = wtype};
    j.a_row = q_row_size(ops->atype, K);
    j.p_row = j.g->act_pack ? GEMM_ROUND(j.g->act_size(K)) : j.a_row;
    j.w_size = GEMM_ROUND(j.g->w_size(K));
    if (x16 && k_x16_slice(wtype, K) < K) j.g_size = GEMM_ROUND(16 * j.w_row);
    if (gm_scratch(env->scratch, &j, nth))
        return nd_seterr(err, ND_ENOMEM, "out of memory for %lld activation rows", (long long)M);
    if (M >= 4 && nth > 1)
        nd_pool_run(env->pool, gm_quantize_worker, &j);
    else
        gm_quantize_worker(&j, 0, 1);
    if (atomic_load(&j.status))
        return nd_seterr(err, atomic_load(&j.status), "cannot quantize activations to %s",
                         nd_type_info(ops->atype)->name);
    if (M == 1 && !x16) {
        if (nth == 1 || N <= GM_GEMV_ROWS)
            gm_gemv_worker(&j, 0, 1);
        else
            nd_pool_run(env->pool, gm_gemv_worker, &j);
        return 0;
    }
    /* Each item repacks its row group once and sweeps its tokens. With few row groups
     * (k/v projections) the tokens are split too so every thread gets >= 4 items. */
    const int64_t groups = (N + j.g->rows - 1) / j.g->rows;
    j.chunks = 1;
    if (groups < 4 * (int64_t)nth) j.chunks = (4 * (int64_t)nth + groups - 1) / groups;
    j.m_chunk = (M + j.chunks - 1) / j.chunks;
    j.m_chunk = (j.m_chunk + 15) & ~(int64_t)15;
    j.chunks = (M + j.m_chunk - 1) / j.m_chunk;
    j.items = groups * j.chunks;
    if (nth == 1 || j.items == 1)
        gm_tile_worker(&j, 0, 1);
    else
        nd_pool_run(env->pool, gm_tile_worker, &j);
    return 0;
}

int k_gemm_matmul(const k_env *env, uint32_t wtype, const void *W, int64_t K, int64_t N,
                  const float *X, int64_t M, float *Y, nd_err *err) {
    return gemm_run(env, wtype, W, K, N, X, M, Y, false, err);
}

int k_gemm_matmul_x16(const k_env *env, uint32_t wtype, const void *W, int64_t K, int64_t N,
                      const float *X, int64_t M, float *Y, nd_err *err) {
    return gemm_run(env, wtype, W, K, N, X, M, Y, true, err);
}
