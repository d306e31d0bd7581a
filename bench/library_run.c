/* Running a streamtx processor with the inventory handler, and printing
 * the figures of a run. */
#include <stdio.h>
#include <string.h>

#include "bench.h"

static void set(stx_config *conf, const char *key, const char *value)
{
    char err[256] = "";

    if (stx_config_set(conf, key, value, err, sizeof err) != STX_OK)
        bench_die("config %s=%s: %s", key, value, err);
}

stx_processor *lib_new(const bench_env *env, const lib_run *r, inv_ctx *ctx)
{
    stx_config *conf = stx_config_new();
    stx_processor *p = NULL;
    char batch[24];
    int rc;

    if (conf == NULL)
        bench_die("out of memory");
    snprintf(batch, sizeof batch, "%ld", r->batch);
    set(conf, "url", env->url);
    set(conf, "stream", r->stream);
    set(conf, "group", r->group);
    set(conf, "consumer", "bench");
    set(conf, "batch_size", batch);
    set(conf, "block_ms", "100");
    set(conf, "command_timeout_ms", "60000");
    if (r->snapshot_dir != NULL)
        set(conf, "snapshot_dir", r->snapshot_dir);
    if (r->overlap != NULL)
        set(conf, "overlap", r->overlap);
    stx_config_set_handler(conf, inv_handle, ctx);
    rc = stx_processor_new(&p, conf);
    stx_config_free(conf);
    if (rc != STX_OK)
        bench_die("stx_processor_new: %s: %s", stx_strerror(rc),
                  p != NULL ? stx_processor_errmsg(p) : "");
    return p;
}

stx_processor *lib_open(const bench_env *env, const lib_run *r, inv_ctx *ctx)
{
    stx_processor *p = lib_new(env, r, ctx);
    int rc = stx_processor_start(p);

    if (rc != STX_OK)
        bench_die("stx_processor_start: %s: %s", stx_strerror(rc), stx_processor_errmsg(p));
    return p;
}

void lib_drain(stx_processor *p, redisContext *ctl, long n, run_result *out)
{
    stx_stats before;
    double cpu0, rcpu0;
    uint64_t t0;
    int idle = 0;

    memset(out, 0, sizeof *out);
    stx_processor_stats(p, &before);
    bench_resetstat(ctl); /* INFO commandstats: the timed part only */
    rcpu0 = bench_redis_cpu_s(ctl);
    cpu0 = bench_self_cpu_s();
    t0 = bench_now_us();
    for (;;) {
        int rc;

        stx_processor_stats(p, &out->stats);
        if (out->stats.committed - before.committed >= (uint64_t)n)
            break;
        rc = stx_processor_poll(p);
        if (rc < 0)
            bench_die("stx_processor_poll: %s: %s", stx_strerror(rc), stx_processor_errmsg(p));
        if (rc == 0 && ++idle > 20)
            bench_die("the stream ran dry after %llu of %ld messages",
                      (unsigned long long)(out->stats.committed - before.committed), n);
    }
    out->seconds = (double)(bench_now_us() - t0) / 1e6;
    out->client_cpu_s = bench_self_cpu_s() - cpu0;
    out->redis_cpu_s = bench_redis_cpu_s(ctl) - rcpu0;
    out->messages = (long)(out->stats.committed - before.committed);
    /* counters of this drain only; the latency percentiles stay cumulative */
    out->stats.committed -= before.committed;
    out->stats.commits -= before.commits;
    if (out->stats.duplicates != before.duplicates ||
        out->stats.handler_failures != before.handler_failures)
        bench_die("unexpected duplicates or handler failures");
}

void lib_process(const bench_env *env, redisContext *ctl, const lib_run *r, long n,
                 run_result *out)
{
    inv_ctx ctx = {r->alerts, NULL, r->forward};
    stx_processor *p = lib_open(env, r, &ctx);

    lib_drain(p, ctl, n, out);
    stx_processor_free(p);
}
