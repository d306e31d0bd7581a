/* Byte-keyed hash table holding state values (encoded msgpack), used for
 * the committed state and for the overlays of a message and of a batch.
 * Open addressing with linear probing and backward-shift deletion: one
 * allocation per entry (key and value together), no tombstones.  Keys are
 * hashed with SipHash-2-4 under a random key of each table (see statemap.c). */
#ifndef STX_STATEMAP_H
#define STX_STATEMAP_H

#include <stddef.h>
#include <stdint.h>

#include "siphash.h"

/* Entry flags. */
#define STX_SM_DELETED 1u  /* overlay: the key is deleted */
#define STX_SM_CORRUPT 2u  /* the value did not validate as msgpack */

typedef struct stx_sm_entry {
    char *data;            /* key bytes, then value bytes; NULL = empty slot */
    uint32_t key_len;
    uint32_t value_len;
    uint32_t hash;
    uint32_t flags;
} stx_sm_entry;

typedef struct stx_statemap {
    stx_sm_entry *slots;
    size_t cap;            /* power of two, or 0 */
    size_t count;
    stx_sipkey seed;       /* hash key, drawn when the table is first allocated */
} stx_statemap;

void stx_sm_init(stx_statemap *m);
void stx_sm_free(stx_statemap *m);
void stx_sm_clear(stx_statemap *m);   /* free the entries, keep the table */

/* Make room for n entries without growing (e.g. before a bulk load). */
int stx_sm_reserve(stx_statemap *m, size_t n);

stx_sm_entry *stx_sm_find(const stx_statemap *m, const void *key, size_t key_len);
/* Insert or replace (copies both).  Returns the entry or NULL on ENOMEM. */
stx_sm_entry *stx_sm_put(stx_statemap *m, const void *key, size_t key_len, const void *value,
                         size_t value_len, uint32_t flags);
/* Remove key if present. */
void stx_sm_remove(stx_statemap *m, const void *key, size_t key_len);

static inline const char *stx_sm_key(const stx_sm_entry *e) { return e->data; }
static inline const char *stx_sm_value(const stx_sm_entry *e) { return e->data + e->key_len; }

/* Iterate: for (size_t i = 0; (e = stx_sm_next(m, &i)); ) ... */
stx_sm_entry *stx_sm_next(const stx_statemap *m, size_t *pos);

#endif
