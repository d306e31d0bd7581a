/* Mode "compare": the library against the limit at batch 1, 16 and 128 on
 * the inventory workload (1000 SKUs, one seed; fewer than 1% of entries
 * publish an alert), at batch 128 on the publish-heavy workload (the same
 * entries, each also publishing one entry, as a forwarding handler does),
 * and against the naive baseline (the reference design, naive.c).
 *
 * The machine is shared and its speed drifts, so the contenders of a ratio
 * run in alternating rounds (library then limit, then limit then library,
 * ...; the naive baseline alternates with the library at batch 128), each
 * round on a freshly emptied Redis with its entries preloaded.  A figure
 * is all its messages over all its seconds; the rounds show the spread. */
#include <stdio.h>
#include <string.h>

#include "bench.h"

#define NSKUS 1000
#define SEED 0x5eedbe4c4ull

static const char *const stream = "bench:inv";
static const char *const group = "inv";
static const char *const alerts = "bench:inv:alerts";
static const char *const forward = "bench:inv:fwd";
/* Commands the library sends itself (not from inside a script): the rest
 * of INFO commandstats ran inside its EVALSHAs. */
static const char *const lib_direct = "xreadgroup xinfo|groups xautoclaim";

/* Empty Redis and preload n entries; the model learns what they must do. */
static void prepare(redisContext *c, long n, wl_model *m)
{
    wl_gen g;

    bench_flushall(c);
    wl_gen_init(&g, NSKUS, SEED);
    wl_model_init(m, NSKUS);
    wl_preload_stream(c, stream, &g, n, m);
}

static void check(redisContext *c, const char *state_key, const wl_model *m, tally *t,
                  const char *what)
{
    char why[256] = "";

    if (wl_verify(c, state_key, alerts, m, 1, why, sizeof why) != 0) {
        t->mismatches++;
        bench_note("  %s: result differs from the model: %s", what, why);
    }
}

static void check_len(redisContext *c, const char *key, long long want, tally *t,
                      const char *what)
{
    long long got = bench_integer(c, "XLEN %s", key);

    if (got != want) {
        t->mismatches++;
        bench_note("  %s: %s holds %lld entries, the model %lld", what, key, got, want);
    }
}

enum { LIB, LIB_SERIAL, LIMIT, LIMIT_OVERLAP, NAIVE };

static void run_one(const bench_env *env, redisContext *c, int who, long batch, long n,
                    int heavy, tally *t)
{
    const char *fwd = heavy ? forward : NULL;

    char state_key[256];
    run_result res;
    wl_model m;

    prepare(c, n, &m);
    if (who == LIB || who == LIB_SERIAL) {
        lib_run r = {stream, group, alerts, batch, NULL, fwd, who == LIB_SERIAL ? "0" : NULL};

        bench_key(state_key, sizeof state_key, stream, group, "state");
        lib_process(env, c, &r, n, &res);
        tally_add(t, &res, c);
        check(c, state_key, &m, t, "library");
    } else if (who == LIMIT) {
        bench_key(state_key, sizeof state_key, stream, group, "state");
        freeReplyObject(bench_command(c, "XGROUP CREATE %s %s 0", stream, group));
        bench_resetstat(c);
        limit_process(c, stream, group, alerts, fwd, batch, n, 0, &res);
        tally_add(t, &res, c);
        check(c, state_key, &m, t, "limit");
    } else if (who == LIMIT_OVERLAP) {
        bench_key(state_key, sizeof state_key, stream, group, "state");
        freeReplyObject(bench_command(c, "XGROUP CREATE %s %s 0", stream, group));
        bench_resetstat(c);
        limit_process(c, stream, group, alerts, fwd, batch, n, 1, &res);
        tally_add(t, &res, c);
        check(c, state_key, &m, t, "limit");
    } else {
        /* The state is one serialized document: only the alerts are checked. */
        freeReplyObject(bench_command(c, "XGROUP CREATE %s naive 0", stream));
        bench_resetstat(c);
        naive_process(c, stream, "naive", "bench:inv:naive:state", "bench:inv:naive:offset",
                      alerts, n, &res);
        tally_add(t, &res, c);
        check_len(c, alerts, (long long)m.crossings, t, "naive");
    }
    if (heavy)
        check_len(c, forward, n, t, who == LIB || who == LIB_SERIAL ? "library" : "limit");
    wl_model_free(&m);
}

int mode_compare(const bench_env *env, const bench_opts *o)
{
    static const long batches[] = {1, 16, 128};
    redisContext *c = bench_connect(env);
    long per_round = (o->messages + o->rounds - 1) / o->rounds;
    long naive_per_round = (o->naive_messages + o->rounds - 1) / o->rounds;
    static tally lib[3], limit[3], naive, lib_heavy, limit_heavy, overlap, overlap_heavy;
    static tally serial, serial_heavy;
    double med, lo, hi;

    bench_note("%ld rounds per batch size; per round %ld messages each for the library and the "
               "limit, %ld for the naive baseline (with batch 128)", o->rounds, per_round,
               naive_per_round);
    for (int b = 0; b < 3; b++) {
        char suffix[16], key[64];

        snprintf(suffix, sizeof suffix, "_b%ld", batches[b]);
        for (int i = 0; i < o->rounds; i++) {
            if (i % 2 == 0) {
                run_one(env, c, LIB, batches[b], per_round, 0, &lib[b]);
                run_one(env, c, LIMIT, batches[b], per_round, 0, &limit[b]);
            } else {
                run_one(env, c, LIMIT, batches[b], per_round, 0, &limit[b]);
                run_one(env, c, LIB, batches[b], per_round, 0, &lib[b]);
            }
            if (batches[b] == 128) {
                run_one(env, c, NAIVE, 0, naive_per_round, 0, &naive);
                if (i % 2 == 0) {
                    run_one(env, c, LIB, 128, per_round, 1, &lib_heavy);
                    run_one(env, c, LIMIT, 128, per_round, 1, &limit_heavy);
                } else {
                    run_one(env, c, LIMIT, 128, per_round, 1, &limit_heavy);
                    run_one(env, c, LIB, 128, per_round, 1, &lib_heavy);
                }
                run_one(env, c, LIMIT_OVERLAP, 128, per_round, 0, &overlap);
                run_one(env, c, LIMIT_OVERLAP, 128, per_round, 1, &overlap_heavy);
                run_one(env, c, LIB_SERIAL, 128, per_round, 0, &serial);
                run_one(env, c, LIB_SERIAL, 128, per_round, 1, &serial_heavy);
            }
        }
        bench_note("batch %ld", batches[b]);
        tally_print(&lib[b], "lib", suffix, lib_direct);
        tally_print(&limit[b], "limit", suffix, "xreadgroup");
        ratio_spread(lib[b].mps, limit[b].mps, lib[b].rounds, &med, &lo, &hi);
        bench_note("  library / limit: %.3f (rounds: median %.3f, %.3f to %.3f)",
                   tally_mps(&lib[b]) / tally_mps(&limit[b]), med, lo, hi);
        snprintf(key, sizeof key, "ratio_to_limit%s", suffix);
        bench_kv(key, "%.3f", tally_mps(&lib[b]) / tally_mps(&limit[b]));
        snprintf(key, sizeof key, "ratio_to_limit%s_round_median", suffix);
        bench_kv(key, "%.3f", med);
        snprintf(key, sizeof key, "ratio_to_limit%s_round_min", suffix);
        bench_kv(key, "%.3f", lo);
        snprintf(key, sizeof key, "ratio_to_limit%s_round_max", suffix);
        bench_kv(key, "%.3f", hi);
        /* Redis CPU per message is little affected by the machine's load:
         * when one Redis serves many processors, this is the ratio of
         * what it can carry. */
        snprintf(key, sizeof key, "redis_cpu_ratio%s", suffix);
        bench_kv(key, "%.3f", (limit[b].redis_cpu_s / (double)limit[b].messages) /
                                  (lib[b].redis_cpu_s / (double)lib[b].messages));
    }

    bench_note("publish-heavy (one publish per entry), batch 128");
    tally_print(&lib_heavy, "lib", "_heavy_b128", lib_direct);
    tally_print(&limit_heavy, "limit", "_heavy_b128", "xreadgroup");
    ratio_spread(lib_heavy.mps, limit_heavy.mps, lib_heavy.rounds, &med, &lo, &hi);
    bench_note("  library / limit: %.3f (rounds: median %.3f, %.3f to %.3f)",
               tally_mps(&lib_heavy) / tally_mps(&limit_heavy), med, lo, hi);
    bench_kv("ratio_to_limit_heavy_b128", "%.3f", tally_mps(&lib_heavy) / tally_mps(&limit_heavy));
    bench_kv("ratio_to_limit_heavy_b128_round_median", "%.3f", med);
    bench_kv("ratio_to_limit_heavy_b128_round_min", "%.3f", lo);
    bench_kv("ratio_to_limit_heavy_b128_round_max", "%.3f", hi);
    bench_kv("redis_cpu_ratio_heavy_b128", "%.3f",
             (limit_heavy.redis_cpu_s / (double)limit_heavy.messages) /
                 (lib_heavy.redis_cpu_s / (double)lib_heavy.messages));

    /* Overlap: the limit handling batch k+1 while the commit of batch k
     * runs (what it can give at most), and the library with it (its
     * default) against the library without it and against that limit. */
    bench_note("overlap (the next batch handled while a commit runs), batch 128");
    tally_print(&overlap, "overlap", "_b128", "xreadgroup");
    tally_print(&overlap_heavy, "overlap", "_heavy_b128", "xreadgroup");
    tally_print(&serial, "serial", "_b128", lib_direct);
    tally_print(&serial_heavy, "serial", "_heavy_b128", lib_direct);
    {
        static const struct {
            const char *what, *key;
            tally *a, *b;
        } r[] = {
            {"the limit with overlap / the limit, inventory", "overlap_gain_b128", &overlap, &limit[2]},
            {"the limit with overlap / the limit, publish-heavy", "overlap_gain_heavy_b128",
             &overlap_heavy, &limit_heavy},
            {"library / library with overlap off, inventory", "lib_overlap_gain_b128", &lib[2], &serial},
            {"library / library with overlap off, publish-heavy", "lib_overlap_gain_heavy_b128",
             &lib_heavy, &serial_heavy},
            {"library / the limit with overlap, inventory", "ratio_to_overlap_limit_b128", &lib[2],
             &overlap},
            {"library / the limit with overlap, publish-heavy", "ratio_to_overlap_limit_heavy_b128",
             &lib_heavy, &overlap_heavy},
        };
        char key[80];

        for (size_t i = 0; i < sizeof r / sizeof r[0]; i++) {
            ratio_spread(r[i].a->mps, r[i].b->mps, r[i].a->rounds, &med, &lo, &hi);
            bench_note("  %s: %.3f (rounds: median %.3f, %.3f to %.3f)", r[i].what,
                       tally_mps(r[i].a) / tally_mps(r[i].b), med, lo, hi);
            bench_kv(r[i].key, "%.3f", tally_mps(r[i].a) / tally_mps(r[i].b));
            snprintf(key, sizeof key, "%s_round_median", r[i].key);
            bench_kv(key, "%.3f", med);
        }
    }
    bench_kv("redis_cpu_ratio_serial_b128", "%.3f",
             (limit[2].redis_cpu_s / (double)limit[2].messages) /
                 (serial.redis_cpu_s / (double)serial.messages));

    bench_note("naive baseline, the reference design (XREADGROUP COUNT 128; per entry one "
               "pipelined MULTI/XACK/SET state/SET offset/[XADD]/EXEC round trip, the whole "
               "state serialized)");
    tally_print(&naive, "naive", "", NULL);
    ratio_spread(lib[2].mps, naive.mps, naive.rounds, &med, &lo, &hi);
    bench_note("  library batch 128 / naive: %.1fx (rounds: median %.1fx, %.1fx to %.1fx)",
               tally_mps(&lib[2]) / tally_mps(&naive), med, lo, hi);
    bench_kv("speedup_over_naive", "%.1f", tally_mps(&lib[2]) / tally_mps(&naive));
    bench_kv("speedup_over_naive_round_median", "%.1f", med);
    /* What the same Redis work without any checks reaches: an upper bound of
     * any library's speedup on this machine. */
    bench_kv("limit_speedup_over_naive", "%.1f", tally_mps(&limit[2]) / tally_mps(&naive));

    bench_flushall(c);
    redisFree(c);
    return 0;
}
