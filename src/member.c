/* A member of a consumer group of a partitioned stream: many partitions
 * served in the caller's thread, one stx_processor each.
 *
 * Every renewal period (lease_ttl_ms / 3) the member does, in one "tick":
 *   1. heartbeat into the group's member hash (lua/member.lua), which
 *      answers with the live members by Redis' clock;
 *   2. read the partition count (a grow adds partitions);
 *   3. for each partition, the rendezvous winner among the live members:
 *        owned, won      -> renew the lease (LOST: drop the processor);
 *        owned, not won  -> release: free the processor (it is between two
 *                           polls, so its batch was committed) and hand
 *                           the lease back;
 *        not owned, won  -> acquire the lease; on success open a processor,
 *                           whose first poll takes the partition's epoch
 *                           (start.lua), fencing the previous owner.
 * Between ticks each owned partition is polled once per round.  A
 * processor that is fenced (a member took its partition while this one
 * was paused) is dropped at once.
 *
 * Leases never let two members commit to one partition: the epoch does
 * that.  They only make it rare that two members try. */
#include <inttypes.h>
#include <signal.h>
#include <stdarg.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "retry.h"
#include "partition.h"
#include "reply.h"
#include "processor.h"

struct part {
    stx_processor *p;           /* non-NULL while this member owns the partition */
    char *name;                 /* "{S#i}" */
    char *lease_key;
    stx_stats acc;              /* counters of earlier processors of this partition */
};

struct stx_member {
    struct stx_config conf;
    int conf_ok;                /* conf holds a copy to release */
    stx_client *client;         /* leases, heartbeats, the partition count */
    char id[300];
    char info[300];             /* "HOST PID", shown by stx members */
    char *members_key;
    unsigned n;
    struct part *parts;
    uint64_t next_tick_us;
    long renew_ms;
    unsigned rr;                /* first partition of the next round */
    int left;                   /* released everything and left the member hash */
    atomic_int stop;
    char errmsg[1024];
    char logbuf[1200];
};

static int mfail(stx_member *m, int code, const char *fmt, ...)
#if defined(__GNUC__)
    __attribute__((format(printf, 3, 4)))
#endif
    ;
static int mfail(stx_member *m, int code, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(m->errmsg, sizeof m->errmsg, fmt, ap);
    va_end(ap);
    return code;
}

static void mlog(stx_member *m, stx_log_level level, const char *fmt, ...)
#if defined(__GNUC__)
    __attribute__((format(printf, 3, 4)))
#endif
    ;
static void mlog(stx_member *m, stx_log_level level, const char *fmt, ...)
{
    if (!m->conf.log && (int)level < m->conf.log_level) return;
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(m->logbuf, sizeof m->logbuf, fmt, ap);
    va_end(ap);
    if (m->conf.log) {
        m->conf.log(level, m->logbuf, m->conf.log_data);
        return;
    }
    static const char *const names[] = {"debug", "info", "warn", "error"};
    fprintf(stderr, "streamtx %s: %s\n", names[level], m->logbuf);
}

/* ---- rendezvous hashing -------------------------------------------------- */

/* hash64(id, i): FNV-1a 64 of the id's bytes, xor i * 0x9E3779B97F4A7C15,
 * then the splitmix64 finalizer.  Every member computes the same winner. */
uint64_t stx_rendezvous_hash(const char *id, unsigned i)
{
    uint64_t h = 0xcbf29ce484222325ull;
    for (const unsigned char *p = (const unsigned char *)id; *p; p++) {
        h ^= *p;
        h *= 0x100000001b3ull;
    }
    h ^= (uint64_t)i * 0x9e3779b97f4a7c15ull;
    h ^= h >> 30;
    h *= 0xbf58476d1ce4e5b9ull;
    h ^= h >> 27;
    h *= 0x94d049bb133111ebull;
    h ^= h >> 31;
    return h;
}

/* The live member that wins partition i (ties: the lower id). */
static const char *winner(char *const *live, size_t nlive, unsigned i)
{
    const char *best = NULL;
    uint64_t best_h = 0;
    for (size_t k = 0; k < nlive; k++) {
        uint64_t h = stx_rendezvous_hash(live[k], i);
        if (!best || h > best_h || (h == best_h && strcmp(live[k], best) < 0)) {
            best = live[k];
            best_h = h;
        }
    }
    return best;
}

/* ---- creation ------------------------------------------------------------ */

int stx_member_new(stx_member **out, const stx_config *conf)
{
    if (!out) return STX_EINVAL;
    *out = NULL;
    stx_member *m = calloc(1, sizeof *m);
    if (!m) return STX_ENOMEM;
    *out = m;
    atomic_init(&m->stop, 0);
    if (!conf) return mfail(m, STX_EINVAL, "no configuration");
    if (stx_config_copy(&m->conf, conf) != STX_OK) return mfail(m, STX_ENOMEM, "out of memory");
    m->conf_ok = 1;
    if (!m->conf.stream) return mfail(m, STX_EINVAL, "configuration lacks 'stream'");
    if (!m->conf.group) return mfail(m, STX_EINVAL, "configuration lacks 'group'");
    if (!m->conf.handler) return mfail(m, STX_EINVAL, "no handler set (stx_config_set_handler)");
    if (stx_partition_name_ok(NULL, m->conf.stream) != STX_OK)
        return mfail(m, STX_EINVAL, "stream '%.200s': a partitioned stream's name is not empty "
                     "and holds no '{' or '}'", m->conf.stream);
    /* Leases are renewed between two polls, and one poll can be blocked
     * for a command timeout (TRYAGAIN during a slot migration is retried
     * that long) plus a WAIT (no replica answering, as after a failover).
     * When that does not fit in a lease after its renewal period, every
     * lease of the member runs out and members take each other's
     * partitions in turn without getting work done. */
    long wait_ms = m->conf.commit_wait_replicas > 0 ? m->conf.commit_wait_timeout_ms : 0;
    if (m->conf.command_timeout_ms + wait_ms >= m->conf.lease_ttl_ms - m->conf.lease_ttl_ms / 3) {
        char with[64] = "";
        if (wait_ms) snprintf(with, sizeof with, " + commit_wait_timeout_ms (%ld)", wait_ms);
        return mfail(m, STX_EINVAL, "command_timeout_ms (%ld)%s must be below two thirds of "
                     "lease_ttl_ms (%ld): a member renews its leases between two polls, and a "
                     "poll can wait that long", m->conf.command_timeout_ms, with,
                     m->conf.lease_ttl_ms);
    }
    char host[256] = "local";
    gethostname(host, sizeof host - 1);
    host[sizeof host - 1] = '\0';
    char rnd[9];
    stx_random_hex(rnd, 4);
    if (m->conf.consumer) snprintf(m->id, sizeof m->id, "%.200s-%s", m->conf.consumer, rnd);
    else snprintf(m->id, sizeof m->id, "stx-%.200s-%s", host, rnd);
    snprintf(m->info, sizeof m->info, "%.200s %ld", host, (long)getpid());
    if (!(m->members_key = stx_key_alloc(m->conf.stream, m->conf.group, "members")))
        return mfail(m, STX_ENOMEM, "out of memory");
    m->renew_ms = m->conf.lease_ttl_ms / 3;
    return STX_OK;
}

/* A partition's processor's stats into acc, which holds those of the
 * processors it had before: counters add up, the latest gauges and
 * percentiles stand, the maximum is the largest. */
static void stats_add(stx_stats *acc, const stx_stats *s)
{
    acc->handled += s->handled;
    acc->committed += s->committed;
    acc->commits += s->commits;
    acc->duplicates += s->duplicates;
    acc->handler_failures += s->handler_failures;
    acc->fenced += s->fenced;
    acc->reconnects += s->reconnects;
    acc->script_reloads += s->script_reloads;
    acc->snapshot_loads += s->snapshot_loads;
    acc->redis_loads += s->redis_loads;
    acc->retries += s->retries;
    acc->dead_lettered += s->dead_lettered;
    acc->slow_handlers += s->slow_handlers;
    acc->overlapped += s->overlapped;
    acc->commits_unreplicated += s->commits_unreplicated;
    acc->relayed += s->relayed;
    acc->relay_refusals += s->relay_refusals;
    acc->outbox_len = s->outbox_len;
    acc->outbox_age_ms = s->outbox_age_ms;
    acc->commit_us_p50 = s->commit_us_p50;
    acc->commit_us_p99 = s->commit_us_p99;
    if (s->commit_us_max > acc->commit_us_max) acc->commit_us_max = s->commit_us_max;
}

static void part_close(stx_member *m, struct part *pt)
{
    (void)m;
    if (!pt->p) return;
    stx_stats s;
    stx_processor_stats(pt->p, &s);
    stats_add(&pt->acc, &s);
    stx_processor_free(pt->p);
    pt->p = NULL;
}

/* Hand every partition back and leave the member hash: a member that stops
 * passes its partitions on at once instead of after lease_ttl_ms. */
static void leave(stx_member *m)
{
    if (m->left) return;
    m->left = 1;
    for (unsigned i = 0; i < m->n; i++) {
        struct part *pt = &m->parts[i];
        if (!pt->p) continue;
        part_close(m, pt);
        stx_lease_reply lr;
        if (m->client) stx_lease_call(m->client, pt->lease_key, "release", m->id, 0, 0, &lr);
    }
    if (!m->client) return;
    stx_client_eval_begin(m->client);
    stx_client_eval_str(m->client, m->members_key);
    stx_client_eval_str(m->client, "leave");
    stx_client_eval_str(m->client, m->id);
    redisReply *r;
    if (stx_client_ready(m->client) == STX_OK &&
        stx_script_run(&m->client->scripts, &m->client->conn, STX_SCRIPT_MEMBER, &m->client->argv,
                       1, &r) == STX_OK)
        stx_reply_release(r);
    stx_argv_reset(&m->client->argv);
}

void stx_member_free(stx_member *m)
{
    if (!m) return;
    if (m->members_key) leave(m);
    for (unsigned i = 0; i < m->n; i++) {
        part_close(m, &m->parts[i]);
        free(m->parts[i].name);
        free(m->parts[i].lease_key);
    }
    free(m->parts);
    stx_client_free(m->client);
    free(m->members_key);
    if (m->conf_ok) stx_config_release(&m->conf);
    free(m);
}

void stx_member_stop(stx_member *m)
{
    if (m) atomic_store(&m->stop, 1);
}

const char *stx_member_errmsg(const stx_member *m)
{
    return m ? m->errmsg : "no member";
}

const char *stx_member_id(const stx_member *m)
{
    return m ? m->id : "";
}

unsigned stx_member_partitions(const stx_member *m)
{
    return m ? m->n : 0;
}

int stx_member_owns(const stx_member *m, unsigned i)
{
    return m && i < m->n && m->parts[i].p != NULL;
}

void stx_member_partition_stats(const stx_member *m, unsigned i, stx_stats *out)
{
    if (!out) return;
    memset(out, 0, sizeof *out);
    if (!m || i >= m->n) return;
    const struct part *pt = &m->parts[i];
    *out = pt->acc;
    if (!pt->p) return;
    stx_stats s;
    stx_processor_stats(pt->p, &s);
    stats_add(out, &s);
    out->state_keys = s.state_keys;
}

/* ---- the tick ------------------------------------------------------------- */

static int resize(stx_member *m, unsigned n)
{
    if (n <= m->n) return STX_OK; /* partitions are never taken away */
    struct part *v = realloc(m->parts, n * sizeof *v);
    if (!v) return mfail(m, STX_ENOMEM, "out of memory");
    m->parts = v;
    for (unsigned i = m->n; i < n; i++) {
        memset(&v[i], 0, sizeof v[i]);
        size_t cap = strlen(m->conf.stream) + 16;
        if (!(v[i].name = malloc(cap)) ||
            stx_partition_name(v[i].name, cap, m->conf.stream, i) < 0 ||
            !(v[i].lease_key = stx_key_alloc(v[i].name, m->conf.group, "lease"))) {
            free(v[i].name);
            m->n = i;
            return mfail(m, STX_ENOMEM, "out of memory");
        }
    }
    m->n = n;
    return STX_OK;
}

static int open_partition(stx_member *m, unsigned i)
{
    struct part *pt = &m->parts[i];
    struct stx_config *pc = malloc(sizeof *pc);
    if (!pc) return mfail(m, STX_ENOMEM, "out of memory");
    int rc = stx_config_copy(pc, &m->conf);
    if (rc != STX_OK) {
        free(pc);
        return mfail(m, STX_ENOMEM, "out of memory");
    }
    char err[256] = "";
    /* A short block per partition: the member's round visits every owned
     * partition, and waits for new entries itself when all were idle. */
    if ((rc = stx_config_set(pc, "stream", pt->name, err, sizeof err)) == STX_OK &&
        (rc = stx_config_set(pc, "consumer", m->id, err, sizeof err)) == STX_OK)
        rc = stx_config_set(pc, "block_ms", "1", err, sizeof err);
    if (rc == STX_OK) {
        rc = stx_processor_new(&pt->p, pc);
        if (rc != STX_OK) {
            snprintf(err, sizeof err, "%s", stx_processor_errmsg(pt->p));
            stx_processor_free(pt->p);
            pt->p = NULL;
        }
    }
    stx_config_free(pc);
    if (rc != STX_OK) return mfail(m, rc, "partition %u: %s", i, err);
    return STX_OK;
}

/* Heartbeat; the live members' ids into *live (caller frees each and the array). */
static int beat(stx_member *m, char ***live, size_t *nlive)
{
    *live = NULL;
    *nlive = 0;
    stx_client *c = m->client;
    int rc = stx_client_ready(c);
    if (rc != STX_OK) return mfail(m, rc, "%s", stx_client_errmsg(c));
    stx_client_eval_begin(c);
    stx_client_eval_str(c, m->members_key);
    stx_client_eval_str(c, "beat");
    stx_client_eval_str(c, m->id);
    stx_argv_add_u64(&c->argv, (unsigned long long)m->conf.lease_ttl_ms);
    stx_client_eval_str(c, m->info);
    redisReply *r;
    rc = stx_script_run(&c->scripts, &c->conn, STX_SCRIPT_MEMBER, &c->argv, 1, &r);
    stx_argv_reset(&c->argv);
    if (rc != STX_OK) return mfail(m, rc, "member heartbeat: %s", c->conn.err);
    if (!stx_client_reply_is(r, "OK") || r->elements < 2 || r->elements % 2) {
        rc = stx_client_reply_is(r, "WRONGTYPE")
                 ? mfail(m, STX_EWRONGTYPE, "member hash '%.200s' is not a hash", m->members_key)
                 : mfail(m, STX_EREDIS, "member heartbeat: unexpected reply");
        stx_reply_release(r);
        return rc;
    }
    size_t n = (r->elements - 2) / 2;
    char **v = calloc(n + 1, sizeof *v);
    rc = v ? STX_OK : STX_ENOMEM;
    for (size_t k = 0; k < n && rc == STX_OK; k++) {
        const char *s = stx_client_elem_str(r, 2 + 2 * k);
        if (!s || !(v[k] = strdup(s))) rc = STX_ENOMEM;
    }
    stx_reply_release(r);
    if (rc != STX_OK) {
        for (size_t k = 0; v && k < n; k++) free(v[k]);
        free(v);
        return mfail(m, rc, "out of memory");
    }
    *live = v;
    *nlive = n;
    return STX_OK;
}

static int tick(stx_member *m)
{
    if (!m->client) {
        int rc = stx_client_new(&m->client, &m->conf);
        /* On failure the client (if any) is kept: the next tick reconnects. */
        if (rc != STX_OK) return mfail(m, rc, "%s", stx_client_errmsg(m->client));
    }
    char **live;
    size_t nlive;
    int rc = beat(m, &live, &nlive);
    if (rc != STX_OK) return rc;
    unsigned np = 0;
    rc = stx_partition_count(m->client, m->conf.stream, &np);
    if (rc == STX_OK) rc = resize(m, np);
    else mfail(m, rc, "%s", stx_client_errmsg(m->client));
    for (unsigned i = 0; i < m->n && rc == STX_OK; i++) {
        struct part *pt = &m->parts[i];
        const char *w = winner(live, nlive, i);
        int mine = w && strcmp(w, m->id) == 0;
        stx_lease_reply lr;
        if (pt->p && !mine) {
            /* Between two polls: the batch in hand was committed. */
            part_close(m, pt);
            rc = stx_lease_call(m->client, pt->lease_key, "release", m->id, 0, 0, &lr);
            mlog(m, STX_LOG_INFO, "member %s: released partition %u to %s", m->id, i, w ? w : "?");
        } else if (pt->p) {
            rc = stx_lease_call(m->client, pt->lease_key, "renew", m->id, m->conf.lease_ttl_ms,
                                stx_processor_epoch(pt->p), &lr);
            if (rc == STX_OK && !lr.ok) {
                mlog(m, STX_LOG_WARN, "member %s: lease of partition %u lost to '%s'; dropping it",
                     m->id, i, lr.owner);
                part_close(m, pt);
            }
        } else if (mine) {
            rc = stx_lease_call(m->client, pt->lease_key, "acquire", m->id, m->conf.lease_ttl_ms,
                                0, &lr);
            if (rc == STX_OK && lr.ok) {
                rc = open_partition(m, i);
                if (rc == STX_OK)
                    mlog(m, STX_LOG_INFO, "member %s: acquired partition %u", m->id, i);
            }
        }
        if (rc != STX_OK && !m->errmsg[0]) mfail(m, rc, "%s", stx_client_errmsg(m->client));
    }
    for (size_t k = 0; k < nlive; k++) free(live[k]);
    free(live);
    return rc;
}

/* ---- polling --------------------------------------------------------------- */

static void sleep_ms(stx_member *m, long ms)
{
    while (ms > 0 && !atomic_load(&m->stop)) {
        long step = ms < 20 ? ms : 20;
        struct timespec ts = {0, step * 1000000L};
        nanosleep(&ts, NULL);
        ms -= step;
    }
}

/* Tick when due.  A retriable failure is reported but does not stop the
 * round: the partitions' processors have connections of their own. */
static int maybe_tick(stx_member *m)
{
    uint64_t now = stx_monotonic_us();
    if (now < m->next_tick_us) return STX_OK;
    m->errmsg[0] = '\0';
    int rc = tick(m);
    /* A failed tick is tried again soon, within the lease. */
    long next = rc == STX_OK ? m->renew_ms : (m->renew_ms < 200 ? m->renew_ms : 200);
    m->next_tick_us = stx_monotonic_us() + (uint64_t)next * 1000u;
    return rc;
}

int stx_member_poll(stx_member *m)
{
    if (!m) return STX_EINVAL;
    if (!m->members_key) return STX_EINVAL; /* creation failed: errmsg says why */
    if (atomic_load(&m->stop)) {
        leave(m);
        return mfail(m, STX_ESTOPPED, "stopped");
    }
    int rc = maybe_tick(m);
    if (rc != STX_OK && stx_error_class_of(rc) != STX_CLASS_RETRIABLE) return rc;
    int tick_rc = rc;
    long committed = 0;
    unsigned n = m->n;
    for (unsigned k = 0; k < n; k++) {
        if (atomic_load(&m->stop)) break;
        unsigned i = (m->rr + k) % n;
        if (!m->parts[i].p) continue;
        rc = maybe_tick(m); /* a slow round must not let the leases run out */
        if (rc != STX_OK && stx_error_class_of(rc) != STX_CLASS_RETRIABLE) return rc;
        struct part *pt = &m->parts[i];
        if (!pt->p) continue;
        /* A partition waiting for an entry's retry delay does not hold the
         * others up: its turn comes when the delay is over. */
        if (pt->p->retry_at_us > stx_monotonic_us()) continue;
        rc = stx_processor_poll(pt->p);
        if (rc > 0) {
            committed += rc;
            continue;
        }
        if (rc == STX_OK) continue;
        if (rc == STX_EFENCED) {
            mlog(m, STX_LOG_WARN, "member %s: partition %u: %s; dropping it", m->id, i,
                 stx_processor_errmsg(pt->p));
            part_close(m, pt);
            continue;
        }
        m->rr = (i + 1) % n;
        return mfail(m, rc, "partition %u: %s", i, stx_processor_errmsg(pt->p));
    }
    if (n) m->rr = (m->rr + 1) % n;
    if (committed == 0) {
        if (tick_rc != STX_OK) return tick_rc;
        /* Nothing anywhere: wait a little (stop-aware), not past the next tick. */
        uint64_t now = stx_monotonic_us();
        long wait = m->conf.block_ms < 20 ? m->conf.block_ms : 20;
        if (m->next_tick_us > now && (long)((m->next_tick_us - now) / 1000) < wait)
            wait = (long)((m->next_tick_us - now) / 1000);
        sleep_ms(m, wait);
    }
    return committed > 0x7fffffff ? 0x7fffffff : (int)committed;
}

int stx_member_run(stx_member *m)
{
    if (!m) return STX_EINVAL;
    /* As stx_processor_run(), but never asleep for longer than 2 s: the
     * member renews its leases between polls. */
    stx_retry retry;
    stx_retry_init(&retry, 2000);
    for (;;) {
        int rc = stx_member_poll(m);
        if (rc >= 0) {
            stx_retry_reset(&retry);
            continue;
        }
        if (rc == STX_ESTOPPED) return STX_OK;
        if (rc == STX_EHANDLER) {
            mlog(m, STX_LOG_WARN, "%s", m->errmsg);
            continue;
        }
        if (stx_error_class_of(rc) != STX_CLASS_RETRIABLE) return rc;
        long delay;
        int level = stx_retry_next(&retry, m->errmsg, &delay);
        mlog(m, level, "%s; retrying in %ld ms", m->errmsg, delay);
        sleep_ms(m, delay);
    }
}
