/* Byte-level BPE pre-tokenizers: the regex lists llama.cpp uses per tokenizer.ggml.pre,
 * compiled once per vocab with PCRE2 (UTF + UCP, JIT when available), and the
 * llama.cpp splitting rule: each regex in the list refines the spans left by the previous
 * one, and text between matches is kept as its own span (never dropped). */
#include <stdio.h>
#include <string.h>

#include "tokenizer/tok_internal.h"

/* ================================================================ regex sets */

#define RE_GPT2 "'s|'t|'re|'ve|'m|'ll|'d| ?\\p{L}+| ?\\p{N}+| ?[^\\s\\p{L}\\p{N}]+|\\s+(?!\\S)"
#define RE_LLAMA3                                                                              \
    "(?:'[sS]|'[tT]|'[rR][eE]|'[vV][eE]|'[mM]|'[lL][lL]|'[dD])|[^\\r\\n\\p{L}\\p{N}]?\\p{L}+|" \
    "\\p{N}{1,3}| ?[^\\s\\p{L}\\p{N}]+[\\r\\n]*|\\s*[\\r\\n]+|\\s+(?!\\S)|\\s+"
#define RE_QWEN2                                                                               \
    "(?:'[sS]|'[tT]|'[rR][eE]|'[vV][eE]|'[mM]|'[lL][lL]|'[dD])|[^\\r\\n\\p{L}\\p{N}]?\\p{L}+|" \
    "\\p{N}| ?[^\\s\\p{L}\\p{N}]+[\\r\\n]*|\\s*[\\r\\n]+|\\s+(?!\\S)|\\s+"
#define RE_CJK "[\xe4\xb8\x80-\xe9\xbe\xa5\xe0\xa0\x80-\xe4\xb8\x80\xea\xb0\x80-\xed\x9f\xbf]+"
#define RE_PORO " ?[^(\\s|.,!?\xe2\x80\xa6\xe3\x80\x82\xef\xbc\x8c\xe3\x80\x81\xe0\xa5\xa4\xdb\x94\xd8\x8c)]+"

/* deepseek-llm letter class, as in the upstream tokenizer.json (UTF-8 literal ranges). */
#define RE_DSLLM_LETTERS \
    "\x5cs?[A-Za-z\xc2\xb5\xc3\x80-\xc3\x96\xc3\x98-\xc3\xb6\xc3\xb8-\xc6\xba\xc6\xbc-" \
    "\xc6\xbf\xc7\x84-\xca\x93\xca\x95-\xca\xaf\xcd\xb0-\xcd\xb3\xcd\xb6\xcd\xb7\xcd\xbb" \
    "-\xcd\xbd\xcd\xbf\xce\x86\xce\x88-\xce\x8a\xce\x8c\xce\x8e-\xce\xa1\xce\xa3-\xcf" \
    "\xb5\xcf\xb7-\xd2\x81\xd2\x8a-\xd4\xaf\xd4\xb1-\xd5\x96\xe1\x82\xa0-\xe1\x83\x85\xe1" \
    "\x8e\xa0-\xe1\x8f\xb5\xe1\x8f\xb8-\xe1\x8f\xbd\xe1\xb2\x90-\xe1\xb2\xba\xe1\xb2\xbd" \
    "-\xe1\xb2\xbf\xe1\xb4\x80-\xe1\xb4\xab\xe1\xb5\xab-\xe1\xb5\xb7\xe1\xb5\xb9-\xe1\xb6" \
    "\x9a\xe1\xb8\x80-\xe1\xbc\x95\xe1\xbc\x98-\xe1\xbc\x9d\xe1\xbc\xa0-\xe1\xbd\x85\xe1" \
    "\xbd\x88-\xe1\xbd\x8d\xe1\xbd\x90-\xe1\xbd\x97\xe1\xbd\x99\xe1\xbd\x9b\xe1\xbd\x9d" \
    "\xe1\xbd\x9f-\xe1\xbd\xbd\xe1\xbe\x80-\xe1\xbe\xb4\xe1\xbe\xb6-\xe1\xbe\xbc\xe1\xbe" \
    "\xbe\xe1\xbf\x82-\xe1\xbf\x84\xe1\xbf\x86-\xe1\xbf\x8c\xe1\xbf\x90-\xe1\xbf\x93\xe1" \
    "\xbf\x96-\xe1\xbf\x9b\xe1\xbf\xa0-\xe1\xbf\xac\xe1\xbf\xb2-\xe1\xbf\xb4\xe1\xbf\xb6" \
    "-\xe1\xbf\xbc\xe2\x84\x82\xe2\x84\x87\xe2\x84\x8a-\xe2\x84\x93\xe2\x84\x95\xe2\x84" \
    "\x99-\xe2\x84\x9d\xe2\x84\xa4\xe2\x84\xa6\xe2\x84\xa8\xe2\x84\xaa-\xe2\x84\xad\xe2" \
    "\x84\xaf-\xe2\x84\xb4\xe2\x84\xb9\xe2\x84\xbc-\xe2\x84\xbf\xe2\x85\x85-\xe2\x85\x89" \
    "\xe2\x85\x8e\xe2\x86\x83\xe2\x86\x84\xe2\xb0\x80-\xe2\xb1\xbb\xe2\xb1\xbe-\xe2\xb3" \
    "\xa4\xe2\xb3\xab-\xe2\xb3\xae\xe2\xb3\xb2\xe2\xb3\xb3\xea\x99\x80-\xea\x99\xad\xea" \
    "\x9a\x80-\xea\x9a\x9b\xea\x9c\xa2-\xea\x9d\xaf\xea\x9d\xb1-\xea\x9e\x87\xea\x9e\x8b" \
    "-\xea\x9e\x8e\xea\xad\xb0-\xea\xae\xbf\xef\xac\x80-\xef\xac\x86\xef\xac\x93-\xef\xac" \
    "\x97\xef\xbc\xa1-\xef\xbc\xba\xef\xbd\x81-\xef\xbd\x9a\xf0\x90\x90\x80-\xf0\x90\x91" \
    "\x8f\xf0\x90\x92\xb0-\xf0\x90\x93\x93\xf0\x90\x93\x98-\xf0\x90\x93\xbb\xf0\x90\xb2" \
    "\x80-\xf0\x90\xb2\xb2\xf0\x90\xb3\x80-\xf0\x90\xb3\xb2\xf0\x91\xa2\xa0-\xf0\x91\xa3" \
    "\x9f\xf0\x9e\xa4\x80-\xf0\x9e\xa5\x83]+"
#define RE_DSLLM_PUNCT                                                                  \
    "\\s?[!-/:-~\xef\xbc\x81-\xef\xbc\x8f\xef\xbc\x9a-\xef\xbd\x9e\xe2\x80\x98-\xe2\x80\x9f" \
    "\xe3\x80\x80-\xe3\x80\x82]+"

typedef struct pre_set {
    const char *name;     /* canonical name reported by tok_pre_name */
    const char *aliases;  /* '|'-separated tokenizer.ggml.pre values */
    const char *re[TOK_MAX_REGEX];
    bool ignore_merges, add_bos, clean_spaces;
} pre_set;

static const pre_set k_sets[] = {
    {"default", "default",
     {"[\\p{P}\\$\\+<=>\\^~\\|]+", RE_GPT2, "\\p{N}+", "[0-9][0-9][0-9]"}, false, false, true},
    {"llama3", "llama3|llama-v3|llama-bpe|falcon3", {RE_LLAMA3}, true, true, true},
    {"dbrx", "dbrx|smaug-bpe", {RE_LLAMA3}, false, false, true},
    {"chatglm4", "chatglm-bpe", {RE_LLAMA3}, false, false, true},
    {"deepseek-llm", "deepseek-llm",
     {"[\r\n]", RE_DSLLM_LETTERS, RE_DSLLM_PUNCT, "\\s+$", RE_CJK, "\\p{N}+"}, false, false, false},
    {"deepseek-v3", "deepseek-v3",
     {"\\p{N}{1,3}",
      "[\xe4\xb8\x80-\xe9\xbe\xa5\xe3\x81\x80-\xe3\x82\x9f\xe3\x82\xa0-\xe3\x83\xbf]+",
      "[!\"#$%&'()*+,\\-./:;<=>?@\\[\\\\\\]^_`{|}~][A-Za-z]+|[^\r\n\\p{L}\\p{P}\\p{S}]?[\\p{L}\\p{M}]+|"
      " ?[\\p{P}\\p{S}]+[\r\n]*|\\s*[\r\n]+|\\s+(?!\\S)|\\s+"},
     false, false, false},
    {"deepseek-coder", "deepseek-coder",
     {"[\r\n]", "\\s?\\p{L}+", "\\s?\\p{P}+", RE_CJK, "\\p{N}"}, false, false, false},
    {"falcon", "falcon", {"[\\p{P}\\$\\+<=>\\^~\\|`]+", RE_GPT2, "[0-9][0-9][0-9]"}, false, false, true},
    {"starcoder", "starcoder|refact|codeshell|exaone|minerva-7b", {"\\p{N}", RE_GPT2}, false, false, true},
    {"command-r", "command-r|smollm", {"\\p{N}", RE_GPT2}, false, false, false},
    {"gpt-2", "gpt-2|gpt2|phi-2|jina-es|jina-de|gigachat|jina-v1-en|jina-v2-es|jina-v2-de|"
              "jina-v2-code|roberta-bpe|mpt|olmo|jais|gpt-neox|trillion",
     {RE_GPT2}, false, false, true},
    {"qwen2", "qwen2|megrez|qwen3", {RE_QWEN2}, false, false, false},
    {"stablelm2", "stablelm2", {RE_QWEN2}, false, false, true},
    {"poro", "poro-chat", {RE_PORO}, false, false, false},
    {"bloom", "bloom|gpt3-finnish", {RE_PORO}, false, false, true},
    {"viking", "viking", {RE_PORO, "\\p{N}"}, false, false, false},
    {"tekken", "tekken",
     {"[^\\r\\n\\p{L}\\p{N}]?((?=[\\p{L}])([^a-z]))*((?=[\\p{L}])([^A-Z]))+|[^\\r\\n\\p{L}\\p{N}]?"
      "((?=[\\p{L}])([^a-z]))+((?=[\\p{L}])([^A-Z]))*|\\p{N}| ?[^\\s\\p{L}\\p{N}]+[\\r\\n/]*|"
      "\\s*[\\r\\n]+|\\s+(?!\\S)|\\s+"},
     true, true, false},
    {"chameleon", "chameleon",
     {"<sentinel:[0-9]+>", "(IMGIMG)((A|B|C|D|E|F|G|H|I){1,4})Z", "([\\t\\n]|    |  )", "\\p{N}",
      "[\\p{P}!-/:-@\\[-`{-~]", RE_GPT2},
     false, true, false},
};

static bool alias_match(const char *aliases, const char *s, size_t n) {
    const char *p = aliases;
    while (*p) {
        const char *e = strchr(p, '|');
        size_t k = e ? (size_t)(e - p) : strlen(p);
        if (k == n && memcmp(p, s, n) == 0) return true;
        if (!e) break;
        p = e + 1;
    }
    return false;
}

void tok_pre_free(tok_vocab *v) {
    for (int i = 0; i < v->n_re; i++) pcre2_code_free(v->re[i]);
    v->n_re = 0;
}

int tok_pre_init(tok_vocab *v, const char *pre, size_t pre_len, nd_err *err) {
    const pre_set *set = &k_sets[0]; /* missing or unknown pre: the default set */
    for (size_t i = 0; pre && i < sizeof k_sets / sizeof k_sets[0]; i++)
        if (alias_match(k_sets[i].aliases, pre, pre_len)) set = &k_sets[i];
    snprintf(v->pre_name, sizeof v->pre_name, "%s", set->name);
    v->ignore_merges = set->ignore_merges;
    if (set->add_bos) v->add_bos = true;
    v->clean_spaces = set->clean_spaces;
    for (int i = 0; i < TOK_MAX_REGEX && set->re[i]; i++) {
        int ec;
        PCRE2_SIZE eo;
        pcre2_code *re = pcre2_compile((PCRE2_SPTR)set->re[i], PCRE2_ZERO_TERMINATED,
                                       PCRE2_UTF | PCRE2_UCP | PCRE2_DOLLAR_ENDONLY, &ec, &eo, NULL);
        if (!re) {
            PCRE2_UCHAR msg[160];
            pcre2_get_error_message(ec, msg, sizeof msg);
            return nd_seterr(err, ND_EUNSUPPORTED, "tokenizer: pre-tokenizer %s regex %d: %s at %zu",
                             set->name, i, (const char *)msg, (size_t)eo);
        }
        (void)pcre2_jit_compile(re, PCRE2_JIT_COMPLETE); /* falls back to the interpreter */
        v->re[v->n_re++] = re;
    }
    return 0;
}

/* ================================================================ spans */

void tok_spans_free(tok_spans *s) {
    nd_free(s->off);
    nd_free(s->len);
    memset(s, 0, sizeof *s);
}

int tok_spans_push(tok_spans *s, size_t off, size_t len) {
    if (s->n == s->cap) {
        size_t cap = s->cap ? s->cap * 2 : 64;
        uint32_t *o = nd_realloc(s->off, cap * sizeof *o);
        if (!o) return ND_ENOMEM;
        s->off = o;
        uint32_t *l = nd_realloc(s->len, cap * sizeof *l);
        if (!l) return ND_ENOMEM;
        s->len = l;
        s->cap = cap;
    }
    s->off[s->n] = (uint32_t)off;
    s->len[s->n] = (uint32_t)len;
    s->n++;
    return 0;
}

/* ================================================================ UTF-8 */

int tok_utf8_sanitize(const char *text, size_t n, char **out, size_t *out_n) {
    *out = NULL;
    *out_n = n;
    const uint8_t *p = (const uint8_t *)text;
    size_t i = 0, bad = 0;
    while (i < n) {
        if (p[i] < 0x80) { i++; continue; }
        int k = nd_utf8_seq_len(p + i, n - i);
        if (k) i += (size_t)k;
        else bad++, i++;
    }
    if (!bad) return 0;
    char *o = nd_malloc(n + 2 * bad + 1);
    if (!o) return ND_ENOMEM;
    size_t w = 0;
    for (i = 0; i < n;) {
        int k = p[i] < 0x80 ? 1 : nd_utf8_seq_len(p + i, n - i);
        if (k) {
            memcpy(o + w, p + i, (size_t)k);
            w += (size_t)k;
            i += (size_t)k;
        } else {
            memcpy(o + w, "\xef\xbf\xbd", 3);
            w += 3;
            i++;
        }
    }
    o[w] = 0;
    *out = o;
    *out_n = w;
    return 0;
}

/* ================================================================ splitting */

static int match_at(const pcre2_code *re, const char *s, size_t n, size_t pos,
                    pcre2_match_data *md, nd_err *err) {
    int rc = pcre2_match(re, (PCRE2_SPTR)s, n, pos, PCRE2_NO_UTF_CHECK, md, NULL);
    if (rc == PCRE2_ERROR_JIT_STACKLIMIT) /* deep backtracking: the interpreter uses the heap */
        rc = pcre2_match(re, (PCRE2_SPTR)s, n, pos, PCRE2_NO_UTF_CHECK | PCRE2_NO_JIT, md, NULL);
    if (rc == PCRE2_ERROR_NOMATCH) return 0;
    if (rc < 0) {
        PCRE2_UCHAR msg[160];
        pcre2_get_error_message(rc, msg, sizeof msg);
        return nd_seterr(err, ND_ERANGE, "tokenizer: pre-tokenizer regex failed: %s", (const char *)msg);
    }
    return 1;
}

static int split_one(const pcre2_code *re, const char *text, const tok_spans *in, tok_spans *out,
                     pcre2_match_data *md, nd_err *err) {
    for (size_t i = 0; i < in->n; i++) {
        const char *s = text + in->off[i];
        size_t n = in->len[i], pos = 0, gap = 0;
        while (pos < n) {
            int m = match_at(re, s, n, pos, md, err);
            if (m < 0) return m;
            if (m == 0) break;
            PCRE2_SIZE *ov = pcre2_get_ovector_pointer(md);
            size_t ms = ov[0], me = ov[1];
            if (me <= ms) { /* empty match: step over one character */
                int k = nd_utf8_seq_len((const uint8_t *)s + ms, n - ms);
                pos = ms + (size_t)(k > 0 ? k : 1);
                continue;
            }
            if (ms > gap && tok_spans_push(out, in->off[i] + gap, ms - gap)) return ND_ENOMEM;
            if (tok_spans_push(out, in->off[i] + ms, me - ms)) return ND_ENOMEM;
            pos = gap = me;
        }
        if (gap < n && tok_spans_push(out, in->off[i] + gap, n - gap)) return ND_ENOMEM;
    }
    return 0;
}

int tok_pre_split(const tok_vocab *v, const char *text, size_t n, tok_spans *out, nd_err *err) {
    out->n = 0;
    if (n == 0) return 0;
    if (n > UINT32_MAX) return nd_seterr(err, ND_ERANGE, "tokenizer: text fragment over 4 GiB");
    tok_spans a = {0}, b = {0};
    int rc = tok_spans_push(&a, 0, n);
    pcre2_match_data *md = pcre2_match_data_create(4, NULL);
    if (rc || !md) rc = ND_ENOMEM;
    for (int r = 0; r < v->n_re && !rc; r++) {
        b.n = 0;
        rc = split_one(v->re[r], text, &a, &b, md, err);
        tok_spans t = a;
        a = b;
        b = t;
    }
    pcre2_match_data_free(md);
    if (rc == ND_ENOMEM) nd_seterr(err, rc, "tokenizer: out of memory (pre-tokenizer)");
    tok_spans_free(&b);
    if (rc) {
        tok_spans_free(&a);
        return rc;
    }
    tok_spans_free(out);
    *out = a;
    return 0;
}
