/* GBNF text -> grammar program (see grammar_internal.h for the layout).
 *
 * Recursive descent over the text. Groups and repetitions are lowered into generated rules:
 *   ( alts )  -> G ::= alts
 *   x*        -> R ::= x R | ""            (right recursion: no stack growth)
 *   x+        -> x R,  R as for x*
 *   x{m,n}    -> x (m times) R1,  R1 ::= x R2 | "",  ...,  R(n-m) ::= x | ""
 * A multi-element x (a literal of several characters) first becomes its own rule.
 * After parsing: undefined rules, the root, and left recursion that would grow the stack
 * without consuming input are checked; then every rule is copied into one flat array.
 */
#include <stdarg.h>
#include <stdio.h>
#include <string.h>

#include "sample/grammar_internal.h"

#define GP_MAX_RULES (1u << 18)
#define GP_MAX_NEST 256 /* parentheses depth (the parser recurses once per level) */

typedef struct prule {
    char *name;        /* user rules only; NULL for generated rules */
    uint32_t parent;   /* generated rules: the rule whose text created them */
    gelem *el;         /* alternatives, each closed by GE_END */
    uint32_t n, cap;
    size_t def_pos;    /* offset of the definition (user rules) */
    size_t ref_pos;    /* offset of the first reference */
    bool defined;
} prule;

typedef struct gp {
    const char *s;
    size_t n, i;
    nd_err *err;
    prule *r;
    uint32_t n_r, cap_r;
    uint32_t *ht; /* user rule names: rule id + 1, 0 = empty; open addressing */
    uint32_t ht_cap, n_named;
    gclass *cls;
    uint32_t n_cls, cap_cls;
    uint32_t *rng; /* (lo, hi) pairs */
    uint32_t n_rng, cap_rng;
    uint32_t lit_cls[128]; /* class id + 1 of single ASCII characters, for reuse */
    size_t n_el;           /* elements in all rules (limit) */
    int depth;
} gp;

/* ------------------------------------------------------------- errors */

static void line_col(const char *s, size_t at, int *line, int *col) {
    int l = 1, c = 1;
    for (size_t k = 0; k < at; k++) {
        if (s[k] == '\n') { l++; c = 1; }
        else if (((uint8_t)s[k] & 0xc0) != 0x80) c++; /* columns count characters */
    }
    *line = l;
    *col = c;
}

__attribute__((format(printf, 4, 5)))
static int perr(gp *p, size_t at, int code, const char *fmt, ...) {
    char msg[384];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(msg, sizeof msg, fmt, ap);
    va_end(ap);
    int line, col;
    line_col(p->s, at > p->n ? p->n : at, &line, &col);
    return nd_seterr(p->err, code, "grammar: line %d:%d: %s", line, col, msg);
}

static int oom(gp *p) { return nd_seterr(p->err, ND_ENOMEM, "grammar: out of memory"); }

/* Printable form of the character at s[i] for messages. */
static const char *show_char(const gp *p, size_t i, char buf[16]) {
    if (i >= p->n) return "end of input";
    uint8_t c = (uint8_t)p->s[i];
    if (c == '\n') return "end of line";
    if (c >= 0x21 && c < 0x7f) snprintf(buf, 16, "'%c'", c);
    else snprintf(buf, 16, "byte 0x%02x", c);
    return buf;
}

/* ------------------------------------------------------------- building */

static int grow(void **ptr, uint32_t *cap, uint32_t need, size_t elem) {
    if (need <= *cap) return 0;
    uint32_t nc = *cap ? *cap : 8;
    while (nc < need) {
        if (nc > UINT32_MAX / 2) return ND_ENOMEM;
        nc *= 2;
    }
    void *q = nd_realloc(*ptr, (size_t)nc * elem);
    if (!q) return ND_ENOMEM;
    *ptr = q;
    *cap = nc;
    return 0;
}

static int rule_push(gp *p, uint32_t rid, uint32_t kind, uint32_t v) {
    if (++p->n_el > GRAMMAR_MAX_ELEMS)
        return perr(p, p->i, ND_ERANGE, "grammar too large (more than %u elements after "
                    "expanding repetitions)", GRAMMAR_MAX_ELEMS);
    prule *r = &p->r[rid];
    if (grow((void **)&r->el, &r->cap, r->n + 1, sizeof *r->el)) return oom(p);
    r->el[r->n++] = (gelem){kind, v};
    return 0;
}

static int rule_new(gp *p, const char *name, size_t len, uint32_t parent, uint32_t *out) {
    if (p->n_r >= GP_MAX_RULES)
        return perr(p, p->i, ND_ERANGE, "grammar too large (more than %u rules after "
                    "expanding groups and repetitions)", GP_MAX_RULES);
    if (grow((void **)&p->r, &p->cap_r, p->n_r + 1, sizeof *p->r)) return oom(p);
    prule *r = &p->r[p->n_r];
    memset(r, 0, sizeof *r);
    r->parent = parent;
    if (name && !(r->name = nd_strndup(name, len))) return oom(p);
    *out = p->n_r++;
    return 0;
}

static uint32_t name_hash(const char *s, size_t n) {
    uint32_t h = 2166136261u;
    for (size_t k = 0; k < n; k++) h = (h ^ (uint8_t)s[k]) * 16777619u;
    return h;
}

static uint32_t *ht_slot(gp *p, const char *s, size_t n) {
    uint32_t m = p->ht_cap - 1, h = name_hash(s, n) & m;
    for (;; h = (h + 1) & m) {
        uint32_t id = p->ht[h];
        if (!id) return &p->ht[h];
        const char *nm = p->r[id - 1].name;
        if (strlen(nm) == n && memcmp(nm, s, n) == 0) return &p->ht[h];
    }
}

/* Rule id for a user name, created (undefined) on first sight. */
static int rule_lookup(gp *p, const char *s, size_t n, size_t at, uint32_t *out) {
    if ((p->n_named + 1) * 2 > p->ht_cap) {
        uint32_t nc = p->ht_cap ? p->ht_cap * 2 : 64;
        uint32_t *old = p->ht, oc = p->ht_cap;
        if (!(p->ht = nd_calloc(nc, sizeof *p->ht))) { p->ht = old; return oom(p); }
        p->ht_cap = nc;
        for (uint32_t k = 0; k < oc; k++)
            if (old[k]) {
                const char *nm = p->r[old[k] - 1].name;
                *ht_slot(p, nm, strlen(nm)) = old[k];
            }
        nd_free(old);
    }
    uint32_t *slot = ht_slot(p, s, n);
    if (*slot) { *out = *slot - 1; return 0; }
    int rc = rule_new(p, s, n, UINT32_MAX, out);
    if (rc) return rc;
    p->r[*out].ref_pos = at;
    *slot = *out + 1;
    p->n_named++;
    return 0;
}

/* Adds a class from (lo, hi) pairs; fills the ASCII bitmap. */
static int class_new(gp *p, const uint32_t *pairs, uint32_t n, bool neg, uint32_t *out) {
    if (!neg && n == 1 && pairs[0] == pairs[1] && pairs[0] < 128 && p->lit_cls[pairs[0]]) {
        *out = p->lit_cls[pairs[0]] - 1;
        return 0;
    }
    if (grow((void **)&p->cls, &p->cap_cls, p->n_cls + 1, sizeof *p->cls) ||
        grow((void **)&p->rng, &p->cap_rng, 2 * (p->n_rng + n), sizeof *p->rng))
        return oom(p);
    gclass *c = &p->cls[p->n_cls];
    memset(c, 0, sizeof *c);
    c->off = p->n_rng;
    c->n = n;
    c->neg = neg;
    bool high = false;
    for (uint32_t k = 0; k < n; k++) {
        uint32_t lo = pairs[2 * k], hi = pairs[2 * k + 1];
        p->rng[2 * (p->n_rng + k)] = lo;
        p->rng[2 * (p->n_rng + k) + 1] = hi;
        for (uint32_t cp = lo; cp <= hi && cp < 128; cp++) c->ascii[cp >> 6] |= 1ull << (cp & 63);
        if (hi >= 128) high = true;
    }
    if (neg) {
        c->ascii[0] = ~c->ascii[0];
        c->ascii[1] = ~c->ascii[1];
        high = true; /* conservative: only used as a pre-filter */
    }
    c->any_high = high;
    p->n_rng += n;
    if (!neg && n == 1 && pairs[0] == pairs[1] && pairs[0] < 128) p->lit_cls[pairs[0]] = p->n_cls + 1;
    *out = p->n_cls++;
    return 0;
}

/* ------------------------------------------------------------- lexing */

static bool is_word(char c) {
    return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') ||
           c == '-' || c == '_';
}

static void skip_space(gp *p, bool nl_ok) {
    while (p->i < p->n) {
        char c = p->s[p->i];
        if (c == ' ' || c == '\t') p->i++;
        else if (c == '#') {
            while (p->i < p->n && p->s[p->i] != '\n') p->i++;
        } else if ((c == '\n' || c == '\r') && nl_ok) p->i++;
        else if (c == '\r' && p->i + 1 < p->n && p->s[p->i + 1] == '\n') p->i++; /* CRLF */
        else break;
    }
}

static int hexval(char c) {
    if (c >= '0' && c <= '9') return c - '0';
    if (c >= 'a' && c <= 'f') return c - 'a' + 10;
    if (c >= 'A' && c <= 'F') return c - 'A' + 10;
    return -1;
}

/* One (possibly escaped) character of a literal or class at p->i. */
static int parse_char(gp *p, uint32_t *cp) {
    size_t at = p->i;
    if (p->s[at] == '\\') {
        if (at + 1 >= p->n) return perr(p, at, ND_EFORMAT, "escape '\\' at end of input");
        char e = p->s[at + 1];
        int nhex = e == 'x' ? 2 : e == 'u' ? 4 : e == 'U' ? 8 : 0;
        if (nhex) {
            uint32_t v = 0;
            for (int k = 0; k < nhex; k++) {
                int h = at + 2 + (size_t)k < p->n ? hexval(p->s[at + 2 + k]) : -1;
                if (h < 0)
                    return perr(p, at, ND_EFORMAT, "bad escape: '\\%c' needs %d hex digits", e, nhex);
                v = (v << 4) | (uint32_t)h;
            }
            if (v > 0x10ffff || (v >= 0xd800 && v <= 0xdfff))
                return perr(p, at, ND_EFORMAT, "bad escape: U+%X is not a Unicode scalar value", v);
            *cp = v;
            p->i = at + 2 + (size_t)nhex;
            return 0;
        }
        static const char simple[] = "nn" "tt" "rr" "\\\\" "\"\"" "[[" "]]" "--" "^^" "''" "//";
        for (size_t k = 0; k + 1 < sizeof simple; k += 2)
            if (simple[k] == e) {
                *cp = e == 'n' ? '\n' : e == 't' ? '\t' : e == 'r' ? '\r' : (uint32_t)e;
                p->i = at + 2;
                return 0;
            }
        char b[16];
        return perr(p, at, ND_EFORMAT, "bad escape '\\' followed by %s", show_char(p, at + 1, b));
    }
    int k = nd_utf8_decode((const uint8_t *)p->s + at, p->n - at, cp);
    if (!k) return perr(p, at, ND_EFORMAT, "invalid UTF-8");
    if (*cp == 0) return perr(p, at, ND_EFORMAT, "NUL byte (write \\x00)");
    p->i = at + (size_t)k;
    return 0;
}

static int parse_literal(gp *p, uint32_t rid) {
    size_t start = p->i++;
    while (p->i < p->n && p->s[p->i] != '"') {
        uint32_t cp, c;
        int rc = parse_char(p, &cp);
        if (rc) return rc;
        uint32_t pair[2] = {cp, cp};
        if ((rc = class_new(p, pair, 1, false, &c)) || (rc = rule_push(p, rid, GE_CHR, c))) return rc;
    }
    if (p->i >= p->n) return perr(p, start, ND_EFORMAT, "unterminated string literal");
    p->i++;
    return 0;
}

static int parse_class(gp *p, uint32_t rid) {
    size_t start = p->i++;
    bool neg = p->i < p->n && p->s[p->i] == '^';
    if (neg) p->i++;
    uint32_t *pairs = NULL, n = 0, cap = 0;
    int rc = 0;
    while (p->i < p->n && p->s[p->i] != ']') {
        uint32_t lo, hi;
        size_t at = p->i;
        if ((rc = parse_char(p, &lo))) goto out;
        hi = lo;
        if (p->i + 1 < p->n && p->s[p->i] == '-' && p->s[p->i + 1] != ']') {
            p->i++;
            if ((rc = parse_char(p, &hi))) goto out;
            if (hi < lo) {
                rc = perr(p, at, ND_EFORMAT, "reversed character range (U+%X > U+%X)", lo, hi);
                goto out;
            }
        }
        if (grow((void **)&pairs, &cap, 2 * (n + 1), sizeof *pairs)) { rc = oom(p); goto out; }
        pairs[2 * n] = lo;
        pairs[2 * n + 1] = hi;
        n++;
    }
    if (p->i >= p->n) { rc = perr(p, start, ND_EFORMAT, "unterminated character class"); goto out; }
    p->i++;
    uint32_t c;
    if (!(rc = class_new(p, pairs, n, neg, &c))) rc = rule_push(p, rid, GE_CHR, c);
out:
    nd_free(pairs);
    return rc;
}

/* {m}, {m,}, {m,n}, {,n}: *max = UINT32_MAX for no upper bound. */
static int parse_bounds(gp *p, uint32_t *min, uint32_t *max) {
    size_t start = p->i++;
    uint32_t v[2] = {0, UINT32_MAX};
    bool have[2] = {false, false}, comma = false;
    for (int k = 0; k < 2; k++) {
        skip_space(p, false);
        while (p->i < p->n && p->s[p->i] >= '0' && p->s[p->i] <= '9') {
            if (!have[k]) v[k] = 0;
            have[k] = true;
            v[k] = v[k] * 10 + (uint32_t)(p->s[p->i++] - '0');
            if (v[k] > GRAMMAR_MAX_REPEAT)
                return perr(p, start, ND_EFORMAT, "repetition bound too large (max %d)",
                            GRAMMAR_MAX_REPEAT);
        }
        skip_space(p, false);
        if (k == 0 && p->i < p->n && p->s[p->i] == ',') { comma = true; p->i++; }
        else break;
    }
    char b[16];
    if (p->i >= p->n || p->s[p->i] != '}')
        return perr(p, p->i, ND_EFORMAT, "bad repetition bounds: expected '}', found %s",
                    show_char(p, p->i, b));
    p->i++;
    if (!have[0] && !have[1])
        return perr(p, start, ND_EFORMAT, "bad repetition bounds: expected {m}, {m,}, {m,n} or {,n}");
    *min = have[0] ? v[0] : 0;
    *max = !comma ? *min : have[1] ? v[1] : UINT32_MAX;
    if (*max < *min)
        return perr(p, start, ND_EFORMAT, "bad repetition bounds {%u,%u}: min > max", *min, *max);
    return 0;
}

/* Replaces the elements rule[last..] by the repetition {min,max} of them. */
static int apply_repeat(gp *p, uint32_t rid, uint32_t last, uint32_t min, uint32_t max) {
    int rc;
    gelem item;
    uint32_t n_item = p->r[rid].n - last;
    if (n_item == 1) {
        item = p->r[rid].el[last];
    } else {
        uint32_t g;
        if ((rc = rule_new(p, NULL, 0, rid, &g))) return rc;
        for (uint32_t k = 0; k < n_item; k++) {
            gelem e = p->r[rid].el[last + k];
            if ((rc = rule_push(p, g, e.kind, e.v))) return rc;
        }
        if ((rc = rule_push(p, g, GE_END, 0))) return rc;
        item = (gelem){GE_REF, g};
    }
    p->r[rid].n = last;
    for (uint32_t k = 0; k < min; k++)
        if ((rc = rule_push(p, rid, item.kind, item.v))) return rc;
    if (max == min) return 0;
    uint32_t prev = UINT32_MAX;
    uint32_t n_opt = max == UINT32_MAX ? 1 : max - min;
    for (uint32_t k = 0; k < n_opt; k++) { /* built inside out: R_k ::= item R_{k+1} | "" */
        uint32_t r;
        if ((rc = rule_new(p, NULL, 0, rid, &r)) || (rc = rule_push(p, r, item.kind, item.v)))
            return rc;
        uint32_t next = max == UINT32_MAX ? r : prev;
        if (next != UINT32_MAX && (rc = rule_push(p, r, GE_REF, next))) return rc;
        if ((rc = rule_push(p, r, GE_END, 0)) || (rc = rule_push(p, r, GE_END, 0))) return rc;
        prev = r;
    }
    return rule_push(p, rid, GE_REF, prev);
}

static int parse_alternates(gp *p, uint32_t rid, bool nested);

static int parse_sequence(gp *p, uint32_t rid, bool nested) {
    uint32_t last = UINT32_MAX; /* start of the last item in the rule's elements */
    for (;;) {
        skip_space(p, nested);
        if (p->i >= p->n) return 0;
        char c = p->s[p->i];
        size_t at = p->i;
        int rc = 0;
        if (c == '"' || c == '[' || c == '.' || c == '(' || is_word(c)) last = p->r[rid].n;
        if (c == '"') rc = parse_literal(p, rid);
        else if (c == '[') rc = parse_class(p, rid);
        else if (c == '.') {
            uint32_t cls;
            p->i++;
            if (!(rc = class_new(p, NULL, 0, true, &cls))) rc = rule_push(p, rid, GE_CHR, cls);
        } else if (is_word(c)) {
            while (p->i < p->n && is_word(p->s[p->i])) p->i++;
            uint32_t ref;
            rc = rule_lookup(p, p->s + at, p->i - at, at, &ref);
            if (!rc) rc = rule_push(p, rid, GE_REF, ref);
        } else if (c == '(') {
            if (++p->depth > GP_MAX_NEST)
                return perr(p, at, ND_EFORMAT, "parentheses nested deeper than %d", GP_MAX_NEST);
            p->i++;
            uint32_t g;
            if ((rc = rule_new(p, NULL, 0, rid, &g)) || (rc = parse_alternates(p, g, true))) return rc;
            skip_space(p, true);
            if (p->i >= p->n || p->s[p->i] != ')')
                return perr(p, at, ND_EFORMAT, "unbalanced parentheses: '(' is never closed");
            p->i++;
            p->depth--;
            rc = rule_push(p, rid, GE_REF, g);
        } else if (c == '*' || c == '+' || c == '?' || c == '{') {
            if (last == UINT32_MAX)
                return perr(p, at, ND_EFORMAT, "repetition '%c' with nothing before it to repeat", c);
            uint32_t min = c == '+' ? 1 : 0, max = c == '?' ? 1 : UINT32_MAX;
            if (c == '{') {
                if ((rc = parse_bounds(p, &min, &max))) return rc;
            } else {
                p->i++;
            }
            rc = apply_repeat(p, rid, last, min, max);
        } else {
            return 0; /* '|', ')', end of line, or something the caller reports */
        }
        if (rc) return rc;
    }
}

static int parse_alternates(gp *p, uint32_t rid, bool nested) {
    for (;;) {
        int rc = parse_sequence(p, rid, nested);
        if (rc || (rc = rule_push(p, rid, GE_END, 0))) return rc;
        size_t save = p->i;
        skip_space(p, true); /* a top-level rule may continue on a line starting with '|' */
        if (p->i < p->n && p->s[p->i] == '|') {
            p->i++;
            skip_space(p, true);
            continue;
        }
        if (!nested) p->i = save;
        return 0;
    }
}

static int parse_rule(gp *p) {
    size_t at = p->i;
    char b[16];
    if (!is_word(p->s[at]))
        return perr(p, at, ND_EFORMAT, "expected a rule name, found %s%s", show_char(p, at, b),
                    p->s[at] == ')' ? " (unbalanced parentheses)" : "");
    while (p->i < p->n && is_word(p->s[p->i])) p->i++;
    uint32_t rid;
    int rc = rule_lookup(p, p->s + at, p->i - at, at, &rid);
    if (rc) return rc;
    if (p->r[rid].defined) {
        int l, c;
        line_col(p->s, p->r[rid].def_pos, &l, &c);
        return perr(p, at, ND_EFORMAT, "rule '%s' defined twice (first at line %d:%d)",
                    p->r[rid].name, l, c);
    }
    p->r[rid].defined = true;
    p->r[rid].def_pos = at;
    skip_space(p, false);
    if (p->n - p->i < 3 || memcmp(p->s + p->i, "::=", 3) != 0)
        return perr(p, p->i, ND_EFORMAT, "expected '::=' after rule name '%s', found %s",
                    p->r[rid].name, show_char(p, p->i, b));
    p->i += 3;
    skip_space(p, true);
    if ((rc = parse_alternates(p, rid, false))) return rc;
    skip_space(p, false);
    if (p->i < p->n && p->s[p->i] != '\n' && p->s[p->i] != '\r')
        return perr(p, p->i, ND_EFORMAT, "unexpected %s after rule '%s'%s", show_char(p, p->i, b),
                    p->r[rid].name, p->s[p->i] == ')' ? " (unbalanced parentheses)" : "");
    return 0;
}

/* ------------------------------------------------------------- checks */

/* Name of the user rule a (possibly generated) rule comes from. */
static const char *user_name(const gp *p, uint32_t r) {
    while (!p->r[r].name) r = p->r[r].parent;
    return p->r[r].name;
}

static uint32_t user_rule(const gp *p, uint32_t r) {
    while (!p->r[r].name) r = p->r[r].parent;
    return r;
}

typedef struct ledge { uint32_t from, to; bool grow; } ledge;

/* Rejects cycles of non-consuming expansions that push a continuation (left recursion):
 * they would grow a stack forever. Cycles made only of tail calls return to the same
 * stack and are cut by the matcher's duplicate check. */
static int check_left_recursion(gp *p) {
    uint32_t nr = p->n_r;
    bool *nullable = nd_calloc(nr, 1);
    ledge *e = NULL;
    uint32_t ne = 0, cap = 0;
    uint32_t *index = nd_malloc((size_t)nr * sizeof *index), *low = nd_malloc((size_t)nr * sizeof *low);
    uint32_t *stk = nd_malloc((size_t)nr * sizeof *stk), *scc = nd_malloc((size_t)nr * sizeof *scc);
    uint32_t *cs = nd_malloc((size_t)nr * 2 * sizeof *cs), *first = nd_calloc((size_t)nr + 1, sizeof *first);
    bool *on = nd_calloc(nr, 1);
    int rc = 0;
    if (!nullable || !index || !low || !stk || !scc || !cs || !first || !on) { rc = oom(p); goto out; }
    for (bool changed = true; changed;) { /* nullable rules: fixpoint */
        changed = false;
        for (uint32_t r = 0; r < nr; r++) {
            if (nullable[r]) continue;
            bool alt_ok = true;
            for (uint32_t k = 0; k < p->r[r].n; k++) {
                gelem x = p->r[r].el[k];
                if (x.kind == GE_END) {
                    if (alt_ok) { nullable[r] = changed = true; break; }
                    alt_ok = true;
                } else if (x.kind == GE_CHR || !nullable[x.v]) alt_ok = false;
            }
        }
    }
    for (uint32_t r = 0; r < nr; r++) { /* left edges, sorted by source */
        bool live = true;
        for (uint32_t k = 0; k < p->r[r].n; k++) {
            gelem x = p->r[r].el[k];
            if (x.kind == GE_END) { live = true; continue; }
            if (!live) continue;
            if (x.kind == GE_CHR) { live = false; continue; }
            if (grow((void **)&e, &cap, ne + 1, sizeof *e)) { rc = oom(p); goto out; }
            e[ne++] = (ledge){r, x.v, p->r[r].el[k + 1].kind != GE_END};
            live = nullable[x.v];
        }
        first[r + 1] = ne;
    }
    /* Tarjan's SCC, iterative: cs holds (node, next edge) frames. */
    uint32_t idx = 0, sp = 0, csp = 0, n_scc = 0;
    for (uint32_t r = 0; r < nr; r++) index[r] = UINT32_MAX;
    for (uint32_t root = 0; root < nr; root++) {
        if (index[root] != UINT32_MAX) continue;
        cs[csp++] = root; cs[csp++] = first[root];
        index[root] = low[root] = idx++; stk[sp++] = root; on[root] = true;
        while (csp) {
            uint32_t v = cs[csp - 2], *ei = &cs[csp - 1];
            if (*ei < first[v + 1]) {
                uint32_t w = e[(*ei)++].to;
                if (index[w] == UINT32_MAX) {
                    index[w] = low[w] = idx++; stk[sp++] = w; on[w] = true;
                    cs[csp++] = w; cs[csp++] = first[w];
                } else if (on[w] && index[w] < low[v]) low[v] = index[w];
                continue;
            }
            csp -= 2;
            if (low[v] == index[v]) {
                uint32_t w;
                do { w = stk[--sp]; on[w] = false; scc[w] = n_scc; } while (w != v);
                n_scc++;
            }
            if (csp && low[v] < low[cs[csp - 2]]) low[cs[csp - 2]] = low[v];
        }
    }
    for (uint32_t k = 0; k < ne; k++)
        if (e[k].grow && scc[e[k].from] == scc[e[k].to]) {
            uint32_t u = user_rule(p, e[k].from);
            rc = perr(p, p->r[u].def_pos, ND_EFORMAT,
                      "left recursion: rule '%s' can reach '%s' again without consuming input "
                      "(rewrite it with repetition, e.g. a ::= b (\"+\" b)*)",
                      p->r[u].name, user_name(p, e[k].to));
            goto out;
        }
out:
    nd_free(nullable); nd_free(e); nd_free(index); nd_free(low); nd_free(stk); nd_free(scc);
    nd_free(cs); nd_free(first); nd_free(on);
    return rc;
}

/* ------------------------------------------------------------- flatten */

static grammar *flatten(gp *p, uint32_t root) {
    grammar *g = nd_calloc(1, sizeof *g);
    if (!g) return NULL;
    uint64_t n_el = 0, n_alt = 0;
    for (uint32_t r = 0; r < p->n_r; r++) {
        n_el += p->r[r].n;
        for (uint32_t k = 0; k < p->r[r].n; k++) n_alt += p->r[r].el[k].kind == GE_END;
    }
    g->n_el = (uint32_t)n_el;
    g->n_alt = (uint32_t)n_alt;
    g->n_rules = p->n_r;
    g->el = nd_malloc((size_t)(n_el + 1) * sizeof *g->el);
    g->alt = nd_malloc((size_t)(n_alt + 1) * sizeof *g->alt);
    g->rule_alt = nd_malloc(((size_t)p->n_r + 1) * sizeof *g->rule_alt);
    g->names = nd_calloc((size_t)p->n_r + 1, sizeof *g->names);
    if (!g->el || !g->alt || !g->rule_alt || !g->names) { grammar_free(g); return NULL; }
    uint32_t pe = 0, pa = 0;
    for (uint32_t r = 0; r < p->n_r; r++) {
        g->rule_alt[r] = pa;
        bool start = true;
        for (uint32_t k = 0; k < p->r[r].n; k++) {
            if (start) g->alt[pa++] = pe;
            g->el[pe++] = p->r[r].el[k];
            start = p->r[r].el[k].kind == GE_END;
        }
        if (p->r[r].name) {
            g->names[r] = p->r[r].name;
            p->r[r].name = NULL;
        }
    }
    g->rule_alt[p->n_r] = pa;
    g->cls = p->cls; p->cls = NULL;
    g->n_cls = p->n_cls;
    g->rng = p->rng; p->rng = NULL;
    g->n_rng = p->n_rng;
    g->root = root;
    return g;
}

static void gp_free(gp *p) {
    for (uint32_t r = 0; r < p->n_r; r++) {
        nd_free(p->r[r].name);
        nd_free(p->r[r].el);
    }
    nd_free(p->r);
    nd_free(p->ht);
    nd_free(p->cls);
    nd_free(p->rng);
}

grammar *grammar_parse(const char *text, size_t len, const char *root, nd_err *err) {
    gp p = {.s = text, .n = text ? len : 0, .err = err};
    if (!root) root = "root";
    grammar *g = NULL;
    skip_space(&p, true);
    if (p.i >= p.n) {
        perr(&p, p.i, ND_EFORMAT, "empty grammar (expected at least 'root ::= ...')");
        goto out;
    }
    while (p.i < p.n) {
        if (parse_rule(&p)) goto out;
        skip_space(&p, true);
    }
    size_t bad = SIZE_MAX;
    uint32_t bad_r = 0;
    for (uint32_t r = 0; r < p.n_r; r++)
        if (p.r[r].name && !p.r[r].defined && p.r[r].ref_pos < bad) { bad = p.r[r].ref_pos; bad_r = r; }
    if (bad != SIZE_MAX) {
        perr(&p, bad, ND_EFORMAT, "undefined rule '%s'", p.r[bad_r].name);
        goto out;
    }
    uint32_t *slot = NULL;
    if (p.ht_cap) slot = ht_slot(&p, root, strlen(root));
    if (!slot || !*slot) {
        nd_seterr(err, ND_EFORMAT, "grammar: no rule named '%.100s' (the start rule)", root);
        goto out;
    }
    if (check_left_recursion(&p)) goto out;
    if (!(g = flatten(&p, *slot - 1))) oom(&p);
out:
    gp_free(&p);
    return g;
}

void grammar_free(grammar *g) {
    if (!g) return;
    if (g->names)
        for (uint32_t r = 0; r < g->n_rules; r++) nd_free(g->names[r]);
    nd_free(g->names);
    nd_free(g->el);
    nd_free(g->alt);
    nd_free(g->rule_alt);
    nd_free(g->cls);
    nd_free(g->rng);
    nd_free(g);
}

uint32_t grammar_n_rules(const grammar *g) { return g ? g->n_rules : 0; }
