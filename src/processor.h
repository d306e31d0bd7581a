/* Internal layout of the processor, its messages and its transaction,
 * shared by processor.c, message.c and txn.c. */
#ifndef STX_PROCESSOR_H
#define STX_PROCESSOR_H

#include <stdarg.h>
#include <stdatomic.h>
#include <stddef.h>
#include <stdint.h>
#include <hiredis/hiredis.h>

#include "config.h"
#include "connection.h"
#include "keys.h"
#include "scripts.h"
#include "snapshot.h"
#include "statemap.h"
#include "streamtx.h"

struct stx_msg {
    const char *id;
    stx_id idv;
    const char *stream;
    const redisReply *fields;   /* array of 2n strings; NULL: entry was deleted */
    uint64_t delivery_count;
    int active;                 /* inside its handler call; getters refuse otherwise */
};

/* Decode one entry of an XREADGROUP reply ([id, [field, value, ...]] or
 * [id, nil] for an entry deleted while pending).  Checks every type and
 * count; max_fields bounds the pairs.  STX_OK, STX_EDECODE (malformed, with
 * the reason in why), STX_ELIMIT (too many fields or bytes). */
int stx_msg_decode(struct stx_msg *m, const redisReply *entry, const char *stream,
                   long max_fields, long long max_bytes, const char **why);
/* stx_msg_get() without the checks, for the library's own use of a message
 * it knows to be valid (the envelope of a publish).  name must not be NULL. */
const char *stx_msg_find(const struct stx_msg *msg, const char *name, size_t *len);

/* One staged XADD: ptrs[2i] is a field name, ptrs[2i+1] its value; the
 * arrays, the stream name and the bytes all live in mem (one allocation). */
typedef struct stx_pub {
    char *stream;
    size_t npairs;
    size_t *lens;               /* 2 * npairs lengths */
    char **ptrs;                /* 2 * npairs pointers into mem */
    char *mem;
} stx_pub;

typedef struct stx_pubs {
    stx_pub *v;
    size_t n, cap;
} stx_pubs;

void stx_pubs_truncate(stx_pubs *p, size_t n);
void stx_pubs_free(stx_pubs *p);

struct stx_txn {
    stx_processor *p;
    const struct stx_msg *msg;
    stx_statemap overlay;       /* this message's changes */
    const stx_statemap *batch;  /* changes of the batch so far */
    const stx_statemap *base;   /* committed state */
    stx_pubs *pubs;             /* the batch's publishes; this message's start at pubs_mark */
    size_t pubs_mark;
    char failmsg[512];
    long retry_ms;              /* stx_txn_retry_after(), -1: the policy's delay */
    int active;                 /* inside a handler or migration call; calls refuse otherwise */
    unsigned char scratch[16];
};

void stx_txn_reset(struct stx_txn *t, const struct stx_msg *msg);
void stx_txn_release(struct stx_txn *t);

#define STX_LATENCY_BUCKETS 128

struct stx_processor {
    struct stx_config conf;
    stx_conn conn;
    stx_scripts scripts;
    char *key_meta, *key_state, *key_dlq;
    char *consumer;
    char *identity;             /* meta key and lineage: whose snapshot this is */
    char lineage[33];
    uint64_t epoch, seq;
    stx_id offset;
    char offset_str[STX_ID_MAX];
    int started, fenced;
    int connected_once;         /* Redis was reached at least once */
    int in_doubt;               /* a commit was sent but its reply lost */
    stx_id in_doubt_id;         /* its last id */
    size_t in_doubt_count;
    int need_reload;            /* the in-memory state cannot be trusted */
    uint64_t retry_at_us;
    uint64_t next_read_us;      /* batch_delay_ms: no new read before this */
    uint64_t rng;               /* jitter of retry delays */
    char conn_name[160];       /* monotonic time before which a failed entry is not retried */
    int reading_pending;        /* re-reading the own pending list after cursor */
    stx_id cursor;
    stx_statemap state;
    stx_statemap batch;
    stx_pubs pubs;
    struct stx_txn txn;
    stx_snapshot *snap;
    stx_argv argv;
    stx_argv read_argv;         /* the read script's, apart so it can be pipelined */
    char read_cursor[STX_ID_MAX];
    redisReply *prefetched;     /* a read sent with the last commit, not used yet */
    atomic_int stop;
    stx_stats stats;
    /* Commit latencies in log-spaced buckets: bucket b covers
     * [2^(b/4), 2^((b+1)/4)) microseconds, so percentiles are within 19%. */
    uint64_t latency[STX_LATENCY_BUCKETS];
    char errmsg[1024];
    char logbuf[1200];
};

/* Set p->errmsg (printf-style) and return code. */
int stx_fail(stx_processor *p, int code, const char *fmt, ...)
#if defined(__GNUC__)
    __attribute__((format(printf, 3, 4)))
#endif
    ;
/* EVALSHA argument building on p->argv: begin reserves the three head
 * slots, str adds a string that outlives the call. */
void stx_eval_begin(stx_processor *p);
void stx_eval_str(stx_processor *p, const char *s);
/* Script replies: {"STATUS", ...} arrays. */
int stx_reply_is(const redisReply *r, const char *status);
int stx_reply_u64(const redisReply *r, size_t i, uint64_t *out);
/* The statuses every script shares (FENCED, NOGROUP, WRONGTYPE, BADARGS). */
int stx_script_status(stx_processor *p, const redisReply *r, const char *what);
void stx_set_offset(stx_processor *p, stx_id id);
/* Record the current seq and offset in the LMDB snapshot (no state change). */
void stx_snapshot_meta(stx_processor *p);
/* Claim entries pending under other consumers and rewind (a BEHIND answer). */
int stx_claim_behind(stx_processor *p);
/* Move entry id to the dead-letter stream (dlq.c).  STX_OK, 1 when it must
 * wait (entries below it were claimed; read again), or an error. */
int stx_dead_letter(stx_processor *p, const char *id, const char *reason, const char *error,
                    uint64_t attempts);

void stx_log(stx_processor *p, stx_log_level level, const char *fmt, ...)
#if defined(__GNUC__)
    __attribute__((format(printf, 3, 4)))
#endif
    ;

#endif
