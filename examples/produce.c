/*
 * produce: write order entries with stx_produce(), each with an
 * idempotency key, so that running it again (a retry after a timeout, a
 * restarted job) adds nothing twice.
 *
 *   produce --stream orders --count 10 --prefix order-
 *
 * Entry i (1..count) is {type: order.created, customer: c<i % 3>, amount:
 * <i * 100>} with the idempotency key "<prefix><i>".  The first run adds
 * every entry; a second identical run adds none and reports them as
 * duplicates (with the original ids).  The same key with other fields is
 * refused (STX_ECONFLICT).
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "common.h"
#include "streamtx.h"

static const char usage[] =
    "usage: produce --stream S [--count N] [--prefix P] [--url URL]\n"
    "\n"
    "Add N (default 10) order entries to stream S, entry i with the\n"
    "idempotency key P<i> (P default \"order-\"); print the id of each and\n"
    "a summary: \"produce: added N, duplicates N\".\n";

int main(int argc, char **argv)
{
    static const char *const own[] = {"--count", "--prefix", NULL};
    ex_args a;
    int status = ex_parse(&a, "produce", usage, NULL, own, argc, argv);
    if (status >= 0) return status;
    long count = a.own[0] ? atol(a.own[0]) : 10;
    const char *prefix = a.own[1] ? a.own[1] : "order-";

    stx_config *conf = stx_config_new();
    stx_client *c = NULL;
    char err[256] = "";
    int rc = conf ? stx_config_set(conf, "url", a.url, err, sizeof err) : STX_ENOMEM;
    if (rc == STX_OK) rc = stx_client_new(&c, conf);
    stx_config_free(conf); /* the client keeps what it needs */

    long added = 0, duplicates = 0;
    for (long i = 1; rc == STX_OK && i <= count; i++) {
        char customer[16], amount[24], key[256];
        snprintf(customer, sizeof customer, "c%ld", i % 3);
        snprintf(amount, sizeof amount, "%ld", i * 100);
        snprintf(key, sizeof key, "%s%ld", prefix, i);
        const stx_field fields[] = {
            {"type", 4, "order.created", 13},
            {"customer", 8, customer, strlen(customer)},
            {"amount", 6, amount, strlen(amount)},
        };
        stx_produce_opts opts = {.idempotency_key = key};
        stx_produce_result res;
        /* A timeout leaves the outcome unknown: producing again with the same
         * key is safe, it returns the first id if the entry landed. */
        rc = stx_produce(c, a.stream, fields, 3, &opts, &res);
        if (rc == STX_OK) {
            printf("%s %s%s\n", key, res.id, res.duplicate ? " (duplicate)" : "");
            res.duplicate ? duplicates++ : added++;
        }
    }
    if (rc != STX_OK) {
        fprintf(stderr, "produce: %s: %s\n", stx_strerror(rc), c ? stx_client_errmsg(c) : err);
        stx_client_free(c);
        return rc == STX_EINVAL ? 2 : 1;
    }
    printf("produce: added %ld, duplicates %ld\n", added, duplicates);
    stx_client_free(c);
    return 0;
}
