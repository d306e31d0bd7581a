/* One event of a POST body (JSON) as the fields of a stream entry. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "event.h"

static int add_field(ev_fields *out, const char *name, size_t nl, const char *value, size_t vl)
{
    if (out->n == out->cap) {
        size_t cap = out->cap ? out->cap * 2 : 8;
        stx_field *f = realloc(out->f, cap * sizeof *f);
        if (!f) return -1;
        out->f = f;
        out->cap = cap;
    }
    out->f[out->n++] = (stx_field){name, nl, value, vl};
    return 0;
}

static const char *const envelope[] = {"type",         "key",   "payload",        "correlation_id",
                                       "causation_id", "actor", "schema_version", "content_type",
                                       NULL};

int serve_event_fields(const jdoc *d, size_t node, const char *text, ev_fields *out, char *err,
                       size_t errlen)
{
    out->n = 0;
    const jv *ev = &d->v[node];
    if (ev->type != JV_OBJ) {
        snprintf(err, errlen, "an event is a JSON object");
        return -1;
    }
    long fields = jdoc_member(d, node, "fields");
    if (fields >= 0) {
        if (ev->n != 1) {
            snprintf(err, errlen, "an event with \"fields\" has no other member");
            return -1;
        }
        const jv *fo = &d->v[fields];
        if (fo->type != JV_OBJ || fo->n == 0) {
            snprintf(err, errlen, "\"fields\" is an object with at least one member");
            return -1;
        }
        if (fo->n > EVENT_MAX_FIELDS) {
            snprintf(err, errlen, "an event has at most %d fields", EVENT_MAX_FIELDS);
            return -1;
        }
        size_t i = (size_t)fields + 1;
        for (uint32_t k = 0; k < fo->n; k++) {
            const jv *key = &d->v[i], *val = &d->v[i + 1];
            if (val->type != JV_STR) {
                snprintf(err, errlen, "field \"%.100s\" is not a string", key->s);
                return -1;
            }
            if (add_field(out, key->s, key->len, val->s, val->len)) goto oom;
            i = val->end;
        }
        return 0;
    }
    size_t i = node + 1;
    int has_ctype = jdoc_member(d, node, "content_type") >= 0, json_payload = 0;
    for (uint32_t k = 0; k < ev->n; k++) {
        const jv *key = &d->v[i], *val = &d->v[i + 1];
        int known = 0;
        for (size_t e = 0; envelope[e]; e++)
            if (strlen(envelope[e]) == key->len && memcmp(envelope[e], key->s, key->len) == 0)
                known = 1;
        if (!known) {
            snprintf(err, errlen,
                     "unknown member \"%.100s\" (an event has type, key, payload, correlation_id, "
                     "causation_id, actor, schema_version, content_type; or only \"fields\")",
                     key->s);
            return -1;
        }
        int is_payload = strcmp(key->s, "payload") == 0;
        int is_version = strcmp(key->s, "schema_version") == 0;
        if (val->type == JV_NULL) {
        } else if (val->type == JV_STR) {
            if (add_field(out, key->s, key->len, val->s, val->len)) goto oom;
        } else if (is_payload || (is_version && val->type == JV_NUM)) {
            /* JSON payloads are stored as their JSON text. */
            if (add_field(out, key->s, key->len, text + val->src, val->src_len)) goto oom;
            if (is_payload) json_payload = 1;
        } else {
            snprintf(err, errlen, "\"%.100s\" is a string", key->s);
            return -1;
        }
        i = val->end;
    }
    if (json_payload && !has_ctype &&
        add_field(out, "content_type", 12, "application/json", 16))
        goto oom;
    if (out->n == 0) {
        snprintf(err, errlen, "an event has at least one field");
        return -1;
    }
    return 0;
oom:
    snprintf(err, errlen, "out of memory");
    return -1;
}

