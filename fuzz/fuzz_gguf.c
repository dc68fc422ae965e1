/* libFuzzer target: the GGUF reader on arbitrary bytes. Any accepted file is walked the
 * way the loader walks it (metadata lookups, every tensor byte), so an out-of-bounds
 * view is caught by ASan. */
#include <stdint.h>
#include <string.h>

#include "gguf/gguf.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
    nd_err err = {0};
    gguf_ctx *g = gguf_open_mem(data, size, &err);
    if (!g) {
        if (!err.msg[0]) __builtin_trap(); /* every failure must explain itself */
        return 0;
    }
    uint32_t u;
    gguf_str s;
    const gguf_array *a;
    gguf_get_arch_u32(g, "block_count", &u, NULL);
    gguf_get_str(g, "tokenizer.ggml.model", &s, NULL);
    if (!gguf_get_arr(g, "tokenizer.ggml.tokens", GGUF_VT_STRING, &a, NULL))
        for (uint64_t i = 0; i < a->n; i++) (void)nd_utf8_valid(a->strs[i].ptr, a->strs[i].len);
    if (!gguf_get_arr(g, "tokenizer.ggml.scores", GGUF_VT_COUNT, &a, NULL) && a->data)
        for (uint64_t i = 0; i < a->n; i++) (void)gguf_arr_f64(a, i);
    volatile uint8_t x = 0;
    for (uint64_t t = 0; t < g->n_tensors; t++)
        for (uint64_t i = 0; i < g->tensors[t].nbytes; i += 61) x ^= g->tensors[t].data[i];
    (void)x;
    /* writing back what we read must give a file we can read again */
    gguf_writer *w = gguf_writer_new();
    if (w) {
        for (uint64_t k = 0; k < g->n_kv; k++) gguf_writer_set_value(w, g->kv[k].key, &g->kv[k].val);
        for (uint64_t t = 0; t < g->n_tensors; t++) {
            const gguf_tensor *tk = &g->tensors[t];
            gguf_writer_add_tensor(w, tk->name, tk->type, tk->n_dims, tk->ne, tk->data, NULL);
        }
        uint8_t *out = NULL;
        size_t len = 0;
        if (!gguf_writer_write_mem(w, NULL, NULL, &out, &len, NULL)) {
            gguf_ctx *g2 = gguf_open_mem(out, len, &err);
            if (!g2 || g2->n_tensors != g->n_tensors || g2->n_kv != g->n_kv) __builtin_trap();
            gguf_close(g2);
        }
        nd_free(out);
        gguf_writer_free(w);
    }
    gguf_close(g);
    return 0;
}
