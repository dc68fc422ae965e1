/* GGUF reader: parse and strictly validate a mapped file.
 *
 * Every read goes through a cursor that knows how many bytes are left, so a hostile
 * count or length is caught before it is used; messages name the key or tensor and the
 * byte offset where the problem starts. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "gguf/gguf.h"

typedef struct cursor {
    const uint8_t *p;
    uint64_t size, off;
    nd_err *err;
    const char *what; /* the key / tensor being parsed, for messages */
} cursor;

static const char *const vtype_names[GGUF_VT_COUNT] = {
    "uint8", "int8", "uint16", "int16", "uint32", "int32", "float32",
    "bool",  "string", "array", "uint64", "int64", "float64"};
static const uint8_t vtype_size[GGUF_VT_COUNT] = {1, 1, 2, 2, 4, 4, 4, 1, 0, 0, 8, 8, 8};

const char *gguf_vtype_name(gguf_vtype t) {
    return (unsigned)t < GGUF_VT_COUNT ? vtype_names[t] : "invalid";
}

static uint64_t left(const cursor *c) { return c->size - c->off; }

static int fail(cursor *c, int code, const char *fmt, ...) __attribute__((format(printf, 3, 4)));
static int fail(cursor *c, int code, const char *fmt, ...) {
    char msg[ND_ERR_MSG];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(msg, sizeof msg, fmt, ap);
    va_end(ap);
    return nd_seterr(c->err, code, "gguf: at byte %llu%s%s%s: %s", (unsigned long long)c->off,
                     c->what ? " (" : "", c->what ? c->what : "", c->what ? ")" : "", msg);
}

static int need(cursor *c, uint64_t n, const char *field) {
    if (n > left(c))
        return fail(c, ND_EFORMAT, "file truncated: %s needs %llu bytes, %llu left", field,
                    (unsigned long long)n, (unsigned long long)left(c));
    return 0;
}

static uint64_t rd_le(const uint8_t *p, int n) {
    uint64_t v = 0;
    for (int i = n - 1; i >= 0; i--) v = (v << 8) | p[i];
    return v;
}

static int rd_u32(cursor *c, uint32_t *v, const char *field) {
    if (need(c, 4, field)) return ND_EFORMAT;
    *v = (uint32_t)rd_le(c->p + c->off, 4);
    c->off += 4;
    return 0;
}

static int rd_u64(cursor *c, uint64_t *v, const char *field) {
    if (need(c, 8, field)) return ND_EFORMAT;
    *v = rd_le(c->p + c->off, 8);
    c->off += 8;
    return 0;
}

static int rd_str(cursor *c, gguf_str *s, const char *field) {
    uint64_t len;
    if (rd_u64(c, &len, field)) return ND_EFORMAT;
    if (len > GGUF_MAX_STRING) {
        c->off -= 8;
        return fail(c, ND_EFORMAT, "%s length %llu exceeds the limit of %llu bytes", field,
                    (unsigned long long)len, GGUF_MAX_STRING);
    }
    if (need(c, len, field)) return ND_EFORMAT;
    s->ptr = (const char *)c->p + c->off;
    s->len = len;
    c->off += len;
    return 0;
}

/* ---------------------------------------------------------------- values */

static void value_free(gguf_value *v);

static void array_free(gguf_array *a) {
    nd_free(a->strs);
    if (a->elems) {
        for (uint64_t i = 0; i < a->n; i++) value_free(&a->elems[i]);
        nd_free(a->elems);
    }
    a->strs = NULL;
    a->elems = NULL;
}

static void value_free(gguf_value *v) {
    if (v->type == GGUF_VT_ARRAY) array_free(&v->arr);
}

static int parse_value(cursor *c, gguf_vtype type, gguf_value *v, int depth);

static int parse_array(cursor *c, gguf_array *a, int depth) {
    uint32_t et;
    uint64_t start = c->off;
    if (rd_u32(c, &et, "array element type") || rd_u64(c, &a->n, "array length")) return ND_EFORMAT;
    if (et >= GGUF_VT_COUNT) {
        c->off = start;
        return fail(c, ND_EFORMAT, "array element type %u is not a GGUF value type", et);
    }
    a->etype = (gguf_vtype)et;
    if (a->n > GGUF_MAX_ARRAY) {
        c->off = start + 4;
        return fail(c, ND_EFORMAT, "array length %llu exceeds the limit %llu",
                    (unsigned long long)a->n, GGUF_MAX_ARRAY);
    }
    if (vtype_size[et]) { /* fixed-size elements: one bounds check for all */
        a->data = c->p + c->off;
        if (need(c, a->n * vtype_size[et], "array data")) return ND_EFORMAT;
        if (et == GGUF_VT_BOOL)
            for (uint64_t i = 0; i < a->n; i++)
                if (a->data[i] > 1) {
                    c->off += i;
                    return fail(c, ND_EFORMAT, "bool array element %llu has value %u (not 0/1)",
                                (unsigned long long)i, a->data[i]);
                }
        c->off += a->n * vtype_size[et];
        return 0;
    }
    if (et == GGUF_VT_STRING) {
        /* every string takes >= 8 bytes: reject impossible counts before allocating */
        if (a->n > left(c) / 8)
            return fail(c, ND_EFORMAT, "array of %llu strings cannot fit in the %llu bytes left",
                        (unsigned long long)a->n, (unsigned long long)left(c));
        a->strs = nd_calloc(a->n ? a->n : 1, sizeof *a->strs);
        if (!a->strs) return fail(c, ND_ENOMEM, "out of memory for %llu strings", (unsigned long long)a->n);
        for (uint64_t i = 0; i < a->n; i++)
            if (rd_str(c, &a->strs[i], "array string")) return ND_EFORMAT;
        return 0;
    }
    /* nested arrays */
    if (depth + 1 >= GGUF_MAX_NESTING)
        return fail(c, ND_EFORMAT, "arrays nested deeper than %d levels", GGUF_MAX_NESTING);
    if (a->n > left(c) / 12)
        return fail(c, ND_EFORMAT, "array of %llu arrays cannot fit in the %llu bytes left",
                    (unsigned long long)a->n, (unsigned long long)left(c));
    a->elems = nd_calloc(a->n ? a->n : 1, sizeof *a->elems);
    if (!a->elems) return fail(c, ND_ENOMEM, "out of memory for nested arrays");
    for (uint64_t i = 0; i < a->n; i++) {
        a->elems[i].type = GGUF_VT_ARRAY;
        if (parse_array(c, &a->elems[i].arr, depth + 1)) return ND_EFORMAT;
    }
    return 0;
}

static int parse_value(cursor *c, gguf_vtype type, gguf_value *v, int depth) {
    v->type = type;
    if (type == GGUF_VT_STRING) return rd_str(c, &v->str, "string value");
    if (type == GGUF_VT_ARRAY) return parse_array(c, &v->arr, depth);
    int n = vtype_size[type];
    if (need(c, (uint64_t)n, "value")) return ND_EFORMAT;
    uint64_t raw = rd_le(c->p + c->off, n);
    switch (type) {
    case GGUF_VT_UINT8: case GGUF_VT_UINT16: case GGUF_VT_UINT32: case GGUF_VT_UINT64:
        v->u64 = raw;
        break;
    case GGUF_VT_INT8: v->i64 = (int8_t)raw; break;
    case GGUF_VT_INT16: v->i64 = (int16_t)raw; break;
    case GGUF_VT_INT32: v->i64 = (int32_t)raw; break;
    case GGUF_VT_INT64: v->i64 = (int64_t)raw; break;
    case GGUF_VT_FLOAT32: {
        union { uint32_t u; float f; } u = {.u = (uint32_t)raw};
        v->f64 = u.f;
        break;
    }
    case GGUF_VT_FLOAT64: {
        union { uint64_t u; double f; } u = {.u = raw};
        v->f64 = u.f;
        break;
    }
    case GGUF_VT_BOOL:
        if (raw > 1) return fail(c, ND_EFORMAT, "bool value %u is not 0 or 1", (unsigned)raw);
        v->b = raw != 0;
        break;
    default: break;
    }
    c->off += (uint64_t)n;
    return 0;
}

/* ------------------------------------------------------------------ header */

static int cmp_tensor_name(const void *a, const void *b) {
    return strcmp((*(gguf_tensor *const *)a)->name, (*(gguf_tensor *const *)b)->name);
}
static int cmp_tensor_off(const void *a, const void *b) {
    uint64_t x = (*(gguf_tensor *const *)a)->offset, y = (*(gguf_tensor *const *)b)->offset;
    return x < y ? -1 : x > y;
}
static int cmp_kv_key(const void *a, const void *b) {
    return strcmp((*(gguf_kv *const *)a)->key, (*(gguf_kv *const *)b)->key);
}

static int parse_kvs(cursor *c, gguf_ctx *g) {
    for (uint64_t i = 0; i < g->n_kv; i++) {
        gguf_kv *kv = &g->kv[i];
        uint64_t at = c->off;
        gguf_str key;
        c->what = NULL;
        if (rd_str(c, &key, "metadata key")) return ND_EFORMAT;
        if (key.len == 0 || key.len > 65535 || !nd_utf8_valid(key.ptr, key.len) ||
            memchr(key.ptr, 0, key.len)) {
            c->off = at;
            return fail(c, ND_EFORMAT, "metadata key %llu is empty, too long, or not valid UTF-8",
                        (unsigned long long)i);
        }
        kv->key = nd_strndup(key.ptr, key.len);
        if (!kv->key) return fail(c, ND_ENOMEM, "out of memory");
        c->what = kv->key;
        uint32_t t;
        uint64_t tat = c->off;
        if (rd_u32(c, &t, "value type")) return ND_EFORMAT;
        if (t >= GGUF_VT_COUNT) {
            c->off = tat;
            return fail(c, ND_EFORMAT, "value type %u is not a GGUF value type", t);
        }
        if (parse_value(c, (gguf_vtype)t, &kv->val, 0)) return ND_EFORMAT;
    }
    c->what = NULL;
    if (g->n_kv > 1) { /* duplicate keys */
        gguf_kv **idx = nd_malloc(g->n_kv * sizeof *idx);
        if (!idx) return fail(c, ND_ENOMEM, "out of memory");
        for (uint64_t i = 0; i < g->n_kv; i++) idx[i] = &g->kv[i];
        qsort(idx, g->n_kv, sizeof *idx, cmp_kv_key);
        for (uint64_t i = 1; i < g->n_kv; i++)
            if (!strcmp(idx[i]->key, idx[i - 1]->key)) {
                int r = nd_seterr(c->err, ND_EFORMAT, "gguf: metadata key '%s' appears twice",
                                  idx[i]->key);
                nd_free(idx);
                return r;
            }
        nd_free(idx);
    }
    return 0;
}

static int parse_tensor_infos(cursor *c, gguf_ctx *g) {
    for (uint64_t i = 0; i < g->n_tensors; i++) {
        gguf_tensor *t = &g->tensors[i];
        uint64_t at = c->off;
        gguf_str name;
        c->what = NULL;
        if (rd_str(c, &name, "tensor name")) return ND_EFORMAT;
        if (name.len == 0 || name.len > 1024 || !nd_utf8_valid(name.ptr, name.len) ||
            memchr(name.ptr, 0, name.len)) {
            c->off = at;
            return fail(c, ND_EFORMAT, "tensor %llu: name is empty, too long or not valid UTF-8",
                        (unsigned long long)i);
        }
        t->name = nd_strndup(name.ptr, name.len);
        if (!t->name) return fail(c, ND_ENOMEM, "out of memory");
        c->what = t->name;
        uint64_t dat = c->off;
        if (rd_u32(c, &t->n_dims, "n_dims")) return ND_EFORMAT;
        if (t->n_dims < 1 || t->n_dims > GGUF_MAX_DIMS) {
            c->off = dat;
            return fail(c, ND_EFORMAT, "tensor has %u dimensions (1..%d allowed)", t->n_dims,
                        GGUF_MAX_DIMS);
        }
        t->n_elems = 1;
        for (int d = 0; d < GGUF_MAX_DIMS; d++) t->ne[d] = 1;
        for (uint32_t d = 0; d < t->n_dims; d++) {
            if (rd_u64(c, &t->ne[d], "dimension")) return ND_EFORMAT;
            if (t->ne[d] == 0 || t->ne[d] > (1ull << 40) || !nd_mul_ok(t->n_elems, t->ne[d], &t->n_elems) ||
                t->n_elems > (uint64_t)INT64_MAX) {
                c->off -= 8;
                return fail(c, ND_EFORMAT, "dimension %u = %llu is zero or too large", d,
                            (unsigned long long)t->ne[d]);
            }
        }
        uint64_t tat = c->off;
        if (rd_u32(c, &t->type, "tensor type")) return ND_EFORMAT;
        const nd_type_traits *tt = nd_type_info(t->type);
        if (!tt) {
            c->off = tat;
            return fail(c, ND_EFORMAT, "tensor type %u is unknown (file made by a newer tool?)", t->type);
        }
        uint64_t rowb;
        if (t->ne[0] % tt->blck) {
            c->off = tat;
            return fail(c, ND_EFORMAT, "row length %llu is not a multiple of %s's block size %u",
                        (unsigned long long)t->ne[0], tt->name, tt->blck);
        }
        if (nd_row_bytes(t->type, t->ne[0], &rowb, NULL) ||
            !nd_mul_ok(rowb, t->n_elems / t->ne[0], &t->nbytes))
            return fail(c, ND_EFORMAT, "tensor byte size overflows");
        if (rd_u64(c, &t->offset, "tensor data offset")) return ND_EFORMAT;
    }
    c->what = NULL;
    return 0;
}

/* Checks that need the whole table: alignment, ranges, overlaps, duplicate names. */
static int check_tensors(cursor *c, gguf_ctx *g) {
    if (!g->n_tensors) return 0;
    gguf_tensor **idx = nd_malloc(g->n_tensors * sizeof *idx);
    if (!idx) return nd_seterr(c->err, ND_ENOMEM, "out of memory");
    int rc = 0;
    for (uint64_t i = 0; i < g->n_tensors && !rc; i++) {
        gguf_tensor *t = &g->tensors[i];
        idx[i] = t;
        uint64_t end;
        if (t->offset % g->alignment)
            rc = nd_seterr(c->err, ND_EFORMAT,
                           "gguf: tensor '%s': data offset %llu is not a multiple of the alignment %llu",
                           t->name, (unsigned long long)t->offset, (unsigned long long)g->alignment);
        else if (!nd_add_ok(t->offset, t->nbytes, &end) || end > g->data_size)
            rc = nd_seterr(c->err, ND_EFORMAT,
                           "gguf: tensor '%s': data [%llu, +%llu) lies outside the file (data section "
                           "starts at byte %llu and holds %llu bytes) — truncated download?",
                           t->name, (unsigned long long)t->offset, (unsigned long long)t->nbytes,
                           (unsigned long long)g->data_offset, (unsigned long long)g->data_size);
        else
            t->data = c->p + g->data_offset + t->offset;
    }
    if (!rc) {
        qsort(idx, g->n_tensors, sizeof *idx, cmp_tensor_name);
        for (uint64_t i = 1; i < g->n_tensors && !rc; i++)
            if (!strcmp(idx[i]->name, idx[i - 1]->name))
                rc = nd_seterr(c->err, ND_EFORMAT, "gguf: tensor name '%s' appears twice", idx[i]->name);
    }
    if (!rc) {
        qsort(idx, g->n_tensors, sizeof *idx, cmp_tensor_off);
        for (uint64_t i = 1; i < g->n_tensors && !rc; i++)
            if (idx[i - 1]->offset + idx[i - 1]->nbytes > idx[i]->offset)
                rc = nd_seterr(c->err, ND_EFORMAT, "gguf: tensors '%s' and '%s' overlap in the file",
                               idx[i - 1]->name, idx[i]->name);
    }
    nd_free(idx);
    return rc;
}

static int parse(gguf_ctx *g, nd_err *err) {
    cursor c = {.p = g->map.data, .size = g->map.size, .err = err};
    uint32_t magic;
    if (rd_u32(&c, &magic, "magic")) return ND_EFORMAT;
    if (magic != GGUF_MAGIC) {
        c.off = 0;
        return fail(&c, ND_EFORMAT, "not a GGUF file (magic %08x, expected \"GGUF\")", magic);
    }
    if (rd_u32(&c, &g->version, "version")) return ND_EFORMAT;
    if (g->version == 0x03000000u || g->version == 0x02000000u)
        return fail(&c, ND_EUNSUPPORTED, "big-endian GGUF files are not supported");
    if (g->version == 1)
        return fail(&c, ND_EUNSUPPORTED, "GGUF version 1 is obsolete; re-convert the model");
    if (g->version != 2 && g->version != 3)
        return fail(&c, ND_EUNSUPPORTED, "GGUF version %u is not supported (2 and 3 are)", g->version);
    if (rd_u64(&c, &g->n_tensors, "tensor count") || rd_u64(&c, &g->n_kv, "metadata count"))
        return ND_EFORMAT;
    /* a tensor info takes >= 28 bytes and a kv >= 13: impossible counts fail before allocation */
    if (g->n_tensors > GGUF_MAX_TENSORS || g->n_tensors > left(&c) / 28)
        return fail(&c, ND_EFORMAT, "tensor count %llu is impossible for a file of %llu bytes",
                    (unsigned long long)g->n_tensors, (unsigned long long)c.size);
    if (g->n_kv > GGUF_MAX_KV || g->n_kv > left(&c) / 13)
        return fail(&c, ND_EFORMAT, "metadata count %llu is impossible for a file of %llu bytes",
                    (unsigned long long)g->n_kv, (unsigned long long)c.size);
    g->kv = nd_calloc(g->n_kv ? g->n_kv : 1, sizeof *g->kv);
    g->tensors = nd_calloc(g->n_tensors ? g->n_tensors : 1, sizeof *g->tensors);
    if (!g->kv || !g->tensors) return nd_seterr(err, ND_ENOMEM, "gguf: out of memory");
    int rc = parse_kvs(&c, g);
    if (rc) return rc;

    g->alignment = GGUF_DEFAULT_ALIGNMENT;
    const gguf_kv *al = gguf_find(g, "general.alignment");
    if (al) {
        if (al->val.type != GGUF_VT_UINT32 || al->val.u64 == 0 || (al->val.u64 & (al->val.u64 - 1)) ||
            al->val.u64 > GGUF_MAX_ALIGNMENT)
            return nd_seterr(err, ND_EFORMAT,
                             "gguf: general.alignment must be a uint32 power of two up to %u (got %s %llu)",
                             GGUF_MAX_ALIGNMENT, gguf_vtype_name(al->val.type), (unsigned long long)al->val.u64);
        g->alignment = al->val.u64;
    }
    rc = parse_tensor_infos(&c, g);
    if (rc) return rc;
    uint64_t pad = (g->alignment - c.off % g->alignment) % g->alignment;
    if (g->n_tensors && pad > left(&c))
        return fail(&c, ND_EFORMAT, "file truncated before the tensor data section");
    g->data_offset = c.off + (pad <= left(&c) ? pad : left(&c));
    g->data_size = c.size - g->data_offset;
    return check_tensors(&c, g);
}

static gguf_ctx *open_common(gguf_ctx *g, nd_err *err) {
    if (parse(g, err)) {
        gguf_close(g);
        return NULL;
    }
    return g;
}

gguf_ctx *gguf_open(const char *path, nd_err *err) {
    gguf_ctx *g = nd_calloc(1, sizeof *g);
    if (!g) {
        nd_seterr(err, ND_ENOMEM, "out of memory");
        return NULL;
    }
    if (nd_map_open(&g->map, path, err)) {
        nd_free(g);
        return NULL;
    }
    g->owns_map = true;
    g = open_common(g, err);
    if (!g) nd_preerr(err, "%s: ", path);
    return g;
}

gguf_ctx *gguf_open_mem(const void *data, size_t size, nd_err *err) {
    gguf_ctx *g = nd_calloc(1, sizeof *g);
    if (!g) {
        nd_seterr(err, ND_ENOMEM, "out of memory");
        return NULL;
    }
    g->map.data = data;
    g->map.size = size;
    g->map.fd = -1;
    return open_common(g, err);
}

void gguf_close(gguf_ctx *g) {
    if (!g) return;
    if (g->kv) {
        for (uint64_t i = 0; i < g->n_kv; i++) {
            nd_free(g->kv[i].key);
            value_free(&g->kv[i].val);
        }
        nd_free(g->kv);
    }
    if (g->tensors) {
        for (uint64_t i = 0; i < g->n_tensors; i++) nd_free(g->tensors[i].name);
        nd_free(g->tensors);
    }
    if (g->owns_map) nd_map_close(&g->map);
    nd_free(g);
}

/* ----------------------------------------------------------------- lookups */

bool gguf_str_eq(gguf_str s, const char *c) {
    size_t n = strlen(c);
    return s.len == n && !memcmp(s.ptr, c, n);
}

const gguf_kv *gguf_find(const gguf_ctx *g, const char *key) {
    for (uint64_t i = 0; i < g->n_kv; i++)
        if (g->kv[i].key && !strcmp(g->kv[i].key, key)) return &g->kv[i];
    return NULL;
}

const gguf_tensor *gguf_find_tensor(const gguf_ctx *g, const char *name) {
    for (uint64_t i = 0; i < g->n_tensors; i++)
        if (!strcmp(g->tensors[i].name, name)) return &g->tensors[i];
    return NULL;
}

static int lookup(const gguf_ctx *g, const char *key, const gguf_kv **kv, nd_err *err) {
    *kv = gguf_find(g, key);
    if (!*kv) return nd_seterr(err, ND_ENOTFOUND, "metadata key '%s' not found", key);
    return 0;
}

static bool is_uint(gguf_vtype t) {
    return t == GGUF_VT_UINT8 || t == GGUF_VT_UINT16 || t == GGUF_VT_UINT32 || t == GGUF_VT_UINT64;
}
static bool is_int(gguf_vtype t) {
    return t == GGUF_VT_INT8 || t == GGUF_VT_INT16 || t == GGUF_VT_INT32 || t == GGUF_VT_INT64;
}

/* Integer value as (negative?, magnitude) for range checks across signedness. */
static int get_int(const gguf_ctx *g, const char *key, int64_t lo, uint64_t hi, bool *neg,
                   uint64_t *mag, nd_err *err) {
    const gguf_kv *kv;
    if (lookup(g, key, &kv, err)) return ND_ENOTFOUND;
    gguf_vtype t = kv->val.type;
    if (is_uint(t)) {
        *neg = false;
        *mag = kv->val.u64;
    } else if (is_int(t)) {
        *neg = kv->val.i64 < 0;
        *mag = *neg ? (uint64_t)(-(kv->val.i64 + 1)) + 1 : (uint64_t)kv->val.i64;
    } else {
        return nd_seterr(err, ND_ETYPE, "metadata key '%s' is a %s, expected an integer", key,
                         gguf_vtype_name(t));
    }
    if ((*neg && (lo >= 0 || *mag > (uint64_t)(-(lo + 1)) + 1)) || (!*neg && *mag > hi))
        return nd_seterr(err, ND_ERANGE, "metadata key '%s' = %s%llu is out of range", key,
                         *neg ? "-" : "", (unsigned long long)*mag);
    return 0;
}

int gguf_get_u32(const gguf_ctx *g, const char *key, uint32_t *out, nd_err *err) {
    bool neg;
    uint64_t m;
    int rc = get_int(g, key, 0, UINT32_MAX, &neg, &m, err);
    if (!rc) *out = (uint32_t)m;
    return rc;
}

int gguf_get_u64(const gguf_ctx *g, const char *key, uint64_t *out, nd_err *err) {
    bool neg;
    uint64_t m;
    int rc = get_int(g, key, 0, UINT64_MAX, &neg, &m, err);
    if (!rc) *out = m;
    return rc;
}

int gguf_get_i32(const gguf_ctx *g, const char *key, int32_t *out, nd_err *err) {
    bool neg;
    uint64_t m;
    int rc = get_int(g, key, INT32_MIN, INT32_MAX, &neg, &m, err);
    if (!rc) *out = neg ? (int32_t)(-(int64_t)m) : (int32_t)m;
    return rc;
}

int gguf_get_f32(const gguf_ctx *g, const char *key, float *out, nd_err *err) {
    const gguf_kv *kv;
    if (lookup(g, key, &kv, err)) return ND_ENOTFOUND;
    gguf_vtype t = kv->val.type;
    if (t == GGUF_VT_FLOAT32 || t == GGUF_VT_FLOAT64) *out = (float)kv->val.f64;
    else if (is_uint(t)) *out = (float)kv->val.u64;
    else if (is_int(t)) *out = (float)kv->val.i64;
    else
        return nd_seterr(err, ND_ETYPE, "metadata key '%s' is a %s, expected a number", key,
                         gguf_vtype_name(t));
    return 0;
}

int gguf_get_bool(const gguf_ctx *g, const char *key, bool *out, nd_err *err) {
    const gguf_kv *kv;
    if (lookup(g, key, &kv, err)) return ND_ENOTFOUND;
    if (kv->val.type != GGUF_VT_BOOL)
        return nd_seterr(err, ND_ETYPE, "metadata key '%s' is a %s, expected a bool", key,
                         gguf_vtype_name(kv->val.type));
    *out = kv->val.b;
    return 0;
}

int gguf_get_str(const gguf_ctx *g, const char *key, gguf_str *out, nd_err *err) {
    const gguf_kv *kv;
    if (lookup(g, key, &kv, err)) return ND_ENOTFOUND;
    if (kv->val.type != GGUF_VT_STRING)
        return nd_seterr(err, ND_ETYPE, "metadata key '%s' is a %s, expected a string", key,
                         gguf_vtype_name(kv->val.type));
    *out = kv->val.str;
    return 0;
}

int gguf_get_arr(const gguf_ctx *g, const char *key, gguf_vtype etype, const gguf_array **out,
                 nd_err *err) {
    const gguf_kv *kv;
    if (lookup(g, key, &kv, err)) return ND_ENOTFOUND;
    if (kv->val.type != GGUF_VT_ARRAY)
        return nd_seterr(err, ND_ETYPE, "metadata key '%s' is a %s, expected an array", key,
                         gguf_vtype_name(kv->val.type));
    if (etype != GGUF_VT_COUNT && kv->val.arr.etype != etype)
        return nd_seterr(err, ND_ETYPE, "metadata key '%s' is an array of %s, expected %s", key,
                         gguf_vtype_name(kv->val.arr.etype), gguf_vtype_name(etype));
    *out = &kv->val.arr;
    return 0;
}

double gguf_arr_f64(const gguf_array *a, uint64_t i) {
    const uint8_t *p = a->data + i * vtype_size[a->etype];
    switch (a->etype) {
    case GGUF_VT_FLOAT32: {
        union { uint32_t u; float f; } u = {.u = (uint32_t)rd_le(p, 4)};
        return u.f;
    }
    case GGUF_VT_FLOAT64: {
        union { uint64_t u; double f; } u = {.u = rd_le(p, 8)};
        return u.f;
    }
    default:
        return is_int(a->etype) ? (double)gguf_arr_i64(a, i) : (double)rd_le(p, vtype_size[a->etype]);
    }
}

int64_t gguf_arr_i64(const gguf_array *a, uint64_t i) {
    const uint8_t *p = a->data + i * vtype_size[a->etype];
    uint64_t raw = vtype_size[a->etype] ? rd_le(p, vtype_size[a->etype]) : 0;
    switch (a->etype) {
    case GGUF_VT_INT8: return (int8_t)raw;
    case GGUF_VT_INT16: return (int16_t)raw;
    case GGUF_VT_INT32: return (int32_t)raw;
    case GGUF_VT_FLOAT32: case GGUF_VT_FLOAT64: return (int64_t)gguf_arr_f64(a, i);
    default: return (int64_t)raw;
    }
}

static int arch_key(const gguf_ctx *g, const char *suffix, char *key, size_t cap, nd_err *err) {
    gguf_str arch;
    if (gguf_get_str(g, "general.architecture", &arch, err)) return err ? err->code : ND_ENOTFOUND;
    if (arch.len + strlen(suffix) + 2 > cap)
        return nd_seterr(err, ND_ERANGE, "architecture name too long");
    snprintf(key, cap, "%.*s.%s", (int)arch.len, arch.ptr, suffix);
    return 0;
}

int gguf_get_arch_u32(const gguf_ctx *g, const char *suffix, uint32_t *out, nd_err *err) {
    char key[256];
    int rc = arch_key(g, suffix, key, sizeof key, err);
    return rc ? rc : gguf_get_u32(g, key, out, err);
}

int gguf_get_arch_f32(const gguf_ctx *g, const char *suffix, float *out, nd_err *err) {
    char key[256];
    int rc = arch_key(g, suffix, key, sizeof key, err);
    return rc ? rc : gguf_get_f32(g, key, out, err);
}
