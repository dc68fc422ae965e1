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

/* Brings the draft cache to hist[0..n) and its logits to the prediction after hist[n-1]:
 * keeps the longest common prefix, runs the rest in one pass. */
static int draft_sync(spec_seq *q, nd_err *err) {
    const spec_toks *h = &q->hist;
    size_t c = 0;
    while (c < h->n && c < q->dkv.n && h->v[c] == q->dkv.v[c]) c++;
    if (c == h->n) c--; /* logits of the last token are needed again */
    if ((int64_t)h->n > model_ctx_n_ctx(q->dctx))
        return nd_seterr(err, ND_ERANGE, "draft model context (%lld) is full; use a larger -c for both",
                         (long long)model_ctx_n_ctx(q->dctx));
    int rc = model_forward(q->dctx, h->v + c, (int)(h->n - c), (int64_t)c, q->dlogits, MODEL_LOGITS_LAST, err);
    q->dkv.n = c;
    if (rc) {
        q->dkv.n = 0; /* the cache is undefined from c on: resync from scratch next time */
        return nd_preerr(err, "draft model: ");
    }
    return spec_toks_push(&q->dkv, h->v + c, h->n - c) ? nd_seterr(err, ND_ENOMEM, "out of memory") : 0;
}

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
    *n = 0;
    double t0 = nd_time_s();
    size_t before = q->dkv.n;
    q->sync_cold = model_ctx_n_past(q->dctx) == 0;
    int rc = draft_sync(q, err);
    if (rc) return rc;
    q->t_sync = nd_time_s() - t0;
    q->n_sync = (int64_t)(q->hist.n - (before < q->hist.n ? before : 0));
    q->qoff[0] = 0;
    for (int i = 0; i < k; i++) {
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
