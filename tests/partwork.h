/* The inventory workload over a partitioned stream, for the tests whose
 * members (forked processes) share the partitions of one group: on one
 * Redis (test_partitions.c) and on a Redis Cluster (test_scaleout.c).  The
 * checks read each partition's keys from the node that serves its slot. */
#ifndef STX_TEST_PARTWORK_H
#define STX_TEST_PARTWORK_H

#include <stdint.h>
#include <sys/types.h>
#include <hiredis/hiredis.h>

#include "harness.h"
#include "workload.h"

#define PW_MAX_PARTS 32
#define PW_MAX_MEMBERS 8

typedef struct partwork {
    char stream[64];            /* the logical stream */
    const char *group;          /* "inv" */
    unsigned parts;
    int64_t stock[WL_SKUS];     /* expected */
    long crossings;             /* expected alerts */
    long produced;
    uint64_t seed;
    const char *url;            /* where members connect */
    const test_redis *redis;    /* one Redis, or */
    const test_cluster *cluster; /* a cluster (then redis is NULL) */
    redisContext *one;          /* the connection to redis */
    redisContext *node[TEST_CLUSTER_NODES]; /* connections to cluster nodes */
    long lease_ttl_ms;          /* 0: 1000 */
    long command_timeout_ms;    /* 0: 600 (with the WAIT timeout, below 2/3 of the lease) */
    int batch_size;             /* 0: 64 */
    long handler_delay_us;      /* the handler sleeps this long per entry (0: no sleep) */
    const char *const *conf;    /* more member configuration: key, value, ..., NULL */
} partwork;

/* A new partitioned stream of parts partitions named after name (and the
 * process), created with stx_stream_create() (asserts).  Exactly one of r
 * and tc is not NULL. */
void pw_init(partwork *w, const test_redis *r, const test_cluster *tc, const char *name,
             unsigned parts);
/* Close the connections. */
void pw_free(partwork *w);
/* A connection to the master of partition i's slot as the cluster says now
 * (one Redis: its connection).  Owned by w. */
redisContext *pw_conn(partwork *w, unsigned i);
/* Forget the connections to cluster nodes (after a node was killed). */
void pw_reconnect(partwork *w);
/* XADD n sales and restocks, each to the partition of its SKU (pipelined
 * per node). */
void pw_produce(partwork *w, long n);
/* XADD n entries to partition i only, on connection c, each after an
 * ASKING (c is the importing node of a slot being migrated). */
void pw_produce_asking(partwork *w, unsigned i, redisContext *c, long n);
/* Fork a member named name (its id starts with "name-"): it runs until
 * SIGTERM (exit 0) or an error (exit 1). */
pid_t pw_spawn(const partwork *w, const char *name);
/* Exit status of a child (128 + signal when killed). */
int pw_exit_code(pid_t pid);

/* Owner of each partition's lease ("" when free or expired by Redis' clock). */
void pw_owners(partwork *w, char own[][64]);
/* The epoch in partition i's meta key (0 when none). */
unsigned long long pw_epoch(partwork *w, unsigned i);
/* 1 when owner is the id of a member named name. */
int pw_owned_by(const char *owner, const char *name);
/* Wait until the leases are exactly the rendezvous assignment over the
 * members named in names (NULL-terminated), as streamtx.h documents it. */
void pw_wait_owners(partwork *w, const char *const *names, long timeout_ms, char own[][64]);
/* Wait until every partition's offset is its last id. */
void pw_wait_caught_up(partwork *w, long timeout_ms);
/* Exact checks: stock per SKU, one alert per crossing each from a distinct
 * source, offset = last id, nothing pending or dead-lettered, per partition. */
void pw_check(partwork *w);
/* Committed offset of partition i (into buf, "" when none). */
void pw_offset(partwork *w, unsigned i, char *buf, size_t cap);

#endif
