/* Redis Cluster routing on top of the session (hiredis 0.14 has no cluster
 * client, and the session owns the socket anyway).
 *
 * Shape.  A stx_conn opened on a cluster holds a stx_cluster: the nodes it
 * knows (address and a plain stx_conn each, opened when a command first
 * needs that node), the owner of each of the 16384 slots as CLUSTER SLOTS
 * last said, and a queue of the commands sent whose replies are not read
 * yet.  connection.c hands stx_conn_command/append/read/close/set_timeout
 * here while c->cluster is set; on a single Redis none of this runs (one
 * CLUSTER INFO at connect tells the two apart, url.cluster auto).
 *
 * Routing.  A command goes to the master of its first key's slot; all its
 * keys must share that slot (checked before sending: a clear EINVAL, not
 * Redis's CROSSSLOT).  A command without keys (SCRIPT LOAD, WAIT, INFO,
 * PING) goes to the node of the previous command: a SCRIPT LOAD after
 * NOSCRIPT loads the script where the EVALSHA ran, and a WAIT after a
 * commit waits for that commit's replicas.  MULTI is held back until the
 * first keyed command after it and sent to that command's node; EXEC
 * follows it there.
 *
 * Replies.  Each reply is read from the node its command went to, in the
 * order of the calls, so a pipeline whose commands share a slot (the
 * processor's commit + next read) is one pipeline to one node.  Before a
 * reply is returned:
 *   MOVED slot addr: the slot is patched to addr, the whole map is learned
 *     again before the next command (when no reply is pending), and the
 *     command is sent to addr;
 *   ASK slot addr: ASKING + the command, once, to addr (the map stays);
 *   TRYAGAIN (keys of a multi-key command half migrated; after an ASK,
 *     the importing node says it too while some keys of a script are not
 *     there yet) and CLUSTERDOWN (a master lost, no replica promoted yet):
 *     wait, with jitter, doubling from 20 ms up to 500 ms, and send again
 *     (after an ASK, to the importing node with ASKING), for at most the
 *     command timeout in all; then STX_EREDIS_REFUSED (retriable: the
 *     command did not run).
 * At most MAX_REDIRECTS redirections per command; more is
 * STX_EREDIS_REFUSED too.  A command inside
 * MULTI is not redirected (it would run outside the transaction): its
 * error stands and EXEC fails, as the caller expects of a failed MULTI.
 * Before a command is sent again to a node that has replies pending for
 * later commands, those replies are read ahead and kept with their
 * commands (so the node's reply order and the callers' stay in step).
 *
 * Failures.  A node that cannot be reached when a command needs it makes
 * the map be learned again from any other node; if the slot has a new
 * owner the command goes there, else the call fails with STX_ECONN.  A
 * session that breaks while in use closes every session (as on a single
 * Redis: a connection that lost its place is not reused) and the call
 * gives STX_ECONN or STX_ETIMEOUT; the next stx_conn_open() starts again
 * from the seeds and the nodes learned (c->cluster_known), so a dead seed
 * does not keep the caller out.
 *
 * Scripts.  Redis does not replicate SCRIPT LOAD: a replica promoted by a
 * failover answers NOSCRIPT, and scripts.c loads the script again and
 * retries; the load goes to the EVALSHA's node by the keyless rule. */
#include "cluster.h"

#include <errno.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <time.h>

#include "keys.h"
#include "reply.h"
#include "streamtx.h"

#define MAX_REDIRECTS 5
#define MAX_NODES 512           /* a CLUSTER SLOTS reply naming more is cut */
#define BACKOFF_FIRST_MS 20
#define BACKOFF_MAX_MS 500

typedef struct cl_node {
    char host[256];
    int port;
    stx_conn conn;              /* plain session (url.cluster off); ctx NULL until used */
} cl_node;

/* A command whose reply is not read yet. */
typedef struct cl_pending {
    int node;                   /* where it was sent; -1: a MULTI held back */
    int in_multi;               /* sent between MULTI and EXEC: not redirected */
    int argc;
    const char **argv;          /* a copy (one block with lens and bytes) */
    size_t *lens;
    redisReply *ahead;          /* read ahead of its turn (see "Replies") */
} cl_pending;

struct stx_cluster {
    cl_node *nodes;
    size_t n, cap;
    int16_t owner[STX_CLUSTER_SLOTS]; /* node index, -1 unknown */
    int last;                   /* node of the last command sent */
    int stale;                  /* a MOVED was seen: learn the map again */
    long timeout_ms;
    cl_pending *q;              /* ring of pending commands */
    size_t q_head, q_len, q_cap;
    int multi_open;             /* between MULTI and EXEC in what was sent */
    int multi_node;             /* node of that MULTI; -1 while held back */
    uint64_t rng;
    stx_cluster_stats stats;
};

/* ------------------------------------------------------------------ */
/* small helpers                                                       */

static size_t arg_len(const char **argv, const size_t *lens, int i)
{
    return lens ? lens[i] : strlen(argv[i]);
}

static int arg_is(const char **argv, const size_t *lens, int i, const char *word)
{
    size_t n = strlen(word);
    return arg_len(argv, lens, i) == n && strncasecmp(argv[i], word, n) == 0;
}

static void sleep_ms(long ms)
{
    struct timespec ts = {ms / 1000, (ms % 1000) * 1000000L};
    while (nanosleep(&ts, &ts) != 0 && errno == EINTR) {
    }
}

static int64_t now_ms(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

static uint64_t next_rand(stx_cluster *cl)
{
    uint64_t x = cl->rng; /* xorshift64: jitter only */
    x ^= x << 13;
    x ^= x >> 7;
    x ^= x << 17;
    return cl->rng = x;
}

/* ------------------------------------------------------------------ */
/* where a command's keys are                                          */

static const char *const keyless[] = {
    "PING", "INFO", "TIME", "SCRIPT", "CLIENT", "CLUSTER", "WAIT", "COMMAND", "CONFIG",
    "DBSIZE", "SCAN", "KEYS", "FLUSHALL", "FLUSHDB", "SELECT", "AUTH", "HELLO", "ECHO",
    "MULTI", "EXEC", "DISCARD", "READONLY", "READWRITE", "ASKING", "FUNCTION", "DEBUG",
    "SLOWLOG", "LATENCY", "ACL", "SAVE", "BGSAVE", "BGREWRITEAOF", "LASTSAVE", "ROLE",
    "REPLICAOF", "SLAVEOF", "SHUTDOWN", "RANDOMKEY", "PUBLISH", "UNWATCH", "QUIT", NULL};

static int is_keyless(const char **argv, const size_t *lens)
{
    for (int i = 0; keyless[i]; i++)
        if (arg_is(argv, lens, 0, keyless[i])) return 1;
    return 0;
}

int stx_cluster_command_slot(int argc, const char **argv, const size_t *lens, char *err,
                             size_t errlen)
{
    if (argc < 1) return -1;
    int first = 1, last = 1, step = 1;
    if (arg_is(argv, lens, 0, "EVAL") || arg_is(argv, lens, 0, "EVALSHA") ||
        arg_is(argv, lens, 0, "EVAL_RO") || arg_is(argv, lens, 0, "EVALSHA_RO") ||
        arg_is(argv, lens, 0, "FCALL") || arg_is(argv, lens, 0, "FCALL_RO")) {
        if (argc < 3) return -1;
        char num[24];
        size_t n = arg_len(argv, lens, 2);
        if (n == 0 || n >= sizeof num) return -1;
        memcpy(num, argv[2], n);
        num[n] = '\0';
        long k = strtol(num, NULL, 10);
        if (k <= 0) return -1;
        first = 3;
        last = 3 + (int)(k > argc ? argc : k) - 1;
    } else if (arg_is(argv, lens, 0, "XREAD") || arg_is(argv, lens, 0, "XREADGROUP")) {
        int s = 1;
        while (s < argc && !arg_is(argv, lens, s, "STREAMS")) s++;
        if (s >= argc - 1) return -1;
        int n = (argc - s - 1) / 2;
        if (n < 1) return -1;
        first = s + 1;
        last = s + n;
    } else if (arg_is(argv, lens, 0, "XINFO") || arg_is(argv, lens, 0, "XGROUP") ||
               arg_is(argv, lens, 0, "OBJECT") || arg_is(argv, lens, 0, "MEMORY")) {
        if (argc < 3 || arg_is(argv, lens, 1, "HELP")) return -1;
        if (arg_is(argv, lens, 0, "MEMORY") && !arg_is(argv, lens, 1, "USAGE")) return -1;
        first = last = 2;
    } else if (arg_is(argv, lens, 0, "DEL") || arg_is(argv, lens, 0, "UNLINK") ||
               arg_is(argv, lens, 0, "EXISTS") || arg_is(argv, lens, 0, "TOUCH") ||
               arg_is(argv, lens, 0, "MGET") || arg_is(argv, lens, 0, "WATCH")) {
        last = argc - 1;
    } else if (arg_is(argv, lens, 0, "MSET") || arg_is(argv, lens, 0, "MSETNX")) {
        last = argc - 1;
        step = 2;
    } else if (is_keyless(argv, lens)) {
        return -1;
    }
    if (first >= argc) return -1;
    if (last >= argc) last = argc - 1;
    unsigned slot = stx_key_slot(argv[first], arg_len(argv, lens, first));
    for (int i = first + step; i <= last; i += step) {
        size_t n = arg_len(argv, lens, i);
        if (stx_key_slot(argv[i], n) != slot) {
            if (err && errlen)
                snprintf(err, errlen,
                         "%.*s: keys '%.*s' (slot %u) and '%.*s' (slot %u) are in different "
                         "Redis Cluster slots; keys of one command must share a hash tag",
                         (int)(arg_len(argv, lens, 0) > 32 ? 32 : arg_len(argv, lens, 0)),
                         argv[0], (int)(arg_len(argv, lens, first) > 100 ? 100 : arg_len(argv, lens, first)),
                         argv[first], slot, (int)(n > 100 ? 100 : n), argv[i],
                         stx_key_slot(argv[i], n));
            return -2;
        }
    }
    return (int)slot;
}

/* ------------------------------------------------------------------ */
/* nodes                                                               */

static int node_find(stx_cluster *cl, const char *host, int port)
{
    for (size_t i = 0; i < cl->n; i++)
        if (cl->nodes[i].port == port && strcmp(cl->nodes[i].host, host) == 0) return (int)i;
    return -1;
}

/* Index of host:port, added when new; -1 when out of memory or full. */
static int node_add(stx_conn *c, const char *host, int port)
{
    stx_cluster *cl = c->cluster;
    int i = node_find(cl, host, port);
    if (i >= 0) return i;
    if (strlen(host) >= sizeof cl->nodes[0].host || cl->n >= MAX_NODES) return -1;
    if (cl->n == cl->cap) {
        size_t cap = cl->cap ? cl->cap * 2 : 8;
        cl_node *nodes = realloc(cl->nodes, cap * sizeof *nodes);
        if (!nodes) return -1;
        cl->nodes = nodes;
        cl->cap = cap;
    }
    cl_node *nd = &cl->nodes[cl->n];
    memset(nd, 0, sizeof *nd);
    snprintf(nd->host, sizeof nd->host, "%s", host);
    nd->port = port;
    stx_url u = c->url;
    snprintf(u.host, sizeof u.host, "%s", host);
    u.port = port;
    u.path[0] = '\0';
    u.cluster = STX_CLUSTER_OFF;
    stx_conn_init(&nd->conn, &u, c->connect_timeout_ms, c->command_timeout_ms);
    nd->conn.max_reply_bytes = c->max_reply_bytes;
    nd->conn.name = c->name;
    return (int)cl->n++;
}

/* "host:port" into host/port ([v6]:port too); 0 or -1. */
static int split_addr(const char *s, size_t n, char *host, size_t cap, int *port)
{
    const char *colon = NULL;
    for (size_t i = 0; i < n; i++)
        if (s[i] == ':') colon = s + i;
    if (!colon) return -1;
    const char *h = s;
    size_t hl = (size_t)(colon - s);
    if (hl >= 2 && h[0] == '[' && h[hl - 1] == ']') {
        h++;
        hl -= 2;
    }
    if (hl >= cap) return -1;
    char num[8];
    size_t pl = n - (size_t)(colon + 1 - s);
    if (pl == 0 || pl >= sizeof num) return -1;
    memcpy(num, colon + 1, pl);
    num[pl] = '\0';
    char *end;
    long p = strtol(num, &end, 10);
    if (*end || p < 1 || p > 65535) return -1;
    memcpy(host, h, hl);
    host[hl] = '\0';
    *port = (int)p;
    return 0;
}

/* Open node i's session if it is closed. */
static int node_open(stx_conn *c, int i)
{
    stx_cluster *cl = c->cluster;
    cl_node *nd = &cl->nodes[i];
    if (nd->conn.ctx) return STX_OK;
    nd->conn.name = c->name;
    int rc = stx_conn_open_node(&nd->conn);
    if (rc != STX_OK) return rc;
    if (cl->timeout_ms != c->command_timeout_ms) stx_conn_set_timeout(&nd->conn, cl->timeout_ms);
    return STX_OK;
}

static int node_pending(const stx_cluster *cl, int i)
{
    for (size_t k = 0; k < cl->q_len; k++)
        if (cl->q[(cl->q_head + k) % cl->q_cap].node == i) return 1;
    return 0;
}

/* ------------------------------------------------------------------ */
/* the slot map                                                        */

static int int_of(const redisReply *r, long long *out)
{
    if (!r || r->type != REDIS_REPLY_INTEGER) return -1;
    *out = r->integer;
    return 0;
}

/* host/port of a CLUSTER SLOTS node entry [ip, port, id, ...]; an empty ip
 * means the node we asked. */
static int slots_node(stx_conn *c, const redisReply *e, const cl_node *asked)
{
    long long port;
    if (!e || e->type != REDIS_REPLY_ARRAY || e->elements < 2 ||
        e->element[0]->type != REDIS_REPLY_STRING || int_of(e->element[1], &port) != 0 ||
        port < 1 || port > 65535)
        return -2;
    const char *host = e->element[0]->len ? e->element[0]->str : asked->host;
    return node_add(c, host, (int)port);
}

static int apply_slots(stx_conn *c, const redisReply *r, const cl_node *asked)
{
    stx_cluster *cl = c->cluster;
    if (r->type != REDIS_REPLY_ARRAY) return STX_EREDIS;
    int16_t owner[STX_CLUSTER_SLOTS];
    for (size_t s = 0; s < STX_CLUSTER_SLOTS; s++) owner[s] = -1;
    for (size_t i = 0; i < r->elements; i++) {
        const redisReply *e = r->element[i];
        long long lo, hi;
        if (e->type != REDIS_REPLY_ARRAY || e->elements < 3 || int_of(e->element[0], &lo) != 0 ||
            int_of(e->element[1], &hi) != 0 || lo < 0 || hi < lo || hi >= STX_CLUSTER_SLOTS)
            return STX_EREDIS;
        int m = slots_node(c, e->element[2], asked);
        if (m == -2) return STX_EREDIS;
        for (size_t k = 3; k < e->elements; k++) slots_node(c, e->element[k], asked); /* replicas */
        for (long long s = lo; s <= hi; s++) owner[s] = (int16_t)m;
    }
    memcpy(cl->owner, owner, sizeof owner);
    return STX_OK;
}

/* CLUSTER SLOTS from node i (its session must have nothing pending). */
static int slots_from(stx_conn *c, int i)
{
    stx_cluster *cl = c->cluster;
    int rc = node_open(c, i);
    if (rc != STX_OK) return rc;
    const char *argv[] = {"CLUSTER", "SLOTS"};
    redisReply *r;
    rc = stx_conn_command(&cl->nodes[i].conn, &r, 2, argv, NULL);
    if (rc != STX_OK) return rc;
    cl_node asked = cl->nodes[i]; /* nodes may move when the reply adds some */
    rc = apply_slots(c, r, &asked);
    stx_reply_release(r);
    if (rc != STX_OK)
        snprintf(cl->nodes[i].conn.err, sizeof cl->nodes[i].conn.err,
                 "%s:%d: malformed CLUSTER SLOTS reply", asked.host, asked.port);
    return rc;
}

/* Learn the map from any node without pending replies, first from prefer
 * (when >= 0), skipping avoid.  STX_OK, or the last failure (c->err). */
static int refresh(stx_conn *c, int prefer, int avoid)
{
    stx_cluster *cl = c->cluster;
    cl->stats.refreshes++;
    int rc = STX_ECONN;
    snprintf(c->err, sizeof c->err, "no cluster node to ask for the slot map");
    for (size_t k = 0; k <= cl->n; k++) {
        int i = k == 0 ? prefer : (int)k - 1;
        if (i < 0 || (k > 0 && i == prefer) || i == avoid || (size_t)i >= cl->n ||
            node_pending(cl, i))
            continue;
        rc = slots_from(c, i);
        if (rc == STX_OK) {
            cl->stale = 0;
            return STX_OK;
        }
        memcpy(c->err, cl->nodes[i].conn.err, sizeof c->err);
    }
    return rc;
}

/* ------------------------------------------------------------------ */
/* open and close                                                      */

static void remember_nodes(stx_conn *c)
{
    stx_cluster *cl = c->cluster;
    size_t o = 0;
    c->cluster_known[0] = '\0';
    for (size_t i = 0; i < cl->n; i++) {
        const cl_node *nd = &cl->nodes[i];
        int n = snprintf(c->cluster_known + o, sizeof c->cluster_known - o,
                         strchr(nd->host, ':') ? "%s[%s]:%d" : "%s%s:%d", o ? "," : "",
                         nd->host, nd->port);
        if (n < 0 || (size_t)n >= sizeof c->cluster_known - o) {
            c->cluster_known[o] = '\0'; /* full: the rest is learned from these */
            break;
        }
        o += (size_t)n;
    }
}

void stx_cluster_close(stx_conn *c)
{
    stx_cluster *cl = c->cluster;
    if (!cl) return;
    remember_nodes(c);
    for (size_t i = 0; i < cl->n; i++) stx_conn_close(&cl->nodes[i].conn);
    for (size_t k = 0; k < cl->q_len; k++) {
        cl_pending *p = &cl->q[(cl->q_head + k) % cl->q_cap];
        if (p->ahead) stx_reply_release(p->ahead);
        free(p->argv);
    }
    free(cl->q);
    free(cl->nodes);
    free(cl);
    c->cluster = NULL;
    c->ctx = NULL;
}

/* Close everything after a failure of node i (its message into c->err). */
static int fail_all(stx_conn *c, int i, int rc)
{
    stx_cluster *cl = c->cluster;
    if (i >= 0 && (size_t)i < cl->n) memcpy(c->err, cl->nodes[i].conn.err, sizeof c->err);
    cl->stats.node_failures++;
    stx_cluster_close(c);
    return rc;
}

/* Whether the server behind the open plain session c has cluster support
 * (1), has not (0), or the connection failed (< 0, c->err set). */
static int detect(stx_conn *c)
{
    const char *argv[] = {"CLUSTER", "INFO"};
    redisReply *r;
    int rc = stx_conn_command(c, &r, 2, argv, NULL);
    if (rc == STX_ECONN || rc == STX_ETIMEOUT || rc == STX_ENOMEM || rc == STX_ETLS) return rc;
    int on = rc == STX_OK && r->type == REDIS_REPLY_STRING && strstr(r->str, "cluster_state:");
    if (r) stx_reply_release(r);
    c->err[0] = '\0';
    return on;
}

/* Make c a cluster connection whose first node is the open plain session
 * (url u) held by from. */
static int become_cluster(stx_conn *c, stx_conn *from)
{
    stx_cluster *cl = calloc(1, sizeof *cl);
    if (!cl) {
        stx_conn_close(from);
        snprintf(c->err, sizeof c->err, "out of memory");
        return STX_ENOMEM;
    }
    cl->last = 0;
    cl->multi_node = -1;
    cl->timeout_ms = c->command_timeout_ms;
    cl->rng = (uint64_t)now_ms() * 0x9E3779B97F4A7C15ull ^ (uintptr_t)cl;
    if (!cl->rng) cl->rng = 1;
    for (size_t s = 0; s < STX_CLUSTER_SLOTS; s++) cl->owner[s] = -1;
    c->cluster = cl;
    int i = node_add(c, from->url.host, from->url.port);
    if (i < 0) {
        stx_conn_close(from);
        stx_cluster_close(c);
        snprintf(c->err, sizeof c->err, "out of memory");
        return STX_ENOMEM;
    }
    cl->nodes[i].conn.ctx = from->ctx; /* the session moves to the node */
    from->ctx = NULL;
    c->ctx = cl->nodes[i].conn.ctx;
    int rc = slots_from(c, i);
    if (rc != STX_OK) return fail_all(c, i, rc);
    return STX_OK;
}

/* Try host:port as a seed: STX_OK with c a cluster connection, 1 when it
 * answered but is no cluster, or a failure (c->err). */
static int try_seed(stx_conn *c, const char *host, int port)
{
    stx_conn t;
    stx_url u = c->url;
    snprintf(u.host, sizeof u.host, "%s", host);
    u.port = port;
    u.cluster = STX_CLUSTER_OFF;
    stx_conn_init(&t, &u, c->connect_timeout_ms, c->command_timeout_ms);
    t.name = c->name;
    t.max_reply_bytes = c->max_reply_bytes;
    int rc = stx_conn_open_node(&t);
    if (rc == STX_OK) rc = detect(&t);
    if (rc == 1) return become_cluster(c, &t);
    stx_conn_close(&t);
    if (rc == 0) return 1;
    memcpy(c->err, t.err, sizeof c->err);
    return rc;
}

/* Try each "host:port" of a comma-separated list. */
static int try_list(stx_conn *c, const char *list, int *rc)
{
    for (const char *p = list; p && *p;) {
        const char *comma = strchr(p, ',');
        size_t n = comma ? (size_t)(comma - p) : strlen(p);
        char host[256];
        int port;
        if (split_addr(p, n, host, sizeof host, &port) == 0 &&
            !(port == c->url.port && strcmp(host, c->url.host) == 0)) {
            int r = try_seed(c, host, port);
            if (r == STX_OK) return 1;
            if (r != 1) *rc = r;
        }
        p = comma ? comma + 1 : NULL;
    }
    return 0;
}

int stx_cluster_open(stx_conn *c)
{
    stx_conn_close(c);
    if (c->url.path[0]) {
        if (c->url.cluster == STX_CLUSTER_ON) {
            snprintf(c->err, sizeof c->err, "cluster=on needs TCP addresses, not a Unix socket");
            return STX_EINVAL;
        }
        return stx_conn_open_node(c); /* a cluster is not reached through a Unix socket */
    }
    /* The URL's own address first, as a plain session on c: on a single
     * Redis that session is the connection, as before. */
    int rc = stx_conn_open_node(c);
    if (rc == STX_OK) {
        int on = detect(c);
        if (on < 0) {
            stx_conn_close(c);
            return on;
        }
        if (on == 0) {
            if (c->url.cluster != STX_CLUSTER_ON) return STX_OK;
            stx_conn_close(c);
            snprintf(c->err, sizeof c->err,
                     "cluster=on but %s:%d has cluster support disabled (cluster=auto or off "
                     "for a single Redis)",
                     c->url.host, c->url.port);
            return STX_EINVAL;
        }
        stx_conn from = *c; /* the session moves into the node table */
        c->ctx = NULL;
        return become_cluster(c, &from);
    }
    if (rc != STX_ECONN && rc != STX_ETIMEOUT) return rc;
    /* The first seed is away: any other seed, given or learned, will do. */
    int any = rc;
    char err[sizeof c->err];
    memcpy(err, c->err, sizeof err);
    char known[sizeof c->cluster_known];
    memcpy(known, c->cluster_known, sizeof known);
    if (try_list(c, c->url.seeds, &any) || try_list(c, c->url.nodes, &any) ||
        try_list(c, known, &any))
        return STX_OK;
    if (any == rc) memcpy(c->err, err, sizeof c->err);
    return any;
}

/* ------------------------------------------------------------------ */
/* sending                                                             */

static int q_push(stx_conn *c, int node, int argc, const char **argv, const size_t *lens)
{
    stx_cluster *cl = c->cluster;
    if (cl->q_len == cl->q_cap) {
        size_t cap = cl->q_cap ? cl->q_cap * 2 : 8;
        cl_pending *q = malloc(cap * sizeof *q);
        if (!q) return STX_ENOMEM;
        for (size_t k = 0; k < cl->q_len; k++) q[k] = cl->q[(cl->q_head + k) % cl->q_cap];
        free(cl->q);
        cl->q = q;
        cl->q_cap = cap;
        cl->q_head = 0;
    }
    size_t bytes = 0;
    for (int i = 0; i < argc; i++) bytes += arg_len(argv, lens, i) + 1;
    size_t head = (size_t)argc * (sizeof(char *) + sizeof(size_t));
    char *block = malloc(head + bytes);
    if (!block) return STX_ENOMEM;
    cl_pending *p = &cl->q[(cl->q_head + cl->q_len) % cl->q_cap];
    memset(p, 0, sizeof *p);
    p->node = node;
    p->in_multi = cl->multi_open;
    p->argc = argc;
    p->argv = (const char **)(void *)block;
    p->lens = (size_t *)(void *)(block + (size_t)argc * sizeof(char *));
    char *o = block + head;
    for (int i = 0; i < argc; i++) {
        size_t n = arg_len(argv, lens, i);
        if (n) memcpy(o, argv[i], n);
        o[n] = '\0';
        p->argv[i] = o;
        p->lens[i] = n;
        o += n + 1;
    }
    cl->q_len++;
    return STX_OK;
}

/* Node of slot, opened; when it cannot be reached, the map is learned
 * again from another node and a new owner is tried once.  Index or < 0:
 * -(code) after fail_all(). */
static int route_open(stx_conn *c, int slot, int *out)
{
    stx_cluster *cl = c->cluster;
    for (int attempt = 0;; attempt++) {
        int i = slot >= 0 && cl->owner[slot] >= 0 ? cl->owner[slot] : cl->last;
        if (i < 0 || (size_t)i >= cl->n) i = 0;
        int rc = node_open(c, i);
        if (rc == STX_OK) {
            *out = i;
            return STX_OK;
        }
        if (rc != STX_ECONN && rc != STX_ETIMEOUT) return fail_all(c, i, rc);
        char err[sizeof c->err];
        memcpy(err, cl->nodes[i].conn.err, sizeof err);
        cl->stats.node_failures++;
        if (attempt > 0 || refresh(c, -1, i) != STX_OK ||
            (slot >= 0 ? cl->owner[slot] : cl->last) == i) {
            memcpy(cl->nodes[i].conn.err, err, sizeof err);
            return fail_all(c, i, rc);
        }
        if (slot < 0) { /* keyless: any other master */
            for (size_t s = 0; s < STX_CLUSTER_SLOTS; s++)
                if (cl->owner[s] >= 0 && cl->owner[s] != i) {
                    cl->last = cl->owner[s];
                    break;
                }
        }
    }
}

/* Append to node i's session, holding back a MULTI until its node is known. */
static int node_append(stx_conn *c, int i, int argc, const char **argv, const size_t *lens)
{
    stx_cluster *cl = c->cluster;
    if (cl->multi_open && cl->multi_node < 0) {
        /* The held MULTI goes first, to this node. */
        const char *multi[] = {"MULTI"};
        int rc = stx_conn_append(&cl->nodes[i].conn, 1, multi, NULL);
        if (rc != STX_OK) return fail_all(c, i, rc);
        for (size_t k = 0; k < cl->q_len; k++) {
            cl_pending *p = &cl->q[(cl->q_head + k) % cl->q_cap];
            if (p->node < 0) p->node = i;
        }
        cl->multi_node = i;
    }
    int rc = stx_conn_append(&cl->nodes[i].conn, argc, argv, lens);
    if (rc != STX_OK) return fail_all(c, i, rc);
    cl->last = i;
    return STX_OK;
}

static int append_routed(stx_conn *c, int forced_slot, int argc, const char **argv,
                         const size_t *lens)
{
    stx_cluster *cl = c->cluster;
    if (cl->stale && cl->q_len == 0 && refresh(c, cl->last, -1) != STX_OK) {
        /* A map not learned now is learned at the next MOVED: the patched
         * slot still routes this command. */
        cl->stale = 0;
        c->err[0] = '\0';
    }
    int slot = forced_slot;
    if (slot < 0) {
        slot = stx_cluster_command_slot(argc, argv, lens, c->err, sizeof c->err);
        if (slot == -2) return STX_EINVAL;
    }
    int multi = argc >= 1 && arg_is(argv, lens, 0, "MULTI");
    int ends = argc >= 1 && (arg_is(argv, lens, 0, "EXEC") || arg_is(argv, lens, 0, "DISCARD"));
    if (multi && !cl->multi_open) {
        cl->multi_open = 1;
        cl->multi_node = -1;
        int rc = q_push(c, -1, argc, argv, lens);
        if (rc != STX_OK) snprintf(c->err, sizeof c->err, "out of memory");
        return rc;
    }
    int i;
    if (cl->multi_open && cl->multi_node >= 0) { /* the transaction's node */
        i = cl->multi_node;
    } else {
        int rc = route_open(c, slot, &i);
        if (rc != STX_OK) return rc;
    }
    int rc = q_push(c, i, argc, argv, lens);
    if (rc != STX_OK) {
        snprintf(c->err, sizeof c->err, "out of memory");
        return rc;
    }
    rc = node_append(c, i, argc, argv, lens);
    if (rc != STX_OK) return rc;
    if (ends) {
        cl->multi_open = 0;
        cl->multi_node = -1;
    }
    return STX_OK;
}

int stx_cluster_append(stx_conn *c, int argc, const char **argv, const size_t *lens)
{
    return append_routed(c, -1, argc, argv, lens);
}

/* ------------------------------------------------------------------ */
/* replies                                                             */

enum { R_NONE, R_MOVED, R_ASK, R_TRYAGAIN, R_DOWN };

/* Kind of a reply; for MOVED/ASK the target into host/port. */
static int redirect_of(const redisReply *r, char *host, size_t cap, int *port,
                       const cl_node *from)
{
    if (!r || r->type != REDIS_REPLY_ERROR || !r->str) return R_NONE;
    if (strncmp(r->str, "TRYAGAIN", 8) == 0) return R_TRYAGAIN;
    if (strncmp(r->str, "CLUSTERDOWN", 11) == 0) return R_DOWN;
    int kind = strncmp(r->str, "MOVED ", 6) == 0 ? R_MOVED
               : strncmp(r->str, "ASK ", 4) == 0 ? R_ASK
                                                 : R_NONE;
    if (kind == R_NONE) return R_NONE;
    const char *addr = strchr(r->str + (kind == R_MOVED ? 6 : 4), ' ');
    if (!addr) return R_NONE;
    addr++;
    if (addr[0] == ':') { /* the node does not know its own address */
        snprintf(host, cap, "%s", from->host);
        char *end;
        long p = strtol(addr + 1, &end, 10);
        if (*end || p < 1 || p > 65535) return R_NONE;
        *port = (int)p;
        return kind;
    }
    return split_addr(addr, strlen(addr), host, cap, port) == 0 ? kind : R_NONE;
}

static long redirect_slot(const redisReply *r)
{
    const char *s = strchr(r->str, ' ');
    return s ? strtol(s + 1, NULL, 10) : -1;
}

/* Read ahead every reply node i owes to commands after the head. */
static int drain(stx_conn *c, int i)
{
    stx_cluster *cl = c->cluster;
    for (size_t k = 1; k < cl->q_len; k++) {
        cl_pending *p = &cl->q[(cl->q_head + k) % cl->q_cap];
        if (p->node != i || p->ahead) continue;
        int rc = stx_conn_read_raw(&cl->nodes[i].conn, &p->ahead);
        if (rc != STX_OK) return fail_all(c, i, rc);
    }
    return STX_OK;
}

/* Send the head command again to node i (ASKING first when asking) and
 * read its reply into *r. */
static int resend(stx_conn *c, cl_pending *p, int i, int asking, redisReply **r)
{
    stx_cluster *cl = c->cluster;
    int rc = node_open(c, i);
    if (rc != STX_OK) return fail_all(c, i, rc);
    if ((rc = drain(c, i)) != STX_OK) return rc;
    stx_conn *nc = &cl->nodes[i].conn;
    const char *ask[] = {"ASKING"};
    if (asking && (rc = stx_conn_append(nc, 1, ask, NULL)) != STX_OK) return fail_all(c, i, rc);
    if ((rc = stx_conn_append(nc, p->argc, p->argv, p->lens)) != STX_OK)
        return fail_all(c, i, rc);
    if (asking) {
        redisReply *ok;
        if ((rc = stx_conn_read_raw(nc, &ok)) != STX_OK) return fail_all(c, i, rc);
        stx_reply_release(ok);
    }
    if ((rc = stx_conn_read_raw(nc, r)) != STX_OK) return fail_all(c, i, rc);
    p->node = i;
    cl->last = i;
    return STX_OK;
}

static void q_pop(stx_cluster *cl)
{
    cl_pending *p = &cl->q[cl->q_head];
    free(p->argv);
    cl->q_head = (cl->q_head + 1) % cl->q_cap;
    cl->q_len--;
}

static int read_routed(stx_conn *c, redisReply **reply, int raw)
{
    stx_cluster *cl = c->cluster;
    *reply = NULL;
    if (cl->q_len == 0) {
        snprintf(c->err, sizeof c->err, "no reply pending");
        return STX_EINVAL;
    }
    cl_pending *p = &cl->q[cl->q_head];
    if (p->node < 0) {
        /* A MULTI with no keyed command behind it: to the last node. */
        int i = cl->last >= 0 && (size_t)cl->last < cl->n ? cl->last : 0;
        int rc = node_open(c, i);
        if (rc != STX_OK) return fail_all(c, i, rc);
        /* node_append() sends the held MULTI first; here it is all. */
        cl->multi_node = -1;
        const char *multi[] = {"MULTI"};
        cl->multi_open = 0;
        if ((rc = stx_conn_append(&cl->nodes[i].conn, 1, multi, NULL)) != STX_OK)
            return fail_all(c, i, rc);
        cl->multi_open = 1;
        cl->multi_node = i;
        cl->last = i;
        for (size_t k = 0; k < cl->q_len; k++)
            if (cl->q[(cl->q_head + k) % cl->q_cap].node < 0)
                cl->q[(cl->q_head + k) % cl->q_cap].node = i;
    }
    redisReply *r = p->ahead;
    p->ahead = NULL;
    if (!r) {
        int rc = stx_conn_read_raw(&cl->nodes[p->node].conn, &r);
        if (rc != STX_OK) return fail_all(c, p->node, rc);
    }
    int64_t deadline = now_ms() + cl->timeout_ms;
    long backoff = BACKOFF_FIRST_MS;
    int ask_target = -1; /* the importing node an ASK named, for a TRYAGAIN there */
    for (int redirects = 0;;) {
        char host[256];
        int port = 0;
        int kind = redirect_of(r, host, sizeof host, &port, &cl->nodes[p->node]);
        if (p->in_multi && kind == R_MOVED) cl->stale = 1; /* not followed, but learned */
        if (p->in_multi || kind == R_NONE) break;
        int target = p->node, asking = 0;
        if (kind == R_MOVED || kind == R_ASK) {
            target = ++redirects > MAX_REDIRECTS ? -1 : node_add(c, host, port);
            if (target < 0) {
                /* MOVED and ASK mean the command did not run: retriable. */
                snprintf(c->err, sizeof c->err, "Redis Cluster: too many redirections (last: %.600s)",
                         r->str);
                stx_reply_release(r);
                q_pop(cl);
                return STX_EREDIS_REFUSED;
            }
            ask_target = kind == R_ASK ? target : -1;
            if (kind == R_MOVED) {
                cl->stats.moved++;
                long s = redirect_slot(r);
                if (s >= 0 && s < STX_CLUSTER_SLOTS) cl->owner[s] = (int16_t)target;
                cl->stale = 1;
            } else {
                cl->stats.ask++;
                asking = 1;
            }
        } else {
            if (kind == R_TRYAGAIN) cl->stats.tryagain++;
            else cl->stats.clusterdown++;
            long left = (long)(deadline - now_ms());
            if (left <= 0) {
                snprintf(c->err, sizeof c->err,
                         "Redis Cluster still answers %.600s after %ld ms of retries", r->str,
                         cl->timeout_ms);
                stx_reply_release(r);
                q_pop(cl);
                return STX_EREDIS_REFUSED;
            }
            long wait = backoff / 2 + (long)(next_rand(cl) % (uint64_t)(backoff / 2 + 1));
            sleep_ms(wait < left ? wait : left);
            backoff = backoff * 2 > BACKOFF_MAX_MS ? BACKOFF_MAX_MS : backoff * 2;
            if (kind == R_DOWN && cl->q_len == 1) refresh(c, -1, -1);
            int slot = stx_cluster_command_slot(p->argc, p->argv, p->lens, NULL, 0);
            if (kind == R_TRYAGAIN && ask_target >= 0) {
                /* Keys half imported: the importing node again, with ASKING. */
                target = ask_target;
                asking = 1;
            } else if (slot >= 0 && cl->owner[slot] >= 0) {
                target = cl->owner[slot];
            }
        }
        stx_reply_release(r);
        r = NULL;
        int rc = resend(c, p, target, asking, &r);
        if (rc != STX_OK) return rc;
    }
    q_pop(cl);
    if (!raw) {
        int rc = stx_conn_check_reply(c, r);
        if (rc != STX_OK) {
            stx_reply_release(r);
            return rc;
        }
    }
    *reply = r;
    return STX_OK;
}

int stx_cluster_read(stx_conn *c, redisReply **reply)
{
    return read_routed(c, reply, 0);
}

int stx_cluster_command(stx_conn *c, redisReply **reply, int argc, const char **argv,
                        const size_t *lens, int raw)
{
    *reply = NULL;
    int rc = append_routed(c, -1, argc, argv, lens);
    return rc == STX_OK ? read_routed(c, reply, raw) : rc;
}

int stx_cluster_command_at(stx_conn *c, unsigned slot, redisReply **reply, int argc,
                           const char **argv, const size_t *lens)
{
    *reply = NULL;
    if (!c->cluster) return stx_conn_command(c, reply, argc, argv, lens);
    int rc = append_routed(c, (int)(slot % STX_CLUSTER_SLOTS), argc, argv, lens);
    return rc == STX_OK ? read_routed(c, reply, 0) : rc;
}

void stx_cluster_set_timeout(stx_conn *c, long timeout_ms)
{
    stx_cluster *cl = c->cluster;
    cl->timeout_ms = timeout_ms;
    for (size_t i = 0; i < cl->n; i++) stx_conn_set_timeout(&cl->nodes[i].conn, timeout_ms);
}

/* ------------------------------------------------------------------ */
/* for callers                                                         */

int stx_cluster_on(const stx_conn *c)
{
    return c && c->cluster != NULL;
}

int stx_cluster_slot_where(const stx_conn *c, unsigned slot, char *buf, size_t cap)
{
    if (!c || !c->cluster) return STX_ESTATE;
    int i = c->cluster->owner[slot % STX_CLUSTER_SLOTS];
    if (i < 0) return STX_ENOTFOUND;
    const cl_node *nd = &c->cluster->nodes[i];
    snprintf(buf, cap, strchr(nd->host, ':') ? "[%s]:%d" : "%s:%d", nd->host, nd->port);
    return STX_OK;
}

int stx_cluster_refresh(stx_conn *c)
{
    if (!c->cluster) return STX_ESTATE;
    if (c->cluster->q_len) {
        snprintf(c->err, sizeof c->err, "replies pending: read them first");
        return STX_EINVAL;
    }
    return refresh(c, c->cluster->last, -1);
}

void stx_cluster_get_stats(const stx_conn *c, stx_cluster_stats *out)
{
    if (c && c->cluster) *out = c->cluster->stats;
    else memset(out, 0, sizeof *out);
}
