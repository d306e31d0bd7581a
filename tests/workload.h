/* The inventory workload the fault tests run: sales and restocks per SKU,
 * alerts on threshold crossings, and optionally one poison entry that
 * crashes the process whenever it is handled.  The processor runs in forked
 * children the tests kill, pause and restart. */
#ifndef STX_TEST_WORKLOAD_H
#define STX_TEST_WORKLOAD_H

#include <stdint.h>
#include <sys/types.h>
#include <hiredis/hiredis.h>

#include "harness.h"

struct stx_config;

#define WL_SKUS 20
#define WL_THRESHOLD 10
#define WL_INITIAL 100

typedef struct workload {
    const test_redis *redis;
    char stream[64], alerts[64], group[32];
    int64_t stock[WL_SKUS];     /* expected */
    long crossings;             /* expected alerts */
    long produced;
    char poison_id[48];         /* "" when none */
    uint64_t seed;
    long max_deliveries;        /* 0: library default */
    int batch_size;             /* 0: library default */
    const char *url;            /* where processors connect; NULL: redis->url */
    long command_timeout_ms;    /* 0: 2000 */
    const char *const *conf;    /* more configuration: key, value, ..., NULL; or NULL */
    /* Called in the child on its configuration before the processor is
     * made (e.g. a history source); NULL: none. */
    void (*setup)(struct stx_config *conf, void *data);
    void *setup_data;
} workload;

void wl_init(workload *w, const test_redis *r, const char *name);
/* XADD n entries (pipelined); the poison entry, if asked, goes in the middle. */
void wl_produce(workload *w, redisContext *c, long n, int with_poison);
/* Fork a processor.  It runs until SIGTERM (exit 0), until idle when
 * exit_when_idle (exit 0), or until fenced (exit 3); other errors exit 1. */
pid_t wl_spawn(const workload *w, int exit_when_idle);
/* Wait until the group's committed offset is the stream's last id (asserts
 * within timeout_ms); returns 0 when reached. */
int wl_wait_caught_up(const workload *w, redisContext *c, long timeout_ms);
/* Exact checks: stock per SKU, offset = last id, one alert per crossing,
 * each naming its source once, nothing pending; the poison entry (if any)
 * is the only dead letter, after expect_attempts attempts (0: don't check). */
void wl_check(const workload *w, redisContext *c, uint64_t expect_attempts);
/* How many times the handler was entered for the poison entry. */
long long wl_poison_attempts(const workload *w, redisContext *c);

void wl_sleep_ms(long ms);
uint64_t wl_rand(uint64_t *s);

#endif
