/* Test harness: real redis-server processes on free loopback ports.
 *
 * Each server runs in the foreground (--daemonize no) as a child of the test
 * process, in its own temporary directory, logging to DIR/redis.log.  The
 * child asks the kernel to SIGKILL it when its parent thread exits
 * (PR_SET_PDEATHSIG), so a crashing test leaves no orphan behind.  Note that
 * the signal follows the *thread* that forked: start servers from the test's
 * main thread, not from a short-lived helper thread.  Servers still running
 * when the test process exits normally are killed and their directories
 * removed by an atexit handler. */
#define _XOPEN_SOURCE 700 /* nftw */

#include "harness.h"
#include "streamtx.h"
#include "scripts.h"

#include <criterion/criterion.h>
#include <errno.h>
#include <fcntl.h>
#include <ftw.h>
#include <netinet/in.h>
#include <signal.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/prctl.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>
#include <arpa/inet.h>

#define REDIS_SERVER_BIN "redis-server"
#define START_DEADLINE_MS 10000
#define PORT_TRIES 20
#define MAX_EXTRA_ARGS 64
#define LOG_TAIL_BYTES 2048

/* ------------------------------------------------------------------ */
/* small helpers                                                        */

int64_t test_now_ms(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

static void sleep_ms(long ms)
{
    struct timespec ts = { ms / 1000, (ms % 1000) * 1000000L };
    while (nanosleep(&ts, &ts) != 0 && errno == EINTR) {
    }
}

const char *test_unique(const char *base, char *buf, size_t cap)
{
    /* Criterion runs every test in its own process, so pid + counter is
     * unique across the tests of one run. */
    static unsigned counter;
    snprintf(buf, cap, "%s-%ld-%u", base, (long)getpid(), ++counter);
    return buf;
}

void test_tmpdir(char *buf, size_t cap)
{
    static const char tmpl[] = "/tmp/stx-test-XXXXXX";
    cr_assert(cap >= sizeof tmpl, "test_tmpdir: buffer of %zu bytes is too small", cap);
    memcpy(buf, tmpl, sizeof tmpl);
    cr_assert(mkdtemp(buf) != NULL, "mkdtemp(%s): %s", tmpl, strerror(errno));
}

static int rmrf_one(const char *path, const struct stat *st, int flag, struct FTW *ftw)
{
    (void)st;
    (void)flag;
    (void)ftw;
    if (remove(path) != 0 && errno != ENOENT)
        fprintf(stderr, "test_rmrf: remove(%s): %s\n", path, strerror(errno));
    return 0; /* keep going: remove as much as possible */
}

void test_rmrf(const char *path)
{
    if (path == NULL || path[0] == '\0')
        return;
    if (nftw(path, rmrf_one, 16, FTW_DEPTH | FTW_PHYS) != 0 && errno != ENOENT)
        fprintf(stderr, "test_rmrf: nftw(%s): %s\n", path, strerror(errno));
}

/* Last LOG_TAIL_BYTES of a file into buf (empty string when unreadable). */
static void file_tail(const char *path, char *buf, size_t cap)
{
    buf[0] = '\0';
    FILE *f = fopen(path, "r");
    if (f == NULL)
        return;
    long want = (long)(cap - 1 < LOG_TAIL_BYTES ? cap - 1 : LOG_TAIL_BYTES);
    if (fseek(f, 0, SEEK_END) == 0) {
        long size = ftell(f);
        if (size > want)
            fseek(f, size - want, SEEK_SET);
        else
            fseek(f, 0, SEEK_SET);
    }
    size_t n = fread(buf, 1, cap - 1, f);
    buf[n] = '\0';
    fclose(f);
}

static int file_contains(const char *path, const char *needle)
{
    char tail[LOG_TAIL_BYTES + 1];
    file_tail(path, tail, sizeof tail);
    return strstr(tail, needle) != NULL;
}

/* ------------------------------------------------------------------ */
/* the servers this process started                                     */

/* One entry per server directory: its pid (0 when killed) and a copy of its
 * extra arguments for restart().  Entries go away on test_redis_stop(); the
 * atexit handler kills and removes whatever is left. */
#define MAX_LIVE 32
static struct {
    pid_t owner; /* process that started it: forked children must not clean up */
    pid_t pid;
    char dir[256];
    char *extra[MAX_EXTRA_ARGS + 1];
} live[MAX_LIVE];

static int live_find(const char *dir)
{
    for (int i = 0; i < MAX_LIVE; i++)
        if (live[i].owner == getpid() && strcmp(live[i].dir, dir) == 0)
            return i;
    return -1;
}

static void live_forget(const char *dir)
{
    int i = live_find(dir);
    if (i < 0)
        return;
    for (int j = 0; live[i].extra[j] != NULL; j++) {
        free(live[i].extra[j]);
        live[i].extra[j] = NULL;
    }
    live[i].dir[0] = '\0';
    live[i].pid = 0;
}

static void live_cleanup(void)
{
    for (int i = 0; i < MAX_LIVE; i++) {
        if (live[i].owner != getpid() || live[i].dir[0] == '\0')
            continue;
        if (live[i].pid > 0) {
            kill(live[i].pid, SIGKILL);
            waitpid(live[i].pid, NULL, 0);
        }
        test_rmrf(live[i].dir);
        live_forget(live[i].dir);
    }
}

/* New entry for dir with a copy of extra. */
static void live_add(const char *dir, const char *const *extra)
{
    static int registered;
    if (!registered) {
        atexit(live_cleanup);
        registered = 1;
    }
    int i = -1;
    for (int j = 0; i < 0 && j < MAX_LIVE; j++)
        if (live[j].owner != getpid() || live[j].dir[0] == '\0')
            i = j;
    cr_assert(i >= 0, "test_redis_start: more than %d servers in one test", MAX_LIVE);
    for (int j = 0; live[i].extra[j] != NULL; j++) { /* left by a parent process */
        free(live[i].extra[j]);
        live[i].extra[j] = NULL;
    }
    live[i].owner = getpid();
    live[i].pid = 0;
    snprintf(live[i].dir, sizeof live[i].dir, "%s", dir);
    for (int j = 0; extra != NULL && extra[j] != NULL; j++) {
        cr_assert(j < MAX_EXTRA_ARGS, "test_redis_start: more than %d extra arguments",
                  MAX_EXTRA_ARGS);
        live[i].extra[j] = strdup(extra[j]);
        cr_assert(live[i].extra[j] != NULL, "out of memory");
    }
}

static void live_set_pid(const char *dir, pid_t pid)
{
    int i = live_find(dir);
    if (i >= 0)
        live[i].pid = pid;
}

static const char *const *live_extra(const char *dir)
{
    int i = live_find(dir);
    return i >= 0 ? (const char *const *)live[i].extra : NULL;
}

/* ------------------------------------------------------------------ */
/* ports and processes                                                  */

/* 1 when 127.0.0.1:port can be bound now; with port 0, the kernel's choice
 * goes to *chosen. */
static int try_bind(int port, int *chosen)
{
    int fd = socket(AF_INET, SOCK_STREAM, 0);
    cr_assert(fd >= 0, "socket: %s", strerror(errno));
    struct sockaddr_in sa;
    memset(&sa, 0, sizeof sa);
    sa.sin_family = AF_INET;
    sa.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    sa.sin_port = htons((uint16_t)port);
    socklen_t len = sizeof sa;
    int ok = bind(fd, (struct sockaddr *)&sa, sizeof sa) == 0 &&
             getsockname(fd, (struct sockaddr *)&sa, &len) == 0;
    close(fd);
    if (ok && chosen != NULL)
        *chosen = ntohs(sa.sin_port);
    return ok;
}

/* A free loopback port P that also leaves P+10000 free and below 65536, so
 * that a test may pass --cluster-enabled yes in extra (the cluster bus
 * listens on P+10000). */
static int free_port(void)
{
    for (int i = 0; i < 1000; i++) {
        int port = 0;
        if (!try_bind(0, &port))
            continue;
        if (port <= 65535 - 10000 && try_bind(port + 10000, NULL))
            return port;
    }
    cr_assert_fail("cannot find a free loopback port P with P+10000 also free");
    return -1;
}

typedef enum { SPAWN_OK, SPAWN_PORT_TAKEN } spawn_result;

/* argv for one start; the strings live in this struct. */
typedef struct {
    char port[16];
    char logfile[300];
    const char *argv[32 + MAX_EXTRA_ARGS];
} server_args;

static void build_args(server_args *a, const test_redis *r, const char *const *extra)
{
    int n = 0;
    snprintf(a->port, sizeof a->port, "%d", r->port);
    snprintf(a->logfile, sizeof a->logfile, "%s/redis.log", r->dir);
    a->argv[n++] = REDIS_SERVER_BIN;
    a->argv[n++] = "--port";
    a->argv[n++] = a->port;
    a->argv[n++] = "--bind";
    a->argv[n++] = "127.0.0.1";
    a->argv[n++] = "--dir";
    a->argv[n++] = r->dir;
    a->argv[n++] = "--save";
    a->argv[n++] = "";
    a->argv[n++] = "--appendonly";
    a->argv[n++] = r->appendonly ? "yes" : "no";
    if (r->appendonly) {
        a->argv[n++] = "--appendfsync";
        a->argv[n++] = "always";
    }
    a->argv[n++] = "--daemonize";
    a->argv[n++] = "no";
    a->argv[n++] = "--logfile";
    a->argv[n++] = a->logfile;
    a->argv[n++] = "--protected-mode";
    a->argv[n++] = "no";
    for (int i = 0; extra != NULL && extra[i] != NULL; i++) {
        cr_assert(i < MAX_EXTRA_ARGS, "test_redis_start: more than %d extra arguments",
                  MAX_EXTRA_ARGS);
        a->argv[n++] = extra[i];
    }
    a->argv[n] = NULL;
}

/* fork + exec redis-server; returns the child's pid. */
static pid_t spawn(const server_args *a, const char *dir)
{
    char outpath[300];
    snprintf(outpath, sizeof outpath, "%s/redis.out", dir);
    /* Drop the previous attempt's log so failure checks see only this run. */
    unlink(a->logfile);

    int in = open("/dev/null", O_RDONLY | O_CLOEXEC);
    cr_assert(in >= 0, "open /dev/null: %s", strerror(errno));
    int out = open(outpath, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0644);
    cr_assert(out >= 0, "open %s: %s", outpath, strerror(errno));
    long maxfd = sysconf(_SC_OPEN_MAX);
    if (maxfd < 0 || maxfd > 65536)
        maxfd = 65536;
    pid_t parent = getpid();

    fflush(NULL);
    pid_t pid = fork();
    if (pid == 0) {
        /* Child: async-signal-safe calls only until exec. */
        prctl(PR_SET_PDEATHSIG, SIGKILL);
        if (getppid() != parent)
            _exit(127); /* parent already gone */
        dup2(in, 0);
        dup2(out, 1);
        dup2(out, 2);
        for (int fd = 3; fd < maxfd; fd++)
            close(fd); /* no test-runner pipes or client sockets */
        execvp(a->argv[0], (char *const *)a->argv);
        _exit(127);
    }
    int err = errno;
    close(in);
    close(out);
    cr_assert(pid > 0, "fork: %s", strerror(err));
    return pid;
}

static void fail_with_log(const test_redis *r, const char *what)
{
    char path[300], log[LOG_TAIL_BYTES + 1], out[LOG_TAIL_BYTES + 1];
    snprintf(path, sizeof path, "%s/redis.log", r->dir);
    file_tail(path, log, sizeof log);
    snprintf(path, sizeof path, "%s/redis.out", r->dir);
    file_tail(path, out, sizeof out);
    cr_assert_fail("redis-server on port %d (dir %s): %s\n"
                   "--- redis.log (tail) ---\n%s\n--- stdout/stderr ---\n%s",
                   r->port, r->dir, what, log, out);
}

/* Value of "field:" in an INFO reply, or -1. */
static long long info_field(const char *info, const char *field)
{
    size_t flen = strlen(field);
    for (const char *p = info; p != NULL && *p != '\0';) {
        if (strncmp(p, field, flen) == 0 && p[flen] == ':')
            return strtoll(p + flen + 1, NULL, 10);
        p = strchr(p, '\n');
        if (p != NULL)
            p++;
    }
    return -1;
}

/* 1 when the server on r->port answers PING, is our child, and has
 * finished loading its data; 0 otherwise. */
static int server_ready(const test_redis *r)
{
    struct timeval tv = { 1, 0 };
    redisContext *c = redisConnectWithTimeout("127.0.0.1", r->port, tv);
    int ready = 0;
    if (c == NULL || c->err)
        goto done;
    redisReply *rep = redisCommand(c, "PING");
    ready = rep != NULL && rep->type == REDIS_REPLY_STATUS && strcmp(rep->str, "PONG") == 0;
    if (rep != NULL)
        freeReplyObject(rep);
    if (!ready)
        goto done; /* e.g. -LOADING */
    rep = redisCommand(c, "INFO");
    ready = rep != NULL && rep->type == REDIS_REPLY_STRING &&
            info_field(rep->str, "process_id") == (long long)r->pid &&
            info_field(rep->str, "loading") == 0;
    if (rep != NULL)
        freeReplyObject(rep);
done:
    if (c != NULL)
        redisFree(c);
    return ready;
}

/* Start the server described by r (port, dir, appendonly) and wait for it. */
static spawn_result launch(test_redis *r, const char *const *extra)
{
    server_args a;
    build_args(&a, r, extra);
    r->pid = spawn(&a, r->dir);
    live_set_pid(r->dir, r->pid);

    int64_t deadline = test_now_ms() + START_DEADLINE_MS;
    for (;;) {
        int status;
        pid_t w = waitpid(r->pid, &status, WNOHANG);
        if (w == r->pid) {
            r->pid = 0;
            live_set_pid(r->dir, 0);
            if (file_contains(a.logfile, "Address already in use"))
                return SPAWN_PORT_TAKEN;
            char what[128];
            if (WIFEXITED(status))
                snprintf(what, sizeof what, "exited with status %d during start-up",
                         WEXITSTATUS(status));
            else
                snprintf(what, sizeof what, "killed by signal %d during start-up",
                         WIFSIGNALED(status) ? WTERMSIG(status) : -1);
            fail_with_log(r, what);
        }
        if (server_ready(r))
            return SPAWN_OK;
        if (test_now_ms() > deadline) {
            kill(r->pid, SIGKILL);
            waitpid(r->pid, NULL, 0);
            r->pid = 0;
            live_set_pid(r->dir, 0);
            fail_with_log(r, "no PONG (or still loading) after 10 s");
        }
        sleep_ms(20);
    }
}

/* ------------------------------------------------------------------ */
/* public                                                               */

void test_redis_start(test_redis *r, int appendonly, const char *const *extra)
{
    memset(r, 0, sizeof *r);
    r->appendonly = appendonly ? 1 : 0;
    test_tmpdir(r->dir, sizeof r->dir);
    live_add(r->dir, extra);

    for (int attempt = 1; attempt <= PORT_TRIES; attempt++) {
        r->port = free_port();
        snprintf(r->url, sizeof r->url, "redis://127.0.0.1:%d", r->port);
        if (launch(r, extra) == SPAWN_OK)
            return;
    }
    fail_with_log(r, "port already in use on every one of 20 tries");
}

void test_tls_make(const char *dir)
{
    /* EC keys: fast to make.  -days -1 gives a certificate that expired a
     * day before it was issued (OpenSSL 3.0's x509 has no -not_before). */
    char cmd[4096];
    snprintf(cmd, sizeof cmd,
             "set -e; cd '%s'; exec >openssl.log 2>&1\n"
             "key() { openssl genpkey -algorithm EC -pkeyopt ec_paramgen_curve:prime256v1 -out $1; }\n"
             "key ca.key; key wrongca.key; key server.key; key client.key\n"
             "openssl req -x509 -key ca.key -out ca.crt -days 30 -subj /CN=stx-test-ca\n"
             "openssl req -x509 -key wrongca.key -out wrongca.crt -days 30 -subj /CN=stx-wrong-ca\n"
             "openssl req -new -key server.key -out server.csr -subj /CN=localhost\n"
             "openssl req -new -key client.key -out client.csr -subj /CN=stx-client\n"
             "printf 'subjectAltName=DNS:localhost,IP:127.0.0.1\\n' >san.cnf\n"
             "printf 'subjectAltName=DNS:other.example\\n' >other.cnf\n"
             "printf 'extendedKeyUsage=clientAuth\\n' >client.cnf\n"
             "sign() { openssl x509 -req -in $1 -CA ca.crt -CAkey ca.key -CAcreateserial "
             "-out $2 -days $3 -extfile $4; }\n"
             "sign server.csr server.crt 30 san.cnf\n"
             "sign server.csr expired.crt -1 san.cnf\n"
             "sign server.csr other.crt 30 other.cnf\n"
             "sign client.csr client.crt 30 client.cnf\n",
             dir);
    int rc = system(cmd);
    char log[LOG_TAIL_BYTES + 1], path[300];
    snprintf(path, sizeof path, "%s/openssl.log", dir);
    file_tail(path, log, sizeof log);
    cr_assert_eq(rc, 0, "making test certificates in %s failed:\n%s", dir, log);
}

void test_redis_start_tls(test_redis *r, const char *dir, const char *cert,
                          const char *auth_clients, const char *const *extra)
{
    static char args[MAX_EXTRA_ARGS][320];
    const char *argv[MAX_EXTRA_ARGS + 1];
    int n = 0, tls_port = free_port();
    snprintf(args[n++], sizeof args[0], "--tls-port");
    snprintf(args[n++], sizeof args[0], "%d", tls_port);
    snprintf(args[n++], sizeof args[0], "--tls-cert-file");
    snprintf(args[n++], sizeof args[0], "%s/%s.crt", dir, cert);
    snprintf(args[n++], sizeof args[0], "--tls-key-file");
    snprintf(args[n++], sizeof args[0], "%s/server.key", dir);
    snprintf(args[n++], sizeof args[0], "--tls-ca-cert-file");
    snprintf(args[n++], sizeof args[0], "%s/ca.crt", dir);
    snprintf(args[n++], sizeof args[0], "--tls-auth-clients");
    snprintf(args[n++], sizeof args[0], "%s", auth_clients);
    for (int i = 0; i < n; i++)
        argv[i] = args[i];
    for (int i = 0; extra != NULL && extra[i] != NULL; i++) {
        cr_assert(n < MAX_EXTRA_ARGS, "test_redis_start_tls: too many extra arguments");
        argv[n++] = extra[i];
    }
    argv[n] = NULL;
    test_redis_start(r, 0, argv);
    r->tls_port = tls_port;
    snprintf(r->tls_url, sizeof r->tls_url, "rediss://127.0.0.1:%d", tls_port);
}

void test_redis_kill(test_redis *r)
{
    if (r == NULL || r->pid <= 0)
        return;
    kill(r->pid, SIGKILL);
    while (waitpid(r->pid, NULL, 0) < 0 && errno == EINTR) {
    }
    r->pid = 0;
    live_set_pid(r->dir, 0);
}

void test_redis_restart(test_redis *r)
{
    cr_assert(r->dir[0] != '\0', "test_redis_restart: server was never started (or stopped)");
    test_redis_kill(r);
    /* The port is fixed (clients hold the URL); a few tries cover a
     * listener that is still going away. */
    for (int attempt = 1; attempt <= PORT_TRIES; attempt++) {
        if (launch(r, live_extra(r->dir)) == SPAWN_OK)
            return;
        sleep_ms(100);
    }
    fail_with_log(r, "cannot restart: port taken by another process");
}

void test_redis_stop(test_redis *r)
{
    if (r == NULL)
        return;
    test_redis_kill(r);
    if (r->dir[0] != '\0') {
        live_forget(r->dir);
        test_rmrf(r->dir);
        r->dir[0] = '\0';
    }
}

redisContext *test_redis_connect(const test_redis *r)
{
    struct timeval tv = { 5, 0 };
    redisContext *c = redisConnectWithTimeout("127.0.0.1", r->port, tv);
    cr_assert(c != NULL, "redisConnect 127.0.0.1:%d: out of memory", r->port);
    if (c->err) {
        char msg[sizeof c->errstr];
        memcpy(msg, c->errstr, sizeof msg);
        redisFree(c);
        cr_assert_fail("redisConnect 127.0.0.1:%d: %s", r->port, msg);
    }
    return c;
}

static redisReply *vcmd(redisContext *c, const char *fmt, va_list ap)
{
    redisReply *rep = redisvCommand(c, fmt, ap);
    cr_assert(rep != NULL, "redis command \"%s\": connection error: %s", fmt,
              c->errstr[0] ? c->errstr : "(no message)");
    if (rep->type == REDIS_REPLY_ERROR) {
        char msg[256];
        snprintf(msg, sizeof msg, "%s", rep->str);
        freeReplyObject(rep);
        cr_assert_fail("redis command \"%s\": error reply: %s", fmt, msg);
    }
    return rep;
}

redisReply *test_cmd(redisContext *c, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    redisReply *rep = vcmd(c, fmt, ap);
    va_end(ap);
    return rep;
}

long long test_cmd_int(redisContext *c, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    redisReply *rep = vcmd(c, fmt, ap);
    va_end(ap);
    if (rep->type != REDIS_REPLY_INTEGER) {
        int type = rep->type;
        freeReplyObject(rep);
        cr_assert_fail("redis command \"%s\": expected an integer reply, got type %d", fmt,
                       type);
    }
    long long v = rep->integer;
    freeReplyObject(rep);
    return v;
}

stx_client *test_client(const test_redis *r)
{
    stx_config *conf = stx_config_new();
    char err[256];
    cr_assert_eq(stx_config_set(conf, "url", r->url, err, sizeof err), STX_OK, "%s", err);
    stx_client *c;
    int rc = stx_client_new(&c, conf);
    stx_config_free(conf);
    cr_assert_eq(rc, STX_OK, "stx_client_new: %s", c ? stx_client_errmsg(c) : "");
    return c;
}

void test_script_sha(redisContext *c, int which, char out[41])
{
    stx_scripts s;
    stx_scripts_init(&s);
    cr_assert(which >= 0 && which < STX_SCRIPT_COUNT, "test_script_sha: no script %d", which);
    redisReply *r = test_cmd(c, "SCRIPT LOAD %s", s.s[which].source);
    cr_assert(r->type == REDIS_REPLY_STRING && r->len == 40, "SCRIPT LOAD: unexpected reply");
    memcpy(out, r->str, 41);
    freeReplyObject(r);
}

/* ------------------------------------------------------------------ */
/* Redis Cluster                                                        */

redisContext *test_cluster_connect(const test_cluster *c, int i)
{
    return test_redis_connect(&c->node[i]);
}

/* A connection to node i, or NULL when it does not answer. */
static redisContext *try_connect(const test_cluster *c, int i)
{
    if (c->node[i].pid <= 0)
        return NULL;
    struct timeval tv = { 2, 0 };
    redisContext *ctx = redisConnectWithTimeout("127.0.0.1", c->node[i].port, tv);
    if (ctx != NULL && ctx->err) {
        redisFree(ctx);
        ctx = NULL;
    }
    if (ctx != NULL)
        redisSetTimeout(ctx, tv);
    return ctx;
}

static int index_of_port(const test_cluster *c, long long port)
{
    for (int i = 0; i < TEST_CLUSTER_NODES; i++)
        if (c->node[i].port == port)
            return i;
    return -1;
}

/* Owner index of every slot as node i sees it (-1 unknown); 0 or -1 when
 * the node does not answer. */
static int slot_owners(const test_cluster *c, int i, int *owner)
{
    for (int s = 0; s < 16384; s++)
        owner[s] = -1;
    redisContext *ctx = try_connect(c, i);
    if (ctx == NULL)
        return -1;
    redisReply *r = redisCommand(ctx, "CLUSTER SLOTS");
    int ok = r != NULL && r->type == REDIS_REPLY_ARRAY;
    for (size_t k = 0; ok && k < r->elements; k++) {
        redisReply *e = r->element[k];
        if (e->type != REDIS_REPLY_ARRAY || e->elements < 3 ||
            e->element[2]->type != REDIS_REPLY_ARRAY || e->element[2]->elements < 2)
            continue;
        int m = index_of_port(c, e->element[2]->element[1]->integer);
        for (long long s = e->element[0]->integer; s <= e->element[1]->integer && s < 16384; s++)
            owner[s] = m;
    }
    if (r != NULL)
        freeReplyObject(r);
    redisFree(ctx);
    return ok ? 0 : -1;
}

int test_cluster_master_of(const test_cluster *c, int ask, unsigned slot)
{
    static int owner[16384];
    if (slot_owners(c, ask, owner) != 0)
        return -1;
    return owner[slot % 16384];
}

static int info_has(redisContext *ctx, const char *cmd, const char *needle)
{
    redisReply *r = redisCommand(ctx, cmd);
    int has = r != NULL && (r->type == REDIS_REPLY_STRING || r->type == REDIS_REPLY_STATUS) &&
              strstr(r->str, needle) != NULL;
    if (r != NULL)
        freeReplyObject(r);
    return has;
}

/* Whether the live nodes are settled: state ok, all nodes known, one slot
 * map (every slot, or only `slot` when >= 0, on a live master), replicas
 * synced.  why gets the first thing that is not. */
static int cluster_settled(const test_cluster *c, int slot, char *why, size_t cap)
{
    static int first[16384], other[16384];
    int have_first = 0;
    for (int i = 0; i < TEST_CLUSTER_NODES; i++) {
        if (c->node[i].pid <= 0)
            continue;
        redisContext *ctx = try_connect(c, i);
        if (ctx == NULL) {
            snprintf(why, cap, "node %d does not answer", i);
            return 0;
        }
        int ok = info_has(ctx, "CLUSTER INFO", "cluster_state:ok");
        if (ok && slot < 0)
            ok = info_has(ctx, "CLUSTER INFO", "cluster_known_nodes:6");
        if (!ok)
            snprintf(why, cap, "node %d: cluster_state not ok (or not all nodes known)", i);
        if (ok && info_has(ctx, "INFO replication", "role:slave")) {
            ok = info_has(ctx, "INFO replication", "master_link_status:up") &&
                 info_has(ctx, "INFO replication", "master_sync_in_progress:0");
            if (!ok)
                snprintf(why, cap, "replica %d not in sync", i);
        }
        redisFree(ctx);
        if (!ok)
            return 0;
        int *owner = have_first ? other : first;
        if (slot_owners(c, i, owner) != 0) {
            snprintf(why, cap, "node %d: CLUSTER SLOTS failed", i);
            return 0;
        }
        for (int s = slot < 0 ? 0 : slot; s < (slot < 0 ? 16384 : slot + 1); s++) {
            if (owner[s] < 0 || c->node[owner[s]].pid <= 0) {
                snprintf(why, cap, "node %d: slot %d has no live master", i, s);
                return 0;
            }
            if (have_first && owner[s] != first[s]) {
                snprintf(why, cap, "nodes disagree on slot %d", s);
                return 0;
            }
        }
        have_first = 1;
    }
    return 1;
}

static void wait_settled(const test_cluster *c, int slot, long timeout_ms)
{
    char why[200] = "";
    int64_t deadline = test_now_ms() + timeout_ms;
    while (!cluster_settled(c, slot, why, sizeof why)) {
        cr_assert(test_now_ms() < deadline, "cluster not ready after %ld ms: %s", timeout_ms,
                  why);
        sleep_ms(50);
    }
}

void test_cluster_wait_ok(const test_cluster *c, unsigned slot, long timeout_ms)
{
    wait_settled(c, (int)(slot % 16384), timeout_ms);
}

void test_cluster_start(test_cluster *c, int appendonly)
{
    test_cluster_start_with(c, appendonly, NULL);
}

static void cluster_start(test_cluster *c, int appendonly, const char *const *more,
                          const char *tls_dir);

void test_cluster_start_with(test_cluster *c, int appendonly, const char *const *more)
{
    cluster_start(c, appendonly, more, NULL);
}

void test_cluster_start_tls(test_cluster *c, const char *dir)
{
    static const char *const tls[] = {"--tls-cluster", "yes", "--tls-replication", "yes", NULL};
    cluster_start(c, 0, tls, dir);
}

static void cluster_start(test_cluster *c, int appendonly, const char *const *more,
                          const char *tls_dir)
{
    static const char *const base[] = {
        "--cluster-enabled", "yes", "--cluster-config-file", "nodes.conf",
        "--cluster-node-timeout", "1500", "--repl-diskless-sync", "yes",
        "--repl-diskless-sync-delay", "0"};
    const char *extra[MAX_EXTRA_ARGS + 1];
    size_t n = 0;
    for (size_t i = 0; i < sizeof base / sizeof base[0]; i++) extra[n++] = base[i];
    for (size_t i = 0; more && more[i]; i++) {
        cr_assert(n < MAX_EXTRA_ARGS, "test_cluster_start_with: too many arguments");
        extra[n++] = more[i];
    }
    extra[n] = NULL;
    memset(c, 0, sizeof *c);
    char cmd[2048];
    int o = tls_dir ? snprintf(cmd, sizeof cmd, "redis-cli --tls --cacert %s/ca.crt --cluster create",
                               tls_dir)
                    : snprintf(cmd, sizeof cmd, "redis-cli --cluster create");
    int u = snprintf(c->url, sizeof c->url, "redis://");
    int t = snprintf(c->tls_url, sizeof c->tls_url, "rediss://");
    for (int i = 0; i < TEST_CLUSTER_NODES; i++) {
        if (tls_dir)
            test_redis_start_tls(&c->node[i], tls_dir, "server", "no", extra);
        else
            test_redis_start(&c->node[i], appendonly, extra);
        /* With --tls-cluster the bus is at the TLS port + 10000: the cluster
         * is made on the TLS ports. */
        o += snprintf(cmd + o, sizeof cmd - (size_t)o, " 127.0.0.1:%d",
                      tls_dir ? c->node[i].tls_port : c->node[i].port);
        u += snprintf(c->url + u, sizeof c->url - (size_t)u, "%s127.0.0.1:%d", i ? "," : "",
                      c->node[i].port);
        t += snprintf(c->tls_url + t, sizeof c->tls_url - (size_t)t, "%s127.0.0.1:%d",
                      i ? "," : "", c->node[i].tls_port);
        redisContext *ctx = test_cluster_connect(c, i);
        redisReply *r = test_cmd(ctx, "CLUSTER MYID");
        cr_assert(r->type == REDIS_REPLY_STRING && r->len == 40, "CLUSTER MYID: bad reply");
        memcpy(c->id[i], r->str, 41);
        freeReplyObject(r);
        redisFree(ctx);
    }
    snprintf(cmd + o, sizeof cmd - (size_t)o,
             " --cluster-replicas 1 --cluster-yes >%s/create.log 2>&1", c->node[0].dir);
    int rc = system(cmd);
    if (rc != 0) {
        char path[300], log[LOG_TAIL_BYTES + 1];
        snprintf(path, sizeof path, "%s/create.log", c->node[0].dir);
        file_tail(path, log, sizeof log);
        cr_assert_fail("redis-cli --cluster create failed (%d):\n%s", rc, log);
    }
    wait_settled(c, -1, 30000);
}

void test_cluster_stop(test_cluster *c)
{
    if (c == NULL)
        return;
    for (int i = 0; i < TEST_CLUSTER_NODES; i++)
        test_redis_stop(&c->node[i]);
}

int test_cluster_owner(const test_cluster *c, unsigned slot)
{
    for (int i = 0; i < TEST_CLUSTER_NODES; i++)
        if (c->node[i].pid > 0) {
            int m = test_cluster_master_of(c, i, slot);
            cr_assert(m >= 0 && c->node[m].pid > 0, "slot %u has no live master (node %d says %d)",
                      slot, i, m);
            return m;
        }
    cr_assert_fail("no live node");
    return -1;
}

int test_cluster_other_master(const test_cluster *c, int i)
{
    for (int s = 0; s < 16384; s += 1000) {
        int m = test_cluster_owner(c, (unsigned)s);
        if (m != i)
            return m;
    }
    cr_assert_fail("no master other than node %d", i);
    return -1;
}

int test_cluster_kill_master(test_cluster *c, unsigned slot)
{
    int m = test_cluster_owner(c, slot);
    test_redis_kill(&c->node[m]);
    wait_settled(c, (int)(slot % 16384), 30000);
    return test_cluster_owner(c, slot);
}

void test_cluster_migrate_begin(const test_cluster *c, unsigned slot, int from, int to)
{
    redisContext *src = test_cluster_connect(c, from), *dst = test_cluster_connect(c, to);
    freeReplyObject(test_cmd(dst, "CLUSTER SETSLOT %u IMPORTING %s", slot, c->id[from]));
    freeReplyObject(test_cmd(src, "CLUSTER SETSLOT %u MIGRATING %s", slot, c->id[to]));
    redisFree(src);
    redisFree(dst);
}

long test_cluster_migrate_keys(const test_cluster *c, unsigned slot, int from, int to, long n)
{
    redisContext *src = test_cluster_connect(c, from);
    redisReply *keys = test_cmd(src, "CLUSTER GETKEYSINSLOT %u %ld", slot, n);
    long moved = (long)keys->elements;
    if (moved > 0) {
        size_t argc = 7 + keys->elements;
        const char **full = calloc(argc, sizeof *full);
        size_t *flens = calloc(argc, sizeof *flens);
        cr_assert(full && flens, "out of memory");
        char port[16];
        snprintf(port, sizeof port, "%d", c->node[to].port);
        const char *head[] = {"MIGRATE", "127.0.0.1", port, "", "0", "5000", "KEYS"};
        for (int i = 0; i < 7; i++) {
            full[i] = head[i];
            flens[i] = strlen(head[i]);
        }
        for (size_t k = 0; k < keys->elements; k++) {
            full[7 + k] = keys->element[k]->str;
            flens[7 + k] = keys->element[k]->len;
        }
        redisReply *r = redisCommandArgv(src, (int)argc, full, flens);
        cr_assert(r != NULL && r->type != REDIS_REPLY_ERROR, "MIGRATE: %s",
                  r ? r->str : src->errstr);
        freeReplyObject(r);
        free(full);
        free(flens);
    }
    freeReplyObject(keys);
    redisFree(src);
    return moved;
}

void test_cluster_migrate_finish(const test_cluster *c, unsigned slot, int from, int to)
{
    /* The target first, then the source, then the other masters. */
    int order[TEST_CLUSTER_NODES], n = 0;
    order[n++] = to;
    order[n++] = from;
    for (int i = 0; i < TEST_CLUSTER_NODES; i++)
        if (i != to && i != from)
            order[n++] = i;
    for (int k = 0; k < n; k++) {
        redisContext *ctx = try_connect(c, order[k]);
        if (ctx == NULL)
            continue;
        if (k < 2 || !info_has(ctx, "INFO replication", "role:slave")) {
            redisReply *r = redisCommand(ctx, "CLUSTER SETSLOT %u NODE %s", slot, c->id[to]);
            cr_assert(r != NULL && r->type != REDIS_REPLY_ERROR, "SETSLOT NODE on %d: %s",
                      order[k], r ? r->str : ctx->errstr);
            freeReplyObject(r);
        }
        redisFree(ctx);
    }
}

void test_cluster_migrate_slot(const test_cluster *c, unsigned slot, int to)
{
    int from = test_cluster_owner(c, slot);
    if (from == to)
        return;
    test_cluster_migrate_begin(c, slot, from, to);
    while (test_cluster_migrate_keys(c, slot, from, to, 100) > 0) {
    }
    test_cluster_migrate_finish(c, slot, from, to);
    wait_settled(c, (int)slot, 10000);
}
