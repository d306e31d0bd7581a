/* The state hash table against a plain array model: random puts, updates
 * and removals (removal is backward-shift deletion, the subtle part), then
 * every key looked up and the whole table walked. */
#include <criterion/criterion.h>
#include <stdio.h>
#include <string.h>

#include "statemap.h"

TestSuite(statemap);

#define KEYS 600

struct model {
    int present[KEYS];
    unsigned value[KEYS];
    size_t value_len[KEYS];
};

static unsigned long long next_rand(unsigned long long *s)
{
    *s ^= *s << 13;
    *s ^= *s >> 7;
    *s ^= *s << 17;
    return *s;
}

static void key_of(int k, char *buf, size_t *len)
{
    *len = (size_t)snprintf(buf, 16, "k%d", k);
}

static void check(const stx_statemap *m, const struct model *md)
{
    size_t count = 0;
    for (int k = 0; k < KEYS; k++) {
        char key[16];
        size_t klen;
        key_of(k, key, &klen);
        const stx_sm_entry *e = stx_sm_find(m, key, klen);
        cr_assert_eq(e != NULL, md->present[k], "key %d presence", k);
        if (!e) continue;
        count++;
        cr_assert_eq(e->value_len, md->value_len[k]);
        unsigned v;
        memcpy(&v, stx_sm_value(e), sizeof v);
        cr_assert_eq(v, md->value[k], "key %d value", k);
    }
    cr_assert_eq(m->count, count);
    size_t pos = 0, walked = 0;
    while (stx_sm_next(m, &pos)) walked++;
    cr_assert_eq(walked, count);
}

Test(statemap, random_operations_match_a_model)
{
    stx_statemap m;
    stx_sm_init(&m);
    struct model md;
    memset(&md, 0, sizeof md);
    unsigned long long seed = 0x2545F4914F6CDD1Dull;
    for (int round = 0; round < 40; round++) {
        for (int op = 0; op < 500; op++) {
            int k = (int)(next_rand(&seed) % KEYS);
            char key[16];
            size_t klen;
            key_of(k, key, &klen);
            if (next_rand(&seed) % 3 == 0) {
                stx_sm_remove(&m, key, klen);
                md.present[k] = 0;
            } else {
                /* Values of two sizes, so updates happen in place and not. */
                unsigned char val[8] = {0};
                unsigned v = (unsigned)next_rand(&seed);
                memcpy(val, &v, sizeof v);
                size_t vlen = next_rand(&seed) % 2 ? 4 : 8;
                cr_assert(stx_sm_put(&m, key, klen, val, vlen, 0));
                md.present[k] = 1;
                md.value[k] = v;
                md.value_len[k] = vlen;
            }
        }
        check(&m, &md);
    }
    stx_sm_clear(&m);
    memset(&md, 0, sizeof md);
    check(&m, &md);
    cr_assert_eq(stx_sm_reserve(&m, 10000), 0);
    cr_assert_geq(m.cap * 3, 10000u * 4);
    stx_sm_free(&m);
    stx_sm_free(&m); /* freeing twice is harmless: free() resets the table */
}

Test(statemap, empty_key_and_empty_value)
{
    stx_statemap m;
    stx_sm_init(&m);
    cr_assert_null(stx_sm_find(&m, "", 0));
    cr_assert(stx_sm_put(&m, "", 0, "", 0, STX_SM_DELETED));
    const stx_sm_entry *e = stx_sm_find(&m, "", 0);
    cr_assert(e);
    cr_assert_eq(e->flags, STX_SM_DELETED);
    cr_assert_eq(e->value_len, 0);
    stx_sm_remove(&m, "", 0);
    cr_assert_null(stx_sm_find(&m, "", 0));
    cr_assert_eq(m.count, 0);
    stx_sm_free(&m);
}
