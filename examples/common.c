/* The command line, run loop and report the examples share (common.h). */
#include "common.h"

#include <inttypes.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

int ex_parse(ex_args *a, const char *prog, const char *usage, const char *const *commands,
             const char *const *own, int argc, char **argv)
{
    memset(a, 0, sizeof *a);
    a->prog = prog;
    a->url = getenv("STX_URL") && *getenv("STX_URL") ? getenv("STX_URL") : EX_DEFAULT_URL;
    const char *cmd = argc > 1 ? argv[1] : "";
    int first = commands ? 2 : 1;
    if (strcmp(cmd, "--help") == 0 || strcmp(cmd, "-h") == 0) {
        fputs(usage, stdout);
        return 0;
    }
    for (a->command = 0; commands && commands[a->command] && strcmp(commands[a->command], cmd) != 0;)
        a->command++;
    if (commands && !commands[a->command]) {
        fprintf(stderr, "%s: %s%s (try --help)\n", prog, *cmd ? "unknown command: " : "no command",
                cmd);
        return 2;
    }
    const char *names[6 + EX_MAX_OWN] = {"--url", "--stream", "--group", "--consumer", "--snapshot"};
    const char **slots[6 + EX_MAX_OWN] = {&a->url, &a->stream, &a->group, &a->consumer,
                                          &a->snapshot};
    size_t n = 5;
    names[n] = "--log-level", slots[n++] = &a->log_level;
    for (size_t k = 0; own && own[k] && k < EX_MAX_OWN; k++)
        names[n] = own[k], slots[n++] = &a->own[k];

    for (int i = first; i < argc; i++) {
        const char *arg = argv[i];
        size_t len = strcspn(arg, "="), k;
        if (strcmp(arg, "--help") == 0 || strcmp(arg, "-h") == 0) {
            fputs(usage, stdout);
            return 0;
        }
        if (strcmp(arg, "--exit-when-idle") == 0) {
            a->exit_when_idle = 1;
            continue;
        }
        for (k = 0; k < n && !(strlen(names[k]) == len && strncmp(arg, names[k], len) == 0); k++)
            ;
        if (k == n) {
            fprintf(stderr, "%s: unknown argument: %s (try --help)\n", prog, arg);
            return 2;
        }
        if (arg[len] == '=') *slots[k] = arg + len + 1;
        else if (i + 1 < argc) *slots[k] = argv[++i];
        else {
            fprintf(stderr, "%s: %s needs a value\n", prog, arg);
            return 2;
        }
    }
    /* Every example reads or writes a stream; a processor or a report also
     * needs a group (ex_run and ex_report check). */
    if (!a->stream || !*a->stream) {
        fprintf(stderr, "%s: --stream is required (try --help)\n", prog);
        return 2;
    }
    return -1;
}

/* Read by the signal handler only; cleared before the processor is freed,
 * so a late signal finds NULL instead of a dangling pointer. */
static stx_processor *volatile signal_target;

static void on_signal(int sig)
{
    (void)sig;
    stx_processor *p = signal_target;
    if (p) stx_processor_stop(p); /* async-signal-safe; stops at an entry boundary */
}

static int set(stx_config *conf, const char *prog, const char *key, const char *value)
{
    char err[256] = "";
    if (!value || stx_config_set(conf, key, value, err, sizeof err) == STX_OK) return 0;
    fprintf(stderr, "%s: %s\n", prog, err); /* names the key, never quotes a password */
    return 2;
}

static int need_group(const ex_args *a)
{
    if (a->group && *a->group) return 0;
    fprintf(stderr, "%s: --group is required (try --help)\n", a->prog);
    return 2;
}

int ex_run(const ex_args *a, stx_handler_fn handler, void *user_data, const char *const *conf_kv)
{
    if (need_group(a)) return 2;
    stx_config *conf = stx_config_new();
    if (!conf) return 1;
    int status = set(conf, a->prog, "url", a->url) || set(conf, a->prog, "stream", a->stream) ||
                 set(conf, a->prog, "group", a->group) ||
                 set(conf, a->prog, "consumer", a->consumer) ||
                 set(conf, a->prog, "snapshot_dir", a->snapshot) ||
                 set(conf, a->prog, "log_level", a->log_level) ||
                 /* a short block notices "idle" quickly */
                 set(conf, a->prog, "block_ms", a->exit_when_idle ? "200" : NULL);
    for (; !status && conf_kv && conf_kv[0]; conf_kv += 2)
        status = set(conf, a->prog, conf_kv[0], conf_kv[1]);
    if (status) {
        stx_config_free(conf);
        return 2;
    }
    stx_config_set_handler(conf, handler, user_data);
    stx_processor *p = NULL;
    int rc = stx_processor_new(&p, conf);
    stx_config_free(conf); /* the processor keeps its own copy */

    struct sigaction sa;
    memset(&sa, 0, sizeof sa);
    sa.sa_handler = on_signal;
    sigemptyset(&sa.sa_mask);
    /* SA_RESETHAND: a second Ctrl-C kills at once, safe since every commit is atomic. */
    sa.sa_flags = SA_RESTART | SA_RESETHAND;
    signal_target = p;
    sigaction(SIGINT, &sa, NULL);
    sigaction(SIGTERM, &sa, NULL);

    if (rc == STX_OK) rc = stx_processor_start(p);
    while (rc == STX_OK) {
        int n = stx_processor_poll(p);
        if (n == 0 && a->exit_when_idle) break;
        /* A failed entry is retried or dead-lettered by the library, which
         * logs it; a retriable error is retried by the next poll. */
        if (n == STX_EHANDLER || stx_error_class_of(n) == STX_CLASS_RETRIABLE) {
            struct timespec pause = {0, 100 * 1000 * 1000};
            if (n != STX_EHANDLER) nanosleep(&pause, NULL);
        } else if (n < 0) {
            rc = n;
        }
    }
    signal_target = NULL;

    if (rc == STX_OK && a->exit_when_idle) {
        stx_stats st;
        stx_processor_stats(p, &st);
        printf("%s: handled %" PRIu64 ", committed %" PRIu64 ", duplicates %" PRIu64
               ", dead-lettered %" PRIu64 "\n", a->prog, st.handled, st.committed, st.duplicates,
               st.dead_lettered);
    }
    status = rc == STX_OK || rc == STX_ESTOPPED ? 0 : rc == STX_EFENCED ? 3 : 1;
    if (status)
        fprintf(stderr, "%s: %s: %s\n", a->prog, stx_strerror(rc),
                p ? stx_processor_errmsg(p) : "out of memory");
    stx_processor_free(p);
    return status;
}

struct kv {
    char *key, *value;
    size_t key_len, value_len;
};
struct kvs {
    struct kv *v;
    size_t n, cap;
};

static int collect(void *ud, const void *key, size_t key_len, const void *value, size_t value_len)
{
    struct kvs *s = ud;
    if (s->n == s->cap) {
        size_t cap = s->cap ? 2 * s->cap : 256;
        struct kv *v = realloc(s->v, cap * sizeof *v);
        if (!v) return STX_ENOMEM;
        s->v = v, s->cap = cap;
    }
    struct kv *e = &s->v[s->n];
    e->key = malloc(key_len + 1);
    e->value = malloc(value_len + 1);
    if (!e->key || !e->value) {
        free(e->key), free(e->value);
        return STX_ENOMEM;
    }
    memcpy(e->key, key, key_len), memcpy(e->value, value, value_len);
    e->key_len = key_len, e->value_len = value_len;
    s->n++;
    return STX_OK;
}

/* Bytewise, a key before the longer keys it is a prefix of. */
static int by_key(const void *x, const void *y)
{
    const struct kv *a = x, *b = y;
    int c = memcmp(a->key, b->key, a->key_len < b->key_len ? a->key_len : b->key_len);
    return c ? c : (a->key_len > b->key_len) - (a->key_len < b->key_len);
}

int ex_report(const ex_args *a, int (*print_value)(const void *value, size_t len))
{
    if (need_group(a)) return 2;
    stx_config *conf = stx_config_new();
    stx_client *c = NULL;
    struct kvs s = {NULL, 0, 0};
    int rc = !conf ? STX_ENOMEM : set(conf, a->prog, "url", a->url) ? STX_EINVAL : STX_OK;
    if (rc == STX_OK) rc = stx_client_new(&c, conf);
    stx_config_free(conf);
    if (rc == STX_OK) {
        /* A missing group is "not found" (exit 3), as for stx, not an empty report. */
        stx_stream_info *info = NULL;
        int found = 0, irc = stx_stream_info_get(c, a->stream, &info);
        for (size_t i = 0; irc == STX_OK && i < info->ngroups; i++)
            found |= strcmp(info->groups[i].name, a->group) == 0;
        stx_stream_info_free(info);
        if (irc == STX_OK || irc == STX_ENOTFOUND) {
            if (!found) {
                fprintf(stderr, "%s: report: stream '%s' has no group '%s'\n", a->prog, a->stream,
                        a->group);
                stx_client_free(c);
                return 3;
            }
        } else {
            rc = irc;
        }
    }
    /* HSCAN pages, not one HGETALL: a huge state does not block Redis. */
    if (rc == STX_OK) rc = stx_state_scan(c, a->stream, a->group, collect, &s);
    if (rc == STX_OK && s.n) qsort(s.v, s.n, sizeof *s.v, by_key);
    for (size_t i = 0; rc == STX_OK && i < s.n; i++) {
        fwrite(s.v[i].key, 1, s.v[i].key_len, stdout);
        putchar(' ');
        rc = print_value(s.v[i].value, s.v[i].value_len);
        putchar('\n');
    }
    if (rc != STX_OK)
        fprintf(stderr, "%s: report: %s%s%s\n", a->prog, stx_strerror(rc), c ? ": " : "",
                c ? stx_client_errmsg(c) : "");
    for (size_t i = 0; i < s.n; i++) free(s.v[i].key), free(s.v[i].value);
    free(s.v);
    stx_client_free(c);
    return rc == STX_OK && fflush(stdout) == 0 ? 0 : 1;
}

int ex_print_i64(const void *value, size_t len)
{
    int64_t n;
    int rc = stx_mp_read_i64(value, len, &n);
    if (rc == STX_OK) printf("%" PRId64, n);
    return rc;
}
