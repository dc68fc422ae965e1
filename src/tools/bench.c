/* nindub bench: llama-bench-style speed measurement.
 *
 *   nindub bench -m model.gguf [-p 512] [-n 128] [-t 2] [-r 5] [-d 0] [-o md|csv|json|jsonl]
 *
 * Tests: "ppN" runs N prompt tokens in one batched forward pass from an empty cache;
 * "tgN" decodes N tokens one at a time from an empty cache. With -d D the cache first
 * holds D tokens of context (prefilled once, not timed) and the tests run after them
 * ("tg128 @ d4096", llama-bench's n_depth): attention's share of decode grows with the
 * context. Each test runs once to warm
 * up, then -r times; samples_ts are tokens/s per repetition. Records use llama-bench's
 * field names so scripts written for it work unchanged, plus nindub's git revision and
 * the model file's sha256 (cached by path, size and mtime under $XDG_CACHE_HOME/nindub).
 */
#include <errno.h>
#include <limits.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>

#include "core/sha256.h"
#include "model/model.h"
#include "tools/gen.h"
#include "tools/eval.h"
#include "tools/tools.h"

#ifndef ND_GIT_REV
#define ND_GIT_REV "unknown"
#endif

#define MAX_LIST 16

typedef struct int_list {
    long v[MAX_LIST];
    int n;
} int_list;

static int parse_list(const char *s, int_list *l, long lo, long hi) {
    l->n = 0;
    while (*s) {
        char *end;
        errno = 0;
        long x = strtol(s, &end, 10);
        if (end == s || errno || x < lo || x > hi || l->n == MAX_LIST) return -1;
        l->v[l->n++] = x;
        if (*end == ',') end++;
        else if (*end) return -1;
        s = end;
    }
    return l->n ? 0 : -1;
}

/* ---------------------------------------------------------------- sha256 */

static void cache_path(char *out, size_t cap) {
    const char *x = getenv("XDG_CACHE_HOME"), *home = getenv("HOME");
    if (x && *x) snprintf(out, cap, "%s/nindub", x);
    else snprintf(out, cap, "%s/.cache/nindub", home && *home ? home : "/tmp");
}

/* sha256 of the file, from the cache when path, size and mtime match. */
/* sha256 of the file, read through stdio: hashing the model's mapping would fault every
 * page of it back into the process after the weights were copied out of it */
static int file_sha256(const char *path, char hex[65]) {
    char real[PATH_MAX], dir[PATH_MAX], cache[PATH_MAX + 32], line[PATH_MAX + 160];
    struct stat st;
    if (!realpath(path, real) || stat(real, &st)) return -1;
    long long mt = (long long)st.st_mtim.tv_sec * 1000000000ll + st.st_mtim.tv_nsec;
    cache_path(dir, sizeof dir);
    snprintf(cache, sizeof cache, "%s/sha256.tsv", dir);
    FILE *f = fopen(cache, "r");
    while (f && fgets(line, sizeof line, f)) {
        char p[PATH_MAX], h[65];
        long long sz, m;
        if (sscanf(line, "%4095[^\t]\t%lld\t%lld\t%64s", p, &sz, &m, h) == 4 && !strcmp(p, real) &&
            sz == (long long)st.st_size && m == mt && strlen(h) == 64) {
            memcpy(hex, h, 65);
            fclose(f);
            return 0;
        }
    }
    if (f) fclose(f);
    nd_sha256 s;
    uint8_t d[32];
    nd_sha256_init(&s);
    if (!(f = fopen(real, "rb"))) return -1;
    uint8_t chunk[1 << 16];
    size_t n;
    while ((n = fread(chunk, 1, sizeof chunk, f)) > 0) nd_sha256_update(&s, chunk, n);
    const int bad = ferror(f);
    fclose(f);
    if (bad) return -1;
    nd_sha256_final(&s, d);
    nd_sha256_hex(d, hex);
    char cmd_dir[PATH_MAX];
    snprintf(cmd_dir, sizeof cmd_dir, "%s", dir);
    for (char *q = cmd_dir + 1; *q; q++) /* mkdir -p */
        if (*q == '/') { *q = 0; mkdir(cmd_dir, 0755); *q = '/'; }
    mkdir(cmd_dir, 0755);
    if ((f = fopen(cache, "a"))) {
        fprintf(f, "%s\t%lld\t%lld\t%s\n", real, (long long)st.st_size, mt, hex);
        fclose(f);
    }
    return 0;
}

/* VmHWM of this process in MiB (0 when /proc is not there) */
static double peak_rss_mib(void) {
    FILE *f = fopen("/proc/self/status", "r");
    if (!f) return 0;
    char line[128];
    long kb = 0;
    while (fgets(line, sizeof line, f))
        if (sscanf(line, "VmHWM: %ld kB", &kb) == 1) break;
    fclose(f);
    return kb / 1024.0;
}

/* ----------------------------------------------------------------- tests */

typedef struct result {
    long n_prompt, n_gen, n_depth;
    int threads;
    double samples[64];
    int n_samples;
    double avg, sd;
} result;

/* the test's tokens at positions depth.. (the cache already holds depth positions) */
static int run_once(model_ctx *ctx, const int32_t *toks, long depth, long n_prompt, long n_gen, float *logits,
                    double *secs, nd_err *err) {
    double t0 = nd_time_s();
    if (n_prompt > 0) {
        int rc = model_forward(ctx, toks, (int)n_prompt, depth, logits, MODEL_LOGITS_LAST, err);
        if (rc) return rc;
    }
    for (long i = 0; i < n_gen; i++) {
        int rc = model_forward(ctx, toks + i, 1, depth + i, logits, MODEL_LOGITS_LAST, err);
        if (rc) return rc;
    }
    *secs = nd_time_s() - t0;
    return 0;
}

/* One warm-up, then reps timed runs of r's test (after the r->n_depth positions the cache
 * already holds); fills samples, avg and sd. */
static int measure(model_ctx *ctx, const int32_t *toks, result *r, int reps, float *logits, nd_err *err) {
    double s;
    r->n_samples = 0;
    for (int rep = -1; rep < reps; rep++) {
        int rc = run_once(ctx, toks, r->n_depth, r->n_prompt, r->n_gen, logits, &s, err);
        if (rc) return rc;
        if (rep >= 0) r->samples[r->n_samples++] = (double)(r->n_prompt + r->n_gen) / s;
    }
    double sum = 0, sq = 0;
    for (int k = 0; k < r->n_samples; k++) sum += r->samples[k];
    r->avg = sum / r->n_samples;
    for (int k = 0; k < r->n_samples; k++) sq += (r->samples[k] - r->avg) * (r->samples[k] - r->avg);
    r->sd = r->n_samples > 1 ? sqrt(sq / (r->n_samples - 1)) : 0;
    return 0;
}

/* Random token ids (fixed seed): speed does not depend on the text. */
static void fill_tokens(int32_t *toks, long n, int64_t n_vocab) {
    uint64_t st = 12345;
    for (long i = 0; i < n; i++) {
        st = st * 6364136223846793005ull + 1442695040888963407ull;
        toks[i] = (int32_t)((st >> 33) % (uint64_t)n_vocab);
    }
}

int bench_speed(const char *model, int threads, long n_prompt, long n_gen, int reps, speed_result *out,
                nd_err *err) {
    memset(out, 0, sizeof *out);
    if (reps < 1 || reps > 64 || n_prompt < 0 || n_gen < 0) return nd_seterr(err, ND_EINVAL, "bad bench parameters");
    model_t *m = model_load(model, err);
    if (!m) return err->code;
    long max_tok = n_prompt > n_gen ? n_prompt : n_gen;
    if (max_tok < 1) max_tok = 1;
    int32_t *toks = nd_malloc((size_t)max_tok * sizeof *toks);
    float *logits = nd_malloc((size_t)m->hp.n_vocab * sizeof *logits);
    model_ctx *ctx = NULL;
    int rc = ND_ENOMEM;
    if (!toks || !logits) {
        nd_seterr(err, rc, "out of memory");
        goto done;
    }
    fill_tokens(toks, max_tok, m->hp.n_vocab);
    model_ctx_params cp = model_ctx_default_params();
    cp.n_ctx = max_tok + 1;
    cp.n_threads = threads;
    cp.n_batch = (int)(max_tok < 512 ? max_tok : 512);
    if (!(ctx = model_ctx_new(m, &cp, err))) {
        rc = err->code;
        goto done;
    }
    result r = {.n_prompt = n_prompt};
    if (n_prompt && (rc = measure(ctx, toks, &r, reps, logits, err))) goto done;
    out->pp_avg = r.avg;
    out->pp_sd = r.sd;
    r = (result){.n_gen = n_gen};
    if (n_gen && (rc = measure(ctx, toks, &r, reps, logits, err))) goto done;
    out->tg_avg = r.avg;
    out->tg_sd = r.sd;
    rc = 0;
done:
    model_ctx_free(ctx);
    nd_free(toks);
    nd_free(logits);
    model_free(m);
    return rc;
}

static void usage(FILE *f) {
    fprintf(f, "usage: nindub bench -m model.gguf [-p 512] [-n 128] [-t 2] [-r 5] [-d 0] [-o md|csv|json|jsonl]\n"
               "  -p, -n, -t take comma-separated lists (e.g. -t 1,2); -p 0 / -n 0 skip a test\n"
               "  -d N           run the tests after N tokens of context (prefilled, not timed)\n"
               "  --kv f16|f32   KV cache type (default f16)\n"
               "  --weights W    auto|mmap|copy: weights copied into huge pages or left in the file\n"
               "                 mapping (default auto: copy when it fits in free memory)\n"
               "  --no-repack    keep copied weights in GGUF's layout (no X16 Q4_0 / Q5_0 / Q8_0 / Q4_K)\n"
               "speculative decoding (greedy generation of -n tokens after a prompt, plain vs speculative):\n"
               "  --draft FILE | --spec ngram   [--draft-max N] [--draft-min N] [--draft-p-min P] [--draft-fixed]\n"
               "  [--draft-threads N] [--draft-async] [--ngram-min N] [--ngram-max N]   as for nindub run\n"
               "  -f FILE        prompt text (default: a built-in paragraph)\n");
}

/* ------------------------------------------------------ speculative */

static const char default_prompt[] =
    "Speculative decoding lets a small model guess the next few tokens and the large model check "
    "all of them in a single pass. When the guesses are right, several tokens come out of one "
    "pass of the large model; when they are wrong, the cost is one wasted guess.";

typedef struct spec_run {
    double tps[64];
    int n;
    uint64_t checksum; /* FNV-1a of the generated text of the last repetition */
} spec_run;

static uint64_t fnv1a(const char *p, size_t n) {
    uint64_t h = 1469598103934665603ull;
    for (size_t i = 0; i < n; i++) h = (h ^ (uint8_t)p[i]) * 1099511628211ull;
    return h;
}

/* One greedy generation after the prompt from an empty cache; decode tokens/s as `run`
 * reports it (the steps after the first token). */
static int spec_gen_once(gen_session *s, const gen_opts *o, const int32_t *ids, size_t n_ids, FILE *sink,
                         double *tps, uint64_t *sum, nd_err *err) {
    int32_t *kv = NULL;
    size_t n_kv = 0;
    nd_buf text = {0};
    int rc = model_forward(s->ctx, ids, (int)n_ids, 0, s->logits, MODEL_LOGITS_LAST, err);
    smp_reset(s->smp);
    for (size_t i = 0; !rc && i < n_ids; i++) {
        smp_accept(s->smp, ids[i]);
        if (gen_kv_push(&kv, &n_kv, ids[i])) rc = nd_seterr(err, ND_ENOMEM, "out of memory");
    }
    int64_t pos = (int64_t)n_ids;
    gen_result r;
    if (!rc) rc = gen_generate(s, o, &pos, NULL, sink, &text, &kv, &n_kv, &r, err);
    if (!rc) {
        *tps = r.n_gen > 1 && r.t_total > r.t_first ? (r.n_gen - 1) / (r.t_total - r.t_first) : 0;
        *sum = fnv1a(text.data ? text.data : "", text.len);
    }
    nd_free(kv);
    nd_buf_free(&text);
    return rc;
}

static void spec_summary(const spec_run *r, double *avg, double *lo, double *hi) {
    double sum = 0;
    *lo = *hi = r->n ? r->tps[0] : 0;
    for (int i = 0; i < r->n; i++) {
        sum += r->tps[i];
        if (r->tps[i] < *lo) *lo = r->tps[i];
        if (r->tps[i] > *hi) *hi = r->tps[i];
    }
    *avg = r->n ? sum / r->n : 0;
}

/* nindub bench --draft / --spec: plain and speculative generation alternate, reps times
 * after a warm-up of each; prints tokens/s (mean, range), acceptance and the model's
 * predicted speedup beside the measured one. */
static int bench_spec(gen_opts *o, const char *prompt_file, int reps, const char *fmt) {
    nd_err err = {0};
    gen_session s = {0};
    char *file_text = NULL;
    int32_t *ids = NULL;
    size_t n_ids = 0;
    FILE *sink = fopen("/dev/null", "w");
    spec_run runs[2] = {{{0}, 0, 0}, {{0}, 0, 0}};
    int rc = 1;
    o->sp.temp = 0;
    o->seed_set = true;
    gen_opts_finish(o);
    if (!sink) {
        nd_seterr(&err, ND_EIO, "cannot open /dev/null");
        goto done;
    }
    if (prompt_file && nd_read_file(prompt_file, &file_text, NULL, &err)) goto done;
    const char *prompt = file_text ? file_text : default_prompt;
    if (gen_open(&s, o, &err)) goto done;
    if (tok_encode(s.vocab, prompt, strlen(prompt), true, true, &ids, &n_ids, &err)) goto done;
    if (!n_ids || (int64_t)(n_ids + (size_t)o->n_predict) >= model_ctx_n_ctx(s.ctx)) {
        nd_seterr(&err, ND_ERANGE, "prompt (%zu tokens) + -n %d do not fit the context (%lld)", n_ids, o->n_predict,
                  (long long)model_ctx_n_ctx(s.ctx));
        goto done;
    }
    spec_seq *spec = s.spec;
    spec_stats st = {0};
    for (int rep = -1; rep < reps; rep++) {
        for (int mode = 0; mode < 2; mode++) {
            double tps;
            uint64_t sum;
            s.spec = mode ? spec : NULL;
            if (mode) spec_seq_reset_stats(spec);
            int e = spec_gen_once(&s, o, ids, n_ids, sink, &tps, &sum, &err);
            s.spec = spec;
            if (e) goto done;
            if (rep < 0) continue;
            runs[mode].tps[runs[mode].n++] = tps;
            runs[mode].checksum = sum;
            if (mode) { /* accumulate the figures of the timed repetitions */
                const spec_stats *x = spec_seq_stats(spec);
                st.n_steps += x->n_steps, st.n_draft_steps += x->n_draft_steps, st.n_drafted += x->n_drafted;
                st.n_accepted += x->n_accepted, st.n_tried += x->n_tried, st.n_out += x->n_out;
                st.t_draft += x->t_draft, st.t_target += x->t_target, st.t_target1 = x->t_target1;
            }
        }
    }
    double pa, plo, phi, sa, slo, shi;
    spec_summary(&runs[0], &pa, &plo, &phi);
    spec_summary(&runs[1], &sa, &slo, &shi);
    double a = st.n_tried ? (double)st.n_accepted / (double)st.n_tried : 0;
    double k = st.n_draft_steps ? (double)st.n_drafted / (double)st.n_draft_steps : 0;
    double c = st.n_drafted && st.t_target1 > 0 ? st.t_draft / (double)st.n_drafted / st.t_target1 : 0;
    double acc = st.n_drafted ? (double)st.n_accepted / (double)st.n_drafted : 0;
    double drafted_share = st.n_steps ? (double)st.n_draft_steps / (double)st.n_steps : 0;
    bool same = runs[0].checksum == runs[1].checksum;
    const char *kind = o->spec.kind == SPEC_NGRAM ? "ngram" : o->draft;
    if (!strcmp(fmt, "json") || !strcmp(fmt, "jsonl")) {
        printf("{\"model\": \"%s\", \"drafter\": \"%s\", \"n_prompt\": %zu, \"n_gen\": %d, \"n_threads\": %d, "
               "\"plain_ts\": %.4f, \"plain_min\": %.4f, \"plain_max\": %.4f, \"spec_ts\": %.4f, \"spec_min\": %.4f, "
               "\"spec_max\": %.4f, \"speedup\": %.4f, \"drafted\": %lld, \"accepted\": %lld, \"acceptance\": %.4f, "
               "\"alpha\": %.4f, \"k\": %.3f, \"c\": %.4f, \"drafted_steps\": %.4f, \"predicted_speedup\": %.4f, "
               "\"identical\": %s, \"build_commit\": \"%s\"}\n",
               o->model, kind, n_ids, o->n_predict, model_ctx_n_threads(s.ctx), pa, plo, phi, sa, slo, shi,
               pa > 0 ? sa / pa : 0, (long long)st.n_drafted, (long long)st.n_accepted, acc, a, k, c, drafted_share,
               spec_expected_speedup(a, k, c), same ? "true" : "false", ND_GIT_REV);
    } else {
        printf("| model | drafter | threads | plain t/s | speculative t/s | speedup | drafted | accepted | a | k | c | "
               "predicted | same output |\n"
               "| --- | --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | --- |\n"
               "| %s | %s | %d | %.2f (%.2f-%.2f) | %.2f (%.2f-%.2f) | %.2fx | %lld | %lld (%.1f%%) | %.3f | %.2f | %.3f | "
               "%.2fx | %s |\n",
               o->model, kind, model_ctx_n_threads(s.ctx), pa, plo, phi, sa, slo, shi, pa > 0 ? sa / pa : 0,
               (long long)st.n_drafted, (long long)st.n_accepted, 100 * acc, a, k, c, spec_expected_speedup(a, k, c),
               same ? "yes" : "NO");
        printf("\n%zu prompt tokens, %d generated, %d repetitions; a = per-token acceptance, k = mean draft length "
               "(%.0f%% of steps drafted), c = draft cost per token / target step; predicted = "
               "(1-a^(k+1))/((1-a)(kc+1)) for the drafted steps\n",
               n_ids, o->n_predict, reps, 100 * drafted_share);
    }
    rc = same ? 0 : 1;
    if (!same) fprintf(stderr, "nindub bench: speculative output differs from plain greedy output\n");
done:
    if (rc && err.msg[0]) fprintf(stderr, "nindub bench: %s\n", err.msg);
    if (sink) fclose(sink);
    nd_free(ids);
    nd_free(file_text);
    if (s.g || s.m) gen_close(&s);
    return rc;
}

static void model_type_str(const model_t *m, const char *file_type, char *out, size_t cap) {
    double p = 0;
    for (uint64_t i = 0; i < m->gguf->n_tensors; i++) p += (double)m->gguf->tensors[i].n_elems;
    if (p >= 1e9) snprintf(out, cap, "%s %.0fB %s", m->hp.arch_name, round(p / 1e9), file_type);
    else snprintf(out, cap, "%s %.0fM %s", m->hp.arch_name, round(p / 1e6), file_type);
}

/* llama.cpp's name for general.file_type (as llama-bench prints it), NULL if unknown. */
static const char *ftype_name(uint32_t ft) {
    switch (ft) {
    case 0: return "all F32";
    case 1: return "F16";
    case 2: return "Q4_0";
    case 3: return "Q4_1";
    case 7: return "Q8_0";
    case 8: return "Q5_0";
    case 9: return "Q5_1";
    case 10: return "Q2_K - Medium";
    case 11: return "Q3_K - Small";
    case 12: return "Q3_K - Medium";
    case 13: return "Q3_K - Large";
    case 14: return "Q4_K - Small";
    case 15: return "Q4_K - Medium";
    case 16: return "Q5_K - Small";
    case 17: return "Q5_K - Medium";
    case 18: return "Q6_K";
    case 32: return "BF16";
    default: return NULL;
    }
}

/* The file's type name: general.file_type when known, else the type holding most of the
 * 2-D weights. */
static const char *dominant_type(const gguf_ctx *g) {
    uint32_t ft;
    if (!gguf_get_u32(g, "general.file_type", &ft, NULL) && ftype_name(ft)) return ftype_name(ft);
    uint64_t bytes[ND_TYPE_COUNT] = {0};
    for (uint64_t i = 0; i < g->n_tensors; i++)
        if (g->tensors[i].n_dims >= 2) bytes[g->tensors[i].type] += g->tensors[i].n_elems;
    int best = 0;
    for (int t = 1; t < ND_TYPE_COUNT; t++)
        if (bytes[t] > bytes[best]) best = t;
    return nd_type_info((uint32_t)best)->name;
}

int tool_bench(int argc, char **argv) {
    const char *path = NULL, *fmt = "md";
    int_list pp = {{512}, 1}, tg = {{128}, 1}, th = {{0}, 1};
    long reps = 5, depth = 0;
    uint32_t kv = ND_TYPE_F16;
    th.v[0] = nd_pool_default_threads();
    gen_opts go; /* the speculative options, parsed as `run` does */
    gen_opts_init(&go);
    const char *prompt_file = NULL;
    for (int i = 1; i < argc; i++) {
        const char *a = argv[i];
        bool has = i + 1 < argc;
        if (!strncmp(a, "--draft", 7) || !strncmp(a, "--spec", 6) || !strncmp(a, "--ngram-", 8)) {
            if (gen_opts_parse(&go, "bench", argc, argv, &i) != 1) return 2;
            continue;
        }
        if (!strcmp(a, "-h") || !strcmp(a, "--help")) { usage(stdout); return 0; }
        else if (!strcmp(a, "-f") && has) prompt_file = argv[++i];
        else if (!strcmp(a, "-m") && has) path = argv[++i];
        else if (!strcmp(a, "-o") && has) fmt = argv[++i];
        else if (!strcmp(a, "-p") && has) { if (parse_list(argv[++i], &pp, 0, 1 << 20)) goto bad; }
        else if (!strcmp(a, "-n") && has) { if (parse_list(argv[++i], &tg, 0, 1 << 20)) goto bad; }
        else if (!strcmp(a, "-t") && has) { if (parse_list(argv[++i], &th, 1, ND_POOL_MAX_THREADS)) goto bad; }
        else if (!strcmp(a, "-r") && has) {
            int_list r;
            if (parse_list(argv[++i], &r, 1, 64) || r.n != 1) goto bad;
            reps = r.v[0];
        } else if (!strcmp(a, "-d") && has) {
            int_list d;
            if (parse_list(argv[++i], &d, 0, 1 << 20) || d.n != 1) goto bad;
            depth = d.v[0];
        } else if (!strcmp(a, "--no-repack")) {
            go.no_repack = true;
        } else if (!strcmp(a, "--weights") && has) {
            if (model_weights_parse(argv[++i], &go.weights, NULL)) goto bad;
        } else if (!strcmp(a, "--kv") && has) {
            const char *k = argv[++i];
            if (!strcmp(k, "f16")) kv = ND_TYPE_F16;
            else if (!strcmp(k, "f32")) kv = ND_TYPE_F32;
            else goto bad;
        } else {
        bad:
            fprintf(stderr, "nindub bench: bad or incomplete option '%s'\n", a);
            usage(stderr);
            return 2;
        }
    }
    if (!path || (strcmp(fmt, "md") && strcmp(fmt, "csv") && strcmp(fmt, "json") && strcmp(fmt, "jsonl"))) {
        usage(stderr);
        return 2;
    }
    if (go.spec.kind != SPEC_NONE || go.spec_flags) {
        go.model = path;
        go.kv_type = kv;
        go.n_threads = (int)th.v[0];
        go.n_predict = (int)tg.v[0];
        go.n_ctx = 4096;
        return bench_spec(&go, prompt_file, (int)reps, fmt);
    }
    nd_err err = {0};
    const model_load_params lp = {.weights = go.weights, .no_repack = go.no_repack};
    model_t *m = model_load_ex(path, &lp, &err);
    if (!m) { fprintf(stderr, "nindub bench: %s\n", err.msg); return 1; }
    char sha[65] = "unknown", mtype[128];
    if (file_sha256(path, sha)) snprintf(sha, sizeof sha, "unknown");
    const char *ftype = dominant_type(m->gguf);
    model_type_str(m, ftype, mtype, sizeof mtype);
    uint64_t params = 0, msize = 0;
    for (uint64_t i = 0; i < m->gguf->n_tensors; i++) {
        params += m->gguf->tensors[i].n_elems;
        msize += m->gguf->tensors[i].nbytes;
    }
    long max_tok = 1;
    for (int i = 0; i < pp.n; i++) max_tok = pp.v[i] > max_tok ? pp.v[i] : max_tok;
    for (int i = 0; i < tg.n; i++) max_tok = tg.v[i] > max_tok ? tg.v[i] : max_tok;
    const long n_toks = max_tok > depth ? max_tok : depth;
    int32_t *toks = nd_malloc((size_t)n_toks * sizeof *toks);
    float *logits = nd_malloc((size_t)m->hp.n_vocab * sizeof *logits);
    result res[2 * MAX_LIST * MAX_LIST];
    int n_res = 0, rc = 1;
    if (!toks || !logits) { fprintf(stderr, "nindub bench: out of memory\n"); goto done; }
    fill_tokens(toks, n_toks, m->hp.n_vocab);
    time_t now = time(NULL);
    char test_time[32];
    strftime(test_time, sizeof test_time, "%Y-%m-%dT%H:%M:%SZ", gmtime(&now));
    for (int ti = 0; ti < th.n; ti++) {
        model_ctx_params cp = model_ctx_default_params();
        cp.n_ctx = depth + max_tok + 1;
        cp.n_threads = (int)th.v[ti];
        cp.n_batch = (int)(n_toks < 512 ? n_toks : 512);
        cp.kv_type = kv;
        model_ctx *ctx = model_ctx_new(m, &cp, &err);
        if (!ctx) { fprintf(stderr, "nindub bench: %s\n", err.msg); goto done; }
        /* the -d context, once for all tests: they only write the positions after it */
        if (depth > 0 && model_forward(ctx, toks, (int)depth, 0, NULL, MODEL_LOGITS_NONE, &err)) {
            fprintf(stderr, "nindub bench: filling the -d context: %s\n", err.msg);
            model_ctx_free(ctx);
            goto done;
        }
        for (int kind = 0; kind < 2; kind++) {
            const int_list *l = kind ? &tg : &pp;
            for (int li = 0; li < l->n; li++) {
                if (!l->v[li]) continue;
                result *r = &res[n_res++];
                memset(r, 0, sizeof *r);
                r->threads = (int)th.v[ti];
                r->n_prompt = kind ? 0 : l->v[li];
                r->n_gen = kind ? l->v[li] : 0;
                r->n_depth = depth;
                if (measure(ctx, toks, r, (int)reps, logits, &err)) {
                    fprintf(stderr, "nindub bench: %s\n", err.msg);
                    model_ctx_free(ctx);
                    goto done;
                }
                if (!strcmp(fmt, "md") && n_res == 1)
                    printf("| model | size | params | backend | threads | test | t/s |\n"
                           "| --- | ---: | ---: | --- | ---: | ---: | ---: |\n");
                if (!strcmp(fmt, "md")) {
                    char test[32];
                    int k = snprintf(test, sizeof test, "%s%ld", r->n_prompt ? "pp" : "tg",
                                     r->n_prompt ? r->n_prompt : r->n_gen);
                    if (r->n_depth) snprintf(test + k, sizeof test - (size_t)k, " @ d%ld", r->n_depth);
                    printf("| %s | %.2f MiB | %.2f M | CPU | %d | %s | %.2f ± %.2f |\n", mtype,
                           (double)msize / 1048576.0, (double)params / 1e6, r->threads, test, r->avg, r->sd);
                } else if (!strcmp(fmt, "csv") && n_res == 1) {
                    printf("build_commit,model_filename,model_type,model_size,model_n_params,model_sha256,n_batch,"
                           "n_threads,type_k,type_v,n_prompt,n_gen,n_depth,test_time,avg_ns,stddev_ns,avg_ts,stddev_ts\n");
                }
                if (!strcmp(fmt, "csv"))
                    printf("%s,\"%s\",\"%s\",%llu,%llu,%s,%d,%d,%s,%s,%ld,%ld,%ld,%s,%.0f,%.0f,%.6f,%.6f\n", ND_GIT_REV, path,
                           mtype, (unsigned long long)msize, (unsigned long long)params, sha, cp.n_batch, r->threads,
                           nd_type_info(kv)->name, nd_type_info(kv)->name, r->n_prompt, r->n_gen, r->n_depth, test_time,
                           1e9 * (double)(r->n_prompt + r->n_gen) / r->avg, 0.0, r->avg, r->sd);
                if (!strcmp(fmt, "json") || !strcmp(fmt, "jsonl")) {
                    bool pretty = !strcmp(fmt, "json");
                    if (pretty) printf(n_res == 1 ? "[\n" : ",\n");
                    printf("%s{\"build_commit\": \"%s\", \"model_filename\": \"%s\", \"model_type\": \"%s\", "
                           "\"model_size\": %llu, \"model_n_params\": %llu, \"model_sha256\": \"%s\", "
                           "\"backends\": \"CPU\", \"n_batch\": %d, \"n_threads\": %d, \"type_k\": \"%s\", "
                           "\"type_v\": \"%s\", \"n_prompt\": %ld, \"n_gen\": %ld, \"n_depth\": %ld, \"test_time\": \"%s\", "
                           "\"avg_ts\": %.6f, \"stddev_ts\": %.6f, \"samples_ts\": [",
                           pretty ? "  " : "", ND_GIT_REV, path, mtype, (unsigned long long)msize,
                           (unsigned long long)params, sha, cp.n_batch, r->threads, nd_type_info(kv)->name,
                           nd_type_info(kv)->name, r->n_prompt, r->n_gen, r->n_depth, test_time, r->avg, r->sd);
                    for (int k = 0; k < r->n_samples; k++) printf("%s%.6f", k ? ", " : "", r->samples[k]);
                    printf("]}%s", pretty ? "" : "\n");
                }
                fflush(stdout);
            }
        }
        model_ctx_free(ctx);
    }
    if (!strcmp(fmt, "json")) printf(n_res ? "\n]\n" : "[]\n");
    if (!strcmp(fmt, "md")) {
        printf("\nbuild: %s, model sha256 %s\n", ND_GIT_REV, sha);
        /* the RSS rule: peak <= file + KV cache + 64 MiB (the largest context above) */
        printf("weights: %s", model_weights_copied(m) ? "copied (huge pages)" : "file mapping");
        if (model_weights_repacked(m)) printf(", %d matrices repacked (X16)", model_weights_repacked(m));
        printf(", peak RSS %.1f MiB, file %.1f MiB\n", peak_rss_mib(), (double)m->gguf->map.size / (1 << 20));
    }
    rc = 0;
done:
    nd_free(toks);
    nd_free(logits);
    model_free(m);
    return rc;
}
