/* The archive's PostgreSQL connection, its schema migration and the
 * archiver: entries of a stream copied into PostgreSQL exactly once.
 *
 * One batch, start to end (stx_archive_step()):
 *
 *   SYNC (first step, or after any failure)
 *     read PostgreSQL's offset O of the stream; XGROUP CREATE (if needed);
 *     XGROUP SETID to O; XACK every pending id <= O.  From here Redis
 *     delivers exactly the entries after O, whatever Redis remembered.
 *   READ      XREADGROUP ... > : entries after O (ids <= O are acked, skipped)
 *   WRITE     BEGIN; lock the offset row (FOR UPDATE) and check it is still
 *             O (another archiver may have moved it: then ROLLBACK, SYNC);
 *             COPY the rows; UPDATE the offset to the batch's last id; COMMIT
 *   ACK       XACK the batch.  A failure here loses nothing: the next SYNC
 *             acks what PostgreSQL holds.
 *
 * A COMMIT whose answer is lost is in doubt; the next SYNC settles it by
 * reading the offset, which moved if and only if the rows are there. */
#include <arpa/inet.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "archive.h"

#define DEFAULT_BATCH 500
#define MAX_BATCH 100000
#define BACKOFF_MIN_MS 50
#define BACKOFF_MAX_MS 5000
#define BYTEA_OID 17

int stx_archive_fail(stx_archive *a, int code, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(a->errmsg, sizeof a->errmsg, fmt, ap);
    va_end(ap);
    return code;
}

/* libpq's messages end with a newline; ours are one line. */
static void one_line(char *s)
{
    for (char *p = s; *p; p++)
        if (*p == '\n' || *p == '\r') *p = ' ';
    size_t n = strlen(s);
    while (n && s[n - 1] == ' ') s[--n] = '\0';
}

/* Connection failures that are the caller's to fix (retrying will not help). */
static int connect_code(const char *msg)
{
    if (strstr(msg, "authentication failed") || strstr(msg, "no password supplied") ||
        strstr(msg, "no pg_hba.conf entry") || strstr(msg, "password authentication") ||
        (strstr(msg, "role \"") && strstr(msg, "does not exist")))
        return STX_EAUTH;
    if (strstr(msg, "does not exist") || strstr(msg, "invalid connection option") ||
        strstr(msg, "invalid URI") || strstr(msg, "invalid sslmode"))
        return STX_EINVAL;
    return STX_ECONN;
}

/* libpq prints server notices on stderr by default; a library keeps quiet. */
static void no_notice(void *arg, const char *message)
{
    (void)arg;
    (void)message;
}

static int connect_pg(stx_archive *a)
{
    if (a->pg) PQfinish(a->pg);
    a->pg = PQconnectdb(a->conninfo);
    if (!a->pg) return stx_archive_fail(a, STX_ENOMEM, "archive: out of memory");
    if (PQstatus(a->pg) != CONNECTION_OK) {
        char msg[900];
        snprintf(msg, sizeof msg, "%s", PQerrorMessage(a->pg));
        one_line(msg);
        PQfinish(a->pg);
        a->pg = NULL;
        return stx_archive_fail(a, connect_code(msg), "archive: PostgreSQL: %s", msg);
    }
    PQsetNoticeProcessor(a->pg, no_notice, NULL);
    /* type and key are sent as UTF-8 (checked by is_text()), whatever the
     * environment's PGCLIENTENCODING says. */
    if (PQsetClientEncoding(a->pg, "UTF8") != 0) {
        char msg[900];
        snprintf(msg, sizeof msg, "%s", PQerrorMessage(a->pg));
        one_line(msg);
        PQfinish(a->pg);
        a->pg = NULL;
        return stx_archive_fail(a, STX_ECONN, "archive: PostgreSQL: setting client_encoding: %s",
                                msg);
    }
    if (a->opened_once) a->stats.pg_reconnects++;
    a->opened_once = 1;
    return STX_OK;
}

int stx_archive_ready(stx_archive *a)
{
    a->errmsg[0] = '\0';
    if (a->pg && PQstatus(a->pg) == CONNECTION_OK) return STX_OK;
    a->synced = 0;
    return connect_pg(a);
}

int stx_archive_pg_fail(stx_archive *a, const PGresult *r, const char *what)
{
    const char *state = r ? PQresultErrorField(r, PG_DIAG_SQLSTATE) : NULL;
    char msg[900];
    snprintf(msg, sizeof msg, "%s",
             r && *PQresultErrorMessage(r) ? PQresultErrorMessage(r) : PQerrorMessage(a->pg));
    one_line(msg);
    int code = STX_EARCHIVE;
    if (PQstatus(a->pg) != CONNECTION_OK) code = STX_ECONN;
    else if (state && (strncmp(state, "08", 2) == 0 || strcmp(state, "57P01") == 0 ||
                       strcmp(state, "57P02") == 0 || strcmp(state, "57P03") == 0 ||
                       strcmp(state, "40001") == 0 || strcmp(state, "40P01") == 0))
        code = STX_ECONN; /* shutting down, starting up, serialization: retry */
    else if (state && strncmp(state, "28", 2) == 0) code = STX_EAUTH;
    else if (state && (strcmp(state, "42P01") == 0 || strcmp(state, "42703") == 0))
        code = STX_ESCHEMA;
    a->synced = 0;
    if (code == STX_ESCHEMA)
        return stx_archive_fail(a, code, "archive: %s: %s (is the schema installed? run stx archive "
                                         "--init)", what, msg);
    return stx_archive_fail(a, code, "archive: %s: %s%s%s", what, msg, state ? " SQLSTATE " : "",
                            state ? state : "");
}

/* Run sql; the result must have status want, else the failure's code. */
static int pg_exec(stx_archive *a, const char *what, const char *sql, int n,
                   const char *const *params, int binary, ExecStatusType want, PGresult **out)
{
    if (out) *out = NULL;
    PGresult *r = PQexecParams(a->pg, sql, n, NULL, params, NULL, NULL, binary);
    if (!r || PQresultStatus(r) != want) {
        int rc = stx_archive_pg_fail(a, r, what);
        PQclear(r);
        return rc;
    }
    if (out) *out = r;
    else PQclear(r);
    return STX_OK;
}

/* Leave an aborted or unfinished transaction behind us; on a dead
 * connection nothing can be done (the server rolls it back). */
static void pg_rollback(stx_archive *a)
{
    if (a->pg && PQstatus(a->pg) == CONNECTION_OK &&
        PQtransactionStatus(a->pg) != PQTRANS_IDLE)
        PQclear(PQexec(a->pg, "ROLLBACK"));
}

int stx_archive_open(stx_archive **out, const char *conninfo)
{
    if (!out) return STX_EINVAL;
    *out = NULL;
    stx_archive *a = calloc(1, sizeof *a);
    if (!a) return STX_ENOMEM;
    if (!(a->conninfo = strdup(conninfo ? conninfo : ""))) {
        free(a);
        return STX_ENOMEM;
    }
    atomic_init(&a->stop, 0);
    a->stats.behind = -1;
    *out = a;
    return connect_pg(a);
}

void stx_archive_close(stx_archive *a)
{
    if (!a) return;
    if (a->pg) PQfinish(a->pg);
    free(a->conninfo);
    free(a->stream);
    free(a->buf);
    free(a);
}

const char *stx_archive_errmsg(const stx_archive *a)
{
    return a ? a->errmsg : "no archive handle";
}

void stx_archive_stop(stx_archive *a)
{
    if (a) atomic_store(&a->stop, 1);
}

void stx_archive_stats_get(const stx_archive *a, stx_archive_stats *out)
{
    if (!out) return;
    if (!a) {
        memset(out, 0, sizeof *out);
        return;
    }
    *out = a->stats;
}

/* ---- schema ------------------------------------------------------------- */

/* Each migration: the statements that take the schema from version i to
 * i + 1, run in one transaction.  Never edit a released one: add another. */
static const char *const migrations[] = {
    /* 0 -> 1 */
    "CREATE TABLE stx_archive_entries ("
    " stream text NOT NULL,"
    " ms bigint NOT NULL CHECK (ms >= 0),"
    " seq bigint NOT NULL CHECK (seq >= 0),"
    " names bytea[] NOT NULL,"
    " vals bytea[] NOT NULL,"
    " type text,"
    " key text,"
    " created_at bigint,"
    " archived_at timestamptz NOT NULL DEFAULT now(),"
    " PRIMARY KEY (stream, ms, seq),"
    " CHECK (cardinality(names) = cardinality(vals)));"
    "CREATE INDEX stx_archive_entries_type ON stx_archive_entries (stream, type, ms)"
    " WHERE type IS NOT NULL;"
    "CREATE INDEX stx_archive_entries_key ON stx_archive_entries (stream, key, ms)"
    " WHERE key IS NOT NULL;"
    "CREATE INDEX stx_archive_entries_created ON stx_archive_entries (stream, created_at)"
    " WHERE created_at IS NOT NULL;"
    "CREATE TABLE stx_archive_offsets ("
    " stream text PRIMARY KEY,"
    " ms bigint NOT NULL,"
    " seq bigint NOT NULL,"
    " archived bigint NOT NULL DEFAULT 0,"
    " updated_at timestamptz NOT NULL DEFAULT now());",
};
_Static_assert(sizeof migrations / sizeof migrations[0] == STX_ARCHIVE_SCHEMA_VERSION,
               "one migration per schema version");

/* Any two callers of stx_archive_migrate() take turns on this lock. */
#define MIGRATE_LOCK "7311942088123"

static int schema_version(stx_archive *a, int *version)
{
    *version = 0;
    PGresult *r;
    int rc = pg_exec(a, "schema", "SELECT to_regclass('stx_archive_version') IS NOT NULL", 0,
                     NULL, 0, PGRES_TUPLES_OK, &r);
    if (rc != STX_OK) return rc;
    int exists = strcmp(PQgetvalue(r, 0, 0), "t") == 0;
    PQclear(r);
    if (!exists) return STX_OK;
    rc = pg_exec(a, "schema", "SELECT coalesce(max(version), 0) FROM stx_archive_version", 0, NULL,
                 0, PGRES_TUPLES_OK, &r);
    if (rc != STX_OK) return rc;
    *version = atoi(PQgetvalue(r, 0, 0));
    PQclear(r);
    return STX_OK;
}

int stx_archive_schema(stx_archive *a, int *version)
{
    if (!a || !version) return STX_EINVAL;
    int rc = stx_archive_ready(a);
    return rc == STX_OK ? schema_version(a, version) : rc;
}

int stx_archive_check_schema(stx_archive *a)
{
    int v, rc = schema_version(a, &v);
    if (rc != STX_OK) return rc;
    if (v == STX_ARCHIVE_SCHEMA_VERSION) return STX_OK;
    if (v == 0)
        return stx_archive_fail(a, STX_ESCHEMA,
                                "archive: the archive schema is not installed in this database: "
                                "run stx archive --init (stx_archive_migrate())");
    if (v < STX_ARCHIVE_SCHEMA_VERSION)
        return stx_archive_fail(a, STX_ESCHEMA,
                                "archive: the archive schema is at version %d, this library needs "
                                "%d: run stx archive --init to migrate",
                                v, STX_ARCHIVE_SCHEMA_VERSION);
    return stx_archive_fail(a, STX_ESCHEMA,
                            "archive: the archive schema is at version %d, newer than this "
                            "library's %d: upgrade streamtx",
                            v, STX_ARCHIVE_SCHEMA_VERSION);
}

int stx_archive_migrate(stx_archive *a, int *from)
{
    if (!a) return STX_EINVAL;
    int rc = stx_archive_ready(a);
    if (rc != STX_OK) return rc;
    int found = -1;
    for (;;) {
        rc = pg_exec(a, "migrate", "BEGIN", 0, NULL, 0, PGRES_COMMAND_OK, NULL);
        if (rc == STX_OK)
            rc = pg_exec(a, "migrate", "SELECT pg_advisory_xact_lock(" MIGRATE_LOCK ")", 0, NULL, 0,
                         PGRES_TUPLES_OK, NULL);
        if (rc == STX_OK)
            rc = pg_exec(a, "migrate",
                         "CREATE TABLE IF NOT EXISTS stx_archive_version (version int PRIMARY KEY,"
                         " applied_at timestamptz NOT NULL DEFAULT now())",
                         0, NULL, 0, PGRES_COMMAND_OK, NULL);
        int v = 0;
        if (rc == STX_OK) rc = schema_version(a, &v);
        if (rc == STX_OK && found < 0) found = v;
        if (rc == STX_OK && v > STX_ARCHIVE_SCHEMA_VERSION)
            rc = stx_archive_check_schema(a);
        if (rc == STX_OK && v == STX_ARCHIVE_SCHEMA_VERSION) {
            rc = pg_exec(a, "migrate", "COMMIT", 0, NULL, 0, PGRES_COMMAND_OK, NULL);
            break;
        }
        if (rc == STX_OK) {
            PGresult *r = PQexec(a->pg, migrations[v]);
            if (!r || PQresultStatus(r) != PGRES_COMMAND_OK) rc = stx_archive_pg_fail(a, r, "migrate");
            PQclear(r);
        }
        if (rc == STX_OK) {
            char ver[16];
            snprintf(ver, sizeof ver, "%d", v + 1);
            const char *p[] = {ver};
            rc = pg_exec(a, "migrate", "INSERT INTO stx_archive_version (version) VALUES ($1)", 1,
                         p, 0, PGRES_COMMAND_OK, NULL);
        }
        if (rc == STX_OK) rc = pg_exec(a, "migrate", "COMMIT", 0, NULL, 0, PGRES_COMMAND_OK, NULL);
        if (rc != STX_OK) break;
    }
    if (rc != STX_OK) pg_rollback(a);
    if (from) *from = found < 0 ? 0 : found;
    return rc;
}

/* ---- ids ---------------------------------------------------------------- */

static int parse_u64(const char *s, size_t n, uint64_t *out)
{
    if (n == 0 || n > 20) return -1;
    uint64_t v = 0;
    for (size_t i = 0; i < n; i++) {
        if (s[i] < '0' || s[i] > '9') return -1;
        uint64_t d = (uint64_t)(s[i] - '0');
        if (v > (UINT64_MAX - d) / 10) return -1;
        v = v * 10 + d;
    }
    *out = v;
    return 0;
}

int stx_archive_parse_id(const char *s, uint64_t *ms, uint64_t *seq)
{
    const char *dash = strchr(s, '-');
    if (!dash) {
        *seq = 0;
        return parse_u64(s, strlen(s), ms);
    }
    if (parse_u64(s, (size_t)(dash - s), ms) != 0) return -1;
    return parse_u64(dash + 1, strlen(dash + 1), seq);
}

int stx_archive_offset(stx_archive *a, const char *stream, uint64_t *ms, uint64_t *seq,
                       long long *archived, int *found)
{
    const char *p[] = {stream};
    PGresult *r;
    *ms = *seq = 0;
    if (archived) *archived = 0;
    if (found) *found = 0;
    int rc = pg_exec(a, "offset", "SELECT ms, seq, archived FROM stx_archive_offsets WHERE stream = $1",
                     1, p, 0, PGRES_TUPLES_OK, &r);
    if (rc != STX_OK) return rc;
    if (PQntuples(r) == 1) {
        parse_u64(PQgetvalue(r, 0, 0), strlen(PQgetvalue(r, 0, 0)), ms);
        parse_u64(PQgetvalue(r, 0, 1), strlen(PQgetvalue(r, 0, 1)), seq);
        if (archived) *archived = atoll(PQgetvalue(r, 0, 2));
        if (found) *found = 1;
    }
    PQclear(r);
    return STX_OK;
}

/* ---- Redis -------------------------------------------------------------- */

/* One command; an error reply is a failure (its text in the message),
 * NOGROUP is STX_ENOGROUP. */
static int rcall(stx_archive *a, stx_client *c, const char *what, size_t argc, const char **argv,
                 stx_reply **out)
{
    stx_reply *r;
    *out = NULL;
    int rc = stx_client_call(c, argc, argv, NULL, &r);
    if (rc != STX_OK)
        return stx_archive_fail(a, rc, "archive: %s: %s", what, stx_client_errmsg(c));
    if (stx_reply_type_of(r) == STX_REPLY_ERROR) {
        const char *e = stx_reply_string(r, NULL);
        rc = strncmp(e, "NOGROUP", 7) == 0 ? STX_ENOGROUP
             : strncmp(e, "WRONGTYPE", 9) == 0 ? STX_EWRONGTYPE
             : strncmp(e, "LOADING", 7) == 0 || strncmp(e, "BUSY", 4) == 0 ||
                     strncmp(e, "OOM", 3) == 0 || strncmp(e, "READONLY", 8) == 0
                 ? STX_EREDIS_REFUSED
                 : STX_EREDIS;
        stx_archive_fail(a, rc, "archive: %s: %.400s", what, e);
        stx_reply_free(r);
        return rc;
    }
    *out = r;
    return STX_OK;
}

static void fmt_id(char *buf, size_t cap, uint64_t ms, uint64_t seq)
{
    snprintf(buf, cap, "%llu-%llu", (unsigned long long)ms, (unsigned long long)seq);
}

/* XACK the ids (strings inside replies the caller owns), in chunks. */
static int ack_ids(stx_archive *a, stx_client *c, const char *stream, const char **ids, size_t n)
{
    enum { CHUNK = 1000 };
    const char *argv[3 + CHUNK];
    argv[0] = "XACK";
    argv[1] = stream;
    argv[2] = STX_ARCHIVE_GROUP;
    for (size_t i = 0; i < n; i += CHUNK) {
        size_t k = n - i < CHUNK ? n - i : CHUNK;
        memcpy(argv + 3, ids + i, k * sizeof *ids);
        stx_reply *r;
        int rc = rcall(a, c, "XACK", 3 + k, argv, &r);
        if (rc != STX_OK) return rc;
        stx_reply_free(r);
    }
    return STX_OK;
}

/* SYNC (see the top of the file). */
static int sync_stream(stx_archive *a, stx_client *c, const char *stream)
{
    int rc = stx_archive_check_schema(a);
    if (rc != STX_OK) return rc;
    if ((rc = stx_archive_offset(a, stream, &a->off_ms, &a->off_seq, NULL, NULL)) != STX_OK)
        return rc;
    char off[48];
    fmt_id(off, sizeof off, a->off_ms, a->off_seq);
    stx_reply *r;
    const char *create[] = {"XGROUP", "CREATE", stream, STX_ARCHIVE_GROUP, "0", "MKSTREAM"};
    rc = stx_client_call(c, 6, create, NULL, &r);
    if (rc != STX_OK)
        return stx_archive_fail(a, rc, "archive: XGROUP CREATE: %s", stx_client_errmsg(c));
    if (stx_reply_type_of(r) == STX_REPLY_ERROR && strncmp(stx_reply_string(r, NULL), "BUSYGROUP", 9)) {
        rc = stx_archive_fail(a, STX_EREDIS, "archive: XGROUP CREATE: %.400s",
                              stx_reply_string(r, NULL));
        stx_reply_free(r);
        return rc;
    }
    stx_reply_free(r);
    const char *setid[] = {"XGROUP", "SETID", stream, STX_ARCHIVE_GROUP, off};
    if ((rc = rcall(a, c, "XGROUP SETID", 5, setid, &r)) != STX_OK) return rc;
    stx_reply_free(r);
    /* Entries PostgreSQL holds but Redis still counts as pending. */
    for (;;) {
        const char *xp[] = {"XPENDING", stream, STX_ARCHIVE_GROUP, "-", off, "1000"};
        if ((rc = rcall(a, c, "XPENDING", 6, xp, &r)) != STX_OK) return rc;
        size_t n = stx_reply_count(r);
        const char **ids = calloc(n ? n : 1, sizeof *ids);
        if (!ids) {
            stx_reply_free(r);
            return stx_archive_fail(a, STX_ENOMEM, "archive: out of memory");
        }
        for (size_t i = 0; i < n; i++) ids[i] = stx_reply_string(stx_reply_at(stx_reply_at(r, i), 0), NULL);
        for (size_t i = 0; i < n; i++)
            if (!ids[i]) rc = stx_archive_fail(a, STX_EREDIS, "archive: unexpected XPENDING reply");
        if (rc == STX_OK && n) rc = ack_ids(a, c, stream, ids, n);
        free(ids);
        stx_reply_free(r);
        if (rc != STX_OK) return rc;
        if (n < 1000) break;
    }
    if (!a->stream || strcmp(a->stream, stream) != 0) {
        free(a->stream);
        if (!(a->stream = strdup(stream))) return stx_archive_fail(a, STX_ENOMEM, "archive: out of memory");
    }
    snprintf(a->stats.offset, sizeof a->stats.offset, "%s", off);
    a->synced = 1;
    return STX_OK;
}

/* ---- COPY (binary) ------------------------------------------------------ */

static int buf_reserve(stx_archive *a, size_t more)
{
    if (a->len + more <= a->cap) return 0;
    size_t cap = a->cap ? a->cap : 65536;
    while (cap < a->len + more) {
        if (cap > SIZE_MAX / 2) return -1;
        cap *= 2;
    }
    unsigned char *b = realloc(a->buf, cap);
    if (!b) return -1;
    a->buf = b;
    a->cap = cap;
    return 0;
}

static void put32(stx_archive *a, uint32_t v)
{
    v = htonl(v);
    memcpy(a->buf + a->len, &v, 4);
    a->len += 4;
}

static void put16(stx_archive *a, uint16_t v)
{
    v = htons(v);
    memcpy(a->buf + a->len, &v, 2);
    a->len += 2;
}

static void put64(stx_archive *a, uint64_t v)
{
    put32(a, (uint32_t)(v >> 32));
    put32(a, (uint32_t)v);
}

static void put_bytes(stx_archive *a, const void *p, size_t n)
{
    put32(a, (uint32_t)n);
    if (n) memcpy(a->buf + a->len, p, n);
    a->len += n;
}

/* Text PostgreSQL accepts: valid UTF-8 without NUL (a server in UTF-8). */
static int is_text(const char *s, size_t n)
{
    for (size_t i = 0; i < n;) {
        unsigned char b = (unsigned char)s[i];
        size_t k = b < 0x80 ? 1 : (b >> 5) == 6 ? 2 : (b >> 4) == 14 ? 3 : (b >> 3) == 30 ? 4 : 0;
        if (b == 0 || k == 0 || i + k > n || (k == 2 && b < 0xc2)) return 0;
        for (size_t j = 1; j < k; j++)
            if (((unsigned char)s[i + j] >> 6) != 2) return 0;
        i += k;
    }
    return 1;
}

static int is_integer(const char *s, size_t n)
{
    if (n == 0 || n > 18) return 0;
    for (size_t i = 0; i < n; i++)
        if (s[i] < '0' || s[i] > '9') return 0;
    return 1;
}

/* One bytea[] of the fields' names (odd 0) or values (odd 1). */
static void put_array(stx_archive *a, const stx_reply *fields, size_t npairs, int odd)
{
    size_t body = 20;
    for (size_t i = 0; i < npairs; i++) {
        size_t n;
        stx_reply_string(stx_reply_at(fields, 2 * i + (size_t)odd), &n);
        body += 4 + n;
    }
    put32(a, (uint32_t)body);
    put32(a, 1);          /* dimensions */
    put32(a, 0);          /* no NULLs */
    put32(a, BYTEA_OID);
    put32(a, (uint32_t)npairs);
    put32(a, 1);          /* lower bound */
    for (size_t i = 0; i < npairs; i++) {
        size_t n;
        const char *s = stx_reply_string(stx_reply_at(fields, 2 * i + (size_t)odd), &n);
        put_bytes(a, s, n);
    }
}

/* The COPY row of one entry.  STX_OK, STX_EINVAL (id beyond bigint, field
 * too large for COPY), STX_ENOMEM, STX_EREDIS (malformed reply). */
static int put_row(stx_archive *a, const char *stream, uint64_t ms, uint64_t seq,
                   const stx_reply *fields)
{
    size_t nf = stx_reply_count(fields);
    if (stx_reply_type_of(fields) != STX_REPLY_ARRAY || nf == 0 || nf % 2)
        return stx_archive_fail(a, STX_EREDIS, "archive: entry %llu-%llu: fields are not pairs",
                                (unsigned long long)ms, (unsigned long long)seq);
    if (ms > INT64_MAX || seq > INT64_MAX)
        return stx_archive_fail(a, STX_EINVAL,
                                "archive: entry %llu-%llu: id beyond 2^63-1 does not fit bigint",
                                (unsigned long long)ms, (unsigned long long)seq);
    size_t need = 2 + 4 + strlen(stream) + 2 * 12 + 2 * (24 + 4 * nf) + 3 * 4 + 8;
    const char *type = NULL, *key = NULL, *created = NULL;
    size_t type_n = 0, key_n = 0, created_n = 0;
    for (size_t i = 0; i < nf; i++) {
        size_t n;
        const char *s = stx_reply_string(stx_reply_at(fields, i), &n);
        if (!s) return stx_archive_fail(a, STX_EREDIS, "archive: a field is not a string");
        need += n;
        if (i % 2) continue;
        size_t vn;
        const char *v = stx_reply_string(stx_reply_at(fields, i + 1), &vn);
        if (!v) return stx_archive_fail(a, STX_EREDIS, "archive: a field is not a string");
        if (!type && n == 4 && memcmp(s, STX_FIELD_TYPE, 4) == 0) type = v, type_n = vn;
        if (!key && n == 3 && memcmp(s, STX_FIELD_KEY, 3) == 0) key = v, key_n = vn;
        if (!created && n == 10 && memcmp(s, STX_FIELD_CREATED_AT, 10) == 0) created = v, created_n = vn;
    }
    if (need > 0x3fffffff)
        return stx_archive_fail(a, STX_EINVAL, "archive: entry %llu-%llu: larger than 1 GiB",
                                (unsigned long long)ms, (unsigned long long)seq);
    need += type_n + key_n;
    if (buf_reserve(a, need) != 0) return stx_archive_fail(a, STX_ENOMEM, "archive: out of memory");
    put16(a, 8);
    put_bytes(a, stream, strlen(stream));
    put32(a, 8);
    put64(a, ms);
    put32(a, 8);
    put64(a, seq);
    put_array(a, fields, nf / 2, 0);
    put_array(a, fields, nf / 2, 1);
    if (type && is_text(type, type_n)) put_bytes(a, type, type_n);
    else put32(a, UINT32_MAX);
    if (key && is_text(key, key_n)) put_bytes(a, key, key_n);
    else put32(a, UINT32_MAX);
    if (created && is_integer(created, created_n)) {
        put32(a, 8);
        put64(a, (uint64_t)atoll(created));
    } else {
        put32(a, UINT32_MAX);
    }
    return STX_OK;
}

static uint64_t now_us(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (uint64_t)ts.tv_sec * 1000000u + (uint64_t)ts.tv_nsec / 1000u;
}

/* WRITE: the batch in a->buf (n rows, last id last_ms-last_seq) and the
 * offset in one transaction.  1 when another archiver moved the offset
 * (nothing written), else STX_OK or an error. */
static int write_batch(stx_archive *a, const char *stream, size_t n, uint64_t last_ms,
                       uint64_t last_seq)
{
    char oms[24], oseq[24], count[24];
    const char *ins[] = {stream};
    PGresult *r = NULL;
    int rc = pg_exec(a, "BEGIN", "BEGIN", 0, NULL, 0, PGRES_COMMAND_OK, NULL);
    if (rc == STX_OK)
        rc = pg_exec(a, "offset",
                     "INSERT INTO stx_archive_offsets (stream, ms, seq) VALUES ($1, 0, 0)"
                     " ON CONFLICT (stream) DO NOTHING",
                     1, ins, 0, PGRES_COMMAND_OK, NULL);
    if (rc == STX_OK)
        rc = pg_exec(a, "offset", "SELECT ms, seq FROM stx_archive_offsets WHERE stream = $1 FOR UPDATE",
                     1, ins, 0, PGRES_TUPLES_OK, &r);
    if (rc == STX_OK) {
        uint64_t ms = 0, seq = 0;
        int ok = PQntuples(r) == 1 &&
                 parse_u64(PQgetvalue(r, 0, 0), strlen(PQgetvalue(r, 0, 0)), &ms) == 0 &&
                 parse_u64(PQgetvalue(r, 0, 1), strlen(PQgetvalue(r, 0, 1)), &seq) == 0;
        PQclear(r);
        if (!ok || ms != a->off_ms || seq != a->off_seq) {
            pg_rollback(a);
            a->synced = 0;
            return 1;
        }
    }
    if (rc == STX_OK)
        rc = pg_exec(a, "COPY",
                     "COPY stx_archive_entries (stream, ms, seq, names, vals, type, key, created_at)"
                     " FROM STDIN (FORMAT binary)",
                     0, NULL, 0, PGRES_COPY_IN, NULL);
    if (rc == STX_OK) {
        static const unsigned char header[19] = {'P', 'G', 'C', 'O', 'P', 'Y', '\n', 0xff, '\r',
                                                 '\n', 0};
        put16(a, UINT16_MAX); /* trailer (room was reserved) */
        int ok = PQputCopyData(a->pg, (const char *)header, sizeof header) == 1;
        /* libpq buffers; send in pieces so one huge batch is not one call. */
        for (size_t off = 0; ok && off < a->len; off += 1 << 20) {
            size_t k = a->len - off < (1u << 20) ? a->len - off : 1u << 20;
            ok = PQputCopyData(a->pg, (const char *)a->buf + off, (int)k) == 1;
        }
        ok = PQputCopyEnd(a->pg, ok ? NULL : "streamtx: COPY data not sent") == 1 && ok;
        r = PQgetResult(a->pg);
        if (!ok || !r || PQresultStatus(r) != PGRES_COMMAND_OK) rc = stx_archive_pg_fail(a, r, "COPY");
        PQclear(r);
        while ((r = PQgetResult(a->pg)) != NULL) PQclear(r);
    }
    if (rc == STX_OK) {
        snprintf(oms, sizeof oms, "%llu", (unsigned long long)last_ms);
        snprintf(oseq, sizeof oseq, "%llu", (unsigned long long)last_seq);
        snprintf(count, sizeof count, "%zu", n);
        const char *p[] = {stream, oms, oseq, count};
        rc = pg_exec(a, "offset",
                     "UPDATE stx_archive_offsets SET ms = $2, seq = $3, archived = archived + $4,"
                     " updated_at = now() WHERE stream = $1",
                     4, p, 0, PGRES_COMMAND_OK, NULL);
    }
    if (rc == STX_OK) rc = pg_exec(a, "COMMIT", "COMMIT", 0, NULL, 0, PGRES_COMMAND_OK, NULL);
    if (rc != STX_OK) {
        pg_rollback(a);
        a->synced = 0; /* a lost COMMIT is in doubt: SYNC reads the truth */
    }
    return rc;
}

int stx_archive_step(stx_archive *a, stx_client *c, const char *stream, size_t batch,
                     long block_ms, size_t *archived)
{
    if (archived) *archived = 0;
    if (!a) return STX_EINVAL;
    if (!c || !stream || !*stream || block_ms < 0 || batch > MAX_BATCH)
        return stx_archive_fail(a, STX_EINVAL, "archive: bad arguments (stream, batch <= %d, "
                                               "block_ms >= 0)", MAX_BATCH);
    if (!batch) batch = DEFAULT_BATCH;
    int rc = stx_archive_ready(a);
    if (rc != STX_OK) return rc;
    if (a->synced && strcmp(a->stream, stream) != 0) a->synced = 0;
    if (!a->synced && (rc = sync_stream(a, c, stream)) != STX_OK) return rc;

    char count[24], block[24];
    snprintf(count, sizeof count, "%zu", batch);
    snprintf(block, sizeof block, "%ld", block_ms);
    const char *argv[] = {"XREADGROUP", "GROUP", STX_ARCHIVE_GROUP, "archiver", "COUNT", count,
                          "BLOCK", block, "STREAMS", stream, ">"};
    stx_reply *r;
    a->caught_up = 0;
    /* BLOCK 0 would wait forever: leave it out to not wait. */
    if (block_ms == 0) {
        argv[6] = "STREAMS";
        argv[7] = stream;
        argv[8] = ">";
    }
    rc = rcall(a, c, "XREADGROUP", block_ms ? 11 : 9, argv, &r);
    if (rc != STX_OK) {
        a->synced = 0;
        return rc;
    }
    const stx_reply *entries = stx_reply_at(stx_reply_at(r, 0), 1);
    size_t n = stx_reply_count(entries);
    if (n == 0) {
        stx_reply_free(r);
        a->caught_up = 1;
        return STX_OK;
    }
    const char **ids = calloc(n, sizeof *ids);
    if (!ids) {
        stx_reply_free(r);
        return stx_archive_fail(a, STX_ENOMEM, "archive: out of memory");
    }
    a->len = 0;
    size_t rows = 0;
    uint64_t last_ms = a->off_ms, last_seq = a->off_seq;
    for (size_t i = 0; rc == STX_OK && i < n; i++) {
        const stx_reply *e = stx_reply_at(entries, i);
        uint64_t ms, seq;
        ids[i] = stx_reply_string(stx_reply_at(e, 0), NULL);
        if (!ids[i] || stx_archive_parse_id(ids[i], &ms, &seq) != 0 || !strchr(ids[i], '-')) {
            rc = stx_archive_fail(a, STX_EREDIS, "archive: unexpected XREADGROUP reply");
            break;
        }
        /* After a SETID back to PostgreSQL's offset, Redis delivers from
         * there; an id at or before it is already archived. */
        if (ms < last_ms || (ms == last_ms && seq <= last_seq)) {
            a->stats.skipped++;
            continue;
        }
        rc = put_row(a, stream, ms, seq, stx_reply_at(e, 1));
        last_ms = ms;
        last_seq = seq;
        rows++;
    }
    uint64_t t0 = now_us();
    if (rc == STX_OK && rows > 0 && buf_reserve(a, 2) != 0)
        rc = stx_archive_fail(a, STX_ENOMEM, "archive: out of memory");
    if (rc == STX_OK && rows > 0) {
        rc = write_batch(a, stream, rows, last_ms, last_seq);
        if (rc == 1) { /* another archiver: SYNC again, nothing acked here */
            rc = STX_OK;
            rows = 0;
            n = 0;
        }
    }
    if (rc == STX_OK && rows > 0) {
        a->off_ms = last_ms;
        a->off_seq = last_seq;
        fmt_id(a->stats.offset, sizeof a->stats.offset, last_ms, last_seq);
        a->stats.batches++;
        a->stats.entries += rows;
        a->stats.last_batch_us = now_us() - t0;
        if (archived) *archived = rows;
    }
    if (rc == STX_OK && n > 0 && a->synced && ack_ids(a, c, stream, ids, n) != STX_OK)
        a->synced = 0; /* the rows are in: the next SYNC acks them */
    free(ids);
    stx_reply_free(r);
    if (rc != STX_OK) a->synced = 0;
    return rc;
}

void stx_archive_set_progress(stx_archive *a, void (*fn)(const stx_archive_stats *st, void *ud),
                              void *ud, long interval_ms)
{
    if (!a) return;
    a->progress = interval_ms > 0 ? fn : NULL;
    a->progress_ud = ud;
    a->progress_ms = interval_ms;
    a->progress_at_us = 0;
}

/* Which entries are behind: the archive group's lag plus its pending. */
static long long behind_of(stx_archive *a, stx_client *c, const char *stream);

static void progress_tick(stx_archive *a, stx_client *c, const char *stream)
{
    if (!a->progress) return;
    uint64_t now = now_us();
    if (a->progress_at_us == 0) a->progress_at_us = now + (uint64_t)a->progress_ms * 1000u;
    if (now < a->progress_at_us) return;
    a->progress_at_us = now + (uint64_t)a->progress_ms * 1000u;
    long long b = behind_of(a, c, stream);
    a->stats.behind = b < 0 ? -1 : b;
    a->progress(&a->stats, a->progress_ud);
}

static int retriable(int rc)
{
    return rc == STX_ECONN || rc == STX_ETIMEOUT || rc == STX_EREDIS_REFUSED || rc == STX_ENOGROUP;
}

int stx_archive_run(stx_archive *a, stx_client *c, const char *stream, size_t batch, int once)
{
    if (!a) return STX_EINVAL;
    long backoff = BACKOFF_MIN_MS;
    while (!atomic_load(&a->stop)) {
        size_t n;
        int rc = stx_archive_step(a, c, stream, batch, once ? 0 : 1000, &n);
        progress_tick(a, c, stream);
        if (rc == STX_OK) {
            backoff = BACKOFF_MIN_MS;
            if (once && a->caught_up) return STX_OK;
            continue;
        }
        a->stats.errors++;
        if (!retriable(rc)) return rc;
        for (long slept = 0; slept < backoff && !atomic_load(&a->stop); slept += 50) {
            struct timespec ts = {0, 50 * 1000000L};
            nanosleep(&ts, NULL);
            progress_tick(a, c, stream);
        }
        backoff = backoff * 2 > BACKOFF_MAX_MS ? BACKOFF_MAX_MS : backoff * 2;
    }
    return STX_OK;
}

int stx_archive_lag_get(stx_archive *a, stx_client *c, const char *stream, stx_archive_lag *out)
{
    if (!a || !c || !stream || !out) return a ? stx_archive_fail(a, STX_EINVAL, "lag: bad arguments")
                                              : STX_EINVAL;
    memset(out, 0, sizeof *out);
    out->behind = -1;
    int rc = stx_archive_ready(a);
    if (rc == STX_OK) rc = stx_archive_check_schema(a);
    uint64_t ms, seq;
    if (rc == STX_OK) rc = stx_archive_offset(a, stream, &ms, &seq, &out->archived, NULL);
    if (rc != STX_OK) return rc;
    fmt_id(out->offset, sizeof out->offset, ms, seq);
    long long b = behind_of(a, c, stream);
    if (b == -2) return stx_archive_fail(a, STX_ECONN, "lag: %s", stx_client_errmsg(c));
    out->has_group = b != -3;
    out->behind = b < 0 ? -1 : b;
    return STX_OK;
}

/* -1: Redis cannot tell; -2: the call failed; -3: no archive group. */
static long long behind_of(stx_archive *a, stx_client *c, const char *stream)
{
    (void)a;
    const char *argv[] = {"XINFO", "GROUPS", stream};
    stx_reply *r;
    if (stx_client_call(c, 3, argv, NULL, &r) != STX_OK) return -2;
    long long behind = -3;
    /* Entries after the offset: the group's lag (not delivered) plus its
     * pending entries (delivered, not yet committed and acked). */
    for (size_t i = 0; i < stx_reply_count(r); i++) {
        const stx_reply *g = stx_reply_at(r, i);
        int ours = 0;
        long long lag = -1, pending = 0;
        for (size_t j = 0; j + 1 < stx_reply_count(g); j += 2) {
            const char *k = stx_reply_string(stx_reply_at(g, j), NULL);
            const stx_reply *v = stx_reply_at(g, j + 1);
            if (!k) continue;
            if (strcmp(k, "name") == 0 && stx_reply_string(v, NULL) &&
                strcmp(stx_reply_string(v, NULL), STX_ARCHIVE_GROUP) == 0)
                ours = 1;
            if (strcmp(k, "lag") == 0 && stx_reply_type_of(v) == STX_REPLY_INTEGER)
                lag = stx_reply_integer(v);
            if (strcmp(k, "pending") == 0) pending = stx_reply_integer(v);
        }
        if (ours) behind = lag < 0 ? -1 : lag + pending;
    }
    stx_reply_free(r);
    return behind;
}
