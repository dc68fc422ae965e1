/* nindub serve: the OpenAI-compatible HTTP server (src/serve/). Listens first (so /health
 * can say "loading"), then loads the model; SIGINT/SIGTERM stop it cleanly (exit 0). */
#include <errno.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "core/pool.h"
#include "serve/serve.h"
#include "tools/tools.h"

static volatile sig_atomic_t stop_requested;

static void on_signal(int sig) {
    (void)sig;
    stop_requested = 1;
}

static void usage(FILE *f) {
    fprintf(f,
            "usage: nindub serve -m model.gguf [options]\n"
            "  -m FILE              model (GGUF)\n"
            "  --host ADDR          bind address (default 127.0.0.1; 0.0.0.0 exposes it to the network)\n"
            "  --port N             TCP port (default 8080; 0 = any free port, printed on stderr)\n"
            "  --parallel N         slots = requests generated at once (default 4)\n"
            "  -c N                 context positions PER SLOT (default: the model's, at most 4096);\n"
            "                       the KV cache holds parallel x N positions (llama.cpp divides -c instead)\n"
            "  -t N                 compute threads (default: all CPUs)\n"
            "  -b N                 tokens per engine step, prompt chunks included (default 256)\n"
            "  --api-key KEY        require Authorization: Bearer KEY (all routes but /health)\n"
            "  --alias NAME         model id in the API (default: the file name)\n"
            "  --queue N            requests waiting for a slot before 429 (default 64)\n"
            "  --max-conns N        simultaneous connections (default 128)\n"
            "  --max-body BYTES     request body limit, 413 beyond (default 4194304)\n"
            "  --timeout S          idle connection timeout in seconds (default 30)\n"
            "  --grace S            on SIGINT/SIGTERM, seconds running requests may finish (default 5)\n"
            "  --kv f16|f32         KV cache type (default f16)\n"
            "  -v                   log more\n"
            "testing aids: --test-step-delay-ms N (sleep after each engine step),\n"
            "              --test-load-delay-ms N (sleep before loading the model)\n"
            "endpoints: POST /v1/chat/completions, /v1/completions, /tokenize, /detokenize;\n"
            "           GET /v1/models, /health, /metrics\n");
}

static int num(const char *flag, const char *s, double lo, double hi, double *out) {
    char *end;
    errno = 0;
    double v = strtod(s, &end);
    if (errno || end == s || *end || !(v >= lo && v <= hi)) {
        fprintf(stderr, "nindub serve: %s expects a number in [%g, %g], got '%s'\n", flag, lo, hi, s);
        return -1;
    }
    *out = v;
    return 0;
}

static int parse(int argc, char **argv, srv_params *p, bool *verbose) {
    for (int i = 1; i < argc; i++) {
        const char *a = argv[i];
        if (!strcmp(a, "-h") || !strcmp(a, "--help")) {
            usage(stdout);
            return 1;
        }
        if (!strcmp(a, "-v")) {
            *verbose = true;
            continue;
        }
        if (i + 1 >= argc) {
            fprintf(stderr, "nindub serve: unknown or incomplete option %s\n\n", a);
            usage(stderr);
            return 2;
        }
        const char *v = argv[++i];
        double x = 0;
#define NUM(lo, hi) if (num(a, v, lo, hi, &x)) return 2
        if (!strcmp(a, "-m")) p->model_path = v;
        else if (!strcmp(a, "--host")) p->host = v;
        else if (!strcmp(a, "--port")) { NUM(0, 65535); p->port = (int)x; }
        else if (!strcmp(a, "--parallel") || !strcmp(a, "-np")) { NUM(1, 256); p->n_parallel = (int)x; }
        else if (!strcmp(a, "-c")) { NUM(1, 1 << 24); p->n_ctx = (int64_t)x; }
        else if (!strcmp(a, "-t")) { NUM(1, ND_POOL_MAX_THREADS); p->n_threads = (int)x; }
        else if (!strcmp(a, "-b")) { NUM(1, 65536); p->n_batch = (int)x; }
        else if (!strcmp(a, "--api-key")) p->api_key = v;
        else if (!strcmp(a, "--alias")) p->alias = v;
        else if (!strcmp(a, "--queue")) { NUM(1, 1 << 20); p->max_queue = (int)x; }
        else if (!strcmp(a, "--max-conns")) { NUM(1, 1 << 16); p->max_conns = (int)x; }
        else if (!strcmp(a, "--max-body")) { NUM(1024, 1 << 30); p->max_body = (size_t)x; }
        else if (!strcmp(a, "--timeout")) { NUM(1, 86400); p->timeout_s = (int)x; }
        else if (!strcmp(a, "--grace")) { NUM(0, 86400); p->shutdown_grace = x; }
        else if (!strcmp(a, "--test-step-delay-ms")) { NUM(0, 60000); p->test_step_delay_ms = (int)x; }
        else if (!strcmp(a, "--test-load-delay-ms")) { NUM(0, 60000); p->test_load_delay_ms = (int)x; }
        else if (!strcmp(a, "--kv")) {
            if (!strcmp(v, "f16")) p->kv_type = ND_TYPE_F16;
            else if (!strcmp(v, "f32")) p->kv_type = ND_TYPE_F32;
            else {
                fprintf(stderr, "nindub serve: --kv expects f16 or f32\n");
                return 2;
            }
        } else {
            fprintf(stderr, "nindub serve: unknown option %s\n\n", a);
            usage(stderr);
            return 2;
        }
#undef NUM
    }
    if (!p->model_path) {
        fprintf(stderr, "nindub serve: -m model.gguf is required\n\n");
        usage(stderr);
        return 2;
    }
    return 0;
}

static void wait_for_signal(void) {
    struct timespec ts = {0, 50 * 1000 * 1000};
    while (!stop_requested) nanosleep(&ts, NULL);
}

int tool_serve(int argc, char **argv) {
    srv_params p = srv_default_params();
    bool verbose = false;
    int k = parse(argc, argv, &p, &verbose);
    if (k) return k == 1 ? 0 : k;
    p.log = (nd_logger){nd_log_stderr, NULL, verbose ? ND_LOG_DEBUG : ND_LOG_INFO};

    struct sigaction sa;
    memset(&sa, 0, sizeof sa);
    sa.sa_handler = on_signal;
    sigemptyset(&sa.sa_mask);
    sigaction(SIGINT, &sa, NULL);
    sigaction(SIGTERM, &sa, NULL);
    signal(SIGPIPE, SIG_IGN);

    nd_err err = {0};
    srv_t *s = srv_new(&p, &err);
    if (!s) {
        fprintf(stderr, "nindub serve: %s\n", err.msg);
        return 2;
    }
    if (srv_listen(s, &err)) {
        fprintf(stderr, "nindub serve: %s\n", err.msg);
        srv_free(s);
        return 1;
    }
    fprintf(stderr, "nindub serve: listening on http://%s:%d\n", p.host, srv_port(s));
    fflush(stderr);
    if (srv_load(s, &err)) {
        fprintf(stderr, "nindub serve: loading %s: %s\n", p.model_path, err.msg);
        srv_free(s);
        return 1;
    }
    fprintf(stderr, "nindub serve: ready\n");
    fflush(stderr);
    wait_for_signal();
    fprintf(stderr, "nindub serve: stopping (new connections refused, running requests get %.0f s)\n",
            p.shutdown_grace);
    srv_free(s);
    fprintf(stderr, "nindub serve: stopped\n");
    return 0;
}
