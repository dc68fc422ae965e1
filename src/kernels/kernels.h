/* nindub kernels: the matrix products the model runs, on the best ISA this CPU has.
 *
 * Dispatch. k_select() fills a k_kernels table once (per model context): for every weight
 * type a k_ops entry — the activation format, the function that converts an activation
 * row to it, the weight-row · activation-row dot, and the name of the implementation.
 * The scalar entries call the quant/ reference (the oracle); ISA files under
 * kernels/x86/<isa>/ (kernels/arm/ on aarch64) provide faster entries with the same
 * semantics, and k_select overwrites the scalar entry for the types they cover when cpuid
 * (getauxval on aarch64) says the ISA is there.
 * A new kernel is therefore one function + one line in the selection for its ISA.
 *
 * Matmul. k_matmul computes Y[m][n] = sum_k W[n][k] * X[m][k] (W: N rows of K elements in
 * its storage type, one row per output feature — the GGUF layout, ne0 = K, ne1 = N).
 * It quantizes each row of X once into the scratch, then splits output rows across the
 * thread pool. For M > 1 (prefill) it tiles rows x tokens so each weight row loaded into
 * cache is reused for a block of tokens.
 */
#ifndef ND_KERNELS_H
#define ND_KERNELS_H

#include "core/nd.h"
#include "core/pool.h"

/* dot of one weight row (wtype) and one activation row (the entry's atype), n elements */
typedef float (*k_vec_dot_fn)(const void *wrow, const void *arow, int64_t n);
/* x[n] -> activation row in the entry's atype; returns 0 or ND_E* */
typedef int (*k_quantize_fn)(const float *x, void *dst, int64_t n);
/* decode: dots of 4 weight rows (row i at wrow + i*stride bytes) with one activation row
 * into out[0..3], each bit-identical to vec_dot on that row. When the entry has act_prep,
 * arow is act_prep's output for the activation row (vec_dot4n alike). */
typedef void (*k_vec_dot4_fn)(const void *wrow, size_t stride, const void *arow, int64_t n,
                              float *out);
/* short batches: dots of 4 weight rows with nt activation rows (token t's at arow + t*astride
 * bytes, 1 <= nt <= K_DOT4N_MAX) into out[t*ostride + i], each bit-identical to vec_dot4
 * for that token; the rows are read and unpacked once for all nt tokens */
#define K_DOT4N_MAX 8
typedef void (*k_vec_dot4n_fn)(const void *wrow, size_t stride, const void *arow, size_t astride,
                               int nt, int64_t n, float *out, size_t ostride);
/* optional: converts one activation row (n elements, the entry's atype) into the layout
 * vec_dot4 / vec_dot4n read, once per product rather than once per 4-row group; returns
 * the bytes written (dst NULL: the bytes needed) */
typedef size_t (*k_act_prep_fn)(const void *arow, int64_t n, void *dst);
/* X16 layout (K_LAYOUT_X16): the 16 rows of a group (at its first row's address) with one
 * activation row prepared by the entry's act_prep16, into out[0..15] — each bit-identical
 * to vec_dot4 / the prefill tile on the same rows in GGUF layout.
 * The dot may also run over K-slices (matrices with long rows are stored by slices, see
 * k_x16_slice): part
 * K_X16_BEGIN starts the sums, a call without K_X16_END keeps them in state
 * (K_X16_STATE floats) instead of writing out, the next call resumes from there; whole =
 * K_X16_BEGIN | K_X16_END (state unused). `group` is then the slice's bytes (the group
 * layout of a K = n matrix) and arow advances by the prepared size of the elements before
 * the slice (k0, a multiple of K_X16_SLICE_ALIGN); the result is the whole dot's bits. */
#define K_X16_BEGIN 1u
#define K_X16_END 2u
#define K_X16_STATE (9 * 16)
#define K_X16_SLICE_ALIGN 256
typedef void (*k_vec_dot16_fn)(const void *group, const void *arow, int64_t n, float *out, float *state,
                               unsigned part);
/* tile GEMM for M > 1 (prefill), defined in kernels/gemm.h (gemm helper) */
typedef struct k_gemm_ops k_gemm_ops;

typedef struct k_ops {
    const char *name;        /* implementation, e.g. "scalar", "avx2"; NULL = unsupported */
    uint32_t atype;          /* activation format (q_vec_dot_type(wtype)) */
    k_vec_dot_fn vec_dot;
    k_quantize_fn quantize;  /* converts activations to atype */
    k_vec_dot4_fn vec_dot4;  /* optional (NULL): 4 rows per call (decode and batches < K_GEMM_MIN_TOKENS) */
    k_vec_dot4n_fn vec_dot4n; /* optional (NULL, needs vec_dot4): 4 rows x several tokens */
    k_act_prep_fn act_prep;  /* optional (NULL): the activation layout of vec_dot4 / vec_dot4n */
    k_vec_dot16_fn vec_dot16; /* optional (NULL): weights in the X16 layout */
    k_act_prep_fn act_prep16; /* optional with vec_dot16: its activation layout (NULL: the quantized row) */
} k_ops;

/* Element-wise and attention kernels (the non-matmul work of a layer; at decode it runs on
 * one thread between the matmuls, so its speed is decode speed). Scalar references in
 * kernels/vec.c; ISA versions agree with them to a stated tolerance (tests/test_kernels.c),
 * not bit for bit: exp is a polynomial there.
 *
 * silu_mul: out[i] = silu(g[i]) * u[i] = g[i] / (1 + exp(-g[i])) * u[i]; out may be u.
 * attend: ng >= 1 query heads sharing one KV head (grouped-query attention: the cache rows
 *   are read once for the group) against n >= 1 cached positions; for head g (q_g = q +
 *   g*hdk, s_g = s + g*n, out_g = out + g*hdv):
 *     s_g[i]   = scale * sum_d c(q_g[d]) * K_i[d]        d < hdk, K_i at K + i*ks bytes
 *     p_g[i]   = c(softmax(s_g)[i])                       (s is the caller's ng*n floats)
 *     out_g[d] = sum_i p_g[i] * V_i[d]                   d < hdv, V_i at V + i*vs bytes
 *   K and V elements in the cache type the entry is for (F32 or F16), c() rounds to that
 *   type (llama.cpp's arithmetic). */
typedef void (*k_silu_mul_fn)(const float *g, const float *u, float *out, int64_t n);
typedef void (*k_attend_fn)(const float *q, const void *K, size_t ks, const void *V, size_t vs, int64_t n,
                            int64_t hdk, int64_t hdv, int64_t ng, float scale, float *s, float *out);
typedef struct k_vec_ops {
    const char *name;        /* implementation */
    k_silu_mul_fn silu_mul;
    k_attend_fn attend_f32;  /* F32 KV cache */
    k_attend_fn attend_f16;  /* F16 KV cache */
} k_vec_ops;

/* the scalar references */
void k_ref_silu_mul(const float *g, const float *u, float *out, int64_t n);
void k_ref_attend_f32(const float *q, const void *K, size_t ks, const void *V, size_t vs, int64_t n,
                      int64_t hdk, int64_t hdv, int64_t ng, float scale, float *s, float *out);
void k_ref_attend_f16(const float *q, const void *K, size_t ks, const void *V, size_t vs, int64_t n,
                      int64_t hdk, int64_t hdv, int64_t ng, float scale, float *s, float *out);

typedef enum k_isa {
    K_ISA_SCALAR = 0,
    K_ISA_AVX2 = 1,
    K_ISA_AVX512 = 2,
    /* aarch64 (kernels/arm/); an x86 value asked for on aarch64 selects the scalar table */
    K_ISA_NEON = 3,
    K_ISA_NEON_DOTPROD = 4,
    K_ISA_BEST = 99, /* whatever the CPU supports */
} k_isa;

typedef struct k_kernels {
    k_isa isa;                  /* what was selected */
    k_ops ops[ND_TYPE_COUNT];   /* by weight type */
    /* blocked matmul for M > 1 by weight type (gemm helper, kernels/gemm.h); NULL = the
     * vec_dot per (row, token) path. Uses ops[t].quantize and ops[t].atype. */
    const k_gemm_ops *gemm[ND_TYPE_COUNT];
    k_vec_ops vec;
} k_kernels;

/* Fill k with the scalar entries, then with the best ISA <= want the CPU supports. */
void k_select(k_kernels *k, k_isa want);
const char *k_isa_name(k_isa isa);

/* 0 if k has a kernel for weight type wtype with rows of K elements; otherwise an error
 * naming the type (ND_EUNSUPPORTED) or the bad length (ND_EFORMAT). */
int k_check(const k_kernels *k, uint32_t wtype, int64_t K, nd_err *err);

/* Grow-only scratch for quantized activations; owned by the caller (one per context). */
typedef struct k_scratch {
    void *data;
    size_t cap;
} k_scratch;
void k_scratch_free(k_scratch *s);

/* Everything a matmul needs besides its operands. */
typedef struct k_env {
    const k_kernels *kern;
    nd_pool *pool;       /* NULL = single-threaded */
    k_scratch *scratch;
    /* optional: called by pool item ith (0 <= ith < pool size) of a threaded decode
     * product (M == 1) before its rows, e.g. to prefetch what that thread reads next */
    void (*before)(void *user, int ith);
    void *before_user;
} k_env;

/* Resident weight layouts (k_mat.layout).
 *   K_LAYOUT_ROWS  GGUF's: one row after another.
 *   K_LAYOUT_X16   Q4_0, Q5_0, Q8_0, Q4_K (kernels/x16.c): rows interleaved block by block
 *                  in groups of
 *                  16, so a 512-bit load holds a quant dword of each of 16 rows and a group
 *                  is one sequential stream. A group takes exactly the bytes of its rows, so
 *                  row r's group starts where row r / 16 * 16 did. Made once at load, in
 *                  place (k_x16_repack), when the weights are copied and this CPU's kernels
 *                  have the layout (k_x16_supported); outputs are bit-identical to
 *                  K_LAYOUT_ROWS. Long Q4_0 rows (a group over 8 KB) are stored by
 *                  K-slices instead: each K_X16_SUPER groups (the last run may have
 *                  fewer) hold slice 0 of each group, then slice 1 of each, ... (a slice
 *                  of a group laid out as a group of a K = slice matrix), so that decode
 *                  reads them in one sequential stream while the activation slice they
 *                  share stays in L1 (read whole, a 43.8 KB group at K = 4864 pushed the
 *                  activation row out of L1 between two uses). */
enum { K_LAYOUT_ROWS = 0, K_LAYOUT_X16 = 1 };
/* the shape and address allow X16: Q4_0, Q5_0 or Q8_0 with K % 64 == 0, or Q4_K; N % 16 == 0,
 * W 64-byte aligned */
bool k_x16_fits(uint32_t wtype, int64_t K, int64_t N, const void *W);
/* k has every kernel the layout needs for wtype (decode, short batches, prefill tiles) */
bool k_x16_supported(const k_kernels *k, uint32_t wtype);
#define K_X16_SUPER 4     /* groups stored slice by slice together */
#define K_X16_TMP_ROWS (16 * K_X16_SUPER) /* rows of k_x16_repack's tmp (a run) */
/* the K-slice (elements) an X16 matrix of this type and K is stored by: K (whole groups),
 * or a multiple of K_X16_SLICE_ALIGN that keeps a group's slice within 4 KB */
int64_t k_x16_slice(uint32_t wtype, int64_t K);
/* byte offset of slice s of group g in an X16 matrix of N rows */
size_t k_x16_offset(uint32_t wtype, int64_t K, int64_t N, int64_t g, int64_t s);
/* in place, GGUF rows -> X16 (k_x16_fits must hold; tmp: K_X16_TMP_ROWS rows' bytes) */
void k_x16_repack(uint32_t wtype, void *W, int64_t K, int64_t N, void *tmp);
/* group g of an X16 matrix of N rows in the whole-group layout (16 rows' bytes at dst) */
void k_x16_group(uint32_t wtype, const void *W, int64_t K, int64_t N, int64_t g, void *dst);
/* row r of an X16 matrix of N rows back in GGUF layout (one row's bytes at dst) */
void k_x16_row(uint32_t wtype, const void *W, int64_t K, int64_t N, int64_t r, void *dst);

/* Batches of fewer tokens than this never use the blocked GEMM (see k_matmul). */
#define K_GEMM_MIN_TOKENS 64

/* Y[M][N] = X[M][K] · W^T, W = N rows of K elements of type wtype (row stride = row bytes).
 * K must be a multiple of the type's block size (k_check). Returns 0, ND_ENOMEM (scratch)
 * or ND_EUNSUPPORTED / ND_EFORMAT (as k_check). */
int k_matmul(const k_env *env, uint32_t wtype, const void *W, int64_t K, int64_t N,
             const float *X, int64_t M, float *Y, nd_err *err);

/* Several products with the same activations X[M][K] (decode: Q, K and V; gate and up):
 * Y_i[M][N_i] = X · W_i^T. X is converted once per distinct activation format and all
 * parts' rows go to the pool as one job — one wake-up and one join instead of one per
 * product, which at decode size (a 128-row K or V matrix is ~2 µs of streaming) costs as
 * much as the product. Each output is bit-identical to k_matmul on that part alone.
 * Errors as k_matmul; n outside 1..K_MATMUL_PARTS is ND_EINVAL. */
#define K_MATMUL_PARTS 4
typedef struct k_mat {
    uint32_t wtype;
    const void *W; /* N rows of K elements of wtype */
    int64_t N;
    float *Y;      /* [M][N] */
    int layout;    /* K_LAYOUT_ROWS (0) or K_LAYOUT_X16 */
} k_mat;
int k_matmul_n(const k_env *env, const k_mat *mats, int n, int64_t K, const float *X, int64_t M,
               nd_err *err);

/* One dot product with the selected kernel (used by attention over the KV cache, whose
 * rows are F16 or F32 and whose "activation" q is converted once by the caller). */
static inline float k_dot(const k_kernels *k, uint32_t wtype, const void *w, const void *a,
                          int64_t n) {
    return k->ops[wtype].vec_dot(w, a, n);
}

#endif
