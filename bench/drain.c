/* Mode "drain": how fast a large pending list is worked off, against fresh
 * entries in the same run.  Three runs of n inventory entries each, on an
 * emptied Redis:
 *   fresh   the processor reads them as new entries;
 *   claimed a consumer "dead" read them all (XREADGROUP) and died: they are
 *           pending under it, and a new processor claims and handles them;
 *   own     the processor's own consumer name read them all and the process
 *           died: a new processor with that name handles its own pending list.
 * Each figure is from stx_processor_start() (which claims) to the last
 * commit; the state and alerts are checked against the model. */
#include <stdio.h>
#include <string.h>

#include "bench.h"

#define NSKUS 1000
#define SEED 0xd7a1d7a1ull

static const char *const stream = "bench:drain";
static const char *const group = "inv";
static const char *const alerts = "bench:drain:alerts";

static double run(const bench_env *env, redisContext *c, long n, const char *dead,
                  const char *what, int *bad)
{
    lib_run r = {stream, group, alerts, 128, NULL, NULL, NULL};
    inv_ctx ctx = {alerts, NULL, NULL};
    char state_key[256], why[256] = "";
    run_result res;
    wl_model m;
    wl_gen g;
    stx_processor *p;
    uint64_t t0;
    double s;

    bench_flushall(c);
    wl_gen_init(&g, NSKUS, SEED);
    wl_model_init(&m, NSKUS);
    wl_preload_stream(c, stream, &g, n, &m);
    if (dead != NULL) {
        freeReplyObject(bench_command(c, "XGROUP CREATE %s %s 0", stream, group));
        /* The reply holds n entries: read in pages to keep it small. */
        for (long got = 0; got < n; got += 10000)
            freeReplyObject(bench_command(c, "XREADGROUP GROUP %s %s COUNT 10000 STREAMS %s >",
                                          group, dead, stream));
    }
    t0 = bench_now_us();
    p = lib_open(env, &r, &ctx);
    lib_drain(p, c, n, &res);
    s = (double)(bench_now_us() - t0) / 1e6;
    bench_note("  %s: %ld entries in %.2f s (start %.2f s): %.0f msgs/s, %.1f entries per "
               "commit", what, res.messages, s, s - res.seconds, (double)res.messages / s,
               res.stats.commits ? (double)res.messages / (double)res.stats.commits : 0.0);
    bench_key(state_key, sizeof state_key, stream, group, "state");
    if (wl_verify(c, state_key, alerts, &m, 1, why, sizeof why) != 0) {
        bench_note("  %s: result differs from the model: %s", what, why);
        *bad = 1;
    }
    stx_processor_free(p);
    wl_model_free(&m);
    return (double)res.messages / s;
}

int mode_drain(const bench_env *env, const bench_opts *o)
{
    redisContext *c = bench_connect(env);
    int bad = 0;
    double fresh, claimed, own;

    bench_note("pending drain: %ld entries, batch_size 128", o->messages);
    fresh = run(env, c, o->messages, NULL, "fresh", &bad);
    claimed = run(env, c, o->messages, "dead", "pending under a dead consumer", &bad);
    own = run(env, c, o->messages, "bench", "own pending list after a restart", &bad);
    bench_kv("drain_fresh_msgs_per_s", "%.0f", fresh);
    bench_kv("drain_claimed_msgs_per_s", "%.0f", claimed);
    bench_kv("drain_own_msgs_per_s", "%.0f", own);
    bench_kv("drain_claimed_ratio", "%.3f", claimed / fresh);
    bench_kv("drain_own_ratio", "%.3f", own / fresh);
    bench_kv("drain_verified", "%s", bad ? "no" : "yes");
    bench_note("  drain / fresh: dead consumer %.2f, own %.2f (target >= 0.5)", claimed / fresh,
               own / fresh);
    bench_flushall(c);
    redisFree(c);
    return 0;
}
