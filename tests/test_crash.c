/* The exactly-once guarantees under violence: a processor killed with
 * SIGKILL at random moments, and a paused zombie that resumes after a newer
 * processor took over. */
#include <criterion/criterion.h>
#include <inttypes.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "harness.h"
#include "streamtx.h"

#define SKUS 20
#define THRESHOLD 10
#define INITIAL 100

static test_redis R;

static void setup(void) { test_redis_start(&R, 0, NULL); }
static void teardown(void) { test_redis_stop(&R); }

TestSuite(crash, .init = setup, .fini = teardown, .timeout = 600);

static uint64_t rng_next(uint64_t *s)
{
    *s ^= *s << 13;
    *s ^= *s >> 7;
    *s ^= *s << 17;
    return *s;
}

/* The inventory workload with its exact expected outcome. */
struct expectation {
    int64_t stock[SKUS];
    long crossings;
    int produced;
};

static void produce_sales(redisContext *c, const char *stream, int n, uint64_t *seed,
                          struct expectation *ex)
{
    for (int i = 0; i < n; i++) {
        int sku = (int)(rng_next(seed) % SKUS);
        int restock = rng_next(seed) % 8 == 0;
        int qty = restock ? 10 + (int)(rng_next(seed) % 21) : 1 + (int)(rng_next(seed) % 5);
        redisAppendCommand(c, "XADD %s * type %s sku sku-%02d qty %d", stream,
                           restock ? "restock" : "sale", sku, qty);
        int64_t before = ex->stock[sku];
        ex->stock[sku] += restock ? qty : -qty;
        if (before > THRESHOLD && ex->stock[sku] <= THRESHOLD) ex->crossings++;
    }
    for (int i = 0; i < n; i++) {
        void *r;
        cr_assert_eq(redisGetReply(c, &r), REDIS_OK);
        freeReplyObject(r);
    }
    ex->produced += n;
}

static pid_t spawn_inventory(const char *stream, const char *alerts, const char *snapshot,
                             int exit_when_idle)
{
    pid_t pid = fork();
    cr_assert_neq(pid, -1);
    if (pid == 0) {
        char th[16], in[16];
        snprintf(th, sizeof th, "%d", THRESHOLD);
        snprintf(in, sizeof in, "%d", INITIAL);
        const char *argv[20] = {STX_EXAMPLES_DIR "/inventory", "run", "--url", R.url, "--stream",
                                stream, "--group", "inv", "--alerts", alerts, "--threshold", th,
                                "--initial", in, "--consumer", "inv-1"};
        int n = 16;
        if (snapshot) {
            argv[n++] = "--snapshot";
            argv[n++] = snapshot;
        }
        if (exit_when_idle) argv[n++] = "--exit-when-idle";
        argv[n] = NULL;
        execv(argv[0], (char *const *)argv);
        _exit(127);
    }
    return pid;
}

static void sleep_ms(long ms)
{
    struct timespec ts = {ms / 1000, (ms % 1000) * 1000000L};
    nanosleep(&ts, NULL);
}

/* Check the final state against the expectation, exactly. */
static void check_outcome(redisContext *c, const char *stream, const char *alerts,
                          const struct expectation *ex)
{
    char state[256], meta[256];
    stx_key_name(state, sizeof state, stream, "inv", "state");
    stx_key_name(meta, sizeof meta, stream, "inv", "meta");
    for (int s = 0; s < SKUS; s++) {
        redisReply *r = test_cmd(c, "HGET %s sku-%02d", state, s);
        int64_t v = INITIAL;
        if (r->type == REDIS_REPLY_STRING) cr_assert_eq(stx_mp_read_i64(r->str, r->len, &v), STX_OK);
        freeReplyObject(r);
        cr_assert_eq(v, ex->stock[s], "sku-%02d: stock %" PRId64 ", expected %" PRId64, s, v,
                     ex->stock[s]);
    }
    redisReply *last = test_cmd(c, "XREVRANGE %s + - COUNT 1", stream);
    redisReply *off = test_cmd(c, "HGET %s offset", meta);
    cr_assert_str_eq(off->str, last->element[0]->element[0]->str);
    freeReplyObject(last);
    freeReplyObject(off);

    redisReply *r = test_cmd(c, "XRANGE %s - +", alerts);
    cr_assert_eq((long)r->elements, ex->crossings, "alerts %zu, crossings %ld", r->elements,
                 ex->crossings);
    /* Every alert names its source entry, and no source appears twice. */
    char **seen = calloc(r->elements + 1, sizeof *seen);
    for (size_t i = 0; i < r->elements; i++) {
        redisReply *f = r->element[i]->element[1];
        const char *cause = NULL;
        for (size_t j = 0; j + 1 < f->elements; j += 2)
            if (strcmp(f->element[j]->str, "causation_id") == 0) cause = f->element[j + 1]->str;
        cr_assert(cause, "alert %zu lacks causation_id", i);
        for (size_t k = 0; k < i; k++) cr_assert_str_neq(seen[k], cause, "source %s twice", cause);
        seen[i] = (char *)cause;
    }
    free(seen);
    freeReplyObject(r);
    r = test_cmd(c, "XPENDING %s inv", stream);
    cr_assert_eq(r->element[0]->integer, 0, "%lld entries still pending", r->element[0]->integer);
    freeReplyObject(r);
}

static void crash_loop(const char *stream, const char *alerts, const char *snapshot, int kills,
                       int messages)
{
    redisContext *c = test_redis_connect(&R);
    struct expectation ex;
    for (int s = 0; s < SKUS; s++) ex.stock[s] = INITIAL;
    ex.crossings = 0;
    ex.produced = 0;
    uint64_t seed = 0x9e3779b97f4a7c15ull ^ (uint64_t)getpid();
    int chunk = messages / kills;
    for (int k = 0; k < kills; k++) {
        /* New work arrives while the processor runs, so every kill lands in
         * the middle of reading, handling or committing. */
        produce_sales(c, stream, k == kills - 1 ? messages - ex.produced : chunk, &seed, &ex);
        pid_t pid = spawn_inventory(stream, alerts, snapshot, 0);
        sleep_ms(20 + (long)(rng_next(&seed) % 120));
        cr_assert_eq(kill(pid, SIGKILL), 0);
        int status;
        cr_assert_eq(waitpid(pid, &status, 0), pid);
        cr_assert(WIFSIGNALED(status) && WTERMSIG(status) == SIGKILL,
                  "processor exited on its own (status %d) before kill %d", status, k);
    }
    pid_t pid = spawn_inventory(stream, alerts, snapshot, 1);
    int status;
    cr_assert_eq(waitpid(pid, &status, 0), pid);
    cr_assert(WIFEXITED(status) && WEXITSTATUS(status) == 0, "final run: status %d", status);
    check_outcome(c, stream, alerts, &ex);
    redisFree(c);
}

Test(crash, sigkill_loop_loses_nothing_and_applies_nothing_twice)
{
    crash_loop("sales", "alerts", NULL, 24, 12000);
}

Test(crash, sigkill_loop_with_snapshot)
{
    char dir[256];
    test_tmpdir(dir, sizeof dir);
    crash_loop("sales-s", "alerts-s", dir, 20, 10000);
    test_rmrf(dir);
}

/* ---- zombie ------------------------------------------------------------ */

struct zombie_ctx {
    int handled;
    int stop_at;        /* raise SIGSTOP inside the handler of this message (1-based); 0 never */
};

/* Counts per key, and forwards every entry to "z-out" with its source id. */
static int zombie_handler(const stx_msg *msg, stx_txn *txn, void *ud)
{
    struct zombie_ctx *z = ud;
    size_t klen;
    const char *k = stx_msg_get(msg, "k", &klen);
    int rc = stx_txn_incr(txn, k, klen, 1, NULL);
    if (rc == STX_OK) rc = stx_txn_publishv(txn, "z-out", "k", k, NULL);
    if (++z->handled == z->stop_at) raise(SIGSTOP); /* paused mid-batch, mid-handler */
    return rc;
}

static stx_processor *zombie_processor(struct zombie_ctx *z, const char *consumer)
{
    stx_config *c = stx_config_new();
    stx_config_set(c, "url", R.url, NULL, 0);
    stx_config_set(c, "stream", "z", NULL, 0);
    stx_config_set(c, "group", "g", NULL, 0);
    stx_config_set(c, "consumer", consumer, NULL, 0);
    stx_config_set(c, "batch_size", "16", NULL, 0);
    stx_config_set(c, "block_ms", "50", NULL, 0);
    stx_config_set(c, "log_level", "error", NULL, 0);
    stx_config_set_handler(c, zombie_handler, z);
    stx_processor *p;
    if (stx_processor_new(&p, c) != STX_OK) _exit(2);
    stx_config_free(c);
    return p;
}

Test(crash, paused_zombie_is_fenced_and_writes_nothing)
{
    redisContext *c = test_redis_connect(&R);
    for (int i = 0; i < 2000; i++) redisAppendCommand(c, "XADD z * k k%d", i % 10);
    for (int i = 0; i < 2000; i++) {
        void *r;
        redisGetReply(c, &r);
        freeReplyObject(r);
    }
    pid_t a = fork();
    cr_assert_neq(a, -1);
    if (a == 0) {
        /* Zombie A: stops itself in the middle of a batch (message 300 of
         * the batch 289..304), then, once resumed, finishes the batch and
         * tries to commit it. */
        struct zombie_ctx z = {0, 300};
        stx_processor *p = zombie_processor(&z, "A");
        int rc;
        while ((rc = stx_processor_poll(p)) > 0) {}
        int commit_fenced = rc == STX_EFENCED && strstr(stx_processor_errmsg(p), "commit refused");
        stx_processor_free(p);
        _exit(commit_fenced ? 42 : 10 + (rc < 0 ? -rc : 0));
    }
    int status;
    cr_assert_eq(waitpid(a, &status, WUNTRACED), a);
    cr_assert(WIFSTOPPED(status), "A did not stop (status %d)", status);

    /* B takes over (new epoch) and handles everything, A's pending
     * entries included. */
    struct zombie_ctx zb = {0, 0};
    stx_processor *b = zombie_processor(&zb, "B");
    int total = 0, n;
    while ((n = stx_processor_poll(b)) > 0) total += n;
    cr_assert_eq(n, 0, "B: %s", stx_processor_errmsg(b));
    cr_assert_eq(total, 2000 - 288, "B committed %d", total); /* A committed 18 batches of 16 */

    cr_assert_eq(kill(a, SIGCONT), 0);
    cr_assert_eq(waitpid(a, &status, 0), a);
    cr_assert(WIFEXITED(status) && WEXITSTATUS(status) == 42,
              "A's next commit was not refused as fenced (exit status %d)", WEXITSTATUS(status));

    char state[256];
    stx_key_name(state, sizeof state, "z", "g", "state");
    for (int k = 0; k < 10; k++) {
        redisReply *r = test_cmd(c, "HGET %s k%d", state, k);
        int64_t v;
        cr_assert_eq(stx_mp_read_i64(r->str, r->len, &v), STX_OK);
        cr_assert_eq(v, 200, "k%d = %" PRId64, k, v);
        freeReplyObject(r);
    }
    cr_assert_eq(test_cmd_int(c, "XLEN z-out"), 2000);
    /* One publish per source entry, none twice. */
    redisReply *r = test_cmd(c, "XRANGE z-out - +");
    redisReply *src = test_cmd(c, "XRANGE z - +");
    for (size_t i = 0; i < r->elements; i++) {
        redisReply *f = r->element[i]->element[1];
        cr_assert_str_eq(f->element[2]->str, "causation_id");
        cr_assert_str_eq(f->element[3]->str, src->element[i]->element[0]->str);
    }
    freeReplyObject(r);
    freeReplyObject(src);
    r = test_cmd(c, "XPENDING z g");
    cr_assert_eq(r->element[0]->integer, 0);
    freeReplyObject(r);
    stx_processor_free(b);
    redisFree(c);
}
