/* Local LMDB snapshot of a processor's state.  Redis is the source of truth;
 * the snapshot only saves a restart from reading the whole state back.  It
 * is trusted only when its identity and commit sequence match Redis, and
 * every record carries a checksum, so a stale or damaged snapshot is
 * detected and rebuilt, never used. */
#ifndef STX_SNAPSHOT_H
#define STX_SNAPSHOT_H

#include <stddef.h>
#include <stdint.h>

typedef struct stx_snapshot stx_snapshot;

/* Longest identity a meta record holds (bytes, without the NUL). */
#define STX_SNAP_MAX_IDENTITY 65536u

/* open(): the snapshot of this (stream, group) is open elsewhere, in
 * another process or through another handle of this one.  Internal to the
 * library (the processor logs it and goes on without a snapshot); outside
 * the STX_E* range of streamtx.h. */
#define STX_SNAPSHOT_LOCKED (-1001)

/* Open the snapshot of (stream, group) in dir (creating dir and the pair's
 * environment if needed; many pairs may share one dir, each has its own
 * environment and trusts only its own records, see snapshot.c).  The pair
 * is locked for the life of the handle: a second open of the same pair,
 * from any process including this one, fails at once with
 * STX_SNAPSHOT_LOCKED and a message naming stream and group.  The lock
 * goes with close() or with the process.  map_size_mb 0 means
 * the default (1024).  sync_mode: 0 = fsync data, not meta, on each commit
 * (a system crash can lose the last commits, which the seq check detects);
 * 1 = full fsync; 2 = no fsync.  On failure *out is NULL and err holds the
 * reason.  A directory whose files LMDB cannot open (corrupt, wrong format)
 * is wiped and created anew: the result is an empty snapshot. */
int stx_snapshot_open(stx_snapshot **out, const char *dir, const char *stream,
                      const char *group, unsigned map_size_mb, int sync_mode, char *err,
                      size_t errlen);

/* The environment directory of (stream, group) inside dir (malloc'd; NULL
 * when out of memory).  For tools and tests. */
char *stx_snapshot_env_dir(const char *dir, const char *stream, const char *group);
void stx_snapshot_close(stx_snapshot *s); /* NULL-safe */

/* Message of the last error on s. */
const char *stx_snapshot_errmsg(const stx_snapshot *s);

/* Read the meta record.  identity (NUL-terminated, at most idcap-1 bytes;
 * STX_SNAP_MAX_IDENTITY + 1 always suffice),
 * seq and offset (at most offcap-1 bytes) of the last snapshot commit.
 * STX_OK, STX_ENOTFOUND (empty snapshot), STX_EDECODE (meta record damaged),
 * STX_ESNAPSHOT (LMDB error). */
int stx_snapshot_read_meta(stx_snapshot *s, char *identity, size_t idcap,
                           uint64_t *seq, char *offset, size_t offcap);

/* Call cb for every state record (keys of 1 to 511 bytes in key order,
 * then empty and longer keys in no given order), after checking its
 * checksum and that the value is one valid msgpack object.  A non-zero
 * return of cb stops the walk and is returned.  STX_EDECODE on the first
 * damaged record (nothing after it is passed on), STX_ESNAPSHOT on LMDB errors. */
typedef int (*stx_snapshot_record_fn)(void *ud, const void *key, size_t key_len,
                                      const void *value, size_t value_len);
int stx_snapshot_load(stx_snapshot *s, stx_snapshot_record_fn cb, void *ud);

/* Number of state records (to size the table they are loaded into). */
int stx_snapshot_count(stx_snapshot *s, size_t *count);

/* Write transaction: begin (clear = drop every record and the meta first),
 * put/del records, then commit with the new meta, or abort.  Keys are any
 * bytes of any length, the empty key included; identity is at most
 * STX_SNAP_MAX_IDENTITY bytes. */
int stx_snapshot_begin(stx_snapshot *s, int clear);
int stx_snapshot_put(stx_snapshot *s, const void *key, size_t key_len,
                     const void *value, size_t value_len);
int stx_snapshot_del(stx_snapshot *s, const void *key, size_t key_len);
int stx_snapshot_commit(stx_snapshot *s, const char *identity, uint64_t seq,
                        const char *offset);
void stx_snapshot_abort(stx_snapshot *s);

/* Decode one stored state record value (checksum over key and value, then
 * the msgpack value).  Exposed for the fuzz target. STX_OK/STX_EDECODE. */
int stx_snapshot_decode_record(const void *key, size_t key_len, const void *rec,
                               size_t rec_len, const void **value, size_t *value_len);
/* Decode a long-key record (key and value inside, see snapshot.c).  Exposed
 * for the fuzz target.  STX_OK/STX_EDECODE. */
int stx_snapshot_decode_long_record(const void *rec, size_t rec_len, const void **key,
                                    size_t *key_len, const void **value, size_t *value_len);
/* For tests: AND the hash that places empty and long keys with mask (0
 * puts them all under one hash).  Set it before the first write of a
 * handle and keep it: records written under another mask are not found
 * again by put and del. */
void stx_snapshot_set_long_hash_mask(stx_snapshot *s, uint64_t mask);
/* Decode the meta record.  Exposed for the fuzz target. */
int stx_snapshot_decode_meta(const void *rec, size_t rec_len, char *identity, size_t idcap,
                             uint64_t *seq, char *offset, size_t offcap);

#endif
