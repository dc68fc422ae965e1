/* Continuous batching pay-off: aggregate generation tokens/s of the server engine with 1
 * busy slot vs 4 (same model, same per-request work). Requests go through the server's
 * own request parser and task queue (no sockets: HTTP costs are not what is measured).
 *
 *   bench_serve [model.gguf] [threads]   default build/models/qwen2.5-0.5b-q4_0.gguf
 *   (make it with: nindub synth --preset qwen2.5-0.5b --type q4_0 -o build/models/qwen2.5-0.5b-q4_0.gguf)
 *
 * Prints one JSON line per configuration and the ratio. Skips (exit 0) without the model. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "serve/srv_internal.h"

enum { N_GEN = 64 };

/* Runs n requests at once; returns aggregate generated tokens/s (wall time). */
static double run(srv_t *s, int n, uint64_t *tokens) {
    srv_task *t[16];
    double t0 = nd_time_s();
    for (int i = 0; i < n; i++) {
        char body[256];
        snprintf(body, sizeof body, "{\"prompt\":\"Request %d: once upon a time\",\"max_tokens\":%d,\"temperature\":0,"
                                    "\"ignore_eos\":true}", i, N_GEN);
        srv_req r;
        srv_apierr e = {0};
        if (srv_req_parse(&r, SRV_EP_COMPLETION, body, strlen(body), &e) || srv_task_new(s, &r, &t[i], &e) ||
            srv_task_submit(s, t[i], &e)) {
            fprintf(stderr, "bench_serve: %s\n", e.msg);
            exit(1);
        }
    }
    uint64_t total = 0;
    pthread_mutex_lock(&s->mu);
    for (int i = 0; i < n; i++) {
        while (!t[i]->done) pthread_cond_wait(&t[i]->cv, &s->mu);
        total += (uint64_t)t[i]->n_gen;
        srv_task_unref_locked(s, t[i]);
    }
    pthread_mutex_unlock(&s->mu);
    *tokens = total;
    return (double)total / (nd_time_s() - t0);
}

int main(int argc, char **argv) {
    const char *path = argc > 1 ? argv[1] : "build/models/qwen2.5-0.5b-q4_0.gguf";
    if (access(path, R_OK) != 0) {
        printf("bench_serve: skipped, %s not found (nindub synth --preset qwen2.5-0.5b --type q4_0 -o %s)\n", path, path);
        return 0;
    }
    srv_params p = srv_default_params();
    p.model_path = path;
    p.n_parallel = 4;
    p.n_ctx = 512;
    p.n_threads = argc > 2 ? atoi(argv[2]) : 0;
    nd_err err = {0};
    srv_t *s = srv_new(&p, &err);
    if (!s || srv_load(s, &err)) {
        fprintf(stderr, "bench_serve: %s\n", err.msg);
        srv_free(s);
        return 1;
    }
    uint64_t tok;
    run(s, 1, &tok); /* warm-up: page in the weights */
    double best[2] = {0, 0};
    const int ns[2] = {1, 4};
    for (int rep = 0; rep < 3; rep++)
        for (int k = 0; k < 2; k++) {
            double tps = run(s, ns[k], &tok);
            if (tps > best[k]) best[k] = tps;
        }
    for (int k = 0; k < 2; k++)
        printf("{\"bench\":\"serve_batching\",\"model\":\"%s\",\"busy_slots\":%d,\"gen_tokens_per_request\":%d,"
               "\"threads\":%d,\"tokens_per_s\":%.2f}\n",
               path, ns[k], N_GEN, model_ctx_n_threads(s->ctx), best[k]);
    printf("serve: 1 slot %.1f tok/s, 4 slots %.1f tok/s aggregate -> %.2fx (target >= 1.8x)\n", best[0], best[1],
           best[1] / best[0]);
    srv_free(s);
    return 0;
}
