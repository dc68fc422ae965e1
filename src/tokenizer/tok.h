/* nindub tokenizer: SentencePiece-style ("llama") and byte-level BPE ("gpt2") vocabularies
 * loaded from GGUF metadata, with llama.cpp-compatible encoding and decoding.
 *
 * Contracts
 *  - tok_load copies everything it needs out of the GGUF context: the vocab does not
 *    reference `g` after it returns (close the file whenever you like).
 *  - A loaded vocab is immutable. Every function taking `const tok_vocab *` is safe to call
 *    concurrently from several threads on the same vocab (all scratch state is per call).
 *  - Functions that can fail return 0 or a negative ND_E* code and write a message into
 *    `err` (may be NULL). They never leave half-built objects behind.
 *  - Token ids are int32_t; TOK_NULL (-1) means "no such token".
 *
 * Compatibility notes (where we follow llama.cpp and where we differ)
 *  - Encoding matches llama.cpp (test-tokenizer-0 goldens): special-token partition
 *    (longest token text first), SPM score-driven bigram merges with <0xNN> byte fallback,
 *    BPE rank merges after the per-model regex pre-tokenizer (PCRE2, UTF + UCP).
 *  - Byte-level BPE replaces each invalid UTF-8 byte of the input by U+FFFD before
 *    pre-tokenizing (as llama.cpp does); SPM encodes invalid bytes as byte tokens, so the
 *    SPM round trip is exact for any byte string except an incomplete UTF-8 sequence right
 *    before a space (like llama.cpp, the space is escaped to U+2581 first and the broken
 *    sequence swallows part of it).
 *  - Unknown tokenizer.ggml.pre values fall back to the "default" regex set (llama.cpp
 *    refuses them); tok_pre_name() tells which set was chosen.
 *  - Decoding with add_space_prefix strips the space SPM inserted before the first text
 *    piece, also when the sequence starts with BOS (llama.cpp keeps it when it removes the
 *    BOS), so decode(encode(x)) == x for plain text with or without BOS.
 */
#ifndef ND_TOK_H
#define ND_TOK_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "core/nd.h"
#include "gguf/gguf.h"

#define TOK_NULL (-1)

typedef struct tok_vocab tok_vocab;

typedef enum tok_kind {
    TOK_KIND_SPM = 1, /* tokenizer.ggml.model = "llama" */
    TOK_KIND_BPE = 2, /* tokenizer.ggml.model = "gpt2"  */
} tok_kind;

/* GGUF token types (tokenizer.ggml.token_type values). */
typedef enum tok_type {
    TOK_TYPE_UNDEFINED = 0,
    TOK_TYPE_NORMAL = 1,
    TOK_TYPE_UNKNOWN = 2,
    TOK_TYPE_CONTROL = 3,
    TOK_TYPE_USER_DEFINED = 4,
    TOK_TYPE_UNUSED = 5,
    TOK_TYPE_BYTE = 6,
} tok_type;

/* Load the vocabulary described by the tokenizer.ggml.* keys of g.
 * Errors: ND_ENOTFOUND (no tokenizer.ggml.model / tokens), ND_EUNSUPPORTED (model other
 * than "llama"/"gpt2"), ND_EFORMAT / ND_ETYPE / ND_ERANGE for malformed metadata (array
 * length mismatches, bad token types, merges without a separator, special ids out of
 * range...), ND_ENOMEM. Returns NULL on failure. Free with tok_free. */
tok_vocab *tok_load(const gguf_ctx *g, nd_err *err);
void tok_free(tok_vocab *v); /* NULL is fine */

/* ------------------------------------------------------------------ accessors */
tok_kind tok_get_kind(const tok_vocab *v);
int32_t tok_n_vocab(const tok_vocab *v);
const char *tok_pre_name(const tok_vocab *v); /* regex set in use ("gpt-2", "llama3", ...; "" for SPM) */
int32_t tok_bos(const tok_vocab *v);          /* TOK_NULL if none */
int32_t tok_eos(const tok_vocab *v);
int32_t tok_eot(const tok_vocab *v);
int32_t tok_eom(const tok_vocab *v);
int32_t tok_unk(const tok_vocab *v);
int32_t tok_sep(const tok_vocab *v);
int32_t tok_pad(const tok_vocab *v);
int32_t tok_nl(const tok_vocab *v); /* newline token, TOK_NULL if none */
bool tok_add_bos(const tok_vocab *v);
bool tok_add_eos(const tok_vocab *v);
bool tok_add_space_prefix(const tok_vocab *v);
/* End of generation: eos, eot, eom and tokens whose text marks end of turn
 * ("<|eot_id|>", "<|im_end|>", "<|end|>", "<end_of_turn>", "<|endoftext|>", ...).
 * False for ids out of range. */
bool tok_is_eog(const tok_vocab *v, int32_t id);
bool tok_is_control(const tok_vocab *v, int32_t id); /* control or unknown type */
/* Raw token text as stored in the file (NUL-terminated, owned by the vocab); NULL if the
 * id is out of range. *len (optional) gets its byte length. */
const char *tok_text(const tok_vocab *v, int32_t id, size_t *len);
tok_type tok_get_type(const tok_vocab *v, int32_t id); /* TOK_TYPE_UNDEFINED if out of range */
float tok_score(const tok_vocab *v, int32_t id);
/* Token id whose text is exactly (s, n), or TOK_NULL. */
int32_t tok_find(const tok_vocab *v, const char *s, size_t n);

/* ------------------------------------------------------------------ encoding */

/* Tokenize text[0..len) (any bytes; NUL allowed). add_special: prepend BOS / append EOS
 * as the file's add_bos_token / add_eos_token flags say. parse_special: text equal to a
 * control token's text becomes that token (user-defined tokens are always matched).
 * On success *ids is a new array (caller frees with nd_free; may be NULL when *n == 0).
 * Errors: ND_EINVAL (NULL arguments), ND_ENOMEM, ND_EFORMAT (the vocab has no byte token
 * and no unk token for a character it cannot represent). */
int tok_encode(const tok_vocab *v, const char *text, size_t len, bool add_special,
               bool parse_special, int32_t **ids, size_t *n, nd_err *err);

/* ------------------------------------------------------------------ decoding */

/* Bytes of one token's piece: byte tokens <0xNN> give the raw byte, SPM "▁" becomes a
 * space, byte-level BPE text goes through the reversed GPT-2 byte<->unicode map.
 * Control/unknown tokens give "" unless `special` (then their text).
 * Copies min(piece, cap) bytes into buf (NUL-terminated if there is room) and returns the
 * full piece length, like snprintf; ND_ERANGE for an id out of range. */
int tok_piece(const tok_vocab *v, int32_t id, bool special, char *buf, size_t cap);
/* Same, as a view owned by the vocab (never NULL for a valid id). Returns ND_ERANGE. */
int tok_piece_view(const tok_vocab *v, int32_t id, bool special, const char **s, size_t *len);

enum {
    TOK_DECODE_REMOVE_SPECIAL = 1u << 0,  /* drop a leading BOS / trailing EOS the vocab adds */
    TOK_DECODE_UNPARSE_SPECIAL = 1u << 1, /* render control tokens as their text */
    TOK_DECODE_CLEAN_SPACES = 1u << 2,    /* " ." -> "." etc., only if the vocab asks for it */
};

/* Detokenize a whole sequence into a new NUL-terminated string (caller nd_frees *out).
 * With add_space_prefix (SPM) the space inserted before the first text piece is removed.
 * Errors: ND_ERANGE (an id out of range: message names its position), ND_ENOMEM. */
int tok_decode(const tok_vocab *v, const int32_t *ids, size_t n, unsigned flags, char **out,
               size_t *len, nd_err *err);

/* Streaming detokenizer for generation: feed ids one by one and get text that never
 * ends inside a UTF-8 sequence (an incomplete trailing sequence is held back until the
 * next token completes it). Invalid bytes are passed through as they are. */
typedef struct tok_stream {
    const tok_vocab *v;
    unsigned flags;   /* TOK_DECODE_UNPARSE_SPECIAL honoured */
    bool at_start;    /* SPM leading-space removal still pending */
    uint8_t held[4];  /* incomplete UTF-8 tail */
    size_t n_held;
} tok_stream;
void tok_stream_init(tok_stream *s, const tok_vocab *v, unsigned flags);
/* Appends the newly completed text to out. Errors: ND_ERANGE (bad id), ND_ENOMEM. */
int tok_stream_push(tok_stream *s, int32_t id, nd_buf *out, nd_err *err);
/* Appends whatever is still held (an unfinished sequence, as raw bytes). */
int tok_stream_flush(tok_stream *s, nd_buf *out, nd_err *err);

#endif
