/* The fault-injecting proxy itself (tests/proxy.c): it passes normal traffic
 * through unchanged, and each fault does what it says. */
#include <criterion/criterion.h>
#include <errno.h>
#include <stdarg.h>
#include <stdlib.h>
#include <string.h>

#include "harness.h"
#include "proxy.h"

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

TestSuite(proxy, .init = setup, .fini = teardown, .timeout = 60);

static redisContext *via_proxy(long timeout_ms)
{
    struct timeval tv = {timeout_ms / 1000, (timeout_ms % 1000) * 1000};
    redisContext *c = redisConnectWithTimeout("127.0.0.1", PX.port, tv);
    cr_assert(c && !c->err, "connect to the proxy: %s", c ? c->errstr : "oom");
    cr_assert_eq(redisSetTimeout(c, tv), REDIS_OK);
    return c;
}

Test(proxy, passes_traffic_through)
{
    redisContext *c = via_proxy(5000);
    redisReply *r = test_cmd(c, "PING");
    cr_assert_str_eq(r->str, "PONG");
    freeReplyObject(r);

    size_t n = 1 << 20;
    char *big = malloc(n);
    for (size_t i = 0; i < n; i++) big[i] = (char)(i * 31 + 7);
    freeReplyObject(test_cmd(c, "SET big %b", big, n));
    r = test_cmd(c, "GET big");
    cr_assert_eq(r->len, n);
    cr_assert(memcmp(r->str, big, n) == 0, "1 MB value changed on the way");
    freeReplyObject(r);
    free(big);

    /* An inline command passes too. */
    cr_assert_eq(redisAppendFormattedCommand(c, "PING\r\n", 6), REDIS_OK);
    cr_assert_eq(redisGetReply(c, (void **)&r), REDIS_OK);
    cr_assert_str_eq(r->str, "PONG");
    freeReplyObject(r);
    cr_assert_eq(proxy_stat(&PX, PROXY_ACCEPTED), 1);
    redisFree(c);
}

/* More pipelined commands than the proxy queues per connection, each held
 * back by a random delay: all arrive, once each, in order. */
Test(proxy, pipelined_burst_keeps_order_under_random_delays)
{
    redisContext *c = via_proxy(10000);
    proxy_delay(&PX, PROXY_UP | PROXY_DOWN, 0, 3, 42);
    int n = 20000;
    for (int i = 0; i < n; i++) cr_assert_eq(redisAppendCommand(c, "INCR ctr"), REDIS_OK);
    for (int i = 0; i < n; i++) {
        redisReply *r;
        cr_assert_eq(redisGetReply(c, (void **)&r), REDIS_OK, "reply %d: %s", i, c->errstr);
        cr_assert_eq(r->integer, i + 1);
        freeReplyObject(r);
    }
    redisFree(c);
}

Test(proxy, counts_commands_by_name_and_argument)
{
    int sets = proxy_rule(&PX, "set", 0, NULL);
    int set_a = proxy_rule(&PX, "SET", 1, "a");
    int any = proxy_rule(&PX, NULL, 0, NULL);
    redisContext *c = via_proxy(5000);
    freeReplyObject(test_cmd(c, "SET a 1"));
    freeReplyObject(test_cmd(c, "SET b 1"));
    freeReplyObject(test_cmd(c, "GET a"));
    cr_assert_eq(proxy_wait_count(&PX, any, 3, 2000), 0);
    cr_assert_eq(proxy_count(&PX, sets), 2);
    cr_assert_eq(proxy_count(&PX, set_a), 1);
    cr_assert_eq(proxy_count(&PX, any), 3);
    cr_assert_eq(proxy_wait_count(&PX, set_a, 2, 50), -1);
    redisFree(c);
}

Test(proxy, delay_is_at_least_what_was_asked)
{
    redisContext *c = via_proxy(5000);
    proxy_delay(&PX, PROXY_UP, 150, 150, 1);
    int64_t t0 = test_now_ms();
    freeReplyObject(test_cmd(c, "PING"));
    int64_t up = test_now_ms() - t0;
    cr_assert_geq(up, 150, "PING answered after %lld ms", (long long)up);

    proxy_delay(&PX, PROXY_UP | PROXY_DOWN, 100, 100, 1);
    t0 = test_now_ms();
    freeReplyObject(test_cmd(c, "PING"));
    int64_t both = test_now_ms() - t0;
    cr_assert_geq(both, 200, "PING answered after %lld ms", (long long)both);

    proxy_delay(&PX, 0, 0, 0, 0);
    t0 = test_now_ms();
    freeReplyObject(test_cmd(c, "PING"));
    cr_assert_lt(test_now_ms() - t0, 100);
    redisFree(c);
}

/* A held SET executes after a later SET of another connection. */
Test(proxy, hold_then_release_reorders)
{
    int set = proxy_rule(&PX, "SET", 1, "k");
    redisContext *a = via_proxy(5000), *b = via_proxy(5000);
    proxy_hold(&PX, set, -1, 0);
    cr_assert_eq(redisAppendCommand(a, "SET k first"), REDIS_OK);
    cr_assert_eq(redisAppendCommand(a, "SET k1 after-first"), REDIS_OK);
    int done = 0;
    cr_assert_eq(redisBufferWrite(a, &done), REDIS_OK);
    cr_assert_eq(proxy_wait_count(&PX, set, 1, 2000), 0);
    cr_assert_eq(proxy_stat(&PX, PROXY_HELD), 1);
    freeReplyObject(test_cmd(b, "SET k second"));
    redisReply *r = test_cmd(b, "EXISTS k1");
    cr_assert_eq(r->integer, 0, "a command behind the held one went through");
    freeReplyObject(r);

    proxy_release(&PX);
    cr_assert_eq(redisGetReply(a, (void **)&r), REDIS_OK);
    freeReplyObject(r);
    cr_assert_eq(redisGetReply(a, (void **)&r), REDIS_OK);
    freeReplyObject(r);
    r = test_cmd(b, "GET k");
    cr_assert_str_eq(r->str, "first");
    freeReplyObject(r);
    cr_assert_eq(proxy_stat(&PX, PROXY_RELEASES), 1);
    redisFree(a);
    redisFree(b);
}

/* Released by another connection's command plus a delay, and delivered
 * although its client closed the connection meanwhile; that connection's
 * next command waits until the held one ran. */
Test(proxy, hold_released_by_another_connection)
{
    int set = proxy_rule(&PX, "SET", 1, "k");
    int any = proxy_rule(&PX, NULL, 0, NULL);
    redisContext *a = via_proxy(5000), *b = via_proxy(5000);
    proxy_hold(&PX, set, any, 200);
    cr_assert_eq(redisAppendCommand(a, "SET k held"), REDIS_OK);
    int done = 0;
    cr_assert_eq(redisBufferWrite(a, &done), REDIS_OK);
    cr_assert_eq(proxy_wait_count(&PX, set, 1, 2000), 0);
    redisFree(a);               /* the client gives up; its bytes are on their way */
    int64_t t0 = test_now_ms();
    redisReply *r = test_cmd(b, "GET k");
    cr_assert_eq(r->type, REDIS_REPLY_NIL);
    freeReplyObject(r);
    /* b's next command waits for the release: it sees the held SET done. */
    r = test_cmd(b, "GET k");
    cr_assert_eq(r->type, REDIS_REPLY_STRING, "the held command did not run before the gate");
    cr_assert_str_eq(r->str, "held");
    freeReplyObject(r);
    cr_assert_geq(test_now_ms() - t0, 200 + 50);
    cr_assert_eq(proxy_stat(&PX, PROXY_RELEASES), 1);
    redisFree(b);
}

static void expect_conn_error(redisContext *c, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    redisReply *r = redisvCommand(c, fmt, ap);
    va_end(ap);
    cr_assert_null(r, "expected a connection error, got a reply");
    cr_assert(c->err == REDIS_ERR_EOF || c->err == REDIS_ERR_IO, "error %d: %s", c->err, c->errstr);
}

Test(proxy, cut_before_forwarding)
{
    int set = proxy_rule(&PX, "SET", 0, NULL);
    redisContext *c = via_proxy(5000), *direct = test_redis_connect(&R);
    proxy_cut(&PX, set, 2, 0);
    freeReplyObject(test_cmd(c, "SET one 1"));
    expect_conn_error(c, "SET two 2");
    cr_assert_eq(test_cmd_int(direct, "EXISTS two"), 0, "a command cut before forwarding ran");
    cr_assert_eq(proxy_stat(&PX, PROXY_CUTS), 1);
    redisFree(c);
    /* One shot: a new connection goes through. */
    c = via_proxy(5000);
    freeReplyObject(test_cmd(c, "SET two 2"));
    redisFree(c);
    redisFree(direct);
}

Test(proxy, cut_after_forwarding)
{
    int set = proxy_rule(&PX, "SET", 0, NULL);
    redisContext *c = via_proxy(5000), *direct = test_redis_connect(&R);
    proxy_cut(&PX, set, 1, 1);
    expect_conn_error(c, "SET landed yes");
    /* Redis got it before the cut: it ran (the proxy lets Redis read to EOF). */
    int64_t t0 = test_now_ms();
    while (test_cmd_int(direct, "EXISTS landed") == 0)
        cr_assert_lt(test_now_ms() - t0, 2000, "a command cut after forwarding did not run");
    redisFree(c);
    redisFree(direct);
}

Test(proxy, cut_after_bytes)
{
    redisContext *c = via_proxy(5000), *direct = test_redis_connect(&R);
    freeReplyObject(test_cmd(c, "PING"));
    proxy_cut_bytes(&PX, PROXY_UP, 10);     /* inside "*3\r\n$3\r\nSET..." */
    expect_conn_error(c, "SET partial yes");
    cr_assert_eq(test_cmd_int(direct, "EXISTS partial"), 0);
    cr_assert_eq(proxy_stat(&PX, PROXY_CUTS), 1);
    redisFree(c);
    redisFree(direct);
}

Test(proxy, blackhole_times_out_then_heals)
{
    redisContext *c = via_proxy(300);
    freeReplyObject(test_cmd(c, "PING"));
    proxy_blackhole(&PX, 1);
    int64_t t0 = test_now_ms();
    redisReply *r = redisCommand(c, "SET bh 1");
    cr_assert_null(r);
    cr_assert_eq(c->err, REDIS_ERR_IO, "error %d: %s", c->err, c->errstr);
    cr_assert_geq(test_now_ms() - t0, 290);
    cr_assert_eq(proxy_stat(&PX, PROXY_OPEN), 1, "the blackholed connection was closed");
    redisFree(c);
    proxy_blackhole(&PX, 0);
    /* What was sent into the blackhole arrives once it heals. */
    redisContext *direct = test_redis_connect(&R);
    t0 = test_now_ms();
    while (test_cmd_int(direct, "EXISTS bh") == 0)
        cr_assert_lt(test_now_ms() - t0, 2000, "the blackholed command never arrived");
    c = via_proxy(1000);
    freeReplyObject(test_cmd(c, "PING"));
    redisFree(c);
    redisFree(direct);
}
