/* orch pruner: ranks context chunks against a question with BM25 and keeps the best ones
 * that fit a token budget.
 *
 * Tokens are words and identifiers, with camelCase / snake_case parts (orch/text.h); the
 * collection statistics (document frequency, average length) come from the chunks given.
 * Chunk size in tokens is counted with the model's vocabulary when one is given, else
 * approximated as ceil(bytes / 4).
 */
#ifndef ND_ORCH_PRUNER_H
#define ND_ORCH_PRUNER_H

#include <stddef.h>

#include "core/nd.h"
#include "tokenizer/tok.h"

#define ORCH_PRUNE_MAX_CHUNKS 10000
#define ORCH_PRUNE_MAX_BYTES (64u << 20) /* all chunks together */

typedef struct orch_prune_opts {
    size_t k;                /* keep at most k chunks (0 = no limit) */
    size_t budget_tokens;    /* keep at most this many tokens in total (0 = no limit) */
    double k1, b;            /* BM25 parameters (0 = 1.2 and 0.75) */
    const tok_vocab *vocab;  /* optional: exact token counts */
    int keep_unmatched;      /* also keep chunks sharing no term with the question */
} orch_prune_opts;

typedef struct orch_prune_result {
    double *scores;   /* [n] BM25 score per chunk */
    size_t *order;    /* [n] chunk indices by descending score (ties: original order) */
    size_t *tokens;   /* [n] size of each chunk in tokens */
    size_t *keep;     /* [n_keep] kept chunk indices, in their original order */
    size_t n, n_keep;
    size_t tokens_kept;
} orch_prune_result;

/* Errors: ND_EINVAL (NULL arguments), ND_ERANGE (more than ORCH_PRUNE_MAX_CHUNKS chunks or
 * ORCH_PRUNE_MAX_BYTES bytes), ND_ENOMEM, tokenizer errors when a vocab is given. On failure
 * res is left empty. */
int orch_prune(const char *question, size_t qlen, const char *const *chunks, const size_t *lens,
               size_t n, const orch_prune_opts *opts, orch_prune_result *res, nd_err *err);
void orch_prune_result_free(orch_prune_result *res);

#endif
