/* Shared parts of the stx tool: messages and exit codes, argument parsing,
 * ids and times, tables and entry output. */
#include <errno.h>
#include <getopt.h>
#include <limits.h>
#include <stdarg.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "cli.h"

/* ------------------------------------------------------------------ */
/* messages                                                             */

/* The name of an exit code in JSON errors. */
static const char *exit_name(int code)
{
    switch (code) {
    case CLI_EXIT_USAGE: return "usage";
    case CLI_EXIT_NOTFOUND: return "not_found";
    case CLI_EXIT_WRONGTYPE: return "wrong_type";
    case CLI_EXIT_CONFLICT: return "conflict";
    case CLI_EXIT_WINDOW: return "window_expired";
    case CLI_EXIT_DECLINED: return "declined";
    default: return "runtime";
    }
}

/* One line on stderr: "stx: SUB: KIND MESSAGE", or with --json an object
 * {"error"|"warning":MESSAGE,"command":SUB,"code":NAME,"exit":N} (code and
 * exit for errors: exit < 0 is a warning). */
static void emit_line(const cli *c, int exit, const char *fmt, va_list ap)
{
    char msg[2048];
    const char *sub = c ? c->sub : NULL;
    vsnprintf(msg, sizeof msg, fmt, ap);
    if (c && c->json) {
        jw w;
        jw_init(&w);
        jw_obj(&w);
        jw_key(&w, exit < 0 ? "warning" : "error");
        jw_str(&w, msg);
        jw_key(&w, "command");
        jw_str(&w, sub);
        if (exit >= 0) {
            jw_key(&w, "code");
            jw_str(&w, exit_name(exit));
            jw_key(&w, "exit");
            jw_i64(&w, exit);
        }
        jw_obj_end(&w);
        jw_print(&w, stderr);
        jw_free(&w);
        return;
    }
    /* One line, always: whatever a message quotes (names, Redis error
     * text) cannot break it. */
    for (char *p = msg; *p; p++)
        if ((unsigned char)*p < 0x20 || *p == 0x7f)
            *p = ' ';
    fprintf(stderr, "stx: %s%s%s%s\n", sub ? sub : "", sub ? ": " : "",
            exit < 0 ? "warning: " : "", msg);
}

int cli_fail(const cli *c, int code, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    emit_line(c, code, fmt, ap);
    va_end(ap);
    return code;
}

void cli_warn(const cli *c, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    emit_line(c, -1, fmt, ap);
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

int cli_fail_nogroup(const cli *c, const char *stream, const char *group)
{
    return cli_fail(c, CLI_EXIT_NOTFOUND, "stream '%s' has no group '%s'", stream, group);
}

int cli_group_check(cli *c, const char *stream, const char *group)
{
    stx_stream_info *info = NULL;
    int rc = stx_stream_info_get(c->client, stream, &info);
    if (rc == STX_ENOTFOUND) {
        stx_stream_info_free(info);
        return cli_fail_nogroup(c, stream, group);
    }
    if (rc != STX_OK) {
        stx_stream_info_free(info);
        return cli_fail_stream(c, rc, stream);
    }
    int found = 0;
    for (size_t i = 0; i < info->ngroups && !found; i++)
        found = strcmp(info->groups[i].name, group) == 0;
    stx_stream_info_free(info);
    return found ? 0 : cli_fail_nogroup(c, stream, group);
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

/* The connection settings: option, environment variable, configuration
 * key and the value a flag sets. */
static const struct setting_def {
    const char *option;
    const char *env;        /* NULL: none */
    const char *key;
    const char *flag_value; /* NULL: the option takes a value */
} settings[CLI_NSETTINGS] = {
    [CLI_TLS] = {"--tls", NULL, "tls", "1"},
    [CLI_TLS_CA_FILE] = {"--tls-ca-file", "STX_TLS_CA_FILE", "tls_ca_file", NULL},
    [CLI_TLS_CA_DIR] = {"--tls-ca-dir", "STX_TLS_CA_DIR", "tls_ca_dir", NULL},
    [CLI_TLS_CERT_FILE] = {"--tls-cert-file", "STX_TLS_CERT_FILE", "tls_cert_file", NULL},
    [CLI_TLS_KEY_FILE] = {"--tls-key-file", "STX_TLS_KEY_FILE", "tls_key_file", NULL},
    [CLI_TLS_SERVER_NAME] = {"--tls-server-name", "STX_TLS_SERVER_NAME", "tls_server_name", NULL},
    [CLI_TLS_INSECURE] = {"--tls-insecure", "STX_TLS_INSECURE", "tls_verify", "0"},
};

const char cli_connection_help[] =
    "\n"
    "Connection options (for every command, before or after it):\n"
    "  --url URL               redis://[user:password@]host[:port][/db],\n"
    "                          rediss://... for TLS, unix:///path/to/redis.sock?db=N;\n"
    "                          Redis Cluster seeds: redis://h1:7000,h2:7001,...;\n"
    "                          default: $STX_URL, else " STX_DEFAULT_URL "\n"
    "  --tls                   use TLS (as a rediss:// URL does)\n"
    "  --tls-ca-file FILE      CA certificates to verify the server with\n"
    "                          ($STX_TLS_CA_FILE)\n"
    "  --tls-ca-dir DIR        a directory of CA certificates ($STX_TLS_CA_DIR)\n"
    "  --tls-cert-file FILE    client certificate, for servers that ask for one\n"
    "                          ($STX_TLS_CERT_FILE)\n"
    "  --tls-key-file FILE     the client certificate's private key\n"
    "                          ($STX_TLS_KEY_FILE)\n"
    "  --tls-server-name NAME  name the server's certificate must hold, also sent\n"
    "                          as SNI; default: the host of the URL\n"
    "                          ($STX_TLS_SERVER_NAME)\n"
    "  --tls-insecure          do not verify the server's certificate\n"
    "                          ($STX_TLS_INSECURE=1); for tests only\n"
    "An option wins over its environment variable.\n";

void cli_print_version(void)
{
    /* The tool as built (the header it was compiled with) and the library
     * it runs with: a shared library may be another one. */
    printf("stx %d.%d.%d\nstreamtx library %s\n", STX_VERSION_MAJOR, STX_VERSION_MINOR,
           STX_VERSION_PATCH, stx_version());
}

void cli_help(const char *help)
{
    fputs(help, stdout);
    fputs(cli_connection_help, stdout);
}

void cli_init(cli *c)
{
    memset(c, 0, sizeof *c);
    c->url = getenv("STX_URL");
    if (!c->url || !*c->url)
        c->url = STX_DEFAULT_URL;
    for (size_t i = 0; i < CLI_NSETTINGS; i++) {
        const char *v = settings[i].env ? getenv(settings[i].env) : NULL;
        if (!v || !*v)
            continue;
        /* A flag's variable counts when it is 1; anything else is an
         * error when connecting rather than a silent no. */
        c->set[i].value = settings[i].flag_value && strcmp(v, "1") == 0 ? settings[i].flag_value
                                                                         : v;
        c->set[i].from = settings[i].env;
    }
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
    char why[400] = "";
    int rc = stx_config_set(conf, "url", c->url, why, sizeof why);
    if (rc != STX_OK)
        snprintf(err, errlen, "bad --url: %s", why);
    if (rc == STX_OK && c->command_timeout_ms > 0) {
        char v[32];
        snprintf(v, sizeof v, "%ld", c->command_timeout_ms);
        rc = stx_config_set(conf, "command_timeout_ms", v, err, errlen);
    }
    for (size_t i = 0; rc == STX_OK && i < CLI_NSETTINGS; i++) {
        const cli_setting *s = &c->set[i];
        if (!s->value)
            continue;
        if (settings[i].flag_value && strcmp(s->value, settings[i].flag_value) != 0) {
            snprintf(err, errlen, "bad value '%s' for %s: expected 1", s->value, s->from);
            rc = STX_EINVAL;
            break;
        }
        rc = stx_config_set(conf, settings[i].key, s->value, why, sizeof why);
        if (rc != STX_OK)
            snprintf(err, errlen, "cannot use %s (configuration key %s): %s", s->from,
                     settings[i].key, why);
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
    char err[1024];
    int rc = cli_client_open(c, &c->client, err, sizeof err);
    if (rc == STX_OK)
        return 0;
    stx_client_free(c->client);
    c->client = NULL;
    return cli_fail_connect(c, rc, err);
}

const char *cli_connect_reason(const char *err)
{
    const char *why = strncmp(err, "connect: ", 9) == 0 ? err + 9 : err;
    return why;
}

int cli_fail_connect(const cli *c, int rc, const char *err)
{
    if (rc == STX_EINVAL)
        return cli_fail(c, CLI_EXIT_USAGE, "%s", err);
    /* The library's message may start with the operation ("connect: ")
     * and may say "cannot connect" itself: say it once. */
    const char *why = cli_connect_reason(err);
    if (strncmp(why, "cannot connect", 14) == 0)
        return cli_fail(c, cli_exit_code(rc), "%s", why);
    return cli_fail(c, cli_exit_code(rc), "cannot connect: %s", why);
}

/* ------------------------------------------------------------------ */
/* arguments                                                            */

/* getopt_long's val for the options: settings first, then the rest. */
enum {
    VAL_SETTING = 0x100,            /* + CLI_TLS* */
    VAL_URL = VAL_SETTING + CLI_NSETTINGS,
    VAL_JSON,
    VAL_HELP,
    VAL_VERSION,
    VAL_OPT                         /* + index into the command's opts */
};

#define MAX_OPTIONS 32

/* The global options into o (at least CLI_NSETTINGS + 4 slots); returns how
 * many.  with_version: main's --version. */
static size_t global_options(struct option *o, int with_version)
{
    size_t n = 0;
    for (size_t i = 0; i < CLI_NSETTINGS; i++)
        o[n++] = (struct option){settings[i].option + 2,
                                 settings[i].flag_value ? no_argument : required_argument, NULL,
                                 VAL_SETTING + (int)i};
    o[n++] = (struct option){"url", required_argument, NULL, VAL_URL};
    o[n++] = (struct option){"json", no_argument, NULL, VAL_JSON};
    o[n++] = (struct option){"help", no_argument, NULL, VAL_HELP};
    if (with_version)
        o[n++] = (struct option){"version", no_argument, NULL, VAL_VERSION};
    return n;
}

/* The word getopt_long read when optind was ind (0 means 1: glibc starts
 * over there), as "--name" without any "=value". */
static const char *word_name(char **v, int ind, int *len)
{
    const char *w = v[ind > 0 ? ind : 1];
    *len = (int)strcspn(w, "=");
    return w;
}

/* Handle one result of getopt_long for a global option or an error; 0
 * when handled, 1 when it is none of those (a command's option), -1 for
 * --help, or an exit code. */
static int global_result(cli *c, int ch, const struct option *longopts, int longindex,
                         char **v, int ind, const char *see)
{
    int len;
    const char *w;
    if (ch == '?' || ch == ':') {
        if (ch == ':' || (optopt >= VAL_SETTING && optopt < VAL_OPT + MAX_OPTIONS)) {
            const char *name = NULL;
            for (const struct option *o = longopts; o->name; o++)
                if (o->val == optopt)
                    name = o->name;
            if (ch == ':')
                return cli_fail(c, CLI_EXIT_USAGE, "option --%s needs a value",
                                name ? name : "?");
            return cli_fail(c, CLI_EXIT_USAGE, "option --%s takes no value", name ? name : "?");
        }
        if (optopt)
            return cli_fail(c, CLI_EXIT_USAGE, "unknown option '-%c' (see %s --help)", optopt,
                            see);
        w = word_name(v, ind, &len);
        return cli_fail(c, CLI_EXIT_USAGE, "unknown option '%.*s' (see %s --help)", len, w,
                        see);
    }
    /* getopt_long takes a unique prefix for a name ("--lim"): scripts that
     * rely on one would break when an option is added, so refuse it. */
    w = word_name(v, ind, &len);
    if (longindex >= 0 && (size_t)len != 2 + strlen(longopts[longindex].name))
        return cli_fail(c, CLI_EXIT_USAGE, "unknown option '%.*s' (see %s --help)", len, w, see);
    if (ch == 'h' || ch == VAL_HELP)
        return -1;
    if (ch == VAL_URL) {
        c->url = optarg;
    } else if (ch == VAL_JSON) {
        c->json = 1;
    } else if (ch >= VAL_SETTING && ch < VAL_SETTING + CLI_NSETTINGS) {
        size_t i = (size_t)(ch - VAL_SETTING);
        c->set[i].value = settings[i].flag_value ? settings[i].flag_value : optarg;
        c->set[i].from = settings[i].option;
    } else {
        return 1;
    }
    return 0;
}

int cli_parse_main(cli *c, int argc, char **argv, const char *help, int *cmd)
{
    struct option longopts[MAX_OPTIONS + CLI_NSETTINGS + 8];
    size_t n = global_options(longopts, 1);
    longopts[n] = (struct option){NULL, 0, NULL, 0};
    *cmd = argc;
    opterr = 0;
    optind = 0; /* glibc: start over */
    for (;;) {
        int longindex = -1, ind = optind;
        /* "+": stop at the command word; ":": tell a missing value apart. */
        int ch = getopt_long(argc, argv, "+:h", longopts, &longindex);
        if (ch == -1)
            break;
        int rc = global_result(c, ch, longopts, longindex, argv, ind, "stx");
        if (rc == -1) {
            cli_help(help);
            return -1;
        }
        if (rc == 1 && ch == VAL_VERSION) {
            cli_print_version();
            return -1;
        }
        if (rc != 0)
            return rc;
    }
    *cmd = optind;
    return 0;
}

/* The name of positional argument i of sub, read from its usage line in
 * help ("usage: stx pending STREAM GROUP [--limit N]" gives STREAM, GROUP):
 * the words in capitals after the command, before any option.  0 or -1. */
static int positional_name(const char *help, const char *sub, int i, char *out, size_t cap)
{
    char head[64];
    snprintf(head, sizeof head, "stx %s ", sub ? sub : "");
    const char *p = help ? strstr(help, head) : NULL;
    if (!p)
        return -1;
    p += strlen(head);
    for (int k = 0;; k++) {
        p += strspn(p, " ");
        size_t n = strcspn(p, " \n");
        if (n == 0 || *p == '[' || *p == '-' || *p < 'A' || *p > 'Z')
            return -1;
        if (k == i) {
            if (n >= cap)
                return -1;
            memcpy(out, p, n);
            out[n] = '\0';
            /* "ID..." and "FIELD=VALUE...": the name without the dots. */
            char *dots = strstr(out, "...");
            if (dots)
                *dots = '\0';
            return 0;
        }
        p += n;
    }
}

int cli_parse(cli *c, int argc, char **argv, cli_opt *opts, size_t nopts, int min_pos,
              int max_pos, int *npos, const char *help)
{
    struct option longopts[MAX_OPTIONS + CLI_NSETTINGS + 8];
    size_t n = global_options(longopts, 0);
    if (nopts > MAX_OPTIONS) {
        fputs("stx: internal error: too many options\n", stderr);
        abort();
    }
    for (size_t k = 0; k < nopts; k++)
        longopts[n++] = (struct option){opts[k].name + 2, opts[k].has_arg ? required_argument
                                                                          : no_argument,
                                        NULL, VAL_OPT + (int)k};
    longopts[n] = (struct option){NULL, 0, NULL, 0};

    /* getopt_long wants the program name first; the words are copied so
     * that positionals can be written back to argv in their order. */
    char **v = malloc(((size_t)argc + 2) * sizeof *v);
    if (!v)
        return cli_fail(c, CLI_EXIT_RUNTIME, "out of memory");
    v[0] = (char *)(c->sub ? c->sub : "stx");
    memcpy(v + 1, argv, (size_t)argc * sizeof *v);
    v[argc + 1] = NULL;
    char see[64];
    snprintf(see, sizeof see, "stx %s", c->sub ? c->sub : "");

    int np = 0, rc = 0;
    opterr = 0;
    optind = 0; /* glibc: start over */
    for (;;) {
        int longindex = -1, ind = optind;
        /* "-": positionals come back in order as 1, whatever POSIXLY_CORRECT
         * says; ":": tell a missing value apart. */
        int ch = getopt_long(argc + 1, v, "-:h", longopts, &longindex);
        if (ch == -1)
            break;
        if (ch == 1) {
            argv[np++] = optarg;
            continue;
        }
        rc = global_result(c, ch, longopts, longindex, v, ind, see);
        if (rc == -1) {
            cli_help(help);
            break;
        }
        if (rc != 1) {
            if (rc != 0)
                break;
            continue;
        }
        rc = 0;
        cli_opt *o = &opts[ch - VAL_OPT];
        o->value = o->has_arg ? optarg : "1";
    }
    /* After "--": the rest are positionals. */
    for (int i = optind; rc == 0 && i < argc + 1; i++)
        argv[np++] = v[i];
    free(v);
    if (rc != 0)
        return rc;
    *npos = np;
    if (np < min_pos) {
        char name[64];
        if (positional_name(help, c->sub, np, name, sizeof name) == 0)
            return cli_fail(c, CLI_EXIT_USAGE, "missing argument %s (see stx %s --help)", name,
                            c->sub);
        return cli_fail(c, CLI_EXIT_USAGE, "missing arguments (see stx %s --help)", c->sub);
    }
    if (max_pos >= 0 && np > max_pos)
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

int cli_position(const cli *c, const char *opt, const char *s, stx_position *out)
{
    if (stx_position_parse(s, cli_now_ms(), out) == STX_OK)
        return 0;
    return cli_fail(c, CLI_EXIT_USAGE, "bad position '%s' for %s: expected " STX_POSITION_GRAMMAR,
                    s, opt);
}

int cli_point(const cli *c, const char *opt, const char *s, int is_end, char *out, size_t cap)
{
    stx_position p;
    int rc = cli_position(c, opt, s, &p);
    if (rc != 0)
        return rc;
    if ((is_end ? stx_position_until(&p, out, cap) : stx_position_after(&p, out, cap)) < 0)
        return cli_fail(c, CLI_EXIT_USAGE, "position '%s' for %s is too long", s, opt);
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
    tbl_push(t, jb_take(&b));
}

void tbl_cell_escaped(table *t, const char *s)
{
    jbuf b;
    jb_init(&b);
    jb_puts(&b, s);
    tbl_push(t, jb_take(&b));
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
    out_entry_json_partition(w, m, -1);
}

void out_entry_json_partition(jw *w, const stx_msg *m, int partition)
{
    jw_obj(w);
    if (partition >= 0) {
        jw_key(w, "partition");
        jw_i64(w, partition);
    }
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
