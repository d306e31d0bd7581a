/* Reading against a real redis-server: id ranges, cursor errors, the
 * retention window, time ranges and the live tail across reconnects. */
#include <criterion/criterion.h>
#include <errno.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "client.h" /* stx_client_read_range */
#include "connection.h" /* stx_conn_reply_code */
#include "harness.h"
#include "streamtx.h"

static test_redis R;

static void setup(void) { test_redis_start(&R, 0, NULL); }
static void teardown(void) { test_redis_stop(&R); }

TestSuite(reader, .init = setup, .fini = teardown, .timeout = 120);

/* XADD stream ID n <i> for each id of a NULL-terminated list. */
static void add_ids(redisContext *rc, const char *stream, const char *const *ids)
{
    for (int i = 0; ids[i]; i++)
        freeReplyObject(test_cmd(rc, "XADD %s %s n %d", stream, ids[i], i));
}

/* Assert that e holds exactly the ids of the NULL-terminated list want. */
static void assert_ids(const stx_entries *e, const char *const *want)
{
    size_t n = 0;
    while (want[n]) n++;
    cr_assert_eq(stx_entries_count(e), n, "got %zu entries, want %zu", stx_entries_count(e), n);
    for (size_t i = 0; i < n; i++)
        cr_assert_str_eq(stx_msg_id(stx_entries_at(e, i)), want[i], "entry %zu", i);
    if (n) cr_assert_str_eq(stx_entries_last_id(e), want[n - 1]);
}

static void sleep_ms(long ms)
{
    struct timespec ts = {ms / 1000, (ms % 1000) * 1000000L};
    while (nanosleep(&ts, &ts) != 0 && errno == EINTR) {
    }
}

Test(reader, range_pages_with_exclusive_cursors)
{
    stx_client *c = test_client(&R);
    redisContext *rc = test_redis_connect(&R);
    static const char *const ids[] = {"1-1", "2-1", "3-1", "4-1", "5-1", NULL};
    add_ids(rc, "r", ids);
    stx_entries *e;
    cr_assert_eq(stx_read_range(c, "r", "0", NULL, 0, &e), STX_OK, "%s", stx_client_errmsg(c));
    assert_ids(e, ids);
    const stx_msg *m = stx_entries_at(e, 2);
    cr_assert_str_eq(stx_msg_stream(m), "r");
    cr_assert_eq(stx_msg_field_count(m), 1);
    size_t len;
    cr_assert_str_eq(stx_msg_get(m, "n", &len), "2");
    cr_assert_eq(len, 1);
    cr_assert_null(stx_entries_at(e, 5));
    stx_entries_free(e);

    /* Pages of two, each resuming after the last id of the one before. */
    static const char *const p1[] = {"1-1", "2-1", NULL}, *const p2[] = {"3-1", "4-1", NULL},
                             *const p3[] = {"5-1", NULL}, *const none[] = {NULL};
    const char *const *pages[] = {p1, p2, p3, none};
    char cursor[64] = "0-0";
    for (int i = 0; i < 4; i++) {
        cr_assert_eq(stx_read_range(c, "r", cursor, "+", 2, &e), STX_OK);
        assert_ids(e, pages[i]);
        snprintf(cursor, sizeof cursor, "%s", stx_entries_last_id(e));
        stx_entries_free(e);
    }
    cr_assert_str_eq(cursor, "5-1"); /* an empty page returns the cursor it was given */

    static const char *const mid[] = {"3-1", "4-1", NULL};
    cr_assert_eq(stx_read_range(c, "r", "2-1", "4-1", 0, &e), STX_OK);
    assert_ids(e, mid);
    stx_entries_free(e);
    /* Cursors between ids, and the highest id. */
    cr_assert_eq(stx_read_range(c, "r", "2-0", "2-5", 0, &e), STX_OK);
    cr_assert_eq(stx_entries_count(e), 1);
    stx_entries_free(e);
    cr_assert_eq(stx_read_range(c, "r", "18446744073709551615-18446744073709551615", NULL, 0, &e),
                 STX_OK);
    cr_assert_eq(stx_entries_count(e), 0);
    stx_entries_free(e);
    /* A stream that does not exist is empty. */
    cr_assert_eq(stx_read_range(c, "nothing", "0", NULL, 0, &e), STX_OK);
    cr_assert_eq(stx_entries_count(e), 0);
    cr_assert_str_eq(stx_entries_last_id(e), "0-0");
    stx_entries_free(e);
    stx_entries_free(NULL);
    redisFree(rc);
    stx_client_free(c);
}

Test(reader, malformed_cursors_are_refused)
{
    stx_client *c = test_client(&R);
    redisContext *rc = test_redis_connect(&R);
    static const char *const ids[] = {"1-1", NULL};
    add_ids(rc, "m", ids);
    static const char *const bad[] = {"", "abc", "1", "1-", "-1", "1-2-3", "+", "-", "$",
                                      "18446744073709551616-0", " 1-1", "1-1 "};
    stx_entries *e = (stx_entries *)1;
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
        int got = stx_read_range(c, "m", bad[i], NULL, 0, &e);
        cr_assert_eq(got, STX_EINVALID_CURSOR, "cursor '%s': %s", bad[i], stx_strerror(got));
        cr_assert_null(e);
        cr_assert(strstr(stx_client_errmsg(c), "is not a stream id"), "%s", stx_client_errmsg(c));
    }
    cr_assert_eq(stx_read_range(c, "m", NULL, NULL, 0, &e), STX_EINVALID_CURSOR);
    cr_assert_eq(stx_read_range(c, "m", "0", "x-1", 0, &e), STX_EINVALID_CURSOR);
    cr_assert_eq(stx_tail(c, "m", "1-x", 0, 0, &e), STX_EINVALID_CURSOR);
    cr_assert_eq(stx_read_range(c, "", "0", NULL, 0, &e), STX_EINVAL);
    cr_assert_eq(stx_read_time(c, "m", 10, 5, 0, &e), STX_EINVAL);
    cr_assert_eq(stx_read_time(c, "m", -1, 5, 0, &e), STX_EINVAL);
    cr_assert_eq(stx_tail(c, "m", "0", -1, 0, &e), STX_EINVAL);
    /* The handle is fine afterwards. */
    cr_assert_eq(stx_read_range(c, "m", "0", NULL, 0, &e), STX_OK);
    cr_assert_eq(stx_entries_count(e), 1);
    cr_assert_str_eq(stx_client_errmsg(c), "");
    stx_entries_free(e);
    /* Wrong type. */
    freeReplyObject(test_cmd(rc, "SET str x"));
    cr_assert_eq(stx_read_range(c, "str", "0", NULL, 0, &e), STX_EWRONGTYPE);
    cr_assert_eq(stx_tail(c, "str", "0", 10, 0, &e), STX_EWRONGTYPE);
    redisFree(rc);
    stx_client_free(c);
}

Test(reader, cursor_before_trimmed_entries_has_expired)
{
    stx_client *c = test_client(&R);
    redisContext *rc = test_redis_connect(&R);
    static const char *const ids[] = {"1-0", "2-0", "3-0", "4-0", "5-0", "6-0", "7-0",
                                      "8-0", "9-0", "10-0", NULL};
    add_ids(rc, "w", ids);
    /* A group that has seen everything lets the safe trim keep 5 entries. */
    freeReplyObject(test_cmd(rc, "XGROUP CREATE w g $"));
    long long deleted;
    cr_assert_eq(stx_trim_safe(c, "w", 5, 0, &deleted), STX_OK, "%s", stx_client_errmsg(c));
    cr_assert_eq(deleted, 5);
    stx_entries *e;
    int got = stx_read_range(c, "w", "3-0", NULL, 0, &e);
    cr_assert_eq(got, STX_EWINDOW_EXPIRED, "%s", stx_strerror(got));
    cr_assert_null(e);
    const char *msg = stx_client_errmsg(c);
    cr_assert(strstr(msg, "after 3-0 were trimmed or deleted (highest deleted id 5-0)"), "%s", msg);
    cr_assert(strstr(msg, "the first retained entry is 6-0"), "%s", msg);
    cr_assert(strstr(msg, "resume with cursor 5-18446744073709551615"), "%s", msg);
    cr_assert_eq(stx_read_range(c, "w", "0", NULL, 0, &e), STX_EWINDOW_EXPIRED);
    cr_assert_eq(stx_read_range(c, "w", "4-9", "4-9", 0, &e), STX_EWINDOW_EXPIRED);
    cr_assert_eq(stx_tail(c, "w", "2-0", 10, 0, &e), STX_EWINDOW_EXPIRED);
    cr_assert_eq(stx_read_time(c, "w", 5, 10, 0, &e), STX_EWINDOW_EXPIRED);
    /* From the last trimmed entry on, nothing is missing. */
    static const char *const rest[] = {"6-0", "7-0", "8-0", "9-0", "10-0", NULL};
    cr_assert_eq(stx_read_range(c, "w", "5-0", NULL, 0, &e), STX_OK, "%s", stx_client_errmsg(c));
    assert_ids(e, rest);
    stx_entries_free(e);
    cr_assert_eq(stx_read_range(c, "w", "5-18446744073709551615", NULL, 0, &e), STX_OK);
    assert_ids(e, rest);
    stx_entries_free(e);
    cr_assert_eq(stx_read_time(c, "w", 6, 10, 0, &e), STX_OK, "%s", stx_client_errmsg(c));
    assert_ids(e, rest);
    stx_entries_free(e);
    /* An XDEL in the middle moves the highest deleted id too: a cursor
     * before it has lost an entry. */
    cr_assert_eq(test_cmd_int(rc, "XDEL w 8-0"), 1);
    cr_assert_eq(stx_read_range(c, "w", "6-0", NULL, 0, &e), STX_EWINDOW_EXPIRED);
    cr_assert(strstr(stx_client_errmsg(c), "highest deleted id 8-0"), "%s", stx_client_errmsg(c));
    static const char *const after8[] = {"9-0", "10-0", NULL};
    cr_assert_eq(stx_read_range(c, "w", "8-0", NULL, 0, &e), STX_OK);
    assert_ids(e, after8);
    stx_entries_free(e);
    /* Without the check (for streams whose entries are deleted on purpose). */
    static const char *const kept[] = {"7-0", "9-0", "10-0", NULL};
    cr_assert_eq(stx_client_read_range(c, "dlq", "w", "6-0", NULL, 0, 0, &e), STX_OK);
    assert_ids(e, kept);
    stx_entries_free(e);
    cr_assert_eq(stx_client_read_range(c, "dlq", "w", "10-0", NULL, 0, 0, &e), STX_OK);
    cr_assert_eq(stx_entries_count(e), 0);
    cr_assert_str_eq(stx_entries_last_id(e), "10-0");
    stx_entries_free(e);
    /* Everything trimmed (by anyone): a cursor before the last id lost
     * entries, one at the last id did not. */
    freeReplyObject(test_cmd(rc, "XTRIM w MAXLEN 0"));
    cr_assert_eq(stx_read_range(c, "w", "9-0", NULL, 0, &e), STX_EWINDOW_EXPIRED);
    cr_assert(strstr(stx_client_errmsg(c), "none is retained: resume with cursor 10-0"), "%s",
              stx_client_errmsg(c));
    cr_assert_eq(stx_read_range(c, "w", "10-0", NULL, 0, &e), STX_OK);
    cr_assert_eq(stx_entries_count(e), 0);
    stx_entries_free(e);
    redisFree(rc);
    stx_client_free(c);
}

Test(reader, producer_trim_is_seen_by_readers)
{
    stx_client *c = test_client(&R);
    redisContext *rc = test_redis_connect(&R);
    freeReplyObject(test_cmd(rc, "CONFIG SET stream-node-max-entries 1")); /* exact "~" */
    static const char *const ids[] = {"1-0", "2-0", "3-0", NULL};
    add_ids(rc, "p", ids);
    stx_field f[] = {{"x", 1, "1", 1}};
    stx_produce_opts o = {.maxlen = 2};
    stx_produce_result res;
    cr_assert_eq(stx_produce(c, "p", f, 1, &o, &res), STX_OK, "%s", stx_client_errmsg(c));
    cr_assert_eq(test_cmd_int(rc, "XLEN p"), 2); /* 3-0 and the new one */
    stx_entries *e;
    cr_assert_eq(stx_read_range(c, "p", "1-0", NULL, 0, &e), STX_EWINDOW_EXPIRED);
    cr_assert(strstr(stx_client_errmsg(c), "highest deleted id 2-18446744073709551615"), "%s",
              stx_client_errmsg(c));
    cr_assert_eq(stx_read_range(c, "p", "2-18446744073709551615", NULL, 0, &e), STX_OK);
    cr_assert_eq(stx_entries_count(e), 2);
    cr_assert_str_eq(stx_msg_id(stx_entries_at(e, 0)), "3-0");
    stx_entries_free(e);
    /* Without trimming the record stays as it is. */
    cr_assert_eq(stx_produce(c, "p", f, 1, NULL, &res), STX_OK);
    cr_assert_eq(stx_read_range(c, "p", "3-0", NULL, 0, &e), STX_OK);
    cr_assert_eq(stx_entries_count(e), 2);
    stx_entries_free(e);
    redisFree(rc);
    stx_client_free(c);
}

Test(reader, time_range_by_id_milliseconds)
{
    stx_client *c = test_client(&R);
    redisContext *rc = test_redis_connect(&R);
    static const char *const ids[] = {"1000-0", "1000-1", "1500-0", "2000-0", "2500-0", NULL};
    add_ids(rc, "tm", ids);
    stx_entries *e;
    static const char *const w1[] = {"1000-0", "1000-1", "1500-0", "2000-0", NULL};
    cr_assert_eq(stx_read_time(c, "tm", 1000, 2000, 0, &e), STX_OK, "%s", stx_client_errmsg(c));
    assert_ids(e, w1);
    stx_entries_free(e);
    static const char *const w2[] = {"1500-0", NULL};
    cr_assert_eq(stx_read_time(c, "tm", 1001, 1999, 0, &e), STX_OK);
    assert_ids(e, w2);
    stx_entries_free(e);
    static const char *const w3[] = {"1000-0", "1000-1", NULL};
    cr_assert_eq(stx_read_time(c, "tm", 0, 1000, 0, &e), STX_OK);
    assert_ids(e, w3);
    stx_entries_free(e);
    cr_assert_eq(stx_read_time(c, "tm", 1000, 2500, 2, &e), STX_OK); /* limit */
    assert_ids(e, w3);
    stx_entries_free(e);
    /* An empty window: the cursor is the id just before it. */
    cr_assert_eq(stx_read_time(c, "tm", 3000, 4000, 0, &e), STX_OK);
    cr_assert_eq(stx_entries_count(e), 0);
    cr_assert_str_eq(stx_entries_last_id(e), "2999-18446744073709551615");
    stx_entries_free(e);
    /* A window that reaches into trimmed entries has expired. */
    freeReplyObject(test_cmd(rc, "XGROUP CREATE tm g $"));
    long long deleted;
    cr_assert_eq(stx_trim_safe(c, "tm", 3, 0, &deleted), STX_OK, "%s", stx_client_errmsg(c));
    cr_assert_eq(deleted, 2);
    cr_assert_eq(stx_read_time(c, "tm", 1000, 3000, 0, &e), STX_EWINDOW_EXPIRED);
    cr_assert_eq(stx_read_time(c, "tm", 0, 3000, 0, &e), STX_EWINDOW_EXPIRED);
    static const char *const w4[] = {"1500-0", "2000-0", "2500-0", NULL};
    cr_assert_eq(stx_read_time(c, "tm", 1001, 3000, 0, &e), STX_OK, "%s", stx_client_errmsg(c));
    assert_ids(e, w4);
    stx_entries_free(e);
    redisFree(rc);
    stx_client_free(c);
}

/* Child: XADD one entry to stream after delay_ms, then _exit (the parent's
 * atexit handlers must not run here). */
static pid_t add_later(int port, const char *stream, long delay_ms)
{
    pid_t pid = fork();
    cr_assert_neq(pid, -1);
    if (pid) return pid;
    sleep_ms(delay_ms);
    redisContext *x = redisConnect("127.0.0.1", port);
    if (!x || x->err) _exit(1);
    redisReply *r = redisCommand(x, "XADD %s * late 1", stream);
    int ok = r && r->type == REDIS_REPLY_STRING;
    if (r) freeReplyObject(r);
    redisFree(x);
    _exit(ok ? 0 : 2);
}

Test(reader, tail_waits_for_new_entries)
{
    stx_client *c = test_client(&R);
    redisContext *rc = test_redis_connect(&R);
    static const char *const ids[] = {"1-0", "2-0", NULL};
    add_ids(rc, "live", ids);
    stx_entries *e;
    /* "$": only new entries; the cursor comes back concrete. */
    int64_t t0 = test_now_ms();
    cr_assert_eq(stx_tail(c, "live", "$", 100, 0, &e), STX_OK, "%s", stx_client_errmsg(c));
    cr_assert_eq(stx_entries_count(e), 0);
    cr_assert_geq(test_now_ms() - t0, 90);
    cr_assert_str_eq(stx_entries_last_id(e), "2-0");
    stx_entries_free(e);
    /* Entries already there come at once, without waiting. */
    t0 = test_now_ms();
    cr_assert_eq(stx_tail(c, "live", "0", 5000, 0, &e), STX_OK);
    assert_ids(e, ids);
    cr_assert_lt(test_now_ms() - t0, 1000);
    stx_entries_free(e);
    /* block_ms 0 does not wait. */
    t0 = test_now_ms();
    cr_assert_eq(stx_tail(c, "live", "2-0", 0, 0, &e), STX_OK);
    cr_assert_eq(stx_entries_count(e), 0);
    cr_assert_str_eq(stx_entries_last_id(e), "2-0");
    cr_assert_lt(test_now_ms() - t0, 1000);
    stx_entries_free(e);
    /* A new entry wakes a waiting tail. */
    pid_t kid = add_later(R.port, "live", 200);
    t0 = test_now_ms();
    cr_assert_eq(stx_tail(c, "live", "2-0", 10000, 0, &e), STX_OK, "%s", stx_client_errmsg(c));
    int64_t waited = test_now_ms() - t0;
    cr_assert_eq(stx_entries_count(e), 1);
    cr_assert_str_eq(stx_msg_get(stx_entries_at(e, 0), "late", NULL), "1");
    cr_assert(waited >= 150 && waited < 5000, "waited %lld ms", (long long)waited);
    stx_entries_free(e);
    int status;
    cr_assert_eq(waitpid(kid, &status, 0), kid);
    cr_assert(WIFEXITED(status) && WEXITSTATUS(status) == 0);
    /* A stream that does not exist yet: "$" is 0-0 and waits for it. */
    kid = add_later(R.port, "fresh", 100);
    cr_assert_eq(stx_tail(c, "fresh", "$", 10000, 0, &e), STX_OK, "%s", stx_client_errmsg(c));
    cr_assert_eq(stx_entries_count(e), 1);
    stx_entries_free(e);
    cr_assert_eq(waitpid(kid, &status, 0), kid);
    redisFree(rc);
    stx_client_free(c);
}

Test(reader, tail_resumes_after_reconnect)
{
    test_redis aof;
    test_redis_start(&aof, 1, NULL);
    stx_client *c = test_client(&aof);
    redisContext *rc = test_redis_connect(&aof);
    static const char *const ids[] = {"1-0", "2-0", "3-0", NULL};
    add_ids(rc, "t", ids);
    stx_entries *e;
    static const char *const first[] = {"1-0", "2-0", NULL};
    cr_assert_eq(stx_tail(c, "t", "0", 100, 2, &e), STX_OK);
    assert_ids(e, first);
    char cursor[64];
    snprintf(cursor, sizeof cursor, "%s", stx_entries_last_id(e));
    stx_entries_free(e);

    /* The connection is killed: one call fails, the next reconnects and
     * resumes exactly after the cursor. */
    freeReplyObject(test_cmd(rc, "CLIENT KILL TYPE normal SKIPME yes"));
    cr_assert_eq(stx_tail(c, "t", cursor, 100, 0, &e), STX_ECONN);
    cr_assert_null(e);
    cr_assert_eq(stx_error_class_of(STX_ECONN), STX_CLASS_RETRIABLE);
    static const char *const third[] = {"3-0", NULL};
    cr_assert_eq(stx_tail(c, "t", cursor, 100, 0, &e), STX_OK, "%s", stx_client_errmsg(c));
    assert_ids(e, third);
    snprintf(cursor, sizeof cursor, "%s", stx_entries_last_id(e));
    stx_entries_free(e);
    redisFree(rc);

    /* The server dies and comes back (AOF): the same. */
    test_redis_kill(&aof);
    int got = stx_tail(c, "t", cursor, 100, 0, &e);
    cr_assert(got == STX_ECONN || got == STX_ETIMEOUT, "%s", stx_strerror(got));
    got = stx_tail(c, "t", cursor, 100, 0, &e);
    cr_assert_eq(got, STX_ECONN, "while down: %s", stx_strerror(got));
    cr_assert(strstr(stx_client_errmsg(c), "reconnect"), "%s", stx_client_errmsg(c));
    test_redis_restart(&aof);
    rc = test_redis_connect(&aof);
    freeReplyObject(test_cmd(rc, "XADD t 4-0 n 3"));
    static const char *const fourth[] = {"4-0", NULL};
    cr_assert_eq(stx_tail(c, "t", cursor, 100, 0, &e), STX_OK, "%s", stx_client_errmsg(c));
    assert_ids(e, fourth);
    stx_entries_free(e);
    redisFree(rc);
    stx_client_free(c);
    test_redis_stop(&aof);
}

/* Replies for commands Redis does not run for now are retriable, with a
 * message of their own. */
Test(reader, not_run_for_now_replies_are_retriable)
{
    static const char *const refused[] = {
        "OOM command not allowed",
        "MISCONF x",
        "READONLY You can't write against a read only replica.",
        "NOREPLICAS Not enough good replicas to write.",
        "LOADING Redis is loading the dataset in memory",
        "BUSY Redis is busy running a script.",
        "MASTERDOWN Link with MASTER is down",
        "UNBLOCKED client unblocked via CLIENT UNBLOCK",
        "UNBLOCKED the stream key no longer exists",
    };
    for (size_t i = 0; i < sizeof refused / sizeof refused[0]; i++) {
        int code = stx_conn_reply_code(refused[i]);
        cr_assert_eq(code, STX_EREDIS_REFUSED, "%s", refused[i]);
        cr_assert_eq(stx_error_class_of(code), STX_CLASS_RETRIABLE);
    }
    cr_assert_eq(stx_conn_reply_code("BUSYGROUP Consumer Group name already exists"), STX_EREDIS);
    cr_assert_eq(stx_conn_reply_code("LOADINGX"), STX_EREDIS);
    cr_assert(!strstr(stx_strerror(STX_EREDIS_REFUSED), "refused the write"));
}

/* Reading while Redis loads its dataset (DEBUG RELOAD, slowed down per
 * key): STX_EREDIS_REFUSED saying so, and the same call works once loaded. */
Test(reader, loading_dataset_is_retriable_and_says_so)
{
    test_redis L;
    static const char *const slow[] = {"--enable-debug-command", "yes", "--key-load-delay", "1000",
                                       "--loading-process-events-interval-bytes", "1024", NULL};
    test_redis_start(&L, 0, slow);
    redisContext *rc = test_redis_connect(&L);
    freeReplyObject(test_cmd(rc, "XADD ld 1-0 n 1"));
    freeReplyObject(test_cmd(rc, "DEBUG POPULATE 1000"));
    stx_client *c = test_client(&L);
    /* DEBUG RELOAD answers when loaded: sent, not waited for. */
    redisAppendCommand(rc, "DEBUG RELOAD");
    for (int done = 0; !done;) cr_assert_eq(redisBufferWrite(rc, &done), REDIS_OK);
    sleep_ms(100);
    stx_entries *e = NULL;
    int code = stx_read_range(c, "ld", "0", NULL, 0, &e);
    cr_assert_eq(code, STX_EREDIS_REFUSED, "%s: %s", stx_strerror(code), stx_client_errmsg(c));
    cr_assert(strstr(stx_client_errmsg(c), "Redis is loading its dataset"), "%s",
              stx_client_errmsg(c));
    redisReply *ok;
    cr_assert_eq(redisGetReply(rc, (void **)&ok), REDIS_OK);
    freeReplyObject(ok);
    cr_assert_eq(stx_read_range(c, "ld", "0", NULL, 0, &e), STX_OK, "%s", stx_client_errmsg(c));
    static const char *const want[] = {"1-0", NULL};
    assert_ids(e, want);
    stx_entries_free(e);
    stx_client_free(c);
    redisFree(rc);
    test_redis_stop(&L);
}
