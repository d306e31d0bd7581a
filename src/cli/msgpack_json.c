/* msgpack -> JSON for state values (see mp_to_json() in json.h).
 *
 * The input is untrusted: whatever sits in a state hash.  It is validated
 * with stx_mp_validate() first, and the walker below checks every length
 * against the bytes left anyway, so a bug on either side cannot read out of
 * bounds; on any inconsistency the output falls back to $invalid. */
#include <math.h>
#include <string.h>

#include "json.h"
#include "streamtx.h"

typedef struct mp_in {
    const unsigned char *p;
    size_t len, pos;
} mp_in;

static int need(const mp_in *in, size_t n)
{
    return n <= in->len - in->pos ? 0 : -1;
}

static uint64_t load_be(const unsigned char *p, unsigned n)
{
    uint64_t v = 0;
    for (unsigned i = 0; i < n; i++)
        v = v << 8 | p[i];
    return v;
}

/* Read an n-byte big-endian unsigned number. */
static int take_be(mp_in *in, unsigned n, uint64_t *out)
{
    if (need(in, n))
        return -1;
    *out = load_be(in->p + in->pos, n);
    in->pos += n;
    return 0;
}

static int64_t sign_extend(uint64_t u, unsigned n)
{
    unsigned bits = 8 * n;
    if (bits < 64 && (u >> (bits - 1)) & 1)
        u |= ~(uint64_t)0 << bits;
    /* Two's complement without the implementation-defined conversion. */
    if (u <= (uint64_t)INT64_MAX)
        return (int64_t)u;
    return -(int64_t)(~u) - 1;
}

static void put_double(jbuf *b, double d)
{
    if (isnan(d) || isinf(d)) {
        jb_puts(b, "null");
        return;
    }
    jb_printf(b, "%.17g", d);
}

static void put_bytes_obj(jbuf *b, const unsigned char *p, size_t n, int ext, int ext_type)
{
    jb_putc(b, '{');
    if (ext)
        jb_printf(b, "\"$ext\":%d,", ext_type);
    jb_puts(b, "\"$bin\":\"");
    jb_base64(b, p, n);
    jb_puts(b, "\"}");
}

static int walk(jbuf *b, mp_in *in, unsigned depth);

/* A map key: a str as it is, anything else as the JSON string of its JSON
 * text. */
static int walk_key(jbuf *b, mp_in *in, unsigned depth)
{
    if (need(in, 1))
        return -1;
    unsigned char t = in->p[in->pos];
    if ((t >= 0xa0 && t <= 0xbf) || (t >= 0xd9 && t <= 0xdb))
        return walk(b, in, depth);
    jbuf tmp;
    jb_init(&tmp);
    int rc = walk(&tmp, in, depth);
    if (rc == 0)
        jb_json_str(b, tmp.p, tmp.len);
    jb_free(&tmp);
    return rc;
}

static int walk_container(jbuf *b, mp_in *in, unsigned depth, uint64_t count, int map)
{
    if (depth >= MPJ_MAX_DEPTH)
        return -1;
    /* Every element takes at least one byte: refuse counts the input
     * cannot hold before doing anything with them. */
    if (count > in->len - in->pos || (map && count > (in->len - in->pos) / 2))
        return -1;
    jb_putc(b, map ? '{' : '[');
    for (uint64_t i = 0; i < count; i++) {
        if (i)
            jb_putc(b, ',');
        if (map) {
            if (walk_key(b, in, depth + 1))
                return -1;
            jb_putc(b, ':');
        }
        if (walk(b, in, depth + 1))
            return -1;
    }
    jb_putc(b, map ? '}' : ']');
    return 0;
}

static int walk(jbuf *b, mp_in *in, unsigned depth)
{
    uint64_t u;
    if (need(in, 1))
        return -1;
    unsigned char t = in->p[in->pos++];

    if (t <= 0x7f) {
        jb_printf(b, "%u", (unsigned)t);
        return 0;
    }
    if (t >= 0xe0) {
        jb_printf(b, "%d", (int)t - 256);
        return 0;
    }
    if (t >= 0x80 && t <= 0x8f)
        return walk_container(b, in, depth, t & 0x0f, 1);
    if (t >= 0x90 && t <= 0x9f)
        return walk_container(b, in, depth, t & 0x0f, 0);
    if (t >= 0xa0 && t <= 0xbf) {
        u = t & 0x1f;
        goto str;
    }
    switch (t) {
    case 0xc0: jb_puts(b, "null"); return 0;
    case 0xc2: jb_puts(b, "false"); return 0;
    case 0xc3: jb_puts(b, "true"); return 0;
    case 0xc4: case 0xc5: case 0xc6: /* bin 8/16/32 */
        if (take_be(in, 1u << (t - 0xc4), &u) || need(in, u))
            return -1;
        put_bytes_obj(b, in->p + in->pos, (size_t)u, 0, 0);
        in->pos += (size_t)u;
        return 0;
    case 0xc7: case 0xc8: case 0xc9: /* ext 8/16/32 */
        if (take_be(in, 1u << (t - 0xc7), &u) || need(in, 1) || need(in, 1 + u))
            return -1;
        {
            int type = (signed char)in->p[in->pos];
            put_bytes_obj(b, in->p + in->pos + 1, (size_t)u, 1, type);
            in->pos += 1 + (size_t)u;
        }
        return 0;
    case 0xca: { /* float 32 */
        if (take_be(in, 4, &u))
            return -1;
        uint32_t bits = (uint32_t)u;
        float f;
        memcpy(&f, &bits, sizeof f);
        put_double(b, (double)f);
        return 0;
    }
    case 0xcb: { /* float 64 */
        if (take_be(in, 8, &u))
            return -1;
        double d;
        memcpy(&d, &u, sizeof d);
        put_double(b, d);
        return 0;
    }
    case 0xcc: case 0xcd: case 0xce: case 0xcf: /* uint 8..64 */
        if (take_be(in, 1u << (t - 0xcc), &u))
            return -1;
        jb_printf(b, "%llu", (unsigned long long)u);
        return 0;
    case 0xd0: case 0xd1: case 0xd2: case 0xd3: { /* int 8..64 */
        unsigned n = 1u << (t - 0xd0);
        if (take_be(in, n, &u))
            return -1;
        jb_printf(b, "%lld", (long long)sign_extend(u, n));
        return 0;
    }
    case 0xd4: case 0xd5: case 0xd6: case 0xd7: case 0xd8: { /* fixext 1..16 */
        size_t n = (size_t)1 << (t - 0xd4);
        if (need(in, 1 + n))
            return -1;
        int type = (signed char)in->p[in->pos];
        put_bytes_obj(b, in->p + in->pos + 1, n, 1, type);
        in->pos += 1 + n;
        return 0;
    }
    case 0xd9: case 0xda: case 0xdb: /* str 8/16/32 */
        if (take_be(in, 1u << (t - 0xd9), &u))
            return -1;
        goto str;
    case 0xdc: case 0xdd: /* array 16/32 */
        if (take_be(in, t == 0xdc ? 2 : 4, &u))
            return -1;
        return walk_container(b, in, depth, u, 0);
    case 0xde: case 0xdf: /* map 16/32 */
        if (take_be(in, t == 0xde ? 2 : 4, &u))
            return -1;
        return walk_container(b, in, depth, u, 1);
    default: /* 0xc1: never used */
        return -1;
    }
str:
    if (need(in, u))
        return -1;
    jb_json_str(b, in->p + in->pos, (size_t)u);
    in->pos += (size_t)u;
    return 0;
}

int mp_to_json(jbuf *b, const void *buf, size_t len)
{
    size_t start = b->len;
    if (buf && len > 0 && stx_mp_validate(buf, len, MPJ_MAX_DEPTH) == STX_OK) {
        mp_in in = {buf, len, 0};
        if (walk(b, &in, 0) == 0 && in.pos == len)
            return 0;
        jb_truncate(b, start);
    }
    jb_puts(b, "{\"$invalid\":\"");
    if (buf)
        jb_base64(b, buf, len);
    jb_puts(b, "\"}");
    return -1;
}
