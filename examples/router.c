/*
 * router: forward each entry of a stream to a stream chosen by its "type"
 * field, adding a per-route sequence number.
 *
 *   router run --stream incoming --group router --prefix events:
 *
 * {type: order, id: 7} is copied to "events:order" as {type: order, id: 7,
 * routed_by: router, route_seq: N}, where N counts the entries of that
 * route; entries without a usable type go to "events:unrouted".  The
 * publish, the counter (state key "seq:<target>") and the acknowledgement
 * commit together: each entry appears downstream exactly once, and
 * route_seq has no gaps and no repeats, so a reader can check it missed
 * nothing.
 */
#include <inttypes.h>
#include <stdio.h>
#include <string.h>

#include "common.h"
#include "streamtx.h"

#define MAX_PREFIX 200
#define MAX_TYPE 64
#define MAX_COPIED 256

static const char usage[] =
    "usage: router run --stream S --group G [--prefix P] [options]\n"
    "\n"
    "Forward each entry of stream S (group G) to the stream P<type> (P default\n"
    "\"events:\"), with its fields plus routed_by=G and route_seq=N.  Entries\n"
    "without a plain type (1 to 64 of A-Z a-z 0-9 _ - . :) go to Punrouted.\n"
    "On Redis Cluster give S a hash tag and start P with it: --stream '{shop}:in'\n"
    "--prefix '{shop}:events:'.\n"
    "\n" EX_COMMON_HELP
    "  --prefix P         prefix of the target streams\n"
    "\n"
    "Exit status: 0 stopped or idle, 1 error, 2 usage error, 3 fenced.\n";

struct route {
    const char *prefix, *group;
};

/* The type becomes part of a key name: plain names only. */
static int is_plain(const char *s, size_t len)
{
    if (!s || len == 0 || len > MAX_TYPE) return 0;
    for (size_t i = 0; i < len; i++)
        if (!strchr("abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789_-.:", s[i]))
            return 0;
    return 1;
}

/* The sequence number comes from the state, not a C counter: the handler
 * may run again for the same entry, and must not take a second number. */
static int handle(const stx_msg *msg, stx_txn *txn, void *user_data)
{
    const struct route *r = user_data;
    size_t type_len = 0, n = 0;
    const char *type = stx_msg_get(msg, "type", &type_len);
    char target[MAX_PREFIX + MAX_TYPE + 1], seq_key[sizeof target + 4], seq_text[24];
    if (is_plain(type, type_len))
        snprintf(target, sizeof target, "%s%.*s", r->prefix, (int)type_len, type);
    else
        snprintf(target, sizeof target, "%sunrouted", r->prefix);
    if (strcmp(target, stx_msg_stream(msg)) == 0) /* routing into itself would loop */
        snprintf(target, sizeof target, "%sunrouted", r->prefix);

    int64_t seq;
    snprintf(seq_key, sizeof seq_key, "seq:%s", target);
    int rc = stx_txn_incr(txn, seq_key, strlen(seq_key), 1, &seq);
    if (rc != STX_OK) return rc;
    snprintf(seq_text, sizeof seq_text, "%" PRId64, seq);

    /* The copy: the entry's fields (bytes, with their lengths) minus those
     * the router writes itself, plus two.  causation_id is left to the
     * library, which sets it to the routed entry. */
    const char *names[MAX_COPIED + 2], *values[MAX_COPIED + 2];
    size_t name_lens[MAX_COPIED + 2], value_lens[MAX_COPIED + 2];
    size_t nfields = stx_msg_field_count(msg);
    if (nfields > MAX_COPIED) return stx_txn_fail(txn, "more than %d fields", MAX_COPIED);
    for (size_t i = 0; i < nfields; i++) {
        if (stx_msg_field(msg, i, &names[n], &name_lens[n], &values[n], &value_lens[n]) != STX_OK)
            continue;
        static const char *const replaced[] = {"routed_by", "route_seq", "causation_id"};
        int keep = 1;
        for (size_t k = 0; k < 3; k++)
            keep &= !(name_lens[n] == strlen(replaced[k]) && memcmp(names[n], replaced[k], name_lens[n]) == 0);
        n += (size_t)keep;
    }
    names[n] = "routed_by", name_lens[n] = 9, values[n] = r->group, value_lens[n++] = strlen(r->group);
    names[n] = "route_seq", name_lens[n] = 9, values[n] = seq_text, value_lens[n++] = strlen(seq_text);
    return stx_txn_publish(txn, target, n, names, name_lens, values, value_lens);
}

int main(int argc, char **argv)
{
    static const char *const commands[] = {"run", NULL}, *const own[] = {"--prefix", NULL};
    ex_args a;
    int status = ex_parse(&a, "router", usage, commands, own, argc, argv);
    if (status >= 0) return status;
    struct route r = {a.own[0] ? a.own[0] : "events:", a.group};
    if (strlen(r.prefix) > MAX_PREFIX) {
        fprintf(stderr, "router: --prefix is longer than %d bytes\n", MAX_PREFIX);
        return 2;
    }
    return ex_run(&a, handle, &r, NULL);
}
