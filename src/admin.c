/* Administration: moving a group (reset), trimming safely, reading state
 * from Redis, and describing a stream with its groups. */
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "reply.h"
#include "client.h"
#include "cluster.h"
#include "keys.h"
#include "processor.h" /* stx_random_hex */
#include "statemap.h"
#include "text.h"

/* Tries of the trim when the group list changes under it. */
#define TRIM_ATTEMPTS 5

static int check_names(stx_client *c, const char *what, const char *stream, const char *group)
{
    c->errmsg[0] = '\0';
    if (!stream || !*stream) return stx_client_fail(c, STX_EINVAL, "%s: empty stream name", what);
    if (group && !*group) return stx_client_fail(c, STX_EINVAL, "%s: empty group name", what);
    return STX_OK;
}

static int oom(stx_client *c, const char *what)
{
    return stx_client_fail(c, STX_ENOMEM, "%s: out of memory", what);
}

/* The statuses the admin scripts share. */
static int script_status(stx_client *c, const redisReply *r, const char *what)
{
    const char *a = stx_client_elem_str(r, 1), *b = stx_client_elem_str(r, 2);
    if (stx_client_reply_is(r, "NOGROUP"))
        return stx_client_fail(c, STX_ENOGROUP, "%s: %s", what, a ? a : "no such group");
    if (stx_client_reply_is(r, "WRONGTYPE"))
        return stx_client_fail(c, STX_EWRONGTYPE, "%s: key '%s' holds a %s", what, a ? a : "?",
                               b ? b : "?");
    if (stx_client_reply_is(r, "BADARGS"))
        return stx_client_fail(c, STX_EINVAL, "%s: %s", what, a ? a : "bad arguments");
    return stx_client_fail(c, STX_EREDIS, "%s: unexpected reply from the script", what);
}

/* ---- reset ------------------------------------------------------------- */

/* The id processing resumes after, from a position: the start ("0-0"),
 * the end ("$", resolved by the script), an id itself (the whole
 * millisecond for MS alone), or just before a time (its entries are
 * processed again).  Durations count back from now. */
static int reset_target(stx_client *c, const char *to, char *out)
{
    struct timespec ts;
    clock_gettime(CLOCK_REALTIME, &ts);
    long long now = (long long)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
    stx_position p;
    if (stx_position_parse(to, now, &p) == STX_OK) {
        int n = p.kind == STX_POSITION_END    ? (strcpy(out, "$"), 1)
                : p.kind == STX_POSITION_TIME ? stx_position_after(&p, out, STX_ID_MAX)
                                              : stx_position_until(&p, out, STX_ID_MAX);
        if (n >= 0) return STX_OK;
    }
    char shown[128];
    stx_printable(to, strlen(to), shown, sizeof shown);
    return stx_client_fail(c, STX_EINVALID_CURSOR,
                           "reset: bad position '%s': expected " STX_POSITION_GRAMMAR, shown);
}

/* The GAP reply of the reset script: a clearing reset after entries were
 * trimmed or deleted after the target. */
static int reset_gap(stx_client *c, const char *stream, const redisReply *r)
{
    const char *target = stx_client_elem_str(r, 1), *max_deleted = stx_client_elem_str(r, 2),
               *first = stx_client_elem_str(r, 3);
    char where[128] = "";
    if (first && *first) snprintf(where, sizeof where, "; the first retained entry is %s", first);
    return stx_client_fail(c, STX_EWINDOW_EXPIRED,
                           "reset: entries of stream '%.200s' after %s were trimmed or deleted "
                           "(highest deleted id %s%s): rebuilding the state from what is left "
                           "would give a different state; nothing changed (--force, or the "
                           "flag STX_RESET_FORCE, resets anyway)",
                           stream, target ? target : "?", max_deleted ? max_deleted : "?", where);
}

int stx_group_reset(stx_client *c, const char *stream, const char *group, const char *to,
                    int flags)
{
    if (!c) return STX_EINVAL;
    int rc = check_names(c, "reset", stream, group ? group : "");
    if (rc != STX_OK) return rc;
    if (flags & ~(STX_RESET_CLEAR_STATE | STX_RESET_REEMIT | STX_RESET_FORCE))
        return stx_client_fail(c, STX_EINVAL, "reset: unknown flags 0x%x", (unsigned)flags);
    if (!to) return stx_client_fail(c, STX_EINVALID_CURSOR, "reset: no target given");
    char target[STX_ID_MAX], lineage[33];
    if ((rc = reset_target(c, to, target)) != STX_OK) return rc;
    if ((rc = stx_client_ready(c)) != STX_OK) return rc;
    stx_random_hex(lineage, 16);
    char *meta = stx_key_alloc(stream, group, "meta"), *state = stx_key_alloc(stream, group, "state"),
         *attempts = stx_key_alloc(stream, group, "attempts");
    if (!meta || !state || !attempts) {
        free(meta);
        free(state);
        free(attempts);
        return oom(c, "reset");
    }
    stx_client_eval_begin(c);
    stx_client_eval_str(c, stream);
    stx_client_eval_str(c, meta);
    stx_client_eval_str(c, state);
    stx_client_eval_str(c, attempts);
    stx_client_eval_str(c, group);
    stx_client_eval_str(c, target);
    stx_client_eval_str(c, lineage);
    stx_client_eval_str(c, flags & STX_RESET_CLEAR_STATE ? "1" : "0");
    stx_client_eval_str(c, flags & STX_RESET_REEMIT ? "1" : "0");
    stx_client_eval_str(c, flags & STX_RESET_FORCE ? "1" : "0");
    redisReply *r;
    rc = stx_script_run(&c->scripts, &c->conn, STX_SCRIPT_RESET, &c->argv, 4, &r);
    stx_argv_reset(&c->argv);
    free(meta);
    free(state);
    free(attempts);
    if (rc != STX_OK) return stx_client_fail(c, rc, "reset: %s", c->conn.err);
    if (stx_client_reply_is(r, "GAP")) rc = reset_gap(c, stream, r);
    else if (!stx_client_reply_is(r, "OK")) rc = script_status(c, r, "reset");
    stx_reply_release(r);
    return rc;
}

/* ---- delete a group ---------------------------------------------------- */

int stx_group_delete(stx_client *c, const char *stream, const char *group,
                     long long *deleted_keys)
{
    if (deleted_keys) *deleted_keys = 0;
    if (!c) return STX_EINVAL;
    int rc = check_names(c, "group delete", stream, group ? group : "");
    if (rc != STX_OK) return rc;
    if ((rc = stx_client_ready(c)) != STX_OK) return rc;
    static const char *const kinds[] = {"meta", "state", "dlq", "attempts", "live"};
    enum { NKINDS = sizeof kinds / sizeof kinds[0] };
    char *keys[NKINDS] = {NULL};
    for (size_t i = 0; i < NKINDS; i++)
        if (!(keys[i] = stx_key_alloc(stream, group, kinds[i]))) rc = STX_ENOMEM;
    if (rc != STX_OK) {
        for (size_t i = 0; i < NKINDS; i++) free(keys[i]);
        return oom(c, "group delete");
    }
    /* The group first: a stream of another type fails here, before any key
     * is touched.  A missing stream has no group, yet its keys may be left
     * (a stream deleted under a group): those still go. */
    const char *destroy[] = {"XGROUP", "DESTROY", stream, group};
    redisReply *r = NULL;
    long long destroyed = 0, deleted = 0;
    rc = stx_conn_command(&c->conn, &r, 4, destroy, NULL);
    if (rc == STX_OK && r->type == REDIS_REPLY_INTEGER) {
        destroyed = r->integer;
    } else if (rc == STX_EWRONGTYPE || (rc != STX_OK && strstr(c->conn.err, "WRONGTYPE"))) {
        rc = stx_client_fail(c, STX_EWRONGTYPE, "group delete: key '%.200s' is not a stream",
                             stream);
    } else if (rc == STX_EREDIS && strstr(c->conn.err, "requires the key to exist")) {
        rc = STX_OK;
    } else if (rc != STX_OK) {
        rc = stx_client_fail(c, rc, "group delete: XGROUP DESTROY: %s", c->conn.err);
    } else {
        rc = stx_client_fail(c, STX_EREDIS, "group delete: unexpected XGROUP DESTROY reply");
    }
    if (r) stx_reply_release(r);
    r = NULL;
    if (rc == STX_OK) {
        const char *del[] = {"DEL", keys[0], keys[1], keys[2], keys[3]};
        rc = stx_conn_command(&c->conn, &r, 5, del, NULL);
        if (rc != STX_OK) rc = stx_client_fail(c, rc, "group delete: DEL: %s", c->conn.err);
        else if (r->type == REDIS_REPLY_INTEGER) deleted = r->integer;
        if (r) stx_reply_release(r);
    }
    for (size_t i = 0; i < NKINDS; i++) free(keys[i]);
    if (rc != STX_OK) return rc;
    if (deleted_keys) *deleted_keys = deleted;
    if (!destroyed && !deleted)
        return stx_client_fail(c, STX_ENOGROUP, "group delete: stream '%.200s' has no group '%.200s'",
                               stream, group);
    return STX_OK;
}

/* ---- safe trim --------------------------------------------------------- */

/* Names of the groups of stream (pointers into *owner).  A stream that
 * does not exist has none. */
static int list_groups(stx_client *c, const char *stream, redisReply **owner, const char ***names,
                       size_t *n)
{
    const char *argv[] = {"XINFO", "GROUPS", stream};
    *owner = NULL;
    *names = NULL;
    *n = 0;
    redisReply *r;
    int rc = stx_conn_command(&c->conn, &r, 3, argv, NULL);
    if (rc == STX_EREDIS && strstr(c->conn.err, "no such key")) return STX_OK;
    if (rc != STX_OK) return stx_client_fail(c, rc, "trim: XINFO GROUPS: %s", c->conn.err);
    if (r->type != REDIS_REPLY_ARRAY) {
        stx_reply_release(r);
        return stx_client_fail(c, STX_EREDIS, "trim: unexpected XINFO GROUPS reply");
    }
    *names = calloc(r->elements ? r->elements : 1, sizeof **names);
    if (!*names) {
        stx_reply_release(r);
        return oom(c, "trim");
    }
    for (size_t i = 0; i < r->elements; i++) {
        const redisReply *g = r->element[i];
        const char *name = NULL;
        for (size_t j = 0; g->type == REDIS_REPLY_ARRAY && j + 1 < g->elements; j += 2)
            if (g->element[j]->type == REDIS_REPLY_STRING && strcmp(g->element[j]->str, "name") == 0 &&
                g->element[j + 1]->type == REDIS_REPLY_STRING)
                name = g->element[j + 1]->str;
        if (!name) {
            free(*names);
            *names = NULL;
            stx_reply_release(r);
            return stx_client_fail(c, STX_EREDIS, "trim: XINFO GROUPS reply without a name");
        }
        (*names)[(*n)++] = name;
    }
    *owner = r;
    return STX_OK;
}

/* One attempt: 1 when the group list changed and the trim must be tried
 * again, else STX_OK or an error. */
static int trim_once(stx_client *c, const char *stream, long long maxlen, long long max_age_ms,
                     const char *keep_after, long long *deleted)
{
    redisReply *groups;
    const char **names;
    size_t n;
    int rc = list_groups(c, stream, &groups, &names, &n);
    if (rc != STX_OK) return rc;
    char **metas = calloc(n ? n : 1, sizeof *metas);
    if (!metas) rc = oom(c, "trim");
    for (size_t i = 0; rc == STX_OK && i < n; i++)
        if (!(metas[i] = stx_key_alloc(stream, names[i], "meta"))) rc = oom(c, "trim");
    redisReply *r = NULL;
    if (rc == STX_OK) {
        stx_client_eval_begin(c);
        stx_client_eval_str(c, stream);
        for (size_t i = 0; i < n; i++) stx_client_eval_str(c, metas[i]);
        stx_argv_add_u64(&c->argv, n);
        for (size_t i = 0; i < n; i++) stx_client_eval_str(c, names[i]);
        stx_argv_add_u64(&c->argv, (unsigned long long)maxlen);
        stx_argv_add_u64(&c->argv, (unsigned long long)max_age_ms);
        if (keep_after) stx_client_eval_str(c, keep_after);
        rc = stx_script_run(&c->scripts, &c->conn, STX_SCRIPT_TRIM, &c->argv, 1 + n, &r);
        stx_argv_reset(&c->argv);
        if (rc != STX_OK) stx_client_fail(c, rc, "trim: %s", c->conn.err);
    }
    if (rc == STX_OK) {
        if (stx_client_reply_is(r, "RETRY")) {
            rc = 1;
        } else if (stx_client_reply_is(r, "OK") && r->elements == 3 &&
                   r->element[1]->type == REDIS_REPLY_INTEGER) {
            *deleted = r->element[1]->integer;
        } else {
            rc = script_status(c, r, "trim");
        }
    }
    if (r) stx_reply_release(r);
    for (size_t i = 0; metas && i < n; i++) free(metas[i]);
    free(metas);
    free(names);
    if (groups) stx_reply_release(groups);
    return rc;
}

int stx_trim_safe(stx_client *c, const char *stream, long long maxlen, long long max_age_ms,
                  long long *deleted)
{
    return stx_trim_safe_bounded(c, stream, maxlen, max_age_ms, NULL, deleted);
}

int stx_trim_safe_bounded(stx_client *c, const char *stream, long long maxlen,
                          long long max_age_ms, const char *keep_after, long long *deleted)
{
    if (!c) return STX_EINVAL;
    if (deleted) *deleted = 0;
    int rc = check_names(c, "trim", stream, NULL);
    if (rc != STX_OK) return rc;
    char bound[STX_ID_MAX];
    if (keep_after) {
        stx_id b;
        if (strcmp(keep_after, "0") == 0) keep_after = "0-0";
        if (stx_id_parse(keep_after, strlen(keep_after), &b) != 0)
            return stx_client_fail(c, STX_EINVALID_CURSOR, "trim: bound is not an id (MS-SEQ)");
        stx_id_format(b, bound);
        keep_after = bound;
    }
    if (maxlen < 0 || max_age_ms < 0)
        return stx_client_fail(c, STX_EINVAL, "trim: negative maxlen or max_age_ms");
    if ((rc = stx_client_ready(c)) != STX_OK) return rc;
    long long n = 0;
    for (int attempt = 0; attempt < TRIM_ATTEMPTS; attempt++) {
        rc = trim_once(c, stream, maxlen, max_age_ms, keep_after, &n);
        if (rc != 1) {
            if (rc == STX_OK && deleted) *deleted = n;
            return rc;
        }
    }
    return stx_client_fail(c, STX_EREDIS,
                           "trim: the consumer groups of stream '%.200s' changed %d times while "
                           "trimming; nothing was trimmed",
                           stream, TRIM_ATTEMPTS);
}

/* ---- state ------------------------------------------------------------- */

int stx_state_read(stx_client *c, const char *stream, const char *group, const void *key,
                   size_t key_len, void **value, size_t *value_len)
{
    if (!c || !value || !value_len || (!key && key_len)) return STX_EINVAL;
    *value = NULL;
    *value_len = 0;
    int rc = check_names(c, "state_read", stream, group ? group : "");
    if (rc != STX_OK) return rc;
    if ((rc = stx_client_ready(c)) != STX_OK) return rc;
    char *name = stx_key_alloc(stream, group, "state");
    if (!name) return oom(c, "state_read");
    const char *argv[] = {"HGET", name, key ? key : ""};
    size_t lens[] = {4, strlen(name), key_len};
    redisReply *r;
    rc = stx_client_command(c, "state_read (HGET)", &r, 3, argv, lens);
    free(name);
    if (rc != STX_OK) return rc;
    if (r->type == REDIS_REPLY_NIL) {
        stx_reply_release(r);
        char shown[128];
        stx_printable(key, key_len, shown, sizeof shown);
        return stx_client_fail(c, STX_ENOTFOUND, "state_read: no key '%s' in the state of "
                               "stream '%.200s' group '%.200s'", shown, stream, group);
    }
    if (r->type != REDIS_REPLY_STRING) {
        stx_reply_release(r);
        return stx_client_fail(c, STX_EREDIS, "state_read: unexpected HGET reply");
    }
    char *copy = malloc(r->len + 1); /* NUL-terminated for convenience */
    if (!copy) {
        stx_reply_release(r);
        return oom(c, "state_read");
    }
    memcpy(copy, r->str, r->len);
    copy[r->len] = '\0';
    *value = copy;
    *value_len = r->len;
    stx_reply_release(r);
    return STX_OK;
}

/* HSCAN may return a field more than once when the hash is resized during
 * the walk; a set of the keys seen keeps each to one call of fn. */
int stx_state_scan(stx_client *c, const char *stream, const char *group,
                   int (*fn)(void *ud, const void *key, size_t key_len, const void *value,
                             size_t value_len),
                   void *ud)
{
    if (!c || !fn) return STX_EINVAL;
    int rc = check_names(c, "state_scan", stream, group ? group : "");
    if (rc != STX_OK) return rc;
    if ((rc = stx_client_ready(c)) != STX_OK) return rc;
    char *name = stx_key_alloc(stream, group, "state");
    if (!name) return oom(c, "state_scan");
    stx_statemap seen;
    stx_sm_init(&seen);
    char cursor[32] = "0";
    do {
        const char *argv[] = {"HSCAN", name, cursor, "COUNT", "1000"};
        redisReply *r;
        if ((rc = stx_client_command(c, "state_scan (HSCAN)", &r, 5, argv, NULL)) != STX_OK) break;
        if (r->type != REDIS_REPLY_ARRAY || r->elements != 2 ||
            r->element[0]->type != REDIS_REPLY_STRING || r->element[0]->len >= sizeof cursor ||
            r->element[1]->type != REDIS_REPLY_ARRAY || r->element[1]->elements % 2) {
            stx_reply_release(r);
            rc = stx_client_fail(c, STX_EREDIS, "state_scan: unexpected HSCAN reply");
            break;
        }
        memcpy(cursor, r->element[0]->str, r->element[0]->len + 1);
        const redisReply *kv = r->element[1];
        for (size_t i = 0; rc == STX_OK && i < kv->elements; i += 2) {
            const redisReply *k = kv->element[i], *v = kv->element[i + 1];
            if (k->type != REDIS_REPLY_STRING || v->type != REDIS_REPLY_STRING) continue;
            if (stx_sm_find(&seen, k->str, k->len)) continue;
            if (!stx_sm_put(&seen, k->str, k->len, NULL, 0, 0)) rc = oom(c, "state_scan");
            else rc = fn(ud, k->str, k->len, v->str, v->len);
        }
        stx_reply_release(r);
    } while (rc == STX_OK && strcmp(cursor, "0") != 0);
    stx_sm_free(&seen);
    free(name);
    return rc;
}

/* ---- stream info ------------------------------------------------------- */

void stx_stream_info_free(stx_stream_info *info)
{
    if (!info) return;
    for (size_t i = 0; i < info->ngroups; i++) free(info->groups[i].name);
    free(info->groups);
    free(info);
}

static const redisReply *field_of(const redisReply *r, const char *name)
{
    for (size_t i = 0; r->type == REDIS_REPLY_ARRAY && i + 1 < r->elements; i += 2) {
        const redisReply *n = r->element[i];
        if ((n->type == REDIS_REPLY_STRING || n->type == REDIS_REPLY_STATUS) && strcmp(n->str, name) == 0)
            return r->element[i + 1];
    }
    return NULL;
}

static long long int_of(const redisReply *v, long long otherwise)
{
    return v && v->type == REDIS_REPLY_INTEGER ? v->integer : otherwise;
}

/* One group of an XINFO GROUPS reply into g (name copied). */
static int group_of(const redisReply *r, stx_group_info *g)
{
    const redisReply *name = field_of(r, "name"), *last = field_of(r, "last-delivered-id");
    if (!name || name->type != REDIS_REPLY_STRING || !last || last->type != REDIS_REPLY_STRING ||
        last->len >= sizeof g->last_delivered)
        return STX_EREDIS;
    if (!(g->name = strdup(name->str))) return STX_ENOMEM;
    memcpy(g->last_delivered, last->str, last->len + 1);
    g->pending = int_of(field_of(r, "pending"), 0);
    g->lag = int_of(field_of(r, "lag"), -1); /* nil when Redis cannot tell */
    return STX_OK;
}

/* XINFO STREAM and XINFO GROUPS at one moment (MULTI/EXEC). */
static int read_stream_and_groups(stx_client *c, const char *stream, redisReply **exec)
{
    const char *multi[] = {"MULTI"}, *ex[] = {"EXEC"};
    const char *xs[] = {"XINFO", "STREAM", stream}, *xg[] = {"XINFO", "GROUPS", stream};
    int rc = stx_conn_append(&c->conn, 1, multi, NULL);
    if (rc == STX_OK) rc = stx_conn_append(&c->conn, 3, xs, NULL);
    if (rc == STX_OK) rc = stx_conn_append(&c->conn, 3, xg, NULL);
    if (rc == STX_OK) rc = stx_conn_append(&c->conn, 1, ex, NULL);
    if (rc != STX_OK) return stx_client_fail(c, rc, "stream_info: %s", c->conn.err);
    redisReply *r[4];
    rc = stx_client_read_all(c, 4, r);
    for (int i = 0; i < 3; i++)
        if (r[i]) stx_reply_release(r[i]);
    *exec = r[3];
    if (rc != STX_OK) {
        if (*exec) stx_reply_release(*exec);
        *exec = NULL;
        return stx_client_fail(c, rc, "stream_info: %s", c->conn.err);
    }
    const redisReply *x = *exec;
    if (x->type != REDIS_REPLY_ARRAY || x->elements != 2) {
        rc = stx_client_fail(c, STX_EREDIS, "stream_info: unexpected EXEC reply");
    } else {
        for (size_t i = 0; i < 2 && rc == STX_OK; i++) {
            const redisReply *e = x->element[i];
            if (e->type != REDIS_REPLY_ERROR) continue;
            if (strstr(e->str, "no such key"))
                rc = stx_client_fail(c, STX_ENOTFOUND, "stream_info: stream '%.200s' does not exist",
                                     stream);
            else if (stx_conn_reply_code(e->str) == STX_EWRONGTYPE)
                rc = stx_client_fail(c, STX_EWRONGTYPE, "stream_info: key '%.200s' is not a stream",
                                     stream);
            else
                rc = stx_client_fail(c, stx_conn_reply_code(e->str), "stream_info: stream '%.200s': %s",
                                     stream, e->str);
        }
    }
    if (rc != STX_OK) {
        stx_reply_release(*exec);
        *exec = NULL;
    }
    return rc;
}

/* The streamtx side of each group: meta (epoch, offset), state size and
 * dead-letter length, pipelined (three commands per group). */
static int read_streamtx_parts(stx_client *c, const char *stream, stx_stream_info *info)
{
    size_t n = info->ngroups;
    char **keys = calloc(3 * n + 1, sizeof *keys);
    redisReply **r = calloc(3 * n + 1, sizeof *r);
    int rc = keys && r ? STX_OK : oom(c, "stream_info");
    for (size_t i = 0; rc == STX_OK && i < n; i++) {
        static const char *const kinds[] = {"meta", "state", "dlq"};
        for (int k = 0; k < 3; k++)
            if (!(keys[3 * i + k] = stx_key_alloc(stream, info->groups[i].name, kinds[k])))
                rc = oom(c, "stream_info");
    }
    for (size_t i = 0; rc == STX_OK && i < n; i++) {
        const char *hm[] = {"HMGET", keys[3 * i], "epoch", "offset"};
        const char *hl[] = {"HLEN", keys[3 * i + 1]}, *xl[] = {"XLEN", keys[3 * i + 2]};
        rc = stx_conn_append(&c->conn, 4, hm, NULL);
        if (rc == STX_OK) rc = stx_conn_append(&c->conn, 2, hl, NULL);
        if (rc == STX_OK) rc = stx_conn_append(&c->conn, 2, xl, NULL);
        if (rc != STX_OK) stx_client_fail(c, rc, "stream_info: %s", c->conn.err);
    }
    if (rc == STX_OK && n && (rc = stx_client_read_all(c, 3 * n, r)) != STX_OK) {
        /* Name the key whose reply failed (NULL in r), and what it is. */
        static const char *const what[] = {"meta hash", "state hash", "dead-letter stream"};
        size_t bad = 0;
        while (bad + 1 < 3 * n && r[bad]) bad++;
        stx_client_fail(c, rc, "stream_info: key '%.300s' (the %s of group '%.200s'): %s",
                        keys[bad], what[bad % 3], info->groups[bad / 3].name, c->conn.err);
    }
    for (size_t i = 0; rc == STX_OK && i < n; i++) {
        stx_group_info *g = &info->groups[i];
        const redisReply *hm = r[3 * i];
        if (hm->type != REDIS_REPLY_ARRAY || hm->elements != 2) {
            rc = stx_client_fail(c, STX_EREDIS, "stream_info: unexpected HMGET reply");
            break;
        }
        const redisReply *epoch = hm->element[0], *offset = hm->element[1];
        if (epoch->type == REDIS_REPLY_STRING) g->epoch = strtoull(epoch->str, NULL, 10);
        if (epoch->type == REDIS_REPLY_STRING || offset->type == REDIS_REPLY_STRING) {
            /* A streamtx group: started at least once. */
            if (offset->type == REDIS_REPLY_STRING && offset->len < sizeof g->offset)
                memcpy(g->offset, offset->str, offset->len + 1);
            else
                strcpy(g->offset, "0-0");
        }
        g->state_keys = int_of(r[3 * i + 1], 0);
        g->dlq_length = int_of(r[3 * i + 2], 0);
    }
    for (size_t i = 0; r && i < 3 * n; i++)
        if (r[i]) stx_reply_release(r[i]);
    for (size_t i = 0; keys && i < 3 * n; i++) free(keys[i]);
    free(keys);
    free(r);
    return rc;
}

int stx_stream_info_get(stx_client *c, const char *stream, stx_stream_info **out)
{
    if (!c || !out) return STX_EINVAL;
    *out = NULL;
    int rc = check_names(c, "stream_info", stream, NULL);
    if (rc != STX_OK) return rc;
    if ((rc = stx_client_ready(c)) != STX_OK) return rc;
    redisReply *x;
    if ((rc = read_stream_and_groups(c, stream, &x)) != STX_OK) return rc;
    stx_xinfo xi;
    const redisReply *groups = x->element[1];
    stx_stream_info *info = calloc(1, sizeof *info);
    if (!info) rc = oom(c, "stream_info");
    else if (stx_xinfo_parse(x->element[0], &xi) != STX_OK || groups->type != REDIS_REPLY_ARRAY)
        rc = stx_client_fail(c, STX_EREDIS, "stream_info: unexpected XINFO reply");
    else if (groups->elements && !(info->groups = calloc(groups->elements, sizeof *info->groups)))
        rc = oom(c, "stream_info");
    if (rc == STX_OK) {
        info->length = xi.length;
        info->entries_added = xi.entries_added;
        strcpy(info->first_id, xi.first_id);
        strcpy(info->last_id, xi.last_id);
        stx_id_format(xi.max_deleted, info->max_deleted_id);
        for (size_t i = 0; rc == STX_OK && i < groups->elements; i++) {
            rc = group_of(groups->element[i], &info->groups[i]);
            if (rc == STX_OK) info->ngroups++;
            else rc = stx_client_fail(c, rc, "stream_info: unexpected XINFO GROUPS reply");
        }
    }
    stx_reply_release(x);
    if (rc == STX_OK) rc = read_streamtx_parts(c, stream, info);
    if (rc != STX_OK) {
        stx_stream_info_free(info);
        return rc;
    }
    *out = info;
    return STX_OK;
}

/* ---- stream names --------------------------------------------------------- */

static int name_cmp(const void *a, const void *b)
{
    return strcmp(*(char *const *)a, *(char *const *)b);
}

void stx_stream_names_free(char **names, size_t n)
{
    for (size_t i = 0; names && i < n; i++) free(names[i]);
    free(names);
}

/* One slot of each master: SCAN goes to one node, so a cluster is scanned
 * node by node.  A single Redis is one "node" (slot 0). */
static size_t master_slots(stx_client *c, unsigned *slots, size_t cap)
{
    if (!stx_cluster_on(&c->conn)) {
        slots[0] = 0;
        return 1;
    }
    char seen[64][128];
    size_t n = 0;
    char where[128];
    for (unsigned slot = 0; slot < 16384 && n < cap && n < 64; slot++) {
        if (stx_cluster_slot_where(&c->conn, slot, where, sizeof where) != STX_OK) continue;
        size_t i = 0;
        while (i < n && strcmp(seen[i], where) != 0) i++;
        if (i < n) continue;
        snprintf(seen[n], sizeof seen[n], "%s", where);
        slots[n++] = slot;
    }
    return n;
}

int stx_stream_names(stx_client *c, char ***names, size_t *n)
{
    if (!c || !names || !n) return STX_EINVAL;
    *names = NULL;
    *n = 0;
    int rc = stx_client_ready(c);
    if (rc != STX_OK) return rc;
    unsigned slots[64];
    size_t nodes = master_slots(c, slots, 64);
    char **out = NULL;
    size_t count = 0, cap = 0;
    for (size_t node = 0; node < nodes && rc == STX_OK; node++) {
        char cursor[32] = "0";
        do {
            const char *argv[] = {"SCAN", cursor, "COUNT", "1000", "TYPE", "stream"};
            redisReply *r;
            rc = stx_cluster_command_at(&c->conn, slots[node], &r, 6, argv, NULL);
            if (rc != STX_OK) {
                rc = stx_client_fail(c, rc, "SCAN: %s", c->conn.err);
                break;
            }
            const char *next = stx_client_elem_str(r, 0);
            if (r->type != REDIS_REPLY_ARRAY || r->elements != 2 || !next || strlen(next) >= sizeof cursor ||
                r->element[1]->type != REDIS_REPLY_ARRAY) {
                stx_reply_release(r);
                rc = stx_client_fail(c, STX_EREDIS, "SCAN: unexpected reply");
                break;
            }
            snprintf(cursor, sizeof cursor, "%s", next);
            const redisReply *keys = r->element[1];
            for (size_t i = 0; i < keys->elements && rc == STX_OK; i++) {
                const redisReply *k = keys->element[i];
                if (k->type != REDIS_REPLY_STRING || strlen(k->str) != k->len) continue;
                if (count == cap) {
                    size_t ncap = cap ? 2 * cap : 64;
                    char **grown = realloc(out, ncap * sizeof *grown);
                    if (!grown) {
                        rc = stx_client_fail(c, STX_ENOMEM, "stream names: out of memory");
                        break;
                    }
                    out = grown;
                    cap = ncap;
                }
                if (!(out[count] = strdup(k->str))) {
                    rc = stx_client_fail(c, STX_ENOMEM, "stream names: out of memory");
                    break;
                }
                count++;
            }
            stx_reply_release(r);
        } while (rc == STX_OK && strcmp(cursor, "0") != 0);
    }
    if (rc != STX_OK) {
        stx_stream_names_free(out, count);
        return rc;
    }
    if (count > 1) qsort(out, count, sizeof *out, name_cmp);
    /* SCAN may return a key twice (a rehash between calls) */
    size_t w = 0;
    for (size_t i = 0; i < count; i++) {
        if (w && strcmp(out[w - 1], out[i]) == 0) free(out[i]);
        else out[w++] = out[i];
    }
    *names = out;
    *n = w;
    return STX_OK;
}
