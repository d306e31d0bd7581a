/* Reading entries: new ones with a plain XREADGROUP (pipelined behind each
 * commit), and in recovery the stream itself after the stored offset, one
 * entry at a time, through read.lua, which counts handler attempts. */
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "reply.h"
#include "processor.h"

void stx_drop_prefetched(stx_processor *p)
{
    while (p->nprefetched) stx_reply_release(p->prefetched[--p->nprefetched]);
}

void stx_prefetch_push(stx_processor *p, redisReply *r)
{
    if (p->nprefetched < sizeof p->prefetched / sizeof p->prefetched[0])
        p->prefetched[p->nprefetched++] = r;
    else
        stx_reply_release(r); /* its entries are read again from the offset */
}

static redisReply *prefetch_take(stx_processor *p)
{
    redisReply *r = p->prefetched[0];
    for (size_t i = 1; i < p->nprefetched; i++) p->prefetched[i - 1] = p->prefetched[i];
    p->nprefetched--;
    return r;
}

void stx_rewind(stx_processor *p)
{
    stx_drop_prefetched(p);
    p->reading_pending = 1;
    p->cursor = p->offset;
    p->history_done = 0;
}

/* Acknowledge the entries pending at or below the offset: committed, but
 * read again by a processor that was paused past its commit.  Only these
 * are acknowledged at the start; the entries after the offset are read
 * from the stream and acknowledged by their commits, whoever they are
 * pending under, and what is left when recovery has caught up is claimed
 * then (stx_claim_pending): moving a pending list of 100,000 entries to a
 * new consumer name before reading them cost a third of their recovery. */
int stx_ack_committed_pending(stx_processor *p)
{
    char start[STX_ID_MAX + 2] = "-";
    for (;;) {
        const char *argv[] = {"XPENDING", p->conf.stream, p->conf.group, start, p->offset_str,
                              "1000"};
        redisReply *r;
        int rc = stx_conn_command(&p->conn, &r, 6, argv, NULL);
        if (rc != STX_OK)
            return stx_fail(p, rc, "reading the pending list (XPENDING): %s", p->conn.err);
        if (r->type != REDIS_REPLY_ARRAY) {
            stx_reply_release(r);
            return stx_fail(p, STX_EREDIS, "reading the pending list: malformed XPENDING reply");
        }
        stx_argv_reset(&p->argv);
        stx_argv_add_ref(&p->argv, "XACK", 4);
        stx_argv_add_ref(&p->argv, p->conf.stream, strlen(p->conf.stream));
        stx_argv_add_ref(&p->argv, p->conf.group, strlen(p->conf.group));
        for (size_t i = 0; i < r->elements; i++) {
            const char *id = stx_reply_str(r->element[i], 0);
            if (id) stx_argv_add_ref(&p->argv, id, strlen(id));
        }
        size_t got = r->elements;
        if (p->argv.n > 3) {
            const char *lastid = p->argv.v[p->argv.n - 1];
            if (strlen(lastid) > STX_ID_MAX) got = 0;
            else snprintf(start, sizeof start, "(%s", lastid);
            redisReply *ack;
            rc = stx_conn_command(&p->conn, &ack, (int)p->argv.n, p->argv.v, p->argv.len);
            if (rc == STX_OK) stx_reply_release(ack);
        }
        stx_reply_release(r);
        if (rc != STX_OK)
            return stx_fail(p, rc, "acknowledging committed entries: %s", p->conn.err);
        if (got < 1000) return STX_OK;
    }
}

/* Move every entry pending under another consumer name of the group into
 * ours, and acknowledge those the offset has passed (committed: a paused
 * processor read them again) and those deleted while pending, which
 * XAUTOCLAIM drops from the pending list and names.  Reading itself goes
 * by the offset, not by the pending list; this keeps the list truthful.
 * Run when recovery has caught up, when the list is short. */
int stx_claim_pending(stx_processor *p)
{
    char cursor[STX_ID_MAX] = "0-0";
    for (;;) {
        const char *argv[] = {"XAUTOCLAIM", p->conf.stream, p->conf.group, p->consumer, "0",
                              cursor, "COUNT", "1000", "JUSTID"};
        redisReply *r;
        int rc = stx_conn_command(&p->conn, &r, 9, argv, NULL);
        if (rc != STX_OK)
            return stx_fail(p, rc, "claiming pending entries (XAUTOCLAIM): %s", p->conn.err);
        const char *next = stx_reply_str(r, 0);
        if (!next || strlen(next) >= sizeof cursor || r->elements < 2 ||
            r->element[1]->type != REDIS_REPLY_ARRAY) {
            stx_reply_release(r);
            return stx_fail(p, STX_EREDIS, "claiming pending entries: malformed XAUTOCLAIM reply");
        }
        const redisReply *ids = r->element[1];
        stx_argv_reset(&p->argv);
        static const char *const head[] = {"XACK"};
        stx_argv_add_ref(&p->argv, head[0], 4);
        stx_argv_add_ref(&p->argv, p->conf.stream, strlen(p->conf.stream));
        stx_argv_add_ref(&p->argv, p->conf.group, strlen(p->conf.group));
        for (size_t i = 0; i < ids->elements; i++) {
            stx_id id;
            const redisReply *e = ids->element[i];
            if (e->type == REDIS_REPLY_STRING && stx_id_parse(e->str, e->len, &id) == 0 &&
                stx_id_cmp(id, p->offset) <= 0)
                stx_argv_add_ref(&p->argv, e->str, e->len);
        }
        if (r->elements >= 3 && r->element[2]->type == REDIS_REPLY_ARRAY)
            for (size_t i = 0; i < r->element[2]->elements; i++) {
                const redisReply *e = r->element[2]->element[i];
                if (e->type == REDIS_REPLY_STRING)
                    stx_log(p, STX_LOG_WARN, "entry %s of stream '%s' was deleted before it was "
                            "handled; it is not applied", e->str, p->conf.stream);
            }
        if (p->argv.n > 3) {
            redisReply *ack;
            rc = stx_conn_command(&p->conn, &ack, (int)p->argv.n, p->argv.v, p->argv.len);
            if (rc == STX_OK) stx_reply_release(ack);
            else if (rc == STX_ECONN || rc == STX_ETIMEOUT) {
                stx_reply_release(r);
                return stx_fail(p, rc, "acknowledging committed entries: %s", p->conn.err);
            }
        }
        strcpy(cursor, next);
        stx_reply_release(r);
        if (strcmp(cursor, "0-0") == 0) return STX_OK;
    }
}

/* read.lua's arguments: the next entry after the cursor, in p->read_argv
 * (kept apart from p->argv, which may hold a commit). */
static void build_recovery_read(stx_processor *p)
{
    stx_argv *a = &p->read_argv;
    stx_id_format(p->cursor, p->read_cursor);
    stx_argv_reset(a);
    for (int i = 0; i < 3; i++) stx_argv_add_ref(a, "", 0);
    stx_argv_add_ref(a, p->conf.stream, strlen(p->conf.stream));
    stx_argv_add_ref(a, p->key_meta, strlen(p->key_meta));
    stx_argv_add_ref(a, p->key_attempts, strlen(p->key_attempts));
    stx_argv_add_ref(a, p->conf.group, strlen(p->conf.group));
    stx_argv_add_u64(a, p->epoch);
    stx_argv_add_ref(a, p->token, strlen(p->token));
    stx_argv_add_ref(a, p->read_cursor, strlen(p->read_cursor));
    stx_argv_add_ref(a, p->run_id, strlen(p->run_id));
    stx_argv_add_copy(a, p->failed_id, strlen(p->failed_id));
    stx_argv_add_u64(a, (unsigned long long)p->read_count);
}

/* The first size entries of an XRANGE reply up to id last: the batch
 * read.lua's {"RANGE", size, last} names.  Cutting in place is safe: the
 * elements belong to the reply's blocks, not to the array. */
static int cut_range(redisReply *x, const redisReply *r)
{
    uint64_t size;
    const redisReply *lastr = r->elements == 3 ? r->element[2] : NULL;
    stx_id last;
    if (!x || x->type != REDIS_REPLY_ARRAY || stx_reply_u64(r, 1, &size) != 0 || !lastr ||
        lastr->type != REDIS_REPLY_STRING || stx_id_parse(lastr->str, lastr->len, &last) != 0)
        return -1;
    size_t keep = 0;
    while (keep < x->elements && keep < size) {
        const redisReply *e = x->element[keep];
        stx_id id;
        if (e->type != REDIS_REPLY_ARRAY || e->elements < 1 || e->element[0]->type != REDIS_REPLY_STRING ||
            stx_id_parse(e->element[0]->str, e->element[0]->len, &id) != 0)
            return -1;
        if (stx_id_cmp(id, last) > 0) break;
        keep++;
    }
    x->elements = keep;
    return 0;
}

/* read.lua, with an XRANGE of the entries after the cursor behind it in
 * the same round trip: when the script answers RANGE, *range holds the
 * batch (cut to what the script named); otherwise *range is NULL.  The
 * XRANGE runs right after the script in Redis (one connection's commands
 * run in order), so it sees what the script saw. */
static int recovery_read(stx_processor *p, redisReply **r, redisReply **range)
{
    *r = *range = NULL;
    build_recovery_read(p);
    char from[STX_ID_MAX + 2] = "(";
    strcat(from, p->read_cursor);
    char count[24];
    snprintf(count, sizeof count, "%ld", p->read_count);
    const char *xr[] = {"XRANGE", p->conf.stream, from, "+", "COUNT", count};
    int rc = stx_script_append(&p->scripts, &p->conn, STX_SCRIPT_READ, &p->read_argv, 3);
    if (rc == STX_OK) rc = stx_conn_append(&p->conn, 6, xr, NULL);
    if (rc != STX_OK) return stx_fail(p, rc, "read: %s", p->conn.err);
    redisReply *x = NULL;
    rc = stx_conn_read(&p->conn, r);
    if (rc == STX_ECONN || rc == STX_ETIMEOUT) return stx_fail(p, rc, "read: %s", p->conn.err);
    int xrc = stx_conn_read(&p->conn, &x);
    if (xrc == STX_ECONN || xrc == STX_ETIMEOUT) {
        stx_reply_release(*r);
        *r = NULL;
        return stx_fail(p, xrc, "read: %s", p->conn.err);
    }
    if (rc == STX_ENOTFOUND) {
        /* NOSCRIPT (a restarted or flushed script cache): load and run it
         * alone, then read the range alone. */
        stx_reply_release(x);
        x = NULL;
        p->scripts.reloads++;
        p->scripts.s[STX_SCRIPT_READ].sha[0] = '\0';
        rc = stx_script_run(&p->scripts, &p->conn, STX_SCRIPT_READ, &p->read_argv, 3, r);
        if (rc == STX_OK && stx_reply_status(*r) == STX_ST_RANGE &&
            (xrc = stx_conn_command(&p->conn, &x, 6, xr, NULL)) != STX_OK) {
            stx_reply_release(*r);
            *r = NULL;
            return stx_fail(p, xrc, "read: %s", p->conn.err);
        }
    }
    if (rc != STX_OK) {
        stx_reply_release(x);
        return stx_fail(p, rc, "read: %s", p->conn.err);
    }
    if (stx_reply_status(*r) == STX_ST_RANGE) {
        if (xrc != STX_OK || cut_range(x, *r) != 0) {
            stx_reply_release(x);
            stx_reply_release(*r);
            *r = NULL;
            return stx_fail(p, xrc != STX_OK ? xrc : STX_EREDIS, "read: %s",
                            xrc != STX_OK ? p->conn.err : "malformed recovery range");
        }
        *range = x;
    } else {
        stx_reply_release(x);
    }
    return STX_OK;
}

void stx_build_new_read(stx_processor *p, long block_ms)
{
    stx_argv *a = &p->read_argv;
    stx_argv_reset(a);
    static const char *const head[] = {"XREADGROUP", "GROUP"};
    for (int i = 0; i < 2; i++) stx_argv_add_ref(a, head[i], strlen(head[i]));
    stx_argv_add_ref(a, p->conf.group, strlen(p->conf.group));
    stx_argv_add_ref(a, p->consumer, strlen(p->consumer));
    stx_argv_add_ref(a, "COUNT", 5);
    stx_argv_add_u64(a, (unsigned long long)p->read_count);
    if (block_ms > 0) {
        stx_argv_add_ref(a, "BLOCK", 5);
        stx_argv_add_u64(a, (unsigned long long)block_ms);
    }
    stx_argv_add_ref(a, "STREAMS", 7);
    stx_argv_add_ref(a, p->conf.stream, strlen(p->conf.stream));
    stx_argv_add_ref(a, ">", 1);
}

/* The entries of a plain XREADGROUP reply ([[stream, entries]] or nil). */
static const redisReply *new_entries(const redisReply *r)
{
    if (!r || r->type != REDIS_REPLY_ARRAY || r->elements < 1) return NULL;
    const redisReply *s = r->element[0];
    if (s->type != REDIS_REPLY_ARRAY || s->elements != 2 || s->element[1]->type != REDIS_REPLY_ARRAY)
        return NULL;
    return s->element[1]->elements ? s->element[1] : NULL;
}

int stx_prefetched_entries(const stx_processor *p)
{
    for (size_t i = 0; i < p->nprefetched; i++)
        if (new_entries(p->prefetched[i])) return 1;
    return 0;
}

/* Size the next read so that a batch of entries like these stays within
 * max_batch_bytes: halve on large entries, grow by doubling (a batch of
 * large entries read before their size was known costs at most one read). */
static void adapt_read_count(stx_processor *p, const redisReply *entries)
{
    size_t bytes = 0;
    for (size_t i = 0; i < entries->elements; i++) {
        const redisReply *e = entries->element[i];
        if (e->type != REDIS_REPLY_ARRAY || e->elements != 2 || e->element[1]->type != REDIS_REPLY_ARRAY)
            continue;
        for (size_t j = 0; j < e->element[1]->elements; j++) bytes += e->element[1]->element[j]->len;
    }
    size_t avg = entries->elements ? bytes / entries->elements + 1 : 1;
    long fit = (long)((size_t)p->conf.max_batch_bytes / avg);
    long next = p->read_count * 2;
    if (next > fit) next = fit;
    if (next > p->conf.batch_size) next = p->conf.batch_size;
    p->read_count = next < 1 ? 1 : next;
}

/* Whether the group has delivered entries after our offset to anyone
 * (checked when idle, so a stream that goes quiet does not leave them
 * waiting for the next entry); if so, read them from the offset. */
static int delivered_past_offset(stx_processor *p)
{
    const char *argv[] = {"XINFO", "GROUPS", p->conf.stream};
    redisReply *r;
    if (stx_conn_command(&p->conn, &r, 3, argv, NULL) != STX_OK) return 0;
    int past = 0;
    for (size_t i = 0; r->type == REDIS_REPLY_ARRAY && i < r->elements; i++) {
        const redisReply *g = r->element[i];
        const char *name = NULL, *last = NULL;
        for (size_t j = 0; g->type == REDIS_REPLY_ARRAY && j + 1 < g->elements; j += 2) {
            const char *k = stx_reply_str(g, j);
            if (!k) continue;
            if (strcmp(k, "name") == 0) name = stx_reply_str(g, j + 1);
            else if (strcmp(k, "last-delivered-id") == 0) last = stx_reply_str(g, j + 1);
        }
        stx_id lastv;
        if (name && last && strcmp(name, p->conf.group) == 0 &&
            stx_id_parse(last, strlen(last), &lastv) == 0 && stx_id_cmp(lastv, p->offset) > 0) {
            /* Only entries the stream still holds (deleted ones are gone). */
            char from[STX_ID_MAX + 1] = "(";
            strcat(from, p->offset_str);
            const char *range[] = {"XRANGE", p->conf.stream, from, last, "COUNT", "1"};
            redisReply *held;
            if (stx_conn_command(&p->conn, &held, 6, range, NULL) == STX_OK) {
                past = held->type == REDIS_REPLY_ARRAY && held->elements > 0;
                stx_reply_release(held);
            }
        }
    }
    stx_reply_release(r);
    if (past) {
        stx_log(p, STX_LOG_INFO, "entries after offset %s were delivered but not committed; "
                "reading them from the stream", p->offset_str);
        stx_rewind(p);
    }
    return past;
}

int stx_read_batch(stx_processor *p, redisReply **owner, const redisReply **entries,
                   const redisReply **counts)
{
    *owner = NULL;
    *entries = *counts = NULL;
    uint64_t now = stx_monotonic_us();
    if (!p->reading_pending && p->next_read_us > now && !p->nprefetched) {
        /* The last batch was partial: let entries gather (batch_delay_ms). */
        stx_sleep_ms(p, (long)((p->next_read_us - now + 999) / 1000));
    }
    p->next_read_us = 0;
    for (;;) {
        redisReply *r;
        int rc;
        if (p->reading_pending) {
            /* Entries trimmed from the stream come from the history source. */
            if ((rc = stx_history_read(p, owner, entries, counts)) != 0) {
                if (rc < 0) return rc;
                adapt_read_count(p, *entries);
                return STX_OK;
            }
            redisReply *range = NULL;
            rc = recovery_read(p, &r, &range);
            if (rc != STX_OK) return rc;
            p->failed_id[0] = '\0';
            if (stx_reply_status(r) == STX_ST_RANGE) {
                stx_reply_release(r);
                if (!range) return stx_fail(p, STX_EREDIS, "read: malformed XRANGE reply");
                if (range->elements == 0) {
                    stx_reply_release(range); /* deleted since the script looked: again */
                    continue;
                }
                adapt_read_count(p, range);
                *owner = range;
                *entries = range;
                return STX_OK;
            }
            stx_reply_release(range);
            if (stx_reply_status(r) == STX_ST_OK && r->elements == 3 &&
                r->element[1]->type == REDIS_REPLY_ARRAY && r->element[2]->type == REDIS_REPLY_ARRAY) {
                if (r->element[1]->elements > 0) {
                    adapt_read_count(p, r->element[1]); /* recovery batches grow too */
                    *owner = r;
                    *entries = r->element[1];
                    *counts = r->element[2];
                    return STX_OK;
                }
                stx_reply_release(r);
                p->reading_pending = 0; /* caught up with what the group delivered */
                if ((rc = stx_claim_pending(p)) != STX_OK) return rc;
                continue;
            }
            rc = stx_refusal(p, r, "read");
            stx_reply_release(r);
            return rc;
        }
        int from_prefetch = p->nprefetched > 0;
        if (from_prefetch) {
            r = prefetch_take(p); /* read together with a commit */
        } else {
            if (atomic_load(&p->stop)) return STX_OK;
            stx_build_new_read(p, p->conf.block_ms);
            stx_conn_set_timeout(&p->conn, p->conf.block_ms + p->conf.command_timeout_ms);
            rc = stx_conn_command(&p->conn, &r, (int)p->read_argv.n, p->read_argv.v,
                                  p->read_argv.len);
            stx_conn_set_timeout(&p->conn, p->conf.command_timeout_ms);
            if (rc == STX_ENOGROUP || rc == STX_EWRONGTYPE)
                return stx_fail(p, rc, "read: stream '%s' group '%s': %s%s", p->conf.stream,
                                p->conf.group, p->conn.err,
                                rc == STX_ENOGROUP ? "; restart the processor to create it again" : "");
            if (rc != STX_OK) return stx_fail(p, rc, "read: %s", p->conn.err);
        }
        const redisReply *e = new_entries(r);
        if (!e && from_prefetch) {
            stx_reply_release(r); /* empty when sent: wait for entries now */
            continue;
        }
        if (!e) {
            stx_reply_release(r);
            /* Nothing new: but a paused processor may have read entries
             * after our offset that nobody committed. */
            return delivered_past_offset(p) ? STX_AGAIN : STX_OK;
        }
        adapt_read_count(p, e);
        if (p->conf.batch_delay_ms > 0 && e->elements < (size_t)p->conf.batch_size)
            p->next_read_us = stx_monotonic_us() + (uint64_t)p->conf.batch_delay_ms * 1000u;
        *owner = r;
        *entries = e;
        return STX_OK;
    }
}
