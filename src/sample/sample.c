/* Sampler chain: penalties, top-k, top-p, min-p, temperature, seeded draw. */
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "sample/sample.h"

typedef struct smp_cand {
    int32_t id;
    float logit;
    float p;
} smp_cand;

struct smp_chain {
    smp_params p;
    int64_t n_vocab;
    smp_rng rng;
    smp_cand *cand;   /* [n_vocab] working set */
    int32_t *count;   /* [n_vocab] occurrences in the window (zero between calls) */
    int32_t *hist;    /* ring of the last penalty_last_n accepted tokens */
    int32_t n_hist, hist_pos;
};

smp_params smp_default_params(void) {
    return (smp_params){.temp = 0.8f, .top_k = 40, .top_p = 0.95f, .min_p = 0.05f,
                        .repeat_penalty = 1.0f, .freq_penalty = 0.0f,
                        .presence_penalty = 0.0f, .penalty_last_n = 64, .seed = 0};
}

/* ------------------------------------------------------------------ RNG */

static uint64_t splitmix64(uint64_t *x) {
    uint64_t z = (*x += 0x9E3779B97F4A7C15ull);
    z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9ull;
    z = (z ^ (z >> 27)) * 0x94D049BB133111EBull;
    return z ^ (z >> 31);
}

void smp_rng_seed(smp_rng *r, uint64_t seed) {
    for (int i = 0; i < 4; i++) r->s[i] = splitmix64(&seed);
}

static inline uint64_t rotl(uint64_t x, int k) { return (x << k) | (x >> (64 - k)); }

uint64_t smp_rng_next(smp_rng *r) {
    uint64_t *s = r->s;
    const uint64_t result = rotl(s[1] * 5, 7) * 9, t = s[1] << 17;
    s[2] ^= s[0];
    s[3] ^= s[1];
    s[1] ^= s[2];
    s[0] ^= s[3];
    s[2] ^= t;
    s[3] = rotl(s[3], 45);
    return result;
}

double smp_rng_uniform(smp_rng *r) { return (double)(smp_rng_next(r) >> 11) * 0x1.0p-53; }

/* ------------------------------------------------------------ lifecycle */

smp_chain *smp_new(const smp_params *pp, int64_t n_vocab, nd_err *err) {
    smp_params p = pp ? *pp : smp_default_params();
    if (n_vocab < 1 || n_vocab > INT32_MAX) {
        nd_seterr(err, ND_EINVAL, "sampler: vocabulary size %lld out of range", (long long)n_vocab);
        return NULL;
    }
    if (isnan(p.temp) || isnan(p.top_p) || isnan(p.min_p) || !(p.top_p > 0) ||
        !(p.repeat_penalty > 0) || !isfinite(p.freq_penalty) || !isfinite(p.presence_penalty) ||
        p.penalty_last_n < 0 || p.penalty_last_n > (1 << 20) || p.min_p > 1) {
        nd_seterr(err, ND_EINVAL, "sampler: invalid parameters (temp %g, top_p %g in (0,1], "
                  "min_p %g in [0,1], repeat_penalty %g > 0, penalty_last_n %d >= 0)",
                  (double)p.temp, (double)p.top_p, (double)p.min_p, (double)p.repeat_penalty,
                  p.penalty_last_n);
        return NULL;
    }
    smp_chain *s = nd_calloc(1, sizeof *s);
    if (!s) goto oom;
    s->p = p;
    s->n_vocab = n_vocab;
    s->cand = nd_malloc((size_t)n_vocab * sizeof *s->cand);
    s->count = nd_calloc((size_t)n_vocab, sizeof *s->count);
    s->hist = nd_malloc((size_t)(p.penalty_last_n ? p.penalty_last_n : 1) * sizeof *s->hist);
    if (!s->cand || !s->count || !s->hist) goto oom;
    smp_rng_seed(&s->rng, p.seed);
    return s;
oom:
    smp_free(s);
    nd_seterr(err, ND_ENOMEM, "sampler: out of memory for %lld candidates", (long long)n_vocab);
    return NULL;
}

void smp_free(smp_chain *s) {
    if (!s) return;
    nd_free(s->cand);
    nd_free(s->count);
    nd_free(s->hist);
    nd_free(s);
}

void smp_reset(smp_chain *s) {
    s->n_hist = s->hist_pos = 0;
    smp_rng_seed(&s->rng, s->p.seed);
}

void smp_accept(smp_chain *s, int32_t token) {
    if (token < 0 || token >= s->n_vocab || s->p.penalty_last_n == 0) return;
    s->hist[s->hist_pos] = token;
    s->hist_pos = (s->hist_pos + 1) % s->p.penalty_last_n;
    if (s->n_hist < s->p.penalty_last_n) s->n_hist++;
}

/* ------------------------------------------------------------- stages */

static void apply_penalties(smp_chain *s) {
    const smp_params *p = &s->p;
    if (!s->n_hist ||
        (p->repeat_penalty == 1.0f && p->freq_penalty == 0.0f && p->presence_penalty == 0.0f))
        return;
    for (int i = 0; i < s->n_hist; i++) s->count[s->hist[i]]++;
    for (int i = 0; i < s->n_hist; i++) {
        int32_t t = s->hist[i];
        int32_t c = s->count[t];
        if (!c) continue; /* already applied for this token */
        float *l = &s->cand[t].logit;
        *l = *l > 0 ? *l / p->repeat_penalty : *l * p->repeat_penalty;
        *l -= (float)c * p->freq_penalty + p->presence_penalty;
        s->count[t] = 0;
    }
}

static int cmp_cand_desc(const void *a, const void *b) {
    const smp_cand *x = a, *y = b;
    if (x->logit != y->logit) return x->logit < y->logit ? 1 : -1;
    return x->id < y->id ? -1 : x->id > y->id; /* deterministic order on ties */
}

/* Moves the k largest candidates to the front (unordered), k < n. Quickselect. */
static void select_top(smp_cand *c, int64_t n, int64_t k) {
    int64_t lo = 0, hi = n - 1;
    while (lo < hi) {
        smp_cand pivot = c[lo + (hi - lo) / 2];
        int64_t i = lo, j = hi;
        while (i <= j) {
            while (cmp_cand_desc(&c[i], &pivot) < 0) i++;
            while (cmp_cand_desc(&c[j], &pivot) > 0) j--;
            if (i <= j) {
                smp_cand t = c[i];
                c[i++] = c[j];
                c[j--] = t;
            }
        }
        if (k - 1 <= j) hi = j;
        else if (k - 1 >= i) lo = i;
        else break;
    }
}

/* Sorts the n candidates descending, cheaply when only the head matters: the first `need`
 * (all when need >= n) end up sorted. */
static void sort_head(smp_cand *c, int64_t n, int64_t need) {
    if (need < n) select_top(c, n, need);
    qsort(c, (size_t)(need < n ? need : n), sizeof *c, cmp_cand_desc);
}

/* p = softmax(logit / temp) over c[0..n); c[0] holds the max. */
static void softmax(smp_cand *c, int64_t n, float temp) {
    double sum = 0;
    for (int64_t i = 0; i < n; i++) {
        c[i].p = expf((c[i].logit - c[0].logit) / temp);
        sum += c[i].p;
    }
    for (int64_t i = 0; i < n; i++) c[i].p = (float)(c[i].p / sum);
}

/* Number of candidates of the sorted, normalized prefix that reach cumulative top_p. */
static int64_t nucleus(const smp_cand *c, int64_t n, float top_p, bool *complete) {
    double cum = 0;
    for (int64_t i = 0; i < n; i++) {
        cum += c[i].p;
        if (cum >= top_p) {
            *complete = true;
            return i + 1;
        }
    }
    *complete = false;
    return n;
}

/* Runs the stages on logits and leaves the candidates the draw chooses from in
 * s->cand[0..n) with their probabilities; returns n. *draw is false when there is nothing
 * to draw (greedy, or every logit -inf): then s->cand[0] is the token. */
static int64_t chain_dist(smp_chain *s, const float *logits, bool *draw) {
    const smp_params *p = &s->p;
    *draw = false;
    int64_t n = s->n_vocab;
    for (int64_t i = 0; i < n; i++) {
        float l = logits[i];
        if (isnan(l)) l = -INFINITY;
        if (l == INFINITY) l = 3.0e38f;
        s->cand[i] = (smp_cand){(int32_t)i, l, 0};
    }
    apply_penalties(s);
    if (p->temp <= 0) {
        int64_t best = 0;
        for (int64_t i = 1; i < n; i++)
            if (s->cand[i].logit > s->cand[best].logit) best = i;
        s->cand[0] = s->cand[best];
        s->cand[0].p = 1;
        return 1;
    }
    smp_cand *c = s->cand;
    if (p->top_k > 0 && p->top_k < n) { /* top-k: keep the k largest */
        select_top(c, n, p->top_k);
        n = p->top_k;
    }
    /* Sort only what the later stages can look at: a head of 256 candidates, widened to
     * all n when the nucleus does not fit in it. */
    int64_t head = n < 256 ? n : 256;
    sort_head(c, n, head);
    if (!isfinite(c[0].logit)) { /* everything is -inf: nothing to draw */
        c[0].p = 1;
        return 1;
    }
    if (p->top_p < 1) {
        double sum = 0, cum = 0;
        for (int64_t i = 0; i < n; i++) sum += exp((double)c[i].logit - c[0].logit);
        int64_t i = 0;
        for (; i < head; i++) {
            c[i].p = (float)(exp((double)c[i].logit - c[0].logit) / sum);
            cum += c[i].p;
            if (cum >= p->top_p) break;
        }
        if (i < head) {
            n = i + 1;
        } else if (head < n) { /* nucleus wider than the head: sort everything */
            sort_head(c, n, n);
            softmax(c, n, 1.0f);
            bool done;
            n = nucleus(c, n, p->top_p, &done);
        }
    }
    if (p->min_p > 0) { /* p_i >= min_p * p_max  <=>  logit_i >= max + log(min_p) */
        const float floor_l = c[0].logit + logf(p->min_p);
        int64_t keep = 1;
        for (int64_t i = 1; i < n; i++) /* the tail past the head may be unsorted */
            if (c[i].logit >= floor_l) c[keep++] = c[i];
        n = keep;
    }
    softmax(c, n, p->temp);
    *draw = true;
    return n;
}

int32_t smp_sample(smp_chain *s, const float *logits) {
    bool draw;
    int64_t n = chain_dist(s, logits, &draw);
    const smp_cand *c = s->cand;
    if (!draw) return c[0].id;
    double u = smp_rng_uniform(&s->rng), cum = 0;
    for (int64_t i = 0; i < n; i++) {
        cum += c[i].p;
        if (u < cum) return c[i].id;
    }
    return c[n - 1].id;
}

int64_t smp_dist(smp_chain *s, const float *logits, int32_t *ids, float *probs) {
    bool draw;
    int64_t n = chain_dist(s, logits, &draw);
    for (int64_t i = 0; i < n; i++) {
        ids[i] = s->cand[i].id;
        probs[i] = s->cand[i].p;
    }
    return n;
}
