/* Mode "outbox": what a publish through the outbox costs against a direct
 * one.  The publish-heavy inventory workload (one publish per entry), in
 * interleaved rounds of two runs on an emptied Redis:
 *   direct  publish_mode=direct: the commit script XADDs to the target (a
 *           same-slot publish, the fast path);
 *   outbox  publish_mode=outbox: the commit script XADDs to the outbox, and
 *           the processor relays it (relay.lua, then XDEL) after its commits.
 * Each clock runs from the first poll until every entry was committed and,
 * for the outbox, every publish reached its target.  The state, the alerts
 * and the target's length are checked. */
#include <stdio.h>
#include <string.h>

#include "bench.h"

#define NSKUS 1000
#define SEED 0x0b0b0b0bull

static const char *const stream = "bench:ob";
static const char *const group = "inv";
static const char *const alerts = "bench:ob:alerts";
static const char *const forward = "bench:ob:fwd";

static void set(stx_config *conf, const char *key, const char *value)
{
    char err[256] = "";

    if (stx_config_set(conf, key, value, err, sizeof err) != STX_OK)
        bench_die("config %s=%s: %s", key, value, err);
}

static void run(const bench_env *env, redisContext *c, long n, int outbox, run_result *out,
                int *bad)
{
    inv_ctx ctx = {alerts, NULL, forward};
    char state_key[256], why[256] = "";
    stx_config *conf = stx_config_new();
    stx_processor *p = NULL;
    wl_model m;
    wl_gen g;
    int rc;

    bench_flushall(c);
    wl_gen_init(&g, NSKUS, SEED);
    wl_model_init(&m, NSKUS);
    wl_preload_stream(c, stream, &g, n, &m);
    if (conf == NULL)
        bench_die("out of memory");
    set(conf, "url", env->url);
    set(conf, "stream", stream);
    set(conf, "group", group);
    set(conf, "consumer", "bench");
    set(conf, "batch_size", "128");
    set(conf, "block_ms", "100");
    set(conf, "command_timeout_ms", "60000");
    set(conf, "publish_mode", outbox ? "outbox" : "direct");
    set(conf, "relay_batch", "1024");
    stx_config_set_handler(conf, inv_handle, &ctx);
    rc = stx_processor_new(&p, conf);
    stx_config_free(conf);
    if (rc != STX_OK || (rc = stx_processor_start(p)) != STX_OK)
        bench_die("processor: %s: %s", stx_strerror(rc), p ? stx_processor_errmsg(p) : "");
    lib_drain(p, c, n, out);
    /* The relay's tail: the last commits' publishes are still in the outbox. */
    uint64_t t0 = bench_now_us();
    double rcpu0 = bench_redis_cpu_s(c);
    for (int idle = 0;; idle++) {
        redisReply *r = bench_command(c, "XLEN %s", forward);
        long long len = r->integer;
        freeReplyObject(r);
        if (len >= n)
            break;
        if (stx_processor_poll(p) < 0 || idle > 100000)
            bench_die("the relay did not finish: %lld of %ld", len, n);
    }
    out->seconds += (double)(bench_now_us() - t0) / 1e6;
    out->redis_cpu_s += bench_redis_cpu_s(c) - rcpu0;
    bench_key(state_key, sizeof state_key, stream, group, "state");
    if (wl_verify(c, state_key, alerts, &m, 1, why, sizeof why) != 0) {
        bench_note("  %s: result differs from the model: %s", outbox ? "outbox" : "direct", why);
        *bad = 1;
    }
    redisReply *r = bench_command(c, "XLEN %s", forward);
    if (r->integer != n) {
        bench_note("  %s: %lld publishes for %ld entries", outbox ? "outbox" : "direct",
                   r->integer, n);
        *bad = 1;
    }
    freeReplyObject(r);
    stx_processor_free(p);
    wl_model_free(&m);
}

int mode_outbox(const bench_env *env, const bench_opts *o)
{
    redisContext *c = bench_connect(env);
    long per = o->messages / o->rounds;
    double s[2] = {0, 0}, rcpu[2] = {0, 0};
    long msgs[2] = {0, 0};
    int bad = 0;

    if (per < 1)
        per = 1;
    bench_note("outbox: %ld rounds of %ld entries, one publish each, batch_size 128", o->rounds,
               per);
    for (long i = 0; i < o->rounds; i++)
        for (int k = 0; k < 2; k++) {
            int outbox = (int)((i + k) % 2); /* alternate which goes first */
            run_result res;

            run(env, c, per, outbox, &res, &bad);
            s[outbox] += res.seconds;
            rcpu[outbox] += res.redis_cpu_s;
            msgs[outbox] += res.messages;
        }
    double us_direct = s[0] * 1e6 / (double)msgs[0], us_outbox = s[1] * 1e6 / (double)msgs[1];
    double rus_direct = rcpu[0] * 1e6 / (double)msgs[0], rus_outbox = rcpu[1] * 1e6 / (double)msgs[1];
    bench_kv("outbox_direct_msgs_per_s", "%.0f", (double)msgs[0] / s[0]);
    bench_kv("outbox_msgs_per_s", "%.0f", (double)msgs[1] / s[1]);
    bench_kv("outbox_direct_us_per_msg", "%.2f", us_direct);
    bench_kv("outbox_us_per_msg", "%.2f", us_outbox);
    bench_kv("outbox_overhead_us_per_publish", "%.2f", us_outbox - us_direct);
    bench_kv("outbox_redis_cpu_us_per_msg_direct", "%.2f", rus_direct);
    bench_kv("outbox_redis_cpu_us_per_msg", "%.2f", rus_outbox);
    bench_kv("outbox_verified", "%s", bad ? "no" : "yes");
    bench_note("  direct (same-slot) publish: %.0f msgs/s, %.2f us/msg (Redis CPU %.2f us/msg)",
               (double)msgs[0] / s[0], us_direct, rus_direct);
    bench_note("  through the outbox + relay: %.0f msgs/s, %.2f us/msg (Redis CPU %.2f us/msg)",
               (double)msgs[1] / s[1], us_outbox, rus_outbox);
    bench_note("  overhead per publish: %.2f us wall, %.2f us Redis CPU", us_outbox - us_direct,
               rus_outbox - rus_direct);
    redisFree(c);
    return bad ? 1 : 0;
}
