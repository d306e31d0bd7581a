/* The processor's heartbeat: its stats published into Redis every
 * stats_interval_ms, from inside poll() (no thread), and read back by
 * stx_live_get().  Layout and format: the opening comment of heartbeat.c. */
#ifndef STX_HEARTBEAT_H
#define STX_HEARTBEAT_H

#include <stdint.h>

#include "streamtx.h"

/* The publisher's side, owned by the processor (p->hb). */
typedef struct stx_heartbeat stx_heartbeat;

struct stx_processor;

/* Publish when one is due (never more than once per stats_interval_ms;
 * the first at once).  Best effort: a failed write is logged (a warning
 * once, then at debug level) and never fails the poll; a write that broke
 * the connection leaves it closed for the poll's recovery to reopen. */
void stx_heartbeat_tick(struct stx_processor *p);
/* Remember the error poll() or start() is returning (its text is published
 * as last_error with the next heartbeat). */
void stx_heartbeat_error(struct stx_processor *p, int code);
/* The processor stops for good (stopped, fenced or freed): remove its
 * field at once when the connection is open (else it expires). */
void stx_heartbeat_leave(struct stx_processor *p);
/* Free p->hb (NULL-safe). */
void stx_heartbeat_free(stx_heartbeat *hb);

#endif
