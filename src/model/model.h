/* nindub model: hyper-parameters, per-architecture tensor binding, KV cache and the
 * batched forward pass of decoder-only transformers.
 *
 * Architectures: llama (incl. Llama 3.x rope factors), qwen2 (QKV biases), qwen3 (per-head
 * q/k RMSNorm), phi3 (fused QKV and gate+up, partial rotary, LongRoPE factors).
 *
 * Ownership: a model_t borrows nothing after model_load(): it owns its gguf_ctx (the mmap)
 * and its weights: views into that mapping, or one copy of the file's tensor data in
 * anonymous memory that replaces the mapping's pages (model_weights below). A model_ctx borrows its model
 * (the model must outlive it) and owns the KV cache, the scratch buffers and a thread pool.
 *
 * Shapes follow GGUF/ggml order in comments: a matrix "[K] x N" is N rows of K elements
 * (ne0 = K is the row length), and a matmul with it maps a K-vector to an N-vector.
 */
#ifndef ND_MODEL_H
#define ND_MODEL_H

#include "core/nd.h"
#include "core/pool.h"
#include "gguf/gguf.h"
#include "kernels/kernels.h"

typedef enum model_arch {
    MODEL_ARCH_LLAMA,
    MODEL_ARCH_QWEN2,
    MODEL_ARCH_QWEN3,
    MODEL_ARCH_PHI3,
} model_arch;

typedef struct model_hparams {
    model_arch arch;
    const char *arch_name;  /* "llama", ... (static string) */
    int64_t n_vocab;        /* rows of token_embd */
    int64_t n_ctx_train;    /* <arch>.context_length */
    int64_t n_embd;         /* <arch>.embedding_length */
    int64_t n_layer;        /* <arch>.block_count */
    int64_t n_ff;           /* <arch>.feed_forward_length */
    int64_t n_head;         /* <arch>.attention.head_count */
    int64_t n_head_kv;      /* <arch>.attention.head_count_kv (default n_head) */
    int64_t head_dim_k;     /* <arch>.attention.key_length (default n_embd / n_head) */
    int64_t head_dim_v;     /* <arch>.attention.value_length (default head_dim_k) */
    int64_t n_rot;          /* <arch>.rope.dimension_count (default head_dim_k) */
    float rms_eps;          /* <arch>.attention.layer_norm_rms_epsilon */
    float rope_base;        /* <arch>.rope.freq_base (default 10000) */
    float rope_freq_scale;  /* 1 / <arch>.rope.scaling.factor for linear scaling, else 1 */
    float rope_attn_factor; /* <arch>.rope.scaling.attn_factor (default 1): scales cos/sin */
    int64_t n_ctx_orig;     /* <arch>.rope.scaling.original_context_length (default train) */
    bool rope_neox;         /* rotate (x[i], x[i + n_rot/2]) instead of (x[2i], x[2i+1]) */
    int64_t n_swa;          /* <arch>.attention.sliding_window, 0 = full attention */
    bool q_prescaled;       /* phi3: q *= 1/sqrt(head_dim) before attention (as llama.cpp) */
} model_hparams;

/* A weight matrix: a view into the mapping. [k] x n: n rows of k elements of `type`. */
typedef struct model_mat {
    const void *data; /* NULL when absent */
    uint32_t type;    /* nd_type */
    int64_t k, n;
    const char *name; /* the GGUF tensor name (owned by the gguf_ctx) */
    int layout;       /* K_LAYOUT_ROWS, or K_LAYOUT_X16 when repacked at load (kernels.h) */
} model_mat;

typedef struct model_layer {
    const float *attn_norm; /* [n_embd] */
    model_mat wq;           /* [n_embd] x n_head*head_dim_k     (absent when wqkv is used) */
    model_mat wk;           /* [n_embd] x n_head_kv*head_dim_k */
    model_mat wv;           /* [n_embd] x n_head_kv*head_dim_v */
    model_mat wqkv;         /* phi3: [n_embd] x (q | k | v) rows, fused */
    const float *bq;        /* qwen2: [n_head*head_dim_k] or NULL */
    const float *bk;        /* qwen2: [n_head_kv*head_dim_k] or NULL */
    const float *bv;        /* qwen2: [n_head_kv*head_dim_v] or NULL */
    const float *q_norm;    /* qwen3: [head_dim_k], shared by all heads, or NULL */
    const float *k_norm;    /* qwen3: [head_dim_k] or NULL */
    model_mat wo;           /* [n_head*head_dim_v] x n_embd */
    const float *ffn_norm;  /* [n_embd] */
    model_mat w_gate;       /* [n_embd] x n_ff                 (absent for phi3) */
    model_mat w_up;         /* [n_embd] x n_ff; phi3: x 2*n_ff = (gate | up) */
    model_mat w_down;       /* [n_ff] x n_embd */
} model_layer;

typedef struct model_t {
    gguf_ctx *gguf;           /* owned: the mapping all weights point into */
    model_hparams hp;
    model_mat tok_embd;       /* [n_embd] x n_vocab */
    const float *output_norm; /* [n_embd] */
    model_mat output;         /* [n_embd] x n_vocab; a copy of tok_embd's view when tied */
    bool tied_output;
    const float *rope_freqs;  /* [n_rot/2] divisors of the rotation frequencies, or NULL:
                                 rope_freqs.weight (Llama 3.1) or computed (owned_freqs) */
    const float *rope_long;   /* phi3 LongRoPE: [n_rot/2] or NULL */
    const float *rope_short;  /* [n_rot/2] or NULL */
    float *owned_freqs;       /* [n_rot/2] computed from Llama-3 scaling keys, or NULL */
    model_layer *layers;      /* [n_layer] */
    void *wcopy;              /* MODEL_WEIGHTS_COPY: the anonymous mapping every weight and
                                 vector points into (wcopy_size bytes), or NULL */
    size_t wcopy_size;
    int n_repacked;           /* matrices repacked at load (K_LAYOUT_X16) */
} model_t;

/* Where the weights live. Decode streams every weight once per token, so it runs at the
 * speed memory delivers them. Views into the file mapping sit on 4 KiB page-cache pages:
 * a TLB miss every 4 KiB, and the hardware prefetchers stop at every page boundary. A copy
 * in anonymous memory with transparent huge pages (2 MiB) streams ~25% faster on this
 * class of machine (bench: nindub bench, tg). The copy is made chunk by chunk, each chunk's
 * file pages dropped from the process (MADV_DONTNEED) once copied, so the peak RSS stays
 * about the file size; the file's pages stay in the page cache, reclaimable. */
typedef enum model_weights {
    MODEL_WEIGHTS_AUTO = 0, /* COPY when the tensor data fits in MemAvailable with 512 MiB to
                               spare, else MMAP (a model larger than RAM still runs) */
    MODEL_WEIGHTS_MMAP = 1, /* views into the mapping (llama.cpp's default) */
    MODEL_WEIGHTS_COPY = 2, /* copy, or fail with ND_ENOMEM */
} model_weights;

typedef struct model_load_params {
    model_weights weights;
    /* Copied weights are repacked in place into the layout of this CPU's fastest decode
     * kernels where there is one (Q4_0, Q5_0, Q8_0, Q4_K on AVX-512: K_LAYOUT_X16); true keeps GGUF's. */
    bool no_repack;
} model_load_params;

/* Open a GGUF file, read and validate the hyper-parameters, bind and shape-check every
 * tensor. Errors name the tensor or key (e.g. "blk.3.attn_q.weight: shape [64, 60], expected
 * [64, 64]"). Returns NULL on failure. */
model_t *model_load(const char *path, nd_err *err);
/* Same on an already-open GGUF; on success the model owns g (closes it in model_free), on
 * failure the caller still owns g. */
model_t *model_load_gguf(gguf_ctx *g, nd_err *err);
/* The same with parameters (NULL = defaults: MODEL_WEIGHTS_AUTO). */
model_t *model_load_ex(const char *path, const model_load_params *p, nd_err *err);
model_t *model_load_gguf_ex(gguf_ctx *g, const model_load_params *p, nd_err *err);
/* "mmap" / "copy" / "auto" -> *out; ND_EINVAL for anything else (CLI flags). */
int model_weights_parse(const char *s, model_weights *out, nd_err *err);
/* Whether m's weights are the anonymous copy (true) or views into the file mapping. */
bool model_weights_copied(const model_t *m);
/* How many weight matrices were repacked at load (model_load_params.no_repack). */
int model_weights_repacked(const model_t *m);
/* Every weight matrix (tok_embd, output, each layer's; absent ones skipped) into out, which
 * has room for MODEL_MATS_MAX(m); returns the count. A tied output is its own entry with
 * tok_embd's data. */
#define MODEL_MATS_MAX(m) (2 + 8 * (size_t)(m)->hp.n_layer)
size_t model_mats(const model_t *m, const model_mat **out);
void model_free(model_t *m);

/* ----------------------------------------------------------- context */

typedef struct model_ctx_params {
    int64_t n_ctx;     /* KV cache positions; 0 = min(context_length, 4096) */
    int n_threads;     /* 0 = all CPUs this process may use */
    int n_batch;       /* tokens per forward chunk (prefill tile); 0 = 256 */
    uint32_t kv_type;  /* ND_TYPE_F16 (default, as llama.cpp) or ND_TYPE_F32 */
    k_isa isa;         /* K_ISA_BEST by default; K_ISA_SCALAR forces the reference */
    /* Optional: called before every weight matmul with its input rows X[M][K] and the
     * weight's tensor name (importance-matrix collection). NULL = no call. */
    void (*on_matmul)(void *user, const char *weight, const float *X, int64_t M, int64_t K);
    void *on_matmul_user;
    int n_seq;         /* independent sequences (server slots), each with n_ctx positions; 0 = 1 */
} model_ctx_params;

model_ctx_params model_ctx_default_params(void);

typedef struct model_ctx model_ctx;

/* Allocates the KV cache and scratch, starts n_threads - 1 worker threads. */
model_ctx *model_ctx_new(const model_t *m, const model_ctx_params *p, nd_err *err);
void model_ctx_free(model_ctx *c);

int64_t model_ctx_n_ctx(const model_ctx *c);
int model_ctx_n_threads(const model_ctx *c);
const model_t *model_ctx_model(const model_ctx *c);
/* Positions [0, n) of the KV cache hold valid entries. */
int64_t model_ctx_n_past(const model_ctx *c);

typedef enum model_logits {
    MODEL_LOGITS_NONE = 0, /* fill the cache only */
    MODEL_LOGITS_LAST = 1, /* logits_out: [n_vocab] for the last token */
    MODEL_LOGITS_ALL = 2,  /* logits_out: [n][n_vocab] */
} model_logits;

/* Runs tokens[0..n) at positions pos0..pos0+n-1 with causal attention over cache entries
 * [0, pos0 + i]. pos0 may rewind (<= n_past: later entries are overwritten / dropped) but
 * not skip ahead (pos0 > n_past is ND_EINVAL). pos0 + n > n_ctx is ND_ERANGE; token ids
 * outside the vocabulary are ND_EINVAL. On success n_past = pos0 + n. */
int model_forward(model_ctx *c, const int32_t *tokens, int n, int64_t pos0, float *logits_out,
                  model_logits which, nd_err *err);

/* ------------------------------------------------- several sequences */

/* Continuous batching: one forward pass over tokens of several sequences (each reads
 * the weights once for all). Token i goes to sequence seq[i] at position pos[i]. Per
 * sequence, positions must be consecutive in batch order and the first must be at or
 * before its cached length (a rewind drops the cache from there): ND_EINVAL otherwise,
 * ND_ERANGE beyond n_ctx. logits_out gets one [n_vocab] row per token with want[i], in
 * batch order (want NULL = none). model_forward is this for sequence 0. On an error the
 * caches of the batch's sequences are undefined from their first position on. */
int model_forward_batch(model_ctx *c, int n, const int32_t *tokens, const int32_t *seq,
                        const int64_t *pos, const bool *want, float *logits_out, nd_err *err);
int model_ctx_n_seq(const model_ctx *c);
int64_t model_ctx_seq_past(const model_ctx *c, int seq);
/* Forget sequence seq's cache from position pos on (pos 0: the whole sequence). */
int model_ctx_seq_truncate(model_ctx *c, int seq, int64_t pos, nd_err *err);

#endif
