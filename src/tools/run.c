/* nindub run: generate text from a prompt, streamed to stdout as it is produced; speed
 * figures on stderr at the end. */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "model/model.h"
#include "sample/sample.h"
#include "tokenizer/tok.h"
#include "tools/tools.h"

#define RUN_MAX_STOPS 16

typedef struct run_opts {
    const char *model, *prompt;
    int n_predict, n_threads;
    int64_t n_ctx;
    uint32_t kv_type;
    smp_params sp;
    bool seed_set, verbose;
    const char *stops[RUN_MAX_STOPS];
    int n_stops;
} run_opts;

static void usage(FILE *f) {
    fprintf(f,
            "usage: nindub run -m model.gguf -p \"prompt\" [options]\n"
            "  -n N                 tokens to generate (default 128)\n"
            "  -t N                 threads (default: all CPUs)\n"
            "  -c N                 context size (default: the model's, at most 4096)\n"
            "  --temp T             temperature, 0 = greedy (default 0.8)\n"
            "  --top-k K            (default 40, 0 = off)\n"
            "  --top-p P            (default 0.95, 1 = off)\n"
            "  --min-p P            (default 0.05, 0 = off)\n"
            "  --repeat-penalty R   (default 1.0 = off)\n"
            "  --repeat-last-n N    penalty window (default 64)\n"
            "  --frequency-penalty F, --presence-penalty P   (default 0)\n"
            "  --seed S             RNG seed (default: random, printed with -v)\n"
            "  --stop STR           stop when the output contains STR (repeatable)\n"
            "  --kv f16|f32         KV cache type (default f16)\n"
            "  -v                   print model and sampling details to stderr\n");
}

static int parse_num(const char *flag, const char *s, double lo, double hi, double *out) {
    char *end;
    errno = 0;
    double v = strtod(s, &end);
    if (errno || end == s || *end || !(v >= lo && v <= hi)) {
        fprintf(stderr, "nindub run: %s expects a number in [%g, %g], got '%s'\n", flag, lo, hi,
                s);
        return -1;
    }
    *out = v;
    return 0;
}

/* Returns 0 ok, 2 usage error (message printed), 1 for --help (usage printed). */
static int parse_args(int argc, char **argv, run_opts *o) {
    memset(o, 0, sizeof *o);
    o->n_predict = 128;
    o->kv_type = ND_TYPE_F16;
    o->sp = smp_default_params();
    for (int i = 1; i < argc; i++) {
        const char *a = argv[i];
        if (!strcmp(a, "-h") || !strcmp(a, "--help")) {
            usage(stdout);
            return 1;
        }
        if (!strcmp(a, "-v")) {
            o->verbose = true;
            continue;
        }
        if (i + 1 >= argc) {
            fprintf(stderr, "nindub run: %s needs a value (or is unknown)\n\n", a);
            usage(stderr);
            return 2;
        }
        const char *v = argv[++i];
        double x;
#define NUM(lo, hi) if (parse_num(a, v, lo, hi, &x)) return 2
        if (!strcmp(a, "-m")) o->model = v;
        else if (!strcmp(a, "-p")) o->prompt = v;
        else if (!strcmp(a, "-n")) { NUM(0, 1 << 24); o->n_predict = (int)x; }
        else if (!strcmp(a, "-t")) { NUM(1, ND_POOL_MAX_THREADS); o->n_threads = (int)x; }
        else if (!strcmp(a, "-c")) { NUM(1, 1 << 24); o->n_ctx = (int64_t)x; }
        else if (!strcmp(a, "--temp")) { NUM(0, 100); o->sp.temp = (float)x; }
        else if (!strcmp(a, "--top-k")) { NUM(0, 1e9); o->sp.top_k = (int32_t)x; }
        else if (!strcmp(a, "--top-p")) { NUM(1e-6, 1); o->sp.top_p = (float)x; }
        else if (!strcmp(a, "--min-p")) { NUM(0, 1); o->sp.min_p = (float)x; }
        else if (!strcmp(a, "--repeat-penalty")) { NUM(1e-3, 100); o->sp.repeat_penalty = (float)x; }
        else if (!strcmp(a, "--repeat-last-n")) { NUM(0, 1 << 20); o->sp.penalty_last_n = (int32_t)x; }
        else if (!strcmp(a, "--frequency-penalty")) { NUM(-100, 100); o->sp.freq_penalty = (float)x; }
        else if (!strcmp(a, "--presence-penalty")) { NUM(-100, 100); o->sp.presence_penalty = (float)x; }
        else if (!strcmp(a, "--seed")) {
            NUM(0, 18446744073709551615.0);
            o->sp.seed = (uint64_t)x;
            o->seed_set = true;
        } else if (!strcmp(a, "--stop")) {
            if (o->n_stops == RUN_MAX_STOPS || !*v) {
                fprintf(stderr, "nindub run: at most %d non-empty --stop strings\n", RUN_MAX_STOPS);
                return 2;
            }
            o->stops[o->n_stops++] = v;
        } else if (!strcmp(a, "--kv")) {
            if (!strcmp(v, "f16")) o->kv_type = ND_TYPE_F16;
            else if (!strcmp(v, "f32")) o->kv_type = ND_TYPE_F32;
            else {
                fprintf(stderr, "nindub run: --kv expects f16 or f32\n");
                return 2;
            }
        } else {
            fprintf(stderr, "nindub run: unknown option %s\n\n", a);
            usage(stderr);
            return 2;
        }
#undef NUM
    }
    if (!o->model || !o->prompt) {
        fprintf(stderr, "nindub run: -m and -p are required\n\n");
        usage(stderr);
        return 2;
    }
    if (!o->seed_set) o->sp.seed = (uint64_t)time(NULL) ^ ((uint64_t)getpid() << 32);
    return 0;
}

/* ----------------------------------------------------------- stop strings */

/* Text is printed only up to the point where no stop string can still begin: the longest
 * suffix of gen that is a proper prefix of a stop string is held back. Returns the offset
 * where a stop string starts (>= 0) or -1, and sets *safe to the printable length. */
static long find_stop(const run_opts *o, const nd_buf *gen, size_t from, size_t *safe) {
    *safe = gen->len;
    for (int s = 0; s < o->n_stops; s++) {
        const char *st = o->stops[s];
        size_t sl = strlen(st);
        for (size_t i = from; i + sl <= gen->len; i++)
            if (!memcmp(gen->data + i, st, sl)) return (long)i;
        for (size_t k = sl - 1; k > 0; k--) /* held-back partial match at the end */
            if (k <= gen->len && !memcmp(gen->data + gen->len - k, st, k)) {
                if (gen->len - k < *safe) *safe = gen->len - k;
                break;
            }
    }
    return -1;
}

/* -------------------------------------------------------------------- main */

typedef struct run_state {
    gguf_ctx *g;
    model_t *m;
    tok_vocab *vocab;
    model_ctx *ctx;
    smp_chain *smp;
    float *logits;
    int32_t *prompt;
    nd_buf gen;
} run_state;

static void run_free(run_state *s) {
    nd_free(s->prompt);
    nd_free(s->logits);
    nd_buf_free(&s->gen);
    smp_free(s->smp);
    model_ctx_free(s->ctx);
    tok_free(s->vocab);
    if (s->m) model_free(s->m); /* closes g */
    else gguf_close(s->g);
}

static int run_setup(const run_opts *o, run_state *s, size_t *n_prompt, nd_err *err) {
    if (!(s->g = gguf_open(o->model, err))) return -1;
    if (!(s->vocab = tok_load(s->g, err))) return nd_preerr(err, "tokenizer: ");
    if (!(s->m = model_load_gguf(s->g, err))) return -1;
    model_ctx_params cp = model_ctx_default_params();
    cp.n_ctx = o->n_ctx;
    cp.n_threads = o->n_threads;
    cp.kv_type = o->kv_type;
    if (!(s->ctx = model_ctx_new(s->m, &cp, err))) return -1;
    if (!(s->smp = smp_new(&o->sp, s->m->hp.n_vocab, err))) return -1;
    s->logits = nd_malloc((size_t)s->m->hp.n_vocab * sizeof(float));
    if (!s->logits) return nd_seterr(err, ND_ENOMEM, "out of memory for logits");
    int rc = tok_encode(s->vocab, o->prompt, strlen(o->prompt), true, true, &s->prompt,
                        n_prompt, err);
    if (rc) return nd_preerr(err, "tokenizing the prompt: ");
    if (*n_prompt == 0) return nd_seterr(err, ND_EINVAL, "the prompt is empty");
    if ((int64_t)*n_prompt >= model_ctx_n_ctx(s->ctx))
        return nd_seterr(err, ND_ERANGE, "the prompt has %zu tokens, the context only %lld — "
                         "use a larger -c", *n_prompt, (long long)model_ctx_n_ctx(s->ctx));
    return 0;
}

int tool_run(int argc, char **argv) {
    run_opts o;
    int prc = parse_args(argc, argv, &o);
    if (prc) return prc == 1 ? 0 : 2;
    run_state s = {0};
    nd_err err = {0};
    size_t n_prompt = 0;
    double t_load = nd_time_s();
    if (run_setup(&o, &s, &n_prompt, &err)) {
        fprintf(stderr, "nindub run: %s\n", err.msg);
        run_free(&s);
        return 1;
    }
    t_load = nd_time_s() - t_load;
    if (o.verbose)
        fprintf(stderr, "nindub run: %s (%s, %lld layers, vocab %lld), ctx %lld, %d threads, "
                "seed %llu, %zu prompt tokens, load %.2fs\n", o.model, s.m->hp.arch_name,
                (long long)s.m->hp.n_layer, (long long)s.m->hp.n_vocab,
                (long long)model_ctx_n_ctx(s.ctx), model_ctx_n_threads(s.ctx),
                (unsigned long long)o.sp.seed, n_prompt, t_load);

    int rc = 0, n_gen = 0;
    const char *why = "max tokens";
    double t0 = nd_time_s(), t_prompt = 0, t_first = 0;
    if (model_forward(s.ctx, s.prompt, (int)n_prompt, 0, s.logits, MODEL_LOGITS_LAST, &err)) {
        rc = 1;
        goto out;
    }
    t_prompt = nd_time_s() - t0;
    for (size_t i = 0; i < n_prompt; i++) smp_accept(s.smp, s.prompt[i]);
    tok_stream ts;
    tok_stream_init(&ts, s.vocab, 0);
    size_t printed = 0;
    int64_t pos = (int64_t)n_prompt;
    while (n_gen < o.n_predict) {
        int32_t t = smp_sample(s.smp, s.logits);
        if (n_gen == 0) t_first = nd_time_s() - t0;
        if (tok_is_eog(s.vocab, t)) {
            why = "end of generation";
            break;
        }
        n_gen++;
        smp_accept(s.smp, t);
        size_t before = s.gen.len, safe;
        if (tok_stream_push(&ts, t, &s.gen, &err)) {
            rc = 1;
            goto out;
        }
        size_t from = before > 256 ? before - 256 : 0; /* a stop string may straddle tokens */
        long at = find_stop(&o, &s.gen, from, &safe);
        if (at >= 0) {
            if ((size_t)at > printed) fwrite(s.gen.data + printed, 1, (size_t)at - printed, stdout);
            printed = (size_t)at;
            why = "stop string";
            break;
        }
        if (safe > printed) {
            fwrite(s.gen.data + printed, 1, safe - printed, stdout);
            fflush(stdout);
            printed = safe;
        }
        if (n_gen == o.n_predict) break;
        if (pos >= model_ctx_n_ctx(s.ctx)) {
            why = "context full";
            break;
        }
        if (model_forward(s.ctx, &t, 1, pos++, s.logits, MODEL_LOGITS_LAST, &err)) {
            rc = 1;
            goto out;
        }
    }
    if (strcmp(why, "stop string") != 0) {
        tok_stream_flush(&ts, &s.gen, &err);
        if (s.gen.len > printed) fwrite(s.gen.data + printed, 1, s.gen.len - printed, stdout);
    }
    printf("\n");
    fflush(stdout);
out:
    if (rc) fprintf(stderr, "\nnindub run: %s\n", err.msg);
    else {
        double t_total = nd_time_s() - t0, t_gen = t_total - t_prompt;
        /* generation speed counts the decode steps after the first token */
        fprintf(stderr,
                "nindub run: stopped (%s)\n"
                "  prompt      %5zu tokens  %8.2f tokens/s\n"
                "  generation  %5d tokens  %8.2f tokens/s\n"
                "  time to first token %.1f ms, total %.2f s\n",
                why, n_prompt, (double)n_prompt / t_prompt, n_gen,
                n_gen > 1 && t_gen > 0 ? (double)(n_gen - 1) / (t_total - t_first) : 0.0,
                t_first * 1e3, t_total);
    }
    run_free(&s);
    return rc;
}
