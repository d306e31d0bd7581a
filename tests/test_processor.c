/* Processor behaviour against a real redis-server: commits, exactly-once
 * skips, handler failures, restarts, snapshots, script reloads. */
#include <criterion/criterion.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "harness.h"
#include "streamtx.h"

static test_redis R;

static void setup(void) { test_redis_start(&R, 0, NULL); }
static void teardown(void) { test_redis_stop(&R); }

TestSuite(processor, .init = setup, .fini = teardown, .timeout = 120);

/* Counts messages per field "k" and publishes every tenth count to "out". */
struct counter_ctx {
    const char *out;
    int fail_on;        /* fail when a message has field "k" equal to this number; -1 never */
    int calls;
};

static int count_handler(const stx_msg *msg, stx_txn *txn, void *ud)
{
    struct counter_ctx *c = ud;
    c->calls++;
    size_t klen;
    const char *k = stx_msg_get(msg, "k", &klen);
    if (!k) return stx_txn_fail(txn, "no k");
    if (c->fail_on >= 0 && atoi(k) == c->fail_on) {
        stx_txn_fail(txn, "refusing k=%s", k);
        return STX_HANDLER_RETRY;
    }
    int64_t v;
    int rc = stx_txn_incr(txn, k, klen, 1, &v);
    if (rc != STX_OK) return rc;
    rc = stx_txn_incr(txn, "total", 5, 1, &v);
    if (rc != STX_OK) return rc;
    if (c->out && v % 10 == 0) {
        char buf[32];
        snprintf(buf, sizeof buf, "%" PRId64, v);
        return stx_txn_publishv(txn, c->out, "total", buf, NULL);
    }
    return STX_OK;
}

static stx_processor *make(const char *stream, const char *group, struct counter_ctx *ctx,
                           const char *snapshot, const char *batch)
{
    stx_config *c = stx_config_new();
    char err[256];
    cr_assert_eq(stx_config_set(c, "url", R.url, err, sizeof err), STX_OK, "%s", err);
    cr_assert_eq(stx_config_set(c, "stream", stream, err, sizeof err), STX_OK);
    cr_assert_eq(stx_config_set(c, "group", group, err, sizeof err), STX_OK);
    cr_assert_eq(stx_config_set(c, "consumer", "c1", err, sizeof err), STX_OK);
    cr_assert_eq(stx_config_set(c, "block_ms", "50", err, sizeof err), STX_OK);
    cr_assert_eq(stx_config_set(c, "log_level", "error", err, sizeof err), STX_OK);
    cr_assert_eq(stx_config_set(c, "retry_base_ms", "0", err, sizeof err), STX_OK);
    if (batch) cr_assert_eq(stx_config_set(c, "batch_size", batch, err, sizeof err), STX_OK);
    if (snapshot) cr_assert_eq(stx_config_set(c, "snapshot_dir", snapshot, err, sizeof err), STX_OK);
    stx_config_set_handler(c, count_handler, ctx);
    stx_processor *p;
    cr_assert_eq(stx_processor_new(&p, c), STX_OK, "%s", p ? stx_processor_errmsg(p) : "");
    stx_config_free(c);
    return p;
}

/* Poll until a poll finds nothing; returns the number committed. */
static int drain(stx_processor *p)
{
    int total = 0;
    for (;;) {
        int n = stx_processor_poll(p);
        cr_assert(n >= 0, "poll: %s: %s", stx_strerror(n), stx_processor_errmsg(p));
        if (n == 0) return total;
        total += n;
    }
}

static void produce(redisContext *c, const char *stream, int n, int keys)
{
    for (int i = 0; i < n; i++) freeReplyObject(test_cmd(c, "XADD %s * k %d", stream, i % keys));
}

static int64_t state_i64(stx_processor *p, const char *key)
{
    const void *v;
    size_t n;
    int64_t out = -1;
    cr_assert_eq(stx_processor_state_get(p, key, strlen(key), &v, &n), STX_OK, "no key %s", key);
    cr_assert_eq(stx_mp_read_i64(v, n, &out), STX_OK);
    return out;
}

static int64_t redis_state_i64(redisContext *c, const char *stream, const char *group, const char *key)
{
    char name[256];
    cr_assert(stx_key_name(name, sizeof name, stream, group, "state") > 0);
    redisReply *r = test_cmd(c, "HGET %s %s", name, key);
    cr_assert_eq(r->type, REDIS_REPLY_STRING, "state key %s missing in Redis", key);
    int64_t v;
    cr_assert_eq(stx_mp_read_i64(r->str, r->len, &v), STX_OK);
    freeReplyObject(r);
    return v;
}

static long long pending_count(redisContext *c, const char *stream, const char *group)
{
    redisReply *r = test_cmd(c, "XPENDING %s %s", stream, group);
    long long n = r->element[0]->integer;
    freeReplyObject(r);
    return n;
}

static void last_id(redisContext *c, const char *stream, char *out, size_t cap)
{
    redisReply *r = test_cmd(c, "XREVRANGE %s + - COUNT 1", stream);
    cr_assert_eq(r->elements, 1);
    snprintf(out, cap, "%s", r->element[0]->element[0]->str);
    freeReplyObject(r);
}

Test(processor, commits_state_offset_and_publishes)
{
    redisContext *c = test_redis_connect(&R);
    produce(c, "orders", 100, 3);
    struct counter_ctx ctx = {"orders-out", -1, 0};
    stx_processor *p = make("orders", "g", &ctx, NULL, NULL);
    cr_assert_eq(drain(p), 100);
    cr_assert_eq(state_i64(p, "0"), 34);
    cr_assert_eq(state_i64(p, "1"), 33);
    cr_assert_eq(state_i64(p, "total"), 100);
    cr_assert_eq(redis_state_i64(c, "orders", "g", "0"), 34);
    cr_assert_eq(redis_state_i64(c, "orders", "g", "total"), 100);
    cr_assert_eq(test_cmd_int(c, "XLEN orders-out"), 10);
    cr_assert_eq(pending_count(c, "orders", "g"), 0);
    char last[64];
    last_id(c, "orders", last, sizeof last);
    cr_assert_str_eq(stx_processor_offset(p), last);
    char meta[256];
    stx_key_name(meta, sizeof meta, "orders", "g", "meta");
    redisReply *r = test_cmd(c, "HGET %s offset", meta);
    cr_assert_str_eq(r->str, last);
    freeReplyObject(r);
    /* Every publish names its source entry. */
    r = test_cmd(c, "XRANGE orders-out - +");
    for (size_t i = 0; i < r->elements; i++) {
        redisReply *f = r->element[i]->element[1];
        cr_assert_eq(f->elements, 4);
        cr_assert_str_eq(f->element[2]->str, "causation_id");
    }
    freeReplyObject(r);
    stx_stats st;
    stx_processor_stats(p, &st);
    cr_assert_eq(st.handled, 100);
    cr_assert_eq(st.committed, 100);
    cr_assert_eq(st.duplicates, 0);
    stx_processor_free(p);
    redisFree(c);
}

Test(processor, handler_failure_writes_nothing_and_stays_pending)
{
    redisContext *c = test_redis_connect(&R);
    produce(c, "f", 10, 10); /* k = 0..9 */
    struct counter_ctx ctx = {"f-out", 5, 0};
    stx_processor *p = make("f", "g", &ctx, NULL, NULL);
    int n = stx_processor_poll(p);
    cr_assert_eq(n, STX_EHANDLER, "got %d", n);
    cr_assert(strstr(stx_processor_errmsg(p), "refusing k=5"), "%s", stx_processor_errmsg(p));
    /* The five before it are committed, nothing of the failing one. */
    cr_assert_eq(redis_state_i64(c, "f", "g", "total"), 5);
    char name[256];
    stx_key_name(name, sizeof name, "f", "g", "state");
    cr_assert_eq(test_cmd_int(c, "HEXISTS %s 5", name), 0);
    cr_assert_eq(test_cmd_int(c, "HLEN %s", name), 6); /* 0..4 and total */
    cr_assert_eq(pending_count(c, "f", "g"), 5);
    /* Polling again retries the same entry first and fails again. */
    cr_assert_eq(stx_processor_poll(p), STX_EHANDLER);
    cr_assert_eq(redis_state_i64(c, "f", "g", "total"), 5);
    /* Once the handler accepts it, the rest goes through, in order. */
    ctx.fail_on = -1;
    cr_assert_eq(drain(p), 5);
    cr_assert_eq(redis_state_i64(c, "f", "g", "total"), 10);
    cr_assert_eq(pending_count(c, "f", "g"), 0);
    stx_processor_free(p);
    redisFree(c);
}

static void restart_case(const char *snapshot)
{
    redisContext *c = test_redis_connect(&R);
    produce(c, "r", 50, 5);
    struct counter_ctx ctx = {NULL, -1, 0};
    stx_processor *p = make("r", "g", &ctx, snapshot, NULL);
    cr_assert_eq(drain(p), 50);
    stx_processor_free(p);
    produce(c, "r", 50, 5);
    p = make("r", "g", &ctx, snapshot, NULL);
    cr_assert_eq(drain(p), 50);
    cr_assert_eq(state_i64(p, "0"), 20);
    cr_assert_eq(state_i64(p, "total"), 100);
    cr_assert_eq(redis_state_i64(c, "r", "g", "total"), 100);
    stx_stats st;
    stx_processor_stats(p, &st);
    cr_assert_eq(st.snapshot_loads, snapshot ? 1 : 0);
    cr_assert_eq(st.redis_loads, snapshot ? 0 : 1);
    stx_processor_free(p);
    redisFree(c);
}

Test(processor, state_survives_restart_without_snapshot) { restart_case(NULL); }

Test(processor, state_survives_restart_with_snapshot)
{
    char dir[256];
    test_tmpdir(dir, sizeof dir);
    restart_case(dir);
    test_rmrf(dir);
}

Test(processor, redelivered_entries_are_skipped_not_applied_twice)
{
    redisContext *c = test_redis_connect(&R);
    produce(c, "d", 30, 3);
    struct counter_ctx ctx = {"d-out", -1, 0};
    stx_processor *p = make("d", "g", &ctx, NULL, "7");
    cr_assert_eq(drain(p), 30);
    /* Move the group back: Redis delivers every entry again. */
    freeReplyObject(test_cmd(c, "XGROUP SETID d g 0"));
    ctx.calls = 0;
    cr_assert_eq(drain(p), 0);
    cr_assert_eq(ctx.calls, 0, "the handler ran for committed entries");
    cr_assert_eq(redis_state_i64(c, "d", "g", "total"), 30);
    cr_assert_eq(test_cmd_int(c, "XLEN d-out"), 3);
    cr_assert_eq(pending_count(c, "d", "g"), 0);
    stx_stats st;
    stx_processor_stats(p, &st);
    cr_assert_eq(st.duplicates, 30);
    stx_processor_free(p);
    redisFree(c);
}

/* Acknowledges the entry it is handling from a second connection, as an
 * operator might, before the processor commits it. */
struct acking_ctx {
    redisContext *side;
    const char *victim_k;
    int calls;
};

static int acking_handler(const stx_msg *msg, stx_txn *txn, void *ud)
{
    struct acking_ctx *a = ud;
    a->calls++;
    const char *k = stx_msg_get(msg, "k", NULL);
    if (strcmp(k, a->victim_k) == 0)
        cr_assert_eq(test_cmd_int(a->side, "XACK a g %s", stx_msg_id(msg)), 1);
    return stx_txn_incr(txn, "total", 5, 1, NULL);
}

/* The stored offset is the truth, not the pending list: an entry another
 * client acknowledged before it was committed is still applied, once. */
Test(processor, entry_acknowledged_behind_its_back_is_applied_once)
{
    redisContext *c = test_redis_connect(&R);
    produce(c, "a", 3, 3);
    struct counter_ctx unused = {NULL, -1, 0};
    stx_processor *p = make("a", "g", &unused, NULL, "1");
    stx_processor_free(p);
    struct acking_ctx a = {test_redis_connect(&R), "1", 0};
    stx_config *conf = stx_config_new();
    stx_config_set(conf, "url", R.url, NULL, 0);
    stx_config_set(conf, "stream", "a", NULL, 0);
    stx_config_set(conf, "group", "g", NULL, 0);
    stx_config_set(conf, "batch_size", "1", NULL, 0);
    stx_config_set(conf, "block_ms", "50", NULL, 0);
    stx_config_set(conf, "log_level", "error", NULL, 0);
    stx_config_set_handler(conf, acking_handler, &a);
    cr_assert_eq(stx_processor_new(&p, conf), STX_OK);
    stx_config_free(conf);
    cr_assert_eq(drain(p), 3);
    cr_assert_eq(a.calls, 3);
    cr_assert_eq(redis_state_i64(c, "a", "g", "total"), 3);
    stx_stats st;
    stx_processor_stats(p, &st);
    cr_assert_eq(st.duplicates, 0);
    cr_assert_eq(st.committed, 3);
    cr_assert_eq(pending_count(c, "a", "g"), 0);
    stx_processor_free(p);
    redisFree(a.side);
    redisFree(c);
}

Test(processor, script_cache_flush_is_survived)
{
    redisContext *c = test_redis_connect(&R);
    produce(c, "s", 5, 1);
    struct counter_ctx ctx = {NULL, -1, 0};
    stx_processor *p = make("s", "g", &ctx, NULL, NULL);
    cr_assert_eq(drain(p), 5);
    freeReplyObject(test_cmd(c, "SCRIPT FLUSH"));
    produce(c, "s", 5, 1);
    cr_assert_eq(drain(p), 5);
    stx_stats st;
    stx_processor_stats(p, &st);
    cr_assert_geq(st.script_reloads, 1);
    cr_assert_eq(redis_state_i64(c, "s", "g", "total"), 10);
    stx_processor_free(p);
    redisFree(c);
}

Test(processor, batches_commit_once_each)
{
    redisContext *c = test_redis_connect(&R);
    produce(c, "b", 200, 7);
    struct counter_ctx ctx = {"b-out", -1, 0};
    stx_processor *p = make("b", "g", &ctx, NULL, "64");
    cr_assert_eq(drain(p), 200);
    stx_stats st;
    stx_processor_stats(p, &st);
    /* Reads start small and double up to batch_size while the entries fit
     * max_batch_bytes: 16 + 32 + 64 + 64 + 24. */
    cr_assert_eq(st.commits, 5);
    cr_assert_eq(redis_state_i64(c, "b", "g", "total"), 200);
    cr_assert_eq(test_cmd_int(c, "XLEN b-out"), 20);
    stx_processor_free(p);
    redisFree(c);
}

Test(processor, failure_inside_a_batch_keeps_the_work_before_it)
{
    redisContext *c = test_redis_connect(&R);
    produce(c, "pb", 20, 20);
    struct counter_ctx ctx = {NULL, 12, 0};
    stx_processor *p = make("pb", "g", &ctx, NULL, "20");
    cr_assert_eq(stx_processor_poll(p), STX_EHANDLER);
    cr_assert_eq(redis_state_i64(c, "pb", "g", "total"), 12);
    ctx.fail_on = -1;
    cr_assert_eq(drain(p), 8);
    cr_assert_eq(redis_state_i64(c, "pb", "g", "total"), 20);
    cr_assert_eq(pending_count(c, "pb", "g"), 0);
    stx_processor_free(p);
    redisFree(c);
}

Test(processor, stored_offset_compares_ids_numerically)
{
    redisContext *c = test_redis_connect(&R);
    /* "9-5" > "10-1" as strings; as ids it is smaller. */
    freeReplyObject(test_cmd(c, "XADD n 9-5 k 0"));
    freeReplyObject(test_cmd(c, "XADD n 10-1 k 0"));
    freeReplyObject(test_cmd(c, "XADD n 100-0 k 0"));
    struct counter_ctx ctx = {NULL, -1, 0};
    stx_processor *p = make("n", "g", &ctx, NULL, "1");
    cr_assert_eq(drain(p), 3);
    cr_assert_str_eq(stx_processor_offset(p), "100-0");
    cr_assert_eq(redis_state_i64(c, "n", "g", "total"), 3);
    stx_processor_free(p);
    redisFree(c);
}

Test(processor, keys_share_the_stream_hash_slot)
{
    char meta[256], state[256];
    cr_assert(stx_key_name(meta, sizeof meta, "orders", "g", "meta") > 0);
    cr_assert_str_eq(meta, "{orders}:stx:6:orders:g:meta");
    cr_assert(stx_key_name(state, sizeof state, "app:{eu}:orders", "g", "state") > 0);
    cr_assert_str_eq(state, "{eu}:stx:15:app:{eu}:orders:g:state");
    /* Redis' own slot function agrees (it answers only in cluster mode). */
    static const char *const cluster[] = {"--cluster-enabled", "yes", "--cluster-config-file",
                                          "nodes.conf", NULL};
    test_redis cr;
    test_redis_start(&cr, 0, cluster);
    redisContext *c = test_redis_connect(&cr);
    long long s1 = test_cmd_int(c, "CLUSTER KEYSLOT %s", "app:{eu}:orders");
    long long s2 = test_cmd_int(c, "CLUSTER KEYSLOT %s", state);
    cr_assert_eq(s1, s2);
    cr_assert_eq(stx_key_name(meta, 8, "orders", "g", "meta"), STX_ELIMIT);
    cr_assert_eq(stx_key_name(meta, sizeof meta, "orders", "g", "bogus"), STX_EINVAL);
    redisFree(c);
    test_redis_stop(&cr);
}

Test(processor, batch_delay_lets_a_partial_batch_gather)
{
    redisContext *c = test_redis_connect(&R);
    produce(c, "bd", 1, 1);
    struct counter_ctx ctx = {NULL, -1, 0};
    stx_processor *p = make("bd", "g", &ctx, NULL, "50");
    char err[128];
    cr_assert_eq(stx_config_set(NULL, "batch_delay_ms", "1", err, sizeof err), STX_EINVAL);
    stx_processor_free(p);
    stx_config *conf = stx_config_new();
    stx_config_set(conf, "url", R.url, NULL, 0);
    stx_config_set(conf, "stream", "bd", NULL, 0);
    stx_config_set(conf, "group", "g", NULL, 0);
    stx_config_set(conf, "batch_size", "50", NULL, 0);
    cr_assert_eq(stx_config_set(conf, "batch_delay_ms", "150", err, sizeof err), STX_OK, "%s", err);
    stx_config_set_handler(conf, count_handler, &ctx);
    cr_assert_eq(stx_processor_new(&p, conf), STX_OK);
    stx_config_free(conf);
    /* The first read is partial, so the next one waits 150 ms after it. */
    int64_t t0 = test_now_ms();
    cr_assert_eq(stx_processor_poll(p), 1);
    produce(c, "bd", 20, 1);
    cr_assert_eq(stx_processor_poll(p), 20);
    cr_assert_geq(test_now_ms() - t0, 150);
    stx_stats st;
    stx_processor_stats(p, &st);
    cr_assert_eq(st.commits, 2);
    cr_assert_gt(st.commit_us_p50, 0);
    cr_assert_geq(st.commit_us_p99, st.commit_us_p50);
    cr_assert_geq(st.commit_us_max, st.commit_us_p99);
    stx_processor_free(p);
    redisFree(c);
}

static stx_processor *named(const char *stream, const char *consumer, struct counter_ctx *ctx)
{
    stx_config *c = stx_config_new();
    stx_config_set(c, "url", R.url, NULL, 0);
    stx_config_set(c, "stream", stream, NULL, 0);
    stx_config_set(c, "group", "g", NULL, 0);
    stx_config_set(c, "consumer", consumer, NULL, 0);
    stx_config_set(c, "block_ms", "50", NULL, 0);
    stx_config_set(c, "log_level", "error", NULL, 0);
    stx_config_set_handler(c, count_handler, ctx);
    stx_processor *p;
    cr_assert_eq(stx_processor_new(&p, c), STX_OK);
    stx_config_free(c);
    return p;
}

Test(processor, entries_a_fenced_processor_took_are_claimed_before_the_offset_passes_them)
{
    redisContext *c = test_redis_connect(&R);
    struct counter_ctx ca = {NULL, -1, 0}, cb = {NULL, -1, 0};
    produce(c, "zr", 10, 1);
    stx_processor *a = named("zr", "A", &ca);
    cr_assert_eq(drain(a), 10);
    /* B takes over; A, not knowing, reads five new entries into its own
     * pending list, handles them, and is refused at its commit. */
    stx_processor *b = named("zr", "B", &cb);
    cr_assert_eq(stx_processor_start(b), STX_OK);
    produce(c, "zr", 5, 1);
    cr_assert_eq(stx_processor_poll(a), STX_EFENCED);
    cr_assert(strstr(stx_processor_errmsg(a), "commit refused"), "%s", stx_processor_errmsg(a));
    cr_assert_eq(pending_count(c, "zr", "g"), 5);
    /* B reads the next five; committing them would carry the offset past
     * A's five, so B claims those first and applies all ten once. */
    produce(c, "zr", 5, 1);
    cr_assert_eq(drain(b), 10);
    cr_assert_eq(redis_state_i64(c, "zr", "g", "total"), 20);
    cr_assert_eq(pending_count(c, "zr", "g"), 0);
    char last[64];
    last_id(c, "zr", last, sizeof last);
    cr_assert_str_eq(stx_processor_offset(b), last);
    stx_processor_free(a);
    stx_processor_free(b);
    redisFree(c);
}

/* A consumer name Redis refuses as a client name ("a b": CLIENT SETNAME
 * takes no spaces) still starts; the connection's name is derived from it
 * ('_' for the bytes Redis refuses), so it can still be found. */
Test(processor, consumer_name_with_a_space_starts)
{
    redisContext *rc = test_redis_connect(&R);
    for (int i = 0; i < 3; i++) freeReplyObject(test_cmd(rc, "XADD sp * k %d", i));
    stx_config *c = stx_config_new();
    char err[256];
    cr_assert_eq(stx_config_set(c, "url", R.url, err, sizeof err), STX_OK, "%s", err);
    cr_assert_eq(stx_config_set(c, "stream", "sp", err, sizeof err), STX_OK);
    cr_assert_eq(stx_config_set(c, "group", "g", err, sizeof err), STX_OK);
    cr_assert_eq(stx_config_set(c, "consumer", "a b", err, sizeof err), STX_OK);
    cr_assert_eq(stx_config_set(c, "block_ms", "50", err, sizeof err), STX_OK);
    cr_assert_eq(stx_config_set(c, "log_level", "error", err, sizeof err), STX_OK);
    struct counter_ctx ctx = {.fail_on = -1};
    stx_config_set_handler(c, count_handler, &ctx);
    stx_processor *p;
    cr_assert_eq(stx_processor_new(&p, c), STX_OK);
    stx_config_free(c);
    cr_assert_eq(stx_processor_start(p), STX_OK, "%s", stx_processor_errmsg(p));
    cr_assert_eq(drain(p), 3);
    /* The group knows the consumer by its own name. */
    redisReply *r = test_cmd(rc, "XINFO CONSUMERS sp g");
    cr_assert_eq(r->elements, 1);
    cr_assert_str_eq(r->element[0]->element[1]->str, "a b");
    freeReplyObject(r);
    r = test_cmd(rc, "CLIENT LIST");
    cr_assert(strstr(r->str, " name=stx:a_b "), "%s", r->str);
    freeReplyObject(r);
    stx_processor_free(p);
    redisFree(rc);
}

/* A FLUSHALL while the processor waits in its blocking read cancels the
 * read (UNBLOCKED): a retriable error, not an unexpected Redis error. */
/* Reachable in the forked child too (valgrind checks its leaks at _exit). */
static void *volatile kept_across_fork[2];

Test(processor, cancelled_blocking_read_is_retriable)
{
    redisContext *rc = test_redis_connect(&R);
    kept_across_fork[0] = rc;
    freeReplyObject(test_cmd(rc, "XADD ub * k 1"));
    struct counter_ctx ctx = {.fail_on = -1};
    stx_processor *p = make("ub", "g", &ctx, NULL, NULL);
    cr_assert_eq(drain(p), 1);
    stx_processor_free(p);
    /* A long wait, cut short by a FLUSHALL from another process. */
    stx_config *c = stx_config_new();
    stx_config_set(c, "url", R.url, NULL, 0);
    stx_config_set(c, "stream", "ub", NULL, 0);
    stx_config_set(c, "group", "g", NULL, 0);
    stx_config_set(c, "consumer", "c1", NULL, 0);
    stx_config_set(c, "block_ms", "5000", NULL, 0);
    stx_config_set(c, "log_level", "error", NULL, 0);
    stx_config_set_handler(c, count_handler, &ctx);
    cr_assert_eq(stx_processor_new(&p, c), STX_OK);
    stx_config_free(c);
    cr_assert_eq(stx_processor_start(p), STX_OK, "%s", stx_processor_errmsg(p));
    kept_across_fork[1] = p;
    fflush(NULL);
    pid_t pid = fork();
    cr_assert(pid >= 0);
    if (pid == 0) {
        redisContext *k = redisConnect("127.0.0.1", R.port);
        /* Wait until the processor's read is blocked, then flush. */
        for (int i = 0; i < 200; i++) {
            redisReply *b = redisCommand(k, "INFO clients");
            int blocked = b && b->str && strstr(b->str, "blocked_clients:1");
            if (b) freeReplyObject(b);
            if (blocked) break;
            struct timespec ts = {0, 10000000};
            nanosleep(&ts, NULL);
        }
        redisReply *f = redisCommand(k, "FLUSHALL");
        if (f) freeReplyObject(f);
        redisFree(k);
        _exit(0);
    }
    int64_t t0 = test_now_ms();
    int n = stx_processor_poll(p);
    int status;
    waitpid(pid, &status, 0);
    cr_assert_lt(test_now_ms() - t0, 4000, "the read was not cancelled");
    cr_assert_eq(n, STX_EREDIS_REFUSED, "%s: %s", stx_strerror(n), stx_processor_errmsg(p));
    cr_assert_eq(stx_error_class_of(n), STX_CLASS_RETRIABLE);
    cr_assert(strstr(stx_processor_errmsg(p), "blocking read was cancelled") &&
                  strstr(stx_processor_errmsg(p), "UNBLOCKED"),
              "%s", stx_processor_errmsg(p));
    stx_processor_free(p);
    redisFree(rc);
}

/* group_start_id in the common position grammar: after an id, or with the
 * entries from a time on, resolved when the group is created. */
Test(processor, group_start_id_takes_ids_and_times)
{
    redisContext *c = test_redis_connect(&R);
    for (int i = 1; i <= 3; i++) freeReplyObject(test_cmd(c, "XADD gs %d000-0 k 1", i));
    static const struct { const char *start; int expect; } cases[] = {
        {"2000-0", 1}, {"@2000", 2}, {"beginning", 3}, {"end", 0}};
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        char group[16];
        snprintf(group, sizeof group, "g%zu", i);
        stx_config *conf = stx_config_new();
        char err[256];
        stx_config_set(conf, "url", R.url, NULL, 0);
        stx_config_set(conf, "stream", "gs", NULL, 0);
        stx_config_set(conf, "group", group, NULL, 0);
        stx_config_set(conf, "block_ms", "20", NULL, 0);
        stx_config_set(conf, "log_level", "error", NULL, 0);
        cr_assert_eq(stx_config_set(conf, "group_start_id", cases[i].start, err, sizeof err), STX_OK,
                     "%s", err);
        struct counter_ctx ctx = {NULL, -1, 0};
        stx_config_set_handler(conf, count_handler, &ctx);
        stx_processor *p;
        cr_assert_eq(stx_processor_new(&p, conf), STX_OK);
        stx_config_free(conf);
        cr_assert_eq(drain(p), cases[i].expect, "group_start_id %s", cases[i].start);
        stx_processor_free(p);
    }
    redisFree(c);
}

/* Publishes reach their streams byte for byte, whatever their size (each
 * msgpack string length class: 0, 31, 32, 255, 256, 65535, 65536 and
 * more), and a batch whose publishes need more than one block of
 * commit.lua's arguments commits them all, in order. */
static const size_t publish_sizes[] = {0, 31, 32, 255, 256, 65535, 65543};
#define NSIZES (sizeof publish_sizes / sizeof publish_sizes[0])
#define WIDE_PAIRS 2000

static unsigned char publish_byte(size_t i, size_t j) { return (unsigned char)((j * 31 + i * 7) % 256); }

static int publishing_handler(const stx_msg *msg, stx_txn *txn, void *ud)
{
    (void)ud;
    size_t klen;
    const char *k = stx_msg_get(msg, "k", &klen);
    size_t i = (size_t)atoi(k);
    size_t len = publish_sizes[i];
    char *v = malloc(len + 1);
    for (size_t j = 0; j < len; j++) v[j] = (char)publish_byte(i, j);
    const char *names[] = {"k", "bin"};
    size_t name_lens[] = {1, 3};
    const char *values[] = {k, v};
    size_t value_lens[] = {klen, len};
    int rc = stx_txn_publish(txn, "pb-out", 2, names, name_lens, values, value_lens);
    free(v);
    if (rc != STX_OK || (i != 2 && i != 5)) return rc;
    /* two wide publishes: 2 x (3 + 2 x 2001) values do not fit one block */
    static char fbuf[WIDE_PAIRS][8], vbuf[WIDE_PAIRS][8];
    static const char *wn[WIDE_PAIRS], *wv[WIDE_PAIRS];
    size_t wnl[WIDE_PAIRS], wvl[WIDE_PAIRS];
    for (size_t j = 0; j < WIDE_PAIRS; j++) {
        snprintf(fbuf[j], sizeof fbuf[j], "f%zu", j);
        snprintf(vbuf[j], sizeof vbuf[j], "%zu", j * i);
        wn[j] = fbuf[j];
        wv[j] = vbuf[j];
        wnl[j] = strlen(fbuf[j]);
        wvl[j] = strlen(vbuf[j]);
    }
    return stx_txn_publish(txn, "pb-wide", WIDE_PAIRS, wn, wnl, wv, wvl);
}

Test(processor, publishes_are_byte_exact_across_blocks)
{
    redisContext *c = test_redis_connect(&R);
    for (size_t i = 0; i < NSIZES; i++) freeReplyObject(test_cmd(c, "XADD pb * k %d", (int)i));
    stx_config *conf = stx_config_new();
    char err[256];
    cr_assert_eq(stx_config_set(conf, "url", R.url, err, sizeof err), STX_OK, "%s", err);
    stx_config_set(conf, "stream", "pb", NULL, 0);
    stx_config_set(conf, "group", "g", NULL, 0);
    stx_config_set(conf, "block_ms", "20", NULL, 0);
    stx_config_set(conf, "log_level", "error", NULL, 0);
    stx_config_set(conf, "batch_size", "16", NULL, 0);
    cr_assert_eq(stx_config_set(conf, "max_fields", "2500", err, sizeof err), STX_OK, "%s", err);
    stx_config_set_handler(conf, publishing_handler, NULL);
    stx_processor *p;
    cr_assert_eq(stx_processor_new(&p, conf), STX_OK, "%s", stx_processor_errmsg(p));
    stx_config_free(conf);
    cr_assert_eq(drain(p), (int)NSIZES);
    stx_stats st;
    stx_processor_stats(p, &st);
    cr_assert_eq(st.commits, 1, "one batch, one commit");

    redisReply *out = test_cmd(c, "XRANGE pb-out - +");
    cr_assert_eq(out->elements, NSIZES);
    for (size_t i = 0; i < NSIZES; i++) {
        const redisReply *f = out->element[i]->element[1];
        const redisReply *bin = NULL;
        for (size_t j = 0; j + 1 < f->elements; j += 2)
            if (strcmp(f->element[j]->str, "bin") == 0) bin = f->element[j + 1];
        cr_assert_not_null(bin);
        cr_assert_eq(bin->len, publish_sizes[i], "entry %zu: %zu bytes", i, (size_t)bin->len);
        for (size_t j = 0; j < bin->len; j++)
            cr_assert_eq((unsigned char)bin->str[j], publish_byte(i, j), "entry %zu byte %zu", i, j);
    }
    freeReplyObject(out);
    redisReply *wide = test_cmd(c, "XRANGE pb-wide - +");
    cr_assert_eq(wide->elements, 2);
    for (size_t w = 0; w < 2; w++) {
        const redisReply *f = wide->element[w]->element[1];
        /* the pairs, then the envelope's causation_id */
        cr_assert_eq(f->elements, 2 * (WIDE_PAIRS + 1));
        size_t i = w == 0 ? 2 : 5;
        for (size_t j = 0; j < WIDE_PAIRS; j++) {
            char name[8], value[8];
            snprintf(name, sizeof name, "f%zu", j);
            snprintf(value, sizeof value, "%zu", j * i);
            cr_assert_str_eq(f->element[2 * j]->str, name);
            cr_assert_str_eq(f->element[2 * j + 1]->str, value);
        }
    }
    freeReplyObject(wide);
    stx_processor_free(p);
    redisFree(c);
}
