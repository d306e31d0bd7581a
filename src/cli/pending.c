/* stx pending STREAM GROUP: XPENDING summary and entries. */
#include <stdlib.h>
#include <string.h>

#include <hiredis/hiredis.h>

#include "cli.h"

static const char help[] =
    "usage: stx pending STREAM GROUP [--limit N] [--json]\n"
    "\n"
    "Entries delivered to GROUP and not acknowledged yet: the total, the lowest\n"
    "and highest pending id, the count per consumer, and the entries (oldest\n"
    "first) with their consumer, the milliseconds since their last delivery and\n"
    "the number of deliveries.\n"
    "\n"
    "  --limit N   list at most N entries (default 100)\n"
    "\n"
    "--json prints one object: {\"stream\":..,\"group\":..,\"count\":..,\n"
    "  \"min_id\":..|null,\"max_id\":..|null,\"consumers\":[{\"name\":..,\"pending\":..}],\n"
    "  \"entries\":[{\"id\":..,\"consumer\":..,\"idle_ms\":..,\"deliveries\":..}]}\n"
    "\n"
    "Exit codes: 3 when the stream or the group does not exist, 4 when STREAM is\n"
    "not a stream.\n";

static long long as_ll(const redisReply *r)
{
    if (r->type == REDIS_REPLY_INTEGER)
        return r->integer;
    if (r->type == REDIS_REPLY_STRING)
        return strtoll(r->str, NULL, 10);
    return 0;
}

static const char *as_str(const redisReply *r)
{
    return r->type == REDIS_REPLY_STRING || r->type == REDIS_REPLY_STATUS ? r->str : NULL;
}

/* XPENDING S G: [count, min, max, [[consumer, "n"], ...]] */
static int summary_ok(const redisReply *r)
{
    if (r->type != REDIS_REPLY_ARRAY || r->elements != 4 ||
        r->element[0]->type != REDIS_REPLY_INTEGER)
        return 0;
    const redisReply *cs = r->element[3];
    if (cs->type == REDIS_REPLY_NIL)
        return 1;
    if (cs->type != REDIS_REPLY_ARRAY)
        return 0;
    for (size_t i = 0; i < cs->elements; i++) {
        const redisReply *e = cs->element[i];
        if (e->type != REDIS_REPLY_ARRAY || e->elements != 2 || !as_str(e->element[0]))
            return 0;
    }
    return 1;
}

/* XPENDING S G - + N: [[id, consumer, idle, deliveries], ...] */
static int entries_ok(const redisReply *r)
{
    if (r->type != REDIS_REPLY_ARRAY)
        return 0;
    for (size_t i = 0; i < r->elements; i++) {
        const redisReply *e = r->element[i];
        if (e->type != REDIS_REPLY_ARRAY || e->elements != 4 || !as_str(e->element[0]) ||
            !as_str(e->element[1]))
            return 0;
    }
    return 1;
}

static int fail_redis(cli *c, int rc, const char *msg, const char *stream, const char *group)
{
    if (rc == STX_ENOGROUP)
        return cli_fail(c, CLI_EXIT_NOTFOUND, "stream '%s' or its group '%s' does not exist",
                        stream, group);
    if (rc == STX_EWRONGTYPE)
        return cli_fail(c, CLI_EXIT_WRONGTYPE, "key '%s' is not a stream", stream);
    return cli_fail(c, cli_exit_code(rc), "%s", msg);
}

int cmd_pending(cli *c, int argc, char **argv)
{
    cli_opt opts[] = {{"--limit", 1, NULL}};
    int npos, rc;
    long long limit = 100;
    if ((rc = cli_parse(c, argc, argv, opts, 1, 2, 2, &npos, help)) != 0)
        return rc;
    if (opts[0].value && (rc = cli_opt_ll(c, &opts[0], 1, &limit)) != 0)
        return rc;
    const char *stream = argv[0], *group = argv[1];
    void *conn;
    if ((rc = cli_redis_open(c, &conn)) != 0)
        return rc;

    redisReply *sum = NULL, *ent = NULL;
    const char *msg;
    const char *a1[] = {"XPENDING", stream, group};
    rc = cli_redis_cmd(conn, &sum, &msg, 3, a1);
    if (rc == STX_OK) {
        char n[24];
        snprintf(n, sizeof n, "%lld", limit);
        const char *a2[] = {"XPENDING", stream, group, "-", "+", n};
        rc = cli_redis_cmd(conn, &ent, &msg, 6, a2);
    }
    if (rc != STX_OK) {
        rc = fail_redis(c, rc, msg, stream, group);
        freeReplyObject(sum);
        cli_redis_close(conn);
        return rc;
    }
    if (!summary_ok(sum) || !entries_ok(ent)) {
        freeReplyObject(sum);
        freeReplyObject(ent);
        cli_redis_close(conn);
        return cli_fail(c, CLI_EXIT_RUNTIME, "unexpected XPENDING reply");
    }

    long long count = sum->element[0]->integer;
    const char *min_id = as_str(sum->element[1]), *max_id = as_str(sum->element[2]);
    const redisReply *cons = sum->element[3];
    size_t ncons = cons->type == REDIS_REPLY_ARRAY ? cons->elements : 0;

    if (c->json) {
        jw w;
        jw_init(&w);
        jw_obj(&w);
        jw_key(&w, "stream");
        jw_str(&w, stream);
        jw_key(&w, "group");
        jw_str(&w, group);
        jw_key(&w, "count");
        jw_i64(&w, count);
        jw_key(&w, "min_id");
        jw_str(&w, min_id);
        jw_key(&w, "max_id");
        jw_str(&w, max_id);
        jw_key(&w, "consumers");
        jw_arr(&w);
        for (size_t i = 0; i < ncons; i++) {
            const redisReply *e = cons->element[i];
            jw_obj(&w);
            jw_key(&w, "name");
            jw_strn(&w, e->element[0]->str, e->element[0]->len);
            jw_key(&w, "pending");
            jw_i64(&w, as_ll(e->element[1]));
            jw_obj_end(&w);
        }
        jw_arr_end(&w);
        jw_key(&w, "entries");
        jw_arr(&w);
        for (size_t i = 0; i < ent->elements; i++) {
            const redisReply *e = ent->element[i];
            jw_obj(&w);
            jw_key(&w, "id");
            jw_str(&w, e->element[0]->str);
            jw_key(&w, "consumer");
            jw_strn(&w, e->element[1]->str, e->element[1]->len);
            jw_key(&w, "idle_ms");
            jw_i64(&w, as_ll(e->element[2]));
            jw_key(&w, "deliveries");
            jw_i64(&w, as_ll(e->element[3]));
            jw_obj_end(&w);
        }
        jw_arr_end(&w);
        jw_obj_end(&w);
        jw_print(&w, stdout);
        jw_free(&w);
    } else {
        table t;
        tbl_init(&t, 2);
        tbl_cell(&t, "pending");
        tbl_cellf(&t, "%lld", count);
        tbl_cell(&t, "min-id");
        tbl_cell(&t, min_id ? min_id : "-");
        tbl_cell(&t, "max-id");
        tbl_cell(&t, max_id ? max_id : "-");
        tbl_print(&t, stdout);
        tbl_free(&t);
        if (ncons > 0) {
            fputc('\n', stdout);
            tbl_init(&t, 2);
            tbl_cell(&t, "CONSUMER");
            tbl_cell(&t, "PENDING");
            for (size_t i = 0; i < ncons; i++) {
                const redisReply *e = cons->element[i];
                tbl_celln(&t, e->element[0]->str, e->element[0]->len);
                tbl_cellf(&t, "%lld", as_ll(e->element[1]));
            }
            tbl_print(&t, stdout);
            tbl_free(&t);
        }
        if (ent->elements > 0) {
            fputc('\n', stdout);
            tbl_init(&t, 4);
            tbl_cell(&t, "ID");
            tbl_cell(&t, "CONSUMER");
            tbl_cell(&t, "IDLE-MS");
            tbl_cell(&t, "DELIVERIES");
            for (size_t i = 0; i < ent->elements; i++) {
                const redisReply *e = ent->element[i];
                tbl_cell(&t, e->element[0]->str);
                tbl_celln(&t, e->element[1]->str, e->element[1]->len);
                tbl_cellf(&t, "%lld", as_ll(e->element[2]));
                tbl_cellf(&t, "%lld", as_ll(e->element[3]));
            }
            tbl_print(&t, stdout);
            tbl_free(&t);
        }
    }
    freeReplyObject(sum);
    freeReplyObject(ent);
    cli_redis_close(conn);
    return 0;
}
