/* convert-tokenizer: Hugging Face tokenizer.json (+ tokenizer_config.json) -> GGUF tokenizer
 * metadata with llama.cpp's keys (tokenizer.ggml.*, tokenizer.chat_template).
 *
 * Supported: BPE models, either byte-level (GPT-2 style: Qwen2/Qwen3, Llama 3, GPT-2 ...,
 * written as tokenizer.ggml.model "gpt2" with merges) or SentencePiece-style with
 * byte_fallback (Llama 2, Mistral ..., written as "llama" with scores derived from the merge
 * ranks). Anything else (Unigram, WordPiece, BPE with a subword prefix/suffix) is refused with
 * ND_EUNSUPPORTED.
 *
 * This lives in tools/ rather than tokenizer/ because it parses JSON (cJSON), and the numeric
 * core links no JSON library (DESIGN.md §2). tests/test_convert_tokenizer.c reaches it by
 * including convert_tokenizer.c (tests link cJSON).
 */
#ifndef ND_TOOLS_CONVERT_TOKENIZER_H
#define ND_TOOLS_CONVERT_TOKENIZER_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "core/nd.h"
#include "gguf/gguf.h"

/* Ids above this are refused (a hostile file could otherwise make us allocate id-sized
 * tables); real vocabularies are below 300k. */
#define CONVTOK_MAX_ID (1u << 24)

typedef struct convtok_opts {
    const char *pre;     /* tokenizer.ggml.pre; NULL = detect from the pre-tokenizer regex */
    const char *arch;    /* general.architecture; NULL = "llama" */
    uint32_t vocab_size; /* pad the token list to this many ids ("[PAD<id>]"); 0 = max id + 1 */
} convtok_opts;

/* What was converted (for the tool's summary line). */
typedef struct convtok_info {
    char model[8];     /* "gpt2" or "llama" */
    char pre[64];      /* tokenizer.ggml.pre written */
    bool pre_detected; /* pre came from the regex table, not from opts */
    uint32_t n_tokens, n_merges, n_added, n_pad;
    int32_t bos, eos, unk, pad; /* -1 when not set */
    bool has_chat_template;
} convtok_info;

/* Parse tokenizer.json text `tj` (tj_len bytes) and optional tokenizer_config.json text `cfg`
 * (NULL = none) and set every tokenizer key plus general.architecture on `w`. On failure
 * returns a negative ND_E* code with a message naming the offending field; keys already set
 * on `w` are then meaningless (the caller frees the writer). `info` may be NULL. */
int convtok_to_writer(const char *tj, size_t tj_len, const char *cfg, size_t cfg_len,
                      const convtok_opts *opts, gguf_writer *w, convtok_info *info, nd_err *err);

/* Read the files, convert, and write a vocabulary-only GGUF at out_path atomically.
 * cfg_path may be NULL. */
int convtok_convert_files(const char *tj_path, const char *cfg_path, const char *out_path,
                          const convtok_opts *opts, convtok_info *info, nd_err *err);

#endif
