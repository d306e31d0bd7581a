/*
 * counter: count the entries of a stream per key, where the key is the
 * value of one field of each entry.
 *
 *   counter run --stream clicks --group per-page --field page
 *   counter report --stream clicks --group per-page
 *
 * Each count is a state key (the field's value) holding a msgpack integer,
 * raised with stx_txn_incr().  The increment is committed together with the
 * acknowledgement and the stream offset, so after any crash or restart each
 * entry has been counted exactly once: not zero times, not twice.
 *
 * "report" reads the committed counts from Redis with a plain client
 * (stx_client_new(), stx_state_scan()); no processor is involved.  The state
 * is an ordinary Redis hash, so other programs can read it too.
 */
#include <errno.h>
#include <inttypes.h>
#include <signal.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "streamtx.h"

#define DEFAULT_URL "redis://127.0.0.1:6379"
#define DEFAULT_FIELD "key"
#define NO_KEY "(none)"

/* Error messages quote input bytes; keep a hostile value from flooding the log. */
#define SHOWN(len) ((int)((len) > 64 ? 64 : (len)))

static const char *prog = "counter";

static void usage(FILE *out)
{
    fprintf(out,
        "usage: %s run --stream S --group G [options]\n"
        "       %s report --stream S --group G [--url URL]\n"
        "\n"
        "run: count the entries of stream S (consumer group G) per value of one\n"
        "field.  Entries without the field, or with it empty, count under \"%s\".\n"
        "\n"
        "  --url URL          Redis to use (default %s)\n"
        "  --stream S         input stream (required)\n"
        "  --group G          consumer group; also names the state (required)\n"
        "  --consumer NAME    consumer name within the group (default: chosen by the library)\n"
        "  --field NAME       field whose value is the key (run only, default \"%s\")\n"
        "  --snapshot DIR     keep an LMDB snapshot of the state in DIR for fast restarts\n"
        "  --exit-when-idle   return once a poll finds no new entries\n"
        "  --help             show this text\n"
        "\n"
        "report: print \"KEY COUNT\" lines, sorted by key, from the committed state.\n"
        "\n"
        "URL is redis://[[USER]:PASSWORD@]HOST[:PORT][/DB]; HOST may be an [IPv6]\n"
        "address, and %%XX escapes work in USER and PASSWORD.\n"
        "\n"
        "Exit status: 0 stopped or idle, 1 error, 2 usage error, 3 fenced (a newer\n"
        "instance for the same stream and group took over).\n",
        prog, prog, NO_KEY, DEFAULT_URL, DEFAULT_FIELD);
}

/* ------------------------------------------------------------------------ */
/* Command line                                                             */

typedef struct options {
    const char *url;
    const char *stream;
    const char *group;
    const char *consumer;
    const char *field;
    const char *snapshot;
    int exit_when_idle;
} options;

/* Returns 0 to go on, 2 on a usage error, or -1 after --help. */
static int parse_args(int argc, char **argv, int is_run, options *o)
{
    /* The options that take a value, as "--name VALUE" or "--name=VALUE". */
    const struct {
        const char *name;
        const char **value;
        int run_only;
    } opts[] = {
        {"--url", &o->url, 0},
        {"--stream", &o->stream, 0},
        {"--group", &o->group, 0},
        {"--consumer", &o->consumer, 1},
        {"--field", &o->field, 1},
        {"--snapshot", &o->snapshot, 1},
    };
    const size_t nopts = sizeof opts / sizeof opts[0];

    /* argv[1] is the command. */
    for (int i = 2; i < argc; i++) {
        const char *arg = argv[i];
        size_t name_len = strcspn(arg, "=");
        size_t k;

        if (strcmp(arg, "--help") == 0 || strcmp(arg, "-h") == 0) {
            usage(stdout);
            return -1;
        }
        if (is_run && strcmp(arg, "--exit-when-idle") == 0) {
            o->exit_when_idle = 1;
            continue;
        }
        for (k = 0; k < nopts; k++) {
            if ((is_run || !opts[k].run_only) && strlen(opts[k].name) == name_len &&
                strncmp(arg, opts[k].name, name_len) == 0)
                break;
        }
        if (k == nopts) {
            fprintf(stderr, "%s: unknown argument: %s (try --help)\n", prog, arg);
            return 2;
        }
        if (arg[name_len] == '=') {
            *opts[k].value = arg + name_len + 1;
        } else if (i + 1 < argc) {
            *opts[k].value = argv[++i];
        } else {
            fprintf(stderr, "%s: %s needs a value\n", prog, arg);
            return 2;
        }
    }

    if (o->stream == NULL || o->stream[0] == '\0' || o->group == NULL || o->group[0] == '\0') {
        fprintf(stderr, "%s: --stream and --group are required (try --help)\n", prog);
        return 2;
    }
    if (is_run && o->field[0] == '\0') {
        fprintf(stderr, "%s: --field must not be empty\n", prog);
        return 2;
    }
    return 0;
}

/* ------------------------------------------------------------------------ */
/* The handler                                                              */

/*
 * Everything the handler does goes through txn, and the handler may run more
 * than once for the same entry (after a crash or a failed commit), so it
 * must not touch anything else: no printing, no other I/O, no globals.
 * Counting in a C variable here would count retried entries twice; counting
 * with stx_txn_incr() does not.
 */
static int handle_entry(const stx_msg *msg, stx_txn *txn, void *user_data)
{
    const options *o = user_data;
    size_t len = 0;
    const char *key = stx_msg_get(msg, o->field, &len);
    int rc;

    /* An empty key is folded into NO_KEY too: it reads badly in a report
     * and gains nothing over "the field was not there". */
    if (key == NULL || len == 0) {
        key = NO_KEY;
        len = strlen(NO_KEY);
    }
    rc = stx_txn_incr(txn, key, len, 1, NULL);
    if (rc != STX_OK)
        return stx_txn_fail(txn, "entry %s: count of \"%.*s\": %s",
                            stx_msg_id(msg), SHOWN(len), key, stx_strerror(rc));
    return STX_HANDLER_OK;
}

/* ------------------------------------------------------------------------ */
/* run                                                                      */

/* Only the signal handler reads this.  It is cleared before the processor
 * is freed, so a late signal finds NULL instead of a dangling pointer. */
static stx_processor *volatile signal_target;

static void on_signal(int sig)
{
    stx_processor *p = signal_target;

    (void)sig;
    /* stx_processor_stop() is async-signal-safe.  poll() returns
     * STX_ESTOPPED at the next message boundary, so nothing is left half
     * done: every commit is all or nothing anyway. */
    if (p != NULL)
        stx_processor_stop(p);
}

static void install_signal_handlers(void)
{
    struct sigaction sa;

    memset(&sa, 0, sizeof sa);
    sa.sa_handler = on_signal;
    sigemptyset(&sa.sa_mask);
    /* SA_RESTART: a signal in the middle of a blocking read should not turn
     * into a connection error; the stop is noticed after at most block_ms.
     * SA_RESETHAND: a second Ctrl-C kills at once, which is safe because
     * every commit is atomic. */
    sa.sa_flags = SA_RESTART | SA_RESETHAND;
    sigaction(SIGINT, &sa, NULL);
    sigaction(SIGTERM, &sa, NULL);

    /* Without this a write to a connection Redis has closed kills the
     * process; ignored, it becomes an error the library can report. */
    sa.sa_handler = SIG_IGN;
    sa.sa_flags = 0;
    sigaction(SIGPIPE, &sa, NULL);
}

static int set_conf(stx_config *conf, const char *key, const char *value)
{
    char err[256] = "";
    int rc = stx_config_set(conf, key, value, err, sizeof err);

    if (rc != STX_OK) {
        /* err names the key; it never quotes a URL, which may carry a password. */
        fprintf(stderr, "%s: %s\n", prog, err);
        return rc == STX_EINVAL ? 2 : 1;
    }
    return 0;
}

/* The poll loop, with each outcome handled the way its error code asks. */
static int run_loop(stx_processor *p, int exit_when_idle)
{
    int rc = stx_processor_start(p);

    while (rc == STX_OK) {
        int n = stx_processor_poll(p);

        if (n > 0)
            continue;
        if (n == 0) {
            if (exit_when_idle)
                break;
            continue;
        }
        if (n == STX_EHANDLER) {
            /* The handler refused an entry: nothing of it was written; it is
             * retried after its delay or moved to the dead-letter stream.  Log
             * why and keep serving the others. */
            fprintf(stderr, "%s: %s\n", prog, stx_processor_errmsg(p));
            continue;
        }
        if (stx_error_class_of(n) == STX_CLASS_RETRIABLE) {
            /* Redis went away or refused writes for a moment: the next poll
             * reconnects and finds out where the last commit stands. */
            fprintf(stderr, "%s: %s; retrying\n", prog, stx_processor_errmsg(p));
            struct timespec pause = {0, 200 * 1000 * 1000};
            nanosleep(&pause, NULL);
            continue;
        }
        rc = n;
    }

    if (rc == STX_OK || rc == STX_ESTOPPED)
        return 0;
    if (rc == STX_EFENCED) {
        /* Another instance started for the same stream and group; it owns
         * the work now, and this one must not write anything more. */
        fprintf(stderr, "fenced: a newer instance took over\n");
        return 3;
    }
    fprintf(stderr, "%s: %s: %s\n", prog, stx_strerror(rc), stx_processor_errmsg(p));
    return 1;
}

static int cmd_run(const options *o)
{
    stx_config *conf = stx_config_new();
    stx_processor *p = NULL;
    int status;

    if (conf == NULL) {
        fprintf(stderr, "%s: out of memory\n", prog);
        return 1;
    }
    if ((status = set_conf(conf, "url", o->url)) != 0 ||
        (status = set_conf(conf, "stream", o->stream)) != 0 ||
        (status = set_conf(conf, "group", o->group)) != 0 ||
        (o->consumer != NULL && (status = set_conf(conf, "consumer", o->consumer)) != 0) ||
        (o->snapshot != NULL && (status = set_conf(conf, "snapshot_dir", o->snapshot)) != 0) ||
        /* A short block lets "idle" be noticed quickly. */
        (o->exit_when_idle && (status = set_conf(conf, "block_ms", "200")) != 0)) {
        stx_config_free(conf);
        return status;
    }
    /* The options outlive the processor, so the handler can point at them. */
    stx_config_set_handler(conf, handle_entry, (void *)o);

    status = stx_processor_new(&p, conf);
    stx_config_free(conf); /* the processor keeps its own copy */
    if (status != STX_OK) {
        fprintf(stderr, "%s: %s: %s\n", prog, stx_strerror(status),
                p != NULL ? stx_processor_errmsg(p) : "");
        stx_processor_free(p);
        return 1;
    }

    signal_target = p;
    install_signal_handlers();
    status = run_loop(p, o->exit_when_idle);
    signal_target = NULL;
    stx_processor_free(p);
    return status;
}

/* ------------------------------------------------------------------------ */
/* report                                                                   */

typedef struct entry {
    char *key; /* the key's bytes (binary-safe), copied */
    size_t len;
    int64_t value;
} entry;

typedef struct entries {
    entry *v;
    size_t n, cap;
    int failed; /* collect() stopped the walk and has said why */
} entries;

/* Called by stx_state_scan() once per state key, with the encoded msgpack
 * value.  key and value are only valid during the call.  A non-zero return
 * stops the walk and is what stx_state_scan() returns. */
static int collect(void *user_data, const void *key, size_t key_len, const void *value,
                   size_t value_len)
{
    entries *e = user_data;
    int64_t count;
    int rc = stx_mp_read_i64(value, value_len, &count);

    if (rc != STX_OK) {
        fprintf(stderr, "%s: value of \"%.*s\": %s\n", prog, SHOWN(key_len),
                (const char *)key, stx_strerror(rc));
        e->failed = 1;
        return rc;
    }
    if (e->n == e->cap) {
        size_t cap = e->cap ? 2 * e->cap : 1024;
        entry *v = realloc(e->v, cap * sizeof *v);

        if (v == NULL)
            goto out_of_memory;
        e->v = v;
        e->cap = cap;
    }
    e->v[e->n].key = malloc(key_len + 1);
    if (e->v[e->n].key == NULL)
        goto out_of_memory;
    memcpy(e->v[e->n].key, key, key_len);
    e->v[e->n].key[key_len] = '\0';
    e->v[e->n].len = key_len;
    e->v[e->n].value = count;
    e->n++;
    return 0;

out_of_memory:
    fprintf(stderr, "%s: out of memory\n", prog);
    e->failed = 1;
    return STX_ENOMEM;
}

/* Bytewise, like memcmp, with a shorter key first when it is a prefix. */
static int entry_cmp(const void *a, const void *b)
{
    const entry *x = a, *y = b;
    size_t n = x->len < y->len ? x->len : y->len;
    int c = memcmp(x->key, y->key, n);

    if (c != 0)
        return c;
    return (x->len > y->len) - (x->len < y->len);
}

/*
 * stx_state_scan() walks the state in HSCAN pages rather than one HGETALL,
 * so a state of millions of keys does not come back as one huge reply that
 * blocks Redis while it is built.  Each key is passed once, but a scan is
 * not a snapshot: while a processor runs, pages may come from different
 * commits.
 */
static int cmd_report(const options *o)
{
    stx_config *conf = stx_config_new();
    stx_client *c = NULL;
    entries e = {NULL, 0, 0, 0};
    int rc, status = 1;

    if (conf == NULL) {
        fprintf(stderr, "%s: out of memory\n", prog);
        return 1;
    }
    if (set_conf(conf, "url", o->url) != 0) {
        stx_config_free(conf);
        return 1;
    }
    rc = stx_client_new(&c, conf);
    stx_config_free(conf); /* the client keeps what it needs */
    if (rc == STX_OK)
        rc = stx_state_scan(c, o->stream, o->group, collect, &e);

    if (rc != STX_OK) {
        if (!e.failed)
            fprintf(stderr, "%s: %s: %s\n", prog, stx_strerror(rc),
                    c != NULL ? stx_client_errmsg(c) : "");
    } else {
        if (e.n > 0)
            qsort(e.v, e.n, sizeof *e.v, entry_cmp);
        for (size_t i = 0; i < e.n; i++) {
            fwrite(e.v[i].key, 1, e.v[i].len, stdout);
            printf(" %" PRId64 "\n", e.v[i].value);
        }
        if (fflush(stdout) != 0)
            fprintf(stderr, "%s: write error: %s\n", prog, strerror(errno));
        else
            status = 0;
    }

    for (size_t i = 0; i < e.n; i++)
        free(e.v[i].key);
    free(e.v);
    stx_client_free(c);
    return status;
}

/* ------------------------------------------------------------------------ */

int main(int argc, char **argv)
{
    options o;
    int is_run, status;

    memset(&o, 0, sizeof o);
    o.url = DEFAULT_URL;
    o.field = DEFAULT_FIELD;

    if (argc < 2) {
        usage(stderr);
        return 2;
    }
    if (strcmp(argv[1], "--help") == 0 || strcmp(argv[1], "-h") == 0) {
        usage(stdout);
        return 0;
    }
    if (strcmp(argv[1], "run") == 0) {
        is_run = 1;
    } else if (strcmp(argv[1], "report") == 0) {
        is_run = 0;
    } else {
        fprintf(stderr, "%s: unknown command: %s (want run or report)\n", prog, argv[1]);
        return 2;
    }

    status = parse_args(argc, argv, is_run, &o);
    if (status < 0)
        return 0;
    if (status != 0)
        return status;
    return is_run ? cmd_run(&o) : cmd_report(&o);
}
