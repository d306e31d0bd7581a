/* Partitioned streams on one Redis: names, the documented hash, the
 * partition count, keyed produce, merged reads, leases, and members that
 * share the partitions of a group while they are killed, added and paused. */
#include <criterion/criterion.h>
#include <inttypes.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/prctl.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "harness.h"
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

/* ---- members of the inventory workload ----------------------------------- */

#define SKUS 20
#define THRESHOLD 10
#define INITIAL 100
#define NPART 8

struct inv {
    char stream[64];
    int64_t stock[SKUS];
    long crossings;
    uint64_t seed;
};

static uint64_t rnd(uint64_t *s)
{
    *s ^= *s << 13;
    *s ^= *s >> 7;
    *s ^= *s << 17;
    return *s;
}

/* n sales and restocks, each to the partition of its SKU (pipelined XADDs). */
static void produce(struct inv *w, redisContext *c, int n)
{
    char part[80], sku[16];
    for (int i = 0; i < n; i++) {
        int k = (int)(rnd(&w->seed) % SKUS);
        int low = w->stock[k] <= THRESHOLD + 5;
        int restock = rnd(&w->seed) % (low ? 3 : 12) == 0;
        int qty = restock ? 10 + (int)(rnd(&w->seed) % 21) : 1 + (int)(rnd(&w->seed) % 5);
        snprintf(sku, sizeof sku, "sku-%02d", k);
        stx_partition_name(part, sizeof part, w->stream,
                           (unsigned)stx_partition_of(sku, strlen(sku), NPART));
        redisAppendCommand(c, "XADD %s * type %s sku %s qty %d", part,
                           restock ? "restock" : "sale", sku, qty);
        int64_t before = w->stock[k];
        w->stock[k] += restock ? qty : -qty;
        if (before > THRESHOLD && w->stock[k] <= THRESHOLD) w->crossings++;
    }
    for (int i = 0; i < n; i++) {
        void *r;
        cr_assert_eq(redisGetReply(c, &r), REDIS_OK);
        freeReplyObject(r);
    }
}

/* The alerts go to a stream in the partition's slot. */
static int handler(const stx_msg *msg, stx_txn *txn, void *ud)
{
    (void)ud;
    size_t sku_len;
    const char *sku = stx_msg_get(msg, "sku", &sku_len);
    const char *type = stx_msg_get(msg, "type", NULL), *qty = stx_msg_get(msg, "qty", NULL);
    if (!sku || !type || !qty) return STX_HANDLER_FAIL;
    if (stx_msg_partition(msg) != stx_partition_of(sku, sku_len, NPART)) return STX_HANDLER_FAIL;
    int64_t stock = INITIAL;
    int rc = stx_txn_get_i64(txn, sku, sku_len, &stock);
    if (rc != STX_OK && rc != STX_ENOTFOUND) return rc;
    int64_t before = stock;
    stock += strcmp(type, "restock") == 0 ? atoi(qty) : -atoi(qty);
    if ((rc = stx_txn_put_i64(txn, sku, sku_len, stock)) != STX_OK) return rc;
    if (before > THRESHOLD && stock <= THRESHOLD) {
        char alerts[128], s[24];
        snprintf(alerts, sizeof alerts, "%s:alerts", stx_msg_stream(msg));
        snprintf(s, sizeof s, "%" PRId64, stock);
        return stx_txn_publishv(txn, alerts, "sku", sku, "stock", s, NULL);
    }
    return STX_OK;
}

static stx_member *volatile child_member;

static void on_term(int sig)
{
    (void)sig;
    if (child_member) stx_member_stop(child_member);
}

static void quiet(stx_log_level level, const char *line, void *ud)
{
    (void)ud;
    if (getenv("STX_TEST_VERBOSE")) fprintf(stderr, "[%d] %d %s\n", (int)getpid(), level, line);
}

static pid_t spawn_member(const char *stream, const char *name)
{
    fflush(NULL);
    pid_t pid = fork();
    cr_assert_neq(pid, -1);
    if (pid) return pid;
    prctl(PR_SET_PDEATHSIG, SIGKILL);
    stx_config *c = stx_config_new();
    const char *kv[] = {"url", R.url, "stream", stream, "group", "inv", "consumer", name,
                        "lease_ttl_ms", "1000", "block_ms", "100", "batch_size", "64",
                        "command_timeout_ms", "2000", "stats_interval_ms", "0", "log_level", "info",
                        NULL};
    for (int i = 0; kv[i]; i += 2)
        if (stx_config_set(c, kv[i], kv[i + 1], NULL, 0) != STX_OK) _exit(2);
    stx_config_set_handler(c, handler, NULL);
    stx_config_set_log(c, quiet, NULL);
    stx_member *m;
    if (stx_member_new(&m, c) != STX_OK) _exit(2);
    stx_config_free(c);
    child_member = m;
    struct sigaction sa;
    memset(&sa, 0, sizeof sa);
    sa.sa_handler = on_term;
    sigaction(SIGTERM, &sa, NULL);
    int rc = stx_member_run(m);
    if (rc != STX_OK) fprintf(stderr, "member %s: %s: %s\n", name, stx_strerror(rc), stx_member_errmsg(m));
    child_member = NULL;
    stx_member_free(m);
    _exit(rc == STX_OK ? 0 : 1);
}

/* Owner of each partition's lease ("" when free or expired by Redis' clock). */
static void owners(redisContext *c, const char *stream, char out[NPART][64])
{
    redisReply *t = test_cmd(c, "TIME");
    long long now = atoll(t->element[0]->str) * 1000 + atoll(t->element[1]->str) / 1000;
    freeReplyObject(t);
    for (unsigned i = 0; i < NPART; i++) {
        char part[80], key[256];
        stx_partition_name(part, sizeof part, stream, i);
        stx_key_name(key, sizeof key, part, "inv", "lease");
        redisReply *r = test_cmd(c, "HMGET %s owner expires_ms", key);
        int live = r->element[0]->type == REDIS_REPLY_STRING &&
                   r->element[1]->type == REDIS_REPLY_STRING && atoll(r->element[1]->str) > now;
        snprintf(out[i], 64, "%s", live ? r->element[0]->str : "");
        freeReplyObject(r);
    }
}

static unsigned long long epoch_of(redisContext *c, const char *stream, unsigned i)
{
    char part[80], key[256];
    stx_partition_name(part, sizeof part, stream, i);
    stx_key_name(key, sizeof key, part, "inv", "meta");
    redisReply *r = test_cmd(c, "HGET %s epoch", key);
    unsigned long long e = r->type == REDIS_REPLY_STRING ? strtoull(r->str, NULL, 10) : 0;
    freeReplyObject(r);
    return e;
}

static int owned_by(const char *owner, const char *name)
{
    size_t n = strlen(name);
    return strncmp(owner, name, n) == 0 && owner[n] == '-';
}

/* The member ids (from the member hash) of the members named in names. */
static size_t member_ids(redisContext *c, const char *stream, const char *const *names,
                         char ids[8][64])
{
    char key[256];
    stx_key_name(key, sizeof key, stream, "inv", "members");
    redisReply *r = test_cmd(c, "HKEYS %s", key);
    size_t n = 0;
    for (size_t j = 0; j < r->elements && n < 8; j++)
        for (int k = 0; names[k]; k++)
            if (owned_by(r->element[j]->str, names[k])) snprintf(ids[n++], 64, "%s", r->element[j]->str);
    freeReplyObject(r);
    return n;
}

/* Wait until the leases are exactly the rendezvous assignment over the
 * members named in names (NULL-terminated), as the header documents it. */
static void wait_owners(redisContext *c, const char *stream, const char *const *names,
                        long timeout_ms, char own[NPART][64])
{
    int64_t deadline = test_now_ms() + timeout_ms;
    size_t want_n = 0;
    while (names[want_n]) want_n++;
    for (;;) {
        char ids[8][64];
        size_t n = member_ids(c, stream, names, ids);
        owners(c, stream, own);
        int ok = n == want_n;
        for (unsigned i = 0; i < NPART && ok; i++) {
            const char *best = NULL;
            uint64_t best_h = 0;
            for (size_t k = 0; k < n; k++) {
                uint64_t h = stx_rendezvous_hash(ids[k], i);
                if (!best || h > best_h || (h == best_h && strcmp(ids[k], best) < 0)) {
                    best = ids[k];
                    best_h = h;
                }
            }
            ok = strcmp(own[i], best) == 0;
        }
        if (ok) return;
        cr_assert(test_now_ms() < deadline, "partitions not assigned within %ld ms", timeout_ms);
        sleep_ms(50);
    }
}

static void wait_caught_up(redisContext *c, const char *stream, long timeout_ms)
{
    int64_t deadline = test_now_ms() + timeout_ms;
    for (unsigned i = 0; i < NPART; i++) {
        char part[80], meta[256];
        stx_partition_name(part, sizeof part, stream, i);
        stx_key_name(meta, sizeof meta, part, "inv", "meta");
        redisReply *l = test_cmd(c, "XREVRANGE %s + - COUNT 1", part);
        if (l->elements == 0) {
            freeReplyObject(l);
            continue;
        }
        for (;;) {
            redisReply *o = test_cmd(c, "HGET %s offset", meta);
            int done = o->type == REDIS_REPLY_STRING &&
                       strcmp(o->str, l->element[0]->element[0]->str) == 0;
            freeReplyObject(o);
            if (done) break;
            cr_assert(test_now_ms() < deadline, "partition %u did not catch up", i);
            sleep_ms(50);
        }
        freeReplyObject(l);
    }
}

static const char *field(const redisReply *f, const char *name)
{
    for (size_t j = 0; j + 1 < f->elements; j += 2)
        if (strcmp(f->element[j]->str, name) == 0) return f->element[j + 1]->str;
    return NULL;
}

/* Stock per SKU, one alert per crossing each from a distinct source,
 * offset = last id and nothing pending or dead-lettered, per partition. */
static void check_exact(redisContext *c, const struct inv *w)
{
    long alerts = 0;
    for (int k = 0; k < SKUS; k++) {
        char sku[16], part[80], state[256];
        snprintf(sku, sizeof sku, "sku-%02d", k);
        stx_partition_name(part, sizeof part, w->stream,
                           (unsigned)stx_partition_of(sku, strlen(sku), NPART));
        stx_key_name(state, sizeof state, part, "inv", "state");
        redisReply *r = test_cmd(c, "HGET %s %s", state, sku);
        int64_t v = INITIAL;
        if (r->type == REDIS_REPLY_STRING) cr_assert_eq(stx_mp_read_i64(r->str, r->len, &v), STX_OK);
        freeReplyObject(r);
        cr_assert_eq(v, w->stock[k], "%s: stock %" PRId64 ", expected %" PRId64, sku, v, w->stock[k]);
    }
    for (unsigned i = 0; i < NPART; i++) {
        char part[80], meta[256], dlq[256];
        stx_partition_name(part, sizeof part, w->stream, i);
        stx_key_name(meta, sizeof meta, part, "inv", "meta");
        stx_key_name(dlq, sizeof dlq, part, "inv", "dlq");
        redisReply *l = test_cmd(c, "XREVRANGE %s + - COUNT 1", part);
        if (l->elements) {
            redisReply *o = test_cmd(c, "HGET %s offset", meta);
            cr_assert_eq(o->type, REDIS_REPLY_STRING);
            cr_assert_str_eq(o->str, l->element[0]->element[0]->str, "partition %u", i);
            freeReplyObject(o);
            redisReply *p = test_cmd(c, "XPENDING %s inv", part);
            cr_assert_eq(p->element[0]->integer, 0, "partition %u: %lld pending", i,
                         p->element[0]->integer);
            freeReplyObject(p);
        }
        freeReplyObject(l);
        cr_assert_eq(test_cmd_int(c, "XLEN %s", dlq), 0);
        redisReply *r = test_cmd(c, "XRANGE %s:alerts - +", part);
        for (size_t a = 0; a < r->elements; a++) {
            const redisReply *f = r->element[a]->element[1];
            const char *cause = field(f, "causation_id"), *sku = field(f, "sku");
            cr_assert(cause && sku);
            cr_assert_eq(stx_partition_of(sku, strlen(sku), NPART), (int)i);
            for (size_t b = 0; b < a; b++)
                cr_assert_str_neq(field(r->element[b]->element[1], "causation_id"), cause,
                                  "source %s alerted twice", cause);
        }
        alerts += (long)r->elements;
        freeReplyObject(r);
    }
    cr_assert_eq(alerts, w->crossings, "%ld alerts for %ld crossings", alerts, w->crossings);
}

static int exit_code(pid_t pid)
{
    int st;
    cr_assert_eq(waitpid(pid, &st, 0), pid);
    return WIFEXITED(st) ? WEXITSTATUS(st) : 128 + WTERMSIG(st);
}

Test(partitions, members_kill_join_pause)
{
    struct inv w;
    memset(&w, 0, sizeof w);
    test_unique("inv", w.stream, sizeof w.stream);
    for (int k = 0; k < SKUS; k++) w.stock[k] = INITIAL;
    w.seed = 0x9e3779b97f4a7c15ull ^ ((uint64_t)getpid() << 20);
    stx_client *cl = test_client(&R);
    cr_assert_eq(stx_stream_create(cl, w.stream, NPART), STX_OK);
    stx_client_free(cl);
    redisContext *c = test_redis_connect(&R);
    char own[NPART][64];

    /* Three members share 8 partitions. */
    produce(&w, c, 5000);
    pid_t m1 = spawn_member(w.stream, "m1"), m2 = spawn_member(w.stream, "m2"),
          m3 = spawn_member(w.stream, "m3");
    const char *three[] = {"m1", "m2", "m3", NULL};
    wait_owners(c, w.stream, three, 10000, own);

    /* SIGKILL one: its partitions are taken within the lease (1 s) and a
     * renewal period; the entries keep coming. */
    sleep_ms(200);
    kill(m1, SIGKILL);
    cr_assert_eq(exit_code(m1), 128 + SIGKILL);
    int64_t killed_at = test_now_ms();
    produce(&w, c, 5000);
    const char *two[] = {"m2", "m3", NULL};
    wait_owners(c, w.stream, two, 10000, own);
    cr_log_info("partitions of the killed member taken over after %" PRId64 " ms",
                test_now_ms() - killed_at);

    /* A fourth joins: it gets its share, the others let go of it. */
    pid_t m4 = spawn_member(w.stream, "m4");
    produce(&w, c, 5000);
    const char *three_b[] = {"m2", "m3", "m4", NULL};
    int64_t joined_at = test_now_ms();
    wait_owners(c, w.stream, three_b, 10000, own);
    int n4 = 0;
    for (unsigned i = 0; i < NPART; i++) n4 += owned_by(own[i], "m4");
    cr_log_info("the joining member holds %d partitions after %" PRId64 " ms", n4,
                test_now_ms() - joined_at);

    /* SIGSTOP the one with most partitions past its lease: the others take
     * them (a new epoch each); resumed, it is fenced and writes nothing
     * that counts twice (the exact checks below). */
    int n2 = 0, n3 = 0;
    for (unsigned i = 0; i < NPART; i++) {
        n2 += owned_by(own[i], "m2");
        n3 += owned_by(own[i], "m3");
    }
    pid_t victim = n2 >= n3 ? m2 : m3;
    const char *vname = n2 >= n3 ? "m2" : "m3";
    unsigned long long before[NPART];
    int had[NPART];
    for (unsigned i = 0; i < NPART; i++) {
        had[i] = owned_by(own[i], vname);
        before[i] = epoch_of(c, w.stream, i);
    }
    kill(victim, SIGSTOP);
    produce(&w, c, 5000);
    const char *others[] = {victim == m2 ? "m3" : "m2", "m4", NULL};
    wait_owners(c, w.stream, others, 10000, own);
    wait_caught_up(c, w.stream, 30000); /* the others finish its partitions */
    for (unsigned i = 0; i < NPART; i++)
        if (had[i])
            cr_assert_gt(epoch_of(c, w.stream, i), before[i], "partition %u: no new epoch", i);
    kill(victim, SIGCONT);
    sleep_ms(1500); /* it resumes, finds itself fenced, rejoins */
    wait_caught_up(c, w.stream, 30000);

    pid_t all[] = {m2, m3, m4};
    for (int k = 0; k < 3; k++) kill(all[k], SIGTERM);
    for (int k = 0; k < 3; k++) cr_assert_eq(exit_code(all[k]), 0, "member %d", k);
    check_exact(c, &w);
    /* Stopped members leave the member hash and release their leases. */
    char members[256];
    stx_key_name(members, sizeof members, w.stream, "inv", "members");
    cr_assert_eq(test_cmd_int(c, "HLEN %s", members), 0);
    owners(c, w.stream, own);
    for (unsigned i = 0; i < NPART; i++) cr_assert_str_eq(own[i], "", "partition %u", i);
    redisFree(c);
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
                        "lease_ttl_ms", "3000", "block_ms", "20", "stats_interval_ms", "0",
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
