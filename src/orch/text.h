/* orch text: the word/identifier tokenizer and string dictionary shared by the router
 * (TF-IDF over examples) and the pruner (BM25 over context chunks). */
#ifndef ND_ORCH_TEXT_H
#define ND_ORCH_TEXT_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "core/nd.h"

/* Tokens are maximal runs of [A-Za-z0-9_] and non-ASCII bytes, lower-cased, at least 2 bytes
 * and at most 64. An identifier with parts also yields its parts: "parseHttpHeader" gives
 * parsehttpheader, parse, http, header; "MAX_BUF_LEN" gives max_buf_len, max, buf, len.
 * With ORCH_TOK_STOP, English stop words are dropped; with ORCH_TOK_STEM, a light suffix
 * strip (ing, ed, es, s, ly) is applied to words of 5+ bytes. */
enum { ORCH_TOK_STOP = 1, ORCH_TOK_STEM = 2 };
typedef int (*orch_tok_fn)(void *user, const char *tok, size_t len);
/* Calls fn per token; stops and returns fn's value when it is non-zero. */
int orch_tokenize(const char *text, size_t n, unsigned flags, orch_tok_fn fn, void *user);

/* A string -> dense id dictionary (open addressing). */
typedef struct orch_dict {
    char **keys;     /* by id */
    uint32_t *slots; /* id + 1, 0 = empty */
    size_t n, cap;   /* ids used, slot count (power of two) */
} orch_dict;
/* Id of s, adding it when add (returns -1 when absent and !add, ND_ENOMEM on failure). */
int64_t orch_dict_id(orch_dict *d, const char *s, size_t n, bool add);
void orch_dict_free(orch_dict *d);

/* A bag of token ids with counts, sorted by id. */
typedef struct orch_bag {
    uint32_t *id;
    uint32_t *cnt;
    size_t n, cap;
    size_t total; /* tokens counted */
} orch_bag;
/* Tokenizes text into b (cleared first), adding unknown tokens to d when add, else skipping them. */
int orch_bag_build(orch_bag *b, orch_dict *d, bool add, const char *text, size_t n, unsigned flags);
void orch_bag_free(orch_bag *b);
uint32_t orch_bag_count(const orch_bag *b, uint32_t id);

#endif
