/* Partitioned streams: names, the partition count, leases and members
 * (partition.c, lease.c, member.c). */
#ifndef STX_PARTITION_H
#define STX_PARTITION_H

#include <stddef.h>
#include <stdint.h>

#include "client.h"
#include "streamtx.h"

/* Most partitions a logical stream may have. */
#define STX_MAX_PARTITIONS 1024

/* Allocate the metadata key of logical stream (NULL: out of memory or a
 * name partitioned streams refuse). */
char *stx_partition_meta_key(const char *stream);
/* Whether stream may be partitioned: not empty, no braces.  0 or STX_EINVAL
 * with the reason in c's message (c may be NULL). */
int stx_partition_name_ok(stx_client *c, const char *stream);
/* The partition count of stream into *n: STX_OK, STX_ENOTFOUND (not a
 * partitioned stream), or an error with c's message set. */
int stx_partition_count(stx_client *c, const char *stream, unsigned *n);

/* Merge parts[0..n) (each in id order; the array and its results are
 * taken whatever happens) into one
 * result in id order, ties by part index, at most limit entries but never
 * splitting entries of one id; the cursor of the result is the id of its
 * last entry (or after when empty).  reader.c. */
int stx_entries_merge(stx_client *c, stx_entries **parts, size_t n, size_t limit,
                      const char *after, stx_entries **out);

/* lease.c: one partition lease, on c's connection. */
typedef struct stx_lease_reply {
    int ok;                     /* the call's op succeeded */
    char owner[40];             /* HELD/LOST: who holds it ("" none) */
    long long expires_ms;       /* OK (acquire, renew) / HELD: when it runs out */
    long long now_ms;           /* Redis' clock */
} stx_lease_reply;
int stx_lease_call(stx_client *c, const char *lease_key, const char *op, const char *token,
                   long long ttl_ms, uint64_t epoch, stx_lease_reply *out);

/* member.c: the rendezvous score of member id for partition i; the live
 * member with the highest score (ties: the lower id) owns i. */
uint64_t stx_rendezvous_hash(const char *id, unsigned i);

#endif
