/* Private layout of tok_vocab, shared by tok_vocab.c (load, decode), tok_encode.c (SPM,
 * BPE, special tokens) and tok_pre.c (regex pre-tokenizers). Not part of the API. */
#ifndef ND_TOK_INTERNAL_H
#define ND_TOK_INTERNAL_H

#define PCRE2_CODE_UNIT_WIDTH 8
#include <pcre2.h>

#include <string.h>

#include "tokenizer/tok.h"

/* Attribute bits (llama.cpp's token attributes, derived from the GGUF token type). */
enum {
    TA_NORMAL = 1u << 0,
    TA_UNKNOWN = 1u << 1,
    TA_CONTROL = 1u << 2,
    TA_USER = 1u << 3,
    TA_UNUSED = 1u << 4,
    TA_BYTE = 1u << 5,
    TA_LSTRIP = 1u << 6, /* eat ASCII spaces left of a matched special token */
    TA_RSTRIP = 1u << 7, /* ... and right of it */
    TA_EOG = 1u << 8,
};

typedef struct tok_tokinfo {
    float score;
    uint16_t attr;  /* TA_* */
    uint8_t type;   /* tok_type as stored in the file */
    uint8_t byte;   /* SPM byte tokens: the byte value */
    uint32_t piece_off, piece_len; /* rendered piece (special = true) in piece_pool */
} tok_tokinfo;

/* Open-addressing hash set of string ids keyed by their text. */
typedef struct tok_strmap {
    int32_t *slots; /* -1 = empty */
    uint64_t mask;
} tok_strmap;

/* Open-addressing map (left id, right id) -> (rank, merged id) for BPE merges. */
typedef struct tok_pairmap {
    uint64_t *keys; /* UINT64_MAX = empty */
    int32_t *rank;
    int32_t *merged;
    uint64_t mask;
} tok_pairmap;

#define TOK_MAX_REGEX 8

struct tok_vocab {
    tok_kind kind;
    int32_t n_vocab;
    /* Strings: ids [0, n_vocab) are tokens; ids [n_vocab, n_str) are texts that appear
     * only as parts/results of BPE merges (never emitted). */
    int32_t n_str;
    uint32_t *str_off, *str_len; /* [n_str] into pool */
    char *pool;                  /* NUL-terminated texts */
    size_t pool_len;
    tok_tokinfo *info; /* [n_vocab] */
    char *piece_pool;
    tok_strmap map;

    int32_t bos, eos, eot, eom, unk, sep, pad, nl;
    bool add_bos, add_eos, add_space_prefix, ignore_merges, clean_spaces;

    int32_t *special; /* control/user/unknown ids, longest text first */
    int32_t n_special;
    /* special[] indices bucketed by the first byte of their text:
     * sp_bucket[sp_start[c] .. sp_start[c+1]) (used to find which specials occur at all) */
    int32_t sp_start[257];
    int32_t *sp_bucket;
    int32_t byte_tok[256]; /* SPM: token for byte b (<0xNN> or the 1-byte text), TOK_NULL */

    /* SPM: set of adjacent character pairs (packed UTF-8, see spm_pair_key) occurring inside
     * some token. A merge can never span a boundary whose pair is absent, so the encoder
     * runs the bigram queue on independent chunks (same result, much smaller heaps). */
    uint64_t *spm_pairs; /* UINT64_MAX = empty */
    uint64_t spm_pairs_mask;

    /* BPE */
    tok_pairmap merges;
    int32_t byte_sym[256];   /* string id of the GPT-2 char for byte b, or -1 */
    char byte_enc[256][3];   /* GPT-2 char for byte b as UTF-8 */
    uint8_t byte_enc_len[256];
    char pre_name[32];
    int n_re;
    pcre2_code *re[TOK_MAX_REGEX];
};

/* ---- tok_vocab.c */
uint64_t tok_hash(const char *s, size_t n);
int32_t tok_map_find(const tok_vocab *v, const char *s, size_t n);
static inline const char *tok_str(const tok_vocab *v, int32_t id) { return v->pool + v->str_off[id]; }

static inline uint64_t tok_spm_pair_key(const char *a, size_t na, const char *b, size_t nb) {
    uint32_t x = 0, y = 0;
    memcpy(&x, a, na < 4 ? na : 4);
    memcpy(&y, b, nb < 4 ? nb : 4);
    return (uint64_t)x << 32 | y; /* zero padding may alias pairs: only ever errs on "joinable" */
}
static inline size_t tok_utf8_lead_len(uint8_t c) {
    static const uint8_t k[16] = {1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 2, 2, 3, 4};
    return k[c >> 4];
}
bool tok_spm_joinable(const tok_vocab *v, uint64_t key);

/* ---- tok_pre.c */
/* Choose and compile the regex set for tokenizer.ggml.pre (pre may be NULL). */
int tok_pre_init(tok_vocab *v, const char *pre, size_t pre_len, nd_err *err);
void tok_pre_free(tok_vocab *v);
/* A list of byte spans into a text. */
typedef struct tok_spans {
    uint32_t *off, *len;
    size_t n, cap;
} tok_spans;
void tok_spans_free(tok_spans *s);
int tok_spans_push(tok_spans *s, size_t off, size_t len);
/* Split text[0..n) (valid UTF-8) into words with the vocab's regexes, llama.cpp style:
 * every regex refines the previous spans; unmatched gaps are kept as spans. */
int tok_pre_split(const tok_vocab *v, const char *text, size_t n, tok_spans *out, nd_err *err);
/* Copy of text with each invalid UTF-8 byte replaced by U+FFFD; *out == NULL if the text
 * was already valid (use it as is). */
int tok_utf8_sanitize(const char *text, size_t n, char **out, size_t *out_n);

#endif
