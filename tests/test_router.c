/* The router: glob patterns on the "type" field, every matching handler in
 * one transaction, unmatched events acknowledged or failed. */
#include <criterion/criterion.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "harness.h"
#include "streamtx.h"

static test_redis R;

static void setup(void) { test_redis_start(&R, 0, NULL); }
static void teardown(void) { test_redis_stop(&R); }

TestSuite(router, .init = setup, .fini = teardown, .timeout = 120);

static int flag_handler(const stx_msg *msg, stx_txn *txn, void *ud)
{
    (void)msg;
    (void)txn;
    (*(int *)ud)++;
    return STX_HANDLER_OK;
}

/* Types as entries of stream "types" (binary-safe), read back as messages. */
enum {
    T_ORDER_CREATED, T_ORDER_CREATED2, T_ORDER_CREATE, T_ORDER_DOT, T_ORDER_X_Y, T_ORDERS_X,
    T_EMPTY, T_RDER_X, T_A_CREATED, T_DOT_CREATED, T_CREATED, T_ABC, T_AXBYC, T_ACB, T_ABCBC,
    T_BRACKETS, T_A, T_A_NUL_C, T_X, NTYPES,
    UNTYPED = NTYPES /* the entry after them has no type field */
};
static const struct {
    const char *bytes;
    size_t len;
} TYPES[NTYPES] = {
    [T_ORDER_CREATED] = {"order.created", 13}, [T_ORDER_CREATED2] = {"order.created2", 14},
    [T_ORDER_CREATE] = {"order.create", 12},   [T_ORDER_DOT] = {"order.", 6},
    [T_ORDER_X_Y] = {"order.x.y", 9},          [T_ORDERS_X] = {"orders.x", 8},
    [T_EMPTY] = {"", 0},                       [T_RDER_X] = {"rder.x", 6},
    [T_A_CREATED] = {"a.created", 9},          [T_DOT_CREATED] = {".created", 8},
    [T_CREATED] = {"created", 7},              [T_ABC] = {"abc", 3},
    [T_AXBYC] = {"aXbYc", 5},                  [T_ACB] = {"acb", 3},
    [T_ABCBC] = {"abcbc", 5},                  [T_BRACKETS] = {"[ab]", 4},
    [T_A] = {"a", 1},                          [T_A_NUL_C] = {"a\0c", 3},
    [T_X] = {"x", 1},
};

/* Does pattern match entry i of e (TYPES order, then one without a type)? */
static int matches(const char *pattern, const stx_entries *e, int i)
{
    stx_router *r = stx_router_new();
    cr_assert_not_null(r);
    int hits = 0;
    cr_assert_eq(stx_router_add(r, pattern, flag_handler, &hits), STX_OK);
    stx_router_set_unmatched_fail(r, 1);
    int verdict = stx_router_handle(stx_entries_at(e, (size_t)i), NULL, r);
    stx_router_free(r);
    cr_assert_eq(verdict, hits ? STX_HANDLER_OK : STX_HANDLER_FAIL);
    return hits;
}

Test(router, glob_patterns)
{
    redisContext *rc = test_redis_connect(&R);
    for (int i = 0; i < NTYPES; i++) {
        redisReply *x = redisCommand(rc, "XADD types * type %b", TYPES[i].bytes, TYPES[i].len);
        cr_assert(x && x->type == REDIS_REPLY_STRING);
        freeReplyObject(x);
    }
    freeReplyObject(test_cmd(rc, "XADD types * other 1"));
    stx_client *c = test_client(&R);
    stx_entries *e;
    cr_assert_eq(stx_read_range(c, "types", "0", NULL, 0, &e), STX_OK);
    cr_assert_eq(stx_entries_count(e), NTYPES + 1);

    static const struct {
        const char *pattern;
        int yes[NTYPES + 1]; /* the types that match, ended by -1; no others do */
    } cases[] = {
        {"order.created", {T_ORDER_CREATED, -1}},
        {"order.*", {T_ORDER_CREATED, T_ORDER_CREATED2, T_ORDER_CREATE, T_ORDER_DOT, T_ORDER_X_Y, -1}},
        {"?rder.*", {T_ORDER_CREATED, T_ORDER_CREATED2, T_ORDER_CREATE, T_ORDER_DOT, T_ORDER_X_Y, -1}},
        {"*.created", {T_ORDER_CREATED, T_A_CREATED, T_DOT_CREATED, -1}},
        {"a*b*c", {T_ABC, T_AXBYC, T_ABCBC, -1}},
        {"a?c", {T_ABC, T_A_NUL_C, -1}},
        {"[ab]", {T_BRACKETS, -1}}, /* no character classes: literal */
        {"a**", {T_A_CREATED, T_ABC, T_AXBYC, T_ACB, T_ABCBC, T_A, T_A_NUL_C, -1}},
        {"", {T_EMPTY, -1}},
        {"?", {T_A, T_X, -1}},
        {"*c*", {T_ORDER_CREATED, T_ORDER_CREATED2, T_ORDER_CREATE, T_A_CREATED, T_DOT_CREATED,
                 T_CREATED, T_ABC, T_AXBYC, T_ACB, T_ABCBC, T_A_NUL_C, -1}},
    };
    for (size_t k = 0; k < sizeof cases / sizeof cases[0]; k++) {
        char want[NTYPES] = {0};
        for (int j = 0; cases[k].yes[j] >= 0; j++) want[cases[k].yes[j]] = 1;
        for (int i = 0; i < NTYPES; i++)
            cr_assert_eq(matches(cases[k].pattern, e, i), want[i], "pattern '%s' type %d",
                         cases[k].pattern, i);
    }
    /* An entry without a type is matched as the empty type. */
    cr_assert_eq(matches("*", e, UNTYPED), 1);
    cr_assert_eq(matches("", e, UNTYPED), 1);
    cr_assert_eq(matches("?*", e, UNTYPED), 0);
    /* "*" takes everything. */
    for (int i = 0; i < NTYPES; i++) cr_assert_eq(matches("*", e, i), 1);
    stx_entries_free(e);

    /* A pattern that would make a recursive matcher backtrack for ages. */
    char *text = malloc(20001);
    memset(text, 'a', 20000);
    text[20000] = '\0';
    redisReply *x = redisCommand(rc, "XADD long * type %s", text);
    freeReplyObject(x);
    free(text);
    cr_assert_eq(stx_read_range(c, "long", "0", NULL, 0, &e), STX_OK);
    int64_t t0 = test_now_ms();
    cr_assert_eq(matches("a*a*a*a*a*a*a*a*a*a*a*a*b", e, 0), 0);
    cr_assert_eq(matches("*a*a*a*a*a*a*a*a*a*a*a*a", e, 0), 1);
    cr_assert_lt(test_now_ms() - t0, 2000);
    stx_entries_free(e);
    stx_client_free(c);
    redisFree(rc);
}

Test(router, api_errors)
{
    stx_router *r = stx_router_new();
    cr_assert_not_null(r);
    int hits = 0;
    cr_assert_eq(stx_router_add(NULL, "*", flag_handler, &hits), STX_EINVAL);
    cr_assert_eq(stx_router_add(r, NULL, flag_handler, &hits), STX_EINVAL);
    cr_assert_eq(stx_router_add(r, "*", NULL, &hits), STX_EINVAL);
    for (int i = 0; i < 100; i++) cr_assert_eq(stx_router_add(r, "*", flag_handler, &hits), STX_OK);
    stx_router_free(r);
    stx_router_free(NULL);
}

/* ---- with a processor ---------------------------------------------------- */

struct call_log {
    char names[64];
    int n;
};

struct route {
    char name;
    struct call_log *log;
    int fail;    /* 0 no, 1 transient (STX_HANDLER_RETRY), 2 permanent */
    int publish;
};

static int route_handler(const stx_msg *msg, stx_txn *txn, void *ud)
{
    struct route *r = ud;
    if (r->log->n < (int)sizeof r->log->names - 1) r->log->names[r->log->n++] = r->name;
    if (r->fail) {
        stx_txn_fail(txn, "%c refuses %s", r->name, stx_msg_id(msg));
        return r->fail == 1 ? STX_HANDLER_RETRY : STX_HANDLER_FAIL;
    }
    int rc = stx_txn_incr(txn, &r->name, 1, 1, NULL);
    if (rc != STX_OK) return rc;
    if (r->publish) {
        char by[2] = {r->name, '\0'};
        return stx_txn_publishv(txn, "{rt}audit", "by", by, NULL);
    }
    return STX_HANDLER_OK;
}

static void quiet(stx_log_level level, const char *line, void *ud)
{
    (void)level;
    (void)line;
    (void)ud;
}

static stx_processor *make(const char *stream, stx_router *router)
{
    stx_config *c = stx_config_new();
    char err[256];
    cr_assert_eq(stx_config_set(c, "url", R.url, err, sizeof err), STX_OK, "%s", err);
    cr_assert_eq(stx_config_set(c, "stream", stream, err, sizeof err), STX_OK);
    cr_assert_eq(stx_config_set(c, "group", "g", err, sizeof err), STX_OK);
    cr_assert_eq(stx_config_set(c, "consumer", "c1", err, sizeof err), STX_OK);
    cr_assert_eq(stx_config_set(c, "block_ms", "20", err, sizeof err), STX_OK);
    stx_config_set_handler(c, stx_router_handle, router);
    stx_config_set_log(c, quiet, NULL);
    stx_processor *p;
    cr_assert_eq(stx_processor_new(&p, c), STX_OK, "%s", p ? stx_processor_errmsg(p) : "");
    stx_config_free(c);
    return p;
}

static long long state_of(redisContext *rc, const char *stream, const char *key)
{
    char name[256];
    cr_assert(stx_key_name(name, sizeof name, stream, "g", "state") > 0);
    redisReply *r = test_cmd(rc, "HGET %s %s", name, key);
    int64_t v = -1;
    if (r->type == REDIS_REPLY_STRING) cr_assert_eq(stx_mp_read_i64(r->str, r->len, &v), STX_OK);
    freeReplyObject(r);
    return v; /* -1: absent */
}

static long long pending_of(redisContext *rc, const char *stream)
{
    redisReply *r = test_cmd(rc, "XPENDING %s g", stream);
    long long n = r->element[0]->integer;
    freeReplyObject(r);
    return n;
}

static long long dlq_length(redisContext *rc, const char *stream)
{
    char name[256];
    cr_assert(stx_key_name(name, sizeof name, stream, "g", "dlq") > 0);
    return test_cmd_int(rc, "XLEN %s", name);
}

/* Poll until want entries were committed (a failed entry is retried after
 * a backoff) or 10 s passed; returns how many were. */
static int poll_until(stx_processor *p, int want)
{
    int committed = 0;
    int64_t deadline = test_now_ms() + 10000;
    while (committed < want && test_now_ms() < deadline) {
        int got = stx_processor_poll(p);
        cr_assert(got >= 0, "poll: %s: %s", stx_strerror(got), stx_processor_errmsg(p));
        committed += got;
    }
    return committed;
}

Test(router, matching_handlers_commit_together_or_not_at_all)
{
    redisContext *rc = test_redis_connect(&R);
    static const char *const types[] = {"order.created", "user.signup", "order.cancelled",
                                        "order.created"};
    for (int i = 0; i < 4; i++) freeReplyObject(test_cmd(rc, "XADD {rt}in * type %s", types[i]));
    struct call_log log = {{0}, 0};
    struct route a = {'A', &log, 0, 1}, b = {'B', &log, 0, 0}, cc = {'C', &log, 1, 0};
    stx_router *r = stx_router_new();
    cr_assert_eq(stx_router_add(r, "order.*", route_handler, &a), STX_OK);
    cr_assert_eq(stx_router_add(r, "*", route_handler, &b), STX_OK);
    cr_assert_eq(stx_router_add(r, "order.cancelled", route_handler, &cc), STX_OK);
    stx_processor *p = make("{rt}in", r);

    /* C fails for a while on the third entry. */
    int got = stx_processor_poll(p);
    cr_assert_eq(got, STX_EHANDLER, "poll: %s: %s", stx_strerror(got), stx_processor_errmsg(p));
    cr_assert(strstr(stx_processor_errmsg(p), "C refuses"), "%s", stx_processor_errmsg(p));
    cr_assert_str_eq(log.names, "ABBABC"); /* registration order, per entry */
    /* The first two entries committed; of the third, neither A's counter
     * nor A's publish nor B's counter. */
    cr_assert_eq(state_of(rc, "{rt}in", "A"), 1);
    cr_assert_eq(state_of(rc, "{rt}in", "B"), 2);
    cr_assert_eq(state_of(rc, "{rt}in", "C"), -1);
    cr_assert_eq(test_cmd_int(rc, "XLEN {rt}audit"), 1);
    cr_assert_eq(pending_of(rc, "{rt}in"), 2);
    stx_stats st;
    stx_processor_stats(p, &st);
    cr_assert_eq(st.committed, 2);

    /* Once C accepts, the rest goes through, all handlers together. */
    cc.fail = 0;
    cr_assert_eq(poll_until(p, 2), 2);
    cr_assert_eq(state_of(rc, "{rt}in", "A"), 3);
    cr_assert_eq(state_of(rc, "{rt}in", "B"), 4);
    cr_assert_eq(state_of(rc, "{rt}in", "C"), 1);
    cr_assert_eq(test_cmd_int(rc, "XLEN {rt}audit"), 3);
    cr_assert_eq(pending_of(rc, "{rt}in"), 0);

    /* A permanent failure of C: the entry is dead-lettered, and again
     * nothing of A or B is written for it. */
    cc.fail = 2;
    freeReplyObject(test_cmd(rc, "XADD {rt}in * type order.cancelled"));
    got = stx_processor_poll(p);
    cr_assert_eq(got, STX_EHANDLER, "poll: %s: %s", stx_strerror(got), stx_processor_errmsg(p));
    cr_assert_eq(dlq_length(rc, "{rt}in"), 1);
    cr_assert_eq(state_of(rc, "{rt}in", "A"), 3);
    cr_assert_eq(state_of(rc, "{rt}in", "B"), 4);
    cr_assert_eq(state_of(rc, "{rt}in", "C"), 1);
    cr_assert_eq(test_cmd_int(rc, "XLEN {rt}audit"), 3);
    cr_assert_eq(pending_of(rc, "{rt}in"), 0);
    stx_processor_free(p);
    stx_router_free(r);
    redisFree(rc);
}

static void unmatched_case(const char *stream, int fail)
{
    redisContext *rc = test_redis_connect(&R);
    freeReplyObject(test_cmd(rc, "XADD %s * type user.x", stream));
    freeReplyObject(test_cmd(rc, "XADD %s * type order.y", stream));
    struct call_log log = {{0}, 0};
    struct route a = {'A', &log, 0, 0};
    stx_router *r = stx_router_new();
    cr_assert_eq(stx_router_add(r, "order.*", route_handler, &a), STX_OK);
    stx_router_set_unmatched_fail(r, fail);
    stx_processor *p = make(stream, r);
    int got = stx_processor_poll(p);
    if (!fail) {
        /* Acknowledged without a handler. */
        cr_assert_eq(got, 2, "poll: %s: %s", stx_strerror(got), stx_processor_errmsg(p));
        cr_assert_eq(state_of(rc, stream, "A"), 1);
        cr_assert_eq(pending_of(rc, stream), 0);
        cr_assert_eq(dlq_length(rc, stream), 0);
        cr_assert_str_eq(log.names, "A");
    } else {
        /* A failure: nothing written for it, and it is dead-lettered. */
        cr_assert_eq(got, STX_EHANDLER, "poll: %s", stx_strerror(got));
        cr_assert(strstr(stx_processor_errmsg(p), "no route for type 'user.x'"), "%s",
                  stx_processor_errmsg(p));
        cr_assert_eq(state_of(rc, stream, "A"), -1);
        cr_assert_eq(dlq_length(rc, stream), 1);
        cr_assert_eq(pending_of(rc, stream), 1); /* order.y waits behind it */
        cr_assert_str_eq(log.names, "");
        cr_assert_eq(poll_until(p, 1), 1);
        cr_assert_eq(state_of(rc, stream, "A"), 1);
        cr_assert_eq(pending_of(rc, stream), 0);
        cr_assert_str_eq(log.names, "A");
    }
    stx_processor_free(p);
    stx_router_free(r);
    redisFree(rc);
}

Test(router, unmatched_events_are_acknowledged) { unmatched_case("um-ack", 0); }
Test(router, unmatched_events_fail_when_asked) { unmatched_case("um-fail", 1); }
