/*
 * router: forward each entry of a stream to a stream chosen by its "type"
 * field, adding a per-route sequence number.
 *
 *   router --stream incoming --group router --prefix events:
 *
 * An entry {type: order, id: 7} is copied to the stream "events:order" as
 * {type: order, id: 7, routed_by: router, route_seq: N}, where N counts the
 * entries routed to "events:order" (1, 2, 3, ...).  Entries without a usable
 * type go to "events:unrouted".
 *
 * The publish, the sequence counter (a state key "seq:<target stream>") and
 * the acknowledgement commit together.  So each entry appears exactly once
 * downstream, even across crashes and restarts, and route_seq has no gaps
 * and no repeats: a consumer of a target stream can check that it missed
 * nothing.
 */
#include <inttypes.h>
#include <signal.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "streamtx.h"

#define DEFAULT_URL "redis://127.0.0.1:6379"
#define DEFAULT_PREFIX "events:"
#define UNROUTED "unrouted"
#define MAX_PREFIX 200
#define MAX_TYPE 64

/* Error messages quote input bytes; keep a hostile value from flooding the log. */
#define SHOWN(len) ((int)((len) > 64 ? 64 : (len)))

static const char *prog = "router";

static void usage(FILE *out)
{
    fprintf(out,
        "usage: %s [run] --stream S --group G [options]\n"
        "\n"
        "Forward each entry of stream S (consumer group G) to the stream\n"
        "PREFIX<type>, where <type> is the entry's \"type\" field, with all its\n"
        "fields plus routed_by=G and route_seq=N (N counts the entries of that\n"
        "route).  Entries without a type, or whose type is not a plain name (1 to\n"
        "%d characters of A-Z a-z 0-9 _ - . :), go to PREFIX%s.\n"
        "\n"
        "  --url URL          Redis to use (default %s)\n"
        "  --stream S         input stream (required)\n"
        "  --group G          consumer group; also names the state (required)\n"
        "  --consumer NAME    consumer name within the group (default: chosen by the library)\n"
        "  --prefix P         prefix of the target streams (default \"%s\")\n"
        "  --snapshot DIR     keep an LMDB snapshot of the state in DIR for fast restarts\n"
        "  --exit-when-idle   return once a poll finds no new entries\n"
        "  --help             show this text\n"
        "\n"
        "On Redis Cluster all streams of one commit must be in one hash slot: give\n"
        "S a hash tag and start P with the same tag, e.g. --stream '{shop}:in'\n"
        "--prefix '{shop}:events:'.\n"
        "\n"
        "Exit status: 0 stopped or idle, 1 error, 2 usage error, 3 fenced (a newer\n"
        "instance for the same stream and group took over).\n",
        prog, MAX_TYPE, UNROUTED, DEFAULT_URL, DEFAULT_PREFIX);
}

/* ------------------------------------------------------------------------ */
/* Command line                                                             */

typedef struct options {
    const char *url;
    const char *stream;
    const char *group;
    const char *consumer;
    const char *prefix;
    const char *snapshot;
    int exit_when_idle;
} options;

/* Returns 0 to go on, 2 on a usage error, or -1 after --help. */
static int parse_args(int argc, char **argv, options *o)
{
    /* The options that take a value, as "--name VALUE" or "--name=VALUE". */
    const struct {
        const char *name;
        const char **value;
    } opts[] = {
        {"--url", &o->url},
        {"--stream", &o->stream},
        {"--group", &o->group},
        {"--consumer", &o->consumer},
        {"--prefix", &o->prefix},
        {"--snapshot", &o->snapshot},
    };
    const size_t nopts = sizeof opts / sizeof opts[0];
    int first = 1;

    /* "router run ..." reads like the other examples; "run" is optional. */
    if (argc > 1 && strcmp(argv[1], "run") == 0)
        first = 2;

    for (int i = first; i < argc; i++) {
        const char *arg = argv[i];
        size_t name_len = strcspn(arg, "=");
        size_t k;

        if (strcmp(arg, "--help") == 0 || strcmp(arg, "-h") == 0) {
            usage(stdout);
            return -1;
        }
        if (strcmp(arg, "--exit-when-idle") == 0) {
            o->exit_when_idle = 1;
            continue;
        }
        for (k = 0; k < nopts; k++) {
            if (strlen(opts[k].name) == name_len && strncmp(arg, opts[k].name, name_len) == 0)
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
    /* The handler builds target names in fixed buffers sized from this. */
    if (strlen(o->prefix) > MAX_PREFIX) {
        fprintf(stderr, "%s: --prefix is longer than %d bytes\n", prog, MAX_PREFIX);
        return 2;
    }
    /* Unrouted entries written back into the input would be read again,
     * forever. */
    if (strlen(o->stream) == strlen(o->prefix) + strlen(UNROUTED) &&
        strncmp(o->stream, o->prefix, strlen(o->prefix)) == 0 &&
        strcmp(o->stream + strlen(o->prefix), UNROUTED) == 0) {
        fprintf(stderr, "%s: --stream must not be %s%s\n", prog, o->prefix, UNROUTED);
        return 2;
    }
    return 0;
}

/* ------------------------------------------------------------------------ */
/* The handler                                                              */

/* The type comes from the data, and it becomes part of a Redis key name;
 * plain names keep odd or huge values from creating odd or huge streams. */
static int is_plain_name(const char *s, size_t len)
{
    if (len == 0 || len > MAX_TYPE)
        return 0;
    for (size_t i = 0; i < len; i++) {
        char c = s[i];

        if (!((c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') ||
              c == '_' || c == '-' || c == '.' || c == ':'))
            return 0;
    }
    return 1;
}

/* Fields the router writes itself rather than copies.  causation_id is left
 * out so the library sets it to the entry being routed: a copied one would
 * point one hop further back. */
static int is_replaced_field(const char *name, size_t len)
{
    static const char *const replaced[] = {"routed_by", "route_seq", "causation_id"};

    for (size_t i = 0; i < sizeof replaced / sizeof replaced[0]; i++) {
        if (len == strlen(replaced[i]) && memcmp(name, replaced[i], len) == 0)
            return 1;
    }
    return 0;
}

/*
 * Everything the handler does goes through txn, and the handler may run more
 * than once for the same entry (after a crash or a failed commit), so it
 * must not touch anything else.  In particular the sequence number must come
 * from the state, not from a C counter, or a retried entry would take a
 * second number.
 */
static int handle_entry(const stx_msg *msg, stx_txn *txn, void *user_data)
{
    const options *o = user_data;
    const char *id = stx_msg_id(msg);
    char target[MAX_PREFIX + MAX_TYPE + 1];
    char seq_key[4 + sizeof target];
    char seq_text[24];
    size_t type_len = 0, nfields, n = 0;
    const char *type = stx_msg_get(msg, "type", &type_len);
    const char **names = NULL, **values = NULL;
    size_t *name_lens = NULL, *value_lens = NULL;
    int64_t seq;
    int rc;

    if (type != NULL && is_plain_name(type, type_len))
        snprintf(target, sizeof target, "%s%.*s", o->prefix, (int)type_len, type);
    else
        snprintf(target, sizeof target, "%s%s", o->prefix, UNROUTED);
    /* Routing an entry back into its own stream would loop forever. */
    if (strcmp(target, stx_msg_stream(msg)) == 0)
        snprintf(target, sizeof target, "%s%s", o->prefix, UNROUTED);

    snprintf(seq_key, sizeof seq_key, "seq:%s", target);
    rc = stx_txn_incr(txn, seq_key, strlen(seq_key), 1, &seq);
    if (rc != STX_OK)
        return stx_txn_fail(txn, "entry %s: %s: %s", id, seq_key, stx_strerror(rc));
    snprintf(seq_text, sizeof seq_text, "%" PRId64, seq);

    /* The copy is the entry's fields minus the replaced ones, plus two. */
    nfields = stx_msg_field_count(msg);
    names = malloc((nfields + 2) * sizeof *names);
    values = malloc((nfields + 2) * sizeof *values);
    name_lens = malloc((nfields + 2) * sizeof *name_lens);
    value_lens = malloc((nfields + 2) * sizeof *value_lens);
    if (names == NULL || values == NULL || name_lens == NULL || value_lens == NULL) {
        rc = stx_txn_fail(txn, "entry %s: out of memory", id);
        goto out;
    }
    for (size_t i = 0; i < nfields; i++) {
        /* Field names and values are bytes: pass them on with their
         * lengths, never as C strings. */
        if (stx_msg_field(msg, i, &names[n], &name_lens[n], &values[n], &value_lens[n]) != STX_OK)
            continue;
        if (!is_replaced_field(names[n], name_lens[n]))
            n++;
    }
    names[n] = "routed_by";
    name_lens[n] = strlen("routed_by");
    values[n] = o->group;
    value_lens[n] = strlen(o->group);
    n++;
    names[n] = "route_seq";
    name_lens[n] = strlen("route_seq");
    values[n] = seq_text;
    value_lens[n] = strlen(seq_text);
    n++;

    rc = stx_txn_publish(txn, target, n, names, name_lens, values, value_lens);
    if (rc != STX_OK)
        rc = stx_txn_fail(txn, "entry %s: publish to %s: %s", id, target, stx_strerror(rc));
    else
        rc = STX_HANDLER_OK;

out:
    free(names);
    free(values);
    free(name_lens);
    free(value_lens);
    return rc;
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

int main(int argc, char **argv)
{
    options o;
    int status;

    memset(&o, 0, sizeof o);
    o.url = DEFAULT_URL;
    o.prefix = DEFAULT_PREFIX;

    status = parse_args(argc, argv, &o);
    if (status < 0)
        return 0;
    if (status != 0)
        return status;
    return cmd_run(&o);
}
