/* The stx command-line tool, run as a real program against a real
 * redis-server: outputs on known data, JSON validity, exit codes and
 * one-line error messages. */
#define _XOPEN_SOURCE 700 /* posix_openpt(), for a terminal on stdin */
#include <criterion/criterion.h>
#include <errno.h>
#include <fcntl.h>
#include <signal.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "harness.h"
#include "streamtx.h"

#ifndef STX_CLI_PATH
#define STX_CLI_PATH STX_EXAMPLES_DIR "/stx"
#endif

#define RUN_DEADLINE_MS 60000
#define MAX_ARGS 64

static test_redis R;

static void setup(void) { test_redis_start(&R, 0, NULL); }
static void teardown(void) { test_redis_stop(&R); }

TestSuite(cli, .init = setup, .fini = teardown, .timeout = 120);

/* ------------------------------------------------------------------ */
/* running the tool                                                     */

typedef struct run {
    int code;           /* exit code; 128 + signal when killed */
    char *out, *err;    /* everything written to stdout and stderr */
} run;

static void run_free(run *r)
{
    free(r->out);
    free(r->err);
    memset(r, 0, sizeof *r);
}

static char *slurp(int fd)
{
    size_t cap = 4096, len = 0;
    char *buf = malloc(cap);
    cr_assert(buf);
    lseek(fd, 0, SEEK_SET);
    for (;;) {
        if (len + 1 == cap) {
            cap *= 2;
            buf = realloc(buf, cap);
            cr_assert(buf);
        }
        ssize_t n = read(fd, buf + len, cap - len - 1);
        if (n < 0 && errno == EINTR)
            continue;
        cr_assert(n >= 0, "read: %s", strerror(errno));
        if (n == 0)
            break;
        len += (size_t)n;
    }
    buf[len] = '\0';
    return buf;
}

static int temp_fd(void)
{
    char path[] = "/tmp/stx-cli-XXXXXX";
    int fd = mkstemp(path);
    cr_assert(fd >= 0, "mkstemp: %s", strerror(errno));
    unlink(path);
    return fd;
}

/* Run stx --url R.url ARGS... with stdin from input (NULL: /dev/null);
 * with tty, stdin is a terminal (a pseudo-terminal) that receives input. */
static void run_argv_tty(run *r, const char *input, int tty, const char *const *args)
{
    const char *argv[MAX_ARGS + 4];
    size_t n = 0;
    argv[n++] = STX_CLI_PATH;
    argv[n++] = "--url";
    argv[n++] = R.url;
    for (size_t i = 0; args[i]; i++) {
        cr_assert(n < MAX_ARGS, "too many arguments");
        argv[n++] = args[i];
    }
    argv[n] = NULL;

    int in = temp_fd(), out = temp_fd(), err = temp_fd(), master = -1;
    const char *slave = NULL;
    if (tty) {
        master = posix_openpt(O_RDWR | O_NOCTTY);
        cr_assert(master >= 0 && grantpt(master) == 0 && unlockpt(master) == 0 &&
                      (slave = ptsname(master)),
                  "pseudo-terminal: %s", strerror(errno));
        close(in);
        in = open(slave, O_RDWR | O_NOCTTY);
        cr_assert(in >= 0, "%s: %s", slave, strerror(errno));
        if (input)
            cr_assert_eq(write(master, input, strlen(input)), (ssize_t)strlen(input));
    } else {
        if (input)
            cr_assert_eq(write(in, input, strlen(input)), (ssize_t)strlen(input));
        lseek(in, 0, SEEK_SET);
    }
    fflush(NULL);
    pid_t pid = fork();
    cr_assert(pid >= 0, "fork: %s", strerror(errno));
    if (pid == 0) {
        dup2(in, 0);
        dup2(out, 1);
        dup2(err, 2);
        execv(argv[0], (char *const *)argv);
        _exit(127);
    }
    int status = 0;
    int64_t deadline = test_now_ms() + RUN_DEADLINE_MS;
    for (;;) {
        pid_t w = waitpid(pid, &status, WNOHANG);
        if (w == pid)
            break;
        cr_assert(w == 0 || errno == EINTR, "waitpid: %s", strerror(errno));
        if (test_now_ms() > deadline) {
            kill(pid, SIGKILL);
            waitpid(pid, &status, 0);
            cr_assert_fail("stx %s did not finish in time", args[0] ? args[0] : "");
        }
        struct timespec ts = {0, 5000000};
        nanosleep(&ts, NULL);
    }
    r->code = WIFEXITED(status) ? WEXITSTATUS(status) : 128 + WTERMSIG(status);
    r->out = slurp(out);
    r->err = slurp(err);
    if (master >= 0)
        close(master);
    close(in);
    close(out);
    close(err);
    cr_assert(r->code != 127, "cannot run %s", STX_CLI_PATH);
    /* A sanitizer report in the tool fails the test that ran it. */
    cr_assert(!strstr(r->err, "Sanitizer") && !strstr(r->err, "runtime error"),
              "sanitizer report from stx %s:\n%s", args[0] ? args[0] : "", r->err);
}

static void run_argv(run *r, const char *input, const char *const *args)
{
    run_argv_tty(r, input, 0, args);
}

/* Run with the arguments given as a NULL-terminated list. */
static void stx(run *r, const char *first, ...)
{
    const char *args[MAX_ARGS + 1];
    size_t n = 0;
    va_list ap;
    va_start(ap, first);
    for (const char *a = first; a; a = va_arg(ap, const char *)) {
        cr_assert(n < MAX_ARGS);
        args[n++] = a;
    }
    va_end(ap);
    args[n] = NULL;
    run_argv(r, NULL, args);
}

static int starts_with(const char *s, const char *prefix)
{
    return strncmp(s, prefix, strlen(prefix)) == 0;
}

static void expect_ok(const run *r)
{
    cr_assert_eq(r->code, 0, "exit code %d, stderr: %s", r->code, r->err);
    cr_assert_str_empty(r->err, "unexpected stderr: %s", r->err);
}

static void expect_out(const run *r, const char *expected)
{
    expect_ok(r);
    cr_assert_str_eq(r->out, expected, "stdout:\n%s\nexpected:\n%s", r->out, expected);
}

/* Exit code `code`, nothing on stdout, and exactly one line on stderr:
 * "stx: SUB: ..." holding `needle`. */
static void expect_fail(const run *r, int code, const char *sub, const char *needle)
{
    cr_assert_eq(r->code, code, "exit code %d, expected %d; stderr: %s", r->code, code, r->err);
    cr_assert_str_empty(r->out, "unexpected stdout: %s", r->out);
    size_t n = strlen(r->err);
    cr_assert(n > 0 && r->err[n - 1] == '\n' && strchr(r->err, '\n') == r->err + n - 1,
              "stderr is not exactly one line: [%s]", r->err);
    char prefix[64];
    snprintf(prefix, sizeof prefix, "stx: %s%s", sub ? sub : "", sub ? ": " : "");
    cr_assert(strncmp(r->err, prefix, strlen(prefix)) == 0, "stderr [%s] does not start with [%s]",
              r->err, prefix);
    cr_assert(strstr(r->err, needle), "stderr [%s] does not mention [%s]", r->err, needle);
}

/* With --json: exit `code`, nothing on stdout, and one line on stderr:
 * {"error":"...needle...","command":SUB,"code":NAME,"exit":code}. */
static void expect_fail_json(const run *r, int code, const char *sub, const char *name,
                             const char *needle)
{
    cr_assert_eq(r->code, code, "exit code %d, expected %d; stderr: %s", r->code, code, r->err);
    cr_assert_str_empty(r->out, "unexpected stdout: %s", r->out);
    size_t n = strlen(r->err);
    cr_assert(n > 0 && r->err[n - 1] == '\n' && strchr(r->err, '\n') == r->err + n - 1,
              "stderr is not exactly one line: [%s]", r->err);
    char tail[256];
    snprintf(tail, sizeof tail, "\",\"command\":\"%s\",\"code\":\"%s\",\"exit\":%d}\n", sub, name,
             code);
    cr_assert(strncmp(r->err, "{\"error\":\"", 10) == 0 && n > strlen(tail) &&
                  strcmp(r->err + n - strlen(tail), tail) == 0,
              "stderr [%s] does not end with [%s]", r->err, tail);
    cr_assert(strstr(r->err, needle), "stderr [%s] does not mention [%s]", r->err, needle);
}

/* ------------------------------------------------------------------ */
/* a small JSON validator (RFC 8259)                                    */

typedef struct jp {
    const char *s;
    size_t i, n;
    int depth;
} jp;

static void jp_ws(jp *p)
{
    while (p->i < p->n && strchr(" \t\r\n", p->s[p->i]))
        p->i++;
}

static int jp_lit(jp *p, const char *lit)
{
    size_t k = strlen(lit);
    if (p->n - p->i < k || strncmp(p->s + p->i, lit, k) != 0)
        return -1;
    p->i += k;
    return 0;
}

static int jp_digits(jp *p)
{
    size_t start = p->i;
    while (p->i < p->n && p->s[p->i] >= '0' && p->s[p->i] <= '9')
        p->i++;
    return p->i > start ? 0 : -1;
}

static int jp_number(jp *p)
{
    if (p->s[p->i] == '-')
        p->i++;
    if (p->i < p->n && p->s[p->i] == '0')
        p->i++;
    else if (jp_digits(p))
        return -1;
    if (p->i < p->n && p->s[p->i] == '.') {
        p->i++;
        if (jp_digits(p))
            return -1;
    }
    if (p->i < p->n && (p->s[p->i] == 'e' || p->s[p->i] == 'E')) {
        p->i++;
        if (p->i < p->n && (p->s[p->i] == '+' || p->s[p->i] == '-'))
            p->i++;
        if (jp_digits(p))
            return -1;
    }
    return 0;
}

static int jp_string(jp *p)
{
    if (p->s[p->i] != '"')
        return -1;
    p->i++;
    while (p->i < p->n) {
        unsigned char c = (unsigned char)p->s[p->i];
        if (c == '"') {
            p->i++;
            return 0;
        }
        if (c < 0x20)
            return -1;
        if (c == '\\') {
            p->i++;
            if (p->i >= p->n)
                return -1;
            char e = p->s[p->i];
            if (e == 'u') {
                for (int k = 1; k <= 4; k++)
                    if (p->i + (size_t)k >= p->n || !strchr("0123456789abcdefABCDEF", p->s[p->i + k]))
                        return -1;
                p->i += 5;
                continue;
            }
            if (!strchr("\"\\/bfnrt", e))
                return -1;
            p->i++;
            continue;
        }
        if (c >= 0x80) { /* one valid UTF-8 sequence */
            int len = c >= 0xf0 ? 4 : c >= 0xe0 ? 3 : c >= 0xc2 ? 2 : 0;
            if (!len || c > 0xf4 || p->n - p->i < (size_t)len)
                return -1;
            for (int k = 1; k < len; k++)
                if (((unsigned char)p->s[p->i + k] & 0xc0) != 0x80)
                    return -1;
            p->i += (size_t)len;
            continue;
        }
        p->i++;
    }
    return -1;
}

static int jp_value(jp *p);

static int jp_container(jp *p, char close, int object)
{
    p->i++;
    if (++p->depth > 256)
        return -1;
    jp_ws(p);
    if (p->i < p->n && p->s[p->i] == close) {
        p->i++;
        p->depth--;
        return 0;
    }
    for (;;) {
        jp_ws(p);
        if (object) {
            if (p->i >= p->n || jp_string(p))
                return -1;
            jp_ws(p);
            if (p->i >= p->n || p->s[p->i] != ':')
                return -1;
            p->i++;
            jp_ws(p);
        }
        if (jp_value(p))
            return -1;
        jp_ws(p);
        if (p->i >= p->n)
            return -1;
        if (p->s[p->i] == ',') {
            p->i++;
            continue;
        }
        if (p->s[p->i] != close)
            return -1;
        p->i++;
        p->depth--;
        return 0;
    }
}

static int jp_value(jp *p)
{
    if (p->i >= p->n)
        return -1;
    switch (p->s[p->i]) {
    case '{': return jp_container(p, '}', 1);
    case '[': return jp_container(p, ']', 0);
    case '"': return jp_string(p);
    case 't': return jp_lit(p, "true");
    case 'f': return jp_lit(p, "false");
    case 'n': return jp_lit(p, "null");
    default: return jp_number(p);
    }
}

/* Is s[0..n) exactly one JSON document (surrounding white space allowed)
 * whose top level is an object or an array? */
static int json_valid_n(const char *s, size_t n)
{
    jp p = {s, 0, n, 0};
    jp_ws(&p);
    if (p.i >= n || (s[p.i] != '{' && s[p.i] != '['))
        return 0;
    if (jp_value(&p))
        return 0;
    jp_ws(&p);
    return p.i == n;
}

static int json_valid(const char *s)
{
    return json_valid_n(s, strlen(s));
}

static void expect_json(const run *r)
{
    expect_ok(r);
    cr_assert(json_valid(r->out), "not one valid JSON document: %s", r->out);
}

/* ------------------------------------------------------------------ */
/* data                                                                 */

/* Handler of the "stock" group: counts entries per field "k" and keeps a
 * structured value under "last". */
static int count_handler(const stx_msg *msg, stx_txn *txn, void *ud)
{
    (void)ud;
    size_t klen;
    const char *k = stx_msg_get(msg, "k", &klen);
    if (!k)
        return stx_txn_fail(txn, "no k");
    int rc = stx_txn_incr(txn, k, klen, 1, NULL);
    if (rc != STX_OK)
        return rc;
    /* {"id": "<entry id>", "ok": true, "n": [1, -2, 1.5]} */
    unsigned char buf[128];
    size_t n = 0;
    const char *id = stx_msg_id(msg);
    size_t idlen = strlen(id);
    buf[n++] = 0x83;
    buf[n++] = 0xa2;
    memcpy(buf + n, "id", 2);
    n += 2;
    buf[n++] = (unsigned char)(0xa0 | idlen);
    memcpy(buf + n, id, idlen);
    n += idlen;
    buf[n++] = 0xa2;
    memcpy(buf + n, "ok", 2);
    n += 2;
    buf[n++] = 0xc3;
    buf[n++] = 0xa1;
    buf[n++] = 'n';
    buf[n++] = 0x93;
    buf[n++] = 0x01;
    buf[n++] = 0xfe;
    static const unsigned char f15[] = {0xcb, 0x3f, 0xf8, 0, 0, 0, 0, 0, 0};
    memcpy(buf + n, f15, sizeof f15);
    n += sizeof f15;
    return stx_txn_put(txn, "last", 4, buf, n);
}

/* Fails (for good: the entry is dead-lettered) on entries with k = "b". */
static int fail_b_handler(const stx_msg *msg, stx_txn *txn, void *ud)
{
    size_t klen;
    const char *k = stx_msg_get(msg, "k", &klen);
    if (k && strcmp(k, "b") == 0)
        return stx_txn_fail(txn, "refusing %s", stx_msg_id(msg));
    return count_handler(msg, txn, ud);
}

static void process_with(const char *stream, const char *group, stx_handler_fn handler)
{
    stx_config *c = stx_config_new();
    char err[256];
    cr_assert_eq(stx_config_set(c, "url", R.url, err, sizeof err), STX_OK, "%s", err);
    cr_assert_eq(stx_config_set(c, "stream", stream, err, sizeof err), STX_OK);
    cr_assert_eq(stx_config_set(c, "group", group, err, sizeof err), STX_OK);
    cr_assert_eq(stx_config_set(c, "consumer", "c1", err, sizeof err), STX_OK);
    cr_assert_eq(stx_config_set(c, "block_ms", "50", err, sizeof err), STX_OK);
    cr_assert_eq(stx_config_set(c, "log_level", "error", err, sizeof err), STX_OK);
    stx_config_set_handler(c, handler, NULL);
    stx_processor *p;
    cr_assert_eq(stx_processor_new(&p, c), STX_OK);
    stx_config_free(c);
    for (int polls = 0;; polls++) {
        cr_assert(polls < 100, "the processor does not finish");
        int n = stx_processor_poll(p);
        if (n == STX_EHANDLER) /* dead-lettered; the rest follows */
            continue;
        cr_assert(n >= 0, "poll: %s: %s", stx_strerror(n), stx_processor_errmsg(p));
        if (n == 0)
            break;
    }
    stx_processor_free(p);
}

static void process_all(const char *stream, const char *group)
{
    process_with(stream, group, count_handler);
}

/* Stream "orders": entries 1-0 .. 5-0 with k = a b a c a; group "stock"
 * processed all of them with streamtx; plain group "audit" has had 1-0 and
 * 2-0 delivered to consumer c1 and not acknowledged. */
static void orders(redisContext *c)
{
    static const char *const ks[] = {"a", "b", "a", "c", "a"};
    for (int i = 0; i < 5; i++)
        freeReplyObject(test_cmd(c, "XADD orders %d-0 k %s sku apple", i + 1, ks[i]));
    process_all("orders", "stock");
    freeReplyObject(test_cmd(c, "XGROUP CREATE orders audit 0"));
    freeReplyObject(test_cmd(c, "XREADGROUP GROUP audit c1 COUNT 2 STREAMS orders >"));
}

/* Set a raw state value of (stream, group). */
static void put_raw_state(redisContext *c, const char *stream, const char *group, const char *key,
                          const void *value, size_t len)
{
    char name[256];
    cr_assert(stx_key_name(name, sizeof name, stream, group, "state") > 0);
    freeReplyObject(test_cmd(c, "HSET %s %s %b", name, key, value, len));
}

/* ------------------------------------------------------------------ */
/* help, usage errors                                                   */

Test(cli, help_and_usage_errors)
{
    run r;
    stx(&r, "--help", NULL);
    expect_ok(&r);
    cr_assert(strstr(r.out, "Exit codes:") && strstr(r.out, "6  window expired"), "%s", r.out);
    run_free(&r);

    static const char *const subs[] = {"info", "produce", "tail", "replay", "pending", "dlq",
                                       "state", "reset", "trim", "health", "streams",
                                       "group", "version", "help"};
    for (size_t i = 0; i < sizeof subs / sizeof subs[0]; i++) {
        stx(&r, subs[i], "--help", NULL);
        expect_ok(&r);
        cr_assert(starts_with(r.out, "usage: stx "), "%s --help: %s", subs[i], r.out);
        run_free(&r);
    }

    stx(&r, "frobnicate", NULL);
    expect_fail(&r, 2, "frobnicate", "unknown command");
    run_free(&r);
    run_argv(&r, NULL, (const char *const[]){NULL});
    expect_fail(&r, 2, NULL, "missing COMMAND");
    run_free(&r);
    stx(&r, "info", NULL);
    expect_fail(&r, 2, "info", "missing argument STREAM (see stx info --help)");
    run_free(&r);
    stx(&r, "state", "get", "orders", "stock", NULL);
    expect_fail(&r, 2, "state get", "missing argument KEY");
    run_free(&r);
    stx(&r, "state", NULL);
    expect_fail(&r, 2, "state", "missing subcommand");
    run_free(&r);
    stx(&r, "dlq", "purge", "s", "g", NULL);
    expect_fail(&r, 2, "dlq", "unknown subcommand");
    run_free(&r);
    stx(&r, "pending", "orders", NULL);
    expect_fail(&r, 2, "pending", "missing argument GROUP");
    run_free(&r);
    stx(&r, "info", "a", "b", NULL);
    expect_fail(&r, 2, "info", "unexpected argument 'b'");
    run_free(&r);
    stx(&r, "info", "orders", "--bogus", NULL);
    expect_fail(&r, 2, "info", "unknown option '--bogus'");
    run_free(&r);
    stx(&r, "tail", "orders", "--count", NULL);
    expect_fail(&r, 2, "tail", "--count needs a value");
    run_free(&r);
    stx(&r, "tail", "orders", "--count", "-3", NULL);
    expect_fail(&r, 2, "tail", "bad value '-3'");
    run_free(&r);
    stx(&r, "produce", "orders", NULL);
    expect_fail(&r, 2, "produce", "missing argument FIELD=VALUE");
    run_free(&r);
    stx(&r, "produce", "orders", "novalue", NULL);
    expect_fail(&r, 2, "produce", "expected FIELD=VALUE");
    run_free(&r);
    stx(&r, "trim", "orders", "--safe", "--max-age", "7x", NULL);
    expect_fail(&r, 2, "trim", "bad duration '7x'");
    run_free(&r);
}

/* Every command documents the connection options; stx --help lists every
 * command; options are spelled in full. */
Test(cli, connection_options_and_spelling)
{
    run r;
    static const char *const subs[] = {"info", "produce", "tail", "replay", "pending", "dlq",
                                       "state", "reset", "trim", "health", "streams",
                                       "group", "version", "help"};
    static const char *const opts[] = {"--url URL", "--tls ", "--tls-ca-file FILE",
                                       "$STX_TLS_CA_FILE", "--tls-ca-dir DIR", "$STX_TLS_CA_DIR",
                                       "--tls-cert-file FILE", "$STX_TLS_CERT_FILE",
                                       "--tls-key-file FILE", "$STX_TLS_KEY_FILE",
                                       "--tls-server-name NAME", "$STX_TLS_SERVER_NAME",
                                       "--tls-insecure", "$STX_TLS_INSECURE=1", "$STX_URL"};
    stx(&r, "--help", NULL);
    expect_ok(&r);
    for (size_t i = 0; i < sizeof subs / sizeof subs[0]; i++) {
        char line[64];
        snprintf(line, sizeof line, "\n  %s ", subs[i]);
        cr_assert(strstr(r.out, line), "stx --help does not list %s", subs[i]);
    }
    for (size_t k = 0; k < sizeof opts / sizeof opts[0]; k++)
        cr_assert(strstr(r.out, opts[k]), "stx --help lacks %s", opts[k]);
    run_free(&r);
    for (size_t i = 0; i < sizeof subs / sizeof subs[0]; i++) {
        stx(&r, subs[i], "--help", NULL);
        expect_ok(&r);
        for (size_t k = 0; k < sizeof opts / sizeof opts[0]; k++)
            cr_assert(strstr(r.out, opts[k]), "stx %s --help lacks %s", subs[i], opts[k]);
        run_free(&r);
    }

    /* getopt_long would take a unique prefix; stx does not. */
    stx(&r, "info", "orders", "--js", NULL);
    expect_fail(&r, 2, "info", "unknown option '--js'");
    run_free(&r);
    stx(&r, "pending", "orders", "audit", "--lim=3", NULL);
    expect_fail(&r, 2, "pending", "unknown option '--lim'");
    run_free(&r);
    stx(&r, "info", "orders", "--json=yes", NULL);
    expect_fail(&r, 2, "info", "option --json takes no value");
    run_free(&r);
    stx(&r, "info", "-x", "orders", NULL);
    expect_fail(&r, 2, "info", "unknown option '-x'");
    run_free(&r);
    stx(&r, "--bogus", "info", "orders", NULL);
    expect_fail(&r, 2, NULL, "unknown option '--bogus'");
    run_free(&r);
    stx(&r, "info", "orders", "--url", NULL);
    expect_fail(&r, 2, "info", "option --url needs a value");
    run_free(&r);

    /* A flag's variable is 1 or an error, never a silent no. */
    cr_assert_eq(setenv("STX_TLS_INSECURE", "yes", 1), 0);
    stx(&r, "info", "orders", NULL);
    expect_fail(&r, 2, "info", "bad value 'yes' for STX_TLS_INSECURE: expected 1");
    run_free(&r);
    cr_assert_eq(unsetenv("STX_TLS_INSECURE"), 0);
}

Test(cli, bad_url_and_unreachable_server)
{
    run r;
    const char *bad[] = {"--url", "http://x", "info", "orders", NULL};
    /* The later --url wins over the one run_argv() puts first. */
    run_argv(&r, NULL, bad);
    expect_fail(&r, 2, "info", "bad --url");
    run_free(&r);
    const char *down[] = {"--url", "redis://127.0.0.1:1", "info", "orders", NULL};
    run_argv(&r, NULL, down);
    expect_fail(&r, 1, "info", "cannot connect");
    run_free(&r);
    const char *down_health[] = {"--url", "redis://127.0.0.1:1", "health", NULL};
    run_argv(&r, NULL, down_health);
    expect_fail(&r, 1, "health", "cannot connect");
    run_free(&r);
}

/* ------------------------------------------------------------------ */
/* info                                                                 */

Test(cli, info_table_and_json)
{
    redisContext *c = test_redis_connect(&R);
    orders(c);
    run r;
    stx(&r, "info", "orders", NULL);
    expect_out(&r,
               "stream          orders\n"
               "length          5\n"
               "first-id        1-0\n"
               "last-id         5-0\n"
               "max-deleted-id  0-0\n"
               "entries-added   5\n"
               "groups          2\n"
               "\n"
               "GROUP  OFFSET  LAST-DELIVERED  LAG  PENDING  EPOCH  STATE-KEYS  DLQ\n"
               "audit  -       2-0             3    2        0      0           0\n"
               "stock  5-0     5-0             0    0        1      4           0\n");
    run_free(&r);

    stx(&r, "--json", "info", "orders", NULL);
    expect_json(&r);
    cr_assert_str_eq(r.out,
                     "{\"stream\":\"orders\",\"length\":5,\"first_id\":\"1-0\",\"last_id\":\"5-0\","
                     "\"max_deleted_id\":\"0-0\",\"entries_added\":5,\"groups\":["
                     "{\"name\":\"audit\",\"streamtx\":false,\"offset\":null,\"last_delivered\":\"2-0\","
                     "\"lag\":3,\"pending\":2,\"epoch\":0,\"state_keys\":0,\"dlq_length\":0,"
                     "\"processors\":[]},"
                     "{\"name\":\"stock\",\"streamtx\":true,\"offset\":\"5-0\",\"last_delivered\":\"5-0\","
                     "\"lag\":0,\"pending\":0,\"epoch\":1,\"state_keys\":4,\"dlq_length\":0,"
                     "\"processors\":[]}]}\n");
    run_free(&r);
    redisFree(c);
}

Test(cli, info_errors)
{
    redisContext *c = test_redis_connect(&R);
    freeReplyObject(test_cmd(c, "SET plain-string x"));
    run r;
    stx(&r, "info", "nosuch", NULL);
    expect_fail(&r, 3, "info", "stream 'nosuch' does not exist");
    run_free(&r);
    stx(&r, "info", "plain-string", "--json", NULL);
    expect_fail_json(&r, 4, "info", "wrong_type", "key 'plain-string' is not a stream");
    run_free(&r);

    /* A key of a group of the wrong type: that key is named, not the
     * stream. */
    freeReplyObject(test_cmd(c, "XADD wt 1-0 a 1"));
    freeReplyObject(test_cmd(c, "XGROUP CREATE wt g 0"));
    freeReplyObject(test_cmd(c, "XGROUP CREATE wt h 0"));
    static const char *const kinds[] = {"meta", "state", "dlq"};
    static const char *const names[] = {"meta hash", "state hash", "dead-letter stream"};
    for (int k = 0; k < 3; k++) {
        char key[256], needle[512];
        stx_key_name(key, sizeof key, "wt", "h", kinds[k]);
        freeReplyObject(test_cmd(c, "SET %s x", key));
        stx(&r, "info", "wt", NULL);
        snprintf(needle, sizeof needle, "stx: info: key '%s' (the %s of group 'h'): WRONGTYPE", key,
                 names[k]);
        expect_fail(&r, 4, "info", needle);
        cr_assert(!strstr(r.err, "not a stream"), "%s", r.err);
        run_free(&r);
        freeReplyObject(test_cmd(c, "DEL %s", key));
    }
    redisFree(c);
}

/* ------------------------------------------------------------------ */
/* produce                                                              */

Test(cli, produce_ids_duplicates_and_conflicts)
{
    redisContext *c = test_redis_connect(&R);
    run r;
    stx(&r, "produce", "ev", "type=order.created", "note=a b=c", "empty=", NULL);
    expect_ok(&r);
    char id[64];
    cr_assert_eq(sscanf(r.out, "%63[0-9-]\n", id), 1, "%s", r.out);
    char line[160];
    snprintf(line, sizeof line, "%s\n", id);
    cr_assert_str_eq(r.out, line);
    run_free(&r);
    redisReply *x = test_cmd(c, "XRANGE ev - +");
    cr_assert_eq(x->elements, 1);
    cr_assert_str_eq(x->element[0]->element[0]->str, id);
    redisReply *f = x->element[0]->element[1];
    cr_assert_eq(f->elements, 6);
    cr_assert_str_eq(f->element[2]->str, "note");
    cr_assert_str_eq(f->element[3]->str, "a b=c");
    cr_assert_str_eq(f->element[5]->str, "");
    freeReplyObject(x);

    stx(&r, "produce", "ev", "a=1", "--idempotency-key", "k1", NULL);
    expect_ok(&r);
    char first[64];
    cr_assert_eq(sscanf(r.out, "%63[0-9-]", first), 1);
    run_free(&r);
    stx(&r, "produce", "ev", "a=1", "--idempotency-key", "k1", NULL);
    snprintf(line, sizeof line, "%s duplicate\n", first);
    expect_out(&r, line);
    run_free(&r);
    stx(&r, "produce", "ev", "a=1", "--idempotency-key=k1", "--json", NULL);
    expect_json(&r);
    snprintf(line, sizeof line, "{\"id\":\"%s\",\"duplicate\":true}\n", first);
    cr_assert_str_eq(r.out, line);
    run_free(&r);
    cr_assert_eq(test_cmd_int(c, "XLEN ev"), 2);

    stx(&r, "produce", "ev", "a=2", "--idempotency-key", "k1", NULL);
    expect_fail(&r, 5, "produce", "idempotency key 'k1'");
    run_free(&r);
    cr_assert_eq(test_cmd_int(c, "XLEN ev"), 2);

    stx(&r, "--json", "produce", "ev", "a=3", "--maxlen", "1", NULL);
    expect_json(&r);
    cr_assert(strstr(r.out, "\"duplicate\":false"), "%s", r.out);
    run_free(&r);

    freeReplyObject(test_cmd(c, "SET notastream x"));
    stx(&r, "produce", "notastream", "a=1", NULL);
    expect_fail(&r, 4, "produce", "not a stream");
    run_free(&r);
    redisFree(c);
}

/* ------------------------------------------------------------------ */
/* replay and tail                                                      */

/* 2026-11-22T10:00:00Z in milliseconds. */
#define T0 1795341600000LL

static void timed_stream(redisContext *c)
{
    for (int i = 0; i < 4; i++)
        freeReplyObject(test_cmd(c, "XADD timed %lld-%d n %d", T0 + 1000LL * (i / 2), i % 2, i));
    /* 1795341600000-0 n 0, 1795341600000-1 n 1, 1795341601000-0 n 2,
     * 1795341601000-1 n 3 */
}

Test(cli, replay_by_id_and_time)
{
    redisContext *c = test_redis_connect(&R);
    orders(c);
    timed_stream(c);
    run r;
    stx(&r, "replay", "orders", "--from", "2-0", "--to", "4-0", NULL);
    expect_out(&r, "2-0 k=b sku=apple\n3-0 k=a sku=apple\n4-0 k=c sku=apple\n");
    run_free(&r);
    stx(&r, "replay", "orders", "--from", "4", NULL);
    expect_out(&r, "4-0 k=c sku=apple\n5-0 k=a sku=apple\n");
    run_free(&r);
    stx(&r, "replay", "orders", "--limit", "2", NULL);
    expect_out(&r, "1-0 k=a sku=apple\n2-0 k=b sku=apple\n");
    run_free(&r);
    stx(&r, "replay", "orders", "--from", "3-0", "--to", "3-0", "--json", NULL);
    expect_json(&r);
    cr_assert_str_eq(r.out, "{\"from\":\"3-0\",\"after\":\"2-18446744073709551615\",\"to\":\"3-0\","
                            "\"to_id\":\"3-0\",\"entries\":[{\"id\":\"3-0\",\"fields\":"
                            "{\"k\":\"a\",\"sku\":\"apple\"}}]}\n");
    run_free(&r);
    stx(&r, "replay", "orders", "--from", "9-0", "--json", NULL);
    expect_json(&r);
    cr_assert_str_eq(r.out, "{\"from\":\"9-0\",\"after\":\"8-18446744073709551615\",\"to\":\"+\","
                            "\"to_id\":\"+\",\"entries\":[]}\n");
    run_free(&r);
    /* Trimmed history: the default "-" is the oldest entry still there, while
     * an explicit cursor before it reports the gap. */
    freeReplyObject(test_cmd(c, "XDEL orders 1-0 2-0"));
    stx(&r, "replay", "orders", NULL);
    expect_out(&r, "3-0 k=a sku=apple\n4-0 k=c sku=apple\n5-0 k=a sku=apple\n");
    run_free(&r);
    stx(&r, "replay", "orders", "--from", "1-0", NULL);
    expect_fail(&r, 6, "replay", "trimmed");
    run_free(&r);

    stx(&r, "replay", "timed", "--from", "2026-11-22T10:00:00Z", "--to", "2026-11-22T10:00:00.999Z",
        NULL);
    expect_out(&r, "1795341600000-0 n=0\n1795341600000-1 n=1\n");
    run_free(&r);
    stx(&r, "replay", "timed", "--from", "2026-11-22T10:00:00.001Z", NULL);
    expect_out(&r, "1795341601000-0 n=2\n1795341601000-1 n=3\n");
    run_free(&r);
    stx(&r, "replay", "timed", "--from", "1795341600000-1", "--to", "2026-11-22T10:00:01Z",
        "--json", NULL);
    expect_json(&r);
    /* The positions as written and as resolved, then the entries. */
    cr_assert_str_eq(r.out, "{\"from\":\"1795341600000-1\",\"after\":\"1795341600000-0\","
                            "\"to\":\"2026-11-22T10:00:01Z\",\"to_id\":\"1795341601000-18446744073709551615\","
                            "\"entries\":[{\"id\":\"1795341600000-1\",\"fields\":{\"n\":\"1\"}},"
                            "{\"id\":\"1795341601000-0\",\"fields\":{\"n\":\"2\"}},"
                            "{\"id\":\"1795341601000-1\",\"fields\":{\"n\":\"3\"}}]}\n");
    run_free(&r);
    redisFree(c);
}

Test(cli, replay_errors)
{
    redisContext *c = test_redis_connect(&R);
    orders(c);
    freeReplyObject(test_cmd(c, "SET plain-string x"));
    run r;
    stx(&r, "replay", "orders", "--from", "12-x", NULL);
    expect_fail(&r, 2, "replay", "bad position '12-x' for --from: expected " STX_POSITION_GRAMMAR);
    run_free(&r);
    stx(&r, "replay", "orders", "--to", "abc", NULL);
    expect_fail(&r, 2, "replay", "bad position 'abc' for --to");
    run_free(&r);
    stx(&r, "replay", "orders", "--from", "2026-02-30T00:00:00Z", NULL);
    expect_fail(&r, 2, "replay", "bad position '2026-02-30T00:00:00Z'");
    run_free(&r);
    stx(&r, "replay", "orders", "--from", "2026-11-22T10:00:00", NULL);
    expect_fail(&r, 2, "replay", "bad position");
    run_free(&r);
    stx(&r, "replay", "orders", "--from", "2026-11-22T10:00:00.1234567890Z", NULL);
    expect_fail(&r, 2, "replay", "bad position");
    run_free(&r);
    stx(&r, "replay", "nosuch", NULL);
    expect_fail(&r, 3, "replay", "stream 'nosuch' does not exist");
    run_free(&r);
    stx(&r, "replay", "plain-string", NULL);
    expect_fail(&r, 4, "replay", "not a stream");
    run_free(&r);

    /* Entries after the cursor are gone: the window expired. */
    freeReplyObject(test_cmd(c, "XDEL orders 1-0 2-0"));
    stx(&r, "replay", "orders", "--from", "1-0", NULL);
    expect_fail(&r, 6, "replay", "2-0");
    run_free(&r);
    stx(&r, "tail", "orders", "--from", "1-0", "--count", "1", NULL);
    expect_fail(&r, 6, "tail", "2-0");
    run_free(&r);
    /* After the deleted ones all is well. */
    stx(&r, "replay", "orders", "--from", "2-1", "--to", "3-0", NULL);
    expect_out(&r, "3-0 k=a sku=apple\n");
    run_free(&r);
    redisFree(c);
}

Test(cli, tail_prints_and_stops)
{
    redisContext *c = test_redis_connect(&R);
    orders(c);
    run r;
    stx(&r, "tail", "orders", "--from", "0", "--count", "2", NULL);
    expect_out(&r, "1-0 k=a sku=apple\n2-0 k=b sku=apple\n");
    run_free(&r);
    stx(&r, "tail", "orders", "--from", "4-0", "--block-ms", "100", "--json", NULL);
    expect_out(&r, "{\"from\":\"4-0\",\"after\":\"3-18446744073709551615\"}\n"
                   "{\"id\":\"4-0\",\"fields\":{\"k\":\"c\",\"sku\":\"apple\"}}\n"
                   "{\"id\":\"5-0\",\"fields\":{\"k\":\"a\",\"sku\":\"apple\"}}\n");
    /* NDJSON: every line on its own is a JSON document. */
    for (char *line = r.out, *nl; (nl = strchr(line, '\n')); line = nl + 1)
        cr_assert(json_valid_n(line, (size_t)(nl - line)), "bad NDJSON line in %s", r.out);
    run_free(&r);
    /* Only new entries by default: nothing comes, the wait ends it. */
    stx(&r, "tail", "orders", "--block-ms", "100", NULL);
    expect_out(&r, "");
    run_free(&r);
    redisFree(c);
}

/* A tail started before the entries arrive prints them, and survives its
 * connection being killed in between without a gap or a repeat. */
Test(cli, tail_follows_and_reconnects)
{
    redisContext *c = test_redis_connect(&R);
    freeReplyObject(test_cmd(c, "XADD live 1-0 n 1"));
    int out[2];
    cr_assert_eq(pipe(out), 0);
    char count[] = "3";
    const char *argv[] = {STX_CLI_PATH, "--url", R.url, "tail", "live", "--count", count, NULL};
    fflush(NULL);
    pid_t pid = fork();
    cr_assert(pid >= 0);
    if (pid == 0) {
        dup2(out[1], 1);
        close(out[0]);
        int devnull = open("/dev/null", O_WRONLY);
        dup2(devnull, 2);
        execv(argv[0], (char *const *)argv);
        _exit(127);
    }
    close(out[1]);
    FILE *f = fdopen(out[0], "r");
    cr_assert(f);
    char line[256];
    /* Give the tail time to start reading, then add and kill. */
    struct timespec ts = {0, 300000000};
    nanosleep(&ts, NULL);
    freeReplyObject(test_cmd(c, "XADD live 2-0 n 2"));
    cr_assert(fgets(line, sizeof line, f));
    cr_assert_str_eq(line, "2-0 n=2\n");
    freeReplyObject(test_cmd(c, "CLIENT KILL TYPE normal SKIPME yes"));
    freeReplyObject(test_cmd(c, "XADD live 3-0 n 3"));
    freeReplyObject(test_cmd(c, "XADD live 4-0 n 4"));
    cr_assert(fgets(line, sizeof line, f));
    cr_assert_str_eq(line, "3-0 n=3\n");
    cr_assert(fgets(line, sizeof line, f));
    cr_assert_str_eq(line, "4-0 n=4\n");
    cr_assert_null(fgets(line, sizeof line, f));
    fclose(f);
    int status;
    waitpid(pid, &status, 0);
    cr_assert(WIFEXITED(status) && WEXITSTATUS(status) == 0, "status %d", status);
    redisFree(c);
}

Test(cli, tail_stops_on_sigint)
{
    /* --wait: "quiet" does not exist (yet). */
    const char *argv[] = {STX_CLI_PATH, "--url", R.url, "tail", "quiet", "--wait", NULL};
    fflush(NULL);
    pid_t pid = fork();
    cr_assert(pid >= 0);
    if (pid == 0) {
        int devnull = open("/dev/null", O_WRONLY);
        dup2(devnull, 1);
        dup2(devnull, 2);
        execv(argv[0], (char *const *)argv);
        _exit(127);
    }
    struct timespec ts = {0, 300000000};
    nanosleep(&ts, NULL);
    kill(pid, SIGINT);
    int status;
    int64_t deadline = test_now_ms() + 5000;
    while (waitpid(pid, &status, WNOHANG) == 0) {
        cr_assert(test_now_ms() < deadline, "tail did not stop on SIGINT");
        ts.tv_nsec = 10000000;
        nanosleep(&ts, NULL);
    }
    cr_assert(WIFEXITED(status) && WEXITSTATUS(status) == 0, "status %d", status);
}

/* ------------------------------------------------------------------ */
/* pending                                                              */

Test(cli, pending_summary_and_entries)
{
    redisContext *c = test_redis_connect(&R);
    orders(c);
    run r;
    stx(&r, "pending", "orders", "audit", NULL);
    expect_ok(&r);
    const char *head = "pending  2\n"
                       "min-id   1-0\n"
                       "max-id   2-0\n"
                       "\n"
                       "CONSUMER  PENDING\n"
                       "c1        2\n"
                       "\n";
    cr_assert(starts_with(r.out, head), "%s", r.out);
    const char *rest = r.out + strlen(head);
    char hdr[128], id1[16], id2[16], c1[8], c2[8];
    long idle1, idle2, d1, d2;
    cr_assert_eq(sscanf(rest, "%127[^\n]\n%15s %7s %ld %ld\n%15s %7s %ld %ld\n", hdr, id1, c1,
                        &idle1, &d1, id2, c2, &idle2, &d2),
                 9, "%s", rest);
    cr_assert(starts_with(hdr, "ID   CONSUMER  IDLE-MS"), "%s", hdr);
    cr_assert_str_eq(id1, "1-0");
    cr_assert_str_eq(id2, "2-0");
    cr_assert_str_eq(c1, "c1");
    cr_assert(idle1 >= 0 && idle1 < 60000 && d1 == 1 && d2 == 1);
    run_free(&r);

    stx(&r, "pending", "orders", "audit", "--json", "--limit", "1", NULL);
    expect_json(&r);
    const char *prefix = "{\"stream\":\"orders\",\"group\":\"audit\",\"count\":2,\"min_id\":\"1-0\","
                         "\"max_id\":\"2-0\",\"consumers\":[{\"name\":\"c1\",\"pending\":2}],"
                         "\"entries\":[{\"id\":\"1-0\",\"consumer\":\"c1\",\"idle_ms\":";
    cr_assert(starts_with(r.out, prefix), "%s", r.out);
    cr_assert(strstr(r.out, ",\"deliveries\":1}]}\n"), "%s", r.out);
    run_free(&r);

    /* The streamtx group acknowledged everything. */
    stx(&r, "pending", "orders", "stock", NULL);
    expect_out(&r, "pending  0\nmin-id   -\nmax-id   -\n");
    run_free(&r);
    stx(&r, "pending", "orders", "stock", "--json", NULL);
    expect_json(&r);
    cr_assert_str_eq(r.out, "{\"stream\":\"orders\",\"group\":\"stock\",\"count\":0,\"min_id\":null,"
                            "\"max_id\":null,\"consumers\":[],\"entries\":[]}\n");
    run_free(&r);

    stx(&r, "pending", "orders", "nogroup", NULL);
    expect_fail(&r, 3, "pending", "stream 'orders' has no group 'nogroup'");
    run_free(&r);
    stx(&r, "pending", "nosuch", "audit", NULL);
    expect_fail(&r, 3, "pending", "stream 'nosuch' has no group 'audit'");
    run_free(&r);
    freeReplyObject(test_cmd(c, "SET plain-string x"));
    stx(&r, "pending", "plain-string", "audit", NULL);
    expect_fail(&r, 4, "pending", "not a stream");
    run_free(&r);
    redisFree(c);
}

/* ------------------------------------------------------------------ */
/* state                                                                */

Test(cli, state_get_and_dump)
{
    redisContext *c = test_redis_connect(&R);
    orders(c);
    run r;
    stx(&r, "state", "get", "orders", "stock", "a", NULL);
    expect_out(&r, "a\t3\n");
    run_free(&r);
    stx(&r, "state", "get", "orders", "stock", "last", "--json", NULL);
    expect_json(&r);
    cr_assert_str_eq(r.out,
                     "{\"key\":\"last\",\"value\":{\"id\":\"5-0\",\"ok\":true,\"n\":[1,-2,1.5]}}\n");
    run_free(&r);
    stx(&r, "state", "dump", "orders", "stock", NULL);
    expect_out(&r, "a\t3\n"
                   "b\t1\n"
                   "c\t1\n"
                   "last\t{\"id\":\"5-0\",\"ok\":true,\"n\":[1,-2,1.5]}\n");
    run_free(&r);
    stx(&r, "--json", "state", "dump", "orders", "stock", NULL);
    expect_json(&r);
    cr_assert_str_eq(r.out, "{\"a\":3,\"b\":1,\"c\":1,"
                            "\"last\":{\"id\":\"5-0\",\"ok\":true,\"n\":[1,-2,1.5]}}\n");
    run_free(&r);
    redisFree(c);
}

/* Values written by someone else: every msgpack type, odd keys and bytes
 * that are not msgpack at all. */
Test(cli, state_msgpack_to_json)
{
    redisContext *c = test_redis_connect(&R);
    freeReplyObject(test_cmd(c, "XADD s 1-0 a 1"));
    freeReplyObject(test_cmd(c, "XGROUP CREATE s g 0"));
    static const struct {
        const char *key;
        const char *bytes;
        size_t len;
        const char *json;
    } cases[] = {
        {"bin", "\xc4\x03" "abc", 5, "{\"$bin\":\"YWJj\"}"},
        {"bool", "\xc2", 1, "false"},
        {"ext", "\xd6\xff\x00\x00\x00\x01", 6, "{\"$ext\":-1,\"$bin\":\"AAAAAQ==\"}"},
        {"f32", "\xca\x3f\xc0\x00\x00", 5, "1.5"},
        {"forged", "\xdd\x7f\xff\xff\xff", 5, "{\"$invalid\":\"3X////8=\"}"},
        {"i64min", "\xd3\x80\x00\x00\x00\x00\x00\x00\x00", 9, "-9223372036854775808"},
        {"inf", "\xcb\x7f\xf0\x00\x00\x00\x00\x00\x00", 9, "null"},
        {"keys", "\x84\x01\xa1x\x92\x01\x02\xc0\xc3\xa1y\xa2\"k\x01", 15,
         "{\"1\":\"x\",\"[1,2]\":null,\"true\":\"y\",\"\\\"k\":1}"},
        {"latin1", "\xa3\xff" "A\n", 4, "\"\\u00ffA\\n\""},
        {"nan", "\xcb\x7f\xf8\x00\x00\x00\x00\x00\x01", 9, "null"},
        {"neg", "\xe0", 1, "-32"},
        {"nil", "\xc0", 1, "null"},
        {"pi", "\xcb\x40\x09\x21\xfb\x54\x44\x2d\x18", 9, "3.1415926535897931"},
        {"reserved", "\xc1", 1, "{\"$invalid\":\"wQ==\"}"},
        {"trailing", "\x01\x02", 2, "{\"$invalid\":\"AQI=\"}"},
        {"u64max", "\xcf\xff\xff\xff\xff\xff\xff\xff\xff", 9, "18446744073709551615"},
        {"utf8", "\xa6\xc3\xa9t\xc3\xa9!", 7, "\"\xc3\xa9t\xc3\xa9!\""},
    };
    size_t n = sizeof cases / sizeof cases[0];
    char expected[4096] = "", json_expected[4096] = "{";
    for (size_t i = 0; i < n; i++) {
        put_raw_state(c, "s", "g", cases[i].key, cases[i].bytes, cases[i].len);
        size_t e = strlen(expected), j = strlen(json_expected);
        snprintf(expected + e, sizeof expected - e, "%s\t%s\n", cases[i].key, cases[i].json);
        snprintf(json_expected + j, sizeof json_expected - j, "%s\"%s\":%s", i ? "," : "",
                 cases[i].key, cases[i].json);
    }
    strcat(json_expected, "}\n");
    run r;
    stx(&r, "state", "dump", "s", "g", NULL);
    cr_assert_eq(r.code, 0, "%s", r.err);
    cr_assert_str_eq(r.out, expected);
    /* One warning per undecodable value, and no crash. */
    int warnings = 0;
    for (const char *p = r.err; (p = strstr(p, "stx: state dump: warning: ")); p++)
        warnings++;
    cr_assert_eq(warnings, 3, "%s", r.err);
    run_free(&r);
    stx(&r, "state", "dump", "s", "g", "--json", NULL);
    cr_assert_eq(r.code, 0);
    cr_assert(json_valid(r.out), "%s", r.out);
    cr_assert_str_eq(r.out, json_expected);
    run_free(&r);

    stx(&r, "state", "get", "s", "g", "reserved", NULL);
    cr_assert_eq(r.code, 0);
    cr_assert_str_eq(r.out, "reserved\t{\"$invalid\":\"wQ==\"}\n");
    cr_assert(strstr(r.err, "warning") && strstr(r.err, "'reserved'"), "%s", r.err);
    run_free(&r);

    /* Deeper than the converter goes: $invalid, not a crash. */
    char deep[200];
    memset(deep, 0x91, sizeof deep - 1);
    deep[sizeof deep - 1] = (char)0xc0;
    put_raw_state(c, "s", "g", "deep", deep, sizeof deep);
    stx(&r, "state", "get", "s", "g", "deep", "--json", NULL);
    cr_assert_eq(r.code, 0);
    cr_assert(json_valid(r.out), "%s", r.out);
    cr_assert(starts_with(r.out, "{\"key\":\"deep\",\"value\":{\"$invalid\":\""), "%s", r.out);
    run_free(&r);

    /* A key with a tab and a newline stays on its line. */
    put_raw_state(c, "s", "g", "t\tn\nx", "\x07", 1);
    stx(&r, "state", "get", "s", "g", "t\tn\nx", NULL);
    expect_out(&r, "t\\tn\\nx\t7\n");
    run_free(&r);
    redisFree(c);
}

Test(cli, state_errors)
{
    redisContext *c = test_redis_connect(&R);
    orders(c);
    run r;
    stx(&r, "state", "get", "orders", "stock", "nokey", NULL);
    expect_fail(&r, 3, "state get", "no state key 'nokey'");
    run_free(&r);
    stx(&r, "state", "dump", "orders", "nogroup", NULL);
    expect_fail(&r, 3, "state dump", "no group 'nogroup'");
    run_free(&r);
    stx(&r, "state", "dump", "nosuch", "g", "--json", NULL);
    expect_fail_json(&r, 3, "state dump", "not_found", "stream 'nosuch' has no group 'g'");
    run_free(&r);
    char name[256];
    cr_assert(stx_key_name(name, sizeof name, "orders", "bad", "state") > 0);
    freeReplyObject(test_cmd(c, "SET %s x", name));
    stx(&r, "state", "get", "orders", "bad", "k", NULL);
    expect_fail(&r, 4, "state get", "not a hash");
    run_free(&r);
    stx(&r, "state", "dump", "orders", "bad", NULL);
    expect_fail(&r, 4, "state dump", "not a hash");
    run_free(&r);
    redisFree(c);
}

/* ------------------------------------------------------------------ */
/* reset and trim                                                       */

Test(cli, reset_needs_yes_and_moves_the_group)
{
    redisContext *c = test_redis_connect(&R);
    orders(c);
    run r;
    /* No terminal, no --yes: refused, nothing changed. */
    stx(&r, "reset", "orders", "stock", "--to", "beginning", NULL);
    expect_fail(&r, 2, "reset", "--yes");
    run_free(&r);
    stx(&r, "reset", "orders", "stock", NULL);
    expect_fail(&r, 2, "reset", "missing --to");
    run_free(&r);
    stx(&r, "reset", "orders", "stock", "--to", "yesterday", "--yes", NULL);
    expect_fail(&r, 2, "reset", "bad position 'yesterday'");
    run_free(&r);
    stx(&r, "reset", "orders", "stock", "--to", "2026-11-22T25:00:00Z", "--yes", NULL);
    expect_fail(&r, 2, "reset", "bad position '2026-11-22T25:00:00Z' for --to: expected " STX_POSITION_GRAMMAR);
    run_free(&r);
    stx(&r, "reset", "orders", "nogroup", "--to", "end", "--yes", NULL);
    expect_fail(&r, 3, "reset", "nogroup");
    run_free(&r);
    stx(&r, "reset", "nosuch", "stock", "--to", "end", "--yes", NULL);
    expect_fail(&r, 3, "reset", "nosuch");
    run_free(&r);

    stx(&r, "reset", "orders", "stock", "--to", "2-0", "--yes", NULL);
    expect_out(&r, "group 'stock' of stream 'orders' reset to 2-0\n");
    run_free(&r);
    stx(&r, "info", "orders", "--json", NULL);
    expect_json(&r);
    cr_assert(strstr(r.out, "{\"name\":\"stock\",\"streamtx\":true,\"offset\":\"2-0\","
                            "\"last_delivered\":\"2-0\",\"lag\":null,\"pending\":0,\"epoch\":2,"
                            "\"state_keys\":4,"),
              "%s", r.out);
    run_free(&r);

    stx(&r, "reset", "orders", "stock", "--to", "beginning", "--clear-state", "--yes", "--json",
        NULL);
    expect_json(&r);
    cr_assert_str_eq(r.out, "{\"stream\":\"orders\",\"group\":\"stock\",\"to\":\"beginning\","
                            "\"to_id\":\"0-0\",\"state_cleared\":true,\"reemit\":false}\n");
    run_free(&r);
    stx(&r, "info", "orders", "--json", NULL);
    cr_assert(strstr(r.out, "\"offset\":\"0-0\",\"last_delivered\":\"0-0\",\"lag\":5,\"pending\":0,"
                            "\"epoch\":3,\"state_keys\":0,"),
              "%s", r.out);
    run_free(&r);

    /* A time: resume with the entries of that millisecond. */
    stx(&r, "reset", "orders", "stock", "--to", "1970-01-01T00:00:00.004Z", "--yes", NULL);
    expect_out(&r, "group 'stock' of stream 'orders' reset to 1970-01-01T00:00:00.004Z "
                   "(resumes after 3-18446744073709551615)\n");
    run_free(&r);
    stx(&r, "info", "orders", "--json", NULL);
    cr_assert(strstr(r.out, "\"last_delivered\":\"3-18446744073709551615\""), "%s", r.out);
    run_free(&r);
    redisFree(c);
}

/* The question on a terminal says what happens to the state and to the
 * publishes; only "y" or "yes" goes on. */
Test(cli, reset_asks_and_says_what_replaying_does)
{
    redisContext *c = test_redis_connect(&R);
    orders(c);
    char meta[256], epoch[64];
    stx_key_name(meta, sizeof meta, "orders", "stock", "meta");
    redisReply *x = test_cmd(c, "HGET %s epoch", meta);
    snprintf(epoch, sizeof epoch, "%s", x->str);
    freeReplyObject(x);
    run r;
    const char *keep[] = {"reset", "orders", "stock", "--to", "beginning", NULL};
    run_argv_tty(&r, "n\n", 1, keep);
    cr_assert_eq(r.code, 7, "exit %d: %s", r.code, r.err);
    cr_assert_str_empty(r.out);
    cr_assert(starts_with(r.err, "Reset group 'stock' of stream 'orders' to beginning? A running "
                                 "processor of the group will be fenced. The state is kept: "
                                 "entries after the position that were already processed are "
                                 "applied to it AGAIN (counts add up twice). Entries that were "
                                 "already processed do not publish again. [y/N] "),
              "%s", r.err);
    cr_assert(strstr(r.err, "stx: reset: not confirmed; nothing changed\n"), "%s", r.err);
    run_free(&r);
    x = test_cmd(c, "HGET %s epoch", meta);
    cr_assert_str_eq(x->str, epoch, "a refused reset changed the epoch");
    freeReplyObject(x);

    const char *clear[] = {"reset", "orders", "stock", "--to", "beginning", "--clear-state",
                           "--reemit", NULL};
    run_argv_tty(&r, "yes\n", 1, clear);
    cr_assert_eq(r.code, 0, "exit %d: %s", r.code, r.err);
    cr_assert_str_eq(r.err, "Reset group 'stock' of stream 'orders' to beginning and DELETE its "
                            "state? A running processor of the group will be fenced. The state "
                            "is rebuilt by replaying the entries after the position. Replayed "
                            "entries publish AGAIN. [y/N] ");
    cr_assert_str_eq(r.out, "group 'stock' of stream 'orders' reset to beginning; state deleted\n");
    run_free(&r);
    /* --reemit leaves no bound on the replay's publishes; without it the
     * bound is the offset the group had. */
    cr_assert_eq(test_cmd_int(c, "HEXISTS %s replay_until", meta), 0);
    process_all("orders", "stock");
    stx(&r, "reset", "orders", "stock", "--to", "beginning", "--clear-state", "--yes", NULL);
    expect_out(&r, "group 'stock' of stream 'orders' reset to beginning; state deleted\n");
    run_free(&r);
    x = test_cmd(c, "HGET %s replay_until", meta);
    cr_assert_str_eq(x->str, "5-0");
    freeReplyObject(x);
    redisFree(c);
}

/* After `stx trim --safe`, a clearing reset to before the trimmed entries
 * is refused (exit 6, naming --force); --force does it. */
Test(cli, clearing_reset_after_trim_needs_force)
{
    redisContext *c = test_redis_connect(&R);
    orders(c);
    freeReplyObject(test_cmd(c, "XGROUP DESTROY orders audit"));
    run r;
    stx(&r, "trim", "orders", "--safe", "--maxlen", "2", NULL);
    expect_out(&r, "deleted 3\n");
    run_free(&r);
    stx(&r, "reset", "orders", "stock", "--to", "beginning", "--clear-state", "--yes", NULL);
    expect_fail(&r, 6, "reset", "were trimmed or deleted");
    cr_assert(strstr(r.err, "--force") && strstr(r.err, "first retained entry is 4-0"), "%s",
              r.err);
    run_free(&r);
    stx(&r, "reset", "orders", "stock", "--to", "beginning", "--clear-state", "--force", "--yes",
        "--json", NULL);
    expect_json(&r);
    cr_assert_str_eq(r.out, "{\"stream\":\"orders\",\"group\":\"stock\",\"to\":\"beginning\","
                            "\"to_id\":\"0-0\",\"state_cleared\":true,\"reemit\":false}\n");
    run_free(&r);
    redisFree(c);
}

Test(cli, trim_safe_only)
{
    redisContext *c = test_redis_connect(&R);
    orders(c);
    run r;
    stx(&r, "trim", "orders", NULL);
    expect_fail(&r, 2, "trim", "--safe");
    run_free(&r);
    stx(&r, "trim", "orders", "--maxlen", "1", NULL);
    expect_fail(&r, 2, "trim", "--safe");
    run_free(&r);
    cr_assert_eq(test_cmd_int(c, "XLEN orders"), 5);

    /* "audit" has not acknowledged 1-0: nothing can go. */
    stx(&r, "trim", "orders", "--safe", NULL);
    expect_out(&r, "deleted 0\n");
    run_free(&r);
    /* Now it has processed 1-0 and 2-0; "stock" all five. */
    cr_assert_eq(test_cmd_int(c, "XACK orders audit 1-0 2-0"), 2);
    stx(&r, "trim", "orders", "--safe", "--maxlen", "4", NULL);
    expect_out(&r, "deleted 1\n");
    run_free(&r);
    stx(&r, "trim", "orders", "--safe", "--max-age", "1d12h", "--json", NULL);
    expect_json(&r);
    cr_assert_str_eq(r.out, "{\"deleted\":1}\n");
    run_free(&r);
    stx(&r, "trim", "orders", "--safe", NULL);
    expect_out(&r, "deleted 0\n");
    run_free(&r);
    cr_assert_eq(test_cmd_int(c, "XLEN orders"), 3);
    freeReplyObject(test_cmd(c, "XGROUP DESTROY orders audit"));
    stx(&r, "trim", "orders", "--safe", NULL);
    expect_out(&r, "deleted 3\n");
    run_free(&r);
    cr_assert_eq(test_cmd_int(c, "XLEN orders"), 0);

    stx(&r, "trim", "nosuch", "--safe", NULL);
    expect_fail(&r, 3, "trim", "does not exist");
    run_free(&r);
    freeReplyObject(test_cmd(c, "SET plain-string x"));
    stx(&r, "trim", "plain-string", "--safe", NULL);
    expect_fail(&r, 4, "trim", "not a stream");
    run_free(&r);
    redisFree(c);
}

/* ------------------------------------------------------------------ */
/* health                                                               */

Test(cli, health_reports)
{
    run r;
    stx(&r, "health", NULL);
    expect_ok(&r);
    cr_assert(starts_with(r.out, "CHECK        STATUS  DETAIL\nversion      ok      7."), "%s",
              r.out);
    cr_assert(strstr(r.out, "\nscripts      ok      "), "%s", r.out);
    /* The test server runs without AOF: a warning, not a failure. */
    cr_assert(strstr(r.out, "\nappendonly   warn    no: "), "%s", r.out);
    run_free(&r);
    stx(&r, "health", "--json", NULL);
    expect_json(&r);
    cr_assert(starts_with(r.out, "{\"healthy\":true,\"checks\":[{\"check\":\"version\","
                                 "\"status\":\"ok\""),
              "%s", r.out);
    run_free(&r);
}

Test(cli, health_with_aof_has_no_persistence_warning)
{
    test_redis aof;
    test_redis_start(&aof, 1, NULL);
    const char *args[] = {"--url", aof.url, "health", NULL};
    run r;
    run_argv(&r, NULL, args);
    expect_ok(&r);
    cr_assert(strstr(r.out, "\nappendonly   ok      yes\n"), "%s", r.out);
    cr_assert(strstr(r.out, "\nappendfsync  ok      always\n"), "%s", r.out);
    run_free(&r);
    test_redis_stop(&aof);
}

/* ------------------------------------------------------------------ */
/* dead letters                                                         */

Test(cli, dlq_list_and_redrive)
{
    redisContext *c = test_redis_connect(&R);
    for (int i = 1; i <= 3; i++)
        freeReplyObject(test_cmd(c, "XADD orders %d-0 k %s sku apple", i, i == 2 ? "b" : "a"));
    process_with("orders", "stock", fail_b_handler);
    run r;
    stx(&r, "dlq", "list", "orders", "stock", NULL);
    expect_ok(&r);
    char hdr[256], dlq_id[64], rest[512];
    cr_assert_eq(sscanf(r.out, "%255[^\n]\n%63s %511[^\n]", hdr, dlq_id, rest), 3, "%s", r.out);
    cr_assert(starts_with(hdr, "ID"), "%s", hdr);
    cr_assert(strstr(hdr, "SOURCE-ID") && strstr(hdr, "REASON") && strstr(hdr, "FIELDS"), "%s", hdr);
    cr_assert(starts_with(rest, "2-0 "), "%s", rest);
    cr_assert(strstr(rest, "handler_failed") && strstr(rest, "refusing 2-0"), "%s", rest);
    size_t len = strlen(rest), tail = strlen("  k=b sku=apple");
    cr_assert(len > tail && strcmp(rest + len - tail, "  k=b sku=apple") == 0, "%s", rest);
    run_free(&r);

    stx(&r, "dlq", "list", "orders", "stock", "--json", NULL);
    expect_json(&r);
    char expected[512];
    snprintf(expected, sizeof expected,
             "[{\"id\":\"%s\",\"source_stream\":\"orders\",\"group\":\"stock\","
             "\"source_id\":\"2-0\",\"reason\":\"handler_failed\",\"error\":\"refusing 2-0\","
             "\"attempts\":1,\"failed_at\":",
             dlq_id);
    cr_assert(starts_with(r.out, expected), "%s\nexpected:\n%s", r.out, expected);
    cr_assert(strstr(r.out, ",\"fields\":{\"k\":\"b\",\"sku\":\"apple\"}}]\n"), "%s", r.out);
    run_free(&r);

    stx(&r, "info", "orders", NULL);
    expect_ok(&r);
    cr_assert(strstr(r.out, "\nstock  3-0     3-0             0    0        1      2           1\n"),
              "%s", r.out);
    run_free(&r);

    stx(&r, "dlq", "redrive", "orders", "stock", "12-x", NULL);
    expect_fail(&r, 2, "dlq redrive", "bad id '12-x'");
    run_free(&r);
    stx(&r, "dlq", "redrive", "orders", "stock", "--json", NULL);
    expect_json(&r);
    cr_assert_str_eq(r.out, "{\"moved\":1}\n");
    run_free(&r);
    cr_assert_eq(test_cmd_int(c, "XLEN orders"), 4);
    stx(&r, "replay", "orders", "--from", "3-1", NULL);
    expect_ok(&r);
    cr_assert(strstr(r.out, " k=b sku=apple\n"), "%s", r.out);
    run_free(&r);

    stx(&r, "dlq", "list", "orders", "stock", NULL);
    expect_out(&r, "");
    run_free(&r);
    stx(&r, "dlq", "list", "orders", "stock", "--json", NULL);
    expect_json(&r);
    cr_assert_str_eq(r.out, "[]\n");
    run_free(&r);
    stx(&r, "dlq", "redrive", "orders", "stock", NULL);
    expect_out(&r, "moved 0\n");
    run_free(&r);
    redisFree(c);
}

Test(cli, dlq_redrive_of_an_id_given_twice_moves_it_once)
{
    redisContext *c = test_redis_connect(&R);
    for (int i = 1; i <= 3; i++)
        freeReplyObject(test_cmd(c, "XADD orders %d-0 k %s sku apple", i, i == 2 ? "b" : "a"));
    process_with("orders", "stock", fail_b_handler);
    char dlq[256];
    stx_key_name(dlq, sizeof dlq, "orders", "stock", "dlq");
    redisReply *x = test_cmd(c, "XRANGE %s - +", dlq);
    cr_assert_eq(x->elements, 1);
    char id[64];
    snprintf(id, sizeof id, "%s", x->element[0]->element[0]->str);
    freeReplyObject(x);
    run r;
    stx(&r, "dlq", "redrive", "orders", "stock", id, id, NULL);
    expect_out(&r, "moved 1\n");
    run_free(&r);
    cr_assert_eq(test_cmd_int(c, "XLEN orders"), 4, "the entry was redriven twice");
    redisFree(c);
}

/* A tail that meets LOADING (Redis reloading its dataset) waits and goes
 * on, as after a lost connection, instead of failing. */
Test(cli, tail_waits_while_redis_loads)
{
    test_redis L;
    static const char *const slow[] = {"--enable-debug-command", "yes", "--key-load-delay", "1000",
                                       "--loading-process-events-interval-bytes", "1024", NULL};
    test_redis_start(&L, 0, slow);
    redisContext *c = test_redis_connect(&L);
    freeReplyObject(test_cmd(c, "XADD ld 1-0 n 1"));
    freeReplyObject(test_cmd(c, "DEBUG POPULATE 1500"));
    /* DEBUG RELOAD answers when loaded (1.5 s): sent, not waited for. */
    redisAppendCommand(c, "DEBUG RELOAD");
    for (int done = 0; !done;)
        cr_assert_eq(redisBufferWrite(c, &done), REDIS_OK);
    struct timespec ts = {0, 100000000};
    nanosleep(&ts, NULL);
    const char *args[] = {"--url", L.url, "tail", "ld", "--from", "0", "--count", "1", NULL};
    run r;
    run_argv(&r, NULL, args);
    cr_assert_eq(r.code, 0, "exit %d: %s", r.code, r.err);
    cr_assert_str_eq(r.out, "1-0 n=1\n");
    cr_assert(starts_with(r.err, "stx: tail: warning: ") &&
                  strstr(r.err, "Redis is loading its dataset") && strstr(r.err, "; retrying\n") &&
                  strstr(r.err, "stx: tail: warning: Redis answers again; going on after 0-0\n"),
              "%s", r.err);
    run_free(&r);
    redisReply *ok;
    cr_assert_eq(redisGetReply(c, (void **)&ok), REDIS_OK);
    freeReplyObject(ok);
    redisFree(c);
    test_redis_stop(&L);
}

static int count_lines(const char *s)
{
    int n = 0;
    for (; *s; s++) n += *s == '\n';
    return n;
}

/* stx over TLS (rediss://, with the CA given by option or environment) and
 * over a Unix socket; a wrong CA is a clear error. */
Test(cli, info_and_tail_over_tls_and_a_unix_socket)
{
    char dir[256], sock[300], ca[300], wrong[300], url_unix[400];
    test_tmpdir(dir, sizeof dir);
    test_tls_make(dir);
    snprintf(sock, sizeof sock, "%s/redis.sock", dir);
    snprintf(ca, sizeof ca, "%s/ca.crt", dir);
    snprintf(wrong, sizeof wrong, "%s/wrongca.crt", dir);
    snprintf(url_unix, sizeof url_unix, "unix://%s", sock);
    const char *extra[] = {"--unixsocket", sock, "--unixsocketperm", "700", NULL};
    test_redis t;
    test_redis_start_tls(&t, dir, "server", "no", extra);
    redisContext *c = test_redis_connect(&t);
    for (int i = 0; i < 3; i++) freeReplyObject(test_cmd(c, "XADD secure * n %d", i));
    run r;
    stx(&r, "info", "secure", "--url", t.tls_url, "--tls-ca-file", ca, NULL);
    expect_ok(&r);
    cr_assert(strstr(r.out, "secure"), "%s", r.out);
    run_free(&r);
    stx(&r, "tail", "secure", "--from", "0", "--count", "3", "--url", t.tls_url, "--tls-ca-file",
        ca, NULL);
    expect_ok(&r);
    cr_assert_eq(count_lines(r.out), 3, "%s", r.out);
    run_free(&r);
    setenv("STX_TLS_CA_FILE", ca, 1);
    run_free(&r);
    stx(&r, "tail", "secure", "--from", "0", "--count", "2", "--url", t.tls_url, NULL);
    unsetenv("STX_TLS_CA_FILE");
    expect_ok(&r);
    cr_assert_eq(count_lines(r.out), 2, "%s", r.out);
    run_free(&r);
    stx(&r, "info", "secure", "--url", url_unix, NULL);
    expect_ok(&r);
    run_free(&r);
    stx(&r, "tail", "secure", "--from", "0", "--count", "3", "--url", url_unix, NULL);
    expect_ok(&r);
    cr_assert_eq(count_lines(r.out), 3, "%s", r.out);
    run_free(&r);
    stx(&r, "info", "secure", "--url", t.tls_url, "--tls-ca-file", wrong, NULL);
    cr_assert_neq(r.code, 0);
    cr_assert(strstr(r.err, "unknown CA") || strstr(r.err, "certificate"), "%s", r.err);
    run_free(&r);
    redisFree(c);
    test_redis_stop(&t);
    test_rmrf(dir);
}

/* ------------------------------------------------------------------ */
/* one vocabulary: positions, --limit, not found, JSON errors           */

/* The library's parser: every form of the grammar, and what it resolves
 * to as an exclusive cursor and as an inclusive bound. */
Test(cli, position_grammar_of_the_library)
{
    static const struct {
        const char *text, *after, *until;
    } ok[] = {
        {"beginning", "0-0", "0-0"},
        {"-", "0-0", "0-0"},
        {"0", "0-0", "0-0"},
        {"end", "$", "+"},
        {"$", "$", "+"},
        {"+", "$", "+"},
        {"5-3", "5-2", "5-3"},
        {"5-0", "4-18446744073709551615", "5-0"},
        {"5", "4-18446744073709551615", "5-18446744073709551615"},
        {"@1795341600000", "1795341599999-18446744073709551615", "1795341600000-18446744073709551615"},
        {"2026-11-22T10:00:00Z", "1795341599999-18446744073709551615",
         "1795341600000-18446744073709551615"},
        {"2026-11-22T11:00:00.250+01:00", "1795341600249-18446744073709551615",
         "1795341600250-18446744073709551615"},
        {"2026-11-22t10:00:00.123456789z", "1795341600122-18446744073709551615",
         "1795341600123-18446744073709551615"},
        /* Durations count back from now (here 1795341600000 + 1 h). */
        {"1h", "1795341599999-18446744073709551615", "1795341600000-18446744073709551615"},
        {"30m30m", "1795341599999-18446744073709551615", "1795341600000-18446744073709551615"},
        {"3600s", "1795341599999-18446744073709551615", "1795341600000-18446744073709551615"},
        /* Longer ago than the epoch: the epoch. */
        {"100000w", "0-0", "0-18446744073709551615"},
    };
    long long now = 1795341600000LL + 3600000;
    for (size_t i = 0; i < sizeof ok / sizeof ok[0]; i++) {
        stx_position p;
        char a[48], u[48];
        cr_assert_eq(stx_position_parse(ok[i].text, now, &p), STX_OK, "%s", ok[i].text);
        cr_assert(stx_position_after(&p, a, sizeof a) > 0, "%s", ok[i].text);
        cr_assert(stx_position_until(&p, u, sizeof u) > 0, "%s", ok[i].text);
        cr_assert_str_eq(a, ok[i].after, "after %s", ok[i].text);
        cr_assert_str_eq(u, ok[i].until, "until %s", ok[i].text);
    }
    static const char *const bad[] = {
        "", "yesterday", "5-", "-5", "5-3-1", "1-x", "@", "@-1", "@1.5", "1x", "h",
        "2026-11-22T10:00:00", "2026-02-30T00:00:00Z", "2026-11-22T24:00:00Z",
        "2026-11-22T10:00:00.1234567890Z", "2026-11-22T10:00:00+1:00", "99999999999999999999999",
    };
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
        stx_position p = {STX_POSITION_ID, 7, 7, 1};
        cr_assert_eq(stx_position_parse(bad[i], now, &p), STX_EINVAL, "'%s' was accepted", bad[i]);
        cr_assert(p.kind == STX_POSITION_ID && p.ms == 7, "'%s' changed *out", bad[i]);
    }
    stx_position p;
    char tiny[4];
    cr_assert_eq(stx_position_parse(NULL, now, &p), STX_EINVAL);
    cr_assert_eq(stx_position_parse("0", now, NULL), STX_EINVAL);
    cr_assert_eq(stx_position_parse("5-3", now, &p), STX_OK);
    cr_assert_eq(stx_position_after(&p, tiny, sizeof tiny), STX_OK + 3);
    cr_assert_eq(stx_position_until(&p, tiny, 3), STX_ELIMIT);
    cr_assert_eq(stx_position_after(NULL, tiny, sizeof tiny), STX_EINVAL);

    /* group_start_id: the whole grammar; beginning and end stored as the
     * start script spells them, the rest resolved when a group is created. */
    stx_config *conf = stx_config_new();
    char err[256], v[64];
    static const char *const start[][2] = {
        {"beginning", "0"}, {"-", "0"}, {"0", "0"}, {"end", "$"}, {"$", "$"}, {"7-1", "7-1"},
        {"7", "7"}, {"1h", "1h"}, {"@1700000000000", "@1700000000000"}};
    for (size_t i = 0; i < sizeof start / sizeof start[0]; i++) {
        cr_assert_eq(stx_config_set(conf, "group_start_id", start[i][0], err, sizeof err), STX_OK,
                     "%s: %s", start[i][0], err);
        cr_assert_eq(stx_config_get(conf, "group_start_id", v, sizeof v), STX_OK);
        cr_assert_str_eq(v, start[i][1], "%s", start[i][0]);
    }
    cr_assert_eq(stx_config_set(conf, "group_start_id", "yesterday", err, sizeof err), STX_EINVAL);
    cr_assert(strstr(err, "group_start_id must be a position") && strstr(err, "yesterday"), "%s",
              err);
    stx_config_free(conf);
}

/* tail, replay and reset take the same positions. */
Test(cli, positions_everywhere)
{
    redisContext *c = test_redis_connect(&R);
    orders(c);
    timed_stream(c);
    run r;
    stx(&r, "replay", "timed", "--from", "@1795341601000", NULL);
    expect_out(&r, "1795341601000-0 n=2\n1795341601000-1 n=3\n");
    run_free(&r);
    stx(&r, "replay", "timed", "--from", "2026-11-22T11:00:00+01:00", "--to",
        "2026-11-22T10:00:00.999Z", NULL);
    expect_out(&r, "1795341600000-0 n=0\n1795341600000-1 n=1\n");
    run_free(&r);
    stx(&r, "replay", "timed", "--from", "beginning", "--to", "end", "--limit", "1", NULL);
    expect_out(&r, "1795341600000-0 n=0\n");
    run_free(&r);
    stx(&r, "replay", "timed", "--from", "end", NULL);
    expect_out(&r, "");
    run_free(&r);
    /* The entries are older than a day: none in the last one. */
    stx(&r, "replay", "timed", "--from", "1d", NULL);
    expect_out(&r, "");
    run_free(&r);
    stx(&r, "replay", "timed", "--to", "1d", "--json", NULL);
    expect_json(&r);
    cr_assert(starts_with(r.out, "{\"from\":\"-\",\"after\":"), "%s", r.out);
    cr_assert(strstr(r.out, "\"to\":\"1d\",\"to_id\":\"") &&
                  strstr(r.out, "\"entries\":[{\"id\":\"1795341600000-0\""),
              "%s", r.out);
    run_free(&r);

    stx(&r, "tail", "timed", "--from", "@1795341601000", "--limit", "1", NULL);
    expect_out(&r, "1795341601000-0 n=2\n");
    run_free(&r);
    stx(&r, "tail", "timed", "--from", "beginning", "--count", "2", NULL);
    expect_out(&r, "1795341600000-0 n=0\n1795341600000-1 n=1\n");
    run_free(&r);
    stx(&r, "tail", "timed", "--from", "end", "--block-ms", "50", NULL);
    expect_out(&r, "");
    run_free(&r);
    stx(&r, "tail", "timed", "--limit", "1", "--count", "1", NULL);
    expect_fail(&r, 2, "tail", "--count is the old name of --limit");
    run_free(&r);
    stx(&r, "tail", "timed", "--from", "soon", NULL);
    expect_fail(&r, 2, "tail", "bad position 'soon' for --from: expected " STX_POSITION_GRAMMAR);
    run_free(&r);

    /* reset: --json echoes the position as given and the id it resolved. */
    stx(&r, "reset", "orders", "stock", "--to", "@4", "--yes", "--json", NULL);
    expect_json(&r);
    cr_assert_str_eq(r.out, "{\"stream\":\"orders\",\"group\":\"stock\",\"to\":\"@4\","
                            "\"to_id\":\"3-18446744073709551615\",\"state_cleared\":false,"
                            "\"reemit\":false}\n");
    run_free(&r);
    stx(&r, "reset", "orders", "stock", "--to", "2", "--yes", NULL);
    expect_out(&r, "group 'stock' of stream 'orders' reset to 2 (resumes after "
                   "2-18446744073709551615)\n");
    run_free(&r);
    stx(&r, "reset", "orders", "stock", "--to", "$", "--yes", "--json", NULL);
    cr_assert(strstr(r.out, "\"to\":\"$\",\"to_id\":\"5-0\","), "%s", r.out);
    run_free(&r);
    /* An hour ago: before no entry of 1970, so after all of them. */
    stx(&r, "reset", "orders", "stock", "--to", "1h", "--yes", "--json", NULL);
    expect_json(&r);
    cr_assert(strstr(r.out, "\"to\":\"1h\",\"to_id\":\"17"), "%s", r.out);
    run_free(&r);
    stx(&r, "reset", "orders", "stock", "--to", "-", "--yes", NULL);
    expect_out(&r, "group 'stock' of stream 'orders' reset to -\n");
    run_free(&r);
    stx(&r, "--json", "reset", "orders", "stock", "--to", "never", "--yes", NULL);
    expect_fail_json(&r, 2, "reset", "usage", "bad position 'never' for --to: expected beginning");
    run_free(&r);
    /* The library takes the same grammar. */
    stx_config *conf = stx_config_new();
    char err[256];
    cr_assert_eq(stx_config_set(conf, "url", R.url, err, sizeof err), STX_OK);
    stx_client *cl;
    cr_assert_eq(stx_client_new(&cl, conf), STX_OK);
    stx_config_free(conf);
    cr_assert_eq(stx_group_reset(cl, "orders", "stock", "2026-11-22T10:00:00Z", 0), STX_OK);
    cr_assert_eq(stx_group_reset(cl, "orders", "stock", "30m", 0), STX_OK);
    cr_assert_eq(stx_group_reset(cl, "orders", "stock", "yesterday", 0), STX_EINVALID_CURSOR);
    cr_assert(strstr(stx_client_errmsg(cl), "bad position 'yesterday': expected " STX_POSITION_GRAMMAR),
              "%s", stx_client_errmsg(cl));
    stx_client_free(cl);
    redisFree(c);
}

/* A missing stream, group or dead letter is exit 3 with one wording. */
Test(cli, not_found_is_exit_3_everywhere)
{
    redisContext *c = test_redis_connect(&R);
    orders(c);
    run r;
    stx(&r, "dlq", "list", "nosuch", "stock", NULL);
    expect_fail(&r, 3, "dlq list", "stream 'nosuch' has no group 'stock'");
    run_free(&r);
    stx(&r, "dlq", "list", "orders", "slaes", NULL);
    expect_fail(&r, 3, "dlq list", "stream 'orders' has no group 'slaes'");
    run_free(&r);
    stx(&r, "dlq", "redrive", "orders", "slaes", NULL);
    expect_fail(&r, 3, "dlq redrive", "stream 'orders' has no group 'slaes'");
    run_free(&r);
    stx(&r, "dlq", "redrive", "orders", "stock", "1-1", NULL);
    expect_fail(&r, 3, "dlq redrive", "stream 'orders' group 'stock' has no dead letter '1-1'; "
                                      "nothing moved");
    run_free(&r);
    stx(&r, "reset", "orders", "slaes", "--to", "end", "--yes", NULL);
    expect_fail(&r, 3, "reset", "stream 'orders' has no group 'slaes'");
    run_free(&r);
    stx(&r, "state", "dump", "orders", "slaes", NULL);
    expect_fail(&r, 3, "state dump", "stream 'orders' has no group 'slaes'");
    run_free(&r);
    stx(&r, "tail", "nosuch", NULL);
    expect_fail(&r, 3, "tail", "stream 'nosuch' does not exist");
    run_free(&r);
    stx(&r, "tail", "nosuch", "--json", NULL);
    expect_fail_json(&r, 3, "tail", "not_found", "stream 'nosuch' does not exist");
    run_free(&r);
    /* --wait: a stream that is not there yet is waited for. */
    stx(&r, "tail", "nosuch", "--wait", "--block-ms", "50", NULL);
    expect_out(&r, "");
    run_free(&r);
    redisFree(c);
}

/* Lists show 100 rows unless --limit says otherwise. */
Test(cli, lists_default_to_100_rows)
{
    redisContext *c = test_redis_connect(&R);
    orders(c);
    char dlq[256];
    cr_assert(stx_key_name(dlq, sizeof dlq, "orders", "stock", "dlq") > 0);
    for (int i = 1; i <= 130; i++)
        freeReplyObject(test_cmd(c, "XADD %s %d-0 stx.fields 1 k v", dlq, i));
    freeReplyObject(test_cmd(c, "XGROUP CREATE orders many 0"));
    for (int i = 0; i < 130; i++)
        freeReplyObject(test_cmd(c, "XADD orders * n %d", i));
    freeReplyObject(test_cmd(c, "XREADGROUP GROUP many c1 STREAMS orders >"));
    run r;
    stx(&r, "dlq", "list", "orders", "stock", NULL);
    expect_ok(&r);
    cr_assert_eq(count_lines(r.out), 101, "%s", r.out); /* the head and 100 rows */
    run_free(&r);
    stx(&r, "dlq", "list", "orders", "stock", "--limit", "120", NULL);
    cr_assert_eq(count_lines(r.out), 121);
    run_free(&r);
    stx(&r, "pending", "orders", "many", "--json", NULL);
    expect_json(&r);
    cr_assert(strstr(r.out, "\"count\":135,"), "%s", r.out);
    size_t entries = 0;
    for (const char *p = strstr(r.out, "\"entries\""); (p = strstr(p, "\"idle_ms\"")); p++)
        entries++;
    cr_assert_eq(entries, 100);
    run_free(&r);
    redisFree(c);
}

Test(cli, version_help_and_missing_words)
{
    char expected[128];
    snprintf(expected, sizeof expected, "stx %d.%d.%d\nstreamtx library %s\n", STX_VERSION_MAJOR,
             STX_VERSION_MINOR, STX_VERSION_PATCH, stx_version());
    run r;
    stx(&r, "--version", NULL);
    expect_out(&r, expected);
    run_free(&r);
    stx(&r, "version", NULL);
    expect_out(&r, expected);
    run_free(&r);
    stx(&r, "help", NULL);
    expect_ok(&r);
    cr_assert(starts_with(r.out, "usage: stx ") && strstr(r.out, "7  declined") &&
                  strstr(r.out, "Positions (where reset, tail and replay start or stop)"),
              "%s", r.out);
    run_free(&r);
    stx(&r, "help", "tail", NULL);
    expect_ok(&r);
    cr_assert(starts_with(r.out, "usage: stx tail STREAM") && strstr(r.out, "--count N") &&
                  strstr(r.out, "deprecated"),
              "%s", r.out);
    run_free(&r);
    stx(&r, "help", "dlq", "list", NULL);
    expect_ok(&r);
    cr_assert(strstr(r.out, "--limit N   list at most N entries (default 100)"), "%s", r.out);
    run_free(&r);
    stx(&r, "help", "frobnicate", NULL);
    expect_fail(&r, 2, "help", "unknown command 'frobnicate'");
    run_free(&r);
    stx(&r, "dlq", "list", "orders", NULL);
    expect_fail(&r, 2, "dlq list", "missing argument GROUP (see stx dlq list --help)");
    run_free(&r);
    stx(&r, "reset", NULL);
    expect_fail(&r, 2, "reset", "missing argument STREAM");
    run_free(&r);
    stx(&r, "group", "delete", "orders", NULL);
    expect_fail(&r, 2, "group delete", "missing argument GROUP");
    run_free(&r);
    stx(&r, "--json", "info", NULL);
    expect_fail_json(&r, 2, "info", "usage", "missing argument STREAM");
    run_free(&r);
}

/* The connection failure is said once; health --json stays JSON. */
Test(cli, unreachable_server_said_once_and_as_json)
{
    const char *info[] = {"--url", "redis://127.0.0.1:1", "info", "orders", NULL};
    run r;
    run_argv(&r, NULL, info);
    expect_fail(&r, 1, "info", "cannot connect to 127.0.0.1:1: ");
    cr_assert_null(strstr(r.err + 16, "cannot connect"), "%s", r.err);
    cr_assert_null(strstr(r.err, "connect: "), "%s", r.err);
    run_free(&r);
    const char *health[] = {"--url", "redis://127.0.0.1:1", "health", "--json", NULL};
    run_argv(&r, NULL, health);
    cr_assert_eq(r.code, 1);
    cr_assert(json_valid(r.out), "%s", r.out);
    cr_assert(starts_with(r.out, "{\"healthy\":false,\"checks\":[{\"check\":\"connect\",\"status\":"
                                 "\"fail\",\"detail\":\"cannot connect to 127.0.0.1:1: "),
              "%s", r.out);
    cr_assert(starts_with(r.err, "{\"error\":\"cannot connect to 127.0.0.1:1: ") &&
                  strstr(r.err, "\",\"command\":\"health\",\"code\":\"runtime\",\"exit\":1}\n"),
              "%s", r.err);
    run_free(&r);
}

Test(cli, streams_lists_streamtx_groups)
{
    redisContext *c = test_redis_connect(&R);
    run r;
    stx(&r, "streams", NULL);
    expect_out(&r, "");
    run_free(&r);
    orders(c);
    freeReplyObject(test_cmd(c, "XADD orders 6-0 k d sku apple"));
    freeReplyObject(test_cmd(c, "XADD plain 1-0 a 1"));
    freeReplyObject(test_cmd(c, "XGROUP CREATE plain g 0"));
    freeReplyObject(test_cmd(c, "XADD billing 1-0 k a"));
    process_all("billing", "invoices");
    stx(&r, "streams", NULL);
    expect_out(&r, "STREAM   GROUP     OFFSET  LAG  PENDING  DLQ\n"
                   "billing  invoices  1-0     0    0        0\n"
                   "orders   stock     5-0     1    0        0\n");
    run_free(&r);
    stx(&r, "streams", "--json", NULL);
    expect_json(&r);
    cr_assert_str_eq(r.out, "[{\"stream\":\"billing\",\"group\":\"invoices\",\"offset\":\"1-0\","
                            "\"lag\":0,\"pending\":0,\"dlq_length\":0},"
                            "{\"stream\":\"orders\",\"group\":\"stock\",\"offset\":\"5-0\","
                            "\"lag\":1,\"pending\":0,\"dlq_length\":0}]\n");
    run_free(&r);
    redisFree(c);
}

Test(cli, group_delete_removes_every_key)
{
    redisContext *c = test_redis_connect(&R);
    for (int i = 1; i <= 3; i++)
        freeReplyObject(test_cmd(c, "XADD orders %d-0 k %s sku apple", i, i == 2 ? "b" : "a"));
    process_with("orders", "stock", fail_b_handler);
    char keys[4][256];
    static const char *const kinds[] = {"meta", "state", "dlq", "attempts"};
    for (int k = 0; k < 4; k++)
        cr_assert(stx_key_name(keys[k], sizeof keys[k], "orders", "stock", kinds[k]) > 0);
    freeReplyObject(test_cmd(c, "HSET %s 9-0 1", keys[3]));
    cr_assert_eq(test_cmd_int(c, "EXISTS %s %s %s %s", keys[0], keys[1], keys[2], keys[3]), 4);

    run r;
    stx(&r, "group", "delete", "orders", "stock", NULL);
    expect_fail(&r, 2, "group delete", "refusing to delete without --yes");
    run_free(&r);
    const char *no[] = {"group", "delete", "orders", "stock", NULL};
    run_argv_tty(&r, "n\n", 1, no);
    cr_assert_eq(r.code, 7, "exit %d: %s", r.code, r.err);
    cr_assert(starts_with(r.err, "Delete group 'stock' of stream 'orders' with its offsets, state "
                                 "and dead letters? [y/N] "),
              "%s", r.err);
    cr_assert(strstr(r.err, "stx: group delete: not confirmed; nothing changed\n"), "%s", r.err);
    run_free(&r);
    cr_assert_eq(test_cmd_int(c, "EXISTS %s %s %s %s", keys[0], keys[1], keys[2], keys[3]), 4);

    stx(&r, "group", "delete", "orders", "stock", "--yes", NULL);
    expect_out(&r, "deleted group 'stock' of stream 'orders' and 4 of its keys\n");
    run_free(&r);
    cr_assert_eq(test_cmd_int(c, "EXISTS %s %s %s %s", keys[0], keys[1], keys[2], keys[3]), 0);
    cr_assert_eq(test_cmd_int(c, "XLEN orders"), 3, "the stream stays");
    stx(&r, "info", "orders", "--json", NULL);
    cr_assert(strstr(r.out, "\"groups\":[]"), "%s", r.out);
    run_free(&r);
    stx(&r, "group", "delete", "orders", "stock", "--yes", NULL);
    expect_fail(&r, 3, "group delete", "stream 'orders' has no group 'stock'");
    run_free(&r);

    /* Keys left behind by a group whose stream was deleted still go; a
     * plain group goes too. */
    freeReplyObject(test_cmd(c, "HSET %s offset 1-0", keys[0]));
    stx(&r, "group", "delete", "gone", "stock", "--yes", NULL);
    expect_fail(&r, 3, "group delete", "stream 'gone' has no group 'stock'");
    run_free(&r);
    stx(&r, "group", "delete", "orders", "stock", "--yes", "--json", NULL);
    expect_out(&r, "{\"stream\":\"orders\",\"group\":\"stock\",\"deleted_keys\":1}\n");
    run_free(&r);
    freeReplyObject(test_cmd(c, "XGROUP CREATE orders plain 0"));
    stx(&r, "group", "delete", "orders", "plain", "--yes", NULL);
    expect_out(&r, "deleted group 'plain' of stream 'orders' and 0 of its keys\n");
    run_free(&r);
    freeReplyObject(test_cmd(c, "SET str x"));
    stx(&r, "group", "delete", "str", "g", "--yes", NULL);
    expect_fail(&r, 4, "group delete", "key 'str' is not a stream");
    run_free(&r);
    redisFree(c);
}

/* completions/stx.bash, sourced by bash: commands, subcommands, options
 * and (from the server) streams and groups. */
static char *complete(const char *line)
{
    char cmd[2048];
    snprintf(cmd, sizeof cmd,
             "PATH=%.400s:$PATH STX_URL='%s' bash -c 'source %s/completions/stx.bash; "
             "COMP_WORDS=(%s); COMP_CWORD=$((${#COMP_WORDS[@]} - 1)); "
             "[[ \"%s\" == *\" \" ]] && { COMP_WORDS+=(\"\"); COMP_CWORD=$((COMP_CWORD + 1)); }; "
             "_stx; echo \"${COMPREPLY[*]}\"'",
             STX_CLI_PATH, R.url, STX_SOURCE_DIR, line, line);
    /* The tool's directory on PATH, as an installed stx would be. */
    char *slash = strstr(cmd, "/stx:$PATH");
    cr_assert(slash);
    memmove(slash, slash + 4, strlen(slash + 4) + 1);
    FILE *f = popen(cmd, "r");
    cr_assert(f);
    char *out = calloc(1, 4096);
    cr_assert(out);
    size_t n = fread(out, 1, 4095, f);
    out[n] = '\0';
    cr_assert_eq(pclose(f), 0, "%s", cmd);
    return out;
}

Test(cli, bash_completion)
{
    redisContext *c = test_redis_connect(&R);
    orders(c);
    static const char *const cases[][2] = {
        {"stx re", "replay reset\n"},
        {"stx dlq ", "list redrive\n"},
        {"stx group ", "delete\n"},
        {"stx tail orders --", "--from --limit --count --block-ms --wait --json --help --url\n"},
        {"stx reset orders stock --to ", "beginning end - $ 0 1h 30m 1d\n"},
        {"stx pending ", "orders\n"},
        {"stx pending orders ", "stock\n"},
        {"stx help st", "streams state\n"},
    };
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        char *out = complete(cases[i][0]);
        cr_assert_str_eq(out, cases[i][1], "[%s]", cases[i][0]);
        free(out);
    }
    redisFree(c);
}
