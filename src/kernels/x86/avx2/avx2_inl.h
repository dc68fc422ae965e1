/* Small AVX2 helpers shared by the x86 kernel files (avx2/, avx512/). Include only from
 * files compiled with at least the AVX2 flags (see the Makefile). */
#ifndef ND_KERNELS_AVX2_INL_H
#define ND_KERNELS_AVX2_INL_H

#include <immintrin.h>
#include <string.h>

#include "quant/quant.h"

static inline float h2f(const void *p) { /* fp16 at an unaligned address */
    uint16_t h;
    memcpy(&h, p, 2);
    return _cvtsh_ss(h);
}

static inline float hsum_ps(__m256 v) {
    __m128 s = _mm_add_ps(_mm256_castps256_ps128(v), _mm256_extractf128_ps(v, 1));
    s = _mm_add_ps(s, _mm_movehl_ps(s, s));
    s = _mm_add_ss(s, _mm_movehdup_ps(s));
    return _mm_cvtss_f32(s);
}

static inline int hsum_epi32(__m256i v) {
    __m128i s = _mm_add_epi32(_mm256_castsi256_si128(v), _mm256_extracti128_si256(v, 1));
    s = _mm_add_epi32(s, _mm_shuffle_epi32(s, _MM_SHUFFLE(1, 0, 3, 2)));
    s = _mm_add_epi32(s, _mm_shuffle_epi32(s, _MM_SHUFFLE(2, 3, 0, 1)));
    return _mm_cvtsi128_si32(s);
}

static inline float hmax_ps(__m256 v) {
    __m128 s = _mm_max_ps(_mm256_castps256_ps128(v), _mm256_extractf128_ps(v, 1));
    s = _mm_max_ps(s, _mm_movehl_ps(s, s));
    s = _mm_max_ss(s, _mm_movehdup_ps(s));
    return _mm_cvtss_f32(s);
}

static inline __m256i loadu256(const void *p) { return _mm256_loadu_si256((const __m256i *)p); }
static inline __m128i loadu128(const void *p) { return _mm_loadu_si128((const __m128i *)p); }

/* 16 bytes of packed nibbles (byte j: element j low, j+16 high) -> 32 bytes in element
 * order, values 0..15. */
static inline __m256i nibbles_32(const uint8_t *qs) {
    const __m128i q = loadu128(qs);
    const __m256i v = _mm256_set_m128i(_mm_srli_epi16(q, 4), q);
    return _mm256_and_si256(v, _mm256_set1_epi8(0x0F));
}

/* 32 bits (bit j -> element j) -> 32 bytes: 0x10 where the bit is set, else 0. */
static inline __m256i bits_to_0x10(const uint8_t *qh4) {
    uint32_t qh;
    memcpy(&qh, qh4, 4);
    const __m256i shuf = _mm256_set_epi64x(0x0303030303030303, 0x0202020202020202,
                                           0x0101010101010101, 0x0000000000000000);
    __m256i b = _mm256_shuffle_epi8(_mm256_set1_epi32((int)qh), shuf);
    const __m256i bit = _mm256_set1_epi64x((long long)0x8040201008040201ull);
    b = _mm256_cmpeq_epi8(_mm256_and_si256(b, bit), bit);
    return _mm256_and_si256(b, _mm256_set1_epi8(0x10));
}

/* Q4_K/Q5_K packed 6-bit scales and mins -> sc[8], mn[8] (see quant.h for the layout). */
static inline void unpack_scales_k4(const uint8_t *b, uint8_t sc[8], uint8_t mn[8]) {
    for (int j = 0; j < 4; j++) {
        sc[j] = b[j] & 63;
        mn[j] = b[j + 4] & 63;
        sc[j + 4] = (uint8_t)((b[j + 8] & 0xF) | ((b[j] >> 6) << 4));
        mn[j + 4] = (uint8_t)((b[j + 8] >> 4) | ((b[j + 4] >> 6) << 4));
    }
}

/* Sub-block scale pairs: for chunk c of 32 elements (sub-blocks 2c, 2c+1 of 16), 16 int16
 * lanes [s[2c] x8, s[2c+1] x8] from 16 int8 scales. */
static inline __m256i scale_pair_16(__m128i s8, int c) {
    const __m128i idx = _mm_or_si128(_mm_set1_epi8((char)(2 * c)),
                                     _mm_setr_epi8(0, 0, 0, 0, 0, 0, 0, 0, 1, 1, 1, 1, 1, 1, 1, 1));
    return _mm256_cvtepi8_epi16(_mm_shuffle_epi8(s8, idx));
}

/* sum_j mn[j] * (bsums[2j] + bsums[2j+1]) */
static inline int mins_dot_bsums8(const uint8_t mn[8], const int16_t *bsums) {
    uint64_t m8;
    memcpy(&m8, mn, 8);
    const __m128i m = _mm_cvtepu8_epi16(_mm_cvtsi64_si128((long long)m8));
    const __m256i m16 = _mm256_set_m128i(_mm_unpackhi_epi16(m, m), _mm_unpacklo_epi16(m, m));
    return hsum_epi32(_mm256_madd_epi16(loadu256(bsums), m16));
}

/* Q3_K scales: 16 6-bit values, offset 32 removed (layout in quant.h). */
static inline __m128i unpack_scales_q3(const uint8_t *s) {
    int8_t out[16];
    for (int j = 0; j < 16; j++) {
        const int lo = j < 8 ? (s[j] & 0xF) : (s[j - 8] >> 4);
        const int hi = (s[8 + j % 4] >> (2 * (j / 4))) & 3;
        out[j] = (int8_t)((lo | (hi << 4)) - 32);
    }
    return loadu128(out);
}

#endif
