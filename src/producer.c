/* Producing: XADD with optional idempotency keys, one script per call. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "reply.h"
#include "client.h"
#include "keys.h"
#include "script_limits.h"
#include "text.h"

#define DEFAULT_DEDUP_TTL_MS (24LL * 3600 * 1000)
/* produce.lua builds each XADD with unpack() (see script_limits.h). */
#define MAX_FIELDS STX_MAX_PUBLISH_PAIRS

/* A MINID argument: "MS" or "MS-SEQ", as XADD accepts it. */
static int minid_ok(const char *s)
{
    char buf[STX_ID_MAX + 2];
    size_t n = strlen(s);
    stx_id id;
    if (memchr(s, '-', n)) return stx_id_parse(s, n, &id) == 0;
    if (n > 20) return 0;
    memcpy(buf, s, n);
    memcpy(buf + n, "-0", 2);
    return stx_id_parse(buf, n + 2, &id) == 0;
}

static int check_args(stx_client *c, const char *stream, const stx_produce_msg *msgs, size_t n,
                      const stx_produce_opts *o)
{
    if (!stream || !*stream) return stx_client_fail(c, STX_EINVAL, "produce: empty stream name");
    if (!msgs) return stx_client_fail(c, STX_EINVAL, "produce: no messages");
    for (size_t i = 0; i < n; i++) {
        const stx_produce_msg *m = &msgs[i];
        if (m->nfields == 0 || !m->fields)
            return stx_client_fail(c, STX_EINVAL, "produce: message %zu has no fields", i);
        if (m->nfields > MAX_FIELDS)
            return stx_client_fail(c, STX_EINVAL, "produce: message %zu has %zu fields (at most %d)",
                                   i, m->nfields, MAX_FIELDS);
        for (size_t j = 0; j < m->nfields; j++) {
            const stx_field *f = &m->fields[j];
            if ((!f->name && f->name_len) || (!f->value && f->value_len))
                return stx_client_fail(c, STX_EINVAL, "produce: field %zu of message %zu is NULL",
                                       j, i);
        }
        if (m->idempotency_key && !*m->idempotency_key)
            return stx_client_fail(c, STX_EINVAL,
                                   "produce: message %zu has an empty idempotency key", i);
    }
    if (o->dedup_ttl_ms < 0 || o->maxlen < 0)
        return stx_client_fail(c, STX_EINVAL, "produce: negative dedup_ttl_ms or maxlen");
    if (o->maxlen > 0 && o->minid)
        return stx_client_fail(c, STX_EINVAL,
                               "produce: maxlen and minid cannot be combined (XADD takes one)");
    if (o->minid && !minid_ok(o->minid))
        return stx_client_fail(c, STX_EINVAL, "produce: minid '%.100s' is not a stream id",
                               o->minid);
    return STX_OK;
}

static int conflict(stx_client *c, const redisReply *r, const stx_produce_msg *msgs, size_t n)
{
    const redisReply *mi = r->elements >= 4 ? r->element[1] : NULL;
    const char *stored = stx_client_elem_str(r, 3);
    if (!mi || mi->type != REDIS_REPLY_INTEGER || mi->integer < 1 || (size_t)mi->integer > n ||
        !msgs[mi->integer - 1].idempotency_key)
        return stx_client_fail(c, STX_EREDIS, "produce: malformed CONFLICT reply");
    size_t i = (size_t)mi->integer - 1;
    char key[256];
    stx_printable(msgs[i].idempotency_key, strlen(msgs[i].idempotency_key), key,
                         sizeof key);
    if (stored && *stored)
        return stx_client_fail(c, STX_ECONFLICT,
                               "idempotency key '%s' (message %zu) was used for entry %s with "
                               "different fields; nothing was added",
                               key, i, stored);
    return stx_client_fail(c, STX_ECONFLICT,
                           "idempotency key '%s' (message %zu) is used twice in the batch with "
                           "different fields; nothing was added",
                           key, i);
}

static int parse_reply(stx_client *c, const redisReply *r, const stx_produce_msg *msgs, size_t n,
                       stx_produce_result *results)
{
    if (stx_client_reply_is(r, "CONFLICT")) return conflict(c, r, msgs, n);
    if (stx_client_reply_is(r, "WRONGTYPE")) {
        const char *k = stx_client_elem_str(r, 1), *t = stx_client_elem_str(r, 2);
        char key[256];
        stx_printable(k ? k : "?", k ? strlen(k) : 1, key, sizeof key);
        return stx_client_fail(c, STX_EWRONGTYPE, "produce: key '%s' holds a %s", key,
                               t ? t : "?");
    }
    if (stx_client_reply_is(r, "BADARGS")) {
        const char *m = stx_client_elem_str(r, 1);
        return stx_client_fail(c, STX_EINVAL, "produce: %s", m ? m : "bad arguments");
    }
    if (!stx_client_reply_is(r, "OK") || r->elements != 1 + 2 * n)
        return stx_client_fail(c, STX_EREDIS, "produce: unexpected reply from the script");
    for (size_t i = 0; i < n; i++) {
        const redisReply *id = r->element[1 + 2 * i], *dup = r->element[2 + 2 * i];
        if (id->type != REDIS_REPLY_STRING || id->len >= sizeof results[i].id ||
            dup->type != REDIS_REPLY_INTEGER)
            return stx_client_fail(c, STX_EREDIS, "produce: malformed reply for message %zu", i);
        memcpy(results[i].id, id->str, id->len + 1);
        results[i].duplicate = dup->integer != 0;
    }
    return STX_OK;
}

static int produce(stx_client *c, const char *stream, const stx_produce_msg *msgs, size_t n,
                   const stx_produce_opts *opts, stx_produce_result *results)
{
    static const stx_produce_opts none;
    if (!c) return STX_EINVAL;
    c->errmsg[0] = '\0';
    const stx_produce_opts *o = opts ? opts : &none;
    int rc = check_args(c, stream, msgs, n, o);
    if (rc != STX_OK) return rc;
    if (!results) return stx_client_fail(c, STX_EINVAL, "produce: no result slots");
    memset(results, 0, n * sizeof *results);
    if (n == 0) return STX_OK;
    if ((rc = stx_client_ready(c)) != STX_OK) return rc;

    char **keys = calloc(n, sizeof *keys);
    size_t *key_lens = calloc(n, sizeof *key_lens);
    if (!keys || !key_lens) {
        free(keys);
        free(key_lens);
        return stx_client_fail(c, STX_ENOMEM, "produce: out of memory");
    }
    size_t nkeys = 0;
    rc = STX_OK;
    for (size_t i = 0; i < n && rc == STX_OK; i++) {
        const char *k = msgs[i].idempotency_key;
        if (k && !(keys[i] = stx_key_alloc_idem(stream, k, strlen(k), &key_lens[i])))
            rc = stx_client_fail(c, STX_ENOMEM, "produce: out of memory");
    }
    if (rc == STX_OK) {
        stx_client_eval_begin(c);
        stx_client_eval_str(c, stream);
        for (size_t i = 0; i < n; i++)
            if (keys[i]) stx_argv_add_ref(&c->argv, keys[i], key_lens[i]);
        long long ttl = o->dedup_ttl_ms > 0 ? o->dedup_ttl_ms : DEFAULT_DEDUP_TTL_MS;
        stx_argv_add_u64(&c->argv, (unsigned long long)ttl);
        stx_client_eval_str(c, o->maxlen > 0 ? "MAXLEN" : o->minid ? "MINID" : "");
        if (o->maxlen > 0) stx_argv_add_u64(&c->argv, (unsigned long long)o->maxlen);
        else stx_client_eval_str(c, o->minid ? o->minid : "");
        stx_argv_add_u64(&c->argv, n);
        for (size_t i = 0; i < n; i++) {
            stx_argv_add_u64(&c->argv, keys[i] ? 2 + nkeys++ : 0);
            stx_argv_add_u64(&c->argv, msgs[i].nfields);
            for (size_t j = 0; j < msgs[i].nfields; j++) {
                const stx_field *f = &msgs[i].fields[j];
                stx_argv_add_ref(&c->argv, f->name ? f->name : "", f->name_len);
                stx_argv_add_ref(&c->argv, f->value ? f->value : "", f->value_len);
            }
        }
        redisReply *r;
        rc = stx_script_run(&c->scripts, &c->conn, STX_SCRIPT_PRODUCE, &c->argv, 1 + nkeys, &r);
        if (rc == STX_ECONN || rc == STX_ETIMEOUT)
            stx_client_fail(c, rc, "produce to '%.200s': %s (the outcome is unknown%s)", stream,
                            c->conn.err,
                            nkeys ? "; retrying with the same idempotency keys is safe"
                                  : ": without idempotency keys a retry may add twice");
        else if (rc != STX_OK)
            stx_client_fail(c, rc, "produce to '%.200s': %s", stream, c->conn.err);
        else {
            rc = parse_reply(c, r, msgs, n, results);
            stx_reply_release(r);
            if (rc != STX_OK) memset(results, 0, n * sizeof *results);
        }
    }
    stx_argv_reset(&c->argv);
    for (size_t i = 0; i < n; i++) free(keys[i]);
    free(keys);
    free(key_lens);
    return rc;
}

int stx_produce(stx_client *c, const char *stream, const stx_field *fields, size_t nfields,
                const stx_produce_opts *opts, stx_produce_result *result)
{
    stx_produce_msg m = {fields, nfields, opts ? opts->idempotency_key : NULL};
    return produce(c, stream, &m, 1, opts, result);
}

int stx_produce_batch(stx_client *c, const char *stream, const stx_produce_msg *msgs, size_t n,
                      const stx_produce_opts *opts, stx_produce_result *results)
{
    return produce(c, stream, msgs, n, opts, results);
}
