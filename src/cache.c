/* The processor's in-memory state: Redis' state hash at the processor's
 * commit sequence, loaded from the LMDB snapshot when that is provably the
 * same state, else from Redis in HSCAN pages; and the batch of changes not
 * yet committed, applied once its commit landed. */
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "reply.h"
#include "codec.h"
#include "processor.h"

static int state_add(void *ud, const void *key, size_t key_len, const void *value,
                     size_t value_len)
{
    stx_processor *p = ud;
    uint32_t flags = stx_mp_validate(value, value_len, STX_MP_MAX_DEPTH) == STX_OK ? 0 : STX_SM_CORRUPT;
    if (flags) stx_log(p, STX_LOG_WARN, "state value of a key of %zu bytes is not valid msgpack; "
                       "the handler gets STX_EDECODE for it", key_len);
    return stx_sm_put(&p->state, key, key_len, value, value_len, flags) ? STX_OK : STX_ENOMEM;
}

/* A record the snapshot already validated (checksum and msgpack). */
static int state_add_checked(void *ud, const void *key, size_t key_len, const void *value,
                             size_t value_len)
{
    stx_processor *p = ud;
    return stx_sm_put(&p->state, key, key_len, value, value_len, 0) ? STX_OK : STX_ENOMEM;
}

/* Read the whole state hash in HSCAN pages, so no reply holds all of it.
 * A failure half-way leaves a partial map: the caller stays in
 * EPOCH_TAKEN, so the next attempt loads it all again. */
static int load_from_redis(stx_processor *p)
{
    stx_sm_clear(&p->state);
    char cursor[32] = "0";
    do {
        const char *argv[] = {"HSCAN", p->key_state, cursor, "COUNT", "1000"};
        redisReply *r;
        int rc = stx_conn_command(&p->conn, &r, 5, argv, NULL);
        if (rc != STX_OK) return stx_fail(p, rc, "loading state (HSCAN): %s", p->conn.err);
        if (r->type != REDIS_REPLY_ARRAY || r->elements != 2 ||
            r->element[0]->type != REDIS_REPLY_STRING || r->element[0]->len >= sizeof cursor ||
            r->element[1]->type != REDIS_REPLY_ARRAY || r->element[1]->elements % 2) {
            stx_reply_release(r);
            return stx_fail(p, STX_EREDIS, "loading state: malformed HSCAN reply");
        }
        memcpy(cursor, r->element[0]->str, r->element[0]->len + 1);
        const redisReply *kv = r->element[1];
        for (size_t i = 0; i < kv->elements; i += 2) {
            const redisReply *k = kv->element[i], *v = kv->element[i + 1];
            if (k->type != REDIS_REPLY_STRING || v->type != REDIS_REPLY_STRING) continue;
            if (state_add(p, k->str, k->len, v->str, v->len) != STX_OK) {
                stx_reply_release(r);
                return stx_fail(p, STX_ENOMEM, "loading state: out of memory");
            }
        }
        stx_reply_release(r);
    } while (strcmp(cursor, "0") != 0);
    p->stats.redis_loads++;
    return STX_OK;
}

/* Whose state a snapshot holds: the group's meta key, the lineage (a new
 * one after every reset) and the token of the processor that wrote the
 * commit (two histories that reach the same seq after Redis was restored
 * from a backup have different writers). */
static int identity(const stx_processor *p, char *buf, size_t cap)
{
    int n = snprintf(buf, cap, "%s\n%s\n%s", p->key_meta, p->lineage, p->writer);
    return n > 0 && (size_t)n < cap ? 0 : -1;
}

static void snapshot_disable(stx_processor *p, const char *why)
{
    stx_log(p, STX_LOG_WARN, "LMDB snapshot in '%s' disabled: %s", p->conf.snapshot_dir, why);
    stx_snapshot_close(p->snap);
    p->snap = NULL;
}

/* Write the entries of map into the snapshot with the current meta; clear
 * first for a full rebuild.  A transaction that filled the map is aborted
 * by the snapshot, which grows the map, so it is tried again a few times. */
static void snapshot_write(stx_processor *p, const stx_statemap *map, int clear)
{
    if (!p->snap) return;
    char id[4096];
    if (identity(p, id, sizeof id) != 0) { /* (4 KiB: stream and group names of about 2 KiB) */
        snapshot_disable(p, "stream and group names too long for the snapshot's identity");
        return;
    }
    int rc = STX_ESNAPSHOT;
    for (int attempt = 0; attempt < 6 && rc == STX_ESNAPSHOT; attempt++) {
        rc = stx_snapshot_begin(p->snap, clear);
        size_t pos = 0;
        stx_sm_entry *e;
        while (rc == STX_OK && (e = stx_sm_next(map, &pos)))
            rc = e->flags & STX_SM_DELETED
                     ? stx_snapshot_del(p->snap, stx_sm_key(e), e->key_len)
                     : stx_snapshot_put(p->snap, stx_sm_key(e), e->key_len, stx_sm_value(e),
                                        e->value_len);
        if (rc == STX_OK) rc = stx_snapshot_commit(p->snap, id, p->seq, p->offset_str);
        if (rc != STX_OK) stx_snapshot_abort(p->snap);
    }
    /* A disk error: go on without it; Redis has everything. */
    if (rc != STX_OK) snapshot_disable(p, stx_snapshot_errmsg(p->snap));
}

void stx_snapshot_meta(stx_processor *p)
{
    stx_statemap none;
    stx_sm_init(&none);
    snapshot_write(p, &none, 0);
}

/* Load the snapshot when it holds this group's state at exactly the
 * commit Redis holds: same identity (lineage and writer), seq and offset. */
static int try_snapshot(stx_processor *p)
{
    char err[512];
    if (!p->snap &&
        stx_snapshot_open(&p->snap, p->conf.snapshot_dir, p->conf.stream, p->conf.group,
                          (unsigned)p->conf.snapshot_map_size_mb,
                          p->conf.snapshot_sync == 1 ? 1 : p->conf.snapshot_sync == 2 ? 2 : 0,
                          err, sizeof err) != STX_OK) {
        stx_log(p, STX_LOG_WARN, "LMDB snapshot unavailable: %s", err);
        p->snap = NULL;
        return 0;
    }
    size_t cap = STX_SNAP_MAX_IDENTITY + 1;
    char *stored = malloc(cap), *want = malloc(cap), offset[64];
    uint64_t seq = 0;
    int rc = stored && want ? stx_snapshot_read_meta(p->snap, stored, cap, &seq, offset, sizeof offset)
                            : STX_ENOMEM;
    int same = rc == STX_OK && identity(p, want, cap) == 0 && strcmp(stored, want) == 0;
    free(stored);
    free(want);
    if (rc == STX_ENOTFOUND) {
        stx_log(p, STX_LOG_INFO, "LMDB snapshot is empty; loading state from Redis");
        return 0;
    }
    if (rc != STX_OK) {
        stx_log(p, STX_LOG_WARN, "LMDB snapshot meta unreadable (%s); rebuilding from Redis",
                rc == STX_ENOMEM ? "out of memory" : stx_snapshot_errmsg(p->snap));
        return 0;
    }
    if (!same || seq != p->seq || strcmp(offset, p->offset_str) != 0) {
        stx_log(p, STX_LOG_WARN,
                "LMDB snapshot is not Redis' state (seq %" PRIu64 " offset %s, Redis has seq %"
                PRIu64 " offset %s%s); rebuilding from Redis",
                seq, offset, p->seq, p->offset_str, same ? "" : ", written by another history");
        return 0;
    }
    stx_sm_clear(&p->state);
    size_t count;
    if (stx_snapshot_count(p->snap, &count) == STX_OK) stx_sm_reserve(&p->state, count);
    rc = stx_snapshot_load(p->snap, state_add_checked, p);
    if (rc != STX_OK) {
        stx_log(p, STX_LOG_WARN, "LMDB snapshot damaged (%s); rebuilding from Redis",
                stx_snapshot_errmsg(p->snap));
        stx_sm_clear(&p->state);
        return 0;
    }
    p->stats.snapshot_loads++;
    stx_log(p, STX_LOG_INFO, "state loaded from LMDB snapshot: %zu keys at seq %" PRIu64,
            p->state.count, seq);
    return 1;
}

int stx_cache_load(stx_processor *p)
{
    stx_cache_discard(p);
    if (p->conf.snapshot_dir && try_snapshot(p)) return STX_OK;
    int rc = load_from_redis(p);
    if (rc != STX_OK) return rc;
    stx_log(p, STX_LOG_INFO, "state loaded from Redis: %zu keys at seq %" PRIu64, p->state.count,
            p->seq);
    snapshot_write(p, &p->state, 1);
    return STX_OK;
}

void stx_cache_apply(stx_processor *p, const stx_statemap *changes)
{
    size_t pos = 0;
    stx_sm_entry *e;
    while ((e = stx_sm_next(changes, &pos))) {
        if (e->flags & STX_SM_DELETED) stx_sm_remove(&p->state, stx_sm_key(e), e->key_len);
        else if (!stx_sm_put(&p->state, stx_sm_key(e), e->key_len, stx_sm_value(e), e->value_len, 0)) {
            /* The commit landed in Redis; a cache we cannot complete must go. */
            stx_log(p, STX_LOG_ERROR, "out of memory applying a commit; state will be reloaded");
            p->phase = STX_PHASE_EPOCH_TAKEN;
            return;
        }
    }
    snapshot_write(p, changes, 0);
}

void stx_cache_discard(stx_processor *p)
{
    stx_sm_clear(&p->batch);
    stx_sm_clear(&p->doubt_next);
    stx_pubs_truncate(&p->pubs, 0);
    p->batch_bytes = 0;
}

int stx_merge_message(stx_processor *p)
{
    size_t pos = 0;
    stx_sm_entry *e;
    while ((e = stx_sm_next(&p->txn.overlay, &pos))) {
        if (!stx_sm_put(&p->batch, stx_sm_key(e), e->key_len, stx_sm_value(e), e->value_len,
                        e->flags))
            return STX_ENOMEM;
        p->batch_bytes += e->key_len + e->value_len;
    }
    stx_sm_clear(&p->txn.overlay);
    for (size_t i = p->txn.pubs_mark; i < p->pubs.n; i++)
        for (size_t j = 0; j < 2 * p->pubs.v[i].npairs; j++) p->batch_bytes += p->pubs.v[i].lens[j];
    return STX_OK;
}

void stx_add_changes(stx_processor *p, size_t *puts_out, size_t *dels_out)
{
    size_t nputs = 0, ndels = 0, pos = 0;
    stx_sm_entry *e;
    while ((e = stx_sm_next(&p->batch, &pos))) {
        if (e->flags & STX_SM_DELETED) ndels++;
        else nputs++;
    }
    stx_argv_add_u64(&p->argv, nputs);
    for (pos = 0; (e = stx_sm_next(&p->batch, &pos));)
        if (!(e->flags & STX_SM_DELETED)) {
            stx_argv_add_ref(&p->argv, stx_sm_key(e), e->key_len);
            stx_argv_add_ref(&p->argv, stx_sm_value(e), e->value_len);
        }
    stx_argv_add_u64(&p->argv, ndels);
    for (pos = 0; (e = stx_sm_next(&p->batch, &pos));)
        if (e->flags & STX_SM_DELETED) stx_argv_add_ref(&p->argv, stx_sm_key(e), e->key_len);
    if (puts_out) *puts_out = nputs;
    if (dels_out) *dels_out = ndels;
}
