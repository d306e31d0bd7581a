/* Retries, dead letters, limits and Redis refusing work: one behaviour per
 * test, each with its exact outcome. */
#include <criterion/criterion.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "harness.h"
#include "streamtx.h"

static test_redis R;

static void setup(void) { test_redis_start(&R, 0, NULL); }
static void teardown(void) { test_redis_stop(&R); }

TestSuite(reliability, .init = setup, .fini = teardown, .timeout = 120);

struct script {
    int retries_left;           /* return STX_HANDLER_RETRY this many times */
    long retry_after;           /* > 0: stx_txn_retry_after() with it */
    int always;                 /* return this verdict always (0: none) */
    uint64_t deliveries[16];    /* delivery count seen per call */
    int64_t at_ms[16];
    int calls;
    long sleep_ms;
    char seen[4096];            /* bytes of the field "blob" */
    size_t seen_len;
};

static int scripted(const stx_msg *msg, stx_txn *txn, void *ud)
{
    struct script *s = ud;
    if (s->calls < 16) {
        s->deliveries[s->calls] = stx_msg_delivery_count(msg);
        s->at_ms[s->calls] = test_now_ms();
    }
    s->calls++;
    if (s->sleep_ms) {
        struct timespec ts = {0, s->sleep_ms * 1000000L};
        nanosleep(&ts, NULL);
    }
    size_t n;
    const char *blob = stx_msg_get(msg, "blob", &n);
    if (blob && n <= sizeof s->seen) {
        memcpy(s->seen, blob, n);
        s->seen_len = n;
    }
    if (s->always) {
        stx_txn_fail(txn, "scripted failure");
        return s->always;
    }
    if (s->retries_left > 0) {
        s->retries_left--;
        if (s->retry_after > 0) cr_assert_eq(stx_txn_retry_after(txn, s->retry_after), STX_OK);
        stx_txn_fail(txn, "not yet");
        return STX_HANDLER_RETRY;
    }
    return stx_txn_incr(txn, "n", 1, 1, NULL);
}

static stx_processor *make_on(const char *url, const char *stream, struct script *s,
                              const char *const *kv)
{
    stx_config *c = stx_config_new();
    char err[256];
    cr_assert_eq(stx_config_set(c, "url", url, err, sizeof err), STX_OK, "%s", err);
    stx_config_set(c, "stream", stream, NULL, 0);
    stx_config_set(c, "group", "g", NULL, 0);
    stx_config_set(c, "block_ms", "50", NULL, 0);
    stx_config_set(c, "log_level", "error", NULL, 0);
    for (; kv && kv[0]; kv += 2)
        cr_assert_eq(stx_config_set(c, kv[0], kv[1], err, sizeof err), STX_OK, "%s", err);
    stx_config_set_handler(c, scripted, s);
    stx_processor *p;
    cr_assert_eq(stx_processor_new(&p, c), STX_OK);
    stx_config_free(c);
    return p;
}

static stx_processor *make(const char *stream, struct script *s, const char *const *kv)
{
    return make_on(R.url, stream, s, kv);
}

static int64_t counter(redisContext *c, const char *stream)
{
    char state[256];
    stx_key_name(state, sizeof state, stream, "g", "state");
    redisReply *r = test_cmd(c, "HGET %s n", state);
    int64_t v = 0;
    if (r->type == REDIS_REPLY_STRING) cr_assert_eq(stx_mp_read_i64(r->str, r->len, &v), STX_OK);
    freeReplyObject(r);
    return v;
}

static redisReply *dead_letters(redisContext *c, const char *stream)
{
    char dlq[256];
    stx_key_name(dlq, sizeof dlq, stream, "g", "dlq");
    return test_cmd(c, "XRANGE %s - +", dlq);
}

static const char *field(const redisReply *entry, const char *name)
{
    const redisReply *f = entry->element[1];
    for (size_t j = 0; j + 1 < f->elements; j += 2)
        if (strcmp(f->element[j]->str, name) == 0) return f->element[j + 1]->str;
    return "";
}

Test(reliability, retriable_failure_is_retried_after_the_delay_with_the_group_count)
{
    redisContext *c = test_redis_connect(&R);
    freeReplyObject(test_cmd(c, "XADD rt * k v"));
    struct script s = {.retries_left = 2};
    static const char *const kv[] = {"retry_backoff", "constant", "retry_base_ms", "120", NULL};
    stx_processor *p = make("rt", &s, kv);
    cr_assert_eq(stx_processor_poll(p), STX_EHANDLER);
    cr_assert(strstr(stx_processor_errmsg(p), "retry in 120 ms"), "%s", stx_processor_errmsg(p));
    cr_assert_eq(counter(c, "rt"), 0);
    cr_assert_eq(stx_processor_poll(p), STX_EHANDLER);
    cr_assert_eq(stx_processor_poll(p), 1, "%s", stx_processor_errmsg(p));
    cr_assert_eq(s.calls, 3);
    /* The attempt number is the consumer group's own delivery counter. */
    cr_assert_eq(s.deliveries[0], 1);
    cr_assert_eq(s.deliveries[1], 2);
    cr_assert_eq(s.deliveries[2], 3);
    cr_assert_geq(s.at_ms[1] - s.at_ms[0], 120);
    cr_assert_geq(s.at_ms[2] - s.at_ms[1], 120);
    cr_assert_eq(counter(c, "rt"), 1);
    stx_stats st;
    stx_processor_stats(p, &st);
    cr_assert_eq(st.retries, 2);
    stx_processor_free(p);
    redisFree(c);
}

Test(reliability, retries_exhausted_move_the_entry_to_the_dead_letter_stream)
{
    redisContext *c = test_redis_connect(&R);
    redisReply *x = test_cmd(c, "XADD rx * k v extra 1");
    char id[64];
    snprintf(id, sizeof id, "%s", x->str);
    freeReplyObject(x);
    freeReplyObject(test_cmd(c, "XADD rx * k w"));
    struct script s = {.retries_left = 1000};
    static const char *const kv[] = {"max_deliveries", "3", "retry_base_ms", "0", NULL};
    stx_processor *p = make("rx", &s, kv);
    cr_assert_eq(stx_processor_poll(p), STX_EHANDLER);
    cr_assert_eq(stx_processor_poll(p), STX_EHANDLER);
    cr_assert_eq(stx_processor_poll(p), STX_EHANDLER);
    cr_assert(strstr(stx_processor_errmsg(p), "dead-letter"), "%s", stx_processor_errmsg(p));
    cr_assert_eq(s.calls, 3);
    redisReply *d = dead_letters(c, "rx");
    cr_assert_eq(d->elements, 1);
    cr_assert_str_eq(field(d->element[0], "stx.source_id"), id);
    cr_assert_str_eq(field(d->element[0], "stx.source_stream"), "rx");
    cr_assert_str_eq(field(d->element[0], "stx.group"), "g");
    cr_assert_str_eq(field(d->element[0], "stx.reason"), "retries_exhausted");
    cr_assert_str_eq(field(d->element[0], "stx.attempts"), "3");
    cr_assert_str_eq(field(d->element[0], "stx.error"), "not yet");
    cr_assert_str_eq(field(d->element[0], "extra"), "1");
    cr_assert(atoll(field(d->element[0], "stx.failed_at")) > 1700000000000LL);
    freeReplyObject(d);
    /* The next entry is handled (it succeeds: the script runs out of retries
     * only for the first); the offset moved past the dead letter. */
    s.retries_left = 0;
    cr_assert_eq(stx_processor_poll(p), 1, "%s", stx_processor_errmsg(p));
    cr_assert_eq(counter(c, "rx"), 1);
    stx_stats st;
    stx_processor_stats(p, &st);
    cr_assert_eq(st.dead_lettered, 1);
    redisReply *pend = test_cmd(c, "XPENDING rx g");
    cr_assert_eq(pend->element[0]->integer, 0);
    freeReplyObject(pend);
    stx_processor_free(p);
    redisFree(c);
}

Test(reliability, permanent_failure_is_dead_lettered_at_once)
{
    redisContext *c = test_redis_connect(&R);
    freeReplyObject(test_cmd(c, "XADD pf * k v"));
    struct script s = {.always = STX_HANDLER_FAIL};
    stx_processor *p = make("pf", &s, NULL);
    cr_assert_eq(stx_processor_poll(p), STX_EHANDLER);
    cr_assert_eq(s.calls, 1);
    redisReply *d = dead_letters(c, "pf");
    cr_assert_eq(d->elements, 1);
    cr_assert_str_eq(field(d->element[0], "stx.reason"), "handler_failed");
    cr_assert_str_eq(field(d->element[0], "stx.attempts"), "1");
    freeReplyObject(d);
    cr_assert_eq(stx_processor_poll(p), 0);
    stx_processor_free(p);
    redisFree(c);
}

Test(reliability, limits_send_oversized_entries_to_the_dead_letter_stream)
{
    redisContext *c = test_redis_connect(&R);
    freeReplyObject(test_cmd(c, "XADD lm * a 1 b 2 c 3 d 4 e 5"));
    char big[5000];
    memset(big, 'x', sizeof big);
    freeReplyObject(test_cmd(c, "XADD lm * blob %b", big, sizeof big));
    freeReplyObject(test_cmd(c, "XADD lm * k ok"));
    struct script s = {0};
    static const char *const kv[] = {"max_fields", "4", "max_value_bytes", "4096", NULL};
    stx_processor *p = make("lm", &s, kv);
    cr_assert_eq(stx_processor_poll(p), STX_EHANDLER);
    cr_assert(strstr(stx_processor_errmsg(p), "max_fields"), "%s", stx_processor_errmsg(p));
    cr_assert_eq(stx_processor_poll(p), STX_EHANDLER);
    cr_assert(strstr(stx_processor_errmsg(p), "max_value_bytes"), "%s", stx_processor_errmsg(p));
    cr_assert_eq(stx_processor_poll(p), 1, "%s", stx_processor_errmsg(p));
    cr_assert_eq(s.calls, 1, "the handler saw an oversized entry");
    redisReply *d = dead_letters(c, "lm");
    cr_assert_eq(d->elements, 2);
    cr_assert_str_eq(field(d->element[0], "stx.reason"), "limit");
    cr_assert_str_eq(field(d->element[0], "stx.fields"), "5");
    cr_assert_str_eq(field(d->element[1], "stx.reason"), "limit");
    freeReplyObject(d);
    stx_processor_free(p);
    redisFree(c);
}

Test(reliability, odd_fields_are_passed_on_byte_for_byte)
{
    redisContext *c = test_redis_connect(&R);
    const char bytes[] = "\xff\xfe\x00\x01 not utf-8 \xc3\x28";
    freeReplyObject(test_cmd(c, "XADD od * %b %b blob %b", "", (size_t)0, "", (size_t)0, bytes,
                             sizeof bytes - 1));
    /* Thousands of fields in one entry. */
    const char *argv[2 + 2 + 4000];
    size_t lens[2 + 2 + 4000];
    char names[2000][8];
    argv[0] = "XADD";
    argv[1] = "od";
    argv[2] = "*";
    int n = 3;
    for (int i = 0; i < 2000; i++) {
        snprintf(names[i], sizeof names[i], "f%d", i);
        argv[n] = names[i];
        argv[n + 1] = names[i];
        n += 2;
    }
    for (int i = 0; i < n; i++) lens[i] = strlen(argv[i]);
    redisReply *r = redisCommandArgv(c, n, argv, lens);
    cr_assert_eq(r->type, REDIS_REPLY_STRING);
    freeReplyObject(r);
    struct script s = {0};
    /* One entry per poll: the first poll's handler call is the one checked. */
    static const char *const kv[] = {"max_fields", "5000", "batch_size", "1", "overlap", "0", NULL};
    stx_processor *p = make("od", &s, kv);
    cr_assert_eq(stx_processor_poll(p), 1, "%s", stx_processor_errmsg(p));
    cr_assert_eq(s.seen_len, sizeof bytes - 1);
    cr_assert_eq(memcmp(s.seen, bytes, s.seen_len), 0);
    int total = 1;
    while ((n = stx_processor_poll(p)) > 0) total += n;
    cr_assert_eq(n, 0, "%s", stx_processor_errmsg(p));
    cr_assert_eq(total, 2);
    cr_assert_eq(counter(c, "od"), 2);
    stx_processor_free(p);
    redisFree(c);
}

Test(reliability, slow_handler_is_reported)
{
    redisContext *c = test_redis_connect(&R);
    freeReplyObject(test_cmd(c, "XADD sl * k v"));
    struct script s = {.sleep_ms = 30};
    static const char *const kv[] = {"handler_warn_ms", "10", NULL};
    stx_processor *p = make("sl", &s, kv);
    cr_assert_eq(stx_processor_poll(p), 1);
    stx_stats st;
    stx_processor_stats(p, &st);
    cr_assert_eq(st.slow_handlers, 1);
    stx_processor_free(p);
    redisFree(c);
}

Test(reliability, deleted_group_gives_a_clear_error_and_a_restart_recovers)
{
    redisContext *c = test_redis_connect(&R);
    for (int i = 0; i < 5; i++) freeReplyObject(test_cmd(c, "XADD ng * k v"));
    struct script s = {0};
    stx_processor *p = make("ng", &s, NULL);
    cr_assert_eq(stx_processor_poll(p), 5);
    freeReplyObject(test_cmd(c, "XGROUP DESTROY ng g"));
    for (int i = 0; i < 3; i++) freeReplyObject(test_cmd(c, "XADD ng * k v"));
    cr_assert_eq(stx_processor_poll(p), STX_ENOGROUP);
    cr_assert(strstr(stx_processor_errmsg(p), "restart"), "%s", stx_processor_errmsg(p));
    cr_assert_eq(stx_error_class_of(STX_ENOGROUP), STX_CLASS_FATAL);
    stx_processor_free(p);
    /* A new start creates the group again from the beginning; the stored
     * offset makes the first five duplicates, applied once. */
    p = make("ng", &s, NULL);
    int total = 0, n;
    while ((n = stx_processor_poll(p)) > 0) total += n;
    cr_assert_eq(n, 0, "%s", stx_processor_errmsg(p));
    cr_assert_eq(total, 3);
    cr_assert_eq(counter(c, "ng"), 8);
    stx_processor_free(p);
    redisFree(c);
}

Test(reliability, refused_writes_under_oom_write_nothing_and_recover)
{
    redisContext *c = test_redis_connect(&R);
    for (int i = 0; i < 3; i++) freeReplyObject(test_cmd(c, "XADD oom * k v"));
    struct script s = {0};
    stx_processor *p = make("oom", &s, NULL);
    cr_assert_eq(stx_processor_start(p), STX_OK);
    freeReplyObject(test_cmd(c, "CONFIG SET maxmemory 1"));
    int rc = stx_processor_poll(p);
    cr_assert_eq(rc, STX_EREDIS_REFUSED, "%d %s", rc, stx_processor_errmsg(p));
    cr_assert(strstr(stx_processor_errmsg(p), "OOM"), "%s", stx_processor_errmsg(p));
    cr_assert_eq(stx_error_class_of(rc), STX_CLASS_RETRIABLE);
    cr_assert_eq(s.calls, 0);
    cr_assert_eq(counter(c, "oom"), 0);
    freeReplyObject(test_cmd(c, "CONFIG SET maxmemory 0"));
    cr_assert_eq(stx_processor_poll(p), 3, "%s", stx_processor_errmsg(p));
    cr_assert_eq(counter(c, "oom"), 3);
    stx_processor_free(p);
    redisFree(c);
}

Test(reliability, read_only_replica_is_refused_clearly)
{
    test_redis replica;
    char port[16];
    snprintf(port, sizeof port, "%d", R.port);
    const char *const extra[] = {"--replicaof", "127.0.0.1", port, NULL};
    test_redis_start(&replica, 0, extra);
    struct script s = {0};
    stx_processor *p = make_on(replica.url, "ro", &s, NULL);
    int rc = stx_processor_start(p);
    cr_assert_eq(rc, STX_EREDIS_REFUSED, "%d %s", rc, stx_processor_errmsg(p));
    cr_assert(strstr(stx_processor_errmsg(p), "READONLY"), "%s", stx_processor_errmsg(p));
    stx_processor_free(p);
    test_redis_stop(&replica);
}

/* Version 2 of the state keeps counters as strings "v2:<n>". */
static int to_v2(uint32_t from, uint32_t to, const void *key, size_t key_len, const void *value,
                 size_t value_len, stx_txn *txn, void *ud)
{
    int *calls = ud;
    (*calls)++;
    cr_assert_eq(from, 1);
    cr_assert_eq(to, 2);
    int64_t n;
    int rc = stx_mp_read_i64(value, value_len, &n);
    if (rc != STX_OK) return rc;
    char text[32];
    int len = snprintf(text, sizeof text, "v2:%" PRId64, n);
    cr_assert_eq(stx_txn_publishv(txn, "nowhere", "a", "b", NULL), STX_EINVAL);
    return stx_txn_put_str(txn, key, key_len, text, (size_t)len);
}

Test(reliability, schema_version_mismatch_is_refused_or_migrated)
{
    redisContext *c = test_redis_connect(&R);
    for (int i = 0; i < 3; i++) freeReplyObject(test_cmd(c, "XADD sv * k v"));
    char meta[256], state[256];
    stx_key_name(meta, sizeof meta, "sv", "g", "meta");
    stx_key_name(state, sizeof state, "sv", "g", "state");
    struct script s = {0};
    static const char *const v1[] = {"state_schema_version", "1", NULL};
    stx_processor *p = make("sv", &s, v1);
    cr_assert_eq(stx_processor_poll(p), 3);
    stx_processor_free(p);
    redisReply *r = test_cmd(c, "HGET %s schema", meta);
    cr_assert_str_eq(r->str, "1");
    freeReplyObject(r);

    /* Version 2 without a migration: refused, nothing written. */
    static const char *const v2[] = {"state_schema_version", "2", NULL};
    p = make("sv", &s, v2);
    cr_assert_eq(stx_processor_start(p), STX_ESCHEMA);
    cr_assert(strstr(stx_processor_errmsg(p), "schema version 1, this processor expects 2"), "%s",
              stx_processor_errmsg(p));
    stx_processor_free(p);
    cr_assert_eq(counter(c, "sv"), 3);

    /* With a migration every key is converted, in one script. */
    stx_config *conf = stx_config_new();
    stx_config_set(conf, "url", R.url, NULL, 0);
    stx_config_set(conf, "stream", "sv", NULL, 0);
    stx_config_set(conf, "group", "g", NULL, 0);
    stx_config_set(conf, "log_level", "error", NULL, 0);
    stx_config_set(conf, "state_schema_version", "2", NULL, 0);
    int calls = 0;
    stx_config_set_migrate(conf, to_v2, &calls);
    stx_config_set_handler(conf, scripted, &s);
    cr_assert_eq(stx_processor_new(&p, conf), STX_OK);
    stx_config_free(conf);
    cr_assert_eq(stx_processor_start(p), STX_OK, "%s", stx_processor_errmsg(p));
    cr_assert_eq(calls, 1);
    r = test_cmd(c, "HGET %s n", state);
    cr_assert_eq(r->len, 5);
    cr_assert_eq(memcmp(r->str, "\xa4v2:3", 5), 0);
    freeReplyObject(r);
    r = test_cmd(c, "HGET %s schema", meta);
    cr_assert_str_eq(r->str, "2");
    freeReplyObject(r);
    const void *v;
    size_t n;
    cr_assert_eq(stx_processor_state_get(p, "n", 1, &v, &n), STX_OK);
    cr_assert_eq(n, 5);
    stx_processor_free(p);
    redisFree(c);
}

Test(reliability, dead_letters_are_listed_and_redriven_once)
{
    redisContext *c = test_redis_connect(&R);
    freeReplyObject(test_cmd(c, "XADD rd * k v1 extra %b", "\x00\xff", (size_t)2));
    freeReplyObject(test_cmd(c, "XADD rd * k v2"));
    struct script s = {.always = STX_HANDLER_FAIL};
    stx_processor *p = make("rd", &s, NULL);
    cr_assert_eq(stx_processor_poll(p), STX_EHANDLER);
    cr_assert_eq(stx_processor_poll(p), STX_EHANDLER);
    cr_assert_eq(stx_processor_poll(p), 0);

    stx_client *cl = test_client(&R);
    stx_entries *e;
    cr_assert_eq(stx_dlq_list(cl, "rd", "g", NULL, 0, &e), STX_OK, "%s", stx_client_errmsg(cl));
    cr_assert_eq(stx_entries_count(e), 2);
    size_t n;
    const char *reason = stx_msg_get(stx_entries_at(e, 0), "stx.reason", &n);
    cr_assert_str_eq(reason, "handler_failed");
    const char *first_dlq_id = stx_msg_id(stx_entries_at(e, 0));

    /* Redrive the first by id, then all that is left. */
    size_t moved = 99;
    cr_assert_eq(stx_dlq_redrive(cl, "rd", "g", &first_dlq_id, 1, &moved), STX_OK, "%s",
                 stx_client_errmsg(cl));
    cr_assert_eq(moved, 1);
    cr_assert_eq(stx_dlq_redrive(cl, "rd", "g", &first_dlq_id, 1, &moved), STX_OK);
    cr_assert_eq(moved, 0, "a redriven entry moved twice");
    stx_entries_free(e);
    cr_assert_eq(stx_dlq_redrive(cl, "rd", "g", NULL, 0, &moved), STX_OK);
    cr_assert_eq(moved, 1);
    cr_assert_eq(stx_dlq_redrive(cl, "rd", "g", NULL, 0, &moved), STX_OK);
    cr_assert_eq(moved, 0);
    const char *bad = "not-an-id";
    cr_assert_eq(stx_dlq_redrive(cl, "rd", "g", &bad, 1, &moved), STX_EINVALID_CURSOR);

    /* The source stream has both again, with their original fields, and a
     * handler that now succeeds applies each once. */
    redisReply *r = test_cmd(c, "XRANGE rd - +");
    cr_assert_eq(r->elements, 4);
    redisReply *f = r->element[2]->element[1];
    cr_assert_eq(f->elements, 4);
    cr_assert_str_eq(f->element[1]->str, "v1");
    cr_assert_eq(f->element[3]->len, 2);
    cr_assert_eq(memcmp(f->element[3]->str, "\x00\xff", 2), 0);
    freeReplyObject(r);
    s.always = 0;
    cr_assert_eq(stx_processor_poll(p), 2, "%s", stx_processor_errmsg(p));
    cr_assert_eq(counter(c, "rd"), 2);
    cr_assert_eq(stx_dlq_list(cl, "rd", "g", "0", 0, &e), STX_OK);
    cr_assert_eq(stx_entries_count(e), 0);
    stx_entries_free(e);
    stx_client_free(cl);
    stx_processor_free(p);
    redisFree(c);
}

/* An id given twice (or spelt twice: "01-1" is "1-1") moves its entry once,
 * in the library call and in the script it runs. */
Test(reliability, redrive_of_an_id_given_twice_moves_it_once)
{
    redisContext *c = test_redis_connect(&R);
    freeReplyObject(test_cmd(c, "XADD rt * k v1"));
    freeReplyObject(test_cmd(c, "XADD rt * k v2"));
    struct script s = {.always = STX_HANDLER_FAIL};
    stx_processor *p = make("rt", &s, NULL);
    cr_assert_eq(stx_processor_poll(p), STX_EHANDLER);
    cr_assert_eq(stx_processor_poll(p), STX_EHANDLER);
    stx_processor_free(p);
    char dlq[256];
    stx_key_name(dlq, sizeof dlq, "rt", "g", "dlq");
    redisReply *r = test_cmd(c, "XRANGE %s - +", dlq);
    cr_assert_eq(r->elements, 2);
    char a[64], b[64], a0[80];
    snprintf(a, sizeof a, "%s", r->element[0]->element[0]->str);
    snprintf(b, sizeof b, "%s", r->element[1]->element[0]->str);
    snprintf(a0, sizeof a0, "0%s", a);
    freeReplyObject(r);

    stx_client *cl = test_client(&R);
    const char *ids[] = {a, a, a0, b, a};
    size_t moved = 99;
    cr_assert_eq(stx_dlq_redrive(cl, "rt", "g", ids, 5, &moved), STX_OK, "%s",
                 stx_client_errmsg(cl));
    cr_assert_eq(moved, 2);
    cr_assert_eq(test_cmd_int(c, "XLEN rt"), 4, "an entry was redriven twice");
    cr_assert_eq(test_cmd_int(c, "XLEN %s", dlq), 0);
    /* The order given is kept: a's entry (v1) comes back first. */
    r = test_cmd(c, "XRANGE rt - +");
    cr_assert_str_eq(r->element[2]->element[1]->element[1]->str, "v1");
    cr_assert_str_eq(r->element[3]->element[1]->element[1]->str, "v2");
    freeReplyObject(r);
    stx_client_free(cl);

    /* The script on its own, given the same id twice. */
    r = test_cmd(c, "XADD %s * stx.fields 1 k v3", dlq);
    char d[64], d0[80];
    snprintf(d, sizeof d, "%s", r->str);
    snprintf(d0, sizeof d0, "0%s", d);
    freeReplyObject(r);
    FILE *f = fopen(STX_SOURCE_DIR "/lua/redrive.lua", "rb");
    cr_assert(f);
    static char script[16384];
    size_t n = fread(script, 1, sizeof script - 1, f);
    fclose(f);
    script[n] = '\0';
    r = redisCommand(c, "EVAL %s 2 rt %s %s %s %s", script, dlq, d, d, d0);
    cr_assert(r && r->type == REDIS_REPLY_ARRAY && r->elements == 4);
    cr_assert_str_eq(r->element[0]->str, "OK");
    cr_assert_eq(r->element[1]->integer, 1);
    cr_assert_eq(r->element[2]->integer, 0);
    freeReplyObject(r);
    cr_assert_eq(test_cmd_int(c, "XLEN rt"), 5);
    redisFree(c);
}

Test(reliability, handler_chooses_its_own_retry_delay)
{
    redisContext *c = test_redis_connect(&R);
    freeReplyObject(test_cmd(c, "XADD ra * k v"));
    struct script s = {.retries_left = 1, .retry_after = 70};
    static const char *const kv[] = {"retry_backoff", "constant", "retry_base_ms", "5000", NULL};
    stx_processor *p = make("ra", &s, kv);
    cr_assert_eq(stx_processor_poll(p), STX_EHANDLER);
    cr_assert(strstr(stx_processor_errmsg(p), "retry in 70 ms"), "%s", stx_processor_errmsg(p));
    cr_assert_eq(stx_processor_poll(p), 1, "%s", stx_processor_errmsg(p));
    cr_assert_geq(s.at_ms[1] - s.at_ms[0], 70);
    cr_assert_eq(stx_txn_retry_after(NULL, 5), STX_EINVAL);
    stx_processor_free(p);
    redisFree(c);
}

Test(reliability, values_of_many_megabytes)
{
    redisContext *c = test_redis_connect(&R);
    size_t big = 4u << 20, huge = 20u << 20; /* under and over the default 16 MiB */
    char *blob = malloc(huge);
    cr_assert(blob);
    for (size_t i = 0; i < huge; i++) blob[i] = (char)(i * 131u >> 3);
    freeReplyObject(test_cmd(c, "XADD mb * blob %b", blob, big));
    freeReplyObject(test_cmd(c, "XADD mb * blob %b", blob, huge));
    freeReplyObject(test_cmd(c, "XADD mb * k small"));
    struct script s = {0};
    static const char *const kv[] = {"batch_size", "1", NULL};
    stx_processor *p = make("mb", &s, kv);
    cr_assert_eq(stx_processor_poll(p), 1, "%s", stx_processor_errmsg(p));
    cr_assert_eq(stx_processor_poll(p), STX_EHANDLER);
    cr_assert(strstr(stx_processor_errmsg(p), "max_value_bytes"), "%s", stx_processor_errmsg(p));
    cr_assert_eq(stx_processor_poll(p), 1, "%s", stx_processor_errmsg(p));
    cr_assert_eq(s.calls, 2);
    cr_assert_eq(counter(c, "mb"), 2);
    /* The oversized entry is kept whole in the dead-letter stream. */
    redisReply *d = dead_letters(c, "mb");
    cr_assert_eq(d->elements, 1);
    const redisReply *f = d->element[0]->element[1];
    cr_assert_eq(f->element[3]->len, huge);
    cr_assert_eq(memcmp(f->element[3]->str, blob, huge), 0);
    freeReplyObject(d);
    free(blob);
    stx_processor_free(p);
    redisFree(c);
}

/* Makes Redis refuse writes while the batch is being handled, so the read
 * went through and the commit is what Redis refuses. */
static int refuse_during_handler(const stx_msg *msg, stx_txn *txn, void *ud)
{
    (void)msg;
    int *armed = ud;
    if (*armed) {
        redisContext *side = test_redis_connect(&R);
        freeReplyObject(test_cmd(side, "CONFIG SET maxmemory 1"));
        redisFree(side);
        *armed = 0;
    }
    return stx_txn_incr(txn, "n", 1, 1, NULL);
}

Test(reliability, refused_commit_is_retried_without_new_traffic)
{
    redisContext *c = test_redis_connect(&R);
    for (int i = 0; i < 3; i++) freeReplyObject(test_cmd(c, "XADD rc * k v"));
    int armed = 1;
    stx_config *conf = stx_config_new();
    stx_config_set(conf, "url", R.url, NULL, 0);
    stx_config_set(conf, "stream", "rc", NULL, 0);
    stx_config_set(conf, "group", "g", NULL, 0);
    stx_config_set(conf, "block_ms", "50", NULL, 0);
    stx_config_set(conf, "log_level", "error", NULL, 0);
    stx_config_set_handler(conf, refuse_during_handler, &armed);
    stx_processor *p;
    cr_assert_eq(stx_processor_new(&p, conf), STX_OK);
    stx_config_free(conf);
    int rc = stx_processor_poll(p);
    cr_assert_eq(rc, STX_EREDIS_REFUSED, "%d %s", rc, stx_processor_errmsg(p));
    cr_assert_eq(counter(c, "rc"), 0);
    freeReplyObject(test_cmd(c, "CONFIG SET maxmemory 0"));
    /* No new entry arrives: the refused batch must come again by itself
     * (re-read from the pending list, one entry per poll). */
    int total = 0, n;
    while ((n = stx_processor_poll(p)) > 0) total += n;
    cr_assert_eq(n, 0, "%s", stx_processor_errmsg(p));
    cr_assert_eq(total, 3);
    cr_assert_eq(counter(c, "rc"), 3);
    redisReply *r = test_cmd(c, "XPENDING rc g");
    cr_assert_eq(r->element[0]->integer, 0);
    freeReplyObject(r);
    stx_processor_free(p);
    redisFree(c);
}

/* ---- what a handler returns: verdicts and library codes share one int ---- */

struct passing_on {
    int code;   /* returned on the first call, then the entry is counted */
    int calls;
};

static int pass_on(const stx_msg *msg, stx_txn *txn, void *ud)
{
    (void)msg;
    struct passing_on *s = ud;
    if (s->calls++ == 0) return s->code;
    return stx_txn_incr(txn, "n", 1, 1, NULL);
}

static stx_processor *make_passing_on(const char *stream, struct passing_on *s)
{
    stx_config *c = stx_config_new();
    cr_assert_eq(stx_config_set(c, "url", R.url, NULL, 0), STX_OK);
    stx_config_set(c, "stream", stream, NULL, 0);
    stx_config_set(c, "group", "g", NULL, 0);
    stx_config_set(c, "block_ms", "50", NULL, 0);
    stx_config_set(c, "log_level", "error", NULL, 0);
    stx_config_set(c, "retry_base_ms", "0", NULL, 0);
    stx_config_set_handler(c, pass_on, s);
    stx_processor *p;
    cr_assert_eq(stx_processor_new(&p, c), STX_OK);
    stx_config_free(c);
    return p;
}

Test(reliability, a_retriable_code_returned_by_a_handler_means_retry)
{
    redisContext *c = test_redis_connect(&R);
    const int codes[] = {STX_ENOMEM, STX_ECONN, STX_ETIMEOUT, STX_EREDIS_REFUSED, STX_HANDLER_RETRY};
    for (size_t i = 0; i < sizeof codes / sizeof codes[0]; i++) {
        char stream[32];
        snprintf(stream, sizeof stream, "rc%zu", i);
        freeReplyObject(test_cmd(c, "XADD %s * k v", stream));
        struct passing_on s = {codes[i], 0};
        stx_processor *p = make_passing_on(stream, &s);
        cr_assert_eq(stx_processor_poll(p), STX_EHANDLER, "code %d", codes[i]);
        cr_assert(strstr(stx_processor_errmsg(p), "retry in"), "code %d: %s", codes[i],
                  stx_processor_errmsg(p));
        cr_assert_eq(stx_processor_poll(p), 1, "code %d: %s", codes[i], stx_processor_errmsg(p));
        cr_assert_eq(s.calls, 2);
        cr_assert_eq(counter(c, stream), 1);
        redisReply *d = dead_letters(c, stream);
        cr_assert_eq(d->elements, 0, "code %d was dead-lettered", codes[i]);
        freeReplyObject(d);
        stx_stats st;
        stx_processor_stats(p, &st);
        cr_assert_eq(st.retries, 1);
        cr_assert_eq(st.dead_lettered, 0);
        stx_processor_free(p);
    }
    redisFree(c);
}

Test(reliability, any_other_code_returned_by_a_handler_dead_letters_at_once)
{
    redisContext *c = test_redis_connect(&R);
    const int codes[] = {STX_EINVAL, STX_ETYPE, STX_ELIMIT, STX_EHANDLER, STX_HANDLER_FAIL, 7};
    for (size_t i = 0; i < sizeof codes / sizeof codes[0]; i++) {
        char stream[32];
        snprintf(stream, sizeof stream, "rf%zu", i);
        freeReplyObject(test_cmd(c, "XADD %s * k v", stream));
        struct passing_on s = {codes[i], 0};
        stx_processor *p = make_passing_on(stream, &s);
        cr_assert_eq(stx_processor_poll(p), STX_EHANDLER, "code %d", codes[i]);
        cr_assert_eq(s.calls, 1);
        redisReply *d = dead_letters(c, stream);
        cr_assert_eq(d->elements, 1, "code %d", codes[i]);
        cr_assert_str_eq(field(d->element[0], "stx.reason"), "handler_failed");
        char want[64];
        snprintf(want, sizeof want, "handler returned %d", codes[i]);
        cr_assert_str_eq(field(d->element[0], "stx.error"), want);
        freeReplyObject(d);
        stx_processor_free(p);
    }
    redisFree(c);
}

static int retry_with_message(const stx_msg *msg, stx_txn *txn, void *ud)
{
    int *calls = ud;
    ++*calls;
    return stx_txn_retry(txn, "pricing service busy for %s", stx_msg_id(msg));
}

Test(reliability, txn_retry_sets_the_message_and_retries_until_max_deliveries)
{
    redisContext *c = test_redis_connect(&R);
    redisReply *x = test_cmd(c, "XADD ry * k v");
    char id[64], want[128];
    snprintf(id, sizeof id, "%s", x->str);
    freeReplyObject(x);
    snprintf(want, sizeof want, "pricing service busy for %s", id);
    stx_config *conf = stx_config_new();
    cr_assert_eq(stx_config_set(conf, "url", R.url, NULL, 0), STX_OK);
    stx_config_set(conf, "stream", "ry", NULL, 0);
    stx_config_set(conf, "group", "g", NULL, 0);
    stx_config_set(conf, "log_level", "error", NULL, 0);
    stx_config_set(conf, "retry_base_ms", "0", NULL, 0);
    stx_config_set(conf, "max_deliveries", "2", NULL, 0);
    int calls = 0;
    stx_config_set_handler(conf, retry_with_message, &calls);
    stx_processor *p;
    cr_assert_eq(stx_processor_new(&p, conf), STX_OK);
    stx_config_free(conf);
    cr_assert_eq(stx_processor_poll(p), STX_EHANDLER);
    cr_assert(strstr(stx_processor_errmsg(p), want), "%s", stx_processor_errmsg(p));
    cr_assert(strstr(stx_processor_errmsg(p), "retry in"), "%s", stx_processor_errmsg(p));
    cr_assert_eq(stx_processor_poll(p), STX_EHANDLER);
    cr_assert_eq(calls, 2);
    redisReply *d = dead_letters(c, "ry");
    cr_assert_eq(d->elements, 1);
    cr_assert_str_eq(field(d->element[0], "stx.reason"), "retries_exhausted");
    cr_assert_str_eq(field(d->element[0], "stx.error"), want);
    cr_assert_str_eq(field(d->element[0], "stx.attempts"), "2");
    freeReplyObject(d);
    stx_processor_free(p);
    /* Outside a handler call: refused, as stx_txn_fail(). */
    cr_assert_eq(stx_txn_retry(NULL, "x"), STX_EINVAL);
    redisFree(c);
}

Test(reliability, group_start_id_reads_back_its_default)
{
    stx_config *conf = stx_config_new();
    char buf[32];
    cr_assert_eq(stx_config_get(conf, "group_start_id", buf, sizeof buf), STX_OK);
    cr_assert_str_eq(buf, "0");
    cr_assert_eq(stx_config_set(conf, "group_start_id", "$", NULL, 0), STX_OK);
    cr_assert_eq(stx_config_get(conf, "group_start_id", buf, sizeof buf), STX_OK);
    cr_assert_str_eq(buf, "$");
    stx_config_free(conf);
}

/* Dead letters of a batch are dead letters only: none is read again and
 * counted as a duplicate. */
Test(reliability, dead_lettered_entries_are_not_counted_as_duplicates)
{
    redisContext *c = test_redis_connect(&R);
    for (int i = 0; i < 4; i++) freeReplyObject(test_cmd(c, "XADD dd * k v"));
    struct script s = {.always = STX_HANDLER_FAIL};
    stx_processor *p = make("dd", &s, NULL);
    for (int i = 0; i < 4; i++) cr_assert_eq(stx_processor_poll(p), STX_EHANDLER);
    cr_assert_eq(stx_processor_poll(p), 0);
    stx_stats st;
    stx_processor_stats(p, &st);
    cr_assert_eq(st.dead_lettered, 4);
    cr_assert_eq(st.duplicates, 0);
    cr_assert_eq(s.calls, 4);
    stx_processor_free(p);
    redisFree(c);
}
