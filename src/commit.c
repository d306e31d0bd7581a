/* The scripts that write a group's meta: the commit of a batch, the move of
 * an entry to the dead-letter stream and the schema migration.  Each sends
 * the epoch, the token and the commit sequence it expects, so a write from
 * a processor that lost its epoch, or that no longer knows where Redis
 * stands, is refused before anything is written.  A write whose outcome is
 * unknown enters IN_DOUBT (recover.c). */
#include <inttypes.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "reply.h"
#include "processor.h"
#include "relay.h"
#include "script_limits.h"

void stx_eval_begin(stx_processor *p)
{
    stx_argv_reset(&p->argv);
    for (int i = 0; i < 3; i++) stx_argv_add_ref(&p->argv, "", 0); /* EVALSHA sha numkeys */
}

void stx_eval_str(stx_processor *p, const char *s)
{
    stx_argv_add_ref(&p->argv, s, strlen(s));
}

/* The guard's arguments: epoch, token, expected seq (the one a commit in
 * flight makes when it lands: one built on top of it is sent only then). */
static void add_guard(stx_processor *p)
{
    stx_argv_add_u64(&p->argv, p->epoch);
    stx_eval_str(p, p->token);
    stx_argv_add_u64(&p->argv, p->seq + (p->inflight.active ? 1 : 0));
}

/* Index (0-based) of stream among the publish targets, adding it if new. */
static size_t target_index(const char **targets, size_t *n, const char *stream)
{
    for (size_t i = 0; i < *n; i++)
        if (strcmp(targets[i], stream) == 0) return i;
    targets[*n] = stream;
    return (*n)++;
}

/* The publishes go to commit.lua as a few msgpack blocks, not as one
 * argument per field name and value: Redis makes every argument of a
 * command an object and every element of a script's ARGV a Lua string,
 * which with one publish per entry cost more than the XADDs themselves.
 * A block is the concatenation of, per publish: its target's index in
 * KEYS, the index of its source entry among the ids (both 1-based), its
 * number of pairs, then each field name and value as a msgpack string
 * (binary-safe). */
static int blocks_reserve(stx_processor *p, size_t more)
{
    if (p->pub_blocks_cap - p->pub_blocks_len >= more) return 0;
    size_t cap = p->pub_blocks_cap ? p->pub_blocks_cap : 4096;
    while (cap - p->pub_blocks_len < more) {
        if (cap > SIZE_MAX / 2) return -1;
        cap *= 2;
    }
    unsigned char *b = realloc(p->pub_blocks, cap);
    if (!b) return -1;
    p->pub_blocks = b;
    p->pub_blocks_cap = cap;
    return 0;
}

static void put_be(unsigned char *w, uint64_t v, int bytes)
{
    for (int i = bytes - 1; i >= 0; i--, v >>= 8) w[i] = (unsigned char)(v & 0xff);
}

/* A msgpack unsigned integer (v < 2^32) or string header of v bytes. */
static int put_header(stx_processor *p, uint64_t v, int str)
{
    if (blocks_reserve(p, 5) != 0) return -1;
    unsigned char *w = p->pub_blocks + p->pub_blocks_len;
    size_t n;
    if (!str && v < 128) { w[0] = (unsigned char)v; n = 1; }
    else if (str && v < 32) { w[0] = (unsigned char)(0xa0 | v); n = 1; }
    else if (str && v < 256) { w[0] = 0xd9; w[1] = (unsigned char)v; n = 2; }
    else if (v < 65536) { w[0] = str ? 0xda : 0xcd; put_be(w + 1, v, 2); n = 3; }
    else if (v <= UINT32_MAX) { w[0] = str ? 0xdb : 0xce; put_be(w + 1, v, 4); n = 5; }
    else return -1;
    p->pub_blocks_len += n;
    return 0;
}

static int put_string(stx_processor *p, const char *s, size_t len)
{
    if (put_header(p, len, 1) != 0 || blocks_reserve(p, len) != 0) return -1;
    if (len) memcpy(p->pub_blocks + p->pub_blocks_len, s, len);
    p->pub_blocks_len += len;
    return 0;
}

/* Encode the batch's publishes into p->pub_blocks and append n_pubs,
 * n_blocks and the blocks to p->argv.  outbox NULL: every publish goes to
 * its own target (the fast path).  Else outbox[i] says whether publish i
 * goes to the outbox instead, whose KEYS index is outbox_key: its entry
 * then starts with the three pairs of relay.h (target, source stream,
 * source entry id) before the publish's own. */
static int add_publishes(stx_processor *p, const size_t *target_of, const size_t *source_of,
                         const unsigned char *outbox, size_t outbox_key,
                         struct stx_msg *const *msgs)
{
    size_t n = p->pubs.n;
    size_t *ends = malloc((n ? n : 1) * sizeof *ends); /* at most one block per publish */
    if (!ends) return -1;
    size_t nblocks = 0, values = 0;
    p->pub_blocks_len = 0;
    for (size_t i = 0; i < n; i++) {
        const stx_pub *pub = &p->pubs.v[i];
        int via = outbox && outbox[i];
        size_t need = 3 + 2 * pub->npairs + (via ? 6 : 0);
        if (values && values + need > STX_PUBLISH_BLOCK_VALUES) {
            ends[nblocks++] = p->pub_blocks_len;
            values = 0;
        }
        values += need;
        if (put_header(p, 5 + (via ? outbox_key : target_of[i]), 0) != 0 ||
            put_header(p, 1 + source_of[i], 0) != 0 ||
            put_header(p, pub->npairs + (via ? 3 : 0), 0) != 0) {
            free(ends);
            return -1;
        }
        if (via) {
            const char *src = msgs[source_of[i]]->id;
            if (put_string(p, STX_OUTBOX_TARGET, strlen(STX_OUTBOX_TARGET)) != 0 ||
                put_string(p, pub->stream, strlen(pub->stream)) != 0 ||
                put_string(p, STX_OUTBOX_SOURCE, strlen(STX_OUTBOX_SOURCE)) != 0 ||
                put_string(p, p->conf.stream, strlen(p->conf.stream)) != 0 ||
                put_string(p, STX_OUTBOX_SOURCE_ID, strlen(STX_OUTBOX_SOURCE_ID)) != 0 ||
                put_string(p, src, strlen(src)) != 0) {
                free(ends);
                return -1;
            }
        }
        for (size_t j = 0; j < 2 * pub->npairs; j++)
            if (put_string(p, pub->ptrs[j], pub->lens[j]) != 0) {
                free(ends);
                return -1;
            }
    }
    if (values) ends[nblocks++] = p->pub_blocks_len;
    stx_argv_add_u64(&p->argv, n);
    stx_argv_add_u64(&p->argv, nblocks);
    size_t start = 0;
    for (size_t b = 0; b < nblocks; b++) {
        stx_argv_add_ref(&p->argv, (const char *)p->pub_blocks + start, ends[b] - start);
        start = ends[b];
    }
    free(ends);
    return 0;
}

/* Send the commit in p->argv and, when allowed, the next read behind it
 * in the same round trip; read the commit's reply into *r.  The read runs
 * after the commit in Redis, so it sees the committed offset and takes only
 * entries after this batch; if the commit failed, the rewind that follows
 * every failure reads its entries again. */
static int send_commit(stx_processor *p, size_t numkeys, int prefetch, redisReply **r)
{
    prefetch = prefetch && p->conf.pipeline && !p->reading_pending && p->next_read_us == 0 &&
               !atomic_load(&p->stop) && !p->nprefetched;
    if (!prefetch)
        return stx_script_run(&p->scripts, &p->conn, STX_SCRIPT_COMMIT, &p->argv, numkeys, r);
    int rc = stx_script_append(&p->scripts, &p->conn, STX_SCRIPT_COMMIT, &p->argv, numkeys);
    if (rc == STX_OK) {
        stx_build_new_read(p, 0);
        rc = stx_conn_append(&p->conn, (int)p->read_argv.n, p->read_argv.v, p->read_argv.len);
    }
    if (rc != STX_OK) return rc;
    /* Both replies are read before anything else is sent: after a lost
     * script cache both say NOSCRIPT, and a SCRIPT LOAD sent between them
     * would read the wrong reply. */
    redisReply *next = NULL;
    rc = stx_conn_read(&p->conn, r);
    if (rc == STX_ECONN || rc == STX_ETIMEOUT) return rc;
    int rrc = stx_conn_read(&p->conn, &next);
    if (rrc == STX_OK) stx_prefetch_push(p, next);
    else if (rc == STX_OK && (rrc == STX_ECONN || rrc == STX_ETIMEOUT))
        stx_conn_close(&p->conn); /* the commit's reply came; recovery reconnects */
    if (rc == STX_ENOTFOUND) {
        /* NOSCRIPT: the commit did not run; load the script and send it again. */
        p->scripts.reloads++;
        p->scripts.s[STX_SCRIPT_COMMIT].sha[0] = '\0';
        rc = stx_script_run(&p->scripts, &p->conn, STX_SCRIPT_COMMIT, &p->argv, numkeys, r);
    }
    return rc;
}

/* Build the commit of msgs[0..n) with the batch's changes and publishes in
 * p->argv: *numkeys of its KEYS, *n_out publishes into the outbox.  -1 when
 * out of memory. */
static int build_commit(stx_processor *p, struct stx_msg *const *msgs, size_t n,
                        size_t *numkeys, size_t *n_out_ret)
{
    size_t cap = p->pubs.n ? p->pubs.n : 1;
    const char **targets = malloc(cap * sizeof *targets);
    size_t *target_of = malloc(cap * sizeof *target_of);
    size_t *source_of = malloc(cap * sizeof *source_of);
    /* The outbox takes every publish (publish_mode=outbox) or, on a
     * cluster, those whose target is in another slot; without either the
     * publishes go straight to their targets and none of this is done. */
    int all_out = p->conf.publish_mode == 1, cluster = p->conn.cluster != NULL;
    unsigned char *outbox = (all_out || cluster) && p->pubs.n ? calloc(cap, 1) : NULL;
    int rc = -1;
    if (!targets || !target_of || !source_of || ((all_out || cluster) && p->pubs.n && !outbox))
        goto out;
    size_t ntargets = 0, n_out = 0;
    if (outbox) {
        /* The slot is computed only here, off the fast path; targets
         * that go to the outbox are not KEYS of the commit. */
        unsigned slot = all_out ? 0 : stx_key_slot(p->conf.stream, strlen(p->conf.stream));
        for (size_t i = 0; i < p->pubs.n; i++) {
            const char *t = p->pubs.v[i].stream;
            /* A run of publishes to one target (the usual case) computes
             * its slot once. */
            if (i > 0 && strcmp(t, p->pubs.v[i - 1].stream) == 0) outbox[i] = outbox[i - 1];
            else outbox[i] = all_out || stx_key_slot(t, strlen(t)) != slot;
            if (outbox[i]) n_out++;
            else target_of[i] = target_index(targets, &ntargets, t);
        }
        if (n_out && !p->relay && !(p->relay = stx_relay_new(p->conf.stream, p->conf.group)))
            goto out;
    } else {
        for (size_t i = 0; i < p->pubs.n; i++)
            target_of[i] = target_index(targets, &ntargets, p->pubs.v[i].stream);
    }
    size_t outbox_key = ntargets; /* its KEYS index, after the direct targets */
    /* The entry that staged each publish decides whether a replay below
     * replay_until drops it. */
    for (size_t i = 0; i < p->pubs.n; i++)
        source_of[i] = p->pubs.v[i].source < n ? p->pubs.v[i].source : n - 1;

    stx_eval_begin(p);
    stx_eval_str(p, p->conf.stream);
    stx_eval_str(p, p->key_meta);
    stx_eval_str(p, p->key_state);
    stx_eval_str(p, p->key_attempts);
    for (size_t i = 0; i < ntargets; i++) stx_eval_str(p, targets[i]);
    if (n_out) stx_eval_str(p, p->relay->outbox);
    stx_eval_str(p, p->conf.group);
    add_guard(p);
    stx_eval_str(p, p->run_id);
    stx_argv_add_u64(&p->argv, n);
    for (size_t i = 0; i < n; i++) stx_eval_str(p, msgs[i]->id);
    stx_add_changes(p, NULL, NULL);
    if (add_publishes(p, target_of, source_of, n_out ? outbox : NULL, outbox_key, msgs) != 0 ||
        p->argv.failed)
        goto out;
    *numkeys = 4 + ntargets + (n_out ? 1 : 0);
    *n_out_ret = n_out;
    rc = 0;
out:
    free(targets);
    free(target_of);
    free(source_of);
    free(outbox);
    return rc;
}

/* A commit of count entries up to offset landed at seq: its changes into
 * the state, the counters, and what follows a commit. */
static void landed(stx_processor *p, uint64_t seq, uint64_t dropped, stx_id offset, size_t count,
                   size_t n_out, const stx_statemap *changes)
{
    p->seq = seq;
    stx_set_offset(p, offset);
    memcpy(p->writer, p->token, sizeof p->writer);
    stx_cache_apply(p, changes);
    p->stats.commits++;
    p->stats.committed += count;
    if (n_out) stx_outbox_committed(p, n_out);
    stx_commit_wait(p);
    if (dropped)
        stx_log(p, STX_LOG_INFO, "%" PRIu64 " publishes of replayed entries not sent again "
                "(the group is rebuilding state below its earlier offset)", dropped);
}

/* Act on the outcome (rc, reply r, taken) of a commit of count entries up
 * to offset whose changes are in p->batch. */
static int commit_outcome(stx_processor *p, int rc, redisReply *r, stx_id offset, size_t count,
                          size_t n_out)
{
    stx_status st = rc == STX_OK ? stx_reply_status(r) : STX_ST_MALFORMED;
    if (rc != STX_OK || st != STX_ST_OK) stx_drop_prefetched(p);
    if (rc != STX_OK) {
        if (stx_write_outcome_unknown(p, rc))
            return stx_enter_doubt(p, STX_DOUBT_COMMIT, offset, count, rc == STX_EREDIS, rc,
                                   "commit");
        /* Refused before it ran (OOM, READONLY, ...): nothing was written;
         * read the batch again. */
        stx_cache_discard(p);
        stx_rewind(p);
        return stx_fail(p, rc, "commit: %s", rc == STX_ENOMEM ? "out of memory" : p->conn.err);
    }
    uint64_t seq;
    if (st == STX_ST_OK) {
        if (stx_reply_u64(r, 1, &seq) != 0) {
            stx_reply_release(r);
            return stx_enter_doubt(p, STX_DOUBT_COMMIT, offset, count, 1, STX_EREDIS,
                                   "commit (malformed reply)");
        }
        uint64_t dropped = 0;
        stx_reply_u64(r, 2, &dropped);
        stx_reply_release(r);
        landed(p, seq, dropped, offset, count, n_out, &p->batch);
        stx_cache_discard(p);
        return STX_OK;
    }
    stx_cache_discard(p);
    stx_rewind(p);
    if (st == STX_ST_GAP) {
        const char *id = stx_reply_str(r, 1);
        stx_log(p, STX_LOG_WARN, "entry %s of stream '%s' was never handled but the group had "
                "moved past it (XGROUP SETID, XACK or XGROUP DELCONSUMER by another client, or "
                "a paused processor's read); reading the stream again from offset %s",
                id ? id : "?", p->conf.stream, p->offset_str);
        stx_reply_release(r);
        return STX_AGAIN;
    }
    rc = stx_refusal(p, r, "commit");
    stx_reply_release(r);
    return rc;
}

int stx_commit(stx_processor *p, struct stx_msg *const *msgs, size_t n, int prefetch)
{
    int rc = stx_commit_settle(p); /* its guard expects the seq the one in flight makes */
    if (rc != STX_OK) return rc;
    size_t numkeys, n_out;
    if (build_commit(p, msgs, n, &numkeys, &n_out) != 0) {
        stx_cache_discard(p);
        stx_rewind(p);
        return stx_fail(p, STX_ENOMEM, "commit: out of memory");
    }
    redisReply *r = NULL;
    uint64_t t0 = stx_monotonic_us();
    rc = send_commit(p, numkeys, prefetch, &r);
    stx_record_latency(p, stx_monotonic_us() - t0);
    return commit_outcome(p, rc, r, msgs[n - 1]->idv, n, n_out);
}

int stx_overlap_allowed(const stx_processor *p)
{
    /* Not on a cluster (the pipeline's order across nodes is not the
     * connection's), nor with commit_wait_replicas (its WAIT belongs right
     * after the commit), nor before the commit script is loaded (a SCRIPT
     * LOAD between the read and the commit would read the wrong reply). */
    return p->conf.overlap && p->conf.pipeline && !p->reading_pending && p->next_read_us == 0 &&
           !p->conn.cluster &&
           p->conf.commit_wait_replicas == 0 && p->scripts.s[STX_SCRIPT_COMMIT].sha[0] &&
           p->phase == STX_PHASE_RUNNING && !atomic_load(&p->stop);
}

/* Read n replies of reads sent behind a commit into p->prefetched.
 * STX_OK, or the connection broke (and is closed). */
static int read_replies(stx_processor *p, int n)
{
    for (int i = 0; i < n; i++) {
        redisReply *next = NULL;
        int rc = stx_conn_read(&p->conn, &next);
        if (rc == STX_OK) stx_prefetch_push(p, next);
        else if (rc == STX_ECONN || rc == STX_ETIMEOUT) return rc;
        /* (an error reply, NOGROUP say: the commit's reply tells more) */
    }
    return STX_OK;
}

/* The commit sent behind the one in flight, before that one was settled
 * (stx_commit_overlap()): its replies follow on the connection.  Its guard
 * wants the commit sequence the one in flight makes when it is written
 * whole (commit.lua moves the sequence last), so it can land only if that
 * one did. */
struct behind {
    stx_id offset;
    size_t count;
    int reads;
};

/* Both commits in doubt: the one in flight (its changes into p->batch)
 * and the one behind it (p->doubt_next); recovery settles them together. */
static int enter_double_doubt(stx_processor *p, const struct stx_inflight *f,
                              const struct behind *next, int reload, int code)
{
    stx_statemap t = p->doubt_next;
    p->doubt_next = p->batch;
    p->batch = p->inflight_state;
    p->inflight_state = t;
    stx_sm_clear(&p->inflight_state);
    stx_reply_release(f->owner);
    code = stx_enter_doubt(p, STX_DOUBT_COMMIT, f->offset, f->count, reload, code, "commit");
    p->doubt.two = 1;
    p->doubt.offset2 = next->offset;
    p->doubt.count2 = next->count;
    return code;
}

/* Read the reply of the commit in flight and of the reads behind it.  next:
 * a commit sent behind it (NULL: none).  When the one in flight did not
 * land, next cannot have landed either: its replies are read and dropped,
 * and what it staged (p->batch) goes; when nobody knows whether the one in
 * flight landed, neither does anybody know for next, and both are in
 * doubt. */
static int settle(stx_processor *p, const struct behind *next)
{
    if (!p->inflight.active) return STX_OK;
    struct stx_inflight f = p->inflight;
    memset(&p->inflight, 0, sizeof p->inflight);
    redisReply *r = NULL;
    int rc = stx_conn_read(&p->conn, &r);
    uint64_t seq, dropped = 0;
    int ok = rc == STX_OK && stx_reply_status(r) == STX_ST_OK && stx_reply_u64(r, 1, &seq) == 0;
    int unknown = rc != STX_OK ? stx_write_outcome_unknown(p, rc) : !ok && stx_reply_status(r) == STX_ST_OK;
    stx_record_latency(p, stx_monotonic_us() - f.sent_us);
    if (unknown && next) {
        stx_pubs_truncate(&p->inflight_pubs, 0);
        stx_reply_release(r);
        stx_conn_close(&p->conn);
        return enter_double_doubt(p, &f, next, rc == STX_EREDIS || rc == STX_OK,
                                  rc == STX_OK ? STX_EREDIS : rc);
    }
    /* The replies behind it are read before anything else is sent (a
     * SCRIPT LOAD after a NOSCRIPT would read the wrong reply). */
    int rrc = rc == STX_ECONN || rc == STX_ETIMEOUT ? rc : read_replies(p, f.reads);
    if (!ok && next && rrc == STX_OK) {
        redisReply *nr = NULL;
        if (stx_conn_read(&p->conn, &nr) == STX_OK) stx_reply_release(nr);
        if (p->conn.ctx) rrc = read_replies(p, next->reads);
    }
    if (rc == STX_ENOTFOUND && next) {
        /* NOSCRIPT under a commit sent behind it: both are read again,
         * after the script is loaded. */
        p->scripts.reloads++;
        p->scripts.s[STX_SCRIPT_COMMIT].sha[0] = '\0';
        stx_pubs_truncate(&p->inflight_pubs, 0);
        stx_reply_release(f.owner);
        stx_sm_clear(&p->inflight_state);
        stx_cache_discard(p);
        stx_drop_prefetched(p);
        stx_rewind(p);
        return STX_AGAIN;
    }
    if (rc == STX_ENOTFOUND && rrc != STX_OK) rc = STX_ECONN; /* gone before it could be sent again */
    if (rc == STX_ENOTFOUND) {
        /* NOSCRIPT: it did not run; send it again as it was. */
        p->scripts.reloads++;
        p->scripts.s[STX_SCRIPT_COMMIT].sha[0] = '\0';
        rc = stx_script_run(&p->scripts, &p->conn, STX_SCRIPT_COMMIT, &p->inflight_argv,
                            f.numkeys, &r);
        ok = rc == STX_OK && stx_reply_status(r) == STX_ST_OK && stx_reply_u64(r, 1, &seq) == 0;
    }
    stx_pubs_truncate(&p->inflight_pubs, 0); /* (their names are KEYS of the resend) */
    if (ok) {
        stx_reply_u64(r, 2, &dropped);
        stx_reply_release(r);
        stx_reply_release(f.owner);
        landed(p, seq, dropped, f.offset, f.count, f.n_out, &p->inflight_state);
        stx_sm_clear(&p->inflight_state);
        return STX_OK;
    }
    /* It did not land, or nobody knows: what was handled or staged on top
     * of it goes, and its own changes become the batch again, as if it had
     * been sent alone (a commit in doubt applies p->batch if it landed). */
    stx_cache_discard(p);
    stx_statemap t = p->batch;
    p->batch = p->inflight_state;
    p->inflight_state = t;
    rc = commit_outcome(p, rc, r, f.offset, f.count, f.n_out);
    stx_reply_release(f.owner);
    return rc;
}

int stx_commit_settle(stx_processor *p)
{
    return settle(p, NULL);
}

/* The commit goes out with the read of the batch after the next one (and
 * when fewer are in hand or on their way, two reads), and the caller
 * handles the next batch while Redis runs it.  It is sent before the
 * commit in flight is settled, so Redis has it queued when that one ends;
 * its guard makes it wait for nothing: it lands only if that one did.  The
 * reads are behind the commits, not before: Redis answers the commands of
 * one pipeline after running them all, so a read before a commit would be
 * answered only after it.  The reads take entries after this batch (the
 * group delivered it already); if the commit does not land, those are read
 * again from the offset like every entry after a failed commit. */
int stx_commit_overlap(stx_processor *p, struct stx_msg *const *msgs, size_t n,
                       redisReply **owner)
{
    size_t numkeys, n_out;
    if (build_commit(p, msgs, n, &numkeys, &n_out) != 0) {
        int rc = settle(p, NULL);
        stx_cache_discard(p);
        stx_rewind(p);
        return rc != STX_OK ? rc : stx_fail(p, STX_ENOMEM, "commit: out of memory");
    }
    struct behind next = {msgs[n - 1]->idv, n, 0};
    int ahead = p->inflight.active ? p->inflight.reads : 0; /* reads not answered yet */
    next.reads = (int)(sizeof p->prefetched / sizeof p->prefetched[0] - p->nprefetched) - ahead;
    if (next.reads < 0) next.reads = 0;
    uint64_t t0 = stx_monotonic_us();
    int rc = stx_script_append(&p->scripts, &p->conn, STX_SCRIPT_COMMIT, &p->argv, numkeys);
    if (rc == STX_OK && next.reads > 0) {
        stx_build_new_read(p, 0);
        for (int i = 0; i < next.reads && rc == STX_OK; i++)
            rc = stx_conn_append(&p->conn, (int)p->read_argv.n, p->read_argv.v, p->read_argv.len);
    }
    if (rc != STX_OK) {
        /* Nothing was sent, but what was appended waits in the output
         * buffer: the connection goes, and with it the reply of the commit
         * in flight. */
        if (p->inflight.active) {
            stx_conn_close(&p->conn);
            return settle(p, NULL);
        }
        stx_conn_close(&p->conn);
        stx_cache_discard(p);
        stx_rewind(p);
        return stx_fail(p, rc, "commit: %s", p->conn.err);
    }
    rc = stx_conn_flush(&p->conn);
    if (rc != STX_OK) {
        stx_record_latency(p, stx_monotonic_us() - t0);
        if (p->inflight.active) {
            struct stx_inflight f = p->inflight;
            memset(&p->inflight, 0, sizeof p->inflight);
            stx_pubs_truncate(&p->inflight_pubs, 0);
            return enter_double_doubt(p, &f, &next, 0, rc);
        }
        return stx_enter_doubt(p, STX_DOUBT_COMMIT, next.offset, n, 0, rc, "commit");
    }
    rc = settle(p, &next);
    if (rc != STX_OK) return rc; /* this one was dropped with it, or is in doubt with it */
    stx_statemap t = p->inflight_state;
    p->inflight_state = p->batch;
    p->batch = t;
    stx_pubs tp = p->inflight_pubs; /* (empty: the last one was settled) */
    p->inflight_pubs = p->pubs;
    p->pubs = tp;
    /* (The argv's numkeys pointer points into the struct it was built
     * in: stx_script_run() sets it again before a NOSCRIPT resend.) */
    stx_argv ta = p->inflight_argv;
    p->inflight_argv = p->argv;
    p->argv = ta;
    unsigned char *tb = p->pub_blocks;
    size_t tcap = p->pub_blocks_cap;
    p->pub_blocks = p->inflight_blocks;
    p->pub_blocks_cap = p->inflight_blocks_cap;
    p->pub_blocks_len = 0;
    p->inflight_blocks = tb;
    p->inflight_blocks_cap = tcap;
    p->batch_bytes = 0;
    p->inflight = (struct stx_inflight){1, next.reads, next.offset, n, n_out, numkeys, t0, *owner};
    *owner = NULL;
    return STX_OK;
}

int stx_dead_letter(stx_processor *p, const struct stx_msg *m, const char *reason,
                    const char *error, uint64_t attempts)
{
    struct timespec now;
    clock_gettime(CLOCK_REALTIME, &now);
    stx_eval_begin(p);
    stx_eval_str(p, p->conf.stream);
    stx_eval_str(p, p->key_meta);
    stx_eval_str(p, p->key_dlq);
    stx_eval_str(p, p->key_attempts);
    stx_eval_str(p, p->conf.group);
    add_guard(p);
    stx_eval_str(p, m->id);
    stx_eval_str(p, reason);
    stx_eval_str(p, error);
    stx_argv_add_u64(&p->argv, attempts);
    stx_argv_add_u64(&p->argv, (unsigned long long)now.tv_sec * 1000u +
                                   (unsigned long long)now.tv_nsec / 1000000u);
    /* With a history source, the fields too: the entry may be one the
     * stream no longer holds, and its dead letter keeps them either way.
     * Too many to pass are left out, as dlq.lua leaves them out of its XADD. */
    size_t nvalues = p->conf.history && m->fields ? m->fields->elements / 2 * 2 : 0;
    if (nvalues <= 2 * STX_MAX_PUBLISH_PAIRS)
        for (size_t i = 0; i < nvalues; i++)
            stx_argv_add_ref(&p->argv, m->fields->element[i]->str, m->fields->element[i]->len);
    redisReply *r;
    int rc = stx_script_run(&p->scripts, &p->conn, STX_SCRIPT_DLQ, &p->argv, 4, &r);
    stx_rewind(p);
    if (rc != STX_OK) {
        if (stx_write_outcome_unknown(p, rc))
            return stx_enter_doubt(p, STX_DOUBT_DEAD_LETTER, m->idv, 0, rc == STX_EREDIS, rc,
                                   "dead-lettering");
        return stx_fail(p, rc, "dead-lettering entry %s: %s", m->id, p->conn.err);
    }
    stx_status st = stx_reply_status(r);
    uint64_t seq;
    if (st == STX_ST_OK && stx_reply_u64(r, 1, &seq) == 0) {
        stx_reply_release(r);
        p->seq = seq;
        stx_set_offset(p, m->idv);
        stx_rewind(p); /* from the new offset: the entry is not read again */
        memcpy(p->writer, p->token, sizeof p->writer);
        stx_snapshot_meta(p);
        p->stats.dead_lettered++;
        return STX_OK;
    }
    if (st == STX_ST_GAP) {
        stx_reply_release(r);
        return STX_AGAIN; /* entries before it come first */
    }
    rc = stx_refusal(p, r, "dead-letter");
    stx_reply_release(r);
    return rc;
}

/* Convert the stored state from schema version `from` to the configured
 * one through the user's callback, and write it all in one script. */
int stx_migrate(stx_processor *p, uint64_t from)
{
    uint64_t to = (uint64_t)p->conf.state_schema_version;
    if (!p->conf.migrate)
        return stx_fail(p, STX_ESCHEMA,
                        "state of stream '%s' group '%s' has schema version %" PRIu64
                        ", this processor expects %" PRIu64 "; set a migration callback "
                        "(stx_config_set_migrate) or reset the group with its state",
                        p->conf.stream, p->conf.group, from, to);
    stx_cache_discard(p);
    stx_txn_reset(&p->txn, NULL);
    p->txn.active = 1;
    size_t pos = 0;
    stx_sm_entry *e;
    while ((e = stx_sm_next(&p->state, &pos))) {
        int rc = p->conf.migrate((uint32_t)from, (uint32_t)to, stx_sm_key(e), e->key_len,
                                 stx_sm_value(e), e->value_len, &p->txn, p->conf.migrate_data);
        if (rc != STX_OK) {
            p->txn.active = 0;
            stx_sm_clear(&p->txn.overlay);
            return stx_fail(p, rc < 0 ? rc : STX_ESCHEMA, "migration from schema %" PRIu64
                            " to %" PRIu64 " failed (%d)%s%s; nothing was written", from, to, rc,
                            p->txn.failmsg[0] ? ": " : "", p->txn.failmsg);
        }
    }
    p->txn.active = 0;
    stx_pubs_truncate(&p->pubs, 0); /* a migration publishes nothing */
    if (stx_merge_message(p) != STX_OK) {
        stx_cache_discard(p);
        return stx_fail(p, STX_ENOMEM, "out of memory");
    }
    stx_eval_begin(p);
    stx_eval_str(p, p->key_meta);
    stx_eval_str(p, p->key_state);
    add_guard(p);
    stx_argv_add_u64(&p->argv, from);
    stx_argv_add_u64(&p->argv, to);
    size_t nputs, ndels;
    stx_add_changes(p, &nputs, &ndels);
    redisReply *r;
    int rc = stx_script_run(&p->scripts, &p->conn, STX_SCRIPT_MIGRATE, &p->argv, 2, &r);
    if (rc != STX_OK) {
        if (stx_write_outcome_unknown(p, rc))
            return stx_enter_doubt(p, STX_DOUBT_MIGRATE, p->offset, 0, 1, rc, "migrating state");
        stx_cache_discard(p);
        return stx_fail(p, rc, "migrating state: %s", p->conn.err);
    }
    uint64_t seq;
    stx_status st = stx_reply_status(r);
    if (st != STX_ST_OK || stx_reply_u64(r, 1, &seq) != 0) {
        const char *stored = st == STX_ST_SCHEMA ? stx_reply_str(r, 1) : NULL;
        rc = stored ? stx_fail(p, STX_ESCHEMA, "schema changed to %s during the migration", stored)
                    : stx_refusal(p, r, "migrate");
        stx_reply_release(r);
        stx_cache_discard(p);
        return rc;
    }
    stx_reply_release(r);
    p->seq = seq;
    p->schema = to;
    memcpy(p->writer, p->token, sizeof p->writer);
    stx_cache_apply(p, &p->batch);
    stx_cache_discard(p);
    stx_log(p, STX_LOG_WARN, "state migrated from schema %" PRIu64 " to %" PRIu64 ": %zu keys written, "
            "%zu deleted", from, to, nputs, ndels);
    return STX_OK;
}
