/* Thread pool tests: every ith runs exactly once per job, results are visible to the
 * caller after nd_pool_run, pools survive idle periods (workers asleep), dispatch cost. */
#include <stdatomic.h>
#include <time.h>

#include "core/pool.h"
#include "kernels/kernels.h"
#include "quant/quant.h"
#include "t.h"

typedef struct job {
    _Atomic int calls[64];
    long long part[64];
    int nth_seen;
    long long n;
} job;

static void count_fn(void *ctx, int ith, int nth) {
    job *j = ctx;
    atomic_fetch_add(&j->calls[ith], 1);
    j->nth_seen = nth;
    long long s = 0; /* each thread sums its interleaved share of 0..n-1 */
    for (long long i = ith; i < j->n; i += nth) s += i;
    j->part[ith] = s;
}

static void test_each_thread_once(void) {
    for (int nt = 1; nt <= 6; nt++) {
        nd_err err = {0};
        nd_pool *p = nd_pool_new(nt, &err);
        T_CHECKF(p != NULL, "%s", err.msg);
        if (!p) continue;
        T_EQ_INT(nd_pool_size(p), nt);
        for (int rep = 0; rep < 200; rep++) {
            job j = {.n = 1000 + rep};
            nd_pool_run(p, count_fn, &j);
            long long total = 0;
            for (int i = 0; i < nt; i++) {
                T_EQ_INT(atomic_load(&j.calls[i]), 1);
                total += j.part[i];
            }
            T_EQ_INT(atomic_load(&j.calls[nt]), 0);
            T_EQ_INT(total, j.n * (j.n - 1) / 2);
            T_EQ_INT(j.nth_seen, nt);
        }
        nd_pool_free(p);
    }
}

/* Workers fall asleep after their spin budget; a job after a pause must still run. */
static void test_after_sleep(void) {
    nd_err err = {0};
    nd_pool *p = nd_pool_new(3, &err);
    T_CHECK(p != NULL);
    if (!p) return;
    for (int rep = 0; rep < 5; rep++) {
        struct timespec ts = {0, 5 * 1000 * 1000}; /* 5 ms >> spin budget */
        nanosleep(&ts, NULL);
        job j = {.n = 10};
        nd_pool_run(p, count_fn, &j);
        for (int i = 0; i < 3; i++) T_EQ_INT(atomic_load(&j.calls[i]), 1);
    }
    nd_pool_free(p);
    nd_pool_free(NULL);
}

/* nd_pool_run_items: every item exactly once, for counts below, at and far above the
 * thread count (items are claimed dynamically, by whichever thread comes first). */
typedef struct items_job {
    _Atomic int calls[1000];
    int n_seen;
} items_job;

static void item_fn(void *ctx, int item, int n) {
    items_job *j = ctx;
    atomic_fetch_add(&j->calls[item], 1);
    j->n_seen = n;
}

static void test_items(void) {
    for (int nt = 1; nt <= 4; nt++) {
        nd_err err = {0};
        nd_pool *p = nd_pool_new(nt, &err);
        T_CHECK(p != NULL);
        if (!p) continue;
        const int counts[] = {0, 1, 2, 3, 7, 64, 1000};
        for (size_t c = 0; c < sizeof counts / sizeof counts[0]; c++)
            for (int rep = 0; rep < 50; rep++) {
                static items_job j;
                memset(&j, 0, sizeof j);
                nd_pool_run_items(p, item_fn, &j, counts[c]);
                int bad = 0;
                for (int i = 0; i < 1000; i++) bad += atomic_load(&j.calls[i]) != (i < counts[c]);
                T_CHECKF(bad == 0, "%d threads, %d items: %d wrong counts", nt, counts[c], bad);
                if (counts[c]) T_EQ_INT(j.n_seen, counts[c]);
            }
        nd_pool_free(p);
    }
}

static void test_bad_args(void) {
    nd_err err = {0};
    T_CHECK(nd_pool_new(0, &err) == NULL);
    T_EQ_INT(err.code, ND_EINVAL);
    T_CHECK(nd_pool_new(ND_POOL_MAX_THREADS + 1, &err) == NULL);
    T_CHECK(nd_pool_default_threads() >= 1);
    for (long k = 0; k < 3; k++) {
        nd_alloc_fail_after(k);
        nd_pool *p = nd_pool_new(2, &err);
        nd_alloc_fail_after(-1);
        if (p) {
            nd_pool_free(p);
            break;
        }
        T_EQ_INT(err.code, ND_ENOMEM);
    }
}

static void empty_fn(void *ctx, int ith, int nth) {
    (void)ctx;
    (void)ith;
    (void)nth;
}

/* Dispatch cost of an empty job, printed (a figure, not a pass/fail criterion). */
static void test_overhead(void) {
    int n = nd_pool_default_threads();
    if (n < 2) n = 2;
    nd_err err = {0};
    nd_pool *p = nd_pool_new(n, &err);
    T_CHECK(p != NULL);
    if (!p) return;
    for (int i = 0; i < 1000; i++) nd_pool_run(p, empty_fn, NULL);
    const int N = 20000;
    double t0 = nd_time_s();
    for (int i = 0; i < N; i++) nd_pool_run(p, empty_fn, NULL);
    double us = (nd_time_s() - t0) / N * 1e6;
    fprintf(stderr, "  empty nd_pool_run, %d threads: %.2f us\n", n, us);
    T_CHECK(us < 1000); /* sanity only: a broken wake would take milliseconds */
    nd_pool_free(p);
}

/* k_matmul agrees with a plain loop over q_vec_dot, threaded or not, for M = 1 and M > 1. */
static void test_matmul(void) {
    enum { K = 256, N = 37, M = 5 };
    static float W[N * K], X[M * K], Y1[M * N], Y2[M * N];
    static uint8_t Wq[N * K * 2], Xq[M * K * 4];
    unsigned long long s = 3;
    for (int i = 0; i < N * K; i++) W[i] = t_rand_f(&s);
    for (int i = 0; i < M * K; i++) X[i] = t_rand_f(&s);
    nd_err err = {0};
    nd_pool *p = nd_pool_new(3, &err);
    k_scratch sc = {0};
    k_kernels kk;
    /* the scalar table is the quant/ reference itself; the best table must agree with its
     * own entries exactly (tiling and threading never change a single dot) */
    for (int best = 0; best < 2; best++) {
        k_select(&kk, best ? K_ISA_BEST : K_ISA_SCALAR);
        uint32_t types[] = {ND_TYPE_F32, ND_TYPE_F16, ND_TYPE_Q8_0, ND_TYPE_Q4_K, ND_TYPE_Q6_K};
        for (size_t ti = 0; ti < sizeof types / sizeof types[0]; ti++) {
            uint32_t t = types[ti];
            const void *w = W;
            if (t != ND_TYPE_F32) {
                T_EQ_INT(q_quantize_row(t, W, Wq, N * K), 0);
                w = Wq;
            }
            const k_ops *o = &kk.ops[t];
            uint32_t at = o->atype;
            size_t ar = q_row_size(at, K), wr = q_row_size(t, K);
            for (int m = 0; m < M; m++) T_EQ_INT(o->quantize(X + m * K, Xq + m * ar, K), 0);
            for (int m = 0; m < M; m++)
                for (int r = 0; r < N; r++) {
                    Y1[m * N + r] = o->vec_dot((const uint8_t *)w + r * wr, Xq + m * ar, K);
                    if (!best) /* scalar entries are exactly the reference */
                        T_CHECK(Y1[m * N + r] ==
                                q_vec_dot(t, (const uint8_t *)w + r * wr, at, Xq + m * ar, K));
                }
            for (int threaded = 0; threaded < 2; threaded++) {
                k_env env = {.kern = &kk, .pool = threaded ? p : NULL, .scratch = &sc};
                memset(Y2, 0, sizeof Y2);
                T_EQ_INT(k_matmul(&env, t, w, K, N, X, M, Y2, &err), 0);
                /* with a prefill GEMM for the type, M > 1 sums the same exact integer block
                 * products in another float order (tests/test_gemm.c bounds it); otherwise
                 * the results are the very same dots */
                bool gemm = best && kk.gemm[t] && M >= K_GEMM_MIN_TOKENS;
                for (int i = 0; i < M * N; i++)
                    T_CHECKF(gemm ? fabsf(Y1[i] - Y2[i]) <= 1e-5f * (1.0f + fabsf(Y1[i])) : Y1[i] == Y2[i],
                             "%s type %u threaded %d elem %d: %.9g vs %.9g", o->name, t, threaded, i, Y1[i], Y2[i]);
                T_EQ_INT(k_matmul(&env, t, w, K, N, X, 1, Y2, &err), 0);
                for (int i = 0; i < N; i++) T_CHECK(Y1[i] == Y2[i]);
            }
        }
    }
    /* unsupported type and bad row length are errors, not crashes */
    k_env env = {.kern = &kk, .pool = p, .scratch = &sc};
    T_EQ_INT(k_matmul(&env, ND_TYPE_IQ2_XXS, W, K, N, X, 1, Y2, &err), ND_EUNSUPPORTED);
    T_EQ_INT(k_matmul(&env, ND_TYPE_Q8_0, Wq, 48, N, X, 1, Y2, &err), ND_EFORMAT);
    k_scratch_free(&sc);
    nd_pool_free(p);
}

static void count_before(void *user, int ith) { atomic_fetch_add((_Atomic int *)user + ith, 1); }

/* Decode work distribution (lanes, guided item sizes, half-lane steals): several products in
 * one k_matmul_n (row-layout Q8_0 parts of odd sizes, an X16 Q4_0 part walked by K-slices),
 * on pools of 2, 3 and 7 threads (more threads than cores: items run late, run on the
 * driver, or are stolen half by half) and on more threads than a product has lanes: every
 * row computed, each exactly as the single-row dot. Repeated so the races get their turns. */
static void test_matmul_split(void) {
    enum { KA = 256, KB = 4864 };
    const int64_t NA[3] = {1001, 37, 130}, NB = 1024;
    k_kernels kk;
    k_select(&kk, K_ISA_BEST);
    const size_t ra = q_row_size(ND_TYPE_Q8_0, KA), rb = q_row_size(ND_TYPE_Q4_0, KB);
    const int64_t na = NA[0] + NA[1] + NA[2];
    uint8_t *Wa = malloc(ra * (size_t)na), *Wb = aligned_alloc(64, rb * (size_t)NB), *tmp = malloc(K_X16_TMP_ROWS * rb);
    float *wf = malloc(sizeof(float) * KB), *X = malloc(sizeof(float) * KB), *Y = malloc(sizeof(float) * (size_t)(na + NB)),
          *ref = malloc(sizeof(float) * (size_t)(na + NB));
    uint8_t *xq = malloc(q_row_size(ND_TYPE_Q8_0, KB));
    unsigned long long s = 11;
    for (int64_t r = 0; r < na; r++) {
        for (int i = 0; i < KA; i++) wf[i] = t_rand_f(&s);
        T_EQ_INT(q_quantize_row(ND_TYPE_Q8_0, wf, Wa + (size_t)r * ra, KA), 0);
    }
    for (int64_t r = 0; r < NB; r++) {
        for (int i = 0; i < KB; i++) wf[i] = t_rand_f(&s);
        T_EQ_INT(q_quantize_row(ND_TYPE_Q4_0, wf, Wb + (size_t)r * rb, KB), 0);
    }
    for (int i = 0; i < KB; i++) X[i] = t_rand_f(&s);
    /* the single-row dots, before Wb is repacked */
    const k_ops *oa = &kk.ops[ND_TYPE_Q8_0], *ob = &kk.ops[ND_TYPE_Q4_0];
    T_EQ_INT(oa->quantize(X, xq, KA), 0);
    for (int64_t r = 0; r < na; r++) ref[r] = oa->vec_dot(Wa + (size_t)r * ra, xq, KA);
    T_EQ_INT(ob->quantize(X, xq, KB), 0);
    for (int64_t r = 0; r < NB; r++) ref[na + r] = ob->vec_dot(Wb + (size_t)r * rb, xq, KB);
    const bool x16 = k_x16_supported(&kk, ND_TYPE_Q4_0) && k_x16_fits(ND_TYPE_Q4_0, KB, NB, Wb);
    if (x16) k_x16_repack(ND_TYPE_Q4_0, Wb, KB, NB, tmp);
    const int threads[] = {2, 3, 7, 70};
    k_scratch sc = {0};
    nd_err err;
    for (size_t ti = 0; ti < sizeof threads / sizeof threads[0]; ti++) {
        nd_pool *p = nd_pool_new(threads[ti], &err);
        T_CHECK(p != NULL);
        if (!p) continue;
        const k_env env = {.kern = &kk, .pool = p, .scratch = &sc};
        const k_mat ma[3] = {{ND_TYPE_Q8_0, Wa, NA[0], Y, K_LAYOUT_ROWS},
                             {ND_TYPE_Q8_0, Wa + (size_t)NA[0] * ra, NA[1], Y + NA[0], K_LAYOUT_ROWS},
                             {ND_TYPE_Q8_0, Wa + (size_t)(NA[0] + NA[1]) * ra, NA[2], Y + NA[0] + NA[1], K_LAYOUT_ROWS}};
        const k_mat mb = {ND_TYPE_Q4_0, Wb, NB, Y + na, x16 ? K_LAYOUT_X16 : K_LAYOUT_ROWS};
        int bad = 0;
        for (int rep = 0; rep < (threads[ti] > 8 ? 5 : 40); rep++) {
            for (int64_t i = 0; i < na + NB; i++) Y[i] = NAN;
            T_EQ_INT(k_matmul_n(&env, ma, 3, KA, X, 1, &err), 0);
            T_EQ_INT(k_matmul_n(&env, &mb, 1, KB, X, 1, &err), 0);
            for (int64_t i = 0; i < na + NB; i++) bad += !(Y[i] == ref[i]);
        }
        T_CHECKF(bad == 0, "%d threads: %d outputs missing or not the row's dot", threads[ti], bad);
        /* k_env.before: once per pool item of a threaded decode product, never for M > 1 */
        _Atomic int calls[64] = {0};
        k_env eh = env;
        eh.before = count_before, eh.before_user = calls;
        T_EQ_INT(k_matmul_n(&eh, &mb, 1, KB, X, 1, &err), 0);
        const int items = threads[ti] < 64 ? threads[ti] : 64;
        for (int i = 0; i < 64; i++) T_CHECKF(atomic_load(&calls[i]) == (i < items), "item %d: %d calls", i, atomic_load(&calls[i]));
        float *Y2 = malloc(sizeof(float) * (size_t)NB * 2), *X2 = malloc(sizeof(float) * KB * 2);
        for (int i = 0; i < 2 * KB; i++) X2[i] = X[i % KB];
        const k_mat m2 = {ND_TYPE_Q4_0, Wb, NB, Y2, mb.layout};
        T_EQ_INT(k_matmul_n(&eh, &m2, 1, KB, X2, 2, &err), 0);
        for (int i = 0; i < 64; i++) T_CHECK(atomic_load(&calls[i]) == (i < items));
        free(Y2), free(X2);
        nd_pool_free(p);
    }
    k_scratch_free(&sc);
    free(Wa), free(Wb), free(tmp), free(wf), free(X), free(Y), free(ref), free(xq);
}

int main(void) {
    T_RUN(test_each_thread_once);
    T_RUN(test_after_sleep);
    T_RUN(test_items);
    T_RUN(test_bad_args);
    T_RUN(test_overhead);
    T_RUN(test_matmul);
    T_RUN(test_matmul_split);
    return t_done();
}
