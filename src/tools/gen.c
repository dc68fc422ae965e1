/* Generation options, session setup and the streaming decode loop (see gen.h). */
#include <errno.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "sample/stop.h"
#include "serve/json_schema.h"
#include "tools/gen.h"
#include "tools/tools.h"

void gen_opts_init(gen_opts *o) {
    memset(o, 0, sizeof *o);
    o->n_predict = 128;
    o->kv_type = ND_TYPE_F16;
    o->sp = smp_default_params();
    o->spec = spec_default_params(SPEC_NONE);
    o->spec.draft_max = -1; /* -1 / negative: the drafter's default (gen_opts_finish) */
    o->spec.p_min = -1;
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
               "  --weights W          auto|mmap|copy: where the weights live (default auto: a copy in\n"
               "                       huge pages, ~10%% faster decode, when it fits in free memory; else\n"
               "                       the file mapping)\n"
               "  --no-repack          keep copied weights in GGUF's layout (default: Q4_0, Q5_0, Q8_0\n"
               "                       and Q4_K are interleaved for the AVX-512 decode kernels there)\n"
               "  -v                   print model and sampling details to stderr\n"
               "constrained output (every answer parses):\n"
               "  --grammar GBNF       llama.cpp-style grammar text (root rule: root)\n"
               "  --grammar-file FILE  the same, from a file\n"
               "  --json-schema S      JSON Schema text ({...}) or a file holding one\n"
               "  --json               any JSON object\n"
               "speculative decoding (same output under --temp 0, same distribution when sampling):\n"
               "  --draft FILE         draft model with the same vocabulary (e.g. a smaller or more quantized one)\n"
               "  --spec ngram         draft from earlier text (prompt lookup); no second model\n"
               "  --draft-max N        longest draft (default 8; ngram 16; at most 32)\n"
               "  --draft-min N        drop drafts shorter than N (default 0)\n"
               "  --draft-p-min P      stop drafting when the draft model's top probability < P (default 0.3)\n"
               "  --draft-fixed        always draft up to --draft-max (default: adapt the length to the\n"
               "                       measured acceptance rate and costs)\n"
               "  --draft-threads N    threads of the draft model (default: as -t)\n"
               "  --draft-async        greedy: the draft model drafts on its own thread(s) while the target\n"
               "                       verifies (for cores the target does not use: e.g. -t 3 --draft-threads 1)\n"
               "  --ngram-min N, --ngram-max N   suffix lengths the lookup matches (default 2, 4)\n");
}

int gen_opts_parse(gen_opts *o, const char *tool, int argc, char **argv, int *i) {
    const char *a = argv[*i];
    if (!strcmp(a, "-v")) {
        o->verbose = true;
        return 1;
    }
    if (!strcmp(a, "--draft-fixed")) {
        o->spec.adaptive = false;
        o->spec_flags = true;
        return 1;
    }
    if (!strcmp(a, "--no-repack")) {
        o->no_repack = true;
        return 1;
    }
    if (!strcmp(a, "--draft-async")) {
        o->spec.draft_async = true;
        o->spec_flags = true;
        return 1;
    }
    if (!strcmp(a, "--json")) {
        o->json_object = true;
        return 1;
    }
    static const char *const with_value[] = {"-m", "-n", "-t", "-c", "--temp", "--top-k", "--top-p", "--min-p",
                                             "--repeat-penalty", "--repeat-last-n", "--frequency-penalty",
                                             "--presence-penalty", "--seed", "--stop", "--kv", "--weights", "--draft", "--spec",
                                             "--draft-max", "--draft-min", "--draft-p-min", "--draft-threads",
                                             "--ngram-min", "--ngram-max", "--grammar", "--grammar-file",
                                             "--json-schema"};
    bool ours = false;
    for (size_t k = 0; k < sizeof with_value / sizeof with_value[0]; k++) ours |= !strcmp(a, with_value[k]);
    if (!ours) return 0;
    if (*i + 1 >= argc) {
        fprintf(stderr, "nindub %s: %s needs a value\n", tool, a);
        return -1;
    }
    const char *v = argv[++*i];
    double x;
#define NUM(lo, hi) if (tool_num(tool, a, v, lo, hi, &x)) return -1
    if (!strcmp(a, "-m")) o->model = v;
    else if (!strcmp(a, "--weights")) {
        nd_err e;
        if (model_weights_parse(v, &o->weights, &e)) {
            fprintf(stderr, "nindub %s: %s\n", tool, e.msg);
            return -1;
        }
    } else if (!strcmp(a, "--grammar")) o->grammar = v;
    else if (!strcmp(a, "--grammar-file")) o->grammar_file = v;
    else if (!strcmp(a, "--json-schema")) o->json_schema = v;
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
    } else if (!strcmp(a, "--draft") || !strcmp(a, "--spec")) {
        spec_kind k = a[2] == 'd' ? SPEC_DRAFT : SPEC_NGRAM;
        if (k == SPEC_NGRAM && strcmp(v, "ngram")) {
            fprintf(stderr, "nindub %s: --spec expects ngram (a draft model is --draft FILE)\n", tool);
            return -1;
        }
        if (o->spec.kind != SPEC_NONE && o->spec.kind != k) {
            fprintf(stderr, "nindub %s: --draft and --spec ngram exclude each other\n", tool);
            return -1;
        }
        o->spec.kind = k;
        if (k == SPEC_DRAFT) o->draft = v;
    } else if (!strncmp(a, "--draft-", 8) || !strncmp(a, "--ngram-", 8)) {
        o->spec_flags = true;
        if (!strcmp(a, "--draft-max")) { NUM(1, SPEC_MAX_DRAFT); o->spec.draft_max = (int)x; }
        else if (!strcmp(a, "--draft-min")) { NUM(0, SPEC_MAX_DRAFT); o->spec.draft_min = (int)x; }
        else if (!strcmp(a, "--draft-p-min")) { NUM(0, 1); o->spec.p_min = (float)x; }
        else if (!strcmp(a, "--draft-threads")) { NUM(1, ND_POOL_MAX_THREADS); o->spec.draft_threads = (int)x; }
        else if (!strcmp(a, "--ngram-min")) { NUM(1, 16); o->spec.ngram_min = (int)x; }
        else { NUM(1, 16); o->spec.ngram_max = (int)x; }
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
    spec_params d = spec_default_params(o->spec.kind == SPEC_NONE ? SPEC_DRAFT : o->spec.kind);
    if (o->spec.draft_max < 0) o->spec.draft_max = d.draft_max;
    if (o->spec.p_min < 0) o->spec.p_min = d.p_min;
}

/* The speculative part of gen_open: the draft model and the sequence state. */
static int open_spec(gen_session *s, const gen_opts *o, nd_err *err) {
    if (o->spec.kind == SPEC_NONE)
        return o->spec_flags ? nd_seterr(err, ND_EINVAL, "--draft-* / --ngram-* options need --draft FILE or --spec ngram") : 0;
    if (o->spec.draft_min > o->spec.draft_max)
        return nd_seterr(err, ND_EINVAL, "--draft-min %d is larger than --draft-max %d", o->spec.draft_min, o->spec.draft_max);
    if (o->spec.kind == SPEC_DRAFT && !(s->draft = spec_draft_model_load(o->draft, s->vocab, s->m->hp.n_vocab, err)))
        return err->code;
    spec_params p = o->spec;
    p.n_ctx = model_ctx_n_ctx(s->ctx);
    if (!p.draft_threads) p.draft_threads = o->n_threads;
    if (!(s->spec = spec_seq_new(&p, s->draft, &o->sp, s->m->hp.n_vocab, err))) return err->code;
    return 0;
}

/* Builds the output constraint from --grammar / --grammar-file / --json-schema / --json. */
static int open_grammar(gen_session *s, const gen_opts *o, nd_err *err) {
    int given = !!o->grammar + !!o->grammar_file + !!o->json_schema + o->json_object;
    if (!given) return 0;
    if (given > 1)
        return nd_seterr(err, ND_EINVAL, "give one of --grammar, --grammar-file, --json-schema, --json");
    if (s->spec)
        return nd_seterr(err, ND_EUNSUPPORTED, "constrained output with speculative decoding is not supported yet "
                         "— drop --draft / --spec");
    if (tok_n_vocab(s->vocab) != s->m->hp.n_vocab)
        return nd_seterr(err, ND_EUNSUPPORTED, "constrained output needs the tokenizer (%d tokens) to cover the "
                         "model's %lld logits", tok_n_vocab(s->vocab), (long long)s->m->hp.n_vocab);
    nd_buf gbnf = {0};
    char *file = NULL;
    int rc = 0;
    const char *schema = o->json_schema;
    if (o->grammar_file) rc = nd_read_file(o->grammar_file, &file, NULL, err);
    else if (schema && *schema != '{') rc = nd_read_file(schema, &file, NULL, err);
    if (!rc && o->json_object) rc = json_schema_any_object_gbnf(&gbnf, err);
    else if (!rc && schema) {
        const char *text = file ? file : schema;
        rc = json_schema_to_gbnf(text, strlen(text), &gbnf, err);
        if (rc) nd_preerr(err, "--json-schema: ");
    }
    if (!rc) {
        const char *text = gbnf.data ? gbnf.data : file ? file : o->grammar;
        if (!(s->gram = grammar_parse(text, strlen(text), "root", err))) rc = err->code;
        else if (!(s->gst = grammar_state_new(s->gram, err))) rc = err->code;
    }
    nd_buf_free(&gbnf);
    nd_free(file);
    return rc;
}

int gen_open(gen_session *s, const gen_opts *o, nd_err *err) {
    memset(s, 0, sizeof *s);
    if (!(s->g = gguf_open(o->model, err))) return err->code;
    if (!(s->vocab = tok_load(s->g, err))) return nd_preerr(err, "tokenizer: ");
    const model_load_params lp = {.weights = o->weights, .no_repack = o->no_repack};
    if (!(s->m = model_load_gguf_ex(s->g, &lp, err))) return err->code;
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
    int rc = open_spec(s, o, err);
    return rc ? rc : open_grammar(s, o, err);
}

void gen_close(gen_session *s) {
    grammar_state_free(s->gst);
    grammar_free(s->gram);
    spec_seq_free(s->spec);
    spec_draft_model_free(s->draft);
    nd_free(s->logits);
    smp_free(s->smp);
    model_ctx_free(s->ctx);
    tok_free(s->vocab);
    if (s->m) model_free(s->m); /* closes g */
    else gguf_close(s->g);
    memset(s, 0, sizeof *s);
}

int gen_kv_push(int32_t **kv, size_t *n, int32_t t) {
    if ((*n & (*n - 1)) == 0 || *n == 0) { /* grow at powers of two */
        int32_t *p = nd_realloc(*kv, (*n ? 2 * *n : 64) * sizeof *p);
        if (!p) return ND_ENOMEM;
        *kv = p;
    }
    (*kv)[(*n)++] = t;
    return 0;
}

/* The text side of generation: detokenizes, holds back what a stop string may still
 * claim, prints the rest. */
typedef struct emitter {
    const gen_opts *o;
    FILE *out;
    nd_buf *text;
    size_t base, printed;
    tok_stream ts;
} emitter;

/* Appends token t (not EOG) to the output. Returns 1 when a stop string ended it, 0 to
 * go on, or a negative error. */
static int emit(emitter *e, int32_t t, nd_err *err) {
    nd_buf *text = e->text;
    size_t before = text->len, safe;
    int rc = tok_stream_push(&e->ts, t, text, err);
    if (rc) return rc;
    size_t from = before > e->base + 256 ? before - 256 : e->base; /* a stop string may straddle tokens */
    long at = smp_stop_scan(e->o->stops, e->o->n_stops, text->data + e->base, text->len - e->base,
                            from - e->base, &safe);
    if (at >= 0) {
        size_t end = e->base + (size_t)at;
        if (end > e->printed) fwrite(text->data + e->printed, 1, end - e->printed, e->out);
        text->len = end;
        text->data[end] = 0;
        e->printed = end;
        return 1;
    }
    if (e->base + safe > e->printed) {
        fwrite(text->data + e->printed, 1, e->base + safe - e->printed, e->out);
        fflush(e->out);
        e->printed = e->base + safe;
    }
    return 0;
}

/* Takes token t as the next one of the output: EOG, a stop string or n_predict end the
 * generation (returns 1, r->why set), else 0; negative on error. */
static int take(gen_session *s, const gen_opts *o, emitter *e, int32_t t, gen_result *r, nd_err *err) {
    if (tok_is_eog(s->vocab, t)) {
        r->why = "end of generation";
        return 1;
    }
    r->n_gen++;
    if (!s->spec) smp_accept(s->smp, t); /* spec_verify has accepted it already */
    if (s->gst && grammar_state_accept_token(s->gst, s->vocab, t, err)) return err->code;
    int rc = emit(e, t, err);
    if (rc == 1) r->why = "stop string";
    if (rc) return rc;
    if (s->gst && grammar_state_done(s->gst) && !grammar_state_can_continue(s->gst)) {
        r->why = "grammar complete";
        return 1;
    }
    return r->n_gen == o->n_predict;
}

/* Speculative generation after the first token t (already taken, pending at *pos): each
 * step runs the pending token and a draft in one target pass; the tokens it returns are
 * taken one by one, each after the one before it entered the cache. */
static int generate_spec(gen_session *s, const gen_opts *o, int32_t t, int64_t *pos, volatile sig_atomic_t *interrupt,
                         emitter *e, int32_t **kv, size_t *n_kv, gen_result *r, nd_err *err) {
    if (!kv || (int64_t)*n_kv != *pos)
        return nd_seterr(err, ND_EINVAL, "speculative decoding needs the %lld tokens of the cache", (long long)*pos);
    int rc = gen_kv_push(kv, n_kv, t);
    if (!rc) rc = spec_seq_begin(s->spec, *kv, *n_kv, err);
    (*n_kv)--; /* t is pending, not in the cache yet */
    if (rc) return rc == ND_ENOMEM ? nd_seterr(err, rc, "out of memory") : rc;
    int32_t out[SPEC_MAX_DRAFT + 1];
    for (;;) {
        if (interrupt && *interrupt) {
            r->why = "interrupted";
            return 0;
        }
        if (*pos >= model_ctx_n_ctx(s->ctx)) {
            r->why = "context full";
            return 0;
        }
        int n_out;
        if ((rc = spec_step(s->spec, s->ctx, s->smp, o->n_predict - r->n_gen, out, &n_out, err))) return rc;
        for (int j = 0; j < n_out; j++) {
            if ((rc = gen_kv_push(kv, n_kv, t))) return nd_seterr(err, rc, "out of memory");
            (*pos)++;
            t = out[j];
            if ((rc = take(s, o, e, t, r, err))) return rc < 0 ? rc : 0;
        }
    }
}

int gen_generate(gen_session *s, const gen_opts *o, int64_t *pos, volatile sig_atomic_t *interrupt,
                 FILE *out, nd_buf *text, int32_t **kv, size_t *n_kv, gen_result *r, nd_err *err) {
    memset(r, 0, sizeof *r);
    r->why = "max tokens";
    double t0 = nd_time_s();
    emitter e = {.o = o, .out = out, .text = text, .base = text->len, .printed = text->len};
    tok_stream_init(&e.ts, s->vocab, 0);
    int rc = s->gst ? grammar_state_reset(s->gst, err) : 0, end = 0;
    if (rc) return rc;
    while (r->n_gen < o->n_predict) {
        if (interrupt && *interrupt) {
            r->why = "interrupted";
            break;
        }
        int32_t t = s->gst ? smp_sample_constrained(s->smp, s->logits, s->gst, s->vocab, err)
                           : smp_sample(s->smp, s->logits);
        if (t < 0) {
            rc = t;
            nd_preerr(err, "constrained sampling: ");
            break;
        }
        if (r->n_gen == 0) r->t_first = nd_time_s() - t0;
        if (s->spec && !tok_is_eog(s->vocab, t)) smp_accept(s->smp, t); /* as take() does without spec */
        if ((end = take(s, o, &e, t, r, err))) break;
        if (s->spec) {
            rc = generate_spec(s, o, t, pos, interrupt, &e, kv, n_kv, r, err);
            break;
        }
        if (*pos >= model_ctx_n_ctx(s->ctx)) {
            r->why = "context full";
            break;
        }
        if ((rc = model_forward(s->ctx, &t, 1, *pos, s->logits, MODEL_LOGITS_LAST, err))) break;
        (*pos)++;
        if (kv && (rc = gen_kv_push(kv, n_kv, t))) {
            nd_seterr(err, rc, "out of memory");
            break;
        }
    }
    if (end < 0) rc = end;
    if (!rc && strcmp(r->why, "stop string") != 0) {
        rc = tok_stream_flush(&e.ts, text, err);
        if (text->len > e.printed) fwrite(text->data + e.printed, 1, text->len - e.printed, out);
    }
    fflush(out);
    r->t_total = nd_time_s() - t0;
    return rc;
}
