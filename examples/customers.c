/*
 * customers: a struct per key.  For each order.created entry (customer,
 * amount in cents) it keeps per customer {orders, spent, last_order}, stored as one
 * msgpack map: packed with msgpack-c into stx_txn_put(), read back with
 * msgpack_unpack_next() from the validated bytes stx_txn_get() returns.
 *
 *   customers run --stream orders --group customers
 *   customers report --stream orders --group customers
 */
#include <inttypes.h>
#include <msgpack.h>
#include <stdio.h>
#include <string.h>

#include "common.h"
#include "streamtx.h"

static const char usage[] =
    "usage: customers run --stream S --group G [options]\n"
    "       customers report --stream S --group G [--url URL]\n"
    "\n"
    "run: for each order.created entry {customer, amount (cents)} of stream S\n"
    "(group G; other types are acknowledged and skipped), keep\n"
    "the customer's orders, amount spent and last order id.  report: one line\n"
    "per customer: \"CUSTOMER orders=N spent=CENTS last=ID\".\n"
    "\n" EX_COMMON_HELP "\n"
    "Exit status: 0 stopped or idle, 1 error, 2 usage error, 3 fenced.\n";

struct customer {
    int64_t orders, spent;
    char last[48]; /* an entry id */
};

/* The stored map -> *c.  The bytes come from stx_txn_get() or the state
 * scan, both validated by the library (bounded lengths), so msgpack-c can
 * take them.  Fields it does not know are skipped: a newer writer may add some. */
static int unpack(const void *buf, size_t len, struct customer *c)
{
    msgpack_unpacked u;
    msgpack_unpacked_init(&u);
    int rc = msgpack_unpack_next(&u, buf, len, NULL) == MSGPACK_UNPACK_SUCCESS &&
                     u.data.type == MSGPACK_OBJECT_MAP ? STX_OK : STX_EDECODE;
    for (uint32_t i = 0; rc == STX_OK && i < u.data.via.map.size; i++) {
        const msgpack_object *k = &u.data.via.map.ptr[i].key, *v = &u.data.via.map.ptr[i].val;
        if (k->type != MSGPACK_OBJECT_STR) continue;
        const char *name = k->via.str.ptr;
        size_t n = k->via.str.size;
        if (n == 6 && memcmp(name, "orders", 6) == 0 && v->type == MSGPACK_OBJECT_POSITIVE_INTEGER)
            c->orders = (int64_t)v->via.u64;
        else if (n == 5 && memcmp(name, "spent", 5) == 0 && v->type == MSGPACK_OBJECT_POSITIVE_INTEGER)
            c->spent = (int64_t)v->via.u64;
        else if (n == 4 && memcmp(name, "last", 4) == 0 && v->type == MSGPACK_OBJECT_STR)
            snprintf(c->last, sizeof c->last, "%.*s", (int)v->via.str.size, v->via.str.ptr);
    }
    msgpack_unpacked_destroy(&u);
    return rc;
}

static void pack_str(msgpack_packer *pk, const char *s)
{
    msgpack_pack_str(pk, strlen(s));
    msgpack_pack_str_body(pk, s, strlen(s));
}

static int handle(const stx_msg *msg, stx_txn *txn, void *user_data)
{
    (void)user_data;
    size_t type_len, name_len, amount_len;
    const char *type = stx_msg_get(msg, "type", &type_len);
    if (!type || type_len != 13 || memcmp(type, "order.created", 13) != 0)
        return STX_HANDLER_OK; /* other events are not ours: acknowledged, nothing written */
    const char *name = stx_msg_get(msg, "customer", &name_len);
    const char *amount = stx_msg_get(msg, "amount", &amount_len);
    int64_t cents = amount && amount_len && amount_len <= 12 ? 0 : -1;
    for (size_t i = 0; cents >= 0 && i < amount_len; i++)
        cents = amount[i] >= '0' && amount[i] <= '9' ? cents * 10 + (amount[i] - '0') : -1;
    if (!name || !name_len || cents < 0) return stx_txn_fail(txn, "want customer and amount (cents)");

    struct customer c = {0, 0, ""};
    const void *old;
    size_t old_len;
    int rc = stx_txn_get(txn, name, name_len, &old, &old_len);
    if (rc == STX_OK) rc = unpack(old, old_len, &c);
    if (rc != STX_OK && rc != STX_ENOTFOUND) return rc;
    c.orders++;
    c.spent += cents;
    snprintf(c.last, sizeof c.last, "%s", stx_msg_id(msg));

    msgpack_sbuffer buf;
    msgpack_packer pk;
    msgpack_sbuffer_init(&buf);
    msgpack_packer_init(&pk, &buf, msgpack_sbuffer_write);
    msgpack_pack_map(&pk, 3);
    pack_str(&pk, "orders"), msgpack_pack_int64(&pk, c.orders);
    pack_str(&pk, "spent"), msgpack_pack_int64(&pk, c.spent);
    pack_str(&pk, "last"), pack_str(&pk, c.last);
    rc = stx_txn_put(txn, name, name_len, buf.data, buf.size); /* copies the bytes */
    msgpack_sbuffer_destroy(&buf);
    return rc;
}

static int print_customer(const void *value, size_t len)
{
    struct customer c = {0, 0, ""};
    int rc = unpack(value, len, &c);
    if (rc == STX_OK) printf("orders=%" PRId64 " spent=%" PRId64 " last=%s", c.orders, c.spent, c.last);
    return rc;
}

int main(int argc, char **argv)
{
    static const char *const commands[] = {"run", "report", NULL};
    ex_args a;
    int status = ex_parse(&a, "customers", usage, commands, NULL, argc, argv);
    if (status >= 0) return status;
    return a.command == 1 ? ex_report(&a, print_customer) : ex_run(&a, handle, NULL, NULL);
}
