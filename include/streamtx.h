/*
 * streamtx: exactly-once stream processing on Redis Streams.
 *
 * A processor reads a Redis stream through a consumer group, calls the
 * user's handler for each message, and commits everything the handler did
 * (the acknowledgement, the stored offset, the changed state keys and the
 * staged downstream publishes) in one Lua script run by EVALSHA.  Either all
 * of it lands in Redis or none of it does.
 *
 * Conventions (as in LMDB and SQLite):
 *  - Functions return int codes: STX_OK (0) on success, a negative STX_E*
 *    code on failure.  stx_strerror() names any code; a handle also keeps the
 *    message of its last error (stx_processor_errmsg()).
 *  - Every object has one owner and one destructor; destructors accept NULL.
 *  - The library keeps no global state and starts no threads.  A processor
 *    runs in the caller's thread; stx_processor_stop() is the one call that is
 *    safe from another thread or from a signal handler.
 *  - Pointers handed to a handler (message fields, state values) are valid
 *    until the handler returns, unless a function says otherwise.  The
 *    message and the transaction themselves are valid only during the
 *    handler call: kept and used later, they are refused (NULL, 0 or
 *    STX_ESTATE), never undefined behaviour.
 *  - Every function checks its pointer arguments.  A NULL where an object
 *    is required gives STX_EINVAL, or for a function that returns no code
 *    the result documented next to it (NULL, 0, "" or a no-op); nothing is
 *    written through the other arguments then.  Output pointers marked
 *    "(if not NULL)" or "may be NULL" are optional.  A key or byte string
 *    given as (NULL, 0) is the empty one.
 */
#ifndef STREAMTX_H
#define STREAMTX_H

#include <stddef.h>
#include <stdint.h>

#ifdef __cplusplus
extern "C" {
#endif

/* Every function below is marked STX_API: the shared library is built with
 * -fvisibility=hidden, so only these names are exported (nm -D shows stx_*
 * and nothing else; tests/scripts/abi.sh checks it). */
#if defined(__GNUC__) || defined(__clang__)
#define STX_API __attribute__((visibility("default")))
#else
#define STX_API
#endif

#define STX_VERSION_MAJOR 0
#define STX_VERSION_MINOR 2
#define STX_VERSION_PATCH 0

/** @defgroup errors Error codes
 * Codes are negative; 0 is success.  Each code belongs to one class that
 * tells the caller what to do next (see stx_error_class_of()).
 * @{ */
#define STX_OK 0
#define STX_EINVAL -1          /**< invalid argument or configuration */
#define STX_ENOMEM -2          /**< out of memory */
#define STX_ECONN -3           /**< cannot connect, or the connection was lost */
#define STX_ETIMEOUT -4        /**< Redis did not answer within the timeout */
#define STX_EAUTH -5           /**< authentication or SELECT refused */
#define STX_EREDIS -6          /**< Redis answered with an unexpected error */
#define STX_EWRONGTYPE -7      /**< a key holds the wrong Redis type */
#define STX_EFENCED -8         /**< a newer processor took over (stream, group) */
#define STX_EHANDLER -9        /**< the handler reported a failure */
#define STX_EDECODE -10        /**< bytes that do not decode (msgpack, record) */
#define STX_ENOTFOUND -11      /**< no such key, field or entry */
#define STX_ESNAPSHOT -12      /**< the LMDB snapshot failed */
#define STX_ETYPE -13          /**< a state value is not of the requested type */
#define STX_ELIMIT -14         /**< a configured size or count limit was exceeded */
#define STX_ESTOPPED -15       /**< stx_processor_stop() was called */
#define STX_ESTATE -16         /**< call not valid in the object's current state */
#define STX_EREDIS_REFUSED -17 /**< Redis did not run the command for now: OOM, MISCONF,
                                    READONLY, NOREPLICAS, LOADING, BUSY, MASTERDOWN, or a
                                    blocking read cancelled (UNBLOCKED); retriable */
#define STX_ENOGROUP -18       /**< the consumer group or the stream vanished */
#define STX_ECONFLICT -19      /**< idempotency key reused with different content */
#define STX_EINVALID_CURSOR -20 /**< a cursor that is not a stream id */
#define STX_EWINDOW_EXPIRED -21 /**< entries after the cursor were trimmed away */
#define STX_ESCHEMA -22        /**< stored state has another schema version */
#define STX_ETLS -23           /**< TLS failed: settings (files), certificate check
                                    (expired, unknown CA, host name mismatch) or a
                                    handshake refused; fatal: retrying will not help */
#define STX_EARCHIVE -24       /**< the archive database (PostgreSQL) refused a
                                    statement (streamtx_archive.h) */
/** @} */

/** What the caller should do after an error. */
typedef enum stx_error_class {
    STX_CLASS_OK = 0,       /**< not an error */
    STX_CLASS_RETRIABLE,    /**< transient (connection, timeout, refused write): retry later */
    STX_CLASS_ABORTABLE,    /**< this message or call failed; the handle is still usable */
    STX_CLASS_FATAL         /**< the handle cannot go on (fenced, bad config, auth) */
} stx_error_class;

/** Static English name of a code (any int); never NULL, never to be freed. */
STX_API const char *stx_strerror(int code);

/** Class of a code: what to do next. */
STX_API stx_error_class stx_error_class_of(int code);

/** Library version as "MAJOR.MINOR.PATCH" (static string). */
STX_API const char *stx_version(void);

/** @defgroup config Configuration
 * A configuration is a set of string keys and values, checked as they are
 * set.  Unknown keys and invalid values are refused with STX_EINVAL and a
 * message in errbuf.  The keys are listed in README.md ("Configuration").
 *
 * The address: url is redis://[[user]:password@]host[:port][/db],
 * rediss://... (the same over TLS), or unix:///path/redis.sock[?db=N]
 * (also redis+unix://).  TLS keys (set them after url, which sets tls from
 * its scheme): tls (0/1), tls_verify (default 1: check the certificate chain
 * and that it names tls_server_name), tls_ca_file and tls_ca_dir (trusted
 * CAs; neither: the system's store), tls_cert_file and tls_key_file (a
 * client certificate, both or neither), tls_server_name (SNI and the name
 * checked; default: the host of the url; an IP address is checked against
 * the certificate's IP entries).  A TLS failure is STX_ETLS with a message
 * naming the check that failed.
 * @{ */
typedef struct stx_config stx_config;

/** New configuration holding the defaults; NULL only when out of memory.
 * The caller owns it and frees it with stx_config_free(). */
STX_API stx_config *stx_config_new(void);

/** Free a configuration.  NULL is a no-op. */
STX_API void stx_config_free(stx_config *conf);

/** Set key to value.  On error writes a message of at most errlen-1 bytes
 * into errbuf (which may be NULL) and leaves the configuration unchanged.
 * @return STX_OK, STX_EINVAL (unknown key, bad value, or conf, key or value
 * NULL), STX_ENOMEM. */
STX_API int stx_config_set(stx_config *conf, const char *key, const char *value,
                           char *errbuf, size_t errlen);

/** Current value of key as a string in buf (truncated to buflen-1 bytes,
 * always terminated).  Secrets (password) read back as "***".
 * @return STX_OK or STX_EINVAL for an unknown key (or conf, key or buf
 * NULL, or buflen 0). */
STX_API int stx_config_get(const stx_config *conf, const char *key, char *buf, size_t buflen);
/** @} */

/** @defgroup message Messages
 * A read-only view of one stream entry, valid during the handler call (a
 * view from stx_entries_at(): until stx_entries_free()).  A handler's
 * message used after the handler returned (a kept pointer, until the
 * processor is freed) reads as absent: the getters answer NULL, 0 or
 * STX_ESTATE, as they do for a NULL msg (STX_EINVAL there).
 * @{ */
typedef struct stx_msg stx_msg;

/** Entry id, "MS-SEQ" (NUL-terminated); NULL for a NULL msg or outside its
 * handler call. */
STX_API const char *stx_msg_id(const stx_msg *msg);
/** Name of the stream the entry was read from (NUL-terminated); NULL as
 * stx_msg_id(). */
STX_API const char *stx_msg_stream(const stx_msg *msg);
/** Number of field/value pairs; 0 as stx_msg_id() gives NULL. */
STX_API size_t stx_msg_field_count(const stx_msg *msg);
/** Field i (0-based).  Names and values are binary-safe byte strings; a NUL
 * is stored after each so text can be used as a C string.  Each output
 * pointer may be NULL.
 * @return STX_OK, STX_ENOTFOUND when i is out of range, STX_EINVAL (msg
 * NULL), STX_ESTATE (outside its handler call). */
STX_API int stx_msg_field(const stx_msg *msg, size_t i, const char **name, size_t *name_len,
                          const char **value, size_t *value_len);
/** Value of the first field named name (NUL-terminated name), or NULL when
 * absent (or msg or name NULL, or outside the handler call).  *len (if not
 * NULL) receives the value's length. */
STX_API const char *stx_msg_get(const stx_msg *msg, const char *name, size_t *len);
/** Which attempt at this entry the handler is making: 1 the first time;
 * one more for each earlier handler failure and each process that died
 * while the entry was the only one in hand (a crashed batch is read again
 * in halves, down to one entry, so a crash is pinned on its cause).
 * Commits Redis refused and stops do not count.  Kept in the group's
 * "attempts" hash, so it survives restarts; max_deliveries bounds it.
 * 0 as stx_msg_id() gives NULL. */
STX_API uint64_t stx_msg_delivery_count(const stx_msg *msg);
/** @} */

/** @defgroup txn Transactions
 * The handler's view of the processor's keyed state and its staged
 * publishes.  Nothing reaches Redis before the handler returns STX_OK and
 * the commit script succeeds; on any failure all of it is dropped.
 *
 * State values are single msgpack objects (any type).  The raw functions
 * take and return the encoded bytes; the typed helpers encode and decode
 * integers and strings.  A value returned by stx_txn_get() has already been
 * validated, so it can be handed to msgpack_unpack() safely.  Keys are
 * binary-safe byte strings (the empty key included) of at most
 * max_key_bytes.
 *
 * Every function below returns STX_EINVAL when txn is NULL (or a key is
 * NULL with a non-zero length, or a required output pointer is NULL), and
 * STX_ESTATE when txn is used outside its handler or migration call (a
 * pointer kept after the handler returned, until the processor is freed):
 * such a call reads nothing and stages nothing; it is not silently dropped.
 * @{ */
typedef struct stx_txn stx_txn;

/** Encoded msgpack value of key.  *value stays valid until the handler
 * returns or the key is written again, whichever is first.  value and
 * value_len are required.
 * @return STX_OK, STX_ENOTFOUND (no such key), STX_EDECODE (the stored
 * value is not valid msgpack; the message names the key), STX_EINVAL,
 * STX_ESTATE. */
STX_API int stx_txn_get(stx_txn *txn, const void *key, size_t key_len,
                        const void **value, size_t *value_len);
/** Stage key = value, where value is exactly one encoded msgpack object.
 * @return STX_OK, STX_EDECODE (value is not one msgpack object),
 * STX_ELIMIT (key or value larger than configured), STX_ENOMEM. */
STX_API int stx_txn_put(stx_txn *txn, const void *key, size_t key_len,
                        const void *value, size_t value_len);
/** Stage the deletion of key (no error if it does not exist). */
STX_API int stx_txn_del(stx_txn *txn, const void *key, size_t key_len);

/** Integer value of key (out required).  @return STX_OK, STX_ENOTFOUND,
 * STX_EDECODE, or STX_ETYPE when the value is not an integer that fits
 * int64_t. */
STX_API int stx_txn_get_i64(stx_txn *txn, const void *key, size_t key_len, int64_t *out);
/** Stage key = v (msgpack integer). */
STX_API int stx_txn_put_i64(stx_txn *txn, const void *key, size_t key_len, int64_t v);
/** Add delta to the integer at key (a missing key counts as 0) and put the
 * result into *result if not NULL.  @return as stx_txn_get_i64(), plus
 * STX_ELIMIT on overflow. */
STX_API int stx_txn_incr(stx_txn *txn, const void *key, size_t key_len, int64_t delta,
                         int64_t *result);
/** String (msgpack str or bin) value of key; *s is not NUL-terminated and is
 * valid as for stx_txn_get() (s and len required). @return as
 * stx_txn_get_i64(). */
STX_API int stx_txn_get_str(stx_txn *txn, const void *key, size_t key_len,
                            const char **s, size_t *len);
/** Stage key = the msgpack str s ((NULL, 0): the empty string). */
STX_API int stx_txn_put_str(stx_txn *txn, const void *key, size_t key_len,
                            const char *s, size_t len);

/** Stage an XADD of nfields field/value pairs to stream.  Names and values
 * are copied.  Unless a field of that name is among the pairs given, the
 * library adds the envelope fields "causation_id" (the source message id)
 * and "correlation_id" (copied from the source message when it has one).
 * On Redis Cluster a target in the input stream's slot (the same hash
 * tag, e.g. "{orders}:alerts") is written by the commit itself; a target
 * in any other slot (one script cannot write two slots) goes through the
 * group's outbox and is relayed after the commit, exactly once and in
 * commit order per target (see @ref outbox; publish_mode=outbox does that
 * for every target on any Redis).
 *
 * One publish holds at most 3000 field/value pairs, the envelope fields
 * the library adds included (so 2998 pairs of the handler's own are always
 * safe): the commit script hands them to XADD through Lua's unpack(),
 * which the C stack bounds.  It also holds at most max_fields pairs and
 * max_value_bytes bytes.  A publish over a limit is refused here, with
 * STX_ELIMIT and a message that stx_processor_errmsg() and the dead letter
 * show when the handler then fails (returning the code fails the entry
 * permanently: it is dead-lettered and processing goes on).
 * @return STX_OK, STX_EINVAL (no fields, empty stream name, NULL arrays or
 * a NULL name or value with a non-zero length, or in a migration, which
 * has no message to publish from), STX_ELIMIT, STX_ENOMEM, STX_ESTATE. */
STX_API int stx_txn_publish(stx_txn *txn, const char *stream, size_t nfields,
                            const char *const *names, const size_t *name_lens,
                            const char *const *values, const size_t *value_lens);
/** Convenience for text: publish NUL-terminated pairs given as
 * name0, value0, name1, value1, ..., NULL.  Limits and results as
 * stx_txn_publish(); STX_EINVAL for no pairs or a name without a value. */
STX_API int stx_txn_publishv(stx_txn *txn, const char *stream, ...);
/** Choose the delay before the retry when the handler then returns
 * STX_HANDLER_RETRY, overriding the processor's retry_backoff policy for
 * this entry (e.g. each handler of a router with its own policy, or a
 * Retry-After from a remote service).  ms is capped at retry_max_ms.
 * @return STX_OK, STX_EINVAL (negative ms), STX_ESTATE. */
STX_API int stx_txn_retry_after(stx_txn *txn, long ms);

/** Set the message returned by stx_processor_errmsg() when the handler
 * fails (printf-style).  Returns STX_EHANDLER so a handler can write
 * `return stx_txn_fail(txn, "bad sku %s", sku);` (STX_EINVAL for a NULL txn
 * or fmt, STX_ESTATE outside the handler call: no message is set, and any
 * of these returned by a handler still fails the entry). */
STX_API int stx_txn_fail(stx_txn *txn, const char *fmt, ...)
#if defined(__GNUC__)
    __attribute__((format(printf, 2, 3)))
#endif
    ;
/** The same for a transient failure: sets the message and returns
 * STX_HANDLER_RETRY, so a handler can write
 * `return stx_txn_retry(txn, "pricing service: %s", why);`: nothing is
 * written, and the entry is handed to the handler again after the retry
 * delay (stx_txn_retry_after() chooses it), then dead-lettered with reason
 * retries_exhausted after max_deliveries deliveries.  STX_EINVAL for a NULL
 * txn or fmt, STX_ESTATE outside the handler call (no message is set, and
 * returned by a handler these fail the entry). */
STX_API int stx_txn_retry(stx_txn *txn, const char *fmt, ...)
#if defined(__GNUC__)
    __attribute__((format(printf, 2, 3)))
#endif
    ;
/** @} */

/** @defgroup processor Processor
 * @{ */
typedef struct stx_processor stx_processor;

/** Handler verdicts.  A handler may also return a library code as it got
 * it (`if (rc != STX_OK) return rc;`), since verdicts and STX_E* codes
 * share one int; the processor maps what the handler returns:
 *
 * | returned                                          | means             |
 * |---------------------------------------------------|-------------------|
 * | STX_HANDLER_OK (= STX_OK)                         | commit            |
 * | STX_HANDLER_RETRY, stx_txn_retry()                | retry             |
 * | STX_ENOMEM, and every code whose stx_error_class_of() is STX_CLASS_RETRIABLE (STX_ECONN, STX_ETIMEOUT, STX_EREDIS_REFUSED) | retry |
 * | STX_HANDLER_FAIL, stx_txn_fail() (STX_EHANDLER), any other value | fail: dead-letter at once |
 */
#define STX_HANDLER_OK 0
#define STX_HANDLER_RETRY 1 /**< transient failure: nothing is written; the entry is
                                 handed to the handler again after the retry delay, and
                                 dead-lettered after max_deliveries deliveries */
#define STX_HANDLER_FAIL 2  /**< permanent failure: nothing of the handler's is written;
                                 the entry moves to the dead-letter stream at once */

/** The user's handler.  Reads msg, reads and writes state through txn,
 * stages publishes through txn, and returns a verdict.  The handler may run
 * more than once for one message (after a crash, a retry or a failed
 * commit, or the commit of the batch before it failing while this batch
 * was handled: the "overlap" option); only the effects made through txn
 * are exactly-once.  It must not
 * call back into the processor.  msg and txn are valid during this call
 * only: kept and used later they are refused (STX_ESTATE, NULL or 0). */
typedef int (*stx_handler_fn)(const stx_msg *msg, stx_txn *txn, void *user_data);

/** Log levels for stx_log_fn. */
typedef enum stx_log_level {
    STX_LOG_DEBUG = 0,
    STX_LOG_INFO = 1,
    STX_LOG_WARN = 2,
    STX_LOG_ERROR = 3
} stx_log_level;

/** Log callback: one line (no newline) per event the caller cannot see
 * otherwise.  The default writes lines at log_level and above (default
 * WARN) to stderr.
 *
 * The rule: the library logs what it does not return, and never what it
 * returns.  An error that start() or poll() returns is not logged: its
 * text is stx_processor_errmsg(), and printing it is the caller's (once).
 * Logged are the events no return value shows: recoveries (a write in
 * doubt settled, a reload after Redis lost or replaced data, a reconnect),
 * warnings (a slow handler, an entry deleted before it was handled), and
 * in stx_processor_run(), which returns only a stop or a fatal error, each
 * error it handles itself: a handler failure that is retried or
 * dead-lettered (one WARN line each), and a retriable error it retries
 * (one WARN line for the first of a run of equal errors, DEBUG for the
 * repeats).  A program using run() prints only what run() returns. */
typedef void (*stx_log_fn)(stx_log_level level, const char *line, void *user_data);

/** State schema migration.  With the configuration key
 * state_schema_version set to V > 0, the processor records V with the state
 * (meta field "schema") and, at start, compares it with the stored one.
 * On a mismatch it calls the migration once per stored key, in a
 * transaction without a message (publishing is refused): the callback puts
 * the converted value (or deletes the key, or adds others) through txn.
 * All changes and the new version are then written in one script.  Without
 * a migration callback a mismatch fails the start with STX_ESCHEMA.
 * Return STX_OK, or anything else to abort the start (nothing is written). */
typedef int (*stx_migrate_fn)(uint32_t from_version, uint32_t to_version, const void *key,
                              size_t key_len, const void *value, size_t value_len,
                              stx_txn *txn, void *user_data);

/** Set the migration callback (NULL: none).  For this and the two setters
 * below, a NULL conf is a no-op. */
STX_API void stx_config_set_migrate(stx_config *conf, stx_migrate_fn migrate, void *user_data);

/** Set the handler (required before stx_processor_new()). */
STX_API void stx_config_set_handler(stx_config *conf, stx_handler_fn handler, void *user_data);
/** Set the log callback; NULL restores the default. */
STX_API void stx_config_set_log(stx_config *conf, stx_log_fn log, void *user_data);

struct stx_entries;
/** A history source: where the processor reads entries the stream no
 * longer holds (trimmed), e.g. stx_archive_history() of streamtx_archive.h.
 * Called in recovery only, when the stream's first entry is after the
 * cursor: it puts into *out (a result of stx_entries_new(), owned by the
 * processor after the call) the entries of `stream` after `after` and
 * before `before` (exclusive; "" when the stream is empty: no bound), in id
 * order, at most limit.  None: STX_OK with no entries, or STX_ENOTFOUND.
 * Other codes fail the read with that code (a retriable one is retried).
 * Such entries are handled and committed as any other: at most limit at a
 * time, counted for poison isolation in the attempts hash, and their
 * publishes dropped when at or below replay_until (a clearing reset's
 * rebuild, see stx_group_reset()).  A dead letter of such an entry holds
 * its original fields, as any other. */
typedef int (*stx_history_fn)(const char *stream, const char *after, const char *before,
                              size_t limit, struct stx_entries **out, void *user_data);
/** Set the history source (NULL: none, the default: trimmed entries are
 * not read). */
STX_API void stx_config_set_history(stx_config *conf, stx_history_fn fn, void *user_data);

/** Create a processor from conf (copied: conf may be freed afterwards).
 * No I/O happens here.  As in SQLite, *out is set even on failure (unless
 * memory ran out, or out is NULL) so that stx_processor_errmsg() can tell
 * why; the caller frees it with stx_processor_free().
 * @return STX_OK, STX_EINVAL (out or conf NULL, no stream, group or
 * handler), STX_ENOMEM. */
STX_API int stx_processor_new(stx_processor **out, const stx_config *conf);

/** Free a processor and close its connection (first removing its live
 * stats from Redis when connected: one HDEL).  NULL is a no-op.  Must not
 * be called while stx_processor_run()/poll() runs in another thread. */
STX_API void stx_processor_free(stx_processor *p);

/** Connect, take a new epoch for (stream, group) (which fences any older
 * processor), create the group if missing, load the state (from the LMDB
 * snapshot when it is provably Redis' state, else from Redis) and clean the
 * group's pending list; the entries after the stored offset are then read
 * from the stream, in order.  Called by run()/poll() when needed, and again
 * after a lost connection (which first retakes the epoch, fencing whatever
 * the old connection still had in flight).
 * @return STX_OK or an error (see stx_processor_errmsg()); STX_EINVAL for
 * a NULL p, as poll() and run(). */
STX_API int stx_processor_start(stx_processor *p);

/** Read a batch (waiting up to the configured block_ms for new entries),
 * handle and commit it.  With the "overlap" option (the default) the read
 * sent before each commit may bring the next batch, which is then handled
 * while that commit runs, and so on while entries keep coming, for about
 * 10 ms (or block_ms, if less) at most; poll() returns once every commit
 * it sent is answered, so the state it leaves is what Redis holds.
 *
 * When the handler fails on a message of the batch, the messages before it
 * are committed, nothing of the handler's for the failing one is written,
 * and poll() returns STX_EHANDLER (the message says which entry, why, and
 * what happens next; stx_processor_stats() counts what was committed).  A
 * retriable failure leaves the entry pending: the next poll() waits for its
 * retry delay and hands it to the handler again, and the entries after it
 * wait, because the offset only moves forward.  A permanent failure, a
 * retriable one at its max_deliveries-th delivery, or an entry that breaks a
 * limit or does not decode is moved to the dead-letter stream (atomically
 * with the offset), and processing goes on.
 * @return the number of messages committed (0 if none came), or a negative
 * error: STX_EFENCED (this processor was replaced; it stops for good),
 * STX_EHANDLER, STX_ESTOPPED, STX_ECONN / STX_ETIMEOUT (the next poll
 * reconnects, retakes the epoch and only then finds out whether an
 * unanswered commit landed), STX_EREDIS_REFUSED (Redis did not run the
 * commit: OOM, a replica, a publish target that can take no more entries;
 * nothing was written), STX_EWRONGTYPE, STX_ENOGROUP, ...  When Redis holds
 * another commit sequence than the processor (restored from a backup,
 * failed over) or lost the group's meta hash, poll() reloads or starts over
 * by itself and logs it. */
STX_API int stx_processor_poll(stx_processor *p);

/** Call poll() until stx_processor_stop() or a fatal error.  Handler
 * failures are retried or dead-lettered as poll() describes, and logged.
 * Retriable errors (connection lost, timeout, a write refused by Redis) are
 * retried at once, then with a backoff from 100 ms to 5 s, except when
 * Redis was never reached.  Returns STX_OK after a stop, else the error
 * (e.g. STX_EFENCED, STX_ENOGROUP, STX_EWRONGTYPE). */
STX_API int stx_processor_run(stx_processor *p);

/** Ask run()/poll() to return at the next message boundary (at the latest
 * after block_ms); the messages handled so far in the batch are committed
 * first.  A start() in progress finishes.  Async-signal-safe and
 * thread-safe.  NULL is a no-op. */
STX_API void stx_processor_stop(stx_processor *p);

/** Message of the last error on p (never NULL; "" when there was none, a
 * static text for a NULL p).  Valid until the next call on p. */
STX_API const char *stx_processor_errmsg(const stx_processor *p);

/** Epoch this processor holds (0 before start, or for a NULL p). */
STX_API uint64_t stx_processor_epoch(const stx_processor *p);

/** Id of the last committed message of (stream, group) as this processor
 * knows it ("0-0" before anything was committed; "" for a NULL p). */
STX_API const char *stx_processor_offset(const stx_processor *p);

/** Counters since stx_processor_new(). */
typedef struct stx_stats {
    uint64_t handled;        /**< handler calls that returned OK */
    uint64_t committed;      /**< messages whose commit landed */
    uint64_t commits;        /**< commit scripts that landed (one per batch) */
    uint64_t duplicates;     /**< messages skipped as already committed */
    uint64_t handler_failures; /**< handler calls that did not return OK */
    uint64_t fenced;         /**< commits or dead-letterings refused by fencing */
    uint64_t reconnects;     /**< connections re-established */
    uint64_t script_reloads; /**< NOSCRIPT answers that caused a SCRIPT LOAD */
    uint64_t snapshot_loads; /**< starts that loaded state from LMDB */
    uint64_t redis_loads;    /**< starts that loaded state from Redis */
    uint64_t state_keys;     /**< keys in the in-memory state */
    uint64_t retries;        /**< entries handed to the handler again after a failure */
    uint64_t dead_lettered;  /**< entries moved to the dead-letter stream */
    uint64_t slow_handlers;  /**< handler calls longer than handler_warn_ms */
    /** Commit latency (EVALSHA sent to reply read), in microseconds.  With
     * `overlap` the reply is read once the next batch is handled, so this
     * includes that handling when it outlasted the commit. */
    uint64_t commit_us_p50, commit_us_p99, commit_us_max;
    /** Commits that fewer than commit_wait_replicas replicas acknowledged
     * within commit_wait_timeout_ms (WAIT after each commit; 0 when off). */
    uint64_t commits_unreplicated;
    /** The outbox (publish_mode=outbox, or a publish to another slot on a
     * cluster): entries relayed to their targets, relay attempts a target
     * refused (wrong type, out of memory, ...), the outbox's length and
     * the age of its oldest entry in ms, both as of the last relay (0 when
     * empty). */
    uint64_t relayed, relay_refusals, outbox_len, outbox_age_ms;
    /** Batches handled while the commit of the batch before them ran in
     * Redis (the `overlap` option). */
    uint64_t overlapped;
} stx_stats;

/** Copy the counters into *out (all zero for a NULL p; no-op for a NULL out). */
STX_API void stx_processor_stats(const stx_processor *p, stx_stats *out);

/** Committed state value of key as the processor holds it (outside a
 * handler, e.g. for reporting).  *value is valid until the next call on p.
 * @return STX_OK, STX_ENOTFOUND, STX_ESTATE (not started), STX_EINVAL (p,
 * value or value_len NULL, or key NULL with a non-zero key_len). */
STX_API int stx_processor_state_get(stx_processor *p, const void *key, size_t key_len,
                                    const void **value, size_t *value_len);
/** @} */

/** @defgroup keys Key layout
 * Every key of (stream, group) lives in the stream's Redis Cluster slot,
 * and different (stream, group, kind) triples never share a key.  A key is
 * "{T}:stx:LEN:STREAM:GROUP:KIND" where LEN is the byte length of STREAM
 * and T is the part of the stream name Redis hashes (the text between the
 * first '{' and the next '}' when that is not empty, else the whole name)
 * when that part holds no '}'; otherwise (names like "a}b" or "{}x") T is
 * a 4-character tag of '@'..'O' chosen to hash to the stream's slot.  KIND
 * is one of:
 *  - "meta": hash (epoch, offset, seq, lineage, ...);
 *  - "state": hash, state key -> msgpack value;
 *  - "dlq": stream, the group's dead letters;
 *  - "attempts": hash, entry id -> handler attempts so far;
 *  - "live": hash, processor id -> its last heartbeat (JSON), expiring;
 *  - "lease": hash, of a partition's stream: owner, expires_ms, epoch
 *    (see @ref member);
 *  - "members": hash, of a logical partitioned stream: member id ->
 *    "EXPIRES_MS HOST PID", expiring;
 *  - "outbox": stream, publishes committed but not yet relayed to their
 *    target (see @ref outbox).
 * Examples: stream "orders", group "g": "{orders}:stx:6:orders:g:meta";
 * stream "app:{eu}:orders": "{eu}:stx:15:app:{eu}:orders:g:state".
 * @{ */

/** Write the name of the KIND key ("meta", "state", "dlq", "attempts", "live",
 * "lease" or "members")
 * of (stream, group) into buf (cap bytes, NUL-terminated).
 * 2 * strlen(stream) + strlen(group) + 48 bytes always suffice.
 * @return the length of the name, or STX_EINVAL (bad kind, empty names, any
 * pointer NULL), or STX_ELIMIT when cap is too small. */
STX_API int stx_key_name(char *buf, size_t cap, const char *stream, const char *group,
                         const char *kind);
/** @} */

/** @defgroup msgpack msgpack helpers for untrusted bytes
 * @{ */

/** Check that buf holds exactly one well-formed msgpack object of at most
 * max_depth nesting levels, never reading past len and never trusting a
 * declared length or count that the remaining bytes cannot hold.
 * @return STX_OK or STX_EDECODE (also for a NULL buf: no object). */
STX_API int stx_mp_validate(const void *buf, size_t len, unsigned max_depth);

/** Decode a msgpack integer that fits int64_t.
 * @return STX_OK, STX_EDECODE (not msgpack), STX_ETYPE (not such an int),
 * STX_EINVAL (out NULL). */
STX_API int stx_mp_read_i64(const void *buf, size_t len, int64_t *out);

/** Encode v as msgpack into out (at least 9 bytes); returns the length
 * (0 for a NULL out). */
STX_API size_t stx_mp_write_i64(unsigned char out[9], int64_t v);
/** @} */


/** @defgroup client Client: producing, reading and administration
 * A plain connection for everything besides processing.  Uses the address
 * keys of a configuration (url, host, port, db, user, password,
 * connect_timeout_ms, command_timeout_ms, and the tls keys: tls, tls_verify,
 * tls_ca_file, tls_ca_dir, tls_cert_file, tls_key_file, tls_server_name);
 * other keys are ignored.
 * @{ */
typedef struct stx_client stx_client;

/** Connect.  As stx_processor_new(), *out is set even on failure (unless
 * out of memory) so stx_client_errmsg() can tell why; free it with
 * stx_client_free().  conf may be NULL for redis://127.0.0.1:6379.
 * @return STX_OK, STX_ECONN, STX_ETLS, STX_EAUTH, STX_ETIMEOUT, STX_ENOMEM,
 * STX_EINVAL (out NULL, or TLS asked for over a Unix socket). */
STX_API int stx_client_new(stx_client **out, const stx_config *conf);
/** Close and free.  NULL is a no-op. */
STX_API void stx_client_free(stx_client *c);
/** Message of the last error on c ("" when none; a static text for NULL). */
STX_API const char *stx_client_errmsg(const stx_client *c);

/** One field/value pair, binary-safe. */
typedef struct stx_field {
    const char *name;
    size_t name_len;
    const char *value;
    size_t value_len;
} stx_field;

/** Envelope field names: a convention for events, never a requirement.
 * Entries without them are processed all the same. */
#define STX_FIELD_TYPE "type"                /**< event type, e.g. "order.created" */
#define STX_FIELD_KEY "key"                  /**< entity the event is about */
#define STX_FIELD_PAYLOAD "payload"          /**< body: raw bytes or msgpack */
#define STX_FIELD_CONTENT_TYPE "content_type" /**< e.g. "application/msgpack" */
#define STX_FIELD_CORRELATION_ID "correlation_id" /**< id shared by a whole flow */
#define STX_FIELD_CAUSATION_ID "causation_id" /**< id of the entry that caused this one */
#define STX_FIELD_ACTOR "actor"              /**< who or what did it */
#define STX_FIELD_CREATED_AT "created_at"    /**< milliseconds since the epoch */
#define STX_FIELD_SCHEMA_VERSION "schema_version" /**< version of the payload's schema */

/** Options of a produce call; a zeroed struct means none. */
typedef struct stx_produce_opts {
    const char *idempotency_key;  /**< dedup key (NULL: none); per message in a batch */
    long long dedup_ttl_ms;       /**< how long a key is remembered (0: 24 h) */
    long long maxlen;             /**< > 0: XADD MAXLEN ~ maxlen */
    const char *minid;            /**< non-NULL: XADD MINID ~ minid */
} stx_produce_opts;

/** Result of one produced message. */
typedef struct stx_produce_result {
    char id[48];                  /**< the entry id (the original one for a duplicate) */
    int duplicate;                /**< 1 when the idempotency key was seen with this content */
} stx_produce_result;

/** XADD one message.  With an idempotency key the first call adds the
 * entry and remembers key -> (id, fingerprint of the fields); a later call
 * with the same key and fields adds nothing and returns the first id with
 * duplicate = 1; the same key with other fields gives STX_ECONFLICT.  One
 * script, so concurrent producers and retries after a timeout are safe.
 * opts may be NULL; c, stream, fields and result are required.  A message
 * holds 1 to 3000 fields (the script builds its XADD with Lua's unpack()).
 * @return STX_OK, STX_ECONFLICT, STX_EINVAL, STX_EWRONGTYPE, connection errors. */
STX_API int stx_produce(stx_client *c, const char *stream, const stx_field *fields, size_t nfields,
                        const stx_produce_opts *opts, stx_produce_result *result);

/** One message of a batch. */
typedef struct stx_produce_msg {
    const stx_field *fields;
    size_t nfields;
    const char *idempotency_key;  /**< NULL: none */
} stx_produce_msg;

/** Produce n messages in one round trip (one script; opts' idempotency_key
 * is ignored in favour of each message's).  results has n slots.  On
 * STX_ECONFLICT nothing of the batch is added and the message names the
 * first conflicting key. */
STX_API int stx_produce_batch(stx_client *c, const char *stream, const stx_produce_msg *msgs, size_t n,
                              const stx_produce_opts *opts, stx_produce_result *results);

/** Entries read from a stream, owned by the caller (stx_entries_free()). */
typedef struct stx_entries stx_entries;
STX_API size_t stx_entries_count(const stx_entries *e); /* 0 for NULL */
/** Entry i as a message view, valid until stx_entries_free() (NULL when i
 * is out of range or e is NULL). */
STX_API const stx_msg *stx_entries_at(const stx_entries *e, size_t i);
/** Id of the last entry, or the cursor given when there was none: the
 * cursor to resume from ("" for NULL). */
STX_API const char *stx_entries_last_id(const stx_entries *e);
STX_API void stx_entries_free(stx_entries *e); /* NULL-safe */
/** An empty result for stream whose cursor (stx_entries_last_id()) is
 * `cursor` ("0" or an id), to be filled with stx_entries_append(): for
 * readers that join entries of another store (the archive, see
 * streamtx_archive.h) to those of Redis.
 * @return STX_OK; STX_EINVAL (NULL or empty stream, NULL cursor or out);
 * STX_EINVALID_CURSOR; STX_ENOMEM. */
STX_API int stx_entries_new(const char *stream, const char *cursor, stx_entries **out);
/** Append a copy of one entry (id "MS-SEQ", 1 or more binary-safe fields).
 * Ids must rise strictly: an id at or before the last one is refused, so a
 * joined result never holds an entry twice or out of order.  Views from
 * stx_entries_at() are valid until the next append or stx_entries_free().
 * @return STX_OK; STX_EINVAL (NULL e, id or fields, no field, an id not
 * after the last); STX_EINVALID_CURSOR (id not MS-SEQ); STX_ENOMEM. */
STX_API int stx_entries_append(stx_entries *e, const char *id, const stx_field *fields,
                               size_t nfields);

/** Entries with ids after `after` (exclusive; "0" or "0-0" from the start)
 * up to `to` (inclusive; NULL or "+" for the end), at most limit (0: 1000).
 * c, stream and out are required (STX_EINVAL).
 * @return STX_OK; STX_EINVALID_CURSOR when after (NULL included) or to is
 * not an id;
 * STX_EWINDOW_EXPIRED when entries after `after` were trimmed or deleted
 * (the caller missed data: the message says from where it can resume). */
STX_API int stx_read_range(stx_client *c, const char *stream, const char *after, const char *to,
                           size_t limit, stx_entries **out);
/** Entries whose time (the id's milliseconds) is in [from_ms, to_ms]. */
STX_API int stx_read_time(stx_client *c, const char *stream, int64_t from_ms, int64_t to_ms,
                          size_t limit, stx_entries **out);
/** Live tail: entries after `after` ("$": only new ones), waiting up to
 * block_ms for the first; an empty result means none came.  Resume after a
 * reconnect by passing stx_entries_last_id() of the last result.  Cursor
 * errors as stx_read_range(). */
STX_API int stx_tail(stx_client *c, const char *stream, const char *after, long block_ms, size_t limit,
                     stx_entries **out);

/** @defgroup position Positions in a stream
 * One grammar names a point in a stream everywhere: stx_group_reset()'s
 * `to`, the stx tool's --to and --from options, and the group_start_id
 * configuration key (a time or a duration there is resolved when the group
 * is created).
 *
 *   beginning, -, 0   the start of the stream
 *   end, $, +         the end: after the last entry
 *   MS-SEQ, MS        an entry id; MS alone is the whole millisecond
 *   RFC 3339 time     2026-11-22T10:00:00Z, 2026-11-22T10:00:00.250+01:00
 *                     (fractions beyond milliseconds are cut)
 *   @MS               a time in milliseconds since the Unix epoch
 *   DURATION          that long before now: NUMBER UNIT pairs, units ms,
 *                     s, m, h, d, w (30m, 1h, 2d, 1h30m)
 * Times and durations name the entries added at or after that time (the
 * id's milliseconds are its time).
 * @{ */

/** What a position names. */
typedef enum stx_position_kind {
    STX_POSITION_BEGINNING = 0, /**< before the first entry */
    STX_POSITION_END = 1,       /**< after the last entry */
    STX_POSITION_ID = 2,        /**< an entry id: ms, seq (has_seq) */
    STX_POSITION_TIME = 3       /**< a time: ms since the epoch (durations resolved) */
} stx_position_kind;

/** A parsed position (plain data: no owner, nothing to free). */
typedef struct stx_position {
    stx_position_kind kind;
    unsigned long long ms;  /**< ID: the id's milliseconds; TIME: the time */
    unsigned long long seq; /**< ID given as MS-SEQ: its sequence; else 0 */
    int has_seq;            /**< ID: 1 for MS-SEQ, 0 for MS alone */
} stx_position;

/** The grammar in one line, for error messages. */
#define STX_POSITION_GRAMMAR                                                        \
    "beginning, end, -, $, 0, an id (MS-SEQ or MS), a time (RFC 3339 such as "      \
    "2026-11-22T10:00:00Z, or @MS) or a duration ago (30s, 30m, 1h, 2d)"

/** Parse text (required) as a position; durations are taken back from now_ms
 * (milliseconds since the epoch; a duration longer than that gives time 0).
 * @return STX_OK, or STX_EINVAL when text is NULL or not in the grammar
 * (then *out is unchanged); out is required. */
STX_API int stx_position_parse(const char *text, long long now_ms, stx_position *out);

/** The exclusive cursor that reads from p on (the `after` of
 * stx_read_range() and stx_tail()): "0-0" for the beginning, "$" for the
 * end, the id just before an id (before MS-0 for MS alone) or a time's first
 * millisecond.  buf gets at least 48 bytes (cap).
 * @return the length written, STX_EINVAL (NULL p or buf), STX_ELIMIT (cap). */
STX_API int stx_position_after(const stx_position *p, char *buf, size_t cap);

/** The inclusive last id up to p (the `to` of stx_read_range()): "+" for
 * the end, "0-0" for the beginning, the id itself (the last id of the
 * millisecond for MS alone) or the last id of a time's millisecond.
 * @return as stx_position_after(). */
STX_API int stx_position_until(const stx_position *p, char *buf, size_t cap);
/** @} */

/** Flags of stx_group_reset(). @{ */
#define STX_RESET_CLEAR_STATE 1 /**< delete the state: rebuild it by replaying history */
#define STX_RESET_REEMIT 2      /**< replayed entries publish again (see below) */
#define STX_RESET_FORCE 4       /**< clear the state even though entries after `to` are gone */
/** @} */

/** Move (stream, group) to `to`, a position (see @ref position: beginning,
 * end, an id, a time, @MS or a duration ago), so that processing resumes
 * with the first entry after it: after the id itself (after the whole
 * millisecond for MS alone), or with the entries of a time.  Takes a new epoch (and drops the epoch holder's token), so a
 * running processor is fenced rather than corrupted, and a new lineage, so
 * LMDB snapshots are rebuilt.  Entries pending in the group are dropped from
 * its pending list, and the handler-attempt counters are deleted.
 *
 * flags is 0 or a combination of STX_RESET_*:
 * - STX_RESET_CLEAR_STATE also deletes the state: a rebuild by replaying
 *   history.  It is refused with STX_EWINDOW_EXPIRED, before any change,
 *   when entries after `to` were trimmed or deleted (stx_trim_safe(), XDEL;
 *   seen as stx_read_range() sees them): the replay of what is left would
 *   silently build a different state.  STX_RESET_FORCE resets anyway.
 * - Without STX_RESET_CLEAR_STATE the state is kept, and a reset to an
 *   earlier point **applies the effects of the replayed entries to the
 *   state again** (a counter counts them twice).  Use it to skip ahead, or
 *   when re-applying is what you want.
 * - Publishes: an entry the group had already committed sent its publishes
 *   then.  By default they are not sent again: the reset records, atomically
 *   with itself, the highest offset the group ever reached before a reset
 *   (meta field replay_until), and commits of entries at or below it write
 *   their state but drop their publishes.  STX_RESET_REEMIT deletes that
 *   bound, so the replay publishes everything again (new entries downstream,
 *   with the same causation_id as the first time).
 *
 * The 0/1 clear_state argument of earlier versions is the same as 0 and
 * STX_RESET_CLEAR_STATE.
 * @return STX_OK; STX_EINVALID_CURSOR for a bad `to`; STX_ENOGROUP when the
 * stream or the group does not exist; STX_EWRONGTYPE; STX_EWINDOW_EXPIRED
 * (above); STX_EINVAL for a NULL c, stream or group, unknown flags or
 * empty names; STX_EINVALID_CURSOR also for a NULL `to`. */
STX_API int stx_group_reset(stx_client *c, const char *stream, const char *group, const char *to,
                            int flags);

/** Delete (stream, group): the consumer group (XGROUP DESTROY) and every key
 * derived from it (stx_key_name(): meta, state, dlq, attempts and live), so that
 * nothing of a mistyped or retired group is left behind.  The stream and its
 * entries stay.  Stop the group's processors first: one still running is
 * told its group vanished (STX_ENOGROUP) or is fenced.  *deleted_keys (if
 * not NULL) gets how many of those keys existed.
 * @return STX_OK; STX_ENOGROUP when neither the group nor any of its keys
 * exists; STX_EWRONGTYPE when stream is not a stream; STX_EINVAL for a NULL
 * c, stream or group or empty names; connection errors. */
STX_API int stx_group_delete(stx_client *c, const char *stream, const char *group,
                             long long *deleted_keys);

/** Trim stream, never past an entry some consumer group has not processed:
 * the bound is the lowest of, over all groups, the last delivered id and
 * the oldest pending id (and, for streamtx groups, the committed offset).
 * With maxlen and max_age_ms 0, everything before the bound goes; with
 * maxlen > 0 and/or max_age_ms > 0, only entries that break a limit (not
 * among the newest maxlen, or older than max_age_ms) go, and still none at
 * or after the bound.  A stream without groups is not trimmed.
 * *deleted (if not NULL) receives the number of entries removed. */
STX_API int stx_trim_safe(stx_client *c, const char *stream, long long maxlen, long long max_age_ms,
                          long long *deleted);
/** stx_trim_safe() with one more bound: no entry after keep_after (an id
 * "MS-SEQ", or "0"; NULL: no bound) goes.  For a sink that keeps its own
 * offset outside Redis (stx_archive_trim() passes the archived offset).
 * @return as stx_trim_safe(); STX_EINVALID_CURSOR for a keep_after that is
 * not an id. */
STX_API int stx_trim_safe_bounded(stx_client *c, const char *stream, long long maxlen,
                                  long long max_age_ms, const char *keep_after, long long *deleted);

/** The committed state value of key for (stream, group), read from Redis;
 * *value is malloc'd (free() it).  STX_ENOTFOUND when absent; value and
 * value_len are required. */
STX_API int stx_state_read(stx_client *c, const char *stream, const char *group, const void *key,
                           size_t key_len, void **value, size_t *value_len);
/** Call fn (required) for every state key of (stream, group) (HSCAN
 * pages); a non-zero return of fn stops the walk and is returned. */
STX_API int stx_state_scan(stx_client *c, const char *stream, const char *group,
                           int (*fn)(void *ud, const void *key, size_t key_len, const void *value,
                                     size_t value_len),
                           void *ud);
/** Dead-letter entries of (stream, group) (the "dlq" key), oldest first,
 * after cursor `after` ("0" or NULL from the start), at most limit (0: 1000).  Each
 * holds the original fields plus stx.source_stream, stx.group, stx.source_id,
 * stx.reason, stx.error, stx.attempts and stx.failed_at (see README). */
STX_API int stx_dlq_list(stx_client *c, const char *stream, const char *group, const char *after,
                         size_t limit, stx_entries **out);
/** Move dead-letter entries back to the source stream for another try: all
 * of them when n == 0, else those with the given DLQ entry ids.  Each entry
 * is re-added with its original fields and removed from the DLQ in one
 * script, so it moves exactly once; an id given more than once (also as
 * another spelling of the same id, "01-1" for "1-1") is moved once, in the
 * order first given.  *moved (if not NULL) gets the count.
 * ids may be NULL only when n == 0; a NULL id is STX_EINVALID_CURSOR. */
STX_API int stx_dlq_redrive(stx_client *c, const char *stream, const char *group,
                            const char *const *ids, size_t n, size_t *moved);

/** One consumer group of a stream, as stx_stream_info_get() sees it. */
typedef struct stx_group_info {
    char *name;
    char last_delivered[48];  /**< the group's last-delivered-id */
    char offset[48];          /**< streamtx committed offset, "" when not a streamtx group */
    long long lag;            /**< entries not yet delivered to the group, -1 when unknown */
    long long pending;        /**< delivered but not acknowledged */
    unsigned long long epoch; /**< streamtx epoch, 0 when none */
    long long state_keys;     /**< streamtx state keys, 0 when none */
    long long dlq_length;     /**< dead-letter entries, 0 when none */
} stx_group_info;

typedef struct stx_stream_info {
    long long length;
    char first_id[48], last_id[48]; /**< "" when empty */
    char max_deleted_id[48];        /**< highest id ever trimmed or deleted */
    long long entries_added;
    size_t ngroups;
    stx_group_info *groups;
} stx_stream_info;

/** Describe stream and its groups.  STX_ENOTFOUND when the key does not
 * exist, STX_EWRONGTYPE when it is not a stream, STX_EINVAL for a NULL c,
 * stream or out.  Free with stx_stream_info_free(). */
STX_API int stx_stream_info_get(stx_client *c, const char *stream, stx_stream_info **out);
STX_API void stx_stream_info_free(stx_stream_info *info); /* NULL-safe */

/** The names of every stream key (SCAN ... TYPE stream; on a Redis Cluster,
 * on every master), sorted, each once; names holding a NUL byte are left
 * out.  *names is an array of *n NUL-terminated strings, the caller's, freed
 * with stx_stream_names_free().  STX_EINVAL for a NULL argument; connection
 * errors as any call. */
STX_API int stx_stream_names(stx_client *c, char ***names, size_t *n);
STX_API void stx_stream_names_free(char **names, size_t n); /* NULL-safe */

/** One consumer of a group with entries pending, as stx_pending_get() sees it. */
typedef struct stx_pending_consumer {
    char *name;               /**< binary-safe; a NUL follows the name_len bytes */
    size_t name_len;
    long long pending;        /**< entries delivered to it and not acknowledged */
} stx_pending_consumer;

/** One entry delivered to a group and not acknowledged yet. */
typedef struct stx_pending_entry {
    char id[48];
    char *consumer;           /**< binary-safe; a NUL follows the consumer_len bytes */
    size_t consumer_len;
    long long idle_ms;        /**< milliseconds since it was last delivered */
    long long deliveries;     /**< how many times it was delivered */
} stx_pending_entry;

/** The pending list of a group (XPENDING): a summary and the oldest entries. */
typedef struct stx_pending {
    long long count;          /**< all pending entries of the group */
    char min_id[48], max_id[48]; /**< lowest and highest pending id, "" when none */
    size_t nconsumers;        /**< consumers with pending entries */
    stx_pending_consumer *consumers;
    size_t nentries;          /**< at most the limit given, oldest first */
    stx_pending_entry *entries;
} stx_pending;

/** Read the pending list of (stream, group): the summary and up to limit
 * (0: 100) entries, oldest first.  *out is the caller's, freed with
 * stx_pending_free(); it is set only on STX_OK.
 * @return STX_OK; STX_ENOGROUP when the stream or the group does not exist;
 * STX_EWRONGTYPE when stream is not a stream; STX_EREDIS for a reply of
 * another shape; STX_EINVAL (c, stream, group or out NULL, or an empty
 * stream or group name); STX_ENOMEM; connection errors. */
STX_API int stx_pending_get(stx_client *c, const char *stream, const char *group, size_t limit,
                            stx_pending **out);
STX_API void stx_pending_free(stx_pending *p); /* NULL-safe */

/* ---- Live processors (heartbeat) ----
 * With stats_interval_ms > 0 (default 5000) a processor publishes its
 * counters, rates and latencies into Redis once per interval, from inside
 * poll() (no thread; while idle poll() returns after block_ms at most, so
 * a heartbeat is at most block_ms late): one MULTI of HSET + PEXPIRE on the
 * group's "live" hash (see "Key layout"), field = the processor's id,
 * value = a flat JSON object (README "Live stats").  The hash expires
 * 3 intervals (plus block_ms) after the last heartbeat of any processor;
 * a field is live while its at_ms + ttl_ms is not past.  A processor that
 * stops (stx_processor_stop()), is fenced or is freed removes its field
 * (stx_processor_free() sends one HDEL when connected); one that
 * dies leaves it to expire, and the next processor to start removes
 * expired fields.
 */

/** One live processor of a group, as its last heartbeat told. */
typedef struct stx_live_processor {
    char id[33];              /**< the processor handle's random id (hex) */
    char *consumer;           /**< its consumer name (NUL-terminated) */
    char host[256];           /**< host name */
    long long pid;            /**< process id */
    char version[16];         /**< library version, "MAJOR.MINOR.PATCH" */
    char phase[16];           /**< "new", "epoch_taken", "loaded", "running",
                                   "in_doubt" or "fenced" */
    long long started_at_ms;  /**< first heartbeat (Unix ms, publisher's clock) */
    long long at_ms;          /**< this heartbeat (Unix ms, publisher's clock) */
    long long interval_ms;    /**< its stats_interval_ms */
    long long ttl_ms;         /**< live until at_ms + ttl_ms */
    unsigned long long epoch; /**< epoch it holds */
    char offset[48];          /**< last committed id as it knows it */
    stx_stats stats;          /**< its counters (commit_us_* over its whole run) */
    double committed_per_s;   /**< rates over the interval before at_ms */
    double handled_per_s;
    double failures_per_s;    /**< handler failures */
    double dead_lettered_per_s;
    uint64_t interval_commit_us_p50; /**< commit latency over that interval (0: none) */
    uint64_t interval_commit_us_p99;
    char last_error[512];     /**< last error poll() or start() returned ("" none) */
    long long last_error_at_ms; /**< when (0: none) */
} stx_live_processor;

/** The live processors of a group. */
typedef struct stx_live {
    size_t n;
    stx_live_processor *procs; /**< sorted by consumer, then id */
} stx_live;

/** Read the live processors of (stream, group) from the group's "live"
 * hash: those whose last heartbeat has not expired (by the caller's
 * clock against the publisher's: hosts' clocks must agree to well within
 * an interval).  Fields that do not parse are skipped.  A group without
 * live processors (or no such group) gives n == 0.  *out is the caller's,
 * freed with stx_live_free(); set only on STX_OK.
 * @return STX_OK, STX_EINVAL (a NULL or empty argument), STX_EWRONGTYPE,
 * STX_ENOMEM, connection errors. */
STX_API int stx_live_get(stx_client *c, const char *stream, const char *group, stx_live **out);
STX_API void stx_live_free(stx_live *l); /* NULL-safe */

/** Outcome of one health check. */
typedef enum stx_health_status {
    STX_HEALTH_OK = 0,
    STX_HEALTH_WARN = 1,      /**< streamtx works, with a risk the detail names */
    STX_HEALTH_FAIL = 2       /**< streamtx cannot work against this server */
} stx_health_status;

/** One check of stx_health_get(). */
typedef struct stx_health_check {
    const char *name;         /**< static: "version", "role", "scripts", "appendonly",
                                   "appendfsync" or "eviction" */
    stx_health_status status;
    char detail[512];         /**< what was seen, and the risk for WARN and FAIL */
} stx_health_check;

/** The checks of stx_health_get(), in the order listed above. */
typedef struct stx_health {
    int healthy;              /**< 1 when no check is STX_HEALTH_FAIL */
    size_t nchecks;
    stx_health_check *checks;
} stx_health;

/** Check that streamtx can work against the server of c, and how safely:
 * - version: redis_version (INFO server) must be 7 or later (else FAIL);
 * - role: a replica refuses writes (WARN);
 * - scripts: every Lua script of the library loads (SCRIPT LOAD; else FAIL);
 * - appendonly: off is a WARN (a restart loses the commits made since the
 *   last RDB snapshot);
 * - appendfsync: "no" with appendonly on is a WARN;
 * - eviction: maxmemory with an evicting policy is a WARN (offsets and
 *   state keys could be evicted).
 * A check whose command fails (e.g. CONFIG disabled by an ACL) is WARN,
 * or FAIL for version and scripts, with the reason as its detail; the call
 * still succeeds.  *out is the caller's, freed with stx_health_free(); it is
 * set only on STX_OK.
 * @return STX_OK (look at healthy), STX_EINVAL (c or out NULL), STX_ENOMEM,
 * or a connection error (STX_ECONN, STX_ETIMEOUT) when the server cannot be
 * reached at all. */
STX_API int stx_health_get(stx_client *c, stx_health **out);
STX_API void stx_health_free(stx_health *h); /* NULL-safe */

/** Type of a reply of stx_client_call() (Redis's RESP2 types). */
typedef enum stx_reply_type {
    STX_REPLY_STRING = 1,     /**< bulk string: binary-safe bytes */
    STX_REPLY_ARRAY = 2,
    STX_REPLY_INTEGER = 3,
    STX_REPLY_NIL = 4,        /**< null bulk string or null array */
    STX_REPLY_STATUS = 5,     /**< simple string, e.g. "OK" */
    STX_REPLY_ERROR = 6       /**< error reply, e.g. "ERR unknown command ..." */
} stx_reply_type;

/** A reply of stx_client_call(): a read-only tree.  The reply returned is
 * the caller's, freed with stx_reply_free(); the elements reached through
 * stx_reply_at() belong to it and are valid until it is freed. */
typedef struct stx_reply stx_reply;

/** Run one Redis command on c and return Redis's answer as it is: argc
 * arguments, argv[i] of lens[i] bytes (binary-safe; lens may be NULL when
 * every argument is a NUL-terminated string).  An error reply from Redis is
 * a reply of type STX_REPLY_ERROR, not a failure: the call returns STX_OK.
 * Like every client call it reconnects first when the previous call lost
 * the connection, and never sends a command twice.  Commands that change
 * the connection's state (SELECT, AUTH, MULTI, SUBSCRIBE, CLIENT REPLY ...)
 * are not refused, but the client does not track them: a reconnect undoes
 * them, and a connection left in a subscribed or no-reply mode makes later
 * calls fail or time out.  On failure *out is NULL and stx_client_errmsg()
 * says why.
 * @return STX_OK; STX_EINVAL (c, argv or out NULL, argc 0 or above
 * INT_MAX, a NULL argument); STX_ECONN, STX_ETIMEOUT (the command may have
 * run); STX_ENOMEM. */
STX_API int stx_client_call(stx_client *c, size_t argc, const char *const *argv, const size_t *lens,
                            stx_reply **out);
/** Where key lives on a Redis Cluster: "host:port" of the master of its
 * slot, as the client last learned the slot map (a MOVED since then is
 * learned by the next command), into buf (NUL-terminated).
 * @return the length written; STX_ESTATE when c is connected to a single
 * Redis, not a cluster; STX_ENOTFOUND (no master of the slot known);
 * STX_ELIMIT (cap too small); STX_EINVAL (a NULL argument, cap 0);
 * connection errors. */
STX_API int stx_client_node_of(stx_client *c, const char *key, size_t key_len, char *buf,
                               size_t cap);
/** Free a reply of stx_client_call() (never one of its elements).  NULL is a
 * no-op. */
STX_API void stx_reply_free(stx_reply *r);
/** Type of r; STX_REPLY_NIL for a NULL r. */
STX_API stx_reply_type stx_reply_type_of(const stx_reply *r);
/** Bytes of a STRING, STATUS or ERROR reply, followed by a NUL that len
 * (if not NULL) does not count; NULL (and *len 0) for other types or NULL r. */
STX_API const char *stx_reply_string(const stx_reply *r, size_t *len);
/** Value of an INTEGER reply; 0 for other types or NULL r. */
STX_API long long stx_reply_integer(const stx_reply *r);
/** Number of elements of an ARRAY reply; 0 for other types or NULL r. */
STX_API size_t stx_reply_count(const stx_reply *r);
/** Element i of an ARRAY reply, owned by r; NULL when i is out of range,
 * r is not an array or r is NULL. */
STX_API const stx_reply *stx_reply_at(const stx_reply *r, size_t i);
/** @} */

/** @defgroup partitions Partitioned streams
 * A logical stream S of P partitions is P streams: partition i is the
 * stream "{S#i}" (stx_partition_name()), so every partition has a hash tag
 * of its own and all the keys of one partition (its stream, and the meta,
 * state, dlq, attempts, live and lease keys of its groups) share its Redis
 * Cluster slot.  P is kept in the hash "{S}:stx-parts:LEN:S" (field
 * "partitions"), set by stx_stream_create() and raised only by
 * stx_stream_grow().  A partitioned stream's name holds no '{' or '}'.
 *
 * A message key K goes to partition crc32(K) % P: CRC-32 as zlib,
 * Python's zlib.crc32, Java's java.util.zip.CRC32 and Go's
 * hash/crc32.ChecksumIEEE compute it (IEEE 802.3 polynomial, reflected,
 * init and final xor 0xFFFFFFFF).  Vectors: crc32("123456789") =
 * 0xCBF43926; with P = 8, "sku-00" -> 0x477D1BD2 -> 2, "sku-01" ->
 * 0x307A2B44 -> 4, "order-42" -> 0x57F706DE -> 6; the empty key -> 0 -> 0.
 *
 * Growing P from P1 to P2 changes the partition of most keys (every key
 * whose crc32 % P2 differs from crc32 % P1; about 1 - P1/P2 of them).
 * Entries already written stay where they are, so a key's entries written
 * before and after the grow live in two partitions and are ordered only
 * within each.  Where per-key order matters across a grow, stop the
 * producers, let the consumers drain every partition, grow, then resume.
 * @{ */

/** The CRC-32 of key (IEEE, as zlib's crc32()); a NULL key hashes as empty. */
STX_API uint32_t stx_partition_hash(const void *key, size_t len);
/** The partition of key among partitions (1 to 1024): crc32(key) % partitions,
 * or STX_EINVAL. */
STX_API int stx_partition_of(const void *key, size_t key_len, unsigned partitions);
/** Write the name of partition `partition` of stream ("{STREAM#N}") into buf
 * (cap bytes; strlen(stream) + 16 always suffice).  @return its length,
 * STX_EINVAL (NULL or empty stream, a stream name with a brace, partition
 * 1024 or more, NULL buf), STX_ELIMIT (cap too small). */
STX_API int stx_partition_name(char *buf, size_t cap, const char *stream, unsigned partition);
/** Create the partitioned stream (only its metadata: each partition's
 * stream appears with its first entry or group).  Creating it again with
 * the same count is not an error.
 * @return STX_OK; STX_ECONFLICT when it exists with another count;
 * STX_EINVAL (partitions not in 1..1024, a bad name); connection errors. */
STX_API int stx_stream_create(stx_client *c, const char *stream, unsigned partitions);
/** Raise the partition count of stream to partitions (see above for what a
 * grow does to the key -> partition mapping); the same count is a no-op.
 * Running members pick the new partitions up at their next lease renewal.
 * @return STX_OK; STX_EINVAL when partitions is below the current count
 * (shrinking is refused: the dropped partitions' entries and state would be
 * orphaned); STX_ENOTFOUND when stream was never created. */
STX_API int stx_stream_grow(stx_client *c, const char *stream, unsigned partitions);
/** The partition count of stream.  @return STX_OK; STX_ENOTFOUND (not a
 * partitioned stream); STX_EINVAL; connection errors. */
STX_API int stx_stream_partitions(stx_client *c, const char *stream, unsigned *partitions);
/** Produce one message to partitioned stream: to partition crc32(key) % P
 * when key is not NULL (an empty key is a key); without a key, to
 * crc32(idempotency key) % P when opts has one (a retry finds its dedup
 * record), else to the partitions in turn.  The count P is read from Redis
 * on each call (one round trip more than stx_produce(); a program producing
 * much computes stx_partition_of() and stx_partition_name() itself and
 * uses stx_produce_batch()).  Idempotency works per partition, as
 * stx_produce() describes.  *partition (if not NULL) gets the partition.
 * @return as stx_produce(), plus STX_ENOTFOUND when stream is not
 * partitioned. */
STX_API int stx_produce_keyed(stx_client *c, const char *stream, const void *key, size_t key_len,
                              const stx_field *fields, size_t nfields,
                              const stx_produce_opts *opts, stx_produce_result *result,
                              unsigned *partition);
/** stx_read_range() over every partition of stream, merged by id (entries
 * of equal ids in partition order); stx_msg_stream() of each names its
 * partition, stx_msg_partition() gives its number.  At most limit entries
 * (0: 1000), except that entries of one id are never split, so resuming
 * after stx_entries_last_id() misses nothing.  Entry ids of different
 * partitions are comparable as times; on one Redis they are also unique
 * within a millisecond only per partition.
 * @return as stx_read_range(), plus STX_ENOTFOUND (not partitioned). */
STX_API int stx_read_range_all(stx_client *c, const char *stream, const char *after,
                               const char *to, size_t limit, stx_entries **out);
/** stx_read_time() over every partition, merged as stx_read_range_all(). */
STX_API int stx_read_time_all(stx_client *c, const char *stream, int64_t from_ms, int64_t to_ms,
                              size_t limit, stx_entries **out);
/** The partition a message was read from, parsed from its stream name
 * ("{S#N}" gives N), or -1 when the stream is not a partition (or msg is
 * NULL or outside its handler call). */
STX_API int stx_msg_partition(const stx_msg *msg);
/** @} */

/** @defgroup member Members: many partitions in one handle
 * A member serves some of the partitions of a consumer group of a
 * partitioned stream, together with other members (threads, processes,
 * hosts), each partition by one member at a time.  It is configured as a
 * processor (stx_config: stream = the logical stream, group, handler, url,
 * batch_size, ...) plus lease_ttl_ms (default 10000).  It runs in the
 * caller's thread: stx_member_poll() does the membership work when due and
 * polls each partition it owns once, round-robin, each with at most one
 * batch, so a busy partition cannot starve the others.  Inside, one
 * stx_processor per owned partition does the work, with the same
 * exactly-once commit as a single processor.
 *
 * Leases: a partition's owner holds its lease key (stx_key_name() kind
 * "lease" of the partition's stream and the group: owner token, expires_ms,
 * epoch), written by a script with Redis' own clock (TIME).  The owner
 * renews it every lease_ttl_ms / 3; a lease that ran out may be taken by
 * another member, which then takes the partition's epoch as any new
 * processor does (fencing every commit of the old owner).  So a member
 * paused past its lease (SIGSTOP, a long GC, a partitioned network) finds,
 * when it resumes, its commits refused (STX_EFENCED inside) and drops the
 * partition: it writes nothing.
 *
 * Membership: each member records itself in the group's member hash (kind
 * "members" of the logical stream and the group: id -> Redis time it
 * expires) at each renewal, and computes the owner of each partition by
 * rendezvous hashing over the live members (the member with the highest
 * hash64(member id, partition) wins): deterministic, the same on every
 * member, and sticky (a member joining or leaving moves only the
 * partitions it wins or held).  A member releases a partition that another
 * live member now wins, between two polls (so at a commit boundary: the
 * batch in hand was committed), and takes the partitions it wins once their
 * leases are free.  A joining member gets its share (about P/N) within one
 * renewal period after the others see it (at most lease_ttl_ms); a dead
 * member's partitions are taken within lease_ttl_ms plus one renewal
 * period.
 *
 * The LMDB snapshot (snapshot_dir) is per partition (its own stream
 * name), and a partition that moved is loaded from it only when it is
 * provably Redis' state (same lineage, commit seq and writer): after
 * another member committed, it is rebuilt from Redis.
 * @{ */
typedef struct stx_member stx_member;

/** Create a member from conf (copied).  No I/O.  As stx_processor_new(),
 * *out is set even on failure (unless out of memory) for stx_member_errmsg().
 * @return STX_OK, STX_EINVAL (no stream, group or handler, a stream name a
 * partitioned stream cannot have, command_timeout_ms plus (with
 * commit_wait_replicas) commit_wait_timeout_ms not below two thirds of
 * lease_ttl_ms: a poll may wait that long, and leases are renewed between
 * polls), STX_ENOMEM. */
STX_API int stx_member_new(stx_member **out, const stx_config *conf);
/** One round: heartbeat, renew, release and acquire when due (every
 * lease_ttl_ms / 3), then one poll of each owned partition (round-robin,
 * each read waiting 1 ms at most, and overlapped batches chained for 1 ms
 * at most; when none had anything, it waits min(block_ms, 20 ms) before
 * returning 0).
 * @return messages committed (>= 0); STX_EHANDLER (as
 * stx_processor_poll(); errmsg names the partition); STX_ESTOPPED after
 * stx_member_stop() (the member then released its partitions and left the
 * member hash); STX_ENOTFOUND when the stream is not partitioned; retriable
 * errors (the next poll goes on). */
STX_API int stx_member_poll(stx_member *m);
/** Poll until stx_member_stop() (returns STX_OK) or a fatal error.
 * Handler failures and retriable errors are logged and retried as
 * stx_processor_run() does. */
STX_API int stx_member_run(stx_member *m);
/** Ask poll()/run() to return; async-signal-safe and thread-safe.  NULL: no-op. */
STX_API void stx_member_stop(stx_member *m);
/** Release the partitions still held, leave the member hash and free.  NULL: no-op. */
STX_API void stx_member_free(stx_member *m);
/** Message of the last error ("" none; a static text for NULL). */
STX_API const char *stx_member_errmsg(const stx_member *m);
/** The member's id (consumer name, '-', 8 random hex digits): its field in the
 * member hash and the owner of its leases ("" for NULL). */
STX_API const char *stx_member_id(const stx_member *m);
/** Number of partitions of the stream as last seen (0 before the first poll). */
STX_API unsigned stx_member_partitions(const stx_member *m);
/** Whether the member owns partition i now (0 for NULL or out of range). */
STX_API int stx_member_owns(const stx_member *m, unsigned i);
/** Counters of partition i's processor while this member owned it (added
 * up over every time it did); all zero for a NULL m or i out of range. */
STX_API void stx_member_partition_stats(const stx_member *m, unsigned i, stx_stats *out);
/** @} */

/** @defgroup outbox Outbox and relay: publishes to another slot
 * A commit script can only write keys of its own Redis Cluster slot.  A
 * publish whose target is in another slot (on a cluster), or every publish
 * when publish_mode=outbox (default "direct"), is written atomically with
 * the commit into the group's outbox stream (stx_key_name() kind
 * "outbox"), in the source stream's slot, as an entry with the fields
 * "stx-target", "stx-source" (the source stream), "stx-source-id" (the
 * source entry's id), then the publish's own pairs; the outbox entry's id
 * is its outbox id.  The relay appends it to its target exactly once: a
 * script in the target's slot appends only entries above the high-water
 * mark of the outbox, kept in the target's "{T}:stx-relayed:LEN:TARGET"
 * hash (field: the outbox key), and moves the mark with the append; the
 * outbox entry is deleted only after that.  The processor (or member) that
 * owns the source stream relays after its commits, at most relay_batch
 * entries per poll (default 256); its stats show relayed, relay_refusals,
 * outbox_len and outbox_age_ms; a target that refuses (wrong type, out of
 * memory) holds back only its own entries; an oldest entry older than
 * outbox_warn_ms (default 10000) is logged; at outbox_max entries (default
 * 100000) the processor stops reading new entries until the relay catches
 * up.  Entries of one source stream to one target arrive in commit order.
 * @{ */
typedef struct stx_outbox_info {
    uint64_t relayed;       /**< entries appended to their targets by this call */
    uint64_t refusals;      /**< relay attempts a target refused (errmsg names the last) */
    uint64_t length;        /**< entries left in the outbox */
    uint64_t oldest_age_ms; /**< age of the oldest entry left (by its id), 0 when empty */
} stx_outbox_info;

/** Relay the outbox of (stream, group) for an operator: the same steps as
 * the owning processor's, until the outbox is empty, only refused entries
 * are left, or max_entries were relayed; max_entries 0 only reads the
 * length and age.  Safe while the owner relays too (the marks keep every
 * entry once).  *out (if not NULL) receives the figures.
 * @return STX_OK (refusals are counted, not errors: stx_client_errmsg()
 * names the last one); STX_EINVAL for a NULL c, stream or group, empty
 * names or a negative max_entries; connection errors. */
STX_API int stx_outbox_relay(stx_client *c, const char *stream, const char *group,
                             long long max_entries, stx_outbox_info *out);
/** @} */

/** @defgroup router Router: handlers by event type
 * A handler for stx_config_set_handler() that dispatches on the "type"
 * field.  Patterns are exact names or globs ("order.*", "*").  Every
 * handler whose pattern matches runs, in registration order, inside the
 * same transaction: all commit or none.  An event no pattern matches is
 * acknowledged (or, with stx_router_set_unmatched_fail(), fails so that it
 * is dead-lettered).
 * @{ */
typedef struct stx_router stx_router;
STX_API stx_router *stx_router_new(void);            /* NULL only when out of memory */
STX_API void stx_router_free(stx_router *r);         /* NULL-safe */
/** Register handler for pattern (copied).  STX_OK, STX_EINVAL (r, pattern or
 * handler NULL), STX_ENOMEM. */
STX_API int stx_router_add(stx_router *r, const char *pattern, stx_handler_fn handler, void *user_data);
/** Unmatched events fail (STX_HANDLER_FAIL) instead of being acknowledged.
 * NULL r is a no-op. */
STX_API void stx_router_set_unmatched_fail(stx_router *r, int fail);
/** The dispatching handler: stx_config_set_handler(conf, stx_router_handle, router).
 * A NULL router or msg, or a msg outside its handler call, gives
 * STX_HANDLER_FAIL; txn is handed to the handlers as it is. */
STX_API int stx_router_handle(const stx_msg *msg, stx_txn *txn, void *router);
/** @} */

#ifdef __cplusplus
}
#endif
#endif /* STREAMTX_H */
