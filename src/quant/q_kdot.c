/* K-quant x Q8_K dot products (scalar reference, ggml_vec_dot_<k>_q8_K_generic semantics).
 *
 * Per super-block the integer part is exact: isum = sum_j scale_j * sum_{l in j} q_l * a_l.
 * The asymmetric formats subtract dmin * sum_j min_j * sum_{l in j} a_l, computed from the
 * Q8_K bsums (sums of 16 activations). The float part is d_w * d_a * isum (- dmin term),
 * accumulated in float. llama.cpp's generic code splits isum over 8 int32 lanes and adds
 * 8 float partial sums at the end; the integers are the same, the float rounding differs
 * only in the last bits.
 */
#include "quant/q_internal.h"

float q_dot_q2_K_q8_K(const q_block_q2_K *x, const q_block_q8_K *y, int64_t nb) {
    float sumf = 0;
    for (int64_t i = 0; i < nb; ++i) {
        const uint8_t *q2 = x[i].qs, *sc = x[i].scales;
        const int8_t *q8 = y[i].qs;
        int summs = 0;
        for (int j = 0; j < 16; ++j) summs += y[i].bsums[j] * (sc[j] >> 4);
        const float dall = y[i].d * q_h2f(x[i].d);
        const float dmin = y[i].d * q_h2f(x[i].dmin);
        int isum = 0, is = 0;
        for (int k = 0; k < Q_QK_K / 128; ++k, q2 += 32) {
            for (int shift = 0; shift < 8; shift += 2, q8 += 32) {
                int s0 = 0, s1 = 0;
                for (int l = 0; l < 16; ++l) s0 += q8[l] * ((q2[l] >> shift) & 3);
                for (int l = 16; l < 32; ++l) s1 += q8[l] * ((q2[l] >> shift) & 3);
                isum += (sc[is] & 0xF) * s0 + (sc[is + 1] & 0xF) * s1;
                is += 2;
            }
        }
        sumf += dall * (float)isum - dmin * (float)summs;
    }
    return sumf;
}

float q_dot_q3_K_q8_K(const q_block_q3_K *x, const q_block_q8_K *y, int64_t nb) {
    float sumf = 0;
    for (int64_t i = 0; i < nb; ++i) {
        /* unpack the 256 signed 3-bit levels in element order */
        int8_t a[Q_QK_K];
        const uint8_t *q3 = x[i].qs, *hm = x[i].hmask;
        int8_t *ap = a;
        uint8_t m = 1;
        for (int j = 0; j < Q_QK_K; j += 128, q3 += 32) {
            for (int shift = 0; shift < 8; shift += 2, ap += 32, m = (uint8_t)(m << 1))
                for (int l = 0; l < 32; ++l)
                    ap[l] = (int8_t)(((q3[l] >> shift) & 3) - ((hm[l] & m) ? 0 : 4));
        }
        int8_t sc[16];
        q_unpack_q3_K_scales(x[i].scales, sc);
        int isum = 0;
        for (int j = 0; j < Q_QK_K / 16; ++j) {
            int s = 0;
            for (int l = 16 * j; l < 16 * j + 16; ++l) s += y[i].qs[l] * a[l];
            isum += sc[j] * s;
        }
        const float d = q_h2f(x[i].d) * y[i].d;
        sumf += d * (float)isum;
    }
    return sumf;
}

/* Shared by Q4_K and Q5_K once the levels are unpacked: 8 sub-blocks of 32 with 6-bit
 * scales, mins applied through the bsums. */
static float q_dot_k4_common(const uint8_t *a, const uint8_t *scales12, uint16_t dh,
                             uint16_t dminh, const q_block_q8_K *y) {
    int isum = 0, summs = 0;
    for (int j = 0; j < Q_QK_K / 32; ++j) {
        uint8_t sc, m;
        q_get_scale_min_k4(j, scales12, &sc, &m);
        int s = 0;
        for (int l = 32 * j; l < 32 * j + 32; ++l) s += y->qs[l] * a[l];
        isum += sc * s;
        summs += m * (y->bsums[2 * j] + y->bsums[2 * j + 1]);
    }
    const float d = q_h2f(dh) * y->d;
    const float dmin = q_h2f(dminh) * y->d;
    return d * (float)isum - dmin * (float)summs;
}

float q_dot_q4_K_q8_K(const q_block_q4_K *x, const q_block_q8_K *y, int64_t nb) {
    float sumf = 0;
    for (int64_t i = 0; i < nb; ++i) {
        uint8_t a[Q_QK_K];
        const uint8_t *q4 = x[i].qs;
        for (int j = 0; j < Q_QK_K; j += 64, q4 += 32) {
            for (int l = 0; l < 32; ++l) a[j + l] = q4[l] & 0xF;
            for (int l = 0; l < 32; ++l) a[j + 32 + l] = q4[l] >> 4;
        }
        sumf += q_dot_k4_common(a, x[i].scales, x[i].d, x[i].dmin, &y[i]);
    }
    return sumf;
}

float q_dot_q5_K_q8_K(const q_block_q5_K *x, const q_block_q8_K *y, int64_t nb) {
    float sumf = 0;
    for (int64_t i = 0; i < nb; ++i) {
        uint8_t a[Q_QK_K];
        const uint8_t *q4 = x[i].qs, *hm = x[i].qh;
        uint8_t m = 1;
        for (int j = 0; j < Q_QK_K; j += 64, q4 += 32) {
            const uint8_t m2 = (uint8_t)(m << 1);
            for (int l = 0; l < 32; ++l) {
                a[j + l] = (uint8_t)((q4[l] & 0xF) + (hm[l] & m ? 16 : 0));
                a[j + 32 + l] = (uint8_t)((q4[l] >> 4) + (hm[l] & m2 ? 16 : 0));
            }
            m = (uint8_t)(m << 2);
        }
        sumf += q_dot_k4_common(a, x[i].scales, x[i].d, x[i].dmin, &y[i]);
    }
    return sumf;
}

float q_dot_q6_K_q8_K(const q_block_q6_K *x, const q_block_q8_K *y, int64_t nb) {
    float sumf = 0;
    for (int64_t i = 0; i < nb; ++i) {
        int8_t a[Q_QK_K];
        const uint8_t *ql = x[i].ql, *qh = x[i].qh;
        for (int j = 0; j < Q_QK_K; j += 128, ql += 64, qh += 32) {
            for (int l = 0; l < 32; ++l) {
                a[j + l + 0] = (int8_t)(((ql[l + 0] & 0xF) | (((qh[l] >> 0) & 3) << 4)) - 32);
                a[j + l + 32] = (int8_t)(((ql[l + 32] & 0xF) | (((qh[l] >> 2) & 3) << 4)) - 32);
                a[j + l + 64] = (int8_t)(((ql[l + 0] >> 4) | (((qh[l] >> 4) & 3) << 4)) - 32);
                a[j + l + 96] = (int8_t)(((ql[l + 32] >> 4) | (((qh[l] >> 6) & 3) << 4)) - 32);
            }
        }
        int isum = 0;
        for (int j = 0; j < Q_QK_K / 16; ++j) {
            int s = 0;
            for (int l = 16 * j; l < 16 * j + 16; ++l) s += y[i].qs[l] * a[l];
            isum += x[i].scales[j] * s;
        }
        const float d = q_h2f(x[i].d) * y[i].d;
        sumf += d * (float)isum;
    }
    return sumf;
}
