/* tests for src/quant: block sizes, round-trip error bounds, edge values, dot products
 * against dequantize-then-dot, imatrix quantization, and byte-exactness against GGUF files
 * quantized by llama.cpp (../shared/fixtures/models/synth-llama-<type>.gguf). */
#include "t.h"

#include <stdint.h>

#include "core/nd.h"
#include "gguf/gguf.h"
#include "quant/quant.h"

static const uint32_t k_weight_types[] = {
    ND_TYPE_F32,  ND_TYPE_F16,  ND_TYPE_BF16, ND_TYPE_Q8_0, ND_TYPE_Q4_0,
    ND_TYPE_Q4_1, ND_TYPE_Q5_0, ND_TYPE_Q5_1, ND_TYPE_Q2_K, ND_TYPE_Q3_K,
    ND_TYPE_Q4_K, ND_TYPE_Q5_K, ND_TYPE_Q6_K,
};
#define N_WTYPES (sizeof k_weight_types / sizeof k_weight_types[0])

static const uint32_t k_all_types[] = {
    ND_TYPE_F32,  ND_TYPE_F16,  ND_TYPE_BF16, ND_TYPE_Q8_0, ND_TYPE_Q8_1,
    ND_TYPE_Q4_0, ND_TYPE_Q4_1, ND_TYPE_Q5_0, ND_TYPE_Q5_1, ND_TYPE_Q2_K,
    ND_TYPE_Q3_K, ND_TYPE_Q4_K, ND_TYPE_Q5_K, ND_TYPE_Q6_K, ND_TYPE_Q8_K,
};
#define N_ALLTYPES (sizeof k_all_types / sizeof k_all_types[0])

static const char *tname(uint32_t t) {
    const nd_type_traits *tr = nd_type_info(t);
    return tr && tr->name ? tr->name : "?";
}

static float gauss(unsigned long long *s) {
    double u1 = ((double)(t_rand_u64(s) >> 40) + 0.5) / 16777216.0;
    double u2 = ((double)(t_rand_u64(s) >> 40) + 0.5) / 16777216.0;
    return (float)(sqrt(-2.0 * log(u1)) * cos(6.283185307179586 * u2));
}

static void fill_gauss(float *x, int64_t n, unsigned long long seed, float scale) {
    unsigned long long s = seed;
    for (int64_t i = 0; i < n; i++) x[i] = scale * gauss(&s);
}

/* RMS(a - b) / RMS(b); if RMS(b) == 0, returns RMS(a - b). */
static double rel_rms(const float *a, const float *b, int64_t n) {
    double e = 0, r = 0;
    for (int64_t i = 0; i < n; i++) {
        double d = (double)a[i] - (double)b[i];
        e += d * d;
        r += (double)b[i] * b[i];
    }
    return r > 0 ? sqrt(e / r) : sqrt(e / (double)n);
}

/* quantize -> dequantize; returns relative RMS error, or -1 on API failure. */
static double roundtrip(uint32_t type, const float *x, int64_t n, const float *imat) {
    size_t rs = q_row_size(type, n);
    uint8_t *q = malloc(rs ? rs : 1);
    float *y = malloc((size_t)n * sizeof *y);
    double r = -1;
    if (q && y && q_quantize_row_imat(type, x, q, n, imat) == 0 &&
        q_dequantize_row(type, q, y, n) == 0)
        r = rel_rms(y, x, n);
    free(q);
    free(y);
    return r;
}

/* ------------------------------------------------------------------ sizes */

static void test_sizes(void) {
    for (size_t i = 0; i < N_ALLTYPES; i++) {
        uint32_t t = k_all_types[i];
        const nd_type_traits *tr = nd_type_info(t);
        T_CHECK(tr != NULL);
        if (!tr) continue;
        T_CHECKF(q_block_bytes(t) == tr->bytes, "%s: %u bytes vs core %u", tname(t),
                 q_block_bytes(t), tr->bytes);
        T_CHECKF(q_blck(t) == tr->blck, "%s: blck %u vs core %u", tname(t), q_blck(t), tr->blck);
        T_CHECK(q_type_ok(t));
        uint64_t rb = 0;
        T_EQ_INT(nd_row_bytes(t, 4096, &rb, NULL), 0);
        T_EQ_INT(q_row_size(t, 4096), rb);
    }
    T_EQ_INT(sizeof(q_block_q4_0), 18);
    T_EQ_INT(sizeof(q_block_q8_K), 292);
    T_EQ_INT(q_row_size(ND_TYPE_Q4_K, 100), 0);
    T_EQ_INT(q_row_size(ND_TYPE_IQ2_XS, 256), 0);
    T_CHECK(!q_is_weight_type(ND_TYPE_Q8_K));
    T_CHECK(!q_is_weight_type(ND_TYPE_Q8_1));
    T_CHECK(q_is_weight_type(ND_TYPE_Q6_K));
}

static void test_errors(void) {
    float x[256] = {0};
    uint8_t buf[512];
    T_EQ_INT(q_quantize_row(ND_TYPE_Q4_0, x, buf, 33), ND_EINVAL);
    T_EQ_INT(q_quantize_row(ND_TYPE_Q4_K, x, buf, 32), ND_EINVAL);
    T_EQ_INT(q_quantize_row(ND_TYPE_Q4_K, x, buf, -256), ND_EINVAL);
    T_EQ_INT(q_quantize_row(ND_TYPE_IQ4_NL, x, buf, 32), ND_EUNSUPPORTED);
    T_EQ_INT(q_quantize_row(12345, x, buf, 32), ND_EUNSUPPORTED);
    T_EQ_INT(q_dequantize_row(ND_TYPE_Q5_1, buf, x, 31), ND_EINVAL);
    T_EQ_INT(q_dequantize_row(ND_TYPE_I8, buf, x, 32), ND_EUNSUPPORTED);
    T_EQ_INT(q_quantize_row_imat(ND_TYPE_Q6_K, x, buf, 100, x), ND_EINVAL);
    T_EQ_INT(q_quantize_act(ND_TYPE_Q4_0, x, buf, 32), ND_EUNSUPPORTED);
    T_EQ_INT(q_vec_dot_check(ND_TYPE_Q4_0, ND_TYPE_Q8_K, 32), ND_EINVAL);
    T_EQ_INT(q_vec_dot_check(ND_TYPE_Q8_K, ND_TYPE_Q8_K, 256), ND_EUNSUPPORTED);
    T_EQ_INT(q_vec_dot_check(ND_TYPE_Q4_K, ND_TYPE_Q8_K, 255), ND_EINVAL);
    T_EQ_INT(q_vec_dot_check(ND_TYPE_Q4_K, ND_TYPE_Q8_K, 512), 0);
    T_EQ_INT(q_vec_dot_type(ND_TYPE_Q4_1), ND_TYPE_Q8_1);
    T_EQ_INT(q_vec_dot_type(ND_TYPE_Q5_0), ND_TYPE_Q8_0);
    T_EQ_INT(q_vec_dot_type(ND_TYPE_Q3_K), ND_TYPE_Q8_K);
    T_EQ_INT(q_vec_dot_type(ND_TYPE_BF16), ND_TYPE_BF16);
    T_EQ_INT(q_vec_dot_type(ND_TYPE_Q8_K), UINT32_MAX);
    T_EQ_INT(q_quantize_row(ND_TYPE_Q4_0, x, buf, 0), 0); /* empty row is fine */
}

/* ------------------------------------------------------------- round trips */

#define N_RT 65536

static void test_roundtrip_gaussian(void) {
    float *x = malloc(N_RT * sizeof *x);
    T_CHECK(x != NULL);
    if (!x) return;
    fill_gauss(x, N_RT, 42, 1.0f);
    for (size_t i = 0; i < N_ALLTYPES; i++) {
        uint32_t t = k_all_types[i];
        double e = roundtrip(t, x, N_RT, NULL), b = q_rms_bound(t);
        printf("  roundtrip %-5s rel rms %.5f (bound %.4f)\n", tname(t), e, b);
        T_CHECKF(e >= 0 && e <= b, "%s: rel rms %.5f > bound %.4f", tname(t), e, b);
    }
    free(x);
}

typedef enum { E_ZERO, E_CONST, E_NEGCONST, E_HUGE, E_TINY, E_OUTLIER, E_NEGONLY, E_SPARSE,
               E_COUNT } edge_kind;
static const char *const k_edge_names[E_COUNT] = {"zeros", "const", "negconst", "huge",
                                                  "tiny",  "outlier", "negonly", "sparse"};

static void fill_edge(edge_kind k, float *x, int64_t n) {
    fill_gauss(x, n, 7 + (unsigned)k, 1.0f);
    for (int64_t i = 0; i < n; i++) {
        switch (k) {
        case E_ZERO: x[i] = 0; break;
        case E_CONST: x[i] = 0.37f; break;
        case E_NEGCONST: x[i] = -1.5f; break;
        case E_HUGE: x[i] *= 1000.0f; break;   /* scales stay inside fp16 range */
        case E_TINY: x[i] *= 1e-3f; break;
        case E_OUTLIER: if (i == n / 3) x[i] = 60.0f; break;
        case E_NEGONLY: x[i] = -fabsf(x[i]); break;
        case E_SPARSE: if (i % 7) x[i] = 0; break;
        default: break;
        }
    }
}

/* Edge rows: every value finite after the round trip, zeros exact, and the error within
 * a per-case multiple of the Gaussian bound (outliers blow up the other elements' error in
 * absolute terms but not relative to the row RMS, which the outlier dominates). */
static void test_roundtrip_edges(void) {
    const int64_t n = 2048;
    float *x = malloc(n * sizeof *x), *y = malloc(n * sizeof *y);
    uint8_t *q = malloc(q_row_size(ND_TYPE_F32, n));
    T_CHECK(x && y && q);
    if (!x || !y || !q) goto out;
    for (int k = 0; k < E_COUNT; k++) {
        fill_edge((edge_kind)k, x, n);
        for (size_t i = 0; i < N_ALLTYPES; i++) {
            uint32_t t = k_all_types[i];
            T_EQ_INT(q_quantize_row(t, x, q, n), 0);
            T_EQ_INT(q_dequantize_row(t, q, y, n), 0);
            int finite = 1;
            for (int64_t j = 0; j < n; j++) finite &= isfinite(y[j]) != 0;
            T_CHECKF(finite, "%s/%s: non-finite output", tname(t), k_edge_names[k]);
            double e = rel_rms(y, x, n), b = q_rms_bound(t);
            /* tiny values: fp16 scales go subnormal, allow more error */
            double lim = k == E_ZERO ? 0 : k == E_TINY ? 2 * b + 0.002 : 1.5 * b + 1e-6;
            /* one big value per 256-block: Q8_K's single scale leaves the rest few levels */
            if (k == E_OUTLIER && lim < 0.04) lim = 0.04;
            if (k == E_SPARSE && (t == ND_TYPE_Q2_K || t == ND_TYPE_Q3_K)) lim = 2 * b;
            T_CHECKF(e <= lim, "%s/%s: rel rms %.5f > %.5f", tname(t), k_edge_names[k], e, lim);
        }
    }
out:
    free(x);
    free(y);
    free(q);
}

/* A zero row dequantizes to exact zeros for every type (and is all-zero bytes where the
 * format has no level offset); rows whose values sit exactly on the levels of a power-of-
 * two scale round-trip exactly for the symmetric formats. */
static void test_exact_cases(void) {
    float x[256], y[256];
    uint8_t q[1100];
    for (int i = 0; i < 256; i++) x[i] = 0;
    for (size_t i = 0; i < N_ALLTYPES; i++) {
        uint32_t t = k_all_types[i];
        memset(q, 0xAB, sizeof q);
        T_EQ_INT(q_quantize_row(t, x, q, 256), 0);
        size_t rs = q_row_size(t, 256);
        int zero = 1;
        for (size_t j = 0; j < rs; j++) zero &= q[j] == 0;
        T_EQ_INT(q_dequantize_row(t, q, y, 256), 0);
        for (int j = 0; j < 256; j++) T_CHECKF(y[j] == 0.0f, "%s: zero row -> %g", tname(t), y[j]);
        if (t == ND_TYPE_Q8_0 || t == ND_TYPE_Q8_K || t == ND_TYPE_F32 || t == ND_TYPE_F16 ||
            t == ND_TYPE_BF16 || t == ND_TYPE_Q6_K)
            T_CHECKF(zero, "%s: zero row not all-zero bytes", tname(t));
    }
    const struct { uint32_t t; int lo, hi; } lv[] = {
        {ND_TYPE_Q4_0, -8, 7}, {ND_TYPE_Q5_0, -16, 15}, {ND_TYPE_Q8_0, -127, 127},
        {ND_TYPE_Q8_1, -127, 127}, {ND_TYPE_Q8_K, -127, 127}, {ND_TYPE_F16, -127, 127},
    };
    const float s = 1.0f / 64;
    for (size_t k = 0; k < sizeof lv / sizeof lv[0]; k++) {
        int range = lv[k].hi - lv[k].lo + 1;
        for (int i = 0; i < 256; i++)
            x[i] = s * (float)((i % 32 == 0) ? lv[k].lo : lv[k].lo + (i * 37) % range);
        T_EQ_INT(q_quantize_row(lv[k].t, x, q, 256), 0);
        T_EQ_INT(q_dequantize_row(lv[k].t, q, y, 256), 0);
        double e = rel_rms(y, x, 256);
        T_CHECKF(e == 0, "%s: on-grid row error %g", tname(lv[k].t), e);
    }
}

/* Non-finite inputs have no meaningful encoding; they must still be memory-safe and free
 * of undefined behaviour (make check runs this under UBSan), and leave finite blocks of
 * the same row untouched. */
static void test_nonfinite(void) {
    const int64_t n = 512;
    float x[512], y[512], xs[512];
    uint8_t q[2048], qs[2048];
    const float bad[] = {NAN, INFINITY, -INFINITY, 3e38f};
    for (size_t b = 0; b < sizeof bad / sizeof bad[0]; b++) {
        fill_gauss(x, n, 3, 1.0f);
        memcpy(xs, x, sizeof x);
        x[5] = bad[b];                 /* first block poisoned, second 256 clean */
        for (size_t i = 0; i < N_ALLTYPES; i++) {
            uint32_t t = k_all_types[i];
            T_EQ_INT(q_quantize_row(t, x, q, n), 0);
            T_EQ_INT(q_dequantize_row(t, q, y, n), 0);
            T_EQ_INT(q_quantize_row(t, xs, qs, n), 0);
            size_t half = q_row_size(t, 256);
            T_CHECKF(memcmp(q + half, qs + half, half) == 0, "%s: clean block changed", tname(t));
        }
        uint32_t wt = ND_TYPE_Q4_K;
        T_EQ_INT(q_quantize_act(q_vec_dot_type(wt), x, qs, n), 0);
        T_EQ_INT(q_quantize_row(wt, xs, q, n), 0);
        (void)q_vec_dot(wt, q, q_vec_dot_type(wt), qs, n);
    }
}

/* -------------------------------------------------------------- dot products */

/* q_vec_dot must equal the dot of the dequantized rows up to float rounding (the integer
 * part is exact), and approximate the float dot within the quantization error. */
static void test_vec_dot(void) {
    const int64_t n = 4096;
    float *w = malloc(n * sizeof *w), *a = malloc(n * sizeof *a);
    float *wd = malloc(n * sizeof *wd), *ad = malloc(n * sizeof *ad);
    uint8_t *wq = malloc(q_row_size(ND_TYPE_F32, n)), *aq = malloc(q_row_size(ND_TYPE_F32, n));
    T_CHECK(w && a && wd && ad && wq && aq);
    if (!(w && a && wd && ad && wq && aq)) goto out;
    for (int rep = 0; rep < 4; rep++) {
        fill_gauss(w, n, 100 + rep, 0.05f);
        fill_gauss(a, n, 200 + rep, 2.0f);
        if (rep == 1) /* activations with an offset exercise the min terms */
            for (int64_t i = 0; i < n; i++) a[i] += 1.0f;
        if (rep == 2) /* outlier activations */
            for (int64_t i = 0; i < n; i += 97) a[i] *= 30.0f;
        if (rep == 3) /* short row: one block of the largest format */
            for (int64_t i = 256; i < n; i++) w[i] = a[i] = 0;
        double exact = 0, mag = 0;
        for (int64_t i = 0; i < n; i++) {
            exact += (double)w[i] * a[i];
            mag += fabs((double)w[i] * a[i]);
        }
        for (size_t ti = 0; ti < N_WTYPES; ti++) {
            uint32_t wt = k_weight_types[ti], at = q_vec_dot_type(wt);
            T_EQ_INT(q_vec_dot_check(wt, at, n), 0);
            T_EQ_INT(q_quantize_row(wt, w, wq, n), 0);
            T_EQ_INT(q_quantize_act(at, a, aq, n), 0);
            T_EQ_INT(q_dequantize_row(wt, wq, wd, n), 0);
            T_EQ_INT(q_dequantize_row(at, aq, ad, n), 0);
            double ref = 0, refmag = 0;
            for (int64_t i = 0; i < n; i++) {
                ref += (double)wd[i] * ad[i];
                refmag += fabs((double)wd[i] * ad[i]);
            }
            float got = q_vec_dot(wt, wq, at, aq, n);
            /* float accumulation over n/blck blocks; the Q8_1 s term is fp16-rounded */
            double tol = 2e-6 * refmag + 1e-30;
            if (at == ND_TYPE_Q8_1) tol = 2e-3 * refmag;
            T_CHECKF(fabs(got - ref) <= tol, "%s rep %d: dot %.9g vs dequant dot %.9g (tol %g)",
                     tname(wt), rep, got, ref, tol);
            /* vs the float dot: quantization error of both operands */
            double qb = q_rms_bound(wt) + q_rms_bound(at) + 1e-6;
            T_CHECKF(fabs(got - exact) <= 4 * qb * mag / sqrt((double)n) * 4 + 1e-6,
                     "%s rep %d: dot %.6g vs float dot %.6g", tname(wt), rep, got, exact);
        }
    }
out:
    free(w); free(a); free(wd); free(ad); free(wq); free(aq);
}

/* ----------------------------------------------------------------- imatrix */

/* With an imatrix the quantizers minimise the importance-weighted error: a run with the
 * same data and an emphasised subset of columns must (in aggregate) reduce the weighted
 * error versus the unweighted reference, and a flat imatrix must stay within bounds. */
static void test_imatrix(void) {
    const int64_t n = 1024, rows = 16;
    float *x = malloc(n * rows * sizeof *x), *y = malloc(n * sizeof *y);
    float *imat = malloc(n * sizeof *imat), *flat = malloc(n * sizeof *flat);
    uint8_t *q = malloc(q_row_size(ND_TYPE_F32, n));
    T_CHECK(x && y && imat && flat && q);
    if (!(x && y && imat && flat && q)) goto out;
    fill_gauss(x, n * rows, 77, 1.0f);
    unsigned long long s = 5;
    for (int64_t i = 0; i < n; i++) {
        imat[i] = (t_rand_u64(&s) % 8 == 0) ? 50.0f : 0.5f + 0.5f * (t_rand_f(&s) + 1);
        flat[i] = 1.0f;
    }
    const uint32_t types[] = {ND_TYPE_Q4_0, ND_TYPE_Q4_1, ND_TYPE_Q5_0, ND_TYPE_Q5_1,
                              ND_TYPE_Q2_K, ND_TYPE_Q3_K, ND_TYPE_Q4_K, ND_TYPE_Q5_K,
                              ND_TYPE_Q6_K, ND_TYPE_Q8_0};
    for (size_t ti = 0; ti < sizeof types / sizeof types[0]; ti++) {
        uint32_t t = types[ti];
        double werr_ref = 0, werr_imat = 0, flat_worst = 0;
        for (int64_t r = 0; r < rows; r++) {
            const float *xr = x + r * n;
            for (int pass = 0; pass < 2; pass++) {
                T_EQ_INT(q_quantize_row_imat(t, xr, q, n, pass ? imat : NULL), 0);
                T_EQ_INT(q_dequantize_row(t, q, y, n), 0);
                double we = 0;
                for (int64_t i = 0; i < n; i++) we += imat[i] * (y[i] - xr[i]) * (y[i] - xr[i]);
                if (pass) werr_imat += we; else werr_ref += we;
            }
            double e = roundtrip(t, xr, n, flat);
            if (e > flat_worst) flat_worst = e;
        }
        double gain = werr_imat / werr_ref;
        printf("  imatrix %-5s weighted err ratio %.3f, flat-imatrix rel rms %.4f\n", tname(t),
               gain, flat_worst);
        if (t == ND_TYPE_Q8_0)
            T_CHECK(gain == 1.0); /* Q8_0 ignores the imatrix, as llama.cpp */
        else
            T_CHECKF(gain < 0.97, "%s: imatrix did not reduce weighted error (%.3f)", tname(t),
                     gain);
        T_CHECKF(flat_worst <= 1.3 * q_rms_bound(t), "%s: flat imatrix rel rms %.4f", tname(t),
                 flat_worst);
    }
out:
    free(x); free(y); free(imat); free(flat); free(q);
}

/* ------------------------------------------------- llama.cpp byte-exactness */

/* For each weight type: quantize every 2-D tensor of synth-llama-f32.gguf with our
 * reference and compare with the same tensor of synth-llama-<type>.gguf (quantized by
 * llama.cpp, no imatrix). Also checks that dequantizing llama.cpp's data is close to the
 * F32 source. */
static void check_family(const char *fx, const char *family, int *checked) {
    char path[1024];
    snprintf(path, sizeof path, "%s/models/synth-%s-f32.gguf", fx, family);
    nd_err err = {0};
    gguf_ctx *f32 = gguf_open(path, &err);
    if (!f32) {
        printf("  %s: %s\n", path, err.msg);
        return;
    }
    static const char *const names[] = {"f16",  "bf16", "q8_0", "q4_0", "q4_1",
                                        "q5_0", "q5_1", "q2_k", "q3_k", "q4_k",
                                        "q5_k", "q6_k"};
    for (size_t ni = 0; ni < sizeof names / sizeof names[0]; ni++) {
        snprintf(path, sizeof path, "%s/models/synth-%s-%s.gguf", fx, family, names[ni]);
        gguf_ctx *qc = gguf_open(path, &err);
        if (!qc) continue; /* not every family has every type */
        uint64_t blocks = 0, blocks_eq = 0, bytes = 0, bytes_eq = 0;
        double worst_rms = 0;
        uint32_t type = UINT32_MAX;
        for (uint64_t ti = 0; ti < qc->n_tensors; ti++) {
            const gguf_tensor *tq = &qc->tensors[ti];
            if (tq->n_dims != 2) continue;
            const gguf_tensor *tf = gguf_find_tensor(f32, tq->name);
            T_CHECKF(tf && tf->type == ND_TYPE_F32 && tf->n_elems == tq->n_elems,
                     "%s: %s has no F32 twin", names[ni], tq->name);
            if (!tf || tf->type != ND_TYPE_F32 || tf->n_elems != tq->n_elems) continue;
            type = tq->type;
            int64_t n = (int64_t)tq->n_elems;
            size_t rs = q_row_size(type, n), bb = q_block_bytes(type);
            T_CHECKF(rs == tq->nbytes, "%s: %s size %zu vs %llu", names[ni], tq->name, rs,
                     (unsigned long long)tq->nbytes);
            uint8_t *mine = malloc(rs);
            float *src = malloc((size_t)n * sizeof *src), *deq = malloc((size_t)n * sizeof *deq);
            if (!mine || !src || !deq || rs != tq->nbytes) {
                free(mine); free(src); free(deq);
                T_CHECK(0);
                continue;
            }
            memcpy(src, tf->data, (size_t)n * sizeof *src); /* mapping may be unaligned */
            T_EQ_INT(q_quantize_row(type, src, mine, n), 0);
            for (size_t b = 0; b < rs / bb; b++) {
                int same = memcmp(mine + b * bb, tq->data + b * bb, bb) == 0;
                blocks++;
                blocks_eq += same;
                const uint8_t *mb = mine + b * bb, *lb = tq->data + b * bb;
                if (!same)
                    for (size_t k = 0; k < bb; k++) bytes_eq += mb[k] == lb[k];
                else
                    bytes_eq += bb;
                bytes += bb;
            }
            T_EQ_INT(q_dequantize_row(type, tq->data, deq, n), 0);
            double e = rel_rms(deq, src, n);
            if (e > worst_rms) worst_rms = e;
            free(mine); free(src); free(deq);
        }
        (*checked)++;
        printf("  %s %-5s (%s): %llu/%llu blocks, %llu/%llu bytes identical to llama.cpp; "
               "dequant rel rms %.5f\n", family, names[ni], tname(type),
               (unsigned long long)blocks_eq,
               (unsigned long long)blocks, (unsigned long long)bytes_eq,
               (unsigned long long)bytes, worst_rms);
        T_CHECKF(blocks > 0 && blocks_eq == blocks, "%s %s: %llu of %llu blocks differ", family,
                 names[ni],
                 (unsigned long long)(blocks - blocks_eq), (unsigned long long)blocks);
        /* fixture weights are not Gaussian; allow 1.5x the Gaussian bound */
        T_CHECKF(worst_rms <= 1.5 * q_rms_bound(type) + 1e-7, "%s: dequant rel rms %.5f",
                 names[ni], worst_rms);
        gguf_close(qc);
    }
    gguf_close(f32);
}

static void test_llama_fixtures(void) {
    const char *fx = t_fixtures();
    if (!fx) T_SKIP("no fixtures folder");
    int checked = 0;
    check_family(fx, "llama", &checked);
    check_family(fx, "qwen2", &checked);
    check_family(fx, "phi3", &checked);
    if (!checked) T_SKIP("no quantized synth-* fixtures");
}

int main(void) {
    T_RUN(test_sizes);
    T_RUN(test_errors);
    T_RUN(test_roundtrip_gaussian);
    T_RUN(test_roundtrip_edges);
    T_RUN(test_exact_cases);
    T_RUN(test_nonfinite);
    T_RUN(test_vec_dot);
    T_RUN(test_imatrix);
    T_RUN(test_llama_fixtures);
    return t_done();
}
