/* AVX-512 VNNI tile GEMM (contract: kernels/gemm.h): 16 weight rows x up to GT tokens.
 *
 * Layout. A tile repacks 16 weight rows so that int32 lane r of a zmm belongs to row r:
 * for every group of 4 consecutive elements (k-group), one zmm holds the 4 quant bytes
 * of each of the 16 rows (gathered with vpgatherdd straight from the GGUF blocks).
 * vpdpbusd(acc, Wg, broadcast(4 activation bytes of token t)) then adds, in lane r, the
 * 4 products of row r — no horizontal sums, and one weight load serves GT tokens while
 * each token's 4 bytes come as an embedded broadcast.
 *
 * Signs. vpdpbusd multiplies unsigned bytes (first operand: the weights) by signed bytes
 * (the broadcast activations, in [-127, 127]). Weights are made unsigned by an offset:
 * Q4_0 / Q5_0 store q = value + 8 / + 16 already; Q8_0 bytes are flipped (w ^ 0x80 =
 * w + 128); so sum(w*a) = sum(u*a) - off * sum(a). The packed activation block carries
 * c = -off * sum(a) (exact int32), which seeds the accumulator: the block's integer dot
 * comes out exact. K-quants: Q4_K / Q6_K levels are unsigned (0..15 / 0..63); the
 * sub-block scales multiply the int32 lanes (vpmulld), the Q4_K mins and the Q6_K "-32"
 * enter through the Q8_K bsums with vpdpwssd on int16 pairs. Every integer of the scalar
 * reference is reproduced exactly; float scaling and accumulation use FMA per block.
 */
#include <immintrin.h>
#include <math.h>
#include <string.h>

#include "kernels/gemm.h"
#include "kernels/x86/x86.h"
#include "quant/quant.h"

#define GR 16 /* rows per tile: int32 lanes of a zmm */
#define GT 8  /* tokens held in registers */
#define INLINE static inline __attribute__((always_inline))

INLINE __m512i bcast32(const void *p) {
    int32_t v;
    memcpy(&v, p, 4);
    return _mm512_set1_epi32(v);
}
INLINE float bcastf_src(const void *p) {
    float v;
    memcpy(&v, p, 4);
    return v;
}

/* lane r = r * w_row (offsets of the 16 rows) */
static inline __m512i row_index(size_t w_row) {
    return _mm512_mullo_epi32(_mm512_setr_epi32(0, 1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13, 14, 15),
                              _mm512_set1_epi32((int)w_row));
}
static inline __mmask16 row_mask(int nr) { return (__mmask16)((1u << nr) - 1); }

/* dword at p + lane offset for the live rows, 0 for the others */
INLINE __m512i gather(__mmask16 m, __m512i idx, const uint8_t *p) {
    return _mm512_mask_i32gather_epi32(_mm512_setzero_si512(), m, idx, p, 1);
}
/* fp16 in the low half of each dword -> float */
INLINE __m512 half_lo(__m512i v) { return _mm512_cvtph_ps(_mm512_cvtepi32_epi16(v)); }

/* ================================================================ 32-blocks x Q8_0 */

/* packed activation block: the Q8_0 quants, the scale as float, c = -off * sum(qs) */
typedef struct {
    int8_t qs[Q_QK];
    float d;
    int32_t c;
} gq_act32;
_Static_assert(sizeof(gq_act32) == 40, "packed act block is 40 bytes");

/* packed weight block of 16 rows: q[g][r] = unsigned bytes 4g..4g+3 of row r; d as float */
typedef struct {
    uint8_t q[8][GR][4];
    float d[GR];
} gw_blk32;
_Static_assert(sizeof(gw_blk32) == 576, "packed weight block is 576 bytes");

static size_t act32_size(int64_t K) { return (size_t)(K / Q_QK) * sizeof(gq_act32); }
static size_t w32_size(int64_t K) { return (size_t)(K / Q_QK) * sizeof(gw_blk32); }

INLINE void act32_pack(const void *arow, void *dst, int64_t K, int off) {
    const q_block_q8_0 *y = arow;
    gq_act32 *p = dst;
    const __m256i ones = _mm256_set1_epi8(1);
    for (int64_t b = 0; b < K / Q_QK; b++) {
        const __m256i q = _mm256_loadu_si256((const __m256i *)y[b].qs);
        _mm256_storeu_si256((__m256i *)p[b].qs, q);
        const __m256i s4 = _mm256_dpbusd_epi32(_mm256_setzero_si256(), ones, q);
        __m128i s = _mm_add_epi32(_mm256_castsi256_si128(s4), _mm256_extracti128_si256(s4, 1));
        s = _mm_add_epi32(s, _mm_shuffle_epi32(s, _MM_SHUFFLE(1, 0, 3, 2)));
        s = _mm_add_epi32(s, _mm_shuffle_epi32(s, _MM_SHUFFLE(2, 3, 0, 1)));
        uint16_t h;
        memcpy(&h, &y[b].d, 2);
        p[b].d = _cvtsh_ss(h);
        p[b].c = -off * _mm_cvtsi128_si32(s);
    }
}
static void act_pack_off8(const void *a, void *d, int64_t K) { act32_pack(a, d, K, 8); }
static void act_pack_off16(const void *a, void *d, int64_t K) { act32_pack(a, d, K, 16); }
static void act_pack_off128(const void *a, void *d, int64_t K) { act32_pack(a, d, K, 128); }

/* the scale (fp16 at block offset 0) of the 16 rows */
INLINE void pack_d(gw_blk32 *o, __mmask16 m, __m512i idx, const uint8_t *blk) {
    _mm512_store_ps(o->d, half_lo(gather(m, idx, blk)));
}

static void pack_q8_0(const uint8_t *W, size_t w_row, int nr, int64_t nb, gw_blk32 *o) {
    const __mmask16 m = row_mask(nr);
    const __m512i idx = row_index(w_row), flip = _mm512_set1_epi8((char)0x80);
    for (int64_t b = 0; b < nb; b++, o++) {
        const uint8_t *blk = W + b * sizeof(q_block_q8_0);
        pack_d(o, m, idx, blk);
        for (int g = 0; g < 8; g++)
            _mm512_store_si512(o->q[g], _mm512_xor_si512(gather(m, idx, blk + 2 + 4 * g), flip));
    }
}

static void pack_q4_0(const uint8_t *W, size_t w_row, int nr, int64_t nb, gw_blk32 *o) {
    const __mmask16 m = row_mask(nr);
    const __m512i idx = row_index(w_row), m4 = _mm512_set1_epi8(0x0F);
    for (int64_t b = 0; b < nb; b++, o++) {
        const uint8_t *blk = W + b * sizeof(q_block_q4_0);
        pack_d(o, m, idx, blk);
        for (int g = 0; g < 4; g++) { /* bytes 4g..: elements 4g.. (low), 16 + 4g.. (high) */
            const __m512i v = gather(m, idx, blk + 2 + 4 * g);
            _mm512_store_si512(o->q[g], _mm512_and_si512(v, m4));
            _mm512_store_si512(o->q[g + 4], _mm512_and_si512(_mm512_srli_epi16(v, 4), m4));
        }
    }
}

static void pack_q5_0(const uint8_t *W, size_t w_row, int nr, int64_t nb, gw_blk32 *o) {
    const __mmask16 m = row_mask(nr);
    const __m512i idx = row_index(w_row), m4 = _mm512_set1_epi8(0x0F);
    const __m512i spread = _mm512_set1_epi32(0x00204081), b1 = _mm512_set1_epi8(1);
    for (int64_t b = 0; b < nb; b++, o++) {
        const uint8_t *blk = W + b * sizeof(q_block_q5_0);
        pack_d(o, m, idx, blk);
        const __m512i qh = gather(m, idx, blk + 2);
        for (int g = 0; g < 8; g++) {
            const __m512i v = gather(m, idx, blk + 6 + 4 * (g & 3));
            const __m512i lo = _mm512_and_si512(g < 4 ? v : _mm512_srli_epi16(v, 4), m4);
            /* bits 4g..4g+3 of qh -> bit 0 of bytes 0..3 (x * 0x00204081: bit i lands at 8i) */
            const __m512i h4 = _mm512_and_si512(_mm512_srli_epi32(qh, 4 * g), _mm512_set1_epi32(15));
            const __m512i hb = _mm512_and_si512(_mm512_mullo_epi32(h4, spread), b1);
            _mm512_store_si512(o->q[g], _mm512_or_si512(lo, _mm512_slli_epi16(hb, 4)));
        }
    }
}

/* T tokens x 16 rows over all blocks; T is a constant after inlining */
INLINE void tile32_T(const gw_blk32 *w, int64_t nb, const uint8_t *P, size_t p_row, float *Y,
                     int64_t ldy, __mmask16 m, const int T) {
    __m512 acc[GT];
#pragma GCC unroll 16
    for (int t = 0; t < T; t++) acc[t] = _mm512_setzero_ps();
    for (int64_t b = 0; b < nb; b++, w++) {
        __m512i s[GT];
#pragma GCC unroll 16
        for (int t = 0; t < T; t++) s[t] = bcast32(&((const gq_act32 *)(P + t * p_row))[b].c);
#pragma GCC unroll 8
        for (int g = 0; g < 8; g++) {
            const __m512i wg = _mm512_load_si512(w->q[g]);
#pragma GCC unroll 16
            for (int t = 0; t < T; t++)
                s[t] = _mm512_dpbusd_epi32(s[t], wg,
                                           bcast32(((const gq_act32 *)(P + t * p_row))[b].qs + 4 * g));
        }
        const __m512 d = _mm512_load_ps(w->d);
#pragma GCC unroll 16
        for (int t = 0; t < T; t++) {
            const float da = bcastf_src(&((const gq_act32 *)(P + t * p_row))[b].d);
            acc[t] = _mm512_fmadd_ps(_mm512_cvtepi32_ps(s[t]), _mm512_mul_ps(d, _mm512_set1_ps(da)), acc[t]);
        }
    }
#pragma GCC unroll 16
    for (int t = 0; t < T; t++) _mm512_mask_storeu_ps(Y + t * ldy, m, acc[t]);
}

/* token blocks of GT, the tail with a smaller constant T */
#define TILE_TOKENS(FN, ...)                                                             \
    for (int64_t t0 = 0; t0 < M; t0 += GT) {                                             \
        const uint8_t *p_ = (const uint8_t *)P + (size_t)t0 * p_row;                     \
        float *y_ = Y + t0 * ldy;                                                        \
        switch (M - t0 < GT ? (int)(M - t0) : GT) {                                      \
        case 8: FN(__VA_ARGS__, p_, p_row, y_, ldy, m, 8); break;                        \
        case 7: FN(__VA_ARGS__, p_, p_row, y_, ldy, m, 7); break;                        \
        case 6: FN(__VA_ARGS__, p_, p_row, y_, ldy, m, 6); break;                        \
        case 5: FN(__VA_ARGS__, p_, p_row, y_, ldy, m, 5); break;                        \
        case 4: FN(__VA_ARGS__, p_, p_row, y_, ldy, m, 4); break;                        \
        case 3: FN(__VA_ARGS__, p_, p_row, y_, ldy, m, 3); break;                        \
        case 2: FN(__VA_ARGS__, p_, p_row, y_, ldy, m, 2); break;                        \
        default: FN(__VA_ARGS__, p_, p_row, y_, ldy, m, 1); break;                       \
        }                                                                                \
    }
_Static_assert(GT == 8, "TILE_TOKENS lists the cases 1..8");

static void tile32_run(const gw_blk32 *w, int64_t nb, int nr, const void *P, size_t p_row,
                       int64_t M, float *Y, int64_t ldy) {
    const __mmask16 m = row_mask(nr);
    TILE_TOKENS(tile32_T, w, nb)
}

#define TILE32(NAME, PACK)                                                               \
    static void NAME(const void *W, size_t w_row, int nr, const void *P, size_t p_row,   \
                     int64_t M, int64_t K, float *Y, int64_t ldy, void *wtmp) {          \
        PACK(W, w_row, nr, K / Q_QK, wtmp);                                              \
        tile32_run(wtmp, K / Q_QK, nr, P, p_row, M, Y, ldy);                             \
    }
TILE32(tile_q8_0, pack_q8_0)
TILE32(tile_q4_0, pack_q4_0)
TILE32(tile_q5_0, pack_q5_0)
#undef TILE32

/* ================================================================ X16 layout */

/* Rows already interleaved (kernels/x16.c): a block pair of the group is 32 * bb bytes, the
 * 16 fp16 d of block 2p then of 2p + 1 (64 bytes), then each block's quant chunks of 64
 * bytes (chunk k: quant bytes 4k..4k+3 of rows 0..15): 4 for Q4_0, 8 for Q8_0. */

/* software prefetch distance of the decode kernels (Q4_0 tg128 0.5B, 3 rounds each,
 * noisy: none 206-213 t/s, 1 KB 189-193, 2 KB 190-211, 4 KB 210-214, 8 KB 206-209; one
 * matrix from RAM, 2 threads, Q4_0 / Q8_0 at K = 896 and 4864: 4 KB best or tied, 8-32 KB
 * 5-15% slower) */
#define X16_PF 4096
/* ... as a non-temporal prefetch (the weights are read once per token: no point keeping
 * them in L2/L3 at the expense of what is reused). With T0, single-thread streaming from RAM
 * fell with K (30 GB/s at K = 896, 21 at 9728; likely a group of long rows, 43.8 KB of Q4_0
 * at K = 4864, pushing the packed activations it re-reads out of L1). NTA, one matrix from
 * RAM on 2 threads: Q4_0
 * K = 4864 35-38 -> 44-47 GB/s, K = 896 50-51 -> 59-60, Q8_0 58-67 -> 68-69; tg128 0.5B
 * Q4_0 1.09x (4 rounds), Q8_0 1.09x (5), Q4_K_M 1.06x (3). */
#define X16_HINT _MM_HINT_NTA

/* decode: the tile's integers and float chain for one token, read straight from the
 * group (no repack): lane r = row r, seeded with the block's c (-8 or -128 x sum(a));
 * Q4_0: low nibbles against elements 4k.., high against 16 + 4k..; Q8_0: bytes flipped to
 * unsigned (x ^ 0x80) against elements 4k.. */
INLINE void dot16(const uint8_t *G, const gq_act32 *a, int64_t nb, float *out, float *state, unsigned part,
                  const int q8) {
    const size_t bb = q8 ? sizeof(q_block_q8_0) : sizeof(q_block_q4_0), qb = 16 * (bb - 2);
    const __m512i m4 = _mm512_set1_epi8(0x0F), flip = _mm512_set1_epi8((char)0x80);
    __m512 acc = part & K_X16_BEGIN ? _mm512_setzero_ps() : _mm512_loadu_ps(state);
    for (int64_t b = 0; b < nb; b++) {
        const uint8_t *pair = G + (size_t)(b / 2) * 32 * bb, *q = pair + 64 + (size_t)(b & 1) * qb;
        /* the stream X16_PF bytes ahead: this block's quant lines, and on odd blocks the
         * next pair's d line */
        for (size_t l = 0; l < qb / 64; l++) _mm_prefetch((const char *)q + X16_PF + 64 * l, X16_HINT);
        if (b & 1) _mm_prefetch((const char *)pair + X16_PF + 32 * bb, X16_HINT);
        __m512i lo = _mm512_set1_epi32(a[b].c), hi = _mm512_setzero_si512();
        if (q8) {
#pragma GCC unroll 8
            for (int k = 0; k < 8; k += 2) {
                lo = _mm512_dpbusd_epi32(lo, _mm512_xor_si512(_mm512_load_si512(q + 64 * k), flip),
                                         bcast32(a[b].qs + 4 * k));
                hi = _mm512_dpbusd_epi32(hi, _mm512_xor_si512(_mm512_load_si512(q + 64 * k + 64), flip),
                                         bcast32(a[b].qs + 4 * k + 4));
            }
        } else {
#pragma GCC unroll 4
            for (int k = 0; k < 4; k++) {
                const __m512i w = _mm512_load_si512(q + 64 * k);
                lo = _mm512_dpbusd_epi32(lo, _mm512_and_si512(w, m4), bcast32(a[b].qs + 4 * k));
                hi = _mm512_dpbusd_epi32(hi, _mm512_and_si512(_mm512_srli_epi16(w, 4), m4),
                                         bcast32(a[b].qs + 16 + 4 * k));
            }
        }
        const __m512 d = _mm512_cvtph_ps(_mm256_load_si256((const __m256i *)(pair + (size_t)(b & 1) * 32)));
        acc = _mm512_fmadd_ps(_mm512_cvtepi32_ps(_mm512_add_epi32(lo, hi)), _mm512_mul_ps(d, _mm512_set1_ps(a[b].d)), acc);
    }
    _mm512_storeu_ps(part & K_X16_END ? out : state, acc);
}

void k_avx512_dot16_q4_0(const void *group, const void *arow, int64_t n, float *out, float *state, unsigned part) {
    dot16(group, arow, n / Q_QK, out, state, part, 0);
}
void k_avx512_dot16_q8_0(const void *group, const void *arow, int64_t n, float *out, float *state, unsigned part) {
    dot16(group, arow, n / Q_QK, out, state, part, 1);
}

/* the activation layouts of the dot16 entries: the tiles' packed blocks */
size_t k_avx512_prep16_q4_0(const void *arow, int64_t n, void *dst) {
    if (dst) act_pack_off8(arow, dst, n);
    return act32_size(n);
}
size_t k_avx512_prep16_q8_0(const void *arow, int64_t n, void *dst) {
    if (dst) act_pack_off128(arow, dst, n);
    return act32_size(n);
}

/* prefill: a group into the tile's packed blocks (loads instead of the gathers of
 * pack_q4_0 / pack_q8_0 / pack_q5_0); t: 0 Q4_0, 1 Q8_0, 2 Q5_0 (chunk 0 is qh, then qs) */
INLINE void pack_x16(const uint8_t *G, int64_t nb, gw_blk32 *o, const int t) {
    const size_t bb = t == 1 ? sizeof(q_block_q8_0) : t == 2 ? sizeof(q_block_q5_0) : sizeof(q_block_q4_0);
    const size_t qb = 16 * (bb - 2);
    const __m512i m4 = _mm512_set1_epi8(0x0F), flip = _mm512_set1_epi8((char)0x80);
    const __m512i spread = _mm512_set1_epi32(0x00204081), b1 = _mm512_set1_epi8(1);
    for (int64_t b = 0; b < nb; b++, o++) {
        const uint8_t *pair = G + (size_t)(b / 2) * 32 * bb, *q = pair + 64 + (size_t)(b & 1) * qb;
        _mm512_store_ps(o->d, _mm512_cvtph_ps(_mm256_load_si256((const __m256i *)(pair + (size_t)(b & 1) * 32))));
        if (t == 1) {
            for (int k = 0; k < 8; k++) _mm512_store_si512(o->q[k], _mm512_xor_si512(_mm512_load_si512(q + 64 * k), flip));
            continue;
        }
        const uint8_t *qs = t == 2 ? q + 64 : q;
        const __m512i qh = t == 2 ? _mm512_load_si512(q) : _mm512_setzero_si512();
        for (int k = 0; k < 4; k++) {
            const __m512i v = _mm512_load_si512(qs + 64 * k);
            __m512i lo = _mm512_and_si512(v, m4), hi = _mm512_and_si512(_mm512_srli_epi16(v, 4), m4);
            if (t == 2) { /* bits 4g..4g+3 of qh -> bit 4 of bytes 0..3 (x * 0x00204081: bit i lands at 8i) */
                const __m512i h4l = _mm512_and_si512(_mm512_srli_epi32(qh, 4 * k), _mm512_set1_epi32(15));
                const __m512i h4h = _mm512_and_si512(_mm512_srli_epi32(qh, 16 + 4 * k), _mm512_set1_epi32(15));
                lo = _mm512_or_si512(lo, _mm512_slli_epi16(_mm512_and_si512(_mm512_mullo_epi32(h4l, spread), b1), 4));
                hi = _mm512_or_si512(hi, _mm512_slli_epi16(_mm512_and_si512(_mm512_mullo_epi32(h4h, spread), b1), 4));
            }
            _mm512_store_si512(o->q[k], lo);
            _mm512_store_si512(o->q[k + 4], hi);
        }
    }
}

/* as TILE32, packing an X16 group (t as in pack_x16) */
#define TILE_X16(NAME, T)                                                                \
    static void NAME(const void *W, size_t w_row, int nr, const void *P, size_t p_row,   \
                     int64_t M, int64_t K, float *Y, int64_t ldy, void *wtmp) {          \
        (void)w_row;                                                                     \
        pack_x16(W, K / Q_QK, wtmp, T);                                                  \
        tile32_run(wtmp, K / Q_QK, nr, P, p_row, M, Y, ldy);                             \
    }
TILE_X16(tile_x16_q4_0, 0)
TILE_X16(tile_x16_q8_0, 1)
TILE_X16(tile_x16_q5_0, 2)
#undef TILE_X16

/* Q5_0 decode (AVX512_BITALG): the fifth bits of a chunk come from the block's qh dwords
 * (chunk 0 of the block: one per row) with vpshufbitqmb: mask bit k (byte k = row k / 4,
 * element i = k % 4 of the chunk) selects bit 32 * (row & 1) + 4j + i (+ 16 for the high
 * nibbles) of the qword holding that row's qh, then byte k gets 0x10. */
__attribute__((target("avx512bitalg"))) void k_avx512_dot16_q5_0(const void *group, const void *arow, int64_t n,
                                                                 float *out, float *state, unsigned part) {
    const uint8_t *G = group;
    const gq_act32 *a = arow;
    const int64_t nb = n / Q_QK;
    const size_t bb = sizeof(q_block_q5_0);
    const __m512i m4 = _mm512_set1_epi8(0x0F), c10 = _mm512_set1_epi8(0x10);
    /* bytes of a qword: rows 2m (bits 0..3 of the low dword) and 2m + 1 (32..35) */
    const __m512i base = _mm512_set1_epi64(0x2322212003020100);
    __m512 acc = part & K_X16_BEGIN ? _mm512_setzero_ps() : _mm512_loadu_ps(state);
    for (int64_t b = 0; b < nb; b++) {
        const uint8_t *pair = G + (size_t)(b / 2) * 32 * bb, *q = pair + 64 + (size_t)(b & 1) * 320;
        for (int l = 0; l < 5; l++) _mm_prefetch((const char *)q + X16_PF + 64 * l, X16_HINT);
        if (b & 1) _mm_prefetch((const char *)pair + X16_PF + 32 * bb, X16_HINT);
        const __m512i qh = _mm512_load_si512(q);
        __m512i lo = _mm512_set1_epi32(a[b].c), hi = _mm512_setzero_si512();
#pragma GCC unroll 4
        for (int k = 0; k < 4; k++) {
            const __m512i w = _mm512_load_si512(q + 64 + 64 * k);
            const __m512i il = _mm512_add_epi8(base, _mm512_set1_epi8((char)(4 * k)));
            const __m512i ih = _mm512_add_epi8(base, _mm512_set1_epi8((char)(16 + 4 * k)));
            const __m512i vl = _mm512_or_si512(_mm512_and_si512(w, m4),
                                               _mm512_maskz_mov_epi8(_mm512_bitshuffle_epi64_mask(qh, il), c10));
            const __m512i vh = _mm512_or_si512(_mm512_and_si512(_mm512_srli_epi16(w, 4), m4),
                                               _mm512_maskz_mov_epi8(_mm512_bitshuffle_epi64_mask(qh, ih), c10));
            lo = _mm512_dpbusd_epi32(lo, vl, bcast32(a[b].qs + 4 * k));
            hi = _mm512_dpbusd_epi32(hi, vh, bcast32(a[b].qs + 16 + 4 * k));
        }
        const __m512 d = _mm512_cvtph_ps(_mm256_load_si256((const __m256i *)(pair + (size_t)(b & 1) * 32)));
        acc = _mm512_fmadd_ps(_mm512_cvtepi32_ps(_mm512_add_epi32(lo, hi)), _mm512_mul_ps(d, _mm512_set1_ps(a[b].d)), acc);
    }
    _mm512_storeu_ps(part & K_X16_END ? out : state, acc);
}

size_t k_avx512_prep16_q5_0(const void *arow, int64_t n, void *dst) {
    if (dst) act_pack_off16(arow, dst, n);
    return act32_size(n);
}

/* ================================================================ Q4_K, X16 layout */

/* The 16 rows' sub-block scales and mins of one X16 super-block (chunks 1..3 = the 12
 * scale bytes as dwords u0, u1, u2), unpacked as unpack_scales_k4 does, lane r = row r:
 * sc[j] / mn[j], j < 8, as int32. */
INLINE void x16_scales_k4(const uint8_t *blk, __m512i sc[8], __m512i mn[8]) {
    const __m512i u0 = _mm512_load_si512(blk + 64), u1 = _mm512_load_si512(blk + 128),
                  u2 = _mm512_load_si512(blk + 192);
    const __m512i k3f = _mm512_set1_epi32(0x3f3f3f3f), k0f = _mm512_set1_epi32(0x0f0f0f0f),
                  k30 = _mm512_set1_epi32(0x30303030), ff = _mm512_set1_epi32(0xff);
    const __m512i s_lo = _mm512_and_si512(u0, k3f), m_lo = _mm512_and_si512(u1, k3f);
    const __m512i s_hi = _mm512_or_si512(_mm512_and_si512(u2, k0f), _mm512_and_si512(_mm512_srli_epi32(u0, 2), k30));
    const __m512i m_hi = _mm512_or_si512(_mm512_and_si512(_mm512_srli_epi32(u2, 4), k0f),
                                         _mm512_and_si512(_mm512_srli_epi32(u1, 2), k30));
    for (int j = 0; j < 4; j++) {
        sc[j] = _mm512_and_si512(_mm512_srli_epi32(s_lo, 8 * j), ff);
        sc[j + 4] = _mm512_and_si512(_mm512_srli_epi32(s_hi, 8 * j), ff);
        mn[j] = _mm512_and_si512(_mm512_srli_epi32(m_lo, 8 * j), ff);
        mn[j + 4] = _mm512_and_si512(_mm512_srli_epi32(m_hi, 8 * j), ff);
    }
}

/* decode: k_avx2_dot_q4_K's integers and float sequence for 16 rows at once — its 8 float
 * lanes (lane l: bytes 4l..4l+3 of every 32-byte quant chunk, times the sub-block scale)
 * become 8 accumulators of 16 rows, summed at the end in hsum_ps's order; the mins term is
 * its scalar mul-then-add per super-block. Bit-identical to vec_dot4 / vec_dot on the rows. */
void k_avx512_dot16_q4_K(const void *group, const void *arow, int64_t n, float *out, float *state,
                         unsigned part) {
    const uint8_t *G = group;
    const q_block_q8_K *y = arow;
    const int64_t nb = n / Q_QK_K;
    const __m512i m4 = _mm512_set1_epi8(0x0F);
    __m512 acc[8], summ; /* state: acc[0..7], summ */
    const bool begin = part & K_X16_BEGIN;
    for (int l = 0; l < 8; l++) acc[l] = begin ? _mm512_setzero_ps() : _mm512_loadu_ps(state + 16 * l);
    summ = begin ? _mm512_setzero_ps() : _mm512_loadu_ps(state + 128);
    for (int64_t b = 0; b < nb; b++) {
        const uint8_t *blk = G + (size_t)b * 16 * sizeof(q_block_q4_K);
        for (int l = 0; l < 36; l++) _mm_prefetch((const char *)blk + X16_PF + 64 * l, X16_HINT);
        const __m512i dd = _mm512_load_si512(blk);
        const __m512 yd = _mm512_set1_ps(y[b].d);
        const __m512 d = _mm512_mul_ps(yd, half_lo(dd)), dmin = _mm512_mul_ps(yd, half_lo(_mm512_srli_epi32(dd, 16)));
        __m512i sc[8], mn[8];
        x16_scales_k4(blk, sc, mn);
        __m512i ms = _mm512_setzero_si512();
        for (int j = 0; j < 8; j++)
            ms = _mm512_add_epi32(ms, _mm512_mullo_epi32(mn[j], _mm512_set1_epi32(y[b].bsums[2 * j] + y[b].bsums[2 * j + 1])));
        summ = _mm512_add_ps(summ, _mm512_mul_ps(dmin, _mm512_cvtepi32_ps(ms)));
        __m512i is[8];
        for (int l = 0; l < 8; l++) is[l] = _mm512_setzero_si512();
        for (int j = 0; j < 4; j++) {
#pragma GCC unroll 8
            for (int l = 0; l < 8; l++) {
                const __m512i w = _mm512_load_si512(blk + 64 * (4 + 8 * j + l));
                const __m512i lo = _mm512_dpbusd_epi32(_mm512_setzero_si512(), _mm512_and_si512(w, m4),
                                                       bcast32(y[b].qs + 64 * j + 4 * l));
                const __m512i hi = _mm512_dpbusd_epi32(_mm512_setzero_si512(),
                                                       _mm512_and_si512(_mm512_srli_epi16(w, 4), m4),
                                                       bcast32(y[b].qs + 64 * j + 32 + 4 * l));
                is[l] = _mm512_add_epi32(is[l], _mm512_add_epi32(_mm512_mullo_epi32(lo, sc[2 * j]),
                                                                 _mm512_mullo_epi32(hi, sc[2 * j + 1])));
            }
        }
        for (int l = 0; l < 8; l++) acc[l] = _mm512_fmadd_ps(d, _mm512_cvtepi32_ps(is[l]), acc[l]);
    }
    if (!(part & K_X16_END)) {
        for (int l = 0; l < 8; l++) _mm512_storeu_ps(state + 16 * l, acc[l]);
        _mm512_storeu_ps(state + 128, summ);
        return;
    }
    const __m512 h = _mm512_add_ps(_mm512_add_ps(_mm512_add_ps(acc[0], acc[4]), _mm512_add_ps(acc[2], acc[6])),
                                   _mm512_add_ps(_mm512_add_ps(acc[1], acc[5]), _mm512_add_ps(acc[3], acc[7])));
    _mm512_storeu_ps(out, _mm512_sub_ps(h, summ));
}

/* ================================================================ K-quants x Q8_K */

/* The activations are the Q8_K rows as quantized (act_pack NULL): d at +0, qs at +4,
 * bsums at +260 — read as int32 words = int16 pairs (bsums[2p], bsums[2p+1]). */

/* Q4_K, 16 rows of one super-block: q[j][g][r] = levels 4g..4g+3 of sub-block j (32);
 * sc[j][r] = scale; mn[j][r] = int16 pair (min, min); d, dmin as float. */
typedef struct {
    uint8_t q[8][8][GR][4];
    int32_t sc[8][GR];
    int32_t mn[8][GR];
    float d[GR];
    float dmin[GR];
} gw_q4k;
_Static_assert(sizeof(gw_q4k) == 5248, "packed q4_K super-block");

static size_t wq4k_size(int64_t K) { return (size_t)(K / Q_QK_K) * sizeof(gw_q4k); }

static void pack_q4_K(const uint8_t *W, size_t w_row, int nr, int64_t nb, gw_q4k *o) {
    const __mmask16 m = row_mask(nr);
    const __m512i idx = row_index(w_row), m4 = _mm512_set1_epi8(0x0F);
    for (int64_t b = 0; b < nb; b++, o++) {
        const uint8_t *blk = W + b * sizeof(q_block_q4_K);
        const __m512i dd = gather(m, idx, blk);
        _mm512_store_ps(o->d, half_lo(dd));
        _mm512_store_ps(o->dmin, half_lo(_mm512_srli_epi32(dd, 16)));
        for (int c = 0; c < 4; c++)
            for (int g = 0; g < 8; g++) {
                const __m512i v = gather(m, idx, blk + 16 + 32 * c + 4 * g);
                _mm512_store_si512(o->q[2 * c][g], _mm512_and_si512(v, m4));
                _mm512_store_si512(o->q[2 * c + 1][g], _mm512_and_si512(_mm512_srli_epi16(v, 4), m4));
            }
        for (int r = 0; r < GR; r++) {
            const q_block_q4_K *x = (const q_block_q4_K *)(W + (size_t)r * w_row) + b;
            for (int j = 0; j < 8; j++) {
                int sc = 0, mn = 0;
                if (r < nr) {
                    const uint8_t *s = x->scales;
                    sc = j < 4 ? s[j] & 63 : (s[j + 4] & 15) | ((s[j - 4] >> 6) << 4);
                    mn = j < 4 ? s[j + 4] & 63 : (s[j + 4] >> 4) | ((s[j] >> 6) << 4);
                }
                o->sc[j][r] = sc;
                o->mn[j][r] = mn | mn << 16;
            }
        }
    }
}

INLINE void tile_q4k_T(const gw_q4k *w, int64_t nb, const uint8_t *P, size_t p_row, float *Y,
                       int64_t ldy, __mmask16 m, const int T) {
#define Y8K(t) ((const q_block_q8_K *)(P + (t) * p_row) + b)
    __m512 acc[GT];
#pragma GCC unroll 16
    for (int t = 0; t < T; t++) acc[t] = _mm512_setzero_ps();
    for (int64_t b = 0; b < nb; b++, w++) {
        __m512i is[GT], dot[GT];
        /* mins: sum_j min_j * (bsums[2j] + bsums[2j+1]) */
#pragma GCC unroll 16
        for (int t = 0; t < T; t++) is[t] = _mm512_setzero_si512();
#pragma GCC unroll 8
        for (int j = 0; j < 8; j++) {
            const __m512i mn = _mm512_load_si512(w->mn[j]);
#pragma GCC unroll 16
            for (int t = 0; t < T; t++) is[t] = _mm512_dpwssd_epi32(is[t], mn, bcast32(&Y8K(t)->bsums[2 * j]));
        }
        const __m512 dmin = _mm512_load_ps(w->dmin);
#pragma GCC unroll 16
        for (int t = 0; t < T; t++) {
            acc[t] = _mm512_fnmadd_ps(_mm512_cvtepi32_ps(is[t]), _mm512_mul_ps(dmin, _mm512_set1_ps(Y8K(t)->d)), acc[t]);
            is[t] = _mm512_setzero_si512();
        }
#pragma GCC unroll 1
        for (int j = 0; j < 8; j++) {
#pragma GCC unroll 16
            for (int t = 0; t < T; t++) dot[t] = _mm512_setzero_si512();
#pragma GCC unroll 8
            for (int g = 0; g < 8; g++) {
                const __m512i wg = _mm512_load_si512(w->q[j][g]);
#pragma GCC unroll 16
                for (int t = 0; t < T; t++)
                    dot[t] = _mm512_dpbusd_epi32(dot[t], wg, bcast32(Y8K(t)->qs + 32 * j + 4 * g));
            }
            const __m512i sc = _mm512_load_si512(w->sc[j]);
#pragma GCC unroll 16
            for (int t = 0; t < T; t++) is[t] = _mm512_add_epi32(is[t], _mm512_mullo_epi32(dot[t], sc));
        }
        const __m512 d = _mm512_load_ps(w->d);
#pragma GCC unroll 16
        for (int t = 0; t < T; t++)
            acc[t] = _mm512_fmadd_ps(_mm512_cvtepi32_ps(is[t]), _mm512_mul_ps(d, _mm512_set1_ps(Y8K(t)->d)), acc[t]);
    }
#pragma GCC unroll 16
    for (int t = 0; t < T; t++) _mm512_mask_storeu_ps(Y + t * ldy, m, acc[t]);
#undef Y8K
}

static void tile_q4_K(const void *W, size_t w_row, int nr, const void *P, size_t p_row,
                      int64_t M, int64_t K, float *Y, int64_t ldy, void *wtmp) {
    const int64_t nb = K / Q_QK_K;
    const __mmask16 m = row_mask(nr);
    pack_q4_K(W, w_row, nr, nb, wtmp);
    TILE_TOKENS(tile_q4k_T, (const gw_q4k *)wtmp, nb)
}

/* prefill: an X16 Q4_K group into the tile's packed super-blocks (loads, no gathers) */
static void tile_x16_q4_K(const void *W, size_t w_row, int nr, const void *P, size_t p_row,
                          int64_t M, int64_t K, float *Y, int64_t ldy, void *wtmp) {
    (void)w_row;
    const int64_t nb = K / Q_QK_K;
    const __m512i m4 = _mm512_set1_epi8(0x0F);
    gw_q4k *o = wtmp;
    for (int64_t b = 0; b < nb; b++, o++) {
        const uint8_t *blk = (const uint8_t *)W + (size_t)b * 16 * sizeof(q_block_q4_K);
        const __m512i dd = _mm512_load_si512(blk);
        _mm512_store_ps(o->d, half_lo(dd));
        _mm512_store_ps(o->dmin, half_lo(_mm512_srli_epi32(dd, 16)));
        __m512i sc[8], mn[8];
        x16_scales_k4(blk, sc, mn);
        for (int j = 0; j < 8; j++) {
            _mm512_store_si512(o->sc[j], sc[j]);
            _mm512_store_si512(o->mn[j], _mm512_or_si512(mn[j], _mm512_slli_epi32(mn[j], 16)));
        }
        for (int c = 0; c < 4; c++)
            for (int g = 0; g < 8; g++) {
                const __m512i v = _mm512_load_si512(blk + 64 * (4 + 8 * c + g));
                _mm512_store_si512(o->q[2 * c][g], _mm512_and_si512(v, m4));
                _mm512_store_si512(o->q[2 * c + 1][g], _mm512_and_si512(_mm512_srli_epi16(v, 4), m4));
            }
    }
    const __mmask16 m = row_mask(nr);
    TILE_TOKENS(tile_q4k_T, (const gw_q4k *)wtmp, nb)
}

/* Q6_K, 16 rows of one super-block: q[j][g][r] = levels (0..63) 4g..4g+3 of sub-block j
 * (16); sc[j][r] = scale; c[p][r] = int16 pair (-32 sc[2p], -32 sc[2p+1]); d float. */
typedef struct {
    uint8_t q[16][4][GR][4];
    int32_t sc[16][GR];
    int32_t c[8][GR];
    float d[GR];
} gw_q6k;
_Static_assert(sizeof(gw_q6k) == 5696, "packed q6_K super-block");

static size_t wq6k_size(int64_t K) { return (size_t)(K / Q_QK_K) * sizeof(gw_q6k); }

static void pack_q6_K(const uint8_t *W, size_t w_row, int nr, int64_t nb, gw_q6k *o) {
    const __mmask16 m = row_mask(nr);
    const __m512i idx = row_index(w_row), m4 = _mm512_set1_epi8(0x0F), m2 = _mm512_set1_epi8(3);
    for (int64_t b = 0; b < nb; b++, o++) {
        const uint8_t *blk = W + b * sizeof(q_block_q6_K);
        /* d is the block's last 2 bytes: read the dword ending there, keep its top half */
        _mm512_store_ps(o->d, half_lo(_mm512_srli_epi32(gather(m, idx, blk + 206), 16)));
        for (int j = 0; j < 16; j++) { /* half h, quarter q, l0 within the quarter */
            const int h = j / 8, s = j % 8, q = s / 2, l0 = 16 * (s % 2);
            for (int g = 0; g < 4; g++) {
                const int l = l0 + 4 * g;
                const __m512i ql = gather(m, idx, blk + 64 * h + 32 * (q & 1) + l);
                const __m512i qh = gather(m, idx, blk + 128 + 32 * h + l);
                const __m512i lo = _mm512_and_si512(_mm512_srli_epi16(ql, 4 * (q >> 1)), m4);
                const __m512i hi = _mm512_and_si512(_mm512_srli_epi16(qh, 2 * q), m2);
                _mm512_store_si512(o->q[j][g], _mm512_or_si512(lo, _mm512_slli_epi16(hi, 4)));
            }
        }
        for (int r = 0; r < GR; r++) {
            const q_block_q6_K *x = (const q_block_q6_K *)(W + (size_t)r * w_row) + b;
            for (int j = 0; j < 16; j++) o->sc[j][r] = r < nr ? x->scales[j] : 0;
            for (int p = 0; p < 8; p++) {
                const int a = r < nr ? -32 * x->scales[2 * p] : 0;
                const int c = r < nr ? -32 * x->scales[2 * p + 1] : 0;
                o->c[p][r] = (int32_t)((uint32_t)(uint16_t)a | (uint32_t)(uint16_t)c << 16);
            }
        }
    }
}

INLINE void tile_q6k_T(const gw_q6k *w, int64_t nb, const uint8_t *P, size_t p_row, float *Y,
                       int64_t ldy, __mmask16 m, const int T) {
#define Y8K(t) ((const q_block_q8_K *)(P + (t) * p_row) + b)
    __m512 acc[GT];
#pragma GCC unroll 16
    for (int t = 0; t < T; t++) acc[t] = _mm512_setzero_ps();
    for (int64_t b = 0; b < nb; b++, w++) {
        __m512i is[GT], dot[GT];
        /* -32 * sum_j sc_j * bsums[j] */
#pragma GCC unroll 16
        for (int t = 0; t < T; t++) is[t] = _mm512_setzero_si512();
#pragma GCC unroll 8
        for (int p = 0; p < 8; p++) {
            const __m512i c = _mm512_load_si512(w->c[p]);
#pragma GCC unroll 16
            for (int t = 0; t < T; t++) is[t] = _mm512_dpwssd_epi32(is[t], c, bcast32(&Y8K(t)->bsums[2 * p]));
        }
#pragma GCC unroll 1
        for (int j = 0; j < 16; j++) {
#pragma GCC unroll 16
            for (int t = 0; t < T; t++) dot[t] = _mm512_setzero_si512();
#pragma GCC unroll 4
            for (int g = 0; g < 4; g++) {
                const __m512i wg = _mm512_load_si512(w->q[j][g]);
#pragma GCC unroll 16
                for (int t = 0; t < T; t++)
                    dot[t] = _mm512_dpbusd_epi32(dot[t], wg, bcast32(Y8K(t)->qs + 16 * j + 4 * g));
            }
            const __m512i sc = _mm512_load_si512(w->sc[j]);
#pragma GCC unroll 16
            for (int t = 0; t < T; t++) is[t] = _mm512_add_epi32(is[t], _mm512_mullo_epi32(dot[t], sc));
        }
        const __m512 d = _mm512_load_ps(w->d);
#pragma GCC unroll 16
        for (int t = 0; t < T; t++)
            acc[t] = _mm512_fmadd_ps(_mm512_cvtepi32_ps(is[t]), _mm512_mul_ps(d, _mm512_set1_ps(Y8K(t)->d)), acc[t]);
    }
#pragma GCC unroll 16
    for (int t = 0; t < T; t++) _mm512_mask_storeu_ps(Y + t * ldy, m, acc[t]);
#undef Y8K
}

static void tile_q6_K(const void *W, size_t w_row, int nr, const void *P, size_t p_row,
                      int64_t M, int64_t K, float *Y, int64_t ldy, void *wtmp) {
    const int64_t nb = K / Q_QK_K;
    const __mmask16 m = row_mask(nr);
    pack_q6_K(W, w_row, nr, nb, wtmp);
    TILE_TOKENS(tile_q6k_T, (const gw_q6k *)wtmp, nb)
}

/* ================================================================ F16 / BF16 x float
 *
 * The per-row dots' semantics: activations rounded to the weight's half type (ops->quantize
 * writes F16 / BF16 rows), every product of two halves is exact in f32, and the products
 * are summed. Here the sum is a float FMA chain per (row, token) over k in order — one
 * rounding per element, where the reference adds the exact products in double.
 *
 * F16: the packed activation row is the F16 row widened to f32 (exact); wtmp holds the
 * group's 32 rows widened and transposed, w[k][r] (two vectors a step). acc[t] lane r =
 * fma(w[k][r], a_t[k], acc), k in order, from 0. BF16: vdpbf16ps takes bf16 pairs: wtmp
 * holds w[j][r] = elements (2j, 2j+1) of row r (one dword), the packed activation row is
 * the BF16 row padded to an even length with a zero, and every step adds the pair's two
 * products to lane r. vdpbf16ps treats denormal inputs as zero and flushes denormal
 * results (as the per-row AVX-512 BF16 dot). Transposes go through registers 16 x 16
 * dwords at a time, from masked row loads (no read past a row, rows >= nr are zero).
 * These tiles do not reproduce the per-row F16/BF16 dots bit for bit (nor does any
 * decode path need them to: only Q4_0 / Q8_0 promise batch invariance). */

#define CEIL16(n) (((n) + 15) & ~(int64_t)15)
/* The weights come from RAM once per prefill, 16 rows at a time: too many streams for the
 * hardware prefetcher, so the row packers prefetch HPF bytes ahead in every row. */
#define HPF 512

/* r[i] = 16 dwords of row i -> r[j] = dword j of every row (lane i = row i) */
INLINE void transpose16(__m512i r[16]) {
    __m512i t[16], u[16];
    for (int i = 0; i < 8; i++) {
        t[2 * i] = _mm512_unpacklo_epi32(r[2 * i], r[2 * i + 1]);
        t[2 * i + 1] = _mm512_unpackhi_epi32(r[2 * i], r[2 * i + 1]);
    }
    /* u[4q + e], 128-bit lane l: element 4l + e of rows 4q..4q+3 */
    for (int q = 0; q < 4; q++) {
        const __m512i *x = t + 4 * q;
        u[4 * q + 0] = _mm512_unpacklo_epi64(x[0], x[2]);
        u[4 * q + 1] = _mm512_unpackhi_epi64(x[0], x[2]);
        u[4 * q + 2] = _mm512_unpacklo_epi64(x[1], x[3]);
        u[4 * q + 3] = _mm512_unpackhi_epi64(x[1], x[3]);
    }
    /* 4 x 4 transpose of 128-bit lanes for each e: column 4l + e gathers lane l of u[4q + e] */
    for (int e = 0; e < 4; e++) {
        const __m512i v0 = _mm512_shuffle_i32x4(u[e], u[4 + e], _MM_SHUFFLE(1, 0, 1, 0));
        const __m512i v1 = _mm512_shuffle_i32x4(u[e], u[4 + e], _MM_SHUFFLE(3, 2, 3, 2));
        const __m512i v2 = _mm512_shuffle_i32x4(u[8 + e], u[12 + e], _MM_SHUFFLE(1, 0, 1, 0));
        const __m512i v3 = _mm512_shuffle_i32x4(u[8 + e], u[12 + e], _MM_SHUFFLE(3, 2, 3, 2));
        r[e] = _mm512_shuffle_i32x4(v0, v2, _MM_SHUFFLE(2, 0, 2, 0));
        r[4 + e] = _mm512_shuffle_i32x4(v0, v2, _MM_SHUFFLE(3, 1, 3, 1));
        r[8 + e] = _mm512_shuffle_i32x4(v1, v3, _MM_SHUFFLE(2, 0, 2, 0));
        r[12 + e] = _mm512_shuffle_i32x4(v1, v3, _MM_SHUFFLE(3, 1, 3, 1));
    }
}

/* elements 16c .. 16c+15 of the nr rows, widened: o[j * os + r] = row r element 16c + j
 * (rows >= nr: zeros, read through a zero mask at a valid address) */
INLINE void pack_f16_chunk(const uint8_t *W, size_t w_row, int nr, int64_t K, int64_t c, float *o, size_t os) {
    const int64_t left = K - 16 * c;
    const __mmask16 km = left >= 16 ? (__mmask16)0xFFFF : (__mmask16)((1u << left) - 1);
    __m512i r[16];
#pragma GCC unroll 16
    for (int i = 0; i < 16; i++) {
        const uint8_t *p = W + (size_t)(i < nr ? i : 0) * w_row + 32 * (size_t)c;
        if (i < nr) _mm_prefetch((const char *)p + HPF, _MM_HINT_T0);
        r[i] = _mm512_castps_si512(_mm512_cvtph_ps(_mm256_maskz_loadu_epi16(i < nr ? km : 0, p)));
    }
    transpose16(r);
#pragma GCC unroll 16
    for (int j = 0; j < 16; j++) _mm512_store_si512(o + os * j, r[j]);
}

/* element pairs 16c .. 16c+15 (elements 32c .. 32c+31) of the nr rows: o[j * os + r] */
INLINE void pack_bf16_chunk(const uint8_t *W, size_t w_row, int nr, int64_t K, int64_t c, uint32_t *o, size_t os) {
    const int64_t left = K - 32 * c;
    const __mmask32 km = left >= 32 ? (__mmask32)0xFFFFFFFFu : (__mmask32)((1u << left) - 1);
    __m512i r[16];
#pragma GCC unroll 16
    for (int i = 0; i < 16; i++) {
        const uint8_t *p = W + (size_t)(i < nr ? i : 0) * w_row + 64 * (size_t)c;
        if (i < nr) _mm_prefetch((const char *)p + HPF, _MM_HINT_T0);
        r[i] = _mm512_maskz_loadu_epi16(i < nr ? km : 0, p);
    }
    transpose16(r);
#pragma GCC unroll 16
    for (int j = 0; j < 16; j++) _mm512_store_si512(o + os * j, r[j]);
}

static int64_t half_pairs(int64_t K) { return (K + 1) / 2; }

/* Register tile: 32 rows (two vectors) x 8 tokens = 16 accumulators; per step 2 weight
 * loads + 8 broadcasts feed 16 FMAs. Measured on Zen 5 (one core, K = 896 / 4864, M = 512):
 * F16 ~90 GMAC/s (~87% of the FMA peak) vs ~76 for 16 rows x 8 tokens; BF16 ~180 vs ~155
 * for 16 x 12. Blocking K to keep the weight chunk in L1 gained nothing. Tokens: GT. */
#define HRV 2 /* row vectors per tile: 16 * HRV rows */

static size_t actf16_size(int64_t K) { return (size_t)K * 4; }
static size_t actbf16_size(int64_t K) { return (size_t)half_pairs(K) * 4; }
static size_t wf16_size(int64_t K) { return (size_t)CEIL16(K) * GR * HRV * 4; }
static size_t wbf16_size(int64_t K) { return (size_t)CEIL16(half_pairs(K)) * GR * HRV * 4; }

static void act_pack_f16(const void *arow, void *dst, int64_t K) {
    const uint16_t *h = arow;
    float *f = dst;
    for (int64_t i = 0; i < K; i += 16) {
        const __mmask16 km = K - i >= 16 ? (__mmask16)0xFFFF : (__mmask16)((1u << (K - i)) - 1);
        _mm512_mask_storeu_ps(f + i, km, _mm512_cvtph_ps(_mm256_maskz_loadu_epi16(km, h + i)));
    }
}

static void act_pack_bf16(const void *arow, void *dst, int64_t K) {
    memcpy(dst, arow, (size_t)K * 2);
    if (K & 1) memset((uint8_t *)dst + K * 2, 0, 2);
}

/* wtmp: o[k][v][r] = step k of row 16v + r (steps: elements, or pairs for BF16) */
static void pack_half(int bf, const uint8_t *W, size_t w_row, int nr, int64_t K, uint32_t *o) {
    const int64_t chunks = CEIL16(bf ? half_pairs(K) : K) / 16;
    for (int64_t c = 0; c < chunks; c++)
        for (int v = 0; v < HRV; v++) {
            const int nv = nr - 16 * v < 0 ? 0 : nr - 16 * v > 16 ? 16 : nr - 16 * v;
            const uint8_t *Wv = W + (size_t)(16 * v) * w_row;
            uint32_t *ov = o + (16 * c * HRV + v) * GR;
            if (nv == 0) /* the second vector of a short last group (W + 16 rows may be past the end) */
                for (int j = 0; j < 16; j++) _mm512_store_si512(ov + HRV * GR * j, _mm512_setzero_si512());
            else if (bf) pack_bf16_chunk(Wv, w_row, nv, K, c, ov, HRV * GR);
            else pack_f16_chunk(Wv, w_row, nv, K, c, (float *)ov, HRV * GR);
        }
}

/* one step of a lane: F16 acc + w * a (FMA); BF16 acc + the pair's two products */
INLINE __m512 step_half(int bf, __m512 acc, __m512 w, __m512 a) {
    return bf ? _mm512_dpbf16_ps(acc, (__m512bh)_mm512_castps_si512(w), (__m512bh)_mm512_castps_si512(a))
              : _mm512_fmadd_ps(w, a, acc);
}

/* T tokens x 32 rows over n steps; a token's step k is the dword at P + t * p_row + 4k
 * (a float, or a bf16 pair), broadcast */
INLINE void tileh_T(const float *w, int64_t n, int bf, const uint8_t *P, size_t p_row, float *Y,
                    int64_t ldy, const __mmask16 *m, const int T) {
    __m512 acc[GT][HRV];
#pragma GCC unroll 16
    for (int t = 0; t < T; t++)
        for (int v = 0; v < HRV; v++) acc[t][v] = _mm512_setzero_ps();
#pragma GCC unroll 2
    for (int64_t k = 0; k < n; k++) {
        __m512 wk[HRV];
        for (int v = 0; v < HRV; v++) wk[v] = _mm512_load_ps(w + (k * HRV + v) * GR);
#pragma GCC unroll 16
        for (int t = 0; t < T; t++) {
            const __m512 a = _mm512_set1_ps(bcastf_src(P + t * p_row + 4 * k));
            for (int v = 0; v < HRV; v++) acc[t][v] = step_half(bf, acc[t][v], wk[v], a);
        }
    }
#pragma GCC unroll 16
    for (int t = 0; t < T; t++)
        for (int v = 0; v < HRV; v++) _mm512_mask_storeu_ps(Y + t * ldy + 16 * v, m[v], acc[t][v]);
}

INLINE void tile_half(int bf, const void *W, size_t w_row, int nr, const void *P, size_t p_row,
                      int64_t M, int64_t K, float *Y, int64_t ldy, void *wtmp) {
    __mmask16 m[HRV];
    for (int v = 0; v < HRV; v++) m[v] = row_mask(nr - 16 * v < 0 ? 0 : nr - 16 * v > 16 ? 16 : nr - 16 * v);
    const int64_t n = bf ? half_pairs(K) : K;
    pack_half(bf, W, w_row, nr, K, wtmp);
    TILE_TOKENS(tileh_T, (const float *)wtmp, n, bf)
}

static void tile_f16(const void *W, size_t w_row, int nr, const void *P, size_t p_row,
                     int64_t M, int64_t K, float *Y, int64_t ldy, void *wtmp) {
    tile_half(0, W, w_row, nr, P, p_row, M, K, Y, ldy, wtmp);
}
static void tile_bf16(const void *W, size_t w_row, int nr, const void *P, size_t p_row,
                      int64_t M, int64_t K, float *Y, int64_t ldy, void *wtmp) {
    tile_half(1, W, w_row, nr, P, p_row, M, K, Y, ldy, wtmp);
}

/* M = 1: the tile's lane sequence with one token, the rows transposed a chunk at a time */
static void gemv_half(int bf, const void *W, size_t w_row, int64_t N, const void *P, int64_t K, float *y) {
    const int64_t n = bf ? half_pairs(K) : K;
    _Alignas(64) float w[16 * GR];
    for (int64_t n0 = 0; n0 < N; n0 += GR) {
        const int nr = (int)(N - n0 < GR ? N - n0 : GR);
        const uint8_t *Wg = (const uint8_t *)W + (size_t)n0 * w_row;
        __m512 acc = _mm512_setzero_ps();
        for (int64_t c = 0; c < CEIL16(n) / 16; c++) {
            if (bf) pack_bf16_chunk(Wg, w_row, nr, K, c, (uint32_t *)w, GR);
            else pack_f16_chunk(Wg, w_row, nr, K, c, w, GR);
            for (int64_t k = 16 * c; k < n && k < 16 * c + 16; k++)
                acc = step_half(bf, acc, _mm512_load_ps(w + GR * (k - 16 * c)),
                                _mm512_set1_ps(bcastf_src((const uint8_t *)P + 4 * k)));
        }
        _mm512_mask_storeu_ps(y + n0, row_mask(nr), acc);
    }
}
static void gemv_f16(const void *W, size_t w_row, int64_t N, const void *P, int64_t K, float *y) {
    gemv_half(0, W, w_row, N, P, K, y);
}
static void gemv_bf16(const void *W, size_t w_row, int64_t N, const void *P, int64_t K, float *y) {
    gemv_half(1, W, w_row, N, P, K, y);
}

/* ================================================================ M = 1 (gemv)
 *
 * Decode goes through the same entry so that a token's outputs are bit-identical whether
 * it came in a batch or alone (the model tests compare the two; synthetic random models
 * amplify any rounding difference through the next activation quantization). Every
 * output gets exactly the tile's per-lane float sequence: acc = fma((float)isum_b,
 * d_w * d_a, acc) over blocks (K-quants: the min term first, as fnmadd); only the way the
 * exact integers are formed differs (native layout, no repack, horizontal sums).
 */

/* rows clamped to the group (the duplicates' results are not stored) */
static inline void group_rows(const uint8_t *W, size_t w_row, int nr, const uint8_t *p[GR],
                              __m512i *idx) {
    int32_t o[GR];
    for (int r = 0; r < GR; r++) {
        const int rr = r < nr ? r : nr - 1;
        p[r] = W + (size_t)rr * w_row;
        o[r] = (int32_t)((size_t)rr * w_row);
    }
    *idx = _mm512_loadu_si512(o);
}

/* z[k] lanes 0..7: partial sums of row k, lanes 8..15: of row k + 8 -> lane r = row r */
INLINE __m512i reduce_rows(const __m512i z[8]) {
    __m512i a[4], b[2];
    for (int k = 0; k < 4; k++)
        a[k] = _mm512_add_epi32(_mm512_unpacklo_epi32(z[2 * k], z[2 * k + 1]),
                                _mm512_unpackhi_epi32(z[2 * k], z[2 * k + 1]));
    for (int k = 0; k < 2; k++)
        b[k] = _mm512_add_epi32(_mm512_unpacklo_epi64(a[2 * k], a[2 * k + 1]),
                                _mm512_unpackhi_epi64(a[2 * k], a[2 * k + 1]));
    const __m512i s = _mm512_add_epi32(_mm512_shuffle_i32x4(b[0], b[1], _MM_SHUFFLE(2, 0, 2, 0)),
                                       _mm512_shuffle_i32x4(b[0], b[1], _MM_SHUFFLE(3, 1, 3, 1)));
    /* s = rows [0..3, 8..11, 4..7, 12..15] */
    return _mm512_permutexvar_epi32(_mm512_setr_epi32(0, 1, 2, 3, 8, 9, 10, 11, 4, 5, 6, 7, 12, 13, 14, 15), s);
}

INLINE __m512i load2x256(const void *lo, const void *hi) {
    return _mm512_inserti64x4(_mm512_castsi256_si512(_mm256_loadu_si256((const __m256i *)lo)),
                              _mm256_loadu_si256((const __m256i *)hi), 1);
}

/* two rows' 16 nibble bytes -> 32 levels each in element order, [row lo | row hi] */
INLINE __m512i nibbles2(const uint8_t *lo, const uint8_t *hi) {
    const __m256i q = _mm256_set_m128i(_mm_loadu_si128((const __m128i *)hi), _mm_loadu_si128((const __m128i *)lo));
    const __m512i z = _mm512_permutexvar_epi64(_mm512_setr_epi64(0, 1, 0, 1, 2, 3, 2, 3), _mm512_castsi256_si512(q));
    const __m512i sh = _mm512_setr_epi64(0, 0, 0x0004000400040004, 0x0004000400040004, 0, 0,
                                         0x0004000400040004, 0x0004000400040004);
    return _mm512_and_si512(_mm512_srlv_epi16(z, sh), _mm512_set1_epi8(0x0F));
}

/* the unsigned levels of block b of rows k and k + 8 (same offsets as the tiles) */
INLINE __m512i levels32(uint32_t wt, const uint8_t *const p[GR], int k, int64_t b) {
    if (wt == ND_TYPE_Q8_0) {
        const size_t o = (size_t)b * sizeof(q_block_q8_0) + 2;
        return _mm512_xor_si512(load2x256(p[k] + o, p[k + 8] + o), _mm512_set1_epi8((char)0x80));
    }
    if (wt == ND_TYPE_Q4_0) {
        const size_t o = (size_t)b * sizeof(q_block_q4_0) + 2;
        return nibbles2(p[k] + o, p[k + 8] + o);
    }
    const size_t o = (size_t)b * sizeof(q_block_q5_0);
    uint32_t h0, h1;
    memcpy(&h0, p[k] + o + 2, 4);
    memcpy(&h1, p[k + 8] + o + 2, 4);
    const __m512i hb = _mm512_maskz_mov_epi8((__mmask64)h0 | (__mmask64)h1 << 32, _mm512_set1_epi8(0x10));
    return _mm512_or_si512(nibbles2(p[k] + o + 6, p[k + 8] + o + 6), hb);
}

INLINE void gemv32(uint32_t wt, size_t bs, const void *W, size_t w_row, int64_t N,
                   const void *P, int64_t K, float *y) {
    const gq_act32 *a = P;
    const int64_t nb = K / Q_QK;
    for (int64_t n0 = 0; n0 < N; n0 += GR) {
        const int nr = (int)(N - n0 < GR ? N - n0 : GR);
        const uint8_t *p[GR];
        __m512i idx;
        group_rows((const uint8_t *)W + (size_t)n0 * w_row, w_row, nr, p, &idx);
        __m512 acc = _mm512_setzero_ps();
        for (int64_t b = 0; b < nb; b++) {
            const __m512i A = _mm512_broadcast_i64x4(_mm256_loadu_si256((const __m256i *)a[b].qs));
            __m512i z[8];
            for (int k = 0; k < 8; k++) z[k] = _mm512_dpbusd_epi32(_mm512_setzero_si512(), levels32(wt, p, k, b), A);
            const __m512i isum = _mm512_add_epi32(reduce_rows(z), _mm512_set1_epi32(a[b].c));
            const __m512 d = half_lo(_mm512_i32gather_epi32(idx, p[0] + (size_t)b * bs, 1));
            acc = _mm512_fmadd_ps(_mm512_cvtepi32_ps(isum), _mm512_mul_ps(d, _mm512_set1_ps(a[b].d)), acc);
        }
        _mm512_mask_storeu_ps(y + n0, row_mask(nr), acc);
    }
}
static void gemv_q8_0(const void *W, size_t w_row, int64_t N, const void *P, int64_t K, float *y) {
    gemv32(ND_TYPE_Q8_0, sizeof(q_block_q8_0), W, w_row, N, P, K, y);
}
static void gemv_q4_0(const void *W, size_t w_row, int64_t N, const void *P, int64_t K, float *y) {
    gemv32(ND_TYPE_Q4_0, sizeof(q_block_q4_0), W, w_row, N, P, K, y);
}
static void gemv_q5_0(const void *W, size_t w_row, int64_t N, const void *P, int64_t K, float *y) {
    gemv32(ND_TYPE_Q5_0, sizeof(q_block_q5_0), W, w_row, N, P, K, y);
}

static inline float h2f_u16(uint16_t h) { return _cvtsh_ss(h); }

INLINE __m512i set2_epi32(int lo, int hi) {
    return _mm512_inserti64x4(_mm512_set1_epi32(lo), _mm256_set1_epi32(hi), 1);
}

/* Q4_K row: per super-block the exact isum and min sum, then the tile's two FMAs */
static float row_q4_K(const q_block_q4_K *x, const q_block_q8_K *y, int64_t nb) {
    const __m512i m4 = _mm512_set1_epi8(0x0F);
    const __m512i sh = _mm512_inserti64x4(_mm512_setzero_si512(), _mm256_set1_epi16(4), 1);
    float acc = 0;
    for (int64_t i = 0; i < nb; i++) {
        const uint8_t *s = x[i].scales;
        int sc[8], mins = 0;
        for (int j = 0; j < 8; j++) {
            sc[j] = j < 4 ? s[j] & 63 : (s[j + 4] & 15) | ((s[j - 4] >> 6) << 4);
            const int mn = j < 4 ? s[j + 4] & 63 : (s[j + 4] >> 4) | ((s[j] >> 6) << 4);
            mins += mn * (y[i].bsums[2 * j] + y[i].bsums[2 * j + 1]);
        }
        __m512i is = _mm512_setzero_si512();
        for (int c = 0; c < 4; c++) {
            const __m512i q4 = _mm512_broadcast_i64x4(_mm256_loadu_si256((const __m256i *)(x[i].qs + 32 * c)));
            const __m512i q = _mm512_and_si512(_mm512_srlv_epi16(q4, sh), m4);
            const __m512i d = _mm512_dpbusd_epi32(_mm512_setzero_si512(), q, _mm512_loadu_si512(y[i].qs + 64 * c));
            is = _mm512_add_epi32(is, _mm512_mullo_epi32(d, set2_epi32(sc[2 * c], sc[2 * c + 1])));
        }
        const int isum = _mm512_reduce_add_epi32(is);
        acc = fmaf(-(float)mins, h2f_u16(x[i].dmin) * y[i].d, acc);
        acc = fmaf((float)isum, h2f_u16(x[i].d) * y[i].d, acc);
    }
    return acc;
}

/* Q6_K row: exact isum (levels 0..63, the -32 through the bsums), then one FMA */
static float row_q6_K(const q_block_q6_K *x, const q_block_q8_K *y, int64_t nb) {
    const __m512i m4 = _mm512_set1_epi8(0x0F), m3 = _mm512_set1_epi8(3);
    const __m512i shA = _mm512_inserti64x4(_mm512_setzero_si512(), _mm256_set1_epi16(2), 1);
    const __m512i shB = _mm512_inserti64x4(_mm512_set1_epi16(4), _mm256_set1_epi16(6), 1);
    const __m512i by4 = _mm512_setr_epi32(0, 0, 0, 0, 1, 1, 1, 1, 2, 2, 2, 2, 3, 3, 3, 3);
    float acc = 0;
    for (int64_t i = 0; i < nb; i++) {
        const __m512i S = _mm512_cvtepi8_epi32(_mm_loadu_si128((const __m128i *)x[i].scales));
        int corr = 0;
        for (int j = 0; j < 16; j++) corr += x[i].scales[j] * y[i].bsums[j];
        __m512i is = _mm512_setzero_si512();
        for (int h = 0; h < 2; h++) {
            const __m512i L = _mm512_loadu_si512(x[i].ql + 64 * h);
            const __m512i H = _mm512_broadcast_i64x4(_mm256_loadu_si256((const __m256i *)(x[i].qh + 32 * h)));
            /* elements 0..63 of the half: low nibbles, qh bits 0-1 / 2-3; 64..127: high, 4-5 / 6-7 */
            const __m512i qA = _mm512_or_si512(_mm512_and_si512(L, m4),
                                               _mm512_slli_epi16(_mm512_and_si512(_mm512_srlv_epi16(H, shA), m3), 4));
            const __m512i qB = _mm512_or_si512(_mm512_and_si512(_mm512_srli_epi16(L, 4), m4),
                                               _mm512_slli_epi16(_mm512_and_si512(_mm512_srlv_epi16(H, shB), m3), 4));
            const __m512i dA = _mm512_dpbusd_epi32(_mm512_setzero_si512(), qA, _mm512_loadu_si512(y[i].qs + 128 * h));
            const __m512i dB = _mm512_dpbusd_epi32(_mm512_setzero_si512(), qB, _mm512_loadu_si512(y[i].qs + 128 * h + 64));
            const __m512i sA = _mm512_permutexvar_epi32(_mm512_add_epi32(by4, _mm512_set1_epi32(8 * h)), S);
            const __m512i sB = _mm512_permutexvar_epi32(_mm512_add_epi32(by4, _mm512_set1_epi32(8 * h + 4)), S);
            is = _mm512_add_epi32(is, _mm512_add_epi32(_mm512_mullo_epi32(dA, sA), _mm512_mullo_epi32(dB, sB)));
        }
        const int isum = _mm512_reduce_add_epi32(is) - 32 * corr;
        acc = fmaf((float)isum, h2f_u16(x[i].d) * y[i].d, acc);
    }
    return acc;
}

static void gemv_q4_K(const void *W, size_t w_row, int64_t N, const void *P, int64_t K, float *y) {
    for (int64_t n = 0; n < N; n++)
        y[n] = row_q4_K((const q_block_q4_K *)((const uint8_t *)W + (size_t)n * w_row), P, K / Q_QK_K);
}
static void gemv_q6_K(const void *W, size_t w_row, int64_t N, const void *P, int64_t K, float *y) {
    for (int64_t n = 0; n < N; n++)
        y[n] = row_q6_K((const q_block_q6_K *)((const uint8_t *)W + (size_t)n * w_row), P, K / Q_QK_K);
}

/* ================================================================ tables */

static const k_gemm_ops g_q8_0 = {"avx512-vnni", GR, act32_size, act_pack_off128, w32_size, tile_q8_0, gemv_q8_0,
                                  tile_x16_q8_0};
static const k_gemm_ops g_q4_0 = {"avx512-vnni", GR, act32_size, act_pack_off8, w32_size, tile_q4_0, gemv_q4_0,
                                  tile_x16_q4_0};
static const k_gemm_ops g_q5_0 = {"avx512-vnni", GR, act32_size, act_pack_off16, w32_size, tile_q5_0, gemv_q5_0,
                                  tile_x16_q5_0};
static const k_gemm_ops g_q4_K = {"avx512-vnni", GR, NULL, NULL, wq4k_size, tile_q4_K, gemv_q4_K, tile_x16_q4_K};
static const k_gemm_ops g_q6_K = {"avx512-vnni", GR, NULL, NULL, wq6k_size, tile_q6_K, gemv_q6_K, NULL};
static const k_gemm_ops g_f16 = {"avx512", GR * HRV, actf16_size, act_pack_f16, wf16_size, tile_f16, gemv_f16, NULL};
static const k_gemm_ops g_bf16 = {"avx512-bf16", GR * HRV, actbf16_size, act_pack_bf16, wbf16_size, tile_bf16, gemv_bf16, NULL};

const k_gemm_ops *k_gemm_avx512_ops(uint32_t wtype) {
    switch (wtype) {
    case ND_TYPE_Q8_0: return &g_q8_0;
    case ND_TYPE_Q4_0: return &g_q4_0;
    case ND_TYPE_Q5_0: return &g_q5_0;
    case ND_TYPE_Q4_K: return &g_q4_K;
    case ND_TYPE_Q6_K: return &g_q6_K;
    case ND_TYPE_F16: return &g_f16;
    case ND_TYPE_BF16: return &g_bf16;
    default: return NULL;
    }
}

/* Batches shorter than K_GEMM_MIN_TOKENS never reach the tiles (k_matmul), so the
 * fixture goldens (24-token prompts) and speculative verification use the per-row dots. */
void k_install_gemm_avx512(k_kernels *k) {
    static const uint32_t types[] = {ND_TYPE_Q8_0, ND_TYPE_Q4_0, ND_TYPE_Q5_0, ND_TYPE_Q4_K,
                                     ND_TYPE_Q6_K, ND_TYPE_F16};
    for (size_t i = 0; i < sizeof types / sizeof types[0]; i++)
        k->gemm[types[i]] = k_gemm_avx512_ops(types[i]);
    k->ops[ND_TYPE_Q4_0].vec_dot16 = k_avx512_dot16_q4_0; /* the X16 layout's decode side */
    k->ops[ND_TYPE_Q4_0].act_prep16 = k_avx512_prep16_q4_0;
    k->ops[ND_TYPE_Q8_0].vec_dot16 = k_avx512_dot16_q8_0;
    k->ops[ND_TYPE_Q8_0].act_prep16 = k_avx512_prep16_q8_0;
    k->ops[ND_TYPE_Q4_K].vec_dot16 = k_avx512_dot16_q4_K; /* on the Q8_K rows as quantized */
}

void k_install_gemm_avx512_bf16(k_kernels *k) { k->gemm[ND_TYPE_BF16] = &g_bf16; }
