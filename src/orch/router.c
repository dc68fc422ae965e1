/* orch router: rules, then TF-IDF nearest example, then (outside) the helper. See router.h. */
#define PCRE2_CODE_UNIT_WIDTH 8
#include <ctype.h>
#include <math.h>
#include <pcre2.h>
#include <string.h>

#include "orch/router.h"
#include "orch/text.h"

#define TOKF (ORCH_TOK_STOP | ORCH_TOK_STEM)

typedef struct kw {
    uint32_t ids[8]; /* phrase as token ids (stemmed, stop words kept so phrases stay exact) */
    size_t n;
} kw;

typedef struct label {
    char *name, *desc;
    kw *kws;
    size_t n_kws;
    pcre2_code **pats;
    size_t n_pats;
} label;

typedef struct example {
    int label;
    uint32_t *id;  /* sorted term ids */
    float *w;      /* tf-idf weights, L2-normalised */
    size_t n;
} example;

struct orch_router {
    orch_router_opts opts;
    label *labels;
    size_t n_labels;
    orch_dict dict;     /* example vocabulary (for TF-IDF) */
    orch_dict kwdict;   /* keyword vocabulary (exact tokens, no stop-word removal) */
    float *idf;         /* by dict id */
    example *ex;
    size_t n_ex;
};

const char *orch_route_path_name(orch_route_path p) {
    static const char *const names[] = {"none", "rule", "examples", "helper", "default"};
    return (unsigned)p < 5 ? names[p] : "?";
}

void orch_router_free(orch_router *r) {
    if (!r) return;
    for (size_t i = 0; i < r->n_labels; i++) {
        label *l = &r->labels[i];
        nd_free(l->name);
        nd_free(l->desc);
        nd_free(l->kws);
        for (size_t j = 0; j < l->n_pats; j++) pcre2_code_free(l->pats[j]);
        nd_free(l->pats);
    }
    nd_free(r->labels);
    for (size_t i = 0; i < r->n_ex; i++) {
        nd_free(r->ex[i].id);
        nd_free(r->ex[i].w);
    }
    nd_free(r->ex);
    nd_free(r->idf);
    orch_dict_free(&r->dict);
    orch_dict_free(&r->kwdict);
    nd_free(r);
}

size_t orch_router_n_labels(const orch_router *r) { return r->n_labels; }
const char *orch_router_label(const orch_router *r, int i) {
    return i >= 0 && (size_t)i < r->n_labels ? r->labels[i].name : NULL;
}
int orch_router_find(const orch_router *r, const char *name) {
    for (size_t i = 0; i < r->n_labels; i++)
        if (!strcmp(r->labels[i].name, name)) return (int)i;
    return -1;
}

/* ------------------------------------------------------------ building */

typedef struct ids_ctx {
    orch_dict *d;
    bool add;
    uint32_t *out;
    size_t n, cap;
    int err;
} ids_ctx;

static int ids_add(void *u, const char *tok, size_t len) {
    ids_ctx *c = u;
    int64_t id = orch_dict_id(c->d, tok, len, c->add);
    if (id == ND_ENOMEM) return c->err = ND_ENOMEM;
    if (c->n < c->cap) c->out[c->n] = id < 0 ? UINT32_MAX : (uint32_t)id;
    c->n++;
    return 0;
}

static bool label_name_ok(const char *s) {
    if (!s || !*s || strlen(s) > 64) return false;
    for (; *s; s++)
        if (!isalnum((unsigned char)*s) && *s != '_' && *s != '-') return false;
    return true;
}

static int build_label(orch_router *r, label *l, const orch_route_def *d, size_t li, nd_err *err) {
    l->name = nd_strdup(d->label);
    l->desc = d->description ? nd_strdup(d->description) : NULL;
    l->kws = d->n_keywords ? nd_calloc(d->n_keywords, sizeof *l->kws) : NULL;
    l->pats = d->n_patterns ? nd_calloc(d->n_patterns, sizeof *l->pats) : NULL;
    if (!l->name || (d->description && !l->desc) || (d->n_keywords && !l->kws) || (d->n_patterns && !l->pats))
        return nd_seterr(err, ND_ENOMEM, "router: out of memory");
    for (size_t k = 0; k < d->n_keywords; k++) {
        if (!d->keywords[k]) return nd_seterr(err, ND_EINVAL, "router: label %s: keyword %zu is NULL", d->label, k);
        ids_ctx c = {&r->kwdict, true, l->kws[l->n_kws].ids, 0, 8, 0};
        orch_tokenize(d->keywords[k], strlen(d->keywords[k]), ORCH_TOK_STEM, ids_add, &c);
        if (c.err) return nd_seterr(err, ND_ENOMEM, "router: out of memory");
        if (c.n == 0 || c.n > 8)
            return nd_seterr(err, ND_EINVAL, "router: label %s: keyword %zu must have 1 to 8 words of 2+ letters",
                             d->label, k);
        l->kws[l->n_kws++].n = c.n;
    }
    for (size_t k = 0; k < d->n_patterns; k++) {
        int ec;
        PCRE2_SIZE eo;
        if (!d->patterns[k]) return nd_seterr(err, ND_EINVAL, "router: label %s: pattern %zu is NULL", d->label, k);
        l->pats[k] = pcre2_compile((PCRE2_SPTR)d->patterns[k], PCRE2_ZERO_TERMINATED,
                                   PCRE2_UTF | PCRE2_MATCH_INVALID_UTF | PCRE2_CASELESS, &ec, &eo, NULL);
        if (!l->pats[k]) {
            PCRE2_UCHAR msg[160];
            pcre2_get_error_message(ec, msg, sizeof msg);
            return nd_seterr(err, ND_EFORMAT, "router: label %s: pattern %zu does not compile at offset %zu: %s",
                             d->label, k, (size_t)eo, (const char *)msg);
        }
        l->n_pats = k + 1;
        pcre2_jit_compile(l->pats[k], PCRE2_JIT_COMPLETE);
    }
    (void)li;
    return 0;
}

static int build_examples(orch_router *r, const orch_route_def *defs, size_t n, nd_err *err) {
    size_t total = 0;
    for (size_t i = 0; i < n; i++) total += defs[i].n_examples;
    if (!total) return 0;
    r->ex = nd_calloc(total, sizeof *r->ex);
    orch_bag *bags = nd_calloc(total, sizeof *bags);
    if (!r->ex || !bags) {
        nd_free(bags);
        return nd_seterr(err, ND_ENOMEM, "router: out of memory");
    }
    int rc = 0;
    for (size_t i = 0; i < n && !rc; i++)
        for (size_t k = 0; k < defs[i].n_examples && !rc; k++) {
            const char *e = defs[i].examples[k];
            if (!e) rc = nd_seterr(err, ND_EINVAL, "router: label %s: example %zu is NULL", defs[i].label, k);
            else if (orch_bag_build(&bags[r->n_ex], &r->dict, true, e, strlen(e), TOKF))
                rc = nd_seterr(err, ND_ENOMEM, "router: out of memory");
            else r->ex[r->n_ex++].label = (int)i;
        }
    if (!rc) {
        r->idf = nd_calloc(r->dict.n ? r->dict.n : 1, sizeof *r->idf);
        if (!r->idf) rc = nd_seterr(err, ND_ENOMEM, "router: out of memory");
    }
    if (!rc) {
        for (size_t e = 0; e < r->n_ex; e++)
            for (size_t j = 0; j < bags[e].n; j++) r->idf[bags[e].id[j]] += 1;
        for (size_t t = 0; t < r->dict.n; t++) r->idf[t] = (float)log(1.0 + (double)r->n_ex / r->idf[t]);
        for (size_t e = 0; e < r->n_ex && !rc; e++) {
            example *x = &r->ex[e];
            x->n = bags[e].n;
            x->id = nd_malloc((x->n ? x->n : 1) * sizeof *x->id);
            x->w = nd_malloc((x->n ? x->n : 1) * sizeof *x->w);
            if (!x->id || !x->w) {
                rc = nd_seterr(err, ND_ENOMEM, "router: out of memory");
                break;
            }
            double norm = 0;
            for (size_t j = 0; j < x->n; j++) {
                x->id[j] = bags[e].id[j];
                x->w[j] = (float)((1.0 + log(bags[e].cnt[j])) * r->idf[x->id[j]]);
                norm += (double)x->w[j] * x->w[j];
            }
            norm = norm > 0 ? sqrt(norm) : 1;
            for (size_t j = 0; j < x->n; j++) x->w[j] = (float)(x->w[j] / norm);
        }
    }
    for (size_t e = 0; e < total; e++) orch_bag_free(&bags[e]);
    nd_free(bags);
    return rc;
}

orch_router *orch_router_new(const orch_route_def *defs, size_t n, const orch_router_opts *opts,
                             nd_err *err) {
    if (!defs || n == 0 || n > 256) {
        nd_seterr(err, ND_EINVAL, "router: need 1 to 256 labels");
        return NULL;
    }
    orch_router_opts o = opts ? *opts : (orch_router_opts){0, -1};
    if (o.min_similarity <= 0) o.min_similarity = 0.12;
    if (o.default_label < -1 || o.default_label >= (int)n) {
        nd_seterr(err, ND_EINVAL, "router: default label %d out of range", o.default_label);
        return NULL;
    }
    for (size_t i = 0; i < n; i++) {
        if (!label_name_ok(defs[i].label)) {
            nd_seterr(err, ND_EINVAL, "router: label %zu: name must be 1-64 of [A-Za-z0-9_-]", i);
            return NULL;
        }
        for (size_t j = 0; j < i; j++)
            if (!strcmp(defs[i].label, defs[j].label)) {
                nd_seterr(err, ND_EINVAL, "router: label %s defined twice", defs[i].label);
                return NULL;
            }
    }
    orch_router *r = nd_calloc(1, sizeof *r);
    if (!r || !(r->labels = nd_calloc(n, sizeof *r->labels))) {
        nd_free(r);
        nd_seterr(err, ND_ENOMEM, "router: out of memory");
        return NULL;
    }
    r->opts = o;
    int rc = 0;
    for (size_t i = 0; i < n && !rc; i++) {
        r->n_labels = i + 1;
        rc = build_label(r, &r->labels[i], &defs[i], i, err);
    }
    if (!rc) rc = build_examples(r, defs, n, err);
    if (rc) {
        orch_router_free(r);
        return NULL;
    }
    return r;
}

/* ------------------------------------------------------------ classify */

static int rule_weights(const orch_router *r, const char *text, size_t n, double *w, nd_err *err) {
    size_t cap = 4096;
    uint32_t *ids = nd_malloc(cap * sizeof *ids);
    if (!ids) return nd_seterr(err, ND_ENOMEM, "router: out of memory");
    ids_ctx c = {(orch_dict *)&r->kwdict, false, ids, 0, cap, 0};
    orch_tokenize(text, n, ORCH_TOK_STEM, ids_add, &c);
    size_t nt = c.n < cap ? c.n : cap;
    pcre2_match_data *md = pcre2_match_data_create(1, NULL);
    if (!md) {
        nd_free(ids);
        return nd_seterr(err, ND_ENOMEM, "router: out of memory");
    }
    for (size_t li = 0; li < r->n_labels; li++) {
        const label *l = &r->labels[li];
        w[li] = 0;
        for (size_t k = 0; k < l->n_kws; k++) {
            const kw *q = &l->kws[k];
            for (size_t i = 0; i + q->n <= nt; i++)
                if (!memcmp(ids + i, q->ids, q->n * sizeof *ids)) {
                    w[li] += 1;
                    break; /* each keyword counts once */
                }
        }
        for (size_t k = 0; k < l->n_pats; k++)
            if (pcre2_match(l->pats[k], (PCRE2_SPTR)text, n, 0, 0, md, NULL) >= 0) w[li] += 2;
    }
    pcre2_match_data_free(md);
    nd_free(ids);
    return 0;
}

static int example_scores(const orch_router *r, const char *text, size_t n, double *best, nd_err *err) {
    orch_bag q = {0};
    if (orch_bag_build(&q, (orch_dict *)&r->dict, false, text, n, TOKF)) {
        orch_bag_free(&q);
        return nd_seterr(err, ND_ENOMEM, "router: out of memory");
    }
    double norm = 0;
    for (size_t j = 0; j < q.n; j++) {
        double v = (1.0 + log(q.cnt[j])) * r->idf[q.id[j]];
        norm += v * v;
    }
    norm = norm > 0 ? sqrt(norm) : 1;
    for (size_t li = 0; li < r->n_labels; li++) best[li] = 0;
    for (size_t e = 0; e < r->n_ex; e++) {
        const example *x = &r->ex[e];
        double dot = 0;
        for (size_t i = 0, j = 0; i < x->n && j < q.n;) {
            if (x->id[i] < q.id[j]) i++;
            else if (x->id[i] > q.id[j]) j++;
            else {
                dot += x->w[i] * (1.0 + log(q.cnt[j])) * r->idf[q.id[j]];
                i++;
                j++;
            }
        }
        dot /= norm;
        if (dot > best[x->label]) best[x->label] = dot;
    }
    orch_bag_free(&q);
    return 0;
}

static void top2(const double *v, size_t n, size_t *a, size_t *b) {
    *a = 0;
    *b = n > 1 ? 1 : 0;
    if (n > 1 && v[1] > v[0]) {
        *a = 1;
        *b = 0;
    }
    for (size_t i = 2; i < n; i++) {
        if (v[i] > v[*a]) {
            *b = *a;
            *a = i;
        } else if (v[i] > v[*b]) *b = i;
    }
}

int orch_router_classify(const orch_router *r, const char *text, size_t n, orch_route_result *res,
                         nd_err *err) {
    if (!r || !res || (!text && n)) return nd_seterr(err, ND_EINVAL, "router_classify: NULL argument");
    double w[256];
    int rc = rule_weights(r, text, n, w, err);
    if (rc) return rc;
    size_t a, b;
    top2(w, r->n_labels, &a, &b);
    if (w[a] > 0 && (r->n_labels == 1 || w[a] > w[b])) {
        double sum = 0;
        for (size_t i = 0; i < r->n_labels; i++) sum += w[i];
        *res = (orch_route_result){(int)a, w[a] / sum, w[a], ORCH_ROUTE_RULE};
        return 0;
    }
    if ((rc = example_scores(r, text, n, w, err))) return rc;
    top2(w, r->n_labels, &a, &b);
    if (w[a] >= r->opts.min_similarity) {
        double margin = r->n_labels > 1 ? (w[a] - w[b]) / w[a] : 1;
        *res = (orch_route_result){(int)a, w[a] * (0.5 + 0.5 * margin) > 1 ? 1 : w[a] * (0.5 + 0.5 * margin),
                                   w[a], ORCH_ROUTE_EXAMPLES};
        if (res->confidence < 0.01) res->confidence = 0.01;
        return 0;
    }
    if (r->opts.default_label >= 0) *res = (orch_route_result){r->opts.default_label, 0, w[a], ORCH_ROUTE_DEFAULT};
    else *res = (orch_route_result){-1, 0, w[a], ORCH_ROUTE_NONE};
    return 0;
}

/* ------------------------------------------------------------ helper path */

int orch_router_grammar(const orch_router *r, nd_buf *out) {
    if (nd_buf_append(out, "root ::= ", 9)) return ND_ENOMEM;
    for (size_t i = 0; i < r->n_labels; i++)
        if (nd_buf_printf(out, "%s\"%s\"", i ? " | " : "", r->labels[i].name)) return ND_ENOMEM;
    return nd_buf_append(out, "\n", 1);
}

int orch_router_prompt(const orch_router *r, const char *text, size_t n, nd_buf *out) {
    if (nd_buf_printf(out, "Classify the request into exactly one of these labels:\n")) return ND_ENOMEM;
    for (size_t i = 0; i < r->n_labels; i++)
        if (nd_buf_printf(out, "- %s%s%s\n", r->labels[i].name, r->labels[i].desc ? ": " : "",
                          r->labels[i].desc ? r->labels[i].desc : ""))
            return ND_ENOMEM;
    if (nd_buf_printf(out, "Answer with the label only.\n\nRequest:\n") || nd_buf_append(out, text, n) ||
        nd_buf_printf(out, "\n\nLabel: "))
        return ND_ENOMEM;
    return 0;
}

int orch_router_parse_helper(const orch_router *r, const char *s, size_t n, orch_route_result *res) {
    while (n && (isspace((unsigned char)*s) || *s == '"' || *s == '\'')) s++, n--;
    while (n && (isspace((unsigned char)s[n - 1]) || s[n - 1] == '"' || s[n - 1] == '\'' || s[n - 1] == '.')) n--;
    for (size_t i = 0; i < r->n_labels; i++)
        if (strlen(r->labels[i].name) == n && !memcmp(r->labels[i].name, s, n)) {
            *res = (orch_route_result){(int)i, 1, 1, ORCH_ROUTE_HELPER};
            return 0;
        }
    return ND_ENOTFOUND;
}
