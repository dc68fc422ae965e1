/* nindub convert-tokenizer: Hugging Face tokenizer.json -> vocabulary-only GGUF.
 *
 * Mirrors what llama.cpp's convert_hf_to_gguf.py writes for the same tokenizer (so the
 * resulting file tokenizes like llama.cpp's own conversion):
 *   - tokens in id order; ids nobody uses become "[PAD<id>]" of type UNUSED;
 *   - token_type: added tokens that are `special` or look special ("<|...|>", "<pad>" ...)
 *     are CONTROL, other added tokens USER_DEFINED, the rest NORMAL; for SentencePiece-style
 *     files also UNKNOWN for model.unk_token and BYTE for "<0xXX>";
 *   - merges as "a b" strings (pair-form merges [a, b] are joined, a literal space inside a
 *     part written as U+0120 like llama.cpp's gguf-py does);
 *   - special token ids, add_bos/add_eos and chat templates from tokenizer_config.json.
 * SentencePiece-style files (BPE + byte_fallback) get scores from the merge ranks: a token
 * made by merge r scores -r, so llama.cpp's SPM tokenizer (highest score first) merges in the
 * same order as the BPE model; tokens no merge produces score below every merged token.
 *
 * JSON is parsed with cJSON, which is why this is tool code and not part of tokenizer/ (the
 * numeric core links no JSON library). Strings are not copied: tokens and merges point into
 * the cJSON tree until the writer has copied them.
 */
#include "tools/convert_tokenizer.h"

#include <cjson/cJSON.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "tools/tools.h"

/* llama.cpp's token types (gguf-py TokenType). */
enum {
    TT_NORMAL = 1,
    TT_UNKNOWN = 2,
    TT_CONTROL = 3,
    TT_USER_DEFINED = 4,
    TT_UNUSED = 5,
    TT_BYTE = 6,
};

#define NO_OFF ((int64_t)-1)

typedef struct conv {
    cJSON *root, *cfg; /* parsed tokenizer.json / tokenizer_config.json (cfg may be NULL) */
    const cJSON *model, *added;
    bool spm;          /* BPE + byte_fallback: write as "llama" with scores */
    uint32_t n_ids;    /* token table size (max id + 1, or the requested vocab size) */
    /* per id: */
    const char **tp;   /* text (NULL = gap); points into the cJSON tree or, with off >= 0, pool */
    size_t *tl;        /* text length */
    int64_t *toff;     /* offset into pool for rewritten texts, NO_OFF otherwise */
    int32_t *ttype;
    uint8_t *added_flag; /* 1 = listed in added_tokens, 2 = ... and special */
    float *score;      /* spm only */
    uint32_t *rank;    /* spm only: lowest merge rank producing the id, UINT32_MAX none */
    /* text -> id hash map (open addressing; slot holds id + 1, 0 = empty) */
    uint32_t *slot;
    uint32_t mask;
    /* merges */
    uint64_t n_merges;
    const char **mp;
    size_t *ml;
    int64_t *moff;
    nd_buf pool;    /* rewritten strings; pointers resolved once it stops growing */
    nd_buf scratch; /* a+b concatenation for merge validation */
} conv;

/* ------------------------------------------------------------------ helpers */

/* Short printable form of a token for error messages (truncated, no raw newlines). */
static const char *tok_show(const char *s, size_t n, char *buf, size_t cap) {
    size_t j = 0;
    for (size_t i = 0; i < n && j + 5 < cap; i++) {
        unsigned char c = (unsigned char)s[i];
        if (c < 0x20 || c == 0x7f) j += (size_t)snprintf(buf + j, cap - j, "\\x%02x", c);
        else buf[j++] = (char)c;
        if (i == 40) {
            j += (size_t)snprintf(buf + j, cap - j, "...");
            break;
        }
    }
    buf[j < cap ? j : cap - 1] = 0;
    return buf;
}

static uint64_t hash_bytes(const char *s, size_t n) {
    uint64_t h = 0xcbf29ce484222325ull; /* FNV-1a */
    for (size_t i = 0; i < n; i++) h = (h ^ (uint8_t)s[i]) * 0x100000001b3ull;
    return h ^ (h >> 29);
}

/* Id of text s[0..n), or -1. */
static int64_t map_find(const conv *c, const char *s, size_t n) {
    for (uint64_t i = hash_bytes(s, n) & c->mask;; i = (i + 1) & c->mask) {
        uint32_t v = c->slot[i];
        if (!v) return -1;
        uint32_t id = v - 1;
        if (c->tl[id] == n && memcmp(c->tp[id], s, n) == 0) return id;
    }
}

/* Insert id (whose text is already in tp/tl). Returns the id already holding that text, or
 * -1 if inserted. The table is sized for n_ids entries at load <= 1/2, so it never fills. */
static int64_t map_insert(conv *c, uint32_t id) {
    const char *s = c->tp[id];
    size_t n = c->tl[id];
    uint64_t i = hash_bytes(s, n) & c->mask;
    for (;; i = (i + 1) & c->mask) {
        uint32_t v = c->slot[i];
        if (!v) break;
        if (c->tl[v - 1] == n && memcmp(c->tp[v - 1], s, n) == 0) return v - 1;
    }
    c->slot[i] = id + 1;
    return -1;
}

/* A JSON number that is an integral id in [0, CONVTOK_MAX_ID). */
static int get_id(const cJSON *v, const char *what, const char *name, uint32_t *out, nd_err *err) {
    if (!cJSON_IsNumber(v))
        return nd_seterr(err, ND_ETYPE, "%s '%s': id is not a number", what, name);
    double d = v->valuedouble;
    if (!(d >= 0 && d < (double)CONVTOK_MAX_ID) || d != (double)(uint32_t)d)
        return nd_seterr(err, ND_ERANGE, "%s '%s': id %g is not an integer in [0, %u)", what,
                         name, d, CONVTOK_MAX_ID);
    *out = (uint32_t)d;
    return 0;
}

static bool str_is(const cJSON *v, const char *s) {
    return cJSON_IsString(v) && v->valuestring && strcmp(v->valuestring, s) == 0;
}

/* llama.cpp's does_token_look_special (convert_hf_to_gguf.py). */
static bool looks_special(const char *s) {
    size_t n = strlen(s);
    if (!strcmp(s, "<pad>") || !strcmp(s, "<mask>") || !strcmp(s, "<2mass>") || !strcmp(s, "[@BOS@]"))
        return true;
#define ENDS(suf) (n >= strlen(suf) && !memcmp(s + n - strlen(suf), suf, strlen(suf)))
    if (!strncmp(s, "<|", 2) && ENDS("|>")) return true; /* Python: "<|>" counts too */
    /* fullwidth bars, as in DeepSeek's "<｜...｜>" */
    if (!strncmp(s, "<\xef\xbd\x9c", 4) && ENDS("\xef\xbd\x9c>")) return true;
    if (!strncmp(s, "<unused", 7) && ENDS(">")) return true;
#undef ENDS
    return false;
}

static bool is_byte_token(const char *s, size_t n) {
    return n == 6 && !memcmp(s, "<0x", 3) && s[5] == '>' && strchr("0123456789abcdefABCDEF", s[3]) &&
           strchr("0123456789abcdefABCDEF", s[4]) && s[3] && s[4];
}

/* Does this pre-tokenizer / decoder node (possibly a Sequence) contain a ByteLevel step? */
static bool has_bytelevel(const cJSON *n, int depth) {
    if (!cJSON_IsObject(n) || depth > 8) return false;
    const cJSON *t = cJSON_GetObjectItemCaseSensitive(n, "type");
    if (str_is(t, "ByteLevel")) return true;
    const char *lists[] = {"pretokenizers", "decoders", "processors"};
    for (size_t k = 0; k < 3; k++) {
        const cJSON *l = cJSON_GetObjectItemCaseSensitive(n, lists[k]);
        const cJSON *e;
        cJSON_ArrayForEach(e, l) if (has_bytelevel(e, depth + 1)) return true;
    }
    return false;
}

/* Save a rewritten string in the pool; returns its offset or a negative ND_E* code. */
static int64_t pool_add(conv *c, const char *s, size_t n) {
    int64_t off = (int64_t)c->pool.len;
    if (nd_buf_append(&c->pool, s, n) != 0) return ND_ENOMEM;
    return off;
}

/* --------------------------------------------------------------- vocabulary */

static int load_vocab(conv *c, const convtok_opts *o, nd_err *err) {
    const cJSON *vocab = cJSON_GetObjectItemCaseSensitive(c->model, "vocab");
    if (cJSON_IsArray(vocab))
        return nd_seterr(err, ND_EUNSUPPORTED,
                         "model.vocab is a list (Unigram-style); only BPE vocabularies are supported");
    if (!cJSON_IsObject(vocab))
        return nd_seterr(err, ND_EFORMAT, "model.vocab is missing or not an object");
    c->added = cJSON_GetObjectItemCaseSensitive(c->root, "added_tokens");
    if (c->added && !cJSON_IsArray(c->added) && !cJSON_IsNull(c->added))
        return nd_seterr(err, ND_ETYPE, "added_tokens is not a list");

    /* pass 1: validate ids, find the table size */
    uint64_t max_id = 0, count = 0;
    const cJSON *e;
    cJSON_ArrayForEach(e, vocab) {
        uint32_t id;
        int rc = get_id(e, "vocab token", e->string ? e->string : "?", &id, err);
        if (rc) return rc;
        if (id + 1ull > max_id) max_id = id + 1ull;
        count++;
    }
    cJSON_ArrayForEach(e, c->added) {
        if (!cJSON_IsObject(e)) return nd_seterr(err, ND_ETYPE, "added_tokens: entry is not an object");
        const cJSON *content = cJSON_GetObjectItemCaseSensitive(e, "content");
        if (!cJSON_IsString(content))
            return nd_seterr(err, ND_EFORMAT, "added_tokens: entry without a \"content\" string");
        uint32_t id;
        int rc = get_id(cJSON_GetObjectItemCaseSensitive(e, "id"), "added token",
                        content->valuestring, &id, err);
        if (rc) return rc;
        if (id + 1ull > max_id) max_id = id + 1ull;
    }
    if (count == 0) return nd_seterr(err, ND_EFORMAT, "model.vocab is empty");
    if (o->vocab_size && o->vocab_size < max_id)
        return nd_seterr(err, ND_ERANGE, "--vocab-size %u is smaller than the largest id + 1 (%llu)",
                         o->vocab_size, (unsigned long long)max_id);
    c->n_ids = o->vocab_size ? o->vocab_size : (uint32_t)max_id;
    if (c->n_ids > CONVTOK_MAX_ID)
        return nd_seterr(err, ND_ERANGE, "vocabulary size %u is too large", c->n_ids);

    uint32_t nslot = 16;
    while (nslot < 2ull * c->n_ids) nslot <<= 1;
    c->mask = nslot - 1;
    c->slot = nd_calloc(nslot, sizeof *c->slot);
    c->tp = nd_calloc(c->n_ids, sizeof *c->tp);
    c->tl = nd_calloc(c->n_ids, sizeof *c->tl);
    c->toff = nd_malloc((size_t)c->n_ids * sizeof *c->toff);
    c->ttype = nd_calloc(c->n_ids, sizeof *c->ttype);
    c->added_flag = nd_calloc(c->n_ids, 1);
    if (!c->slot || !c->tp || !c->tl || !c->toff || !c->ttype || !c->added_flag)
        return nd_seterr(err, ND_ENOMEM, "out of memory for a %u-token table", c->n_ids);
    for (uint32_t i = 0; i < c->n_ids; i++) c->toff[i] = NO_OFF;

    /* pass 2: fill the table */
    char b1[64], b2[64];
    cJSON_ArrayForEach(e, vocab) {
        uint32_t id = (uint32_t)e->valuedouble;
        const char *s = e->string ? e->string : "";
        if (c->tp[id])
            return nd_seterr(err, ND_EFORMAT, "model.vocab: id %u is used by both '%s' and '%s'",
                             id, tok_show(c->tp[id], c->tl[id], b1, sizeof b1),
                             tok_show(s, strlen(s), b2, sizeof b2));
        c->tp[id] = s;
        c->tl[id] = strlen(s);
        c->ttype[id] = TT_NORMAL;
        int64_t dup = map_insert(c, id);
        if (dup >= 0)
            return nd_seterr(err, ND_EFORMAT, "model.vocab: token '%s' appears twice (ids %lld and %u)",
                             tok_show(s, c->tl[id], b1, sizeof b1), (long long)dup, id);
    }
    cJSON_ArrayForEach(e, c->added) {
        const char *s = cJSON_GetObjectItemCaseSensitive(e, "content")->valuestring;
        uint32_t id = (uint32_t)cJSON_GetObjectItemCaseSensitive(e, "id")->valuedouble;
        const cJSON *sp = cJSON_GetObjectItemCaseSensitive(e, "special");
        if (sp && !cJSON_IsBool(sp))
            return nd_seterr(err, ND_ETYPE, "added token '%s': \"special\" is not a boolean",
                             tok_show(s, strlen(s), b1, sizeof b1));
        size_t n = strlen(s);
        if (c->tp[id]) {
            if (c->tl[id] != n || memcmp(c->tp[id], s, n) != 0)
                return nd_seterr(err, ND_EFORMAT, "added token '%s' has id %u, which the vocab gives to '%s'",
                                 tok_show(s, n, b1, sizeof b1), id,
                                 tok_show(c->tp[id], c->tl[id], b2, sizeof b2));
        } else {
            c->tp[id] = s;
            c->tl[id] = n;
            int64_t dup = map_insert(c, id);
            if (dup >= 0)
                return nd_seterr(err, ND_EFORMAT, "added token '%s' has id %u but is already id %lld",
                                 tok_show(s, n, b1, sizeof b1), id, (long long)dup);
        }
        c->added_flag[id] = cJSON_IsTrue(sp) ? 2 : 1;
    }
    return 0;
}

/* Token types (and the few rewritten texts), following convert_hf_to_gguf.py. */
static int assign_types(conv *c, convtok_info *info, nd_err *err) {
    const cJSON *unk = cJSON_GetObjectItemCaseSensitive(c->model, "unk_token");
    int64_t unk_id = cJSON_IsString(unk) ? map_find(c, unk->valuestring, strlen(unk->valuestring)) : -1;
    for (uint32_t id = 0; id < c->n_ids; id++) {
        if (!c->tp[id]) { /* gap */
            char name[32];
            int n = snprintf(name, sizeof name, "[PAD%u]", id);
            int64_t off = pool_add(c, name, (size_t)n);
            if (off < 0) return nd_seterr(err, ND_ENOMEM, "out of memory");
            c->toff[id] = off;
            c->tl[id] = (size_t)n;
            c->ttype[id] = TT_UNUSED;
            info->n_pad++;
            continue;
        }
        if (c->spm && id == unk_id) {
            c->ttype[id] = TT_UNKNOWN;
        } else if (c->added_flag[id]) {
            info->n_added++;
            if (c->added_flag[id] == 2 || looks_special(c->tp[id])) {
                c->ttype[id] = TT_CONTROL;
            } else {
                c->ttype[id] = TT_USER_DEFINED;
                /* convert_hf_to_gguf pre-normalizes user-defined "▁" to spaces (gpt2 path) */
                if (!c->spm && strstr(c->tp[id], "\xe2\x96\x81")) {
                    int64_t off = (int64_t)c->pool.len;
                    for (const char *p = c->tp[id]; *p;) {
                        bool m = !strncmp(p, "\xe2\x96\x81", 3);
                        if (nd_buf_append(&c->pool, m ? " " : p, 1) != 0)
                            return nd_seterr(err, ND_ENOMEM, "out of memory");
                        p += m ? 3 : 1;
                    }
                    c->tl[id] = c->pool.len - (size_t)off;
                    c->toff[id] = off;
                }
            }
        } else if (c->spm && is_byte_token(c->tp[id], c->tl[id])) {
            c->ttype[id] = TT_BYTE;
        } else {
            c->ttype[id] = TT_NORMAL;
        }
    }
    return 0;
}

/* ------------------------------------------------------------------ merges */

static int merge_check(conv *c, uint64_t r, const char *a, size_t na, const char *b, size_t nb,
                       nd_err *err) {
    char buf[64];
    if (map_find(c, a, na) < 0)
        return nd_seterr(err, ND_EFORMAT, "model.merges[%llu]: '%s' is not in the vocabulary",
                         (unsigned long long)r, tok_show(a, na, buf, sizeof buf));
    if (map_find(c, b, nb) < 0)
        return nd_seterr(err, ND_EFORMAT, "model.merges[%llu]: '%s' is not in the vocabulary",
                         (unsigned long long)r, tok_show(b, nb, buf, sizeof buf));
    c->scratch.len = 0;
    if (nd_buf_append(&c->scratch, a, na) || nd_buf_append(&c->scratch, b, nb))
        return nd_seterr(err, ND_ENOMEM, "out of memory");
    int64_t ab = map_find(c, c->scratch.data, c->scratch.len);
    if (ab < 0)
        return nd_seterr(err, ND_EFORMAT, "model.merges[%llu]: the merged token '%s' is not in the vocabulary",
                         (unsigned long long)r, tok_show(c->scratch.data, c->scratch.len, buf, sizeof buf));
    if (c->rank && c->rank[ab] == UINT32_MAX) c->rank[ab] = (uint32_t)r;
    return 0;
}

/* Append a pair-form part to the pool, writing ' ' as U+0120 (gpt2 byte-level space). */
static int pool_add_part(conv *c, const char *s) {
    for (; *s; s++) {
        int rc = *s == ' ' ? nd_buf_append(&c->pool, "\xc4\xa0", 2) : nd_buf_append(&c->pool, s, 1);
        if (rc) return rc;
    }
    return 0;
}

static int load_merges(conv *c, nd_err *err) {
    const cJSON *merges = cJSON_GetObjectItemCaseSensitive(c->model, "merges");
    if (!cJSON_IsArray(merges)) return nd_seterr(err, ND_EFORMAT, "model.merges is missing or not a list");
    uint64_t n = 0;
    const cJSON *e;
    cJSON_ArrayForEach(e, merges) n++;
    if (c->spm) {
        c->rank = nd_malloc((size_t)c->n_ids * sizeof *c->rank);
        if (!c->rank) return nd_seterr(err, ND_ENOMEM, "out of memory");
        for (uint32_t i = 0; i < c->n_ids; i++) c->rank[i] = UINT32_MAX;
    }
    c->mp = nd_calloc(n ? n : 1, sizeof *c->mp);
    c->ml = nd_calloc(n ? n : 1, sizeof *c->ml);
    c->moff = nd_calloc(n ? n : 1, sizeof *c->moff);
    if (!c->mp || !c->ml || !c->moff) return nd_seterr(err, ND_ENOMEM, "out of memory for %llu merges",
                                                       (unsigned long long)n);
    uint64_t r = 0;
    cJSON_ArrayForEach(e, merges) {
        int rc;
        c->moff[r] = NO_OFF;
        if (cJSON_IsString(e)) { /* "a b" */
            const char *s = e->valuestring, *sp = strchr(s, ' ');
            if (!sp || strchr(sp + 1, ' ') || sp == s || !sp[1])
                return nd_seterr(err, ND_EFORMAT, "model.merges[%llu]: \"%.60s\" is not two tokens separated by one space",
                                 (unsigned long long)r, s);
            if ((rc = merge_check(c, r, s, (size_t)(sp - s), sp + 1, strlen(sp + 1), err))) return rc;
            c->mp[r] = s;
            c->ml[r] = strlen(s);
        } else if (cJSON_IsArray(e) && cJSON_GetArraySize(e) == 2 && cJSON_IsString(e->child) &&
                   cJSON_IsString(e->child->next)) { /* ["a", "b"] */
            const char *a = e->child->valuestring, *b = e->child->next->valuestring;
            if ((rc = merge_check(c, r, a, strlen(a), b, strlen(b), err))) return rc;
            int64_t off = (int64_t)c->pool.len;
            if (pool_add_part(c, a) || nd_buf_append(&c->pool, " ", 1) || pool_add_part(c, b))
                return nd_seterr(err, ND_ENOMEM, "out of memory");
            c->moff[r] = off;
            c->ml[r] = c->pool.len - (size_t)off;
        } else {
            return nd_seterr(err, ND_EFORMAT, "model.merges[%llu]: expected \"a b\" or [\"a\", \"b\"]",
                             (unsigned long long)r);
        }
        r++;
    }
    c->n_merges = n;
    return 0;
}

/* SentencePiece-style scores: see the file comment. */
static int spm_scores(conv *c, nd_err *err) {
    c->score = nd_calloc(c->n_ids, sizeof *c->score);
    if (!c->score) return nd_seterr(err, ND_ENOMEM, "out of memory");
    for (uint32_t id = 0; id < c->n_ids; id++) {
        if (c->ttype[id] != TT_NORMAL) continue;
        c->score[id] = c->rank[id] != UINT32_MAX ? 0.0f - (float)c->rank[id]
                                                 : 0.0f - (float)(c->n_merges + id);
    }
    return 0;
}

/* ------------------------------------------------------------ pre-tokenizer */

/* Split regexes of known byte-level tokenizers (as they appear in tokenizer.json) and the
 * llama.cpp pre-tokenizer name that implements each. */
static const struct { const char *name, *regex; } known_pre[] = {
    {"qwen2", "(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\\r\\n\\p{L}\\p{N}]?\\p{L}+|\\p{N}| ?[^\\s\\p{L}\\p{N}]+"
              "[\\r\\n]*|\\s*[\\r\\n]+|\\s+(?!\\S)|\\s+"},
    {"llama-bpe", "(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\\r\\n\\p{L}\\p{N}]?\\p{L}+|\\p{N}{1,3}| ?[^\\s\\p{L}"
                  "\\p{N}]+[\\r\\n]*|\\s*[\\r\\n]+|\\s+(?!\\S)|\\s+"},
};

/* Name for a pre-tokenizer made of one isolated-regex Split plus regex-less ByteLevel steps
 * (Qwen2, Llama 3 ...), or a lone regex ByteLevel (GPT-2). NULL if not recognized. */
static const char *detect_pre(const cJSON *pt) {
    if (!cJSON_IsObject(pt)) return NULL;
    const cJSON *type = cJSON_GetObjectItemCaseSensitive(pt, "type");
    if (str_is(type, "ByteLevel")) {
        const cJSON *ur = cJSON_GetObjectItemCaseSensitive(pt, "use_regex");
        return (!ur || cJSON_IsTrue(ur)) ? "gpt-2" : NULL;
    }
    const cJSON *one = pt, *list = NULL;
    if (str_is(type, "Sequence")) list = cJSON_GetObjectItemCaseSensitive(pt, "pretokenizers");
    const char *regex = NULL;
    int n_split = 0;
    const cJSON *e = list ? list->child : one;
    for (; e; e = list ? e->next : NULL) {
        const cJSON *t = cJSON_GetObjectItemCaseSensitive(e, "type");
        if (str_is(t, "ByteLevel")) {
            if (cJSON_IsTrue(cJSON_GetObjectItemCaseSensitive(e, "use_regex"))) return NULL;
        } else if (str_is(t, "Split")) {
            const cJSON *pat = cJSON_GetObjectItemCaseSensitive(e, "pattern");
            const cJSON *rx = cJSON_GetObjectItemCaseSensitive(pat, "Regex");
            if (!cJSON_IsString(rx) || !str_is(cJSON_GetObjectItemCaseSensitive(e, "behavior"), "Isolated") ||
                cJSON_IsTrue(cJSON_GetObjectItemCaseSensitive(e, "invert")))
                return NULL;
            regex = rx->valuestring;
            n_split++;
        } else {
            return NULL;
        }
    }
    if (n_split != 1) return NULL;
    for (size_t i = 0; i < sizeof known_pre / sizeof known_pre[0]; i++)
        if (!strcmp(regex, known_pre[i].regex)) return known_pre[i].name;
    return NULL;
}

/* add_space_prefix for SentencePiece-style files: a normalizer that prepends "▁", or a
 * Metaspace pre-tokenizer that adds a prefix. */
static bool spm_space_prefix(const cJSON *root) {
    const cJSON *norm = cJSON_GetObjectItemCaseSensitive(root, "normalizer");
    const cJSON *l = cJSON_GetObjectItemCaseSensitive(norm, "normalizers"), *e;
    const cJSON *one = norm;
    for (e = l ? l->child : one; e; e = l ? e->next : NULL)
        if (str_is(cJSON_GetObjectItemCaseSensitive(e, "type"), "Prepend") &&
            str_is(cJSON_GetObjectItemCaseSensitive(e, "prepend"), "\xe2\x96\x81"))
            return true;
    const cJSON *pt = cJSON_GetObjectItemCaseSensitive(root, "pre_tokenizer");
    l = cJSON_GetObjectItemCaseSensitive(pt, "pretokenizers");
    for (e = l ? l->child : pt; e; e = l ? e->next : NULL) {
        if (!str_is(cJSON_GetObjectItemCaseSensitive(e, "type"), "Metaspace")) continue;
        const cJSON *ps = cJSON_GetObjectItemCaseSensitive(e, "prepend_scheme");
        if (cJSON_IsString(ps)) return strcmp(ps->valuestring, "never") != 0;
        return cJSON_IsTrue(cJSON_GetObjectItemCaseSensitive(e, "add_prefix_space"));
    }
    return false;
}

/* ---------------------------------------------------------- special tokens */

/* tokenizer_config.json "<typ>_token": a string, {"content": ...}, or null/absent (*out NULL). */
static int cfg_token(const cJSON *cfg, const char *key, const char **out, nd_err *err) {
    *out = NULL;
    const cJSON *v = cJSON_GetObjectItemCaseSensitive(cfg, key);
    if (!v || cJSON_IsNull(v)) return 0;
    if (cJSON_IsObject(v)) v = cJSON_GetObjectItemCaseSensitive(v, "content");
    if (!cJSON_IsString(v))
        return nd_seterr(err, ND_ETYPE, "tokenizer_config.json: %s is neither a string nor an object "
                         "with a \"content\" string", key);
    *out = v->valuestring;
    return 0;
}

/* First and last SpecialToken of a TemplateProcessing "single" template (llama.cpp's crude
 * add_bos/add_eos inference from tokenizer.json). */
static void template_specials(const cJSON *root, const char **first, const char **last) {
    *first = *last = NULL;
    const cJSON *pp = cJSON_GetObjectItemCaseSensitive(root, "post_processor");
    const cJSON *l = cJSON_GetObjectItemCaseSensitive(pp, "processors"), *e;
    for (e = l ? l->child : pp; e; e = l ? e->next : NULL) {
        if (!str_is(cJSON_GetObjectItemCaseSensitive(e, "type"), "TemplateProcessing")) continue;
        const cJSON *single = cJSON_GetObjectItemCaseSensitive(e, "single");
        if (cJSON_GetArraySize(single) < 2) continue;
        const cJSON *f = cJSON_GetObjectItemCaseSensitive(
            cJSON_GetObjectItemCaseSensitive(single->child, "SpecialToken"), "id");
        const cJSON *la = cJSON_GetObjectItemCaseSensitive(
            cJSON_GetObjectItemCaseSensitive(cJSON_GetArrayItem(single, cJSON_GetArraySize(single) - 1),
                                             "SpecialToken"), "id");
        if (cJSON_IsString(f)) *first = f->valuestring;
        if (cJSON_IsString(la)) *last = la->valuestring;
    }
}

static int cfg_bool(const cJSON *cfg, const char *key, int *out, nd_err *err) {
    const cJSON *v = cJSON_GetObjectItemCaseSensitive(cfg, key);
    if (!v || cJSON_IsNull(v)) return 0;
    if (!cJSON_IsBool(v)) return nd_seterr(err, ND_ETYPE, "tokenizer_config.json: %s is not a boolean", key);
    *out = cJSON_IsTrue(v);
    return 0;
}

static int write_specials(conv *c, gguf_writer *w, convtok_info *info, nd_err *err) {
    static const struct { const char *typ, *key; } st[] = {
        {"bos", "tokenizer.ggml.bos_token_id"},      {"eos", "tokenizer.ggml.eos_token_id"},
        {"unk", "tokenizer.ggml.unknown_token_id"},  {"sep", "tokenizer.ggml.seperator_token_id"},
        {"pad", "tokenizer.ggml.padding_token_id"},  {"cls", "tokenizer.ggml.cls_token_id"},
        {"mask", "tokenizer.ggml.mask_token_id"},
    };
    const char *first, *last;
    template_specials(c->root, &first, &last);
    const char *name[7];
    for (size_t i = 0; i < 7; i++) {
        char key[32];
        snprintf(key, sizeof key, "%s_token", st[i].typ);
        int rc = cfg_token(c->cfg, key, &name[i], err);
        if (rc) return rc;
    }
    if (!c->cfg && first) name[0] = first;
    if (!c->cfg && last) name[1] = last;
    if (!name[2]) { /* the BPE model's own unk_token */
        const cJSON *unk = cJSON_GetObjectItemCaseSensitive(c->model, "unk_token");
        if (cJSON_IsString(unk)) name[2] = unk->valuestring;
    }
    int32_t *slot[7] = {&info->bos, &info->eos, &info->unk, NULL, &info->pad, NULL, NULL};
    for (size_t i = 0; i < 7; i++) {
        if (!name[i]) continue;
        int64_t id = map_find(c, name[i], strlen(name[i]));
        if (id < 0) {
            char b[64];
            return nd_seterr(err, ND_EFORMAT, "tokenizer_config.json: %s_token '%s' is not in the vocabulary",
                             st[i].typ, tok_show(name[i], strlen(name[i]), b, sizeof b));
        }
        if (gguf_writer_set_u32(w, st[i].key, (uint32_t)id)) return nd_seterr(err, ND_ENOMEM, "out of memory");
        if (slot[i]) *slot[i] = (int32_t)id;
    }
    int add_bos = -1, add_eos = -1, rc;
    if (first) add_bos = name[0] && !strcmp(first, name[0]);
    if (last) add_eos = name[1] && !strcmp(last, name[1]);
    if ((rc = cfg_bool(c->cfg, "add_bos_token", &add_bos, err))) return rc;
    if ((rc = cfg_bool(c->cfg, "add_eos_token", &add_eos, err))) return rc;
    if (add_bos >= 0 && gguf_writer_set_bool(w, "tokenizer.ggml.add_bos_token", add_bos))
        return nd_seterr(err, ND_ENOMEM, "out of memory");
    if (add_eos >= 0 && gguf_writer_set_bool(w, "tokenizer.ggml.add_eos_token", add_eos))
        return nd_seterr(err, ND_ENOMEM, "out of memory");
    return 0;
}

/* chat_template: a string, or a list of {"name", "template"} (written as llama.cpp does:
 * "default" -> tokenizer.chat_template, others -> tokenizer.chat_template.<name>, and the
 * list of names in tokenizer.chat_templates). */
static int write_chat_template(conv *c, gguf_writer *w, convtok_info *info, nd_err *err) {
    const cJSON *ct = cJSON_GetObjectItemCaseSensitive(c->cfg, "chat_template");
    if (!ct || cJSON_IsNull(ct)) return 0;
    if (cJSON_IsString(ct)) {
        info->has_chat_template = true;
        if (gguf_writer_set_str(w, "tokenizer.chat_template", ct->valuestring))
            return nd_seterr(err, ND_ENOMEM, "out of memory");
        return 0;
    }
    if (!cJSON_IsArray(ct))
        return nd_seterr(err, ND_ETYPE, "tokenizer_config.json: chat_template is neither a string nor a list");
    int n = cJSON_GetArraySize(ct), k = 0;
    const char **names = nd_calloc((size_t)n + 1, sizeof *names);
    if (!names) return nd_seterr(err, ND_ENOMEM, "out of memory");
    const cJSON *e;
    int rc = 0;
    cJSON_ArrayForEach(e, ct) {
        const cJSON *nm = cJSON_GetObjectItemCaseSensitive(e, "name");
        const cJSON *tp = cJSON_GetObjectItemCaseSensitive(e, "template");
        if (!cJSON_IsString(nm) || !cJSON_IsString(tp) || !*nm->valuestring ||
            strlen(nm->valuestring) > 200) {
            rc = nd_seterr(err, ND_EFORMAT, "tokenizer_config.json: chat_template[%d] needs \"name\" and "
                           "\"template\" strings", k);
            break;
        }
        char key[256];
        if (!strcmp(nm->valuestring, "default")) snprintf(key, sizeof key, "tokenizer.chat_template");
        else snprintf(key, sizeof key, "tokenizer.chat_template.%s", nm->valuestring);
        if (gguf_writer_set_str(w, key, tp->valuestring)) {
            rc = nd_seterr(err, ND_ENOMEM, "out of memory");
            break;
        }
        if (strcmp(nm->valuestring, "default")) names[k++] = nm->valuestring;
        info->has_chat_template = true;
    }
    if (!rc && k && gguf_writer_set_arr_str(w, "tokenizer.chat_templates", names, NULL, (uint64_t)k))
        rc = nd_seterr(err, ND_ENOMEM, "out of memory");
    nd_free(names);
    return rc;
}

/* ------------------------------------------------------------------ driver */

static int check_model(conv *c, nd_err *err) {
    c->model = cJSON_GetObjectItemCaseSensitive(c->root, "model");
    if (!cJSON_IsObject(c->model))
        return nd_seterr(err, ND_EFORMAT, "no \"model\" object — is this a Hugging Face tokenizer.json?");
    const cJSON *type = cJSON_GetObjectItemCaseSensitive(c->model, "type");
    if (type && !cJSON_IsString(type)) return nd_seterr(err, ND_ETYPE, "model.type is not a string");
    if (type && strcmp(type->valuestring, "BPE") != 0)
        return nd_seterr(err, ND_EUNSUPPORTED, "model type '%.40s' is not supported (only BPE: byte-level, "
                         "or SentencePiece-style with byte_fallback)", type->valuestring);
    if (!type && !cJSON_GetObjectItemCaseSensitive(c->model, "merges"))
        return nd_seterr(err, ND_EUNSUPPORTED, "model has no type and no merges; only BPE is supported");
    const char *affix[] = {"continuing_subword_prefix", "end_of_word_suffix"};
    for (size_t i = 0; i < 2; i++) {
        const cJSON *v = cJSON_GetObjectItemCaseSensitive(c->model, affix[i]);
        if (v && !cJSON_IsNull(v) && !(cJSON_IsString(v) && !*v->valuestring))
            return nd_seterr(err, ND_EUNSUPPORTED, "BPE with a %s is not supported", affix[i]);
    }
    const cJSON *bf = cJSON_GetObjectItemCaseSensitive(c->model, "byte_fallback");
    if (bf && !cJSON_IsBool(bf) && !cJSON_IsNull(bf))
        return nd_seterr(err, ND_ETYPE, "model.byte_fallback is not a boolean");
    c->spm = cJSON_IsTrue(bf);
    if (!c->spm && !has_bytelevel(cJSON_GetObjectItemCaseSensitive(c->root, "pre_tokenizer"), 0) &&
        !has_bytelevel(cJSON_GetObjectItemCaseSensitive(c->root, "decoder"), 0))
        return nd_seterr(err, ND_EUNSUPPORTED, "BPE without a ByteLevel pre-tokenizer/decoder and without "
                         "byte_fallback is not supported");
    return 0;
}

static int write_keys(conv *c, const convtok_opts *o, gguf_writer *w, convtok_info *info,
                      nd_err *err) {
    /* the pool has stopped growing: resolve rewritten strings */
    for (uint32_t i = 0; i < c->n_ids; i++)
        if (c->toff[i] != NO_OFF) c->tp[i] = c->pool.data + c->toff[i];
    for (uint64_t r = 0; r < c->n_merges; r++)
        if (c->moff[r] != NO_OFF) c->mp[r] = c->pool.data + c->moff[r];

    int rc = 0;
    rc |= gguf_writer_set_str(w, "general.architecture", o->arch ? o->arch : "llama");
    rc |= gguf_writer_set_str(w, "tokenizer.ggml.model", info->model);
    rc |= gguf_writer_set_str(w, "tokenizer.ggml.pre", info->pre);
    rc |= gguf_writer_set_arr_str(w, "tokenizer.ggml.tokens", c->tp, c->tl, c->n_ids);
    if (c->spm) rc |= gguf_writer_set_arr(w, "tokenizer.ggml.scores", GGUF_VT_FLOAT32, c->score, c->n_ids);
    rc |= gguf_writer_set_arr(w, "tokenizer.ggml.token_type", GGUF_VT_INT32, c->ttype, c->n_ids);
    if (!c->spm) rc |= gguf_writer_set_arr_str(w, "tokenizer.ggml.merges", c->mp, c->ml, c->n_merges);
    if (c->spm) rc |= gguf_writer_set_bool(w, "tokenizer.ggml.add_space_prefix", spm_space_prefix(c->root));
    if (rc) return nd_seterr(err, ND_ENOMEM, "out of memory while building the GGUF metadata");
    if ((rc = write_specials(c, w, info, err))) return rc;
    return write_chat_template(c, w, info, err);
}

static void conv_free(conv *c) {
    cJSON_Delete(c->root);
    cJSON_Delete(c->cfg);
    nd_free(c->tp);
    nd_free(c->tl);
    nd_free(c->toff);
    nd_free(c->ttype);
    nd_free(c->added_flag);
    nd_free(c->score);
    nd_free(c->rank);
    nd_free(c->slot);
    nd_free(c->mp);
    nd_free(c->ml);
    nd_free(c->moff);
    nd_buf_free(&c->pool);
    nd_buf_free(&c->scratch);
}

static cJSON *parse_json(const char *s, size_t n, const char *what, nd_err *err) {
    const char *end = NULL;
    cJSON *j = cJSON_ParseWithLengthOpts(s, n, &end, 0);
    if (!j) {
        size_t at = end && end >= s && end <= s + n ? (size_t)(end - s) : 0;
        nd_seterr(err, ND_EFORMAT, "%s: not valid JSON (error near byte %zu)", what, at);
        return NULL;
    }
    if (!cJSON_IsObject(j)) {
        cJSON_Delete(j);
        nd_seterr(err, ND_EFORMAT, "%s: top level is not a JSON object", what);
        return NULL;
    }
    return j;
}

int convtok_to_writer(const char *tj, size_t tj_len, const char *cfg, size_t cfg_len,
                      const convtok_opts *opts, gguf_writer *w, convtok_info *info, nd_err *err) {
    static const convtok_opts defaults = {0};
    convtok_info dummy;
    if (!opts) opts = &defaults;
    if (!info) info = &dummy;
    memset(info, 0, sizeof *info);
    info->bos = info->eos = info->unk = info->pad = -1;
    if (!tj || !w) return nd_seterr(err, ND_EINVAL, "convtok_to_writer: NULL argument");

    conv c = {0};
    int rc = 0;
    if (!(c.root = parse_json(tj, tj_len, "tokenizer.json", err))) return err ? err->code : ND_EFORMAT;
    if (cfg && !(c.cfg = parse_json(cfg, cfg_len, "tokenizer_config.json", err))) {
        rc = err ? err->code : ND_EFORMAT;
        goto done;
    }
    if ((rc = check_model(&c, err)) || (rc = load_vocab(&c, opts, err)) ||
        (rc = assign_types(&c, info, err)) || (rc = load_merges(&c, err)))
        goto done;
    if (c.spm && (rc = spm_scores(&c, err))) goto done;

    snprintf(info->model, sizeof info->model, "%s", c.spm ? "llama" : "gpt2");
    const char *pre = opts->pre;
    if (!pre && !c.spm) {
        pre = detect_pre(cJSON_GetObjectItemCaseSensitive(c.root, "pre_tokenizer"));
        if (!pre) {
            rc = nd_seterr(err, ND_EUNSUPPORTED, "unknown pre-tokenizer (not in the table of known regexes); "
                           "pass --pre NAME with llama.cpp's name for it (qwen2, llama-bpe, gpt-2, ...)");
            goto done;
        }
        info->pre_detected = true;
    }
    if (!pre) pre = "default";
    if (!*pre || strlen(pre) >= sizeof info->pre) {
        rc = nd_seterr(err, ND_EINVAL, "--pre '%.40s': empty or too long", pre);
        goto done;
    }
    snprintf(info->pre, sizeof info->pre, "%s", pre);
    info->n_tokens = c.n_ids;
    info->n_merges = (uint32_t)c.n_merges;
    rc = write_keys(&c, opts, w, info, err);
done:
    conv_free(&c);
    return rc;
}

int convtok_convert_files(const char *tj_path, const char *cfg_path, const char *out_path,
                          const convtok_opts *opts, convtok_info *info, nd_err *err) {
    char *tj = NULL, *cfg = NULL;
    size_t tj_len = 0, cfg_len = 0;
    int rc = nd_read_file(tj_path, &tj, &tj_len, err);
    if (rc) return rc;
    if (cfg_path && (rc = nd_read_file(cfg_path, &cfg, &cfg_len, err))) {
        nd_free(tj);
        return rc;
    }
    gguf_writer *w = gguf_writer_new();
    if (!w) {
        rc = nd_seterr(err, ND_ENOMEM, "out of memory");
    } else if ((rc = convtok_to_writer(tj, tj_len, cfg, cfg_len, opts, w, info, err))) {
        nd_preerr(err, "%s: ", tj_path);
    } else if ((rc = gguf_writer_write(w, out_path, NULL, NULL, err))) {
        nd_preerr(err, "writing %s: ", out_path);
    }
    gguf_writer_free(w);
    nd_free(tj);
    nd_free(cfg);
    return rc;
}

/* ---------------------------------------------------------------- the tool */

static void usage(FILE *f) {
    fprintf(f,
            "usage: nindub convert-tokenizer tokenizer.json out.gguf [options]\n"
            "  Convert a Hugging Face tokenizer.json (BPE: byte-level, or SentencePiece-style with\n"
            "  byte_fallback) into a vocabulary-only GGUF with llama.cpp's tokenizer keys.\n\n"
            "  --pre NAME           tokenizer.ggml.pre (llama.cpp's name: qwen2, llama-bpe, gpt-2 ...);\n"
            "                       default: detected from the pre-tokenizer regex\n"
            "  --config FILE        tokenizer_config.json (special tokens, add_bos/eos, chat template);\n"
            "                       default: tokenizer_config.json beside tokenizer.json, if present\n"
            "  --no-config          do not read a tokenizer_config.json\n"
            "  --arch NAME          general.architecture (default llama)\n"
            "  --vocab-size N       pad the token list to N ids, e.g. the model's vocab_size\n");
}

int tool_convert_tokenizer(int argc, char **argv) {
    const char *pos[2] = {NULL, NULL}, *cfg = NULL;
    bool no_cfg = false;
    convtok_opts o = {0};
    int npos = 0;
    for (int i = 1; i < argc; i++) {
        const char *a = argv[i];
        bool has_val = i + 1 < argc;
        if (!strcmp(a, "-h") || !strcmp(a, "--help")) {
            usage(stdout);
            return 0;
        } else if (!strcmp(a, "--pre") && has_val) {
            o.pre = argv[++i];
        } else if (!strcmp(a, "--config") && has_val) {
            cfg = argv[++i];
        } else if (!strcmp(a, "--no-config")) {
            no_cfg = true;
        } else if (!strcmp(a, "--arch") && has_val) {
            o.arch = argv[++i];
        } else if (!strcmp(a, "--vocab-size") && has_val) {
            char *end;
            unsigned long v = strtoul(argv[++i], &end, 10);
            if (*end || v == 0 || v > CONVTOK_MAX_ID) {
                fprintf(stderr, "convert-tokenizer: --vocab-size '%s' is not a count in [1, %u]\n", argv[i],
                        CONVTOK_MAX_ID);
                return 2;
            }
            o.vocab_size = (uint32_t)v;
        } else if (a[0] == '-' && a[1]) {
            fprintf(stderr, "convert-tokenizer: unknown option or missing value: %s (see --help)\n", a);
            return 2;
        } else if (npos < 2) {
            pos[npos++] = a;
        } else {
            fprintf(stderr, "convert-tokenizer: unexpected argument: %s\n", a);
            return 2;
        }
    }
    if (npos != 2) {
        fprintf(stderr, "convert-tokenizer: expected tokenizer.json and out.gguf (see --help)\n");
        return 2;
    }
    char sib[4096];
    if (!cfg && !no_cfg) { /* tokenizer_config.json beside tokenizer.json */
        const char *slash = strrchr(pos[0], '/');
        int dl = slash ? (int)(slash - pos[0] + 1) : 0;
        snprintf(sib, sizeof sib, "%.*stokenizer_config.json", dl, pos[0]);
        FILE *f = fopen(sib, "rb");
        if (f) {
            fclose(f);
            cfg = sib;
        }
    }
    nd_err err = {0};
    convtok_info info;
    double t0 = nd_time_s();
    if (convtok_convert_files(pos[0], no_cfg ? NULL : cfg, pos[1], &o, &info, &err)) {
        fprintf(stderr, "convert-tokenizer: %s\n", err.msg);
        return 1;
    }
    printf("%s: %u tokens (%u added, %u padding), %u merges, model %s, pre %s%s, bos %d eos %d, "
           "chat template %s%s%s (%.2f s)\n",
           pos[1], info.n_tokens, info.n_added, info.n_pad, info.n_merges, info.model, info.pre,
           info.pre_detected ? " (detected)" : "", info.bos, info.eos,
           info.has_chat_template ? "yes" : "no", cfg && !no_cfg ? ", config " : "",
           cfg && !no_cfg ? cfg : "", nd_time_s() - t0);
    return 0;
}
