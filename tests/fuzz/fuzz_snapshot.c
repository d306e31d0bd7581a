/* libFuzzer target for the snapshot record decoders (src/snapshot.c).
 *
 * Input: byte 0 is the key length k; the next k bytes (fewer if the input
 * is short) are the key and the rest is a state record.  The whole input is
 * also decoded as a meta record, with caps too small and large enough.
 * Key, record and meta are copied into buffers of their exact size so that
 * AddressSanitizer sees any read past them.  Each is decoded a second time
 * with its checksum fixed up, so the fuzzer also reaches the checks behind
 * the CRC (lengths, msgpack) without having to forge CRCs.
 *
 * The whole input is also decoded as a long-key record (crc, key length,
 * key, value), as it is and with its checksum fixed up.
 *
 * Invariants: an accepted record carries a matching checksum and exactly
 * one valid msgpack value, returned in place; an accepted meta record is
 * the one canonical encoding of what it decodes to, its outputs are
 * NUL-terminated within the caps and nothing past the terminator is
 * written; the verdict only depends on the caps through the lengths. */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "codec.h"
#include "snapshot.h"
#include "streamtx.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

#define REQUIRE(cond) \
    do { \
        if (!(cond)) \
            abort(); \
    } while (0)

#define SMALL_CAP 8
#define LARGE_ID_CAP (STX_SNAP_MAX_IDENTITY + 1)
#define LARGE_OFF_CAP 65
#define FILL 0x5c

static void *dup_exact(const uint8_t *p, size_t n)
{
    void *b = malloc(n ? n : 1);
    REQUIRE(b != NULL);
    if (n)
        memcpy(b, p, n);
    return b;
}

static uint32_t le32(const unsigned char *p)
{
    return (uint32_t)p[0] | ((uint32_t)p[1] << 8) | ((uint32_t)p[2] << 16) |
           ((uint32_t)p[3] << 24);
}

static void put_le(unsigned char *p, uint64_t v, int n)
{
    for (int i = 0; i < n; i++)
        p[i] = (unsigned char)(v >> (8 * i));
}

static void check_record(const void *key, size_t klen, const uint8_t *rec_in, size_t rlen)
{
    unsigned char *rec = dup_exact(rec_in, rlen);
    const void *val = (const void *)1;
    size_t vlen = (size_t)-1;
    int rc = stx_snapshot_decode_record(key, klen, rec, rlen, &val, &vlen);
    REQUIRE(rc == STX_OK || rc == STX_EDECODE);
    REQUIRE(stx_snapshot_decode_record(key, klen, rec, rlen, NULL, NULL) == rc);
    if (rc == STX_OK) {
        REQUIRE(rlen >= 5);
        REQUIRE(val == rec + 4 && vlen == rlen - 4);
        REQUIRE(stx_mp_validate(val, vlen, STX_MP_MAX_DEPTH) == STX_OK);
        unsigned char kl[4];
        put_le(kl, klen, 4);
        uint32_t crc = stx_crc32(0, kl, 4);
        crc = stx_crc32(crc, key, klen);
        crc = stx_crc32(crc, val, vlen);
        REQUIRE(crc == le32(rec));
    }
    free(rec);
}

/* Is p[0..n) "DIGITS-DIGITS"? (the u64 range is left to the decoder) */
static int id_shaped(const char *p, size_t n)
{
    const char *dash = memchr(p, '-', n);
    if (dash == NULL || dash == p || dash == p + n - 1)
        return 0;
    for (size_t i = 0; i < n; i++)
        if (p + i != dash && (p[i] < '0' || p[i] > '9'))
            return 0;
    return 1;
}

static int decode_meta(const uint8_t *m, size_t n, char *id, size_t idcap, uint64_t *seq,
                       char *off, size_t offcap)
{
    memset(id, FILL, idcap);
    memset(off, FILL, offcap);
    int rc = stx_snapshot_decode_meta(m, n, id, idcap, seq, off, offcap);
    REQUIRE(rc == STX_OK || rc == STX_EDECODE);
    if (rc == STX_OK) {
        size_t il = strnlen(id, idcap), ol = strnlen(off, offcap);
        REQUIRE(il < idcap && ol < offcap);
        for (size_t i = il + 1; i < idcap; i++)
            REQUIRE((unsigned char)id[i] == FILL);
        for (size_t i = ol + 1; i < offcap; i++)
            REQUIRE((unsigned char)off[i] == FILL);
        REQUIRE(id_shaped(off, ol));
    }
    return rc;
}

static void check_meta(const uint8_t *in, size_t size)
{
    uint8_t *m = dup_exact(in, size);
    static char id_l[LARGE_ID_CAP], off_l[LARGE_OFF_CAP];
    char id_s[SMALL_CAP], off_s[SMALL_CAP];
    uint64_t seq_l = 0, seq_s = 0;

    int rl = decode_meta(m, size, id_l, sizeof id_l, &seq_l, off_l, sizeof off_l);
    int rs = decode_meta(m, size, id_s, sizeof id_s, &seq_s, off_s, sizeof off_s);
    int rn = stx_snapshot_decode_meta(m, size, NULL, 0, NULL, NULL, 0);
    REQUIRE(rn == rl); /* the large caps hold anything valid */
    if (rs == STX_OK) {
        REQUIRE(rl == STX_OK);
        REQUIRE(strcmp(id_s, id_l) == 0 && strcmp(off_s, off_l) == 0 && seq_s == seq_l);
    } else if (rl == STX_OK) {
        REQUIRE(strlen(id_l) >= SMALL_CAP || strlen(off_l) >= SMALL_CAP);
    }
    if (rl == STX_OK) {
        /* Re-encode: an accepted record is the canonical encoding. */
        size_t il = strlen(id_l), ol = strlen(off_l);
        size_t n = 4 + 1 + 4 + il + 8 + 2 + ol + 4;
        REQUIRE(n == size);
        unsigned char *e = malloc(n);
        REQUIRE(e != NULL);
        size_t p = 0;
        memcpy(e, "STXS", 4);
        p += 4;
        e[p++] = 1;
        put_le(e + p, il, 4);
        p += 4;
        memcpy(e + p, id_l, il);
        p += il;
        put_le(e + p, seq_l, 8);
        p += 8;
        put_le(e + p, ol, 2);
        p += 2;
        memcpy(e + p, off_l, ol);
        p += ol;
        put_le(e + p, stx_crc32(0, e, p), 4);
        REQUIRE(memcmp(e, m, n) == 0);
        free(e);
    }
    free(m);
}

/* Copy of a record with a correct checksum in front. */
static uint8_t *fix_record_crc(const void *key, size_t klen, const uint8_t *rec, size_t rlen)
{
    uint8_t *r = dup_exact(rec, rlen);
    unsigned char kl[4];
    put_le(kl, klen, 4);
    uint32_t crc = stx_crc32(0, kl, 4);
    crc = stx_crc32(crc, key, klen);
    crc = stx_crc32(crc, r + 4, rlen - 4);
    put_le(r, crc, 4);
    return r;
}

/* A long-key record: accepted only with a matching checksum over the key
 * and value it points at (in place), and one valid msgpack value. */
static void check_long(const uint8_t *in, size_t size, int fix_crc)
{
    uint8_t *rec = dup_exact(in, size);
    uint32_t klen = size >= 8 ? le32(rec + 4) : 0;
    int shaped = size >= 8 && klen <= size - 8;
    if (fix_crc && shaped) {
        unsigned char kl[4];
        put_le(kl, klen, 4);
        uint32_t crc = stx_crc32(0, kl, 4);
        crc = stx_crc32(crc, rec + 8, klen);
        crc = stx_crc32(crc, rec + 8 + klen, size - 8 - klen);
        put_le(rec, crc, 4);
    }
    const void *k = NULL, *v = NULL;
    size_t kl_out = 0, vl = 0;
    int rc = stx_snapshot_decode_long_record(rec, size, &k, &kl_out, &v, &vl);
    REQUIRE(rc == STX_OK || rc == STX_EDECODE);
    REQUIRE(stx_snapshot_decode_long_record(rec, size, NULL, NULL, NULL, NULL) == rc);
    if (rc == STX_OK) {
        REQUIRE(shaped);
        REQUIRE(k == rec + 8 && kl_out == klen);
        REQUIRE(v == rec + 8 + klen && vl == size - 8 - klen);
        REQUIRE(stx_mp_validate(v, vl, STX_MP_MAX_DEPTH) == STX_OK);
    }
    if (fix_crc)
        REQUIRE((rc == STX_OK) ==
                (shaped && stx_mp_validate(rec + 8 + klen, size - 8 - klen,
                                           STX_MP_MAX_DEPTH) == STX_OK));
    free(rec);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    if (size > 1 << 16)
        return 0;
    if (size > 0) {
        size_t klen = data[0];
        if (klen > size - 1)
            klen = size - 1;
        void *key = dup_exact(data + 1, klen);
        const uint8_t *rec = data + 1 + klen;
        size_t rlen = size - 1 - klen;
        check_record(key, klen, rec, rlen);
        if (rlen >= 4) {
            uint8_t *fixed = fix_record_crc(key, klen, rec, rlen);
            check_record(key, klen, fixed, rlen);
            REQUIRE(stx_snapshot_decode_record(key, klen, fixed, rlen, NULL, NULL) ==
                    stx_mp_validate(fixed + 4, rlen - 4, STX_MP_MAX_DEPTH));
            free(fixed);
        }
        free(key);
    }
    check_record(NULL, 0, data, size); /* whole input, empty key */
    check_meta(data, size);
    check_long(data, size, 0);
    check_long(data, size, 1);
    if (size >= 4) {
        uint8_t *fixed = dup_exact(data, size);
        put_le(fixed + size - 4, stx_crc32(0, fixed, size - 4), 4);
        check_meta(fixed, size);
        free(fixed);
    }
    return 0;
}
