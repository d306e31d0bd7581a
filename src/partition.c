/* Partitioned streams.  A logical stream S of P partitions is P ordinary
 * streams; partition i is the stream named "{S#i}", so its hash tag
 * ("S#i") is unique to (S, i): partitions spread over Redis Cluster slots,
 * and every key derived from a partition (keys.c: meta, state, dlq,
 * attempts, live, lease) shares that partition's slot.  P lives in the
 * metadata hash "{S}:stx-parts:LEN:S" (field partitions), set when S is
 * created and only ever raised.  The name is injective: the partition
 * number is the digits after the last '#', S what comes before it, and S
 * holds no braces (refused), so "{S#i}" cannot be another pair's name.
 *
 * The partition of a message key is CRC-32 (IEEE 802.3, zlib's crc32(),
 * the one every language ships) of the key's bytes, modulo P. */
#include "partition.h"
#include "reply.h"

#include <inttypes.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <zlib.h>

#include "processor.h" /* struct stx_msg */
#include "text.h"

uint32_t stx_partition_hash(const void *key, size_t len)
{
    if (!key) len = 0;
    uLong crc = crc32(0L, Z_NULL, 0);
    const unsigned char *p = key;
    /* zlib takes uInt lengths: feed large keys in pieces. */
    while (len > 0) {
        uInt step = len > (1u << 30) ? (1u << 30) : (uInt)len;
        crc = crc32(crc, p, step);
        p += step;
        len -= step;
    }
    return (uint32_t)crc;
}

int stx_partition_of(const void *key, size_t key_len, unsigned partitions)
{
    if ((!key && key_len) || partitions == 0 || partitions > STX_MAX_PARTITIONS) return STX_EINVAL;
    return (int)(stx_partition_hash(key, key_len) % partitions);
}

int stx_partition_name_ok(stx_client *c, const char *stream)
{
    const char *why = NULL;
    if (!stream || !*stream) why = "empty stream name";
    else if (strpbrk(stream, "{}")) why = "a partitioned stream's name holds no '{' or '}'";
    if (!why) return STX_OK;
    if (c) {
        char shown[128];
        stx_printable(stream ? stream : "", stream ? strlen(stream) : 0, shown, sizeof shown);
        return stx_client_fail(c, STX_EINVAL, "stream '%s': %s", shown, why);
    }
    return STX_EINVAL;
}

int stx_partition_name(char *buf, size_t cap, const char *stream, unsigned partition)
{
    if (!buf || stx_partition_name_ok(NULL, stream) != STX_OK || partition >= STX_MAX_PARTITIONS)
        return STX_EINVAL;
    int n = snprintf(buf, cap, "{%s#%u}", stream, partition);
    if (n < 0 || (size_t)n >= cap) return STX_ELIMIT;
    return n;
}

char *stx_partition_meta_key(const char *stream)
{
    if (stx_partition_name_ok(NULL, stream) != STX_OK) return NULL;
    size_t n = 2 * strlen(stream) + 48;
    char *k = malloc(n);
    if (k) snprintf(k, n, "{%s}:stx-parts:%zu:%s", stream, strlen(stream), stream);
    return k;
}

/* "{S#i}" for the library's own use (i < STX_MAX_PARTITIONS). */
static char *part_alloc(const char *stream, unsigned i)
{
    size_t n = strlen(stream) + 16;
    char *s = malloc(n);
    if (s && stx_partition_name(s, n, stream, i) < 0) {
        free(s);
        return NULL;
    }
    return s;
}

int stx_msg_partition(const stx_msg *msg)
{
    if (!msg || !msg->active || !msg->stream) return -1;
    const char *s = msg->stream;
    size_t n = strlen(s);
    if (n < 5 || s[0] != '{' || s[n - 1] != '}') return -1;
    const char *hash = NULL;
    for (const char *q = s + n - 2; q > s; q--)
        if (*q == '#') {
            hash = q;
            break;
        }
    if (!hash || hash == s + 1 || hash + 1 == s + n - 1 || strchr(s + 1, '{') ||
        strchr(s + 1, '}') != s + n - 1)
        return -1;
    long v = 0;
    for (const char *q = hash + 1; q < s + n - 1; q++) {
        if (*q < '0' || *q > '9' || (q == hash + 1 && *q == '0' && q + 1 < s + n - 1)) return -1;
        v = v * 10 + (*q - '0');
        if (v >= STX_MAX_PARTITIONS) return -1;
    }
    return (int)v;
}

static int count_call(stx_client *c, const char *what, const char *stream, const char *op,
                      unsigned partitions, unsigned *out)
{
    if (!c) return STX_EINVAL;
    c->errmsg[0] = '\0';
    int rc = stx_partition_name_ok(c, stream);
    if (rc != STX_OK) return rc;
    if (partitions < 1 || partitions > STX_MAX_PARTITIONS)
        return stx_client_fail(c, STX_EINVAL, "%s: %u partitions (1 to %d)", what, partitions,
                               STX_MAX_PARTITIONS);
    if ((rc = stx_client_ready(c)) != STX_OK) return rc;
    char *key = stx_partition_meta_key(stream);
    if (!key) return stx_client_fail(c, STX_ENOMEM, "%s: out of memory", what);
    stx_client_eval_begin(c);
    stx_client_eval_str(c, key);
    stx_client_eval_str(c, op);
    stx_argv_add_u64(&c->argv, partitions);
    redisReply *r;
    rc = stx_script_run(&c->scripts, &c->conn, STX_SCRIPT_PARTITIONS, &c->argv, 1, &r);
    stx_argv_reset(&c->argv);
    free(key);
    if (rc != STX_OK) return stx_client_fail(c, rc, "%s '%.200s': %s", what, stream, c->conn.err);
    const char *n = stx_client_elem_str(r, 1);
    unsigned have = n ? (unsigned)strtoul(n, NULL, 10) : 0;
    if (stx_client_reply_is(r, "OK")) {
        rc = STX_OK;
        if (out) *out = have;
    } else if (stx_client_reply_is(r, "EXISTS"))
        rc = stx_client_fail(c, STX_ECONFLICT,
                             "%s: stream '%.200s' exists with %u partitions (grow it to add "
                             "more)", what, stream, have);
    else if (stx_client_reply_is(r, "SHRINK"))
        rc = stx_client_fail(c, STX_EINVAL,
                             "%s: stream '%.200s' has %u partitions; shrinking to %u is refused "
                             "(entries and group state of the dropped partitions would be "
                             "orphaned)", what, stream, have, partitions);
    else if (stx_client_reply_is(r, "NOTFOUND"))
        rc = stx_client_fail(c, STX_ENOTFOUND, "%s: stream '%.200s' is not a partitioned stream "
                             "(stx_stream_create())", what, stream);
    else if (stx_client_reply_is(r, "WRONGTYPE"))
        rc = stx_client_fail(c, STX_EWRONGTYPE, "%s: key '%.200s' is not a hash", what,
                             stx_client_elem_str(r, 1) ? stx_client_elem_str(r, 1) : "?");
    else
        rc = stx_client_fail(c, STX_EREDIS, "%s: unexpected reply from the script", what);
    stx_reply_release(r);
    return rc;
}

int stx_stream_create(stx_client *c, const char *stream, unsigned partitions)
{
    return count_call(c, "create", stream, "create", partitions, NULL);
}

int stx_stream_grow(stx_client *c, const char *stream, unsigned partitions)
{
    return count_call(c, "grow", stream, "grow", partitions, NULL);
}

int stx_partition_count(stx_client *c, const char *stream, unsigned *n)
{
    int rc = stx_partition_name_ok(c, stream);
    if (rc != STX_OK) return rc;
    char *key = stx_partition_meta_key(stream);
    if (!key) return stx_client_fail(c, STX_ENOMEM, "out of memory");
    const char *argv[] = {"HGET", key, "partitions"};
    redisReply *r;
    rc = stx_client_command(c, "partitions", &r, 3, argv, NULL);
    free(key);
    if (rc != STX_OK) return rc;
    if (r->type == REDIS_REPLY_ERROR) {
        rc = stx_client_fail(c, stx_conn_reply_code(r->str), "partitions: %s", r->str);
    } else if (r->type != REDIS_REPLY_STRING) {
        rc = stx_client_fail(c, STX_ENOTFOUND, "stream '%.200s' is not a partitioned stream",
                             stream);
    } else {
        unsigned long v = strtoul(r->str, NULL, 10);
        if (v < 1 || v > STX_MAX_PARTITIONS)
            rc = stx_client_fail(c, STX_EREDIS, "stream '%.200s': bad partition count '%.20s'",
                                 stream, r->str);
        else
            *n = (unsigned)v;
    }
    stx_reply_release(r);
    return rc;
}

int stx_stream_partitions(stx_client *c, const char *stream, unsigned *partitions)
{
    if (!c || !partitions) return STX_EINVAL;
    c->errmsg[0] = '\0';
    int rc = stx_client_ready(c);
    if (rc != STX_OK) return rc;
    return stx_partition_count(c, stream, partitions);
}

int stx_produce_keyed(stx_client *c, const char *stream, const void *key, size_t key_len,
                      const stx_field *fields, size_t nfields, const stx_produce_opts *opts,
                      stx_produce_result *result, unsigned *partition)
{
    if (!c) return STX_EINVAL;
    c->errmsg[0] = '\0';
    if (!key && key_len) return stx_client_fail(c, STX_EINVAL, "produce: NULL key of %zu bytes", key_len);
    int rc = stx_client_ready(c);
    unsigned n = 0;
    if (rc == STX_OK) rc = stx_partition_count(c, stream, &n);
    if (rc != STX_OK) return rc;
    unsigned i;
    const char *idem = opts ? opts->idempotency_key : NULL;
    if (key) i = (unsigned)(stx_partition_hash(key, key_len) % n);
    /* Without a key an idempotency key decides, so a retry finds its dedup
     * record in the same partition; else entries go round. */
    else if (idem) i = (unsigned)(stx_partition_hash(idem, strlen(idem)) % n);
    else i = (unsigned)(c->spread++ % n);
    char *name = part_alloc(stream, i);
    if (!name) return stx_client_fail(c, STX_ENOMEM, "produce: out of memory");
    rc = stx_produce(c, name, fields, nfields, opts, result);
    free(name);
    if (rc == STX_OK && partition) *partition = i;
    return rc;
}

int stx_read_range_all(stx_client *c, const char *stream, const char *after, const char *to,
                       size_t limit, stx_entries **out)
{
    if (!c || !out) return STX_EINVAL;
    *out = NULL;
    c->errmsg[0] = '\0';
    int rc = stx_client_ready(c);
    unsigned n = 0;
    if (rc == STX_OK) rc = stx_partition_count(c, stream, &n);
    if (rc != STX_OK) return rc;
    if (!limit) limit = 1000;
    stx_entries **parts = calloc(n, sizeof *parts);
    if (!parts) return stx_client_fail(c, STX_ENOMEM, "read: out of memory");
    for (unsigned i = 0; i < n && rc == STX_OK; i++) {
        char *name = part_alloc(stream, i);
        if (!name) rc = stx_client_fail(c, STX_ENOMEM, "read: out of memory");
        else rc = stx_read_range(c, name, after, to, limit, &parts[i]);
        free(name);
    }
    if (rc != STX_OK) {
        for (unsigned i = 0; i < n; i++) stx_entries_free(parts[i]);
        free(parts);
        return rc;
    }
    return stx_entries_merge(c, parts, n, limit, after, out);
}

int stx_read_time_all(stx_client *c, const char *stream, int64_t from_ms, int64_t to_ms,
                      size_t limit, stx_entries **out)
{
    if (!c || !out) return STX_EINVAL;
    *out = NULL;
    if (from_ms < 0 || to_ms < from_ms)
        return stx_client_fail(c, STX_EINVAL, "read_time: bad interval [%lld, %lld]",
                               (long long)from_ms, (long long)to_ms);
    /* The ids of [from_ms, to_ms]: after the last id of from_ms - 1, up to
     * the last id of to_ms. */
    char after[STX_ID_MAX + 2], to[STX_ID_MAX + 2];
    if (from_ms == 0) snprintf(after, sizeof after, "0");
    else snprintf(after, sizeof after, "%lld-%llu", (long long)from_ms - 1, (unsigned long long)UINT64_MAX);
    snprintf(to, sizeof to, "%lld-%llu", (long long)to_ms, (unsigned long long)UINT64_MAX);
    return stx_read_range_all(c, stream, after, to, limit, out);
}
