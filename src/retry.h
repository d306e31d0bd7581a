/* The retry policy of the run loops (stx_processor_run(), stx_member_run()):
 * a retriable error is retried at once, then after 100 ms doubling up to a
 * bound, and a run of equal errors is logged once as a warning, its repeats
 * as debug lines. */
#ifndef STX_RETRY_H
#define STX_RETRY_H

typedef struct stx_retry {
    long backoff_ms;
    long max_ms;
    char last[1024];            /* message of the previous error, "" after a success */
} stx_retry;

void stx_retry_init(stx_retry *r, long max_ms);
/* A poll succeeded: the next error is retried at once and logged. */
void stx_retry_reset(stx_retry *r);
/* A retriable error with message msg: *delay_ms gets how long to wait before
 * polling again; returns the level to log msg at (STX_LOG_WARN the first
 * time, STX_LOG_DEBUG for a repeat of the previous message). */
int stx_retry_next(stx_retry *r, const char *msg, long *delay_ms);

#endif
