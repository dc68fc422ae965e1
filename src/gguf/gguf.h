/* GGUF v2/v3 reader (mmap, strict validation) and writer (atomic temp+rename).
 *
 * File layout (little-endian):
 *   u32 magic "GGUF" | u32 version (2 or 3) | u64 n_tensors | u64 n_kv
 *   n_kv × { string key | u32 value_type | value }
 *   n_tensors × { string name | u32 n_dims | u64 ne[n_dims] | u32 type | u64 offset }
 *   padding to general.alignment (default 32) | tensor data (offsets relative to here)
 *   string = u64 len | len bytes (not NUL-terminated)
 *   array  = u32 elem_type | u64 n | n × elem
 */
#ifndef ND_GGUF_H
#define ND_GGUF_H

#include "core/nd.h"

#define GGUF_MAGIC 0x46554747u /* "GGUF" as little-endian u32 */
#define GGUF_DEFAULT_ALIGNMENT 32
#define GGUF_MAX_DIMS 4

/* Sane limits for hostile files: far above any real model, far below what would let a
 * file make us allocate unbounded memory. */
#define GGUF_MAX_KV 1000000ull
#define GGUF_MAX_TENSORS 1000000ull
#define GGUF_MAX_STRING (64ull << 20)   /* 64 MiB for a single string */
#define GGUF_MAX_ARRAY (256ull << 20)   /* elements in one array */
#define GGUF_MAX_NESTING 8              /* arrays of arrays of ... */
#define GGUF_MAX_ALIGNMENT (1u << 20)   /* general.alignment: real files use 32 */

typedef enum gguf_vtype {
    GGUF_VT_UINT8 = 0,
    GGUF_VT_INT8 = 1,
    GGUF_VT_UINT16 = 2,
    GGUF_VT_INT16 = 3,
    GGUF_VT_UINT32 = 4,
    GGUF_VT_INT32 = 5,
    GGUF_VT_FLOAT32 = 6,
    GGUF_VT_BOOL = 7,
    GGUF_VT_STRING = 8,
    GGUF_VT_ARRAY = 9,
    GGUF_VT_UINT64 = 10,
    GGUF_VT_INT64 = 11,
    GGUF_VT_FLOAT64 = 12,
    GGUF_VT_COUNT
} gguf_vtype;

const char *gguf_vtype_name(gguf_vtype t);

/* A string view into the mapping (NOT NUL-terminated). */
typedef struct gguf_str {
    const char *ptr;
    uint64_t len;
} gguf_str;

typedef struct gguf_value gguf_value;
typedef struct gguf_array {
    gguf_vtype etype;
    uint64_t n;
    const uint8_t *data;   /* fixed-size elements: raw little-endian bytes in the mapping */
    gguf_str *strs;        /* etype == STRING: n views (owned by the context) */
    gguf_value *elems;     /* etype == ARRAY: n nested values (owned by the context) */
} gguf_array;

struct gguf_value {
    gguf_vtype type;
    union {
        uint64_t u64; /* UINT8/16/32/64 */
        int64_t i64;  /* INT8/16/32/64 */
        double f64;   /* FLOAT32/64 */
        bool b;
        gguf_str str;
        gguf_array arr;
    };
};

typedef struct gguf_kv {
    char *key; /* NUL-terminated copy (owned) */
    gguf_value val;
} gguf_kv;

typedef struct gguf_tensor {
    char *name;                  /* NUL-terminated copy (owned) */
    uint32_t n_dims;
    uint64_t ne[GGUF_MAX_DIMS];  /* ne[0] is the fastest-varying (row length); unused = 1 */
    uint32_t type;               /* nd_type */
    uint64_t offset;             /* relative to the data section */
    uint64_t nbytes;
    uint64_t n_elems;
    const uint8_t *data;         /* view into the mapping */
} gguf_tensor;

typedef struct gguf_ctx {
    nd_map map;            /* owned unless opened from memory */
    bool owns_map;
    uint32_t version;
    uint64_t n_kv, n_tensors;
    gguf_kv *kv;
    gguf_tensor *tensors;
    uint64_t alignment;
    uint64_t data_offset;  /* file offset of the tensor data section */
    uint64_t data_size;    /* bytes from data_offset to end of file */
} gguf_ctx;

/* Open and fully validate a GGUF file. On failure returns NULL with a message naming the
 * offending key/tensor and byte offset. */
gguf_ctx *gguf_open(const char *path, nd_err *err);
/* Same on a caller-owned buffer (must outlive the context). Used by tests and fuzzers. */
gguf_ctx *gguf_open_mem(const void *data, size_t size, nd_err *err);
void gguf_close(gguf_ctx *ctx);

/* Lookups. find returns NULL if absent. Typed getters return ND_ENOTFOUND if the key is
 * absent, ND_ETYPE if it has an incompatible type, ND_ERANGE if the value does not fit.
 * Integer getters accept any integer type whose value fits. */
const gguf_kv *gguf_find(const gguf_ctx *ctx, const char *key);
int gguf_get_u32(const gguf_ctx *ctx, const char *key, uint32_t *out, nd_err *err);
int gguf_get_u64(const gguf_ctx *ctx, const char *key, uint64_t *out, nd_err *err);
int gguf_get_i32(const gguf_ctx *ctx, const char *key, int32_t *out, nd_err *err);
int gguf_get_f32(const gguf_ctx *ctx, const char *key, float *out, nd_err *err);
int gguf_get_bool(const gguf_ctx *ctx, const char *key, bool *out, nd_err *err);
/* String: *out is a view into the mapping (not NUL-terminated). */
int gguf_get_str(const gguf_ctx *ctx, const char *key, gguf_str *out, nd_err *err);
/* Array with the given element type (GGUF_VT_COUNT = any). */
int gguf_get_arr(const gguf_ctx *ctx, const char *key, gguf_vtype etype, const gguf_array **out,
                 nd_err *err);
/* Element i of a fixed-size numeric array, converted. Caller checks i < arr->n. */
double gguf_arr_f64(const gguf_array *arr, uint64_t i);
int64_t gguf_arr_i64(const gguf_array *arr, uint64_t i);
/* Fetch `<arch>.<suffix>` using general.architecture, e.g. gguf_get_arch_u32(c, "block_count"). */
int gguf_get_arch_u32(const gguf_ctx *ctx, const char *suffix, uint32_t *out, nd_err *err);
int gguf_get_arch_f32(const gguf_ctx *ctx, const char *suffix, float *out, nd_err *err);

const gguf_tensor *gguf_find_tensor(const gguf_ctx *ctx, const char *name);

/* Compare a view with a C string. */
bool gguf_str_eq(gguf_str s, const char *c);

/* ------------------------------------------------------------------ writer */

/* Build metadata and tensors in memory, then write atomically: the file appears at
 * `path` complete or not at all (written to path.tmp.XXXXXX, fsync, rename).
 * Setters copy their arguments; tensor data is referenced until gguf_writer_write
 * returns (pass a pointer that stays valid), or produced on the fly by a callback. */
typedef struct gguf_writer gguf_writer;

/* Called to produce a tensor's bytes while writing (e.g. quantize on the fly).
 * Must write exactly nbytes into dst; return 0 or a negative ND_E* code. */
typedef int (*gguf_tensor_fill_fn)(void *user, uint64_t index, void *dst, uint64_t nbytes,
                                   nd_err *err);

gguf_writer *gguf_writer_new(void);
void gguf_writer_free(gguf_writer *w);
/* Version to write (3 default; 2 allowed for tests). */
void gguf_writer_set_version(gguf_writer *w, uint32_t version);
/* Setting an existing key replaces it. Keys must be valid UTF-8, non-empty. */
int gguf_writer_set_u8(gguf_writer *w, const char *key, uint8_t v);
int gguf_writer_set_i8(gguf_writer *w, const char *key, int8_t v);
int gguf_writer_set_u16(gguf_writer *w, const char *key, uint16_t v);
int gguf_writer_set_i16(gguf_writer *w, const char *key, int16_t v);
int gguf_writer_set_u32(gguf_writer *w, const char *key, uint32_t v);
int gguf_writer_set_i32(gguf_writer *w, const char *key, int32_t v);
int gguf_writer_set_u64(gguf_writer *w, const char *key, uint64_t v);
int gguf_writer_set_i64(gguf_writer *w, const char *key, int64_t v);
int gguf_writer_set_f32(gguf_writer *w, const char *key, float v);
int gguf_writer_set_f64(gguf_writer *w, const char *key, double v);
int gguf_writer_set_bool(gguf_writer *w, const char *key, bool v);
int gguf_writer_set_str(gguf_writer *w, const char *key, const char *v);
int gguf_writer_set_strn(gguf_writer *w, const char *key, const char *v, size_t len);
/* Array of fixed-size elements (etype not STRING/ARRAY); data holds n little-endian elems. */
int gguf_writer_set_arr(gguf_writer *w, const char *key, gguf_vtype etype, const void *data,
                        uint64_t n);
/* Array of strings, given as n NUL-terminated strings, or (lens != NULL) n (ptr,len). */
int gguf_writer_set_arr_str(gguf_writer *w, const char *key, const char *const *strs,
                            const size_t *lens, uint64_t n);
/* Copy a value of any type (including nested arrays) from a reader: used by tools that
 * rewrite a model (quantize, convert). */
int gguf_writer_set_value(gguf_writer *w, const char *key, const gguf_value *v);
int gguf_writer_remove(gguf_writer *w, const char *key);

/* Add a tensor: ne[0..n_dims-1] with ne[0] fastest. data may be NULL if fill is given
 * to gguf_writer_write. Returns the tensor index or a negative ND_E* code. */
int gguf_writer_add_tensor(gguf_writer *w, const char *name, uint32_t type, uint32_t n_dims,
                           const uint64_t *ne, const void *data, nd_err *err);
int gguf_writer_write(gguf_writer *w, const char *path, gguf_tensor_fill_fn fill, void *user,
                      nd_err *err);
/* Serialize into a heap buffer (tests, fuzz seeds). Caller frees *out with nd_free. */
int gguf_writer_write_mem(gguf_writer *w, gguf_tensor_fill_fn fill, void *user, uint8_t **out,
                          size_t *len, nd_err *err);

#endif
