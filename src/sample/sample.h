/* nindub sample: turn a logits row into the next token.
 *
 * The chain runs in llama.cpp's default order:
 *   penalties (repeat / frequency / presence over the last penalty_last_n accepted tokens)
 *   -> top-k -> top-p -> min-p -> temperature -> draw (seeded RNG)
 * temp <= 0 means greedy: argmax after the penalties (the truncation stages cannot change
 * the argmax). Given the same seed, the same logits and the same accepted tokens, a chain
 * produces the same tokens on every machine (own xoshiro256** RNG; no rand()).
 *
 * Ownership: the chain owns its buffers; one chain per sequence, not thread-safe.
 */
#ifndef ND_SAMPLE_H
#define ND_SAMPLE_H

#include "core/nd.h"

typedef struct smp_params {
    float temp;             /* <= 0: greedy */
    int32_t top_k;          /* <= 0: off */
    float top_p;            /* >= 1: off */
    float min_p;            /* <= 0: off; keep p >= min_p * p_max */
    float repeat_penalty;   /* 1: off; logit > 0 ? logit / r : logit * r */
    float freq_penalty;     /* 0: off; logit -= count * f */
    float presence_penalty; /* 0: off; logit -= (count > 0) * p */
    int32_t penalty_last_n; /* window of accepted tokens the penalties look at; 0: off */
    uint64_t seed;
} smp_params;

/* temp 0.8, top_k 40, top_p 0.95, min_p 0.05, penalties off (window 64), seed 0 */
smp_params smp_default_params(void);

/* xoshiro256** seeded through splitmix64 (exposed for tests and other modules). */
typedef struct smp_rng {
    uint64_t s[4];
} smp_rng;
void smp_rng_seed(smp_rng *r, uint64_t seed);
uint64_t smp_rng_next(smp_rng *r);
double smp_rng_uniform(smp_rng *r); /* [0, 1), 53 random bits */

typedef struct smp_chain smp_chain;

/* Validates the parameters (NaN, negative top_p …: ND_EINVAL). */
smp_chain *smp_new(const smp_params *p, int64_t n_vocab, nd_err *err);
void smp_free(smp_chain *s);
/* Picks a token from logits[n_vocab] (not modified). Non-finite logits are treated as
 * -inf; if every logit is -inf/NaN the result is token 0. */
int32_t smp_sample(smp_chain *s, const float *logits);
/* The distribution smp_sample draws from for these logits (penalties, truncation and
 * temperature applied): writes n >= 1 pairs (ids[i], probs[i]), probabilities summing to 1,
 * and returns n. ids and probs need room for n_vocab entries. Greedy (temp <= 0) gives the
 * argmax with probability 1. Consumes no randomness (speculative decoding draws itself). */
int64_t smp_dist(smp_chain *s, const float *logits, int32_t *ids, float *probs);
/* Records a token as part of the sequence (for the penalty window). Out-of-range ids are
 * ignored. */
void smp_accept(smp_chain *s, int32_t token);
/* Forgets the history and reseeds with the original seed. */
void smp_reset(smp_chain *s);

#endif
