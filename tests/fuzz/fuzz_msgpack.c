/* libFuzzer target for the bounded msgpack walker and the typed readers.
 *
 * The walker guards msgpack-c: whatever it accepts (within msgpack-c's own
 * nesting limit) must unpack with msgpack_unpack_next(), and it must never
 * let a forged count through to msgpack-c's allocator (run with
 * -malloc_limit_mb).  Where the walker refuses, msgpack-c is asked too when
 * that is safe, so the two must agree on what is valid. */
#include <limits.h>
#include <msgpack.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "codec.h"
#include "streamtx.h"

/* msgpack-c refuses to open a container when this many are open
 * (MSGPACK_EMBED_STACK_SIZE in unpack_define.h). */
#define MSGPACK_C_DEPTH 32

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

/* A failed invariant is a crash, which libFuzzer reports with the input. */
#define REQUIRE(cond) \
    do { \
        if (!(cond)) \
            abort(); \
    } while (0)

/* Run msgpack-c on the input; returns its verdict and sets *off. */
static msgpack_unpack_return unpack(const uint8_t *data, size_t size, size_t *off,
                                    msgpack_object *copy_type)
{
    msgpack_unpacked u;
    msgpack_unpacked_init(&u);
    *off = 0;
    msgpack_unpack_return r = msgpack_unpack_next(&u, (const char *)data, size, off);
    if (r == MSGPACK_UNPACK_SUCCESS && copy_type)
        *copy_type = u.data; /* scalars only: its payload points into data */
    msgpack_unpacked_destroy(&u);
    return r;
}

/* Accepting at one depth means accepting at every larger depth, and the
 * report is coherent. */
static int check_at(const uint8_t *data, size_t size, unsigned depth, size_t *at,
                    const char **why)
{
    int rc = stx_mp_check(data, size, depth, at, why);
    REQUIRE(rc == STX_OK || rc == STX_EDECODE);
    REQUIRE(stx_mp_validate(data, size, depth) == rc);
    REQUIRE((rc == STX_OK) == (*why == NULL));
    REQUIRE(rc == STX_OK || *at <= size);
    return rc;
}

static void check_readers(const uint8_t *data, size_t size, int valid, const msgpack_object *obj)
{
    int64_t v = 0;
    int rc = stx_mp_read_i64(data, size, &v);
    REQUIRE(valid ? (rc == STX_OK || rc == STX_ETYPE) : rc == STX_EDECODE);
    if (rc == STX_OK) {
        REQUIRE(obj != NULL);
        if (obj->type == MSGPACK_OBJECT_POSITIVE_INTEGER)
            REQUIRE((uint64_t)v == obj->via.u64);
        else
            REQUIRE(obj->type == MSGPACK_OBJECT_NEGATIVE_INTEGER && v == obj->via.i64);
        /* Re-encoding gives the smallest form, which reads back the same. */
        unsigned char enc[9];
        int64_t back = 0;
        size_t n = stx_mp_write_i64(enc, v);
        REQUIRE(n >= 1 && n <= 9 && n <= size);
        REQUIRE(stx_mp_read_i64(enc, n, &back) == STX_OK && back == v);
    } else if (rc == STX_ETYPE && obj != NULL) {
        REQUIRE(obj->type != MSGPACK_OBJECT_NEGATIVE_INTEGER);
        REQUIRE(obj->type != MSGPACK_OBJECT_POSITIVE_INTEGER || obj->via.u64 > INT64_MAX);
    }

    const char *s = NULL;
    size_t slen = 0;
    rc = stx_mp_read_str(data, size, &s, &slen);
    REQUIRE(valid ? (rc == STX_OK || rc == STX_ETYPE) : rc == STX_EDECODE);
    if (rc == STX_OK) {
        REQUIRE(s > (const char *)data && s + slen == (const char *)data + size);
        /* msgpack-c's pointer for an empty payload is arbitrary. */
        if (obj != NULL && obj->type == MSGPACK_OBJECT_STR)
            REQUIRE(obj->via.str.size == slen && (slen == 0 || obj->via.str.ptr == s));
        else if (obj != NULL)
            REQUIRE(obj->type == MSGPACK_OBJECT_BIN && obj->via.bin.size == slen &&
                    (slen == 0 || obj->via.bin.ptr == s));
        unsigned char *enc = NULL;
        size_t enclen = 0;
        REQUIRE(stx_mp_write_str(s, slen, &enc, &enclen) == STX_OK);
        const char *s2 = NULL;
        size_t slen2 = 0;
        REQUIRE(stx_mp_read_str(enc, enclen, &s2, &slen2) == STX_OK);
        REQUIRE(slen2 == slen && (slen == 0 || memcmp(s2, s, slen) == 0));
        free(enc);
    }
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    static const unsigned depths[] = {0, 1, 2, 8, MSGPACK_C_DEPTH, STX_MP_MAX_DEPTH, UINT_MAX};
    int accepted_before = 0;
    int rc = STX_EDECODE; /* verdict at msgpack-c's depth, with its report */
    size_t at = 0;
    const char *why = NULL;

    for (size_t i = 0; i < sizeof depths / sizeof depths[0]; i++) {
        size_t at_i = 0;
        const char *why_i = NULL;
        int rc_i = check_at(data, size, depths[i], &at_i, &why_i);
        REQUIRE(!accepted_before || rc_i == STX_OK);
        accepted_before = rc_i == STX_OK;
        if (depths[i] == MSGPACK_C_DEPTH) {
            rc = rc_i;
            at = at_i;
            why = why_i;
        }
    }

    size_t off = 0;
    msgpack_object obj;
    int have_obj = 0;
    if (rc == STX_OK) {
        REQUIRE(unpack(data, size, &off, &obj) == MSGPACK_UNPACK_SUCCESS);
        REQUIRE(off == size);
        have_obj = 1;
    } else if (strcmp(why, "count exceeds input") != 0) {
        /* Every container opened before the failure passed the count check,
         * so msgpack-c's allocations stay bounded by the input size.  This
         * includes values deeper than msgpack-c goes but within
         * STX_MP_MAX_DEPTH: msgpack-c must refuse them cleanly. */
        msgpack_unpack_return r = unpack(data, size, &off, NULL);
        if (strcmp(why, "trailing bytes") == 0)
            REQUIRE(r == MSGPACK_UNPACK_SUCCESS && off == at);
        else
            REQUIRE(r != MSGPACK_UNPACK_SUCCESS);
    }

    int valid = stx_mp_validate(data, size, STX_MP_MAX_DEPTH) == STX_OK;
    check_readers(data, size, valid, have_obj ? &obj : NULL);
    return 0;
}
