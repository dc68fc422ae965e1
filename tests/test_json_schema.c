/* JSON Schema -> GBNF: conversion errors, hand-picked strings, and random walks through the
 * generated grammars whose every completed output must parse (cJSON) and validate against
 * the schema (a small validator below). */
#include <cjson/cJSON.h>
#include <stdio.h>
#include <string.h>

#include "gguf/gguf.h"
#include "sample/grammar.h"
#include "serve/json_schema.h"
#include "t.h"

/* ------------------------------------------------------------- a small validator */

static const cJSON *resolve(const cJSON *root, const char *ref) {
    if (!strcmp(ref, "#")) return root;
    if (!strncmp(ref, "#/definitions/", 14))
        return cJSON_GetObjectItemCaseSensitive(cJSON_GetObjectItemCaseSensitive(root, "definitions"), ref + 14);
    if (!strncmp(ref, "#/$defs/", 8))
        return cJSON_GetObjectItemCaseSensitive(cJSON_GetObjectItemCaseSensitive(root, "$defs"), ref + 8);
    return NULL;
}

static size_t utf8_len(const char *s) {
    size_t n = 0;
    for (; *s; s++) n += ((unsigned char)*s & 0xc0) != 0x80;
    return n;
}

static bool validate(const cJSON *root, const cJSON *s, const cJSON *v);

static bool type_ok(const cJSON *root, const cJSON *s, const char *t, const cJSON *v) {
    if (!strcmp(t, "null")) return cJSON_IsNull(v);
    if (!strcmp(t, "boolean")) return cJSON_IsBool(v);
    if (!strcmp(t, "number")) return cJSON_IsNumber(v);
    if (!strcmp(t, "integer")) return cJSON_IsNumber(v) && v->valuedouble == floor(v->valuedouble);
    if (!strcmp(t, "string")) {
        if (!cJSON_IsString(v)) return false;
        const cJSON *mn = cJSON_GetObjectItemCaseSensitive(s, "minLength");
        const cJSON *mx = cJSON_GetObjectItemCaseSensitive(s, "maxLength");
        size_t n = utf8_len(v->valuestring);
        return (!mn || n >= (size_t)mn->valuedouble) && (!mx || n <= (size_t)mx->valuedouble);
    }
    if (!strcmp(t, "array")) {
        if (!cJSON_IsArray(v)) return false;
        const cJSON *mn = cJSON_GetObjectItemCaseSensitive(s, "minItems");
        const cJSON *mx = cJSON_GetObjectItemCaseSensitive(s, "maxItems");
        int n = cJSON_GetArraySize(v);
        if ((mn && n < mn->valueint) || (mx && n > mx->valueint)) return false;
        const cJSON *items = cJSON_GetObjectItemCaseSensitive(s, "items"), *x;
        if (items) cJSON_ArrayForEach(x, v) if (!validate(root, items, x)) return false;
        return true;
    }
    if (!strcmp(t, "object")) {
        if (!cJSON_IsObject(v)) return false;
        const cJSON *props = cJSON_GetObjectItemCaseSensitive(s, "properties");
        const cJSON *req = cJSON_GetObjectItemCaseSensitive(s, "required");
        const cJSON *add = cJSON_GetObjectItemCaseSensitive(s, "additionalProperties"), *x;
        cJSON_ArrayForEach(x, req) if (!cJSON_GetObjectItemCaseSensitive(v, x->valuestring)) return false;
        cJSON_ArrayForEach(x, v) {
            const cJSON *ps = props ? cJSON_GetObjectItemCaseSensitive(props, x->string) : NULL;
            if (ps) {
                if (!validate(root, ps, x)) return false;
                continue;
            }
            bool declared_req = false;
            const cJSON *r;
            cJSON_ArrayForEach(r, req) declared_req |= !strcmp(r->valuestring, x->string);
            if (declared_req) continue;
            if (add ? cJSON_IsFalse(add) : props != NULL) return false; /* our default */
            if (cJSON_IsObject(add) && !validate(root, add, x)) return false;
        }
        return true;
    }
    return false;
}

static bool validate(const cJSON *root, const cJSON *s, const cJSON *v) {
    if (cJSON_IsTrue(s)) return true;
    const cJSON *k, *x;
    if ((k = cJSON_GetObjectItemCaseSensitive(s, "$ref"))) return validate(root, resolve(root, k->valuestring), v);
    if ((k = cJSON_GetObjectItemCaseSensitive(s, "const"))) return cJSON_Compare(k, v, true);
    if ((k = cJSON_GetObjectItemCaseSensitive(s, "enum"))) {
        cJSON_ArrayForEach(x, k) if (cJSON_Compare(x, v, true)) return true;
        return false;
    }
    if ((k = cJSON_GetObjectItemCaseSensitive(s, "anyOf")) || (k = cJSON_GetObjectItemCaseSensitive(s, "oneOf")) ||
        (k = cJSON_GetObjectItemCaseSensitive(s, "allOf"))) {
        cJSON_ArrayForEach(x, k) if (validate(root, x, v)) return true;
        return false;
    }
    const cJSON *t = cJSON_GetObjectItemCaseSensitive(s, "type");
    if (cJSON_IsString(t)) return type_ok(root, s, t->valuestring, v);
    if (cJSON_IsArray(t)) {
        cJSON_ArrayForEach(x, t) if (type_ok(root, s, x->valuestring, v)) return true;
        return false;
    }
    if (cJSON_GetObjectItemCaseSensitive(s, "properties") || cJSON_GetObjectItemCaseSensitive(s, "required"))
        return type_ok(root, s, "object", v);
    if (cJSON_GetObjectItemCaseSensitive(s, "items")) return type_ok(root, s, "array", v);
    return true;
}

/* ------------------------------------------------------------- helpers */

static grammar *schema_grammar(const char *schema, bool print) {
    nd_buf b = {0};
    nd_err err = {0};
    grammar *g = NULL;
    if (json_schema_to_gbnf(schema, strlen(schema), &b, &err)) {
        fprintf(stderr, "  convert failed: %s\n", err.msg);
        return NULL;
    }
    if (print) fprintf(stderr, "%s", b.data);
    g = grammar_parse(b.data, b.len, NULL, &err);
    if (!g) fprintf(stderr, "  grammar failed: %s\n%s", err.msg, b.data);
    nd_buf_free(&b);
    return g;
}

static bool matches(const grammar *g, const char *s) {
    grammar_state *st = grammar_state_new(g, NULL);
    bool ok = st && grammar_state_advance(st, s, strlen(s), NULL) == 0 && grammar_state_done(st);
    grammar_state_free(st);
    return ok;
}

/* Random walk over characters: 1 when it ended in an accepting state (text in out). */
static int random_walk(const grammar *g, unsigned long long *rs, size_t budget, nd_buf *out) {
    static const char *const extra[] = {"\n", "\t", "\xc3\xa9", "\xe4\xb8\xad", "\xf0\x9f\x98\x80"};
    enum { NA = 95 + 5 };
    char alpha[NA][5];
    for (int i = 0; i < 95; i++) alpha[i][0] = (char)(32 + i), alpha[i][1] = 0;
    for (int i = 0; i < 5; i++) strcpy(alpha[95 + i], extra[i]);
    grammar_state *st = grammar_state_new(g, NULL);
    if (!st) return 0;
    out->len = 0;
    int result = 0;
    for (size_t step = 0; step < 8 * budget + 400; step++) {
        if (grammar_state_done(st) &&
            (!grammar_state_can_continue(st) || out->len >= budget || t_rand_u64(rs) % 8 == 0)) {
            result = 1;
            break;
        }
        int ok[NA], n_ok = 0, pref[NA], n_pref = 0;
        for (int i = 0; i < NA; i++)
            if (grammar_state_accepts_bytes(st, alpha[i], strlen(alpha[i]))) ok[n_ok++] = i;
        if (!n_ok) break;
        if (out->len >= budget) { /* steer towards the end: close things, open nothing */
            for (int i = 0; i < n_ok; i++) {
                char c = alpha[ok[i]][0];
                if (c == '"' || c == '}' || c == ']') pref[n_pref++] = ok[i];
            }
            if (!n_pref)
                for (int i = 0; i < n_ok; i++)
                    if (!strchr("{[, \n\t\\", alpha[ok[i]][0])) pref[n_pref++] = ok[i];
        }
        int pick = n_pref ? pref[t_rand_u64(rs) % (unsigned)n_pref] : ok[t_rand_u64(rs) % (unsigned)n_ok];
        if (grammar_state_advance(st, alpha[pick], strlen(alpha[pick]), NULL)) break;
        nd_buf_append(out, alpha[pick], strlen(alpha[pick]));
    }
    nd_buf_append(out, "", 1);
    out->len--;
    grammar_state_free(st);
    return result;
}

/* ------------------------------------------------------------- schemas */

static const char *const k_schemas[] = {
    "{\"type\":\"object\",\"properties\":{\"name\":{\"type\":\"string\",\"minLength\":1,\"maxLength\":8},"
    "\"age\":{\"type\":\"integer\"},\"tags\":{\"type\":\"array\",\"items\":{\"type\":\"string\","
    "\"enum\":[\"a\",\"b\",\"c d\"]},\"minItems\":1,\"maxItems\":3},\"ok\":{\"type\":\"boolean\"},"
    "\"nick\":{\"type\":[\"string\",\"null\"]}},\"required\":[\"name\",\"age\"]}",

    "{\"$defs\":{\"node\":{\"type\":\"object\",\"properties\":{\"v\":{\"type\":\"number\"},"
    "\"kids\":{\"type\":\"array\",\"items\":{\"$ref\":\"#/$defs/node\"},\"maxItems\":2}},"
    "\"required\":[\"v\"]}},\"$ref\":\"#/$defs/node\"}",

    "{\"anyOf\":[{\"type\":\"integer\"},{\"type\":\"object\",\"properties\":{\"x\":{\"const\":\"y\\\"z\"}},"
    "\"required\":[\"x\"]}]}",

    "{\"type\":\"object\",\"properties\":{\"a\":{\"type\":\"null\"}},\"additionalProperties\":{\"type\":\"integer\"}}",

    "{\"type\":\"object\",\"properties\":{\"p\":{\"type\":\"integer\"},\"q\":{\"type\":\"integer\"},"
    "\"r\":{\"type\":\"integer\"}}}",

    "{\"type\":\"array\",\"items\":{\"type\":\"number\"},\"minItems\":2,\"maxItems\":4}",

    "{\"enum\":[1,\"two\",null,[3],{\"k\":true},\"\\u00e9\\n\"]}",

    "{\"type\":\"object\"}",

    "{\"type\":\"string\",\"minLength\":2,\"title\":\"annotation\",\"format\":\"email\"}",

    "{\"definitions\":{\"p\":{\"type\":\"object\",\"properties\":{\"x\":{\"type\":\"integer\"},"
    "\"y/z\":{\"type\":\"boolean\"}},\"required\":[\"x\",\"y/z\"]}},\"type\":\"array\","
    "\"items\":{\"$ref\":\"#/definitions/p\"},\"maxItems\":3}",

    "{\"type\":\"object\",\"properties\":{\"id\":{\"type\":\"integer\"}},\"required\":[\"id\",\"extra\"],"
    "\"additionalProperties\":false}",

    "{\"oneOf\":[{\"type\":\"boolean\"},{\"type\":\"array\",\"maxItems\":0}],\"description\":\"x\"}",

    "true",

    "{\"type\":\"object\",\"properties\":{\"self\":{\"$ref\":\"#\"}}}",
};
enum { N_SCHEMAS = sizeof k_schemas / sizeof k_schemas[0] };

static void test_random_walks(void) {
    unsigned long long rs = 12345;
    nd_buf out = {0};
    for (int i = 0; i < N_SCHEMAS; i++) {
        grammar *g = schema_grammar(k_schemas[i], false);
        T_CHECKF(g != NULL, "schema %d", i);
        if (!g) continue;
        cJSON *schema = cJSON_Parse(k_schemas[i]);
        int complete = 0, walks = 100;
        for (int w = 0; w < walks; w++) {
            if (!random_walk(g, &rs, 10 + (size_t)(t_rand_u64(&rs) % 60), &out)) continue;
            complete++;
            cJSON *v = cJSON_ParseWithLength(out.data, out.len);
            T_CHECKF(v != NULL, "schema %d: output does not parse: %s", i, out.data);
            if (v) T_CHECKF(validate(schema, schema, v), "schema %d: output does not validate: %s", i, out.data);
            cJSON_Delete(v);
        }
        T_CHECKF(complete >= walks / 2, "schema %d: only %d/%d walks ended", i, complete, walks);
        cJSON_Delete(schema);
        grammar_free(g);
    }
    nd_buf_free(&out);
}

static void test_strings(void) {
    static const struct { int schema; const char *yes[6], *no[6]; } cases[] = {
        {0, {"{\"name\": \"bob\", \"age\": 3}", "{\"name\":\"b\",\"age\":-7,\"tags\":[\"c d\"],\"ok\":true,\"nick\":null}",
             "{\n  \"name\": \"bob\",\n  \"age\": 3\n}"},
         {"{\"age\": 3, \"name\": \"bob\"}", "{\"name\": \"bob\"}", "{\"name\": \"bob\", \"age\": 3, \"x\": 1}",
          "{\"name\": \"\", \"age\": 3}", "{\"name\": \"b\", \"age\": 3, \"tags\": []}", "{\"name\": \"b\", \"age\": 3.5}"}},
        {4, {"{}", "{\"q\": 1}", "{\"p\": 1, \"r\": 2}", "{\"p\":1,\"q\":2,\"r\":3}"},
         {"{\"q\": 1, \"p\": 2}", "{,\"q\": 1}", "{\"p\": 1,}", "{\"s\": 1}"}},
        {3, {"{\"a\": null, \"b\": 2, \"c\": 3}", "{\"z\": 1}", "{}"}, {"{\"b\": 2, \"a\": null}", "{\"b\": \"x\"}"}},
        {5, {"[1, 2]", "[1,2,3,4.5e7]"}, {"[1]", "[1,2,3,4,5]", "[]"}},
        {6, {"1", "\"two\"", "null", "[3]", "{\"k\":true}", "\"\xc3\xa9\\n\""}, {"2", "[3 ]", "\"three\""}},
        {11, {"true", "[]"}, {"[1]", "null"}},
        {10, {"{\"id\": 1, \"extra\": [1]}"}, {"{\"id\": 1}", "{\"extra\": 1, \"id\": 1}"}},
    };
    for (size_t c = 0; c < sizeof cases / sizeof cases[0]; c++) {
        grammar *g = schema_grammar(k_schemas[cases[c].schema], false);
        if (!g) { T_CHECK(0); continue; }
        for (int k = 0; k < 6 && cases[c].yes[k]; k++)
            T_CHECKF(matches(g, cases[c].yes[k]), "schema %d should accept %s", cases[c].schema, cases[c].yes[k]);
        for (int k = 0; k < 6 && cases[c].no[k]; k++)
            T_CHECKF(!matches(g, cases[c].no[k]), "schema %d should reject %s", cases[c].schema, cases[c].no[k]);
        grammar_free(g);
    }
}

static void test_errors(void) {
    static const struct { const char *schema; int code; const char *want; } cases[] = {
        {"{\"type\":\"object\",\"properties\":{\"x\":{\"type\":\"string\",\"pattern\":\"^a\"}}}",
         ND_EUNSUPPORTED, "keyword 'pattern' is not supported (it restricts the language) at /properties/x"},
        {"{\"type\":\"array\",\"items\":{\"type\":\"integer\",\"minimum\":0}}", ND_EUNSUPPORTED, "'minimum'"},
        {"{\"$ref\":\"#/$defs/nope\"}", ND_ENOTFOUND, "does not resolve"},
        {"{\"$ref\":\"http://x/y.json\"}", ND_EUNSUPPORTED, "does not resolve"},
        {"{\"type\":\"array\",\"minItems\":3,\"maxItems\":2}", ND_EUNSUPPORTED, "minItems > maxItems"},
        {"{\"type\":\"string\",\"maxLength\":1e9}", ND_ERANGE, "maxLength"},
        {"{\"type\":\"string\",\"maxLength\":-1}", ND_EFORMAT, "non-negative integer"},
        {"{\"type\":\"strnig\"}", ND_EFORMAT, "unknown type 'strnig'"},
        {"{\"enum\":[]}", ND_EFORMAT, "'enum' must be a non-empty array"},
        {"{\"type\": ", ND_EFORMAT, "not valid JSON"},
        {"42", ND_EFORMAT, "must be an object or a boolean"},
        {"false", ND_EUNSUPPORTED, "no value fits"},
        {"{\"allOf\":[{\"type\":\"string\"},{\"maxLength\":3}]}", ND_EUNSUPPORTED, "allOf"},
        {"{\"type\":\"array\",\"items\":[{\"type\":\"string\"}]}", ND_EUNSUPPORTED, "tuple"},
        {"{\"type\":\"array\",\"uniqueItems\":true}", ND_EUNSUPPORTED, "uniqueItems"},
    };
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        nd_buf b = {0};
        nd_err err = {0};
        int rc = json_schema_to_gbnf(cases[i].schema, strlen(cases[i].schema), &b, &err);
        T_CHECKF(rc == cases[i].code, "case %zu: rc %d (%s)", i, rc, err.msg);
        T_CHECKF(strstr(err.msg, cases[i].want) != NULL, "case %zu: \"%s\" lacks \"%s\"", i, err.msg, cases[i].want);
        T_CHECK(b.len == 0);
        nd_buf_free(&b);
    }
    /* deep nesting is refused, not a stack overflow */
    nd_buf deep = {0};
    for (int i = 0; i < 200; i++) nd_buf_printf(&deep, "{\"type\":\"array\",\"items\":");
    nd_buf_printf(&deep, "true");
    for (int i = 0; i < 200; i++) nd_buf_printf(&deep, "}");
    nd_buf b = {0};
    nd_err err = {0};
    T_EQ_INT(json_schema_to_gbnf(deep.data, deep.len, &b, &err), ND_ERANGE);
    nd_buf_free(&deep);
    nd_buf_free(&b);
}

static void test_any_object(void) {
    nd_buf b = {0};
    T_EQ_INT(json_schema_any_object_gbnf(&b, NULL), 0);
    grammar *g = grammar_parse(b.data, b.len, NULL, NULL);
    T_CHECK(g != NULL);
    if (g) {
        T_CHECK(matches(g, "{\"a\": [1, {\"b\": null}], \"c\": \"\\u00e9\"}"));
        T_CHECK(!matches(g, "[1]") && !matches(g, "\"x\"") && !matches(g, "{\"a\": \"\\ud800\"}"));
        unsigned long long rs = 99;
        nd_buf out = {0};
        for (int w = 0; w < 200; w++)
            if (random_walk(g, &rs, 40, &out)) {
                cJSON *v = cJSON_ParseWithLength(out.data, out.len);
                T_CHECKF(cJSON_IsObject(v), "not an object: %s", out.data);
                cJSON_Delete(v);
            }
        nd_buf_free(&out);
    }
    grammar_free(g);
    nd_buf_free(&b);
}

/* Constrained generation with a real vocabulary and random logits. */
static void test_generate_gpt2(void) {
    const char *fx = t_fixtures();
    if (!fx) T_SKIP("no fixtures");
    char path[1024];
    snprintf(path, sizeof path, "%s/vocab/ggml-vocab-gpt-2.gguf", fx);
    nd_err err = {0};
    gguf_ctx *gg = gguf_open(path, &err);
    if (!gg) T_SKIP("%s", err.msg);
    tok_vocab *v = tok_load(gg, &err);
    gguf_close(gg);
    if (!v) { T_CHECK(0); return; }
    int32_t nv = tok_n_vocab(v);
    float *logits = nd_malloc((size_t)nv * sizeof *logits);
    unsigned long long rs = 4242;
    int complete = 0, runs = 0;
    for (int si = 0; si < N_SCHEMAS; si++) {
        grammar *g = schema_grammar(k_schemas[si], false);
        cJSON *schema = cJSON_Parse(k_schemas[si]);
        for (int r = 0; r < 3 && g; r++, runs++) {
            smp_params p = smp_default_params();
            p.seed = (uint64_t)(si * 10 + r);
            if (r == 0) p.temp = 0;
            smp_chain *s = smp_new(&p, nv, NULL);
            grammar_state *st = grammar_state_new(g, NULL);
            nd_buf out = {0};
            bool ended = false;
            for (int t = 0; t < 120; t++) {
                for (int32_t i = 0; i < nv; i++) logits[i] = 3.0f * t_rand_f(&rs);
                if (t > 60) /* push towards the end: favour closing tokens and EOG */
                    for (int32_t i = 0; i < nv; i++) {
                        const char *pc;
                        size_t n;
                        tok_piece_view(v, i, false, &pc, &n);
                        if (tok_is_eog(v, i) || (n && strchr("\"}]", pc[n - 1]))) logits[i] += 6;
                    }
                int32_t id = smp_sample_constrained(s, logits, st, v, &err);
                T_CHECKF(id >= 0, "sample: %s", err.msg);
                if (id < 0) break;
                if (tok_is_eog(v, id)) { ended = true; break; }
                const char *pc;
                size_t n;
                tok_piece_view(v, id, false, &pc, &n);
                nd_buf_append(&out, pc, n);
                T_EQ_INT(grammar_state_accept_token(st, v, id, &err), 0);
                smp_accept(s, id);
            }
            if (ended) {
                complete++;
                cJSON *val = cJSON_ParseWithLength(out.data ? out.data : "", out.len);
                T_CHECKF(val != NULL, "schema %d: does not parse: %.*s", si, (int)out.len, out.data);
                if (val) T_CHECKF(validate(schema, schema, val), "schema %d: invalid: %.*s", si, (int)out.len, out.data);
                cJSON_Delete(val);
            }
            nd_buf_free(&out);
            grammar_state_free(st);
            smp_free(s);
        }
        cJSON_Delete(schema);
        grammar_free(g);
    }
    fprintf(stderr, "  %d/%d constrained generations ended\n", complete, runs);
    T_CHECKF(complete >= runs / 3, "only %d/%d generations ended", complete, runs);
    nd_free(logits);
    tok_free(v);
}

int main(void) {
    T_RUN(test_errors);
    T_RUN(test_strings);
    T_RUN(test_random_walks);
    T_RUN(test_any_object);
    T_RUN(test_generate_gpt2);
    return t_done();
}
