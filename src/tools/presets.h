/* Model shapes of real models (random-weight presets): one table shared by `nindub synth`
 * (which writes them) and `nindub plan` (which sizes them without a file). */
#ifndef ND_PRESETS_H
#define ND_PRESETS_H

#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>

typedef struct preset {
    const char *name, *arch;
    uint32_t dim, layers, heads, kv_heads, head_dim, ffn, vocab, ctx;
    float rope_base, eps;
    uint32_t rope_dims;   /* 0 = head_dim */
    bool tied, qkv_bias, qk_norm;
    float llama3_factor;  /* > 0: Llama-3.1 rope scaling (rope_freqs tensor) */
    uint32_t llama3_orig_ctx;
} preset;

/* What a tensor holds, for generators. */
typedef enum preset_kind {
    PRESET_MATRIX = 0, /* random weights */
    PRESET_NORM = 1,   /* ones */
    PRESET_BIAS = 2,   /* small values */
    PRESET_ROPE = 3,   /* rope frequency factors */
} preset_kind;

const preset *preset_find(const char *name);
void preset_print_names(FILE *f); /* " name name ..." */

/* Calls fn for every tensor of the preset with n_layers layers and n_vocab tokens, in file
 * order: name, row length ne0, rows ne1 (0 for 1-D tensors), kind. */
typedef void (*preset_tensor_fn)(void *user, const char *name, uint64_t ne0, uint64_t ne1,
                                 preset_kind kind);
void preset_tensors(const preset *p, uint32_t n_layers, uint32_t n_vocab, preset_tensor_fn fn,
                    void *user);

/* Storage type of a tensor when `want` is asked for: 1-D tensors stay F32; rows that are
 * not a multiple of want's block fall back to Q8_0 (rows of 32k) or F16. */
uint32_t preset_tensor_type(uint32_t want, uint64_t ne0, uint64_t ne1);

#endif
