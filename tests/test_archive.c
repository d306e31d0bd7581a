/* The archive: exactly once into a real PostgreSQL (initdb in a temporary
 * directory, pg_ctl on a free loopback port), through archiver kills and a
 * PostgreSQL restart; trim --archived racing the archiver; reads that join
 * the archive and Redis at a seam.
 *
 * STX_ARCHIVE_LONG=1 runs the kill loop with 200,000 entries and 100 kills
 * (README: Archive). */
#include <arpa/inet.h>
#include <criterion/criterion.h>
#include <errno.h>
#include <fcntl.h>
#include <stdarg.h>
#include <libpq-fe.h>
#include <netinet/in.h>
#include <pwd.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include "harness.h"
#include "streamtx.h"
#include "streamtx_archive.h"
#include "workload.h"

/* ---- a private PostgreSQL ---------------------------------------------- */

typedef struct test_pg {
    int port;
    char dir[256];
    char url[160];
    int running;
} test_pg;

static int pg_free_port(void)
{
    int s = socket(AF_INET, SOCK_STREAM, 0);
    struct sockaddr_in a = {.sin_family = AF_INET, .sin_addr.s_addr = htonl(INADDR_LOOPBACK)};
    socklen_t len = sizeof a;
    cr_assert(s >= 0 && bind(s, (struct sockaddr *)&a, sizeof a) == 0 &&
              getsockname(s, (struct sockaddr *)&a, &len) == 0);
    close(s);
    return ntohs(a.sin_port);
}

/* PostgreSQL refuses to run as root: then its tools run as "postgres". */
static void pg_sh(const char *fmt, ...)
{
    char cmd[1024], full[1200];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(cmd, sizeof cmd, fmt, ap);
    va_end(ap);
    if (getuid() == 0)
        snprintf(full, sizeof full, "runuser -u postgres -- %s", cmd);
    else
        snprintf(full, sizeof full, "%s", cmd);
    int rc = system(full);
    cr_assert(rc == 0, "failed (%d): %s", rc, full);
}

static void pg_start(test_pg *p)
{
    pg_sh(STX_PG_BINDIR "/pg_ctl -D %s -l %s/log -w -t 60 -o \"-p %d -c listen_addresses=127.0.0.1 "
                        "-c unix_socket_directories='' -c fsync=off -c max_connections=40\" start "
                        ">/dev/null",
          p->dir, p->dir, p->port);
    p->running = 1;
}

static void pg_init(test_pg *p)
{
    memset(p, 0, sizeof *p);
    snprintf(p->dir, sizeof p->dir, "/tmp/stx-pg-XXXXXX");
    cr_assert(mkdtemp(p->dir));
    if (getuid() == 0) {
        struct passwd *pw = getpwnam("postgres");
        cr_assert(pw, "no user postgres to run PostgreSQL as (install postgresql-15)");
        cr_assert(chown(p->dir, pw->pw_uid, pw->pw_gid) == 0);
    }
    chmod(p->dir, 0700);
    pg_sh(STX_PG_BINDIR "/initdb -D %s -U stx --auth=trust --no-sync -E UTF8 --locale=C "
                        ">/dev/null",
          p->dir);
    p->port = pg_free_port();
    snprintf(p->url, sizeof p->url, "postgresql://stx@127.0.0.1:%d/postgres?connect_timeout=5",
             p->port);
    pg_start(p);
}

/* A crash of the server: no checkpoint, recovery from the WAL on start. */
static void pg_crash(test_pg *p)
{
    pg_sh(STX_PG_BINDIR "/pg_ctl -D %s -m immediate stop >/dev/null", p->dir);
    p->running = 0;
}

static void pg_destroy(test_pg *p)
{
    if (p->running) pg_crash(p);
    test_rmrf(p->dir);
}

static PGconn *pg_conn(const test_pg *p)
{
    PGconn *c = PQconnectdb(p->url);
    cr_assert(PQstatus(c) == CONNECTION_OK, "%s", PQerrorMessage(c));
    return c;
}

/* One value of a query (text), as a long long. */
static long long pg_ll(PGconn *c, const char *sql)
{
    PGresult *r = PQexec(c, sql);
    cr_assert(PQresultStatus(r) == PGRES_TUPLES_OK && PQntuples(r) == 1, "%s: %s", sql,
              PQresultErrorMessage(r));
    long long v = atoll(PQgetvalue(r, 0, 0));
    PQclear(r);
    return v;
}

static void pg_do(PGconn *c, const char *sql)
{
    PGresult *r = PQexec(c, sql);
    cr_assert(PQresultStatus(r) == PGRES_COMMAND_OK || PQresultStatus(r) == PGRES_TUPLES_OK,
              "%s: %s", sql, PQresultErrorMessage(r));
    PQclear(r);
}

/* ---- fixtures ----------------------------------------------------------- */

static test_redis redis;
static test_pg pg;

static void setup(void)
{
    test_redis_start(&redis, 0, NULL);
    pg_init(&pg);
}

static void teardown(void)
{
    pg_destroy(&pg);
    test_redis_stop(&redis);
}

TestSuite(archive, .init = setup, .fini = teardown, .timeout = 300);

static stx_archive *archive_open(void)
{
    stx_archive *a;
    int rc = stx_archive_open(&a, pg.url);
    cr_assert_eq(rc, STX_OK, "%s", stx_archive_errmsg(a));
    return a;
}

static void migrate(void)
{
    stx_archive *a = archive_open();
    int from = -1;
    cr_assert_eq(stx_archive_migrate(a, &from), STX_OK, "%s", stx_archive_errmsg(a));
    stx_archive_close(a);
}

/* ---- entries whose bytes follow from their index ----------------------- */

#define BIG_EVERY 997
#define BIG_BYTES (256 * 1024 + 3)

/* The fields of entry i: "i" (decimal), "bin" (bytes with NULs), "type",
 * and every BIG_EVERY-th a large value. */
typedef struct gen {
    char i[24], bin[16], type[24];
    char *big;
    stx_field f[4];
    size_t n;
} gen;

static void gen_make(gen *g, long i)
{
    memset(g, 0, sizeof *g);
    snprintf(g->i, sizeof g->i, "%ld", i);
    for (int k = 0; k < 16; k++) g->bin[k] = (char)((i * 31 + k * 7) % 5 == 0 ? 0 : (i + k) & 0xff);
    snprintf(g->type, sizeof g->type, "item.%ld", i % 7);
    g->f[0] = (stx_field){"i", 1, g->i, strlen(g->i)};
    g->f[1] = (stx_field){"bin\0x", 5, g->bin, sizeof g->bin};
    g->f[2] = (stx_field){"type", 4, g->type, strlen(g->type)};
    g->n = 3;
    if (i % BIG_EVERY == 0) {
        g->big = malloc(BIG_BYTES);
        cr_assert(g->big);
        for (size_t k = 0; k < BIG_BYTES; k++) g->big[k] = (char)((k * 13 + (size_t)i) & 0xff);
        g->f[3] = (stx_field){"big", 3, g->big, BIG_BYTES};
        g->n = 4;
    }
}

static void gen_free(gen *g)
{
    free(g->big);
}

/* Produce entries [from, to) with stx_produce_batch, 100 at a time. */
static void produce_range(stx_client *c, const char *stream, long from, long to)
{
    enum { CHUNK = 100 };
    for (long i = from; i < to; i += CHUNK) {
        long n = to - i < CHUNK ? to - i : CHUNK;
        gen g[CHUNK];
        stx_produce_msg m[CHUNK];
        stx_produce_result res[CHUNK];
        for (long k = 0; k < n; k++) {
            gen_make(&g[k], i + k);
            m[k] = (stx_produce_msg){g[k].f, g[k].n, NULL};
        }
        cr_assert_eq(stx_produce_batch(c, stream, m, (size_t)n, NULL, res), STX_OK, "%s",
                     stx_client_errmsg(c));
        for (long k = 0; k < n; k++) gen_free(&g[k]);
    }
}

/* The entry's fields are exactly those of its index. */
static void check_msg(const stx_msg *m, long expect_i)
{
    gen g;
    gen_make(&g, expect_i);
    cr_assert_eq(stx_msg_field_count(m), g.n, "entry %s (index %ld): %zu fields, expected %zu", stx_msg_id(m), expect_i, stx_msg_field_count(m), g.n);
    for (size_t k = 0; k < g.n; k++) {
        const char *name, *value;
        size_t nl, vl;
        cr_assert_eq(stx_msg_field(m, k, &name, &nl, &value, &vl), STX_OK);
        cr_assert(nl == g.f[k].name_len && memcmp(name, g.f[k].name, nl) == 0);
        cr_assert(vl == g.f[k].value_len && memcmp(value, g.f[k].value, vl) == 0,
                  "entry %s field %zu differs", stx_msg_id(m), k);
    }
    gen_free(&g);
}

/* Every archived row of stream is byte for byte the entry of its index,
 * the indexes are 0..n-1 in id order, each once (checked in SQL on the
 * stored bytes, not through the library's reader). */
static void check_archive(PGconn *c, const char *stream, long n, const char *last_id)
{
    const char *p[] = {stream};
    PGresult *r = PQexecParams(c,
                               "SELECT ms, seq, cardinality(names),"
                               " encode((SELECT string_agg(int4send(length(x)) || x, ''::bytea ORDER BY o)"
                               " FROM unnest(names || vals) WITH ORDINALITY t(x, o)), 'hex'), type"
                               " FROM stx_archive_entries WHERE stream = $1 ORDER BY ms, seq",
                               1, NULL, p, NULL, NULL, 0);
    cr_assert_eq(PQresultStatus(r), PGRES_TUPLES_OK, "%s", PQresultErrorMessage(r));
    cr_assert_eq(PQntuples(r), n, "rows %d, expected %ld", PQntuples(r), n);
    char *hex = malloc(2 * (BIG_BYTES + 4096));
    cr_assert(hex);
    for (long i = 0; i < n; i++) {
        gen g;
        gen_make(&g, i);
        size_t h = 0;
        static const char digits[] = "0123456789abcdef";
        for (int part = 0; part < 2; part++)
            for (size_t k = 0; k < g.n; k++) {
                const char *s = part ? g.f[k].value : g.f[k].name;
                size_t len = part ? g.f[k].value_len : g.f[k].name_len;
                unsigned char l[4] = {(unsigned char)(len >> 24), (unsigned char)(len >> 16),
                                      (unsigned char)(len >> 8), (unsigned char)len};
                for (int b = 0; b < 4; b++) {
                    hex[h++] = digits[l[b] >> 4];
                    hex[h++] = digits[l[b] & 15];
                }
                for (size_t b = 0; b < len; b++) {
                    hex[h++] = digits[(unsigned char)s[b] >> 4];
                    hex[h++] = digits[(unsigned char)s[b] & 15];
                }
            }
        hex[h] = '\0';
        cr_assert_eq(atol(PQgetvalue(r, (int)i, 2)), (long)g.n, "row %ld: field count", i);
        cr_assert(strcmp(PQgetvalue(r, (int)i, 3), hex) == 0, "row %ld (%s-%s): bytes differ", i,
                  PQgetvalue(r, (int)i, 0), PQgetvalue(r, (int)i, 1));
        cr_assert_str_eq(PQgetvalue(r, (int)i, 4), g.type);
        gen_free(&g);
    }
    free(hex);
    if (n > 0) {
        char last[64];
        snprintf(last, sizeof last, "%s-%s", PQgetvalue(r, (int)n - 1, 0), PQgetvalue(r, (int)n - 1, 1));
        cr_assert_str_eq(last, last_id);
    }
    PQclear(r);
    /* The offset is the last row, and the count was added once per row. */
    r = PQexecParams(c, "SELECT ms || '-' || seq, archived FROM stx_archive_offsets WHERE stream = $1",
                     1, NULL, p, NULL, NULL, 0);
    cr_assert_eq(PQntuples(r), 1);
    cr_assert_str_eq(PQgetvalue(r, 0, 0), last_id);
    cr_assert_eq(atol(PQgetvalue(r, 0, 1)), n);
    PQclear(r);
}

static void last_id(redisContext *rc, const char *stream, char *out, size_t cap)
{
    redisReply *r = test_cmd(rc, "XREVRANGE %s + - COUNT 1", stream);
    cr_assert(r->elements == 1);
    snprintf(out, cap, "%s", r->element[0]->element[0]->str);
    freeReplyObject(r);
}

/* ---- the stx tool as a child -------------------------------------------- */

static pid_t spawn_stx(const char *const *args)
{
    pid_t pid = fork();
    cr_assert(pid >= 0);
    if (pid == 0) {
        const char *argv[32];
        size_t n = 0;
        argv[n++] = STX_CLI_PATH;
        argv[n++] = "--url";
        argv[n++] = redis.url;
        for (size_t i = 0; args[i] && n < 31; i++) argv[n++] = args[i];
        argv[n] = NULL;
        int null = open("/dev/null", O_WRONLY);
        dup2(null, 1);
        execv(STX_CLI_PATH, (char *const *)argv);
        _exit(127);
    }
    return pid;
}

static int wait_exit(pid_t pid)
{
    int st;
    cr_assert_eq(waitpid(pid, &st, 0), pid);
    return WIFEXITED(st) ? WEXITSTATUS(st) : 128 + WTERMSIG(st);
}

/* ---- tests -------------------------------------------------------------- */

Test(archive, schema_is_explicit_and_versioned)
{
    char stream[64];
    test_unique("schema", stream, sizeof stream);
    stx_client *c = test_client(&redis);
    produce_range(c, stream, 0, 3);
    stx_archive *a = archive_open();
    int v = -1;
    cr_assert_eq(stx_archive_schema(a, &v), STX_OK);
    cr_assert_eq(v, 0);
    /* Nothing is created implicitly. */
    size_t n = 99;
    cr_assert_eq(stx_archive_step(a, c, stream, 0, 0, &n), STX_ESCHEMA);
    cr_assert(strstr(stx_archive_errmsg(a), "stx archive --init"), "%s", stx_archive_errmsg(a));
    cr_assert_eq(n, 0);
    int from = -1;
    cr_assert_eq(stx_archive_migrate(a, &from), STX_OK, "%s", stx_archive_errmsg(a));
    cr_assert_eq(from, 0);
    cr_assert_eq(stx_archive_migrate(a, &from), STX_OK);
    cr_assert_eq(from, STX_ARCHIVE_SCHEMA_VERSION);
    cr_assert_eq(stx_archive_schema(a, &v), STX_OK);
    cr_assert_eq(v, STX_ARCHIVE_SCHEMA_VERSION);
    cr_assert_eq(stx_archive_step(a, c, stream, 0, 0, &n), STX_OK, "%s", stx_archive_errmsg(a));
    cr_assert_eq(n, 3);
    /* A newer schema than the library's is refused, not used. */
    PGconn *pc = pg_conn(&pg);
    pg_do(pc, "INSERT INTO stx_archive_version (version) VALUES (99)");
    stx_archive_close(a);
    a = archive_open();
    cr_assert_eq(stx_archive_step(a, c, stream, 0, 0, &n), STX_ESCHEMA);
    cr_assert(strstr(stx_archive_errmsg(a), "newer"), "%s", stx_archive_errmsg(a));
    cr_assert_eq(stx_archive_migrate(a, NULL), STX_ESCHEMA);
    stx_archive_close(a);
    PQfinish(pc);

    /* An unknown role is an authentication failure; a closed port a
     * connection failure (retriable). */
    char url[200];
    snprintf(url, sizeof url, "postgresql://nobody@127.0.0.1:%d/postgres", pg.port);
    cr_assert_eq(stx_archive_open(&a, url), STX_EAUTH);
    cr_assert(strstr(stx_archive_errmsg(a), "nobody"), "%s", stx_archive_errmsg(a));
    stx_archive_close(a);
    snprintf(url, sizeof url, "postgresql://stx@127.0.0.1:%d/postgres", pg_free_port());
    cr_assert_eq(stx_archive_open(&a, url), STX_ECONN);
    cr_assert_eq(stx_error_class_of(STX_ECONN), STX_CLASS_RETRIABLE);
    stx_archive_close(a);
    stx_client_free(c);
}

/* The archiver is SIGKILLed again and again while entries are added, and
 * PostgreSQL crashes once in the middle: every entry ends up archived
 * once, byte for byte, and the offsets agree. */
Test(archive, kill_loop_and_postgres_restart_archive_each_entry_once)
{
    int lng = getenv("STX_ARCHIVE_LONG") && atoi(getenv("STX_ARCHIVE_LONG")) > 0;
    long total = lng ? 200000 : 20000;
    int kills = lng ? 100 : 24;
    char stream[64];
    test_unique("kills", stream, sizeof stream);
    migrate();
    stx_client *c = test_client(&redis);
    redisContext *rc = test_redis_connect(&redis);
    PGconn *pc = pg_conn(&pg);
    uint64_t seed = (uint64_t)getpid();
    long produced = total / 2;
    produce_range(c, stream, 0, produced);
    const char *args[] = {"archive", stream, "--pg", pg.url, "--batch", "300", NULL};
    int restarted = 0;
    for (int k = 0; k < kills; k++) {
        pid_t pid = spawn_stx(args);
        /* Somewhere in a batch, or between: 20 to 220 ms. */
        wl_sleep_ms(20 + (long)(wl_rand(&seed) % 200));
        if (k == kills / 2) {
            pg_crash(&pg);
            wl_sleep_ms(300);
            pg_start(&pg);
            restarted = 1;
            PQfinish(pc);
            pc = pg_conn(&pg);
            wl_sleep_ms(200);
        }
        kill(pid, SIGKILL);
        cr_assert_eq(wait_exit(pid), 128 + SIGKILL);
        long more = (total - produced) / (kills - k);
        produce_range(c, stream, produced, produced + more);
        produced += more;
    }
    cr_assert(restarted);
    produce_range(c, stream, produced, total);
    long before = pg_ll(pc, "SELECT count(*) FROM stx_archive_entries");
    cr_assert(before > 0, "the killed archivers archived nothing");
    /* How far the killed archivers got (the row count of the offset row
     * must equal the rows: each batch counted once). */
    long offset_rows = pg_ll(pc, "SELECT archived FROM stx_archive_offsets");
    fprintf(stderr, "archive kill loop: %ld entries, %d kills, 1 PostgreSQL crash; %ld archived "
                    "before the last run (offset row: %ld)\n",
            total, kills, before, offset_rows);
    /* The last run catches up and exits. */
    const char *once[] = {"archive", stream, "--pg", pg.url, "--batch", "300", "--once", NULL};
    cr_assert_eq(wait_exit(spawn_stx(once)), 0);
    char last[64];
    last_id(rc, stream, last, sizeof last);
    check_archive(pc, stream, total, last);
    /* Nothing is left pending in the archive group. */
    redisReply *r = test_cmd(rc, "XPENDING %s " STX_ARCHIVE_GROUP, stream);
    cr_assert_eq(r->element[0]->integer, 0);
    freeReplyObject(r);
    PQfinish(pc);
    redisFree(rc);
    stx_client_free(c);
}

/* Trims with --archived while the archiver runs (and is killed): no entry
 * is trimmed before it was archived, so all of them end up archived. */
Test(archive, trim_archived_racing_the_archiver_loses_nothing)
{
    char stream[64];
    test_unique("race", stream, sizeof stream);
    migrate();
    stx_client *c = test_client(&redis);
    redisContext *rc = test_redis_connect(&redis);
    stx_archive *a = archive_open();
    produce_range(c, stream, 0, 100);
    cr_assert_eq(stx_archive_run(a, c, stream, 50, 1), STX_OK, "%s", stx_archive_errmsg(a));
    uint64_t seed = (uint64_t)getpid() * 7;
    long produced = 100, trimmed = 0, total = 8000;
    const char *args[] = {"archive", stream, "--pg", pg.url, "--batch", "64", NULL};
    pid_t pid = spawn_stx(args);
    int kills = 0;
    while (produced < total) {
        long more = total - produced < 200 ? total - produced : 200;
        produce_range(c, stream, produced, produced + more);
        produced += more;
        long long deleted = 0;
        cr_assert_eq(stx_archive_trim(a, c, stream, 0, 0, &deleted), STX_OK, "%s",
                     stx_archive_errmsg(a));
        trimmed += deleted;
        if (wl_rand(&seed) % 4 == 0) {
            kill(pid, SIGKILL);
            wait_exit(pid);
            kills++;
            pid = spawn_stx(args);
        }
    }
    wl_sleep_ms(500); /* past its start: SIGTERM is a stop, not a kill */
    kill(pid, SIGTERM);
    cr_assert_eq(wait_exit(pid), 0);
    cr_assert(trimmed > 0, "the trims trimmed nothing");
    cr_assert(kills > 0);
    const char *once[] = {"archive", stream, "--pg", pg.url, "--once", NULL};
    cr_assert_eq(wait_exit(spawn_stx(once)), 0);
    PGconn *pc = pg_conn(&pg);
    char last[64];
    last_id(rc, stream, last, sizeof last);
    check_archive(pc, stream, total, last);

    /* The bound is PostgreSQL's offset, not the group's: with the group
     * moved past entries PostgreSQL does not hold, they stay. */
    long long deleted = 0;
    cr_assert_eq(stx_archive_trim(a, c, stream, 0, 0, &deleted), STX_OK);
    produce_range(c, stream, total, total + 50);
    freeReplyObject(test_cmd(rc, "XGROUP SETID %s " STX_ARCHIVE_GROUP " $", stream));
    cr_assert_eq(stx_archive_trim(a, c, stream, 0, 0, &deleted), STX_OK);
    cr_assert_eq(deleted, 0); /* all archived entries went before; the new ones stay */
    cr_assert_eq(test_cmd_int(rc, "XLEN %s", stream), 50);
    /* Nothing archived at all: refused. */
    char other[64];
    test_unique("never", other, sizeof other);
    produce_range(c, other, 0, 5);
    freeReplyObject(test_cmd(rc, "XGROUP CREATE %s g $", other));
    cr_assert_eq(stx_archive_trim(a, c, other, 0, 0, &deleted), STX_ENOTFOUND);
    cr_assert_eq(test_cmd_int(rc, "XLEN %s", other), 5);
    PQfinish(pc);
    stx_archive_close(a);
    redisFree(rc);
    stx_client_free(c);
}

/* Page through [after, to] with the archive; every index in [first, last]
 * once, in order. */
static void read_all(stx_archive *a, stx_client *c, const char *stream, const char *after,
                     const char *to, size_t page, long first, long last)
{
    char cur[64];
    snprintf(cur, sizeof cur, "%s", after);
    long next = first;
    for (;;) {
        stx_entries *e = NULL;
        int rc = stx_archive_read_range(a, c, stream, cur, to, page, &e);
        cr_assert_eq(rc, STX_OK, "page %zu cur %s to %s next %ld: %s / %s", page, cur, to ? to : "+", next, stx_archive_errmsg(a), stx_client_errmsg(c));
        size_t n = stx_entries_count(e);
        for (size_t i = 0; i < n; i++) {
            const stx_msg *m = stx_entries_at(e, i);
            size_t len;
            const char *iv = stx_msg_get(m, "i", &len);
            cr_assert(iv);
            cr_assert_eq(atol(iv), next, "entry %s: index %s, expected %ld", stx_msg_id(m), iv, next);
            check_msg(m, next);
            next++;
        }
        snprintf(cur, sizeof cur, "%s", stx_entries_last_id(e));
        stx_entries_free(e);
        if (n < page) break;
    }
    cr_assert_eq(next, last + 1, "read up to %ld, expected %ld", next - 1, last);
}

static void id_of(redisContext *rc, const char *stream, long index, char *out, size_t cap)
{
    /* Entries were produced one index per entry, in order. */
    redisReply *r = test_cmd(rc, "XRANGE %s - + COUNT %ld", stream, index + 1);
    cr_assert((long)r->elements == index + 1);
    snprintf(out, cap, "%s", r->element[index]->element[0]->str);
    freeReplyObject(r);
}

/* First part only in PostgreSQL, last part only in Redis, an overlap in
 * both: reads see every entry once, in order, at any page size. */
Test(archive, reads_join_archive_and_redis_at_the_seam)
{
    char stream[64];
    test_unique("seam", stream, sizeof stream);
    migrate();
    stx_client *c = test_client(&redis);
    redisContext *rc = test_redis_connect(&redis);
    stx_archive *a = archive_open();
    long n = 1000;
    produce_range(c, stream, 0, n);
    char id500[64], id750[64], id800[64], id0[64];
    id_of(rc, stream, 0, id0, sizeof id0);
    id_of(rc, stream, 499, id500, sizeof id500);
    id_of(rc, stream, 749, id750, sizeof id750);
    id_of(rc, stream, 799, id800, sizeof id800);
    cr_assert_eq(stx_archive_run(a, c, stream, 128, 1), STX_OK, "%s", stx_archive_errmsg(a));
    /* PostgreSQL keeps 0..749 only (as if the archiver were behind). */
    PGconn *pc = pg_conn(&pg);
    uint64_t ms, seq;
    sscanf(id750, "%lu-%lu", &ms, &seq);
    char sql[512];
    snprintf(sql, sizeof sql, "DELETE FROM stx_archive_entries WHERE (ms, seq) > (%lu, %lu)", ms, seq);
    pg_do(pc, sql);
    snprintf(sql, sizeof sql, "UPDATE stx_archive_offsets SET ms = %lu, seq = %lu, archived = 750", ms, seq);
    pg_do(pc, sql);
    /* Redis keeps 500..999 only. */
    long long deleted = 0;
    cr_assert_eq(stx_trim_safe_bounded(c, stream, 0, 0, id500, &deleted), STX_OK);
    cr_assert_eq(deleted, 500);

    /* Without the archive the history is gone; with it, it is whole. */
    stx_entries *e = NULL;
    cr_assert_eq(stx_read_range(c, stream, "0", NULL, 10, &e), STX_EWINDOW_EXPIRED);
    cr_assert_eq(stx_archive_read_range(NULL, c, stream, "0", NULL, 10, &e), STX_EWINDOW_EXPIRED);
    size_t pages[] = {1, 7, 100, 251, 1000, 5000};
    for (size_t p = 0; p < sizeof pages / sizeof pages[0]; p++)
        read_all(a, c, stream, "0", NULL, pages[p], 0, n - 1);
    /* From inside the archive, up to a bound inside the overlap and one
     * past the seam. */
    read_all(a, c, stream, id0, id750, 64, 1, 749);
    read_all(a, c, stream, id0, id800, 64, 1, 799);
    /* From inside Redis: Redis alone answers. */
    read_all(a, c, stream, id800, NULL, 64, 800, n - 1);
    /* By time: every entry's millisecond, from the first. */
    sscanf(id0, "%lu-", &ms);
    uint64_t last_ms;
    char last[64];
    last_id(rc, stream, last, sizeof last);
    sscanf(last, "%lu-", &last_ms);
    long got = 0;
    cr_assert_eq(stx_archive_read_time(a, c, stream, (int64_t)ms, (int64_t)last_ms, 5000, &e), STX_OK);
    got = (long)stx_entries_count(e);
    for (size_t i = 0; i < stx_entries_count(e); i++) check_msg(stx_entries_at(e, i), (long)i);
    stx_entries_free(e);
    cr_assert_eq(got, n);

    /* Entries neither holds: Redis trimmed past what PostgreSQL has. */
    cr_assert_eq(stx_trim_safe_bounded(c, stream, 0, 0, id800, &deleted), STX_OK);
    cr_assert_eq(deleted, 300);
    e = NULL;
    cr_assert_eq(stx_archive_read_range(a, c, stream, "0", NULL, 5000, &e), STX_EWINDOW_EXPIRED);
    cr_assert_null(e);
    /* ... but what lies wholly in one of them still reads. */
    read_all(a, c, stream, "0", id750, 100, 0, 749);
    read_all(a, c, stream, id800, NULL, 100, 800, n - 1);
    PQfinish(pc);
    stx_archive_close(a);
    redisFree(rc);
    stx_client_free(c);
}

/* stx_entries built by a caller: ids strictly rising, copies owned. */
Test(archive, entries_append_keeps_order_and_copies)
{
    stx_entries *e = NULL;
    cr_assert_eq(stx_entries_new("s", "bad", &e), STX_EINVALID_CURSOR);
    cr_assert_eq(stx_entries_new("s", "0", &e), STX_OK);
    cr_assert_str_eq(stx_entries_last_id(e), "0-0");
    char v[3] = {'a', 0, 'b'};
    stx_field f = {"k", 1, v, 3};
    cr_assert_eq(stx_entries_append(e, "5-1", &f, 1), STX_OK);
    v[0] = 'z';
    cr_assert_eq(stx_entries_append(e, "5-1", &f, 1), STX_EINVAL);
    cr_assert_eq(stx_entries_append(e, "4-9", &f, 1), STX_EINVAL);
    cr_assert_eq(stx_entries_append(e, "5-2", &f, 0), STX_EINVAL);
    cr_assert_eq(stx_entries_append(e, "x", &f, 1), STX_EINVALID_CURSOR);
    cr_assert_eq(stx_entries_append(e, "6-0", &f, 1), STX_OK);
    cr_assert_eq(stx_entries_count(e), 2);
    cr_assert_str_eq(stx_entries_last_id(e), "6-0");
    size_t len;
    const char *got = stx_msg_get(stx_entries_at(e, 0), "k", &len);
    cr_assert(len == 3 && memcmp(got, "a\0b", 3) == 0);
    cr_assert_str_eq(stx_msg_id(stx_entries_at(e, 1)), "6-0");
    cr_assert_str_eq(stx_msg_stream(stx_entries_at(e, 1)), "s");
    stx_entries_free(e);
}

/* The commands: --init, --once, --status, replay --pg, trim --archived. */
Test(archive, cli_commands)
{
    char stream[64], cmd[4096];
    test_unique("cli", stream, sizeof stream);
    stx_client *c = test_client(&redis);
    produce_range(c, stream, 0, 40);
    const char *noinit[] = {"archive", stream, "--pg", pg.url, "--once", NULL};
    cr_assert_eq(wait_exit(spawn_stx(noinit)), 1);
    const char *init[] = {"archive", "--init", "--pg", pg.url, NULL};
    cr_assert_eq(wait_exit(spawn_stx(init)), 0);
    cr_assert_eq(wait_exit(spawn_stx(noinit)), 0);
    snprintf(cmd, sizeof cmd,
             "%s --url %s trim %s --safe --archived --pg '%s' >/dev/null && "
             "test \"$(%s --url %s replay %s --pg '%s' | wc -l)\" = 40 && "
             "%s --url %s replay %s >/dev/null; test $? = 6 && "
             "%s --url %s archive %s --pg '%s' --status --json | grep -q '\"archived\":40,\"behind\":0'",
             STX_CLI_PATH, redis.url, stream, pg.url, STX_CLI_PATH, redis.url, stream, pg.url,
             STX_CLI_PATH, redis.url, stream, STX_CLI_PATH, redis.url, stream, pg.url);
    cr_assert_eq(system(cmd), 0, "%s", cmd);
    stx_client_free(c);
}

typedef struct seen_progress {
    stx_archive_stats last;
    int calls;
} seen_progress;

static void count_progress(const stx_archive_stats *st, void *ud)
{
    seen_progress *s = ud;
    s->last = *st;
    s->calls++;
}

/* PostgreSQL goes away under a running archiver: the run retries with a
 * backoff, reconnects when it is back, and archives everything once. */
Test(archive, run_reconnects_after_a_postgres_restart)
{
    char stream[64];
    test_unique("reconnect", stream, sizeof stream);
    migrate();
    stx_client *c = test_client(&redis);
    redisContext *rc = test_redis_connect(&redis);
    stx_archive *a = archive_open();
    produce_range(c, stream, 0, 500);
    size_t n = 0;
    cr_assert_eq(stx_archive_step(a, c, stream, 200, 0, &n), STX_OK, "%s", stx_archive_errmsg(a));
    cr_assert_eq(n, 200);
    pg_crash(&pg);
    cr_assert_eq(stx_archive_step(a, c, stream, 200, 0, &n), STX_ECONN);
    cr_assert_eq(stx_error_class_of(STX_ECONN), STX_CLASS_RETRIABLE);
    /* The server comes back while stx_archive_run() is retrying. */
    pid_t pid = fork();
    cr_assert(pid >= 0);
    if (pid == 0) {
        wl_sleep_ms(700);
        pg_start(&pg);
        _exit(0);
    }
    seen_progress seen;
    memset(&seen, 0, sizeof seen);
    stx_archive_set_progress(a, count_progress, &seen, 100);
    cr_assert_eq(stx_archive_run(a, c, stream, 200, 1), STX_OK, "%s", stx_archive_errmsg(a));
    cr_assert_eq(wait_exit(pid), 0);
    pg.running = 1;
    /* Live stats came while it waited for PostgreSQL (700 ms, every 100). */
    cr_assert(seen.calls >= 3, "%d progress calls", seen.calls);
    /* behind is -1 (unknown) when the last call came while PostgreSQL was
     * still away, which a loaded machine can make the last one. */
    cr_assert(seen.last.behind >= -1 && seen.last.behind <= 300, "behind %lld", seen.last.behind);
    stx_archive_stats st;
    stx_archive_stats_get(a, &st);
    cr_assert_eq(st.entries, 500);
    cr_assert(st.errors >= 1);
    cr_assert(st.pg_reconnects >= 1);
    PGconn *pc = pg_conn(&pg);
    char last[64];
    last_id(rc, stream, last, sizeof last);
    check_archive(pc, stream, 500, last);
    PQfinish(pc);
    stx_archive_close(a);
    redisFree(rc);
    stx_client_free(c);
}

/* NULL in each pointer argument: an error, never a crash. */
Test(archive, misuse_is_an_error)
{
    stx_client *c = test_client(&redis);
    stx_archive *a = archive_open();
    stx_entries *e = NULL;
    stx_archive_stats st;
    memset(&st, 0xff, sizeof st);
    stx_archive_stats_get(NULL, &st);
    cr_assert_eq(st.entries, 0);
    stx_archive_stats_get(a, NULL);
    stx_archive_close(NULL);
    stx_archive_stop(NULL);
    cr_assert(stx_archive_errmsg(NULL)[0]);
    cr_assert_eq(stx_archive_open(NULL, pg.url), STX_EINVAL);
    cr_assert_eq(stx_archive_schema(NULL, &(int){0}), STX_EINVAL);
    cr_assert_eq(stx_archive_schema(a, NULL), STX_EINVAL);
    cr_assert_eq(stx_archive_migrate(NULL, NULL), STX_EINVAL);
    cr_assert_eq(stx_archive_step(NULL, c, "s", 0, 0, NULL), STX_EINVAL);
    cr_assert_eq(stx_archive_step(a, NULL, "s", 0, 0, NULL), STX_EINVAL);
    cr_assert_eq(stx_archive_step(a, c, NULL, 0, 0, NULL), STX_EINVAL);
    cr_assert_eq(stx_archive_step(a, c, "s", 0, -1, NULL), STX_EINVAL);
    cr_assert_eq(stx_archive_run(NULL, c, "s", 0, 1), STX_EINVAL);
    cr_assert_eq(stx_archive_run(a, NULL, "s", 0, 1), STX_EINVAL);
    stx_archive_lag lag;
    cr_assert_eq(stx_archive_lag_get(NULL, c, "s", &lag), STX_EINVAL);
    cr_assert_eq(stx_archive_lag_get(a, NULL, "s", &lag), STX_EINVAL);
    cr_assert_eq(stx_archive_lag_get(a, c, NULL, &lag), STX_EINVAL);
    cr_assert_eq(stx_archive_lag_get(a, c, "s", NULL), STX_EINVAL);
    cr_assert_eq(stx_archive_read_range(a, NULL, "s", "0", NULL, 0, &e), STX_EINVAL);
    cr_assert_eq(stx_archive_read_range(a, c, NULL, "0", NULL, 0, &e), STX_EINVAL);
    cr_assert_eq(stx_archive_read_range(a, c, "s", NULL, NULL, 0, &e), STX_EINVALID_CURSOR);
    cr_assert_eq(stx_archive_read_range(a, c, "s", "0", NULL, 0, NULL), STX_EINVAL);
    cr_assert_eq(stx_archive_read_time(a, NULL, "s", 0, 1, 0, &e), STX_EINVAL);
    cr_assert_eq(stx_archive_read_time(a, c, "s", 0, 1, 0, NULL), STX_EINVAL);
    cr_assert_eq(stx_archive_read_time(a, c, "s", 2, 1, 0, &e), STX_EINVAL);
    long long d;
    cr_assert_eq(stx_archive_trim(NULL, c, "s", 0, 0, &d), STX_EINVAL);
    cr_assert_eq(stx_archive_trim(a, NULL, "s", 0, 0, &d), STX_EINVAL);
    cr_assert_eq(stx_archive_trim(a, c, NULL, 0, 0, &d), STX_EINVAL);
    stx_archive_close(a);
    stx_client_free(c);
}

/* The two moments a crash can leave behind, built by hand: PostgreSQL
 * ahead of Redis (committed, not acknowledged) and Redis ahead of
 * PostgreSQL (acknowledged entries the database does not hold, as after a
 * restore of an older backup).  A new archiver goes by PostgreSQL's offset
 * in both: nothing twice, nothing missing. */
Test(archive, restart_goes_by_postgres_offset_not_redis)
{
    char stream[64], mid[64], last[64];
    test_unique("offsets", stream, sizeof stream);
    migrate();
    stx_client *c = test_client(&redis);
    redisContext *rc = test_redis_connect(&redis);
    PGconn *pc = pg_conn(&pg);
    produce_range(c, stream, 0, 100);
    id_of(rc, stream, 49, mid, sizeof mid);
    last_id(rc, stream, last, sizeof last);
    stx_archive *a = archive_open();
    cr_assert_eq(stx_archive_run(a, c, stream, 30, 1), STX_OK, "%s", stx_archive_errmsg(a));
    stx_archive_close(a);

    /* Committed, not acknowledged: every entry pending again. */
    freeReplyObject(test_cmd(rc, "XGROUP SETID %s " STX_ARCHIVE_GROUP " 0", stream));
    freeReplyObject(test_cmd(rc, "XREADGROUP GROUP " STX_ARCHIVE_GROUP " archiver COUNT 1000 STREAMS %s >",
                             stream));
    redisReply *r = test_cmd(rc, "XPENDING %s " STX_ARCHIVE_GROUP, stream);
    cr_assert_eq(r->element[0]->integer, 100);
    freeReplyObject(r);
    a = archive_open();
    size_t n = 99;
    cr_assert_eq(stx_archive_step(a, c, stream, 0, 0, &n), STX_OK, "%s", stx_archive_errmsg(a));
    cr_assert_eq(n, 0);
    r = test_cmd(rc, "XPENDING %s " STX_ARCHIVE_GROUP, stream);
    cr_assert_eq(r->element[0]->integer, 0, "what PostgreSQL holds is acknowledged");
    freeReplyObject(r);
    check_archive(pc, stream, 100, last);
    stx_archive_close(a);

    /* Acknowledged, not in PostgreSQL: the second half goes again. */
    uint64_t ms, seq;
    sscanf(mid, "%lu-%lu", &ms, &seq);
    char sql[256];
    snprintf(sql, sizeof sql, "DELETE FROM stx_archive_entries WHERE (ms, seq) > (%lu, %lu)", ms, seq);
    pg_do(pc, sql);
    snprintf(sql, sizeof sql, "UPDATE stx_archive_offsets SET ms = %lu, seq = %lu, archived = 50", ms, seq);
    pg_do(pc, sql);
    a = archive_open();
    cr_assert_eq(stx_archive_run(a, c, stream, 30, 1), STX_OK, "%s", stx_archive_errmsg(a));
    stx_archive_stats st;
    stx_archive_stats_get(a, &st);
    cr_assert_eq(st.entries, 50);
    check_archive(pc, stream, 100, last);
    stx_archive_close(a);
    PQfinish(pc);
    redisFree(rc);
    stx_client_free(c);
}

/* ---- a rebuild that reads through the archive --------------------------- */

/* In the worker (workload.c): the archive as its history source.  The
 * handle lives as long as the worker process. */
static void history_from_archive(stx_config *conf, void *url)
{
    stx_archive *a = NULL;
    if (stx_archive_open(&a, url) != STX_OK) {
        fprintf(stderr, "worker: archive: %s\n", stx_archive_errmsg(a));
        _exit(1);
    }
    stx_config_set_history(conf, stx_archive_history, a);
}

/* Workers until the offset is the stream's last id; the poison entry kills
 * some of them (SIGSEGV).  Returns how many died. */
static int process_until_caught_up(const workload *w, redisContext *rc)
{
    char meta[256], last[64];
    stx_key_name(meta, sizeof meta, w->stream, w->group, "meta");
    last_id(rc, w->stream, last, sizeof last);
    int died = 0;
    for (int round = 0; round < 60; round++) {
        int code = wait_exit(wl_spawn(w, 1));
        if (code == 128 + SIGSEGV) died++;
        else cr_assert_eq(code, 0, "worker exited with %d", code);
        redisReply *r = test_cmd(rc, "HGET %s offset", meta);
        int done = r->type == REDIS_REPLY_STRING && strcmp(r->str, last) == 0;
        freeReplyObject(r);
        if (done) return died;
    }
    cr_assert_fail("workers did not reach %s", last);
    return died;
}

/* The whole of a key, as a reply to compare. */
static int same_reply(const redisReply *a, const redisReply *b)
{
    if (a->type != b->type || a->elements != b->elements || a->len != b->len ||
        a->integer != b->integer)
        return 0;
    if (a->len && memcmp(a->str, b->str, a->len) != 0) return 0;
    for (size_t i = 0; i < a->elements; i++)
        if (!same_reply(a->element[i], b->element[i])) return 0;
    return 1;
}

/* The inventory workload processed live while archived; the stream then
 * trimmed to less than its last half (the poison entry among the trimmed);
 * a clearing reset to the beginning; workers with the archive as their
 * history source rebuild the state: the same state as live, no publish sent
 * again, nothing pending, the offset the last id, and the poison entry
 * dead-lettered again after exactly max_deliveries, alone. */
Test(archive, rebuild_from_archive_and_stream_equals_live_state)
{
    migrate();
    char name[64];
    test_unique("rebuild", name, sizeof name);
    workload w;
    wl_init(&w, &redis, name);
    w.max_deliveries = 3;
    w.batch_size = 64;
    redisContext *rc = test_redis_connect(&redis);
    stx_client *c = test_client(&redis);
    const long n = 3000;
    wl_produce(&w, rc, n, 1);

    /* Live, with the archiver running beside it. */
    stx_archive *a = archive_open();
    int died = process_until_caught_up(&w, rc);
    cr_assert(died >= 3, "the poison entry killed %d workers", died);
    cr_assert_eq(stx_archive_run(a, c, w.stream, 500, 1), STX_OK, "%s", stx_archive_errmsg(a));
    wl_check(&w, rc, 3);
    /* Each death is one handler call on the poison entry: the batch that
     * held it, halved down to the entry alone, then max_deliveries. */
    long long live_entered = wl_poison_attempts(&w, rc);
    cr_assert_eq(live_entered, died);

    char state[256], dlq[256], meta[256], attempts[256];
    stx_key_name(state, sizeof state, w.stream, w.group, "state");
    stx_key_name(dlq, sizeof dlq, w.stream, w.group, "dlq");
    stx_key_name(meta, sizeof meta, w.stream, w.group, "meta");
    stx_key_name(attempts, sizeof attempts, w.stream, w.group, "attempts");
    redisReply *live = test_cmd(rc, "HGETALL %s", state);
    redisReply *alerts = test_cmd(rc, "XRANGE %s - +", w.alerts);
    cr_assert(alerts->elements > 0);
    cr_assert(live->elements == 2 * WL_SKUS, "%zu", live->elements);

    /* Trim: the first 1,600 entries (the poison one, at 1,500, included)
     * are only in PostgreSQL now. */
    const long kept = 1400;
    redisReply *t = test_cmd(rc, "XTRIM %s MAXLEN %ld", w.stream, kept);
    cr_assert_eq(t->integer, n - kept);
    freeReplyObject(t);
    redisReply *first = test_cmd(rc, "XRANGE %s - + COUNT 1", w.stream);
    cr_assert_str_neq(first->element[0]->element[0]->str, w.poison_id);
    freeReplyObject(first);

    /* Without the archive the reset sees the trimmed entries and refuses;
     * with it (stx reset --pg) it finds them all archived. */
    cr_assert_eq(stx_group_reset(c, w.stream, w.group, "beginning", STX_RESET_CLEAR_STATE),
                 STX_EWINDOW_EXPIRED);
    const char *reset[] = {"reset", w.stream, w.group, "--to", "beginning", "--clear-state",
                           "--pg", pg.url, "--yes", NULL};
    cr_assert_eq(wait_exit(spawn_stx(reset)), 0);
    cr_assert_eq(test_cmd_int(rc, "EXISTS %s", state), 0);

    w.setup = history_from_archive;
    w.setup_data = pg.url;
    died = process_until_caught_up(&w, rc);
    cr_assert(died >= 3 && died <= 1 + 7 + 3, /* 7 batch sizes from 64 to 1 */
              "the poison entry killed %d workers in the rebuild", died);

    /* The state, byte for byte (HGETALL of a small hash keeps its order). */
    redisReply *rebuilt = test_cmd(rc, "HGETALL %s", state);
    cr_assert_eq(rebuilt->elements, live->elements);
    for (size_t i = 0; i < live->elements; i += 2) {
        redisReply *v = test_cmd(rc, "HGET %s %b", state, live->element[i]->str,
                                 live->element[i]->len);
        cr_assert(v->type == REDIS_REPLY_STRING && v->len == live->element[i + 1]->len &&
                      memcmp(v->str, live->element[i + 1]->str, v->len) == 0,
                  "state key %s differs after the rebuild", live->element[i]->str);
        freeReplyObject(v);
    }
    freeReplyObject(rebuilt);
    /* No publish sent again: the alerts stream is as it was. */
    redisReply *alerts2 = test_cmd(rc, "XRANGE %s - +", w.alerts);
    cr_assert(same_reply(alerts, alerts2), "%zu alerts after the rebuild, %zu before",
              alerts2->elements, alerts->elements);
    freeReplyObject(alerts2);
    /* Offset, pending list, attempts. */
    char last[64];
    last_id(rc, w.stream, last, sizeof last);
    redisReply *off = test_cmd(rc, "HGET %s offset", meta);
    cr_assert_str_eq(off->str, last);
    freeReplyObject(off);
    redisReply *pend = test_cmd(rc, "XPENDING %s %s", w.stream, w.group);
    cr_assert_eq(pend->element[0]->integer, 0);
    freeReplyObject(pend);
    /* The poison entry: handled exactly max_deliveries times more, then
     * dead-lettered; no neighbour with it. */
    cr_assert_eq(wl_poison_attempts(&w, rc), live_entered + died);
    redisReply *d = test_cmd(rc, "XRANGE %s - +", dlq);
    cr_assert_eq(d->elements, 2, "%zu dead letters", d->elements);
    for (size_t i = 0; i < 2; i++) {
        const redisReply *f = d->element[i]->element[1];
        const char *src = NULL, *reason = NULL, *att = NULL;
        for (size_t j = 0; j + 1 < f->elements; j += 2) {
            if (strcmp(f->element[j]->str, "stx.source_id") == 0) src = f->element[j + 1]->str;
            if (strcmp(f->element[j]->str, "stx.reason") == 0) reason = f->element[j + 1]->str;
            if (strcmp(f->element[j]->str, "stx.attempts") == 0) att = f->element[j + 1]->str;
        }
        cr_assert(src && reason && att);
        cr_assert_str_eq(src, w.poison_id);
        cr_assert_str_eq(reason, "max_deliveries");
        cr_assert_str_eq(att, "3");
    }
    /* The rebuild's dead letter holds the entry's original fields, as the
     * live one does, although the stream no longer holds the entry. */
    const redisReply *f0 = d->element[0]->element[1], *f1 = d->element[1]->element[1];
    cr_assert_str_eq(f0->element[0]->str, "stx.fields");
    long nf = atol(f0->element[1]->str);
    cr_assert_gt(nf, 0);
    cr_assert_str_eq(f1->element[1]->str, f0->element[1]->str, "stx.fields %s, live %s",
                     f1->element[1]->str, f0->element[1]->str);
    for (long j = 2; j < 2 + 2 * nf; j++) {
        cr_assert_eq(f1->element[j]->len, f0->element[j]->len);
        cr_assert(memcmp(f1->element[j]->str, f0->element[j]->str, f0->element[j]->len) == 0);
    }
    freeReplyObject(d);
    cr_assert_eq(test_cmd_int(rc, "HLEN %s", attempts), 0);

    freeReplyObject(live);
    freeReplyObject(alerts);
    stx_archive_close(a);
    stx_client_free(c);
    redisFree(rc);
}

/* stx reset --pg refuses a rebuild when the archive lacks entries Redis
 * lost, and changes nothing. */
Test(archive, reset_through_the_archive_refuses_what_it_lacks)
{
    migrate();
    char stream[64];
    test_unique("resetpg", stream, sizeof stream);
    stx_client *c = test_client(&redis);
    redisContext *rc = test_redis_connect(&redis);
    produce_range(c, stream, 0, 100);
    const char *half[] = {"archive", stream, "--pg", pg.url, "--batch", "30", "--once", NULL};
    cr_assert_eq(wait_exit(spawn_stx(half)), 0);
    char state[256];
    stx_key_name(state, sizeof state, stream, "g", "state");
    freeReplyObject(test_cmd(rc, "XGROUP CREATE %s g 0", stream));
    cr_assert_eq(test_cmd_int(rc, "HSET %s k v", state), 1);
    /* 100 archived, 60 lost: a rebuild has them all. */
    cr_assert_eq(test_cmd_int(rc, "XTRIM %s MAXLEN 40", stream), 60);
    produce_range(c, stream, 100, 110);
    cr_assert_eq(test_cmd_int(rc, "XTRIM %s MAXLEN 5", stream), 45);
    /* Now 105 lost, 100 of them archived. */
    const char *reset[] = {"reset", stream, "g", "--to", "beginning", "--clear-state", "--pg",
                           pg.url, "--yes", NULL};
    cr_assert_eq(wait_exit(spawn_stx(reset)), 6);
    cr_assert_eq(test_cmd_int(rc, "EXISTS %s", state), 1, "the refused reset changed the state");
    /* Archiving now adds only the 5 Redis still holds: still 5 short. */
    cr_assert_eq(wait_exit(spawn_stx(half)), 0);
    cr_assert_eq(wait_exit(spawn_stx(reset)), 6);
    /* --pg is for rebuilds only. */
    const char *noclear[] = {"reset", stream, "g", "--to", "beginning", "--pg", pg.url, "--yes",
                             NULL};
    cr_assert_eq(wait_exit(spawn_stx(noclear)), 2);
    redisFree(rc);
    stx_client_free(c);
}
