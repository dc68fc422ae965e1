/* core: SHA-256 vectors, nd_buf, error helpers, allocation fault injection. */
#include "core/nd.h"
#include "core/sha256.h"
#include "t.h"

static void hash_hex(const void *p, size_t n, size_t piece, char hex[65]) {
    nd_sha256 s;
    uint8_t d[32];
    nd_sha256_init(&s);
    for (size_t i = 0; i < n; i += piece) nd_sha256_update(&s, (const char *)p + i, n - i < piece ? n - i : piece);
    nd_sha256_final(&s, d);
    nd_sha256_hex(d, hex);
}

static void test_sha256(void) {
    char h[65];
    hash_hex("", 0, 1, h);
    T_EQ_STR(h, "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855");
    hash_hex("abc", 3, 1, h);
    T_EQ_STR(h, "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad");
    const char *m = "abcdbcdecdefdefgefghfghighijhijkijkljklmklmnlmnomnopnopq";
    for (size_t piece = 1; piece <= 64; piece *= 3) { /* block boundaries crossed every way */
        hash_hex(m, strlen(m), piece, h);
        T_EQ_STR(h, "248d6a61d20638b8e5c026930c3e6039a33ce45964ff2167f6ecedd419db06c1");
    }
    static char a[1000000];
    memset(a, 'a', sizeof a);
    hash_hex(a, sizeof a, 4096, h);
    T_EQ_STR(h, "cdc76e5c9914fb9281a1c7e284d73e67f1809a48a497200e046d39ccc7112cd0");
}

static void test_buf_and_errors(void) {
    nd_buf b = {0};
    for (int i = 0; i < 1000; i++) T_EQ_INT(nd_buf_printf(&b, "%d,", i), 0);
    T_CHECK(b.len == strlen(b.data) && !strncmp(b.data, "0,1,2,", 6));
    nd_buf_free(&b);
    T_CHECK(b.data == NULL && b.len == 0);
    nd_err e = {0};
    T_EQ_INT(nd_seterr(&e, ND_EFORMAT, "bad %s", "thing"), ND_EFORMAT);
    nd_preerr(&e, "file.gguf: ");
    T_EQ_STR(e.msg, "file.gguf: bad thing");
    T_EQ_INT(nd_seterr(NULL, ND_EIO, "x"), ND_EIO); /* NULL err is fine */
    char longp[600];
    memset(longp, 'p', sizeof longp - 1);
    longp[sizeof longp - 1] = 0;
    nd_preerr(&e, "%s", longp); /* truncated, still terminated */
    T_EQ_INT(strlen(e.msg), ND_ERR_MSG - 1);
    T_EQ_STR(nd_strerror(ND_ENOMEM), "out of memory");
}

static void test_alloc_fault_injection(void) {
    nd_alloc_fail_after(2);
    void *a = nd_malloc(8), *b = nd_malloc(8), *c = nd_malloc(8), *d = nd_calloc(1, 8);
    nd_alloc_fail_after(-1);
    T_CHECK(a && b && !c && !d);
    nd_free(a);
    nd_free(b);
    nd_free(NULL);
    nd_buf buf = {0};
    nd_alloc_fail_after(0);
    T_EQ_INT(nd_buf_append(&buf, "x", 1), ND_ENOMEM);
    nd_alloc_fail_after(-1);
    T_CHECK(buf.data == NULL);
}

static void test_read_file(void) {
    char *s = NULL;
    size_t n = 0;
    nd_err e = {0};
    T_EQ_INT(nd_read_file("/nonexistent/x", &s, &n, &e), ND_EIO);
    T_CHECK(strstr(e.msg, "/nonexistent/x") != NULL);
    T_EQ_INT(nd_read_file("tests/t.h", &s, &n, &e), 0);
    T_CHECK(s && n > 100 && s[n] == 0);
    nd_free(s);
    nd_map m;
    T_EQ_INT(nd_map_open(&m, "tests", &e), ND_EIO); /* a folder */
}

int main(void) {
    T_RUN(test_sha256);
    T_RUN(test_buf_and_errors);
    T_RUN(test_alloc_fault_injection);
    T_RUN(test_read_file);
    return t_done();
}
