/* Encoding: special-token partition, SentencePiece bigram merges, byte-level BPE merges.
 * All scratch state lives in a per-call `enc` struct, so concurrent encodes on one vocab
 * are safe. Behaviour follows llama.cpp's llama-vocab.cpp (see tok.h for differences). */
#include <string.h>

#include "tokenizer/tok_internal.h"

/* ================================================================ per-call scratch */

typedef struct sym {
    int32_t prev, next;
    uint32_t off, n; /* bytes of the (escaped / word) text */
    int32_t id;      /* BPE: string id of the symbol text, -1 if none */
} sym;

typedef struct bigram {
    float score;     /* SPM: higher first */
    int32_t rank;    /* BPE: lower first */
    int32_t left, right;
    uint32_t size;   /* SPM: byte length of the merged text (staleness check) */
    int32_t lid, rid; /* BPE: ids at creation (staleness check) */
} bigram;

typedef struct enc {
    const tok_vocab *v;
    nd_err *err;
    int32_t *out;
    size_t n_out, cap_out;
    sym *syms;
    size_t cap_syms;
    bigram *heap;
    size_t n_heap, cap_heap;
    char *buf; /* SPM escaped text / BPE encoded word */
    size_t cap_buf;
} enc;

static int grow(void **p, size_t *cap, size_t need, size_t elem) {
    if (need <= *cap) return 0;
    size_t c = *cap ? *cap : 64;
    while (c < need) c *= 2;
    void *q = nd_realloc(*p, c * elem);
    if (!q) return ND_ENOMEM;
    *p = q;
    *cap = c;
    return 0;
}

static int emit(enc *e, int32_t id) {
    if (grow((void **)&e->out, &e->cap_out, e->n_out + 1, sizeof *e->out)) return ND_ENOMEM;
    e->out[e->n_out++] = id;
    return 0;
}

/* ================================================================ heap */

/* true if a should be popped before b */
static bool spm_before(const bigram *a, const bigram *b) {
    return a->score > b->score || (a->score == b->score && a->left < b->left);
}
static bool bpe_before(const bigram *a, const bigram *b) {
    return a->rank < b->rank || (a->rank == b->rank && a->left < b->left);
}

static int heap_push(enc *e, const bigram *b, bool (*before)(const bigram *, const bigram *)) {
    if (grow((void **)&e->heap, &e->cap_heap, e->n_heap + 1, sizeof *e->heap)) return ND_ENOMEM;
    size_t i = e->n_heap++;
    while (i > 0) {
        size_t p = (i - 1) / 2;
        if (!before(b, &e->heap[p])) break;
        e->heap[i] = e->heap[p];
        i = p;
    }
    e->heap[i] = *b;
    return 0;
}

static bigram heap_pop(enc *e, bool (*before)(const bigram *, const bigram *)) {
    bigram top = e->heap[0], last = e->heap[--e->n_heap];
    size_t i = 0, n = e->n_heap;
    for (;;) {
        size_t c = 2 * i + 1;
        if (c >= n) break;
        if (c + 1 < n && before(&e->heap[c + 1], &e->heap[c])) c++;
        if (!before(&e->heap[c], &last)) break;
        e->heap[i] = e->heap[c];
        i = c;
    }
    if (n) e->heap[i] = last;
    return top;
}

/* ================================================================ SentencePiece */

static int spm_try_bigram(enc *e, int32_t l, int32_t r) {
    if (l < 0 || r < 0) return 0;
    const sym *a = &e->syms[l], *b = &e->syms[r];
    int32_t id = tok_map_find(e->v, e->buf + a->off, a->n + b->n);
    if (id < 0 || id >= e->v->n_vocab) return 0;
    bigram bg = {.score = e->v->info[id].score, .left = l, .right = r, .size = a->n + b->n};
    return heap_push(e, &bg, spm_before);
}

static int spm_emit_symbol(enc *e, const sym *s) {
    const tok_vocab *v = e->v;
    int32_t id = tok_map_find(v, e->buf + s->off, s->n);
    if (id >= 0 && id < v->n_vocab) return emit(e, id);
    for (uint32_t j = 0; j < s->n; j++) { /* byte fallback */
        uint8_t c = (uint8_t)e->buf[s->off + j];
        int32_t b = v->byte_tok[c] >= 0 ? v->byte_tok[c] : v->unk;
        if (b < 0)
            return nd_seterr(e->err, ND_EFORMAT,
                             "tokenizer: byte 0x%02X has no token (no <0x%02X> and no unk token)", c, c);
        if (emit(e, b)) return ND_ENOMEM;
    }
    return 0;
}

/* Bigram merges on symbols [cs, ce), then emit them. */
static int spm_chunk(enc *e, int32_t cs, int32_t ce) {
    for (int32_t i = cs; i < ce; i++) {
        e->syms[i].prev = i == cs ? -1 : i - 1;
        e->syms[i].next = i + 1 == ce ? -1 : i + 1;
    }
    e->n_heap = 0;
    for (int32_t i = cs + 1; i < ce; i++)
        if (spm_try_bigram(e, i - 1, i)) return ND_ENOMEM;
    while (e->n_heap) {
        bigram bg = heap_pop(e, spm_before);
        sym *l = &e->syms[bg.left], *r = &e->syms[bg.right];
        if (l->n == 0 || r->n == 0 || l->n + r->n != bg.size) continue; /* stale */
        l->n += r->n;
        r->n = 0;
        l->next = r->next;
        if (r->next >= 0) e->syms[r->next].prev = bg.left;
        if (spm_try_bigram(e, l->prev, bg.left) || spm_try_bigram(e, bg.left, l->next))
            return ND_ENOMEM;
    }
    for (int32_t i = cs; i != -1; i = e->syms[i].next) {
        int rc = spm_emit_symbol(e, &e->syms[i]);
        if (rc) return rc;
    }
    return 0;
}

/* Tokenize one raw fragment (space prefix optional), spaces escaped to U+2581. */
static int spm_fragment(enc *e, const char *text, size_t n, bool prefix) {
    size_t need = (n + 1) * 3 + 1;
    if (grow((void **)&e->buf, &e->cap_buf, need, 1)) return ND_ENOMEM;
    size_t w = 0;
    if (prefix) memcpy(e->buf, "\xe2\x96\x81", 3), w = 3;
    for (size_t i = 0; i < n; i++) {
        if (text[i] == ' ') memcpy(e->buf + w, "\xe2\x96\x81", 3), w += 3;
        else e->buf[w++] = text[i];
    }
    if (w == 0) return 0;
    if (w > UINT32_MAX / 2) return nd_seterr(e->err, ND_ERANGE, "tokenizer: text fragment too long");
    if (grow((void **)&e->syms, &e->cap_syms, w, sizeof *e->syms)) return ND_ENOMEM;
    int32_t ns = 0;
    for (size_t off = 0; off < w;) {
        size_t k = tok_utf8_lead_len((uint8_t)e->buf[off]);
        if (k > w - off) k = w - off;
        e->syms[ns++] = (sym){.off = (uint32_t)off, .n = (uint32_t)k, .id = -1};
        off += k;
    }
    /* independent chunks: cut between characters that never appear side by side in a token */
    for (int32_t cs = 0; cs < ns;) {
        int32_t ce = cs + 1;
        while (ce < ns) {
            const sym *a = &e->syms[ce - 1], *b = &e->syms[ce];
            if (!tok_spm_joinable(e->v, tok_spm_pair_key(e->buf + a->off, a->n, e->buf + b->off, b->n)))
                break;
            ce++;
        }
        int rc = spm_chunk(e, cs, ce);
        if (rc) return rc;
        cs = ce;
    }
    return 0;
}

/* ================================================================ byte-level BPE */

static int32_t pair_lookup(const tok_vocab *v, int32_t a, int32_t b, int32_t *merged) {
    const tok_pairmap *pm = &v->merges;
    if (!pm->keys) return -1;
    uint64_t key = (uint64_t)(uint32_t)a << 32 | (uint32_t)b;
    uint64_t i = tok_hash((const char *)&key, 8) & pm->mask;
    while (pm->keys[i] != UINT64_MAX) {
        if (pm->keys[i] == key) {
            *merged = pm->merged[i];
            return pm->rank[i];
        }
        i = (i + 1) & pm->mask;
    }
    return -1;
}

static int bpe_try_bigram(enc *e, int32_t l, int32_t r) {
    if (l < 0 || r < 0) return 0;
    int32_t a = e->syms[l].id, b = e->syms[r].id, m;
    if (a < 0 || b < 0) return 0;
    int32_t rank = pair_lookup(e->v, a, b, &m);
    if (rank < 0) return 0;
    bigram bg = {.rank = rank, .left = l, .right = r, .lid = a, .rid = b};
    return heap_push(e, &bg, bpe_before);
}

/* Fallback for a symbol whose text is not a token: llama.cpp looks up every single byte
 * of the symbol's byte-encoded text and keeps the ones that are tokens. */
static int bpe_emit_fallback(enc *e, const char *w, const sym *s) {
    const tok_vocab *v = e->v;
    for (uint32_t j = 0; j < s->n; j++) {
        uint8_t b = (uint8_t)w[s->off + j];
        for (int k = 0; k < v->byte_enc_len[b]; k++) {
            int32_t id = tok_map_find(v, &v->byte_enc[b][k], 1);
            if (id >= 0 && id < v->n_vocab && emit(e, id)) return ND_ENOMEM;
        }
    }
    return 0;
}

static int bpe_word(enc *e, const char *w, size_t n) {
    const tok_vocab *v = e->v;
    if (n == 1) {
        int32_t id = v->byte_sym[(uint8_t)w[0]];
        if (id >= 0 && id < v->n_vocab) return emit(e, id);
    }
    if (v->ignore_merges) { /* the whole word is a token: take it as is */
        if (grow((void **)&e->buf, &e->cap_buf, 2 * n + 1, 1)) return ND_ENOMEM;
        size_t k = 0;
        for (size_t i = 0; i < n; i++) {
            uint8_t b = (uint8_t)w[i];
            memcpy(e->buf + k, v->byte_enc[b], v->byte_enc_len[b]);
            k += v->byte_enc_len[b];
        }
        int32_t id = tok_map_find(v, e->buf, k);
        if (id >= 0 && id < v->n_vocab) return emit(e, id);
    }
    if (grow((void **)&e->syms, &e->cap_syms, n, sizeof *e->syms)) return ND_ENOMEM;
    int32_t ns = (int32_t)n;
    for (int32_t i = 0; i < ns; i++)
        e->syms[i] = (sym){.prev = i - 1, .next = i + 1 == ns ? -1 : i + 1, .off = (uint32_t)i,
                           .n = 1, .id = v->byte_sym[(uint8_t)w[i]]};
    e->n_heap = 0;
    for (int32_t i = 1; i < ns; i++)
        if (bpe_try_bigram(e, i - 1, i)) return ND_ENOMEM;
    while (e->n_heap) {
        bigram bg = heap_pop(e, bpe_before);
        sym *l = &e->syms[bg.left], *r = &e->syms[bg.right];
        if (l->n == 0 || r->n == 0 || l->id != bg.lid || r->id != bg.rid || l->next != bg.right)
            continue; /* stale */
        int32_t merged;
        pair_lookup(v, l->id, r->id, &merged);
        l->id = merged;
        l->n += r->n;
        r->n = 0;
        l->next = r->next;
        if (r->next >= 0) e->syms[r->next].prev = bg.left;
        if (bpe_try_bigram(e, l->prev, bg.left) || bpe_try_bigram(e, bg.left, l->next))
            return ND_ENOMEM;
    }
    for (int32_t i = 0; i != -1; i = e->syms[i].next) {
        const sym *s = &e->syms[i];
        int rc = s->id >= 0 && s->id < v->n_vocab ? emit(e, s->id) : bpe_emit_fallback(e, w, s);
        if (rc) return rc;
    }
    return 0;
}

static int bpe_fragment(enc *e, const char *text, size_t n) {
    char *clean = NULL;
    size_t cn = n;
    if (tok_utf8_sanitize(text, n, &clean, &cn)) return ND_ENOMEM;
    const char *t = clean ? clean : text;
    tok_spans words = {0};
    int rc = tok_pre_split(e->v, t, cn, &words, e->err);
    for (size_t i = 0; i < words.n && !rc; i++) rc = bpe_word(e, t + words.off[i], words.len[i]);
    tok_spans_free(&words);
    nd_free(clean);
    return rc;
}

/* ================================================================ special tokens */

typedef struct frag {
    int32_t id; /* token, or TOK_NULL for raw text */
    size_t off, len;
} frag;

typedef struct frags {
    frag *f;
    size_t n, cap;
} frags;

static int frag_push(frags *fs, int32_t id, size_t off, size_t len) {
    if (grow((void **)&fs->f, &fs->cap, fs->n + 1, sizeof *fs->f)) return ND_ENOMEM;
    fs->f[fs->n++] = (frag){id, off, len};
    return 0;
}

static bool sp_active(const tok_vocab *v, int32_t id, bool parse_special) {
    return parse_special || !(v->info[id].attr & (TA_CONTROL | TA_UNKNOWN));
}

/* Split one raw fragment on every occurrence of special token id (llama.cpp's
 * tokenizer_st_partition step for one token, with its lstrip/rstrip attributes). */
static int split_on(const tok_vocab *v, const char *text, const frag *in, int32_t id, frags *out) {
    const char *s = tok_str(v, id);
    size_t sl = v->str_len[id];
    uint16_t attr = v->info[id].attr;
    size_t off = in->off, len = in->len;
    while (len > 0) {
        const char *m = len >= sl ? memmem(text + off, len, s, sl) : NULL;
        if (!m) break;
        size_t mo = (size_t)(m - text);
        size_t left = mo - off;
        if (attr & TA_LSTRIP)
            while (left > 0 && memchr(" \t\n\v\f\r", text[off + left - 1], 6)) left--;
        if (left > 0 && frag_push(out, TOK_NULL, off, left)) return ND_ENOMEM;
        if (frag_push(out, id, 0, 0)) return ND_ENOMEM;
        size_t roff = mo + sl, rlen = off + len - roff;
        if (attr & TA_RSTRIP)
            while (rlen > 0 && memchr(" \t\n\v\f\r", text[roff], 6)) roff++, rlen--;
        off = roff;
        len = rlen;
    }
    if (len > 0 && frag_push(out, TOK_NULL, off, len)) return ND_ENOMEM;
    return 0;
}

static int partition(const tok_vocab *v, const char *text, size_t n, bool parse_special,
                     frags *fs) {
    fs->n = 0;
    if (n == 0) return 0;
    if (frag_push(fs, TOK_NULL, 0, n)) return ND_ENOMEM;
    if (v->n_special == 0) return 0;
    /* which special tokens occur anywhere in the text (one pass, first-byte buckets) */
    uint8_t *present = nd_calloc((size_t)v->n_special, 1);
    if (!present) return ND_ENOMEM;
    bool any = false;
    for (size_t i = 0; i < n; i++) {
        uint8_t c = (uint8_t)text[i];
        for (int32_t k = v->sp_start[c]; k < v->sp_start[c + 1]; k++) {
            int32_t si = v->sp_bucket[k], id = v->special[si];
            size_t sl = v->str_len[id];
            if (!present[si] && sl <= n - i && memcmp(text + i, tok_str(v, id), sl) == 0 &&
                sp_active(v, id, parse_special))
                present[si] = 1, any = true;
        }
    }
    int rc = 0;
    frags tmp = {0};
    for (int32_t si = 0; any && si < v->n_special && !rc; si++) {
        if (!present[si]) continue;
        tmp.n = 0;
        for (size_t i = 0; i < fs->n && !rc; i++) {
            if (fs->f[i].id != TOK_NULL) rc = frag_push(&tmp, fs->f[i].id, 0, 0);
            else rc = split_on(v, text, &fs->f[i], v->special[si], &tmp);
        }
        frags t = *fs;
        *fs = tmp;
        tmp = t;
    }
    nd_free(tmp.f);
    nd_free(present);
    return rc;
}

/* ================================================================ entry point */

int tok_encode(const tok_vocab *v, const char *text, size_t len, bool add_special,
               bool parse_special, int32_t **ids, size_t *n, nd_err *err) {
    if (!v || (!text && len) || !ids || !n) return nd_seterr(err, ND_EINVAL, "tok_encode: NULL argument");
    *ids = NULL;
    *n = 0;
    enc e = {.v = v, .err = err};
    frags fs = {0};
    int rc = 0;
    if (add_special && v->add_bos) rc = emit(&e, v->bos);
    if (!rc) rc = partition(v, text, len, parse_special, &fs);
    bool prev_special = true; /* SPM: prefix a space at the start and after special tokens */
    for (size_t i = 0; i < fs.n && !rc; i++) {
        const frag *f = &fs.f[i];
        if (f->id != TOK_NULL) {
            rc = emit(&e, f->id);
            prev_special = true;
        } else if (v->kind == TOK_KIND_SPM) {
            rc = spm_fragment(&e, text + f->off, f->len, v->add_space_prefix && prev_special);
            prev_special = false;
        } else {
            rc = bpe_fragment(&e, text + f->off, f->len);
        }
    }
    if (!rc && add_special && v->add_eos) rc = emit(&e, v->eos);
    nd_free(fs.f);
    nd_free(e.syms);
    nd_free(e.heap);
    nd_free(e.buf);
    if (rc) {
        if (rc == ND_ENOMEM) nd_seterr(err, rc, "tok_encode: out of memory");
        nd_free(e.out);
        return rc;
    }
    *ids = e.out;
    *n = e.n_out;
    return 0;
}
