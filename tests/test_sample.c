/* Sampler tests: greedy, determinism, distribution sanity, each truncation stage,
 * penalties, parameter validation. */
#include <math.h>

#include "sample/sample.h"
#include "t.h"

static smp_chain *chain(smp_params p, int64_t n) {
    nd_err err = {0};
    smp_chain *s = smp_new(&p, n, &err);
    if (!s) fprintf(stderr, "  smp_new: %s\n", err.msg);
    return s;
}

static smp_params plain(float temp) {
    smp_params p = smp_default_params();
    p.temp = temp;
    p.top_k = 0;
    p.top_p = 1.0f;
    p.min_p = 0.0f;
    return p;
}

static void test_greedy(void) {
    float l[6] = {0.1f, 2.0f, -1.0f, 5.0f, 4.9f, NAN};
    smp_chain *s = chain(plain(0), 6);
    T_CHECK(s != NULL);
    if (!s) return;
    for (int i = 0; i < 5; i++) T_EQ_INT(smp_sample(s, l), 3);
    smp_free(s);
}

static void test_rng(void) {
    smp_rng a, b;
    smp_rng_seed(&a, 42);
    smp_rng_seed(&b, 42);
    for (int i = 0; i < 100; i++) T_CHECK(smp_rng_next(&a) == smp_rng_next(&b));
    smp_rng_seed(&b, 43);
    T_CHECK(smp_rng_next(&a) != smp_rng_next(&b));
    double mean = 0;
    for (int i = 0; i < 100000; i++) {
        double u = smp_rng_uniform(&a);
        T_CHECK(u >= 0 && u < 1);
        mean += u;
    }
    T_NEAR(mean / 100000, 0.5, 0.01);
}

/* Same seed and logits -> the same tokens; another seed -> a different sequence. */
static void test_determinism(void) {
    enum { V = 1000, N = 200 };
    static float l[V];
    unsigned long long st = 5;
    for (int i = 0; i < V; i++) l[i] = t_rand_f(&st) * 3;
    smp_params p = smp_default_params();
    p.top_k = 0;
    p.seed = 1234;
    p.repeat_penalty = 1.1f;
    int a[N], b[N], c[N];
    smp_chain *s = chain(p, V);
    T_CHECK(s != NULL);
    if (!s) return;
    for (int i = 0; i < N; i++) smp_accept(s, a[i] = smp_sample(s, l));
    smp_reset(s);
    for (int i = 0; i < N; i++) smp_accept(s, b[i] = smp_sample(s, l));
    smp_free(s);
    p.seed = 99;
    s = chain(p, V);
    for (int i = 0; i < N; i++) smp_accept(s, c[i] = smp_sample(s, l));
    smp_free(s);
    int same = 0, diff = 0;
    for (int i = 0; i < N; i++) {
        same += a[i] == b[i];
        diff += a[i] != c[i];
    }
    T_EQ_INT(same, N);
    T_CHECK(diff > N / 2);
}

/* Frequencies follow softmax(logits / temp). */
static void test_distribution(void) {
    float l[4] = {logf(0.5f), logf(0.3f), logf(0.15f), logf(0.05f)};
    smp_params p = plain(1.0f);
    p.seed = 7;
    smp_chain *s = chain(p, 4);
    T_CHECK(s != NULL);
    if (!s) return;
    int cnt[4] = {0};
    const int N = 40000;
    for (int i = 0; i < N; i++) cnt[smp_sample(s, l)]++;
    T_NEAR(cnt[0] / (double)N, 0.5, 0.015);
    T_NEAR(cnt[1] / (double)N, 0.3, 0.015);
    T_NEAR(cnt[2] / (double)N, 0.15, 0.015);
    T_NEAR(cnt[3] / (double)N, 0.05, 0.01);
    smp_free(s);
    /* temperature 0.5 squares the odds: p ~ (0.5^2, 0.3^2, ...) normalized */
    p.temp = 0.5f;
    s = chain(p, 4);
    memset(cnt, 0, sizeof cnt);
    for (int i = 0; i < N; i++) cnt[smp_sample(s, l)]++;
    double z = 0.25 + 0.09 + 0.0225 + 0.0025;
    T_NEAR(cnt[0] / (double)N, 0.25 / z, 0.015);
    T_NEAR(cnt[1] / (double)N, 0.09 / z, 0.015);
    smp_free(s);
}

/* Each truncation stage removes exactly what it should. */
static void test_truncation(void) {
    float l[5] = {logf(0.4f), logf(0.3f), logf(0.15f), logf(0.1f), logf(0.05f)};
    const int N = 5000;
    struct {
        int top_k;
        float top_p, min_p;
        int allowed; /* tokens [0, allowed) may appear, all of them do */
    } cases[] = {
        {1, 1.0f, 0.0f, 1}, {2, 1.0f, 0.0f, 2}, {0, 0.65f, 0.0f, 2}, {0, 0.7f, 0.0f, 2},
        {0, 0.71f, 0.0f, 3}, {0, 1.0f, 0.3f, 3}, {0, 1.0f, 0.7f, 2}, {3, 0.5f, 0.0f, 2},
    };
    for (size_t k = 0; k < sizeof cases / sizeof cases[0]; k++) {
        smp_params p = plain(1.0f);
        p.top_k = cases[k].top_k;
        p.top_p = cases[k].top_p;
        p.min_p = cases[k].min_p;
        p.seed = k;
        smp_chain *s = chain(p, 5);
        if (!s) continue;
        int seen[5] = {0};
        for (int i = 0; i < N; i++) seen[smp_sample(s, l)]++;
        for (int t = 0; t < 5; t++)
            T_CHECKF((seen[t] > 0) == (t < cases[k].allowed), "case %zu token %d seen %d", k, t,
                     seen[t]);
        smp_free(s);
    }
}

/* A large vocabulary exercises the partial sort: the nucleus stays exact. */
static void test_large_vocab(void) {
    enum { V = 50000 };
    static float l[V];
    unsigned long long st = 11;
    for (int i = 0; i < V; i++) l[i] = t_rand_f(&st) * 0.5f; /* flat: nucleus > 256 tokens */
    l[777] = 12.0f; /* one dominant token */
    smp_params p = plain(1.0f);
    p.top_p = 0.9f;
    smp_chain *s = chain(p, V);
    if (!s) return;
    int hit = 0;
    for (int i = 0; i < 200; i++) hit += smp_sample(s, l) == 777;
    smp_free(s);
    /* p(777) = e^12 / (e^12 + ~50000 * e^0) ~ 0.77 < 0.9: the nucleus includes others */
    T_CHECK(hit > 100 && hit < 200);
    p.top_p = 0.5f; /* now 777 alone is the nucleus */
    s = chain(p, V);
    hit = 0;
    for (int i = 0; i < 200; i++) hit += smp_sample(s, l) == 777;
    T_EQ_INT(hit, 200);
    smp_free(s);
    p.top_p = 1.0f;
    p.top_k = 300;
    s = chain(p, V);
    for (int i = 0; i < 50; i++) {
        int t = smp_sample(s, l);
        int rank = 0;
        for (int j = 0; j < V; j++) rank += l[j] > l[t];
        T_CHECK(rank < 300);
    }
    smp_free(s);
}

static void test_penalties(void) {
    float l[3] = {2.0f, 1.9f, -1.0f};
    smp_params p = plain(0);
    p.repeat_penalty = 1.5f;
    p.penalty_last_n = 2;
    smp_chain *s = chain(p, 3);
    if (!s) return;
    T_EQ_INT(smp_sample(s, l), 0);
    smp_accept(s, 0); /* 2.0 / 1.5 < 1.9 */
    T_EQ_INT(smp_sample(s, l), 1);
    smp_accept(s, 1);
    smp_accept(s, 1); /* window of 2 now holds only token 1: token 0 is free again */
    T_EQ_INT(smp_sample(s, l), 0);
    smp_free(s);
    /* frequency penalty grows with the count, presence does not */
    p = plain(0);
    p.freq_penalty = 0.06f;
    s = chain(p, 3);
    smp_accept(s, 0);
    T_EQ_INT(smp_sample(s, l), 0); /* 1.94 > 1.9 */
    smp_accept(s, 0);
    T_EQ_INT(smp_sample(s, l), 1); /* 1.88 < 1.9 */
    smp_free(s);
    p = plain(0);
    p.presence_penalty = 0.05f;
    s = chain(p, 3);
    smp_accept(s, 0);
    smp_accept(s, 0);
    smp_accept(s, 0);
    T_EQ_INT(smp_sample(s, l), 0); /* 1.95 > 1.9 regardless of the count */
    smp_free(s);
    /* a negative logit gets multiplied (more negative) */
    float l2[2] = {-1.0f, -1.2f};
    p = plain(0);
    p.repeat_penalty = 1.3f;
    s = chain(p, 2);
    smp_accept(s, 0);
    T_EQ_INT(smp_sample(s, l2), 1);
    smp_free(s);
}

static void test_invalid(void) {
    nd_err err = {0};
    smp_params p = smp_default_params();
    p.top_p = 0;
    T_CHECK(smp_new(&p, 10, &err) == NULL);
    T_EQ_INT(err.code, ND_EINVAL);
    p = smp_default_params();
    p.temp = NAN;
    T_CHECK(smp_new(&p, 10, &err) == NULL);
    p = smp_default_params();
    T_CHECK(smp_new(&p, 0, &err) == NULL);
    smp_chain *s = smp_new(&p, 4, &err);
    T_CHECK(s != NULL);
    float inf[4] = {-INFINITY, -INFINITY, -INFINITY, -INFINITY};
    int t = s ? smp_sample(s, inf) : 0;
    T_CHECK(t >= 0 && t < 4);
    smp_accept(s, -5); /* ignored */
    smp_accept(s, 4);
    smp_free(s);
    for (long k = 0; k < 5; k++) { /* allocation failures are clean */
        nd_alloc_fail_after(k);
        s = smp_new(&p, 100, &err);
        nd_alloc_fail_after(-1);
        if (s) {
            smp_free(s);
            break;
        }
        T_EQ_INT(err.code, ND_ENOMEM);
    }
}

int main(void) {
    T_RUN(test_greedy);
    T_RUN(test_rng);
    T_RUN(test_determinism);
    T_RUN(test_distribution);
    T_RUN(test_truncation);
    T_RUN(test_large_vocab);
    T_RUN(test_penalties);
    T_RUN(test_invalid);
    return t_done();
}
