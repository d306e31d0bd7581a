/* The Redis connection. */
#include "connection.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/time.h>

#include "streamtx.h"

static struct timeval tv_of(long ms)
{
    struct timeval tv = {ms / 1000, (ms % 1000) * 1000};
    return tv;
}

void stx_conn_init(stx_conn *c, const stx_url *url, long connect_timeout_ms,
                   long command_timeout_ms)
{
    memset(c, 0, sizeof *c);
    c->url = *url;
    c->connect_timeout_ms = connect_timeout_ms;
    c->command_timeout_ms = command_timeout_ms;
}

void stx_conn_close(stx_conn *c)
{
    if (c->ctx) redisFree(c->ctx);
    c->ctx = NULL;
}

/* A context that failed is not reused (as hiredis documents): close it. */
static int io_failure(stx_conn *c)
{
    int timeout = c->ctx && c->ctx->err == REDIS_ERR_IO &&
                  (errno == EAGAIN || errno == EWOULDBLOCK || strstr(c->ctx->errstr, "temporarily"));
    snprintf(c->err, sizeof c->err, "%s:%d: %s", c->url.host, c->url.port,
             c->ctx && c->ctx->errstr[0] ? c->ctx->errstr : "connection lost");
    stx_conn_close(c);
    return timeout ? STX_ETIMEOUT : STX_ECONN;
}

/* Error replies by their first word.  The ones Redis gives for a command
 * it did not run for now (a write refused, a dataset still loading, a
 * script holding the server, a blocking read cancelled) are
 * STX_EREDIS_REFUSED, which is retriable: nothing was done, the same
 * command may succeed later.  why, when set, goes before Redis's own text
 * in the message: Redis's wording for these does not say what to do. */
static const struct reply_kind {
    const char *prefix;
    int code;
    const char *why;
} reply_kinds[] = {
    {"NOSCRIPT", STX_ENOTFOUND, NULL},
    {"NOGROUP", STX_ENOGROUP, NULL},
    {"WRONGTYPE", STX_EWRONGTYPE, NULL},
    {"NOAUTH", STX_EAUTH, NULL},
    {"WRONGPASS", STX_EAUTH, NULL},
    {"NOPERM", STX_EAUTH, NULL},
    {"OOM", STX_EREDIS_REFUSED, NULL},
    {"MISCONF", STX_EREDIS_REFUSED, NULL},
    {"READONLY", STX_EREDIS_REFUSED, NULL},
    {"NOREPLICAS", STX_EREDIS_REFUSED, "not enough replicas accept writes; retry later"},
    {"LOADING", STX_EREDIS_REFUSED, "Redis is loading its dataset; retry later"},
    {"BUSY", STX_EREDIS_REFUSED, "Redis is busy running a script or function; retry later"},
    {"MASTERDOWN", STX_EREDIS_REFUSED,
     "the replica lost its master and serves no stale data; retry later"},
    {"UNBLOCKED", STX_EREDIS_REFUSED,
     "a blocking read was cancelled (CLIENT UNBLOCK, FLUSHALL or a deleted stream, a role "
     "change); retry"},
};

static const struct reply_kind *reply_kind_of(const char *text)
{
    for (size_t i = 0; i < sizeof reply_kinds / sizeof reply_kinds[0]; i++) {
        size_t n = strlen(reply_kinds[i].prefix);
        if (strncmp(text, reply_kinds[i].prefix, n) == 0 && (text[n] == ' ' || text[n] == '\0'))
            return &reply_kinds[i];
    }
    return NULL;
}

int stx_conn_reply_code(const char *text)
{
    const struct reply_kind *k = text ? reply_kind_of(text) : NULL;
    return k ? k->code : STX_EREDIS;
}

static int check_reply(stx_conn *c, redisReply *r)
{
    if (r->type != REDIS_REPLY_ERROR) return STX_OK;
    const char *text = r->str ? r->str : "error reply";
    const struct reply_kind *k = reply_kind_of(text);
    if (k && k->why) snprintf(c->err, sizeof c->err, "%s (%.900s)", k->why, text);
    else snprintf(c->err, sizeof c->err, "%s", text);
    return k ? k->code : STX_EREDIS;
}

int stx_conn_command(stx_conn *c, redisReply **reply, int argc, const char **argv,
                     const size_t *lens)
{
    *reply = NULL;
    if (!c->ctx) {
        snprintf(c->err, sizeof c->err, "not connected");
        return STX_ECONN;
    }
    redisReply *r = redisCommandArgv(c->ctx, argc, argv, lens);
    if (!r) return io_failure(c);
    int rc = check_reply(c, r);
    if (rc != STX_OK) {
        freeReplyObject(r);
        return rc;
    }
    *reply = r;
    return STX_OK;
}

int stx_conn_command_raw(stx_conn *c, redisReply **reply, int argc, const char **argv,
                         const size_t *lens)
{
    *reply = NULL;
    if (!c->ctx) {
        snprintf(c->err, sizeof c->err, "not connected");
        return STX_ECONN;
    }
    redisReply *r = redisCommandArgv(c->ctx, argc, argv, lens);
    if (!r) return io_failure(c);
    *reply = r;
    return STX_OK;
}

int stx_conn_append(stx_conn *c, int argc, const char **argv, const size_t *lens)
{
    if (!c->ctx) {
        snprintf(c->err, sizeof c->err, "not connected");
        return STX_ECONN;
    }
    if (redisAppendCommandArgv(c->ctx, argc, argv, lens) != REDIS_OK) return io_failure(c);
    return STX_OK;
}

int stx_conn_read(stx_conn *c, redisReply **reply)
{
    void *r = NULL;
    *reply = NULL;
    if (!c->ctx) {
        snprintf(c->err, sizeof c->err, "not connected");
        return STX_ECONN;
    }
    if (redisGetReply(c->ctx, &r) != REDIS_OK || !r) return io_failure(c);
    int rc = check_reply(c, r);
    if (rc != STX_OK) {
        freeReplyObject(r);
        return rc;
    }
    *reply = r;
    return STX_OK;
}

void stx_conn_set_timeout(stx_conn *c, long timeout_ms)
{
    if (c->ctx) redisSetTimeout(c->ctx, tv_of(timeout_ms));
}

char *stx_conn_client_name(const char *name)
{
    char *out = strdup(name);
    for (char *c = out; c && *c; c++)
        if ((unsigned char)*c < 0x21 || (unsigned char)*c > 0x7e) *c = '_';
    return out;
}

static int simple(stx_conn *c, int argc, const char **argv)
{
    redisReply *r;
    int rc = stx_conn_command(c, &r, argc, argv, NULL);
    if (r) freeReplyObject(r);
    return rc;
}

int stx_conn_open(stx_conn *c)
{
    stx_conn_close(c);
    c->ctx = redisConnectWithTimeout(c->url.host, c->url.port, tv_of(c->connect_timeout_ms));
    if (!c->ctx) {
        snprintf(c->err, sizeof c->err, "%s:%d: out of memory", c->url.host, c->url.port);
        return STX_ENOMEM;
    }
    if (c->ctx->err) {
        snprintf(c->err, sizeof c->err, "cannot connect to %s:%d: %s", c->url.host, c->url.port,
                 c->ctx->errstr);
        stx_conn_close(c);
        return STX_ECONN;
    }
    redisSetTimeout(c->ctx, tv_of(c->command_timeout_ms));
    int rc = STX_OK;
    if (c->url.password[0]) {
        const char *auth[] = {"AUTH", c->url.user, c->url.password};
        if (c->url.user[0]) rc = simple(c, 3, auth);
        else {
            auth[1] = c->url.password;
            rc = simple(c, 2, auth);
        }
        if (rc != STX_OK) {
            char why[sizeof c->err];
            memcpy(why, c->err, sizeof why);
            snprintf(c->err, sizeof c->err, "AUTH refused by %s:%d: %.400s", c->url.host,
                     c->url.port, why);
            stx_conn_close(c);
            return rc == STX_ECONN || rc == STX_ETIMEOUT ? rc : STX_EAUTH;
        }
    }
    if (c->name && *c->name) {
        /* Named, so operators (and tests) can find and kill it. */
        char *name = stx_conn_client_name(c->name);
        if (!name) {
            snprintf(c->err, sizeof c->err, "out of memory");
            stx_conn_close(c);
            return STX_ENOMEM;
        }
        const char *setname[] = {"CLIENT", "SETNAME", name};
        rc = simple(c, 3, setname);
        free(name);
        if (rc != STX_OK) {
            stx_conn_close(c);
            return rc;
        }
    }
    if (c->url.db) {
        char db[16];
        snprintf(db, sizeof db, "%d", c->url.db);
        const char *sel[] = {"SELECT", db};
        rc = simple(c, 2, sel);
        if (rc != STX_OK) {
            char why[sizeof c->err];
            memcpy(why, c->err, sizeof why);
            snprintf(c->err, sizeof c->err, "SELECT %d refused: %.400s", c->url.db, why);
            stx_conn_close(c);
            return rc == STX_ECONN || rc == STX_ETIMEOUT ? rc : STX_EAUTH;
        }
    }
    return STX_OK;
}
