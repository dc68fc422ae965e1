/* bench_bandwidth: the decode roofline. Streams a 1 GiB buffer with AVX2 loads (plain
 * SSE2 loads when the CPU lacks AVX2) on 1 and 2 threads and prints the best read GB/s of
 * several passes, as a table and JSON lines. Decode reads every weight once per token, so
 * tokens/s <= this figure / weight bytes.
 *
 * Two buffers: ordinary 4 KiB pages (the file mapping's case) and 2 MiB transparent huge
 * pages (where nindub copies the weights by default). The roofline is the better of the
 * two: the huge-page stream is the faster one on this kind of VM, and decode from copied
 * weights reads through it.
 *
 *   build/release/bench/bench_bandwidth [MiB]     (default 1024)
 */
#include <immintrin.h>
#include <pthread.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "core/nd.h"

static double now_s(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + 1e-9 * (double)ts.tv_nsec;
}

/* The only AVX2 code: a function-level target, called after a cpuid check. */
__attribute__((target("avx2"))) static uint64_t read_avx2(const uint8_t *p, size_t n) {
    __m256i a0 = _mm256_setzero_si256(), a1 = a0, a2 = a0, a3 = a0;
    for (size_t i = 0; i + 128 <= n; i += 128) {
        a0 = _mm256_add_epi64(a0, _mm256_load_si256((const __m256i *)(p + i)));
        a1 = _mm256_add_epi64(a1, _mm256_load_si256((const __m256i *)(p + i + 32)));
        a2 = _mm256_add_epi64(a2, _mm256_load_si256((const __m256i *)(p + i + 64)));
        a3 = _mm256_add_epi64(a3, _mm256_load_si256((const __m256i *)(p + i + 96)));
    }
    const __m256i a = _mm256_xor_si256(_mm256_xor_si256(a0, a1), _mm256_xor_si256(a2, a3));
    uint64_t out[4];
    _mm256_storeu_si256((__m256i *)out, a);
    return out[0] ^ out[1] ^ out[2] ^ out[3];
}

static uint64_t read_sse2(const uint8_t *p, size_t n) {
    __m128i a0 = _mm_setzero_si128(), a1 = a0, a2 = a0, a3 = a0;
    for (size_t i = 0; i + 64 <= n; i += 64) {
        a0 = _mm_add_epi64(a0, _mm_load_si128((const __m128i *)(p + i)));
        a1 = _mm_add_epi64(a1, _mm_load_si128((const __m128i *)(p + i + 16)));
        a2 = _mm_add_epi64(a2, _mm_load_si128((const __m128i *)(p + i + 32)));
        a3 = _mm_add_epi64(a3, _mm_load_si128((const __m128i *)(p + i + 48)));
    }
    const __m128i a = _mm_xor_si128(_mm_xor_si128(a0, a1), _mm_xor_si128(a2, a3));
    uint64_t out[2];
    _mm_storeu_si128((__m128i *)out, a);
    return out[0] ^ out[1];
}

typedef struct job {
    const uint8_t *p;
    size_t n;
    int avx2;
    pthread_barrier_t *bar;
    double t0, t1;
    uint64_t sink;
} job;

static void *worker(void *arg) {
    job *j = arg;
    pthread_barrier_wait(j->bar);
    j->t0 = now_s();
    j->sink = j->avx2 ? read_avx2(j->p, j->n) : read_sse2(j->p, j->n);
    j->t1 = now_s();
    return NULL;
}

/* One pass over buf split across nth threads; returns GB/s (first start to last end). */
static double pass(const uint8_t *buf, size_t n, int nth, int avx2, uint64_t *sink) {
    pthread_t th[8];
    job jobs[8];
    pthread_barrier_t bar;
    pthread_barrier_init(&bar, NULL, (unsigned)nth);
    const size_t slice = (n / (size_t)nth) & ~(size_t)127;
    for (int t = 0; t < nth; t++) {
        jobs[t] = (job){.p = buf + (size_t)t * slice, .n = slice, .avx2 = avx2, .bar = &bar};
        if (t) pthread_create(&th[t], NULL, worker, &jobs[t]);
    }
    worker(&jobs[0]);
    double t0 = jobs[0].t0, t1 = jobs[0].t1;
    for (int t = 0; t < nth; t++) {
        if (t) pthread_join(th[t], NULL);
        if (jobs[t].t0 < t0) t0 = jobs[t].t0;
        if (jobs[t].t1 > t1) t1 = jobs[t].t1;
        *sink ^= jobs[t].sink;
    }
    pthread_barrier_destroy(&bar);
    return (double)slice * nth / (t1 - t0) / 1e9;
}

/* best and median GB/s of 8 passes on 1 and 2 threads */
static void measure(const uint8_t *buf, size_t n, int avx2, uint64_t *sink, double best[2], double med[2]) {
    for (int nth = 1; nth <= 2; nth++) {
        double v[8];
        for (int r = 0; r < 8; r++) v[r] = pass(buf, n, nth, avx2, sink);
        for (int a = 0; a < 8; a++) /* sort */
            for (int b = a + 1; b < 8; b++)
                if (v[b] < v[a]) { double t = v[a]; v[a] = v[b]; v[b] = t; }
        best[nth - 1] = v[7];
        med[nth - 1] = (v[3] + v[4]) / 2;
    }
}

static void fill(uint8_t *buf, size_t n) {
    for (size_t i = 0; i < n; i += 8) { /* touch every page; not all zero */
        uint64_t v = i * 0x9E3779B97F4A7C15ull;
        memcpy(buf + i, &v, 8);
    }
}

int main(int argc, char **argv) {
    size_t mib = argc > 1 ? (size_t)strtoul(argv[1], NULL, 10) : 1024;
    if (mib < 16) mib = 16;
    const size_t n = mib << 20;
    size_t hsize = 0;
    uint8_t *buf = aligned_alloc(64, n);
    uint8_t *hbuf = nd_huge_alloc(n, &hsize); /* where nindub copies the weights */
    if (!buf || !hbuf) {
        fprintf(stderr, "bench_bandwidth: cannot allocate 2 x %zu MiB\n", mib);
        return 1;
    }
    fill(buf, n);
    fill(hbuf, n);
    __builtin_cpu_init();
    const int avx2 = __builtin_cpu_supports("avx2");
    uint64_t sink = 0;
    double b4[2], m4[2], b2[2], m2[2];
    measure(buf, n, avx2, &sink, b4, m4);
    measure(hbuf, n, avx2, &sink, b2, m2);
    printf("streaming read, %zu MiB buffer, %s loads, best of 8 passes\n", mib, avx2 ? "AVX2" : "SSE2");
    printf("%-8s %-6s %10s %10s\n", "threads", "pages", "best GB/s", "median");
    for (int t = 0; t < 2; t++) {
        printf("%-8d %-6s %10.1f %10.1f\n", t + 1, "4k", b4[t], m4[t]);
        printf("%-8d %-6s %10.1f %10.1f\n", t + 1, "2m", b2[t], m2[t]);
    }
    /* "gbps": the roofline (the better page size); per page size in gbps_4k / gbps_2m */
    for (int t = 0; t < 2; t++)
        printf("{\"bench\":\"bandwidth\",\"mib\":%zu,\"loads\":\"%s\",\"threads\":%d,\"gbps\":%.2f,"
               "\"gbps_4k\":%.2f,\"gbps_2m\":%.2f}\n",
               mib, avx2 ? "avx2" : "sse2", t + 1, b4[t] > b2[t] ? b4[t] : b2[t], b4[t], b2[t]);
    printf("checksum %016llx\n", (unsigned long long)sink);
    free(buf);
    nd_huge_free(hbuf, hsize);
    return 0;
}
