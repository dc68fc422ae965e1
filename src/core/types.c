/* fp16/bf16 conversion and tensor type traits. */
#include <ctype.h>
#include <string.h>

#include "core/nd.h"

/* ------------------------------------------------------------- fp16 / bf16 */

float nd_fp16_to_fp32(uint16_t h) {
    uint32_t sign = (uint32_t)(h & 0x8000) << 16;
    uint32_t exp = (h >> 10) & 0x1f, man = h & 0x3ff, bits;
    if (exp == 0x1f) {
        bits = sign | 0x7f800000u | (man << 13); /* inf / nan */
    } else if (exp == 0) {
        if (man == 0) {
            bits = sign;
        } else { /* subnormal: normalise */
            int e = -1;
            do { man <<= 1; e++; } while (!(man & 0x400));
            bits = sign | ((uint32_t)(127 - 15 - e) << 23) | ((man & 0x3ff) << 13);
        }
    } else {
        bits = sign | ((exp + 127 - 15) << 23) | (man << 13);
    }
    union { uint32_t u; float f; } v = {.u = bits};
    return v.f;
}

uint16_t nd_fp32_to_fp16(float f) {
    union { float f; uint32_t u; } v = {.f = f};
    uint32_t x = v.u;
    uint16_t sign = (uint16_t)((x >> 16) & 0x8000);
    uint32_t exp = (x >> 23) & 0xff, man = x & 0x7fffff;
    if (exp == 0xff) return sign | 0x7c00 | (man ? 0x200 | (man >> 13) : 0); /* inf/nan */
    int e = (int)exp - 127 + 15;
    if (e >= 0x1f) return sign | 0x7c00; /* overflow -> inf */
    if (e <= 0) {                        /* subnormal or zero in half */
        if (e < -10) return sign;
        man |= 0x800000;
        uint32_t shift = (uint32_t)(14 - e);
        uint32_t half = man >> shift, rem = man & ((1u << shift) - 1), mid = 1u << (shift - 1);
        if (rem > mid || (rem == mid && (half & 1))) half++;
        return sign | (uint16_t)half;
    }
    uint32_t half = ((uint32_t)e << 10) | (man >> 13), rem = man & 0x1fff;
    if (rem > 0x1000 || (rem == 0x1000 && (half & 1))) half++; /* may carry into exp: ok */
    return sign | (uint16_t)half;
}

uint16_t nd_fp32_to_bf16(float f) {
    union { float f; uint32_t u; } v = {.f = f};
    if ((v.u & 0x7fffffff) > 0x7f800000) return (uint16_t)((v.u >> 16) | 64); /* quiet nan */
    return (uint16_t)((v.u + (0x7fff + ((v.u >> 16) & 1))) >> 16);
}

/* ------------------------------------------------------------ type traits */

static const nd_type_traits traits[ND_TYPE_COUNT] = {
    [ND_TYPE_F32] = {"f32", 1, 4, true},
    [ND_TYPE_F16] = {"f16", 1, 2, true},
    [ND_TYPE_Q4_0] = {"q4_0", 32, 18, true},
    [ND_TYPE_Q4_1] = {"q4_1", 32, 20, true},
    [ND_TYPE_Q5_0] = {"q5_0", 32, 22, true},
    [ND_TYPE_Q5_1] = {"q5_1", 32, 24, true},
    [ND_TYPE_Q8_0] = {"q8_0", 32, 34, true},
    [ND_TYPE_Q8_1] = {"q8_1", 32, 36, false},
    [ND_TYPE_Q2_K] = {"q2_K", 256, 84, true},
    [ND_TYPE_Q3_K] = {"q3_K", 256, 110, true},
    [ND_TYPE_Q4_K] = {"q4_K", 256, 144, true},
    [ND_TYPE_Q5_K] = {"q5_K", 256, 176, true},
    [ND_TYPE_Q6_K] = {"q6_K", 256, 210, true},
    [ND_TYPE_Q8_K] = {"q8_K", 256, 292, false},
    [ND_TYPE_IQ2_XXS] = {"iq2_xxs", 256, 66, false},
    [ND_TYPE_IQ2_XS] = {"iq2_xs", 256, 74, false},
    [ND_TYPE_IQ3_XXS] = {"iq3_xxs", 256, 98, false},
    [ND_TYPE_IQ1_S] = {"iq1_s", 256, 50, false},
    [ND_TYPE_IQ4_NL] = {"iq4_nl", 32, 18, false},
    [ND_TYPE_IQ3_S] = {"iq3_s", 256, 110, false},
    [ND_TYPE_IQ2_S] = {"iq2_s", 256, 82, false},
    [ND_TYPE_IQ4_XS] = {"iq4_xs", 256, 136, false},
    [ND_TYPE_I8] = {"i8", 1, 1, false},
    [ND_TYPE_I16] = {"i16", 1, 2, false},
    [ND_TYPE_I32] = {"i32", 1, 4, false},
    [ND_TYPE_I64] = {"i64", 1, 8, false},
    [ND_TYPE_F64] = {"f64", 1, 8, false},
    [ND_TYPE_IQ1_M] = {"iq1_m", 256, 56, false},
    [ND_TYPE_BF16] = {"bf16", 1, 2, true},
    [ND_TYPE_TQ1_0] = {"tq1_0", 256, 54, false},
    [ND_TYPE_TQ2_0] = {"tq2_0", 256, 66, false},
};

const nd_type_traits *nd_type_info(uint32_t type) {
    if (type >= ND_TYPE_COUNT || !traits[type].name) return NULL;
    return &traits[type];
}

int nd_row_bytes(uint32_t type, uint64_t n, uint64_t *out, nd_err *err) {
    const nd_type_traits *t = nd_type_info(type);
    if (!t) return nd_seterr(err, ND_EFORMAT, "unknown tensor type %u", type);
    if (n % t->blck)
        return nd_seterr(err, ND_EFORMAT, "row of %llu elements is not a multiple of %s's block size %u",
                         (unsigned long long)n, t->name, t->blck);
    if (!nd_mul_ok(n / t->blck, t->bytes, out))
        return nd_seterr(err, ND_ERANGE, "row size overflows");
    return 0;
}

int nd_type_from_name(const char *name) {
    for (int i = 0; i < ND_TYPE_COUNT; i++)
        if (traits[i].name && !strcasecmp(traits[i].name, name)) return i;
    return -1;
}
