/* msgpack -> JSON for state values (see mp_to_json() in json.h).
 *
 * The input is untrusted: whatever sits in a state hash.  msgpack-c's
 * unpacker trusts the lengths and counts it reads (a 5-byte array32
 * header claiming 2^31 elements makes it allocate gigabytes), so the bytes
 * go through the library's bounded validator, stx_mp_validate(), first;
 * what passes holds every element it declares, which bounds what
 * msgpack_unpack_next() allocates by a small multiple of the input. */
#include <math.h>
#include <string.h>

#include <msgpack.h>

#include "json.h"
#include "streamtx.h"

static void put_double(jbuf *b, double d)
{
    if (isnan(d) || isinf(d)) {
        jb_puts(b, "null");
        return;
    }
    jb_printf(b, "%.17g", d);
}

static void put_bytes_obj(jbuf *b, const void *p, size_t n, int ext, int ext_type)
{
    jb_putc(b, '{');
    if (ext)
        jb_printf(b, "\"$ext\":%d,", ext_type);
    jb_puts(b, "\"$bin\":\"");
    jb_base64(b, p, n);
    jb_puts(b, "\"}");
}

static void put_object(jbuf *b, const msgpack_object *o);

/* A map key: a str as it is, anything else as the JSON string of its JSON
 * text. */
static void put_key(jbuf *b, const msgpack_object *k)
{
    if (k->type == MSGPACK_OBJECT_STR) {
        jb_json_str(b, k->via.str.ptr, k->via.str.size);
        return;
    }
    jbuf tmp;
    jb_init(&tmp);
    put_object(&tmp, k);
    jb_json_str(b, tmp.p, tmp.len);
    jb_free(&tmp);
}

static void put_object(jbuf *b, const msgpack_object *o)
{
    switch (o->type) {
    case MSGPACK_OBJECT_NIL:
        jb_puts(b, "null");
        break;
    case MSGPACK_OBJECT_BOOLEAN:
        jb_puts(b, o->via.boolean ? "true" : "false");
        break;
    case MSGPACK_OBJECT_POSITIVE_INTEGER:
        jb_printf(b, "%llu", (unsigned long long)o->via.u64);
        break;
    case MSGPACK_OBJECT_NEGATIVE_INTEGER:
        jb_printf(b, "%lld", (long long)o->via.i64);
        break;
    case MSGPACK_OBJECT_FLOAT32: /* via.f64 holds the float's value */
    case MSGPACK_OBJECT_FLOAT64:
        put_double(b, o->via.f64);
        break;
    case MSGPACK_OBJECT_STR:
        jb_json_str(b, o->via.str.ptr, o->via.str.size);
        break;
    case MSGPACK_OBJECT_BIN:
        put_bytes_obj(b, o->via.bin.ptr, o->via.bin.size, 0, 0);
        break;
    case MSGPACK_OBJECT_EXT:
        put_bytes_obj(b, o->via.ext.ptr, o->via.ext.size, 1, o->via.ext.type);
        break;
    case MSGPACK_OBJECT_ARRAY:
        jb_putc(b, '[');
        for (uint32_t i = 0; i < o->via.array.size; i++) {
            if (i)
                jb_putc(b, ',');
            put_object(b, &o->via.array.ptr[i]);
        }
        jb_putc(b, ']');
        break;
    case MSGPACK_OBJECT_MAP:
        jb_putc(b, '{');
        for (uint32_t i = 0; i < o->via.map.size; i++) {
            if (i)
                jb_putc(b, ',');
            put_key(b, &o->via.map.ptr[i].key);
            jb_putc(b, ':');
            put_object(b, &o->via.map.ptr[i].val);
        }
        jb_putc(b, '}');
        break;
    default: /* msgpack-c has no other type */
        jb_puts(b, "null");
        break;
    }
}

int mp_to_json(jbuf *b, const void *buf, size_t len)
{
    int rc = -1;
    if (buf && len > 0 && stx_mp_validate(buf, len, MPJ_MAX_DEPTH) == STX_OK) {
        msgpack_unpacked u;
        msgpack_unpacked_init(&u);
        size_t off = 0;
        /* Validated bytes unpack; the checks stay for what msgpack-c
         * refuses on its own (nesting beyond its stack). */
        if (msgpack_unpack_next(&u, buf, len, &off) == MSGPACK_UNPACK_SUCCESS && off == len) {
            put_object(b, &u.data);
            rc = 0;
        }
        msgpack_unpacked_destroy(&u);
    }
    if (rc == 0)
        return 0;
    jb_puts(b, "{\"$invalid\":\"");
    if (buf)
        jb_base64(b, buf, len);
    jb_puts(b, "\"}");
    return -1;
}
