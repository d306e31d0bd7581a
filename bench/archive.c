/* stx_bench_archive: archive throughput (bench/archive.sh runs it).
 *
 *   stx_bench_archive REDIS_URL PG_URL ENTRIES BATCH
 *
 * Adds ENTRIES entries of the inventory's shape (type, key, sku, qty,
 * created_at) to a new stream, archives them with stx_archive_run() in
 * batches of BATCH (one transaction each) and times it.  Then copies the
 * very same rows, as PostgreSQL's binary COPY stream of them (COPY ... TO
 * STDOUT, read beforehand), into a table of the same definition with one
 * COPY: the raw cost of writing those rows, without Redis, batching or
 * offsets.  Prints key=value lines: entries/s of both and their ratio. */
#include <libpq-fe.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "streamtx.h"
#include "streamtx_archive.h"

static double now_s(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

static void die(const char *what, const char *msg)
{
    fprintf(stderr, "stx_bench_archive: %s: %s\n", what, msg);
    exit(1);
}

static void sql(PGconn *c, const char *q)
{
    PGresult *r = PQexec(c, q);
    if (PQresultStatus(r) != PGRES_COMMAND_OK && PQresultStatus(r) != PGRES_TUPLES_OK)
        die(q, PQresultErrorMessage(r));
    PQclear(r);
}

int main(int argc, char **argv)
{
    if (argc != 5) {
        fprintf(stderr, "usage: stx_bench_archive REDIS_URL PG_URL ENTRIES BATCH\n");
        return 2;
    }
    long n = atol(argv[3]), batch = atol(argv[4]);
    char stream[64];
    snprintf(stream, sizeof stream, "bench-archive-%ld", (long)getpid());

    stx_config *conf = stx_config_new();
    stx_client *c = NULL;
    if (!conf || stx_config_set(conf, "url", argv[1], NULL, 0) != STX_OK ||
        stx_client_new(&c, conf) != STX_OK)
        die("redis", c ? stx_client_errmsg(c) : "cannot connect");
    enum { CHUNK = 500 };
    for (long i = 0; i < n; i += CHUNK) {
        stx_produce_msg m[CHUNK];
        stx_field f[CHUNK][5];
        char key[CHUNK][24], qty[CHUNK][24], at[CHUNK][24];
        stx_produce_result res[CHUNK];
        long k = n - i < CHUNK ? n - i : CHUNK;
        for (long j = 0; j < k; j++) {
            snprintf(key[j], sizeof key[j], "sku-%ld", (i + j) % 1000);
            snprintf(qty[j], sizeof qty[j], "%ld", (i + j) % 17 + 1);
            snprintf(at[j], sizeof at[j], "%ld", 1795000000000L + i + j);
            f[j][0] = (stx_field){"type", 4, "item.sold", 9};
            f[j][1] = (stx_field){"key", 3, key[j], strlen(key[j])};
            f[j][2] = (stx_field){"sku", 3, key[j], strlen(key[j])};
            f[j][3] = (stx_field){"qty", 3, qty[j], strlen(qty[j])};
            f[j][4] = (stx_field){"created_at", 10, at[j], strlen(at[j])};
            m[j] = (stx_produce_msg){f[j], 5, NULL};
        }
        if (stx_produce_batch(c, stream, m, (size_t)k, NULL, res) != STX_OK)
            die("produce", stx_client_errmsg(c));
    }

    stx_archive *a = NULL;
    if (stx_archive_open(&a, argv[2]) != STX_OK || stx_archive_migrate(a, NULL) != STX_OK)
        die("archive", stx_archive_errmsg(a));
    double t0 = now_s();
    if (stx_archive_run(a, c, stream, (size_t)batch, 1) != STX_OK) die("archive", stx_archive_errmsg(a));
    double archive_s = now_s() - t0;
    stx_archive_stats st;
    stx_archive_stats_get(a, &st);
    if ((long)st.entries != n) die("archive", "not every entry was archived");

    /* The same rows as PostgreSQL's binary COPY stream. */
    PGconn *pg = PQconnectdb(argv[2]);
    if (PQstatus(pg) != CONNECTION_OK) die("postgres", PQerrorMessage(pg));
    char q[512];
    snprintf(q, sizeof q,
             "COPY (SELECT stream, ms, seq, names, vals, type, key, created_at FROM "
             "stx_archive_entries WHERE stream = '%s' ORDER BY ms, seq) TO STDOUT (FORMAT binary)",
             stream);
    PGresult *r = PQexec(pg, q);
    if (PQresultStatus(r) != PGRES_COPY_OUT) die("copy out", PQresultErrorMessage(r));
    PQclear(r);
    char *data = NULL, *chunk;
    size_t len = 0;
    int got;
    while ((got = PQgetCopyData(pg, &chunk, 0)) > 0) {
        char *d = realloc(data, len + (size_t)got);
        if (!d) die("copy out", "out of memory");
        data = d;
        memcpy(data + len, chunk, (size_t)got);
        len += (size_t)got;
        PQfreemem(chunk);
    }
    while ((r = PQgetResult(pg)) != NULL) PQclear(r);
    sql(pg, "SET client_min_messages = warning");
    sql(pg, "DROP TABLE IF EXISTS stx_bench_raw");
    sql(pg, "CREATE TABLE stx_bench_raw (LIKE stx_archive_entries INCLUDING ALL)");
    t0 = now_s();
    sql(pg, "BEGIN");
    r = PQexec(pg, "COPY stx_bench_raw (stream, ms, seq, names, vals, type, key, created_at) "
                   "FROM STDIN (FORMAT binary)");
    if (PQresultStatus(r) != PGRES_COPY_IN) die("copy in", PQresultErrorMessage(r));
    PQclear(r);
    if (PQputCopyData(pg, data, (int)len) != 1 || PQputCopyEnd(pg, NULL) != 1)
        die("copy in", PQerrorMessage(pg));
    r = PQgetResult(pg);
    if (PQresultStatus(r) != PGRES_COMMAND_OK) die("copy in", PQresultErrorMessage(r));
    PQclear(r);
    sql(pg, "COMMIT");
    double raw_s = now_s() - t0;
    sql(pg, "DROP TABLE stx_bench_raw");

    printf("archive_entries=%ld\narchive_batch=%ld\narchive_bytes_copy=%zu\n", n, batch, len);
    printf("archive_entries_per_s=%.0f\nraw_copy_entries_per_s=%.0f\narchive_ratio_to_raw_copy=%.2f\n",
           (double)n / archive_s, (double)n / raw_s, raw_s / archive_s);
    free(data);
    PQfinish(pg);
    stx_archive_close(a);
    stx_client_free(c);
    stx_config_free(conf);
    return 0;
}
