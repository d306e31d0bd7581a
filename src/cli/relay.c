/* stx relay STREAM GROUP, and the outbox figures stx info shows. */
#include <stdio.h>
#include <string.h>

#include "cli.h"

static const char help[] =
    "usage: stx relay STREAM GROUP [--max N] [--json]\n"
    "\n"
    "Relay the outbox of GROUP of STREAM (every partition's, for a partitioned\n"
    "stream) to the publish targets, as the processor that owns it does after\n"
    "its commits: each entry is appended to its target exactly once (a\n"
    "high-water mark in the target's slot), then deleted from the outbox.\n"
    "Safe while the owner runs.  Stops when the outbox is empty, only entries\n"
    "of refusing targets are left, or --max N entries were relayed.\n"
    "\n"
    "Output: one row per stream: relayed, refused attempts, entries left, age\n"
    "of the oldest left.  --json: {\"streams\":[{\"stream\":..,\"relayed\":..,\n"
    "\"refusals\":..,\"length\":..,\"oldest_age_ms\":..}]}.\n"
    "Exit codes: 3 when the stream does not exist.\n";

static int one(cli *c, const char *stream, const char *group, long long max, table *t, jw *w)
{
    stx_outbox_info oi;
    int rc = stx_outbox_relay(c->client, stream, group, max, &oi);
    if (rc != STX_OK) return cli_fail_stx(c, rc, "relay");
    if (oi.refusals) fprintf(stderr, "stx: %s\n", stx_client_errmsg(c->client));
    if (c->json) {
        jw_obj(w);
        jw_key(w, "stream");
        jw_str(w, stream);
        jw_key(w, "relayed");
        jw_u64(w, oi.relayed);
        jw_key(w, "refusals");
        jw_u64(w, oi.refusals);
        jw_key(w, "length");
        jw_u64(w, oi.length);
        jw_key(w, "oldest_age_ms");
        jw_u64(w, oi.oldest_age_ms);
        jw_obj_end(w);
    } else {
        tbl_cell(t, stream);
        tbl_cellf(t, "%llu", (unsigned long long)oi.relayed);
        tbl_cellf(t, "%llu", (unsigned long long)oi.refusals);
        tbl_cellf(t, "%llu", (unsigned long long)oi.length);
        tbl_cellf(t, "%llums", (unsigned long long)oi.oldest_age_ms);
    }
    return 0;
}

int cmd_relay(cli *c, int argc, char **argv)
{
    cli_opt opts[] = {{"--max", 1, NULL}};
    int npos, rc;
    if ((rc = cli_parse(c, argc, argv, opts, 1, 2, 2, &npos, help)) != 0) return rc;
    const char *stream = argv[0], *group = argv[1];
    long long max = 1LL << 62;
    if (opts[0].value && (rc = cli_opt_ll(c, &opts[0], 1, &max)) != 0) return rc;
    if ((rc = cli_connect(c)) != 0) return rc;
    unsigned n = 0;
    int parted = stx_stream_partitions(c->client, stream, &n) == STX_OK;
    if (!parted) {
        stx_stream_info *info = NULL;
        rc = stx_stream_info_get(c->client, stream, &info);
        stx_stream_info_free(info);
        if (rc != STX_OK) return cli_fail_stream(c, rc, stream);
    }
    table t;
    tbl_init(&t, 5);
    static const char *const heads[] = {"STREAM", "RELAYED", "REFUSED", "LEFT", "OLDEST"};
    for (size_t k = 0; k < 5; k++) tbl_cell(&t, heads[k]);
    jw w;
    jw_init(&w);
    if (c->json) {
        jw_obj(&w);
        jw_key(&w, "streams");
        jw_arr(&w);
    }
    rc = 0;
    for (unsigned i = 0; i < (parted ? n : 1) && rc == 0; i++) {
        char part[1100];
        if (parted) stx_partition_name(part, sizeof part, stream, i);
        else snprintf(part, sizeof part, "%s", stream);
        rc = one(c, part, group, max, &t, &w);
    }
    if (rc == 0) {
        if (c->json) {
            jw_arr_end(&w);
            jw_obj_end(&w);
            jw_print(&w, stdout);
        } else {
            tbl_print(&t, stdout);
        }
    }
    tbl_free(&t);
    jw_free(&w);
    return rc;
}

void cli_outbox_note(cli *c, const char *stream, const char *group, jw *w, table *t)
{
    stx_outbox_info oi;
    if (stx_outbox_relay(c->client, stream, group, 0, &oi) != STX_OK || oi.length == 0) return;
    if (w) {
        jw_key(w, "outbox_length");
        jw_u64(w, oi.length);
        jw_key(w, "outbox_age_ms");
        jw_u64(w, oi.oldest_age_ms);
        return;
    }
    if (t) {
        tbl_cell(t, stream);
        tbl_cell(t, group);
        tbl_cellf(t, "%llu", (unsigned long long)oi.length);
        tbl_cellf(t, "%llums", (unsigned long long)oi.oldest_age_ms);
    }
}
