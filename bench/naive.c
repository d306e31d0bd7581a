/* The naive baseline: what a first attempt at "exactly once" with plain
 * Redis commands looks like.  One entry per XREAD COUNT 1, then a
 * MULTI / HSET state / SET offset / [XADD alert] / EXEC transaction, each
 * command a blocking redisCommand() call (its own round trip).  The state
 * lives in a local table as in the library; the offset is a string key.
 * No consumer group, no fencing, no checks. */
#include <stdio.h>
#include <string.h>

#include "bench.h"

static void expect_status(redisReply *r, const char *status, const char *what)
{
    if (r->type != REDIS_REPLY_STATUS || strcmp(r->str, status) != 0)
        bench_die("naive %s: unexpected reply", what);
    freeReplyObject(r);
}

void naive_process(redisContext *c, const char *stream, const char *state_key,
                   const char *offset_key, const char *alerts, long n, run_result *out)
{
    char last[64] = "0-0";
    skumap map;
    uint64_t t0;
    double cpu0, rcpu0;
    long done = 0;

    skumap_init(&map);
    memset(out, 0, sizeof *out);
    rcpu0 = bench_redis_cpu_s(c);
    cpu0 = bench_self_cpu_s();
    t0 = bench_now_us();
    while (done < n) {
        redisReply *r = bench_command(c, "XREAD COUNT 1 STREAMS %s %s", stream, last);
        const redisReply *entry;
        const char *id, *sku;
        size_t sku_len, id_len;
        int restock, crossing;
        int64_t qty, after;
        unsigned char value[9];
        size_t value_len;
        skumap_slot *s;
        redisReply *x;

        if (r->type != REDIS_REPLY_ARRAY || r->elements != 1 ||
            r->element[0]->elements != 2 || r->element[0]->element[1]->elements != 1)
            bench_die("naive: the stream ran dry after %ld of %ld messages", done, n);
        entry = r->element[0]->element[1]->element[0];
        if (inv_parse_raw(entry, &id, &sku, &sku_len, &restock, &qty) != 0)
            bench_die("naive: malformed entry");
        id_len = entry->element[0]->len;
        s = skumap_get(&map, sku, sku_len);
        crossing = inv_step(s->stock, restock, qty, &after);
        value_len = stx_mp_write_i64(value, after);

        expect_status(bench_command(c, "MULTI"), "OK", "MULTI");
        expect_status(bench_command(c, "HSET %s %b %b", state_key, sku, sku_len, value,
                                       value_len), "QUEUED", "HSET");
        expect_status(bench_command(c, "SET %s %b", offset_key, id, id_len), "QUEUED", "SET");
        if (crossing)
            expect_status(bench_command(c, "XADD %s * sku %b stock %lld threshold %d "
                                              "causation_id %b", alerts, sku, sku_len,
                                           (long long)after, INV_THRESHOLD, id, id_len),
                          "QUEUED", "XADD");
        x = bench_command(c, "EXEC");
        if (x->type != REDIS_REPLY_ARRAY || x->elements != (size_t)(crossing ? 3 : 2))
            bench_die("naive: EXEC did not run the transaction");
        freeReplyObject(x);

        /* Only after EXEC: the local state follows what Redis holds. */
        s->stock = after;
        if (id_len >= sizeof last)
            bench_die("naive: id too long");
        memcpy(last, id, id_len + 1);
        freeReplyObject(r);
        done++;
    }
    out->seconds = (double)(bench_now_us() - t0) / 1e6;
    out->client_cpu_s = bench_self_cpu_s() - cpu0;
    out->redis_cpu_s = bench_redis_cpu_s(c) - rcpu0;
    out->messages = done;
    skumap_free(&map);
}
