/* stx pending STREAM GROUP: XPENDING summary and entries. */
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

int cmd_pending(cli *c, int argc, char **argv)
{
    cli_opt opts[] = {{"--limit", 1, NULL}};
    int npos, rc;
    long long limit = CLI_LIST_LIMIT;
    if ((rc = cli_parse(c, argc, argv, opts, 1, 2, 2, &npos, help)) != 0)
        return rc;
    if (opts[0].value && (rc = cli_opt_ll(c, &opts[0], 1, &limit)) != 0)
        return rc;
    const char *stream = argv[0], *group = argv[1];
    if ((rc = cli_connect(c)) != 0)
        return rc;

    stx_pending *p;
    rc = stx_pending_get(c->client, stream, group, (size_t)limit, &p);
    if (rc == STX_ENOGROUP)
        return cli_fail_nogroup(c, stream, group);
    if (rc == STX_EWRONGTYPE)
        return cli_fail(c, CLI_EXIT_WRONGTYPE, "key '%s' is not a stream", stream);
    if (rc != STX_OK)
        return cli_fail_stx(c, rc, NULL);
    const char *min_id = p->min_id[0] ? p->min_id : NULL;
    const char *max_id = p->max_id[0] ? p->max_id : NULL;

    if (c->json) {
        jw w;
        jw_init(&w);
        jw_obj(&w);
        jw_key(&w, "stream");
        jw_str(&w, stream);
        jw_key(&w, "group");
        jw_str(&w, group);
        jw_key(&w, "count");
        jw_i64(&w, p->count);
        jw_key(&w, "min_id");
        jw_str(&w, min_id);
        jw_key(&w, "max_id");
        jw_str(&w, max_id);
        jw_key(&w, "consumers");
        jw_arr(&w);
        for (size_t i = 0; i < p->nconsumers; i++) {
            jw_obj(&w);
            jw_key(&w, "name");
            jw_strn(&w, p->consumers[i].name, p->consumers[i].name_len);
            jw_key(&w, "pending");
            jw_i64(&w, p->consumers[i].pending);
            jw_obj_end(&w);
        }
        jw_arr_end(&w);
        jw_key(&w, "entries");
        jw_arr(&w);
        for (size_t i = 0; i < p->nentries; i++) {
            const stx_pending_entry *e = &p->entries[i];
            jw_obj(&w);
            jw_key(&w, "id");
            jw_str(&w, e->id);
            jw_key(&w, "consumer");
            jw_strn(&w, e->consumer, e->consumer_len);
            jw_key(&w, "idle_ms");
            jw_i64(&w, e->idle_ms);
            jw_key(&w, "deliveries");
            jw_i64(&w, e->deliveries);
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
        tbl_cellf(&t, "%lld", p->count);
        tbl_cell(&t, "min-id");
        tbl_cell(&t, min_id ? min_id : "-");
        tbl_cell(&t, "max-id");
        tbl_cell(&t, max_id ? max_id : "-");
        tbl_print(&t, stdout);
        tbl_free(&t);
        if (p->nconsumers > 0) {
            fputc('\n', stdout);
            tbl_init(&t, 2);
            tbl_cell(&t, "CONSUMER");
            tbl_cell(&t, "PENDING");
            for (size_t i = 0; i < p->nconsumers; i++) {
                tbl_celln(&t, p->consumers[i].name, p->consumers[i].name_len);
                tbl_cellf(&t, "%lld", p->consumers[i].pending);
            }
            tbl_print(&t, stdout);
            tbl_free(&t);
        }
        if (p->nentries > 0) {
            fputc('\n', stdout);
            tbl_init(&t, 4);
            tbl_cell(&t, "ID");
            tbl_cell(&t, "CONSUMER");
            tbl_cell(&t, "IDLE-MS");
            tbl_cell(&t, "DELIVERIES");
            for (size_t i = 0; i < p->nentries; i++) {
                const stx_pending_entry *e = &p->entries[i];
                tbl_cell(&t, e->id);
                tbl_celln(&t, e->consumer, e->consumer_len);
                tbl_cellf(&t, "%lld", e->idle_ms);
                tbl_cellf(&t, "%lld", e->deliveries);
            }
            tbl_print(&t, stdout);
            tbl_free(&t);
        }
    }
    stx_pending_free(p);
    return 0;
}
