/* Generation options, session setup and the streaming decode loop (see gen.h). */
#include <errno.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "tools/gen.h"

void gen_opts_init(gen_opts *o) {
    memset(o, 0, sizeof *o);
    o->n_predict = 128;
    o->kv_type = ND_TYPE_F16;
    o->sp = smp_default_params();
}

void gen_opts_usage(FILE *f) {
    fprintf(f, "  -m FILE              model (GGUF)\n"
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

static int num(const char *tool, const char *flag, const char *s, double lo, double hi, double *out) {
    char *end;
    errno = 0;
    double v = strtod(s, &end);
    if (errno || end == s || *end || !(v >= lo && v <= hi)) {
        fprintf(stderr, "nindub %s: %s expects a number in [%g, %g], got '%s'\n", tool, flag, lo, hi, s);
        return -1;
    }
    *out = v;
    return 0;
}

int gen_opts_parse(gen_opts *o, const char *tool, int argc, char **argv, int *i) {
    const char *a = argv[*i];
    if (!strcmp(a, "-v")) {
        o->verbose = true;
        return 1;
    }
    static const char *const with_value[] = {"-m", "-n", "-t", "-c", "--temp", "--top-k", "--top-p", "--min-p",
                                             "--repeat-penalty", "--repeat-last-n", "--frequency-penalty",
                                             "--presence-penalty", "--seed", "--stop", "--kv"};
    bool ours = false;
    for (size_t k = 0; k < sizeof with_value / sizeof with_value[0]; k++) ours |= !strcmp(a, with_value[k]);
    if (!ours) return 0;
    if (*i + 1 >= argc) {
        fprintf(stderr, "nindub %s: %s needs a value\n", tool, a);
        return -1;
    }
    const char *v = argv[++*i];
    double x;
#define NUM(lo, hi) if (num(tool, a, v, lo, hi, &x)) return -1
    if (!strcmp(a, "-m")) o->model = v;
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
        char *end;
        errno = 0;
        unsigned long long s = strtoull(v, &end, 10);
        if (errno || end == v || *end || *v == '-') {
            fprintf(stderr, "nindub %s: --seed expects a non-negative integer, got '%s'\n", tool, v);
            return -1;
        }
        o->sp.seed = s;
        o->seed_set = true;
    } else if (!strcmp(a, "--stop")) {
        if (o->n_stops == GEN_MAX_STOPS || !*v) {
            fprintf(stderr, "nindub %s: at most %d non-empty --stop strings\n", tool, GEN_MAX_STOPS);
            return -1;
        }
        o->stops[o->n_stops++] = v;
    } else if (!strcmp(a, "--kv")) {
        if (!strcmp(v, "f16")) o->kv_type = ND_TYPE_F16;
        else if (!strcmp(v, "f32")) o->kv_type = ND_TYPE_F32;
        else {
            fprintf(stderr, "nindub %s: --kv expects f16 or f32\n", tool);
            return -1;
        }
    }
#undef NUM
    return 1;
}

void gen_opts_finish(gen_opts *o) {
    if (!o->seed_set) o->sp.seed = (uint64_t)time(NULL) ^ ((uint64_t)getpid() << 32);
}

int gen_open(gen_session *s, const gen_opts *o, nd_err *err) {
    memset(s, 0, sizeof *s);
    if (!(s->g = gguf_open(o->model, err))) return err->code;
    if (!(s->vocab = tok_load(s->g, err))) return nd_preerr(err, "tokenizer: ");
    if (!(s->m = model_load_gguf(s->g, err))) return err->code;
    if (tok_n_vocab(s->vocab) > s->m->hp.n_vocab)
        return nd_seterr(err, ND_EFORMAT, "the tokenizer has %d tokens but the model only %lld rows of logits",
                         tok_n_vocab(s->vocab), (long long)s->m->hp.n_vocab);
    model_ctx_params cp = model_ctx_default_params();
    cp.n_ctx = o->n_ctx;
    cp.n_threads = o->n_threads;
    cp.kv_type = o->kv_type;
    if (!(s->ctx = model_ctx_new(s->m, &cp, err))) return err->code;
    if (!(s->smp = smp_new(&o->sp, s->m->hp.n_vocab, err))) return err->code;
    if (!(s->logits = nd_malloc((size_t)s->m->hp.n_vocab * sizeof(float))))
        return nd_seterr(err, ND_ENOMEM, "out of memory for logits");
    return 0;
}

void gen_close(gen_session *s) {
    nd_free(s->logits);
    smp_free(s->smp);
    model_ctx_free(s->ctx);
    tok_free(s->vocab);
    if (s->m) model_free(s->m); /* closes g */
    else gguf_close(s->g);
    memset(s, 0, sizeof *s);
}

/* Text is printed only up to the point where no stop string can still begin: the longest
 * suffix of gen that is a proper prefix of a stop string is held back. Returns the offset
 * where a stop string starts (>= 0) or -1, and sets *safe to the printable length. */
static long find_stop(const gen_opts *o, const nd_buf *gen, size_t from, size_t *safe) {
    *safe = gen->len;
    for (int s = 0; s < o->n_stops; s++) {
        const char *st = o->stops[s];
        size_t sl = strlen(st);
        for (size_t i = from; i + sl <= gen->len; i++)
            if (!memcmp(gen->data + i, st, sl)) return (long)i;
        for (size_t k = sl - 1; k > 0; k--)
            if (k <= gen->len && !memcmp(gen->data + gen->len - k, st, k)) {
                if (gen->len - k < *safe) *safe = gen->len - k;
                break;
            }
    }
    return -1;
}

static int kv_push(int32_t **kv, size_t *n, int32_t t) {
    if ((*n & (*n - 1)) == 0 || *n == 0) { /* grow at powers of two */
        int32_t *p = nd_realloc(*kv, (*n ? 2 * *n : 64) * sizeof *p);
        if (!p) return ND_ENOMEM;
        *kv = p;
    }
    (*kv)[(*n)++] = t;
    return 0;
}

int gen_generate(gen_session *s, const gen_opts *o, int64_t *pos, volatile sig_atomic_t *interrupt,
                 FILE *out, nd_buf *text, int32_t **kv, size_t *n_kv, gen_result *r, nd_err *err) {
    memset(r, 0, sizeof *r);
    r->why = "max tokens";
    double t0 = nd_time_s();
    size_t base = text->len, printed = text->len;
    tok_stream ts;
    tok_stream_init(&ts, s->vocab, 0);
    int rc = 0;
    while (r->n_gen < o->n_predict) {
        if (interrupt && *interrupt) {
            r->why = "interrupted";
            break;
        }
        int32_t t = smp_sample(s->smp, s->logits);
        if (r->n_gen == 0) r->t_first = nd_time_s() - t0;
        if (tok_is_eog(s->vocab, t)) {
            r->why = "end of generation";
            break;
        }
        r->n_gen++;
        smp_accept(s->smp, t);
        size_t before = text->len, safe;
        if ((rc = tok_stream_push(&ts, t, text, err))) break;
        size_t from = before > base + 256 ? before - 256 : base; /* a stop string may straddle tokens */
        nd_buf view = {text->data + base, text->len - base, 0};
        long at = find_stop(o, &view, from - base, &safe);
        if (at >= 0) {
            size_t end = base + (size_t)at;
            if (end > printed) fwrite(text->data + printed, 1, end - printed, out);
            text->len = end;
            text->data[end] = 0;
            printed = end;
            r->why = "stop string";
            break;
        }
        if (base + safe > printed) {
            fwrite(text->data + printed, 1, base + safe - printed, out);
            fflush(out);
            printed = base + safe;
        }
        if (r->n_gen == o->n_predict) break;
        if (*pos >= model_ctx_n_ctx(s->ctx)) {
            r->why = "context full";
            break;
        }
        if ((rc = model_forward(s->ctx, &t, 1, *pos, s->logits, MODEL_LOGITS_LAST, err))) break;
        (*pos)++;
        if (kv && (rc = kv_push(kv, n_kv, t))) {
            nd_seterr(err, rc, "out of memory");
            break;
        }
    }
    if (!rc && strcmp(r->why, "stop string") != 0) {
        rc = tok_stream_flush(&ts, text, err);
        if (text->len > printed) fwrite(text->data + printed, 1, text->len - printed, out);
    }
    fflush(out);
    r->t_total = nd_time_s() - t0;
    return rc;
}
