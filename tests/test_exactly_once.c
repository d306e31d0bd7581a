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
};

static int count_handler(const stx_msg *msg, stx_txn *txn, void *ud)
{
    struct counter *c = ud;
    if (c->stop_after >= 0 && c->calls >= c->stop_after) stx_processor_stop(c->p);
    c->calls++;
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
    struct counter k = {NULL, NULL, -1, 0};
    static const char *const kv[] = {"batch_size", "50", NULL};
    stx_processor *p = counter_new(&r, "sf", &k, kv);
    for (int i = 0; i < 5; i++) cr_assert_gt(stx_processor_poll(p), 0, "%s", stx_processor_errmsg(p));
    /* Another client moves the group to the end while the processor lags. */
    freeReplyObject(test_cmd(c, "XGROUP SETID sf g $"));
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
    struct counter k = {NULL, NULL, -1, 0};
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
    struct counter k = {NULL, NULL, -1, 0};
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
    struct counter k = {NULL, NULL, -1, 0};
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
    struct counter k = {"full", NULL, -1, 0};
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
    struct counter k = {NULL, NULL, -1, 0};
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
    struct counter k = {NULL, NULL, -1, 0};
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
    struct counter k = {NULL, NULL, -1, 0};
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
