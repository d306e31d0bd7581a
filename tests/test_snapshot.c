/* The LMDB snapshot (src/snapshot.c): round trips, transactions, damaged
 * records and files, map growth and the record decoders.  No Redis. */
#include <criterion/criterion.h>
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <lmdb.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include "codec.h"
#include "snapshot.h"
#include "streamtx.h"

/* ---- fixture: one temporary directory per test ------------------------ */

/* Every test uses the pair (SS, SG) unless it says otherwise; env_dir is
 * that pair's environment directory inside snap_dir. */
#define SS "orders"
#define SG "g1"

static char tmp_root[256];
static char snap_dir[320];
static char env_dir[512];

static void rm_tree(const char *path)
{
    struct stat st;
    if (lstat(path, &st) != 0)
        return;
    if (S_ISDIR(st.st_mode)) {
        DIR *d = opendir(path);
        if (d != NULL) {
            struct dirent *e;
            while ((e = readdir(d)) != NULL) {
                if (strcmp(e->d_name, ".") == 0 || strcmp(e->d_name, "..") == 0)
                    continue;
                char sub[1024];
                snprintf(sub, sizeof sub, "%s/%s", path, e->d_name);
                rm_tree(sub);
            }
            closedir(d);
        }
        rmdir(path);
    } else {
        unlink(path);
    }
}

static void setup(void)
{
    snprintf(tmp_root, sizeof tmp_root, "/tmp/stx-snap-XXXXXX");
    cr_assert_not_null(mkdtemp(tmp_root), "mkdtemp: %s", strerror(errno));
    snprintf(snap_dir, sizeof snap_dir, "%s/snap", tmp_root);
    char *e = stx_snapshot_env_dir(snap_dir, SS, SG);
    cr_assert_not_null(e);
    snprintf(env_dir, sizeof env_dir, "%s", e);
    free(e);
}

static void teardown(void)
{
    if (tmp_root[0] != '\0')
        rm_tree(tmp_root);
}

TestSuite(snapshot, .init = setup, .fini = teardown);

/* ---- helpers ---------------------------------------------------------- */

static stx_snapshot *open_snap(const char *dir, unsigned mb, int sync_mode)
{
    stx_snapshot *s = NULL;
    char err[512];
    int rc = stx_snapshot_open(&s, dir, SS, SG, mb, sync_mode, err, sizeof err);
    cr_assert_eq(rc, STX_OK, "open %s: %d %s", dir, rc, err);
    cr_assert_not_null(s);
    return s;
}

typedef struct stored {
    unsigned char key[600];
    size_t klen;
    unsigned char val[2048];
    size_t vlen;
} stored;

typedef struct recs {
    stored *r;
    size_t n, cap;
    int stop_after; /* callback returns 7 after this many (0 = never) */
} recs;

static int collect(void *ud, const void *key, size_t klen, const void *val, size_t vlen)
{
    recs *c = ud;
    if (c->n == c->cap) {
        c->cap = c->cap ? c->cap * 2 : 16;
        c->r = realloc(c->r, c->cap * sizeof *c->r);
        cr_assert_not_null(c->r);
    }
    cr_assert_leq(klen, sizeof c->r[0].key);
    cr_assert_leq(vlen, sizeof c->r[0].val);
    stored *r = &c->r[c->n++];
    memcpy(r->key, key, klen);
    r->klen = klen;
    memcpy(r->val, val, vlen);
    r->vlen = vlen;
    if (c->stop_after && (int)c->n == c->stop_after)
        return 7;
    return 0;
}

static void recs_free(recs *c)
{
    free(c->r);
    memset(c, 0, sizeof *c);
}

static void expect_rec(const recs *c, size_t i, const void *key, size_t klen, const void *val,
                       size_t vlen)
{
    cr_assert_lt(i, c->n);
    cr_assert_eq(c->r[i].klen, klen, "record %zu key length", i);
    cr_assert(memcmp(c->r[i].key, key, klen) == 0, "record %zu key", i);
    cr_assert_eq(c->r[i].vlen, vlen, "record %zu value length", i);
    cr_assert(memcmp(c->r[i].val, val, vlen) == 0, "record %zu value", i);
}

#define PUT(s, k, v) \
    cr_assert_eq(stx_snapshot_put((s), (k), sizeof(k) - 1, (v), sizeof(v) - 1), STX_OK, \
                 "put: %s", stx_snapshot_errmsg(s))

/* msgpack values, hand-encoded */
static const char V_INT[] = "\x2a";                                  /* 42 */
static const char V_STR[] = "\xa3" "abc";                            /* "abc" */
static const char V_MAP[] = "\x82\xa1" "a\x01\xa1" "b\x92\x01\xc0";  /* {a:1,b:[1,nil]} */
static const char V_BIN[] = "\xc4\x03\x00\xff\x01";                  /* bin 00 ff 01 */
static const char V_NEG[] = "\xd3\x80\x00\x00\x00\x00\x00\x00\x00";  /* INT64_MIN */

static void write_sample_clear(stx_snapshot *s, int clear)
{
    cr_assert_eq(stx_snapshot_begin(s, clear), STX_OK, "%s", stx_snapshot_errmsg(s));
    PUT(s, "alpha", V_INT);
    PUT(s, "b\0inary", V_BIN);
    PUT(s, "gamma", V_MAP);
    PUT(s, "beta", V_STR);
    PUT(s, "\xff\x01", V_NEG);
    cr_assert_eq(stx_snapshot_commit(s, "orders/g1/lineage-7", 42, "1700000000000-5"), STX_OK,
                 "%s", stx_snapshot_errmsg(s));
}

static void write_sample(stx_snapshot *s)
{
    write_sample_clear(s, 0);
}

/* Keys in LMDB order (memcmp): "alpha" "b\0inary" "beta" "gamma" "\xff\x01". */
static void expect_sample(stx_snapshot *s)
{
    recs c = {0};
    cr_assert_eq(stx_snapshot_load(s, collect, &c), STX_OK, "%s", stx_snapshot_errmsg(s));
    cr_assert_eq(c.n, 5);
    expect_rec(&c, 0, "alpha", 5, V_INT, sizeof V_INT - 1);
    expect_rec(&c, 1, "b\0inary", 7, V_BIN, sizeof V_BIN - 1);
    expect_rec(&c, 2, "beta", 4, V_STR, sizeof V_STR - 1);
    expect_rec(&c, 3, "gamma", 5, V_MAP, sizeof V_MAP - 1);
    expect_rec(&c, 4, "\xff\x01", 2, V_NEG, sizeof V_NEG - 1);
    recs_free(&c);
}

static void expect_meta(stx_snapshot *s, const char *id, uint64_t seq, const char *off)
{
    static char ident[STX_SNAP_MAX_IDENTITY + 1];
    char offset[65];
    uint64_t sq = 0;
    memset(ident, 'x', sizeof ident);
    memset(offset, 'x', sizeof offset);
    int rc = stx_snapshot_read_meta(s, ident, sizeof ident, &sq, offset, sizeof offset);
    cr_assert_eq(rc, STX_OK, "read_meta: %d %s", rc, stx_snapshot_errmsg(s));
    cr_assert_str_eq(ident, id);
    cr_assert_eq(sq, seq);
    cr_assert_str_eq(offset, off);
}

static size_t count_records(stx_snapshot *s)
{
    recs c = {0};
    cr_assert_eq(stx_snapshot_load(s, collect, &c), STX_OK, "%s", stx_snapshot_errmsg(s));
    size_t n = c.n;
    recs_free(&c);
    return n;
}

/* Direct LMDB access to a closed snapshot, to plant damage. */
typedef struct raw_env {
    MDB_env *env;
    MDB_txn *txn;
    MDB_dbi state, meta;
} raw_env;

static void raw_open(raw_env *r, const char *dir)
{
    cr_assert_eq(mdb_env_create(&r->env), 0);
    cr_assert_eq(mdb_env_set_maxdbs(r->env, 3), 0);
    cr_assert_eq(mdb_env_open(r->env, dir, 0, 0600), 0);
    cr_assert_eq(mdb_txn_begin(r->env, NULL, 0, &r->txn), 0);
    cr_assert_eq(mdb_dbi_open(r->txn, "state", 0, &r->state), 0);
    cr_assert_eq(mdb_dbi_open(r->txn, "meta", 0, &r->meta), 0);
}

static void raw_put(raw_env *r, MDB_dbi dbi, const void *k, size_t kl, const void *v, size_t vl)
{
    MDB_val key = {kl, (void *)k}, val = {vl, (void *)v};
    cr_assert_eq(mdb_put(r->txn, dbi, &key, &val, 0), 0);
}

/* Copy of the stored bytes of key in dbi into out; returns the length. */
static size_t raw_get(raw_env *r, MDB_dbi dbi, const void *k, size_t kl, unsigned char *out,
                      size_t cap)
{
    MDB_val key = {kl, (void *)k}, val;
    cr_assert_eq(mdb_get(r->txn, dbi, &key, &val), 0);
    cr_assert_leq(val.mv_size, cap);
    memcpy(out, val.mv_data, val.mv_size);
    return val.mv_size;
}

static void raw_close(raw_env *r)
{
    cr_assert_eq(mdb_txn_commit(r->txn), 0);
    mdb_env_close(r->env);
}

static void le32(unsigned char *p, uint32_t v)
{
    for (int i = 0; i < 4; i++)
        p[i] = (unsigned char)(v >> (8 * i));
}

/* A state record as snapshot.c documents it. */
static size_t make_record(unsigned char *out, const void *key, size_t klen, const void *val,
                          size_t vlen)
{
    unsigned char kl[4];
    le32(kl, (uint32_t)klen);
    uint32_t crc = stx_crc32(0, kl, 4);
    crc = stx_crc32(crc, key, klen);
    crc = stx_crc32(crc, val, vlen);
    le32(out, crc);
    memcpy(out + 4, val, vlen);
    return vlen + 4;
}

/* A meta record with every field given, CRC computed over what precedes it. */
static size_t make_meta(unsigned char *out, const char *magic, unsigned ver, uint32_t idlen_field,
                        const void *id, size_t idlen, uint64_t seq, uint16_t offlen_field,
                        const void *off, size_t offlen)
{
    size_t p = 0;
    memcpy(out, magic, 4);
    p += 4;
    out[p++] = (unsigned char)ver;
    le32(out + p, idlen_field);
    p += 4;
    memcpy(out + p, id, idlen);
    p += idlen;
    for (int i = 0; i < 8; i++)
        out[p++] = (unsigned char)(seq >> (8 * i));
    out[p++] = (unsigned char)offlen_field;
    out[p++] = (unsigned char)(offlen_field >> 8);
    memcpy(out + p, off, offlen);
    p += offlen;
    le32(out + p, stx_crc32(0, out, p));
    return p + 4;
}

static void write_file(const char *path, const void *buf, size_t len)
{
    int fd = open(path, O_WRONLY | O_CREAT | O_TRUNC, 0600);
    cr_assert_geq(fd, 0, "open %s: %s", path, strerror(errno));
    cr_assert_eq(write(fd, buf, len), (ssize_t)len);
    close(fd);
}

/* ---- round trips and transactions ------------------------------------- */

Test(snapshot, roundtrip_across_reopen)
{
    stx_snapshot *s = open_snap(snap_dir, 0, 1);
    char ident[16], off[8];
    uint64_t seq = 0;
    cr_assert_eq(stx_snapshot_read_meta(s, ident, sizeof ident, &seq, off, sizeof off),
                 STX_ENOTFOUND);
    cr_assert_eq(count_records(s), 0);
    write_sample(s);
    expect_sample(s);
    stx_snapshot_close(s);

    s = open_snap(snap_dir, 0, 1);
    expect_meta(s, "orders/g1/lineage-7", 42, "1700000000000-5");
    expect_sample(s);
    stx_snapshot_close(s);
}

Test(snapshot, stored_bytes_follow_the_documented_format)
{
    stx_snapshot *s = open_snap(snap_dir, 0, 0);
    write_sample(s);
    stx_snapshot_close(s);

    raw_env r;
    raw_open(&r, env_dir);
    unsigned char got[256], want[256];
    size_t n = raw_get(&r, r.state, "gamma", 5, got, sizeof got);
    size_t m = make_record(want, "gamma", 5, V_MAP, sizeof V_MAP - 1);
    cr_assert_eq(n, m);
    cr_assert(memcmp(got, want, n) == 0);
    n = raw_get(&r, r.meta, "meta", 4, got, sizeof got);
    m = make_meta(want, "STXS", 1, 19, "orders/g1/lineage-7", 19, 42, 15, "1700000000000-5", 15);
    cr_assert_eq(n, m);
    cr_assert(memcmp(got, want, n) == 0);
    raw_close(&r);
}

/* Bytes written by the table-driven CRC-32 that zlib's crc32 replaced: the
 * on-disk format must not change, so new writes give exactly these bytes and
 * these bytes load. */
static const char OLD_GAMMA[] = "\xe1\x1c\x55\xc2\x82\xa1\x61\x01\xa1\x62\x92\x01\xc0";
static const char OLD_META[] =
    "STXS\x01\x13\x00\x00\x00orders/g1/lineage-7\x2a\x00\x00\x00\x00\x00\x00\x00"
    "\x0f\x00" "1700000000000-5\xb4\x5f\xb3\xc0";

Test(snapshot, records_written_before_the_zlib_crc_are_unchanged)
{
    stx_snapshot *s = open_snap(snap_dir, 0, 0);
    write_sample(s);
    stx_snapshot_close(s);

    raw_env r;
    raw_open(&r, env_dir);
    unsigned char got[256];
    size_t n = raw_get(&r, r.state, "gamma", 5, got, sizeof got);
    cr_assert_eq(n, sizeof OLD_GAMMA - 1);
    cr_assert(memcmp(got, OLD_GAMMA, n) == 0);
    n = raw_get(&r, r.meta, "meta", 4, got, sizeof got);
    cr_assert_eq(n, sizeof OLD_META - 1);
    cr_assert(memcmp(got, OLD_META, n) == 0);
    /* Planted as an older version left them: they load. */
    raw_put(&r, r.state, "gamma", 5, OLD_GAMMA, sizeof OLD_GAMMA - 1);
    raw_put(&r, r.meta, "meta", 4, OLD_META, sizeof OLD_META - 1);
    raw_close(&r);

    s = open_snap(snap_dir, 0, 1);
    expect_meta(s, "orders/g1/lineage-7", 42, "1700000000000-5");
    expect_sample(s);
    stx_snapshot_close(s);
}

Test(snapshot, sync_modes_and_nested_dir)
{
    char nested[400];
    for (int mode = 0; mode <= 2; mode++) {
        snprintf(nested, sizeof nested, "%s/a%d/b/c/", tmp_root, mode);
        stx_snapshot *s = open_snap(nested, 16, mode);
        write_sample(s);
        stx_snapshot_close(s);
        s = open_snap(nested, 16, mode);
        expect_sample(s);
        stx_snapshot_close(s);
    }
    stx_snapshot *s = (stx_snapshot *)&s;
    char err[128];
    cr_assert_eq(stx_snapshot_open(&s, snap_dir, SS, SG, 0, 3, err, sizeof err), STX_EINVAL);
    cr_assert_null(s);
    cr_assert_eq(stx_snapshot_open(&s, "", SS, SG, 0, 0, err, sizeof err), STX_EINVAL);
    cr_assert_eq(stx_snapshot_open(&s, NULL, SS, SG, 0, 0, NULL, 0), STX_EINVAL);
}

Test(snapshot, clear_drops_records_and_meta)
{
    stx_snapshot *s = open_snap(snap_dir, 0, 2);
    write_sample(s);

    cr_assert_eq(stx_snapshot_begin(s, 1), STX_OK);
    PUT(s, "only", V_STR);
    cr_assert_eq(stx_snapshot_commit(s, "id2", 43, "1700000000001-0"), STX_OK);
    recs c = {0};
    cr_assert_eq(stx_snapshot_load(s, collect, &c), STX_OK);
    cr_assert_eq(c.n, 1);
    expect_rec(&c, 0, "only", 4, V_STR, sizeof V_STR - 1);
    recs_free(&c);
    expect_meta(s, "id2", 43, "1700000000001-0");

    /* A clear that is aborted changes nothing. */
    cr_assert_eq(stx_snapshot_begin(s, 1), STX_OK);
    stx_snapshot_abort(s);
    cr_assert_eq(count_records(s), 1);
    expect_meta(s, "id2", 43, "1700000000001-0");

    cr_assert_eq(stx_snapshot_begin(s, 1), STX_OK);
    cr_assert_eq(stx_snapshot_commit(s, "", 0, "0-0"), STX_OK);
    cr_assert_eq(count_records(s), 0);
    expect_meta(s, "", 0, "0-0");
    stx_snapshot_close(s);
}

Test(snapshot, del_and_overwrite)
{
    stx_snapshot *s = open_snap(snap_dir, 0, 0);
    write_sample(s);
    cr_assert_eq(stx_snapshot_begin(s, 0), STX_OK);
    cr_assert_eq(stx_snapshot_del(s, "beta", 4), STX_OK);
    cr_assert_eq(stx_snapshot_del(s, "no-such-key", 11), STX_OK);
    cr_assert_eq(stx_snapshot_del(s, "", 0), STX_OK);
    PUT(s, "alpha", V_STR);
    cr_assert_eq(stx_snapshot_commit(s, "orders/g1/lineage-7", 44, "1700000000000-6"), STX_OK);
    stx_snapshot_close(s);

    s = open_snap(snap_dir, 0, 0);
    recs c = {0};
    cr_assert_eq(stx_snapshot_load(s, collect, &c), STX_OK);
    cr_assert_eq(c.n, 4);
    expect_rec(&c, 0, "alpha", 5, V_STR, sizeof V_STR - 1);
    expect_rec(&c, 1, "b\0inary", 7, V_BIN, sizeof V_BIN - 1);
    expect_rec(&c, 2, "gamma", 5, V_MAP, sizeof V_MAP - 1);
    recs_free(&c);
    expect_meta(s, "orders/g1/lineage-7", 44, "1700000000000-6");
    stx_snapshot_close(s);
}

Test(snapshot, abort_keeps_previous_content)
{
    stx_snapshot *s = open_snap(snap_dir, 0, 1);
    write_sample(s);
    cr_assert_eq(stx_snapshot_begin(s, 0), STX_OK);
    PUT(s, "new", V_INT);
    cr_assert_eq(stx_snapshot_del(s, "alpha", 5), STX_OK);
    stx_snapshot_abort(s);
    stx_snapshot_abort(s); /* no transaction: no-op */
    expect_sample(s);
    expect_meta(s, "orders/g1/lineage-7", 42, "1700000000000-5");
    /* Closing with an open transaction aborts it. */
    cr_assert_eq(stx_snapshot_begin(s, 1), STX_OK);
    stx_snapshot_close(s);
    s = open_snap(snap_dir, 0, 1);
    expect_sample(s);
    stx_snapshot_close(s);
}

Test(snapshot, calls_out_of_order)
{
    stx_snapshot *s = open_snap(snap_dir, 0, 1);
    cr_assert_eq(stx_snapshot_put(s, "k", 1, V_INT, 1), STX_ESTATE);
    cr_assert(strstr(stx_snapshot_errmsg(s), "begin") != NULL, "%s", stx_snapshot_errmsg(s));
    cr_assert_eq(stx_snapshot_del(s, "k", 1), STX_ESTATE);
    cr_assert_eq(stx_snapshot_commit(s, "id", 1, "1-1"), STX_ESTATE);
    cr_assert_eq(stx_snapshot_begin(s, 0), STX_OK);
    cr_assert_eq(stx_snapshot_begin(s, 0), STX_ESTATE);
    recs c = {0};
    cr_assert_eq(stx_snapshot_load(s, collect, &c), STX_ESTATE);
    cr_assert_eq(stx_snapshot_read_meta(s, NULL, 0, NULL, NULL, 0), STX_ESTATE);
    cr_assert_eq(stx_snapshot_commit(s, "id", 1, "1-1"), STX_OK);
    cr_assert_eq(stx_snapshot_commit(s, "id", 1, "1-1"), STX_ESTATE);

    cr_assert_eq(stx_snapshot_begin(NULL, 0), STX_EINVAL);
    cr_assert_eq(stx_snapshot_put(NULL, "k", 1, V_INT, 1), STX_EINVAL);
    cr_assert_eq(stx_snapshot_load(NULL, collect, &c), STX_EINVAL);
    cr_assert_eq(stx_snapshot_load(s, NULL, NULL), STX_EINVAL);
    cr_assert_str_eq(stx_snapshot_errmsg(NULL), "");
    stx_snapshot_abort(NULL);
    stx_snapshot_close(NULL);
    stx_snapshot_close(s);
}

Test(snapshot, refused_put_or_commit_ends_the_transaction)
{
    stx_snapshot *s = open_snap(snap_dir, 0, 1);
    write_sample(s);
    unsigned char longkey[600];
    memset(longkey, 'k', sizeof longkey);

    /* Not one msgpack object: two objects, a truncated one, nothing. */
    static const char *const bad[] = {"\x01\x02", "\xa3\x61\x62", ""};
    static const size_t bad_len[] = {2, 3, 0};
    for (size_t i = 0; i < 3; i++) {
        cr_assert_eq(stx_snapshot_begin(s, 0), STX_OK);
        PUT(s, "zz", V_INT);
        cr_assert_eq(stx_snapshot_put(s, "x", 1, bad[i], bad_len[i]), STX_EDECODE);
        cr_assert_eq(stx_snapshot_put(s, "y", 1, V_INT, 1), STX_ESTATE);
    }
    cr_assert_eq(stx_snapshot_begin(s, 0), STX_OK);
    cr_assert_eq(stx_snapshot_put(s, longkey, 511, V_INT, 1), STX_OK);
    cr_assert_eq(stx_snapshot_put(s, longkey, 512, V_INT, 1), STX_OK);
    cr_assert_eq(stx_snapshot_put(s, "", 0, V_INT, 1), STX_OK);
    cr_assert_eq(stx_snapshot_put(s, "v", 1, NULL, 1), STX_EINVAL);

    static const char *const bad_off[] = {"", "abc", "1-", "-1", "1-2-3", "01x-2",
                                          "18446744073709551616-0", "1-123456789012345678901"};
    for (size_t i = 0; i < sizeof bad_off / sizeof bad_off[0]; i++) {
        cr_assert_eq(stx_snapshot_begin(s, 0), STX_OK);
        PUT(s, "zz", V_INT);
        cr_assert_eq(stx_snapshot_commit(s, "id", 1, bad_off[i]), STX_EINVAL, "%s", bad_off[i]);
        cr_assert_eq(stx_snapshot_commit(s, "id", 1, "1-1"), STX_ESTATE);
    }
    static char bigid[STX_SNAP_MAX_IDENTITY + 2];
    memset(bigid, 'i', STX_SNAP_MAX_IDENTITY + 1);
    bigid[STX_SNAP_MAX_IDENTITY + 1] = '\0';
    cr_assert_eq(stx_snapshot_begin(s, 0), STX_OK);
    cr_assert_eq(stx_snapshot_commit(s, bigid, 1, "1-1"), STX_EINVAL);
    cr_assert_eq(stx_snapshot_begin(s, 0), STX_OK);
    cr_assert_eq(stx_snapshot_commit(s, NULL, 1, "1-1"), STX_EINVAL);

    /* Nothing of the above landed. */
    expect_sample(s);
    expect_meta(s, "orders/g1/lineage-7", 42, "1700000000000-5");

    /* The limits themselves are accepted. */
    bigid[STX_SNAP_MAX_IDENTITY] = '\0';
    cr_assert_eq(stx_snapshot_begin(s, 0), STX_OK);
    cr_assert_eq(stx_snapshot_commit(s, bigid, UINT64_MAX,
                                     "18446744073709551615-18446744073709551615"),
                 STX_OK, "%s", stx_snapshot_errmsg(s));
    expect_meta(s, bigid, UINT64_MAX, "18446744073709551615-18446744073709551615");
    stx_snapshot_close(s);
}

Test(snapshot, load_callback_can_stop)
{
    stx_snapshot *s = open_snap(snap_dir, 0, 1);
    write_sample(s);
    recs c = {.stop_after = 2};
    cr_assert_eq(stx_snapshot_load(s, collect, &c), 7);
    cr_assert_eq(c.n, 2);
    recs_free(&c);
    stx_snapshot_close(s);
}

typedef struct reentry {
    stx_snapshot *s;
    int begin_rc, meta_rc, load_rc;
} reentry;

static int call_back_in(void *ud, const void *key, size_t klen, const void *val, size_t vlen)
{
    reentry *r = ud;
    (void)key, (void)klen, (void)val, (void)vlen;
    r->begin_rc = stx_snapshot_begin(r->s, 1);
    r->meta_rc = stx_snapshot_read_meta(r->s, NULL, 0, NULL, NULL, 0);
    r->load_rc = stx_snapshot_load(r->s, call_back_in, r);
    return 1;
}

Test(snapshot, calls_from_the_load_callback_are_refused)
{
    stx_snapshot *s = open_snap(snap_dir, 0, 1);
    write_sample(s);
    reentry r = {s, 0, 0, 0};
    cr_assert_eq(stx_snapshot_load(s, call_back_in, &r), 1);
    cr_assert_eq(r.begin_rc, STX_ESTATE);
    cr_assert_eq(r.meta_rc, STX_ESTATE);
    cr_assert_eq(r.load_rc, STX_ESTATE);
    expect_sample(s); /* and nothing changed */
    stx_snapshot_close(s);
}

/* ---- damage ----------------------------------------------------------- */

Test(snapshot, record_with_wrong_crc_is_refused)
{
    stx_snapshot *s = open_snap(snap_dir, 0, 1);
    write_sample(s);
    stx_snapshot_close(s);

    raw_env r;
    raw_open(&r, env_dir);
    unsigned char buf[64];
    size_t n = make_record(buf, "beta", 4, V_STR, sizeof V_STR - 1);
    buf[0] ^= 1;
    raw_put(&r, r.state, "beta", 4, buf, n);
    raw_close(&r);

    s = open_snap(snap_dir, 0, 1);
    recs c = {0};
    cr_assert_eq(stx_snapshot_load(s, collect, &c), STX_EDECODE);
    /* "alpha" and "b\0inary" come before "beta"; nothing after it. */
    cr_assert_eq(c.n, 2);
    recs_free(&c);
    const char *msg = stx_snapshot_errmsg(s);
    cr_assert(strstr(msg, "'beta'") != NULL, "%s", msg);
    cr_assert(strstr(msg, "checksum") != NULL, "%s", msg);
    expect_meta(s, "orders/g1/lineage-7", 42, "1700000000000-5");

    /* A rebuild replaces it. */
    cr_assert_eq(stx_snapshot_begin(s, 1), STX_OK);
    PUT(s, "beta", V_STR);
    cr_assert_eq(stx_snapshot_commit(s, "x", 1, "1-1"), STX_OK);
    cr_assert_eq(count_records(s), 1);
    stx_snapshot_close(s);
}

Test(snapshot, record_moved_to_another_key_is_refused)
{
    stx_snapshot *s = open_snap(snap_dir, 0, 1);
    write_sample(s);
    stx_snapshot_close(s);

    raw_env r;
    raw_open(&r, env_dir);
    unsigned char buf[64];
    size_t n = raw_get(&r, r.state, "alpha", 5, buf, sizeof buf);
    raw_put(&r, r.state, "alphb", 5, buf, n);
    raw_close(&r);

    s = open_snap(snap_dir, 0, 1);
    recs c = {0};
    cr_assert_eq(stx_snapshot_load(s, collect, &c), STX_EDECODE);
    cr_assert_eq(c.n, 1);
    recs_free(&c);
    cr_assert(strstr(stx_snapshot_errmsg(s), "'alphb'") != NULL, "%s", stx_snapshot_errmsg(s));
    stx_snapshot_close(s);
}

Test(snapshot, record_with_valid_crc_but_bad_msgpack_is_refused)
{
    stx_snapshot *s = open_snap(snap_dir, 0, 1);
    write_sample(s);
    stx_snapshot_close(s);

    /* Binary key, printed escaped; value: array32 claiming 2^31 elements. */
    static const char key[] = "\x01k\xfe";
    static const char val[] = "\xdd\x80\x00\x00\x00\x01";
    raw_env r;
    raw_open(&r, env_dir);
    unsigned char buf[64];
    size_t n = make_record(buf, key, 3, val, sizeof val - 1);
    raw_put(&r, r.state, key, 3, buf, n);
    raw_close(&r);

    s = open_snap(snap_dir, 0, 1);
    recs c = {0};
    cr_assert_eq(stx_snapshot_load(s, collect, &c), STX_EDECODE);
    cr_assert_eq(c.n, 0); /* "\x01k\xfe" sorts first */
    recs_free(&c);
    const char *msg = stx_snapshot_errmsg(s);
    cr_assert(strstr(msg, "'\\x01k\\xfe'") != NULL, "%s", msg);
    cr_assert(strstr(msg, "msgpack") != NULL, "%s", msg);
    stx_snapshot_close(s);
}

Test(snapshot, long_damaged_key_is_truncated_in_the_message)
{
    stx_snapshot *s = open_snap(snap_dir, 0, 1);
    stx_snapshot_close(s);
    unsigned char key[400];
    memset(key, 'q', sizeof key);
    raw_env r;
    raw_open(&r, env_dir);
    raw_put(&r, r.state, key, sizeof key, "\0\0\0", 3);
    raw_close(&r);
    s = open_snap(snap_dir, 0, 1);
    recs c = {0};
    cr_assert_eq(stx_snapshot_load(s, collect, &c), STX_EDECODE);
    const char *msg = stx_snapshot_errmsg(s);
    cr_assert(strstr(msg, "qqq...'") != NULL, "%s", msg);
    cr_assert_lt(strlen(msg), 300, "%s", msg);
    stx_snapshot_close(s);
}

Test(snapshot, damaged_meta_is_refused)
{
    stx_snapshot *s = open_snap(snap_dir, 0, 1);
    write_sample(s);
    stx_snapshot_close(s);

    raw_env r;
    raw_open(&r, env_dir);
    unsigned char buf[256];
    size_t n = raw_get(&r, r.meta, "meta", 4, buf, sizeof buf);
    buf[10] ^= 0x20; /* a byte of the identity */
    raw_put(&r, r.meta, "meta", 4, buf, n);
    raw_close(&r);

    s = open_snap(snap_dir, 0, 1);
    char ident[64] = "untouched", off[64];
    uint64_t seq = 0;
    cr_assert_eq(stx_snapshot_read_meta(s, ident, sizeof ident, &seq, off, sizeof off),
                 STX_EDECODE);
    cr_assert(strstr(stx_snapshot_errmsg(s), "checksum") != NULL, "%s",
              stx_snapshot_errmsg(s));
    cr_assert_str_eq(ident, "untouched");
    expect_sample(s); /* the records themselves are fine */
    stx_snapshot_close(s);

    raw_open(&r, env_dir);
    raw_put(&r, r.meta, "meta", 4, buf, 7);
    raw_close(&r);
    s = open_snap(snap_dir, 0, 1);
    cr_assert_eq(stx_snapshot_read_meta(s, ident, sizeof ident, &seq, off, sizeof off),
                 STX_EDECODE);
    /* A caller buffer too small for the identity. */
    cr_assert_eq(stx_snapshot_begin(s, 0), STX_OK);
    cr_assert_eq(stx_snapshot_commit(s, "orders/g1/lineage-7", 42, "1-1"), STX_OK);
    cr_assert_eq(stx_snapshot_read_meta(s, ident, 19, &seq, off, sizeof off), STX_EDECODE);
    cr_assert_eq(stx_snapshot_read_meta(s, ident, 20, &seq, off, sizeof off), STX_OK);
    cr_assert_str_eq(ident, "orders/g1/lineage-7");
    stx_snapshot_close(s);
}

static void garbage_file_gives_empty_snapshot(const void *bytes, size_t len, const char *name)
{
    stx_snapshot *s = open_snap(snap_dir, 0, 1);
    write_sample(s);
    stx_snapshot_close(s);

    char path[600];
    snprintf(path, sizeof path, "%s/%s", env_dir, name);
    write_file(path, bytes, len);

    s = open_snap(snap_dir, 0, 1);
    char ident[64], off[64];
    uint64_t seq;
    cr_assert_eq(stx_snapshot_read_meta(s, ident, sizeof ident, &seq, off, sizeof off),
                 STX_ENOTFOUND);
    cr_assert_eq(count_records(s), 0);
    /* and it is usable */
    write_sample(s);
    stx_snapshot_close(s);
    s = open_snap(snap_dir, 0, 1);
    expect_sample(s);
    expect_meta(s, "orders/g1/lineage-7", 42, "1700000000000-5");
    stx_snapshot_close(s);
}

Test(snapshot, garbage_data_file_is_wiped)
{
    size_t n = 64 * 1024;
    unsigned char *junk = malloc(n);
    cr_assert_not_null(junk);
    memset(junk, 0xab, n);
    garbage_file_gives_empty_snapshot(junk, n, "data.mdb");
    free(junk);
}

Test(snapshot, truncated_data_file_is_wiped)
{
    stx_snapshot *s = open_snap(snap_dir, 0, 1);
    write_sample(s);
    stx_snapshot_close(s);
    char path[600];
    snprintf(path, sizeof path, "%s/data.mdb", env_dir);
    cr_assert_eq(truncate(path, 100), 0, "%s", strerror(errno));
    s = open_snap(snap_dir, 0, 1);
    cr_assert_eq(stx_snapshot_read_meta(s, NULL, 0, NULL, NULL, 0), STX_ENOTFOUND);
    cr_assert_eq(count_records(s), 0);
    stx_snapshot_close(s);
}

Test(snapshot, garbage_lock_file_is_rebuilt_and_data_kept)
{
    /* lock.mdb only holds the reader table: the first process to open the
     * environment reinitialises it, so the data survives. */
    stx_snapshot *s = open_snap(snap_dir, 0, 1);
    write_sample(s);
    stx_snapshot_close(s);
    unsigned char junk[8192];
    memset(junk, 0x5a, sizeof junk);
    char path[600];
    snprintf(path, sizeof path, "%s/lock.mdb", env_dir);
    write_file(path, junk, sizeof junk);
    s = open_snap(snap_dir, 0, 1);
    expect_sample(s);
    expect_meta(s, "orders/g1/lineage-7", 42, "1700000000000-5");
    stx_snapshot_close(s);
}

/* Rewrite data.mdb page by page: pages for which damage() says so are zeroed.
 * Returns how many were. */
static int zero_pages(int (*damage)(const unsigned char *page, size_t pgno))
{
    char path[600];
    snprintf(path, sizeof path, "%s/data.mdb", env_dir);
    long psz = sysconf(_SC_PAGESIZE);
    cr_assert_gt(psz, 0);
    unsigned char *page = malloc((size_t)psz);
    cr_assert_not_null(page);
    int fd = open(path, O_RDWR);
    cr_assert_geq(fd, 0);
    int zeroed = 0;
    for (size_t pgno = 0; pread(fd, page, (size_t)psz, (off_t)(pgno * (size_t)psz)) == psz;
         pgno++) {
        if (damage(page, pgno)) {
            memset(page, 0, (size_t)psz);
            cr_assert_eq(pwrite(fd, page, (size_t)psz, (off_t)(pgno * (size_t)psz)), psz);
            zeroed++;
        }
    }
    close(fd);
    free(page);
    return zeroed;
}

static int all_but_meta_pages(const unsigned char *page, size_t pgno)
{
    (void)page;
    return pgno >= 2;
}

/* A branch page (mp_flags at byte 10 == P_BRANCH) of the state tree. */
static int state_branch_page(const unsigned char *page, size_t pgno)
{
    long psz = sysconf(_SC_PAGESIZE);
    if (pgno < 2 || page[10] != 0x01 || page[11] != 0)
        return 0;
    for (long i = 16; i + 3 < psz; i++)
        if (memcmp(page + i, "key-", 4) == 0)
            return 1;
    return 0;
}

static void write_many(stx_snapshot *s, unsigned n)
{
    cr_assert_eq(stx_snapshot_begin(s, 1), STX_OK);
    unsigned char v[200];
    memset(v, 'v', sizeof v);
    v[0] = 0xd9; /* str8 */
    v[1] = sizeof v - 2;
    for (unsigned i = 0; i < n; i++) {
        char k[32];
        snprintf(k, sizeof k, "key-%06u", i);
        cr_assert_eq(stx_snapshot_put(s, k, strlen(k), v, sizeof v), STX_OK);
    }
    cr_assert_eq(stx_snapshot_commit(s, "many", n, "9-9"), STX_OK);
}

Test(snapshot, zeroed_tree_pages_are_wiped_at_open)
{
    stx_snapshot *s = open_snap(snap_dir, 0, 1);
    write_many(s, 2000);
    stx_snapshot_close(s);
    cr_assert_gt(zero_pages(all_but_meta_pages), 10);
    s = open_snap(snap_dir, 0, 1);
    cr_assert_eq(stx_snapshot_read_meta(s, NULL, 0, NULL, NULL, 0), STX_ENOTFOUND);
    cr_assert_eq(count_records(s), 0);
    write_sample(s);
    expect_sample(s);
    stx_snapshot_close(s);
}

Test(snapshot, damaged_state_tree_is_rebuilt_by_a_clear)
{
    stx_snapshot *s = open_snap(snap_dir, 0, 1);
    write_many(s, 5000);
    stx_snapshot_close(s);
    cr_assert_geq(zero_pages(state_branch_page), 1);

    s = open_snap(snap_dir, 0, 1); /* meta and the database list are intact */
    expect_meta(s, "many", 5000, "9-9");
    recs c = {0};
    cr_assert_eq(stx_snapshot_load(s, collect, &c), STX_ESNAPSHOT);
    cr_assert(strstr(stx_snapshot_errmsg(s), snap_dir) != NULL, "%s", stx_snapshot_errmsg(s));
    recs_free(&c);
    /* clearing cannot walk the damaged tree: the files are recreated (a
     * new file is small; LMDB never shrinks one) */
    write_sample_clear(s, 1);
    expect_sample(s);
    char path[600];
    struct stat st;
    snprintf(path, sizeof path, "%s/data.mdb", env_dir);
    cr_assert_eq(stat(path, &st), 0);
    cr_assert_lt(st.st_size, 100 * 1024, "data.mdb still %lld bytes", (long long)st.st_size);
    stx_snapshot_close(s);
    s = open_snap(snap_dir, 0, 1);
    expect_sample(s);
    expect_meta(s, "orders/g1/lineage-7", 42, "1700000000000-5");
    stx_snapshot_close(s);
}

Test(snapshot, uncreatable_directory_is_an_error)
{
    char file[400], dir[500];
    snprintf(file, sizeof file, "%s/plainfile", tmp_root);
    write_file(file, "x", 1);
    snprintf(dir, sizeof dir, "%s/sub/snap", file);
    stx_snapshot *s = (stx_snapshot *)&s;
    char err[600];
    cr_assert_eq(stx_snapshot_open(&s, dir, SS, SG, 0, 1, err, sizeof err), STX_ESNAPSHOT);
    cr_assert_null(s);
    cr_assert(strstr(err, dir) != NULL, "%s", err);

    /* The directory is itself a regular file. */
    cr_assert_eq(stx_snapshot_open(&s, file, SS, SG, 0, 1, err, sizeof err), STX_ESNAPSHOT);
    cr_assert(strstr(err, file) != NULL, "%s", err);
    /* errlen 0 / NULL err are allowed */
    cr_assert_eq(stx_snapshot_open(&s, file, SS, SG, 0, 1, NULL, 0), STX_ESNAPSHOT);
}

Test(snapshot, unreadable_data_file_is_an_error_not_wiped)
{
    if (geteuid() == 0) {
        teardown(); /* a skipped test does not run .fini */
        cr_skip_test("root ignores file permissions");
    }
    stx_snapshot *s = open_snap(snap_dir, 0, 1);
    write_sample(s);
    stx_snapshot_close(s);
    char path[600];
    snprintf(path, sizeof path, "%s/data.mdb", env_dir);
    cr_assert_eq(chmod(path, 0), 0);
    char err[600];
    cr_assert_eq(stx_snapshot_open(&s, snap_dir, SS, SG, 0, 1, err, sizeof err), STX_ESNAPSHOT);
    cr_assert(strstr(err, snap_dir) != NULL, "%s", err);
    cr_assert_eq(chmod(path, 0600), 0);
    s = open_snap(snap_dir, 0, 1);
    expect_sample(s);
    stx_snapshot_close(s);
}

/* ---- map growth ------------------------------------------------------- */

#define BIG_N 10000
#define BIG_V 1024

static void big_value(unsigned char *v, unsigned i)
{
    /* str16 of BIG_V - 3 bytes */
    v[0] = 0xda;
    v[1] = (unsigned char)((BIG_V - 3) >> 8);
    v[2] = (unsigned char)((BIG_V - 3) & 0xff);
    for (unsigned j = 3; j < BIG_V; j++)
        v[j] = (unsigned char)('a' + (i + j) % 26);
}

static int check_big(void *ud, const void *key, size_t klen, const void *val, size_t vlen)
{
    unsigned *count = ud;
    unsigned char want[BIG_V];
    char k[16];
    unsigned i = *count;
    snprintf(k, sizeof k, "k%05u", i);
    cr_assert_eq(klen, strlen(k));
    cr_assert(memcmp(key, k, klen) == 0);
    big_value(want, i);
    cr_assert_eq(vlen, BIG_V);
    cr_assert(memcmp(val, want, BIG_V) == 0);
    (*count)++;
    return 0;
}

Test(snapshot, map_grows_for_one_large_transaction, .timeout = 120)
{
    stx_snapshot *s = open_snap(snap_dir, 1, 2);
    unsigned char v[BIG_V];
    int attempts = 0, rc;
    do {
        cr_assert_lt(++attempts, 12, "no success after %d attempts", attempts);
        rc = stx_snapshot_begin(s, 1);
        cr_assert_eq(rc, STX_OK, "%s", stx_snapshot_errmsg(s));
        for (unsigned i = 0; i < BIG_N && rc == STX_OK; i++) {
            char k[16];
            snprintf(k, sizeof k, "k%05u", i);
            big_value(v, i);
            rc = stx_snapshot_put(s, k, strlen(k), v, BIG_V);
        }
        if (rc == STX_OK)
            rc = stx_snapshot_commit(s, "big", 1, "5-5");
        if (rc != STX_OK) {
            cr_assert_eq(rc, STX_ESNAPSHOT);
            cr_assert(strstr(stx_snapshot_errmsg(s), "grown to") != NULL, "%s",
                      stx_snapshot_errmsg(s));
            /* the failed call ended the transaction */
            cr_assert_eq(stx_snapshot_put(s, "k", 1, V_INT, 1), STX_ESTATE);
        }
    } while (rc != STX_OK);
    cr_assert_gt(attempts, 1); /* 10 MB do not fit 1 MiB */
    stx_snapshot_close(s);

    s = open_snap(snap_dir, 1, 2); /* an existing larger file wins over 1 MiB */
    unsigned count = 0;
    cr_assert_eq(stx_snapshot_load(s, check_big, &count), STX_OK, "%s", stx_snapshot_errmsg(s));
    cr_assert_eq(count, BIG_N);
    expect_meta(s, "big", 1, "5-5");
    /* still writable after reopening at the small size */
    cr_assert_eq(stx_snapshot_begin(s, 0), STX_OK);
    big_value(v, 0);
    cr_assert_eq(stx_snapshot_put(s, "k00000", 6, v, BIG_V), STX_OK, "%s",
                 stx_snapshot_errmsg(s));
    cr_assert_eq(stx_snapshot_commit(s, "big", 2, "5-6"), STX_OK, "%s", stx_snapshot_errmsg(s));
    stx_snapshot_close(s);
}

Test(snapshot, map_grows_ahead_for_small_transactions, .timeout = 120)
{
    stx_snapshot *s = open_snap(snap_dir, 1, 2);
    unsigned char v[BIG_V];
    for (unsigned t = 0; t < BIG_N / 100; t++) {
        cr_assert_eq(stx_snapshot_begin(s, 0), STX_OK, "%s", stx_snapshot_errmsg(s));
        for (unsigned i = t * 100; i < t * 100 + 100; i++) {
            char k[16];
            snprintf(k, sizeof k, "k%05u", i);
            big_value(v, i);
            cr_assert_eq(stx_snapshot_put(s, k, strlen(k), v, BIG_V), STX_OK, "txn %u: %s", t,
                         stx_snapshot_errmsg(s));
        }
        char off[32];
        snprintf(off, sizeof off, "7-%u", t);
        cr_assert_eq(stx_snapshot_commit(s, "small", t, off), STX_OK, "txn %u: %s", t,
                     stx_snapshot_errmsg(s));
    }
    unsigned count = 0;
    cr_assert_eq(stx_snapshot_load(s, check_big, &count), STX_OK);
    cr_assert_eq(count, BIG_N);
    stx_snapshot_close(s);
}

/* ---- decoders fed directly -------------------------------------------- */

Test(snapshot, decode_record_edge_cases)
{
    unsigned char rec[64];
    const void *val = NULL;
    size_t vlen = 0;
    size_t n = make_record(rec, "key", 3, V_MAP, sizeof V_MAP - 1);

    cr_assert_eq(stx_snapshot_decode_record("key", 3, rec, n, &val, &vlen), STX_OK);
    cr_assert_eq(val, rec + 4);
    cr_assert_eq(vlen, sizeof V_MAP - 1);
    cr_assert_eq(stx_snapshot_decode_record("key", 3, rec, n, NULL, NULL), STX_OK);

    for (size_t len = 0; len < 4; len++)
        cr_assert_eq(stx_snapshot_decode_record("key", 3, rec, len, &val, &vlen), STX_EDECODE,
                     "length %zu", len);
    cr_assert_eq(stx_snapshot_decode_record("key", 3, NULL, 0, &val, &vlen), STX_EDECODE);

    /* every single-bit flip, in the CRC or the value, is caught */
    for (size_t bit = 0; bit < n * 8; bit++) {
        rec[bit / 8] ^= (unsigned char)(1u << (bit % 8));
        cr_assert_eq(stx_snapshot_decode_record("key", 3, rec, n, &val, &vlen), STX_EDECODE,
                     "bit %zu", bit);
        rec[bit / 8] ^= (unsigned char)(1u << (bit % 8));
    }
    cr_assert_eq(stx_snapshot_decode_record("kez", 3, rec, n, &val, &vlen), STX_EDECODE);
    cr_assert_eq(stx_snapshot_decode_record("key", 2, rec, n, &val, &vlen), STX_EDECODE);
    cr_assert_eq(stx_snapshot_decode_record("key", 3, rec, n - 1, &val, &vlen), STX_EDECODE);

    /* valid CRC over: no value, two values, a truncated value */
    n = make_record(rec, "key", 3, "", 0);
    cr_assert_eq(stx_snapshot_decode_record("key", 3, rec, n, &val, &vlen), STX_EDECODE);
    n = make_record(rec, "key", 3, "\x01\x02", 2);
    cr_assert_eq(stx_snapshot_decode_record("key", 3, rec, n, &val, &vlen), STX_EDECODE);
    n = make_record(rec, "key", 3, "\xa5" "ab", 3);
    cr_assert_eq(stx_snapshot_decode_record("key", 3, rec, n, &val, &vlen), STX_EDECODE);
    /* an empty key is fine for the decoder */
    n = make_record(rec, "", 0, V_INT, 1);
    cr_assert_eq(stx_snapshot_decode_record("", 0, rec, n, &val, &vlen), STX_OK);
    cr_assert_eq(stx_snapshot_decode_record(NULL, 0, rec, n, &val, &vlen), STX_OK);
}

Test(snapshot, decode_meta_edge_cases)
{
    unsigned char m[8192];
    char id[64], off[65];
    uint64_t seq = 0;
    static const char ID[] = "stream/group";
    static const char OFF[] = "123-4";
    size_t n = make_meta(m, "STXS", 1, 12, ID, 12, 0x0102030405060708ull, 5, OFF, 5);

    cr_assert_eq(stx_snapshot_decode_meta(m, n, id, sizeof id, &seq, off, sizeof off), STX_OK);
    cr_assert_str_eq(id, ID);
    cr_assert_eq(seq, 0x0102030405060708ull);
    cr_assert_str_eq(off, OFF);
    cr_assert_eq(stx_snapshot_decode_meta(m, n, NULL, 0, NULL, NULL, 0), STX_OK);

    /* every prefix fails */
    for (size_t len = 0; len < n; len++)
        cr_assert_eq(stx_snapshot_decode_meta(m, len, id, sizeof id, &seq, off, sizeof off),
                     STX_EDECODE, "length %zu", len);
    cr_assert_eq(stx_snapshot_decode_meta(NULL, 0, id, sizeof id, &seq, off, sizeof off),
                 STX_EDECODE);
    /* every single-bit flip fails */
    for (size_t bit = 0; bit < n * 8; bit++) {
        m[bit / 8] ^= (unsigned char)(1u << (bit % 8));
        cr_assert_eq(stx_snapshot_decode_meta(m, n, id, sizeof id, &seq, off, sizeof off),
                     STX_EDECODE, "bit %zu", bit);
        m[bit / 8] ^= (unsigned char)(1u << (bit % 8));
    }
    /* trailing byte */
    m[n] = 0;
    cr_assert_eq(stx_snapshot_decode_meta(m, n + 1, id, sizeof id, &seq, off, sizeof off),
                 STX_EDECODE);

    /* caps: identity needs idcap >= 13, offset offcap >= 6 */
    cr_assert_eq(stx_snapshot_decode_meta(m, n, id, 12, &seq, off, sizeof off), STX_EDECODE);
    cr_assert_eq(stx_snapshot_decode_meta(m, n, id, 13, &seq, off, sizeof off), STX_OK);
    cr_assert_eq(stx_snapshot_decode_meta(m, n, id, 0, &seq, off, sizeof off), STX_EDECODE);
    cr_assert_eq(stx_snapshot_decode_meta(m, n, id, sizeof id, &seq, off, 5), STX_EDECODE);
    cr_assert_eq(stx_snapshot_decode_meta(m, n, id, sizeof id, &seq, off, 6), STX_OK);

    /* valid CRCs around lengths that lie */
    size_t k;
    k = make_meta(m, "STXS", 1, 13, ID, 12, 1, 5, OFF, 5); /* one past */
    cr_assert_eq(stx_snapshot_decode_meta(m, k, id, sizeof id, &seq, off, sizeof off), STX_EDECODE);
    k = make_meta(m, "STXS", 1, 0xffffffffu, ID, 12, 1, 5, OFF, 5);
    cr_assert_eq(stx_snapshot_decode_meta(m, k, id, sizeof id, &seq, off, sizeof off), STX_EDECODE);
    k = make_meta(m, "STXS", 1, 12, ID, 12, 1, 6, OFF, 5);
    cr_assert_eq(stx_snapshot_decode_meta(m, k, id, sizeof id, &seq, off, sizeof off), STX_EDECODE);
    k = make_meta(m, "STXS", 1, 12, ID, 12, 1, 4, OFF, 5);
    cr_assert_eq(stx_snapshot_decode_meta(m, k, id, sizeof id, &seq, off, sizeof off), STX_EDECODE);
    k = make_meta(m, "STXS", 2, 12, ID, 12, 1, 5, OFF, 5);
    cr_assert_eq(stx_snapshot_decode_meta(m, k, id, sizeof id, &seq, off, sizeof off), STX_EDECODE);
    k = make_meta(m, "STXs", 1, 12, ID, 12, 1, 5, OFF, 5);
    cr_assert_eq(stx_snapshot_decode_meta(m, k, id, sizeof id, &seq, off, sizeof off), STX_EDECODE);
    k = make_meta(m, "STXS", 1, 3, "a\0b", 3, 1, 5, OFF, 5);
    cr_assert_eq(stx_snapshot_decode_meta(m, k, id, sizeof id, &seq, off, sizeof off), STX_EDECODE);
    k = make_meta(m, "STXS", 1, 12, ID, 12, 1, 3, "1-x", 3);
    cr_assert_eq(stx_snapshot_decode_meta(m, k, id, sizeof id, &seq, off, sizeof off), STX_EDECODE);
    k = make_meta(m, "STXS", 1, 12, ID, 12, 1, 0, "", 0);
    cr_assert_eq(stx_snapshot_decode_meta(m, k, id, sizeof id, &seq, off, sizeof off), STX_EDECODE);

    /* identity at and beyond the cap */
    enum { CAP = STX_SNAP_MAX_IDENTITY };
    static char big[CAP + 8];
    static char bigout[CAP + 8];
    static unsigned char bm[CAP + 128];
    memset(big, 'z', sizeof big);
    k = make_meta(bm, "STXS", 1, CAP, big, CAP, 9, 3, "0-0", 3);
    cr_assert_eq(stx_snapshot_decode_meta(bm, k, bigout, sizeof bigout, &seq, off, sizeof off),
                 STX_OK);
    cr_assert_eq(strlen(bigout), CAP);
    cr_assert_eq(stx_snapshot_decode_meta(bm, k, bigout, CAP, &seq, off, sizeof off), STX_EDECODE);
    k = make_meta(bm, "STXS", 1, CAP + 1, big, CAP + 1, 9, 3, "0-0", 3);
    cr_assert_eq(stx_snapshot_decode_meta(bm, k, bigout, sizeof bigout, &seq, off, sizeof off),
                 STX_EDECODE);
    /* empty identity */
    k = make_meta(m, "STXS", 1, 0, "", 0, 9, 3, "0-0", 3);
    cr_assert_eq(stx_snapshot_decode_meta(m, k, id, 1, &seq, off, sizeof off), STX_OK);
    cr_assert_str_eq(id, "");
}

/* ---- several pairs in one directory, and the pair lock ---------------- */

static stx_snapshot *open_pair(const char *stream, const char *group)
{
    stx_snapshot *s = NULL;
    char err[512];
    int rc = stx_snapshot_open(&s, snap_dir, stream, group, 0, 1, err, sizeof err);
    cr_assert_eq(rc, STX_OK, "open %s/%s: %d %s", stream, group, rc, err);
    return s;
}

Test(snapshot, two_groups_in_one_dir_keep_their_own_records)
{
    stx_snapshot *a = open_pair(SS, SG);
    stx_snapshot *b = open_pair(SS, "g2");
    /* Names made to collide in a naive "STREAM:GROUP" join stay apart too. */
    stx_snapshot *c = open_pair("orders:g1", "x");
    stx_snapshot *d = open_pair("orders", "g1:x");
    write_sample(a);
    cr_assert_eq(stx_snapshot_begin(b, 0), STX_OK);
    PUT(b, "alpha", V_STR);
    cr_assert_eq(stx_snapshot_commit(b, "orders/g2", 7, "1-1"), STX_OK);
    cr_assert_eq(stx_snapshot_begin(c, 0), STX_OK);
    PUT(c, "c-only", V_INT);
    cr_assert_eq(stx_snapshot_commit(c, "c", 1, "1-1"), STX_OK);
    expect_sample(a);
    recs r = {0};
    cr_assert_eq(stx_snapshot_load(b, collect, &r), STX_OK);
    cr_assert_eq(r.n, 1);
    expect_rec(&r, 0, "alpha", 5, V_STR, sizeof V_STR - 1);
    recs_free(&r);
    expect_meta(b, "orders/g2", 7, "1-1");
    cr_assert_eq(count_records(d), 0);
    cr_assert_eq(stx_snapshot_read_meta(d, NULL, 0, NULL, NULL, 0), STX_ENOTFOUND);
    stx_snapshot_close(a);
    stx_snapshot_close(b);
    stx_snapshot_close(c);
    stx_snapshot_close(d);

    a = open_pair(SS, SG);
    expect_sample(a);
    expect_meta(a, "orders/g1/lineage-7", 42, "1700000000000-5");
    stx_snapshot_close(a);
    /* One subdirectory per pair, named so a person can tell them apart. */
    char *ea = stx_snapshot_env_dir(snap_dir, SS, SG), *eb = stx_snapshot_env_dir(snap_dir, SS, "g2");
    cr_assert_str_neq(ea, eb);
    cr_assert(strstr(ea, "/orders.g1-") != NULL, "%s", ea);
    struct stat st;
    cr_assert_eq(stat(ea, &st), 0);
    cr_assert_eq(stat(eb, &st), 0);
    free(ea);
    free(eb);
}

Test(snapshot, second_open_in_the_same_process_is_locked)
{
    stx_snapshot *a = open_pair(SS, SG);
    stx_snapshot *s = (stx_snapshot *)&s;
    char err[512];
    cr_assert_eq(stx_snapshot_open(&s, snap_dir, SS, SG, 0, 1, err, sizeof err),
                 STX_SNAPSHOT_LOCKED);
    cr_assert_null(s);
    cr_assert(strstr(err, "snapshot for stream 'orders' group 'g1' is locked by another "
                          "process") != NULL, "%s", err);
    /* The refused open did not disturb the holder. */
    write_sample(a);
    expect_sample(a);
    stx_snapshot_close(a);
    a = open_pair(SS, SG);
    expect_sample(a);
    stx_snapshot_close(a);
}

/* In a forked child: try to open (SS, SG); exit 0 when locked, 1 when it
 * opened, 2 on anything else. */
static void child_try_open(void)
{
    stx_snapshot *s = NULL;
    char err[512];
    int rc = stx_snapshot_open(&s, snap_dir, SS, SG, 0, 1, err, sizeof err);
    _exit(rc == STX_SNAPSHOT_LOCKED && s == NULL ? 0 : rc == STX_OK ? 1 : 2);
}

static int wait_exit(pid_t pid)
{
    int status;
    cr_assert_eq(waitpid(pid, &status, 0), pid);
    cr_assert(WIFEXITED(status), "child status %d", status);
    return WEXITSTATUS(status);
}

/* What a forked child inherits and never frees stays reachable through
 * this, so valgrind's leak check of the child (it ends with _exit) is clean. */
static stx_snapshot *volatile held_across_fork;

Test(snapshot, lock_holds_against_another_process_and_dies_with_it)
{
    /* Held here: a child is refused. */
    stx_snapshot *a = open_pair(SS, SG);
    held_across_fork = a;
    write_sample(a);
    pid_t pid = fork();
    cr_assert_geq(pid, 0);
    if (pid == 0)
        child_try_open();
    cr_assert_eq(wait_exit(pid), 0, "the child opened a locked snapshot");
    stx_snapshot_close(a);

    /* Held by a child that dies without closing (a crash): refused while it
     * lives, free as soon as it is gone. */
    int go[2], ready[2];
    cr_assert_eq(pipe(go), 0);
    cr_assert_eq(pipe(ready), 0);
    pid = fork();
    cr_assert_geq(pid, 0);
    if (pid == 0) {
        stx_snapshot *s = NULL;
        char c = stx_snapshot_open(&s, snap_dir, SS, SG, 0, 1, NULL, 0) == STX_OK ? 'y' : 'n';
        held_across_fork = s;
        if (c == 'y' && stx_snapshot_begin(s, 0) != STX_OK)
            c = 'n';
        if (write(ready[1], &c, 1) != 1 || read(go[0], &c, 1) != 1)
            _exit(3);
        _exit(9); /* a write transaction open, nothing closed */
    }
    char c = 0;
    cr_assert_eq(read(ready[0], &c, 1), 1);
    cr_assert_eq(c, 'y');
    stx_snapshot *s = (stx_snapshot *)&s;
    char err[512];
    cr_assert_eq(stx_snapshot_open(&s, snap_dir, SS, SG, 0, 1, err, sizeof err),
                 STX_SNAPSHOT_LOCKED, "%s", err);
    cr_assert_eq(write(go[1], "x", 1), 1);
    cr_assert_eq(wait_exit(pid), 9);
    s = open_pair(SS, SG);
    expect_sample(s);
    expect_meta(s, "orders/g1/lineage-7", 42, "1700000000000-5");
    stx_snapshot_close(s);
    close(go[0]);
    close(go[1]);
    close(ready[0]);
    close(ready[1]);
}

Test(snapshot, owner_record_of_another_pair_is_refused)
{
    stx_snapshot *s = open_snap(snap_dir, 0, 1);
    write_sample(s);
    stx_snapshot_close(s);
    raw_env r;
    raw_open(&r, env_dir);
    raw_put(&r, r.meta, "owner", 5, "6:orders:g2", 11);
    raw_close(&r);
    char err[600];
    cr_assert_eq(stx_snapshot_open(&s, snap_dir, SS, SG, 0, 1, err, sizeof err), STX_ESNAPSHOT);
    cr_assert(strstr(err, "belongs to another (stream, group)") != NULL, "%s", err);
}

/* ---- keys LMDB cannot hold -------------------------------------------- */

typedef struct kv {
    unsigned char *key;
    size_t klen;
    const char *val;
    size_t vlen;
    int seen;
} kv;

typedef struct kvs {
    kv *v;
    size_t n;
    size_t extra; /* records not in the table */
} kvs;

static int match_kv(void *ud, const void *key, size_t klen, const void *val, size_t vlen)
{
    kvs *t = ud;
    for (size_t i = 0; i < t->n; i++) {
        kv *e = &t->v[i];
        if (e->klen == klen && (klen == 0 || memcmp(e->key, key, klen) == 0)) {
            cr_assert_eq(e->seen, 0, "key of %zu bytes loaded twice", klen);
            cr_assert_eq(vlen, e->vlen, "key of %zu bytes", klen);
            cr_assert(memcmp(val, e->val, vlen) == 0, "value of the key of %zu bytes", klen);
            e->seen = 1;
            return 0;
        }
    }
    t->extra++;
    return 0;
}

/* Load s and check it holds exactly the entries of t. */
static void expect_kvs(stx_snapshot *s, kvs *t)
{
    for (size_t i = 0; i < t->n; i++)
        t->v[i].seen = 0;
    t->extra = 0;
    cr_assert_eq(stx_snapshot_load(s, match_kv, t), STX_OK, "%s", stx_snapshot_errmsg(s));
    cr_assert_eq(t->extra, 0);
    for (size_t i = 0; i < t->n; i++)
        cr_assert(t->v[i].seen, "key %zu (%zu bytes) missing", i, t->v[i].klen);
    size_t count = 0;
    cr_assert_eq(stx_snapshot_count(s, &count), STX_OK);
    cr_assert_eq(count, t->n);
}

static unsigned char *key_of_len(size_t n, unsigned char fill, unsigned char last)
{
    unsigned char *k = malloc(n ? n : 1);
    cr_assert_not_null(k);
    memset(k, fill, n);
    if (n)
        k[n - 1] = last;
    return k;
}

static void long_keys_case(uint64_t mask)
{
    stx_snapshot *s = open_snap(snap_dir, 0, 1);
    stx_snapshot_set_long_hash_mask(s, mask);
    kv e[] = {
        {key_of_len(0, 0, 0), 0, V_INT, sizeof V_INT - 1, 0},
        {key_of_len(511, 'a', 'z'), 511, V_STR, sizeof V_STR - 1, 0},
        {key_of_len(512, 'b', 'z'), 512, V_MAP, sizeof V_MAP - 1, 0},
        {key_of_len(10000, 'c', 'z'), 10000, V_BIN, sizeof V_BIN - 1, 0},
        /* Same length and all but the last byte as the one above. */
        {key_of_len(10000, 'c', 'y'), 10000, V_NEG, sizeof V_NEG - 1, 0},
        {key_of_len(1, 'k', 'k'), 1, V_INT, sizeof V_INT - 1, 0},
    };
    kvs t = {e, sizeof e / sizeof *e, 0};
    cr_assert_eq(stx_snapshot_begin(s, 1), STX_OK);
    for (size_t i = 0; i < t.n; i++)
        cr_assert_eq(stx_snapshot_put(s, e[i].key, e[i].klen, e[i].val, e[i].vlen), STX_OK,
                     "put %zu: %s", i, stx_snapshot_errmsg(s));
    cr_assert_eq(stx_snapshot_commit(s, "long", 1, "1-1"), STX_OK);
    expect_kvs(s, &t);

    /* Overwrite two long keys, delete one, add it back under a new value. */
    cr_assert_eq(stx_snapshot_begin(s, 0), STX_OK);
    e[3].val = V_STR;
    e[3].vlen = sizeof V_STR - 1;
    cr_assert_eq(stx_snapshot_put(s, e[3].key, e[3].klen, e[3].val, e[3].vlen), STX_OK);
    e[0].val = V_MAP;
    e[0].vlen = sizeof V_MAP - 1;
    cr_assert_eq(stx_snapshot_put(s, e[0].key, 0, e[0].val, e[0].vlen), STX_OK);
    cr_assert_eq(stx_snapshot_del(s, e[2].key, e[2].klen), STX_OK);
    cr_assert_eq(stx_snapshot_commit(s, "long", 2, "1-2"), STX_OK);
    kv saved = e[2];
    e[2] = e[t.n - 1];
    t.n--;
    expect_kvs(s, &t);
    cr_assert_eq(stx_snapshot_begin(s, 0), STX_OK);
    cr_assert_eq(stx_snapshot_put(s, saved.key, saved.klen, V_INT, 1), STX_OK);
    cr_assert_eq(stx_snapshot_commit(s, "long", 3, "1-3"), STX_OK);
    stx_snapshot_close(s);

    s = open_snap(snap_dir, 0, 1);
    stx_snapshot_set_long_hash_mask(s, mask);
    e[t.n] = e[2];
    e[2] = saved;
    e[2].val = V_INT;
    e[2].vlen = 1;
    t.n++;
    expect_kvs(s, &t);
    expect_meta(s, "long", 3, "1-3");
    /* A clear drops the long records too. */
    cr_assert_eq(stx_snapshot_begin(s, 1), STX_OK);
    cr_assert_eq(stx_snapshot_commit(s, "long", 4, "1-4"), STX_OK);
    cr_assert_eq(count_records(s), 0);
    stx_snapshot_close(s);
    for (size_t i = 0; i < sizeof e / sizeof *e; i++)
        free(e[i].key);
}

Test(snapshot, empty_and_long_keys_round_trip)
{
    long_keys_case(UINT64_MAX);
}

Test(snapshot, long_keys_sharing_one_hash_stay_apart)
{
    /* Mask 0: every empty or long key gets the same hash, so only the
     * suffixes and the full keys inside the records tell them apart. */
    long_keys_case(0);
    raw_env r;
    raw_open(&r, env_dir);
    MDB_dbi dl;
    cr_assert_eq(mdb_dbi_open(r.txn, "long", 0, &dl), 0);
    MDB_stat st;
    cr_assert_eq(mdb_stat(r.txn, dl, &st), 0);
    cr_assert_eq(st.ms_entries, 0);
    raw_close(&r);
}

Test(snapshot, long_record_decoder)
{
    unsigned char rec[64];
    const char key[] = "kk";
    /* crc | klen | key | value */
    unsigned char kl[4];
    le32(kl, 2);
    uint32_t crc = stx_crc32(stx_crc32(stx_crc32(0, kl, 4), key, 2), V_INT, 1);
    le32(rec, crc);
    le32(rec + 4, 2);
    memcpy(rec + 8, key, 2);
    rec[10] = (unsigned char)V_INT[0];
    const void *k, *v;
    size_t klen, vlen;
    cr_assert_eq(stx_snapshot_decode_long_record(rec, 11, &k, &klen, &v, &vlen), STX_OK);
    cr_assert_eq(klen, 2);
    cr_assert_eq(k, rec + 8);
    cr_assert_eq(vlen, 1);
    cr_assert_eq(v, rec + 10);
    cr_assert_eq(stx_snapshot_decode_long_record(rec, 7, &k, &klen, &v, &vlen), STX_EDECODE);
    cr_assert_eq(stx_snapshot_decode_long_record(rec, 10, NULL, NULL, NULL, NULL), STX_EDECODE);
    le32(rec + 4, 4); /* key length past the end */
    cr_assert_eq(stx_snapshot_decode_long_record(rec, 11, NULL, NULL, NULL, NULL), STX_EDECODE);
    le32(rec + 4, 2);
    rec[9] ^= 1; /* a key byte */
    cr_assert_eq(stx_snapshot_decode_long_record(rec, 11, NULL, NULL, NULL, NULL), STX_EDECODE);
}
