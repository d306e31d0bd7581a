/* stx reset STREAM GROUP --to POSITION, stx trim STREAM --safe */
#include <stdio.h>
#include <string.h>
#include <strings.h>
#include <unistd.h>

#include "cli.h"

static const char reset_help[] =
    "usage: stx reset STREAM GROUP --to POSITION [--clear-state] [--reemit] [--force]\n"
    "                 [--yes] [--json]\n"
    "\n"
    "Move (STREAM, GROUP) so that processing resumes with the first entry after\n"
    "POSITION: beginning, end, an id (MS-SEQ) or an ISO-8601 UTC time\n"
    "(2026-11-22T10:00:00Z: resume with the entries of that time).  The group\n"
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
    "  --yes          do not ask; required when stdin is not a terminal\n"
    "\n"
    "Without --yes on a terminal it asks for confirmation (y/N; \"no\" exits 1).\n"
    "--json prints {\"stream\":..,\"group\":..,\"to\":..,\"state_cleared\":..,\n"
    "\"reemit\":..}.\n"
    "Exit codes: 2 for a bad position or a missing --yes, 3 when the stream or\n"
    "the group does not exist, 6 when entries after POSITION are gone and\n"
    "--clear-state is given without --force.\n";

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
    "\n"
    "Prints the number of entries deleted (--json: {\"deleted\":N}).\n"
    "Exit codes: 2 without --safe or for a bad number or duration, 3 when the\n"
    "stream does not exist, 4 when STREAM is not a stream.\n";

/* Ask on the terminal; 1 when the answer is yes. */
static int confirm(const char *question)
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
                      {"--reemit", 0, NULL}, {"--force", 0, NULL}};
    int npos, rc;
    if ((rc = cli_parse(c, argc, argv, opts, 5, 2, 2, &npos, reset_help)) != 0)
        return rc;
    const char *stream = argv[0], *group = argv[1], *pos = opts[0].value;
    int clear = opts[1].value != NULL, yes = opts[2].value != NULL;
    int reemit = opts[3].value != NULL, force = opts[4].value != NULL;
    if (!pos)
        return cli_fail(c, CLI_EXIT_USAGE, "missing --to POSITION (see stx reset --help)");

    char to[64];
    cli_id id;
    int64_t ms;
    if (strcmp(pos, "beginning") == 0 || strcmp(pos, "end") == 0) {
        snprintf(to, sizeof to, "%s", pos);
    } else if (cli_parse_id(pos, &id) == 0 && id.has_seq) {
        snprintf(to, sizeof to, "%llu-%llu", (unsigned long long)id.ms,
                 (unsigned long long)id.seq);
    } else if (cli_parse_time(pos, &ms) == 0) {
        snprintf(to, sizeof to, "@%lld", (long long)ms);
    } else if (cli_looks_like_time(pos)) {
        return cli_fail(c, CLI_EXIT_USAGE,
                        "bad time '%s' for --to: expected an ISO-8601 UTC time such as "
                        "2026-11-22T10:00:00Z",
                        pos);
    } else {
        return cli_fail(c, CLI_EXIT_USAGE,
                        "bad position '%s' for --to: expected beginning, end, an id (MS-SEQ) "
                        "or an ISO-8601 UTC time",
                        pos);
    }

    if (!yes) {
        if (!isatty(STDIN_FILENO))
            return cli_fail(c, CLI_EXIT_USAGE,
                            "refusing to reset without --yes when stdin is not a terminal");
        char q[1024];
        reset_question(q, sizeof q, stream, group, pos, clear, reemit);
        if (!confirm(q))
            return cli_fail(c, CLI_EXIT_RUNTIME, "not confirmed; nothing changed");
    }
    if ((rc = cli_connect(c)) != 0)
        return rc;
    rc = stx_group_reset(c->client, stream, group, to,
                         (clear ? STX_RESET_CLEAR_STATE : 0) | (reemit ? STX_RESET_REEMIT : 0) |
                             (force ? STX_RESET_FORCE : 0));
    if (rc == STX_EINVAL || rc == STX_EINVALID_CURSOR)
        return cli_fail_stx(c, rc, pos);
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
        jw_key(&w, "to");
        jw_str(&w, to);
        jw_key(&w, "state_cleared");
        jw_bool(&w, clear);
        jw_key(&w, "reemit");
        jw_bool(&w, reemit);
        jw_obj_end(&w);
        jw_print(&w, stdout);
        jw_free(&w);
    } else {
        printf("group '%s' of stream '%s' reset to %s%s\n", group, stream, pos,
               clear ? "; state deleted" : "");
    }
    return 0;
}

int cmd_trim(cli *c, int argc, char **argv)
{
    cli_opt opts[] = {{"--safe", 0, NULL}, {"--maxlen", 1, NULL}, {"--max-age", 1, NULL}};
    int npos, rc;
    if ((rc = cli_parse(c, argc, argv, opts, 3, 1, 1, &npos, trim_help)) != 0)
        return rc;
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
