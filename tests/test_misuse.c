/* Misuse: every public function called with NULL in each pointer argument,
 * one at a time, gets its documented result (never a crash under ASan); a
 * message or transaction used outside its handler call is refused; a
 * publish the commit script would refuse is refused when it is staged.
 *
 * Suites:
 *  - misuse_unit: messages, transactions, codec, keys, config, errors and
 *    the router, through the internal structs where needed (no Redis, no
 *    processor code);
 *  - misuse: the client functions and the publish limit through a real
 *    processor;
 *  - misuse_processor: the stx_processor_* functions and pointers kept by
 *    a handler past its call.  These rely on the processor checking its
 *    arguments and setting the active flags around each handler call. */
#include <criterion/criterion.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "harness.h"
#include "processor.h" /* struct stx_msg, struct stx_txn, stx_msg_decode */
#include "streamtx.h"

/* ---- an entry and a transaction without a processor --------------------- */

enum { FAKE_MAX = 4 };

/* An XREADGROUP entry [id, [name, value, ...]] built by hand. */
struct fake_entry {
    redisReply entry, id, fields, strs[2 * FAKE_MAX];
    redisReply *top[2], *fptrs[2 * FAKE_MAX];
};

static void fake_entry(struct fake_entry *f, const char *id, size_t npairs, const char *const *kv)
{
    memset(f, 0, sizeof *f);
    f->id.type = REDIS_REPLY_STRING;
    f->id.str = (char *)id;
    f->id.len = strlen(id);
    for (size_t i = 0; i < 2 * npairs; i++) {
        f->strs[i].type = REDIS_REPLY_STRING;
        f->strs[i].str = (char *)kv[i];
        f->strs[i].len = strlen(kv[i]);
        f->fptrs[i] = &f->strs[i];
    }
    f->fields.type = REDIS_REPLY_ARRAY;
    f->fields.elements = 2 * npairs;
    f->fields.element = f->fptrs;
    f->top[0] = &f->id;
    f->top[1] = &f->fields;
    f->entry.type = REDIS_REPLY_ARRAY;
    f->entry.elements = 2;
    f->entry.element = f->top;
}

/* A decoded message "5-1" with fields k=v and correlation_id=c-9, not
 * active (as the processor leaves it outside a handler call). */
static void make_msg(struct fake_entry *f, struct stx_msg *m)
{
    static const char *const kv[] = {"k", "v", "correlation_id", "c-9"};
    fake_entry(f, "5-1", 2, kv);
    const char *why = "";
    cr_assert_eq(stx_msg_decode(m, &f->entry, "in", 1000, 1 << 20, &why), STX_OK, "%s", why);
    cr_assert_eq(m->active, 0);
}

/* The transaction of one handler call, as the processor sets it up. */
struct fake_txn {
    struct stx_processor *p;  /* only its configuration is read */
    stx_statemap batch, inflight, base;
    stx_pubs pubs;
    struct stx_txn t;
};

static void txn_open(struct fake_txn *f, struct stx_msg *m)
{
    memset(f, 0, sizeof *f);
    f->p = calloc(1, sizeof *f->p);
    cr_assert_not_null(f->p);
    f->p->conf.max_key_bytes = 1024;
    f->p->conf.max_value_bytes = 1 << 20;
    f->p->conf.max_fields = 1000000;
    stx_sm_init(&f->batch);
    stx_sm_init(&f->inflight);
    stx_sm_init(&f->base);
    stx_sm_init(&f->t.overlay);
    f->t.p = f->p;
    f->t.batch = &f->batch;
    f->t.inflight = &f->inflight;
    f->t.base = &f->base;
    f->t.pubs = &f->pubs;
    stx_txn_reset(&f->t, m);
    f->t.active = 1;
    if (m) m->active = 1;
}

static void txn_close(struct fake_txn *f)
{
    stx_txn_release(&f->t);
    stx_pubs_free(&f->pubs);
    stx_sm_free(&f->batch);
    stx_sm_free(&f->inflight);
    stx_sm_free(&f->base);
    free(f->p);
}

TestSuite(misuse_unit, .timeout = 120);

Test(misuse_unit, msg_getters_refuse_null)
{
    struct fake_entry f;
    struct stx_msg m;
    make_msg(&f, &m);
    m.active = 1;
    const char *s = "x";
    size_t n = 7;
    cr_assert_null(stx_msg_id(NULL));
    cr_assert_null(stx_msg_stream(NULL));
    cr_assert_eq(stx_msg_field_count(NULL), 0);
    cr_assert_eq(stx_msg_delivery_count(NULL), 0);
    cr_assert_eq(stx_msg_field(NULL, 0, &s, &n, &s, &n), STX_EINVAL);
    cr_assert_null(stx_msg_get(NULL, "k", &n));
    cr_assert_null(stx_msg_get(&m, NULL, &n));
    cr_assert_eq(n, 7, "a refused call writes nothing");
    /* Optional outputs. */
    cr_assert_str_eq(stx_msg_get(&m, "k", NULL), "v");
    cr_assert_eq(stx_msg_field(&m, 1, NULL, NULL, NULL, NULL), STX_OK);
    cr_assert_eq(stx_msg_field(&m, 1, &s, NULL, NULL, &n), STX_OK);
    cr_assert_str_eq(s, "correlation_id");
    cr_assert_eq(n, 3);
    /* And the readable view answers as before. */
    cr_assert_str_eq(stx_msg_id(&m), "5-1");
    cr_assert_str_eq(stx_msg_stream(&m), "in");
    cr_assert_eq(stx_msg_field_count(&m), 2);
    cr_assert_eq(stx_msg_delivery_count(&m), 1);
    cr_assert_eq(stx_msg_field(&m, 2, &s, &n, &s, &n), STX_ENOTFOUND);
}

Test(misuse_unit, msg_getters_refuse_a_message_outside_its_handler_call)
{
    struct fake_entry f;
    struct stx_msg m;
    make_msg(&f, &m); /* decoded, not active */
    const char *s = "unchanged";
    size_t n = 7;
    cr_assert_null(stx_msg_id(&m));
    cr_assert_null(stx_msg_stream(&m));
    cr_assert_eq(stx_msg_field_count(&m), 0);
    cr_assert_eq(stx_msg_delivery_count(&m), 0);
    cr_assert_eq(stx_msg_field(&m, 0, &s, &n, &s, &n), STX_ESTATE);
    cr_assert_null(stx_msg_get(&m, "k", &n));
    cr_assert_str_eq(s, "unchanged");
    cr_assert_eq(n, 7);
}

Test(misuse_unit, txn_calls_refuse_null_arguments)
{
    struct fake_entry f;
    struct stx_msg m;
    make_msg(&f, &m);
    struct fake_txn ft;
    txn_open(&ft, &m);
    stx_txn *t = &ft.t;
    const void *v;
    size_t n;
    int64_t i64;
    const char *s;
    unsigned char one[1] = {0x01};
    const char *names[] = {"a"}, *values[] = {"1"};
    size_t lens[] = {1};

    cr_assert_eq(stx_txn_get(NULL, "k", 1, &v, &n), STX_EINVAL);
    cr_assert_eq(stx_txn_get(t, NULL, 1, &v, &n), STX_EINVAL);
    cr_assert_eq(stx_txn_get(t, "k", 1, NULL, &n), STX_EINVAL);
    cr_assert_eq(stx_txn_get(t, "k", 1, &v, NULL), STX_EINVAL);
    cr_assert_eq(stx_txn_get(t, "k", 1, NULL, NULL), STX_EINVAL);
    cr_assert_eq(stx_txn_put(NULL, "k", 1, one, 1), STX_EINVAL);
    cr_assert_eq(stx_txn_put(t, NULL, 1, one, 1), STX_EINVAL);
    cr_assert_eq(stx_txn_put(t, "k", 1, NULL, 1), STX_EINVAL);
    cr_assert_eq(stx_txn_put(t, "k", 1, NULL, 0), STX_EDECODE, "no bytes are no msgpack object");
    cr_assert_eq(stx_txn_del(NULL, "k", 1), STX_EINVAL);
    cr_assert_eq(stx_txn_del(t, NULL, 1), STX_EINVAL);
    cr_assert_eq(stx_txn_get_i64(NULL, "k", 1, &i64), STX_EINVAL);
    cr_assert_eq(stx_txn_get_i64(t, NULL, 1, &i64), STX_EINVAL);
    cr_assert_eq(stx_txn_get_i64(t, "k", 1, NULL), STX_EINVAL);
    cr_assert_eq(stx_txn_put_i64(NULL, "k", 1, 5), STX_EINVAL);
    cr_assert_eq(stx_txn_put_i64(t, NULL, 1, 5), STX_EINVAL);
    cr_assert_eq(stx_txn_incr(NULL, "k", 1, 1, &i64), STX_EINVAL);
    cr_assert_eq(stx_txn_incr(t, NULL, 1, 1, &i64), STX_EINVAL);
    cr_assert_eq(stx_txn_get_str(NULL, "k", 1, &s, &n), STX_EINVAL);
    cr_assert_eq(stx_txn_get_str(t, NULL, 1, &s, &n), STX_EINVAL);
    cr_assert_eq(stx_txn_get_str(t, "k", 1, NULL, &n), STX_EINVAL);
    cr_assert_eq(stx_txn_get_str(t, "k", 1, &s, NULL), STX_EINVAL);
    cr_assert_eq(stx_txn_put_str(NULL, "k", 1, "x", 1), STX_EINVAL);
    cr_assert_eq(stx_txn_put_str(t, NULL, 1, "x", 1), STX_EINVAL);
    cr_assert_eq(stx_txn_put_str(t, "k", 1, NULL, 1), STX_EINVAL);
    cr_assert_eq(stx_txn_publish(NULL, "o", 1, names, lens, values, lens), STX_EINVAL);
    cr_assert_eq(stx_txn_publish(t, NULL, 1, names, lens, values, lens), STX_EINVAL);
    cr_assert_eq(stx_txn_publish(t, "o", 1, NULL, lens, values, lens), STX_EINVAL);
    cr_assert_eq(stx_txn_publish(t, "o", 1, names, NULL, values, lens), STX_EINVAL);
    cr_assert_eq(stx_txn_publish(t, "o", 1, names, lens, NULL, lens), STX_EINVAL);
    cr_assert_eq(stx_txn_publish(t, "o", 1, names, lens, values, NULL), STX_EINVAL);
    const char *null_name[] = {NULL};
    cr_assert_eq(stx_txn_publish(t, "o", 1, null_name, lens, values, lens), STX_EINVAL);
    cr_assert_eq(stx_txn_publishv(NULL, "o", "a", "1", NULL), STX_EINVAL);
    cr_assert_eq(stx_txn_publishv(t, NULL, "a", "1", NULL), STX_EINVAL);
    cr_assert_eq(stx_txn_publishv(t, "o", "a", NULL), STX_EINVAL, "a name without a value");
    cr_assert_eq(stx_txn_publishv(t, "o", NULL), STX_EINVAL, "no pairs");
    cr_assert_eq(stx_txn_retry_after(NULL, 10), STX_EINVAL);
    cr_assert_eq(stx_txn_fail(NULL, "x %d", 1), STX_EINVAL);
    const char *volatile no_fmt = NULL;
#pragma GCC diagnostic push
#pragma GCC diagnostic ignored "-Wformat-security"
    cr_assert_eq(stx_txn_fail(t, no_fmt), STX_EINVAL); /* a NULL format, on purpose */
#pragma GCC diagnostic pop
    /* Nothing of the refused calls was staged. */
    cr_assert_eq(ft.t.overlay.count, 0);
    cr_assert_eq(ft.pubs.n, 0);
    /* Optional: incr's result; and the empty key (NULL with length 0). */
    cr_assert_eq(stx_txn_incr(t, "k", 1, 2, NULL), STX_OK);
    cr_assert_eq(stx_txn_get_i64(t, "k", 1, &i64), STX_OK);
    cr_assert_eq(i64, 2);
    cr_assert_eq(stx_txn_put_i64(t, NULL, 0, 9), STX_OK);
    cr_assert_eq(stx_txn_get_i64(t, "", 0, &i64), STX_OK);
    cr_assert_eq(i64, 9);
    cr_assert_eq(stx_txn_put_str(t, "e", 1, NULL, 0), STX_OK, "the empty string");
    cr_assert_eq(stx_txn_get_str(t, "e", 1, &s, &n), STX_OK);
    cr_assert_eq(n, 0);
    cr_assert_eq(stx_txn_publishv(t, "o", "a", "1", NULL), STX_OK);
    cr_assert_eq(ft.pubs.n, 1);
    txn_close(&ft);
}

Test(misuse_unit, txn_calls_outside_the_handler_call_are_refused)
{
    struct fake_entry f;
    struct stx_msg m;
    make_msg(&f, &m);
    struct fake_txn ft;
    txn_open(&ft, &m);
    stx_txn *t = &ft.t;
    cr_assert_eq(stx_txn_put_i64(t, "k", 1, 1), STX_OK);
    /* The handler returned: the processor closes the call. */
    ft.t.active = 0;
    m.active = 0;
    const void *v;
    size_t n;
    int64_t i64;
    const char *s;
    unsigned char one[1] = {0x01};
    const char *names[] = {"a"}, *values[] = {"1"};
    size_t lens[] = {1};
    cr_assert_eq(stx_txn_get(t, "k", 1, &v, &n), STX_ESTATE);
    cr_assert_eq(stx_txn_put(t, "k", 1, one, 1), STX_ESTATE);
    cr_assert_eq(stx_txn_del(t, "k", 1), STX_ESTATE);
    cr_assert_eq(stx_txn_get_i64(t, "k", 1, &i64), STX_ESTATE);
    cr_assert_eq(stx_txn_put_i64(t, "late", 4, 5), STX_ESTATE);
    cr_assert_eq(stx_txn_incr(t, "k", 1, 1, &i64), STX_ESTATE);
    cr_assert_eq(stx_txn_get_str(t, "k", 1, &s, &n), STX_ESTATE);
    cr_assert_eq(stx_txn_put_str(t, "k", 1, "x", 1), STX_ESTATE);
    cr_assert_eq(stx_txn_publish(t, "o", 1, names, lens, values, lens), STX_ESTATE);
    cr_assert_eq(stx_txn_publishv(t, "o", "a", "1", NULL), STX_ESTATE);
    cr_assert_eq(stx_txn_retry_after(t, 10), STX_ESTATE);
    cr_assert_eq(stx_txn_fail(t, "late %d", 1), STX_ESTATE);
    /* Nothing changed: the one put of the call, no publish, no message. */
    cr_assert_eq(ft.t.overlay.count, 1);
    cr_assert_null(stx_sm_find(&ft.t.overlay, "late", 4));
    cr_assert_eq(ft.pubs.n, 0);
    cr_assert_eq(ft.t.retry_ms, -1);
    cr_assert_str_eq(ft.t.failmsg, "");
    txn_close(&ft);
}

/* n pairs "f<i>" = "v", the first named causation_id when own_cause. */
static int publish_pairs(stx_txn *t, size_t n, int own_cause)
{
    const char **names = calloc(n, sizeof *names), **values = calloc(n, sizeof *values);
    size_t *nl = calloc(n, sizeof *nl), *vl = calloc(n, sizeof *vl);
    char (*buf)[16] = calloc(n, sizeof *buf);
    cr_assert(names && values && nl && vl && buf);
    for (size_t i = 0; i < n; i++) {
        snprintf(buf[i], sizeof buf[i], i == 0 && own_cause ? "causation_id" : "f%zu", i);
        names[i] = buf[i];
        nl[i] = strlen(buf[i]);
        values[i] = "v";
        vl[i] = 1;
    }
    int rc = stx_txn_publish(t, "out", n, names, nl, values, vl);
    free(names);
    free(values);
    free(nl);
    free(vl);
    free(buf);
    return rc;
}

Test(misuse_unit, publish_of_more_than_3000_pairs_is_refused_when_staged)
{
    struct fake_entry f;
    struct stx_msg m;
    static const char *const kv[] = {"k", "v"}; /* no correlation_id: one envelope field */
    fake_entry(&f, "7-0", 1, kv);
    const char *why = "";
    cr_assert_eq(stx_msg_decode(&m, &f.entry, "in", 1000, 1 << 20, &why), STX_OK);
    struct fake_txn ft;
    txn_open(&ft, &m);
    stx_txn *t = &ft.t;
    /* 2999 pairs + causation_id = 3000: the most the script takes. */
    cr_assert_eq(publish_pairs(t, 2999, 0), STX_OK);
    cr_assert_eq(ft.pubs.n, 1);
    cr_assert_eq(ft.pubs.v[0].npairs, 3000);
    /* The handler's own causation_id: 3000 given, none added. */
    cr_assert_eq(publish_pairs(t, 3000, 1), STX_OK);
    cr_assert_eq(ft.pubs.v[1].npairs, 3000);
    /* One more, by the handler or by the envelope. */
    cr_assert_eq(publish_pairs(t, 3001, 1), STX_ELIMIT);
    cr_assert(strstr(ft.t.failmsg, "3001 field pairs, at most 3000 per publish"), "%s",
              ft.t.failmsg);
    ft.t.failmsg[0] = '\0';
    cr_assert_eq(publish_pairs(t, 3000, 0), STX_ELIMIT);
    cr_assert(strstr(ft.t.failmsg, "3001 field pairs with the envelope fields, at most 3000"),
              "%s", ft.t.failmsg);
    cr_assert_eq(publish_pairs(t, 100000, 0), STX_ELIMIT);
    cr_assert_eq(ft.pubs.n, 2, "refused publishes stage nothing");
    /* max_fields still bounds a publish below the script's limit. */
    ft.p->conf.max_fields = 10;
    cr_assert_eq(publish_pairs(t, 10, 1), STX_OK);
    cr_assert_eq(publish_pairs(t, 10, 0), STX_ELIMIT);
    cr_assert(strstr(ft.t.failmsg, "max_fields"), "%s", ft.t.failmsg);
    txn_close(&ft);

    /* A migration's transaction has no message: publishing is refused. */
    txn_open(&ft, NULL);
    cr_assert_eq(stx_txn_publishv(&ft.t, "o", "a", "1", NULL), STX_EINVAL);
    cr_assert(strstr(ft.t.failmsg, "migration"), "%s", ft.t.failmsg);
    cr_assert_eq(ft.pubs.n, 0);
    txn_close(&ft);
}

Test(misuse_unit, codec_keys_config_and_errors_refuse_null)
{
    int64_t v = 0;
    unsigned char one[1] = {0x05};
    cr_assert_eq(stx_mp_validate(NULL, 0, 8), STX_EDECODE);
    cr_assert_eq(stx_mp_validate(NULL, 5, 8), STX_EDECODE);
    cr_assert_eq(stx_mp_read_i64(NULL, 1, &v), STX_EDECODE);
    cr_assert_eq(stx_mp_read_i64(one, 1, NULL), STX_EINVAL);
    cr_assert_eq(stx_mp_read_i64(one, 1, &v), STX_OK);
    cr_assert_eq(v, 5);
    cr_assert_eq(stx_mp_write_i64(NULL, 5), 0);

    char buf[256];
    cr_assert_eq(stx_key_name(NULL, sizeof buf, "s", "g", "meta"), STX_EINVAL);
    cr_assert_eq(stx_key_name(buf, sizeof buf, NULL, "g", "meta"), STX_EINVAL);
    cr_assert_eq(stx_key_name(buf, sizeof buf, "s", NULL, "meta"), STX_EINVAL);
    cr_assert_eq(stx_key_name(buf, sizeof buf, "s", "g", NULL), STX_EINVAL);

    stx_config *c = stx_config_new();
    cr_assert_not_null(c);
    char err[128] = "";
    cr_assert_eq(stx_config_set(NULL, "stream", "s", err, sizeof err), STX_EINVAL);
    cr_assert_eq(stx_config_set(c, NULL, "s", err, sizeof err), STX_EINVAL);
    cr_assert_eq(stx_config_set(c, "stream", NULL, err, sizeof err), STX_EINVAL);
    cr_assert_eq(stx_config_set(c, "stream", "s", NULL, 0), STX_OK, "errbuf is optional");
    cr_assert_eq(stx_config_set(c, "nope", "s", NULL, 100), STX_EINVAL);
    cr_assert_eq(stx_config_get(NULL, "stream", buf, sizeof buf), STX_EINVAL);
    cr_assert_eq(stx_config_get(c, NULL, buf, sizeof buf), STX_EINVAL);
    cr_assert_eq(stx_config_get(c, "stream", NULL, sizeof buf), STX_EINVAL);
    cr_assert_eq(stx_config_get(c, "stream", buf, sizeof buf), STX_OK);
    cr_assert_str_eq(buf, "s");
    stx_config_set_handler(NULL, NULL, NULL);
    stx_config_set_migrate(NULL, NULL, NULL);
    stx_config_set_log(NULL, NULL, NULL);
    stx_config_set_handler(c, NULL, NULL);
    stx_config_set_migrate(c, NULL, NULL);
    stx_config_set_log(c, NULL, NULL);
    stx_config_free(c);
    stx_config_free(NULL);

    /* No pointer arguments, but never a NULL result. */
    cr_assert_not_null(stx_strerror(12345));
    cr_assert_eq(stx_error_class_of(12345), STX_CLASS_FATAL);
    cr_assert_not_null(stx_version());
}

static int count_calls(const stx_msg *msg, stx_txn *txn, void *ud)
{
    (void)msg;
    (void)txn;
    (*(int *)ud)++;
    return STX_HANDLER_OK;
}

Test(misuse_unit, router_refuses_null)
{
    stx_router *r = stx_router_new();
    cr_assert_not_null(r);
    int calls = 0;
    cr_assert_eq(stx_router_add(NULL, "*", count_calls, &calls), STX_EINVAL);
    cr_assert_eq(stx_router_add(r, NULL, count_calls, &calls), STX_EINVAL);
    cr_assert_eq(stx_router_add(r, "*", NULL, &calls), STX_EINVAL);
    cr_assert_eq(stx_router_add(r, "nothing", count_calls, NULL), STX_OK, "user_data is the user's");
    cr_assert_eq(stx_router_add(r, "*", count_calls, &calls), STX_OK);
    stx_router_set_unmatched_fail(NULL, 1);
    struct fake_entry f;
    struct stx_msg m;
    make_msg(&f, &m);
    /* Outside its handler call the message is not dispatched. */
    cr_assert_eq(stx_router_handle(&m, NULL, r), STX_HANDLER_FAIL);
    m.active = 1;
    cr_assert_eq(stx_router_handle(NULL, NULL, r), STX_HANDLER_FAIL);
    cr_assert_eq(stx_router_handle(&m, NULL, NULL), STX_HANDLER_FAIL);
    cr_assert_eq(calls, 0);
    /* txn is handed on as it is: the handlers decide. */
    cr_assert_eq(stx_router_handle(&m, NULL, r), STX_HANDLER_OK);
    cr_assert_eq(calls, 1);
    stx_router_free(r);
    stx_router_free(NULL);
}

/* ---- the client --------------------------------------------------------- */

static test_redis R;

static void setup(void) { test_redis_start(&R, 0, NULL); }
static void teardown(void) { test_redis_stop(&R); }

TestSuite(misuse, .init = setup, .fini = teardown, .timeout = 120);

static int scan_fn(void *ud, const void *key, size_t key_len, const void *value, size_t value_len)
{
    (void)key;
    (void)key_len;
    (void)value;
    (void)value_len;
    (*(int *)ud)++;
    return 0;
}

Test(misuse, client_functions_refuse_null)
{
    stx_config *conf = stx_config_new();
    cr_assert_eq(stx_config_set(conf, "url", R.url, NULL, 0), STX_OK);
    stx_client *c = NULL;
    cr_assert_eq(stx_client_new(NULL, conf), STX_EINVAL);
    cr_assert_eq(stx_client_new(&c, conf), STX_OK);
    stx_config_free(conf);
    /* conf NULL is the documented default address (whatever listens there). */
    stx_client *d = NULL;
    int rc = stx_client_new(&d, NULL);
    cr_assert(rc == STX_OK || rc == STX_ECONN || rc == STX_EAUTH || rc == STX_ETIMEOUT, "%d", rc);
    cr_assert_not_null(d);
    stx_client_free(d);
    stx_client_free(NULL);
    cr_assert_not_null(stx_client_errmsg(NULL));

    stx_field f[] = {{"k", 1, "v", 1}};
    stx_produce_result res;
    cr_assert_eq(stx_produce(NULL, "s", f, 1, NULL, &res), STX_EINVAL);
    cr_assert_eq(stx_produce(c, NULL, f, 1, NULL, &res), STX_EINVAL);
    cr_assert_eq(stx_produce(c, "s", NULL, 1, NULL, &res), STX_EINVAL);
    cr_assert_eq(stx_produce(c, "s", f, 1, NULL, NULL), STX_EINVAL);
    cr_assert_eq(stx_produce(c, "s", f, 1, NULL, &res), STX_OK, "opts is optional");
    stx_produce_msg pm = {f, 1, NULL};
    cr_assert_eq(stx_produce_batch(NULL, "s", &pm, 1, NULL, &res), STX_EINVAL);
    cr_assert_eq(stx_produce_batch(c, NULL, &pm, 1, NULL, &res), STX_EINVAL);
    cr_assert_eq(stx_produce_batch(c, "s", NULL, 1, NULL, &res), STX_EINVAL);
    cr_assert_eq(stx_produce_batch(c, "s", &pm, 1, NULL, NULL), STX_EINVAL);

    cr_assert_eq(stx_entries_count(NULL), 0);
    cr_assert_null(stx_entries_at(NULL, 0));
    cr_assert_str_eq(stx_entries_last_id(NULL), "");
    stx_entries_free(NULL);

    stx_entries *e = NULL;
    cr_assert_eq(stx_read_range(NULL, "s", "0", NULL, 0, &e), STX_EINVAL);
    cr_assert_eq(stx_read_range(c, NULL, "0", NULL, 0, &e), STX_EINVAL);
    cr_assert_eq(stx_read_range(c, "s", NULL, NULL, 0, &e), STX_EINVALID_CURSOR);
    cr_assert_eq(stx_read_range(c, "s", "0", NULL, 0, NULL), STX_EINVAL);
    cr_assert_eq(stx_read_range(c, "s", "0", NULL, 0, &e), STX_OK, "to is optional");
    cr_assert_eq(stx_entries_count(e), 1);
    stx_entries_free(e);
    cr_assert_eq(stx_read_time(NULL, "s", 0, 1, 0, &e), STX_EINVAL);
    cr_assert_eq(stx_read_time(c, NULL, 0, 1, 0, &e), STX_EINVAL);
    cr_assert_eq(stx_read_time(c, "s", 0, 1, 0, NULL), STX_EINVAL);
    cr_assert_eq(stx_tail(NULL, "s", "0", 0, 0, &e), STX_EINVAL);
    cr_assert_eq(stx_tail(c, NULL, "0", 0, 0, &e), STX_EINVAL);
    cr_assert_eq(stx_tail(c, "s", NULL, 0, 0, &e), STX_EINVALID_CURSOR);
    cr_assert_eq(stx_tail(c, "s", "0", 0, 0, NULL), STX_EINVAL);
    stx_field ef = {"k", 1, "v", 1};
    cr_assert_eq(stx_entries_new(NULL, "0", &e), STX_EINVAL);
    cr_assert_eq(stx_entries_new("s", NULL, &e), STX_EINVAL);
    cr_assert_eq(stx_entries_new("s", "0", NULL), STX_EINVAL);
    cr_assert_eq(stx_entries_new("s", "0", &e), STX_OK);
    cr_assert_eq(stx_entries_append(NULL, "1-1", &ef, 1), STX_EINVAL);
    cr_assert_eq(stx_entries_append(e, NULL, &ef, 1), STX_EINVAL);
    cr_assert_eq(stx_entries_append(e, "1-1", NULL, 1), STX_EINVAL);
    ef.value = NULL;
    cr_assert_eq(stx_entries_append(e, "1-1", &ef, 1), STX_EINVAL, "a NULL value of length 1");
    cr_assert_eq(stx_entries_count(e), 0);
    stx_entries_free(e);

    cr_assert_eq(stx_group_reset(NULL, "s", "g", "end", 0), STX_EINVAL);
    cr_assert_eq(stx_group_reset(c, NULL, "g", "end", 0), STX_EINVAL);
    cr_assert_eq(stx_group_reset(c, "s", NULL, "end", 0), STX_EINVAL);
    cr_assert_eq(stx_group_reset(c, "s", "g", NULL, 0), STX_EINVALID_CURSOR);

    long long deleted = 99;
    cr_assert_eq(stx_trim_safe(NULL, "s", 0, 0, &deleted), STX_EINVAL);
    cr_assert_eq(stx_trim_safe(c, NULL, 0, 0, &deleted), STX_EINVAL);
    cr_assert_eq(stx_trim_safe(c, "s", 0, 0, NULL), STX_OK, "deleted is optional");
    cr_assert_eq(stx_trim_safe_bounded(NULL, "s", 0, 0, "1-1", &deleted), STX_EINVAL);
    cr_assert_eq(stx_trim_safe_bounded(c, NULL, 0, 0, "1-1", &deleted), STX_EINVAL);
    cr_assert_eq(stx_trim_safe_bounded(c, "s", 0, 0, "x", &deleted), STX_EINVALID_CURSOR);
    cr_assert_eq(stx_trim_safe_bounded(c, "s", 0, 0, NULL, NULL), STX_OK, "bound is optional");

    void *val = NULL;
    size_t vlen = 0;
    cr_assert_eq(stx_state_read(NULL, "s", "g", "k", 1, &val, &vlen), STX_EINVAL);
    cr_assert_eq(stx_state_read(c, NULL, "g", "k", 1, &val, &vlen), STX_EINVAL);
    cr_assert_eq(stx_state_read(c, "s", NULL, "k", 1, &val, &vlen), STX_EINVAL);
    cr_assert_eq(stx_state_read(c, "s", "g", NULL, 1, &val, &vlen), STX_EINVAL);
    cr_assert_eq(stx_state_read(c, "s", "g", NULL, 0, &val, &vlen), STX_ENOTFOUND, "the empty key");
    cr_assert_eq(stx_state_read(c, "s", "g", "k", 1, NULL, &vlen), STX_EINVAL);
    cr_assert_eq(stx_state_read(c, "s", "g", "k", 1, &val, NULL), STX_EINVAL);
    int seen = 0;
    cr_assert_eq(stx_state_scan(NULL, "s", "g", scan_fn, &seen), STX_EINVAL);
    cr_assert_eq(stx_state_scan(c, NULL, "g", scan_fn, &seen), STX_EINVAL);
    cr_assert_eq(stx_state_scan(c, "s", NULL, scan_fn, &seen), STX_EINVAL);
    cr_assert_eq(stx_state_scan(c, "s", "g", NULL, &seen), STX_EINVAL);
    cr_assert_eq(stx_state_scan(c, "s", "g", scan_fn, NULL), STX_OK, "ud is the caller's");

    cr_assert_eq(stx_dlq_list(NULL, "s", "g", "0", 0, &e), STX_EINVAL);
    cr_assert_eq(stx_dlq_list(c, NULL, "g", "0", 0, &e), STX_EINVAL);
    cr_assert_eq(stx_dlq_list(c, "s", NULL, "0", 0, &e), STX_EINVAL);
    cr_assert_eq(stx_dlq_list(c, "s", "g", "0", 0, NULL), STX_EINVAL);
    cr_assert_eq(stx_dlq_list(c, "s", "g", NULL, 0, &e), STX_OK, "after NULL: from the start");
    cr_assert_eq(stx_entries_count(e), 0);
    stx_entries_free(e);
    const char *ids[] = {"1-1"}, *null_id[] = {NULL};
    size_t moved = 99;
    cr_assert_eq(stx_dlq_redrive(NULL, "s", "g", ids, 1, &moved), STX_EINVAL);
    cr_assert_eq(stx_dlq_redrive(c, NULL, "g", ids, 1, &moved), STX_EINVAL);
    cr_assert_eq(stx_dlq_redrive(c, "s", NULL, ids, 1, &moved), STX_EINVAL);
    cr_assert_eq(stx_dlq_redrive(c, "s", "g", NULL, 1, &moved), STX_EINVAL);
    cr_assert_eq(stx_dlq_redrive(c, "s", "g", null_id, 1, &moved), STX_EINVALID_CURSOR);
    cr_assert_eq(stx_dlq_redrive(c, "s", "g", NULL, 0, NULL), STX_OK, "all of none; moved optional");

    stx_stream_info *info = NULL;
    cr_assert_eq(stx_stream_info_get(NULL, "s", &info), STX_EINVAL);
    cr_assert_eq(stx_stream_info_get(c, NULL, &info), STX_EINVAL);
    cr_assert_eq(stx_stream_info_get(c, "s", NULL), STX_EINVAL);
    stx_stream_info_free(NULL);

    cr_assert_not_null(stx_client_errmsg(c));
    stx_client_free(c);
}

/* ---- the publish limit through a processor ------------------------------ */

struct pub_ctx {
    size_t pairs;       /* publish this many pairs (causation_id added by the library) */
    int rc;             /* what the publish answered */
};

static int publish_handler(const stx_msg *msg, stx_txn *txn, void *ud)
{
    (void)msg;
    struct pub_ctx *x = ud;
    x->rc = publish_pairs(txn, x->pairs, 0);
    return x->rc;
}

static stx_processor *make_processor(const char *stream, stx_handler_fn fn, void *ud,
                                     const char *max_fields)
{
    stx_config *c = stx_config_new();
    char err[256];
    cr_assert_eq(stx_config_set(c, "url", R.url, err, sizeof err), STX_OK, "%s", err);
    cr_assert_eq(stx_config_set(c, "stream", stream, err, sizeof err), STX_OK);
    cr_assert_eq(stx_config_set(c, "group", "g", err, sizeof err), STX_OK);
    cr_assert_eq(stx_config_set(c, "consumer", "c1", err, sizeof err), STX_OK);
    cr_assert_eq(stx_config_set(c, "block_ms", "50", err, sizeof err), STX_OK);
    cr_assert_eq(stx_config_set(c, "batch_size", "1", err, sizeof err), STX_OK);
    /* One entry per poll: the tests step through the entries. */
    cr_assert_eq(stx_config_set(c, "overlap", "0", err, sizeof err), STX_OK);
    cr_assert_eq(stx_config_set(c, "log_level", "error", err, sizeof err), STX_OK);
    if (max_fields) cr_assert_eq(stx_config_set(c, "max_fields", max_fields, err, sizeof err), STX_OK);
    stx_config_set_handler(c, fn, ud);
    stx_processor *p;
    cr_assert_eq(stx_processor_new(&p, c), STX_OK);
    stx_config_free(c);
    return p;
}

Test(misuse, publish_over_the_script_limit_fails_in_the_handler_and_is_dead_lettered)
{
    redisContext *rc = test_redis_connect(&R);
    freeReplyObject(test_cmd(rc, "XADD pl * k 1"));
    freeReplyObject(test_cmd(rc, "XADD pl * k 2"));
    freeReplyObject(test_cmd(rc, "XADD pl * k 3"));
    struct pub_ctx x = {2999, 1};
    stx_processor *p = make_processor("pl", publish_handler, &x, "1000000");
    /* 2999 pairs + causation_id: exactly what the commit script takes. */
    cr_assert_eq(stx_processor_poll(p), 1, "%s", stx_processor_errmsg(p));
    cr_assert_eq(x.rc, STX_OK);
    redisReply *out = test_cmd(rc, "XRANGE out - +");
    cr_assert_eq(out->elements, 1);
    cr_assert_eq(out->element[0]->element[1]->elements, 2 * 3000);
    freeReplyObject(out);
    /* One more: refused at once, the handler fails the entry, which goes
     * to the dead-letter stream instead of being refused on every poll. */
    x.pairs = 3000;
    cr_assert_eq(stx_processor_poll(p), STX_EHANDLER);
    cr_assert_eq(x.rc, STX_ELIMIT);
    cr_assert(strstr(stx_processor_errmsg(p), "at most 3000 per publish"), "%s",
              stx_processor_errmsg(p));
    char dlq[256];
    cr_assert(stx_key_name(dlq, sizeof dlq, "pl", "g", "dlq") > 0);
    cr_assert_eq(test_cmd_int(rc, "XLEN %s", dlq), 1);
    /* And processing goes on. */
    x.pairs = 1;
    cr_assert_eq(stx_processor_poll(p), 1, "%s", stx_processor_errmsg(p));
    cr_assert_eq(stx_processor_poll(p), 0, "%s", stx_processor_errmsg(p));
    cr_assert_eq(test_cmd_int(rc, "XLEN out"), 2);
    redisReply *pend = test_cmd(rc, "XPENDING pl g");
    cr_assert_eq(pend->element[0]->integer, 0);
    freeReplyObject(pend);
    stx_processor_free(p);
    redisFree(rc);
}

/* ---- the processor (needs its own argument checks and active flags) ----- */

TestSuite(misuse_processor, .init = setup, .fini = teardown, .timeout = 120);

static int noop_handler(const stx_msg *msg, stx_txn *txn, void *ud)
{
    (void)msg;
    (void)txn;
    (void)ud;
    return STX_HANDLER_OK;
}

Test(misuse_processor, processor_functions_refuse_null)
{
    stx_config *conf = stx_config_new();
    cr_assert_eq(stx_config_set(conf, "url", R.url, NULL, 0), STX_OK);
    cr_assert_eq(stx_config_set(conf, "stream", "s", NULL, 0), STX_OK);
    cr_assert_eq(stx_config_set(conf, "group", "g", NULL, 0), STX_OK);
    stx_config_set_handler(conf, noop_handler, NULL);
    cr_assert_eq(stx_processor_new(NULL, conf), STX_EINVAL);
    stx_processor *p = NULL;
    cr_assert_eq(stx_processor_new(&p, NULL), STX_EINVAL);
    cr_assert_not_null(p, "set even on failure, for its message");
    cr_assert(strlen(stx_processor_errmsg(p)) > 0);
    stx_processor_free(p);
    stx_processor_free(NULL);
    cr_assert_eq(stx_processor_new(&p, conf), STX_OK);
    stx_config_free(conf);

    cr_assert_eq(stx_processor_start(NULL), STX_EINVAL);
    cr_assert_eq(stx_processor_poll(NULL), STX_EINVAL);
    cr_assert_eq(stx_processor_run(NULL), STX_EINVAL);
    stx_processor_stop(NULL);
    cr_assert_not_null(stx_processor_errmsg(NULL));
    cr_assert_eq(stx_processor_epoch(NULL), 0);
    cr_assert_str_eq(stx_processor_offset(NULL), "");
    stx_stats st;
    memset(&st, 0xff, sizeof st);
    stx_processor_stats(NULL, &st);
    cr_assert_eq(st.handled, 0, "stats of no processor are zero");
    cr_assert_eq(st.commit_us_max, 0);
    stx_processor_stats(p, NULL);
    const void *v;
    size_t n;
    cr_assert_eq(stx_processor_state_get(NULL, "k", 1, &v, &n), STX_EINVAL);
    cr_assert_eq(stx_processor_state_get(p, NULL, 1, &v, &n), STX_EINVAL);
    cr_assert_eq(stx_processor_state_get(p, "k", 1, NULL, &n), STX_EINVAL);
    cr_assert_eq(stx_processor_state_get(p, "k", 1, &v, NULL), STX_EINVAL);
    cr_assert_eq(stx_processor_state_get(p, "k", 1, &v, &n), STX_ESTATE, "not started");
    cr_assert_eq(stx_processor_start(p), STX_OK, "%s", stx_processor_errmsg(p));
    cr_assert_eq(stx_processor_state_get(p, NULL, 0, &v, &n), STX_ENOTFOUND, "the empty key");
    stx_processor_free(p);
}

/* Keeps what the handler was given, as a careless handler would. */
struct keeper {
    const stx_msg *msg;
    stx_txn *txn;
};

static int keeping_handler(const stx_msg *msg, stx_txn *txn, void *ud)
{
    struct keeper *k = ud;
    k->msg = msg;
    k->txn = txn;
    return stx_txn_put_i64(txn, "seen", 4, 1);
}

Test(misuse_processor, handler_pointers_used_after_the_handler_returned_are_refused)
{
    redisContext *rc = test_redis_connect(&R);
    freeReplyObject(test_cmd(rc, "XADD kp * k v"));
    struct keeper k = {0};
    stx_processor *p = make_processor("kp", keeping_handler, &k, NULL);
    cr_assert_eq(stx_processor_poll(p), 1, "%s", stx_processor_errmsg(p));
    cr_assert_not_null(k.msg);
    cr_assert_not_null(k.txn);
    /* After the handler returned, and after the batch's memory was
     * released and reused by the next read. */
    cr_assert_eq(stx_processor_poll(p), 0, "%s", stx_processor_errmsg(p));
    const char *s = "unchanged";
    size_t n = 7;
    int64_t i64;
    cr_assert_null(stx_msg_id(k.msg));
    cr_assert_null(stx_msg_stream(k.msg));
    cr_assert_null(stx_msg_get(k.msg, "k", &n));
    cr_assert_eq(stx_msg_field_count(k.msg), 0);
    cr_assert_eq(stx_msg_delivery_count(k.msg), 0);
    cr_assert_eq(stx_msg_field(k.msg, 0, &s, &n, &s, &n), STX_ESTATE);
    cr_assert_str_eq(s, "unchanged");
    cr_assert_eq(stx_txn_put_i64(k.txn, "late", 4, 5), STX_ESTATE);
    cr_assert_eq(stx_txn_incr(k.txn, "seen", 4, 1, &i64), STX_ESTATE);
    cr_assert_eq(stx_txn_get_i64(k.txn, "seen", 4, &i64), STX_ESTATE);
    cr_assert_eq(stx_txn_publishv(k.txn, "out", "a", "1", NULL), STX_ESTATE);
    cr_assert_eq(stx_txn_fail(k.txn, "late"), STX_ESTATE);
    /* Nothing of it reaches Redis with the next entry's commit. */
    freeReplyObject(test_cmd(rc, "XADD kp * k w"));
    cr_assert_eq(stx_processor_poll(p), 1, "%s", stx_processor_errmsg(p));
    const void *v;
    cr_assert_eq(stx_processor_state_get(p, "late", 4, &v, &n), STX_ENOTFOUND);
    char state[256];
    cr_assert(stx_key_name(state, sizeof state, "kp", "g", "state") > 0);
    cr_assert_eq(test_cmd_int(rc, "HEXISTS %s late", state), 0);
    cr_assert_eq(test_cmd_int(rc, "EXISTS out"), 0);
    stx_processor_free(p);
    redisFree(rc);
}
