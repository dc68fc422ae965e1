/* orch text: tokenizer, dictionary and bags (see text.h). */
#include <ctype.h>
#include <stdlib.h>
#include <string.h>

#include "orch/text.h"

#define TOK_MAX 64

static bool word_byte(unsigned char c) { return isalnum(c) || c == '_' || c >= 0x80; }

static bool is_stop(const char *w, size_t n) {
    static const char *const stop[] = {
        "a", "an", "the", "and", "or", "but", "if", "of", "to", "in", "on", "at", "by", "for", "with",
        "from", "as", "is", "are", "was", "were", "be", "been", "it", "its", "this", "that", "these",
        "those", "do", "does", "did", "can", "could", "would", "should", "will", "shall", "may", "might",
        "me", "my", "we", "our", "you", "your", "he", "she", "they", "them", "his", "her", "their", "i",
        "what", "which", "who", "how", "why", "when", "where", "there", "here", "so", "than", "then",
        "not", "no", "into", "about", "please", "some", "any", "all", "just", "also", "up", "out", "have",
        "has", "had", "am", "let", "get", "us", "one", "each", "like", NULL};
    for (const char *const *p = stop; *p; p++)
        if (strlen(*p) == n && !memcmp(*p, w, n)) return true;
    return false;
}

static size_t stem(char *w, size_t n) {
    if (n < 5 || ((unsigned char)w[0] & 0x80)) return n;
    static const char *const sfx[] = {"ing", "ed", "es", "ly", "s"};
    for (size_t i = 0; i < sizeof sfx / sizeof sfx[0]; i++) {
        size_t k = strlen(sfx[i]);
        if (n - k >= 4 && !memcmp(w + n - k, sfx[i], k)) return n - k;
    }
    return n;
}

static int emit(const char *w, size_t n, unsigned flags, orch_tok_fn fn, void *user) {
    if (n < 2 || n > TOK_MAX) return 0;
    char low[TOK_MAX];
    for (size_t i = 0; i < n; i++) low[i] = (char)tolower((unsigned char)w[i]);
    if ((flags & ORCH_TOK_STOP) && is_stop(low, n)) return 0;
    if (flags & ORCH_TOK_STEM) n = stem(low, n);
    return fn(user, low, n);
}

/* Part boundary inside an identifier: _ , lower->Upper, Upper->Upper+lower, letter<->digit. */
static bool part_break(const char *w, size_t i, size_t n) {
    unsigned char a = (unsigned char)w[i - 1], b = (unsigned char)w[i];
    if (a == '_' || b == '_') return true;
    if (islower(a) && isupper(b)) return true;
    if (isupper(a) && isupper(b) && i + 1 < n && islower((unsigned char)w[i + 1])) return true;
    if (isalpha(a) && isdigit(b)) return true;
    if (isdigit(a) && isalpha(b)) return true;
    return false;
}

int orch_tokenize(const char *text, size_t n, unsigned flags, orch_tok_fn fn, void *user) {
    size_t i = 0;
    while (i < n) {
        while (i < n && !word_byte((unsigned char)text[i])) i++;
        size_t s = i;
        while (i < n && word_byte((unsigned char)text[i])) i++;
        if (i == s) break;
        const char *w = text + s;
        size_t len = i - s, nparts = 0, ps = 0;
        while (ps < len && w[ps] == '_') ps++;
        size_t parts_s[32], parts_e[32];
        for (size_t j = ps + 1; j <= len; j++) {
            if (j == len || part_break(w, j, len)) {
                size_t pe = j;
                if (pe > ps && w[ps] != '_' && nparts < 32) {
                    parts_s[nparts] = ps;
                    parts_e[nparts++] = pe;
                }
                ps = j;
                while (ps < len && w[ps] == '_') ps++;
                j = ps;
            }
        }
        int rc = emit(w, len, flags, fn, user);
        if (rc) return rc;
        if (nparts > 1)
            for (size_t k = 0; k < nparts; k++)
                if ((rc = emit(w + parts_s[k], parts_e[k] - parts_s[k], flags, fn, user))) return rc;
    }
    return 0;
}

/* ------------------------------------------------------------ dictionary */

static uint64_t hash(const char *s, size_t n) {
    uint64_t h = 1469598103934665603ull;
    for (size_t i = 0; i < n; i++) h = (h ^ (unsigned char)s[i]) * 1099511628211ull;
    return h;
}

static int dict_grow(orch_dict *d) {
    size_t cap = d->cap ? d->cap * 2 : 256;
    uint32_t *slots = nd_calloc(cap, sizeof *slots);
    char **keys = nd_realloc(d->keys, cap / 2 * sizeof *keys);
    if (!slots || !keys) {
        nd_free(slots);
        if (keys) d->keys = keys;
        return ND_ENOMEM;
    }
    d->keys = keys;
    for (size_t id = 0; id < d->n; id++) {
        size_t k = hash(keys[id], strlen(keys[id])) & (cap - 1);
        while (slots[k]) k = (k + 1) & (cap - 1);
        slots[k] = (uint32_t)id + 1;
    }
    nd_free(d->slots);
    d->slots = slots;
    d->cap = cap;
    return 0;
}

int64_t orch_dict_id(orch_dict *d, const char *s, size_t n, bool add) {
    if (d->cap) {
        size_t k = hash(s, n) & (d->cap - 1);
        while (d->slots[k]) {
            const char *key = d->keys[d->slots[k] - 1];
            if (!strncmp(key, s, n) && key[n] == 0) return d->slots[k] - 1;
            k = (k + 1) & (d->cap - 1);
        }
    }
    if (!add) return -1;
    if ((d->n + 1) * 2 > d->cap && dict_grow(d)) return ND_ENOMEM;
    char *key = nd_strndup(s, n);
    if (!key) return ND_ENOMEM;
    size_t k = hash(s, n) & (d->cap - 1);
    while (d->slots[k]) k = (k + 1) & (d->cap - 1);
    d->keys[d->n] = key;
    d->slots[k] = (uint32_t)d->n + 1;
    return (int64_t)d->n++;
}

void orch_dict_free(orch_dict *d) {
    for (size_t i = 0; i < d->n; i++) nd_free(d->keys[i]);
    nd_free(d->keys);
    nd_free(d->slots);
    memset(d, 0, sizeof *d);
}

/* ------------------------------------------------------------ bags */

typedef struct bag_ctx {
    orch_bag *b;
    orch_dict *d;
    bool add;
} bag_ctx;

static int bag_add(void *u, const char *tok, size_t len) {
    bag_ctx *c = u;
    int64_t id = orch_dict_id(c->d, tok, len, c->add);
    if (id == ND_ENOMEM) return ND_ENOMEM;
    c->b->total++;
    if (id < 0) return 0;
    orch_bag *b = c->b;
    /* binary search for the sorted position */
    size_t lo = 0, hi = b->n;
    while (lo < hi) {
        size_t mid = (lo + hi) / 2;
        if (b->id[mid] < (uint32_t)id) lo = mid + 1;
        else hi = mid;
    }
    if (lo < b->n && b->id[lo] == (uint32_t)id) {
        b->cnt[lo]++;
        return 0;
    }
    if (b->n == b->cap) {
        size_t cap = b->cap ? b->cap * 2 : 16;
        uint32_t *ids = nd_realloc(b->id, cap * sizeof *ids);
        if (!ids) return ND_ENOMEM;
        b->id = ids;
        uint32_t *cnt = nd_realloc(b->cnt, cap * sizeof *cnt);
        if (!cnt) return ND_ENOMEM;
        b->cnt = cnt;
        b->cap = cap;
    }
    memmove(b->id + lo + 1, b->id + lo, (b->n - lo) * sizeof *b->id);
    memmove(b->cnt + lo + 1, b->cnt + lo, (b->n - lo) * sizeof *b->cnt);
    b->id[lo] = (uint32_t)id;
    b->cnt[lo] = 1;
    b->n++;
    return 0;
}

int orch_bag_build(orch_bag *b, orch_dict *d, bool add, const char *text, size_t n, unsigned flags) {
    b->n = 0;
    b->total = 0;
    bag_ctx c = {b, d, add};
    return orch_tokenize(text, n, flags, bag_add, &c);
}

void orch_bag_free(orch_bag *b) {
    nd_free(b->id);
    nd_free(b->cnt);
    memset(b, 0, sizeof *b);
}

uint32_t orch_bag_count(const orch_bag *b, uint32_t id) {
    size_t lo = 0, hi = b->n;
    while (lo < hi) {
        size_t mid = (lo + hi) / 2;
        if (b->id[mid] < id) lo = mid + 1;
        else hi = mid;
    }
    return lo < b->n && b->id[lo] == id ? b->cnt[lo] : 0;
}
