/* Tile GEMM (kernels/gemm.h) against its oracle, k_gemm_ref_tile = q_vec_dot per pair,
 * and its gemv (decode) against the tile: bit-identical per (row, token).
 *
 * Tolerance, quantized types: the integer part of every block dot is exact in both, only
 * the float accumulation differs (per-block FMA vs multiply-then-add, a different order
 * of the K-quant min term). Each output must lie within 1e-5 * sum_b |term_b| of the
 * oracle, term_b = the reference dot of block b alone (Q4_K: |d*isum| + |dmin*summs|,
 * whose difference is the term). One float rounding per product and per addition, ~6e-8
 * each: 1e-5 leaves > 100x margin for rows of up to ~150 blocks.
 *
 * Tolerance, F16 / BF16 weights: the products of two halves are exact in f32 in both; the
 * oracle adds them in double (then rounds once), the tiles in a float chain of K
 * roundings. Any summation of K terms errs by at most (K - 1) u S (u = 2^-24, S = sum
 * |w_i a_i|), so we allow (K + 2) u S. BF16 (vdpbf16ps) also treats denormal inputs as
 * zero and flushes denormal results: + sum |w_i a_i| over flushed inputs + K 2^-126.
 * That bound is loose for random data (errors grow like sqrt(K)), so the indexing is
 * also checked exactly: small-integer halves, whose partial sums are all exact, must give
 * the oracle's float bit for bit (test_half_exact). Non-finite outputs (an infinite
 * activation) must be non-finite in the same way (same infinity, or NaN).
 */
#include <stdint.h>

#include "core/pool.h"
#include "kernels/gemm.h"
#include "kernels/kernels.h"
#include "quant/quant.h"
#include "t.h"

static const uint32_t types[] = {ND_TYPE_Q8_0, ND_TYPE_Q4_0, ND_TYPE_Q5_0, ND_TYPE_Q4_K,
                                 ND_TYPE_Q6_K, ND_TYPE_F16, ND_TYPE_BF16};

static int is_half(uint32_t t) { return t == ND_TYPE_F16 || t == ND_TYPE_BF16; }

/* n rows of K random weights of type t (rows scaled differently, a few outliers) */
static uint8_t *make_weights(uint32_t t, int64_t n, int64_t K, unsigned long long *s) {
    size_t row = q_row_size(t, K);
    uint8_t *w = malloc(row * (size_t)n);
    float *x = malloc(sizeof(float) * (size_t)K);
    for (int64_t r = 0; r < n; r++) {
        float sc = 0.01f + (float)(t_rand_u64(s) % 100) * 0.02f;
        for (int64_t i = 0; i < K; i++) x[i] = sc * t_rand_f(s) + (i % 97 == 5 ? 3 * sc : 0);
        if (is_half(t)) /* edge values: the largest finite, subnormal (bf16: flushed), zeros */
            for (int64_t i = 0; i < K; i++) {
                const float big = t == ND_TYPE_F16 ? 65504.0f : 3e30f;
                const float tiny = t == ND_TYPE_F16 ? 3e-7f : 2e-39f;
                if (r % 3 == 1 && i % 61 == 3) x[i] = (i & 1) ? big : -big;
                if (r % 3 == 2 && i % 5 == 1) x[i] = tiny * (float)(i % 11) * ((i & 2) ? 1 : -1);
                if (i % 13 == 4) x[i] = (i & 1) ? -0.0f : 0.0f;
            }
        q_quantize_row(t, x, w + (size_t)r * row, K);
    }
    if (t == ND_TYPE_Q8_0) /* -128 is a valid weight byte (not produced by the quantizer) */
        for (int64_t r = 0; r < n; r++) ((q_block_q8_0 *)(w + (size_t)r * row))[0].qs[3] = -128;
    free(x);
    return w;
}

/* M activation rows: random floats, some rows saturating to +-127; for the half types
 * row 2 has subnormals (bf16: denormals) and signed zeros, row 3 one infinity */
static float *make_acts(uint32_t t, int64_t M, int64_t K, unsigned long long *s) {
    float *x = malloc(sizeof(float) * (size_t)(M * K));
    for (int64_t i = 0; i < M * K; i++) x[i] = t_rand_f(s) * (i % 7 == 0 ? 4.0f : 1.0f);
    for (int64_t i = 0; i < K && M > 1; i++) x[K + i] = (i & 1) ? 1.0f : -1.0f; /* all +-127 */
    if (is_half(t) && M > 2)
        for (int64_t i = 0; i < K; i++) {
            if (i % 5 == 2) x[2 * K + i] = (t == ND_TYPE_F16 ? 5e-7f : 3e-39f) * (float)(i % 9 - 4);
            if (i % 7 == 3) x[2 * K + i] = (i & 1) ? -0.0f : 0.0f;
        }
    if (is_half(t) && M > 3) x[3 * K + K / 2] = INFINITY;
    return x;
}

/* Q4_K's block term is d*isum - dmin*summs, two float products that may cancel: its
 * rounding scales with |d*isum| + |dmin*summs| (integers as in quant/q_kdot.c). */
static double q4k_abs_parts(const q_block_q4_K *x, const q_block_q8_K *y) {
    const uint8_t *s = x->scales;
    int isum = 0, summs = 0;
    for (int j = 0; j < 8; j++) {
        int sc = j < 4 ? s[j] & 63 : (s[j + 4] & 15) | ((s[j - 4] >> 6) << 4);
        int mn = j < 4 ? s[j + 4] & 63 : (s[j + 4] >> 4) | ((s[j] >> 6) << 4);
        int dot = 0;
        for (int l = 0; l < 32; l++) {
            int e = 32 * j + l, c = e / 64, q = x->qs[32 * c + l];
            dot += (j % 2 ? q >> 4 : q & 15) * y->qs[e];
        }
        isum += sc * dot;
        summs += mn * (y->bsums[2 * j] + y->bsums[2 * j + 1]);
    }
    return fabs((double)nd_fp16_to_fp32(x->d) * y->d * isum) +
           fabs((double)nd_fp16_to_fp32(x->dmin) * y->d * summs);
}

/* sum over blocks of |reference dot of that block| (Q4_K: of its two parts) */
static double abs_terms(uint32_t wt, const uint8_t *w, uint32_t at, const uint8_t *a, int64_t K) {
    const int64_t bl = q_blck(wt);
    const size_t wb = q_row_size(wt, bl), ab = q_row_size(at, bl);
    double s = 0;
    for (int64_t b = 0; b < K / bl; b++)
        s += wt == ND_TYPE_Q4_K
                 ? q4k_abs_parts((const q_block_q4_K *)(w + (size_t)b * wb),
                                 (const q_block_q8_K *)(a + (size_t)b * ab))
                 : fabs(q_vec_dot(wt, w + (size_t)b * wb, at, a + (size_t)b * ab, bl));
    return s;
}

static int bf16_flushed(uint16_t h) { return (h & 0x7F80) == 0 && (h & 0x7F) != 0; }

/* the allowed |tile - oracle| for one (row, activation row) pair (see the header);
 * *nan_ok: a flushed (denormal) bf16 input meets an infinity, 0 * inf = NaN is expected */
static double tol_of(uint32_t wt, const uint8_t *w, uint32_t at, const uint8_t *a, int64_t K, int *nan_ok) {
    *nan_ok = 0;
    if (!is_half(wt)) return 1e-5 * abs_terms(wt, w, at, a, K) + 1e-30;
    double S = 0, lost = 0;
    for (int64_t i = 0; i < K; i++) {
        uint16_t hw, ha;
        memcpy(&hw, w + 2 * i, 2);
        memcpy(&ha, a + 2 * i, 2);
        const double p = wt == ND_TYPE_F16 ? (double)nd_fp16_to_fp32(hw) * nd_fp16_to_fp32(ha)
                                           : (double)nd_bf16_to_fp32(hw) * nd_bf16_to_fp32(ha);
        S += fabs(p);
        if (wt == ND_TYPE_BF16 && (bf16_flushed(hw) || bf16_flushed(ha))) lost += fabs(p);
    }
    *nan_ok = isinf(lost);
    return (double)(K + 2) * 0x1p-24 * S + lost + (wt == ND_TYPE_BF16 ? (double)K * 0x1p-126 : 0) + 1e-30;
}

/* y within tol of the oracle r; a non-finite oracle needs the same infinity, or NaN */
static int close_to(float y, float r, double tol, int nan_ok) {
    if (!isfinite(r)) return isnan(r) || nan_ok ? isnan(y) || y == r : y == r;
    return fabs((double)y - (double)r) <= tol;
}

static void *aligned(size_t n) { return aligned_alloc(64, (n + 63) & ~(size_t)63); }

/* one type, one shape: every row group through ops->tile vs the oracle */
static int check_tiles(const k_ops *ops, const k_gemm_ops *g, uint32_t wt, int64_t N, int64_t M, int64_t K,
                       unsigned long long *s) {
    const size_t w_row = q_row_size(wt, K), a_row = q_row_size(ops->atype, K);
    uint8_t *W = make_weights(wt, N, K, s);
    float *X = make_acts(wt, M, K, s);
    uint8_t *A = malloc(a_row * (size_t)M);
    for (int64_t m = 0; m < M; m++) T_CHECK(ops->quantize(X + m * K, A + (size_t)m * a_row, K) == 0);
    size_t p_row = g->act_pack ? (g->act_size(K) + 63) & ~(size_t)63 : a_row;
    uint8_t *P = g->act_pack ? aligned(p_row * (size_t)M) : A;
    if (g->act_pack)
        for (int64_t m = 0; m < M; m++) g->act_pack(A + (size_t)m * a_row, P + (size_t)m * p_row, K);
    void *wtmp = aligned(g->w_size(K));
    float *Y = malloc(sizeof(float) * (size_t)(M * N)), *R = malloc(sizeof(float) * (size_t)(M * N));
    for (int64_t i = 0; i < M * N; i++) Y[i] = NAN;
    for (int64_t n0 = 0; n0 < N; n0 += g->rows) {
        int nr = (int)(N - n0 < g->rows ? N - n0 : g->rows);
        g->tile(W + (size_t)n0 * w_row, w_row, nr, P, p_row, M, K, Y + n0, N, wtmp);
        k_gemm_ref_tile(wt, W + (size_t)n0 * w_row, w_row, nr, ops->atype, A, a_row, M, K, R + n0, N);
    }
    /* gemv (decode) must reproduce the tile bit for bit, token by token */
    float *y1 = malloc(sizeof(float) * (size_t)N);
    int diff = 0;
    for (int64_t m = 0; m < M; m++) {
        g->gemv(W, w_row, N, P + (size_t)m * p_row, K, y1);
        if (memcmp(y1, Y + m * N, sizeof(float) * (size_t)N) != 0 && diff++ < 3)
            T_FAILF("%s N=%lld M=%lld K=%lld: gemv of token %lld differs from the tile",
                    nd_type_info(wt)->name, (long long)N, (long long)M, (long long)K, (long long)m);
    }
    free(y1);
    int bad = 0;
    double worst = 0;
    for (int64_t m = 0; m < M; m++)
        for (int64_t n = 0; n < N; n++) {
            int nan_ok;
            double tol = tol_of(wt, W + (size_t)n * w_row, ops->atype, A + (size_t)m * a_row, K, &nan_ok);
            double e = fabs((double)Y[m * N + n] - (double)R[m * N + n]);
            if (isfinite(R[m * N + n]) && e / tol > worst) worst = e / tol;
            if (!close_to(Y[m * N + n], R[m * N + n], tol, nan_ok) && bad++ < 3)
                T_FAILF("%s N=%lld M=%lld K=%lld: y[%lld][%lld] = %.9g, oracle %.9g (tol %.3g)",
                        nd_type_info(wt)->name, (long long)N, (long long)M, (long long)K,
                        (long long)m, (long long)n, Y[m * N + n], R[m * N + n], tol);
        }
    if (getenv("GEMM_VERBOSE"))
        fprintf(stderr, "  %s N=%lld M=%lld K=%lld: worst error %.3f of tolerance\n",
                nd_type_info(wt)->name, (long long)N, (long long)M, (long long)K, worst);
    free(W), free(X), free(A), free(wtmp), free(Y), free(R);
    if (g->act_pack) free(P);
    return bad;
}

static void test_tiles(void) {
    k_kernels k;
    k_select(&k, K_ISA_BEST);
    int any = 0;
    unsigned long long s = 12345;
    for (size_t i = 0; i < sizeof types / sizeof types[0]; i++) {
        const k_ops *ops = &k.ops[types[i]];
        if (!k.gemm[types[i]]) continue;
        any = 1;
        const int64_t bl = q_blck(types[i]);
        const int64_t Ks[] = {bl, 2 * bl, bl == 32 ? 896 : bl == 1 ? 37 : 1024, bl == 1 ? 1031 : 0};
        const int64_t shapes[][2] = {{16, 8}, {1, 1}, {5, 3}, {17, 9}, {40, 23}, {33, 16}};
        for (size_t a = 0; a < 4 && Ks[a]; a++)
            for (size_t b = 0; b < sizeof shapes / sizeof shapes[0]; b++)
                check_tiles(ops, k.gemm[types[i]], types[i], shapes[b][0], shapes[b][1], Ks[a], &s);
    }
    if (!any) T_SKIP("no tile GEMM on this CPU (needs AVX-512 VNNI)");
}

/* k_matmul with the tiles (threaded) vs the oracle */
static void test_matmul_threads(void) {
    k_kernels k;
    k_select(&k, K_ISA_BEST);
    nd_err err = {0};
    nd_pool *pool = nd_pool_new(3, &err);
    T_CHECK(pool != NULL);
    if (!pool) return;
    k_scratch sc1 = {0};
    k_env e1 = {.kern = &k, .pool = pool, .scratch = &sc1};
    unsigned long long s = 777;
    int any = 0;
    for (size_t i = 0; i < sizeof types / sizeof types[0]; i++) {
        if (!k.gemm[types[i]]) continue;
        any = 1;
      for (int shape = 0; shape < 4; shape++) {
        /* M >= K_GEMM_MIN_TOKENS: shorter batches take the per-row dots */
        static const int64_t shp[4][3] = {{0, 70, 70}, {256, 64, 64}, {512, 256, 65}, {256, 512, 96}};
        const int64_t bl = q_blck(types[i]);
        const int64_t K = shp[shape][0] ? shp[shape][0] : bl == 32 ? 320 : bl == 1 ? 333 : 512;
        const int64_t N = shp[shape][1], M = shp[shape][2];
        uint8_t *W = make_weights(types[i], N, K, &s);
        float *X = make_acts(types[i], M, K, &s);
        float *Y1 = malloc(sizeof(float) * (size_t)(M * N)), *Y2 = malloc(sizeof(float) * (size_t)(M * N));
        T_CHECK(k_matmul(&e1, types[i], W, K, N, X, M, Y1, &err) == 0);
        /* within 1e-5 * sum|terms| of the oracle */
        const k_ops *ops = &k.ops[types[i]];
        const size_t a_row = q_row_size(ops->atype, K), w_row = q_row_size(types[i], K);
        uint8_t *a = malloc(a_row);
        double worst = 0;
        for (int64_t m = 0; m < M; m++) {
            ops->quantize(X + m * K, a, K);
            k_gemm_ref_tile(types[i], W, w_row, (int)N, ops->atype, a, a_row, 1, K, Y2, N);
            for (int64_t n = 0; n < N; n++) {
                int nan_ok;
                double tol = tol_of(types[i], W + (size_t)n * w_row, ops->atype, a, K, &nan_ok);
                if (!close_to(Y1[m * N + n], Y2[n], tol, nan_ok)) worst = fmax(worst, 2);
                else if (isfinite(Y2[n])) worst = fmax(worst, fabs((double)Y1[m * N + n] - Y2[n]) / tol);
            }
        }
        free(a);
        T_CHECKF(worst <= 1, "%s K=%lld N=%lld M=%lld: threaded gemm vs oracle %.3g of tolerance",
                 nd_type_info(types[i])->name, (long long)K, (long long)N, (long long)M, worst);
        free(W), free(X), free(Y1), free(Y2);
      }
    }
    k_scratch_free(&sc1);
    nd_pool_free(pool);
    if (!any) T_SKIP("no tile GEMM on this CPU (needs AVX-512 VNNI)");
}

/* Batch invariance: for the types whose decode dots accumulate blocks in the tiles' float
 * order, a token's outputs are bit-identical whether it is multiplied alone (M = 1: the
 * 4-row decode entry), in a short batch (M = 5: the single-row entry per token) or inside
 * a long prefill (M >= K_GEMM_MIN_TOKENS, the tiles). Row lengths with every remainder of
 * blocks mod 4 (the decode kernels take 4 blocks a step). */
static void test_batch_invariant(void) {
    k_kernels k;
    k_select(&k, K_ISA_BEST);
    static const uint32_t inv[] = {ND_TYPE_Q4_0, ND_TYPE_Q8_0, ND_TYPE_Q5_0};
    static const int64_t Ks[] = {896, 928, 960, 992, 96};
    nd_err err = {0};
    k_scratch sc = {0};
    k_env env = {.kern = &k, .pool = NULL, .scratch = &sc};
    unsigned long long s = 4242;
    int any = 0;
    for (size_t i = 0; i < sizeof inv / sizeof inv[0]; i++)
        for (size_t ki = 0; ki < sizeof Ks / sizeof Ks[0]; ki++) {
            if (!k.gemm[inv[i]]) continue;
            any = 1;
            const int64_t K = Ks[ki], N = 67, M = K_GEMM_MIN_TOKENS + 3, MS = 5;
            uint8_t *W = make_weights(inv[i], N, K, &s);
            float *X = make_acts(inv[i], M, K, &s);
            float *Y = malloc(sizeof(float) * (size_t)(M * N)), *y1 = malloc(sizeof(float) * (size_t)(MS * N));
            T_EQ_INT(k_matmul(&env, inv[i], W, K, N, X, M, Y, &err), 0);
            int diff = 0, diff_s = 0;
            for (int64_t m = 0; m < M; m++) {
                T_EQ_INT(k_matmul(&env, inv[i], W, K, N, X + m * K, 1, y1, &err), 0);
                for (int64_t n = 0; n < N; n++) diff += memcmp(&y1[n], &Y[m * N + n], sizeof(float)) != 0;
            }
            for (int64_t m = 0; m + MS <= M; m += MS) {
                T_EQ_INT(k_matmul(&env, inv[i], W, K, N, X + m * K, MS, y1, &err), 0);
                diff_s += memcmp(y1, Y + m * N, sizeof(float) * (size_t)(MS * N)) != 0;
            }
            T_CHECKF(diff == 0, "%s K=%lld: %d of %lld outputs differ between M = 1 and the tiles",
                     nd_type_info(inv[i])->name, (long long)K, diff, (long long)(M * N));
            T_CHECKF(diff_s == 0, "%s K=%lld: %d batches of %lld tokens differ from the tiles",
                     nd_type_info(inv[i])->name, (long long)K, diff_s, (long long)MS);
            free(W), free(X), free(Y), free(y1);
        }
    k_scratch_free(&sc);
    if (!any) T_SKIP("no tile GEMM on this CPU (needs AVX-512 VNNI)");
}

/* Small-integer halves: every product and partial sum is an integer below 2^24, exact in
 * any order, so the tiles (and the threaded k_matmul over them) must give the oracle's
 * float bit for bit: a wrong element, row, token or pair shows up as a difference. */
static void test_half_exact(void) {
    k_kernels k;
    k_select(&k, K_ISA_BEST);
    nd_err err = {0};
    nd_pool *pool = nd_pool_new(2, &err);
    T_CHECK(pool != NULL);
    if (!pool) return;
    k_scratch sc = {0};
    k_env env = {.kern = &k, .pool = pool, .scratch = &sc};
    static const uint32_t halves[] = {ND_TYPE_F16, ND_TYPE_BF16};
    static const int64_t shp[][3] = {{517, 37, 13}, {4864, 21, 70}, {31, 16, 65}, {2, 5, 9}};
    unsigned long long s = 99;
    int any = 0;
    for (size_t i = 0; i < 2; i++) {
        const uint32_t wt = halves[i];
        const k_gemm_ops *g = k.gemm[wt];
        if (!g) continue;
        any = 1;
        const k_ops *ops = &k.ops[wt];
        for (size_t sh = 0; sh < sizeof shp / sizeof shp[0]; sh++) {
            const int64_t K = shp[sh][0], N = shp[sh][1], M = shp[sh][2];
            const size_t w_row = q_row_size(wt, K), a_row = q_row_size(ops->atype, K);
            float *wf = malloc(sizeof(float) * (size_t)(N * K)), *X = malloc(sizeof(float) * (size_t)(M * K));
            for (int64_t j = 0; j < N * K; j++) wf[j] = (float)((int)(t_rand_u64(&s) % 17) - 8);
            for (int64_t j = 0; j < M * K; j++) X[j] = (float)((int)(t_rand_u64(&s) % 17) - 8);
            uint8_t *W = malloc(w_row * (size_t)N), *A = malloc(a_row * (size_t)M);
            T_EQ_INT(q_quantize_row(wt, wf, W, N * K), 0);
            for (int64_t m = 0; m < M; m++) T_EQ_INT(ops->quantize(X + m * K, A + (size_t)m * a_row, K), 0);
            float *R = malloc(sizeof(float) * (size_t)(M * N)), *Y = malloc(sizeof(float) * (size_t)(M * N));
            k_gemm_ref_tile(wt, W, w_row, (int)N, ops->atype, A, a_row, M, K, R, N);
            /* the tiles directly */
            const size_t p_row = (g->act_size(K) + 63) & ~(size_t)63;
            uint8_t *P = aligned(p_row * (size_t)M);
            void *wtmp = aligned(g->w_size(K));
            for (int64_t m = 0; m < M; m++) g->act_pack(A + (size_t)m * a_row, P + (size_t)m * p_row, K);
            for (int64_t n0 = 0; n0 < N; n0 += g->rows)
                g->tile(W + (size_t)n0 * w_row, w_row, (int)(N - n0 < g->rows ? N - n0 : g->rows), P, p_row, M, K,
                        Y + n0, N, wtmp);
            T_CHECKF(memcmp(Y, R, sizeof(float) * (size_t)(M * N)) == 0, "%s K=%lld N=%lld M=%lld: tile not exact",
                     nd_type_info(wt)->name, (long long)K, (long long)N, (long long)M);
            /* k_matmul (tiles for M >= K_GEMM_MIN_TOKENS, per-row dots below) */
            T_EQ_INT(k_matmul(&env, wt, W, K, N, X, M, Y, &err), 0);
            T_CHECKF(memcmp(Y, R, sizeof(float) * (size_t)(M * N)) == 0,
                     "%s K=%lld N=%lld M=%lld: k_matmul not exact", nd_type_info(wt)->name, (long long)K,
                     (long long)N, (long long)M);
            free(wf), free(X), free(W), free(A), free(R), free(Y), free(P), free(wtmp);
        }
    }
    k_scratch_free(&sc);
    nd_pool_free(pool);
    if (!any) T_SKIP("no F16/BF16 tile GEMM on this CPU (needs AVX-512)");
}


/* k_matmul_n: several weights of mixed types (different activation formats, with and
 * without prepared activations, a part of 3 rows below the 4-row kernels) over one X give
 * bit for bit what k_matmul gives for each alone, single- and multi-threaded, for decode,
 * short batches and prefill; bad part counts are errors. Runs with every ISA's table. */
static void test_matmul_n(void) {
    static const uint32_t wt[4] = {ND_TYPE_Q4_0, ND_TYPE_Q6_K, ND_TYPE_Q8_0, ND_TYPE_F16};
    static const int64_t Ns[4] = {136, 64, 3, 40};
    static const int64_t Ms[] = {1, 5, 12, K_GEMM_MIN_TOKENS + 2};
    const int64_t K = 512;
    nd_err err = {0};
    nd_pool *pool = nd_pool_new(2, &err);
    T_CHECK(pool != NULL);
    if (!pool) return;
    unsigned long long s = 99;
    uint8_t *W[4];
    for (int p = 0; p < 4; p++) W[p] = make_weights(wt[p], Ns[p], K, &s);
    const int64_t MX = K_GEMM_MIN_TOKENS + 2;
    float *X = make_acts(ND_TYPE_Q8_0, MX, K, &s);
    float *Y1[4], *Y2[4];
    for (int p = 0; p < 4; p++) {
        Y1[p] = malloc(sizeof(float) * (size_t)(MX * Ns[p]));
        Y2[p] = malloc(sizeof(float) * (size_t)(MX * Ns[p]));
    }
    static const k_isa isas[] = {K_ISA_SCALAR, K_ISA_AVX2, K_ISA_BEST};
    for (size_t ii = 0; ii < sizeof isas / sizeof isas[0]; ii++)
        for (int threaded = 0; threaded < 2; threaded++) {
            k_kernels k;
            k_select(&k, isas[ii]);
            k_scratch sc = {0};
            k_env env = {.kern = &k, .pool = threaded ? pool : NULL, .scratch = &sc};
            for (size_t mi = 0; mi < sizeof Ms / sizeof Ms[0]; mi++) {
                const int64_t M = Ms[mi];
                k_mat mats[4];
                for (int p = 0; p < 4; p++) {
                    mats[p] = (k_mat){wt[p], W[p], Ns[p], Y1[p], K_LAYOUT_ROWS};
                    T_EQ_INT(k_matmul(&env, wt[p], W[p], K, Ns[p], X, M, Y2[p], &err), 0);
                    memset(Y1[p], 0xFF, sizeof(float) * (size_t)(M * Ns[p]));
                }
                T_EQ_INT(k_matmul_n(&env, mats, 4, K, X, M, &err), 0);
                for (int p = 0; p < 4; p++)
                    T_CHECKF(memcmp(Y1[p], Y2[p], sizeof(float) * (size_t)(M * Ns[p])) == 0,
                             "%s %s M=%lld threads=%d: part %d differs from k_matmul", k_isa_name(k.isa),
                             nd_type_info(wt[p])->name, (long long)M, threaded ? 2 : 1, p);
            }
            k_mat none[5] = {{0}};
            T_EQ_INT(k_matmul_n(&env, none, 0, K, X, 1, &err), ND_EINVAL);
            T_EQ_INT(k_matmul_n(&env, none, K_MATMUL_PARTS + 1, K, X, 1, &err), ND_EINVAL);
            k_scratch_free(&sc);
        }
    for (int p = 0; p < 4; p++) free(W[p]), free(Y1[p]), free(Y2[p]);
    free(X);
    nd_pool_free(pool);
}

int main(void) {
    T_RUN(test_tiles);
    T_RUN(test_half_exact);
    T_RUN(test_batch_invariant);
    T_RUN(test_matmul_threads);
    T_RUN(test_matmul_n);
    return t_done();
}
