/* The state hash table. */
#include "statemap.h"

#include <stdlib.h>
#include <string.h>

/* FNV-1a: short keys dominate and the table only needs a fair spread. */
static uint32_t hash_bytes(const void *p, size_t n)
{
    const unsigned char *s = p;
    uint32_t h = 2166136261u;
    for (size_t i = 0; i < n; i++) {
        h ^= s[i];
        h *= 16777619u;
    }
    return h;
}

void stx_sm_init(stx_statemap *m)
{
    memset(m, 0, sizeof *m);
}

void stx_sm_clear(stx_statemap *m)
{
    if (m->count == 0) return;
    for (size_t i = 0; i < m->cap; i++) {
        free(m->slots[i].data);
        m->slots[i].data = NULL;
    }
    m->count = 0;
}

void stx_sm_free(stx_statemap *m)
{
    stx_sm_clear(m);
    free(m->slots);
    stx_sm_init(m);
}

static size_t probe(const stx_statemap *m, const void *key, size_t key_len, uint32_t h)
{
    size_t mask = m->cap - 1;
    for (size_t i = h & mask;; i = (i + 1) & mask) {
        const stx_sm_entry *e = &m->slots[i];
        if (!e->data || (e->hash == h && e->key_len == key_len &&
                         memcmp(e->data, key, key_len) == 0))
            return i;
    }
}

stx_sm_entry *stx_sm_find(const stx_statemap *m, const void *key, size_t key_len)
{
    if (m->count == 0) return NULL;
    size_t i = probe(m, key, key_len, hash_bytes(key, key_len));
    return m->slots[i].data ? &m->slots[i] : NULL;
}

static int resize(stx_statemap *m, size_t cap)
{
    stx_sm_entry *slots = calloc(cap, sizeof *slots);
    if (!slots) return -1;
    for (size_t i = 0; i < m->cap; i++) {
        stx_sm_entry *e = &m->slots[i];
        if (!e->data) continue;
        size_t j = e->hash & (cap - 1);
        while (slots[j].data) j = (j + 1) & (cap - 1);
        slots[j] = *e;
    }
    free(m->slots);
    m->slots = slots;
    m->cap = cap;
    return 0;
}

int stx_sm_reserve(stx_statemap *m, size_t n)
{
    size_t cap = m->cap ? m->cap : 16;
    while (n * 4 > cap * 3) cap *= 2;
    return cap > m->cap ? resize(m, cap) : 0;
}

stx_sm_entry *stx_sm_put(stx_statemap *m, const void *key, size_t key_len, const void *value,
                         size_t value_len, uint32_t flags)
{
    if (key_len > UINT32_MAX || value_len > UINT32_MAX) return NULL;
    /* Keep the load at or below 3/4 so probes stay short. */
    if ((m->count + 1) * 4 > m->cap * 3 && resize(m, m->cap ? m->cap * 2 : 16) != 0)
        return NULL;
    uint32_t h = hash_bytes(key, key_len);
    stx_sm_entry *e = &m->slots[probe(m, key, key_len, h)];
    if (e->data && e->value_len == value_len) {
        /* Same key, same size (a counter, a stock level): no new block.
         * memmove, since value may point into this very entry. */
        if (value_len) memmove(e->data + key_len, value, value_len);
        e->flags = flags;
        return e;
    }
    char *data = malloc(key_len + value_len ? key_len + value_len : 1);
    if (!data) return NULL;
    memcpy(data, key, key_len);
    if (value_len) memcpy(data + key_len, value, value_len);
    if (e->data) free(e->data);
    else m->count++;
    e->data = data;
    e->key_len = (uint32_t)key_len;
    e->value_len = (uint32_t)value_len;
    e->hash = h;
    e->flags = flags;
    return e;
}

void stx_sm_remove(stx_statemap *m, const void *key, size_t key_len)
{
    if (m->count == 0) return;
    size_t mask = m->cap - 1;
    size_t i = probe(m, key, key_len, hash_bytes(key, key_len));
    if (!m->slots[i].data) return;
    free(m->slots[i].data);
    m->slots[i].data = NULL;
    m->count--;
    /* Backward-shift: move later entries of the run into the hole when their
     * home slot does not lie cyclically in (hole, j]. */
    for (size_t j = (i + 1) & mask; m->slots[j].data; j = (j + 1) & mask) {
        size_t home = m->slots[j].hash & mask;
        int in_between = i <= j ? (home > i && home <= j) : (home > i || home <= j);
        if (!in_between) {
            m->slots[i] = m->slots[j];
            m->slots[j].data = NULL;
            i = j;
        }
    }
}

stx_sm_entry *stx_sm_next(const stx_statemap *m, size_t *pos)
{
    for (; *pos < m->cap; (*pos)++)
        if (m->slots[*pos].data) return &m->slots[(*pos)++];
    return NULL;
}
