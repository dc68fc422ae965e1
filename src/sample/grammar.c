/* Grammar matcher (a set of pushdown stacks over code points) and constrained sampling.
 *
 * A stack is an array of element positions, top last. Invariant of a state's stacks: each
 * top is a GE_CHR position, or the stack is empty (the root rule is complete). Matching a
 * code point pops the tops that accept it, pushes the next position of their alternative
 * (unless that is GE_END: tail positions are never pushed, so right recursion runs in
 * constant stack), then expands rule references until every top is a class again
 * ("closure"). Duplicate stacks are dropped: this bounds the set and cuts the cycles of
 * nullable tail calls that grammar_parse lets through.
 */
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "sample/grammar_internal.h"

#define NO_POS UINT32_MAX

/* ------------------------------------------------------------- stack sets */

typedef struct sset {
    uint32_t *pool;      /* stacks back to back */
    size_t plen, pcap;
    uint32_t *off, *len; /* [n] stack i = pool[off[i] .. off[i] + len[i]) */
    uint32_t n, cap;
    uint32_t *ht, *htgen; /* dedupe: slot -> stack index + 1, valid if htgen[slot] == gen */
    uint32_t htcap, gen;
} sset;

static void sset_free(sset *s) {
    nd_free(s->pool); nd_free(s->off); nd_free(s->len); nd_free(s->ht); nd_free(s->htgen);
    memset(s, 0, sizeof *s);
}

static void sset_clear(sset *s) {
    s->n = 0;
    s->plen = 0;
    if (++s->gen == 0) { /* generation wrapped: really clear */
        if (s->htgen) memset(s->htgen, 0, (size_t)s->htcap * sizeof *s->htgen);
        s->gen = 1;
    }
}

static uint32_t stk_hash(const uint32_t *p, uint32_t n) {
    uint64_t h = 0x9E3779B97F4A7C15ull ^ n;
    for (uint32_t k = 0; k < n; k++) h = (h ^ p[k]) * 0xff51afd7ed558ccdull;
    return (uint32_t)(h ^ (h >> 32));
}

/* Appends a stack made of a[0..na) plus `extra` (unless NO_POS), without dedupe. */
static int sset_push(sset *s, const uint32_t *a, uint32_t na, uint32_t extra) {
    uint32_t len = na + (extra != NO_POS);
    if (len > GRAMMAR_MAX_DEPTH) return ND_ERANGE;
    if (s->plen + len > s->pcap || !s->pool) { /* never NULL: empty stacks point into it */
        size_t nc = s->pcap ? s->pcap * 2 : 256;
        while (nc < s->plen + len) nc *= 2;
        uint32_t *q = nd_realloc(s->pool, nc * sizeof *q);
        if (!q) return ND_ENOMEM;
        s->pool = q;
        s->pcap = nc;
    }
    if (s->n == s->cap) {
        uint32_t nc = s->cap ? s->cap * 2 : 16;
        uint32_t *o = nd_realloc(s->off, (size_t)nc * sizeof *o);
        if (!o) return ND_ENOMEM;
        s->off = o;
        uint32_t *l = nd_realloc(s->len, (size_t)nc * sizeof *l);
        if (!l) return ND_ENOMEM;
        s->len = l;
        s->cap = nc;
    }
    if (na) memmove(s->pool + s->plen, a, (size_t)na * sizeof *a);
    if (extra != NO_POS) s->pool[s->plen + na] = extra;
    s->off[s->n] = (uint32_t)s->plen;
    s->len[s->n] = len;
    s->n++;
    s->plen += len;
    return 0;
}

static int sset_rehash(sset *s, uint32_t nc) {
    uint32_t *ht = nd_malloc((size_t)nc * sizeof *ht), *gen = nd_calloc(nc, sizeof *gen);
    if (!ht || !gen) { nd_free(ht); nd_free(gen); return ND_ENOMEM; }
    nd_free(s->ht); nd_free(s->htgen);
    s->ht = ht; s->htgen = gen; s->htcap = nc; s->gen = 1;
    for (uint32_t i = 0; i < s->n; i++) {
        uint32_t h = stk_hash(s->pool + s->off[i], s->len[i]) & (nc - 1);
        while (gen[h] == 1) h = (h + 1) & (nc - 1);
        gen[h] = 1;
        ht[h] = i + 1;
    }
    return 0;
}

/* Adds a stack unless already present: 1 added, 0 duplicate, < 0 error. */
static int sset_add(sset *s, const uint32_t *a, uint32_t na) {
    if ((s->n + 1) * 2 > s->htcap) {
        int rc = sset_rehash(s, s->htcap ? s->htcap * 2 : 64);
        if (rc) return rc;
    }
    uint32_t m = s->htcap - 1, h = stk_hash(a, na) & m;
    for (; s->htgen[h] == s->gen; h = (h + 1) & m) {
        uint32_t i = s->ht[h] - 1;
        if (s->len[i] == na && memcmp(s->pool + s->off[i], a, (size_t)na * sizeof *a) == 0) return 0;
    }
    int rc = sset_push(s, a, na, NO_POS);
    if (rc) return rc;
    s->htgen[h] = s->gen;
    s->ht[h] = s->n;
    return 1;
}

static int sset_copy(sset *dst, const sset *src) {
    sset_clear(dst);
    for (uint32_t i = 0; i < src->n; i++) {
        int rc = sset_add(dst, src->pool + src->off[i], src->len[i]);
        if (rc < 0) return rc;
    }
    return 0;
}

/* ------------------------------------------------------------- closure and steps */

typedef struct gwork {
    sset a, b; /* ping-pong results of steps */
    sset seen; /* stacks met during one closure */
    sset wl;   /* worklist (LIFO, no dedupe) */
    uint32_t *tmp;
    size_t tcap;
} gwork;

static void gwork_free(gwork *w) {
    sset_free(&w->a); sset_free(&w->b); sset_free(&w->seen); sset_free(&w->wl);
    nd_free(w->tmp);
    memset(w, 0, sizeof *w);
}

/* Expands the worklist until every stack top is a class; results (deduplicated) in out. */
static int run_closure(const grammar *g, gwork *w, sset *out) {
    const gelem *el = g->el;
    while (w->wl.n) {
        uint32_t i = --w->wl.n, len = w->wl.len[i];
        if (len + 1 > w->tcap) {
            size_t nc = (size_t)len * 2 + 16;
            uint32_t *t = nd_realloc(w->tmp, nc * sizeof *t);
            if (!t) return ND_ENOMEM;
            w->tmp = t;
            w->tcap = nc;
        }
        uint32_t *t = w->tmp;
        memcpy(t, w->wl.pool + w->wl.off[i], (size_t)len * sizeof *t);
        w->wl.plen = w->wl.off[i];
        int rc = sset_add(&w->seen, t, len);
        if (rc <= 0) {
            if (rc < 0) return rc;
            continue;
        }
        if (w->seen.n > 4 * GRAMMAR_MAX_STACKS) return ND_ERANGE; /* work bound per step */
        if (len == 0 || el[t[len - 1]].kind == GE_CHR) {
            if ((rc = sset_add(out, t, len)) < 0) return rc;
            if (out->n > GRAMMAR_MAX_STACKS) return ND_ERANGE;
            continue;
        }
        uint32_t pos = t[len - 1], base = len - 1, rule = el[pos].v;
        if (el[pos + 1].kind != GE_END) t[base++] = pos + 1;
        for (uint32_t a = g->rule_alt[rule]; a < g->rule_alt[rule + 1]; a++) {
            uint32_t start = g->alt[a];
            if ((rc = sset_push(&w->wl, t, base, el[start].kind == GE_END ? NO_POS : start)))
                return rc;
        }
    }
    return 0;
}

static int initial_stacks(const grammar *g, gwork *w, sset *out) {
    sset_clear(out);
    sset_clear(&w->seen);
    sset_clear(&w->wl);
    uint32_t ref[1];
    for (uint32_t a = g->rule_alt[g->root]; a < g->rule_alt[g->root + 1]; a++) {
        uint32_t start = g->alt[a];
        int rc = sset_push(&w->wl, ref, 0, g->el[start].kind == GE_END ? NO_POS : start);
        if (rc) return rc;
    }
    return run_closure(g, w, out);
}

/* out = stacks of `in` after matching code point cp. */
static int step(const grammar *g, gwork *w, const sset *in, uint32_t cp, sset *out) {
    sset_clear(out);
    sset_clear(&w->seen);
    sset_clear(&w->wl);
    for (uint32_t i = 0; i < in->n; i++) {
        uint32_t len = in->len[i];
        if (!len) continue;
        const uint32_t *s = in->pool + in->off[i];
        uint32_t pos = s[len - 1];
        if (!gclass_match(&g->cls[g->el[pos].v], g->rng, cp)) continue;
        int rc = sset_push(&w->wl, s, len - 1, g->el[pos + 1].kind == GE_END ? NO_POS : pos + 1);
        if (rc) return rc;
    }
    return run_closure(g, w, out);
}

/* ------------------------------------------------------------- UTF-8 */

static int seq_need(uint8_t c) {
    if (c < 0x80) return 1;
    if (c >= 0xc2 && c <= 0xdf) return 2;
    if (c >= 0xe0 && c <= 0xef) return 3;
    if (c >= 0xf0 && c <= 0xf4) return 4;
    return 0;
}

/* Byte idx (>= 1) of a sequence starting with lead (Unicode table 3-7). */
static bool cont_ok(uint8_t lead, int idx, uint8_t c) {
    if (idx == 1) {
        if (lead == 0xe0) return c >= 0xa0 && c <= 0xbf;
        if (lead == 0xed) return c >= 0x80 && c <= 0x9f;
        if (lead == 0xf0) return c >= 0x90 && c <= 0xbf;
        if (lead == 0xf4) return c >= 0x80 && c <= 0x8f;
    }
    return (c & 0xc0) == 0x80;
}

/* Code points an incomplete sequence s[0..k) (need bytes in all) can still become. */
static void partial_range(const uint8_t *s, int k, int need, uint32_t *lo, uint32_t *hi) {
    static const uint8_t mask[5] = {0, 0x7f, 0x1f, 0x0f, 0x07};
    static const uint32_t minv[5] = {0, 0, 0x80, 0x800, 0x10000};
    uint32_t v = s[0] & mask[need];
    for (int i = 1; i < k; i++) v = (v << 6) | (s[i] & 0x3f);
    int rem = 6 * (need - k);
    *lo = v << rem;
    *hi = *lo | ((1u << rem) - 1);
    if (*lo < minv[need]) *lo = minv[need];
    if (need == 3 && s[0] == 0xed && *hi > 0xd7ff) *hi = 0xd7ff;
    if (*hi > 0x10ffff) *hi = 0x10ffff;
}

static bool class_hits_range(const grammar *g, const gclass *c, uint32_t lo, uint32_t hi) {
    if (!c->n) return c->neg;
    const uint32_t *r = g->rng + 2 * (size_t)c->off;
    if (!c->neg) {
        for (uint32_t i = 0; i < c->n; i++)
            if (r[2 * i] <= hi && r[2 * i + 1] >= lo) return true;
        return false;
    }
    for (uint32_t cur = lo;;) { /* negated: some point of [lo, hi] outside every range? */
        bool covered = false;
        for (uint32_t i = 0; i < c->n; i++)
            if (r[2 * i] <= cur && r[2 * i + 1] >= cur) {
                if (r[2 * i + 1] >= hi) return false;
                cur = r[2 * i + 1] + 1;
                covered = true;
                break;
            }
        if (!covered) return true;
    }
}

static bool any_top_hits(const grammar *g, const sset *s, uint32_t lo, uint32_t hi) {
    for (uint32_t i = 0; i < s->n; i++)
        if (s->len[i] && class_hits_range(g, &g->cls[g->el[s->pool[s->off[i] + s->len[i] - 1]].v], lo, hi))
            return true;
    return false;
}

/* Matches pend[0..npend) + b[0..n) from the stacks `from`. On acceptance (return 1) *res is
 * the resulting set (`from` itself when no character completed) and out_pend/out_npend the
 * new incomplete sequence. Return 0: rejected; < 0: ND_ENOMEM / ND_ERANGE. */
static int run_bytes(const grammar *g, gwork *w, const sset *from, const uint8_t *pend, int npend,
                     const uint8_t *b, size_t n, const sset **res, uint8_t out_pend[4], int *out_npend) {
    const sset *cur = from;
    uint8_t buf[4];
    int nb = npend;
    memcpy(buf, pend, (size_t)npend);
    size_t i = 0;
    for (;;) {
        if (nb == 0) {
            if (i == n) break;
            buf[nb++] = b[i++];
        }
        int need = seq_need(buf[0]);
        if (!need) return 0;
        while (nb < need && i < n) {
            if (!cont_ok(buf[0], nb, b[i])) return 0;
            buf[nb++] = b[i++];
        }
        if (nb < need) { /* input ends inside a character */
            uint32_t lo, hi;
            partial_range(buf, nb, need, &lo, &hi);
            if (!any_top_hits(g, cur, lo, hi)) return 0;
            break;
        }
        uint32_t cp;
        if (nd_utf8_decode(buf, (size_t)need, &cp) != need) return 0;
        nb = 0;
        sset *out = cur == &w->a ? &w->b : &w->a;
        int rc = step(g, w, cur, cp, out);
        if (rc) return rc;
        if (!out->n) return 0;
        cur = out;
    }
    *res = cur;
    memcpy(out_pend, buf, (size_t)nb);
    *out_npend = nb;
    return 1;
}

/* ------------------------------------------------------------- states */

struct grammar_state {
    const grammar *g;
    sset cur;           /* current stacks */
    uint8_t pend[4];    /* incomplete UTF-8 sequence carried between tokens */
    int npend;
    gwork *w;           /* scratch for advancing, created on first use, never cloned */
    float *masked;      /* sampling scratch [n_vocab] */
    struct cand *cand;  /* sampling scratch [n_vocab] */
    int32_t *keep;      /* sampling scratch [n_vocab] */
    int64_t n_scratch;
};

static int state_work(grammar_state *st, nd_err *err) {
    if (!st->w && !(st->w = nd_calloc(1, sizeof *st->w)))
        return nd_seterr(err, ND_ENOMEM, "grammar: out of memory");
    return 0;
}

static int limit_err(nd_err *err, int rc) {
    if (rc == ND_ERANGE)
        return nd_seterr(err, rc, "grammar: state too large (more than %d stacks or %d nested "
                         "positions): the grammar is too ambiguous or the text nests too deeply",
                         GRAMMAR_MAX_STACKS, GRAMMAR_MAX_DEPTH);
    return nd_seterr(err, rc, "grammar: out of memory");
}

int grammar_state_reset(grammar_state *st, nd_err *err) {
    int rc = state_work(st, err);
    if (rc) return rc;
    if ((rc = initial_stacks(st->g, st->w, &st->w->a)) || (rc = sset_copy(&st->cur, &st->w->a)))
        return limit_err(err, rc);
    st->npend = 0;
    return 0;
}

grammar_state *grammar_state_new(const grammar *g, nd_err *err) {
    if (!g) {
        nd_seterr(err, ND_EINVAL, "grammar: NULL grammar");
        return NULL;
    }
    grammar_state *st = nd_calloc(1, sizeof *st);
    if (!st) {
        nd_seterr(err, ND_ENOMEM, "grammar: out of memory");
        return NULL;
    }
    st->g = g;
    if (grammar_state_reset(st, err)) {
        grammar_state_free(st);
        return NULL;
    }
    return st;
}

void grammar_state_free(grammar_state *st) {
    if (!st) return;
    sset_free(&st->cur);
    if (st->w) gwork_free(st->w);
    nd_free(st->w);
    nd_free(st->masked);
    nd_free(st->cand);
    nd_free(st->keep);
    nd_free(st);
}

int grammar_state_copy(grammar_state *dst, const grammar_state *src, nd_err *err) {
    if (dst->g != src->g) return nd_seterr(err, ND_EINVAL, "grammar: copy between different grammars");
    if (dst == src) return 0;
    int rc = sset_copy(&dst->cur, &src->cur);
    if (rc) return limit_err(err, rc);
    memcpy(dst->pend, src->pend, sizeof dst->pend);
    dst->npend = src->npend;
    return 0;
}

grammar_state *grammar_state_clone(const grammar_state *src, nd_err *err) {
    grammar_state *st = nd_calloc(1, sizeof *st);
    if (!st) {
        nd_seterr(err, ND_ENOMEM, "grammar: out of memory");
        return NULL;
    }
    st->g = src->g;
    if (grammar_state_copy(st, src, err)) {
        grammar_state_free(st);
        return NULL;
    }
    return st;
}

bool grammar_state_done(const grammar_state *st) {
    if (st->npend) return false;
    for (uint32_t i = 0; i < st->cur.n; i++)
        if (!st->cur.len[i]) return true;
    return false;
}

bool grammar_state_can_continue(const grammar_state *st) {
    for (uint32_t i = 0; i < st->cur.n; i++)
        if (st->cur.len[i]) return true;
    return false;
}

bool grammar_state_accepts_bytes(const grammar_state *st, const char *bytes, size_t n) {
    if (!n) return true;
    gwork w = {0};
    const sset *res;
    uint8_t pend[4];
    int np;
    int rc = run_bytes(st->g, &w, &st->cur, st->pend, st->npend, (const uint8_t *)bytes, n, &res,
                       pend, &np);
    gwork_free(&w);
    return rc == 1;
}

int grammar_state_advance(grammar_state *st, const char *bytes, size_t n, nd_err *err) {
    if (!n) return 0;
    int rc = state_work(st, err);
    if (rc) return rc;
    const sset *res;
    uint8_t pend[4];
    int np;
    rc = run_bytes(st->g, st->w, &st->cur, st->pend, st->npend, (const uint8_t *)bytes, n, &res,
                   pend, &np);
    if (rc < 0) return limit_err(err, rc);
    if (rc == 0) {
        /* find the offending byte for the message (re-check growing prefixes) */
        size_t k = 0;
        while (k < n && grammar_state_accepts_bytes(st, bytes, k + 1)) k++;
        return nd_seterr(err, ND_EINVAL, "grammar: text not allowed at byte %zu of %zu (0x%02x)",
                         k, n, (uint8_t)bytes[k < n ? k : n - 1]);
    }
    if (res != &st->cur) { /* swap the result set in: O(1) */
        sset tmp = st->cur;
        st->cur = *(sset *)res;
        *(sset *)res = tmp;
    }
    memcpy(st->pend, pend, (size_t)np);
    st->npend = np;
    return 0;
}

/* ------------------------------------------------------------- token checks */

/* One batch of token checks against a state: scratch, a first-byte filter, and the stack
 * set after each ASCII first character (computed on first use), so that tokens sharing a
 * first character share that step and most of them fail on a second-byte bitmap. */
typedef struct first_step {
    sset set;          /* stacks after the character (empty: the character is not allowed) */
    uint64_t next[4];  /* bytes that may follow */
    bool ready;
} first_step;

typedef struct tcheck {
    const grammar_state *st;
    gwork w;
    uint64_t first[4]; /* bytes a token may start with (all, while a sequence is pending) */
    first_step *fs;    /* [128] when no sequence is pending, else NULL */
    bool done;
} tcheck;

/* Bytes that may come next from a stack set (over-approximation for non-ASCII). */
static void next_bytes(const grammar *g, const sset *s, uint64_t out[4]) {
    memset(out, 0, 4 * sizeof *out);
    for (uint32_t i = 0; i < s->n; i++) {
        if (!s->len[i]) continue;
        const gclass *c = &g->cls[g->el[s->pool[s->off[i] + s->len[i] - 1]].v];
        out[0] |= c->ascii[0];
        out[1] |= c->ascii[1];
        if (c->any_high) out[3] |= (~0ull << 2) & ((1ull << 53) - 1); /* lead bytes 0xc2..0xf4 */
    }
}

static void tcheck_init(tcheck *tc, const grammar_state *st) {
    memset(tc, 0, sizeof *tc);
    tc->st = st;
    tc->done = grammar_state_done(st);
    if (st->npend) {
        memset(tc->first, 0xff, sizeof tc->first);
        return;
    }
    next_bytes(st->g, &st->cur, tc->first);
    tc->fs = nd_calloc(128, sizeof *tc->fs); /* NULL: no cache, still correct */
}

static void tcheck_free(tcheck *tc) {
    if (tc->fs)
        for (int i = 0; i < 128; i++) sset_free(&tc->fs[i].set);
    nd_free(tc->fs);
    gwork_free(&tc->w);
}

static inline bool has_byte(const uint64_t m[4], uint8_t b) { return (m[b >> 6] >> (b & 63)) & 1; }

/* 1 allowed, 0 not, < 0 error. */
static int tcheck_bytes(tcheck *tc, const uint8_t *b, size_t n) {
    if (!n || !has_byte(tc->first, b[0])) return 0;
    const grammar_state *st = tc->st;
    const sset *from = &st->cur, *res;
    uint8_t pend[4];
    int np;
    if (tc->fs && b[0] < 128) {
        first_step *f = &tc->fs[b[0]];
        if (!f->ready) {
            int rc = step(st->g, &tc->w, &st->cur, b[0], &f->set);
            if (rc) return rc;
            next_bytes(st->g, &f->set, f->next);
            f->ready = true;
        }
        if (!f->set.n) return 0;
        if (n == 1) return 1;
        if (!has_byte(f->next, b[1])) return 0;
        from = &f->set;
        b++, n--;
    }
    return run_bytes(st->g, &tc->w, from, st->pend, st->npend, b, n, &res, pend, &np);
}

static int tcheck_token(tcheck *tc, const tok_vocab *v, int32_t id) {
    const char *s;
    size_t n;
    if (tok_piece_view(v, id, false, &s, &n) < 0) return 0; /* out of range */
    if (n && !has_byte(tc->first, (uint8_t)s[0])) /* most tokens stop here */
        return tok_is_eog(v, id) ? tc->done : 0;
    if (tok_is_eog(v, id)) return tc->done;
    return tcheck_bytes(tc, (const uint8_t *)s, n);
}

bool grammar_state_accepts_token(const grammar_state *st, const tok_vocab *v, int32_t id) {
    tcheck tc;
    tcheck_init(&tc, st);
    int rc = tcheck_token(&tc, v, id);
    tcheck_free(&tc);
    return rc == 1;
}

int grammar_state_accept_token(grammar_state *st, const tok_vocab *v, int32_t id, nd_err *err) {
    if (id < 0 || id >= tok_n_vocab(v))
        return nd_seterr(err, ND_EINVAL, "grammar: token %d out of range", id);
    if (tok_is_eog(v, id)) {
        if (grammar_state_done(st)) return 0;
        return nd_seterr(err, ND_EINVAL, "grammar: end-of-generation token %d before the grammar "
                         "is complete", id);
    }
    const char *s;
    size_t n;
    if (tok_piece_view(v, id, false, &s, &n) < 0 || n == 0)
        return nd_seterr(err, ND_EINVAL, "grammar: token %d has no text to match", id);
    int rc = grammar_state_advance(st, s, n, err);
    if (rc) nd_preerr(err, "token %d: ", id);
    return rc;
}

int grammar_filter_candidates(const grammar_state *st, const tok_vocab *v, const int32_t *cand,
                              size_t n, bool *ok, nd_err *err) {
    tcheck tc;
    tcheck_init(&tc, st);
    int rc = 0;
    for (size_t i = 0; i < n; i++) {
        int r = tcheck_token(&tc, v, cand[i]);
        if (r < 0) { rc = limit_err(err, r); break; }
        ok[i] = r == 1;
    }
    tcheck_free(&tc);
    return rc;
}

int64_t grammar_mask(const grammar_state *st, const tok_vocab *v, uint8_t *allowed, nd_err *err) {
    tcheck tc;
    tcheck_init(&tc, st);
    int64_t count = 0;
    int32_t nv = tok_n_vocab(v);
    for (int32_t id = 0; id < nv; id++) {
        int r = tcheck_token(&tc, v, id);
        if (r < 0) { count = limit_err(err, r); break; }
        allowed[id] = (uint8_t)(r == 1);
        count += r == 1;
    }
    tcheck_free(&tc);
    return count;
}

/* ------------------------------------------------------------- sampling */

typedef struct cand {
    float l;
    int32_t id;
} cand;

static inline bool cand_before(cand a, cand b) { /* descending logit, ascending id */
    return a.l > b.l || (a.l == b.l && a.id < b.id);
}

static int cand_cmp(const void *pa, const void *pb) {
    cand a = *(const cand *)pa, b = *(const cand *)pb;
    return cand_before(a, b) ? -1 : cand_before(b, a) ? 1 : 0;
}

/* Moves the k best of c[0..n) to the front (unordered), 0 < k < n. */
static void cand_select(cand *c, int64_t n, int64_t k) {
    int64_t lo = 0, hi = n - 1;
    while (lo < hi) {
        cand pivot = c[lo + (hi - lo) / 2];
        int64_t i = lo, j = hi;
        while (i <= j) {
            while (cand_before(c[i], pivot)) i++;
            while (cand_before(pivot, c[j])) j--;
            if (i <= j) { cand t = c[i]; c[i++] = c[j]; c[j--] = t; }
        }
        if (k - 1 <= j) hi = j;
        else if (k - 1 >= i) lo = i;
        else break;
    }
}

static int sample_scratch(grammar_state *st, int64_t nv, nd_err *err) {
    if (st->n_scratch == nv) return 0;
    nd_free(st->masked); nd_free(st->cand); nd_free(st->keep);
    st->masked = nd_malloc((size_t)nv * sizeof *st->masked);
    st->cand = nd_malloc((size_t)nv * sizeof *st->cand);
    st->keep = nd_malloc((size_t)nv * sizeof *st->keep);
    st->n_scratch = nv;
    if (!st->masked || !st->cand || !st->keep) {
        nd_free(st->masked); nd_free(st->cand); nd_free(st->keep);
        st->masked = NULL; st->cand = NULL; st->keep = NULL; st->n_scratch = 0;
        return nd_seterr(err, ND_ENOMEM, "grammar: out of memory for %lld candidates", (long long)nv);
    }
    return 0;
}

/* Collects allowed tokens into st->keep: the best ones in logit order until `want`, or all
 * of them when the head holds fewer. Returns the count or < 0. */
static int64_t collect_allowed(grammar_state *st, tcheck *tc, const tok_vocab *v,
                               const float *logits, int64_t nv, int64_t want) {
    cand *c = st->cand;
    for (int64_t i = 0; i < nv; i++) {
        float l = logits[i];
        c[i] = (cand){isnan(l) ? -INFINITY : l, (int32_t)i};
    }
    int64_t head = nv < GRAMMAR_SAMPLE_HEAD ? nv : GRAMMAR_SAMPLE_HEAD, nk = 0;
    if (head < nv) cand_select(c, nv, head);
    qsort(c, (size_t)head, sizeof *c, cand_cmp);
    for (int64_t i = 0; i < head && nk < want; i++) {
        int r = tcheck_token(tc, v, c[i].id);
        if (r < 0) return r;
        if (r) st->keep[nk++] = c[i].id;
    }
    if (nk >= want) return nk;
    for (int64_t i = head; i < nv; i++) { /* the head was not enough: check everything */
        int r = tcheck_token(tc, v, c[i].id);
        if (r < 0) return r;
        if (r) st->keep[nk++] = c[i].id;
    }
    return nk;
}

int32_t smp_sample_constrained(smp_chain *s, const float *logits, grammar_state *st,
                               const tok_vocab *v, nd_err *err) {
    int64_t nv = tok_n_vocab(v);
    tcheck tc;
    tcheck_init(&tc, st);
    int32_t t = smp_sample(s, logits);
    int r = tcheck_token(&tc, v, t);
    int64_t nk = 0;
    if (r == 1) goto out;
    if (r < 0) { t = limit_err(err, r); goto out; }
    if ((r = sample_scratch(st, nv, err))) { t = r; goto out; }
    nk = collect_allowed(st, &tc, v, logits, nv, GRAMMAR_SAMPLE_KEEP);
    if (nk < 0) { t = limit_err(err, (int)nk); goto out; }
    if (nk == 0) {
        t = nd_seterr(err, ND_EINVAL, "grammar: no token can continue the text (%s)",
                      grammar_state_can_continue(st) ? "the characters the grammar needs next "
                      "start no token" : "the grammar is complete but the vocabulary has no "
                      "end-of-generation token");
        goto out;
    }
    for (int64_t i = 0; i < nv; i++) st->masked[i] = -INFINITY;
    for (int64_t i = 0; i < nk; i++) st->masked[st->keep[i]] = logits[st->keep[i]];
    t = smp_sample(s, st->masked);
    if (tcheck_token(&tc, v, t) != 1) t = st->keep[0]; /* allowed logits all -inf/NaN */
out:
    tcheck_free(&tc);
    return t;
}
