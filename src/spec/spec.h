/* nindub spec: speculative decoding. A cheap drafter proposes the next tokens, the target
 * model scores them all in one batched forward pass, and a verification rule keeps the
 * output exactly what the target alone would produce.
 *
 * Drafters
 *   SPEC_DRAFT  a smaller model with the same token table (spec_vocab_check). It has its own
 *               context (KV cache, threads); the sequence keeps the tokens that cache holds
 *               and re-syncs it before each draft from the longest common prefix with the
 *               accepted tokens (model_forward rewinds), so rejected drafts roll back by
 *               themselves and any change of history (chat prefix reuse) just works.
 *   SPEC_NGRAM  prompt lookup: the longest suffix of the accepted tokens (ngram_max down to
 *               ngram_min tokens) that occurred before; the tokens that followed its most
 *               recent occurrence are the draft. No second model, no cost.
 *
 * Draft length. Drafting stops at draft_max, when the draft model's top probability falls
 * below p_min, and — when adaptive — at the length k that maximizes the expected tokens per
 * unit of time, (1 - a^(k+1)) / (1 - a) / (k * t_draft + T_target(k + 1)), with a the recent
 * per-token acceptance rate and the costs measured as the sequence runs (T_target per
 * batch size). k = 0 means plain decoding; a 1-token probe every few steps keeps the
 * acceptance estimate fresh. That is what bounds the loss when the drafter is useless.
 *
 * Verification (spec_verify)
 *   greedy (temp <= 0): the target chain's own smp_sample at every position; drafts are
 *     accepted while they equal it. Output identical to plain greedy decoding.
 *   sampling: draft x drawn from the drafter's q is accepted with probability
 *     min(1, p(x) / q(x)), else the token is drawn from norm(max(0, p - q)); after a fully
 *     accepted draft one more token is drawn from p. p is the target chain's smp_dist (all of
 *     its penalties and truncations); the n-gram drafter is deterministic (q one-hot), so x
 *     is accepted with probability p(x). Tokens are distributed exactly as plain sampling.
 *   The target chain sees smp_accept for exactly the tokens that are returned, in order.
 *
 * Grammar hook. A grammar stage that lives inside the smp_chain (applied by smp_dist /
 * smp_sample, advanced by smp_accept) is honoured by verification as is: a draft token the
 * grammar forbids has p = 0 and is rejected, and the grammar only ever advances over
 * returned tokens, so it needs no rollback. Drafts may be filtered early by setting
 * spec_params.allow (called for every drafted token with the tokens drafted so far): a
 * drafter that stops at the first forbidden token wastes no verification work. A grammar
 * kept outside the chain (the server's constrained sampling) plugs in through
 * spec_params.pick for greedy verification: the caller's constrained pick replaces
 * smp_sample row by row, so the output is what constrained greedy decoding gives.
 *
 * Use. One spec_draft_model may serve many sequences (read-only after load); a spec_seq is
 * per sequence (a `run`, a chat, a server slot). A server slot batching several sequences
 * calls spec_draft, runs the target on [pending, draft...] itself, then spec_verify and
 * spec_note_target; a single sequence just calls spec_step.
 *
 * Ownership: a spec_seq borrows its spec_draft_model (which must outlive it) and owns the
 * draft context, the history and all scratch. Not thread-safe; one thread per sequence.
 */
#ifndef ND_SPEC_H
#define ND_SPEC_H

#include "core/nd.h"
#include "model/model.h"
#include "sample/sample.h"
#include "tokenizer/tok.h"

#define SPEC_MAX_DRAFT 32 /* upper bound for draft_max */

typedef enum spec_kind {
    SPEC_NONE = 0,
    SPEC_DRAFT = 1, /* draft model */
    SPEC_NGRAM = 2, /* prompt lookup */
} spec_kind;

typedef struct spec_params {
    spec_kind kind;
    int draft_max;      /* longest draft, 1..SPEC_MAX_DRAFT (default 8; n-gram 16) */
    int draft_min;      /* drafts shorter than this are dropped (default 0) */
    float p_min;        /* draft model: stop when its top probability < p_min (default 0.3) */
    bool adaptive;      /* adapt the length to acceptance and costs (default true) */
    int ngram_min;      /* shortest suffix matched (default 2) */
    int ngram_max;      /* longest suffix matched, <= 16 (default 4) */
    int draft_threads;  /* draft model context threads (0: all CPUs) */
    /* Draft model, greedy sequences: draft on a thread of the sequence while the target
     * verifies. After a draft goes to verification, the thread goes on drafting past it as
     * if all of it were accepted; when the target then accepts the whole draft and its
     * bonus token is what the drafter predicted next, the next draft is ready (or partly
     * so). Pays off when the draft model's threads (draft_threads) run on cores the
     * target's do not use. Sampling sequences draft synchronously. */
    bool draft_async;
    int64_t n_ctx;      /* draft model context (0: the model's, at most 4096) */
    /* Optional draft filter (grammar): false stops the draft before tok. */
    bool (*allow)(void *user, const int32_t *drafted, int n, int32_t tok);
    void *allow_user;
    /* Optional greedy pick (a constraint applied outside the chain, e.g. a grammar state the
     * caller keeps): greedy verification takes pick(pick_user, smp, row, i) instead of
     * smp_sample(smp, row) for row i, called in order after smp_accept of the tokens before
     * it. A negative return (ND_E*) ends verification (see spec_verify). Greedy only:
     * spec_seq_new / spec_seq_retarget refuse it with temp > 0. */
    int32_t (*pick)(void *user, smp_chain *smp, const float *row, int i);
    void *pick_user;
} spec_params;

spec_params spec_default_params(spec_kind kind);

/* ----------------------------------------------------------- draft model */

typedef struct spec_draft_model spec_draft_model;

/* 0 if the two vocabularies have the same kind, the same number of tokens and the same
 * text for every token that is not special (control / user-defined / unknown on either
 * side); else ND_EFORMAT naming the first difference. */
int spec_vocab_check(const tok_vocab *target, const tok_vocab *draft, nd_err *err);

/* Loads a draft model and checks its vocabulary against the target's (target_rows = rows
 * of the target's output matrix). Errors: those of model_load / tok_load, ND_EFORMAT. */
spec_draft_model *spec_draft_model_load(const char *path, const tok_vocab *target, int64_t target_rows,
                                        nd_err *err);
void spec_draft_model_free(spec_draft_model *d);
const model_t *spec_draft_model_model(const spec_draft_model *d);

/* ------------------------------------------------------------- sequence */

typedef struct spec_stats {
    int64_t n_steps;     /* verification steps */
    int64_t n_draft_steps; /* steps with a non-empty draft */
    int64_t n_drafted;   /* draft tokens proposed */
    int64_t n_accepted;  /* draft tokens accepted */
    int64_t n_tried;     /* draft tokens verified before the first rejection of each step */
    int64_t n_out;       /* tokens returned (accepted + one per step) */
    int64_t n_ready;     /* draft_async: drafts the drafter thread had ready (no catch-up) */
    double t_draft;      /* seconds spent drafting (incl. the draft model's catch-up with the
                            accepted tokens, not its prefill of a new history) */
    double t_prefill;    /* seconds of the draft model's prefills (> 2 * draft_max tokens) */
    double t_target;     /* seconds in target verification passes (spec_step or noted) */
    double t_target1;    /* estimated seconds of one single-token target pass */
} spec_stats;

typedef struct spec_seq spec_seq;

/* sp: the sampling parameters of the sequence (temp <= 0: greedy verification); the drafter
 * samples with the same temperature and truncation but without penalties. dm: the draft
 * model for SPEC_DRAFT, NULL for SPEC_NGRAM. target_rows: logits per target position.
 * Errors: ND_EINVAL (bad parameters, named), ND_ENOMEM, those of model_ctx_new. */
spec_seq *spec_seq_new(const spec_params *p, const spec_draft_model *dm, const smp_params *sp,
                       int64_t target_rows, nd_err *err);
void spec_seq_free(spec_seq *q);

/* Re-targets a sequence to new work (a server slot taking its next request): new drafter
 * and sampling parameters, an empty history (spec_seq_begin next), fresh statistics and
 * acceptance estimate. Kept: the draft context and the tokens its cache holds (the next
 * draft re-syncs from the longest common prefix, so a shared prompt prefix is not run
 * again), and the measured target costs (drafting costs too unless the kind changes).
 * p->kind SPEC_DRAFT needs dm; the draft context is created on the first such call
 * (p->n_ctx, p->draft_threads; later calls keep it). SPEC_NGRAM ignores dm and leaves an
 * existing draft context idle. On error the sequence is unchanged. */
int spec_seq_retarget(spec_seq *q, const spec_params *p, const spec_draft_model *dm, const smp_params *sp,
                      nd_err *err);

/* Sets the accepted tokens: the target cache holds toks[0..n-1) and toks[n-1] is the
 * pending token (sampled, not yet run through the target). n >= 1. The learned costs and
 * acceptance rate are kept. Errors: ND_EINVAL, ND_ENOMEM. */
int spec_seq_begin(spec_seq *q, const int32_t *toks, size_t n, nd_err *err);
/* Accepted tokens so far (the history). */
const int32_t *spec_seq_tokens(const spec_seq *q, size_t *n);

/* Proposes up to max (and at most draft_max, or the adaptive length) tokens continuing the
 * history into draft[]. *n_draft may be 0 (no match, low confidence, adaptive pause). */
int spec_draft(spec_seq *q, int max, int32_t *draft, int *n_draft, nd_err *err);

/* Verifies a draft against the target's logits rows [n_draft + 1][target_rows] for the
 * pending token and the draft tokens (row i predicts the token after draft[i - 1]).
 * Writes 1..n_draft + 1 tokens to out (accepted drafts, then a correction or bonus token),
 * calls smp_accept on smp for each, appends them to the history (the last one becomes
 * pending) and updates the statistics. The draft must be the last spec_draft's output.
 * When a spec_params.pick returns an error, the tokens verified before it are still
 * returned (*n_out may be 0), accepted and in the history, and its code is returned (err
 * is left alone: the pick reports its own message). */
int spec_verify(spec_seq *q, smp_chain *smp, const float *logits, const int32_t *draft, int n_draft,
                int32_t *out, int *n_out, nd_err *err);
/* Records how long a target pass over n tokens took (for the adaptive length). */
void spec_note_target(spec_seq *q, int n, double secs);

/* One speculative step on target (whose cache holds the history but the pending token):
 * draft, run [pending, draft...] in one pass, verify. max_new >= 1 bounds the tokens
 * returned; the draft is also bounded by the room left in target's context (ND_ERANGE
 * when even the pending token does not fit). */
int spec_step(spec_seq *q, model_ctx *target, smp_chain *smp, int max_new, int32_t *out, int *n_out,
              nd_err *err);

const spec_stats *spec_seq_stats(const spec_seq *q);
void spec_seq_reset_stats(spec_seq *q);
/* Expected speedup over plain decoding of drafting k tokens with per-token acceptance a at
 * draft/target cost ratio c: (1 - a^(k+1)) / ((1 - a)(k c + 1)). */
double spec_expected_speedup(double a, double k, double c);

#endif
