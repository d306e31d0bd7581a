/* stx_pending_get(): the pending list of a consumer group (XPENDING). */
#include <stdlib.h>
#include <string.h>

#include "reply.h"
#include "client.h"

#define DEFAULT_LIMIT 100

static int is_str(const redisReply *r)
{
    return r && (r->type == REDIS_REPLY_STRING || r->type == REDIS_REPLY_STATUS);
}

/* XPENDING gives counts as integers, and in the summary's consumer list
 * as strings. */
static int as_ll(const redisReply *r, long long *out)
{
    if (r->type == REDIS_REPLY_INTEGER) {
        *out = r->integer;
        return 0;
    }
    if (!is_str(r) || r->len == 0) return -1;
    char *end;
    *out = strtoll(r->str, &end, 10);
    return end == r->str + r->len ? 0 : -1;
}

static int copy_id(const redisReply *r, char out[48])
{
    if (r->type == REDIS_REPLY_NIL) {
        out[0] = '\0';
        return 0;
    }
    if (!is_str(r) || r->len >= 48) return -1;
    memcpy(out, r->str, r->len + 1);
    return 0;
}

static char *copy_bytes(const redisReply *r)
{
    char *p = malloc(r->len + 1);
    if (p) memcpy(p, r->str, r->len + 1);
    return p;
}

/* XPENDING S G: [count, min, max, [[consumer, "n"], ...] or nil].
 * STX_OK, STX_EREDIS (shape) or STX_ENOMEM. */
static int take_summary(stx_pending *p, const redisReply *r)
{
    if (r->type != REDIS_REPLY_ARRAY || r->elements != 4 ||
        r->element[0]->type != REDIS_REPLY_INTEGER || copy_id(r->element[1], p->min_id) ||
        copy_id(r->element[2], p->max_id))
        return STX_EREDIS;
    p->count = r->element[0]->integer;
    const redisReply *cs = r->element[3];
    if (cs->type == REDIS_REPLY_NIL) return STX_OK;
    if (cs->type != REDIS_REPLY_ARRAY) return STX_EREDIS;
    if (cs->elements && !(p->consumers = calloc(cs->elements, sizeof *p->consumers)))
        return STX_ENOMEM;
    for (size_t i = 0; i < cs->elements; i++) {
        const redisReply *e = cs->element[i];
        stx_pending_consumer *pc = &p->consumers[i];
        if (e->type != REDIS_REPLY_ARRAY || e->elements != 2 || !is_str(e->element[0]) ||
            as_ll(e->element[1], &pc->pending))
            return STX_EREDIS;
        if (!(pc->name = copy_bytes(e->element[0]))) return STX_ENOMEM;
        pc->name_len = e->element[0]->len;
        p->nconsumers++;
    }
    return STX_OK;
}

/* XPENDING S G - + N: [[id, consumer, idle, deliveries], ...]. */
static int take_entries(stx_pending *p, const redisReply *r)
{
    if (r->type != REDIS_REPLY_ARRAY) return STX_EREDIS;
    if (r->elements && !(p->entries = calloc(r->elements, sizeof *p->entries)))
        return STX_ENOMEM;
    for (size_t i = 0; i < r->elements; i++) {
        const redisReply *e = r->element[i];
        stx_pending_entry *pe = &p->entries[i];
        if (e->type != REDIS_REPLY_ARRAY || e->elements != 4 || !is_str(e->element[0]) ||
            !is_str(e->element[1]) || copy_id(e->element[0], pe->id) ||
            as_ll(e->element[2], &pe->idle_ms) || as_ll(e->element[3], &pe->deliveries))
            return STX_EREDIS;
        if (!(pe->consumer = copy_bytes(e->element[1]))) return STX_ENOMEM;
        pe->consumer_len = e->element[1]->len;
        p->nentries++;
    }
    return STX_OK;
}

int stx_pending_get(stx_client *c, const char *stream, const char *group, size_t limit,
                    stx_pending **out)
{
    if (out) *out = NULL;
    if (!c || !stream || !group || !out) return STX_EINVAL;
    int rc = stx_client_ready(c);
    if (rc != STX_OK) return rc;
    if (!*stream || !*group)
        return stx_client_fail(c, STX_EINVAL, "pending: empty stream or group name");
    stx_pending *p = calloc(1, sizeof *p);
    if (!p) return stx_client_fail(c, STX_ENOMEM, "pending: out of memory");

    char n[24];
    snprintf(n, sizeof n, "%zu", limit ? limit : DEFAULT_LIMIT);
    const char *a1[] = {"XPENDING", stream, group};
    const char *a2[] = {"XPENDING", stream, group, "-", "+", n};
    redisReply *sum = NULL, *ent = NULL;
    rc = stx_client_command(c, "pending (XPENDING)", &sum, 3, a1, NULL);
    if (rc == STX_OK) rc = stx_client_command(c, "pending (XPENDING)", &ent, 6, a2, NULL);
    if (rc == STX_OK) rc = take_summary(p, sum);
    if (rc == STX_OK) rc = take_entries(p, ent);
    stx_reply_release(sum);
    stx_reply_release(ent);
    if (rc != STX_OK) {
        stx_pending_free(p);
        if (rc == STX_EREDIS && !c->errmsg[0])
            return stx_client_fail(c, rc, "pending: unexpected XPENDING reply");
        if (rc == STX_ENOMEM) return stx_client_fail(c, rc, "pending: out of memory");
        return rc;
    }
    *out = p;
    return STX_OK;
}

void stx_pending_free(stx_pending *p)
{
    if (!p) return;
    for (size_t i = 0; i < p->nconsumers; i++) free(p->consumers[i].name);
    for (size_t i = 0; i < p->nentries; i++) free(p->entries[i].consumer);
    free(p->consumers);
    free(p->entries);
    free(p);
}
