/* Client-side stock per SKU for the raw-hiredis contenders: open
 * addressing, linear probing, FNV-1a (the library's state map uses the
 * same scheme, so neither side gets a cheaper table). */
#include <stdlib.h>
#include <string.h>

#include "bench.h"

static uint32_t hash_bytes(const char *s, size_t n)
{
    uint32_t h = 2166136261u;

    for (size_t i = 0; i < n; i++) {
        h ^= (unsigned char)s[i];
        h *= 16777619u;
    }
    return h;
}

void skumap_init(skumap *m)
{
    memset(m, 0, sizeof *m);
}

void skumap_free(skumap *m)
{
    free(m->slots);
    memset(m, 0, sizeof *m);
}

static skumap_slot *probe(skumap_slot *slots, size_t cap, const char *key, size_t len)
{
    size_t mask = cap - 1;

    for (size_t i = hash_bytes(key, len) & mask;; i = (i + 1) & mask) {
        skumap_slot *s = &slots[i];

        if (s->len == 0 || (s->len == len && memcmp(s->key, key, len) == 0))
            return s;
    }
}

static void grow(skumap *m)
{
    size_t cap = m->cap ? 2 * m->cap : 1024;
    skumap_slot *slots = calloc(cap, sizeof *slots);

    if (slots == NULL)
        bench_die("out of memory");
    for (size_t i = 0; i < m->cap; i++)
        if (m->slots[i].len != 0)
            *probe(slots, cap, m->slots[i].key, m->slots[i].len) = m->slots[i];
    free(m->slots);
    m->slots = slots;
    m->cap = cap;
}

skumap_slot *skumap_get(skumap *m, const char *key, size_t len)
{
    skumap_slot *s;

    if (len == 0 || len >= WL_SKU_MAX)
        bench_die("skumap: key of %zu bytes", len);
    if ((m->count + 1) * 4 > m->cap * 3)
        grow(m);
    s = probe(m->slots, m->cap, key, len);
    if (s->len == 0) {
        memcpy(s->key, key, len);
        s->len = (uint32_t)len;
        s->stock = INV_INITIAL;
        s->mark = 0;
        m->count++;
    }
    return s;
}
