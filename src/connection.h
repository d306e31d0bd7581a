/* One hiredis connection with AUTH, SELECT, timeouts and error
 * classification into STX_* codes. */
#ifndef STX_CONNECTION_H
#define STX_CONNECTION_H

#include <stddef.h>
#include <hiredis/hiredis.h>

#include "url.h"

typedef struct stx_conn {
    redisContext *ctx;          /* NULL when not connected */
    stx_url url;
    long connect_timeout_ms;
    long command_timeout_ms;
    const char *name;           /* CLIENT SETNAME after connecting, or NULL;
                                   sent as stx_conn_client_name() makes it */
    char err[1024];             /* message of the last failure */
} stx_conn;

void stx_conn_init(stx_conn *c, const stx_url *url, long connect_timeout_ms,
                   long command_timeout_ms);
/* Connect (closing any previous connection), AUTH and SELECT. */
int stx_conn_open(stx_conn *c);
void stx_conn_close(stx_conn *c);

/* Send a command and read its reply.  On STX_OK *reply is a reply that is not
 * an error; the caller frees it.  An error reply is turned into a code
 * (see stx_conn_reply_code()) with its text in c->err; a broken connection
 * closes c and gives STX_ECONN or STX_ETIMEOUT. */
int stx_conn_command(stx_conn *c, redisReply **reply, int argc, const char **argv,
                     const size_t *lens);

/* As stx_conn_command(), but an error reply is a reply too (STX_OK), for
 * callers that show Redis's answer as it is (stx_client_call()). */
int stx_conn_command_raw(stx_conn *c, redisReply **reply, int argc, const char **argv,
                         const size_t *lens);

/* Pipelining: append a command, then read the replies in order. */
int stx_conn_append(stx_conn *c, int argc, const char **argv, const size_t *lens);
int stx_conn_read(stx_conn *c, redisReply **reply);

/* Code of an error reply's text: NOSCRIPT → STX_ENOTFOUND, NOGROUP →
 * STX_ENOGROUP, WRONGTYPE → STX_EWRONGTYPE, OOM/MISCONF/READONLY/NOREPLICAS/
 * LOADING/BUSY/MASTERDOWN/UNBLOCKED (not run for now) → STX_EREDIS_REFUSED,
 * NOAUTH/WRONGPASS/NOPERM → STX_EAUTH, else STX_EREDIS. */
int stx_conn_reply_code(const char *text);

/* The name CLIENT SETNAME is given for name (malloc'd; NULL when out of
 * memory): Redis refuses spaces and bytes outside '!'..'~' in a client
 * name, so those become '_' (consumer names may hold any bytes; the client
 * name is only for operators' eyes, as the processor's own derivation). */
char *stx_conn_client_name(const char *name);

/* Use timeout_ms for the socket until the next call (blocking reads). */
void stx_conn_set_timeout(stx_conn *c, long timeout_ms);

#endif
