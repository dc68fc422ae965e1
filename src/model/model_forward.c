/* The forward pass: a context (KV cache, scratch, thread pool) and model_forward, which runs
 * a batch of tokens through the transformer with causal attention.
 *
 * Numerics follow llama.cpp's CPU graph where it matters for agreement with its goldens:
 * RMSNorm sums squares in double; RoPE angles are built by repeated float multiplication;
 * with an F16 cache, q and the softmax probabilities are rounded to F16 before their dot
 * products with K and V (as ggml's mul_mat converts src1 to the cache's type); the softmax
 * sum is accumulated in double. */
#include <math.h>
#include <stdatomic.h>
#include <string.h>

#include "model/model.h"
#include "quant/quant.h"

struct model_ctx {
    const model_t *m;
    int64_t n_ctx;          /* KV positions per sequence */
    int n_seq;              /* sequences, each with its own KV cache */
    int64_t *seq_past;      /* [n_seq]: positions [0, seq_past[s]) of sequence s are valid */
    int n_batch;            /* tokens per chunk */
    nd_pool *pool;
    k_kernels kern;
    k_scratch scratch;      /* quantized activations for k_matmul */
    k_env env;

    /* KV cache: a row per position for K and for V (attention streams both in position
     * order; a transposed V, a row per channel, cost a TLB and a cache miss per channel). */
    uint32_t kv_type;       /* ND_TYPE_F16 or ND_TYPE_F32 */
    size_t kv_elt;          /* bytes per element */
    uint8_t *k_cache;       /* [n_seq][n_layer][n_ctx][n_head_kv * head_dim_k] */
    uint8_t *v_cache;       /* [n_seq][n_layer][n_ctx][n_head_kv * head_dim_v] */
    size_t k_seq_bytes, v_seq_bytes; /* bytes of one sequence's K / V cache */
    size_t k_map, v_map;    /* mapped bytes (nd_huge_alloc) */

    /* the current chunk's tokens: sequence, position, whether its logits are wanted */
    int32_t *t_seq;         /* [B] */
    int64_t *t_pos;         /* [B] */
    bool *t_want;           /* [B] */

    /* activations of one chunk of up to B = n_batch tokens */
    float *x;               /* [B][n_embd] residual stream */
    float *xn;              /* [B][n_embd] normalized input of a sub-layer */
    float *q;               /* [B][n_head * head_dim_k] */
    float *k;               /* [B][n_head_kv * head_dim_k] */
    float *v;               /* [B][n_head_kv * head_dim_v] */
    float *qkv;             /* [B][q | k | v] fused projection output (phi3), or NULL */
    float *att;             /* [B][n_head * head_dim_v] attention output */
    float *o;               /* [B][n_embd] sub-layer output */
    float *gate;            /* [B][n_ff] (fused gate+up: [B][2 * n_ff]) */
    float *up;              /* [B][n_ff] */
    float *rope_cs;         /* [B][n_rot / 2][2] cos, sin per position and pair */
    float *att_tmp;         /* per thread: scores[n_head / n_head_kv][n_ctx] */
    size_t att_tmp_floats;  /* per thread */
    uint8_t *embd_row;      /* one token embedding row in GGUF layout (tok_embd repacked) */
    void (*on_matmul)(void *user, const char *weight, const float *X, int64_t M, int64_t K);
    void *on_matmul_user;
};

model_ctx_params model_ctx_default_params(void) {
    return (model_ctx_params){.n_ctx = 0, .n_threads = 0, .n_batch = 0,
                              .kv_type = ND_TYPE_F16, .isa = K_ISA_BEST};
}

int64_t model_ctx_n_ctx(const model_ctx *c) { return c->n_ctx; }
int model_ctx_n_threads(const model_ctx *c) { return nd_pool_size(c->pool); }
const model_t *model_ctx_model(const model_ctx *c) { return c->m; }
int64_t model_ctx_n_past(const model_ctx *c) { return c->seq_past[0]; }
int model_ctx_n_seq(const model_ctx *c) { return c->n_seq; }

int64_t model_ctx_seq_past(const model_ctx *c, int seq) {
    return seq >= 0 && seq < c->n_seq ? c->seq_past[seq] : 0;
}

int model_ctx_seq_truncate(model_ctx *c, int seq, int64_t pos, nd_err *err) {
    if (seq < 0 || seq >= c->n_seq || pos < 0)
        return nd_seterr(err, ND_EINVAL, "sequence %d / position %lld out of range (%d sequences)", seq,
                         (long long)pos, c->n_seq);
    if (pos < c->seq_past[seq]) c->seq_past[seq] = pos;
    return 0;
}

/* ------------------------------------------------------------ context */

void model_ctx_free(model_ctx *c) {
    if (!c) return;
    nd_pool_free(c->pool);
    k_scratch_free(&c->scratch);
    nd_huge_free(c->k_cache, c->k_map);
    nd_huge_free(c->v_cache, c->v_map);
    nd_free(c->seq_past);
    nd_free(c->t_seq);
    nd_free(c->t_pos);
    nd_free(c->t_want);
    float *bufs[] = {c->x, c->xn, c->q, c->k, c->v, c->qkv, c->att, c->o, c->gate, c->up,
                     c->rope_cs};
    for (size_t i = 0; i < sizeof bufs / sizeof bufs[0]; i++) nd_free(bufs[i]);
    nd_free(c->att_tmp);
    nd_free(c->embd_row);
    nd_free(c);
}

/* Every weight matrix must have a kernel for its type and row length (and its layout). */
static int check_kernels(const model_t *m, const k_kernels *k, nd_err *err) {
    const model_mat **mats = nd_malloc(MODEL_MATS_MAX(m) * sizeof *mats);
    if (!mats) return nd_seterr(err, ND_ENOMEM, "out of memory creating a context");
    const size_t n = model_mats(m, mats);
    int rc = 0;
    for (size_t i = 0; i < n && !rc; i++) {
        rc = k_check(k, mats[i]->type, mats[i]->k, err);
        if (!rc && mats[i]->layout == K_LAYOUT_X16 && !k_x16_supported(k, mats[i]->type))
            rc = nd_seterr(err, ND_EUNSUPPORTED, "repacked for %s kernels this context does not "
                           "select (load with --weights mmap, or without repacking)", k_isa_name(K_ISA_AVX512));
        if (rc) nd_preerr(err, "%s: ", mats[i]->name);
    }
    nd_free(mats);
    return rc;
}

static float *alloc_f(int64_t rows, int64_t cols, int *fail) {
    float *p = nd_malloc((size_t)rows * (size_t)cols * sizeof(float));
    if (!p) *fail = 1;
    return p;
}

model_ctx *model_ctx_new(const model_t *m, const model_ctx_params *pp, nd_err *err) {
    model_ctx_params p = pp ? *pp : model_ctx_default_params();
    const model_hparams *hp = &m->hp;
    if (p.kv_type != ND_TYPE_F16 && p.kv_type != ND_TYPE_F32) {
        nd_seterr(err, ND_EINVAL, "KV cache type %u not supported (f16 or f32)", p.kv_type);
        return NULL;
    }
    int64_t n_ctx = p.n_ctx > 0 ? p.n_ctx : (hp->n_ctx_train < 4096 ? hp->n_ctx_train : 4096);
    if (n_ctx > (1 << 24) || p.n_batch < 0 || p.n_threads < 0 || p.n_seq < 0 || p.n_seq > 1024) {
        nd_seterr(err, ND_ERANGE, "context size %lld / batch %d / threads %d / sequences %d out of range",
                  (long long)n_ctx, p.n_batch, p.n_threads, p.n_seq);
        return NULL;
    }
    model_ctx *c = nd_calloc(1, sizeof *c);
    if (!c) {
        nd_seterr(err, ND_ENOMEM, "out of memory creating a context");
        return NULL;
    }
    c->m = m;
    c->n_ctx = n_ctx;
    c->n_seq = p.n_seq ? p.n_seq : 1;
    c->n_batch = p.n_batch ? p.n_batch : 256;
    if (c->n_batch > n_ctx) c->n_batch = (int)n_ctx;
    c->kv_type = p.kv_type;
    c->on_matmul = p.on_matmul;
    c->on_matmul_user = p.on_matmul_user;
    c->kv_elt = p.kv_type == ND_TYPE_F16 ? 2 : 4;
    k_select(&c->kern, p.isa);
    if (check_kernels(m, &c->kern, err)) goto fail;
    c->pool = nd_pool_new(p.n_threads ? p.n_threads : nd_pool_default_threads(), err);
    if (!c->pool) goto fail;
    c->env = (k_env){.kern = &c->kern, .pool = c->pool, .scratch = &c->scratch};

    const int64_t B = c->n_batch, E = hp->n_embd, L = hp->n_layer;
    const int64_t nq = hp->n_head * hp->head_dim_k, nk = hp->n_head_kv * hp->head_dim_k,
                  nv = hp->n_head_kv * hp->head_dim_v;
    bool fused_ffn = !m->layers[0].w_gate.data;
    int fail = 0;
    c->k_seq_bytes = (size_t)L * (size_t)n_ctx * (size_t)nk * c->kv_elt;
    c->v_seq_bytes = (size_t)L * (size_t)n_ctx * (size_t)nv * c->kv_elt;
    /* huge pages: a V row per dimension at n_ctx stride puts every row of a head on its own
     * 4 KiB page, a TLB miss per row at every attention step */
    c->k_cache = nd_huge_alloc(c->k_seq_bytes * (size_t)c->n_seq, &c->k_map);
    c->v_cache = nd_huge_alloc(c->v_seq_bytes * (size_t)c->n_seq, &c->v_map);
    c->seq_past = nd_calloc((size_t)c->n_seq, sizeof *c->seq_past);
    if (!c->k_cache || !c->v_cache || !c->seq_past) {
        nd_seterr(err, ND_ENOMEM, "out of memory for the KV cache (%d × %lld positions, %.1f MiB)",
                  c->n_seq, (long long)n_ctx,
                  (double)(c->k_seq_bytes + c->v_seq_bytes) * c->n_seq / 1048576);
        goto fail;
    }
    c->t_seq = nd_malloc((size_t)c->n_batch * sizeof *c->t_seq);
    c->t_pos = nd_malloc((size_t)c->n_batch * sizeof *c->t_pos);
    c->t_want = nd_malloc((size_t)c->n_batch * sizeof *c->t_want);
    if (!c->t_seq || !c->t_pos || !c->t_want) fail = 1;
    c->x = alloc_f(B, E, &fail);
    c->xn = alloc_f(B, E, &fail);
    c->o = alloc_f(B, E, &fail);
    c->q = alloc_f(B, nq, &fail);
    c->k = alloc_f(B, nk, &fail);
    c->v = alloc_f(B, nv, &fail);
    c->att = alloc_f(B, hp->n_head * hp->head_dim_v, &fail);
    c->gate = alloc_f(B, fused_ffn ? 2 * hp->n_ff : hp->n_ff, &fail);
    c->up = alloc_f(B, hp->n_ff, &fail);
    c->rope_cs = alloc_f(B, hp->n_rot > 0 ? hp->n_rot : 2, &fail);
    if (m->layers[0].wqkv.data) c->qkv = alloc_f(B, nq + nk + nv, &fail);
    int nth = nd_pool_size(c->pool);
    c->att_tmp_floats = (size_t)n_ctx * (size_t)(hp->n_head / hp->n_head_kv);
    c->att_tmp = nd_malloc(c->att_tmp_floats * sizeof(float) * (size_t)nth);
    if (m->tok_embd.layout == K_LAYOUT_X16 && !(c->embd_row = nd_malloc(q_row_size(m->tok_embd.type, E)))) fail = 1;
    if (fail || !c->att_tmp) {
        nd_seterr(err, ND_ENOMEM, "out of memory for activation buffers (batch %lld)",
                  (long long)B);
        goto fail;
    }
    return c;
fail:
    model_ctx_free(c);
    return NULL;
}

/* ---------------------------------------------------------- elementwise */

/* y = x / rms(x) * w over rows of n. The squares are summed in double over 8 independent
 * partial sums (one chain of n dependent double adds took ~1 us for n = 896, twice a layer
 * on the decode's serial path). */
static void rmsnorm(float *y, const float *x, const float *w, int64_t n, float eps) {
    double s0 = 0, s1 = 0, s2 = 0, s3 = 0, s4 = 0, s5 = 0, s6 = 0, s7 = 0;
    int64_t i = 0;
    for (; i + 8 <= n; i += 8) {
        s0 += (double)(x[i] * x[i]), s1 += (double)(x[i + 1] * x[i + 1]);
        s2 += (double)(x[i + 2] * x[i + 2]), s3 += (double)(x[i + 3] * x[i + 3]);
        s4 += (double)(x[i + 4] * x[i + 4]), s5 += (double)(x[i + 5] * x[i + 5]);
        s6 += (double)(x[i + 6] * x[i + 6]), s7 += (double)(x[i + 7] * x[i + 7]);
    }
    for (; i < n; i++) s0 += (double)(x[i] * x[i]);
    const double ss = ((s0 + s4) + (s2 + s6)) + ((s1 + s5) + (s3 + s7));
    float scale = 1.0f / sqrtf((float)(ss / (double)n) + eps);
    for (i = 0; i < n; i++) y[i] = (x[i] * scale) * w[i];
}

static void rmsnorm_rows(float *y, const float *x, const float *w, int64_t rows, int64_t n,
                         float eps) {
    for (int64_t r = 0; r < rows; r++) rmsnorm(y + r * n, x + r * n, w, n, eps);
}

static void add_bias(float *y, const float *b, int64_t rows, int64_t n) {
    if (!b) return;
    for (int64_t r = 0; r < rows; r++)
        for (int64_t i = 0; i < n; i++) y[r * n + i] += b[i];
}

/* ---------------------------------------------------------------- RoPE */

/* cos/sin for the chunk's positions (t_pos) and the n_rot/2 rotated pairs. Angle of pair i
 * at position p: p * base^(-2i/n_rot) / factor[i] * freq_scale. */
static void rope_table(model_ctx *c, int64_t B) {
    const model_hparams *hp = &c->m->hp;
    const model_t *m = c->m;
    const float *ff = m->rope_freqs;
    if (m->rope_long || m->rope_short) /* LongRoPE: long factors beyond the original context */
        ff = c->n_ctx > hp->n_ctx_orig && m->rope_long ? m->rope_long
             : m->rope_short                           ? m->rope_short
                                                       : m->rope_long;
    const int64_t np = hp->n_rot / 2;
    const float theta_scale = powf(hp->rope_base, -2.0f / (float)hp->n_rot);
    for (int64_t t = 0; t < B; t++) {
        float theta = (float)c->t_pos[t];
        float *cs = c->rope_cs + t * np * 2;
        for (int64_t i = 0; i < np; i++) {
            float th = ff ? theta / ff[i] : theta;
            th *= hp->rope_freq_scale;
            cs[2 * i] = cosf(th) * hp->rope_attn_factor;
            cs[2 * i + 1] = sinf(th) * hp->rope_attn_factor;
            theta *= theta_scale;
        }
    }
}

/* Rotate the first n_rot dims of one head v of the chunk's token t in place. */
static void rope_head(const model_ctx *c, float *v, int64_t t) {
    const model_hparams *hp = &c->m->hp;
    const int64_t np = hp->n_rot / 2;
    const float *cs = c->rope_cs + t * np * 2;
    for (int64_t i = 0; i < np; i++) {
        /* NEOX pairs dims (i, i + n_rot/2); the original llama pairs (2i, 2i+1) */
        int64_t a = hp->rope_neox ? i : 2 * i, b = hp->rope_neox ? i + np : 2 * i + 1;
        float x0 = v[a], x1 = v[b], co = cs[2 * i], si = cs[2 * i + 1];
        v[a] = x0 * co - x1 * si;
        v[b] = x0 * si + x1 * co;
    }
}

/* Rotate every head of x ([B][n_heads * hd]) in place. */
static void rope_apply(const model_ctx *c, float *x, int64_t B, int64_t n_heads, int64_t hd) {
    for (int64_t t = 0; t < B; t++)
        for (int64_t h = 0; h < n_heads; h++) rope_head(c, x + (t * n_heads + h) * hd, t);
}

/* ------------------------------------------------------------ attention */

typedef struct att_job {
    model_ctx *c;
    const model_layer *L; /* non-NULL: each item first runs its group's head_prologue */
    int64_t il, B;
    float kq_scale;
    _Atomic int64_t next;
} att_job;

/* K/V cache rows of layer il of sequence seq. */
static uint8_t *k_rows(const model_ctx *c, int32_t seq, int64_t il) {
    const model_hparams *hp = &c->m->hp;
    return c->k_cache + c->k_seq_bytes * (size_t)seq +
           (size_t)il * (size_t)c->n_ctx * (size_t)(hp->n_head_kv * hp->head_dim_k) * c->kv_elt;
}
static uint8_t *v_rows(const model_ctx *c, int32_t seq, int64_t il) {
    const model_hparams *hp = &c->m->hp;
    return c->v_cache + c->v_seq_bytes * (size_t)seq +
           (size_t)il * (size_t)c->n_ctx * (size_t)(hp->n_head_kv * hp->head_dim_v) * c->kv_elt;
}

/* Elements [k0, k0 + nk) of the chunk's token t's K row and [v0, v0 + nv) of its V row
 * into the cache at its position (F16: the F16 activation quantizer, round to nearest
 * even, element by element). */
static void kv_store_part(model_ctx *c, int64_t il, int64_t t, int64_t k0, int64_t nk, int64_t v0, int64_t nv) {
    const model_hparams *hp = &c->m->hp;
    const int64_t rk = hp->n_head_kv * hp->head_dim_k, rv = hp->n_head_kv * hp->head_dim_v;
    const float *k = c->k + t * rk + k0, *v = c->v + t * rv + v0;
    const int64_t pos = c->t_pos[t];
    uint8_t *kc = k_rows(c, c->t_seq[t], il) + ((size_t)pos * (size_t)rk + (size_t)k0) * c->kv_elt;
    uint8_t *vc = v_rows(c, c->t_seq[t], il) + ((size_t)pos * (size_t)rv + (size_t)v0) * c->kv_elt;
    if (c->kv_type == ND_TYPE_F16) {
        c->kern.ops[ND_TYPE_F16].quantize(k, kc, nk);
        c->kern.ops[ND_TYPE_F16].quantize(v, vc, nv);
    } else {
        memcpy(kc, k, (size_t)nk * 4);
        memcpy(vc, v, (size_t)nv * 4);
    }
}

static void kv_store(model_ctx *c, int64_t il, int64_t B) {
    const model_hparams *hp = &c->m->hp;
    for (int64_t t = 0; t < B; t++)
        kv_store_part(c, il, t, 0, hp->n_head_kv * hp->head_dim_k, 0, hp->n_head_kv * hp->head_dim_v);
}

/* attn_block's passes between the Q/K/V products and attention — biases, Q/K norms, RoPE,
 * Phi-3's Q scale, the cache store — for token t's heads of KV head kvh only: the same
 * operations on the same elements (the same bits), so that decode can run each KV group's
 * whole attention on its own thread. */
static void head_prologue(model_ctx *c, const model_layer *L, int64_t il, int64_t t, int64_t kvh) {
    const model_hparams *hp = &c->m->hp;
    const int64_t hdk = hp->head_dim_k, hdv = hp->head_dim_v, group = hp->n_head / hp->n_head_kv;
    const float qs = hp->q_prescaled ? 1.0f / sqrtf((float)hdk) : 1.0f;
    for (int64_t h = kvh * group; h < (kvh + 1) * group; h++) {
        float *q = c->q + (t * hp->n_head + h) * hdk;
        if (L->bq) add_bias(q, L->bq + h * hdk, 1, hdk);
        if (L->q_norm) rmsnorm(q, q, L->q_norm, hdk, hp->rms_eps);
        rope_head(c, q, t);
        if (hp->q_prescaled)
            for (int64_t i = 0; i < hdk; i++) q[i] *= qs;
    }
    float *k = c->k + (t * hp->n_head_kv + kvh) * hdk, *v = c->v + (t * hp->n_head_kv + kvh) * hdv;
    if (L->bk) add_bias(k, L->bk + kvh * hdk, 1, hdk);
    if (L->bv) add_bias(v, L->bv + kvh * hdv, 1, hdv);
    if (L->k_norm) rmsnorm(k, k, L->k_norm, hdk, hp->rms_eps);
    rope_head(c, k, t);
    kv_store_part(c, il, t, kvh * hdk, hdk, kvh * hdv, hdv);
}

/* The first cache position a token at pos attends (a sliding window, or 0). */
static int64_t window_start(const model_hparams *hp, int64_t pos) {
    return hp->n_swa > 0 && pos >= hp->n_swa ? pos - hp->n_swa + 1 : 0;
}

/* One (token, KV head): softmax(q · K^T * scale) · V over the visible positions for the
 * n_head / n_head_kv query heads sharing that KV head (consecutive: head h reads KV head
 * h / group), the cache rows read once for the group. */
static void att_group(model_ctx *c, const att_job *j, int64_t t, int64_t kvh, float *s) {
    const model_hparams *hp = &c->m->hp;
    const int64_t hdk = hp->head_dim_k, hdv = hp->head_dim_v;
    const int64_t nk = hp->n_head_kv * hdk, nv = hp->n_head_kv * hdv;
    const int64_t group = hp->n_head / hp->n_head_kv, h = kvh * group;
    const int64_t pos = c->t_pos[t];
    const int64_t j0 = window_start(hp, pos);
    const uint8_t *kc = k_rows(c, c->t_seq[t], j->il) + ((size_t)j0 * (size_t)nk + (size_t)kvh * (size_t)hdk) * c->kv_elt;
    const uint8_t *vc = v_rows(c, c->t_seq[t], j->il) + ((size_t)j0 * (size_t)nv + (size_t)kvh * (size_t)hdv) * c->kv_elt;
    const k_attend_fn attend = c->kv_type == ND_TYPE_F16 ? c->kern.vec.attend_f16 : c->kern.vec.attend_f32;
    attend(c->q + (t * hp->n_head + h) * hdk, kc, (size_t)nk * c->kv_elt, vc, (size_t)nv * c->kv_elt,
           pos + 1 - j0, hdk, hdv, group, j->kq_scale, s, c->att + (t * hp->n_head + h) * hdv);
}

static void att_worker(void *arg, int ith, int nth) {
    att_job *j = arg;
    model_ctx *c = j->c;
    const int64_t nkv = c->m->hp.n_head_kv, total = j->B * nkv;
    float *s = c->att_tmp + (size_t)ith * c->att_tmp_floats;
    if (j->L) { /* decode: KV groups ith, ith + nth, ... (what att_prefetch warmed) */
        for (int64_t kvh = ith; kvh < nkv; kvh += nth) {
            head_prologue(c, j->L, j->il, 0, kvh);
            att_group(c, j, 0, kvh, s);
        }
        return;
    }
    for (;;) {
        int64_t i = atomic_fetch_add_explicit(&j->next, 1, memory_order_relaxed);
        if (i >= total) break;
        att_group(c, j, i / nkv, i % nkv, s);
    }
}

/* Decode: while the Q/K/V product streams its weights, pool item ith (k_env.before)
 * prefetches what attention item ith reads cold, its KV groups' biases and first cache
 * rows: the 265 MB of weights a token streams evict them, and read on demand they cost
 * the prologue and the start of attend a DRAM latency after another (a Q4_0 0.5B
 * layer's attention took ~8.5 us, 2 threads). */
typedef struct att_pf {
    model_ctx *c;
    const model_layer *L;
    int64_t il;
} att_pf;

#define ATT_PF_POSITIONS 64 /* cache rows a group prefetches ahead of attend */

static void pf_range(const void *p, size_t bytes, int write) {
    for (size_t o = 0; o < bytes; o += 64)
        write ? __builtin_prefetch((const char *)p + o, 1, 3) : __builtin_prefetch((const char *)p + o, 0, 3);
}

static void att_prefetch(void *user, int ith) {
    const att_pf *pf = user;
    model_ctx *c = pf->c;
    const model_layer *L = pf->L;
    const model_hparams *hp = &c->m->hp;
    const int64_t hdk = hp->head_dim_k, hdv = hp->head_dim_v, group = hp->n_head / hp->n_head_kv;
    const int64_t rk = hp->n_head_kv * hdk, rv = hp->n_head_kv * hdv, pos = c->t_pos[0];
    const int64_t j0 = window_start(hp, pos); /* where attend starts */
    const int nth = nd_pool_size(c->pool);
    const uint8_t *kc = k_rows(c, c->t_seq[0], pf->il), *vc = v_rows(c, c->t_seq[0], pf->il);
    const size_t e = c->kv_elt, kb = (size_t)hdk * e, vb = (size_t)hdv * e; /* a head's row bytes */
    for (int64_t kvh = ith; kvh < hp->n_head_kv; kvh += nth) {
        if (L->bq) pf_range(L->bq + kvh * group * hdk, (size_t)(group * hdk) * 4, 0);
        if (L->bk) pf_range(L->bk + kvh * hdk, (size_t)hdk * 4, 0);
        if (L->bv) pf_range(L->bv + kvh * hdv, (size_t)hdv * 4, 0);
        const uint8_t *k = kc + (size_t)(kvh * hdk) * e, *v = vc + (size_t)(kvh * hdv) * e;
        for (int64_t p = j0; p < pos && p < j0 + ATT_PF_POSITIONS; p++) {
            pf_range(k + (size_t)(p * rk) * e, kb, 0);
            pf_range(v + (size_t)(p * rv) * e, vb, 0);
        }
        pf_range(k + (size_t)(pos * rk) * e, kb, 1); /* the rows head_prologue stores */
        pf_range(v + (size_t)(pos * rv) * e, vb, 1);
    }
}

/* Attention of the chunk's B tokens. L non-NULL (decode, B == 1): each KV group's
 * head_prologue too, the groups split across the threads whatever the context length —
 * the groups' rows of q/k/v, cache and output are disjoint, and a group's cache rows stay
 * with the thread that stores them. */
static void attention(model_ctx *c, const model_layer *L, int64_t il, int64_t B) {
    const model_hparams *hp = &c->m->hp;
    att_job j = {.c = c, .L = L, .il = il, .B = B,
                 .kq_scale = hp->q_prescaled ? 1.0f : 1.0f / sqrtf((float)hp->head_dim_k)};
    int64_t span = 0; /* positions attended, summed over the chunk */
    for (int64_t t = 0; t < B; t++) span += c->t_pos[t] + 1;
    if (L ? hp->n_head_kv < 2 : hp->n_head * span < 4096)
        att_worker(&j, 0, 1);
    else
        nd_pool_run(c->pool, att_worker, &j);
}

/* ------------------------------------------------------------ forward */

#define MATMUL(W, X, M, Y)                                                               \
    do {                                                                                 \
        if (c->on_matmul) c->on_matmul(c->on_matmul_user, (W).name, (X), (M), (W).k);     \
        const k_mat m_ = {(W).type, (W).data, (W).n, (Y), (W).layout};                   \
        int rc_ = k_matmul_n(&c->env, &m_, 1, (W).k, (X), (M), err);                     \
        if (rc_) return nd_preerr(err, "%s: ", (W).name);                                \
    } while (0)

/* Several weights applied to the same rows X (same k): one k_matmul_n (one activation
 * pass, one pool run); outputs bit-identical to a MATMUL each. */
static int matmul_shared(model_ctx *c, const model_mat *const *W, float *const *Y, int n, const float *X,
                         int64_t M, nd_err *err) {
    k_mat mats[K_MATMUL_PARTS];
    for (int i = 0; i < n; i++) {
        if (c->on_matmul) c->on_matmul(c->on_matmul_user, W[i]->name, X, M, W[i]->k);
        mats[i] = (k_mat){W[i]->type, W[i]->data, W[i]->n, Y[i], W[i]->layout};
    }
    int rc = k_matmul_n(&c->env, mats, n, W[0]->k, X, M, err);
    return rc ? nd_preerr(err, "%s (with %d more): ", W[0]->name, n - 1) : 0;
}

static void embed(model_ctx *c, const int32_t *tokens, int64_t B) {
    const model_mat *te = &c->m->tok_embd;
    size_t row = q_row_size(te->type, te->k);
    for (int64_t t = 0; t < B; t++) {
        const uint8_t *r = (const uint8_t *)te->data + (size_t)tokens[t] * row;
        if (te->layout == K_LAYOUT_X16) { /* a tied output, repacked: the row back in GGUF layout */
            k_x16_row(te->type, te->data, te->k, te->n, tokens[t], c->embd_row);
            r = c->embd_row;
        }
        q_dequantize_row(te->type, r, c->x + t * te->k, te->k);
    }
}

/* q, k, v of the chunk's B tokens from xn. */
static int qkv_products(model_ctx *c, const model_layer *L, int64_t B, nd_err *err) {
    const model_hparams *hp = &c->m->hp;
    const int64_t nq = hp->n_head * hp->head_dim_k, nk = hp->n_head_kv * hp->head_dim_k,
                  nv = hp->n_head_kv * hp->head_dim_v;
    if (L->wqkv.data) { /* fused: each output row is q | k | v */
        MATMUL(L->wqkv, c->xn, B, c->qkv);
        for (int64_t t = 0; t < B; t++) {
            const float *r = c->qkv + t * (nq + nk + nv);
            memcpy(c->q + t * nq, r, (size_t)nq * 4);
            memcpy(c->k + t * nk, r + nq, (size_t)nk * 4);
            memcpy(c->v + t * nv, r + nq + nk, (size_t)nv * 4);
        }
        return 0;
    }
    const model_mat *W[3] = {&L->wq, &L->wk, &L->wv};
    float *const Y[3] = {c->q, c->k, c->v};
    return matmul_shared(c, W, Y, 3, c->xn, B, err);
}

/* x += Attention(RMSNorm(x)) for one layer. */
static int attn_block(model_ctx *c, int64_t il, int64_t B, nd_err *err) {
    const model_hparams *hp = &c->m->hp;
    const model_layer *L = &c->m->layers[il];
    const int64_t E = hp->n_embd, nq = hp->n_head * hp->head_dim_k,
                  nk = hp->n_head_kv * hp->head_dim_k, nv = hp->n_head_kv * hp->head_dim_v;
    rmsnorm_rows(c->xn, c->x, L->attn_norm, B, E, hp->rms_eps);
    att_pf pf = {c, L, il};
    if (B == 1 && nd_pool_size(c->pool) > 1) c->env.before = att_prefetch, c->env.before_user = &pf;
    int rc = qkv_products(c, L, B, err);
    c->env.before = NULL, c->env.before_user = NULL;
    if (rc) return rc;
    if (B == 1) { /* decode: per KV group, prologue and attention on one thread each */
        attention(c, L, il, B);
    } else {
        add_bias(c->q, L->bq, B, nq);
        add_bias(c->k, L->bk, B, nk);
        add_bias(c->v, L->bv, B, nv);
        if (L->q_norm) rmsnorm_rows(c->q, c->q, L->q_norm, B * hp->n_head, hp->head_dim_k, hp->rms_eps);
        if (L->k_norm)
            rmsnorm_rows(c->k, c->k, L->k_norm, B * hp->n_head_kv, hp->head_dim_k, hp->rms_eps);
        rope_apply(c, c->q, B, hp->n_head, hp->head_dim_k);
        rope_apply(c, c->k, B, hp->n_head_kv, hp->head_dim_k);
        if (hp->q_prescaled) {
            float s = 1.0f / sqrtf((float)hp->head_dim_k);
            for (int64_t i = 0; i < B * nq; i++) c->q[i] *= s;
        }
        kv_store(c, il, B); /* every token's rows before any token attends */
        attention(c, NULL, il, B);
    }
    MATMUL(L->wo, c->att, B, c->o);
    for (int64_t i = 0; i < B * E; i++) c->x[i] += c->o[i];
    return 0;
}

/* x += W_down · (silu(W_gate · RMSNorm(x)) * (W_up · RMSNorm(x))) */
static int ffn_block(model_ctx *c, int64_t il, int64_t B, nd_err *err) {
    const model_hparams *hp = &c->m->hp;
    const model_layer *L = &c->m->layers[il];
    const int64_t E = hp->n_embd, F = hp->n_ff;
    rmsnorm_rows(c->xn, c->x, L->ffn_norm, B, E, hp->rms_eps);
    if (!L->w_gate.data) { /* fused: each output row is gate | up */
        MATMUL(L->w_up, c->xn, B, c->gate);
        for (int64_t t = 0; t < B; t++)
            c->kern.vec.silu_mul(c->gate + t * 2 * F, c->gate + t * 2 * F + F, c->up + t * F, F);
    } else {
        const model_mat *W[2] = {&L->w_gate, &L->w_up};
        float *const Y[2] = {c->gate, c->up};
        int rc = matmul_shared(c, W, Y, 2, c->xn, B, err);
        if (rc) return rc;
        c->kern.vec.silu_mul(c->gate, c->up, c->up, B * F);
    }
    MATMUL(L->w_down, c->up, B, c->o);
    for (int64_t i = 0; i < B * E; i++) c->x[i] += c->o[i];
    return 0;
}

/* One chunk of B <= n_batch tokens described by t_seq / t_pos / t_want. logits: one
 * [n_vocab] row per wanted token, in order, or NULL. */
static int forward_chunk(model_ctx *c, const int32_t *tokens, int64_t B, float *logits, nd_err *err) {
    const model_t *m = c->m;
    const int64_t E = m->hp.n_embd;
    embed(c, tokens, B);
    rope_table(c, B);
    for (int64_t il = 0; il < m->hp.n_layer; il++) {
        int rc = attn_block(c, il, B, err);
        if (!rc) rc = ffn_block(c, il, B, err);
        if (rc) return rc;
    }
    if (!logits) return 0;
    int64_t rows = 0;
    for (int64_t t = 0; t < B; t++)
        if (c->t_want[t]) rmsnorm(c->xn + rows++ * E, c->x + t * E, m->output_norm, E, m->hp.rms_eps);
    if (rows) MATMUL(m->output, c->xn, rows, logits);
    return 0;
}

/* Validates a batch: ids in the vocabulary, sequences in range, and per sequence consecutive
 * positions that start at or before its cached length and stay inside the context. */
static int check_batch(const model_ctx *c, int n, const int32_t *tokens, const int32_t *seq, const int64_t *pos,
                       nd_err *err) {
    const model_hparams *hp = &c->m->hp;
    for (int i = 0; i < n; i++) {
        if (tokens[i] < 0 || tokens[i] >= hp->n_vocab)
            return nd_seterr(err, ND_EINVAL, "token id %d at batch index %d is outside the vocabulary (0..%lld)",
                             tokens[i], i, (long long)hp->n_vocab - 1);
        if (seq[i] < 0 || seq[i] >= c->n_seq)
            return nd_seterr(err, ND_EINVAL, "sequence %d at batch index %d: the context has %d sequences", seq[i], i,
                             c->n_seq);
        if (pos[i] >= c->n_ctx)
            return nd_seterr(err, ND_ERANGE, "position %lld exceeds the context size %lld — start a new context "
                             "or use a larger -c", (long long)pos[i], (long long)c->n_ctx);
        int prev = -1; /* the same sequence earlier in the batch */
        for (int k = i - 1; k >= 0 && prev < 0; k--)
            if (seq[k] == seq[i]) prev = k;
        if (prev >= 0 ? pos[i] != pos[prev] + 1 : (pos[i] < 0 || pos[i] > c->seq_past[seq[i]]))
            return nd_seterr(err, ND_EINVAL, "sequence %d: position %lld at batch index %d %s", seq[i],
                             (long long)pos[i], i,
                             prev >= 0 ? "does not follow the previous one" : "skips ahead of its cached positions");
    }
    return 0;
}

/* Runs n tokens in chunks of n_batch; the per-token arrays are copied chunk by chunk. */
static int forward_tokens(model_ctx *c, int n, const int32_t *tokens, const int32_t *seq, const int64_t *pos,
                          int32_t seq0, int64_t pos0, const bool *want, int want_mode, float *logits, nd_err *err) {
    const int64_t V = c->m->hp.n_vocab;
    for (int i = 0; i < n; i++) { /* entries at and after each sequence's first position are rewritten */
        int32_t s = seq ? seq[i] : seq0;
        int64_t p = pos ? pos[i] : pos0 + i;
        if (p < c->seq_past[s]) c->seq_past[s] = p;
    }
    size_t out_row = 0;
    for (int i0 = 0; i0 < n; i0 += c->n_batch) {
        int64_t B = n - i0 < c->n_batch ? n - i0 : c->n_batch, wanted = 0;
        for (int64_t t = 0; t < B; t++) {
            int i = i0 + (int)t;
            c->t_seq[t] = seq ? seq[i] : seq0;
            c->t_pos[t] = pos ? pos[i] : pos0 + i;
            c->t_want[t] = want ? want[i] : want_mode == MODEL_LOGITS_ALL || (want_mode == MODEL_LOGITS_LAST && i == n - 1);
            wanted += c->t_want[t];
        }
        int rc = forward_chunk(c, tokens + i0, B, wanted ? logits + out_row * (size_t)V : NULL, err);
        if (rc) return rc;
        out_row += (size_t)wanted;
        for (int64_t t = 0; t < B; t++)
            if (c->t_pos[t] + 1 > c->seq_past[c->t_seq[t]]) c->seq_past[c->t_seq[t]] = c->t_pos[t] + 1;
    }
    return 0;
}

int model_forward(model_ctx *c, const int32_t *tokens, int n, int64_t pos0, float *logits_out,
                  model_logits which, nd_err *err) {
    if (n < 1 || !tokens) return nd_seterr(err, ND_EINVAL, "model_forward: empty batch");
    if (which != MODEL_LOGITS_NONE && !logits_out)
        return nd_seterr(err, ND_EINVAL, "model_forward: logits requested but no buffer given");
    if (pos0 < 0 || pos0 > c->seq_past[0])
        return nd_seterr(err, ND_EINVAL, "position %lld skips ahead of the %lld cached positions",
                         (long long)pos0, (long long)c->seq_past[0]);
    if (pos0 + n > c->n_ctx)
        return nd_seterr(err, ND_ERANGE, "positions %lld..%lld exceed the context size %lld — "
                         "start a new context or use a larger -c", (long long)pos0,
                         (long long)(pos0 + n - 1), (long long)c->n_ctx);
    const int64_t V = c->m->hp.n_vocab;
    for (int i = 0; i < n; i++)
        if (tokens[i] < 0 || tokens[i] >= V)
            return nd_seterr(err, ND_EINVAL, "token id %d at batch index %d is outside the "
                             "vocabulary (0..%lld)", tokens[i], i, (long long)V - 1);
    return forward_tokens(c, n, tokens, NULL, NULL, 0, pos0, NULL, (int)which, logits_out, err);
}

int model_forward_batch(model_ctx *c, int n, const int32_t *tokens, const int32_t *seq, const int64_t *pos,
                        const bool *want, float *logits_out, nd_err *err) {
    if (n < 1 || !tokens || !seq || !pos) return nd_seterr(err, ND_EINVAL, "model_forward_batch: empty batch");
    bool any = false;
    for (int i = 0; want && i < n; i++) any |= want[i];
    if (any && !logits_out) return nd_seterr(err, ND_EINVAL, "model_forward_batch: logits wanted but no buffer");
    int rc = check_batch(c, n, tokens, seq, pos, err);
    if (rc) return rc;
    return forward_tokens(c, n, tokens, seq, pos, 0, 0, any ? want : NULL, MODEL_LOGITS_NONE, logits_out, err);
}
