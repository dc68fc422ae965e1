/* nindub serve: the OpenAI-compatible HTTP server (src/serve/). Listens first (so /health
 * can say "loading"), then loads the model; SIGINT/SIGTERM stop it cleanly (exit 0). */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "core/pool.h"
#include "serve/serve.h"
#include "tools/gen.h"
#include "tools/tools.h"

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
            "  --weights W          auto|mmap|copy: weights copied into huge pages or left in the\n"
            "                       file mapping (default auto: copy when it fits in free memory)\n"
            "  --no-repack          keep copied weights in GGUF's layout (default: Q4_0, Q5_0, Q8_0\n"
            "                       and Q4_K are interleaved for the AVX-512 decode kernels there)\n"
            "  -v                   log more\n"
            "speculative decoding by default (requests may override with \"speculative\"; same flags as run):\n"
            "  --draft FILE         draft model with the same vocabulary (one per server, own context per slot)\n"
            "  --spec ngram         draft from earlier text (prompt lookup); no second model\n"
            "  --draft-max N        longest draft (default 8; ngram 16; at most 32)\n"
            "  --draft-min N        drop drafts shorter than N (default 0)\n"
            "  --draft-p-min P      stop drafting when the draft model's top probability < P (default 0.3)\n"
            "  --draft-fixed        always draft up to --draft-max (default: adaptive length)\n"
            "  --draft-threads N    draft model threads (default: as -t)\n"
            "  --draft-async        greedy requests: draft on the slot's own thread while the target verifies\n"
            "  --ngram-min N, --ngram-max N   suffix lengths the lookup matches (default 2, 4)\n"
            "testing aids: --test-step-delay-ms N (sleep after each engine step),\n"
            "              --test-load-delay-ms N (sleep before loading the model)\n"
            "endpoints: POST /v1/chat/completions, /v1/completions, /tokenize, /detokenize;\n"
            "           GET /v1/models, /health, /metrics\n");
}

static bool spec_flag(const char *a) {
    return !strcmp(a, "--draft") || !strcmp(a, "--spec") || !strncmp(a, "--draft-", 8) || !strncmp(a, "--ngram-", 8);
}

/* The speculative flags, parsed by run's own parser (tools/gen.c). */
static int spec_finish(const gen_opts *g, srv_params *p) {
    if (g->spec.kind == SPEC_NONE && g->spec_flags) {
        fprintf(stderr, "nindub serve: --draft-* / --ngram-* options need --draft FILE or --spec ngram\n");
        return 2;
    }
    p->spec_kind = g->spec.kind;
    p->draft_path = g->draft;
    p->draft_max = g->spec.draft_max > 0 ? g->spec.draft_max : 0;
    p->draft_min = g->spec.draft_min;
    p->draft_p_min = g->spec.p_min;
    p->draft_fixed = !g->spec.adaptive;
    p->draft_threads = g->spec.draft_threads;
    p->draft_async = g->spec.draft_async;
    p->ngram_min = g->spec.ngram_min;
    p->ngram_max = g->spec.ngram_max;
    return 0;
}

static int parse(int argc, char **argv, srv_params *p, bool *verbose) {
    gen_opts g;
    gen_opts_init(&g);
    for (int i = 1; i < argc; i++) {
        const char *a = argv[i];
        if (spec_flag(a)) {
            if (gen_opts_parse(&g, "serve", argc, argv, &i) < 0) return 2;
            continue;
        }
        if (!strcmp(a, "-h") || !strcmp(a, "--help")) {
            usage(stdout);
            return 1;
        }
        if (!strcmp(a, "-v")) {
            *verbose = true;
            continue;
        }
        if (!strcmp(a, "--no-repack")) {
            p->no_repack = true;
            continue;
        }
        if (i + 1 >= argc) {
            fprintf(stderr, "nindub serve: unknown or incomplete option %s\n\n", a);
            usage(stderr);
            return 2;
        }
        const char *v = argv[++i];
        double x = 0;
#define NUM(lo, hi) if (tool_num("serve", a, v, lo, hi, &x)) return 2
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
        else if (!strcmp(a, "--weights")) {
            nd_err e;
            model_weights w;
            if (model_weights_parse(v, &w, &e)) {
                fprintf(stderr, "nindub serve: %s\n", e.msg);
                return 2;
            }
            p->weights = (int)w;
        } else if (!strcmp(a, "--kv")) {
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
    return spec_finish(&g, p);
}

int tool_serve(int argc, char **argv) {
    srv_params p = srv_default_params();
    bool verbose = false;
    int k = parse(argc, argv, &p, &verbose);
    if (k) return k == 1 ? 0 : k;
    p.log = (nd_logger){nd_log_stderr, NULL, verbose ? ND_LOG_DEBUG : ND_LOG_INFO};

    tool_catch_stop_signals();

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
    tool_wait_for_stop();
    fprintf(stderr, "nindub serve: stopping (new connections refused, running requests get %.0f s)\n",
            p.shutdown_grace);
    srv_free(s);
    fprintf(stderr, "nindub serve: stopped\n");
    return 0;
}
