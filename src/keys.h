/* Key derivation and stream ids. */
#ifndef STX_KEYS_H
#define STX_KEYS_H

#include <stddef.h>
#include <stdint.h>

/* A stream id as two unsigned 64-bit numbers. */
typedef struct stx_id {
    uint64_t ms;
    uint64_t seq;
} stx_id;

/* Longest text of an id: 20 + 1 + 20 digits, plus NUL. */
#define STX_ID_MAX 42

/* Parse "MS-SEQ" (both parts required, decimal, no sign, fit 64 bits).
 * Returns 0 or -1. */
int stx_id_parse(const char *s, size_t len, stx_id *out);
/* Compare as (ms, seq). */
int stx_id_cmp(stx_id a, stx_id b);
/* Format into buf (STX_ID_MAX bytes). */
void stx_id_format(stx_id id, char *buf);

/* Allocate the KIND key of (stream, group) (layout in keys.c); NULL when
 * out of memory or for arguments stx_key_name() refuses. */
char *stx_key_alloc(const char *stream, const char *group, const char *kind);

/* Allocate the dedup key of an idempotency key (any bytes) of stream:
 * "{T}:stx-idem:LEN:STREAM:KEY" (T as in keys.c), NUL-terminated, its length in *out_len.
 * NULL when out of memory or stream is empty. */
char *stx_key_alloc_idem(const char *stream, const void *idem, size_t idem_len,
                         size_t *out_len);

/* Allocate the relay's high-water mark hash of publish target stream:
 * "{T}:stx-relayed:LEN:STREAM" (keys.c), in the target's slot.  NULL when
 * out of memory or stream is empty. */
char *stx_key_alloc_relayed(const char *stream);

/* Redis Cluster's slot of a key (CRC16/XMODEM of its hash tag, mod 16384). */
unsigned stx_key_slot(const void *key, size_t len);

/* Length of a slot tag. */
#define STX_SLOT_TAG_LEN 4
/* A 4-byte tag ('@' to 'O' each, never a brace) whose CRC16 is in slot
 * (0..16383): "{" tag "}..." hashes to slot. */
void stx_slot_tag(unsigned slot, char out[STX_SLOT_TAG_LEN]);

#endif
