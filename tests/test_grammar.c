/* GBNF parser and matcher, token filtering and constrained sampling. */
#include <stdio.h>
#include <string.h>

#include "gguf/gguf.h"
#include "sample/grammar.h"
#include "t.h"

/* ------------------------------------------------------------- helpers */

static grammar *parse(const char *text) {
    nd_err err = {0};
    grammar *g = grammar_parse(text, strlen(text), NULL, &err);
    if (!g) fprintf(stderr, "  parse failed: %s\n", err.msg);
    return g;
}

/* The whole string is in the language. */
static bool matches(const grammar *g, const char *s) {
    grammar_state *st = grammar_state_new(g, NULL);
    if (!st) return false;
    bool ok = grammar_state_advance(st, s, strlen(s), NULL) == 0 && grammar_state_done(st);
    grammar_state_free(st);
    return ok;
}

/* The string is a prefix of some sentence. */
static bool prefix_ok(const grammar *g, const char *s) {
    grammar_state *st = grammar_state_new(g, NULL);
    if (!st) return false;
    bool ok = grammar_state_accepts_bytes(st, s, strlen(s));
    grammar_state_free(st);
    return ok;
}

/* Same as matches(), feeding one byte at a time (exercises partial UTF-8). */
static bool matches_bytewise(const grammar *g, const char *s) {
    grammar_state *st = grammar_state_new(g, NULL);
    if (!st) return false;
    bool ok = true;
    for (size_t i = 0; s[i] && ok; i++) ok = grammar_state_advance(st, s + i, 1, NULL) == 0;
    ok = ok && grammar_state_done(st);
    grammar_state_free(st);
    return ok;
}

typedef struct gcase {
    const char *grammar;
    const char *yes[12];
    const char *no[12];
} gcase;

static void run_cases(const gcase *cases, size_t n) {
    for (size_t c = 0; c < n; c++) {
        grammar *g = parse(cases[c].grammar);
        T_CHECKF(g != NULL, "grammar %zu does not parse", c);
        if (!g) continue;
        for (int k = 0; k < 12 && cases[c].yes[k]; k++) {
            T_CHECKF(matches(g, cases[c].yes[k]), "grammar %zu should match \"%s\"", c, cases[c].yes[k]);
            T_CHECKF(matches_bytewise(g, cases[c].yes[k]), "grammar %zu bytewise \"%s\"", c,
                     cases[c].yes[k]);
            T_CHECKF(prefix_ok(g, cases[c].yes[k]), "grammar %zu prefix \"%s\"", c, cases[c].yes[k]);
        }
        for (int k = 0; k < 12 && cases[c].no[k]; k++)
            T_CHECKF(!matches(g, cases[c].no[k]), "grammar %zu should reject \"%s\"", c, cases[c].no[k]);
        grammar_free(g);
    }
}

/* ------------------------------------------------------------- parser */

static void test_parse_errors(void) {
    static const struct { const char *text, *want; int code; } cases[] = {
        {"", "line 1:1: empty grammar", ND_EFORMAT},
        {"  # only a comment\n\n", "line 3:1: empty grammar", ND_EFORMAT},
        {"root ::= foo", "line 1:10: undefined rule 'foo'", ND_EFORMAT},
        {"root ::= \"a\"\nb ::= (\"x\" | \"y\"", "line 2:7: unbalanced parentheses", ND_EFORMAT},
        {"root ::= \"a\")", "line 1:13: unexpected ')'", ND_EFORMAT},
        {"root ::= \"a\\q\"", "line 1:12: bad escape", ND_EFORMAT},
        {"root ::= \"\\x4\"", "line 1:11: bad escape", ND_EFORMAT},
        {"root ::= \"\\uD800\"", "not a Unicode scalar", ND_EFORMAT},
        {"root ::= \"a\"{3,1}", "line 1:13: bad repetition bounds {3,1}", ND_EFORMAT},
        {"root ::= \"a\"{x}", "bad repetition bounds", ND_EFORMAT},
        {"root ::= \"a\"{2", "expected '}'", ND_EFORMAT},
        {"root ::= \"a\"{99999}", "too large", ND_EFORMAT},
        {"root ::= * \"a\"", "line 1:10: repetition '*' with nothing", ND_EFORMAT},
        {"foo ::= \"a\"", "no rule named 'root'", ND_EFORMAT},
        {"root ::= \"a\" ]", "line 1:14: unexpected ']'", ND_EFORMAT},
        {"root ::= \"abc", "line 1:10: unterminated string", ND_EFORMAT},
        {"root ::= [a-", "line 1:10: unterminated character class", ND_EFORMAT},
        {"root ::= [z-a]", "reversed character range", ND_EFORMAT},
        {"root \"a\"", "line 1:6: expected '::='", ND_EFORMAT},
        {"root ::= \"a\"\nroot ::= \"b\"", "line 2:1: rule 'root' defined twice (first at line 1:1)",
         ND_EFORMAT},
        {"root ::= expr\nexpr ::= expr \"+\" term | term\nterm ::= [0-9]",
         "line 2:1: left recursion: rule 'expr'", ND_EFORMAT},
        {"root ::= a\na ::= b \"x\"\nb ::= \"\" | a \"y\"", "left recursion", ND_EFORMAT},
        {"root ::= \"x\" \xff", "line 1:14: unexpected byte 0xff", ND_EFORMAT},
        {"root ::= [\xc3]", "invalid UTF-8", ND_EFORMAT},
        {"\n\nroot ::= (((\"a\")\n", "line 3:11: unbalanced", ND_EFORMAT},
        {"root ::= \"a\" |\n", NULL, 0}, /* empty alternative is fine */
    };
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        nd_err err = {0};
        grammar *g = grammar_parse(cases[i].text, strlen(cases[i].text), NULL, &err);
        if (!cases[i].want) {
            T_CHECKF(g != NULL, "case %zu should parse: %s", i, err.msg);
        } else {
            T_CHECKF(g == NULL, "case %zu should fail", i);
            T_CHECKF(err.code == cases[i].code, "case %zu code %d", i, err.code);
            T_CHECKF(strstr(err.msg, cases[i].want) != NULL, "case %zu: \"%s\" lacks \"%s\"", i,
                     err.msg, cases[i].want);
        }
        grammar_free(g);
    }
    /* embedded NUL */
    nd_err err = {0};
    grammar *g = grammar_parse("root ::= \"a\0\"", 13, NULL, &err);
    T_CHECK(g == NULL && strstr(err.msg, "NUL"));
    /* other start rule */
    g = grammar_parse("start ::= \"s\"", 13, "start", &err);
    T_CHECK(g != NULL && matches(g, "s"));
    grammar_free(g);
}

static void test_parse_limits(void) {
    nd_err err = {0};
    nd_buf big = {0};
    nd_buf_printf(&big, "root ::=");
    for (int i = 0; i < 120; i++) nd_buf_printf(&big, " \"a\"{0,10000}");
    grammar *g = grammar_parse(big.data, big.len, NULL, &err);
    T_CHECKF(g == NULL && err.code == ND_ERANGE, "%s", err.msg);
    nd_buf_free(&big);
    char deep[2000];
    size_t n = (size_t)snprintf(deep, sizeof deep, "root ::= ");
    for (int i = 0; i < 300; i++) deep[n++] = '(';
    deep[n] = 0;
    g = grammar_parse(deep, n, NULL, &err);
    T_CHECK(g == NULL && strstr(err.msg, "nested deeper"));
}

/* ------------------------------------------------------------- matching */

static const char k_arith[] =
    "# arithmetic\n"
    "root  ::= expr\n"
    "expr  ::= term ((\"+\" | \"-\") term)*\n"
    "term  ::= factor ((\"*\" | \"/\") factor)*\n"
    "factor ::= num | \"(\" expr \")\" | \"-\" factor\n"
    "num   ::= [0-9]+ (\".\" [0-9]+)?\n";

static const char k_json[] =
    "root   ::= object\n"
    "value  ::= object | array | string | number | (\"true\" | \"false\" | \"null\") ws\n"
    "object ::=\n"
    "  \"{\" ws (\n"
    "            string \":\" ws value\n"
    "    (\",\" ws string \":\" ws value)*\n"
    "  )? \"}\" ws\n"
    "array  ::=\n"
    "  \"[\" ws (\n"
    "            value\n"
    "    (\",\" ws value)*\n"
    "  )? \"]\" ws\n"
    "string ::=\n"
    "  \"\\\"\" (\n"
    "    [^\"\\\\\\x7F\\x00-\\x1F] |\n"
    "    \"\\\\\" ([\"\\\\/bfnrt] | \"u\" [0-9a-fA-F]{4}) # escapes\n"
    "  )* \"\\\"\" ws\n"
    "number ::= (\"-\"? ([0-9] | [1-9] [0-9]{0,15})) (\".\" [0-9]+)? ([eE] [-+]? [0-9] [1-9]{0,15})? ws\n"
    "ws ::= | \" \" | \"\\n\" [ \\t]{0,20}\n";

static void test_match_basic(void) {
    static const gcase cases[] = {
        {k_arith, {"1", "1+2", "(1+2)*3", "-4/2.5", "((7))", "1.25*-3"},
         {"", "+", "1+", "(1", "1..2", "a", "1 + 2"}},
        {k_json,
         {"{}", "{\"a\": 1}", "{\"a\":[1, 2.5e3, -0, true, null], \"b\": {\"c\": \"x\\n\\u00e9\"}}",
          "{\"k\": \"caf\xc3\xa9 \xe2\x82\xac \xf0\x9f\x98\x80\"}", "{ }"},
         {"{", "{\"a\"}", "{\"a\": 01}", "[1]", "{\"a\": tru}", "{\"a\":\"\x01\"}", "{} x"}},
        {"root ::= \"ab\"{2,3} \"c\"?", {"abab", "ababab", "ababc", "abababc"},
         {"ab", "abababab", "abc", "ababcc"}},
        {"root ::= [a-c]{3}", {"abc", "aaa", "cba"}, {"ab", "abcd", "abd"}},
        {"root ::= \"x\"{2,}", {"xx", "xxxxxxxx"}, {"x", ""}},
        {"root ::= \"x\"{,2} \"y\"", {"y", "xy", "xxy"}, {"xxxy"}},
        {"root ::= \"x\"{0}", {""}, {"x"}},
        {"root ::= [^\"\\\\]* \"\\\"\"", {"\"", "abc\"", "\xc3\xa9\""}, {"a\\\"", "\"\""}},
        {"root ::= .+", {"a", "\xe4\xb8\xad\xe6\x96\x87", "\xf0\x9f\x98\x80"}, {""}},
        {"root ::= [\\u00e0-\\u00ff\\U0001F600-\\U0001F64F]+",
         {"\xc3\xa0\xc3\xbf", "\xf0\x9f\x98\x80"}, {"a", "\xc3\x9f"}},
        {"root ::= [\\x41-\\x43] \"\\t\\r\\n\\\\\\\"\"", {"B\t\r\n\\\""}, {"D\t\r\n\\\""}},
        {"root ::= (\"a\"?)* \"b\"", {"b", "ab", "aaab"}, {"", "ba"}},      /* nullable star */
        {"root ::= (\"a\"* \"b\"*)* \"c\"", {"c", "abc", "bbaac"}, {"cc"}}, /* nested nullable */
        {"root ::= a\na ::= \"(\" a \")\" | \"\"", {"", "()", "((()))"}, {"(", "(()", "())"}},
        {"root ::= \"a\" |\n  \"b\"\n  | \"c\" # continuation lines\n", {"a", "b", "c"}, {"d"}},
        {"root::=x\r\nx::=\"1\"|\"2\"\r\n", {"1", "2"}, {"3"}},
        {"root ::= [a-z-]+ [-]", {"a-b-", "--"}, {"a"}},
        {"root ::= \"\"", {""}, {"a"}},
    };
    run_cases(cases, sizeof cases / sizeof cases[0]);
}

static void test_prefix_and_done(void) {
    grammar *g = parse(k_arith);
    if (!g) return;
    grammar_state *st = grammar_state_new(g, NULL);
    T_CHECK(!grammar_state_done(st));
    T_CHECK(grammar_state_accepts_bytes(st, "(1+", 3));
    T_CHECK(!grammar_state_accepts_bytes(st, "(1+)", 4));
    nd_err err = {0};
    T_EQ_INT(grammar_state_advance(st, "(1", 2, &err), 0);
    T_CHECK(!grammar_state_done(st));
    T_EQ_INT(grammar_state_advance(st, "+)", 2, &err), ND_EINVAL);
    T_CHECKF(strstr(err.msg, "byte 1 of 2") != NULL, "%s", err.msg);
    T_EQ_INT(grammar_state_advance(st, "+2)", 3, &err), 0); /* failure left the state unchanged */
    T_CHECK(grammar_state_done(st));
    T_CHECK(grammar_state_can_continue(st));
    grammar_state *cl = grammar_state_clone(st, &err);
    T_CHECK(cl != NULL);
    T_EQ_INT(grammar_state_advance(cl, "*", 1, &err), 0);
    T_CHECK(!grammar_state_done(cl));
    T_CHECK(grammar_state_done(st)); /* the clone is independent */
    T_EQ_INT(grammar_state_copy(cl, st, &err), 0);
    T_CHECK(grammar_state_done(cl));
    T_EQ_INT(grammar_state_reset(cl, &err), 0);
    T_CHECK(!grammar_state_done(cl));
    grammar_state_free(cl);
    grammar_state_free(st);
    grammar_free(g);

    g = parse("root ::= \"ab\"");
    st = grammar_state_new(g, NULL);
    grammar_state_advance(st, "ab", 2, NULL);
    T_CHECK(grammar_state_done(st) && !grammar_state_can_continue(st));
    grammar_state_free(st);
    grammar_free(g);
}

static void test_partial_utf8(void) {
    grammar *g = parse("root ::= \"x\" [\\u00e9\\u4e2d] \"y\"");
    if (!g) return;
    grammar_state *st = grammar_state_new(g, NULL);
    T_CHECK(grammar_state_accepts_bytes(st, "x\xc3", 2));     /* may become U+00E9 */
    T_CHECK(!grammar_state_accepts_bytes(st, "x\xc4", 2));    /* U+0100..U+013F: no */
    T_CHECK(grammar_state_accepts_bytes(st, "x\xe4\xb8", 3)); /* U+4E00..U+4E3F: has U+4E2D */
    T_CHECK(!grammar_state_accepts_bytes(st, "x\xe4\xb9", 3));
    T_CHECK(!grammar_state_accepts_bytes(st, "x\xc0", 2));    /* never valid */
    T_CHECK(!grammar_state_accepts_bytes(st, "x\xe0\x80", 3)); /* overlong prefix */
    T_EQ_INT(grammar_state_advance(st, "x\xe4", 2, NULL), 0);
    T_CHECK(!grammar_state_done(st));
    T_CHECK(!grammar_state_accepts_bytes(st, "y", 1)); /* a sequence is pending */
    T_EQ_INT(grammar_state_advance(st, "\xb8", 1, NULL), 0);
    T_EQ_INT(grammar_state_advance(st, "\xady", 2, NULL), 0);
    T_CHECK(grammar_state_done(st));
    grammar_state_free(st);

    /* negated classes against partial ranges */
    grammar *g2 = parse("root ::= [^\\u0080-\\u07ff]");
    st = grammar_state_new(g2, NULL);
    T_CHECK(!grammar_state_accepts_bytes(st, "\xc3", 1));
    T_CHECK(grammar_state_accepts_bytes(st, "\xe0", 1));
    T_CHECK(grammar_state_accepts_bytes(st, "a", 1));
    grammar_state_free(st);
    grammar_free(g2);
    grammar_free(g);
}

/* Ambiguous grammars: stacks are deduplicated, so this stays small. */
static void test_ambiguity(void) {
    grammar *g = parse("root ::= (\"a\" | \"a\" | \"aa\")* \"b\"");
    if (!g) return;
    char s[202];
    memset(s, 'a', 200);
    s[200] = 'b';
    s[201] = 0;
    T_CHECK(matches(g, s));
    grammar_free(g);
    /* deep nesting hits the depth limit with an error rather than exhausting memory */
    g = parse("root ::= \"(\" root \")\" | \"x\"");
    grammar_state *st = grammar_state_new(g, NULL);
    static char open[9000];
    memset(open, '(', sizeof open);
    nd_err err = {0};
    int rc = grammar_state_advance(st, open, sizeof open, &err);
    T_CHECKF(rc == ND_ERANGE, "rc %d %s", rc, err.msg);
    grammar_state_free(st);
    grammar_free(g);
}

/* ------------------------------------------------------------- tokens */

/* Small SPM vocab: <unk> <s> </s>, 256 byte tokens, then the pieces below. */
static const char *const k_pieces[] = {
    "{", "}", "[", "]", "\"", ",", ":", "\xe2\x96\x81", "\":", "\",", "{\"", "\"}", "true", "false",
    "null", "0", "1", "2", "12", "3.5", "-", "e", "a", "b", "ab", "name", "\xe2\x96\x81\"", "\\n",
    "x\xc3", "\xa9y", "<|im_start|>", "<|im_end|>"};
enum { NP = sizeof k_pieces / sizeof k_pieces[0], NV = 3 + 256 + NP };

static tok_vocab *synth_vocab(uint8_t **buf) {
    gguf_writer *w = gguf_writer_new();
    static char bytes[256][8];
    const char *toks[NV];
    float scores[NV];
    int32_t types[NV];
    toks[0] = "<unk>", toks[1] = "<s>", toks[2] = "</s>";
    types[0] = TOK_TYPE_UNKNOWN, types[1] = types[2] = TOK_TYPE_CONTROL;
    for (int i = 0; i < 256; i++) {
        snprintf(bytes[i], 8, "<0x%02X>", i);
        toks[3 + i] = bytes[i];
        types[3 + i] = TOK_TYPE_BYTE;
    }
    for (int i = 0; i < NP; i++) {
        toks[259 + i] = k_pieces[i];
        types[259 + i] = k_pieces[i][0] == '<' ? TOK_TYPE_CONTROL : TOK_TYPE_NORMAL;
    }
    for (int i = 0; i < NV; i++) scores[i] = -(float)i;
    gguf_writer_set_str(w, "tokenizer.ggml.model", "llama");
    gguf_writer_set_arr_str(w, "tokenizer.ggml.tokens", toks, NULL, NV);
    gguf_writer_set_arr(w, "tokenizer.ggml.scores", GGUF_VT_FLOAT32, scores, NV);
    gguf_writer_set_arr(w, "tokenizer.ggml.token_type", GGUF_VT_INT32, types, NV);
    gguf_writer_set_u32(w, "tokenizer.ggml.bos_token_id", 1);
    gguf_writer_set_u32(w, "tokenizer.ggml.eos_token_id", 2);
    size_t len;
    nd_err err = {0};
    int rc = gguf_writer_write_mem(w, NULL, NULL, buf, &len, &err);
    gguf_writer_free(w);
    if (rc) return NULL;
    gguf_ctx *g = gguf_open_mem(*buf, len, &err);
    if (!g) return NULL;
    tok_vocab *v = tok_load(g, &err);
    gguf_close(g);
    if (!v) fprintf(stderr, "  tok_load: %s\n", err.msg);
    return v;
}

static int32_t piece_id(const tok_vocab *v, const char *text) {
    return tok_find(v, text, strlen(text));
}

static void test_tokens(void) {
    uint8_t *buf = NULL;
    tok_vocab *v = synth_vocab(&buf);
    T_CHECK(v != NULL);
    if (!v) { nd_free(buf); return; }
    grammar *g = parse(k_json);
    grammar_state *st = grammar_state_new(g, NULL);
    int32_t open = piece_id(v, "{\""), close = piece_id(v, "}"), eos = tok_eos(v);
    int32_t im_start = piece_id(v, "<|im_start|>"), im_end = piece_id(v, "<|im_end|>");
    T_CHECK(open >= 0 && close >= 0 && eos >= 0 && im_start >= 0 && im_end >= 0);
    T_CHECK(grammar_state_accepts_token(st, v, open));
    T_CHECK(!grammar_state_accepts_token(st, v, close));
    T_CHECK(!grammar_state_accepts_token(st, v, eos));      /* not complete */
    T_CHECK(!grammar_state_accepts_token(st, v, im_start)); /* control: no text */
    T_CHECK(!grammar_state_accepts_token(st, v, -1) && !grammar_state_accepts_token(st, v, NV));
    int32_t cand[4] = {close, open, eos, piece_id(v, "{")};
    bool ok[4];
    T_EQ_INT(grammar_filter_candidates(st, v, cand, 4, ok, NULL), 0);
    T_CHECK(!ok[0] && ok[1] && !ok[2] && ok[3]);
    uint8_t mask[NV];
    int64_t n_ok = grammar_mask(st, v, mask, NULL);
    /* "{", "{\"", byte 0x7b */
    T_EQ_INT(n_ok, 3);
    const char *seq[] = {"{\"", "name", "\":", "\xe2\x96\x81\"", "x\xc3", "\xa9y", "\"", "}"};
    nd_err err = {0};
    for (size_t i = 0; i < sizeof seq / sizeof seq[0]; i++) {
        int32_t id = piece_id(v, seq[i]);
        T_CHECKF(grammar_state_accepts_token(st, v, id), "token %zu", i);
        T_EQ_INT(grammar_state_accept_token(st, v, id, &err), 0);
    }
    T_CHECK(grammar_state_done(st));
    T_CHECK(grammar_state_accepts_token(st, v, eos));
    T_CHECK(tok_is_eog(v, im_end) == grammar_state_accepts_token(st, v, im_end));
    T_EQ_INT(grammar_state_accept_token(st, v, eos, &err), 0);
    n_ok = grammar_mask(st, v, mask, NULL);
    T_CHECK(mask[eos] && n_ok >= 1);
    /* a byte token splitting a character: 0xC3 then 0xA9 */
    grammar_state_reset(st, NULL);
    grammar_state_advance(st, "{\"", 2, NULL);
    T_CHECK(grammar_state_accepts_token(st, v, 3 + 0xc3));
    T_CHECK(!grammar_state_accepts_token(st, v, 3 + 0xa9));
    T_EQ_INT(grammar_state_accept_token(st, v, 3 + 0xc3, &err), 0);
    T_CHECK(grammar_state_accepts_token(st, v, 3 + 0xa9));
    T_CHECK(!grammar_state_accepts_token(st, v, piece_id(v, "a")));
    grammar_state_free(st);
    grammar_free(g);
    tok_free(v);
    nd_free(buf);
}

/* Constrained generation: every output must be in the language, for greedy and sampled
 * chains, with random logits. */
static void generate_check(const tok_vocab *v, const grammar *g, const smp_params *sp, uint64_t seed,
                           int max_tokens, int *n_complete) {
    int32_t nv = tok_n_vocab(v);
    float *logits = nd_malloc((size_t)nv * sizeof *logits);
    smp_chain *s = smp_new(sp, nv, NULL);
    grammar_state *st = grammar_state_new(g, NULL);
    nd_buf out = {0};
    unsigned long long rs = seed;
    bool ended = false;
    for (int t = 0; t < max_tokens && !ended; t++) {
        for (int32_t i = 0; i < nv; i++) logits[i] = 4.0f * t_rand_f(&rs);
        nd_err err = {0};
        int32_t id = smp_sample_constrained(s, logits, st, v, &err);
        T_CHECKF(id >= 0, "sample: %s", err.msg);
        if (id < 0) break;
        T_CHECK(grammar_state_accepts_token(st, v, id));
        if (tok_is_eog(v, id)) {
            ended = true;
            break;
        }
        const char *p;
        size_t n;
        tok_piece_view(v, id, false, &p, &n);
        nd_buf_append(&out, p, n);
        T_EQ_INT(grammar_state_accept_token(st, v, id, &err), 0);
        smp_accept(s, id);
    }
    if (ended) {
        (*n_complete)++;
        T_CHECKF(matches(g, out.data ? out.data : ""), "output not in language: %.200s", out.data);
    } else if (out.len) {
        nd_buf_append(&out, "", 1);
        T_CHECKF(prefix_ok(g, out.data), "output not a prefix: %.200s", out.data);
    }
    nd_buf_free(&out);
    grammar_state_free(st);
    smp_free(s);
    nd_free(logits);
}

static void test_sample_synth(void) {
    uint8_t *buf = NULL;
    tok_vocab *v = synth_vocab(&buf);
    if (!v) { nd_free(buf); T_SKIP("no synthetic vocab"); }
    grammar *g = parse("root ::= \"{\" (\"\\\"\" [a-b]+ \"\\\":\" [0-9]{1,3}) \"}\"");
    int complete = 0;
    for (int k = 0; k < 40; k++) {
        smp_params p = smp_default_params();
        p.seed = (uint64_t)k;
        if (k % 3 == 0) p.temp = 0;
        if (k % 3 == 1) p.top_k = 0, p.top_p = 1, p.min_p = 0;
        generate_check(v, g, &p, 1000 + (uint64_t)k, 64, &complete);
    }
    T_CHECKF(complete >= 30, "only %d/40 generations ended", complete);
    grammar_free(g);
    tok_free(v);
    nd_free(buf);
}

static void test_sample_gpt2(void) {
    const char *fx = t_fixtures();
    if (!fx) T_SKIP("no fixtures");
    char path[1024];
    snprintf(path, sizeof path, "%s/vocab/ggml-vocab-gpt-2.gguf", fx);
    nd_err err = {0};
    gguf_ctx *gg = gguf_open(path, &err);
    if (!gg) T_SKIP("%s", err.msg);
    tok_vocab *v = tok_load(gg, &err);
    gguf_close(gg);
    T_CHECK(v != NULL);
    if (!v) return;
    static const char *const grammars[] = {
        k_json, k_arith,
        "root ::= \"Answer: \" (\"yes\" | \"no\") \"\\n\"",
        "root ::= [a-z ]{5,40} \".\"",
        "root ::= \"\\u00e9t\\u00e9 \" [\\u4e00-\\u9fff]{1,4}",
    };
    int complete = 0, total = 0;
    for (size_t gi = 0; gi < sizeof grammars / sizeof grammars[0]; gi++) {
        grammar *g = parse(grammars[gi]);
        if (!g) continue;
        for (int k = 0; k < 6; k++, total++) {
            smp_params p = smp_default_params();
            p.seed = (uint64_t)k;
            if (k % 2) p.temp = 0;
            generate_check(v, g, &p, 77 + (uint64_t)k * 13 + gi, 48, &complete);
        }
        grammar_free(g);
    }
    T_CHECKF(complete >= total / 4, "only %d/%d generations ended", complete, total);
    tok_free(v);
}

/* Allocation failures never crash or leak. */
static void test_alloc_failures(void) {
    for (long n = 0; n < 400; n++) {
        nd_alloc_fail_after(n);
        nd_err err = {0};
        grammar *g = grammar_parse(k_json, strlen(k_json), NULL, &err);
        grammar_state *st = g ? grammar_state_new(g, &err) : NULL;
        if (st) {
            grammar_state_advance(st, "{\"a\": [1, 2]}", 13, &err);
            grammar_state *cl = grammar_state_clone(st, &err);
            grammar_state_free(cl);
        }
        nd_alloc_fail_after(-1);
        grammar_state_free(st);
        grammar_free(g);
    }
    T_CHECK(1);
}

int main(void) {
    T_RUN(test_parse_errors);
    T_RUN(test_parse_limits);
    T_RUN(test_match_basic);
    T_RUN(test_prefix_and_done);
    T_RUN(test_partial_utf8);
    T_RUN(test_ambiguity);
    T_RUN(test_tokens);
    T_RUN(test_sample_synth);
    T_RUN(test_sample_gpt2);
    T_RUN(test_alloc_failures);
    return t_done();
}
