/* The processor's history source (stx_config_set_history()): entries the
 * stream no longer holds, read from another store in recovery, joined to
 * the stream's at its first entry.  A source in memory here; the archive's
 * (PostgreSQL) is tested in test_archive.c. */
#include <criterion/criterion.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "harness.h"
#include "streamtx.h"

static test_redis R;

static void setup(void) { test_redis_start(&R, 0, NULL); }
static void teardown(void) { test_redis_stop(&R); }

TestSuite(history, .init = setup, .fini = teardown, .timeout = 120);

#define N 300

/* A copy of the stream as it was before the trim. */
typedef struct store {
    char ids[N][48];
    char vals[N][24];
    int n;
    int calls;          /* source calls */
    int bad;            /* return the cursor's own entry (a broken source) */
    int loose;          /* ignore `before`: the processor must cut at the seam */
    int fail_once;      /* the next call fails as an unreachable store does */
    char last_before[48];
} store;

static int cmp_id(const char *a, const char *b)
{
    uint64_t am = 0, as = 0, bm = 0, bs = 0;
    sscanf(a, "%" SCNu64 "-%" SCNu64, &am, &as);
    sscanf(b, "%" SCNu64 "-%" SCNu64, &bm, &bs);
    return am < bm ? -1 : am > bm ? 1 : as < bs ? -1 : as > bs ? 1 : 0;
}

static int source(const char *stream, const char *after, const char *before, size_t limit,
                  stx_entries **out, void *ud)
{
    store *s = ud;
    s->calls++;
    if (s->fail_once) {
        s->fail_once = 0;
        return STX_ECONN;
    }
    snprintf(s->last_before, sizeof s->last_before, "%s", before);
    int rc = stx_entries_new(stream, after, out);
    if (rc != STX_OK) return rc;
    for (int i = 0; i < s->n && stx_entries_count(*out) < limit; i++) {
        int c = cmp_id(s->ids[i], after);
        if (c < 0 || (c == 0 && !s->bad)) continue;
        if (*before && !s->loose && cmp_id(s->ids[i], before) >= 0) break;
        stx_field f = {"k", 1, s->vals[i], strlen(s->vals[i])};
        if ((rc = stx_entries_append(*out, s->ids[i], &f, 1)) != STX_OK) return rc;
    }
    return STX_OK;
}

/* Sums k into "sum", counts calls per entry into "seen:ID", and publishes
 * one entry downstream per entry. */
typedef struct ctx {
    const char *out;
    int calls;
} ctx;

static int handler(const stx_msg *msg, stx_txn *txn, void *ud)
{
    ctx *c = ud;
    c->calls++;
    const char *k = stx_msg_get(msg, "k", NULL);
    if (!k) return stx_txn_fail(txn, "no k");
    int64_t v;
    int rc = stx_txn_incr(txn, "sum", 3, atoi(k), &v);
    if (rc != STX_OK) return rc;
    char key[64];
    int len = snprintf(key, sizeof key, "seen:%s", stx_msg_id(msg));
    if ((rc = stx_txn_incr(txn, key, (size_t)len, 1, &v)) != STX_OK) return rc;
    return stx_txn_publishv(txn, c->out, "k", k, NULL);
}

static stx_processor *make(const char *stream, ctx *h, store *history)
{
    stx_config *c = stx_config_new();
    char err[256];
    cr_assert_eq(stx_config_set(c, "url", R.url, err, sizeof err), STX_OK, "%s", err);
    cr_assert_eq(stx_config_set(c, "stream", stream, err, sizeof err), STX_OK);
    cr_assert_eq(stx_config_set(c, "group", "g", err, sizeof err), STX_OK);
    cr_assert_eq(stx_config_set(c, "consumer", "c1", err, sizeof err), STX_OK);
    cr_assert_eq(stx_config_set(c, "block_ms", "20", err, sizeof err), STX_OK);
    cr_assert_eq(stx_config_set(c, "log_level", "error", err, sizeof err), STX_OK);
    cr_assert_eq(stx_config_set(c, "batch_size", "32", err, sizeof err), STX_OK);
    stx_config_set_handler(c, handler, h);
    if (history) stx_config_set_history(c, source, history);
    stx_processor *p;
    cr_assert_eq(stx_processor_new(&p, c), STX_OK, "%s", p ? stx_processor_errmsg(p) : "");
    stx_config_free(c);
    return p;
}

static void drain(stx_processor *p)
{
    for (int i = 0; i < 10000; i++) {
        int n = stx_processor_poll(p);
        cr_assert(n >= 0, "poll: %s: %s", stx_strerror(n), stx_processor_errmsg(p));
        if (n == 0) return;
    }
    cr_assert_fail("the processor did not become idle");
}

static int64_t state_i64(redisContext *rc, const char *stream, const char *key)
{
    char state[256];
    stx_key_name(state, sizeof state, stream, "g", "state");
    redisReply *r = test_cmd(rc, "HGET %s %s", state, key);
    int64_t v = -1;
    if (r->type == REDIS_REPLY_STRING) cr_assert_eq(stx_mp_read_i64(r->str, r->len, &v), STX_OK);
    freeReplyObject(r);
    return v;
}

/* Live, then trimmed to its last third, then rebuilt by a clearing reset
 * through the source: the same state, every entry handled once, no publish
 * sent again; the source is asked with the stream's first entry as its
 * bound, and not at all once the stream holds what follows the cursor. */
static void rebuild(int loose, int fail_once)
{
    char stream[64], out[80];
    test_unique("hist", stream, sizeof stream);
    snprintf(out, sizeof out, "%s-out", stream);
    redisContext *rc = test_redis_connect(&R);
    static store s; /* large for the stack of a test */
    memset(&s, 0, sizeof s);
    s.n = N;
    s.loose = loose;
    int64_t sum = 0;
    for (int i = 0; i < N; i++) {
        snprintf(s.vals[i], sizeof s.vals[i], "%d", i * 7 % 13);
        redisReply *r = test_cmd(rc, "XADD %s * k %s", stream, s.vals[i]);
        snprintf(s.ids[i], sizeof s.ids[i], "%s", r->str);
        freeReplyObject(r);
        sum += i * 7 % 13;
    }
    ctx h = {out, 0};
    stx_processor *p = make(stream, &h, &s);
    drain(p);
    stx_processor_free(p);
    cr_assert_eq(state_i64(rc, stream, "sum"), sum);
    cr_assert_eq(h.calls, N);
    /* The new group's offset (0-0) is before the stream's first entry: the
     * source was asked once, and had nothing before it. */
    cr_assert_eq(s.calls, 1);
    cr_assert_str_eq(s.last_before, s.ids[0]);
    cr_assert_eq(test_cmd_int(rc, "XLEN %s", out), N);

    cr_assert_eq(test_cmd_int(rc, "XTRIM %s MAXLEN %d", stream, N / 3), N - N / 3);
    stx_client *c = test_client(&R);
    cr_assert_eq(stx_group_reset(c, stream, "g", "beginning",
                                 STX_RESET_CLEAR_STATE | STX_RESET_FORCE), STX_OK);
    h.calls = 0;
    p = make(stream, &h, &s);
    if (fail_once) {
        /* The store is away: the read fails with its code (retriable), and
         * the next poll goes on. */
        s.fail_once = 1;
        int first = stx_processor_poll(p);
        cr_assert_eq(first, STX_ECONN, "poll: %s: %s", stx_strerror(first),
                     stx_processor_errmsg(p));
        cr_assert_eq(stx_error_class_of(first), STX_CLASS_RETRIABLE);
    }
    drain(p);
    stx_processor_free(p);
    cr_assert_eq(state_i64(rc, stream, "sum"), sum);
    cr_assert_eq(h.calls, N, "%d handler calls for %d entries", h.calls, N);
    for (int i = 0; i < N; i += 17) {
        char key[64];
        snprintf(key, sizeof key, "seen:%s", s.ids[i]);
        cr_assert_eq(state_i64(rc, stream, key), 1, "entry %d handled more than once", i);
    }
    cr_assert_str_eq(s.last_before, s.ids[N - N / 3]);
    cr_assert(s.calls >= (N - N / 3) / 32 + 1, "%d source calls", s.calls);
    cr_assert_eq(test_cmd_int(rc, "XLEN %s", out), N, "a replayed entry published again");
    char meta[256];
    stx_key_name(meta, sizeof meta, stream, "g", "meta");
    redisReply *off = test_cmd(rc, "HGET %s offset", meta);
    cr_assert_str_eq(off->str, s.ids[N - 1]);
    freeReplyObject(off);

    /* A restart finds the stream holding what follows its offset: the
     * source is not asked. */
    int calls = s.calls;
    p = make(stream, &h, &s);
    drain(p);
    stx_processor_free(p);
    cr_assert_eq(s.calls, calls);
    stx_client_free(c);
    redisFree(rc);
}

Test(history, rebuild_joins_the_source_to_the_stream) { rebuild(0, 0); }

/* A source that fails (its store unreachable) fails one poll, retriably. */
Test(history, a_failing_source_is_retried) { rebuild(0, 1); }

/* A source that ignores the bound gives entries the stream holds too: they
 * are cut at the seam, and handled once, from the stream. */
Test(history, a_source_past_the_seam_is_cut_there) { rebuild(1, 0); }

/* A source that returns an entry at or before the cursor fails the read
 * (STX_EINVAL, fatal): applying it would apply an entry twice. */
Test(history, a_source_that_breaks_the_order_is_refused)
{
    char stream[64], out[80];
    test_unique("histbad", stream, sizeof stream);
    snprintf(out, sizeof out, "%s-out", stream);
    redisContext *rc = test_redis_connect(&R);
    store s = {.n = 20, .bad = 1};
    for (int i = 0; i < s.n; i++) {
        snprintf(s.vals[i], sizeof s.vals[i], "1");
        redisReply *r = test_cmd(rc, "XADD %s * k 1", stream);
        snprintf(s.ids[i], sizeof s.ids[i], "%s", r->str);
        freeReplyObject(r);
    }
    ctx h = {out, 0};
    stx_processor *p = make(stream, &h, NULL);
    drain(p);
    stx_processor_free(p);
    cr_assert_eq(test_cmd_int(rc, "XTRIM %s MAXLEN 5", stream), 15);
    stx_client *c = test_client(&R);
    cr_assert_eq(stx_group_reset(c, stream, "g", s.ids[4], STX_RESET_CLEAR_STATE | STX_RESET_FORCE),
                 STX_OK);
    h.calls = 0;
    p = make(stream, &h, &s);
    int rc2 = stx_processor_poll(p);
    cr_assert_eq(rc2, STX_EINVAL, "poll: %s: %s", stx_strerror(rc2), stx_processor_errmsg(p));
    cr_assert(strstr(stx_processor_errmsg(p), "not after the cursor"), "%s",
              stx_processor_errmsg(p));
    cr_assert_eq(h.calls, 0);
    stx_processor_free(p);
    stx_client_free(c);
    redisFree(rc);
}
