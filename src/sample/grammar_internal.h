/* Grammar internals shared by grammar_parse.c (text -> program) and grammar.c (matcher).
 *
 * The program is a flat array of elements. Each rule is a run of alternatives, each
 * alternative a run of elements closed by GE_END:
 *
 *   el:  [ CHR(c0) REF(r3) END | CHR(c1) END ][ ... next rule ... ]
 *          ^ alt_start[rule_alt[r] + 0]  ^ alt_start[rule_alt[r] + 1]
 *
 * A matcher position is an index into el; the element after the last of an alternative is
 * always GE_END, so "position + 1 is END" means "nothing left in this alternative".
 */
#ifndef ND_GRAMMAR_INTERNAL_H
#define ND_GRAMMAR_INTERNAL_H

#include "sample/grammar.h"

enum { GE_END = 0, GE_REF = 1, GE_CHR = 2 };

typedef struct gelem {
    uint32_t kind; /* GE_* */
    uint32_t v;    /* REF: rule id; CHR: class id */
} gelem;

/* A set of code points: `n` closed ranges rng[2*off .. 2*(off+n)) as (lo, hi) pairs,
 * complemented if neg. ascii[] caches membership of 0..127 (negation already applied). */
typedef struct gclass {
    uint64_t ascii[2];
    uint32_t off, n;
    bool neg;
    bool any_high; /* may match some code point >= 0x80 */
} gclass;

struct grammar {
    gelem *el;          /* [n_el] */
    uint32_t n_el;
    uint32_t *alt;      /* [n_alt] start position of every alternative */
    uint32_t *rule_alt; /* [n_rules + 1] rule r's alternatives: alt[rule_alt[r] .. rule_alt[r+1]) */
    uint32_t n_rules, n_alt;
    gclass *cls;        /* [n_cls] */
    uint32_t n_cls;
    uint32_t *rng;      /* [2 * n_rng] */
    uint32_t n_rng;
    char **names;       /* [n_rules] rule names (generated ones: "parent-N") */
    uint32_t root;
};

static inline bool gclass_match(const gclass *c, const uint32_t *rng, uint32_t cp) {
    if (cp < 128) return (c->ascii[cp >> 6] >> (cp & 63)) & 1;
    bool in = false;
    for (uint32_t i = 0; i < c->n; i++) {
        const uint32_t *r = rng + 2 * (c->off + i);
        if (cp >= r[0] && cp <= r[1]) { in = true; break; }
    }
    return in != c->neg;
}

#endif
