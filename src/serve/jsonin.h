/* A bounded JSON reader for request bodies: the whole text is parsed into
 * a flat array of nodes (a subtree is contiguous; each node knows where
 * its subtree ends), strings decoded into one arena.  Untrusted input:
 * the text, the nesting depth and the node count are bounded, strings
 * must be valid UTF-8 (escapes included: no lone surrogates), and nothing
 * is allocated beyond a small multiple of the text's length. */
#ifndef STX_SERVE_JSONIN_H
#define STX_SERVE_JSONIN_H

#include <stddef.h>
#include <stdint.h>

typedef enum jv_type { JV_NULL, JV_FALSE, JV_TRUE, JV_NUM, JV_STR, JV_ARR, JV_OBJ } jv_type;

typedef struct jv {
    jv_type type;
    uint32_t end;    /* index of the first node after this subtree */
    uint32_t n;      /* ARR: values; OBJ: members (a key node, then its value) */
    const char *s;   /* STR: decoded bytes (NUL after them); other: NULL */
    size_t len;      /* STR: decoded length */
    size_t src;      /* offset of the value's first byte in the text */
    size_t src_len;  /* length of the value's text (a string: with its quotes) */
} jv;

typedef struct jdoc {
    jv *v;           /* v[0] is the root */
    size_t n, cap;
    char *arena;
} jdoc;

#define JIN_MAX_DEPTH 32

/* Parse text[0..len) as exactly one JSON value (whitespace around it
 * allowed) into d, at most max_nodes nodes.  0, or -1 with a message in
 * err (with the byte offset).  d is freed with jdoc_free() either way. */
int jdoc_parse(jdoc *d, const char *text, size_t len, size_t max_nodes, char *err, size_t errlen);
void jdoc_free(jdoc *d);

/* The value of member name of the object at index obj, or -1. */
long jdoc_member(const jdoc *d, size_t obj, const char *name);
/* The index of the next sibling of node i (its subtree's end). */
static inline size_t jdoc_next(const jdoc *d, size_t i) { return d->v[i].end; }

#endif
