/*
 * inventory: a stock level per SKU from a stream of sales and restocks, and
 * one alert downstream each time a SKU runs low.
 *
 *   inventory run --stream sales --group stock --alerts restock
 *   inventory report --stream sales --group stock
 *
 * Entry fields: type ("sale", the default, or "restock"), sku (any bytes),
 * qty (1 to 1000000).  The stock of a SKU is a state key holding a msgpack
 * integer.  The new stock, the alert, the acknowledgement and the offset
 * commit together: a crash or restart never counts a sale twice, loses
 * one, or sends an alert for a change that did not stick.
 */
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "common.h"
#include "streamtx.h"

#define MAX_QTY 1000000

static const char usage[] =
    "usage: inventory run --stream S --group G --alerts A [options]\n"
    "       inventory report --stream S --group G [--url URL]\n"
    "\n"
    "run: apply sales and restocks from stream S (group G) to a stock per SKU;\n"
    "publish an alert to stream A each time an entry takes a SKU's stock from\n"
    "above the threshold to at or below it.  report: \"SKU STOCK\" lines.\n"
    "\n" EX_COMMON_HELP
    "  --alerts A         stream that receives the alerts (run only, required)\n"
    "  --threshold N      alert when stock falls to N or below (default 10)\n"
    "  --initial N        stock of a SKU never seen before (default 100)\n"
    "\n"
    "Exit status: 0 stopped or idle, 1 error, 2 usage error, 3 fenced.\n";

struct rules {
    const char *alerts;
    int64_t threshold, initial;
};

/* Digits only, 1..MAX_QTY: nothing strtol would skip or wrap. */
static int64_t parse_qty(const char *s, size_t len)
{
    int64_t v = 0;
    for (size_t i = 0; s && i < len && len <= 7; i++) {
        if (s[i] < '0' || s[i] > '9') return 0;
        v = v * 10 + (s[i] - '0');
    }
    return v <= MAX_QTY ? v : 0;
}

/*
 * The handler may run more than once for an entry (after a crash or a
 * failed commit): everything it does goes through txn.  stx_txn_fail()
 * writes nothing and moves the entry to the dead-letter stream at once,
 * with the reason; a library error passed on as it is (`return rc`) is
 * retried when it is transient (STX_ENOMEM) and dead-letters otherwise.
 */
static int handle(const stx_msg *msg, stx_txn *txn, void *user_data)
{
    const struct rules *r = user_data;
    size_t sku_len = 0, type_len = 0, qty_len = 0;
    const char *sku = stx_msg_get(msg, "sku", &sku_len);
    const char *type = stx_msg_get(msg, "type", &type_len);
    const char *qty_text = stx_msg_get(msg, "qty", &qty_len);
    int64_t qty = parse_qty(qty_text, qty_len), before, after;
    int restock = type && type_len == 7 && memcmp(type, "restock", 7) == 0;

    if (!sku || sku_len == 0) return stx_txn_fail(txn, "no sku");
    if (type && !restock && !(type_len == 4 && memcmp(type, "sale", 4) == 0))
        return stx_txn_fail(txn, "unknown type \"%.*s\"", EX_SHOWN(type_len), type);
    if (qty < 1) return stx_txn_fail(txn, "bad qty (want 1 to %d)", MAX_QTY);

    int rc = stx_txn_get_i64(txn, sku, sku_len, &before);
    if (rc == STX_ENOTFOUND) before = r->initial;
    else if (rc != STX_OK) return rc;
    /* Stock may go below zero: the stream records sales that happened. */
    if (restock ? before > INT64_MAX - qty : before < INT64_MIN + qty)
        return stx_txn_fail(txn, "stock would overflow");
    after = restock ? before + qty : before - qty;
    if ((rc = stx_txn_put_i64(txn, sku, sku_len, after)) != STX_OK) return rc;

    /* One alert per crossing, not per sale below the threshold.  The library
     * adds causation_id (this entry's id), tracing the alert to its sale. */
    if (before > r->threshold && after <= r->threshold) {
        char stock[24], threshold[24];
        snprintf(stock, sizeof stock, "%" PRId64, after);
        snprintf(threshold, sizeof threshold, "%" PRId64, r->threshold);
        const char *names[] = {"sku", "stock", "threshold"};
        const char *values[] = {sku, stock, threshold};
        const size_t name_lens[] = {3, 5, 9}, value_lens[] = {sku_len, strlen(stock), strlen(threshold)};
        return stx_txn_publish(txn, r->alerts, 3, names, name_lens, values, value_lens);
    }
    return STX_HANDLER_OK;
}

int main(int argc, char **argv)
{
    static const char *const commands[] = {"run", "report", NULL},
                             *const own[] = {"--alerts", "--threshold", "--initial", NULL};
    ex_args a;
    int status = ex_parse(&a, "inventory", usage, commands, own, argc, argv);
    if (status >= 0) return status;
    if (a.command == 1) return ex_report(&a, ex_print_i64);
    struct rules r = {a.own[0], a.own[1] ? atoll(a.own[1]) : 10, a.own[2] ? atoll(a.own[2]) : 100};
    /* Alerts read back as input would all fail as entries without a qty. */
    if (!r.alerts || !*r.alerts || strcmp(r.alerts, a.stream) == 0) {
        fprintf(stderr, "inventory: --alerts is required and must differ from --stream\n");
        return 2;
    }
    return ex_run(&a, handle, &r, NULL);
}
