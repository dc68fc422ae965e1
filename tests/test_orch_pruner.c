/* orch pruner: BM25 ranking, top-k within a token budget, limits, and nDCG@5 on the labelled
 * code-retrieval set tests/data/orch/pruner_set. */
#include <math.h>

#include "orch/pruner.h"
#include "t.h"

static void test_basics(void) {
    const char *chunks[] = {
        "int parse_header(const char *line) { /* HTTP header parser */ }",
        "def resize_image(path): pass  # thumbnails",
        "function parseHttpHeader(line) { return line.split(':'); }",
        "unrelated prose about gardening and tomatoes",
    };
    size_t lens[4];
    for (int i = 0; i < 4; i++) lens[i] = strlen(chunks[i]);
    orch_prune_result r;
    nd_err err = {0};
    const char *q = "how is the HTTP header parsed?";
    T_EQ_INT(orch_prune(q, strlen(q), chunks, lens, 4, &(orch_prune_opts){.k = 2}, &r, &err), 0);
    T_EQ_INT(r.n_keep, 2);
    T_CHECK(r.n_keep == 2 && r.keep[0] == 0 && r.keep[1] == 2); /* original order */
    T_CHECK(r.scores[3] == 0 && r.scores[1] == 0 && r.scores[0] > 0 && r.scores[2] > 0);
    T_CHECK(r.order[2] == 1 && r.order[3] == 3); /* ties keep the original order */
    T_EQ_INT(r.tokens[0], (lens[0] + 3) / 4);
    orch_prune_result_free(&r);
    /* budget: only the chunks that fit, best first */
    T_EQ_INT(orch_prune(q, strlen(q), chunks, lens, 4, &(orch_prune_opts){.budget_tokens = 16}, &r, &err), 0);
    T_CHECK(r.tokens_kept <= 16 && r.n_keep == 1);
    orch_prune_result_free(&r);
    /* keep_unmatched fills with the rest */
    T_EQ_INT(orch_prune(q, strlen(q), chunks, lens, 4, &(orch_prune_opts){.keep_unmatched = 1}, &r, &err), 0);
    T_EQ_INT(r.n_keep, 4);
    orch_prune_result_free(&r);
    /* empty input, hostile sizes */
    T_EQ_INT(orch_prune("", 0, NULL, NULL, 0, NULL, &r, &err), 0);
    T_EQ_INT(r.n_keep, 0);
    orch_prune_result_free(&r);
    T_EQ_INT(orch_prune(q, strlen(q), chunks, lens, ORCH_PRUNE_MAX_CHUNKS + 1, NULL, &r, &err), ND_ERANGE);
    size_t huge[2] = {SIZE_MAX - 1, 10};
    T_EQ_INT(orch_prune(q, strlen(q), chunks, huge, 2, NULL, &r, &err), ND_ERANGE);
    T_CHECK(r.keep == NULL && r.scores == NULL);
    T_EQ_INT(orch_prune(q, strlen(q), NULL, lens, 2, NULL, &r, &err), ND_EINVAL);
    for (long k = 0; k < 100; k++) { /* allocation failures: clean, no leaks */
        nd_alloc_fail_after(k);
        int rc = orch_prune(q, strlen(q), chunks, lens, 4, NULL, &r, &err);
        nd_alloc_fail_after(-1);
        orch_prune_result_free(&r);
        if (!rc) break;
        T_EQ_INT(rc, ND_ENOMEM);
    }
}

#define MAXC 64

static void test_ndcg(void) {
    char *data;
    size_t len;
    nd_err err = {0};
    T_EQ_INT(nd_read_file("tests/data/orch/pruner_set/chunks.txt", &data, &len, &err), 0);
    if (!data) return;
    char *ids[MAXC];
    const char *chunks[MAXC];
    size_t lens[MAXC], n = 0;
    for (char *p = strstr(data, "=== "); p && n < MAXC;) {
        char *eol = strchr(p, '\n');
        if (!eol) break;
        *eol = 0;
        ids[n] = p + 4;
        chunks[n] = eol + 1;
        char *next = strstr(eol + 1, "\n=== ");
        lens[n] = next ? (size_t)(next + 1 - chunks[n]) : strlen(chunks[n]);
        n++;
        p = next ? next + 1 : NULL;
    }
    char *qdata;
    T_EQ_INT(nd_read_file("tests/data/orch/pruner_set/queries.tsv", &qdata, &len, &err), 0);
    if (!qdata) return;
    int nq = 0, hit1 = 0;
    double sum = 0;
    for (char *p = qdata, *e; p && *p; p = e ? e + 1 : NULL) {
        e = strchr(p, '\n');
        if (e) *e = 0;
        if (*p == '#' || !*p) continue;
        char *tab = strchr(p, '\t');
        if (!tab) continue;
        *tab = 0;
        int grade[MAXC] = {0};
        for (char *g = strtok(tab + 1, ","); g; g = strtok(NULL, ",")) {
            char *colon = strchr(g, ':');
            if (!colon) continue;
            *colon = 0;
            size_t k = 0;
            while (k < n && strcmp(ids[k], g)) k++;
            T_CHECKF(k < n, "query %d names unknown chunk %s", nq + 1, g);
            if (k < n) grade[k] = atoi(colon + 1);
        }
        orch_prune_result r;
        T_EQ_INT(orch_prune(p, strlen(p), chunks, lens, n, &(orch_prune_opts){.k = 5}, &r, &err), 0);
        double dcg = 0, idcg = 0;
        int ideal[MAXC], ni = 0;
        for (size_t k = 0; k < n; k++)
            if (grade[k]) ideal[ni++] = grade[k];
        for (int a = 0; a < ni; a++) /* sort ideal grades descending */
            for (int b = a + 1; b < ni; b++)
                if (ideal[b] > ideal[a]) { int t = ideal[a]; ideal[a] = ideal[b]; ideal[b] = t; }
        for (size_t rank = 0; rank < 5 && rank < n; rank++) {
            dcg += (pow(2, grade[r.order[rank]]) - 1) / log2((double)rank + 2);
            if ((int)rank < ni) idcg += (pow(2, ideal[rank]) - 1) / log2((double)rank + 2);
        }
        hit1 += grade[r.order[0]] == 2;
        if (getenv("ORCH_PRUNER_VERBOSE") && grade[r.order[0]] != 2)
            fprintf(stderr, "  top1 %s for: %s\n", ids[r.order[0]], p);
        sum += idcg > 0 ? dcg / idcg : 0;
        nq++;
        orch_prune_result_free(&r);
    }
    printf("  pruner set: %d queries over %zu chunks, BM25 nDCG@5 %.3f, top-1 accuracy %.3f\n", nq, n, sum / nq,
           (double)hit1 / nq);
    T_CHECK(nq >= 20);
    T_CHECKF(sum / nq >= 0.75, "nDCG@5 %.3f < 0.75", sum / nq);
    nd_free(qdata);
    nd_free(data);
}

int main(void) {
    T_RUN(test_basics);
    T_RUN(test_ndcg);
    return t_done();
}
