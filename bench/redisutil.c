/* The bench's own connection to Redis: setup, checks and figures.  Any
 * failure ends the bench: a number measured after an error means nothing. */
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/time.h>

#include "bench.h"

redisContext *bench_connect(const bench_env *env)
{
    struct timeval tv = {5, 0};
    redisContext *c = redisConnectWithTimeout(env->host, env->port, tv);

    if (c == NULL || c->err)
        bench_die("cannot connect to %s:%d: %s", env->host, env->port,
                  c != NULL ? c->errstr : "out of memory");
    /* Loading a million keys or a long pipeline can take a while. */
    tv.tv_sec = 120;
    redisSetTimeout(c, tv);
    return c;
}

static redisReply *checked(redisContext *c, redisReply *r, const char *what)
{
    if (r == NULL)
        bench_die("%s: %s", what, c->errstr[0] ? c->errstr : "connection lost");
    if (r->type == REDIS_REPLY_ERROR)
        bench_die("%s: %s", what, r->str);
    return r;
}

redisReply *bench_command(redisContext *c, const char *fmt, ...)
{
    va_list ap;
    redisReply *r;

    va_start(ap, fmt);
    r = redisvCommand(c, fmt, ap);
    va_end(ap);
    return checked(c, r, fmt);
}

redisReply *bench_command_argv(redisContext *c, int argc, const char **argv, const size_t *lens)
{
    return checked(c, redisCommandArgv(c, argc, argv, lens), argv[0]);
}

redisReply *bench_get_reply(redisContext *c)
{
    void *r = NULL;

    if (redisGetReply(c, &r) != REDIS_OK)
        r = NULL;
    return checked(c, r, "pipelined reply");
}

void bench_flushall(redisContext *c)
{
    freeReplyObject(bench_command(c, "FLUSHALL"));
}

double bench_redis_cpu_s(redisContext *c)
{
    redisReply *r = bench_command(c, "INFO cpu");
    double user = 0, sys = 0;
    const char *u, *s;

    if (r->type != REDIS_REPLY_STRING)
        bench_die("INFO cpu: unexpected reply");
    u = strstr(r->str, "used_cpu_user:");
    s = strstr(r->str, "used_cpu_sys:");
    if (u != NULL)
        user = strtod(u + strlen("used_cpu_user:"), NULL);
    if (s != NULL)
        sys = strtod(s + strlen("used_cpu_sys:"), NULL);
    freeReplyObject(r);
    return user + sys;
}

long long bench_integer(redisContext *c, const char *fmt, const char *key)
{
    redisReply *r = bench_command(c, fmt, key);
    long long v;

    if (r->type != REDIS_REPLY_INTEGER)
        bench_die("%s %s: not an integer reply", fmt, key);
    v = r->integer;
    freeReplyObject(r);
    return v;
}

void bench_key(char *buf, size_t cap, const char *stream, const char *group, const char *kind)
{
    int n = stx_key_name(buf, cap, stream, group, kind);

    if (n < 0)
        bench_die("stx_key_name(%s, %s, %s): %s", stream, group, kind, stx_strerror(n));
}

void bench_resetstat(redisContext *c)
{
    freeReplyObject(bench_command(c, "CONFIG RESETSTAT"));
}

/* Commands the bench itself sends around a run; not part of the work. */
static int is_bench_command(const char *name, size_t len)
{
    static const char *const skip[] = {"info", "config|resetstat", "config", "script|load",
                                       "script", "flushall", "xgroup|create", "xlen", "hlen",
                                       "hgetall", NULL};

    for (int i = 0; skip[i] != NULL; i++)
        if (strlen(skip[i]) == len && memcmp(skip[i], name, len) == 0)
            return 1;
    return 0;
}

void cmdstats_collect(redisContext *c, cmdstats *cs)
{
    redisReply *r = bench_command(c, "INFO commandstats");
    const char *line = r->str;

    if (r->type != REDIS_REPLY_STRING)
        bench_die("INFO commandstats: unexpected reply");
    while ((line = strstr(line, "cmdstat_")) != NULL) {
        const char *name = line + 8, *colon = strchr(name, ':'), *u;
        size_t len, i;

        if (colon == NULL)
            break;
        len = (size_t)(colon - name);
        u = strstr(colon, "usec=");
        line = colon;
        if (u == NULL || is_bench_command(name, len) || len >= sizeof cs->name[0])
            continue;
        for (i = 0; i < cs->n; i++)
            if (strlen(cs->name[i]) == len && memcmp(cs->name[i], name, len) == 0)
                break;
        if (i == cs->n) {
            if (cs->n == BENCH_MAX_CMDS)
                continue;
            memcpy(cs->name[i], name, len);
            cs->name[i][len] = '\0';
            cs->usec[i] = 0;
            cs->n++;
        }
        cs->usec[i] += strtod(u + 5, NULL);
    }
    freeReplyObject(r);
}

static int in_list(const char *list, const char *name)
{
    size_t len = strlen(name);

    for (const char *w = list; w != NULL && *w != '\0';) {
        size_t n = strcspn(w, " ");

        if (n == len && memcmp(w, name, len) == 0)
            return 1;
        w += n;
        w += strspn(w, " ");
    }
    return 0;
}

void cmdstats_print(const cmdstats *cs, const char *what, const char *suffix, long msgs,
                    const char *direct)
{
    double script_us = 0, inner_us = 0;
    char text[1024] = "", key[160];
    size_t used = 0;

    for (size_t i = 0; i < cs->n; i++) {
        double usec = cs->usec[i] / (double)msgs;

        if (strcmp(cs->name[i], "evalsha") == 0 || strcmp(cs->name[i], "eval") == 0)
            script_us += usec;
        else if (!in_list(direct, cs->name[i]))
            inner_us += usec;
        snprintf(key, sizeof key, "%s_redis_us_per_msg_%s%s", what, cs->name[i], suffix);
        for (char *k = key; *k; k++)
            if (*k == '|')
                *k = '_';
        bench_kv(key, "%.2f", usec);
        if (used < sizeof text - 64)
            used += (size_t)snprintf(text + used, sizeof text - used, " %s %.2f", cs->name[i],
                                     usec);
    }
    bench_note("  Redis time per message by command (us):%s", text);
    if (script_us > 0) {
        /* A script's time includes the commands it calls (counted on their
         * own lines too); the rest is the interpreter and its arguments. */
        snprintf(key, sizeof key, "%s_redis_us_per_msg_script_only%s", what, suffix);
        bench_kv(key, "%.2f", script_us - inner_us);
        bench_note("  of the scripts' %.2f us, %.2f us are Lua itself (not inside a command)",
                   script_us, script_us - inner_us);
    }
}
