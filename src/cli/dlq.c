/* stx dlq list STREAM GROUP, stx dlq redrive STREAM GROUP [ID...] */
#include <stdint.h>
#include <stdio.h>
#include <string.h>
#include <time.h>

#include "cli.h"

#define PAGE 1000

static const char help[] =
    "usage: stx dlq list STREAM GROUP [--limit N] [--json]\n"
    "       stx dlq redrive STREAM GROUP [ID...] [--json]\n"
    "\n"
    "list: the dead-letter entries of (STREAM, GROUP), oldest first: the DLQ\n"
    "entry id, the source entry id, the attempts, when it failed, the reason,\n"
    "the error, and the original fields.\n"
    "  --limit N   list at most N entries (default 100)\n"
    "--json prints one array of {\"id\":..,\"source_stream\":..,\"group\":..,\n"
    "\"source_id\":..,\"reason\":..,\"error\":..,\"attempts\":N,\"failed_at\":MS,\n"
    "\"fields\":{original fields}}.\n"
    "\n"
    "redrive: move dead-letter entries back to STREAM for another try, each one\n"
    "exactly once: the given DLQ entry ids, or all of them when none is given.\n"
    "Prints the number moved (--json: {\"moved\":N}).\n"
    "\n"
    "Exit codes: 2 for a bad id, 3 when the stream has no such group or (redrive)\n"
    "an ID given is not in the dead-letter stream (then nothing moves), 4 when a\n"
    "key holds another type.\n";

static int is_meta(const char *name, size_t n)
{
    return n > 4 && memcmp(name, "stx.", 4) == 0;
}

static const char *field_or_dash(const stx_msg *m, const char *name)
{
    const char *v = stx_msg_get(m, name, NULL);
    return v && *v ? v : "-";
}

/* Is field i one of the entry's original fields?  A dead-letter entry
 * starts with "stx.fields N" followed by the N original pairs; without
 * that, every field not named stx.* counts as original. */
static int is_original(const stx_msg *m, size_t i)
{
    const char *name, *value;
    size_t nl, vl;
    cli_id n;
    if (stx_msg_field(m, 0, &name, &nl, &value, &vl) == STX_OK && nl == 10 &&
        memcmp(name, "stx.fields", 10) == 0 && cli_parse_id(value, &n) == 0 && !n.has_seq &&
        n.ms < stx_msg_field_count(m))
        return i >= 1 && i <= n.ms;
    if (stx_msg_field(m, i, &name, &nl, &value, &vl) != STX_OK)
        return 0;
    return !is_meta(name, nl);
}

/* A number as a JSON number when it is one, else as a string. */
static void json_num_or_str(jw *w, const char *key, const char *v)
{
    cli_id n;
    jw_key(w, key);
    if (!v)
        jw_null(w);
    else if (cli_parse_id(v, &n) == 0 && !n.has_seq && n.ms <= (uint64_t)INT64_MAX)
        jw_u64(w, n.ms);
    else
        jw_str(w, v);
}

/* failed_at (milliseconds) as an ISO-8601 UTC time. */
static void failed_at_cell(table *t, const stx_msg *m)
{
    const char *v = stx_msg_get(m, "stx.failed_at", NULL);
    cli_id n;
    struct tm tm;
    if (v && cli_parse_id(v, &n) == 0 && !n.has_seq && n.ms < 253402300800000ULL) {
        time_t secs = (time_t)(n.ms / 1000);
        if (gmtime_r(&secs, &tm)) {
            tbl_cellf(t, "%04d-%02d-%02dT%02d:%02d:%02d.%03dZ", tm.tm_year + 1900, tm.tm_mon + 1,
                      tm.tm_mday, tm.tm_hour, tm.tm_min, tm.tm_sec, (int)(n.ms % 1000));
            return;
        }
    }
    tbl_cell(t, v && *v ? v : "-");
}

static void entry_json(jw *w, const stx_msg *m)
{
    static const char *const meta[] = {"source_stream", "group", "source_id", "reason", "error"};
    char name[32];
    jw_obj(w);
    jw_key(w, "id");
    jw_str(w, stx_msg_id(m));
    for (size_t k = 0; k < sizeof meta / sizeof meta[0]; k++) {
        snprintf(name, sizeof name, "stx.%s", meta[k]);
        jw_key(w, meta[k]);
        jw_str(w, stx_msg_get(m, name, NULL));
    }
    json_num_or_str(w, "attempts", stx_msg_get(m, "stx.attempts", NULL));
    json_num_or_str(w, "failed_at", stx_msg_get(m, "stx.failed_at", NULL));
    jw_key(w, "fields");
    jw_obj(w);
    for (size_t i = 0; i < stx_msg_field_count(m); i++) {
        const char *fname, *value;
        size_t nl, vl;
        if (!is_original(m, i) || stx_msg_field(m, i, &fname, &nl, &value, &vl) != STX_OK)
            continue;
        jw_keyn(w, fname, nl);
        jw_strn(w, value, vl);
    }
    jw_obj_end(w);
    jw_obj_end(w);
}

static int dlq_list(cli *c, int argc, char **argv)
{
    cli_opt opts[] = {{"--limit", 1, NULL}};
    int npos, rc;
    long long limit = CLI_LIST_LIMIT;
    if ((rc = cli_parse(c, argc, argv, opts, 1, 2, 2, &npos, help)) != 0)
        return rc;
    if (opts[0].value && (rc = cli_opt_ll(c, &opts[0], 1, &limit)) != 0)
        return rc;
    const char *stream = argv[0], *group = argv[1];
    if ((rc = cli_connect(c)) != 0 || (rc = cli_group_check(c, stream, group)) != 0)
        return rc;

    jw w;
    table t;
    jw_init(&w);
    tbl_init(&t, 7);
    if (c->json) {
        jw_arr(&w);
    } else {
        static const char *const heads[] = {"ID",     "SOURCE-ID", "ATTEMPTS", "FAILED-AT",
                                            "REASON", "ERROR",     "FIELDS"};
        for (size_t k = 0; k < 7; k++)
            tbl_cell(&t, heads[k]);
    }
    char after[48] = "0";
    long long got = 0;
    for (;;) {
        size_t page = PAGE;
        if (limit > 0 && (unsigned long long)(limit - got) < page)
            page = (size_t)(limit - got);
        stx_entries *e = NULL;
        rc = stx_dlq_list(c->client, stream, group, after, page, &e);
        if (rc != STX_OK) {
            stx_entries_free(e);
            jw_free(&w);
            tbl_free(&t);
            if (rc == STX_EWRONGTYPE)
                return cli_fail(c, CLI_EXIT_WRONGTYPE,
                                "the dead-letter key of '%s'/'%s' is not a stream", stream, group);
            return cli_fail_stx(c, rc, NULL);
        }
        size_t n = stx_entries_count(e);
        for (size_t i = 0; i < n; i++) {
            const stx_msg *m = stx_entries_at(e, i);
            if (c->json) {
                entry_json(&w, m);
                continue;
            }
            tbl_cell(&t, stx_msg_id(m));
            tbl_cell(&t, field_or_dash(m, "stx.source_id"));
            tbl_cell(&t, field_or_dash(m, "stx.attempts"));
            failed_at_cell(&t, m);
            tbl_cell(&t, field_or_dash(m, "stx.reason"));
            tbl_cell(&t, field_or_dash(m, "stx.error"));
            jbuf f;
            jb_init(&f);
            for (size_t k = 0; k < stx_msg_field_count(m); k++) {
                const char *name, *value;
                size_t nl, vl;
                if (!is_original(m, k) || stx_msg_field(m, k, &name, &nl, &value, &vl) != STX_OK)
                    continue;
                if (f.len)
                    jb_putc(&f, ' ');
                jb_human_str(&f, name, nl, 1);
                jb_putc(&f, '=');
                jb_human_str(&f, value, vl, 1);
            }
            tbl_cell_escaped(&t, f.p ? f.p : "");
            jb_free(&f);
        }
        got += (long long)n;
        if (n > 0)
            snprintf(after, sizeof after, "%s", stx_entries_last_id(e));
        stx_entries_free(e);
        if (n < page || (limit > 0 && got >= limit))
            break;
    }
    if (c->json) {
        jw_arr_end(&w);
        jw_print(&w, stdout);
    } else if (got > 0) {
        tbl_print(&t, stdout);
    }
    jw_free(&w);
    tbl_free(&t);
    return 0;
}

static int dlq_redrive(cli *c, int argc, char **argv)
{
    int npos, rc;
    if ((rc = cli_parse(c, argc, argv, NULL, 0, 2, -1, &npos, help)) != 0)
        return rc;
    const char *stream = argv[0], *group = argv[1];
    size_t n = (size_t)npos - 2;
    const char *const *ids = (const char *const *)(argv + 2);
    for (size_t i = 0; i < n; i++) {
        cli_id id;
        if (cli_parse_id(ids[i], &id) != 0 || !id.has_seq)
            return cli_fail(c, CLI_EXIT_USAGE, "bad id '%s': expected MS-SEQ", ids[i]);
    }
    if ((rc = cli_connect(c)) != 0 || (rc = cli_group_check(c, stream, group)) != 0)
        return rc;
    /* Every id given must be a dead letter of the group: a typo would
     * otherwise move nothing and say "moved 0". */
    for (size_t i = 0; i < n; i++) {
        char before[48];
        if (cli_point(c, "ID", ids[i], 0, before, sizeof before) != 0)
            return CLI_EXIT_USAGE;
        stx_entries *e = NULL;
        rc = stx_dlq_list(c->client, stream, group, before, 1, &e);
        cli_id want, got;
        int found = rc == STX_OK && stx_entries_count(e) == 1 &&
                    cli_parse_id(stx_msg_id(stx_entries_at(e, 0)), &got) == 0 &&
                    cli_parse_id(ids[i], &want) == 0 && got.ms == want.ms && got.seq == want.seq;
        stx_entries_free(e);
        if (rc == STX_EWRONGTYPE)
            return cli_fail(c, CLI_EXIT_WRONGTYPE,
                            "the dead-letter key of '%s'/'%s' is not a stream", stream, group);
        if (rc != STX_OK)
            return cli_fail_stx(c, rc, NULL);
        if (!found)
            return cli_fail(c, CLI_EXIT_NOTFOUND,
                            "stream '%s' group '%s' has no dead letter '%s'; nothing moved",
                            stream, group, ids[i]);
    }
    size_t moved = 0;
    rc = stx_dlq_redrive(c->client, stream, group, n ? ids : NULL, n, &moved);
    if (rc == STX_EWRONGTYPE)
        return cli_fail(c, CLI_EXIT_WRONGTYPE, "'%s' or its dead-letter key is not a stream",
                        stream);
    if (rc != STX_OK)
        return cli_fail_stx(c, rc, NULL);
    if (c->json) {
        jw w;
        jw_init(&w);
        jw_obj(&w);
        jw_key(&w, "moved");
        jw_u64(&w, moved);
        jw_obj_end(&w);
        jw_print(&w, stdout);
        jw_free(&w);
    } else {
        printf("moved %zu\n", moved);
    }
    return 0;
}

int cmd_dlq(cli *c, int argc, char **argv)
{
    if (argc >= 1 && strcmp(argv[0], "list") == 0) {
        c->sub = "dlq list";
        return dlq_list(c, argc - 1, argv + 1);
    }
    if (argc >= 1 && strcmp(argv[0], "redrive") == 0) {
        c->sub = "dlq redrive";
        return dlq_redrive(c, argc - 1, argv + 1);
    }
    if (argc >= 1 && (strcmp(argv[0], "--help") == 0 || strcmp(argv[0], "-h") == 0)) {
        cli_help(help);
        return -1;
    }
    if (argc == 0)
        return cli_fail(c, CLI_EXIT_USAGE, "missing subcommand: list or redrive (see stx dlq --help)");
    return cli_fail(c, CLI_EXIT_USAGE, "unknown subcommand '%s': expected list or redrive",
                    argv[0]);
}
