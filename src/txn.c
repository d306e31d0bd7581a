/* The handler's transaction: reads go through the message overlay, the
 * batch overlay, the changes of a commit in flight and the committed state; writes stay in the message overlay
 * and the staged publishes until the commit. */
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "codec.h"
#include "processor.h"
#include "script_limits.h"
#include "text.h"

/* Every call first checks that t is a transaction inside its handler (or
 * migration) call.  The processor owns t for its whole lifetime and clears
 * t->active when the call returns, so a pointer kept by the handler still
 * points to valid memory and a late call is refused instead of touching
 * state that was committed, dropped or reused. */
#define TXN_CHECK(t)                                                                               \
    do {                                                                                           \
        if (!(t)) return STX_EINVAL;                                                               \
        if (!(t)->active) return STX_ESTATE;                                                       \
    } while (0)

void stx_pubs_truncate(stx_pubs *p, size_t n)
{
    while (p->n > n) {
        free(p->v[--p->n].mem);
    }
}

void stx_pubs_free(stx_pubs *p)
{
    stx_pubs_truncate(p, 0);
    free(p->v);
    memset(p, 0, sizeof *p);
}

void stx_txn_reset(struct stx_txn *t, const struct stx_msg *msg)
{
    stx_sm_clear(&t->overlay);
    t->msg = msg;
    t->pubs_mark = t->pubs->n;
    t->failmsg[0] = '\0';
    t->retry_ms = -1;
}

int stx_txn_retry_after(stx_txn *t, long ms)
{
    TXN_CHECK(t);
    if (ms < 0) return STX_EINVAL;
    t->retry_ms = ms;
    return STX_OK;
}

void stx_txn_release(struct stx_txn *t)
{
    stx_sm_free(&t->overlay);
}

/* The entry visible to the handler for key, or NULL (absent or deleted). */
static const stx_sm_entry *lookup(stx_txn *t, const void *key, size_t key_len)
{
    const stx_sm_entry *e = stx_sm_find(&t->overlay, key, key_len);
    if (!e) e = stx_sm_find(t->batch, key, key_len);
    if (!e) e = stx_sm_find(t->inflight, key, key_len);
    if (!e) e = stx_sm_find(t->base, key, key_len);
    return e && !(e->flags & STX_SM_DELETED) ? e : NULL;
}

int stx_txn_get(stx_txn *t, const void *key, size_t key_len, const void **value,
                size_t *value_len)
{
    TXN_CHECK(t);
    if ((!key && key_len) || !value || !value_len) return STX_EINVAL;
    if (!key) key = ""; /* the empty key: no NULL reaches memcpy() */
    const stx_sm_entry *e = lookup(t, key, key_len);
    if (!e) return STX_ENOTFOUND;
    if (e->flags & STX_SM_CORRUPT) {
        char k[128];
        stx_printable(key, key_len, k, sizeof k);
        snprintf(t->failmsg, sizeof t->failmsg,
                 "state key '%s' holds a value that is not valid msgpack", k);
        return STX_EDECODE;
    }
    *value = stx_sm_value(e);
    *value_len = e->value_len;
    return STX_OK;
}

int stx_txn_put(stx_txn *t, const void *key, size_t key_len, const void *value,
                size_t value_len)
{
    TXN_CHECK(t);
    if ((!key && key_len) || (!value && value_len)) return STX_EINVAL;
    if (!key) key = ""; /* the empty key: no NULL reaches memcpy() */
    if ((long)key_len > t->p->conf.max_key_bytes || (long)value_len > t->p->conf.max_value_bytes)
        return STX_ELIMIT;
    if (stx_mp_validate(value, value_len, STX_MP_MAX_DEPTH) != STX_OK) return STX_EDECODE;
    return stx_sm_put(&t->overlay, key, key_len, value, value_len, 0) ? STX_OK : STX_ENOMEM;
}

int stx_txn_del(stx_txn *t, const void *key, size_t key_len)
{
    TXN_CHECK(t);
    if (!key && key_len) return STX_EINVAL;
    if (!key) key = ""; /* the empty key: no NULL reaches memcpy() */
    return stx_sm_put(&t->overlay, key, key_len, NULL, 0, STX_SM_DELETED) ? STX_OK : STX_ENOMEM;
}

int stx_txn_get_i64(stx_txn *t, const void *key, size_t key_len, int64_t *out)
{
    TXN_CHECK(t);
    if (!out) return STX_EINVAL;
    const void *v;
    size_t n;
    int rc = stx_txn_get(t, key, key_len, &v, &n);
    return rc == STX_OK ? stx_mp_read_i64(v, n, out) : rc;
}

int stx_txn_put_i64(stx_txn *t, const void *key, size_t key_len, int64_t v)
{
    TXN_CHECK(t);
    size_t n = stx_mp_write_i64(t->scratch, v);
    return stx_txn_put(t, key, key_len, t->scratch, n);
}

int stx_txn_incr(stx_txn *t, const void *key, size_t key_len, int64_t delta, int64_t *result)
{
    TXN_CHECK(t);
    int64_t v = 0;
    int rc = stx_txn_get_i64(t, key, key_len, &v);
    if (rc != STX_OK && rc != STX_ENOTFOUND) return rc;
    if ((delta > 0 && v > INT64_MAX - delta) || (delta < 0 && v < INT64_MIN - delta))
        return STX_ELIMIT;
    v += delta;
    if (result) *result = v;
    return stx_txn_put_i64(t, key, key_len, v);
}

int stx_txn_get_str(stx_txn *t, const void *key, size_t key_len, const char **s, size_t *len)
{
    TXN_CHECK(t);
    if (!s || !len) return STX_EINVAL;
    const void *v;
    size_t n;
    int rc = stx_txn_get(t, key, key_len, &v, &n);
    return rc == STX_OK ? stx_mp_read_str(v, n, s, len) : rc;
}

int stx_txn_put_str(stx_txn *t, const void *key, size_t key_len, const char *s, size_t len)
{
    TXN_CHECK(t);
    if ((!key && key_len) || (!s && len)) return STX_EINVAL;
    unsigned char *buf;
    size_t n;
    int rc = stx_mp_write_str(s, len, &buf, &n);
    if (rc != STX_OK) return rc;
    rc = stx_txn_put(t, key, key_len, buf, n);
    free(buf);
    return rc;
}

static int has_name(size_t nfields, const char *const *names, const size_t *lens,
                    const char *want)
{
    size_t n = strlen(want);
    for (size_t i = 0; i < nfields; i++)
        if (lens[i] == n && memcmp(names[i], want, n) == 0) return 1;
    return 0;
}

/* Refuse a call with code, and say why in failmsg, which the processor
 * reports (and stores with a dead letter) when the handler then fails. */
static int refuse(stx_txn *t, int code, const char *fmt, ...)
#if defined(__GNUC__)
    __attribute__((format(printf, 3, 4)))
#endif
    ;
static int refuse(stx_txn *t, int code, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(t->failmsg, sizeof t->failmsg, fmt, ap);
    va_end(ap);
    return code;
}

static int too_many_pairs(stx_txn *t, const char *stream, size_t npairs, const char *what)
{
    char shown[128];
    stx_printable(stream, strlen(stream), shown, sizeof shown);
    return refuse(t, STX_ELIMIT,
                  "publish to '%s': %zu field pairs%s, at most %d per publish (%s)", shown, npairs,
                  what, STX_MAX_PUBLISH_PAIRS,
                  "the commit script passes them to XADD through Lua's unpack()");
}

int stx_txn_publish(stx_txn *t, const char *stream, size_t nfields, const char *const *names,
                    const size_t *name_lens, const char *const *values,
                    const size_t *value_lens)
{
    TXN_CHECK(t);
    if (!stream || !*stream || nfields == 0 || !names || !name_lens || !values || !value_lens)
        return STX_EINVAL;
    if (!t->msg) /* a migration has no message to publish from */
        return refuse(t, STX_EINVAL, "publish: not allowed in a state migration");
    if (nfields > STX_MAX_PUBLISH_PAIRS) return too_many_pairs(t, stream, nfields, "");
    /* Envelope: the publish names its cause and carries the correlation on,
     * unless the handler set them itself. */
    const char *extra_names[2], *extra_values[2];
    size_t extra_vlens[2], nextra = 0;
    if (!has_name(nfields, names, name_lens, "causation_id")) {
        extra_names[nextra] = "causation_id";
        extra_values[nextra] = t->msg->id;
        extra_vlens[nextra++] = strlen(t->msg->id);
    }
    size_t corr_len;
    const char *corr = stx_msg_find(t->msg, "correlation_id", &corr_len);
    if (corr && !has_name(nfields, names, name_lens, "correlation_id")) {
        extra_names[nextra] = "correlation_id";
        extra_values[nextra] = corr;
        extra_vlens[nextra++] = corr_len;
    }
    size_t npairs = nfields + nextra;
    if (npairs > STX_MAX_PUBLISH_PAIRS)
        return too_many_pairs(t, stream, npairs, " with the envelope fields");
    if ((long)npairs > t->p->conf.max_fields)
        return refuse(t, STX_ELIMIT, "publish: %zu field pairs, more than max_fields (%ld)",
                      npairs, t->p->conf.max_fields);
    size_t total = 0;
    for (size_t i = 0; i < nfields; i++) {
        if ((!names[i] && name_lens[i]) || (!values[i] && value_lens[i])) return STX_EINVAL;
        total += name_lens[i] + value_lens[i];
    }
    for (size_t i = 0; i < nextra; i++) total += strlen(extra_names[i]) + extra_vlens[i];
    if (total > (size_t)t->p->conf.max_value_bytes)
        return refuse(t, STX_ELIMIT, "publish: %zu bytes of fields, more than max_value_bytes (%ld)",
                      total, t->p->conf.max_value_bytes);

    stx_pubs *ps = t->pubs;
    if (ps->n == ps->cap) {
        size_t cap = ps->cap ? ps->cap * 2 : 8;
        stx_pub *v = realloc(ps->v, cap * sizeof *v);
        if (!v) return STX_ENOMEM;
        ps->v = v;
        ps->cap = cap;
    }
    /* One allocation per publish: the pointer and length arrays, then the
     * stream name and the bytes of every pair. */
    size_t slen = strlen(stream);
    char *mem = malloc(2 * npairs * (sizeof(char *) + sizeof(size_t)) + slen + 1 + total);
    if (!mem) return STX_ENOMEM;
    stx_pub pub = {NULL, npairs, NULL, NULL, mem, 0};
    pub.ptrs = (char **)(void *)mem;
    pub.lens = (size_t *)(void *)(mem + 2 * npairs * sizeof(char *));
    pub.stream = mem + 2 * npairs * (sizeof(char *) + sizeof(size_t));
    memcpy(pub.stream, stream, slen + 1);
    char *w = pub.stream + slen + 1;
    for (size_t i = 0; i < npairs; i++) {
        const char *n = i < nfields ? names[i] : extra_names[i - nfields];
        size_t nl = i < nfields ? name_lens[i] : strlen(n);
        const char *v = i < nfields ? values[i] : extra_values[i - nfields];
        size_t vl = i < nfields ? value_lens[i] : extra_vlens[i - nfields];
        pub.ptrs[2 * i] = w;
        pub.lens[2 * i] = nl;
        if (nl) memcpy(w, n, nl);
        w += nl;
        pub.ptrs[2 * i + 1] = w;
        pub.lens[2 * i + 1] = vl;
        if (vl) memcpy(w, v, vl);
        w += vl;
    }
    ps->v[ps->n++] = pub;
    return STX_OK;
}

int stx_txn_publishv(stx_txn *t, const char *stream, ...)
{
    TXN_CHECK(t);
    if (!stream) return STX_EINVAL;
    /* Count the pairs first, so that any number up to the limit fits. */
    size_t n = 0;
    int odd = 0;
    va_list ap;
    va_start(ap, stream);
    for (;;) {
        const char *name = va_arg(ap, const char *);
        if (!name) break;
        if (!va_arg(ap, const char *)) {
            odd = 1;
            break;
        }
        n++;
    }
    va_end(ap);
    if (odd || n == 0 || !*stream) return STX_EINVAL;
    if (n > STX_MAX_PUBLISH_PAIRS) return too_many_pairs(t, stream, n, "");
    const char **strs = malloc(2 * n * sizeof *strs);
    size_t *lens = malloc(2 * n * sizeof *lens);
    if (!strs || !lens) {
        free(strs);
        free(lens);
        return STX_ENOMEM;
    }
    va_start(ap, stream);
    for (size_t i = 0; i < n; i++) {
        strs[i] = va_arg(ap, const char *);      /* names in the first half */
        strs[n + i] = va_arg(ap, const char *);  /* values in the second */
        lens[i] = strlen(strs[i]);
        lens[n + i] = strlen(strs[n + i]);
    }
    va_end(ap);
    int rc = stx_txn_publish(t, stream, n, strs, lens, strs + n, lens + n);
    free(strs);
    free(lens);
    return rc;
}

int stx_txn_fail(stx_txn *t, const char *fmt, ...)
{
    TXN_CHECK(t);
    if (!fmt) return STX_EINVAL;
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(t->failmsg, sizeof t->failmsg, fmt, ap);
    va_end(ap);
    return STX_EHANDLER;
}

int stx_txn_retry(stx_txn *t, const char *fmt, ...)
{
    TXN_CHECK(t);
    if (!fmt) return STX_EINVAL;
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(t->failmsg, sizeof t->failmsg, fmt, ap);
    va_end(ap);
    return STX_HANDLER_RETRY;
}
