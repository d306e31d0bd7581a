/* The limit: the Redis work of a streamtx commit without the library.
 *
 * Per batch, one XREADGROUP ... COUNT batch ... > and one EVALSHA of the
 * script below, which acknowledges the entries, stores the offset, writes
 * the changed SKUs (msgpack integers, into the same state hash) and adds
 * the alerts.  The inventory logic runs client-side on a local table.  The
 * read of the next batch goes out together with the EVALSHA of the current
 * one, so each batch costs one round trip instead of two.  That is correct
 * because Redis runs one connection's commands in order (the read happens
 * after the commit) and because the local table already holds the batch's
 * changes (a real program would roll them back if the EVALSHA failed; here
 * a failure ends the bench).
 *
 * Nothing is checked in Redis: no epoch (fencing), no key types, no
 * "already committed" test.  That is what makes it a limit. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <msgpack.h>

#include "bench.h"

static const char limit_lua[] =
    "-- KEYS: stream, meta hash, state hash, alert stream, forward stream\n"
    "-- ARGV: group, n, id1..idn, n_puts, (key, value)..., n_alerts,\n"
    "--       (sku, stock, threshold, causation_id)..., n_fwd,\n"
    "--       (sku, stock, causation_id)...\n"
    "local n = tonumber(ARGV[2])\n"
    "redis.call('XACK', KEYS[1], ARGV[1], unpack(ARGV, 3, 2 + n))\n"
    "redis.call('HSET', KEYS[2], 'offset', ARGV[2 + n])\n"
    "local pos = 3 + n\n"
    "local puts = tonumber(ARGV[pos])\n"
    "if puts > 0 then\n"
    "  redis.call('HSET', KEYS[3], unpack(ARGV, pos + 1, pos + 2 * puts))\n"
    "end\n"
    "pos = pos + 1 + 2 * puts\n"
    "for i = 1, tonumber(ARGV[pos]) do\n"
    "  local a = pos + 1 + 4 * (i - 1)\n"
    "  redis.call('XADD', KEYS[4], '*', 'sku', ARGV[a], 'stock', ARGV[a + 1],\n"
    "             'threshold', ARGV[a + 2], 'causation_id', ARGV[a + 3])\n"
    "end\n"
    "pos = pos + 1 + 4 * tonumber(ARGV[pos])\n"
    "for i = 1, tonumber(ARGV[pos]) do\n"
    "  local a = pos + 1 + 3 * (i - 1)\n"
    "  redis.call('XADD', KEYS[5], '*', 'sku', ARGV[a], 'stock', ARGV[a + 1],\n"
    "             'causation_id', ARGV[a + 2])\n"
    "end\n"
    "return n\n";

static void append_read(redisContext *c, const char *stream, const char *group, long batch)
{
    char count[24];
    const char *argv[] = {"XREADGROUP", "GROUP", group, "limit", "COUNT", count,
                          "STREAMS", stream, ">"};

    snprintf(count, sizeof count, "%ld", batch);
    if (redisAppendCommandArgv(c, 9, argv, NULL) != REDIS_OK)
        bench_die("XREADGROUP: %s", c->errstr);
}

/* The arguments of one EVALSHA, built in place. */
typedef struct args {
    const char **v;
    size_t *len;
    size_t n;
} args;

static void arg(args *a, const char *s, size_t len)
{
    a->v[a->n] = s;
    a->len[a->n++] = len;
}

/* Send what hiredis holds without waiting for a reply. */
static void flush(redisContext *c)
{
    int done = 0;
    while (!done)
        if (redisBufferWrite(c, &done) != REDIS_OK)
            bench_die("write: %s", c->errstr);
}

void limit_process(redisContext *c, const char *stream, const char *group, const char *alerts,
                   const char *forward, long batch, long n, int overlap, run_result *out)
{
    char meta[512], state[512], sha[41];
    size_t nb = (size_t)batch;
    args a;
    const char **sku_of = malloc(nb * sizeof *sku_of);     /* changed SKUs of the batch */
    size_t *sku_len_of = malloc(nb * sizeof *sku_len_of);
    size_t *value_at = malloc(nb * sizeof *value_at);
    const char **alert_v = malloc(4 * nb * sizeof *alert_v); /* sku, stock, threshold, id */
    size_t *alert_len = malloc(4 * nb * sizeof *alert_len);
    char(*stock_text)[24] = malloc(nb * sizeof *stock_text);
    const char **fwd_v = malloc(3 * nb * sizeof *fwd_v); /* sku, stock, id */
    size_t *fwd_len = malloc(3 * nb * sizeof *fwd_len);
    char(*fwd_text)[24] = malloc(nb * sizeof *fwd_text);
    msgpack_sbuffer sbuf;
    msgpack_packer pk;
    skumap map;
    redisReply *r;
    uint64_t batch_no = 0, t0;
    double cpu0, rcpu0;
    long done = 0, requested = 0;
    long expected[2] = {0, 0};  /* entries of the commits in flight, oldest first */
    int evals = 0;              /* commits in flight */

    a.v = malloc((13 + 10 * nb) * sizeof *a.v);
    a.len = malloc((13 + 10 * nb) * sizeof *a.len);
    if (a.v == NULL || a.len == NULL || sku_of == NULL || sku_len_of == NULL ||
        value_at == NULL || alert_v == NULL || alert_len == NULL || stock_text == NULL ||
        fwd_v == NULL || fwd_len == NULL || fwd_text == NULL)
        bench_die("out of memory");
    bench_key(meta, sizeof meta, stream, group, "meta");
    bench_key(state, sizeof state, stream, group, "state");
    r = bench_command(c, "SCRIPT LOAD %s", limit_lua);
    if (r->type != REDIS_REPLY_STRING || r->len != 40)
        bench_die("SCRIPT LOAD: unexpected reply");
    memcpy(sha, r->str, 41);
    freeReplyObject(r);
    msgpack_sbuffer_init(&sbuf);
    msgpack_packer_init(&pk, &sbuf, msgpack_sbuffer_write);
    skumap_init(&map);

    memset(out, 0, sizeof *out);
    rcpu0 = bench_redis_cpu_s(c);
    cpu0 = bench_self_cpu_s();
    t0 = bench_now_us();
    /* Plain: each round trip carries commit k and the read of batch k+1,
     * and the client waits for both.  Overlap: the read runs one batch
     * further ahead (commit k goes out with the read of batch k+2), so the
     * client handles batch k+1 while Redis runs commit k. */
    append_read(c, stream, group, batch);
    requested += batch;
    if (overlap && requested < n) {
        append_read(c, stream, group, batch);
        requested += batch;
    }
    for (;;) {
        const redisReply *entries;
        char n_text[24], puts_text[24], alerts_text[24], fwd_count_text[24];
        size_t nchanged = 0, nalerts = 0, nfwd = 0, n_at, puts_at, alerts_at, fwd_at;

        /* The commit sent before the read whose reply comes next. */
        while (evals > (done >= n ? 0 : overlap ? 1 : 0)) {
            r = bench_get_reply(c);
            if (r->type != REDIS_REPLY_INTEGER || r->integer != expected[0])
                bench_die("limit script: unexpected reply");
            freeReplyObject(r);
            expected[0] = expected[1];
            evals--;
        }
        if (done >= n)
            break;
        r = bench_get_reply(c);
        if (r->type != REDIS_REPLY_ARRAY || r->elements != 1 ||
            r->element[0]->type != REDIS_REPLY_ARRAY || r->element[0]->elements != 2 ||
            r->element[0]->element[1]->type != REDIS_REPLY_ARRAY ||
            r->element[0]->element[1]->elements == 0)
            bench_die("limit: the stream ran dry after %ld of %ld messages", done, n);
        entries = r->element[0]->element[1];
        if (entries->elements > nb)
            bench_die("limit: XREADGROUP returned more than COUNT");
        batch_no++;

        a.n = 0;
        arg(&a, "EVALSHA", 7);
        arg(&a, sha, 40);
        arg(&a, "5", 1);
        arg(&a, stream, strlen(stream));
        arg(&a, meta, strlen(meta));
        arg(&a, state, strlen(state));
        arg(&a, alerts, strlen(alerts));
        arg(&a, forward ? forward : alerts, strlen(forward ? forward : alerts));
        arg(&a, group, strlen(group));
        n_at = a.n;
        arg(&a, NULL, 0); /* n, filled in below */
        for (size_t i = 0; i < entries->elements; i++) {
            const char *id, *sku;
            size_t sku_len;
            int restock;
            int64_t qty, after;
            skumap_slot *s;

            if (inv_parse_raw(entries->element[i], &id, &sku, &sku_len, &restock, &qty) != 0)
                bench_die("limit: malformed entry");
            arg(&a, id, entries->element[i]->element[0]->len);
            s = skumap_get(&map, sku, sku_len);
            if (inv_step(s->stock, restock, qty, &after)) {
                size_t k = 4 * nalerts;

                snprintf(stock_text[nalerts], sizeof stock_text[nalerts], "%lld",
                         (long long)after);
                alert_v[k] = sku, alert_len[k] = sku_len;
                alert_v[k + 1] = stock_text[nalerts];
                alert_len[k + 1] = strlen(stock_text[nalerts]);
                alert_v[k + 2] = "10", alert_len[k + 2] = 2;
                alert_v[k + 3] = id, alert_len[k + 3] = entries->element[i]->element[0]->len;
                nalerts++;
            }
            s->stock = after;
            if (forward != NULL) {
                size_t k = 3 * nfwd;

                fwd_v[k] = sku, fwd_len[k] = sku_len;
                fwd_len[k + 1] = (size_t)snprintf(fwd_text[nfwd], sizeof fwd_text[nfwd], "%lld",
                                                  (long long)after);
                fwd_v[k + 1] = fwd_text[nfwd];
                fwd_v[k + 2] = id, fwd_len[k + 2] = entries->element[i]->element[0]->len;
                nfwd++;
            }
            if (s->mark != batch_no) {
                /* Slots move when the table grows, so keep the name (it
                 * lives in the reply) and look the final value up below. */
                s->mark = batch_no;
                sku_of[nchanged] = sku;
                sku_len_of[nchanged++] = sku_len;
            }
        }
        msgpack_sbuffer_clear(&sbuf);
        for (size_t i = 0; i < nchanged; i++) {
            value_at[i] = sbuf.size;
            msgpack_pack_int64(&pk, skumap_get(&map, sku_of[i], sku_len_of[i])->stock);
        }
        puts_at = a.n;
        arg(&a, NULL, 0);
        for (size_t i = 0; i < nchanged; i++) {
            size_t end = i + 1 < nchanged ? value_at[i + 1] : sbuf.size;

            arg(&a, sku_of[i], sku_len_of[i]);
            arg(&a, sbuf.data + value_at[i], end - value_at[i]);
        }
        alerts_at = a.n;
        arg(&a, NULL, 0);
        for (size_t i = 0; i < 4 * nalerts; i++)
            arg(&a, alert_v[i], alert_len[i]);
        fwd_at = a.n;
        arg(&a, NULL, 0);
        for (size_t i = 0; i < 3 * nfwd; i++)
            arg(&a, fwd_v[i], fwd_len[i]);
        a.len[fwd_at] = (size_t)snprintf(fwd_count_text, sizeof fwd_count_text, "%zu", nfwd);
        a.v[fwd_at] = fwd_count_text;
        a.len[n_at] = (size_t)snprintf(n_text, sizeof n_text, "%zu", entries->elements);
        a.v[n_at] = n_text;
        a.len[puts_at] = (size_t)snprintf(puts_text, sizeof puts_text, "%zu", nchanged);
        a.v[puts_at] = puts_text;
        a.len[alerts_at] = (size_t)snprintf(alerts_text, sizeof alerts_text, "%zu", nalerts);
        a.v[alerts_at] = alerts_text;
        if (redisAppendCommandArgv(c, (int)a.n, a.v, a.len) != REDIS_OK)
            bench_die("EVALSHA: %s", c->errstr);
        expected[evals++] = (long)entries->elements;
        done += (long)entries->elements;
        freeReplyObject(r); /* hiredis copied the arguments already */
        if (requested < n) {
            append_read(c, stream, group, batch);
            requested += batch;
        }
        if (overlap)
            flush(c);
    }
    out->seconds = (double)(bench_now_us() - t0) / 1e6;
    out->client_cpu_s = bench_self_cpu_s() - cpu0;
    out->redis_cpu_s = bench_redis_cpu_s(c) - rcpu0;
    out->messages = done;

    skumap_free(&map);
    msgpack_sbuffer_destroy(&sbuf);
    free(a.v);
    free(a.len);
    free(sku_of);
    free(sku_len_of);
    free(value_at);
    free(alert_v);
    free(alert_len);
    free(stock_text);
    free(fwd_v);
    free(fwd_len);
    free(fwd_text);
}
