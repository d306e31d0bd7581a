/* stx_bench partitions: throughput of members (stx_member, one process
 * each) over a partitioned stream of 1, 2, 4 and 8 partitions with 1 and 2
 * members, on one Redis and on a Redis Cluster, with the Redis CPU per
 * entry of each node.
 *
 *   stx_bench partitions --port P [--cluster-ports P1,P2,P3] [--messages N]
 *
 * Each configuration: the members start on the empty stream and settle
 * their leases; they are stopped (SIGSTOP) while N entries are written
 * (pipelined, to the node of each partition), Redis's counters are read,
 * and the members are let go (SIGCONT).  The figure is N over the time
 * until every partition's offset is its last id; the CPU is INFO cpu of
 * each node over the same span, divided by N.  The parent's offset polls
 * (one HGET per partition every 10 ms) are in it: a few hundred commands
 * against tens of thousands of entries. */
#include <inttypes.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/prctl.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "bench.h"

#define MAX_NODES 8
#define MAX_PARTS 8
#define SKUS 1000
#define LEASE_MS "3000"

typedef struct target {
    const char *name;           /* "single" or "cluster" */
    int nnodes;
    int port[MAX_NODES];
    redisContext *node[MAX_NODES];
    char url[512];
} target;

typedef struct config_result {
    char split[64];             /* partitions per member, e.g. "5/3" */
    double msgs_per_s;
    double redis_us_per_msg[MAX_NODES], redis_us_per_msg_all;
    double cmds_per_msg;        /* Redis commands per entry, all nodes */
} config_result;

static void sleep_ms(long ms)
{
    struct timespec ts = {ms / 1000, (ms % 1000) * 1000000L};
    while (nanosleep(&ts, &ts) != 0) {}
}

/* A number of INFO section ("total_commands_processed:123"); 0 if absent. */
static double info_number(redisContext *c, const char *section, const char *name)
{
    redisReply *r = bench_command(c, "INFO %s", section);
    char needle[96];
    snprintf(needle, sizeof needle, "\n%s:", name);
    const char *p = r->type == REDIS_REPLY_STRING ? strstr(r->str, needle) : NULL;
    double v = p ? strtod(p + strlen(needle), NULL) : 0;
    freeReplyObject(r);
    return v;
}

/* Node index of the master of key's slot (one Redis: 0). */
static int node_of(target *t, const char *key)
{
    if (t->nnodes == 1) return 0;
    redisReply *r = bench_command(t->node[0], "CLUSTER KEYSLOT %s", key);
    long long slot = r->integer;
    freeReplyObject(r);
    r = bench_command(t->node[0], "CLUSTER SLOTS");
    int found = -1;
    for (size_t i = 0; i < r->elements && found < 0; i++) {
        redisReply *e = r->element[i];
        if (slot < e->element[0]->integer || slot > e->element[1]->integer) continue;
        long long port = e->element[2]->element[1]->integer;
        for (int k = 0; k < t->nnodes; k++)
            if (t->port[k] == port) found = k;
    }
    freeReplyObject(r);
    if (found < 0) bench_die("partitions: no node serves slot %lld", slot);
    return found;
}

/* ---- the member processes --------------------------------------------------- */

static stx_member *volatile running;

static void on_term(int sig)
{
    (void)sig;
    if (running) stx_member_stop(running);
}

/* Stock per SKU; an alert into the partition's slot on a threshold crossing. */
static int handler(const stx_msg *msg, stx_txn *txn, void *ud)
{
    (void)ud;
    size_t sku_len;
    const char *sku = stx_msg_get(msg, "sku", &sku_len), *qty = stx_msg_get(msg, "qty", NULL);
    if (!sku || !qty) return STX_HANDLER_FAIL;
    int64_t stock = 100;
    int rc = stx_txn_get_i64(txn, sku, sku_len, &stock);
    if (rc != STX_OK && rc != STX_ENOTFOUND) return rc;
    int64_t after = stock + atoi(qty);
    if ((rc = stx_txn_put_i64(txn, sku, sku_len, after)) != STX_OK) return rc;
    if (stock > 10 && after <= 10) {
        char alerts[160];
        snprintf(alerts, sizeof alerts, "%s:alerts", stx_msg_stream(msg));
        return stx_txn_publishv(txn, alerts, "sku", sku, NULL);
    }
    return STX_OK;
}

static pid_t spawn_member(const target *t, const char *stream, int k)
{
    fflush(NULL);
    pid_t pid = fork();
    if (pid < 0) bench_die("fork failed");
    if (pid) return pid;
    prctl(PR_SET_PDEATHSIG, SIGKILL);
    char name[32];
    snprintf(name, sizeof name, "bm%d", k);
    stx_config *c = stx_config_new();
    const char *kv[] = {"url", t->url, "stream", stream, "group", "inv", "consumer", name,
                        "lease_ttl_ms", LEASE_MS, "command_timeout_ms", "1500",
                        "batch_size", "128", "block_ms", "100", "stats_interval_ms", "0",
                        "log_level", "error", NULL};
    for (int i = 0; kv[i]; i += 2)
        if (stx_config_set(c, kv[i], kv[i + 1], NULL, 0) != STX_OK) _exit(2);
    stx_config_set_handler(c, handler, NULL);
    stx_member *m;
    if (stx_member_new(&m, c) != STX_OK) _exit(2);
    stx_config_free(c);
    running = m;
    struct sigaction sa;
    memset(&sa, 0, sizeof sa);
    sa.sa_handler = on_term;
    sigaction(SIGTERM, &sa, NULL);
    int rc = stx_member_run(m);
    if (rc != STX_OK) fprintf(stderr, "member %s: %s\n", name, stx_member_errmsg(m));
    running = NULL;
    stx_member_free(m);
    _exit(rc == STX_OK ? 0 : 1);
}

/* ---- one configuration ------------------------------------------------------- */

static void lease_owner(target *t, const char *part, int node, char *buf, size_t cap)
{
    char key[512];
    if (stx_key_name(key, sizeof key, part, "inv", "lease") < 0) bench_die("key name");
    redisReply *r = bench_command(t->node[node], "HGET %s owner", key);
    snprintf(buf, cap, "%s", r->type == REDIS_REPLY_STRING ? r->str : "");
    freeReplyObject(r);
}

static void run_config(target *t, unsigned parts, int members, long n, config_result *out)
{
    char stream[64], part[MAX_PARTS][80];
    int node[MAX_PARTS];
    snprintf(stream, sizeof stream, "bp%d-%s-%u-%d", (int)getpid(), t->name, parts, members);
    for (int i = 0; i < t->nnodes; i++) bench_flushall(t->node[i]);

    stx_config *conf = stx_config_new();
    stx_config_set(conf, "url", t->url, NULL, 0);
    stx_client *cl;
    if (stx_client_new(&cl, conf) != STX_OK) bench_die("partitions: client: %s", stx_client_errmsg(cl));
    stx_config_free(conf);
    if (stx_stream_create(cl, stream, parts) != STX_OK)
        bench_die("partitions: create: %s", stx_client_errmsg(cl));
    stx_client_free(cl);
    for (unsigned i = 0; i < parts; i++) {
        stx_partition_name(part[i], sizeof part[i], stream, i);
        node[i] = node_of(t, part[i]);
    }

    /* The members settle: every partition leased, the owners unchanged
     * over more than one renewal period (a third of the lease). */
    pid_t pid[2];
    for (int k = 0; k < members; k++) pid[k] = spawn_member(t, stream, k);
    char prev[MAX_PARTS][128] = {{0}}, own[MAX_PARTS][128];
    uint64_t stable_since = 0, deadline = bench_now_us() + 30000000u;
    for (;;) {
        int all = 1, same = 1;
        for (unsigned i = 0; i < parts; i++) {
            lease_owner(t, part[i], node[i], own[i], sizeof own[i]);
            all &= own[i][0] != '\0';
            same &= strcmp(own[i], prev[i]) == 0;
            memcpy(prev[i], own[i], sizeof prev[i]);
        }
        uint64_t now = bench_now_us();
        if (!all || !same) stable_since = now;
        else if (now - stable_since > 1200000u) break;
        if (now > deadline) bench_die("partitions: leases did not settle");
        sleep_ms(50);
    }

    /* How the partitions came to be split (rendezvous hashing: not
     * always even). */
    int count[MAX_PARTS] = {0}, owners = 0;
    for (unsigned i = 0; i < parts; i++) {
        int k = 0;
        while (k < owners && strcmp(own[k], own[i]) != 0) k++;
        if (k == owners) memmove(own[owners++], own[i], sizeof own[i]);
        count[k]++;
    }
    out->split[0] = '\0';
    for (int k = 0, off = 0; k < owners; k++)
        off += snprintf(out->split + off, sizeof out->split - (size_t)off, "%s%d", k ? "/" : "", count[k]);

    /* Stopped while the entries are written (well within the lease). */
    for (int k = 0; k < members; k++) kill(pid[k], SIGSTOP);
    uint64_t seed = 0x9e3779b97f4a7c15ull ^ (uint64_t)parts << 8 ^ (uint64_t)members;
    long pending[MAX_NODES] = {0};
    char last[MAX_PARTS][64] = {{0}};
    for (long e = 0; e < n; e++) {
        seed ^= seed << 13;
        seed ^= seed >> 7;
        seed ^= seed << 17;
        char sku[16];
        int len = snprintf(sku, sizeof sku, "sku-%u", (unsigned)(seed % SKUS));
        unsigned p = (unsigned)stx_partition_of(sku, (size_t)len, parts);
        int qty = seed % 8 == 0 ? 20 : -1 - (int)(seed >> 40) % 3;
        redisAppendCommand(t->node[node[p]], "XADD %s * sku %s qty %d", part[p], sku, qty);
        pending[node[p]]++;
    }
    for (int i = 0; i < t->nnodes; i++)
        for (long k = 0; k < pending[i]; k++) freeReplyObject(bench_get_reply(t->node[i]));
    for (unsigned i = 0; i < parts; i++) {
        redisReply *r = bench_command(t->node[node[i]], "XREVRANGE %s + - COUNT 1", part[i]);
        if (r->elements) snprintf(last[i], sizeof last[i], "%s", r->element[0]->element[0]->str);
        freeReplyObject(r);
    }
    double cpu0[MAX_NODES], cmds0 = 0;
    for (int i = 0; i < t->nnodes; i++) {
        cpu0[i] = bench_redis_cpu_s(t->node[i]);
        cmds0 += info_number(t->node[i], "stats", "total_commands_processed");
    }
    uint64_t t0 = bench_now_us();
    for (int k = 0; k < members; k++) kill(pid[k], SIGCONT);
    char meta[MAX_PARTS][512];
    for (unsigned i = 0; i < parts; i++)
        if (stx_key_name(meta[i], sizeof meta[i], part[i], "inv", "meta") < 0) bench_die("key name");
    unsigned done = 0;
    deadline = bench_now_us() + 300000000u;
    while (done < parts) {
        sleep_ms(10);
        done = 0;
        for (unsigned i = 0; i < parts; i++) {
            if (!last[i][0]) {
                done++;
                continue;
            }
            redisReply *r = bench_command(t->node[node[i]], "HGET %s offset", meta[i]);
            done += r->type == REDIS_REPLY_STRING && strcmp(r->str, last[i]) == 0;
            freeReplyObject(r);
        }
        if (bench_now_us() > deadline) bench_die("partitions: the members did not finish");
    }
    uint64_t t1 = bench_now_us();
    out->msgs_per_s = (double)n * 1e6 / (double)(t1 - t0);
    out->redis_us_per_msg_all = 0;
    out->cmds_per_msg = -cmds0;
    for (int i = 0; i < t->nnodes; i++) {
        out->cmds_per_msg += info_number(t->node[i], "stats", "total_commands_processed");
        out->redis_us_per_msg[i] = (bench_redis_cpu_s(t->node[i]) - cpu0[i]) * 1e6 / (double)n;
        out->redis_us_per_msg_all += out->redis_us_per_msg[i];
    }
    out->cmds_per_msg /= (double)n;
    /* Nothing pending anywhere: every entry was committed once. */
    for (unsigned i = 0; i < parts; i++) {
        redisReply *r = bench_command(t->node[node[i]], "XPENDING %s inv", part[i]);
        long long pend = r->element[0]->integer;
        freeReplyObject(r);
        if (pend != 0) bench_die("partitions: %s: %lld pending after the run", part[i], pend);
    }
    for (int k = 0; k < members; k++) kill(pid[k], SIGTERM);
    for (int k = 0; k < members; k++) {
        int st;
        waitpid(pid[k], &st, 0);
        if (!WIFEXITED(st) || WEXITSTATUS(st) != 0) bench_die("partitions: member %d failed", k);
    }
}

#define MAX_ROUNDS 9
static const unsigned part_counts[] = {1, 2, 4, 8};

static int cmp_double(const void *a, const void *b)
{
    double x = *(const double *)a, y = *(const double *)b;
    return (x > y) - (x < y);
}

static double median(const double *v, int n)
{
    double s[MAX_ROUNDS];
    memcpy(s, v, (size_t)n * sizeof *s);
    qsort(s, (size_t)n, sizeof *s, cmp_double);
    return n % 2 ? s[n / 2] : (s[n / 2 - 1] + s[n / 2]) / 2;
}

/* The medians over the rounds of one configuration. */
static void summarize(const target *t, unsigned parts, int m, const config_result *rounds, int nr,
                      config_result *out)
{
    double v[MAX_ROUNDS];
    *out = rounds[nr - 1];
    for (int r = 0; r < nr; r++) v[r] = rounds[r].msgs_per_s;
    out->msgs_per_s = median(v, nr);
    double lo = v[0], hi = v[0];
    for (int r = 1; r < nr; r++) {
        lo = v[r] < lo ? v[r] : lo;
        hi = v[r] > hi ? v[r] : hi;
    }
    for (int r = 0; r < nr; r++) v[r] = rounds[r].redis_us_per_msg_all;
    out->redis_us_per_msg_all = median(v, nr);
    for (int i = 0; i < t->nnodes; i++) {
        for (int r = 0; r < nr; r++) v[r] = rounds[r].redis_us_per_msg[i];
        out->redis_us_per_msg[i] = median(v, nr);
    }
    for (int r = 0; r < nr; r++) v[r] = rounds[r].cmds_per_msg;
    out->cmds_per_msg = median(v, nr);

    char key[96], nodes[256] = "";
    size_t off = 0;
    for (int i = 0; i < t->nnodes && t->nnodes > 1; i++)
        off += (size_t)snprintf(nodes + off, sizeof nodes - off, "%s%.2f", i ? " / " : " (nodes ",
                                out->redis_us_per_msg[i]);
    if (t->nnodes > 1) snprintf(nodes + off, sizeof nodes - off, ")");
    printf("# %-7s %u partition%s, %d member%s (split %-3s): %7.0f msgs/s (rounds %.0f-%.0f), "
           "Redis CPU %.2f us/entry%s, %.3f commands/entry\n",
           t->name, parts, parts == 1 ? " " : "s", m, m == 1 ? " " : "s", out->split,
           out->msgs_per_s, lo, hi, out->redis_us_per_msg_all, nodes, out->cmds_per_msg);
    snprintf(key, sizeof key, "part_%s_p%u_m%d_msgs_per_s", t->name, parts, m);
    bench_kv(key, "%.0f", out->msgs_per_s);
    snprintf(key, sizeof key, "part_%s_p%u_m%d_msgs_per_s_round_min", t->name, parts, m);
    bench_kv(key, "%.0f", lo);
    snprintf(key, sizeof key, "part_%s_p%u_m%d_msgs_per_s_round_max", t->name, parts, m);
    bench_kv(key, "%.0f", hi);
    snprintf(key, sizeof key, "part_%s_p%u_m%d_redis_us_per_msg", t->name, parts, m);
    bench_kv(key, "%.2f", out->redis_us_per_msg_all);
    for (int i = 0; i < t->nnodes && t->nnodes > 1; i++) {
        snprintf(key, sizeof key, "part_%s_p%u_m%d_redis_us_per_msg_node%d", t->name, parts, m, i);
        bench_kv(key, "%.2f", out->redis_us_per_msg[i]);
    }
    snprintf(key, sizeof key, "part_%s_p%u_m%d_commands_per_msg", t->name, parts, m);
    bench_kv(key, "%.3f", out->cmds_per_msg);
    snprintf(key, sizeof key, "part_%s_p%u_m%d_split", t->name, parts, m);
    bench_kv(key, "%s", out->split);
}

static void print_ratios(const target *t, config_result res[4][2])
{
    printf("# %s: throughput relative to 1 partition, 1 member (medians, same run):\n", t->name);
    for (int pi = 0; pi < 4; pi++)
        for (int m = 1; m <= 2; m++) {
            double ratio = res[pi][m - 1].msgs_per_s / res[0][0].msgs_per_s;
            printf("#   %u partition%s, %d member%s: %.2f\n", part_counts[pi],
                   part_counts[pi] == 1 ? " " : "s", m, m == 1 ? " " : "s", ratio);
            char key[96];
            snprintf(key, sizeof key, "part_%s_p%u_m%d_ratio", t->name, part_counts[pi], m);
            bench_kv(key, "%.2f", ratio);
        }
}

static void connect_target(target *t)
{
    size_t off = 0;
    for (int i = 0; i < t->nnodes; i++) {
        bench_env e = {"127.0.0.1", t->port[i], "", "/tmp"};
        t->node[i] = bench_connect(&e);
        off += (size_t)snprintf(t->url + off, sizeof t->url - off, "%s127.0.0.1:%d",
                                i ? "," : "redis://", t->port[i]);
    }
}

int mode_partitions(const bench_env *env, const bench_opts *o, const char *cluster_ports)
{
    long n = o->messages;
    int nr = o->rounds < MAX_ROUNDS ? (int)o->rounds : MAX_ROUNDS;
    target tg[2] = {{"single", 1, {env->port}, {0}, ""}, {"cluster", 0, {0}, {0}, ""}};
    int nt = cluster_ports ? 2 : 1;
    for (const char *p = cluster_ports; p && *p && tg[1].nnodes < MAX_NODES;) {
        tg[1].port[tg[1].nnodes++] = atoi(p);
        p = strchr(p, ',');
        if (!p) break;
        p++;
    }
    for (int k = 0; k < nt; k++) connect_target(&tg[k]);
    printf("# %ld entries per configuration, batch 128, members in processes of their own, "
           "%d interleaved rounds (medians below)\n", n, nr);
    static config_result rounds[2][4][2][MAX_ROUNDS];
    config_result med[2][4][2];
    for (int r = 0; r < nr; r++)
        for (int k = 0; k < nt; k++)
            for (int pi = 0; pi < 4; pi++)
                for (int m = 1; m <= 2; m++) run_config(&tg[k], part_counts[pi], m, n, &rounds[k][pi][m - 1][r]);
    for (int k = 0; k < nt; k++) {
        for (int pi = 0; pi < 4; pi++)
            for (int m = 1; m <= 2; m++)
                summarize(&tg[k], part_counts[pi], m, rounds[k][pi][m - 1], nr, &med[k][pi][m - 1]);
        print_ratios(&tg[k], med[k]);
    }
    if (nt == 2) {
        printf("# cluster / single, same configuration, same run (medians):\n");
        for (int pi = 0; pi < 4; pi++)
            for (int m = 1; m <= 2; m++) {
                double ratio = med[1][pi][m - 1].msgs_per_s / med[0][pi][m - 1].msgs_per_s;
                printf("#   %u partition%s, %d member%s: %.2f\n", part_counts[pi],
                       part_counts[pi] == 1 ? " " : "s", m, m == 1 ? " " : "s", ratio);
                char key[96];
                snprintf(key, sizeof key, "part_cluster_over_single_p%u_m%d", part_counts[pi], m);
                bench_kv(key, "%.2f", ratio);
            }
    }
    for (int k = 0; k < nt; k++)
        for (int i = 0; i < tg[k].nnodes; i++) redisFree(tg[k].node[i]);
    return 0;
}
