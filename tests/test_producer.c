/* Producing against a real redis-server: plain and idempotent XADDs,
 * conflicts, all-or-nothing batches, a retry after a lost reply, and two
 * processes producing the same keys at once. */
#include <criterion/criterion.h>
#include <errno.h>
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

TestSuite(producer, .init = setup, .fini = teardown, .timeout = 120);

static stx_client *client_for(const test_redis *r, const char *timeout_ms)
{
    stx_config *conf = stx_config_new();
    char err[256];
    cr_assert_eq(stx_config_set(conf, "url", r->url, err, sizeof err), STX_OK, "%s", err);
    if (timeout_ms)
        cr_assert_eq(stx_config_set(conf, "command_timeout_ms", timeout_ms, err, sizeof err), STX_OK);
    stx_client *c;
    int rc = stx_client_new(&c, conf);
    stx_config_free(conf);
    cr_assert_eq(rc, STX_OK, "stx_client_new: %s", c ? stx_client_errmsg(c) : "");
    return c;
}

static stx_field text_field(const char *name, const char *value)
{
    return (stx_field){name, strlen(name), value, strlen(value)};
}

static void sleep_ms(long ms)
{
    struct timespec ts = {ms / 1000, (ms % 1000) * 1000000L};
    while (nanosleep(&ts, &ts) != 0 && errno == EINTR) {
    }
}

/* Id of entry i (0-based) of stream, copied into out. */
static void entry_id(redisContext *rc, const char *stream, size_t i, char *out, size_t cap)
{
    redisReply *r = test_cmd(rc, "XRANGE %s - +", stream);
    cr_assert_gt(r->elements, i, "stream %s has %zu entries", stream, r->elements);
    snprintf(out, cap, "%s", r->element[i]->element[0]->str);
    freeReplyObject(r);
}

Test(producer, adds_binary_safe_fields)
{
    stx_client *c = client_for(&R, NULL);
    redisContext *rc = test_redis_connect(&R);
    static const char bin[] = {'a', '\0', 'b', '\n'};
    stx_field f[] = {text_field("type", "order.created"), {"raw", 3, bin, sizeof bin},
                     {"", 0, "", 0}};
    stx_produce_result res;
    cr_assert_eq(stx_produce(c, "plain", f, 3, NULL, &res), STX_OK, "%s", stx_client_errmsg(c));
    cr_assert_eq(res.duplicate, 0);
    cr_assert_str_eq(stx_client_errmsg(c), "");
    char id[64];
    entry_id(rc, "plain", 0, id, sizeof id);
    cr_assert_str_eq(res.id, id);
    redisReply *r = test_cmd(rc, "XRANGE plain - +");
    redisReply *fields = r->element[0]->element[1];
    cr_assert_eq(fields->elements, 6);
    cr_assert_str_eq(fields->element[1]->str, "order.created");
    cr_assert_eq(fields->element[3]->len, sizeof bin);
    cr_assert_eq(memcmp(fields->element[3]->str, bin, sizeof bin), 0);
    cr_assert_eq(fields->element[4]->len, 0);
    cr_assert_eq(fields->element[5]->len, 0);
    freeReplyObject(r);
    /* Without a key, every call adds. */
    cr_assert_eq(stx_produce(c, "plain", f, 3, NULL, &res), STX_OK);
    cr_assert_eq(test_cmd_int(rc, "XLEN plain"), 2);
    redisFree(rc);
    stx_client_free(c);
}

Test(producer, same_key_same_fields_is_a_duplicate)
{
    stx_client *c = client_for(&R, NULL);
    redisContext *rc = test_redis_connect(&R);
    stx_field f[] = {text_field("sku", "apple"), text_field("qty", "3")};
    stx_produce_opts o = {.idempotency_key = "order-17"};
    stx_produce_result a, b;
    cr_assert_eq(stx_produce(c, "{shop}orders", f, 2, &o, &a), STX_OK, "%s", stx_client_errmsg(c));
    cr_assert_eq(a.duplicate, 0);
    cr_assert_eq(stx_produce(c, "{shop}orders", f, 2, &o, &b), STX_OK, "%s", stx_client_errmsg(c));
    cr_assert_eq(b.duplicate, 1);
    cr_assert_str_eq(b.id, a.id);
    cr_assert_eq(test_cmd_int(rc, "XLEN {shop}orders"), 1);
    /* The dedup key carries the stream's hash tag and the default TTL (24 h). */
    const char *key = "{shop}:stx-idem:12:{shop}orders:order-17";
    long long ttl = test_cmd_int(rc, "PTTL %s", key);
    cr_assert(ttl > 86400000LL - 60000 && ttl <= 86400000LL, "PTTL %lld", ttl);
    redisReply *r = test_cmd(rc, "GET %s", key);
    cr_assert_eq(r->type, REDIS_REPLY_STRING);
    cr_assert_eq(strncmp(r->str, a.id, strlen(a.id)), 0);
    cr_assert_eq(r->str[strlen(a.id)], '\n');
    cr_assert_eq(strlen(r->str + strlen(a.id) + 1), 40); /* sha1 hex of the fields */
    freeReplyObject(r);
    /* The same key on another stream is another key. */
    cr_assert_eq(stx_produce(c, "other", f, 2, &o, &b), STX_OK);
    cr_assert_eq(b.duplicate, 0);
    /* A custom TTL. */
    o = (stx_produce_opts){.idempotency_key = "short", .dedup_ttl_ms = 5000};
    cr_assert_eq(stx_produce(c, "other", f, 2, &o, &b), STX_OK);
    ttl = test_cmd_int(rc, "PTTL %s", "{other}:stx-idem:5:other:short");
    cr_assert(ttl > 0 && ttl <= 5000, "PTTL %lld", ttl);
    redisFree(rc);
    stx_client_free(c);
}

Test(producer, same_key_other_fields_conflicts)
{
    stx_client *c = client_for(&R, NULL);
    redisContext *rc = test_redis_connect(&R);
    stx_field f1[] = {text_field("qty", "3")};
    stx_field f2[] = {text_field("qty", "4")};
    /* Field boundaries count: "ab"+"c" is not "a"+"bc". */
    stx_field f3[] = {text_field("qt", "y3")};
    stx_produce_opts o = {.idempotency_key = "pay-1"};
    stx_produce_result a, b;
    cr_assert_eq(stx_produce(c, "pay", f1, 1, &o, &a), STX_OK);
    cr_assert_eq(stx_produce(c, "pay", f2, 1, &o, &b), STX_ECONFLICT);
    cr_assert(strstr(stx_client_errmsg(c), "'pay-1'"), "%s", stx_client_errmsg(c));
    cr_assert(strstr(stx_client_errmsg(c), a.id), "%s", stx_client_errmsg(c));
    cr_assert_str_eq(b.id, "");
    cr_assert_eq(stx_produce(c, "pay", f3, 1, &o, &b), STX_ECONFLICT);
    cr_assert_eq(test_cmd_int(rc, "XLEN pay"), 1);
    /* The first content is still recognised. */
    cr_assert_eq(stx_produce(c, "pay", f1, 1, &o, &b), STX_OK);
    cr_assert_eq(b.duplicate, 1);
    cr_assert_str_eq(b.id, a.id);
    cr_assert_str_eq(stx_client_errmsg(c), "");
    redisFree(rc);
    stx_client_free(c);
}

Test(producer, batch_is_all_or_nothing)
{
    stx_client *c = client_for(&R, NULL);
    redisContext *rc = test_redis_connect(&R);
    stx_field fa[] = {text_field("n", "1")}, fb[] = {text_field("n", "2")},
              fc[] = {text_field("n", "3")}, fx[] = {text_field("n", "changed")};
    stx_produce_msg batch[] = {{fa, 1, "a"}, {fb, 1, NULL}, {fc, 1, "c"}};
    stx_produce_result res[4];
    cr_assert_eq(stx_produce_batch(c, "b", batch, 3, NULL, res), STX_OK, "%s", stx_client_errmsg(c));
    for (int i = 0; i < 3; i++) {
        char id[64];
        entry_id(rc, "b", (size_t)i, id, sizeof id);
        cr_assert_str_eq(res[i].id, id);
        cr_assert_eq(res[i].duplicate, 0);
    }
    /* A batch with a new key, a duplicate and a conflict adds nothing. */
    stx_produce_msg bad[] = {{fb, 1, "d"}, {fa, 1, "a"}, {fx, 1, "c"}};
    cr_assert_eq(stx_produce_batch(c, "b", bad, 3, NULL, res), STX_ECONFLICT);
    cr_assert(strstr(stx_client_errmsg(c), "'c' (message 2)"), "%s", stx_client_errmsg(c));
    cr_assert_eq(test_cmd_int(rc, "XLEN b"), 3);
    cr_assert_eq(test_cmd_int(rc, "EXISTS {b}:stx-idem:1:b:d"), 0);
    /* Without the conflict: the new key is added, the known ones are duplicates. */
    stx_produce_msg good[] = {{fb, 1, "d"}, {fa, 1, "a"}, {fc, 1, "c"}, {fb, 1, "d"}};
    cr_assert_eq(stx_produce_batch(c, "b", good, 4, NULL, res), STX_OK, "%s", stx_client_errmsg(c));
    cr_assert_eq(test_cmd_int(rc, "XLEN b"), 4);
    char id[64];
    entry_id(rc, "b", 3, id, sizeof id);
    cr_assert_str_eq(res[0].id, id);
    cr_assert_eq(res[0].duplicate, 0);
    entry_id(rc, "b", 0, id, sizeof id);
    cr_assert_str_eq(res[1].id, id);
    cr_assert_eq(res[1].duplicate, 1);
    entry_id(rc, "b", 2, id, sizeof id);
    cr_assert_str_eq(res[2].id, id);
    cr_assert_eq(res[2].duplicate, 1);
    cr_assert_str_eq(res[3].id, res[0].id); /* repeated inside the batch */
    cr_assert_eq(res[3].duplicate, 1);
    /* One key twice in a batch with different fields. */
    stx_produce_msg twice[] = {{fa, 1, "e"}, {fb, 1, "e"}};
    cr_assert_eq(stx_produce_batch(c, "b", twice, 2, NULL, res), STX_ECONFLICT);
    cr_assert(strstr(stx_client_errmsg(c), "twice in the batch"), "%s", stx_client_errmsg(c));
    cr_assert_eq(test_cmd_int(rc, "XLEN b"), 4);
    /* opts' idempotency key is ignored by batches. */
    stx_produce_opts o = {.idempotency_key = "a"};
    stx_produce_msg nokey[] = {{fx, 1, NULL}};
    cr_assert_eq(stx_produce_batch(c, "b", nokey, 1, &o, res), STX_OK);
    cr_assert_eq(res[0].duplicate, 0);
    cr_assert_eq(test_cmd_int(rc, "XLEN b"), 5);
    redisFree(rc);
    stx_client_free(c);
}

Test(producer, retry_after_a_lost_reply_adds_nothing)
{
    /* The server is made to stall (DEBUG SLEEP) while the produce waits, so
     * the client times out although the script runs afterwards: the reply
     * is lost, the entry is not. */
    static const char *const extra[] = {"--enable-debug-command", "yes", NULL};
    test_redis slow;
    test_redis_start(&slow, 0, extra);
    stx_client *c = client_for(&slow, "300");
    redisContext *rc = test_redis_connect(&slow);
    stx_field f[] = {text_field("amount", "12.50")};
    stx_produce_opts o = {.idempotency_key = "charge-9"};
    stx_produce_result res;
    stx_produce_opts warm = {.idempotency_key = "warm-up"};
    cr_assert_eq(stx_produce(c, "warm", f, 1, &warm, &res), STX_OK); /* loads the script */

    redisContext *side = test_redis_connect(&slow);
    cr_assert_eq(redisAppendCommand(side, "DEBUG SLEEP 1"), REDIS_OK);
    for (int done = 0; !done;) cr_assert_eq(redisBufferWrite(side, &done), REDIS_OK);
    sleep_ms(100);
    int rc1 = stx_produce(c, "lost", f, 1, &o, &res);
    cr_assert_eq(rc1, STX_ETIMEOUT, "got %s: %s", stx_strerror(rc1), stx_client_errmsg(c));
    cr_assert(strstr(stx_client_errmsg(c), "outcome is unknown"), "%s", stx_client_errmsg(c));
    void *reply;
    cr_assert_eq(redisGetReply(side, &reply), REDIS_OK);
    freeReplyObject(reply);
    redisFree(side);
    /* The script ran once the server woke up. */
    int64_t deadline = test_now_ms() + 3000;
    while (test_cmd_int(rc, "XLEN lost") == 0 && test_now_ms() < deadline) sleep_ms(10);
    cr_assert_eq(test_cmd_int(rc, "XLEN lost"), 1);

    /* The retry reconnects and finds the first entry. */
    cr_assert_eq(stx_produce(c, "lost", f, 1, &o, &res), STX_OK, "%s", stx_client_errmsg(c));
    cr_assert_eq(res.duplicate, 1);
    char id[64];
    entry_id(rc, "lost", 0, id, sizeof id);
    cr_assert_str_eq(res.id, id);
    cr_assert_eq(test_cmd_int(rc, "XLEN lost"), 1);
    redisFree(rc);
    stx_client_free(c);
    test_redis_stop(&slow);
}

/* Child of the concurrency test: produce keys 0..n-1 (in reverse when
 * asked) once the parent opens the gate; write the number actually added
 * to out.  Exits with _exit(): the parent's atexit handlers must not run. */
static void producer_child(const char *url, int n, int reverse, int gate, int out)
{
    char byte;
    if (read(gate, &byte, 1) < 0) _exit(10);
    stx_config *conf = stx_config_new();
    if (!conf || stx_config_set(conf, "url", url, NULL, 0) != STX_OK) _exit(11);
    stx_client *c;
    if (stx_client_new(&c, conf) != STX_OK) _exit(12);
    stx_config_free(conf);
    int added = 0;
    for (int k = 0; k < n; k++) {
        int i = reverse ? n - 1 - k : k;
        char key[32], val[32];
        snprintf(key, sizeof key, "order-%d", i);
        snprintf(val, sizeof val, "%d", i);
        stx_field f[] = {{"n", 1, val, strlen(val)}};
        stx_produce_opts o = {.idempotency_key = key};
        stx_produce_result res;
        if (stx_produce(c, "race", f, 1, &o, &res) != STX_OK) _exit(13);
        if (!res.duplicate) added++;
    }
    stx_client_free(c);
    if (write(out, &added, sizeof added) != (ssize_t)sizeof added) _exit(14);
    _exit(0);
}

Test(producer, concurrent_producers_add_each_key_once)
{
    enum { N = 200 };
    int gate[2], out[2];
    cr_assert_eq(pipe(gate), 0);
    cr_assert_eq(pipe(out), 0);
    pid_t kids[2];
    for (int i = 0; i < 2; i++) {
        kids[i] = fork();
        cr_assert_neq(kids[i], -1);
        if (kids[i] == 0) {
            close(gate[1]);
            close(out[0]);
            producer_child(R.url, N, i, gate[0], out[1]);
        }
    }
    close(gate[0]);
    close(out[1]);
    close(gate[1]); /* both start now */
    int total = 0;
    for (int i = 0; i < 2; i++) {
        int status;
        cr_assert_eq(waitpid(kids[i], &status, 0), kids[i]);
        cr_assert(WIFEXITED(status) && WEXITSTATUS(status) == 0, "child %d failed (status %d)", i,
                  status);
        int added;
        cr_assert_eq(read(out[0], &added, sizeof added), (ssize_t)sizeof added);
        total += added;
    }
    close(out[0]);
    cr_assert_eq(total, N);
    redisContext *rc = test_redis_connect(&R);
    cr_assert_eq(test_cmd_int(rc, "XLEN race"), N);
    /* Every key once. */
    static char seen[N];
    redisReply *r = test_cmd(rc, "XRANGE race - +");
    for (size_t i = 0; i < r->elements; i++) {
        int n = atoi(r->element[i]->element[1]->element[1]->str);
        cr_assert(n >= 0 && n < N && !seen[n], "entry n=%d twice", n);
        seen[n] = 1;
    }
    freeReplyObject(r);
    redisFree(rc);
}

Test(producer, trims_with_maxlen_and_minid)
{
    stx_client *c = client_for(&R, NULL);
    redisContext *rc = test_redis_connect(&R);
    /* One entry per node, so that "~" trimming is exact. */
    freeReplyObject(test_cmd(rc, "CONFIG SET stream-node-max-entries 1"));
    stx_field f[] = {text_field("x", "1")};
    stx_produce_result res;
    stx_produce_opts o = {.maxlen = 5};
    for (int i = 0; i < 12; i++) cr_assert_eq(stx_produce(c, "t", f, 1, &o, &res), STX_OK);
    cr_assert_eq(test_cmd_int(rc, "XLEN t"), 5);
    for (int i = 1; i <= 9; i++) freeReplyObject(test_cmd(rc, "XADD m %d-0 x 1", i));
    o = (stx_produce_opts){.minid = "7"};
    cr_assert_eq(stx_produce(c, "m", f, 1, &o, &res), STX_OK, "%s", stx_client_errmsg(c));
    cr_assert_eq(test_cmd_int(rc, "XLEN m"), 4); /* 7-0, 8-0, 9-0 and the new one */
    o = (stx_produce_opts){.minid = "8-0"};
    cr_assert_eq(stx_produce(c, "m", f, 1, &o, &res), STX_OK);
    cr_assert_eq(test_cmd_int(rc, "XLEN m"), 4);
    redisFree(rc);
    stx_client_free(c);
}

Test(producer, refuses_bad_arguments)
{
    stx_client *c = client_for(&R, NULL);
    redisContext *rc = test_redis_connect(&R);
    stx_field f[] = {text_field("x", "1")};
    stx_produce_result res;
    cr_assert_eq(stx_produce(c, "", f, 1, NULL, &res), STX_EINVAL);
    cr_assert_eq(stx_produce(c, NULL, f, 1, NULL, &res), STX_EINVAL);
    cr_assert_eq(stx_produce(c, "s", f, 0, NULL, &res), STX_EINVAL);
    cr_assert(strstr(stx_client_errmsg(c), "no fields"), "%s", stx_client_errmsg(c));
    stx_field null_value[] = {{"x", 1, NULL, 3}};
    cr_assert_eq(stx_produce(c, "s", null_value, 1, NULL, &res), STX_EINVAL);
    stx_produce_opts o = {.maxlen = 10, .minid = "5"};
    cr_assert_eq(stx_produce(c, "s", f, 1, &o, &res), STX_EINVAL);
    o = (stx_produce_opts){.minid = "5-x"};
    cr_assert_eq(stx_produce(c, "s", f, 1, &o, &res), STX_EINVAL);
    o = (stx_produce_opts){.idempotency_key = ""};
    cr_assert_eq(stx_produce(c, "s", f, 1, &o, &res), STX_EINVAL);
    o = (stx_produce_opts){.dedup_ttl_ms = -1};
    cr_assert_eq(stx_produce(c, "s", f, 1, &o, &res), STX_EINVAL);
    stx_field *many = calloc(3001, sizeof *many);
    for (int i = 0; i < 3001; i++) many[i] = f[0];
    cr_assert_eq(stx_produce(c, "s", many, 3001, NULL, &res), STX_EINVAL);
    cr_assert_eq(stx_produce(c, "s", many, 3000, NULL, &res), STX_OK, "%s", stx_client_errmsg(c));
    free(many);
    cr_assert_eq(stx_produce_batch(c, "s", NULL, 0, NULL, &res), STX_EINVAL);
    cr_assert_eq(test_cmd_int(rc, "XLEN s"), 1);
    /* Wrong types: the stream and a dedup key. */
    freeReplyObject(test_cmd(rc, "SET str x"));
    cr_assert_eq(stx_produce(c, "str", f, 1, NULL, &res), STX_EWRONGTYPE);
    cr_assert(strstr(stx_client_errmsg(c), "'str' holds a string"), "%s", stx_client_errmsg(c));
    freeReplyObject(test_cmd(rc, "HSET {s}:stx-idem:1:s:h a b"));
    o = (stx_produce_opts){.idempotency_key = "h"};
    cr_assert_eq(stx_produce(c, "s", f, 1, &o, &res), STX_EWRONGTYPE);
    cr_assert_eq(test_cmd_int(rc, "XLEN s"), 1);
    redisFree(rc);
    stx_client_free(c);
}

Test(producer, survives_script_flush_and_reconnects)
{
    stx_client *c = client_for(&R, NULL);
    redisContext *rc = test_redis_connect(&R);
    stx_field f[] = {text_field("x", "1")};
    stx_produce_opts o = {.idempotency_key = "k"};
    stx_produce_result res;
    cr_assert_eq(stx_produce(c, "s", f, 1, &o, &res), STX_OK);
    freeReplyObject(test_cmd(rc, "SCRIPT FLUSH"));
    cr_assert_eq(stx_produce(c, "s", f, 1, &o, &res), STX_OK, "%s", stx_client_errmsg(c));
    cr_assert_eq(res.duplicate, 1);
    /* The connection is killed: that call fails, the next one reconnects. */
    freeReplyObject(test_cmd(rc, "CLIENT KILL TYPE normal SKIPME yes"));
    cr_assert_eq(stx_produce(c, "s", f, 1, &o, &res), STX_ECONN);
    cr_assert_eq(stx_produce(c, "s", f, 1, &o, &res), STX_OK, "%s", stx_client_errmsg(c));
    cr_assert_eq(res.duplicate, 1);
    cr_assert_eq(test_cmd_int(rc, "XLEN s"), 1);
    redisFree(rc);
    stx_client_free(c);
}

Test(producer, client_reports_connection_failure)
{
    stx_config *conf = stx_config_new();
    cr_assert_eq(stx_config_set(conf, "url", "redis://127.0.0.1:1", NULL, 0), STX_OK);
    stx_client *c = NULL;
    cr_assert_eq(stx_client_new(&c, conf), STX_ECONN);
    cr_assert_not_null(c);
    cr_assert(strstr(stx_client_errmsg(c), "127.0.0.1:1"), "%s", stx_client_errmsg(c));
    stx_field f[] = {text_field("x", "1")};
    stx_produce_result res;
    cr_assert_eq(stx_produce(c, "s", f, 1, NULL, &res), STX_ECONN);
    stx_client_free(c);
    stx_client_free(NULL);
    stx_config_free(conf);
}
