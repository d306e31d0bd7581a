/* Dead letters, the client's part: listing them and moving them back to
 * their source stream.  Needs only the client connection, not the
 * processor (dead-lettering itself, stx_dead_letter(), is in commit.c). */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "reply.h"
#include "client.h"
#include "text.h"

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
        stx_reply_release(r);
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
    stx_reply_release(r);
    return rc;
}

/* An id given and where it was given. */
typedef struct given_id {
    stx_id id;
    size_t at;
} given_id;

static int given_cmp(const void *a, const void *b)
{
    const given_id *x = a, *y = b;
    int c = stx_id_cmp(x->id, y->id);
    return c ? c : (x->at > y->at) - (x->at < y->at);
}

/* The ids to redrive, each once, in the order first given, formatted the
 * way Redis does ("01-1" and "1-1" are one entry): the script would find an
 * id given twice twice before deleting it, and add its entry to the source
 * stream twice.  *out is one allocation (free() it): *out_n pointers, then
 * the strings they point to. */
static int unique_ids(stx_client *c, const char *const *ids, size_t n, const char ***out,
                      size_t *out_n)
{
    *out = NULL;
    *out_n = 0;
    given_id *g = malloc(n * sizeof *g);
    unsigned char *dup = calloc(n, 1);
    char *block = malloc(n * (sizeof(char *) + STX_ID_MAX));
    if (!g || !dup || !block) {
        free(g);
        free(dup);
        free(block);
        return stx_client_fail(c, STX_ENOMEM, "dlq redrive: out of memory");
    }
    for (size_t i = 0; i < n; i++) {
        if (!ids[i] || stx_id_parse(ids[i], strlen(ids[i]), &g[i].id) != 0) {
            char shown[128] = "(null)";
            if (ids[i]) stx_printable(ids[i], strlen(ids[i]), shown, sizeof shown);
            free(g);
            free(dup);
            free(block);
            return stx_client_fail(c, STX_EINVALID_CURSOR, "dlq redrive: '%s' is not an entry id",
                                   shown);
        }
        g[i].at = i;
    }
    /* Sorted by (id, position): every repeat follows its first occurrence. */
    qsort(g, n, sizeof *g, given_cmp);
    for (size_t i = 1; i < n; i++)
        if (stx_id_cmp(g[i - 1].id, g[i].id) == 0) dup[g[i].at] = 1;
    const char **ptrs = (const char **)(void *)block;
    char *text = block + n * sizeof(char *);
    size_t k = 0;
    for (size_t i = 0; i < n; i++) {
        stx_id id;
        if (dup[i]) continue;
        stx_id_parse(ids[i], strlen(ids[i]), &id); /* checked above */
        stx_id_format(id, text + k * STX_ID_MAX);
        ptrs[k] = text + k * STX_ID_MAX;
        k++;
    }
    free(g);
    free(dup);
    *out = ptrs;
    *out_n = k;
    return STX_OK;
}

int stx_dlq_redrive(stx_client *c, const char *stream, const char *group,
                    const char *const *ids, size_t n, size_t *moved)
{
    size_t total = 0;
    if (moved) *moved = 0;
    if (!c || !stream || !group || (n && !ids)) return STX_EINVAL;
    int rc = stx_client_ready(c);
    if (rc != STX_OK) return rc;
    const char **uniq = NULL;
    if (n && (rc = unique_ids(c, ids, n, &uniq, &n)) != STX_OK) return rc;
    char *dlq = stx_key_alloc(stream, group, "dlq");
    if (!dlq) {
        free(uniq);
        return stx_client_fail(c, STX_EINVAL, "dlq redrive: bad stream or group name");
    }
    if (n) {
        for (size_t i = 0; i < n && rc == STX_OK; i += 500)
            rc = redrive_chunk(c, stream, dlq, uniq + i, n - i < 500 ? n - i : 500, &total);
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
    free(uniq);
    if (moved) *moved = total;
    return rc;
}
