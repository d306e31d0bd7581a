/* The fault tests' workload. */
#include "workload.h"

#include <criterion/criterion.h>
#include <inttypes.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/prctl.h>
#include <time.h>
#include <unistd.h>

#include "streamtx.h"

uint64_t wl_rand(uint64_t *s)
{
    *s ^= *s << 13;
    *s ^= *s >> 7;
    *s ^= *s << 17;
    return *s;
}

void wl_sleep_ms(long ms)
{
    struct timespec ts = {ms / 1000, (ms % 1000) * 1000000L};
    while (nanosleep(&ts, &ts) != 0) {}
}

void wl_init(workload *w, const test_redis *r, const char *name)
{
    memset(w, 0, sizeof *w);
    w->redis = r;
    snprintf(w->stream, sizeof w->stream, "%s", name);
    snprintf(w->alerts, sizeof w->alerts, "%s-alerts", name);
    snprintf(w->group, sizeof w->group, "inv");
    for (int s = 0; s < WL_SKUS; s++) w->stock[s] = WL_INITIAL;
    w->seed = 0x9e3779b97f4a7c15ull ^ ((uint64_t)getpid() << 20) ^ (uint64_t)time(NULL);
}

void wl_produce(workload *w, redisContext *c, long n, int with_poison)
{
    long poison_at = with_poison ? n / 2 : -1;
    for (long i = 0; i < n; i++) {
        if (i == poison_at) {
            redisAppendCommand(c, "XADD %s * poison 1", w->stream);
            continue;
        }
        int sku = (int)(wl_rand(&w->seed) % WL_SKUS);
        /* Restocks come more often once a SKU is low, so stock hovers
         * around the threshold and crosses it many times. */
        int low = w->stock[sku] <= WL_THRESHOLD + 5;
        int restock = wl_rand(&w->seed) % (low ? 3 : 12) == 0;
        int qty = restock ? 10 + (int)(wl_rand(&w->seed) % 21) : 1 + (int)(wl_rand(&w->seed) % 5);
        redisAppendCommand(c, "XADD %s * type %s sku sku-%02d qty %d", w->stream,
                           restock ? "restock" : "sale", sku, qty);
        int64_t before = w->stock[sku];
        w->stock[sku] += restock ? qty : -qty;
        if (before > WL_THRESHOLD && w->stock[sku] <= WL_THRESHOLD) w->crossings++;
    }
    for (long i = 0; i < n; i++) {
        redisReply *r;
        cr_assert_eq(redisGetReply(c, (void **)&r), REDIS_OK, "XADD: %s", c->errstr);
        cr_assert_eq(r->type, REDIS_REPLY_STRING);
        if (i == poison_at) snprintf(w->poison_id, sizeof w->poison_id, "%s", r->str);
        freeReplyObject(r);
    }
    w->produced += n;
}

/* ---- the child ---------------------------------------------------------- */

struct child {
    const workload *w;
    redisContext *side;         /* counts poison attempts */
};

static int inventory_handler(const stx_msg *msg, stx_txn *txn, void *ud)
{
    struct child *ch = ud;
    if (stx_msg_get(msg, "poison", NULL)) {
        if (!ch->side) ch->side = redisConnect("127.0.0.1", ch->w->redis->port);
        if (ch->side && !ch->side->err) {
            redisReply *r = redisCommand(ch->side, "INCR %s-poison-attempts", ch->w->stream);
            if (r) freeReplyObject(r);
        }
        /* A handler bug that takes the process down, as a segfault would:
         * the default action, not a sanitizer's report. */
        signal(SIGSEGV, SIG_DFL);
        raise(SIGSEGV);
        _exit(99);
    }
    size_t sku_len;
    const char *sku = stx_msg_get(msg, "sku", &sku_len);
    const char *type = stx_msg_get(msg, "type", NULL);
    const char *qty = stx_msg_get(msg, "qty", NULL);
    if (!sku || !type || !qty) return stx_txn_fail(txn, "malformed entry %s", stx_msg_id(msg));
    int64_t stock = WL_INITIAL;
    int rc = stx_txn_get_i64(txn, sku, sku_len, &stock);
    if (rc != STX_OK && rc != STX_ENOTFOUND) return rc;
    int64_t before = stock;
    stock += strcmp(type, "restock") == 0 ? atoi(qty) : -atoi(qty);
    if ((rc = stx_txn_put_i64(txn, sku, sku_len, stock)) != STX_OK) return rc;
    if (before > WL_THRESHOLD && stock <= WL_THRESHOLD) {
        char s[24];
        snprintf(s, sizeof s, "%" PRId64, stock);
        return stx_txn_publishv(txn, ch->w->alerts, "sku", sku, "stock", s, NULL);
    }
    return STX_OK;
}

static stx_processor *volatile child_processor;

static void on_term(int sig)
{
    (void)sig;
    if (child_processor) stx_processor_stop(child_processor);
}

static void quiet_log(stx_log_level level, const char *line, void *ud)
{
    (void)level;
    (void)line;
    (void)ud;
}

static int child_main(const workload *w, int exit_when_idle)
{
    struct child ch = {w, NULL};
    stx_config *c = stx_config_new();
    char num[24];
    stx_config_set(c, "url", w->url ? w->url : w->redis->url, NULL, 0);
    stx_config_set(c, "stream", w->stream, NULL, 0);
    stx_config_set(c, "group", w->group, NULL, 0);
    stx_config_set(c, "consumer", "worker", NULL, 0);
    stx_config_set(c, "block_ms", "100", NULL, 0);
    stx_config_set(c, "connect_timeout_ms", "500", NULL, 0);
    snprintf(num, sizeof num, "%ld", w->command_timeout_ms ? w->command_timeout_ms : 2000);
    stx_config_set(c, "command_timeout_ms", num, NULL, 0);
    if (w->max_deliveries) {
        snprintf(num, sizeof num, "%ld", w->max_deliveries);
        stx_config_set(c, "max_deliveries", num, NULL, 0);
    }
    if (w->batch_size) {
        snprintf(num, sizeof num, "%d", w->batch_size);
        stx_config_set(c, "batch_size", num, NULL, 0);
    }
    for (int i = 0; w->conf && w->conf[i] && w->conf[i + 1]; i += 2)
        if (stx_config_set(c, w->conf[i], w->conf[i + 1], NULL, 0) != STX_OK) return 1;
    stx_config_set_handler(c, inventory_handler, &ch);
    if (w->setup) w->setup(c, w->setup_data);
    if (!getenv("STX_TEST_VERBOSE")) stx_config_set_log(c, quiet_log, NULL);
    stx_processor *p;
    if (stx_processor_new(&p, c) != STX_OK) return 1;
    stx_config_free(c);
    child_processor = p;
    struct sigaction sa;
    memset(&sa, 0, sizeof sa);
    sa.sa_handler = on_term;
    sigaction(SIGTERM, &sa, NULL);
    int rc;
    if (exit_when_idle) {
        while ((rc = stx_processor_poll(p)) != 0) {
            if (rc > 0 || rc == STX_EHANDLER) continue;
            if (stx_error_class_of(rc) == STX_CLASS_RETRIABLE) {
                wl_sleep_ms(50);
                continue;
            }
            break;
        }
    } else {
        rc = stx_processor_run(p);
    }
    int code = rc == STX_OK || rc == STX_ESTOPPED ? 0 : rc == STX_EFENCED ? 3 : 1;
    if (code == 1) fprintf(stderr, "worker: %s: %s\n", stx_strerror(rc), stx_processor_errmsg(p));
    /* A SIGTERM that arrives while the processor is freed (which may talk to
     * Redis) must find no processor, not a dangling pointer. */
    child_processor = NULL;
    stx_processor_free(p);
    if (ch.side) redisFree(ch.side);
    return code;
}

pid_t wl_spawn(const workload *w, int exit_when_idle)
{
    fflush(NULL);
    pid_t pid = fork();
    cr_assert_neq(pid, -1);
    if (pid == 0) {
        /* A test that fails must not leave its worker running for ever. */
        prctl(PR_SET_PDEATHSIG, SIGKILL);
        _exit(child_main(w, exit_when_idle));
    }
    return pid;
}

/* ---- checks ------------------------------------------------------------- */

static void last_id(const workload *w, redisContext *c, char *out, size_t cap)
{
    redisReply *r = test_cmd(c, "XREVRANGE %s + - COUNT 1", w->stream);
    snprintf(out, cap, "%s", r->elements ? r->element[0]->element[0]->str : "0-0");
    freeReplyObject(r);
}

int wl_wait_caught_up(const workload *w, redisContext *c, long timeout_ms)
{
    char meta[256], last[64];
    stx_key_name(meta, sizeof meta, w->stream, w->group, "meta");
    last_id(w, c, last, sizeof last);
    int64_t deadline = test_now_ms() + timeout_ms;
    for (;;) {
        redisReply *r = redisCommand(c, "HGET %s offset", meta);
        int done = r && r->type == REDIS_REPLY_STRING && strcmp(r->str, last) == 0;
        if (r) freeReplyObject(r);
        if (done) return 0;
        cr_assert(test_now_ms() < deadline, "processor did not reach %s within %ld ms", last,
                  timeout_ms);
        wl_sleep_ms(20);
    }
}

long long wl_poison_attempts(const workload *w, redisContext *c)
{
    redisReply *r = test_cmd(c, "GET %s-poison-attempts", w->stream);
    long long n = r->type == REDIS_REPLY_STRING ? atoll(r->str) : 0;
    freeReplyObject(r);
    return n;
}

static const char *field(const redisReply *f, const char *name)
{
    for (size_t j = 0; j + 1 < f->elements; j += 2)
        if (strcmp(f->element[j]->str, name) == 0) return f->element[j + 1]->str;
    return NULL;
}

void wl_check(const workload *w, redisContext *c, uint64_t expect_attempts)
{
    char state[256], meta[256], dlq[256], last[64];
    stx_key_name(state, sizeof state, w->stream, w->group, "state");
    stx_key_name(meta, sizeof meta, w->stream, w->group, "meta");
    stx_key_name(dlq, sizeof dlq, w->stream, w->group, "dlq");
    for (int s = 0; s < WL_SKUS; s++) {
        redisReply *r = test_cmd(c, "HGET %s sku-%02d", state, s);
        int64_t v = WL_INITIAL;
        if (r->type == REDIS_REPLY_STRING) cr_assert_eq(stx_mp_read_i64(r->str, r->len, &v), STX_OK);
        freeReplyObject(r);
        cr_assert_eq(v, w->stock[s], "sku-%02d: stock %" PRId64 ", expected %" PRId64, s, v,
                     w->stock[s]);
    }
    last_id(w, c, last, sizeof last);
    redisReply *off = test_cmd(c, "HGET %s offset", meta);
    cr_assert_eq(off->type, REDIS_REPLY_STRING);
    cr_assert_str_eq(off->str, last, "offset %s, last entry %s", off->str, last);
    freeReplyObject(off);

    /* One alert per crossing, each naming a distinct source entry. */
    redisReply *r = test_cmd(c, "XRANGE %s - +", w->alerts);
    cr_assert_eq((long)r->elements, w->crossings, "%zu alerts for %ld crossings", r->elements,
                 w->crossings);
    for (size_t i = 0; i < r->elements; i++) {
        const char *cause = field(r->element[i]->element[1], "causation_id");
        cr_assert(cause, "alert %zu has no causation_id", i);
        for (size_t k = 0; k < i; k++)
            cr_assert_str_neq(field(r->element[k]->element[1], "causation_id"), cause,
                              "source %s alerted twice", cause);
    }
    freeReplyObject(r);

    r = test_cmd(c, "XPENDING %s %s", w->stream, w->group);
    cr_assert_eq(r->element[0]->integer, 0, "%lld entries pending", r->element[0]->integer);
    freeReplyObject(r);

    r = test_cmd(c, "XRANGE %s - +", dlq);
    if (!w->poison_id[0]) {
        cr_assert_eq(r->elements, 0, "%zu unexpected dead letters", r->elements);
    } else {
        cr_assert_eq(r->elements, 1, "%zu dead letters, expected the poison entry only", r->elements);
        const redisReply *f = r->element[0]->element[1];
        cr_assert_str_eq(field(f, "stx.source_id"), w->poison_id);
        cr_assert_str_eq(field(f, "stx.reason"), "max_deliveries");
        cr_assert_str_eq(field(f, "poison"), "1");
        if (expect_attempts) {
            char want[24];
            snprintf(want, sizeof want, "%" PRIu64, expect_attempts);
            cr_assert_str_eq(field(f, "stx.attempts"), want);
        }
    }
    freeReplyObject(r);
}
