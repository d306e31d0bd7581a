/* Reading a stream outside a consumer group: ranges by id or by time and a
 * live tail, with cursors that are checked against what was removed.
 *
 * The retention check (STX_EWINDOW_EXPIRED) rests on XINFO STREAM's
 * max-deleted-entry-id (Redis 7): a cursor below it has lost entries.
 * Redis 7.0 moves that id on XDEL only, not when a stream is trimmed, so
 * streamtx's own trims (stx_trim_safe(), stx_produce() with maxlen/minid)
 * record what they removed in it with XSETID ... MAXDELETEDID.  Beyond
 * that, two losses are visible without any record: entries were removed and
 * the cursor is the start ("0"), or the stream is empty and its last id is
 * after the cursor.  A trim by another client (plain XTRIM, XADD MAXLEN)
 * that leaves entries behind is not seen for other cursors.
 *
 * Note that the id also moves on an XDEL of a single entry: deleting one
 * entry in the middle of a stream makes every cursor before it "expired",
 * even though the entries between the cursor and the deleted one are still
 * there.  The check cannot tell these apart and errs on the side of
 * reporting a possible loss.  A producer's "~" trim records the id just
 * before the first entry left (what exactly went is not known), so a cursor
 * on the very last trimmed entry is reported too. */
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "reply.h"
#include "client.h"
#include "text.h"
#include "processor.h" /* struct stx_msg, stx_msg_decode */
#include "partition.h"

#define DEFAULT_LIMIT 1000

struct stx_entries {
    redisReply *reply;          /* owns every byte the message views point to */
    struct stx_msg *msgs;
    size_t n, cap;              /* cap: of msgs, for stx_entries_append() */
    redisReply **built;         /* entries of stx_entries_append(), one tree each */
    size_t nbuilt;
    char *stream;               /* what stx_msg_stream() returns */
    char last_id[STX_ID_MAX];
    stx_entries **parts;        /* a merge: the results whose entries msgs view */
    size_t nparts;
};

size_t stx_entries_count(const stx_entries *e)
{
    return e ? e->n : 0;
}

const stx_msg *stx_entries_at(const stx_entries *e, size_t i)
{
    return e && i < e->n ? &e->msgs[i] : NULL;
}

const char *stx_entries_last_id(const stx_entries *e)
{
    return e ? e->last_id : "";
}

void stx_entries_free(stx_entries *e)
{
    if (!e) return;
    if (e->reply) stx_reply_release(e->reply);
    for (size_t i = 0; i < e->nparts; i++) stx_entries_free(e->parts[i]);
    free(e->parts);
    /* Built by stx_entries_append() with plain mallocs, in hiredis' layout:
     * freeReplyObject() frees exactly those. */
    for (size_t i = 0; i < e->nbuilt; i++) freeReplyObject(e->built[i]);
    free(e->built);
    free(e->msgs);
    free(e->stream);
    free(e);
}

/* Message views over arr, an array of [id, fields] entries inside owner.
 * Takes owner (NULL for an empty result) whatever happens. */
static int entries_make(stx_client *c, const char *what, const char *stream, redisReply *owner,
                        const redisReply *arr, stx_id cursor, stx_entries **out)
{
    size_t n = arr ? arr->elements : 0;
    stx_entries *e = calloc(1, sizeof *e);
    if (!e || !(e->stream = strdup(stream)) || (n && !(e->msgs = calloc(n, sizeof *e->msgs)))) {
        if (e) free(e->stream);
        free(e);
        if (owner) stx_reply_release(owner);
        return stx_client_fail(c, STX_ENOMEM, "%s: out of memory", what);
    }
    e->reply = owner;
    e->cap = n;
    stx_id_format(cursor, e->last_id);
    for (size_t i = 0; i < n; i++) {
        const char *why = "";
        if (stx_msg_decode(&e->msgs[i], arr->element[i], e->stream, LONG_MAX, LLONG_MAX, &why) !=
            STX_OK) {
            stx_entries_free(e);
            return stx_client_fail(c, STX_EDECODE, "%s: entry %zu of stream '%.200s': %s", what, i,
                                   stream, why);
        }
        /* These views live until stx_entries_free(), not for one handler
         * call: they stay readable. */
        e->msgs[i].active = 1;
        e->n++;
    }
    if (n) stx_id_format(e->msgs[n - 1].idv, e->last_id);
    *out = e;
    return STX_OK;
}

int stx_entries_merge(stx_client *c, stx_entries **parts, size_t n, size_t limit,
                      const char *after, stx_entries **out)
{
    size_t total = 0;
    for (size_t i = 0; i < n; i++) total += parts[i] ? parts[i]->n : 0;
    stx_entries *e = calloc(1, sizeof *e);
    size_t *at = calloc(n ? n : 1, sizeof *at);
    if (!e || !(e->stream = strdup("")) || (total && !(e->msgs = calloc(total, sizeof *e->msgs))) ||
        !at) {
        if (e) {
            free(e->stream);
            free(e->msgs);
        }
        free(e);
        free(at);
        for (size_t i = 0; i < n; i++) stx_entries_free(parts[i]);
        free(parts);
        return stx_client_fail(c, STX_ENOMEM, "read: out of memory");
    }
    e->parts = parts;
    e->nparts = n;
    snprintf(e->last_id, sizeof e->last_id, "%s", after && strcmp(after, "0") ? after : "0-0");
    /* Take the lowest head each time; stop at the limit, but never between
     * entries of one id: the cursor (the last id) resumes after all of them. */
    for (;;) {
        size_t best = n;
        for (size_t i = 0; i < n; i++)
            if (parts[i] && at[i] < parts[i]->n &&
                (best == n || stx_id_cmp(parts[i]->msgs[at[i]].idv, parts[best]->msgs[at[best]].idv) < 0))
                best = i;
        if (best == n) break;
        const struct stx_msg *m = &parts[best]->msgs[at[best]];
        if (e->n >= limit && stx_id_cmp(m->idv, e->msgs[e->n - 1].idv) != 0) break;
        e->msgs[e->n++] = *m;
        at[best]++;
    }
    free(at);
    if (e->n) stx_id_format(e->msgs[e->n - 1].idv, e->last_id);
    *out = e;
    return STX_OK;
}

/* ---- entries built by the caller ---------------------------------------- */

/* A bulk string reply holding a copy of len bytes, as hiredis builds one
 * (freeReplyObject() frees it). */
static redisReply *str_reply(const char *s, size_t len)
{
    redisReply *r = calloc(1, sizeof *r);
    if (!r || !(r->str = malloc(len + 1))) {
        free(r);
        return NULL;
    }
    r->type = REDIS_REPLY_STRING;
    if (len) memcpy(r->str, s, len);
    r->str[len] = '\0';
    r->len = len;
    return r;
}

int stx_entries_new(const char *stream, const char *cursor, stx_entries **out)
{
    if (!out) return STX_EINVAL;
    *out = NULL;
    stx_id a = {0, 0};
    if (!stream || !*stream || !cursor) return STX_EINVAL;
    if (strcmp(cursor, "0") != 0 && stx_id_parse(cursor, strlen(cursor), &a) != 0)
        return STX_EINVALID_CURSOR;
    stx_entries *e = calloc(1, sizeof *e);
    if (!e || !(e->stream = strdup(stream))) {
        free(e);
        return STX_ENOMEM;
    }
    stx_id_format(a, e->last_id);
    *out = e;
    return STX_OK;
}

int stx_entries_append(stx_entries *e, const char *id, const stx_field *fields, size_t nfields)
{
    stx_id v;
    if (!e || !id || !fields || nfields == 0 || nfields > SIZE_MAX / 2 - 1) return STX_EINVAL;
    if (stx_id_parse(id, strlen(id), &v) != 0) return STX_EINVALID_CURSOR;
    for (size_t i = 0; i < nfields; i++)
        if ((!fields[i].name && fields[i].name_len) || (!fields[i].value && fields[i].value_len))
            return STX_EINVAL;
    /* Strictly after the last entry: a joined result is in id order and
     * holds no id twice, whatever the caller feeds it. */
    if (e->n > 0 && stx_id_cmp(v, e->msgs[e->n - 1].idv) <= 0) return STX_EINVAL;
    if (e->n == e->cap) {
        size_t cap = e->cap ? e->cap * 2 : 16;
        struct stx_msg *m = realloc(e->msgs, cap * sizeof *m);
        if (!m) return STX_ENOMEM;
        e->msgs = m;
        e->cap = cap;
    }
    redisReply **b = realloc(e->built, (e->nbuilt + 1) * sizeof *b);
    if (!b) return STX_ENOMEM;
    e->built = b;
    char idtext[STX_ID_MAX];
    stx_id_format(v, idtext);
    redisReply *entry = calloc(1, sizeof *entry), *arr = calloc(1, sizeof *arr);
    int ok = entry && arr;
    if (ok) {
        entry->type = REDIS_REPLY_ARRAY;
        arr->type = REDIS_REPLY_ARRAY;
        ok = (entry->element = calloc(2, sizeof *entry->element)) != NULL &&
             (arr->element = calloc(2 * nfields, sizeof *arr->element)) != NULL;
    }
    if (ok) {
        entry->elements = 2;
        entry->element[1] = arr;
        arr = NULL;
        ok = (entry->element[0] = str_reply(idtext, strlen(idtext))) != NULL;
        redisReply *f = entry->element[1];
        for (size_t i = 0; ok && i < nfields; i++) {
            ok = (f->element[2 * i] = str_reply(fields[i].name, fields[i].name_len)) != NULL &&
                 (f->element[2 * i + 1] = str_reply(fields[i].value, fields[i].value_len)) != NULL;
            f->elements = 2 * i + (f->element[2 * i] != NULL) + (f->element[2 * i + 1] != NULL);
        }
    }
    if (!ok) {
        if (entry) freeReplyObject(entry);
        if (arr) freeReplyObject(arr);
        return STX_ENOMEM;
    }
    const char *why = "";
    if (stx_msg_decode(&e->msgs[e->n], entry, e->stream, LONG_MAX, LLONG_MAX, &why) != STX_OK) {
        freeReplyObject(entry);
        return STX_EDECODE;
    }
    e->msgs[e->n].active = 1;
    e->built[e->nbuilt++] = entry;
    e->n++;
    memcpy(e->last_id, idtext, sizeof idtext);
    return STX_OK;
}

/* A cursor: "MS-SEQ", or "0" for the start of the stream. */
static int parse_cursor(stx_client *c, const char *what, const char *s, stx_id *out)
{
    if (!s) return stx_client_fail(c, STX_EINVALID_CURSOR, "%s: no cursor given", what);
    if (strcmp(s, "0") == 0) {
        *out = (stx_id){0, 0};
        return STX_OK;
    }
    if (stx_id_parse(s, strlen(s), out) == 0) return STX_OK;
    char shown[128];
    stx_printable(s, strlen(s), shown, sizeof shown);
    return stx_client_fail(c, STX_EINVALID_CURSOR,
                           "%s: cursor '%s' is not a stream id (MS-SEQ, or \"0\" for the start)",
                           what, shown);
}

static int is_max_id(stx_id id)
{
    return id.ms == UINT64_MAX && id.seq == UINT64_MAX;
}

/* Whether entries after `after` were removed (see the top of the file),
 * with a message saying from where reading can go on. */
static int window_check(stx_client *c, const char *what, const char *stream, const stx_xinfo *x,
                        stx_id after)
{
    int removed = x->entries_added > x->length;
    int from_start = after.ms == 0 && after.seq == 0;
    if (stx_id_cmp(after, x->max_deleted) >= 0 &&
        !(removed && (from_start || (x->length == 0 && stx_id_cmp(after, x->last_generated) < 0))))
        return STX_OK;
    /* Resume after the highest deleted id, or right before the first
     * retained entry, whichever is later. */
    stx_id resume = x->length == 0 ? x->last_generated : x->max_deleted, first;
    if (x->first_id[0] && stx_id_parse(x->first_id, strlen(x->first_id), &first) == 0) {
        stx_id before = first.seq ? (stx_id){first.ms, first.seq - 1}
                                  : (stx_id){first.ms - 1, UINT64_MAX};
        if (stx_id_cmp(before, resume) > 0) resume = before;
    }
    char a[STX_ID_MAX], m[STX_ID_MAX], r[STX_ID_MAX];
    stx_id_format(after, a);
    stx_id_format(x->max_deleted, m);
    stx_id_format(resume, r);
    if (x->first_id[0])
        return stx_client_fail(c, STX_EWINDOW_EXPIRED,
                               "%s: entries of stream '%.200s' after %s were trimmed or deleted "
                               "(highest deleted id %s); the first retained entry is %s: resume "
                               "with cursor %s",
                               what, stream, a, m, x->first_id, r);
    return stx_client_fail(c, STX_EWINDOW_EXPIRED,
                           "%s: entries of stream '%.200s' after %s were trimmed or deleted and "
                           "none is retained: resume with cursor %s",
                           what, stream, a, r);
}

/* An error element of an EXEC reply as a code and message. */
static int exec_error(stx_client *c, const char *what, const redisReply *e)
{
    return stx_client_fail(c, stx_conn_reply_code(e->str), "%s: %s", what, e->str);
}

static int no_such_key(const redisReply *e)
{
    return e->type == REDIS_REPLY_ERROR && strstr(e->str, "no such key") != NULL;
}

/* XINFO STREAM and XRANGE start..end in one MULTI/EXEC, so that the
 * retention check (of entries after `after`, unless check is 0) and the
 * entries describe the same moment. */
static int range_read(stx_client *c, const char *what, const char *stream, const char *start,
                      const char *end, size_t limit, stx_id after, int check, stx_entries **out)
{
    char count[24];
    snprintf(count, sizeof count, "%zu", limit);
    const char *multi[] = {"MULTI"}, *exec[] = {"EXEC"};
    const char *xinfo[] = {"XINFO", "STREAM", stream};
    const char *xrange[] = {"XRANGE", stream, start, end, "COUNT", count};
    int rc = stx_conn_append(&c->conn, 1, multi, NULL);
    if (rc == STX_OK) rc = stx_conn_append(&c->conn, 3, xinfo, NULL);
    if (rc == STX_OK) rc = stx_conn_append(&c->conn, 6, xrange, NULL);
    if (rc == STX_OK) rc = stx_conn_append(&c->conn, 1, exec, NULL);
    if (rc != STX_OK) return stx_client_fail(c, rc, "%s: %s", what, c->conn.err);
    redisReply *r[4];
    rc = stx_client_read_all(c, 4, r);
    for (int i = 0; i < 3; i++)
        if (r[i]) stx_reply_release(r[i]);
    redisReply *x = r[3];
    if (rc != STX_OK) {
        if (x) stx_reply_release(x);
        return stx_client_fail(c, rc, "%s: %s", what, c->conn.err);
    }
    if (x->type != REDIS_REPLY_ARRAY || x->elements != 2) {
        stx_reply_release(x);
        return stx_client_fail(c, STX_EREDIS, "%s: unexpected EXEC reply", what);
    }
    const redisReply *info = x->element[0], *range = x->element[1];
    if (range->type == REDIS_REPLY_ERROR || (info->type == REDIS_REPLY_ERROR && !no_such_key(info))) {
        rc = exec_error(c, what, range->type == REDIS_REPLY_ERROR ? range : info);
        stx_reply_release(x);
        return rc;
    }
    if (range->type != REDIS_REPLY_ARRAY) {
        stx_reply_release(x);
        return stx_client_fail(c, STX_EREDIS, "%s: unexpected XRANGE reply", what);
    }
    if (check && !no_such_key(info)) { /* a stream that does not exist lost nothing */
        stx_xinfo xi;
        if (stx_xinfo_parse(info, &xi) != STX_OK)
            rc = stx_client_fail(c, STX_EREDIS, "%s: unexpected XINFO STREAM reply", what);
        else
            rc = window_check(c, what, stream, &xi, after);
        if (rc != STX_OK) {
            stx_reply_release(x);
            return rc;
        }
    }
    return entries_make(c, what, stream, x, range, after, out);
}

static int check_common(stx_client *c, const char *stream, stx_entries **out)
{
    if (!c || !out) return STX_EINVAL;
    *out = NULL;
    c->errmsg[0] = '\0';
    if (!stream || !*stream) return stx_client_fail(c, STX_EINVAL, "empty stream name");
    return STX_OK;
}

int stx_client_read_range(stx_client *c, const char *what, const char *stream, const char *after,
                          const char *to, size_t limit, int check_window, stx_entries **out)
{
    int rc = check_common(c, stream, out);
    if (rc != STX_OK) return rc;
    stx_id a, t;
    char start[STX_ID_MAX + 1] = "(", end[STX_ID_MAX] = "+";
    if ((rc = parse_cursor(c, what, after, &a)) != STX_OK) return rc;
    if (to && strcmp(to, "+") != 0) {
        if ((rc = parse_cursor(c, what, to, &t)) != STX_OK) return rc;
        stx_id_format(t, end);
    }
    if ((rc = stx_client_ready(c)) != STX_OK) return rc;
    /* "(" of the highest id is refused by XRANGE; nothing can follow it. */
    if (is_max_id(a)) return entries_make(c, what, stream, NULL, NULL, a, out);
    stx_id_format(a, start + 1);
    return range_read(c, what, stream, start, end, limit ? limit : DEFAULT_LIMIT, a, check_window,
                      out);
}

int stx_read_range(stx_client *c, const char *stream, const char *after, const char *to,
                   size_t limit, stx_entries **out)
{
    return stx_client_read_range(c, "read", stream, after, to, limit, 1, out);
}

int stx_read_time(stx_client *c, const char *stream, int64_t from_ms, int64_t to_ms,
                  size_t limit, stx_entries **out)
{
    int rc = check_common(c, stream, out);
    if (rc != STX_OK) return rc;
    if (from_ms < 0 || to_ms < from_ms)
        return stx_client_fail(c, STX_EINVAL, "read_time: bad interval [%lld, %lld]",
                               (long long)from_ms, (long long)to_ms);
    if ((rc = stx_client_ready(c)) != STX_OK) return rc;
    char start[STX_ID_MAX], end[STX_ID_MAX];
    stx_id_format((stx_id){(uint64_t)from_ms, 0}, start);
    stx_id_format((stx_id){(uint64_t)to_ms, UINT64_MAX}, end);
    /* The cursor of the interval is the id just before its first one. */
    stx_id before = from_ms > 0 ? (stx_id){(uint64_t)from_ms - 1, UINT64_MAX} : (stx_id){0, 0};
    return range_read(c, "read_time", stream, start, end, limit ? limit : DEFAULT_LIMIT, before, 1,
                      out);
}

/* The stream's last generated id ("$" made concrete), 0-0 when it does not
 * exist, so that a tail from "$" can be resumed without a gap. */
static int last_generated(stx_client *c, const char *stream, stx_id *out)
{
    const char *argv[] = {"XINFO", "STREAM", stream};
    redisReply *r;
    *out = (stx_id){0, 0};
    int rc = stx_conn_command(&c->conn, &r, 3, argv, NULL);
    if (rc == STX_EREDIS && strstr(c->conn.err, "no such key")) return STX_OK;
    if (rc != STX_OK) return stx_client_fail(c, rc, "tail: %s", c->conn.err);
    stx_xinfo x;
    rc = stx_xinfo_parse(r, &x);
    stx_reply_release(r);
    if (rc != STX_OK) return stx_client_fail(c, rc, "tail: unexpected XINFO STREAM reply");
    *out = x.last_generated;
    return STX_OK;
}

/* After a blocking XREAD returned entries starting at first: were entries
 * between the cursor and first added and removed while we were not
 * looking?  (A removal after first cannot be told apart from one of
 * entries we have just read, so only a highest deleted id inside the gap
 * counts.) */
static int gap_check(stx_client *c, const char *stream, stx_id after, stx_id first)
{
    const char *argv[] = {"XINFO", "STREAM", stream};
    redisReply *r;
    int rc = stx_conn_command(&c->conn, &r, 3, argv, NULL);
    if (rc == STX_EREDIS && strstr(c->conn.err, "no such key")) return STX_OK;
    if (rc != STX_OK) return stx_client_fail(c, rc, "tail: %s", c->conn.err);
    stx_xinfo x;
    rc = stx_xinfo_parse(r, &x);
    stx_reply_release(r);
    if (rc != STX_OK) return stx_client_fail(c, rc, "tail: unexpected XINFO STREAM reply");
    if (stx_id_cmp(after, x.max_deleted) >= 0 || stx_id_cmp(x.max_deleted, first) >= 0)
        return STX_OK;
    return window_check(c, "tail", stream, &x, after);
}

int stx_tail(stx_client *c, const char *stream, const char *after, long block_ms, size_t limit,
             stx_entries **out)
{
    int rc = check_common(c, stream, out);
    if (rc != STX_OK) return rc;
    if (block_ms < 0) return stx_client_fail(c, STX_EINVAL, "tail: negative block_ms");
    if (!limit) limit = DEFAULT_LIMIT;
    stx_id a;
    int from_now = after && strcmp(after, "$") == 0;
    if (!from_now && (rc = parse_cursor(c, "tail", after, &a)) != STX_OK) return rc;
    if ((rc = stx_client_ready(c)) != STX_OK) return rc;
    if (from_now && (rc = last_generated(c, stream, &a)) != STX_OK) return rc;
    if (is_max_id(a)) return entries_make(c, "tail", stream, NULL, NULL, a, out);

    /* What is there already, checked against the retention window. */
    char cursor[STX_ID_MAX + 1] = "(";
    stx_id_format(a, cursor + 1);
    stx_entries *now = NULL;
    rc = range_read(c, "tail", stream, cursor, "+", limit, a, 1, &now);
    if (rc != STX_OK) return rc;
    if (now->n > 0 || block_ms == 0) {
        *out = now;
        return STX_OK;
    }

    /* Nothing yet: wait.  block_ms 0 above means "do not wait" (XREAD's
     * BLOCK 0 would wait forever). */
    char count[24], block[24];
    snprintf(count, sizeof count, "%zu", limit);
    snprintf(block, sizeof block, "%ld", block_ms);
    const char *argv[] = {"XREAD", "COUNT", count, "BLOCK", block, "STREAMS", stream, cursor + 1};
    redisReply *r;
    stx_conn_set_timeout(&c->conn, block_ms + c->conn.command_timeout_ms);
    rc = stx_conn_command(&c->conn, &r, 8, argv, NULL);
    stx_conn_set_timeout(&c->conn, c->conn.command_timeout_ms);
    if (rc != STX_OK) {
        stx_entries_free(now);
        return stx_client_fail(c, rc, "tail (XREAD BLOCK): %s", c->conn.err);
    }
    if (r->type == REDIS_REPLY_NIL) {
        stx_reply_release(r);
        *out = now;
        return STX_OK;
    }
    stx_entries_free(now);
    const redisReply *arr = NULL;
    if (r->type == REDIS_REPLY_ARRAY && r->elements == 1 && r->element[0]->type == REDIS_REPLY_ARRAY &&
        r->element[0]->elements == 2 && r->element[0]->element[1]->type == REDIS_REPLY_ARRAY)
        arr = r->element[0]->element[1];
    if (!arr) {
        stx_reply_release(r);
        return stx_client_fail(c, STX_EREDIS, "tail: unexpected XREAD reply");
    }
    rc = entries_make(c, "tail", stream, r, arr, a, out);
    if (rc != STX_OK || (*out)->n == 0) return rc;
    if ((rc = gap_check(c, stream, a, (*out)->msgs[0].idv)) != STX_OK) {
        stx_entries_free(*out);
        *out = NULL;
    }
    return rc;
}

/* ---- positions ---------------------------------------------------------- */

/* Decimal digits s[0..len), no sign, fitting 64 bits.  0 or -1. */
static int pos_u64(const char *s, size_t len, unsigned long long *out)
{
    if (len == 0 || len > 20) return -1;
    unsigned long long v = 0;
    for (size_t i = 0; i < len; i++) {
        if (s[i] < '0' || s[i] > '9') return -1;
        unsigned d = (unsigned)(s[i] - '0');
        if (v > (ULLONG_MAX - d) / 10) return -1;
        v = v * 10 + d;
    }
    *out = v;
    return 0;
}

static int pos_digits(const char *s, int n, int *out)
{
    int v = 0;
    for (int i = 0; i < n; i++) {
        if (s[i] < '0' || s[i] > '9') return -1;
        v = v * 10 + (s[i] - '0');
    }
    *out = v;
    return 0;
}

/* Days from 1970-01-01 to y-m-d (proleptic Gregorian). */
static long long days_from_civil(long long y, int m, int d)
{
    y -= m <= 2;
    long long era = (y >= 0 ? y : y - 399) / 400;
    long long yoe = y - era * 400;
    long long doy = (153 * (m + (m > 2 ? -3 : 9)) + 2) / 5 + d - 1;
    long long doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    return era * 146097 + doe - 719468;
}

/* RFC 3339: YYYY-MM-DD(T|t| )HH:MM:SS[.F...](Z|z|+HH:MM|-HH:MM).  0 or -1. */
static int pos_rfc3339(const char *s, long long *ms)
{
    int y, mo, d, h, mi, sec, frac = 0, oh = 0, om = 0, sign = 0;
    size_t n = strlen(s);
    if (n < 20 || s[4] != '-' || s[7] != '-' || (s[10] != 'T' && s[10] != 't' && s[10] != ' ') ||
        s[13] != ':' || s[16] != ':')
        return -1;
    if (pos_digits(s, 4, &y) || pos_digits(s + 5, 2, &mo) || pos_digits(s + 8, 2, &d) ||
        pos_digits(s + 11, 2, &h) || pos_digits(s + 14, 2, &mi) || pos_digits(s + 17, 2, &sec))
        return -1;
    const char *p = s + 19;
    if (*p == '.') {
        int nd = 0;
        p++;
        while (p[nd] >= '0' && p[nd] <= '9') nd++;
        if (nd < 1 || nd > 9) return -1;
        for (int k = 0; k < 3; k++) frac = frac * 10 + (k < nd ? p[k] - '0' : 0);
        p += nd;
    }
    if (strcmp(p, "Z") == 0 || strcmp(p, "z") == 0) {
        sign = 0;
    } else if ((p[0] == '+' || p[0] == '-') && strlen(p) == 6 && p[3] == ':' &&
               pos_digits(p + 1, 2, &oh) == 0 && pos_digits(p + 4, 2, &om) == 0 && oh <= 23 &&
               om <= 59) {
        sign = p[0] == '+' ? 1 : -1;
    } else {
        return -1;
    }
    static const int mdays[] = {31, 28, 31, 30, 31, 30, 31, 31, 30, 31, 30, 31};
    int leap = (y % 4 == 0 && y % 100 != 0) || y % 400 == 0;
    if (mo < 1 || mo > 12 || d < 1 || d > mdays[mo - 1] + (mo == 2 && leap) || h > 23 ||
        mi > 59 || sec > 60)
        return -1;
    if (sec == 60) sec = 59; /* a leap second: Unix time has none */
    long long t = ((days_from_civil(y, mo, d) * 24 + h) * 60 + mi) * 60000 + sec * 1000LL + frac;
    t -= sign * ((long long)oh * 60 + om) * 60000;
    if (t < 0) return -1;
    *ms = t;
    return 0;
}

/* NUMBER UNIT pairs: ms s m h d w.  0 or -1. */
static int pos_duration(const char *s, long long *ms)
{
    static const struct { const char *unit; long long ms; } units[] = {
        {"ms", 1}, {"s", 1000}, {"m", 60000}, {"h", 3600000}, {"d", 86400000}, {"w", 604800000},
    };
    long long total = 0;
    if (!*s) return -1;
    while (*s) {
        size_t nd = strspn(s, "0123456789"), nu;
        unsigned long long v;
        if (pos_u64(s, nd, &v) != 0) return -1;
        s += nd;
        for (nu = 0; s[nu] && (s[nu] < '0' || s[nu] > '9'); nu++) {}
        long long mult = 0;
        for (size_t k = 0; k < sizeof units / sizeof units[0]; k++)
            if (strlen(units[k].unit) == nu && strncmp(units[k].unit, s, nu) == 0)
                mult = units[k].ms;
        if (!mult || v > (unsigned long long)(LLONG_MAX / mult) ||
            (long long)v * mult > LLONG_MAX - total)
            return -1;
        total += (long long)v * mult;
        s += nu;
    }
    *ms = total;
    return 0;
}

int stx_position_parse(const char *text, long long now_ms, stx_position *out)
{
    if (!text || !out) return STX_EINVAL;
    stx_position p = {STX_POSITION_BEGINNING, 0, 0, 0};
    const char *dash = strchr(text, '-');
    long long t;
    if (strcmp(text, "beginning") == 0 || strcmp(text, "-") == 0 || strcmp(text, "0") == 0) {
        p.kind = STX_POSITION_BEGINNING;
    } else if (strcmp(text, "end") == 0 || strcmp(text, "$") == 0 || strcmp(text, "+") == 0) {
        p.kind = STX_POSITION_END;
    } else if (!dash && pos_u64(text, strlen(text), &p.ms) == 0) {
        p.kind = STX_POSITION_ID;
    } else if (dash && !strchr(dash + 1, '-') && pos_u64(text, (size_t)(dash - text), &p.ms) == 0 &&
               pos_u64(dash + 1, strlen(dash + 1), &p.seq) == 0) {
        p.kind = STX_POSITION_ID;
        p.has_seq = 1;
    } else if (text[0] == '@' && !strchr(text, '-') &&
               pos_u64(text + 1, strlen(text + 1), &p.ms) == 0 && p.ms <= (unsigned long long)LLONG_MAX) {
        p.kind = STX_POSITION_TIME;
    } else if (pos_rfc3339(text, &t) == 0) {
        p.kind = STX_POSITION_TIME;
        p.ms = (unsigned long long)t;
    } else if (pos_duration(text, &t) == 0) {
        p.kind = STX_POSITION_TIME;
        p.ms = now_ms > t ? (unsigned long long)(now_ms - t) : 0;
    } else {
        return STX_EINVAL;
    }
    *out = p;
    return STX_OK;
}

static int pos_write(char *buf, size_t cap, const char *s)
{
    size_t n = strlen(s);
    if (n >= cap) return STX_ELIMIT;
    memcpy(buf, s, n + 1);
    return (int)n;
}

int stx_position_after(const stx_position *p, char *buf, size_t cap)
{
    if (!p || !buf) return STX_EINVAL;
    char id[STX_ID_MAX];
    stx_id v = {p->ms, p->seq};
    switch (p->kind) {
    case STX_POSITION_BEGINNING: return pos_write(buf, cap, "0-0");
    case STX_POSITION_END: return pos_write(buf, cap, "$");
    case STX_POSITION_ID:
        if (!p->has_seq) v.seq = 0;
        break;
    case STX_POSITION_TIME: v.seq = 0; break;
    default: return STX_EINVAL;
    }
    /* The id just before v: the cursor is exclusive. */
    if (v.seq > 0) v.seq--;
    else if (v.ms > 0) v = (stx_id){v.ms - 1, UINT64_MAX};
    stx_id_format(v, id);
    return pos_write(buf, cap, id);
}

int stx_position_until(const stx_position *p, char *buf, size_t cap)
{
    if (!p || !buf) return STX_EINVAL;
    char id[STX_ID_MAX];
    stx_id v = {p->ms, UINT64_MAX};
    switch (p->kind) {
    case STX_POSITION_BEGINNING: return pos_write(buf, cap, "0-0");
    case STX_POSITION_END: return pos_write(buf, cap, "+");
    case STX_POSITION_ID:
        if (p->has_seq) v.seq = p->seq;
        break;
    case STX_POSITION_TIME: break;
    default: return STX_EINVAL;
    }
    stx_id_format(v, id);
    return pos_write(buf, cap, id);
}
