/* The outbox and its relay (relay.c).  A publish that cannot be written by
 * the commit script itself (its target is in another Redis Cluster slot,
 * or publish_mode=outbox) goes, atomically with the commit, into the
 * group's outbox stream in the source partition's slot; the relay then
 * forwards it to its target through lua/relay.lua, exactly once. */
#ifndef STX_RELAY_H
#define STX_RELAY_H

#include <stddef.h>
#include <stdint.h>

#include "connection.h"
#include "scripts.h"

/* Field names of an outbox entry, before the publish's own pairs. */
#define STX_OUTBOX_TARGET "stx-target"
#define STX_OUTBOX_SOURCE "stx-source"
#define STX_OUTBOX_SOURCE_ID "stx-source-id"

struct stx_blocked;

typedef struct stx_relay {
    char *outbox;               /* the outbox key */
    struct stx_blocked *blocked; /* targets that refused, each waiting its retry time */
    size_t nblocked;
    uint64_t relayed, refusals; /* counters */
    uint64_t len, age_ms;       /* the outbox after the last step */
    uint64_t next_check_us;     /* an empty outbox is looked at again from then on */
    uint64_t warned_us;         /* last lag or bound warning */
    char err[1024];             /* the last refusal, "" none */
} stx_relay;

/* How a step reports a refusal or a lag (level as stx_log_level). */
typedef void (*stx_relay_note_fn)(void *ctx, int level, const char *msg);

stx_relay *stx_relay_new(const char *stream, const char *group);
void stx_relay_free(stx_relay *r);

/* Forward at most budget outbox entries (reading at most 4 * budget), then
 * delete the entries their targets confirmed and read the outbox's length
 * and age.  A target that refuses is blocked (its entries wait; a retry
 * after a growing delay), the others go on.  Returns STX_OK or the
 * connection's error (the connection may be closed); *forwarded (if not
 * NULL) receives the entries confirmed in this step. */
int stx_relay_step(stx_relay *r, stx_conn *c, stx_scripts *sc, stx_argv *a, long budget,
                   size_t *forwarded, stx_relay_note_fn note, void *note_ctx);

#endif
