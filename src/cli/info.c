/* stx info STREAM */
#include <stdlib.h>
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
    "the dead-letter length.  Then the live processors of each streamtx group\n"
    "(those whose heartbeat has not expired; see stx top): consumer, host:pid,\n"
    "phase, committed per second over the last heartbeat interval, committed in\n"
    "all, and the age of the heartbeat.\n"
    "\n"
    "--json prints one object:\n"
    "  {\"stream\":..,\"length\":..,\"first_id\":..,\"last_id\":..,\"max_deleted_id\":..,\n"
    "   \"entries_added\":..,\"groups\":[{\"name\":..,\"streamtx\":true|false,\n"
    "   \"offset\":..|null,\"last_delivered\":..,\"lag\":..|null,\"pending\":..,\n"
    "   \"epoch\":..,\"state_keys\":..,\"dlq_length\":..,\"processors\":[..]}]}\n"
    "where each processor is {\"id\":..,\"consumer\":..,\"host\":..,\"pid\":..,\n"
    "\"version\":..,\"phase\":..,\"epoch\":..,\"offset\":..,\"started_at_ms\":..,\"at_ms\":..,\n"
    "\"age_ms\":..,\"interval_ms\":..,\"committed_per_s\":..,\"handled_per_s\":..,\n"
    "\"failures_per_s\":..,\"dead_lettered_per_s\":.., the stx_stats counters,\n"
    "\"interval_commit_us_p50\":..,\"interval_commit_us_p99\":..,\"last_error\":..|null}.\n"
    "Ids of an empty stream are null.\n"
    "\n"
    "\n"
    "For a partitioned stream (stx create), one row per partition and group:\n"
    "partition, node (on a Redis Cluster: host:port of the master of the\n"
    "partition's slot), length, group, offset, lag, pending, epoch, the owner\n"
    "of the partition's lease and the time left on it (Redis' clock).  --json:\n"
    "  {\"stream\":..,\"partitions\":P,\"parts\":[{\"partition\":..,\"stream\":..,\n"
    "   \"node\":..|null,\"length\":..,\n"
    "   \"last_id\":..,\"groups\":[{\"name\":..,\"offset\":..,\"lag\":..,\"pending\":..,\n"
    "   \"epoch\":..,\"owner\":..|null,\"lease_expires_in_ms\":..|null}]}]}\n"
    "  --pg URL   also show the archive (stx archive) in this PostgreSQL\n"
    "             database: its offset, the rows archived and the entries not\n"
    "             yet archived (--json: \"archive\":{\"offset\":..,\"archived\":..,\n"
    "             \"behind\":..|null})\n"
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
    cli_opt opts[] = {{"--pg", 1, NULL}};
    if ((rc = cli_parse(c, argc, argv, opts, 1, 1, 1, &npos, help)) != 0)
        return rc;
#ifndef STX_HAVE_ARCHIVE
    if (opts[0].value)
        return cli_no_archive(c, "--pg");
#endif
    const char *stream = argv[0];
    if ((rc = cli_connect(c)) != 0)
        return rc;
    unsigned nparts = 0;
    if (stx_stream_partitions(c->client, stream, &nparts) == STX_OK)
        return cli_info_partitioned(c, stream, nparts);
#ifdef STX_HAVE_ARCHIVE
    stx_archive_lag lag;
    if (opts[0].value) {
        stx_archive *a;
        if ((rc = cli_archive_open(c, opts[0].value, &a)) != 0)
            return rc;
        rc = stx_archive_lag_get(a, c->client, stream, &lag);
        if (rc != STX_OK)
            rc = cli_archive_fail(c, a, rc);
        stx_archive_close(a);
        if (rc != 0)
            return rc;
    }
#endif
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
    /* The live processors of each streamtx group (none for plain groups). */
    stx_live **live = calloc(info->ngroups + 1, sizeof *live);
    if (!live) {
        stx_stream_info_free(info);
        return cli_fail(c, CLI_EXIT_RUNTIME, "out of memory");
    }
    for (size_t i = 0; i < info->ngroups; i++) {
        if (!info->groups[i].offset[0])
            continue;
        rc = stx_live_get(c->client, stream, info->groups[i].name, &live[i]);
        if (rc != STX_OK) {
            for (size_t k = 0; k < i; k++)
                stx_live_free(live[k]);
            free(live);
            stx_stream_info_free(info);
            return cli_fail_stx(c, rc, "reading the live processors");
        }
    }
    long long now = cli_now_ms();
    rc = 0;

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
            if (g->offset[0]) cli_outbox_note(c, stream, g->name, &w, NULL);
            jw_key(&w, "processors");
            jw_arr(&w);
            for (size_t k = 0; live[i] && k < live[i]->n; k++)
                cli_live_json(&w, &live[i]->procs[k], now);
            jw_arr_end(&w);
            jw_obj_end(&w);
        }
        jw_arr_end(&w);
#ifdef STX_HAVE_ARCHIVE
        if (opts[0].value) {
            jw_key(&w, "archive");
            jw_obj(&w);
            jw_key(&w, "offset");
            jw_str(&w, lag.offset);
            jw_key(&w, "archived");
            jw_i64(&w, lag.archived);
            jw_key(&w, "behind");
            if (lag.behind >= 0)
                jw_i64(&w, lag.behind);
            else
                jw_null(&w);
            jw_obj_end(&w);
        }
#endif
        jw_obj_end(&w);
        jw_print(&w, stdout);
        jw_free(&w);
        goto out;
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
#ifdef STX_HAVE_ARCHIVE
    if (opts[0].value) {
        tbl_cell(&t, "archive-offset");
        tbl_cell(&t, lag.offset);
        tbl_cell(&t, "archive-rows");
        tbl_cellf(&t, "%lld", lag.archived);
        tbl_cell(&t, "archive-behind");
        if (lag.behind >= 0)
            tbl_cellf(&t, "%lld", lag.behind);
        else
            tbl_cell(&t, "?");
    }
#endif
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
        /* Outboxes that are not empty (publishes waiting for the relay). */
        tbl_init(&t, 4);
        static const char *const oheads[] = {"STREAM", "GROUP", "OUTBOX", "OLDEST"};
        for (size_t k = 0; k < 4; k++)
            tbl_cell(&t, oheads[k]);
        for (size_t i = 0; i < info->ngroups; i++)
            if (info->groups[i].offset[0])
                cli_outbox_note(c, stream, info->groups[i].name, NULL, &t);
        if (t.ncells > 4) {
            fputc('\n', stdout);
            tbl_print(&t, stdout);
        }
        tbl_free(&t);
    }
    size_t nlive = 0;
    for (size_t i = 0; i < info->ngroups; i++)
        nlive += live[i] ? live[i]->n : 0;
    if (nlive > 0) {
        fputc('\n', stdout);
        tbl_init(&t, 7);
        static const char *const heads[] = {"GROUP",  "CONSUMER",  "HOST:PID", "PHASE",
                                            "RATE/S", "COMMITTED", "AGE"};
        for (size_t k = 0; k < 7; k++)
            tbl_cell(&t, heads[k]);
        for (size_t i = 0; i < info->ngroups; i++)
            for (size_t k = 0; live[i] && k < live[i]->n; k++) {
                const stx_live_processor *lp = &live[i]->procs[k];
                tbl_cell(&t, info->groups[i].name);
                tbl_cell(&t, lp->consumer);
                tbl_cellf(&t, "%s:%lld", lp->host, lp->pid);
                tbl_cell(&t, lp->phase);
                tbl_cellf(&t, "%.1f", lp->committed_per_s);
                tbl_cellf(&t, "%llu", (unsigned long long)lp->stats.committed);
                tbl_cellf(&t, "%llds", (now - lp->at_ms) / 1000);
            }
        tbl_print(&t, stdout);
        tbl_free(&t);
    }
out:
    for (size_t i = 0; i < info->ngroups; i++)
        stx_live_free(live[i]);
    free(live);
    stx_stream_info_free(info);
    return rc;
}
