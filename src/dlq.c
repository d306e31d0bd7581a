/* Dead letters, the processor's part: moving an entry that cannot be
 * processed out of the way, atomically with the offset, so it neither
 * blocks the stream nor is lost.  Listing and redriving dead letters are
 * client calls (dlq_admin.c). */
#include <inttypes.h>
#include <stdio.h>
#include <string.h>
#include <time.h>

#include "processor.h"

int stx_dead_letter(stx_processor *p, const char *id, const char *reason, const char *error,
                    uint64_t attempts)
{
    struct timespec now;
    clock_gettime(CLOCK_REALTIME, &now);
    stx_eval_begin(p);
    stx_eval_str(p, p->conf.stream);
    stx_eval_str(p, p->key_meta);
    stx_eval_str(p, p->key_dlq);
    stx_eval_str(p, p->conf.group);
    stx_argv_add_u64(&p->argv, p->epoch);
    stx_eval_str(p, id);
    stx_eval_str(p, reason);
    stx_eval_str(p, error);
    stx_argv_add_u64(&p->argv, attempts);
    stx_argv_add_u64(&p->argv, (unsigned long long)now.tv_sec * 1000u +
                                   (unsigned long long)now.tv_nsec / 1000000u);
    redisReply *r;
    int rc = stx_script_run(&p->scripts, &p->conn, STX_SCRIPT_DLQ, &p->argv, 3, &r);
    if (rc != STX_OK) {
        if (rc == STX_ECONN || rc == STX_ETIMEOUT) p->started = 0; /* resync reads the offset */
        return stx_fail(p, rc, "dead-lettering entry %s: %s", id, p->conn.err);
    }
    if (stx_reply_is(r, "BEHIND")) {
        freeReplyObject(r);
        rc = stx_claim_behind(p);
        return rc != STX_OK ? rc : 1;
    }
    if (stx_reply_is(r, "DUP")) {
        freeReplyObject(r);
        p->stats.duplicates++;
        stx_log(p, STX_LOG_INFO, "entry %s was committed before; not dead-lettered", id);
        return STX_OK;
    }
    uint64_t seq;
    if (!stx_reply_is(r, "OK") || stx_reply_u64(r, 1, &seq) != 0) {
        rc = stx_script_status(p, r, "dead-letter");
        freeReplyObject(r);
        return rc;
    }
    freeReplyObject(r);
    stx_id idv;
    stx_id_parse(id, strlen(id), &idv);
    p->seq = seq;
    stx_set_offset(p, idv);
    stx_snapshot_meta(p);
    p->stats.dead_lettered++;
    stx_log(p, STX_LOG_WARN, "entry %s of stream '%s' dead-lettered (%s after %" PRIu64
            " attempts): %s", id, p->conf.stream, reason, attempts, error);
    return STX_OK;
}
