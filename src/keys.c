/* Key layout: every key of (stream, group) carries the stream's Redis
 * Cluster hash tag so one commit touches one slot. */
#include "keys.h"

#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "streamtx.h"

/* The slot-deciding part of a key, as Redis Cluster computes it: the bytes
 * between the first '{' and the next '}', when not empty; else all. */
static void hash_tag(const char *s, const char **tag, size_t *len)
{
    size_t n = strlen(s);
    const char *open = memchr(s, '{', n);
    if (open) {
        const char *close = memchr(open + 1, '}', n - (size_t)(open + 1 - s));
        if (close && close > open + 1) {
            *tag = open + 1;
            *len = (size_t)(close - open - 1);
            return;
        }
    }
    *tag = s;
    *len = n;
}

static int kind_ok(const char *kind)
{
    return kind && (strcmp(kind, "meta") == 0 || strcmp(kind, "state") == 0 ||
                    strcmp(kind, "dlq") == 0 || strcmp(kind, "attempts") == 0);
}

int stx_key_name(char *buf, size_t cap, const char *stream, const char *group,
                 const char *kind)
{
    if (!buf || !stream || !group || !*stream || !*group || !kind_ok(kind)) return STX_EINVAL;
    const char *tag;
    size_t tag_len;
    hash_tag(stream, &tag, &tag_len);
    int n = snprintf(buf, cap, "{%.*s}:stx:%zu:%s:%s:%s", (int)tag_len, tag, strlen(stream),
                     stream, group, kind);
    if (n < 0 || (size_t)n >= cap) return STX_ELIMIT;
    return n;
}

char *stx_key_alloc(const char *stream, const char *group, const char *kind)
{
    size_t cap = 2 * strlen(stream) + strlen(group) + strlen(kind) + 48;
    char *buf = malloc(cap);
    if (!buf) return NULL;
    if (stx_key_name(buf, cap, stream, group, kind) < 0) {
        free(buf);
        return NULL;
    }
    return buf;
}

char *stx_key_alloc_idem(const char *stream, const void *idem, size_t idem_len,
                         size_t *out_len)
{
    if (!stream || !*stream || (!idem && idem_len)) return NULL;
    const char *tag;
    size_t tag_len;
    hash_tag(stream, &tag, &tag_len);
    size_t stream_len = strlen(stream);
    /* "{" TAG "}:stx-idem:" LEN ":" STREAM ":" KEY NUL: a segment of its
     * own after the tag, so no group name can make a group key equal. */
    size_t cap = tag_len + stream_len + idem_len + 48;
    if (cap < idem_len) return NULL;
    char *buf = malloc(cap);
    if (!buf) return NULL;
    int n = snprintf(buf, cap, "{%.*s}:stx-idem:%zu:%s:", (int)tag_len, tag, stream_len, stream);
    if (n < 0 || (size_t)n + idem_len >= cap) {
        free(buf);
        return NULL;
    }
    if (idem_len) memcpy(buf + n, idem, idem_len);
    buf[(size_t)n + idem_len] = '\0';
    if (out_len) *out_len = (size_t)n + idem_len;
    return buf;
}

static int parse_u64(const char *s, size_t len, uint64_t *out)
{
    if (len == 0 || len > 20) return -1;
    uint64_t v = 0;
    for (size_t i = 0; i < len; i++) {
        if (s[i] < '0' || s[i] > '9') return -1;
        unsigned d = (unsigned)(s[i] - '0');
        if (v > (UINT64_MAX - d) / 10) return -1;
        v = v * 10 + d;
    }
    *out = v;
    return 0;
}

int stx_id_parse(const char *s, size_t len, stx_id *out)
{
    const char *dash = memchr(s, '-', len);
    if (!dash) return -1;
    size_t ms_len = (size_t)(dash - s);
    if (parse_u64(s, ms_len, &out->ms) != 0) return -1;
    return parse_u64(dash + 1, len - ms_len - 1, &out->seq);
}

int stx_id_cmp(stx_id a, stx_id b)
{
    if (a.ms != b.ms) return a.ms < b.ms ? -1 : 1;
    if (a.seq != b.seq) return a.seq < b.seq ? -1 : 1;
    return 0;
}

void stx_id_format(stx_id id, char *buf)
{
    snprintf(buf, STX_ID_MAX, "%" PRIu64 "-%" PRIu64, id.ms, id.seq);
}
