/* Internal layout of stx_archive, shared by archive.c (connection, schema,
 * archiver) and archive_read.c (read-through, trim). */
#ifndef STX_ARCHIVE_INTERNAL_H
#define STX_ARCHIVE_INTERNAL_H

#include <stdatomic.h>
#include <stddef.h>
#include <stdint.h>
#include <libpq-fe.h>

#include "streamtx_archive.h"

struct stx_archive {
    PGconn *pg;                 /* NULL or bad: reopened by archive_ready() */
    char *conninfo;
    char errmsg[1024];
    atomic_int stop;            /* stx_archive_stop() */
    stx_archive_stats stats;
    int opened_once;
    /* The archiver's view of one stream, valid while synced: the group was
     * moved to PostgreSQL's offset (off) by this handle. */
    char *stream;
    int synced;
    int caught_up;              /* the last step found nothing new */
    uint64_t off_ms, off_seq;
    void (*progress)(const stx_archive_stats *st, void *ud);
    void *progress_ud;
    long progress_ms;
    uint64_t progress_at_us;    /* next progress call */
    unsigned char *buf;         /* COPY data of a batch */
    size_t len, cap;
};

/* Set a->errmsg (printf-style) and return code. */
int stx_archive_fail(stx_archive *a, int code, const char *fmt, ...)
#if defined(__GNUC__)
    __attribute__((format(printf, 3, 4)))
#endif
    ;

/* A usable connection: reconnects a lost one.  STX_OK or an error. */
int stx_archive_ready(stx_archive *a);

/* The code of a failed result (or of a failure without one): STX_ECONN for
 * a lost connection or a server shutting down, STX_EAUTH, STX_ESCHEMA for a
 * missing table or column, else STX_EARCHIVE; the message is set. */
int stx_archive_pg_fail(stx_archive *a, const PGresult *r, const char *what);

/* The installed schema must be the one this library knows (STX_ESCHEMA). */
int stx_archive_check_schema(stx_archive *a);

/* The archived offset of stream (0-0 when none) and the row count. */
int stx_archive_offset(stx_archive *a, const char *stream, uint64_t *ms, uint64_t *seq,
                       long long *archived, int *found);

/* "MS-SEQ" (or "MS", "0") as two numbers.  0 or -1. */
int stx_archive_parse_id(const char *s, uint64_t *ms, uint64_t *seq);

#endif
