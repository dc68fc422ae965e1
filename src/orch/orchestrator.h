/* orch server: `nindub orchestrate`, an OpenAI-compatible front that runs the roles (sentinel,
 * pruner, router, guard) around a main endpoint.
 *
 * Per chat request (POST /v1/chat/completions):
 *   1. parse and check the body (limits on messages, context items and bytes);
 *   2. pruner: context chunks from the extension field `context: [..]` or from fenced blocks
 *      tagged pruner.fence_tag in the last user message are ranked against that message
 *      (BM25) and only the top ones within the token budget go on;
 *   3. sentinel: every message's text and every kept chunk is scrubbed with one placeholder
 *      map per request (the whole conversation is in each request, so the same value gets the
 *      same placeholder in every turn); the map lives in memory for the request only;
 *   4. router: rules, examples, then (when a helper model is loaded and router.helper is on
 *      or nothing decided) the helper under a one-label grammar; the route gives the target
 *      (main, helper or another URL), a system prompt and default sampling settings;
 *   5. the scrubbed request goes to the target; its answer comes back through the sentinel's
 *      outbound stream (placeholders restored, foreign secrets redacted) chunk by chunk as it
 *      streams; on guarded routes code blocks are checked and fixed by the main model;
 *   6. the trace (roles, route, counts, guard rounds, timings) goes to the log, /metrics, the
 *      x-nindub-trace header and the response's `nindub` extension object.
 *
 * The helper model, when configured, runs in this process as an internal `nindub serve`
 * instance on a loopback port; the orchestrator talks to it like to any endpoint.
 * Also: GET /v1/models, /health, /metrics. Other routes: 404/405.
 */
#ifndef ND_ORCH_ORCHESTRATOR_H
#define ND_ORCH_ORCHESTRATOR_H

#include "core/nd.h"
#include "orch/config.h"

typedef struct orch_server_params {
    const orch_config *cfg;     /* borrowed; must outlive the server */
    const char *main_key;       /* bearer for the main endpoint (NULL: from cfg->main_key_env) */
    const char *api_key;        /* clients must send this bearer (NULL/"" = open) */
    int helper_threads;         /* helper model threads (0 = all CPUs) */
    int64_t helper_ctx;         /* helper context per slot (0 = 4096 or the model's) */
    int helper_parallel;        /* helper slots (0 = 2) */
    int max_conns;              /* 0 = 64 */
    size_t max_body;            /* request bytes (0 = 8 MiB) */
    int max_messages;           /* 0 = 1024 */
    int max_context;            /* context items (0 = 1000) */
    int timeout_s;              /* idle client connection (0 = 60) */
    nd_logger log;
} orch_server_params;

typedef struct orch_server orch_server;

/* Validates the config (a router needs routes, a helper target needs a helper model ...),
 * builds the roles. Nothing listens yet. */
orch_server *orch_server_new(const orch_server_params *p, nd_err *err);
/* Loads the helper model (if any) and starts listening on cfg->listen_host:listen_port
 * (port 0 = any free port). */
int orch_server_start(orch_server *s, nd_err *err);
int orch_server_port(const orch_server *s);
void orch_server_stop(orch_server *s); /* idempotent */
void orch_server_free(orch_server *s); /* stops first; NULL is fine */

#endif
