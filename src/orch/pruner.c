/* orch pruner: BM25 over the given chunks, top-k within a token budget. See pruner.h. */
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "orch/pruner.h"
#include "orch/text.h"

#define TOKF (ORCH_TOK_STOP | ORCH_TOK_STEM)

void orch_prune_result_free(orch_prune_result *r) {
    if (!r) return;
    nd_free(r->scores);
    nd_free(r->order);
    nd_free(r->tokens);
    nd_free(r->keep);
    memset(r, 0, sizeof *r);
}

static int chunk_tokens(const orch_prune_opts *o, const char *s, size_t n, size_t *out, nd_err *err) {
    if (!o->vocab) {
        *out = (n + 3) / 4;
        return 0;
    }
    int32_t *ids = NULL;
    size_t nt = 0;
    int rc = tok_encode(o->vocab, s, n, false, false, &ids, &nt, err);
    nd_free(ids);
    *out = nt;
    return rc;
}

/* stable sort of indices by descending score: merge sort on a scratch array */
static void sort_order(size_t *v, size_t *tmp, size_t n, const double *sc) {
    if (n < 2) return;
    size_t h = n / 2;
    sort_order(v, tmp, h, sc);
    sort_order(v + h, tmp, n - h, sc);
    size_t i = 0, j = h, k = 0;
    while (i < h && j < n) tmp[k++] = sc[v[j]] > sc[v[i]] ? v[j++] : v[i++];
    while (i < h) tmp[k++] = v[i++];
    while (j < n) tmp[k++] = v[j++];
    memcpy(v, tmp, n * sizeof *v);
}

static int cmp_size(const void *a, const void *b) {
    size_t x = *(const size_t *)a, y = *(const size_t *)b;
    return x < y ? -1 : x > y;
}

int orch_prune(const char *question, size_t qlen, const char *const *chunks, const size_t *lens,
               size_t n, const orch_prune_opts *opts, orch_prune_result *res, nd_err *err) {
    if (!res || (!question && qlen) || (n && (!chunks || !lens)))
        return nd_seterr(err, ND_EINVAL, "prune: NULL argument");
    memset(res, 0, sizeof *res);
    orch_prune_opts o = opts ? *opts : (orch_prune_opts){0};
    if (o.k1 <= 0) o.k1 = 1.2;
    if (o.b <= 0) o.b = 0.75;
    if (n > ORCH_PRUNE_MAX_CHUNKS)
        return nd_seterr(err, ND_ERANGE, "prune: %zu context chunks, the limit is %d", n, ORCH_PRUNE_MAX_CHUNKS);
    uint64_t total = 0;
    for (size_t i = 0; i < n; i++) {
        if (!chunks[i] && lens[i]) return nd_seterr(err, ND_EINVAL, "prune: chunk %zu is NULL", i);
        if (!nd_add_ok(total, lens[i], &total) || total > ORCH_PRUNE_MAX_BYTES)
            return nd_seterr(err, ND_ERANGE, "prune: context chunks exceed %u bytes in total", ORCH_PRUNE_MAX_BYTES);
    }
    orch_dict d = {0};
    orch_bag q = {0}, *bags = n ? nd_calloc(n, sizeof *bags) : NULL;
    uint32_t *df = NULL;
    size_t *tmp = NULL;
    int rc = 0;
    res->n = n;
    res->scores = nd_calloc(n ? n : 1, sizeof *res->scores);
    res->order = nd_calloc(n ? n : 1, sizeof *res->order);
    res->tokens = nd_calloc(n ? n : 1, sizeof *res->tokens);
    res->keep = nd_calloc(n ? n : 1, sizeof *res->keep);
    tmp = nd_calloc(n ? n : 1, sizeof *tmp);
    if ((n && !bags) || !res->scores || !res->order || !res->tokens || !res->keep || !tmp) {
        rc = nd_seterr(err, ND_ENOMEM, "prune: out of memory");
        goto done;
    }
    /* the question's terms define the dictionary; chunk terms outside it do not matter */
    if (orch_bag_build(&q, &d, true, question, qlen, TOKF)) {
        rc = nd_seterr(err, ND_ENOMEM, "prune: out of memory");
        goto done;
    }
    df = nd_calloc(d.n ? d.n : 1, sizeof *df);
    if (!df) {
        rc = nd_seterr(err, ND_ENOMEM, "prune: out of memory");
        goto done;
    }
    double avgdl = 0;
    for (size_t i = 0; i < n; i++) {
        if (orch_bag_build(&bags[i], &d, false, chunks[i], lens[i], TOKF)) {
            rc = nd_seterr(err, ND_ENOMEM, "prune: out of memory");
            goto done;
        }
        for (size_t j = 0; j < bags[i].n; j++) df[bags[i].id[j]]++;
        avgdl += (double)bags[i].total;
        if ((rc = chunk_tokens(&o, chunks[i], lens[i], &res->tokens[i], err))) goto done;
    }
    avgdl = n ? avgdl / (double)n : 1;
    if (avgdl <= 0) avgdl = 1;
    for (size_t i = 0; i < n; i++) {
        double s = 0, dl = (double)bags[i].total;
        for (size_t j = 0; j < q.n; j++) {
            uint32_t t = q.id[j];
            double tf = orch_bag_count(&bags[i], t);
            if (tf == 0) continue;
            double idf = log(1.0 + ((double)n - df[t] + 0.5) / (df[t] + 0.5));
            s += q.cnt[j] * idf * tf * (o.k1 + 1) / (tf + o.k1 * (1 - o.b + o.b * dl / avgdl));
        }
        res->scores[i] = s;
        res->order[i] = i;
    }
    sort_order(res->order, tmp, n, res->scores);
    for (size_t r = 0; r < n; r++) {
        size_t i = res->order[r];
        if (o.k && res->n_keep >= o.k) break;
        if (res->scores[i] <= 0 && !o.keep_unmatched) break;
        if (o.budget_tokens && res->tokens_kept + res->tokens[i] > o.budget_tokens) continue;
        res->keep[res->n_keep++] = i;
        res->tokens_kept += res->tokens[i];
    }
    qsort(res->keep, res->n_keep, sizeof *res->keep, cmp_size);
done:
    for (size_t i = 0; bags && i < n; i++) orch_bag_free(&bags[i]);
    nd_free(bags);
    orch_bag_free(&q);
    orch_dict_free(&d);
    nd_free(df);
    nd_free(tmp);
    if (rc) orch_prune_result_free(res);
    return rc;
}
