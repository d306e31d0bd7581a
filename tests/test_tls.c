/* The session layer over TLS (rediss://), over Unix sockets (unix://), and
 * against a hostile server: the processor, the producer and the reader work
 * over each transport, and every TLS failure is a clear error, fast. */
#include <criterion/criterion.h>
#include <errno.h>
#include <netinet/in.h>
#include <pthread.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <unistd.h>
#include <arpa/inet.h>

#include "connection.h"
#include "reply.h"
#include "harness.h"
#include "streamtx.h"
#include "workload.h"

TestSuite(tls, .timeout = 300);
TestSuite(unix_socket, .timeout = 300);
TestSuite(session, .timeout = 120);

#define CONNECT_MS 1500

/* A configuration for url with more key/value pairs (NULL-terminated). */
static stx_config *conf_of(const char *url, const char *const *kv)
{
    stx_config *c = stx_config_new();
    char err[256];
    cr_assert_eq(stx_config_set(c, "url", url, err, sizeof err), STX_OK, "%s", err);
    cr_assert_eq(stx_config_set(c, "connect_timeout_ms", "1500", err, sizeof err), STX_OK);
    for (int i = 0; kv && kv[i]; i += 2)
        cr_assert_eq(stx_config_set(c, kv[i], kv[i + 1], err, sizeof err), STX_OK, "%s: %s",
                     kv[i], err);
    return c;
}

/* stx_client_new() must fail with code and a message holding want, within
 * the connect timeout (plus slack for a loaded machine). */
static void expect_fail(const char *url, const char *const *kv, int code, const char *want)
{
    stx_config *conf = conf_of(url, kv);
    stx_client *c = NULL;
    int64_t t0 = test_now_ms();
    int rc = stx_client_new(&c, conf);
    int64_t took = test_now_ms() - t0;
    cr_assert_eq(rc, code, "expected %s, got %s: %s", stx_strerror(code), stx_strerror(rc),
                 stx_client_errmsg(c));
    cr_assert(strstr(stx_client_errmsg(c), want), "message '%s' lacks '%s'",
              stx_client_errmsg(c), want);
    cr_assert_lt(took, CONNECT_MS + 1000, "took %lld ms", (long long)took);
    if (getenv("STX_TEST_VERBOSE")) fprintf(stderr, "%lld ms: %s\n", (long long)took, stx_client_errmsg(c));
    stx_client_free(c);
    stx_config_free(conf);
}

/* Produce n messages over conf's address, read them back, exactly. */
static void produce_and_read(const stx_config *conf, const char *stream, int n)
{
    stx_client *c;
    cr_assert_eq(stx_client_new(&c, conf), STX_OK, "%s", stx_client_errmsg(c));
    for (int i = 0; i < n; i++) {
        char v[32];
        snprintf(v, sizeof v, "value-%d", i);
        stx_field f[] = {{"n", 1, v, strlen(v)}};
        stx_produce_result res;
        cr_assert_eq(stx_produce(c, stream, f, 1, NULL, &res), STX_OK, "%s",
                     stx_client_errmsg(c));
    }
    stx_entries *e;
    cr_assert_eq(stx_read_range(c, stream, "0", NULL, 0, &e), STX_OK, "%s",
                 stx_client_errmsg(c));
    cr_assert_eq(stx_entries_count(e), (size_t)n);
    for (int i = 0; i < n; i++) {
        char v[32];
        snprintf(v, sizeof v, "value-%d", i);
        size_t len;
        const char *got = stx_msg_get(stx_entries_at(e, (size_t)i), "n", &len);
        cr_assert(got && len == strlen(v) && memcmp(got, v, len) == 0, "entry %d", i);
    }
    stx_entries_free(e);
    stx_client_free(c);
}

/* The workload killed with SIGKILL `kills` times, then run to the end:
 * every entry applied exactly once. */
static void kill_loop(test_redis *r, const char *url, const char *const *kv, int kills)
{
    redisContext *c = test_redis_connect(r);
    workload w;
    wl_init(&w, r, "tl");
    w.url = url;
    w.conf = kv;
    for (int k = 0; k < kills; k++) {
        wl_produce(&w, c, 300, 0);
        pid_t pid = wl_spawn(&w, 0);
        wl_sleep_ms(30 + (long)(wl_rand(&w.seed) % 120));
        kill(pid, SIGKILL);
        int status;
        cr_assert_eq(waitpid(pid, &status, 0), pid);
    }
    pid_t pid = wl_spawn(&w, 1);
    int status;
    cr_assert_eq(waitpid(pid, &status, 0), pid);
    cr_assert(WIFEXITED(status) && WEXITSTATUS(status) == 0, "final run: status %d", status);
    wl_check(&w, c, 0);
    redisFree(c);
}

static char dir[256];
static char ca[300], wrong_ca[300], client_crt[300], client_key[300];

static void certs(void)
{
    test_tmpdir(dir, sizeof dir);
    test_tls_make(dir);
    snprintf(ca, sizeof ca, "%s/ca.crt", dir);
    snprintf(wrong_ca, sizeof wrong_ca, "%s/wrongca.crt", dir);
    snprintf(client_crt, sizeof client_crt, "%s/client.crt", dir);
    snprintf(client_key, sizeof client_key, "%s/client.key", dir);
}

Test(tls, processor_producer_and_reader_over_rediss)
{
    certs();
    test_redis r;
    test_redis_start_tls(&r, dir, "server", "optional", NULL);
    const char *kv[] = {"tls_ca_file", ca, NULL};
    kill_loop(&r, r.tls_url, kv, 4);
    stx_config *conf = conf_of(r.tls_url, kv);
    produce_and_read(conf, "tls-produced", 25);
    stx_config_free(conf);
    /* The same with the host name checked through SNI and a name. */
    const char *named[] = {"tls_ca_file", ca, "tls_server_name", "localhost", NULL};
    conf = conf_of(r.tls_url, named);
    produce_and_read(conf, "tls-named", 3);
    stx_config_free(conf);
    test_redis_stop(&r);
    test_rmrf(dir);
}

Test(tls, client_certificate_required)
{
    certs();
    test_redis r;
    test_redis_start_tls(&r, dir, "server", "yes", NULL);
    const char *none[] = {"tls_ca_file", ca, NULL};
    expect_fail(r.tls_url, none, STX_ETLS, "client certificate");
    const char *with[] = {"tls_ca_file", ca, "tls_cert_file", client_crt,
                          "tls_key_file", client_key, NULL};
    stx_config *conf = conf_of(r.tls_url, with);
    produce_and_read(conf, "tls-client-cert", 5);
    stx_config_free(conf);
    const char *half[] = {"tls_ca_file", ca, "tls_cert_file", client_crt, NULL};
    expect_fail(r.tls_url, half, STX_ETLS, "tls_cert_file and tls_key_file go together");
    test_redis_stop(&r);
    test_rmrf(dir);
}

Test(tls, certificate_checks_fail_clearly)
{
    certs();
    test_redis good, expired, other;
    test_redis_start_tls(&good, dir, "server", "optional", NULL);
    test_redis_start_tls(&expired, dir, "expired", "optional", NULL);
    test_redis_start_tls(&other, dir, "other", "optional", NULL);

    const char *wrong[] = {"tls_ca_file", wrong_ca, NULL};
    expect_fail(good.tls_url, wrong, STX_ETLS, "unknown CA");
    const char *right[] = {"tls_ca_file", ca, NULL};
    expect_fail(expired.tls_url, right, STX_ETLS, "certificate has expired");
    expect_fail(other.tls_url, right, STX_ETLS, "IP address mismatch");
    const char *by_name[] = {"tls_ca_file", ca, "tls_server_name", "localhost", NULL};
    expect_fail(other.tls_url, by_name, STX_ETLS, "hostname mismatch");
    const char *elsewhere[] = {"tls_ca_file", ca, "tls_server_name", "other.example", NULL};
    expect_fail(good.tls_url, elsewhere, STX_ETLS, "hostname mismatch");
    const char *missing[] = {"tls_ca_file", "/nonexistent/ca.crt", NULL};
    expect_fail(good.tls_url, missing, STX_ETLS,
                "TLS: cannot read tls_ca_file '/nonexistent/ca.crt': No such file or directory");

    /* tls_verify 0 accepts what the checks refuse (explicitly insecure). */
    const char *insecure[] = {"tls_ca_file", wrong_ca, "tls_verify", "0", NULL};
    stx_config *conf = conf_of(expired.tls_url, insecure);
    produce_and_read(conf, "tls-insecure", 2);
    stx_config_free(conf);

    test_redis_stop(&good);
    test_redis_stop(&expired);
    test_redis_stop(&other);
    test_rmrf(dir);
}

static int noop_handler(const stx_msg *msg, stx_txn *txn, void *ud)
{
    (void)txn;
    (void)msg;
    (void)ud;
    return STX_OK;
}

Test(tls, processor_stops_on_a_certificate_failure)
{
    certs();
    test_redis r;
    test_redis_start_tls(&r, dir, "server", "optional", NULL);
    const char *wrong[] = {"tls_ca_file", wrong_ca, "stream", "s", "group", "g", NULL};
    stx_config *conf = conf_of(r.tls_url, wrong);
    stx_config_set_handler(conf, noop_handler, NULL);
    stx_processor *p;
    cr_assert_eq(stx_processor_new(&p, conf), STX_OK);
    int64_t t0 = test_now_ms();
    int rc = stx_processor_run(p);
    cr_assert_eq(rc, STX_ETLS, "%s: %s", stx_strerror(rc), stx_processor_errmsg(p));
    cr_assert(strstr(stx_processor_errmsg(p), "unknown CA"), "%s",
              stx_processor_errmsg(p));
    cr_assert_lt(test_now_ms() - t0, CONNECT_MS + 1000);
    cr_assert_eq(stx_error_class_of(STX_ETLS), STX_CLASS_FATAL);
    stx_processor_free(p);
    stx_config_free(conf);
    test_redis_stop(&r);
    test_rmrf(dir);
}

Test(tls, wrong_protocol_on_either_side)
{
    certs();
    test_redis r;
    test_redis_start_tls(&r, dir, "server", "optional", NULL);
    /* A plain client against the TLS port. */
    char plain_to_tls[128];
    snprintf(plain_to_tls, sizeof plain_to_tls, "redis://127.0.0.1:%d", r.tls_port);
    expect_fail(plain_to_tls, NULL, STX_ECONN, "rediss://");
    /* A TLS client against the plain port. */
    char tls_to_plain[128];
    snprintf(tls_to_plain, sizeof tls_to_plain, "rediss://127.0.0.1:%d", r.port);
    const char *kv[] = {"tls_ca_file", ca, NULL};
    expect_fail(tls_to_plain, kv, STX_ECONN, "non-TLS port");
    test_redis_stop(&r);
    test_rmrf(dir);
}

/* ------------------------------------------------------------------ */
/* Unix sockets                                                        */

Test(unix_socket, processor_and_client_over_unix_url)
{
    char sdir[256], sock[300];
    test_tmpdir(sdir, sizeof sdir);
    snprintf(sock, sizeof sock, "%s/redis.sock", sdir);
    const char *extra[] = {"--unixsocket", sock, "--unixsocketperm", "700", NULL};
    test_redis r;
    test_redis_start(&r, 0, extra);
    char url[400];
    /* An ACL user with a password, as on a managed Redis. */
    redisContext *c = test_redis_connect(&r);
    freeReplyObject(test_cmd(c, "ACL SETUSER app on >s3cret ~* &* +@all"));
    snprintf(url, sizeof url, "unix://app:s3cret@%s", sock);
    {
        workload w;
        wl_init(&w, &r, "ux");
        w.url = url;
        for (int k = 0; k < 3; k++) {
            wl_produce(&w, c, 300, 0);
            pid_t pid = wl_spawn(&w, 0);
            wl_sleep_ms(30 + (long)(wl_rand(&w.seed) % 100));
            kill(pid, SIGKILL);
            cr_assert_eq(waitpid(pid, NULL, 0), pid);
        }
        pid_t pid = wl_spawn(&w, 1);
        int status;
        cr_assert_eq(waitpid(pid, &status, 0), pid);
        cr_assert(WIFEXITED(status) && WEXITSTATUS(status) == 0, "status %d", status);
        wl_check(&w, c, 0);
    }
    stx_config *conf = conf_of(url, NULL);
    produce_and_read(conf, "ux-produced", 10);
    stx_config_free(conf);
    /* redis+unix:// with ?db=N selects that database. */
    snprintf(url, sizeof url, "redis+unix://app:s3cret@%s?db=3", sock);
    conf = conf_of(url, NULL);
    produce_and_read(conf, "ux-db3", 4);
    stx_config_free(conf);
    freeReplyObject(test_cmd(c, "SELECT 3"));
    cr_assert_eq(test_cmd_int(c, "XLEN ux-db3"), 4);
    freeReplyObject(test_cmd(c, "SELECT 0"));
    cr_assert_eq(test_cmd_int(c, "EXISTS ux-db3"), 0);
    /* A wrong password and a missing socket are clear. */
    snprintf(url, sizeof url, "unix://app:wrong@%s", sock);
    expect_fail(url, NULL, STX_EAUTH, "AUTH refused by unix:");
    snprintf(url, sizeof url, "unix://%s/none.sock", sdir);
    expect_fail(url, NULL, STX_ECONN, "No such file or directory");
    redisFree(c);
    test_redis_stop(&r);
    test_rmrf(sdir);
}

Test(session, urls_and_tls_keys)
{
    stx_config *c = stx_config_new();
    char err[256], buf[512];
    cr_assert_eq(stx_config_set(c, "tls_ca_file", "/etc/ca.pem", err, sizeof err), STX_OK);
    cr_assert_eq(stx_config_set(c, "url", "rediss://u:p@example.com:6380/2", err, sizeof err),
                 STX_OK);
    stx_config_get(c, "tls", buf, sizeof buf);
    cr_assert_str_eq(buf, "1");
    stx_config_get(c, "tls_ca_file", buf, sizeof buf); /* a url keeps the tls_* keys */
    cr_assert_str_eq(buf, "/etc/ca.pem");
    stx_config_get(c, "url", buf, sizeof buf);
    cr_assert_str_eq(buf, "rediss://u:***@example.com:6380/2");
    stx_config_get(c, "tls_verify", buf, sizeof buf);
    cr_assert_str_eq(buf, "1");
    cr_assert_eq(stx_config_set(c, "tls_verify", "yes", err, sizeof err), STX_EINVAL);
    cr_assert_str_eq(err, "tls_verify must be 0 or 1, not 'yes'");
    cr_assert_eq(stx_config_set(c, "url", "unix:///run/redis.sock?db=4", err, sizeof err), STX_OK);
    stx_config_get(c, "url", buf, sizeof buf);
    cr_assert_str_eq(buf, "unix:///run/redis.sock?db=4");
    cr_assert_eq(stx_config_set(c, "url", "unix://run/redis.sock", err, sizeof err), STX_EINVAL);
    cr_assert(strstr(err, "absolute socket path"), "%s", err);
    cr_assert_eq(stx_config_set(c, "url", "unix:///r.sock?dbx=1", err, sizeof err), STX_EINVAL);
    cr_assert(strstr(err, "unknown parameter 'dbx=1'"), "%s", err);
    cr_assert_eq(stx_config_set(c, "url", "unix:///r.sock?db=x", err, sizeof err), STX_EINVAL);
    cr_assert(strstr(err, "db must be a number"), "%s", err);
    cr_assert_eq(stx_config_set(c, "url", "http://x", err, sizeof err), STX_EINVAL);
    cr_assert(strstr(err, "rediss://"), "%s", err);
    stx_config_free(c);

    stx_url u;
    cr_assert_eq(stx_url_parse("redis+unix://user:p%40ss@/tmp/r.sock?db=2", &u, err, sizeof err),
                 STX_OK, "%s", err);
    cr_assert_str_eq(u.path, "/tmp/r.sock");
    cr_assert_str_eq(u.user, "user");
    cr_assert_str_eq(u.password, "p@ss");
    cr_assert_eq(u.db, 2);
    cr_assert_eq(u.tls, 0);
    cr_assert_eq(stx_url_parse("rediss://[::1]:7000", &u, err, sizeof err), STX_OK);
    cr_assert_str_eq(u.host, "::1");
    cr_assert_eq(u.port, 7000);
    cr_assert_eq(u.tls, 1);
    cr_assert_eq(u.tls_opts.verify, 1);
    stx_url_where(&u, buf, sizeof buf);
    cr_assert_str_eq(buf, "[::1]:7000");

    /* TLS over a Unix socket is refused as a configuration error. */
    stx_config *t = conf_of("unix:///tmp/none.sock", (const char *const[]){"tls", "1", NULL});
    stx_client *cl;
    cr_assert_eq(stx_client_new(&cl, t), STX_EINVAL);
    cr_assert(strstr(stx_client_errmsg(cl), "TLS over a Unix socket"), "%s",
              stx_client_errmsg(cl));
    stx_client_free(cl);
    stx_config_free(t);
}

/* ------------------------------------------------------------------ */
/* A hostile server                                                    */

struct fake {
    int listen_fd;
    int port;
    const char *reply;          /* sent after the first command arrives */
    size_t reply_len;
    pthread_t thread;
};

static void *fake_main(void *arg)
{
    struct fake *f = arg;
    int fd = accept(f->listen_fd, NULL, NULL);
    if (fd < 0) return NULL;
    char buf[4096];
    ssize_t n = read(fd, buf, sizeof buf); /* the PING of the open */
    if (n > 0) {
        size_t off = 0;
        while (off < f->reply_len) {
            ssize_t w = send(fd, f->reply + off, f->reply_len - off, MSG_NOSIGNAL);
            if (w <= 0) break;
            off += (size_t)w;
        }
        while (read(fd, buf, sizeof buf) > 0) {
        } /* until the client hangs up */
    }
    close(fd);
    return NULL;
}

static void fake_start(struct fake *f, const char *reply, size_t len)
{
    f->reply = reply;
    f->reply_len = len;
    f->listen_fd = socket(AF_INET, SOCK_STREAM, 0);
    cr_assert(f->listen_fd >= 0);
    struct sockaddr_in sa;
    memset(&sa, 0, sizeof sa);
    sa.sin_family = AF_INET;
    sa.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    socklen_t sl = sizeof sa;
    cr_assert_eq(bind(f->listen_fd, (struct sockaddr *)&sa, sizeof sa), 0);
    cr_assert_eq(listen(f->listen_fd, 1), 0);
    cr_assert_eq(getsockname(f->listen_fd, (struct sockaddr *)&sa, &sl), 0);
    f->port = ntohs(sa.sin_port);
    cr_assert_eq(pthread_create(&f->thread, NULL, fake_main, f), 0);
}

static void fake_stop(struct fake *f)
{
    pthread_join(f->thread, NULL);
    close(f->listen_fd);
}

/* Open a session to a fake server answering reply; expect code + text. */
static void hostile(const char *reply, size_t len, size_t bound, int code, const char *want)
{
    struct fake f;
    fake_start(&f, reply, len);
    stx_url u;
    char err[256], url[64];
    snprintf(url, sizeof url, "redis://127.0.0.1:%d", f.port);
    cr_assert_eq(stx_url_parse(url, &u, err, sizeof err), STX_OK);
    stx_conn c;
    stx_conn_init(&c, &u, 1000, 1000);
    if (bound) c.max_reply_bytes = bound;
    int rc = stx_conn_open(&c);
    cr_assert_eq(rc, code, "%s: %s", stx_strerror(rc), c.err);
    cr_assert(strstr(c.err, want), "message '%s' lacks '%s'", c.err, want);
    cr_assert_null(c.ctx, "the session stays open after a refused reply");
    stx_conn_close(&c);
    fake_stop(&f);
}

Test(session, forged_reply_headers_are_refused_before_allocation)
{
    /* 2^31 array slots: 16 GiB of pointers if parsed. */
    static const char huge_array[] = "*2147483647\r\n";
    hostile(huge_array, sizeof huge_array - 1, 0, STX_EREDIS,
            "an array of 2147483647 would take the reply over its bound of 1073741824 bytes");
    /* A 2 GiB bulk string announced. */
    static const char huge_bulk[] = "$2000000000\r\nxx";
    hostile(huge_bulk, sizeof huge_bulk - 1, 0, STX_EREDIS, "a bulk string of 2000000000");
    /* A length with 30 digits. */
    static const char long_len[] = "*999999999999999999999999999999\r\n";
    hostile(long_len, sizeof long_len - 1, 0, STX_ECONN, "protocol error: malformed * length");
    /* Many small elements adding up over a small bound. */
    char many[8192];
    size_t n = (size_t)snprintf(many, sizeof many, "*100\r\n");
    for (int i = 0; i < 100; i++) n += (size_t)snprintf(many + n, sizeof many - n, "$10\r\n0123456789\r\n");
    hostile(many, n, 4096, STX_EREDIS, "over its bound of 4096 bytes");
    /* Not RESP at all. */
    static const char junk[] = "HTTP/1.1 400 Bad Request\r\n";
    hostile(junk, sizeof junk - 1, 0, STX_ECONN, "protocol error: byte 0x48");
    /* Nested deeper than anything Redis sends. */
    static const char deep[] = "*1\r\n*1\r\n*1\r\n*1\r\n*1\r\n*1\r\n*1\r\n*1\r\n*1\r\n*1\r\n"
                               "*1\r\n*1\r\n*1\r\n*1\r\n*1\r\n*1\r\n*1\r\n:1\r\n";
    hostile(deep, sizeof deep - 1, 0, STX_EREDIS, "nested deeper than 16");
}

/* Replies under the bound pass whatever the chunking: a real server, a
 * bound just above a big pipelined reply. */
Test(session, bounded_replies_pass_when_within_the_bound)
{
    test_redis r;
    test_redis_start(&r, 0, NULL);
    stx_url u;
    char err[256];
    cr_assert_eq(stx_url_parse(r.url, &u, err, sizeof err), STX_OK);
    stx_conn c;
    stx_conn_init(&c, &u, 1000, 5000);
    c.max_reply_bytes = 4u << 20;
    cr_assert_eq(stx_conn_open(&c), STX_OK, "%s", c.err);
    /* 2000 entries of ~500 bytes: ~1 MB of reply, ~2.4 MB estimated. */
    char value[500];
    memset(value, 'v', sizeof value);
    for (int i = 0; i < 2000; i++) {
        const char *argv[] = {"XADD", "big", "*", "f", value};
        size_t lens[] = {4, 3, 1, 1, sizeof value};
        cr_assert_eq(stx_conn_append(&c, 5, argv, lens), STX_OK);
    }
    for (int i = 0; i < 2000; i++) {
        redisReply *rep;
        cr_assert_eq(stx_conn_read(&c, &rep), STX_OK, "%s", c.err);
        stx_reply_release(rep);
    }
    for (int round = 0; round < 3; round++) {
        const char *argv[] = {"XRANGE", "big", "-", "+"};
        cr_assert_eq(stx_conn_append(&c, 4, argv, NULL), STX_OK);
    }
    for (int round = 0; round < 3; round++) {
        redisReply *rep;
        cr_assert_eq(stx_conn_read(&c, &rep), STX_OK, "%s", c.err);
        cr_assert_eq(rep->elements, 2000);
        cr_assert_eq(rep->element[1999]->element[1]->element[1]->len, sizeof value);
        stx_reply_release(rep);
    }
    /* Past the bound: refused, the session closed, reopened fine. */
    c.max_reply_bytes = 1u << 20;
    const char *argv[] = {"XRANGE", "big", "-", "+"};
    redisReply *rep;
    cr_assert_eq(stx_conn_command(&c, &rep, 4, argv, NULL), STX_EREDIS);
    cr_assert(strstr(c.err, "over its bound of 1048576 bytes"), "%s", c.err);
    cr_assert_null(c.ctx);
    cr_assert_eq(stx_conn_open(&c), STX_OK, "%s", c.err);
    const char *xlen[] = {"XLEN", "big"};
    cr_assert_eq(stx_conn_command(&c, &rep, 2, xlen, NULL), STX_OK);
    cr_assert_eq(rep->integer, 2000);
    stx_reply_release(rep);
    stx_conn_close(&c);
    test_redis_stop(&r);
}
