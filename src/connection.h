/* The session: one connection to one Redis node (TCP, TLS or a Unix
 * socket) with AUTH, SELECT, CLIENT SETNAME, timeouts, pipelining, bounded
 * replies and the classification of error replies into STX_* codes.
 * Everything in the library that talks to Redis goes through it; see the
 * opening comment of connection.c for how it is built. */
#ifndef STX_CONNECTION_H
#define STX_CONNECTION_H

#include <stddef.h>
#include <hiredis/hiredis.h>

#include "url.h"

/* The open stream (socket, TLS state, reply parser): connection.c. */
typedef struct stx_session stx_session;
/* Routing over the nodes of a Redis Cluster: cluster.c. */
typedef struct stx_cluster stx_cluster;

/* Default bound of one reply (stx_conn.max_reply_bytes). */
#define STX_CONN_MAX_REPLY_BYTES (1024UL * 1024 * 1024)

typedef struct stx_conn {
    stx_session *ctx;           /* non-NULL exactly while connected */
    stx_url url;                /* address, credentials, db, TLS settings */
    long connect_timeout_ms;    /* TCP/Unix connect plus the TLS handshake */
    long command_timeout_ms;    /* each wait for the socket while sending or reading */
    /* Bound of the memory one reply may make the client allocate, as
     * estimated from the reply's headers before the parser sees its bytes
     * (connection.c: "Bounded replies").  A reply beyond it closes the
     * connection with STX_EREDIS. */
    size_t max_reply_bytes;
    const char *name;           /* CLIENT SETNAME after connecting, or NULL;
                                   sent as stx_conn_client_name() makes it */
    char err[1024];             /* message of the last failure */
    /* Set while connected to a Redis Cluster: the calls below are routed
     * by cluster.c and ctx only says "connected" (it is one node's session,
     * owned by the cluster).  NULL on a single Redis. */
    stx_cluster *cluster;
    char cluster_known[1024];   /* nodes learned, tried again at the next open */
} stx_conn;

/* Set up c (not connected).  url is copied. */
void stx_conn_init(stx_conn *c, const stx_url *url, long connect_timeout_ms,
                   long command_timeout_ms);
/* Connect (closing any previous connection), TLS handshake, AUTH, CLIENT
 * SETNAME and SELECT.  STX_OK; STX_ECONN (cannot connect, lost, timed out
 * while connecting), STX_ETLS (TLS settings, certificate check or
 * handshake refused), STX_EAUTH, STX_ETIMEOUT, STX_ENOMEM; c->err says why. */
int stx_conn_open(stx_conn *c);
/* stx_conn_open() to exactly c->url, never routed (cluster.c's sessions). */
int stx_conn_open_node(stx_conn *c);
/* Close the connection (no-op when closed); c can be opened again. */
void stx_conn_close(stx_conn *c);

/* Send a command and read its reply.  On STX_OK *reply is a reply that is not
 * an error; the caller frees it with freeReplyObject().  An error reply is
 * turned into a code (see stx_conn_reply_code()) with its text in c->err; a
 * broken connection closes c and gives STX_ECONN or STX_ETIMEOUT. */
int stx_conn_command(stx_conn *c, redisReply **reply, int argc, const char **argv,
                     const size_t *lens);

/* As stx_conn_command(), but an error reply is a reply too (STX_OK), for
 * callers that show Redis's answer as it is (stx_client_call()). */
int stx_conn_command_raw(stx_conn *c, redisReply **reply, int argc, const char **argv,
                         const size_t *lens);

/* Pipelining: append a command (buffered, nothing is sent), then read the
 * replies in order (the first read sends everything appended). */
int stx_conn_append(stx_conn *c, int argc, const char **argv, const size_t *lens);
int stx_conn_read(stx_conn *c, redisReply **reply);
/* Send what was appended now, without reading (STX_OK, or the connection
 * broke and is closed).  On a cluster the first read sends it. */
int stx_conn_flush(stx_conn *c);
/* As stx_conn_read(), an error reply being a reply (STX_OK). */
int stx_conn_read_raw(stx_conn *c, redisReply **reply);
/* The code of reply (STX_OK unless an error reply), its text in c->err
 * as stx_conn_read() would have set it; reply is not freed. */
int stx_conn_check_reply(stx_conn *c, const redisReply *reply);

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

/* Use timeout_ms for each wait on the socket until the next call of this
 * function or the next open (blocking reads such as XREAD BLOCK). */
void stx_conn_set_timeout(stx_conn *c, long timeout_ms);

#endif
