/* The fields of one event of a POST body: the envelope
 * {"type","key","payload","correlation_id","causation_id","actor",
 * "schema_version","content_type"} (strings; a payload that is other JSON
 * is stored as its JSON text, with content_type application/json unless
 * given; a numeric schema_version as its text; null members are left
 * out), or {"fields":{NAME:STRING,...}} alone.  No libwebsockets here: the
 * fuzz target links this file and jsonin.c only. */
#ifndef STX_SERVE_EVENT_H
#define STX_SERVE_EVENT_H

#include <stddef.h>

#include "jsonin.h"
#include "streamtx.h"

#define EVENT_MAX_FIELDS 1000

typedef struct ev_fields {
    stx_field *f;   /* names and values point into the document or text */
    size_t n, cap;
} ev_fields;

/* The fields of the event at node of d (text: the parsed text): 0, or -1
 * with a message in err.  out->f is the caller's to free(). */
int serve_event_fields(const jdoc *d, size_t node, const char *text, ev_fields *out, char *err,
                       size_t errlen);

#endif
