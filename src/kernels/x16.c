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

void k_x16_repack(uint32_t wtype, void *W, int64_t K, int64_t N, void *tmp) {
    const size_t bb = q_block_bytes(wtype), row = q_row_size(wtype, K), group = 16 * row;
    const int64_t nb = K / q_blck(wtype);
    for (int64_t g = 0; g < N / 16; g++) {
        uint8_t *G = (uint8_t *)W + (size_t)g * group;
        memcpy(tmp, G, group);
        for (int r = 0; r < 16; r++) x16_move(G, (uint8_t *)tmp + (size_t)r * row, bb, nb, r, true);
    }
}

void k_x16_row(uint32_t wtype, const void *W, int64_t K, int64_t r, void *dst) {
    const size_t bb = q_block_bytes(wtype), row = q_row_size(wtype, K);
    uint8_t *G = (uint8_t *)W + (size_t)(r / 16) * 16 * row; /* only read (to_x16 false) */
    x16_move(G, dst, bb, K / q_blck(wtype), (int)(r % 16), false);
}
