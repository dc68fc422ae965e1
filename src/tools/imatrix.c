/* nindub imatrix: collect an importance matrix for `nindub quantize --imatrix`.
 *
 *   nindub imatrix -m model.gguf -f calib.txt -o imatrix.gguf [-c 512] [--chunks N] [-t N]
 *
 * For every weight matrix W ([K] x N) the model multiplies, it accumulates over all
 * calibration tokens the squared input activations per column: in_sum2[k] = Σ x_k², and
 * the number of rows seen. Quantizers then weight each column's error by in_sum2/count,
 * so the columns that carry the most signal are reproduced best.
 * The text is processed in chunks of -c tokens, each starting with BOS (as perplexity).
 * Output: a GGUF in llama.cpp's imatrix layout: for weight W the F32 tensors
 * "W.in_sum2" [K] and "W.counts" [1]; metadata imatrix.datasets, imatrix.chunk_count,
 * imatrix.chunk_size. The output projection is not collected (its input is only the last
 * position's in normal use; llama.cpp skips it by default too).
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "model/model.h"
#include "tokenizer/tok.h"
#include "tools/tools.h"

typedef struct imat_entry {
    const char *name; /* the model's tensor name (owned by the gguf context) */
    int64_t k;
    double *sum2;     /* [k] */
    float *out;       /* [k] F32 copy for writing */
    float count;
} imat_entry;

typedef struct imat {
    imat_entry *e;
    size_t n, cap;
    int oom;
} imat;

static void observe(void *user, const char *weight, const float *X, int64_t M, int64_t K) {
    imat *im = user;
    if (!weight || im->oom) return;
    imat_entry *e = NULL;
    for (size_t i = 0; i < im->n && !e; i++)
        if (im->e[i].name == weight || !strcmp(im->e[i].name, weight)) e = &im->e[i];
    if (!e) {
        if (im->n == im->cap) {
            size_t cap = im->cap ? im->cap * 2 : 256;
            imat_entry *ne = nd_realloc(im->e, cap * sizeof *ne);
            if (!ne) { im->oom = 1; return; }
            im->e = ne;
            im->cap = cap;
        }
        e = &im->e[im->n];
        *e = (imat_entry){.name = weight, .k = K, .sum2 = nd_calloc((size_t)K, sizeof(double))};
        if (!e->sum2) { im->oom = 1; return; }
        im->n++;
    }
    if (e->k != K) return; /* cannot happen for a validated model */
    for (int64_t r = 0; r < M; r++) {
        const float *x = X + r * K;
        for (int64_t k = 0; k < K; k++) e->sum2[k] += (double)x[k] * x[k];
    }
    e->count += (float)M;
}

static void usage(FILE *f) {
    fprintf(f, "usage: nindub imatrix -m model.gguf -f calib.txt -o imatrix.gguf [-c 512] [--chunks N] [-t N]\n");
}

int tool_imatrix(int argc, char **argv) {
    const char *model_path = NULL, *text_path = NULL, *out_path = NULL;
    long n_ctx = 512, max_chunks = -1;
    int threads = 0;
    for (int i = 1; i < argc; i++) {
        const char *a = argv[i];
        bool has = i + 1 < argc;
        char *end = NULL;
        if (!strcmp(a, "-h") || !strcmp(a, "--help")) { usage(stdout); return 0; }
        else if (!strcmp(a, "-m") && has) model_path = argv[++i];
        else if (!strcmp(a, "-f") && has) text_path = argv[++i];
        else if (!strcmp(a, "-o") && has) out_path = argv[++i];
        else if (!strcmp(a, "-c") && has) {
            n_ctx = strtol(argv[++i], &end, 10);
            if (*end || n_ctx < 8 || n_ctx > 1 << 20) { fprintf(stderr, "nindub imatrix: -c wants 8..1048576\n"); return 2; }
        } else if (!strcmp(a, "--chunks") && has) {
            max_chunks = strtol(argv[++i], &end, 10);
            if (*end || max_chunks < 1) { fprintf(stderr, "nindub imatrix: --chunks wants a positive count\n"); return 2; }
        } else if (!strcmp(a, "-t") && has) {
            threads = (int)strtol(argv[++i], &end, 10);
            if (*end || threads < 1 || threads > ND_POOL_MAX_THREADS) { fprintf(stderr, "nindub imatrix: bad -t\n"); return 2; }
        } else {
            fprintf(stderr, "nindub imatrix: unknown or incomplete option '%s'\n", a);
            usage(stderr);
            return 2;
        }
    }
    if (!model_path || !text_path || !out_path) { usage(stderr); return 2; }

    nd_err err = {0};
    imat im = {0};
    char *text = NULL;
    int32_t *ids = NULL;
    size_t n_ids = 0;
    tok_vocab *vocab = NULL;
    model_ctx *ctx = NULL;
    gguf_writer *w = NULL;
    int rc = 1;
    model_t *m = model_load(model_path, &err);
    if (!m) { fprintf(stderr, "nindub imatrix: %s\n", err.msg); return 1; }
    if (!(vocab = tok_load(m->gguf, &err)) || nd_read_file(text_path, &text, NULL, &err) ||
        tok_encode(vocab, text, strlen(text), false, false, &ids, &n_ids, &err)) {
        fprintf(stderr, "nindub imatrix: %s\n", err.msg);
        goto done;
    }
    long n_chunk = (long)(n_ids / (size_t)(n_ctx - 1)); /* each chunk: BOS + n_ctx-1 text tokens */
    if (max_chunks > 0 && n_chunk > max_chunks) n_chunk = max_chunks;
    if (n_chunk < 1) {
        fprintf(stderr, "nindub imatrix: the text has %zu tokens, fewer than one chunk of %ld — use a longer "
                        "text or a smaller -c\n", n_ids, n_ctx);
        goto done;
    }
    model_ctx_params cp = model_ctx_default_params();
    cp.n_ctx = n_ctx;
    cp.n_threads = threads;
    cp.on_matmul = observe;
    cp.on_matmul_user = &im;
    if (!(ctx = model_ctx_new(m, &cp, &err))) { fprintf(stderr, "nindub imatrix: %s\n", err.msg); goto done; }
    int32_t bos = tok_bos(vocab);
    int32_t *chunk = nd_malloc((size_t)n_ctx * sizeof *chunk);
    if (!chunk) goto done;
    nd_progress prog;
    nd_progress_begin(&prog, "imatrix", (uint64_t)n_chunk);
    double t0 = nd_time_s();
    for (long c = 0; c < n_chunk && !im.oom; c++) {
        int n = 0;
        if (bos >= 0) chunk[n++] = bos;
        for (long j = 0; j < n_ctx - 1; j++) chunk[n++] = ids[c * (n_ctx - 1) + j];
        if (model_forward(ctx, chunk, n, 0, NULL, MODEL_LOGITS_NONE, &err)) {
            fprintf(stderr, "\nnindub imatrix: %s\n", err.msg);
            nd_free(chunk);
            goto done;
        }
        nd_progress_update(&prog, (uint64_t)c + 1);
    }
    nd_progress_end(&prog);
    nd_free(chunk);
    if (im.oom) { fprintf(stderr, "nindub imatrix: out of memory\n"); goto done; }

    w = gguf_writer_new();
    if (!w) goto done;
    gguf_writer_set_str(w, "general.type", "imatrix");
    const char *ds[1] = {text_path};
    gguf_writer_set_arr_str(w, "imatrix.datasets", ds, NULL, 1);
    gguf_writer_set_u32(w, "imatrix.chunk_count", (uint32_t)n_chunk);
    gguf_writer_set_u32(w, "imatrix.chunk_size", (uint32_t)n_ctx);
    char name[512];
    for (size_t i = 0; i < im.n; i++) {
        imat_entry *e = &im.e[i];
        if (!(e->out = nd_malloc((size_t)e->k * sizeof(float)))) goto done;
        for (int64_t k = 0; k < e->k; k++) e->out[k] = (float)e->sum2[k];
        snprintf(name, sizeof name, "%s.in_sum2", e->name);
        uint64_t ne = (uint64_t)e->k, one = 1;
        if (gguf_writer_add_tensor(w, name, ND_TYPE_F32, 1, &ne, e->out, &err) < 0) goto werr;
        snprintf(name, sizeof name, "%s.counts", e->name);
        if (gguf_writer_add_tensor(w, name, ND_TYPE_F32, 1, &one, &e->count, &err) < 0) goto werr;
    }
    if (gguf_writer_write(w, out_path, NULL, NULL, &err)) goto werr;
    fprintf(stderr, "nindub imatrix: %zu weight matrices, %ld chunks of %ld tokens (%.1fs) -> %s\n", im.n, n_chunk,
            n_ctx, nd_time_s() - t0, out_path);
    rc = 0;
    goto done;
werr:
    fprintf(stderr, "nindub imatrix: %s\n", err.msg);
done:
    for (size_t i = 0; i < im.n; i++) {
        nd_free(im.e[i].sum2);
        nd_free(im.e[i].out);
    }
    nd_free(im.e);
    gguf_writer_free(w);
    nd_free(ids);
    nd_free(text);
    tok_free(vocab);
    model_ctx_free(ctx);
    model_free(m);
    return rc;
}
