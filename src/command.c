/* stx_client_call(): one raw Redis command on a client, and the reply view;
 * stx_client_node_of(): where a key lives on a cluster.
 *
 * stx_reply is hiredis's redisReply seen through an opaque type: the reply
 * tree hiredis built is handed out as it is, without a copy, and every
 * accessor converts the pointer back.  Keeping the type opaque leaves room
 * for RESP3 types later without breaking callers. */
#include <limits.h>
#include <stdlib.h>
#include <string.h>

#include "reply.h"
#include "client.h"
#include "cluster.h"
#include "keys.h"

static const redisReply *rep(const stx_reply *r)
{
    return (const redisReply *)(const void *)r;
}

int stx_client_call(stx_client *c, size_t argc, const char *const *argv, const size_t *lens,
                    stx_reply **out)
{
    if (out) *out = NULL;
    if (!c || !argv || !out) return STX_EINVAL;
    c->errmsg[0] = '\0';
    if (argc == 0 || argc > INT_MAX)
        return stx_client_fail(c, STX_EINVAL, "call: %s", argc ? "too many arguments"
                                                               : "no command");
    for (size_t i = 0; i < argc; i++)
        if (!argv[i] && !(lens && lens[i] == 0))
            return stx_client_fail(c, STX_EINVAL, "call: argument %zu is NULL", i);
    /* hiredis reads argv[i] even for a length of 0: give it "". */
    const char **v = malloc(argc * sizeof *v);
    if (!v) return stx_client_fail(c, STX_ENOMEM, "call: out of memory");
    for (size_t i = 0; i < argc; i++) v[i] = argv[i] ? argv[i] : "";
    int rc = stx_client_ready(c);
    redisReply *r = NULL;
    if (rc == STX_OK) {
        rc = stx_conn_command_raw(&c->conn, &r, (int)argc, v, lens);
        if (rc != STX_OK) stx_client_fail(c, rc, "call: %s", c->conn.err);
    }
    free(v);
    if (rc != STX_OK) return rc;
    *out = (stx_reply *)(void *)r;
    return STX_OK;
}

void stx_reply_free(stx_reply *r)
{
    if (r) stx_reply_release((redisReply *)(void *)r);
}

stx_reply_type stx_reply_type_of(const stx_reply *r)
{
    if (!r) return STX_REPLY_NIL;
    switch (rep(r)->type) {
    case REDIS_REPLY_STRING: return STX_REPLY_STRING;
    case REDIS_REPLY_ARRAY: return STX_REPLY_ARRAY;
    case REDIS_REPLY_INTEGER: return STX_REPLY_INTEGER;
    case REDIS_REPLY_STATUS: return STX_REPLY_STATUS;
    case REDIS_REPLY_ERROR: return STX_REPLY_ERROR;
    default: return STX_REPLY_NIL;
    }
}

const char *stx_reply_string(const stx_reply *r, size_t *len)
{
    if (len) *len = 0;
    if (!r) return NULL;
    const redisReply *x = rep(r);
    if (x->type != REDIS_REPLY_STRING && x->type != REDIS_REPLY_STATUS &&
        x->type != REDIS_REPLY_ERROR)
        return NULL;
    if (len) *len = x->len;
    return x->str ? x->str : "";
}

long long stx_reply_integer(const stx_reply *r)
{
    return r && rep(r)->type == REDIS_REPLY_INTEGER ? rep(r)->integer : 0;
}

size_t stx_reply_count(const stx_reply *r)
{
    return r && rep(r)->type == REDIS_REPLY_ARRAY ? rep(r)->elements : 0;
}

const stx_reply *stx_reply_at(const stx_reply *r, size_t i)
{
    if (!r || rep(r)->type != REDIS_REPLY_ARRAY || i >= rep(r)->elements) return NULL;
    return (const stx_reply *)(const void *)rep(r)->element[i];
}

int stx_client_node_of(stx_client *c, const char *key, size_t key_len, char *buf, size_t cap)
{
    if (!c || !key || !buf || cap == 0) return STX_EINVAL;
    int rc = stx_client_ready(c);
    if (rc != STX_OK) return rc;
    if (!stx_cluster_on(&c->conn)) return STX_ESTATE;
    char where[300];
    rc = stx_cluster_slot_where(&c->conn, stx_key_slot(key, key_len), where, sizeof where);
    if (rc != STX_OK)
        return stx_client_fail(c, rc, "no master known for the slot of '%.*s'",
                               (int)(key_len > 200 ? 200 : key_len), key);
    size_t n = strlen(where);
    if (n >= cap) return stx_client_fail(c, STX_ELIMIT, "node address longer than the buffer");
    memcpy(buf, where, n + 1);
    return (int)n;
}
