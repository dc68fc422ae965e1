/* bench_gemm: prefill matmul (M = 512 tokens) per weight type on Qwen2.5-0.5B shapes,
 * the tile GEMM (kernels/gemm.h) vs the vec_dot-per-pair path, 1 and 2 threads, through
 * k_matmul. Validates first: sampled outputs of the tiles against q_vec_dot (the oracle)
 * within 1e-5 of sum |block terms| (see tests/test_gemm.c); exits 1 on a mismatch.
 *
 * Shapes (K = row length, N = rows): 896 x 4864 (ffn gate/up), 4864 x 896 (ffn down),
 * 896 x 896 (attn q/o), 896 x 151936 (output, all tokens). K-quants need K % 256 == 0:
 * only 4864 x 896 on this model. Prints GMAC/s (M*N*K / time), speedup vs vec_dot and
 * a checksum of the outputs; a table and JSON lines.
 *
 * F16 / BF16: the tiles sum in a float chain over K; the bound is (K + 2) 2^-24 sum |terms|.
 *
 *   build/release/bench/bench_gemm [type ...]  (default: q4_0 q8_0 q5_0 q4_K q6_K f16 bf16)
 *   BENCH_GEMM_REPS=n (default 3, best of n)
 */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "core/nd.h"
#include "core/pool.h"
#include "kernels/gemm.h"
#include "kernels/kernels.h"
#include "quant/quant.h"

static double now_s(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + 1e-9 * (double)ts.tv_nsec;
}
static uint64_t rng_u64(uint64_t *s) {
    uint64_t x = *s;
    x ^= x >> 12, x ^= x << 25, x ^= x >> 27;
    *s = x;
    return x * 0x2545F4914F6CDD1Dull;
}
static float rng_f(uint64_t *s) { return (float)((rng_u64(s) >> 40) * (2.0 / 16777216.0) - 1.0); }

/* N rows: quantize a few random rows, then copy them around (values do not matter for
 * speed, only realistic scales do). */
static uint8_t *make_weights(uint32_t t, int64_t K, int64_t N, uint64_t *s) {
    const size_t row = q_row_size(t, K);
    uint8_t *w = malloc(row * (size_t)N), *base = malloc(row * 64);
    float *x = malloc(sizeof(float) * (size_t)K);
    if (!w || !base || !x) return NULL;
    for (int r = 0; r < 64; r++) {
        for (int64_t i = 0; i < K; i++) x[i] = rng_f(s);
        q_quantize_row(t, x, base + (size_t)r * row, K);
    }
    for (int64_t r = 0; r < N; r++) memcpy(w + (size_t)r * row, base + (size_t)(rng_u64(s) % 64) * row, row);
    free(base);
    free(x);
    return w;
}

/* sum_b |q_vec_dot of block b| for one (row, activation row) pair: the tolerance scale */
static double abs_terms(uint32_t wt, const uint8_t *w, uint32_t at, const uint8_t *a, int64_t K) {
    const int64_t bl = q_blck(wt);
    const size_t wb = q_row_size(wt, bl), ab = q_row_size(at, bl);
    double s = 0;
    for (int64_t b = 0; b < K / bl; b++) s += fabs(q_vec_dot(wt, w + (size_t)b * wb, at, a + (size_t)b * ab, bl));
    return s;
}

/* sampled outputs of Y (from the tiles) against the oracle; 0 = ok */
static int validate(const k_kernels *k, uint32_t wt, const uint8_t *W, int64_t K, int64_t N,
                    const float *X, int64_t M, const float *Y, uint64_t *s) {
    const k_ops *ops = &k->ops[wt];
    const size_t a_row = q_row_size(ops->atype, K), w_row = q_row_size(wt, K);
    uint8_t *a = malloc(a_row);
    int bad = 0;
    for (int i = 0; i < 200 && a; i++) {
        int64_t m = (int64_t)(rng_u64(s) % (uint64_t)M), n = (int64_t)(rng_u64(s) % (uint64_t)N);
        ops->quantize(X + m * K, a, K);
        double ref = q_vec_dot(wt, W + (size_t)n * w_row, ops->atype, a, K);
        /* Q4_K's two parts may cancel: allow 10x (test_gemm checks the exact bound) */
        const int half = wt == ND_TYPE_F16 || wt == ND_TYPE_BF16;
        double tol = (wt == ND_TYPE_Q4_K ? 1e-4 : half ? (double)(K + 2) * 0x1p-24 : 1e-5) *
                         abs_terms(wt, W + (size_t)n * w_row, ops->atype, a, K) + 1e-30;
        if (!(fabs(Y[m * N + n] - ref) <= tol) && bad++ < 3)
            fprintf(stderr, "MISMATCH %s K=%lld N=%lld y[%lld][%lld] = %.9g, oracle %.9g\n",
                    nd_type_info(wt)->name, (long long)K, (long long)N, (long long)m, (long long)n,
                    Y[m * N + n], ref);
    }
    free(a);
    return bad;
}

static double run(const k_env *env, uint32_t wt, const uint8_t *W, int64_t K, int64_t N,
                  const float *X, int64_t M, float *Y, int reps) {
    nd_err err;
    double best = 1e30;
    for (int r = 0; r < reps; r++) {
        double t0 = now_s();
        if (k_matmul(env, wt, W, K, N, X, M, Y, &err)) {
            fprintf(stderr, "k_matmul: %s\n", err.msg);
            return -1;
        }
        double t = now_s() - t0;
        if (t < best) best = t;
    }
    return best;
}

int main(int argc, char **argv) {
    static const char *defaults[] = {"q4_0", "q8_0", "q5_0", "q4_K", "q6_K", "f16", "bf16"};
    const char **names = argc > 1 ? (const char **)argv + 1 : defaults;
    const int n_names = argc > 1 ? argc - 1 : (int)(sizeof defaults / sizeof defaults[0]);
    const int reps = getenv("BENCH_GEMM_REPS") ? atoi(getenv("BENCH_GEMM_REPS")) : 3;
    const int64_t M = 512;
    const int64_t shapes[][2] = {{896, 4864}, {4864, 896}, {896, 896}, {896, 151936}};
    k_kernels k, kv;
    k_select(&k, K_ISA_BEST);
    kv = k;
    memset(kv.gemm, 0, sizeof kv.gemm);
    nd_err err;
    nd_pool *pool2 = nd_pool_new(2, &err);
    if (!pool2) return 1;
    k_scratch sc = {0};
    uint64_t s = 42;
    int rc = 0;
    printf("| type | K x N | M | threads | gemm GMAC/s | vec_dot GMAC/s | speedup | checksum |\n");
    printf("| --- | --- | ---: | ---: | ---: | ---: | ---: | --- |\n");
    for (int ni = 0; ni < n_names; ni++) {
        uint32_t wt = UINT32_MAX;
        for (uint32_t t = 0; t < ND_TYPE_COUNT; t++)
            if (nd_type_info(t) && nd_type_info(t)->name && strcmp(nd_type_info(t)->name, names[ni]) == 0) wt = t;
        if (wt == UINT32_MAX || !k.gemm[wt]) {
            fprintf(stderr, "%s: no tile GEMM here, skipped\n", names[ni]);
            continue;
        }
        for (size_t si = 0; si < sizeof shapes / sizeof shapes[0]; si++) {
            const int64_t K = shapes[si][0], N = shapes[si][1];
            if (K % q_blck(wt)) continue;
            uint8_t *W = make_weights(wt, K, N, &s);
            float *X = malloc(sizeof(float) * (size_t)(M * K)), *Y = malloc(sizeof(float) * (size_t)(M * N));
            if (!W || !X || !Y) return 1;
            for (int64_t i = 0; i < M * K; i++) X[i] = rng_f(&s);
            for (int th = 1; th <= 2; th++) {
                k_env e = {.kern = &k, .pool = th == 2 ? pool2 : NULL, .scratch = &sc},
                      ev = {.kern = &kv, .pool = th == 2 ? pool2 : NULL, .scratch = &sc};
                double tg = run(&e, wt, W, K, N, X, M, Y, reps);
                if (tg < 0) return 1;
                if (th == 1 && validate(&k, wt, W, K, N, X, M, Y, &s)) rc = 1;
                double cks = 0;
                for (int64_t i = 0; i < M * N; i++) cks += Y[i];
                /* the per-pair path is slow: time it once, on 2 threads only, big shape skipped */
                double tv = th == 2 && N * K < 100000000 ? run(&ev, wt, W, K, N, X, M, Y, 1) : 0;
                const double macs = (double)M * (double)N * (double)K;
                printf("| %s | %lld x %lld | %lld | %d | %.1f | %s%.1f | %.1fx | %.6e |\n",
                       nd_type_info(wt)->name, (long long)K, (long long)N, (long long)M, th,
                       macs / tg * 1e-9, tv > 0 ? "" : "(skipped) ", tv > 0 ? macs / tv * 1e-9 : 0.0,
                       tv > 0 ? tv / tg : 0.0, cks);
                printf("{\"bench\":\"gemm\",\"type\":\"%s\",\"K\":%lld,\"N\":%lld,\"M\":%lld,"
                       "\"threads\":%d,\"gemm_gmacs\":%.2f,\"vec_dot_gmacs\":%.2f,\"checksum\":%.9e}\n",
                       nd_type_info(wt)->name, (long long)K, (long long)N, (long long)M, th,
                       macs / tg * 1e-9, tv > 0 ? macs / tv * 1e-9 : 0.0, cks);
                fflush(stdout);
            }
            free(W), free(X), free(Y);
        }
    }
    k_scratch_free(&sc);
    nd_pool_free(pool2);
    if (rc) fprintf(stderr, "bench_gemm: VALIDATION FAILED\n");
    return rc;
}
