/* The read-only message view over a stream entry of a Redis reply. */
#include <stdlib.h>
#include <string.h>

#include "processor.h"

int stx_msg_decode(struct stx_msg *m, const redisReply *entry, const char *stream,
                   long max_fields, long long max_bytes, const char **why)
{
    memset(m, 0, sizeof *m);
    m->stream = stream;
    m->delivery_count = 1;
    if (!entry || entry->type != REDIS_REPLY_ARRAY || entry->elements != 2) {
        *why = "entry is not an [id, fields] pair";
        return STX_EDECODE;
    }
    const redisReply *id = entry->element[0];
    if (!id || (id->type != REDIS_REPLY_STRING && id->type != REDIS_REPLY_STATUS) ||
        stx_id_parse(id->str, id->len, &m->idv) != 0 || strlen(id->str) != id->len) {
        *why = "entry id is not MS-SEQ";
        return STX_EDECODE;
    }
    m->id = id->str;
    const redisReply *f = entry->element[1];
    if (!f || f->type == REDIS_REPLY_NIL) return STX_OK; /* deleted while pending */
    if (f->type != REDIS_REPLY_ARRAY || f->elements % 2 != 0) {
        *why = "entry fields are not name/value pairs";
        return STX_EDECODE;
    }
    m->fields = f;
    if (f->elements / 2 > (size_t)max_fields) {
        *why = "entry has more fields than max_fields";
        return STX_ELIMIT;
    }
    long long bytes = 0;
    for (size_t i = 0; i < f->elements; i++) {
        const redisReply *s = f->element[i];
        if (!s || (s->type != REDIS_REPLY_STRING && s->type != REDIS_REPLY_STATUS)) {
            *why = "entry field is not a string";
            m->fields = NULL;
            return STX_EDECODE;
        }
        bytes += (long long)s->len;
    }
    m->bytes = (size_t)bytes;
    if (bytes > max_bytes) {
        *why = "entry is larger than max_value_bytes";
        return STX_ELIMIT;
    }
    return STX_OK;
}

/* A view the caller may read: not NULL and inside its handler call (or
 * owned by an stx_entries).  The processor keeps its messages in memory it
 * owns until it is freed, so reading the flag of a late call is safe. */
static int readable(const stx_msg *msg)
{
    return msg && msg->active;
}

const char *stx_msg_id(const stx_msg *msg)
{
    return readable(msg) ? msg->id : NULL;
}

const char *stx_msg_stream(const stx_msg *msg)
{
    return readable(msg) ? msg->stream : NULL;
}

static size_t field_count(const struct stx_msg *msg)
{
    return msg->fields ? msg->fields->elements / 2 : 0;
}

size_t stx_msg_field_count(const stx_msg *msg)
{
    return readable(msg) ? field_count(msg) : 0;
}

int stx_msg_field(const stx_msg *msg, size_t i, const char **name, size_t *name_len,
                  const char **value, size_t *value_len)
{
    if (!msg) return STX_EINVAL;
    if (!msg->active) return STX_ESTATE;
    if (i >= field_count(msg)) return STX_ENOTFOUND;
    const redisReply *n = msg->fields->element[2 * i], *v = msg->fields->element[2 * i + 1];
    if (name) *name = n->str;
    if (name_len) *name_len = n->len;
    if (value) *value = v->str;
    if (value_len) *value_len = v->len;
    return STX_OK;
}

const char *stx_msg_find(const struct stx_msg *msg, const char *name, size_t *len)
{
    size_t want = strlen(name);
    for (size_t i = 0; i < field_count(msg); i++) {
        const redisReply *n = msg->fields->element[2 * i];
        if (n->len == want && memcmp(n->str, name, want) == 0) {
            const redisReply *v = msg->fields->element[2 * i + 1];
            if (len) *len = v->len;
            return v->str;
        }
    }
    return NULL;
}

const char *stx_msg_get(const stx_msg *msg, const char *name, size_t *len)
{
    return readable(msg) && name ? stx_msg_find(msg, name, len) : NULL;
}

uint64_t stx_msg_delivery_count(const stx_msg *msg)
{
    return readable(msg) ? msg->delivery_count : 0;
}
