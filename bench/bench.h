/* Declarations shared by the benchmark program in bench/ (see README.md). */
#ifndef STX_BENCH_H
#define STX_BENCH_H

#include <stddef.h>
#include <stdint.h>

#include <hiredis/hiredis.h>

#include "streamtx.h"

#if defined(__GNUC__)
#define BENCH_PRINTF(a, b) __attribute__((format(printf, a, b)))
#define BENCH_NORETURN __attribute__((noreturn))
#else
#define BENCH_PRINTF(a, b)
#define BENCH_NORETURN
#endif

/* ---- measure.c: clocks, CPU, memory, output ----------------------------- */

/* Print "bench: ..." to stderr and exit(1). */
void bench_die(const char *fmt, ...) BENCH_PRINTF(1, 2) BENCH_NORETURN;
/* One human line on stdout, prefixed with "# ". */
void bench_note(const char *fmt, ...) BENCH_PRINTF(1, 2);
/* One machine-readable line on stdout: "key=value". */
void bench_kv(const char *key, const char *fmt, ...) BENCH_PRINTF(2, 3);
uint64_t bench_now_us(void);                 /* CLOCK_MONOTONIC */
double bench_self_cpu_s(void);               /* user + system CPU of this process */
long long bench_rss_bytes(void);             /* VmRSS of /proc/self/status, -1 if unknown */
/* Quantile q (0..1) of v[0..n) after sorting it in place (nearest rank). */
uint64_t bench_quantile(uint64_t *v, size_t n, double q);

/* ---- redisutil.c: the bench's own connection to Redis ---------------------- */

typedef struct bench_env {
    const char *host;
    int port;
    char url[160];
    const char *tmpdir;                      /* scratch directory (LMDB snapshots) */
} bench_env;

redisContext *bench_connect(const bench_env *env);
/* redisCommand() that dies on a lost connection or an error reply. */
redisReply *bench_command(redisContext *c, const char *fmt, ...);
/* The same for an argument vector. */
redisReply *bench_command_argv(redisContext *c, int argc, const char **argv, const size_t *lens);
/* Read one pipelined reply; dies on a lost connection or an error reply. */
redisReply *bench_get_reply(redisContext *c);
void bench_flushall(redisContext *c);
/* used_cpu_user + used_cpu_sys of the Redis server (INFO cpu), seconds. */
double bench_redis_cpu_s(redisContext *c);
long long bench_integer(redisContext *c, const char *fmt, const char *key);
/* CONFIG RESETSTAT: start counting INFO commandstats afresh. */
void bench_resetstat(redisContext *c);

/* Redis time by command (INFO commandstats), summed over runs. */
#define BENCH_MAX_CMDS 48
typedef struct cmdstats {
    size_t n;
    char name[BENCH_MAX_CMDS][48];
    double usec[BENCH_MAX_CMDS];
} cmdstats;
/* Add the counts since the last bench_resetstat() (the bench's own
 * commands left out). */
void cmdstats_collect(redisContext *c, cmdstats *cs);
/* As notes and "WHAT_redis_us_per_msg_COMMANDSUFFIX" keys.  direct lists
 * the commands the client sent itself (space-separated); every other one
 * ran inside a script, so the scripts' own time (the interpreter, argument
 * handling) is the scripts' time minus those:
 * "WHAT_redis_us_per_msg_script_onlySUFFIX". */
void cmdstats_print(const cmdstats *cs, const char *what, const char *suffix, long msgs,
                    const char *direct);
/* The name of streamtx's KIND key ("meta" or "state") of (stream, group). */
void bench_key(char *buf, size_t cap, const char *stream, const char *group, const char *kind);

/* ---- workload.c: the inventory workload, its model and its checks ------- */

#define INV_INITIAL 100       /* stock of a SKU never seen before */
#define INV_THRESHOLD 10      /* alert when stock falls from above to at or below */
#define INV_MAX_QTY 1000000
#define WL_SKU_MAX 32         /* longest SKU name the bench uses, with NUL */

typedef struct wl_gen {
    uint64_t s;
    uint32_t nskus;
} wl_gen;

typedef struct wl_entry {
    uint32_t sku;
    int restock;
    int64_t qty;
} wl_entry;

/* Deterministic: the same seed gives the same entries to every contender. */
void wl_gen_init(wl_gen *g, uint32_t nskus, uint64_t seed);
void wl_next(wl_gen *g, wl_entry *e);
/* "sku%07u" into out; returns the length. */
size_t wl_sku_name(char out[WL_SKU_MAX], uint32_t sku);

/* What the stock of every SKU and the number of alerts must be after the
 * entries applied to the model have been processed exactly once. */
typedef struct wl_model {
    int64_t *stock;
    unsigned char *present;   /* the key exists in the state hash */
    uint32_t nskus;
    uint64_t crossings;
    uint64_t present_count;
} wl_model;

void wl_model_init(wl_model *m, uint32_t nskus);
void wl_model_free(wl_model *m);
void wl_model_apply(wl_model *m, const wl_entry *e);
/* XADD n entries of g to stream (pipelined), applying each to m when m is
 * not NULL. */
void wl_preload_stream(redisContext *c, const char *stream, wl_gen *g, long n, wl_model *m);
/* HSET keys sku0..sku(nkeys-1) = msgpack INV_INITIAL into the hash state_key,
 * in pipelined pages of 1000 fields; marks them present in m (if not NULL). */
void wl_preload_state(redisContext *c, const char *state_key, uint32_t nkeys, wl_model *m);
/* Compare the state hash (every field when full, else only HLEN) and the
 * length of the alert stream with m.  0 when they agree, else -1 and why. */
int wl_verify(redisContext *c, const char *state_key, const char *alerts, const wl_model *m,
              int full, char *why, size_t cap);

/* ---- inventory.c: the inventory logic ---------------------------------- */

/* The new stock after one entry; returns 1 when it crosses the threshold
 * downwards (from above to at or below), i.e. when an alert is due. */
int inv_step(int64_t before, int restock, int64_t qty, int64_t *after);
/* qty: plain digits, 1..INV_MAX_QTY.  0 or -1. */
int inv_parse_qty(const char *s, size_t len, int64_t *out);
/* Fields of a raw XREAD/XREADGROUP entry ([id, [f, v, ...]]): 0 or -1. */
int inv_parse_raw(const redisReply *entry, const char **id, const char **sku, size_t *sku_len,
                  int *restock, int64_t *qty);

/* Collects end-to-end latencies (latency mode): the handler notes the "t"
 * field of each entry it accepts; the poll loop turns them into latencies
 * once the commit has landed. */
typedef struct lat_recorder {
    uint64_t *pending_t;      /* produce times of entries handled, not yet committed */
    size_t npending, cap_pending;
    uint64_t *lat_us;         /* produce -> commit, microseconds */
    size_t nlat, cap_lat;
} lat_recorder;

typedef struct inv_ctx {
    const char *alerts;       /* the alert stream */
    lat_recorder *lat;        /* NULL unless measuring end-to-end latency */
    const char *forward;      /* publish-heavy: one publish per entry to this stream, or NULL */
} inv_ctx;

/* The library handler: the logic of examples/inventory.c. */
int inv_handle(const stx_msg *msg, stx_txn *txn, void *user_data);

/* ---- skumap.c: client-side state of the raw-hiredis contenders ---------- */

typedef struct skumap_slot {
    char key[WL_SKU_MAX];
    uint32_t len;             /* 0: empty slot */
    int64_t stock;
    uint64_t mark;            /* last batch that changed it */
} skumap_slot;

typedef struct skumap {
    skumap_slot *slots;
    size_t cap, count;
} skumap;

void skumap_init(skumap *m);
void skumap_free(skumap *m);
/* The slot of key, created with stock INV_INITIAL when new. */
skumap_slot *skumap_get(skumap *m, const char *key, size_t len);

/* ---- library_run.c: the streamtx processor on the workload ------------- */

typedef struct lib_run {
    const char *stream, *group, *alerts;
    long batch;
    const char *snapshot_dir; /* NULL: no snapshot */
    const char *forward;      /* publish-heavy workload (inv_ctx.forward), or NULL */
    const char *overlap;      /* the "overlap" setting, or NULL for the default */
} lib_run;

typedef struct run_result {
    long messages;
    double seconds;           /* first poll (or first read) to last commit */
    double client_cpu_s;      /* CPU of this process in that time */
    double redis_cpu_s;       /* CPU of redis-server in that time */
    stx_stats stats;          /* library runs only */
} run_result;

/* A processor for r with the inventory handler (dies on error). */
stx_processor *lib_new(const bench_env *env, const lib_run *r, inv_ctx *ctx);
/* lib_new() and stx_processor_start(). */
stx_processor *lib_open(const bench_env *env, const lib_run *r, inv_ctx *ctx);
/* Poll until n more messages are committed; the time from the first poll
 * to the last commit, CPU figures and this drain's counters go to out.
 * Resets INFO commandstats first (ctl is the bench's own connection). */
void lib_drain(stx_processor *p, redisContext *ctl, long n, run_result *out);
/* lib_open(), lib_drain(), free: a processor for one run. */
void lib_process(const bench_env *env, redisContext *ctl, const lib_run *r, long n,
                 run_result *out);
/* ---- tally.c: figures summed over interleaved rounds --------------------- */

#define BENCH_MAX_ROUNDS 64

typedef struct tally {
    long messages;
    double seconds, client_cpu_s, redis_cpu_s;
    uint64_t commits;
    int rounds;
    double mps[BENCH_MAX_ROUNDS];       /* msgs/s of each round */
    uint64_t p50[BENCH_MAX_ROUNDS], p99[BENCH_MAX_ROUNDS];
    int mismatches;                     /* rounds whose result differed from the model */
    cmdstats cs;
} tally;

/* Add a run; collects INFO commandstats since the run's reset from c. */
void tally_add(tally *t, const run_result *r, redisContext *c);
double tally_mps(const tally *t);       /* all messages / all seconds */
/* "WHAT_figureSUFFIX" keys (e.g. lib_msgs_per_s_b16) and a note. */
void tally_print(const tally *t, const char *what, const char *suffix, const char *direct);
/* Median of a[i] / b[i] over n rounds; min and max too. */
void ratio_spread(const double *a, const double *b, int n, double *median, double *min,
                  double *max);

/* ---- limit.c, naive.c: the same work without the library ---------------- */

/* XREADGROUP + one EVALSHA per batch, pipelined; the group must exist.
 * forward: also one XADD per entry to that stream (publish-heavy), or NULL.
 * overlap: handle batch k+1 while the commit of batch k runs (the reads go
 * one batch further ahead), the design a library would need to overlap
 * its work with Redis'. */
void limit_process(redisContext *c, const char *stream, const char *group, const char *alerts,
                   const char *forward, long batch, long n, int overlap, run_result *out);
/* The reference design: XREADGROUP COUNT 128, then per entry one pipelined
 * MULTI / XACK / SET whole state / SET offset / [XADD] / EXEC round trip;
 * the group must exist. */
void naive_process(redisContext *c, const char *stream, const char *group, const char *state_key,
                   const char *offset_key, const char *alerts, long n, run_result *out);

/* ---- the modes (compare.c, state_size.c, latency.c, bench.c) ------------ */

typedef struct bench_opts {
    long messages;            /* per throughput figure, summed over the rounds */
    long rounds;              /* interleaved rounds per figure */
    long naive_messages;
    long state_keys;
    long latency_rate;        /* messages per second */
    long latency_seconds;
    long batch;               /* callgrind mode */
} bench_opts;

int mode_compare(const bench_env *env, const bench_opts *o);
int mode_state(const bench_env *env, const bench_opts *o);
int mode_latency(const bench_env *env, const bench_opts *o);
int mode_drain(const bench_env *env, const bench_opts *o);
int mode_outbox(const bench_env *env, const bench_opts *o);
/* partitions.c: members over 1-8 partitions, on one Redis and on a cluster
 * (cluster_ports: its masters, comma-separated; NULL: one Redis only). */
int mode_partitions(const bench_env *env, const bench_opts *o, const char *cluster_ports);

#endif
