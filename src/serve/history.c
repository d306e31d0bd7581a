/* The read-only routes (history, streams, a stream's groups, dead
 * letters) and the redrive of dead letters. */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "jsonin.h"
#include "serve.h"

#define MAX_LIMIT 1000
#define MAX_STREAMS 1000

int serve_parse_id(const char *s, uint64_t *ms, uint64_t *seq)
{
    char *end;
    if (!s || !*s || *s == '-' || *s == '+' || *s == ' ') return -1;
    errno = 0;
    unsigned long long a = strtoull(s, &end, 10), b = 0;
    if (errno || end == s) return -1;
    if (*end == '-') {
        const char *q = end + 1;
        if (!*q || *q == '-' || *q == '+' || *q == ' ') return -1;
        b = strtoull(q, &end, 10);
        if (errno || end == q) return -1;
    }
    if (*end) return -1;
    *ms = a;
    *seq = b;
    return 0;
}

int serve_id_cmp(const char *a, const char *b)
{
    uint64_t am = 0, as = 0, bm = 0, bs = 0;
    serve_parse_id(a, &am, &as);
    serve_parse_id(b, &bm, &bs);
    if (am != bm) return am < bm ? -1 : 1;
    if (as != bs) return as < bs ? -1 : 1;
    return 0;
}

int serve_partitions(server *srv, session *s, const char *stream, unsigned *partitions)
{
    *partitions = 0;
    /* A name with a brace (a partition's own stream among them) is never
     * a partitioned stream: STX_EINVAL says so. */
    int rc = stx_stream_partitions(srv->client, stream, partitions);
    if (rc == STX_ENOTFOUND || rc == STX_EINVAL) {
        *partitions = 0;
        return 0;
    }
    if (rc != STX_OK) {
        serve_stx_error(srv, s, rc, "partition count");
        return -1;
    }
    return 0;
}

int serve_partition_arg(session *s, unsigned partitions, unsigned *i)
{
    char buf[16];
    if (!serve_query(s->wsi, "partition=", buf, sizeof buf)) return 0;
    char *end;
    errno = 0;
    unsigned long v = strtoul(buf, &end, 10);
    if (partitions == 0) {
        serve_error(s, 400, "not_partitioned", NULL,
                    "partition= applies to a partitioned stream only");
        return -1;
    }
    if (!buf[0] || *end || buf[0] == '-' || buf[0] == '+' || errno || v >= partitions) {
        serve_error(s, 400, "bad_partition", NULL, "partition is 0 to %u", partitions - 1);
        return -1;
    }
    *i = (unsigned)v;
    return 1;
}

static void entry_json_part(jw *w, const stx_msg *m, int partition);

void serve_entry_json(jw *w, const stx_msg *m)
{
    /* An entry of a partition says which: its id alone is not unique. */
    int partition = stx_msg_partition(m);
    if (partition >= 0) entry_json_part(w, m, partition);
    else out_entry_json(w, m);
}

static void respond_json(session *s, int status, jw *w)
{
    size_t len = w->b.len;
    serve_respond(s, status, "application/json", jb_take(&w->b), len);
    jw_free(w);
}

static int query(session *s, const char *name, char *buf, int cap)
{
    return serve_query(s->wsi, name, buf, cap);
}

/* 410 with the oldest id still held. */
static void window_expired(server *srv, session *s, const char *stream, const char *cursor)
{
    stx_stream_info *info = NULL;
    char extra[200] = "";
    if (stx_stream_info_get(srv->client, stream, &info) == STX_OK)
        snprintf(extra, sizeof extra, "\"oldest\":\"%s\"", info->first_id);
    stx_stream_info_free(info);
    serve_error(s, 410, "window_expired", extra,
                "entries after %s were trimmed from the stream; resume from the oldest id still "
                "held",
                cursor);
}

/* {"id":..,"partition":..,"fields":{..}}: an entry of a partitioned stream. */
static void entry_json_part(jw *w, const stx_msg *m, int partition)
{
    jw_obj(w);
    jw_key(w, "id");
    jw_str(w, stx_msg_id(m));
    jw_key(w, "partition");
    jw_i64(w, partition);
    jw_key(w, "fields");
    jw_obj(w);
    size_t n = stx_msg_field_count(m);
    for (size_t i = 0; i < n; i++) {
        const char *name, *value;
        size_t nl, vl;
        if (stx_msg_field(m, i, &name, &nl, &value, &vl) != STX_OK) break;
        jw_keyn(w, name, nl);
        jw_strn(w, value, vl);
    }
    jw_obj_end(w);
    jw_obj_end(w);
}

/* 410 of a merged read: "oldest" is the first id still held by the
 * partition (the newest such, when several) that lost entries after the
 * cursor, and "partition" names it. */
static void window_expired_all(server *srv, session *s, const char *stream, unsigned parts,
                               const char *cursor)
{
    char oldest[48] = "", name[1100], extra[200] = "";
    long which = -1;
    for (unsigned i = 0; i < parts; i++) {
        stx_entries *e = NULL;
        stx_stream_info *info = NULL;
        if (stx_partition_name(name, sizeof name, stream, i) >= 0 &&
            stx_read_range(srv->client, name, cursor, "+", 1, &e) == STX_EWINDOW_EXPIRED &&
            stx_stream_info_get(srv->client, name, &info) == STX_OK && info->first_id[0] &&
            (!oldest[0] || serve_id_cmp(info->first_id, oldest) > 0)) {
            snprintf(oldest, sizeof oldest, "%s", info->first_id);
            which = (long)i;
        }
        stx_stream_info_free(info);
        stx_entries_free(e);
    }
    if (oldest[0])
        snprintf(extra, sizeof extra, "\"oldest\":\"%s\",\"partition\":%ld", oldest, which);
    serve_error(s, 410, "window_expired", extra[0] ? extra : NULL,
                "entries after %s were trimmed from a partition; resume from the oldest id "
                "still held",
                cursor);
}

void serve_events(server *srv, session *s, const char *stream)
{
    char after[64] = "", from[96] = "", to[96] = "", lim[32] = "";
    char cur[64] = "0-0", until[64] = "+";
    int has_after = query(s, "after=", after, sizeof after);
    int has_from = query(s, "from=", from, sizeof from), has_to = query(s, "to=", to, sizeof to);
    long long limit = 100;
    if (query(s, "limit=", lim, sizeof lim)) {
        char *end;
        limit = strtoll(lim, &end, 10);
        if (!lim[0] || *end || limit < 1 || limit > MAX_LIMIT) {
            serve_error(s, 400, "bad_limit", NULL, "limit is 1 to %d", MAX_LIMIT);
            return;
        }
    }
    if (has_after && has_from) {
        serve_error(s, 400, "bad_cursor", NULL, "give after or from, not both");
        return;
    }
    uint64_t ms, seq;
    if (has_after) {
        if (serve_parse_id(after, &ms, &seq) != 0) {
            serve_error(s, 400, "bad_cursor", NULL, "after is an entry id (MS-SEQ or MS), not '%.60s'",
                        after);
            return;
        }
        snprintf(cur, sizeof cur, "%s", after);
    }
    struct timespec ts;
    clock_gettime(CLOCK_REALTIME, &ts);
    long long now = (long long)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
    stx_position p;
    if (has_from) {
        if (stx_position_parse(from, now, &p) != STX_OK || stx_position_after(&p, cur, sizeof cur) < 0 ||
            strcmp(cur, "$") == 0) {
            serve_error(s, 400, "bad_cursor", NULL, "from is an RFC 3339 time, @MS or an id, not '%.60s'",
                        from);
            return;
        }
    }
    if (has_to) {
        if (stx_position_parse(to, now, &p) != STX_OK ||
            stx_position_until(&p, until, sizeof until) < 0) {
            serve_error(s, 400, "bad_cursor", NULL, "to is an RFC 3339 time, @MS or an id, not '%.60s'",
                        to);
            return;
        }
    }
    unsigned parts = 0, pi = 0;
    int one = 0;
    char pname[1100];
    if (serve_partitions(srv, s, stream, &parts) != 0 || (one = serve_partition_arg(s, parts, &pi)) < 0)
        return;
    if (one) {
        if (stx_partition_name(pname, sizeof pname, stream, pi) < 0) {
            serve_error(s, 400, "bad_name", NULL, "no partition name for '%.200s'", stream);
            return;
        }
    }
    stx_entries *e = NULL;
    int rc = parts > 0 && !one ? stx_read_range_all(srv->client, stream, cur, until, (size_t)limit, &e)
                               : stx_read_range(srv->client, one ? pname : stream, cur, until,
                                                (size_t)limit, &e);
    if (rc == STX_EWINDOW_EXPIRED) {
        if (parts > 0 && !one) window_expired_all(srv, s, stream, parts, cur);
        else window_expired(srv, s, one ? pname : stream, cur);
        stx_entries_free(e);
        return;
    }
    if (rc != STX_OK) {
        serve_stx_error(srv, s, rc, "read");
        stx_entries_free(e);
        return;
    }
    jw w;
    jw_init(&w);
    jw_obj(&w);
    jw_key(&w, "events");
    jw_arr(&w);
    for (size_t i = 0; i < stx_entries_count(e); i++) {
        serve_entry_json(&w, stx_entries_at(e, i));
    }
    jw_arr_end(&w);
    jw_key(&w, "next");
    jw_str(&w, stx_entries_last_id(e));
    jw_obj_end(&w);
    stx_entries_free(e);
    respond_json(s, 200, &w);
}

static void group_json(jw *w, const stx_group_info *g)
{
    jw_obj(w);
    jw_key(w, "name");
    jw_str(w, g->name);
    jw_key(w, "last_delivered");
    jw_str(w, g->last_delivered);
    jw_key(w, "offset");
    if (g->offset[0]) jw_str(w, g->offset);
    else jw_null(w);
    jw_key(w, "lag");
    if (g->lag >= 0) jw_i64(w, g->lag);
    else jw_null(w);
    jw_key(w, "pending");
    jw_i64(w, g->pending);
    jw_key(w, "epoch");
    jw_u64(w, g->epoch);
    jw_key(w, "state_keys");
    jw_i64(w, g->state_keys);
    jw_key(w, "dlq_length");
    jw_i64(w, g->dlq_length);
    jw_obj_end(w);
}

static void info_json(jw *w, const char *name, const stx_stream_info *info)
{
    jw_obj(w);
    jw_key(w, "name");
    jw_str(w, name);
    jw_key(w, "length");
    jw_i64(w, info->length);
    jw_key(w, "first_id");
    jw_str(w, info->first_id);
    jw_key(w, "last_id");
    jw_str(w, info->last_id);
    jw_key(w, "entries_added");
    jw_i64(w, info->entries_added);
    jw_key(w, "groups");
    jw_arr(w);
    for (size_t g = 0; g < info->ngroups; g++) group_json(w, &info->groups[g]);
    jw_arr_end(w);
    jw_obj_end(w);
}

/* A partitioned stream: its count, total length and each partition's
 * info (a partition's groups are its own). */
static void partitioned_info(server *srv, session *s, const char *stream, unsigned parts)
{
    jw w;
    jw_init(&w);
    jw_obj(&w);
    jw_key(&w, "name");
    jw_str(&w, stream);
    jw_key(&w, "partitions");
    jw_u64(&w, parts);
    jw a;
    jw_init(&a);
    jw_arr(&a);
    long long total = 0;
    char name[1100];
    for (unsigned i = 0; i < parts; i++) {
        stx_stream_info *info = NULL;
        if (stx_partition_name(name, sizeof name, stream, i) < 0) continue;
        int rc = stx_stream_info_get(srv->client, name, &info);
        if (rc != STX_OK && rc != STX_ENOTFOUND) {
            stx_stream_info_free(info);
            jw_free(&a);
            jw_free(&w);
            serve_stx_error(srv, s, rc, "info");
            return;
        }
        if (rc == STX_OK) {
            info_json(&a, name, info);
            total += info->length;
        } else {
            /* A partition appears with its first entry or group. */
            jw_obj(&a);
            jw_key(&a, "name");
            jw_str(&a, name);
            jw_key(&a, "length");
            jw_i64(&a, 0);
            jw_key(&a, "groups");
            jw_arr(&a);
            jw_arr_end(&a);
            jw_obj_end(&a);
        }
        stx_stream_info_free(info);
    }
    jw_arr_end(&a);
    jw_key(&w, "length");
    jw_i64(&w, total);
    jw_key(&w, "streams");
    jw_raw(&w, a.b.p, a.b.len);
    jw_free(&a);
    jw_obj_end(&w);
    respond_json(s, 200, &w);
}

void serve_stream_info(server *srv, session *s, const char *stream)
{
    unsigned parts = 0;
    if (serve_partitions(srv, s, stream, &parts) != 0) return;
    if (parts > 0) {
        partitioned_info(srv, s, stream, parts);
        return;
    }
    stx_stream_info *info = NULL;
    int rc = stx_stream_info_get(srv->client, stream, &info);
    if (rc == STX_ENOTFOUND) {
        stx_stream_info_free(info);
        serve_error(s, 404, "not_found", NULL, "no stream '%.200s'", stream);
        return;
    }
    if (rc != STX_OK) {
        stx_stream_info_free(info);
        serve_stx_error(srv, s, rc, "info");
        return;
    }
    jw w;
    jw_init(&w);
    info_json(&w, stream, info);
    stx_stream_info_free(info);
    respond_json(s, 200, &w);
}

/* Names of streams: every stream key but streamtx's own (dead letters). */
int serve_scan_streams(server *srv, char ***out, size_t *n);
int serve_scan_streams(server *srv, char ***out, size_t *n)
{
    char cursor[32] = "0";
    *out = NULL;
    *n = 0;
    size_t cap = 0;
    do {
        const char *argv[] = {"SCAN", cursor, "COUNT", "1000", "TYPE", "stream"};
        stx_reply *r = NULL;
        int rc = stx_client_call(srv->client, 6, argv, NULL, &r);
        if (rc != STX_OK) return rc;
        if (stx_reply_type_of(r) != STX_REPLY_ARRAY || stx_reply_count(r) != 2) {
            stx_reply_free(r);
            return STX_EREDIS;
        }
        snprintf(cursor, sizeof cursor, "%s", stx_reply_string(stx_reply_at(r, 0), NULL));
        const stx_reply *keys = stx_reply_at(r, 1);
        for (size_t i = 0; i < stx_reply_count(keys) && *n < MAX_STREAMS; i++) {
            size_t kl;
            const char *k = stx_reply_string(stx_reply_at(keys, i), &kl);
            const char *close = k ? memchr(k, '}', kl) : NULL;
            if (!k || memchr(k, '\0', kl) || (k[0] == '{' && close && strncmp(close, "}:stx:", 6) == 0))
                continue;
            if (*n == cap) {
                cap = cap ? cap * 2 : 16;
                char **p = realloc(*out, cap * sizeof *p);
                if (!p) break;
                *out = p;
            }
            (*out)[(*n)++] = strdup(k);
        }
        stx_reply_free(r);
    } while (strcmp(cursor, "0") != 0 && *n < MAX_STREAMS);
    for (size_t i = 1; i < *n; i++) /* sorted: SCAN's order is no order */
        for (size_t j = i; j > 0 && strcmp((*out)[j - 1], (*out)[j]) > 0; j--) {
            char *t = (*out)[j];
            (*out)[j] = (*out)[j - 1];
            (*out)[j - 1] = t;
        }
    return STX_OK;
}

void serve_streams(server *srv, session *s)
{
    char **names;
    size_t n;
    int rc = serve_scan_streams(srv, &names, &n);
    if (rc != STX_OK) {
        serve_stx_error(srv, s, rc, "SCAN");
        return;
    }
    jw w;
    jw_init(&w);
    jw_obj(&w);
    jw_key(&w, "streams");
    jw_arr(&w);
    for (size_t i = 0; i < n; i++) {
        stx_stream_info *info = NULL;
        if (stx_stream_info_get(srv->client, names[i], &info) == STX_OK) info_json(&w, names[i], info);
        stx_stream_info_free(info);
        free(names[i]);
    }
    free(names);
    jw_arr_end(&w);
    jw_obj_end(&w);
    respond_json(s, 200, &w);
}

void serve_dlq(server *srv, session *s, const char *stream, const char *group)
{
    char after[64] = "0", lim[32];
    long long limit = 100;
    uint64_t ms, seq;
    if (query(s, "after=", after, sizeof after) && serve_parse_id(after, &ms, &seq) != 0) {
        serve_error(s, 400, "bad_cursor", NULL, "after is an entry id");
        return;
    }
    if (query(s, "limit=", lim, sizeof lim)) {
        char *end;
        limit = strtoll(lim, &end, 10);
        if (!lim[0] || *end || limit < 1 || limit > MAX_LIMIT) {
            serve_error(s, 400, "bad_limit", NULL, "limit is 1 to %d", MAX_LIMIT);
            return;
        }
    }
    stx_entries *e = NULL;
    int rc = stx_dlq_list(srv->client, stream, group, after, (size_t)limit, &e);
    if (rc != STX_OK) {
        stx_entries_free(e);
        serve_stx_error(srv, s, rc, "dlq");
        return;
    }
    jw w;
    jw_init(&w);
    jw_obj(&w);
    jw_key(&w, "entries");
    jw_arr(&w);
    for (size_t i = 0; i < stx_entries_count(e); i++) serve_entry_json(&w, stx_entries_at(e, i));
    jw_arr_end(&w);
    jw_key(&w, "next");
    jw_str(&w, stx_entries_last_id(e));
    jw_obj_end(&w);
    stx_entries_free(e);
    respond_json(s, 200, &w);
}

void serve_redrive(server *srv, session *s, const char *stream, const char *group)
{
    const char **ids = NULL;
    size_t n = 0;
    jdoc d;
    memset(&d, 0, sizeof d);
    char err[200];
    if (s->body_len > 0) {
        if (jdoc_parse(&d, s->body, s->body_len, 100001, err, sizeof err) != 0) {
            serve_error(s, 400, "bad_json", NULL, "%s", err);
            jdoc_free(&d);
            return;
        }
        long a = jdoc_member(&d, 0, "ids");
        if (d.v[0].type != JV_OBJ || a < 0 || d.v[a].type != JV_ARR || d.v[a].n == 0) {
            serve_error(s, 400, "bad_request", NULL,
                        "the body is {\"ids\":[ID,...]} (or empty for every dead letter)");
            jdoc_free(&d);
            return;
        }
        ids = calloc(d.v[a].n, sizeof *ids);
        size_t i = (size_t)a + 1;
        for (uint32_t k = 0; ids && k < d.v[a].n; k++, i = d.v[i].end) {
            uint64_t ms, seq;
            if (d.v[i].type != JV_STR || serve_parse_id(d.v[i].s, &ms, &seq) != 0) {
                serve_error(s, 400, "bad_cursor", NULL, "ids[%u] is not an entry id", k);
                free(ids);
                jdoc_free(&d);
                return;
            }
            ids[n++] = d.v[i].s;
        }
    }
    size_t moved = 0;
    int rc = stx_dlq_redrive(srv->client, stream, group, ids, n, &moved);
    free(ids);
    jdoc_free(&d);
    if (rc != STX_OK) {
        serve_stx_error(srv, s, rc, "redrive");
        return;
    }
    jw w;
    jw_init(&w);
    jw_obj(&w);
    jw_key(&w, "moved");
    jw_u64(&w, moved);
    jw_obj_end(&w);
    respond_json(s, 200, &w);
}
