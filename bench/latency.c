/* Mode "latency": commit latency at a fixed, moderate rate.  A producer
 * thread with its own connection adds inventory entries at a paced rate
 * (each carries its produce time in a field "t"); the processor runs with
 * batching on (batch_size 128) in the main thread.  Reported: the
 * library's commit latency (EVALSHA sent to reply read, from
 * stx_processor_stats()) and the end-to-end latency (XADD sent to poll()
 * returning after the commit landed), both over the whole run.
 *
 * A third thread sleeps 1 ms at a time and records how late it wakes up:
 * the delays the machine itself adds in the same seconds (scheduling, CPU
 * taken by the hypervisor), which no commit can be faster than. */
#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "bench.h"

static const char *const stream = "bench:lat";
static const char *const group = "inv";
static const char *const alerts = "bench:lat:alerts";

typedef struct producer {
    const bench_env *env;
    long rate, seconds;
    long sent;
    atomic_int done;
} producer;

static void *produce(void *arg)
{
    producer *pr = arg;
    redisContext *c = bench_connect(pr->env);
    uint64_t t0 = bench_now_us(), end = t0 + (uint64_t)pr->seconds * 1000000u;
    long sent = 0;
    wl_gen g;

    wl_gen_init(&g, 1000, 0x7a7e7a7eull);
    for (uint64_t now = t0; now < end; now = bench_now_us()) {
        long due = (long)((now - t0) * (uint64_t)pr->rate / 1000000u);
        long k = 0;
        struct timespec ts = {0, 200000}; /* 0.2 ms */

        /* After a stall, catch up in bursts of at most 100, so that the
         * produce time written into an entry is close to when it is sent. */
        for (; sent < due && k < 100; sent++, k++) {
            wl_entry e;
            char sku[WL_SKU_MAX], qty[24], t[24];
            const char *argv[11] = {"XADD", stream, "*", "type", NULL, "sku", sku, "qty", qty,
                                    "t", t};

            wl_next(&g, &e);
            wl_sku_name(sku, e.sku);
            snprintf(qty, sizeof qty, "%lld", (long long)e.qty);
            snprintf(t, sizeof t, "%llu", (unsigned long long)bench_now_us());
            argv[4] = e.restock ? "restock" : "sale";
            if (redisAppendCommandArgv(c, 11, argv, NULL) != REDIS_OK)
                bench_die("producer XADD: %s", c->errstr);
        }
        for (long i = 0; i < k; i++)
            freeReplyObject(bench_get_reply(c));
        if (k < 100)
            nanosleep(&ts, NULL);
    }
    redisFree(c);
    pr->sent = sent;
    atomic_store(&pr->done, 1);
    return NULL;
}

typedef struct hiccup {
    atomic_int stop;
    uint64_t *late_us;
    size_t n, cap;
} hiccup;

static void *measure_hiccups(void *arg)
{
    hiccup *h = arg;
    struct timespec ts = {0, 1000000};

    while (!atomic_load(&h->stop) && h->n < h->cap) {
        uint64_t t0 = bench_now_us(), dt;

        nanosleep(&ts, NULL);
        dt = bench_now_us() - t0;
        h->late_us[h->n++] = dt > 1000 ? dt - 1000 : 0;
    }
    return NULL;
}

static void push_latency(lat_recorder *lat, uint64_t us)
{
    if (lat->nlat == lat->cap_lat) {
        size_t cap = lat->cap_lat ? 2 * lat->cap_lat : 65536;
        uint64_t *v = realloc(lat->lat_us, cap * sizeof *v);

        if (v == NULL)
            bench_die("out of memory");
        lat->lat_us = v;
        lat->cap_lat = cap;
    }
    lat->lat_us[lat->nlat++] = us;
}

int mode_latency(const bench_env *env, const bench_opts *o)
{
    redisContext *c = bench_connect(env);
    lat_recorder lat;
    inv_ctx ctx = {alerts, &lat, NULL};
    lib_run r = {stream, group, alerts, 128, NULL, NULL, NULL};
    producer pr;
    hiccup h;
    pthread_t thread, hiccup_thread;
    stx_processor *p;
    stx_stats st;
    uint64_t t0;
    double seconds;
    int rc;

    memset(&lat, 0, sizeof lat);
    memset(&pr, 0, sizeof pr);
    pr.env = env;
    pr.rate = o->latency_rate;
    pr.seconds = o->latency_seconds;
    atomic_init(&pr.done, 0);
    memset(&h, 0, sizeof h);
    atomic_init(&h.stop, 0);
    h.cap = (size_t)o->latency_seconds * 2000 + 10000;
    if ((h.late_us = malloc(h.cap * sizeof *h.late_us)) == NULL)
        bench_die("out of memory");

    bench_flushall(c);
    p = lib_new(env, &r, &ctx);
    if ((rc = stx_processor_start(p)) != STX_OK)
        bench_die("stx_processor_start: %s: %s", stx_strerror(rc), stx_processor_errmsg(p));
    bench_note("latency: producer at %ld msgs/s for %ld s on its own connection; processor "
               "batch_size 128", pr.rate, pr.seconds);
    t0 = bench_now_us();
    if (pthread_create(&thread, NULL, produce, &pr) != 0 ||
        pthread_create(&hiccup_thread, NULL, measure_hiccups, &h) != 0)
        bench_die("pthread_create failed");
    for (;;) {
        rc = stx_processor_poll(p);
        if (rc < 0)
            bench_die("stx_processor_poll: %s: %s", stx_strerror(rc), stx_processor_errmsg(p));
        if (rc > 0) {
            uint64_t now = bench_now_us();

            for (size_t i = 0; i < lat.npending; i++)
                push_latency(&lat, now > lat.pending_t[i] ? now - lat.pending_t[i] : 0);
            lat.npending = 0;
        }
        stx_processor_stats(p, &st);
        if (atomic_load(&pr.done) && st.committed >= (uint64_t)pr.sent)
            break;
    }
    seconds = (double)(bench_now_us() - t0) / 1e6;
    pthread_join(thread, NULL);
    atomic_store(&h.stop, 1);
    pthread_join(hiccup_thread, NULL);

    bench_note("  produced %ld in %.1f s (%.0f msgs/s), %llu commits, %.1f messages per commit",
               pr.sent, seconds, pr.sent / seconds, (unsigned long long)st.commits,
               st.commits ? (double)st.committed / (double)st.commits : 0.0);
    bench_kv("latency_rate_msgs_per_s", "%.0f", pr.sent / seconds);
    bench_kv("latency_messages", "%llu", (unsigned long long)st.committed);
    bench_kv("latency_avg_batch", "%.1f",
             st.commits ? (double)st.committed / (double)st.commits : 0.0);
    bench_kv("latency_p50_us", "%llu", (unsigned long long)st.commit_us_p50);
    bench_kv("latency_p99_us", "%llu", (unsigned long long)st.commit_us_p99);
    bench_kv("latency_max_us", "%llu", (unsigned long long)st.commit_us_max);
    if (lat.nlat != st.committed)
        bench_note("  WARNING: %zu end-to-end samples for %llu committed messages", lat.nlat,
                   (unsigned long long)st.committed);
    bench_kv("e2e_latency_p50_us", "%llu",
             (unsigned long long)bench_quantile(lat.lat_us, lat.nlat, 0.50));
    bench_kv("e2e_latency_p99_us", "%llu",
             (unsigned long long)bench_quantile(lat.lat_us, lat.nlat, 0.99));
    bench_kv("e2e_latency_max_us", "%llu",
             (unsigned long long)(lat.nlat ? lat.lat_us[lat.nlat - 1] : 0));

    bench_kv("latency_hiccup_p50_us", "%llu",
             (unsigned long long)bench_quantile(h.late_us, h.n, 0.50));
    bench_kv("latency_hiccup_p99_us", "%llu",
             (unsigned long long)bench_quantile(h.late_us, h.n, 0.99));
    bench_kv("latency_hiccup_max_us", "%llu", (unsigned long long)(h.n ? h.late_us[h.n - 1] : 0));
    bench_note("  a 1 ms sleep woke up late by: p50 %llu us, p99 %llu us, max %llu us",
               (unsigned long long)bench_quantile(h.late_us, h.n, 0.50),
               (unsigned long long)bench_quantile(h.late_us, h.n, 0.99),
               (unsigned long long)(h.n ? h.late_us[h.n - 1] : 0));

    stx_processor_free(p);
    free(h.late_us);
    free(lat.pending_t);
    free(lat.lat_us);
    bench_flushall(c);
    redisFree(c);
    return 0;
}
