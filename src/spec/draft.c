/* The draft model: loading, the vocabulary check against the target, and drafting with
 * its own context kept in sync with the accepted tokens. */
#include <math.h>
#include <string.h>

#include "spec/spec_internal.h"

/* ------------------------------------------------------------- vocabulary */

static bool is_special(const tok_vocab *v, int32_t id) {
    tok_type t = tok_get_type(v, id);
    return t == TOK_TYPE_CONTROL || t == TOK_TYPE_USER_DEFINED || t == TOK_TYPE_UNKNOWN;
}

int spec_vocab_check(const tok_vocab *target, const tok_vocab *draft, nd_err *err) {
    static const char hint[] = " — the draft model must use the target's tokenizer (same family, same vocabulary)";
    if (tok_get_kind(target) != tok_get_kind(draft))
        return nd_seterr(err, ND_EFORMAT, "draft vocabulary is %s, the target's %s%s",
                         tok_get_kind(draft) == TOK_KIND_SPM ? "SentencePiece" : "byte-level BPE",
                         tok_get_kind(target) == TOK_KIND_SPM ? "SentencePiece" : "byte-level BPE", hint);
    int32_t n = tok_n_vocab(target);
    if (tok_n_vocab(draft) != n)
        return nd_seterr(err, ND_EFORMAT, "draft vocabulary has %d tokens, the target's %d%s",
                         tok_n_vocab(draft), n, hint);
    for (int32_t id = 0; id < n; id++) {
        if (is_special(target, id) || is_special(draft, id)) continue;
        size_t la, lb;
        const char *a = tok_text(target, id, &la), *b = tok_text(draft, id, &lb);
        if (la != lb || memcmp(a, b, la))
            return nd_seterr(err, ND_EFORMAT, "token %d differs: target '%.40s', draft '%.40s'%s", id, a, b, hint);
    }
    return 0;
}

/* ------------------------------------------------------------ draft model */

spec_draft_model *spec_draft_model_load(const char *path, const tok_vocab *target, int64_t target_rows,
                                        nd_err *err) {
    spec_draft_model *d = nd_calloc(1, sizeof *d);
    if (!d) {
        nd_seterr(err, ND_ENOMEM, "out of memory");
        return NULL;
    }
    if (!(d->m = model_load(path, err))) goto fail;
    if (!(d->vocab = tok_load(d->m->gguf, err))) {
        nd_preerr(err, "draft model %s: tokenizer: ", path);
        goto fail;
    }
    if (spec_vocab_check(target, d->vocab, err)) {
        nd_preerr(err, "draft model %s: ", path);
        goto fail;
    }
    d->n_common = d->m->hp.n_vocab < target_rows ? d->m->hp.n_vocab : target_rows;
    if (d->n_common < tok_n_vocab(target)) {
        nd_seterr(err, ND_EFORMAT, "draft model %s: %lld logits per position, fewer than the %d tokens", path,
                  (long long)d->n_common, tok_n_vocab(target));
        goto fail;
    }
    return d;
fail:
    spec_draft_model_free(d);
    return NULL;
}

void spec_draft_model_free(spec_draft_model *d) {
    if (!d) return;
    tok_free(d->vocab);
    model_free(d->m);
    nd_free(d);
}

const model_t *spec_draft_model_model(const spec_draft_model *d) { return d->m; }

/* ---------------------------------------------------------------- drafting */

/* Brings the draft cache to h[0..n) and its logits to the prediction after h[n-1]: keeps
 * the longest common prefix, runs the rest in one pass. */
static int draft_sync_to(spec_seq *q, const int32_t *h, size_t n, nd_err *err) {
    size_t c = 0;
    while (c < n && c < q->dkv.n && h[c] == q->dkv.v[c]) c++;
    if (c == n) c--; /* logits of the last token are needed again */
    if ((int64_t)n > model_ctx_n_ctx(q->dctx))
        return nd_seterr(err, ND_ERANGE, "draft model context (%lld) is full; use a larger -c for both",
                         (long long)model_ctx_n_ctx(q->dctx));
    int rc = model_forward(q->dctx, h + c, (int)(n - c), (int64_t)c, q->dlogits, MODEL_LOGITS_LAST, err);
    q->dkv.n = c;
    if (rc) {
        q->dkv.n = 0; /* the cache is undefined from c on: resync from scratch next time */
        return nd_preerr(err, "draft model: ");
    }
    return spec_toks_push(&q->dkv, h + c, n - c) ? nd_seterr(err, ND_ENOMEM, "out of memory") : 0;
}

static int draft_sync(spec_seq *q, nd_err *err) { return draft_sync_to(q, q->hist.v, q->hist.n, err); }

/* Greedy drafter: argmax of the raw logits and its softmax probability (temperature 1). */
static int32_t argmax_p(const float *l, int64_t n, float *p_top) {
    int64_t best = 0;
    for (int64_t i = 1; i < n; i++)
        if (l[i] > l[best]) best = i;
    double sum = 0;
    for (int64_t i = 0; i < n; i++) sum += exp((double)l[i] - l[best]);
    *p_top = (float)(1.0 / sum);
    return (int32_t)best;
}

/* Sampling drafter: q = the drafter chain's distribution, stored for verification. */
static int draft_sampled(spec_seq *q, int i, int32_t *x, float *p_top, nd_err *err) {
    size_t off = q->qoff[i], need = off + (size_t)q->dm->n_common;
    if (need > q->q_cap) {
        size_t cap = need * 2;
        int32_t *a = nd_realloc(q->qid, cap * sizeof *a);
        if (a) q->qid = a;
        float *b = nd_realloc(q->qp, cap * sizeof *b);
        if (b) q->qp = b;
        if (!a || !b) return nd_seterr(err, ND_ENOMEM, "out of memory for draft distributions");
        q->q_cap = cap;
    }
    int64_t n = smp_dist(q->dsmp, q->dlogits, q->qid + off, q->qp + off);
    *p_top = 0;
    for (int64_t j = 0; j < n; j++)
        if (q->qp[off + j] > *p_top) *p_top = q->qp[off + j];
    *x = spec_draw(&q->rng, q->qid + off, q->qp + off, n);
    q->qoff[i + 1] = off + (size_t)n;
    return 0;
}

int spec_model_draft(spec_seq *q, int k, int32_t *draft, int *n, nd_err *err) {
    const int n0 = *n; /* draft[0..n0) is given: continue after it (greedy only) */
    double t0 = nd_time_s();
    size_t before = q->dkv.n;
    q->sync_cold = model_ctx_n_past(q->dctx) == 0;
    int rc;
    if (n0 > 0) {
        spec_toks *h = &q->la.base; /* free: the asynchronous drafter is idle */
        h->n = 0;
        if (spec_toks_push(h, q->hist.v, q->hist.n) || spec_toks_push(h, draft, (size_t)n0))
            return nd_seterr(err, ND_ENOMEM, "out of memory");
        rc = draft_sync_to(q, h->v, h->n, err);
    } else {
        rc = draft_sync(q, err);
    }
    if (rc) return rc;
    q->t_sync = nd_time_s() - t0;
    q->n_sync = (int64_t)(q->hist.n - (before < q->hist.n ? before : 0));
    q->qoff[0] = 0;
    for (int i = n0; i < k; i++) {
        int32_t x;
        float p_top = 1;
        if (q->greedy) x = argmax_p(q->dlogits, q->dm->n_common, &p_top);
        else if ((rc = draft_sampled(q, i, &x, &p_top, err))) return rc;
        if (p_top < q->p.p_min) break;
        if (q->p.allow && !q->p.allow(q->p.allow_user, draft, i, x)) break;
        draft[(*n)++] = x;
        if (i + 1 == k) break; /* the last draft token need not run through the drafter */
        int64_t pos = (int64_t)q->dkv.n;
        if (pos >= model_ctx_n_ctx(q->dctx)) break;
        if ((rc = model_forward(q->dctx, &x, 1, pos, q->dlogits, MODEL_LOGITS_LAST, err))) {
            q->dkv.n = 0;
            return nd_preerr(err, "draft model: ");
        }
        if (spec_toks_push(&q->dkv, &x, 1)) return nd_seterr(err, ND_ENOMEM, "out of memory");
    }
    return 0;
}

/* ------------------------------------------------------ asynchronous drafter */

/* The job: sync to base, then greedy predictions one token at a time (each fed back)
 * until draft_max of them, a top probability below p_min, a full context, or stop. An
 * error only ends the lookahead: the next draft resyncs synchronously and reports it. */
static void la_job(spec_seq *q) {
    spec_la *la = &q->la;
    nd_err err = {0};
    la->toks.n = 0;
    la->open = true;
    if (draft_sync_to(q, la->base.v, la->base.n, &err)) return;
    for (;;) {
        float p_top;
        int32_t x = argmax_p(q->dlogits, q->dm->n_common, &p_top);
        if (p_top < q->p.p_min) {
            la->open = false;
            return;
        }
        if (spec_toks_push(&la->toks, &x, 1)) return;
        if ((int)la->toks.n >= q->p.draft_max || atomic_load_explicit(&la->stop, memory_order_relaxed)) return;
        int64_t pos = (int64_t)q->dkv.n;
        if (pos >= model_ctx_n_ctx(q->dctx)) return;
        if (model_forward(q->dctx, &x, 1, pos, q->dlogits, MODEL_LOGITS_LAST, &err)) {
            q->dkv.n = 0;
            return;
        }
        if (spec_toks_push(&q->dkv, &x, 1)) return;
    }
}

static void *la_main(void *arg) {
    spec_seq *q = arg;
    spec_la *la = &q->la;
    pthread_mutex_lock(&la->mu);
    for (;;) {
        while (!la->busy && !la->quit) pthread_cond_wait(&la->cv, &la->mu);
        if (la->quit) break;
        pthread_mutex_unlock(&la->mu);
        la_job(q);
        pthread_mutex_lock(&la->mu);
        la->busy = false;
        pthread_cond_broadcast(&la->cv);
    }
    pthread_mutex_unlock(&la->mu);
    return NULL;
}

void spec_la_wait(spec_seq *q) {
    spec_la *la = &q->la;
    if (!la->started) return;
    atomic_store(&la->stop, true);
    pthread_mutex_lock(&la->mu);
    while (la->busy) pthread_cond_wait(&la->cv, &la->mu);
    pthread_mutex_unlock(&la->mu);
}

void spec_la_cancel(spec_seq *q) {
    if (q->la.started) atomic_store(&q->la.stop, true);
}

void spec_la_start(spec_seq *q, const int32_t *draft, int n) {
    spec_la *la = &q->la;
    spec_la_wait(q);
    la->valid = false;
    if (n < 1 || !q->dctx) return;
    if (!la->started) {
        if (pthread_mutex_init(&la->mu, NULL)) return;
        if (pthread_cond_init(&la->cv, NULL)) {
            pthread_mutex_destroy(&la->mu);
            return;
        }
        la->busy = la->quit = false;
        if (pthread_create(&la->th, NULL, la_main, q)) {
            pthread_cond_destroy(&la->cv);
            pthread_mutex_destroy(&la->mu);
            return;
        }
        la->started = true;
    }
    la->base.n = 0;
    if (spec_toks_push(&la->base, q->hist.v, q->hist.n) || spec_toks_push(&la->base, draft, (size_t)n)) return;
    atomic_store(&la->stop, false);
    pthread_mutex_lock(&la->mu);
    la->busy = la->valid = true;
    pthread_cond_signal(&la->cv);
    pthread_mutex_unlock(&la->mu);
}

int spec_la_take(spec_seq *q, int k, int32_t *draft) {
    spec_la *la = &q->la;
    spec_la_wait(q);
    if (!la->valid) return 0;
    la->valid = false;
    /* the history must be base + toks[0..j) for some j >= 1: the whole draft and at least
     * one more token (the target's bonus token) agreed with the lookahead */
    const spec_toks *h = &q->hist;
    const size_t nb = la->base.n;
    if (h->n <= nb || h->n - nb > la->toks.n || memcmp(h->v, la->base.v, nb * sizeof *h->v) ||
        memcmp(h->v + nb, la->toks.v, (h->n - nb) * sizeof *h->v))
        return 0;
    size_t from = h->n - nb;
    int n = 0;
    while (n < k && from + (size_t)n < la->toks.n) {
        int32_t x = la->toks.v[from + (size_t)n];
        if (q->p.allow && !q->p.allow(q->p.allow_user, draft, n, x)) break;
        draft[n++] = x;
    }
    return n;
}

void spec_la_free(spec_seq *q) {
    spec_la *la = &q->la;
    if (la->started) {
        spec_la_wait(q);
        pthread_mutex_lock(&la->mu);
        la->quit = true;
        pthread_cond_signal(&la->cv);
        pthread_mutex_unlock(&la->mu);
        pthread_join(la->th, NULL);
        pthread_cond_destroy(&la->cv);
        pthread_mutex_destroy(&la->mu);
        la->started = false;
    }
    nd_free(la->base.v);
    nd_free(la->toks.v);
    memset(&la->base, 0, sizeof la->base);
    memset(&la->toks, 0, sizeof la->toks);
}
