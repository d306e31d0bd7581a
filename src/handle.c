/* Handling a batch: decode the entries, run the handler on each, commit
 * what was handled (in chunks within max_batch_bytes), and act on the
 * entry that failed: retry it later, or move it to the dead-letter stream. */
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "reply.h"
#include "processor.h"

/* Delay before delivery attempt+1 of an entry whose handler asked for a
 * retry: exponential with jitter (the default), linear or constant,
 * capped at retry_max_ms. */
static uint64_t retry_delay_ms(stx_processor *p, uint64_t attempt)
{
    uint64_t base = (uint64_t)p->conf.retry_base_ms, cap = (uint64_t)p->conf.retry_max_ms;
    uint64_t d = base;
    if (p->conf.retry_backoff == 1) {
        d = base * attempt;
    } else if (p->conf.retry_backoff == 0) {
        d = attempt > 40 ? cap : base << (attempt ? attempt - 1 : 0);
        if (d > cap) d = cap;
        /* Jitter in [d/2, d] keeps retrying processors from moving in step. */
        p->rng ^= p->rng << 13;
        p->rng ^= p->rng >> 7;
        p->rng ^= p->rng << 17;
        if (d > 1) d = d / 2 + p->rng % (d - d / 2 + 1);
    }
    return d > cap ? cap : d;
}

/* Why an entry is not committed, when its handling stops the batch. */
struct verdict {
    const struct stx_msg *msg;
    int dead;                   /* dead-letter it, else retry it later */
    const char *reason;
    char error[600];
    uint64_t attempts;
    long retry_ms;              /* the handler's own delay, or -1 */
};

/* Run the handler on m (index k of the batch); returns 1 when its changes
 * joined the batch, 0 when *v says what to do with it instead. */
static int handle_one(stx_processor *p, struct stx_msg *m, size_t k, struct verdict *v)
{
    v->msg = m;
    v->attempts = m->delivery_count;
    v->retry_ms = -1;
    if (m->delivery_count > (uint64_t)p->conf.max_deliveries) {
        /* Handed out that often without a commit: the handler failed, or
         * the process died while handling it (a poison entry). */
        v->dead = 1;
        v->reason = "max_deliveries";
        v->attempts = m->delivery_count - 1;
        snprintf(v->error, sizeof v->error,
                 "the handler failed or the process died while handling it %" PRIu64
                 " times (max_deliveries %ld)", v->attempts, p->conf.max_deliveries);
        return 0;
    }
    stx_txn_reset(&p->txn, m);
    m->active = 1;
    p->txn.active = 1;
    uint64_t t0 = stx_monotonic_us();
    int verdict = p->conf.handler(m, &p->txn, p->conf.handler_data);
    uint64_t took_ms = (stx_monotonic_us() - t0) / 1000u;
    m->active = 0;
    p->txn.active = 0;
    if (took_ms > (uint64_t)p->conf.handler_warn_ms) {
        p->stats.slow_handlers++;
        stx_log(p, STX_LOG_WARN, "handler took %" PRIu64 " ms on entry %s (handler_warn_ms %ld)",
                took_ms, m->id, p->conf.handler_warn_ms);
    }
    for (size_t i = p->txn.pubs_mark; i < p->pubs.n; i++) p->pubs.v[i].source = k;
    if (verdict == STX_HANDLER_OK && stx_merge_message(p) == STX_OK) {
        p->stats.handled++;
        v->msg = NULL;
        return 1;
    }
    stx_sm_clear(&p->txn.overlay);
    stx_pubs_truncate(&p->pubs, p->txn.pubs_mark);
    if (verdict == STX_HANDLER_OK) {
        v->dead = 0;
        v->reason = "out of memory";
        snprintf(v->error, sizeof v->error, "out of memory staging the entry's changes");
        return 0;
    }
    p->stats.handler_failures++;
    v->retry_ms = p->txn.retry_ms;
    /* A handler passing on a library code (`if (rc != STX_OK) return rc;`)
     * shares the verdict's int: a retriable code, and STX_ENOMEM, mean retry. */
    int retry = verdict == STX_HANDLER_RETRY || verdict == STX_ENOMEM ||
                (verdict < 0 && stx_error_class_of(verdict) == STX_CLASS_RETRIABLE);
    v->dead = !retry || m->delivery_count >= (uint64_t)p->conf.max_deliveries;
    v->reason = !retry ? "handler_failed" : "retries_exhausted";
    if (p->txn.failmsg[0]) snprintf(v->error, sizeof v->error, "%s", p->txn.failmsg);
    else snprintf(v->error, sizeof v->error, "handler returned %d", verdict);
    return 0;
}

/* Move m to the dead-letter stream; one warning says so. */
static int dead_letter(stx_processor *p, const struct stx_msg *m, const char *reason,
                       const char *error, uint64_t attempts)
{
    int rc = stx_dead_letter(p, m, reason, error, attempts);
    if (rc != STX_OK) return rc;
    return stx_fail(p, STX_EHANDLER, "entry %s of stream '%s' moved to the dead-letter stream "
                    "(%s, %" PRIu64 " attempt%s): %s", m->id, p->conf.stream, reason, attempts,
                    attempts == 1 ? "" : "s", error);
}

/* Act on a verdict once everything before the entry is committed. */
static int act_on(stx_processor *p, struct verdict *v)
{
    const struct stx_msg *m = v->msg;
    if (v->dead) return dead_letter(p, m, v->reason, v->error, v->attempts);
    if (strcmp(v->reason, "out of memory") == 0)
        return stx_fail(p, STX_ENOMEM, "entry %s: %s", m->id, v->error);
    uint64_t delay = v->retry_ms >= 0 ? (uint64_t)v->retry_ms : retry_delay_ms(p, m->delivery_count);
    if (delay > (uint64_t)p->conf.retry_max_ms) delay = (uint64_t)p->conf.retry_max_ms;
    p->retry_at_us = stx_monotonic_us() + delay * 1000u;
    p->stats.retries++;
    /* The next read of this entry counts the failed attempt. */
    snprintf(p->failed_id, sizeof p->failed_id, "%s", m->id);
    return stx_fail(p, STX_EHANDLER, "handler failed on entry %s of stream '%s' (attempt %" PRIu64
                    " of %ld, retry in %" PRIu64 " ms): %s", m->id, p->conf.stream,
                    m->delivery_count, p->conf.max_deliveries, delay, v->error);
}

/* Acknowledge entries at or below the offset: they were committed before
 * (the group was moved back, or a paused processor read them again). */
static int ack_committed(stx_processor *p, struct stx_msg *const *msgs, size_t n)
{
    stx_argv_reset(&p->argv);
    stx_argv_add_ref(&p->argv, "XACK", 4);
    stx_argv_add_ref(&p->argv, p->conf.stream, strlen(p->conf.stream));
    stx_argv_add_ref(&p->argv, p->conf.group, strlen(p->conf.group));
    for (size_t i = 0; i < n; i++) {
        stx_log(p, STX_LOG_INFO, "entry %s was committed before; skipped", msgs[i]->id);
        stx_argv_add_ref(&p->argv, msgs[i]->id, strlen(msgs[i]->id));
    }
    redisReply *r;
    int rc = stx_conn_command(&p->conn, &r, (int)p->argv.n, p->argv.v, p->argv.len);
    if (rc != STX_OK) return stx_fail(p, rc, "acknowledging committed entries: %s", p->conn.err);
    stx_reply_release(r);
    p->stats.duplicates += n;
    return STX_OK;
}

/* Handle and commit msgs[0..n) (ascending ids).  An entry that fails ends
 * the batch: those before it are committed first, then it is dead-lettered
 * or scheduled for a retry, and reading rewinds to the offset so the rest
 * comes again in order.  A recovery batch is finished even when a stop was
 * asked for: the next run would take a batch left in hand for a crash and
 * narrow it.  When owner is not NULL and the whole batch was handled, its
 * commit may be left in flight (stx_commit_overlap() takes *owner).  A
 * commit in flight when this is called is settled before any other
 * command.  Returns the number committed (or sent), STX_AGAIN, or an
 * error. */
static int process(stx_processor *p, struct stx_msg *const *msgs, size_t n, redisReply **owner)
{
    size_t first = 0;
    while (first < n && stx_id_cmp(msgs[first]->idv, p->offset) <= 0) first++;
    if (first) {
        int rc = stx_commit_settle(p);
        if (rc == STX_OK) rc = ack_committed(p, msgs, first);
        if (rc != STX_OK) return rc;
    }
    int committed = 0, recovery = p->reading_pending;
    struct verdict v = {0};
    size_t i = first;
    while (i < n) {
        struct stx_msg *const *chunk = msgs + i;
        size_t k = 0;
        int full = 0;
        for (; i < n && (recovery || !atomic_load(&p->stop)); i++) {
            if (!msgs[i]->fields) {
                /* Deleted while pending: nothing to handle or apply. */
                stx_log(p, STX_LOG_WARN, "entry %s of stream '%s' was deleted before it was "
                        "handled; it is not applied", msgs[i]->id, p->conf.stream);
                k++;
                continue;
            }
            if (!handle_one(p, msgs[i], k, &v)) break;
            k++;
            if (p->batch_bytes >= (size_t)p->conf.max_batch_bytes && i + 1 < n) {
                i++;
                full = 1; /* commit what is staged before handling more */
                break;
            }
        }
        if (k) {
            int whole = !full && !v.msg && i == n;
            int rc = whole && owner && !first && stx_overlap_allowed(p)
                         ? stx_commit_overlap(p, chunk, k, owner)
                         : stx_commit(p, chunk, k, whole);
            if (rc != STX_OK) return committed && rc == STX_AGAIN ? committed : rc;
            committed += (int)k;
        } else {
            stx_cache_discard(p);
        }
        if (!full) break;
    }
    if (i < n || first || v.msg) {
        /* What follows reads the offset, or sends a command. */
        int rc = stx_commit_settle(p);
        if (rc != STX_OK) return committed && rc == STX_AGAIN ? committed : rc;
    }
    if (i < n || first) stx_rewind(p); /* stopped or failed early: the rest comes again */
    if (v.msg) return act_on(p, &v);
    return committed;
}

/* Room for a batch of messages, allocated once and kept as long as p, so a
 * message pointer a handler kept past its call reads valid memory (and
 * finds it inactive) instead of freed memory.  No read returns more than
 * batch_size entries. */
static int reserve_msgs(stx_processor *p, size_t n)
{
    if (!p->msgs) {
        size_t cap = (size_t)p->conf.batch_size;
        p->msgs = calloc(cap, sizeof *p->msgs);
        p->msg_ptrs = calloc(cap, sizeof *p->msg_ptrs);
        if (!p->msgs || !p->msg_ptrs) {
            free(p->msgs);
            free(p->msg_ptrs);
            p->msgs = NULL;
            p->msg_ptrs = NULL;
            return STX_ENOMEM;
        }
        p->msgs_cap = cap;
    }
    return n <= p->msgs_cap ? STX_OK : STX_ELIMIT;
}

/* Decode the entries of the read r and handle them; r is released, or
 * taken by a commit left in flight.  Returns as process(), or 0 for a batch
 * without entries. */
static int handle_batch(stx_processor *p, redisReply *r, const redisReply *entries,
                        const redisReply *counts)
{
    size_t n = entries->elements;
    if (reserve_msgs(p, n) != STX_OK) {
        int rc = stx_commit_settle(p);
        stx_reply_release(r);
        stx_rewind(p);
        return rc != STX_OK ? rc : stx_fail(p, STX_ENOMEM, "out of memory");
    }
    size_t ok = 0;
    int bad = -1, bad_rc = STX_OK;  /* an entry that does not decode, or is over a limit */
    const char *why = "";
    for (size_t i = 0; i < n; i++) {
        struct stx_msg *m = &p->msgs[i];
        int d = stx_msg_decode(m, entries->element[i], p->conf.stream, p->conf.max_fields,
                               p->conf.max_value_bytes, &why);
        uint64_t attempts;
        if (counts && stx_reply_u64(counts, i, &attempts) == 0) m->delivery_count = attempts + 1;
        if (d != STX_OK) {
            bad = (int)i;
            bad_rc = d;
            break;
        }
        p->msg_ptrs[ok++] = m;
        if (p->reading_pending) p->cursor = m->idv;
    }
    /* A batch with an entry to move out of the way commits and settles
     * what comes before it. */
    int rc = ok ? process(p, p->msg_ptrs, ok, bad < 0 ? &r : NULL) : 0;
    if (bad >= 0 && rc >= 0) {
        int src = stx_commit_settle(p);
        if (src != STX_OK) rc = src;
    }
    if (bad >= 0 && rc >= 0 && (size_t)rc == ok && stx_id_cmp(p->offset, p->msgs[bad].idv) < 0) {
        /* Everything before it is committed: move it out of the way. */
        struct stx_msg *m = &p->msgs[bad];
        if (!m->id)
            rc = stx_fail(p, STX_EDECODE, "stream '%s' returned an entry without an id: %s",
                          p->conf.stream, why);
        else
            rc = dead_letter(p, m, bad_rc == STX_ELIMIT ? "limit" : "undecodable", why,
                             m->delivery_count);
        stx_rewind(p);
    } else if (bad >= 0) {
        stx_rewind(p);
    }
    stx_reply_release(r);
    if (rc == 0 && ok == 0 && bad < 0) return 0;
    if (rc == 0) return STX_AGAIN; /* nothing committed: read again at once */
    return rc;
}

/* How long one poll() goes on with the batches in hand, at most (and at
 * most block_ms): what a caller does between polls, and the heartbeat and
 * the relay, wait no longer; each end of a chain costs one commit's round
 * trip without overlap. */
#define STX_CHAIN_MS 10

/* Whether poll() goes on with the next batch in hand (overlap). */
static int chain_on(stx_processor *p, uint64_t until)
{
    return p->conf.overlap && p->phase == STX_PHASE_RUNNING && !p->reading_pending &&
           !atomic_load(&p->stop) && !stx_outbox_owed(p) && stx_monotonic_us() < until;
}

/* One batch, then, while reads sent behind the commits bring more, the
 * next: each is handled while Redis runs the commit of the one before
 * (stx_commit_overlap()).  The chain ends when the reads bring nothing, a
 * batch fails or is committed otherwise, the outbox holds a relay step's
 * worth, after STX_CHAIN_MS, or on a stop; nothing is in flight when it
 * returns.  Returns the entries whose
 * commits landed, STX_AGAIN, 0 or an error. */
int stx_poll_once(stx_processor *p)
{
    redisReply *r;
    const redisReply *entries, *counts;
    int rc = stx_read_batch(p, &r, &entries, &counts);
    if (rc != STX_OK) return rc;
    if (!r) return 0;
    uint64_t committed_before = p->stats.committed;
    long chain_ms = p->conf.block_ms < STX_CHAIN_MS ? p->conf.block_ms : STX_CHAIN_MS;
    uint64_t until = stx_monotonic_us() + (uint64_t)chain_ms * 1000u;
    for (;;) {
        rc = handle_batch(p, r, entries, counts);
        if (rc < 0 || !chain_on(p, until)) break;
        if (!stx_prefetched_entries(p)) {
            /* Nothing in hand: the reads behind the commit in flight may
             * bring the next batch. */
            if (!p->inflight.active) break;
            rc = stx_commit_settle(p);
            if (rc != STX_OK || !chain_on(p, until) || !stx_prefetched_entries(p)) break;
        }
        int overlapped = p->inflight.active;
        rc = stx_read_batch(p, &r, &entries, &counts); /* one in hand: no wait */
        if (rc != STX_OK || !r) break;
        if (overlapped) p->stats.overlapped++;
    }
    int src = stx_commit_settle(p);
    if (src != STX_OK && (rc >= 0 || rc == STX_AGAIN)) rc = src;
    int confirmed = (int)(p->stats.committed - committed_before);
    if (rc < 0 && rc != STX_AGAIN) return rc;
    if (confirmed > 0) return confirmed;
    return rc == 0 ? 0 : STX_AGAIN;
}
