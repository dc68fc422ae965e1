/* Speculative decoding: n-gram lookup, vocabulary check, greedy output identical to plain
 * decoding for every fixture pair (a model with itself, with its quantized versions, with
 * an unrelated model, n-gram), the sampling rule checked statistically (chi-square of the
 * first and second generated tokens against the exact target distribution, fixed seeds so
 * the verdict is deterministic), and the CLI flags. */
#include <stdarg.h>
#include <sys/wait.h>
#include <unistd.h>

#include "spec/spec_internal.h"
#include "t.h"

/* ------------------------------------------------------------ fixtures */

static char *fx_path(char *buf, size_t cap, const char *rel) {
    const char *fx = t_fixtures();
    if (!fx) return NULL;
    snprintf(buf, cap, "%s/%s", fx, rel);
    return access(buf, R_OK) == 0 ? buf : NULL;
}

typedef struct target {
    model_t *m;
    tok_vocab *v;
    model_ctx *ctx;
} target;

static int target_open(target *t, const char *path) {
    nd_err err = {0};
    memset(t, 0, sizeof *t);
    if (!(t->m = model_load(path, &err)) || !(t->v = tok_load(t->m->gguf, &err))) goto fail;
    model_ctx_params cp = model_ctx_default_params();
    cp.n_ctx = 256;
    cp.n_threads = 1;
    if (!(t->ctx = model_ctx_new(t->m, &cp, &err))) goto fail;
    return 0;
fail:
    fprintf(stderr, "  %s: %s\n", path, err.msg);
    return -1;
}

static void target_close(target *t) {
    model_ctx_free(t->ctx);
    tok_free(t->v);
    model_free(t->m);
}

/* ------------------------------------------------------------- n-gram */

static void test_ngram_lookup(void) {
    int32_t d[8];
    /* a b c d a b c -> suffix "a b c" seen before: continue with d a b c, and since that
     * reaches the present, around the loop again: d a b c d a b c */
    int32_t h[] = {1, 2, 3, 4, 1, 2, 3};
    int n = spec_ngram_lookup(h, 7, 2, 4, 8, d);
    T_EQ_INT(n, 8);
    const int32_t want[8] = {4, 1, 2, 3, 4, 1, 2, 3};
    T_CHECK(n == 8 && !memcmp(d, want, sizeof want));
    T_EQ_INT(spec_ngram_lookup(h, 7, 2, 4, 2, d), 2); /* capped by k */
    /* the most recent occurrence wins: x y 5 ... x y 6 ... x y -> 6 */
    int32_t h2[] = {7, 8, 5, 9, 7, 8, 6, 9, 7, 8};
    T_EQ_INT(spec_ngram_lookup(h2, 10, 2, 2, 1, d), 1);
    T_EQ_INT(d[0], 6);
    /* the longest suffix wins over a more recent shorter one: 1 7 8 -> 2; 3 7 8 -> 4 (later) */
    int32_t h3[] = {1, 7, 8, 2, 3, 7, 8, 4, 1, 7, 8};
    T_EQ_INT(spec_ngram_lookup(h3, 11, 2, 3, 1, d), 1);
    T_EQ_INT(d[0], 2);
    T_EQ_INT(spec_ngram_lookup(h3, 11, 2, 2, 1, d), 1);
    T_EQ_INT(d[0], 4);
    /* no match, too short, k 0 */
    int32_t h4[] = {1, 2, 3, 4, 5};
    T_EQ_INT(spec_ngram_lookup(h4, 5, 1, 4, 8, d), 0);
    T_EQ_INT(spec_ngram_lookup(h4, 1, 1, 4, 8, d), 0);
    T_EQ_INT(spec_ngram_lookup(h, 7, 2, 4, 0, d), 0);
    /* a run of one token: suffix "5 5" matches one step back; the loop continues: 5 x 8 */
    int32_t h5[] = {5, 5, 5, 5};
    T_EQ_INT(spec_ngram_lookup(h5, 4, 2, 2, 8, d), 8);
    T_CHECK(d[0] == 5 && d[7] == 5);
    /* period 2 reaching the present: 1 2 1 2 1 -> 2 1 2 1 ... */
    int32_t h6[] = {1, 2, 1, 2, 1};
    T_EQ_INT(spec_ngram_lookup(h6, 5, 2, 2, 5, d), 5);
    const int32_t want6[5] = {2, 1, 2, 1, 2};
    T_CHECK(!memcmp(d, want6, sizeof want6));
}

static void test_expected_speedup(void) {
    T_NEAR(spec_expected_speedup(0, 4, 0), 1.0, 1e-12);            /* nothing accepted, free drafter */
    T_NEAR(spec_expected_speedup(1, 4, 0), 5.0, 1e-12);            /* all accepted */
    T_NEAR(spec_expected_speedup(0.5, 1, 0.5), 1.5 / 1.5, 1e-12);
    T_NEAR(spec_expected_speedup(0.8, 4, 0.1), (1 - pow(0.8, 5)) / (0.2 * 1.4), 1e-12);
}

/* --------------------------------------------------------- vocabulary */

static void test_vocab_check(void) {
    char a[1024], b[1024], c[1024];
    if (!fx_path(a, sizeof a, "models/aidreams260K-f32.gguf") || !fx_path(b, sizeof b, "models/synth-llama-q4_0.gguf") ||
        !fx_path(c, sizeof c, "vocab/ggml-vocab-llama-spm.gguf"))
        T_SKIP("fixtures not found");
    nd_err err = {0};
    gguf_ctx *ga = gguf_open(a, &err), *gc = gguf_open(c, &err);
    T_CHECK(ga && gc);
    if (!ga || !gc) return;
    tok_vocab *va = tok_load(ga, &err), *vc = tok_load(gc, &err);
    T_CHECK(va && vc);
    T_EQ_INT(spec_vocab_check(va, va, &err), 0);
    T_EQ_INT(spec_vocab_check(va, vc, &err), ND_EFORMAT);
    T_CHECKF(strstr(err.msg, "512") && strstr(err.msg, "32000"), "message: %s", err.msg);
    /* the synth models share aidreams' vocabulary: loading one as a draft works */
    spec_draft_model *d = spec_draft_model_load(b, va, 512, &err);
    T_CHECKF(d != NULL, "%s", err.msg);
    spec_draft_model_free(d);
    /* a draft with another vocabulary is refused with the file name and the reason */
    T_CHECK(spec_draft_model_load(a, vc, 32000, &err) == NULL);
    T_CHECKF(strstr(err.msg, "draft model") && strstr(err.msg, "tokens"), "message: %s", err.msg);
    T_CHECK(spec_draft_model_load("/nonexistent.gguf", va, 512, &err) == NULL);
    tok_free(va);
    tok_free(vc);
    gguf_close(ga);
    gguf_close(gc);
}

static void test_bad_params(void) {
    nd_err err = {0};
    smp_params sp = smp_default_params();
    spec_params p = spec_default_params(SPEC_NGRAM);
    p.draft_max = 0;
    T_CHECK(!spec_seq_new(&p, NULL, &sp, 512, &err) && err.code == ND_EINVAL);
    p = spec_default_params(SPEC_NGRAM);
    p.ngram_min = 5, p.ngram_max = 3;
    T_CHECK(!spec_seq_new(&p, NULL, &sp, 512, &err) && strstr(err.msg, "n-gram"));
    p = spec_default_params(SPEC_DRAFT); /* kind draft without a model */
    T_CHECK(!spec_seq_new(&p, NULL, &sp, 512, &err));
    p = spec_default_params(SPEC_NGRAM);
    spec_seq *q = spec_seq_new(&p, NULL, &sp, 512, &err);
    T_CHECK(q != NULL);
    int32_t bad[] = {1, 600};
    T_EQ_INT(spec_seq_begin(q, bad, 2, &err), ND_EINVAL);
    T_EQ_INT(spec_seq_begin(q, bad, 0, &err), ND_EINVAL);
    int32_t d[4];
    int nd;
    T_EQ_INT(spec_draft(q, 4, d, &nd, &err), ND_EINVAL); /* no history yet */
    spec_seq_free(q);
}

/* ------------------------------------------------------ greedy = plain */

/* Greedy continuation of prompt for n tokens, plain (q NULL) or speculative. The target
 * cache is filled with prompt[0..np-1), prompt[np-1] is pending. */
static int generate(target *t, spec_seq *q, const int32_t *prompt, int np, int n, int32_t *out, nd_err *err) {
    smp_params sp = smp_default_params();
    sp.temp = 0;
    smp_chain *smp = smp_new(&sp, t->m->hp.n_vocab, err);
    float *logits = nd_malloc((size_t)t->m->hp.n_vocab * sizeof *logits);
    int rc = !smp || !logits ? ND_ENOMEM : 0, got = 0;
    if (!rc && np > 1) rc = model_forward(t->ctx, prompt, np - 1, 0, NULL, MODEL_LOGITS_NONE, err);
    if (!rc && q) rc = spec_seq_begin(q, prompt, (size_t)np, err);
    int32_t last = prompt[np - 1];
    int64_t pos = np - 1;
    while (!rc && got < n) {
        if (q) {
            int32_t o[SPEC_MAX_DRAFT + 1];
            int no;
            if ((rc = spec_step(q, t->ctx, smp, n - got, o, &no, err))) break;
            for (int i = 0; i < no; i++) out[got++] = o[i];
        } else {
            if ((rc = model_forward(t->ctx, &last, 1, pos++, logits, MODEL_LOGITS_LAST, err))) break;
            last = out[got++] = smp_sample(smp, logits);
        }
    }
    smp_free(smp);
    nd_free(logits);
    return rc;
}

static void check_greedy_pair(const char *tpath, const char *dpath, spec_kind kind, const int32_t *prompt, int np,
                              bool expect_accept, bool async) {
    target t;
    if (target_open(&t, tpath)) {
        T_FAILF("cannot open %s", tpath);
        return;
    }
    nd_err err = {0};
    enum { N = 80 };
    int32_t plain[N], spec[N];
    T_EQ_INT(generate(&t, NULL, prompt, np, N, plain, &err), 0);
    spec_draft_model *dm = kind == SPEC_DRAFT ? spec_draft_model_load(dpath, t.v, t.m->hp.n_vocab, &err) : NULL;
    T_CHECKF(kind != SPEC_DRAFT || dm, "%s", err.msg);
    spec_params p = spec_default_params(kind);
    p.adaptive = false; /* always draft: the point is to exercise verification */
    p.p_min = 0;
    p.draft_max = 6;
    p.ngram_min = 1;
    p.draft_threads = 1;
    p.draft_async = async;
    p.n_ctx = 256;
    smp_params sp = smp_default_params();
    sp.temp = 0;
    spec_seq *q = spec_seq_new(&p, dm, &sp, t.m->hp.n_vocab, &err);
    T_CHECKF(q != NULL, "%s", err.msg);
    if (q) {
        T_EQ_INT(generate(&t, q, prompt, np, N, spec, &err), 0);
        int same = 0;
        while (same < N && plain[same] == spec[same]) same++;
        T_CHECKF(same == N, "%s + %s%s: first difference at token %d", tpath, dpath ? dpath : "ngram",
                 async ? " (async)" : "", same);
        const spec_stats *st = spec_seq_stats(q);
        /* a drafter that always agrees with the target (itself) has its next draft ready */
        if (async && dpath && !strcmp(tpath, dpath))
            T_CHECKF(st->n_ready > 0, "%s + %s async: no draft came from the drafter thread (%lld steps)",
                     tpath, dpath, (long long)st->n_steps);
        if (async)
            fprintf(stderr, "  %s + %s async: %lld of %lld drafts ready, %lld/%lld accepted\n", tpath, dpath,
                   (long long)st->n_ready, (long long)st->n_draft_steps, (long long)st->n_accepted,
                   (long long)st->n_drafted);
        if (!async) T_EQ_INT(st->n_ready, 0);
        T_CHECKF(st->n_drafted > 0, "no drafts were proposed");
        if (expect_accept) T_CHECKF(st->n_accepted > 0, "no draft accepted (%lld drafted)", (long long)st->n_drafted);
        T_CHECK(st->n_accepted <= st->n_tried && st->n_tried <= st->n_drafted);
        T_EQ_INT(st->n_out, st->n_accepted + st->n_steps);
    }
    spec_seq_free(q);
    spec_draft_model_free(dm);
    target_close(&t);
}

static void test_greedy_identical(void) {
    char t32[1024], q8[1024], q4[1024], q2[1024], ai[1024];
    if (!fx_path(t32, sizeof t32, "models/synth-llama-f32.gguf") || !fx_path(q8, sizeof q8, "models/synth-llama-q8_0.gguf") ||
        !fx_path(q4, sizeof q4, "models/synth-llama-q4_0.gguf") || !fx_path(q2, sizeof q2, "models/synth-llama-q2_k.gguf") ||
        !fx_path(ai, sizeof ai, "models/aidreams260K-f32.gguf"))
        T_SKIP("fixtures not found");
    const int32_t prompt[] = {1, 429, 471, 266, 447, 290, 438, 276, 437, 441, 375};
    const int np = (int)(sizeof prompt / sizeof prompt[0]);
    check_greedy_pair(t32, t32, SPEC_DRAFT, prompt, np, true, false);  /* itself: everything accepted */
    check_greedy_pair(q8, q4, SPEC_DRAFT, prompt, np, true, false);    /* its quantized versions */
    check_greedy_pair(t32, q2, SPEC_DRAFT, prompt, np, true, false);
    check_greedy_pair(t32, ai, SPEC_DRAFT, prompt, np, false, false);  /* an unrelated drafter */
    check_greedy_pair(ai, NULL, SPEC_NGRAM, prompt, np, true, false);  /* aidreams repeats itself */
    check_greedy_pair(t32, NULL, SPEC_NGRAM, prompt, np, false, false);
    /* the drafter on its own thread, drafting past the draft under verification */
    check_greedy_pair(t32, t32, SPEC_DRAFT, prompt, np, true, true);
    check_greedy_pair(q8, q4, SPEC_DRAFT, prompt, np, true, true);
    check_greedy_pair(t32, ai, SPEC_DRAFT, prompt, np, false, true);
}

/* One sequence re-targeted between drafters (as a server slot is between requests), and a
 * pick hook: greedy output stays that of plain decoding (with the same constraint). */
typedef struct ban_pick {
    int32_t ban;
    float *row;
    int64_t n;
    int calls;
} ban_pick;

static int32_t pick_ban(void *user, smp_chain *smp, const float *row, int i) {
    ban_pick *b = user;
    (void)i;
    memcpy(b->row, row, (size_t)b->n * sizeof *row);
    b->row[b->ban] = -INFINITY;
    b->calls++;
    return smp_sample(smp, b->row);
}

/* Greedy tokens after prompt without token ban (-1: none), plain. */
static void plain_banned(target *t, const int32_t *prompt, int np, int n, int32_t ban, int32_t *out) {
    nd_err err = {0};
    smp_params sp = smp_default_params();
    sp.temp = 0;
    smp_chain *smp = smp_new(&sp, t->m->hp.n_vocab, &err);
    float *lg = nd_malloc((size_t)t->m->hp.n_vocab * sizeof *lg);
    int32_t last = prompt[np - 1];
    T_EQ_INT(model_forward(t->ctx, prompt, np - 1, 0, NULL, MODEL_LOGITS_NONE, &err), 0);
    for (int i = 0, pos = np - 1; i < n; i++) {
        T_EQ_INT(model_forward(t->ctx, &last, 1, pos++, lg, MODEL_LOGITS_LAST, &err), 0);
        if (ban >= 0) lg[ban] = -INFINITY;
        last = out[i] = smp_sample(smp, lg);
    }
    smp_free(smp);
    nd_free(lg);
}

static void test_retarget_and_pick(void) {
    char t32[1024], q4[1024];
    if (!fx_path(t32, sizeof t32, "models/synth-llama-f32.gguf") || !fx_path(q4, sizeof q4, "models/synth-llama-q4_0.gguf"))
        T_SKIP("fixtures not found");
    target t;
    if (target_open(&t, t32)) {
        T_FAILF("cannot open %s", t32);
        return;
    }
    nd_err err = {0};
    const int32_t prompt[] = {1, 429, 471, 266, 447, 290, 438, 276, 437, 441, 375};
    const int np = (int)(sizeof prompt / sizeof prompt[0]);
    enum { N = 48 };
    int32_t plain[N], got[N], banned[N];
    T_EQ_INT(generate(&t, NULL, prompt, np, N, plain, &err), 0);
    spec_draft_model *dm = spec_draft_model_load(q4, t.v, t.m->hp.n_vocab, &err);
    T_CHECKF(dm != NULL, "%s", err.msg);
    smp_params sp = smp_default_params();
    sp.temp = 0;
    spec_params ng = spec_default_params(SPEC_NGRAM);
    ng.adaptive = false, ng.ngram_min = 1, ng.draft_max = 4;
    spec_seq *q = spec_seq_new(&ng, NULL, &sp, t.m->hp.n_vocab, &err);
    T_CHECKF(q != NULL, "%s", err.msg);
    if (!q || !dm) goto done;
    spec_params dp = spec_default_params(SPEC_DRAFT);
    dp.adaptive = false, dp.p_min = 0, dp.draft_max = 12, dp.draft_threads = 1, dp.n_ctx = 256;
    /* errors leave the sequence as it was */
    T_EQ_INT(spec_seq_retarget(q, &dp, NULL, &sp, &err), ND_EINVAL);
    smp_params hot = sp;
    hot.temp = 0.8f;
    ban_pick bp = {.ban = -1, .n = t.m->hp.n_vocab};
    bp.row = nd_malloc((size_t)bp.n * sizeof *bp.row);
    spec_params pk = dp;
    pk.pick = pick_ban, pk.pick_user = &bp;
    T_EQ_INT(spec_seq_retarget(q, &pk, dm, &hot, &err), ND_EINVAL);
    /* n-gram, then the draft model (context made now, draft_max grown), then n-gram again */
    const spec_params *seqs[] = {&ng, &dp, &ng, &dp};
    for (int r = 0; r < 4; r++) {
        T_EQ_INT(spec_seq_retarget(q, seqs[r], dm, &sp, &err), 0);
        T_EQ_INT(generate(&t, q, prompt, np, N, got, &err), 0);
        int same = 0;
        while (same < N && plain[same] == got[same]) same++;
        T_CHECKF(same == N, "round %d: first difference at token %d", r, same);
        T_CHECKF(spec_seq_stats(q)->n_drafted > 0 && spec_seq_stats(q)->n_out == N, "round %d: %lld drafted, %lld out",
                 r, (long long)spec_seq_stats(q)->n_drafted, (long long)spec_seq_stats(q)->n_out);
    }
    T_CHECK(spec_seq_stats(q)->n_accepted > N / 2); /* q4 drafting for f32: mostly accepted */
    /* a pick that bans a token plain decoding emits: same as plain decoding without it */
    bp.ban = plain[3];
    plain_banned(&t, prompt, np, N, bp.ban, banned);
    T_EQ_INT(spec_seq_retarget(q, &pk, dm, &sp, &err), 0);
    T_EQ_INT(generate(&t, q, prompt, np, N, got, &err), 0);
    int same = 0;
    while (same < N && banned[same] == got[same]) same++;
    T_CHECKF(same == N, "pick: first difference at token %d", same);
    T_CHECK(bp.calls >= spec_seq_stats(q)->n_steps);
    for (int i = 0; i < N; i++) T_CHECK(got[i] != bp.ban);
    nd_free(bp.row);
done:
    spec_seq_free(q);
    spec_draft_model_free(dm);
    target_close(&t);
}

/* ---------------------------------------------------- sampling exactness */

/* Chi-square critical value at p = 0.001 (Wilson-Hilferty). */
static double chi2_crit(int df) {
    double z = 3.090, a = 2.0 / (9.0 * df);
    double x = 1 - a + z * sqrt(a);
    return df * x * x * x;
}

/* Pearson chi-square of counts against probabilities over ids; bins expected below 5 are
 * pooled into one. Returns the statistic and the degrees of freedom. */
static double chi2(const int *count, const double *prob, int n, int total, int *df) {
    double stat = 0, pool_e = 0, pool_o = 0;
    int bins = 0;
    for (int i = 0; i < n; i++) {
        double e = prob[i] * total;
        if (e < 5) {
            pool_e += e, pool_o += count[i];
            continue;
        }
        stat += (count[i] - e) * (count[i] - e) / e, bins++;
    }
    if (pool_e > 0) stat += (pool_o - pool_e) * (pool_o - pool_e) / (pool_e > 1e-9 ? pool_e : 1e-9), bins++;
    *df = bins - 1;
    return stat;
}

typedef struct dist {
    int32_t id[512];
    double p[512];
    int n;
} dist;

/* The exact target distribution after the tokens seq[0..n) (sampling chain sp). */
static void exact_dist(target *t, const smp_params *sp, const int32_t *seq, int n, dist *d) {
    nd_err err = {0};
    int64_t V = t->m->hp.n_vocab;
    float *logits = nd_malloc((size_t)V * sizeof *logits), *pr = nd_malloc((size_t)V * sizeof *pr);
    int32_t *ids = nd_malloc((size_t)V * sizeof *ids);
    smp_chain *s = smp_new(sp, V, &err);
    T_EQ_INT(model_forward(t->ctx, seq, n, 0, logits, MODEL_LOGITS_LAST, &err), 0);
    int64_t k = smp_dist(s, logits, ids, pr);
    d->n = (int)k;
    for (int64_t i = 0; i < k; i++) d->id[i] = ids[i], d->p[i] = pr[i];
    smp_free(s);
    nd_free(logits);
    nd_free(pr);
    nd_free(ids);
}

static int find_id(const dist *d, int32_t id) {
    for (int i = 0; i < d->n; i++)
        if (d->id[i] == id) return i;
    return -1;
}

/* Samples the first two generated tokens `total` times through spec_step and compares
 * them with the exact distributions. The first token always goes through verification
 * (the pending token is the last prompt token), and with max_new 3 the second does
 * whenever the first draft token was accepted. */
static void check_sampling(const char *tpath, const char *dpath, spec_kind kind, const int32_t *prompt, int np,
                           bool q_differs) {
    target t;
    if (target_open(&t, tpath)) {
        T_FAILF("cannot open %s", tpath);
        return;
    }
    nd_err err = {0};
    smp_params sp = smp_default_params();
    sp.temp = 1.0f, sp.top_k = 6, sp.top_p = 1, sp.min_p = 0, sp.seed = 1234;
    /* exact laws: p1 after the prompt, p2 = sum over x1 of p1(x1) p(. | x1) */
    dist p1, cond;
    exact_dist(&t, &sp, prompt, np, &p1);
    int32_t ids2[512];
    double p2[512];
    int n2 = 0;
    int32_t seq[64];
    memcpy(seq, prompt, (size_t)np * sizeof *seq);
    for (int i = 0; i < p1.n; i++) {
        seq[np] = p1.id[i];
        exact_dist(&t, &sp, seq, np + 1, &cond);
        for (int j = 0; j < cond.n; j++) {
            int k = 0;
            while (k < n2 && ids2[k] != cond.id[j]) k++;
            if (k == n2) ids2[n2] = cond.id[j], p2[n2++] = 0;
            p2[k] += p1.p[i] * cond.p[j];
        }
    }
    spec_draft_model *dm = kind == SPEC_DRAFT ? spec_draft_model_load(dpath, t.v, t.m->hp.n_vocab, &err) : NULL;
    spec_params p = spec_default_params(kind);
    p.adaptive = false, p.p_min = 0, p.draft_max = 4, p.ngram_min = 1, p.draft_threads = 1, p.n_ctx = 256;
    spec_seq *q = spec_seq_new(&p, dm, &sp, t.m->hp.n_vocab, &err);
    smp_chain *smp = smp_new(&sp, t.m->hp.n_vocab, &err);
    T_CHECKF(q && smp, "%s", err.msg);
    if (!q || !smp) goto done;
    enum { TOTAL = 1500 };
    int c1[512] = {0}, c2[512] = {0}, cq[512] = {0}, verified2 = 0, q_outside = 0;
    T_EQ_INT(model_forward(t.ctx, prompt, np - 1, 0, NULL, MODEL_LOGITS_NONE, &err), 0);
    for (int s = 0; s < TOTAL; s++) {
        int32_t o[SPEC_MAX_DRAFT + 1], o2[SPEC_MAX_DRAFT + 1];
        int no, no2;
        if (spec_seq_begin(q, prompt, (size_t)np, &err) || spec_step(q, t.ctx, smp, 3, o, &no, &err)) {
            T_FAILF("spec_step: %s", err.msg);
            break;
        }
        int iq = find_id(&p1, q->last[0]); /* the drafter's own first token (q, not p) */
        if (iq >= 0) cq[iq]++;
        else q_outside++;
        int i1 = find_id(&p1, o[0]);
        T_CHECKF(i1 >= 0, "first token %d outside the target's top-k", o[0]);
        if (i1 >= 0) c1[i1]++;
        int32_t second = -1;
        if (no >= 2) {
            second = o[1];
            verified2++;
        } else if (!spec_step(q, t.ctx, smp, 1, o2, &no2, &err)) {
            second = o2[0];
        }
        for (int k = 0; k < n2; k++)
            if (ids2[k] == second) c2[k]++;
    }
    const spec_stats *st = spec_seq_stats(q);
    /* both branches of the rule ran: acceptances (except for the unrelated drafter, whose
     * tokens lie outside the target's top-k) and rejections with a residual draw */
    T_CHECKF(st->n_drafted >= TOTAL && (q_differs || st->n_accepted > 0) && st->n_tried > st->n_accepted,
             "verification not exercised: %lld drafted, %lld accepted, %lld tried", (long long)st->n_drafted,
             (long long)st->n_accepted, (long long)st->n_tried);
    T_CHECKF(q_differs || verified2 > TOTAL / 100, "second token verified only %d times", verified2);
    int df;
    double x1 = chi2(c1, p1.p, p1.n, TOTAL, &df);
    T_CHECKF(x1 < chi2_crit(df), "%s: first token chi2 %.1f >= %.1f (df %d)", dpath ? dpath : "ngram", x1,
             chi2_crit(df), df);
    double x2 = chi2(c2, p2, n2, TOTAL, &df);
    T_CHECKF(x2 < chi2_crit(df), "%s: second token chi2 %.1f >= %.1f (df %d)", dpath ? dpath : "ngram", x2,
             chi2_crit(df), df);
    fprintf(stderr, "  %s: %lld drafted, %lld accepted; chi2 first %.1f, second %.1f (%d verified)\n",
            dpath ? dpath : "ngram", (long long)st->n_drafted, (long long)st->n_accepted, x1, x2, verified2);
    if (q_differs) { /* the test has power: the drafter's tokens alone fail it */
        int nq = 0;
        for (int i = 0; i < p1.n; i++) nq += cq[i];
        double xq = nq ? chi2(cq, p1.p, p1.n, nq, &df) : 0;
        T_CHECKF(q_outside > 0 || xq > chi2_crit(df), "drafter tokens pass as target samples (chi2 %.1f)", xq);
    }
done:
    smp_free(smp);
    spec_seq_free(q);
    spec_draft_model_free(dm);
    target_close(&t);
}

static void test_sampling_distribution(void) {
    char t32[1024], q4[1024], ai[1024];
    if (!fx_path(t32, sizeof t32, "models/synth-llama-f32.gguf") || !fx_path(q4, sizeof q4, "models/synth-llama-q4_0.gguf") ||
        !fx_path(ai, sizeof ai, "models/aidreams260K-f32.gguf"))
        T_SKIP("fixtures not found");
    const int32_t prompt[] = {1, 429, 471, 266, 447, 290, 438, 276, 437, 441, 375};
    const int np = (int)(sizeof prompt / sizeof prompt[0]);
    check_sampling(t32, q4, SPEC_DRAFT, prompt, np, false); /* close drafter: mostly accepted */
    check_sampling(t32, ai, SPEC_DRAFT, prompt, np, true);  /* unrelated drafter: mostly resampled */
    /* n-gram: a prompt that repeats, so the lookup always proposes */
    const int32_t rep[] = {1, 429, 471, 266, 447, 429, 471, 266, 447, 429, 471};
    check_sampling(ai, NULL, SPEC_NGRAM, rep, (int)(sizeof rep / sizeof rep[0]), false);
}

/* -------------------------------------------------------------------- CLI */

static const char *bin(void) {
    const char *b = getenv("NINDUB_BIN");
    return b && *b && access(b, X_OK) == 0 ? b : NULL;
}

static int run(char **out, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
static int run(char **out, const char *fmt, ...) {
    char args[4096], cmd[8192];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(args, sizeof args, fmt, ap);
    va_end(ap);
    snprintf(cmd, sizeof cmd, "%s %s", bin(), args);
    FILE *p = popen(cmd, "r");
    if (!p) return -1;
    nd_buf b = {0};
    char chunk[4096];
    size_t n;
    while ((n = fread(chunk, 1, sizeof chunk, p)) > 0) nd_buf_append(&b, chunk, n);
    int st = pclose(p);
    if (!b.data) nd_buf_append(&b, "", 0);
    *out = b.data;
    return WIFEXITED(st) ? WEXITSTATUS(st) : -1;
}

static void test_cli(void) {
    if (!bin()) T_SKIP("NINDUB_BIN not set (run through make test)");
    char ai[1024], q8[1024], q4[1024];
    if (!fx_path(ai, sizeof ai, "models/aidreams260K-f32.gguf") || !fx_path(q8, sizeof q8, "models/synth-llama-q8_0.gguf") ||
        !fx_path(q4, sizeof q4, "models/synth-llama-q4_0.gguf"))
        T_SKIP("fixtures not found");
    static const char *const cases[][2] = {
        {"-m %s -p 'The' -n 100 --temp 0 -t 1", "--spec ngram --ngram-min 1"},
        {"-m %s -p 'The' -n 100 --temp 0 -t 1 --stop tapestry", "--spec ngram --draft-fixed"},
        {"-m %s -p 'Once upon' -n 7 --temp 0 -t 1", "--spec ngram --draft-max 3 --draft-fixed"},
    };
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        char fmt[512], *plain, *spec;
        snprintf(fmt, sizeof fmt, "run %s 2>/dev/null", cases[i][0]);
        T_EQ_INT(run(&plain, fmt, ai), 0);
        snprintf(fmt, sizeof fmt, "run %s %s 2>/dev/null", cases[i][0], cases[i][1]);
        T_EQ_INT(run(&spec, fmt, ai), 0);
        T_CHECKF(!strcmp(plain, spec), "case %zu: '%.60s' vs '%.60s'", i, plain, spec);
        nd_free(plain);
        nd_free(spec);
    }
    char *a, *b;
    T_EQ_INT(run(&a, "run -m %s -p 'The quick' -n 40 --temp 0 -t 1 2>/dev/null", q8), 0);
    T_EQ_INT(run(&b, "run -m %s -p 'The quick' -n 40 --temp 0 -t 1 --draft %s --draft-fixed 2>&1", q8, q4), 0);
    T_CHECKF(!strncmp(a, b, strlen(a)), "draft run differs: '%.60s' vs '%.60s'", a, b);
    T_CHECKF(strstr(b, "speculative (draft model)") && strstr(b, "acceptance rate") && strstr(b, "mean accepted length"),
             "no speculative figures in: %s", b);
    nd_free(b);
    /* the drafter on its own thread: the same text */
    T_EQ_INT(run(&b, "run -m %s -p 'The quick' -n 40 --temp 0 -t 1 --draft %s --draft-threads 1 --draft-async "
                     "--draft-p-min 0 2>/dev/null", q8, q4), 0);
    T_CHECKF(!strcmp(a, b), "--draft-async run differs: '%.60s' vs '%.60s'", a, b);
    nd_free(a);
    nd_free(b);
    /* errors */
    static const char *const bad[][2] = {
        {"run -m %s -p hi --spec trie", "--spec expects ngram"},
        {"run -m %s -p hi --spec ngram --draft x.gguf", "exclude each other"},
        {"run -m %s -p hi --draft-max 0", "--draft-max"},
        {"run -m %s -p hi --draft-max 99", "--draft-max"},
        {"run -m %s -p hi --draft-p-min 2", "--draft-p-min"},
    };
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
        char fmt[256], *o;
        snprintf(fmt, sizeof fmt, "%s 2>&1", bad[i][0]);
        T_EQ_INT(run(&o, fmt, ai), 2);
        T_CHECKF(strstr(o, bad[i][1]) != NULL, "'%s' printed: %s", bad[i][0], o);
        nd_free(o);
    }
    char *o;
    T_EQ_INT(run(&o, "run -m %s -p hi --draft-max 4 2>&1", ai), 1);
    T_CHECKF(strstr(o, "need --draft FILE or --spec ngram") != NULL, "%s", o);
    nd_free(o);
    /* a draft model with another vocabulary (synth's own tokenizer) */
    T_EQ_INT(run(&o, "synth --preset tiny --layers 1 --type q8_0 -o build/test_spec_tiny.gguf 2>&1"), 0);
    nd_free(o);
    T_EQ_INT(run(&o, "run -m %s -p hi --draft build/test_spec_tiny.gguf 2>&1", ai), 1);
    T_CHECKF(strstr(o, "draft model build/test_spec_tiny.gguf") && strstr(o, "vocabulary"), "%s", o);
    nd_free(o);
    T_EQ_INT(run(&o, "run -m %s -p hi --draft /nonexistent.gguf 2>&1", ai), 1);
    nd_free(o);
}

int main(void) {
    T_RUN(test_ngram_lookup);
    T_RUN(test_expected_speedup);
    T_RUN(test_vocab_check);
    T_RUN(test_bad_params);
    T_RUN(test_greedy_identical);
    T_RUN(test_retarget_and_pick);
    T_RUN(test_sampling_distribution);
    T_RUN(test_cli);
    return t_done();
}
