/* Recovery as a state machine (the phases are drawn in processor.h):
 * stx_recover() brings the processor from any phase to RUNNING, one step at
 * a time, and a step that fails leaves the phase where it was, so the next
 * call does that step again.  Reconnecting always retakes the epoch from
 * ourselves first: whatever the old connection still had in flight is then
 * fenced, and what Redis holds is final when a write in doubt is settled. */
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "reply.h"
#include "processor.h"

/* ---- script replies ---------------------------------------------------- */

const char *stx_reply_str(const redisReply *r, size_t i)
{
    if (!r || r->type != REDIS_REPLY_ARRAY || i >= r->elements) return NULL;
    const redisReply *e = r->element[i];
    return e->type == REDIS_REPLY_STRING || e->type == REDIS_REPLY_STATUS ? e->str : NULL;
}

int stx_reply_u64(const redisReply *r, size_t i, uint64_t *out)
{
    if (!r || r->type != REDIS_REPLY_ARRAY || i >= r->elements) return -1;
    const redisReply *e = r->element[i];
    if (e->type == REDIS_REPLY_INTEGER && e->integer >= 0) {
        *out = (uint64_t)e->integer;
        return 0;
    }
    if (e->type != REDIS_REPLY_STRING || e->len == 0 || e->len > 20) return -1;
    uint64_t v = 0;
    for (size_t k = 0; k < e->len; k++) {
        unsigned d = (unsigned char)e->str[k] - '0';
        if (d > 9 || v > (UINT64_MAX - d) / 10) return -1;
        v = v * 10 + d;
    }
    *out = v;
    return 0;
}

stx_status stx_reply_status(const redisReply *r)
{
    static const struct { const char *name; stx_status st; } names[] = {
        {"OK", STX_ST_OK}, {"FENCED", STX_ST_FENCED}, {"SEQ", STX_ST_SEQ}, {"DUP", STX_ST_DUP},
        {"GAP", STX_ST_GAP}, {"NOGROUP", STX_ST_NOGROUP}, {"WRONGTYPE", STX_ST_WRONGTYPE},
        {"FULL", STX_ST_FULL}, {"BADARGS", STX_ST_BADARGS}, {"SCHEMA", STX_ST_SCHEMA},
        {"RANGE", STX_ST_RANGE},
    };
    const char *s = stx_reply_str(r, 0);
    if (!s) return STX_ST_MALFORMED;
    for (size_t i = 0; i < sizeof names / sizeof names[0]; i++)
        if (strcmp(s, names[i].name) == 0) return names[i].st;
    return STX_ST_MALFORMED;
}

int stx_write_outcome_unknown(const stx_processor *p, int rc)
{
    /* Redis names the script when a command inside it failed: writes before
     * that command stay.  Refusals before the script ran (OOM under the
     * #!lua flags, READONLY, LOADING, NOSCRIPT, ...) do not name it. */
    if (strstr(p->conn.err, "@user_script")) return 1;
    return rc == STX_ECONN || rc == STX_ETIMEOUT || rc == STX_EREDIS;
}

int stx_enter_doubt(stx_processor *p, int kind, stx_id offset, size_t count, int reload,
                    int code, const char *what)
{
    p->doubt.kind = kind;
    p->doubt.offset = offset;
    p->doubt.count = count;
    p->doubt.reload = reload;
    p->doubt.two = 0;
    memcpy(p->doubt.token, p->token, sizeof p->doubt.token);
    p->phase = STX_PHASE_IN_DOUBT;
    stx_pubs_truncate(&p->pubs, 0);
    stx_drop_prefetched(p);
    /* Only a retake on a new connection makes the outcome final. */
    char err[sizeof p->conn.err];
    memcpy(err, p->conn.err, sizeof err);
    stx_conn_close(&p->conn);
    return stx_fail(p, code, "%s: outcome unknown (%s); settled on reconnect", what, err);
}

/* A writing script found the epoch is not ours.  Who has it decides:
 * a newer processor or an operator's reset (final), or nobody because Redis
 * lost the meta hash or went back to an older copy (start over). */
static int fenced(stx_processor *p, const redisReply *r, const char *what)
{
    const char *cur = stx_reply_str(r, 1), *has_token = stx_reply_str(r, 2);
    uint64_t stored = 0;
    int none = !cur || !*cur || stx_reply_u64(r, 1, &stored) != 0;
    if (none || stored < p->epoch) {
        stx_log(p, STX_LOG_ERROR,
                "%s: Redis lost data: the meta hash of stream '%s' group '%s' %s (Redis restarted "
                "without persistence, was flushed, or was restored from an older copy); starting "
                "over from what Redis holds now", what, p->conf.stream, p->conf.group,
                none ? "is gone" : "went back to an older epoch");
        p->phase = STX_PHASE_NEW;
        stx_cache_discard(p);
        return STX_AGAIN;
    }
    p->phase = STX_PHASE_FENCED;
    p->stats.fenced++;
    int reset = has_token && strcmp(has_token, "0") == 0;
    return stx_fail(p, STX_EFENCED,
                    "%s refused: stream '%s' group '%s' %s (epoch %" PRIu64 " replaced by %s); "
                    "this processor stops for good",
                    what, p->conf.stream, p->conf.group,
                    reset ? "was reset by an operator" : "was taken over by a newer processor",
                    p->epoch, cur);
}

/* Redis is not at the commit this processor knows: it was restored from a
 * backup or failed over to a replica that lagged.  Redis is the truth. */
static int seq_moved(stx_processor *p, const redisReply *r, const char *what)
{
    uint64_t seq = 0;
    const char *off = stx_reply_str(r, 2), *writer = stx_reply_str(r, 3);
    stx_id offv;
    if (stx_reply_u64(r, 1, &seq) != 0 || !off || stx_id_parse(off, strlen(off), &offv) != 0)
        return stx_fail(p, STX_EREDIS, "%s: malformed SEQ reply (meta hash damaged?)", what);
    stx_log(p, STX_LOG_ERROR, "%s: Redis is at commit %" PRIu64 " (offset %s), this processor "
            "at %" PRIu64 " (offset %s): Redis lost or replaced data (restored from a backup, or "
            "failed over to a lagging replica); reloading the state from Redis",
            what, seq, off, p->seq, p->offset_str);
    p->seq = seq;
    stx_set_offset(p, offv);
    snprintf(p->writer, sizeof p->writer, "%s", writer ? writer : "");
    p->phase = STX_PHASE_EPOCH_TAKEN;
    stx_cache_discard(p);
    stx_rewind(p);
    return STX_AGAIN;
}

int stx_refusal(stx_processor *p, const redisReply *r, const char *what)
{
    const char *a = stx_reply_str(r, 1), *b = stx_reply_str(r, 2);
    switch (stx_reply_status(r)) {
    case STX_ST_FENCED:
        return fenced(p, r, what);
    case STX_ST_SEQ:
        return seq_moved(p, r, what);
    case STX_ST_DUP:
        /* Our offset is behind Redis' although the seq matched: read the
         * meta again rather than trust either. */
        p->phase = STX_PHASE_EPOCH_TAKEN;
        stx_rewind(p);
        return STX_AGAIN;
    case STX_ST_NOGROUP:
        return stx_fail(p, STX_ENOGROUP,
                        "%s: consumer group '%s' of stream '%s' is gone (%s); restart the "
                        "processor to create it again",
                        what, p->conf.group, p->conf.stream, a ? a : "");
    case STX_ST_WRONGTYPE:
        return stx_fail(p, STX_EWRONGTYPE, "%s: key '%s' holds a %s, not what streamtx keeps there",
                        what, a ? a : "?", b ? b : "?");
    case STX_ST_FULL:
        return stx_fail(p, STX_EREDIS_REFUSED,
                        "%s: stream '%s' cannot take new entries (its last id is the highest "
                        "possible id); nothing was written; delete or rename it", what, a ? a : "?");
    case STX_ST_BADARGS:
        return stx_fail(p, STX_EREDIS, "%s: script refused its arguments: %s", what, a ? a : "");
    default:
        return stx_fail(p, STX_EREDIS, "%s: unexpected reply from the script", what);
    }
}

/* ---- the steps --------------------------------------------------------- */

static void new_token(stx_processor *p)
{
    stx_random_hex(p->token, 16);
}

/* Where a group created now starts (XGROUP CREATE's id: entries after it
 * are delivered): group_start_id resolved as everywhere else: after an id,
 * with the entries of a time or of a duration ago (against this clock). */
static int start_id(stx_processor *p, char *buf, size_t cap)
{
    const char *text = p->conf.group_start_id ? p->conf.group_start_id : "0";
    struct timespec now;
    clock_gettime(CLOCK_REALTIME, &now);
    stx_position pos;
    if (stx_position_parse(text, (long long)now.tv_sec * 1000 + now.tv_nsec / 1000000, &pos) !=
            STX_OK ||
        (pos.kind == STX_POSITION_ID ? stx_position_until(&pos, buf, cap)
                                     : stx_position_after(&pos, buf, cap)) < 0)
        return stx_fail(p, STX_EINVAL, "group_start_id '%s' is not a position", text);
    return STX_OK;
}

/* NEW → EPOCH_TAKEN: a new epoch, fencing every older processor. */
static int take_epoch(stx_processor *p)
{
    char start[64];
    int rc = start_id(p, start, sizeof start);
    if (rc != STX_OK) return rc;
    if (!p->lineage[0]) stx_random_hex(p->lineage, 16);
    new_token(p);
    stx_eval_begin(p);
    stx_eval_str(p, p->conf.stream);
    stx_eval_str(p, p->key_meta);
    stx_eval_str(p, p->key_state);
    stx_eval_str(p, p->conf.group);
    stx_eval_str(p, start);
    stx_eval_str(p, p->lineage);
    stx_argv_add_u64(&p->argv, (unsigned long long)p->conf.state_schema_version);
    stx_eval_str(p, p->token);
    redisReply *r;
    rc = stx_script_run(&p->scripts, &p->conn, STX_SCRIPT_START, &p->argv, 3, &r);
    if (rc != STX_OK)
        return stx_fail(p, rc, "start on stream '%s': %s", p->conf.stream, p->conn.err);
    if (stx_reply_status(r) != STX_ST_OK) {
        rc = stx_refusal(p, r, "start");
        stx_reply_release(r);
        return rc;
    }
    const char *off = stx_reply_str(r, 2), *lineage = stx_reply_str(r, 4),
               *writer = stx_reply_str(r, 6);
    stx_id offv;
    if (stx_reply_u64(r, 1, &p->epoch) != 0 || !off || stx_id_parse(off, strlen(off), &offv) != 0 ||
        stx_reply_u64(r, 3, &p->seq) != 0 || !lineage || strlen(lineage) >= sizeof p->lineage ||
        stx_reply_u64(r, 5, &p->schema) != 0 || !writer) {
        stx_reply_release(r);
        return stx_fail(p, STX_EREDIS, "start: malformed reply (meta hash damaged?)");
    }
    stx_set_offset(p, offv);
    strcpy(p->lineage, lineage);
    snprintf(p->writer, sizeof p->writer, "%s", writer);
    stx_reply_release(r);
    p->phase = STX_PHASE_EPOCH_TAKEN;
    stx_log(p, STX_LOG_INFO, "started on stream '%s' group '%s' as '%s': epoch %" PRIu64
            ", offset %s, seq %" PRIu64, p->conf.stream, p->conf.group, p->consumer, p->epoch,
            p->offset_str, p->seq);
    return STX_OK;
}

/* After a reconnect: the next epoch, from ourselves only; then settle a
 * write in doubt and decide whether the cache is still Redis' state. */
static int retake_epoch(stx_processor *p)
{
    char token[sizeof p->token];
    memcpy(token, p->token, sizeof token);
    new_token(p);
    stx_eval_begin(p);
    stx_eval_str(p, p->key_meta);
    stx_argv_add_u64(&p->argv, p->epoch);
    stx_eval_str(p, token);
    stx_eval_str(p, p->token);
    redisReply *r;
    int rc = stx_script_run(&p->scripts, &p->conn, STX_SCRIPT_RETAKE, &p->argv, 1, &r);
    if (rc != STX_OK) {
        memcpy(p->token, token, sizeof token); /* the retake may not have run: try again */
        if (rc == STX_ECONN || rc == STX_ETIMEOUT || strstr(p->conn.err, "@user_script"))
            stx_conn_close(&p->conn);
        return stx_fail(p, rc, "retaking the epoch after a reconnect: %s", p->conn.err);
    }
    if (stx_reply_status(r) != STX_ST_OK) {
        memcpy(p->token, token, sizeof token);
        rc = stx_refusal(p, r, "reconnect");
        stx_reply_release(r);
        return rc;
    }
    uint64_t epoch, seq;
    const char *off = stx_reply_str(r, 3), *writer = stx_reply_str(r, 4);
    stx_id offv;
    if (stx_reply_u64(r, 1, &epoch) != 0 || stx_reply_u64(r, 2, &seq) != 0 || !off ||
        stx_id_parse(off, strlen(off), &offv) != 0 || !writer) {
        stx_reply_release(r);
        /* The epoch may be ours now, under a token we cannot prove: start over. */
        p->phase = STX_PHASE_NEW;
        return stx_fail(p, STX_EREDIS, "reconnect: malformed reply (meta hash damaged?)");
    }
    p->epoch = epoch;
    p->stats.reconnects++;

    if (p->phase == STX_PHASE_IN_DOUBT) {
        struct stx_doubt *d = &p->doubt;
        int landed = seq == p->seq + 1 && stx_id_cmp(offv, d->offset) == 0 &&
                     strcmp(writer, d->token) == 0;
        /* The commit behind it landed only if it did: both, or neither
         * of the two, or the first only. */
        int both = d->two && seq == p->seq + 2 && stx_id_cmp(offv, d->offset2) == 0 &&
                   strcmp(writer, d->token) == 0;
        if (both) {
            /* One change set, so the snapshot never holds one without
             * the other under the seq of both. */
            size_t pos = 0;
            stx_sm_entry *e;
            while ((e = stx_sm_next(&p->doubt_next, &pos)))
                if (!stx_sm_put(&p->batch, stx_sm_key(e), e->key_len, stx_sm_value(e),
                                e->value_len, e->flags))
                    d->reload = 1; /* out of memory: reload the state from Redis */
            landed = 1;
        }
        char id[STX_ID_MAX];
        stx_id_format(d->offset, id);
        stx_log(p, STX_LOG_WARN, "%s up to %s whose outcome was unknown %s%s",
                d->kind == STX_DOUBT_COMMIT ? "commit" : d->kind == STX_DOUBT_DEAD_LETTER
                ? "dead-lettering" : "migration", id,
                landed ? "had landed" : "had not landed; its entries will be handled again",
                !d->two ? "" : both ? " (and so had the commit sent behind it)"
                : landed ? " (the commit sent behind it had not; its entries will be handled again)"
                : " (nor had the commit sent behind it)");
        p->phase = STX_PHASE_LOADED;
        if (landed) {
            p->seq = seq;
            stx_set_offset(p, offv);
            memcpy(p->writer, d->token, sizeof p->writer);
            if (d->reload) p->phase = STX_PHASE_EPOCH_TAKEN;
            else if (d->kind == STX_DOUBT_DEAD_LETTER) {
                stx_snapshot_meta(p);
                p->stats.dead_lettered++;
            } else {
                stx_cache_apply(p, &p->batch);
                if (d->kind == STX_DOUBT_COMMIT) {
                    p->stats.commits += both ? 2 : 1;
                    p->stats.committed += d->count + (both ? d->count2 : 0);
                }
            }
        }
        stx_cache_discard(p);
    }
    if (p->phase != STX_PHASE_EPOCH_TAKEN &&
        (seq != p->seq || stx_id_cmp(offv, p->offset) != 0 || strcmp(writer, p->writer) != 0)) {
        stx_log(p, STX_LOG_WARN, "after reconnect Redis is at commit %" PRIu64 " (offset %s), "
                "this processor at %" PRIu64 " (offset %s); reloading state from Redis",
                seq, off, p->seq, p->offset_str);
        p->phase = STX_PHASE_EPOCH_TAKEN;
    }
    p->seq = seq;
    stx_set_offset(p, offv);
    snprintf(p->writer, sizeof p->writer, "%s", writer);
    if (p->phase == STX_PHASE_RUNNING) p->phase = STX_PHASE_LOADED;
    stx_reply_release(r);
    stx_log(p, STX_LOG_INFO, "reconnected: epoch %" PRIu64 ", offset %s, seq %" PRIu64, p->epoch,
            p->offset_str, p->seq);
    return STX_OK;
}

/* LOADED → RUNNING: the schema, the pending list, then read from the offset. */
static int go_running(stx_processor *p)
{
    int rc;
    if (p->conf.state_schema_version && (uint64_t)p->conf.state_schema_version != p->schema) {
        if ((rc = stx_migrate(p, p->schema)) != STX_OK) return rc;
    }
    if ((rc = stx_ack_committed_pending(p)) != STX_OK) return rc;
    stx_rewind(p);
    p->phase = STX_PHASE_RUNNING;
    return STX_OK;
}

int stx_recover(stx_processor *p)
{
    for (;;) {
        int rc = STX_OK;
        if (p->phase == STX_PHASE_FENCED)
            return p->errmsg[0] ? STX_EFENCED
                                : stx_fail(p, STX_EFENCED, "processor was fenced; create a new one");
        if (p->phase == STX_PHASE_NEW) p->need_retake = 0;
        if (p->phase == STX_PHASE_RUNNING && p->conn.ctx && !p->need_retake) return STX_OK;
        if (!p->conn.ctx) {
            rc = stx_conn_open(&p->conn);
            if (rc != STX_OK) return stx_fail(p, rc, "connect: %s", p->conn.err);
            p->connected_once = 1;
            p->need_retake = p->phase != STX_PHASE_NEW;
            continue;
        }
        if (p->need_retake) {
            rc = retake_epoch(p);
            if (rc == STX_OK) p->need_retake = 0;
        } else if (p->phase == STX_PHASE_NEW) {
            rc = take_epoch(p);
        } else if (p->phase == STX_PHASE_EPOCH_TAKEN) {
            rc = stx_cache_load(p);
            if (rc == STX_OK) p->phase = STX_PHASE_LOADED;
        } else if (p->phase == STX_PHASE_LOADED) {
            rc = go_running(p);
        } else if (p->phase == STX_PHASE_IN_DOUBT) {
            stx_conn_close(&p->conn); /* settled only after a retake on a new connection */
        }
        if (rc == STX_AGAIN) continue;
        if (rc != STX_OK) return rc;
    }
}
