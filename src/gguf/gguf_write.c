/* GGUF writer. Metadata values are serialised into their final byte form when set, so
 * writing is a concatenation; tensors are referenced (or produced by a fill callback)
 * and written after the aligned header. Files appear atomically: temp file, fsync, rename. */
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <sys/stat.h>
#include <string.h>
#include <unistd.h>

#include "gguf/gguf.h"

typedef struct wkv {
    char *key;
    nd_buf blob; /* u32 type + value bytes, exactly as in the file */
} wkv;

typedef struct wtensor {
    char *name;
    uint32_t type, n_dims;
    uint64_t ne[GGUF_MAX_DIMS];
    uint64_t nbytes, offset;
    const void *data;
} wtensor;

struct gguf_writer {
    uint32_t version;
    wkv *kv;
    size_t n_kv, cap_kv;
    wtensor *t;
    size_t n_t, cap_t;
    int oom; /* a setter ran out of memory: writing fails */
};

gguf_writer *gguf_writer_new(void) {
    gguf_writer *w = nd_calloc(1, sizeof *w);
    if (w) w->version = 3;
    return w;
}

void gguf_writer_free(gguf_writer *w) {
    if (!w) return;
    for (size_t i = 0; i < w->n_kv; i++) {
        nd_free(w->kv[i].key);
        nd_buf_free(&w->kv[i].blob);
    }
    for (size_t i = 0; i < w->n_t; i++) nd_free(w->t[i].name);
    nd_free(w->kv);
    nd_free(w->t);
    nd_free(w);
}

void gguf_writer_set_version(gguf_writer *w, uint32_t version) { w->version = version; }

/* ------------------------------------------------------------ serialising */

static int put_le(nd_buf *b, uint64_t v, int n) {
    uint8_t tmp[8];
    for (int i = 0; i < n; i++) tmp[i] = (uint8_t)(v >> (8 * i));
    return nd_buf_append(b, tmp, (size_t)n);
}

static int put_str(nd_buf *b, const char *s, uint64_t len) {
    return put_le(b, len, 8) || nd_buf_append(b, s, len) ? ND_ENOMEM : 0;
}

static bool key_ok(const char *key) { return key && *key && nd_utf8_valid(key, strlen(key)); }

/* A setter failed: a bad key is the caller's mistake (ND_EINVAL); anything else is memory,
 * which also poisons the writer so that writing reports it. */
static int set_failed(gguf_writer *w, const char *key) {
    if (!key_ok(key)) return ND_EINVAL;
    w->oom = 1;
    return ND_ENOMEM;
}

/* Returns the blob of `key`, creating or emptying it. */
static nd_buf *kv_slot(gguf_writer *w, const char *key) {
    if (!key_ok(key)) return NULL;
    for (size_t i = 0; i < w->n_kv; i++)
        if (!strcmp(w->kv[i].key, key)) {
            w->kv[i].blob.len = 0;
            return &w->kv[i].blob;
        }
    if (w->n_kv == w->cap_kv) {
        size_t cap = w->cap_kv ? w->cap_kv * 2 : 16;
        wkv *n = nd_realloc(w->kv, cap * sizeof *n);
        if (!n) return NULL;
        w->kv = n;
        w->cap_kv = cap;
    }
    wkv *kv = &w->kv[w->n_kv];
    memset(kv, 0, sizeof *kv);
    if (!(kv->key = nd_strdup(key))) return NULL;
    w->n_kv++;
    return &kv->blob;
}

static int set_scalar(gguf_writer *w, const char *key, gguf_vtype t, uint64_t raw, int n) {
    nd_buf *b = kv_slot(w, key);
    if (!b || put_le(b, t, 4) || put_le(b, raw, n)) return set_failed(w, key);
    return 0;
}

int gguf_writer_set_u8(gguf_writer *w, const char *k, uint8_t v) { return set_scalar(w, k, GGUF_VT_UINT8, v, 1); }
int gguf_writer_set_i8(gguf_writer *w, const char *k, int8_t v) { return set_scalar(w, k, GGUF_VT_INT8, (uint8_t)v, 1); }
int gguf_writer_set_u16(gguf_writer *w, const char *k, uint16_t v) { return set_scalar(w, k, GGUF_VT_UINT16, v, 2); }
int gguf_writer_set_i16(gguf_writer *w, const char *k, int16_t v) { return set_scalar(w, k, GGUF_VT_INT16, (uint16_t)v, 2); }
int gguf_writer_set_u32(gguf_writer *w, const char *k, uint32_t v) { return set_scalar(w, k, GGUF_VT_UINT32, v, 4); }
int gguf_writer_set_i32(gguf_writer *w, const char *k, int32_t v) { return set_scalar(w, k, GGUF_VT_INT32, (uint32_t)v, 4); }
int gguf_writer_set_u64(gguf_writer *w, const char *k, uint64_t v) { return set_scalar(w, k, GGUF_VT_UINT64, v, 8); }
int gguf_writer_set_i64(gguf_writer *w, const char *k, int64_t v) { return set_scalar(w, k, GGUF_VT_INT64, (uint64_t)v, 8); }
int gguf_writer_set_bool(gguf_writer *w, const char *k, bool v) { return set_scalar(w, k, GGUF_VT_BOOL, v, 1); }
int gguf_writer_set_f32(gguf_writer *w, const char *k, float v) {
    union { float f; uint32_t u; } u = {.f = v};
    return set_scalar(w, k, GGUF_VT_FLOAT32, u.u, 4);
}
int gguf_writer_set_f64(gguf_writer *w, const char *k, double v) {
    union { double f; uint64_t u; } u = {.f = v};
    return set_scalar(w, k, GGUF_VT_FLOAT64, u.u, 8);
}

int gguf_writer_set_strn(gguf_writer *w, const char *key, const char *v, size_t len) {
    nd_buf *b = kv_slot(w, key);
    if (!b || put_le(b, GGUF_VT_STRING, 4) || put_str(b, v, len)) return set_failed(w, key);
    return 0;
}

int gguf_writer_set_str(gguf_writer *w, const char *key, const char *v) {
    return gguf_writer_set_strn(w, key, v, strlen(v));
}

static const uint8_t elem_size[GGUF_VT_COUNT] = {1, 1, 2, 2, 4, 4, 4, 1, 0, 0, 8, 8, 8};

int gguf_writer_set_arr(gguf_writer *w, const char *key, gguf_vtype etype, const void *data,
                        uint64_t n) {
    if ((unsigned)etype >= GGUF_VT_COUNT || !elem_size[etype]) return ND_EINVAL;
    uint64_t bytes;
    if (!nd_mul_ok(n, elem_size[etype], &bytes) || bytes > SIZE_MAX) return ND_ERANGE;
    nd_buf *b = kv_slot(w, key);
    if (!b || put_le(b, GGUF_VT_ARRAY, 4) || put_le(b, etype, 4) || put_le(b, n, 8) ||
        nd_buf_append(b, data, (size_t)bytes)) return set_failed(w, key);
    return 0;
}

int gguf_writer_set_arr_str(gguf_writer *w, const char *key, const char *const *strs,
                            const size_t *lens, uint64_t n) {
    nd_buf *b = kv_slot(w, key);
    int rc = !b || put_le(b, GGUF_VT_ARRAY, 4) || put_le(b, GGUF_VT_STRING, 4) || put_le(b, n, 8);
    for (uint64_t i = 0; i < n && !rc; i++)
        rc = put_str(b, strs[i], lens ? lens[i] : strlen(strs[i]));
    if (rc) return set_failed(w, key);
    return 0;
}

static int put_array(nd_buf *b, const gguf_array *a) {
    if (put_le(b, a->etype, 4) || put_le(b, a->n, 8)) return ND_ENOMEM;
    if (a->etype == GGUF_VT_STRING) {
        for (uint64_t i = 0; i < a->n; i++)
            if (put_str(b, a->strs[i].ptr, a->strs[i].len)) return ND_ENOMEM;
        return 0;
    }
    if (a->etype == GGUF_VT_ARRAY) {
        for (uint64_t i = 0; i < a->n; i++)
            if (put_array(b, &a->elems[i].arr)) return ND_ENOMEM;
        return 0;
    }
    return nd_buf_append(b, a->data, a->n * elem_size[a->etype]);
}

int gguf_writer_set_value(gguf_writer *w, const char *key, const gguf_value *v) {
    if ((unsigned)v->type >= GGUF_VT_COUNT) return ND_EINVAL;
    nd_buf *b = kv_slot(w, key);
    int rc = !b || put_le(b, v->type, 4);
    if (!rc) {
        switch (v->type) {
        case GGUF_VT_STRING: rc = put_str(b, v->str.ptr, v->str.len); break;
        case GGUF_VT_ARRAY: rc = put_array(b, &v->arr); break;
        case GGUF_VT_FLOAT32: {
            union { float f; uint32_t u; } u = {.f = (float)v->f64};
            rc = put_le(b, u.u, 4);
            break;
        }
        case GGUF_VT_FLOAT64: {
            union { double f; uint64_t u; } u = {.f = v->f64};
            rc = put_le(b, u.u, 8);
            break;
        }
        case GGUF_VT_BOOL: rc = put_le(b, v->b, 1); break;
        case GGUF_VT_INT8: case GGUF_VT_INT16: case GGUF_VT_INT32: case GGUF_VT_INT64:
            rc = put_le(b, (uint64_t)v->i64, elem_size[v->type]);
            break;
        default: rc = put_le(b, v->u64, elem_size[v->type]); break;
        }
    }
    if (rc) return set_failed(w, key);
    return 0;
}

int gguf_writer_remove(gguf_writer *w, const char *key) {
    for (size_t i = 0; i < w->n_kv; i++)
        if (!strcmp(w->kv[i].key, key)) {
            nd_free(w->kv[i].key);
            nd_buf_free(&w->kv[i].blob);
            memmove(&w->kv[i], &w->kv[i + 1], (w->n_kv - i - 1) * sizeof *w->kv);
            w->n_kv--;
            return 0;
        }
    return ND_ENOTFOUND;
}

/* ----------------------------------------------------------------- tensors */

int gguf_writer_add_tensor(gguf_writer *w, const char *name, uint32_t type, uint32_t n_dims,
                           const uint64_t *ne, const void *data, nd_err *err) {
    if (!name || !*name || !nd_utf8_valid(name, strlen(name)))
        return nd_seterr(err, ND_EINVAL, "tensor name is empty or not UTF-8");
    if (n_dims < 1 || n_dims > GGUF_MAX_DIMS)
        return nd_seterr(err, ND_EINVAL, "tensor '%s': %u dimensions (1..4 allowed)", name, n_dims);
    for (size_t i = 0; i < w->n_t; i++)
        if (!strcmp(w->t[i].name, name))
            return nd_seterr(err, ND_EINVAL, "tensor '%s' added twice", name);
    wtensor t = {.type = type, .n_dims = n_dims, .data = data};
    uint64_t rows = 1;
    for (int d = 0; d < GGUF_MAX_DIMS; d++) t.ne[d] = 1;
    for (uint32_t d = 0; d < n_dims; d++) {
        t.ne[d] = ne[d];
        if (!ne[d] || (d > 0 && !nd_mul_ok(rows, ne[d], &rows)))
            return nd_seterr(err, ND_EINVAL, "tensor '%s': bad dimension %u", name, d);
    }
    uint64_t rowb;
    int rc = nd_row_bytes(type, t.ne[0], &rowb, err);
    if (rc) return nd_preerr(err, "tensor '%s': ", name);
    if (!nd_mul_ok(rowb, rows, &t.nbytes)) return nd_seterr(err, ND_ERANGE, "tensor '%s' too large", name);
    if (w->n_t == w->cap_t) {
        size_t cap = w->cap_t ? w->cap_t * 2 : 64;
        wtensor *n = nd_realloc(w->t, cap * sizeof *n);
        if (!n) return nd_seterr(err, ND_ENOMEM, "out of memory");
        w->t = n;
        w->cap_t = cap;
    }
    if (!(t.name = nd_strdup(name))) return nd_seterr(err, ND_ENOMEM, "out of memory");
    w->t[w->n_t] = t;
    return (int)w->n_t++;
}

/* ------------------------------------------------------------------ output */

/* Output goes either to a file descriptor or to a memory buffer. */
typedef struct sink {
    int fd;
    nd_buf *mem;
    uint64_t written;
} sink;

static int sink_write(sink *s, const void *p, uint64_t n, nd_err *err) {
    if (s->mem) {
        if (nd_buf_append(s->mem, p, n)) return nd_seterr(err, ND_ENOMEM, "out of memory");
    } else {
        const uint8_t *b = p;
        uint64_t done = 0;
        while (done < n) {
            ssize_t k = write(s->fd, b + done, n - done > (1u << 30) ? (1u << 30) : n - done);
            if (k < 0 && errno == EINTR) continue;
            if (k <= 0) return nd_seterr(err, ND_EIO, "write failed: %s", strerror(errno));
            done += (uint64_t)k;
        }
    }
    s->written += n;
    return 0;
}

static uint64_t get_alignment(const gguf_writer *w) {
    for (size_t i = 0; i < w->n_kv; i++)
        if (!strcmp(w->kv[i].key, "general.alignment") && w->kv[i].blob.len == 8) {
            const uint8_t *p = (const uint8_t *)w->kv[i].blob.data;
            uint32_t t = p[0] | p[1] << 8 | p[2] << 16 | (uint32_t)p[3] << 24;
            uint32_t a = p[4] | p[5] << 8 | p[6] << 16 | (uint32_t)p[7] << 24;
            return t == GGUF_VT_UINT32 && a && !(a & (a - 1)) && a <= GGUF_MAX_ALIGNMENT ? a : 0;
        } else if (!strcmp(w->kv[i].key, "general.alignment")) {
            return 0;
        }
    return GGUF_DEFAULT_ALIGNMENT;
}

static int write_all(gguf_writer *w, sink *s, gguf_tensor_fill_fn fill, void *user, nd_err *err) {
    if (w->oom) return nd_seterr(err, ND_ENOMEM, "out of memory while building metadata");
    uint64_t align = get_alignment(w), off = 0;
    if (!align)
        return nd_seterr(err, ND_EINVAL, "general.alignment must be a uint32 power of two up to %u",
                         GGUF_MAX_ALIGNMENT);
    static const uint8_t zeros[256];
    for (size_t i = 0; i < w->n_t; i++) {
        w->t[i].offset = off;
        off += (w->t[i].nbytes + align - 1) / align * align;
    }
    nd_buf h = {0};
    int rc = put_le(&h, GGUF_MAGIC, 4) || put_le(&h, w->version, 4) || put_le(&h, w->n_t, 8) ||
             put_le(&h, w->n_kv, 8);
    for (size_t i = 0; i < w->n_kv && !rc; i++)
        rc = put_str(&h, w->kv[i].key, strlen(w->kv[i].key)) ||
             nd_buf_append(&h, w->kv[i].blob.data, w->kv[i].blob.len);
    for (size_t i = 0; i < w->n_t && !rc; i++) {
        const wtensor *t = &w->t[i];
        rc = put_str(&h, t->name, strlen(t->name)) || put_le(&h, t->n_dims, 4);
        for (uint32_t d = 0; d < t->n_dims && !rc; d++) rc = put_le(&h, t->ne[d], 8);
        rc = rc || put_le(&h, t->type, 4) || put_le(&h, t->offset, 8);
    }
    while (!rc && h.len % align) {
        uint64_t k = align - h.len % align;
        rc = nd_buf_append(&h, zeros, k < sizeof zeros ? k : sizeof zeros);
    }
    if (rc) {
        nd_buf_free(&h);
        return nd_seterr(err, ND_ENOMEM, "out of memory");
    }
    rc = sink_write(s, h.data, h.len, err);
    nd_buf_free(&h);
    void *tmp = NULL;
    for (size_t i = 0; i < w->n_t && !rc; i++) {
        const wtensor *t = &w->t[i];
        const void *src = t->data;
        if (!src) {
            if (!fill) {
                rc = nd_seterr(err, ND_EINVAL, "tensor '%s' has no data and no fill callback", t->name);
                break;
            }
            nd_free(tmp);
            if (!(tmp = nd_malloc(t->nbytes))) {
                rc = nd_seterr(err, ND_ENOMEM, "out of memory for tensor '%s'", t->name);
                break;
            }
            if ((rc = fill(user, i, tmp, t->nbytes, err))) break;
            src = tmp;
        }
        rc = sink_write(s, src, t->nbytes, err);
        uint64_t pad = (align - t->nbytes % align) % align;
        while (!rc && pad) {
            uint64_t k = pad < sizeof zeros ? pad : sizeof zeros;
            rc = sink_write(s, zeros, k, err);
            pad -= k;
        }
    }
    nd_free(tmp);
    return rc;
}

int gguf_writer_write_mem(gguf_writer *w, gguf_tensor_fill_fn fill, void *user, uint8_t **out,
                          size_t *len, nd_err *err) {
    nd_buf b = {0};
    sink s = {.fd = -1, .mem = &b};
    int rc = write_all(w, &s, fill, user, err);
    if (rc) {
        nd_buf_free(&b);
        return rc;
    }
    *out = (uint8_t *)b.data;
    *len = b.len;
    return 0;
}

int gguf_writer_write(gguf_writer *w, const char *path, gguf_tensor_fill_fn fill, void *user,
                      nd_err *err) {
    size_t n = strlen(path);
    char *tmp = nd_malloc(n + 16);
    if (!tmp) return nd_seterr(err, ND_ENOMEM, "out of memory");
    snprintf(tmp, n + 16, "%s.tmp.XXXXXX", path);
    int fd = mkstemp(tmp);
    if (fd < 0) {
        int rc = nd_seterr(err, ND_EIO, "cannot create %s: %s — is the folder writable?", tmp,
                           strerror(errno));
        nd_free(tmp);
        return rc;
    }
    (void)fchmod(fd, 0644);
    sink s = {.fd = fd};
    int rc = write_all(w, &s, fill, user, err);
    if (!rc && fsync(fd) != 0) rc = nd_seterr(err, ND_EIO, "fsync %s: %s", tmp, strerror(errno));
    if (close(fd) != 0 && !rc) rc = nd_seterr(err, ND_EIO, "close %s: %s", tmp, strerror(errno));
    if (!rc && rename(tmp, path) != 0)
        rc = nd_seterr(err, ND_EIO, "rename %s -> %s: %s", tmp, path, strerror(errno));
    if (rc) {
        unlink(tmp);
        nd_preerr(err, "writing %s: ", path);
    }
    nd_free(tmp);
    return rc;
}
