/* nindub serve: an OpenAI-compatible HTTP server with continuous batching.
 *
 * Threads
 *  - libmicrohttpd runs one thread per connection (bounded by max_conns). A connection
 *    thread parses and validates the request, tokenizes the prompt, builds the grammar
 *    (response_format / grammar) and queues a task; then it waits for the task's output
 *    (streaming: copies SSE bytes as they appear; otherwise: waits for the whole answer).
 *    While it waits it watches its socket: a client that hangs up cancels its task.
 *  - One engine thread owns the model context. Each step it admits queued tasks into free
 *    slots (prefix reuse: the slot whose cached tokens share the longest prefix with the
 *    prompt), drops cancelled ones, and runs ONE model_forward_batch over the next token of
 *    every generating slot plus a chunk of pending prompt tokens (at most n_batch tokens a
 *    step, so a long prompt never stalls running streams for more than one chunk).
 *  - The caller's thread (tool_serve) loads the model after the socket is listening
 *    (/health says 503 "loading" meanwhile) and calls srv_shutdown on SIGINT/SIGTERM.
 *
 * Context: every slot has its own KV sequence of n_ctx positions (so the KV cache holds
 * n_parallel * n_ctx positions; llama.cpp divides -c by --parallel instead).
 *
 * Speculative decoding: a slot whose request drafts (server default or the request's
 * "speculative" field) puts [pending, draft...] into the same step and keeps what
 * verification accepts; greedy output is token for token that of plain decoding. One draft
 * model serves all slots; each slot that drafts with it has its own draft context of n_ctx
 * positions (created the first time it is needed). See slots.c.
 *
 * Ownership: srv_new copies every string it is given. srv_free stops everything.
 */
#ifndef ND_SERVE_H
#define ND_SERVE_H

#include <stddef.h>
#include <stdint.h>

#include "core/nd.h"

typedef struct srv_params {
    const char *model_path; /* GGUF file */
    const char *alias;      /* model id in the API; NULL = file name without .gguf */
    const char *host;       /* bind address (numeric or name); NULL = 127.0.0.1 */
    int port;               /* 0 = any free port (see srv_port) */
    const char *api_key;    /* NULL/"" = no authentication */
    int n_parallel;         /* slots (default 4) */
    int64_t n_ctx;          /* positions per slot; 0 = min(model's, 4096) */
    int n_threads;          /* compute threads; 0 = all CPUs */
    int n_batch;            /* tokens per engine step (prompt chunks + decodes); 0 = 256 */
    int max_queue;          /* queued requests beyond the slots before 429; 0 = 64 */
    int max_conns;          /* simultaneous connections; 0 = 128 */
    size_t max_body;        /* request body bytes before 413; 0 = 4 MiB */
    int timeout_s;          /* idle connection timeout (slowloris); 0 = 30 */
    double shutdown_grace;  /* seconds running generations may finish after stop; < 0 = 5 */
    int kv_type;            /* ND_TYPE_F16 (0 = default) or ND_TYPE_F32 */
    int weights;            /* model_weights: 0 auto, 1 mmap, 2 copy */
    bool no_repack;         /* model_load_params.no_repack (--no-repack) */
    nd_logger log;          /* request / lifecycle log; fn NULL = silent */
    /* speculative decoding (all 0 = off): the drafter requests get unless they say otherwise
     * (request field "speculative"); flags and meanings as `nindub run` */
    const char *draft_path; /* --draft FILE: draft model with the target's vocabulary; NULL = none */
    int spec_kind;          /* 0 off; 1 draft model (implied by draft_path); 2 n-gram (spec_kind) */
    int draft_max;          /* longest draft; 0 = the drafter's default (model 8, n-gram 16) */
    int draft_min;          /* drop drafts shorter than this (0) */
    float draft_p_min;      /* draft model: stop below this top probability; < 0 = 0.3 (the
                               default srv_default_params sets) */
    bool draft_fixed;       /* always draft draft_max (default: adapt to acceptance and costs) */
    int draft_threads;      /* draft model threads per slot; 0 = n_threads */
    bool draft_async;       /* greedy requests draft on the slot's own thread (spec_params.draft_async) */
    int ngram_min, ngram_max; /* n-gram suffix lengths; 0 = 2, 4 */
    /* testing aids (0 = off): sleep this long after every engine step / before loading,
     * so tests can hold a slot busy or observe the loading state deterministically */
    int test_step_delay_ms, test_load_delay_ms;
} srv_params;

srv_params srv_default_params(void);

typedef struct srv srv_t;

/* Validates the parameters and allocates the server (no model, no socket yet). */
srv_t *srv_new(const srv_params *p, nd_err *err);
/* Binds and listens, starts the HTTP threads. Until srv_load succeeds every API route
 * answers 503 and /health {"status":"loading"}. */
int srv_listen(srv_t *s, nd_err *err);
/* The bound port (useful with port 0), 0 before srv_listen. */
int srv_port(const srv_t *s);
/* Loads the model and vocabulary, creates the context (n_parallel sequences) and starts
 * the engine thread. On failure /health reports the error and API routes stay 503. */
int srv_load(srv_t *s, nd_err *err);
/* Stops accepting connections, refuses queued requests (503), lets running generations
 * finish for shutdown_grace seconds, then cuts them (streams end with an error event and
 * data: [DONE]), joins every thread. Safe to call more than once. */
void srv_shutdown(srv_t *s);
void srv_free(srv_t *s); /* shuts down first; NULL is fine */

#endif
