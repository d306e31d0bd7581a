/* Redis Cluster routing (src/cluster.c) against a real cluster of 3 masters
 * and 3 replicas on loopback: slot computation, MOVED after a migration,
 * ASK and TRYAGAIN during one, a processor that goes on through a
 * failover, and scripts loaded again on the promoted replica. */
#include <criterion/criterion.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <unistd.h>

#include "client.h"
#include "cluster.h"
#include "config.h"
#include "harness.h"
#include "keys.h"
#include "processor.h"
#include "reply.h"
#include "streamtx.h"
#include "url.h"
#include "workload.h"

TestSuite(cluster, .timeout = 120);

/* A client on the cluster with every node as a seed. */
static stx_client *cluster_client(const test_cluster *tc, const char *command_timeout_ms)
{
    stx_config *conf = stx_config_new();
    char err[256];
    cr_assert_eq(stx_config_set(conf, "url", tc->url, err, sizeof err), STX_OK, "%s", err);
    if (command_timeout_ms)
        cr_assert_eq(stx_config_set(conf, "command_timeout_ms", command_timeout_ms, err,
                                    sizeof err),
                     STX_OK, "%s", err);
    stx_client *c;
    int rc = stx_client_new(&c, conf);
    stx_config_free(conf);
    cr_assert_eq(rc, STX_OK, "stx_client_new: %s", c ? stx_client_errmsg(c) : "");
    cr_assert(stx_cluster_on(&c->conn), "cluster not detected");
    return c;
}

static int client_cmd(stx_client *c, redisReply **r, const char *a0, const char *a1,
                      const char *a2)
{
    const char *argv[] = {a0, a1, a2};
    int argc = a2 ? 3 : a1 ? 2 : 1;
    return stx_client_command(c, a0, r, argc, argv, NULL);
}

static void set_key(stx_client *c, const char *key, const char *value)
{
    redisReply *r;
    int rc = client_cmd(c, &r, "SET", key, value);
    cr_assert_eq(rc, STX_OK, "SET %s: %s", key, stx_client_errmsg(c));
    stx_reply_release(r);
}

static void expect_value(stx_client *c, const char *key, const char *value)
{
    redisReply *r;
    int rc = client_cmd(c, &r, "GET", key, NULL);
    cr_assert_eq(rc, STX_OK, "GET %s: %s", key, stx_client_errmsg(c));
    cr_assert_eq(r->type, REDIS_REPLY_STRING, "GET %s: type %d", key, r->type);
    cr_assert_str_eq(r->str, value, "GET %s", key);
    stx_reply_release(r);
}

/* ---- slots and seeds, no cluster needed ------------------------------- */

Test(cluster, slot_of_odd_names_matches_cluster_keyslot)
{
    static const char *const extra[] = {"--cluster-enabled", "yes", "--cluster-config-file",
                                        "nodes.conf", NULL};
    test_redis r;
    test_redis_start(&r, 0, extra);
    redisContext *ctx = test_redis_connect(&r);
    static const struct {
        const char *s;
        size_t n;
    } names[] = {
        {"", 0}, {"a", 1}, {"{", 1}, {"}", 1}, {"{}", 2}, {"{}x", 3}, {"x{}", 3},
        {"{a}b", 4}, {"a{b}c", 5}, {"a{b}{c}", 7}, {"{{a}}", 5}, {"}{a}", 4}, {"a{}b}", 5},
        {"{a", 2}, {"a}", 2}, {"foo{}{bar}", 10}, {"foo{{bar}}zap", 13}, {"foo{bar}{zap}", 13},
        {"{user1000}.following", 21}, {"\x00\xff{\x00}z", 6}, {"\xff{\xfe}", 4},
        {"{\x00}", 3}, {"a\x00{b}", 5}, {"{orders}:stx:6:orders:g:meta", 28},
    };
    for (size_t i = 0; i < sizeof names / sizeof names[0]; i++) {
        const char *argv[] = {"CLUSTER", "KEYSLOT", names[i].s};
        size_t lens[] = {7, 7, names[i].n};
        redisReply *rep = redisCommandArgv(ctx, 3, argv, lens);
        cr_assert(rep && rep->type == REDIS_REPLY_INTEGER, "CLUSTER KEYSLOT #%zu", i);
        cr_assert_eq(stx_key_slot(names[i].s, names[i].n), (unsigned)rep->integer,
                     "slot of name #%zu", i);
        const char *get[] = {"GET", names[i].s};
        size_t glens[] = {3, names[i].n};
        cr_assert_eq(stx_cluster_command_slot(2, get, glens, NULL, 0), (int)rep->integer,
                     "command slot of name #%zu", i);
        freeReplyObject(rep);
    }
    /* A long name and every byte value. */
    char big[1000];
    for (size_t i = 0; i < sizeof big; i++) big[i] = (char)(i * 7 + 3);
    const char *argv[] = {"CLUSTER", "KEYSLOT", big};
    size_t lens[] = {7, 7, sizeof big};
    redisReply *rep = redisCommandArgv(ctx, 3, argv, lens);
    cr_assert_eq(stx_key_slot(big, sizeof big), (unsigned)rep->integer);
    freeReplyObject(rep);
    redisFree(ctx);
    test_redis_stop(&r);

    /* Where the keys of the library's commands are. */
    char err[300];
    const char *ev[] = {"EVALSHA", "x", "2", "{t}a", "{t}b", "arg"};
    cr_assert_eq(stx_cluster_command_slot(6, ev, NULL, err, sizeof err),
                 (int)stx_key_slot("t", 1));
    const char *cross[] = {"EVALSHA", "x", "2", "{t}a", "{u}b"};
    cr_assert_eq(stx_cluster_command_slot(5, cross, NULL, err, sizeof err), -2);
    cr_assert(strstr(err, "different Redis Cluster slots"), "%s", err);
    const char *rd[] = {"XREADGROUP", "GROUP", "g", "c", "COUNT", "5", "STREAMS", "{s}x", ">"};
    cr_assert_eq(stx_cluster_command_slot(9, rd, NULL, NULL, 0), (int)stx_key_slot("s", 1));
    const char *xi[] = {"XINFO", "STREAM", "k"};
    cr_assert_eq(stx_cluster_command_slot(3, xi, NULL, NULL, 0), (int)stx_key_slot("k", 1));
    const char *noargs[] = {"EVALSHA", "x", "0"}, *ping[] = {"PING"}, *wait[] = {"WAIT", "1", "0"};
    cr_assert_eq(stx_cluster_command_slot(3, noargs, NULL, NULL, 0), -1);
    cr_assert_eq(stx_cluster_command_slot(1, ping, NULL, NULL, 0), -1);
    cr_assert_eq(stx_cluster_command_slot(3, wait, NULL, NULL, 0), -1);
}

Test(cluster, url_seeds_and_config_keys)
{
    stx_url u;
    char err[256];
    cr_assert_eq(stx_url_parse("redis://u:p@h1:7000,h2:7001,[::1]:7002,h3/0", &u, err, sizeof err),
                 STX_OK, "%s", err);
    cr_assert_str_eq(u.host, "h1");
    cr_assert_eq(u.port, 7000);
    cr_assert_str_eq(u.seeds, "h2:7001,[::1]:7002,h3:6379");
    cr_assert_str_eq(u.password, "p");
    cr_assert_eq(stx_url_parse("redis://h1:7000,/0", &u, err, sizeof err), STX_EINVAL);
    cr_assert_eq(stx_url_parse("redis://h1:7000,h2:0", &u, err, sizeof err), STX_EINVAL);

    stx_config *c = stx_config_new();
    char buf[256];
    cr_assert_eq(stx_config_get(c, "cluster", buf, sizeof buf), STX_OK);
    cr_assert_str_eq(buf, "auto");
    cr_assert_eq(stx_config_set(c, "cluster", "on", err, sizeof err), STX_OK);
    cr_assert_eq(stx_config_set(c, "cluster", "maybe", err, sizeof err), STX_EINVAL);
    cr_assert_eq(stx_config_set(c, "cluster_nodes", "a:1,b", err, sizeof err), STX_OK, "%s", err);
    cr_assert_eq(stx_config_set(c, "url", "redis://x:1,y:2", err, sizeof err), STX_OK);
    cr_assert_eq(stx_config_get(c, "cluster_nodes", buf, sizeof buf), STX_OK);
    cr_assert_str_eq(buf, "a:1,b:6379"); /* kept across url */
    cr_assert_eq(stx_config_get(c, "cluster", buf, sizeof buf), STX_OK);
    cr_assert_str_eq(buf, "on");
    cr_assert_eq(stx_config_get(c, "url", buf, sizeof buf), STX_OK);
    cr_assert(strstr(buf, "x:1,y:2"), "%s", buf);
    cr_assert_eq(stx_config_set(c, "cluster_nodes", "a:99999", err, sizeof err), STX_EINVAL);
    stx_config_free(c);
}

/* A single Redis in auto mode is a plain session; cluster=on refuses it. */
Test(cluster, single_redis_stays_plain)
{
    test_redis r;
    test_redis_start(&r, 0, NULL);
    stx_client *c = test_client(&r);
    cr_assert_not(stx_cluster_on(&c->conn));
    stx_client_free(c);
    stx_config *conf = stx_config_new();
    char err[256];
    stx_config_set(conf, "url", r.url, err, sizeof err);
    stx_config_set(conf, "cluster", "on", err, sizeof err);
    int rc = stx_client_new(&c, conf);
    cr_assert_eq(rc, STX_EINVAL);
    cr_assert(strstr(stx_client_errmsg(c), "cluster support disabled"), "%s", stx_client_errmsg(c));
    stx_client_free(c);
    stx_config_free(conf);
    test_redis_stop(&r);
}

/* ---- against a cluster --------------------------------------------------- */

Test(cluster, moved_after_migration_and_refresh)
{
    test_cluster tc;
    test_cluster_start(&tc, 0);
    stx_client *c = cluster_client(&tc, NULL);
    char key[10][16];
    for (int i = 0; i < 10; i++) {
        snprintf(key[i], sizeof key[i], "{m}k%d", i);
        set_key(c, key[i], key[i]);
    }
    /* Keys in other slots go to their own masters. */
    set_key(c, "elsewhere", "x");
    set_key(c, "{z}", "y");

    unsigned slot = stx_key_slot("m", 1);
    int from = test_cluster_owner(&tc, slot);
    int to = test_cluster_other_master(&tc, from);
    test_cluster_migrate_slot(&tc, slot, to);

    stx_cluster_stats st;
    stx_cluster_get_stats(&c->conn, &st);
    cr_assert_eq(st.moved, 0);
    for (int i = 0; i < 10; i++) expect_value(c, key[i], key[i]);
    stx_cluster_get_stats(&c->conn, &st);
    cr_assert_eq(st.moved, 1, "one MOVED patches the slot: %lu", st.moved);
    cr_assert_geq(st.refreshes, 1, "the map is learned again after a MOVED");
    char where[64], want[64];
    cr_assert_eq(stx_cluster_slot_where(&c->conn, slot, where, sizeof where), STX_OK);
    snprintf(want, sizeof want, "127.0.0.1:%d", tc.node[to].port);
    cr_assert_str_eq(where, want);
    expect_value(c, "elsewhere", "x");
    expect_value(c, "{z}", "y");

    /* A pipeline of one slot still works, and keys of a script must share one. */
    const char *g0[] = {"GET", key[0]}, *g1[] = {"GET", key[1]};
    cr_assert_eq(stx_conn_append(&c->conn, 2, g0, NULL), STX_OK);
    cr_assert_eq(stx_conn_append(&c->conn, 2, g1, NULL), STX_OK);
    redisReply *r0, *r1;
    cr_assert_eq(stx_conn_read(&c->conn, &r0), STX_OK);
    cr_assert_eq(stx_conn_read(&c->conn, &r1), STX_OK);
    cr_assert_str_eq(r0->str, key[0]);
    cr_assert_str_eq(r1->str, key[1]);
    stx_reply_release(r0);
    stx_reply_release(r1);
    /* MULTI/EXEC (stx_read_range reads XINFO and XRANGE in one) goes to
     * the node of the keys after it, wherever the last command went. */
    for (int s = 0; s < 3; s++) {
        static const char *const streams[] = {"{m}s", "{z}s", "{q}s"};
        stx_field f = {"v", 1, "1", 1};
        stx_produce_result res;
        cr_assert_eq(stx_produce(c, streams[s], &f, 1, NULL, &res), STX_OK, "%s",
                     stx_client_errmsg(c));
        set_key(c, "elsewhere", "x"); /* the last command went to another slot */
        stx_entries *e;
        cr_assert_eq(stx_read_range(c, streams[s], "0", NULL, 10, &e), STX_OK, "%s",
                     stx_client_errmsg(c));
        cr_assert_eq(stx_entries_count(e), 1);
        stx_entries_free(e);
    }
    const char *ev[] = {"EVAL", "return 1", "2", "{m}a", "{n}b"};
    redisReply *r;
    cr_assert_eq(stx_client_command(c, "EVAL", &r, 5, ev, NULL), STX_EINVAL);
    cr_assert(strstr(stx_client_errmsg(c), "different Redis Cluster slots"), "%s",
              stx_client_errmsg(c));
    stx_client_free(c);
    test_cluster_stop(&tc);
}

Test(cluster, ask_and_tryagain_during_migration)
{
    test_cluster tc;
    test_cluster_start(&tc, 0);
    stx_client *c = cluster_client(&tc, "300");
    char key[10][16];
    for (int i = 0; i < 10; i++) {
        snprintf(key[i], sizeof key[i], "{a}k%d", i);
        set_key(c, key[i], key[i]);
    }
    unsigned slot = stx_key_slot("a", 1);
    int from = test_cluster_owner(&tc, slot);
    int to = test_cluster_other_master(&tc, from);
    test_cluster_migrate_begin(&tc, slot, from, to);
    cr_assert_eq(test_cluster_migrate_keys(&tc, slot, from, to, 5), 5);

    /* Keys already moved answer ASK at the source: ASKING + the command
     * at the target; the others are served by the source. */
    for (int i = 0; i < 10; i++) expect_value(c, key[i], key[i]);
    stx_cluster_stats st;
    stx_cluster_get_stats(&c->conn, &st);
    cr_assert_eq(st.ask, 5, "ASK per moved key: %lu", st.ask);
    cr_assert_eq(st.moved, 0);
    /* A new key of the slot is created at the target. */
    set_key(c, "{a}new", "n");
    redisContext *dst = test_cluster_connect(&tc, to);
    freeReplyObject(test_cmd(dst, "ASKING"));
    cr_assert_eq(test_cmd_int(dst, "EXISTS {a}new"), 1);
    redisFree(dst);

    /* Keys on both sides: TRYAGAIN, retried until the command timeout. */
    const char *mget[] = {"MGET", key[0], key[1], key[2], key[3], key[4], key[5], key[6],
                          key[7], key[8], key[9]};
    redisReply *r;
    int rc = stx_client_command(c, "MGET", &r, 11, mget, NULL);
    cr_assert_eq(rc, STX_EREDIS_REFUSED, "%s", stx_client_errmsg(c));
    cr_assert(strstr(stx_client_errmsg(c), "TRYAGAIN"), "%s", stx_client_errmsg(c));
    cr_assert_eq(stx_error_class_of(rc), STX_CLASS_RETRIABLE);
    stx_cluster_get_stats(&c->conn, &st);
    cr_assert_geq(st.tryagain, 2, "backed off and tried again: %lu", st.tryagain);

    /* Once the migration is done, the same command works (one MOVED). */
    while (test_cluster_migrate_keys(&tc, slot, from, to, 100) > 0) {
    }
    test_cluster_migrate_finish(&tc, slot, from, to);
    test_cluster_wait_ok(&tc, slot, 10000);
    rc = stx_client_command(c, "MGET", &r, 11, mget, NULL);
    cr_assert_eq(rc, STX_OK, "%s", stx_client_errmsg(c));
    cr_assert_eq(r->elements, 10);
    for (int i = 0; i < 10; i++) cr_assert_str_eq(r->element[i]->str, key[i]);
    stx_reply_release(r);
    expect_value(c, "{a}new", "n");
    stx_client_free(c);
    test_cluster_stop(&tc);
}

/* Every node's session authenticates: the default user may touch only
 * keys h:*, the user in the URL everything. */
Test(cluster, auth_on_every_node)
{
    static const char *const acl[] = {"--user", "default", "on", "nopass", "~h:*", "&*", "+@all",
                                      "--user", "app", "on", ">s3cret", "~*", "&*", "+@all",
                                      NULL};
    test_cluster tc;
    test_cluster_start_with(&tc, 0, acl);
    char url[1100];
    snprintf(url, sizeof url, "redis://app:s3cret@%s", tc.url + strlen("redis://"));
    stx_config *conf = stx_config_new();
    char err[256];
    cr_assert_eq(stx_config_set(conf, "url", url, err, sizeof err), STX_OK, "%s", err);
    stx_client *c;
    cr_assert_eq(stx_client_new(&c, conf), STX_OK, "%s", c ? stx_client_errmsg(c) : "");
    stx_config_free(conf);
    /* Keys on every master. */
    static const char *const keys[] = {"{a}1", "{b}1", "{c}1", "{d}1", "{e}1", "{f}1"};
    int seen[TEST_CLUSTER_NODES] = {0};
    for (size_t i = 0; i < sizeof keys / sizeof keys[0]; i++) {
        set_key(c, keys[i], "v");
        expect_value(c, keys[i], "v");
        seen[test_cluster_owner(&tc, stx_key_slot(keys[i], strlen(keys[i])))] = 1;
    }
    int masters = 0;
    for (int i = 0; i < TEST_CLUSTER_NODES; i++) masters += seen[i];
    cr_assert_eq(masters, 3, "the keys reach all three masters");
    stx_client_free(c);

    /* Without the credentials: refused (NOPERM), not sent elsewhere. */
    c = cluster_client(&tc, NULL);
    redisReply *r;
    cr_assert_eq(client_cmd(c, &r, "SET", "{a}1", "x"), STX_EAUTH, "%s", stx_client_errmsg(c));
    stx_client_free(c);
    test_cluster_stop(&tc);
}

/* TLS to every node: the slot map a TLS client gets names the TLS ports,
 * and each node's session makes its own handshake with the URL's TLS
 * settings. */
Test(cluster, tls_on_every_node)
{
    char dir[64], ca[128];
    test_tmpdir(dir, sizeof dir);
    test_tls_make(dir);
    snprintf(ca, sizeof ca, "%s/ca.crt", dir);
    test_cluster tc;
    test_cluster_start_tls(&tc, dir);
    stx_config *conf = stx_config_new();
    char err[256];
    cr_assert_eq(stx_config_set(conf, "url", tc.tls_url, err, sizeof err), STX_OK, "%s", err);
    cr_assert_eq(stx_config_set(conf, "tls_ca_file", ca, err, sizeof err), STX_OK, "%s", err);
    stx_client *c;
    cr_assert_eq(stx_client_new(&c, conf), STX_OK, "%s", c ? stx_client_errmsg(c) : "");
    stx_config_free(conf);
    cr_assert(stx_cluster_on(&c->conn));
    static const char *const keys[] = {"{a}1", "{b}1", "{c}1", "{d}1", "{e}1", "{f}1"};
    for (size_t i = 0; i < sizeof keys / sizeof keys[0]; i++) {
        set_key(c, keys[i], "v");
        expect_value(c, keys[i], "v");
        unsigned slot = stx_key_slot(keys[i], strlen(keys[i]));
        char where[64], want[64];
        cr_assert_eq(stx_cluster_slot_where(&c->conn, slot, where, sizeof where), STX_OK);
        snprintf(want, sizeof want, "127.0.0.1:%d", tc.node[test_cluster_owner(&tc, slot)].tls_port);
        cr_assert_str_eq(where, want);
    }
    stx_client_free(c);
    test_cluster_stop(&tc);
    test_rmrf(dir);
}

/* Retry a produce through a failover (the client does not retry itself). */
static int produce_retrying(stx_client *c, const char *stream, const char *idem,
                            stx_produce_result *res)
{
    stx_field f = {"v", 1, idem, strlen(idem)};
    stx_produce_opts o = {.idempotency_key = idem};
    int64_t deadline = test_now_ms() + 30000;
    for (;;) {
        int rc = stx_produce(c, stream, &f, 1, &o, res);
        if (rc == STX_OK || stx_error_class_of(rc) != STX_CLASS_RETRIABLE ||
            test_now_ms() > deadline)
            return rc;
        wl_sleep_ms(100);
    }
}

Test(cluster, noscript_reload_after_failover)
{
    test_cluster tc;
    test_cluster_start(&tc, 0);
    stx_client *c = cluster_client(&tc, NULL);
    const char *stream = "{ns}events";
    stx_produce_result first, again, second;
    cr_assert_eq(produce_retrying(c, stream, "id-1", &first), STX_OK, "%s", stx_client_errmsg(c));
    unsigned slot = stx_key_slot("ns", 2);
    int old = test_cluster_owner(&tc, slot);
    /* WAIT on the client's connection (it goes where the produce went): the
     * entry and its dedup record are on the replica. */
    redisReply *w;
    cr_assert_eq(client_cmd(c, &w, "WAIT", "1", "5000"), STX_OK, "%s", stx_client_errmsg(c));
    cr_assert_eq(w->integer, 1);
    stx_reply_release(w);
    unsigned long reloads = c->scripts.reloads;

    int now = test_cluster_kill_master(&tc, slot);
    cr_assert_neq(now, old);
    /* The promoted replica has the data but not the script. */
    redisContext *n = test_cluster_connect(&tc, now);
    redisReply *ex = test_cmd(n, "SCRIPT EXISTS %s", c->scripts.s[STX_SCRIPT_PRODUCE].sha);
    cr_assert_eq(ex->element[0]->integer, 0);
    freeReplyObject(ex);
    redisFree(n);

    cr_assert_eq(produce_retrying(c, stream, "id-1", &again), STX_OK, "%s", stx_client_errmsg(c));
    cr_assert_eq(again.duplicate, 1, "the dedup record came through the failover");
    cr_assert_str_eq(again.id, first.id);
    cr_assert_eq(produce_retrying(c, stream, "id-2", &second), STX_OK, "%s", stx_client_errmsg(c));
    cr_assert_eq(second.duplicate, 0);
    cr_assert_eq(c->scripts.reloads, reloads + 1, "NOSCRIPT loaded the script once");
    stx_client_free(c);
    test_cluster_stop(&tc);
}

Test(cluster, processor_continues_through_failover)
{
    test_cluster tc;
    test_cluster_start(&tc, 0);
    workload w;
    char name[48];
    snprintf(name, sizeof name, "{wl%ld}o", (long)getpid());
    wl_init(&w, &tc.node[0], name);
    w.url = tc.url;
    w.batch_size = 2;
    unsigned slot = stx_key_slot(w.stream, strlen(w.stream));
    cr_assert_eq(slot, stx_key_slot(w.alerts, strlen(w.alerts)), "stream and alerts share a slot");
    int old = test_cluster_owner(&tc, slot);
    /* The workload's checks talk to the slot's master directly. */
    w.redis = &tc.node[old];
    redisContext *m = test_cluster_connect(&tc, old);
    wl_produce(&w, m, 4000, 0);
    cr_assert_eq(test_cmd_int(m, "WAIT 1 5000"), 1);

    pid_t pid = wl_spawn(&w, 0);
    char meta[256];
    stx_key_name(meta, sizeof meta, w.stream, w.group, "meta");
    int64_t deadline = test_now_ms() + 30000;
    for (;;) { /* kill the master once the processor committed something */
        redisReply *r = test_cmd(m, "HGET %s offset", meta);
        int started = r->type == REDIS_REPLY_STRING && strcmp(r->str, "0-0") != 0;
        if (started) cr_log_info("master killed at offset %s", r->str);
        freeReplyObject(r);
        if (started) break;
        cr_assert(test_now_ms() < deadline, "the processor committed nothing");
        wl_sleep_ms(5);
    }
    redisFree(m);
    int now = test_cluster_kill_master(&tc, slot);
    cr_assert_neq(now, old);
    w.redis = &tc.node[now];
    m = test_cluster_connect(&tc, now);
    wl_wait_caught_up(&w, m, 60000);
    wl_check(&w, m, 0);
    kill(pid, SIGTERM);
    int status;
    cr_assert_eq(waitpid(pid, &status, 0), pid);
    cr_assert(WIFEXITED(status) && WEXITSTATUS(status) == 0, "worker status %d", status);
    wl_check(&w, m, 0);
    redisFree(m);
    test_cluster_stop(&tc);
}

static int count_handler(const stx_msg *msg, stx_txn *txn, void *ud)
{
    (void)ud;
    size_t klen;
    const char *k = stx_msg_get(msg, "k", &klen);
    if (!k) return stx_txn_fail(txn, "no k");
    int64_t v;
    int rc = stx_txn_incr(txn, k, klen, 1, &v);
    return rc == STX_OK ? stx_txn_incr(txn, "total", 5, 1, &v) : rc;
}

/* Run a processor in this process over n entries of stream; returns its stats. */
static stx_stats run_counting(const test_cluster *tc, const char *stream, int n,
                              const char *replicas, const char *timeout_ms)
{
    unsigned slot = stx_key_slot(stream, strlen(stream));
    redisContext *m = test_cluster_connect(tc, test_cluster_owner(tc, slot));
    for (int i = 0; i < n; i++) freeReplyObject(test_cmd(m, "XADD %s * k %d", stream, i % 3));
    redisFree(m);
    stx_config *conf = stx_config_new();
    char err[256];
    const char *kv[] = {"url", tc->url, "stream", stream, "group", "g", "consumer", "c",
                        "block_ms", "50", "batch_size", "2", "log_level", "error",
                        "commit_wait_replicas", replicas, "commit_wait_timeout_ms", timeout_ms,
                        NULL};
    for (int i = 0; kv[i]; i += 2)
        cr_assert_eq(stx_config_set(conf, kv[i], kv[i + 1], err, sizeof err), STX_OK, "%s", err);
    stx_config_set_handler(conf, count_handler, NULL);
    stx_processor *p;
    cr_assert_eq(stx_processor_new(&p, conf), STX_OK);
    stx_config_free(conf);
    int total = 0;
    for (;;) {
        int k = stx_processor_poll(p);
        cr_assert(k >= 0, "poll: %s: %s", stx_strerror(k), stx_processor_errmsg(p));
        if (k == 0 && total >= n) break;
        total += k;
    }
    cr_assert_eq(total, n);
    stx_stats st;
    stx_processor_stats(p, &st);
    stx_processor_free(p);
    return st;
}

/* WAIT goes to the node of the commit: its one replica acknowledges each
 * commit; asking for two counts every commit as unacknowledged. */
Test(cluster, commit_wait_replicas)
{
    test_cluster tc;
    test_cluster_start(&tc, 0);
    stx_stats st = run_counting(&tc, "{cw}one", 10, "1", "2000");
    cr_assert_geq(st.commits, 5);
    cr_assert_eq(st.commits_unreplicated, 0);
    st = run_counting(&tc, "{cw}two", 10, "2", "5");
    cr_assert_geq(st.commits, 5);
    cr_assert_eq(st.commits_unreplicated, st.commits);
    test_cluster_stop(&tc);
}

static int64_t state_at(const test_cluster *tc, int node, const char *stream, const char *key)
{
    char name[256];
    cr_assert(stx_key_name(name, sizeof name, stream, "g", "state") > 0);
    redisContext *m = test_cluster_connect(tc, node);
    redisReply *r = test_cmd(m, "HGET %s %s", name, key);
    cr_assert_eq(r->type, REDIS_REPLY_STRING, "state key %s missing", key);
    int64_t v;
    cr_assert_eq(stx_mp_read_i64(r->str, r->len, &v), STX_OK);
    freeReplyObject(r);
    redisFree(m);
    return v;
}

/* Poll until at least `until` entries were committed in all (retriable
 * errors are retried, as stx_processor_run() would). */
static void poll_until(stx_processor *p, long *total, long until)
{
    int64_t deadline = test_now_ms() + 30000;
    while (*total < until) {
        int k = stx_processor_poll(p);
        if (k < 0) {
            cr_assert_eq(stx_error_class_of(k), STX_CLASS_RETRIABLE, "poll: %s: %s",
                         stx_strerror(k), stx_processor_errmsg(p));
            wl_sleep_ms(20);
        } else {
            *total += k;
        }
        cr_assert(test_now_ms() < deadline, "stuck at %ld of %ld", *total, until);
    }
}

/* The slot of a running processor moves to another master: while its keys
 * are at the target (IMPORTING) every commit and pipelined read goes there
 * with ASK (and the script is loaded there on NOSCRIPT); once the slot is
 * the target's, MOVED.  Every entry is counted once. */
Test(cluster, processor_through_slot_migration)
{
    test_cluster tc;
    test_cluster_start(&tc, 0);
    const char *stream = "{mig}s";
    unsigned slot = stx_key_slot("mig", 3);
    int from = test_cluster_owner(&tc, slot), to = test_cluster_other_master(&tc, from);
    redisContext *m = test_cluster_connect(&tc, from);
    for (int i = 0; i < 90; i++) freeReplyObject(test_cmd(m, "XADD %s * k %d", stream, i % 3));
    redisFree(m);
    stx_config *conf = stx_config_new();
    char err[256];
    const char *kv[] = {"url", tc.url, "stream", stream, "group", "g", "consumer", "c",
                        "block_ms", "50", "batch_size", "2", "log_level", "error",
                        "command_timeout_ms", "1000", NULL};
    for (int i = 0; kv[i]; i += 2)
        cr_assert_eq(stx_config_set(conf, kv[i], kv[i + 1], err, sizeof err), STX_OK, "%s", err);
    stx_config_set_handler(conf, count_handler, NULL);
    stx_processor *p;
    cr_assert_eq(stx_processor_new(&p, conf), STX_OK);
    stx_config_free(conf);
    long total = 0;
    poll_until(p, &total, 20);

    test_cluster_migrate_begin(&tc, slot, from, to);
    while (test_cluster_migrate_keys(&tc, slot, from, to, 100) > 0) {
    }
    /* A few polls while the keys are at the target: the read goes there
     * with ASK; a commit whose keys do not all exist there yet (the
     * attempts hash, created by the commit) is refused with TRYAGAIN until
     * the migration ends, which the processor retries. */
    for (int i = 0; i < 3; i++) {
        int k = stx_processor_poll(p);
        if (k > 0) total += k;
        else if (k < 0)
            cr_assert_eq(stx_error_class_of(k), STX_CLASS_RETRIABLE, "poll: %s: %s",
                         stx_strerror(k), stx_processor_errmsg(p));
    }
    stx_cluster_stats st;
    stx_cluster_get_stats(&p->conn, &st);
    cr_assert_gt(st.ask, 0, "commands went to the importing node with ASK");

    test_cluster_migrate_finish(&tc, slot, from, to);
    test_cluster_wait_ok(&tc, slot, 10000);
    poll_until(p, &total, 90);
    cr_assert_eq(stx_processor_poll(p), 0);
    stx_cluster_get_stats(&p->conn, &st);
    cr_assert_gt(st.moved, 0, "the processor followed the slot to its new master");
    stx_stats ps;
    stx_processor_stats(p, &ps);
    cr_assert_eq(ps.committed, 90);
    stx_processor_free(p);
    for (int k = 0; k < 3; k++) {
        char key[4];
        snprintf(key, sizeof key, "%d", k);
        cr_assert_eq(state_at(&tc, to, stream, key), 30, "count of k=%d", k);
    }
    cr_assert_eq(state_at(&tc, to, stream, "total"), 90);
    test_cluster_stop(&tc);
}

/* stx_stream_names() (stx streams, stx top) lists the streams of every
 * master, not only those of the node the client happens to talk to. */
Test(cluster, stream_names_from_every_master)
{
    test_cluster tc;
    test_cluster_start(&tc, 0);
    stx_client *c = cluster_client(&tc, NULL);
    /* Names until each master holds at least one. */
    char names[32][16];
    int owners[TEST_CLUSTER_NODES] = {0};
    size_t n = 0;
    for (int i = 0; n < 32; i++) {
        snprintf(names[n], sizeof names[n], "s%d", i);
        const char *argv[] = {"XADD", names[n], "*", "k", "v"};
        stx_reply *r;
        cr_assert_eq(stx_client_call(c, 5, argv, NULL, &r), STX_OK, "%s", stx_client_errmsg(c));
        stx_reply_free(r);
        owners[test_cluster_owner(&tc, stx_key_slot(names[n], strlen(names[n])))]++;
        n++;
        int masters = 0;
        for (int k = 0; k < TEST_CLUSTER_NODES; k++) masters += owners[k] > 0;
        if (masters == 3 && n >= 6) break;
    }
    char **got;
    size_t ngot;
    cr_assert_eq(stx_stream_names(c, &got, &ngot), STX_OK, "%s", stx_client_errmsg(c));
    cr_assert_eq(ngot, n, "%zu of %zu streams listed", ngot, n);
    for (size_t i = 0; i < n; i++) {
        int found = 0;
        for (size_t j = 0; j < ngot; j++) found |= strcmp(got[j], names[i]) == 0;
        cr_assert(found, "%s not listed", names[i]);
    }
    for (size_t j = 1; j < ngot; j++) cr_assert_lt(strcmp(got[j - 1], got[j]), 0, "not sorted");
    stx_stream_names_free(got, ngot);
    stx_client_free(c);
    test_cluster_stop(&tc);
}
