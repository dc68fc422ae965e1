/* libFuzzer target: arbitrary bytes through the sentinel.
 *
 *  1. scrub: no finding's value (4+ bytes) survives in the scrubbed text, once the map's own
 *     placeholders are blanked out (a placeholder may spell part of a value, e.g. PASSWORD_1);
 *  2. outbound: the scrubbed text streamed in chunks (sizes taken from the input) gives the same
 *     bytes as one call, and the restored text holds none of the map's placeholders;
 *  3. when the input holds no '<', restore(scrub(x)) == x.
 * The sentinel is built once (a static in a harness is fine, never in the library). */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "orch/sentinel.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

static orch_sentinel *g_s;

static void blank_placeholders(const orch_map *m, char *t, size_t n) {
    for (size_t i = 0; i < n; i++) {
        if (t[i] != '<') continue;
        for (size_t j = i + 1; j < n && j - i < 64; j++)
            if (t[j] == '>') {
                if (orch_map_lookup(m, t + i, j - i + 1, NULL)) memset(t + i, 1, j - i + 1);
                break;
            }
    }
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
    if (!g_s) {
        orch_sentinel_opts o = orch_sentinel_opts_default();
        o.stream_tail = 16;
        g_s = orch_sentinel_new(&o, NULL);
        if (!g_s) abort();
    }
    if (size < 1) return 0;
    unsigned chunk = data[0] % 37 + 1;
    const char *text = (const char *)data + 1;
    size_t n = size - 1;
    nd_err err = {0};
    orch_map *m = orch_map_new(&err);
    orch_findings f = {0};
    nd_buf scrub = {0}, one = {0}, many = {0};
    if (!m || orch_sentinel_scan(g_s, text, n, &f, &err) || orch_sentinel_scrub(g_s, m, text, n, &scrub, NULL, &err))
        abort();
    char *blank = malloc(scrub.len + 1);
    memcpy(blank, scrub.data ? scrub.data : "", scrub.len);
    blank_placeholders(m, blank, scrub.len);
    for (size_t i = 0; i < f.n; i++) {
        size_t vl = f.v[i].end - f.v[i].start;
        if (vl >= 4 && memmem(blank, scrub.len, text + f.v[i].start, vl)) {
            fprintf(stderr, "finding %zu (%s) survived the scrub\n", i, orch_kind_name(f.v[i].kind));
            abort();
        }
    }
    free(blank);
    if (orch_sentinel_restore(g_s, m, scrub.data, scrub.len, &one, NULL, &err)) abort();
    orch_outstream *os = orch_outstream_new(g_s, m, &err);
    for (size_t pos = 0; pos < scrub.len; pos += chunk) {
        size_t k = scrub.len - pos < chunk ? scrub.len - pos : chunk;
        if (orch_outstream_push(os, scrub.data + pos, k, &many, &err)) abort();
    }
    if (orch_outstream_finish(os, &many, &err)) abort();
    orch_outstream_free(os);
    if (one.len != many.len || memcmp(one.data, many.data, one.len)) {
        fprintf(stderr, "streamed restore differs from one-shot (chunk %u)\n", chunk);
        abort();
    }
    if (!memchr(text, '<', n) && (one.len != n || memcmp(one.data, text, n))) {
        fprintf(stderr, "restore(scrub(x)) != x\n");
        abort();
    }
    nd_buf_free(&scrub);
    nd_buf_free(&one);
    nd_buf_free(&many);
    orch_findings_free(&f);
    orch_map_free(m);
    return 0;
}
