/* K-quants (256-element super-blocks): Q2_K, Q3_K, Q4_K, Q5_K, Q6_K and the Q8_K
 * activation format. Reference quantize (byte-identical to llama.cpp's
 * quantize_row_*_ref), imatrix quantize (llama.cpp's quantize_row_*_impl) and dequantize.
 *
 * Every K-quant quantizer works the same way: (1) fit a scale (and min) per sub-block with
 * one of the searches in q_search.c, (2) quantize those sub-block scales to 4/6/8 bits
 * against one fp16 super-block scale, (3) re-quantize the elements with the *rounded*
 * scales so that the levels match what dequantization will use, (4) pack the bits.
 */
#include <math.h>

#include "quant/q_internal.h"

/* Byte-exactness depends on every multiply and add rounding separately (no fused
 * multiply-add): GCC in ISO C mode never contracts; clang needs to be told. */
#if defined(__clang__)
#pragma STDC FP_CONTRACT OFF
#endif

static inline int q_clampi(int v, int lo, int hi) { return v < lo ? lo : v > hi ? hi : v; }

/* ---------------------------------------------------------------- packing helpers */

/* 2-bit packing shared by Q2_K and Q3_K: per 128 elements, byte l holds elements
 * l, l+32, l+64, l+96 at bit pairs 0, 2, 4, 6. */
static void q_pack_2bit(const uint8_t *L, uint8_t *qs) {
    for (int j = 0; j < Q_QK_K; j += 128) {
        for (int l = 0; l < 32; ++l)
            qs[j / 4 + l] = (uint8_t)(L[j + l] | (L[j + l + 32] << 2) | (L[j + l + 64] << 4) |
                                      (L[j + l + 96] << 6));
    }
}

/* 6-bit scale/min packing of Q4_K/Q5_K (inverse of q_get_scale_min_k4). */
static void q_pack_scale_min_k4(const uint8_t *ls, const uint8_t *lm, uint8_t *s) {
    for (int j = 0; j < 8; ++j) {
        if (j < 4) {
            s[j] = ls[j];
            s[j + 4] = lm[j];
        } else {
            s[j + 4] = (uint8_t)((ls[j] & 0xF) | ((lm[j] & 0xF) << 4));
            s[j - 4] |= (uint8_t)((ls[j] >> 4) << 6);
            s[j - 0] |= (uint8_t)((lm[j] >> 4) << 6);
        }
    }
}

/* Q3_K 6-bit signed scales: l in 0..63 (offset 32 already added). */
static void q_pack_q3_K_scales(const int *l6, uint8_t *s) {
    memset(s, 0, 12);
    for (int j = 0; j < 16; ++j) {
        int l = l6[j];
        if (j < 8)
            s[j] = (uint8_t)(l & 0xF);
        else
            s[j - 8] |= (uint8_t)((l & 0xF) << 4);
        l >>= 4;
        s[j % 4 + 8] |= (uint8_t)(l << (2 * (j / 4)));
    }
}

/* Q4_K/Q5_K step 3: levels from the rounded scales. L keeps the search's levels for
 * sub-blocks whose rounded scale is 0 (as the reference). */
static void q_requant_k4(const float *x, const uint8_t *scales, uint16_t dh, uint16_t dminh,
                         int nmax, uint8_t *L) {
    for (int j = 0; j < Q_QK_K / 32; ++j) {
        uint8_t sc, m;
        q_get_scale_min_k4(j, scales, &sc, &m);
        const float d = q_h2f(dh) * (float)sc;
        if (d == 0.f) continue;
        const float dm = q_h2f(dminh) * (float)m;
        for (int ii = 0; ii < 32; ++ii) {
            int l = q_nearest_int((x[32 * j + ii] + dm) / d);
            L[32 * j + ii] = (uint8_t)q_clampi(l, 0, nmax);
        }
    }
}

static void q_pack_q4_K(const uint8_t *L, uint8_t *q) {
    for (int j = 0; j < Q_QK_K; j += 64, q += 32)
        for (int l = 0; l < 32; ++l) q[l] = (uint8_t)(L[j + l] | (L[j + l + 32] << 4));
}

static void q_pack_q5_K(const uint8_t *L, uint8_t *ql, uint8_t *qh) {
    memset(qh, 0, Q_QK_K / 8);
    uint8_t m1 = 1, m2 = 2;
    for (int n = 0; n < Q_QK_K; n += 64, ql += 32) {
        for (int j = 0; j < 32; ++j) {
            int l1 = L[n + j], l2 = L[n + j + 32];
            if (l1 > 15) {
                l1 -= 16;
                qh[j] |= m1;
            }
            if (l2 > 15) {
                l2 -= 16;
                qh[j] |= m2;
            }
            ql[j] = (uint8_t)(l1 | (l2 << 4));
        }
        m1 = (uint8_t)(m1 << 2);
        m2 = (uint8_t)(m2 << 2);
    }
}

/* Q3_K steps 3-4 given the packed scales and d: requantize, split off the high bit. */
static void q_finish_q3_K(const float *x, int8_t *L, q_block_q3_K *y) {
    int8_t sc[16];
    q_unpack_q3_K_scales(y->scales, sc);
    for (int j = 0; j < Q_QK_K / 16; ++j) {
        const float d = q_h2f(y->d) * (float)sc[j];
        if (d == 0.f) continue;
        for (int ii = 0; ii < 16; ++ii) {
            int l = q_nearest_int(x[16 * j + ii] / d);
            L[16 * j + ii] = (int8_t)(q_clampi(l, -4, 3) + 4);
        }
    }
    /* element j: high bit at hmask[j % 32] bit j / 32 */
    memset(y->hmask, 0, Q_QK_K / 8);
    for (int j = 0; j < Q_QK_K; ++j) {
        if (L[j] > 3) {
            y->hmask[j % 32] |= (uint8_t)(1u << (j / 32));
            L[j] = (int8_t)(L[j] - 4);
        }
    }
    q_pack_2bit((const uint8_t *)L, y->qs);
}

/* Q6_K steps 3-4 given d and the int8 scales. */
static void q_finish_q6_K(const float *x, int8_t *L, q_block_q6_K *y) {
    for (int j = 0; j < Q_QK_K / 16; ++j) {
        const float d = q_h2f(y->d) * (float)y->scales[j];
        if (d == 0.f) continue;
        for (int ii = 0; ii < 16; ++ii) {
            int l = q_nearest_int(x[16 * j + ii] / d);
            L[16 * j + ii] = (int8_t)(q_clampi(l, -32, 31) + 32);
        }
    }
    uint8_t *ql = y->ql, *qh = y->qh;
    for (int j = 0; j < Q_QK_K; j += 128, ql += 64, qh += 32) {
        for (int l = 0; l < 32; ++l) {
            const uint8_t *Lu = (const uint8_t *)L + j + l;
            ql[l + 0] = (uint8_t)((Lu[0] & 0xF) | ((Lu[64] & 0xF) << 4));
            ql[l + 32] = (uint8_t)((Lu[32] & 0xF) | ((Lu[96] & 0xF) << 4));
            qh[l] = (uint8_t)((Lu[0] >> 4) | ((Lu[32] >> 4) << 2) | ((Lu[64] >> 4) << 4) |
                              ((Lu[96] >> 4) << 6));
        }
    }
}

/* Q6_K step 2 from the 16 sub-block scales; returns 0 if the block is all zero (then it
 * has been zeroed). */
static int q_scales_q6_K(const float *scales, q_block_q6_K *y) {
    float max_scale = 0, max_abs_scale = 0;
    for (int ib = 0; ib < Q_QK_K / 16; ++ib) {
        const float abs_scale = fabsf(scales[ib]);
        if (abs_scale > max_abs_scale) {
            max_abs_scale = abs_scale;
            max_scale = scales[ib];
        }
    }
    if (max_abs_scale < Q_GROUP_MAX_EPS) {
        memset(y, 0, sizeof *y);
        return 0;
    }
    const float iscale = -128.f / max_scale;
    y->d = q_f2h(1 / iscale);
    for (int ib = 0; ib < Q_QK_K / 16; ++ib) {
        int l = q_nearest_int(iscale * scales[ib]);
        y->scales[ib] = (int8_t)(l < 127 ? l : 127);
    }
    return 1;
}

/* ================================================================ reference quantize */

void q_quant_q2_K(const float *x, q_block_q2_K *y, int64_t nb) {
    const float q4scale = 15.f;
    for (int64_t i = 0; i < nb; i++, x += Q_QK_K) {
        uint8_t L[Q_QK_K], Laux[16];
        float weights[16], mins[Q_QK_K / 16], scales[Q_QK_K / 16];
        float max_scale = 0, max_min = 0;
        for (int j = 0; j < Q_QK_K / 16; ++j) {
            for (int l = 0; l < 16; ++l) weights[l] = fabsf(x[16 * j + l]);
            scales[j] = q_make_qkx2_quants(16, 3, x + 16 * j, weights, L + 16 * j, &mins[j], Laux,
                                           -0.5f, 0.1f, 15, 1);
            if (scales[j] > max_scale) max_scale = scales[j];
            if (mins[j] > max_min) max_min = mins[j];
        }
        if (max_scale > 0) {
            const float iscale = q4scale / max_scale;
            for (int j = 0; j < Q_QK_K / 16; ++j)
                y[i].scales[j] = (uint8_t)q_nearest_int(iscale * scales[j]);
            y[i].d = q_f2h(max_scale / q4scale);
        } else {
            memset(y[i].scales, 0, sizeof y[i].scales);
            y[i].d = q_f2h(0.f);
        }
        if (max_min > 0) {
            const float iscale = q4scale / max_min;
            for (int j = 0; j < Q_QK_K / 16; ++j)
                y[i].scales[j] |= (uint8_t)((unsigned)q_nearest_int(iscale * mins[j]) << 4);
            y[i].dmin = q_f2h(max_min / q4scale);
        } else {
            y[i].dmin = q_f2h(0.f);
        }
        for (int j = 0; j < Q_QK_K / 16; ++j) {
            const float d = q_h2f(y[i].d) * (float)(y[i].scales[j] & 0xF);
            if (d == 0.f) continue;
            const float dm = q_h2f(y[i].dmin) * (float)(y[i].scales[j] >> 4);
            for (int ii = 0; ii < 16; ++ii) {
                int l = q_nearest_int((x[16 * j + ii] + dm) / d);
                L[16 * j + ii] = (uint8_t)q_clampi(l, 0, 3);
            }
        }
        q_pack_2bit(L, y[i].qs);
    }
}

void q_quant_q3_K(const float *x, q_block_q3_K *y, int64_t nb) {
    for (int64_t i = 0; i < nb; i++, x += Q_QK_K) {
        int8_t L[Q_QK_K];
        float scales[Q_QK_K / 16];
        float max_scale = 0, amax = 0;
        for (int j = 0; j < Q_QK_K / 16; ++j) {
            scales[j] = q_make_q3_quants(16, 4, x + 16 * j, L + 16 * j);
            float scale = fabsf(scales[j]);
            if (scale > amax) {
                amax = scale;
                max_scale = scales[j];
            }
        }
        if (max_scale != 0.f) {
            const float iscale = -32.f / max_scale;
            int l6[16];
            for (int j = 0; j < Q_QK_K / 16; ++j)
                l6[j] = q_clampi((int8_t)q_nearest_int(iscale * scales[j]), -32, 31) + 32;
            q_pack_q3_K_scales(l6, y[i].scales);
            y[i].d = q_f2h(1 / iscale);
        } else {
            memset(y[i].scales, 0, 12);
            y[i].d = q_f2h(0.f);
        }
        q_finish_q3_K(x, L, &y[i]);
    }
}

/* Q4_K / Q5_K reference: sub-block fit with weights av_x + |x|, 6-bit scales and mins
 * against max/63. */
static void q_kx_ref_scales(const float *x, int nmax, float rmin, float rdelta, int nstep,
                            uint8_t *L, uint8_t *scales12, uint16_t *dh, uint16_t *dminh) {
    uint8_t Laux[32], ls[8], lm[8];
    float weights[32], mins[8], scales[8];
    float max_scale = 0, max_min = 0;
    for (int j = 0; j < Q_QK_K / 32; ++j) {
        float sum_x2 = 0;
        for (int l = 0; l < 32; ++l) sum_x2 += x[32 * j + l] * x[32 * j + l];
        const float av_x = sqrtf(sum_x2 / 32);
        for (int l = 0; l < 32; ++l) weights[l] = av_x + fabsf(x[32 * j + l]);
        scales[j] = q_make_qkx2_quants(32, nmax, x + 32 * j, weights, L + 32 * j, &mins[j], Laux,
                                       rmin, rdelta, nstep, 0);
        if (scales[j] > max_scale) max_scale = scales[j];
        if (mins[j] > max_min) max_min = mins[j];
    }
    const float inv_scale = max_scale > 0 ? 63.f / max_scale : 0.f;
    const float inv_min = max_min > 0 ? 63.f / max_min : 0.f;
    for (int j = 0; j < Q_QK_K / 32; ++j) {
        uint8_t a = (uint8_t)q_nearest_int(inv_scale * scales[j]);
        uint8_t b = (uint8_t)q_nearest_int(inv_min * mins[j]);
        ls[j] = a < 63 ? a : 63;
        lm[j] = b < 63 ? b : 63;
    }
    q_pack_scale_min_k4(ls, lm, scales12);
    *dh = q_f2h(max_scale / 63.f);
    *dminh = q_f2h(max_min / 63.f);
}

void q_quant_q4_K(const float *x, q_block_q4_K *y, int64_t nb) {
    for (int64_t i = 0; i < nb; i++, x += Q_QK_K) {
        uint8_t L[Q_QK_K];
        q_kx_ref_scales(x, 15, -1.f, 0.1f, 20, L, y[i].scales, &y[i].d, &y[i].dmin);
        q_requant_k4(x, y[i].scales, y[i].d, y[i].dmin, 15, L);
        q_pack_q4_K(L, y[i].qs);
    }
}

void q_quant_q5_K(const float *x, q_block_q5_K *y, int64_t nb) {
    for (int64_t i = 0; i < nb; i++, x += Q_QK_K) {
        uint8_t L[Q_QK_K];
        q_kx_ref_scales(x, 31, -0.5f, 0.1f, 15, L, y[i].scales, &y[i].d, &y[i].dmin);
        q_requant_k4(x, y[i].scales, y[i].d, y[i].dmin, 31, L);
        q_pack_q5_K(L, y[i].qs, y[i].qh);
    }
}

void q_quant_q6_K(const float *x, q_block_q6_K *y, int64_t nb) {
    for (int64_t i = 0; i < nb; i++, x += Q_QK_K) {
        int8_t L[Q_QK_K];
        float scales[Q_QK_K / 16];
        for (int ib = 0; ib < Q_QK_K / 16; ++ib)
            scales[ib] = q_make_qx_quants(16, 32, x + 16 * ib, L + 16 * ib, NULL);
        if (!q_scales_q6_K(scales, &y[i])) continue;
        q_finish_q6_K(x, L, &y[i]);
    }
}

void q_quant_q8_K(const float *x, q_block_q8_K *y, int64_t nb) {
    for (int64_t i = 0; i < nb; i++, x += Q_QK_K) {
        float max = 0, amax = 0;
        for (int j = 0; j < Q_QK_K; ++j) {
            float ax = fabsf(x[j]);
            if (ax > amax) {
                amax = ax;
                max = x[j];
            }
        }
        if (amax == 0.f) {
            memset(&y[i], 0, sizeof y[i]); /* llama.cpp leaves bsums unset here; we zero them */
            continue;
        }
        /* -127 (not -128) so that |q| <= 127 and SIMD can use sign tricks. For amax below
         * ~3.7e-37 iscale is infinite (llama.cpp then rounds inf/NaN: garbage); a product
         * that is not finite within [-127.5, 127.5] gives 0, so such blocks quantize to
         * zero. Finite scales never reach that bound: bytes equal the reference's. */
        const float iscale = -127.f / max;
        for (int j = 0; j < Q_QK_K; ++j) {
            const float p = iscale * x[j];
            int v = fabsf(p) <= 127.5f ? q_nearest_int(p) : 0;
            y[i].qs[j] = (int8_t)(v < 127 ? v : 127);
        }
        for (int j = 0; j < Q_QK_K / 16; ++j) {
            int sum = 0;
            for (int ii = 0; ii < 16; ++ii) sum += y[i].qs[j * 16 + ii];
            y[i].bsums[j] = (int16_t)sum;
        }
        y[i].d = 1 / iscale;
    }
}

/* ================================================================ imatrix quantize */

static float q_sum_sq(const float *x, int n) {
    float s = 0;
    for (int l = 0; l < n; ++l) s += x[l] * x[l];
    return s;
}

void q_quant_q2_K_imat(const float *x, q_block_q2_K *y, int64_t nb, const float *qw) {
    for (int64_t i = 0; i < nb; i++, x += Q_QK_K) {
        uint8_t L[Q_QK_K], Laux[16], Ls[16], Lm[16];
        float mins[16], scales[16], sw[16], weight[16];
        const float sigma2 = q_sum_sq(x, Q_QK_K) / Q_QK_K;
        for (int j = 0; j < Q_QK_K / 16; ++j) {
            const float *w = qw + Q_QK_K * i + 16 * j;
            for (int l = 0; l < 16; ++l)
                weight[l] = w[l] * sqrtf(sigma2 + x[16 * j + l] * x[16 * j + l]);
            sw[j] = 0;
            for (int l = 0; l < 16; ++l) sw[j] += weight[l];
            scales[j] = q_make_qkx3_quants(16, 3, x + 16 * j, weight, L + 16 * j, &mins[j], Laux,
                                           -0.9f, 0.05f, 36, 0);
        }
        const float dm0 = q_make_qp_quants(16, 15, scales, Ls, sw);
        const float mm0 = q_make_qp_quants(16, 15, mins, Lm, sw);
        y[i].d = q_f2h(dm0);
        y[i].dmin = q_f2h(mm0);
        const float dm = q_h2f(y[i].d), mm = q_h2f(y[i].dmin);
        for (int j = 0; j < 16; ++j) y[i].scales[j] = (uint8_t)(Ls[j] | (Lm[j] << 4));
        for (int j = 0; j < Q_QK_K / 16; ++j) {
            const float d = dm * (float)(y[i].scales[j] & 0xF);
            if (d == 0.f) continue;
            const float m = mm * (float)(y[i].scales[j] >> 4);
            for (int ii = 0; ii < 16; ++ii) {
                int l = q_nearest_int((x[16 * j + ii] + m) / d);
                L[16 * j + ii] = (uint8_t)q_clampi(l, 0, 3);
            }
        }
        q_pack_2bit(L, y[i].qs);
    }
}

void q_quant_q3_K_imat(const float *x, q_block_q3_K *y, int64_t nb, const float *qw) {
    for (int64_t i = 0; i < nb; i++, x += Q_QK_K) {
        int8_t L[Q_QK_K], Ls[16];
        float scales[16], weight[16], sw[16];
        const float sigma2 = 2 * q_sum_sq(x, Q_QK_K) / Q_QK_K;
        for (int j = 0; j < Q_QK_K / 16; ++j) {
            const float *w = qw + Q_QK_K * i + 16 * j;
            for (int l = 0; l < 16; ++l)
                weight[l] = w[l] * sqrtf(sigma2 + x[16 * j + l] * x[16 * j + l]);
            float sumw = 0;
            for (int l = 0; l < 16; ++l) sumw += weight[l];
            sw[j] = sumw;
            scales[j] = q_make_qx_quants(16, 4, x + 16 * j, L + 16 * j, weight);
        }
        const float d_block = q_make_qx_quants(16, 32, scales, Ls, sw);
        int l6[16];
        for (int j = 0; j < 16; ++j) l6[j] = Ls[j];
        q_pack_q3_K_scales(l6, y[i].scales);
        y[i].d = q_f2h(d_block);
        q_finish_q3_K(x, L, &y[i]);
    }
}

/* Q4_K / Q5_K with an imatrix: qkx3 search with imatrix*sqrt(sigma2 + x^2) weights, then the
 * scales and mins themselves fitted by make_qp_quants (weighted by each sub-block's total
 * weight) instead of plain max/63. */
static void q_kx_imat_scales(const float *x, const float *qw, int nmax, uint8_t *L,
                             uint8_t *scales12, uint16_t *dh, uint16_t *dminh) {
    uint8_t Laux[32], Ls[8], Lm[8];
    float weights[32], sw[8], mins[8], scales[8];
    const float sigma2 = 2 * q_sum_sq(x, Q_QK_K) / Q_QK_K;
    for (int j = 0; j < Q_QK_K / 32; ++j) {
        const float *w = qw + 32 * j;
        for (int l = 0; l < 32; ++l)
            weights[l] = w[l] * sqrtf(sigma2 + x[32 * j + l] * x[32 * j + l]);
        float sumw = 0;
        for (int l = 0; l < 32; ++l) sumw += weights[l];
        sw[j] = sumw;
        scales[j] = q_make_qkx3_quants(32, nmax, x + 32 * j, weights, L + 32 * j, &mins[j], Laux,
                                       -0.9f, 0.05f, 36, 0);
    }
    const float d_block = q_make_qp_quants(8, 63, scales, Ls, sw);
    const float m_block = q_make_qp_quants(8, 63, mins, Lm, sw);
    for (int j = 0; j < 8; ++j) {
        Ls[j] = Ls[j] < 63 ? Ls[j] : 63;
        Lm[j] = Lm[j] < 63 ? Lm[j] : 63;
    }
    q_pack_scale_min_k4(Ls, Lm, scales12);
    *dh = q_f2h(d_block);
    *dminh = q_f2h(m_block);
}

void q_quant_q4_K_imat(const float *x, q_block_q4_K *y, int64_t nb, const float *qw) {
    for (int64_t i = 0; i < nb; i++, x += Q_QK_K) {
        uint8_t L[Q_QK_K];
        q_kx_imat_scales(x, qw + Q_QK_K * i, 15, L, y[i].scales, &y[i].d, &y[i].dmin);
        q_requant_k4(x, y[i].scales, y[i].d, y[i].dmin, 15, L);
        q_pack_q4_K(L, y[i].qs);
    }
}

void q_quant_q5_K_imat(const float *x, q_block_q5_K *y, int64_t nb, const float *qw) {
    for (int64_t i = 0; i < nb; i++, x += Q_QK_K) {
        uint8_t L[Q_QK_K];
        q_kx_imat_scales(x, qw + Q_QK_K * i, 31, L, y[i].scales, &y[i].d, &y[i].dmin);
        q_requant_k4(x, y[i].scales, y[i].d, y[i].dmin, 31, L);
        q_pack_q5_K(L, y[i].qs, y[i].qh);
    }
}

void q_quant_q6_K_imat(const float *x, q_block_q6_K *y, int64_t nb, const float *qw) {
    for (int64_t i = 0; i < nb; i++, x += Q_QK_K) {
        int8_t L[Q_QK_K];
        float scales[Q_QK_K / 16];
        for (int ib = 0; ib < Q_QK_K / 16; ++ib)
            scales[ib] = q_make_qx_quants(16, 32, x + 16 * ib, L + 16 * ib,
                                          qw + Q_QK_K * i + 16 * ib);
        if (!q_scales_q6_K(scales, &y[i])) continue;
        q_finish_q6_K(x, L, &y[i]);
    }
}

/* ================================================================ dequantize */

void q_dequant_q2_K(const q_block_q2_K *x, float *y, int64_t nb) {
    for (int64_t i = 0; i < nb; i++) {
        const float d = q_h2f(x[i].d), min = q_h2f(x[i].dmin);
        const uint8_t *q = x[i].qs;
        int is = 0;
        for (int n = 0; n < Q_QK_K; n += 128, q += 32) {
            for (int shift = 0; shift < 8; shift += 2) {
                for (int half = 0; half < 2; half++) {
                    const uint8_t sc = x[i].scales[is++];
                    const float dl = d * (float)(sc & 0xF), ml = min * (float)(sc >> 4);
                    for (int l = 0; l < 16; ++l)
                        *y++ = dl * (float)((q[l + 16 * half] >> shift) & 3) - ml;
                }
            }
        }
    }
}

void q_dequant_q3_K(const q_block_q3_K *x, float *y, int64_t nb) {
    for (int64_t i = 0; i < nb; i++) {
        const float d_all = q_h2f(x[i].d);
        int8_t sc[16];
        q_unpack_q3_K_scales(x[i].scales, sc);
        const uint8_t *q = x[i].qs, *hm = x[i].hmask;
        uint8_t m = 1;
        int is = 0;
        for (int n = 0; n < Q_QK_K; n += 128, q += 32) {
            for (int shift = 0; shift < 8; shift += 2, m = (uint8_t)(m << 1)) {
                for (int half = 0; half < 2; half++) {
                    const float dl = d_all * (float)sc[is++];
                    for (int l = 16 * half; l < 16 * half + 16; ++l)
                        *y++ = dl * (float)(((q[l] >> shift) & 3) - ((hm[l] & m) ? 0 : 4));
                }
            }
        }
    }
}

void q_dequant_q4_K(const q_block_q4_K *x, float *y, int64_t nb) {
    for (int64_t i = 0; i < nb; i++) {
        const float d = q_h2f(x[i].d), min = q_h2f(x[i].dmin);
        const uint8_t *q = x[i].qs;
        for (int j = 0, is = 0; j < Q_QK_K; j += 64, q += 32, is += 2) {
            uint8_t sc, m;
            q_get_scale_min_k4(is + 0, x[i].scales, &sc, &m);
            const float d1 = d * (float)sc, m1 = min * (float)m;
            q_get_scale_min_k4(is + 1, x[i].scales, &sc, &m);
            const float d2 = d * (float)sc, m2 = min * (float)m;
            for (int l = 0; l < 32; ++l) *y++ = d1 * (float)(q[l] & 0xF) - m1;
            for (int l = 0; l < 32; ++l) *y++ = d2 * (float)(q[l] >> 4) - m2;
        }
    }
}

void q_dequant_q5_K(const q_block_q5_K *x, float *y, int64_t nb) {
    for (int64_t i = 0; i < nb; i++) {
        const float d = q_h2f(x[i].d), min = q_h2f(x[i].dmin);
        const uint8_t *ql = x[i].qs, *qh = x[i].qh;
        uint8_t u1 = 1, u2 = 2;
        for (int j = 0, is = 0; j < Q_QK_K; j += 64, ql += 32, is += 2) {
            uint8_t sc, m;
            q_get_scale_min_k4(is + 0, x[i].scales, &sc, &m);
            const float d1 = d * (float)sc, m1 = min * (float)m;
            q_get_scale_min_k4(is + 1, x[i].scales, &sc, &m);
            const float d2 = d * (float)sc, m2 = min * (float)m;
            for (int l = 0; l < 32; ++l)
                *y++ = d1 * (float)((ql[l] & 0xF) + (qh[l] & u1 ? 16 : 0)) - m1;
            for (int l = 0; l < 32; ++l)
                *y++ = d2 * (float)((ql[l] >> 4) + (qh[l] & u2 ? 16 : 0)) - m2;
            u1 = (uint8_t)(u1 << 2);
            u2 = (uint8_t)(u2 << 2);
        }
    }
}

void q_dequant_q6_K(const q_block_q6_K *x, float *y, int64_t nb) {
    for (int64_t i = 0; i < nb; i++) {
        const float d = q_h2f(x[i].d);
        const uint8_t *ql = x[i].ql, *qh = x[i].qh;
        const int8_t *sc = x[i].scales;
        for (int n = 0; n < Q_QK_K; n += 128, y += 128, ql += 64, qh += 32, sc += 8) {
            for (int l = 0; l < 32; ++l) {
                const int is = l / 16;
                const int q1 = ((ql[l + 0] & 0xF) | (((qh[l] >> 0) & 3) << 4)) - 32;
                const int q2 = ((ql[l + 32] & 0xF) | (((qh[l] >> 2) & 3) << 4)) - 32;
                const int q3 = ((ql[l + 0] >> 4) | (((qh[l] >> 4) & 3) << 4)) - 32;
                const int q4 = ((ql[l + 32] >> 4) | (((qh[l] >> 6) & 3) << 4)) - 32;
                y[l + 0] = d * (float)sc[is + 0] * (float)q1;
                y[l + 32] = d * (float)sc[is + 2] * (float)q2;
                y[l + 64] = d * (float)sc[is + 4] * (float)q3;
                y[l + 96] = d * (float)sc[is + 6] * (float)q4;
            }
        }
    }
}

void q_dequant_q8_K(const q_block_q8_K *x, float *y, int64_t nb) {
    for (int64_t i = 0; i < nb; i++, y += Q_QK_K)
        for (int j = 0; j < Q_QK_K; ++j) y[j] = x[i].d * (float)x[i].qs[j];
}
