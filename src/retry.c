/* The run loops' retry policy (retry.h). */
#include "retry.h"

#include <stdio.h>
#include <string.h>

#include "streamtx.h"

void stx_retry_init(stx_retry *r, long max_ms)
{
    r->backoff_ms = 0;
    r->max_ms = max_ms;
    r->last[0] = '\0';
}

void stx_retry_reset(stx_retry *r)
{
    r->backoff_ms = 0;
    r->last[0] = '\0';
}

int stx_retry_next(stx_retry *r, const char *msg, long *delay_ms)
{
    int repeat = strcmp(r->last, msg) == 0;
    snprintf(r->last, sizeof r->last, "%s", msg);
    *delay_ms = r->backoff_ms;
    long next = r->backoff_ms < 100 ? 100 : r->backoff_ms * 2;
    r->backoff_ms = next > r->max_ms ? r->max_ms : next;
    return repeat ? STX_LOG_DEBUG : STX_LOG_WARN;
}
