/* Live processor stats (the heartbeat, stx top, stx info) and logs that
 * tell each event once at the right level, against a real redis-server;
 * stx is run as a real program. */
#include <criterion/criterion.h>
#include <errno.h>
#include <fcntl.h>
#include <pthread.h>
#include <signal.h>
#include <stdarg.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "harness.h"
#include "streamtx.h"

#ifndef STX_CLI_PATH
#define STX_CLI_PATH STX_EXAMPLES_DIR "/stx"
#endif

TestSuite(top, .timeout = 120);

/* ---- running stx (as tests/test_cli.c) ---------------------------------- */

typedef struct run {
    int code;
    char *out, *err;
} run;

static char *slurp(int fd)
{
    size_t cap = 4096, len = 0;
    char *buf = malloc(cap);
    cr_assert(buf);
    lseek(fd, 0, SEEK_SET);
    for (;;) {
        if (len + 1 == cap) {
            cap *= 2;
            cr_assert(buf = realloc(buf, cap));
        }
        ssize_t n = read(fd, buf + len, cap - len - 1);
        if (n < 0 && errno == EINTR)
            continue;
        cr_assert(n >= 0);
        if (n == 0)
            break;
        len += (size_t)n;
    }
    buf[len] = '\0';
    return buf;
}

static int temp_fd(void)
{
    char path[] = "/tmp/stx-top-XXXXXX";
    int fd = mkstemp(path);
    cr_assert(fd >= 0);
    unlink(path);
    return fd;
}

/* Run stx --url URL ARGS... (NULL-terminated). */
static void stx(run *r, const char *url, ...)
{
    const char *argv[32] = {STX_CLI_PATH, "--url", url};
    size_t n = 3;
    va_list ap;
    va_start(ap, url);
    for (const char *a = va_arg(ap, const char *); a; a = va_arg(ap, const char *)) {
        cr_assert(n < 31);
        argv[n++] = a;
    }
    va_end(ap);
    argv[n] = NULL;
    int out = temp_fd(), err = temp_fd();
    fflush(NULL);
    pid_t pid = fork();
    cr_assert(pid >= 0);
    if (pid == 0) {
        int in = open("/dev/null", O_RDONLY);
        dup2(in, 0);
        dup2(out, 1);
        dup2(err, 2);
        execv(argv[0], (char *const *)argv);
        _exit(127);
    }
    int status;
    cr_assert_eq(waitpid(pid, &status, 0), pid);
    r->code = WIFEXITED(status) ? WEXITSTATUS(status) : 128 + WTERMSIG(status);
    r->out = slurp(out);
    r->err = slurp(err);
    close(out);
    close(err);
    cr_assert(!strstr(r->err, "Sanitizer") && !strstr(r->err, "runtime error"), "%s", r->err);
}

static void run_free(run *r)
{
    free(r->out);
    free(r->err);
}

/* The number after "key": in s (the first occurrence after from). */
static double json_num(const char *s, const char *key)
{
    char pat[64];
    snprintf(pat, sizeof pat, "\"%s\":", key);
    const char *at = strstr(s, pat);
    cr_assert(at, "no %s in %s", key, s);
    return strtod(at + strlen(pat), NULL);
}

/* ---- a processor the test drives ---------------------------------------- */

typedef struct logbuf {
    char lines[16384];
    size_t len;
} logbuf;

static void capture(stx_log_level level, const char *line, void *ud)
{
    static const char *const names[] = {"DEBUG", "INFO", "WARN", "ERROR"};
    logbuf *b = ud;
    int n = snprintf(b->lines + b->len, sizeof b->lines - b->len, "%s %s\n", names[level], line);
    if (n > 0 && b->len + (size_t)n < sizeof b->lines)
        b->len += (size_t)n;
}

static int count_of(const char *s, const char *needle)
{
    int n = 0;
    for (const char *p = strstr(s, needle); p; p = strstr(p + 1, needle))
        n++;
    return n;
}

typedef struct ctx {
    stx_processor *p;
    const char *fail_key;       /* entries with k = this fail */
    int verdict;                /* ... with this verdict */
    const char *stop_key;       /* stop the processor after handling this one */
    atomic_int handled;
} ctx;

static int handler(const stx_msg *msg, stx_txn *txn, void *ud)
{
    ctx *c = ud;
    const char *k = stx_msg_get(msg, "k", NULL);
    if (c->stop_key && k && strcmp(k, c->stop_key) == 0)
        stx_processor_stop(c->p);
    if (c->fail_key && k && strcmp(k, c->fail_key) == 0) {
        stx_txn_fail(txn, "refusing %s", k);
        return c->verdict;
    }
    atomic_fetch_add(&c->handled, 1);
    return stx_txn_incr(txn, "n", 1, 1, NULL);
}

static stx_processor *new_processor(const char *url, const char *stream, ctx *c, logbuf *log,
                                    const char *const *kv)
{
    stx_config *conf = stx_config_new();
    char err[256];
    cr_assert_eq(stx_config_set(conf, "url", url, err, sizeof err), STX_OK, "%s", err);
    cr_assert_eq(stx_config_set(conf, "stream", stream, err, sizeof err), STX_OK);
    cr_assert_eq(stx_config_set(conf, "group", "g", err, sizeof err), STX_OK);
    cr_assert_eq(stx_config_set(conf, "consumer", "c1", err, sizeof err), STX_OK);
    cr_assert_eq(stx_config_set(conf, "block_ms", "50", err, sizeof err), STX_OK);
    for (size_t i = 0; kv && kv[i]; i += 2)
        cr_assert_eq(stx_config_set(conf, kv[i], kv[i + 1], err, sizeof err), STX_OK, "%s", err);
    stx_config_set_handler(conf, handler, c);
    if (log)
        stx_config_set_log(conf, capture, log);
    stx_processor *p;
    cr_assert_eq(stx_processor_new(&p, conf), STX_OK);
    stx_config_free(conf);
    c->p = p;
    return p;
}

static void produce(redisContext *rc, const char *stream, int n, const char *k)
{
    for (int i = 0; i < n; i++)
        freeReplyObject(test_cmd(rc, "XADD %s * k %s", stream, k));
}

static void drain(stx_processor *p)
{
    for (int i = 0; i < 200; i++) {
        int n = stx_processor_poll(p);
        cr_assert(n >= 0, "%s: %s", stx_strerror(n), stx_processor_errmsg(p));
        if (n == 0)
            return;
    }
    cr_assert_fail("the processor does not finish");
}

static void sleep_ms(long ms)
{
    struct timespec ts = {ms / 1000, (ms % 1000) * 1000000L};
    nanosleep(&ts, NULL);
}

static const char *const FAST_STATS[] = {"stats_interval_ms", "1000", NULL};

/* ---- stx top ------------------------------------------------------------ */

Test(top, once_json_shows_a_running_processors_rate_and_lag)
{
    test_redis r;
    test_redis_start(&r, 0, NULL);
    redisContext *rc = test_redis_connect(&r);
    ctx c = {0};
    stx_processor *p = new_processor(r.url, "tp", &c, NULL, FAST_STATS);
    produce(rc, "tp", 10, "a");
    drain(p);                   /* the first heartbeat: at the start, no rate yet */
    produce(rc, "tp", 40, "a");
    sleep_ms(1050);
    drain(p);                   /* a heartbeat, then the 40 entries */
    sleep_ms(1050);
    cr_assert_eq(stx_processor_poll(p), 0); /* the heartbeat that counts the 40 */
    produce(rc, "tp", 7, "a");  /* not read: the lag */

    run o;
    stx(&o, r.url, "top", "tp", "g", "--once", "--json", NULL);
    cr_assert_eq(o.code, 0, "%s", o.err);
    cr_assert(strstr(o.out, "\"stream\":\"tp\",\"group\":\"g\""), "%s", o.out);
    cr_assert(strstr(o.out, "\"lag\":7,\"lag_trend_per_s\":null,\"pending\":0,\"dlq_length\":0,"),
              "%s", o.out);
    cr_assert(strstr(o.out, "\"consumer\":\"c1\""), "%s", o.out);
    cr_assert(strstr(o.out, "\"phase\":\"running\""), "%s", o.out);
    cr_assert(strstr(o.out, "\"committed\":50,"), "%s", o.out);
    char pid[64];
    snprintf(pid, sizeof pid, "\"pid\":%ld,", (long)getpid());
    cr_assert(strstr(o.out, pid), "%s", o.out);
    /* 40 entries over the ~1 s between the two heartbeats. */
    double rate = json_num(o.out, "committed_per_s");
    cr_assert(rate > 10 && rate <= 40.0 / 0.9, "%f: %s", rate, o.out);
    cr_assert_eq(count_of(o.out, "\"id\":"), 1, "%s", o.out);
    run_free(&o);

    /* The human frame and stx info show the same processor. */
    stx(&o, r.url, "top", "--once", NULL);
    cr_assert_eq(o.code, 0, "%s", o.err);
    cr_assert(strstr(o.out, "RATE/S") && strstr(o.out, "c1") && strstr(o.out, "running"), "%s",
              o.out);
    run_free(&o);
    stx(&o, r.url, "info", "tp", "--json", NULL);
    cr_assert_eq(o.code, 0, "%s", o.err);
    cr_assert(strstr(o.out, "\"processors\":[{\"id\":") && strstr(o.out, "\"consumer\":\"c1\""),
              "%s", o.out);
    run_free(&o);

    /* A stopped processor leaves the live hash at once. */
    stx_processor_stop(p);
    cr_assert_eq(stx_processor_poll(p), STX_ESTOPPED);
    stx(&o, r.url, "top", "tp", "g", "--once", "--json", NULL);
    cr_assert_eq(o.code, 0, "%s", o.err);
    cr_assert(strstr(o.out, "\"processors\":[]"), "%s", o.out);
    run_free(&o);
    char key[128];
    cr_assert(stx_key_name(key, sizeof key, "tp", "g", "live") > 0);
    cr_assert_eq(test_cmd_int(rc, "EXISTS %s", key), 0);

    stx(&o, r.url, "top", "tp", "nope", "--once", NULL);
    cr_assert_eq(o.code, 3, "%s", o.err);
    cr_assert(strstr(o.err, "stream 'tp' has no group 'nope'"), "%s", o.err);
    run_free(&o);
    stx_processor_free(p);
    redisFree(rc);
    test_redis_stop(&r);
}

Test(top, the_heartbeat_is_one_write_per_interval_with_an_expiry_and_can_be_off)
{
    test_redis r;
    test_redis_start(&r, 0, NULL);
    redisContext *rc = test_redis_connect(&r);
    ctx c = {0};
    stx_processor *p = new_processor(r.url, "hb", &c, NULL, FAST_STATS);
    produce(rc, "hb", 5, "a");
    drain(p);
    char key[128];
    cr_assert(stx_key_name(key, sizeof key, "hb", "g", "live") > 0);
    long long ttl = test_cmd_int(rc, "PTTL %s", key);
    cr_assert(ttl > 2000 && ttl <= 3 * 1000 + 50, "%lld", ttl);
    cr_assert_eq(test_cmd_int(rc, "HLEN %s", key), 1);
    /* Idle polls within the interval write nothing. */
    freeReplyObject(test_cmd(rc, "CONFIG RESETSTAT"));
    for (int i = 0; i < 4; i++)
        cr_assert_eq(stx_processor_poll(p), 0);
    redisReply *info = test_cmd(rc, "INFO commandstats");
    cr_assert_null(strstr(info->str, "cmdstat_hset:"), "%s", info->str);
    freeReplyObject(info);
    stx_processor_free(p);

    /* stats_interval_ms 0: no heartbeat at all. */
    static const char *const off[] = {"stats_interval_ms", "0", NULL};
    ctx c2 = {0};
    p = new_processor(r.url, "hb2", &c2, NULL, off);
    produce(rc, "hb2", 5, "a");
    drain(p);
    cr_assert(stx_key_name(key, sizeof key, "hb2", "g", "live") > 0);
    cr_assert_eq(test_cmd_int(rc, "EXISTS %s", key), 0);
    stx_processor_free(p);
    redisFree(rc);
    test_redis_stop(&r);
}

/* commit_wait_replicas on a Redis without replicas: every commit is
 * unacknowledged; the heartbeat, stx top (JSON and frame) and stx info
 * show the count. */
Test(top, unreplicated_commits_in_the_heartbeat_and_top)
{
    test_redis r;
    test_redis_start(&r, 0, NULL);
    redisContext *rc = test_redis_connect(&r);
    ctx c = {0};
    static const char *const kv[] = {"stats_interval_ms", "1000", "commit_wait_replicas", "1",
                                     "commit_wait_timeout_ms", "5", "batch_size", "2",
                                     "log_level", "error", NULL};
    stx_processor *p = new_processor(r.url, "ur", &c, NULL, kv);
    produce(rc, "ur", 6, "a");
    drain(p);
    sleep_ms(1050);
    cr_assert_eq(stx_processor_poll(p), 0); /* the heartbeat after the commits */
    stx_stats st;
    stx_processor_stats(p, &st);
    cr_assert_geq(st.commits, 3);
    cr_assert_eq(st.commits_unreplicated, st.commits);
    char want[64];
    snprintf(want, sizeof want, "\"commits_unreplicated\":%llu", (unsigned long long)st.commits);

    char key[128];
    cr_assert(stx_key_name(key, sizeof key, "ur", "g", "live") > 0);
    redisReply *h = test_cmd(rc, "HVALS %s", key);
    cr_assert_eq(h->elements, 1);
    cr_assert(strstr(h->element[0]->str, want), "%s", h->element[0]->str);
    freeReplyObject(h);

    run o;
    stx(&o, r.url, "top", "ur", "g", "--once", "--json", NULL);
    cr_assert_eq(o.code, 0, "%s", o.err);
    cr_assert_eq(count_of(o.out, want), 2, "group sum and processor: %s", o.out);
    run_free(&o);
    stx(&o, r.url, "info", "ur", "--json", NULL);
    cr_assert_eq(o.code, 0, "%s", o.err);
    cr_assert(strstr(o.out, want), "%s", o.out);
    run_free(&o);
    stx(&o, r.url, "top", "ur", "g", "--once", NULL);
    cr_assert_eq(o.code, 0, "%s", o.err);
    cr_assert(strstr(o.out, "UNREPL"), "%s", o.out);
    run_free(&o);
    stx_processor_free(p);
    redisFree(rc);
    test_redis_stop(&r);
}

/* ---- logs --------------------------------------------------------------- */

Test(top, a_reset_fences_with_the_operators_reset_named_and_nothing_logged_twice)
{
    test_redis r;
    test_redis_start(&r, 0, NULL);
    redisContext *rc = test_redis_connect(&r);
    ctx c = {0};
    logbuf log = {"", 0};
    stx_processor *p = new_processor(r.url, "rs", &c, &log, FAST_STATS);
    produce(rc, "rs", 3, "a");
    drain(p);
    run o;
    stx(&o, r.url, "reset", "rs", "g", "--to", "beginning", "--yes", NULL);
    cr_assert_eq(o.code, 0, "%s", o.err);
    run_free(&o);
    produce(rc, "rs", 1, "a");
    int rcode = stx_processor_poll(p);
    for (int i = 0; i < 5 && rcode >= 0; i++)
        rcode = stx_processor_poll(p);
    cr_assert_eq(rcode, STX_EFENCED, "%d: %s", rcode, stx_processor_errmsg(p));
    const char *msg = stx_processor_errmsg(p);
    cr_assert(strstr(msg, "stream 'rs' group 'g' was reset by an operator"), "%s", msg);
    cr_assert_null(strstr(msg, "taken over"), "%s", msg);
    /* Returned, so not logged. */
    cr_assert_null(strstr(log.lines, "reset by an operator"), "%s", log.lines);
    cr_assert_null(strstr(log.lines, "ERROR"), "%s", log.lines);
    /* A fenced processor leaves the live hash. */
    char key[128];
    cr_assert(stx_key_name(key, sizeof key, "rs", "g", "live") > 0);
    cr_assert_eq(test_cmd_int(rc, "HLEN %s", key), 0);
    stx_processor_free(p);
    redisFree(rc);
    test_redis_stop(&r);
}

Test(top, run_logs_each_dead_letter_once_with_its_attempts)
{
    test_redis r;
    test_redis_start(&r, 0, NULL);
    redisContext *rc = test_redis_connect(&r);

    /* A permanent failure: dead-lettered at its first attempt. */
    ctx c = {.fail_key = "bad", .verdict = STX_HANDLER_FAIL, .stop_key = "last"};
    logbuf log = {"", 0};
    static const char *const kv[] = {"max_deliveries", "3", "retry_base_ms", "1", NULL};
    stx_processor *p = new_processor(r.url, "dl", &c, &log, kv);
    produce(rc, "dl", 2, "a");
    produce(rc, "dl", 1, "bad");
    produce(rc, "dl", 1, "last");
    cr_assert_eq(stx_processor_run(p), STX_OK, "%s", stx_processor_errmsg(p));
    cr_assert_eq(count_of(log.lines, "WARN ") + count_of(log.lines, "ERROR "), 1, "%s", log.lines);
    cr_assert(strstr(log.lines, "WARN entry ") &&
                  strstr(log.lines, "moved to the dead-letter stream (handler_failed, 1 attempt): "
                                    "refusing bad"),
              "%s", log.lines);
    stx_processor_free(p);

    /* A retriable failure: one line per retry, one for the dead letter. */
    ctx c2 = {.fail_key = "bad", .verdict = STX_HANDLER_RETRY, .stop_key = "last"};
    logbuf log2 = {"", 0};
    p = new_processor(r.url, "dl2", &c2, &log2, kv);
    produce(rc, "dl2", 1, "bad");
    produce(rc, "dl2", 1, "last");
    cr_assert_eq(stx_processor_run(p), STX_OK, "%s", stx_processor_errmsg(p));
    cr_assert_eq(count_of(log2.lines, "WARN ") + count_of(log2.lines, "ERROR "), 3, "%s",
                 log2.lines);
    cr_assert_eq(count_of(log2.lines, "WARN handler failed on entry "), 2, "%s", log2.lines);
    cr_assert(strstr(log2.lines, "(attempt 1 of 3,") && strstr(log2.lines, "(attempt 2 of 3,"),
              "%s", log2.lines);
    cr_assert_eq(count_of(log2.lines, "dead-letter"), 1, "%s", log2.lines);
    cr_assert(strstr(log2.lines, "(retries_exhausted, 3 attempts): refusing bad"), "%s",
              log2.lines);
    stx_processor_free(p);
    redisFree(rc);
    test_redis_stop(&r);
}

/* The processor runs in a thread of the test's own (the library starts none). */
static void *run_thread(void *ud)
{
    ctx *c = ud;
    intptr_t rc = stx_processor_run(c->p);
    return (void *)rc;
}

Test(top, a_disconnect_that_recovers_is_a_warning_not_an_error)
{
    test_redis r;
    test_redis_start(&r, 1, NULL);
    redisContext *rc = test_redis_connect(&r);
    ctx c = {.stop_key = "last"};
    logbuf log = {"", 0};
    stx_processor *p = new_processor(r.url, "dc", &c, &log, NULL);
    produce(rc, "dc", 5, "a");
    pthread_t t;
    cr_assert_eq(pthread_create(&t, NULL, run_thread, &c), 0);
    for (int i = 0; i < 400 && atomic_load(&c.handled) < 5; i++)
        sleep_ms(10);
    cr_assert_eq(atomic_load(&c.handled), 5);
    redisFree(rc);
    test_redis_kill(&r);
    sleep_ms(400);
    test_redis_restart(&r);
    rc = test_redis_connect(&r);
    produce(rc, "dc", 1, "last");
    void *ret;
    cr_assert_eq(pthread_join(t, &ret), 0);
    cr_assert_eq((intptr_t)ret, STX_OK, "%s", stx_processor_errmsg(p));
    cr_assert_null(strstr(log.lines, "ERROR"), "%s", log.lines);
    cr_assert(strstr(log.lines, "WARN ") && strstr(log.lines, "retrying in"), "%s", log.lines);
    stx_processor_free(p);
    redisFree(rc);
    test_redis_stop(&r);
}

/* ---- SIGPIPE ------------------------------------------------------------ */

Test(top, writing_to_a_closed_connection_never_raises_sigpipe)
{
    signal(SIGPIPE, SIG_DFL);
    test_redis r;
    test_redis_start(&r, 0, NULL);
    redisContext *rc = test_redis_connect(&r);
    stx_client *cl = test_client(&r);
    size_t big = 4u << 20;
    char *value = malloc(big);
    cr_assert(value);
    memset(value, 'x', big);
    stx_field f = {"v", 1, value, big};
    int failures = 0;
    for (int i = 0; i < 5; i++) {
        /* Close the client's connection from the server side, then write. */
        freeReplyObject(test_cmd(rc, "CLIENT KILL TYPE normal SKIPME yes"));
        sleep_ms(20);
        stx_produce_result res;
        int code = stx_produce(cl, "sp", &f, 1, NULL, &res);
        if (code != STX_OK) {
            cr_assert(code == STX_ECONN || code == STX_ETIMEOUT, "%d: %s", code,
                      stx_client_errmsg(cl));
            failures++;
        }
    }
    cr_assert_gt(failures, 0);
    /* And the processor's connection. */
    ctx c = {0};
    stx_processor *p = new_processor(r.url, "sp2", &c, NULL, NULL);
    produce(rc, "sp2", 3, "a");
    drain(p);
    for (int i = 0; i < 3; i++) {
        freeReplyObject(test_cmd(rc, "CLIENT KILL TYPE normal SKIPME yes"));
        sleep_ms(20);
        produce(rc, "sp2", 1, "a");
        int n = stx_processor_poll(p);
        cr_assert(n >= 0 || n == STX_ECONN || n == STX_ETIMEOUT, "%d", n);
    }
    drain(p);
    stx_processor_free(p);
    free(value);
    stx_client_free(cl);
    redisFree(rc);
    test_redis_stop(&r);
}
