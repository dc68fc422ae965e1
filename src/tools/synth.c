/* nindub synth: random-weight models with the exact shapes of real ones, plus a small
 * real tokenizer, for demos, tests and speed work (speed does not depend on weight
 * values; the output of such a model is gibberish, and the tool says so).
 *
 * The tokenizer is SentencePiece-style ("llama" kind): byte tokens <0xNN>, every
 * character of a built-in English/code text, and the pieces a BPE trainer learns on that
 * text (scores = -merge rank, so score-driven SPM merging replays the BPE merges). Vocab
 * slots beyond those are "[PADn]" tokens of type UNUSED, up to the preset's vocab size.
 *
 * Weights: seeded xorshift, uniform with the variance of N(0, 0.02²) (norms = 1, biases
 * small), generated per tensor from (seed, tensor name) so every tensor is reproducible
 * on its own; quantized with quant/'s reference quantizers row by row. */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "gguf/gguf.h"
#include "quant/quant.h"
#include "tools/presets.h"
#include "tools/tools.h"

/* ------------------------------------------------------------------ presets */



/* ------------------------------------------------------- tokenizer training */

static const char train_text[] =
    "nindub runs language models on the hardware people actually own: a few CPU cores, some "
    "memory, maybe a small GPU. It reads a model file, maps its weights, turns text into tokens, "
    "and predicts the next token again and again. The quick brown fox jumps over the lazy dog. "
    "A small helper model sits beside a large main model; the helper routes requests, scrubs "
    "secrets before anything leaves the machine, compiles generated code and feeds the errors "
    "back, and prunes the context that is retrieved for a question. Every kernel keeps a scalar "
    "reference, and the fast versions are tested against it. Hostile input gets a clear error, "
    "never a crash. Speed is measured, not asserted.\n"
    "int main(int argc, char **argv) {\n    for (int i = 0; i < argc; i++) printf(\"%s\\n\", argv[i]);\n"
    "    return 0;\n}\n"
    "def tokenize(text):\n    return [word for word in text.split() if word]\n"
    "The model is small, the machine is modest, and the answer should still be fast, private and "
    "reliable. Read the file, check every size, and say what to do when something is wrong.";

#define SP "\xe2\x96\x81" /* U+2581, SentencePiece's visible space */

typedef struct vocab_b {
    char **tok;
    float *score;
    int32_t *type;
    size_t n, cap;
} vocab_b;

static int vb_add(vocab_b *v, const char *s, size_t len, float score, int32_t type) {
    if (v->n == v->cap) {
        size_t cap = v->cap ? v->cap * 2 : 1024;
        char **t = nd_realloc(v->tok, cap * sizeof *t);
        if (!t) return ND_ENOMEM;
        v->tok = t;
        float *sc = nd_realloc(v->score, cap * sizeof *sc);
        if (!sc) return ND_ENOMEM;
        v->score = sc;
        int32_t *ty = nd_realloc(v->type, cap * sizeof *ty);
        if (!ty) return ND_ENOMEM;
        v->type = ty;
        v->cap = cap;
    }
    if (!(v->tok[v->n] = nd_strndup(s, len))) return ND_ENOMEM;
    v->score[v->n] = score;
    v->type[v->n] = type;
    v->n++;
    return 0;
}

static void vb_free(vocab_b *v) {
    for (size_t i = 0; i < v->n; i++) nd_free(v->tok[i]);
    nd_free(v->tok);
    nd_free(v->score);
    nd_free(v->type);
}

static bool vb_has(const vocab_b *v, const char *s, size_t len) {
    for (size_t i = 0; i < v->n; i++)
        if (strlen(v->tok[i]) == len && !memcmp(v->tok[i], s, len)) return true;
    return false;
}

/* Words of the text as symbol sequences ("▁the" = [▁, t, h, e]); symbols are UTF-8
 * strings held as (offset, length) into a per-word buffer that merges rewrite. */
typedef struct word {
    char *s;      /* the word's text with ▁ for the leading space */
    int *cut;     /* symbol boundaries: cut[0] = 0 < cut[1] < ... < cut[n] = strlen(s) */
    int n;
} word;

typedef struct pair_ref {
    const char *s; /* the two symbols, adjacent in a word */
    int len, split, ord;
} pair_ref;

static int cmp_pair_content(const pair_ref *x, const pair_ref *y) {
    if (x->len != y->len) return x->len - y->len;
    if (x->split != y->split) return x->split - y->split;
    return memcmp(x->s, y->s, (size_t)x->len);
}

static int cmp_pair(const void *a, const void *b) { return cmp_pair_content(a, b); }

static int train_vocab(vocab_b *v, int n_merges) {
    int rc = vb_add(v, "<unk>", 5, 0, 2) || vb_add(v, "<s>", 3, 0, 3) || vb_add(v, "</s>", 4, 0, 3);
    char b[8];
    for (int i = 0; i < 256 && !rc; i++) {
        snprintf(b, sizeof b, "<0x%02X>", i);
        rc = vb_add(v, b, 6, 0, 6);
    }
    if (rc) return ND_ENOMEM;
    /* split into words: a word starts at a space (kept as ▁) or at a newline */
    word *w = nd_calloc(sizeof train_text, sizeof *w);
    if (!w) return ND_ENOMEM;
    int nw = 0;
    const char *p = train_text;
    while (*p && !rc) {
        nd_buf wb = {0};
        if (*p == ' ') { rc = nd_buf_append(&wb, SP, 3); p++; }
        while (!rc && *p && *p != ' ' && (wb.len == 0 || *p != '\n')) {
            rc = nd_buf_append(&wb, p, 1);
            if (*p++ == '\n') break;
        }
        if (rc || !wb.len) { nd_buf_free(&wb); continue; }
        word *cw = &w[nw++];
        cw->s = wb.data;
        cw->cut = nd_malloc((wb.len + 1) * sizeof *cw->cut);
        if (!cw->cut) { rc = ND_ENOMEM; break; }
        for (size_t i = 0; i < wb.len;) {
            int k = nd_utf8_seq_len((const uint8_t *)wb.data + i, wb.len - i);
            if (k <= 0) k = 1;
            cw->cut[cw->n++] = (int)i;
            /* every character is a base piece */
            if (!vb_has(v, wb.data + i, (size_t)k) && vb_add(v, wb.data + i, (size_t)k, -1e4f, 1)) rc = ND_ENOMEM;
            i += (size_t)k;
        }
        cw->cut[cw->n] = (int)wb.len;
    }
    /* BPE: repeatedly merge the most frequent adjacent pair (ties: first seen). Pairs are
     * gathered, sorted by content and counted in runs: O(P log P) per merge. */
    size_t max_pairs = sizeof train_text;
    pair_ref *pr = nd_malloc(max_pairs * sizeof *pr);
    if (!pr) rc = ND_ENOMEM;
    for (int m = 0; m < n_merges && !rc; m++) {
        size_t np = 0;
        for (int a = 0; a < nw; a++)
            for (int i = 0; i + 1 < w[a].n; i++)
                pr[np++] = (pair_ref){w[a].s + w[a].cut[i], w[a].cut[i + 2] - w[a].cut[i],
                                      w[a].cut[i + 1] - w[a].cut[i], (int)np};
        qsort(pr, np, sizeof *pr, cmp_pair);
        size_t best = 0;
        int best_c = 1, best_first = 0;
        for (size_t i = 0; i < np;) {
            size_t j = i;
            int first = pr[i].ord;
            while (j < np && !cmp_pair_content(&pr[i], &pr[j])) {
                if (pr[j].ord < first) first = pr[j].ord;
                j++;
            }
            if ((int)(j - i) > best_c || ((int)(j - i) == best_c && best_c > 1 && first < best_first)) {
                best_c = (int)(j - i);
                best = i;
                best_first = first;
            }
            i = j;
        }
        if (best_c < 2 || pr[best].len >= 256) break;
        char piece[256];
        int pl = pr[best].len, split = pr[best].split;
        memcpy(piece, pr[best].s, (size_t)pl);
        if (vb_add(v, piece, (size_t)pl, -(float)m, 1)) { rc = ND_ENOMEM; break; }
        for (int x = 0; x < nw; x++)
            for (int j = 0; j + 1 < w[x].n; j++)
                if (w[x].cut[j + 2] - w[x].cut[j] == pl && w[x].cut[j + 1] - w[x].cut[j] == split &&
                    !memcmp(w[x].s + w[x].cut[j], piece, (size_t)pl)) {
                    memmove(&w[x].cut[j + 1], &w[x].cut[j + 2], (size_t)(w[x].n - j - 1) * sizeof(int));
                    w[x].n--;
                }
    }
    nd_free(pr);
    for (int a = 0; a < nw; a++) {
        nd_free(w[a].s);
        nd_free(w[a].cut);
    }
    nd_free(w);
    return rc;
}

/* ------------------------------------------------------------------ weights */

typedef struct synth_t {
    char name[96];
    uint32_t n_dims, type;
    uint64_t ne[2];
    int kind; /* 0 random matrix, 1 ones (norm), 2 small bias, 3 rope factors */
} synth_t;

typedef struct synth {
    const preset *p;
    uint64_t seed;
    synth_t *t;
    size_t n_t;
    float *rope_factors; /* preset rope_freqs (n = head_dim/2) */
    uint32_t want;       /* requested weight type */
    nd_progress prog;
    uint64_t done_bytes;
} synth;

static uint64_t hash_name(const char *s, uint64_t seed) {
    uint64_t h = 1469598103934665603ull ^ seed;
    while (*s) h = (h ^ (uint8_t)*s++) * 1099511628211ull;
    return h ? h : 1;
}

static int fill_tensor(void *user, uint64_t index, void *dst, uint64_t nbytes, nd_err *err) {
    synth *s = user;
    const synth_t *t = &s->t[index];
    uint64_t rows = t->n_dims > 1 ? t->ne[1] : 1, n = t->ne[0];
    float *row = nd_malloc(n * sizeof *row);
    if (!row) return nd_seterr(err, ND_ENOMEM, "out of memory");
    uint64_t st = hash_name(t->name, s->seed);
    size_t rb = q_row_size(t->type, (int64_t)n);
    const float amp = 0.02f * 1.7320508f; /* uniform [-a, a] with sd 0.02 */
    for (uint64_t r = 0; r < rows; r++) {
        for (uint64_t i = 0; i < n; i++) {
            st ^= st >> 12; st ^= st << 25; st ^= st >> 27;
            float u = (float)((st * 2685821657736338717ull) >> 40) * (2.0f / 16777216.0f) - 1.0f;
            row[i] = t->kind == 1 ? 1.0f : t->kind == 2 ? 0.1f * u : t->kind == 3 ? s->rope_factors[i] : amp * u;
        }
        int rc = q_quantize_row(t->type, row, (uint8_t *)dst + r * rb, (int64_t)n);
        if (rc) {
            nd_free(row);
            return nd_seterr(err, rc, "quantizing %s failed", t->name);
        }
    }
    nd_free(row);
    s->done_bytes += nbytes;
    nd_progress_update(&s->prog, s->done_bytes);
    return 0;
}

static void add_t(void *user, const char *name, uint64_t ne0, uint64_t ne1, preset_kind kind) {
    synth *s = user;
    synth_t *t = &s->t[s->n_t++];
    snprintf(t->name, sizeof t->name, "%s", name);
    t->ne[0] = ne0;
    t->ne[1] = ne1;
    t->n_dims = ne1 ? 2 : 1;
    t->kind = (int)kind;
    t->type = preset_tensor_type(s->want, ne0, ne1);
}

/* Llama-3.1 frequency factors, as the rope_freqs tensor carries them. */
static void llama3_factors(const preset *p, float *out) {
    uint32_t half = p->head_dim / 2;
    double low_wl = p->llama3_orig_ctx / 1.0, high_wl = p->llama3_orig_ctx / 4.0;
    for (uint32_t i = 0; i < half; i++) {
        double freq = pow(p->rope_base, -(2.0 * i) / p->head_dim), wl = 2 * M_PI / freq;
        if (wl < high_wl) out[i] = 1.0f;
        else if (wl > low_wl) out[i] = p->llama3_factor;
        else {
            double smooth = (p->llama3_orig_ctx / wl - 1.0) / (4.0 - 1.0);
            out[i] = (float)(1.0 / ((1 - smooth) / p->llama3_factor + smooth));
        }
    }
}

static void usage(FILE *f) {
    fprintf(f, "usage: nindub synth --preset NAME -o out.gguf [--type TYPE] [--seed N] [--layers N]\n"
               "  random-weight model with the exact shape of a real one (outputs are gibberish)\n"
               "  --type   f32 f16 bf16 q8_0 q4_0 q4_1 q5_0 q5_1 q2_k q3_k q4_k q5_k q6_k (default f16)\n"
               "  --layers override the number of layers (smaller files for tests)\n"
               "presets:");
    preset_print_names(f);
    fputc('\n', f);
}

/* llama.cpp's general.file_type for a file whose tensors are all of one type (the "pure"
 * value: Q3_K -> Q3_K_S, Q4_K -> Q4_K_S ...); the ggml type id is not the same number. */
static uint32_t llama_file_type(uint32_t t) {
    switch (t) {
    case ND_TYPE_F32: return 0;
    case ND_TYPE_F16: return 1;
    case ND_TYPE_Q4_0: return 2;
    case ND_TYPE_Q4_1: return 3;
    case ND_TYPE_Q8_0: return 7;
    case ND_TYPE_Q5_0: return 8;
    case ND_TYPE_Q5_1: return 9;
    case ND_TYPE_Q2_K: return 10;
    case ND_TYPE_Q3_K: return 11;
    case ND_TYPE_Q4_K: return 14;
    case ND_TYPE_Q5_K: return 16;
    case ND_TYPE_Q6_K: return 18;
    case ND_TYPE_BF16: return 32;
    }
    return 0;
}

int tool_synth(int argc, char **argv) {
    const char *pname = NULL, *out = NULL, *tname = "f16";
    uint64_t seed = 1234;
    long layers = -1;
    for (int i = 1; i < argc; i++) {
        const char *a = argv[i];
        bool has = i + 1 < argc;
        if (!strcmp(a, "-h") || !strcmp(a, "--help")) { usage(stdout); return 0; }
        else if (!strcmp(a, "--preset") && has) pname = argv[++i];
        else if (!strcmp(a, "-o") && has) out = argv[++i];
        else if (!strcmp(a, "--type") && has) tname = argv[++i];
        else if (!strcmp(a, "--seed") && has) seed = strtoull(argv[++i], NULL, 10);
        else if (!strcmp(a, "--layers") && has) {
            char *end;
            layers = strtol(argv[++i], &end, 10);
            if (*end || layers < 1 || layers > 1000) {
                fprintf(stderr, "nindub synth: --layers wants 1..1000\n");
                return 2;
            }
        } else {
            fprintf(stderr, "nindub synth: unknown or incomplete option '%s'\n", a);
            usage(stderr);
            return 2;
        }
    }
    const preset *p = preset_find(pname);
    if (!p || !out) {
        if (pname && !p) fprintf(stderr, "nindub synth: unknown preset '%s'\n", pname);
        usage(stderr);
        return 2;
    }
    int type = nd_type_from_name(tname);
    if (type < 0 || !q_is_weight_type((uint32_t)type)) {
        fprintf(stderr, "nindub synth: unknown weight type '%s'\n", tname);
        return 2;
    }
    uint32_t n_layers = layers > 0 ? (uint32_t)layers : p->layers;

    vocab_b v = {0};
    nd_err err = {0};
    int rc = train_vocab(&v, 400);
    uint32_t n_vocab = p->vocab ? p->vocab : (uint32_t)v.n;
    char pad[32];
    for (uint32_t i = (uint32_t)v.n; !rc && i < n_vocab; i++) {
        int k = snprintf(pad, sizeof pad, "[PAD%u]", i);
        rc = vb_add(&v, pad, (size_t)k, -1e9f, 5);
    }
    if (rc || v.n > n_vocab) {
        fprintf(stderr, "nindub synth: %s\n", rc ? "out of memory" : "preset vocabulary too small");
        vb_free(&v);
        return 1;
    }

    gguf_writer *w = gguf_writer_new();
    synth s = {.p = p, .seed = seed};
    s.t = nd_calloc(16 + 16 * (size_t)n_layers, sizeof *s.t);
    float rf[256];
    s.rope_factors = rf;
    if (!w || !s.t) {
        fprintf(stderr, "nindub synth: out of memory\n");
        vb_free(&v);
        gguf_writer_free(w);
        nd_free(s.t);
        return 1;
    }
    char key[128];
#define AK(suffix) (snprintf(key, sizeof key, "%s." suffix, p->arch), key)
    gguf_writer_set_str(w, "general.architecture", p->arch);
    gguf_writer_set_str(w, "general.name", "synthetic (random weights: output is gibberish)");
    gguf_writer_set_u32(w, "general.file_type", llama_file_type((uint32_t)type));
    gguf_writer_set_u32(w, "general.quantization_version", 2);
    gguf_writer_set_u32(w, AK("context_length"), p->ctx);
    gguf_writer_set_u32(w, AK("embedding_length"), p->dim);
    gguf_writer_set_u32(w, AK("block_count"), n_layers);
    gguf_writer_set_u32(w, AK("feed_forward_length"), p->ffn);
    gguf_writer_set_u32(w, AK("attention.head_count"), p->heads);
    gguf_writer_set_u32(w, AK("attention.head_count_kv"), p->kv_heads);
    gguf_writer_set_f32(w, AK("attention.layer_norm_rms_epsilon"), p->eps);
    gguf_writer_set_f32(w, AK("rope.freq_base"), p->rope_base);
    gguf_writer_set_u32(w, AK("rope.dimension_count"), p->rope_dims ? p->rope_dims : p->head_dim);
    if (p->head_dim * p->heads != p->dim) {
        gguf_writer_set_u32(w, AK("attention.key_length"), p->head_dim);
        gguf_writer_set_u32(w, AK("attention.value_length"), p->head_dim);
    }
    gguf_writer_set_u32(w, AK("vocab_size"), n_vocab);
    gguf_writer_set_str(w, "tokenizer.ggml.model", "llama");
    gguf_writer_set_arr_str(w, "tokenizer.ggml.tokens", (const char *const *)v.tok, NULL, v.n);
    gguf_writer_set_arr(w, "tokenizer.ggml.scores", GGUF_VT_FLOAT32, v.score, v.n);
    gguf_writer_set_arr(w, "tokenizer.ggml.token_type", GGUF_VT_INT32, v.type, v.n);
    gguf_writer_set_u32(w, "tokenizer.ggml.unknown_token_id", 0);
    gguf_writer_set_u32(w, "tokenizer.ggml.bos_token_id", 1);
    gguf_writer_set_u32(w, "tokenizer.ggml.eos_token_id", 2);
    gguf_writer_set_bool(w, "tokenizer.ggml.add_bos_token", true);
    gguf_writer_set_bool(w, "tokenizer.ggml.add_eos_token", false);

    uint32_t t = (uint32_t)type;
    int fallbacks = 0;
    if (p->llama3_factor > 0) llama3_factors(p, rf);
    else
        for (int i = 0; i < 256; i++) rf[i] = 1.0f; /* LongRoPE factors of ones: short-context behaviour */
    s.want = t;
    preset_tensors(p, n_layers, n_vocab, add_t, &s);
    for (size_t i = 0; i < s.n_t; i++) fallbacks += s.t[i].type != t && s.t[i].n_dims > 1;
    uint64_t total = 0, params = 0;
    for (size_t i = 0; i < s.n_t && !rc; i++) {
        const synth_t *st = &s.t[i];
        rc = gguf_writer_add_tensor(w, st->name, st->type, st->n_dims, st->ne, NULL, &err);
        if (rc > 0) rc = 0;
        total += q_row_size(st->type, (int64_t)st->ne[0]) * (st->n_dims > 1 ? st->ne[1] : 1);
        params += st->ne[0] * (st->n_dims > 1 ? st->ne[1] : 1);
    }
    nd_progress_begin(&s.prog, "synth", total);
    if (!rc) rc = gguf_writer_write(w, out, fill_tensor, &s, &err);
    nd_progress_end(&s.prog);
    if (rc) fprintf(stderr, "nindub synth: %s\n", err.msg);
    else
        fprintf(stderr,
                "nindub synth: wrote %s: preset %s (%s), %u layers, %.1f M parameters, %s, %.1f MiB%s%s\n"
                "  random weights: the model's output is gibberish; use it for speed and plumbing\n",
                out, p->name, p->arch, n_layers, (double)params / 1e6, nd_type_info(t)->name,
                (double)total / 1048576.0, fallbacks ? "; rows not divisible by the block size fell back "
                                                       "to q8_0/f16 for " : "",
                fallbacks ? "some tensors" : "");
    gguf_writer_free(w);
    nd_free(s.t);
    vb_free(&v);
    return rc ? 1 : 0;
}
