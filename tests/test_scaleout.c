/* Members of the inventory workload sharing the partitions of one group on
 * a Redis Cluster of 3 masters with a replica each: a member killed, one
 * added, one paused past its lease, a partition's slot migrated while it is
 * processed, and a master killed so that its replica takes over.  After
 * each, the exact checks of partwork.h.
 *
 * STX_SCALEOUT_ENTRIES sets the number of entries per scenario (default
 * 20000; README "Scaling out" gives the figures of longer runs). */
#include <criterion/criterion.h>
#include <inttypes.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "harness.h"
#include "partition.h"
#include "partwork.h"
#include "streamtx.h"

TestSuite(scaleout, .timeout = 300);

#define PARTS 8

static long entries(void)
{
    const char *e = getenv("STX_SCALEOUT_ENTRIES");
    long n = e ? atol(e) : 0;
    return n >= 1000 ? n : 20000;
}

static unsigned slot_of(const partwork *w, unsigned i)
{
    char part[80];
    stx_partition_name(part, sizeof part, w->stream, i);
    return stx_key_slot(part, strlen(part));
}

static void stop_all(const pid_t *pids, int n)
{
    for (int k = 0; k < n; k++) kill(pids[k], SIGTERM);
    for (int k = 0; k < n; k++) cr_assert_eq(pw_exit_code(pids[k]), 0, "member %d", k);
}

/* Wait until partition i has committed something (it is being processed). */
static void wait_started(partwork *w, unsigned i)
{
    int64_t deadline = test_now_ms() + 30000;
    for (;;) {
        char off[64];
        pw_offset(w, i, off, sizeof off);
        if (off[0] && strcmp(off, "0-0") != 0) return;
        cr_assert(test_now_ms() < deadline, "partition %u: nothing committed", i);
        wl_sleep_ms(5);
    }
}

/* (a) SIGKILL a member, (b) add a fourth, (c) SIGSTOP one past its lease
 * and SIGCONT it: exact after each. */
Test(scaleout, kill_join_pause)
{
    test_cluster tc;
    test_cluster_start(&tc, 0);
    partwork w;
    pw_init(&w, NULL, &tc, "sk", PARTS);
    long quarter = entries() / 4;
    char own[PW_MAX_PARTS][64];

    pw_produce(&w, quarter);
    pid_t m1 = pw_spawn(&w, "m1"), m2 = pw_spawn(&w, "m2"), m3 = pw_spawn(&w, "m3");
    const char *three[] = {"m1", "m2", "m3", NULL};
    pw_wait_owners(&w, three, 15000, own);

    /* (a) Its partitions go to the others within the lease (1 s) and a
     * renewal period. */
    wl_sleep_ms(200);
    kill(m1, SIGKILL);
    cr_assert_eq(pw_exit_code(m1), 128 + SIGKILL);
    int64_t t = test_now_ms();
    pw_produce(&w, quarter);
    const char *two[] = {"m2", "m3", NULL};
    pw_wait_owners(&w, two, 15000, own);
    fprintf(stderr, "scaleout: (a) partitions of the killed member taken over after %" PRId64 " ms\n",
           test_now_ms() - t);
    pw_wait_caught_up(&w, 60000);
    pw_check(&w);

    /* (b) A fourth member gets its share; the others let go of it. */
    pid_t m4 = pw_spawn(&w, "m4");
    t = test_now_ms();
    pw_produce(&w, quarter);
    const char *three_b[] = {"m2", "m3", "m4", NULL};
    pw_wait_owners(&w, three_b, 15000, own);
    int n4 = 0;
    for (unsigned i = 0; i < PARTS; i++) n4 += pw_owned_by(own[i], "m4");
    fprintf(stderr, "scaleout: (b) the joining member holds %d of %d partitions after %" PRId64 " ms\n", n4,
           PARTS, test_now_ms() - t);
    pw_wait_caught_up(&w, 60000);
    pw_check(&w);

    /* (c) The member with most partitions stopped past its lease: the
     * others take them with a new epoch; resumed, it is fenced. */
    int n2 = 0, n3 = 0;
    for (unsigned i = 0; i < PARTS; i++) {
        n2 += pw_owned_by(own[i], "m2");
        n3 += pw_owned_by(own[i], "m3");
    }
    pid_t victim = n2 >= n3 ? m2 : m3;
    const char *vname = n2 >= n3 ? "m2" : "m3";
    unsigned long long before[PW_MAX_PARTS];
    int had[PW_MAX_PARTS];
    for (unsigned i = 0; i < PARTS; i++) {
        had[i] = pw_owned_by(own[i], vname);
        before[i] = pw_epoch(&w, i);
    }
    pw_produce(&w, quarter / 2); /* in its hands when it stops */
    kill(victim, SIGSTOP);
    pw_produce(&w, quarter - quarter / 2);
    const char *others[] = {victim == m2 ? "m3" : "m2", "m4", NULL};
    pw_wait_owners(&w, others, 15000, own);
    pw_wait_caught_up(&w, 60000);
    for (unsigned i = 0; i < PARTS; i++)
        if (had[i]) cr_assert_gt(pw_epoch(&w, i), before[i], "partition %u: no new epoch", i);
    pw_check(&w);
    kill(victim, SIGCONT);
    wl_sleep_ms(1500); /* it resumes, finds itself fenced, rejoins */
    pw_wait_caught_up(&w, 60000);
    pw_check(&w);
    pid_t all[] = {m2, m3, m4};
    stop_all(all, 3);
    pw_check(&w);
    pw_free(&w);
    test_cluster_stop(&tc);
}

/* Errors of one kind a node answered since its last CONFIG RESETSTAT
 * ("errorstat_ASK:count=3"). */
static long long errorstat(redisContext *c, const char *kind)
{
    redisReply *r = test_cmd(c, "INFO errorstats");
    char needle[64];
    snprintf(needle, sizeof needle, "errorstat_%s:count=", kind);
    const char *p = strstr(r->str, needle);
    long long n = p ? atoll(p + strlen(needle)) : 0;
    freeReplyObject(r);
    return n;
}

/* (d) The slot of a partition moves to another master while members
 * process it: the keys leave one by one (commands meet ASK, and TRYAGAIN
 * while the partition's keys are split), then the slot is the target's
 * (MOVED). */
Test(scaleout, migrate_partition_slot)
{
    test_cluster tc;
    test_cluster_start(&tc, 0);
    partwork w;
    pw_init(&w, NULL, &tc, "sm", PARTS);
    w.batch_size = 16; /* many commits while the keys move */
    pw_produce(&w, entries() / 4);
    /* The partition with the most entries. */
    unsigned busy = 0;
    long best = -1;
    for (unsigned i = 0; i < PARTS; i++) {
        char part[80];
        stx_partition_name(part, sizeof part, w.stream, i);
        long n = (long)test_cmd_int(pw_conn(&w, i), "XLEN %s", part);
        if (n > best) {
            best = n;
            busy = i;
        }
    }
    unsigned slot = slot_of(&w, busy);
    int from = test_cluster_owner(&tc, slot), to = test_cluster_other_master(&tc, from);
    redisContext *src = test_cluster_connect(&tc, from);
    freeReplyObject(test_cmd(src, "CONFIG RESETSTAT"));

    pid_t m[] = {pw_spawn(&w, "m1"), pw_spawn(&w, "m2"), pw_spawn(&w, "m3")};
    wait_started(&w, busy);
    pw_produce(&w, entries() / 4); /* work in hand when the keys move */
    char off[64];
    pw_offset(&w, busy, off, sizeof off);
    test_cluster_migrate_begin(&tc, slot, from, to);
    long moved = 0, k;
    while ((k = test_cluster_migrate_keys(&tc, slot, from, to, 1)) > 0) {
        moved += k;
        wl_sleep_ms(250); /* the members work on the split partition */
    }
    /* Every key is at the target, the slot still the source's: each
     * command of the partition goes there and is sent on with ASK. */
    int64_t deadline = test_now_ms() + 20000;
    while (errorstat(src, "ASK") == 0) {
        cr_assert(test_now_ms() < deadline, "no command met ASK during the migration");
        wl_sleep_ms(20);
    }
    /* Entries for it arrive at the importing node meanwhile.  Its scripts
     * run there only once every key they name is there: a key that does
     * not exist yet (no attempts recorded, say) keeps them in TRYAGAIN
     * until the slot changes hands. */
    char off_split[64], part[80];
    redisContext *dst = test_cluster_connect(&tc, to);
    pw_produce_asking(&w, busy, dst, 500);
    wl_sleep_ms(500);
    char meta[256];
    stx_partition_name(part, sizeof part, w.stream, busy);
    stx_key_name(meta, sizeof meta, part, w.group, "meta");
    freeReplyObject(test_cmd(dst, "ASKING"));
    redisReply *o = test_cmd(dst, "HGET %s offset", meta);
    snprintf(off_split, sizeof off_split, "%s", o->type == REDIS_REPLY_STRING ? o->str : "");
    freeReplyObject(o);
    redisFree(dst);
    long long ask = errorstat(src, "ASK");
    test_cluster_migrate_finish(&tc, slot, from, to);
    test_cluster_wait_ok(&tc, slot, 10000);
    fprintf(stderr, "scaleout: (d) partition %u (slot %u) moved from node %d to node %d: %ld keys "
            "one by one from offset %s; offset %s when the slot changed hands; %lld ASK replies\n",
            busy, slot, from, to, moved, off, off_split, ask);
    /* The members' slot maps still name the source: MOVED. */
    deadline = test_now_ms() + 20000;
    while (errorstat(src, "MOVED") == 0) {
        cr_assert(test_now_ms() < deadline, "no command met MOVED after the migration");
        wl_sleep_ms(20);
    }
    pw_reconnect(&w);
    pw_produce(&w, entries() - entries() / 2 - entries() / 4);
    pw_wait_caught_up(&w, 120000);
    fprintf(stderr, "scaleout: (d) %lld MOVED replies from the old owner after the migration\n",
            errorstat(src, "MOVED"));
    /* stx info names each partition's node, the moved one's new node too. */
    char cmd[1024];
    snprintf(cmd, sizeof cmd, "%s --url %s info %s --json", STX_CLI_PATH, tc.url, w.stream);
    FILE *f = popen(cmd, "r");
    cr_assert(f);
    static char out[65536];
    size_t n = fread(out, 1, sizeof out - 1, f);
    out[n] = '\0';
    cr_assert_eq(pclose(f), 0, "%s", cmd);
    for (unsigned i = 0; i < PARTS; i++) {
        char want[256];
        stx_partition_name(part, sizeof part, w.stream, i);
        snprintf(want, sizeof want, "\"stream\":\"%s\",\"node\":\"127.0.0.1:%d\"", part,
                 tc.node[test_cluster_owner(&tc, slot_of(&w, i))].port);
        cr_assert(strstr(out, want), "partition %u: no %s in %s", i, want, out);
    }
    cr_assert_eq(test_cluster_owner(&tc, slot), to);
    pw_check(&w);
    stop_all(m, 3);
    pw_check(&w);
    redisFree(src);
    pw_free(&w);
    test_cluster_stop(&tc);
}

static long xlen(redisContext *c, const char *key)
{
    return (long)test_cmd_int(c, "XLEN %s", key);
}

/* (e) The master of a busy partition is killed; its replica is promoted and
 * the members go on.  replicas: commit_wait_replicas ("0": off). */
static void failover(const char *replicas)
{
    test_cluster tc;
    test_cluster_start(&tc, 0);
    partwork w;
    pw_init(&w, NULL, &tc, strcmp(replicas, "0") ? "fw" : "fa", PARTS);
    /* The command and WAIT timeouts fit in two thirds of the lease
     * (stx_member_new()). */
    const char *conf[] = {"commit_wait_replicas", replicas, "commit_wait_timeout_ms", "300", NULL};
    w.conf = conf;
    w.lease_ttl_ms = 1500;
    w.batch_size = 8; /* many commits in flight when the master dies */
    w.handler_delay_us = 200; /* work left for the members when it dies, in any build */
    pw_produce(&w, entries() * 3 / 4);
    /* The entries themselves are on the replicas before anything fails:
     * what the failover can lose below is commits only. */
    for (int i = 0; i < TEST_CLUSTER_NODES; i++)
        if (w.node[i]) cr_assert_eq(test_cmd_int(w.node[i], "WAIT 1 5000"), 1);
    unsigned busy = PARTS - 1, slot = slot_of(&w, busy);

    pid_t m[] = {pw_spawn(&w, "m1"), pw_spawn(&w, "m2"), pw_spawn(&w, "m3")};
    wait_started(&w, busy);
    /* The replica falls behind (stopped for less than the node timeout,
     * its link cut): the commits its master acknowledges meanwhile are the
     * ones a failover loses.  With commit_wait_replicas each of them waits out its WAIT
     * and is counted as unreplicated. */
    int old = test_cluster_owner(&tc, slot), replica = -1;
    redisReply *info = test_cmd(pw_conn(&w, busy), "INFO replication");
    const char *at = strstr(info->str, "slave0:");
    const char *port = at ? strstr(at, "port=") : NULL;
    for (int i = 0; port && i < TEST_CLUSTER_NODES; i++)
        if (tc.node[i].port == atoi(port + 5)) replica = i;
    freeReplyObject(info);
    cr_assert_geq(replica, 0, "no replica of node %d", old);
    kill(tc.node[replica].pid, SIGSTOP);
    /* Its link is cut while it cannot reconnect: what the master writes
     * from now on reaches no replica (what is already in the socket still
     * does, once it runs again). */
    freeReplyObject(test_cmd(pw_conn(&w, busy), "CLIENT KILL TYPE replica"));
    wl_sleep_ms(500);
    /* What the old master says just before it dies, for every partition it
     * serves: offsets and alerts. */
    char off_before[PW_MAX_PARTS][64];
    long alerts_before[PW_MAX_PARTS];
    int on_old[PW_MAX_PARTS];
    for (unsigned i = 0; i < PARTS; i++) {
        char part[80], alerts[96];
        on_old[i] = test_cluster_owner(&tc, slot_of(&w, i)) == old;
        if (!on_old[i]) continue;
        stx_partition_name(part, sizeof part, w.stream, i);
        snprintf(alerts, sizeof alerts, "%s:alerts", part);
        pw_offset(&w, i, off_before[i], sizeof off_before[i]);
        alerts_before[i] = xlen(pw_conn(&w, i), alerts);
    }
    test_redis_kill(&tc.node[old]);
    kill(tc.node[replica].pid, SIGCONT);
    test_cluster_wait_ok(&tc, slot, 30000);
    int now = test_cluster_owner(&tc, slot);
    cr_assert_eq(now, replica);
    pw_reconnect(&w);
    long lost_entries = 0, lost_alerts = 0;
    for (unsigned i = 0; i < PARTS; i++) {
        if (!on_old[i]) continue;
        char part[80], alerts[96], off[64];
        stx_partition_name(part, sizeof part, w.stream, i);
        snprintf(alerts, sizeof alerts, "%s:alerts", part);
        pw_offset(&w, i, off, sizeof off);
        /* Entries whose commit the promoted replica does not have. */
        redisReply *r = test_cmd(pw_conn(&w, i), "XRANGE %s (%s %s", part, off[0] ? off : "0-0",
                                 off_before[i][0] ? off_before[i] : "0-0");
        lost_entries += (long)r->elements;
        freeReplyObject(r);
        long a = xlen(pw_conn(&w, i), alerts);
        if (a < alerts_before[i]) lost_alerts += alerts_before[i] - a;
    }
    fprintf(stderr, "scaleout: (e) commit_wait_replicas=%s: master %d killed, replica %d promoted; "
           "the promoted replica lacks the commits of %ld entries and %ld alerts the old master "
           "had acknowledged (they are processed again)\n",
           replicas, old, now, lost_entries, lost_alerts);
    /* The members go on without a replica behind the new master (with
     * commit_wait_replicas each commit there waits out its timeout), then
     * the old master comes back as its replica. */
    if (strcmp(replicas, "0") == 0)
        cr_assert_gt(lost_entries, 0, "the failover lost no acknowledged commit: nothing tested");
    pw_produce(&w, entries() / 8);
    wl_sleep_ms(1000);
    test_redis_restart(&tc.node[old]);
    test_cluster_wait_ok(&tc, slot, 30000);
    pw_produce(&w, entries() - entries() * 3 / 4 - entries() / 8);
    pw_wait_caught_up(&w, 120000);
    /* State, offsets and alerts agree with each other and with the entries:
     * what a lost commit took away was done again, once. */
    pw_check(&w);
    stop_all(m, 3);
    pw_check(&w);
    pw_free(&w);
    test_cluster_stop(&tc);
}

Test(scaleout, failover_commit_wait_replicas)
{
    failover("1");
}

Test(scaleout, failover_async_replication)
{
    failover("0");
}
