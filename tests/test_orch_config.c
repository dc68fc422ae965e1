/* orch config: the example file, YAML and JSON giving the same config, and malformed configs
 * whose errors must name the key path and the line. */
#include "orch/config.h"
#include "t.h"

static void test_example_file(void) {
    orch_config *c = NULL;
    nd_err err = {0};
    T_EQ_INT(orch_config_load("tests/data/orch/orch.yaml", &c, &err), 0);
    if (!c) {
        T_FAILF("%s", err.msg);
        return;
    }
    T_EQ_STR(c->main_url, "http://127.0.0.1:8080/v1");
    T_EQ_STR(c->main_key_env, "MAIN_API_KEY");
    T_EQ_INT(c->listen_port, 8090);
    T_CHECK(c->role_sentinel && c->role_router && c->role_pruner && c->role_guard);
    T_CHECK(c->sentinel.disabled == (1ull << ORCH_K_IP) && !c->sentinel.flag_private_ip);
    T_EQ_INT(c->n_routes, 6);
    T_EQ_STR(c->routes[0].label, "sensitive");
    T_EQ_INT(c->routes[0].target, ORCH_TARGET_HELPER);
    T_EQ_INT(c->routes[1].target, ORCH_TARGET_MAIN);
    T_CHECK(c->routes[1].guard && c->routes[1].n_examples == 8 && c->routes[1].n_patterns == 2);
    T_NEAR(c->routes[1].sampling.temperature, 0.2, 1e-12);
    T_EQ_INT(c->routes[1].sampling.max_tokens, 2048);
    T_CHECK(c->routes[1].sampling.top_p < 0 && c->routes[1].sampling.seed < 0);
    T_EQ_STR(c->router_default, "chat");
    T_EQ_INT(c->pruner_k, 5);
    T_EQ_STR(c->pruner_fence_tag, "context");
    T_EQ_INT(c->guard_max_rounds, 3);
    T_EQ_INT(c->guard.mem_bytes, (size_t)2048 << 20);
    T_CHECK(c->guard.argv[ORCH_LANG_C] && !strcmp(c->guard.argv[ORCH_LANG_C][0], "cc") &&
            c->guard.argv[ORCH_LANG_C][7] == NULL);
    T_CHECK(c->guard.argv[ORCH_LANG_PYTHON] == NULL); /* default checker */
    T_CHECK(c->routes[1].line > 0);
    orch_config_free(c);
}

static void test_json_same(void) {
    const char *json =
        "{\"main\": {\"url\": \"https://api.example.net/v1\", \"key_env\": \"K\"},\n"
        " \"roles\": {\"pruner\": false},\n"
        " \"sentinel\": {\"allow\": [\"EMAIL\", \"phone\"], \"private_ips\": true, \"stream_tail\": 32},\n"
        " \"routes\": [{\"label\": \"code\", \"keywords\": [\"compile\"], \"examples\": [\"fix my code\"],\n"
        "              \"sampling\": {\"temperature\": 0.5, \"seed\": 7}, \"target\": \"http://10.0.0.2:8000/v1\"},\n"
        "             {\"label\": \"chat\", \"examples\": [\"hello\"]}],\n"
        " \"router\": {\"default\": \"chat\"},\n"
        " \"guard\": {\"checkers\": {\"javascript\": [], \"python\": [\"python3\", \"-m\", \"py_compile\", \"{file}\"]}}}\n";
    const char *yaml = "main: {url: 'https://api.example.net/v1', key_env: K}\n"
                       "roles: {pruner: false}\n"
                       "sentinel: {allow: [EMAIL, phone], private_ips: true, stream_tail: 32}\n"
                       "routes:\n"
                       "  - {label: code, keywords: [compile], examples: [fix my code],\n"
                       "     sampling: {temperature: 0.5, seed: 7}, target: 'http://10.0.0.2:8000/v1'}\n"
                       "  - label: chat\n"
                       "    examples: [hello]\n"
                       "router: {default: chat}\n"
                       "guard: {checkers: {javascript: [], python: [python3, -m, py_compile, '{file}']}}\n";
    orch_config *a = NULL, *b = NULL;
    nd_err err = {0};
    T_EQ_INT(orch_config_parse(json, strlen(json), "x.json", &a, &err), 0);
    T_EQ_INT(orch_config_parse(yaml, strlen(yaml), "x.yaml", &b, &err), 0);
    if (!a || !b) {
        T_FAILF("%s", err.msg);
        orch_config_free(a);
        orch_config_free(b);
        return;
    }
    orch_config *v[2] = {a, b};
    for (int i = 0; i < 2; i++) {
        orch_config *c = v[i];
        T_EQ_STR(c->main_url, "https://api.example.net/v1");
        T_CHECK(!c->role_pruner && c->role_router);
        T_CHECK(c->sentinel.disabled == ((1ull << ORCH_K_EMAIL) | (1ull << ORCH_K_PHONE)));
        T_CHECK(c->sentinel.flag_private_ip && c->sentinel.stream_tail == 32);
        T_EQ_INT(c->n_routes, 2);
        T_EQ_INT(c->routes[0].target, ORCH_TARGET_URL);
        T_EQ_STR(c->routes[0].target_url, "http://10.0.0.2:8000/v1");
        T_EQ_INT(c->routes[0].sampling.seed, 7);
        T_CHECK(c->guard.argv[ORCH_LANG_JS] && c->guard.argv[ORCH_LANG_JS][0] == NULL);
        T_EQ_STR(c->guard.argv[ORCH_LANG_PYTHON][3], "{file}");
        orch_router *r = orch_config_router(c, &err);
        T_CHECK(r && orch_router_n_labels(r) == 2);
        orch_router_free(r);
    }
    orch_config_free(a);
    orch_config_free(b);
}

typedef struct bad_case {
    const char *name, *text, *want1, *want2;
    int code;
} bad_case;

static void test_malformed(void) {
    static const bad_case cases[] = {
        {"a.yaml", "routes:\n  - label: a\n  - label: b\n  - label: c\n    exmaples: [x]\n",
         "a.yaml:5: routes[2].exmaples: unknown key", "known: label,", ND_EINVAL},
        {"a.yaml", "routes:\n  - label: a\n    examples: just one string\n", "a.yaml:3: routes[0].examples",
         "expected a list of strings", ND_EINVAL},
        {"a.yaml", "routes:\n  - label: a\n    examples: [ok, [nested]]\n", "routes[0].examples[1]",
         "expected a non-empty string", ND_EINVAL},
        {"a.yaml", "routes:\n  - label: a\n    target: ftp://x\n", "a.yaml:3: routes[0].target",
         "main, helper or an http", ND_EINVAL},
        {"a.yaml", "routes:\n  - label: a\n  - label: a\n", "routes[1]", "already used by routes[0]", ND_EINVAL},
        {"a.yaml", "routes:\n  - label: 'a b'\n", "routes[0].label", "[A-Za-z0-9_-]", ND_EINVAL},
        {"a.yaml", "routes:\n  - description: no label\n", "routes[0]", "label is required", ND_EINVAL},
        {"a.yaml", "router: {default: nope}\nroutes: [{label: a}]\n", "a.yaml:1: router.default",
         "'nope' is not the label", ND_EINVAL},
        {"a.yaml", "routes: [{label: a}]\npruner:\n  k: 0\n", "a.yaml:3: pruner.k", "out of range", ND_ERANGE},
        {"a.yaml", "routes: [{label: a}]\npruner: {k: 2.5}\n", "pruner.k", "whole number", ND_EINVAL},
        {"a.yaml", "routes: [{label: a}]\nguard: {timeout_s: fast}\n", "guard.timeout_s", "expected a number",
         ND_EINVAL},
        {"a.yaml", "routes: [{label: a}]\nroles: {guard: maybe}\n", "roles.guard", "true or false", ND_EINVAL},
        {"a.yaml", "routes: [{label: a}]\nsentinel: {allow: [EMAIL, SSN]}\n", "sentinel.allow[1]",
         "unknown kind 'SSN'", ND_EINVAL},
        {"a.yaml", "routes: [{label: a, patterns: ['(x']}]\n", "a.yaml: routes: router: label a: pattern 0",
         "does not compile", ND_EFORMAT},
        {"a.yaml", "main: {url: localhost:8080}\nroutes: [{label: a}]\n", "main.url", "http://", ND_EINVAL},
        {"a.yaml", "main: {key_env: 'MY KEY'}\nroutes: [{label: a}]\n", "main.key_env", "environment variable",
         ND_EINVAL},
        {"a.yaml", "guard:\n  checkers:\n    cobol: [x]\nroutes: [{label: a}]\n", "a.yaml:3: guard.checkers.cobol",
         "unknown key", ND_EINVAL},
        {"a.yaml", "routes:\n  - label: a\n    examples: [x\n", "a.yaml:", "YAML syntax", ND_EFORMAT},
        {"a.yaml", "base: &b {label: a}\nroutes: [*b]\n", "a.yaml:2:", "aliases", ND_EFORMAT},
        {"a.yaml", "routes: [&b {label: a}, *b]\n", "a.yaml:1:", "aliases", ND_EFORMAT},
        {"a.yaml", "routes: [{label: a}]\nroutes: [{label: b}]\n", "a.yaml:2:", "appears twice", ND_EFORMAT},
        {"a.yaml", "- just\n- a list\n", "a.yaml:", "top level must be a map", ND_EINVAL},
        {"a.yaml", "", "a.yaml: routes", "no routes are defined", ND_EINVAL},
        {"a.yaml", "---\nroutes: [{label: a}]\n---\nroutes: []\n", "a.yaml:3", "one YAML document", ND_EFORMAT},
        {"a.json", "{\"routes\": [{\"label\": \"a\"}],\n \"pruner\": {\"k\": 3,}\n}", "a.json:2:", "JSON syntax",
         ND_EFORMAT},
        {"a.json", "{\"routes\": [{\"label\": \"a\", \"exmaples\": []}]}", "a.json: routes[0].exmaples",
         "unknown key", ND_EINVAL},
        {"a.json", "{\"routes\": [{\"label\": 7}]}", "routes[0].label", "expected a string, got a number", ND_EINVAL},
        {"a.json", "{\"routes\": [{\"label\": \"a\", \"guard\": \"yes\"}]}", "routes[0].guard", "true or false",
         ND_EINVAL},
        {"a.json", "{\"a\": 1, \"a\": 2}", "a.json:", "appears twice", ND_EFORMAT},
    };
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        const bad_case *b = &cases[i];
        orch_config *c = NULL;
        nd_err err = {0};
        int rc = orch_config_parse(b->text, strlen(b->text), b->name, &c, &err);
        T_CHECKF(rc == b->code && c == NULL, "case %zu: rc %d (want %d): %s", i, rc, b->code, err.msg);
        T_CHECKF(strstr(err.msg, b->want1) && strstr(err.msg, b->want2), "case %zu: message \"%s\" lacks \"%s\" / \"%s\"",
                 i, err.msg, b->want1, b->want2);
        orch_config_free(c);
    }
    /* deep nesting and a missing file */
    nd_buf deep = {0};
    for (int i = 0; i < 100; i++) nd_buf_append(&deep, "[", 1);
    orch_config *c = NULL;
    nd_err err = {0};
    T_EQ_INT(orch_config_parse(deep.data, deep.len, "d.yaml", &c, &err), ND_ERANGE); /* depth first */
    for (int i = 0; i < 100; i++) nd_buf_append(&deep, "]", 1);
    T_EQ_INT(orch_config_parse(deep.data, deep.len, "d.yaml", &c, &err), ND_ERANGE);
    T_EQ_INT(orch_config_parse(deep.data, deep.len, "d.json", &c, &err), ND_ERANGE);
    nd_buf_free(&deep);
    T_CHECK(orch_config_load("tests/data/orch/no-such.yaml", &c, &err) != 0 && c == NULL);
}

static void test_alloc_failures(void) {
    char *text;
    size_t len;
    nd_err err = {0};
    T_EQ_INT(nd_read_file("tests/data/orch/orch.yaml", &text, &len, &err), 0);
    int failed = 0;
    for (long k = 0; k < 5000; k += (k < 300 ? 1 : 37)) {
        orch_config *c = NULL;
        nd_alloc_fail_after(k);
        int rc = orch_config_parse(text, len, "orch.yaml", &c, &err);
        nd_alloc_fail_after(-1);
        orch_config_free(c);
        if (!rc) break;
        failed++;
        T_CHECKF(rc == ND_ENOMEM, "k=%ld: rc %d %s", k, rc, err.msg);
    }
    T_CHECK(failed > 0);
    nd_free(text);
}

int main(void) {
    T_RUN(test_example_file);
    T_RUN(test_json_same);
    T_RUN(test_malformed);
    T_RUN(test_alloc_failures);
    return t_done();
}
