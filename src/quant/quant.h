/* nindub quant: block formats and the scalar reference for every weight type.
 *
 * Layouts are byte-identical to the GGUF blocks written by llama.cpp (ggml-common.h);
 * every struct below states its layout and is _Static_assert'ed against the sizes in
 * core's nd_type_info(). Multi-byte fields are little-endian (we only run on LE hosts).
 *
 * What lives here:
 *   - reference dequantize for every supported type           q_dequantize_row
 *   - reference quantize, byte-identical to llama.cpp's
 *     quantize_row_*_ref (what `llama-quantize` runs without
 *     an imatrix), including the K-quant scale searches        q_quantize_row
 *   - importance-weighted quantize (llama.cpp's
 *     quantize_row_*_impl when quant_weights != NULL)           q_quantize_row_imat
 *   - activation quantization and the integer dot products
 *     weight-row x activation-row (llama.cpp's
 *     ggml_vec_dot_*_generic semantics)                         q_quantize_act, q_vec_dot
 *   - per-type error bounds for tests                           q_rms_bound
 *
 * These scalar functions are the oracle for the SIMD kernels in src/kernels/ and the
 * fallback on CPUs without SIMD. Nothing here allocates or keeps state; every function is
 * thread-safe.
 *
 * Activation types (q_vec_dot_type), as llama.cpp's CPU backend pairs them:
 *   F32  -> F32     F16 -> F16     BF16 -> BF16   (float dot, double accumulator)
 *   Q4_0, Q5_0, Q8_0 -> Q8_0      (sum_i int(w)*int(a) per block, times d_w*d_a)
 *   Q4_1, Q5_1       -> Q8_1      (Q8_1 carries s = d_a*sum(a_q) so the min term is one mul)
 *   Q2_K .. Q6_K     -> Q8_K      (float d, bsums of 16 for the K-quant min terms)
 */
#ifndef ND_QUANT_H
#define ND_QUANT_H

#include <stddef.h>
#include <stdint.h>

#include "core/nd.h"

#define Q_QK 32     /* elements per block of the 32-block formats (Q4_0 .. Q8_1) */
#define Q_QK_K 256  /* elements per super-block of the K-quants and Q8_K */
#define Q_K_SCALE_SIZE 12 /* packed 6-bit scales+mins of Q4_K / Q5_K */

/* ------------------------------------------------------------ 32-blocks */

/* Q4_0, 18 bytes: [0..1] fp16 d | [2..17] qs: byte j holds element j (low nibble) and
 * element j+16 (high nibble). value = (q - 8) * d */
typedef struct {
    uint16_t d;
    uint8_t qs[Q_QK / 2];
} q_block_q4_0;
_Static_assert(sizeof(q_block_q4_0) == 18, "q4_0 block is 18 bytes");

/* Q4_1, 20 bytes: [0..1] fp16 d | [2..3] fp16 m | [4..19] qs as Q4_0. value = q*d + m */
typedef struct {
    uint16_t d;
    uint16_t m;
    uint8_t qs[Q_QK / 2];
} q_block_q4_1;
_Static_assert(sizeof(q_block_q4_1) == 20, "q4_1 block is 20 bytes");

/* Q5_0, 22 bytes: [0..1] fp16 d | [2..5] qh: u32 LE, bit j = 5th bit of element j |
 * [6..21] qs low nibbles as Q4_0. value = (q - 16) * d */
typedef struct {
    uint16_t d;
    uint8_t qh[4];
    uint8_t qs[Q_QK / 2];
} q_block_q5_0;
_Static_assert(sizeof(q_block_q5_0) == 22, "q5_0 block is 22 bytes");

/* Q5_1, 24 bytes: [0..1] fp16 d | [2..3] fp16 m | [4..7] qh | [8..23] qs. value = q*d + m */
typedef struct {
    uint16_t d;
    uint16_t m;
    uint8_t qh[4];
    uint8_t qs[Q_QK / 2];
} q_block_q5_1;
_Static_assert(sizeof(q_block_q5_1) == 24, "q5_1 block is 24 bytes");

/* Q8_0, 34 bytes: [0..1] fp16 d | [2..33] int8 qs. value = q * d */
typedef struct {
    uint16_t d;
    int8_t qs[Q_QK];
} q_block_q8_0;
_Static_assert(sizeof(q_block_q8_0) == 34, "q8_0 block is 34 bytes");

/* Q8_1 (activations only), 36 bytes: [0..1] fp16 d | [2..3] fp16 s = d * sum(qs) |
 * [4..35] int8 qs. value = q * d */
typedef struct {
    uint16_t d;
    uint16_t s;
    int8_t qs[Q_QK];
} q_block_q8_1;
_Static_assert(sizeof(q_block_q8_1) == 36, "q8_1 block is 36 bytes");

/* ------------------------------------------------------------ K-quants */

/* Q2_K, 84 bytes: [0..15] scales: byte j = sub-block j (16 elements): low nibble scale,
 * high nibble min | [16..79] qs: 2-bit quants; within each 128-element half h, byte l
 * (0..31) holds elements 128h + l + 32s at bits 2s..2s+1 (s = 0..3) | [80..81] fp16 d |
 * [82..83] fp16 dmin. value = d*scale*q - dmin*min */
typedef struct {
    uint8_t scales[Q_QK_K / 16];
    uint8_t qs[Q_QK_K / 4];
    uint16_t d;
    uint16_t dmin;
} q_block_q2_K;
_Static_assert(sizeof(q_block_q2_K) == 84, "q2_K block is 84 bytes");

/* Q3_K, 110 bytes: [0..31] hmask: bit b of byte l = high bit of element 32b + l, SET means
 * "no -4" | [32..95] qs: low 2 bits, packed as Q2_K | [96..107] scales: 16 6-bit signed
 * scales (offset 32): low nibbles of 0..7 in bytes 0..7 low, of 8..15 in bytes 0..7 high;
 * high 2 bits of scale j at byte 8 + j%4, bits 2*(j/4) | [108..109] fp16 d.
 * value = d*(scale-32)*(q2 - (hbit ? 0 : 4)) */
typedef struct {
    uint8_t hmask[Q_QK_K / 8];
    uint8_t qs[Q_QK_K / 4];
    uint8_t scales[12];
    uint16_t d;
} q_block_q3_K;
_Static_assert(sizeof(q_block_q3_K) == 110, "q3_K block is 110 bytes");

/* Q4_K, 144 bytes: [0..1] fp16 d | [2..3] fp16 dmin | [4..15] 8 6-bit scales + 8 6-bit mins
 * (sub-blocks of 32): j<4: scale = b[j]&63, min = b[j+4]&63; j>=4: scale = (b[j+4]&15) |
 * (b[j-4]>>6)<<4, min = (b[j+4]>>4) | (b[j]>>6)<<4 | [16..143] qs: per 64 elements, 32
 * bytes: low nibbles = first 32, high nibbles = next 32. value = d*scale*q - dmin*min */
typedef struct {
    uint16_t d;
    uint16_t dmin;
    uint8_t scales[Q_K_SCALE_SIZE];
    uint8_t qs[Q_QK_K / 2];
} q_block_q4_K;
_Static_assert(sizeof(q_block_q4_K) == 144, "q4_K block is 144 bytes");

/* Q5_K, 176 bytes: [0..1] d | [2..3] dmin | [4..15] scales as Q4_K | [16..47] qh: bit
 * 2c (c = 64-element chunk) of byte l = 5th bit of element 64c + l, bit 2c+1 = of element
 * 64c + 32 + l | [48..175] qs low nibbles as Q4_K. value = d*scale*q - dmin*min */
typedef struct {
    uint16_t d;
    uint16_t dmin;
    uint8_t scales[Q_K_SCALE_SIZE];
    uint8_t qh[Q_QK_K / 8];
    uint8_t qs[Q_QK_K / 2];
} q_block_q5_K;
_Static_assert(sizeof(q_block_q5_K) == 176, "q5_K block is 176 bytes");

/* Q6_K, 210 bytes: [0..127] ql: per 128-element half, 64 bytes: byte l (0..31) low nibble
 * = element l, high = l+64; byte 32+l low = l+32, high = l+96 | [128..191] qh: per half 32
 * bytes, bits 2s..2s+1 of byte l = top 2 bits of element l + 32s | [192..207] int8 scales of
 * the 16 sub-blocks | [208..209] fp16 d. value = d*scale*(q - 32) */
typedef struct {
    uint8_t ql[Q_QK_K / 2];
    uint8_t qh[Q_QK_K / 4];
    int8_t scales[Q_QK_K / 16];
    uint16_t d;
} q_block_q6_K;
_Static_assert(sizeof(q_block_q6_K) == 210, "q6_K block is 210 bytes");

/* Q8_K (activations only), 292 bytes: [0..3] float d | [4..259] int8 qs |
 * [260..291] int16 bsums: sum of qs over each group of 16. value = q * d */
typedef struct {
    float d;
    int8_t qs[Q_QK_K];
    int16_t bsums[Q_QK_K / 16];
} q_block_q8_K;
_Static_assert(sizeof(q_block_q8_K) == 292, "q8_K block is 292 bytes");

/* ------------------------------------------------------------------ API */

/* Elements per block (1 for float types) and bytes per block; 0 if the type is not one
 * this module handles (see q_type_ok). */
uint32_t q_blck(uint32_t type);
uint32_t q_block_bytes(uint32_t type);
/* True for F32, F16, BF16, Q4_0, Q4_1, Q5_0, Q5_1, Q8_0, Q8_1, Q2_K..Q6_K, Q8_K. */
int q_type_ok(uint32_t type);
/* True for the weight types (everything above except the activation-only Q8_1, Q8_K). */
int q_is_weight_type(uint32_t type);
/* Bytes of a row of n elements, 0 if type unknown, n not a multiple of the block, or
 * n < 0. */
size_t q_row_size(uint32_t type, int64_t n);

/* Dequantize n elements (n a multiple of the block size) from src into dst.
 * Returns 0, ND_EINVAL (n not a multiple / negative) or ND_EUNSUPPORTED (type). */
int q_dequantize_row(uint32_t type, const void *src, float *dst, int64_t n);

/* Quantize n elements (n a multiple of the block size; may span several rows: all
 * reference quantizers are block-local) with llama.cpp's reference algorithm. Output is
 * byte-identical to quantize_row_<type>_ref (and to ggml_quantize_chunk without an
 * imatrix). F16/BF16 round to nearest even; Q8_1 and Q8_K are allowed (activations).
 * Returns 0, ND_EINVAL or ND_EUNSUPPORTED. Non-finite inputs produce unspecified block
 * contents (no undefined behaviour, other blocks unaffected). */
int q_quantize_row(uint32_t type, const float *src, void *dst, int64_t n);

/* Importance-weighted quantization of ONE row of n elements (the row statistics, e.g.
 * sigma^2 for Q4_0..Q5_1, are taken over the whole of src), as llama.cpp's
 * quantize_row_<type>_impl with quant_weights = imatrix (n floats, >= 0). With imatrix
 * NULL this is exactly q_quantize_row.
 * Types that use the imatrix: Q4_0, Q4_1, Q5_0, Q5_1, Q2_K, Q3_K, Q4_K, Q5_K, Q6_K.
 * Types that ignore it (as llama.cpp does): F32, F16, BF16, Q8_0 (and Q8_1, Q8_K). */
int q_quantize_row_imat(uint32_t type, const float *src, void *dst, int64_t n,
                        const float *imatrix);

/* The activation format a weight type's dot product wants (see the table at the top);
 * UINT32_MAX if wtype is not a weight type. */
uint32_t q_vec_dot_type(uint32_t wtype);

/* Quantize/convert an activation row to atype as llama.cpp's CPU backend does at run time
 * on x86 (what its logits were computed with): F32 copy; F16/BF16 nearest-even; Q8_0 and
 * Q8_1 with quantize_row_q8_0/q8_1's AVX2 arithmetic (inverse scale 127/amax, ties to
 * even — NOT the *_ref rules q_quantize_row keeps for files); Q8_K as the reference
 * (llama.cpp's x86 quantize_row_q8_K is the reference). Blocks whose max |x| is below
 * ~3.7e-37 (infinite inverse scale) quantize to zero. Same errors as q_quantize_row. */
int q_quantize_act(uint32_t atype, const float *x, void *dst, int64_t n);

/* 0 if q_vec_dot(wtype, .., atype, .., n) is a valid call, else ND_EINVAL /
 * ND_EUNSUPPORTED. Callers validate once per matrix, then call q_vec_dot in loops. */
int q_vec_dot_check(uint32_t wtype, uint32_t atype, int64_t n);

/* Dot product of a weight row (wtype) with an activation row (atype, normally
 * q_vec_dot_type(wtype)) of n elements, following ggml_vec_dot_<w>_<a>_generic: exact
 * integer sums per block, scaled by the block's float scales, accumulated in float
 * (float types: double accumulator). Invalid combinations are a bug: ND_ASSERT aborts
 * (use q_vec_dot_check). */
float q_vec_dot(uint32_t wtype, const void *wrow, uint32_t atype, const void *arow, int64_t n);

/* Test helper: an upper bound on RMS(dequant(quant(x)) - x) / RMS(x) for x drawn from a
 * zero-mean Gaussian (rows of >= 256 elements), with margin over what the reference
 * reaches (see tests/test_quant.c for the measured values). -1 for unknown types. */
double q_rms_bound(uint32_t type);

#endif
