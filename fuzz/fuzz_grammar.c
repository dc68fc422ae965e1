/* libFuzzer target: GBNF grammars and JSON schemas from arbitrary bytes.
 *
 * Input: byte 0 picks the mode, then the text runs up to the first NUL; what follows the NUL
 * is fed to the matcher.
 *   mode even: the text is a GBNF grammar;
 *   mode odd:  the text is a JSON schema, converted with json_schema_to_gbnf; a schema that
 *              converts must give a grammar that parses (abort otherwise).
 * When a grammar parses, the tail is checked with accepts_bytes, then advanced in chunks of
 * 1..4 bytes on a state and a clone; accepts_bytes and advance must agree. */
#include <stdlib.h>
#include <string.h>

#include "sample/grammar.h"
#include "serve/json_schema.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
    if (size < 1) return 0;
    uint8_t mode = data[0];
    const char *text = (const char *)data + 1;
    size_t n = size - 1;
    const char *nul = memchr(text, 0, n);
    size_t tlen = nul ? (size_t)(nul - text) : n;
    const char *tail = nul ? nul + 1 : text + n;
    size_t tail_n = nul ? n - tlen - 1 : 0;
    nd_err err = {0};
    grammar *g = NULL;
    if (mode & 1) {
        nd_buf b = {0};
        if (json_schema_to_gbnf(text, tlen, &b, &err) == 0) {
            g = grammar_parse(b.data, b.len, NULL, &err);
            if (!g && err.code != ND_ERANGE) abort(); /* the converter made a bad grammar */
        }
        nd_buf_free(&b);
    } else {
        g = grammar_parse(text, tlen, NULL, &err);
    }
    if (!g) return 0;
    grammar_state *st = grammar_state_new(g, &err);
    if (st) {
        bool all = grammar_state_accepts_bytes(st, tail, tail_n);
        grammar_state *cl = grammar_state_clone(st, &err);
        size_t i = 0;
        bool ok = true;
        while (i < tail_n && ok) {
            size_t k = 1 + (size_t)(tail[i] & 3);
            if (k > tail_n - i) k = tail_n - i;
            ok = grammar_state_advance(st, tail + i, k, &err) == 0;
            if (cl && ok) ok = grammar_state_advance(cl, tail + i, k, &err) == 0;
            i += k;
        }
        if (ok && !all && err.code != ND_ERANGE) abort(); /* chunked advance accepted more */
        (void)grammar_state_done(st);
        grammar_state_free(cl);
    }
    grammar_state_free(st);
    grammar_free(g);
    return 0;
}
