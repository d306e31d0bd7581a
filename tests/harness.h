/* Test harness: real redis-server processes on free loopback ports, each in
 * its own temporary directory, plus small helpers around hiredis. */
#ifndef STX_TEST_HARNESS_H
#define STX_TEST_HARNESS_H

#include <stddef.h>
#include <stdint.h>
#include <sys/types.h>
#include <hiredis/hiredis.h>

typedef struct test_redis {
    int port;
    pid_t pid;          /* 0 when not running */
    char dir[256];      /* temporary working directory (removed by stop) */
    char url[128];      /* "redis://127.0.0.1:PORT" */
    int appendonly;     /* started with --appendonly yes --appendfsync always */
    int tls_port;       /* test_redis_start_tls(): the TLS port; 0 otherwise */
    char tls_url[128];  /* "rediss://127.0.0.1:TLS_PORT" */
} test_redis;

/* Start redis-server on a free port in a new temporary directory; waits
 * until it answers PING.  appendonly: 1 = AOF with appendfsync always.
 * extra: NULL-terminated list of further redis-server arguments, or NULL.
 * Aborts the test (cr_assert) on failure. */
void test_redis_start(test_redis *r, int appendonly, const char *const *extra);
/* Make test certificates in dir with the openssl tool (asserts):
 *   ca.crt/ca.key        the test CA
 *   server.crt/.key      signed by it, subjectAltName DNS:localhost, IP:127.0.0.1
 *   client.crt/.key      a client certificate signed by it
 *   expired.crt          the server key's certificate, expired yesterday
 *   other.crt            the server key's certificate for DNS:other.example only
 *   wrongca.crt          another CA, which signed none of these */
void test_tls_make(const char *dir);
/* Start redis-server as test_redis_start() does (the plain port stays, for
 * readiness checks and hiredis helpers) and also listening with TLS on
 * r->tls_port with dir/CERT.crt and dir/server.key, trusting dir/ca.crt for
 * client certificates; auth_clients is "no", "optional" or "yes"
 * (--tls-auth-clients).  r->tls_url is set. */
void test_redis_start_tls(test_redis *r, const char *dir, const char *cert,
                          const char *auth_clients, const char *const *extra);
/* SIGKILL the server (keeps its directory, so restart() reloads the AOF). */
void test_redis_kill(test_redis *r);
/* Start the server again on the same port and directory; waits for PING
 * (and for the AOF to be loaded). */
void test_redis_restart(test_redis *r);
/* Stop the server (SIGKILL) and remove its directory. */
void test_redis_stop(test_redis *r);

/* New hiredis connection to r (asserts). */
redisContext *test_redis_connect(const test_redis *r);
/* Run a command (printf-style as redisCommand), assert no error reply,
 * return the reply (caller frees with freeReplyObject). */
redisReply *test_cmd(redisContext *c, const char *fmt, ...);
/* Integer reply of a command (asserts type). */
long long test_cmd_int(redisContext *c, const char *fmt, ...);

/* SHA1 of one of the library's scripts (STX_SCRIPT_* from scripts.h), as
 * Redis names it: the script is loaded with SCRIPT LOAD on c.  Lets a test
 * recognise, e.g., the commit EVALSHA on the wire. */
void test_script_sha(redisContext *c, int which, char out[41]);

/* A new streamtx client connected to r (asserts); free with stx_client_free(). */
struct stx_client *test_client(const test_redis *r);

/* A new temporary directory (mkdtemp under /tmp), path into buf. */
void test_tmpdir(char *buf, size_t cap);
/* rm -rf path. */
void test_rmrf(const char *path);

/* Unique key prefix for this test process ("t<pid>-<counter>"). */
const char *test_unique(const char *base, char *buf, size_t cap);

/* ---- Redis Cluster on loopback ------------------------------------- */

#define TEST_CLUSTER_NODES 6

/* 3 masters with 1 replica each, made by redis-cli --cluster create. */
typedef struct test_cluster {
    test_redis node[TEST_CLUSTER_NODES];
    char id[TEST_CLUSTER_NODES][41];    /* CLUSTER MYID of each node */
    char url[512];                      /* every node as a seed: "redis://h:p,h:p,..." */
    char tls_url[512];                  /* test_cluster_start_tls(): "rediss://..." TLS ports */
} test_cluster;

/* Start the 6 nodes (cluster-enabled, node timeout 1500 ms, diskless sync
 * without delay; appendonly as test_redis_start()), create the cluster and
 * wait until every node says cluster_state:ok, knows all nodes and agrees
 * on the slot map, and every replica's link is up and synced (asserts,
 * within 30 s). */
void test_cluster_start(test_cluster *c, int appendonly);
/* The same with more redis-server arguments (NULL-terminated; the harness
 * itself connects as the default user, without a password). */
void test_cluster_start_with(test_cluster *c, int appendonly, const char *const *more);
/* The same over TLS (test_redis_start_tls() with dir/server.crt, client
 * certificates not asked for; bus and replication over TLS too): clients
 * use c->tls_url with tls_ca_file dir/ca.crt; the plain ports stay for the
 * harness. */
void test_cluster_start_tls(test_cluster *c, const char *dir);
/* Kill every node and remove their directories. */
void test_cluster_stop(test_cluster *c);
/* hiredis connection to node i (asserts). */
redisContext *test_cluster_connect(const test_cluster *c, int i);
/* Index of the node that is master of slot, as node `ask` (a live node)
 * sees it; -1 when none. */
int test_cluster_master_of(const test_cluster *c, int ask, unsigned slot);
/* Index of the live master of slot, as every live node agrees (asserts). */
int test_cluster_owner(const test_cluster *c, unsigned slot);
/* Wait until every live node says cluster_state:ok and agrees that slot is
 * served by a live master, and every live replica is in sync (asserts
 * within timeout_ms). */
void test_cluster_wait_ok(const test_cluster *c, unsigned slot, long timeout_ms);
/* SIGKILL the master of slot and wait until one of its replicas serves the
 * slot (test_cluster_wait_ok).  Returns the new master's index. */
int test_cluster_kill_master(test_cluster *c, unsigned slot);
/* A live master other than node i (asserts). */
int test_cluster_other_master(const test_cluster *c, int i);
/* Slot migration by hand, in the steps Redis documents:
 *   begin:  target SETSLOT IMPORTING source, source SETSLOT MIGRATING target;
 *   keys:   MIGRATE up to n of the slot's keys from source to target (returns
 *           how many moved);
 *   finish: SETSLOT NODE target on the target, the source and the other
 *           masters.
 * test_cluster_migrate_slot() does all three, moving every key. */
void test_cluster_migrate_begin(const test_cluster *c, unsigned slot, int from, int to);
long test_cluster_migrate_keys(const test_cluster *c, unsigned slot, int from, int to, long n);
void test_cluster_migrate_finish(const test_cluster *c, unsigned slot, int from, int to);
void test_cluster_migrate_slot(const test_cluster *c, unsigned slot, int to);

/* Milliseconds of CLOCK_MONOTONIC. */
int64_t test_now_ms(void);

#endif
