/* Partitioned streams on one Redis: names, the documented hash, the
 * partition count, keyed produce, merged reads, leases, and members that
 * share the partitions of a group while they are killed, added and paused. */
#include <criterion/criterion.h>
#include <inttypes.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "harness.h"
#include "partwork.h"
#include "partition.h"
#include "streamtx.h"

static test_redis R;

static void setup(void) { test_redis_start(&R, 0, NULL); }
static void teardown(void) { test_redis_stop(&R); }

TestSuite(partitions, .init = setup, .fini = teardown, .timeout = 240);

static void sleep_ms(long ms)
{
    struct timespec ts = {ms / 1000, (ms % 1000) * 1000000L};
    while (nanosleep(&ts, &ts) != 0) {}
}

Test(partitions, hash_vectors)
{
    /* The vectors of streamtx.h and README "Scaling out" (zlib.crc32). */
    cr_assert_eq(stx_partition_hash("123456789", 9), 0xCBF43926u);
    cr_assert_eq(stx_partition_hash("", 0), 0u);
    cr_assert_eq(stx_partition_hash(NULL, 0), 0u);
    cr_assert_eq(stx_partition_hash("sku-00", 6), 0x477D1BD2u);
    cr_assert_eq(stx_partition_hash("sku-01", 6), 0x307A2B44u);
    cr_assert_eq(stx_partition_hash("order-42", 8), 0x57F706DEu);
    cr_assert_eq(stx_partition_of("sku-00", 6, 8), 2);
    cr_assert_eq(stx_partition_of("sku-01", 6, 8), 4);
    cr_assert_eq(stx_partition_of("order-42", 8, 8), 6);
    cr_assert_eq(stx_partition_of("", 0, 8), 0);
    cr_assert_eq(stx_partition_of("x", 1, 0), STX_EINVAL);
    cr_assert_eq(stx_partition_of("x", 1, 1025), STX_EINVAL);
    cr_assert_eq(stx_partition_of(NULL, 3, 8), STX_EINVAL);

    char buf[64];
    cr_assert_eq(stx_partition_name(buf, sizeof buf, "orders", 3), 10);
    cr_assert_str_eq(buf, "{orders#3}");
    cr_assert_eq(stx_partition_name(buf, sizeof buf, "app:orders#1", 12), 17);
    cr_assert_str_eq(buf, "{app:orders#1#12}");
    cr_assert_eq(stx_partition_name(buf, sizeof buf, "a{b}", 0), STX_EINVAL);
    cr_assert_eq(stx_partition_name(buf, sizeof buf, "", 0), STX_EINVAL);
    cr_assert_eq(stx_partition_name(buf, sizeof buf, "orders", 1024), STX_EINVAL);
    cr_assert_eq(stx_partition_name(buf, 10, "orders", 3), STX_ELIMIT);

    /* Each partition has a slot of its own; every key of a partition's
     * group shares it. */
    char key[256];
    for (unsigned i = 0; i < 8; i++) {
        stx_partition_name(buf, sizeof buf, "orders", i);
        unsigned slot = stx_key_slot(buf, strlen(buf));
        const char *kinds[] = {"meta", "state", "dlq", "attempts", "live", "lease"};
        for (size_t k = 0; k < 6; k++) {
            cr_assert_gt(stx_key_name(key, sizeof key, buf, "g", kinds[k]), 0);
            cr_assert_eq(stx_key_slot(key, strlen(key)), slot, "%s", key);
        }
    }
    char *meta = stx_partition_meta_key("orders");
    cr_assert_str_eq(meta, "{orders}:stx-parts:6:orders");
    free(meta);
}

Test(partitions, create_grow_shrink)
{
    char s[64];
    test_unique("cg", s, sizeof s);
    stx_client *c = test_client(&R);
    unsigned n = 0;
    cr_assert_eq(stx_stream_partitions(c, s, &n), STX_ENOTFOUND);
    cr_assert_eq(stx_stream_grow(c, s, 4), STX_ENOTFOUND);
    cr_assert_eq(stx_stream_create(c, s, 0), STX_EINVAL);
    cr_assert_eq(stx_stream_create(c, s, 1025), STX_EINVAL);
    cr_assert_eq(stx_stream_create(c, "a{b}", 4), STX_EINVAL);
    cr_assert(strstr(stx_client_errmsg(c), "'{'"), "%s", stx_client_errmsg(c));
    cr_assert_eq(stx_stream_create(c, s, 4), STX_OK, "%s", stx_client_errmsg(c));
    cr_assert_eq(stx_stream_create(c, s, 4), STX_OK); /* a retried create */
    cr_assert_eq(stx_stream_create(c, s, 8), STX_ECONFLICT);
    cr_assert_eq(stx_stream_partitions(c, s, &n), STX_OK);
    cr_assert_eq(n, 4);
    cr_assert_eq(stx_stream_grow(c, s, 6), STX_OK, "%s", stx_client_errmsg(c));
    cr_assert_eq(stx_stream_grow(c, s, 6), STX_OK);
    cr_assert_eq(stx_stream_grow(c, s, 5), STX_EINVAL);
    cr_assert(strstr(stx_client_errmsg(c), "shrinking"), "%s", stx_client_errmsg(c));
    cr_assert_eq(stx_stream_partitions(c, s, &n), STX_OK);
    cr_assert_eq(n, 6);
    stx_client_free(c);
}

Test(partitions, produce_by_key)
{
    char s[64], part[80];
    test_unique("pk", s, sizeof s);
    stx_client *c = test_client(&R);
    redisContext *rc = test_redis_connect(&R);
    cr_assert_eq(stx_stream_create(c, s, 8), STX_OK);
    stx_field f[] = {{"sku", 3, "sku-01", 6}, {"qty", 3, "1", 1}};
    stx_produce_result res;
    unsigned p = 99;
    cr_assert_eq(stx_produce_keyed(c, s, "sku-01", 6, f, 2, NULL, &res, &p), STX_OK, "%s",
                 stx_client_errmsg(c));
    cr_assert_eq(p, 4); /* the documented vector */
    stx_partition_name(part, sizeof part, s, 4);
    redisReply *r = test_cmd(rc, "XRANGE %s - +", part);
    cr_assert_eq(r->elements, 1);
    cr_assert_str_eq(r->element[0]->element[0]->str, res.id);
    freeReplyObject(r);

    /* Idempotent per partition: the retry finds the first entry. */
    stx_produce_opts o = {.idempotency_key = "order-7"};
    stx_produce_result a, b;
    cr_assert_eq(stx_produce_keyed(c, s, "sku-00", 6, f, 2, &o, &a, &p), STX_OK);
    cr_assert_eq(p, 2);
    cr_assert_eq(stx_produce_keyed(c, s, "sku-00", 6, f, 2, &o, &b, &p), STX_OK);
    cr_assert_eq(b.duplicate, 1);
    cr_assert_str_eq(a.id, b.id);
    /* Keyless with an idempotency key: the key decides, so retries meet. */
    o.idempotency_key = "keyless-1";
    cr_assert_eq(stx_produce_keyed(c, s, NULL, 0, f, 2, &o, &a, &p), STX_OK);
    cr_assert_eq(p, (unsigned)stx_partition_of("keyless-1", 9, 8));
    cr_assert_eq(stx_produce_keyed(c, s, NULL, 0, f, 2, &o, &b, &p), STX_OK);
    cr_assert_eq(b.duplicate, 1);
    /* Keyless without one: in turn over all partitions. */
    unsigned seen = 0;
    for (int i = 0; i < 8; i++) {
        cr_assert_eq(stx_produce_keyed(c, s, NULL, 0, f, 2, NULL, &a, &p), STX_OK);
        seen |= 1u << p;
    }
    cr_assert_eq(seen, 0xffu);
    cr_assert_eq(stx_produce_keyed(c, "not-partitioned", "k", 1, f, 2, NULL, &a, &p),
                 STX_ENOTFOUND);
    redisFree(rc);
    stx_client_free(c);
}

Test(partitions, merged_read)
{
    char s[64];
    test_unique("mr", s, sizeof s);
    stx_client *c = test_client(&R);
    cr_assert_eq(stx_stream_create(c, s, 5), STX_OK);
    char key[16], num[16];
    for (int i = 0; i < 60; i++) {
        snprintf(key, sizeof key, "k%d", i % 13);
        snprintf(num, sizeof num, "%d", i);
        stx_field f[] = {{"n", 1, num, strlen(num)}};
        stx_produce_result res;
        cr_assert_eq(stx_produce_keyed(c, s, key, strlen(key), f, 1, NULL, &res, NULL), STX_OK);
    }
    /* Pages of 7, resumed from the cursor: every entry once, in id order
     * (entries of one millisecond in different partitions share ids: they
     * come in partition order). */
    char after[64] = "0", prev[64] = "0-0";
    int next = 0, prev_part = -1, seen[60] = {0};
    for (int page = 0; page < 30 && next < 60; page++) {
        stx_entries *e;
        cr_assert_eq(stx_read_range_all(c, s, after, NULL, 7, &e), STX_OK, "%s",
                     stx_client_errmsg(c));
        cr_assert_geq(stx_entries_count(e), 1);
        for (size_t i = 0; i < stx_entries_count(e); i++) {
            const stx_msg *m = stx_entries_at(e, i);
            int n = atoi(stx_msg_get(m, "n", NULL));
            cr_assert(n >= 0 && n < 60 && !seen[n], "entry %d twice", n);
            seen[n] = 1;
            snprintf(key, sizeof key, "k%d", n % 13);
            int want = stx_partition_of(key, strlen(key), 5);
            cr_assert_eq(stx_msg_partition(m), want);
            char name[80];
            stx_partition_name(name, sizeof name, s, (unsigned)want);
            cr_assert_str_eq(stx_msg_stream(m), name);
            unsigned long long pm, ps, cm, cs;
            sscanf(prev, "%llu-%llu", &pm, &ps);
            sscanf(stx_msg_id(m), "%llu-%llu", &cm, &cs);
            cr_assert(cm > pm || (cm == pm && (cs > ps || (cs == ps && want > prev_part))),
                      "%s after %s", stx_msg_id(m), prev);
            snprintf(prev, sizeof prev, "%s", stx_msg_id(m));
            prev_part = want;
            next++;
        }
        /* A page never ends inside a run of equal ids. */
        snprintf(after, sizeof after, "%s", stx_entries_last_id(e));
        cr_assert_str_eq(after, prev);
        prev_part = 99;
        stx_entries_free(e);
    }
    cr_assert_eq(next, 60);
    stx_entries *e;
    cr_assert_eq(stx_read_range_all(c, s, after, NULL, 7, &e), STX_OK);
    cr_assert_eq(stx_entries_count(e), 0);
    cr_assert_str_eq(stx_entries_last_id(e), after);
    stx_entries_free(e);
    cr_assert_eq(stx_read_range_all(c, "nope", "0", NULL, 7, &e), STX_ENOTFOUND);
    /* By time: everything from the first entry's millisecond on. */
    cr_assert_eq(stx_read_range_all(c, s, "0", NULL, 1, &e), STX_OK);
    long long first_ms = atoll(stx_msg_id(stx_entries_at(e, 0)));
    stx_entries_free(e);
    cr_assert_eq(stx_read_time_all(c, s, first_ms, INT64_MAX / 2, 1000, &e), STX_OK);
    cr_assert_eq(stx_entries_count(e), 60);
    stx_entries_free(e);
    cr_assert_eq(stx_read_time_all(c, s, 0, first_ms - 1, 1000, &e), STX_OK);
    cr_assert_eq(stx_entries_count(e), 0);
    stx_entries_free(e);
    stx_client_free(c);
}

Test(partitions, lease_by_redis_clock)
{
    char s[64], part[80], key[256];
    test_unique("ls", s, sizeof s);
    stx_partition_name(part, sizeof part, s, 0);
    stx_key_name(key, sizeof key, part, "g", "lease");
    stx_client *c = test_client(&R);
    stx_lease_reply l;
    cr_assert_eq(stx_lease_call(c, key, "acquire", "A", 400, 0, &l), STX_OK);
    cr_assert_eq(l.ok, 1);
    cr_assert_eq(l.expires_ms, l.now_ms + 400);
    cr_assert_eq(stx_lease_call(c, key, "acquire", "B", 400, 0, &l), STX_OK);
    cr_assert_eq(l.ok, 0);
    cr_assert_str_eq(l.owner, "A");
    cr_assert_eq(stx_lease_call(c, key, "renew", "A", 400, 7, &l), STX_OK);
    cr_assert_eq(l.ok, 1);
    cr_assert_eq(stx_lease_call(c, key, "renew", "B", 400, 0, &l), STX_OK);
    cr_assert_eq(l.ok, 0);
    cr_assert_str_eq(l.owner, "A");
    sleep_ms(500); /* A's lease runs out by Redis' clock */
    cr_assert_eq(stx_lease_call(c, key, "acquire", "B", 400, 0, &l), STX_OK);
    cr_assert_eq(l.ok, 1);
    cr_assert_eq(stx_lease_call(c, key, "renew", "A", 400, 0, &l), STX_OK);
    cr_assert_eq(l.ok, 0);
    cr_assert_str_eq(l.owner, "B");
    cr_assert_eq(stx_lease_call(c, key, "release", "A", 0, 0, &l), STX_OK);
    cr_assert_eq(l.ok, 0);
    cr_assert_eq(stx_lease_call(c, key, "release", "B", 0, 0, &l), STX_OK);
    cr_assert_eq(l.ok, 1);
    /* Released: free at once. */
    cr_assert_eq(stx_lease_call(c, key, "acquire", "A", 400, 0, &l), STX_OK);
    cr_assert_eq(l.ok, 1);
    redisContext *rc = test_redis_connect(&R);
    redisReply *r = test_cmd(rc, "HGET %s epoch", key);
    cr_assert_str_eq(r->str, "7");
    freeReplyObject(r);
    redisFree(rc);
    stx_client_free(c);
}

static int counting_noop(const stx_msg *msg, stx_txn *txn, void *ud)
{
    (void)msg, (void)txn, (void)ud;
    return STX_OK;
}

Test(partitions, member_refuses_wait_longer_than_renewal)
{
    stx_config *c = stx_config_new();
    const char *kv[] = {"url", R.url, "stream", "s", "group", "g", "lease_ttl_ms", "3000",
                        "command_timeout_ms", "1000", "commit_wait_replicas", "1",
                        "commit_wait_timeout_ms", "1000", NULL};
    for (int i = 0; kv[i]; i += 2) cr_assert_eq(stx_config_set(c, kv[i], kv[i + 1], NULL, 0), STX_OK);
    stx_config_set_handler(c, counting_noop, NULL);
    stx_member *m;
    cr_assert_eq(stx_member_new(&m, c), STX_EINVAL);
    cr_assert(strstr(stx_member_errmsg(m), "command_timeout_ms (1000) + commit_wait_timeout_ms "
                                           "(1000) must be below two thirds of lease_ttl_ms (3000)"),
              "%s", stx_member_errmsg(m));
    stx_member_free(m);
    cr_assert_eq(stx_config_set(c, "commit_wait_timeout_ms", "999", NULL, 0), STX_OK);
    cr_assert_eq(stx_member_new(&m, c), STX_OK, "%s", stx_member_errmsg(m));
    stx_member_free(m);
    /* Without commit_wait_replicas only the command timeout counts; the
     * defaults (5000, 10000) fit. */
    cr_assert_eq(stx_config_set(c, "commit_wait_replicas", "0", NULL, 0), STX_OK);
    cr_assert_eq(stx_config_set(c, "command_timeout_ms", "2000", NULL, 0), STX_OK);
    cr_assert_eq(stx_member_new(&m, c), STX_EINVAL);
    cr_assert(strstr(stx_member_errmsg(m), "command_timeout_ms (2000) must be below two thirds"),
              "%s", stx_member_errmsg(m));
    stx_member_free(m);
    cr_assert_eq(stx_config_set(c, "command_timeout_ms", "5000", NULL, 0), STX_OK);
    cr_assert_eq(stx_config_set(c, "lease_ttl_ms", "10000", NULL, 0), STX_OK);
    cr_assert_eq(stx_member_new(&m, c), STX_OK, "%s", stx_member_errmsg(m));
    stx_member_free(m);
    stx_config_free(c);
}

/* commit_wait_replicas on a Redis without replicas: every commit is
 * counted in the member's per-partition stats as not acknowledged. */
Test(partitions, member_counts_unreplicated_commits)
{
    char s[64];
    test_unique("wr", s, sizeof s);
    stx_client *cl = test_client(&R);
    cr_assert_eq(stx_stream_create(cl, s, 2), STX_OK);
    stx_field f[] = {{"k", 1, "a", 1}};
    stx_produce_result res;
    for (int i = 0; i < 20; i++)
        cr_assert_eq(stx_produce_keyed(cl, s, NULL, 0, f, 1, NULL, &res, NULL), STX_OK);
    stx_config *c = stx_config_new();
    const char *kv[] = {"url", R.url, "stream", s, "group", "g", "lease_ttl_ms", "3000",
                        "command_timeout_ms", "1500", "block_ms", "20", "batch_size", "4", "commit_wait_replicas", "1",
                        "commit_wait_timeout_ms", "5", "log_level", "error", NULL};
    for (int i = 0; kv[i]; i += 2) cr_assert_eq(stx_config_set(c, kv[i], kv[i + 1], NULL, 0), STX_OK);
    stx_config_set_handler(c, counting_noop, NULL);
    stx_member *m;
    cr_assert_eq(stx_member_new(&m, c), STX_OK, "%s", stx_member_errmsg(m));
    stx_config_free(c);
    uint64_t committed = 0, commits = 0, unrepl = 0;
    int64_t deadline = test_now_ms() + 20000;
    while (committed < 20) {
        cr_assert_geq(stx_member_poll(m), 0, "%s", stx_member_errmsg(m));
        cr_assert(test_now_ms() < deadline, "not drained");
        committed = commits = unrepl = 0;
        for (unsigned i = 0; i < 2; i++) {
            stx_stats st;
            stx_member_partition_stats(m, i, &st);
            committed += st.committed;
            commits += st.commits;
            unrepl += st.commits_unreplicated;
        }
    }
    cr_assert_geq(commits, 6); /* batches of 4 over two partitions */
    cr_assert_eq(unrepl, commits);
    stx_member_free(m);
    stx_client_free(cl);
}

/* ---- members of the inventory workload ----------------------------------- */

static void quiet(stx_log_level level, const char *line, void *ud)
{
    (void)ud;
    if (getenv("STX_TEST_VERBOSE")) fprintf(stderr, "[%d] %d %s\n", (int)getpid(), level, line);
}

Test(partitions, members_kill_join_pause)
{
    partwork w;
    pw_init(&w, &R, NULL, "inv", 8);
    char own[PW_MAX_PARTS][64];

    /* Three members share 8 partitions. */
    pw_produce(&w, 5000);
    pid_t m1 = pw_spawn(&w, "m1"), m2 = pw_spawn(&w, "m2"), m3 = pw_spawn(&w, "m3");
    const char *three[] = {"m1", "m2", "m3", NULL};
    pw_wait_owners(&w, three, 10000, own);

    /* SIGKILL one: its partitions are taken within the lease (1 s) and a
     * renewal period; the entries keep coming. */
    sleep_ms(200);
    kill(m1, SIGKILL);
    cr_assert_eq(pw_exit_code(m1), 128 + SIGKILL);
    int64_t killed_at = test_now_ms();
    pw_produce(&w, 5000);
    const char *two[] = {"m2", "m3", NULL};
    pw_wait_owners(&w, two, 10000, own);
    cr_log_info("partitions of the killed member taken over after %" PRId64 " ms",
                test_now_ms() - killed_at);

    /* A fourth joins: it gets its share, the others let go of it. */
    pid_t m4 = pw_spawn(&w, "m4");
    pw_produce(&w, 5000);
    const char *three_b[] = {"m2", "m3", "m4", NULL};
    int64_t joined_at = test_now_ms();
    pw_wait_owners(&w, three_b, 10000, own);
    int n4 = 0;
    for (unsigned i = 0; i < w.parts; i++) n4 += pw_owned_by(own[i], "m4");
    cr_log_info("the joining member holds %d partitions after %" PRId64 " ms", n4,
                test_now_ms() - joined_at);

    /* SIGSTOP the one with most partitions past its lease: the others take
     * them (a new epoch each); resumed, it is fenced and writes nothing
     * that counts twice (the exact checks below). */
    int n2 = 0, n3 = 0;
    for (unsigned i = 0; i < w.parts; i++) {
        n2 += pw_owned_by(own[i], "m2");
        n3 += pw_owned_by(own[i], "m3");
    }
    pid_t victim = n2 >= n3 ? m2 : m3;
    const char *vname = n2 >= n3 ? "m2" : "m3";
    unsigned long long before[PW_MAX_PARTS];
    int had[PW_MAX_PARTS];
    for (unsigned i = 0; i < w.parts; i++) {
        had[i] = pw_owned_by(own[i], vname);
        before[i] = pw_epoch(&w, i);
    }
    kill(victim, SIGSTOP);
    pw_produce(&w, 5000);
    const char *others[] = {victim == m2 ? "m3" : "m2", "m4", NULL};
    pw_wait_owners(&w, others, 10000, own);
    pw_wait_caught_up(&w, 30000); /* the others finish its partitions */
    for (unsigned i = 0; i < w.parts; i++)
        if (had[i]) cr_assert_gt(pw_epoch(&w, i), before[i], "partition %u: no new epoch", i);
    kill(victim, SIGCONT);
    sleep_ms(1500); /* it resumes, finds itself fenced, rejoins */
    pw_wait_caught_up(&w, 30000);

    pid_t all[] = {m2, m3, m4};
    for (int k = 0; k < 3; k++) kill(all[k], SIGTERM);
    for (int k = 0; k < 3; k++) cr_assert_eq(pw_exit_code(all[k]), 0, "member %d", k);
    pw_check(&w);
    /* Stopped members leave the member hash and release their leases. */
    char members[256];
    stx_key_name(members, sizeof members, w.stream, "inv", "members");
    cr_assert_eq(test_cmd_int(pw_conn(&w, 0), "HLEN %s", members), 0);
    pw_owners(&w, own);
    for (unsigned i = 0; i < w.parts; i++) cr_assert_str_eq(own[i], "", "partition %u", i);
    pw_free(&w);
}

/* ---- members in one thread: snapshots and the stx views ------------------ */

static int counting(const stx_msg *msg, stx_txn *txn, void *ud)
{
    (void)ud;
    size_t len;
    const char *k = stx_msg_get(msg, "k", &len);
    if (!k) return STX_HANDLER_FAIL;
    return stx_txn_incr(txn, k, len, 1, NULL);
}

static stx_member *member(const char *stream, const char *name, const char *snapdir)
{
    stx_config *c = stx_config_new();
    const char *kv[] = {"url", R.url, "stream", stream, "group", "g", "consumer", name,
                        "lease_ttl_ms", "3000", "command_timeout_ms", "1500", "block_ms", "20",
                        "stats_interval_ms", "0",
                        "snapshot_dir", snapdir, NULL};
    for (int i = 0; kv[i]; i += 2)
        cr_assert_eq(stx_config_set(c, kv[i], kv[i + 1], NULL, 0), STX_OK, "%s", kv[i]);
    stx_config_set_handler(c, counting, NULL);
    stx_config_set_log(c, quiet, NULL);
    stx_member *m;
    cr_assert_eq(stx_member_new(&m, c), STX_OK);
    stx_config_free(c);
    return m;
}

/* Poll until every partition's offset is its last id. */
static void drain(stx_member *m, redisContext *c, const char *stream, unsigned n)
{
    int64_t deadline = test_now_ms() + 20000;
    for (;;) {
        int rc = stx_member_poll(m);
        cr_assert_geq(rc, 0, "%s: %s", stx_strerror(rc), stx_member_errmsg(m));
        int done = 1;
        for (unsigned i = 0; i < n && done; i++) {
            char part[80], meta[256];
            stx_partition_name(part, sizeof part, stream, i);
            stx_key_name(meta, sizeof meta, part, "g", "meta");
            redisReply *l = test_cmd(c, "XREVRANGE %s + - COUNT 1", part);
            redisReply *o = test_cmd(c, "HGET %s offset", meta);
            done = l->elements == 0 ||
                   (o->type == REDIS_REPLY_STRING && strcmp(o->str, l->element[0]->element[0]->str) == 0);
            freeReplyObject(l);
            freeReplyObject(o);
        }
        if (done) return;
        cr_assert(test_now_ms() < deadline, "not drained");
    }
}

static void produce_keys(stx_client *cl, const char *stream, int n)
{
    char k[16];
    for (int i = 0; i < n; i++) {
        snprintf(k, sizeof k, "k%d", i % 10);
        stx_field f[] = {{"k", 1, k, strlen(k)}};
        stx_produce_result res;
        cr_assert_eq(stx_produce_keyed(cl, stream, k, strlen(k), f, 1, NULL, &res, NULL), STX_OK);
    }
}

static void load_counts(const stx_member *m, unsigned n, uint64_t *snap, uint64_t *redis,
                        uint64_t *committed)
{
    *snap = *redis = *committed = 0;
    for (unsigned i = 0; i < n; i++) {
        stx_stats s;
        stx_member_partition_stats(m, i, &s);
        *snap += s.snapshot_loads;
        *redis += s.redis_loads;
        *committed += s.committed;
    }
}

static char *run_stx(const char *args)
{
    char cmd[1024];
    snprintf(cmd, sizeof cmd, "%s --url %s %s", STX_CLI_PATH, R.url, args);
    FILE *f = popen(cmd, "r");
    cr_assert(f);
    char *out = calloc(1, 16384);
    size_t n = fread(out, 1, 16383, f);
    out[n] = '\0';
    cr_assert_eq(pclose(f), 0, "%s", cmd);
    return out;
}

Test(partitions, snapshot_only_when_current)
{
    char s[64], dir_a[256], dir_b[256];
    test_unique("sn", s, sizeof s);
    test_tmpdir(dir_a, sizeof dir_a);
    test_tmpdir(dir_b, sizeof dir_b);
    stx_client *cl = test_client(&R);
    redisContext *c = test_redis_connect(&R);
    cr_assert_eq(stx_stream_create(cl, s, 2), STX_OK);
    produce_keys(cl, s, 100);
    uint64_t snap, redis, committed;

    /* Host A serves both partitions, then stops (releasing them). */
    stx_member *a = member(s, "a", dir_a);
    drain(a, c, s, 2);
    cr_assert(stx_member_owns(a, 0) && stx_member_owns(a, 1));
    load_counts(a, 2, &snap, &redis, &committed);
    cr_assert_eq(committed, 100);
    cr_assert_eq(redis, 2);
    stx_member_free(a);

    /* A again: nobody committed since, its snapshots are current. */
    produce_keys(cl, s, 50);
    a = member(s, "a", dir_a);
    drain(a, c, s, 2);
    load_counts(a, 2, &snap, &redis, &committed);
    cr_assert_eq(snap, 2);
    cr_assert_eq(redis, 0);
    cr_assert_eq(committed, 50);
    stx_member_free(a);

    /* Host B takes over and commits: A's snapshots are now behind. */
    produce_keys(cl, s, 50);
    stx_member *b = member(s, "b", dir_b);
    drain(b, c, s, 2);
    load_counts(b, 2, &snap, &redis, &committed);
    cr_assert_eq(redis, 2);
    cr_assert_eq(committed, 50);
    stx_member_free(b);

    produce_keys(cl, s, 50);
    a = member(s, "a", dir_a);
    drain(a, c, s, 2);
    load_counts(a, 2, &snap, &redis, &committed);
    cr_assert_eq(snap, 0, "a stale snapshot was loaded");
    cr_assert_eq(redis, 2);
    cr_assert_eq(committed, 50);
    for (int k = 0; k < 10; k++) {
        char key[16], part[80];
        snprintf(key, sizeof key, "k%d", k);
        stx_partition_name(part, sizeof part, s, (unsigned)stx_partition_of(key, strlen(key), 2));
        int64_t n = 0;
        char state[256];
        stx_key_name(state, sizeof state, part, "g", "state");
        redisReply *r = test_cmd(c, "HGET %s %s", state, key);
        cr_assert_eq(stx_mp_read_i64(r->str, r->len, &n), STX_OK);
        freeReplyObject(r);
        cr_assert_eq(n, 25, "%s: %" PRId64, key, n);
    }

    /* The stx views while A holds the leases. */
    char args[256];
    snprintf(args, sizeof args, "info %s", s);
    char *out = run_stx(args);
    cr_assert(strstr(out, "2 partitions"), "%s", out);
    cr_assert(strstr(out, stx_member_id(a)), "%s", out);
    free(out);
    snprintf(args, sizeof args, "members %s g --json", s);
    out = run_stx(args);
    char want[256];
    snprintf(want, sizeof want, "\"id\":\"%s\"", stx_member_id(a));
    cr_assert(strstr(out, want), "%s", out);
    cr_assert(strstr(out, "\"partitions\":[0,1]"), "%s", out);
    cr_assert(strstr(out, "\"unowned\":[]"), "%s", out);
    free(out);
    stx_member_free(a);

    test_rmrf(dir_a);
    test_rmrf(dir_b);
    redisFree(c);
    stx_client_free(cl);
}

Test(partitions, grow_while_serving)
{
    char s[64], dir[256];
    test_unique("gr", s, sizeof s);
    test_tmpdir(dir, sizeof dir);
    stx_client *cl = test_client(&R);
    redisContext *c = test_redis_connect(&R);
    cr_assert_eq(stx_stream_create(cl, s, 2), STX_OK);
    produce_keys(cl, s, 40);
    stx_member *m = member(s, "solo", dir);
    drain(m, c, s, 2);
    cr_assert_eq(stx_member_partitions(m), 2);
    cr_assert_eq(stx_stream_grow(cl, s, 4), STX_OK);
    produce_keys(cl, s, 40); /* now over 4 partitions */
    /* The member sees the new count at its next renewal (lease 3 s: 1 s). */
    int64_t deadline = test_now_ms() + 10000;
    while (stx_member_partitions(m) < 4 || !stx_member_owns(m, 2) || !stx_member_owns(m, 3)) {
        cr_assert_geq(stx_member_poll(m), 0, "%s", stx_member_errmsg(m));
        cr_assert(test_now_ms() < deadline, "new partitions not served");
    }
    drain(m, c, s, 4);
    uint64_t total = 0;
    for (unsigned i = 0; i < 4; i++) {
        stx_stats st;
        stx_member_partition_stats(m, i, &st);
        total += st.committed;
    }
    cr_assert_eq(total, 80);
    /* Every key's count is 8, split over its old and new partition. */
    for (int k = 0; k < 10; k++) {
        char key[16];
        snprintf(key, sizeof key, "k%d", k);
        int64_t sum = 0;
        for (unsigned n = 2; n <= 4; n += 2) {
            char part[80], state[256];
            stx_partition_name(part, sizeof part, s, (unsigned)stx_partition_of(key, strlen(key), n));
            stx_key_name(state, sizeof state, part, "g", "state");
            redisReply *r = test_cmd(c, "HGET %s %s", state, key);
            int64_t v = 0;
            if (r->type == REDIS_REPLY_STRING) cr_assert_eq(stx_mp_read_i64(r->str, r->len, &v), STX_OK);
            freeReplyObject(r);
            sum += v;
            if (stx_partition_of(key, strlen(key), 2) == stx_partition_of(key, strlen(key), 4)) break;
        }
        cr_assert_eq(sum, 8, "%s: %" PRId64, key, sum);
    }
    stx_member_stop(m);
    cr_assert_eq(stx_member_poll(m), STX_ESTOPPED);
    char members[256];
    stx_key_name(members, sizeof members, s, "g", "members");
    cr_assert_eq(test_cmd_int(c, "HLEN %s", members), 0);
    stx_member_free(m);
    test_rmrf(dir);
    redisFree(c);
    stx_client_free(cl);
}

Test(partitions, cli)
{
    char s[64], args[512];
    test_unique("cli", s, sizeof s);
    snprintf(args, sizeof args, "create %s --partitions 8", s);
    char *out = run_stx(args);
    snprintf(args, sizeof args, "%s: 8 partitions\n", s);
    cr_assert_str_eq(out, args);
    free(out);
    snprintf(args, sizeof args, "produce %s --key sku-01 qty=1", s);
    out = run_stx(args);
    cr_assert(strstr(out, " partition 4\n"), "%s", out);
    free(out);
    snprintf(args, sizeof args, "produce %s --key order-42 qty=2 --json", s);
    out = run_stx(args);
    cr_assert(strstr(out, "\"partition\":6}"), "%s", out);
    free(out);
    snprintf(args, sizeof args, "replay %s", s);
    out = run_stx(args);
    cr_assert(strncmp(out, "[4] ", 4) == 0 && strstr(out, " qty=1\n[6] "), "%s", out);
    free(out);
    snprintf(args, sizeof args, "tail %s --from beginning --limit 2 --json", s);
    out = run_stx(args);
    cr_assert(strstr(out, "{\"partition\":4,") && strstr(out, "{\"partition\":6,"), "%s", out);
    free(out);
    snprintf(args, sizeof args, "info %s --json", s);
    out = run_stx(args);
    cr_assert(strstr(out, "\"partitions\":8"), "%s", out);
    free(out);
    /* Refusals and their exit codes. */
    char cmd[1024];
    snprintf(cmd, sizeof cmd, "%s --url %s create %s --partitions 4 --grow 2>/dev/null", STX_CLI_PATH,
             R.url, s);
    cr_assert_eq(WEXITSTATUS(system(cmd)), 2);
    snprintf(cmd, sizeof cmd, "%s --url %s create %s --partitions 4 2>/dev/null", STX_CLI_PATH,
             R.url, s);
    cr_assert_eq(WEXITSTATUS(system(cmd)), 5);
    snprintf(cmd, sizeof cmd, "%s --url %s members nope g 2>/dev/null", STX_CLI_PATH, R.url);
    cr_assert_eq(WEXITSTATUS(system(cmd)), 3);
}
