/* nindub quantize: rewrite a model's weights in another type.
 *
 *   nindub quantize [options] in.gguf out.gguf TYPE
 *
 * Which tensors get which type (the recipe; llama.cpp's choices, simplified):
 *  - only 2-D ".weight" tensors are converted; 1-D tensors (norms, biases, rope factors)
 *    keep their type (F32);
 *  - the output projection (output.weight, or token_embd.weight when the model ties its
 *    output to the embedding) gets Q6_K for every quantized TYPE below Q6_K;
 *  - the _M mixes spend more bits where quality is most sensitive:
 *      Q3_K_M: attn_v Q5_K in the first 2 layers else Q4_K; ffn_down Q5_K in the first
 *              1/16 of the layers else Q4_K; attn_output Q4_K; the rest Q3_K
 *      Q4_K_M: attn_v and ffn_down Q6_K in "more bits" layers (the first and last 1/8 and
 *              every third in between), else Q4_K; the rest Q4_K
 *      Q5_K_M: the same with Q5_K as the base
 *  - --pure: every converted tensor gets TYPE, the output projection included;
 *    --output-type / --embd-type override those two tensors;
 *  - a row length that is not a multiple of the block size falls back: Q2_K, Q3_K -> Q4_0
 *    (llama.cpp uses IQ4_NL, which nindub does not run yet), Q4_K -> Q5_0, Q5_K -> Q5_1,
 *    Q6_K -> Q8_0, 32-blocks -> F16; the summary lists every fallback.
 * With --imatrix FILE (from `nindub imatrix` or llama.cpp's GGUF imatrix: tensors
 * "<name>.in_sum2" and "<name>.counts"), block scales minimise the importance-weighted
 * squared error. The output is written atomically (temp file + rename).
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "core/pool.h"
#include "gguf/gguf.h"
#include "quant/quant.h"
#include "tools/tools.h"

/* llama.cpp's general.file_type values for what we write. */
typedef struct qrecipe {
    const char *name;
    uint32_t base;      /* nd_type of most tensors */
    uint32_t file_type; /* general.file_type */
    int mix;            /* 0 none, 3 / 4 / 5: the Q3_K_M / Q4_K_M / Q5_K_M rules */
} qrecipe;

static const qrecipe recipes[] = {
    {"f32", ND_TYPE_F32, 0, 0},      {"f16", ND_TYPE_F16, 1, 0},      {"bf16", ND_TYPE_BF16, 32, 0},
    {"q8_0", ND_TYPE_Q8_0, 7, 0},    {"q4_0", ND_TYPE_Q4_0, 2, 0},    {"q4_1", ND_TYPE_Q4_1, 3, 0},
    {"q5_0", ND_TYPE_Q5_0, 8, 0},    {"q5_1", ND_TYPE_Q5_1, 9, 0},    {"q2_k", ND_TYPE_Q2_K, 10, 0},
    {"q3_k", ND_TYPE_Q3_K, 11, 0},   {"q3_k_s", ND_TYPE_Q3_K, 11, 0}, {"q3_k_m", ND_TYPE_Q3_K, 12, 3},
    {"q4_k", ND_TYPE_Q4_K, 14, 0},   {"q4_k_s", ND_TYPE_Q4_K, 14, 0}, {"q4_k_m", ND_TYPE_Q4_K, 15, 4},
    {"q5_k", ND_TYPE_Q5_K, 16, 0},   {"q5_k_s", ND_TYPE_Q5_K, 16, 0}, {"q5_k_m", ND_TYPE_Q5_K, 17, 5},
    {"q6_k", ND_TYPE_Q6_K, 18, 0},
};
#define N_RECIPES (sizeof recipes / sizeof recipes[0])

typedef struct qjob {
    const gguf_tensor *src;
    uint32_t type;     /* output type */
    bool convert;      /* false: copied as is */
    bool fell_back;
    const float *imat; /* ne[0] importances or NULL */
} qjob;

typedef struct qctx {
    gguf_ctx *in;
    qjob *jobs;
    nd_pool *pool;
    float **rowbuf;    /* per thread: one dequantized row */
    /* per-run state */
    const qjob *job;
    uint8_t *dst;
    _Atomic int rc;    /* first failure of any thread */
    nd_progress prog;
    uint64_t done_bytes;
} qctx;

static bool more_bits(uint32_t i, uint32_t n) {
    return i < n / 8 || i >= 7 * n / 8 || (i - n / 8) % 3 == 2;
}

static uint32_t fallback_type(uint32_t t) {
    switch (t) {
    case ND_TYPE_Q2_K: case ND_TYPE_Q3_K: return ND_TYPE_Q4_0;
    case ND_TYPE_Q4_K: return ND_TYPE_Q5_0;
    case ND_TYPE_Q5_K: return ND_TYPE_Q5_1;
    case ND_TYPE_Q6_K: return ND_TYPE_Q8_0;
    default: return ND_TYPE_F16;
    }
}

/* Layer index of "blk.N.xxx", or -1. */
static int layer_of(const char *name) {
    if (strncmp(name, "blk.", 4)) return -1;
    return atoi(name + 4);
}

static bool ends_with(const char *s, const char *suffix) {
    size_t a = strlen(s), b = strlen(suffix);
    return a >= b && !strcmp(s + a - b, suffix);
}

/* The type the recipe gives tensor t (before the block-size fallback). */
static uint32_t pick_type(const qrecipe *r, const gguf_tensor *t, bool is_output, bool is_embd,
                          uint32_t n_layer, bool pure, int out_type, int embd_type) {
    if (is_output && out_type >= 0) return (uint32_t)out_type;
    if (is_embd && !is_output && embd_type >= 0) return (uint32_t)embd_type;
    if (pure) return r->base;
    uint32_t b = r->base;
    bool quantized = b != ND_TYPE_F32 && b != ND_TYPE_F16 && b != ND_TYPE_BF16;
    if (is_output) return quantized && b != ND_TYPE_Q8_0 && b != ND_TYPE_Q6_K ? ND_TYPE_Q6_K : b;
    int l = layer_of(t->name);
    uint32_t li = l < 0 ? 0 : (uint32_t)l;
    bool attn_v = strstr(t->name, "attn_v.weight") != NULL;
    bool ffn_down = strstr(t->name, "ffn_down") != NULL;
    switch (r->mix) {
    case 3:
        if (attn_v) return li < 2 ? ND_TYPE_Q5_K : ND_TYPE_Q4_K;
        if (ffn_down) return li < n_layer / 16 ? ND_TYPE_Q5_K : ND_TYPE_Q4_K;
        if (strstr(t->name, "attn_output")) return ND_TYPE_Q4_K;
        return b;
    case 4: case 5:
        if ((attn_v || ffn_down) && more_bits(li, n_layer)) return ND_TYPE_Q6_K;
        return b;
    default: return b;
    }
}

/* ------------------------------------------------------------- conversion */

static void quantize_rows(void *ctx, int ith, int nth) {
    qctx *q = ctx;
    const qjob *j = q->job;
    const gguf_tensor *t = j->src;
    int64_t n = (int64_t)t->ne[0], rows = (int64_t)(t->n_elems / t->ne[0]);
    int64_t r0 = rows * ith / nth, r1 = rows * (ith + 1) / nth;
    size_t sb = q_row_size(t->type, n), db = q_row_size(j->type, n);
    float *buf = q->rowbuf[ith];
    for (int64_t r = r0; r < r1; r++) {
        const uint8_t *src = t->data + (size_t)r * sb;
        const float *x = (const float *)src;
        if (t->type != ND_TYPE_F32 || ((uintptr_t)src & 3)) {
            if (q_dequantize_row(t->type, src, buf, n)) { q->rc = ND_EFORMAT; return; }
            x = buf;
        }
        int rc = j->imat ? q_quantize_row_imat(j->type, x, q->dst + (size_t)r * db, n, j->imat)
                         : q_quantize_row(j->type, x, q->dst + (size_t)r * db, n);
        if (rc) { q->rc = rc; return; }
    }
}

static int fill(void *user, uint64_t index, void *dst, uint64_t nbytes, nd_err *err) {
    qctx *q = user;
    const qjob *j = &q->jobs[index];
    if (!j->convert) {
        memcpy(dst, j->src->data, nbytes);
    } else {
        q->job = j;
        q->dst = dst;
        q->rc = 0;
        nd_pool_run(q->pool, quantize_rows, q);
        if (q->rc)
            return nd_seterr(err, q->rc, "tensor '%s': conversion to %s failed (non-finite weights?)",
                             j->src->name, nd_type_info(j->type)->name);
    }
    q->done_bytes += j->src->nbytes;
    nd_progress_update(&q->prog, q->done_bytes);
    return 0;
}

/* Importance vectors from an imatrix GGUF: "<name>.in_sum2" / "<name>.counts". */
static const float *imatrix_for(gguf_ctx *im, const gguf_tensor *t, float **owned, nd_err *err) {
    char key[512];
    snprintf(key, sizeof key, "%s.in_sum2", t->name);
    const gguf_tensor *s2 = gguf_find_tensor(im, key);
    if (!s2) return NULL;
    if (s2->type != ND_TYPE_F32 || s2->ne[0] != t->ne[0]) {
        nd_seterr(err, ND_EFORMAT, "imatrix tensor '%s' is not F32 of length %llu", key,
                  (unsigned long long)t->ne[0]);
        return NULL;
    }
    snprintf(key, sizeof key, "%s.counts", t->name);
    const gguf_tensor *cn = gguf_find_tensor(im, key);
    float count = 1;
    if (cn && cn->type == ND_TYPE_F32 && cn->n_elems >= 1) memcpy(&count, cn->data, sizeof count);
    float *v = nd_malloc(t->ne[0] * sizeof *v);
    if (!v) return NULL;
    for (uint64_t i = 0; i < t->ne[0]; i++) {
        float x;
        memcpy(&x, s2->data + 4 * i, 4);
        v[i] = count > 0 ? x / count : x;
    }
    *owned = v;
    return v;
}

static void usage(FILE *f) {
    fprintf(f,
            "usage: nindub quantize [options] in.gguf out.gguf TYPE\n"
            "  TYPE: f32 f16 bf16 q8_0 q4_0 q4_1 q5_0 q5_1 q2_k q3_k(_s) q3_k_m q4_k(_s) q4_k_m\n"
            "        q5_k(_s) q5_k_m q6_k\n"
            "  --pure               every 2-D weight gets TYPE (no output/_M promotions)\n"
            "  --output-type T      type of the output projection\n"
            "  --embd-type T        type of token_embd.weight\n"
            "  --imatrix FILE       importance matrix (GGUF) for weighted block scales\n"
            "  --allow-requantize   accept quantized input (quality drops twice)\n"
            "  -t N                 threads (default: all CPUs)\n");
}

static int parse_type_arg(const char *s, const char *flag) {
    int t = nd_type_from_name(s);
    if (t < 0 || !q_is_weight_type((uint32_t)t)) {
        fprintf(stderr, "nindub quantize: %s: unknown type '%s'\n", flag, s);
        return -2;
    }
    return t;
}

int tool_quantize(int argc, char **argv) {
    const char *pos[3] = {0}, *imat_path = NULL;
    int npos = 0, out_type = -1, embd_type = -1, threads = nd_pool_default_threads();
    bool pure = false, requant = false;
    for (int i = 1; i < argc; i++) {
        const char *a = argv[i];
        bool has = i + 1 < argc;
        if (!strcmp(a, "-h") || !strcmp(a, "--help")) { usage(stdout); return 0; }
        else if (!strcmp(a, "--pure")) pure = true;
        else if (!strcmp(a, "--allow-requantize")) requant = true;
        else if (!strcmp(a, "--output-type") && has) { if ((out_type = parse_type_arg(argv[++i], a)) < -1) return 2; }
        else if (!strcmp(a, "--embd-type") && has) { if ((embd_type = parse_type_arg(argv[++i], a)) < -1) return 2; }
        else if (!strcmp(a, "--imatrix") && has) imat_path = argv[++i];
        else if (!strcmp(a, "-t") && has) {
            threads = atoi(argv[++i]);
            if (threads < 1 || threads > ND_POOL_MAX_THREADS) {
                fprintf(stderr, "nindub quantize: -t wants 1..%d\n", ND_POOL_MAX_THREADS);
                return 2;
            }
        } else if (a[0] == '-' && a[1]) {
            fprintf(stderr, "nindub quantize: unknown or incomplete option '%s'\n", a);
            usage(stderr);
            return 2;
        } else if (npos < 3) pos[npos++] = a;
        else { usage(stderr); return 2; }
    }
    if (npos != 3) { usage(stderr); return 2; }
    const qrecipe *r = NULL;
    for (size_t i = 0; i < N_RECIPES; i++)
        if (!strcasecmp(recipes[i].name, pos[2])) r = &recipes[i];
    if (!r) {
        fprintf(stderr, "nindub quantize: unknown TYPE '%s' (see --help)\n", pos[2]);
        return 2;
    }
    if (!strcmp(pos[0], pos[1])) {
        fprintf(stderr, "nindub quantize: input and output are the same file\n");
        return 2;
    }

    nd_err err = {0};
    int rc = 1;
    gguf_ctx *in = gguf_open(pos[0], &err), *im = NULL;
    gguf_writer *w = NULL;
    qctx q = {.in = in};
    float **imats = NULL;
    if (!in) { fprintf(stderr, "nindub quantize: %s\n", err.msg); return 1; }
    if (imat_path && !(im = gguf_open(imat_path, &err))) {
        fprintf(stderr, "nindub quantize: imatrix: %s\n", err.msg);
        goto done;
    }
    uint32_t n_layer = 0;
    gguf_get_arch_u32(in, "block_count", &n_layer, NULL);
    bool has_output = gguf_find_tensor(in, "output.weight") != NULL;
    q.jobs = nd_calloc(in->n_tensors ? in->n_tensors : 1, sizeof *q.jobs);
    imats = nd_calloc(in->n_tensors ? in->n_tensors : 1, sizeof *imats);
    q.pool = nd_pool_new(threads, &err);
    q.rowbuf = nd_calloc((size_t)threads, sizeof *q.rowbuf);
    w = gguf_writer_new();
    if (!q.jobs || !imats || !q.pool || !q.rowbuf || !w) {
        fprintf(stderr, "nindub quantize: %s\n", q.pool ? "out of memory" : err.msg);
        goto done;
    }
    uint64_t max_row = 1, bytes_in = 0, bytes_out = 0, params = 0;
    int counts[ND_TYPE_COUNT] = {0}, n_fallback = 0, n_imat = 0;
    for (uint64_t i = 0; i < in->n_tensors; i++) {
        const gguf_tensor *t = &in->tensors[i];
        qjob *j = &q.jobs[i];
        j->src = t;
        j->type = t->type;
        bool is_embd = !strcmp(t->name, "token_embd.weight");
        bool is_output = !strcmp(t->name, "output.weight") || (is_embd && !has_output);
        if (t->n_dims >= 2 && ends_with(t->name, ".weight") && q_is_weight_type(t->type)) {
            bool quantized_in = t->type != ND_TYPE_F32 && t->type != ND_TYPE_F16 && t->type != ND_TYPE_BF16;
            if (quantized_in && !requant) {
                fprintf(stderr,
                        "nindub quantize: tensor '%s' is already %s; quantizing it again loses quality "
                        "twice — use an F32/F16/BF16 model, or pass --allow-requantize\n",
                        t->name, nd_type_info(t->type)->name);
                goto done;
            }
            uint32_t want = pick_type(r, t, is_output, is_embd, n_layer, pure, out_type, embd_type);
            if (t->ne[0] % q_blck(want)) {
                uint32_t fb = fallback_type(want);
                if (t->ne[0] % q_blck(fb)) fb = ND_TYPE_F16;
                fprintf(stderr, "  fallback: %s has rows of %llu, not a multiple of %s's block of %u: %s\n",
                        t->name, (unsigned long long)t->ne[0], nd_type_info(want)->name, q_blck(want),
                        nd_type_info(fb)->name);
                want = fb;
                j->fell_back = true;
                n_fallback++;
            }
            j->type = want;
            j->convert = want != t->type;
            if (j->convert && im) {
                j->imat = imatrix_for(im, t, &imats[i], &err);
                if (!j->imat && err.code) { fprintf(stderr, "nindub quantize: %s\n", err.msg); goto done; }
                n_imat += j->imat != NULL;
            }
        } else if (!q_type_ok(t->type) && t->type != ND_TYPE_I32 && t->type != ND_TYPE_I8 &&
                   t->type != ND_TYPE_I16) {
            fprintf(stderr, "nindub quantize: tensor '%s' has type %s, which nindub cannot read\n",
                    t->name, nd_type_info(t->type)->name);
            goto done;
        }
        if (t->ne[0] > max_row) max_row = t->ne[0];
        counts[j->type]++;
        params += t->n_elems;
        bytes_in += t->nbytes;
        rc = gguf_writer_add_tensor(w, t->name, j->type, t->n_dims, t->ne, NULL, &err);
        if (rc < 0) { fprintf(stderr, "nindub quantize: %s\n", err.msg); rc = 1; goto done; }
        rc = 1;
        bytes_out += q_row_size(j->type, (int64_t)t->ne[0]) * (t->n_elems / t->ne[0]);
    }
    for (int i = 0; i < threads; i++)
        if (!(q.rowbuf[i] = nd_malloc(max_row * sizeof(float)))) { fprintf(stderr, "nindub quantize: out of memory\n"); goto done; }
    for (uint64_t i = 0; i < in->n_kv; i++) gguf_writer_set_value(w, in->kv[i].key, &in->kv[i].val);
    gguf_writer_set_u32(w, "general.file_type", r->file_type);
    gguf_writer_set_u32(w, "general.quantization_version", 2);
    if (im) gguf_writer_set_str(w, "quantize.imatrix.file", imat_path);

    double t0 = nd_time_s();
    nd_progress_begin(&q.prog, "quantize", bytes_in);
    if (gguf_writer_write(w, pos[1], fill, &q, &err)) {
        nd_progress_end(&q.prog);
        fprintf(stderr, "nindub quantize: %s\n", err.msg);
        goto done;
    }
    nd_progress_end(&q.prog);
    fprintf(stderr, "nindub quantize: %s -> %s (%s%s) in %.1fs with %d threads\n", pos[0], pos[1], r->name,
            pure ? ", pure" : "", nd_time_s() - t0, threads);
    fprintf(stderr, "  size: %.2f MiB -> %.2f MiB (%.3f -> %.3f bits per weight)\n",
            (double)bytes_in / 1048576.0, (double)bytes_out / 1048576.0,
            8.0 * (double)bytes_in / (double)(params ? params : 1),
            8.0 * (double)bytes_out / (double)(params ? params : 1));
    fprintf(stderr, "  tensors by type:");
    for (int i = 0; i < ND_TYPE_COUNT; i++)
        if (counts[i]) fprintf(stderr, " %s×%d", nd_type_info((uint32_t)i)->name, counts[i]);
    fprintf(stderr, "\n  fallbacks (rows not a multiple of the block size): %d%s\n", n_fallback,
            im ? "" : "");
    if (im) fprintf(stderr, "  importance matrix used for %d tensors\n", n_imat);
    rc = 0;
done:
    if (imats)
        for (uint64_t i = 0; i < in->n_tensors; i++) nd_free(imats[i]);
    nd_free(imats);
    if (q.rowbuf)
        for (int i = 0; i < threads; i++) nd_free(q.rowbuf[i]);
    nd_free(q.rowbuf);
    nd_pool_free(q.pool);
    nd_free(q.jobs);
    gguf_writer_free(w);
    gguf_close(im);
    gguf_close(in);
    return rc;
}
