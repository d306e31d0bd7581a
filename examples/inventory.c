/*
 * inventory: keep a stock level per SKU from a stream of sales and restocks,
 * and publish an alert when a SKU runs low.
 *
 *   inventory run --stream orders --group stock --alerts low-stock
 *   inventory report --stream orders --group stock
 *
 * Each entry of the input stream has the fields
 *   type  "sale" or "restock" (missing means "sale")
 *   sku   the product, any non-empty bytes
 *   qty   a decimal integer from 1 to 1000000
 *
 * The stock of a SKU is a state key (the SKU bytes) holding a msgpack
 * integer.  The new stock, the alert (if any), the acknowledgement and the
 * stream offset are committed together, so a crash or a restart can never
 * count a sale twice, lose one, or send an alert for a change that did not
 * stick.
 *
 * "report" reads the committed stock straight from Redis with hiredis: the
 * state lives in an ordinary hash, so other programs can read it without the
 * library.
 */
#include <errno.h>
#include <inttypes.h>
#include <signal.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <sys/time.h>

#include <hiredis/hiredis.h>

#include "streamtx.h"

#define DEFAULT_URL "redis://127.0.0.1:6379"
#define MAX_QTY 1000000

/* Error messages quote input bytes; keep a hostile value from flooding the log. */
#define SHOWN(len) ((int)((len) > 64 ? 64 : (len)))

static const char *prog = "inventory";

static void usage(FILE *out)
{
    fprintf(out,
        "usage: %s run --stream S --group G --alerts A [options]\n"
        "       %s report --stream S --group G [--url URL]\n"
        "\n"
        "run: apply sales and restocks from stream S (consumer group G) to a\n"
        "stock level per SKU, and publish an alert to stream A each time a\n"
        "message takes a SKU's stock from above the threshold to at or below it.\n"
        "Entry fields: type (sale|restock, default sale), sku, qty (1..%d).\n"
        "\n"
        "  --url URL          Redis to use (default %s)\n"
        "  --stream S         input stream (required)\n"
        "  --group G          consumer group; also names the state (required)\n"
        "  --consumer NAME    consumer name within the group (default: chosen by the library)\n"
        "  --alerts A         stream that receives low-stock alerts (run only, required)\n"
        "  --threshold N      alert when stock falls to N or below (default 10)\n"
        "  --initial N        stock of a SKU never seen before (default 100)\n"
        "  --snapshot DIR     keep an LMDB snapshot of the state in DIR for fast restarts\n"
        "  --exit-when-idle   return once a poll finds no new entries\n"
        "  --help             show this text\n"
        "\n"
        "report: print \"SKU STOCK\" lines, sorted by SKU, from the committed state.\n"
        "It understands URLs of the form redis://[[USER]:PASSWORD@]HOST[:PORT][/DB]\n"
        "(no percent-decoding, no TLS, no unix sockets).\n"
        "\n"
        "Exit status: 0 stopped or idle, 1 error, 2 usage error, 3 fenced (a newer\n"
        "instance for the same stream and group took over).\n",
        prog, prog, MAX_QTY, DEFAULT_URL);
}

/* ------------------------------------------------------------------------ */
/* Command line                                                             */

typedef struct options {
    const char *url;
    const char *stream;
    const char *group;
    const char *consumer;
    const char *alerts;
    const char *snapshot;
    int64_t threshold;
    int64_t initial;
    int exit_when_idle;
} options;

/* Match argv[*i] against "--name VALUE" or "--name=VALUE".
 * Returns 1 and sets *val on a match, 0 when it is another option, -1 when
 * the value is missing. */
static int take_opt(int argc, char **argv, int *i, const char *name, const char **val)
{
    const char *arg = argv[*i];
    size_t n = strlen(name);

    if (strncmp(arg, name, n) != 0)
        return 0;
    if (arg[n] == '=') {
        *val = arg + n + 1;
        return 1;
    }
    if (arg[n] != '\0')
        return 0;
    if (*i + 1 >= argc) {
        fprintf(stderr, "%s: %s needs a value\n", prog, name);
        return -1;
    }
    *i += 1;
    *val = argv[*i];
    return 1;
}

static int parse_i64(const char *name, const char *text, int64_t *out)
{
    char *end;
    long long v;

    errno = 0;
    v = strtoll(text, &end, 10);
    if (errno != 0 || end == text || *end != '\0') {
        fprintf(stderr, "%s: %s: not an integer: %s\n", prog, name, text);
        return -1;
    }
    *out = (int64_t)v;
    return 0;
}

/* Returns 0 to go on, 2 on a usage error, or -1 after --help. */
static int parse_args(int argc, char **argv, int first, int is_run, options *o)
{
    const char *threshold = NULL, *initial = NULL;

    for (int i = first; i < argc; i++) {
        const char *arg = argv[i];
        int r = 0;

        if (strcmp(arg, "--help") == 0 || strcmp(arg, "-h") == 0) {
            usage(stdout);
            return -1;
        }
        if (strcmp(arg, "--exit-when-idle") == 0 && is_run) {
            o->exit_when_idle = 1;
            continue;
        }
        if ((r = take_opt(argc, argv, &i, "--url", &o->url)) != 0 ||
            (r = take_opt(argc, argv, &i, "--stream", &o->stream)) != 0 ||
            (r = take_opt(argc, argv, &i, "--group", &o->group)) != 0) {
            if (r < 0)
                return 2;
            continue;
        }
        if (is_run &&
            ((r = take_opt(argc, argv, &i, "--consumer", &o->consumer)) != 0 ||
             (r = take_opt(argc, argv, &i, "--alerts", &o->alerts)) != 0 ||
             (r = take_opt(argc, argv, &i, "--snapshot", &o->snapshot)) != 0 ||
             (r = take_opt(argc, argv, &i, "--threshold", &threshold)) != 0 ||
             (r = take_opt(argc, argv, &i, "--initial", &initial)) != 0)) {
            if (r < 0)
                return 2;
            continue;
        }
        fprintf(stderr, "%s: unknown argument: %s (try --help)\n", prog, arg);
        return 2;
    }

    if (o->stream == NULL || o->stream[0] == '\0' || o->group == NULL || o->group[0] == '\0') {
        fprintf(stderr, "%s: --stream and --group are required (try --help)\n", prog);
        return 2;
    }
    if (!is_run)
        return 0;
    if (o->alerts == NULL || o->alerts[0] == '\0') {
        fprintf(stderr, "%s: --alerts is required (try --help)\n", prog);
        return 2;
    }
    /* Alerts read back as input would all fail as entries without a qty. */
    if (strcmp(o->alerts, o->stream) == 0) {
        fprintf(stderr, "%s: --alerts must differ from --stream\n", prog);
        return 2;
    }
    if (threshold != NULL && parse_i64("--threshold", threshold, &o->threshold) != 0)
        return 2;
    if (initial != NULL && parse_i64("--initial", initial, &o->initial) != 0)
        return 2;
    return 0;
}

/* ------------------------------------------------------------------------ */
/* The handler                                                              */

/* qty must be plain digits: no sign, no spaces, nothing strtol would skip. */
static int parse_qty(const char *s, size_t len, int64_t *out)
{
    int64_t v = 0;

    if (s == NULL || len == 0 || len > 7)
        return -1;
    for (size_t i = 0; i < len; i++) {
        if (s[i] < '0' || s[i] > '9')
            return -1;
        v = v * 10 + (s[i] - '0');
    }
    if (v < 1 || v > MAX_QTY)
        return -1;
    *out = v;
    return 0;
}

/*
 * Everything the handler does goes through txn, and the handler may run more
 * than once for the same entry (after a crash or a failed commit), so it
 * must not touch anything else: no printing, no other I/O, no globals.
 * Returning stx_txn_fail() drops whatever was staged and leaves the entry
 * pending; the reason is what stx_processor_errmsg() shows.
 */
static int handle_entry(const stx_msg *msg, stx_txn *txn, void *user_data)
{
    const options *o = user_data;
    const char *id = stx_msg_id(msg);
    size_t sku_len = 0, type_len = 0, qty_len = 0;
    const char *sku = stx_msg_get(msg, "sku", &sku_len);
    const char *type = stx_msg_get(msg, "type", &type_len);
    const char *qty_text = stx_msg_get(msg, "qty", &qty_len);
    int64_t qty, before, after;
    int restock;
    int rc;

    if (sku == NULL || sku_len == 0)
        return stx_txn_fail(txn, "entry %s: missing sku", id);
    if (type == NULL || (type_len == 4 && memcmp(type, "sale", 4) == 0))
        restock = 0;
    else if (type_len == 7 && memcmp(type, "restock", 7) == 0)
        restock = 1;
    else
        return stx_txn_fail(txn, "entry %s: unknown type \"%.*s\"", id, SHOWN(type_len), type);
    if (qty_text == NULL)
        return stx_txn_fail(txn, "entry %s: missing qty", id);
    if (parse_qty(qty_text, qty_len, &qty) != 0)
        return stx_txn_fail(txn, "entry %s: bad qty \"%.*s\" (want an integer from 1 to %d)",
                            id, SHOWN(qty_len), qty_text, MAX_QTY);

    rc = stx_txn_get_i64(txn, sku, sku_len, &before);
    if (rc == STX_ENOTFOUND)
        before = o->initial;
    else if (rc != STX_OK)
        return stx_txn_fail(txn, "entry %s: stock of sku \"%.*s\": %s",
                            id, SHOWN(sku_len), sku, stx_strerror(rc));

    /* Stock may go below zero: the sale already happened, and the stream
     * records facts, so the processor counts it rather than refusing it. */
    if (restock ? before > INT64_MAX - qty : before < INT64_MIN + qty)
        return stx_txn_fail(txn, "entry %s: stock of sku \"%.*s\" would overflow",
                            id, SHOWN(sku_len), sku);
    after = restock ? before + qty : before - qty;

    rc = stx_txn_put_i64(txn, sku, sku_len, after);
    if (rc != STX_OK)
        return stx_txn_fail(txn, "entry %s: store stock of sku \"%.*s\": %s",
                            id, SHOWN(sku_len), sku, stx_strerror(rc));

    /* Alert on the crossing only, not on every sale below the threshold, so
     * that a SKU produces one alert per time it runs low.  The library adds
     * causation_id (this entry's id), which lets a reader trace the alert
     * back to the sale that caused it. */
    if (before > o->threshold && after <= o->threshold) {
        char stock_text[24], threshold_text[24];
        const char *names[3] = {"sku", "stock", "threshold"};
        const size_t name_lens[3] = {3, 5, 9};
        const char *values[3];
        size_t value_lens[3];

        snprintf(stock_text, sizeof stock_text, "%" PRId64, after);
        snprintf(threshold_text, sizeof threshold_text, "%" PRId64, o->threshold);
        values[0] = sku;
        value_lens[0] = sku_len; /* SKUs are bytes: pass the length, not a C string */
        values[1] = stock_text;
        value_lens[1] = strlen(stock_text);
        values[2] = threshold_text;
        value_lens[2] = strlen(threshold_text);
        rc = stx_txn_publish(txn, o->alerts, 3, names, name_lens, values, value_lens);
        if (rc != STX_OK)
            return stx_txn_fail(txn, "entry %s: publish alert: %s", id, stx_strerror(rc));
    }
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
        /* Not the value: a URL may carry a password. */
        fprintf(stderr, "%s: %s: %s\n", prog, key, err);
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

typedef struct redis_addr {
    char host[256];
    int port;
    char user[128];
    char password[256];
    int has_password;
    long db;
} redis_addr;

static int copy_part(char *dst, size_t cap, const char *src, size_t len)
{
    if (len >= cap)
        return -1;
    memcpy(dst, src, len);
    dst[len] = '\0';
    return 0;
}

/* redis://[[USER]:PASSWORD@]HOST[:PORT][/DB], HOST may be [IPv6].
 * Deliberately small: no percent-decoding, no query options. */
static int parse_url(const char *url, redis_addr *a)
{
    const char *s, *at, *end, *host_end, *port = NULL;

    memset(a, 0, sizeof *a);
    a->port = 6379;
    if (strncmp(url, "redis://", 8) != 0)
        return -1;
    s = url + 8;

    end = s + strcspn(s, "/");
    at = memchr(s, '@', (size_t)(end - s));
    if (at != NULL) {
        const char *colon = memchr(s, ':', (size_t)(at - s));

        if (colon != NULL) {
            if (copy_part(a->user, sizeof a->user, s, (size_t)(colon - s)) != 0)
                return -1;
            s = colon + 1;
        }
        if (copy_part(a->password, sizeof a->password, s, (size_t)(at - s)) != 0)
            return -1;
        a->has_password = 1;
        s = at + 1;
    }

    if (*s == '[') {
        const char *close = memchr(s, ']', (size_t)(end - s));

        if (close == NULL || copy_part(a->host, sizeof a->host, s + 1, (size_t)(close - s - 1)) != 0)
            return -1;
        host_end = close + 1;
        if (host_end < end && *host_end != ':')
            return -1;
    } else {
        host_end = memchr(s, ':', (size_t)(end - s));
        if (host_end == NULL)
            host_end = end;
        if (copy_part(a->host, sizeof a->host, s, (size_t)(host_end - s)) != 0)
            return -1;
    }
    if (a->host[0] == '\0')
        return -1;
    if (host_end < end)
        port = host_end + 1;

    if (port != NULL) {
        long v = 0;

        if (port == end)
            return -1;
        for (const char *c = port; c < end; c++) {
            if (*c < '0' || *c > '9' || (v = v * 10 + (*c - '0')) > 65535)
                return -1;
        }
        if (v == 0)
            return -1;
        a->port = (int)v;
    }

    if (*end == '/' && end[1] != '\0') {
        long v = 0;

        for (const char *c = end + 1; *c != '\0'; c++) {
            if (*c < '0' || *c > '9' || (v = v * 10 + (*c - '0')) > 1000000)
                return -1;
        }
        a->db = v;
    }
    return 0;
}

/* Connect, authenticate and select the database; NULL after printing why. */
static redisContext *report_connect(const char *url)
{
    redis_addr a;
    struct timeval tv = {5, 0};
    redisContext *c;
    redisReply *r;

    if (parse_url(url, &a) != 0) {
        /* Not the URL itself: it may carry a password. */
        fprintf(stderr, "%s: cannot parse the URL (want redis://[[USER]:PASSWORD@]HOST[:PORT][/DB])\n",
                prog);
        return NULL;
    }
    c = redisConnectWithTimeout(a.host, a.port, tv);
    if (c == NULL || c->err) {
        fprintf(stderr, "%s: cannot connect to %s:%d: %s\n", prog, a.host, a.port,
                c != NULL ? c->errstr : "out of memory");
        redisFree(c);
        return NULL;
    }
    /* A reply that never comes should end the report, not hang it. */
    tv.tv_sec = 10;
    redisSetTimeout(c, tv);

    if (a.has_password) {
        if (a.user[0] != '\0')
            r = redisCommand(c, "AUTH %s %s", a.user, a.password);
        else
            r = redisCommand(c, "AUTH %s", a.password);
        if (r == NULL || r->type == REDIS_REPLY_ERROR) {
            fprintf(stderr, "%s: AUTH refused: %s\n", prog, r != NULL ? r->str : c->errstr);
            freeReplyObject(r);
            redisFree(c);
            return NULL;
        }
        freeReplyObject(r);
    }
    if (a.db != 0) {
        r = redisCommand(c, "SELECT %ld", a.db);
        if (r == NULL || r->type == REDIS_REPLY_ERROR) {
            fprintf(stderr, "%s: SELECT %ld refused: %s\n", prog, a.db,
                    r != NULL ? r->str : c->errstr);
            freeReplyObject(r);
            redisFree(c);
            return NULL;
        }
        freeReplyObject(r);
    }
    return c;
}

typedef struct entry {
    char *key;
    size_t len;
    int64_t value;
} entry;

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

static void free_entries(entry *v, size_t n)
{
    for (size_t i = 0; i < n; i++)
        free(v[i].key);
    free(v);
}

/*
 * HSCAN in pages rather than HGETALL: a state of millions of keys would
 * otherwise come back as one huge reply and block Redis while it is built.
 * A scan is not a snapshot: while a processor runs, pages may come from
 * different commits, and a key can be returned twice (duplicates are
 * dropped after sorting).
 */
static int cmd_report(const options *o)
{
    char *key = NULL;
    size_t key_cap = 2 * strlen(o->stream) + strlen(o->group) + 64;
    int key_len;
    redisContext *c = NULL;
    entry *v = NULL;
    size_t n = 0, cap = 0;
    char cursor[32] = "0";
    int status = 1;

    key = malloc(key_cap);
    if (key == NULL) {
        fprintf(stderr, "%s: out of memory\n", prog);
        return 1;
    }
    key_len = stx_key_name(key, key_cap, o->stream, o->group, "state");
    if (key_len < 0) {
        fprintf(stderr, "%s: state key name: %s\n", prog, stx_strerror(key_len));
        goto out;
    }
    c = report_connect(o->url);
    if (c == NULL)
        goto out;

    do {
        redisReply *r = redisCommand(c, "HSCAN %b %s COUNT 1000", key, (size_t)key_len, cursor);
        redisReply *items;

        if (r == NULL) {
            fprintf(stderr, "%s: HSCAN %s: %s\n", prog, key, c->errstr);
            goto out;
        }
        if (r->type == REDIS_REPLY_ERROR) {
            fprintf(stderr, "%s: HSCAN %s: %s\n", prog, key, r->str);
            freeReplyObject(r);
            goto out;
        }
        if (r->type != REDIS_REPLY_ARRAY || r->elements != 2 ||
            r->element[0]->type != REDIS_REPLY_STRING || r->element[0]->len >= sizeof cursor ||
            r->element[1]->type != REDIS_REPLY_ARRAY || r->element[1]->elements % 2 != 0) {
            fprintf(stderr, "%s: HSCAN %s: unexpected reply\n", prog, key);
            freeReplyObject(r);
            goto out;
        }
        memcpy(cursor, r->element[0]->str, r->element[0]->len);
        cursor[r->element[0]->len] = '\0';

        items = r->element[1];
        for (size_t i = 0; i < items->elements; i += 2) {
            const redisReply *name = items->element[i], *val = items->element[i + 1];
            int64_t stock;
            int rc;

            if (name->type != REDIS_REPLY_STRING || val->type != REDIS_REPLY_STRING) {
                fprintf(stderr, "%s: HSCAN %s: unexpected reply\n", prog, key);
                freeReplyObject(r);
                goto out;
            }
            rc = stx_mp_read_i64(val->str, val->len, &stock);
            if (rc != STX_OK) {
                fprintf(stderr, "%s: value of \"%.*s\" in %s: %s\n", prog,
                        SHOWN(name->len), name->str, key, stx_strerror(rc));
                freeReplyObject(r);
                goto out;
            }
            if (n == cap) {
                size_t ncap = cap ? 2 * cap : 1024;
                entry *nv = realloc(v, ncap * sizeof *nv);

                if (nv == NULL) {
                    fprintf(stderr, "%s: out of memory\n", prog);
                    freeReplyObject(r);
                    goto out;
                }
                v = nv;
                cap = ncap;
            }
            /* The reply is freed after each page, so keep a copy. */
            v[n].key = malloc(name->len + 1);
            if (v[n].key == NULL) {
                fprintf(stderr, "%s: out of memory\n", prog);
                freeReplyObject(r);
                goto out;
            }
            memcpy(v[n].key, name->str, name->len);
            v[n].key[name->len] = '\0';
            v[n].len = name->len;
            v[n].value = stock;
            n++;
        }
        freeReplyObject(r);
    } while (strcmp(cursor, "0") != 0);

    if (n > 0)
        qsort(v, n, sizeof *v, entry_cmp);
    for (size_t i = 0; i < n; i++) {
        if (i > 0 && entry_cmp(&v[i - 1], &v[i]) == 0)
            continue;
        fwrite(v[i].key, 1, v[i].len, stdout);
        printf(" %" PRId64 "\n", v[i].value);
    }
    if (fflush(stdout) != 0) {
        fprintf(stderr, "%s: write error: %s\n", prog, strerror(errno));
        goto out;
    }
    status = 0;

out:
    free_entries(v, n);
    redisFree(c);
    free(key);
    return status;
}

/* ------------------------------------------------------------------------ */

int main(int argc, char **argv)
{
    options o;
    int is_run, status;

    memset(&o, 0, sizeof o);
    o.url = DEFAULT_URL;
    o.threshold = 10;
    o.initial = 100;

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

    status = parse_args(argc, argv, 2, is_run, &o);
    if (status < 0)
        return 0;
    if (status != 0)
        return status;
    return is_run ? cmd_run(&o) : cmd_report(&o);
}
