/* What spec.c, draft.c and ngram.c share: the sequence state. Not part of the API. */
#ifndef ND_SPEC_INTERNAL_H
#define ND_SPEC_INTERNAL_H

#include <pthread.h>
#include <stdatomic.h>

#include "spec/spec.h"

struct spec_draft_model {
    model_t *m;        /* owns its gguf mapping */
    tok_vocab *vocab;
    int64_t n_common;  /* logit columns both models have: drafts never leave them */
};

/* A growable token array. */
typedef struct spec_toks {
    int32_t *v;
    size_t n, cap;
} spec_toks;

/* The asynchronous drafter (spec_params.draft_async, greedy only): a thread of the sequence
 * that, while the target verifies a draft, goes on drafting past it as if all of it were
 * accepted. While a job runs, the thread owns the draft context, dkv and dlogits; the
 * sequence's own code touches them only after spec_la_wait. */
typedef struct spec_la {
    pthread_t th;
    pthread_mutex_t mu;
    pthread_cond_t cv;
    bool started;             /* thread, mutex and condition variable exist */
    bool busy;                /* a job is queued or running (mu) */
    bool quit;                /* the thread should exit (mu) */
    _Atomic bool stop;        /* the running job should end after its current token */
    spec_toks base;           /* the job's history: accepted tokens + the draft being verified */
    spec_toks toks;           /* what the draft model predicts after base, greedily */
    bool valid;               /* base/toks hold a finished job's result */
    bool open;                /* ... which did not end on a low top probability (p_min) */
} spec_la;

struct spec_seq {
    spec_params p;
    smp_params sp;
    bool greedy;              /* sp.temp <= 0 */
    int64_t rows;             /* target logits per position */
    spec_toks hist;           /* accepted tokens; hist[n-1] is pending */
    smp_rng rng;              /* draws of the drafter and of verification */

    /* draft model (SPEC_DRAFT) */
    const spec_draft_model *dm;
    model_ctx *dctx;
    smp_chain *dsmp;          /* drafter chain: same temperature / truncation, no penalties */
    float *dlogits;           /* [draft rows] */
    spec_toks dkv;            /* tokens the draft cache holds */
    spec_la la;               /* the asynchronous drafter (draft_async) */

    /* the last draft and, for a sampling draft model, its q distributions:
     * position i's pairs are qid/qp[qoff[i] .. qoff[i+1]) */
    int32_t last[SPEC_MAX_DRAFT];
    int n_last;
    int32_t *qid;
    float *qp;
    size_t q_cap;
    size_t qoff[SPEC_MAX_DRAFT + 1];

    /* verification scratch */
    int32_t *pid;             /* [rows] target distribution ids */
    float *pp;                /* [rows] and probabilities */
    float *qd;                /* [rows] dense q of one position, zero between uses */
    float *logits;            /* [(logits_k + 1) * rows] for spec_step (made on its first call) */
    int logits_k;             /* draft tokens logits has room for (0: none yet) */

    /* adaptive length */
    double acc_ema, tried_ema;        /* decayed sums of accepted / tried draft tokens */
    double td;                        /* seconds per drafted token (cost_update) */
    double ts;                        /* seconds of the draft model's catch-up per step */
    int td_n, ts_n;                   /* samples in td, ts */
    double t_sync;                    /* the last draft's catch-up: seconds and tokens */
    int64_t n_sync;
    bool sync_cold;                   /* ... and it was the draft context's first pass */
    double tv[SPEC_MAX_DRAFT + 2];    /* target seconds per pass of n tokens (EMA) */
    int tn[SPEC_MAX_DRAFT + 2];       /* observations per n */
    int probe_every, since_probe;
    int since_explore;                /* drafting steps since a longer draft was tried */
    bool probing;

    spec_stats st;
};

int spec_toks_push(spec_toks *t, const int32_t *v, size_t n);
/* Draws an id with probability p[i] / sum(p) (p[i] >= 0, some > 0). */
int32_t spec_draw(smp_rng *r, const int32_t *ids, const float *p, int64_t n);

/* draft.c: proposes up to k tokens with the draft model into draft[] (*n may be 0). On
 * entry *n is the number of tokens draft[] already holds (0, or for a greedy sequence
 * those the asynchronous drafter had ready): drafting continues after them. */
int spec_model_draft(spec_seq *q, int k, int32_t *draft, int *n, nd_err *err);
/* draft.c, draft_async: the draft the last lookahead already holds for the current
 * history (up to k tokens, filtered by p.allow); 0 tokens when it does not fit. Waits for
 * the running job first. */
int spec_la_take(spec_seq *q, int k, int32_t *draft);
/* Starts drafting past hist + draft[0..n) on the sequence's thread (n >= 1). A failure to
 * start only means no lookahead (the next draft is made synchronously). */
void spec_la_start(spec_seq *q, const int32_t *draft, int n);
/* Asks the running job to end after its current token (its lookahead is of no use). */
void spec_la_cancel(spec_seq *q);
/* Waits for the running job (after asking it to stop); the draft state is the caller's again. */
void spec_la_wait(spec_seq *q);
/* Stops and joins the thread, frees the lookahead. */
void spec_la_free(spec_seq *q);
/* ngram.c: the continuation of the most recent earlier occurrence of the longest suffix of
 * h[0..n) of nmax..nmin tokens, at most k tokens, into draft; returns its length (0: none). */
int spec_ngram_lookup(const int32_t *h, size_t n, int nmin, int nmax, int k, int32_t *draft);

#endif
