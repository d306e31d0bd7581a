/* Fault suite: each scenario injects a fault while the processor runs and
 * then checks the exact outcome (stock, alerts once per crossing, offset,
 * dead letters, nothing pending).  STX_FAULT_LONG=1 runs the long mode. */
#include <criterion/criterion.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <unistd.h>

#include "streamtx.h"
#include "workload.h"

TestSuite(faults, .timeout = 3000);

static int long_mode(void)
{
    const char *v = getenv("STX_FAULT_LONG");
    return v && *v && strcmp(v, "0") != 0;
}

static void sigkill_and_reap(pid_t pid)
{
    kill(pid, SIGKILL);
    int status;
    cr_assert_eq(waitpid(pid, &status, 0), pid);
}

/* Stop a running processor with SIGTERM and check it exits cleanly. */
static void stop_cleanly(pid_t pid)
{
    cr_assert_eq(kill(pid, SIGTERM), 0);
    int status;
    cr_assert_eq(waitpid(pid, &status, 0), pid);
    cr_assert(WIFEXITED(status) && WEXITSTATUS(status) == 0, "processor status %d", status);
}

/* Run processors until one exits 0 when idle; each crash (the poison
 * entry) just means another restart, as a supervisor would do. */
static void finish(const workload *w)
{
    for (int runs = 0; runs < 40; runs++) {
        pid_t pid = wl_spawn(w, 1);
        int status;
        cr_assert_eq(waitpid(pid, &status, 0), pid);
        if (WIFEXITED(status)) {
            cr_assert_eq(WEXITSTATUS(status), 0, "final run exited %d", WEXITSTATUS(status));
            return;
        }
        cr_assert(WIFSIGNALED(status) && WTERMSIG(status) == SIGSEGV, "status %d", status);
    }
    cr_assert_fail("the processor never finished");
}

/* 1. The processor is SIGKILLed at random moments and restarted. */
static void kill_loop(test_redis *r, int kills, long messages, int with_poison, long max_del)
{
    redisContext *c = test_redis_connect(r);
    workload w;
    wl_init(&w, r, "kl");
    w.max_deliveries = max_del;
    long chunk = messages / kills;
    for (int k = 0; k < kills; k++) {
        /* Fresh work before each kill, so kills land in reads, handlers and
         * commits rather than in idle waits. */
        wl_produce(&w, c, k == kills - 1 ? messages - w.produced : chunk, with_poison && k == kills / 2);
        pid_t pid = wl_spawn(&w, 0);
        wl_sleep_ms(5 + (long)(wl_rand(&w.seed) % 60));
        sigkill_and_reap(pid);
    }
    finish(&w);
    wl_check(&w, c, 0);
    fprintf(stderr, "kill loop: %d kills, %ld entries, duplicates 0, lost 0\n", kills, w.produced);
    redisFree(c);
}

Test(faults, processor_sigkill_loop)
{
    test_redis r;
    test_redis_start(&r, 0, NULL);
    if (long_mode()) kill_loop(&r, 500, 200000, 0, 0);
    else kill_loop(&r, 50, 20000, 0, 0);
    test_redis_stop(&r);
}

/* 2. redis-server itself is SIGKILLed and restarted (AOF, fsync always). */
Test(faults, redis_server_killed_and_restarted)
{
    test_redis r;
    test_redis_start(&r, 1, NULL);
    redisContext *c = test_redis_connect(&r);
    workload w;
    wl_init(&w, &r, "rk");
    wl_produce(&w, c, 2000, 0);
    pid_t pid = wl_spawn(&w, 0);
    int restarts = long_mode() ? 20 : 5;
    for (int k = 0; k < restarts; k++) {
        wl_sleep_ms(50 + (long)(wl_rand(&w.seed) % 200));
        redisFree(c);
        test_redis_kill(&r);
        wl_sleep_ms(100 + (long)(wl_rand(&w.seed) % 300)); /* the processor finds nobody */
        test_redis_restart(&r);
        c = test_redis_connect(&r);
        wl_produce(&w, c, 2000, 0);
    }
    wl_wait_caught_up(&w, c, 60000);
    stop_cleanly(pid);
    wl_check(&w, c, 0);
    redisFree(c);
    test_redis_stop(&r);
}

/* Kill every connection named stx:* (the processor's). */
static int kill_processor_connections(redisContext *c)
{
    redisReply *r = test_cmd(c, "CLIENT LIST");
    int killed = 0;
    for (char *line = r->str; line && *line;) {
        char *next = strchr(line, '\n');
        if (next) *next++ = '\0';
        char *id = strstr(line, "id="), *name = strstr(line, " name=stx:");
        if (id && name) {
            redisReply *k = redisCommand(c, "CLIENT KILL ID %lld", atoll(id + 3));
            if (k) freeReplyObject(k);
            killed++;
        }
        line = next;
    }
    freeReplyObject(r);
    return killed;
}

/* 3. The processor's connection is killed at random moments, mid-commit
 * among them; lost replies are resolved from the stored offset. */
Test(faults, connections_killed_mid_commit)
{
    test_redis r;
    test_redis_start(&r, 0, NULL);
    redisContext *c = test_redis_connect(&r);
    workload w;
    wl_init(&w, &r, "ck");
    w.batch_size = 8;
    pid_t pid = wl_spawn(&w, 0);
    int killed = 0, rounds = long_mode() ? 400 : 60;
    /* A kill finds no connection while the processor waits out its retry
     * delay after the last one: go on (four times as many rounds at most)
     * until at least half as many kills as rounds have hit. */
    for (int k = 0; k < 4 * rounds && (k < rounds || killed < rounds / 2); k++) {
        wl_produce(&w, c, 300, 0);
        wl_sleep_ms(1 + (long)(wl_rand(&w.seed) % 25));
        killed += kill_processor_connections(c);
    }
    cr_assert_geq(killed, rounds / 2, "only %d connections killed", killed);
    wl_wait_caught_up(&w, c, 60000);
    stop_cleanly(pid);
    wl_check(&w, c, 0);
    redisFree(c);
    test_redis_stop(&r);
}

/* 5. An entry that crashes the handler every time ends in the dead-letter
 * stream after exactly max_deliveries counted attempts; everything else
 * goes through.  Counted are the crashes while it was alone in hand: before
 * that, each crash halves the recovery batch around it (64, 32, ..., 1), so
 * the handler is entered once in the batch where it first crashed, once
 * per halving and max_deliveries times alone. */
Test(faults, poison_entry_is_dead_lettered_after_max_deliveries)
{
    test_redis r;
    test_redis_start(&r, 0, NULL);
    redisContext *c = test_redis_connect(&r);
    workload w;
    wl_init(&w, &r, "po");
    w.max_deliveries = 3;
    wl_produce(&w, c, 3000, 1);
    finish(&w);
    long long entered = wl_poison_attempts(&w, c);
    cr_assert(entered >= 3 && entered <= 1 + 7 + 3, /* 7 batch sizes from 64 to 1 */
              "handler entered %lld times for the poison entry", entered);
    wl_check(&w, c, 3);
    redisFree(c);
    test_redis_stop(&r);
}

/* 6. Everything at once: processor kills, connection kills, a poison
 * entry and a redis-server restart, then the checker. */
Test(faults, mixed_storm)
{
    test_redis r;
    test_redis_start(&r, 1, NULL);
    redisContext *c = test_redis_connect(&r);
    workload w;
    wl_init(&w, &r, "mx");
    w.max_deliveries = 4;
    int rounds = long_mode() ? 200 : 30;
    for (int k = 0; k < rounds; k++) {
        wl_produce(&w, c, 400, k == rounds / 3);
        pid_t pid = wl_spawn(&w, 0);
        wl_sleep_ms(5 + (long)(wl_rand(&w.seed) % 40));
        if (k % 3 == 0) kill_processor_connections(c);
        wl_sleep_ms((long)(wl_rand(&w.seed) % 30));
        if (k == rounds / 2) {
            redisFree(c);
            test_redis_kill(&r);
            test_redis_restart(&r);
            c = test_redis_connect(&r);
        }
        sigkill_and_reap(pid);
    }
    finish(&w);
    /* Kills may land inside the poison handler too, so its attempts are
     * not exact here; it is still the only dead letter. */
    wl_check(&w, c, 0);
    redisFree(c);
    test_redis_stop(&r);
}
