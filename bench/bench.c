/* stx_bench: throughput, latency, state size, restart and CPU figures of
 * streamtx against a redis-server that bench/run.sh starts.  Each mode
 * prints "# ..." lines for people and "key=value" lines for programs.
 *
 *   stx_bench compare   --port P [--messages N] [--naive-messages N] [--rounds R]
 *   stx_bench state     --port P --tmpdir DIR [--messages N] [--state-keys N] [--rounds R]
 *   stx_bench latency   --port P [--rate R] [--seconds S]
 *   stx_bench callgrind-prepare --port P [--messages N]
 *   stx_bench callgrind --port P [--messages N] [--batch B]   (run under valgrind)
 *   stx_bench partitions --port P [--cluster-ports P1,P2,P3] [--messages N]
 */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "bench.h"

static const char *const cg_stream = "bench:cg";
static const char *const cg_group = "inv";
static const char *const cg_alerts = "bench:cg:alerts";

static void usage(void)
{
    fprintf(stderr,
            "usage: stx_bench MODE --port P [--host H] [options]\n"
            "modes: compare, state, latency, drain, outbox, callgrind-prepare, callgrind,\n"
            "       partitions\n"
            "options: --messages N  --rounds R  --naive-messages N  --state-keys N  --rate R\n"
            "         --seconds S  --batch B  --tmpdir DIR  --cluster-ports P1,P2,...\n"
            "Normally started by bench/run.sh, which also starts redis-server.\n");
}

static long number(const char *name, const char *text, long min, long max)
{
    char *end;
    long v;

    errno = 0;
    v = strtol(text, &end, 10);
    if (errno != 0 || end == text || *end != '\0' || v < min || v > max)
        bench_die("%s: want an integer from %ld to %ld, not '%s'", name, min, max, text);
    return v;
}

/* Preload the fixed callgrind workload (run natively, before valgrind). */
static int mode_callgrind_prepare(const bench_env *env, const bench_opts *o)
{
    redisContext *c = bench_connect(env);
    wl_gen g;

    bench_flushall(c);
    wl_gen_init(&g, 1000, 0xca11ca11ull);
    wl_preload_stream(c, cg_stream, &g, o->messages, NULL);
    redisFree(c);
    return 0;
}

/* Process the prepared stream: the run whose instructions callgrind counts. */
static int mode_callgrind(const bench_env *env, const bench_opts *o)
{
    redisContext *c = bench_connect(env);
    lib_run r = {cg_stream, cg_group, cg_alerts, o->batch, NULL, NULL, NULL};
    run_result res;

    lib_process(env, c, &r, o->messages, &res);
    bench_kv("callgrind_messages", "%ld", res.messages);
    bench_kv("callgrind_commits", "%llu", (unsigned long long)res.stats.commits);
    redisFree(c);
    return 0;
}

int main(int argc, char **argv)
{
    bench_env env = {"127.0.0.1", 0, "", "/tmp"};
    bench_opts o = {200000, 10, 20000, 1000000, 5000, 10, 128};
    const char *mode, *cluster_ports = NULL;

    if (argc < 2) {
        usage();
        return 2;
    }
    mode = argv[1];
    for (int i = 2; i < argc; i++) {
        const char *name = argv[i], *val = i + 1 < argc ? argv[i + 1] : NULL;

        if (val == NULL) {
            usage();
            return 2;
        }
        i++;
        if (strcmp(name, "--host") == 0)
            env.host = val;
        else if (strcmp(name, "--port") == 0)
            env.port = (int)number(name, val, 1, 65535);
        else if (strcmp(name, "--tmpdir") == 0)
            env.tmpdir = val;
        else if (strcmp(name, "--cluster-ports") == 0)
            cluster_ports = val;
        else if (strcmp(name, "--messages") == 0)
            o.messages = number(name, val, 1, 1000000000);
        else if (strcmp(name, "--rounds") == 0)
            o.rounds = number(name, val, 1, BENCH_MAX_ROUNDS);
        else if (strcmp(name, "--naive-messages") == 0)
            o.naive_messages = number(name, val, 1, 1000000000);
        else if (strcmp(name, "--state-keys") == 0)
            o.state_keys = number(name, val, 10, 100000000);
        else if (strcmp(name, "--rate") == 0)
            o.latency_rate = number(name, val, 1, 10000000);
        else if (strcmp(name, "--seconds") == 0)
            o.latency_seconds = number(name, val, 1, 3600);
        else if (strcmp(name, "--batch") == 0)
            o.batch = number(name, val, 1, 1000);
        else {
            usage();
            return 2;
        }
    }
    if (env.port == 0) {
        usage();
        return 2;
    }
    snprintf(env.url, sizeof env.url, "redis://%s:%d", env.host, env.port);

    if (strcmp(mode, "compare") == 0)
        return mode_compare(&env, &o);
    if (strcmp(mode, "state") == 0)
        return mode_state(&env, &o);
    if (strcmp(mode, "latency") == 0)
        return mode_latency(&env, &o);
    if (strcmp(mode, "drain") == 0)
        return mode_drain(&env, &o);
    if (strcmp(mode, "outbox") == 0)
        return mode_outbox(&env, &o);
    if (strcmp(mode, "callgrind-prepare") == 0)
        return mode_callgrind_prepare(&env, &o);
    if (strcmp(mode, "callgrind") == 0)
        return mode_callgrind(&env, &o);
    if (strcmp(mode, "partitions") == 0)
        return mode_partitions(&env, &o, cluster_ports);
    usage();
    return 2;
}
