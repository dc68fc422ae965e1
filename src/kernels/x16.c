/* The X16 resident layout (kernels.h, K_LAYOUT_X16): Q4_0 / Q5_0 / Q8_0 rows interleaved in
 * groups of 16.
 *
 * A group (16 rows of nb blocks, nb even) takes the bytes of its 16 rows. With bb the
 * block's bytes (an fp16 d, then qb = bb - 2 quant bytes: 16 for Q4_0, 20 for Q5_0 — its 4
 * qh bytes, then the 16 qs —, 32 for Q8_0), block
 * pair p (blocks 2p, 2p + 1) is 32 * bb bytes at p * 32 * bb:
 *     [0, 32)          fp16 d of block 2p, rows 0..15
 *     [32, 64)         fp16 d of block 2p + 1
 *     then per block   qb / 4 chunks of 64 bytes: chunk k = quant bytes 4k..4k+3 of rows
 *                      0..15 in turn (block 2p's chunks, then block 2p + 1's)
 * so a 512-bit load is one quant dword of each of 16 rows (a vector lane per row: the dot
 * reduces nothing across lanes), the group is read front to back, and every load is
 * 64-byte aligned when the matrix is (32 * bb is a multiple of 64).
 *
 * Q4_K (144-byte super-blocks, a multiple of 4): super-block b of the group is 16 * 144
 * bytes at b * 2304, chunk i of 64 bytes = dword i of the block for rows 0..15 (chunk 0:
 * d | dmin, 1..3: the 12 scale bytes, 4..35: the quants).
 *
 * Long Q4_0 rows (k_x16_slice < K) are stored by K-slices of S elements (S a multiple of
 * 256; the last slice may be shorter): a run of K_X16_SUPER groups (fewer for the last
 * run) takes the bytes of its rows, slice s of its group i at
 *     s * ng * 16 * rowbytes(S) + i * 16 * rowbytes(slice s's length)
 * from the run's start (ng groups in the run), each slice laid out as the group of a
 * K = slice matrix. A decode then walks the run's groups slice by slice in one stream.
 *
 * Plain data movement: repack and unpack are exact. */
#include <string.h>

#include "kernels/gemm.h"
#include "kernels/kernels.h"
#include "quant/quant.h"

bool k_x16_fits(uint32_t wtype, int64_t K, int64_t N, const void *W) {
    const bool blocks = wtype == ND_TYPE_Q4_0 || wtype == ND_TYPE_Q5_0 || wtype == ND_TYPE_Q8_0;
    return (blocks || wtype == ND_TYPE_Q4_K) && K > 0 && K % (blocks ? 2 * Q_QK : Q_QK_K) == 0 && N > 0 &&
           N % 16 == 0 && ((uintptr_t)W & 63) == 0;
}

bool k_x16_supported(const k_kernels *k, uint32_t wtype) {
    return wtype < ND_TYPE_COUNT && k->ops[wtype].vec_dot16 && k->gemm[wtype] && k->gemm[wtype]->tile_x16;
}

/* byte offsets, in a group of blocks of bb bytes, of block b's d for row r and of its
 * quant chunk 0 for row r (chunk k: + 64k) */
static inline size_t x16_d(size_t bb, int64_t b, int r) {
    return (size_t)(b / 2) * 32 * bb + (size_t)(b & 1) * 32 + 2 * (size_t)r;
}
static inline size_t x16_q(size_t bb, int64_t b, int r) {
    return (size_t)(b / 2) * 32 * bb + 64 + (size_t)(b & 1) * 16 * (bb - 2) + 4 * (size_t)r;
}

/* one row of the group at G <-> GGUF blocks at x (to_x16: x -> G) */
static void x16_move(uint8_t *G, uint8_t *x, size_t bb, int64_t nb, int r, bool to_x16) {
    if (bb % 4 == 0) { /* Q4_K: dword i of block b of the 16 rows at b * 16 * bb + 64 * i */
        for (int64_t b = 0; b < nb; b++, x += bb)
            for (size_t i = 0; i < bb / 4; i++) {
                uint8_t *g = G + (size_t)b * 16 * bb + 64 * i + 4 * (size_t)r;
                memcpy(to_x16 ? g : x + 4 * i, to_x16 ? x + 4 * i : g, 4);
            }
        return;
    }
    for (int64_t b = 0; b < nb; b++, x += bb) {
        uint8_t *d = G + x16_d(bb, b, r), *q = G + x16_q(bb, b, r);
        memcpy(to_x16 ? d : x, to_x16 ? x : d, 2);
        for (size_t k = 0; k < (bb - 2) / 4; k++)
            memcpy(to_x16 ? q + 64 * k : x + 2 + 4 * k, to_x16 ? x + 2 + 4 * k : q + 64 * k, 4);
    }
}

/* bytes a group's slice is allowed (0: whole groups). Q4_0 at K = 4864, one matrix from
 * RAM: one thread, whole 43.8 KB groups 21 GB/s, 4 groups walked by 2.3 KB slices (the
 * activation slice stays in L1) 29-31, those stored slice-major (one stream) 32-33; 2
 * threads, walked 32-39 -> 43-49 GB/s (tg128 ffn_down 1.05-1.08x), slice-major 48-55 ->
 * 54-63. Q8_0, Q5_0 and Q4_K lost 10-20% walked by slices while stored whole (four
 * streams at once), with any slice size from 4 to 24 KB. */
static size_t slice_limit(uint32_t wtype) { return wtype == ND_TYPE_Q4_0 ? 4096 : 0; }

int64_t k_x16_slice(uint32_t wtype, int64_t K) {
    const size_t limit = slice_limit(wtype);
    if (!limit || 16 * q_row_size(wtype, K) <= 2 * limit) return K;
    int64_t s = K_X16_SLICE_ALIGN;
    while (s + K_X16_SLICE_ALIGN < K && 16 * q_row_size(wtype, s + K_X16_SLICE_ALIGN) <= limit)
        s += K_X16_SLICE_ALIGN;
    return s;
}

size_t k_x16_offset(uint32_t wtype, int64_t K, int64_t N, int64_t g, int64_t s) {
    const size_t group = 16 * q_row_size(wtype, K);
    const int64_t S = k_x16_slice(wtype, K);
    if (S >= K) return (size_t)g * group;
    const int64_t run = g / K_X16_SUPER, i = g % K_X16_SUPER;
    const int64_t ng = N / 16 - run * K_X16_SUPER < K_X16_SUPER ? N / 16 - run * K_X16_SUPER : K_X16_SUPER;
    const int64_t n = K - s * S < S ? K - s * S : S;
    return (size_t)run * K_X16_SUPER * group + (size_t)(s * ng) * 16 * q_row_size(wtype, S) +
           (size_t)i * 16 * q_row_size(wtype, n);
}

/* one row (r of its group g) between GGUF blocks at x and the matrix W (to_x16: x -> W) */
static void x16_row_move(uint32_t wtype, uint8_t *W, int64_t K, int64_t N, int64_t g, int r, uint8_t *x,
                         bool to_x16) {
    const size_t bb = q_block_bytes(wtype);
    const int64_t S = k_x16_slice(wtype, K), qk = q_blck(wtype);
    for (int64_t s = 0, k0 = 0; k0 < K; s++, k0 += S) {
        const int64_t n = K - k0 < S ? K - k0 : S;
        x16_move(W + k_x16_offset(wtype, K, N, g, s), x + (size_t)(k0 / qk) * bb, bb, n / qk, r, to_x16);
    }
}

void k_x16_repack(uint32_t wtype, void *W, int64_t K, int64_t N, void *tmp) {
    const size_t row = q_row_size(wtype, K);
    for (int64_t g0 = 0; g0 < N / 16; g0 += K_X16_SUPER) { /* a run: its rows to tmp, then back */
        const int64_t ng = N / 16 - g0 < K_X16_SUPER ? N / 16 - g0 : K_X16_SUPER;
        memcpy(tmp, (uint8_t *)W + (size_t)g0 * 16 * row, (size_t)ng * 16 * row);
        for (int64_t i = 0; i < ng; i++)
            for (int r = 0; r < 16; r++)
                x16_row_move(wtype, W, K, N, g0 + i, r, (uint8_t *)tmp + (size_t)(i * 16 + r) * row, true);
    }
}

void k_x16_row(uint32_t wtype, const void *W, int64_t K, int64_t N, int64_t r, void *dst) {
    x16_row_move(wtype, (uint8_t *)W, K, N, r / 16, (int)(r % 16), dst, false); /* W only read */
}

void k_x16_group(uint32_t wtype, const void *W, int64_t K, int64_t N, int64_t g, void *dst) {
    const int64_t S = k_x16_slice(wtype, K);
    uint8_t *d = dst;
    for (int64_t s = 0, k0 = 0; k0 < K; s++, k0 += S) {
        const size_t n = 16 * q_row_size(wtype, K - k0 < S ? K - k0 : S);
        memcpy(d, (const uint8_t *)W + k_x16_offset(wtype, K, N, g, s), n);
        d += n;
    }
}
