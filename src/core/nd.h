/* nindub core: errors, allocation (with fault injection), fp16/bf16, tensor type
 * traits, read-only file mapping, progress reporting, logging.
 *
 * Conventions (see docs/ARCHITECTURE.md):
 *  - functions that can fail return int: 0 on success, a negative ND_E* code on failure,
 *    and write a human message into the caller's nd_err (which may be NULL);
 *  - the library never exits; ND_ASSERT aborts on broken invariants (bugs, not input);
 *  - sizes that come from files or requests go through the overflow-checked helpers below.
 */
#ifndef ND_CORE_H
#define ND_CORE_H

#include <stdarg.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

/* ---------------------------------------------------------------- errors */

enum {
    ND_OK = 0,
    ND_EINVAL = -1,       /* bad argument / bad flag / bad request */
    ND_ENOMEM = -2,       /* allocation failed */
    ND_EIO = -3,          /* open/read/write/mmap failed */
    ND_EFORMAT = -4,      /* malformed file or input */
    ND_ERANGE = -5,       /* value out of the accepted range / overflow */
    ND_EUNSUPPORTED = -6, /* well-formed but not supported (yet) */
    ND_ENOTFOUND = -7,    /* key / tensor / file not present */
    ND_ETYPE = -8,        /* value present with another type */
};

#define ND_ERR_MSG 512
typedef struct nd_err {
    int code;              /* last ND_E* code written, 0 if none */
    char msg[ND_ERR_MSG];  /* NUL-terminated human message */
} nd_err;

/* Writes code + formatted message into e (if e != NULL); returns code so callers can
 * `return nd_seterr(err, ND_EFORMAT, "...")`. */
int nd_seterr(nd_err *e, int code, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));
/* Prefixes an existing message with more context ("loading x.gguf: " + old). */
int nd_preerr(nd_err *e, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
const char *nd_strerror(int code); /* short name of an ND_E* code */

#define ND_ASSERT(c)                                                             \
    do {                                                                         \
        if (!(c)) nd_assert_fail(__FILE__, __LINE__, #c);                        \
    } while (0)
_Noreturn void nd_assert_fail(const char *file, int line, const char *expr);

/* ------------------------------------------------------- checked arithmetic */

/* Return false on overflow (and leave *out unspecified). */
static inline bool nd_mul_ok(uint64_t a, uint64_t b, uint64_t *out) {
    return !__builtin_mul_overflow(a, b, out);
}
static inline bool nd_add_ok(uint64_t a, uint64_t b, uint64_t *out) {
    return !__builtin_add_overflow(a, b, out);
}

/* ------------------------------------------------------------ allocation */

/* All library allocations go through these. nd_free(NULL) is safe.
 * Fault injection (tests only): nd_alloc_fail_after(n) makes the (n+1)-th following
 * allocation on this thread fail (return NULL); n < 0 disables. */
void *nd_malloc(size_t n);
void *nd_calloc(size_t count, size_t size);
void *nd_realloc(void *p, size_t n);
char *nd_strndup(const char *s, size_t n);
char *nd_strdup(const char *s);
void nd_free(void *p);
void nd_alloc_fail_after(long n);
/* Large buffers the hot loops stream through (weights, KV cache): zeroed, starting on a
 * 2 MiB boundary and advised into transparent huge pages, so a pass over them costs one
 * TLB entry per 2 MiB instead of per 4 KiB. *size gets the mapped bytes, for
 * nd_huge_free. NULL on failure (or under fault injection). */
void *nd_huge_alloc(size_t n, size_t *size);
void nd_huge_free(void *p, size_t size); /* NULL is safe */
long nd_alloc_count(void); /* allocations attempted on this thread (for fault loops) */

/* Growable byte buffer (used for text building, writers). */
typedef struct nd_buf {
    char *data; /* NUL-terminated when len < cap */
    size_t len, cap;
} nd_buf;
int nd_buf_reserve(nd_buf *b, size_t extra);
int nd_buf_append(nd_buf *b, const void *p, size_t n);
int nd_buf_printf(nd_buf *b, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
void nd_buf_free(nd_buf *b);

/* ------------------------------------------------------ fp16 / bf16 */

float nd_fp16_to_fp32(uint16_t h);
uint16_t nd_fp32_to_fp16(float f); /* round to nearest even, handles inf/nan/subnormals */
static inline float nd_bf16_to_fp32(uint16_t h) {
    union { uint32_t u; float f; } v = {.u = (uint32_t)h << 16};
    return v.f;
}
uint16_t nd_fp32_to_bf16(float f); /* round to nearest even; NaN stays NaN */

/* ------------------------------------------------- tensor type traits */

/* Tensor element types, numbered as in GGUF files (ggml's type ids). */
typedef enum nd_type {
    ND_TYPE_F32 = 0,
    ND_TYPE_F16 = 1,
    ND_TYPE_Q4_0 = 2,
    ND_TYPE_Q4_1 = 3,
    ND_TYPE_Q5_0 = 6,
    ND_TYPE_Q5_1 = 7,
    ND_TYPE_Q8_0 = 8,
    ND_TYPE_Q8_1 = 9,
    ND_TYPE_Q2_K = 10,
    ND_TYPE_Q3_K = 11,
    ND_TYPE_Q4_K = 12,
    ND_TYPE_Q5_K = 13,
    ND_TYPE_Q6_K = 14,
    ND_TYPE_Q8_K = 15,
    ND_TYPE_IQ2_XXS = 16,
    ND_TYPE_IQ2_XS = 17,
    ND_TYPE_IQ3_XXS = 18,
    ND_TYPE_IQ1_S = 19,
    ND_TYPE_IQ4_NL = 20,
    ND_TYPE_IQ3_S = 21,
    ND_TYPE_IQ2_S = 22,
    ND_TYPE_IQ4_XS = 23,
    ND_TYPE_I8 = 24,
    ND_TYPE_I16 = 25,
    ND_TYPE_I32 = 26,
    ND_TYPE_I64 = 27,
    ND_TYPE_F64 = 28,
    ND_TYPE_IQ1_M = 29,
    ND_TYPE_BF16 = 30,
    ND_TYPE_TQ1_0 = 34,
    ND_TYPE_TQ2_0 = 35,
    ND_TYPE_COUNT = 40
} nd_type;

typedef struct nd_type_traits {
    const char *name;  /* "q4_K", NULL for ids that are not a known type */
    uint32_t blck;     /* elements per block */
    uint32_t bytes;    /* bytes per block */
    bool supported;    /* the engine can compute with it */
} nd_type_traits;

/* Traits for a type id; returns NULL for unknown ids (any uint32 is safe to pass). */
const nd_type_traits *nd_type_info(uint32_t type);
/* Bytes of one row of n elements; 0 (and ND_EFORMAT in *err) if n is not a multiple
 * of the block size or overflows. */
int nd_row_bytes(uint32_t type, uint64_t n, uint64_t *out, nd_err *err);
/* Case-insensitive lookup by name ("q4_k", "Q8_0", "bf16"); -1 if unknown. */
int nd_type_from_name(const char *name);

/* ------------------------------------------------------------ file mapping */

typedef struct nd_map {
    const uint8_t *data; /* read-only view of the whole file (NULL for an empty file) */
    size_t size;
    int fd;
} nd_map;
int nd_map_open(nd_map *m, const char *path, nd_err *err);
void nd_map_close(nd_map *m);

/* Read a whole file into a NUL-terminated heap buffer (caller frees with nd_free). */
int nd_read_file(const char *path, char **out, size_t *len, nd_err *err);

/* ------------------------------------------------------------- progress */

/* A progress line on stderr, drawn only when stderr is a TTY (no output otherwise).
 * nd_progress_update is cheap to call often: it redraws at most ~10 times a second. */
typedef struct nd_progress {
    const char *label;
    uint64_t total, done;
    double t_start, t_last;
    bool tty;
} nd_progress;
void nd_progress_begin(nd_progress *p, const char *label, uint64_t total);
void nd_progress_update(nd_progress *p, uint64_t done);
void nd_progress_end(nd_progress *p);

double nd_time_s(void); /* monotonic seconds */

/* --------------------------------------------------------------- logging */

typedef enum { ND_LOG_ERROR, ND_LOG_WARN, ND_LOG_INFO, ND_LOG_DEBUG } nd_log_level;
typedef void (*nd_log_fn)(nd_log_level lvl, const char *msg, void *user);
/* A log sink is a callback carried by whoever logs (contexts hold one). NULL = silent. */
typedef struct nd_logger {
    nd_log_fn fn;
    void *user;
    nd_log_level max_level;
} nd_logger;
void nd_log(const nd_logger *lg, nd_log_level lvl, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));
void nd_log_stderr(nd_log_level lvl, const char *msg, void *user); /* ready-made sink */

/* ---------------------------------------------------------------- UTF-8 */

/* Length of a valid UTF-8 sequence starting at s (1..4), or 0 if invalid/truncated. */
int nd_utf8_seq_len(const uint8_t *s, size_t avail);
bool nd_utf8_valid(const char *s, size_t n);
/* Encode code point cp into out (>= 4 bytes); returns bytes written (0 if cp invalid). */
int nd_utf8_encode(uint32_t cp, char *out);
/* Decode one code point; returns bytes consumed (0 if invalid). */
int nd_utf8_decode(const uint8_t *s, size_t avail, uint32_t *cp);

#endif
