/* orch sentinel internals: the rule table (sentinel_rules.c) shared with sentinel.c. */
#ifndef ND_ORCH_SENTINEL_INTERNAL_H
#define ND_ORCH_SENTINEL_INTERNAL_H

#include <stddef.h>

/* Post-match checks; each gets the whole text and the value span. */
typedef enum orch_check {
    ORCH_CHK_NONE,
    ORCH_CHK_TOKEN,    /* provider token: reject documented examples and masks */
    ORCH_CHK_SECRET40, /* like TOKEN, plus a minimum entropy (AWS secret) */
    ORCH_CHK_PEM,      /* block body carries real base64 */
    ORCH_CHK_ASSIGN,   /* key name is secret-like (decides PASSWORD vs GENERIC), value is not a reference */
    ORCH_CHK_ENTROPY,  /* high-entropy token near a secret keyword */
    ORCH_CHK_URLPASS,  /* password part of a URL is not a placeholder */
    ORCH_CHK_EMAIL,
    ORCH_CHK_PHONE_INTL,
    ORCH_CHK_PHONE_NANP,
    ORCH_CHK_PHONE_KW,
    ORCH_CHK_CARD,
    ORCH_CHK_IBAN,
    ORCH_CHK_IPV4,
    ORCH_CHK_IPV6,
} orch_check;

typedef struct orch_rule {
    const char *name; /* rule id, named in compile errors */
    int kind;         /* orch_kind (ORCH_CHK_ASSIGN may change it) */
    int prio;         /* lower wins when spans overlap */
    int check;        /* orch_check */
    int vgroup;       /* the value is the first set capture group >= vgroup (0 = whole match) */
    const char *re;   /* PCRE2 pattern (UTF) */
} orch_rule;

extern const orch_rule orch_rules[];
extern const size_t orch_n_rules;

#endif
