/* stx health: can streamtx work against this server, and how safely? */
#include <stdlib.h>
#include <string.h>

#include <hiredis/hiredis.h>

#include "cli.h"

static const char help[] =
    "usage: stx health [--json]\n"
    "\n"
    "Check the server at --url:\n"
    "  version      redis_version (INFO server) must be 7 or later\n"
    "  role         a replica refuses writes (warning)\n"
    "  scripts      the library's Lua scripts load (SCRIPT LOAD)\n"
    "  appendonly   persistence: off is a warning, since a restart then loses\n"
    "               the commits made since the last RDB snapshot\n"
    "  appendfsync  always, everysec or no (no is a warning)\n"
    "  eviction     maxmemory with an evicting policy is a warning: streamtx's\n"
    "               offsets and state could be evicted\n"
    "\n"
    "Output: a table CHECK STATUS DETAIL, STATUS being ok, warn or fail.\n"
    "--json prints {\"healthy\":true|false,\"checks\":[{\"check\":..,\"status\":..,\n"
    "\"detail\":..}]}.\n"
    "Exit codes: 0 healthy (warnings included), 1 when a check failed or the\n"
    "server cannot be reached.\n";

typedef struct check {
    const char *name;
    const char *status; /* "ok", "warn", "fail" */
    char detail[512];
} check;

typedef struct report {
    check items[8];
    size_t n;
} report;

static check *add(report *r, const char *name, const char *status)
{
    check *ch = &r->items[r->n++];
    ch->name = name;
    ch->status = status;
    ch->detail[0] = '\0';
    return ch;
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
        if (p)
            p++;
    }
    return -1;
}

/* CONFIG GET name into out; 0, or -1 with the reason in out. */
static int config_get(void *conn, const char *name, char *out, size_t cap)
{
    const char *argv[] = {"CONFIG", "GET", name};
    redisReply *r;
    const char *msg;
    if (cli_redis_cmd(conn, &r, &msg, 3, argv) != STX_OK) {
        snprintf(out, cap, "%s", msg);
        return -1;
    }
    int rc = -1;
    if (r->type == REDIS_REPLY_ARRAY && r->elements == 2 &&
        r->element[1]->type == REDIS_REPLY_STRING) {
        snprintf(out, cap, "%s", r->element[1]->str);
        rc = 0;
    } else {
        snprintf(out, cap, "no such setting");
    }
    freeReplyObject(r);
    return rc;
}

static int info_section(void *conn, const char *section, const char *field, char *out, size_t cap,
                        const char **err)
{
    const char *argv[] = {"INFO", section};
    redisReply *r;
    if (cli_redis_cmd(conn, &r, err, 2, argv) != STX_OK)
        return -1;
    int rc = -1;
    if (r->type == REDIS_REPLY_STRING)
        rc = info_field(r->str, field, out, cap);
    if (rc != 0)
        *err = "field missing from INFO";
    freeReplyObject(r);
    return rc;
}

int cmd_health(cli *c, int argc, char **argv)
{
    int npos, rc;
    if ((rc = cli_parse(c, argc, argv, NULL, 0, 0, 0, &npos, help)) != 0)
        return rc;
    void *conn;
    if ((rc = cli_redis_open(c, &conn)) != 0)
        return rc;

    report r;
    memset(&r, 0, sizeof r);
    char v[256];
    const char *err;
    check *ch;

    if (info_section(conn, "server", "redis_version", v, sizeof v, &err) == 0) {
        int major = atoi(v);
        ch = add(&r, "version", major >= 7 ? "ok" : "fail");
        snprintf(ch->detail, sizeof ch->detail, "%s%s", v,
                 major >= 7 ? "" : " (streamtx needs Redis 7 or later)");
    } else {
        ch = add(&r, "version", "fail");
        snprintf(ch->detail, sizeof ch->detail, "INFO server: %s", err);
    }

    if (info_section(conn, "replication", "role", v, sizeof v, &err) == 0) {
        int master = strcmp(v, "master") == 0;
        ch = add(&r, "role", master ? "ok" : "warn");
        snprintf(ch->detail, sizeof ch->detail, "%s%s", v,
                 master ? "" : ": a replica refuses writes (produce, commits, reset, trim)");
    } else {
        ch = add(&r, "role", "warn");
        snprintf(ch->detail, sizeof ch->detail, "INFO replication: %s", err);
    }

    int nscripts = 0;
    jbuf names;
    jb_init(&names);
    rc = cli_redis_load_scripts(conn, &nscripts, &names, &err);
    ch = add(&r, "scripts", rc == STX_OK ? "ok" : "fail");
    if (rc == STX_OK)
        snprintf(ch->detail, sizeof ch->detail, "%d loaded: %s", nscripts,
                 names.p ? names.p : "");
    else
        snprintf(ch->detail, sizeof ch->detail, "%s", err);
    jb_free(&names);

    int aof = 0;
    if (config_get(conn, "appendonly", v, sizeof v) == 0) {
        aof = strcmp(v, "yes") == 0;
        ch = add(&r, "appendonly", aof ? "ok" : "warn");
        snprintf(ch->detail, sizeof ch->detail, "%s%s", v,
                 aof ? "" : ": a restart or crash of Redis loses the commits made since the "
                            "last RDB snapshot");
    } else {
        ch = add(&r, "appendonly", "warn");
        snprintf(ch->detail, sizeof ch->detail, "cannot read: %s", v);
    }

    if (config_get(conn, "appendfsync", v, sizeof v) == 0) {
        int no = strcmp(v, "no") == 0;
        ch = add(&r, "appendfsync", aof && no ? "warn" : "ok");
        snprintf(ch->detail, sizeof ch->detail, "%s%s", v,
                 !aof ? " (unused: appendonly is off)"
                 : no ? ": the OS decides when commits reach the disk"
                 : strcmp(v, "everysec") == 0 ? ": a crash can lose up to a second of commits"
                                              : "");
    } else {
        ch = add(&r, "appendfsync", "warn");
        snprintf(ch->detail, sizeof ch->detail, "cannot read: %s", v);
    }

    char maxmem[64];
    if (config_get(conn, "maxmemory", maxmem, sizeof maxmem) == 0 &&
        config_get(conn, "maxmemory-policy", v, sizeof v) == 0) {
        int limited = strcmp(maxmem, "0") != 0;
        int evicts = limited && strcmp(v, "noeviction") != 0;
        ch = add(&r, "eviction", evicts ? "warn" : "ok");
        snprintf(ch->detail, sizeof ch->detail, "maxmemory %s, %s%s", maxmem, v,
                 evicts ? ": offsets and state keys can be evicted; use noeviction" : "");
    } else {
        ch = add(&r, "eviction", "warn");
        snprintf(ch->detail, sizeof ch->detail, "cannot read maxmemory settings");
    }
    cli_redis_close(conn);

    const check *failed = NULL;
    for (size_t i = 0; i < r.n && !failed; i++)
        if (strcmp(r.items[i].status, "fail") == 0)
            failed = &r.items[i];

    if (c->json) {
        jw w;
        jw_init(&w);
        jw_obj(&w);
        jw_key(&w, "healthy");
        jw_bool(&w, failed == NULL);
        jw_key(&w, "checks");
        jw_arr(&w);
        for (size_t i = 0; i < r.n; i++) {
            jw_obj(&w);
            jw_key(&w, "check");
            jw_str(&w, r.items[i].name);
            jw_key(&w, "status");
            jw_str(&w, r.items[i].status);
            jw_key(&w, "detail");
            jw_str(&w, r.items[i].detail);
            jw_obj_end(&w);
        }
        jw_arr_end(&w);
        jw_obj_end(&w);
        jw_print(&w, stdout);
        jw_free(&w);
    } else {
        table t;
        tbl_init(&t, 3);
        tbl_cell(&t, "CHECK");
        tbl_cell(&t, "STATUS");
        tbl_cell(&t, "DETAIL");
        for (size_t i = 0; i < r.n; i++) {
            tbl_cell(&t, r.items[i].name);
            tbl_cell(&t, r.items[i].status);
            tbl_cell(&t, r.items[i].detail);
        }
        tbl_print(&t, stdout);
        tbl_free(&t);
    }
    if (failed)
        return cli_fail(c, CLI_EXIT_RUNTIME, "unhealthy: %s: %s", failed->name, failed->detail);
    return 0;
}
