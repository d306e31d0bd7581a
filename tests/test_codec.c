/* Unit tests of the bounded msgpack walker, the typed helpers and CRC-32.
 * msgpack-c's packer is the reference for encodings. */
#include <criterion/criterion.h>

#include <limits.h>
#include <msgpack.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "codec.h"
#include "streamtx.h"

#define B(...) ((const unsigned char[]){__VA_ARGS__})
#define NB(...) sizeof((const unsigned char[]){__VA_ARGS__})
/* Bytes and length of a literal sequence, for calls taking (buf, len). */
#define BYTES(...) B(__VA_ARGS__), NB(__VA_ARGS__)

static const char *check_reason(const void *buf, size_t len, unsigned depth, size_t *off)
{
    const char *reason = "untouched";
    size_t at = (size_t)-1;
    int rc = stx_mp_check(buf, len, depth, &at, &reason);
    cr_assert_eq(rc == STX_OK, reason == NULL, "rc %d but reason %s", rc,
                 reason ? reason : "(null)");
    cr_assert_eq(stx_mp_validate(buf, len, depth), rc);
    if (rc == STX_OK)
        return NULL;
    cr_assert_eq(rc, STX_EDECODE);
    cr_assert(at <= len, "fail offset %zu beyond %zu", at, len);
    if (off)
        *off = at;
    return reason;
}

static void expect_fail(const void *buf, size_t len, unsigned depth, size_t off,
                        const char *reason)
{
    size_t at = 0;
    const char *why = check_reason(buf, len, depth, &at);
    cr_assert_not_null(why, "accepted, expected \"%s\"", reason);
    cr_assert_str_eq(why, reason);
    cr_assert_eq(at, off, "\"%s\" at %zu, expected %zu", why, at, off);
}

static void expect_ok(const void *buf, size_t len, unsigned depth)
{
    size_t at = 0;
    const char *why = check_reason(buf, len, depth, &at);
    cr_assert_null(why, "refused: %s at %zu", why ? why : "", at);
}

/* msgpack-c's encoding of v, into out (9 bytes); returns its length. */
static size_t ref_pack_i64(unsigned char out[9], int64_t v)
{
    msgpack_sbuffer sb;
    msgpack_packer pk;
    msgpack_sbuffer_init(&sb);
    msgpack_packer_init(&pk, &sb, msgpack_sbuffer_write);
    cr_assert_eq(msgpack_pack_int64(&pk, v), 0);
    size_t n = sb.size;
    cr_assert(n >= 1 && n <= 9);
    memcpy(out, sb.data, n);
    msgpack_sbuffer_destroy(&sb);
    return n;
}

/* The value and the length of its smallest encoding. */
static const struct {
    int64_t v;
    size_t len;
} i64_cases[] = {
    {0, 1},
    {127, 1},
    {128, 2},
    {255, 2},
    {256, 3},
    {65535, 3},
    {65536, 5},
    {4294967295LL, 5},
    {4294967296LL, 9},
    {INT64_MAX, 9},
    {-1, 1},
    {-32, 1},
    {-33, 2},
    {-128, 2},
    {-129, 3},
    {-32768, 3},
    {-32769, 5},
    {(int64_t)INT32_MIN, 5},
    {(int64_t)INT32_MIN - 1, 9},
    {INT64_MIN, 9},
};

/* Declared, so Criterion does not allocate (and leak) an implicit suite. */
TestSuite(codec);

Test(codec, i64_boundaries_match_msgpack_c)
{
    for (size_t i = 0; i < sizeof i64_cases / sizeof i64_cases[0]; i++) {
        int64_t v = i64_cases[i].v;
        unsigned char mine[9], ref[9];
        size_t n = stx_mp_write_i64(mine, v);
        size_t rn = ref_pack_i64(ref, v);
        cr_assert_eq(n, i64_cases[i].len, "%lld: %zu bytes", (long long)v, n);
        cr_assert_eq(n, rn, "%lld: %zu bytes, msgpack-c %zu", (long long)v, n, rn);
        cr_assert_arr_eq(mine, ref, n, "%lld encodes differently", (long long)v);
        int64_t back = 0;
        cr_assert_eq(stx_mp_read_i64(mine, n, &back), STX_OK);
        cr_assert_eq(back, v, "%lld read back as %lld", (long long)v, (long long)back);
        expect_ok(mine, n, 0);
    }
}

Test(codec, i64_powers_of_two_round_trip)
{
    for (int k = 0; k < 63; k++) {
        int64_t p = (int64_t)1 << k;
        int64_t vals[] = {p - 1, p, p + 1, -p - 1, -p, -p + 1};
        for (size_t i = 0; i < sizeof vals / sizeof vals[0]; i++) {
            unsigned char mine[9], ref[9];
            size_t n = stx_mp_write_i64(mine, vals[i]);
            cr_assert_eq(n, ref_pack_i64(ref, vals[i]));
            cr_assert_arr_eq(mine, ref, n);
            int64_t back = 0;
            cr_assert_eq(stx_mp_read_i64(mine, n, &back), STX_OK);
            cr_assert_eq(back, vals[i]);
        }
    }
}

Test(codec, read_i64_accepts_every_int_format)
{
    int64_t v = 0;
    cr_assert_eq(stx_mp_read_i64(BYTES(0x7f), &v), STX_OK);
    cr_assert_eq(v, 127);
    cr_assert_eq(stx_mp_read_i64(BYTES(0xe0), &v), STX_OK);
    cr_assert_eq(v, -32);
    cr_assert_eq(stx_mp_read_i64(BYTES(0xcc, 0xff), &v), STX_OK);
    cr_assert_eq(v, 255);
    cr_assert_eq(stx_mp_read_i64(BYTES(0xcd, 0x00, 0x05), &v), STX_OK);
    cr_assert_eq(v, 5); /* longer than needed is still an int */
    cr_assert_eq(stx_mp_read_i64(BYTES(0xce, 0xff, 0xff, 0xff, 0xff), &v), STX_OK);
    cr_assert_eq(v, 4294967295LL);
    cr_assert_eq(stx_mp_read_i64(BYTES(0xcf, 0x7f, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff),
                                 &v), STX_OK);
    cr_assert_eq(v, INT64_MAX);
    cr_assert_eq(stx_mp_read_i64(BYTES(0xd0, 0x80), &v), STX_OK);
    cr_assert_eq(v, -128);
    cr_assert_eq(stx_mp_read_i64(BYTES(0xd0, 0x7f), &v), STX_OK);
    cr_assert_eq(v, 127);
    cr_assert_eq(stx_mp_read_i64(BYTES(0xd1, 0x80, 0x00), &v), STX_OK);
    cr_assert_eq(v, -32768);
    cr_assert_eq(stx_mp_read_i64(BYTES(0xd2, 0x80, 0x00, 0x00, 0x00), &v), STX_OK);
    cr_assert_eq(v, (int64_t)INT32_MIN);
    cr_assert_eq(stx_mp_read_i64(BYTES(0xd2, 0xff, 0xff, 0xff, 0xfe), &v), STX_OK);
    cr_assert_eq(v, -2);
    cr_assert_eq(stx_mp_read_i64(BYTES(0xd3, 0x80, 0, 0, 0, 0, 0, 0, 0), &v), STX_OK);
    cr_assert_eq(v, INT64_MIN);
    cr_assert_eq(stx_mp_read_i64(BYTES(0xd3, 0, 0, 0, 0, 0, 0, 0, 0x2a), &v), STX_OK);
    cr_assert_eq(v, 42);
}

Test(codec, read_i64_type_and_decode_errors)
{
    int64_t v = 7;
    /* uint64 above INT64_MAX is an int, but not one that fits */
    cr_assert_eq(stx_mp_read_i64(BYTES(0xcf, 0x80, 0, 0, 0, 0, 0, 0, 0), &v), STX_ETYPE);
    cr_assert_eq(stx_mp_read_i64(BYTES(0xcf, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff),
                                 &v), STX_ETYPE);
    cr_assert_eq(stx_mp_read_i64(BYTES(0xc0), &v), STX_ETYPE);
    cr_assert_eq(stx_mp_read_i64(BYTES(0xc3), &v), STX_ETYPE);
    cr_assert_eq(stx_mp_read_i64(BYTES(0xa1, '1'), &v), STX_ETYPE);
    cr_assert_eq(stx_mp_read_i64(BYTES(0xca, 0x3f, 0x80, 0, 0), &v), STX_ETYPE);
    cr_assert_eq(stx_mp_read_i64(BYTES(0xcb, 0x3f, 0xf0, 0, 0, 0, 0, 0, 0), &v), STX_ETYPE);
    cr_assert_eq(stx_mp_read_i64(BYTES(0x91, 0x01), &v), STX_ETYPE);
    cr_assert_eq(stx_mp_read_i64(BYTES(0x80), &v), STX_ETYPE);
    cr_assert_eq(stx_mp_read_i64(BYTES(0xd4, 0x01, 0x02), &v), STX_ETYPE);
    cr_assert_eq(stx_mp_read_i64(B(0x00), 0, &v), STX_EDECODE);
    cr_assert_eq(stx_mp_read_i64(NULL, 0, &v), STX_EDECODE);
    cr_assert_eq(stx_mp_read_i64(BYTES(0xc1), &v), STX_EDECODE);
    cr_assert_eq(stx_mp_read_i64(BYTES(0xcd, 0x01), &v), STX_EDECODE);
    cr_assert_eq(stx_mp_read_i64(BYTES(0xd3, 0, 0, 0, 0, 0, 0, 0), &v), STX_EDECODE);
    cr_assert_eq(stx_mp_read_i64(BYTES(0x01, 0x02), &v), STX_EDECODE);
    cr_assert_eq(stx_mp_read_i64(BYTES(0x91), &v), STX_EDECODE);
    cr_assert_eq(v, 7, "output written on failure");
}

/* msgpack-c's str encoding of s, malloc'd. */
static unsigned char *ref_pack_str(const char *s, size_t len, size_t *outlen)
{
    msgpack_sbuffer sb;
    msgpack_packer pk;
    msgpack_sbuffer_init(&sb);
    msgpack_packer_init(&pk, &sb, msgpack_sbuffer_write);
    cr_assert_eq(msgpack_pack_str(&pk, len), 0);
    cr_assert_eq(msgpack_pack_str_body(&pk, s, len), 0);
    *outlen = sb.size;
    return (unsigned char *)msgpack_sbuffer_release(&sb);
}

Test(codec, str_round_trip_matches_msgpack_c)
{
    static const size_t lens[] = {0, 1, 31, 32, 255, 256, 65535, 65536, 70000};
    static const size_t hdrs[] = {1, 1, 1, 2, 2, 3, 3, 5, 5};
    char *text = malloc(70000);
    cr_assert_not_null(text);
    for (size_t i = 0; i < 70000; i++)
        text[i] = (char)(i * 7 + 1); /* includes NUL bytes */
    for (size_t i = 0; i < sizeof lens / sizeof lens[0]; i++) {
        unsigned char *enc = NULL, *ref;
        size_t enclen = 0, reflen = 0;
        cr_assert_eq(stx_mp_write_str(text, lens[i], &enc, &enclen), STX_OK);
        cr_assert_eq(enclen, hdrs[i] + lens[i], "len %zu: %zu bytes", lens[i], enclen);
        ref = ref_pack_str(text, lens[i], &reflen);
        cr_assert_eq(enclen, reflen);
        cr_assert_arr_eq(enc, ref, enclen, "len %zu encodes differently", lens[i]);
        const char *s = NULL;
        size_t slen = 1;
        cr_assert_eq(stx_mp_read_str(enc, enclen, &s, &slen), STX_OK);
        cr_assert_eq(slen, lens[i]);
        cr_assert_eq(s, (const char *)enc + hdrs[i], "does not point into the buffer");
        if (slen > 0)
            cr_assert_arr_eq(s, text, slen);
        free(enc);
        free(ref);
    }
    free(text);
}

Test(codec, str_write_null_and_empty)
{
    unsigned char *enc = NULL;
    size_t enclen = 0;
    cr_assert_eq(stx_mp_write_str(NULL, 0, &enc, &enclen), STX_OK);
    cr_assert_eq(enclen, 1);
    cr_assert_eq(enc[0], 0xa0);
    free(enc);
    cr_assert_eq(stx_mp_write_str(NULL, 3, &enc, &enclen), STX_EINVAL);
    cr_assert_eq(stx_mp_write_str("abc", 3, NULL, &enclen), STX_EINVAL);
}

/* Decode buf as a str/bin and compare with want (want_len bytes). */
static void expect_str(const unsigned char *buf, size_t len, const char *want, size_t want_len)
{
    const char *s = NULL;
    size_t n = (size_t)-1;
    cr_assert_eq(stx_mp_read_str(buf, len, &s, &n), STX_OK, "format 0x%02x", buf[0]);
    cr_assert_eq(n, want_len);
    cr_assert_eq(s, (const char *)buf + (len - n), "does not point into the buffer");
    if (n > 0)
        cr_assert_arr_eq(s, want, n);
}

Test(codec, read_str_accepts_str_and_bin)
{
    expect_str(BYTES(0xa3, 'a', 'b', 'c'), "abc", 3);
    expect_str(BYTES(0xd9, 0x02, 'h', 'i'), "hi", 2);
    expect_str(BYTES(0xda, 0x00, 0x01, 'x'), "x", 1);
    expect_str(BYTES(0xdb, 0, 0, 0, 0x01, 'y'), "y", 1);
    expect_str(BYTES(0xc4, 0x02, 0x00, 0xff), "\x00\xff", 2);
    expect_str(BYTES(0xc5, 0x00, 0x00), "", 0);
    expect_str(BYTES(0xc6, 0, 0, 0, 0x01, 0x00), "", 1);
}

Test(codec, read_str_errors)
{
    const char *s = NULL;
    size_t n = 0;
    cr_assert_eq(stx_mp_read_str(BYTES(0x01), &s, &n), STX_ETYPE);
    cr_assert_eq(stx_mp_read_str(BYTES(0xc0), &s, &n), STX_ETYPE);
    cr_assert_eq(stx_mp_read_str(BYTES(0x91, 0xa0), &s, &n), STX_ETYPE);
    cr_assert_eq(stx_mp_read_str(BYTES(0xd4, 0x01, 'a'), &s, &n), STX_ETYPE);
    cr_assert_eq(stx_mp_read_str(BYTES(0xa3, 'a', 'b'), &s, &n), STX_EDECODE);
    cr_assert_eq(stx_mp_read_str(BYTES(0xa1, 'a', 'b'), &s, &n), STX_EDECODE);
    cr_assert_eq(stx_mp_read_str(BYTES(0xdb, 0xff, 0xff, 0xff, 0xff, 'a'), &s, &n),
                 STX_EDECODE);
    cr_assert_eq(stx_mp_read_str(NULL, 0, &s, &n), STX_EDECODE);
}

static int64_t elapsed_us(const struct timespec *t0)
{
    struct timespec t1;
    clock_gettime(CLOCK_MONOTONIC, &t1);
    return (int64_t)(t1.tv_sec - t0->tv_sec) * 1000000 + (t1.tv_nsec - t0->tv_nsec) / 1000;
}

Test(codec, forged_array32_refused_quickly)
{
    /* The 9 bytes that make msgpack_unpack_next() ask for ~48 GiB. */
    const unsigned char forged[] = {0xdd, 0x7f, 0xff, 0xff, 0xff, 0x01, 0x02, 0x03, 0x04};
    struct timespec t0;
    clock_gettime(CLOCK_MONOTONIC, &t0);
    for (int i = 0; i < 1000; i++)
        cr_assert_eq(stx_mp_validate(forged, sizeof forged, STX_MP_MAX_DEPTH), STX_EDECODE);
    cr_assert_lt(elapsed_us(&t0), 100000, "1000 checks took %lld us",
                 (long long)elapsed_us(&t0));
    expect_fail(forged, sizeof forged, STX_MP_MAX_DEPTH, 0, "count exceeds input");
    int64_t v;
    cr_assert_eq(stx_mp_read_i64(forged, sizeof forged, &v), STX_EDECODE);
    expect_fail(BYTES(0xdd, 0xff, 0xff, 0xff, 0xff), STX_MP_MAX_DEPTH, 0,
                "count exceeds input");
    /* forged count in a nested array, after valid elements */
    expect_fail(BYTES(0x92, 0x01, 0xdd, 0x00, 0x01, 0x00, 0x00), STX_MP_MAX_DEPTH, 2,
                "count exceeds input");
}

Test(codec, forged_map_and_raw_lengths)
{
    expect_fail(BYTES(0xdf, 0x7f, 0xff, 0xff, 0xff, 0x01, 0x02, 0x03, 0x04),
                STX_MP_MAX_DEPTH, 0, "count exceeds input");
    /* a map of N entries needs 2N bytes: 5 entries with 9 bytes is forged */
    expect_fail(BYTES(0xde, 0x00, 0x05, 1, 2, 3, 4, 5, 6, 7, 8, 9), STX_MP_MAX_DEPTH, 0,
                "count exceeds input");
    expect_ok(BYTES(0xde, 0x00, 0x05, 1, 2, 3, 4, 5, 6, 7, 8, 9, 10), STX_MP_MAX_DEPTH);
    expect_fail(BYTES(0x8f, 1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13, 14, 15, 16, 17, 18,
                      19, 20, 21, 22, 23, 24, 25, 26, 27, 28, 29),
                STX_MP_MAX_DEPTH, 0, "count exceeds input");
    /* an array of N needs N bytes */
    expect_fail(BYTES(0xdc, 0x00, 0x04, 1, 2, 3), STX_MP_MAX_DEPTH, 0, "count exceeds input");
    expect_ok(BYTES(0xdc, 0x00, 0x03, 1, 2, 3), STX_MP_MAX_DEPTH);
    expect_fail(BYTES(0xdb, 0xff, 0xff, 0xff, 0xff, 'a', 'b'), STX_MP_MAX_DEPTH, 0,
                "length exceeds input");
    expect_fail(BYTES(0xc6, 0x7f, 0xff, 0xff, 0xff, 0x00), STX_MP_MAX_DEPTH, 0,
                "length exceeds input");
    expect_fail(BYTES(0xc9, 0xff, 0xff, 0xff, 0xff, 0x01, 0x00), STX_MP_MAX_DEPTH, 0,
                "length exceeds input");
    expect_fail(BYTES(0xd9, 0x05, 'a', 'b', 'c', 'd'), STX_MP_MAX_DEPTH, 0,
                "length exceeds input");
    expect_ok(BYTES(0xd9, 0x05, 'a', 'b', 'c', 'd', 'e'), STX_MP_MAX_DEPTH);
    /* ext8 counts the type byte outside its length */
    expect_fail(BYTES(0xc7, 0x02, 0x01, 'a'), STX_MP_MAX_DEPTH, 0, "length exceeds input");
    expect_ok(BYTES(0xc7, 0x02, 0x01, 'a', 'b'), STX_MP_MAX_DEPTH);
    /* a long str inside an array leaves too little for the next element */
    expect_fail(BYTES(0x92, 0xa2, 'a', 'b'), STX_MP_MAX_DEPTH, 4, "truncated");
}

/* Every format the spec defines, each a complete object. */
static const struct {
    const unsigned char *b;
    size_t len;
} every_format[] = {
    {BYTES(0xc0)},
    {BYTES(0xc2)},
    {BYTES(0xc3)},
    {BYTES(0x00)},
    {BYTES(0x7f)},
    {BYTES(0xe0)},
    {BYTES(0xff)},
    {BYTES(0xcc, 0x80)},
    {BYTES(0xcd, 0x01, 0x00)},
    {BYTES(0xce, 0x00, 0x01, 0x00, 0x00)},
    {BYTES(0xcf, 0, 0, 0, 1, 0, 0, 0, 0)},
    {BYTES(0xd0, 0x80)},
    {BYTES(0xd1, 0x80, 0x00)},
    {BYTES(0xd2, 0x80, 0, 0, 0)},
    {BYTES(0xd3, 0x80, 0, 0, 0, 0, 0, 0, 0)},
    {BYTES(0xca, 0x3f, 0xc0, 0x00, 0x00)},
    {BYTES(0xcb, 0x3f, 0xf8, 0, 0, 0, 0, 0, 0)},
    {BYTES(0xa0)},
    {BYTES(0xa2, 'h', 'i')},
    {BYTES(0xd9, 0x01, 'x')},
    {BYTES(0xda, 0x00, 0x01, 'x')},
    {BYTES(0xdb, 0, 0, 0, 0x01, 'x')},
    {BYTES(0xc4, 0x01, 0x00)},
    {BYTES(0xc5, 0x00, 0x01, 0x00)},
    {BYTES(0xc6, 0, 0, 0, 0x01, 0x00)},
    {BYTES(0x90)},
    {BYTES(0x92, 0x01, 0xc0)},
    {BYTES(0xdc, 0x00, 0x01, 0x01)},
    {BYTES(0xdd, 0, 0, 0, 0x01, 0x01)},
    {BYTES(0x80)},
    {BYTES(0x81, 0x01, 0x02)},
    {BYTES(0xde, 0x00, 0x01, 0xa1, 'k', 0x02)},
    {BYTES(0xdf, 0, 0, 0, 0x01, 0xc0, 0xc0)},
    {BYTES(0xd4, 0x01, 0xaa)},
    {BYTES(0xd5, 0x01, 0xaa, 0xbb)},
    {BYTES(0xd6, 0xff, 1, 2, 3, 4)},
    {BYTES(0xd7, 0xff, 1, 2, 3, 4, 5, 6, 7, 8)},
    {BYTES(0xd8, 0x05, 1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13, 14, 15, 16)},
    {BYTES(0xc7, 0x00, 0x01)},
    {BYTES(0xc7, 0x03, 0x01, 'a', 'b', 'c')},
    {BYTES(0xc8, 0x00, 0x01, 0x7f, 'a')},
    {BYTES(0xc9, 0, 0, 0, 0x02, 0x80, 'a', 'b')},
};

Test(codec, every_format_accepted_and_agrees_with_msgpack_c)
{
    for (size_t i = 0; i < sizeof every_format / sizeof every_format[0]; i++) {
        const unsigned char *b = every_format[i].b;
        size_t len = every_format[i].len;
        size_t at = 0;
        const char *why = check_reason(b, len, 1, &at);
        cr_assert_null(why, "format 0x%02x refused: %s at %zu", b[0], why ? why : "", at);

        msgpack_unpacked u;
        size_t off = 0;
        msgpack_unpacked_init(&u);
        cr_assert_eq(msgpack_unpack_next(&u, (const char *)b, len, &off),
                     MSGPACK_UNPACK_SUCCESS, "msgpack-c refuses format 0x%02x", b[0]);
        cr_assert_eq(off, len);
        msgpack_unpacked_destroy(&u);
    }
}

Test(codec, every_format_refused_when_short_or_long)
{
    unsigned char longer[32];
    for (size_t i = 0; i < sizeof every_format / sizeof every_format[0]; i++) {
        const unsigned char *b = every_format[i].b;
        size_t len = every_format[i].len;
        for (size_t k = 0; k < len; k++) {
            size_t at = 0;
            const char *why = check_reason(b, k, 1, &at);
            cr_assert_not_null(why, "prefix %zu of format 0x%02x accepted", k, b[0]);
            cr_assert(at <= k);
        }
        cr_assert(len < sizeof longer);
        memcpy(longer, b, len);
        longer[len] = 0x00;
        expect_fail(longer, len + 1, 1, len, "trailing bytes");
    }
}

/* A document using every kind of object, nested four deep, built with
 * msgpack-c's packer. */
static unsigned char *nested_doc(size_t *len)
{
    msgpack_sbuffer sb;
    msgpack_packer pk;
    char big[300];
    memset(big, 'z', sizeof big);
    msgpack_sbuffer_init(&sb);
    msgpack_packer_init(&pk, &sb, msgpack_sbuffer_write);
    msgpack_pack_map(&pk, 3);
    msgpack_pack_str_with_body(&pk, "a", 1);
    msgpack_pack_array(&pk, 17);
    msgpack_pack_int64(&pk, 1);
    msgpack_pack_int64(&pk, -1);
    msgpack_pack_int64(&pk, 300);
    msgpack_pack_int64(&pk, -300);
    msgpack_pack_int64(&pk, 70000);
    msgpack_pack_int64(&pk, (int64_t)1 << 40);
    msgpack_pack_int64(&pk, -((int64_t)1 << 40));
    msgpack_pack_uint64(&pk, UINT64_MAX);
    msgpack_pack_float(&pk, 1.5f);
    msgpack_pack_double(&pk, 2.5);
    msgpack_pack_nil(&pk);
    msgpack_pack_true(&pk);
    msgpack_pack_false(&pk);
    msgpack_pack_str_with_body(&pk, "str", 3);
    msgpack_pack_bin_with_body(&pk, "\x00\x01", 2);
    msgpack_pack_ext_with_body(&pk, "abc", 3, 7);
    msgpack_pack_ext_with_body(&pk, "abcd", 4, -2);
    msgpack_pack_str_with_body(&pk, "b", 1);
    msgpack_pack_map(&pk, 1);
    msgpack_pack_int64(&pk, 5);
    msgpack_pack_array(&pk, 2);
    msgpack_pack_array(&pk, 0);
    msgpack_pack_map(&pk, 0);
    msgpack_pack_str_with_body(&pk, "e", 1);
    msgpack_pack_str_with_body(&pk, big, sizeof big);
    *len = sb.size;
    return (unsigned char *)msgpack_sbuffer_release(&sb);
}

Test(codec, every_prefix_of_nested_doc_refused)
{
    size_t len = 0;
    unsigned char *doc = nested_doc(&len);
    expect_ok(doc, len, 4);
    expect_fail(doc, len, 3, 88, "too deep"); /* the empty array in "b" */
    expect_fail(doc, len, 2, 87, "too deep"); /* the array holding it */
    for (size_t k = 0; k < len; k++) {
        unsigned char *copy = malloc(k ? k : 1); /* exact size, so ASan sees overreads */
        cr_assert_not_null(copy);
        memcpy(copy, doc, k);
        size_t at = 0;
        const char *why = check_reason(copy, k, STX_MP_MAX_DEPTH, &at);
        cr_assert_not_null(why, "prefix of %zu of %zu bytes accepted", k, len);
        cr_assert(at <= k, "prefix %zu: offset %zu", k, at);
        free(copy);
    }
    free(doc);
}

Test(codec, nested_doc_fail_offsets)
{
    /* [1, "ab" but one byte short]: the str is what does not fit */
    expect_fail(BYTES(0x92, 0x01, 0xa2, 'a'), 4, 2, "length exceeds input");
    expect_fail(BYTES(0x92, 0x01, 0xcd, 0x01), 4, 2, "truncated");
    expect_fail(BYTES(0x92, 0x01), 4, 0, "count exceeds input");
    expect_fail(BYTES(0x81, 0x01), 4, 0, "count exceeds input");
    expect_fail(BYTES(0xdc, 0x00), 4, 0, "truncated");
}

/* n nested one-element arrays around an empty array: n + 1 levels. */
static unsigned char *deep_arrays(size_t n)
{
    unsigned char *b = malloc(n + 1);
    cr_assert_not_null(b);
    memset(b, 0x91, n);
    b[n] = 0x90;
    return b;
}

Test(codec, depth_limit)
{
    expect_ok(BYTES(0x01), 0);
    expect_fail(BYTES(0x90), 0, 0, "too deep");
    expect_fail(BYTES(0x80), 0, 0, "too deep");
    expect_ok(BYTES(0x90), 1);
    expect_fail(BYTES(0x91, 0x90), 1, 1, "too deep");
    expect_ok(BYTES(0x91, 0x90), 2);
    /* maps nest through their values */
    expect_ok(BYTES(0x81, 0x00, 0x81, 0x00, 0x80), 3);
    expect_fail(BYTES(0x81, 0x00, 0x81, 0x00, 0x80), 2, 4, "too deep");
    /* and through their keys */
    expect_fail(BYTES(0x81, 0x91, 0x90, 0x00), 2, 2, "too deep");
    /* siblings do not add up */
    expect_ok(BYTES(0x93, 0x91, 0x01, 0x91, 0x01, 0x91, 0x90), 3);

    static const size_t levels[] = {32, 33, STX_MP_MAX_DEPTH, STX_MP_MAX_DEPTH + 1};
    for (size_t i = 0; i < sizeof levels / sizeof levels[0]; i++) {
        size_t n = levels[i];
        unsigned char *b = deep_arrays(n - 1);
        expect_ok(b, n, (unsigned)n);
        expect_fail(b, n, (unsigned)n - 1, n - 1, "too deep");
        free(b);
    }
}

Test(codec, depth_limit_any_value_is_safe)
{
    /* 100000 levels with no effective limit: refused, without deep recursion */
    size_t n = 100000;
    unsigned char *b = deep_arrays(n - 1);
    cr_assert_eq(stx_mp_validate(b, n, UINT_MAX), STX_EDECODE);
    cr_assert_eq(stx_mp_validate(b, n, STX_MP_MAX_DEPTH), STX_EDECODE);
    free(b);
    b = deep_arrays(199);
    expect_ok(b, 200, UINT_MAX);
    free(b);
}

Test(codec, trailing_bytes)
{
    expect_fail(BYTES(0x01, 0x02), STX_MP_MAX_DEPTH, 1, "trailing bytes");
    expect_fail(BYTES(0x90, 0x00), STX_MP_MAX_DEPTH, 1, "trailing bytes");
    expect_fail(BYTES(0x92, 0x01, 0x02, 0xc1), STX_MP_MAX_DEPTH, 3, "trailing bytes");
    expect_fail(BYTES(0xa1, 'a', 'b'), STX_MP_MAX_DEPTH, 2, "trailing bytes");
}

Test(codec, reserved_byte_c1)
{
    expect_fail(BYTES(0xc1), STX_MP_MAX_DEPTH, 0, "reserved byte 0xc1");
    expect_fail(BYTES(0x92, 0x01, 0xc1), STX_MP_MAX_DEPTH, 2, "reserved byte 0xc1");
    expect_fail(BYTES(0x81, 0xc1, 0x01), STX_MP_MAX_DEPTH, 1, "reserved byte 0xc1");
    /* inside a payload it is just a byte */
    expect_ok(BYTES(0xa1, 0xc1), STX_MP_MAX_DEPTH);
}

Test(codec, empty_input)
{
    expect_fail(B(0x00), 0, STX_MP_MAX_DEPTH, 0, "empty input");
    cr_assert_eq(stx_mp_validate(NULL, 0, STX_MP_MAX_DEPTH), STX_EDECODE);
    cr_assert_eq(stx_mp_validate(NULL, 5, STX_MP_MAX_DEPTH), STX_EDECODE);
    /* outputs are optional */
    cr_assert_eq(stx_mp_check(BYTES(0xc1), 1, NULL, NULL), STX_EDECODE);
}

Test(codec, crc32_check_values)
{
    cr_assert_eq(stx_crc32(0, "123456789", 9), 0xCBF43926u);
    cr_assert_eq(stx_crc32(0, "", 0), 0u);
    cr_assert_eq(stx_crc32(0, NULL, 0), 0u);
    cr_assert_eq(stx_crc32(0, "The quick brown fox jumps over the lazy dog", 43), 0x414FA339u);
    cr_assert_eq(stx_crc32(0, "a", 1), 0xE8B7BE43u);
    /* continuing from a previous value equals one pass */
    cr_assert_eq(stx_crc32(stx_crc32(0, "1234", 4), "56789", 5), 0xCBF43926u);
}
