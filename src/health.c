/* stx_health_get(): can streamtx work against this server, and how safely?
 * Each check reads what it needs (INFO, CONFIG GET, SCRIPT LOAD) and
 * records ok, warn or fail with what it saw; only a lost connection ends
 * the call, since then no check can say anything. */
#include <stdlib.h>
#include <string.h>

#include "reply.h"
#include "client.h"
#include "scripts.h"

#define NCHECKS 6

static stx_health_check *add(stx_health *h, const char *name, stx_health_status status)
{
    stx_health_check *ch = &h->checks[h->nchecks++];
    ch->name = name;
    ch->status = status;
    ch->detail[0] = '\0';
    return ch;
}

static int lost(int rc)
{
    return rc == STX_ECONN || rc == STX_ETIMEOUT || rc == STX_ENOMEM;
}

/* Value of "field:" in an INFO reply, copied into out; 0 or -1. */
static int info_field(const char *info, const char *field, char *out, size_t cap)
{
    size_t n = strlen(field);
    const char *p = info;
    while (p && *p) {
        if (strncmp(p, field, n) == 0 && p[n] == ':') {
            p += n + 1;
            size_t len = strcspn(p, "\r\n");
            snprintf(out, cap, "%.*s", (int)len, p);
            return 0;
        }
        p = strchr(p, '\n');
        if (p) p++;
    }
    return -1;
}

/* INFO section, field into out.  STX_OK, or a code with the reason in out. */
static int info_get(stx_client *c, const char *section, const char *field, char *out, size_t cap)
{
    const char *argv[] = {"INFO", section};
    redisReply *r;
    int rc = stx_client_command(c, "INFO", &r, 2, argv, NULL);
    if (rc != STX_OK) {
        snprintf(out, cap, "%.*s", (int)(cap ? cap - 1 : 0), c->errmsg);
        return rc;
    }
    if (r->type != REDIS_REPLY_STRING || info_field(r->str, field, out, cap) != 0) {
        snprintf(out, cap, "INFO %s: %s missing", section, field);
        rc = STX_EREDIS;
    }
    stx_reply_release(r);
    return rc;
}

/* CONFIG GET name into out.  STX_OK, or a code with the reason in out. */
static int config_get(stx_client *c, const char *name, char *out, size_t cap)
{
    const char *argv[] = {"CONFIG", "GET", name};
    redisReply *r;
    int rc = stx_client_command(c, "CONFIG GET", &r, 3, argv, NULL);
    if (rc != STX_OK) {
        snprintf(out, cap, "%.*s", (int)(cap ? cap - 1 : 0), c->errmsg);
        return rc;
    }
    if (r->type == REDIS_REPLY_ARRAY && r->elements == 2 &&
        r->element[1]->type == REDIS_REPLY_STRING) {
        snprintf(out, cap, "%s", r->element[1]->str);
    } else {
        snprintf(out, cap, "CONFIG GET %s: no such setting", name);
        rc = STX_EREDIS;
    }
    stx_reply_release(r);
    return rc;
}

static int check_version(stx_client *c, stx_health *h)
{
    char v[256];
    int rc = info_get(c, "server", "redis_version", v, sizeof v);
    if (lost(rc)) return rc;
    if (rc != STX_OK) {
        snprintf(add(h, "version", STX_HEALTH_FAIL)->detail, 512, "%s", v);
        return STX_OK;
    }
    int major = atoi(v);
    snprintf(add(h, "version", major >= 7 ? STX_HEALTH_OK : STX_HEALTH_FAIL)->detail, 512,
             "%s%s", v, major >= 7 ? "" : " (streamtx needs Redis 7 or later)");
    return STX_OK;
}

static int check_role(stx_client *c, stx_health *h)
{
    char v[256];
    int rc = info_get(c, "replication", "role", v, sizeof v);
    if (lost(rc)) return rc;
    if (rc != STX_OK) {
        snprintf(add(h, "role", STX_HEALTH_WARN)->detail, 512, "%s", v);
        return STX_OK;
    }
    int master = strcmp(v, "master") == 0;
    snprintf(add(h, "role", master ? STX_HEALTH_OK : STX_HEALTH_WARN)->detail, 512, "%s%s", v,
             master ? "" : ": a replica refuses writes (produce, commits, reset, trim)");
    return STX_OK;
}

/* SCRIPT LOAD each script here rather than through the client's cache, so
 * that the detail names the one that failed. */
static int check_scripts(stx_client *c, stx_health *h)
{
    stx_scripts sc;
    stx_scripts_init(&sc);
    char names[400] = "";
    size_t used = 0;
    for (int i = 0; i < STX_SCRIPT_COUNT; i++) {
        const char *argv[] = {"SCRIPT", "LOAD", sc.s[i].source};
        redisReply *r;
        int rc = stx_client_command(c, "SCRIPT LOAD", &r, 3, argv, NULL);
        if (lost(rc)) return rc;
        if (rc == STX_OK && (r->type != REDIS_REPLY_STRING || r->len != 40)) rc = STX_EREDIS;
        if (rc != STX_OK) {
            snprintf(add(h, "scripts", STX_HEALTH_FAIL)->detail, 512,
                     "SCRIPT LOAD of %s.lua failed: %.400s", sc.s[i].name,
                     r ? "unexpected reply" : c->errmsg);
            stx_reply_release(r);
            return STX_OK;
        }
        stx_reply_release(r);
        int n = snprintf(names + used, sizeof names - used, "%s%s", i ? ", " : "", sc.s[i].name);
        if (n > 0 && (size_t)n < sizeof names - used) used += (size_t)n;
    }
    snprintf(add(h, "scripts", STX_HEALTH_OK)->detail, 512, "%d loaded: %s", STX_SCRIPT_COUNT,
             names);
    return STX_OK;
}

static int check_persistence(stx_client *c, stx_health *h)
{
    char v[256];
    int aof = 0, rc = config_get(c, "appendonly", v, sizeof v);
    if (lost(rc)) return rc;
    if (rc == STX_OK) {
        aof = strcmp(v, "yes") == 0;
        snprintf(add(h, "appendonly", aof ? STX_HEALTH_OK : STX_HEALTH_WARN)->detail, 512,
                 "%s%s", v,
                 aof ? "" : ": a restart or crash of Redis loses the commits made since the "
                            "last RDB snapshot");
    } else {
        snprintf(add(h, "appendonly", STX_HEALTH_WARN)->detail, 512, "cannot read: %.480s", v);
    }

    rc = config_get(c, "appendfsync", v, sizeof v);
    if (lost(rc)) return rc;
    if (rc == STX_OK) {
        int no = strcmp(v, "no") == 0;
        snprintf(add(h, "appendfsync", aof && no ? STX_HEALTH_WARN : STX_HEALTH_OK)->detail, 512,
                 "%s%s", v,
                 !aof ? " (unused: appendonly is off)"
                 : no ? ": the OS decides when commits reach the disk"
                 : strcmp(v, "everysec") == 0 ? ": a crash can lose up to a second of commits"
                                              : "");
    } else {
        snprintf(add(h, "appendfsync", STX_HEALTH_WARN)->detail, 512, "cannot read: %.480s", v);
    }
    return STX_OK;
}

static int check_eviction(stx_client *c, stx_health *h)
{
    char maxmem[64], v[256];
    int rc = config_get(c, "maxmemory", maxmem, sizeof maxmem);
    if (rc == STX_OK) rc = config_get(c, "maxmemory-policy", v, sizeof v);
    if (lost(rc)) return rc;
    if (rc != STX_OK) {
        snprintf(add(h, "eviction", STX_HEALTH_WARN)->detail, 512,
                 "cannot read maxmemory settings");
        return STX_OK;
    }
    int evicts = strcmp(maxmem, "0") != 0 && strcmp(v, "noeviction") != 0;
    snprintf(add(h, "eviction", evicts ? STX_HEALTH_WARN : STX_HEALTH_OK)->detail, 512,
             "maxmemory %s, %s%s", maxmem, v,
             evicts ? ": offsets and state keys can be evicted; use noeviction" : "");
    return STX_OK;
}

int stx_health_get(stx_client *c, stx_health **out)
{
    if (out) *out = NULL;
    if (!c || !out) return STX_EINVAL;
    int rc = stx_client_ready(c);
    if (rc != STX_OK) return rc;
    stx_health *h = calloc(1, sizeof *h);
    if (h) h->checks = calloc(NCHECKS, sizeof *h->checks);
    if (!h || !h->checks) {
        stx_health_free(h);
        return stx_client_fail(c, STX_ENOMEM, "health: out of memory");
    }
    if ((rc = check_version(c, h)) == STX_OK && (rc = check_role(c, h)) == STX_OK &&
        (rc = check_scripts(c, h)) == STX_OK && (rc = check_persistence(c, h)) == STX_OK)
        rc = check_eviction(c, h);
    if (rc != STX_OK) {
        stx_health_free(h);
        return rc; /* the message is the failed command's */
    }
    h->healthy = 1;
    for (size_t i = 0; i < h->nchecks; i++)
        if (h->checks[i].status == STX_HEALTH_FAIL) h->healthy = 0;
    /* A call that succeeds leaves no message behind (a failed check set one). */
    c->errmsg[0] = '\0';
    *out = h;
    return STX_OK;
}

void stx_health_free(stx_health *h)
{
    if (!h) return;
    free(h->checks);
    free(h);
}
