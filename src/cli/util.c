/* Shared parts of the stx tool: messages and exit codes, argument parsing,
 * ids and times, tables and entry output. */
#include <errno.h>
#include <limits.h>
#include <stdarg.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "cli.h"

/* ------------------------------------------------------------------ */
/* messages                                                             */

static void emit_line(const char *sub, const char *kind, const char *fmt, va_list ap)
{
    char msg[2048];
    vsnprintf(msg, sizeof msg, fmt, ap);
    /* One line, always: whatever a message quotes (names, Redis error
     * text) cannot break it. */
    for (char *p = msg; *p; p++)
        if ((unsigned char)*p < 0x20 || *p == 0x7f)
            *p = ' ';
    fprintf(stderr, "stx: %s%s%s%s\n", sub ? sub : "", sub ? ": " : "", kind, msg);
}

int cli_fail(const cli *c, int code, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    emit_line(c ? c->sub : NULL, "", fmt, ap);
    va_end(ap);
    return code;
}

void cli_warn(const cli *c, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    emit_line(c ? c->sub : NULL, "warning: ", fmt, ap);
    va_end(ap);
}

int cli_exit_code(int rc)
{
    switch (rc) {
    case STX_OK:
        return CLI_EXIT_OK;
    case STX_EINVAL:
    case STX_EINVALID_CURSOR:
        return CLI_EXIT_USAGE;
    case STX_ENOTFOUND:
    case STX_ENOGROUP:
        return CLI_EXIT_NOTFOUND;
    case STX_EWRONGTYPE:
        return CLI_EXIT_WRONGTYPE;
    case STX_ECONFLICT:
        return CLI_EXIT_CONFLICT;
    case STX_EWINDOW_EXPIRED:
        return CLI_EXIT_WINDOW;
    default:
        return CLI_EXIT_RUNTIME;
    }
}

int cli_fail_stream(const cli *c, int rc, const char *stream)
{
    if (rc == STX_ENOTFOUND)
        return cli_fail(c, CLI_EXIT_NOTFOUND, "stream '%s' does not exist", stream);
    if (rc == STX_EWRONGTYPE)
        return cli_fail(c, CLI_EXIT_WRONGTYPE, "key '%s' is not a stream", stream);
    return cli_fail_stx(c, rc, stream);
}

int cli_fail_stx(const cli *c, int rc, const char *what)
{
    const char *msg = c->client ? stx_client_errmsg(c->client) : "";
    if (!msg || !*msg)
        msg = stx_strerror(rc);
    /* The library names the operation first ("reset: ..."): do not say
     * it twice. */
    size_t n = c->sub ? strlen(c->sub) : 0;
    if (n && strncmp(msg, c->sub, n) == 0 && msg[n] == ':' && msg[n + 1] == ' ')
        msg += n + 2;
    if (what)
        return cli_fail(c, cli_exit_code(rc), "%s: %s", what, msg);
    return cli_fail(c, cli_exit_code(rc), "%s", msg);
}

int cli_client_open(const cli *c, stx_client **out, char *err, size_t errlen)
{
    *out = NULL;
    err[0] = '\0';
    stx_config *conf = stx_config_new();
    if (!conf) {
        snprintf(err, errlen, "out of memory");
        return STX_ENOMEM;
    }
    int rc = stx_config_set(conf, "url", c->url, err, errlen);
    if (rc == STX_OK && c->command_timeout_ms > 0) {
        char v[32];
        snprintf(v, sizeof v, "%ld", c->command_timeout_ms);
        rc = stx_config_set(conf, "command_timeout_ms", v, err, errlen);
    }
    if (rc != STX_OK) {
        stx_config_free(conf);
        return rc;
    }
    rc = stx_client_new(out, conf);
    stx_config_free(conf);
    if (rc != STX_OK)
        snprintf(err, errlen, "%s", *out && *stx_client_errmsg(*out) ? stx_client_errmsg(*out)
                                                                   : stx_strerror(rc));
    return rc;
}

int cli_connect(cli *c)
{
    char err[512];
    int rc = cli_client_open(c, &c->client, err, sizeof err);
    if (rc == STX_OK)
        return 0;
    stx_client_free(c->client);
    c->client = NULL;
    if (rc == STX_EINVAL)
        return cli_fail(c, CLI_EXIT_USAGE, "bad --url: %s", err);
    return cli_fail(c, cli_exit_code(rc), "cannot connect: %s", err);
}

/* ------------------------------------------------------------------ */
/* arguments                                                            */

static int is_global(const char *name, const char *arg, size_t n)
{
    return strlen(name) == n && strncmp(name, arg, n) == 0;
}

int cli_parse(cli *c, int argc, char **argv, cli_opt *opts, size_t nopts, int min_pos,
              int max_pos, int *npos, const char *help)
{
    int n = 0, no_more_opts = 0;
    for (int i = 0; i < argc; i++) {
        char *a = argv[i];
        if (no_more_opts || a[0] != '-' || a[1] == '\0') {
            argv[n++] = a;
            continue;
        }
        if (strcmp(a, "--") == 0) {
            no_more_opts = 1;
            continue;
        }
        if (strcmp(a, "--help") == 0 || strcmp(a, "-h") == 0) {
            fputs(help, stdout);
            return -1;
        }
        if (a[1] != '-')
            return cli_fail(c, CLI_EXIT_USAGE, "unknown option '%s' (see stx %s --help)", a,
                            c->sub);
        const char *eq = strchr(a, '=');
        size_t len = eq ? (size_t)(eq - a) : strlen(a);
        const char *value = eq ? eq + 1 : NULL;
        int has_arg;
        cli_opt *o = NULL;
        if (is_global("--json", a, len)) {
            has_arg = 0;
        } else if (is_global("--url", a, len)) {
            has_arg = 1;
        } else {
            for (size_t k = 0; k < nopts; k++)
                if (is_global(opts[k].name, a, len))
                    o = &opts[k];
            if (!o)
                return cli_fail(c, CLI_EXIT_USAGE, "unknown option '%.*s' (see stx %s --help)",
                                (int)len, a, c->sub);
            has_arg = o->has_arg;
        }
        if (!has_arg && value)
            return cli_fail(c, CLI_EXIT_USAGE, "option %.*s takes no value", (int)len, a);
        if (has_arg && !value) {
            if (i + 1 >= argc)
                return cli_fail(c, CLI_EXIT_USAGE, "option %s needs a value", a);
            value = argv[++i];
        }
        if (is_global("--json", a, len))
            c->json = 1;
        else if (is_global("--url", a, len))
            c->url = value;
        else
            o->value = has_arg ? value : "1";
    }
    *npos = n;
    if (n < min_pos)
        return cli_fail(c, CLI_EXIT_USAGE, "missing arguments (see stx %s --help)", c->sub);
    if (max_pos >= 0 && n > max_pos)
        return cli_fail(c, CLI_EXIT_USAGE, "unexpected argument '%s' (see stx %s --help)",
                        argv[max_pos], c->sub);
    return 0;
}

static int parse_u64(const char *s, size_t len, uint64_t *out)
{
    if (len == 0 || len > 20)
        return -1;
    uint64_t v = 0;
    for (size_t i = 0; i < len; i++) {
        if (s[i] < '0' || s[i] > '9')
            return -1;
        unsigned d = (unsigned)(s[i] - '0');
        if (v > (UINT64_MAX - d) / 10)
            return -1;
        v = v * 10 + d;
    }
    *out = v;
    return 0;
}

int cli_opt_ll(const cli *c, const cli_opt *o, long long min, long long *out)
{
    uint64_t v;
    if (parse_u64(o->value, strlen(o->value), &v) != 0 || v > (uint64_t)LLONG_MAX ||
        (long long)v < min)
        return cli_fail(c, CLI_EXIT_USAGE, "bad value '%s' for %s: expected an integer >= %lld",
                        o->value, o->name, min);
    *out = (long long)v;
    return 0;
}

/* ------------------------------------------------------------------ */
/* ids, times, durations                                                */

int cli_parse_id(const char *s, cli_id *out)
{
    const char *dash = strchr(s, '-');
    out->seq = 0;
    out->has_seq = dash != NULL;
    if (!dash)
        return parse_u64(s, strlen(s), &out->ms);
    if (parse_u64(s, (size_t)(dash - s), &out->ms) != 0)
        return -1;
    return parse_u64(dash + 1, strlen(dash + 1), &out->seq);
}

static int digits(const char *s, int n, int *out)
{
    int v = 0;
    for (int i = 0; i < n; i++) {
        if (s[i] < '0' || s[i] > '9')
            return -1;
        v = v * 10 + (s[i] - '0');
    }
    *out = v;
    return 0;
}

/* Days from 1970-01-01 to y-m-d in the proleptic Gregorian calendar. */
static int64_t days_from_civil(int64_t y, int m, int d)
{
    y -= m <= 2;
    int64_t era = (y >= 0 ? y : y - 399) / 400;
    int64_t yoe = y - era * 400;
    int64_t doy = (153 * (m + (m > 2 ? -3 : 9)) + 2) / 5 + d - 1;
    int64_t doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    return era * 146097 + doe - 719468;
}

int cli_parse_time(const char *s, int64_t *ms)
{
    int y, mo, d, h, mi, sec, frac = 0;
    size_t n = strlen(s);
    if (n < 20 || s[4] != '-' || s[7] != '-' || s[10] != 'T' || s[13] != ':' ||
        s[16] != ':')
        return -1;
    if (digits(s, 4, &y) || digits(s + 5, 2, &mo) || digits(s + 8, 2, &d) ||
        digits(s + 11, 2, &h) || digits(s + 14, 2, &mi) || digits(s + 17, 2, &sec))
        return -1;
    const char *p = s + 19;
    if (*p == '.') {
        int nd = 0;
        p++;
        while (p[nd] >= '0' && p[nd] <= '9')
            nd++;
        if (nd < 1 || nd > 3 || digits(p, nd, &frac))
            return -1;
        for (int k = nd; k < 3; k++)
            frac *= 10;
        p += nd;
    }
    if (strcmp(p, "Z") != 0)
        return -1;
    static const int mdays[] = {31, 28, 31, 30, 31, 30, 31, 31, 30, 31, 30, 31};
    int leap = (y % 4 == 0 && y % 100 != 0) || y % 400 == 0;
    if (y < 1970 || mo < 1 || mo > 12 || d < 1 || d > mdays[mo - 1] + (mo == 2 && leap) ||
        h > 23 || mi > 59 || sec > 59)
        return -1;
    int64_t days = days_from_civil(y, mo, d);
    *ms = ((days * 24 + h) * 60 + mi) * 60000 + (int64_t)sec * 1000 + frac;
    return 0;
}

int cli_looks_like_time(const char *s)
{
    const char *dash = strchr(s, '-');
    return strchr(s, 'T') || strchr(s, ':') || strchr(s, 'Z') || (dash && strchr(dash + 1, '-'));
}

int cli_parse_duration(const char *s, int64_t *ms)
{
    static const struct { const char *unit; int64_t ms; } units[] = {
        {"ms", 1}, {"s", 1000}, {"m", 60000}, {"h", 3600000}, {"d", 86400000},
        {"w", 604800000},
    };
    int64_t total = 0;
    if (!*s)
        return -1;
    while (*s) {
        size_t nd = 0;
        while (s[nd] >= '0' && s[nd] <= '9')
            nd++;
        uint64_t v;
        if (parse_u64(s, nd, &v) != 0)
            return -1;
        s += nd;
        size_t nu = 0;
        while (s[nu] && (s[nu] < '0' || s[nu] > '9'))
            nu++;
        int64_t mult = 0;
        for (size_t k = 0; k < sizeof units / sizeof units[0]; k++)
            if (strlen(units[k].unit) == nu && strncmp(units[k].unit, s, nu) == 0)
                mult = units[k].ms;
        if (!mult || v > (uint64_t)(INT64_MAX / mult) ||
            (int64_t)v * mult > INT64_MAX - total)
            return -1;
        total += (int64_t)v * mult;
        s += nu;
    }
    *ms = total;
    return 0;
}

int cli_point(const cli *c, const char *opt, const char *s, int is_end, char *out, size_t cap)
{
    cli_id id;
    int64_t t;
    if (strcmp(s, is_end ? "+" : "-") == 0) {
        snprintf(out, cap, "%s", is_end ? "+" : "0-0");
        return 0;
    }
    if (cli_parse_id(s, &id) == 0) {
        if (!is_end) {
            /* The id just before ms-seq: the cursor is exclusive. */
            if (id.seq > 0)
                id.seq--;
            else if (id.ms > 0) {
                id.ms--;
                id.seq = UINT64_MAX;
            }
        } else if (!id.has_seq) {
            id.seq = UINT64_MAX;
        }
    } else if (cli_parse_time(s, &t) == 0) {
        id.ms = (uint64_t)t;
        id.seq = UINT64_MAX;
        if (!is_end) {
            if (id.ms > 0)
                id.ms--;
            else
                id.seq = 0;
        }
    } else if (cli_looks_like_time(s)) {
        return cli_fail(c, CLI_EXIT_USAGE,
                        "bad time '%s' for %s: expected an ISO-8601 UTC time such as "
                        "2026-11-22T10:00:00Z or 2026-11-22T10:00:00.250Z",
                        s, opt);
    } else {
        return cli_fail(c, CLI_EXIT_USAGE,
                        "bad id '%s' for %s: expected MS-SEQ, MS, an ISO-8601 UTC time or %s", s,
                        opt, is_end ? "+" : "-");
    }
    snprintf(out, cap, "%llu-%llu", (unsigned long long)id.ms, (unsigned long long)id.seq);
    return 0;
}

int64_t cli_now_ms(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_REALTIME, &ts);
    return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

/* ------------------------------------------------------------------ */
/* tables and entries                                                   */

void tbl_init(table *t, size_t ncols)
{
    memset(t, 0, sizeof *t);
    t->ncols = ncols;
}

void tbl_free(table *t)
{
    for (size_t i = 0; i < t->ncells; i++)
        free(t->cells[i]);
    free(t->cells);
    memset(t, 0, sizeof *t);
}

static void tbl_push(table *t, char *owned)
{
    if (t->ncells == t->cap) {
        size_t cap = t->cap ? 2 * t->cap : 32;
        char **cells = realloc(t->cells, cap * sizeof *cells);
        if (!cells) {
            fputs("stx: out of memory\n", stderr);
            exit(1);
        }
        t->cells = cells;
        t->cap = cap;
    }
    t->cells[t->ncells++] = owned;
}

void tbl_celln(table *t, const void *s, size_t n)
{
    jbuf b;
    jb_init(&b);
    jb_human_str(&b, s, n, 0);
    if (!b.p)
        jb_puts(&b, "");
    tbl_push(t, b.p);
}

void tbl_cell_escaped(table *t, const char *s)
{
    jbuf b;
    jb_init(&b);
    jb_puts(&b, s);
    tbl_push(t, b.p);
}

void tbl_cell(table *t, const char *s)
{
    tbl_celln(t, s, strlen(s));
}

void tbl_cellf(table *t, const char *fmt, ...)
{
    char buf[256];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(buf, sizeof buf, fmt, ap);
    va_end(ap);
    tbl_cell(t, buf);
}

/* Width on a terminal: UTF-8 continuation bytes take no column. */
static size_t text_width(const char *s)
{
    size_t w = 0;
    for (; *s; s++)
        w += ((unsigned char)*s & 0xc0) != 0x80;
    return w;
}

void tbl_print(const table *t, FILE *f)
{
    if (t->ncols == 0)
        return;
    size_t *width = calloc(t->ncols, sizeof *width);
    if (!width) {
        fputs("stx: out of memory\n", stderr);
        exit(1);
    }
    for (size_t i = 0; i < t->ncells; i++) {
        size_t w = text_width(t->cells[i]);
        if (w > width[i % t->ncols])
            width[i % t->ncols] = w;
    }
    for (size_t i = 0; i < t->ncells; i++) {
        size_t col = i % t->ncols;
        fputs(t->cells[i], f);
        if (col + 1 == t->ncols || i + 1 == t->ncells) {
            fputc('\n', f);
        } else {
            for (size_t k = text_width(t->cells[i]); k < width[col] + 2; k++)
                fputc(' ', f);
        }
    }
    free(width);
}

void out_entry_line(jbuf *b, const stx_msg *m)
{
    jb_puts(b, stx_msg_id(m));
    size_t n = stx_msg_field_count(m);
    for (size_t i = 0; i < n; i++) {
        const char *name, *value;
        size_t nl, vl;
        if (stx_msg_field(m, i, &name, &nl, &value, &vl) != STX_OK)
            break;
        jb_putc(b, ' ');
        jb_human_str(b, name, nl, 1);
        jb_putc(b, '=');
        jb_human_str(b, value, vl, 1);
    }
}

void out_entry_json(jw *w, const stx_msg *m)
{
    jw_obj(w);
    jw_key(w, "id");
    jw_str(w, stx_msg_id(m));
    jw_key(w, "fields");
    jw_obj(w);
    size_t n = stx_msg_field_count(m);
    for (size_t i = 0; i < n; i++) {
        const char *name, *value;
        size_t nl, vl;
        if (stx_msg_field(m, i, &name, &nl, &value, &vl) != STX_OK)
            break;
        jw_keyn(w, name, nl);
        jw_strn(w, value, vl);
    }
    jw_obj_end(w);
    jw_obj_end(w);
}

int cli_finish(const cli *c)
{
    if (fflush(stdout) != 0 || ferror(stdout))
        return cli_fail(c, CLI_EXIT_RUNTIME, "cannot write the output: %s", strerror(errno));
    return 0;
}
