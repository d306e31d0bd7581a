/* Administration against a real redis-server: group reset (fencing,
 * targets, rebuilding state), safe trimming, state reads and stream info. */
#include <criterion/criterion.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "harness.h"
#include "streamtx.h"

static test_redis R;

static void setup(void) { test_redis_start(&R, 0, NULL); }
static void teardown(void) { test_redis_stop(&R); }

TestSuite(admin, .init = setup, .fini = teardown, .timeout = 120);

/* Counts entries per field "k" and in "total". */
static int count_handler(const stx_msg *msg, stx_txn *txn, void *ud)
{
    (void)ud;
    size_t klen;
    const char *k = stx_msg_get(msg, "k", &klen);
    if (!k) return stx_txn_fail(txn, "no k");
    int rc = stx_txn_incr(txn, k, klen, 1, NULL);
    return rc == STX_OK ? stx_txn_incr(txn, "total", 5, 1, NULL) : rc;
}

/* The fenced processors of these tests would log errors: keep quiet. */
static void quiet(stx_log_level level, const char *line, void *ud)
{
    (void)level;
    (void)line;
    (void)ud;
}

static stx_processor *make_with(const char *stream, const char *group, const char *snapshot,
                                stx_handler_fn handler, void *ud)
{
    stx_config *c = stx_config_new();
    char err[256];
    cr_assert_eq(stx_config_set(c, "url", R.url, err, sizeof err), STX_OK, "%s", err);
    cr_assert_eq(stx_config_set(c, "stream", stream, err, sizeof err), STX_OK);
    cr_assert_eq(stx_config_set(c, "group", group, err, sizeof err), STX_OK);
    cr_assert_eq(stx_config_set(c, "consumer", "c1", err, sizeof err), STX_OK);
    cr_assert_eq(stx_config_set(c, "block_ms", "50", err, sizeof err), STX_OK);
    cr_assert_eq(stx_config_set(c, "log_level", "error", err, sizeof err), STX_OK);
    if (snapshot) cr_assert_eq(stx_config_set(c, "snapshot_dir", snapshot, err, sizeof err), STX_OK);
    stx_config_set_handler(c, handler, ud);
    stx_config_set_log(c, quiet, NULL);
    stx_processor *p;
    cr_assert_eq(stx_processor_new(&p, c), STX_OK, "%s", p ? stx_processor_errmsg(p) : "");
    stx_config_free(c);
    return p;
}

static stx_processor *make(const char *stream, const char *group, const char *snapshot)
{
    return make_with(stream, group, snapshot, count_handler, NULL);
}

static int drain(stx_processor *p)
{
    int total = 0;
    for (;;) {
        int n = stx_processor_poll(p);
        cr_assert(n >= 0, "poll: %s: %s", stx_strerror(n), stx_processor_errmsg(p));
        if (n == 0) return total;
        total += n;
    }
}

/* A fresh processor drains (stream, group); returns how many it committed. */
static int drain_fresh(const char *stream, const char *group)
{
    stx_processor *p = make(stream, group, NULL);
    int n = drain(p);
    stx_processor_free(p);
    return n;
}

static void add_range(redisContext *rc, const char *stream, int from, int to, int keys)
{
    for (int i = from; i <= to; i++)
        freeReplyObject(test_cmd(rc, "XADD %s %d-0 k %d", stream, i, i % keys));
}

static void hget(redisContext *rc, const char *stream, const char *group, const char *kind,
                 const char *field, char *out, size_t cap)
{
    char key[256];
    cr_assert(stx_key_name(key, sizeof key, stream, group, kind) > 0);
    redisReply *r = test_cmd(rc, "HGET %s %s", key, field);
    snprintf(out, cap, "%s", r->type == REDIS_REPLY_STRING ? r->str : "(nil)");
    freeReplyObject(r);
}

static long long state_i64(stx_client *c, const char *stream, const char *group, const char *key)
{
    void *v;
    size_t n;
    int rc = stx_state_read(c, stream, group, key, strlen(key), &v, &n);
    cr_assert_eq(rc, STX_OK, "state %s: %s", key, stx_client_errmsg(c));
    int64_t out;
    cr_assert_eq(stx_mp_read_i64(v, n, &out), STX_OK);
    free(v);
    return out;
}

static long long pending_of(redisContext *rc, const char *stream, const char *group)
{
    redisReply *r = test_cmd(rc, "XPENDING %s %s", stream, group);
    long long n = r->element[0]->integer;
    freeReplyObject(r);
    return n;
}

static void first_id(redisContext *rc, const char *stream, char *out, size_t cap)
{
    redisReply *r = test_cmd(rc, "XRANGE %s - + COUNT 1", stream);
    snprintf(out, cap, "%s", r->elements ? r->element[0]->element[0]->str : "");
    freeReplyObject(r);
}

Test(admin, reset_fences_a_running_processor)
{
    stx_client *c = test_client(&R);
    redisContext *rc = test_redis_connect(&R);
    add_range(rc, "f", 1, 10, 3);
    stx_processor *p = make("f", "g", NULL);
    cr_assert_eq(drain(p), 10);
    uint64_t epoch = stx_processor_epoch(p);
    cr_assert_gt(epoch, 0);
    char lineage[64], now[64];
    hget(rc, "f", "g", "meta", "lineage", lineage, sizeof lineage);

    cr_assert_eq(stx_group_reset(c, "f", "g", "beginning", 0), STX_OK, "%s", stx_client_errmsg(c));
    hget(rc, "f", "g", "meta", "epoch", now, sizeof now);
    cr_assert_eq(strtoull(now, NULL, 10), epoch + 1);
    hget(rc, "f", "g", "meta", "offset", now, sizeof now);
    cr_assert_str_eq(now, "0-0");
    hget(rc, "f", "g", "meta", "lineage", now, sizeof now);
    cr_assert_str_neq(now, lineage);
    cr_assert_eq(strlen(now), 32);

    int rc1 = stx_processor_poll(p);
    cr_assert_eq(rc1, STX_EFENCED, "poll after reset: %s", stx_strerror(rc1));
    cr_assert_eq(stx_processor_poll(p), STX_EFENCED);
    /* Without clear_state the state stays (a replay would add to it). */
    cr_assert_eq(state_i64(c, "f", "g", "total"), 10);
    stx_processor_free(p);
    /* Whatever the fenced one took into its pending list, its successor
     * claims and applies once: the replay adds exactly the ten entries. */
    p = make("f", "g", NULL);
    cr_assert_eq(drain(p), 10);
    cr_assert_eq(state_i64(c, "f", "g", "total"), 20);
    cr_assert_eq(pending_of(rc, "f", "g"), 0);
    stx_processor_free(p);
    redisFree(rc);
    stx_client_free(c);
}

Test(admin, reset_drops_pending_entries)
{
    stx_client *c = test_client(&R);
    redisContext *rc = test_redis_connect(&R);
    add_range(rc, "pd", 1, 8, 2);
    cr_assert_eq(drain_fresh("pd", "g"), 8);
    cr_assert_eq(stx_group_reset(c, "pd", "g", "beginning", 0), STX_OK);
    /* A consumer takes five entries and stalls. */
    redisReply *r = test_cmd(rc, "XREADGROUP GROUP g stuck COUNT 5 STREAMS pd >");
    freeReplyObject(r);
    cr_assert_eq(pending_of(rc, "pd", "g"), 5);
    cr_assert_eq(stx_group_reset(c, "pd", "g", "end", 0), STX_OK, "%s", stx_client_errmsg(c));
    cr_assert_eq(pending_of(rc, "pd", "g"), 0);
    r = test_cmd(rc, "XINFO GROUPS pd");
    redisReply *g = r->element[0];
    for (size_t i = 0; i + 1 < g->elements; i += 2) {
        if (strcmp(g->element[i]->str, "consumers") == 0) cr_assert_eq(g->element[i + 1]->integer, 0);
        if (strcmp(g->element[i]->str, "last-delivered-id") == 0)
            cr_assert_str_eq(g->element[i + 1]->str, "8-0");
    }
    freeReplyObject(r);
    char off[64];
    hget(rc, "pd", "g", "meta", "offset", off, sizeof off);
    cr_assert_str_eq(off, "8-0");
    cr_assert_eq(drain_fresh("pd", "g"), 0);
    redisFree(rc);
    stx_client_free(c);
}

Test(admin, reset_with_clear_state_rebuilds_the_same_state)
{
    stx_client *c = test_client(&R);
    redisContext *rc = test_redis_connect(&R);
    char dir[256];
    test_tmpdir(dir, sizeof dir);
    add_range(rc, "rb", 1, 40, 4);
    stx_processor *p = make("rb", "g", dir);
    cr_assert_eq(drain(p), 40);
    stx_processor_free(p);
    long long before[4];
    for (int k = 0; k < 4; k++) {
        char key[8];
        snprintf(key, sizeof key, "%d", k);
        before[k] = state_i64(c, "rb", "g", key);
        cr_assert_eq(before[k], 10);
    }

    cr_assert_eq(stx_group_reset(c, "rb", "g", "beginning", 1), STX_OK, "%s", stx_client_errmsg(c));
    char state[256];
    stx_key_name(state, sizeof state, "rb", "g", "state");
    cr_assert_eq(test_cmd_int(rc, "EXISTS %s", state), 0);

    /* The snapshot is of the old lineage: it is not trusted. */
    p = make("rb", "g", dir);
    cr_assert_eq(drain(p), 40);
    stx_stats st;
    stx_processor_stats(p, &st);
    cr_assert_eq(st.snapshot_loads, 0);
    cr_assert_eq(st.redis_loads, 1);
    cr_assert_eq(st.duplicates, 0);
    for (int k = 0; k < 4; k++) {
        char key[8];
        snprintf(key, sizeof key, "%d", k);
        cr_assert_eq(state_i64(c, "rb", "g", key), before[k]);
    }
    cr_assert_eq(state_i64(c, "rb", "g", "total"), 40);
    cr_assert_eq(test_cmd_int(rc, "HLEN %s", state), 5);
    cr_assert_str_eq(stx_processor_offset(p), "40-0");
    stx_processor_free(p);
    /* The next start trusts the rebuilt snapshot again. */
    p = make("rb", "g", dir);
    cr_assert_eq(drain(p), 0);
    stx_processor_stats(p, &st);
    cr_assert_eq(st.snapshot_loads, 1);
    stx_processor_free(p);
    test_rmrf(dir);
    redisFree(rc);
    stx_client_free(c);
}

Test(admin, reset_targets)
{
    stx_client *c = test_client(&R);
    redisContext *rc = test_redis_connect(&R);
    static const char *const ids[] = {"1000-0", "2000-0", "2000-1", "3000-0"};
    for (int i = 0; i < 4; i++) freeReplyObject(test_cmd(rc, "XADD t %s k %d", ids[i], i));
    cr_assert_eq(drain_fresh("t", "g"), 4);
    char off[64];
    static const struct {
        const char *to, *offset;
        int replayed;
    } cases[] = {
        {"@2000", "1999-18446744073709551615", 3},
        {"2000-0", "2000-0", 2},
        {"end", "3000-0", 0},
        {"@0", "0-0", 4},
        {"@1", "0-18446744073709551615", 4},
        {"@3001", "3000-18446744073709551615", 0},
        {"beginning", "0-0", 4},
        {"0", "0-0", 4},
        {"2999-7", "2999-7", 1},
    };
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        cr_assert_eq(stx_group_reset(c, "t", "g", cases[i].to, 1), STX_OK, "%s: %s", cases[i].to,
                     stx_client_errmsg(c));
        hget(rc, "t", "g", "meta", "offset", off, sizeof off);
        cr_assert_str_eq(off, cases[i].offset, "reset to %s", cases[i].to);
        cr_assert_eq(drain_fresh("t", "g"), cases[i].replayed, "reset to %s", cases[i].to);
    }
    char epoch[64], now[64];
    hget(rc, "t", "g", "meta", "epoch", epoch, sizeof epoch);
    static const char *const bad[] = {"bogus", "@", "@x", "@-5", "@1-0", "1-", "", "start"};
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
        cr_assert_eq(stx_group_reset(c, "t", "g", bad[i], 0), STX_EINVALID_CURSOR, "'%s'", bad[i]);
        cr_assert(strstr(stx_client_errmsg(c), "bad position"), "%s", stx_client_errmsg(c));
    }
    cr_assert_eq(stx_group_reset(c, "t", "g", NULL, 0), STX_EINVALID_CURSOR);
    cr_assert_eq(stx_group_reset(c, "t", "nogroup", "end", 0), STX_ENOGROUP);
    cr_assert(strstr(stx_client_errmsg(c), "nogroup"), "%s", stx_client_errmsg(c));
    cr_assert_eq(stx_group_reset(c, "nostream", "g", "end", 0), STX_ENOGROUP);
    freeReplyObject(test_cmd(rc, "SET str x"));
    cr_assert_eq(stx_group_reset(c, "str", "g", "end", 0), STX_EWRONGTYPE);
    cr_assert_eq(stx_group_reset(c, "", "g", "end", 0), STX_EINVAL);
    cr_assert_eq(stx_group_reset(c, "t", "", "end", 0), STX_EINVAL);
    /* Failed resets changed nothing. */
    hget(rc, "t", "g", "meta", "offset", off, sizeof off);
    cr_assert_str_eq(off, "3000-0");
    hget(rc, "t", "g", "meta", "epoch", now, sizeof now);
    cr_assert_str_eq(now, epoch);
    redisFree(rc);
    stx_client_free(c);
}

Test(admin, safe_trim_never_removes_unprocessed_entries)
{
    stx_client *c = test_client(&R);
    redisContext *rc = test_redis_connect(&R);
    /* Group a (streamtx) has committed 1..15; 16..20 come later. */
    add_range(rc, "s", 1, 15, 3);
    cr_assert_eq(drain_fresh("s", "a"), 15);
    add_range(rc, "s", 16, 20, 3);
    /* Group b has been delivered 1..12 and acknowledged 1..7. */
    freeReplyObject(test_cmd(rc, "XGROUP CREATE s b 0"));
    freeReplyObject(test_cmd(rc, "XREADGROUP GROUP b c1 COUNT 12 STREAMS s >"));
    cr_assert_eq(test_cmd_int(rc, "XACK s b 1-0 2-0 3-0 4-0 5-0 6-0 7-0"), 7);

    long long deleted = -1;
    char first[64];
    cr_assert_eq(stx_trim_safe(c, "s", 0, 0, &deleted), STX_OK, "%s", stx_client_errmsg(c));
    cr_assert_eq(deleted, 7); /* b's oldest pending entry, 8-0, stays */
    cr_assert_eq(test_cmd_int(rc, "XLEN s"), 13);
    first_id(rc, "s", first, sizeof first);
    cr_assert_str_eq(first, "8-0");
    cr_assert_eq(stx_trim_safe(c, "s", 0, 0, &deleted), STX_OK);
    cr_assert_eq(deleted, 0);

    /* b acknowledges the rest it was given: its position (12-0) bounds. */
    cr_assert_eq(test_cmd_int(rc, "XACK s b 8-0 9-0 10-0 11-0 12-0"), 5);
    cr_assert_eq(stx_trim_safe(c, "s", 0, 0, &deleted), STX_OK);
    cr_assert_eq(deleted, 5);
    first_id(rc, "s", first, sizeof first);
    cr_assert_str_eq(first, "13-0");

    /* A new group at the start holds everything back. */
    freeReplyObject(test_cmd(rc, "XGROUP CREATE s c 0"));
    cr_assert_eq(stx_trim_safe(c, "s", 0, 0, &deleted), STX_OK);
    cr_assert_eq(deleted, 0);
    freeReplyObject(test_cmd(rc, "XGROUP DESTROY s c"));

    /* b reads and acknowledges everything; a's group is moved to the end
     * by hand, but a has committed only up to 15-0: its offset bounds. */
    freeReplyObject(test_cmd(rc, "XREADGROUP GROUP b c1 STREAMS s >"));
    cr_assert_eq(test_cmd_int(rc, "XACK s b 13-0 14-0 15-0 16-0 17-0 18-0 19-0 20-0"), 8);
    freeReplyObject(test_cmd(rc, "XGROUP SETID s a $"));
    cr_assert_eq(stx_trim_safe(c, "s", 0, 0, &deleted), STX_OK);
    cr_assert_eq(deleted, 3);
    first_id(rc, "s", first, sizeof first);
    cr_assert_str_eq(first, "16-0");
    /* What was trimmed is recorded for readers. */
    stx_stream_info *info;
    cr_assert_eq(stx_stream_info_get(c, "s", &info), STX_OK);
    cr_assert_str_eq(info->max_deleted_id, "15-0");
    stx_stream_info_free(info);

    /* a's offset catches up: everything may go. */
    char meta[256];
    stx_key_name(meta, sizeof meta, "s", "a", "meta");
    freeReplyObject(test_cmd(rc, "HSET %s offset 20-0", meta));
    cr_assert_eq(stx_trim_safe(c, "s", 0, 0, &deleted), STX_OK);
    cr_assert_eq(deleted, 5);
    cr_assert_eq(test_cmd_int(rc, "XLEN s"), 0);
    redisFree(rc);
    stx_client_free(c);
}

Test(admin, safe_trim_limits)
{
    stx_client *c = test_client(&R);
    redisContext *rc = test_redis_connect(&R);
    long long deleted = -1;
    /* No group: nothing counts as processed. */
    add_range(rc, "n", 1, 5, 1);
    cr_assert_eq(stx_trim_safe(c, "n", 0, 0, &deleted), STX_OK);
    cr_assert_eq(deleted, 0);
    cr_assert_eq(test_cmd_int(rc, "XLEN n"), 5);

    add_range(rc, "l", 1, 10, 1);
    freeReplyObject(test_cmd(rc, "XGROUP CREATE l g $"));
    cr_assert_eq(stx_trim_safe(c, "l", 4, 0, &deleted), STX_OK, "%s", stx_client_errmsg(c));
    cr_assert_eq(deleted, 6);
    char first[64];
    first_id(rc, "l", first, sizeof first);
    cr_assert_str_eq(first, "7-0");
    cr_assert_eq(stx_trim_safe(c, "l", 10, 0, &deleted), STX_OK);
    cr_assert_eq(deleted, 0);
    /* Five recent entries; the four of 1970 are older than an hour. */
    for (int i = 0; i < 5; i++) freeReplyObject(test_cmd(rc, "XADD l * k 0"));
    freeReplyObject(test_cmd(rc, "XGROUP SETID l g $"));
    /* The age limit alone takes the four old ones. */
    cr_assert_eq(stx_trim_safe(c, "l", 0, 3600000, &deleted), STX_OK);
    cr_assert_eq(deleted, 4);
    cr_assert_eq(test_cmd_int(rc, "XLEN l"), 5);
    /* An entry that breaks either limit goes: maxlen 2 takes three more. */
    cr_assert_eq(stx_trim_safe(c, "l", 2, 3600000, &deleted), STX_OK);
    cr_assert_eq(deleted, 3);
    cr_assert_eq(test_cmd_int(rc, "XLEN l"), 2);
    cr_assert_eq(stx_trim_safe(c, "l", 2, 0, &deleted), STX_OK);
    cr_assert_eq(deleted, 0);

    cr_assert_eq(stx_trim_safe(c, "missing", 0, 0, &deleted), STX_OK);
    cr_assert_eq(deleted, 0);
    freeReplyObject(test_cmd(rc, "SET str x"));
    cr_assert_eq(stx_trim_safe(c, "str", 0, 0, &deleted), STX_EWRONGTYPE);
    cr_assert_eq(stx_trim_safe(c, "l", -1, 0, &deleted), STX_EINVAL);
    cr_assert_eq(stx_trim_safe(c, "l", 0, -1, NULL), STX_EINVAL);
    cr_assert_eq(stx_trim_safe(c, "l", 0, 0, NULL), STX_OK);
    redisFree(rc);
    stx_client_free(c);
}

struct scan_ctx {
    long calls;
    long stop_after;
    char seen[2500];
};

static int scan_fn(void *ud, const void *key, size_t key_len, const void *value, size_t value_len)
{
    struct scan_ctx *s = ud;
    char buf[16];
    cr_assert(key_len > 2 && key_len < sizeof buf);
    memcpy(buf, key, key_len);
    buf[key_len] = '\0';
    int i = atoi(buf + 2);
    cr_assert(i >= 0 && i < 2500 && !s->seen[i], "key %s twice", buf);
    s->seen[i] = 1;
    cr_assert_eq(value_len, 1);
    cr_assert_eq(((const unsigned char *)value)[0], (unsigned)(i % 100));
    return ++s->calls == s->stop_after ? 7 : 0;
}

Test(admin, state_read_and_scan)
{
    stx_client *c = test_client(&R);
    redisContext *rc = test_redis_connect(&R);
    add_range(rc, "st", 1, 9, 3);
    cr_assert_eq(drain_fresh("st", "g"), 9);
    cr_assert_eq(state_i64(c, "st", "g", "total"), 9);
    cr_assert_eq(state_i64(c, "st", "g", "2"), 3);
    void *v = NULL;
    size_t n;
    cr_assert_eq(stx_state_read(c, "st", "g", "nope", 4, &v, &n), STX_ENOTFOUND);
    cr_assert_null(v);
    cr_assert(strstr(stx_client_errmsg(c), "'nope'"), "%s", stx_client_errmsg(c));
    cr_assert_eq(stx_state_read(c, "st", "other", "total", 5, &v, &n), STX_ENOTFOUND);

    /* A binary key, and 2500 keys so that HSCAN pages. */
    char state[256];
    stx_key_name(state, sizeof state, "big", "g", "state");
    static const char bkey[] = {'a', '\0', 'b'};
    redisReply *r = redisCommand(rc, "HSET %s %b %b", state, bkey, sizeof bkey, "\x05", (size_t)1);
    cr_assert(r && r->type == REDIS_REPLY_INTEGER);
    freeReplyObject(r);
    cr_assert_eq(stx_state_read(c, "big", "g", bkey, sizeof bkey, &v, &n), STX_OK);
    cr_assert_eq(n, 1);
    cr_assert_eq(((unsigned char *)v)[0], 5);
    free(v);
    freeReplyObject(test_cmd(rc, "DEL %s", state));
    for (int i = 0; i < 2500; i++) {
        char key[16], val = (char)(i % 100);
        snprintf(key, sizeof key, "k:%d", i);
        cr_assert_eq(redisAppendCommand(rc, "HSET %s %s %b", state, key, &val, (size_t)1), REDIS_OK);
    }
    for (int i = 0; i < 2500; i++) {
        void *rep;
        cr_assert_eq(redisGetReply(rc, &rep), REDIS_OK);
        freeReplyObject(rep);
    }
    struct scan_ctx *s = calloc(1, sizeof *s);
    cr_assert_eq(stx_state_scan(c, "big", "g", scan_fn, s), STX_OK, "%s", stx_client_errmsg(c));
    cr_assert_eq(s->calls, 2500);
    memset(s, 0, sizeof *s);
    s->stop_after = 10;
    cr_assert_eq(stx_state_scan(c, "big", "g", scan_fn, s), 7);
    cr_assert_eq(s->calls, 10);
    memset(s, 0, sizeof *s);
    cr_assert_eq(stx_state_scan(c, "big", "none", scan_fn, s), STX_OK);
    cr_assert_eq(s->calls, 0);
    free(s);
    cr_assert_eq(stx_state_scan(c, "big", "g", NULL, NULL), STX_EINVAL);
    redisFree(rc);
    stx_client_free(c);
}

static const stx_group_info *group_named(const stx_stream_info *info, const char *name)
{
    for (size_t i = 0; i < info->ngroups; i++)
        if (strcmp(info->groups[i].name, name) == 0) return &info->groups[i];
    cr_assert_fail("no group %s", name);
    return NULL;
}

Test(admin, stream_info_numbers_are_exact)
{
    stx_client *c = test_client(&R);
    redisContext *rc = test_redis_connect(&R);
    add_range(rc, "i", 1, 10, 3);
    cr_assert_eq(drain_fresh("i", "tx"), 10);
    freeReplyObject(test_cmd(rc, "XGROUP CREATE i plain 0"));
    freeReplyObject(test_cmd(rc, "XREADGROUP GROUP plain c1 COUNT 4 STREAMS i >"));
    char dlq[256];
    stx_key_name(dlq, sizeof dlq, "i", "tx", "dlq");
    freeReplyObject(test_cmd(rc, "XADD %s * a 1", dlq));
    freeReplyObject(test_cmd(rc, "XADD %s * a 2", dlq));

    stx_stream_info *info;
    cr_assert_eq(stx_stream_info_get(c, "i", &info), STX_OK, "%s", stx_client_errmsg(c));
    cr_assert_eq(info->length, 10);
    cr_assert_eq(info->entries_added, 10);
    cr_assert_str_eq(info->first_id, "1-0");
    cr_assert_str_eq(info->last_id, "10-0");
    cr_assert_str_eq(info->max_deleted_id, "0-0");
    cr_assert_eq(info->ngroups, 2);
    const stx_group_info *tx = group_named(info, "tx"), *plain = group_named(info, "plain");
    cr_assert_str_eq(tx->last_delivered, "10-0");
    cr_assert_str_eq(tx->offset, "10-0");
    cr_assert_eq(tx->lag, 0);
    cr_assert_eq(tx->pending, 0);
    cr_assert_eq(tx->epoch, 1);
    cr_assert_eq(tx->state_keys, 4); /* "0", "1", "2", "total" */
    cr_assert_eq(tx->dlq_length, 2);
    cr_assert_str_eq(plain->last_delivered, "4-0");
    cr_assert_str_eq(plain->offset, "");
    cr_assert_eq(plain->lag, 6);
    cr_assert_eq(plain->pending, 4);
    cr_assert_eq(plain->epoch, 0);
    cr_assert_eq(plain->state_keys, 0);
    cr_assert_eq(plain->dlq_length, 0);
    stx_stream_info_free(info);

    /* After a trim and a reset. */
    cr_assert_eq(test_cmd_int(rc, "XACK i plain 1-0 2-0 3-0 4-0"), 4);
    long long deleted;
    cr_assert_eq(stx_trim_safe(c, "i", 0, 0, &deleted), STX_OK);
    cr_assert_eq(deleted, 4);
    cr_assert_eq(stx_group_reset(c, "i", "tx", "end", 1), STX_OK);
    cr_assert_eq(stx_stream_info_get(c, "i", &info), STX_OK);
    cr_assert_eq(info->length, 6);
    cr_assert_eq(info->entries_added, 10);
    cr_assert_str_eq(info->first_id, "5-0");
    cr_assert_str_eq(info->max_deleted_id, "4-0");
    tx = group_named(info, "tx");
    cr_assert_eq(tx->epoch, 2);
    cr_assert_eq(tx->state_keys, 0);
    cr_assert_str_eq(tx->offset, "10-0");
    stx_stream_info_free(info);

    /* Empty stream. */
    freeReplyObject(test_cmd(rc, "XADD e 5-0 a 1"));
    freeReplyObject(test_cmd(rc, "XDEL e 5-0"));
    cr_assert_eq(stx_stream_info_get(c, "e", &info), STX_OK);
    cr_assert_eq(info->length, 0);
    cr_assert_str_eq(info->first_id, "");
    cr_assert_str_eq(info->last_id, "");
    cr_assert_str_eq(info->max_deleted_id, "5-0");
    cr_assert_eq(info->ngroups, 0);
    stx_stream_info_free(info);

    info = (stx_stream_info *)1;
    cr_assert_eq(stx_stream_info_get(c, "missing", &info), STX_ENOTFOUND);
    cr_assert_null(info);
    freeReplyObject(test_cmd(rc, "SET str x"));
    cr_assert_eq(stx_stream_info_get(c, "str", &info), STX_EWRONGTYPE);
    stx_stream_info_free(NULL);
    redisFree(rc);
    stx_client_free(c);
}

/* A script of lua/ as Redis receives it: "-- #include FILE" lines replaced
 * by lua/FILE, as lua/embed.cmake does. */
static void lua_script(const char *name, char *out, size_t cap)
{
    char path[512];
    snprintf(path, sizeof path, "%s/lua/%s", STX_SOURCE_DIR, name);
    FILE *f = fopen(path, "rb");
    cr_assert(f, "%s", path);
    size_t o = 0;
    char line[1024];
    while (fgets(line, sizeof line, f)) {
        char inc[256];
        if (sscanf(line, "-- #include %255s", inc) == 1) {
            lua_script(inc, out + o, cap - o);
            o += strlen(out + o);
            continue;
        }
        size_t n = strlen(line);
        cr_assert(o + n < cap, "%s is too large for the buffer", name);
        memcpy(out + o, line, n + 1);
        o += n;
    }
    fclose(f);
    out[o] = '\0';
}

/* The reset script on its own, with an id the C side would never send (too
 * large for 64 bits): it must refuse before destroying the group. */
Test(admin, reset_script_refuses_a_bad_id_before_any_write)
{
    redisContext *rc = test_redis_connect(&R);
    add_range(rc, "rs", 1, 3, 1);
    freeReplyObject(test_cmd(rc, "XGROUP CREATE rs g 0"));
    static char script[32768];
    lua_script("reset.lua", script, sizeof script);
    char meta[256], state[256];
    stx_key_name(meta, sizeof meta, "rs", "g", "meta");
    stx_key_name(state, sizeof state, "rs", "g", "state");
    redisReply *r = redisCommand(rc, "EVAL %s 4 rs %s %s rs-attempts g 99999999999999999999999-0 "
                                 "abc 0 0 0", script, meta, state);
    cr_assert(r && r->type == REDIS_REPLY_ARRAY && r->elements >= 1);
    cr_assert_str_eq(r->element[0]->str, "BADARGS");
    freeReplyObject(r);
    r = test_cmd(rc, "XINFO GROUPS rs");
    cr_assert_eq(r->elements, 1, "the group was destroyed");
    freeReplyObject(r);
    cr_assert_eq(test_cmd_int(rc, "EXISTS %s", meta), 0);
    redisFree(rc);
}

/* ---- reset: publishes, trimmed history, fencing fields ----------------- */

/* Counts per "k" and publishes one alert per entry to the stream ud names. */
static int count_publish_handler(const stx_msg *msg, stx_txn *txn, void *ud)
{
    int rc = count_handler(msg, txn, NULL);
    if (rc != STX_OK) return rc;
    size_t klen;
    const char *k = stx_msg_get(msg, "k", &klen);
    return stx_txn_publishv(txn, (const char *)ud, "k", k, NULL);
}

/* How many entries of stream carry each causation_id: *n entries, *most
 * the highest count of one causation_id. */
static void causations(redisContext *rc, const char *stream, long long *n, long long *most)
{
    redisReply *r = test_cmd(rc, "XRANGE %s - +", stream);
    *n = (long long)r->elements;
    *most = 0;
    for (size_t i = 0; i < r->elements; i++) {
        const redisReply *f = r->element[i]->element[1];
        const char *ci = NULL;
        for (size_t j = 0; j + 1 < f->elements; j += 2)
            if (strcmp(f->element[j]->str, "causation_id") == 0) ci = f->element[j + 1]->str;
        cr_assert(ci, "entry %zu of %s has no causation_id", i, stream);
        long long same = 0;
        for (size_t m = 0; m < r->elements; m++) {
            const redisReply *g = r->element[m]->element[1];
            for (size_t j = 0; j + 1 < g->elements; j += 2)
                if (strcmp(g->element[j]->str, "causation_id") == 0 &&
                    strcmp(g->element[j + 1]->str, ci) == 0)
                    same++;
        }
        if (same > *most) *most = same;
    }
    freeReplyObject(r);
}

static int drain_publishing(const char *stream, const char *group, const char *out)
{
    stx_processor *p = make_with(stream, group, NULL, count_publish_handler, (void *)out);
    int n = drain(p);
    stx_processor_free(p);
    return n;
}

/* The rebuild of the README ("reset --to beginning --clear-state") gives the
 * same state and sends no publish a second time.  This needs commit.lua to
 * drop the publishes of entries at or below the meta field replay_until,
 * which the reset sets. */
Test(admin, rebuild_gives_the_same_state_and_does_not_publish_again)
{
    stx_client *c = test_client(&R);
    redisContext *rc = test_redis_connect(&R);
    add_range(rc, "rp", 1, 12, 3);
    cr_assert_eq(drain_publishing("rp", "g", "rp-alerts"), 12);
    long long n, most;
    causations(rc, "rp-alerts", &n, &most);
    cr_assert_eq(n, 12);
    cr_assert_eq(most, 1);

    cr_assert_eq(stx_group_reset(c, "rp", "g", "beginning", STX_RESET_CLEAR_STATE), STX_OK, "%s",
                 stx_client_errmsg(c));
    char until[64];
    hget(rc, "rp", "g", "meta", "replay_until", until, sizeof until);
    cr_assert_str_eq(until, "12-0");
    cr_assert_eq(drain_publishing("rp", "g", "rp-alerts"), 12);
    for (int k = 0; k < 3; k++) {
        char key[8];
        snprintf(key, sizeof key, "%d", k);
        cr_assert_eq(state_i64(c, "rp", "g", key), 4);
    }
    cr_assert_eq(state_i64(c, "rp", "g", "total"), 12);
    causations(rc, "rp-alerts", &n, &most);
    cr_assert_eq(most, 1, "the rebuild published an alert a second time (same causation_id)");
    cr_assert_eq(n, 12);

    /* Entries after the bound publish as usual. */
    add_range(rc, "rp", 13, 14, 3);
    cr_assert_eq(drain_publishing("rp", "g", "rp-alerts"), 2);
    causations(rc, "rp-alerts", &n, &most);
    cr_assert_eq(n, 14);
    cr_assert_eq(most, 1);
    redisFree(rc);
    stx_client_free(c);
}

Test(admin, rebuild_with_reemit_publishes_again)
{
    stx_client *c = test_client(&R);
    redisContext *rc = test_redis_connect(&R);
    add_range(rc, "re", 1, 6, 2);
    cr_assert_eq(drain_publishing("re", "g", "re-alerts"), 6);
    /* A first rebuild leaves a bound behind; --reemit removes it. */
    cr_assert_eq(stx_group_reset(c, "re", "g", "beginning", STX_RESET_CLEAR_STATE), STX_OK);
    cr_assert_eq(stx_group_reset(c, "re", "g", "beginning",
                                 STX_RESET_CLEAR_STATE | STX_RESET_REEMIT),
                 STX_OK, "%s", stx_client_errmsg(c));
    char until[64];
    hget(rc, "re", "g", "meta", "replay_until", until, sizeof until);
    cr_assert_str_eq(until, "(nil)");
    cr_assert_eq(drain_publishing("re", "g", "re-alerts"), 6);
    cr_assert_eq(state_i64(c, "re", "g", "total"), 6);
    long long n, most;
    causations(rc, "re-alerts", &n, &most);
    cr_assert_eq(n, 12);
    cr_assert_eq(most, 2);
    cr_assert_eq(stx_group_reset(c, "re", "g", "beginning", 8), STX_EINVAL);
    redisFree(rc);
    stx_client_free(c);
}

/* The bound is the highest offset ever reached before a reset, recorded
 * with the reset; a reset deletes the epoch holder's token and the
 * handler-attempt counters. */
Test(admin, reset_records_the_replay_bound_and_fences)
{
    stx_client *c = test_client(&R);
    redisContext *rc = test_redis_connect(&R);
    add_range(rc, "rr", 1, 10, 2);
    cr_assert_eq(drain_fresh("rr", "g"), 10);
    char meta[256], attempts[256], v[64];
    stx_key_name(meta, sizeof meta, "rr", "g", "meta");
    cr_assert(stx_key_name(attempts, sizeof attempts, "rr", "g", "attempts") > 0);
    freeReplyObject(test_cmd(rc, "HSET %s token abcd", meta));
    freeReplyObject(test_cmd(rc, "HSET %s 3-0 2", attempts));

    /* Not clearing: the state is kept, and the bound is recorded too. */
    cr_assert_eq(stx_group_reset(c, "rr", "g", "4-0", 0), STX_OK, "%s", stx_client_errmsg(c));
    hget(rc, "rr", "g", "meta", "replay_until", v, sizeof v);
    cr_assert_str_eq(v, "10-0");
    hget(rc, "rr", "g", "meta", "token", v, sizeof v);
    cr_assert_str_eq(v, "(nil)");
    cr_assert_eq(test_cmd_int(rc, "EXISTS %s", attempts), 0);
    cr_assert_eq(state_i64(c, "rr", "g", "total"), 10);

    /* Lower offsets do not lower it. */
    cr_assert_eq(stx_group_reset(c, "rr", "g", "2-0", STX_RESET_CLEAR_STATE), STX_OK);
    cr_assert_eq(stx_group_reset(c, "rr", "g", "beginning", STX_RESET_CLEAR_STATE), STX_OK);
    hget(rc, "rr", "g", "meta", "replay_until", v, sizeof v);
    cr_assert_str_eq(v, "10-0");
    /* A reset past it: nothing under it is delivered again, so no bound. */
    cr_assert_eq(stx_group_reset(c, "rr", "g", "end", 0), STX_OK);
    hget(rc, "rr", "g", "meta", "replay_until", v, sizeof v);
    cr_assert_str_eq(v, "(nil)");

    /* A malformed stored offset: refused before any write. */
    hget(rc, "rr", "g", "meta", "epoch", v, sizeof v);
    freeReplyObject(test_cmd(rc, "HSET %s offset bogus", meta));
    cr_assert_eq(stx_group_reset(c, "rr", "g", "beginning", 0), STX_EINVAL);
    cr_assert(strstr(stx_client_errmsg(c), "offset"), "%s", stx_client_errmsg(c));
    char now[64];
    hget(rc, "rr", "g", "meta", "epoch", now, sizeof now);
    cr_assert_str_eq(now, v);
    redisFree(rc);
    stx_client_free(c);
}

/* After `stx trim --safe` removed entries after the target, a clearing
 * reset would rebuild a different state: refused unless forced. */
Test(admin, clearing_reset_after_a_trim_is_refused_unless_forced)
{
    stx_client *c = test_client(&R);
    redisContext *rc = test_redis_connect(&R);
    add_range(rc, "tr", 1, 10, 2);
    cr_assert_eq(drain_fresh("tr", "g"), 10);
    long long deleted;
    cr_assert_eq(stx_trim_safe(c, "tr", 4, 0, &deleted), STX_OK, "%s", stx_client_errmsg(c));
    cr_assert_eq(deleted, 6);
    char epoch[64], now[64], state[256];
    hget(rc, "tr", "g", "meta", "epoch", epoch, sizeof epoch);
    stx_key_name(state, sizeof state, "tr", "g", "state");

    static const char *const gone[] = {"beginning", "3-0", "5-0"};
    for (size_t i = 0; i < 3; i++) {
        cr_assert_eq(stx_group_reset(c, "tr", "g", gone[i], STX_RESET_CLEAR_STATE),
                     STX_EWINDOW_EXPIRED, "%s", gone[i]);
        const char *m = stx_client_errmsg(c);
        cr_assert(strstr(m, "trimmed or deleted") && strstr(m, "--force") &&
                      strstr(m, "different state") && strstr(m, "first retained entry is 7-0"),
                  "%s", m);
    }
    /* Nothing changed. */
    hget(rc, "tr", "g", "meta", "epoch", now, sizeof now);
    cr_assert_str_eq(now, epoch);
    cr_assert_eq(test_cmd_int(rc, "HLEN %s", state), 3);
    hget(rc, "tr", "g", "meta", "offset", now, sizeof now);
    cr_assert_str_eq(now, "10-0");

    /* From the last trimmed entry on, nothing after the target is gone. */
    cr_assert_eq(stx_group_reset(c, "tr", "g", "6-0", STX_RESET_CLEAR_STATE), STX_OK, "%s",
                 stx_client_errmsg(c));
    cr_assert_eq(drain_fresh("tr", "g"), 4);
    cr_assert_eq(state_i64(c, "tr", "g", "total"), 4);
    /* Without clearing it is allowed (the state is kept). */
    cr_assert_eq(stx_group_reset(c, "tr", "g", "beginning", 0), STX_OK, "%s",
                 stx_client_errmsg(c));
    /* Forced: the state is what the retained entries give. */
    cr_assert_eq(stx_group_reset(c, "tr", "g", "beginning",
                                 STX_RESET_CLEAR_STATE | STX_RESET_FORCE),
                 STX_OK, "%s", stx_client_errmsg(c));
    cr_assert_eq(drain_fresh("tr", "g"), 4);
    cr_assert_eq(state_i64(c, "tr", "g", "total"), 4);

    /* A single XDEL after the target counts as well. */
    freeReplyObject(test_cmd(rc, "XDEL tr 9-0"));
    cr_assert_eq(stx_group_reset(c, "tr", "g", "8-0", STX_RESET_CLEAR_STATE), STX_EWINDOW_EXPIRED);
    cr_assert_eq(stx_group_reset(c, "tr", "g", "9-0", STX_RESET_CLEAR_STATE), STX_OK, "%s",
                 stx_client_errmsg(c));
    /* Everything trimmed: from the start it is refused, at the end fine. */
    add_range(rc, "te", 1, 3, 1);
    cr_assert_eq(drain_fresh("te", "g"), 3);
    cr_assert_eq(stx_trim_safe(c, "te", 0, 0, &deleted), STX_OK);
    cr_assert_eq(deleted, 3);
    cr_assert_eq(stx_group_reset(c, "te", "g", "beginning", STX_RESET_CLEAR_STATE),
                 STX_EWINDOW_EXPIRED);
    cr_assert_eq(stx_group_reset(c, "te", "g", "end", STX_RESET_CLEAR_STATE), STX_OK);
    redisFree(rc);
    stx_client_free(c);
}
