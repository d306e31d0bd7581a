/* Redis Cluster routing under the session API: a stx_conn opened on a
 * cluster (url.cluster auto or on) keeps one session per node, opened when a
 * command first needs that node, and sends each command to the node that
 * owns its first key's slot.  Callers keep using stx_conn_command(),
 * stx_conn_append() and stx_conn_read(): connection.c hands those calls to
 * this file while c->cluster is set.  See cluster.c for the rules. */
#ifndef STX_CLUSTER_H
#define STX_CLUSTER_H

#include <stddef.h>
#include <hiredis/hiredis.h>

#include "connection.h"

/* Number of hash slots of Redis Cluster. */
#define STX_CLUSTER_SLOTS 16384

/* Open c as connection.c's stx_conn_open() does, detecting a cluster
 * (url.cluster auto: one CLUSTER INFO after connecting; on: a server
 * without cluster support is STX_EINVAL).  On a plain server c is left as
 * a plain session (c->cluster NULL) and nothing below is used again.
 * Candidates: the URL's address, then its other seeds, then cluster_nodes,
 * then every node learned before the last close. */
int stx_cluster_open(stx_conn *c);
/* Close every node's session and free the routing state; the addresses of
 * the nodes are kept in c for the next open. */
void stx_cluster_close(stx_conn *c);

/* The routed forms of stx_conn_command(), stx_conn_command_raw() (raw: an
 * error reply is a reply), stx_conn_append(), stx_conn_read() and
 * stx_conn_set_timeout(). */
int stx_cluster_command(stx_conn *c, redisReply **reply, int argc, const char **argv,
                        const size_t *lens, int raw);
int stx_cluster_append(stx_conn *c, int argc, const char **argv, const size_t *lens);
int stx_cluster_read(stx_conn *c, redisReply **reply);
void stx_cluster_set_timeout(stx_conn *c, long timeout_ms);

/* ---- for callers that care where a slot lives ---------------------- */

/* 1 when c is connected to a Redis Cluster, else 0. */
int stx_cluster_on(const stx_conn *c);

/* Slot of the command's keys: 0..16383, -1 for a command without keys, or
 * -2 when its keys are in different slots (a message naming two of them in
 * err).  Knows where the keys are for the commands the library sends
 * (EVAL/EVALSHA/FCALL: numkeys; XREAD/XREADGROUP: after STREAMS; XINFO,
 * XGROUP, OBJECT, MEMORY USAGE: the third word; DEL, EXISTS, MGET, ...: all
 * arguments); any other command's key is its second word. */
int stx_cluster_command_slot(int argc, const char **argv, const size_t *lens, char *err,
                             size_t errlen);

/* "host:port" of the master of slot (as last learned) into buf.  STX_OK,
 * STX_ENOTFOUND (no owner known) or STX_ESTATE (not a cluster). */
int stx_cluster_slot_where(const stx_conn *c, unsigned slot, char *buf, size_t cap);

/* Send a command to the master of slot, whatever its keys (WAIT after a
 * commit of that slot, TIME, SCAN of that node).  MOVED, ASK and
 * TRYAGAIN are followed as for any command. */
int stx_cluster_command_at(stx_conn *c, unsigned slot, redisReply **reply, int argc,
                           const char **argv, const size_t *lens);

/* Learn the slot map again now (CLUSTER SLOTS from any reachable node). */
int stx_cluster_refresh(stx_conn *c);

/* Counters since the open (tests and stats). */
typedef struct stx_cluster_stats {
    unsigned long moved, ask, tryagain, clusterdown, refreshes, node_failures;
} stx_cluster_stats;
void stx_cluster_get_stats(const stx_conn *c, stx_cluster_stats *out);

#endif
