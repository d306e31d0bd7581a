/* streamtx archive: the history of a stream in PostgreSQL, written exactly
 * once, and readers that join it to what Redis still holds.
 *
 * A library of its own (libstreamtx-archive, pkg-config streamtx-archive)
 * so that libstreamtx does not depend on libpq: only programs that archive
 * link it.  It uses nothing but the public API of streamtx.h.
 *
 * Threads: none.  A handle is used by one thread at a time; only
 * stx_archive_stop() may be called from another thread or a signal handler.
 */
#ifndef STREAMTX_ARCHIVE_H
#define STREAMTX_ARCHIVE_H

#include <stddef.h>
#include <stdint.h>

#include "streamtx.h"

#ifdef __cplusplus
extern "C" {
#endif

/** @defgroup archive Archive: the stream's history in PostgreSQL
 *
 * Schema (version 1, created by stx_archive_migrate(), never implicitly):
 *
 *   stx_archive_version (version int PRIMARY KEY, applied_at timestamptz)
 *   stx_archive_entries (stream text, ms bigint, seq bigint,
 *                        names bytea[], vals bytea[],
 *                        type text, key text, created_at bigint,
 *                        archived_at timestamptz,
 *                        PRIMARY KEY (stream, ms, seq))
 *     indexes (stream, type, ms), (stream, key, ms), (stream, created_at)
 *   stx_archive_offsets (stream text PRIMARY KEY, ms bigint, seq bigint,
 *                        archived bigint, updated_at timestamptz)
 *
 * names[i] and vals[i] are the i-th field of the entry, byte for byte.
 * type, key and created_at copy the envelope fields of streamtx.h when
 * present (type and key only when valid UTF-8 without NUL bytes,
 * created_at only when a decimal integer); the fields keep them anyway.
 * Ids above 2^63-1 (ms or seq) do not fit a bigint: such an entry stops
 * the archiver with STX_EINVAL.
 *
 * Exactly once: a batch's rows and the stream's new offset are written in
 * one PostgreSQL transaction (COPY, then an UPDATE of stx_archive_offsets
 * whose row is locked first, FOR UPDATE), and the entries are acknowledged
 * in Redis (XACK, group "stx-archive") only after the COMMIT.  On start the
 * archiver moves the group to PostgreSQL's offset (XGROUP SETID) and
 * acknowledges what PostgreSQL already holds, so a crash at any moment
 * neither loses nor repeats a row; the primary key is a second guard.
 * @{ */

/** An archive: one PostgreSQL connection. */
typedef struct stx_archive stx_archive;

/** The schema version this library writes and reads. */
#define STX_ARCHIVE_SCHEMA_VERSION 1
/** The consumer group the archiver reads through. */
#define STX_ARCHIVE_GROUP "stx-archive"

/** Connect to PostgreSQL.  conninfo is a libpq connection string or URI
 * (postgresql://user:pass@host:port/db?sslmode=require ...; NULL or "" for
 * libpq's defaults and PG* environment variables).  *out is set even on
 * failure (unless out of memory) so stx_archive_errmsg() can tell why;
 * free it with stx_archive_close().  The schema is not checked here.
 * @return STX_OK; STX_ECONN (unreachable); STX_EAUTH (authentication
 * refused); STX_ENOMEM; STX_EINVAL (out NULL). */
STX_API int stx_archive_open(stx_archive **out, const char *conninfo);
/** Close and free.  NULL is a no-op. */
STX_API void stx_archive_close(stx_archive *a);
/** Message of the last failure on a ("" when none; a static text for NULL). */
STX_API const char *stx_archive_errmsg(const stx_archive *a);

/** The installed schema version in *version (0 when none is installed).
 * @return STX_OK, connection errors, STX_EARCHIVE. */
STX_API int stx_archive_schema(stx_archive *a, int *version);
/** Install or upgrade the schema to STX_ARCHIVE_SCHEMA_VERSION, one
 * transaction per version, under an advisory lock (two callers at once are
 * safe).  *from (if not NULL) gets the version found.
 * @return STX_OK; STX_ESCHEMA when the database holds a newer version;
 * connection errors; STX_EARCHIVE (e.g. no CREATE permission). */
STX_API int stx_archive_migrate(stx_archive *a, int *from);

/** Live counters of an archiver (plain data). */
typedef struct stx_archive_stats {
    uint64_t batches;           /**< committed batches */
    uint64_t entries;           /**< entries committed by this handle */
    uint64_t skipped;           /**< delivered entries PostgreSQL already held */
    uint64_t pg_reconnects;     /**< PostgreSQL connections re-opened */
    uint64_t errors;            /**< failed steps (retried by stx_archive_run) */
    uint64_t last_batch_us;     /**< COPY + UPDATE + COMMIT of the last batch */
    char offset[48];            /**< the archived offset ("" before the first step) */
    long long behind;           /**< entries not yet archived at the last progress
                                     call (-1: not known; see stx_archive_lag_get()) */
} stx_archive_stats;

/** Archive one batch of stream: read up to batch entries (0: 500; at most
 * 100000) through
 * the group, waiting up to block_ms for the first (0: do not wait), write
 * them and the offset in one transaction, then XACK them.  The first call
 * for a stream (and the first after a failure) creates the group if
 * needed and moves it to PostgreSQL's offset.  *archived (if not NULL)
 * gets the number of rows written.
 * @return STX_OK; STX_ESCHEMA (schema missing or of another version: run
 * stx_archive_migrate()); STX_ECONN/STX_ETIMEOUT (Redis or PostgreSQL
 * unreachable: retry); STX_EAUTH; STX_EARCHIVE; STX_EINVAL. */
STX_API int stx_archive_step(stx_archive *a, stx_client *c, const char *stream, size_t batch,
                             long block_ms, size_t *archived);
/** stx_archive_step() in a loop until stx_archive_stop(): retriable
 * failures (connection lost, PostgreSQL restarting) are retried with a
 * backoff from 50 ms doubling to 5 s; other failures end the loop.  With
 * once != 0 it returns when a step finds nothing new (caught up).
 * @return STX_OK (stopped or caught up) or the failure that ended it. */
STX_API int stx_archive_run(stx_archive *a, stx_client *c, const char *stream, size_t batch,
                            int once);
/** Live stats: stx_archive_run() calls fn (in its own, the caller's,
 * thread) about every interval_ms with the counters, `behind` freshly
 * read from Redis (one XINFO GROUPS per call); also while it waits to
 * retry.  fn NULL (or interval_ms <= 0) turns it off. */
STX_API void stx_archive_set_progress(stx_archive *a,
                                      void (*fn)(const stx_archive_stats *st, void *ud),
                                      void *ud, long interval_ms);
/** Make stx_archive_run() return after the current step (within about a
 * second).  Safe from another thread or a signal handler. */
STX_API void stx_archive_stop(stx_archive *a);
/** Counters of a (zeroed for NULL a). */
STX_API void stx_archive_stats_get(const stx_archive *a, stx_archive_stats *out);

/** How far the archive is behind the stream. */
typedef struct stx_archive_lag {
    char offset[48];            /**< archived offset ("0-0": none yet) */
    long long archived;         /**< rows archived for the stream */
    long long behind;           /**< entries not yet archived, -1 when unknown */
    int has_group;              /**< the archive group exists in Redis */
} stx_archive_lag;
/** The archive's lag for stream: the offset and row count from PostgreSQL,
 * and the entries not yet archived from Redis (the archive group's lag,
 * entries not yet delivered, plus its pending entries, delivered but not
 * yet committed and acknowledged; -1 when Redis cannot tell the lag or
 * there is no archive group).
 * @return STX_OK, connection errors, STX_ESCHEMA, STX_EARCHIVE. */
STX_API int stx_archive_lag_get(stx_archive *a, stx_client *c, const char *stream,
                                stx_archive_lag *out);

/** stx_read_range() that reads through the archive: when Redis has trimmed
 * entries after `after`, those are read from PostgreSQL and joined to what
 * Redis holds, in id order, each entry once (the archive's part ends at
 * the last archived id before the limit or `to`; Redis's part starts after
 * it).  STX_EWINDOW_EXPIRED only for entries neither holds.  a may be NULL:
 * then exactly stx_read_range().  Errors of the archive are reported on c
 * only through the return code; the message is stx_archive_errmsg(a).
 * @return as stx_read_range(), plus the archive's errors. */
STX_API int stx_archive_read_range(stx_archive *a, stx_client *c, const char *stream,
                                   const char *after, const char *to, size_t limit,
                                   stx_entries **out);
/** stx_read_time() through the archive (see stx_archive_read_range()). */
STX_API int stx_archive_read_time(stx_archive *a, stx_client *c, const char *stream,
                                  int64_t from_ms, int64_t to_ms, size_t limit,
                                  stx_entries **out);

/** A history source for the processor (stx_history_fn of streamtx.h), so
 * that a rebuild reads what Redis has trimmed from PostgreSQL:
 *
 *     stx_config_set_history(conf, stx_archive_history, archive);
 *
 * archive (an stx_archive *) must outlive the processor and is used by the
 * processor's thread only.  Returns the archived entries of stream after
 * `after` and before `before` ("": no bound), in id order, at most limit
 * (0: 1000).
 * @return STX_OK (possibly no entries); STX_EINVAL; STX_EINVALID_CURSOR;
 * the archive's errors (STX_ECONN and STX_ETIMEOUT: the processor retries). */
STX_API int stx_archive_history(const char *stream, const char *after, const char *before,
                                size_t limit, stx_entries **out, void *archive);

/** stx_group_reset() for a rebuild through the archive: a clearing reset
 * (STX_RESET_CLEAR_STATE) that stx_group_reset() refuses because entries
 * after `to` are gone from Redis goes ahead when the archive holds every
 * entry the stream lost (trimmed or deleted), checked by count: the rows
 * archived before the stream's first entry must be as many as the stream
 * lost (entries_added - length).  The processors must then read through
 * the archive: stx_config_set_history(conf, stx_archive_history, archive).
 * Without STX_RESET_CLEAR_STATE, or with STX_RESET_FORCE, it is
 * stx_group_reset().  The check and the reset are two steps: a trim
 * without --archived between them can still remove unarchived entries.
 * @return as stx_group_reset(); STX_EWINDOW_EXPIRED (the message says how
 * many entries the archive lacks) also when the archive does not hold them
 * all; the archive's errors. */
STX_API int stx_archive_reset(stx_archive *a, stx_client *c, const char *stream, const char *group,
                              const char *to, int flags);

/** stx_trim_safe() that also keeps every entry not yet archived: entries
 * after PostgreSQL's offset for stream stay.  Refused (STX_ENOTFOUND) when
 * nothing of the stream was ever archived.
 * @return as stx_trim_safe_bounded(), plus the archive's errors. */
STX_API int stx_archive_trim(stx_archive *a, stx_client *c, const char *stream, long long maxlen,
                             long long max_age_ms, long long *deleted);
/** @} */

#ifdef __cplusplus
}
#endif

#endif
