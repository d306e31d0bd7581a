/* The processor: start (epoch, state, claims), the read/handle/commit loop,
 * and recovery after a lost connection. */
#include "processor.h"

#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "codec.h"

/* ---- errors and logging ------------------------------------------------ */

int stx_fail(stx_processor *p, int code, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(p->errmsg, sizeof p->errmsg, fmt, ap);
    va_end(ap);
    return code;
}

void stx_log(stx_processor *p, stx_log_level level, const char *fmt, ...)
{
    if (!p->conf.log && (int)level < p->conf.log_level) return;
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(p->logbuf, sizeof p->logbuf, fmt, ap);
    va_end(ap);
    if (p->conf.log) {
        p->conf.log(level, p->logbuf, p->conf.log_data);
        return;
    }
    static const char *const names[] = {"debug", "info", "warn", "error"};
    fprintf(stderr, "streamtx %s: %s\n", names[level], p->logbuf);
}

/* Log an error at the point it is returned to the caller. */
static int report(stx_processor *p, int code)
{
    if (code != STX_OK && code != STX_ESTOPPED)
        stx_log(p, code == STX_EHANDLER ? STX_LOG_WARN : STX_LOG_ERROR, "%s: %s",
                stx_strerror(code), p->errmsg);
    return code;
}

/* ---- creation ---------------------------------------------------------- */

static void random_hex(char *out, size_t nbytes)
{
    unsigned char raw[32] = {0};
    int fd = open("/dev/urandom", O_RDONLY | O_CLOEXEC);
    ssize_t got = fd >= 0 ? read(fd, raw, nbytes) : -1;
    if (fd >= 0) close(fd);
    if (got != (ssize_t)nbytes) { /* no urandom: time and pid still tell lineages apart */
        struct timespec ts;
        clock_gettime(CLOCK_REALTIME, &ts);
        uint64_t mix = (uint64_t)ts.tv_sec * 1000000007u ^ (uint64_t)ts.tv_nsec ^
                       ((uint64_t)getpid() << 32);
        for (size_t i = 0; i < nbytes; i++) raw[i] = (unsigned char)(mix >> (8 * (i % 8)));
    }
    for (size_t i = 0; i < nbytes; i++) sprintf(out + 2 * i, "%02x", raw[i]);
}

int stx_processor_new(stx_processor **out, const stx_config *conf)
{
    *out = NULL;
    stx_processor *p = calloc(1, sizeof *p);
    if (!p) return STX_ENOMEM;
    *out = p;
    atomic_init(&p->stop, 0);
    stx_sm_init(&p->state);
    stx_sm_init(&p->batch);
    stx_sm_init(&p->txn.overlay);
    stx_argv_init(&p->argv);
    stx_argv_init(&p->read_argv);
    stx_scripts_init(&p->scripts);
    p->txn.p = p;
    p->txn.pubs = &p->pubs;
    p->txn.batch = &p->batch;
    p->txn.base = &p->state;
    strcpy(p->offset_str, "0-0");
    if (!conf) return stx_fail(p, STX_EINVAL, "no configuration");
    if (stx_config_copy(&p->conf, conf) != STX_OK) {
        memset(&p->conf, 0, sizeof p->conf);
        return stx_fail(p, STX_ENOMEM, "out of memory");
    }
    if (!p->conf.stream) return stx_fail(p, STX_EINVAL, "configuration lacks 'stream'");
    if (!p->conf.group) return stx_fail(p, STX_EINVAL, "configuration lacks 'group'");
    if (!p->conf.handler) return stx_fail(p, STX_EINVAL, "no handler set (stx_config_set_handler)");
    if (p->conf.consumer) {
        p->consumer = strdup(p->conf.consumer);
    } else {
        /* Stable across restarts on the same host, so a restarted instance
         * finds its own pending entries first. */
        char host[256] = "local";
        gethostname(host, sizeof host - 1);
        host[sizeof host - 1] = '\0';
        size_t n = strlen(host) + 8;
        if ((p->consumer = malloc(n))) snprintf(p->consumer, n, "stx-%s", host);
    }
    p->key_meta = stx_key_alloc(p->conf.stream, p->conf.group, "meta");
    p->key_state = stx_key_alloc(p->conf.stream, p->conf.group, "state");
    p->key_dlq = stx_key_alloc(p->conf.stream, p->conf.group, "dlq");
    if (!p->consumer || !p->key_meta || !p->key_state || !p->key_dlq)
        return stx_fail(p, STX_ENOMEM, "out of memory");
    if (p->conf.client_name) snprintf(p->conn_name, sizeof p->conn_name, "%s", p->conf.client_name);
    else snprintf(p->conn_name, sizeof p->conn_name, "stx:%s", p->consumer);
    p->rng = (uint64_t)(uintptr_t)p ^ 0x9e3779b97f4a7c15ull;
    stx_conn_init(&p->conn, &p->conf.url, p->conf.connect_timeout_ms, p->conf.command_timeout_ms);
    p->conn.name = p->conn_name;
    return STX_OK;
}

void stx_processor_free(stx_processor *p)
{
    if (!p) return;
    stx_conn_close(&p->conn);
    stx_snapshot_close(p->snap);
    stx_sm_free(&p->state);
    stx_sm_free(&p->batch);
    stx_txn_release(&p->txn);
    stx_pubs_free(&p->pubs);
    stx_argv_free(&p->argv);
    stx_argv_free(&p->read_argv);
    if (p->prefetched) freeReplyObject(p->prefetched);
    stx_config_release(&p->conf);
    free(p->key_meta);
    free(p->key_state);
    free(p->key_dlq);
    free(p->consumer);
    free(p->identity);
    free(p);
}

void stx_processor_stop(stx_processor *p)
{
    if (p) atomic_store(&p->stop, 1);
}

const char *stx_processor_errmsg(const stx_processor *p)
{
    return p ? p->errmsg : "no processor";
}

uint64_t stx_processor_epoch(const stx_processor *p)
{
    return p->epoch;
}

const char *stx_processor_offset(const stx_processor *p)
{
    return p->offset_str;
}

static uint64_t monotonic_us(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (uint64_t)ts.tv_sec * 1000000u + (uint64_t)ts.tv_nsec / 1000u;
}

static void record_latency(stx_processor *p, uint64_t us)
{
    /* bucket = floor(4 * log2(us)), computed without libm. */
    unsigned b = 0;
    if (us > 1) {
        unsigned lg = 63u - (unsigned)__builtin_clzll(us);
        unsigned frac = lg >= 2 ? (unsigned)((us >> (lg - 2)) & 3u) : (unsigned)((us << (2 - lg)) & 3u);
        b = 4 * lg + frac;
    }
    if (b >= STX_LATENCY_BUCKETS) b = STX_LATENCY_BUCKETS - 1;
    p->latency[b]++;
    if (us > p->stats.commit_us_max) p->stats.commit_us_max = us;
}

/* Upper bound of the bucket holding the q-th fraction of commits. */
static uint64_t latency_quantile(const stx_processor *p, double q)
{
    uint64_t total = 0, seen = 0;
    for (unsigned b = 0; b < STX_LATENCY_BUCKETS; b++) total += p->latency[b];
    if (!total) return 0;
    uint64_t want = (uint64_t)(q * (double)total);
    if (want >= total) want = total - 1;
    for (unsigned b = 0; b < STX_LATENCY_BUCKETS; b++) {
        seen += p->latency[b];
        if (seen > want) {
            unsigned lg = (b + 1) / 4, frac = (b + 1) % 4;
            uint64_t hi = lg >= 2 ? ((4u + frac) << (lg - 2)) : ((4u + frac) >> (2 - lg));
            return hi < p->stats.commit_us_max ? hi : p->stats.commit_us_max;
        }
    }
    return p->stats.commit_us_max;
}

void stx_processor_stats(const stx_processor *p, stx_stats *out)
{
    *out = p->stats;
    out->commit_us_p50 = latency_quantile(p, 0.50);
    out->commit_us_p99 = latency_quantile(p, 0.99);
    out->script_reloads = p->scripts.reloads;
    out->state_keys = p->state.count;
}

int stx_processor_state_get(stx_processor *p, const void *key, size_t key_len,
                            const void **value, size_t *value_len)
{
    if (!p->started) return stx_fail(p, STX_ESTATE, "processor not started");
    const stx_sm_entry *e = stx_sm_find(&p->state, key, key_len);
    if (!e) return STX_ENOTFOUND;
    *value = stx_sm_value(e);
    *value_len = e->value_len;
    return STX_OK;
}

/* ---- small Redis helpers ----------------------------------------------- */

static int conn_fail(stx_processor *p, int code, const char *what)
{
    return stx_fail(p, code, "%s: %s", what, p->conn.err);
}

void stx_eval_begin(stx_processor *p)
{
    stx_argv_reset(&p->argv);
    for (int i = 0; i < 3; i++) stx_argv_add_ref(&p->argv, "", 0); /* EVALSHA sha numkeys */
}

void stx_eval_str(stx_processor *p, const char *s)
{
    stx_argv_add_ref(&p->argv, s, strlen(s));
}

int stx_reply_is(const redisReply *r, const char *status)
{
    return r && r->type == REDIS_REPLY_ARRAY && r->elements >= 1 &&
           (r->element[0]->type == REDIS_REPLY_STRING || r->element[0]->type == REDIS_REPLY_STATUS) &&
           strcmp(r->element[0]->str, status) == 0;
}

static const char *elem_str(const redisReply *r, size_t i)
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
    if (e->type != REDIS_REPLY_STRING) return -1;
    char *end;
    errno = 0;
    unsigned long long v = strtoull(e->str, &end, 10);
    if (errno || end == e->str || *end) return -1;
    *out = v;
    return 0;
}

/* The statuses every script shares: fencing, vanished group, wrong types. */
int stx_script_status(stx_processor *p, const redisReply *r, const char *what)
{
    if (stx_reply_is(r, "FENCED")) {
        p->fenced = 1;
        p->stats.fenced++;
        const char *cur = elem_str(r, 1);
        stx_log(p, STX_LOG_ERROR, "%s refused: epoch %" PRIu64 " was replaced by epoch %s",
                what, p->epoch, cur ? cur : "?");
        return stx_fail(p, STX_EFENCED,
                        "%s refused: this processor (epoch %" PRIu64 ") was fenced by epoch %s "
                        "on stream '%s' group '%s'",
                        what, p->epoch, cur ? cur : "?", p->conf.stream, p->conf.group);
    }
    if (stx_reply_is(r, "NOGROUP")) {
        const char *m = elem_str(r, 1);
        return stx_fail(p, STX_ENOGROUP,
                        "%s: consumer group '%s' of stream '%s' is gone (%s); restart the "
                        "processor to create it again",
                        what, p->conf.group, p->conf.stream, m ? m : "");
    }
    if (stx_reply_is(r, "WRONGTYPE")) {
        const char *k = elem_str(r, 1), *t = elem_str(r, 2);
        return stx_fail(p, STX_EWRONGTYPE, "%s: key '%s' holds a %s, not what streamtx keeps there",
                        what, k ? k : "?", t ? t : "?");
    }
    if (stx_reply_is(r, "BADARGS")) {
        const char *m = elem_str(r, 1);
        return stx_fail(p, STX_EREDIS, "%s: script refused its arguments: %s", what, m ? m : "");
    }
    return stx_fail(p, STX_EREDIS, "%s: unexpected reply from the script", what);
}

/* ---- state loading ----------------------------------------------------- */

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

/* Read the whole state hash in HSCAN pages, so no reply holds all of it. */
static int load_from_redis(stx_processor *p)
{
    stx_sm_clear(&p->state);
    char cursor[32] = "0";
    do {
        const char *argv[] = {"HSCAN", p->key_state, cursor, "COUNT", "1000"};
        redisReply *r;
        int rc = stx_conn_command(&p->conn, &r, 5, argv, NULL);
        if (rc != STX_OK) return conn_fail(p, rc, "loading state (HSCAN)");
        if (r->type != REDIS_REPLY_ARRAY || r->elements != 2 ||
            r->element[0]->type != REDIS_REPLY_STRING || r->element[0]->len >= sizeof cursor ||
            r->element[1]->type != REDIS_REPLY_ARRAY || r->element[1]->elements % 2) {
            freeReplyObject(r);
            return stx_fail(p, STX_EREDIS, "loading state: malformed HSCAN reply");
        }
        memcpy(cursor, r->element[0]->str, r->element[0]->len + 1);
        const redisReply *kv = r->element[1];
        for (size_t i = 0; i < kv->elements; i += 2) {
            const redisReply *k = kv->element[i], *v = kv->element[i + 1];
            if (k->type != REDIS_REPLY_STRING || v->type != REDIS_REPLY_STRING) continue;
            if (state_add(p, k->str, k->len, v->str, v->len) != STX_OK) {
                freeReplyObject(r);
                return stx_fail(p, STX_ENOMEM, "loading state: out of memory");
            }
        }
        freeReplyObject(r);
    } while (strcmp(cursor, "0") != 0);
    p->stats.redis_loads++;
    return STX_OK;
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
        if (rc == STX_OK) rc = stx_snapshot_commit(p->snap, p->identity, p->seq, p->offset_str);
        if (rc != STX_OK) stx_snapshot_abort(p->snap);
    }
    /* A value the snapshot cannot hold (e.g. a key LMDB refuses) or a disk
     * error: go on without it; Redis has everything. */
    if (rc != STX_OK) snapshot_disable(p, stx_snapshot_errmsg(p->snap));
}

void stx_snapshot_meta(stx_processor *p)
{
    stx_statemap none;
    stx_sm_init(&none);
    snapshot_write(p, &none, 0);
}

/* Load the snapshot when it is of this (stream, group, lineage) at exactly
 * the commit sequence Redis holds; report whether it was used. */
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
    char identity[4096], offset[64];
    uint64_t seq = 0;
    int rc = stx_snapshot_read_meta(p->snap, identity, sizeof identity, &seq, offset, sizeof offset);
    if (rc == STX_ENOTFOUND) {
        stx_log(p, STX_LOG_INFO, "LMDB snapshot is empty; loading state from Redis");
        return 0;
    }
    if (rc != STX_OK) {
        stx_log(p, STX_LOG_WARN, "LMDB snapshot meta damaged (%s); rebuilding from Redis",
                stx_snapshot_errmsg(p->snap));
        return 0;
    }
    if (strcmp(identity, p->identity) != 0 || seq != p->seq) {
        stx_log(p, STX_LOG_WARN,
                "LMDB snapshot is stale (seq %" PRIu64 ", Redis has %" PRIu64 "%s); "
                "rebuilding from Redis",
                seq, p->seq, strcmp(identity, p->identity) ? ", other lineage" : "");
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

static int load_state(stx_processor *p)
{
    if (p->conf.snapshot_dir && try_snapshot(p)) return STX_OK;
    int rc = load_from_redis(p);
    if (rc != STX_OK) return rc;
    stx_log(p, STX_LOG_INFO, "state loaded from Redis: %zu keys", p->state.count);
    snapshot_write(p, &p->state, 1);
    return STX_OK;
}

/* ---- start ------------------------------------------------------------- */

/* Move every entry pending under another consumer name of the group into
 * ours, so that they are handled, in id order, before any new entry: the
 * offset only moves forward, so an entry left behind would later look
 * committed. */
static int claim_pending(stx_processor *p)
{
    char cursor[STX_ID_MAX] = "0-0";
    for (;;) {
        const char *argv[] = {"XAUTOCLAIM", p->conf.stream, p->conf.group, p->consumer, "0",
                              cursor, "COUNT", "1000", "JUSTID"};
        redisReply *r;
        int rc = stx_conn_command(&p->conn, &r, 9, argv, NULL);
        if (rc != STX_OK) return conn_fail(p, rc, "claiming pending entries (XAUTOCLAIM)");
        const char *next = elem_str(r, 0);
        if (!next || strlen(next) >= sizeof cursor || r->elements < 2 ||
            r->element[1]->type != REDIS_REPLY_ARRAY) {
            freeReplyObject(r);
            return stx_fail(p, STX_EREDIS, "claiming pending entries: malformed XAUTOCLAIM reply");
        }
        if (r->element[1]->elements)
            stx_log(p, STX_LOG_INFO, "claimed %zu pending entries of other consumers",
                    r->element[1]->elements);
        strcpy(cursor, next);
        freeReplyObject(r);
        if (strcmp(cursor, "0-0") == 0) return STX_OK;
    }
}

static void rewind_to_offset(stx_processor *p);

/* A commit found an entry pending under another consumer below its batch
 * (a paused processor read it after this one took over, or a dead one left
 * it): take it over and read again from the offset, so it comes first. */
int stx_claim_behind(stx_processor *p)
{
    stx_log(p, STX_LOG_WARN, "entries below the batch are pending under another consumer; "
            "claiming them before going on");
    int rc = claim_pending(p);
    if (rc != STX_OK) return rc;
    rewind_to_offset(p);
    return STX_OK;
}

void stx_set_offset(stx_processor *p, stx_id id)
{
    p->offset = id;
    stx_id_format(id, p->offset_str);
}

static int merge_message(stx_processor *p);
static void apply_batch(stx_processor *p);

/* Append the batch's state changes to p->argv as the scripts take them:
 * n_puts, (key, value)..., n_dels, key... */
static void add_changes(stx_processor *p, size_t *puts_out, size_t *dels_out)
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
static void discard_batch(stx_processor *p);

/* Convert the stored state from schema version `from` to the configured
 * one through the user's callback, and write it all in one script. */
static int migrate(stx_processor *p, uint64_t from)
{
    uint64_t to = (uint64_t)p->conf.state_schema_version;
    if (!p->conf.migrate)
        return stx_fail(p, STX_ESCHEMA,
                        "state of stream '%s' group '%s' has schema version %" PRIu64
                        ", this processor expects %" PRIu64 "; set a migration callback "
                        "(stx_config_set_migrate) or reset the group with its state",
                        p->conf.stream, p->conf.group, from, to);
    stx_txn_reset(&p->txn, NULL);
    size_t pos = 0;
    stx_sm_entry *e;
    while ((e = stx_sm_next(&p->state, &pos))) {
        int rc = p->conf.migrate((uint32_t)from, (uint32_t)to, stx_sm_key(e), e->key_len,
                                 stx_sm_value(e), e->value_len, &p->txn, p->conf.migrate_data);
        if (rc != STX_OK) {
            stx_sm_clear(&p->txn.overlay);
            return stx_fail(p, rc < 0 ? rc : STX_ESCHEMA, "migration from schema %" PRIu64
                            " to %" PRIu64 " failed (%d)%s%s; nothing was written", from, to, rc,
                            p->txn.failmsg[0] ? ": " : "", p->txn.failmsg);
        }
    }
    if (merge_message(p) != STX_OK) return stx_fail(p, STX_ENOMEM, "out of memory");
    stx_eval_begin(p);
    stx_eval_str(p, p->key_meta);
    stx_eval_str(p, p->key_state);
    stx_argv_add_u64(&p->argv, p->epoch);
    stx_argv_add_u64(&p->argv, from);
    stx_argv_add_u64(&p->argv, to);
    size_t nputs, ndels;
    add_changes(p, &nputs, &ndels);
    redisReply *r;
    int rc = stx_script_run(&p->scripts, &p->conn, STX_SCRIPT_MIGRATE, &p->argv, 2, &r);
    if (rc != STX_OK) {
        discard_batch(p);
        return conn_fail(p, rc, "migrating state");
    }
    uint64_t seq;
    if (!stx_reply_is(r, "OK") || stx_reply_u64(r, 1, &seq) != 0) {
        const char *stored = stx_reply_is(r, "SCHEMA") ? elem_str(r, 1) : NULL;
        rc = stored ? stx_fail(p, STX_ESCHEMA, "schema changed to %s during the migration", stored)
                    : stx_script_status(p, r, "migrate");
        freeReplyObject(r);
        discard_batch(p);
        return rc;
    }
    freeReplyObject(r);
    p->seq = seq;
    apply_batch(p);
    discard_batch(p);
    stx_log(p, STX_LOG_WARN, "state migrated from schema %" PRIu64 " to %" PRIu64 ": %zu keys written, "
            "%zu deleted", from, to, nputs, ndels);
    return STX_OK;
}

static int start(stx_processor *p)
{
    if (!p->conf.handler || !p->key_meta) return p->errmsg[0] ? STX_EINVAL : STX_ESTATE;
    if (p->fenced) return stx_fail(p, STX_EFENCED, "processor was fenced; create a new one");
    int rc = stx_conn_open(&p->conn);
    if (rc != STX_OK) return conn_fail(p, rc, "connect");
    p->connected_once = 1;

    if (!p->lineage[0]) random_hex(p->lineage, 16);
    stx_eval_begin(p);
    stx_eval_str(p, p->conf.stream);
    stx_eval_str(p, p->key_meta);
    stx_eval_str(p, p->key_state);
    stx_eval_str(p, p->conf.group);
    stx_eval_str(p, p->conf.group_start_id ? p->conf.group_start_id : "0");
    stx_eval_str(p, p->lineage);
    stx_argv_add_u64(&p->argv, (unsigned long long)p->conf.state_schema_version);
    redisReply *r;
    rc = stx_script_run(&p->scripts, &p->conn, STX_SCRIPT_START, &p->argv, 3, &r);
    if (rc != STX_OK) {
        if (rc == STX_EWRONGTYPE || rc == STX_EREDIS)
            return stx_fail(p, rc, "start on stream '%s': %s", p->conf.stream, p->conn.err);
        return conn_fail(p, rc, "start");
    }
    const char *off = elem_str(r, 2), *lineage = elem_str(r, 4);
    stx_id offv;
    if (!stx_reply_is(r, "OK")) {
        rc = stx_script_status(p, r, "start");
        freeReplyObject(r);
        return rc;
    }
    uint64_t schema = 0;
    if (stx_reply_u64(r, 1, &p->epoch) != 0 || !off || stx_id_parse(off, strlen(off), &offv) != 0 ||
        stx_reply_u64(r, 3, &p->seq) != 0 || !lineage || strlen(lineage) >= sizeof p->lineage ||
        stx_reply_u64(r, 5, &schema) != 0) {
        freeReplyObject(r);
        return stx_fail(p, STX_EREDIS, "start: malformed reply (meta hash damaged?)");
    }
    stx_set_offset(p, offv);
    strcpy(p->lineage, lineage);
    freeReplyObject(r);
    free(p->identity);
    size_t n = strlen(p->key_meta) + strlen(p->lineage) + 2;
    if (!(p->identity = malloc(n))) return stx_fail(p, STX_ENOMEM, "out of memory");
    snprintf(p->identity, n, "%s\n%s", p->key_meta, p->lineage);
    stx_log(p, STX_LOG_INFO, "started on stream '%s' group '%s' as '%s': epoch %" PRIu64
            ", offset %s, seq %" PRIu64, p->conf.stream, p->conf.group, p->consumer, p->epoch,
            p->offset_str, p->seq);

    if ((rc = load_state(p)) != STX_OK) return rc;
    if ((uint64_t)p->conf.state_schema_version != schema && p->conf.state_schema_version &&
        (rc = migrate(p, schema)) != STX_OK)
        return rc;
    if ((rc = claim_pending(p)) != STX_OK) return rc;
    p->reading_pending = 1;
    p->cursor = (stx_id){0, 0};
    p->started = 1;
    return STX_OK;
}

int stx_processor_start(stx_processor *p)
{
    if (!p) return STX_EINVAL;
    return report(p, start(p));
}

/* ---- reading ----------------------------------------------------------- */

static void sleep_ms(stx_processor *p, long ms);

/* read.lua's arguments for the own pending list after the cursor, in
 * p->read_argv (kept apart from p->argv, which may hold a commit). */
static void build_read(stx_processor *p)
{
    stx_argv *a = &p->read_argv;
    stx_id_format(p->cursor, p->read_cursor);
    stx_argv_reset(a);
    for (int i = 0; i < 3; i++) stx_argv_add_ref(a, "", 0);
    stx_argv_add_ref(a, p->conf.stream, strlen(p->conf.stream));
    stx_argv_add_ref(a, p->key_meta, strlen(p->key_meta));
    stx_argv_add_ref(a, p->conf.group, strlen(p->conf.group));
    stx_argv_add_ref(a, p->consumer, strlen(p->consumer));
    stx_argv_add_u64(a, p->epoch);
    /* One at a time: each re-read raises an entry's delivery count, which
     * decides when it is dead-lettered, so only the entry really retried
     * should pay for it (an entry that crashes the process is then alone). */
    stx_argv_add_u64(a, 1);
    stx_argv_add_ref(a, p->read_cursor, strlen(p->read_cursor));
}

/* XREADGROUP of new entries, with BLOCK when block_ms > 0, into p->read_argv. */
static void build_new_read(stx_processor *p, long block_ms)
{
    stx_argv *a = &p->read_argv;
    stx_argv_reset(a);
    static const char *const head[] = {"XREADGROUP", "GROUP"};
    for (int i = 0; i < 2; i++) stx_argv_add_ref(a, head[i], strlen(head[i]));
    stx_argv_add_ref(a, p->conf.group, strlen(p->conf.group));
    stx_argv_add_ref(a, p->consumer, strlen(p->consumer));
    stx_argv_add_ref(a, "COUNT", 5);
    stx_argv_add_u64(a, (unsigned long long)p->conf.batch_size);
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

/* Read the next batch: the own pending entries after the cursor first,
 * through read.lua (one at a time, with their delivery counts), then new
 * entries with a plain XREADGROUP that waits up to block_ms.  New entries
 * are read without fencing: what matters is that no commit moves the offset
 * past an entry pending elsewhere, and commit.lua refuses exactly that.
 * *owner is the reply to free (NULL when nothing came); *counts may be NULL
 * (new entries: delivered once). */
static int read_batch(stx_processor *p, redisReply **owner, const redisReply **entries,
                      const redisReply **counts)
{
    *owner = NULL;
    *entries = *counts = NULL;
    uint64_t now = monotonic_us();
    if (!p->reading_pending && p->next_read_us > now && !p->prefetched) {
        /* The last batch was partial: let entries gather (batch_delay_ms). */
        sleep_ms(p, (long)((p->next_read_us - now + 999) / 1000));
    }
    p->next_read_us = 0;
    for (;;) {
        redisReply *r;
        int rc;
        if (p->reading_pending) {
            build_read(p);
            rc = stx_script_run(&p->scripts, &p->conn, STX_SCRIPT_READ, &p->read_argv, 2, &r);
            if (rc != STX_OK) return conn_fail(p, rc, "read");
            if (stx_reply_is(r, "OK") && r->elements == 3 && r->element[1]->type == REDIS_REPLY_ARRAY) {
                if (r->element[1]->elements > 0) {
                    *owner = r;
                    *entries = r->element[1];
                    *counts = r->element[2];
                    return STX_OK;
                }
                freeReplyObject(r);
                p->reading_pending = 0; /* own pending list done: go on with new entries */
                continue;
            }
            rc = stx_script_status(p, r, "read");
            freeReplyObject(r);
            return rc;
        }
        int from_prefetch = p->prefetched != NULL;
        if (from_prefetch) {
            r = p->prefetched; /* read together with the last commit */
            p->prefetched = NULL;
        } else {
            if (atomic_load(&p->stop)) return STX_OK;
            build_new_read(p, p->conf.block_ms);
            stx_conn_set_timeout(&p->conn, p->conf.block_ms + p->conf.command_timeout_ms);
            rc = stx_conn_command(&p->conn, &r, (int)p->read_argv.n, p->read_argv.v,
                                  p->read_argv.len);
            stx_conn_set_timeout(&p->conn, p->conf.command_timeout_ms);
            if (rc == STX_ENOGROUP || rc == STX_EWRONGTYPE)
                return stx_fail(p, rc, "read: stream '%s' group '%s': %s%s", p->conf.stream,
                                p->conf.group, p->conn.err,
                                rc == STX_ENOGROUP ? "; restart the processor to create it again" : "");
            if (rc != STX_OK) return conn_fail(p, rc, "read");
        }
        const redisReply *e = new_entries(r);
        if (!e && from_prefetch) {
            freeReplyObject(r); /* empty when sent: wait for entries now */
            continue;
        }
        if (!e) {
            freeReplyObject(r);
            return STX_OK; /* nothing within block_ms */
        }
        if (p->conf.batch_delay_ms > 0 && e->elements < (size_t)p->conf.batch_size)
            p->next_read_us = monotonic_us() + (uint64_t)p->conf.batch_delay_ms * 1000u;
        *owner = r;
        *entries = e;
        return STX_OK;
    }
}

/* ---- commit ------------------------------------------------------------ */

/* Outcome of a commit: landed, already committed (dups), or an error. */
enum { COMMIT_OK = 0, COMMIT_DUP = 1, COMMIT_BEHIND = 2 };

static void apply_batch(stx_processor *p)
{
    size_t pos = 0;
    stx_sm_entry *e;
    while ((e = stx_sm_next(&p->batch, &pos))) {
        if (e->flags & STX_SM_DELETED) stx_sm_remove(&p->state, stx_sm_key(e), e->key_len);
        else if (!stx_sm_put(&p->state, stx_sm_key(e), e->key_len, stx_sm_value(e), e->value_len, 0)) {
            /* The commit landed in Redis; a cache we cannot complete must go. */
            stx_log(p, STX_LOG_ERROR, "out of memory applying a commit; state will be reloaded");
            p->started = 0;
            p->need_reload = 1;
            return;
        }
    }
    snapshot_write(p, &p->batch, 0);
}

static void discard_batch(stx_processor *p)
{
    stx_sm_clear(&p->batch);
    stx_pubs_truncate(&p->pubs, 0);
}

/* Index (0-based) of stream among the publish targets, adding it if new. */
static size_t target_index(const char **targets, size_t *n, const char *stream)
{
    for (size_t i = 0; i < *n; i++)
        if (strcmp(targets[i], stream) == 0) return i;
    targets[*n] = stream;
    return (*n)++;
}

/* Send the commit in p->argv and, when allowed, the next read behind it
 * in the same round trip; read the commit's reply into *r.  The read runs
 * after the commit in Redis, so it sees the committed offset and takes only
 * entries after this batch; if the commit failed, its entries are pending
 * and the rewind that follows every failure reads them again. */
static int send_commit(stx_processor *p, size_t numkeys, int prefetch, redisReply **r)
{
    prefetch = prefetch && p->conf.pipeline && !p->reading_pending && p->next_read_us == 0 &&
               !atomic_load(&p->stop) && !p->prefetched;
    if (!prefetch)
        return stx_script_run(&p->scripts, &p->conn, STX_SCRIPT_COMMIT, &p->argv, numkeys, r);
    int rc = stx_script_append(&p->scripts, &p->conn, STX_SCRIPT_COMMIT, &p->argv, numkeys);
    if (rc == STX_OK) {
        build_new_read(p, 0);
        rc = stx_conn_append(&p->conn, (int)p->read_argv.n, p->read_argv.v, p->read_argv.len);
    }
    if (rc != STX_OK) return rc;
    /* Both replies are read before anything else is sent: after a lost
     * script cache both say NOSCRIPT, and a SCRIPT LOAD sent between them
     * would read the wrong reply. */
    redisReply *next = NULL;
    rc = stx_conn_read(&p->conn, r);
    int rrc = rc == STX_ECONN || rc == STX_ETIMEOUT ? rc : stx_conn_read(&p->conn, &next);
    if (rrc == STX_OK) p->prefetched = next;
    else if (rc == STX_OK && (rrc == STX_ECONN || rrc == STX_ETIMEOUT)) p->started = 0;
    if (rc == STX_ENOTFOUND) {
        /* The commit did not run: load the scripts and send it again. */
        p->scripts.reloads++;
        p->scripts.s[STX_SCRIPT_COMMIT].sha[0] = '\0';
        rc = stx_script_run(&p->scripts, &p->conn, STX_SCRIPT_COMMIT, &p->argv, numkeys, r);
    }
    return rc;
}

/* Drop a read that came with a commit that did not land. */
static void drop_prefetched(stx_processor *p)
{
    if (p->prefetched) freeReplyObject(p->prefetched);
    p->prefetched = NULL;
}

/* Commit ids[0..n) with the batch's state changes and publishes; prefetch:
 * the next read may ride along. */
static int commit(stx_processor *p, struct stx_msg *const *msgs, size_t n, int prefetch)
{
    const char **targets = malloc((p->pubs.n ? p->pubs.n : 1) * sizeof *targets);
    size_t *target_of = malloc((p->pubs.n ? p->pubs.n : 1) * sizeof *target_of);
    if (!targets || !target_of) {
        free(targets);
        free(target_of);
        return stx_fail(p, STX_ENOMEM, "commit: out of memory");
    }
    size_t ntargets = 0;
    for (size_t i = 0; i < p->pubs.n; i++)
        target_of[i] = target_index(targets, &ntargets, p->pubs.v[i].stream);

    stx_eval_begin(p);
    stx_eval_str(p, p->conf.stream);
    stx_eval_str(p, p->key_meta);
    stx_eval_str(p, p->key_state);
    for (size_t i = 0; i < ntargets; i++) stx_eval_str(p, targets[i]);
    stx_eval_str(p, p->conf.group);
    stx_argv_add_u64(&p->argv, p->epoch);
    stx_argv_add_u64(&p->argv, n);
    for (size_t i = 0; i < n; i++) stx_eval_str(p, msgs[i]->id);
    add_changes(p, NULL, NULL);
    stx_argv_add_u64(&p->argv, p->pubs.n);
    for (size_t i = 0; i < p->pubs.n; i++) {
        const stx_pub *pub = &p->pubs.v[i];
        stx_argv_add_u64(&p->argv, 4 + target_of[i]);
        stx_argv_add_u64(&p->argv, pub->npairs);
        for (size_t j = 0; j < 2 * pub->npairs; j++)
            stx_argv_add_ref(&p->argv, pub->ptrs[j], pub->lens[j]);
    }
    free(targets);
    free(target_of);

    redisReply *r;
    uint64_t t0 = monotonic_us();
    int rc = send_commit(p, 3 + ntargets, prefetch, &r);
    record_latency(p, monotonic_us() - t0);
    if (rc != STX_OK || !stx_reply_is(r, "OK")) drop_prefetched(p);
    if (rc != STX_OK) {
        if (rc == STX_ECONN || rc == STX_ETIMEOUT) {
            /* The script may or may not have run: resync() decides by the
             * stored offset and sequence, keeping the batch until then. */
            p->started = 0;
            p->in_doubt = 1;
            p->in_doubt_id = msgs[n - 1]->idv;
            p->in_doubt_count = n;
            return conn_fail(p, rc, "commit (outcome unknown; resolved on reconnect)");
        }
        /* Refused (e.g. OOM): nothing was written, the batch is still
         * pending, and the next poll must read it again, not new entries. */
        discard_batch(p);
        rewind_to_offset(p);
        if (rc == STX_ENOMEM) return stx_fail(p, rc, "commit: out of memory building the command");
        return conn_fail(p, rc, "commit");
    }
    if (stx_reply_is(r, "OK")) {
        uint64_t seq;
        if (stx_reply_u64(r, 1, &seq) != 0) {
            freeReplyObject(r);
            p->started = 0; /* landed, but the reply is unreadable: resync */
            discard_batch(p);
            return stx_fail(p, STX_EREDIS, "commit: malformed reply");
        }
        freeReplyObject(r);
        p->seq = seq;
        stx_set_offset(p, msgs[n - 1]->idv);
        apply_batch(p);
        discard_batch(p);
        p->stats.commits++;
        p->stats.committed += n;
        return COMMIT_OK;
    }
    if (stx_reply_is(r, "BEHIND")) {
        freeReplyObject(r);
        discard_batch(p);
        int c = stx_claim_behind(p);
        return c != STX_OK ? c : COMMIT_BEHIND;
    }
    if (stx_reply_is(r, "DUP")) {
        for (size_t i = 1; i < r->elements; i++) {
            const char *id = elem_str(r, i);
            if (id) stx_log(p, STX_LOG_INFO, "entry %s was committed before; skipped", id);
        }
        p->stats.duplicates += r->elements - 1;
        freeReplyObject(r);
        discard_batch(p);
        return COMMIT_DUP;
    }
    rc = stx_script_status(p, r, "commit");
    freeReplyObject(r);
    discard_batch(p);
    rewind_to_offset(p);
    return rc;
}

/* ---- the batch loop ---------------------------------------------------- */

/* Merge the handler's changes for one message into the batch. */
static int merge_message(stx_processor *p)
{
    size_t pos = 0;
    stx_sm_entry *e;
    while ((e = stx_sm_next(&p->txn.overlay, &pos)))
        if (!stx_sm_put(&p->batch, stx_sm_key(e), e->key_len, stx_sm_value(e), e->value_len,
                        e->flags))
            return STX_ENOMEM;
    stx_sm_clear(&p->txn.overlay);
    return STX_OK;
}

/* Re-read the own pending list after the last committed id, e.g. after a
 * failure left entries of a batch uncommitted. */
static void drop_prefetched(stx_processor *p);

static void rewind_to_offset(stx_processor *p)
{
    drop_prefetched(p);
    p->reading_pending = 1;
    p->cursor = p->offset;
}

/* Refresh the offset after a DUP answer: someone acknowledged entries
 * behind our back or the group was moved. */
static int refresh_offset(stx_processor *p)
{
    const char *argv[] = {"HGET", p->key_meta, "offset"};
    redisReply *r;
    int rc = stx_conn_command(&p->conn, &r, 3, argv, NULL);
    if (rc != STX_OK) return conn_fail(p, rc, "reading the offset");
    stx_id id = {0, 0};
    if (r->type == REDIS_REPLY_STRING && stx_id_parse(r->str, r->len, &id) != 0) {
        freeReplyObject(r);
        return stx_fail(p, STX_EREDIS, "stored offset is not an id");
    }
    freeReplyObject(r);
    stx_set_offset(p, id);
    return STX_OK;
}

/* What process() tells poll(). */
enum { PROCESS_DONE = 0, PROCESS_AGAIN = 1 };

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

/* Run the handler on m; returns 1 when its changes joined the batch, 0 when
 * *v says what to do with it instead. */
static int handle_one(stx_processor *p, struct stx_msg *m, struct verdict *v)
{
    v->msg = m;
    v->attempts = m->delivery_count;
    v->retry_ms = -1;
    if (m->delivery_count > (uint64_t)p->conf.max_deliveries) {
        /* Delivered that often without a commit: the handler failed or the
         * process died while handling it (a poison entry). */
        v->dead = 1;
        v->reason = "max_deliveries";
        v->attempts = m->delivery_count - 1;
        snprintf(v->error, sizeof v->error,
                 "delivered %" PRIu64 " times without a commit (max_deliveries %ld)",
                 m->delivery_count, p->conf.max_deliveries);
        return 0;
    }
    stx_txn_reset(&p->txn, m);
    uint64_t t0 = monotonic_us();
    int verdict = p->conf.handler(m, &p->txn, p->conf.handler_data);
    uint64_t took_ms = (monotonic_us() - t0) / 1000u;
    if (took_ms > (uint64_t)p->conf.handler_warn_ms) {
        p->stats.slow_handlers++;
        stx_log(p, STX_LOG_WARN, "handler took %" PRIu64 " ms on entry %s (handler_warn_ms %ld)",
                took_ms, m->id, p->conf.handler_warn_ms);
    }
    if (verdict == STX_HANDLER_OK && merge_message(p) == STX_OK) {
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
    v->dead = verdict != STX_HANDLER_RETRY || m->delivery_count >= (uint64_t)p->conf.max_deliveries;
    v->reason = verdict != STX_HANDLER_RETRY ? "handler_failed" : "retries_exhausted";
    if (p->txn.failmsg[0]) snprintf(v->error, sizeof v->error, "%s", p->txn.failmsg);
    else snprintf(v->error, sizeof v->error, "handler returned %d", verdict);
    return 0;
}

/* Act on a verdict once everything before the entry is committed. */
static int act_on(stx_processor *p, struct verdict *v)
{
    const struct stx_msg *m = v->msg;
    if (v->dead) {
        int rc = stx_dead_letter(p, m->id, v->reason, v->error, v->attempts);
        if (rc != STX_OK) return rc;
        return stx_fail(p, STX_EHANDLER, "entry %s of stream '%s' moved to the dead-letter stream "
                        "(%s): %s", m->id, p->conf.stream, v->reason, v->error);
    }
    if (strcmp(v->reason, "out of memory") == 0)
        return stx_fail(p, STX_ENOMEM, "entry %s: %s", m->id, v->error);
    uint64_t delay = v->retry_ms >= 0 ? (uint64_t)v->retry_ms : retry_delay_ms(p, m->delivery_count);
    if (delay > (uint64_t)p->conf.retry_max_ms) delay = (uint64_t)p->conf.retry_max_ms;
    p->retry_at_us = monotonic_us() + delay * 1000u;
    p->stats.retries++;
    return stx_fail(p, STX_EHANDLER, "handler failed on entry %s of stream '%s' (attempt %" PRIu64
                    " of %ld, retry in %" PRIu64 " ms): %s", m->id, p->conf.stream,
                    m->delivery_count, p->conf.max_deliveries, delay, v->error);
}

/* Handle and commit msgs[0..n) (ascending ids).  Adds the number committed
 * to *committed.  An entry that fails ends the batch: those before it are
 * committed first, then it is dead-lettered or scheduled for a retry, and
 * reading rewinds to the offset so the rest comes again in order.  Returns
 * PROCESS_DONE, PROCESS_AGAIN (entries must be read again), or an error. */
static int process(stx_processor *p, struct stx_msg *const *msgs, size_t n, int *committed)
{
    /* Entries at or below the offset were committed before (e.g. the group
     * was moved back): the script only acknowledges them. */
    size_t first = 0;
    while (first < n && stx_id_cmp(msgs[first]->idv, p->offset) <= 0) first++;
    if (first) {
        int c = commit(p, msgs, first, 0);
        if (c < 0) return c;
        if (c == COMMIT_BEHIND) return PROCESS_AGAIN;
        if (c == COMMIT_OK) return stx_fail(p, STX_EREDIS, "commit accepted entries at or below the offset");
    }

    struct stx_msg *const *todo = msgs + first;
    size_t ntodo = 0;
    struct verdict v = {0};
    for (size_t i = first; i < n && !atomic_load(&p->stop); i++) {
        struct stx_msg *m = msgs[i];
        if (!m->fields) {
            /* Deleted (trimmed) while pending: nothing to handle, but it must
             * not block the stream. */
            stx_log(p, STX_LOG_WARN, "entry %s was deleted before it was handled; acknowledging it",
                    m->id);
            ntodo++;
            continue;
        }
        if (!handle_one(p, m, &v)) break;
        ntodo++;
    }
    int again = first + ntodo < n; /* stopped or failed early: the rest stays pending */
    if (ntodo) {
        int c = commit(p, todo, ntodo, !v.msg && first + ntodo == n);
        if (c < 0) return c;
        if (c == COMMIT_BEHIND) return PROCESS_AGAIN;
        if (c == COMMIT_DUP) {
            /* Some were committed behind our back: what the handlers saw may
             * be stale, so read the rest again against the fresh offset. */
            int r2 = refresh_offset(p);
            if (r2 != STX_OK) return r2;
            rewind_to_offset(p);
            return PROCESS_AGAIN;
        }
        *committed += (int)ntodo;
    } else {
        discard_batch(p);
    }
    if (again || first) rewind_to_offset(p);
    if (v.msg) return act_on(p, &v);
    return first && !ntodo ? PROCESS_AGAIN : PROCESS_DONE;
}

/* Reconnect after a lost connection and find out where we stand: whether
 * the last commit landed (by the stored offset), whether we still hold the
 * epoch, and whether Redis still has what we have (it may have restarted
 * without persistence or failed over). */
static int resync(stx_processor *p)
{
    drop_prefetched(p);
    int rc = stx_conn_open(&p->conn);
    if (rc != STX_OK) return conn_fail(p, rc, "reconnect");
    p->stats.reconnects++;
    const char *argv[] = {"HMGET", p->key_meta, "epoch", "offset", "seq"};
    redisReply *r;
    rc = stx_conn_command(&p->conn, &r, 5, argv, NULL);
    if (rc != STX_OK) return conn_fail(p, rc, "reading meta after reconnect");
    uint64_t epoch = 0, seq = 0;
    stx_id off = {0, 0};
    const char *o = elem_str(r, 1);
    int ok = r->type == REDIS_REPLY_ARRAY && r->elements == 3 && stx_reply_u64(r, 0, &epoch) == 0 &&
             (!o || stx_id_parse(o, strlen(o), &off) == 0) &&
             (r->element[2]->type == REDIS_REPLY_NIL || stx_reply_u64(r, 2, &seq) == 0);
    freeReplyObject(r);
    if (!ok || epoch != p->epoch) {
        p->fenced = 1;
        p->stats.fenced++;
        return stx_fail(p, STX_EFENCED, "after reconnect: epoch %" PRIu64 " is no longer current (%" PRIu64 ")",
                        p->epoch, epoch);
    }
    if (p->in_doubt) {
        int landed = seq == p->seq + 1 && stx_id_cmp(off, p->in_doubt_id) == 0;
        char id[STX_ID_MAX];
        stx_id_format(p->in_doubt_id, id);
        stx_log(p, STX_LOG_WARN, "commit up to %s whose reply was lost %s", id,
                landed ? "had landed" : "had not landed; its entries will be handled again");
        if (landed) {
            p->seq = seq;
            stx_set_offset(p, off);
            apply_batch(p);
            p->stats.commits++;
            p->stats.committed += p->in_doubt_count;
        }
        p->in_doubt = 0;
        discard_batch(p);
    }
    stx_set_offset(p, off);
    if (seq != p->seq || p->need_reload) {
        p->need_reload = 0;
        stx_log(p, STX_LOG_WARN, "after reconnect Redis is at commit %" PRIu64 ", this processor at %"
                PRIu64 "; reloading state from Redis", seq, p->seq);
        p->seq = seq;
        if ((rc = load_state(p)) != STX_OK) return rc;
    }
    stx_log(p, STX_LOG_INFO, "reconnected: offset %s, seq %" PRIu64, p->offset_str, p->seq);
    rewind_to_offset(p);
    p->started = 1;
    return STX_OK;
}


/* Read one batch and process it.  Returns the number committed, 0 when
 * nothing came, PROCESS_AGAIN (as -1000) to read again, or an error. */
#define POLL_AGAIN (-1000)
static int poll_once(stx_processor *p)
{
    redisReply *r;
    const redisReply *entries, *counts;
    int rc = read_batch(p, &r, &entries, &counts);
    if (rc != STX_OK) return rc;
    if (!r) return 0;
    size_t n = entries->elements;
    struct stx_msg *msgs = calloc(n, sizeof *msgs);
    struct stx_msg **ptrs = calloc(n, sizeof *ptrs);
    if (!msgs || !ptrs) {
        free(msgs);
        free(ptrs);
        freeReplyObject(r);
        return stx_fail(p, STX_ENOMEM, "out of memory");
    }
    size_t ok = 0;
    int bad = -1;               /* index of an entry that does not decode */
    const char *why = "";
    for (size_t i = 0; i < n; i++) {
        int d = stx_msg_decode(&msgs[i], entries->element[i], p->conf.stream, p->conf.max_fields,
                               p->conf.max_value_bytes, &why);
        if (counts && counts->type == REDIS_REPLY_ARRAY && i < counts->elements &&
            counts->element[i]->type == REDIS_REPLY_INTEGER && counts->element[i]->integer > 0)
            msgs[i].delivery_count = (uint64_t)counts->element[i]->integer;
        if (d != STX_OK) {
            bad = (int)i;
            break;
        }
        ptrs[ok++] = &msgs[i];
        if (p->reading_pending) p->cursor = msgs[i].idv;
    }
    int committed = 0;
    int prc = ok ? process(p, ptrs, ok, &committed) : PROCESS_DONE;
    rc = prc < 0 ? prc : STX_OK;
    if (bad >= 0 && prc == PROCESS_DONE && !atomic_load(&p->stop)) {
        /* Everything before it is committed: move it out of the way. */
        struct stx_msg *m = &msgs[bad];
        if (!m->id) {
            rc = stx_fail(p, STX_EDECODE, "stream '%s' returned an entry without an id: %s",
                          p->conf.stream, why);
        } else {
            rc = stx_dead_letter(p, m->id, "undecodable", why, m->delivery_count);
            if (rc == PROCESS_AGAIN) {
                rc = STX_OK;
                prc = PROCESS_AGAIN;
            } else if (rc == STX_OK)
                rc = stx_fail(p, STX_EHANDLER, "entry %s of stream '%s' moved to the dead-letter "
                              "stream: %s", m->id, p->conf.stream, why);
        }
        rewind_to_offset(p);
    }
    free(msgs);
    free(ptrs);
    freeReplyObject(r);
    if (rc != STX_OK) return rc;
    if (prc == PROCESS_AGAIN && committed == 0) return POLL_AGAIN;
    return committed;
}

int stx_processor_poll(stx_processor *p)
{
    if (!p) return STX_EINVAL;
    for (;;) {
        if (atomic_load(&p->stop)) return stx_fail(p, STX_ESTOPPED, "stopped");
        if (p->fenced) return stx_fail(p, STX_EFENCED, "processor was fenced by a newer instance");
        uint64_t now = monotonic_us();
        if (p->retry_at_us > now) {
            /* A failed entry waits for its retry delay, stop-aware. */
            sleep_ms(p, (long)((p->retry_at_us - now + 999) / 1000));
            if (atomic_load(&p->stop)) continue;
        }
        p->retry_at_us = 0;
        int rc = STX_OK;
        if (!p->conn.ctx) p->started = 0; /* the connection broke: find out where we stand */
        if (!p->started) rc = p->epoch ? resync(p) : start(p);
        if (rc == STX_OK) rc = poll_once(p);
        if (rc == POLL_AGAIN) continue;
        return rc < 0 ? report(p, rc) : rc;
    }
}

static void sleep_ms(stx_processor *p, long ms)
{
    while (ms > 0 && !atomic_load(&p->stop)) {
        long step = ms < 50 ? ms : 50;
        struct timespec ts = {0, step * 1000000L};
        nanosleep(&ts, NULL);
        ms -= step;
    }
}

int stx_processor_run(stx_processor *p)
{
    if (!p) return STX_EINVAL;
    /* A dropped connection is retried at once, then after 100 ms doubling
     * up to 5 s while Redis stays away. */
    long backoff = 0;
    for (;;) {
        int rc = stx_processor_poll(p);
        if (rc >= 0) {
            backoff = 0;
            continue;
        }
        if (rc == STX_ESTOPPED) return STX_OK;
        if (rc == STX_EHANDLER) continue; /* retried after its delay, or dead-lettered */
        if (stx_error_class_of(rc) != STX_CLASS_RETRIABLE) return rc;
        if (!p->connected_once && rc == STX_ECONN) {
            /* Never reached Redis: a wrong address should not spin for ever. */
            return rc;
        }
        stx_log(p, STX_LOG_WARN, "retrying in %ld ms", backoff);
        sleep_ms(p, backoff);
        backoff = backoff < 100 ? 100 : backoff * 2 > 5000 ? 5000 : backoff * 2;
    }
}
