/* The inventory logic of examples/inventory.c: as a streamtx handler, and
 * as plain functions for the contenders that use hiredis directly. */
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "bench.h"

#define SHOWN(len) ((int)((len) > 64 ? 64 : (len)))

int inv_step(int64_t before, int restock, int64_t qty, int64_t *after)
{
    *after = restock ? before + qty : before - qty;
    return before > INV_THRESHOLD && *after <= INV_THRESHOLD;
}

int inv_parse_qty(const char *s, size_t len, int64_t *out)
{
    int64_t v = 0;

    if (s == NULL || len == 0 || len > 7)
        return -1;
    for (size_t i = 0; i < len; i++) {
        if (s[i] < '0' || s[i] > '9')
            return -1;
        v = v * 10 + (s[i] - '0');
    }
    if (v < 1 || v > INV_MAX_QTY)
        return -1;
    *out = v;
    return 0;
}

int inv_parse_raw(const redisReply *entry, const char **id, const char **sku, size_t *sku_len,
                  int *restock, int64_t *qty)
{
    const redisReply *f;
    const char *type = NULL, *q = NULL;
    size_t type_len = 0, q_len = 0;

    if (entry->type != REDIS_REPLY_ARRAY || entry->elements != 2 ||
        entry->element[0]->type != REDIS_REPLY_STRING)
        return -1;
    f = entry->element[1];
    if (f->type != REDIS_REPLY_ARRAY || f->elements % 2 != 0)
        return -1;
    *id = entry->element[0]->str;
    *sku = NULL;
    for (size_t i = 0; i < f->elements; i += 2) {
        const redisReply *n = f->element[i], *v = f->element[i + 1];

        if (n->type != REDIS_REPLY_STRING || v->type != REDIS_REPLY_STRING)
            return -1;
        if (n->len == 3 && memcmp(n->str, "sku", 3) == 0 && *sku == NULL)
            *sku = v->str, *sku_len = v->len;
        else if (n->len == 4 && memcmp(n->str, "type", 4) == 0 && type == NULL)
            type = v->str, type_len = v->len;
        else if (n->len == 3 && memcmp(n->str, "qty", 3) == 0 && q == NULL)
            q = v->str, q_len = v->len;
    }
    if (*sku == NULL || *sku_len == 0 || *sku_len >= WL_SKU_MAX)
        return -1;
    if (type == NULL || (type_len == 4 && memcmp(type, "sale", 4) == 0))
        *restock = 0;
    else if (type_len == 7 && memcmp(type, "restock", 7) == 0)
        *restock = 1;
    else
        return -1;
    return inv_parse_qty(q, q_len, qty);
}

static void note_produce_time(lat_recorder *lat, const stx_msg *msg)
{
    size_t len;
    const char *t = stx_msg_get(msg, "t", &len);

    if (t == NULL)
        return;
    if (lat->npending == lat->cap_pending) {
        size_t cap = lat->cap_pending ? 2 * lat->cap_pending : 1024;
        uint64_t *v = realloc(lat->pending_t, cap * sizeof *v);

        if (v == NULL)
            bench_die("out of memory");
        lat->pending_t = v;
        lat->cap_pending = cap;
    }
    lat->pending_t[lat->npending++] = strtoull(t, NULL, 10);
}

/* The handler of examples/inventory.c, with its threshold and initial
 * stock fixed; only the latency bookkeeping is added. */
int inv_handle(const stx_msg *msg, stx_txn *txn, void *user_data)
{
    const inv_ctx *ctx = user_data;
    const char *id = stx_msg_id(msg);
    size_t sku_len = 0, type_len = 0, qty_len = 0;
    const char *sku = stx_msg_get(msg, "sku", &sku_len);
    const char *type = stx_msg_get(msg, "type", &type_len);
    const char *qty_text = stx_msg_get(msg, "qty", &qty_len);
    int64_t qty, before, after;
    int restock;
    int rc;

    if (sku == NULL || sku_len == 0)
        return stx_txn_fail(txn, "entry %s: missing sku", id);
    if (type == NULL || (type_len == 4 && memcmp(type, "sale", 4) == 0))
        restock = 0;
    else if (type_len == 7 && memcmp(type, "restock", 7) == 0)
        restock = 1;
    else
        return stx_txn_fail(txn, "entry %s: unknown type \"%.*s\"", id, SHOWN(type_len), type);
    if (qty_text == NULL)
        return stx_txn_fail(txn, "entry %s: missing qty", id);
    if (inv_parse_qty(qty_text, qty_len, &qty) != 0)
        return stx_txn_fail(txn, "entry %s: bad qty \"%.*s\"", id, SHOWN(qty_len), qty_text);

    rc = stx_txn_get_i64(txn, sku, sku_len, &before);
    if (rc == STX_ENOTFOUND)
        before = INV_INITIAL;
    else if (rc != STX_OK)
        return stx_txn_fail(txn, "entry %s: stock of sku \"%.*s\": %s", id, SHOWN(sku_len), sku,
                            stx_strerror(rc));
    if (restock ? before > INT64_MAX - qty : before < INT64_MIN + qty)
        return stx_txn_fail(txn, "entry %s: stock of sku \"%.*s\" would overflow", id,
                            SHOWN(sku_len), sku);
    after = restock ? before + qty : before - qty;

    rc = stx_txn_put_i64(txn, sku, sku_len, after);
    if (rc != STX_OK)
        return stx_txn_fail(txn, "entry %s: store stock of sku \"%.*s\": %s", id, SHOWN(sku_len),
                            sku, stx_strerror(rc));

    if (before > INV_THRESHOLD && after <= INV_THRESHOLD) {
        char stock_text[24], threshold_text[24];
        const char *names[3] = {"sku", "stock", "threshold"};
        const size_t name_lens[3] = {3, 5, 9};
        const char *values[3];
        size_t value_lens[3];

        snprintf(stock_text, sizeof stock_text, "%" PRId64, after);
        snprintf(threshold_text, sizeof threshold_text, "%d", INV_THRESHOLD);
        values[0] = sku;
        value_lens[0] = sku_len;
        values[1] = stock_text;
        value_lens[1] = strlen(stock_text);
        values[2] = threshold_text;
        value_lens[2] = strlen(threshold_text);
        rc = stx_txn_publish(txn, ctx->alerts, 3, names, name_lens, values, value_lens);
        if (rc != STX_OK)
            return stx_txn_fail(txn, "entry %s: publish alert: %s", id, stx_strerror(rc));
    }
    if (ctx->forward != NULL) {
        /* Publish-heavy: every entry forwards its outcome, as an enrichment
         * or forwarding handler does (the library adds causation_id). */
        char stock_text[24];
        const char *names[2] = {"sku", "stock"};
        const size_t name_lens[2] = {3, 5};
        const char *values[2] = {sku, stock_text};
        size_t value_lens[2] = {sku_len, 0};

        value_lens[1] = (size_t)snprintf(stock_text, sizeof stock_text, "%" PRId64, after);
        rc = stx_txn_publish(txn, ctx->forward, 2, names, name_lens, values, value_lens);
        if (rc != STX_OK)
            return stx_txn_fail(txn, "entry %s: forward: %s", id, stx_strerror(rc));
    }
    if (ctx->lat != NULL)
        note_produce_time(ctx->lat, msg);
    return STX_HANDLER_OK;
}
