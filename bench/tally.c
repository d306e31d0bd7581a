/* Figures summed over interleaved rounds.  Contenders whose ratio is taken
 * run in alternating rounds, so that a change in the load of the machine
 * hits both; the totals give the figure, the rounds show the spread. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "bench.h"

static int cmp_double(const void *a, const void *b)
{
    double x = *(const double *)a, y = *(const double *)b;

    return (x > y) - (x < y);
}

static int cmp_u64(const void *a, const void *b)
{
    uint64_t x = *(const uint64_t *)a, y = *(const uint64_t *)b;

    return (x > y) - (x < y);
}

static uint64_t median_u64(const uint64_t *v, int n)
{
    uint64_t s[BENCH_MAX_ROUNDS];

    if (n == 0)
        return 0;
    memcpy(s, v, (size_t)n * sizeof *s);
    qsort(s, (size_t)n, sizeof *s, cmp_u64);
    return s[(n - 1) / 2];
}

void tally_add(tally *t, const run_result *r, redisContext *c)
{
    if (t->rounds == BENCH_MAX_ROUNDS)
        bench_die("more than %d rounds", BENCH_MAX_ROUNDS);
    t->messages += r->messages;
    t->seconds += r->seconds;
    t->client_cpu_s += r->client_cpu_s;
    t->redis_cpu_s += r->redis_cpu_s;
    t->commits += r->stats.commits;
    t->mps[t->rounds] = (double)r->messages / r->seconds;
    t->p50[t->rounds] = r->stats.commit_us_p50;
    t->p99[t->rounds] = r->stats.commit_us_p99;
    t->rounds++;
    cmdstats_collect(c, &t->cs);
}

double tally_mps(const tally *t)
{
    return (double)t->messages / t->seconds;
}

void ratio_spread(const double *a, const double *b, int n, double *median, double *min,
                  double *max)
{
    double r[BENCH_MAX_ROUNDS];

    for (int i = 0; i < n; i++)
        r[i] = a[i] / b[i];
    qsort(r, (size_t)n, sizeof *r, cmp_double);
    *min = r[0];
    *max = r[n - 1];
    *median = n % 2 ? r[n / 2] : (r[n / 2 - 1] + r[n / 2]) / 2;
}

void tally_print(const tally *t, const char *what, const char *suffix, const char *direct)
{
    char key[128], rounds[BENCH_MAX_ROUNDS * 12] = "";
    double msgs = (double)t->messages;
    size_t used = 0;

    for (int i = 0; i < t->rounds; i++)
        used += (size_t)snprintf(rounds + used, sizeof rounds - used, "%s%.0f", i ? "," : "",
                                 t->mps[i]);
    bench_note("  %s%s: %.0f msgs/s (%ld messages in %.2f s; rounds: %s)", what, suffix,
               msgs / t->seconds, t->messages, t->seconds, rounds);
#define KEY(name) (snprintf(key, sizeof key, "%s_%s%s", what, name, suffix), key)
    bench_kv(KEY("msgs_per_s"), "%.0f", msgs / t->seconds);
    bench_kv(KEY("messages"), "%ld", t->messages);
    bench_kv(KEY("seconds"), "%.3f", t->seconds);
    bench_kv(KEY("rounds_msgs_per_s"), "%s", rounds);
    bench_kv(KEY("client_cpu_us_per_msg"), "%.2f", t->client_cpu_s * 1e6 / msgs);
    bench_kv(KEY("redis_cpu_us_per_msg"), "%.2f", t->redis_cpu_s * 1e6 / msgs);
    if (t->commits != 0) {
        bench_kv(KEY("avg_batch"), "%.1f", msgs / (double)t->commits);
        /* the library's histogram per processor; the median over rounds */
        bench_kv(KEY("commit_us_p50"), "%llu", (unsigned long long)median_u64(t->p50, t->rounds));
        bench_kv(KEY("commit_us_p99"), "%llu", (unsigned long long)median_u64(t->p99, t->rounds));
    }
    bench_kv(KEY("verified"), "%s", t->mismatches == 0 ? "yes" : "NO");
#undef KEY
    cmdstats_print(&t->cs, what, suffix, t->messages, direct);
}
