/* bench_quant: throughput of the scalar reference quantize / dequantize / vec_dot per
 * type (the fallback path on CPUs without SIMD, and the baseline the kernels beat).
 * Prints one JSON line per type and a table; the checksum guards against dead code. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "core/nd.h"
#include "quant/quant.h"

static const uint32_t k_types[] = {
    ND_TYPE_F32,  ND_TYPE_F16,  ND_TYPE_BF16, ND_TYPE_Q8_0, ND_TYPE_Q4_0,
    ND_TYPE_Q4_1, ND_TYPE_Q5_0, ND_TYPE_Q5_1, ND_TYPE_Q2_K, ND_TYPE_Q3_K,
    ND_TYPE_Q4_K, ND_TYPE_Q5_K, ND_TYPE_Q6_K,
};

typedef struct {
    uint32_t t, at;
    int64_t n;
    const float *x, *a;
    uint8_t *q, *aq;
    float *y;
    float sink;
} bench_ctx;

enum { OP_QUANT, OP_DEQUANT, OP_DOT };

static void run_op(bench_ctx *c, int op) {
    if (op == OP_QUANT) q_quantize_row(c->t, c->x, c->q, c->n);
    else if (op == OP_DEQUANT) q_dequantize_row(c->t, c->q, c->y, c->n);
    else c->sink += q_vec_dot(c->t, c->q, c->at, c->aq, c->n);
}

/* Repeat op for at least min_s seconds; returns seconds per call. */
static double time_op(bench_ctx *c, int op, double min_s) {
    long reps = 0;
    double t0 = nd_time_s(), t;
    do {
        run_op(c, op);
        reps++;
    } while ((t = nd_time_s() - t0) < min_s);
    return t / (double)reps;
}

int main(void) {
    const int64_t n = 1 << 16;
    float *x = malloc(n * sizeof *x), *y = malloc(n * sizeof *y), *a = malloc(n * sizeof *a);
    uint8_t *q = malloc((size_t)n * 4), *aq = malloc((size_t)n * 4 + 4096);
    if (!x || !y || !a || !q || !aq) return 1;
    unsigned long long s = 1;
    for (int64_t i = 0; i < n; i++) {
        s = s * 6364136223846793005ull + 1442695040888963407ull;
        x[i] = (float)((double)(s >> 40) / 16777216.0 - 0.5);
        a[i] = (float)((double)((s >> 20) & 0xFFFFF) / 1048576.0 - 0.5);
    }
    printf("%-6s %12s %12s %12s %12s\n", "type", "quant Me/s", "deq Me/s", "dot Me/s", "checksum");
    for (size_t ti = 0; ti < sizeof k_types / sizeof k_types[0]; ti++) {
        uint32_t t = k_types[ti], at = q_vec_dot_type(t);
        bench_ctx c = {t, at, n, x, a, q, aq, y, 0};
        double checksum = 0;
        double tq = time_op(&c, OP_QUANT, 0.2);
        double td = time_op(&c, OP_DEQUANT, 0.2);
        q_quantize_act(at, a, aq, n);
        double tv = time_op(&c, OP_DOT, 0.2);
        for (int64_t i = 0; i < n; i++) checksum += y[i];
        checksum += q_vec_dot(t, q, at, aq, n);
        const char *name = nd_type_info(t)->name;
        printf("{\"bench\":\"quant\",\"type\":\"%s\",\"quant_meps\":%.1f,\"dequant_meps\":%.1f,"
               "\"dot_meps\":%.1f,\"checksum\":%.6f}\n",
               name, n / tq / 1e6, n / td / 1e6, n / tv / 1e6, checksum);
        printf("%-6s %12.1f %12.1f %12.1f %12.6f\n", name, n / tq / 1e6, n / td / 1e6,
               n / tv / 1e6, checksum);
    }
    free(x); free(y); free(a); free(q); free(aq);
    return 0;
}
