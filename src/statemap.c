/* The state hash table. */
#include "statemap.h"

#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

/* State keys come from stream entries, i.e. from whoever can XADD: with a
 * fixed hash they could pick keys that share one probe run and turn every
 * lookup into a scan.  SipHash-2-4 under a key drawn per map when its table
 * is first allocated makes colliding keys unpredictable (and different in
 * every map and every process). */
static uint32_t hash_bytes(const stx_statemap *m, const void *p, size_t n)
{
    return (uint32_t)stx_siphash24(m->seed, p, n);
}

/* Draw the map's key.  Should the kernel refuse random bytes (it does not
 * on any supported system), fall back to bits that still differ per map and
 * per run rather than failing the allocation. */
static void seed_map(stx_statemap *m)
{
    unsigned char b[16];
    if (stx_random_bytes(b, sizeof b) == 0) {
        uint64_t k0 = 0, k1 = 0;
        for (int i = 7; i >= 0; i--) {
            k0 = (k0 << 8) | b[i];
            k1 = (k1 << 8) | b[8 + i];
        }
        m->seed.k0 = k0;
        m->seed.k1 = k1;
        return;
    }
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    m->seed.k0 = (uint64_t)(uintptr_t)m ^ ((uint64_t)ts.tv_nsec << 20) ^ (uint64_t)ts.tv_sec;
    m->seed.k1 = ((uint64_t)getpid() << 32) ^ 0x9e3779b97f4a7c15ull ^ (uint64_t)ts.tv_nsec;
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
    size_t i = probe(m, key, key_len, hash_bytes(m, key, key_len));
    return m->slots[i].data ? &m->slots[i] : NULL;
}

static int resize(stx_statemap *m, size_t cap)
{
    stx_sm_entry *slots = calloc(cap, sizeof *slots);
    if (!slots) return -1;
    /* An empty table has no hashes to keep: the key is drawn here, once per
     * table, so maps that stay empty (most overlays) cost no system call. */
    if (m->cap == 0) seed_map(m);
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
    uint32_t h = hash_bytes(m, key, key_len);
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
    size_t i = probe(m, key, key_len, hash_bytes(m, key, key_len));
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
