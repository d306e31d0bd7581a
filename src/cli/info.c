/* stx info STREAM */
#include <string.h>

#include "cli.h"

static const char help[] =
    "usage: stx info STREAM [--json]\n"
    "\n"
    "Describe a stream: its length, first and last entry ids, the highest id\n"
    "ever trimmed or deleted, and for every consumer group: the committed\n"
    "offset (streamtx groups; \"-\" for plain groups), the last delivered id, the\n"
    "lag (entries not yet delivered; \"?\" when Redis cannot tell), the pending\n"
    "entries, and for streamtx groups the epoch, the number of state keys and\n"
    "the dead-letter length.\n"
    "\n"
    "--json prints one object:\n"
    "  {\"stream\":..,\"length\":..,\"first_id\":..,\"last_id\":..,\"max_deleted_id\":..,\n"
    "   \"entries_added\":..,\"groups\":[{\"name\":..,\"streamtx\":true|false,\n"
    "   \"offset\":..|null,\"last_delivered\":..,\"lag\":..|null,\"pending\":..,\n"
    "   \"epoch\":..,\"state_keys\":..,\"dlq_length\":..}]}\n"
    "Ids of an empty stream are null.\n"
    "\n"
    "Exit codes: 3 when the stream does not exist, 4 when the key is not a stream.\n";

static const char *or_dash(const char *s)
{
    return s && *s ? s : "-";
}

static void json_id(jw *w, const char *key, const char *id)
{
    jw_key(w, key);
    if (id && *id)
        jw_str(w, id);
    else
        jw_null(w);
}

int cmd_info(cli *c, int argc, char **argv)
{
    int npos, rc;
    if ((rc = cli_parse(c, argc, argv, NULL, 0, 1, 1, &npos, help)) != 0)
        return rc;
    const char *stream = argv[0];
    if ((rc = cli_connect(c)) != 0)
        return rc;
    stx_stream_info *info = NULL;
    rc = stx_stream_info_get(c->client, stream, &info);
    /* A wrong type may be the stream's or one of a group's keys: the
     * library's message names the key. */
    if (rc == STX_EWRONGTYPE) {
        const char *m = stx_client_errmsg(c->client);
        if (strncmp(m, "stream_info: ", 13) == 0)
            m += 13;
        return cli_fail(c, CLI_EXIT_WRONGTYPE, "%s", m);
    }
    if (rc != STX_OK)
        return cli_fail_stream(c, rc, stream);

    if (c->json) {
        jw w;
        jw_init(&w);
        jw_obj(&w);
        jw_key(&w, "stream");
        jw_str(&w, stream);
        jw_key(&w, "length");
        jw_i64(&w, info->length);
        json_id(&w, "first_id", info->first_id);
        json_id(&w, "last_id", info->last_id);
        json_id(&w, "max_deleted_id", info->max_deleted_id);
        jw_key(&w, "entries_added");
        jw_i64(&w, info->entries_added);
        jw_key(&w, "groups");
        jw_arr(&w);
        for (size_t i = 0; i < info->ngroups; i++) {
            const stx_group_info *g = &info->groups[i];
            jw_obj(&w);
            jw_key(&w, "name");
            jw_str(&w, g->name);
            jw_key(&w, "streamtx");
            jw_bool(&w, g->offset[0] != '\0');
            json_id(&w, "offset", g->offset);
            json_id(&w, "last_delivered", g->last_delivered);
            jw_key(&w, "lag");
            if (g->lag < 0)
                jw_null(&w);
            else
                jw_i64(&w, g->lag);
            jw_key(&w, "pending");
            jw_i64(&w, g->pending);
            jw_key(&w, "epoch");
            jw_u64(&w, g->epoch);
            jw_key(&w, "state_keys");
            jw_i64(&w, g->state_keys);
            jw_key(&w, "dlq_length");
            jw_i64(&w, g->dlq_length);
            jw_obj_end(&w);
        }
        jw_arr_end(&w);
        jw_obj_end(&w);
        jw_print(&w, stdout);
        jw_free(&w);
        stx_stream_info_free(info);
        return 0;
    }

    table t;
    tbl_init(&t, 2);
    tbl_cell(&t, "stream");
    tbl_cell(&t, stream);
    tbl_cell(&t, "length");
    tbl_cellf(&t, "%lld", info->length);
    tbl_cell(&t, "first-id");
    tbl_cell(&t, or_dash(info->first_id));
    tbl_cell(&t, "last-id");
    tbl_cell(&t, or_dash(info->last_id));
    tbl_cell(&t, "max-deleted-id");
    tbl_cell(&t, or_dash(info->max_deleted_id));
    tbl_cell(&t, "entries-added");
    tbl_cellf(&t, "%lld", info->entries_added);
    tbl_cell(&t, "groups");
    tbl_cellf(&t, "%zu", info->ngroups);
    tbl_print(&t, stdout);
    tbl_free(&t);

    if (info->ngroups > 0) {
        fputc('\n', stdout);
        tbl_init(&t, 8);
        static const char *const heads[] = {"GROUP", "OFFSET", "LAST-DELIVERED", "LAG",
                                            "PENDING", "EPOCH", "STATE-KEYS", "DLQ"};
        for (size_t k = 0; k < 8; k++)
            tbl_cell(&t, heads[k]);
        for (size_t i = 0; i < info->ngroups; i++) {
            const stx_group_info *g = &info->groups[i];
            tbl_cell(&t, g->name);
            tbl_cell(&t, or_dash(g->offset));
            tbl_cell(&t, or_dash(g->last_delivered));
            if (g->lag < 0)
                tbl_cell(&t, "?");
            else
                tbl_cellf(&t, "%lld", g->lag);
            tbl_cellf(&t, "%lld", g->pending);
            tbl_cellf(&t, "%llu", g->epoch);
            tbl_cellf(&t, "%lld", g->state_keys);
            tbl_cellf(&t, "%lld", g->dlq_length);
        }
        tbl_print(&t, stdout);
        tbl_free(&t);
    }
    stx_stream_info_free(info);
    return 0;
}
