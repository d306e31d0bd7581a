/* Bounded msgpack walker, the typed int/str helpers and CRC-32.
 *
 * The walker is the gate for untrusted bytes and never hands them to
 * msgpack-c: msgpack_unpack() allocates a container's elements from its
 * declared count before reading them, so a forged 9-byte array32 header
 * costs gigabytes.  Here every declared length and count is checked against
 * the bytes that are actually left.  Writing is msgpack-c's packer (the
 * typed helpers) and CRC-32 is zlib's. */
#include "codec.h"

#include <stdlib.h>
#include <string.h>

#include <msgpack.h>
#include <zlib.h>

#include "streamtx.h"

/* The walker keeps one counter per open container on the C stack, so a
 * max_depth above this acts as this.  No caller needs more than
 * STX_MP_MAX_DEPTH. */
#define MP_STACK_CAP 256

/* What a type byte announces about the object that follows it. */
enum mp_what {
    MP_FIXED, /* payload of a size known from the type byte (ints, floats, fixext) */
    MP_RAW,   /* str, bin, ext: the payload size is a length */
    MP_ARRAY,
    MP_MAP,
    MP_BAD    /* 0xc1, never used by the format */
};

typedef struct mp_form {
    enum mp_what what;
    unsigned field; /* bytes of the big-endian length/count after the type byte */
    uint32_t n;     /* payload bytes (MP_FIXED) or length/count when field is 0 */
    unsigned extra; /* payload bytes a length does not count (the ext type byte) */
} mp_form;

/* One object's header as it sits in the buffer. */
typedef struct mp_head {
    enum mp_what what;
    size_t size;    /* header plus payload; containers: header only */
    uint64_t count; /* objects inside a container (two per map entry) */
} mp_head;

static mp_form mp_mk(enum mp_what what, unsigned field, uint32_t n, unsigned extra)
{
    mp_form f;
    f.what = what;
    f.field = field;
    f.n = n;
    f.extra = extra;
    return f;
}

/* Formats with a length field use 1, 2 or 4 bytes for it, in the order of
 * their type bytes (e.g. bin8, bin16, bin32). */
static unsigned mp_field_width(unsigned index)
{
    return 1u << index;
}

static mp_form mp_form_of(unsigned t)
{
    if (t <= 0x7f || t >= 0xe0)
        return mp_mk(MP_FIXED, 0, 0, 0);
    if (t <= 0x8f)
        return mp_mk(MP_MAP, 0, t & 0x0f, 0);
    if (t <= 0x9f)
        return mp_mk(MP_ARRAY, 0, t & 0x0f, 0);
    if (t <= 0xbf)
        return mp_mk(MP_RAW, 0, t & 0x1f, 0);
    switch (t) {
    case 0xc0: case 0xc2: case 0xc3:
        return mp_mk(MP_FIXED, 0, 0, 0);
    case 0xc4: case 0xc5: case 0xc6:
        return mp_mk(MP_RAW, mp_field_width(t - 0xc4), 0, 0);
    case 0xc7: case 0xc8: case 0xc9:
        return mp_mk(MP_RAW, mp_field_width(t - 0xc7), 0, 1);
    case 0xca:
        return mp_mk(MP_FIXED, 0, 4, 0);
    case 0xcb:
        return mp_mk(MP_FIXED, 0, 8, 0);
    case 0xcc: case 0xcd: case 0xce: case 0xcf:
        return mp_mk(MP_FIXED, 0, 1u << (t - 0xcc), 0);
    case 0xd0: case 0xd1: case 0xd2: case 0xd3:
        return mp_mk(MP_FIXED, 0, 1u << (t - 0xd0), 0);
    case 0xd4: case 0xd5: case 0xd6: case 0xd7: case 0xd8:
        return mp_mk(MP_FIXED, 0, 1 + (1u << (t - 0xd4)), 0);
    case 0xd9: case 0xda: case 0xdb:
        return mp_mk(MP_RAW, mp_field_width(t - 0xd9), 0, 0);
    case 0xdc: case 0xdd:
        return mp_mk(MP_ARRAY, 2 * mp_field_width(t - 0xdc), 0, 0);
    case 0xde: case 0xdf:
        return mp_mk(MP_MAP, 2 * mp_field_width(t - 0xde), 0, 0);
    default:
        return mp_mk(MP_BAD, 0, 0, 0);
    }
}

static uint64_t mp_load_be(const unsigned char *p, unsigned n)
{
    uint64_t v = 0;
    for (unsigned i = 0; i < n; i++)
        v = (v << 8) | p[i];
    return v;
}

/* Read the header at b (avail > 0 bytes left).  NULL on success, else the
 * reason. */
static const char *mp_head_at(const unsigned char *b, size_t avail, mp_head *h)
{
    mp_form f = mp_form_of(b[0]);
    if (f.what == MP_BAD)
        return "reserved byte 0xc1";
    if (avail - 1 < f.field)
        return "truncated";
    size_t hdr = 1 + (size_t)f.field;
    uint64_t n = f.field ? mp_load_be(b + 1, f.field) : f.n;
    h->what = f.what;
    h->count = 0;
    h->size = hdr;
    if (f.what == MP_ARRAY || f.what == MP_MAP) {
        h->count = f.what == MP_MAP ? 2 * n : n;
        return NULL;
    }
    uint64_t body = f.what == MP_FIXED ? n : n + f.extra;
    if (body > avail - hdr)
        return f.what == MP_FIXED ? "truncated" : "length exceeds input";
    h->size = hdr + (size_t)body;
    return NULL;
}

static int mp_fail(size_t *fail_offset, const char **reason, size_t at, const char *why)
{
    if (fail_offset)
        *fail_offset = at;
    if (reason)
        *reason = why;
    return STX_EDECODE;
}

int stx_mp_check(const void *buf, size_t len, unsigned max_depth,
                 size_t *fail_offset, const char **reason)
{
    const unsigned char *b = buf;
    uint64_t left[MP_STACK_CAP]; /* objects still to read in each open container */
    unsigned limit = max_depth < MP_STACK_CAP ? max_depth : MP_STACK_CAP;
    unsigned depth = 0;
    /* Objects still to read at all levels.  Each takes at least one byte, so
     * it never exceeds the bytes left: a count that would break this is
     * forged, and refusing it keeps any later decoder's allocation bounded
     * by len. */
    uint64_t pending = 1;
    size_t pos = 0;

    if (b == NULL || len == 0)
        return mp_fail(fail_offset, reason, 0, "empty input");
    while (pending > 0) {
        mp_head h;
        const char *why;
        if (pos == len)
            return mp_fail(fail_offset, reason, len, "truncated");
        why = mp_head_at(b + pos, len - pos, &h);
        if (why)
            return mp_fail(fail_offset, reason, pos, why);
        pending--;
        if (depth > 0)
            left[depth - 1]--;
        if (h.what == MP_ARRAY || h.what == MP_MAP) {
            /* An empty container is a level too, as msgpack-c counts it. */
            if (depth >= limit)
                return mp_fail(fail_offset, reason, pos, "too deep");
            if (h.count > 0 && pending + h.count > len - pos - h.size)
                return mp_fail(fail_offset, reason, pos, "count exceeds input");
            if (h.count > 0)
                left[depth++] = h.count;
            pending += h.count;
        }
        pos += h.size;
        while (depth > 0 && left[depth - 1] == 0)
            depth--;
    }
    if (pos != len)
        return mp_fail(fail_offset, reason, pos, "trailing bytes");
    if (fail_offset)
        *fail_offset = 0;
    if (reason)
        *reason = NULL;
    return STX_OK;
}

int stx_mp_validate(const void *buf, size_t len, unsigned max_depth)
{
    return stx_mp_check(buf, len, max_depth, NULL, NULL);
}

/* Two's complement value of an n-byte big-endian integer, without the
 * implementation-defined unsigned-to-signed conversion. */
static int64_t mp_sign_extend(uint64_t u, unsigned n)
{
    uint64_t mask = n >= 8 ? UINT64_MAX : ((uint64_t)1 << (8 * n)) - 1;
    uint64_t sign = (uint64_t)1 << (8 * n - 1);
    if ((u & sign) == 0)
        return (int64_t)u;
    return -(int64_t)(~u & mask) - 1;
}

int stx_mp_read_i64(const void *buf, size_t len, int64_t *out)
{
    const unsigned char *b = buf;
    if (out == NULL)
        return STX_EINVAL;
    if (stx_mp_validate(buf, len, STX_MP_MAX_DEPTH) != STX_OK)
        return STX_EDECODE;
    unsigned t = b[0];
    if (t <= 0x7f) {
        *out = (int64_t)t;
    } else if (t >= 0xe0) {
        *out = (int64_t)t - 0x100;
    } else if (t >= 0xcc && t <= 0xcf) {
        uint64_t u = mp_load_be(b + 1, 1u << (t - 0xcc));
        if (u > (uint64_t)INT64_MAX)
            return STX_ETYPE;
        *out = (int64_t)u;
    } else if (t >= 0xd0 && t <= 0xd3) {
        unsigned n = 1u << (t - 0xd0);
        *out = mp_sign_extend(mp_load_be(b + 1, n), n);
    } else {
        return STX_ETYPE;
    }
    return STX_OK;
}

/* msgpack-c's packer writing into a caller's buffer of known size, so the
 * typed helpers encode exactly as msgpack-c does (smallest format; unsigned
 * formats for non-negative integers, str8 for 32..255-byte strings) without
 * a growing sbuffer. */
typedef struct mp_fixed_buf {
    unsigned char *p;
    size_t len, cap;
} mp_fixed_buf;

static int mp_fixed_write(void *data, const char *buf, size_t len)
{
    mp_fixed_buf *f = data;
    if (len > f->cap - f->len)
        return -1; /* cannot happen: callers size the buffer for the object */
    memcpy(f->p + f->len, buf, len);
    f->len += len;
    return 0;
}

size_t stx_mp_write_i64(unsigned char out[9], int64_t v)
{
    if (out == NULL)
        return 0;
    mp_fixed_buf f = {out, 0, 9};
    msgpack_packer pk;
    msgpack_packer_init(&pk, &f, mp_fixed_write);
    return msgpack_pack_int64(&pk, v) == 0 ? f.len : 0;
}

int stx_mp_read_str(const void *buf, size_t len, const char **s, size_t *slen)
{
    const unsigned char *b = buf;
    size_t hdr;
    if (stx_mp_validate(buf, len, STX_MP_MAX_DEPTH) != STX_OK)
        return STX_EDECODE;
    if (s == NULL || slen == NULL)
        return STX_EINVAL;
    unsigned t = b[0];
    if (t >= 0xa0 && t <= 0xbf)
        hdr = 1;
    else if (t >= 0xd9 && t <= 0xdb)
        hdr = 1 + mp_field_width(t - 0xd9);
    else if (t >= 0xc4 && t <= 0xc6)
        hdr = 1 + mp_field_width(t - 0xc4);
    else
        return STX_ETYPE;
    /* Validation proved that this one object fills the buffer, so the
     * payload is all that follows the header. */
    *s = (const char *)b + hdr;
    *slen = len - hdr;
    return STX_OK;
}

int stx_mp_write_str(const char *s, size_t len, unsigned char **out, size_t *outlen)
{
    if (out == NULL || outlen == NULL || (s == NULL && len > 0))
        return STX_EINVAL;
    if ((uint64_t)len > UINT32_MAX)
        return STX_ELIMIT; /* msgpack has no longer str */
    mp_fixed_buf f = {malloc(5 + len), 0, 5 + len}; /* header: at most 5 bytes */
    if (f.p == NULL)
        return STX_ENOMEM;
    msgpack_packer pk;
    msgpack_packer_init(&pk, &f, mp_fixed_write);
    if (msgpack_pack_str(&pk, len) != 0 || (len > 0 && msgpack_pack_str_body(&pk, s, len) != 0)) {
        free(f.p);
        return STX_ENOMEM;
    }
    *out = f.p;
    *outlen = f.len;
    return STX_OK;
}

/* zlib's crc32, whose polynomial the snapshot format was written with; a
 * length of 0 returns crc unchanged (zlib returns 0 for a NULL buffer). */
uint32_t stx_crc32(uint32_t crc, const void *buf, size_t len)
{
    if (len == 0)
        return crc;
    return (uint32_t)crc32_z(crc, buf, len);
}
