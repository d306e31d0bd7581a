/* stx tail STREAM, stx replay STREAM --from X --to Y */
#include <errno.h>
#include <signal.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "cli.h"

#define PAGE 1000    /* entries per read (the library's largest default) */
#define TAIL_PAGE 100
#define TAIL_WAIT_MS 2000 /* one wait of a tail that waits forever */
#define ID_CAP 48

static const char replay_help[] =
    "usage: stx replay STREAM [--from X] [--to Y] [--limit N] [--json]\n"
    "\n"
    "Print the entries of STREAM from X to Y, both included, oldest first.\n"
    "X and Y are positions (see Positions in stx --help): beginning (- or 0),\n"
    "end ($ or +), an id (MS-SEQ, or MS for a whole millisecond), a time (RFC\n"
    "3339 such as 2026-11-22T10:00:00Z or 2026-11-22T10:00:00.250+01:00, or @MS;\n"
    "a time stands for the ids of its millisecond) or a duration ago (1h, 30m,\n"
    "2d).  --from defaults to the first entry, --to to the last.\n"
    "\n"
    "  --limit N   print at most N entries\n"
    "  --pg URL    read through the archive (stx archive) in this PostgreSQL\n"
    "              database: entries trimmed from Redis are read from it and\n"
    "              joined to what Redis holds, in id order, each once; --from\n"
    "              beginning then means the archive's first entry\n"
    "\n"
    "Output: one line per entry, \"ID FIELD=VALUE ...\"; a value holding spaces,\n"
    "'=' or '\"' is quoted, control bytes and invalid UTF-8 appear as \\xNN.\n"
    "--json: one object {\"from\":X,\"after\":ID,\"to\":Y,\"to_id\":ID,\"entries\":[...]}:\n"
    "the positions as given, what they resolved to (entries after \"after\", up to\n"
    "and with \"to_id\"), and the entries {\"id\":\"...\",\"fields\":{\"FIELD\":\"VALUE\",...}}.\n"
    "\n"
    "A partitioned stream (stx create) is read over all its partitions, merged\n"
    "by id; each line starts with \"[N] \" (the partition), each JSON entry has\n"
    "\"partition\":N.  One partition alone is the stream {STREAM#N}.\n"
    "\n"
    "Exit codes: 2 for a bad position, 3 when the stream does not exist,\n"
    "6 when entries of the range were trimmed away (window expired).\n";

static const char tail_help[] =
    "usage: stx tail STREAM [--from X] [--limit N] [--block-ms N] [--wait] [--json]\n"
    "\n"
    "Print the entries of STREAM as they are added, until --limit entries were\n"
    "printed, --block-ms passed without a new entry, or SIGINT/SIGTERM (exit 0).\n"
    "A lost connection is re-established and the tail goes on after the last\n"
    "entry printed, so no entry is skipped or printed twice.\n"
    "\n"
    "  --from X      start with position X (included; see Positions in stx\n"
    "                --help): beginning (- or 0) for the whole stream, end ($,\n"
    "                the default) for new entries only, an id, a time (RFC 3339\n"
    "                or @MS) or a duration ago (10m: the entries of the last ten\n"
    "                minutes, then new ones)\n"
    "  --limit N     stop after N entries\n"
    "  --count N     the same as --limit (deprecated: use --limit)\n"
    "  --block-ms N  stop when no entry came for N milliseconds (default: wait\n"
    "                for ever)\n"
    "  --wait        when STREAM does not exist yet, wait for it rather than\n"
    "                exit 3\n"
    "\n"
    "Output: one line per entry, \"ID FIELD=VALUE ...\" (as stx replay).\n"
    "--json prints NDJSON: a first line {\"from\":X,\"after\":ID} (the position as\n"
    "given and what it resolved to: entries after ID; \"$\" for new entries only),\n"
    "then one JSON object per line and entry,\n"
    "{\"id\":\"...\",\"fields\":{\"FIELD\":\"VALUE\",...}}, not one array.\n"
    "\n"
    "A partitioned stream (stx create) is tailed over all its partitions (one\n"
    "cursor each, polled every 100 ms when idle); each line starts with \"[N] \"\n"
    "(the partition), each JSON line has \"partition\":N and no first line.  One\n"
    "partition alone is the stream {STREAM#N}.\n"
    "\n"
    "Exit codes: 2 for a bad position, 3 when the stream does not exist (without\n"
    "--wait), 4 when STREAM is not a stream, 6 when entries after the starting\n"
    "point were trimmed away.\n";

/* Did the stream exist after all (for "unknown stream" after an empty
 * result)?  STX_OK, STX_ENOTFOUND or another error. */
static int stream_exists(cli *c, const char *stream)
{
    stx_stream_info *info = NULL;
    int rc = stx_stream_info_get(c->client, stream, &info);
    stx_stream_info_free(info);
    return rc;
}

static int read_failed(cli *c, int rc, const char *stream, const char *cursor)
{
    if (rc == STX_EWRONGTYPE)
        return cli_fail(c, CLI_EXIT_WRONGTYPE, "key '%s' is not a stream", stream);
    if (rc == STX_EWINDOW_EXPIRED)
        return cli_fail_stx(c, rc, "window expired");
    if (rc == STX_EINVALID_CURSOR)
        return cli_fail_stx(c, rc, cursor);
    return cli_fail_stx(c, rc, stream);
}

static int replay_run(cli *c, int argc, char **argv, cli_opt *opts, void *archive);

int cmd_replay(cli *c, int argc, char **argv)
{
    cli_opt opts[] = {{"--from", 1, NULL}, {"--to", 1, NULL}, {"--limit", 1, NULL},
                      {"--pg", 1, NULL}};
    int npos, rc;
    if ((rc = cli_parse(c, argc, argv, opts, 4, 1, 1, &npos, replay_help)) != 0)
        return rc;
#ifdef STX_HAVE_ARCHIVE
    stx_archive *archive = NULL;
    if (opts[3].value && (rc = cli_archive_open(c, opts[3].value, &archive)) != 0)
        return rc;
    rc = replay_run(c, argc, argv, opts, archive);
    stx_archive_close(archive);
    return rc;
#else
    if (opts[3].value)
        return cli_no_archive(c, "--pg");
    return replay_run(c, argc, argv, opts, NULL);
#endif
}

static int replay_run(cli *c, int argc, char **argv, cli_opt *opts, void *archive)
{
    int rc;
    (void)argc;
    const char *stream = argv[0];
    char after[ID_CAP], to[ID_CAP];
    long long limit = 0;
    stx_position from;
    if ((rc = cli_point(c, "--from", opts[0].value ? opts[0].value : "-", 0, after,
                        sizeof after)) != 0 ||
        (rc = cli_point(c, "--to", opts[1].value ? opts[1].value : "+", 1, to, sizeof to)) != 0)
        return rc;
    if (opts[2].value && (rc = cli_opt_ll(c, &opts[2], 1, &limit)) != 0)
        return rc;
    if ((rc = cli_connect(c)) != 0)
        return rc;
    unsigned nparts = 0;
    if (stx_stream_partitions(c->client, stream, &nparts) == STX_OK)
        return cli_replay_partitioned(c, stream, after, to, limit);
    if (strcmp(after, "$") == 0) {
        /* From the end: nothing is after the last entry (a missing stream
         * is reported by the read below). */
        stx_stream_info *info = NULL;
        if (stx_stream_info_get(c->client, stream, &info) == STX_OK)
            snprintf(after, sizeof after, "%s", info->last_id[0] ? info->last_id : "0-0");
        else
            snprintf(after, sizeof after, "0-0");
        stx_stream_info_free(info);
    } else if (!archive && (!opts[0].value || (stx_position_parse(opts[0].value, 0, &from) == STX_OK &&
                                               from.kind == STX_POSITION_BEGINNING))) {
        /* "-" is the oldest entry the stream still holds: inspecting
         * history is not a cursor that could have missed trimmed entries.
         * A missing stream or wrong type is reported by the read below. */
        stx_stream_info *info = NULL;
        if (stx_stream_info_get(c->client, stream, &info) == STX_OK && info->first_id[0] &&
            (rc = cli_point(c, "--from", info->first_id, 0, after, sizeof after)) != 0) {
            stx_stream_info_free(info);
            return rc;
        }
        stx_stream_info_free(info);
    }

    jw w;
    jw_init(&w);
    if (c->json) {
        /* What the user wrote, and what it resolved to. */
        jw_obj(&w);
        jw_key(&w, "from");
        jw_str(&w, opts[0].value ? opts[0].value : "-");
        jw_key(&w, "after");
        jw_str(&w, after);
        jw_key(&w, "to");
        jw_str(&w, opts[1].value ? opts[1].value : "+");
        jw_key(&w, "to_id");
        jw_str(&w, to);
        jw_key(&w, "entries");
        jw_arr(&w);
    }
    long long got = 0;
    for (;;) {
        size_t page = PAGE;
        if (limit > 0 && (unsigned long long)(limit - got) < page)
            page = (size_t)(limit - got);
        stx_entries *e = NULL;
#ifdef STX_HAVE_ARCHIVE
        rc = stx_archive_read_range(archive, c->client, stream, after,
                                    strcmp(to, "+") ? to : NULL, page, &e);
        if (rc != STX_OK && archive && *stx_archive_errmsg(archive) &&
            rc != STX_EWINDOW_EXPIRED && rc != STX_EINVALID_CURSOR) {
            jw_free(&w);
            return cli_archive_fail(c, archive, rc);
        }
#else
        rc = stx_read_range(c->client, stream, after, strcmp(to, "+") ? to : NULL, page, &e);
#endif
        if (rc != STX_OK) {
            stx_entries_free(e);
            jw_free(&w);
            return read_failed(c, rc, stream, after);
        }
        size_t n = stx_entries_count(e);
        if (n == 0 && got == 0 && (rc = stream_exists(c, stream)) != STX_OK) {
            stx_entries_free(e);
            jw_free(&w);
            if (rc == STX_ENOTFOUND)
                return cli_fail_stream(c, rc, stream);
            return read_failed(c, rc, stream, after);
        }
        for (size_t i = 0; i < n; i++) {
            const stx_msg *m = stx_entries_at(e, i);
            if (c->json) {
                out_entry_json(&w, m);
            } else {
                out_entry_line(&w.b, m);
                jb_putc(&w.b, '\n');
            }
        }
        got += (long long)n;
        if (n > 0)
            snprintf(after, sizeof after, "%s", stx_entries_last_id(e));
        stx_entries_free(e);
        jw_flush(&w, stdout);
        if (n < page || (limit > 0 && got >= limit))
            break;
    }
    if (c->json) {
        jw_arr_end(&w);
        jw_obj_end(&w);
        jw_print(&w, stdout);
    }
    jw_free(&w);
    return 0;
}

/* ------------------------------------------------------------------ */
/* tail                                                                 */

static volatile sig_atomic_t stop_requested;
static volatile sig_atomic_t waiting; /* nothing is half-printed: a signal may end us */

static void on_signal(int sig)
{
    (void)sig;
    stop_requested = 1;
    if (waiting)
        _exit(0);
}

static void sleep_ms(long ms)
{
    struct timespec ts = {ms / 1000, (ms % 1000) * 1000000L};
    nanosleep(&ts, NULL); /* a signal cuts it short, which is what we want */
}

/* After a lost connection: wait (100 ms doubling to 5 s) and let the next
 * call reconnect; the cursor is kept, so the tail goes on where it was. */
static void backoff_wait(long *backoff)
{
    waiting = 1;
    if (stop_requested)
        _exit(0);
    sleep_ms(*backoff);
    waiting = 0;
    if (*backoff < 5000)
        *backoff *= 2;
}

int cmd_tail(cli *c, int argc, char **argv)
{
    cli_opt opts[] = {{"--from", 1, NULL},     {"--limit", 1, NULL}, {"--block-ms", 1, NULL},
                      {"--count", 1, NULL}, {"--wait", 0, NULL}};
    int npos, rc;
    if ((rc = cli_parse(c, argc, argv, opts, 5, 1, 1, &npos, tail_help)) != 0)
        return rc;
    const char *stream = argv[0];
    const char *from = opts[0].value ? opts[0].value : "$";
    long long count = 0, block = 0;
    char cursor[ID_CAP];
    if (opts[1].value && opts[3].value)
        return cli_fail(c, CLI_EXIT_USAGE, "--count is the old name of --limit: give one of them");
    cli_opt *limit = opts[1].value ? &opts[1] : &opts[3];
    if (limit->value && (rc = cli_opt_ll(c, limit, 1, &count)) != 0)
        return rc;
    if (opts[2].value && (rc = cli_opt_ll(c, &opts[2], 1, &block)) != 0)
        return rc;
    if (block > 24LL * 3600 * 1000)
        return cli_fail(c, CLI_EXIT_USAGE, "--block-ms %lld is more than a day", block);
    if ((rc = cli_point(c, "--from", from, 0, cursor, sizeof cursor)) != 0)
        return rc;
    long wait = block > 0 ? (long)block : TAIL_WAIT_MS;
    /* "$" (the end) is made concrete by the first read. */

    struct sigaction sa;
    memset(&sa, 0, sizeof sa);
    sa.sa_handler = on_signal;
    sigemptyset(&sa.sa_mask);
    sigaction(SIGINT, &sa, NULL);
    sigaction(SIGTERM, &sa, NULL);

    if ((rc = cli_connect(c)) != 0)
        return rc;
    unsigned nparts = 0;
    if (stx_stream_partitions(c->client, stream, &nparts) == STX_OK)
        return cli_tail_partitioned(c, stream, nparts, cursor, count, block);
    /* A tail of a stream that is not there is most often a typo: say so
     * (once Redis answers), unless asked to wait for it. */
    int checked = opts[4].value != NULL;

    jw w;
    jw_init(&w);
    int headed = !c->json; /* --json: the first line says where the tail starts */
    long long printed = 0;
    long backoff = 0; /* > 0 while the connection is down */
    while (!stop_requested) {
        size_t page = TAIL_PAGE;
        if (count > 0 && (unsigned long long)(count - printed) < page)
            page = (size_t)(count - printed);
        stx_entries *e = NULL;
        if (checked && !headed) {
            /* The position as given and as resolved (once the stream is
             * known to exist, so an error leaves stdout empty). */
            jw_obj(&w);
            jw_key(&w, "from");
            jw_str(&w, from);
            jw_key(&w, "after");
            jw_str(&w, cursor);
            jw_obj_end(&w);
            jw_print(&w, stdout);
            headed = 1;
        }
        waiting = 1;
        if (stop_requested)
            break;
        rc = checked ? stx_tail(c->client, stream, cursor, wait, page, &e)
                     : stream_exists(c, stream);
        waiting = 0;
        /* A lost connection, and a command Redis does not run for now
         * (LOADING after a restart, BUSY, a cancelled blocking read): wait
         * and go on from the same cursor. */
        if (stx_error_class_of(rc) == STX_CLASS_RETRIABLE) {
            stx_entries_free(e);
            if (!backoff) {
                cli_warn(c, "%s; %s", stx_client_errmsg(c->client),
                         rc == STX_EREDIS_REFUSED ? "retrying" : "reconnecting");
                backoff = 100;
            }
            backoff_wait(&backoff);
            continue;
        }
        if (backoff) {
            cli_warn(c, "Redis answers again; going on after %s", cursor);
            backoff = 0;
        }
        if (!checked && rc == STX_ENOTFOUND) {
            jw_free(&w);
            return cli_fail_stream(c, rc, stream);
        }
        if (rc != STX_OK) {
            stx_entries_free(e);
            jw_free(&w);
            return read_failed(c, rc, stream, cursor);
        }
        if (!checked) {
            checked = 1;
            continue;
        }
        size_t n = stx_entries_count(e);
        for (size_t i = 0; i < n; i++) {
            const stx_msg *m = stx_entries_at(e, i);
            if (c->json) {
                out_entry_json(&w, m);
                jw_print(&w, stdout);
            } else {
                out_entry_line(&w.b, m);
                jb_putc(&w.b, '\n');
                jw_flush(&w, stdout);
            }
        }
        snprintf(cursor, sizeof cursor, "%s", stx_entries_last_id(e));
        stx_entries_free(e);
        printed += (long long)n;
        if (fflush(stdout) != 0) {
            jw_free(&w);
            return cli_fail(c, CLI_EXIT_RUNTIME, "cannot write the output: %s", strerror(errno));
        }
        if ((count > 0 && printed >= count) || (n == 0 && block > 0))
            break;
    }
    jw_free(&w);
    return 0;
}
