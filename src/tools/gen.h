/* What `run` and `chat` share: generation options and their flags, a loaded session
 * (model, vocabulary, context, sampler), stop strings, and the decode loop that streams
 * text as it is produced. */
#ifndef ND_TOOLS_GEN_H
#define ND_TOOLS_GEN_H

#include <signal.h>
#include <stdio.h>

#include "model/model.h"
#include "sample/grammar.h"
#include "sample/sample.h"
#include "spec/spec.h"
#include "tokenizer/tok.h"

#define GEN_MAX_STOPS 16

typedef struct gen_opts {
    const char *model;
    int n_predict, n_threads;
    int64_t n_ctx;
    uint32_t kv_type;
    model_weights weights; /* --weights auto|mmap|copy */
    bool no_repack;        /* --no-repack */
    smp_params sp;
    bool seed_set, verbose;
    const char *stops[GEN_MAX_STOPS];
    int n_stops;
    /* speculative decoding: spec.kind SPEC_NONE = plain decoding; draft = --draft FILE */
    const char *draft;
    spec_params spec;
    bool spec_flags;    /* a --draft-* / --ngram-* flag was given */
    /* constrained output: at most one of a GBNF grammar (text or file), a JSON schema
     * (text or file), or any JSON object */
    const char *grammar, *grammar_file, *json_schema;
    bool json_object;
} gen_opts;

void gen_opts_init(gen_opts *o);
/* Parses the option at argv[*i] if it is a generation option (advancing *i past its
 * value). Returns 1 if consumed, 0 if not ours, -1 on a bad value (message printed with
 * the tool's name). */
int gen_opts_parse(gen_opts *o, const char *tool, int argc, char **argv, int *i);
void gen_opts_usage(FILE *f);
/* After parsing: a random seed unless --seed was given; the speculative defaults of the
 * chosen drafter for the flags that were not given. */
void gen_opts_finish(gen_opts *o);

typedef struct gen_session {
    gguf_ctx *g;
    model_t *m;          /* owns g once loaded */
    tok_vocab *vocab;
    model_ctx *ctx;
    smp_chain *smp;
    float *logits;       /* [n_vocab]: the prediction for the next position */
    grammar *gram;       /* constrained output, or NULL */
    grammar_state *gst;
    spec_draft_model *draft; /* --draft, or NULL */
    spec_seq *spec;      /* speculative decoding state, or NULL (plain decoding) */
} gen_session;

int gen_open(gen_session *s, const gen_opts *o, nd_err *err);
void gen_close(gen_session *s);

typedef struct gen_result {
    int n_gen;           /* tokens generated (EOG not counted) */
    const char *why;     /* "max tokens", "end of generation", "stop string", "context full", "interrupted" */
    double t_first;      /* seconds from the call to the first sampled token */
    double t_total;
} gen_result;

/* Generates from s->logits (the prediction at position *pos) until EOG, a stop string,
 * n_predict tokens, a full context or *interrupt != 0. Text goes to out as it becomes
 * safe to print (never a partial UTF-8 sequence, never the start of a stop string) and
 * is appended to text (without the stop string). Every token fed to the model is
 * appended to kv (the cache's contents, for prefix reuse); *pos advances.
 * With s->spec the tokens come from speculative steps (same tokens under greedy decoding,
 * same distribution when sampling); kv is then required and must hold the *pos tokens of
 * the cache (the drafter continues them). The cache may hold entries past *pos after a
 * stop (rejected or unused drafts): the next forward at *pos overwrites them. */
int gen_generate(gen_session *s, const gen_opts *o, int64_t *pos, volatile sig_atomic_t *interrupt,
                 FILE *out, nd_buf *text, int32_t **kv, size_t *n_kv, gen_result *r, nd_err *err);

/* Appends a token to a kv array grown by gen_generate (capacity: powers of two). */
int gen_kv_push(int32_t **kv, size_t *n, int32_t t);

#endif
