/* Exactly-once when the network misbehaves: the processor talks to Redis
 * through the fault-injecting proxy (tests/proxy.c), which delays, holds,
 * cuts and blackholes its traffic.  Only the public API is used.
 *
 * The chaos soak runs STX_CHAOS_ENTRIES entries (default 20,000, about
 * 30 s).  Long mode, next to STX_FAULT_LONG for test_faults:
 *     STX_CHAOS_ENTRIES=200000 build/test_netfaults --filter 'netfaults/chaos*' --jobs 1
 */
#include <criterion/criterion.h>
#include <inttypes.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>

#include "harness.h"
#include "proxy.h"
#include "scripts.h"
#include "streamtx.h"
#include "workload.h"

static test_redis R;
static proxy PX;

static void setup(void)
{
    test_redis_start(&R, 0, NULL);
    proxy_start(&PX, R.port);
}

static void teardown(void)
{
    proxy_stop(&PX);
    test_redis_stop(&R);
}

TestSuite(netfaults, .init = setup, .fini = teardown, .timeout = 600);

/* ---- a counter processor ------------------------------------------------ */

static int count_user(const stx_msg *msg, stx_txn *txn, void *ud)
{
    (void)msg;
    (void)ud;
    return stx_txn_incr(txn, "user", 4, 1, NULL);
}

/* kv: NULL-terminated key, value pairs of further settings. */
static stx_processor *counter(const char *url, const char *stream, const char *const *kv)
{
    stx_config *c = stx_config_new();
    char err[256];
    cr_assert_eq(stx_config_set(c, "url", url, err, sizeof err), STX_OK, "%s", err);
    cr_assert_eq(stx_config_set(c, "stream", stream, err, sizeof err), STX_OK, "%s", err);
    cr_assert_eq(stx_config_set(c, "group", "g", err, sizeof err), STX_OK, "%s", err);
    cr_assert_eq(stx_config_set(c, "consumer", "c1", err, sizeof err), STX_OK, "%s", err);
    cr_assert_eq(stx_config_set(c, "block_ms", "50", err, sizeof err), STX_OK, "%s", err);
    cr_assert_eq(stx_config_set(c, "log_level", "error", err, sizeof err), STX_OK, "%s", err);
    for (; kv && kv[0]; kv += 2)
        cr_assert_eq(stx_config_set(c, kv[0], kv[1], err, sizeof err), STX_OK, "%s", err);
    stx_config_set_handler(c, count_user, NULL);
    stx_processor *p;
    cr_assert_eq(stx_processor_new(&p, c), STX_OK, "%s", p ? stx_processor_errmsg(p) : "");
    stx_config_free(c);
    return p;
}

/* Poll until a poll finds nothing, retrying connection errors and timeouts
 * as stx_processor_run() does.  Returns the number of retriable errors. */
static int poll_until_idle(stx_processor *p)
{
    int errors = 0;
    int64_t deadline = test_now_ms() + 30000;
    for (;;) {
        cr_assert_lt(test_now_ms(), deadline, "the processor never became idle");
        int rc = stx_processor_poll(p);
        if (rc == 0) return errors;
        if (rc > 0) continue;
        cr_assert(rc == STX_ECONN || rc == STX_ETIMEOUT, "poll: %s: %s", stx_strerror(rc),
                  stx_processor_errmsg(p));
        errors++;
    }
}

static void xadd(redisContext *c, const char *stream, int n)
{
    for (int i = 0; i < n; i++) freeReplyObject(test_cmd(c, "XADD %s * k v", stream));
}

/* The counter "user" as Redis holds it (0 when absent). */
static int64_t stored_count(redisContext *c, const char *stream)
{
    char key[256];
    cr_assert_gt(stx_key_name(key, sizeof key, stream, "g", "state"), 0);
    redisReply *r = test_cmd(c, "HGET %s user", key);
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

/* Hole 1: the connection drops while the state loads at start.  The next
 * poll must not go on with an empty or partial state. */
Test(netfaults, cut_while_loading_state_at_start)
{
    char stream[64];
    test_unique("load", stream, sizeof stream);
    redisContext *c = test_redis_connect(&R);
    xadd(c, stream, 5);
    stx_processor *p = counter(R.url, stream, NULL);
    poll_until_idle(p);
    stx_processor_free(p);
    cr_assert_eq(stored_count(c, stream), 5);

    xadd(c, stream, 1);
    int hscan = proxy_rule(&PX, "HSCAN", 0, NULL);
    proxy_cut(&PX, hscan, 1, 0);
    p = counter(PX.url, stream, NULL);
    poll_until_idle(p);
    cr_assert_eq(proxy_stat(&PX, PROXY_CUTS), 1, "the state load was not cut");
    stx_processor_free(p);
    cr_assert_eq(stored_count(c, stream), 6, "counter %" PRId64 " after 6 entries",
                 stored_count(c, stream));
    cr_assert_eq(pending(c, stream), 0);
    redisFree(c);
}

/* Hole 2: a commit whose reply was lost executes after the reconnect read
 * the meta hash.  It must not be counted as "not landed" and done again,
 * nor hide a state that no longer matches Redis.  The first commit is held
 * until 100 ms after the reconnect's first command past the connection
 * set-up (CLIENT SETNAME), which reads where Redis stands; the reconnect's
 * next commands wait until the old commit has run. */
Test(netfaults, lost_commit_executes_after_the_reconnect_read)
{
    char stream[64], sha[41];
    test_unique("late", stream, sizeof stream);
    redisContext *c = test_redis_connect(&R);
    test_script_sha(c, STX_SCRIPT_COMMIT, sha);
    int commit = proxy_rule(&PX, "EVALSHA", 1, sha);
    int next = proxy_rule(&PX, "!CLIENT", 0, NULL);
    proxy_hold(&PX, commit, next, 100);
    xadd(c, stream, 3);
    static const char *const kv[] = {"command_timeout_ms", "1000", "batch_size", "1", NULL};
    stx_processor *p = counter(PX.url, stream, kv);
    int errors = poll_until_idle(p);
    cr_assert_eq(proxy_stat(&PX, PROXY_HOLDS), 1, "no commit was held");
    cr_assert_geq(errors, 1, "the held commit did not time out");
    /* The release comes 100 ms after the reconnect's first command, maybe
     * after the processor went idle: wait for it, then poll to idle again. */
    wl_sleep_ms(300);
    cr_assert_eq(proxy_stat(&PX, PROXY_RELEASES), 1, "the held commit was never released");
    poll_until_idle(p);
    stx_processor_free(p);
    cr_assert_eq(stored_count(c, stream), 3, "counter %" PRId64 " after 3 entries",
                 stored_count(c, stream));
    cr_assert_eq(pending(c, stream), 0);
    redisFree(c);
}

/* ---- network chaos soak ------------------------------------------------- */

#define CHAOS_TIMEOUT_MS 250

struct chaos {
    proxy *px;
    int rules[7];               /* commit, any EVALSHA, XREADGROUP, HMGET, HSCAN, any,
                                   any but CLIENT (a reconnect's first real step) */
    unsigned kinds;             /* bit per fault kind of one_fault() */
    long delays, holds, releases, cuts, byte_cuts, blackholes, restarts;
};

/* STX_CHAOS_FAULTS (e.g. "cut,blackhole") narrows the faults down when a
 * failure needs explaining: delay, hold, cut, blackhole, bytes. */
static unsigned chaos_kinds(void)
{
    static const char *const names[] = {"delay", "hold", "cut", "blackhole", "bytes"};
    const char *v = getenv("STX_CHAOS_FAULTS");
    unsigned m = 0;
    for (unsigned i = 0; i < 5; i++)
        if (!v || strstr(v, names[i])) m |= 1u << i;
    cr_assert(m, "STX_CHAOS_FAULTS names no fault");
    return m;
}

static long rnd(workload *w, long lo, long hi)
{
    return lo + (long)(wl_rand(&w->seed) % (uint64_t)(hi - lo + 1));
}

/* Wait (a bounded while) until the proxy's counter passes before: the
 * processor may be in a retry backoff, and a fault that never hits proves
 * nothing. */
static void wait_stat(proxy *px, int which, long long before)
{
    int64_t deadline = test_now_ms() + 600;
    while (proxy_stat(px, which) <= before && test_now_ms() < deadline) wl_sleep_ms(5);
}

/* One fault for a short while; returns with the proxy clean again except
 * for armed one-shot cuts and holds, which release themselves. */
static void one_fault(struct chaos *ch, workload *w)
{
    proxy *px = ch->px;
    long kind;
    do kind = rnd(w, 0, 4);
    while (!(ch->kinds >> kind & 1));
    switch (kind) {
    case 0:
        proxy_delay(px, rnd(w, 1, 3), 0, 2 * CHAOS_TIMEOUT_MS, wl_rand(&w->seed));
        wl_sleep_ms(rnd(w, 100, 600));
        proxy_delay(px, 0, 0, 0, 0);
        ch->delays++;
        break;
    case 1: {
        /* Mostly a commit.  Released after the next step of another
         * connection (the reconnect), or by us after up to twice the
         * timeout. */
        int rule = ch->rules[rnd(w, 0, 1) ? 0 : rnd(w, 0, 5)];
        long long before = proxy_stat(px, PROXY_HOLDS);
        proxy_hold(px, rule, ch->rules[6], rnd(w, 0, 2 * CHAOS_TIMEOUT_MS));
        ch->holds++;
        wait_stat(px, PROXY_HOLDS, before);
        wl_sleep_ms(rnd(w, 0, 2 * CHAOS_TIMEOUT_MS));
        if (rnd(w, 0, 1)) {
            proxy_release(px);
            ch->releases++;
        }
        break;
    }
    case 2: {
        long long before = proxy_stat(px, PROXY_CUTS);
        proxy_cut(px, ch->rules[rnd(w, 0, 5)], rnd(w, 1, 3), (int)rnd(w, 0, 1));
        ch->cuts++;
        wait_stat(px, PROXY_CUTS, before);
        wl_sleep_ms(rnd(w, 0, 100));
        break;
    }
    case 3:
        proxy_blackhole(px, 1);
        wl_sleep_ms(rnd(w, 50, 2 * CHAOS_TIMEOUT_MS));
        proxy_blackhole(px, 0);
        ch->blackholes++;
        break;
    default: {
        long long before = proxy_stat(px, PROXY_CUTS);
        proxy_cut_bytes(px, (int)rnd(w, 1, 2), rnd(w, 1, 4000));
        ch->byte_cuts++;
        wait_stat(px, PROXY_CUTS, before);
        wl_sleep_ms(rnd(w, 0, 100));
        break;
    }
    }
}

/* A supervisor: a processor that exited (an error it does not retry, or
 * fenced) is started again.  Returns the running pid. */
static pid_t supervise(struct chaos *ch, const workload *w, pid_t pid)
{
    int status;
    pid_t got = waitpid(pid, &status, WNOHANG);
    if (got == 0) return pid;
    cr_assert_eq(got, pid);
    cr_assert(WIFEXITED(status), "processor killed by signal %d", WTERMSIG(status));
    cr_assert(WEXITSTATUS(status) == 1 || WEXITSTATUS(status) == 3, "processor exited %d",
              WEXITSTATUS(status));
    ch->restarts++;
    return wl_spawn(w, 0);
}

static long chaos_entries(void)
{
    const char *v = getenv("STX_CHAOS_ENTRIES");
    long n = v ? atol(v) : 0;
    return n > 0 ? n : 20000;
}

Test(netfaults, chaos_soak)
{
    redisContext *c = test_redis_connect(&R);
    char sha[41], name[64];
    test_script_sha(c, STX_SCRIPT_COMMIT, sha);
    struct chaos ch = {.px = &PX, .kinds = chaos_kinds()};
    ch.rules[0] = proxy_rule(&PX, "EVALSHA", 1, sha);
    ch.rules[1] = proxy_rule(&PX, "EVALSHA", 0, NULL);
    ch.rules[2] = proxy_rule(&PX, "XREADGROUP", 0, NULL);
    ch.rules[3] = proxy_rule(&PX, "HMGET", 0, NULL);
    ch.rules[4] = proxy_rule(&PX, "HSCAN", 0, NULL);
    ch.rules[5] = proxy_rule(&PX, NULL, 0, NULL);
    ch.rules[6] = proxy_rule(&PX, "!CLIENT", 0, NULL);

    workload w;
    wl_init(&w, &R, test_unique("chaos", name, sizeof name));
    w.url = PX.url;
    w.command_timeout_ms = CHAOS_TIMEOUT_MS;
    w.batch_size = 8;
    long total = chaos_entries(), chunk = 200;
    int64_t t0 = test_now_ms();
    pid_t pid = wl_spawn(&w, 0);
    while (w.produced < total) {
        wl_produce(&w, c, total - w.produced < chunk ? total - w.produced : chunk, 0);
        one_fault(&ch, &w);
        pid = supervise(&ch, &w, pid);
    }
    /* Faults off; let the last processor finish, then one that exits when idle. */
    proxy_clear(&PX);
    wl_sleep_ms(200);
    pid = supervise(&ch, &w, pid);
    kill(pid, SIGTERM);
    int status;
    cr_assert_eq(waitpid(pid, &status, 0), pid);
    for (int runs = 0;; runs++) {
        cr_assert_lt(runs, 5, "the processor never finished with the faults off");
        pid = wl_spawn(&w, 1);
        cr_assert_eq(waitpid(pid, &status, 0), pid);
        if (WIFEXITED(status) && WEXITSTATUS(status) == 0) break;
    }
    fprintf(stderr, "network chaos: %ld entries in %.1f s; %ld delays, %ld holds (%ld released "
            "by hand, %lld caught), %ld command cuts, %ld byte cuts (%lld connections cut), "
            "%ld blackholes, %ld processor restarts\n", w.produced,
            (double)(test_now_ms() - t0) / 1000.0, ch.delays, ch.holds, ch.releases,
            proxy_stat(&PX, PROXY_HOLDS), ch.cuts, ch.byte_cuts, proxy_stat(&PX, PROXY_CUTS),
            ch.blackholes, ch.restarts);
    wl_check(&w, c, 0);
    redisFree(c);
}
