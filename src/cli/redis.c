/* A plain hiredis connection for the few things streamtx.h has no call for
 * (XPENDING details, INFO, CONFIG GET, loading the library's scripts).
 *
 * This is the one file of the tool that uses the library's internal headers:
 * url.h, so that --url means exactly what it means to the library, and
 * scripts.h, for the names and sources of the library's Lua scripts. */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/time.h>

#include <hiredis/hiredis.h>

#include "cli.h"
#include "scripts.h"
#include "url.h"

#define CONNECT_TIMEOUT_MS 2000
#define COMMAND_TIMEOUT_MS 5000

typedef struct cli_conn {
    redisContext *ctx;
    stx_url url;
    char where[300];
    char err[1024];
} cli_conn;

static struct timeval tv_ms(long ms)
{
    struct timeval tv = {ms / 1000, (ms % 1000) * 1000};
    return tv;
}

static int error_code(const char *text)
{
    static const struct { const char *prefix; int code; } map[] = {
        {"NOGROUP", STX_ENOGROUP},     {"WRONGTYPE", STX_EWRONGTYPE}, {"NOAUTH", STX_EAUTH},
        {"WRONGPASS", STX_EAUTH},      {"NOPERM", STX_EAUTH},         {"OOM", STX_EREDIS_REFUSED},
        {"READONLY", STX_EREDIS_REFUSED}, {"LOADING", STX_EREDIS_REFUSED},
    };
    for (size_t i = 0; i < sizeof map / sizeof map[0]; i++) {
        size_t n = strlen(map[i].prefix);
        if (strncmp(text, map[i].prefix, n) == 0 && (text[n] == ' ' || text[n] == '\0'))
            return map[i].code;
    }
    return STX_EREDIS;
}

int cli_redis_cmd(void *conn, redisReply **reply, const char **errmsg, int argc,
                  const char **argv)
{
    cli_conn *c = conn;
    *reply = NULL;
    *errmsg = c->err;
    if (!c->ctx) {
        snprintf(c->err, sizeof c->err, "%s: not connected", c->where);
        return STX_ECONN;
    }
    redisReply *r = redisCommandArgv(c->ctx, argc, argv, NULL);
    if (!r) {
        int timeout = c->ctx->err == REDIS_ERR_IO && (errno == EAGAIN || errno == EWOULDBLOCK);
        snprintf(c->err, sizeof c->err, "%s: %s", c->where,
                 c->ctx->errstr[0] ? c->ctx->errstr : "connection lost");
        redisFree(c->ctx);
        c->ctx = NULL;
        return timeout ? STX_ETIMEOUT : STX_ECONN;
    }
    if (r->type == REDIS_REPLY_ERROR) {
        snprintf(c->err, sizeof c->err, "%s", r->str ? r->str : "error reply");
        freeReplyObject(r);
        return error_code(c->err);
    }
    *reply = r;
    return STX_OK;
}

static int simple(cli_conn *c, int argc, const char **argv)
{
    redisReply *r;
    const char *msg;
    int rc = cli_redis_cmd(c, &r, &msg, argc, argv);
    freeReplyObject(r);
    return rc;
}

int cli_redis_open(const cli *cl, void **out)
{
    char err[512];
    *out = NULL;
    cli_conn *c = calloc(1, sizeof *c);
    if (!c)
        return cli_fail(cl, CLI_EXIT_RUNTIME, "out of memory");
    if (stx_url_parse(cl->url, &c->url, err, sizeof err) != STX_OK) {
        free(c);
        return cli_fail(cl, CLI_EXIT_USAGE, "bad --url: %s", err);
    }
    snprintf(c->where, sizeof c->where, "%s:%d", c->url.host, c->url.port);
    /* hiredis wants an IPv6 address without its brackets. */
    char host[sizeof c->url.host];
    snprintf(host, sizeof host, "%s", c->url.host);
    size_t hl = strlen(host);
    if (hl >= 2 && host[0] == '[' && host[hl - 1] == ']') {
        memmove(host, host + 1, hl - 2);
        host[hl - 2] = '\0';
    }
    c->ctx = redisConnectWithTimeout(host, c->url.port, tv_ms(CONNECT_TIMEOUT_MS));
    if (!c->ctx || c->ctx->err) {
        int code = cli_fail(cl, CLI_EXIT_RUNTIME, "cannot connect to %s: %s", c->where,
                            c->ctx ? c->ctx->errstr : "out of memory");
        cli_redis_close(c);
        return code;
    }
    redisSetTimeout(c->ctx, tv_ms(cl->command_timeout_ms > 0 ? cl->command_timeout_ms
                                                             : COMMAND_TIMEOUT_MS));
    int rc = STX_OK;
    if (c->url.password[0]) {
        const char *auth[] = {"AUTH", c->url.user, c->url.password};
        if (c->url.user[0]) {
            rc = simple(c, 3, auth);
        } else {
            auth[1] = c->url.password;
            rc = simple(c, 2, auth);
        }
        if (rc != STX_OK) {
            int code = cli_fail(cl, CLI_EXIT_RUNTIME, "AUTH refused by %s: %s", c->where, c->err);
            cli_redis_close(c);
            return code;
        }
    }
    if (c->url.db) {
        char db[16];
        snprintf(db, sizeof db, "%d", c->url.db);
        const char *sel[] = {"SELECT", db};
        if (simple(c, 2, sel) != STX_OK) {
            int code = cli_fail(cl, CLI_EXIT_RUNTIME, "SELECT %d refused: %s", c->url.db, c->err);
            cli_redis_close(c);
            return code;
        }
    }
    *out = c;
    return 0;
}

void cli_redis_close(void *conn)
{
    cli_conn *c = conn;
    if (!c)
        return;
    if (c->ctx)
        redisFree(c->ctx);
    /* The password is not left behind in freed memory. */
    memset(&c->url, 0, sizeof c->url);
    free(c);
}

const char *cli_redis_where(void *conn)
{
    return ((cli_conn *)conn)->where;
}

int cli_redis_load_scripts(void *conn, int *n, jbuf *names, const char **errmsg)
{
    cli_conn *c = conn;
    stx_scripts sc;
    stx_scripts_init(&sc);
    *n = 0;
    *errmsg = c->err;
    for (int i = 0; i < STX_SCRIPT_COUNT; i++) {
        const char *argv[] = {"SCRIPT", "LOAD", sc.s[i].source};
        redisReply *r;
        const char *msg;
        int rc = cli_redis_cmd(c, &r, &msg, 3, argv);
        if (rc != STX_OK) {
            char why[sizeof c->err];
            snprintf(why, sizeof why, "%s", c->err);
            snprintf(c->err, sizeof c->err, "SCRIPT LOAD of %s.lua failed: %.900s",
                     sc.s[i].name, why);
            return rc;
        }
        freeReplyObject(r);
        if (*n)
            jb_puts(names, ", ");
        jb_puts(names, sc.s[i].name);
        (*n)++;
    }
    return STX_OK;
}
