/* Partition leases (lua/lease.lua): who serves a partition of a group.
 * The lease only steers work; the processor's epoch fences writes. */
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "partition.h"
#include "reply.h"

static long long num(const redisReply *r, size_t i)
{
    const char *s = stx_client_elem_str(r, i);
    return s ? strtoll(s, NULL, 10) : 0;
}

int stx_lease_call(stx_client *c, const char *lease_key, const char *op, const char *token,
                   long long ttl_ms, uint64_t epoch, stx_lease_reply *out)
{
    memset(out, 0, sizeof *out);
    int rc = stx_client_ready(c);
    if (rc != STX_OK) return rc;
    char ep[24] = "";
    if (epoch) snprintf(ep, sizeof ep, "%" PRIu64, epoch);
    stx_client_eval_begin(c);
    stx_client_eval_str(c, lease_key);
    stx_client_eval_str(c, op);
    stx_client_eval_str(c, token);
    stx_argv_add_u64(&c->argv, (unsigned long long)ttl_ms);
    stx_client_eval_str(c, ep);
    redisReply *r;
    rc = stx_script_run(&c->scripts, &c->conn, STX_SCRIPT_LEASE, &c->argv, 1, &r);
    stx_argv_reset(&c->argv);
    if (rc != STX_OK) return stx_client_fail(c, rc, "lease %s: %s", op, c->conn.err);
    if (stx_client_reply_is(r, "OK")) {
        out->ok = 1;
        out->expires_ms = num(r, 1);
        out->now_ms = num(r, 2);
    } else if (stx_client_reply_is(r, "HELD")) {
        snprintf(out->owner, sizeof out->owner, "%s", stx_client_elem_str(r, 1) ? stx_client_elem_str(r, 1) : "");
        out->expires_ms = num(r, 2);
        out->now_ms = num(r, 3);
    } else if (stx_client_reply_is(r, "LOST")) {
        snprintf(out->owner, sizeof out->owner, "%s", stx_client_elem_str(r, 1) ? stx_client_elem_str(r, 1) : "");
        out->now_ms = num(r, 2);
    } else if (stx_client_reply_is(r, "WRONGTYPE")) {
        rc = stx_client_fail(c, STX_EWRONGTYPE, "lease: key '%.200s' is not a hash", lease_key);
    } else {
        rc = stx_client_fail(c, STX_EREDIS, "lease %s: unexpected reply from the script", op);
    }
    stx_reply_release(r);
    return rc;
}
