/* The processor handle: creation, the poll and run loops, errors, logging
 * and statistics.  Recovery is in recover.c, the state cache in cache.c,
 * reading in fetch.c, handling in handle.c and the writing scripts in
 * commit.c. */
#include "reply.h"
#include "processor.h"
#include "retry.h"
#include "relay.h"

#include "heartbeat.h"

#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

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

/* An error on its way back to the caller.  Not logged: the caller sees it
 * (stx_config_set_log() states the rule); it becomes the heartbeat's
 * last_error, and a processor that stops for good leaves the live hash. */
static int report(stx_processor *p, int code)
{
    if (code == STX_OK) return code;
    stx_heartbeat_error(p, code);
    if (code == STX_EFENCED || code == STX_ESTOPPED) stx_heartbeat_leave(p);
    return code;
}

/* ---- small helpers ------------------------------------------------------ */

void stx_random_hex(char *out, size_t nbytes)
{
    unsigned char raw[32] = {0};
    if (nbytes > sizeof raw) nbytes = sizeof raw;
    int fd = open("/dev/urandom", O_RDONLY | O_CLOEXEC);
    ssize_t got = fd >= 0 ? read(fd, raw, nbytes) : -1;
    if (fd >= 0) close(fd);
    if (got != (ssize_t)nbytes) { /* no urandom: time, pid and address still tell runs apart */
        struct timespec ts;
        clock_gettime(CLOCK_REALTIME, &ts);
        uint64_t mix = (uint64_t)ts.tv_sec * 1000000007u ^ (uint64_t)ts.tv_nsec ^
                       ((uint64_t)getpid() << 32) ^ (uint64_t)(uintptr_t)out;
        for (size_t i = 0; i < nbytes; i++) {
            mix ^= mix << 13;
            mix ^= mix >> 7;
            mix ^= mix << 17;
            raw[i] = (unsigned char)mix;
        }
    }
    for (size_t i = 0; i < nbytes; i++) sprintf(out + 2 * i, "%02x", raw[i]);
}

uint64_t stx_monotonic_us(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (uint64_t)ts.tv_sec * 1000000u + (uint64_t)ts.tv_nsec / 1000u;
}

void stx_sleep_ms(stx_processor *p, long ms)
{
    while (ms > 0 && !atomic_load(&p->stop)) {
        long step = ms < 50 ? ms : 50;
        struct timespec ts = {0, step * 1000000L};
        nanosleep(&ts, NULL);
        ms -= step;
    }
}

void stx_set_offset(stx_processor *p, stx_id id)
{
    p->offset = id;
    stx_id_format(id, p->offset_str);
}

/* ---- creation ---------------------------------------------------------- */

int stx_processor_new(stx_processor **out, const stx_config *conf)
{
    if (!out) return STX_EINVAL;
    *out = NULL;
    stx_processor *p = calloc(1, sizeof *p);
    if (!p) return STX_ENOMEM;
    *out = p;
    atomic_init(&p->stop, 0);
    stx_sm_init(&p->state);
    stx_sm_init(&p->batch);
    stx_sm_init(&p->inflight_state);
    stx_sm_init(&p->doubt_next);
    stx_sm_init(&p->txn.overlay);
    stx_argv_init(&p->argv);
    stx_argv_init(&p->inflight_argv);
    stx_argv_init(&p->read_argv);
    stx_scripts_init(&p->scripts);
    p->txn.p = p;
    p->txn.pubs = &p->pubs;
    p->txn.batch = &p->batch;
    p->txn.inflight = &p->inflight_state;
    p->txn.base = &p->state;
    strcpy(p->offset_str, "0-0");
    stx_random_hex(p->run_id, 16);
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
        /* Stable across restarts on the same host. */
        char host[256] = "local";
        gethostname(host, sizeof host - 1);
        host[sizeof host - 1] = '\0';
        size_t n = strlen(host) + 8;
        if ((p->consumer = malloc(n))) snprintf(p->consumer, n, "stx-%s", host);
    }
    p->key_meta = stx_key_alloc(p->conf.stream, p->conf.group, "meta");
    p->key_state = stx_key_alloc(p->conf.stream, p->conf.group, "state");
    p->key_dlq = stx_key_alloc(p->conf.stream, p->conf.group, "dlq");
    p->key_attempts = stx_key_alloc(p->conf.stream, p->conf.group, "attempts");
    if (!p->consumer || !p->key_meta || !p->key_state || !p->key_dlq || !p->key_attempts)
        return stx_fail(p, STX_ENOMEM, "out of memory");
    /* (The connection makes the name one CLIENT SETNAME accepts.) */
    if (p->conf.client_name) snprintf(p->conn_name, sizeof p->conn_name, "%s", p->conf.client_name);
    else snprintf(p->conn_name, sizeof p->conn_name, "stx:%s", p->consumer);
    p->rng = (uint64_t)(uintptr_t)p ^ 0x9e3779b97f4a7c15ull ^ stx_monotonic_us();
    p->read_count = p->conf.batch_size < 16 ? p->conf.batch_size : 16;
    stx_conn_init(&p->conn, &p->conf.url, p->conf.connect_timeout_ms, p->conf.command_timeout_ms);
    p->conn.name = p->conn_name;
    return STX_OK;
}

void stx_processor_free(stx_processor *p)
{
    if (!p) return;
    stx_heartbeat_leave(p); /* a freed processor is not live: no ghost until expiry */
    stx_conn_close(&p->conn);
    stx_heartbeat_free(p->hb);
    stx_relay_free(p->relay);
    stx_snapshot_close(p->snap);
    stx_sm_free(&p->state);
    stx_sm_free(&p->batch);
    stx_sm_free(&p->inflight_state);
    stx_sm_free(&p->doubt_next);
    stx_reply_release(p->inflight.owner);
    stx_txn_release(&p->txn);
    stx_pubs_free(&p->pubs);
    stx_pubs_free(&p->inflight_pubs);
    free(p->pub_blocks);
    stx_argv_free(&p->argv);
    stx_argv_free(&p->inflight_argv);
    free(p->inflight_blocks);
    stx_argv_free(&p->read_argv);
    stx_drop_prefetched(p);
    stx_config_release(&p->conf);
    free(p->msgs);
    free(p->msg_ptrs);
    free(p->key_meta);
    free(p->key_state);
    free(p->key_dlq);
    free(p->key_attempts);
    free(p->consumer);
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
    return p ? p->epoch : 0;
}

const char *stx_processor_offset(const stx_processor *p)
{
    return p ? p->offset_str : "";
}

/* ---- statistics -------------------------------------------------------- */

void stx_record_latency(stx_processor *p, uint64_t us)
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
    if (!out) return;
    if (!p) {
        memset(out, 0, sizeof *out);
        return;
    }
    *out = p->stats;
    out->commit_us_p50 = latency_quantile(p, 0.50);
    out->commit_us_p99 = latency_quantile(p, 0.99);
    out->script_reloads = p->scripts.reloads;
    out->state_keys = p->state.count;
}

int stx_processor_state_get(stx_processor *p, const void *key, size_t key_len,
                            const void **value, size_t *value_len)
{
    if (!p || (!key && key_len) || !value || !value_len) return STX_EINVAL;
    if (p->phase != STX_PHASE_RUNNING && p->phase != STX_PHASE_LOADED)
        return stx_fail(p, STX_ESTATE, "processor not started, or its state is being reloaded");
    const stx_sm_entry *e = stx_sm_find(&p->state, key ? key : "", key_len);
    if (!e) return STX_ENOTFOUND;
    *value = stx_sm_value(e);
    *value_len = e->value_len;
    return STX_OK;
}

/* ---- the loops --------------------------------------------------------- */

int stx_processor_start(stx_processor *p)
{
    if (!p) return STX_EINVAL;
    if (!p->key_attempts) return p->errmsg[0] ? STX_EINVAL : STX_ESTATE;
    return report(p, stx_recover(p));
}

int stx_processor_poll(stx_processor *p)
{
    if (!p) return STX_EINVAL;
    if (!p->key_attempts) return STX_EINVAL; /* creation failed: errmsg says why */
    for (;;) {
        if (atomic_load(&p->stop)) {
            stx_drop_prefetched(p); /* read with the last commit, never handled */
            return report(p, stx_fail(p, STX_ESTOPPED, "stopped"));
        }
        uint64_t now = stx_monotonic_us();
        if (p->retry_at_us > now) {
            /* A failed entry waits for its retry delay, stop-aware. */
            stx_sleep_ms(p, (long)((p->retry_at_us - now + 999) / 1000));
            if (atomic_load(&p->stop)) continue;
        }
        p->retry_at_us = 0;
        int rc = stx_recover(p);
        if (rc == STX_OK) {
            /* Due at most block_ms late: an idle poll returns after it. */
            stx_heartbeat_tick(p);
            if (!p->conn.ctx) continue; /* the heartbeat lost the connection */
            rc = stx_outbox_full(p) ? 0 : stx_poll_once(p);
            if (rc >= 0) stx_outbox_poll(p); /* after the commits, bounded */
        }
        if (rc == STX_AGAIN) continue;
        return rc < 0 ? report(p, rc) : rc;
    }
}

int stx_processor_run(stx_processor *p)
{
    if (!p) return STX_EINVAL;
    /* run() returns only a stop or a fatal error, so it logs each error it
     * handles itself, once: a run of equal retriable errors (Redis away for
     * a minute) is one warning, its repeats debug lines.  A dropped
     * connection is retried at once, then after 100 ms doubling up to 5 s. */
    stx_retry retry;
    stx_retry_init(&retry, 5000);
    for (;;) {
        int rc = stx_processor_poll(p);
        if (rc >= 0) {
            stx_retry_reset(&retry);
            continue;
        }
        if (rc == STX_ESTOPPED) return STX_OK;
        if (rc == STX_EHANDLER) {
            /* Retried after its delay, or dead-lettered: errmsg says which. */
            stx_log(p, STX_LOG_WARN, "%s", p->errmsg);
            continue;
        }
        if (stx_error_class_of(rc) != STX_CLASS_RETRIABLE) return rc;
        if (!p->connected_once && rc == STX_ECONN) {
            /* Never reached Redis: a wrong address should not spin for ever. */
            return rc;
        }
        long delay;
        int level = stx_retry_next(&retry, p->errmsg, &delay);
        stx_log(p, level, "%s; retrying in %ld ms", p->errmsg, delay);
        stx_sleep_ms(p, delay);
    }
}
