/* orch router: picks one of the configured labels for a (scrubbed) request.
 *
 * Paths, in order:
 *  1. rules: whole-word keywords / phrases and PCRE2 patterns per label (caseless). A pattern
 *     hit weighs 2, a keyword hit 1; the label with the most weight wins when it beats the
 *     runner-up.
 *  2. examples: TF-IDF cosine between the request and every example request (stop words out,
 *     light stemming); a label scores its best example. Decides when the best score reaches
 *     min_similarity.
 *  3. helper: the caller asks the helper model with orch_router_prompt + orch_router_grammar
 *     (GBNF that admits exactly one label) and maps the answer with orch_router_parse_helper.
 *     Until then the result is the default label (path DEFAULT) or none.
 *
 * An orch_router is immutable after orch_router_new and safe to share between threads.
 */
#ifndef ND_ORCH_ROUTER_H
#define ND_ORCH_ROUTER_H

#include <stdbool.h>
#include <stddef.h>

#include "core/nd.h"

typedef struct orch_route_def {
    const char *label;              /* [A-Za-z0-9_-]+, unique */
    const char *description;        /* one line for the helper prompt (may be NULL) */
    const char *const *keywords;    /* words or phrases, matched as whole words */
    size_t n_keywords;
    const char *const *patterns;    /* PCRE2 patterns */
    size_t n_patterns;
    const char *const *examples;    /* example requests */
    size_t n_examples;
} orch_route_def;

typedef struct orch_router_opts {
    double min_similarity; /* examples path threshold (default 0.12 when 0) */
    int default_label;     /* index used when nothing decides; -1 = none */
} orch_router_opts;

typedef enum orch_route_path {
    ORCH_ROUTE_NONE,     /* nothing decided and no default: ask the helper */
    ORCH_ROUTE_RULE,
    ORCH_ROUTE_EXAMPLES,
    ORCH_ROUTE_HELPER,
    ORCH_ROUTE_DEFAULT,
} orch_route_path;
const char *orch_route_path_name(orch_route_path p); /* "rule", "examples", ... */

typedef struct orch_route_result {
    int label;          /* index into the defs, -1 with ORCH_ROUTE_NONE */
    double confidence;  /* 0..1: rules: share of the winning weight; examples: best cosine
                           scaled by its margin over the runner-up label */
    double score;       /* raw: rule weight or best cosine */
    orch_route_path path;
} orch_route_result;

typedef struct orch_router orch_router;
/* Copies everything it needs from defs. Errors: ND_EINVAL (no labels, a bad or duplicate
 * label name, default out of range), ND_EFORMAT (a pattern does not compile: the message
 * names the label and pattern index), ND_ENOMEM. */
orch_router *orch_router_new(const orch_route_def *defs, size_t n, const orch_router_opts *opts,
                             nd_err *err);
void orch_router_free(orch_router *r);
size_t orch_router_n_labels(const orch_router *r);
const char *orch_router_label(const orch_router *r, int i); /* NULL if out of range */
int orch_router_find(const orch_router *r, const char *label); /* -1 if unknown */

int orch_router_classify(const orch_router *r, const char *text, size_t n, orch_route_result *res,
                         nd_err *err);

/* GBNF for the helper: root ::= "code" | "chat" | ... (appended to out). */
int orch_router_grammar(const orch_router *r, nd_buf *out);
/* The helper's instruction: the labels with their descriptions, then the request (appended). */
int orch_router_prompt(const orch_router *r, const char *text, size_t n, nd_buf *out);
/* Maps the helper's output (surrounding space and quotes ignored) to a label; returns 0 and
 * fills res (path HELPER, confidence 1), or ND_ENOTFOUND when it is not exactly a label. */
int orch_router_parse_helper(const orch_router *r, const char *out, size_t n, orch_route_result *res);

#endif
