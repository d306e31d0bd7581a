/* Local LMDB snapshot of a processor's state (see snapshot.h).
 *
 * Layout.  The snapshot directory may be shared by the processors of many
 * (stream, group) pairs.  Each pair gets its own subdirectory
 *   DIR/LABEL-HASH/   data.mdb, lock.mdb (LMDB), owner.lock (ours)
 * LABEL is the stream and group names joined by '.', with bytes other than
 * [A-Za-z0-9._-] shown as '_' and cut to 64 bytes, for people listing the
 * directory; HASH is 16 hex digits of SipHash-2-4 (fixed key) of the
 * pair's name "LEN:STREAM:GROUP" (LEN = byte length of STREAM, so the name
 * is injective).  The full name is stored in the environment ("owner"
 * record) and checked at open, so even a hash collision cannot make one
 * pair read another's records.
 *
 * Why one environment per pair rather than one named database per pair in a
 * shared environment: LMDB forbids opening one environment twice in a
 * process (its fcntl locks are per process: closing one handle drops the
 * other's), so two processors of one process sharing a directory would need
 * a process-wide registry of environments; and wiping a damaged environment
 * would destroy the other pairs' snapshots under their feet.  Separate
 * environments make both non-issues, and a pair's map size and sync mode
 * its own.
 *
 * Ownership.  open() takes flock(LOCK_EX | LOCK_NB) on owner.lock and holds
 * it until close(): a second open of the same pair fails at once with
 * STX_SNAPSHOT_LOCKED, whether it comes from another process or from this
 * one (flock locks belong to the open file description, so two open()s in
 * one process conflict too).  The kernel drops the lock when the process
 * dies, however it dies.  The descriptor is close-on-exec; a fork()ed
 * child shares it (and the lock) until it exits or closes it.  The lock
 * also guarantees that LMDB's one-open-per-process rule holds.
 *
 * Databases of an environment:
 *   "state"  state key -> record           keys of 1 to max_key bytes
 *   "long"   HASH8 SUFFIX4 -> long record  empty keys and longer keys
 *   "meta"   "meta"  -> meta record
 *            "owner" -> the pair's name "LEN:STREAM:GROUP"
 *
 * State record: crc32 (4 bytes LE) followed by the value (one msgpack
 * object).  The CRC-32 (stx_crc32) covers the key length as 4 bytes LE, the
 * key bytes and the value bytes, so a record moved under another key is
 * detected too.
 *
 * Long record, for a key LMDB cannot hold (empty, or longer than
 * mdb_env_get_maxkeysize(), 511): crc32 (4 bytes LE, computed as for a
 * state record), key length (u32 LE), the key, the value.  Its LMDB key is
 * the 64-bit SipHash-2-4 (fixed key) of the state key, big-endian, then a
 * 32-bit big-endian suffix telling apart keys with the same hash: a put
 * walks the records of that hash, compares the full keys stored in them,
 * and overwrites the match or adds the next suffix.  A fixed hash key is
 * enough here: the hash only spreads records, and 64 bits cannot be forced
 * into more than a handful of collisions.
 *
 * Meta record (version 1), all integers little-endian:
 *   "STXS"            magic, 4 bytes
 *   version           1 byte, = 1
 *   identity length   u32, at most STX_SNAP_MAX_IDENTITY
 *   identity          bytes (no NUL)
 *   seq               u64
 *   offset length     u16, at most STX_SNAP_MAX_OFFSET
 *   offset            bytes, a stream id "DIGITS-DIGITS" (each part a u64)
 *   crc32             u32 over every byte before it
 * The record must end exactly after the CRC.
 *
 * Write transactions.  At most one is open at a time.  put, del and commit
 * end the transaction whenever they fail (other than for a NULL handle or
 * when no transaction is open, STX_ESTATE): the transaction has then been
 * aborted, the snapshot keeps its previous committed content, and the caller
 * starts again with stx_snapshot_begin() (usually begin(clear = 1) and a full
 * rewrite, or it gives up on the snapshot and reads Redis on the next
 * start).  This is also how a full map is handled: when LMDB answers
 * MDB_MAP_FULL, the failing call aborts the transaction, doubles the map
 * size (mdb_env_set_mapsize, legal only with no transaction open) and
 * returns STX_ESNAPSHOT with a message saying so; redoing the transaction
 * then has twice the room.  Should the map not grow, the message says that
 * instead.  begin() also doubles the map ahead of time once the data file
 * uses more than half of it, so steady small transactions never see a full
 * map.
 *
 * Reads (read_meta, load) use their own read transaction and are refused
 * with STX_ESTATE while a write transaction is open (LMDB allows one
 * transaction per thread).  The load callback runs inside load's read
 * transaction: calls on the same handle from it are refused with STX_ESTATE
 * (closing the handle from it is not allowed), and the key and value it
 * gets point into the map, valid only until the callback returns.
 *
 * Damage: if LMDB cannot open the files (MDB_INVALID, MDB_CORRUPTED,
 * MDB_VERSION_MISMATCH, MDB_PAGE_NOTFOUND, ...) open() deletes data.mdb and
 * lock.mdb and starts empty; begin(clear = 1) does the same when clearing a
 * damaged tree fails.  A damaged record or meta record is reported as
 * STX_EDECODE and never passed on.
 */
#include "snapshot.h"

#include <errno.h>
#include <fcntl.h>
#include <lmdb.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/file.h>
#include <sys/stat.h>
#include <sys/types.h>
#include <unistd.h>

#include "codec.h"
#include "siphash.h"
#include "text.h"
#include "streamtx.h"

#define STX_SNAP_DEFAULT_MAP_MB 1024u
#define STX_SNAP_MAX_OFFSET 64u
#define STX_SNAP_META_VERSION 1u
#define STX_SNAP_META_FIXED (4u + 1u + 4u + 8u + 2u + 4u) /* without id, offset */
#define STX_SNAP_KEY_SHOWN 52u /* buffer of a key quoted in messages (stx_printable) */
#define STX_SNAP_NOT_OURS (-30000) /* env_open(): the owner record names another pair */

#define STX_SNAP_LABEL_MAX 64u  /* bytes of the readable part of a pair's directory */
#define STX_SNAP_LONG_KEY 12u   /* hash (8) + suffix (4) */
#define STX_SNAP_LONG_HEAD 8u   /* crc (4) + key length (4) */

static const char meta_key[] = "meta";
static const char owner_key[] = "owner";

/* Fixed SipHash keys: they are part of the on-disk format. */
static const stx_sipkey dir_hash_key = {0x7374782d736e6170ull, 0x2d706169722d6469ull};
static const stx_sipkey long_hash_key = {0x7374782d736e6170ull, 0x2d6c6f6e672d6b79ull};

struct stx_snapshot {
    MDB_env *env;
    MDB_dbi dbi_state;
    MDB_dbi dbi_long;
    MDB_dbi dbi_meta;
    MDB_txn *wtxn;          /* the open write transaction, or NULL */
    int in_load;            /* inside a stx_snapshot_load() callback */
    int lock_fd;            /* owner.lock, flock()ed; -1 when not open */
    char *dir;              /* the pair's environment directory */
    char *name;             /* "LEN:STREAM:GROUP" */
    size_t name_len;
    uint64_t long_mask;     /* long-key hash mask (tests); ~0 normally */
    size_t map_size;        /* requested at open (bytes) */
    unsigned env_flags;
    size_t max_key;         /* mdb_env_get_maxkeysize() */
    char errmsg[1024];
};

/* ---- small helpers ---------------------------------------------------- */

#if defined(__GNUC__)
__attribute__((format(printf, 2, 3)))
#endif
static void set_err(stx_snapshot *s, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(s->errmsg, sizeof s->errmsg, fmt, ap);
    va_end(ap);
}

#if defined(__GNUC__)
__attribute__((format(printf, 3, 4)))
#endif
static void set_buf(char *buf, size_t cap, const char *fmt, ...)
{
    va_list ap;
    if (buf == NULL || cap == 0)
        return;
    va_start(ap, fmt);
    vsnprintf(buf, cap, fmt, ap);
    va_end(ap);
}

static void put_le16(unsigned char *p, uint16_t v)
{
    p[0] = (unsigned char)v;
    p[1] = (unsigned char)(v >> 8);
}

static void put_le32(unsigned char *p, uint32_t v)
{
    for (int i = 0; i < 4; i++)
        p[i] = (unsigned char)(v >> (8 * i));
}

static void put_le64(unsigned char *p, uint64_t v)
{
    for (int i = 0; i < 8; i++)
        p[i] = (unsigned char)(v >> (8 * i));
}

static uint16_t get_le16(const unsigned char *p)
{
    return (uint16_t)(p[0] | (p[1] << 8));
}

static uint32_t get_le32(const unsigned char *p)
{
    return (uint32_t)p[0] | ((uint32_t)p[1] << 8) | ((uint32_t)p[2] << 16) |
           ((uint32_t)p[3] << 24);
}

static uint64_t get_le64(const unsigned char *p)
{
    uint64_t v = 0;
    for (int i = 7; i >= 0; i--)
        v = (v << 8) | p[i];
    return v;
}

/* A Redis stream id: "MS-SEQ", each part 1..20 digits fitting uint64_t. */
static int id_part_ok(const unsigned char *p, size_t n)
{
    static const char max[] = "18446744073709551615";
    if (n == 0 || n > 20)
        return 0;
    for (size_t i = 0; i < n; i++)
        if (p[i] < '0' || p[i] > '9')
            return 0;
    return n < 20 || memcmp(p, max, 20) <= 0;
}

static int looks_like_id(const void *buf, size_t len)
{
    const unsigned char *p = buf;
    const unsigned char *dash = len ? memchr(p, '-', len) : NULL;
    if (dash == NULL)
        return 0;
    size_t a = (size_t)(dash - p);
    return id_part_ok(p, a) && id_part_ok(dash + 1, len - a - 1);
}

static uint32_t record_crc(const void *key, size_t key_len, const void *value,
                           size_t value_len)
{
    unsigned char kl[4];
    put_le32(kl, (uint32_t)key_len);
    uint32_t crc = stx_crc32(0, kl, sizeof kl);
    if (key_len > 0)
        crc = stx_crc32(crc, key, key_len);
    if (value_len > 0)
        crc = stx_crc32(crc, value, value_len);
    return crc;
}

/* ---- decoders --------------------------------------------------------- */

/* Decode a state record; *why (static text) and *at (byte of the value where
 * msgpack failed, or SIZE_MAX) describe a failure. */
static int record_decode(const void *key, size_t key_len, const void *rec, size_t rec_len,
                         const void **value, size_t *value_len, const char **why,
                         size_t *at)
{
    const unsigned char *r = rec;
    *why = NULL;
    *at = SIZE_MAX;
    if ((key == NULL && key_len > 0) || key_len > UINT32_MAX) {
        *why = "impossible key";
        return STX_EDECODE;
    }
    if (rec == NULL || rec_len < 4) {
        *why = "record shorter than its checksum";
        return STX_EDECODE;
    }
    if (record_crc(key, key_len, r + 4, rec_len - 4) != get_le32(r)) {
        *why = "checksum mismatch";
        return STX_EDECODE;
    }
    const char *reason = NULL;
    size_t off = 0;
    if (stx_mp_check(r + 4, rec_len - 4, STX_MP_MAX_DEPTH, &off, &reason) != STX_OK) {
        *why = reason ? reason : "invalid msgpack";
        *at = off;
        return STX_EDECODE;
    }
    if (value)
        *value = r + 4;
    if (value_len)
        *value_len = rec_len - 4;
    return STX_OK;
}

int stx_snapshot_decode_record(const void *key, size_t key_len, const void *rec,
                               size_t rec_len, const void **value, size_t *value_len)
{
    const char *why;
    size_t at;
    return record_decode(key, key_len, rec, rec_len, value, value_len, &why, &at);
}

/* Decode a long record (layout above); *why and *at as for record_decode. */
static int long_decode(const void *rec, size_t rec_len, const void **key, size_t *key_len,
                       const void **value, size_t *value_len, const char **why, size_t *at)
{
    const unsigned char *r = rec;
    *why = NULL;
    *at = SIZE_MAX;
    if (rec == NULL || rec_len < STX_SNAP_LONG_HEAD) {
        *why = "long-key record shorter than its header";
        return STX_EDECODE;
    }
    uint32_t klen = get_le32(r + 4);
    if (klen > rec_len - STX_SNAP_LONG_HEAD) {
        *why = "long-key record key length out of range";
        return STX_EDECODE;
    }
    const unsigned char *k = r + STX_SNAP_LONG_HEAD, *v = k + klen;
    size_t vlen = rec_len - STX_SNAP_LONG_HEAD - klen;
    if (record_crc(k, klen, v, vlen) != get_le32(r)) {
        *why = "checksum mismatch";
        return STX_EDECODE;
    }
    const char *reason = NULL;
    size_t off = 0;
    if (stx_mp_check(v, vlen, STX_MP_MAX_DEPTH, &off, &reason) != STX_OK) {
        *why = reason ? reason : "invalid msgpack";
        *at = off;
        return STX_EDECODE;
    }
    if (key)
        *key = k;
    if (key_len)
        *key_len = klen;
    if (value)
        *value = v;
    if (value_len)
        *value_len = vlen;
    return STX_OK;
}

int stx_snapshot_decode_long_record(const void *rec, size_t rec_len, const void **key,
                                    size_t *key_len, const void **value, size_t *value_len)
{
    const char *why;
    size_t at;
    return long_decode(rec, rec_len, key, key_len, value, value_len, &why, &at);
}

/* Decode a meta record; outputs are written only on success. */
static int meta_decode(const void *rec, size_t rec_len, char *identity, size_t idcap,
                       uint64_t *seq, char *offset, size_t offcap, const char **why)
{
    const unsigned char *p = rec;
    if (rec == NULL || rec_len < STX_SNAP_META_FIXED) {
        *why = "meta record too short";
        return STX_EDECODE;
    }
    if (memcmp(p, "STXS", 4) != 0) {
        *why = "meta record has a wrong magic";
        return STX_EDECODE;
    }
    size_t end = rec_len - 4; /* start of the CRC */
    if (stx_crc32(0, p, end) != get_le32(p + end)) {
        *why = "meta record checksum mismatch";
        return STX_EDECODE;
    }
    if (p[4] != STX_SNAP_META_VERSION) {
        *why = "meta record of an unknown format version";
        return STX_EDECODE;
    }
    size_t pos = 5;
    uint32_t idlen = get_le32(p + pos);
    pos += 4;
    /* pos <= end holds: the fixed part fits (checked above). */
    if (idlen > STX_SNAP_MAX_IDENTITY || idlen > end - pos) {
        *why = "meta identity length out of range";
        return STX_EDECODE;
    }
    const unsigned char *id = p + pos;
    pos += idlen;
    if (end - pos < 8 + 2) {
        *why = "meta record truncated";
        return STX_EDECODE;
    }
    uint64_t sq = get_le64(p + pos);
    pos += 8;
    uint16_t offlen = get_le16(p + pos);
    pos += 2;
    if (offlen > STX_SNAP_MAX_OFFSET || offlen != end - pos) {
        *why = "meta offset length out of range";
        return STX_EDECODE;
    }
    const unsigned char *off = p + pos;
    if (idlen > 0 && memchr(id, '\0', idlen) != NULL) {
        *why = "meta identity contains a NUL byte";
        return STX_EDECODE;
    }
    if (!looks_like_id(off, offlen)) {
        *why = "meta offset is not a stream id";
        return STX_EDECODE;
    }
    if (identity != NULL && (idcap == 0 || idlen > idcap - 1)) {
        *why = "meta identity longer than the caller's buffer";
        return STX_EDECODE;
    }
    if (offset != NULL && (offcap == 0 || offlen > offcap - 1)) {
        *why = "meta offset longer than the caller's buffer";
        return STX_EDECODE;
    }
    if (identity != NULL) {
        if (idlen > 0)
            memcpy(identity, id, idlen);
        identity[idlen] = '\0';
    }
    if (offset != NULL) {
        memcpy(offset, off, offlen);
        offset[offlen] = '\0';
    }
    if (seq != NULL)
        *seq = sq;
    return STX_OK;
}

int stx_snapshot_decode_meta(const void *rec, size_t rec_len, char *identity, size_t idcap,
                             uint64_t *seq, char *offset, size_t offcap)
{
    const char *why;
    return meta_decode(rec, rec_len, identity, idcap, seq, offset, offcap, &why);
}

/* Encode a meta record into out (STX_SNAP_META_FIXED + idlen + offlen
 * bytes); returns its length.  Lengths were checked by the caller. */
static size_t meta_encode(unsigned char *out, const char *identity, size_t idlen,
                          uint64_t seq, const char *offset, size_t offlen)
{
    size_t pos = 0;
    memcpy(out, "STXS", 4);
    pos += 4;
    out[pos++] = STX_SNAP_META_VERSION;
    put_le32(out + pos, (uint32_t)idlen);
    pos += 4;
    if (idlen > 0)
        memcpy(out + pos, identity, idlen);
    pos += idlen;
    put_le64(out + pos, seq);
    pos += 8;
    put_le16(out + pos, (uint16_t)offlen);
    pos += 2;
    memcpy(out + pos, offset, offlen);
    pos += offlen;
    put_le32(out + pos, stx_crc32(0, out, pos));
    return pos + 4;
}

/* ---- environment ------------------------------------------------------ */

/* Errors that mean "these files are not a usable LMDB environment". */
static int is_damage(int rc)
{
    switch (rc) {
    case MDB_INVALID:
    case MDB_CORRUPTED:
    case MDB_VERSION_MISMATCH:
    case MDB_PAGE_NOTFOUND:
    case MDB_PANIC:
    case MDB_INCOMPATIBLE:
    case MDB_BAD_TXN:
        return 1;
    default:
        return 0;
    }
}

/* mkdir -p: create dir and its missing parents.  0 or an errno value. */
static int make_dirs(const char *dir)
{
    struct stat st;
    if (stat(dir, &st) == 0)
        return S_ISDIR(st.st_mode) ? 0 : ENOTDIR;
    char *p = strdup(dir);
    if (p == NULL)
        return ENOMEM;
    int rc = 0;
    size_t n = strlen(p);
    while (n > 1 && p[n - 1] == '/')
        p[--n] = '\0';
    for (char *c = p + 1; rc == 0; c++) {
        int last = (*c == '\0');
        if (*c != '/' && !last)
            continue;
        if (!last && c[-1] == '/')
            continue; /* "a//b" */
        *c = '\0';
        if (mkdir(p, last ? 0700 : 0777) != 0) {
            int e = errno;
            if (e == EEXIST) {
                if (stat(p, &st) != 0)
                    rc = errno;
                else if (!S_ISDIR(st.st_mode))
                    rc = ENOTDIR;
            } else {
                rc = e;
            }
        }
        if (last)
            break;
        *c = '/';
    }
    free(p);
    return rc;
}

/* Delete data.mdb and lock.mdb.  0 or an errno value. */
static int wipe_files(const char *dir, const char **which)
{
    static const char *const names[] = {"data.mdb", "lock.mdb"};
    size_t dl = strlen(dir);
    char *path = malloc(dl + 16);
    if (path == NULL)
        return ENOMEM;
    int rc = 0;
    for (size_t i = 0; i < 2 && rc == 0; i++) {
        snprintf(path, dl + 16, "%s/%s", dir, names[i]);
        if (unlink(path) != 0 && errno != ENOENT) {
            rc = errno;
            *which = names[i];
        }
    }
    free(path);
    return rc;
}

/* Begin a transaction, adopting a map grown by another process. */
static int txn_begin(stx_snapshot *s, unsigned flags, MDB_txn **txn)
{
    int rc = mdb_txn_begin(s->env, NULL, flags, txn);
    if (rc == MDB_MAP_RESIZED) {
        rc = mdb_env_set_mapsize(s->env, 0);
        if (rc == 0)
            rc = mdb_txn_begin(s->env, NULL, flags, txn);
    }
    return rc;
}

/* Open s->env and both databases, reading the meta record once to see that
 * the tree can be walked.  On failure s->env is NULL, *stage names the step
 * and the LMDB code is returned. */
static int env_open(stx_snapshot *s, const char **stage)
{
    MDB_env *env = NULL;
    MDB_txn *txn = NULL;
    int rc;

    *stage = "mdb_env_create";
    rc = mdb_env_create(&env);
    if (rc != 0)
        return rc;
    *stage = "mdb_env_set_maxdbs";
    rc = mdb_env_set_maxdbs(env, 3);
    if (rc == 0) {
        *stage = "mdb_env_set_mapsize";
        rc = mdb_env_set_mapsize(env, s->map_size);
    }
    if (rc == 0) {
        *stage = "mdb_env_open";
        rc = mdb_env_open(env, s->dir, s->env_flags, 0600);
    }
    if (rc != 0) {
        mdb_env_close(env);
        return rc;
    }
    s->env = env;
    *stage = "mdb_txn_begin";
    rc = txn_begin(s, 0, &txn);
    if (rc == 0) {
        *stage = "opening the \"state\" database";
        rc = mdb_dbi_open(txn, "state", MDB_CREATE, &s->dbi_state);
    }
    if (rc == 0) {
        *stage = "opening the \"long\" database";
        rc = mdb_dbi_open(txn, "long", MDB_CREATE, &s->dbi_long);
    }
    if (rc == 0) {
        *stage = "opening the \"meta\" database";
        rc = mdb_dbi_open(txn, "meta", MDB_CREATE, &s->dbi_meta);
    }
    if (rc == 0) {
        MDB_val k = {sizeof meta_key - 1, (void *)meta_key}, v;
        *stage = "reading the meta record";
        rc = mdb_get(txn, s->dbi_meta, &k, &v);
        if (rc == MDB_NOTFOUND)
            rc = 0;
    }
    if (rc == 0) {
        /* Whose environment this is: written once, checked at every open. */
        MDB_val k = {sizeof owner_key - 1, (void *)owner_key}, v;
        *stage = "reading the owner record";
        rc = mdb_get(txn, s->dbi_meta, &k, &v);
        if (rc == MDB_NOTFOUND) {
            *stage = "writing the owner record";
            v.mv_size = s->name_len;
            v.mv_data = s->name;
            rc = mdb_put(txn, s->dbi_meta, &k, &v, 0);
        } else if (rc == 0 && (v.mv_size != s->name_len ||
                               memcmp(v.mv_data, s->name, s->name_len) != 0)) {
            *stage = "checking the owner record";
            rc = STX_SNAP_NOT_OURS;
        }
    }
    if (rc == 0) {
        *stage = "mdb_txn_commit";
        rc = mdb_txn_commit(txn);
        txn = NULL;
    }
    if (rc != 0) {
        if (txn != NULL)
            mdb_txn_abort(txn);
        mdb_env_close(env);
        s->env = NULL;
        return rc;
    }
    s->max_key = (size_t)mdb_env_get_maxkeysize(env);
    return 0;
}

/* Open, wiping the files once if LMDB says they are damaged.  STX_OK or
 * STX_ESNAPSHOT (message in s). */
static const char *env_strerror(int rc)
{
    return rc == STX_SNAP_NOT_OURS
               ? "the environment belongs to another (stream, group); remove the directory"
               : mdb_strerror(rc);
}

static int env_open_or_wipe(stx_snapshot *s)
{
    const char *stage = "", *which = "";
    int rc = env_open(s, &stage);
    if (rc != 0 && is_damage(rc)) {
        int e = wipe_files(s->dir, &which);
        if (e != 0) {
            set_err(s, "snapshot in '%s' is damaged (%s: %s) and %s cannot be removed: %s",
                    s->dir, stage, mdb_strerror(rc), which, strerror(e));
            return STX_ESNAPSHOT;
        }
        rc = env_open(s, &stage);
    }
    if (rc != 0) {
        set_err(s, "cannot open snapshot in '%s' (%s): %s", s->dir, stage, env_strerror(rc));
        return STX_ESNAPSHOT;
    }
    return STX_OK;
}

/* Double the map.  0 or the LMDB/errno code; *from and *to in bytes. */
static int grow_map(stx_snapshot *s, size_t *from, size_t *to)
{
    MDB_envinfo info;
    int rc = mdb_env_info(s->env, &info);
    if (rc != 0)
        return rc;
    *from = info.me_mapsize;
    if (*from > SIZE_MAX / 2) {
        *to = *from;
        return ENOMEM;
    }
    *to = *from * 2;
    return mdb_env_set_mapsize(s->env, *to);
}

/* A write step failed with LMDB code rc: end the transaction (unless
 * txn_gone, as after mdb_txn_commit), grow the map if it was full, and
 * leave a message.  Returns STX_ESNAPSHOT. */
static int write_failed(stx_snapshot *s, int rc, const char *what, int txn_gone)
{
    if (s->wtxn != NULL && !txn_gone)
        mdb_txn_abort(s->wtxn);
    s->wtxn = NULL;
    if (rc == MDB_MAP_FULL) {
        size_t from = 0, to = 0;
        int g = grow_map(s, &from, &to);
        if (g == 0)
            set_err(s, "snapshot map in '%s' full (%zu MiB) during %s; grown to %zu MiB, "
                       "transaction aborted: begin it again",
                    s->dir, from >> 20, what, to >> 20);
        else
            set_err(s, "snapshot map in '%s' full (%zu MiB) during %s and cannot grow to "
                       "%zu MiB: %s; transaction aborted",
                    s->dir, from >> 20, what, to >> 20, mdb_strerror(g));
    } else if (rc == MDB_TXN_FULL) {
        set_err(s, "snapshot transaction in '%s' too large (%s): %s; transaction aborted",
                s->dir, what, mdb_strerror(rc));
    } else {
        set_err(s, "snapshot %s failed in '%s': %s; transaction aborted", what, s->dir,
                mdb_strerror(rc));
    }
    return STX_ESNAPSHOT;
}

/* Abort the open write transaction after a refused argument. */
static void abort_txn(stx_snapshot *s)
{
    if (s->wtxn != NULL)
        mdb_txn_abort(s->wtxn);
    s->wtxn = NULL;
}

/* ---- public ----------------------------------------------------------- */

/* The pair's name "LEN:STREAM:GROUP" (malloc'd) and its length. */
static char *pair_name(const char *stream, const char *group, size_t *len)
{
    size_t sl = strlen(stream), gl = strlen(group), cap = sl + gl + 24;
    char *n = malloc(cap);
    if (n == NULL)
        return NULL;
    int w = snprintf(n, cap, "%zu:%s:%s", sl, stream, group);
    *len = (size_t)w;
    return n;
}

/* Append the readable part of a name to out (sanitized, at most room). */
static size_t label_part(char *out, size_t room, const char *name)
{
    size_t o = 0;
    for (const unsigned char *c = (const unsigned char *)name; *c && o < room; c++) {
        int ok = (*c >= 'a' && *c <= 'z') || (*c >= 'A' && *c <= 'Z') ||
                 (*c >= '0' && *c <= '9') || *c == '-' || *c == '_' || *c == '.';
        out[o++] = ok ? (char)*c : '_';
    }
    return o;
}

char *stx_snapshot_env_dir(const char *dir, const char *stream, const char *group)
{
    if (dir == NULL || dir[0] == '\0' || stream == NULL || group == NULL)
        return NULL;
    size_t nlen;
    char *name = pair_name(stream, group, &nlen);
    if (name == NULL)
        return NULL;
    uint64_t h = stx_siphash24(dir_hash_key, name, nlen);
    free(name);
    char label[STX_SNAP_LABEL_MAX + 1];
    size_t o = label_part(label, STX_SNAP_LABEL_MAX, stream);
    if (o < STX_SNAP_LABEL_MAX)
        label[o++] = '.';
    o += label_part(label + o, STX_SNAP_LABEL_MAX - o, group);
    label[o] = '\0';
    size_t cap = strlen(dir) + o + 24;
    char *path = malloc(cap);
    if (path == NULL)
        return NULL;
    snprintf(path, cap, "%s%s%s-%016llx", dir, dir[strlen(dir) - 1] == '/' ? "" : "/", label,
             (unsigned long long)h);
    return path;
}

/* Take the pair's lock.  STX_OK, STX_SNAPSHOT_LOCKED or STX_ESNAPSHOT;
 * message in err. */
static int take_lock(stx_snapshot *s, const char *stream, const char *group, char *err,
                     size_t errlen)
{
    size_t cap = strlen(s->dir) + 16;
    char *path = malloc(cap);
    if (path == NULL) {
        set_buf(err, errlen, "out of memory opening snapshot in '%s'", s->dir);
        return STX_ENOMEM;
    }
    snprintf(path, cap, "%s/owner.lock", s->dir);
    s->lock_fd = open(path, O_RDWR | O_CREAT | O_CLOEXEC, 0600);
    if (s->lock_fd < 0) {
        set_buf(err, errlen, "cannot open snapshot lock file '%s': %s", path, strerror(errno));
        free(path);
        return STX_ESNAPSHOT;
    }
    int rc;
    do
        rc = flock(s->lock_fd, LOCK_EX | LOCK_NB);
    while (rc != 0 && errno == EINTR);
    if (rc != 0) {
        int e = errno;
        char sh[STX_SNAP_KEY_SHOWN], gh[STX_SNAP_KEY_SHOWN];
        stx_printable(stream, strlen(stream), sh, sizeof sh);
        stx_printable(group, strlen(group), gh, sizeof gh);
        if (e == EWOULDBLOCK)
            set_buf(err, errlen,
                    "snapshot for stream '%s' group '%s' is locked by another process "
                    "(or another open snapshot of this process): '%s'",
                    sh, gh, path);
        else
            set_buf(err, errlen, "cannot lock snapshot file '%s': %s", path, strerror(e));
        free(path);
        return e == EWOULDBLOCK ? STX_SNAPSHOT_LOCKED : STX_ESNAPSHOT;
    }
    free(path);
    return STX_OK;
}

int stx_snapshot_open(stx_snapshot **out, const char *dir, const char *stream,
                      const char *group, unsigned map_size_mb, int sync_mode, char *err,
                      size_t errlen)
{
    if (out == NULL)
        return STX_EINVAL;
    *out = NULL;
    if (err != NULL && errlen > 0)
        err[0] = '\0';
    if (dir == NULL || dir[0] == '\0') {
        set_buf(err, errlen, "snapshot directory not set");
        return STX_EINVAL;
    }
    if (stream == NULL || group == NULL) {
        set_buf(err, errlen, "snapshot without a stream or group name");
        return STX_EINVAL;
    }
    if (sync_mode < 0 || sync_mode > 2) {
        set_buf(err, errlen, "snapshot sync mode %d invalid (0, 1 or 2)", sync_mode);
        return STX_EINVAL;
    }
    if (map_size_mb == 0)
        map_size_mb = STX_SNAP_DEFAULT_MAP_MB;
    uint64_t map_bytes = (uint64_t)map_size_mb << 20;
    if (map_bytes > SIZE_MAX) { /* 32-bit systems */
        set_buf(err, errlen, "snapshot map size %u MiB too large", map_size_mb);
        return STX_EINVAL;
    }

    stx_snapshot *s = calloc(1, sizeof *s);
    if (s != NULL) {
        s->lock_fd = -1;
        s->long_mask = UINT64_MAX;
        s->dir = stx_snapshot_env_dir(dir, stream, group);
        s->name = pair_name(stream, group, &s->name_len);
    }
    if (s == NULL || s->dir == NULL || s->name == NULL) {
        stx_snapshot_close(s);
        set_buf(err, errlen, "out of memory opening snapshot in '%s'", dir);
        return STX_ENOMEM;
    }
    s->map_size = (size_t)map_bytes;
    s->env_flags = sync_mode == 0 ? MDB_NOMETASYNC : sync_mode == 2 ? MDB_NOSYNC : 0;

    int e = make_dirs(s->dir);
    if (e != 0) {
        set_buf(err, errlen, "cannot create snapshot directory '%s': %s", s->dir, strerror(e));
        stx_snapshot_close(s);
        return e == ENOMEM ? STX_ENOMEM : STX_ESNAPSHOT;
    }
    int rc = take_lock(s, stream, group, err, errlen);
    if (rc == STX_OK) {
        rc = env_open_or_wipe(s);
        if (rc != STX_OK)
            set_buf(err, errlen, "%s", s->errmsg);
    }
    if (rc != STX_OK) {
        stx_snapshot_close(s);
        return rc;
    }
    *out = s;
    return STX_OK;
}

void stx_snapshot_close(stx_snapshot *s)
{
    if (s == NULL)
        return;
    if (s->wtxn != NULL)
        mdb_txn_abort(s->wtxn);
    if (s->env != NULL)
        mdb_env_close(s->env);
    /* Last: the environment is closed before another opener may take over. */
    if (s->lock_fd >= 0)
        close(s->lock_fd);
    free(s->dir);
    free(s->name);
    free(s);
}

void stx_snapshot_set_long_hash_mask(stx_snapshot *s, uint64_t mask)
{
    if (s != NULL)
        s->long_mask = mask;
}

const char *stx_snapshot_errmsg(const stx_snapshot *s)
{
    return s != NULL ? s->errmsg : "";
}

/* Shared checks of read calls. */
static int read_ready(stx_snapshot *s)
{
    if (s->in_load) {
        set_err(s, "snapshot call refused inside a load callback");
        return STX_ESTATE;
    }
    if (s->wtxn != NULL) {
        set_err(s, "snapshot read refused while a write transaction is open");
        return STX_ESTATE;
    }
    if (s->env == NULL) {
        set_err(s, "snapshot in '%s' is not open", s->dir);
        return STX_ESTATE;
    }
    return STX_OK;
}

int stx_snapshot_read_meta(stx_snapshot *s, char *identity, size_t idcap, uint64_t *seq,
                           char *offset, size_t offcap)
{
    if (s == NULL)
        return STX_EINVAL;
    int rc = read_ready(s);
    if (rc != STX_OK)
        return rc;
    MDB_txn *txn = NULL;
    int m = txn_begin(s, MDB_RDONLY, &txn);
    if (m != 0) {
        set_err(s, "snapshot read in '%s' failed: %s", s->dir, mdb_strerror(m));
        return STX_ESNAPSHOT;
    }
    MDB_val k = {sizeof meta_key - 1, (void *)meta_key}, v;
    m = mdb_get(txn, s->dbi_meta, &k, &v);
    if (m == MDB_NOTFOUND) {
        set_err(s, "snapshot in '%s' has no meta record (empty)", s->dir);
        rc = STX_ENOTFOUND;
    } else if (m != 0) {
        set_err(s, "snapshot meta read in '%s' failed: %s", s->dir, mdb_strerror(m));
        rc = STX_ESNAPSHOT;
    } else {
        const char *why = "";
        rc = meta_decode(v.mv_data, v.mv_size, identity, idcap, seq, offset, offcap, &why);
        if (rc != STX_OK)
            set_err(s, "snapshot in '%s': %s (%zu bytes)", s->dir, why, v.mv_size);
    }
    mdb_txn_abort(txn);
    return rc;
}

/* Pass every record of one database to cb (long: dbi holds long records). */
static int load_db(stx_snapshot *s, MDB_txn *txn, MDB_dbi dbi, int is_long,
                   stx_snapshot_record_fn cb, void *ud)
{
    MDB_cursor *cur = NULL;
    int m = mdb_cursor_open(txn, dbi, &cur);
    if (m != 0) {
        set_err(s, "snapshot load in '%s' failed: %s", s->dir, mdb_strerror(m));
        return STX_ESNAPSHOT;
    }
    int rc = STX_OK;
    MDB_val k, v;
    for (m = mdb_cursor_get(cur, &k, &v, MDB_FIRST); m == 0;
         m = mdb_cursor_get(cur, &k, &v, MDB_NEXT)) {
        const void *key = k.mv_data, *val = NULL;
        size_t klen = k.mv_size, vlen = 0, at = SIZE_MAX;
        const char *why = "";
        int d = is_long ? long_decode(v.mv_data, v.mv_size, &key, &klen, &val, &vlen, &why, &at)
                        : record_decode(k.mv_data, k.mv_size, v.mv_data, v.mv_size, &val, &vlen,
                                        &why, &at);
        if (d != STX_OK) {
            char shown[STX_SNAP_KEY_SHOWN];
            if (is_long && key == k.mv_data)
                snprintf(shown, sizeof shown, "(long key)");
            else
                stx_printable(key, klen, shown, sizeof shown);
            if (at != SIZE_MAX)
                set_err(s, "snapshot record '%s' in '%s' damaged: invalid msgpack at byte %zu: %s",
                        shown, s->dir, at, why);
            else
                set_err(s, "snapshot record '%s' in '%s' damaged: %s", shown, s->dir, why);
            rc = STX_EDECODE;
            break;
        }
        rc = cb(ud, key, klen, val, vlen);
        if (rc != 0) {
            set_err(s, "snapshot load stopped by the callback (%d)", rc);
            break;
        }
    }
    if (rc == STX_OK && m != MDB_NOTFOUND) {
        set_err(s, "snapshot load in '%s' failed: %s", s->dir, mdb_strerror(m));
        rc = STX_ESNAPSHOT;
    }
    mdb_cursor_close(cur);
    return rc;
}

int stx_snapshot_load(stx_snapshot *s, stx_snapshot_record_fn cb, void *ud)
{
    if (s == NULL)
        return STX_EINVAL;
    if (cb == NULL) {
        set_err(s, "snapshot load without a callback");
        return STX_EINVAL;
    }
    int rc = read_ready(s);
    if (rc != STX_OK)
        return rc;
    MDB_txn *txn = NULL;
    int m = txn_begin(s, MDB_RDONLY, &txn);
    if (m != 0) {
        set_err(s, "snapshot load in '%s' failed: %s", s->dir, mdb_strerror(m));
        return STX_ESNAPSHOT;
    }
    s->in_load = 1;
    rc = load_db(s, txn, s->dbi_state, 0, cb, ud);
    if (rc == STX_OK)
        rc = load_db(s, txn, s->dbi_long, 1, cb, ud);
    s->in_load = 0;
    mdb_txn_abort(txn);
    return rc;
}

int stx_snapshot_count(stx_snapshot *s, size_t *count)
{
    if (s == NULL || count == NULL)
        return STX_EINVAL;
    *count = 0;
    int rc = read_ready(s);
    if (rc != STX_OK)
        return rc;
    MDB_txn *txn = NULL;
    MDB_stat st, lst;
    int m = txn_begin(s, MDB_RDONLY, &txn);
    if (m == 0)
        m = mdb_stat(txn, s->dbi_state, &st);
    if (m == 0)
        m = mdb_stat(txn, s->dbi_long, &lst);
    if (txn != NULL)
        mdb_txn_abort(txn);
    if (m != 0) {
        set_err(s, "snapshot count in '%s' failed: %s", s->dir, mdb_strerror(m));
        return STX_ESNAPSHOT;
    }
    *count = st.ms_entries + lst.ms_entries;
    return STX_OK;
}

/* Grow the map ahead of a write when the file uses more than half of it.
 * Failure is not an error here: the write may still fit. */
static void grow_ahead(stx_snapshot *s)
{
    MDB_envinfo info;
    MDB_stat st;
    if (mdb_env_info(s->env, &info) != 0 || mdb_env_stat(s->env, &st) != 0)
        return;
    size_t used = ((size_t)info.me_last_pgno + 1) * st.ms_psize;
    if (used > info.me_mapsize / 2) {
        size_t from, to;
        (void)grow_map(s, &from, &to);
    }
}

/* Begin the write transaction and clear it if asked.  LMDB code. */
static int begin_txn(stx_snapshot *s, int clear, const char **what)
{
    *what = "begin";
    int rc = txn_begin(s, 0, &s->wtxn);
    if (rc != 0) {
        s->wtxn = NULL;
        return rc;
    }
    if (clear) {
        *what = "clear";
        rc = mdb_drop(s->wtxn, s->dbi_state, 0);
        if (rc == 0)
            rc = mdb_drop(s->wtxn, s->dbi_long, 0);
        if (rc == 0) {
            MDB_val k = {sizeof meta_key - 1, (void *)meta_key};
            rc = mdb_del(s->wtxn, s->dbi_meta, &k, NULL);
            if (rc == MDB_NOTFOUND)
                rc = 0;
        }
        if (rc != 0) {
            mdb_txn_abort(s->wtxn);
            s->wtxn = NULL;
        }
    }
    return rc;
}

int stx_snapshot_begin(stx_snapshot *s, int clear)
{
    if (s == NULL)
        return STX_EINVAL;
    if (s->in_load) {
        set_err(s, "snapshot call refused inside a load callback");
        return STX_ESTATE;
    }
    if (s->wtxn != NULL) {
        set_err(s, "snapshot write transaction already open");
        return STX_ESTATE;
    }
    if (s->env == NULL) {
        /* A failed rebuild below left no environment: try again. */
        if (!clear) {
            set_err(s, "snapshot in '%s' is not open; begin with clear to rebuild it", s->dir);
            return STX_ESTATE;
        }
        int r = env_open_or_wipe(s);
        if (r != STX_OK)
            return r;
    }
    grow_ahead(s);
    const char *what = "begin";
    int rc = begin_txn(s, clear, &what);
    if (rc != 0 && clear && is_damage(rc)) {
        /* A damaged tree cannot be cleared page by page: start from empty files. */
        const char *which = "";
        mdb_env_close(s->env);
        s->env = NULL;
        int e = wipe_files(s->dir, &which);
        if (e != 0) {
            set_err(s, "snapshot in '%s' is damaged (%s: %s) and %s cannot be removed: %s",
                    s->dir, what, mdb_strerror(rc), which, strerror(e));
            return STX_ESNAPSHOT;
        }
        int r = env_open_or_wipe(s);
        if (r != STX_OK)
            return r;
        rc = begin_txn(s, clear, &what);
    }
    if (rc != 0)
        return write_failed(s, rc, what, 1);
    s->errmsg[0] = '\0';
    return STX_OK;
}

static int need_txn(stx_snapshot *s, const char *call)
{
    if (s->wtxn == NULL) {
        set_err(s, "snapshot %s without an open write transaction (call stx_snapshot_begin)",
                call);
        return STX_ESTATE;
    }
    return STX_OK;
}

static void put_be(unsigned char *p, uint64_t v, int n)
{
    for (int i = n - 1; i >= 0; i--, v >>= 8)
        p[i] = (unsigned char)v;
}

/* Find the long record of key in the open write transaction: *found = 1
 * and its LMDB key in lk, or *found = 0, lk set to the key a new record
 * takes (*next its suffix).  Records of the same hash that do not decode
 * cannot be compared: they are stepped over (load reports them).  0 or an
 * LMDB code; MDB_KEYEXIST when the suffixes of one hash ran out. */
static int long_find(stx_snapshot *s, const void *key, size_t key_len,
                     unsigned char lk[STX_SNAP_LONG_KEY], int *found, uint32_t *next)
{
    uint64_t h = stx_siphash24(long_hash_key, key, key_len) & s->long_mask;
    put_be(lk, h, 8);
    put_be(lk + 8, 0, 4);
    *found = 0;
    *next = 0;
    MDB_cursor *cur = NULL;
    int m = mdb_cursor_open(s->wtxn, s->dbi_long, &cur);
    if (m != 0)
        return m;
    MDB_val k = {STX_SNAP_LONG_KEY, lk}, v;
    int have_last = 0;
    uint32_t last = 0;
    for (m = mdb_cursor_get(cur, &k, &v, MDB_SET_RANGE); m == 0;
         m = mdb_cursor_get(cur, &k, &v, MDB_NEXT)) {
        if (k.mv_size != STX_SNAP_LONG_KEY || memcmp(k.mv_data, lk, 8) != 0)
            break;
        const unsigned char *kb = k.mv_data;
        last = (uint32_t)(((uint32_t)kb[8] << 24) | ((uint32_t)kb[9] << 16) |
                          ((uint32_t)kb[10] << 8) | kb[11]);
        have_last = 1;
        const void *rk;
        size_t rkl, vl, at;
        const void *rv;
        const char *why;
        if (long_decode(v.mv_data, v.mv_size, &rk, &rkl, &rv, &vl, &why, &at) == STX_OK &&
            rkl == key_len && (key_len == 0 || memcmp(rk, key, key_len) == 0)) {
            memcpy(lk, kb, STX_SNAP_LONG_KEY);
            *found = 1;
            break;
        }
    }
    mdb_cursor_close(cur);
    if (m != 0 && m != MDB_NOTFOUND)
        return m;
    if (!*found) {
        if (have_last && last == UINT32_MAX)
            return MDB_KEYEXIST;
        *next = have_last ? last + 1 : 0;
        put_be(lk + 8, *next, 4);
    }
    return 0;
}

/* Store a record under a key LMDB cannot hold (checked by the caller). */
static int long_put(stx_snapshot *s, const void *key, size_t key_len, const void *value,
                    size_t value_len)
{
    unsigned char lk[STX_SNAP_LONG_KEY];
    int found;
    uint32_t next;
    int m = long_find(s, key, key_len, lk, &found, &next);
    if (m != 0)
        return write_failed(s, m, "put of a long key", 0);
    MDB_val k = {sizeof lk, lk};
    MDB_val v = {STX_SNAP_LONG_HEAD + key_len + value_len, NULL};
    m = mdb_put(s->wtxn, s->dbi_long, &k, &v, MDB_RESERVE);
    if (m != 0)
        return write_failed(s, m, "put of a long key", 0);
    unsigned char *r = v.mv_data;
    put_le32(r, record_crc(key, key_len, value, value_len));
    put_le32(r + 4, (uint32_t)key_len);
    if (key_len > 0)
        memcpy(r + STX_SNAP_LONG_HEAD, key, key_len);
    if (value_len > 0)
        memcpy(r + STX_SNAP_LONG_HEAD + key_len, value, value_len);
    return STX_OK;
}

int stx_snapshot_put(stx_snapshot *s, const void *key, size_t key_len, const void *value,
                     size_t value_len)
{
    if (s == NULL)
        return STX_EINVAL;
    int rc = need_txn(s, "put");
    if (rc != STX_OK)
        return rc;
    if ((key == NULL && key_len > 0) || value == NULL) {
        abort_txn(s);
        set_err(s, "snapshot put with a NULL key or value; transaction aborted");
        return STX_EINVAL;
    }
    if (key_len > UINT32_MAX || value_len > UINT32_MAX - 4 ||
        value_len > SIZE_MAX - STX_SNAP_LONG_HEAD - key_len) {
        abort_txn(s);
        set_err(s, "snapshot put: key of %zu and value of %zu bytes too large; "
                   "transaction aborted",
                key_len, value_len);
        return STX_ELIMIT;
    }
    if (stx_mp_validate(value, value_len, STX_MP_MAX_DEPTH) != STX_OK) {
        char shown[STX_SNAP_KEY_SHOWN];
        stx_printable(key, key_len, shown, sizeof shown);
        abort_txn(s);
        set_err(s, "snapshot put of key '%s': value is not one msgpack object; "
                   "transaction aborted",
                shown);
        return STX_EDECODE;
    }
    if (key_len == 0 || key_len > s->max_key)
        return long_put(s, key, key_len, value, value_len);
    MDB_val k = {key_len, (void *)key};
    MDB_val v = {value_len + 4, NULL};
    int m = mdb_put(s->wtxn, s->dbi_state, &k, &v, MDB_RESERVE);
    if (m != 0)
        return write_failed(s, m, "put", 0);
    unsigned char *r = v.mv_data;
    put_le32(r, record_crc(key, key_len, value, value_len));
    if (value_len > 0)
        memcpy(r + 4, value, value_len);
    return STX_OK;
}

int stx_snapshot_del(stx_snapshot *s, const void *key, size_t key_len)
{
    if (s == NULL)
        return STX_EINVAL;
    int rc = need_txn(s, "del");
    if (rc != STX_OK)
        return rc;
    if (key == NULL && key_len > 0) {
        abort_txn(s);
        set_err(s, "snapshot del with a NULL key; transaction aborted");
        return STX_EINVAL;
    }
    if (key_len == 0 || key_len > s->max_key) {
        unsigned char lk[STX_SNAP_LONG_KEY];
        int found = 0;
        uint32_t next;
        int m = long_find(s, key, key_len, lk, &found, &next);
        if (m == 0 && found) {
            MDB_val k = {sizeof lk, lk};
            m = mdb_del(s->wtxn, s->dbi_long, &k, NULL);
        }
        if (m != 0 && m != MDB_NOTFOUND)
            return write_failed(s, m, "del", 0);
        return STX_OK;
    }
    MDB_val k = {key_len, (void *)key};
    int m = mdb_del(s->wtxn, s->dbi_state, &k, NULL);
    if (m != 0 && m != MDB_NOTFOUND)
        return write_failed(s, m, "del", 0);
    return STX_OK;
}

int stx_snapshot_commit(stx_snapshot *s, const char *identity, uint64_t seq,
                        const char *offset)
{
    if (s == NULL)
        return STX_EINVAL;
    int rc = need_txn(s, "commit");
    if (rc != STX_OK)
        return rc;
    if (identity == NULL || offset == NULL) {
        abort_txn(s);
        set_err(s, "snapshot commit without identity or offset; transaction aborted");
        return STX_EINVAL;
    }
    size_t idlen = strlen(identity), offlen = strlen(offset);
    if (idlen > STX_SNAP_MAX_IDENTITY) {
        abort_txn(s);
        set_err(s, "snapshot identity of %zu bytes too long (at most %u); transaction aborted",
                idlen, STX_SNAP_MAX_IDENTITY);
        return STX_EINVAL;
    }
    if (offlen > STX_SNAP_MAX_OFFSET || !looks_like_id(offset, offlen)) {
        abort_txn(s);
        set_err(s, "snapshot offset '%.*s' is not a stream id; transaction aborted",
                (int)(offlen > STX_SNAP_MAX_OFFSET ? STX_SNAP_MAX_OFFSET : offlen), offset);
        return STX_EINVAL;
    }
    MDB_val k = {sizeof meta_key - 1, (void *)meta_key};
    MDB_val v = {STX_SNAP_META_FIXED + idlen + offlen, NULL};
    int m = mdb_put(s->wtxn, s->dbi_meta, &k, &v, MDB_RESERVE);
    if (m != 0)
        return write_failed(s, m, "meta write", 0);
    meta_encode(v.mv_data, identity, idlen, seq, offset, offlen);
    m = mdb_txn_commit(s->wtxn); /* frees the transaction, even on failure */
    if (m != 0)
        return write_failed(s, m, "commit", 1);
    s->wtxn = NULL;
    s->errmsg[0] = '\0';
    return STX_OK;
}

void stx_snapshot_abort(stx_snapshot *s)
{
    if (s != NULL)
        abort_txn(s);
}
