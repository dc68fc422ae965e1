/* Allocation wrappers with a per-thread fault-injection countdown (for tests that loop
 * "fail the n-th allocation" over model load and request handling), and nd_buf. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>

#include "core/nd.h"

/* Test hook state. Thread-local so concurrent users never see each other's countdown. */
static _Thread_local long fail_after = -1;
static _Thread_local long alloc_count;

void nd_alloc_fail_after(long n) { fail_after = n; }
long nd_alloc_count(void) { return alloc_count; }

static bool should_fail(void) {
    alloc_count++;
    if (fail_after < 0) return false;
    if (fail_after == 0) return true; /* stays failing until reset */
    fail_after--;
    return false;
}

void *nd_malloc(size_t n) {
    if (should_fail()) return NULL;
    return malloc(n ? n : 1);
}

void *nd_calloc(size_t count, size_t size) {
    if (should_fail()) return NULL;
    if (!count || !size) count = size = 1;
    return calloc(count, size);
}

#define HUGE_PAGE ((size_t)2 << 20)

void *nd_huge_alloc(size_t n, size_t *size) {
    if (should_fail() || n > SIZE_MAX - 2 * HUGE_PAGE) return NULL;
    const size_t sz = (n + HUGE_PAGE - 1) & ~(HUGE_PAGE - 1);
    /* over-allocate by one huge page and trim, so the buffer starts on a 2 MiB boundary */
    uint8_t *raw = mmap(NULL, sz + HUGE_PAGE, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
    if (raw == MAP_FAILED) return NULL;
    uint8_t *base = (uint8_t *)(((uintptr_t)raw + HUGE_PAGE - 1) & ~(uintptr_t)(HUGE_PAGE - 1));
    if (base > raw) munmap(raw, (size_t)(base - raw));
    if (base + sz < raw + sz + HUGE_PAGE) munmap(base + sz, (size_t)(raw + sz + HUGE_PAGE - (base + sz)));
#ifdef MADV_HUGEPAGE
    madvise(base, sz, MADV_HUGEPAGE); /* advice only: without THP it is an ordinary mapping */
#endif
    *size = sz;
    return base;
}

void nd_huge_free(void *p, size_t size) {
    if (p) munmap(p, size);
}

void *nd_realloc(void *p, size_t n) {
    if (should_fail()) return NULL;
    return realloc(p, n ? n : 1);
}

char *nd_strndup(const char *s, size_t n) {
    char *d = nd_malloc(n + 1);
    if (!d) return NULL;
    memcpy(d, s, n);
    d[n] = 0;
    return d;
}

char *nd_strdup(const char *s) { return nd_strndup(s, strlen(s)); }

void nd_free(void *p) { free(p); }

int nd_buf_reserve(nd_buf *b, size_t extra) {
    uint64_t need;
    if (!nd_add_ok(b->len, extra, &need) || !nd_add_ok(need, 1, &need)) return ND_ENOMEM;
    if (need <= b->cap) return 0;
    size_t cap = b->cap ? b->cap : 64;
    while (cap < need) {
        if (cap > SIZE_MAX / 2) { cap = need; break; }
        cap *= 2;
    }
    char *d = nd_realloc(b->data, cap);
    if (!d) return ND_ENOMEM;
    b->data = d;
    b->cap = cap;
    return 0;
}

int nd_buf_append(nd_buf *b, const void *p, size_t n) {
    if (nd_buf_reserve(b, n)) return ND_ENOMEM;
    if (n) memcpy(b->data + b->len, p, n);
    b->len += n;
    b->data[b->len] = 0;
    return 0;
}

int nd_buf_printf(nd_buf *b, const char *fmt, ...) {
    va_list ap;
    va_start(ap, fmt);
    int n = vsnprintf(NULL, 0, fmt, ap);
    va_end(ap);
    if (n < 0) return ND_EINVAL;
    if (nd_buf_reserve(b, (size_t)n)) return ND_ENOMEM;
    va_start(ap, fmt);
    vsnprintf(b->data + b->len, (size_t)n + 1, fmt, ap);
    va_end(ap);
    b->len += (size_t)n;
    return 0;
}

void nd_buf_free(nd_buf *b) {
    nd_free(b->data);
    b->data = NULL;
    b->len = b->cap = 0;
}
