/* SHA-256 (FIPS 180-4), streaming. Used to identify model files in benchmark records. */
#ifndef ND_SHA256_H
#define ND_SHA256_H

#include <stddef.h>
#include <stdint.h>

typedef struct nd_sha256 {
    uint32_t h[8];
    uint64_t len;      /* bytes hashed so far */
    uint8_t buf[64];
    size_t n;          /* bytes in buf */
} nd_sha256;

void nd_sha256_init(nd_sha256 *s);
void nd_sha256_update(nd_sha256 *s, const void *data, size_t n);
void nd_sha256_final(nd_sha256 *s, uint8_t out[32]);
/* Lower-case hex of the digest into hex[65]. */
void nd_sha256_hex(const uint8_t d[32], char hex[65]);

#endif
