/* Speculative decoding: the per-sequence object, verification, adaptive draft length. */
#include <math.h>
#include <string.h>

#include "spec/spec_internal.h"

#define EMA_ACC 0.9   /* decay of the acceptance sums per draft step (window ~10 steps) */
#define EMA_COST 0.8  /* decay of the cost estimates */
#define PROBE_MIN 4   /* steps between 1-token probes while drafting does not pay */
#define PROBE_MAX 64
#define EXPLORE_EVERY 8 /* drafting steps between tries of twice the chosen length */

/* A cost estimate: the minimum of the first samples (the first pass of a cold context
 * pays page faults and allocation), then an exponential moving average. */
static void cost_update(double *est, int *count, double x) {
    if (*count < 3) *est = *count == 0 || x < *est ? x : *est;
    else *est = EMA_COST * *est + (1 - EMA_COST) * x;
    if (*count < 1000000) ++*count;
}

spec_params spec_default_params(spec_kind kind) {
    return (spec_params){.kind = kind, .draft_max = kind == SPEC_NGRAM ? 16 : 8, .draft_min = 0,
                         .p_min = kind == SPEC_NGRAM ? 0.0f : 0.3f, .adaptive = true,
                         .ngram_min = 2, .ngram_max = 4};
}

double spec_expected_speedup(double a, double k, double c) {
    double gain = a >= 1 ? k + 1 : (1 - pow(a, k + 1)) / (1 - a);
    return gain / (k * c + 1);
}

int spec_toks_push(spec_toks *t, const int32_t *v, size_t n) {
    if (t->n + n > t->cap) {
        size_t cap = t->cap ? t->cap : 256;
        while (cap < t->n + n) cap *= 2;
        int32_t *p = nd_realloc(t->v, cap * sizeof *p);
        if (!p) return ND_ENOMEM;
        t->v = p;
        t->cap = cap;
    }
    if (n) memcpy(t->v + t->n, v, n * sizeof *v);
    t->n += n;
    return 0;
}

/* ------------------------------------------------------------- lifecycle */

static int check_params(const spec_params *p, const spec_draft_model *dm, nd_err *err) {
    if (p->kind != SPEC_DRAFT && p->kind != SPEC_NGRAM)
        return nd_seterr(err, ND_EINVAL, "speculative decoding: unknown drafter kind %d", (int)p->kind);
    if ((p->kind == SPEC_DRAFT) != (dm != NULL))
        return nd_seterr(err, ND_EINVAL, "speculative decoding: a draft model goes with kind draft, and only there");
    if (p->draft_max < 1 || p->draft_max > SPEC_MAX_DRAFT || p->draft_min < 0 || p->draft_min > p->draft_max)
        return nd_seterr(err, ND_EINVAL, "draft length: need 1 <= draft-max <= %d and 0 <= draft-min <= draft-max "
                         "(got %d, %d)", SPEC_MAX_DRAFT, p->draft_max, p->draft_min);
    if (!(p->p_min >= 0 && p->p_min <= 1))
        return nd_seterr(err, ND_EINVAL, "draft-p-min must be in [0, 1]");
    if (p->ngram_min < 1 || p->ngram_max < p->ngram_min || p->ngram_max > 16)
        return nd_seterr(err, ND_EINVAL, "n-gram sizes: need 1 <= ngram-min <= ngram-max <= 16 (got %d, %d)",
                         p->ngram_min, p->ngram_max);
    if (p->draft_threads < 0 || p->n_ctx < 0) return nd_seterr(err, ND_EINVAL, "draft threads / context < 0");
    return 0;
}

static int check_pick(const spec_params *p, const smp_params *sp, nd_err *err) {
    if (p->pick && sp->temp > 0)
        return nd_seterr(err, ND_EINVAL, "speculative decoding: a pick hook needs greedy sampling (temperature 0)");
    return 0;
}

spec_seq *spec_seq_new(const spec_params *p, const spec_draft_model *dm, const smp_params *sp,
                       int64_t target_rows, nd_err *err) {
    if (check_params(p, dm, err) || check_pick(p, sp, err)) return NULL;
    if (target_rows < 1 || target_rows > INT32_MAX) {
        nd_seterr(err, ND_EINVAL, "speculative decoding: %lld target logits", (long long)target_rows);
        return NULL;
    }
    spec_seq *q = nd_calloc(1, sizeof *q);
    if (!q) goto oom;
    q->p = *p;
    q->sp = *sp;
    q->greedy = sp->temp <= 0;
    q->rows = target_rows;
    q->dm = dm;
    q->probe_every = PROBE_MIN;
    smp_rng_seed(&q->rng, sp->seed ^ 0x5bd1e9955bd1e995ull);
    size_t rows = (size_t)target_rows;
    q->pid = nd_malloc(rows * sizeof *q->pid);
    q->pp = nd_malloc(rows * sizeof *q->pp);
    q->qd = nd_calloc(rows, sizeof *q->qd);
    if (!q->pid || !q->pp || !q->qd) goto oom;
    if (dm) {
        model_ctx_params cp = model_ctx_default_params();
        cp.n_ctx = p->n_ctx;
        cp.n_threads = p->draft_threads;
        if (!(q->dctx = model_ctx_new(dm->m, &cp, err))) {
            nd_preerr(err, "draft model: ");
            spec_seq_free(q);
            return NULL;
        }
        smp_params dp = *sp;
        dp.repeat_penalty = 1, dp.freq_penalty = 0, dp.presence_penalty = 0, dp.penalty_last_n = 0;
        if (!(q->dsmp = smp_new(&dp, dm->n_common, err)) ||
            !(q->dlogits = nd_malloc((size_t)dm->m->hp.n_vocab * sizeof *q->dlogits))) {
            if (q->dsmp) nd_seterr(err, ND_ENOMEM, "out of memory");
            spec_seq_free(q);
            return NULL;
        }
    }
    return q;
oom:
    spec_seq_free(q);
    nd_seterr(err, ND_ENOMEM, "speculative decoding: out of memory for %lld logits", (long long)target_rows);
    return NULL;
}

/* The draft model's context and logits for a sequence that has none yet. */
static int open_draft_ctx(const spec_params *p, const spec_draft_model *dm, model_ctx **ctx, float **logits,
                          nd_err *err) {
    model_ctx_params cp = model_ctx_default_params();
    cp.n_ctx = p->n_ctx;
    cp.n_threads = p->draft_threads;
    if (!(*ctx = model_ctx_new(dm->m, &cp, err))) return nd_preerr(err, "draft model: ");
    if (!(*logits = nd_malloc((size_t)dm->m->hp.n_vocab * sizeof **logits))) {
        model_ctx_free(*ctx);
        *ctx = NULL;
        return nd_seterr(err, ND_ENOMEM, "out of memory for the draft model's logits");
    }
    return 0;
}

int spec_seq_retarget(spec_seq *q, const spec_params *p, const spec_draft_model *dm, const smp_params *sp,
                      nd_err *err) {
    bool draft = p->kind == SPEC_DRAFT;
    int rc = check_params(p, draft ? dm : NULL, err);
    if (!rc) rc = check_pick(p, sp, err);
    if (!rc && draft && q->dm && q->dm != dm)
        rc = nd_seterr(err, ND_EINVAL, "speculative decoding: this sequence drafts with another model");
    if (rc) return rc;
    spec_la_wait(q); /* the drafter thread reads the parameters and the draft context */
    q->la.valid = false;
    /* everything that can fail first, then commit */
    model_ctx *dctx = NULL;
    float *dlogits = NULL;
    smp_chain *dsmp = NULL;
    if (draft && !q->dctx && (rc = open_draft_ctx(p, dm, &dctx, &dlogits, err))) return rc;
    if (draft) {
        smp_params dp = *sp;
        dp.repeat_penalty = 1, dp.freq_penalty = 0, dp.presence_penalty = 0, dp.penalty_last_n = 0;
        if (!(dsmp = smp_new(&dp, dm->n_common, err))) rc = err ? err->code : ND_EINVAL;
    }
    if (rc) {
        model_ctx_free(dctx);
        nd_free(dlogits);
        smp_free(dsmp);
        return rc;
    }
    if (dctx) {
        q->dctx = dctx;
        q->dlogits = dlogits;
        q->dm = dm;
        q->dkv.n = 0;
    }
    if (dsmp) {
        smp_free(q->dsmp);
        q->dsmp = dsmp;
    }
    if (p->kind != q->p.kind) { /* drafting costs belong to the drafter */
        q->td = q->ts = q->t_sync = 0;
        q->td_n = q->ts_n = 0;
        q->n_sync = 0;
    }
    spec_params np = *p;
    np.n_ctx = q->p.n_ctx, np.draft_threads = q->p.draft_threads; /* those of the context kept */
    if (dctx) np.n_ctx = p->n_ctx, np.draft_threads = p->draft_threads;
    q->p = np;
    q->sp = *sp;
    q->greedy = sp->temp <= 0;
    smp_rng_seed(&q->rng, sp->seed ^ 0x5bd1e9955bd1e995ull);
    q->hist.n = 0;
    q->n_last = 0;
    q->acc_ema = q->tried_ema = 0;
    q->probe_every = PROBE_MIN;
    q->since_probe = q->since_explore = 0;
    q->probing = false;
    spec_seq_reset_stats(q);
    return 0;
}

void spec_seq_free(spec_seq *q) {
    if (!q) return;
    spec_la_free(q); /* first: its thread may be using the draft context */
    model_ctx_free(q->dctx);
    smp_free(q->dsmp);
    nd_free(q->dlogits);
    nd_free(q->dkv.v);
    nd_free(q->hist.v);
    nd_free(q->qid);
    nd_free(q->qp);
    nd_free(q->pid);
    nd_free(q->pp);
    nd_free(q->qd);
    nd_free(q->logits);
    nd_free(q);
}

int spec_seq_begin(spec_seq *q, const int32_t *toks, size_t n, nd_err *err) {
    if (!n || !toks) return nd_seterr(err, ND_EINVAL, "speculative decoding: empty history");
    for (size_t i = 0; i < n; i++)
        if (toks[i] < 0 || toks[i] >= q->rows)
            return nd_seterr(err, ND_EINVAL, "speculative decoding: token %d at %zu out of range", toks[i], i);
    q->hist.n = 0;
    q->n_last = 0;
    return spec_toks_push(&q->hist, toks, n) ? nd_seterr(err, ND_ENOMEM, "out of memory") : 0;
}

const int32_t *spec_seq_tokens(const spec_seq *q, size_t *n) {
    *n = q->hist.n;
    return q->hist.v;
}

const spec_stats *spec_seq_stats(const spec_seq *q) { return &q->st; }

void spec_seq_reset_stats(spec_seq *q) {
    double t1 = q->st.t_target1;
    memset(&q->st, 0, sizeof q->st);
    q->st.t_target1 = t1;
}

/* ------------------------------------------------------- adaptive length */

/* Target seconds for a pass over n tokens: the measured EMA, else a least-squares line
 * through the sizes measured so far, else (one size seen) 10% more per extra token. */
static double target_cost(const spec_seq *q, int n) {
    if (q->tn[n]) return q->tv[n];
    double sw = 0, sx = 0, sy = 0, sxx = 0, sxy = 0;
    int seen = 0, n0 = 0;
    for (int i = 1; i <= SPEC_MAX_DRAFT + 1; i++) {
        if (!q->tn[i]) continue;
        double w = q->tn[i] < 8 ? q->tn[i] : 8;
        sw += w, sx += w * i, sy += w * q->tv[i], sxx += w * i * i, sxy += w * i * q->tv[i];
        seen++, n0 = i;
    }
    if (!seen) return -1;
    if (seen == 1) return q->tv[n0] * (1 + 0.1 * (n - 1)) / (1 + 0.1 * (n0 - 1));
    double den = sw * sxx - sx * sx, b = den > 0 ? (sw * sxy - sx * sy) / den : 0;
    if (b < 0) b = 0;
    double a = (sy - b * sx) / sw, t = a + b * n;
    return t > 0 ? t : q->tv[n0];
}

/* The draft length with the best expected tokens per second; 0 = decode plainly (with a
 * 1-token probe every probe_every steps, backing off while probes fail). */
static int choose_len(spec_seq *q, int kmax) {
    q->probing = false;
    if (!q->p.adaptive || kmax <= 0) return kmax;
    double t1 = target_cost(q, 1);
    if (!q->td_n || t1 <= 0) return kmax; /* nothing measured yet: try the full length */
    double a = (q->acc_ema + 1) / (q->tried_ema + 2); /* prior 1/2 with the weight of 2 tries */
    if (a > 0.995) a = 0.995;
    int best = 0;
    double best_rate = 1 / t1;
    for (int k = 1; k <= kmax; k++) {
        double rate = (1 - pow(a, k + 1)) / (1 - a) / (q->ts + k * q->td + target_cost(q, k + 1));
        if (rate > best_rate) best = k, best_rate = rate;
    }
    if (best > 0) {
        q->since_probe = 0;
        /* The pass costs for lengths never tried are extrapolated from the ones tried; one
         * noisy early sample could make longer passes look dear forever (seen: stuck at
         * k = 1 with 100% acceptance, 1.36x where k ~ 7 gives 1.84x). So while drafts are
         * mostly accepted, every EXPLORE_EVERY steps try twice the length: that measures
         * the cost further out, and the fit corrects itself either way. */
        if (++q->since_explore >= EXPLORE_EVERY && best < kmax && a > 0.5) {
            q->since_explore = 0;
            return 2 * best < kmax ? 2 * best : kmax;
        }
        return best;
    }
    if (++q->since_probe < q->probe_every) return 0;
    q->since_probe = 0;
    q->probing = true;
    return 1;
}

void spec_note_target(spec_seq *q, int n, double secs) {
    if (n < 1 || n > SPEC_MAX_DRAFT + 1 || !(secs >= 0)) return;
    cost_update(&q->tv[n], &q->tn[n], secs);
    q->st.t_target += secs;
    q->st.t_target1 = target_cost(q, 1);
}

/* ---------------------------------------------------------------- drafting */

int spec_draft(spec_seq *q, int max, int32_t *draft, int *n_draft, nd_err *err) {
    *n_draft = 0;
    q->n_last = 0;
    if (!q->hist.n) return nd_seterr(err, ND_EINVAL, "speculative decoding: spec_seq_begin first");
    if (max > q->p.draft_max) max = q->p.draft_max;
    int k = choose_len(q, max);
    if (k <= 0) return 0;
    double t0 = nd_time_s();
    int n = 0, rc = 0;
    const bool async = q->p.kind == SPEC_DRAFT && q->p.draft_async && q->greedy;
    if (q->p.kind == SPEC_NGRAM) {
        n = spec_ngram_lookup(q->hist.v, q->hist.n, q->p.ngram_min, q->p.ngram_max, k, draft);
        for (int i = 0; i < n; i++)
            if (q->p.allow && !q->p.allow(q->p.allow_user, draft, i, draft[i])) n = i;
    } else {
        /* async: start from what the drafter thread has ready, then draft the rest here */
        if (async && (n = spec_la_take(q, k, draft)) > 0) {
            q->st.n_ready++;
            q->t_sync = 0, q->n_sync = 0, q->sync_cold = false;
        }
        if (n < k && (n == 0 || q->la.open) && (rc = spec_model_draft(q, k, draft, &n, err))) return rc;
    }
    if (n < q->p.draft_min) n = 0;
    if (!n && q->p.kind == SPEC_DRAFT) {
        /* the drafter declined (p_min, draft_min) after paying its catch-up: as costly as a
         * rejected token, so it counts as one for the adaptive length */
        q->tried_ema = EMA_ACC * q->tried_ema + 1;
        q->acc_ema *= EMA_ACC;
        if (q->probing) q->probe_every = q->probe_every * 2 < PROBE_MAX ? q->probe_every * 2 : PROBE_MAX;
    }
    double dt = nd_time_s() - t0, sync = 0;
    if (q->p.kind == SPEC_DRAFT) {
        /* a prefill of a new history is not a per-step cost: keep it out of the estimates */
        bool prefill = q->n_sync > 2 * q->p.draft_max + 2 || q->sync_cold;
        sync = q->t_sync;
        if (prefill) q->st.t_prefill += sync;
        else cost_update(&q->ts, &q->ts_n, sync);
        if (prefill) dt -= sync, sync = 0;
    }
    q->st.t_draft += dt;
    double per = (dt - sync) / (n ? n : 1);
    cost_update(&q->td, &q->td_n, per);
    memcpy(q->last, draft, (size_t)n * sizeof *draft);
    q->n_last = n;
    *n_draft = n;
    if (async && n > 0) spec_la_start(q, draft, n); /* runs while the target verifies */
    return 0;
}

/* -------------------------------------------------------------- verification */

int32_t spec_draw(smp_rng *r, const int32_t *ids, const float *p, int64_t n) {
    double sum = 0;
    for (int64_t i = 0; i < n; i++) sum += p[i];
    double u = smp_rng_uniform(r) * sum, cum = 0;
    int64_t last = 0;
    for (int64_t i = 0; i < n; i++) {
        if (p[i] <= 0) continue;
        cum += p[i];
        last = i;
        if (u < cum) return ids[i];
    }
    return ids[last];
}

/* Position i of a sampled draft: accept x with probability min(1, p(x)/q(x)); on
 * rejection *out is drawn from norm(max(0, p - q)). Returns true when x is accepted. */
static bool verify_sampled(spec_seq *q, int i, int64_t np, int32_t x, int32_t *out) {
    float *qd = q->qd;
    bool one_hot = q->p.kind == SPEC_NGRAM;
    if (one_hot) qd[x] = 1;
    else
        for (size_t j = q->qoff[i]; j < q->qoff[i + 1]; j++) qd[q->qid[j]] = q->qp[j];
    double px = 0;
    for (int64_t j = 0; j < np; j++)
        if (q->pid[j] == x) px = q->pp[j];
    bool ok = smp_rng_uniform(&q->rng) * qd[x] < px;
    if (!ok) {
        double left = 0;
        for (int64_t j = 0; j < np; j++) {
            float r = q->pp[j] - qd[q->pid[j]];
            q->pp[j] = r > 0 ? r : 0;
            left += q->pp[j];
        }
        /* p == q up to rounding: the rejection was a rounding artefact, keep x */
        if (!(left > 1e-12)) np = 0;
        *out = np ? spec_draw(&q->rng, q->pid, q->pp, np) : x;
    }
    if (one_hot) qd[x] = 0;
    else
        for (size_t j = q->qoff[i]; j < q->qoff[i + 1]; j++) qd[q->qid[j]] = 0;
    return ok;
}

int spec_verify(spec_seq *q, smp_chain *smp, const float *logits, const int32_t *draft, int n_draft,
                int32_t *out, int *n_out, nd_err *err) {
    *n_out = 0;
    if (n_draft < 0 || n_draft > SPEC_MAX_DRAFT || !q->hist.n)
        return nd_seterr(err, ND_EINVAL, "speculative decoding: bad verification call (%d draft tokens)", n_draft);
    bool need_q = !q->greedy && q->p.kind == SPEC_DRAFT;
    if (need_q && (n_draft != q->n_last || memcmp(draft, q->last, (size_t)n_draft * sizeof *draft)))
        return nd_seterr(err, ND_EINVAL, "speculative decoding: the draft to verify is not the last one proposed");
    for (int i = 0; i < n_draft; i++)
        if (draft[i] < 0 || draft[i] >= q->rows)
            return nd_seterr(err, ND_EINVAL, "speculative decoding: draft token %d out of range", draft[i]);
    int acc = 0, rc = 0;
    for (int i = 0; i <= n_draft; i++) {
        const float *row = logits + (size_t)i * (size_t)q->rows;
        int32_t t = -1;
        bool more;
        if (q->greedy) {
            t = q->p.pick ? q->p.pick(q->p.pick_user, smp, row, i) : smp_sample(smp, row);
            if (t < 0) {
                rc = t;
                break;
            }
            more = i < n_draft && t == draft[i];
        } else {
            int64_t np = smp_dist(smp, row, q->pid, q->pp);
            if (i == n_draft) {
                t = spec_draw(&q->rng, q->pid, q->pp, np);
                more = false;
            } else {
                t = draft[i];
                more = verify_sampled(q, i, np, draft[i], &t);
            }
        }
        smp_accept(smp, t);
        out[(*n_out)++] = t;
        if (!more) break;
        acc++;
    }
    if (spec_toks_push(&q->hist, out, (size_t)*n_out)) return nd_seterr(err, ND_ENOMEM, "out of memory");
    if (rc) { /* the pick's error: the tokens before it stand, the statistics skip the step */
        q->n_last = 0;
        return rc;
    }
    if (acc < n_draft) spec_la_cancel(q); /* a draft token was rejected: the lookahead is moot */
    int tried = acc + (acc < n_draft);
    spec_stats *st = &q->st;
    st->n_steps++;
    st->n_draft_steps += n_draft > 0;
    st->n_drafted += n_draft;
    st->n_accepted += acc;
    st->n_tried += tried;
    st->n_out += *n_out;
    if (n_draft) {
        q->acc_ema = EMA_ACC * q->acc_ema + acc;
        q->tried_ema = EMA_ACC * q->tried_ema + tried;
        if (q->probing) q->probe_every = acc ? PROBE_MIN : (q->probe_every * 2 < PROBE_MAX ? q->probe_every * 2 : PROBE_MAX);
    }
    q->n_last = 0;
    return 0;
}

int spec_step(spec_seq *q, model_ctx *target, smp_chain *smp, int max_new, int32_t *out, int *n_out,
              nd_err *err) {
    *n_out = 0;
    if (!q->hist.n || max_new < 1) return nd_seterr(err, ND_EINVAL, "speculative decoding: bad step");
    int64_t pos = (int64_t)q->hist.n - 1, room = model_ctx_n_ctx(target) - pos;
    if (room < 1) return nd_seterr(err, ND_ERANGE, "context full");
    int64_t kmax = max_new - 1;
    if (kmax > room - 1) kmax = room - 1;
    if (q->logits_k < q->p.draft_max) { /* made on first use: a server slot verifies in its own batch */
        float *l = nd_malloc((size_t)(q->p.draft_max + 1) * (size_t)q->rows * sizeof *l);
        if (!l)
            return nd_seterr(err, ND_ENOMEM, "speculative decoding: out of memory for %d rows of logits",
                             q->p.draft_max + 1);
        nd_free(q->logits);
        q->logits = l;
        q->logits_k = q->p.draft_max;
    }
    int32_t batch[SPEC_MAX_DRAFT + 1];
    int nd = 0;
    int rc = spec_draft(q, (int)(kmax < SPEC_MAX_DRAFT ? kmax : SPEC_MAX_DRAFT), batch + 1, &nd, err);
    if (rc) return rc;
    batch[0] = q->hist.v[pos];
    double t0 = nd_time_s();
    rc = model_forward(target, batch, nd + 1, pos, q->logits, nd ? MODEL_LOGITS_ALL : MODEL_LOGITS_LAST, err);
    if (rc) return rc;
    spec_note_target(q, nd + 1, nd_time_s() - t0);
    return spec_verify(q, smp, q->logits, batch + 1, nd, out, n_out, err);
}
