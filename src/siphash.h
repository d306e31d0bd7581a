/* SipHash-2-4 (Aumasson and Bernstein, 2012): a keyed 64-bit hash.  With a
 * secret random key an attacker who chooses the input bytes cannot predict
 * which inputs collide, so tables keyed by untrusted bytes (state keys come
 * from stream entries) cannot be flooded into long probe runs. */
#ifndef STX_SIPHASH_H
#define STX_SIPHASH_H

#include <stddef.h>
#include <stdint.h>

/* The 128-bit key as two 64-bit halves: k0 is the first 8 key bytes read
 * little-endian, k1 the last 8 (the reference's byte order). */
typedef struct stx_sipkey {
    uint64_t k0, k1;
} stx_sipkey;

uint64_t stx_siphash24(stx_sipkey key, const void *data, size_t len);

/* Fill buf with n bytes from the kernel's random source (getrandom(2), or
 * /dev/urandom when that is missing).  0, or -1 with errno set. */
int stx_random_bytes(void *buf, size_t n);

#endif
