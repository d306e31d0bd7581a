/* The client: one connection for producing, reading and administration. */
#include "client.h"

#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "config.h"
#include "keys.h"

int stx_client_fail(stx_client *c, int code, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(c->errmsg, sizeof c->errmsg, fmt, ap);
    va_end(ap);
    return code;
}

int stx_client_new(stx_client **out, const stx_config *conf)
{
    if (!out) return STX_EINVAL;
    *out = NULL;
    stx_client *c = calloc(1, sizeof *c);
    if (!c) return STX_ENOMEM;
    *out = c;
    stx_scripts_init(&c->scripts);
    stx_argv_init(&c->argv);
    stx_config *defaults = NULL;
    if (!conf && !(conf = defaults = stx_config_new()))
        return stx_client_fail(c, STX_ENOMEM, "out of memory");
    stx_conn_init(&c->conn, &conf->url, conf->connect_timeout_ms, conf->command_timeout_ms);
    stx_config_free(defaults);
    int rc = stx_conn_open(&c->conn);
    if (rc != STX_OK) return stx_client_fail(c, rc, "connect: %s", c->conn.err);
    return STX_OK;
}

void stx_client_free(stx_client *c)
{
    if (!c) return;
    stx_conn_close(&c->conn);
    stx_argv_free(&c->argv);
    free(c);
}

const char *stx_client_errmsg(const stx_client *c)
{
    return c ? c->errmsg : "no client";
}

/* A call that loses the connection closes it (hiredis does not reuse a
 * context after an error) and returns STX_ECONN or STX_ETIMEOUT; the next
 * call connects again.  Nothing is retried behind the caller's back: a
 * produce without an idempotency key that timed out may have landed. */
int stx_client_ready(stx_client *c)
{
    c->errmsg[0] = '\0';
    if (c->conn.ctx) return STX_OK;
    int rc = stx_conn_open(&c->conn);
    if (rc != STX_OK) return stx_client_fail(c, rc, "reconnect: %s", c->conn.err);
    return STX_OK;
}

int stx_client_command(stx_client *c, const char *what, redisReply **reply, int argc,
                       const char **argv, const size_t *lens)
{
    int rc = stx_conn_command(&c->conn, reply, argc, argv, lens);
    if (rc != STX_OK) return stx_client_fail(c, rc, "%s: %s", what, c->conn.err);
    return STX_OK;
}

void stx_client_eval_begin(stx_client *c)
{
    stx_argv_reset(&c->argv);
    for (int i = 0; i < 3; i++) stx_argv_add_ref(&c->argv, "", 0); /* EVALSHA sha numkeys */
}

void stx_client_eval_str(stx_client *c, const char *s)
{
    stx_argv_add_ref(&c->argv, s, strlen(s));
}

const char *stx_client_elem_str(const redisReply *r, size_t i)
{
    if (!r || r->type != REDIS_REPLY_ARRAY || i >= r->elements) return NULL;
    const redisReply *e = r->element[i];
    return e && (e->type == REDIS_REPLY_STRING || e->type == REDIS_REPLY_STATUS) ? e->str : NULL;
}

int stx_client_reply_is(const redisReply *r, const char *status)
{
    const char *s = stx_client_elem_str(r, 0);
    return s && strcmp(s, status) == 0;
}

/* Value of the name/value array r for name, or NULL. */
static const redisReply *field_of(const redisReply *r, const char *name)
{
    for (size_t i = 0; i + 1 < r->elements; i += 2) {
        const redisReply *n = r->element[i];
        if ((n->type == REDIS_REPLY_STRING || n->type == REDIS_REPLY_STATUS) && strcmp(n->str, name) == 0)
            return r->element[i + 1];
    }
    return NULL;
}

static int id_of(const redisReply *v, stx_id *out)
{
    return v && (v->type == REDIS_REPLY_STRING || v->type == REDIS_REPLY_STATUS) &&
                   stx_id_parse(v->str, v->len, out) == 0
               ? 0
               : -1;
}

/* The id of an [id, fields] entry, or "" for nil. */
static int entry_id(const redisReply *v, char *out)
{
    stx_id id;
    out[0] = '\0';
    if (!v || v->type == REDIS_REPLY_NIL) return 0;
    if (v->type != REDIS_REPLY_ARRAY || v->elements < 1 || id_of(v->element[0], &id) != 0) return -1;
    stx_id_format(id, out);
    return 0;
}

int stx_xinfo_parse(const redisReply *r, stx_xinfo *out)
{
    memset(out, 0, sizeof *out);
    if (!r || r->type != REDIS_REPLY_ARRAY) return STX_EREDIS;
    const redisReply *len = field_of(r, "length"), *added = field_of(r, "entries-added");
    if (!len || len->type != REDIS_REPLY_INTEGER || !added || added->type != REDIS_REPLY_INTEGER ||
        id_of(field_of(r, "last-generated-id"), &out->last_generated) != 0 ||
        id_of(field_of(r, "max-deleted-entry-id"), &out->max_deleted) != 0 ||
        entry_id(field_of(r, "first-entry"), out->first_id) != 0 ||
        entry_id(field_of(r, "last-entry"), out->last_id) != 0)
        return STX_EREDIS;
    out->length = len->integer;
    out->entries_added = added->integer;
    return STX_OK;
}

int stx_client_read_all(stx_client *c, size_t n, redisReply **replies)
{
    int first = STX_OK;
    char err[sizeof c->conn.err] = "";
    for (size_t i = 0; i < n; i++) {
        replies[i] = NULL;
        if (!c->conn.ctx) continue; /* lost: nothing more to read */
        int rc = stx_conn_read(&c->conn, &replies[i]);
        /* A lost connection outranks an error reply: it is what to act on. */
        if (rc != STX_OK && (first == STX_OK || rc == STX_ECONN || rc == STX_ETIMEOUT)) {
            first = rc;
            memcpy(err, c->conn.err, sizeof err);
        }
    }
    if (first != STX_OK) memcpy(c->conn.err, err, sizeof err);
    return first;
}
