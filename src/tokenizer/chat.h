/* Chat templates: turn a list of messages into the prompt text a chat model was trained
 * on. nindub does not run Jinja; it recognises the common template families from the
 * model's `tokenizer.chat_template` text (or, when absent, from the architecture) and
 * formats them natively. The result contains special-token text ("<|im_start|>") and
 * must be tokenized with parse_special = true; BOS is left to the tokenizer's add_bos.
 */
#ifndef ND_CHAT_H
#define ND_CHAT_H

#include <stdbool.h>
#include <stddef.h>

#include "core/nd.h"

typedef enum chat_tmpl {
    CHAT_TMPL_NONE = 0, /* unknown: a plain "role: content" transcript */
    CHAT_TMPL_CHATML,   /* Qwen2/2.5/3, many fine-tunes: <|im_start|>role\n...<|im_end|>\n */
    CHAT_TMPL_LLAMA3,   /* Llama 3.x: <|start_header_id|>role<|end_header_id|>\n\n...<|eot_id|> */
    CHAT_TMPL_PHI3,     /* Phi-3/3.5/4-mini: <|role|>\n...<|end|>\n */
    CHAT_TMPL_LLAMA2,   /* Llama 2 / Mistral: [INST] <<SYS>>...<</SYS>> ... [/INST] */
    CHAT_TMPL_GEMMA,    /* Gemma: <start_of_turn>user\n...<end_of_turn>\n */
    CHAT_TMPL_COUNT
} chat_tmpl;

typedef struct chat_msg {
    const char *role;    /* "system", "user", "assistant" (others are passed through) */
    const char *content; /* NUL-terminated */
} chat_msg;

/* Family of a Jinja template text (NULL or unrecognised -> CHAT_TMPL_NONE). */
chat_tmpl chat_tmpl_detect(const char *jinja);
/* Default for an architecture name ("qwen2", "qwen3" -> ChatML, "phi3" -> Phi-3,
 * "gemma*" -> Gemma, "llama" -> Llama-3 when has_eot_id else Llama-2). */
chat_tmpl chat_tmpl_for_arch(const char *arch, bool has_eot_id);
/* By name ("chatml", "llama3", "phi3", "llama2", "gemma", "none"); -1 if unknown. */
int chat_tmpl_from_name(const char *name);
const char *chat_tmpl_name(chat_tmpl t);

/* Append the formatted conversation to out. add_generation_prompt: end with the opening
 * of an assistant turn so the model answers. Errors: ND_EINVAL (NULL role/content, bad
 * template), ND_ENOMEM. */
int chat_format(chat_tmpl t, const chat_msg *msgs, size_t n, bool add_generation_prompt,
                nd_buf *out, nd_err *err);

#endif
