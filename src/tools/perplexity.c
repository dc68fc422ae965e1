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
#include <errno.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "model/model.h"
#include "tokenizer/tok.h"
#include "tools/eval.h"
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

/* Everything one evaluation holds; freed by ppl_free. */
typedef struct ppl_run {
    model_t *m;
    tok_vocab *vocab;
    model_ctx *ctx;
    char *text;
    int32_t *ids, *chunk;
    size_t n_ids;
    float *logits;
    uint16_t *row16;
    FILE *kf;
    kld_stats ks;
} ppl_run;

static void ppl_free(ppl_run *p) {
    nd_free(p->ks.kld);
    nd_free(p->row16);
    nd_free(p->logits);
    nd_free(p->chunk);
    nd_free(p->ids);
    nd_free(p->text);
    tok_free(p->vocab);
    model_ctx_free(p->ctx);
    model_free(p->m);
}

/* Reads or writes the KLD file's header and token table; checks both runs saw the same
 * tokens. hdr = {n_vocab, n_ctx, n_chunk, first}; *n_chunk may shrink to the file's. */
static int kld_header(ppl_run *p, const ppl_opts *o, uint32_t hdr[4], long *n_chunk, int32_t bos, nd_err *err) {
    if (o->kld_base) {
        if (!(p->kf = fopen(o->kld_base, "wb")))
            return nd_seterr(err, ND_EIO, "cannot write %s: %s", o->kld_base, strerror(errno));
        fwrite(KLD_MAGIC, 1, 8, p->kf);
        fwrite(hdr, sizeof(uint32_t), 4, p->kf);
    } else {
        uint32_t h2[4];
        char magic[8];
        if (!(p->kf = fopen(o->kld, "rb")) || !rd(p->kf, magic, 8) || memcmp(magic, KLD_MAGIC, 8) ||
            !rd(p->kf, h2, sizeof h2))
            return nd_seterr(err, ND_EFORMAT, "%s is not a nindub KLD file (make one with --kld-base)", o->kld);
        if (h2[0] != hdr[0] || h2[1] != hdr[1] || h2[3] != hdr[3] || h2[2] < 1)
            return nd_seterr(err, ND_EINVAL,
                             "%s was made with n_vocab %u, -c %u; this run has n_vocab %u, -c %u — use the same "
                             "vocabulary, text and -c", o->kld, h2[0], h2[1], hdr[0], hdr[1]);
        if ((long)h2[2] < *n_chunk) *n_chunk = (long)h2[2];
        hdr[2] = h2[2];
    }
    for (long c = 0; c < (long)hdr[2]; c++)
        for (long j = 0; j < (long)hdr[1]; j++) {
            if (o->kld_base && c >= *n_chunk) break;
            int32_t t = j == 0 ? bos : p->ids[c * (long)hdr[1] + j];
            if (o->kld_base) {
                fwrite(&t, 4, 1, p->kf);
            } else {
                int32_t u;
                if (!rd(p->kf, &u, 4))
                    return nd_seterr(err, ND_EFORMAT, "%s is truncated", o->kld);
                if (c < *n_chunk && u != t)
                    return nd_seterr(err, ND_EINVAL, "%s was computed on other tokens (chunk %ld, position %ld) — "
                                     "same text and tokenizer needed", o->kld, c, j);
            }
        }
    return 0;
}

/* Scores one position: NLL of the next token, and the KLD row (write or compare). */
static int score_row(ppl_run *p, const ppl_opts *o, const float *lg, int64_t n_vocab, int32_t next, double *nll,
                     double *nll2, nd_err *err) {
    float mx;
    double lse;
    log_softmax_parts(lg, n_vocab, &mx, &lse);
    double lp = (double)(lg[next] - mx) - lse;
    *nll -= lp;
    *nll2 += lp * lp;
    if (o->kld_base) {
        float parts[2] = {(float)lse, mx};
        fwrite(parts, sizeof parts, 1, p->kf);
        for (int64_t v = 0; v < n_vocab; v++) p->row16[v] = nd_fp32_to_fp16(lg[v] - mx);
        fwrite(p->row16, 2, (size_t)n_vocab, p->kf);
    } else if (o->kld) {
        float parts[2];
        if (!rd(p->kf, parts, sizeof parts) || !rd(p->kf, p->row16, 2 * (size_t)n_vocab))
            return nd_seterr(err, ND_EFORMAT, "%s is truncated", o->kld);
        /* KL(base || this) = Σ p_base (log p_base - log p_this) */
        double kl = 0, base_lp_next = 0;
        int64_t base_top = 0;
        float best = -INFINITY;
        for (int64_t v = 0; v < n_vocab; v++) {
            float bl = nd_fp16_to_fp32(p->row16[v]);
            double blp = (double)bl - parts[0], tlp = (double)(lg[v] - mx) - lse;
            kl += exp(blp) * (blp - tlp);
            if (bl > best) { best = bl; base_top = v; }
            if (v == next) base_lp_next = blp;
        }
        kld_stats *ks = &p->ks;
        ks->kld[ks->n++] = kl < 0 ? 0 : kl;
        ks->nll_base -= base_lp_next;
        double dp = exp(lp) - exp(base_lp_next);
        ks->sum_dp2 += dp * dp;
        ks->same_top1 += argmax(lg, n_vocab) == base_top;
    }
    return 0;
}

int ppl_eval(const ppl_opts *o, ppl_result *r, nd_err *err) {
    memset(r, 0, sizeof *r);
    if (o->kld_base && o->kld) return nd_seterr(err, ND_EINVAL, "--kld-base and --kld exclude each other");
    ppl_run p = {0};
    size_t text_len = 0;
    int rc = ND_EINVAL;
    if (!(p.m = model_load(o->model, err))) return err->code;
    if (!(p.vocab = tok_load(p.m->gguf, err)) || nd_read_file(o->text, &p.text, &text_len, err) ||
        tok_encode(p.vocab, p.text, text_len, false, false, &p.ids, &p.n_ids, err)) {
        rc = err->code;
        goto done;
    }
    int32_t bos = tok_bos(p.vocab);
    if (bos < 0) {
        rc = nd_seterr(err, ND_EUNSUPPORTED, "the model has no BOS token");
        goto done;
    }
    /* BOS prepended to the whole text, as llama-perplexity does */
    int32_t *with_bos = nd_malloc((p.n_ids + 1) * sizeof *with_bos);
    if (!with_bos) { rc = nd_seterr(err, ND_ENOMEM, "out of memory"); goto done; }
    with_bos[0] = bos;
    if (p.n_ids) memcpy(with_bos + 1, p.ids, p.n_ids * sizeof *p.ids);
    nd_free(p.ids);
    p.ids = with_bos;
    p.n_ids++;

    long n_ctx = o->n_ctx, n_chunk = (long)(p.n_ids / (size_t)n_ctx);
    if (o->max_chunks > 0 && o->max_chunks < n_chunk) n_chunk = o->max_chunks;
    if (n_chunk < 1) {
        rc = nd_seterr(err, ND_EINVAL, "the text has %zu tokens, fewer than one chunk of %ld — use a longer text or "
                       "a smaller -c", p.n_ids, n_ctx);
        goto done;
    }
    model_ctx_params cp = model_ctx_default_params();
    cp.n_ctx = n_ctx;
    cp.n_threads = o->threads;
    if (!(p.ctx = model_ctx_new(p.m, &cp, err))) { rc = err->code; goto done; }
    int64_t n_vocab = p.m->hp.n_vocab;
    long first = n_ctx / 2, per_chunk = n_ctx - 1 - first;
    if (!(p.logits = nd_malloc((size_t)n_ctx * (size_t)n_vocab * sizeof *p.logits)) ||
        !(p.row16 = nd_malloc((size_t)n_vocab * sizeof *p.row16)) ||
        !(p.chunk = nd_malloc((size_t)n_ctx * sizeof *p.chunk))) {
        rc = nd_seterr(err, ND_ENOMEM, "out of memory for %ld × %lld logits", n_ctx, (long long)n_vocab);
        goto done;
    }
    uint32_t hdr[4] = {(uint32_t)n_vocab, (uint32_t)n_ctx, (uint32_t)n_chunk, (uint32_t)first};
    if ((o->kld_base || o->kld) && (rc = kld_header(&p, o, hdr, &n_chunk, bos, err))) goto done;
    if (o->kld && !(p.ks.kld = nd_malloc((size_t)n_chunk * (size_t)per_chunk * sizeof *p.ks.kld))) {
        rc = nd_seterr(err, ND_ENOMEM, "out of memory");
        goto done;
    }

    double nll = 0, nll2 = 0, t0 = nd_time_s();
    nd_progress prog;
    nd_progress_begin(&prog, "perplexity", (uint64_t)n_chunk);
    if (!o->progress) prog.tty = false;
    for (long c = 0; c < n_chunk; c++) {
        memcpy(p.chunk, p.ids + c * n_ctx, (size_t)n_ctx * sizeof *p.chunk);
        p.chunk[0] = bos;
        if ((rc = model_forward(p.ctx, p.chunk, (int)n_ctx, 0, p.logits, MODEL_LOGITS_ALL, err))) goto done;
        for (long j = first; j < n_ctx - 1; j++)
            if ((rc = score_row(&p, o, p.logits + (size_t)j * (size_t)n_vocab, n_vocab, p.chunk[j + 1], &nll, &nll2,
                                err)))
                goto done;
        r->n_scored += (size_t)per_chunk;
        if (o->print_running && !prog.tty) {
            printf("[%ld]%.4f%s", c + 1, exp(nll / (double)r->n_scored), c + 1 < n_chunk ? "," : "\n");
            fflush(stdout);
        }
        nd_progress_update(&prog, (uint64_t)c + 1);
    }
    nd_progress_end(&prog);
    double mean = nll / (double)r->n_scored, var = nll2 / (double)r->n_scored - mean * mean;
    r->ppl = exp(mean);
    r->ppl_se = var > 0 ? sqrt(var / (double)r->n_scored) * r->ppl : 0;
    r->n_chunk = n_chunk;
    r->secs = nd_time_s() - t0;
    if (o->kld && p.ks.n) {
        kld_stats *ks = &p.ks;
        qsort(ks->kld, ks->n, sizeof *ks->kld, cmp_double);
        double s = 0;
        for (size_t i = 0; i < ks->n; i++) s += ks->kld[i];
        r->has_kld = true;
        r->kld_mean = s / (double)ks->n;
        r->kld_median = ks->kld[ks->n / 2];
        r->kld_p99 = ks->kld[(size_t)((double)(ks->n - 1) * 0.99)];
        r->kld_max = ks->kld[ks->n - 1];
        r->ppl_base = exp(ks->nll_base / (double)ks->n);
        r->same_top1 = (double)ks->same_top1 / (double)ks->n;
        r->rms_dp = sqrt(ks->sum_dp2 / (double)ks->n);
    }
    rc = 0;
done:
    if (p.kf && fclose(p.kf) != 0 && o->kld_base && !rc) rc = nd_seterr(err, ND_EIO, "writing %s failed", o->kld_base);
    if (rc && o->kld_base) remove(o->kld_base); /* no partial reference files */
    ppl_free(&p);
    return rc;
}

int tool_perplexity(int argc, char **argv) {
    ppl_opts o = {.n_ctx = 512, .max_chunks = -1, .print_running = true, .progress = true};
    for (int i = 1; i < argc; i++) {
        const char *a = argv[i];
        bool has = i + 1 < argc;
        char *end = NULL;
        if (!strcmp(a, "-h") || !strcmp(a, "--help")) { usage(stdout); return 0; }
        else if (!strcmp(a, "-m") && has) o.model = argv[++i];
        else if (!strcmp(a, "-f") && has) o.text = argv[++i];
        else if (!strcmp(a, "--kld-base") && has) o.kld_base = argv[++i];
        else if (!strcmp(a, "--kld") && has) o.kld = argv[++i];
        else if (!strcmp(a, "-c") && has) {
            o.n_ctx = strtol(argv[++i], &end, 10);
            if (*end || o.n_ctx < 8 || o.n_ctx > 1 << 20) { fprintf(stderr, "nindub perplexity: -c wants 8..1048576\n"); return 2; }
        } else if (!strcmp(a, "--chunks") && has) {
            o.max_chunks = strtol(argv[++i], &end, 10);
            if (*end || o.max_chunks < 1) { fprintf(stderr, "nindub perplexity: --chunks wants a positive count\n"); return 2; }
        } else if (!strcmp(a, "-t") && has) {
            o.threads = (int)strtol(argv[++i], &end, 10);
            if (*end || o.threads < 1 || o.threads > ND_POOL_MAX_THREADS) { fprintf(stderr, "nindub perplexity: bad -t\n"); return 2; }
        } else {
            fprintf(stderr, "nindub perplexity: unknown or incomplete option '%s'\n", a);
            usage(stderr);
            return 2;
        }
    }
    if (!o.model || !o.text || (o.kld_base && o.kld)) {
        if (o.kld_base && o.kld) fprintf(stderr, "nindub perplexity: --kld-base and --kld exclude each other\n");
        usage(stderr);
        return 2;
    }
    nd_err err = {0};
    ppl_result r;
    if (ppl_eval(&o, &r, &err)) {
        fprintf(stderr, "nindub perplexity: %s\n", err.msg);
        return 1;
    }
    printf("perplexity: %.4f +/- %.4f over %zu tokens (%ld chunks of %ld, %.2fs, %.1f tokens/s)\n", r.ppl, r.ppl_se,
           r.n_scored, r.n_chunk, o.n_ctx, r.secs, (double)(r.n_chunk * o.n_ctx) / r.secs);
    if (o.kld_base) printf("saved reference log-probabilities to %s\n", o.kld_base);
    if (r.has_kld) {
        printf("KL-divergence vs %s over %zu tokens:\n", o.kld, r.n_scored);
        printf("  mean KLD    %.6f\n  median KLD  %.6f\n  p99 KLD     %.6f\n  max KLD     %.6f\n", r.kld_mean,
               r.kld_median, r.kld_p99, r.kld_max);
        printf("  PPL base    %.4f\n  PPL this    %.4f\n  ΔPPL        %+.4f (%+.3f%%)\n", r.ppl_base, r.ppl,
               r.ppl - r.ppl_base, 100 * (r.ppl / r.ppl_base - 1));
        printf("  same top-1  %.2f%%\n  RMS Δp      %.4f%%\n", 100.0 * r.same_top1, 100 * r.rms_dp);
    }
    return 0;
}
