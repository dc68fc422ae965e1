/* The preset table and the tensor list of each architecture (see presets.h). */
#include <stdio.h>
#include <string.h>

#include "core/nd.h"
#include "tools/presets.h"

static const preset presets[] = {
    /* name            arch     dim  lay hd kv hdim  ffn   vocab  ctx     rope   eps  rdim tied bias qkn */
    {"tiny",           "llama",   64,  2, 4, 2,  16,  192,     0,   256, 10000, 1e-5f, 0, true, false, false, 0, 0},
    {"qwen2.5-0.5b",   "qwen2",  896, 24, 14, 2,  64, 4864, 151936, 32768, 1e6f, 1e-6f, 0, true, true, false, 0, 0},
    {"qwen2.5-1.5b",   "qwen2", 1536, 28, 12, 2, 128, 8960, 151936, 32768, 1e6f, 1e-6f, 0, true, true, false, 0, 0},
    {"qwen2.5-coder-7b","qwen2",3584, 28, 28, 4, 128, 18944, 152064, 32768, 1e6f, 1e-6f, 0, false, true, false, 0, 0},
    {"qwen3-0.6b",     "qwen3", 1024, 28, 16, 8, 128, 3072, 151936, 40960, 1e6f, 1e-6f, 0, true, false, true, 0, 0},
    {"qwen3-4b",       "qwen3", 2560, 36, 32, 8, 128, 9728, 151936, 40960, 1e6f, 1e-6f, 0, true, false, true, 0, 0},
    {"llama-3.2-1b",   "llama", 2048, 16, 32, 8,  64, 8192, 128256, 131072, 500000, 1e-5f, 0, true, false, false, 32, 8192},
    {"llama-3.1-8b",   "llama", 4096, 32, 32, 8, 128, 14336, 128256, 131072, 500000, 1e-5f, 0, false, false, false, 8, 8192},
    {"phi-3.5-mini",   "phi3",  3072, 32, 32, 32, 96, 8192, 32064, 131072, 10000, 1e-5f, 96, false, false, false, 0, 0},
};
#define N_PRESETS (sizeof presets / sizeof presets[0])

const preset *preset_find(const char *name) {
    for (size_t i = 0; name && i < N_PRESETS; i++)
        if (!strcmp(presets[i].name, name)) return &presets[i];
    return NULL;
}

void preset_print_names(FILE *f) {
    for (size_t i = 0; i < N_PRESETS; i++) fprintf(f, " %s", presets[i].name);
}

uint32_t preset_tensor_type(uint32_t want, uint64_t ne0, uint64_t ne1) {
    const nd_type_traits *t = nd_type_info(want);
    if (!ne1 || !t) return ND_TYPE_F32;
    if (ne0 % t->blck == 0) return want;
    return ne0 % 32 == 0 ? ND_TYPE_Q8_0 : ND_TYPE_F16;
}

void preset_tensors(const preset *p, uint32_t n_layers, uint32_t n_vocab, preset_tensor_fn fn, void *user) {
    uint32_t q_dim = p->heads * p->head_dim, kv_dim = p->kv_heads * p->head_dim;
    uint32_t rot = p->rope_dims ? p->rope_dims : p->head_dim;
    bool phi = !strcmp(p->arch, "phi3");
    fn(user, "token_embd.weight", p->dim, n_vocab, PRESET_MATRIX);
    fn(user, "output_norm.weight", p->dim, 0, PRESET_NORM);
    if (!p->tied) fn(user, "output.weight", p->dim, n_vocab, PRESET_MATRIX);
    if (p->llama3_factor > 0) fn(user, "rope_freqs.weight", p->head_dim / 2, 0, PRESET_ROPE);
    if (phi) {
        fn(user, "rope_factors_long.weight", rot / 2, 0, PRESET_ROPE);
        fn(user, "rope_factors_short.weight", rot / 2, 0, PRESET_ROPE);
    }
    char nm[96];
#define BLK(suffix) (snprintf(nm, sizeof nm, "blk.%u." suffix, l), nm)
    for (uint32_t l = 0; l < n_layers; l++) {
        fn(user, BLK("attn_norm.weight"), p->dim, 0, PRESET_NORM);
        fn(user, BLK("ffn_norm.weight"), p->dim, 0, PRESET_NORM);
        if (phi) {
            fn(user, BLK("attn_qkv.weight"), p->dim, q_dim + 2 * kv_dim, PRESET_MATRIX);
            fn(user, BLK("ffn_up.weight"), p->dim, 2 * p->ffn, PRESET_MATRIX);
        } else {
            fn(user, BLK("attn_q.weight"), p->dim, q_dim, PRESET_MATRIX);
            fn(user, BLK("attn_k.weight"), p->dim, kv_dim, PRESET_MATRIX);
            fn(user, BLK("attn_v.weight"), p->dim, kv_dim, PRESET_MATRIX);
            fn(user, BLK("ffn_gate.weight"), p->dim, p->ffn, PRESET_MATRIX);
            fn(user, BLK("ffn_up.weight"), p->dim, p->ffn, PRESET_MATRIX);
        }
        if (p->qkv_bias) {
            fn(user, BLK("attn_q.bias"), q_dim, 0, PRESET_BIAS);
            fn(user, BLK("attn_k.bias"), kv_dim, 0, PRESET_BIAS);
            fn(user, BLK("attn_v.bias"), kv_dim, 0, PRESET_BIAS);
        }
        if (p->qk_norm) {
            fn(user, BLK("attn_q_norm.weight"), p->head_dim, 0, PRESET_NORM);
            fn(user, BLK("attn_k_norm.weight"), p->head_dim, 0, PRESET_NORM);
        }
        fn(user, BLK("attn_output.weight"), q_dim, p->dim, PRESET_MATRIX);
        fn(user, BLK("ffn_down.weight"), p->ffn, p->dim, PRESET_MATRIX);
    }
#undef BLK
}
