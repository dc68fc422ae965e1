/* orch config: the orchestrator's configuration file (YAML via libyaml, or JSON via cJSON),
 * validated into plain structs with errors that name the file, the line (YAML; JSON syntax
 * errors too) and the key path at fault: "orch.yaml:14: routes[2].exmaples: unknown key
 * (known: label, description, target, ...)".
 *
 * Shape (every section optional unless said; see docs/orchestrator.md for the meaning):
 *
 *   main:     { url: http://host:port/v1, key_env: VAR, model: name, timeout_s: 120 }
 *   helper:   { model: helper.gguf }
 *   listen:   { host: 127.0.0.1, port: 8090 }   # port 0: any free port
 *   roles:    { sentinel: true, router: true, pruner: true, guard: true }
 *   sentinel: { allow: [EMAIL, IP], private_ips: false, entropy_min: 3.5, stream_tail: 64,
 *               outbound_redact: true, outbound_pii: false }
 *   router:   { default: chat, min_similarity: 0.12, helper: false }
 *   routes:                                  # required when roles.router is on
 *     - label: code                          # required, [A-Za-z0-9_-]+, unique
 *       description: programming help
 *       target: main                         # main | helper | http(s)://... (default main)
 *       system_prompt: "You are ..."
 *       keywords: [compile, segfault]
 *       patterns: ['```']
 *       examples: ["fix this python error"]
 *       sampling: { temperature: 0.2, top_p: 0.9, top_k: 40, max_tokens: 1024, seed: 1 }
 *       guard: true                          # run the compile loop on this route's answers
 *   pruner:   { k: 5, budget_tokens: 2000, k1: 1.2, b: 0.75, fence_tag: context,
 *               helper: false, helper_candidates: 8 }   # helper: the helper model judges the
 *                                                     # best BM25 candidates relevant or not
 *   guard:    { max_rounds: 3, timeout_s: 10, cpu_s: 10, memory_mb: 2048, output_cap: 65536,
 *               checkers: { c: [cc, -fsyntax-only, -x, c, -], python: [...],
 *                           javascript: [node, --check, "{file}"], typescript: [...] } }
 */
#ifndef ND_ORCH_CONFIG_H
#define ND_ORCH_CONFIG_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "core/nd.h"
#include "orch/guard.h"
#include "orch/router.h"
#include "orch/sentinel.h"

typedef enum orch_target { ORCH_TARGET_MAIN, ORCH_TARGET_HELPER, ORCH_TARGET_URL } orch_target;

typedef struct orch_sampling {
    double temperature; /* < 0 = unset */
    double top_p;       /* < 0 = unset */
    int top_k;          /* < 0 = unset */
    int max_tokens;     /* < 0 = unset */
    int64_t seed;       /* < 0 = unset */
} orch_sampling;

typedef struct orch_route_cfg {
    char *label, *description, *system_prompt; /* description, system_prompt may be NULL */
    int target;                                /* orch_target */
    char *target_url;                          /* ORCH_TARGET_URL only */
    char **keywords, **patterns, **examples;
    size_t n_keywords, n_patterns, n_examples;
    orch_sampling sampling;
    bool guard;
    int line;                                  /* where the route starts (YAML), 0 if unknown */
} orch_route_cfg;

typedef struct orch_config {
    char *main_url, *main_key_env, *main_model; /* may be NULL */
    double main_timeout_s;
    char *helper_model;                         /* may be NULL */
    char *listen_host;
    int listen_port;
    bool role_sentinel, role_router, role_pruner, role_guard;
    orch_sentinel_opts sentinel;
    char *router_default;                       /* NULL = none */
    double router_min_similarity;
    bool router_helper;
    orch_route_cfg *routes;
    size_t n_routes;
    size_t pruner_k, pruner_budget;
    double pruner_k1, pruner_b;
    char *pruner_fence_tag;                     /* fenced blocks with this tag are context chunks */
    bool pruner_helper;                         /* helper-model relevance on the top candidates */
    size_t pruner_helper_candidates;
    int guard_max_rounds;
    orch_guard_opts guard;                      /* argv arrays point into this config */
    char **guard_argv[ORCH_LANG_COUNT];         /* NULL-terminated; NULL = default */
} orch_config;

/* Parse and validate. name is used in messages and picks the format: a name ending in .json
 * (or text starting with '{') is JSON, anything else YAML. Errors: ND_EFORMAT (syntax, with
 * line), ND_EINVAL (a bad key or value: names its path), ND_ERANGE (a number out of range),
 * ND_ENOMEM; ND_EIO for orch_config_load's file. */
int orch_config_parse(const char *text, size_t n, const char *name, orch_config **out, nd_err *err);
int orch_config_load(const char *path, orch_config **out, nd_err *err);
void orch_config_free(orch_config *c);
orch_config *orch_config_default(nd_err *err); /* the defaults, with no routes */

/* Role objects from a validated config. */
orch_router *orch_config_router(const orch_config *c, nd_err *err);

#endif
