/* The inventory workload over a partitioned stream (see partwork.h). */
#include "partwork.h"

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

#include "partition.h"
#include "streamtx.h"

void pw_init(partwork *w, const test_redis *r, const test_cluster *tc, const char *name,
             unsigned parts)
{
    cr_assert((r != NULL) != (tc != NULL) && parts > 0 && parts <= PW_MAX_PARTS);
    memset(w, 0, sizeof *w);
    test_unique(name, w->stream, sizeof w->stream);
    w->group = "inv";
    w->parts = parts;
    w->redis = r;
    w->cluster = tc;
    w->url = r ? r->url : tc->url;
    for (int k = 0; k < WL_SKUS; k++) w->stock[k] = WL_INITIAL;
    w->seed = 0x9e3779b97f4a7c15ull ^ ((uint64_t)getpid() << 20) ^ (uint64_t)time(NULL);
    stx_config *conf = stx_config_new();
    cr_assert_eq(stx_config_set(conf, "url", w->url, NULL, 0), STX_OK);
    stx_client *c;
    int rc = stx_client_new(&c, conf);
    stx_config_free(conf);
    cr_assert_eq(rc, STX_OK, "stx_client_new: %s", c ? stx_client_errmsg(c) : "");
    rc = stx_stream_create(c, w->stream, parts);
    cr_assert_eq(rc, STX_OK, "stx_stream_create: %s", stx_client_errmsg(c));
    stx_client_free(c);
}

void pw_reconnect(partwork *w)
{
    for (int i = 0; i < TEST_CLUSTER_NODES; i++) {
        if (w->node[i]) redisFree(w->node[i]);
        w->node[i] = NULL;
    }
}

void pw_free(partwork *w)
{
    pw_reconnect(w);
    if (w->one) redisFree(w->one);
    w->one = NULL;
}

static unsigned part_slot(const partwork *w, unsigned i)
{
    char part[80];
    stx_partition_name(part, sizeof part, w->stream, i);
    return stx_key_slot(part, strlen(part));
}

redisContext *pw_conn(partwork *w, unsigned i)
{
    if (w->redis) {
        if (!w->one) w->one = test_redis_connect(w->redis);
        return w->one;
    }
    int m = test_cluster_owner(w->cluster, part_slot(w, i));
    if (!w->node[m]) w->node[m] = test_cluster_connect(w->cluster, m);
    return w->node[m];
}

/* One sale or restock of a random SKU (of partition only, when only >= 0):
 * the XADD appended to c (after an ASKING when asking), the model updated.
 * Returns the partition. */
static unsigned produce_one(partwork *w, redisContext *const *conn, int only, int asking)
{
    char part[80], sku[16];
    int k;
    unsigned p;
    do {
        k = (int)(wl_rand(&w->seed) % WL_SKUS);
        snprintf(sku, sizeof sku, "sku-%02d", k);
        p = (unsigned)stx_partition_of(sku, strlen(sku), w->parts);
    } while (only >= 0 && p != (unsigned)only);
    /* Restocks come more often once a SKU is low, so stock hovers
     * around the threshold and crosses it many times. */
    int low = w->stock[k] <= WL_THRESHOLD + 5;
    int restock = wl_rand(&w->seed) % (low ? 3 : 12) == 0;
    int qty = restock ? 10 + (int)(wl_rand(&w->seed) % 21) : 1 + (int)(wl_rand(&w->seed) % 5);
    stx_partition_name(part, sizeof part, w->stream, p);
    if (asking) redisAppendCommand(conn[p], "ASKING");
    redisAppendCommand(conn[p], "XADD %s * type %s sku %s qty %d", part,
                       restock ? "restock" : "sale", sku, qty);
    int64_t before = w->stock[k];
    w->stock[k] += restock ? qty : -qty;
    if (before > WL_THRESHOLD && w->stock[k] <= WL_THRESHOLD) w->crossings++;
    return p;
}

static void read_replies(redisContext *c, long n)
{
    for (long e = 0; e < n; e++) {
        redisReply *r;
        cr_assert_eq(redisGetReply(c, (void **)&r), REDIS_OK, "XADD: %s", c->errstr);
        cr_assert(r->type == REDIS_REPLY_STRING || r->type == REDIS_REPLY_STATUS, "XADD: %s",
                  r->type == REDIS_REPLY_ERROR ? r->str : "unexpected reply");
        freeReplyObject(r);
    }
}

void pw_produce(partwork *w, long n)
{
    redisContext *conn[PW_MAX_PARTS];
    for (unsigned i = 0; i < w->parts; i++) conn[i] = pw_conn(w, i);
    /* Replies come back per connection in the order of its commands. */
    long pending[PW_MAX_PARTS] = {0};
    for (long e = 0; e < n; e++) pending[produce_one(w, conn, -1, 0)]++;
    for (unsigned p = 0; p < w->parts; p++) read_replies(conn[p], pending[p]);
    w->produced += n;
}

void pw_produce_asking(partwork *w, unsigned i, redisContext *c, long n)
{
    cr_assert(i < w->parts);
    redisContext *conn[PW_MAX_PARTS] = {0};
    conn[i] = c;
    for (long e = 0; e < n; e++) produce_one(w, conn, (int)i, 1);
    read_replies(c, 2 * n);
    w->produced += n;
}

/* ---- the member child ------------------------------------------------------ */

/* The alerts go to a stream in the partition's slot. */
struct handler_conf {
    unsigned parts;
    long delay_us;
};

static int handler(const stx_msg *msg, stx_txn *txn, void *ud)
{
    const struct handler_conf *hc = ud;
    const unsigned *parts = &hc->parts;
    if (hc->delay_us) {
        struct timespec ts = {0, hc->delay_us * 1000L};
        nanosleep(&ts, NULL);
    }
    size_t sku_len;
    const char *sku = stx_msg_get(msg, "sku", &sku_len);
    const char *type = stx_msg_get(msg, "type", NULL), *qty = stx_msg_get(msg, "qty", NULL);
    if (!sku || !type || !qty) return STX_HANDLER_FAIL;
    if (stx_msg_partition(msg) != stx_partition_of(sku, sku_len, *parts)) return STX_HANDLER_FAIL;
    int64_t stock = WL_INITIAL;
    int rc = stx_txn_get_i64(txn, sku, sku_len, &stock);
    if (rc != STX_OK && rc != STX_ENOTFOUND) return rc;
    int64_t before = stock;
    stock += strcmp(type, "restock") == 0 ? atoi(qty) : -atoi(qty);
    if ((rc = stx_txn_put_i64(txn, sku, sku_len, stock)) != STX_OK) return rc;
    if (before > WL_THRESHOLD && stock <= WL_THRESHOLD) {
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

static void log_line(stx_log_level level, const char *line, void *ud)
{
    (void)ud;
    if (getenv("STX_TEST_VERBOSE") || level >= STX_LOG_WARN)
        fprintf(stderr, "[%d] %d %s\n", (int)getpid(), level, line);
}

pid_t pw_spawn(const partwork *w, const char *name)
{
    fflush(NULL);
    pid_t pid = fork();
    cr_assert_neq(pid, -1);
    if (pid) return pid;
    prctl(PR_SET_PDEATHSIG, SIGKILL);
    char lease[24], batch[24], timeout[24];
    snprintf(timeout, sizeof timeout, "%ld", w->command_timeout_ms ? w->command_timeout_ms : 600);
    snprintf(lease, sizeof lease, "%ld", w->lease_ttl_ms ? w->lease_ttl_ms : 1000);
    snprintf(batch, sizeof batch, "%d", w->batch_size ? w->batch_size : 64);
    stx_config *c = stx_config_new();
    const char *kv[] = {"url", w->url, "stream", w->stream, "group", w->group, "consumer", name,
                        "lease_ttl_ms", lease, "block_ms", "100", "batch_size", batch,
                        "command_timeout_ms", timeout, "stats_interval_ms", "0", "log_level", "info",
                        NULL};
    for (int i = 0; kv[i]; i += 2)
        if (stx_config_set(c, kv[i], kv[i + 1], NULL, 0) != STX_OK) _exit(2);
    for (int i = 0; w->conf && w->conf[i]; i += 2)
        if (stx_config_set(c, w->conf[i], w->conf[i + 1], NULL, 0) != STX_OK) _exit(2);
    static struct handler_conf hc;
    hc.parts = w->parts;
    hc.delay_us = w->handler_delay_us;
    stx_config_set_handler(c, handler, &hc);
    stx_config_set_log(c, log_line, NULL);
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

int pw_exit_code(pid_t pid)
{
    int st;
    cr_assert_eq(waitpid(pid, &st, 0), pid);
    return WIFEXITED(st) ? WEXITSTATUS(st) : 128 + WTERMSIG(st);
}

/* ---- leases and members ---------------------------------------------------- */

static long long redis_now_ms(redisContext *c)
{
    redisReply *t = test_cmd(c, "TIME");
    long long now = atoll(t->element[0]->str) * 1000 + atoll(t->element[1]->str) / 1000;
    freeReplyObject(t);
    return now;
}

void pw_owners(partwork *w, char own[][64])
{
    for (unsigned i = 0; i < w->parts; i++) {
        char part[80], key[256];
        stx_partition_name(part, sizeof part, w->stream, i);
        stx_key_name(key, sizeof key, part, w->group, "lease");
        redisContext *c = pw_conn(w, i);
        long long now = redis_now_ms(c); /* the clock of the node that holds the lease */
        redisReply *r = test_cmd(c, "HMGET %s owner expires_ms", key);
        int live = r->element[0]->type == REDIS_REPLY_STRING &&
                   r->element[1]->type == REDIS_REPLY_STRING && atoll(r->element[1]->str) > now;
        snprintf(own[i], 64, "%s", live ? r->element[0]->str : "");
        freeReplyObject(r);
    }
}

unsigned long long pw_epoch(partwork *w, unsigned i)
{
    char part[80], key[256];
    stx_partition_name(part, sizeof part, w->stream, i);
    stx_key_name(key, sizeof key, part, w->group, "meta");
    redisReply *r = test_cmd(pw_conn(w, i), "HGET %s epoch", key);
    unsigned long long e = r->type == REDIS_REPLY_STRING ? strtoull(r->str, NULL, 10) : 0;
    freeReplyObject(r);
    return e;
}

int pw_owned_by(const char *owner, const char *name)
{
    size_t n = strlen(name);
    return strncmp(owner, name, n) == 0 && owner[n] == '-';
}

/* The member ids (from the member hash) of the members named in names. */
static size_t member_ids(partwork *w, const char *const *names, char ids[PW_MAX_MEMBERS][64])
{
    char key[256];
    stx_key_name(key, sizeof key, w->stream, w->group, "members");
    redisContext *c;
    if (w->redis) {
        c = pw_conn(w, 0);
    } else {
        int m = test_cluster_owner(w->cluster, stx_key_slot(key, strlen(key)));
        if (!w->node[m]) w->node[m] = test_cluster_connect(w->cluster, m);
        c = w->node[m];
    }
    redisReply *r = test_cmd(c, "HKEYS %s", key);
    size_t n = 0;
    for (size_t j = 0; j < r->elements && n < PW_MAX_MEMBERS; j++)
        for (int k = 0; names[k]; k++)
            if (pw_owned_by(r->element[j]->str, names[k])) snprintf(ids[n++], 64, "%s", r->element[j]->str);
    freeReplyObject(r);
    return n;
}

void pw_wait_owners(partwork *w, const char *const *names, long timeout_ms, char own[][64])
{
    int64_t deadline = test_now_ms() + timeout_ms;
    size_t want_n = 0;
    while (names[want_n]) want_n++;
    for (;;) {
        char ids[PW_MAX_MEMBERS][64];
        size_t n = member_ids(w, names, ids);
        pw_owners(w, own);
        int ok = n == want_n;
        for (unsigned i = 0; i < w->parts && ok; i++) {
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
        wl_sleep_ms(50);
    }
}

void pw_offset(partwork *w, unsigned i, char *buf, size_t cap)
{
    char part[80], meta[256];
    stx_partition_name(part, sizeof part, w->stream, i);
    stx_key_name(meta, sizeof meta, part, w->group, "meta");
    redisReply *o = test_cmd(pw_conn(w, i), "HGET %s offset", meta);
    snprintf(buf, cap, "%s", o->type == REDIS_REPLY_STRING ? o->str : "");
    freeReplyObject(o);
}

static void last_id(partwork *w, unsigned i, char *buf, size_t cap)
{
    char part[80];
    stx_partition_name(part, sizeof part, w->stream, i);
    redisReply *l = test_cmd(pw_conn(w, i), "XREVRANGE %s + - COUNT 1", part);
    snprintf(buf, cap, "%s", l->elements ? l->element[0]->element[0]->str : "");
    freeReplyObject(l);
}

void pw_wait_caught_up(partwork *w, long timeout_ms)
{
    int64_t deadline = test_now_ms() + timeout_ms;
    for (unsigned i = 0; i < w->parts; i++) {
        char last[64], off[64];
        last_id(w, i, last, sizeof last);
        if (!last[0]) continue;
        for (;;) {
            pw_offset(w, i, off, sizeof off);
            if (strcmp(off, last) == 0) break;
            cr_assert(test_now_ms() < deadline, "partition %u did not catch up (offset %s, last %s)",
                      i, off, last);
            wl_sleep_ms(50);
        }
    }
}

static const char *field(const redisReply *f, const char *name)
{
    for (size_t j = 0; j + 1 < f->elements; j += 2)
        if (strcmp(f->element[j]->str, name) == 0) return f->element[j + 1]->str;
    return NULL;
}

void pw_check(partwork *w)
{
    long alerts = 0;
    for (int k = 0; k < WL_SKUS; k++) {
        char sku[16], part[80], state[256];
        snprintf(sku, sizeof sku, "sku-%02d", k);
        unsigned p = (unsigned)stx_partition_of(sku, strlen(sku), w->parts);
        stx_partition_name(part, sizeof part, w->stream, p);
        stx_key_name(state, sizeof state, part, w->group, "state");
        redisReply *r = test_cmd(pw_conn(w, p), "HGET %s %s", state, sku);
        int64_t v = WL_INITIAL;
        if (r->type == REDIS_REPLY_STRING) cr_assert_eq(stx_mp_read_i64(r->str, r->len, &v), STX_OK);
        freeReplyObject(r);
        cr_assert_eq(v, w->stock[k], "%s: stock %" PRId64 ", expected %" PRId64, sku, v, w->stock[k]);
    }
    for (unsigned i = 0; i < w->parts; i++) {
        char part[80], dlq[256], last[64], off[64];
        redisContext *c = pw_conn(w, i);
        stx_partition_name(part, sizeof part, w->stream, i);
        stx_key_name(dlq, sizeof dlq, part, w->group, "dlq");
        last_id(w, i, last, sizeof last);
        if (last[0]) {
            pw_offset(w, i, off, sizeof off);
            cr_assert_str_eq(off, last, "partition %u: offset %s, last id %s", i, off, last);
            redisReply *p = test_cmd(c, "XPENDING %s %s", part, w->group);
            cr_assert_eq(p->element[0]->integer, 0, "partition %u: %lld pending", i,
                         p->element[0]->integer);
            freeReplyObject(p);
        }
        cr_assert_eq(test_cmd_int(c, "XLEN %s", dlq), 0);
        redisReply *r = test_cmd(c, "XRANGE %s:alerts - +", part);
        for (size_t a = 0; a < r->elements; a++) {
            const redisReply *f = r->element[a]->element[1];
            const char *cause = field(f, "causation_id"), *sku = field(f, "sku");
            cr_assert(cause && sku);
            cr_assert_eq(stx_partition_of(sku, strlen(sku), w->parts), (int)i);
            for (size_t b = 0; b < a; b++)
                cr_assert_str_neq(field(r->element[b]->element[1], "causation_id"), cause,
                                  "source %s alerted twice", cause);
        }
        alerts += (long)r->elements;
        freeReplyObject(r);
    }
    cr_assert_eq(alerts, w->crossings, "%ld alerts for %ld crossings", alerts, w->crossings);
}
