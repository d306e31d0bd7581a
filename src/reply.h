/* Replies built in blocks: every redisReply of one top-level reply, its
 * element arrays and its strings are carved out of a few large blocks
 * instead of one malloc each.  A batch of 128 entries is some 1,500
 * objects; hiredis' default builder makes about 3,000 mallocs and as many
 * frees of them, which was the largest part of the client's work per
 * entry.  The replies keep hiredis' layout (redisReply), so the code that
 * reads them does not change; only freeing does: stx_reply_release(), never
 * freeReplyObject(), on a reply from a session. */
#ifndef STX_REPLY_H
#define STX_REPLY_H

#include <hiredis/hiredis.h>

/* The builder of one session's replies: its functions go to
 * redisReaderCreateWithFunctions() and its address into the reader's
 * privdata.  Zero it before use; it must outlive the reader. */
typedef struct stx_reply_builder {
    redisReplyObjectFunctions fn;
    struct reply_block *first;  /* blocks of the reply being built */
    struct reply_block *last;
} stx_reply_builder;

void stx_reply_builder_init(stx_reply_builder *b);

/* Free a top-level reply (the root of what the reader returned) with
 * everything in it.  NULL is fine. */
void stx_reply_release(redisReply *r);

#endif
