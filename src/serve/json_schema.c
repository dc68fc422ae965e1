/* JSON Schema -> GBNF. Each schema node becomes a GBNF expression; objects, arrays and
 * $ref targets get their own rules (named after their path), primitives are shared rules
 * emitted once at the end. See json_schema.h for what is supported. */
#include <cjson/cJSON.h>
#include <math.h>
#include <stdio.h>
#include <string.h>

#include "sample/grammar.h"
#include "serve/json_schema.h"

#define JS_MAX_DEPTH 64

enum { /* shared primitive rules */
    P_SPACE = 1 << 0, P_BOOLEAN = 1 << 1, P_NULL = 1 << 2, P_NUMBER = 1 << 3, P_INTEGER = 1 << 4,
    P_CHAR = 1 << 5, P_STRING = 1 << 6, P_VALUE = 1 << 7, P_OBJECT = 1 << 8, P_ARRAY = 1 << 9,
    P_INTPART = 1 << 10,
};

static const struct { unsigned bit, deps; const char *name, *body; } k_prims[] = {
    {P_SPACE, 0, "space", "| \" \" | \"\\n\" [ \\t]{0,20}"},
    {P_BOOLEAN, P_SPACE, "boolean", "(\"true\" | \"false\") space"},
    {P_NULL, P_SPACE, "null", "\"null\" space"},
    {P_INTPART, 0, "integral-part", "[0] | [1-9] [0-9]{0,15}"},
    {P_NUMBER, P_SPACE | P_INTPART, "number",
     "\"-\"? integral-part (\".\" [0-9]{1,16})? ([eE] [-+]? integral-part)? space"},
    {P_INTEGER, P_SPACE | P_INTPART, "integer", "\"-\"? integral-part space"},
    {P_CHAR, 0, "char",
     "[^\"\\\\\\x00-\\x1F] | \"\\\\\" ([\"\\\\/bfnrt] | \"u\" ([0-9a-cA-CefEF] [0-9a-fA-F]{3} | "
     "[dD] [0-7] [0-9a-fA-F]{2}))"},
    {P_STRING, P_CHAR | P_SPACE, "string", "\"\\\"\" char* \"\\\"\" space"},
    {P_VALUE, P_OBJECT | P_ARRAY | P_STRING | P_NUMBER | P_BOOLEAN | P_NULL, "value",
     "object | array | string | number | boolean | null"},
    {P_OBJECT, P_STRING | P_VALUE | P_SPACE, "object",
     "\"{\" space (string \":\" space value (\",\" space string \":\" space value)*)? \"}\" space"},
    {P_ARRAY, P_VALUE | P_SPACE, "array",
     "\"[\" space (value (\",\" space value)*)? \"]\" space"},
};

/* Keywords that restrict the language and are not implemented. */
static const char *const k_unsupported[] = {
    "pattern", "patternProperties", "propertyNames", "minProperties", "maxProperties",
    "minimum", "maximum", "exclusiveMinimum", "exclusiveMaximum", "multipleOf",
    "dependencies", "dependentRequired", "dependentSchemas", "if", "then", "else", "not",
    "contains", "minContains", "maxContains", "prefixItems", "additionalItems",
    "unevaluatedProperties", "unevaluatedItems", "$dynamicRef", "$recursiveRef",
};

typedef struct jref {
    char *ref, *name;
} jref;

typedef struct js {
    const cJSON *root;
    nd_buf rules; /* rule definitions, one per line */
    nd_err *err;
    char **names;
    size_t n_names, cap_names;
    jref *refs;
    size_t n_refs, cap_refs;
    unsigned prims;
    int depth;
} js;

static int js_oom(js *c) { return nd_seterr(c->err, ND_ENOMEM, "json_schema: out of memory"); }

static int js_fail(js *c, int code, const char *path, const char *what) {
    return nd_seterr(c->err, code, "json_schema: %s at %s", what, *path ? path : "/");
}

static int grow_arr(void **p, size_t *cap, size_t need, size_t elem) {
    if (need <= *cap) return 0;
    size_t nc = *cap ? *cap * 2 : 16;
    while (nc < need) nc *= 2;
    void *q = nd_realloc(*p, nc * elem);
    if (!q) return ND_ENOMEM;
    *p = q;
    *cap = nc;
    return 0;
}

/* ------------------------------------------------------------- text helpers */

/* GBNF string literal for raw UTF-8 bytes s[0..n). */
static int lit(nd_buf *b, const char *s, size_t n) {
    if (nd_buf_append(b, "\"", 1)) return ND_ENOMEM;
    for (size_t i = 0; i < n; i++) {
        uint8_t ch = (uint8_t)s[i];
        int rc;
        if (ch == '"' || ch == '\\') rc = nd_buf_printf(b, "\\%c", ch);
        else if (ch < 0x20 || ch == 0x7f) rc = nd_buf_printf(b, "\\x%02X", ch);
        else rc = nd_buf_append(b, &s[i], 1);
        if (rc) return ND_ENOMEM;
    }
    return nd_buf_append(b, "\"", 1) ? ND_ENOMEM : 0;
}

/* GBNF literal of the compact JSON text of a value (enum / const members). */
static int lit_json(js *c, nd_buf *b, const cJSON *v) {
    char *t = cJSON_PrintUnformatted(v);
    if (!t) return js_oom(c);
    if (!nd_utf8_valid(t, strlen(t))) {
        cJSON_free(t);
        return nd_seterr(c->err, ND_EFORMAT, "json_schema: invalid UTF-8 in a string");
    }
    int rc = lit(b, t, strlen(t));
    cJSON_free(t);
    return rc ? js_oom(c) : 0;
}

/* A rule name made from a hint, unique in this grammar. */
static int unique_name(js *c, const char *hint, char **out) {
    nd_buf b = {0};
    for (const char *p = hint; *p && b.len < 80; p++) {
        char ch = *p;
        bool ok = (ch >= 'a' && ch <= 'z') || (ch >= 'A' && ch <= 'Z') || (ch >= '0' && ch <= '9');
        if (nd_buf_append(&b, ok ? &ch : "-", 1)) goto oom;
    }
    if (!b.len && nd_buf_append(&b, "r", 1)) goto oom;
    size_t base = b.len;
    for (int k = 1;; k++) {
        bool taken = false;
        for (size_t i = 0; i < c->n_names && !taken; i++) taken = strcmp(c->names[i], b.data) == 0;
        for (size_t i = 0; i < sizeof k_prims / sizeof k_prims[0] && !taken; i++)
            taken = strcmp(k_prims[i].name, b.data) == 0;
        if (!taken) break;
        b.len = base;
        if (nd_buf_printf(&b, "-%d", k)) goto oom;
    }
    if (grow_arr((void **)&c->names, &c->cap_names, c->n_names + 1, sizeof *c->names)) goto oom;
    if (!(c->names[c->n_names] = nd_strndup(b.data, b.len))) goto oom;
    *out = c->names[c->n_names++];
    nd_buf_free(&b);
    return 0;
oom:
    nd_buf_free(&b);
    return js_oom(c);
}

static int define(js *c, const char *name, const nd_buf *body) {
    if (nd_buf_printf(&c->rules, "%s ::= %.*s\n", name, (int)body->len, body->data ? body->data : ""))
        return js_oom(c);
    return 0;
}

static int use_prim(js *c, nd_buf *e, unsigned bit, const char *name) {
    c->prims |= bit;
    return nd_buf_printf(e, "%s", name) ? js_oom(c) : 0;
}

/* Child JSON pointer: path + "/" + key (with ~ and / escaped). */
static int child_path(nd_buf *b, const char *path, const char *k1, const char *k2) {
    b->len = 0;
    if (nd_buf_printf(b, "%s/%s", path, k1)) return ND_ENOMEM;
    if (k2) {
        if (nd_buf_append(b, "/", 1)) return ND_ENOMEM;
        for (const char *p = k2; *p; p++) {
            int rc = *p == '~' ? nd_buf_append(b, "~0", 2) : *p == '/' ? nd_buf_append(b, "~1", 2)
                                                                       : nd_buf_append(b, p, 1);
            if (rc) return ND_ENOMEM;
        }
    }
    return nd_buf_append(b, "", 1) ? ND_ENOMEM : 0; /* NUL-terminate */
}

/* Rule-name hint for a child: parent hint + "-" + key. */
static int child_hint(nd_buf *b, const char *hint, const char *key) {
    b->len = 0;
    if (nd_buf_printf(b, "%s-%s", hint, key) || nd_buf_append(b, "", 1)) return ND_ENOMEM;
    return 0;
}

/* ------------------------------------------------------------- schemas */

static int schema_expr(js *c, const cJSON *s, const char *path, const char *hint, nd_buf *e);

static int get_count(js *c, const cJSON *s, const char *key, const char *path, uint32_t *out,
                     bool *present) {
    const cJSON *v = cJSON_GetObjectItemCaseSensitive(s, key);
    *present = v != NULL;
    if (!v) return 0;
    char what[96];
    if (!cJSON_IsNumber(v) || v->valuedouble < 0 || v->valuedouble != floor(v->valuedouble)) {
        snprintf(what, sizeof what, "'%s' must be a non-negative integer", key);
        return js_fail(c, ND_EFORMAT, path, what);
    }
    if (v->valuedouble > GRAMMAR_MAX_REPEAT) {
        snprintf(what, sizeof what, "'%s' %.0f is larger than %d", key, v->valuedouble,
                 GRAMMAR_MAX_REPEAT);
        return js_fail(c, ND_ERANGE, path, what);
    }
    *out = (uint32_t)v->valuedouble;
    return 0;
}

/* e += item (sep item){lo,hi}, as a whole optional when min == 0; hi = UINT32_MAX: no bound. */
static int repeat_list(js *c, nd_buf *e, const char *item, const char *sep, uint32_t min, uint32_t max) {
    int rc = 0;
    if (max == 0) return 0;
    if (min == 0) rc |= nd_buf_append(e, "(", 1);
    rc |= nd_buf_printf(e, "%s", item);
    uint32_t lo = min ? min - 1 : 0;
    if (max == UINT32_MAX) rc |= nd_buf_printf(e, " (%s %s)%s", sep, item, lo ? "" : "*");
    if (max == UINT32_MAX && lo) rc |= nd_buf_printf(e, "{%u,}", lo);
    if (max != UINT32_MAX && max - 1 > 0) rc |= nd_buf_printf(e, " (%s %s){%u,%u}", sep, item, lo, max - 1);
    if (min == 0) rc |= nd_buf_append(e, ")?", 2);
    return rc ? js_oom(c) : 0;
}

static int string_expr(js *c, const cJSON *s, const char *path, nd_buf *e) {
    uint32_t min = 0, max = UINT32_MAX;
    bool has_min, has_max;
    int rc;
    if ((rc = get_count(c, s, "minLength", path, &min, &has_min)) ||
        (rc = get_count(c, s, "maxLength", path, &max, &has_max)))
        return rc;
    if (!has_min && !has_max) return use_prim(c, e, P_STRING, "string");
    if (!has_max) max = UINT32_MAX;
    if (max < min) return js_fail(c, ND_EUNSUPPORTED, path, "minLength > maxLength (no string fits)");
    c->prims |= P_CHAR | P_SPACE;
    if (max == UINT32_MAX) rc = nd_buf_printf(e, "\"\\\"\" char{%u,} \"\\\"\" space", min);
    else rc = nd_buf_printf(e, "\"\\\"\" char{%u,%u} \"\\\"\" space", min, max);
    return rc ? js_oom(c) : 0;
}

static int array_expr(js *c, const cJSON *s, const char *path, const char *hint, nd_buf *e) {
    uint32_t min = 0, max = UINT32_MAX;
    bool has_min, has_max;
    int rc;
    if ((rc = get_count(c, s, "minItems", path, &min, &has_min)) ||
        (rc = get_count(c, s, "maxItems", path, &max, &has_max)))
        return rc;
    if (!has_max) max = UINT32_MAX;
    if (max < min) return js_fail(c, ND_EUNSUPPORTED, path, "minItems > maxItems (no array fits)");
    const cJSON *items = cJSON_GetObjectItemCaseSensitive(s, "items");
    const cJSON *uniq = cJSON_GetObjectItemCaseSensitive(s, "uniqueItems");
    if (cJSON_IsTrue(uniq))
        return js_fail(c, ND_EUNSUPPORTED, path, "keyword 'uniqueItems' is not supported");
    if (cJSON_IsArray(items))
        return js_fail(c, ND_EUNSUPPORTED, path, "tuple 'items' (an array) is not supported");
    nd_buf item = {0}, p = {0}, h = {0};
    if (items) {
        if (child_path(&p, path, "items", NULL) || child_hint(&h, hint, "item")) rc = js_oom(c);
        else rc = schema_expr(c, items, p.data, h.data, &item);
    } else {
        c->prims |= P_VALUE;
        rc = nd_buf_printf(&item, "value") ? js_oom(c) : 0;
    }
    if (!rc && nd_buf_append(&item, "", 1)) rc = js_oom(c);
    nd_buf body = {0};
    char *name = NULL;
    if (!rc) {
        c->prims |= P_SPACE;
        nd_buf wrapped = {0};
        if (nd_buf_printf(&wrapped, "(%s)", item.data) || nd_buf_printf(&body, "\"[\" space "))
            rc = js_oom(c);
        if (!rc) rc = repeat_list(c, &body, wrapped.data, "\",\" space", min, max);
        if (!rc && nd_buf_printf(&body, " \"]\" space")) rc = js_oom(c);
        nd_buf_free(&wrapped);
    }
    if (!rc) rc = unique_name(c, hint, &name);
    if (!rc) rc = define(c, name, &body);
    if (!rc && nd_buf_printf(e, "%s", name)) rc = js_oom(c);
    nd_buf_free(&item); nd_buf_free(&p); nd_buf_free(&h); nd_buf_free(&body);
    return rc;
}

/* Key-value expression for one property: "\"key\"" space ":" space value. */
static int kv_expr(js *c, const char *key, const cJSON *schema, const char *path, const char *hint,
                   nd_buf *e) {
    cJSON *k = cJSON_CreateString(key);
    if (!k) return js_oom(c);
    int rc = lit_json(c, e, k);
    cJSON_Delete(k);
    if (!rc && nd_buf_printf(e, " space \":\" space ")) rc = js_oom(c);
    if (rc) return rc;
    c->prims |= P_SPACE;
    if (!schema) return use_prim(c, e, P_VALUE, "value");
    nd_buf p = {0}, h = {0};
    if (child_path(&p, path, "properties", key) || child_hint(&h, hint, key)) rc = js_oom(c);
    else {
        rc = nd_buf_append(e, "(", 1) ? js_oom(c) : 0;
        if (!rc) rc = schema_expr(c, schema, p.data, h.data, e);
        if (!rc && nd_buf_append(e, ")", 1)) rc = js_oom(c);
    }
    nd_buf_free(&p);
    nd_buf_free(&h);
    return rc;
}

typedef struct jprop {
    const char *key;
    const cJSON *schema; /* NULL: any value */
    bool required;
} jprop;

static bool is_required(const cJSON *req, const char *key) {
    const cJSON *r;
    cJSON_ArrayForEach(r, req) if (cJSON_IsString(r) && strcmp(r->valuestring, key) == 0) return true;
    return false;
}

/* Object: properties in order, optional ones may be skipped, commas right. With k props,
 *   T_i = rest after something was written:  req: "," kv_i T_i+1   opt: ("," kv_i)? T_i+1
 *   F_i = rest when nothing was written yet: req: kv_i T_i+1       opt: kv_i T_i+1 | F_i+1
 *   T_k = ("," extra)*,  F_k = (extra ("," extra)*)?   (extra only if additionalProperties)
 *   object = "{" space F_0 "}" space */
static int object_expr(js *c, const cJSON *s, const char *path, const char *hint, nd_buf *e) {
    const cJSON *props = cJSON_GetObjectItemCaseSensitive(s, "properties");
    const cJSON *req = cJSON_GetObjectItemCaseSensitive(s, "required");
    const cJSON *add = cJSON_GetObjectItemCaseSensitive(s, "additionalProperties");
    if (props && !cJSON_IsObject(props)) return js_fail(c, ND_EFORMAT, path, "'properties' must be an object");
    if (req && !cJSON_IsArray(req)) return js_fail(c, ND_EFORMAT, path, "'required' must be an array");
    if (add && !cJSON_IsBool(add) && !cJSON_IsObject(add))
        return js_fail(c, ND_EFORMAT, path, "'additionalProperties' must be a boolean or a schema");
    bool extra = add ? !cJSON_IsFalse(add) : props == NULL;
    jprop *pr = NULL;
    size_t np = 0, cap = 0;
    int rc = 0;
    const cJSON *it;
    cJSON_ArrayForEach(it, props) {
        if (grow_arr((void **)&pr, &cap, np + 1, sizeof *pr)) { rc = js_oom(c); goto out; }
        pr[np++] = (jprop){it->string, it, is_required(req, it->string)};
    }
    cJSON_ArrayForEach(it, req) {
        if (!cJSON_IsString(it)) { rc = js_fail(c, ND_EFORMAT, path, "'required' must list strings"); goto out; }
        if (props && cJSON_GetObjectItemCaseSensitive(props, it->valuestring)) continue;
        bool dup = false;
        for (size_t i = 0; i < np; i++) dup |= strcmp(pr[i].key, it->valuestring) == 0;
        if (dup) continue;
        if (grow_arr((void **)&pr, &cap, np + 1, sizeof *pr)) { rc = js_oom(c); goto out; }
        pr[np++] = (jprop){it->valuestring, NULL, true};
    }
    c->prims |= P_SPACE;
    nd_buf xkv = {0}, body = {0}, kv = {0}, tmp = {0};
    char *name = NULL;
    if ((rc = unique_name(c, hint, &name))) goto out;
    if (extra) { /* extra key-value pair */
        c->prims |= P_STRING;
        if (nd_buf_printf(&xkv, "string \":\" space ")) { rc = js_oom(c); goto out2; }
        if (cJSON_IsObject(add)) {
            nd_buf p = {0}, h = {0};
            if (child_path(&p, path, "additionalProperties", NULL) || child_hint(&h, hint, "extra"))
                rc = js_oom(c);
            else if (!(rc = nd_buf_append(&xkv, "(", 1) ? js_oom(c) : 0) &&
                     !(rc = schema_expr(c, add, p.data, h.data, &xkv)))
                rc = nd_buf_append(&xkv, ")", 1) ? js_oom(c) : 0;
            nd_buf_free(&p);
            nd_buf_free(&h);
            if (rc) goto out2;
        } else if ((rc = use_prim(c, &xkv, P_VALUE, "value"))) goto out2;
        if (nd_buf_append(&xkv, "", 1)) { rc = js_oom(c); goto out2; }
    }
    bool all_req = !extra;
    for (size_t i = 0; i < np; i++) all_req &= pr[i].required;
    if (all_req) { /* the simple, readable case: a fixed sequence */
        if (nd_buf_printf(&body, "\"{\" space")) { rc = js_oom(c); goto out2; }
        for (size_t i = 0; i < np; i++) {
            if (i && nd_buf_printf(&body, " \",\" space")) { rc = js_oom(c); goto out2; }
            if (nd_buf_append(&body, " ", 1) ||
                (rc = kv_expr(c, pr[i].key, pr[i].schema, path, hint, &body)))
                goto out2;
        }
        if (nd_buf_printf(&body, " \"}\" space")) { rc = js_oom(c); goto out2; }
        rc = define(c, name, &body);
        goto out2;
    }
    /* T_k and F_k, then i = k-1 .. 0 */
    char tname[128], fname[128];
    snprintf(tname, sizeof tname, "%s-t%zu", name, np);
    snprintf(fname, sizeof fname, "%s-f%zu", name, np);
    if (extra ? nd_buf_printf(&tmp, "(\",\" space %s)*", xkv.data) : nd_buf_printf(&tmp, "\"\""))
        { rc = js_oom(c); goto out2; }
    if ((rc = define(c, tname, &tmp))) goto out2;
    tmp.len = 0;
    if (extra ? nd_buf_printf(&tmp, "(%s (\",\" space %s)*)?", xkv.data, xkv.data) : nd_buf_printf(&tmp, "\"\""))
        { rc = js_oom(c); goto out2; }
    if ((rc = define(c, fname, &tmp))) goto out2;
    for (size_t i = np; i-- > 0;) {
        kv.len = 0;
        if ((rc = kv_expr(c, pr[i].key, pr[i].schema, path, hint, &kv)) || nd_buf_append(&kv, "", 1))
            { rc = rc ? rc : js_oom(c); goto out2; }
        char t2[128], f2[128];
        snprintf(t2, sizeof t2, "%s-t%zu", name, i);
        snprintf(f2, sizeof f2, "%s-f%zu", name, i);
        tmp.len = 0;
        if (pr[i].required ? nd_buf_printf(&tmp, "\",\" space %s %s", kv.data, tname)
                           : nd_buf_printf(&tmp, "(\",\" space %s)? %s", kv.data, tname))
            { rc = js_oom(c); goto out2; }
        if (i && (rc = define(c, t2, &tmp))) goto out2; /* T_0 is never used */
        tmp.len = 0;
        if (pr[i].required ? nd_buf_printf(&tmp, "%s %s", kv.data, tname)
                           : nd_buf_printf(&tmp, "%s %s | %s", kv.data, tname, fname))
            { rc = js_oom(c); goto out2; }
        if ((rc = define(c, f2, &tmp))) goto out2;
        memcpy(tname, t2, sizeof tname);
        memcpy(fname, f2, sizeof fname);
    }
    if (nd_buf_printf(&body, "\"{\" space %s \"}\" space", fname)) { rc = js_oom(c); goto out2; }
    rc = define(c, name, &body);
out2:
    if (!rc && nd_buf_printf(e, "%s", name)) rc = js_oom(c);
    nd_buf_free(&xkv); nd_buf_free(&body); nd_buf_free(&kv); nd_buf_free(&tmp);
out:
    nd_free(pr);
    return rc;
}

/* enum / const: alternation of the exact compact JSON texts. */
static int literal_expr(js *c, const cJSON *vals, bool single, const char *path, nd_buf *e) {
    int rc = nd_buf_append(e, "(", 1) ? js_oom(c) : 0;
    if (single) rc = rc ? rc : lit_json(c, e, vals);
    else {
        if (!cJSON_IsArray(vals) || !cJSON_GetArraySize(vals))
            return js_fail(c, ND_EFORMAT, path, "'enum' must be a non-empty array");
        const cJSON *v;
        bool first = true;
        cJSON_ArrayForEach(v, vals) {
            if (!first && !rc && nd_buf_printf(e, " | ")) rc = js_oom(c);
            if (!rc) rc = lit_json(c, e, v);
            first = false;
        }
    }
    c->prims |= P_SPACE;
    if (!rc && nd_buf_printf(e, ") space")) rc = js_oom(c);
    return rc;
}

static int alt_expr(js *c, const cJSON *list, const char *key, const char *path, const char *hint,
                    nd_buf *e) {
    if (!cJSON_IsArray(list) || !cJSON_GetArraySize(list)) {
        char what[64];
        snprintf(what, sizeof what, "'%s' must be a non-empty array", key);
        return js_fail(c, ND_EFORMAT, path, what);
    }
    int rc = nd_buf_append(e, "(", 1) ? js_oom(c) : 0, i = 0;
    const cJSON *v;
    nd_buf p = {0}, h = {0};
    cJSON_ArrayForEach(v, list) {
        char idx[24];
        snprintf(idx, sizeof idx, "%d", i);
        if (!rc && i && nd_buf_printf(e, " | ")) rc = js_oom(c);
        if (!rc && (child_path(&p, path, key, idx) || child_hint(&h, hint, idx))) rc = js_oom(c);
        if (!rc) rc = schema_expr(c, v, p.data, h.data, e);
        i++;
    }
    if (!rc && nd_buf_append(e, ")", 1)) rc = js_oom(c);
    nd_buf_free(&p);
    nd_buf_free(&h);
    return rc;
}

static int ref_expr(js *c, const char *ref, const char *path, nd_buf *e) {
    for (size_t i = 0; i < c->n_refs; i++)
        if (strcmp(c->refs[i].ref, ref) == 0) return nd_buf_printf(e, "%s", c->refs[i].name) ? js_oom(c) : 0;
    const cJSON *target = NULL;
    const char *key = NULL;
    if (strncmp(ref, "#/definitions/", 14) == 0) key = ref + 14,
        target = cJSON_GetObjectItemCaseSensitive(cJSON_GetObjectItemCaseSensitive(c->root, "definitions"), key);
    else if (strncmp(ref, "#/$defs/", 8) == 0) key = ref + 8,
        target = cJSON_GetObjectItemCaseSensitive(cJSON_GetObjectItemCaseSensitive(c->root, "$defs"), key);
    if (!target) {
        char what[200];
        snprintf(what, sizeof what, "$ref '%.120s' does not resolve (supported: \"#\", "
                 "\"#/definitions/NAME\", \"#/$defs/NAME\")", ref);
        return js_fail(c, key ? ND_ENOTFOUND : ND_EUNSUPPORTED, path, what);
    }
    if (grow_arr((void **)&c->refs, &c->cap_refs, c->n_refs + 1, sizeof *c->refs)) return js_oom(c);
    jref *r = &c->refs[c->n_refs];
    nd_buf hint = {0};
    char *name = NULL;
    int rc = nd_buf_printf(&hint, "def-%s", key) ? js_oom(c) : unique_name(c, hint.data, &name);
    nd_buf_free(&hint);
    if (rc) return rc;
    if (!(r->ref = nd_strdup(ref))) return js_oom(c);
    r->name = name;
    c->n_refs++;
    nd_buf body = {0};
    rc = schema_expr(c, target, ref + 1, name, &body); /* registered first: recursion works */
    if (!rc) rc = define(c, name, &body);
    nd_buf_free(&body);
    if (!rc && nd_buf_printf(e, "%s", name)) rc = js_oom(c);
    return rc;
}

static int type_expr(js *c, const cJSON *s, const char *type, const char *path, const char *hint,
                     nd_buf *e) {
    if (!strcmp(type, "string")) return string_expr(c, s, path, e);
    if (!strcmp(type, "number")) return use_prim(c, e, P_NUMBER, "number");
    if (!strcmp(type, "integer")) return use_prim(c, e, P_INTEGER, "integer");
    if (!strcmp(type, "boolean")) return use_prim(c, e, P_BOOLEAN, "boolean");
    if (!strcmp(type, "null")) return use_prim(c, e, P_NULL, "null");
    if (!strcmp(type, "object")) return object_expr(c, s, path, hint, e);
    if (!strcmp(type, "array")) return array_expr(c, s, path, hint, e);
    char what[160];
    snprintf(what, sizeof what, "unknown type '%.60s'", type);
    return js_fail(c, ND_EFORMAT, path, what);
}

static int schema_body(js *c, const cJSON *s, const char *path, const char *hint, nd_buf *e) {
    if (cJSON_IsTrue(s)) return use_prim(c, e, P_VALUE, "value");
    if (cJSON_IsFalse(s)) return js_fail(c, ND_EUNSUPPORTED, path, "schema 'false' (no value fits)");
    if (!cJSON_IsObject(s)) return js_fail(c, ND_EFORMAT, path, "a schema must be an object or a boolean");
    for (size_t i = 0; i < sizeof k_unsupported / sizeof k_unsupported[0]; i++)
        if (cJSON_GetObjectItemCaseSensitive(s, k_unsupported[i])) {
            char what[128];
            snprintf(what, sizeof what, "keyword '%s' is not supported (it restricts the "
                     "language)", k_unsupported[i]);
            return js_fail(c, ND_EUNSUPPORTED, path, what);
        }
    const cJSON *v;
    if ((v = cJSON_GetObjectItemCaseSensitive(s, "$ref"))) {
        if (!cJSON_IsString(v)) return js_fail(c, ND_EFORMAT, path, "'$ref' must be a string");
        if (!strcmp(v->valuestring, "#")) return nd_buf_printf(e, "root") ? js_oom(c) : 0;
        return ref_expr(c, v->valuestring, path, e);
    }
    if ((v = cJSON_GetObjectItemCaseSensitive(s, "const"))) return literal_expr(c, v, true, path, e);
    if ((v = cJSON_GetObjectItemCaseSensitive(s, "enum"))) return literal_expr(c, v, false, path, e);
    if ((v = cJSON_GetObjectItemCaseSensitive(s, "anyOf"))) return alt_expr(c, v, "anyOf", path, hint, e);
    if ((v = cJSON_GetObjectItemCaseSensitive(s, "oneOf"))) return alt_expr(c, v, "oneOf", path, hint, e);
    if ((v = cJSON_GetObjectItemCaseSensitive(s, "allOf"))) {
        if (!cJSON_IsArray(v) || cJSON_GetArraySize(v) != 1)
            return js_fail(c, ND_EUNSUPPORTED, path, "'allOf' with other than one member is not supported");
        return alt_expr(c, v, "allOf", path, hint, e);
    }
    const cJSON *type = cJSON_GetObjectItemCaseSensitive(s, "type");
    if (cJSON_IsString(type)) return type_expr(c, s, type->valuestring, path, hint, e);
    if (cJSON_IsArray(type) && cJSON_GetArraySize(type) > 0) {
        int rc = nd_buf_append(e, "(", 1) ? js_oom(c) : 0;
        bool first = true;
        cJSON_ArrayForEach(v, type) {
            if (!cJSON_IsString(v)) return js_fail(c, ND_EFORMAT, path, "'type' must list strings");
            if (!rc && !first && nd_buf_printf(e, " | ")) rc = js_oom(c);
            if (!rc) rc = type_expr(c, s, v->valuestring, path, hint, e);
            first = false;
        }
        if (!rc && nd_buf_append(e, ")", 1)) rc = js_oom(c);
        return rc;
    }
    if (type) return js_fail(c, ND_EFORMAT, path, "'type' must be a string or a non-empty array");
    if (cJSON_GetObjectItemCaseSensitive(s, "properties") ||
        cJSON_GetObjectItemCaseSensitive(s, "additionalProperties") ||
        cJSON_GetObjectItemCaseSensitive(s, "required"))
        return object_expr(c, s, path, hint, e);
    if (cJSON_GetObjectItemCaseSensitive(s, "items") || cJSON_GetObjectItemCaseSensitive(s, "minItems") ||
        cJSON_GetObjectItemCaseSensitive(s, "maxItems"))
        return array_expr(c, s, path, hint, e);
    return use_prim(c, e, P_VALUE, "value");
}

static int schema_expr(js *c, const cJSON *s, const char *path, const char *hint, nd_buf *e) {
    if (++c->depth > JS_MAX_DEPTH) return js_fail(c, ND_ERANGE, path, "schema nested deeper than 64");
    int rc = schema_body(c, s, path, hint, e);
    c->depth--;
    return rc;
}

/* ------------------------------------------------------------- entry points */

static int emit(js *c, const nd_buf *root_expr, nd_buf *out) {
    for (bool more = true; more;) { /* close the primitive set under dependencies */
        more = false;
        for (size_t i = 0; i < sizeof k_prims / sizeof k_prims[0]; i++)
            if ((c->prims & k_prims[i].bit) && (c->prims | k_prims[i].deps) != c->prims) {
                c->prims |= k_prims[i].deps;
                more = true;
            }
    }
    size_t old = out->len;
    int rc = nd_buf_printf(out, "root ::= %.*s\n", (int)root_expr->len, root_expr->data);
    if (!rc && c->rules.len) rc = nd_buf_append(out, c->rules.data, c->rules.len);
    for (size_t i = 0; !rc && i < sizeof k_prims / sizeof k_prims[0]; i++)
        if (c->prims & k_prims[i].bit) rc = nd_buf_printf(out, "%s ::= %s\n", k_prims[i].name, k_prims[i].body);
    if (rc) {
        out->len = old;
        if (out->data && out->len < out->cap) out->data[out->len] = 0;
        return js_oom(c);
    }
    return 0;
}

static void js_free(js *c) {
    nd_buf_free(&c->rules);
    for (size_t i = 0; i < c->n_names; i++) nd_free(c->names[i]);
    nd_free(c->names);
    for (size_t i = 0; i < c->n_refs; i++) nd_free(c->refs[i].ref);
    nd_free(c->refs);
}

int json_schema_to_gbnf_cjson(const cJSON *schema, nd_buf *out, nd_err *err) {
    js c = {.root = schema, .err = err};
    nd_buf e = {0};
    char *root_name = NULL;
    int rc = unique_name(&c, "root", &root_name); /* reserve "root" */
    if (!rc) rc = schema_expr(&c, schema, "", "root", &e);
    if (!rc) rc = emit(&c, &e, out);
    nd_buf_free(&e);
    js_free(&c);
    return rc;
}

int json_schema_to_gbnf(const char *text, size_t len, nd_buf *out, nd_err *err) {
    const char *end = NULL;
    if (!nd_utf8_valid(text, len))
        return nd_seterr(err, ND_EFORMAT, "json_schema: the schema is not valid UTF-8");
    cJSON *s = cJSON_ParseWithLengthOpts(text, len, &end, false);
    if (!s) {
        size_t at = end && end >= text ? (size_t)(end - text) : 0;
        return nd_seterr(err, ND_EFORMAT, "json_schema: not valid JSON (near byte %zu)", at);
    }
    int rc = json_schema_to_gbnf_cjson(s, out, err);
    cJSON_Delete(s);
    return rc;
}

int json_schema_any_object_gbnf(nd_buf *out, nd_err *err) {
    js c = {.err = err, .prims = P_OBJECT};
    nd_buf e = {0};
    int rc = nd_buf_printf(&e, "object") ? js_oom(&c) : emit(&c, &e, out);
    nd_buf_free(&e);
    js_free(&c);
    return rc;
}
