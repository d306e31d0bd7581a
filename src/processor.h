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
    size_t bytes;               /* of its fields */
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
    size_t source;              /* index in the batch of the entry that staged it */
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
    const stx_statemap *inflight; /* changes of the commit in flight (overlap) */
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

/* Where the processor stands.  stx_recover() brings it to RUNNING from any
 * phase but FENCED; every failure moves it back to the phase whose work
 * must be done again, so a step cut in the middle is redone, never skipped.
 *
 *   NEW ──take epoch──▶ EPOCH_TAKEN ──load state──▶ LOADED ──claim──▶ RUNNING
 *                            ▲                                       │
 *                            └── state not Redis' (reload) ──────────┤
 *   IN_DOUBT ◀── a write whose outcome is unknown ───────────────────┘
 *      └── reconnect, retake the epoch, settle by seq/offset/writer ──▶ LOADED
 *   FENCED: another processor or an operator took (stream, group); final.
 *   Redis lost the meta hash or went back in time: back to NEW. */
typedef enum stx_phase {
    STX_PHASE_NEW,
    STX_PHASE_EPOCH_TAKEN,      /* epoch held; the state cache is not Redis' state */
    STX_PHASE_LOADED,           /* the cache is Redis' state at seq */
    STX_PHASE_RUNNING,
    STX_PHASE_IN_DOUBT,         /* a write was sent; whether it ran is unknown */
    STX_PHASE_FENCED
} stx_phase;

/* What a write in doubt would have done, to settle it after the epoch is
 * retaken (nothing sent on the old connection can run after that). */
enum { STX_DOUBT_COMMIT, STX_DOUBT_DEAD_LETTER, STX_DOUBT_MIGRATE };
struct stx_doubt {
    int kind;
    stx_id offset;              /* the offset it moves to */
    size_t count;               /* entries it commits */
    int reload;                 /* Redis failed inside the script: reload whatever happened */
    char token[33];             /* the token it was sent with */
    /* A commit sent behind it (overlap), in doubt with it: it can have
     * landed only if this one did; its changes are in p->doubt_next. */
    int two;
    stx_id offset2;
    size_t count2;
};

/* A commit sent and not yet answered while the next batch is handled
 * (conf.overlap).  Its EVALSHA (p->inflight_argv) and what that points
 * into stay as they were sent until it is settled (its entries' reply,
 * p->inflight_state, p->inflight_blocks, its publishes in
 * p->inflight_pubs, whose target names are its KEYS): a NOSCRIPT answer
 * sends it again. */
struct stx_inflight {
    int active;
    int reads;                  /* reads sent behind it, their replies after its own */
    stx_id offset;              /* its last id: the offset it moves to */
    size_t count;               /* entries it commits */
    size_t n_out;               /* publishes it puts in the outbox */
    size_t numkeys;             /* of the EVALSHA in p->argv */
    uint64_t sent_us;
    redisReply *owner;          /* the read its entries came from */
};

/* Script replies, parsed once. */
typedef enum stx_status {
    STX_ST_OK, STX_ST_FENCED, STX_ST_SEQ, STX_ST_DUP, STX_ST_GAP, STX_ST_NOGROUP,
    STX_ST_WRONGTYPE, STX_ST_FULL, STX_ST_BADARGS, STX_ST_SCHEMA, STX_ST_RANGE, STX_ST_MALFORMED
} stx_status;

struct stx_processor {
    struct stx_config conf;
    stx_conn conn;
    stx_scripts scripts;
    char *key_meta, *key_state, *key_dlq, *key_attempts;
    char *consumer;
    stx_phase phase;
    char run_id[33];            /* this handle: attempts are counted across runs */
    char token[33];             /* proves the epoch is ours to every writing script */
    char writer[33];            /* token of the write the state cache reflects */
    char lineage[33];
    uint64_t epoch, seq, schema;
    stx_id offset;
    char offset_str[STX_ID_MAX];
    int connected_once;         /* Redis was reached at least once */
    int need_retake;            /* a new connection: retake the epoch before anything else */
    struct stx_doubt doubt;
    uint64_t retry_at_us;
    uint64_t next_read_us;      /* batch_delay_ms: no new read before this */
    uint64_t rng;               /* jitter of retry delays, tokens */
    char conn_name[160];
    int reading_pending;        /* recovery: reading the stream after the cursor */
    stx_id cursor;
    int history_done;           /* history.c: the source holds nothing more for this recovery */
    char failed_id[STX_ID_MAX]; /* entry whose handler failed in this run ("" none) */
    long read_count;            /* COUNT of the next read, within max_batch_bytes */
    stx_statemap state;
    stx_statemap batch;
    stx_statemap inflight_state; /* changes of the commit in flight */
    struct stx_inflight inflight;
    stx_pubs pubs;
    stx_pubs inflight_pubs;     /* publishes of the commit in flight */
    stx_statemap doubt_next;    /* changes of the second commit in doubt (struct stx_doubt) */
    stx_argv inflight_argv;     /* its EVALSHA */
    unsigned char *inflight_blocks; /* its publishes, msgpack-encoded */
    size_t inflight_blocks_cap;
    unsigned char *pub_blocks;  /* the commit's publishes, msgpack-encoded (commit.c) */
    size_t pub_blocks_len, pub_blocks_cap;
    size_t batch_bytes;         /* staged by the batch so far (state and publishes) */
    struct stx_txn txn;
    struct stx_msg *msgs;       /* owned for p's lifetime: a late stx_msg_* call reads valid memory */
    struct stx_msg **msg_ptrs;
    size_t msgs_cap;
    stx_snapshot *snap;
    stx_argv argv;
    stx_argv read_argv;         /* the read's, apart so it can be pipelined */
    char read_cursor[STX_ID_MAX];
    /* Reads sent behind commits, answered and not handled yet, oldest
     * first: the read behind a commit, and when nothing was in hand as it
     * went out, a second one (overlap: the batch handled while the next
     * commit runs must be in hand before that commit is sent). */
    redisReply *prefetched[2];
    size_t nprefetched;
    atomic_int stop;
    stx_stats stats;
    struct stx_heartbeat *hb;   /* heartbeat.c; NULL until the first one */
    struct stx_relay *relay;    /* relay.c; NULL until the outbox is first used */
    /* Commit latencies in log-spaced buckets: bucket b covers
     * [2^(b/4), 2^((b+1)/4)) microseconds, so percentiles are within 19%. */
    uint64_t latency[STX_LATENCY_BUCKETS];
    /* commit_wait_replicas (replwait.c): when it last logged, and the
     * count of unacknowledged commits then. */
    uint64_t wait_logged_us, wait_logged_count;
    char errmsg[1024];
    char logbuf[1200];
};

/* After a commit that landed: WAIT for conf.commit_wait_replicas replicas
 * (when set), counting and logging the commits they did not acknowledge in
 * time.  The commit stands either way. */
void stx_commit_wait(stx_processor *p);

/* Returned inside the library when the poll loop must go round again
 * (read again, or recover first). */
#define STX_AGAIN (-1000)

/* processor.c */
int stx_fail(stx_processor *p, int code, const char *fmt, ...)
#if defined(__GNUC__)
    __attribute__((format(printf, 3, 4)))
#endif
    ;
void stx_log(stx_processor *p, stx_log_level level, const char *fmt, ...)
#if defined(__GNUC__)
    __attribute__((format(printf, 3, 4)))
#endif
    ;
uint64_t stx_monotonic_us(void);
void stx_sleep_ms(stx_processor *p, long ms);
void stx_random_hex(char *out, size_t nbytes);
void stx_set_offset(stx_processor *p, stx_id id);
void stx_record_latency(stx_processor *p, uint64_t us);

/* recover.c: the phases. */
int stx_recover(stx_processor *p);
/* A write was sent and its reply lost (or Redis failed inside the script):
 * close the connection and settle it on recovery.  Returns code. */
int stx_enter_doubt(stx_processor *p, int kind, stx_id offset, size_t count, int reload,
                    int code, const char *what);
/* Whether a failed EVALSHA of a writing script may have run (wholly or in
 * part): the connection broke, the reply timed out, or Redis failed inside it. */
int stx_write_outcome_unknown(const stx_processor *p, int rc);
/* The refusals writing scripts share (FENCED, SEQ, NOGROUP, WRONGTYPE,
 * FULL, BADARGS): sets the phase and returns an error or STX_AGAIN. */
int stx_refusal(stx_processor *p, const redisReply *r, const char *what);
stx_status stx_reply_status(const redisReply *r);
const char *stx_reply_str(const redisReply *r, size_t i);
int stx_reply_u64(const redisReply *r, size_t i, uint64_t *out);

/* cache.c: the in-memory state, loaded from the LMDB snapshot or Redis. */
int stx_cache_load(stx_processor *p);
/* The changes of a commit that landed (p->batch, or p->inflight_state)
 * into the state and the snapshot. */
void stx_cache_apply(stx_processor *p, const stx_statemap *changes);
void stx_cache_discard(stx_processor *p);   /* drop the batch */
void stx_snapshot_meta(stx_processor *p);   /* seq, offset and writer into the snapshot */
int stx_merge_message(stx_processor *p);    /* the handler's changes into the batch */
void stx_add_changes(stx_processor *p, size_t *puts, size_t *dels);

/* fetch.c: reading. */
int stx_read_batch(stx_processor *p, redisReply **owner, const redisReply **entries,
                   const redisReply **counts);
void stx_build_new_read(stx_processor *p, long block_ms);
void stx_rewind(stx_processor *p);          /* read again from the offset */
void stx_drop_prefetched(stx_processor *p);
/* Queue the reply of a read sent behind a commit (dropped when full). */
void stx_prefetch_push(stx_processor *p, redisReply *r);
/* Whether a queued read brought entries. */
int stx_prefetched_entries(const stx_processor *p);
int stx_claim_pending(stx_processor *p);
int stx_ack_committed_pending(stx_processor *p);

/* history.c: in recovery, the next batch from the history source when the
 * stream no longer holds the entries after the cursor: 1 with the batch
 * (as stx_read_batch()), 0 when the stream holds what comes next (or no
 * source is set), or a failure. */
int stx_history_read(stx_processor *p, redisReply **owner, const redisReply **entries,
                     const redisReply **counts);

/* commit.c: the writing scripts.  stx_commit() commits msgs[0..n) and waits
 * for the reply (with the next read behind it when prefetch allows).
 * stx_commit_overlap() sends the commit with reads behind it and returns,
 * leaving it in flight (taking *owner, the read msgs came from): the caller
 * handles the batch already in hand (p->prefetched) on top of its changes
 * meanwhile.  stx_commit_settle() reads the replies of a commit in flight
 * and its reads (STX_OK when there is none); when it did not land, what
 * was handled on top of it is dropped and reading rewinds.
 * Both commit calls settle a commit in flight first, and so must every
 * other command of the processor (nothing else is sent while one is). */
int stx_commit(stx_processor *p, struct stx_msg *const *msgs, size_t n, int prefetch);
int stx_commit_overlap(stx_processor *p, struct stx_msg *const *msgs, size_t n,
                       redisReply **owner);
int stx_commit_settle(stx_processor *p);
/* Whether the commit of a whole batch may be left in flight now. */
int stx_overlap_allowed(const stx_processor *p);
int stx_dead_letter(stx_processor *p, const struct stx_msg *m, const char *reason,
                    const char *error, uint64_t attempts);
int stx_migrate(stx_processor *p, uint64_t from);
/* EVALSHA argument building on p->argv: begin reserves the three head
 * slots, str adds a string that outlives the call. */
void stx_eval_begin(stx_processor *p);
void stx_eval_str(stx_processor *p, const char *s);

/* relay.c: the outbox.  Relay a bounded part of it (after the commits of a
 * poll); whether it reached outbox_max (then it reports, waits a little and
 * returns 1: the poll reads nothing); count n entries a commit added. */
void stx_outbox_poll(stx_processor *p);
int stx_outbox_full(stx_processor *p);
int stx_outbox_at_max(const stx_processor *p);  /* stx_outbox_full() without the wait */
/* The outbox holds a relay step's worth (relay_batch) or reached
 * outbox_max: the poll should end so that the relay runs. */
int stx_outbox_owed(const stx_processor *p);
void stx_outbox_committed(stx_processor *p, size_t n);

/* handle.c: handling a batch. */
int stx_poll_once(stx_processor *p);

#endif
