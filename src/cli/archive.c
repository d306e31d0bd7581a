/* stx archive STREAM --pg URL: the archiver, its schema and its lag. */
#include <signal.h>
#include <stdio.h>
#include <string.h>
#include <time.h>

#include "cli.h"

static const char help[] =
    "usage: stx archive STREAM --pg URL [--batch N] [--once] [--status] [--progress S]\n"
    "                  [--json]\n"
    "       stx archive --init --pg URL\n"
    "\n"
    "Copy every entry of STREAM into PostgreSQL, exactly once: each batch's\n"
    "rows and the archived offset are committed in one transaction, and the\n"
    "entries are acknowledged in Redis (group \"stx-archive\") only after\n"
    "that commit.  A restart resumes from PostgreSQL's offset.  Runs until\n"
    "SIGINT/SIGTERM; a lost Redis or PostgreSQL connection is retried with a\n"
    "backoff (50 ms doubling to 5 s), an unreachable PostgreSQL at start too\n"
    "(not with --once, --init or --status).  On exit it prints what it archived.\n"
    "\n"
    "  --pg URL     the PostgreSQL database: a libpq URI or connection string,\n"
    "               postgresql://user:password@host:port/db?sslmode=require\n"
    "               (sslmode, passfile and the PG* environment variables work\n"
    "               as in psql)\n"
    "  --init       install or upgrade the archive's tables (schema version\n"
    "               1) and exit; nothing else ever creates them\n"
    "  --batch N    entries per batch and transaction (default 500)\n"
    "  --once       stop when the archive has caught up with the stream\n"
    "  --status     print the archived offset, the rows archived and the\n"
    "               entries not yet archived, and exit\n"
    "  --progress S every S seconds, one line of live stats on stderr: the\n"
    "               offset, entries archived (and per second since the last\n"
    "               line), entries behind, PostgreSQL reconnects, retried errors\n"
    "\n"
    "--json prints one object: {\"stream\":..,\"offset\":..,\"archived\":..,\n"
    "\"behind\":..|null} (--status), {\"schema_from\":N,\"schema\":N} (--init), or\n"
    "{\"stream\":..,\"entries\":..,\"batches\":..,\"skipped\":..,\"pg_reconnects\":..,\n"
    "\"offset\":..} when the archiver stops.\n"
    "\n"
    "Exit codes: 1 when PostgreSQL or Redis fail (an authentication failure, a\n"
    "missing schema: run --init), 2 for bad arguments.\n";

#ifdef STX_HAVE_ARCHIVE
/* The archive's message without its "archive: " when the command is
 * archive ("stx: archive: archive: ..." says it twice). */
static const char *message(const cli *c, const stx_archive *a, int rc)
{
    const char *m = a ? stx_archive_errmsg(a) : stx_strerror(rc);
    if (c->sub && strcmp(c->sub, "archive") == 0 && strncmp(m, "archive: ", 9) == 0) m += 9;
    return *m ? m : stx_strerror(rc);
}
#endif

int cli_no_archive(const cli *c, const char *opt)
{
    return cli_fail(c, CLI_EXIT_USAGE,
                    "%s: this stx was built without the archive (STX_BUILD_ARCHIVE=OFF, no libpq)",
                    opt);
}

#ifdef STX_HAVE_ARCHIVE
static stx_archive *running;

typedef struct progress {
    uint64_t entries;
    double at;
} progress;

static double mono_s(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

static void on_progress(const stx_archive_stats *st, void *ud)
{
    progress *p = ud;
    double now = mono_s(), dt = now - p->at;
    char behind[32] = "?";
    if (st->behind >= 0) snprintf(behind, sizeof behind, "%lld", st->behind);
    fprintf(stderr,
            "stx: archive: offset %s, %llu entries (%.0f/s), behind %s, pg reconnects %llu, "
            "errors %llu\n",
            st->offset[0] ? st->offset : "-", (unsigned long long)st->entries,
            dt > 0 ? (double)(st->entries - p->entries) / dt : 0.0, behind,
            (unsigned long long)st->pg_reconnects, (unsigned long long)st->errors);
    p->entries = st->entries;
    p->at = now;
}

static void on_signal(int sig)
{
    (void)sig;
    stx_archive_stop(running);
}

int cli_archive_open(cli *c, const char *url, stx_archive **out)
{
    int rc = stx_archive_open(out, url);
    if (rc != STX_OK) {
        cli_fail(c, CLI_EXIT_RUNTIME, "%s", message(c, *out, rc));
        stx_archive_close(*out);
        *out = NULL;
        return CLI_EXIT_RUNTIME;
    }
    return 0;
}

int cli_archive_fail(cli *c, const stx_archive *a, int rc)
{
    const char *m = message(c, a, rc);
    if (rc == STX_EWINDOW_EXPIRED || rc == STX_EINVALID_CURSOR || !*m) return cli_fail_stx(c, rc, NULL);
    return cli_fail(c, cli_exit_code(rc), "%s", m);
}

static int status(cli *c, stx_archive *a, const char *stream)
{
    stx_archive_lag lag;
    int rc = stx_archive_lag_get(a, c->client, stream, &lag);
    if (rc != STX_OK) return cli_archive_fail(c, a, rc);
    if (c->json) {
        jw w;
        jw_init(&w);
        jw_obj(&w);
        jw_key(&w, "stream");
        jw_str(&w, stream);
        jw_key(&w, "offset");
        jw_str(&w, lag.offset);
        jw_key(&w, "archived");
        jw_i64(&w, lag.archived);
        jw_key(&w, "behind");
        if (lag.behind >= 0) jw_i64(&w, lag.behind);
        else jw_null(&w);
        jw_obj_end(&w);
        jw_print(&w, stdout);
        jw_free(&w);
    } else {
        printf("offset %s\narchived %lld\n", lag.offset, lag.archived);
        if (lag.behind >= 0) printf("behind %lld\n", lag.behind);
        else printf("behind ? (%s)\n", lag.has_group ? "Redis cannot tell" : "no archive group");
    }
    return 0;
}

#endif

int cmd_archive(cli *c, int argc, char **argv)
{
    cli_opt opts[] = {{"--pg", 1, NULL},   {"--init", 0, NULL}, {"--batch", 1, NULL},
                      {"--once", 0, NULL}, {"--status", 0, NULL}, {"--progress", 1, NULL}};
    int npos, rc;
    if ((rc = cli_parse(c, argc, argv, opts, 6, 0, 1, &npos, help)) != 0) return rc;
    long long every = 0;
    if (opts[5].value && (rc = cli_opt_ll(c, &opts[5], 1, &every)) != 0) return rc;
    if (!opts[0].value) return cli_fail(c, CLI_EXIT_USAGE, "--pg URL is required");
    if (!opts[1].value && npos != 1) return cli_fail(c, CLI_EXIT_USAGE, "missing STREAM");
    if (opts[1].value && npos != 0) return cli_fail(c, CLI_EXIT_USAGE, "--init takes no STREAM");
    long long batch = 0;
    if (opts[2].value && (rc = cli_opt_ll(c, &opts[2], 1, &batch)) != 0) return rc;
    if (batch > 100000) return cli_fail(c, CLI_EXIT_USAGE, "--batch: at most 100000");
#ifndef STX_HAVE_ARCHIVE
    return cli_no_archive(c, "archive");
#else
    stx_archive *a;
    if (opts[1].value || opts[4].value || opts[3].value) {
        if ((rc = cli_archive_open(c, opts[0].value, &a)) != 0) return rc;
    } else {
        /* A long-running archiver started before its database: the run
         * retries the connection like any later loss of it. */
        rc = stx_archive_open(&a, opts[0].value);
        if (rc == STX_ECONN) {
            cli_warn(c, "%s; retrying", message(c, a, rc));
        } else if (rc != STX_OK) {
            cli_fail(c, CLI_EXIT_RUNTIME, "%s", message(c, a, rc));
            stx_archive_close(a);
            return CLI_EXIT_RUNTIME;
        }
    }
    if (opts[1].value) {
        int from = 0;
        rc = stx_archive_migrate(a, &from);
        if (rc != STX_OK) {
            rc = cli_archive_fail(c, a, rc);
        } else if (c->json) {
            printf("{\"schema_from\":%d,\"schema\":%d}\n", from, STX_ARCHIVE_SCHEMA_VERSION);
        } else if (from == STX_ARCHIVE_SCHEMA_VERSION) {
            printf("archive schema at version %d already\n", from);
        } else {
            printf("archive schema migrated from version %d to %d\n", from,
                   STX_ARCHIVE_SCHEMA_VERSION);
        }
        stx_archive_close(a);
        return rc;
    }
    const char *stream = argv[0];
    if ((rc = cli_connect(c)) != 0) {
        stx_archive_close(a);
        return rc;
    }
    if (opts[4].value) {
        rc = status(c, a, stream);
        stx_archive_close(a);
        return rc;
    }
    progress pr = {0, mono_s()};
    if (every > 0) stx_archive_set_progress(a, on_progress, &pr, (long)every * 1000);
    running = a;
    struct sigaction sa;
    memset(&sa, 0, sizeof sa);
    sa.sa_handler = on_signal;
    sigaction(SIGINT, &sa, NULL);
    sigaction(SIGTERM, &sa, NULL);
    rc = stx_archive_run(a, c->client, stream, (size_t)batch, opts[3].value != NULL);
    stx_archive_stats st;
    stx_archive_stats_get(a, &st);
    if (rc != STX_OK) {
        rc = cli_archive_fail(c, a, rc);
    } else if (c->json) {
        jw w;
        jw_init(&w);
        jw_obj(&w);
        jw_key(&w, "stream");
        jw_str(&w, stream);
        jw_key(&w, "entries");
        jw_i64(&w, (long long)st.entries);
        jw_key(&w, "batches");
        jw_i64(&w, (long long)st.batches);
        jw_key(&w, "skipped");
        jw_i64(&w, (long long)st.skipped);
        jw_key(&w, "pg_reconnects");
        jw_i64(&w, (long long)st.pg_reconnects);
        jw_key(&w, "offset");
        jw_str(&w, st.offset);
        jw_obj_end(&w);
        jw_print(&w, stdout);
        jw_free(&w);
    } else {
        printf("archived %llu entries in %llu batches; offset %s\n",
               (unsigned long long)st.entries, (unsigned long long)st.batches,
               st.offset[0] ? st.offset : "-");
    }
    running = NULL;
    stx_archive_close(a);
    return rc;
#endif
}
