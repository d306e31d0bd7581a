/* Dead letters, the client's part: listing them and moving them back to
 * their source stream.  Needs only the client connection, not the
 * processor (dlq.c holds the processor's part, stx_dead_letter()). */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "client.h"

int stx_dlq_list(stx_client *c, const char *stream, const char *group, const char *after,
                 size_t limit, stx_entries **out)
{
    if (!out) return STX_EINVAL;
    *out = NULL;
    if (!c || !stream || !group) return STX_EINVAL;
    char *dlq = stx_key_alloc(stream, group, "dlq");
    if (!dlq) return stx_client_fail(c, STX_EINVAL, "dlq list: bad stream or group name");
    /* Redriven entries are deleted from the DLQ: that is no lost history,
     * so the window check of ordinary reads does not apply. */
    int rc = stx_client_read_range(c, "dlq list", dlq, after ? after : "0", NULL, limit, 0, out);
    free(dlq);
    return rc;
}

/* Redrive one chunk of DLQ ids; adds to *moved. */
static int redrive_chunk(stx_client *c, const char *stream, const char *dlq,
                         const char *const *ids, size_t n, size_t *moved)
{
    stx_client_eval_begin(c);
    stx_client_eval_str(c, stream);
    stx_client_eval_str(c, dlq);
    for (size_t i = 0; i < n; i++) stx_client_eval_str(c, ids[i]);
    redisReply *r;
    int rc = stx_script_run(&c->scripts, &c->conn, STX_SCRIPT_REDRIVE, &c->argv, 2, &r);
    if (rc != STX_OK) return stx_client_fail(c, rc, "dlq redrive: %s", c->conn.err);
    if (stx_client_reply_is(r, "OK") && r->elements >= 2 &&
        r->element[1]->type == REDIS_REPLY_INTEGER) {
        *moved += (size_t)r->element[1]->integer;
        freeReplyObject(r);
        return STX_OK;
    }
    const char *a = stx_client_elem_str(r, 1), *b = stx_client_elem_str(r, 2);
    if (stx_client_reply_is(r, "WRONGTYPE"))
        rc = stx_client_fail(c, STX_EWRONGTYPE, "dlq redrive: key '%s' holds a %s", a ? a : "?",
                             b ? b : "?");
    else if (stx_client_reply_is(r, "BADENTRY"))
        rc = stx_client_fail(c, STX_EDECODE, "dlq redrive: entry %s was not written by streamtx "
                             "(no stx.fields); nothing moved", a ? a : "?");
    else
        rc = stx_client_fail(c, STX_EREDIS, "dlq redrive: unexpected reply");
    freeReplyObject(r);
    return rc;
}

int stx_dlq_redrive(stx_client *c, const char *stream, const char *group,
                    const char *const *ids, size_t n, size_t *moved)
{
    size_t total = 0;
    if (moved) *moved = 0;
    if (!c || !stream || !group || (n && !ids)) return STX_EINVAL;
    int rc = stx_client_ready(c);
    if (rc != STX_OK) return rc;
    char *dlq = stx_key_alloc(stream, group, "dlq");
    if (!dlq) return stx_client_fail(c, STX_EINVAL, "dlq redrive: bad stream or group name");
    for (size_t i = 0; i < n; i++) {
        stx_id id;
        if (!ids[i] || stx_id_parse(ids[i], strlen(ids[i]), &id) != 0) {
            free(dlq);
            return stx_client_fail(c, STX_EINVALID_CURSOR, "dlq redrive: '%s' is not an entry id",
                                   ids[i] ? ids[i] : "(null)");
        }
    }
    if (n) {
        for (size_t i = 0; i < n && rc == STX_OK; i += 500)
            rc = redrive_chunk(c, stream, dlq, ids + i, n - i < 500 ? n - i : 500, &total);
    } else {
        /* All of them, a page at a time; entries that cannot move (no
         * original fields) stay, so the walk goes on after the page. */
        char after[STX_ID_MAX] = "0-0";
        for (;;) {
            stx_entries *page = NULL;
            rc = stx_client_read_range(c, "dlq redrive", dlq, after, NULL, 500, 0, &page);
            if (rc != STX_OK || stx_entries_count(page) == 0) {
                stx_entries_free(page);
                break;
            }
            size_t cnt = stx_entries_count(page);
            const char **pids = malloc(cnt * sizeof *pids);
            if (!pids) {
                stx_entries_free(page);
                rc = stx_client_fail(c, STX_ENOMEM, "out of memory");
                break;
            }
            for (size_t i = 0; i < cnt; i++) pids[i] = stx_msg_id(stx_entries_at(page, i));
            rc = redrive_chunk(c, stream, dlq, pids, cnt, &total);
            snprintf(after, sizeof after, "%s", pids[cnt - 1]);
            free(pids);
            stx_entries_free(page);
            if (rc != STX_OK) break;
        }
    }
    free(dlq);
    if (moved) *moved = total;
    return rc;
}
