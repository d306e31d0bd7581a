/* stx_pending_get() against a real redis-server: summary, entries, limits,
 * binary consumer names and the errors for missing or mistyped keys. */
#include <criterion/criterion.h>
#include <string.h>

#include "harness.h"
#include "streamtx.h"

static test_redis R;

static void setup(void) { test_redis_start(&R, 0, NULL); }
static void teardown(void) { test_redis_stop(&R); }

TestSuite(pending, .init = setup, .fini = teardown, .timeout = 60);

Test(pending, summary_and_entries)
{
    redisContext *rc = test_redis_connect(&R);
    char s[64];
    test_unique("s", s, sizeof s);
    for (int i = 1; i <= 5; i++) freeReplyObject(test_cmd(rc, "XADD %s %d-1 n %d", s, i, i));
    freeReplyObject(test_cmd(rc, "XGROUP CREATE %s g 0", s));
    freeReplyObject(test_cmd(rc, "XREADGROUP GROUP g alice COUNT 3 STREAMS %s >", s));
    /* A consumer name with a space and a NUL byte. */
    freeReplyObject(test_cmd(rc, "XREADGROUP GROUP g %b COUNT 2 STREAMS %s >", "b o\0b", (size_t)5, s));
    freeReplyObject(test_cmd(rc, "XACK %s g 2-1", s));
    /* Deliver 1-1 again: its count goes to 2. */
    freeReplyObject(test_cmd(rc, "XCLAIM %s g alice 0 1-1", s));

    stx_client *c = test_client(&R);
    stx_pending *p = NULL;
    cr_assert_eq(stx_pending_get(c, s, "g", 0, &p), STX_OK, "%s", stx_client_errmsg(c));
    cr_assert_eq(p->count, 4);
    cr_assert_str_eq(p->min_id, "1-1");
    cr_assert_str_eq(p->max_id, "5-1");
    cr_assert_eq(p->nconsumers, 2);
    cr_assert_eq(p->consumers[0].name_len, 5);
    cr_assert_str_eq(p->consumers[0].name, "alice");
    cr_assert_eq(p->consumers[0].pending, 2);
    cr_assert_eq(p->consumers[1].name_len, 5);
    cr_assert_eq(memcmp(p->consumers[1].name, "b o\0b", 5), 0);
    cr_assert_eq(p->consumers[1].pending, 2);

    static const char *const ids[] = {"1-1", "3-1", "4-1", "5-1"};
    static const long long deliveries[] = {2, 1, 1, 1};
    cr_assert_eq(p->nentries, 4);
    for (size_t i = 0; i < 4; i++) {
        cr_assert_str_eq(p->entries[i].id, ids[i]);
        cr_assert_eq(p->entries[i].deliveries, deliveries[i], "entry %zu", i);
        cr_assert(p->entries[i].idle_ms >= 0 && p->entries[i].idle_ms < 60000);
        cr_assert_eq(p->entries[i].consumer_len, i < 2 ? 5u : 5u);
    }
    cr_assert_str_eq(p->entries[0].consumer, "alice");
    cr_assert_eq(memcmp(p->entries[2].consumer, "b o\0b", 5), 0);
    stx_pending_free(p);

    /* limit bounds the entries, not the summary. */
    cr_assert_eq(stx_pending_get(c, s, "g", 2, &p), STX_OK);
    cr_assert_eq(p->count, 4);
    cr_assert_eq(p->nentries, 2);
    cr_assert_str_eq(p->entries[1].id, "3-1");
    stx_pending_free(p);
    stx_client_free(c);
    redisFree(rc);
}

Test(pending, empty_group)
{
    redisContext *rc = test_redis_connect(&R);
    char s[64];
    test_unique("s", s, sizeof s);
    freeReplyObject(test_cmd(rc, "XGROUP CREATE %s g $ MKSTREAM", s));
    stx_client *c = test_client(&R);
    stx_pending *p = NULL;
    cr_assert_eq(stx_pending_get(c, s, "g", 10, &p), STX_OK, "%s", stx_client_errmsg(c));
    cr_assert_eq(p->count, 0);
    cr_assert_str_eq(p->min_id, "");
    cr_assert_str_eq(p->max_id, "");
    cr_assert_eq(p->nconsumers, 0);
    cr_assert_null(p->consumers);
    cr_assert_eq(p->nentries, 0);
    cr_assert_null(p->entries);
    stx_pending_free(p);
    stx_client_free(c);
    redisFree(rc);
}

Test(pending, errors)
{
    redisContext *rc = test_redis_connect(&R);
    char s[64], k[64];
    test_unique("s", s, sizeof s);
    test_unique("k", k, sizeof k);
    freeReplyObject(test_cmd(rc, "XADD %s 1-1 f v", s));
    freeReplyObject(test_cmd(rc, "SET %s x", k));
    stx_client *c = test_client(&R);
    stx_pending *p = (stx_pending *)c; /* must be reset to NULL */
    cr_assert_eq(stx_pending_get(c, s, "nogroup", 0, &p), STX_ENOGROUP);
    cr_assert_null(p);
    cr_assert(strstr(stx_client_errmsg(c), "NOGROUP") != NULL, "%s", stx_client_errmsg(c));
    cr_assert_eq(stx_pending_get(c, "no-such-stream", "g", 0, &p), STX_ENOGROUP);
    cr_assert_eq(stx_pending_get(c, k, "g", 0, &p), STX_EWRONGTYPE);
    cr_assert_eq(stx_pending_get(c, "", "g", 0, &p), STX_EINVAL);
    cr_assert_eq(stx_pending_get(c, s, "", 0, &p), STX_EINVAL);
    cr_assert_eq(stx_pending_get(NULL, s, "g", 0, &p), STX_EINVAL);
    cr_assert_eq(stx_pending_get(c, NULL, "g", 0, &p), STX_EINVAL);
    cr_assert_eq(stx_pending_get(c, s, NULL, 0, &p), STX_EINVAL);
    cr_assert_eq(stx_pending_get(c, s, "g", 0, NULL), STX_EINVAL);
    cr_assert_null(p);
    stx_pending_free(NULL);
    stx_client_free(c);
    redisFree(rc);
}
