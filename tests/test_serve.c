/* stx serve against a real redis-server: HTTP with exact statuses,
 * headers and bodies through the curl command, SSE clients (curl -N) and
 * WebSocket clients that disconnect and resume; plain sockets only for
 * what no client sends (malformed and oversized requests, a request cut
 * before its answer, a stalled reader, 200 connections in one process)
 * and for WebSocket (Debian's curl 7.88 has none), the shared reader per stream (CLIENT LIST),
 * /health while Redis is down and back, /metrics, tokens and limits. */
#define _GNU_SOURCE /* memmem */
#include <arpa/inet.h>
#include <criterion/criterion.h>
#include <errno.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <poll.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/prctl.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <unistd.h>

#include "harness.h"
#include "streamtx.h"

#ifndef STX_CLI_PATH
#define STX_CLI_PATH STX_EXAMPLES_DIR "/stx"
#endif

TestSuite(serve, .timeout = 120);

typedef struct gw {
    pid_t pid;
    int port;
} gw;

/* Start stx serve on a free port (--listen 127.0.0.1:0) with extra
 * arguments; waits for its "listening on" line. */
static void gw_start(gw *g, const test_redis *r, const char *const *extra)
{
    int out[2];
    cr_assert(pipe(out) == 0);
    const char *argv[40];
    int n = 0;
    argv[n++] = STX_CLI_PATH;
    argv[n++] = "--url";
    argv[n++] = r->url;
    argv[n++] = "serve";
    argv[n++] = "--listen";
    argv[n++] = "127.0.0.1:0";
    argv[n++] = "--block-ms";
    argv[n++] = "200";
    for (int i = 0; extra && extra[i]; i++) argv[n++] = extra[i];
    argv[n] = NULL;
    g->pid = fork();
    cr_assert(g->pid >= 0);
    if (g->pid == 0) {
        /* A failed assertion ends the test without gw_stop(). */
        prctl(PR_SET_PDEATHSIG, SIGTERM);
        dup2(out[1], 1);
        close(out[0]);
        close(out[1]);
        execv(argv[0], (char *const *)argv);
        _exit(127);
    }
    close(out[1]);
    char line[256];
    size_t k = 0;
    while (k < sizeof line - 1) {
        ssize_t m = read(out[0], line + k, 1);
        if (m <= 0 || line[k] == '\n') break;
        k++;
    }
    line[k] = '\0';
    close(out[0]);
    const char *colon = strrchr(line, ':');
    cr_assert(strncmp(line, "listening on http://127.0.0.1:", 30) == 0 && colon,
              "stx serve printed '%s'", line);
    g->port = atoi(colon + 1);
    cr_assert(g->port > 0);
}

/* Stop with SIGTERM; assert a clean exit (0). */
static void gw_stop(gw *g)
{
    if (!g->pid) return;
    kill(g->pid, SIGTERM);
    int st;
    waitpid(g->pid, &st, 0);
    g->pid = 0;
    cr_expect(WIFEXITED(st) && WEXITSTATUS(st) == 0, "stx serve exit status %d", st);
}

static int connect_to(int port)
{
    int fd = socket(AF_INET, SOCK_STREAM, 0);
    cr_assert(fd >= 0);
    struct sockaddr_in a = {0};
    a.sin_family = AF_INET;
    a.sin_port = htons((uint16_t)port);
    a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    cr_assert(connect(fd, (struct sockaddr *)&a, sizeof a) == 0, "connect: %s", strerror(errno));
    return fd;
}

static void send_all(int fd, const char *p, size_t n)
{
    while (n) {
        ssize_t w = send(fd, p, n, MSG_NOSIGNAL);
        cr_assert(w > 0, "send: %s", strerror(errno));
        p += w;
        n -= (size_t)w;
    }
}

typedef struct resp {
    int status;
    char *head;  /* the header block, lower-cased names as sent */
    char *body;
    size_t body_len;
} resp;

static void resp_free(resp *r)
{
    free(r->head);
    free(r->body);
    memset(r, 0, sizeof *r);
}

/* The value of header name (case-insensitive) in r, copied to buf; NULL when absent. */
static const char *header(const resp *r, const char *name, char *buf, size_t cap)
{
    size_t nl = strlen(name);
    for (const char *p = r->head; p && *p;) {
        const char *eol = strstr(p, "\r\n");
        if (!eol) break;
        if ((size_t)(eol - p) > nl && strncasecmp(p, name, nl) == 0 && p[nl] == ':') {
            const char *v = p + nl + 1;
            while (*v == ' ') v++;
            snprintf(buf, cap, "%.*s", (int)(eol - v), v);
            return buf;
        }
        p = eol + 2;
    }
    return NULL;
}

/* Start curl with args (argv[0] is "curl"), its stdout into a pipe whose
 * read end goes to *out; stderr is dropped. */
static pid_t curl_spawn(const char *const *args, int *out)
{
    int p[2];
    cr_assert(pipe(p) == 0);
    pid_t pid = fork();
    cr_assert(pid >= 0);
    if (pid == 0) {
        prctl(PR_SET_PDEATHSIG, SIGKILL);
        dup2(p[1], 1);
        int devnull = open("/dev/null", O_WRONLY);
        if (devnull >= 0) dup2(devnull, 2);
        close(p[0]);
        close(p[1]);
        execvp("curl", (char *const *)args);
        _exit(127);
    }
    close(p[1]);
    *out = p[0];
    return pid;
}

static char *slurp(const char *path, size_t *len)
{
    FILE *f = fopen(path, "rb");
    cr_assert(f, "%s: %s", path, strerror(errno));
    char *buf = NULL;
    size_t n = 0, cap = 0;
    for (;;) {
        if (n + 4096 > cap) {
            cap = cap ? cap * 2 : 8192;
            buf = realloc(buf, cap + 1);
            cr_assert(buf);
        }
        size_t m = fread(buf + n, 1, cap - n, f);
        if (m == 0) break;
        n += m;
    }
    fclose(f);
    buf[n] = '\0';
    *len = n;
    return buf;
}

/* One request through the curl command.  headers: "Name: value\r\n"
 * lines; body NULL sends none. */
static void http(int port, const char *method, const char *path, const char *headers,
                 const char *body, resp *out)
{
    char dir[] = "/tmp/stx-curl-XXXXXX", hfile[64], bfile[64], dfile[64], url[4200];
    cr_assert(mkdtemp(dir));
    snprintf(hfile, sizeof hfile, "%s/head", dir);
    snprintf(bfile, sizeof bfile, "%s/body", dir);
    snprintf(dfile, sizeof dfile, "@%s/data", dir);
    snprintf(url, sizeof url, "http://127.0.0.1:%d%s", port, path);
    const char *args[48];
    char hdr[16][600];
    int n = 0, nh = 0;
    args[n++] = "curl";
    args[n++] = "-s";
    args[n++] = "-g";             /* braces and brackets in paths are literal */
    args[n++] = "--path-as-is";
    args[n++] = "-X";
    args[n++] = method;
    args[n++] = "-H";
    args[n++] = "Expect:";        /* no 100-continue round */
    for (const char *p = headers; p && *p;) {
        const char *eol = strstr(p, "\r\n");
        cr_assert(eol && nh < 16);
        snprintf(hdr[nh], sizeof hdr[nh], "%.*s", (int)(eol - p), p);
        args[n++] = "-H";
        args[n++] = hdr[nh++];
        p = eol + 2;
    }
    if (body) {
        FILE *f = fopen(dfile + 1, "wb");
        cr_assert(f);
        cr_assert_eq(fwrite(body, 1, strlen(body), f), strlen(body));
        fclose(f);
        args[n++] = "--data-binary";
        args[n++] = dfile;
    }
    args[n++] = "-D";
    args[n++] = hfile;
    args[n++] = "-o";
    args[n++] = bfile;
    args[n++] = url;
    args[n] = NULL;
    int fd;
    pid_t pid = curl_spawn(args, &fd);
    char junk[64];
    while (read(fd, junk, sizeof junk) > 0) {
    }
    close(fd);
    int st;
    waitpid(pid, &st, 0);
    cr_assert(WIFEXITED(st) && WEXITSTATUS(st) == 0, "curl %s %s: status %d", method, path, st);
    size_t hl;
    char *head = slurp(hfile, &hl);
    memset(out, 0, sizeof *out);
    cr_assert(sscanf(head, "HTTP/1.1 %d", &out->status) == 1, "bad status line: %.40s", head);
    char *first = strstr(head, "\r\n");
    cr_assert(first);
    out->head = strdup(first + 2);
    free(head);
    out->body = slurp(bfile, &out->body_len);
    unlink(hfile);
    unlink(bfile);
    unlink(dfile + 1);
    rmdir(dir);
}

/* ------------------------------------------------------------------ */

static test_redis R;
static gw G;
static redisContext *rc;

static void up(const char *const *extra)
{
    test_redis_start(&R, 0, NULL);
    rc = test_redis_connect(&R);
    gw_start(&G, &R, extra);
}

static void down(void)
{
    gw_stop(&G);
    if (rc) redisFree(rc);
    rc = NULL;
    test_redis_stop(&R);
}

Test(serve, produce_idempotent)
{
    up(NULL);
    resp r;
    const char *body = "{\"type\":\"order.created\",\"key\":\"o1\",\"payload\":{\"n\":1}}";
    http(G.port, "POST", "/v1/streams/orders/events", "Idempotency-Key: k1\r\n", body, &r);
    cr_assert_eq(r.status, 201, "%s", r.body);
    char id[64], h[64];
    cr_assert(sscanf(r.body, "{\"id\":\"%63[0-9-]\"}", id) == 1, "%s", r.body);
    char expect[128];
    snprintf(expect, sizeof expect, "{\"id\":\"%s\"}", id);
    cr_assert_str_eq(r.body, expect);
    cr_assert_str_eq(header(&r, "content-type", h, sizeof h), "application/json");
    cr_assert_null(header(&r, "idempotent-replayed", h, sizeof h));
    resp_free(&r);

    http(G.port, "POST", "/v1/streams/orders/events", "Idempotency-Key: k1\r\n", body, &r);
    cr_assert_eq(r.status, 200);
    cr_assert_str_eq(r.body, expect);
    cr_assert_str_eq(header(&r, "idempotent-replayed", h, sizeof h), "true");
    resp_free(&r);

    http(G.port, "POST", "/v1/streams/orders/events", "Idempotency-Key: k1\r\n",
         "{\"type\":\"order.created\",\"key\":\"o1\",\"payload\":{\"n\":2}}", &r);
    cr_assert_eq(r.status, 422);
    char msg[512];
    snprintf(msg, sizeof msg,
             "{\"error\":\"idempotency_conflict\",\"message\":\"Idempotency-Key 'k1' was used with "
             "another body (for %s); nothing was added\"}",
             id);
    cr_assert_str_eq(r.body, msg);
    resp_free(&r);
    cr_assert_eq(test_cmd_int(rc, "XLEN orders"), 1);

    /* The entry's fields: the envelope, the JSON payload as text. */
    redisReply *x = test_cmd(rc, "XRANGE orders - +");
    cr_assert_eq(x->elements, 1);
    redisReply *f = x->element[0]->element[1];
    cr_assert_eq(f->elements, 8);
    cr_assert_str_eq(f->element[0]->str, "type");
    cr_assert_str_eq(f->element[1]->str, "order.created");
    cr_assert_str_eq(f->element[4]->str, "payload");
    cr_assert_str_eq(f->element[5]->str, "{\"n\":1}");
    cr_assert_str_eq(f->element[6]->str, "content_type");
    cr_assert_str_eq(f->element[7]->str, "application/json");
    freeReplyObject(x);

    /* Without a key every request adds. */
    http(G.port, "POST", "/v1/streams/orders/events", NULL, "{\"fields\":{\"a\":\"1\"}}", &r);
    cr_assert_eq(r.status, 201);
    resp_free(&r);
    cr_assert_eq(test_cmd_int(rc, "XLEN orders"), 2);
    down();
}

Test(serve, batch_all_or_nothing)
{
    up((const char *const[]){"--max-batch", "3", NULL});
    resp r;
    http(G.port, "POST", "/v1/streams/b/events", NULL,
         "[{\"type\":\"a\"},{\"type\":\"b\",\"bogus\":\"x\"}]", &r);
    cr_assert_eq(r.status, 400);
    cr_assert(strstr(r.body, "\"error\":\"bad_event\",\"message\":\"event 1: unknown member "
                             "\\\"bogus\\\""),
              "%s", r.body);
    cr_assert(strstr(r.body, "nothing was added"));
    resp_free(&r);
    cr_assert_eq(test_cmd_int(rc, "EXISTS b"), 0);

    http(G.port, "POST", "/v1/streams/b/events", NULL,
         "[{\"type\":\"a\"},{\"type\":\"b\"},{\"type\":\"c\"},{\"type\":\"d\"}]", &r);
    cr_assert_eq(r.status, 413, "%s", r.body);
    cr_assert_str_eq(r.body, "{\"error\":\"batch_too_large\",\"message\":\"a batch holds at most 3 "
                             "events\"}");
    resp_free(&r);

    const char *batch = "[{\"type\":\"a\"},{\"fields\":{\"x\":\"1\",\"y\":\"2\"}}]";
    http(G.port, "POST", "/v1/streams/b/events", "Idempotency-Key: batch-1\r\n", batch, &r);
    cr_assert_eq(r.status, 201, "%s", r.body);
    char id1[64], id2[64], expect[200];
    cr_assert(sscanf(r.body, "{\"ids\":[\"%63[0-9-]\",\"%63[0-9-]\"]}", id1, id2) == 2, "%s", r.body);
    snprintf(expect, sizeof expect, "{\"ids\":[\"%s\",\"%s\"]}", id1, id2);
    cr_assert_str_eq(r.body, expect);
    resp_free(&r);
    http(G.port, "POST", "/v1/streams/b/events", "Idempotency-Key: batch-1\r\n", batch, &r);
    cr_assert_eq(r.status, 200);
    cr_assert_str_eq(r.body, expect);
    resp_free(&r);
    /* A longer batch under the same key is another body: 422, nothing added. */
    http(G.port, "POST", "/v1/streams/b/events", "Idempotency-Key: batch-1\r\n",
         "[{\"type\":\"a\"},{\"fields\":{\"x\":\"1\",\"y\":\"2\"}},{\"type\":\"c\"}]", &r);
    cr_assert_eq(r.status, 422);
    resp_free(&r);
    cr_assert_eq(test_cmd_int(rc, "XLEN b"), 2);
    down();
}

Test(serve, malformed_requests)
{
    up((const char *const[]){"--max-body", "100", NULL});
    resp r;
    static const struct {
        const char *method, *path, *body, *status_code;
        int status;
    } cases[] = {
        {"POST", "/v1/streams/s/events", "{\"type\":", "bad_json", 400},
        {"POST", "/v1/streams/s/events", "{\"type\":\"\xff\"}", "bad_json", 400},
        {"POST", "/v1/streams/s/events", "[]", "bad_request", 400},
        {"POST", "/v1/streams/s/events", "{\"type\":1}", "bad_event", 400},
        {"POST", "/v1/streams/s/events", "{\"fields\":{\"a\":1}}", "bad_event", 400},
        {"POST", "/v1/streams/s/events", "{}", "bad_event", 400},
        {"POST", "/v1/streams/s/events", "{\"fields\":{\"a\":\"b\"},\"type\":\"x\"}", "bad_event", 400},
        {"POST", "/v1/streams/s/events", "[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]", "bad_json", 400},
        {"POST", "/v1/streams/s/events", NULL, "bad_json", 400},
        {"GET", "/v1/streams/s%01x/events", NULL, "bad_name", 400},
        {"GET", "/v1/streams/s/events?after=12-x", NULL, "bad_cursor", 400},
        {"GET", "/v1/streams/s/events?after=0&limit=0", NULL, "bad_limit", 400},
        {"GET", "/v1/streams/s/events?from=yesterday", NULL, "bad_cursor", 400},
        {"GET", "/v1/nothing", NULL, "not_found", 404},
        {"POST", "/metrics", "", "method_not_allowed", 405},
        {"GET", "/v1/streams/s/ws", NULL, "upgrade_required", 426},
    };
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        http(G.port, cases[i].method, cases[i].path, NULL, cases[i].body, &r);
        cr_assert_eq(r.status, cases[i].status, "case %zu: %d %s", i, r.status, r.body);
        char want[64];
        snprintf(want, sizeof want, "{\"error\":\"%s\",", cases[i].status_code);
        cr_assert(strncmp(r.body, want, strlen(want)) == 0, "case %zu: %s", i, r.body);
        resp_free(&r);
    }
    char big[300];
    memset(big, 'x', sizeof big - 1);
    big[sizeof big - 1] = '\0';
    http(G.port, "POST", "/v1/streams/s/events", NULL, big, &r);
    cr_assert_eq(r.status, 413);
    cr_assert_str_eq(r.body, "{\"error\":\"body_too_large\",\"message\":\"the body is larger than "
                             "100 bytes\"}");
    resp_free(&r);
    cr_assert_eq(test_cmd_int(rc, "EXISTS s"), 0);
    /* Headers past 8 KiB: the connection is closed, nothing more. */
    {
        int fd = connect_to(G.port);
        static char req[20100];
        int n = snprintf(req, sizeof req, "GET /health HTTP/1.1\r\nHost: x\r\nX-Big: ");
        memset(req + n, 'a', 20000);
        memcpy(req + n + 20000, "\r\n\r\n", 4);
        send(fd, req, (size_t)n + 20004, MSG_NOSIGNAL);
        char b[64];
        struct pollfd pf = {fd, POLLIN, 0};
        cr_assert_eq(poll(&pf, 1, 5000), 1);
        ssize_t m = recv(fd, b, sizeof b, 0);
        cr_assert(m <= 0 || strncmp(b, "HTTP/1.1 4", 10) == 0, "%.*s", (int)m, b);
        close(fd);
    }
    /* Still serving. */
    http(G.port, "GET", "/health", NULL, NULL, &r);
    cr_assert_eq(r.status, 200);
    resp_free(&r);
    down();
}

Test(serve, history_and_cursors)
{
    up(NULL);
    char ids[5][64];
    for (int i = 0; i < 5; i++) {
        redisReply *x = test_cmd(rc, "XADD h %d-1 n %d", 1000 + i, i);
        snprintf(ids[i], sizeof ids[i], "%s", x->str);
        freeReplyObject(x);
    }
    resp r;
    http(G.port, "GET", "/v1/streams/h/events?after=1001-1&limit=2", NULL, NULL, &r);
    cr_assert_eq(r.status, 200);
    cr_assert_str_eq(r.body, "{\"events\":[{\"id\":\"1002-1\",\"fields\":{\"n\":\"2\"}},{\"id\":"
                             "\"1003-1\",\"fields\":{\"n\":\"3\"}}],\"next\":\"1003-1\"}");
    resp_free(&r);
    http(G.port, "GET", "/v1/streams/h/events?after=1004-1", NULL, NULL, &r);
    cr_assert_str_eq(r.body, "{\"events\":[],\"next\":\"1004-1\"}");
    resp_free(&r);
    /* Times: milliseconds and RFC 3339 (1970-01-01T00:00:01.002Z is 1002 ms). */
    http(G.port, "GET", "/v1/streams/h/events?from=@1002&to=1970-01-01T00:00:01.003Z", NULL, NULL, &r);
    cr_assert_eq(r.status, 200, "%s", r.body);
    cr_assert_str_eq(r.body, "{\"events\":[{\"id\":\"1002-1\",\"fields\":{\"n\":\"2\"}},{\"id\":"
                             "\"1003-1\",\"fields\":{\"n\":\"3\"}}],\"next\":\"1003-1\"}");
    resp_free(&r);
    /* Entries after the cursor gone: 410 with the oldest id still held. */
    freeReplyObject(test_cmd(rc, "XDEL h 1000-1 1001-1"));
    http(G.port, "GET", "/v1/streams/h/events?after=1000-0", NULL, NULL, &r);
    cr_assert_eq(r.status, 410, "%s", r.body);
    cr_assert(strncmp(r.body, "{\"error\":\"window_expired\",\"message\":\"", 37) == 0, "%s", r.body);
    cr_assert(strstr(r.body, ",\"oldest\":\"1002-1\"}"), "%s", r.body);
    resp_free(&r);
    http(G.port, "GET", "/v1/streams/h/events?after=1001-1", NULL, NULL, &r);
    cr_assert_eq(r.status, 200);
    resp_free(&r);
    down();
}

/* ------------------------------------------------------------------ */
/* Partitioned streams                                                  */

/* The SHA-1 (hex) of text, as the gateway's scripts compute it. */
static void sha1_of(const char *text, char out[41])
{
    redisReply *x = test_cmd(rc, "EVAL %s 0 %s", "return redis.sha1hex(ARGV[1])", text);
    cr_assert(x->type == REDIS_REPLY_STRING && x->len == 40);
    memcpy(out, x->str, 41);
    freeReplyObject(x);
}

/* An Idempotency-Key whose home partition (crc32 % parts) is not avoid. */
static void key_not_home(char *out, size_t cap, unsigned parts, unsigned avoid)
{
    for (int i = 0;; i++) {
        snprintf(out, cap, "req-%d", i);
        if ((unsigned)stx_partition_of(out, strlen(out), parts) != avoid) return;
    }
}

Test(serve, partitioned_produce)
{
    up(NULL);
    /* "ps" of 8 partitions: sku-00 -> 2, sku-01 -> 4, order-42 -> 6. */
    freeReplyObject(test_cmd(rc, "HSET {ps}:stx-parts:2:ps partitions 8"));
    resp r;
    char id[64], id2[64], want[600], h[64];
    http(G.port, "POST", "/v1/streams/ps/events", NULL, "{\"type\":\"t\",\"key\":\"sku-00\"}", &r);
    cr_assert_eq(r.status, 201, "%s", r.body);
    cr_assert(sscanf(r.body, "{\"id\":\"%63[0-9-]\"", id) == 1, "%s", r.body);
    snprintf(want, sizeof want, "{\"id\":\"%s\",\"partition\":2}", id);
    cr_assert_str_eq(r.body, want);
    resp_free(&r);
    cr_assert_eq(test_cmd_int(rc, "XLEN {ps#2}"), 1);

    /* A keyless event of a batch follows the keyed one. */
    http(G.port, "POST", "/v1/streams/ps/events", NULL,
         "[{\"type\":\"t\"},{\"fields\":{\"key\":\"sku-00\",\"n\":\"2\"}}]", &r);
    cr_assert_eq(r.status, 201, "%s", r.body);
    cr_assert(sscanf(r.body, "{\"ids\":[\"%63[0-9-]\",\"%63[0-9-]\"]", id, id2) == 2, "%s", r.body);
    snprintf(want, sizeof want, "{\"ids\":[\"%s\",\"%s\"],\"partition\":2}", id, id2);
    cr_assert_str_eq(r.body, want);
    resp_free(&r);
    cr_assert_eq(test_cmd_int(rc, "XLEN {ps#2}"), 3);

    /* Keys in two partitions: refused whole. */
    http(G.port, "POST", "/v1/streams/ps/events", "Idempotency-Key: span\r\n",
         "[{\"key\":\"sku-00\"},{\"type\":\"t\"},{\"key\":\"sku-01\"}]", &r);
    cr_assert_eq(r.status, 422, "%s", r.body);
    cr_assert_str_eq(r.body, "{\"error\":\"batch_spans_partitions\",\"message\":\"event 0 (key "
                             "'sku-00') goes to partition 2 and event 2 (key 'sku-01') to "
                             "partition 4; a batch is all or nothing only within one partition: "
                             "send one request per partition; nothing was added\"}");
    resp_free(&r);
    cr_assert_eq(test_cmd_int(rc, "XLEN {ps#2}"), 3);
    cr_assert_eq(test_cmd_int(rc, "EXISTS {ps#4}"), 0);

    /* An Idempotency-Key whose home is not the event's partition (6). */
    char key[32], hdr[64], home_rec[128], part_rec[128];
    key_not_home(key, sizeof key, 8, 6);
    unsigned home = (unsigned)stx_partition_of(key, strlen(key), 8);
    snprintf(hdr, sizeof hdr, "Idempotency-Key: %s\r\n", key);
    snprintf(home_rec, sizeof home_rec, "{ps#%u}:stx-http-idem:6:{ps#%u}:%s", home, home, key);
    snprintf(part_rec, sizeof part_rec, "{ps#6}:stx-http-idem:6:{ps#6}:%s", key);
    const char *body = "{\"type\":\"t\",\"key\":\"order-42\",\"payload\":\"a\"}";
    http(G.port, "POST", "/v1/streams/ps/events", hdr, body, &r);
    cr_assert_eq(r.status, 201, "%s", r.body);
    cr_assert(sscanf(r.body, "{\"id\":\"%63[0-9-]\"", id) == 1, "%s", r.body);
    snprintf(want, sizeof want, "{\"id\":\"%s\",\"partition\":6}", id);
    cr_assert_str_eq(r.body, want);
    resp_free(&r);
    http(G.port, "POST", "/v1/streams/ps/events", hdr, body, &r);
    cr_assert_eq(r.status, 200, "%s", r.body);
    cr_assert_str_eq(r.body, want);
    cr_assert_str_eq(header(&r, "idempotent-replayed", h, sizeof h), "true");
    resp_free(&r);
    char sha[41], rec[128];
    sha1_of(body, sha);
    snprintf(rec, sizeof rec, "%s\n@6", sha);
    redisReply *x = test_cmd(rc, "GET %s", home_rec);
    cr_assert_str_eq(x->str, rec);
    freeReplyObject(x);
    snprintf(rec, sizeof rec, "%s\n%s", sha, id);
    x = test_cmd(rc, "GET %s", part_rec);
    cr_assert_str_eq(x->str, rec);
    freeReplyObject(x);
    /* The same key with another body, whatever its partition: 422. */
    static const char *const others[] = {
        "{\"type\":\"t\",\"key\":\"order-42\",\"payload\":\"b\"}", /* partition 6 */
        "{\"type\":\"t\",\"key\":\"sku-01\",\"payload\":\"a\"}",   /* partition 4 */
        "{\"type\":\"t\",\"payload\":\"a\"}",                      /* the key's home */
    };
    for (size_t i = 0; i < 3; i++) {
        http(G.port, "POST", "/v1/streams/ps/events", hdr, others[i], &r);
        cr_assert_eq(r.status, 422, "body %zu: %s", i, r.body);
        snprintf(want, sizeof want,
                 "{\"error\":\"idempotency_conflict\",\"message\":\"Idempotency-Key '%s' was used "
                 "with another body (for partition 6); nothing was added\"}",
                 key);
        cr_assert_str_eq(r.body, want, "body %zu", i);
        resp_free(&r);
    }
    cr_assert_eq(test_cmd_int(rc, "XLEN {ps#6}"), 1);
    cr_assert_eq(test_cmd_int(rc, "EXISTS {ps#4}"), 0);

    /* A claim left without its entries (the server died between the two
     * scripts): the retry adds them, once. */
    char key2[32];
    key_not_home(key2, sizeof key2, 8, 6);
    snprintf(key2 + strlen(key2), sizeof key2 - strlen(key2), "b");
    while ((unsigned)stx_partition_of(key2, strlen(key2), 8) == 6) strcat(key2, "b");
    unsigned home2 = (unsigned)stx_partition_of(key2, strlen(key2), 8);
    const char *body2 = "{\"type\":\"t\",\"key\":\"order-42\",\"payload\":\"c\"}";
    sha1_of(body2, sha);
    x = test_cmd(rc, "SET {ps#%u}:stx-http-idem:6:{ps#%u}:%s %s\n@6", home2, home2, key2, sha);
    freeReplyObject(x);
    snprintf(hdr, sizeof hdr, "Idempotency-Key: %s\r\n", key2);
    http(G.port, "POST", "/v1/streams/ps/events", hdr, body2, &r);
    cr_assert_eq(r.status, 201, "%s", r.body);
    resp_free(&r);
    http(G.port, "POST", "/v1/streams/ps/events", hdr, body2, &r);
    cr_assert_eq(r.status, 200, "%s", r.body);
    resp_free(&r);
    cr_assert_eq(test_cmd_int(rc, "XLEN {ps#6}"), 2);

    /* Keyless with an Idempotency-Key: the key's home partition. */
    snprintf(want, sizeof want, "Idempotency-Key: %s\r\n", "keyless-1");
    unsigned home3 = (unsigned)stx_partition_of("keyless-1", 9, 8);
    http(G.port, "POST", "/v1/streams/ps/events", want, "{\"type\":\"k\"}", &r);
    cr_assert_eq(r.status, 201, "%s", r.body);
    snprintf(h, sizeof h, ",\"partition\":%u}", home3);
    cr_assert(strstr(r.body, h), "%s", r.body);
    resp_free(&r);
    /* Keyless without one: the partitions in turn. */
    for (unsigned i = 0; i < 3; i++) {
        http(G.port, "POST", "/v1/streams/ps/events", NULL, "{\"type\":\"k\"}", &r);
        cr_assert_eq(r.status, 201, "%s", r.body);
        snprintf(h, sizeof h, ",\"partition\":%u}", i);
        cr_assert(strstr(r.body, h), "%s", r.body);
        resp_free(&r);
    }
    /* A plain stream's answer has no partition. */
    http(G.port, "POST", "/v1/streams/plain/events", NULL, "{\"key\":\"sku-00\"}", &r);
    cr_assert_eq(r.status, 201);
    cr_assert_null(strstr(r.body, "partition"), "%s", r.body);
    resp_free(&r);
    down();
}

Test(serve, partitioned_history_and_info)
{
    up(NULL);
    freeReplyObject(test_cmd(rc, "HSET {ph}:stx-parts:2:ph partitions 4"));
    freeReplyObject(test_cmd(rc, "XADD {ph#0} 1000-1 n a"));
    freeReplyObject(test_cmd(rc, "XADD {ph#3} 1000-1 n b"));
    freeReplyObject(test_cmd(rc, "XADD {ph#3} 1001-0 n c"));
    freeReplyObject(test_cmd(rc, "XADD {ph#1} 1002-0 n d"));
    resp r;
    http(G.port, "GET", "/v1/streams/ph/events", NULL, NULL, &r);
    cr_assert_eq(r.status, 200, "%s", r.body);
    cr_assert_str_eq(r.body,
                     "{\"events\":[{\"id\":\"1000-1\",\"partition\":0,\"fields\":{\"n\":\"a\"}},"
                     "{\"id\":\"1000-1\",\"partition\":3,\"fields\":{\"n\":\"b\"}},"
                     "{\"id\":\"1001-0\",\"partition\":3,\"fields\":{\"n\":\"c\"}},"
                     "{\"id\":\"1002-0\",\"partition\":1,\"fields\":{\"n\":\"d\"}}],"
                     "\"next\":\"1002-0\"}");
    resp_free(&r);
    /* Entries of one id are never split by limit, so after=next misses none. */
    http(G.port, "GET", "/v1/streams/ph/events?after=0&limit=1", NULL, NULL, &r);
    cr_assert_str_eq(r.body,
                     "{\"events\":[{\"id\":\"1000-1\",\"partition\":0,\"fields\":{\"n\":\"a\"}},"
                     "{\"id\":\"1000-1\",\"partition\":3,\"fields\":{\"n\":\"b\"}}],"
                     "\"next\":\"1000-1\"}");
    resp_free(&r);
    http(G.port, "GET", "/v1/streams/ph/events?after=1000-1&limit=1", NULL, NULL, &r);
    cr_assert_str_eq(r.body, "{\"events\":[{\"id\":\"1001-0\",\"partition\":3,\"fields\":{\"n\":"
                             "\"c\"}}],\"next\":\"1001-0\"}");
    resp_free(&r);
    http(G.port, "GET", "/v1/streams/ph/events?from=@1001&to=@1001", NULL, NULL, &r);
    cr_assert_str_eq(r.body, "{\"events\":[{\"id\":\"1001-0\",\"partition\":3,\"fields\":{\"n\":"
                             "\"c\"}}],\"next\":\"1001-0\"}");
    resp_free(&r);
    /* One partition. */
    http(G.port, "GET", "/v1/streams/ph/events?partition=3", NULL, NULL, &r);
    cr_assert_eq(r.status, 200, "%s", r.body);
    cr_assert_str_eq(r.body,
                     "{\"events\":[{\"id\":\"1000-1\",\"partition\":3,\"fields\":{\"n\":\"b\"}},"
                     "{\"id\":\"1001-0\",\"partition\":3,\"fields\":{\"n\":\"c\"}}],"
                     "\"next\":\"1001-0\"}");
    resp_free(&r);
    http(G.port, "GET", "/v1/streams/ph/events?partition=4", NULL, NULL, &r);
    cr_assert_eq(r.status, 400);
    cr_assert_str_eq(r.body, "{\"error\":\"bad_partition\",\"message\":\"partition is 0 to 3\"}");
    resp_free(&r);
    http(G.port, "GET", "/v1/streams/plain/events?partition=0", NULL, NULL, &r);
    cr_assert_eq(r.status, 400);
    cr_assert_str_eq(r.body, "{\"error\":\"not_partitioned\",\"message\":\"partition= applies to "
                             "a partitioned stream only\"}");
    resp_free(&r);

    http(G.port, "GET", "/v1/streams/ph", NULL, NULL, &r);
    cr_assert_eq(r.status, 200, "%s", r.body);
    cr_assert_str_eq(
        r.body,
        "{\"name\":\"ph\",\"partitions\":4,\"length\":4,\"streams\":["
        "{\"name\":\"{ph#0}\",\"length\":1,\"first_id\":\"1000-1\",\"last_id\":\"1000-1\","
        "\"entries_added\":1,\"groups\":[]},"
        "{\"name\":\"{ph#1}\",\"length\":1,\"first_id\":\"1002-0\",\"last_id\":\"1002-0\","
        "\"entries_added\":1,\"groups\":[]},"
        "{\"name\":\"{ph#2}\",\"length\":0,\"groups\":[]},"
        "{\"name\":\"{ph#3}\",\"length\":2,\"first_id\":\"1000-1\",\"last_id\":\"1001-0\","
        "\"entries_added\":2,\"groups\":[]}]}");
    resp_free(&r);

    /* Partition 2 lost entries after the cursor: 410 names it. */
    freeReplyObject(test_cmd(rc, "XADD {ph#2} 500-1 n e"));
    freeReplyObject(test_cmd(rc, "XADD {ph#2} 600-1 n f"));
    freeReplyObject(test_cmd(rc, "XDEL {ph#2} 500-1"));
    http(G.port, "GET", "/v1/streams/ph/events?after=400-0", NULL, NULL, &r);
    cr_assert_eq(r.status, 410, "%s", r.body);
    cr_assert_str_eq(r.body, "{\"error\":\"window_expired\",\"message\":\"entries after 400-0 were "
                             "trimmed from a partition; resume from the oldest id still held\","
                             "\"oldest\":\"600-1\",\"partition\":2}");
    resp_free(&r);
    http(G.port, "GET", "/v1/streams/ph/events?after=500-1&limit=1", NULL, NULL, &r);
    cr_assert_eq(r.status, 200, "%s", r.body);
    cr_assert_str_eq(r.body, "{\"events\":[{\"id\":\"600-1\",\"partition\":2,\"fields\":{\"n\":"
                             "\"f\"}}],\"next\":\"600-1\"}");
    resp_free(&r);
    down();
}

/* ------------------------------------------------------------------ */
/* SSE                                                                  */

/* An SSE client: curl -N (its output, headers first, read from a pipe;
 * killing it is the disconnect), or a plain socket where a test needs
 * what curl does not give: 200 connections in one process, a receive
 * buffer shrunk to stall the reader. */
typedef struct sse {
    int fd;
    pid_t pid;  /* curl's, 0 for a socket */
    char buf[1 << 16];
    size_t len;
} sse;

static void sse_open(sse *c, int port, const char *path, const char *last_id)
{
    char url[1200], last[120];
    snprintf(url, sizeof url, "http://127.0.0.1:%d%s", port, path);
    const char *args[16];
    int n = 0;
    args[n++] = "curl";
    args[n++] = "-s";
    args[n++] = "-N";   /* no buffering: each event as it comes */
    args[n++] = "-i";   /* the status line and headers too */
    args[n++] = "-g";
    args[n++] = "-H";
    args[n++] = "Accept: text/event-stream";
    if (last_id) {
        snprintf(last, sizeof last, "Last-Event-ID: %s", last_id);
        args[n++] = "-H";
        args[n++] = last;
    }
    args[n++] = url;
    args[n] = NULL;
    c->len = 0;
    c->pid = curl_spawn(args, &c->fd);
}

static void sse_open_raw(sse *c, int port, const char *path)
{
    c->fd = connect_to(port);
    c->pid = 0;
    c->len = 0;
    char req[512];
    int n = snprintf(req, sizeof req,
                     "GET %s HTTP/1.1\r\nHost: localhost\r\nAccept: text/event-stream\r\n\r\n", path);
    send_all(c->fd, req, (size_t)n);
}

/* The next SSE event (id, event name, data), skipping comments; 0, or -1
 * at EOF or after timeout_ms. */
static int sse_next(sse *c, char *id, char *event, char *data, size_t cap, int timeout_ms)
{
    int64_t deadline = test_now_ms() + timeout_ms;
    for (;;) {
        char *hdr_end = memmem(c->buf, c->len, "\r\n\r\n", 4);
        if (hdr_end && strncmp(c->buf, "HTTP/1.1 ", 9) == 0) {
            cr_assert(strncmp(c->buf, "HTTP/1.1 200", 12) == 0, "%.*s", (int)c->len, c->buf);
            cr_assert(memmem(c->buf, (size_t)(hdr_end - c->buf), "text/event-stream", 17));
            size_t skip = (size_t)(hdr_end + 4 - c->buf);
            memmove(c->buf, c->buf + skip, c->len - skip);
            c->len -= skip;
            continue;
        }
        char *end = memmem(c->buf, c->len, "\n\n", 2);
        if (end && !hdr_end && strncmp(c->buf, "HTTP/", 5) != 0) {
            size_t elen = (size_t)(end - c->buf) + 2;
            id[0] = event[0] = data[0] = '\0';
            int comment_only = 1;
            for (char *p = c->buf; p < end + 1;) {
                char *nl = memchr(p, '\n', (size_t)(end + 1 - p));
                size_t ll = (size_t)(nl - p);
                if (ll > 4 && strncmp(p, "id: ", 4) == 0) snprintf(id, 64, "%.*s", (int)ll - 4, p + 4), comment_only = 0;
                else if (ll > 7 && strncmp(p, "event: ", 7) == 0) snprintf(event, 64, "%.*s", (int)ll - 7, p + 7), comment_only = 0;
                else if (ll > 6 && strncmp(p, "data: ", 6) == 0) snprintf(data, cap, "%.*s", (int)ll - 6, p + 6), comment_only = 0;
                p = nl + 1;
            }
            memmove(c->buf, c->buf + elen, c->len - elen);
            c->len -= elen;
            if (comment_only) continue;
            return 0;
        }
        int left = (int)(deadline - test_now_ms());
        if (left <= 0) return -1;
        struct pollfd pf = {c->fd, POLLIN, 0};
        if (poll(&pf, 1, left) <= 0) return -1;
        cr_assert(c->len < sizeof c->buf);
        ssize_t m = read(c->fd, c->buf + c->len, sizeof c->buf - c->len);
        if (m <= 0) return -1;
        c->len += (size_t)m;
    }
}

static void sse_close(sse *c)
{
    if (c->pid > 0) {
        kill(c->pid, SIGKILL);
        waitpid(c->pid, NULL, 0);
        c->pid = 0;
    }
    if (c->fd >= 0) close(c->fd);
    c->fd = -1;
}

static void add_n(const char *stream, int from, int n, char ids[][64])
{
    for (int i = 0; i < n; i++) {
        redisReply *x = test_cmd(rc, "XADD %s * n %d", stream, from + i);
        if (ids) snprintf(ids[from + i], 64, "%s", x->str);
        freeReplyObject(x);
    }
}

Test(serve, sse_resume_exactly_once)
{
    up(NULL);
    static char ids[100][64];
    add_n("live", 0, 10, ids);
    sse c;
    char id[64], ev[64], data[4096];
    /* History after ids[4], then live entries. */
    sse_open(&c, G.port, "/v1/streams/live/live", ids[4]);
    for (int i = 5; i < 10; i++) {
        cr_assert_eq(sse_next(&c, id, ev, data, sizeof data, 5000), 0, "entry %d", i);
        cr_assert_str_eq(id, ids[i]);
        char want[200];
        snprintf(want, sizeof want, "{\"id\":\"%s\",\"fields\":{\"n\":\"%d\"}}", ids[i], i);
        cr_assert_str_eq(data, want);
        cr_assert_str_eq(ev, "");
    }
    add_n("live", 10, 10, ids);
    for (int i = 10; i < 15; i++) {
        cr_assert_eq(sse_next(&c, id, ev, data, sizeof data, 5000), 0, "entry %d", i);
        cr_assert_str_eq(id, ids[i]);
    }
    /* Disconnect mid-stream; entries are added while nobody listens and
     * while the client reconnects. */
    sse_close(&c);
    add_n("live", 20, 20, ids);
    sse_open(&c, G.port, "/v1/streams/live/live", id);
    add_n("live", 40, 20, ids);
    for (int i = 15; i < 60; i++) {
        cr_assert_eq(sse_next(&c, id, ev, data, sizeof data, 5000), 0, "entry %d", i);
        cr_assert_str_eq(id, ids[i], "entry %d", i);
    }
    /* Nothing more: no duplicate. */
    cr_assert_eq(sse_next(&c, id, ev, data, sizeof data, 500), -1, "unexpected %s", id);
    sse_close(&c);

    /* ?last_event_id= as the browser-less form of the header. */
    char path[200];
    snprintf(path, sizeof path, "/v1/streams/live/live?last_event_id=%s", ids[57]);
    sse_open(&c, G.port, path, NULL);
    cr_assert_eq(sse_next(&c, id, ev, data, sizeof data, 5000), 0);
    cr_assert_str_eq(id, ids[58]);
    cr_assert_eq(sse_next(&c, id, ev, data, sizeof data, 5000), 0);
    cr_assert_str_eq(id, ids[59]);
    sse_close(&c);

    /* ?backlog=N: the N newest entries first, then live. */
    sse_open(&c, G.port, "/v1/streams/live/live?backlog=3", NULL);
    for (int i = 57; i < 60; i++) {
        cr_assert_eq(sse_next(&c, id, ev, data, sizeof data, 5000), 0);
        cr_assert_str_eq(id, ids[i]);
    }
    add_n("live", 60, 1, ids);
    cr_assert_eq(sse_next(&c, id, ev, data, sizeof data, 5000), 0);
    cr_assert_str_eq(id, ids[60]);
    sse_close(&c);
    down();
}

Test(serve, sse_window_expired_and_heartbeat)
{
    up((const char *const[]){"--heartbeat-ms", "100", NULL});
    freeReplyObject(test_cmd(rc, "XADD w 5-1 n 1"));
    freeReplyObject(test_cmd(rc, "XADD w 6-1 n 2"));
    freeReplyObject(test_cmd(rc, "XDEL w 5-1"));
    sse c;
    char id[64], ev[64], data[4096];
    sse_open(&c, G.port, "/v1/streams/w/live", "4-0");
    cr_assert_eq(sse_next(&c, id, ev, data, sizeof data, 5000), 0);
    cr_assert_str_eq(ev, "window_expired");
    cr_assert_str_eq(data, "{\"error\":\"window_expired\",\"message\":\"window_expired: entries "
                           "after 4-0 were trimmed; oldest 6-1\"}");
    cr_assert_eq(sse_next(&c, id, ev, data, sizeof data, 2000), -1); /* closed */
    sse_close(&c);

    /* An idle stream gets heartbeat comments. */
    sse_open(&c, G.port, "/v1/streams/w/live", NULL);
    int64_t until = test_now_ms() + 3000;
    while (test_now_ms() < until && !memmem(c.buf, c.len, ": heartbeat\n\n", 13)) {
        struct pollfd pf = {c.fd, POLLIN, 0};
        if (poll(&pf, 1, 100) == 1) {
            ssize_t m = read(c.fd, c.buf + c.len, sizeof c.buf - c.len);
            cr_assert(m > 0);
            c.len += (size_t)m;
        }
    }
    cr_assert(memmem(c.buf, c.len, ": heartbeat\n\n", 13), "no heartbeat");
    sse_close(&c);
    down();
}

/* Count Redis clients blocked in XREAD. */
static int xread_clients(void)
{
    redisReply *x = test_cmd(rc, "CLIENT LIST");
    int n = 0;
    for (const char *p = x->str; (p = strstr(p, "cmd=xread")); p++) n++;
    freeReplyObject(x);
    return n;
}

Test(serve, many_clients_one_reader)
{
    up(NULL);
    enum { N = 200 };
    static sse cs[N];
    static char ids[20][64];
    for (int i = 0; i < N; i++) sse_open_raw(&cs[i], G.port, "/v1/streams/fan/live");
    /* Every client must be attached before the entries come: one request
     * after all the connects is answered after them (one event loop). */
    resp r;
    http(G.port, "GET", "/health", NULL, NULL, &r);
    resp_free(&r);
    usleep(300 * 1000);
    add_n("fan", 0, 20, ids);
    char id[64], ev[64], data[4096];
    for (int i = 0; i < N; i++)
        for (int k = 0; k < 20; k++) {
            cr_assert_eq(sse_next(&cs[i], id, ev, data, sizeof data, 5000), 0, "client %d entry %d", i, k);
            cr_assert_str_eq(id, ids[k], "client %d entry %d", i, k);
        }
    /* One blocking reader for the stream, however many clients. */
    int readers = 0;
    for (int t = 0; t < 20 && readers == 0; t++) {
        readers = xread_clients();
        if (!readers) usleep(20 * 1000);
    }
    cr_assert_eq(readers, 1);
    http(G.port, "GET", "/metrics", NULL, NULL, &r);
    cr_assert(strstr(r.body, "\nstx_live_readers 1\n"), "%s", r.body);
    char line[64];
    snprintf(line, sizeof line, "\nstx_live_clients{kind=\"sse\"} %d\n", N);
    cr_assert(strstr(r.body, line), "%s", r.body);
    resp_free(&r);
    for (int i = 0; i < N; i++) sse_close(&cs[i]);
    down();
}

Test(serve, live_client_limit)
{
    up((const char *const[]){"--max-clients", "2", NULL});
    sse a, b;
    sse_open(&a, G.port, "/v1/streams/l/live", NULL);
    sse_open(&b, G.port, "/v1/streams/l/live", NULL);
    usleep(200 * 1000);
    resp r;
    http(G.port, "GET", "/v1/streams/l/live", NULL, NULL, &r);
    cr_assert_eq(r.status, 503);
    cr_assert_str_eq(r.body, "{\"error\":\"too_many_clients\",\"message\":\"the server has 2 live "
                             "clients already\"}");
    resp_free(&r);
    sse_close(&a);
    sse_close(&b);
    down();
}

Test(serve, slow_client_is_dropped)
{
    up((const char *const[]){"--send-buffer", "50", NULL});
    sse slow;
    sse_open_raw(&slow, G.port, "/v1/streams/slow/live");
    int small = 4096;
    setsockopt(slow.fd, SOL_SOCKET, SO_RCVBUF, &small, sizeof small);
    usleep(300 * 1000);
    /* Far more than fits in the socket buffers and the send buffer. */
    char payload[2048];
    memset(payload, 'p', sizeof payload - 1);
    payload[sizeof payload - 1] = '\0';
    for (int i = 0; i < 3000; i++) freeReplyObject(test_cmd(rc, "XADD slow * p %s", payload));
    resp r;
    int dropped = 0;
    for (int t = 0; t < 100 && !dropped; t++) {
        http(G.port, "GET", "/metrics", NULL, NULL, &r);
        dropped = strstr(r.body, "\nstx_live_dropped_slow_clients_total 1\n") != NULL;
        resp_free(&r);
        if (!dropped) usleep(100 * 1000);
    }
    cr_assert(dropped, "the stalled client was not dropped");
    sse_close(&slow);
    down();
}

/* ------------------------------------------------------------------ */
/* WebSocket                                                            */

static int ws_open(int port, const char *path)
{
    int fd = connect_to(port);
    char req[512];
    int n = snprintf(req, sizeof req,
                     "GET %s HTTP/1.1\r\nHost: localhost\r\nUpgrade: websocket\r\nConnection: "
                     "Upgrade\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n"
                     "Sec-WebSocket-Version: 13\r\n\r\n",
                     path);
    send_all(fd, req, (size_t)n);
    char buf[1024];
    size_t len = 0;
    while (!memmem(buf, len, "\r\n\r\n", 4)) {
        ssize_t m = recv(fd, buf + len, 1, 0);
        cr_assert(m == 1, "handshake cut");
        len++;
        cr_assert(len < sizeof buf);
    }
    cr_assert(strncmp(buf, "HTTP/1.1 101", 12) == 0, "%.*s", (int)len, buf);
    cr_assert(memmem(buf, len, "s3pPLMBiTxaQ9kYGzzhZRbK+xOo=", 28), "%.*s", (int)len, buf);
    return fd;
}

static int recv_n(int fd, void *p, size_t n, int timeout_ms)
{
    size_t got = 0;
    while (got < n) {
        struct pollfd pf = {fd, POLLIN, 0};
        if (poll(&pf, 1, timeout_ms) <= 0) return -1;
        ssize_t m = recv(fd, (char *)p + got, n - got, 0);
        if (m <= 0) return -1;
        got += (size_t)m;
    }
    return 0;
}

/* The next data or close frame: opcode (1 text, 8 close), payload. */
static int ws_next(int fd, char *out, size_t cap, size_t *len, int timeout_ms)
{
    for (;;) {
        unsigned char h[2];
        if (recv_n(fd, h, 2, timeout_ms)) return -1;
        int op = h[0] & 0x0f;
        cr_assert(!(h[1] & 0x80), "server frames are not masked");
        uint64_t n = h[1] & 0x7f;
        if (n == 126) {
            unsigned char e[2];
            if (recv_n(fd, e, 2, timeout_ms)) return -1;
            n = (uint64_t)e[0] << 8 | e[1];
        } else if (n == 127) {
            unsigned char e[8];
            if (recv_n(fd, e, 8, timeout_ms)) return -1;
            n = 0;
            for (int i = 0; i < 8; i++) n = n << 8 | e[i];
        }
        cr_assert(n < cap);
        if (recv_n(fd, out, (size_t)n, timeout_ms)) return -1;
        out[n] = '\0';
        *len = (size_t)n;
        if (op == 9 || op == 10) continue; /* ping, pong */
        return op;
    }
}

Test(serve, websocket_resume_and_close_code)
{
    up(NULL);
    static char ids[30][64];
    add_n("wsx", 0, 10, ids);
    char path[200], buf[4096], want[200];
    size_t len;
    snprintf(path, sizeof path, "/v1/streams/wsx/ws?last_event_id=%s", ids[2]);
    int fd = ws_open(G.port, path);
    for (int i = 3; i < 10; i++) {
        cr_assert_eq(ws_next(fd, buf, sizeof buf, &len, 5000), 1, "entry %d", i);
        snprintf(want, sizeof want, "{\"id\":\"%s\",\"fields\":{\"n\":\"%d\"}}", ids[i], i);
        cr_assert_str_eq(buf, want);
    }
    add_n("wsx", 10, 5, ids);
    for (int i = 10; i < 15; i++) {
        cr_assert_eq(ws_next(fd, buf, sizeof buf, &len, 5000), 1, "entry %d", i);
        snprintf(want, sizeof want, "{\"id\":\"%s\",\"fields\":{\"n\":\"%d\"}}", ids[i], i);
        cr_assert_str_eq(buf, want);
    }
    close(fd);
    add_n("wsx", 15, 5, ids);
    snprintf(path, sizeof path, "/v1/streams/wsx/ws?last_event_id=%s", ids[14]);
    fd = ws_open(G.port, path);
    add_n("wsx", 20, 5, ids);
    for (int i = 15; i < 25; i++) {
        cr_assert_eq(ws_next(fd, buf, sizeof buf, &len, 5000), 1, "entry %d", i);
        snprintf(want, sizeof want, "{\"id\":\"%s\",\"fields\":{\"n\":\"%d\"}}", ids[i], i);
        cr_assert_str_eq(buf, want);
    }
    close(fd);

    /* An expired cursor: close code 4410 and a reason. */
    freeReplyObject(test_cmd(rc, "XDEL wsx %s", ids[0]));
    fd = ws_open(G.port, "/v1/streams/wsx/ws?last_event_id=1-0");
    cr_assert_eq(ws_next(fd, buf, sizeof buf, &len, 5000), 8);
    cr_assert(len >= 2);
    int code = (unsigned char)buf[0] << 8 | (unsigned char)buf[1];
    cr_assert_eq(code, 4410);
    cr_assert(strncmp(buf + 2, "window_expired: entries after 1-0 were trimmed; oldest ", 55) == 0,
              "%s", buf + 2);
    close(fd);
    down();
}

/* A partitioned stream's live clients follow one partition each, with
 * that partition's ids as resume cursors. */
Test(serve, partitioned_live)
{
    up(NULL);
    freeReplyObject(test_cmd(rc, "HSET {pl}:stx-parts:2:pl partitions 4"));
    freeReplyObject(test_cmd(rc, "XADD {pl#3} 1000-1 n a"));
    freeReplyObject(test_cmd(rc, "XADD {pl#3} 1001-0 n b"));
    freeReplyObject(test_cmd(rc, "XADD {pl#1} 1001-0 n x"));
    resp r;
    http(G.port, "GET", "/v1/streams/pl/live", NULL, NULL, &r);
    cr_assert_eq(r.status, 400);
    cr_assert_str_eq(r.body, "{\"error\":\"partition_required\",\"message\":\"'pl' has 4 "
                             "partitions: name one with ?partition=0 to 3 (ids are ids of that "
                             "partition)\"}");
    resp_free(&r);
    http(G.port, "GET", "/v1/streams/pl/live?partition=4", NULL, NULL, &r);
    cr_assert_eq(r.status, 400);
    cr_assert_str_eq(r.body, "{\"error\":\"bad_partition\",\"message\":\"partition is 0 to 3\"}");
    resp_free(&r);

    sse c;
    char id[64], ev[64], data[4096];
    sse_open(&c, G.port, "/v1/streams/pl/live?partition=3", "1000-1");
    cr_assert_eq(sse_next(&c, id, ev, data, sizeof data, 5000), 0);
    cr_assert_str_eq(id, "1001-0");
    cr_assert_str_eq(data, "{\"id\":\"1001-0\",\"partition\":3,\"fields\":{\"n\":\"b\"}}");
    freeReplyObject(test_cmd(rc, "XADD {pl#1} 1002-0 n y")); /* another partition */
    freeReplyObject(test_cmd(rc, "XADD {pl#3} 1003-0 n c"));
    cr_assert_eq(sse_next(&c, id, ev, data, sizeof data, 5000), 0);
    cr_assert_str_eq(data, "{\"id\":\"1003-0\",\"partition\":3,\"fields\":{\"n\":\"c\"}}");
    sse_close(&c);
    /* Resume after a disconnect: exactly the later entries. */
    freeReplyObject(test_cmd(rc, "XADD {pl#3} 1004-0 n d"));
    sse_open(&c, G.port, "/v1/streams/pl/live?partition=3", id);
    cr_assert_eq(sse_next(&c, id, ev, data, sizeof data, 5000), 0);
    cr_assert_str_eq(data, "{\"id\":\"1004-0\",\"partition\":3,\"fields\":{\"n\":\"d\"}}");
    cr_assert_eq(sse_next(&c, id, ev, data, sizeof data, 500), -1, "unexpected %s", id);
    sse_close(&c);

    /* WebSocket: the same, and a close code without the partition. */
    char buf[4096];
    size_t len;
    int fd = ws_open(G.port, "/v1/streams/pl/ws?partition=1&last_event_id=1001-0");
    cr_assert_eq(ws_next(fd, buf, sizeof buf, &len, 5000), 1);
    cr_assert_str_eq(buf, "{\"id\":\"1002-0\",\"partition\":1,\"fields\":{\"n\":\"y\"}}");
    close(fd);
    fd = ws_open(G.port, "/v1/streams/pl/ws");
    cr_assert_eq(ws_next(fd, buf, sizeof buf, &len, 5000), 8);
    cr_assert(len >= 2);
    cr_assert_eq((unsigned char)buf[0] << 8 | (unsigned char)buf[1], 4400);
    cr_assert_str_eq(buf + 2, "partition_required: add ?partition=0 to 3");
    close(fd);
    down();
}

/* ------------------------------------------------------------------ */
/* health, metrics, tokens                                              */

Test(serve, health_follows_redis)
{
    up(NULL);
    resp r;
    http(G.port, "GET", "/health", NULL, NULL, &r);
    cr_assert_eq(r.status, 200);
    static const char ok_prefix[] =
        "{\"status\":\"warn\",\"checks\":[{\"name\":\"redis\",\"status\":\"ok\"";
    cr_assert(strncmp(r.body, ok_prefix, sizeof ok_prefix - 1) == 0,
              "%s", r.body);
    resp_free(&r);
    redisFree(rc);
    rc = NULL;
    test_redis_kill(&R);
    http(G.port, "GET", "/health", NULL, NULL, &r);
    cr_assert_eq(r.status, 503, "%s", r.body);
    static const char fail_prefix[] =
        "{\"status\":\"fail\",\"checks\":[{\"name\":\"redis\",\"status\":\"fail\",\"detail\":";
    cr_assert(strncmp(r.body, fail_prefix, sizeof fail_prefix - 1) == 0,
              "%s", r.body);
    resp_free(&r);
    test_redis_restart(&R);
    http(G.port, "GET", "/health", NULL, NULL, &r);
    cr_assert_eq(r.status, 200, "%s", r.body);
    resp_free(&r);
    down();
}

Test(serve, metrics_exposition)
{
    up(NULL);
    freeReplyObject(test_cmd(rc, "XADD m\"q * a 1"));
    freeReplyObject(test_cmd(rc, "XGROUP CREATE m\"q g 0"));
    redisReply *x = test_cmd(rc, "XREADGROUP GROUP g c COUNT 1 STREAMS m\"q >");
    freeReplyObject(x);
    resp r;
    http(G.port, "GET", "/v1/streams", NULL, NULL, &r);
    resp_free(&r);
    http(G.port, "GET", "/metrics", NULL, NULL, &r);
    cr_assert_eq(r.status, 200);
    char h[100];
    cr_assert_str_eq(header(&r, "content-type", h, sizeof h), "text/plain; version=0.0.4; charset=utf-8");
    cr_assert(strstr(r.body, "\nstx_stream_length{stream=\"m\\\"q\"} 1\n"), "%s", r.body);
    cr_assert(strstr(r.body, "\nstx_group_pending{stream=\"m\\\"q\",group=\"g\"} 1\n"), "%s", r.body);
    cr_assert(strstr(r.body, "\nstx_http_requests_total{route=\"streams\",status=\"200\"} 1\n"), "%s", r.body);
    cr_assert(strstr(r.body, "\nstx_http_request_duration_seconds_count{route=\"streams\"} 1\n"));
    /* Every line: a comment, or NAME{LABELS} VALUE with a HELP and TYPE before. */
    char *save, *copy = strdup(r.body);
    for (char *l = strtok_r(copy, "\n", &save); l; l = strtok_r(NULL, "\n", &save)) {
        if (l[0] == '#') {
            cr_assert(strncmp(l, "# HELP stx_", 11) == 0 || strncmp(l, "# TYPE stx_", 11) == 0, "%s", l);
            continue;
        }
        char *sp = strrchr(l, ' ');
        cr_assert(sp && strncmp(l, "stx_", 4) == 0, "%s", l);
        char *end;
        strtod(sp + 1, &end);
        cr_assert(*end == '\0', "value of %s", l);
    }
    free(copy);
    /* promtool, when installed (Debian's prometheus package). */
    if (access("/usr/bin/promtool", X_OK) == 0) {
        char tmp[] = "/tmp/stx-metrics-XXXXXX";
        int fd = mkstemp(tmp);
        cr_assert(write(fd, r.body, r.body_len) == (ssize_t)r.body_len);
        close(fd);
        char cmd[200];
        snprintf(cmd, sizeof cmd, "promtool check metrics < %s", tmp);
        int st = system(cmd);
        unlink(tmp);
        cr_assert_eq(st, 0, "promtool check metrics failed");
    }
    resp_free(&r);
    down();
}

Test(serve, tokens_and_scopes)
{
    char dir[256], file[300];
    test_tmpdir(dir, sizeof dir);
    snprintf(file, sizeof file, "%s/tokens", dir);
    char cmd[600];
    snprintf(cmd, sizeof cmd,
             "{ echo \"sha256:$(printf %%s reader | sha256sum | cut -c1-64) read\";"
             "  echo \"sha256:$(printf %%s producer | sha256sum | cut -c1-64) produce\";"
             "  echo \"sha256:$(printf %%s boss | sha256sum | cut -c1-64) admin\"; } > %s",
             file);
    cr_assert_eq(system(cmd), 0);
    up((const char *const[]){"--token-file", file, NULL});
    resp r;
    char h[64];
    http(G.port, "GET", "/v1/streams", NULL, NULL, &r);
    cr_assert_eq(r.status, 401);
    cr_assert_str_eq(header(&r, "www-authenticate", h, sizeof h), "Bearer");
    cr_assert_str_eq(r.body, "{\"error\":\"unauthorized\",\"message\":\"a bearer token is required\"}");
    resp_free(&r);
    http(G.port, "GET", "/v1/streams", "Authorization: Bearer nope\r\n", NULL, &r);
    cr_assert_eq(r.status, 401);
    resp_free(&r);
    http(G.port, "GET", "/v1/streams", "Authorization: Bearer reader\r\n", NULL, &r);
    cr_assert_eq(r.status, 200);
    resp_free(&r);
    http(G.port, "POST", "/v1/streams/t/events", "Authorization: Bearer reader\r\n", "{\"type\":\"a\"}", &r);
    cr_assert_eq(r.status, 403);
    cr_assert_str_eq(r.body, "{\"error\":\"forbidden\",\"message\":\"the token lacks the produce scope\"}");
    resp_free(&r);
    http(G.port, "POST", "/v1/streams/t/events", "Authorization: Bearer producer\r\n", "{\"type\":\"a\"}", &r);
    cr_assert_eq(r.status, 201);
    resp_free(&r);
    http(G.port, "POST", "/v1/streams/t/groups/g/dlq/redrive", "Authorization: Bearer producer\r\n", "", &r);
    cr_assert_eq(r.status, 403);
    resp_free(&r);
    http(G.port, "GET", "/v1/streams/t/events?after=0&access_token=boss", NULL, NULL, &r);
    cr_assert_eq(r.status, 200);
    resp_free(&r);
    http(G.port, "GET", "/health", NULL, NULL, &r);
    cr_assert_eq(r.status, 200);
    resp_free(&r);
    down();
    test_rmrf(dir);
}

Test(serve, refuses_public_address_without_tokens)
{
    test_redis_start(&R, 0, NULL);
    char cmd[400];
    snprintf(cmd, sizeof cmd, "%s --url %s serve --listen 0.0.0.0:0 2>&1", STX_CLI_PATH, R.url);
    FILE *p = popen(cmd, "r");
    char out[600] = "";
    size_t n = fread(out, 1, sizeof out - 1, p);
    out[n] = '\0';
    int st = pclose(p);
    cr_assert_eq(WEXITSTATUS(st), 2);
    cr_assert_str_eq(out, "stx: serve: refusing to listen on 0.0.0.0 without --token-file: anyone "
                          "who reaches it could produce and redrive (loopback addresses need no "
                          "token)\n");
    test_redis_stop(&R);
}

Test(serve, dlq_and_redrive)
{
    up(NULL);
    char key[256];
    stx_key_name(key, sizeof key, "d", "g", "dlq");
    freeReplyObject(test_cmd(rc, "XADD d 1-1 a 1"));
    freeReplyObject(test_cmd(rc, "XGROUP CREATE d g $"));
    freeReplyObject(test_cmd(rc, "XADD %s 1-1 stx.fields 1 a 1 stx.source_stream d stx.group g stx.source_id 1-1 "
                                 "stx.reason handler stx.error boom stx.attempts 3 stx.failed_at 5",
                             key));
    resp r;
    http(G.port, "GET", "/v1/streams/d/groups/g/dlq", NULL, NULL, &r);
    cr_assert_eq(r.status, 200, "%s", r.body);
    cr_assert(strstr(r.body, "\"stx.reason\":\"handler\",\"stx.error\":\"boom\""), "%s", r.body);
    resp_free(&r);
    http(G.port, "POST", "/v1/streams/d/groups/g/dlq/redrive", NULL, "{\"ids\":[\"1-1\"]}", &r);
    cr_assert_eq(r.status, 200, "%s", r.body);
    cr_assert_str_eq(r.body, "{\"moved\":1}");
    resp_free(&r);
    cr_assert_eq(test_cmd_int(rc, "XLEN d"), 2);
    cr_assert_eq(test_cmd_int(rc, "XLEN %s", key), 0);
    down();
}

/* A partitioned stream's dead letters are per partition. */
Test(serve, partitioned_dlq)
{
    up(NULL);
    freeReplyObject(test_cmd(rc, "HSET {pd}:stx-parts:2:pd partitions 2"));
    char key[256];
    stx_key_name(key, sizeof key, "{pd#1}", "g", "dlq");
    freeReplyObject(test_cmd(rc, "XADD {pd#1} 1-1 a 1"));
    freeReplyObject(test_cmd(rc, "XGROUP CREATE {pd#1} g $"));
    freeReplyObject(test_cmd(rc, "XADD %s 1-1 stx.fields 1 a 1 stx.source_stream {pd#1} stx.group g "
                                 "stx.source_id 1-1 stx.reason handler stx.error boom "
                                 "stx.attempts 3 stx.failed_at 5",
                             key));
    resp r;
    http(G.port, "GET", "/v1/streams/pd/groups/g/dlq", NULL, NULL, &r);
    cr_assert_eq(r.status, 400, "%s", r.body);
    cr_assert_str_eq(r.body, "{\"error\":\"partition_required\",\"message\":\"'pd' has 2 "
                             "partitions: name one with ?partition=0 to 1 (ids are ids of that "
                             "partition)\"}");
    resp_free(&r);
    http(G.port, "GET", "/v1/streams/pd/groups/g/dlq?partition=1", NULL, NULL, &r);
    cr_assert_eq(r.status, 200, "%s", r.body);
    cr_assert(strstr(r.body, "\"stx.reason\":\"handler\",\"stx.error\":\"boom\""), "%s", r.body);
    resp_free(&r);
    http(G.port, "POST", "/v1/streams/pd/groups/g/dlq/redrive", NULL, "{\"ids\":[\"1-1\"]}", &r);
    cr_assert_eq(r.status, 400, "%s", r.body);
    resp_free(&r);
    http(G.port, "POST", "/v1/streams/pd/groups/g/dlq/redrive?partition=1", NULL,
         "{\"ids\":[\"1-1\"]}", &r);
    cr_assert_eq(r.status, 200, "%s", r.body);
    cr_assert_str_eq(r.body, "{\"moved\":1}");
    resp_free(&r);
    cr_assert_eq(test_cmd_int(rc, "XLEN {pd#1}"), 2);
    cr_assert_eq(test_cmd_int(rc, "XLEN %s", key), 0);
    down();
}

Test(serve, console_page)
{
    up(NULL);
    resp r;
    http(G.port, "GET", "/", NULL, NULL, &r);
    cr_assert_eq(r.status, 200);
    char h[100];
    cr_assert_str_eq(header(&r, "content-type", h, sizeof h), "text/html; charset=utf-8");
    cr_assert(strstr(r.body, "<title>streamtx console</title>"));
    cr_assert_eq(r.body_len, strlen(r.body));
    /* Nothing fetched from elsewhere: no absolute URL in a src or href. */
    cr_assert_null(strstr(r.body, "src=\"http"));
    cr_assert_null(strstr(r.body, "href=\"http"));
    cr_assert_null(strstr(r.body, "//cdn"));
    resp_free(&r);
    http(G.port, "GET", "/console/nothing.js", NULL, NULL, &r);
    cr_assert_eq(r.status, 404);
    resp_free(&r);
    down();
}

/* Producers retrying after connections they cut themselves: exactly one
 * entry per key. */
Test(serve, producers_retry_after_disconnects)
{
    up(NULL);
    enum { PROCS = 4, KEYS = 50 };
    pid_t kids[PROCS];
    for (int p = 0; p < PROCS; p++) {
        kids[p] = fork();
        cr_assert(kids[p] >= 0);
        if (kids[p] == 0) {
            for (int k = 0; k < KEYS; k++) {
                char hdr[100], body[100], req[512];
                snprintf(hdr, sizeof hdr, "Idempotency-Key: p%d-%d\r\n", p, k);
                snprintf(body, sizeof body, "{\"type\":\"load\",\"key\":\"p%d-%d\"}", p, k);
                /* First try: the request goes out, the connection is cut
                 * before the answer (the outcome is unknown to the client). */
                int fd = connect_to(G.port);
                int n = snprintf(req, sizeof req,
                                 "POST /v1/streams/load/events HTTP/1.1\r\nHost: x\r\n%s"
                                 "Content-Length: %zu\r\n\r\n%s",
                                 hdr, strlen(body), body);
                send_all(fd, req, (size_t)n);
                if (k % 2) usleep(1000);
                close(fd);
                /* Retries until an answer. */
                resp r;
                http(G.port, "POST", "/v1/streams/load/events", hdr, body, &r);
                if (r.status != 201 && r.status != 200) _exit(1);
                resp_free(&r);
                http(G.port, "POST", "/v1/streams/load/events", hdr, body, &r);
                if (r.status != 200) _exit(2);
                resp_free(&r);
            }
            _exit(0);
        }
    }
    for (int p = 0; p < PROCS; p++) {
        int st;
        waitpid(kids[p], &st, 0);
        cr_assert(WIFEXITED(st) && WEXITSTATUS(st) == 0, "producer %d: %d", p, st);
    }
    cr_assert_eq(test_cmd_int(rc, "XLEN load"), PROCS * KEYS);
    /* Every key once. */
    redisReply *x = test_cmd(rc, "XRANGE load - +");
    static char seen[PROCS][KEYS];
    for (size_t i = 0; i < x->elements; i++) {
        redisReply *f = x->element[i]->element[1];
        int p, k;
        cr_assert(sscanf(f->element[3]->str, "p%d-%d", &p, &k) == 2);
        cr_assert(!seen[p][k], "key p%d-%d twice", p, k);
        seen[p][k] = 1;
    }
    freeReplyObject(x);
    down();
}

Test(serve, tls_and_cors)
{
    char dir[256], cert[300], key[300], ca[300];
    test_tmpdir(dir, sizeof dir);
    test_tls_make(dir);
    snprintf(cert, sizeof cert, "%s/server.crt", dir);
    snprintf(key, sizeof key, "%s/server.key", dir);
    snprintf(ca, sizeof ca, "%s/ca.crt", dir);
    test_redis_start(&R, 0, NULL);
    rc = test_redis_connect(&R);
    /* The "listening on" line says https: gw_start() wants http. */
    int out[2];
    cr_assert(pipe(out) == 0);
    G.pid = fork();
    if (G.pid == 0) {
        prctl(PR_SET_PDEATHSIG, SIGTERM);
        dup2(out[1], 1);
        close(out[0]);
        close(out[1]);
        execl(STX_CLI_PATH, STX_CLI_PATH, "--url", R.url, "serve", "--listen", "127.0.0.1:0",
              "--tls-cert", cert, "--tls-key", key, "--cors", "https://app.example,https://b.example",
              (char *)NULL);
        _exit(127);
    }
    close(out[1]);
    char line[200] = "";
    FILE *f = fdopen(out[0], "r");
    cr_assert(fgets(line, sizeof line, f));
    fclose(f);
    cr_assert(strncmp(line, "listening on https://127.0.0.1:", 31) == 0, "%s", line);
    G.port = atoi(strrchr(line, ':') + 1);
    char cmd[1024], got[200] = "";
    snprintf(cmd, sizeof cmd,
             "curl -s --cacert %s -o /dev/null -w '%%{http_code} %%{http_version}' "
             "https://localhost:%d/health",
             ca, G.port);
    FILE *p = popen(cmd, "r");
    cr_assert(fgets(got, sizeof got, p));
    pclose(p);
    cr_assert_str_eq(got, "200 1.1");
    /* CORS: an allowed origin is echoed, another is not; preflight 204. */
    snprintf(cmd, sizeof cmd,
             "curl -s --cacert %s -D - -o /dev/null -X OPTIONS -H 'Origin: https://b.example' "
             "https://localhost:%d/v1/streams/x/events | tr -d '\\r' | grep -i '^access-control\\|^HTTP'",
             ca, G.port);
    p = popen(cmd, "r");
    char all[1024] = "";
    size_t n = fread(all, 1, sizeof all - 1, p);
    all[n] = '\0';
    pclose(p);
    cr_assert(strstr(all, "HTTP/1.1 204"), "%s", all);
    cr_assert(strstr(all, "access-control-allow-origin: https://b.example\n"), "%s", all);
    cr_assert(strstr(all, "access-control-allow-methods: GET, POST, OPTIONS\n"), "%s", all);
    snprintf(cmd, sizeof cmd,
             "curl -s --cacert %s -D - -o /dev/null -H 'Origin: https://evil.example' "
             "https://localhost:%d/health | tr -d '\\r' | grep -ci '^access-control'",
             ca, G.port);
    p = popen(cmd, "r");
    cr_assert(fgets(got, sizeof got, p));
    pclose(p);
    cr_assert_str_eq(got, "0\n");
    down();
    test_rmrf(dir);
}
