/* Model loading: architecture detection, hyper-parameters, tensor binding with shape
 * validation against those hyper-parameters, and where the weights live (model_weights:
 * views into the mapping, or one huge-page copy). */
#include <math.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <unistd.h>

#include "model/model.h"
#include "quant/quant.h"

/* Bounds for hyper-parameters read from a file: far above any real model, low enough that
 * products of them cannot overflow int64 buffer sizes. */
#define HP_MAX_EMBD (1 << 17)
#define HP_MAX_LAYER 4096
#define HP_MAX_HEAD 4096
#define HP_MAX_HEAD_DIM 4096
#define HP_MAX_FF (1 << 20)
#define HP_MAX_VOCAB (1 << 24)
#define HP_MAX_CTX (1 << 24)

/* ------------------------------------------------------- hyper-parameters */

static int arch_from_name(gguf_str s, model_hparams *hp) {
    static const struct { const char *name; model_arch arch; } archs[] = {
        {"llama", MODEL_ARCH_LLAMA},
        {"qwen2", MODEL_ARCH_QWEN2},
        {"qwen3", MODEL_ARCH_QWEN3},
        {"phi3", MODEL_ARCH_PHI3},
    };
    for (size_t i = 0; i < sizeof archs / sizeof archs[0]; i++)
        if (gguf_str_eq(s, archs[i].name)) {
            hp->arch = archs[i].arch;
            hp->arch_name = archs[i].name;
            return 0;
        }
    return ND_EUNSUPPORTED;
}

/* Required or optional `<arch>.<suffix>` integer in [lo, hi]. Absent optional keys keep
 * *out unchanged. */
static int get_dim(const gguf_ctx *g, const model_hparams *hp, const char *suffix, bool required,
                   int64_t lo, int64_t hi, int64_t *out, nd_err *err) {
    uint32_t v;
    int rc = gguf_get_arch_u32(g, suffix, &v, err);
    if (rc == ND_ENOTFOUND && !required) return 0;
    if (rc == ND_ENOTFOUND)
        return nd_seterr(err, ND_EFORMAT, "missing key %s.%s — not a complete %s model file",
                         hp->arch_name, suffix, hp->arch_name);
    if (rc) return nd_preerr(err, "key %s.%s: ", hp->arch_name, suffix);
    if ((int64_t)v < lo || (int64_t)v > hi)
        return nd_seterr(err, ND_ERANGE, "key %s.%s = %u is out of the range %lld..%lld",
                         hp->arch_name, suffix, v, (long long)lo, (long long)hi);
    *out = v;
    return 0;
}

static int get_float(const gguf_ctx *g, const model_hparams *hp, const char *suffix,
                     float *out, nd_err *err) {
    float v;
    int rc = gguf_get_arch_f32(g, suffix, &v, err);
    if (rc == ND_ENOTFOUND) return 0;
    if (rc) return nd_preerr(err, "key %s.%s: ", hp->arch_name, suffix);
    if (!isfinite(v))
        return nd_seterr(err, ND_ERANGE, "key %s.%s is not a finite number", hp->arch_name,
                         suffix);
    *out = v;
    return 0;
}

static int read_hparams(const gguf_ctx *g, model_hparams *hp, nd_err *err) {
    gguf_str an;
    int rc = gguf_get_str(g, "general.architecture", &an, err);
    if (rc) return nd_preerr(err, "general.architecture: ");
    if (arch_from_name(an, hp))
        return nd_seterr(err, ND_EUNSUPPORTED,
                         "architecture '%.*s' is not supported (supported: llama, qwen2, qwen3, "
                         "phi3)", (int)(an.len > 64 ? 64 : an.len), an.ptr);
    hp->n_head_kv = 0;
    hp->head_dim_k = hp->head_dim_v = hp->n_rot = 0;
    hp->n_ctx_orig = 0;
    if ((rc = get_dim(g, hp, "context_length", true, 1, HP_MAX_CTX, &hp->n_ctx_train, err)) ||
        (rc = get_dim(g, hp, "embedding_length", true, 1, HP_MAX_EMBD, &hp->n_embd, err)) ||
        (rc = get_dim(g, hp, "block_count", true, 1, HP_MAX_LAYER, &hp->n_layer, err)) ||
        (rc = get_dim(g, hp, "feed_forward_length", true, 1, HP_MAX_FF, &hp->n_ff, err)) ||
        (rc = get_dim(g, hp, "attention.head_count", true, 1, HP_MAX_HEAD, &hp->n_head, err)) ||
        (rc = get_dim(g, hp, "attention.head_count_kv", false, 1, HP_MAX_HEAD, &hp->n_head_kv,
                      err)) ||
        (rc = get_dim(g, hp, "attention.key_length", false, 1, HP_MAX_HEAD_DIM, &hp->head_dim_k,
                      err)) ||
        (rc = get_dim(g, hp, "attention.value_length", false, 1, HP_MAX_HEAD_DIM,
                      &hp->head_dim_v, err)) ||
        (rc = get_dim(g, hp, "rope.dimension_count", false, 0, HP_MAX_HEAD_DIM, &hp->n_rot,
                      err)) ||
        (rc = get_dim(g, hp, "attention.sliding_window", false, 0, HP_MAX_CTX, &hp->n_swa,
                      err)) ||
        (rc = get_dim(g, hp, "rope.scaling.original_context_length", false, 1, HP_MAX_CTX,
                      &hp->n_ctx_orig, err)))
        return rc;
    if (!hp->n_head_kv) hp->n_head_kv = hp->n_head;
    if (!hp->head_dim_k) {
        if (hp->n_embd % hp->n_head)
            return nd_seterr(err, ND_EFORMAT,
                             "%s.attention.head_count = %lld does not divide embedding_length = "
                             "%lld (and no attention.key_length is given)", hp->arch_name,
                             (long long)hp->n_head, (long long)hp->n_embd);
        hp->head_dim_k = hp->n_embd / hp->n_head;
    }
    if (!hp->head_dim_v) hp->head_dim_v = hp->head_dim_k;
    if (!hp->n_rot) hp->n_rot = hp->head_dim_k;
    if (!hp->n_ctx_orig) hp->n_ctx_orig = hp->n_ctx_train;
    if (hp->n_head % hp->n_head_kv)
        return nd_seterr(err, ND_EFORMAT,
                         "%s.attention.head_count_kv = %lld does not divide head_count = %lld",
                         hp->arch_name, (long long)hp->n_head_kv, (long long)hp->n_head);
    if (hp->n_rot > hp->head_dim_k || hp->n_rot % 2)
        return nd_seterr(err, ND_EFORMAT,
                         "%s.rope.dimension_count = %lld must be even and <= the head size %lld",
                         hp->arch_name, (long long)hp->n_rot, (long long)hp->head_dim_k);
    if (hp->head_dim_k % 2)
        return nd_seterr(err, ND_EFORMAT, "head size %lld is odd", (long long)hp->head_dim_k);

    hp->rms_eps = 1e-5f;
    hp->rope_base = 10000.0f;
    hp->rope_freq_scale = 1.0f;
    hp->rope_attn_factor = 1.0f;
    if ((rc = get_float(g, hp, "attention.layer_norm_rms_epsilon", &hp->rms_eps, err)) ||
        (rc = get_float(g, hp, "rope.freq_base", &hp->rope_base, err)) ||
        (rc = get_float(g, hp, "rope.scaling.attn_factor", &hp->rope_attn_factor, err)))
        return rc;
    if (!(hp->rms_eps > 0 && hp->rms_eps < 1) || !(hp->rope_base > 1))
        return nd_seterr(err, ND_ERANGE, "%s: rms epsilon %g or rope base %g out of range",
                         hp->arch_name, (double)hp->rms_eps, (double)hp->rope_base);
    hp->rope_neox = hp->arch != MODEL_ARCH_LLAMA;
    hp->q_prescaled = hp->arch == MODEL_ARCH_PHI3;
    return 0;
}

/* <arch>.rope.scaling.type: "linear" sets freq_scale, "llama3" without a rope_freqs tensor
 * computes the per-dimension divisors, "longrope"/"su" use the phi3 factor tensors. */
static int read_rope_scaling(const gguf_ctx *g, model_t *m, nd_err *err) {
    model_hparams *hp = &m->hp;
    char key[128];
    snprintf(key, sizeof key, "%s.rope.scaling.type", hp->arch_name);
    gguf_str type = {"none", 4};
    int rc = gguf_get_str(g, key, &type, err);
    if (rc && rc != ND_ENOTFOUND) return nd_preerr(err, "%s: ", key);
    float factor = 1.0f;
    if ((rc = get_float(g, hp, "rope.scaling.factor", &factor, err))) return rc;
    if (gguf_str_eq(type, "none") || gguf_str_eq(type, "longrope") || gguf_str_eq(type, "su"))
        return 0;
    if (!(factor > 0))
        return nd_seterr(err, ND_ERANGE, "%s.rope.scaling.factor = %g must be > 0",
                         hp->arch_name, (double)factor);
    if (gguf_str_eq(type, "linear")) {
        hp->rope_freq_scale = 1.0f / factor;
        return 0;
    }
    if (gguf_str_eq(type, "llama3")) {
        if (gguf_find_tensor(g, "rope_freqs.weight")) return 0; /* precomputed by converter */
        float lo = 1.0f, hi = 4.0f;
        if ((rc = get_float(g, hp, "rope.scaling.low_freq_factor", &lo, err)) ||
            (rc = get_float(g, hp, "rope.scaling.high_freq_factor", &hi, err)))
            return rc;
        if (!(hi > lo))
            return nd_seterr(err, ND_ERANGE, "llama3 rope scaling: high_freq_factor %g <= "
                             "low_freq_factor %g", (double)hi, (double)lo);
        int64_t nf = hp->n_rot / 2;
        m->owned_freqs = nd_malloc((size_t)nf * sizeof(float));
        if (!m->owned_freqs) return nd_seterr(err, ND_ENOMEM, "out of memory");
        double orig = (double)hp->n_ctx_orig;
        for (int64_t i = 0; i < nf; i++) {
            double freq = pow(hp->rope_base, -2.0 * (double)i / (double)hp->n_rot);
            double wavelen = 2 * M_PI / freq;
            double div;
            if (wavelen < orig / hi) div = 1;
            else if (wavelen > orig / lo) div = factor;
            else {
                double smooth = (orig / wavelen - lo) / (hi - lo);
                div = 1.0 / ((1 - smooth) / factor + smooth);
            }
            m->owned_freqs[i] = (float)div;
        }
        m->rope_freqs = m->owned_freqs;
        return 0;
    }
    return nd_seterr(err, ND_EUNSUPPORTED, "%s = '%.*s' is not supported yet (none, linear, "
                     "llama3, longrope are)", key, (int)(type.len > 32 ? 32 : type.len), type.ptr);
}

/* ------------------------------------------------------------- tensors */

static void shape_str(const gguf_tensor *t, char *buf, size_t cap) {
    int n = snprintf(buf, cap, "[");
    for (uint32_t d = 0; d < t->n_dims && n > 0 && (size_t)n < cap; d++)
        n += snprintf(buf + n, cap - (size_t)n, "%s%llu", d ? ", " : "",
                      (unsigned long long)t->ne[d]);
    if (n > 0 && (size_t)n < cap) snprintf(buf + n, cap - (size_t)n, "]");
}

/* The tensor must be [k, n] (n == 1 allows a 1-D tensor). */
static int check_shape(const gguf_tensor *t, int64_t k, int64_t n, nd_err *err) {
    bool ok = t->ne[0] == (uint64_t)k && t->ne[1] == (uint64_t)n && t->ne[2] == 1 &&
              t->ne[3] == 1;
    if (ok) return 0;
    char have[96];
    shape_str(t, have, sizeof have);
    if (n == 1)
        return nd_seterr(err, ND_EFORMAT, "tensor %s: shape %s, expected [%lld]", t->name, have,
                         (long long)k);
    return nd_seterr(err, ND_EFORMAT, "tensor %s: shape %s, expected [%lld, %lld]", t->name,
                     have, (long long)k, (long long)n);
}

static const gguf_tensor *find_t(const gguf_ctx *g, const char *name, bool required,
                                 nd_err *err, int *rc) {
    const gguf_tensor *t = gguf_find_tensor(g, name);
    *rc = 0;
    if (!t && required)
        *rc = nd_seterr(err, ND_ENOTFOUND, "tensor %s is missing — incomplete or mislabelled "
                        "model file", name);
    return t;
}

static int bind_mat(const gguf_ctx *g, const char *name, int64_t k, int64_t n, bool required,
                    model_mat *out, nd_err *err) {
    int rc;
    memset(out, 0, sizeof *out);
    const gguf_tensor *t = find_t(g, name, required, err, &rc);
    if (!t) return rc;
    if ((rc = check_shape(t, k, n, err))) return rc;
    if (q_vec_dot_type(t->type) == UINT32_MAX || q_row_size(t->type, k) == 0) {
        const nd_type_traits *tr = nd_type_info(t->type);
        return nd_seterr(err, ND_EUNSUPPORTED, "tensor %s: weight type %s (%u) is not supported",
                         name, tr && tr->name ? tr->name : "unknown", t->type);
    }
    *out = (model_mat){t->data, t->type, k, n, t->name, K_LAYOUT_ROWS};
    return 0;
}

static int bind_vec(const gguf_ctx *g, const char *name, int64_t len, bool required,
                    const float **out, nd_err *err) {
    int rc;
    *out = NULL;
    const gguf_tensor *t = find_t(g, name, required, err, &rc);
    if (!t) return rc;
    if ((rc = check_shape(t, len, 1, err))) return rc;
    if (t->type != ND_TYPE_F32)
        return nd_seterr(err, ND_EUNSUPPORTED, "tensor %s: type %u, expected f32", name, t->type);
    *out = (const float *)t->data;
    return 0;
}

static int bind_layer(const gguf_ctx *g, const model_hparams *hp, int il, model_layer *L,
                      nd_err *err) {
    const int64_t E = hp->n_embd, nq = hp->n_head * hp->head_dim_k,
                  nk = hp->n_head_kv * hp->head_dim_k, nv = hp->n_head_kv * hp->head_dim_v;
    const bool phi3 = hp->arch == MODEL_ARCH_PHI3;
    char name[96];
    int rc = 0;
#define NAME(s) (snprintf(name, sizeof name, "blk.%d." s, il), name)
    if ((rc = bind_vec(g, NAME("attn_norm.weight"), E, true, &L->attn_norm, err)) ||
        (rc = bind_vec(g, NAME("ffn_norm.weight"), E, true, &L->ffn_norm, err)) ||
        (rc = bind_mat(g, NAME("attn_output.weight"), hp->n_head * hp->head_dim_v, E, true,
                       &L->wo, err)) ||
        (rc = bind_mat(g, NAME("ffn_down.weight"), hp->n_ff, E, true, &L->w_down, err)))
        return rc;
    /* attention projections: separate, or fused (phi3 files, optional elsewhere) */
    if ((rc = bind_mat(g, NAME("attn_qkv.weight"), E, nq + nk + nv, phi3 &&
                       !gguf_find_tensor(g, NAME("attn_q.weight")), &L->wqkv, err)))
        return rc;
    if (!L->wqkv.data &&
        ((rc = bind_mat(g, NAME("attn_q.weight"), E, nq, true, &L->wq, err)) ||
         (rc = bind_mat(g, NAME("attn_k.weight"), E, nk, true, &L->wk, err)) ||
         (rc = bind_mat(g, NAME("attn_v.weight"), E, nv, true, &L->wv, err))))
        return rc;
    const bool bias = hp->arch == MODEL_ARCH_QWEN2;
    if ((rc = bind_vec(g, NAME("attn_q.bias"), nq, bias, &L->bq, err)) ||
        (rc = bind_vec(g, NAME("attn_k.bias"), nk, bias, &L->bk, err)) ||
        (rc = bind_vec(g, NAME("attn_v.bias"), nv, bias, &L->bv, err)))
        return rc;
    const bool qk_norm = hp->arch == MODEL_ARCH_QWEN3;
    if ((rc = bind_vec(g, NAME("attn_q_norm.weight"), hp->head_dim_k, qk_norm, &L->q_norm,
                       err)) ||
        (rc = bind_vec(g, NAME("attn_k_norm.weight"), hp->head_dim_k, qk_norm, &L->k_norm,
                       err)))
        return rc;
    /* feed-forward: gate and up separate, or phi3's fused (gate | up) in ffn_up */
    if (phi3 && !gguf_find_tensor(g, NAME("ffn_gate.weight")))
        return bind_mat(g, NAME("ffn_up.weight"), E, 2 * hp->n_ff, true, &L->w_up, err);
    if ((rc = bind_mat(g, NAME("ffn_gate.weight"), E, hp->n_ff, true, &L->w_gate, err)) ||
        (rc = bind_mat(g, NAME("ffn_up.weight"), E, hp->n_ff, true, &L->w_up, err)))
        return rc;
#undef NAME
    return 0;
}

/* Tensors named blk.N.* with N >= block_count mean the hyper-parameters and the tensors
 * disagree: refuse rather than silently ignore layers. */
static int check_extra_layers(const gguf_ctx *g, const model_hparams *hp, nd_err *err) {
    for (uint64_t i = 0; i < g->n_tensors; i++) {
        const char *nm = g->tensors[i].name;
        if (strncmp(nm, "blk.", 4) != 0) continue;
        char *end;
        long il = strtol(nm + 4, &end, 10);
        if (end == nm + 4 || *end != '.' || il < 0 || il >= hp->n_layer)
            return nd_seterr(err, ND_EFORMAT, "tensor %s does not belong to any of the %lld "
                             "layers (%s.block_count)", nm, (long long)hp->n_layer,
                             hp->arch_name);
    }
    return 0;
}

static int bind_globals(const gguf_ctx *g, model_t *m, nd_err *err) {
    model_hparams *hp = &m->hp;
    int rc;
    const gguf_tensor *te = find_t(g, "token_embd.weight", true, err, &rc);
    if (!te) return rc;
    if (te->n_dims != 2 || te->ne[0] != (uint64_t)hp->n_embd || te->ne[1] < 1 ||
        te->ne[1] > HP_MAX_VOCAB) {
        char have[96];
        shape_str(te, have, sizeof have);
        return nd_seterr(err, ND_EFORMAT, "tensor token_embd.weight: shape %s, expected "
                         "[%lld, n_vocab] with 1 <= n_vocab <= %d", have,
                         (long long)hp->n_embd, HP_MAX_VOCAB);
    }
    hp->n_vocab = (int64_t)te->ne[1];
    if ((rc = bind_mat(g, "token_embd.weight", hp->n_embd, hp->n_vocab, true, &m->tok_embd,
                       err)))
        return rc;
    const gguf_array *toks;
    rc = gguf_get_arr(g, "tokenizer.ggml.tokens", GGUF_VT_STRING, &toks, NULL);
    if (rc == 0 && toks->n != (uint64_t)hp->n_vocab)
        return nd_seterr(err, ND_EFORMAT, "vocabulary mismatch: tokenizer.ggml.tokens has %llu "
                         "entries but token_embd.weight has %lld rows",
                         (unsigned long long)toks->n, (long long)hp->n_vocab);
    if ((rc = bind_vec(g, "output_norm.weight", hp->n_embd, true, &m->output_norm, err)) ||
        (rc = bind_mat(g, "output.weight", hp->n_embd, hp->n_vocab, false, &m->output, err)))
        return rc;
    if (!m->output.data) {
        m->output = m->tok_embd;
        m->tied_output = true;
    }
    const int64_t nf = hp->n_rot / 2;
    if (!m->rope_freqs &&
        (rc = bind_vec(g, "rope_freqs.weight", nf, false, &m->rope_freqs, err)))
        return rc;
    /* LongRoPE: files name them rope_factors_long.weight (older: per layer, identical) */
    if ((rc = bind_vec(g, "rope_factors_long.weight", nf, false, &m->rope_long, err)) ||
        (rc = bind_vec(g, "rope_factors_short.weight", nf, false, &m->rope_short, err)))
        return rc;
    if (!m->rope_long &&
        (rc = bind_vec(g, "blk.0.rope_factors_long.weight", nf, false, &m->rope_long, err)))
        return rc;
    if (!m->rope_short &&
        (rc = bind_vec(g, "blk.0.rope_factors_short.weight", nf, false, &m->rope_short, err)))
        return rc;
    return 0;
}

/* ------------------------------------------------------- weight placement */

int model_weights_parse(const char *s, model_weights *out, nd_err *err) {
    static const char *names[] = {"auto", "mmap", "copy"};
    for (int i = 0; i < 3; i++)
        if (s && strcmp(s, names[i]) == 0) {
            *out = (model_weights)i;
            return 0;
        }
    return nd_seterr(err, ND_EINVAL, "weights placement '%s': expected auto, mmap or copy",
                     s ? s : "");
}

bool model_weights_copied(const model_t *m) { return m && m->wcopy; }
int model_weights_repacked(const model_t *m) { return m ? m->n_repacked : 0; }

/* A layer's weight matrices, absent ones (data NULL) included: the one list of them. */
#define LAYER_MATS 8
_Static_assert(LAYER_MATS == 8, "MODEL_MATS_MAX (model.h) counts 8 matrices a layer");
static void layer_mats(model_layer *L, model_mat *out[LAYER_MATS]) {
    model_mat *lm[LAYER_MATS] = {&L->wq, &L->wk, &L->wv, &L->wqkv, &L->wo, &L->w_gate, &L->w_up, &L->w_down};
    memcpy(out, lm, sizeof lm);
}

size_t model_mats(const model_t *m, const model_mat **out) {
    size_t n = 0;
    if (m->tok_embd.data) out[n++] = &m->tok_embd;
    if (m->output.data) out[n++] = &m->output;
    for (int64_t il = 0; il < m->hp.n_layer; il++) {
        model_mat *lm[LAYER_MATS];
        layer_mats(&m->layers[il], lm);
        for (int i = 0; i < LAYER_MATS; i++)
            if (lm[i]->data) out[n++] = lm[i];
    }
    return n;
}

/* Repacks, in place, every copied matrix this CPU's kernels have a faster layout for. The
 * token embedding is only ever read a row at a time: it takes the output's layout when it
 * is the output (tied, the same data), and stays as it is otherwise. A repacked embedding
 * is read through k_x16_row. */
static bool repackable(const k_kernels *k, const model_mat *w) {
    return k_x16_supported(k, w->type) && k_x16_fits(w->type, w->k, w->n, w->data);
}

static int repack_weights(model_t *m, nd_err *err) {
    k_kernels k;
    k_select(&k, K_ISA_BEST);
    const model_mat **mats = nd_malloc(MODEL_MATS_MAX(m) * sizeof *mats);
    if (!mats) return nd_seterr(err, ND_ENOMEM, "out of memory repacking the weights");
    const size_t n = model_mats(m, mats);
    size_t tmp_size = 0;
    for (size_t i = 0; i < n; i++)
        if (mats[i] != &m->tok_embd && repackable(&k, mats[i])) {
            const size_t g = K_X16_TMP_ROWS * q_row_size(mats[i]->type, mats[i]->k);
            tmp_size = g > tmp_size ? g : tmp_size;
        }
    void *tmp = tmp_size ? nd_malloc(tmp_size) : NULL;
    if (tmp_size && !tmp) {
        nd_free(mats);
        return nd_seterr(err, ND_ENOMEM, "out of memory repacking the weights");
    }
    for (size_t i = 0; i < n; i++) {
        model_mat *w = (model_mat *)mats[i]; /* m is ours to change */
        if (w == &m->tok_embd || !repackable(&k, w)) continue;
        k_x16_repack(w->type, (void *)w->data, w->k, w->n, tmp);
        w->layout = K_LAYOUT_X16;
        m->n_repacked++;
    }
    if (m->tok_embd.data == m->output.data) m->tok_embd.layout = m->output.layout;
    nd_free(tmp);
    nd_free(mats);
    return 0;
}

/* MemAvailable from /proc/meminfo in bytes; -1 when unknown */
static int64_t mem_available(void) {
    FILE *f = fopen("/proc/meminfo", "r");
    if (!f) return -1;
    char line[128];
    long long kb = -1;
    while (fgets(line, sizeof line, f))
        if (sscanf(line, "MemAvailable: %lld kB", &kb) == 1) break;
    fclose(f);
    return kb < 0 ? -1 : (int64_t)kb * 1024;
}

/* p moved by the copy if it points into [lo, hi) */
static void rebase(const void **p, const uint8_t *lo, const uint8_t *hi, uint8_t *dst) {
    const uint8_t *q = *p;
    if (q && q >= lo && q < hi) *p = dst + (q - lo);
}
static void rebase_f(const float **p, const uint8_t *lo, const uint8_t *hi, uint8_t *dst) {
    const void *v = *p;
    rebase(&v, lo, hi, dst);
    *p = v;
}

#define COPY_CHUNK ((size_t)8 << 20)

/* Copies the file's tensor data [lo, hi) into an anonymous, huge-page-advised mapping and
 * points every weight and vector of m at the copy. The file pages of each copied chunk are
 * dropped from the process as it goes (a shared read-only file mapping: the pages stay in
 * the page cache, and anything still reading the mapping faults them back in). */
static int copy_weights(model_t *m, const uint8_t *lo, const uint8_t *hi, bool repack, nd_err *err) {
    /* lo lands on a 2 MiB boundary: tensors at 64-byte multiples from it are 64-aligned */
    const size_t n = (size_t)(hi - lo);
    size_t size;
    uint8_t *base = nd_huge_alloc(n, &size);
    if (!base)
        return nd_seterr(err, ND_ENOMEM, "cannot allocate %zu MiB for the weights (use --weights "
                         "mmap to run from the file mapping)", n >> 20);
    const bool drop = m->gguf->owns_map; /* never drop pages of a caller's buffer */
    const uintptr_t page = (uintptr_t)sysconf(_SC_PAGESIZE);
    nd_progress pr;
    nd_progress_begin(&pr, "loading weights", n);
    for (size_t off = 0; off < n; off += COPY_CHUNK) {
        const size_t len = n - off < COPY_CHUNK ? n - off : COPY_CHUNK;
        memcpy(base + off, lo + off, len);
        /* whole pages of the source copied so far */
        const uintptr_t p0 = ((uintptr_t)(lo + off) + page - 1) & ~(page - 1);
        const uintptr_t p1 = ((uintptr_t)(lo + off + len)) & ~(page - 1);
        if (drop && p1 > p0) madvise((void *)p0, p1 - p0, MADV_DONTNEED);
        nd_progress_update(&pr, off + len);
    }
    nd_progress_end(&pr);
    rebase(&m->tok_embd.data, lo, hi, base);
    rebase(&m->output.data, lo, hi, base);
    rebase_f(&m->output_norm, lo, hi, base);
    rebase_f(&m->rope_freqs, lo, hi, base);
    rebase_f(&m->rope_long, lo, hi, base);
    rebase_f(&m->rope_short, lo, hi, base);
    for (int64_t il = 0; il < m->hp.n_layer; il++) {
        model_layer *L = &m->layers[il];
        model_mat *lm[LAYER_MATS];
        layer_mats(L, lm);
        for (int i = 0; i < LAYER_MATS; i++) rebase(&lm[i]->data, lo, hi, base);
        const float **vs[] = {&L->attn_norm, &L->bq, &L->bk, &L->bv, &L->q_norm, &L->k_norm, &L->ffn_norm};
        for (size_t i = 0; i < sizeof vs / sizeof vs[0]; i++) rebase_f(vs[i], lo, hi, base);
    }
    m->wcopy = base;
    m->wcopy_size = size;
    const int rc = repack ? repack_weights(m, err) : 0;
    mprotect(base, size, PROT_READ); /* weights are read-only, as in the mapping */
    return rc;
}

static int place_weights(model_t *m, model_weights mode, bool repack, nd_err *err) {
    const gguf_ctx *g = m->gguf;
    const uint8_t *lo = NULL, *hi = NULL;
    for (uint64_t i = 0; i < g->n_tensors; i++) {
        const gguf_tensor *t = &g->tensors[i];
        if (!t->nbytes) continue;
        if (!lo || t->data < lo) lo = t->data;
        if (!hi || t->data + t->nbytes > hi) hi = t->data + t->nbytes;
    }
    if (mode == MODEL_WEIGHTS_MMAP || !lo) return 0;
    if (mode == MODEL_WEIGHTS_AUTO) {
        const int64_t avail = mem_available();
        if (avail < 0 || (int64_t)(hi - lo) + ((int64_t)512 << 20) > avail) return 0;
    }
    return copy_weights(m, lo, hi, repack, err);
}

model_t *model_load_gguf(gguf_ctx *g, nd_err *err) { return model_load_gguf_ex(g, NULL, err); }

model_t *model_load_gguf_ex(gguf_ctx *g, const model_load_params *p, nd_err *err) {
    model_t *m = nd_calloc(1, sizeof *m);
    if (!m) {
        nd_seterr(err, ND_ENOMEM, "out of memory loading a model");
        return NULL;
    }
    int rc;
    if ((rc = read_hparams(g, &m->hp, err)) || (rc = read_rope_scaling(g, m, err)) ||
        (rc = bind_globals(g, m, err)))
        goto fail;
    m->layers = nd_calloc((size_t)m->hp.n_layer, sizeof *m->layers);
    if (!m->layers) {
        rc = nd_seterr(err, ND_ENOMEM, "out of memory for %lld layers", (long long)m->hp.n_layer);
        goto fail;
    }
    for (int il = 0; il < m->hp.n_layer; il++)
        if ((rc = bind_layer(g, &m->hp, il, &m->layers[il], err))) goto fail;
    if ((rc = check_extra_layers(g, &m->hp, err))) goto fail;
    m->gguf = g;
    if ((rc = place_weights(m, p ? p->weights : MODEL_WEIGHTS_AUTO, !(p && p->no_repack), err))) goto fail;
    return m;
fail:
    m->gguf = NULL; /* the caller keeps g */
    model_free(m);
    return NULL;
}

model_t *model_load(const char *path, nd_err *err) { return model_load_ex(path, NULL, err); }

model_t *model_load_ex(const char *path, const model_load_params *p, nd_err *err) {
    gguf_ctx *g = gguf_open(path, err);
    if (!g) return NULL;
    model_t *m = model_load_gguf_ex(g, p, err);
    if (!m) {
        nd_preerr(err, "%s: ", path);
        gguf_close(g);
    }
    return m;
}

void model_free(model_t *m) {
    if (!m) return;
    gguf_close(m->gguf);
    nd_huge_free(m->wcopy, m->wcopy_size);
    nd_free(m->owned_freqs);
    nd_free(m->layers);
    nd_free(m);
}
