/* orch router: rules, TF-IDF examples, defaults, helper grammar and prompt, accuracy of the
 * rules + examples path on tests/data/orch/router_set.tsv (labels from tests/data/orch/orch.yaml). */
#include "orch/config.h"
#include "orch/router.h"
#include "orch/text.h"
#include "t.h"

static int collect_tok(void *u, const char *t, size_t n) {
    nd_buf *b = u;
    nd_buf_append(b, t, n);
    nd_buf_append(b, " ", 1);
    return 0;
}

static void test_tokenizer(void) {
    nd_buf b = {0};
    const char *s = "parseHttpHeader MAX_BUF_LEN utf8Decode x the";
    orch_tokenize(s, strlen(s), 0, collect_tok, &b);
    T_EQ_STR(b.data, "parsehttpheader parse http header max_buf_len max buf len utf8decode utf decode the ");
    b.len = 0;
    orch_tokenize(s, strlen(s), ORCH_TOK_STOP | ORCH_TOK_STEM, collect_tok, &b);
    T_EQ_STR(b.data, "parsehttpheader parse http header max_buf_len max buf len utf8decode utf decode ");
    b.len = 0;
    s = "HTTPServer __init__ running tests";
    orch_tokenize(s, strlen(s), ORCH_TOK_STEM, collect_tok, &b);
    T_EQ_STR(b.data, "httpserver http server __init__ runn test ");
    nd_buf_free(&b);
}

static void test_paths(void) {
    const char *kw_code[] = {"segfault", "stack trace"}, *pat_code[] = {"```"};
    const char *ex_code[] = {"write a function that sorts a list", "fix my python script"};
    const char *ex_chat[] = {"tell me a joke", "what should I cook for dinner"};
    orch_route_def d[] = {
        {"code", "programming", kw_code, 2, pat_code, 1, ex_code, 2},
        {"chat", NULL, NULL, 0, NULL, 0, ex_chat, 2},
    };
    nd_err err = {0};
    orch_router *r = orch_router_new(d, 2, &(orch_router_opts){0.12, 1}, &err);
    T_CHECK(r != NULL);
    if (!r) return;
    orch_route_result res;
    const char *q = "I get a Segfault, here is the stack trace";
    T_EQ_INT(orch_router_classify(r, q, strlen(q), &res, &err), 0);
    T_CHECK(res.label == 0 && res.path == ORCH_ROUTE_RULE && res.confidence == 1.0);
    q = "```c\nint main\n```";
    T_EQ_INT(orch_router_classify(r, q, strlen(q), &res, &err), 0);
    T_CHECK(res.label == 0 && res.path == ORCH_ROUTE_RULE);
    q = "can you tell me a funny joke";
    T_EQ_INT(orch_router_classify(r, q, strlen(q), &res, &err), 0);
    T_CHECK(res.label == 1 && res.path == ORCH_ROUTE_EXAMPLES && res.confidence > 0 && res.confidence <= 1);
    q = "zebra quantum accordion";
    T_EQ_INT(orch_router_classify(r, q, strlen(q), &res, &err), 0);
    T_CHECK(res.label == 1 && res.path == ORCH_ROUTE_DEFAULT);
    T_EQ_STR(orch_route_path_name(res.path), "default");
    nd_buf g = {0};
    T_EQ_INT(orch_router_grammar(r, &g), 0);
    T_EQ_STR(g.data, "root ::= \"code\" | \"chat\"\n");
    g.len = 0;
    T_EQ_INT(orch_router_prompt(r, "hello", 5, &g), 0);
    T_CHECK(strstr(g.data, "- code: programming\n- chat\n") && strstr(g.data, "Request:\nhello"));
    nd_buf_free(&g);
    T_EQ_INT(orch_router_parse_helper(r, " \"chat\"\n", 8, &res), 0);
    T_CHECK(res.label == 1 && res.path == ORCH_ROUTE_HELPER);
    T_EQ_INT(orch_router_parse_helper(r, "chatty", 6, &res), ND_ENOTFOUND);
    T_EQ_INT(orch_router_find(r, "code"), 0);
    T_EQ_INT(orch_router_find(r, "nope"), -1);
    orch_router_free(r);
    /* no default: undecided */
    r = orch_router_new(d, 2, NULL, &err);
    q = "zebra quantum accordion";
    T_EQ_INT(orch_router_classify(r, q, strlen(q), &res, &err), 0);
    T_CHECK(res.label == -1 && res.path == ORCH_ROUTE_NONE);
    orch_router_free(r);
}

static void test_bad_defs(void) {
    nd_err err = {0};
    const char *bad[] = {"(unclosed"};
    orch_route_def d[] = {{"a", NULL, NULL, 0, bad, 1, NULL, 0}, {"a", NULL, NULL, 0, NULL, 0, NULL, 0}};
    T_CHECK(orch_router_new(d, 1, NULL, &err) == NULL && err.code == ND_EFORMAT);
    T_CHECK(strstr(err.msg, "label a: pattern 0") != NULL);
    d[0].n_patterns = 0;
    T_CHECK(orch_router_new(d, 2, NULL, &err) == NULL && err.code == ND_EINVAL && strstr(err.msg, "twice"));
    d[0].label = "sp ace";
    T_CHECK(orch_router_new(d, 1, NULL, &err) == NULL && err.code == ND_EINVAL);
    T_CHECK(orch_router_new(d, 0, NULL, &err) == NULL);
    d[0].label = "ok";
    T_CHECK(orch_router_new(d, 1, &(orch_router_opts){0, 3}, &err) == NULL && err.code == ND_EINVAL);
    /* allocation failures while building: clean errors, no leaks (ASan) */
    const char *kw[] = {"alpha beta"}, *ex[] = {"one two three", "four five"};
    orch_route_def g[] = {{"x", "d", kw, 1, NULL, 0, ex, 2}, {"y", NULL, NULL, 0, NULL, 0, ex, 1}};
    for (long k = 0; k < 200; k++) {
        nd_alloc_fail_after(k);
        orch_router *r = orch_router_new(g, 2, NULL, &err);
        nd_alloc_fail_after(-1);
        orch_router_free(r);
        if (r) break;
    }
}

static void test_router_set_accuracy(void) {
    nd_err err = {0};
    orch_config *c = NULL;
    T_EQ_INT(orch_config_load("tests/data/orch/orch.yaml", &c, &err), 0);
    if (!c) {
        T_FAILF("%s", err.msg);
        return;
    }
    orch_router *r = orch_config_router(c, &err);
    T_CHECK(r != NULL);
    char *data;
    size_t len;
    T_EQ_INT(nd_read_file("tests/data/orch/router_set.tsv", &data, &len, &err), 0);
    if (!r || !data) return;
    int n = 0, correct = 0, by_path[5] = {0}, ok_path[5] = {0};
    int nl = (int)orch_router_n_labels(r), per_n[16] = {0}, per_ok[16] = {0};
    const char *verbose = getenv("ORCH_ROUTER_VERBOSE");
    for (char *p = data, *e; p && *p; p = e ? e + 1 : NULL) {
        e = strchr(p, '\n');
        if (e) *e = 0;
        if (*p == '#' || !*p) continue;
        char *tab = strchr(p, '\t');
        if (!tab) continue;
        *tab = 0;
        int want = orch_router_find(r, p);
        T_CHECKF(want >= 0, "unknown label %s in the set", p);
        orch_route_result res;
        T_EQ_INT(orch_router_classify(r, tab + 1, strlen(tab + 1), &res, &err), 0);
        n++;
        by_path[res.path]++;
        if (want >= 0 && want < 16) per_n[want]++;
        if (res.label == want) {
            correct++;
            ok_path[res.path]++;
            if (want < 16) per_ok[want]++;
        } else if (verbose) {
            fprintf(stderr, "  want %s got %s (%s, %.2f): %s\n", p, res.label >= 0 ? orch_router_label(r, res.label) : "-",
                    orch_route_path_name(res.path), res.score, tab + 1);
        }
    }
    printf("  router set: %d requests, accuracy %.3f (%d correct)\n", n, (double)correct / n, correct);
    for (int k = 1; k < 5; k++)
        if (by_path[k])
            printf("    path %-8s decided %3d, correct %3d (%.3f)\n", orch_route_path_name((orch_route_path)k),
                   by_path[k], ok_path[k], (double)ok_path[k] / by_path[k]);
    for (int k = 0; k < nl && k < 16; k++)
        printf("    label %-10s %3d/%3d\n", orch_router_label(r, k), per_ok[k], per_n[k]);
    T_CHECK(n >= 100);
    T_CHECKF((double)correct / n >= 0.85, "accuracy %.3f < 0.85", (double)correct / n);
    nd_free(data);
    orch_router_free(r);
    orch_config_free(c);
}

int main(void) {
    T_RUN(test_tokenizer);
    T_RUN(test_paths);
    T_RUN(test_bad_defs);
    T_RUN(test_router_set_accuracy);
    return t_done();
}
