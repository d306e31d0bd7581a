/* Recovery through a history source (stx_config_set_history()): the entries
 * after the cursor that the stream no longer holds are read from the source
 * (the archive) and handled like any other, before the stream's own.
 *
 * The seam: trims remove entries from the head of a stream only, so when
 * the stream's first entry is at or before the cursor, everything after the
 * cursor that the stream ever held is still there (entries deleted with
 * XDEL aside, which live processing skips as well) and the source is not
 * asked.  Otherwise the source gives the entries after the cursor and
 * before that first entry; the stream's part starts where the source's
 * ends, so no entry is handled twice and none is skipped that either one
 * holds.  commit.lua needs nothing new for such a batch: its GAP check
 * looks for an entry the stream holds between the offset and the batch's
 * first id (there is none: the stream starts later), and an XACK of ids
 * that are not pending acknowledges nothing. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "processor.h"
#include "reply.h"

/* The batch as a reply of the session's shape, [[entries], [counts]], so
 * that the handling code reads it as it reads an XRANGE and frees it with
 * stx_reply_release(): built by the same builder, one task per node. */
static redisReply *build_batch(const stx_entries *e, size_t size, const redisReply *counts)
{
    stx_reply_builder b;
    stx_reply_builder_init(&b);
    redisReadTask rt = {.type = REDIS_REPLY_ARRAY, .idx = -1, .privdata = &b};
    redisReply *root = b.fn.createArray(&rt, 2);
    if (!root) return NULL;
    rt.obj = root;
    redisReadTask et = {.type = REDIS_REPLY_ARRAY, .idx = 0, .parent = &rt, .privdata = &b};
    if (!(et.obj = b.fn.createArray(&et, (int)size))) goto oom;
    for (size_t i = 0; i < size; i++) {
        const stx_msg *m = stx_entries_at(e, i);
        size_t nf = stx_msg_field_count(m);
        redisReadTask it = {.type = REDIS_REPLY_ARRAY, .idx = (int)i, .parent = &et, .privdata = &b};
        if (!(it.obj = b.fn.createArray(&it, 2))) goto oom;
        redisReadTask idt = {.type = REDIS_REPLY_STRING, .idx = 0, .parent = &it, .privdata = &b};
        const char *id = stx_msg_id(m);
        if (!b.fn.createString(&idt, (char *)id, strlen(id))) goto oom;
        redisReadTask ft = {.type = REDIS_REPLY_ARRAY, .idx = 1, .parent = &it, .privdata = &b};
        if (!(ft.obj = b.fn.createArray(&ft, (int)(2 * nf)))) goto oom;
        for (size_t k = 0; k < nf; k++) {
            const char *name, *value;
            size_t nlen, vlen;
            stx_msg_field(m, k, &name, &nlen, &value, &vlen);
            redisReadTask nt = {.type = REDIS_REPLY_STRING, .idx = (int)(2 * k), .parent = &ft,
                                .privdata = &b};
            redisReadTask vt = {.type = REDIS_REPLY_STRING, .idx = (int)(2 * k + 1), .parent = &ft,
                                .privdata = &b};
            if (!b.fn.createString(&nt, (char *)name, nlen) ||
                !b.fn.createString(&vt, (char *)value, vlen))
                goto oom;
        }
    }
    redisReadTask ct = {.type = REDIS_REPLY_ARRAY, .idx = 1, .parent = &rt, .privdata = &b};
    if (!(ct.obj = b.fn.createArray(&ct, (int)size))) goto oom;
    for (size_t i = 0; i < size; i++) {
        redisReadTask nt = {.type = REDIS_REPLY_INTEGER, .idx = (int)i, .parent = &ct, .privdata = &b};
        if (!b.fn.createInteger(&nt, counts->element[i]->integer)) goto oom;
    }
    return root;
oom:
    stx_reply_release(root);
    return NULL;
}

/* The stream's first entry, into first ("" when the stream is empty). */
static int stream_first(stx_processor *p, char *first)
{
    const char *argv[] = {"XRANGE", p->conf.stream, "-", "+", "COUNT", "1"};
    redisReply *r;
    int rc = stx_conn_command(&p->conn, &r, 6, argv, NULL);
    if (rc != STX_OK) return stx_fail(p, rc, "read: %s", p->conn.err);
    first[0] = '\0';
    if (r->type == REDIS_REPLY_ARRAY && r->elements == 1) {
        const redisReply *e = r->element[0];
        stx_id id;
        if (e->type != REDIS_REPLY_ARRAY || e->elements < 1 ||
            e->element[0]->type != REDIS_REPLY_STRING ||
            stx_id_parse(e->element[0]->str, e->element[0]->len, &id) != 0) {
            stx_reply_release(r);
            return stx_fail(p, STX_EREDIS, "read: malformed XRANGE reply");
        }
        stx_id_format(id, first);
    } else if (r->type != REDIS_REPLY_ARRAY) {
        stx_reply_release(r);
        return stx_fail(p, STX_EREDIS, "read: malformed XRANGE reply");
    }
    stx_reply_release(r);
    return STX_OK;
}

int stx_history_read(stx_processor *p, redisReply **owner, const redisReply **entries,
                     const redisReply **counts)
{
    if (!p->conf.history || p->history_done) return 0;
    char before[STX_ID_MAX], after[STX_ID_MAX];
    int rc = stream_first(p, before);
    if (rc != STX_OK) return rc;
    stx_id first;
    if (before[0] && stx_id_parse(before, strlen(before), &first) == 0 &&
        stx_id_cmp(first, p->cursor) <= 0) {
        p->history_done = 1; /* nothing after the cursor was trimmed */
        return 0;
    }
    stx_id_format(p->cursor, after);
    stx_entries *e = NULL;
    size_t limit = (size_t)p->read_count;
    rc = p->conf.history(p->conf.stream, after, before, limit, &e, p->conf.history_data);
    if (rc == STX_ENOTFOUND) rc = STX_OK;
    if (rc != STX_OK) {
        stx_entries_free(e);
        return stx_fail(p, rc, "reading the history of stream '%s' after %s: %s", p->conf.stream,
                        after, stx_strerror(rc));
    }
    /* The source's entries must follow the cursor and end before the
     * stream's: one that broke the rule would have an entry applied twice.
     * stx_entries_append() already keeps them in strictly rising order. */
    size_t n = stx_entries_count(e);
    if (n > limit) n = limit;
    for (size_t i = 0; i < n; i++) {
        const char *id = stx_msg_id(stx_entries_at(e, i));
        stx_id v;
        if (stx_id_parse(id, strlen(id), &v) != 0 || stx_id_cmp(v, p->cursor) <= 0) {
            rc = stx_fail(p, STX_EINVAL, "the history source of stream '%s' returned entry %s, "
                          "not after the cursor %s", p->conf.stream, id, after);
            stx_entries_free(e);
            return rc;
        }
        if (before[0] && stx_id_cmp(v, first) >= 0) {
            n = i; /* the stream holds it and what follows */
            break;
        }
    }
    if (n == 0) {
        stx_entries_free(e);
        p->history_done = 1;
        return 0;
    }

    /* Count attempts as read.lua does for the stream's entries. */
    stx_argv *a = &p->read_argv;
    stx_argv_reset(a);
    for (int i = 0; i < 3; i++) stx_argv_add_ref(a, "", 0);
    stx_argv_add_ref(a, p->key_meta, strlen(p->key_meta));
    stx_argv_add_ref(a, p->key_attempts, strlen(p->key_attempts));
    stx_argv_add_u64(a, p->epoch);
    stx_argv_add_ref(a, p->token, strlen(p->token));
    stx_argv_add_ref(a, p->run_id, strlen(p->run_id));
    stx_argv_add_copy(a, p->failed_id, strlen(p->failed_id));
    for (size_t i = 0; i < n; i++) {
        const char *id = stx_msg_id(stx_entries_at(e, i));
        stx_argv_add_ref(a, id, strlen(id));
    }
    redisReply *r;
    rc = stx_script_run(&p->scripts, &p->conn, STX_SCRIPT_HISTORY, a, 2, &r);
    if (rc != STX_OK) {
        stx_entries_free(e);
        return stx_fail(p, rc, "read: %s", p->conn.err);
    }
    p->failed_id[0] = '\0';
    if (stx_reply_status(r) != STX_ST_OK) {
        rc = stx_refusal(p, r, "read");
        stx_reply_release(r);
        stx_entries_free(e);
        return rc;
    }
    uint64_t size;
    if (r->elements != 3 || stx_reply_u64(r, 1, &size) != 0 || size < 1 || size > n ||
        r->element[2]->type != REDIS_REPLY_ARRAY || r->element[2]->elements != size) {
        stx_reply_release(r);
        stx_entries_free(e);
        return stx_fail(p, STX_EREDIS, "read: malformed history script reply");
    }
    for (size_t i = 0; i < size; i++)
        if (r->element[2]->element[i]->type != REDIS_REPLY_INTEGER) {
            stx_reply_release(r);
            stx_entries_free(e);
            return stx_fail(p, STX_EREDIS, "read: malformed history script reply");
        }
    redisReply *batch = build_batch(e, (size_t)size, r->element[2]);
    stx_reply_release(r);
    stx_entries_free(e);
    if (!batch) return stx_fail(p, STX_ENOMEM, "out of memory");
    *owner = batch;
    *entries = batch->element[0];
    *counts = batch->element[1];
    return 1;
}
