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

/* Q4_K/Q5_K packed 6-bit scales and mins (layout in quant.h) -> 8 scale bytes in *sc and
 * 8 min bytes in *mn (byte j = sub-block j), with 32-bit word operations. */
static inline void unpack_scales_k4(const uint8_t *b, uint64_t *sc, uint64_t *mn) {
    uint32_t u0, u1, u2;
    memcpy(&u0, b, 4);
    memcpy(&u1, b + 4, 4);
    memcpy(&u2, b + 8, 4);
    const uint32_t s_lo = u0 & 0x3f3f3f3fu, m_lo = u1 & 0x3f3f3f3fu;
    const uint32_t s_hi = (u2 & 0x0f0f0f0fu) | ((u0 >> 2) & 0x30303030u);
    const uint32_t m_hi = ((u2 >> 4) & 0x0f0f0f0fu) | ((u1 >> 2) & 0x30303030u);
    *sc = s_lo | (uint64_t)s_hi << 32;
    *mn = m_lo | (uint64_t)m_hi << 32;
}

/* int16 lanes = byte j of SC (SC = the 8 bytes repeated in every 64-bit lane) */
static inline __m256i bcast_byte16(__m256i SC, int j) {
    return _mm256_shuffle_epi8(SC, _mm256_set1_epi16((short)(0x8000 | j)));
}

/* Sub-block scale pairs: for chunk c of 32 elements (sub-blocks 2c, 2c+1 of 16), 16 int16
 * lanes [s[2c] x8, s[2c+1] x8] from 16 int8 scales. */
static inline __m256i scale_pair_16(__m128i s8, int c) {
    const __m128i idx = _mm_or_si128(_mm_set1_epi8((char)(2 * c)),
                                     _mm_setr_epi8(0, 0, 0, 0, 0, 0, 0, 0, 1, 1, 1, 1, 1, 1, 1, 1));
    return _mm256_cvtepi8_epi16(_mm_shuffle_epi8(s8, idx));
}

/* sum_j mn_j * (bsums[2j] + bsums[2j+1]), mn_j = byte j of m8 */
static inline int mins_dot_bsums8(uint64_t m8, const int16_t *bsums) {
    const __m128i m = _mm_cvtepu8_epi16(_mm_cvtsi64_si128((long long)m8));
    const __m256i m16 = _mm256_set_m128i(_mm_unpackhi_epi16(m, m), _mm_unpacklo_epi16(m, m));
    return hsum_epi32(_mm256_madd_epi16(loadu256(bsums), m16));
}

/* Q3_K scales: 16 6-bit values, offset 32 removed (layout in quant.h), with 32-bit word
 * operations: word k holds scales 4k..4k+3 = low nibbles | (bits 2k..2k+1 of s[8..11]) << 4. */
static inline __m128i unpack_scales_q3(const uint8_t *s) {
    uint32_t u0, u1, u2;
    memcpy(&u0, s, 4);
    memcpy(&u1, s + 4, 4);
    memcpy(&u2, s + 8, 4);
    const uint32_t m4 = 0x0f0f0f0fu, m2 = 0x03030303u;
    const __m128i v = _mm_setr_epi32((int)((u0 & m4) | ((u2 & m2) << 4)),
                                     (int)((u1 & m4) | (((u2 >> 2) & m2) << 4)),
                                     (int)(((u0 >> 4) & m4) | (((u2 >> 4) & m2) << 4)),
                                     (int)(((u1 >> 4) & m4) | (((u2 >> 6) & m2) << 4)));
    return _mm_sub_epi8(v, _mm_set1_epi8(32));
}

#endif
