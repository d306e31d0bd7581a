/* stx reset, stx trim, stx streams, stx group delete */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <unistd.h>

#include "cli.h"

static const char reset_help[] =
    "usage: stx reset STREAM GROUP --to POSITION [--clear-state] [--reemit] [--force]\n"
    "                 [--pg URL] [--yes] [--json]\n"
    "\n"
    "Move (STREAM, GROUP) so that processing resumes with the first entry after\n"
    "POSITION (see Positions in stx --help): beginning (- or 0), end ($), an id\n"
    "(MS-SEQ: resume after it; MS: after that millisecond), a time (RFC 3339\n"
    "such as 2026-11-22T10:00:00Z, or @MS: resume with the entries of that\n"
    "time) or a duration ago (1h, 30m, 2d: as the time that long ago).  The group\n"
    "takes a new epoch, so a running processor is fenced (it stops) rather than\n"
    "corrupted, and a new lineage, so LMDB snapshots are rebuilt.  Entries\n"
    "pending in the group are dropped from its pending list.\n"
    "\n"
    "Without --clear-state the state is kept: a reset to an earlier point\n"
    "applies the replayed entries to the state AGAIN (a counter counts them\n"
    "twice).  With --clear-state the state is rebuilt by replaying the entries\n"
    "the stream still holds; this is refused when entries after POSITION were\n"
    "trimmed or deleted (the rebuilt state would differ), unless --force.\n"
    "Entries the group had already processed do not publish again when they\n"
    "are replayed (their publishes were sent the first time), unless --reemit.\n"
    "\n"
    "  --clear-state  also delete the group's state (rebuild it by replaying)\n"
    "  --reemit       replayed entries publish again\n"
    "  --force        clear the state even though entries after POSITION are gone\n"
    "  --pg URL       with --clear-state: a rebuild through the archive (stx archive)\n"
    "                 in this PostgreSQL; entries gone from Redis do not refuse the\n"
    "                 reset when the archive holds every one of them.  The\n"
    "                 processors must read through the archive too (history\n"
    "                 source: stx_config_set_history() with stx_archive_history())\n"
    "  --yes          do not ask; required when stdin is not a terminal\n"
    "\n"
    "Without --yes on a terminal it asks for confirmation (y/N; \"no\" exits 7).\n"
    "--json prints {\"stream\":..,\"group\":..,\"to\":POSITION as given,\n"
    "\"to_id\":the id processing resumes after,\"state_cleared\":..,\"reemit\":..}.\n"
    "Exit codes: 2 for a bad position or a missing --yes, 3 when the stream or\n"
    "the group does not exist, 6 when entries after POSITION are gone and\n"
    "--clear-state is given without --force (with --pg: and the archive lacks\n"
    "some of them), 7 when the answer was no.\n";

static const char trim_help[] =
    "usage: stx trim STREAM --safe [--maxlen N] [--max-age DURATION] [--json]\n"
    "\n"
    "Delete old entries of STREAM, never one that some consumer group has not\n"
    "processed yet: the bound is the lowest, over all groups, of the last\n"
    "delivered id, the oldest pending id and (streamtx groups) the committed\n"
    "offset.  Without --maxlen and --max-age every entry before that bound goes;\n"
    "with them, only the entries that are also beyond the newest N and older\n"
    "than DURATION.  --safe is required: it says you mean it.\n"
    "\n"
    "  --maxlen N          keep (about) the newest N entries\n"
    "  --max-age DURATION  delete entries older than DURATION: a number and a\n"
    "                      unit, ms s m h d w, or several (7d, 12h, 30m, 1h30m)\n"
    "  --archived          also keep every entry not yet archived: nothing after\n"
    "                      the archived offset in PostgreSQL (--pg) goes; refused\n"
    "                      when nothing of STREAM was ever archived\n"
    "  --pg URL            the archive's PostgreSQL database (with --archived)\n"
    "\n"
    "Prints the number of entries deleted (--json: {\"deleted\":N}).\n"
    "Exit codes: 2 without --safe or for a bad number or duration, 3 when the\n"
    "stream does not exist, 4 when STREAM is not a stream.\n";

int cli_confirm(const char *question)
{
    char line[64];
    fprintf(stderr, "%s [y/N] ", question);
    fflush(stderr);
    if (!fgets(line, sizeof line, stdin))
        return 0;
    line[strcspn(line, "\r\n")] = '\0';
    return strcasecmp(line, "y") == 0 || strcasecmp(line, "yes") == 0;
}

/* The question before a reset: what happens to the state and to the
 * publishes of entries that are processed again. */
static void reset_question(char *q, size_t cap, const char *stream, const char *group,
                           const char *pos, int clear, int reemit)
{
    snprintf(q, cap,
             "Reset group '%s' of stream '%s' to %s%s? A running processor of the group will be "
             "fenced. %s %s",
             group, stream, pos, clear ? " and DELETE its state" : "",
             clear ? "The state is rebuilt by replaying the entries after the position."
                   : "The state is kept: entries after the position that were already processed "
                     "are applied to it AGAIN (counts add up twice).",
             reemit ? "Replayed entries publish AGAIN."
                    : "Entries that were already processed do not publish again.");
}

int cmd_reset(cli *c, int argc, char **argv)
{
    cli_opt opts[] = {{"--to", 1, NULL},      {"--clear-state", 0, NULL}, {"--yes", 0, NULL},
                      {"--reemit", 0, NULL}, {"--force", 0, NULL}, {"--pg", 1, NULL}};
    int npos, rc;
    if ((rc = cli_parse(c, argc, argv, opts, 6, 2, 2, &npos, reset_help)) != 0)
        return rc;
    const char *pg = opts[5].value;
    if (pg && !opts[1].value)
        return cli_fail(c, CLI_EXIT_USAGE, "--pg is only for --clear-state (a rebuild)");
#ifndef STX_HAVE_ARCHIVE
    if (pg)
        return cli_no_archive(c, "--pg");
#endif
    const char *stream = argv[0], *group = argv[1], *pos = opts[0].value;
    int clear = opts[1].value != NULL, yes = opts[2].value != NULL;
    int reemit = opts[3].value != NULL, force = opts[4].value != NULL;
    if (!pos)
        return cli_fail(c, CLI_EXIT_USAGE, "missing --to POSITION (see stx reset --help)");

    /* Checked here for the message; the library parses it again (the
     * grammar is its own), durations counting from the reset itself. */
    stx_position p;
    if ((rc = cli_position(c, "--to", pos, &p)) != 0)
        return rc;

    if (!yes) {
        if (!isatty(STDIN_FILENO))
            return cli_fail(c, CLI_EXIT_USAGE,
                            "refusing to reset without --yes when stdin is not a terminal");
        char q[1024];
        reset_question(q, sizeof q, stream, group, pos, clear, reemit);
        if (!cli_confirm(q))
            return cli_fail(c, CLI_EXIT_DECLINED, "not confirmed; nothing changed");
    }
    if ((rc = cli_connect(c)) != 0)
        return rc;
    int flags = (clear ? STX_RESET_CLEAR_STATE : 0) | (reemit ? STX_RESET_REEMIT : 0) |
                (force ? STX_RESET_FORCE : 0);
#ifdef STX_HAVE_ARCHIVE
    if (pg) {
        stx_archive *a;
        if ((rc = cli_archive_open(c, pg, &a)) != 0)
            return rc;
        rc = stx_archive_reset(a, c->client, stream, group, pos, flags);
        if (rc != STX_OK && *stx_archive_errmsg(a)) {
            rc = cli_fail(c, cli_exit_code(rc), "%s", stx_archive_errmsg(a));
            stx_archive_close(a);
            return rc;
        }
        stx_archive_close(a);
    } else
#endif
    rc = stx_group_reset(c->client, stream, group, pos, flags);
    if (rc == STX_ENOGROUP)
        return cli_fail_nogroup(c, stream, group);
    if (rc == STX_EINVAL || rc == STX_EINVALID_CURSOR)
        return cli_fail_stx(c, rc, pos);
    if (rc != STX_OK)
        return cli_fail_stx(c, rc, NULL);
    /* The id the group resumes after, as the reset left it (the end and
     * durations are resolved by the reset itself). */
    char to_id[48] = "";
    stx_stream_info *info = NULL;
    if (stx_stream_info_get(c->client, stream, &info) == STX_OK)
        for (size_t i = 0; i < info->ngroups; i++)
            if (strcmp(info->groups[i].name, group) == 0)
                snprintf(to_id, sizeof to_id, "%s", info->groups[i].offset);
    stx_stream_info_free(info);
    if (c->json) {
        jw w;
        jw_init(&w);
        jw_obj(&w);
        jw_key(&w, "stream");
        jw_str(&w, stream);
        jw_key(&w, "group");
        jw_str(&w, group);
        jw_key(&w, "to");
        jw_str(&w, pos);
        jw_key(&w, "to_id");
        jw_str(&w, to_id[0] ? to_id : NULL);
        jw_key(&w, "state_cleared");
        jw_bool(&w, clear);
        jw_key(&w, "reemit");
        jw_bool(&w, reemit);
        jw_obj_end(&w);
        jw_print(&w, stdout);
        jw_free(&w);
    } else {
        /* The resolved id when it says more than the position given. */
        char resolved[96] = "";
        if (to_id[0] && (p.kind == STX_POSITION_END || p.kind == STX_POSITION_TIME ||
                         (p.kind == STX_POSITION_ID && !p.has_seq)))
            snprintf(resolved, sizeof resolved, " (resumes after %s)", to_id);
        printf("group '%s' of stream '%s' reset to %s%s%s\n", group, stream, pos, resolved,
               clear ? "; state deleted" : "");
    }
    return 0;
}

int cmd_trim(cli *c, int argc, char **argv)
{
    cli_opt opts[] = {{"--safe", 0, NULL}, {"--maxlen", 1, NULL}, {"--max-age", 1, NULL},
                      {"--archived", 0, NULL}, {"--pg", 1, NULL}};
    int npos, rc;
    if ((rc = cli_parse(c, argc, argv, opts, 5, 1, 1, &npos, trim_help)) != 0)
        return rc;
    if (opts[3].value && !opts[4].value)
        return cli_fail(c, CLI_EXIT_USAGE, "--archived needs --pg URL (the archive's database)");
    if (opts[4].value && !opts[3].value)
        return cli_fail(c, CLI_EXIT_USAGE, "--pg is only for --archived");
#ifndef STX_HAVE_ARCHIVE
    if (opts[3].value)
        return cli_no_archive(c, "--archived");
#endif
    const char *stream = argv[0];
    long long maxlen = 0;
    int64_t max_age = 0;
    if (!opts[0].value)
        return cli_fail(c, CLI_EXIT_USAGE,
                        "refusing to trim without --safe (it never deletes an entry a group "
                        "has not processed)");
    if (opts[1].value && (rc = cli_opt_ll(c, &opts[1], 1, &maxlen)) != 0)
        return rc;
    if (opts[2].value && (cli_parse_duration(opts[2].value, &max_age) != 0 || max_age <= 0))
        return cli_fail(c, CLI_EXIT_USAGE,
                        "bad duration '%s' for --max-age: expected e.g. 7d, 12h, 30m, 1h30m",
                        opts[2].value);
    if ((rc = cli_connect(c)) != 0)
        return rc;
    long long deleted = 0;
#ifdef STX_HAVE_ARCHIVE
    if (opts[3].value) {
        stx_archive *a;
        if ((rc = cli_archive_open(c, opts[4].value, &a)) != 0)
            return rc;
        rc = stx_archive_trim(a, c->client, stream, maxlen, (long long)max_age, &deleted);
        if (rc != STX_OK && rc != STX_EWRONGTYPE) {
            rc = cli_archive_fail(c, a, rc);
            stx_archive_close(a);
            return rc;
        }
        stx_archive_close(a);
    } else
#endif
    rc = stx_trim_safe(c->client, stream, maxlen, (long long)max_age, &deleted);
    if (rc == STX_OK && deleted == 0) {
        /* Nothing trimmed: say so when there was no stream to trim. */
        stx_stream_info *info = NULL;
        rc = stx_stream_info_get(c->client, stream, &info);
        stx_stream_info_free(info);
    }
    if (rc != STX_OK)
        return cli_fail_stream(c, rc, stream);
    if (c->json) {
        jw w;
        jw_init(&w);
        jw_obj(&w);
        jw_key(&w, "deleted");
        jw_i64(&w, deleted);
        jw_obj_end(&w);
        jw_print(&w, stdout);
        jw_free(&w);
    } else {
        printf("deleted %lld\n", deleted);
    }
    return 0;
}

/* ------------------------------------------------------------------ */
/* stx streams                                                          */

static const char streams_help[] =
    "usage: stx streams [--json]\n"
    "\n"
    "List the streams that have streamtx groups (found with SCAN ... TYPE\n"
    "stream on the server of --url), one line per group: the stream, the\n"
    "group, its committed offset, its lag (entries not yet delivered; \"?\"\n"
    "when Redis cannot tell), its pending entries and its dead letters.\n"
    "Plain consumer groups and streams without groups are not listed.\n"
    "\n"
    "--json prints one array [{\"stream\":..,\"group\":..,\"offset\":..,\n"
    "\"lag\":..|null,\"pending\":..,\"dlq_length\":..}].\n";

/* The names of every stream key, sorted (on every master of a cluster). */
static int scan_streams(cli *c, char ***out, size_t *n)
{
    int rc = stx_stream_names(c->client, out, n);
    return rc == STX_OK ? 0 : cli_fail_stx(c, rc, "listing streams");
}

int cmd_streams(cli *c, int argc, char **argv)
{
    int npos, rc;
    if ((rc = cli_parse(c, argc, argv, NULL, 0, 0, 0, &npos, streams_help)) != 0)
        return rc;
    if ((rc = cli_connect(c)) != 0)
        return rc;
    char **names = NULL;
    size_t n = 0;
    rc = scan_streams(c, &names, &n);
    jw w;
    table t;
    jw_init(&w);
    tbl_init(&t, 6);
    if (c->json) {
        jw_arr(&w);
    } else {
        static const char *const heads[] = {"STREAM", "GROUP", "OFFSET", "LAG", "PENDING", "DLQ"};
        for (size_t k = 0; k < 6; k++)
            tbl_cell(&t, heads[k]);
    }
    size_t rows = 0;
    for (size_t i = 0; rc == 0 && i < n; i++) {
        stx_stream_info *info = NULL;
        int src = stx_stream_info_get(c->client, names[i], &info);
        if (src == STX_ENOTFOUND || src == STX_EWRONGTYPE) {
            stx_stream_info_free(info); /* gone or replaced since the scan */
            continue;
        }
        if (src != STX_OK) {
            stx_stream_info_free(info);
            rc = cli_fail_stx(c, src, names[i]);
            break;
        }
        for (size_t g = 0; g < info->ngroups; g++) {
            const stx_group_info *gi = &info->groups[g];
            if (!gi->offset[0])
                continue; /* a plain consumer group */
            rows++;
            if (c->json) {
                jw_obj(&w);
                jw_key(&w, "stream");
                jw_str(&w, names[i]);
                jw_key(&w, "group");
                jw_str(&w, gi->name);
                jw_key(&w, "offset");
                jw_str(&w, gi->offset);
                jw_key(&w, "lag");
                if (gi->lag >= 0)
                    jw_i64(&w, gi->lag);
                else
                    jw_null(&w);
                jw_key(&w, "pending");
                jw_i64(&w, gi->pending);
                jw_key(&w, "dlq_length");
                jw_i64(&w, gi->dlq_length);
                jw_obj_end(&w);
            } else {
                tbl_cell(&t, names[i]);
                tbl_cell(&t, gi->name);
                tbl_cell(&t, gi->offset);
                if (gi->lag >= 0)
                    tbl_cellf(&t, "%lld", gi->lag);
                else
                    tbl_cell(&t, "?");
                tbl_cellf(&t, "%lld", gi->pending);
                tbl_cellf(&t, "%lld", gi->dlq_length);
            }
        }
        stx_stream_info_free(info);
    }
    if (rc == 0) {
        if (c->json) {
            jw_arr_end(&w);
            jw_print(&w, stdout);
        } else if (rows > 0) {
            tbl_print(&t, stdout);
        }
    }
    jw_free(&w);
    tbl_free(&t);
    for (size_t i = 0; i < n; i++)
        free(names[i]);
    free(names);
    return rc;
}

/* ------------------------------------------------------------------ */
/* stx group delete                                                     */

static const char group_help[] =
    "usage: stx group delete STREAM GROUP [--yes] [--json]\n"
    "\n"
    "Delete the consumer group GROUP of STREAM and every key streamtx derived\n"
    "from it: its offsets and epoch (meta), its state, its dead letters and its\n"
    "handler-attempt counters (stx_group_delete()).  The stream and its\n"
    "entries stay.  Stop the group's processors first: a running one stops\n"
    "with an error.  Keys a group left behind after its stream was deleted are\n"
    "deleted too.\n"
    "\n"
    "  --yes   do not ask; required when stdin is not a terminal\n"
    "\n"
    "Without --yes on a terminal it asks for confirmation (y/N; \"no\" exits 7).\n"
    "Prints what was deleted (--json: {\"stream\":..,\"group\":..,\n"
    "\"deleted_keys\":N}, N the keys of the group that existed, 0 to 4).\n"
    "Exit codes: 2 for a missing --yes, 3 when the stream has no such group and\n"
    "no key of it is left, 4 when STREAM is not a stream, 7 when the answer was\n"
    "no.\n";

static int group_delete(cli *c, int argc, char **argv)
{
    cli_opt opts[] = {{"--yes", 0, NULL}};
    int npos, rc;
    if ((rc = cli_parse(c, argc, argv, opts, 1, 2, 2, &npos, group_help)) != 0)
        return rc;
    const char *stream = argv[0], *group = argv[1];
    if (!opts[0].value) {
        if (!isatty(STDIN_FILENO))
            return cli_fail(c, CLI_EXIT_USAGE,
                            "refusing to delete without --yes when stdin is not a terminal");
        char q[512];
        snprintf(q, sizeof q,
                 "Delete group '%s' of stream '%s' with its offsets, state and dead letters?",
                 group, stream);
        if (!cli_confirm(q))
            return cli_fail(c, CLI_EXIT_DECLINED, "not confirmed; nothing changed");
    }
    if ((rc = cli_connect(c)) != 0)
        return rc;
    long long keys = 0;
    rc = stx_group_delete(c->client, stream, group, &keys);
    if (rc == STX_ENOGROUP)
        return cli_fail_nogroup(c, stream, group);
    if (rc == STX_EWRONGTYPE)
        return cli_fail(c, CLI_EXIT_WRONGTYPE, "key '%s' is not a stream", stream);
    if (rc != STX_OK)
        return cli_fail_stx(c, rc, NULL);
    if (c->json) {
        jw w;
        jw_init(&w);
        jw_obj(&w);
        jw_key(&w, "stream");
        jw_str(&w, stream);
        jw_key(&w, "group");
        jw_str(&w, group);
        jw_key(&w, "deleted_keys");
        jw_i64(&w, keys);
        jw_obj_end(&w);
        jw_print(&w, stdout);
        jw_free(&w);
    } else {
        printf("deleted group '%s' of stream '%s' and %lld of its keys\n", group, stream, keys);
    }
    return 0;
}

int cmd_group(cli *c, int argc, char **argv)
{
    if (argc >= 1 && strcmp(argv[0], "delete") == 0) {
        c->sub = "group delete";
        return group_delete(c, argc - 1, argv + 1);
    }
    if (argc >= 1 && (strcmp(argv[0], "--help") == 0 || strcmp(argv[0], "-h") == 0)) {
        cli_help(group_help);
        return -1;
    }
    if (argc == 0)
        return cli_fail(c, CLI_EXIT_USAGE, "missing subcommand: delete (see stx group --help)");
    return cli_fail(c, CLI_EXIT_USAGE, "unknown subcommand '%s': expected delete", argv[0]);
}
