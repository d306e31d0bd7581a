/* The outbox and its relay: publishes to another slot (Redis Cluster) or
 * through the outbox on any Redis (publish_mode=outbox), exactly once
 * through member and relay kills, a paused relay, a replaying zombie and a
 * target that refuses. */
#include <criterion/criterion.h>
#include <inttypes.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/prctl.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "harness.h"
#include "keys.h"
#include "scripts.h"
#include "streamtx.h"

#define NPART 8
#define NTGT 6

TestSuite(outbox, .timeout = 240);
TestSuite(outbox_cluster, .timeout = 300);

static void sleep_ms(long ms)
{
    struct timespec ts = {ms / 1000, (ms % 1000) * 1000000L};
    nanosleep(&ts, NULL);
}

static void quiet(stx_log_level level, const char *line, void *ud)
{
    (void)ud;
    if (getenv("STX_TEST_VERBOSE")) fprintf(stderr, "[%d] %d %s\n", (int)getpid(), level, line);
}

/* ---- where a key lives: one Redis, or the cluster node of its slot ------- */

struct env {
    const char *url;
    test_redis *r;              /* single Redis */
    test_cluster *tc;           /* or a cluster */
    redisContext *ctx[TEST_CLUSTER_NODES];
    char stream[64];
    int mode_outbox;            /* publish_mode=outbox */
};

static redisContext *at(struct env *e, const char *key)
{
    int i = e->tc ? test_cluster_owner(e->tc, stx_key_slot(key, strlen(key))) : 0;
    if (!e->ctx[i]) e->ctx[i] = e->tc ? test_cluster_connect(e->tc, i) : test_redis_connect(e->r);
    return e->ctx[i];
}

static void env_close(struct env *e)
{
    for (int i = 0; i < TEST_CLUSTER_NODES; i++)
        if (e->ctx[i]) redisFree(e->ctx[i]);
}

/* Target k: k 0 shares partition 0's slot (a direct publish from there,
 * through the outbox from the others); the rest hash anywhere. */
static void target_name(const char *stream, int k, char *out, size_t cap)
{
    if (k == 0) snprintf(out, cap, "{%s#0}:fw", stream);
    else snprintf(out, cap, "%s-tgt-%d", stream, k);
}

static int forward(const stx_msg *msg, stx_txn *txn, void *ud)
{
    const char *stream = ud;
    size_t dl, nl;
    const char *dest = stx_msg_get(msg, "dest", &dl), *n = stx_msg_get(msg, "n", &nl);
    if (!dest || !n || dl != 1) return STX_HANDLER_FAIL;
    char tgt[128];
    target_name(stream, dest[0] - '0', tgt, sizeof tgt);
    int rc = stx_txn_incr(txn, dest, dl, 1, NULL);
    if (rc != STX_OK) return rc;
    return stx_txn_publishv(txn, tgt, "n", n, "src", stx_msg_stream(msg), NULL);
}

static stx_config *member_config(const struct env *e, const char *name)
{
    stx_config *c = stx_config_new();
    const char *kv[] = {"url", e->url, "stream", e->stream, "group", "fw", "consumer", name,
                        "lease_ttl_ms", "1000", "block_ms", "100", "batch_size", "32",
                        "command_timeout_ms", "600", "stats_interval_ms", "0",
                        "log_level", "info", "relay_batch", "64",
                        "publish_mode", e->mode_outbox ? "outbox" : "direct", NULL};
    for (int i = 0; kv[i]; i += 2)
        if (stx_config_set(c, kv[i], kv[i + 1], NULL, 0) != STX_OK) _exit(2);
    stx_config_set_handler(c, forward, (void *)e->stream);
    stx_config_set_log(c, quiet, NULL);
    return c;
}

static stx_member *volatile child_member;
static volatile sig_atomic_t child_stop;

static void on_term(int sig)
{
    (void)sig;
    child_stop = 1;
    if (child_member) stx_member_stop(child_member);
}

static void child_signals(void)
{
    prctl(PR_SET_PDEATHSIG, SIGKILL);
    struct sigaction sa;
    memset(&sa, 0, sizeof sa);
    sa.sa_handler = on_term;
    sigaction(SIGTERM, &sa, NULL);
}

static pid_t spawn_member(const struct env *e, const char *name)
{
    fflush(NULL);
    pid_t pid = fork();
    cr_assert_neq(pid, -1);
    if (pid) return pid;
    child_signals();
    stx_config *c = member_config(e, name);
    stx_member *m;
    if (stx_member_new(&m, c) != STX_OK) _exit(2);
    stx_config_free(c);
    child_member = m;
    int rc = stx_member_run(m);
    if (rc != STX_OK) fprintf(stderr, "member %s: %s: %s\n", name, stx_strerror(rc), stx_member_errmsg(m));
    child_member = NULL;
    stx_member_free(m);
    _exit(rc == STX_OK ? 0 : 1);
}

/* An operator's relay (stx relay), round and round over the partitions,
 * at the same time as the members' own. */
static pid_t spawn_relay(const struct env *e)
{
    fflush(NULL);
    pid_t pid = fork();
    cr_assert_neq(pid, -1);
    if (pid) return pid;
    child_signals();
    stx_config *conf = stx_config_new();
    stx_config_set(conf, "url", e->url, NULL, 0);
    stx_client *c = NULL;
    if (stx_client_new(&c, conf) != STX_OK) _exit(2);
    stx_config_free(conf);
    while (!child_stop) {
        for (unsigned i = 0; i < NPART; i++) {
            char part[80];
            stx_partition_name(part, sizeof part, e->stream, i);
            stx_outbox_info info;
            stx_outbox_relay(c, part, "fw", 50, &info);
        }
        sleep_ms(20);
    }
    stx_client_free(c);
    _exit(0);
}

static int exit_code(pid_t pid)
{
    int st;
    cr_assert_eq(waitpid(pid, &st, 0), pid);
    return WIFEXITED(st) ? WEXITSTATUS(st) : 128 + WTERMSIG(st);
}

static long expected[NTGT];

static void produce(struct env *e, stx_client *cl, long from, long n)
{
    for (long i = from; i < from + n; i++) {
        char ns[24], key[32], dest[2] = {(char)('0' + (i * 7 + i / 5) % NTGT), 0};
        snprintf(ns, sizeof ns, "%ld", i);
        snprintf(key, sizeof key, "k%ld", i);
        stx_field f[2] = {{"n", 1, ns, strlen(ns)}, {"dest", 4, dest, 1}};
        stx_produce_result res;
        unsigned part;
        cr_assert_eq(stx_produce_keyed(cl, e->stream, key, strlen(key), f, 2, NULL, &res, &part),
                     STX_OK, "%s", stx_client_errmsg(cl));
        expected[dest[0] - '0']++;
    }
}

static long outbox_len(struct env *e, unsigned i)
{
    char part[80], ob[256];
    stx_partition_name(part, sizeof part, e->stream, i);
    stx_key_name(ob, sizeof ob, part, "fw", "outbox");
    return test_cmd_int(at(e, ob), "XLEN %s", ob);
}

static long targets_len(struct env *e)
{
    long total = 0;
    for (int k = 0; k < NTGT; k++) {
        char t[128];
        target_name(e->stream, k, t, sizeof t);
        total += test_cmd_int(at(e, t), "XLEN %s", t);
    }
    return total;
}

/* Until every entry reached its target and every outbox is empty. */
static void wait_done(struct env *e, long n, long timeout_ms)
{
    int64_t deadline = test_now_ms() + timeout_ms;
    for (;;) {
        long out = 0;
        for (unsigned i = 0; i < NPART; i++) out += outbox_len(e, i);
        long in = targets_len(e);
        if (out == 0 && in >= n) return;
        cr_assert(test_now_ms() < deadline, "not done: %ld of %ld in the targets, %ld in outboxes",
                  in, n, out);
        sleep_ms(100);
    }
}

/* Every source entry exactly once across the targets, the per-target
 * counts exact (in the targets and in the handlers' state), the outboxes
 * empty, and each (source partition, target) in commit order. */
static void check_exact(struct env *e, long n)
{
    unsigned char *seen = calloc((size_t)n, 1);
    cr_assert(seen);
    for (int k = 0; k < NTGT; k++) {
        char t[128];
        target_name(e->stream, k, t, sizeof t);
        redisReply *r = test_cmd(at(e, t), "XRANGE %s - +", t);
        cr_assert_eq((long)r->elements, expected[k], "target %d: %zu entries, expected %ld", k,
                     r->elements, expected[k]);
        long last[NPART];
        for (unsigned i = 0; i < NPART; i++) last[i] = -1;
        for (size_t j = 0; j < r->elements; j++) {
            const redisReply *f = r->element[j]->element[1];
            long v = -1;
            const char *src = NULL;
            for (size_t x = 0; x + 1 < f->elements; x += 2) {
                if (strcmp(f->element[x]->str, "n") == 0) v = atol(f->element[x + 1]->str);
                if (strcmp(f->element[x]->str, "src") == 0) src = f->element[x + 1]->str;
            }
            cr_assert(v >= 0 && v < n && src, "target %d: bad entry", k);
            cr_assert_eq(seen[v], 0, "source entry n=%ld reached the targets twice", v);
            seen[v] = 1;
            /* Per source partition the producer's order is commit order. */
            const char *hash = strrchr(src, '#');
            cr_assert(hash);
            unsigned pi = (unsigned)atoi(hash + 1);
            cr_assert(pi < NPART);
            cr_assert_gt(v, last[pi], "target %d: n=%ld after n=%ld from partition %u", k, v,
                         last[pi], pi);
            last[pi] = v;
        }
        freeReplyObject(r);
        long counted = 0;
        for (unsigned i = 0; i < NPART; i++) {
            char part[80], state[256];
            stx_partition_name(part, sizeof part, e->stream, i);
            stx_key_name(state, sizeof state, part, "fw", "state");
            redisReply *s = test_cmd(at(e, state), "HGET %s %d", state, k);
            int64_t v = 0;
            if (s->type == REDIS_REPLY_STRING)
                cr_assert_eq(stx_mp_read_i64(s->str, s->len, &v), STX_OK);
            freeReplyObject(s);
            counted += v;
        }
        cr_assert_eq(counted, expected[k], "target %d: state counts %ld, expected %ld", k, counted,
                     expected[k]);
    }
    for (long v = 0; v < n; v++) cr_assert_eq(seen[v], 1, "source entry n=%ld never arrived", v);
    for (unsigned i = 0; i < NPART; i++) cr_assert_eq(outbox_len(e, i), 0, "outbox %u", i);
    free(seen);
}

static uint64_t rnd(uint64_t *s)
{
    *s ^= *s << 13;
    *s ^= *s >> 7;
    *s ^= *s << 17;
    return *s;
}

/* Three members and an operator's relay; kills SIGKILL one of them at
 * random and start it again; then a member is SIGSTOPped past its lease
 * (its relay is a zombie when it resumes). */
static void chaos(struct env *e, int kills)
{
    memset(expected, 0, sizeof expected);
    stx_config *conf = stx_config_new();
    stx_config_set(conf, "url", e->url, NULL, 0);
    stx_client *cl;
    cr_assert_eq(stx_client_new(&cl, conf), STX_OK);
    stx_config_free(conf);
    cr_assert_eq(stx_stream_create(cl, e->stream, NPART), STX_OK, "%s", stx_client_errmsg(cl));
    long n = 0, chunk = 60;
    produce(e, cl, n, 500);
    n += 500;
    const char *names[4] = {"m1", "m2", "m3", "relay"};
    pid_t pids[4];
    for (int k = 0; k < 3; k++) pids[k] = spawn_member(e, names[k]);
    pids[3] = spawn_relay(e);
    uint64_t seed = 0x9e3779b97f4a7c15ull ^ ((uint64_t)getpid() << 16);
    for (int i = 0; i < kills; i++) {
        produce(e, cl, n, chunk);
        n += chunk;
        sleep_ms(150 + (long)(rnd(&seed) % 450));
        int v = (int)(rnd(&seed) % 4);
        kill(pids[v], SIGKILL);
        cr_assert_eq(exit_code(pids[v]), 128 + SIGKILL);
        pids[v] = v < 3 ? spawn_member(e, names[v]) : spawn_relay(e);
    }
    /* A member paused past its lease: the others take its partitions and
     * relay their outboxes; resumed, it is fenced, and whatever its relay
     * had read and sends now is below the marks. */
    sleep_ms(500);
    kill(pids[0], SIGSTOP);
    produce(e, cl, n, 300);
    n += 300;
    sleep_ms(2500);
    kill(pids[0], SIGCONT);
    produce(e, cl, n, 200);
    n += 200;
    wait_done(e, n, 90000);
    for (int k = 0; k < 4; k++) kill(pids[k], SIGTERM);
    for (int k = 0; k < 4; k++) cr_assert_eq(exit_code(pids[k]), 0, "%s", names[k]);
    cr_log_info("%ld entries, %d kills", n, kills);
    check_exact(e, n);
    stx_client_free(cl);
}

static int kills(void)
{
    const char *s = getenv("STX_OUTBOX_KILLS");
    return s && atoi(s) > 0 ? atoi(s) : 22;
}

Test(outbox_cluster, kills_and_pause)
{
    test_cluster tc;
    test_cluster_start(&tc, 0);
    struct env e = {.url = tc.url, .tc = &tc};
    test_unique("ob", e.stream, sizeof e.stream);
    chaos(&e, kills());
    /* Most targets are in other slots than most partitions: the outbox
     * carried them (the relayed hashes exist), and target 0 took partition
     * 0's publishes directly. */
    char t[128];
    target_name(e.stream, 1, t, sizeof t);
    char *relayed = stx_key_alloc_relayed(t);
    cr_assert_eq(test_cmd_int(at(&e, relayed), "HLEN %s", relayed), NPART);
    free(relayed);
    target_name(e.stream, 0, t, sizeof t);
    relayed = stx_key_alloc_relayed(t);
    cr_assert_eq(test_cmd_int(at(&e, relayed), "HLEN %s", relayed), NPART - 1);
    free(relayed);
    env_close(&e);
    test_cluster_stop(&tc);
}

Test(outbox, single_redis_kills_and_pause)
{
    test_redis r;
    test_redis_start(&r, 0, NULL);
    struct env e = {.url = r.url, .r = &r, .mode_outbox = 1};
    test_unique("ob", e.stream, sizeof e.stream);
    chaos(&e, kills());
    env_close(&e);
    test_redis_stop(&r);
}

/* ---- one processor: a refusing target, the bound, a zombie replay ------- */

/* stx --url URL ARGS: its stdout (and 2>&1 when err), exit status 0 asserted. */
static char *run_stx(const char *url, const char *args)
{
    char cmd[1024];
    snprintf(cmd, sizeof cmd, "%s --url %s %s 2>/dev/null", STX_CLI_PATH, url, args);
    FILE *f = popen(cmd, "r");
    cr_assert(f);
    char *out = calloc(1, 16384);
    size_t n = fread(out, 1, 16383, f);
    out[n] = '\0';
    cr_assert_eq(pclose(f), 0, "%s", cmd);
    return out;
}

static int to_two(const stx_msg *msg, stx_txn *txn, void *ud)
{
    const char *base = ud;
    size_t nl;
    const char *n = stx_msg_get(msg, "n", &nl);
    if (!n) return STX_HANDLER_FAIL;
    char good[96], bad[96];
    snprintf(good, sizeof good, "%s:good", base);
    snprintf(bad, sizeof bad, "%s:bad", base);
    int rc = stx_txn_publishv(txn, good, "n", n, NULL);
    if (rc == STX_OK && atoi(n) % 2 == 0) rc = stx_txn_publishv(txn, bad, "n", n, NULL);
    return rc;
}

static void poll_for(stx_processor *p, long ms)
{
    int64_t end = test_now_ms() + ms;
    while (test_now_ms() < end) cr_assert_geq(stx_processor_poll(p), 0, "%s", stx_processor_errmsg(p));
}

Test(outbox, refusing_target_bound_and_zombie)
{
    test_redis r;
    test_redis_start(&r, 0, NULL);
    redisContext *c = test_redis_connect(&r);
    char s[64], good[96], bad[96], ob[256];
    test_unique("zs", s, sizeof s);
    snprintf(good, sizeof good, "%s:good", s);
    snprintf(bad, sizeof bad, "%s:bad", s);
    stx_key_name(ob, sizeof ob, s, "g", "outbox");
    freeReplyObject(test_cmd(c, "SET %s not-a-stream", bad));
    for (int i = 0; i < 40; i++) freeReplyObject(test_cmd(c, "XADD %s * n %d", s, i));

    stx_config *conf = stx_config_new();
    const char *kv[] = {"url", r.url, "stream", s, "group", "g", "publish_mode", "outbox",
                        "outbox_max", "12", "block_ms", "20", "batch_size", "4", "log_level", "error",
                        NULL};
    for (int i = 0; kv[i]; i += 2) cr_assert_eq(stx_config_set(conf, kv[i], kv[i + 1], NULL, 0), STX_OK);
    stx_config_set_handler(conf, to_two, s);
    stx_config_set_log(conf, quiet, NULL);
    stx_processor *p;
    cr_assert_eq(stx_processor_new(&p, conf), STX_OK);
    stx_config_free(conf);

    /* The wrong-type target holds back its own entries only; at the bound
     * the processor stops reading. */
    poll_for(p, 1500);
    stx_stats st;
    stx_processor_stats(p, &st);
    cr_assert_gt(st.relay_refusals, 0);
    cr_assert_geq(st.outbox_len, 12);
    cr_assert_lt(st.committed, 40, "reading went on past outbox_max");
    cr_assert_eq(test_cmd_int(c, "XLEN %s", good), (long long)st.committed);
    redisReply *kept = test_cmd(c, "XRANGE %s - +", ob);
    cr_assert_eq((long long)kept->elements, test_cmd_int(c, "XLEN %s", ob));
    for (size_t i = 0; i < kept->elements; i++) {
        const redisReply *f = kept->element[i]->element[1];
        cr_assert_str_eq(f->element[0]->str, "stx-target");
        cr_assert_str_eq(f->element[1]->str, bad);
        cr_assert_str_eq(f->element[2]->str, "stx-source");
        cr_assert_str_eq(f->element[3]->str, s);
        cr_assert_str_eq(f->element[4]->str, "stx-source-id");
    }

    /* The operator's view: the held entries and the refusal. */
    char args[256], want[512];
    snprintf(args, sizeof args, "--json relay %s g", s);
    char *out = run_stx(r.url, args);
    snprintf(want, sizeof want, "{\"streams\":[{\"stream\":\"%s\",\"relayed\":0,\"refusals\":1,"
             "\"length\":%zu,\"oldest_age_ms\":", s, kept->elements);
    cr_assert(strncmp(out, want, strlen(want)) == 0, "%s", out);
    free(out);
    snprintf(args, sizeof args, "info %s", s);
    out = run_stx(r.url, args);
    snprintf(want, sizeof want, "STREAM%*sGROUP  OUTBOX  OLDEST\n%s  g      %zu", (int)strlen(s) - 4,
             "", s, kept->elements);
    cr_assert(strstr(out, want), "%s", out);
    free(out);

    /* The target takes writes again: everything arrives, in order. */
    freeReplyObject(test_cmd(c, "DEL %s", bad));
    int64_t deadline = test_now_ms() + 20000;
    do {
        poll_for(p, 200);
        stx_processor_stats(p, &st);
    } while ((st.committed < 40 || st.outbox_len) && test_now_ms() < deadline);
    cr_assert_eq(st.committed, 40);
    cr_assert_eq(st.outbox_len, 0);
    cr_assert_eq(test_cmd_int(c, "XLEN %s", ob), 0);
    cr_assert_eq(test_cmd_int(c, "XLEN %s", good), 40);
    cr_assert_eq(test_cmd_int(c, "XLEN %s", bad), 20);
    redisReply *b = test_cmd(c, "XRANGE %s - +", bad);
    for (size_t i = 0; i < b->elements; i++)
        cr_assert_eq(atoi(b->element[i]->element[1]->element[1]->str), (int)(2 * i));
    freeReplyObject(b);

    /* A zombie relay sends what it read before the target was fixed: the
     * same outbox entries, ids and fields.  The mark refuses them all. */
    char sha[41];
    test_script_sha(c, STX_SCRIPT_RELAY, sha);
    char *relayed = stx_key_alloc_relayed(bad);
    char nbuf[24];
    snprintf(nbuf, sizeof nbuf, "%zu", kept->elements);
    /* Per entry: its id, 2 pairs (n and causation_id: what follows the
     * three outbox pairs), the pairs. */
    size_t argc = 7 + 6 * kept->elements, a = 7;
    const char **argv = calloc(argc, sizeof *argv);
    size_t *lens = calloc(argc, sizeof *lens);
    argv[0] = "EVALSHA", argv[1] = sha, argv[2] = "2", argv[3] = bad, argv[4] = relayed;
    argv[5] = ob, argv[6] = nbuf;
    for (size_t i = 0; i < kept->elements; i++) {
        const redisReply *f = kept->element[i]->element[1];
        cr_assert_eq(f->elements, 10, "outbox entry: 3 outbox pairs, n and causation_id");
        argv[a++] = kept->element[i]->element[0]->str;
        argv[a++] = "2";
        for (size_t x = 6; x < 10; x++) argv[a++] = f->element[x]->str;
    }
    cr_assert_eq(a, argc);
    for (size_t i = 0; i < argc; i++) lens[i] = strlen(argv[i]);
    redisReply *z = redisCommandArgv(c, (int)argc, argv, lens);
    cr_assert(z && z->type == REDIS_REPLY_ARRAY && z->elements == 4, "%s", z && z->str ? z->str : "?");
    cr_assert_str_eq(z->element[0]->str, "OK");
    cr_assert_eq(z->element[1]->integer, 0, "the zombie appended %lld", z->element[1]->integer);
    cr_assert_eq(z->element[2]->integer, (long long)kept->elements);
    freeReplyObject(z);
    cr_assert_eq(test_cmd_int(c, "XLEN %s", bad), 20);
    free(argv);
    free(lens);
    free(relayed);
    freeReplyObject(kept);

    snprintf(args, sizeof args, "--json relay %s g", s);
    out = run_stx(r.url, args);
    snprintf(want, sizeof want, "{\"streams\":[{\"stream\":\"%s\",\"relayed\":0,\"refusals\":0,"
             "\"length\":0,\"oldest_age_ms\":0}]}\n", s);
    cr_assert_str_eq(out, want);
    free(out);

    /* The operator's relay finds nothing left. */
    stx_client *cl = test_client(&r);
    stx_outbox_info info;
    cr_assert_eq(stx_outbox_relay(cl, s, "g", 1000, &info), STX_OK);
    cr_assert_eq(info.relayed, 0);
    cr_assert_eq(info.length, 0);
    stx_client_free(cl);
    stx_processor_free(p);
    redisFree(c);
    test_redis_stop(&r);
}

/* ---- on the cluster: a target whose master is out of memory ------------- */

static int to_ab(const stx_msg *msg, stx_txn *txn, void *ud)
{
    const char *const *t = ud;
    size_t nl;
    const char *n = stx_msg_get(msg, "n", &nl);
    if (!n) return STX_HANDLER_FAIL;
    int rc = stx_txn_publishv(txn, t[0], "n", n, NULL);
    return rc == STX_OK ? stx_txn_publishv(txn, t[1], "n", n, NULL) : rc;
}

Test(outbox_cluster, target_out_of_memory)
{
    test_cluster tc;
    test_cluster_start(&tc, 0);
    struct env e = {.url = tc.url, .tc = &tc};
    char s[64], a[96], b[96];
    test_unique("{oom}", s, sizeof s);
    int src = test_cluster_owner(&tc, stx_key_slot(s, strlen(s)));
    /* Target a on another master than the source, target b on a third. */
    int na = -1, nb = -1;
    for (int i = 0; na < 0 || nb < 0; i++) {
        char name[96];
        snprintf(name, sizeof name, "%s-t%d", s + 5, i);
        int o = test_cluster_owner(&tc, stx_key_slot(name, strlen(name)));
        if (na < 0 && o != src) {
            na = o;
            snprintf(a, sizeof a, "%s", name);
        } else if (nb < 0 && na >= 0 && o != src && o != na) {
            nb = o;
            snprintf(b, sizeof b, "%s", name);
        }
        cr_assert_lt(i, 10000);
    }
    for (int i = 0; i < 30; i++) freeReplyObject(test_cmd(at(&e, s), "XADD %s * n %d", s, i));
    redisContext *oom = test_cluster_connect(&tc, na);
    freeReplyObject(test_cmd(oom, "CONFIG SET maxmemory 1"));

    const char *targets[2] = {a, b};
    stx_config *conf = stx_config_new();
    const char *kv[] = {"url", tc.url, "stream", s, "group", "g", "block_ms", "20",
                        "batch_size", "8", "log_level", "error", NULL};
    for (int i = 0; kv[i]; i += 2) cr_assert_eq(stx_config_set(conf, kv[i], kv[i + 1], NULL, 0), STX_OK);
    stx_config_set_handler(conf, to_ab, (void *)targets);
    stx_config_set_log(conf, quiet, NULL);
    stx_processor *p;
    cr_assert_eq(stx_processor_new(&p, conf), STX_OK);
    stx_config_free(conf);
    poll_for(p, 1500);
    stx_stats st;
    stx_processor_stats(p, &st);
    /* Processing and the other target go on; a's entries wait. */
    cr_assert_eq(st.committed, 30, "%s", stx_processor_errmsg(p));
    cr_assert_gt(st.relay_refusals, 0);
    cr_assert_eq(st.outbox_len, 30);
    cr_assert_eq(test_cmd_int(at(&e, b), "XLEN %s", b), 30);
    cr_assert_eq(test_cmd_int(oom, "EXISTS %s", a), 0);

    freeReplyObject(test_cmd(oom, "CONFIG SET maxmemory 0"));
    int64_t deadline = test_now_ms() + 20000;
    do {
        poll_for(p, 200);
        stx_processor_stats(p, &st);
    } while (st.outbox_len && test_now_ms() < deadline);
    cr_assert_eq(st.outbox_len, 0);
    redisReply *r = test_cmd(oom, "XRANGE %s - +", a);
    cr_assert_eq(r->elements, 30);
    for (size_t i = 0; i < r->elements; i++)
        cr_assert_eq(atoi(r->element[i]->element[1]->element[1]->str), (int)i, "commit order");
    freeReplyObject(r);
    stx_processor_free(p);
    redisFree(oom);
    env_close(&e);
    test_cluster_stop(&tc);
}
