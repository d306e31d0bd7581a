/* Overlap: the processor handles batch k+1 while Redis runs the commit of
 * batch k, on top of k's changes, and sends the commit of k+1 before the
 * reply of k's has come.  These tests check that the next batch sees the
 * changes in flight, and that when the commit in flight does not land as
 * sent (its reply is lost, or Redis went back to an older copy under it,
 * or lost its scripts) nothing is applied twice or lost: the commit sent
 * behind it lands only with it, and two commits in doubt are settled
 * together.  The faults
 * are placed while a commit is in flight by the fault-injecting proxy
 * (tests/proxy.c): it holds the commit, the handler of the next batch sees
 * it held and acts, then releases it.  Only the public API is used. */
#include <criterion/criterion.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "harness.h"
#include "proxy.h"
#include "scripts.h"
#include "streamtx.h"

static test_redis R;
static proxy PX;

static void setup(void)
{
    static const char *const debug[] = {"--enable-debug-command", "local", NULL};
    test_redis_start(&R, 0, debug);
    proxy_start(&PX, R.port);
}

static void teardown(void)
{
    proxy_stop(&PX);
    test_redis_stop(&R);
}

TestSuite(overlap, .init = setup, .fini = teardown, .timeout = 300);

/* What the handler does besides counting, from the first call of a poll
 * at or after handler call `at` (the first batch of a poll: the poll goes
 * on with the next batch while its commit is held, where a batch late in a
 * poll may be the last one the poll handles):
 *   FAULT_NONE     nothing;
 *   FAULT_LOSE     hold the commit that follows, and when the next batch is
 *                  handled while it is held, let it run but cut the
 *                  connection at the first byte of its reply;
 *   FAULT_RESTORE  SAVE 400 calls before (a few commits before the held
 *                  one, so the copy is older than what the processor
 *                  knows), then as FAULT_LOSE, but DEBUG RELOAD NOSAVE
 *                  (Redis back at the SAVE) before letting it run;
 *   FAULT_FLUSH    as FAULT_LOSE, but SCRIPT FLUSH before letting it run:
 *                  it and the commit behind it are answered NOSCRIPT;
 *   FAULT_BOTH     as FAULT_LOSE, but delay every reply past the command
 *                  timeout: both the held commit and the one sent behind
 *                  it land, and the processor knows of neither;
 *   FAULT_FIRST    as FAULT_BOTH, but hold the commit sent behind until
 *                  the processor has retaken its epoch on a new
 *                  connection: the first lands, the second is refused.
 * drain() turns the delay off when a poll times out. */
enum { FAULT_NONE, FAULT_LOSE, FAULT_RESTORE, FAULT_FLUSH, FAULT_BOTH, FAULT_FIRST };

struct world {
    int fault;
    long at;
    long calls;
    int poll_start;         /* set before each poll: the next call is the poll's first */
    int armed;              /* the hold is set; waiting to see it catch the commit */
    int done;               /* the fault happened while a commit was in flight */
    int commit_rule, retake_rule;
    redisContext *c;        /* straight to Redis, not through the proxy */
};

/* Count in "n" and publish the count: the published values show which
 * state each entry saw. */
static int count_and_publish(const stx_msg *msg, stx_txn *txn, void *ud)
{
    (void)msg;
    struct world *w = ud;
    w->calls++;
    if (w->fault != FAULT_NONE && !w->done) {
        if (w->fault == FAULT_RESTORE && w->calls == w->at - 400)
            freeReplyObject(test_cmd(w->c, "SAVE"));
        int first = w->poll_start;
        w->poll_start = 0;
        if (!w->armed && first && w->calls >= w->at) {
            proxy_hold(&PX, w->commit_rule, -1, 0);
            w->armed = 1;
        } else if (w->armed && proxy_stat(&PX, PROXY_HELD) == 1) {
            /* This batch is handled while the commit before it waits. */
            if (w->fault == FAULT_LOSE) proxy_cut_bytes(&PX, PROXY_DOWN, 1);
            else if (w->fault == FAULT_FLUSH) freeReplyObject(test_cmd(w->c, "SCRIPT FLUSH"));
            else if (w->fault == FAULT_RESTORE) freeReplyObject(test_cmd(w->c, "DEBUG RELOAD NOSAVE"));
            else proxy_delay(&PX, PROXY_DOWN, 5000, 5000, 1);
            proxy_release(&PX);
            if (w->fault == FAULT_FIRST) proxy_hold(&PX, w->commit_rule, w->retake_rule, 50);
            w->done = 1;
        }
    }
    int64_t n;
    int rc = stx_txn_incr(txn, "n", 1, 1, &n);
    if (rc != STX_OK) return rc;
    char text[24];
    snprintf(text, sizeof text, "%" PRId64, n);
    return stx_txn_publishv(txn, "out", "n", text, NULL);
}

static void quiet(stx_log_level level, const char *line, void *ud)
{
    (void)ud;
    if (getenv("STX_TEST_VERBOSE")) fprintf(stderr, "[%d] %s\n", (int)level, line);
}

static stx_processor *processor(const char *url, struct world *w, const char *overlap)
{
    stx_config *c = stx_config_new();
    char err[256];
    const char *kv[] = {"url", url, "stream", "in", "group", "g", "consumer", "c1",
                        "batch_size", "128", "block_ms", "50", "command_timeout_ms", "3000",
                        "overlap", overlap, NULL};
    for (const char *const *s = kv; s[0]; s += 2)
        cr_assert_eq(stx_config_set(c, s[0], s[1], err, sizeof err), STX_OK, "%s", err);
    stx_config_set_handler(c, count_and_publish, w);
    stx_config_set_log(c, quiet, NULL);
    stx_processor *p;
    cr_assert_eq(stx_processor_new(&p, c), STX_OK, "%s", p ? stx_processor_errmsg(p) : "");
    stx_config_free(c);
    return p;
}

static void produce(redisContext *c, long n)
{
    for (long i = 0; i < n; i += 1000) {
        long k = n - i < 1000 ? n - i : 1000;
        for (long j = 0; j < k; j++) redisAppendCommand(c, "XADD in * k v");
        for (long j = 0; j < k; j++) {
            redisReply *r;
            cr_assert_eq(redisGetReply(c, (void **)&r), REDIS_OK);
            cr_assert_eq(r->type, REDIS_REPLY_STRING);
            freeReplyObject(r);
        }
    }
}

/* Poll until a poll finds nothing.  Connection errors, timeouts and a
 * retry after Redis went back in time are retried, as stx_processor_run()
 * does; returns the sum of what the polls said they committed. */
static long drain(stx_processor *p, struct world *w)
{
    long committed = 0;
    int64_t deadline = test_now_ms() + 60000;
    for (;;) {
        cr_assert_lt(test_now_ms(), deadline, "the processor never became idle");
        w->poll_start = 1;
        int rc = stx_processor_poll(p);
        if (rc == 0) return committed;
        if (rc > 0) {
            committed += rc;
            continue;
        }
        cr_assert(rc == STX_ECONN || rc == STX_ETIMEOUT, "poll: %s: %s", stx_strerror(rc),
                  stx_processor_errmsg(p));
        proxy_delay(&PX, PROXY_DOWN, 0, 0, 0);
    }
}

/* Every entry of "in" applied once, in order: "n" is produced in Redis and
 * in the processor's state, and "out" holds exactly 1..produced in order. */
static void check_exact(redisContext *c, stx_processor *p, long produced)
{
    char key[256];
    cr_assert_gt(stx_key_name(key, sizeof key, "in", "g", "state"), 0);
    redisReply *r = test_cmd(c, "HGET %s n", key);
    int64_t stored = -1, held = -1;
    cr_assert_eq(r->type, REDIS_REPLY_STRING);
    cr_assert_eq(stx_mp_read_i64(r->str, r->len, &stored), STX_OK);
    freeReplyObject(r);
    const void *v;
    size_t len;
    cr_assert_eq(stx_processor_state_get(p, "n", 1, &v, &len), STX_OK);
    cr_assert_eq(stx_mp_read_i64(v, len, &held), STX_OK);
    cr_assert_eq(stored, produced, "Redis holds n = %" PRId64 ", %ld produced", stored, produced);
    cr_assert_eq(held, produced, "the processor holds n = %" PRId64 ", %ld produced", held, produced);
    r = test_cmd(c, "XRANGE out - +");
    cr_assert_eq((long)r->elements, produced, "out holds %zu entries, %ld produced", r->elements,
                 produced);
    for (size_t i = 0; i < r->elements; i++) {
        const redisReply *f = r->element[i]->element[1];
        const char *seen = NULL;
        for (size_t j = 0; j + 1 < f->elements; j += 2)
            if (strcmp(f->element[j]->str, "n") == 0) seen = f->element[j + 1]->str;
        cr_assert_not_null(seen, "out entry %zu has no n", i);
        cr_assert_eq(strtol(seen, NULL, 10), (long)i + 1, "out entry %zu says n = %s", i, seen);
    }
    freeReplyObject(r);
    r = test_cmd(c, "XPENDING in g");
    cr_assert_eq(r->element[0]->integer, 0);
    freeReplyObject(r);
}

static void run_plain(const char *overlap, long n, stx_stats *st)
{
    redisContext *c = test_redis_connect(&R);
    produce(c, n);
    struct world w = {.fault = FAULT_NONE, .c = c};
    stx_processor *p = processor(R.url, &w, overlap);
    cr_assert_eq(stx_processor_start(p), STX_OK, "%s", stx_processor_errmsg(p));
    cr_assert_eq(drain(p, &w), n, "the polls' counts add up to what was committed");
    check_exact(c, p, n);
    stx_processor_stats(p, st);
    cr_assert_eq(st->committed, (uint64_t)n);
    cr_assert_eq(st->handled, (uint64_t)n);
    stx_processor_free(p);
    redisFree(c);
}

Test(overlap, each_batch_sees_the_changes_of_the_commit_in_flight)
{
    stx_stats st;
    run_plain("1", 20000, &st);
    /* 20,000 entries waiting in batches of up to 128: batches are handled
     * while the one before commits (how many depends on the machine's
     * speed: a poll chains them for 10 ms). */
    cr_assert_gt(st.overlapped, 0, "none of %" PRIu64 " batches overlapped", st.commits);
}

Test(overlap, off_handles_one_batch_at_a_time)
{
    stx_stats st;
    run_plain("0", 5000, &st);
    cr_assert_eq(st.overlapped, 0);
}

static void run_fault(int fault)
{
    redisContext *c = test_redis_connect(&R);
    const long n = 20000;
    produce(c, n);
    char sha[41], retake[41];
    test_script_sha(c, STX_SCRIPT_COMMIT, sha);
    test_script_sha(c, STX_SCRIPT_RETAKE, retake);
    struct world w = {.fault = fault, .at = 1000, .c = c};
    w.commit_rule = proxy_rule(&PX, "EVALSHA", 1, sha);
    w.retake_rule = proxy_rule(&PX, "EVALSHA", 1, retake);
    stx_processor *p = processor(PX.url, &w, "1");
    cr_assert_eq(stx_processor_start(p), STX_OK, "%s", stx_processor_errmsg(p));
    drain(p, &w);
    cr_assert(w.done, "the fault never met a commit in flight");
    proxy_clear(&PX);
    check_exact(c, p, n);
    stx_stats st;
    stx_processor_stats(p, &st);
    if (fault == FAULT_LOSE || fault == FAULT_BOTH || fault == FAULT_FIRST)
        cr_assert_geq(st.reconnects, 1);
    if (fault == FAULT_RESTORE)
        cr_assert_geq(st.redis_loads, 2, "the state was not loaded again after the restore");
    if (fault == FAULT_FLUSH) cr_assert_geq(st.script_reloads, 1);
    if (fault == FAULT_BOTH || fault == FAULT_FIRST)
        cr_assert_eq(st.redis_loads, 1, "settled from memory, the state needs no reload");
    if (fault == FAULT_BOTH) {
        /* Both landed: nothing was handled twice. */
        cr_assert_eq(w.calls, n);
    } else if (fault != FAULT_LOSE) {
        /* Whatever did not land as sent was handled again (a lost reply:
         * the commit behind it may have landed too, or not). */
        cr_assert_gt(w.calls, n);
    }
    stx_processor_free(p);
    redisFree(c);
}

Test(overlap, a_reply_lost_while_the_next_batch_is_handled_applies_each_entry_once)
{
    run_fault(FAULT_LOSE);
}

Test(overlap, redis_back_at_an_older_copy_under_a_commit_in_flight_applies_each_entry_once)
{
    run_fault(FAULT_RESTORE);
}

Test(overlap, noscript_under_two_commits_applies_each_entry_once)
{
    run_fault(FAULT_FLUSH);
}

Test(overlap, two_commits_in_doubt_that_both_landed_are_applied_once)
{
    run_fault(FAULT_BOTH);
}

Test(overlap, two_commits_in_doubt_of_which_the_first_landed_apply_each_entry_once)
{
    run_fault(FAULT_FIRST);
}
