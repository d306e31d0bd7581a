/* Internal layout of stx_client, the plain connection used for producing,
 * reading and administration.  Shared by client.c, producer.c, reader.c,
 * admin.c and dlq_admin.c, which run their commands and scripts through the
 * client's connection and script cache. */
#ifndef STX_CLIENT_H
#define STX_CLIENT_H

#include <stddef.h>
#include <hiredis/hiredis.h>

#include "connection.h"
#include "keys.h"
#include "scripts.h"
#include "streamtx.h"

struct stx_client {
    stx_conn conn;              /* closed after a connection failure; reopened by stx_client_ready() */
    stx_scripts scripts;        /* SHAs survive reconnects; NOSCRIPT reloads */
    stx_argv argv;              /* reused by every script call */
    char errmsg[1024];          /* message of the last failed call, "" after a success */
    unsigned long spread;       /* next partition of a keyless stx_produce_keyed() */
};

/* Start a public call: clear the message and reconnect when the previous
 * call lost the connection.  STX_OK or a connection error (message set). */
int stx_client_ready(stx_client *c);

/* Set c->errmsg (printf-style) and return code. */
int stx_client_fail(stx_client *c, int code, const char *fmt, ...)
#if defined(__GNUC__)
    __attribute__((format(printf, 3, 4)))
#endif
    ;

/* Run one command; on failure set the message "WHAT: <connection error>". */
int stx_client_command(stx_client *c, const char *what, redisReply **reply, int argc,
                       const char **argv, const size_t *lens);

/* Start an EVALSHA argument vector (three free head slots). */
void stx_client_eval_begin(stx_client *c);
/* Add a NUL-terminated string that outlives the call. */
void stx_client_eval_str(stx_client *c, const char *s);

/* Element i of an array reply as a string (STRING or STATUS), or NULL. */
const char *stx_client_elem_str(const redisReply *r, size_t i);
/* Whether r is an array whose first element is the string status. */
int stx_client_reply_is(const redisReply *r, const char *status);

/* The parts of an XINFO STREAM reply that streamtx uses. */
typedef struct stx_xinfo {
    long long length;
    long long entries_added;
    stx_id last_generated;
    stx_id max_deleted;         /* 0-0 when nothing was ever deleted */
    char first_id[STX_ID_MAX];  /* "" when the stream is empty */
    char last_id[STX_ID_MAX];
} stx_xinfo;

/* Parse an XINFO STREAM reply (RESP2: a flat name/value array).
 * STX_OK or STX_EREDIS when a field is missing or malformed. */
int stx_xinfo_parse(const redisReply *r, stx_xinfo *out);

/* Read n pipelined replies into replies[] (NULL where the reply was an
 * error).  Returns the first failure's code, with c->conn.err set; the
 * remaining replies are still read so the connection stays in step. */
int stx_client_read_all(stx_client *c, size_t n, redisReply **replies);

/* stx_read_range() with a choice: check_window 0 skips the retention check,
 * for streams whose entries are deleted on purpose (the dead-letter stream,
 * whose redriven entries are XDEL'd).  what prefixes error messages. */
int stx_client_read_range(stx_client *c, const char *what, const char *stream, const char *after,
                          const char *to, size_t limit, int check_window, stx_entries **out);

#endif
