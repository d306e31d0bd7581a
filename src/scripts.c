/* Script loading and EVALSHA with transparent reload. */
#include "reply.h"
#include "scripts.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "streamtx.h"

extern const char stx_lua_start[];
extern const char stx_lua_retake[];
extern const char stx_lua_read[];
extern const char stx_lua_commit[];
extern const char stx_lua_dlq[];
extern const char stx_lua_redrive[];
extern const char stx_lua_migrate[];
extern const char stx_lua_produce[];
extern const char stx_lua_reset[];
extern const char stx_lua_trim[];
extern const char stx_lua_partitions[];
extern const char stx_lua_lease[];
extern const char stx_lua_member[];
extern const char stx_lua_relay[];
extern const char stx_lua_history[];

void stx_scripts_init(stx_scripts *sc)
{
    memset(sc, 0, sizeof *sc);
    sc->s[STX_SCRIPT_START] = (stx_script){"start", stx_lua_start, ""};
    sc->s[STX_SCRIPT_RETAKE] = (stx_script){"retake", stx_lua_retake, ""};
    sc->s[STX_SCRIPT_READ] = (stx_script){"read", stx_lua_read, ""};
    sc->s[STX_SCRIPT_COMMIT] = (stx_script){"commit", stx_lua_commit, ""};
    sc->s[STX_SCRIPT_DLQ] = (stx_script){"dlq", stx_lua_dlq, ""};
    sc->s[STX_SCRIPT_REDRIVE] = (stx_script){"redrive", stx_lua_redrive, ""};
    sc->s[STX_SCRIPT_MIGRATE] = (stx_script){"migrate", stx_lua_migrate, ""};
    sc->s[STX_SCRIPT_PRODUCE] = (stx_script){"produce", stx_lua_produce, ""};
    sc->s[STX_SCRIPT_RESET] = (stx_script){"reset", stx_lua_reset, ""};
    sc->s[STX_SCRIPT_TRIM] = (stx_script){"trim", stx_lua_trim, ""};
    sc->s[STX_SCRIPT_PARTITIONS] = (stx_script){"partitions", stx_lua_partitions, ""};
    sc->s[STX_SCRIPT_LEASE] = (stx_script){"lease", stx_lua_lease, ""};
    sc->s[STX_SCRIPT_MEMBER] = (stx_script){"member", stx_lua_member, ""};
    sc->s[STX_SCRIPT_RELAY] = (stx_script){"relay", stx_lua_relay, ""};
    sc->s[STX_SCRIPT_HISTORY] = (stx_script){"history", stx_lua_history, ""};
}

void stx_argv_init(stx_argv *a)
{
    memset(a, 0, sizeof *a);
}

void stx_argv_reset(stx_argv *a)
{
    for (size_t i = 0; i < a->n_owned; i++) free(a->owned[i]);
    a->n = 0;
    a->n_owned = 0;
    a->failed = 0;
}

void stx_argv_free(stx_argv *a)
{
    stx_argv_reset(a);
    free(a->v);
    free(a->len);
    free(a->owned);
    memset(a, 0, sizeof *a);
}

static int grow(stx_argv *a)
{
    if (a->n < a->cap) return 0;
    size_t cap = a->cap ? a->cap * 2 : 64;
    const char **v = realloc(a->v, cap * sizeof *v);
    if (!v) return -1;
    a->v = v;
    size_t *len = realloc(a->len, cap * sizeof *len);
    if (!len) return -1;
    a->len = len;
    a->cap = cap;
    return 0;
}

void stx_argv_add_ref(stx_argv *a, const void *p, size_t len)
{
    if (a->failed || grow(a) != 0) {
        a->failed = 1;
        return;
    }
    a->v[a->n] = p;
    a->len[a->n++] = len;
}

void stx_argv_add_copy(stx_argv *a, const void *p, size_t len)
{
    if (a->failed) return;
    if (a->n_owned == a->cap_owned) {
        size_t cap = a->cap_owned ? a->cap_owned * 2 : 16;
        char **o = realloc(a->owned, cap * sizeof *o);
        if (!o) {
            a->failed = 1;
            return;
        }
        a->owned = o;
        a->cap_owned = cap;
    }
    char *copy = malloc(len ? len : 1);
    if (!copy) {
        a->failed = 1;
        return;
    }
    if (len) memcpy(copy, p, len);
    a->owned[a->n_owned++] = copy;
    stx_argv_add_ref(a, copy, len);
}

void stx_argv_add_u64(stx_argv *a, unsigned long long v)
{
    char buf[24];
    int n = snprintf(buf, sizeof buf, "%llu", v);
    stx_argv_add_copy(a, buf, (size_t)n);
}

static int load_one(stx_scripts *sc, stx_conn *c, int which)
{
    stx_script *s = &sc->s[which];
    const char *argv[] = {"SCRIPT", "LOAD", s->source};
    redisReply *r;
    int rc = stx_conn_command(c, &r, 3, argv, NULL);
    if (rc != STX_OK) return rc;
    if (r->type != REDIS_REPLY_STRING || r->len != 40) {
        snprintf(c->err, sizeof c->err, "SCRIPT LOAD %s: unexpected reply", s->name);
        stx_reply_release(r);
        return STX_EREDIS;
    }
    memcpy(s->sha, r->str, 40);
    s->sha[40] = '\0';
    stx_reply_release(r);
    return STX_OK;
}

int stx_scripts_load(stx_scripts *sc, stx_conn *c)
{
    for (int i = 0; i < STX_SCRIPT_COUNT; i++) {
        int rc = load_one(sc, c, i);
        if (rc != STX_OK) return rc;
    }
    return STX_OK;
}

static int fill_head(stx_scripts *sc, int which, stx_argv *a, size_t numkeys)
{
    static const char evalsha[] = "EVALSHA";
    if (a->failed || a->n < 3) return STX_ENOMEM;
    a->v[0] = evalsha;
    a->len[0] = sizeof evalsha - 1;
    a->v[1] = sc->s[which].sha;
    a->len[1] = 40;
    a->len[2] = (size_t)snprintf(a->numkeys, sizeof a->numkeys, "%zu", numkeys);
    a->v[2] = a->numkeys;
    return STX_OK;
}

int stx_script_run(stx_scripts *sc, stx_conn *c, int which, stx_argv *a, size_t numkeys,
                   redisReply **reply)
{
    int rc;
    if (!sc->s[which].sha[0] && (rc = load_one(sc, c, which)) != STX_OK) return rc;
    if ((rc = fill_head(sc, which, a, numkeys)) != STX_OK) return rc;
    for (int attempt = 0;; attempt++) {
        rc = stx_conn_command(c, reply, (int)a->n, a->v, a->len);
        if (rc != STX_ENOTFOUND || attempt > 0) return rc;
        /* NOSCRIPT: the script cache was lost (restart, failover, SCRIPT FLUSH). */
        sc->reloads++;
        if ((rc = load_one(sc, c, which)) != STX_OK) return rc;
    }
}

int stx_script_append(stx_scripts *sc, stx_conn *c, int which, stx_argv *a, size_t numkeys)
{
    int rc;
    if (!sc->s[which].sha[0] && (rc = load_one(sc, c, which)) != STX_OK) return rc;
    if ((rc = fill_head(sc, which, a, numkeys)) != STX_OK) return rc;
    return stx_conn_append(c, (int)a->n, a->v, a->len);
}
