/* A tiny test harness. Each tests/test_<module>.c is one executable:
 *
 *   static void test_roundtrip(void) { T_CHECK(x == 1); T_EQ_INT(a, b); }
 *   int main(void) { T_RUN(test_roundtrip); return t_done(); }
 *
 * Each test prints "ok", "FAIL" or "skip" with its name; t_done() prints the closing
 * "# N passed, N failed, N skipped" line that scripts/run-tests.sh sums, and returns the
 * process exit code (1 if anything failed).
 */
#ifndef ND_TEST_H
#define ND_TEST_H

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static int t_passed, t_failed, t_skipped;
static int t_cur_failed, t_cur_skipped;
static const char *t_cur_name;

#define T_FAILF(...)                                                                   \
    do {                                                                               \
        if (t_cur_failed < 10) {                                                       \
            fprintf(stderr, "  %s:%d: ", __FILE__, __LINE__);                          \
            fprintf(stderr, __VA_ARGS__);                                              \
            fputc('\n', stderr);                                                       \
        }                                                                              \
        t_cur_failed++;                                                                \
    } while (0)

#define T_CHECK(c)                                                                     \
    do {                                                                               \
        if (!(c)) T_FAILF("check failed: %s", #c);                                     \
    } while (0)
#define T_CHECKF(c, ...)                                                               \
    do {                                                                               \
        if (!(c)) T_FAILF(__VA_ARGS__);                                                \
    } while (0)
#define T_EQ_INT(a, b)                                                                 \
    do {                                                                               \
        long long t_a_ = (long long)(a), t_b_ = (long long)(b);                        \
        if (t_a_ != t_b_) T_FAILF("%s == %s: %lld != %lld", #a, #b, t_a_, t_b_);       \
    } while (0)
#define T_EQ_STR(a, b)                                                                 \
    do {                                                                               \
        const char *t_a_ = (a), *t_b_ = (b);                                           \
        if (!t_a_ || !t_b_ || strcmp(t_a_, t_b_) != 0)                                 \
            T_FAILF("%s == %s: \"%s\" != \"%s\"", #a, #b, t_a_ ? t_a_ : "(null)",      \
                    t_b_ ? t_b_ : "(null)");                                           \
    } while (0)
#define T_NEAR(a, b, tol)                                                              \
    do {                                                                               \
        double t_a_ = (double)(a), t_b_ = (double)(b);                                 \
        if (!(fabs(t_a_ - t_b_) <= (tol)))                                             \
            T_FAILF("%s ~ %s: %.9g vs %.9g (tol %g)", #a, #b, t_a_, t_b_, (double)(tol)); \
    } while (0)

/* Mark the current test skipped (with a reason) and return from it. */
#define T_SKIP(...)                                                                    \
    do {                                                                               \
        fprintf(stderr, "  skip reason: ");                                            \
        fprintf(stderr, __VA_ARGS__);                                                  \
        fputc('\n', stderr);                                                           \
        t_cur_skipped = 1;                                                             \
        return;                                                                        \
    } while (0)

#define T_RUN(fn) t_run(#fn, fn)

static inline void t_run(const char *name, void (*fn)(void)) {
    t_cur_name = name;
    t_cur_failed = 0;
    t_cur_skipped = 0;
    fn();
    if (t_cur_failed) {
        t_failed++;
        printf("FAIL %s (%d checks)\n", name, t_cur_failed);
    } else if (t_cur_skipped) {
        t_skipped++;
        printf("skip %s\n", name);
    } else {
        t_passed++;
        printf("ok   %s\n", name);
    }
    fflush(stdout);
}

static inline int t_done(void) {
    printf("# %d passed, %d failed, %d skipped\n", t_passed, t_failed, t_skipped);
    return t_failed ? 1 : 0;
}

/* Fixture folder: $NINDUB_FIXTURES or ../shared/fixtures (relative to the repo root, where
 * tests run). Returns NULL if it does not exist, so tests can T_SKIP. */
#include <sys/stat.h>
static inline const char *t_fixtures(void) {
    const char *p = getenv("NINDUB_FIXTURES");
    if (!p || !*p) p = "../shared/fixtures";
    struct stat st;
    if (stat(p, &st) != 0 || !S_ISDIR(st.st_mode)) return NULL;
    return p;
}

/* Deterministic RNG for tests (xorshift64*). */
static inline unsigned long long t_rand_u64(unsigned long long *s) {
    unsigned long long x = *s ? *s : 0x9E3779B97F4A7C15ull;
    x ^= x >> 12; x ^= x << 25; x ^= x >> 27;
    *s = x;
    return x * 0x2545F4914F6CDD1Dull;
}
static inline float t_rand_f(unsigned long long *s) { /* uniform in [-1, 1) */
    return (float)((t_rand_u64(s) >> 40) * (2.0 / 16777216.0) - 1.0);
}

#endif
