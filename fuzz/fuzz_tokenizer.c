/* libFuzzer target: tokenize arbitrary bytes with a real vocabulary, check that ids are in
 * range, that decode works, and that valid UTF-8 round-trips. The first input byte picks
 * the vocab (gpt-2 BPE, llama SPM, deepseek-coder BPE) and the parse_special flag.
 * Vocabularies are loaded once from $NINDUB_FIXTURES (default ../shared/fixtures); a static
 * cache is acceptable in a fuzz harness (never in the library). */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "gguf/gguf.h"
#include "tokenizer/tok.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

enum { N_VOCABS = 3 };
static tok_vocab *g_vocab[N_VOCABS];
static int g_loaded;

static void load_all(void) {
    static const char *const names[N_VOCABS] = {"ggml-vocab-gpt-2.gguf", "ggml-vocab-llama-spm.gguf",
                                                "ggml-vocab-deepseek-coder.gguf"};
    const char *fx = getenv("NINDUB_FIXTURES");
    if (!fx || !*fx) fx = "../shared/fixtures";
    for (int i = 0; i < N_VOCABS; i++) {
        char path[1024];
        snprintf(path, sizeof path, "%.900s/vocab/%s", fx, names[i]);
        nd_err err = {0};
        gguf_ctx *g = gguf_open(path, &err);
        if (!g) continue;
        g_vocab[i] = tok_load(g, &err);
        gguf_close(g);
    }
    g_loaded = 1;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
    if (!g_loaded) load_all();
    if (size < 1) return 0;
    const tok_vocab *v = g_vocab[data[0] % N_VOCABS];
    if (!v) v = g_vocab[0] ? g_vocab[0] : g_vocab[1];
    if (!v) return 0;
    bool parse_special = data[0] & 0x10, add_special = data[0] & 0x20;
    const char *text = (const char *)data + 1;
    size_t n = size - 1;
    int32_t *ids;
    size_t k;
    nd_err err = {0};
    if (tok_encode(v, text, n, add_special, parse_special, &ids, &k, &err) != 0) abort();
    for (size_t i = 0; i < k; i++)
        if (ids[i] < 0 || ids[i] >= tok_n_vocab(v)) abort();
    char *out;
    size_t on;
    unsigned dflags = (add_special ? TOK_DECODE_REMOVE_SPECIAL : 0) | (parse_special ? TOK_DECODE_UNPARSE_SPECIAL : 0);
    if (tok_decode(v, ids, k, dflags,
                   &out, &on, &err) != 0)
        abort();
    /* round trip for plain valid UTF-8 text (special-token text, SPM's invalid bytes before
     * spaces and a literal U+2581 in SPM input are the documented exceptions) */
    bool has_special_text = false;
    for (size_t i = 0; i < k; i++) has_special_text |= tok_is_control(v, ids[i]) && !(i == 0 && add_special);
    bool spm_escape = tok_get_kind(v) == TOK_KIND_SPM && memmem(text, n, "\xe2\x96\x81", 3);
    if (!parse_special && !has_special_text && !spm_escape && nd_utf8_valid(text, n)) {
        if (on != n || memcmp(out, text, n) != 0) abort();
    }
    /* the streaming decoder agrees with the whole-sequence decoder */
    tok_stream st;
    tok_stream_init(&st, v, parse_special ? TOK_DECODE_UNPARSE_SPECIAL : 0);
    nd_buf sb = {0};
    size_t start = add_special && tok_add_bos(v) && k > 0 && ids[0] == tok_bos(v) ? 1 : 0;
    size_t end = add_special && tok_add_eos(v) && k > start && ids[k - 1] == tok_eos(v) ? k - 1 : k;
    for (size_t i = start; i < end; i++)
        if (tok_stream_push(&st, ids[i], &sb, &err)) abort();
    if (tok_stream_flush(&st, &sb, &err)) abort();
    if (sb.len != on || (on && memcmp(sb.data, out, on) != 0)) abort();
    nd_buf_free(&sb);
    nd_free(out);
    nd_free(ids);
    return 0;
}
