/* orch config: YAML/JSON -> a small tree with line numbers -> validated orch_config. */
#include <cjson/cJSON.h>
#include <ctype.h>
#include <errno.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <yaml.h>

#include "orch/config.h"

/* ================================================================ tree */

enum { N_NULL, N_SCALAR, N_SEQ, N_MAP };

typedef struct cnode {
    int type;
    int line;          /* 1-based, 0 = unknown (JSON values) */
    bool quoted;       /* scalar was quoted (YAML) or a JSON string */
    bool json_value;   /* a JSON number or boolean (not acceptable where a string is due) */
    char *str;         /* scalar text */
    struct cnode **kid;
    char **key;        /* map keys, parallel to kid */
    size_t n, cap;
} cnode;

#define MAX_DEPTH 32
#define MAX_NODES 200000

static void node_free(cnode *x) {
    if (!x) return;
    for (size_t i = 0; i < x->n; i++) {
        node_free(x->kid[i]);
        if (x->key) nd_free(x->key[i]);
    }
    nd_free(x->kid);
    nd_free(x->key);
    nd_free(x->str);
    nd_free(x);
}

static cnode *node_new(int type, int line) {
    cnode *x = nd_calloc(1, sizeof *x);
    if (x) {
        x->type = type;
        x->line = line;
    }
    return x;
}

static int node_add(cnode *x, char *key, cnode *kid) {
    if (x->n == x->cap) {
        size_t cap = x->cap ? x->cap * 2 : 8;
        cnode **k = nd_realloc(x->kid, cap * sizeof *k);
        if (!k) return ND_ENOMEM;
        x->kid = k;
        if (x->type == N_MAP) {
            char **ks = nd_realloc(x->key, cap * sizeof *ks);
            if (!ks) return ND_ENOMEM;
            x->key = ks;
        }
        x->cap = cap;
    }
    if (x->type == N_MAP) x->key[x->n] = key;
    x->kid[x->n++] = kid;
    return 0;
}

/* ---------------------------------------------------------------- YAML */

typedef struct yctx {
    yaml_parser_t p;
    const char *name;
    size_t nodes;
    nd_err *err;
} yctx;

static int y_next(yctx *y, yaml_event_t *ev) {
    if (!yaml_parser_parse(&y->p, ev))
        return nd_seterr(y->err, ND_EFORMAT, "%s:%zu:%zu: YAML syntax: %s%s%s", y->name,
                         (size_t)y->p.problem_mark.line + 1, (size_t)y->p.problem_mark.column + 1,
                         y->p.problem ? y->p.problem : "error", y->p.context ? " " : "",
                         y->p.context ? y->p.context : "");
    return 0;
}

static int y_node(yctx *y, yaml_event_t *ev, int depth, cnode **out);

static int y_collection(yctx *y, cnode *x, int depth) {
    for (;;) {
        yaml_event_t ev;
        int rc = y_next(y, &ev);
        if (rc) return rc;
        if (ev.type == YAML_SEQUENCE_END_EVENT || ev.type == YAML_MAPPING_END_EVENT) {
            yaml_event_delete(&ev);
            return 0;
        }
        char *key = NULL;
        if (x->type == N_MAP) {
            if (ev.type != YAML_SCALAR_EVENT) {
                int line = (int)ev.start_mark.line + 1;
                yaml_event_delete(&ev);
                return nd_seterr(y->err, ND_EFORMAT, "%s:%d: map keys must be plain strings", y->name, line);
            }
            key = nd_strndup((const char *)ev.data.scalar.value, ev.data.scalar.length);
            int line = (int)ev.start_mark.line + 1;
            yaml_event_delete(&ev);
            if (!key) return ND_ENOMEM;
            for (size_t i = 0; i < x->n; i++)
                if (!strcmp(x->key[i], key)) {
                    nd_seterr(y->err, ND_EFORMAT, "%s:%d: key '%s' appears twice in the same map", y->name, line, key);
                    nd_free(key);
                    return ND_EFORMAT;
                }
            if ((rc = y_next(y, &ev))) {
                nd_free(key);
                return rc;
            }
        }
        cnode *kid = NULL;
        rc = y_node(y, &ev, depth + 1, &kid);
        if (!rc && node_add(x, key, kid)) rc = ND_ENOMEM;
        if (rc) {
            nd_free(key);
            node_free(kid);
            return rc;
        }
    }
}

/* Builds the node starting with ev (consumed). */
static int y_node(yctx *y, yaml_event_t *ev, int depth, cnode **out) {
    int line = (int)ev->start_mark.line + 1;
    int type = ev->type;
    *out = NULL;
    if (++y->nodes > MAX_NODES || depth > MAX_DEPTH) {
        yaml_event_delete(ev);
        return nd_seterr(y->err, ND_ERANGE, "%s:%d: document nested deeper than %d or larger than %d nodes", y->name,
                         line, MAX_DEPTH, MAX_NODES);
    }
    if (type == YAML_ALIAS_EVENT) {
        yaml_event_delete(ev);
        return nd_seterr(y->err, ND_EFORMAT, "%s:%d: YAML aliases (*name) are not supported; write the value out",
                         y->name, line);
    }
    if (type == YAML_SCALAR_EVENT) {
        bool plain = ev->data.scalar.style == YAML_PLAIN_SCALAR_STYLE;
        size_t len = ev->data.scalar.length;
        const char *v = (const char *)ev->data.scalar.value;
        bool is_null = plain && (len == 0 || (len == 1 && v[0] == '~') || (len == 4 && !strncmp(v, "null", 4)));
        cnode *x = node_new(is_null ? N_NULL : N_SCALAR, line);
        if (x && !is_null) {
            x->quoted = !plain;
            if (!(x->str = nd_strndup(v, len))) {
                nd_free(x);
                x = NULL;
            }
        }
        yaml_event_delete(ev);
        if (!x) return ND_ENOMEM;
        *out = x;
        return 0;
    }
    if (type == YAML_SEQUENCE_START_EVENT || type == YAML_MAPPING_START_EVENT) {
        yaml_event_delete(ev);
        cnode *x = node_new(type == YAML_SEQUENCE_START_EVENT ? N_SEQ : N_MAP, line);
        if (!x) return ND_ENOMEM;
        int rc = y_collection(y, x, depth);
        if (rc) {
            node_free(x);
            return rc;
        }
        *out = x;
        return 0;
    }
    yaml_event_delete(ev);
    return nd_seterr(y->err, ND_EFORMAT, "%s:%d: unexpected YAML event", y->name, line);
}

static int parse_yaml(const char *text, size_t n, const char *name, cnode **out, nd_err *err) {
    yctx y = {.name = name, .err = err};
    *out = NULL;
    if (!yaml_parser_initialize(&y.p)) return nd_seterr(err, ND_ENOMEM, "%s: out of memory", name);
    yaml_parser_set_input_string(&y.p, (const unsigned char *)text, n);
    yaml_event_t ev;
    int rc = 0;
    /* stream start, document start (or stream end for an empty file) */
    while (!rc) {
        if ((rc = y_next(&y, &ev))) break;
        int t = ev.type;
        if (t == YAML_STREAM_START_EVENT || t == YAML_DOCUMENT_START_EVENT) {
            yaml_event_delete(&ev);
            continue;
        }
        if (t == YAML_STREAM_END_EVENT) {
            yaml_event_delete(&ev);
            break;
        }
        rc = y_node(&y, &ev, 0, out);
        break;
    }
    if (!rc && *out) { /* one document only */
        if (!(rc = y_next(&y, &ev))) {
            if (ev.type == YAML_DOCUMENT_END_EVENT) {
                yaml_event_delete(&ev);
                if (!(rc = y_next(&y, &ev)) && ev.type != YAML_STREAM_END_EVENT)
                    rc = nd_seterr(err, ND_EFORMAT, "%s:%zu: only one YAML document is allowed", name,
                                   (size_t)ev.start_mark.line + 1);
            }
            if (!rc || rc == ND_EFORMAT) yaml_event_delete(&ev);
        }
    }
    yaml_parser_delete(&y.p);
    if (rc == ND_ENOMEM) nd_seterr(err, ND_ENOMEM, "%s: out of memory", name);
    if (rc) {
        node_free(*out);
        *out = NULL;
    }
    return rc;
}

/* ---------------------------------------------------------------- JSON */

static int j_node(const cJSON *j, int depth, size_t *count, cnode **out) {
    *out = NULL;
    if (++*count > MAX_NODES || depth > MAX_DEPTH) return ND_ERANGE;
    cnode *x;
    if (cJSON_IsNull(j)) return (*out = node_new(N_NULL, 0)) ? 0 : ND_ENOMEM;
    if (cJSON_IsArray(j) || cJSON_IsObject(j)) {
        x = node_new(cJSON_IsArray(j) ? N_SEQ : N_MAP, 0);
        if (!x) return ND_ENOMEM;
        for (const cJSON *c = j->child; c; c = c->next) {
            cnode *k = NULL;
            char *key = NULL;
            int rc = j_node(c, depth + 1, count, &k);
            if (!rc && x->type == N_MAP) {
                for (size_t i = 0; i < x->n && !rc; i++)
                    if (!strcmp(x->key[i], c->string)) rc = ND_EFORMAT;
                if (!rc && !(key = nd_strdup(c->string))) rc = ND_ENOMEM;
            }
            if (!rc && node_add(x, key, k)) rc = ND_ENOMEM;
            if (rc) {
                if (rc == ND_EFORMAT) x->str = nd_strdup(c->string); /* remember the duplicate */
                nd_free(key);
                node_free(k);
                *out = x;
                return rc;
            }
        }
        *out = x;
        return 0;
    }
    x = node_new(N_SCALAR, 0);
    if (!x) return ND_ENOMEM;
    char num[64];
    if (cJSON_IsString(j)) {
        x->quoted = true;
        x->str = nd_strdup(j->valuestring);
    } else if (cJSON_IsBool(j)) {
        x->json_value = true;
        x->str = nd_strdup(cJSON_IsTrue(j) ? "true" : "false");
    } else {
        x->json_value = true;
        snprintf(num, sizeof num, "%.17g", j->valuedouble);
        x->str = nd_strdup(num);
    }
    if (!x->str) {
        nd_free(x);
        return ND_ENOMEM;
    }
    *out = x;
    return 0;
}

static int parse_json(const char *text, size_t n, const char *name, cnode **out, nd_err *err) {
    const char *end = NULL;
    cJSON *j = cJSON_ParseWithLengthOpts(text, n, &end, 0);
    *out = NULL;
    if (!j) {
        size_t off = end && end >= text ? (size_t)(end - text) : 0, line = 1;
        for (size_t i = 0; i < off && i < n; i++) line += text[i] == '\n';
        return nd_seterr(err, ND_EFORMAT, "%s:%zu: JSON syntax error near byte %zu", name, line, off);
    }
    size_t count = 0;
    int rc = j_node(j, 0, &count, out);
    cJSON_Delete(j);
    if (rc == ND_EFORMAT) {
        nd_seterr(err, ND_EFORMAT, "%s: key '%s' appears twice in the same object", name,
                  (*out && (*out)->str) ? (*out)->str : "?");
    } else if (rc == ND_ERANGE) {
        nd_seterr(err, ND_ERANGE, "%s: document nested deeper than %d or larger than %d nodes", name, MAX_DEPTH,
                  MAX_NODES);
    } else if (rc) {
        nd_seterr(err, ND_ENOMEM, "%s: out of memory", name);
    }
    if (rc) {
        node_free(*out);
        *out = NULL;
    }
    return rc;
}

/* ================================================================ validation */

typedef struct vctx {
    const char *name;
    nd_err *err;
    char path[256];
} vctx;

static const char *type_name(int t) {
    static const char *const n[] = {"null", "a scalar", "a list", "a map"};
    return n[t];
}

/* "file:line: path: message" */
__attribute__((format(printf, 4, 5))) static int verr(vctx *v, int code, const cnode *x, const char *fmt, ...) {
    char msg[ND_ERR_MSG];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(msg, sizeof msg, fmt, ap);
    va_end(ap);
    if (x && x->line) return nd_seterr(v->err, code, "%s:%d: %s: %s", v->name, x->line, v->path, msg);
    return nd_seterr(v->err, code, "%s: %s: %s", v->name, v->path, msg);
}

static size_t push(vctx *v, const char *key, long idx) {
    size_t len = strlen(v->path);
    if (idx >= 0) snprintf(v->path + len, sizeof v->path - len, "[%ld]", idx);
    else snprintf(v->path + len, sizeof v->path - len, "%s%s", len ? "." : "", key);
    return len;
}
static void pop(vctx *v, size_t len) { v->path[len] = 0; }

/* Unknown keys are errors (typos must not be silently ignored). */
static int check_keys(vctx *v, const cnode *m, const char *const *known) {
    if (m->type != N_MAP) return verr(v, ND_EINVAL, m, "expected a map, got %s", type_name(m->type));
    for (size_t i = 0; i < m->n; i++) {
        bool ok = false;
        for (const char *const *k = known; *k && !ok; k++) ok = !strcmp(*k, m->key[i]);
        if (!ok) {
            char list[200] = "";
            for (const char *const *k = known; *k; k++)
                snprintf(list + strlen(list), sizeof list - strlen(list), "%s%s", k == known ? "" : ", ", *k);
            size_t l = push(v, m->key[i], -1);
            int rc = verr(v, ND_EINVAL, m->kid[i], "unknown key (known: %s)", list);
            pop(v, l);
            return rc;
        }
    }
    return 0;
}

static const cnode *get(const cnode *m, const char *key) {
    for (size_t i = 0; m && m->type == N_MAP && i < m->n; i++)
        if (!strcmp(m->key[i], key)) return m->kid[i];
    return NULL;
}

/* Each getter: absent or null leaves *out alone; the wrong type is an error naming the key. */
static int get_str(vctx *v, const cnode *m, const char *key, char **out) {
    const cnode *x = get(m, key);
    if (!x || x->type == N_NULL) return 0;
    size_t l = push(v, key, -1);
    int rc = 0;
    if (x->type != N_SCALAR) rc = verr(v, ND_EINVAL, x, "expected a string, got %s", type_name(x->type));
    else if (x->json_value) rc = verr(v, ND_EINVAL, x, "expected a string, got a %s", isdigit((unsigned char)x->str[0]) || x->str[0] == '-' ? "number" : "boolean");
    else if (strlen(x->str) > 1 << 20) rc = verr(v, ND_ERANGE, x, "string longer than 1 MiB");
    else {
        nd_free(*out);
        if (!(*out = nd_strdup(x->str))) rc = nd_seterr(v->err, ND_ENOMEM, "%s: out of memory", v->name);
    }
    pop(v, l);
    return rc;
}

static int get_bool(vctx *v, const cnode *m, const char *key, bool *out) {
    const cnode *x = get(m, key);
    if (!x || x->type == N_NULL) return 0;
    size_t l = push(v, key, -1);
    int rc = 0;
    static const char *const t[] = {"true", "yes", "on"}, *const f[] = {"false", "no", "off"};
    bool done = false;
    for (int i = 0; x->type == N_SCALAR && !x->quoted && i < 3 && !done; i++) {
        if (!strcasecmp(x->str, t[i])) *out = true, done = true;
        else if (!strcasecmp(x->str, f[i])) *out = false, done = true;
    }
    if (!done) rc = verr(v, ND_EINVAL, x, "expected true or false");
    pop(v, l);
    return rc;
}

static int get_num(vctx *v, const cnode *m, const char *key, double lo, double hi, bool integer, double *out) {
    const cnode *x = get(m, key);
    if (!x || x->type == N_NULL) return 0;
    size_t l = push(v, key, -1);
    int rc = 0;
    char *end = NULL;
    double d = x->type == N_SCALAR && !x->quoted ? strtod(x->str, &end) : NAN;
    if (x->type != N_SCALAR || x->quoted || end == x->str || *end || isnan(d))
        rc = verr(v, ND_EINVAL, x, "expected a number");
    else if (integer && d != floor(d)) rc = verr(v, ND_EINVAL, x, "expected a whole number, got %g", d);
    else if (d < lo || d > hi) rc = verr(v, ND_ERANGE, x, "%g is out of range [%g, %g]", d, lo, hi);
    else *out = d;
    pop(v, l);
    return rc;
}

static int get_list(vctx *v, const cnode *m, const char *key, size_t max, char ***out, size_t *n) {
    const cnode *x = get(m, key);
    if (!x || x->type == N_NULL) return 0;
    size_t l = push(v, key, -1);
    int rc = 0;
    if (x->type != N_SEQ) rc = verr(v, ND_EINVAL, x, "expected a list of strings, got %s", type_name(x->type));
    else if (x->n > max) rc = verr(v, ND_ERANGE, x, "%zu items, at most %zu allowed", x->n, max);
    else if (!(*out = nd_calloc(x->n + 1, sizeof **out))) rc = nd_seterr(v->err, ND_ENOMEM, "%s: out of memory", v->name);
    for (size_t i = 0; !rc && i < x->n; i++) {
        const cnode *e = x->kid[i];
        if (e->type != N_SCALAR || !*e->str) {
            size_t l2 = push(v, NULL, (long)i);
            rc = verr(v, ND_EINVAL, e->line ? e : x, "expected a non-empty string, got %s",
                      e->type == N_SCALAR ? "an empty string" : type_name(e->type));
            pop(v, l2);
        } else if (!((*out)[i] = nd_strdup(e->str))) {
            rc = nd_seterr(v->err, ND_ENOMEM, "%s: out of memory", v->name);
        } else {
            *n = i + 1;
        }
    }
    pop(v, l);
    return rc;
}

static void free_list(char **l) {
    for (size_t i = 0; l && l[i]; i++) nd_free(l[i]);
    nd_free(l);
}

/* ---------------------------------------------------------------- sections */

static int v_main(vctx *v, orch_config *c, const cnode *root) {
    static const char *const kk[] = {"url", "key_env", "model", "timeout_s", NULL};
    const cnode *m = get(root, "main");
    if (!m || m->type == N_NULL) return 0;
    size_t l = push(v, "main", -1);
    int rc = check_keys(v, m, kk);
    if (!rc) rc = get_str(v, m, "url", &c->main_url);
    if (!rc) rc = get_str(v, m, "key_env", &c->main_key_env);
    if (!rc) rc = get_str(v, m, "model", &c->main_model);
    if (!rc) rc = get_num(v, m, "timeout_s", 0.1, 86400, false, &c->main_timeout_s);
    if (!rc && c->main_url && strncmp(c->main_url, "http://", 7) && strncmp(c->main_url, "https://", 8)) {
        size_t l2 = push(v, "url", -1);
        rc = verr(v, ND_EINVAL, get(m, "url"), "must start with http:// or https://");
        pop(v, l2);
    }
    if (!rc && c->main_key_env) {
        for (const char *p = c->main_key_env; *p && !rc; p++)
            if (!isalnum((unsigned char)*p) && *p != '_') {
                size_t l2 = push(v, "key_env", -1);
                rc = verr(v, ND_EINVAL, get(m, "key_env"), "must be an environment variable name ([A-Za-z0-9_])");
                pop(v, l2);
            }
    }
    pop(v, l);
    return rc;
}

static int v_small(vctx *v, orch_config *c, const cnode *root) {
    static const char *const kh[] = {"model", NULL}, *const kl[] = {"host", "port", NULL},
                             *const kr[] = {"sentinel", "router", "pruner", "guard", NULL};
    int rc = 0;
    const cnode *m;
    size_t l;
    if ((m = get(root, "helper")) && m->type != N_NULL) {
        l = push(v, "helper", -1);
        if (!(rc = check_keys(v, m, kh))) rc = get_str(v, m, "model", &c->helper_model);
        pop(v, l);
    }
    if (!rc && (m = get(root, "listen")) && m->type != N_NULL) {
        double port = c->listen_port;
        l = push(v, "listen", -1);
        if (!(rc = check_keys(v, m, kl))) rc = get_str(v, m, "host", &c->listen_host);
        if (!rc) rc = get_num(v, m, "port", 0, 65535, true, &port);
        c->listen_port = (int)port;
        pop(v, l);
    }
    if (!rc && (m = get(root, "roles")) && m->type != N_NULL) {
        l = push(v, "roles", -1);
        if (!(rc = check_keys(v, m, kr))) rc = get_bool(v, m, "sentinel", &c->role_sentinel);
        if (!rc) rc = get_bool(v, m, "router", &c->role_router);
        if (!rc) rc = get_bool(v, m, "pruner", &c->role_pruner);
        if (!rc) rc = get_bool(v, m, "guard", &c->role_guard);
        pop(v, l);
    }
    return rc;
}

static int v_sentinel(vctx *v, orch_config *c, const cnode *root) {
    static const char *const kk[] = {"allow", "private_ips", "entropy_min", "stream_tail", "outbound_redact",
                                     "outbound_pii", NULL};
    const cnode *m = get(root, "sentinel");
    if (!m || m->type == N_NULL) return 0;
    size_t l = push(v, "sentinel", -1);
    int rc = check_keys(v, m, kk);
    char **allow = NULL;
    size_t na = 0;
    double tail = (double)c->sentinel.stream_tail;
    if (!rc) rc = get_list(v, m, "allow", 64, &allow, &na);
    for (size_t i = 0; !rc && i < na; i++) {
        int k = orch_kind_from_name(allow[i]);
        if (k < 0) {
            size_t l2 = push(v, "allow", -1), l3 = push(v, NULL, (long)i);
            rc = verr(v, ND_EINVAL, get(m, "allow")->kid[i], "unknown kind '%.40s' (kinds: AWS_KEY ... EMAIL, PHONE, "
                      "CARD, IBAN, IP, IPV6; see orch_kind_name)", allow[i]);
            pop(v, l3);
            pop(v, l2);
        } else {
            c->sentinel.disabled |= UINT64_C(1) << k;
        }
    }
    free_list(allow);
    if (!rc) rc = get_bool(v, m, "private_ips", &c->sentinel.flag_private_ip);
    if (!rc) rc = get_num(v, m, "entropy_min", 1, 8, false, &c->sentinel.entropy_min);
    if (!rc) rc = get_num(v, m, "stream_tail", 8, 4096, true, &tail);
    c->sentinel.stream_tail = (size_t)tail;
    if (!rc) rc = get_bool(v, m, "outbound_redact", &c->sentinel.outbound_redact);
    if (!rc) rc = get_bool(v, m, "outbound_pii", &c->sentinel.outbound_pii);
    pop(v, l);
    return rc;
}

static int v_sampling(vctx *v, orch_sampling *s, const cnode *m) {
    static const char *const kk[] = {"temperature", "top_p", "top_k", "max_tokens", "seed", NULL};
    int rc = check_keys(v, m, kk);
    double d;
    if (!rc) rc = get_num(v, m, "temperature", 0, 10, false, &s->temperature);
    if (!rc) rc = get_num(v, m, "top_p", 0, 1, false, &s->top_p);
    d = s->top_k;
    if (!rc) rc = get_num(v, m, "top_k", 0, 1e6, true, &d);
    s->top_k = (int)d;
    d = s->max_tokens;
    if (!rc) rc = get_num(v, m, "max_tokens", 1, 1e7, true, &d);
    s->max_tokens = (int)d;
    d = (double)s->seed;
    if (!rc) rc = get_num(v, m, "seed", 0, 9007199254740992.0, true, &d);
    s->seed = (int64_t)d;
    return rc;
}

static int v_route(vctx *v, orch_route_cfg *r, const cnode *m) {
    static const char *const kk[] = {"label", "description", "target", "system_prompt", "keywords", "patterns",
                                     "examples", "sampling", "guard", NULL};
    r->sampling = (orch_sampling){-1, -1, -1, -1, -1};
    r->line = m->line;
    int rc = check_keys(v, m, kk);
    char *target = NULL;
    if (!rc) rc = get_str(v, m, "label", &r->label);
    if (!rc && !r->label) rc = verr(v, ND_EINVAL, m, "label is required");
    if (!rc) {
        bool ok = *r->label && strlen(r->label) <= 64;
        for (const char *p = r->label; *p && ok; p++) ok = isalnum((unsigned char)*p) || *p == '_' || *p == '-';
        if (!ok) {
            size_t l = push(v, "label", -1);
            rc = verr(v, ND_EINVAL, get(m, "label"), "must be 1-64 characters of [A-Za-z0-9_-]");
            pop(v, l);
        }
    }
    if (!rc) rc = get_str(v, m, "description", &r->description);
    if (!rc) rc = get_str(v, m, "system_prompt", &r->system_prompt);
    if (!rc) rc = get_list(v, m, "keywords", 4096, &r->keywords, &r->n_keywords);
    if (!rc) rc = get_list(v, m, "patterns", 256, &r->patterns, &r->n_patterns);
    if (!rc) rc = get_list(v, m, "examples", 4096, &r->examples, &r->n_examples);
    if (!rc) rc = get_bool(v, m, "guard", &r->guard);
    if (!rc) rc = get_str(v, m, "target", &target);
    if (!rc && target) {
        if (!strcmp(target, "main")) r->target = ORCH_TARGET_MAIN;
        else if (!strcmp(target, "helper")) r->target = ORCH_TARGET_HELPER;
        else if (!strncmp(target, "http://", 7) || !strncmp(target, "https://", 8)) {
            r->target = ORCH_TARGET_URL;
            r->target_url = target;
            target = NULL;
        } else {
            size_t l = push(v, "target", -1);
            rc = verr(v, ND_EINVAL, get(m, "target"), "expected main, helper or an http(s):// URL");
            pop(v, l);
        }
    }
    nd_free(target);
    const cnode *s = get(m, "sampling");
    if (!rc && s && s->type != N_NULL) {
        size_t l = push(v, "sampling", -1);
        rc = v_sampling(v, &r->sampling, s);
        pop(v, l);
    }
    return rc;
}

static int v_routes(vctx *v, orch_config *c, const cnode *root) {
    static const char *const kr[] = {"default", "min_similarity", "helper", NULL};
    const cnode *m = get(root, "router");
    int rc = 0;
    if (m && m->type != N_NULL) {
        size_t l = push(v, "router", -1);
        if (!(rc = check_keys(v, m, kr))) rc = get_str(v, m, "default", &c->router_default);
        if (!rc) rc = get_num(v, m, "min_similarity", 0.001, 1, false, &c->router_min_similarity);
        if (!rc) rc = get_bool(v, m, "helper", &c->router_helper);
        pop(v, l);
    }
    if (rc) return rc;
    const cnode *rs = get(root, "routes");
    size_t l = push(v, "routes", -1);
    if (rs && rs->type != N_NULL) {
        if (rs->type != N_SEQ) rc = verr(v, ND_EINVAL, rs, "expected a list of routes, got %s", type_name(rs->type));
        else if (rs->n > 256) rc = verr(v, ND_ERANGE, rs, "%zu routes, at most 256", rs->n);
        else if (rs->n && !(c->routes = nd_calloc(rs->n, sizeof *c->routes)))
            rc = nd_seterr(v->err, ND_ENOMEM, "%s: out of memory", v->name);
        for (size_t i = 0; !rc && i < rs->n; i++) {
            size_t l2 = push(v, NULL, (long)i);
            c->n_routes = i + 1;
            rc = v_route(v, &c->routes[i], rs->kid[i]);
            for (size_t j = 0; !rc && j < i; j++)
                if (!strcmp(c->routes[j].label, c->routes[i].label))
                    rc = verr(v, ND_EINVAL, rs->kid[i], "label '%s' already used by routes[%zu]", c->routes[i].label, j);
            pop(v, l2);
        }
    }
    if (!rc && c->role_router && c->n_routes == 0)
        rc = verr(v, ND_EINVAL, rs ? rs : root, "roles.router is on but no routes are defined");
    pop(v, l);
    if (!rc && c->router_default) {
        bool found = false;
        for (size_t i = 0; i < c->n_routes && !found; i++) found = !strcmp(c->routes[i].label, c->router_default);
        if (!found) {
            size_t l1 = push(v, "router", -1), l2 = push(v, "default", -1);
            rc = verr(v, ND_EINVAL, get(get(root, "router"), "default"), "'%s' is not the label of a route",
                      c->router_default);
            pop(v, l2);
            pop(v, l1);
        }
    }
    return rc;
}

static int v_pruner(vctx *v, orch_config *c, const cnode *root) {
    static const char *const kk[] = {"k", "budget_tokens", "k1", "b", "fence_tag", "helper", "helper_candidates", NULL};
    const cnode *m = get(root, "pruner");
    if (!m || m->type == N_NULL) return 0;
    size_t l = push(v, "pruner", -1);
    double k = (double)c->pruner_k, bud = (double)c->pruner_budget, cand = (double)c->pruner_helper_candidates;
    int rc = check_keys(v, m, kk);
    if (!rc) rc = get_num(v, m, "k", 1, 10000, true, &k);
    if (!rc) rc = get_num(v, m, "budget_tokens", 1, 1e8, true, &bud);
    if (!rc) rc = get_num(v, m, "k1", 0.01, 10, false, &c->pruner_k1);
    if (!rc) rc = get_num(v, m, "b", 0, 1, false, &c->pruner_b);
    if (!rc) rc = get_str(v, m, "fence_tag", &c->pruner_fence_tag);
    if (!rc) rc = get_bool(v, m, "helper", &c->pruner_helper);
    if (!rc) rc = get_num(v, m, "helper_candidates", 1, 64, true, &cand);
    c->pruner_helper_candidates = (size_t)cand;
    c->pruner_k = (size_t)k;
    c->pruner_budget = (size_t)bud;
    pop(v, l);
    return rc;
}

static int v_guard(vctx *v, orch_config *c, const cnode *root) {
    static const char *const kk[] = {"max_rounds", "timeout_s", "cpu_s", "memory_mb", "output_cap", "checkers", NULL};
    static const char *const kc[] = {"c", "python", "javascript", "typescript", NULL};
    const cnode *m = get(root, "guard");
    if (!m || m->type == N_NULL) return 0;
    size_t l = push(v, "guard", -1);
    double rounds = c->guard_max_rounds, cpu = c->guard.cpu_s, mem = (double)(c->guard.mem_bytes >> 20),
           cap = (double)c->guard.output_cap;
    int rc = check_keys(v, m, kk);
    if (!rc) rc = get_num(v, m, "max_rounds", 0, ORCH_GUARD_MAX_ROUNDS, true, &rounds);
    if (!rc) rc = get_num(v, m, "timeout_s", 0.1, 3600, false, &c->guard.timeout_s);
    if (!rc) rc = get_num(v, m, "cpu_s", 1, 3600, true, &cpu);
    if (!rc) rc = get_num(v, m, "memory_mb", 16, 1 << 20, true, &mem);
    if (!rc) rc = get_num(v, m, "output_cap", 256, 64 << 20, true, &cap);
    c->guard_max_rounds = (int)rounds;
    c->guard.cpu_s = (unsigned)cpu;
    c->guard.mem_bytes = (size_t)mem << 20;
    c->guard.output_cap = (size_t)cap;
    const cnode *ck = get(m, "checkers");
    if (!rc && ck && ck->type != N_NULL) {
        size_t l2 = push(v, "checkers", -1);
        rc = check_keys(v, ck, kc);
        for (int lang = 0; !rc && lang < ORCH_LANG_COUNT; lang++) {
            size_t n = 0;
            const cnode *x = get(ck, kc[lang]);
            if (!x) continue;
            if (x->type == N_SEQ && x->n == 0) { /* [] = this language is not checked */
                if (!(c->guard_argv[lang] = nd_calloc(1, sizeof(char *))))
                    rc = nd_seterr(v->err, ND_ENOMEM, "%s: out of memory", v->name);
            } else {
                rc = get_list(v, ck, kc[lang], ORCH_GUARD_MAX_ARGS, &c->guard_argv[lang], &n);
            }
            c->guard.argv[lang] = (const char *const *)c->guard_argv[lang];
        }
        pop(v, l2);
    }
    pop(v, l);
    return rc;
}

/* ================================================================ API */

void orch_config_free(orch_config *c) {
    if (!c) return;
    nd_free(c->main_url);
    nd_free(c->main_key_env);
    nd_free(c->main_model);
    nd_free(c->helper_model);
    nd_free(c->listen_host);
    nd_free(c->router_default);
    nd_free(c->pruner_fence_tag);
    for (size_t i = 0; i < c->n_routes; i++) {
        orch_route_cfg *r = &c->routes[i];
        nd_free(r->label);
        nd_free(r->description);
        nd_free(r->system_prompt);
        nd_free(r->target_url);
        free_list(r->keywords);
        free_list(r->patterns);
        free_list(r->examples);
    }
    nd_free(c->routes);
    for (int l = 0; l < ORCH_LANG_COUNT; l++) free_list(c->guard_argv[l]);
    nd_free(c);
}

orch_config *orch_config_default(nd_err *err) {
    orch_config *c = nd_calloc(1, sizeof *c);
    if (!c) {
        nd_seterr(err, ND_ENOMEM, "config: out of memory");
        return NULL;
    }
    c->main_timeout_s = 120;
    c->listen_port = 8090;
    c->role_sentinel = c->role_router = c->role_pruner = c->role_guard = true;
    c->sentinel = orch_sentinel_opts_default();
    c->router_min_similarity = 0.12;
    c->pruner_k = 5;
    c->pruner_budget = 2000;
    c->pruner_k1 = 1.2;
    c->pruner_b = 0.75;
    c->pruner_helper_candidates = 8;
    c->guard_max_rounds = 3;
    c->guard = orch_guard_opts_default();
    c->guard.timeout_s = 10;
    c->guard.cpu_s = 10;
    c->guard.mem_bytes = (size_t)2 << 30;
    c->guard.output_cap = 64 << 10;
    if (!(c->listen_host = nd_strdup("127.0.0.1"))) {
        orch_config_free(c);
        nd_seterr(err, ND_ENOMEM, "config: out of memory");
        return NULL;
    }
    return c;
}

int orch_config_parse(const char *text, size_t n, const char *name, orch_config **out, nd_err *err) {
    if (!out || (!text && n)) return nd_seterr(err, ND_EINVAL, "config_parse: NULL argument");
    *out = NULL;
    if (!name) name = "config";
    size_t nl = strlen(name), i = 0;
    while (i < n && isspace((unsigned char)text[i])) i++;
    bool json = (nl >= 5 && !strcasecmp(name + nl - 5, ".json")) || (i < n && text[i] == '{');
    cnode *root = NULL;
    int rc = json ? parse_json(text, n, name, &root, err) : parse_yaml(text, n, name, &root, err);
    if (rc) return rc;
    orch_config *c = orch_config_default(err);
    if (!c) {
        node_free(root);
        return ND_ENOMEM;
    }
    vctx v = {name, err, ""};
    if (!root || root->type == N_NULL) root = root ? root : NULL;
    static const char *const top[] = {"main", "helper", "listen", "roles", "sentinel", "router", "routes", "pruner",
                                      "guard", NULL};
    if (root && root->type != N_MAP && root->type != N_NULL)
        rc = nd_seterr(err, ND_EINVAL, "%s: the top level must be a map (main, routes, ...), got %s", name,
                       type_name(root->type));
    if (!rc && root && root->type == N_MAP) rc = check_keys(&v, root, top);
    const cnode *r = root && root->type == N_MAP ? root : NULL;
    if (!rc) rc = v_main(&v, c, r);
    if (!rc) rc = v_small(&v, c, r);
    if (!rc) rc = v_sentinel(&v, c, r);
    if (!rc) rc = v_routes(&v, c, r);
    if (!rc) rc = v_pruner(&v, c, r);
    if (!rc) rc = v_guard(&v, c, r);
    node_free(root);
    if (!rc && c->n_routes) { /* patterns must compile: build the router once */
        orch_router *rt = orch_config_router(c, err);
        if (!rt) {
            rc = err ? err->code : ND_EINVAL;
            nd_preerr(err, "%s: routes: ", name);
        }
        orch_router_free(rt);
    }
    if (rc) {
        orch_config_free(c);
        return rc;
    }
    *out = c;
    return 0;
}

int orch_config_load(const char *path, orch_config **out, nd_err *err) {
    char *data;
    size_t len;
    if (!path || !out) return nd_seterr(err, ND_EINVAL, "config_load: NULL argument");
    int rc = nd_read_file(path, &data, &len, err);
    if (rc) return rc;
    if (len > (16u << 20)) {
        nd_free(data);
        return nd_seterr(err, ND_ERANGE, "%s: config larger than 16 MiB", path);
    }
    rc = orch_config_parse(data, len, path, out, err);
    nd_free(data);
    return rc;
}

orch_router *orch_config_router(const orch_config *c, nd_err *err) {
    if (!c || !c->n_routes) {
        nd_seterr(err, ND_EINVAL, "config: no routes to build a router from");
        return NULL;
    }
    orch_route_def *d = nd_calloc(c->n_routes, sizeof *d);
    if (!d) {
        nd_seterr(err, ND_ENOMEM, "config: out of memory");
        return NULL;
    }
    int def = -1;
    for (size_t i = 0; i < c->n_routes; i++) {
        const orch_route_cfg *r = &c->routes[i];
        d[i] = (orch_route_def){r->label, r->description, (const char *const *)r->keywords, r->n_keywords,
                                (const char *const *)r->patterns, r->n_patterns, (const char *const *)r->examples,
                                r->n_examples};
        if (c->router_default && !strcmp(c->router_default, r->label)) def = (int)i;
    }
    orch_router_opts o = {c->router_min_similarity, def};
    orch_router *rt = orch_router_new(d, c->n_routes, &o, err);
    nd_free(d);
    return rt;
}
