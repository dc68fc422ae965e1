/* Several sequences in one context (continuous batching): interleaved batches give the
 * same tokens and logits as separate single-sequence runs; bad batches are refused. */
#include "model/model.h"
#include "t.h"

#define NSEQ 3
#define STEPS 12

static const int32_t prompts[NSEQ][4] = {{1, 368, 430, 281}, {1, 270, 431, 0}, {1, 339, 0, 0}};
static const int plen[NSEQ] = {4, 3, 2};

static int argmax(const float *x, int64_t n) {
    int b = 0;
    for (int i = 1; i < n; i++)
        if (x[i] > x[b]) b = i;
    return b;
}

static void test_interleaved_equals_separate(void) {
    const char *fx = t_fixtures();
    if (!fx) T_SKIP("fixtures not found");
    char path[1024];
    snprintf(path, sizeof path, "%s/models/aidreams260K-f32.gguf", fx);
    nd_err err = {0};
    model_t *m = model_load(path, &err);
    T_CHECKF(m != NULL, "%s", err.msg);
    if (!m) return;
    const int64_t V = m->hp.n_vocab;
    int32_t want_tok[NSEQ][STEPS];
    float *ref_logits = nd_malloc(sizeof(float) * NSEQ * STEPS * (size_t)V);
    float *lg = nd_malloc(sizeof(float) * NSEQ * (size_t)V * 4);
    /* separate runs */
    model_ctx_params p = model_ctx_default_params();
    p.n_ctx = 64;
    p.n_threads = 1;
    for (int s = 0; s < NSEQ; s++) {
        model_ctx *c = model_ctx_new(m, &p, &err);
        T_CHECK(c != NULL);
        if (!c) break;
        T_EQ_INT(model_forward(c, prompts[s], plen[s], 0, lg, MODEL_LOGITS_LAST, &err), 0);
        for (int k = 0; k < STEPS; k++) {
            memcpy(ref_logits + ((size_t)s * STEPS + k) * V, lg, sizeof(float) * V);
            want_tok[s][k] = argmax(lg, V);
            T_EQ_INT(model_forward(c, &want_tok[s][k], 1, plen[s] + k, lg, MODEL_LOGITS_LAST, &err), 0);
        }
        model_ctx_free(c);
    }
    /* one context, three sequences: one batch for all prompts, then a token per sequence */
    p.n_seq = NSEQ;
    p.n_threads = 2;
    model_ctx *c = model_ctx_new(m, &p, &err);
    T_CHECKF(c != NULL && model_ctx_n_seq(c) == NSEQ, "%s", err.msg);
    if (c) {
        int32_t tok[16], seq[16];
        int64_t pos[16];
        bool want[16];
        int n = 0;
        for (int s = NSEQ - 1; s >= 0; s--) /* sequences in any order */
            for (int i = 0; i < plen[s]; i++) {
                tok[n] = prompts[s][i];
                seq[n] = s;
                pos[n] = i;
                want[n] = i == plen[s] - 1;
                n++;
            }
        T_EQ_INT(model_forward_batch(c, n, tok, seq, pos, want, lg, &err), 0);
        double worst = 0;
        for (int k = 0; k < STEPS; k++) {
            for (int r = 0; r < NSEQ; r++) { /* logits rows come in batch order: seq 2, 1, 0 at k = 0 */
                int s = k == 0 ? NSEQ - 1 - r : r;
                const float *got = lg + (size_t)r * V, *ref = ref_logits + ((size_t)s * STEPS + k) * V;
                T_EQ_INT(argmax(got, V), want_tok[s][k]);
                for (int64_t v = 0; v < V; v++) {
                    double d = fabs((double)got[v] - ref[v]);
                    if (d > worst) worst = d;
                }
            }
            for (int s = 0; s < NSEQ; s++) {
                tok[s] = want_tok[s][k];
                seq[s] = s;
                pos[s] = plen[s] + k;
                want[s] = true;
            }
            T_EQ_INT(model_forward_batch(c, NSEQ, tok, seq, pos, want, lg, &err), 0);
        }
        printf("  worst |dlogit| batched vs separate: %.3g\n", worst);
        T_CHECK(worst < 1e-3);
        for (int s = 0; s < NSEQ; s++) T_EQ_INT(model_ctx_seq_past(c, s), plen[s] + STEPS);

        /* refused: unknown sequence, a gap, skipping ahead, out of context */
        int32_t t1[2] = {5, 6}, s1[2] = {0, 0}, sbad[1] = {NSEQ};
        int64_t pgap[2] = {3, 5}, pahead[1] = {40}, pfar[1] = {64};
        T_EQ_INT(model_forward_batch(c, 1, t1, sbad, pgap, NULL, NULL, &err), ND_EINVAL);
        T_EQ_INT(model_forward_batch(c, 2, t1, s1, pgap, NULL, NULL, &err), ND_EINVAL);
        T_CHECK(strstr(err.msg, "does not follow") != NULL);
        T_EQ_INT(model_forward_batch(c, 1, t1, s1, pahead, NULL, NULL, &err), ND_EINVAL);
        T_EQ_INT(model_forward_batch(c, 1, t1, s1, pfar, NULL, NULL, &err), ND_ERANGE);
        /* forgetting a sequence and replaying it gives the same first prediction */
        T_EQ_INT(model_ctx_seq_truncate(c, 1, 0, &err), 0);
        T_EQ_INT(model_ctx_seq_past(c, 1), 0);
        int64_t p0[4] = {0, 1, 2, 3};
        int32_t s_one[4] = {1, 1, 1, 1};
        bool w[4] = {false, false, true, false};
        T_EQ_INT(model_forward_batch(c, plen[1], prompts[1], s_one, p0, w, lg, &err), 0);
        T_EQ_INT(argmax(lg, V), want_tok[1][0]);
        T_EQ_INT(model_ctx_seq_past(c, 0), plen[0] + STEPS); /* others untouched */
        model_ctx_free(c);
    }
    nd_free(lg);
    nd_free(ref_logits);
    model_free(m);
}

int main(void) {
    T_RUN(test_interleaved_equals_separate);
    return t_done();
}
