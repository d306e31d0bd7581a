/* Bounded msgpack and checksum helpers shared by the state, the snapshot
 * and the decoders of untrusted bytes.  Public parts live in streamtx.h
 * (stx_mp_validate, stx_mp_read_i64, stx_mp_write_i64). */
#ifndef STX_CODEC_H
#define STX_CODEC_H

#include <stddef.h>
#include <stdint.h>

/* Nesting accepted in state values: msgpack-c 4.0 cannot unpack deeper
 * than 32 levels, so deeper values are refused as corrupt. */
#define STX_MP_MAX_DEPTH 32

/* Like stx_mp_validate() but also reports where decoding failed, for error
 * messages ("invalid msgpack at byte N: reason").  reason is static text. */
int stx_mp_check(const void *buf, size_t len, unsigned max_depth,
                 size_t *fail_offset, const char **reason);

/* Decode a msgpack str or bin; *s points into buf. STX_OK/STX_EDECODE/STX_ETYPE. */
int stx_mp_read_str(const void *buf, size_t len, const char **s, size_t *slen);

/* Encode s as a msgpack str into a malloc'd buffer (*out, *outlen); caller frees.
 * STX_OK or STX_ENOMEM. */
int stx_mp_write_str(const char *s, size_t len, unsigned char **out, size_t *outlen);

/* CRC-32 (IEEE 802.3, reflected: zlib's crc32_z()) of buf, continuing from crc
 * (start with 0). */
uint32_t stx_crc32(uint32_t crc, const void *buf, size_t len);

#endif
