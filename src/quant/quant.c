/* quant dispatch: type checks, row sizes, float types, and the per-type entry points of
 * quant.h routed to the block implementations (q_blocks32.c, q_kquants.c, q_kdot.c). */
#include "quant/q_internal.h"

/* ---------------------------------------------------------------- type table */

static int q_type_index_ok(uint32_t type) {
    switch (type) {
    case ND_TYPE_F32: case ND_TYPE_F16: case ND_TYPE_BF16:
    case ND_TYPE_Q4_0: case ND_TYPE_Q4_1: case ND_TYPE_Q5_0: case ND_TYPE_Q5_1:
    case ND_TYPE_Q8_0: case ND_TYPE_Q8_1:
    case ND_TYPE_Q2_K: case ND_TYPE_Q3_K: case ND_TYPE_Q4_K: case ND_TYPE_Q5_K:
    case ND_TYPE_Q6_K: case ND_TYPE_Q8_K:
        return 1;
    default:
        return 0;
    }
}

int q_type_ok(uint32_t type) { return q_type_index_ok(type); }

int q_is_weight_type(uint32_t type) {
    return q_type_index_ok(type) && type != ND_TYPE_Q8_1 && type != ND_TYPE_Q8_K;
}

uint32_t q_blck(uint32_t type) {
    switch (type) {
    case ND_TYPE_F32: case ND_TYPE_F16: case ND_TYPE_BF16: return 1;
    case ND_TYPE_Q4_0: case ND_TYPE_Q4_1: case ND_TYPE_Q5_0: case ND_TYPE_Q5_1:
    case ND_TYPE_Q8_0: case ND_TYPE_Q8_1: return Q_QK;
    case ND_TYPE_Q2_K: case ND_TYPE_Q3_K: case ND_TYPE_Q4_K: case ND_TYPE_Q5_K:
    case ND_TYPE_Q6_K: case ND_TYPE_Q8_K: return Q_QK_K;
    default: return 0;
    }
}

uint32_t q_block_bytes(uint32_t type) {
    switch (type) {
    case ND_TYPE_F32: return 4;
    case ND_TYPE_F16: case ND_TYPE_BF16: return 2;
    case ND_TYPE_Q4_0: return sizeof(q_block_q4_0);
    case ND_TYPE_Q4_1: return sizeof(q_block_q4_1);
    case ND_TYPE_Q5_0: return sizeof(q_block_q5_0);
    case ND_TYPE_Q5_1: return sizeof(q_block_q5_1);
    case ND_TYPE_Q8_0: return sizeof(q_block_q8_0);
    case ND_TYPE_Q8_1: return sizeof(q_block_q8_1);
    case ND_TYPE_Q2_K: return sizeof(q_block_q2_K);
    case ND_TYPE_Q3_K: return sizeof(q_block_q3_K);
    case ND_TYPE_Q4_K: return sizeof(q_block_q4_K);
    case ND_TYPE_Q5_K: return sizeof(q_block_q5_K);
    case ND_TYPE_Q6_K: return sizeof(q_block_q6_K);
    case ND_TYPE_Q8_K: return sizeof(q_block_q8_K);
    default: return 0;
    }
}

size_t q_row_size(uint32_t type, int64_t n) {
    uint32_t bl = q_blck(type);
    if (bl == 0 || n < 0 || n % bl != 0) return 0;
    uint64_t bytes;
    if (!nd_mul_ok((uint64_t)(n / bl), q_block_bytes(type), &bytes) || bytes > SIZE_MAX) return 0;
    return (size_t)bytes;
}

/* 0, or the error for (type, n). */
static int q_check(uint32_t type, int64_t n) {
    if (!q_type_index_ok(type)) return ND_EUNSUPPORTED;
    if (n < 0 || n % q_blck(type) != 0) return ND_EINVAL;
    return 0;
}

/* ---------------------------------------------------------------- dequantize */

int q_dequantize_row(uint32_t type, const void *src, float *dst, int64_t n) {
    int rc = q_check(type, n);
    if (rc) return rc;
    const int64_t nb = n / q_blck(type);
    switch (type) {
    case ND_TYPE_F32: memcpy(dst, src, (size_t)n * sizeof(float)); break;
    case ND_TYPE_F16: {
        const uint8_t *s = src;
        for (int64_t i = 0; i < n; i++) {
            uint16_t h;
            memcpy(&h, s + 2 * i, 2);
            dst[i] = nd_fp16_to_fp32(h);
        }
        break;
    }
    case ND_TYPE_BF16: {
        const uint8_t *s = src;
        for (int64_t i = 0; i < n; i++) {
            uint16_t h;
            memcpy(&h, s + 2 * i, 2);
            dst[i] = nd_bf16_to_fp32(h);
        }
        break;
    }
    case ND_TYPE_Q4_0: q_dequant_q4_0(src, dst, nb); break;
    case ND_TYPE_Q4_1: q_dequant_q4_1(src, dst, nb); break;
    case ND_TYPE_Q5_0: q_dequant_q5_0(src, dst, nb); break;
    case ND_TYPE_Q5_1: q_dequant_q5_1(src, dst, nb); break;
    case ND_TYPE_Q8_0: q_dequant_q8_0(src, dst, nb); break;
    case ND_TYPE_Q8_1: q_dequant_q8_1(src, dst, nb); break;
    case ND_TYPE_Q2_K: q_dequant_q2_K(src, dst, nb); break;
    case ND_TYPE_Q3_K: q_dequant_q3_K(src, dst, nb); break;
    case ND_TYPE_Q4_K: q_dequant_q4_K(src, dst, nb); break;
    case ND_TYPE_Q5_K: q_dequant_q5_K(src, dst, nb); break;
    case ND_TYPE_Q6_K: q_dequant_q6_K(src, dst, nb); break;
    case ND_TYPE_Q8_K: q_dequant_q8_K(src, dst, nb); break;
    default: return ND_EUNSUPPORTED;
    }
    return 0;
}

/* ---------------------------------------------------------------- quantize */

int q_quantize_row(uint32_t type, const float *src, void *dst, int64_t n) {
    int rc = q_check(type, n);
    if (rc) return rc;
    const int64_t nb = n / q_blck(type);
    switch (type) {
    case ND_TYPE_F32: memcpy(dst, src, (size_t)n * sizeof(float)); break;
    case ND_TYPE_F16: {
        uint8_t *d = dst;
        for (int64_t i = 0; i < n; i++) {
            uint16_t h = nd_fp32_to_fp16(src[i]);
            memcpy(d + 2 * i, &h, 2);
        }
        break;
    }
    case ND_TYPE_BF16: {
        uint8_t *d = dst;
        for (int64_t i = 0; i < n; i++) {
            uint16_t h = nd_fp32_to_bf16(src[i]);
            memcpy(d + 2 * i, &h, 2);
        }
        break;
    }
    case ND_TYPE_Q4_0: q_quant_q4_0(src, dst, nb); break;
    case ND_TYPE_Q4_1: q_quant_q4_1(src, dst, nb); break;
    case ND_TYPE_Q5_0: q_quant_q5_0(src, dst, nb); break;
    case ND_TYPE_Q5_1: q_quant_q5_1(src, dst, nb); break;
    case ND_TYPE_Q8_0: q_quant_q8_0(src, dst, nb); break;
    case ND_TYPE_Q8_1: q_quant_q8_1(src, dst, nb); break;
    case ND_TYPE_Q2_K: q_quant_q2_K(src, dst, nb); break;
    case ND_TYPE_Q3_K: q_quant_q3_K(src, dst, nb); break;
    case ND_TYPE_Q4_K: q_quant_q4_K(src, dst, nb); break;
    case ND_TYPE_Q5_K: q_quant_q5_K(src, dst, nb); break;
    case ND_TYPE_Q6_K: q_quant_q6_K(src, dst, nb); break;
    case ND_TYPE_Q8_K: q_quant_q8_K(src, dst, nb); break;
    default: return ND_EUNSUPPORTED;
    }
    return 0;
}

int q_quantize_row_imat(uint32_t type, const float *src, void *dst, int64_t n,
                        const float *imatrix) {
    if (!imatrix) return q_quantize_row(type, src, dst, n);
    int rc = q_check(type, n);
    if (rc) return rc;
    const int64_t nb = n / q_blck(type);
    if (nb == 0) return 0;
    switch (type) {
    case ND_TYPE_Q4_0: q_quant_q4_0_imat(src, dst, nb, imatrix); break;
    case ND_TYPE_Q4_1: q_quant_q4_1_imat(src, dst, nb, imatrix); break;
    case ND_TYPE_Q5_0: q_quant_q5_0_imat(src, dst, nb, imatrix); break;
    case ND_TYPE_Q5_1: q_quant_q5_1_imat(src, dst, nb, imatrix); break;
    case ND_TYPE_Q2_K: q_quant_q2_K_imat(src, dst, nb, imatrix); break;
    case ND_TYPE_Q3_K: q_quant_q3_K_imat(src, dst, nb, imatrix); break;
    case ND_TYPE_Q4_K: q_quant_q4_K_imat(src, dst, nb, imatrix); break;
    case ND_TYPE_Q5_K: q_quant_q5_K_imat(src, dst, nb, imatrix); break;
    case ND_TYPE_Q6_K: q_quant_q6_K_imat(src, dst, nb, imatrix); break;
    default: return q_quantize_row(type, src, dst, n); /* float types, Q8_*: no imatrix */
    }
    return 0;
}

/* ---------------------------------------------------------------- dot products */

uint32_t q_vec_dot_type(uint32_t wtype) {
    switch (wtype) {
    case ND_TYPE_F32: case ND_TYPE_F16: case ND_TYPE_BF16: return wtype;
    case ND_TYPE_Q4_0: case ND_TYPE_Q5_0: case ND_TYPE_Q8_0: return ND_TYPE_Q8_0;
    case ND_TYPE_Q4_1: case ND_TYPE_Q5_1: return ND_TYPE_Q8_1;
    case ND_TYPE_Q2_K: case ND_TYPE_Q3_K: case ND_TYPE_Q4_K: case ND_TYPE_Q5_K:
    case ND_TYPE_Q6_K: return ND_TYPE_Q8_K;
    default: return UINT32_MAX;
    }
}

int q_quantize_act(uint32_t atype, const float *x, void *dst, int64_t n) {
    switch (atype) {
    case ND_TYPE_F32: case ND_TYPE_F16: case ND_TYPE_BF16:
    case ND_TYPE_Q8_K:
        return q_quantize_row(atype, x, dst, n);
    case ND_TYPE_Q8_0: case ND_TYPE_Q8_1: {
        int rc = q_check(atype, n);
        if (rc) return rc;
        if (atype == ND_TYPE_Q8_0) q_quant_act_q8_0(x, dst, n / Q_QK);
        else q_quant_act_q8_1(x, dst, n / Q_QK);
        return 0;
    }
    default:
        return ND_EUNSUPPORTED;
    }
}

int q_vec_dot_check(uint32_t wtype, uint32_t atype, int64_t n) {
    if (!q_is_weight_type(wtype)) return ND_EUNSUPPORTED;
    if (atype != q_vec_dot_type(wtype)) return ND_EINVAL;
    if (n < 0 || n % q_blck(wtype) != 0) return ND_EINVAL;
    return 0;
}

/* Float dots accumulate each float product in double, as ggml_vec_dot_f32/f16/bf16. */
static float q_dot_f32(const float *x, const float *y, int64_t n) {
    double s = 0;
    for (int64_t i = 0; i < n; i++) s += (double)(x[i] * y[i]);
    return (float)s;
}

static float q_dot_half(int bf, const uint8_t *x, const uint8_t *y, int64_t n) {
    double s = 0;
    for (int64_t i = 0; i < n; i++) {
        uint16_t a, b;
        memcpy(&a, x + 2 * i, 2);
        memcpy(&b, y + 2 * i, 2);
        float fa = bf ? nd_bf16_to_fp32(a) : nd_fp16_to_fp32(a);
        float fb = bf ? nd_bf16_to_fp32(b) : nd_fp16_to_fp32(b);
        s += (double)(fa * fb);
    }
    return (float)s;
}

float q_vec_dot(uint32_t wtype, const void *w, uint32_t atype, const void *a, int64_t n) {
    ND_ASSERT(q_vec_dot_check(wtype, atype, n) == 0);
    const int64_t nb = n / q_blck(wtype);
    switch (wtype) {
    case ND_TYPE_F32: return q_dot_f32(w, a, n);
    case ND_TYPE_F16: return q_dot_half(0, w, a, n);
    case ND_TYPE_BF16: return q_dot_half(1, w, a, n);
    case ND_TYPE_Q4_0: return q_dot_q4_0_q8_0(w, a, nb);
    case ND_TYPE_Q4_1: return q_dot_q4_1_q8_1(w, a, nb);
    case ND_TYPE_Q5_0: return q_dot_q5_0_q8_0(w, a, nb);
    case ND_TYPE_Q5_1: return q_dot_q5_1_q8_1(w, a, nb);
    case ND_TYPE_Q8_0: return q_dot_q8_0_q8_0(w, a, nb);
    case ND_TYPE_Q2_K: return q_dot_q2_K_q8_K(w, a, nb);
    case ND_TYPE_Q3_K: return q_dot_q3_K_q8_K(w, a, nb);
    case ND_TYPE_Q4_K: return q_dot_q4_K_q8_K(w, a, nb);
    case ND_TYPE_Q5_K: return q_dot_q5_K_q8_K(w, a, nb);
    case ND_TYPE_Q6_K: return q_dot_q6_K_q8_K(w, a, nb);
    default: ND_ASSERT(0 && "unreachable"); return 0;
    }
}

/* ---------------------------------------------------------------- error bounds */

/* Relative RMS error bounds on Gaussian data. Measured by tests/test_quant.c (65536
 * samples, N(0,1), seed 42) - f16 2.1e-4, bf16 1.7e-3, q8_0/q8_1 0.0054, q8_K 0.0070,
 * q4_0 0.086, q4_1 0.078, q5_0 0.043, q5_1 0.038, q2_K 0.296, q3_K 0.151, q4_K 0.072,
 * q5_K 0.036, q6_K 0.018 - and llama.cpp's own files of the synth fixtures agree to 1%.
 * Bounds leave 25-70% margin. */
double q_rms_bound(uint32_t type) {
    switch (type) {
    case ND_TYPE_F32: return 0.0;
    case ND_TYPE_F16: return 5e-4;
    case ND_TYPE_BF16: return 4e-3;
    case ND_TYPE_Q8_0: case ND_TYPE_Q8_1: return 0.010;
    case ND_TYPE_Q8_K: return 0.009;
    case ND_TYPE_Q4_0: return 0.12;
    case ND_TYPE_Q4_1: return 0.10;
    case ND_TYPE_Q5_0: return 0.06;
    case ND_TYPE_Q5_1: return 0.05;
    case ND_TYPE_Q2_K: return 0.40;
    case ND_TYPE_Q3_K: return 0.20;
    case ND_TYPE_Q4_K: return 0.11;
    case ND_TYPE_Q5_K: return 0.055;
    case ND_TYPE_Q6_K: return 0.03;
    default: return -1;
    }
}
