/* commit_wait_replicas: WAIT after each commit.
 *
 * Replication is asynchronous: a commit Redis acknowledged can still be lost
 * when its master dies before a replica has it, and the promoted replica
 * then holds an older offset, state and downstream (consistent with each
 * other: a replica applies the master's writes in order, each commit script
 * whole).  WAIT N T after the commit blocks until N replicas acknowledged
 * every write of this connection so far, or T passed.  It narrows the
 * window: a commit that N replicas acknowledged survives the loss of its
 * master when one of them is promoted.  It does not close it: a timeout
 * does not undo the commit, and Redis may still promote a replica that had
 * not acknowledged.  So an unacknowledged commit is counted and logged, not
 * failed. */
#include <inttypes.h>

#include "processor.h"
#include "reply.h"

void stx_commit_wait(stx_processor *p)
{
    if (p->conf.commit_wait_replicas <= 0) return;
    char n[24], ms[24];
    snprintf(n, sizeof n, "%ld", p->conf.commit_wait_replicas);
    snprintf(ms, sizeof ms, "%ld", p->conf.commit_wait_timeout_ms);
    const char *argv[] = {"WAIT", n, ms};
    redisReply *r = NULL;
    /* Without keys, WAIT goes where the commit went (cluster.c). */
    stx_conn_set_timeout(&p->conn, p->conf.commit_wait_timeout_ms + p->conf.command_timeout_ms);
    int rc = stx_conn_command(&p->conn, &r, 3, argv, NULL);
    stx_conn_set_timeout(&p->conn, p->conf.command_timeout_ms);
    long long acked = rc == STX_OK && r->type == REDIS_REPLY_INTEGER ? r->integer : -1;
    if (r) stx_reply_release(r);
    if (acked >= p->conf.commit_wait_replicas) return;
    p->stats.commits_unreplicated++;
    uint64_t now = stx_monotonic_us();
    uint64_t every = (uint64_t)(p->conf.stats_interval_ms > 0 ? p->conf.stats_interval_ms : 5000) * 1000u;
    if (p->wait_logged_us && now - p->wait_logged_us < every) return;
    stx_log(p, STX_LOG_WARN,
            "%" PRIu64 " commit(s) not acknowledged by %ld replica(s) within %ld ms since the "
            "last report (%" PRIu64 " in all; last: %s); a failover may lose them",
            p->stats.commits_unreplicated - p->wait_logged_count, p->conf.commit_wait_replicas,
            p->conf.commit_wait_timeout_ms, p->stats.commits_unreplicated,
            rc != STX_OK ? p->conn.err : acked >= 0 ? "too few replicas" : "unexpected reply");
    p->wait_logged_us = now;
    p->wait_logged_count = p->stats.commits_unreplicated;
}
