/* Exactly-once against what an operator, another client or Redis itself
 * can do without killing anything: XGROUP SETID forwards and backwards,
 * DELCONSUMER, a foreign reader's pending entries, a publish target that
 * cannot take entries, restores from an older RDB, supervisor restarts
 * while a commit is refused, thousands of graceful stops, large entries. */
#include <criterion/criterion.h>
#include <inttypes.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <sys/wait.h>
#include <unistd.h>

#include "harness.h"
#include "streamtx.h"
#include "workload.h"

TestSuite(exactly_once, .timeout = 600);

/* ---- a counter processor ------------------------------------------------ */

struct counter {
    const char *out;            /* publish every entry's k here, or NULL */
    stx_processor *p;           /* to stop from the handler */
    long stop_after;            /* stop the processor after this many calls; <0 never */
    long calls;
    redisContext *admin;        /* run admin_cmd on it at call admin_at (1-based) */
    long admin_at;
    const char *admin_cmd;
};

static int count_handler(const stx_msg *msg, stx_txn *txn, void *ud)
{
    struct counter *c = ud;
    if (c->stop_after >= 0 && c->calls >= c->stop_after) stx_processor_stop(c->p);
    c->calls++;
    if (c->admin && c->calls == c->admin_at) {
        redisReply *r = redisCommand(c->admin, c->admin_cmd);
        cr_assert(r && r->type != REDIS_REPLY_ERROR, "%s: %s", c->admin_cmd, r ? r->str : "no reply");
        freeReplyObject(r);
    }
    size_t klen;
    const char *k = stx_msg_get(msg, "k", &klen);
    if (!k) return stx_txn_fail(txn, "no k");
    int rc = stx_txn_incr(txn, "total", 5, 1, NULL);
    if (rc == STX_OK) rc = stx_txn_incr(txn, k, klen, 1, NULL);
    if (rc == STX_OK && c->out) rc = stx_txn_publishv(txn, c->out, "k", k, NULL);
    return rc;
}

static void quiet(stx_log_level level, const char *line, void *ud)
{
    (void)ud;
    if (getenv("STX_TEST_VERBOSE")) fprintf(stderr, "[%d] %s\n", (int)level, line);
}

static stx_processor *counter_new(const test_redis *r, const char *stream, struct counter *c,
                                  const char *const *kv)
{
    stx_config *conf = stx_config_new();
    char err[256];
    cr_assert_eq(stx_config_set(conf, "url", r->url, err, sizeof err), STX_OK, "%s", err);
    stx_config_set(conf, "stream", stream, NULL, 0);
    stx_config_set(conf, "group", "g", NULL, 0);
    stx_config_set(conf, "consumer", "c1", NULL, 0);
    stx_config_set(conf, "block_ms", "20", NULL, 0);
    stx_config_set(conf, "retry_base_ms", "0", NULL, 0);
    for (size_t i = 0; kv && kv[i]; i += 2)
        cr_assert_eq(stx_config_set(conf, kv[i], kv[i + 1], err, sizeof err), STX_OK, "%s: %s",
                     kv[i], err);
    stx_config_set_handler(conf, count_handler, c);
    stx_config_set_log(conf, quiet, NULL);
    stx_processor *p;
    cr_assert_eq(stx_processor_new(&p, conf), STX_OK, "%s", stx_processor_errmsg(p));
    stx_config_free(conf);
    c->p = p;
    return p;
}

/* Poll until a poll finds nothing; returns the number committed. */
static long drain(stx_processor *p)
{
    long total = 0;
    for (int polls = 0; polls < 1000000; polls++) {
        int n = stx_processor_poll(p);
        cr_assert(n >= 0, "poll: %s: %s", stx_strerror(n), stx_processor_errmsg(p));
        if (n == 0) return total;
        total += n;
    }
    cr_assert_fail("never idle");
    return total;
}

static void produce(redisContext *c, const char *stream, long n)
{
    for (long i = 0; i < n; i++) redisAppendCommand(c, "XADD %s * k k%ld", stream, i % 7);
    for (long i = 0; i < n; i++) {
        redisReply *r;
        cr_assert_eq(redisGetReply(c, (void **)&r), REDIS_OK);
        cr_assert_eq(r->type, REDIS_REPLY_STRING, "XADD: %s", r->str);
        freeReplyObject(r);
    }
}

static int64_t redis_total(redisContext *c, const char *stream)
{
    char name[256];
    cr_assert(stx_key_name(name, sizeof name, stream, "g", "state") > 0);
    redisReply *r = test_cmd(c, "HGET %s total", name);
    int64_t v = 0;
    if (r->type == REDIS_REPLY_STRING) cr_assert_eq(stx_mp_read_i64(r->str, r->len, &v), STX_OK);
    freeReplyObject(r);
    return v;
}

static long long pending(redisContext *c, const char *stream)
{
    redisReply *r = test_cmd(c, "XPENDING %s g", stream);
    long long n = r->element[0]->integer;
    freeReplyObject(r);
    return n;
}

static void meta_offset(redisContext *c, const char *stream, char *out, size_t cap)
{
    char name[256];
    cr_assert(stx_key_name(name, sizeof name, stream, "g", "meta") > 0);
    redisReply *r = test_cmd(c, "HGET %s offset", name);
    snprintf(out, cap, "%s", r->type == REDIS_REPLY_STRING ? r->str : "(none)");
    freeReplyObject(r);
}

static void last_id(redisContext *c, const char *stream, char *out, size_t cap)
{
    redisReply *r = test_cmd(c, "XREVRANGE %s + - COUNT 1", stream);
    cr_assert_eq(r->elements, 1);
    snprintf(out, cap, "%s", r->element[0]->element[0]->str);
    freeReplyObject(r);
}

/* Every entry applied once, the offset at the last id, nothing pending. */
static void check_exact(redisContext *c, const char *stream, long produced)
{
    cr_assert_eq(redis_total(c, stream), produced, "total %" PRId64 ", produced %ld",
                 redis_total(c, stream), produced);
    char off[64], last[64];
    meta_offset(c, stream, off, sizeof off);
    last_id(c, stream, last, sizeof last);
    cr_assert_str_eq(off, last);
    cr_assert_eq(pending(c, stream), 0);
}

/* ---- the group moved by other clients (hole 4) --------------------------- */

Test(exactly_once, setid_forward_by_another_client_skips_nothing)
{
    test_redis r;
    test_redis_start(&r, 0, NULL);
    redisContext *c = test_redis_connect(&r);
    produce(c, "sf", 3000);
    /* Another client moves the group to the end while the processor lags,
     * at its 250th entry: a commit may be in flight, the batch after it
     * read and being handled. */
    struct counter k = {NULL, NULL, -1, 0, c, 250, "XGROUP SETID sf g $"};
    static const char *const kv[] = {"batch_size", "50", NULL};
    stx_processor *p = counter_new(&r, "sf", &k, kv);
    drain(p);
    cr_assert_geq(k.calls, 3000);
    produce(c, "sf", 1000);
    drain(p);
    check_exact(c, "sf", 4000);
    stx_processor_free(p);
    redisFree(c);
    test_redis_stop(&r);
}

Test(exactly_once, setid_backward_applies_nothing_twice)
{
    test_redis r;
    test_redis_start(&r, 0, NULL);
    redisContext *c = test_redis_connect(&r);
    produce(c, "sb", 300);
    struct counter k = {NULL, NULL, -1, 0, NULL, 0, NULL};
    stx_processor *p = counter_new(&r, "sb", &k, NULL);
    cr_assert_eq(drain(p), 300);
    freeReplyObject(test_cmd(c, "XGROUP SETID sb g 0"));
    produce(c, "sb", 50);
    drain(p);
    check_exact(c, "sb", 350);
    stx_stats st;
    stx_processor_stats(p, &st);
    cr_assert_eq(st.duplicates, 300);
    cr_assert_eq(k.calls, 350);
    stx_processor_free(p);
    redisFree(c);
    test_redis_stop(&r);
}

/* Operator commands on the running group from inside a handler: a commit
 * is in flight then, the batch after it being handled (overlap). */
static void operator_mid_flight(const char *stream, const char *cmd)
{
    test_redis r;
    test_redis_start(&r, 0, NULL);
    redisContext *c = test_redis_connect(&r);
    produce(c, stream, 3000);
    struct counter k = {NULL, NULL, -1, 0, c, 250, cmd};
    static const char *const kv[] = {"batch_size", "50", NULL};
    stx_processor *p = counter_new(&r, stream, &k, kv);
    drain(p);
    check_exact(c, stream, 3000);
    stx_processor_free(p);
    redisFree(c);
    test_redis_stop(&r);
}

Test(exactly_once, delconsumer_of_the_running_consumer_mid_flight_loses_nothing)
{
    operator_mid_flight("dm", "XGROUP DELCONSUMER dm g c1");
}

Test(exactly_once, setid_backward_mid_flight_applies_nothing_twice)
{
    operator_mid_flight("sb", "XGROUP SETID sb g 0");
}

Test(exactly_once, delconsumer_of_a_dead_consumer_loses_nothing)
{
    test_redis r;
    test_redis_start(&r, 0, NULL);
    redisContext *c = test_redis_connect(&r);
    freeReplyObject(test_cmd(c, "XGROUP CREATE dc g 0 MKSTREAM"));
    produce(c, "dc", 4);
    /* A consumer read two entries and died; an operator cleans it up. */
    freeReplyObject(test_cmd(c, "XREADGROUP GROUP g dead COUNT 2 STREAMS dc >"));
    freeReplyObject(test_cmd(c, "XGROUP DELCONSUMER dc g dead"));
    struct counter k = {NULL, NULL, -1, 0, NULL, 0, NULL};
    stx_processor *p = counter_new(&r, "dc", &k, NULL);
    cr_assert_eq(drain(p), 4);
    check_exact(c, "dc", 4);
    stx_processor_free(p);
    redisFree(c);
    test_redis_stop(&r);
}

Test(exactly_once, foreign_pending_entries_below_the_offset_converge)
{
    test_redis r;
    test_redis_start(&r, 0, NULL);
    redisContext *c = test_redis_connect(&r);
    produce(c, "lv", 5);
    struct counter k = {NULL, NULL, -1, 0, NULL, 0, NULL};
    stx_processor *p = counter_new(&r, "lv", &k, NULL);
    cr_assert_eq(drain(p), 5);
    /* Another reader takes committed entries into its pending list. */
    freeReplyObject(test_cmd(c, "XGROUP SETID lv g 0"));
    freeReplyObject(test_cmd(c, "XREADGROUP GROUP g other COUNT 2 STREAMS lv >"));
    produce(c, "lv", 3);
    int64_t t0 = test_now_ms();
    drain(p);
    cr_assert_lt(test_now_ms() - t0, 30000, "did not converge");
    cr_assert_eq(redis_total(c, "lv"), 8);
    stx_processor_free(p);
    /* The next start cleans the pending list of what the offset passed. */
    p = counter_new(&r, "lv", &k, NULL);
    cr_assert_eq(drain(p), 0);
    check_exact(c, "lv", 8);
    stx_processor_free(p);
    redisFree(c);
    test_redis_stop(&r);
}

/* ---- a commit that cannot be written whole (hole 5) --------------------- */

Test(exactly_once, publish_target_without_id_space_refuses_before_any_write)
{
    test_redis r;
    test_redis_start(&r, 0, NULL);
    redisContext *c = test_redis_connect(&r);
    freeReplyObject(test_cmd(c, "XADD full 18446744073709551615-18446744073709551615 x 1"));
    produce(c, "pt", 3);
    struct counter k = {"full", NULL, -1, 0, NULL, 0, NULL};
    stx_processor *p = counter_new(&r, "pt", &k, NULL);
    for (int i = 0; i < 3; i++) {
        int rc = stx_processor_poll(p);
        cr_assert_eq(rc, STX_EREDIS_REFUSED, "%d: %s", rc, stx_processor_errmsg(p));
        cr_assert(strstr(stx_processor_errmsg(p), "highest possible id"), "%s",
                  stx_processor_errmsg(p));
    }
    cr_assert_eq(redis_total(c, "pt"), 0, "state was written by a refused commit");
    char off[64];
    meta_offset(c, "pt", off, sizeof off);
    cr_assert_str_eq(off, "(none)");
    cr_assert_eq(test_cmd_int(c, "XLEN full"), 1);
    /* The operator makes room; everything is applied once. */
    freeReplyObject(test_cmd(c, "DEL full"));
    cr_assert_eq(drain(p), 3);
    check_exact(c, "pt", 3);
    cr_assert_eq(test_cmd_int(c, "XLEN full"), 3);
    stx_processor_free(p);
    redisFree(c);
    test_redis_stop(&r);
}

/* ---- Redis restored from an older copy (hole 3) -------------------------- */

static void save_rdb(redisContext *c, const test_redis *r, char *copy, size_t cap)
{
    freeReplyObject(test_cmd(c, "SAVE"));
    snprintf(copy, cap, "%s/backup.rdb", r->dir);
    char cmd[600];
    snprintf(cmd, sizeof cmd, "cp '%s/dump.rdb' '%s'", r->dir, copy);
    cr_assert_eq(system(cmd), 0);
}

static void restore_rdb(test_redis *r, const char *copy)
{
    test_redis_kill(r);
    char cmd[600];
    snprintf(cmd, sizeof cmd, "cp '%s' '%s/dump.rdb'", copy, r->dir);
    cr_assert_eq(system(cmd), 0);
    test_redis_restart(r);
}

Test(exactly_once, snapshot_of_another_history_at_the_same_seq_is_rejected)
{
    test_redis r;
    test_redis_start(&r, 0, NULL);
    char snap[256], backup[512];
    test_tmpdir(snap, sizeof snap);
    redisContext *c = test_redis_connect(&r);
    static const char *const kv_plain[] = {"batch_size", "1", NULL};
    struct counter k = {NULL, NULL, -1, 0, NULL, 0, NULL};
    const char *kv[] = {"snapshot_dir", snap, "batch_size", "1", NULL};

    produce(c, "rs", 5);
    stx_processor *p = counter_new(&r, "rs", &k, kv);
    cr_assert_eq(drain(p), 5);
    stx_processor_free(p);
    redisFree(c);
    c = test_redis_connect(&r);
    save_rdb(c, &r, backup, sizeof backup); /* seq 5 */
    produce(c, "rs", 5);
    p = counter_new(&r, "rs", &k, kv);
    cr_assert_eq(drain(p), 5); /* seq 10 in Redis and in the snapshot */
    stx_processor_free(p);
    redisFree(c);

    restore_rdb(&r, backup); /* Redis back at seq 5 */
    c = test_redis_connect(&r);
    cr_assert_eq(redis_total(c, "rs"), 5);
    /* Another processor, without the snapshot, reaches seq 10 with other entries. */
    for (int i = 0; i < 5; i++) freeReplyObject(test_cmd(c, "XADD rs * k other"));
    stx_processor *q = counter_new(&r, "rs", &k, kv_plain);
    cr_assert_eq(drain(q), 5);
    stx_processor_free(q);

    /* The first one restarts with its snapshot: seq 10 there and in Redis,
     * but another history. */
    p = counter_new(&r, "rs", &k, kv);
    freeReplyObject(test_cmd(c, "XADD rs * k k1"));
    cr_assert_eq(drain(p), 1);
    stx_stats st;
    stx_processor_stats(p, &st);
    cr_assert_eq(st.snapshot_loads, 0, "a snapshot of another history was trusted");
    const void *v;
    size_t n;
    int64_t other = 0;
    cr_assert_eq(stx_processor_state_get(p, "other", 5, &v, &n), STX_OK);
    cr_assert_eq(stx_mp_read_i64(v, n, &other), STX_OK);
    cr_assert_eq(other, 5);
    cr_assert_eq(redis_total(c, "rs"), 11);
    stx_processor_free(p);
    /* And the rebuilt snapshot is trusted on the next start. */
    p = counter_new(&r, "rs", &k, kv);
    cr_assert_eq(drain(p), 0);
    stx_processor_stats(p, &st);
    cr_assert_eq(st.snapshot_loads, 1);
    stx_processor_free(p);
    redisFree(c);
    test_rmrf(snap);
    test_redis_stop(&r);
}

Test(exactly_once, running_processor_follows_redis_back_to_an_older_copy)
{
    test_redis r;
    test_redis_start(&r, 0, NULL);
    char backup[512];
    redisContext *c = test_redis_connect(&r);
    produce(c, "rb", 5);
    struct counter k = {NULL, NULL, -1, 0, NULL, 0, NULL};
    stx_processor *p = counter_new(&r, "rb", &k, NULL);
    cr_assert_eq(drain(p), 5);
    save_rdb(c, &r, backup, sizeof backup); /* holds this processor's epoch, token, seq 5 */
    produce(c, "rb", 5);
    cr_assert_eq(drain(p), 5);
    redisFree(c);
    restore_rdb(&r, backup);
    c = test_redis_connect(&r);
    produce(c, "rb", 3);
    for (int polls = 0; polls < 200 && redis_total(c, "rb") != 8; polls++) {
        int rc = stx_processor_poll(p);
        cr_assert(rc >= 0 || rc == STX_ECONN || rc == STX_ETIMEOUT, "%d: %s", rc,
                  stx_processor_errmsg(p));
    }
    drain(p);
    check_exact(c, "rb", 8);
    const void *v;
    size_t n;
    int64_t total = 0;
    cr_assert_eq(stx_processor_state_get(p, "total", 5, &v, &n), STX_OK);
    cr_assert_eq(stx_mp_read_i64(v, n, &total), STX_OK);
    cr_assert_eq(total, 8, "the in-memory state was not reloaded");
    stx_processor_free(p);
    redisFree(c);
    test_redis_stop(&r);
}

Test(exactly_once, redis_restart_without_persistence_starts_over)
{
    test_redis r;
    test_redis_start(&r, 0, NULL);
    redisContext *c = test_redis_connect(&r);
    produce(c, "np", 5);
    struct counter k = {NULL, NULL, -1, 0, NULL, 0, NULL};
    stx_processor *p = counter_new(&r, "np", &k, NULL);
    cr_assert_eq(drain(p), 5);
    redisFree(c);
    test_redis_kill(&r); /* no AOF, no RDB: everything is gone */
    test_redis_restart(&r);
    c = test_redis_connect(&r);
    int rc = stx_processor_poll(p);
    for (int i = 0; i < 5 && (rc == STX_ECONN || rc == STX_ETIMEOUT); i++) rc = stx_processor_poll(p);
    cr_assert_geq(rc, 0, "%d: %s", rc, stx_processor_errmsg(p));
    produce(c, "np", 2);
    drain(p);
    check_exact(c, "np", 2);
    cr_assert_eq(stx_processor_state_get(p, "k4", 2, &(const void *){NULL}, &(size_t){0}),
                 STX_ENOTFOUND, "the lost state survived in memory");
    stx_processor_free(p);
    redisFree(c);
    test_redis_stop(&r);
}

/* ---- attempts count handler failures and crashes only (hole 11) --------- */

/* A supervisor restarts the processor after every fatal exit while a publish
 * target holds the wrong type: the entry whose commit is refused is healthy
 * and must never reach the dead-letter stream, however many restarts. */
Test(exactly_once, supervisor_restarts_while_a_commit_is_refused_dead_letter_nothing)
{
    test_redis r;
    test_redis_start(&r, 0, NULL);
    redisContext *c = test_redis_connect(&r);
    workload w;
    wl_init(&w, &r, "sv");
    w.max_deliveries = 3;
    wl_produce(&w, c, 2000, 0);
    freeReplyObject(test_cmd(c, "SET %s not-a-stream", w.alerts));
    int failed = 0;
    for (int run = 0; run < 25; run++) {
        pid_t pid = wl_spawn(&w, 1);
        int status;
        cr_assert_eq(waitpid(pid, &status, 0), pid);
        cr_assert(WIFEXITED(status), "status %d", status);
        if (WEXITSTATUS(status) != 0) failed++;
    }
    cr_assert_eq(failed, 25, "the refused commit did not stop the processor");
    freeReplyObject(test_cmd(c, "DEL %s", w.alerts));
    pid_t pid = wl_spawn(&w, 1);
    int status;
    cr_assert_eq(waitpid(pid, &status, 0), pid);
    cr_assert(WIFEXITED(status) && WEXITSTATUS(status) == 0, "status %d", status);
    wl_check(&w, c, 0); /* exact stock and alerts, no dead letter */
    redisFree(c);
    test_redis_stop(&r);
}

/* Processors stopped a few entries into a batch, thousands of times: an
 * entry read but not handled before a stop is never counted as a failed
 * delivery. */
Test(exactly_once, thousands_of_graceful_stops_dead_letter_nothing)
{
    test_redis r;
    test_redis_start(&r, 0, NULL);
    redisContext *c = test_redis_connect(&r);
    long cycles = getenv("STX_STOP_CYCLES") ? atol(getenv("STX_STOP_CYCLES")) : 2000;
    produce(c, "gs", cycles * 2);
    uint64_t seed = 0x2545f4914f6cdd1dull ^ (uint64_t)getpid();
    static const char *const kv[] = {"max_deliveries", "1", "batch_size", "8", NULL};
    for (long i = 0; i < cycles; i++) {
        seed ^= seed << 13;
        seed ^= seed >> 7;
        seed ^= seed << 17;
        struct counter k = {NULL, NULL, (long)(seed % 4), 0, NULL, 0, NULL};
        stx_processor *p = counter_new(&r, "gs", &k, kv);
        int rc;
        while ((rc = stx_processor_poll(p)) > 0) {}
        cr_assert(rc == STX_ESTOPPED || rc == 0, "%d: %s", rc, stx_processor_errmsg(p));
        stx_processor_free(p);
    }
    struct counter k = {NULL, NULL, -1, 0, NULL, 0, NULL};
    stx_processor *p = counter_new(&r, "gs", &k, kv);
    drain(p);
    stx_processor_free(p);
    check_exact(c, "gs", cycles * 2);
    char dlq[256];
    cr_assert(stx_key_name(dlq, sizeof dlq, "gs", "g", "dlq") > 0);
    cr_assert_eq(test_cmd_int(c, "XLEN %s", dlq), 0, "healthy entries were dead-lettered");
    redisFree(c);
    test_redis_stop(&r);
}

/* ---- memory per batch (hole 14) ------------------------------------------ */

static int echo_handler(const stx_msg *msg, stx_txn *txn, void *ud)
{
    long *calls = ud;
    (*calls)++;
    size_t n;
    const char *v = stx_msg_get(msg, "v", &n);
    const char *names[] = {"v"};
    size_t nlens[] = {1};
    const char *values[] = {v};
    return stx_txn_publish(txn, "big-out", 1, names, nlens, values, &n);
}

/* Entries of 1 MiB that each publish their value, with batch_size 1000:
 * the batch stays within max_batch_bytes.  The child's peak RSS is the
 * measure (not a timing); under AddressSanitizer, whose quarantine holds
 * freed memory, only the commit count is. */
Test(exactly_once, large_entries_stay_within_max_batch_bytes)
{
    test_redis r;
    test_redis_start(&r, 0, NULL);
    redisContext *c = test_redis_connect(&r);
    enum { N = 160, SIZE = 1 << 20 };
    char *blob = malloc(SIZE);
    memset(blob, 'b', SIZE);
    for (int i = 0; i < N; i++) freeReplyObject(test_cmd(c, "XADD big * v %b", blob, (size_t)SIZE));
    free(blob);
    int fds[2];
    cr_assert_eq(pipe(fds), 0);
    pid_t pid = fork();
    cr_assert_geq(pid, 0);
    if (pid == 0) {
        long calls = 0;
        stx_config *conf = stx_config_new();
        stx_config_set(conf, "url", r.url, NULL, 0);
        stx_config_set(conf, "stream", "big", NULL, 0);
        stx_config_set(conf, "group", "g", NULL, 0);
        stx_config_set(conf, "block_ms", "20", NULL, 0);
        stx_config_set(conf, "batch_size", "1000", NULL, 0);
        stx_config_set(conf, "max_batch_bytes", "8388608", NULL, 0);
        stx_config_set(conf, "command_timeout_ms", "30000", NULL, 0);
        stx_config_set_handler(conf, echo_handler, &calls);
        stx_config_set_log(conf, quiet, NULL);
        stx_processor *p;
        if (stx_processor_new(&p, conf) != STX_OK) _exit(1);
        stx_config_free(conf);
        int rc;
        while ((rc = stx_processor_poll(p)) > 0) {}
        stx_stats st;
        stx_processor_stats(p, &st);
        struct rusage ru;
        getrusage(RUSAGE_SELF, &ru);
        long out[3] = {rc, (long)st.commits, ru.ru_maxrss};
        if (write(fds[1], out, sizeof out) != (ssize_t)sizeof out) _exit(2);
        stx_processor_free(p);
        _exit(0);
    }
    close(fds[1]);
    long res[3] = {0};
    cr_assert_eq(read(fds[0], res, sizeof res), (ssize_t)sizeof res);
    close(fds[0]);
    int status;
    cr_assert_eq(waitpid(pid, &status, 0), pid);
    cr_assert_eq(res[0], 0, "poll: %ld", res[0]);
    cr_assert_eq(test_cmd_int(c, "XLEN big-out"), N);
    /* 8 MiB of entries and 8 MiB of publishes at most per commit. */
    cr_assert_geq(res[1], N / 8, "%ld commits for %d MiB", res[1], N);
#if !defined(__SANITIZE_ADDRESS__)
    cr_assert_lt(res[2], 120 * 1024, "peak RSS %ld KiB", res[2]);
#endif
    fprintf(stderr, "large entries: %ld commits, peak RSS %ld KiB\n", res[1], res[2]);
    redisFree(c);
    test_redis_stop(&r);
}

/* ---- what the processor says (hole 12) ----------------------------------- */

struct captured {
    char lines[8192];
};

static void capture(stx_log_level level, const char *line, void *ud)
{
    struct captured *c = ud;
    if (level < STX_LOG_WARN) return;
    size_t used = strlen(c->lines);
    snprintf(c->lines + used, sizeof c->lines - used, "%s\n", line);
}

static stx_processor *captured_new(const test_redis *r, const char *stream, struct counter *k,
                                   struct captured *log, const char *snapshot)
{
    stx_processor *p = counter_new(r, stream, k, NULL);
    stx_processor_free(p);
    stx_config *conf = stx_config_new();
    stx_config_set(conf, "url", r->url, NULL, 0);
    stx_config_set(conf, "stream", stream, NULL, 0);
    stx_config_set(conf, "group", "g", NULL, 0);
    stx_config_set(conf, "block_ms", "20", NULL, 0);
    if (snapshot) stx_config_set(conf, "snapshot_dir", snapshot, NULL, 0);
    stx_config_set_handler(conf, count_handler, k);
    stx_config_set_log(conf, capture, log);
    cr_assert_eq(stx_processor_new(&p, conf), STX_OK);
    stx_config_free(conf);
    k->p = p;
    return p;
}

/* 1,000 entries pending under a dead consumer are read from the stream by
 * the offset in full batches (the script cache lost half-way), acknowledged
 * by their commits where they stand, and the list is empty at the end. */
Test(exactly_once, a_dead_consumers_pending_list_is_worked_off_in_batches)
{
    test_redis r;
    test_redis_start(&r, 0, NULL);
    redisContext *c = test_redis_connect(&r);
    freeReplyObject(test_cmd(c, "XGROUP CREATE rp g 0 MKSTREAM"));
    produce(c, "rp", 1000);
    freeReplyObject(test_cmd(c, "XREADGROUP GROUP g dead COUNT 1000 STREAMS rp >"));
    struct counter k = {NULL, NULL, -1, 0, NULL, 0, NULL};
    static const char *const kv[] = {"batch_size", "64", NULL};
    stx_processor *p = counter_new(&r, "rp", &k, kv);
    long done = 0;
    for (int i = 0; i < 4; i++) {
        int n = stx_processor_poll(p);
        cr_assert(n > 0, "poll %d: %d %s", i, n, stx_processor_errmsg(p));
        done += n;
    }
    /* Mid-recovery: what was committed left the dead consumer's list. */
    redisReply *pend = test_cmd(c, "XPENDING rp g");
    cr_assert_eq(pend->element[0]->integer, 1000 - done);
    cr_assert_eq(pend->element[3]->elements, 1);
    cr_assert_str_eq(pend->element[3]->element[0]->element[0]->str, "dead");
    freeReplyObject(pend);
    freeReplyObject(test_cmd(c, "SCRIPT FLUSH"));
    done += drain(p);
    cr_assert_eq(done, 1000);
    cr_assert_eq(k.calls, 1000);
    check_exact(c, "rp", 1000);
    pend = test_cmd(c, "XPENDING rp g");
    cr_assert_eq(pend->element[0]->integer, 0);
    freeReplyObject(pend);
    stx_stats st;
    stx_processor_stats(p, &st);
    cr_assert_geq(st.script_reloads, 1);
    cr_assert_eq(st.duplicates, 0);
    stx_processor_free(p);
    redisFree(c);
    test_redis_stop(&r);
}

Test(exactly_once, an_entry_deleted_while_pending_is_reported)
{
    test_redis r;
    test_redis_start(&r, 0, NULL);
    redisContext *c = test_redis_connect(&r);
    freeReplyObject(test_cmd(c, "XGROUP CREATE dp g 0 MKSTREAM"));
    produce(c, "dp", 3);
    redisReply *read = test_cmd(c, "XREADGROUP GROUP g dead COUNT 3 STREAMS dp >");
    char victim[64];
    snprintf(victim, sizeof victim, "%s", read->element[0]->element[1]->element[1]->element[0]->str);
    freeReplyObject(read);
    freeReplyObject(test_cmd(c, "XDEL dp %s", victim));
    struct counter k = {NULL, NULL, -1, 0, NULL, 0, NULL};
    struct captured log = {""};
    stx_processor *p = captured_new(&r, "dp", &k, &log, NULL);
    cr_assert_eq(drain(p), 2);
    cr_assert(strstr(log.lines, victim) && strstr(log.lines, "deleted before it was handled"), "%s",
              log.lines);
    check_exact(c, "dp", 2);
    stx_processor_free(p);
    redisFree(c);
    test_redis_stop(&r);
}

Test(exactly_once, lost_redis_data_is_reported_as_lost_not_as_a_takeover)
{
    test_redis r;
    test_redis_start(&r, 0, NULL);
    redisContext *c = test_redis_connect(&r);
    produce(c, "ld", 3);
    struct counter k = {NULL, NULL, -1, 0, NULL, 0, NULL};
    struct captured log = {""};
    stx_processor *p = captured_new(&r, "ld", &k, &log, NULL);
    cr_assert_eq(drain(p), 3);
    redisFree(c);
    test_redis_kill(&r);
    test_redis_restart(&r);
    c = test_redis_connect(&r);
    int rc = stx_processor_poll(p);
    for (int i = 0; i < 5 && rc < 0 && rc != STX_EFENCED; i++) rc = stx_processor_poll(p);
    cr_assert_geq(rc, 0, "%d: %s", rc, stx_processor_errmsg(p));
    cr_assert(strstr(log.lines, "Redis lost data"), "%s", log.lines);
    cr_assert_null(strstr(log.lines, "taken over"), "%s", log.lines);
    stx_processor_free(p);
    redisFree(c);
    test_redis_stop(&r);
}

/* ---- one snapshot directory, several groups and a zombie (hole 3) -------- */

Test(exactly_once, a_snapshot_in_use_is_not_shared_and_groups_keep_their_own)
{
    test_redis r;
    test_redis_start(&r, 0, NULL);
    char snap[256];
    test_tmpdir(snap, sizeof snap);
    redisContext *c = test_redis_connect(&r);
    produce(c, "sa", 4);
    produce(c, "sb2", 6);
    struct counter ka = {NULL, NULL, -1, 0, NULL, 0, NULL}, kb = {NULL, NULL, -1, 0, NULL, 0, NULL}, kz = {NULL, NULL, -1, 0, NULL, 0, NULL};
    struct captured la = {""}, lb = {""}, lz = {""};
    stx_processor *a = captured_new(&r, "sa", &ka, &la, snap);
    stx_processor *b = captured_new(&r, "sb2", &kb, &lb, snap);
    cr_assert_eq(drain(a), 4);
    cr_assert_eq(drain(b), 6);
    /* A second processor of group (sa, g) while the first still holds the
     * snapshot (a paused zombie on the same host): it runs from Redis. */
    stx_processor *z = captured_new(&r, "sa", &kz, &lz, snap);
    freeReplyObject(test_cmd(c, "XADD sa * k k0"));
    cr_assert_eq(drain(z), 1);
    cr_assert(strstr(lz.lines, "locked"), "%s", lz.lines);
    freeReplyObject(test_cmd(c, "XADD sa * k k1"));
    cr_assert_eq(stx_processor_poll(a), STX_EFENCED, "%s", stx_processor_errmsg(a));
    stx_processor_free(a);
    cr_assert_eq(drain(z), 1);
    stx_processor_free(z);
    stx_processor_free(b);
    /* Restarts trust each group's own snapshot only where it is current. */
    a = captured_new(&r, "sa", &ka, &la, snap);
    b = captured_new(&r, "sb2", &kb, &lb, snap);
    cr_assert_eq(drain(a), 0);
    cr_assert_eq(drain(b), 0);
    stx_stats sa, sb;
    stx_processor_stats(a, &sa);
    stx_processor_stats(b, &sb);
    cr_assert_eq(sa.snapshot_loads, 0, "a snapshot older than Redis was trusted");
    cr_assert_eq(sb.snapshot_loads, 1);
    cr_assert_eq(redis_total(c, "sa"), 6);
    cr_assert_eq(redis_total(c, "sb2"), 6);
    stx_processor_free(a);
    stx_processor_free(b);
    redisFree(c);
    test_rmrf(snap);
    test_redis_stop(&r);
}

/* An operator trims entries the processor has not reached yet: they are
 * gone, not applied and not waited for; everything the stream still holds
 * is applied once, and nothing stays pending. */
Test(exactly_once, xtrim_of_entries_not_yet_handled)
{
    test_redis r;
    test_redis_start(&r, 0, NULL);
    redisContext *c = test_redis_connect(&r);
    produce(c, "xt", 100);
    struct counter k = {NULL, NULL, -1, 0, NULL, 0, NULL};
    static const char *const kv[] = {"batch_size", "10", "pipeline", "0", NULL};
    stx_processor *p = counter_new(&r, "xt", &k, kv);
    int got = 0;
    while (got < 20) {
        int n = stx_processor_poll(p);
        cr_assert_gt(n, 0, "%s", stx_processor_errmsg(p));
        got += n;
    }
    cr_assert_eq(got, 20);
    freeReplyObject(test_cmd(c, "XTRIM xt MAXLEN 50"));
    drain(p);
    check_exact(c, "xt", 70);
    stx_processor_free(p);
    redisFree(c);
    test_redis_stop(&r);
}
