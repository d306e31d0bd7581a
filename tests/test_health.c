/* stx_health_get() against real redis-servers: a default server, one with
 * an AOF, an evicting memory policy, a user without CONFIG, and a server
 * that is down. */
#include <criterion/criterion.h>
#include <stdio.h>
#include <string.h>

#include "harness.h"
#include "streamtx.h"

static test_redis R;

static void teardown(void) { test_redis_stop(&R); }

TestSuite(health, .fini = teardown, .timeout = 60);

static const stx_health_check *find(const stx_health *h, const char *name)
{
    for (size_t i = 0; i < h->nchecks; i++)
        if (strcmp(h->checks[i].name, name) == 0) return &h->checks[i];
    cr_assert_fail("no check %s", name);
    return NULL;
}

static stx_health *health_of(stx_client *c)
{
    stx_health *h = NULL;
    cr_assert_eq(stx_health_get(c, &h), STX_OK, "%s", stx_client_errmsg(c));
    cr_assert_not_null(h);
    return h;
}

Test(health, default_server)
{
    test_redis_start(&R, 0, NULL);
    stx_client *c = test_client(&R);
    stx_health *h = health_of(c);
    static const char *const names[] = {"version", "role", "scripts", "appendonly",
                                        "appendfsync", "eviction"};
    cr_assert_eq(h->nchecks, 6);
    for (size_t i = 0; i < 6; i++) cr_assert_str_eq(h->checks[i].name, names[i]);
    cr_assert_eq(h->healthy, 1);
    cr_assert_eq(find(h, "version")->status, STX_HEALTH_OK);
    cr_assert(strncmp(find(h, "version")->detail, "7.", 2) == 0, "%s", find(h, "version")->detail);
    cr_assert_eq(find(h, "role")->status, STX_HEALTH_OK);
    cr_assert_str_eq(find(h, "role")->detail, "master");
    cr_assert_eq(find(h, "scripts")->status, STX_HEALTH_OK);
    cr_assert_str_eq(find(h, "scripts")->detail,
                     "15 loaded: start, retake, read, commit, dlq, redrive, migrate, produce, "
                     "reset, trim, partitions, lease, member, relay, history");
    cr_assert_eq(find(h, "appendonly")->status, STX_HEALTH_WARN);
    cr_assert(strncmp(find(h, "appendonly")->detail, "no: ", 4) == 0);
    cr_assert_eq(find(h, "appendfsync")->status, STX_HEALTH_OK);
    cr_assert_eq(find(h, "eviction")->status, STX_HEALTH_OK);
    cr_assert_str_eq(find(h, "eviction")->detail, "maxmemory 0, noeviction");
    cr_assert_str_eq(stx_client_errmsg(c), "");
    stx_health_free(h);
    stx_health_free(NULL);
    cr_assert_eq(stx_health_get(NULL, &h), STX_EINVAL);
    cr_assert_null(h);
    cr_assert_eq(stx_health_get(c, NULL), STX_EINVAL);
    stx_client_free(c);
}

Test(health, aof_and_eviction)
{
    test_redis_start(&R, 1, NULL);
    stx_client *c = test_client(&R);
    const char *set[] = {"CONFIG", "SET", "maxmemory", "100mb", "maxmemory-policy",
                         "allkeys-lru"};
    stx_reply *r;
    cr_assert_eq(stx_client_call(c, 6, set, NULL, &r), STX_OK);
    cr_assert_eq(stx_reply_type_of(r), STX_REPLY_STATUS);
    stx_reply_free(r);
    stx_health *h = health_of(c);
    cr_assert_eq(h->healthy, 1);
    cr_assert_eq(find(h, "appendonly")->status, STX_HEALTH_OK);
    cr_assert_str_eq(find(h, "appendonly")->detail, "yes");
    cr_assert_eq(find(h, "appendfsync")->status, STX_HEALTH_OK);
    cr_assert_str_eq(find(h, "appendfsync")->detail, "always");
    cr_assert_eq(find(h, "eviction")->status, STX_HEALTH_WARN);
    cr_assert_str_eq(find(h, "eviction")->detail,
                     "maxmemory 104857600, allkeys-lru: offsets and state keys can be "
                     "evicted; use noeviction");
    stx_health_free(h);
    stx_client_free(c);
}

/* A user that may not run CONFIG or SCRIPT: the checks that need them say
 * so, and the call still succeeds. */
Test(health, restricted_user)
{
    test_redis_start(&R, 0, NULL);
    redisContext *rc = test_redis_connect(&R);
    freeReplyObject(test_cmd(rc, "ACL SETUSER ops on >secret ~* +@all -config -script"));
    redisFree(rc);
    stx_config *conf = stx_config_new();
    char url[160], err[256];
    snprintf(url, sizeof url, "redis://ops:secret@127.0.0.1:%d", R.port);
    cr_assert_eq(stx_config_set(conf, "url", url, err, sizeof err), STX_OK, "%s", err);
    stx_client *c;
    cr_assert_eq(stx_client_new(&c, conf), STX_OK, "%s", stx_client_errmsg(c));
    stx_config_free(conf);
    stx_health *h = health_of(c);
    cr_assert_eq(h->healthy, 0);
    cr_assert_eq(find(h, "version")->status, STX_HEALTH_OK);
    cr_assert_eq(find(h, "scripts")->status, STX_HEALTH_FAIL);
    cr_assert(strncmp(find(h, "scripts")->detail, "SCRIPT LOAD of start.lua failed: ", 33) == 0,
              "%s", find(h, "scripts")->detail);
    cr_assert(strstr(find(h, "scripts")->detail, "NOPERM") != NULL, "%s",
              find(h, "scripts")->detail);
    cr_assert_eq(find(h, "appendonly")->status, STX_HEALTH_WARN);
    cr_assert(strncmp(find(h, "appendonly")->detail, "cannot read: ", 13) == 0);
    cr_assert_eq(find(h, "eviction")->status, STX_HEALTH_WARN);
    cr_assert_str_eq(find(h, "eviction")->detail, "cannot read maxmemory settings");
    stx_health_free(h);
    stx_client_free(c);
}

Test(health, server_down)
{
    test_redis_start(&R, 0, NULL);
    stx_client *c = test_client(&R);
    test_redis_kill(&R);
    stx_health *h = (stx_health *)c; /* must be reset to NULL */
    int rc = stx_health_get(c, &h);
    cr_assert_eq(rc, STX_ECONN, "%d: %s", rc, stx_client_errmsg(c));
    cr_assert_null(h);
    cr_assert_neq(stx_client_errmsg(c)[0], '\0');
    stx_client_free(c);
}
