/* The test harness itself: servers start, keep AOF data across a kill -9,
 * get distinct ports, and go away with their directories. */
#include "harness.h"

#include <criterion/criterion.h>
#include <signal.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

static void set_and_check(const test_redis *r, const char *key)
{
    redisContext *c = test_redis_connect(r);
    freeReplyObject(test_cmd(c, "SET %s %s", key, "hello"));
    redisReply *rep = test_cmd(c, "GET %s", key);
    cr_assert_eq(rep->type, REDIS_REPLY_STRING);
    cr_assert_str_eq(rep->str, "hello");
    freeReplyObject(rep);
    redisFree(c);
}

/* Declared, so Criterion does not allocate (and leak) an implicit suite. */
TestSuite(harness);

Test(harness, start_without_aof)
{
    test_redis r;
    test_redis_start(&r, 0, NULL);
    cr_assert_gt(r.port, 0);
    cr_assert_gt(r.pid, 0);
    char want[128];
    snprintf(want, sizeof want, "redis://127.0.0.1:%d", r.port);
    cr_assert_str_eq(r.url, want);

    char key[64];
    set_and_check(&r, test_unique("k", key, sizeof key));

    redisContext *c = test_redis_connect(&r);
    redisReply *rep = test_cmd(c, "CONFIG GET appendonly");
    cr_assert_eq(rep->type, REDIS_REPLY_ARRAY);
    cr_assert_eq(rep->elements, 2);
    cr_assert_str_eq(rep->element[1]->str, "no");
    freeReplyObject(rep);
    redisFree(c);

    char dir[256];
    snprintf(dir, sizeof dir, "%s", r.dir);
    pid_t pid = r.pid;
    test_redis_stop(&r);
    struct stat st;
    cr_assert_neq(stat(dir, &st), 0, "directory %s still exists after stop", dir);
    cr_assert_neq(kill(pid, 0), 0, "redis-server %d still running after stop", (int)pid);
}

Test(harness, aof_survives_kill)
{
    test_redis r;
    test_redis_start(&r, 1, NULL);
    cr_assert_eq(r.appendonly, 1);
    char key[64];
    test_unique("aof", key, sizeof key);
    set_and_check(&r, key);

    int port = r.port;
    pid_t old = r.pid;
    test_redis_kill(&r);
    cr_assert_eq(r.pid, 0);
    test_redis_restart(&r);
    cr_assert_eq(r.port, port, "restart must keep the port");
    cr_assert_neq(r.pid, old);

    redisContext *c = test_redis_connect(&r);
    redisReply *rep = test_cmd(c, "GET %s", key);
    cr_assert_eq(rep->type, REDIS_REPLY_STRING, "key lost across kill -9 + restart");
    cr_assert_str_eq(rep->str, "hello");
    freeReplyObject(rep);
    rep = test_cmd(c, "CONFIG GET appendfsync");
    cr_assert_str_eq(rep->element[1]->str, "always");
    freeReplyObject(rep);
    redisFree(c);
    test_redis_stop(&r);
}

Test(harness, extra_args_kept_on_restart)
{
    static const char *const extra[] = { "--maxmemory", "12mb", NULL };
    test_redis r;
    test_redis_start(&r, 1, extra);
    test_redis_restart(&r);
    redisContext *c = test_redis_connect(&r);
    redisReply *rep = test_cmd(c, "CONFIG GET maxmemory");
    cr_assert_str_eq(rep->element[1]->str, "12582912");
    freeReplyObject(rep);
    redisFree(c);
    test_redis_stop(&r);
}

Test(harness, cluster_mode_has_room_for_its_bus_port)
{
    static const char *const extra[] = { "--cluster-enabled", "yes",
                                         "--cluster-config-file", "nodes.conf", NULL };
    test_redis r;
    test_redis_start(&r, 0, extra);
    cr_assert_leq(r.port, 65535 - 10000);
    redisContext *c = test_redis_connect(&r);
    redisReply *rep = test_cmd(c, "CLUSTER INFO");
    cr_assert_eq(rep->type, REDIS_REPLY_STRING);
    cr_assert_not_null(strstr(rep->str, "cluster_state:"));
    freeReplyObject(rep);
    redisFree(c);
    test_redis_restart(&r); /* nodes.conf and the bus port survive */
    test_redis_stop(&r);
}

Test(harness, two_servers_two_ports)
{
    test_redis a, b;
    test_redis_start(&a, 0, NULL);
    test_redis_start(&b, 1, NULL);
    cr_assert_neq(a.port, b.port);
    cr_assert_str_neq(a.dir, b.dir);

    redisContext *ca = test_redis_connect(&a);
    redisContext *cb = test_redis_connect(&b);
    freeReplyObject(test_cmd(ca, "SET only-a 1"));
    cr_assert_eq(test_cmd_int(ca, "EXISTS only-a"), 1);
    cr_assert_eq(test_cmd_int(cb, "EXISTS only-a"), 0);
    redisFree(ca);
    redisFree(cb);
    test_redis_stop(&a);
    test_redis_stop(&b);
}

Test(harness, helpers)
{
    char a[64], b[64];
    test_unique("x", a, sizeof a);
    test_unique("x", b, sizeof b);
    cr_assert_str_neq(a, b);
    cr_assert_eq(strncmp(a, "x-", 2), 0);

    int64_t t0 = test_now_ms();
    struct timespec ts = { 0, 20000000L };
    nanosleep(&ts, NULL);
    cr_assert_geq(test_now_ms() - t0, 19);

    char dir[256], path[300];
    test_tmpdir(dir, sizeof dir);
    snprintf(path, sizeof path, "%s/sub", dir);
    cr_assert_eq(mkdir(path, 0700), 0);
    snprintf(path, sizeof path, "%s/sub/file", dir);
    FILE *f = fopen(path, "w");
    cr_assert_not_null(f);
    fputs("x", f);
    fclose(f);
    test_rmrf(dir);
    struct stat st;
    cr_assert_neq(stat(dir, &st), 0);
}
