/* Sentinel throughput: ~1 MB of mixed text (prose, code, config lines, and a secret or an
 * email every few lines) through scan, scrub and the outbound stream (64-byte chunks).
 * Validates first (restore(scrub(x)) == x), then times; prints a table and JSON lines with
 * MB/s and a checksum of the scrubbed text. Never pass/fail on speed. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "orch/sentinel.h"

static const char *const k_lines[] = {
    "The committee met on Tuesday to review the quarterly figures, which showed a modest rise.\n",
    "static int parse_header(const uint8_t *p, size_t n) { if (n < 16) return -1; return p[0]; }\n",
    "def moving_average(xs, k=3):\n    return [sum(xs[i:i + k]) / k for i in range(len(xs) - k + 1)]\n",
    "  \"resolved\": \"https://registry.npmjs.org/lodash/-/lodash-4.17.21.tgz\", \"version\": \"4.17.21\",\n",
    "request_id=3f2b8c1e-9a4d-4e6f-8b2a-1c3d5e7f9a0b status=200 latency_ms=12 path=/api/v1/items\n",
    "password = \"Wq9!zzTop77\"\n",
    "contact: jana.novak@seznam.cz, +44 20 7946 0958\n",
    "DATABASE_URL=postgres://app:Xy7pq22zz@db.internal:5432/shop\n",
};

static uint64_t fnv(const char *p, size_t n) {
    uint64_t h = 1469598103934665603ull;
    for (size_t i = 0; i < n; i++) h = (h ^ (unsigned char)p[i]) * 1099511628211ull;
    return h;
}

int main(void) {
    nd_buf text = {0};
    unsigned long long s = 1;
    while (text.len < (1u << 20)) {
        s = s * 6364136223846793005ull + 1442695040888963407ull;
        size_t k = (s >> 33) % 8;
        if (k >= 5 && (s >> 40) % 4) k = s % 5; /* secrets in about one line in eight */
        nd_buf_append(&text, k_lines[k], strlen(k_lines[k]));
    }
    nd_err err = {0};
    orch_sentinel *sen = orch_sentinel_new(NULL, &err);
    orch_map *m = orch_map_new(&err);
    if (!sen || !m) {
        fprintf(stderr, "bench_sentinel: %s\n", err.msg);
        return 1;
    }
    nd_buf scrub = {0}, back = {0};
    orch_findings f = {0};
    if (orch_sentinel_scrub(sen, m, text.data, text.len, &scrub, NULL, &err) ||
        orch_sentinel_restore(sen, m, scrub.data, scrub.len, &back, NULL, &err) || back.len != text.len ||
        memcmp(back.data, text.data, text.len)) {
        fprintf(stderr, "bench_sentinel: validation failed %s\n", err.msg);
        return 1;
    }
    double mb = (double)text.len / 1e6, t0 = nd_time_s();
    orch_sentinel_scan(sen, text.data, text.len, &f, &err);
    double t_scan = nd_time_s() - t0;
    scrub.len = 0;
    t0 = nd_time_s();
    orch_sentinel_scrub(sen, m, text.data, text.len, &scrub, NULL, &err);
    double t_scrub = nd_time_s() - t0;
    back.len = 0;
    t0 = nd_time_s();
    orch_outstream *os = orch_outstream_new(sen, m, &err);
    for (size_t i = 0; i < scrub.len; i += 64)
        orch_outstream_push(os, scrub.data + i, scrub.len - i < 64 ? scrub.len - i : 64, &back, &err);
    orch_outstream_finish(os, &back, &err);
    double t_stream = nd_time_s() - t0;
    orch_outstream_free(os);
    printf("%-22s %10s %10s\n", "sentinel (1 MB)", "seconds", "MB/s");
    printf("%-22s %10.3f %10.1f   (%zu findings)\n", "scan", t_scan, mb / t_scan, f.n);
    printf("%-22s %10.3f %10.1f\n", "scrub", t_scrub, mb / t_scrub);
    printf("%-22s %10.3f %10.1f\n", "outbound stream (64B)", t_stream, mb / t_stream);
    printf("{\"bench\":\"sentinel\",\"bytes\":%zu,\"findings\":%zu,\"scan_mbs\":%.2f,\"scrub_mbs\":%.2f,"
           "\"stream_mbs\":%.2f,\"checksum\":\"%016llx\"}\n",
           text.len, f.n, mb / t_scan, mb / t_scrub, mb / t_stream, (unsigned long long)fnv(scrub.data, scrub.len));
    orch_findings_free(&f);
    nd_buf_free(&text);
    nd_buf_free(&scrub);
    nd_buf_free(&back);
    orch_map_free(m);
    orch_sentinel_free(sen);
    return 0;
}
