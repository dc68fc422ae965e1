/* The X16 resident layout (kernels.h, K_LAYOUT_X16): Q4_0 rows interleaved in groups of 16.
 *
 * A group (16 rows of nb blocks, nb even) takes the bytes of its 16 rows; block pair p
 * (blocks 2p, 2p + 1) is 576 bytes at p * 576:
 *     [  0,  32)  fp16 d of block 2p, rows 0..15
 *     [ 32,  64)  fp16 d of block 2p + 1
 *     [ 64, 320)  quants of block 2p: 4 chunks of 64 bytes, chunk k = bytes 4k..4k+3 of
 *                 the block's 16 quant bytes, for rows 0..15 in turn
 *     [320, 576)  quants of block 2p + 1, the same way
 * so a 512-bit load is one quant dword of each of 16 rows (a vector lane per row: the dot
 * reduces nothing across lanes), the group is read front to back, and every load is
 * 64-byte aligned when the matrix is. Plain data movement: repack and unpack are exact. */
#include <string.h>

#include "kernels/gemm.h"
#include "kernels/kernels.h"
#include "quant/quant.h"

#define X16_PAIR 576 /* bytes of a block pair of a group */

bool k_x16_fits(uint32_t wtype, int64_t K, int64_t N, const void *W) {
    return wtype == ND_TYPE_Q4_0 && K > 0 && K % (2 * Q_QK) == 0 && N > 0 && N % 16 == 0 &&
           ((uintptr_t)W & 63) == 0;
}

bool k_x16_supported(const k_kernels *k, uint32_t wtype) {
    return wtype < ND_TYPE_COUNT && k->ops[wtype].vec_dot16 && k->ops[wtype].act_prep16 && k->gemm[wtype] &&
           k->gemm[wtype]->tile_x16;
}

/* byte offsets, in a group, of block b's d field and quant chunk 0 for row r */
static inline size_t x16_d(int64_t b, int r) { return (size_t)(b / 2) * X16_PAIR + (size_t)(b & 1) * 32 + 2 * (size_t)r; }
static inline size_t x16_q(int64_t b, int r) {
    return (size_t)(b / 2) * X16_PAIR + 64 + (size_t)(b & 1) * 256 + 4 * (size_t)r;
}

void k_x16_repack(void *W, int64_t K, int64_t N, void *tmp) {
    const int64_t nb = K / Q_QK;
    const size_t row = (size_t)nb * sizeof(q_block_q4_0), group = 16 * row;
    for (int64_t g = 0; g < N / 16; g++) {
        uint8_t *G = (uint8_t *)W + (size_t)g * group;
        memcpy(tmp, G, group);
        for (int r = 0; r < 16; r++) {
            const q_block_q4_0 *x = (const q_block_q4_0 *)((const uint8_t *)tmp + (size_t)r * row);
            for (int64_t b = 0; b < nb; b++) {
                memcpy(G + x16_d(b, r), &x[b].d, 2);
                for (int k = 0; k < 4; k++) memcpy(G + x16_q(b, r) + 64 * k, x[b].qs + 4 * k, 4);
            }
        }
    }
}

void k_x16_row(const void *W, int64_t K, int64_t r, void *dst) {
    const int64_t nb = K / Q_QK;
    const size_t row = (size_t)nb * sizeof(q_block_q4_0);
    const uint8_t *G = (const uint8_t *)W + (size_t)(r / 16) * 16 * row;
    const int i = (int)(r % 16);
    q_block_q4_0 *x = dst;
    for (int64_t b = 0; b < nb; b++) {
        memcpy(&x[b].d, G + x16_d(b, i), 2);
        for (int k = 0; k < 4; k++) memcpy(x[b].qs + 4 * k, G + x16_q(b, i) + 64 * k, 4);
    }
}
