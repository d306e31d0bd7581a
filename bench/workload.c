/* The inventory workload: a deterministic stream of sales and restocks, the
 * model of what processing it exactly once must leave behind, and the
 * pipelined loaders of streams and state. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "bench.h"

#define PIPELINE 1000        /* XADDs in flight while preloading a stream */
#define STATE_PAGE 1000      /* fields per HSET when preloading state */
#define STATE_WINDOW 16      /* HSETs in flight */

/* splitmix64: small, fast, and the same on every machine. */
static uint64_t next_u64(wl_gen *g)
{
    uint64_t z = (g->s += 0x9e3779b97f4a7c15ull);

    z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ull;
    z = (z ^ (z >> 27)) * 0x94d049bb133111ebull;
    return z ^ (z >> 31);
}

void wl_gen_init(wl_gen *g, uint32_t nskus, uint64_t seed)
{
    g->s = seed;
    g->nskus = nskus;
}

/* 85% sales of 1..9, 15% restocks of 10..50: stock drifts up slowly while
 * wandering, so SKUs keep crossing the threshold now and then. */
void wl_next(wl_gen *g, wl_entry *e)
{
    uint64_t r = next_u64(g);

    e->sku = (uint32_t)((r >> 32) % g->nskus);
    e->restock = (r & 0xffff) < (uint64_t)(0.15 * 65536);
    e->qty = e->restock ? 10 + (int64_t)((r >> 16) % 41) : 1 + (int64_t)((r >> 16) % 9);
}

size_t wl_sku_name(char out[WL_SKU_MAX], uint32_t sku)
{
    return (size_t)snprintf(out, WL_SKU_MAX, "sku%07u", sku);
}

void wl_model_init(wl_model *m, uint32_t nskus)
{
    m->nskus = nskus;
    m->crossings = 0;
    m->present_count = 0;
    m->stock = malloc(nskus * sizeof *m->stock);
    m->present = calloc(nskus, 1);
    if (m->stock == NULL || m->present == NULL)
        bench_die("out of memory");
    for (uint32_t i = 0; i < nskus; i++)
        m->stock[i] = INV_INITIAL;
}

void wl_model_free(wl_model *m)
{
    free(m->stock);
    free(m->present);
    memset(m, 0, sizeof *m);
}

void wl_model_apply(wl_model *m, const wl_entry *e)
{
    int64_t after;

    if (e->sku >= m->nskus)
        bench_die("model: sku %u out of range", e->sku);
    if (inv_step(m->stock[e->sku], e->restock, e->qty, &after))
        m->crossings++;
    m->stock[e->sku] = after;
    if (!m->present[e->sku]) {
        m->present[e->sku] = 1;
        m->present_count++;
    }
}

void wl_preload_stream(redisContext *c, const char *stream, wl_gen *g, long n, wl_model *m)
{
    long sent = 0;

    while (sent < n) {
        long k = n - sent < PIPELINE ? n - sent : PIPELINE;

        for (long i = 0; i < k; i++) {
            wl_entry e;
            char sku[WL_SKU_MAX], qty[24];
            const char *argv[9] = {"XADD", stream, "*", "type", NULL, "sku", sku, "qty", qty};
            size_t lens[9];

            wl_next(g, &e);
            if (m != NULL)
                wl_model_apply(m, &e);
            wl_sku_name(sku, e.sku);
            snprintf(qty, sizeof qty, "%lld", (long long)e.qty);
            argv[4] = e.restock ? "restock" : "sale";
            for (int j = 0; j < 9; j++)
                lens[j] = strlen(argv[j]);
            if (redisAppendCommandArgv(c, 9, argv, lens) != REDIS_OK)
                bench_die("XADD %s: %s", stream, c->errstr);
        }
        for (long i = 0; i < k; i++)
            freeReplyObject(bench_get_reply(c));
        sent += k;
    }
}

void wl_preload_state(redisContext *c, const char *state_key, uint32_t nkeys, wl_model *m)
{
    const char **argv = malloc((2 + 2 * STATE_PAGE) * sizeof *argv);
    size_t *lens = malloc((2 + 2 * STATE_PAGE) * sizeof *lens);
    char(*names)[WL_SKU_MAX] = malloc(STATE_PAGE * sizeof *names);
    unsigned char value[9];
    size_t value_len = stx_mp_write_i64(value, INV_INITIAL);
    uint32_t next = 0;

    if (argv == NULL || lens == NULL || names == NULL)
        bench_die("out of memory");
    argv[0] = "HSET", lens[0] = 4;
    argv[1] = state_key, lens[1] = strlen(state_key);
    while (next < nkeys) {
        int inflight = 0;

        for (; inflight < STATE_WINDOW && next < nkeys; inflight++) {
            int argc = 2;

            /* hiredis copies the arguments into its output buffer at once,
             * so the names can be reused for the next command. */
            for (int i = 0; i < STATE_PAGE && next < nkeys; i++, next++) {
                lens[argc] = wl_sku_name(names[i], next);
                argv[argc++] = names[i];
                lens[argc] = value_len;
                argv[argc++] = (const char *)value;
                if (m != NULL && next < m->nskus && !m->present[next]) {
                    m->present[next] = 1;
                    m->present_count++;
                }
            }
            if (redisAppendCommandArgv(c, argc, argv, lens) != REDIS_OK)
                bench_die("HSET %s: %s", state_key, c->errstr);
        }
        for (int i = 0; i < inflight; i++)
            freeReplyObject(bench_get_reply(c));
    }
    free(argv);
    free(lens);
    free(names);
}

static int sku_index(const char *s, size_t len, uint32_t *out)
{
    uint32_t v = 0;

    if (len != 10 || memcmp(s, "sku", 3) != 0)
        return -1;
    for (size_t i = 3; i < len; i++) {
        if (s[i] < '0' || s[i] > '9')
            return -1;
        v = v * 10 + (uint32_t)(s[i] - '0');
    }
    *out = v;
    return 0;
}

int wl_verify(redisContext *c, const char *state_key, const char *alerts, const wl_model *m,
              int full, char *why, size_t cap)
{
    long long alerts_len = bench_integer(c, "XLEN %s", alerts);
    long long hlen = bench_integer(c, "HLEN %s", state_key);

    if ((uint64_t)alerts_len != m->crossings) {
        snprintf(why, cap, "%lld alerts in %s, expected %llu", alerts_len, alerts,
                 (unsigned long long)m->crossings);
        return -1;
    }
    if ((uint64_t)hlen != m->present_count) {
        snprintf(why, cap, "%lld state keys, expected %llu", hlen,
                 (unsigned long long)m->present_count);
        return -1;
    }
    if (full) {
        redisReply *r = bench_command(c, "HGETALL %s", state_key);

        for (size_t i = 0; i + 1 < r->elements; i += 2) {
            const redisReply *k = r->element[i], *v = r->element[i + 1];
            uint32_t sku;
            int64_t stock;

            if (sku_index(k->str, k->len, &sku) != 0 || sku >= m->nskus) {
                snprintf(why, cap, "unexpected state key %.*s", (int)k->len, k->str);
                freeReplyObject(r);
                return -1;
            }
            if (stx_mp_read_i64(v->str, v->len, &stock) != STX_OK || stock != m->stock[sku]) {
                snprintf(why, cap, "stock of %.*s is %lld, expected %lld", (int)k->len, k->str,
                         (long long)stock, (long long)m->stock[sku]);
                freeReplyObject(r);
                return -1;
            }
        }
        freeReplyObject(r);
    }
    return 0;
}
