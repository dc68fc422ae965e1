/* nindub perplexity: llama.cpp-compatible perplexity, and KL-divergence against a saved
 * reference run.
 *
 * Protocol (the one llama-perplexity uses, so the numbers compare): tokenize the whole
 * file with BOS prepended; n_chunk = floor(n_tokens / n_ctx); chunk i is
 * tokens[i*n_ctx, (i+1)*n_ctx) with its first token replaced by BOS, evaluated at
 * positions 0..n_ctx-1 on an empty cache; positions first = n_ctx/2 .. n_ctx-2 are
 * scored, each predicting the next token of the chunk; PPL = exp(mean NLL).
 *
 * KLD file (--kld-base writes it, --kld reads it), little-endian:
 *   char magic[8] "NDKLD1\0\0" | u32 n_vocab | u32 n_ctx | u32 n_chunk | u32 first
 *   n_chunk*n_ctx × i32 token ids (the chunked text, BOS substitution applied)
 *   per scored token (n_chunk*(n_ctx-1-first) of them, in order):
 *     f32 log_sum (log Σ exp(logit - max)) | f32 max_logit | n_vocab × u16 fp16 logits - max
 *   The base log-probabilities are rebuilt as (logit - max) - log_sum.
 */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "model/model.h"
#include "tokenizer/tok.h"
#include "tools/tools.h"

#define KLD_MAGIC "NDKLD1\0\0"

typedef struct kld_stats {
    double *kld;        /* per scored token */
    size_t n;
    double nll_base, sum_dp2;
    size_t same_top1;
} kld_stats;

static void usage(FILE *f) {
    fprintf(f, "usage: nindub perplexity -m model.gguf -f text.txt [-c 512] [-t N] [--chunks N]\n"
               "                         [--kld-base out.kld | --kld base.kld]\n"
               "  -c N          context per chunk (default 512)\n"
               "  --chunks N    stop after N chunks\n"
               "  --kld-base F  save this model's log-probabilities as the reference\n"
               "  --kld F       compare with a saved reference: KL-divergence statistics\n");
}

/* log Σ exp(x - max) and max over n values. */
static void log_softmax_parts(const float *x, int64_t n, float *max_out, double *lse_out) {
    float mx = x[0];
    for (int64_t i = 1; i < n; i++) mx = x[i] > mx ? x[i] : mx;
    double s = 0;
    for (int64_t i = 0; i < n; i++) s += exp((double)(x[i] - mx));
    *max_out = mx;
    *lse_out = log(s);
}

static int argmax(const float *x, int64_t n) {
    int64_t b = 0;
    for (int64_t i = 1; i < n; i++)
        if (x[i] > x[b]) b = i;
    return (int)b;
}

static int cmp_double(const void *a, const void *b) {
    double x = *(const double *)a, y = *(const double *)b;
    return x < y ? -1 : x > y;
}

static bool rd(FILE *f, void *p, size_t n) { return fread(p, 1, n, f) == n; }

int tool_perplexity(int argc, char **argv) {
    const char *model_path = NULL, *text_path = NULL, *kld_base = NULL, *kld_in = NULL;
    long n_ctx = 512, max_chunks = -1;
    int threads = 0;
    for (int i = 1; i < argc; i++) {
        const char *a = argv[i];
        bool has = i + 1 < argc;
        char *end = NULL;
        if (!strcmp(a, "-h") || !strcmp(a, "--help")) { usage(stdout); return 0; }
        else if (!strcmp(a, "-m") && has) model_path = argv[++i];
        else if (!strcmp(a, "-f") && has) text_path = argv[++i];
        else if (!strcmp(a, "--kld-base") && has) kld_base = argv[++i];
        else if (!strcmp(a, "--kld") && has) kld_in = argv[++i];
        else if (!strcmp(a, "-c") && has) {
            n_ctx = strtol(argv[++i], &end, 10);
            if (*end || n_ctx < 8 || n_ctx > 1 << 20) { fprintf(stderr, "nindub perplexity: -c wants 8..1048576\n"); return 2; }
        } else if (!strcmp(a, "--chunks") && has) {
            max_chunks = strtol(argv[++i], &end, 10);
            if (*end || max_chunks < 1) { fprintf(stderr, "nindub perplexity: --chunks wants a positive count\n"); return 2; }
        } else if (!strcmp(a, "-t") && has) {
            threads = (int)strtol(argv[++i], &end, 10);
            if (*end || threads < 1 || threads > ND_POOL_MAX_THREADS) { fprintf(stderr, "nindub perplexity: bad -t\n"); return 2; }
        } else {
            fprintf(stderr, "nindub perplexity: unknown or incomplete option '%s'\n", a);
            usage(stderr);
            return 2;
        }
    }
    if (!model_path || !text_path || (kld_base && kld_in)) {
        if (kld_base && kld_in) fprintf(stderr, "nindub perplexity: --kld-base and --kld exclude each other\n");
        usage(stderr);
        return 2;
    }

    nd_err err = {0};
    int rc = 1;
    char *text = NULL;
    size_t text_len = 0;
    int32_t *ids = NULL;
    size_t n_ids = 0;
    float *logits = NULL;
    uint16_t *row16 = NULL;
    FILE *kf = NULL;
    kld_stats ks = {0};
    model_ctx *ctx = NULL;
    tok_vocab *vocab = NULL;
    model_t *m = model_load(model_path, &err);
    if (!m) { fprintf(stderr, "nindub perplexity: %s\n", err.msg); return 1; }
    if (!(vocab = tok_load(m->gguf, &err)) || nd_read_file(text_path, &text, &text_len, &err) ||
        tok_encode(vocab, text, text_len, false, false, &ids, &n_ids, &err)) {
        fprintf(stderr, "nindub perplexity: %s\n", err.msg);
        goto done;
    }
    int32_t bos = tok_bos(vocab);
    if (bos < 0) { fprintf(stderr, "nindub perplexity: the model has no BOS token\n"); goto done; }
    /* BOS prepended to the whole text, as llama-perplexity does */
    int32_t *with_bos = nd_malloc((n_ids + 1) * sizeof *with_bos);
    if (!with_bos) { fprintf(stderr, "nindub perplexity: out of memory\n"); goto done; }
    with_bos[0] = bos;
    if (n_ids) memcpy(with_bos + 1, ids, n_ids * sizeof *ids);
    nd_free(ids);
    ids = with_bos;
    n_ids++;

    model_ctx_params cp = model_ctx_default_params();
    cp.n_ctx = n_ctx;
    cp.n_threads = threads;
    if (!(ctx = model_ctx_new(m, &cp, &err))) { fprintf(stderr, "nindub perplexity: %s\n", err.msg); goto done; }
    int64_t n_vocab = m->hp.n_vocab;
    long n_chunk = (long)(n_ids / (size_t)n_ctx);
    if (max_chunks > 0 && max_chunks < n_chunk) n_chunk = max_chunks;
    if (n_chunk < 1) {
        fprintf(stderr, "nindub perplexity: the text has %zu tokens, fewer than one chunk of %ld — use a "
                        "longer text or a smaller -c\n", n_ids, n_ctx);
        goto done;
    }
    long first = n_ctx / 2, per_chunk = n_ctx - 1 - first;
    if (!(logits = nd_malloc((size_t)n_ctx * (size_t)n_vocab * sizeof *logits)) ||
        !(row16 = nd_malloc((size_t)n_vocab * sizeof *row16))) {
        fprintf(stderr, "nindub perplexity: out of memory for %ld × %lld logits\n", n_ctx, (long long)n_vocab);
        goto done;
    }
    uint32_t hdr[4] = {(uint32_t)n_vocab, (uint32_t)n_ctx, (uint32_t)n_chunk, (uint32_t)first};
    if (kld_base) {
        if (!(kf = fopen(kld_base, "wb"))) { fprintf(stderr, "nindub perplexity: cannot write %s\n", kld_base); goto done; }
        fwrite(KLD_MAGIC, 1, 8, kf);
        fwrite(hdr, sizeof hdr, 1, kf);
    } else if (kld_in) {
        uint32_t h2[4];
        char magic[8];
        if (!(kf = fopen(kld_in, "rb")) || !rd(kf, magic, 8) || memcmp(magic, KLD_MAGIC, 8) || !rd(kf, h2, sizeof h2)) {
            fprintf(stderr, "nindub perplexity: %s is not a nindub KLD file (make one with --kld-base)\n", kld_in);
            goto done;
        }
        if (h2[0] != hdr[0] || h2[1] != hdr[1] || h2[3] != hdr[3] || h2[2] < hdr[2]) {
            fprintf(stderr, "nindub perplexity: %s was made with n_vocab %u, -c %u, %u chunks; this run has "
                            "n_vocab %u, -c %u, %u chunks — use the same text, -c and vocabulary\n",
                    kld_in, h2[0], h2[1], h2[2], hdr[0], hdr[1], hdr[2]);
            goto done;
        }
        hdr[2] = h2[2]; /* the file's chunk count: tokens are stored for all of them */
        n_chunk = (long)h2[2] < n_chunk ? (long)h2[2] : n_chunk;
        if (!(ks.kld = nd_malloc((size_t)n_chunk * (size_t)per_chunk * sizeof *ks.kld))) goto done;
    }
    /* token table of the KLD file: check (or write) that both runs saw the same text */
    for (long c = 0; c < (long)hdr[2] && kf; c++) {
        for (long j = 0; j < n_ctx; j++) {
            int32_t t = j == 0 ? bos : ids[c * n_ctx + j];
            if (c >= n_chunk && kld_base) break;
            if (kld_base) fwrite(&t, 4, 1, kf);
            else {
                int32_t u;
                if (!rd(kf, &u, 4) || (c < n_chunk && u != t)) {
                    fprintf(stderr, "nindub perplexity: %s was computed on other tokens (chunk %ld, position %ld) — "
                                    "same text and tokenizer needed\n", kld_in, c, j);
                    goto done;
                }
            }
        }
    }
    if (kld_in && hdr[2] > (uint32_t)n_chunk) { /* skip nothing: scored rows follow in chunk order */ }

    double nll = 0, nll2 = 0;
    size_t count = 0;
    nd_progress prog;
    nd_progress_begin(&prog, "perplexity", (uint64_t)n_chunk);
    double t0 = nd_time_s();
    int32_t *chunk = nd_malloc((size_t)n_ctx * sizeof *chunk);
    if (!chunk) goto done;
    for (long c = 0; c < n_chunk; c++) {
        memcpy(chunk, ids + c * n_ctx, (size_t)n_ctx * sizeof *chunk);
        chunk[0] = bos;
        if (model_forward(ctx, chunk, (int)n_ctx, 0, logits, MODEL_LOGITS_ALL, &err)) {
            fprintf(stderr, "\nnindub perplexity: %s\n", err.msg);
            nd_free(chunk);
            goto done;
        }
        for (long j = first; j < n_ctx - 1; j++) {
            const float *lg = logits + (size_t)j * (size_t)n_vocab;
            float mx;
            double lse;
            log_softmax_parts(lg, n_vocab, &mx, &lse);
            int32_t next = chunk[j + 1];
            double lp = (double)(lg[next] - mx) - lse;
            nll -= lp;
            nll2 += lp * lp;
            count++;
            if (kld_base) {
                float parts[2] = {(float)lse, mx};
                fwrite(parts, sizeof parts, 1, kf);
                for (int64_t v = 0; v < n_vocab; v++) row16[v] = nd_fp32_to_fp16(lg[v] - mx);
                fwrite(row16, 2, (size_t)n_vocab, kf);
            } else if (kld_in) {
                float parts[2];
                if (!rd(kf, parts, sizeof parts) || !rd(kf, row16, 2 * (size_t)n_vocab)) {
                    fprintf(stderr, "\nnindub perplexity: %s is truncated\n", kld_in);
                    nd_free(chunk);
                    goto done;
                }
                /* KL(base || this) = Σ p_base (log p_base - log p_this) */
                double kl = 0, base_lp_next = 0;
                int64_t base_top = 0;
                float best = -INFINITY;
                for (int64_t v = 0; v < n_vocab; v++) {
                    double blp = (double)nd_fp16_to_fp32(row16[v]) - parts[0];
                    double tlp = (double)(lg[v] - mx) - lse;
                    kl += exp(blp) * (blp - tlp);
                    if (nd_fp16_to_fp32(row16[v]) > best) { best = nd_fp16_to_fp32(row16[v]); base_top = v; }
                    if (v == next) base_lp_next = blp;
                }
                ks.kld[ks.n++] = kl < 0 ? 0 : kl;
                ks.nll_base -= base_lp_next;
                double dp = exp(lp) - exp(base_lp_next);
                ks.sum_dp2 += dp * dp;
                ks.same_top1 += argmax(lg, n_vocab) == base_top;
            }
        }
        if (!prog.tty) printf("[%ld]%.4f%s", c + 1, exp(nll / (double)count), c + 1 < n_chunk ? "," : "\n");
        fflush(stdout);
        nd_progress_update(&prog, (uint64_t)c + 1);
    }
    nd_free(chunk);
    nd_progress_end(&prog);
    double mean = nll / (double)count, ppl = exp(mean);
    double var = nll2 / (double)count - mean * mean, se = var > 0 ? sqrt(var / (double)count) * ppl : 0;
    printf("perplexity: %.4f +/- %.4f over %zu tokens (%ld chunks of %ld, %.2fs, %.1f tokens/s)\n", ppl, se, count,
           n_chunk, n_ctx, nd_time_s() - t0, (double)(n_chunk * n_ctx) / (nd_time_s() - t0));
    if (kld_base) printf("saved reference log-probabilities to %s\n", kld_base);
    if (kld_in && ks.n) {
        qsort(ks.kld, ks.n, sizeof *ks.kld, cmp_double);
        double s = 0;
        for (size_t i = 0; i < ks.n; i++) s += ks.kld[i];
        double ppl_base = exp(ks.nll_base / (double)ks.n);
        printf("KL-divergence vs %s over %zu tokens:\n", kld_in, ks.n);
        printf("  mean KLD    %.6f\n  median KLD  %.6f\n  p99 KLD     %.6f\n  max KLD     %.6f\n", s / (double)ks.n,
               ks.kld[ks.n / 2], ks.kld[(size_t)((double)(ks.n - 1) * 0.99)], ks.kld[ks.n - 1]);
        printf("  PPL base    %.4f\n  PPL this    %.4f\n  ΔPPL        %+.4f (%+.3f%%)\n", ppl_base, ppl, ppl - ppl_base,
               100 * (ppl / ppl_base - 1));
        printf("  same top-1  %.2f%%\n  RMS Δp      %.4f%%\n", 100.0 * (double)ks.same_top1 / (double)ks.n,
               100 * sqrt(ks.sum_dp2 / (double)ks.n));
    }
    rc = 0;
done:
    if (kf && fclose(kf) != 0 && kld_base && !rc) {
        fprintf(stderr, "nindub perplexity: writing %s failed\n", kld_base);
        rc = 1;
    }
    nd_free(ks.kld);
    nd_free(row16);
    nd_free(logits);
    nd_free(ids);
    nd_free(text);
    tok_free(vocab);
    model_ctx_free(ctx);
    model_free(m);
    return rc;
}
