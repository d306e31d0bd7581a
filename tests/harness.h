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

/* Milliseconds of CLOCK_MONOTONIC. */
int64_t test_now_ms(void);

#endif
