/* nindub orchestrate: the bicameral orchestrator (src/orch/orchestrator.h) as a command. A
 * config file (YAML or JSON) and/or flags for the common case; flags override the file.
 * SIGINT/SIGTERM stop it cleanly (exit 0). */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "core/pool.h"
#include "orch/orchestrator.h"
#include "tools/tools.h"

static void usage(FILE *f) {
    fprintf(f,
            "usage: nindub orchestrate [--config orch.yaml] [--helper helper.gguf] [--main URL] [options]\n"
            "  --config FILE        configuration (YAML, or JSON when the name ends in .json); see\n"
            "                       docs/orchestrator.md and tests/data/orch/orch.yaml\n"
            "  --check-config       validate the configuration, print a summary and exit\n"
            "  --main URL           main endpoint, OpenAI-compatible base URL (http://host:port/v1)\n"
            "  --main-key-env VAR   environment variable holding the main endpoint's API key\n"
            "  --main-model NAME    model name sent to the main endpoint (default: the client's)\n"
            "  --helper FILE        helper model (GGUF), run in this process\n"
            "  --helper-threads N   helper compute threads (default: all CPUs)\n"
            "  -c N                 helper context per slot (default: the model's, at most 4096)\n"
            "  --host ADDR          bind address (default 127.0.0.1)\n"
            "  --port N             TCP port (default 8090; 0 = any free port)\n"
            "  --api-key KEY        clients must send Authorization: Bearer KEY\n"
            "  --timeout S          main endpoint timeout: whole answer, or silence within a stream (default 120)\n"
            "  --no-sentinel | --no-router | --no-pruner | --no-guard   switch a role off\n"
            "  -v                   log more\n"
            "endpoints: POST /v1/chat/completions (extension field context: [..]); GET /v1/models,\n"
            "           /health, /metrics. Every answer carries an x-nindub-trace header.\n");
}

static int set(char **field, const char *v) {
    char *d = nd_strdup(v);
    if (!d) return -1;
    nd_free(*field);
    *field = d;
    return 0;
}

typedef struct opts {
    const char *config, *main, *key_env, *main_model, *helper, *host, *api_key;
    int port; /* -1 = config's */
    double timeout;
    bool check, verbose, no_sentinel, no_router, no_pruner, no_guard;
    int helper_threads;
    int64_t helper_ctx;
} opts;

static int parse(int argc, char **argv, opts *o) {
    for (int i = 1; i < argc; i++) {
        const char *a = argv[i];
        if (!strcmp(a, "-h") || !strcmp(a, "--help")) {
            usage(stdout);
            return 1;
        }
        if (!strcmp(a, "-v")) { o->verbose = true; continue; }
        if (!strcmp(a, "--check-config")) { o->check = true; continue; }
        if (!strcmp(a, "--no-sentinel")) { o->no_sentinel = true; continue; }
        if (!strcmp(a, "--no-router")) { o->no_router = true; continue; }
        if (!strcmp(a, "--no-pruner")) { o->no_pruner = true; continue; }
        if (!strcmp(a, "--no-guard")) { o->no_guard = true; continue; }
        if (i + 1 >= argc) {
            fprintf(stderr, "nindub orchestrate: unknown or incomplete option %s\n\n", a);
            usage(stderr);
            return 2;
        }
        const char *v = argv[++i];
        double x = 0;
#define NUM(lo, hi) if (tool_num("orchestrate", a, v, lo, hi, &x)) return 2
        if (!strcmp(a, "--config")) o->config = v;
        else if (!strcmp(a, "--main")) o->main = v;
        else if (!strcmp(a, "--main-key-env")) o->key_env = v;
        else if (!strcmp(a, "--main-model")) o->main_model = v;
        else if (!strcmp(a, "--helper")) o->helper = v;
        else if (!strcmp(a, "--host")) o->host = v;
        else if (!strcmp(a, "--api-key")) o->api_key = v;
        else if (!strcmp(a, "--port")) { NUM(0, 65535); o->port = (int)x; }
        else if (!strcmp(a, "--timeout")) { NUM(0.1, 86400); o->timeout = x; }
        else if (!strcmp(a, "--helper-threads")) { NUM(1, ND_POOL_MAX_THREADS); o->helper_threads = (int)x; }
        else if (!strcmp(a, "-c")) { NUM(16, 1 << 24); o->helper_ctx = (int64_t)x; }
        else {
            fprintf(stderr, "nindub orchestrate: unknown option %s\n\n", a);
            usage(stderr);
            return 2;
        }
#undef NUM
    }
    if (!o->config && !o->main && !o->helper) {
        fprintf(stderr, "nindub orchestrate: give --config FILE, or --main URL and/or --helper FILE\n\n");
        usage(stderr);
        return 2;
    }
    return 0;
}

static int apply(const opts *o, orch_config *c) {
    if ((o->main && set(&c->main_url, o->main)) || (o->key_env && set(&c->main_key_env, o->key_env)) ||
        (o->main_model && set(&c->main_model, o->main_model)) || (o->helper && set(&c->helper_model, o->helper)) ||
        (o->host && set(&c->listen_host, o->host)))
        return -1;
    if (o->port >= 0) c->listen_port = o->port;
    if (o->timeout > 0) c->main_timeout_s = o->timeout;
    if (o->no_sentinel) c->role_sentinel = false;
    if (o->no_router) c->role_router = false;
    if (o->no_pruner) c->role_pruner = false;
    if (o->no_guard) c->role_guard = false;
    return 0;
}

int tool_orchestrate(int argc, char **argv) {
    opts o = {.port = -1};
    int k = parse(argc, argv, &o);
    if (k) return k == 1 ? 0 : k;
    nd_err err = {0};
    orch_config *cfg = NULL;
    if (o.config ? orch_config_load(o.config, &cfg, &err) : !(cfg = orch_config_default(&err))) {
        fprintf(stderr, "nindub orchestrate: %s\n", err.msg);
        return 2;
    }
    if (apply(&o, cfg)) {
        fprintf(stderr, "nindub orchestrate: out of memory\n");
        orch_config_free(cfg);
        return 1;
    }
    orch_server_params p = {.cfg = cfg, .api_key = o.api_key, .helper_threads = o.helper_threads, .helper_ctx = o.helper_ctx};
    p.log = (nd_logger){nd_log_stderr, NULL, o.verbose ? ND_LOG_DEBUG : ND_LOG_INFO};
    orch_server *s = orch_server_new(&p, &err);
    if (!s) {
        fprintf(stderr, "nindub orchestrate: %s\n", err.msg);
        orch_config_free(cfg);
        return 2;
    }
    if (o.check) {
        printf("config ok: main %s, helper %s, %zu routes, roles:%s%s%s%s\n", cfg->main_url ? cfg->main_url : "(none)",
               cfg->helper_model ? cfg->helper_model : "(none)", cfg->role_router ? cfg->n_routes : 0,
               cfg->role_sentinel ? " sentinel" : "", cfg->role_router && cfg->n_routes ? " router" : "",
               cfg->role_pruner ? " pruner" : "", cfg->role_guard ? " guard" : "");
        orch_server_free(s);
        orch_config_free(cfg);
        return 0;
    }
    tool_catch_stop_signals();
    if (orch_server_start(s, &err)) {
        fprintf(stderr, "nindub orchestrate: %s\n", err.msg);
        orch_server_free(s);
        orch_config_free(cfg);
        return 1;
    }
    fprintf(stderr, "nindub orchestrate: listening on http://%s:%d/v1\n", cfg->listen_host, orch_server_port(s));
    fflush(stderr);
    tool_wait_for_stop();
    fprintf(stderr, "nindub orchestrate: stopping\n");
    orch_server_free(s);
    orch_config_free(cfg);
    return 0;
}
