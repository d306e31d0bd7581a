/* Bounded msgpack walker, the typed int/str helpers and CRC-32.
 *
 * The walker never hands bytes to msgpack-c: msgpack_unpack() allocates a
 * container's elements from its declared count before reading them, so a
 * forged 9-byte array32 header costs gigabytes.  Here every declared length
 * and count is checked against the bytes that are actually left. */
#include "codec.h"

#include <stdlib.h>
#include <string.h>

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

static void mp_store_be(unsigned char *p, uint64_t v, unsigned n)
{
    for (unsigned i = n; i > 0; i--) {
        p[i - 1] = (unsigned char)(v & 0xff);
        v >>= 8;
    }
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

/* The smallest encoding, chosen as msgpack-c's packer chooses it: unsigned
 * formats for non-negative values, signed ones for negative values. */
size_t stx_mp_write_i64(unsigned char out[9], int64_t v)
{
    unsigned char t;
    unsigned n;
    if (out == NULL)
        return 0;
    if (v >= 0) {
        uint64_t u = (uint64_t)v;
        if (u < 0x80) {
            out[0] = (unsigned char)u;
            return 1;
        }
        if (u <= UINT8_MAX) { t = 0xcc; n = 1; }
        else if (u <= UINT16_MAX) { t = 0xcd; n = 2; }
        else if (u <= UINT32_MAX) { t = 0xce; n = 4; }
        else { t = 0xcf; n = 8; }
        out[0] = t;
        mp_store_be(out + 1, u, n);
        return 1 + n;
    }
    if (v >= -32) {
        out[0] = (unsigned char)(0x100 + v);
        return 1;
    }
    if (v >= INT8_MIN) { t = 0xd0; n = 1; }
    else if (v >= INT16_MIN) { t = 0xd1; n = 2; }
    else if (v >= INT32_MIN) { t = 0xd2; n = 4; }
    else { t = 0xd3; n = 8; }
    out[0] = t;
    /* Conversion to unsigned is modular, so the low n bytes are the two's
     * complement encoding. */
    mp_store_be(out + 1, (uint64_t)v, n);
    return 1 + n;
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

static size_t mp_str_header(unsigned char *p, size_t len)
{
    if (len < 32) {
        p[0] = (unsigned char)(0xa0 | len);
        return 1;
    }
    if (len <= UINT8_MAX) {
        p[0] = 0xd9;
        mp_store_be(p + 1, len, 1);
        return 2;
    }
    if (len <= UINT16_MAX) {
        p[0] = 0xda;
        mp_store_be(p + 1, len, 2);
        return 3;
    }
    p[0] = 0xdb;
    mp_store_be(p + 1, len, 4);
    return 5;
}

int stx_mp_write_str(const char *s, size_t len, unsigned char **out, size_t *outlen)
{
    unsigned char hdr[5];
    if (out == NULL || outlen == NULL || (s == NULL && len > 0))
        return STX_EINVAL;
    if ((uint64_t)len > UINT32_MAX)
        return STX_ELIMIT; /* msgpack has no longer str */
    size_t h = mp_str_header(hdr, len);
    unsigned char *p = malloc(h + len);
    if (p == NULL)
        return STX_ENOMEM;
    memcpy(p, hdr, h);
    if (len > 0)
        memcpy(p + h, s, len);
    *out = p;
    *outlen = h + len;
    return STX_OK;
}

/* Reflected CRC-32 table for polynomial 0xEDB88320 (as zlib's). */
static const uint32_t crc_table[256] = {
    0x00000000u, 0x77073096u, 0xee0e612cu, 0x990951bau, 0x076dc419u, 0x706af48fu,
    0xe963a535u, 0x9e6495a3u, 0x0edb8832u, 0x79dcb8a4u, 0xe0d5e91eu, 0x97d2d988u,
    0x09b64c2bu, 0x7eb17cbdu, 0xe7b82d07u, 0x90bf1d91u, 0x1db71064u, 0x6ab020f2u,
    0xf3b97148u, 0x84be41deu, 0x1adad47du, 0x6ddde4ebu, 0xf4d4b551u, 0x83d385c7u,
    0x136c9856u, 0x646ba8c0u, 0xfd62f97au, 0x8a65c9ecu, 0x14015c4fu, 0x63066cd9u,
    0xfa0f3d63u, 0x8d080df5u, 0x3b6e20c8u, 0x4c69105eu, 0xd56041e4u, 0xa2677172u,
    0x3c03e4d1u, 0x4b04d447u, 0xd20d85fdu, 0xa50ab56bu, 0x35b5a8fau, 0x42b2986cu,
    0xdbbbc9d6u, 0xacbcf940u, 0x32d86ce3u, 0x45df5c75u, 0xdcd60dcfu, 0xabd13d59u,
    0x26d930acu, 0x51de003au, 0xc8d75180u, 0xbfd06116u, 0x21b4f4b5u, 0x56b3c423u,
    0xcfba9599u, 0xb8bda50fu, 0x2802b89eu, 0x5f058808u, 0xc60cd9b2u, 0xb10be924u,
    0x2f6f7c87u, 0x58684c11u, 0xc1611dabu, 0xb6662d3du, 0x76dc4190u, 0x01db7106u,
    0x98d220bcu, 0xefd5102au, 0x71b18589u, 0x06b6b51fu, 0x9fbfe4a5u, 0xe8b8d433u,
    0x7807c9a2u, 0x0f00f934u, 0x9609a88eu, 0xe10e9818u, 0x7f6a0dbbu, 0x086d3d2du,
    0x91646c97u, 0xe6635c01u, 0x6b6b51f4u, 0x1c6c6162u, 0x856530d8u, 0xf262004eu,
    0x6c0695edu, 0x1b01a57bu, 0x8208f4c1u, 0xf50fc457u, 0x65b0d9c6u, 0x12b7e950u,
    0x8bbeb8eau, 0xfcb9887cu, 0x62dd1ddfu, 0x15da2d49u, 0x8cd37cf3u, 0xfbd44c65u,
    0x4db26158u, 0x3ab551ceu, 0xa3bc0074u, 0xd4bb30e2u, 0x4adfa541u, 0x3dd895d7u,
    0xa4d1c46du, 0xd3d6f4fbu, 0x4369e96au, 0x346ed9fcu, 0xad678846u, 0xda60b8d0u,
    0x44042d73u, 0x33031de5u, 0xaa0a4c5fu, 0xdd0d7cc9u, 0x5005713cu, 0x270241aau,
    0xbe0b1010u, 0xc90c2086u, 0x5768b525u, 0x206f85b3u, 0xb966d409u, 0xce61e49fu,
    0x5edef90eu, 0x29d9c998u, 0xb0d09822u, 0xc7d7a8b4u, 0x59b33d17u, 0x2eb40d81u,
    0xb7bd5c3bu, 0xc0ba6cadu, 0xedb88320u, 0x9abfb3b6u, 0x03b6e20cu, 0x74b1d29au,
    0xead54739u, 0x9dd277afu, 0x04db2615u, 0x73dc1683u, 0xe3630b12u, 0x94643b84u,
    0x0d6d6a3eu, 0x7a6a5aa8u, 0xe40ecf0bu, 0x9309ff9du, 0x0a00ae27u, 0x7d079eb1u,
    0xf00f9344u, 0x8708a3d2u, 0x1e01f268u, 0x6906c2feu, 0xf762575du, 0x806567cbu,
    0x196c3671u, 0x6e6b06e7u, 0xfed41b76u, 0x89d32be0u, 0x10da7a5au, 0x67dd4accu,
    0xf9b9df6fu, 0x8ebeeff9u, 0x17b7be43u, 0x60b08ed5u, 0xd6d6a3e8u, 0xa1d1937eu,
    0x38d8c2c4u, 0x4fdff252u, 0xd1bb67f1u, 0xa6bc5767u, 0x3fb506ddu, 0x48b2364bu,
    0xd80d2bdau, 0xaf0a1b4cu, 0x36034af6u, 0x41047a60u, 0xdf60efc3u, 0xa867df55u,
    0x316e8eefu, 0x4669be79u, 0xcb61b38cu, 0xbc66831au, 0x256fd2a0u, 0x5268e236u,
    0xcc0c7795u, 0xbb0b4703u, 0x220216b9u, 0x5505262fu, 0xc5ba3bbeu, 0xb2bd0b28u,
    0x2bb45a92u, 0x5cb36a04u, 0xc2d7ffa7u, 0xb5d0cf31u, 0x2cd99e8bu, 0x5bdeae1du,
    0x9b64c2b0u, 0xec63f226u, 0x756aa39cu, 0x026d930au, 0x9c0906a9u, 0xeb0e363fu,
    0x72076785u, 0x05005713u, 0x95bf4a82u, 0xe2b87a14u, 0x7bb12baeu, 0x0cb61b38u,
    0x92d28e9bu, 0xe5d5be0du, 0x7cdcefb7u, 0x0bdbdf21u, 0x86d3d2d4u, 0xf1d4e242u,
    0x68ddb3f8u, 0x1fda836eu, 0x81be16cdu, 0xf6b9265bu, 0x6fb077e1u, 0x18b74777u,
    0x88085ae6u, 0xff0f6a70u, 0x66063bcau, 0x11010b5cu, 0x8f659effu, 0xf862ae69u,
    0x616bffd3u, 0x166ccf45u, 0xa00ae278u, 0xd70dd2eeu, 0x4e048354u, 0x3903b3c2u,
    0xa7672661u, 0xd06016f7u, 0x4969474du, 0x3e6e77dbu, 0xaed16a4au, 0xd9d65adcu,
    0x40df0b66u, 0x37d83bf0u, 0xa9bcae53u, 0xdebb9ec5u, 0x47b2cf7fu, 0x30b5ffe9u,
    0xbdbdf21cu, 0xcabac28au, 0x53b39330u, 0x24b4a3a6u, 0xbad03605u, 0xcdd70693u,
    0x54de5729u, 0x23d967bfu, 0xb3667a2eu, 0xc4614ab8u, 0x5d681b02u, 0x2a6f2b94u,
    0xb40bbe37u, 0xc30c8ea1u, 0x5a05df1bu, 0x2d02ef8du,
};

uint32_t stx_crc32(uint32_t crc, const void *buf, size_t len)
{
    const unsigned char *p = buf;
    crc = ~crc;
    for (size_t i = 0; i < len; i++)
        crc = crc_table[(crc ^ p[i]) & 0xff] ^ (crc >> 8);
    return ~crc;
}
