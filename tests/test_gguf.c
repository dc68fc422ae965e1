/* GGUF reader/writer: round trips, a corpus of malformed files, random corruption,
 * allocation-failure injection, and the fixture models. */
#include <dirent.h>
#include <unistd.h>

#include "gguf/gguf.h"
#include "t.h"

/* ------------------------------------------------------------ raw builder */

/* Builds files byte by byte, so each malformed case says exactly what it breaks. */
typedef struct raw {
    uint8_t b[8192];
    size_t n;
} raw;
static void r_le(raw *r, uint64_t v, int k) {
    for (int i = 0; i < k; i++) r->b[r->n++] = (uint8_t)(v >> (8 * i));
}
static void r_u32(raw *r, uint32_t v) { r_le(r, v, 4); }
static void r_u64(raw *r, uint64_t v) { r_le(r, v, 8); }
static void r_strn(raw *r, const char *s, size_t n) {
    r_u64(r, n);
    memcpy(r->b + r->n, s, n);
    r->n += n;
}
static void r_str(raw *r, const char *s) { r_strn(r, s, strlen(s)); }
static void r_header(raw *r, uint32_t version, uint64_t n_tensors, uint64_t n_kv) {
    r->n = 0;
    r_u32(r, GGUF_MAGIC);
    r_u32(r, version);
    r_u64(r, n_tensors);
    r_u64(r, n_kv);
}
static void r_kv_u32(raw *r, const char *key, uint32_t v) {
    r_str(r, key);
    r_u32(r, GGUF_VT_UINT32);
    r_u32(r, v);
}
/* tensor info: 2-D f32 [ne0, ne1] at offset */
static void r_tensor(raw *r, const char *name, uint32_t type, uint64_t ne0, uint64_t ne1, uint64_t off) {
    r_str(r, name);
    r_u32(r, 2);
    r_u64(r, ne0);
    r_u64(r, ne1);
    r_u32(r, type);
    r_u64(r, off);
}
/* Trailing zeros, so the header's plausibility check on counts does not fire first. */
static void r_tail(raw *r) {
    memset(r->b + r->n, 0, 64);
    r->n += 64;
}
static void r_pad_data(raw *r, size_t align, size_t data_bytes) {
    while (r->n % align) r->b[r->n++] = 0;
    memset(r->b + r->n, 0x3c, data_bytes);
    r->n += data_bytes;
}

/* Opens r; expects failure with `code` and a message containing `needle` (if given). */
static void expect_fail(raw *r, int code, const char *needle, const char *what) {
    nd_err err = {0};
    gguf_ctx *g = gguf_open_mem(r->b, r->n, &err);
    T_CHECKF(g == NULL, "%s: file was accepted", what);
    gguf_close(g);
    T_CHECKF(err.code == code, "%s: code %d (%s), expected %d; msg: %s", what, err.code,
             nd_strerror(err.code), code, err.msg);
    if (needle) T_CHECKF(strstr(err.msg, needle) != NULL, "%s: message '%s' lacks '%s'", what, err.msg, needle);
}

static void test_minimal_valid(void) {
    raw r;
    r_header(&r, 3, 1, 1);
    r_kv_u32(&r, "general.alignment", 64);
    r_tensor(&r, "w", ND_TYPE_F32, 4, 2, 0);
    r_pad_data(&r, 64, 32);
    nd_err err = {0};
    gguf_ctx *g = gguf_open_mem(r.b, r.n, &err);
    T_CHECKF(g != NULL, "%s", err.msg);
    if (!g) return;
    T_EQ_INT(g->alignment, 64);
    T_EQ_INT(g->data_offset % 64, 0);
    const gguf_tensor *t = gguf_find_tensor(g, "w");
    T_CHECK(t && t->nbytes == 32 && t->n_elems == 8 && t->data == r.b + g->data_offset);
    gguf_close(g);
    /* version 2 reads the same */
    r.b[4] = 2;
    g = gguf_open_mem(r.b, r.n, &err);
    T_CHECKF(g && g->version == 2, "%s", err.msg);
    gguf_close(g);
}

static void test_malformed_corpus(void) {
    raw r;
    /* header */
    r_header(&r, 3, 0, 0);
    r.b[0] = 'X';
    expect_fail(&r, ND_EFORMAT, "not a GGUF file", "bad magic");
    r_header(&r, 1, 0, 0);
    expect_fail(&r, ND_EUNSUPPORTED, "version 1", "version 1");
    r_header(&r, 4, 0, 0);
    expect_fail(&r, ND_EUNSUPPORTED, "version 4", "version 4");
    r_header(&r, 0x03000000u, 0, 0);
    expect_fail(&r, ND_EUNSUPPORTED, "big-endian", "big-endian");
    r_header(&r, 3, 1ull << 60, 0);
    expect_fail(&r, ND_EFORMAT, "tensor count", "huge tensor count");
    r_header(&r, 3, 0, UINT64_MAX);
    expect_fail(&r, ND_EFORMAT, "metadata count", "huge kv count");
    r_header(&r, 3, 0, 0);
    r.n = 10;
    expect_fail(&r, ND_EFORMAT, "truncated", "truncated header");

    /* metadata */
    r_header(&r, 3, 0, 1);
    r_u64(&r, 1ull << 62);
    r_tail(&r);
    expect_fail(&r, ND_EFORMAT, "exceeds the limit", "huge key length");
    r_header(&r, 3, 0, 1);
    r_u64(&r, 1000);
    r_u32(&r, 0);
    r_tail(&r);
    expect_fail(&r, ND_EFORMAT, "truncated", "key longer than file");
    r_header(&r, 3, 0, 1);
    r_strn(&r, "bad\xff\xfekey", 8);
    r_u32(&r, GGUF_VT_UINT32);
    r_u32(&r, 1);
    expect_fail(&r, ND_EFORMAT, "UTF-8", "non-UTF-8 key");
    r_header(&r, 3, 0, 1);
    r_str(&r, "");
    r_u32(&r, GGUF_VT_UINT32);
    r_u32(&r, 1);
    expect_fail(&r, ND_EFORMAT, "empty", "empty key");
    r_header(&r, 3, 0, 1);
    r_str(&r, "k");
    r_u32(&r, 99);
    r_u32(&r, 0);
    expect_fail(&r, ND_EFORMAT, "value type 99", "bad value type");
    r_header(&r, 3, 0, 1);
    r_str(&r, "flag");
    r_u32(&r, GGUF_VT_BOOL);
    r.b[r.n++] = 7;
    expect_fail(&r, ND_EFORMAT, "(flag)", "bool 7");
    r_header(&r, 3, 0, 2);
    r_kv_u32(&r, "a.b", 1);
    r_kv_u32(&r, "a.b", 2);
    expect_fail(&r, ND_EFORMAT, "'a.b' appears twice", "duplicate key");
    r_header(&r, 3, 0, 1);
    r_str(&r, "arr");
    r_u32(&r, GGUF_VT_ARRAY);
    r_u32(&r, GGUF_VT_UINT32);
    r_u64(&r, 1ull << 40);
    expect_fail(&r, ND_EFORMAT, "(arr)", "huge array");
    r_header(&r, 3, 0, 1);
    r_str(&r, "arr");
    r_u32(&r, GGUF_VT_ARRAY);
    r_u32(&r, GGUF_VT_STRING);
    r_u64(&r, 1000000);
    expect_fail(&r, ND_EFORMAT, "cannot fit", "string array count beyond file");
    r_header(&r, 3, 0, 1);
    r_str(&r, "arr");
    r_u32(&r, GGUF_VT_ARRAY);
    r_u32(&r, 42);
    r_u64(&r, 1);
    expect_fail(&r, ND_EFORMAT, "element type 42", "bad array elem type");
    r_header(&r, 3, 0, 1); /* arrays nested too deep */
    r_str(&r, "deep");
    r_u32(&r, GGUF_VT_ARRAY);
    for (int i = 0; i < 12; i++) {
        r_u32(&r, GGUF_VT_ARRAY);
        r_u64(&r, 1);
    }
    r_u32(&r, GGUF_VT_UINT8);
    r_u64(&r, 0);
    expect_fail(&r, ND_EFORMAT, "nested deeper", "deep nesting");
    r_header(&r, 3, 0, 1);
    r_kv_u32(&r, "general.alignment", 24);
    expect_fail(&r, ND_EFORMAT, "power of two", "alignment 24");
    r_header(&r, 3, 0, 1);
    r_kv_u32(&r, "general.alignment", 1u << 31);
    expect_fail(&r, ND_EFORMAT, "power of two up to", "alignment 2^31");
    r_header(&r, 3, 0, 1);
    r_kv_u32(&r, "general.alignment", 0);
    expect_fail(&r, ND_EFORMAT, "power of two", "alignment 0");
    r_header(&r, 3, 0, 1);
    r_str(&r, "general.alignment");
    r_u32(&r, GGUF_VT_UINT64);
    r_u64(&r, 32);
    expect_fail(&r, ND_EFORMAT, "uint32", "alignment wrong type");

    /* tensors */
    r_header(&r, 3, 1, 0);
    r_tensor(&r, "w", 99, 4, 2, 0);
    r_pad_data(&r, 32, 32);
    expect_fail(&r, ND_EFORMAT, "type 99", "bad tensor type");
    r_header(&r, 3, 1, 0);
    r_tensor(&r, "w", ND_TYPE_Q4_0, 40, 2, 0);
    r_pad_data(&r, 32, 64);
    expect_fail(&r, ND_EFORMAT, "block size", "row not multiple of block");
    r_header(&r, 3, 1, 0);
    r_tensor(&r, "w", ND_TYPE_F32, 0, 2, 0);
    r_pad_data(&r, 32, 32);
    expect_fail(&r, ND_EFORMAT, "(w)", "zero dim");
    r_header(&r, 3, 1, 0);
    r_tensor(&r, "w", ND_TYPE_F32, 1ull << 39, 1ull << 39, 0);
    r_pad_data(&r, 32, 32);
    expect_fail(&r, ND_EFORMAT, "too large", "dims overflow");
    r_header(&r, 3, 1, 0);
    r_str(&r, "w");
    r_u32(&r, 5);
    r_tail(&r);
    expect_fail(&r, ND_EFORMAT, "5 dimensions", "5 dims");
    r_header(&r, 3, 1, 0);
    r_str(&r, "w");
    r_u32(&r, 0);
    r_tail(&r);
    expect_fail(&r, ND_EFORMAT, "0 dimensions", "0 dims");
    r_header(&r, 3, 1, 0);
    r_tensor(&r, "w", ND_TYPE_F32, 4, 2, 64);
    r_pad_data(&r, 32, 32);
    expect_fail(&r, ND_EFORMAT, "outside the file", "offset out of range");
    r_header(&r, 3, 1, 0);
    r_tensor(&r, "w", ND_TYPE_F32, 4, 2, UINT64_MAX - 31);
    r_pad_data(&r, 32, 32);
    expect_fail(&r, ND_EFORMAT, "tensor 'w'", "offset overflow");
    r_header(&r, 3, 1, 0);
    r_tensor(&r, "w", ND_TYPE_F32, 4, 2, 4);
    r_pad_data(&r, 32, 64);
    expect_fail(&r, ND_EFORMAT, "alignment", "misaligned offset");
    r_header(&r, 3, 2, 0);
    r_tensor(&r, "a", ND_TYPE_F32, 16, 2, 0);
    r_tensor(&r, "b", ND_TYPE_F32, 4, 2, 64);
    r_pad_data(&r, 32, 160);
    expect_fail(&r, ND_EFORMAT, "overlap", "overlapping tensors");
    r_header(&r, 3, 2, 0);
    r_tensor(&r, "a", ND_TYPE_F32, 4, 2, 0);
    r_tensor(&r, "a", ND_TYPE_F32, 4, 2, 32);
    r_pad_data(&r, 32, 64);
    expect_fail(&r, ND_EFORMAT, "'a' appears twice", "duplicate tensor");
    r_header(&r, 3, 1, 0);
    r_strn(&r, "w\xc0\x80", 3);
    r_u32(&r, 1);
    r_tail(&r);
    expect_fail(&r, ND_EFORMAT, "UTF-8", "overlong UTF-8 tensor name");
}

/* ------------------------------------------------------ writer round trip */

static gguf_writer *sample_writer(float *data, size_t n) {
    gguf_writer *w = gguf_writer_new();
    if (!w) return NULL;
    gguf_writer_set_str(w, "general.architecture", "llama");
    gguf_writer_set_u32(w, "llama.block_count", 2);
    gguf_writer_set_i32(w, "test.i32", -7);
    gguf_writer_set_f32(w, "llama.rope.freq_base", 10000.0f);
    gguf_writer_set_f64(w, "test.f64", 0.125);
    gguf_writer_set_bool(w, "test.bool", true);
    gguf_writer_set_u64(w, "test.u64", 1ull << 40);
    gguf_writer_set_i8(w, "test.i8", -3);
    gguf_writer_set_u16(w, "test.u16", 65535);
    gguf_writer_set_i64(w, "test.i64", -(1ll << 40));
    const char *toks[] = {"<s>", "hello", "w\xc3\xb6rld", ""};
    gguf_writer_set_arr_str(w, "tokenizer.ggml.tokens", toks, NULL, 4);
    float sc[4] = {0, -1.5f, 2.25f, 3};
    gguf_writer_set_arr(w, "tokenizer.ggml.scores", GGUF_VT_FLOAT32, sc, 4);
    for (size_t i = 0; i < n; i++) data[i] = (float)i * 0.5f - 3;
    uint64_t ne[2] = {32, n / 32};
    gguf_writer_add_tensor(w, "blk.0.w", ND_TYPE_F32, 2, ne, data, NULL);
    uint64_t ne1[1] = {n};
    gguf_writer_add_tensor(w, "blk.0.v", ND_TYPE_F32, 1, ne1, data, NULL);
    return w;
}

static void test_writer_roundtrip(void) {
    float data[96];
    gguf_writer *w = sample_writer(data, 96);
    /* a nested array copied from a reader value */
    uint8_t inner_a[3] = {1, 2, 3}, inner_b[1] = {9};
    gguf_value elems[2] = {{.type = GGUF_VT_ARRAY, .arr = {.etype = GGUF_VT_UINT8, .n = 3, .data = inner_a}},
                           {.type = GGUF_VT_ARRAY, .arr = {.etype = GGUF_VT_UINT8, .n = 1, .data = inner_b}}};
    gguf_value nested = {.type = GGUF_VT_ARRAY, .arr = {.etype = GGUF_VT_ARRAY, .n = 2, .elems = elems}};
    T_EQ_INT(gguf_writer_set_value(w, "test.nested", &nested), 0);
    gguf_writer_set_u32(w, "llama.block_count", 3); /* replaces */
    uint8_t *buf = NULL;
    size_t len = 0;
    nd_err err = {0};
    T_EQ_INT(gguf_writer_write_mem(w, NULL, NULL, &buf, &len, &err), 0);
    gguf_ctx *g = gguf_open_mem(buf, len, &err);
    T_CHECKF(g != NULL, "%s", err.msg);
    if (g) {
        uint32_t u;
        int32_t i;
        float f;
        bool b;
        uint64_t u64;
        gguf_str s;
        T_EQ_INT(gguf_get_u32(g, "llama.block_count", &u, &err), 0);
        T_EQ_INT(u, 3);
        T_EQ_INT(gguf_get_arch_u32(g, "block_count", &u, &err), 0);
        T_EQ_INT(gguf_get_i32(g, "test.i32", &i, &err), 0);
        T_EQ_INT(i, -7);
        T_EQ_INT(gguf_get_u32(g, "test.i32", &u, &err), ND_ERANGE); /* negative into unsigned */
        T_EQ_INT(gguf_get_u32(g, "test.u64", &u, &err), ND_ERANGE);
        T_EQ_INT(gguf_get_u64(g, "test.u64", &u64, &err), 0);
        T_EQ_INT(u64, 1ull << 40);
        T_EQ_INT(gguf_get_i32(g, "test.i8", &i, &err), 0);
        T_EQ_INT(i, -3);
        T_EQ_INT(gguf_get_u32(g, "test.u16", &u, &err), 0);
        T_EQ_INT(u, 65535);
        T_EQ_INT(gguf_get_i32(g, "test.i64", &i, &err), ND_ERANGE);
        T_EQ_INT(gguf_get_arch_f32(g, "rope.freq_base", &f, &err), 0);
        T_NEAR(f, 10000.0, 0);
        T_EQ_INT(gguf_get_f32(g, "test.f64", &f, &err), 0);
        T_NEAR(f, 0.125, 0);
        T_EQ_INT(gguf_get_bool(g, "test.bool", &b, &err), 0);
        T_CHECK(b);
        T_EQ_INT(gguf_get_str(g, "general.architecture", &s, &err), 0);
        T_CHECK(gguf_str_eq(s, "llama"));
        T_EQ_INT(gguf_get_str(g, "test.bool", &s, &err), ND_ETYPE);
        T_CHECK(strstr(err.msg, "test.bool") != NULL);
        T_EQ_INT(gguf_get_u32(g, "missing.key", &u, &err), ND_ENOTFOUND);
        const gguf_array *a;
        T_EQ_INT(gguf_get_arr(g, "tokenizer.ggml.tokens", GGUF_VT_STRING, &a, &err), 0);
        T_CHECK(a->n == 4 && gguf_str_eq(a->strs[2], "w\xc3\xb6rld") && a->strs[3].len == 0);
        T_EQ_INT(gguf_get_arr(g, "tokenizer.ggml.scores", GGUF_VT_INT32, &a, &err), ND_ETYPE);
        T_EQ_INT(gguf_get_arr(g, "tokenizer.ggml.scores", GGUF_VT_FLOAT32, &a, &err), 0);
        T_NEAR(gguf_arr_f64(a, 1), -1.5, 0);
        T_EQ_INT(gguf_get_arr(g, "test.nested", GGUF_VT_ARRAY, &a, &err), 0);
        T_CHECK(a->n == 2 && a->elems[0].arr.n == 3 && gguf_arr_i64(&a->elems[0].arr, 2) == 3 &&
                gguf_arr_i64(&a->elems[1].arr, 0) == 9);
        const gguf_tensor *t = gguf_find_tensor(g, "blk.0.w");
        T_CHECK(t && t->ne[0] == 32 && t->ne[1] == 3 && t->n_dims == 2);
        if (t) T_CHECK(!memcmp(t->data, data, sizeof data));
        t = gguf_find_tensor(g, "blk.0.v");
        T_CHECK(t && t->n_dims == 1 && (t->offset % 32) == 0);
        T_CHECK(gguf_find_tensor(g, "nope") == NULL);

        /* copy every value through set_value: the bytes must be identical */
        gguf_writer *w2 = gguf_writer_new();
        for (uint64_t k = 0; k < g->n_kv; k++) gguf_writer_set_value(w2, g->kv[k].key, &g->kv[k].val);
        for (uint64_t k = 0; k < g->n_tensors; k++) {
            const gguf_tensor *tk = &g->tensors[k];
            gguf_writer_add_tensor(w2, tk->name, tk->type, tk->n_dims, tk->ne, tk->data, NULL);
        }
        uint8_t *buf2 = NULL;
        size_t len2 = 0;
        T_EQ_INT(gguf_writer_write_mem(w2, NULL, NULL, &buf2, &len2, &err), 0);
        T_CHECK(len2 == len && buf2 && !memcmp(buf, buf2, len));
        nd_free(buf2);
        gguf_writer_free(w2);
        gguf_close(g);
    }
    nd_free(buf);
    gguf_writer_free(w);
}

static int fill_cb(void *user, uint64_t index, void *dst, uint64_t nbytes, nd_err *err) {
    (void)user;
    if (index == 1) return nd_seterr(err, ND_EIO, "simulated failure");
    memset(dst, 0x11, nbytes);
    return 0;
}

static void test_writer_file_atomic(void) {
    float data[64];
    gguf_writer *w = sample_writer(data, 64);
    char path[] = "build/test_gguf_XXXXXX";
    int fd = mkstemp(path);
    T_CHECK(fd >= 0);
    if (fd < 0) return;
    close(fd);
    nd_err err = {0};
    T_EQ_INT(gguf_writer_write(w, path, NULL, NULL, &err), 0);
    gguf_ctx *g = gguf_open(path, &err);
    T_CHECKF(g != NULL, "%s", err.msg);
    gguf_close(g);
    /* a failing fill leaves the previous file untouched and no temp file behind */
    uint64_t ne[1] = {32};
    gguf_writer_add_tensor(w, "filled", ND_TYPE_F32, 1, ne, NULL, NULL);
    gguf_writer *w3 = gguf_writer_new();
    gguf_writer_add_tensor(w3, "a", ND_TYPE_F32, 1, ne, NULL, NULL);
    gguf_writer_add_tensor(w3, "b", ND_TYPE_F32, 1, ne, NULL, NULL);
    T_EQ_INT(gguf_writer_write(w3, path, fill_cb, NULL, &err), ND_EIO);
    T_CHECK(strstr(err.msg, "simulated") != NULL);
    g = gguf_open(path, &err);
    T_CHECKF(g && g->n_tensors == 2, "previous file damaged: %s", err.msg);
    gguf_close(g);
    DIR *d = opendir("build");
    struct dirent *e;
    int tmps = 0;
    while (d && (e = readdir(d)))
        if (strstr(e->d_name, path + 6) && strstr(e->d_name, ".tmp.")) tmps++;
    if (d) closedir(d);
    T_EQ_INT(tmps, 0);
    T_EQ_INT(gguf_writer_write(w, "/nonexistent-dir/x.gguf", NULL, NULL, &err), ND_EIO);
    T_CHECK(strstr(err.msg, "/nonexistent-dir") != NULL);
    /* writer-side validation */
    T_CHECK(gguf_writer_add_tensor(w, "q", ND_TYPE_Q4_0, 1, (uint64_t[]){33}, NULL, &err) < 0);
    T_CHECK(gguf_writer_add_tensor(w, "filled", ND_TYPE_F32, 1, ne, NULL, &err) < 0);
    T_CHECK(gguf_writer_set_u32(w, "bad\xff", 1) < 0);
    gguf_writer_set_u32(w, "general.alignment", 48);
    uint8_t *mb = NULL;
    size_t ml;
    T_EQ_INT(gguf_writer_write_mem(w, NULL, NULL, &mb, &ml, &err), ND_EINVAL);
    T_CHECK(strstr(err.msg, "alignment") != NULL);
    unlink(path);
    gguf_writer_free(w);
    gguf_writer_free(w3);
}

/* Every truncation of a valid file inside its tensor data must fail cleanly, and random
 * byte corruption must never crash (ASan watches in `make check`). */
static void test_truncation_and_corruption(void) {
    float data[64];
    gguf_writer *w = sample_writer(data, 64);
    uint8_t *buf = NULL;
    size_t len = 0;
    T_EQ_INT(gguf_writer_write_mem(w, NULL, NULL, &buf, &len, NULL), 0);
    gguf_writer_free(w);
    nd_err err;
    size_t data_end = len; /* last tensor (64 f32) ends exactly at len: 256 is 32-aligned */
    int accepted = 0;
    for (size_t n = 0; n < data_end; n++) {
        uint8_t *copy = nd_malloc(n ? n : 1); /* exact-size copy: ASan sees any over-read */
        memcpy(copy, buf, n);
        gguf_ctx *g = gguf_open_mem(copy, n, &err);
        if (g) accepted++;
        gguf_close(g);
        nd_free(copy);
    }
    T_EQ_INT(accepted, 0);
    unsigned long long seed = 42;
    uint8_t *copy = nd_malloc(len);
    int ok = 0, failed = 0;
    for (int it = 0; it < 20000; it++) {
        memcpy(copy, buf, len);
        int flips = 1 + (int)(t_rand_u64(&seed) % 4);
        for (int f = 0; f < flips; f++) {
            size_t pos = (size_t)(t_rand_u64(&seed) % (len < 600 ? len : 600)); /* header region */
            copy[pos] = (uint8_t)t_rand_u64(&seed);
        }
        gguf_ctx *g = gguf_open_mem(copy, len, &err);
        if (g) {
            ok++;
            /* walk everything a reader would touch */
            for (uint64_t k = 0; k < g->n_tensors; k++) {
                const uint8_t *p = g->tensors[k].data;
                volatile uint8_t s = 0;
                for (uint64_t j = 0; j < g->tensors[k].nbytes; j++) s ^= p[j];
            }
        } else {
            failed++;
            T_CHECK(err.msg[0] != 0);
        }
        gguf_close(g);
    }
    T_CHECK(failed > 0);
    printf("  corruption: %d accepted, %d rejected cleanly\n", ok, failed);
    nd_free(copy);
    nd_free(buf);
}

static void test_alloc_failures(void) {
    float data[64];
    gguf_writer *w = sample_writer(data, 64);
    uint8_t *buf = NULL;
    size_t len = 0;
    T_EQ_INT(gguf_writer_write_mem(w, NULL, NULL, &buf, &len, NULL), 0);
    gguf_writer_free(w);
    int fails = 0;
    for (long n = 0; n < 1000; n++) {
        nd_err err = {0};
        nd_alloc_fail_after(n);
        gguf_ctx *g = gguf_open_mem(buf, len, &err);
        nd_alloc_fail_after(-1);
        if (g) {
            gguf_close(g);
            break;
        }
        T_EQ_INT(err.code, ND_ENOMEM);
        fails++;
    }
    T_CHECK(fails > 3);
    /* writer under allocation failure: either succeeds or reports ENOMEM */
    for (long n = 0; n < 200; n++) {
        nd_alloc_fail_after(n);
        gguf_writer *w2 = sample_writer(data, 64);
        uint8_t *b2 = NULL;
        size_t l2;
        nd_err err = {0};
        int rc = w2 ? gguf_writer_write_mem(w2, NULL, NULL, &b2, &l2, &err) : ND_ENOMEM;
        nd_alloc_fail_after(-1);
        if (rc == 0) T_CHECK(l2 == len && !memcmp(b2, buf, len));
        else T_CHECKF(rc == ND_ENOMEM || rc == ND_EINVAL, "rc %d", rc);
        nd_free(b2);
        gguf_writer_free(w2);
        if (rc == 0) break;
    }
    nd_free(buf);
}

/* Every fixture GGUF opens, and every tensor lies inside the file. */
static void test_fixture_files(void) {
    const char *fx = t_fixtures();
    if (!fx) T_SKIP("fixtures not found (set NINDUB_FIXTURES)");
    const char *sub[] = {"models", "vocab"};
    int n = 0;
    for (int s = 0; s < 2; s++) {
        char dir[1024];
        snprintf(dir, sizeof dir, "%s/%s", fx, sub[s]);
        DIR *d = opendir(dir);
        struct dirent *e;
        while (d && (e = readdir(d))) {
            size_t l = strlen(e->d_name);
            if (l < 5 || strcmp(e->d_name + l - 5, ".gguf")) continue;
            char path[2048];
            snprintf(path, sizeof path, "%s/%s", dir, e->d_name);
            nd_err err = {0};
            gguf_ctx *g = gguf_open(path, &err);
            T_CHECKF(g != NULL, "%s", err.msg);
            if (g) {
                gguf_str arch;
                T_CHECKF(gguf_get_str(g, "general.architecture", &arch, &err) == 0, "%s: %s", path, err.msg);
                n++;
            }
            gguf_close(g);
        }
        if (d) closedir(d);
    }
    T_CHECK(n > 0);
    printf("  %d fixture files parsed\n", n);
}

static void test_fp16_bf16(void) {
    /* exhaustive: every finite half round-trips exactly through float */
    int bad = 0;
    for (uint32_t h = 0; h < 65536; h++) {
        if ((h & 0x7c00) == 0x7c00 && (h & 0x3ff)) continue; /* nan */
        if (nd_fp32_to_fp16(nd_fp16_to_fp32((uint16_t)h)) != h) bad++;
    }
    T_EQ_INT(bad, 0);
    T_EQ_INT(nd_fp32_to_fp16(1.0f), 0x3c00);
    T_EQ_INT(nd_fp32_to_fp16(65520.0f), 0x7c00);      /* rounds to inf */
    T_EQ_INT(nd_fp32_to_fp16(1.0f + 1.0f / 2048), 0x3c00); /* tie to even */
    T_EQ_INT(nd_fp32_to_fp16(5.9604645e-08f), 0x0001);
    T_EQ_INT(nd_fp32_to_fp16(2.9802322e-08f), 0x0000); /* tie to even -> 0 */
    T_EQ_INT(nd_fp32_to_bf16(1.0f), 0x3f80);
    T_NEAR(nd_bf16_to_fp32(nd_fp32_to_bf16(3.140625f)), 3.140625, 0);
    T_CHECK(isnan(nd_bf16_to_fp32(nd_fp32_to_bf16(NAN))));
}

static void test_type_traits(void) {
    T_CHECK(nd_type_info(ND_TYPE_Q4_K) && nd_type_info(ND_TYPE_Q4_K)->bytes == 144);
    T_CHECK(nd_type_info(4) == NULL && nd_type_info(1000) == NULL);
    T_EQ_INT(nd_type_from_name("Q8_0"), ND_TYPE_Q8_0);
    T_EQ_INT(nd_type_from_name("q6_k"), ND_TYPE_Q6_K);
    T_EQ_INT(nd_type_from_name("nope"), -1);
    uint64_t b;
    T_EQ_INT(nd_row_bytes(ND_TYPE_Q6_K, 512, &b, NULL), 0);
    T_EQ_INT(b, 420);
    T_EQ_INT(nd_row_bytes(ND_TYPE_Q6_K, 100, &b, NULL), ND_EFORMAT);
    T_EQ_INT(nd_row_bytes(ND_TYPE_F32, UINT64_MAX / 2, &b, NULL), ND_ERANGE);
}

static void test_utf8(void) {
    T_CHECK(nd_utf8_valid("h\xc3\xa9llo \xe2\x96\x81 \xf0\x9f\x98\x80", 15));
    T_CHECK(!nd_utf8_valid("\xc0\xaf", 2));         /* overlong */
    T_CHECK(!nd_utf8_valid("\xed\xa0\x80", 3));     /* surrogate */
    T_CHECK(!nd_utf8_valid("\xf4\x90\x80\x80", 4)); /* > U+10FFFF */
    T_CHECK(!nd_utf8_valid("\xe2\x96", 2));         /* truncated */
    char b[4];
    T_EQ_INT(nd_utf8_encode(0x2581, b), 3);
    T_CHECK(!memcmp(b, "\xe2\x96\x81", 3));
}

int main(void) {
    T_RUN(test_minimal_valid);
    T_RUN(test_malformed_corpus);
    T_RUN(test_writer_roundtrip);
    T_RUN(test_writer_file_atomic);
    T_RUN(test_truncation_and_corruption);
    T_RUN(test_alloc_failures);
    T_RUN(test_fixture_files);
    T_RUN(test_fp16_bf16);
    T_RUN(test_type_traits);
    T_RUN(test_utf8);
    return t_done();
}
