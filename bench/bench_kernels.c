/* bench_kernels: decode matvec (M = 1) per weight type on Qwen2.5-0.5B shapes, scalar vs
 * AVX2 vs AVX-512 tables, 1 and 2 threads, through k_matmul. Validates every ISA against
 * the scalar table on the same inputs first (sampled rows), then times.
 *
 * Shapes (K = row length, N = rows): 896 x 4864 (ffn gate/up), 4864 x 896 (ffn down),
 * 896 x 151936 (output / tied embedding). K-quants need K % 256 == 0, so on this model
 * only 4864 x 896 is a K-quant shape (llama.cpp falls back to other types for the rest).
 * Matrices are cycled through a pool of >= 256 MiB so reads come from RAM, as in decode.
 * Weight bytes are random with sane fp16 scales (speed does not depend on the values).
 *
 * Prints GB/s of weights read, % of the streaming-read roofline measured at start (same
 * thread count), speedup vs scalar, and a checksum of the outputs; a table and JSON lines.
 *
 *   build/release/bench/bench_kernels [type ...]     (default: all types)
 */
#include <immintrin.h>
#include <math.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "core/nd.h"
#include "core/pool.h"
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

/* ------------------------------------------------------------ roofline */

typedef struct rd_job {
    const uint8_t *p;
    size_t n;
    uint64_t sink;
} rd_job;

__attribute__((target("avx2"))) static void rd_worker(void *arg, int ith, int nth) {
    rd_job *j = arg;
    const size_t slice = (j->n / (size_t)nth) & ~(size_t)127;
    const uint8_t *p = j->p + slice * (size_t)ith;
    __m256i a0 = _mm256_setzero_si256(), a1 = a0;
    for (size_t i = 0; i + 128 <= slice; i += 128) {
        a0 = _mm256_add_epi64(a0, _mm256_add_epi64(_mm256_load_si256((const __m256i *)(p + i)),
                                                   _mm256_load_si256((const __m256i *)(p + i + 32))));
        a1 = _mm256_add_epi64(a1, _mm256_add_epi64(_mm256_load_si256((const __m256i *)(p + i + 64)),
                                                   _mm256_load_si256((const __m256i *)(p + i + 96))));
    }
    uint64_t o[4];
    _mm256_storeu_si256((__m256i *)o, _mm256_add_epi64(a0, a1));
    __atomic_fetch_add(&j->sink, o[0] + o[1] + o[2] + o[3], __ATOMIC_RELAXED);
}

/* best GB/s of several streaming passes over 512 MiB on the pool's threads */
static double roofline(nd_pool *pool) {
    const size_t n = (size_t)512 << 20;
    uint8_t *buf = aligned_alloc(64, n);
    if (!buf) return 0;
    memset(buf, 1, n);
    rd_job j = {buf, n, 0};
    double best = 0;
    for (int r = 0; r < 6; r++) {
        double t0 = now_s();
        nd_pool_run(pool, rd_worker, &j);
        double gbs = (double)n / (now_s() - t0) / 1e9;
        if (gbs > best) best = gbs;
    }
    free(buf);
    return best;
}

/* ------------------------------------------------------------ weights */

/* byte offsets of the fp16 scale fields in a weight block */
static int scale_fields(uint32_t t, int off[2]) {
    switch (t) {
    case ND_TYPE_Q4_0: case ND_TYPE_Q5_0: case ND_TYPE_Q8_0: off[0] = 0; return 1;
    case ND_TYPE_Q3_K: off[0] = 108; return 1;
    case ND_TYPE_Q4_1: case ND_TYPE_Q5_1: case ND_TYPE_Q4_K: case ND_TYPE_Q5_K:
        off[0] = 0, off[1] = 2;
        return 2;
    case ND_TYPE_Q2_K: off[0] = 80, off[1] = 82; return 2;
    case ND_TYPE_Q6_K: off[0] = 208; return 1;
    default: return 0;
    }
}

static void fill_weights(uint32_t t, uint8_t *w, size_t bytes, uint64_t *s) {
    if (t == ND_TYPE_F32 || t == ND_TYPE_F16 || t == ND_TYPE_BF16) {
        const size_t es = t == ND_TYPE_F32 ? 4 : 2;
        for (size_t i = 0; i < bytes / es; i++) {
            float v = rng_f(s) * 0.05f;
            if (t == ND_TYPE_F32) memcpy(w + 4 * i, &v, 4);
            else {
                uint16_t h = t == ND_TYPE_F16 ? nd_fp32_to_fp16(v) : nd_fp32_to_bf16(v);
                memcpy(w + 2 * i, &h, 2);
            }
        }
        return;
    }
    for (size_t i = 0; i + 8 <= bytes; i += 8) {
        uint64_t v = rng_u64(s);
        memcpy(w + i, &v, 8);
    }
    const uint32_t bb = q_block_bytes(t);
    int off[2];
    const int nf = scale_fields(t, off);
    for (size_t b = 0; b < bytes / bb; b++)
        for (int f = 0; f < nf; f++) {
            uint16_t h = nd_fp32_to_fp16(0.001f + 0.01f * (float)(rng_u64(s) & 1023) / 1024.f);
            memcpy(w + b * bb + off[f], &h, 2);
        }
}

/* ------------------------------------------------------------ bench */

typedef struct shape {
    int64_t K, N;
    const char *what;
} shape;

static const shape shapes[] = {
    {896, 4864, "ffn_up"},
    {4864, 896, "ffn_down"},
    {896, 151936, "output"},
};

/* times k_matmul (M = 1) over the matrices in turn; returns seconds per matvec */
static double time_matvec(const k_env *env, uint32_t t, uint8_t **mats, int nmat, int64_t K,
                          int64_t N, const float *x, float *y) {
    nd_err err;
    int it = 0;
    double t0 = now_s(), el;
    do {
        if (k_matmul(env, t, mats[it % nmat], K, N, x, 1, y, &err) != 0) {
            fprintf(stderr, "k_matmul: %s\n", err.msg);
            exit(1);
        }
        it++;
        el = now_s() - t0;
    } while ((el < 0.25 || it < 3) && !(el > 2.0 && it >= 2));
    return el / it;
}

static int type_wanted(uint32_t t, int argc, char **argv) {
    if (argc <= 1) return 1;
    for (int i = 1; i < argc; i++)
        if (nd_type_from_name(argv[i]) == (int)t) return 1;
    return 0;
}

int main(int argc, char **argv) {
    static const uint32_t types[] = {
        ND_TYPE_Q4_0, ND_TYPE_Q8_0, ND_TYPE_Q4_K, ND_TYPE_Q6_K, ND_TYPE_Q5_K, ND_TYPE_Q3_K,
        ND_TYPE_Q2_K, ND_TYPE_Q4_1, ND_TYPE_Q5_0, ND_TYPE_Q5_1, ND_TYPE_F16, ND_TYPE_BF16,
        ND_TYPE_F32,
    };
    const k_isa isas[] = {K_ISA_SCALAR, K_ISA_AVX2, K_ISA_AVX512};
    nd_err err;
    nd_pool *pools[2] = {nd_pool_new(1, &err), nd_pool_new(2, &err)};
    if (!pools[0] || !pools[1]) {
        fprintf(stderr, "bench_kernels: cannot start the thread pool\n");
        return 1;
    }
    double roof[2] = {roofline(pools[0]), roofline(pools[1])};
    printf("roofline (streaming read, 512 MiB): 1 thread %.1f GB/s, 2 threads %.1f GB/s\n", roof[0], roof[1]);
    printf("{\"bench\":\"roofline\",\"threads\":1,\"gbps\":%.2f}\n{\"bench\":\"roofline\",\"threads\":2,\"gbps\":%.2f}\n",
           roof[0], roof[1]);
    k_kernels kern[3];
    for (int i = 0; i < 3; i++) k_select(&kern[i], isas[i]);
    printf("%-5s %-9s %6s %7s %-7s %3s %10s %8s %6s %8s %14s\n", "type", "shape", "K", "N", "impl", "thr",
           "us/matvec", "GB/s", "%roof", "x scalar", "checksum");

    uint64_t seed = 0x5eed;
    float *x = malloc(sizeof(float) * 4864);
    float *y = malloc(sizeof(float) * 151936), *yref = malloc(sizeof(float) * 151936);
    for (int i = 0; i < 4864; i++) x[i] = rng_f(&seed);

    for (size_t ti = 0; ti < sizeof types / sizeof types[0]; ti++) {
        const uint32_t t = types[ti];
        if (!type_wanted(t, argc, argv)) continue;
        for (size_t si = 0; si < sizeof shapes / sizeof shapes[0]; si++) {
            const int64_t K = shapes[si].K, N = shapes[si].N;
            if (K % q_blck(t)) continue;
            const size_t mbytes = q_row_size(t, K) * (size_t)N;
            int nmat = (int)(((size_t)256 << 20) / mbytes) + 1;
            if (nmat > 64) nmat = 64;
            uint8_t **mats = malloc(sizeof *mats * (size_t)nmat);
            for (int m = 0; m < nmat; m++) {
                mats[m] = malloc(mbytes);
                fill_weights(t, mats[m], mbytes, &seed);
            }
            k_scratch scratch = {0};
            /* validate: every table against scalar on matrix 0, all rows */
            k_env e0 = {.kern = &kern[0], .pool = pools[1], .scratch = &scratch};
            if (k_matmul(&e0, t, mats[0], K, N, x, 1, yref, &err)) {
                fprintf(stderr, "%s\n", err.msg);
                return 1;
            }
            double yabs = 0;
            for (int64_t r = 0; r < N; r++) yabs = fmax(yabs, fabs(yref[r]));
            for (int i = 1; i < 3; i++) {
                if (kern[i].isa != isas[i]) continue;
                k_env e = {.kern = &kern[i], .pool = pools[1], .scratch = &scratch};
                k_matmul(&e, t, mats[0], K, N, x, 1, y, &err);
                double maxd = 0;
                for (int64_t r = 0; r < N; r++) maxd = fmax(maxd, fabs((double)y[r] - yref[r]));
                if (!(maxd <= 1e-4 * yabs + 1e-6)) {
                    fprintf(stderr, "VALIDATION FAILED %s %s K=%lld N=%lld: max diff %g (max |y| %g)\n",
                            nd_type_info(t)->name, kern[i].ops[t].name, (long long)K, (long long)N, maxd, yabs);
                    return 1;
                }
            }
            for (int th = 0; th < 2; th++) {
                double t_scalar = 0;
                for (int i = 0; i < 3; i++) {
                    if (kern[i].isa != isas[i]) continue;
                    k_env e = {.kern = &kern[i], .pool = pools[th], .scratch = &scratch};
                    const double sec = time_matvec(&e, t, mats, nmat, K, N, x, y);
                    if (i == 0) t_scalar = sec;
                    double cs = 0;
                    k_matmul(&e, t, mats[0], K, N, x, 1, y, &err);
                    for (int64_t r = 0; r < N; r++) cs += y[r];
                    const double gbs = (double)mbytes / sec / 1e9;
                    const char *impl = kern[i].ops[t].name;
                    printf("%-5s %-9s %6lld %7lld %-7s %3d %10.1f %8.2f %5.0f%% %8.2f %14.6e\n",
                           nd_type_info(t)->name, shapes[si].what, (long long)K, (long long)N, impl,
                           th + 1, sec * 1e6, gbs, 100 * gbs / roof[th], t_scalar / sec, cs);
                    printf("{\"bench\":\"kernels\",\"type\":\"%s\",\"shape\":\"%s\",\"K\":%lld,\"N\":%lld,"
                           "\"isa\":\"%s\",\"impl\":\"%s\",\"threads\":%d,\"us\":%.2f,\"gbps\":%.3f,"
                           "\"pct_roofline\":%.1f,\"speedup_vs_scalar\":%.2f,\"checksum\":%.9e}\n",
                           nd_type_info(t)->name, shapes[si].what, (long long)K, (long long)N,
                           k_isa_name(isas[i]), impl, th + 1, sec * 1e6, gbs, 100 * gbs / roof[th],
                           t_scalar / sec, cs);
                    fflush(stdout);
                }
            }
            k_scratch_free(&scratch);
            for (int m = 0; m < nmat; m++) free(mats[m]);
            free(mats);
        }
    }
    free(x), free(y), free(yref);
    nd_pool_free(pools[0]);
    nd_pool_free(pools[1]);
    return 0;
}
