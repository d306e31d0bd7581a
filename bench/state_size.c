/* Mode "state": a large state (default 1,000,000 keys) against a tiny one.
 *
 *  - memory: VmRSS before and after the first stx_processor_start() of the
 *    process loads the large state from Redis, per key;
 *  - restart: stx_processor_start() loading the large state from Redis
 *    (HSCAN) against loading it from an LMDB snapshot, alternated, medians;
 *  - throughput at batch 128 with the large state and entries spread over
 *    all its keys, against a state of 10 keys (plus a control: the large
 *    state with entries on 10 keys), in interleaved rounds with processors
 *    that stay started, so no round pays for a load. */
#include <dirent.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include "bench.h"

#define RESTARTS 3   /* alternations of the two kinds of restart */

static const char *const big_stream = "bench:big";
static const char *const small_stream = "bench:small";
static const char *const group = "inv";
static const char *const big_alerts = "bench:big:alerts";
static const char *const small_alerts = "bench:small:alerts";

/* Time one stx_processor_start() of a new processor, then free it. */
static double timed_start(const bench_env *env, const lib_run *r, stx_stats *st,
                          long long *rss_before, long long *rss_after)
{
    inv_ctx ctx = {r->alerts, NULL, NULL};
    stx_processor *p;
    uint64_t t0;
    double s;
    int rc;

    if (rss_before != NULL)
        *rss_before = bench_rss_bytes();
    p = lib_new(env, r, &ctx);
    t0 = bench_now_us();
    rc = stx_processor_start(p);
    s = (double)(bench_now_us() - t0) / 1e6;
    if (rc != STX_OK)
        bench_die("stx_processor_start: %s: %s", stx_strerror(rc), stx_processor_errmsg(p));
    if (rss_after != NULL)
        *rss_after = bench_rss_bytes();
    stx_processor_stats(p, st);
    stx_processor_free(p);
    return s;
}

/* Bytes of the snapshot's data files: each (stream, group) keeps its
 * data.mdb in a subdirectory of the snapshot directory. */
static long long snapshot_data_bytes(const char *dir)
{
    DIR *d = opendir(dir);
    if (d == NULL)
        return -1;
    long long total = 0;
    struct dirent *e;
    while ((e = readdir(d)) != NULL) {
        char path[1600];
        struct stat st;
        if (e->d_name[0] == '.')
            continue;
        int n = snprintf(path, sizeof path, "%s/%s/data.mdb", dir, e->d_name);
        if (n > 0 && (size_t)n < sizeof path && stat(path, &st) == 0)
            total += (long long)st.st_size;
    }
    closedir(d);
    return total;
}

static int cmp_double(const void *a, const void *b)
{
    double x = *(const double *)a, y = *(const double *)b;

    return (x > y) - (x < y);
}

static double median3(const double *v)
{
    double s[RESTARTS];

    memcpy(s, v, sizeof s);
    qsort(s, RESTARTS, sizeof *s, cmp_double);
    return s[RESTARTS / 2];
}

static void restarts(const bench_env *env, uint32_t nkeys)
{
    lib_run r = {big_stream, group, big_alerts, 128, NULL, NULL, NULL};
    char snapdir[1024];
    long long rss0, rss1;
    double t_cold, t_build, t_redis[RESTARTS], t_lmdb[RESTARTS];
    int snapshot_used = 1;
    stx_stats st;
    int n;

    /* The first start of this process: its heap growth is the state's. */
    t_cold = timed_start(env, &r, &st, &rss0, &rss1);
    if (st.redis_loads != 1 || st.state_keys != nkeys)
        bench_die("start loaded %llu keys (redis loads %llu), expected %u",
                  (unsigned long long)st.state_keys, (unsigned long long)st.redis_loads, nkeys);
    bench_note("memory: VmRSS %.1f MB before the first start, %.1f MB after it loaded %u keys",
               rss0 / 1e6, rss1 / 1e6, nkeys);
    bench_kv("rss_before_bytes", "%lld", rss0);
    bench_kv("rss_after_bytes", "%lld", rss1);
    bench_kv("rss_bytes_per_key", "%.1f", (double)(rss1 - rss0) / nkeys);

    n = snprintf(snapdir, sizeof snapdir, "%s/snapshot", env->tmpdir);
    if (n < 0 || (size_t)n >= sizeof snapdir)
        bench_die("--tmpdir is too long");
    r.snapshot_dir = snapdir;
    t_build = timed_start(env, &r, &st, NULL, NULL);
    if (st.redis_loads != 1)
        bench_die("the first start with a snapshot did not load from Redis");

    /* Later starts find the memory in the heap already, as a restarted
     * process would not; both kinds are measured alike. */
    for (int i = 0; i < RESTARTS; i++) {
        r.snapshot_dir = NULL;
        t_redis[i] = timed_start(env, &r, &st, NULL, NULL);
        r.snapshot_dir = snapdir;
        t_lmdb[i] = timed_start(env, &r, &st, NULL, NULL);
        if (st.snapshot_loads != 1 || st.state_keys != nkeys)
            snapshot_used = 0;
    }
    bench_note("restart from Redis (HSCAN): %.3f s (runs %.3f %.3f %.3f; the first start of the "
               "process took %.3f s)", median3(t_redis), t_redis[0], t_redis[1], t_redis[2],
               t_cold);
    bench_note("restart from the LMDB snapshot: %.3f s (runs %.3f %.3f %.3f); building it "
               "(load from Redis, write LMDB) took %.3f s; data.mdb %.1f MB",
               median3(t_lmdb), t_lmdb[0], t_lmdb[1], t_lmdb[2], t_build,
               snapshot_data_bytes(snapdir) / 1e6);
    if (!snapshot_used)
        bench_note("  WARNING: a start with snapshot_dir did not load the snapshot: "
                   "restart_lmdb_s is not a snapshot load");
    bench_kv("restart_lmdb_used_snapshot", "%s", snapshot_used ? "yes" : "NO");
    bench_kv("restart_redis_first_s", "%.3f", t_cold);
    bench_kv("restart_redis_s", "%.3f", median3(t_redis));
    bench_kv("restart_redis_runs_s", "%.3f,%.3f,%.3f", t_redis[0], t_redis[1], t_redis[2]);
    bench_kv("snapshot_build_s", "%.3f", t_build);
    bench_kv("restart_lmdb_s", "%.3f", median3(t_lmdb));
    bench_kv("restart_lmdb_runs_s", "%.3f,%.3f,%.3f", t_lmdb[0], t_lmdb[1], t_lmdb[2]);
    bench_kv("lmdb_restart_speedup", "%.1f", median3(t_redis) / median3(t_lmdb));
    bench_kv("snapshot_bytes", "%lld", snapshot_data_bytes(snapdir));
}

/* One contender of the throughput rounds: a started processor, its stream's
 * entry generator and the model of its state. */
typedef struct contender {
    stx_processor *p;
    wl_gen gen;
    wl_model *model;
    tally t;
    const char *stream;
} contender;

static void round_of(contender *k, redisContext *c, long n)
{
    run_result res;

    wl_preload_stream(c, k->stream, &k->gen, n, k->model);
    lib_drain(k->p, c, n, &res);
    tally_add(&k->t, &res, c);
}

static void verify(redisContext *c, const char *state_key, const char *alerts,
                   const wl_model *m, int full, tally *t, const char *what)
{
    char why[256] = "";

    if (wl_verify(c, state_key, alerts, m, full, why, sizeof why) != 0) {
        t->mismatches++;
        bench_note("  %s: result differs from the model: %s", what, why);
    }
}

int mode_state(const bench_env *env, const bench_opts *o)
{
    redisContext *c = bench_connect(env);
    uint32_t nkeys = (uint32_t)o->state_keys;
    long per_round = (o->messages + o->rounds - 1) / o->rounds;
    lib_run big_run = {big_stream, group, big_alerts, 128, NULL, NULL, NULL};
    lib_run small_run = {small_stream, group, small_alerts, 128, NULL, NULL, NULL};
    inv_ctx big_ctx = {big_alerts, NULL, NULL}, small_ctx = {small_alerts, NULL, NULL};
    char big_key[256], small_key[256];
    static contender big, small, hot;
    wl_model big_model, small_model;
    double med, lo, hi;
    uint64_t t0;

    bench_key(big_key, sizeof big_key, big_stream, group, "state");
    bench_key(small_key, sizeof small_key, small_stream, group, "state");
    bench_kv("state_big_keys", "%u", nkeys);

    bench_flushall(c);
    wl_model_init(&big_model, nkeys);
    t0 = bench_now_us();
    wl_preload_state(c, big_key, nkeys, &big_model);
    bench_note("preloaded %u state keys (pipelined HSET, 1000 fields each) in %.2f s", nkeys,
               (double)(bench_now_us() - t0) / 1e6);

    restarts(env, nkeys);

    /* ---- throughput rounds ------------------------------------------- */
    wl_model_init(&small_model, 10);
    wl_preload_state(c, small_key, 10, &small_model);
    big.p = lib_open(env, &big_run, &big_ctx);
    big.model = &big_model;
    big.stream = big_stream;
    wl_gen_init(&big.gen, nkeys, 0x1a2b3c4dull);
    hot.p = big.p; /* the same processor and state, entries on 10 keys */
    hot.model = &big_model;
    hot.stream = big_stream;
    wl_gen_init(&hot.gen, 10, 0x7e7e7e7eull);
    small.p = lib_open(env, &small_run, &small_ctx);
    small.model = &small_model;
    small.stream = small_stream;
    wl_gen_init(&small.gen, 10, 0x5a5a5a5aull);

    bench_note("throughput at batch 128: %ld rounds of %ld messages; big state (%u keys, "
               "entries on all of them), 10-key state, and big state with entries on 10 keys",
               o->rounds, per_round, nkeys);
    for (int i = 0; i < o->rounds; i++) {
        if (i % 2 == 0) {
            round_of(&big, c, per_round);
            round_of(&small, c, per_round);
            round_of(&hot, c, per_round);
        } else {
            round_of(&hot, c, per_round);
            round_of(&small, c, per_round);
            round_of(&big, c, per_round);
        }
    }
    verify(c, big_key, big_alerts, &big_model, 0, &big.t, "big state");
    hot.t.mismatches = big.t.mismatches;
    verify(c, small_key, small_alerts, &small_model, 1, &small.t, "10-key state");
    stx_processor_free(big.p);
    stx_processor_free(small.p);

    tally_print(&big.t, "state_big", "", "xreadgroup xinfo|groups xautoclaim");
    tally_print(&small.t, "state_10", "", "xreadgroup xinfo|groups xautoclaim");
    tally_print(&hot.t, "state_big_hot10", "", "xreadgroup xinfo|groups xautoclaim");
    ratio_spread(big.t.mps, small.t.mps, big.t.rounds, &med, &lo, &hi);
    bench_note("  big / 10 keys: %.3f (rounds: median %.3f, %.3f to %.3f)",
               tally_mps(&big.t) / tally_mps(&small.t), med, lo, hi);
    bench_kv("state_size_ratio", "%.3f", tally_mps(&big.t) / tally_mps(&small.t));
    bench_kv("state_size_ratio_round_median", "%.3f", med);

    wl_model_free(&big_model);
    wl_model_free(&small_model);
    bench_flushall(c);
    redisFree(c);
    return 0;
}
