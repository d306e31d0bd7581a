/* Key layout.  Every key of (stream, group) must (1) live in the stream's
 * Redis Cluster slot, so one script can touch the stream and all of them,
 * and (2) be derived injectively: no two (stream, group, kind) triples, and
 * no (stream, idempotency key) pair, may give the same key, or one group
 * would take another's offset, state or dedup record for its own.
 *
 * How Redis picks the slot of a key K: if K has a '{' and, after the first
 * '{', a '}' with at least one byte between them, the bytes between the
 * first '{' and the first '}' after it decide; otherwise all of K decides.
 * The slot is CRC16/XMODEM of those bytes mod 16384.  Call the stream's
 * slot-deciding bytes S.
 *
 * Every derived key starts with "{T}" where T is:
 *   - S itself when S holds no '}': "{S}" makes Redis take exactly S, so the
 *     key hashes like the stream (S is never empty: a tag is non-empty by
 *     the rule above, and empty stream names are refused);
 *   - otherwise (possible only when S is the whole name, e.g. "a}b", "{}x",
 *     "}{"), S cannot sit between braces, since Redis would cut it at its
 *     first '}'.  T is then a 4-byte "slot tag" computed for the stream's
 *     slot: each byte is 0x40 | n with n a nibble ('@' to 'O'), so T holds
 *     no brace.  CRC16 has no init or final xor, so over messages of one
 *     length it is linear in the message bits: the 16 free nibble bits map
 *     linearly onto the 14 slot bits (rank 14, checked for every slot by
 *     tests/test_keys.c), and slot_tag() solves that 16x14 system over
 *     GF(2) by elimination on each call: exact, no table, no search.
 * Normal names keep readable keys: stream "orders", group "g" gives
 * "{orders}:stx:6:orders:g:meta".
 *
 * Keys:
 *   "{T}:stx:LEN:STREAM:GROUP:KIND"  KIND one of meta, state, dlq, attempts, live,
 *                                    lease (a partition's), members (a logical stream's),
 *                                    outbox (publishes waiting for the relay)
 *   "{T}:stx-idem:LEN:STREAM:KEY"    KEY any bytes
 *   "{T}:stx-relayed:LEN:STREAM"     of a publish target STREAM: the relay's
 *                                    high-water marks (relay.c)
 * LEN is the decimal byte length of STREAM.
 *
 * Why this is injective.  T never holds '}', so T is the bytes up to the
 * key's first '}'.  Then comes ":stx:" or ":stx-idem:", which tells the two
 * families apart, then LEN up to the next ':', then exactly LEN bytes of
 * STREAM, then ':'.  In a group key the rest is GROUP ":" KIND, and since
 * no KIND holds ':', KIND is what follows the rest's last ':' and GROUP is
 * what precedes it; in a dedup key the rest is KEY.  So the key gives back
 * (STREAM, GROUP, KIND) or (STREAM, KEY): two different inputs cannot meet.
 * A relayed key is its family's prefix, LEN, and exactly LEN bytes of
 * STREAM, ending the key: it gives STREAM back the same way.
 * (T need not be parsed back: it is a function of STREAM.)  The old layout
 * put the raw stream name in the braces, so "ab{x}" with a crafted group
 * and "x}:stx:5:ab{x" with group "g" gave one key; the length prefix alone
 * could not help while the tag part was ambiguous. */
#include "keys.h"

#include <inttypes.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "streamtx.h"

/* CRC16/XMODEM (polynomial 0x1021, init 0, no final xor), as Redis
 * Cluster's crc16(). Bitwise: keys are derived a few times per process. */
static uint16_t crc16(const void *buf, size_t len)
{
    const unsigned char *p = buf;
    uint16_t crc = 0;
    for (size_t i = 0; i < len; i++) {
        crc ^= (uint16_t)(p[i] << 8);
        for (int b = 0; b < 8; b++)
            crc = (uint16_t)(crc & 0x8000 ? (crc << 1) ^ 0x1021 : crc << 1);
    }
    return crc;
}

/* The slot-deciding bytes of a key, as Redis Cluster computes them: the
 * bytes between the first '{' and the next '}', when not empty; else all. */
static void hash_tag(const char *s, size_t n, const char **tag, size_t *len)
{
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

unsigned stx_key_slot(const void *key, size_t len)
{
    const char *tag;
    size_t tag_len;
    hash_tag(key, len, &tag, &tag_len);
    return crc16(tag, tag_len) & 16383u;
}

void stx_slot_tag(unsigned slot, char out[STX_SLOT_TAG_LEN])
{
    /* Free bit k (0..15) is bit k % 4 of byte k / 4.  basis[b] holds a
     * reduced column whose highest set bit is b, and which free bits
     * combine to it. */
    uint16_t vec[14] = {0}, comb[14] = {0};
    for (unsigned k = 0; k < 16; k++) {
        unsigned char m[STX_SLOT_TAG_LEN] = {0};
        m[k / 4] = (unsigned char)(1u << (k % 4));
        uint16_t v = crc16(m, sizeof m) & 16383u, c = (uint16_t)(1u << k);
        for (int b = 13; b >= 0 && v; b--) {
            if (!(v >> b & 1)) continue;
            if (!vec[b]) {
                vec[b] = v;
                comb[b] = c;
                v = 0;
                break;
            }
            v ^= vec[b];
            c ^= comb[b];
        }
    }
    /* crc(base ^ delta) = crc(base) ^ crc(delta) for messages of one length. */
    static const unsigned char base[STX_SLOT_TAG_LEN] = {0x40, 0x40, 0x40, 0x40};
    uint16_t want = (uint16_t)((slot ^ crc16(base, sizeof base)) & 16383u), x = 0;
    for (int b = 13; b >= 0; b--) {
        if (!(want >> b & 1)) continue;
        want ^= vec[b]; /* vec[b] != 0 for every b: the map has rank 14 */
        x ^= comb[b];
    }
    for (unsigned i = 0; i < STX_SLOT_TAG_LEN; i++)
        out[i] = (char)(0x40 | ((x >> (4 * i)) & 15u));
}

/* The T of the layout above for stream (n bytes): *tag points at it (into
 * stream, or into buf). */
static void key_tag(const char *stream, size_t n, char buf[STX_SLOT_TAG_LEN],
                    const char **tag, size_t *len)
{
    hash_tag(stream, n, tag, len);
    if (memchr(*tag, '}', *len)) {
        stx_slot_tag(crc16(*tag, *len) & 16383u, buf);
        *tag = buf;
        *len = STX_SLOT_TAG_LEN;
    }
}

static int kind_ok(const char *kind)
{
    return kind && (strcmp(kind, "meta") == 0 || strcmp(kind, "state") == 0 ||
                    strcmp(kind, "dlq") == 0 || strcmp(kind, "attempts") == 0 ||
                    strcmp(kind, "live") == 0 || strcmp(kind, "lease") == 0 ||
                    strcmp(kind, "members") == 0 || strcmp(kind, "outbox") == 0);
}

int stx_key_name(char *buf, size_t cap, const char *stream, const char *group,
                 const char *kind)
{
    if (!buf || !stream || !group || !*stream || !*group || !kind_ok(kind)) return STX_EINVAL;
    size_t stream_len = strlen(stream);
    char slot_tag[STX_SLOT_TAG_LEN];
    const char *tag;
    size_t tag_len;
    key_tag(stream, stream_len, slot_tag, &tag, &tag_len);
    if (tag_len > INT_MAX) return STX_ELIMIT;
    int n = snprintf(buf, cap, "{%.*s}:stx:%zu:%s:%s:%s", (int)tag_len, tag, stream_len,
                     stream, group, kind);
    if (n < 0 || (size_t)n >= cap) return STX_ELIMIT;
    return n;
}

char *stx_key_alloc(const char *stream, const char *group, const char *kind)
{
    if (!stream || !group || !kind) return NULL;
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
    size_t stream_len = strlen(stream);
    char slot_tag[STX_SLOT_TAG_LEN];
    const char *tag;
    size_t tag_len;
    key_tag(stream, stream_len, slot_tag, &tag, &tag_len);
    /* "{" T "}:stx-idem:" LEN ":" STREAM ":" KEY NUL */
    size_t cap = tag_len + stream_len + idem_len + 48;
    if (cap < idem_len || tag_len > INT_MAX) return NULL;
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

char *stx_key_alloc_relayed(const char *stream)
{
    if (!stream || !*stream) return NULL;
    size_t stream_len = strlen(stream);
    char slot_tag[STX_SLOT_TAG_LEN];
    const char *tag;
    size_t tag_len;
    key_tag(stream, stream_len, slot_tag, &tag, &tag_len);
    size_t cap = tag_len + stream_len + 48;
    if (tag_len > INT_MAX) return NULL;
    char *buf = malloc(cap);
    if (!buf) return NULL;
    int n = snprintf(buf, cap, "{%.*s}:stx-relayed:%zu:%s", (int)tag_len, tag, stream_len, stream);
    if (n < 0 || (size_t)n >= cap) {
        free(buf);
        return NULL;
    }
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
