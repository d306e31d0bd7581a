/* stx top [STREAM [GROUP]]: a live view of streamtx groups and the
 * processors that publish heartbeats for them (stx_live_get()). */
#include <signal.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "cli.h"

static const char help[] =
    "usage: stx top [STREAM [GROUP]] [--interval DURATION] [--once] [--json]\n"
    "\n"
    "A live view of streamtx groups and their processors, refreshed every\n"
    "--interval (default 1s) until Ctrl-C.  Without STREAM: every stream that\n"
    "has a streamtx group (found with SCAN).  For each group: the throughput\n"
    "(messages committed per second, summed over its live processors), the lag\n"
    "(entries not yet delivered) and its trend (change per second since the\n"
    "last frame), the p99 commit latency of the last heartbeat interval,\n"
    "handler failures, dead letters (the DLQ length), pending entries and the\n"
    "commits not acknowledged by commit_wait_replicas replicas in time (UNREPL;\n"
    "0 when commit_wait_replicas is off); then\n"
    "one line per live processor: consumer, host:pid, phase, rate, committed,\n"
    "age of its heartbeat and its last error.\n"
    "\n"
    "Processors publish their stats every stats_interval_ms (default 5 s), so\n"
    "the rates are those of the last heartbeat interval.\n"
    "\n"
    "  --interval D   time between frames (e.g. 500ms, 2s; default 1s)\n"
    "  --once         print one frame and exit (lag_trend_per_s is then null)\n"
    "  --json         one JSON object per frame, on one line:\n"
    "    {\"at_ms\":..,\"groups\":[{\"stream\":..,\"group\":..,\"offset\":..,\"epoch\":..,\n"
    "     \"lag\":..|null,\"lag_trend_per_s\":..|null,\"pending\":..,\"dlq_length\":..,\n"
    "     \"committed_per_s\":..,\"handled_per_s\":..,\"failures_per_s\":..,\n"
    "     \"dead_lettered_per_s\":..,\"commit_us_p99\":..,\"handler_failures\":..,\n"
    "     \"dead_lettered\":..,\"commits_unreplicated\":..,\"processors\":[PROCESSOR...]}]}\n"
    "    PROCESSOR as in stx info --json.\n"
    "\n"
    "Exit codes: 3 when STREAM or GROUP does not exist.\n";

/* One group of one frame. */
typedef struct group_row {
    char *stream;
    stx_group_info g;           /* name points into info, copied below */
    char *group;
    stx_live *live;
    int have_prev;              /* the previous frame had this group */
    long long prev_lag;
    double lag_trend;           /* per second; valid with have_prev and lag >= 0 */
} group_row;

typedef struct frame {
    size_t n, cap;
    group_row *rows;
    long long at_ms;
} frame;

static void frame_free(frame *f)
{
    for (size_t i = 0; i < f->n; i++) {
        free(f->rows[i].stream);
        free(f->rows[i].group);
        stx_live_free(f->rows[i].live);
    }
    free(f->rows);
    memset(f, 0, sizeof *f);
}

static volatile sig_atomic_t stop_asked;

static void on_signal(int sig)
{
    (void)sig;
    stop_asked = 1;
}

static void *xrealloc(void *p, size_t n)
{
    void *q = realloc(p, n);
    if (!q) {
        fputs("stx: top: out of memory\n", stderr);
        exit(CLI_EXIT_RUNTIME);
    }
    return q;
}

static char *xstrdup(const char *s)
{
    return strcpy(xrealloc(NULL, strlen(s) + 1), s);
}

/* Every stream key (on every master of a cluster), into *names. */
static int scan_streams(cli *c, char ***names, size_t *n)
{
    int rc = stx_stream_names(c->client, names, n);
    return rc == STX_OK ? 0 : cli_fail_stx(c, rc, "listing streams");
}

static int by_name(const void *a, const void *b)
{
    return strcmp(*(char *const *)a, *(char *const *)b);
}

/* Add the streamtx groups of stream (only `only` when not NULL) to f.
 * explicit: the stream was named, so a missing one is an error. */
static int add_stream(cli *c, frame *f, const char *stream, const char *only, int explicit)
{
    stx_stream_info *info = NULL;
    int rc = stx_stream_info_get(c->client, stream, &info);
    if (rc != STX_OK) {
        if (!explicit && (rc == STX_ENOTFOUND || rc == STX_EWRONGTYPE))
            return 0; /* deleted since the SCAN */
        return cli_fail_stream(c, rc, stream);
    }
    int found = 0;
    for (size_t i = 0; i < info->ngroups; i++) {
        const stx_group_info *g = &info->groups[i];
        if (only ? strcmp(g->name, only) != 0 : !g->offset[0])
            continue;
        found = 1;
        if (f->n == f->cap) {
            f->cap = f->cap ? 2 * f->cap : 8;
            f->rows = xrealloc(f->rows, f->cap * sizeof *f->rows);
        }
        group_row *row = &f->rows[f->n];
        memset(row, 0, sizeof *row);
        row->stream = xstrdup(stream);
        row->group = xstrdup(g->name);
        row->g = *g;
        row->g.name = row->group;
        rc = stx_live_get(c->client, stream, g->name, &row->live);
        if (rc != STX_OK) {
            free(row->stream);
            free(row->group);
            stx_stream_info_free(info);
            return cli_fail_stx(c, rc, "reading the live processors");
        }
        f->n++;
    }
    stx_stream_info_free(info);
    if (only && !found)
        return cli_fail(c, CLI_EXIT_NOTFOUND, "stream '%s' has no group '%s'", stream, only);
    return 0;
}

static int take_frame(cli *c, frame *f, const char *stream, const char *group)
{
    f->at_ms = cli_now_ms();
    if (stream)
        return add_stream(c, f, stream, group, 1);
    char **names;
    size_t n;
    int rc = scan_streams(c, &names, &n);
    if (rc == 0 && n > 1)
        qsort(names, n, sizeof *names, by_name);
    for (size_t i = 0; rc == 0 && i < n; i++)
        rc = add_stream(c, f, names[i], NULL, 0);
    for (size_t i = 0; i < n; i++)
        free(names[i]);
    free(names);
    return rc;
}

/* Lag trends against the previous frame. */
static void trend(frame *f, const frame *prev)
{
    for (size_t i = 0; prev && i < f->n; i++) {
        group_row *r = &f->rows[i];
        for (size_t k = 0; k < prev->n; k++) {
            const group_row *q = &prev->rows[k];
            if (strcmp(q->stream, r->stream) || strcmp(q->group, r->group) || q->g.lag < 0 ||
                r->g.lag < 0 || f->at_ms <= prev->at_ms)
                continue;
            r->have_prev = 1;
            r->prev_lag = q->g.lag;
            r->lag_trend = (double)(r->g.lag - q->g.lag) * 1000.0 / (double)(f->at_ms - prev->at_ms);
        }
    }
}

/* Sums over a group's live processors. */
typedef struct sums {
    double committed, handled, failures, dead;
    uint64_t p99, handler_failures, dead_lettered, unreplicated;
} sums;

static sums sum_of(const stx_live *l)
{
    sums s = {0};
    for (size_t i = 0; i < l->n; i++) {
        const stx_live_processor *p = &l->procs[i];
        s.committed += p->committed_per_s;
        s.handled += p->handled_per_s;
        s.failures += p->failures_per_s;
        s.dead += p->dead_lettered_per_s;
        if (p->interval_commit_us_p99 > s.p99)
            s.p99 = p->interval_commit_us_p99;
        s.handler_failures += p->stats.handler_failures;
        s.dead_lettered += p->stats.dead_lettered;
        s.unreplicated += p->stats.commits_unreplicated;
    }
    return s;
}

void cli_live_json(jw *w, const stx_live_processor *p, long long now_ms)
{
    jw_obj(w);
    jw_key(w, "id");
    jw_str(w, p->id);
    jw_key(w, "consumer");
    jw_str(w, p->consumer);
    jw_key(w, "host");
    jw_str(w, p->host);
    jw_key(w, "pid");
    jw_i64(w, p->pid);
    jw_key(w, "version");
    jw_str(w, p->version);
    jw_key(w, "phase");
    jw_str(w, p->phase);
    jw_key(w, "epoch");
    jw_u64(w, p->epoch);
    jw_key(w, "offset");
    jw_str(w, p->offset);
    jw_key(w, "started_at_ms");
    jw_i64(w, p->started_at_ms);
    jw_key(w, "at_ms");
    jw_i64(w, p->at_ms);
    jw_key(w, "age_ms");
    jw_i64(w, now_ms - p->at_ms);
    jw_key(w, "interval_ms");
    jw_i64(w, p->interval_ms);
    static const char *const rate_names[] = {"committed_per_s", "handled_per_s",
                                             "failures_per_s", "dead_lettered_per_s"};
    const double rates[] = {p->committed_per_s, p->handled_per_s, p->failures_per_s,
                            p->dead_lettered_per_s};
    for (size_t i = 0; i < 4; i++) {
        jw_key(w, rate_names[i]);
        jw_value_prefix(w);
        jb_printf(&w->b, "%.3f", rates[i]);
    }
    const struct { const char *name; uint64_t v; } nums[] = {
        {"handled", p->stats.handled},
        {"committed", p->stats.committed},
        {"commits", p->stats.commits},
        {"duplicates", p->stats.duplicates},
        {"handler_failures", p->stats.handler_failures},
        {"retries", p->stats.retries},
        {"dead_lettered", p->stats.dead_lettered},
        {"reconnects", p->stats.reconnects},
        {"fenced", p->stats.fenced},
        {"slow_handlers", p->stats.slow_handlers},
        {"overlapped", p->stats.overlapped},
        {"state_keys", p->stats.state_keys},
        {"commit_us_p50", p->stats.commit_us_p50},
        {"commit_us_p99", p->stats.commit_us_p99},
        {"commit_us_max", p->stats.commit_us_max},
        {"commits_unreplicated", p->stats.commits_unreplicated},
        {"interval_commit_us_p50", p->interval_commit_us_p50},
        {"interval_commit_us_p99", p->interval_commit_us_p99},
    };
    for (size_t i = 0; i < sizeof nums / sizeof nums[0]; i++) {
        jw_key(w, nums[i].name);
        jw_u64(w, nums[i].v);
    }
    jw_key(w, "last_error");
    if (p->last_error[0])
        jw_str(w, p->last_error);
    else
        jw_null(w);
    jw_obj_end(w);
}

static void print_json(const frame *f)
{
    jw w;
    jw_init(&w);
    jw_obj(&w);
    jw_key(&w, "at_ms");
    jw_i64(&w, f->at_ms);
    jw_key(&w, "groups");
    jw_arr(&w);
    for (size_t i = 0; i < f->n; i++) {
        const group_row *r = &f->rows[i];
        sums s = sum_of(r->live);
        jw_obj(&w);
        jw_key(&w, "stream");
        jw_str(&w, r->stream);
        jw_key(&w, "group");
        jw_str(&w, r->group);
        jw_key(&w, "offset");
        if (r->g.offset[0])
            jw_str(&w, r->g.offset);
        else
            jw_null(&w);
        jw_key(&w, "epoch");
        jw_u64(&w, r->g.epoch);
        jw_key(&w, "lag");
        if (r->g.lag < 0)
            jw_null(&w);
        else
            jw_i64(&w, r->g.lag);
        jw_key(&w, "lag_trend_per_s");
        if (r->have_prev) {
            jw_value_prefix(&w);
            jb_printf(&w.b, "%.3f", r->lag_trend);
        } else {
            jw_null(&w);
        }
        jw_key(&w, "pending");
        jw_i64(&w, r->g.pending);
        jw_key(&w, "dlq_length");
        jw_i64(&w, r->g.dlq_length);
        const char *const names[] = {"committed_per_s", "handled_per_s", "failures_per_s",
                                     "dead_lettered_per_s"};
        const double v[] = {s.committed, s.handled, s.failures, s.dead};
        for (size_t k = 0; k < 4; k++) {
            jw_key(&w, names[k]);
            jw_value_prefix(&w);
            jb_printf(&w.b, "%.3f", v[k]);
        }
        jw_key(&w, "commit_us_p99");
        jw_u64(&w, s.p99);
        jw_key(&w, "handler_failures");
        jw_u64(&w, s.handler_failures);
        jw_key(&w, "dead_lettered");
        jw_u64(&w, s.dead_lettered);
        jw_key(&w, "commits_unreplicated");
        jw_u64(&w, s.unreplicated);
        jw_key(&w, "processors");
        jw_arr(&w);
        for (size_t k = 0; k < r->live->n; k++)
            cli_live_json(&w, &r->live->procs[k], f->at_ms);
        jw_arr_end(&w);
        jw_obj_end(&w);
    }
    jw_arr_end(&w);
    jw_obj_end(&w);
    jw_print(&w, stdout);
    jw_free(&w);
}

static const char *trend_text(const group_row *r, char *buf, size_t cap)
{
    if (!r->have_prev)
        return "-";
    if (r->lag_trend > 0.05)
        snprintf(buf, cap, "up %.1f/s", r->lag_trend);
    else if (r->lag_trend < -0.05)
        snprintf(buf, cap, "down %.1f/s", -r->lag_trend);
    else
        snprintf(buf, cap, "steady");
    return buf;
}

static void print_human(const frame *f, int live)
{
    time_t secs = (time_t)(f->at_ms / 1000);
    struct tm tm;
    gmtime_r(&secs, &tm);
    char when[32];
    strftime(when, sizeof when, "%Y-%m-%dT%H:%M:%SZ", &tm);
    if (live)
        fputs("\033[H\033[2J", stdout); /* home, clear screen */
    printf("stx top  %s  %zu group%s\n\n", when, f->n, f->n == 1 ? "" : "s");
    if (!f->n) {
        puts("no streamtx groups");
        return;
    }
    table t;
    tbl_init(&t, 12);
    static const char *const heads[] = {"STREAM", "GROUP",  "PROCS", "RATE/S",  "LAG",    "TREND",
                                        "P99-MS", "FAILED", "DLQ",   "PENDING", "UNREPL", "PHASE"};
    for (size_t k = 0; k < 12; k++)
        tbl_cell(&t, heads[k]);
    for (size_t i = 0; i < f->n; i++) {
        const group_row *r = &f->rows[i];
        sums s = sum_of(r->live);
        char buf[48];
        tbl_cell(&t, r->stream);
        tbl_cell(&t, r->group);
        tbl_cellf(&t, "%zu", r->live->n);
        tbl_cellf(&t, "%.1f", s.committed);
        if (r->g.lag < 0)
            tbl_cell(&t, "?");
        else
            tbl_cellf(&t, "%lld", r->g.lag);
        tbl_cell(&t, trend_text(r, buf, sizeof buf));
        tbl_cellf(&t, "%.1f", (double)s.p99 / 1000.0);
        tbl_cellf(&t, "%llu", (unsigned long long)s.handler_failures);
        tbl_cellf(&t, "%lld", r->g.dlq_length);
        tbl_cellf(&t, "%lld", r->g.pending);
        tbl_cellf(&t, "%llu", (unsigned long long)s.unreplicated);
        tbl_cell(&t, r->live->n ? r->live->procs[0].phase : "-");
    }
    tbl_print(&t, stdout);
    tbl_free(&t);

    int any = 0;
    for (size_t i = 0; i < f->n; i++)
        any |= f->rows[i].live->n > 0;
    if (!any)
        return;
    fputc('\n', stdout);
    tbl_init(&t, 9);
    static const char *const pheads[] = {"GROUP",     "CONSUMER", "HOST:PID", "PHASE", "RATE/S",
                                         "COMMITTED", "P99-MS",   "AGE",      "LAST-ERROR"};
    for (size_t k = 0; k < 9; k++)
        tbl_cell(&t, pheads[k]);
    for (size_t i = 0; i < f->n; i++) {
        const group_row *r = &f->rows[i];
        for (size_t k = 0; k < r->live->n; k++) {
            const stx_live_processor *p = &r->live->procs[k];
            tbl_cellf(&t, "%s/%s", r->stream, r->group);
            tbl_cell(&t, p->consumer);
            tbl_cellf(&t, "%s:%lld", p->host, p->pid);
            tbl_cell(&t, p->phase);
            tbl_cellf(&t, "%.1f", p->committed_per_s);
            tbl_cellf(&t, "%llu", (unsigned long long)p->stats.committed);
            tbl_cellf(&t, "%.1f", (double)p->interval_commit_us_p99 / 1000.0);
            tbl_cellf(&t, "%llds", (f->at_ms - p->at_ms) / 1000);
            tbl_cell(&t, p->last_error[0] ? p->last_error : "-");
        }
    }
    tbl_print(&t, stdout);
    tbl_free(&t);
}

int cmd_top(cli *c, int argc, char **argv)
{
    cli_opt opts[] = {{"--interval", 1, NULL}, {"--once", 0, NULL}};
    int npos, rc;
    if ((rc = cli_parse(c, argc, argv, opts, 2, 0, 2, &npos, help)) != 0)
        return rc;
    const char *stream = npos > 0 ? argv[0] : NULL, *group = npos > 1 ? argv[1] : NULL;
    int64_t interval = 1000;
    if (opts[0].value && (cli_parse_duration(opts[0].value, &interval) != 0 || interval <= 0))
        return cli_fail(c, CLI_EXIT_USAGE, "bad --interval '%s': expected a duration such as "
                        "500ms or 2s", opts[0].value);
    int once = opts[1].value != NULL;
    if ((rc = cli_connect(c)) != 0)
        return rc;
    int tty = !c->json && isatty(STDOUT_FILENO);
    if (!once) {
        struct sigaction sa;
        memset(&sa, 0, sizeof sa);
        sa.sa_handler = on_signal;
        sigaction(SIGINT, &sa, NULL);
        sigaction(SIGTERM, &sa, NULL);
        if (tty)
            fputs("\033[?25l", stdout); /* hide the cursor while frames redraw */
    }
    frame prev = {0}, cur = {0};
    int have_prev = 0;
    for (;;) {
        rc = take_frame(c, &cur, stream, group);
        if (rc != 0)
            break;
        trend(&cur, have_prev ? &prev : NULL);
        if (c->json)
            print_json(&cur);
        else
            print_human(&cur, tty);
        fflush(stdout);
        frame_free(&prev);
        prev = cur;
        memset(&cur, 0, sizeof cur);
        have_prev = 1;
        if (once)
            break;
        for (int64_t slept = 0; slept < interval && !stop_asked; slept += 50) {
            struct timespec ts = {0, 50 * 1000000L};
            nanosleep(&ts, NULL);
        }
        if (stop_asked)
            break;
    }
    frame_free(&cur);
    frame_free(&prev);
    if (!once && tty)
        fputs("\033[?25h", stdout);
    return rc;
}
