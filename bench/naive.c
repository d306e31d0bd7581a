/* The naive baseline: the design a user would write instead of the
 * library, and the one streamtx grew from.  Entries come from XREADGROUP
 * (COUNT 128); each entry is then committed on its own with one pipelined
 * transaction, MULTI / XACK / SET state / SET offset / [XADD] / EXEC, sent
 * in one write and waited for (one round trip per entry).  The state is
 * the whole table serialized each time (a msgpack map of every SKU the run
 * has seen, one string key), as a program that keeps its state as one
 * document does.  No fencing and no checks. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <msgpack.h>

#include "bench.h"

static void pack_state(msgpack_packer *pk, msgpack_sbuffer *sb, const skumap *map)
{
    msgpack_sbuffer_clear(sb);
    msgpack_pack_map(pk, (uint32_t)map->count);
    for (size_t i = 0; i < map->cap; i++) {
        const skumap_slot *s = &map->slots[i];

        if (s->len == 0)
            continue;
        msgpack_pack_str(pk, s->len);
        msgpack_pack_str_body(pk, s->key, s->len);
        msgpack_pack_int64(pk, s->stock);
    }
}

void naive_process(redisContext *c, const char *stream, const char *group, const char *state_key,
                   const char *offset_key, const char *alerts, long n, run_result *out)
{
    msgpack_sbuffer sb;
    msgpack_packer pk;
    skumap map;
    uint64_t t0;
    double cpu0, rcpu0;
    long done = 0;

    skumap_init(&map);
    msgpack_sbuffer_init(&sb);
    msgpack_packer_init(&pk, &sb, msgpack_sbuffer_write);
    memset(out, 0, sizeof *out);
    rcpu0 = bench_redis_cpu_s(c);
    cpu0 = bench_self_cpu_s();
    t0 = bench_now_us();
    while (done < n) {
        redisReply *r = bench_command(c, "XREADGROUP GROUP %s naive COUNT 128 STREAMS %s >",
                                      group, stream);
        const redisReply *entries;

        if (r->type != REDIS_REPLY_ARRAY || r->elements != 1 ||
            r->element[0]->elements != 2 || r->element[0]->element[1]->elements == 0)
            bench_die("naive: the stream ran dry after %ld of %ld messages", done, n);
        entries = r->element[0]->element[1];
        for (size_t k = 0; k < entries->elements && done < n; k++) {
            const redisReply *entry = entries->element[k];
            const char *id, *sku;
            size_t sku_len, id_len;
            int restock, crossing, queued;
            int64_t qty, after;
            skumap_slot *s;
            char stock_text[24];
            int64_t before;

            if (inv_parse_raw(entry, &id, &sku, &sku_len, &restock, &qty) != 0)
                bench_die("naive: malformed entry");
            id_len = entry->element[0]->len;
            s = skumap_get(&map, sku, sku_len);
            before = s->stock;
            crossing = inv_step(before, restock, qty, &after);
            s->stock = after; /* serialized with this entry applied */
            pack_state(&pk, &sb, &map);
            snprintf(stock_text, sizeof stock_text, "%lld", (long long)after);

            redisAppendCommand(c, "MULTI");
            redisAppendCommand(c, "XACK %s %s %b", stream, group, id, id_len);
            redisAppendCommand(c, "SET %s %b", state_key, sb.data, sb.size);
            redisAppendCommand(c, "SET %s %b", offset_key, id, id_len);
            queued = 3;
            if (crossing) {
                redisAppendCommand(c, "XADD %s * sku %b stock %s threshold %d causation_id %b",
                                   alerts, sku, sku_len, stock_text, INV_THRESHOLD, id, id_len);
                queued++;
            }
            redisAppendCommand(c, "EXEC");
            for (int i = 0; i < 1 + queued; i++)
                freeReplyObject(bench_get_reply(c)); /* +OK, then +QUEUED each */
            redisReply *x = bench_get_reply(c);
            if (x->type != REDIS_REPLY_ARRAY || x->elements != (size_t)queued)
                bench_die("naive: EXEC did not run the transaction");
            freeReplyObject(x);
            done++;
        }
        freeReplyObject(r);
    }
    out->seconds = (double)(bench_now_us() - t0) / 1e6;
    out->client_cpu_s = bench_self_cpu_s() - cpu0;
    out->redis_cpu_s = bench_redis_cpu_s(c) - rcpu0;
    out->messages = done;
    msgpack_sbuffer_destroy(&sb);
    skumap_free(&map);
}
