/* Bad input gives a clear code and message, never a crash: configuration,
 * addresses, credentials, key types, damaged state and snapshots. */
#include <criterion/criterion.h>
#include <fcntl.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "harness.h"
#include "snapshot.h"
#include "streamtx.h"

static test_redis R;

static void setup(void) { test_redis_start(&R, 0, NULL); }
static void teardown(void) { test_redis_stop(&R); }

TestSuite(badinput, .init = setup, .fini = teardown, .timeout = 120);

static int incr_handler(const stx_msg *msg, stx_txn *txn, void *ud)
{
    (void)ud;
    size_t n;
    const char *k = stx_msg_get(msg, "k", &n);
    if (!k) return stx_txn_fail(txn, "entry has no field k");
    int rc = stx_txn_incr(txn, k, n, 1, NULL);
    if (rc != STX_OK) return stx_txn_fail(txn, "incr %s: %s", k, stx_strerror(rc));
    return STX_OK;
}

static int publish_handler(const stx_msg *msg, stx_txn *txn, void *ud)
{
    (void)msg;
    int rc = stx_txn_incr(txn, "n", 1, 1, NULL);
    if (rc == STX_OK) rc = stx_txn_publishv(txn, (const char *)ud, "x", "1", NULL);
    return rc;
}

static stx_processor *make_with(const char *url, const char *stream, stx_handler_fn h, void *ud,
                                const char *snapshot)
{
    stx_config *c = stx_config_new();
    cr_assert_eq(stx_config_set(c, "url", url, NULL, 0), STX_OK);
    stx_config_set(c, "stream", stream, NULL, 0);
    stx_config_set(c, "group", "g", NULL, 0);
    stx_config_set(c, "block_ms", "50", NULL, 0);
    stx_config_set(c, "connect_timeout_ms", "500", NULL, 0);
    stx_config_set(c, "log_level", "error", NULL, 0);
    if (snapshot) stx_config_set(c, "snapshot_dir", snapshot, NULL, 0);
    stx_config_set_handler(c, h, ud);
    stx_processor *p;
    cr_assert_eq(stx_processor_new(&p, c), STX_OK, "%s", stx_processor_errmsg(p));
    stx_config_free(c);
    return p;
}

static stx_processor *make(const char *stream, stx_handler_fn h, void *ud)
{
    return make_with(R.url, stream, h, ud, NULL);
}

Test(badinput, configuration_errors_name_the_problem)
{
    stx_config *c = stx_config_new();
    char err[256];
    struct { const char *key, *value, *needle; } cases[] = {
        {"url", "http://localhost", "redis://"},
        {"url", "redis://", "host"},
        {"url", "redis://host:0", "port"},
        {"url", "redis://host:99999", "port"},
        {"url", "redis://host:12ab", "port"},
        {"url", "redis://host:6379/x", "database"},
        {"url", "redis://us%zzer:pw@host", "user or password"},
        {"url", "redis://[::1", "IPv6"},
        {"batch_size", "0", "batch_size"},
        {"batch_size", "many", "batch_size"},
        {"group_start_id", "yesterday", "group_start_id"},
        {"snapshot_sync", "sometimes", "snapshot_sync"},
        {"stream", "", "empty"},
        {"no_such_key", "1", "unknown configuration key 'no_such_key'"},
    };
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        err[0] = '\0';
        cr_assert_eq(stx_config_set(c, cases[i].key, cases[i].value, err, sizeof err), STX_EINVAL,
                     "%s=%s accepted", cases[i].key, cases[i].value);
        cr_assert(strstr(err, cases[i].needle), "%s=%s: message '%s' lacks '%s'", cases[i].key,
                  cases[i].value, err, cases[i].needle);
    }
    /* A refused value leaves the old one. */
    char buf[64];
    cr_assert_eq(stx_config_get(c, "batch_size", buf, sizeof buf), STX_OK);
    cr_assert_str_eq(buf, "64");
    cr_assert_eq(stx_config_set(c, "url", "redis://u:p%40ss@[::1]:7000/3", err, sizeof err), STX_OK, "%s", err);
    cr_assert_eq(stx_config_get(c, "host", buf, sizeof buf), STX_OK);
    cr_assert_str_eq(buf, "::1");
    cr_assert_eq(stx_config_get(c, "password", buf, sizeof buf), STX_OK);
    cr_assert_str_eq(buf, "***");
    cr_assert_eq(stx_config_get(c, "db", buf, sizeof buf), STX_OK);
    cr_assert_str_eq(buf, "3");
    /* Missing essentials are refused by stx_processor_new, with a message. */
    stx_processor *p;
    cr_assert_eq(stx_processor_new(&p, c), STX_EINVAL);
    cr_assert(strstr(stx_processor_errmsg(p), "stream"), "%s", stx_processor_errmsg(p));
    stx_processor_free(p);
    stx_processor_free(NULL);
    stx_config_free(c);
    stx_config_free(NULL);
}

Test(badinput, refused_connection)
{
    /* A port nothing listens on: the one of a server we stop. */
    test_redis gone;
    test_redis_start(&gone, 0, NULL);
    char url[128];
    snprintf(url, sizeof url, "%s", gone.url);
    test_redis_stop(&gone);
    stx_processor *p = make_with(url, "s", incr_handler, NULL, NULL);
    cr_assert_eq(stx_processor_start(p), STX_ECONN);
    cr_assert(strstr(stx_processor_errmsg(p), "cannot connect"), "%s", stx_processor_errmsg(p));
    cr_assert_eq(stx_processor_run(p), STX_ECONN, "run() must not spin on a dead address");
    stx_processor_free(p);
}

Test(badinput, wrong_password_and_acl_user)
{
    test_redis a;
    test_redis_start(&a, 0, NULL);
    redisContext *admin = test_redis_connect(&a);
    freeReplyObject(test_cmd(admin, "ACL SETUSER default on >s3cret"));
    redisFree(admin);
    char url[256];
    snprintf(url, sizeof url, "redis://:wrong@127.0.0.1:%d", a.port);
    stx_processor *p = make_with(url, "s", incr_handler, NULL, NULL);
    cr_assert_eq(stx_processor_start(p), STX_EAUTH, "%s", stx_processor_errmsg(p));
    cr_assert(strstr(stx_processor_errmsg(p), "AUTH refused"), "%s", stx_processor_errmsg(p));
    stx_processor_free(p);

    redisContext *c = redisConnect("127.0.0.1", a.port);
    freeReplyObject(redisCommand(c, "AUTH s3cret"));
    redisReply *r = redisCommand(c, "ACL SETUSER app on >apppw ~* &* +@all");
    cr_assert_eq(r->type, REDIS_REPLY_STATUS);
    freeReplyObject(r);
    freeReplyObject(redisCommand(c, "XADD s * k a"));
    redisFree(c);
    snprintf(url, sizeof url, "redis://app:apppw@127.0.0.1:%d/0", a.port);
    p = make_with(url, "s", incr_handler, NULL, NULL);
    cr_assert_eq(stx_processor_poll(p), 1, "%s", stx_processor_errmsg(p));
    stx_processor_free(p);
    test_redis_stop(&a);
}

Test(badinput, stream_key_of_wrong_type)
{
    redisContext *c = test_redis_connect(&R);
    freeReplyObject(test_cmd(c, "SET notastream hello"));
    stx_processor *p = make("notastream", incr_handler, NULL);
    cr_assert_eq(stx_processor_start(p), STX_EWRONGTYPE);
    cr_assert(strstr(stx_processor_errmsg(p), "notastream"), "%s", stx_processor_errmsg(p));
    cr_assert(strstr(stx_processor_errmsg(p), "string"), "%s", stx_processor_errmsg(p));
    stx_processor_free(p);
    /* Nothing was written: the key is untouched. */
    redisReply *r = test_cmd(c, "GET notastream");
    cr_assert_str_eq(r->str, "hello");
    freeReplyObject(r);
    redisFree(c);
}

Test(badinput, publish_target_of_wrong_type_writes_nothing)
{
    redisContext *c = test_redis_connect(&R);
    freeReplyObject(test_cmd(c, "XADD in * k a"));
    freeReplyObject(test_cmd(c, "HSET target f v"));
    stx_processor *p = make("in", publish_handler, "target");
    cr_assert_eq(stx_processor_poll(p), STX_EWRONGTYPE);
    cr_assert(strstr(stx_processor_errmsg(p), "'target'"), "%s", stx_processor_errmsg(p));
    char state[256], meta[256];
    stx_key_name(state, sizeof state, "in", "g", "state");
    stx_key_name(meta, sizeof meta, "in", "g", "meta");
    cr_assert_eq(test_cmd_int(c, "EXISTS %s", state), 0);
    cr_assert_eq(test_cmd_int(c, "HEXISTS %s offset", meta), 0);
    redisReply *r = test_cmd(c, "XPENDING in g");
    cr_assert_eq(r->element[0]->integer, 1);
    freeReplyObject(r);
    /* The in-memory state did not keep the failed change either. */
    const void *v;
    size_t n;
    cr_assert_eq(stx_processor_state_get(p, "n", 1, &v, &n), STX_ENOTFOUND);
    stx_processor_free(p);
    redisFree(c);
}

Test(badinput, state_value_that_is_not_msgpack)
{
    redisContext *c = test_redis_connect(&R);
    char state[256];
    stx_key_name(state, sizeof state, "m", "g", "state");
    /* An array32 header claiming 2^31 elements: msgpack-c would try to
     * allocate gigabytes for it. */
    freeReplyObject(test_cmd(c, "HSET %s bad %b", state, "\xdd\x7f\xff\xff\xff\x01", (size_t)6));
    freeReplyObject(test_cmd(c, "HSET %s good %b", state, "\x05", (size_t)1));
    freeReplyObject(test_cmd(c, "XADD m * k bad"));
    freeReplyObject(test_cmd(c, "XADD m * k good"));
    stx_processor *p = make("m", incr_handler, NULL);
    cr_assert_eq(stx_processor_poll(p), STX_EHANDLER);
    cr_assert(strstr(stx_processor_errmsg(p), "bad"), "%s", stx_processor_errmsg(p));
    cr_assert(strstr(stx_processor_errmsg(p), "bytes do not decode"), "%s", stx_processor_errmsg(p));
    cr_assert(strstr(stx_processor_errmsg(p), "dead-letter"), "%s", stx_processor_errmsg(p));
    /* The entry went to the dead-letter stream, whole, with the reason. */
    char dlq[256];
    stx_key_name(dlq, sizeof dlq, "m", "g", "dlq");
    redisReply *r = test_cmd(c, "XRANGE %s - +", dlq);
    cr_assert_eq(r->elements, 1);
    redisReply *f = r->element[0]->element[1];
    cr_assert_str_eq(f->element[0]->str, "stx.fields");
    cr_assert_str_eq(f->element[1]->str, "1");
    cr_assert_str_eq(f->element[2]->str, "k");
    cr_assert_str_eq(f->element[3]->str, "bad");
    cr_assert_str_eq(f->element[10]->str, "stx.reason");
    cr_assert_str_eq(f->element[11]->str, "handler_failed");
    cr_assert(strstr(f->element[13]->str, "bytes do not decode"), "%s", f->element[13]->str);
    freeReplyObject(r);
    /* The processor goes on with the next entry. */
    cr_assert_eq(stx_processor_poll(p), 1, "%s", stx_processor_errmsg(p));
    stx_processor_free(p);
    p = make("m", incr_handler, NULL);
    cr_assert_eq(stx_processor_poll(p), 0, "%s", stx_processor_errmsg(p));
    const void *v;
    size_t n;
    int64_t i;
    cr_assert_eq(stx_processor_state_get(p, "good", 4, &v, &n), STX_OK);
    cr_assert_eq(stx_mp_read_i64(v, n, &i), STX_OK);
    cr_assert_eq(i, 6);
    stx_processor_free(p);
    redisFree(c);
}

static void process_all(const char *snapshot, int expect_snapshot_load, int64_t expect_a)
{
    stx_processor *p = make_with(R.url, "snap", incr_handler, NULL, snapshot);
    while (stx_processor_poll(p) > 0) {}
    stx_stats st;
    stx_processor_stats(p, &st);
    cr_assert_eq(st.snapshot_loads, (uint64_t)expect_snapshot_load);
    cr_assert_eq(st.redis_loads, (uint64_t)!expect_snapshot_load);
    const void *v;
    size_t n;
    int64_t i;
    cr_assert_eq(stx_processor_state_get(p, "a", 1, &v, &n), STX_OK);
    cr_assert_eq(stx_mp_read_i64(v, n, &i), STX_OK);
    cr_assert_eq(i, expect_a);
    stx_processor_free(p);
}

Test(badinput, damaged_or_stale_snapshot_is_rebuilt)
{
    redisContext *c = test_redis_connect(&R);
    char dir[256], copy[256], path[1024];
    test_tmpdir(dir, sizeof dir);
    test_tmpdir(copy, sizeof copy);
    freeReplyObject(test_cmd(c, "XADD snap * k a"));
    process_all(dir, 0, 1);
    process_all(dir, 1, 1); /* matches: loaded from LMDB */
    /* The files of (snap, g) live in their own directory inside dir. */
    char *env = stx_snapshot_env_dir(dir, "snap", "g");
    cr_assert_not_null(env);

    /* Stale: keep a copy of the snapshot, commit more, put the copy back. */
    snprintf(path, sizeof path, "cp %s/data.mdb %s/data.mdb", env, copy);
    cr_assert_eq(system(path), 0);
    freeReplyObject(test_cmd(c, "XADD snap * k a"));
    process_all(dir, 1, 2);
    snprintf(path, sizeof path, "cp %s/data.mdb %s/data.mdb", copy, env);
    cr_assert_eq(system(path), 0);
    process_all(dir, 0, 2); /* seq behind Redis: rebuilt from Redis */
    process_all(dir, 1, 2);

    /* Damaged: garbage over the data file. */
    snprintf(path, sizeof path, "%s/data.mdb", env);
    int fd = open(path, O_WRONLY);
    cr_assert_geq(fd, 0);
    char junk[8192];
    memset(junk, 0xAB, sizeof junk);
    cr_assert_eq(write(fd, junk, sizeof junk), (ssize_t)sizeof junk);
    close(fd);
    process_all(dir, 0, 2);
    process_all(dir, 1, 2);

    /* Redis state changed behind the snapshot's back (another lineage). */
    char meta[256];
    stx_key_name(meta, sizeof meta, "snap", "g", "meta");
    freeReplyObject(test_cmd(c, "HSET %s lineage other", meta));
    process_all(dir, 0, 2);
    free(env);
    test_rmrf(dir);
    test_rmrf(copy);
    redisFree(c);
}
