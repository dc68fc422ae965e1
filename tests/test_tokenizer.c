/* Tokenizer tests: llama.cpp goldens (vocab/NAME.gguf + .inp/.out, golden/NAME.tokenize.json),
 * round trips, hostile metadata built in memory, streaming detokenization, allocation
 * fault injection and concurrent encodes. Run from the repository root. */
#include <cjson/cJSON.h>
#include <dirent.h>
#include <pthread.h>
#include <sys/wait.h>

#include "t.h"
#include "gguf/gguf.h"
#include "tokenizer/tok.h"

/* ================================================================ helpers */

static bool ends_with(const char *s, const char *suf) {
    size_t n = strlen(s), k = strlen(suf);
    return n >= k && strcmp(s + n - k, suf) == 0;
}

static bool file_exists(const char *p) {
    struct stat st;
    return stat(p, &st) == 0 && S_ISREG(st.st_mode);
}

static tok_vocab *load_vocab_file(const char *path, gguf_ctx **gout) {
    nd_err err = {0};
    gguf_ctx *g = gguf_open(path, &err);
    if (!g) {
        T_FAILF("%s: %s", path, err.msg);
        return NULL;
    }
    tok_vocab *v = tok_load(g, &err);
    if (!v) T_FAILF("%s: tok_load: %s", path, err.msg);
    if (gout) *gout = g;
    else gguf_close(g);
    return v;
}

static void print_ids(const char *label, const int32_t *ids, size_t n) {
    fprintf(stderr, "    %s:", label);
    for (size_t i = 0; i < n; i++) fprintf(stderr, " %d", ids[i]);
    fputc('\n', stderr);
}

/* Round trip: decode(encode(x)) == x for valid UTF-8 without BOS/EOS. */
static bool check_roundtrip(const tok_vocab *v, const char *s, size_t n, bool bos) {
    int32_t *ids;
    size_t k;
    nd_err err = {0};
    if (tok_encode(v, s, n, bos, false, &ids, &k, &err)) {
        T_FAILF("encode: %s", err.msg);
        return false;
    }
    char *out;
    size_t on;
    int rc = tok_decode(v, ids, k, TOK_DECODE_REMOVE_SPECIAL, &out, &on, &err);
    nd_free(ids);
    if (rc) {
        T_FAILF("decode: %s", err.msg);
        return false;
    }
    bool ok = on == n && memcmp(out, s, n) == 0;
    if (!ok) T_FAILF("round trip: \"%.*s\" -> \"%s\"", (int)n, s, out);
    nd_free(out);
    return ok;
}

/* ================================================================ llama.cpp vocab goldens */

typedef struct vcase {
    char *text;
    size_t len;
} vcase;

/* Inputs are separated by "\n__ggml_vocab_test__\n"; the file ends with a separator. */
static size_t split_inp(char *buf, size_t len, vcase *out, size_t max) {
    static const char sep[] = "\n__ggml_vocab_test__\n";
    size_t sl = sizeof sep - 1, n = 0, pos = 0;
    while (pos < len && n < max) {
        char *m = memmem(buf + pos, len - pos, sep, sl);
        size_t end = m ? (size_t)(m - buf) : len;
        out[n].text = buf + pos;
        out[n].len = end - pos;
        n++;
        if (!m) break;
        pos = end + sl;
    }
    return n;
}

static int parse_ids(const char *line, int32_t *ids, int max) {
    int n = 0;
    char *end;
    for (const char *p = line; *p && n < max;) {
        while (*p == ' ') p++;
        if (!*p) break;
        long x = strtol(p, &end, 10);
        if (end == p) break;
        ids[n++] = (int32_t)x;
        p = end;
    }
    return n;
}

static void run_vocab_file(const char *dir, const char *name, int *n_files) {
    char path[1024], inp[1100], outp[1100];
    if (strlen(dir) + strlen(name) + 2 > sizeof path) return;
    snprintf(path, sizeof path, "%.500s/%.200s", dir, name);
    snprintf(inp, sizeof inp, "%s.inp", path);
    snprintf(outp, sizeof outp, "%s.out", path);
    if (!file_exists(inp) || !file_exists(outp)) return;
    tok_vocab *v = load_vocab_file(path, NULL);
    if (!v) return;
    (*n_files)++;
    char *ib, *ob;
    size_t il, ol;
    nd_err err = {0};
    if (nd_read_file(inp, &ib, &il, &err) || nd_read_file(outp, &ob, &ol, &err)) {
        T_FAILF("%s", err.msg);
        tok_free(v);
        return;
    }
    vcase cases[512];
    size_t nc = split_inp(ib, il, cases, 512);
    int pass = 0, total = 0, rt = 0;
    char *line = ob;
    for (size_t c = 0; c < nc; c++) {
        if (!line) {
            T_FAILF("%s: .out has fewer lines than inputs (%zu)", name, nc);
            break;
        }
        char *nl = strchr(line, '\n');
        if (nl) *nl = 0;
        static int32_t want[65536];
        int nw = parse_ids(line, want, 65536);
        line = nl ? nl + 1 : NULL;
        int32_t *ids;
        size_t k;
        total++;
        if (tok_encode(v, cases[c].text, cases[c].len, false, false, &ids, &k, &err)) {
            T_FAILF("%s case %zu: %s", name, c, err.msg);
            continue;
        }
        if (k == (size_t)nw && (k == 0 || memcmp(ids, want, k * sizeof *ids) == 0)) {
            pass++;
        } else {
            T_FAILF("%s case %zu \"%.*s\" mismatch", name, c, (int)cases[c].len, cases[c].text);
            print_ids("expected", want, (size_t)nw);
            print_ids("got     ", ids, k);
        }
        nd_free(ids);
        if (check_roundtrip(v, cases[c].text, cases[c].len, false)) rt++;
    }
    printf("  vocab %-34s %3d/%d cases, %d/%d round trips (%s, pre %s)\n", name, pass, total, rt,
           total, tok_get_kind(v) == TOK_KIND_SPM ? "spm" : "bpe", tok_pre_name(v));
    nd_free(ib);
    nd_free(ob);
    tok_free(v);
}

static void test_vocab_goldens(void) {
    const char *fx = t_fixtures();
    if (!fx) T_SKIP("no fixtures folder");
    char dir[512];
    snprintf(dir, sizeof dir, "%s/vocab", fx);
    DIR *d = opendir(dir);
    if (!d) T_SKIP("no %s", dir);
    int n_files = 0;
    struct dirent *de;
    char names[64][256];
    int nn = 0;
    while ((de = readdir(d)) && nn < 64)
        if (ends_with(de->d_name, ".gguf")) snprintf(names[nn++], 256, "%s", de->d_name);
    closedir(d);
    for (int i = 0; i < nn; i++) run_vocab_file(dir, names[i], &n_files);
    if (n_files == 0) T_SKIP("no vocab/*.gguf with .inp/.out in %s", dir);
}

/* ================================================================ golden tokenize.json */

static void run_golden_json(const char *fx, const char *file) {
    char path[1024];
    if (strlen(fx) + strlen(file) > 900) return;
    snprintf(path, sizeof path, "%.500s/golden/%.200s", fx, file);
    char *buf;
    size_t len;
    nd_err err = {0};
    if (nd_read_file(path, &buf, &len, &err)) {
        T_FAILF("%s", err.msg);
        return;
    }
    cJSON *root = cJSON_Parse(buf);
    nd_free(buf);
    if (!root) {
        T_FAILF("%s: bad JSON", path);
        return;
    }
    const cJSON *model = cJSON_GetObjectItem(root, "model");
    const cJSON *cases = cJSON_GetObjectItem(root, "cases");
    if (!cJSON_IsString(model) || !cJSON_IsArray(cases)) {
        T_FAILF("%s: missing model/cases", path);
        cJSON_Delete(root);
        return;
    }
    char mpath[1024];
    snprintf(mpath, sizeof mpath, "%s/models/%s", fx, model->valuestring);
    tok_vocab *v = load_vocab_file(mpath, NULL);
    if (!v) {
        cJSON_Delete(root);
        return;
    }
    int pass = 0, total = 0;
    const cJSON *c;
    cJSON_ArrayForEach(c, cases) {
        const cJSON *text = cJSON_GetObjectItem(c, "text"), *ids = cJSON_GetObjectItem(c, "ids");
        const cJSON *bos = cJSON_GetObjectItem(c, "add_bos");
        if (!cJSON_IsString(text) || !cJSON_IsArray(ids)) continue;
        total++;
        int32_t *got;
        size_t k;
        const char *s = text->valuestring;
        if (tok_encode(v, s, strlen(s), !bos || cJSON_IsTrue(bos), true, &got, &k, &err)) {
            T_FAILF("%s: %s", file, err.msg);
            continue;
        }
        int nw = cJSON_GetArraySize(ids);
        bool ok = (int)k == nw;
        for (int i = 0; ok && i < nw; i++) ok = got[i] == cJSON_GetArrayItem(ids, i)->valueint;
        if (ok) {
            pass++;
        } else {
            T_FAILF("%s: \"%s\" mismatch", file, s);
            int32_t want[4096];
            for (int i = 0; i < nw && i < 4096; i++) want[i] = cJSON_GetArrayItem(ids, i)->valueint;
            print_ids("expected", want, (size_t)(nw < 4096 ? nw : 4096));
            print_ids("got     ", got, k);
        }
        bool has_special = false;
        for (size_t i = 1; i < k; i++) has_special |= tok_is_control(v, got[i]);
        nd_free(got);
        if (!has_special) check_roundtrip(v, s, strlen(s), true);
    }
    printf("  golden %-33s %3d/%d cases\n", file, pass, total);
    tok_free(v);
    cJSON_Delete(root);
}

static void test_golden_json(void) {
    const char *fx = t_fixtures();
    if (!fx) T_SKIP("no fixtures folder");
    char dir[512];
    snprintf(dir, sizeof dir, "%s/golden", fx);
    DIR *d = opendir(dir);
    if (!d) T_SKIP("no %s", dir);
    struct dirent *de;
    char names[64][256];
    int nn = 0;
    while ((de = readdir(d)) && nn < 64)
        if (ends_with(de->d_name, ".tokenize.json")) snprintf(names[nn++], 256, "%s", de->d_name);
    closedir(d);
    if (nn == 0) T_SKIP("no golden/*.tokenize.json");
    for (int i = 0; i < nn; i++) run_golden_json(fx, names[i]);
}

/* ================================================================ in-memory vocabularies */

typedef struct memv {
    uint8_t *buf;
    size_t len;
    gguf_ctx *g;
} memv;

static int memv_open(memv *m, gguf_writer *w, nd_err *err) {
    memset(m, 0, sizeof *m);
    int rc = gguf_writer_write_mem(w, NULL, NULL, &m->buf, &m->len, err);
    gguf_writer_free(w);
    if (rc) return rc;
    m->g = gguf_open_mem(m->buf, m->len, err);
    return m->g ? 0 : -1;
}

static void memv_close(memv *m) {
    gguf_close(m->g);
    nd_free(m->buf);
}

/* A small SPM vocab: <unk> <s> </s>, 256 byte tokens, and a few pieces. */
static const char *const k_spm_pieces[] = {"\xe2\x96\x81", "h", "e", "l", "o", "he", "ll", "llo",
                                           "hello", "\xe2\x96\x81hello", "w", "r", "d", "<tag>"};

static gguf_writer *spm_writer(void) {
    gguf_writer *w = gguf_writer_new();
    enum { NP = sizeof k_spm_pieces / sizeof k_spm_pieces[0], N = 3 + 256 + NP };
    static char bytes[256][8];
    const char *toks[N];
    float scores[N];
    int32_t types[N];
    toks[0] = "<unk>", toks[1] = "<s>", toks[2] = "</s>";
    types[0] = TOK_TYPE_UNKNOWN, types[1] = types[2] = TOK_TYPE_CONTROL;
    for (int i = 0; i < 256; i++) {
        snprintf(bytes[i], 8, "<0x%02X>", i);
        toks[3 + i] = bytes[i];
        types[3 + i] = TOK_TYPE_BYTE;
    }
    for (int i = 0; i < NP; i++) {
        toks[259 + i] = k_spm_pieces[i];
        types[259 + i] = i == NP - 1 ? TOK_TYPE_USER_DEFINED : TOK_TYPE_NORMAL;
    }
    for (int i = 0; i < N; i++) scores[i] = i < 259 ? 0.0f : -(float)(N - i) * 0.5f + (float)strlen(toks[i]);
    gguf_writer_set_str(w, "tokenizer.ggml.model", "llama");
    gguf_writer_set_arr_str(w, "tokenizer.ggml.tokens", toks, NULL, N);
    gguf_writer_set_arr(w, "tokenizer.ggml.scores", GGUF_VT_FLOAT32, scores, N);
    gguf_writer_set_arr(w, "tokenizer.ggml.token_type", GGUF_VT_INT32, types, N);
    gguf_writer_set_u32(w, "tokenizer.ggml.bos_token_id", 1);
    gguf_writer_set_u32(w, "tokenizer.ggml.eos_token_id", 2);
    return w;
}

/* A small byte-level BPE vocab: the 256 GPT-2 byte chars + merges for "hello". */
static gguf_writer *bpe_writer(void) {
    gguf_writer *w = gguf_writer_new();
    static char chars[256][4];
    const char *toks[256 + 8];
    int n = 0;
    for (int b = 0; b < 256; b++) {
        int ok = (b >= 33 && b <= 126) || (b >= 161 && b <= 172) || (b >= 174 && b <= 255);
        int extra = 0;
        for (int c = 0; c < b; c++)
            if (!((c >= 33 && c <= 126) || (c >= 161 && c <= 172) || (c >= 174 && c <= 255))) extra++;
        uint32_t cp = ok ? (uint32_t)b : 256u + (uint32_t)extra;
        int k = nd_utf8_encode(cp, chars[b]);
        chars[b][k] = 0;
        toks[n++] = chars[b];
    }
    const char *more[] = {"he", "ll", "llo", "hello", "\xc4\xa0hello", "<|endoftext|>"};
    for (int i = 0; i < 6; i++) toks[n++] = more[i];
    const char *merges[] = {"h e", "l l", "ll o", "he llo", "\xc4\xa0 hello"};
    gguf_writer_set_str(w, "tokenizer.ggml.model", "gpt2");
    gguf_writer_set_str(w, "tokenizer.ggml.pre", "gpt-2");
    gguf_writer_set_arr_str(w, "tokenizer.ggml.tokens", toks, NULL, (uint64_t)n);
    gguf_writer_set_arr_str(w, "tokenizer.ggml.merges", merges, NULL, 5);
    int32_t types[256 + 8];
    for (int i = 0; i < n; i++) types[i] = i == n - 1 ? TOK_TYPE_CONTROL : TOK_TYPE_NORMAL;
    gguf_writer_set_arr(w, "tokenizer.ggml.token_type", GGUF_VT_INT32, types, (uint64_t)n);
    gguf_writer_set_u32(w, "tokenizer.ggml.eos_token_id", (uint32_t)(n - 1));
    gguf_writer_set_u32(w, "tokenizer.ggml.bos_token_id", (uint32_t)(n - 1));
    return w;
}

static tok_vocab *open_mem_vocab(memv *m, gguf_writer *w, nd_err *err) {
    if (memv_open(m, w, err)) return NULL;
    return tok_load(m->g, err);
}

static void test_small_spm(void) {
    memv m;
    nd_err err = {0};
    tok_vocab *v = open_mem_vocab(&m, spm_writer(), &err);
    T_CHECKF(v, "load: %s", err.msg);
    if (!v) return;
    int32_t *ids;
    size_t n;
    T_EQ_INT(tok_encode(v, "hello", 5, true, false, &ids, &n, &err), 0);
    T_EQ_INT(n, 2);
    if (n == 2) {
        T_EQ_INT(ids[0], 1);
        size_t tl;
        const char *t = tok_text(v, ids[1], &tl);
        T_CHECK(t && strcmp(t, "\xe2\x96\x81hello") == 0);
    }
    nd_free(ids);
    /* user-defined token is matched even without parse_special; control tokens only with */
    T_EQ_INT(tok_encode(v, "<tag><s>", 8, false, false, &ids, &n, &err), 0);
    T_CHECK(n >= 2 && ids[0] == tok_find(v, "<tag>", 5) && ids[1] != 1);
    nd_free(ids);
    T_EQ_INT(tok_encode(v, "<tag><s>", 8, false, true, &ids, &n, &err), 0);
    T_CHECK(n == 2 && ids[0] == tok_find(v, "<tag>", 5) && ids[1] == 1);
    nd_free(ids);
    /* invalid UTF-8 and NUL bytes round-trip through byte tokens */
    const char bad[] = "h\xff\xc3(\x00\xe2\x82wo \xf0\x9f\xa6";
    check_roundtrip(v, bad, sizeof bad - 1, false);
    check_roundtrip(v, bad, sizeof bad - 1, true);
    check_roundtrip(v, " x  y ", 6, true);
    /* pieces */
    char buf[16];
    T_EQ_INT(tok_piece(v, 3 + 0x41, false, buf, sizeof buf), 1);
    T_CHECK(buf[0] == 'A');
    T_EQ_INT(tok_piece(v, 1, false, buf, sizeof buf), 0);
    T_EQ_INT(tok_piece(v, 1, true, buf, sizeof buf), 3);
    T_EQ_INT(tok_piece(v, -1, true, buf, sizeof buf), ND_ERANGE);
    T_EQ_INT(tok_piece(v, tok_n_vocab(v), true, buf, sizeof buf), ND_ERANGE);
    T_CHECK(tok_is_eog(v, 2) && !tok_is_eog(v, 1));
    /* decode rejects bad ids */
    int32_t badids[] = {5, 100000};
    char *out;
    T_EQ_INT(tok_decode(v, badids, 2, 0, &out, NULL, &err), ND_ERANGE);
    tok_free(v);
    memv_close(&m);
}

static void test_small_bpe(void) {
    memv m;
    nd_err err = {0};
    tok_vocab *v = open_mem_vocab(&m, bpe_writer(), &err);
    T_CHECKF(v, "load: %s", err.msg);
    if (!v) return;
    int32_t *ids;
    size_t n;
    T_EQ_INT(tok_encode(v, "hello hello", 11, false, false, &ids, &n, &err), 0);
    T_EQ_INT(n, 2);
    if (n == 2) {
        T_EQ_INT(ids[0], tok_find(v, "hello", 5));
        T_EQ_INT(ids[1], tok_find(v, "\xc4\xa0hello", 7));
    }
    nd_free(ids);
    /* invalid UTF-8 is replaced by U+FFFD (llama.cpp behaviour): no crash, valid output */
    const char bad[] = "a\xff\xfe b\xc3";
    T_EQ_INT(tok_encode(v, bad, sizeof bad - 1, false, false, &ids, &n, &err), 0);
    char *out;
    size_t on;
    T_EQ_INT(tok_decode(v, ids, n, 0, &out, &on, &err), 0);
    T_CHECK(nd_utf8_valid(out, on));
    T_EQ_STR(out, "a\xef\xbf\xbd\xef\xbf\xbd b\xef\xbf\xbd");
    nd_free(out);
    nd_free(ids);
    check_roundtrip(v, "hello\n\n  world\t!", 16, false);
    T_EQ_INT(tok_encode(v, "x<|endoftext|>y", 15, false, true, &ids, &n, &err), 0);
    T_CHECK(n == 3 && ids[1] == tok_n_vocab(v) - 1);
    nd_free(ids);
    tok_free(v);
    memv_close(&m);
}

/* ================================================================ hostile metadata */

typedef void (*mutate_fn)(gguf_writer *w);

static void mut_no_model(gguf_writer *w) { gguf_writer_remove(w, "tokenizer.ggml.model"); }
static void mut_bert(gguf_writer *w) { gguf_writer_set_str(w, "tokenizer.ggml.model", "bert"); }
static void mut_no_tokens(gguf_writer *w) { gguf_writer_remove(w, "tokenizer.ggml.tokens"); }
static void mut_empty_tokens(gguf_writer *w) {
    gguf_writer_set_arr_str(w, "tokenizer.ggml.tokens", NULL, NULL, 0);
}
static void mut_tokens_int(gguf_writer *w) {
    int32_t x[3] = {1, 2, 3};
    gguf_writer_set_arr(w, "tokenizer.ggml.tokens", GGUF_VT_INT32, x, 3);
}
static void mut_scores_short(gguf_writer *w) {
    float s[5] = {0};
    gguf_writer_set_arr(w, "tokenizer.ggml.scores", GGUF_VT_FLOAT32, s, 5);
}
static void mut_scores_str(gguf_writer *w) {
    const char *s[1] = {"x"};
    gguf_writer_set_arr_str(w, "tokenizer.ggml.scores", s, NULL, 1);
}
static void mut_types_bad(gguf_writer *w) {
    int32_t t[273];
    for (int i = 0; i < 273; i++) t[i] = 1;
    t[100] = 99;
    gguf_writer_set_arr(w, "tokenizer.ggml.token_type", GGUF_VT_INT32, t, 273);
}
static void mut_types_short(gguf_writer *w) {
    int32_t t[2] = {1, 1};
    gguf_writer_set_arr(w, "tokenizer.ggml.token_type", GGUF_VT_INT32, t, 2);
}
static void mut_bos_range(gguf_writer *w) { gguf_writer_set_u32(w, "tokenizer.ggml.bos_token_id", 100000); }
static void mut_eos_neg(gguf_writer *w) { gguf_writer_set_i32(w, "tokenizer.ggml.eos_token_id", -5); }
static void mut_eos_str(gguf_writer *w) { gguf_writer_set_str(w, "tokenizer.ggml.eos_token_id", "2"); }
static void mut_addbos_str(gguf_writer *w) { gguf_writer_set_str(w, "tokenizer.ggml.add_bos_token", "yes"); }
static void mut_no_merges(gguf_writer *w) { gguf_writer_remove(w, "tokenizer.ggml.merges"); }
static void mut_bad_merge(gguf_writer *w) {
    const char *m[3] = {"h e", "garbage", "l l"};
    gguf_writer_set_arr_str(w, "tokenizer.ggml.merges", m, NULL, 3);
}
static void mut_bad_merge2(gguf_writer *w) {
    const char *m[2] = {"h e", " x"};
    gguf_writer_set_arr_str(w, "tokenizer.ggml.merges", m, NULL, 2);
}
static void mut_bad_merge3(gguf_writer *w) {
    const char *m[1] = {"ab "};
    gguf_writer_set_arr_str(w, "tokenizer.ggml.merges", m, NULL, 1);
}
static void mut_merges_int(gguf_writer *w) {
    int32_t x[1] = {7};
    gguf_writer_set_arr(w, "tokenizer.ggml.merges", GGUF_VT_INT32, x, 1);
}
static void mut_byte_text(gguf_writer *w) {
    /* SPM: token 3 claims to be a byte token but is not <0xNN> */
    enum { NP = sizeof k_spm_pieces / sizeof k_spm_pieces[0], N = 3 + 256 + NP };
    const char *toks[N];
    static char bytes[256][8];
    toks[0] = "<unk>", toks[1] = "<s>", toks[2] = "</s>";
    for (int i = 0; i < 256; i++) snprintf(bytes[i], 8, "<0x%02X>", i), toks[3 + i] = bytes[i];
    toks[3] = "<0xZZ>";
    for (int i = 0; i < NP; i++) toks[259 + i] = k_spm_pieces[i];
    gguf_writer_set_arr_str(w, "tokenizer.ggml.tokens", toks, NULL, N);
}
static void expect_load_error(gguf_writer *(*base)(void), mutate_fn mut, const char *what) {
    gguf_writer *w = base();
    mut(w);
    memv m;
    nd_err err = {0};
    if (memv_open(&m, w, &err)) { /* the writer or reader refused: also a clean error */
        memv_close(&m);
        return;
    }
    tok_vocab *v = tok_load(m.g, &err);
    T_CHECKF(v == NULL, "%s: loaded a hostile vocab", what);
    T_CHECKF(v != NULL || (err.code < 0 && err.msg[0]), "%s: no error message", what);
    if (!v && getenv("NINDUB_VERBOSE")) fprintf(stderr, "    %s -> %s\n", what, err.msg);
    tok_free(v);
    memv_close(&m);
}

static void test_hostile_metadata(void) {
    expect_load_error(spm_writer, mut_no_model, "no model");
    expect_load_error(spm_writer, mut_bert, "bert model");
    expect_load_error(spm_writer, mut_no_tokens, "no tokens");
    expect_load_error(spm_writer, mut_empty_tokens, "empty tokens");
    expect_load_error(spm_writer, mut_tokens_int, "int tokens");
    expect_load_error(spm_writer, mut_scores_short, "short scores");
    expect_load_error(spm_writer, mut_scores_str, "string scores");
    expect_load_error(spm_writer, mut_types_bad, "token type 99");
    expect_load_error(spm_writer, mut_types_short, "short token types");
    expect_load_error(spm_writer, mut_bos_range, "bos out of range");
    expect_load_error(spm_writer, mut_eos_neg, "negative eos");
    expect_load_error(spm_writer, mut_eos_str, "string eos");
    expect_load_error(spm_writer, mut_addbos_str, "string add_bos");
    expect_load_error(spm_writer, mut_byte_text, "bad byte token text");
    expect_load_error(bpe_writer, mut_no_merges, "no merges");
    expect_load_error(bpe_writer, mut_bad_merge, "garbage merge");
    expect_load_error(bpe_writer, mut_bad_merge2, "merge with leading space");
    expect_load_error(bpe_writer, mut_bad_merge3, "merge with empty right");
    expect_load_error(bpe_writer, mut_merges_int, "int merges");
    expect_load_error(bpe_writer, mut_scores_short, "bpe short scores");
    nd_err err = {0};
    T_CHECK(tok_load(NULL, &err) == NULL && err.code == ND_EINVAL);
}

/* Every allocation of load + encode + decode failing in turn: clean errors, no leaks
 * (ASan in `make check` catches leaks and bad frees). */
static void test_alloc_faults(void) {
    gguf_writer *(*bases[2])(void) = {spm_writer, bpe_writer};
    for (int b = 0; b < 2; b++) {
        memv m;
        nd_err err = {0};
        if (memv_open(&m, bases[b](), &err)) {
            T_FAILF("%s", err.msg);
            return;
        }
        int ok_at = -1;
        for (long k = 0; k < 5000 && ok_at < 0; k++) {
            nd_alloc_fail_after(k);
            tok_vocab *v = tok_load(m.g, &err);
            int32_t *ids = NULL;
            size_t n = 0;
            char *out = NULL;
            bool done = false;
            if (v && tok_encode(v, "hello <s> world\xff!", 16, true, true, &ids, &n, &err) == 0 &&
                tok_decode(v, ids, n, 0, &out, NULL, &err) == 0)
                done = true;
            nd_alloc_fail_after(-1);
            if (!done) T_CHECKF(err.code < 0, "fault %ld: failure without error code", k);
            if (done) ok_at = (int)k;
            nd_free(out);
            nd_free(ids);
            tok_free(v);
        }
        T_CHECKF(ok_at >= 0, "never succeeded under fault injection");
        memv_close(&m);
    }
}

/* ================================================================ streaming */

static void test_stream_utf8(void) {
    memv m;
    nd_err err = {0};
    tok_vocab *v = open_mem_vocab(&m, spm_writer(), &err);
    T_CHECKF(v, "load: %s", err.msg);
    if (!v) return;
    /* é (2 bytes), € (3), 🦙 (4): none is a token, so each becomes byte tokens */
    const char *text = "h\xc3\xa9llo \xe2\x82\xac w\xf0\x9f\xa6\x99 hello";
    int32_t *ids;
    size_t n;
    T_EQ_INT(tok_encode(v, text, strlen(text), true, false, &ids, &n, &err), 0);
    tok_stream st;
    tok_stream_init(&st, v, 0);
    nd_buf all = {0};
    int chunks_held = 0;
    for (size_t i = 0; i < n; i++) {
        nd_buf chunk = {0};
        T_EQ_INT(tok_stream_push(&st, ids[i], &chunk, &err), 0);
        T_CHECKF(nd_utf8_valid(chunk.data ? chunk.data : "", chunk.len), "chunk %zu splits UTF-8", i);
        if (st.n_held) chunks_held++;
        nd_buf_append(&all, chunk.data ? chunk.data : "", chunk.len);
        nd_buf_free(&chunk);
    }
    T_EQ_INT(tok_stream_flush(&st, &all, &err), 0);
    T_CHECK(chunks_held >= 6); /* 1 + 2 + 3 bytes held back across the three characters */
    T_EQ_STR(all.data, text);
    /* a truncated sequence at the end is flushed raw */
    tok_stream_init(&st, v, 0);
    nd_buf b2 = {0};
    tok_stream_push(&st, 3 + 0xE2, &b2, &err);
    T_EQ_INT(b2.len, 0);
    tok_stream_flush(&st, &b2, &err);
    T_EQ_INT(b2.len, 1);
    nd_buf_free(&b2);
    nd_buf_free(&all);
    nd_free(ids);
    tok_free(v);
    memv_close(&m);
}

/* ================================================================ threads */

typedef struct thr_arg {
    const tok_vocab *v;
    const char *text;
    size_t len;
    const int32_t *want;
    size_t n_want;
    int bad;
} thr_arg;

static void *thr_main(void *p) {
    thr_arg *a = p;
    for (int it = 0; it < 20; it++) {
        int32_t *ids;
        size_t n;
        if (tok_encode(a->v, a->text, a->len, true, true, &ids, &n, NULL)) {
            a->bad++;
            continue;
        }
        if (n != a->n_want || memcmp(ids, a->want, n * sizeof *ids) != 0) a->bad++;
        nd_free(ids);
    }
    return NULL;
}

static void test_concurrent_encode(void) {
    const char *fx = t_fixtures();
    if (!fx) T_SKIP("no fixtures folder");
    char path[512];
    snprintf(path, sizeof path, "%s/vocab/ggml-vocab-gpt-2.gguf", fx);
    if (!file_exists(path)) T_SKIP("no %s", path);
    tok_vocab *v = load_vocab_file(path, NULL);
    if (!v) return;
    nd_buf text = {0};
    for (int i = 0; i < 200; i++)
        nd_buf_printf(&text, "Line %d: the quick brown fox's <|endoftext|> jumps \xc3\xa9t\xc3\xa9 %d\n", i, i * 37);
    int32_t *want;
    size_t nw;
    nd_err err = {0};
    T_EQ_INT(tok_encode(v, text.data, text.len, true, true, &want, &nw, &err), 0);
    thr_arg args[4];
    pthread_t th[4];
    for (int i = 0; i < 4; i++) {
        args[i] = (thr_arg){v, text.data, text.len, want, nw, 0};
        pthread_create(&th[i], NULL, thr_main, &args[i]);
    }
    for (int i = 0; i < 4; i++) {
        pthread_join(th[i], NULL);
        T_EQ_INT(args[i].bad, 0);
    }
    nd_free(want);
    nd_buf_free(&text);
    tok_free(v);
}

/* ================================================================ CLI */

static void test_cli(void) {
    const char *bin = getenv("NINDUB_BIN");
    const char *fx = t_fixtures();
    if (!bin || !fx) T_SKIP("NINDUB_BIN or fixtures not set");
    char cmd[2048];
    snprintf(cmd, sizeof cmd, "%s tokenize -m %s/models/aidreams260K-f32.gguf --count 'The dream of a machine' 2>&1", bin, fx);
    FILE *p = popen(cmd, "r");
    T_CHECK(p);
    if (!p) return;
    char line[256] = {0};
    char *got = fgets(line, sizeof line, p);
    int st = pclose(p);
    T_CHECK(got && atoi(line) == 14);
    T_EQ_INT(WEXITSTATUS(st), 0);
    snprintf(cmd, sizeof cmd, "%s tokenize --bogus >/dev/null 2>&1", bin);
    T_EQ_INT(WEXITSTATUS(system(cmd)), 2);
    snprintf(cmd, sizeof cmd, "%s tokenize -m /nonexistent.gguf hi >/dev/null 2>&1", bin);
    T_EQ_INT(WEXITSTATUS(system(cmd)), 1);
    snprintf(cmd, sizeof cmd, "%s tokenize -m %s/models/aidreams260K-f32.gguf --ids '1 368 430' 2>&1", bin, fx);
    p = popen(cmd, "r");
    memset(line, 0, sizeof line);
    got = fgets(line, sizeof line, p);
    pclose(p);
    T_CHECK(got && strncmp(line, "The", 3) == 0);
}

int main(void) {
    T_RUN(test_vocab_goldens);
    T_RUN(test_golden_json);
    T_RUN(test_small_spm);
    T_RUN(test_small_bpe);
    T_RUN(test_hostile_metadata);
    T_RUN(test_alloc_faults);
    T_RUN(test_stream_utf8);
    T_RUN(test_concurrent_encode);
    T_RUN(test_cli);
    return t_done();
}
