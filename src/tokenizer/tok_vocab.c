/* Vocabulary loading and validation, lookups, pieces, whole-sequence and streaming
 * detokenization. Encoding lives in tok_encode.c, regex pre-tokenizers in tok_pre.c. */
#include <ctype.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "tokenizer/tok_internal.h"

/* ================================================================ hashing / maps */

uint64_t tok_hash(const char *s, size_t n) {
    uint64_t h = 0x9E3779B97F4A7C15ull ^ (n * 0xff51afd7ed558ccdull);
    while (n >= 8) {
        uint64_t w;
        memcpy(&w, s, 8);
        h = (h ^ w) * 0xbf58476d1ce4e5b9ull;
        h ^= h >> 31;
        s += 8;
        n -= 8;
    }
    uint64_t w = 0;
    for (size_t i = 0; i < n; i++) w |= (uint64_t)(uint8_t)s[i] << (8 * i);
    h = (h ^ w) * 0x94d049bb133111ebull;
    h ^= h >> 29;
    h *= 0xbf58476d1ce4e5b9ull;
    h ^= h >> 32;
    return h;
}

static bool str_is(const tok_vocab *v, int32_t id, const char *s, size_t n) {
    return v->str_len[id] == n && memcmp(v->pool + v->str_off[id], s, n) == 0;
}

int32_t tok_map_find(const tok_vocab *v, const char *s, size_t n) {
    uint64_t i = tok_hash(s, n) & v->map.mask;
    for (;;) {
        int32_t id = v->map.slots[i];
        if (id < 0) return TOK_NULL;
        if (str_is(v, id, s, n)) return id;
        i = (i + 1) & v->map.mask;
    }
}

/* Insert id; an existing entry with the same text is replaced (llama.cpp: last wins). */
static void map_insert(tok_vocab *v, int32_t id) {
    const char *s = tok_str(v, id);
    size_t n = v->str_len[id];
    uint64_t i = tok_hash(s, n) & v->map.mask;
    for (;;) {
        int32_t cur = v->map.slots[i];
        if (cur < 0 || str_is(v, cur, s, n)) {
            v->map.slots[i] = id;
            return;
        }
        i = (i + 1) & v->map.mask;
    }
}

static uint64_t pow2_at_least(uint64_t n) {
    uint64_t c = 16;
    while (c < n) c <<= 1;
    return c;
}

/* ================================================================ load helpers */

/* Append a string to the pool and the string table (capacity reserved by the caller). */
static int str_append(tok_vocab *v, size_t *pool_cap, const char *s, size_t n, nd_err *err) {
    if (v->pool_len + n + 1 > *pool_cap) {
        size_t cap = *pool_cap * 2 + n + 1;
        char *p = nd_realloc(v->pool, cap);
        if (!p) return nd_seterr(err, ND_ENOMEM, "tokenizer: out of memory (string pool)");
        v->pool = p;
        *pool_cap = cap;
    }
    if (v->pool_len + n + 1 > UINT32_MAX)
        return nd_seterr(err, ND_ERANGE, "tokenizer: token texts exceed 4 GiB");
    v->str_off[v->n_str] = (uint32_t)v->pool_len;
    v->str_len[v->n_str] = (uint32_t)n;
    if (n) memcpy(v->pool + v->pool_len, s, n);
    v->pool[v->pool_len + n] = 0;
    v->pool_len += n + 1;
    v->n_str++;
    return 0;
}

/* Optional special-token id key. present=false if absent. Negative / non-integer -> error. */
static int get_id(const gguf_ctx *g, const char *key, int32_t n_vocab, bool strict, int32_t *id,
                  nd_err *err) {
    const gguf_kv *kv = gguf_find(g, key);
    if (!kv) return 0;
    const gguf_value *val = &kv->val;
    int64_t x;
    switch (val->type) {
    case GGUF_VT_UINT8: case GGUF_VT_UINT16: case GGUF_VT_UINT32: case GGUF_VT_UINT64:
        x = val->u64 > (uint64_t)INT32_MAX ? INT64_MAX : (int64_t)val->u64;
        break;
    case GGUF_VT_INT8: case GGUF_VT_INT16: case GGUF_VT_INT32: case GGUF_VT_INT64:
        x = val->i64;
        break;
    default:
        return nd_seterr(err, ND_ETYPE, "%s has type %s, expected an integer token id", key,
                         gguf_vtype_name(val->type));
    }
    if (x < 0 || x >= n_vocab) {
        if (!strict) {
            *id = TOK_NULL;
            return 0;
        }
        return nd_seterr(err, ND_ERANGE, "%s = %lld is out of range (vocabulary has %d tokens)",
                         key, (long long)x, n_vocab);
    }
    *id = (int32_t)x;
    return 0;
}

static int get_flag(const gguf_ctx *g, const char *key, bool *out, nd_err *err) {
    bool b;
    int rc = gguf_get_bool(g, key, &b, err);
    if (rc == ND_ENOTFOUND) return 0;
    if (rc) return rc;
    *out = b;
    return 0;
}

static int parse_byte_token(const char *s, size_t n, uint8_t *out) {
    if (n != 6 || memcmp(s, "<0x", 3) != 0 || s[5] != '>') return -1;
    int v = 0;
    for (int i = 3; i < 5; i++) {
        int c = s[i], d;
        if (c >= '0' && c <= '9') d = c - '0';
        else if (c >= 'A' && c <= 'F') d = c - 'A' + 10;
        else if (c >= 'a' && c <= 'f') d = c - 'a' + 10;
        else return -1;
        v = v * 16 + d;
    }
    *out = (uint8_t)v;
    return 0;
}

static uint16_t attr_of_type(int64_t t) {
    switch (t) {
    case TOK_TYPE_NORMAL: return TA_NORMAL;
    case TOK_TYPE_UNKNOWN: return TA_UNKNOWN;
    case TOK_TYPE_CONTROL: return TA_CONTROL;
    case TOK_TYPE_USER_DEFINED: return TA_USER;
    case TOK_TYPE_UNUSED: return TA_UNUSED;
    case TOK_TYPE_BYTE: return TA_BYTE;
    default: return 0;
    }
}

/* ================================================================ load: tokens */

static int load_tokens(tok_vocab *v, const gguf_ctx *g, size_t *pool_cap, uint64_t n_extra,
                       nd_err *err) {
    const gguf_array *toks, *scores = NULL, *types = NULL;
    int rc = gguf_get_arr(g, "tokenizer.ggml.tokens", GGUF_VT_STRING, &toks, err);
    if (rc) return nd_preerr(err, "tokenizer: ");
    if (toks->n == 0 || toks->n > (1u << 30))
        return nd_seterr(err, ND_EFORMAT, "tokenizer.ggml.tokens has %llu entries (need 1..2^30)",
                         (unsigned long long)toks->n);
    uint64_t nv = toks->n;
    if (gguf_find(g, "tokenizer.ggml.scores")) {
        rc = gguf_get_arr(g, "tokenizer.ggml.scores", GGUF_VT_COUNT, &scores, err);
        if (rc) return nd_preerr(err, "tokenizer: ");
        if (scores->etype == GGUF_VT_STRING || scores->etype == GGUF_VT_ARRAY ||
            scores->etype == GGUF_VT_BOOL)
            return nd_seterr(err, ND_ETYPE, "tokenizer.ggml.scores must hold numbers, not %s",
                             gguf_vtype_name(scores->etype));
        if (scores->n != nv)
            return nd_seterr(err, ND_EFORMAT,
                             "tokenizer.ggml.scores has %llu entries but there are %llu tokens",
                             (unsigned long long)scores->n, (unsigned long long)nv);
    }
    if (gguf_find(g, "tokenizer.ggml.token_type")) {
        rc = gguf_get_arr(g, "tokenizer.ggml.token_type", GGUF_VT_COUNT, &types, err);
        if (rc) return nd_preerr(err, "tokenizer: ");
        gguf_vtype t = types->etype;
        if (t == GGUF_VT_STRING || t == GGUF_VT_ARRAY || t == GGUF_VT_BOOL ||
            t == GGUF_VT_FLOAT32 || t == GGUF_VT_FLOAT64)
            return nd_seterr(err, ND_ETYPE, "tokenizer.ggml.token_type must hold integers, not %s",
                             gguf_vtype_name(t));
        if (types->n != nv)
            return nd_seterr(err, ND_EFORMAT,
                             "tokenizer.ggml.token_type has %llu entries but there are %llu tokens",
                             (unsigned long long)types->n, (unsigned long long)nv);
    }
    uint64_t n_str_max = nv + n_extra;
    v->n_vocab = (int32_t)nv;
    v->str_off = nd_malloc(n_str_max * sizeof *v->str_off);
    v->str_len = nd_malloc(n_str_max * sizeof *v->str_len);
    v->info = nd_calloc(nv, sizeof *v->info);
    uint64_t slots = pow2_at_least(2 * n_str_max);
    v->map.slots = nd_malloc(slots * sizeof *v->map.slots);
    v->map.mask = slots - 1;
    uint64_t total = 0;
    for (uint64_t i = 0; i < nv; i++) total += toks->strs[i].len + 16;
    *pool_cap = total + 64;
    v->pool = nd_malloc(*pool_cap);
    if (!v->str_off || !v->str_len || !v->info || !v->map.slots || !v->pool)
        return nd_seterr(err, ND_ENOMEM, "tokenizer: out of memory (%llu tokens)",
                         (unsigned long long)nv);
    memset(v->map.slots, 0xff, slots * sizeof *v->map.slots);
    for (uint64_t i = 0; i < nv; i++) {
        gguf_str s = toks->strs[i];
        char tmp[32];
        if (s.len == 0) { /* llama.cpp renames empty tokens so they cannot match */
            snprintf(tmp, sizeof tmp, "[EMPTY_%llu]", (unsigned long long)i);
            s.ptr = tmp;
            s.len = strlen(tmp);
        }
        if ((rc = str_append(v, pool_cap, s.ptr, s.len, err))) return rc;
        tok_tokinfo *ti = &v->info[i];
        ti->score = scores ? (float)gguf_arr_f64(scores, i) : 0.0f;
        int64_t t = types ? gguf_arr_i64(types, i) : TOK_TYPE_NORMAL;
        if (t < 0 || t > TOK_TYPE_BYTE)
            return nd_seterr(err, ND_EFORMAT,
                             "tokenizer.ggml.token_type[%llu] = %lld is not a token type (0..6)",
                             (unsigned long long)i, (long long)t);
        ti->type = (uint8_t)t;
        ti->attr = attr_of_type(t);
        if (v->kind == TOK_KIND_SPM && t == TOK_TYPE_BYTE &&
            parse_byte_token(s.ptr, s.len, &ti->byte) != 0)
            return nd_seterr(err, ND_EFORMAT,
                             "token %llu has type BYTE but its text is not of the form <0xNN>",
                             (unsigned long long)i);
        map_insert(v, (int32_t)i);
    }
    return 0;
}

/* ================================================================ load: BPE merges */

static int intern(tok_vocab *v, size_t *pool_cap, const char *s, size_t n, int32_t *id,
                  nd_err *err) {
    int32_t f = tok_map_find(v, s, n);
    if (f >= 0) {
        *id = f;
        return 0;
    }
    int rc = str_append(v, pool_cap, s, n, err);
    if (rc) return rc;
    *id = v->n_str - 1;
    map_insert(v, *id);
    return 0;
}

static int load_merges(tok_vocab *v, const gguf_array *m, size_t *pool_cap, nd_err *err) {
    uint64_t slots = pow2_at_least(2 * m->n + 2);
    tok_pairmap *pm = &v->merges;
    pm->keys = nd_malloc(slots * sizeof *pm->keys);
    pm->rank = nd_malloc(slots * sizeof *pm->rank);
    pm->merged = nd_malloc(slots * sizeof *pm->merged);
    if (!pm->keys || !pm->rank || !pm->merged)
        return nd_seterr(err, ND_ENOMEM, "tokenizer: out of memory (%llu merges)",
                         (unsigned long long)m->n);
    memset(pm->keys, 0xff, slots * sizeof *pm->keys);
    pm->mask = slots - 1;
    char *cat = NULL;
    size_t cat_cap = 0;
    int rc = 0;
    for (uint64_t r = 0; r < m->n && !rc; r++) {
        gguf_str s = m->strs[r];
        const char *sp = s.len > 1 ? memchr(s.ptr + 1, ' ', s.len - 1) : NULL;
        if (!sp || sp + 1 == s.ptr + s.len) {
            rc = nd_seterr(err, ND_EFORMAT,
                           "tokenizer.ggml.merges[%llu] \"%.*s\" is not of the form \"left right\"",
                           (unsigned long long)r, (int)(s.len > 60 ? 60 : s.len), s.ptr);
            break;
        }
        size_t la = (size_t)(sp - s.ptr), lb = s.len - la - 1;
        if (la + lb > cat_cap) {
            cat_cap = (la + lb) * 2;
            char *c2 = nd_realloc(cat, cat_cap);
            if (!c2) {
                rc = nd_seterr(err, ND_ENOMEM, "tokenizer: out of memory (merges)");
                break;
            }
            cat = c2;
        }
        memcpy(cat, s.ptr, la);
        memcpy(cat + la, sp + 1, lb);
        int32_t a, b, ab;
        if ((rc = intern(v, pool_cap, s.ptr, la, &a, err))) break;
        if ((rc = intern(v, pool_cap, sp + 1, lb, &b, err))) break;
        if ((rc = intern(v, pool_cap, cat, la + lb, &ab, err))) break;
        uint64_t key = (uint64_t)(uint32_t)a << 32 | (uint32_t)b;
        uint64_t i = tok_hash((const char *)&key, 8) & pm->mask;
        while (pm->keys[i] != UINT64_MAX && pm->keys[i] != key) i = (i + 1) & pm->mask;
        if (pm->keys[i] == UINT64_MAX) { /* first (lowest) rank wins */
            pm->keys[i] = key;
            pm->rank[i] = (int32_t)r;
            pm->merged[i] = ab;
        }
    }
    nd_free(cat);
    return rc;
}

/* ================================================================ load: specials */

static const char *const k_eot_texts[] = {
    "<|eot_id|>", "<|im_end|>", "<|end|>", "<end_of_turn>", "<|endoftext|>", "<EOT>",
    "<\xef\xbd\x9c" "end\xe2\x96\x81of\xe2\x96\x81sentence\xef\xbd\x9c>", NULL};
static const char *const k_eog_texts[] = {
    "<|eot_id|>", "<|im_end|>", "<|end|>", "<end_of_turn>", "<|endoftext|>", "<|eom_id|>",
    "<EOT>", NULL};

static int32_t find_cstr(const tok_vocab *v, const char *s) {
    int32_t id = tok_map_find(v, s, strlen(s));
    return id < v->n_vocab ? id : TOK_NULL;
}

static void mark_eog(tok_vocab *v, int32_t id, bool force_control) {
    if (id < 0 || id >= v->n_vocab) return;
    v->info[id].attr |= TA_EOG;
    if (force_control && !(v->info[id].attr & TA_CONTROL)) v->info[id].attr = (uint16_t)((v->info[id].attr & ~TA_NORMAL) | TA_CONTROL);
}

static int load_specials(tok_vocab *v, const gguf_ctx *g, nd_err *err) {
    int32_t nv = v->n_vocab;
    if (v->kind == TOK_KIND_SPM) {
        v->bos = 1; v->eos = 2; v->unk = 0;
    } else {
        v->bos = 11; v->eos = 11; v->unk = TOK_NULL;
    }
    v->eot = v->eom = v->sep = v->pad = TOK_NULL;
    if (v->bos >= nv) v->bos = TOK_NULL;
    if (v->eos >= nv) v->eos = TOK_NULL;
    if (v->unk >= nv) v->unk = TOK_NULL;
    struct { const char *key; int32_t *id; bool strict; } keys[] = {
        {"tokenizer.ggml.bos_token_id", &v->bos, true},
        {"tokenizer.ggml.eos_token_id", &v->eos, true},
        {"tokenizer.ggml.eot_token_id", &v->eot, true},
        {"tokenizer.ggml.eom_token_id", &v->eom, true},
        {"tokenizer.ggml.unknown_token_id", &v->unk, true},
        {"tokenizer.ggml.seperator_token_id", &v->sep, false},
        {"tokenizer.ggml.separator_token_id", &v->sep, false},
        {"tokenizer.ggml.padding_token_id", &v->pad, false},
    };
    for (size_t i = 0; i < sizeof keys / sizeof keys[0]; i++) {
        int rc = get_id(g, keys[i].key, nv, keys[i].strict, keys[i].id, err);
        if (rc) return rc;
    }
    int rc;
    if ((rc = get_flag(g, "tokenizer.ggml.add_bos_token", &v->add_bos, err))) return rc;
    if ((rc = get_flag(g, "tokenizer.ggml.add_eos_token", &v->add_eos, err))) return rc;
    if (v->add_bos && v->bos < 0)
        return nd_seterr(err, ND_EFORMAT, "tokenizer: add_bos_token is set but there is no BOS token");
    if (v->add_eos && v->eos < 0)
        return nd_seterr(err, ND_EFORMAT, "tokenizer: add_eos_token is set but there is no EOS token");
    if (v->eot < 0)
        for (int i = 0; k_eot_texts[i] && v->eot < 0; i++) v->eot = find_cstr(v, k_eot_texts[i]);
    if (v->eot >= 0) mark_eog(v, v->eot, true);
    if (v->eom < 0) v->eom = find_cstr(v, "<|eom_id|>");
    if (v->eom >= 0) mark_eog(v, v->eom, true);
    for (int i = 0; k_eog_texts[i]; i++) mark_eog(v, find_cstr(v, k_eog_texts[i]), true);
    mark_eog(v, v->eos, false);
    return 0;
}

/* Per-model attributes llama.cpp sets by name (they are missing from GGUF files). */
static void set_model_attrs(tok_vocab *v, const gguf_ctx *g) {
    gguf_str name;
    if (gguf_get_str(g, "general.name", &name, NULL) != 0) return;
    char low[128];
    size_t n = name.len < sizeof low - 1 ? name.len : sizeof low - 1;
    for (size_t i = 0; i < n; i++) low[i] = (char)tolower((unsigned char)name.ptr[i]);
    low[n] = 0;
    if (!strstr(low, "phi-3") && !strstr(low, "phi3")) return;
    for (int32_t i = 0; i < v->n_vocab; i++)
        if (v->info[i].attr & (TA_CONTROL | TA_USER | TA_UNKNOWN)) v->info[i].attr |= TA_RSTRIP;
    int32_t id = find_cstr(v, "</s>");
    if (id >= 0) v->info[id].attr |= TA_RSTRIP;
    const char *no[] = {"<unk>", "<s>", "<|endoftext|>"};
    for (int i = 0; i < 3; i++)
        if ((id = find_cstr(v, no[i])) >= 0) v->info[id].attr &= (uint16_t)~TA_RSTRIP;
}

static int build_special_list(tok_vocab *v, nd_err *err) {
    int32_t n = 0;
    for (int32_t i = 0; i < v->n_vocab; i++)
        if (v->info[i].attr & (TA_CONTROL | TA_USER | TA_UNKNOWN)) n++;
    v->special = nd_malloc((size_t)(n ? n : 1) * sizeof *v->special);
    if (!v->special) return nd_seterr(err, ND_ENOMEM, "tokenizer: out of memory");
    n = 0;
    for (int32_t i = 0; i < v->n_vocab; i++)
        if (v->info[i].attr & (TA_CONTROL | TA_USER | TA_UNKNOWN)) v->special[n++] = i;
    v->n_special = n;
    /* insertion sort by text length, longest first (stable: lower id first on ties);
     * lists are short (a few hundred) so this is cheap. */
    for (int32_t i = 1; i < n; i++) {
        int32_t x = v->special[i], j = i;
        while (j > 0 && v->str_len[v->special[j - 1]] < v->str_len[x]) {
            v->special[j] = v->special[j - 1];
            j--;
        }
        v->special[j] = x;
    }
    v->sp_bucket = nd_malloc((size_t)(n ? n : 1) * sizeof *v->sp_bucket);
    if (!v->sp_bucket) return nd_seterr(err, ND_ENOMEM, "tokenizer: out of memory");
    memset(v->sp_start, 0, sizeof v->sp_start);
    for (int32_t k = 0; k < n; k++) v->sp_start[(uint8_t)tok_str(v, v->special[k])[0] + 1]++;
    for (int c = 0; c < 256; c++) v->sp_start[c + 1] += v->sp_start[c];
    int32_t fill[256];
    memcpy(fill, v->sp_start, sizeof fill);
    for (int32_t k = 0; k < n; k++) v->sp_bucket[fill[(uint8_t)tok_str(v, v->special[k])[0]]++] = k;
    return 0;
}

/* ================================================================ load: pieces */


/* GPT-2 bytes_to_unicode: printable Latin-1 bytes map to themselves, the other 68 bytes
 * to U+0100.. in byte order. */
static uint32_t gpt2_byte_to_cp(int b) {
    if ((b >= 33 && b <= 126) || (b >= 161 && b <= 172) || (b >= 174 && b <= 255)) return (uint32_t)b;
    int n = 0;
    for (int c = 0; c < b; c++)
        if (!((c >= 33 && c <= 126) || (c >= 161 && c <= 172) || (c >= 174 && c <= 255))) n++;
    return 256u + (uint32_t)n;
}

static int piece_of(const tok_vocab *v, int32_t id, const int16_t *cp2byte, nd_buf *b) {
    const tok_tokinfo *ti = &v->info[id];
    const char *s = tok_str(v, id);
    size_t n = v->str_len[id];
    if (ti->attr & (TA_UNKNOWN | TA_CONTROL | TA_USER)) return nd_buf_append(b, s, n);
    if (v->kind == TOK_KIND_SPM) {
        if (ti->attr & TA_BYTE) return nd_buf_append(b, &ti->byte, 1);
        if (!(ti->attr & TA_NORMAL)) return 0;
        for (size_t i = 0; i < n;) {
            if (i + 3 <= n && memcmp(s + i, "\xe2\x96\x81", 3) == 0) {
                if (nd_buf_append(b, " ", 1)) return ND_ENOMEM;
                i += 3;
            } else {
                if (nd_buf_append(b, s + i, 1)) return ND_ENOMEM;
                i++;
            }
        }
        return 0;
    }
    if (!(ti->attr & TA_NORMAL)) return 0;
    for (size_t i = 0; i < n;) {
        uint32_t cp;
        int k = nd_utf8_decode((const uint8_t *)s + i, n - i, &cp);
        if (k <= 0) { /* invalid text in the file: pass the byte through */
            if (nd_buf_append(b, s + i, 1)) return ND_ENOMEM;
            i++;
            continue;
        }
        if (cp < 324 && cp2byte[cp] >= 0) {
            char c = (char)cp2byte[cp];
            if (nd_buf_append(b, &c, 1)) return ND_ENOMEM;
        } else if (nd_buf_append(b, s + i, (size_t)k)) {
            return ND_ENOMEM;
        }
        i += (size_t)k;
    }
    return 0;
}

static int build_pieces(tok_vocab *v, nd_err *err) {
    int16_t cp2byte[324];
    for (int i = 0; i < 324; i++) cp2byte[i] = -1;
    for (int b = 0; b < 256; b++) cp2byte[gpt2_byte_to_cp(b)] = (int16_t)b;
    nd_buf b = {0};
    for (int32_t id = 0; id < v->n_vocab; id++) {
        size_t start = b.len;
        if (piece_of(v, id, cp2byte, &b) || nd_buf_append(&b, "", 1)) {
            nd_buf_free(&b);
            return nd_seterr(err, ND_ENOMEM, "tokenizer: out of memory (pieces)");
        }
        if (b.len > UINT32_MAX) {
            nd_buf_free(&b);
            return nd_seterr(err, ND_ERANGE, "tokenizer: pieces exceed 4 GiB");
        }
        v->info[id].piece_off = (uint32_t)start;
        v->info[id].piece_len = (uint32_t)(b.len - start - 1);
    }
    v->piece_pool = b.data;
    return 0;
}

static void build_byte_tables(tok_vocab *v) {
    for (int b = 0; b < 256; b++) {
        v->byte_tok[b] = TOK_NULL;
        v->byte_sym[b] = -1;
        char enc[4];
        int k = nd_utf8_encode(gpt2_byte_to_cp(b), enc);
        memcpy(v->byte_enc[b], enc, (size_t)k);
        v->byte_enc_len[b] = (uint8_t)k;
    }
    if (v->kind == TOK_KIND_SPM) {
        static const char hex[] = "0123456789ABCDEF";
        for (int b = 0; b < 256; b++) {
            char t[6] = {'<', '0', 'x', hex[b >> 4], hex[b & 15], '>'};
            int32_t id = tok_map_find(v, t, 6);
            if (id < 0 || id >= v->n_vocab) {
                char c = (char)b;
                id = tok_map_find(v, &c, 1);
            }
            v->byte_tok[b] = id < v->n_vocab ? id : TOK_NULL;
        }
        v->nl = v->byte_tok['\n'];
    } else {
        for (int b = 0; b < 256; b++) v->byte_sym[b] = tok_map_find(v, v->byte_enc[b], v->byte_enc_len[b]);
        int32_t nl = v->byte_sym['\n'];
        v->nl = nl >= 0 && nl < v->n_vocab ? nl : TOK_NULL;
    }
}

/* ================================================================ load: SPM pairs */

static int pairset_add(tok_vocab *v, uint64_t key) {
    uint64_t i = tok_hash((const char *)&key, 8) & v->spm_pairs_mask;
    while (v->spm_pairs[i] != UINT64_MAX) {
        if (v->spm_pairs[i] == key) return 0;
        i = (i + 1) & v->spm_pairs_mask;
    }
    v->spm_pairs[i] = key;
    return 1;
}

bool tok_spm_joinable(const tok_vocab *v, uint64_t key) {
    if (key == UINT64_MAX) return true;
    uint64_t i = tok_hash((const char *)&key, 8) & v->spm_pairs_mask;
    while (v->spm_pairs[i] != UINT64_MAX) {
        if (v->spm_pairs[i] == key) return true;
        i = (i + 1) & v->spm_pairs_mask;
    }
    return false;
}

static int build_spm_pairs(tok_vocab *v, nd_err *err) {
    uint64_t n_pairs = 0;
    for (int32_t id = 0; id < v->n_vocab; id++) n_pairs += v->str_len[id];
    uint64_t slots = pow2_at_least(2 * n_pairs + 2);
    v->spm_pairs = nd_malloc(slots * sizeof *v->spm_pairs);
    if (!v->spm_pairs) return nd_seterr(err, ND_ENOMEM, "tokenizer: out of memory (pairs)");
    memset(v->spm_pairs, 0xff, slots * sizeof *v->spm_pairs);
    v->spm_pairs_mask = slots - 1;
    for (int32_t id = 0; id < v->n_vocab; id++) {
        const char *s = tok_str(v, id);
        size_t n = v->str_len[id], prev = 0, prev_len = 0;
        for (size_t off = 0; off < n;) {
            size_t k = tok_utf8_lead_len((uint8_t)s[off]);
            if (k > n - off) k = n - off;
            if (off > 0) pairset_add(v, tok_spm_pair_key(s + prev, prev_len, s + off, k));
            prev = off;
            prev_len = k;
            off += k;
        }
    }
    return 0;
}

/* ================================================================ load */

tok_vocab *tok_load(const gguf_ctx *g, nd_err *err) {
    if (!g) {
        nd_seterr(err, ND_EINVAL, "tok_load: no GGUF context");
        return NULL;
    }
    gguf_str model;
    int rc = gguf_get_str(g, "tokenizer.ggml.model", &model, err);
    if (rc) {
        nd_preerr(err, "tokenizer: ");
        return NULL;
    }
    tok_vocab *v = nd_calloc(1, sizeof *v);
    if (!v) {
        nd_seterr(err, ND_ENOMEM, "tokenizer: out of memory");
        return NULL;
    }
    if (gguf_str_eq(model, "llama")) {
        v->kind = TOK_KIND_SPM;
        v->add_space_prefix = true;
        v->add_bos = true;
    } else if (gguf_str_eq(model, "gpt2")) {
        v->kind = TOK_KIND_BPE;
        v->clean_spaces = true;
    } else {
        nd_seterr(err, ND_EUNSUPPORTED,
                  "tokenizer.ggml.model \"%.*s\" is not supported (only \"llama\" SentencePiece "
                  "and \"gpt2\" byte-level BPE)", (int)(model.len > 40 ? 40 : model.len), model.ptr);
        tok_free(v);
        return NULL;
    }
    const gguf_array *merges = NULL;
    if (v->kind == TOK_KIND_BPE) {
        rc = gguf_get_arr(g, "tokenizer.ggml.merges", GGUF_VT_STRING, &merges, err);
        if (rc) {
            nd_preerr(err, "tokenizer (gpt2 BPE needs merges): ");
            tok_free(v);
            return NULL;
        }
    }
    if (v->kind == TOK_KIND_BPE) { /* before the flags: some pre-tokenizers change defaults */
        gguf_str pre = {NULL, 0};
        if (gguf_find(g, "tokenizer.ggml.pre") && (rc = gguf_get_str(g, "tokenizer.ggml.pre", &pre, err)))
            goto fail;
        if ((rc = tok_pre_init(v, pre.ptr, pre.len, err))) goto fail;
    }
    size_t pool_cap = 0;
    uint64_t n_extra = merges ? 3 * merges->n : 0;
    if ((rc = load_tokens(v, g, &pool_cap, n_extra, err))) goto fail;
    if (merges && (rc = load_merges(v, merges, &pool_cap, err))) goto fail;
    if ((rc = load_specials(v, g, err))) goto fail;
    if ((rc = get_flag(g, "tokenizer.ggml.add_space_prefix", &v->add_space_prefix, err))) goto fail;
    set_model_attrs(v, g);
    if ((rc = build_special_list(v, err))) goto fail;
    build_byte_tables(v);
    if ((rc = build_pieces(v, err))) goto fail;
    if (v->kind == TOK_KIND_SPM && (rc = build_spm_pairs(v, err))) goto fail;
    return v;
fail:
    tok_free(v);
    return NULL;
}

void tok_free(tok_vocab *v) {
    if (!v) return;
    tok_pre_free(v);
    nd_free(v->str_off);
    nd_free(v->str_len);
    nd_free(v->pool);
    nd_free(v->info);
    nd_free(v->piece_pool);
    nd_free(v->map.slots);
    nd_free(v->special);
    nd_free(v->sp_bucket);
    nd_free(v->spm_pairs);
    nd_free(v->merges.keys);
    nd_free(v->merges.rank);
    nd_free(v->merges.merged);
    nd_free(v);
}

/* ================================================================ accessors */

tok_kind tok_get_kind(const tok_vocab *v) { return v->kind; }
int32_t tok_n_vocab(const tok_vocab *v) { return v->n_vocab; }
const char *tok_pre_name(const tok_vocab *v) { return v->pre_name; }
int32_t tok_bos(const tok_vocab *v) { return v->bos; }
int32_t tok_eos(const tok_vocab *v) { return v->eos; }
int32_t tok_eot(const tok_vocab *v) { return v->eot; }
int32_t tok_eom(const tok_vocab *v) { return v->eom; }
int32_t tok_unk(const tok_vocab *v) { return v->unk; }
int32_t tok_sep(const tok_vocab *v) { return v->sep; }
int32_t tok_pad(const tok_vocab *v) { return v->pad; }
int32_t tok_nl(const tok_vocab *v) { return v->nl; }
bool tok_add_bos(const tok_vocab *v) { return v->add_bos; }
bool tok_add_eos(const tok_vocab *v) { return v->add_eos; }
bool tok_add_space_prefix(const tok_vocab *v) { return v->add_space_prefix; }

static bool valid_id(const tok_vocab *v, int32_t id) { return id >= 0 && id < v->n_vocab; }

bool tok_is_eog(const tok_vocab *v, int32_t id) {
    return valid_id(v, id) && (v->info[id].attr & TA_EOG);
}
bool tok_is_control(const tok_vocab *v, int32_t id) {
    return valid_id(v, id) && (v->info[id].attr & (TA_CONTROL | TA_UNKNOWN));
}
const char *tok_text(const tok_vocab *v, int32_t id, size_t *len) {
    if (!valid_id(v, id)) return NULL;
    if (len) *len = v->str_len[id];
    return tok_str(v, id);
}
tok_type tok_get_type(const tok_vocab *v, int32_t id) {
    return valid_id(v, id) ? (tok_type)v->info[id].type : TOK_TYPE_UNDEFINED;
}
float tok_score(const tok_vocab *v, int32_t id) { return valid_id(v, id) ? v->info[id].score : 0.0f; }
int32_t tok_find(const tok_vocab *v, const char *s, size_t n) {
    int32_t id = tok_map_find(v, s, n);
    return id < v->n_vocab ? id : TOK_NULL;
}

/* ================================================================ decoding */

int tok_piece_view(const tok_vocab *v, int32_t id, bool special, const char **s, size_t *len) {
    if (!valid_id(v, id)) return ND_ERANGE;
    const tok_tokinfo *ti = &v->info[id];
    if (!special && (ti->attr & (TA_CONTROL | TA_UNKNOWN))) {
        *s = v->piece_pool + ti->piece_off + ti->piece_len; /* the NUL: "" */
        *len = 0;
        return 0;
    }
    *s = v->piece_pool + ti->piece_off;
    *len = ti->piece_len;
    return 0;
}

int tok_piece(const tok_vocab *v, int32_t id, bool special, char *buf, size_t cap) {
    const char *s;
    size_t n;
    int rc = tok_piece_view(v, id, special, &s, &n);
    if (rc) return rc;
    if (cap) {
        size_t k = n < cap ? n : cap;
        memcpy(buf, s, k);
        if (k < cap) buf[k] = 0;
    }
    return n > INT32_MAX ? INT32_MAX : (int)n;
}

/* llama.cpp's clean_up_tokenization_spaces: " ?" " !" " ." " ," lose the space, " ' " loses
 * both, " 's" " 'm" " 're" " 've" lose it. In place; returns the new length. */
static size_t clean_spaces(char *t, size_t n) {
    size_t o = n ? 1 : 0;
    for (size_t i = 1; i < n; i++) {
        char x = t[i];
        if (t[i - 1] == ' ' && (x == '?' || x == '!' || x == '.' || x == ',')) o--;
        t[o++] = x;
    }
    n = o;
    o = n ? 1 : 0;
    for (size_t i = 1; i < n; i++) {
        char x = t[i];
        if (x == '\'' && i + 1 < n && t[i - 1] == ' ' && t[i + 1] == ' ') {
            o--;
            t[o++] = x;
            i++; /* drop the next space */
            continue;
        }
        t[o++] = x;
    }
    n = o;
    o = n ? 1 : 0;
    for (size_t i = 1; i < n; i++) {
        char x = t[i];
        if (t[i - 1] == ' ' && x == '\'' && i + 1 < n) {
            char x1 = t[i + 1];
            if (x1 == 's' || x1 == 'm') o--;
            else if (i + 2 < n && ((x1 == 'r' && t[i + 2] == 'e') || (x1 == 'v' && t[i + 2] == 'e'))) o--;
        }
        t[o++] = x;
    }
    return o;
}

int tok_decode(const tok_vocab *v, const int32_t *ids, size_t n, unsigned flags, char **out,
               size_t *len, nd_err *err) {
    if (!v || (!ids && n) || !out) return nd_seterr(err, ND_EINVAL, "tok_decode: NULL argument");
    *out = NULL;
    if (len) *len = 0;
    size_t start = 0, end = n;
    if ((flags & TOK_DECODE_REMOVE_SPECIAL) && v->add_bos && n > 0 && ids[0] == v->bos) start = 1;
    if ((flags & TOK_DECODE_REMOVE_SPECIAL) && v->add_eos && end > start && ids[end - 1] == v->eos)
        end--;
    bool special = flags & TOK_DECODE_UNPARSE_SPECIAL;
    bool strip = v->add_space_prefix;
    nd_buf b = {0};
    for (size_t i = start; i < end; i++) {
        const char *s;
        size_t k;
        if (tok_piece_view(v, ids[i], special, &s, &k) != 0) {
            nd_buf_free(&b);
            return nd_seterr(err, ND_ERANGE, "tok_decode: token %zu has id %d, outside 0..%d", i,
                             ids[i], v->n_vocab - 1);
        }
        if (strip && k > 0) {
            if (s[0] == ' ') s++, k--;
            strip = false;
        }
        if (nd_buf_append(&b, s, k)) {
            nd_buf_free(&b);
            return nd_seterr(err, ND_ENOMEM, "tok_decode: out of memory");
        }
    }
    if (nd_buf_append(&b, "", 1)) {
        nd_buf_free(&b);
        return nd_seterr(err, ND_ENOMEM, "tok_decode: out of memory");
    }
    size_t total = b.len - 1;
    if ((flags & TOK_DECODE_CLEAN_SPACES) && v->clean_spaces) {
        total = clean_spaces(b.data, total);
        b.data[total] = 0;
    }
    *out = b.data;
    if (len) *len = total;
    return 0;
}

/* ================================================================ streaming */

void tok_stream_init(tok_stream *s, const tok_vocab *v, unsigned flags) {
    memset(s, 0, sizeof *s);
    s->v = v;
    s->flags = flags;
    s->at_start = v->add_space_prefix;
}

/* Bytes at the end of p[0..n) that start a UTF-8 sequence not yet complete (0..3). */
static size_t incomplete_tail(const uint8_t *p, size_t n) {
    for (size_t k = 1; k <= 4 && k <= n; k++) {
        uint8_t c = p[n - k];
        if ((c & 0xC0) == 0x80) continue; /* continuation: keep looking for the lead */
        size_t need = c >= 0xF0 && c <= 0xF4 ? 4 : c >= 0xE0 && c < 0xF0 ? 3 : c >= 0xC2 && c < 0xE0 ? 2 : 1;
        return need > k ? k : 0;
    }
    return 0;
}

int tok_stream_push(tok_stream *s, int32_t id, nd_buf *out, nd_err *err) {
    const char *p;
    size_t k;
    if (tok_piece_view(s->v, id, s->flags & TOK_DECODE_UNPARSE_SPECIAL, &p, &k) != 0)
        return nd_seterr(err, ND_ERANGE, "tok_stream: id %d outside 0..%d", id, s->v->n_vocab - 1);
    if (s->at_start && k > 0) {
        if (p[0] == ' ') p++, k--;
        s->at_start = false;
    }
    size_t base = out->len;
    if (nd_buf_append(out, s->held, s->n_held) || nd_buf_append(out, p, k))
        return nd_seterr(err, ND_ENOMEM, "tok_stream: out of memory");
    size_t tail = incomplete_tail((const uint8_t *)out->data + base, out->len - base);
    memcpy(s->held, out->data + out->len - tail, tail);
    s->n_held = tail;
    out->len -= tail;
    if (out->len < out->cap) out->data[out->len] = 0;
    return 0;
}

int tok_stream_flush(tok_stream *s, nd_buf *out, nd_err *err) {
    if (nd_buf_append(out, s->held, s->n_held))
        return nd_seterr(err, ND_ENOMEM, "tok_stream: out of memory");
    s->n_held = 0;
    return 0;
}
