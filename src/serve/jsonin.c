/* The bounded JSON reader of jsonin.h: recursive descent with an explicit
 * depth bound; RFC 8259 grammar, nothing more (no comments, no trailing
 * commas, no NaN). */
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "jsonin.h"

typedef struct parser {
    const char *t;
    size_t len, pos;
    jdoc *d;
    size_t max_nodes;
    size_t arena_used;
    char *err;
    size_t errlen;
} parser;

static int fail(parser *p, const char *fmt, ...)
{
    if (p->err && p->errlen) {
        char msg[160];
        va_list ap;
        va_start(ap, fmt);
        vsnprintf(msg, sizeof msg, fmt, ap);
        va_end(ap);
        snprintf(p->err, p->errlen, "%s at byte %zu", msg, p->pos);
    }
    return -1;
}

static void skip_ws(parser *p)
{
    while (p->pos < p->len) {
        char c = p->t[p->pos];
        if (c != ' ' && c != '\t' && c != '\n' && c != '\r') break;
        p->pos++;
    }
}

static long new_node(parser *p, jv_type type)
{
    jdoc *d = p->d;
    if (d->n >= p->max_nodes) return fail(p, "too many values (at most %zu)", p->max_nodes);
    if (d->n == d->cap) {
        size_t cap = d->cap ? d->cap * 2 : 16;
        if (cap > p->max_nodes) cap = p->max_nodes;
        jv *v = realloc(d->v, cap * sizeof *v);
        if (!v) return fail(p, "out of memory");
        d->v = v;
        d->cap = cap;
    }
    jv *v = &d->v[d->n];
    memset(v, 0, sizeof *v);
    v->type = type;
    v->src = p->pos;
    return (long)d->n++;
}

static int hex4(parser *p, unsigned *out)
{
    if (p->len - p->pos < 4) return fail(p, "truncated \\u escape");
    unsigned v = 0;
    for (int i = 0; i < 4; i++) {
        char c = p->t[p->pos + (size_t)i];
        v <<= 4;
        if (c >= '0' && c <= '9') v |= (unsigned)(c - '0');
        else if (c >= 'a' && c <= 'f') v |= (unsigned)(c - 'a' + 10);
        else if (c >= 'A' && c <= 'F') v |= (unsigned)(c - 'A' + 10);
        else return fail(p, "bad \\u escape");
    }
    p->pos += 4;
    *out = v;
    return 0;
}

/* Length of the valid UTF-8 sequence at s (1..4), 0 when invalid. */
static size_t utf8_seq(const unsigned char *s, size_t n)
{
    unsigned c = s[0];
    if (c < 0x80) return 1;
    size_t len;
    unsigned min;
    if ((c & 0xE0) == 0xC0) len = 2, min = 0x80, c &= 0x1F;
    else if ((c & 0xF0) == 0xE0) len = 3, min = 0x800, c &= 0x0F;
    else if ((c & 0xF8) == 0xF0) len = 4, min = 0x10000, c &= 0x07;
    else return 0;
    if (n < len) return 0;
    for (size_t i = 1; i < len; i++) {
        if ((s[i] & 0xC0) != 0x80) return 0;
        c = (c << 6) | (s[i] & 0x3F);
    }
    if (c < min || c > 0x10FFFF || (c >= 0xD800 && c <= 0xDFFF)) return 0;
    return len;
}

static size_t put_utf8(char *o, unsigned cp)
{
    if (cp < 0x80) { o[0] = (char)cp; return 1; }
    if (cp < 0x800) {
        o[0] = (char)(0xC0 | (cp >> 6));
        o[1] = (char)(0x80 | (cp & 0x3F));
        return 2;
    }
    if (cp < 0x10000) {
        o[0] = (char)(0xE0 | (cp >> 12));
        o[1] = (char)(0x80 | ((cp >> 6) & 0x3F));
        o[2] = (char)(0x80 | (cp & 0x3F));
        return 3;
    }
    o[0] = (char)(0xF0 | (cp >> 18));
    o[1] = (char)(0x80 | ((cp >> 12) & 0x3F));
    o[2] = (char)(0x80 | ((cp >> 6) & 0x3F));
    o[3] = (char)(0x80 | (cp & 0x3F));
    return 4;
}

/* A string at p->pos (the opening quote), decoded into the arena: the
 * decoded bytes never outnumber the source bytes, and the arena holds
 * len + 1 bytes per string at most in total (one NUL each), so it was
 * sized once for the whole text. */
static int parse_string(parser *p, long node)
{
    p->pos++; /* " */
    char *out = p->d->arena + p->arena_used;
    size_t o = 0;
    for (;;) {
        if (p->pos >= p->len) return fail(p, "unterminated string");
        unsigned char c = (unsigned char)p->t[p->pos];
        if (c == '"') {
            p->pos++;
            break;
        }
        if (c < 0x20) return fail(p, "control character in a string");
        if (c == '\\') {
            if (++p->pos >= p->len) return fail(p, "unterminated string");
            char e = p->t[p->pos++];
            switch (e) {
            case '"': out[o++] = '"'; break;
            case '\\': out[o++] = '\\'; break;
            case '/': out[o++] = '/'; break;
            case 'b': out[o++] = '\b'; break;
            case 'f': out[o++] = '\f'; break;
            case 'n': out[o++] = '\n'; break;
            case 'r': out[o++] = '\r'; break;
            case 't': out[o++] = '\t'; break;
            case 'u': {
                unsigned cp, lo;
                if (hex4(p, &cp) != 0) return -1;
                if (cp >= 0xDC00 && cp <= 0xDFFF) return fail(p, "lone low surrogate");
                if (cp >= 0xD800 && cp <= 0xDBFF) {
                    if (p->len - p->pos < 2 || p->t[p->pos] != '\\' || p->t[p->pos + 1] != 'u')
                        return fail(p, "lone high surrogate");
                    p->pos += 2;
                    if (hex4(p, &lo) != 0) return -1;
                    if (lo < 0xDC00 || lo > 0xDFFF) return fail(p, "lone high surrogate");
                    cp = 0x10000 + ((cp - 0xD800) << 10) + (lo - 0xDC00);
                }
                /* 6 or 12 source bytes give at most 4 decoded ones. */
                o += put_utf8(out + o, cp);
                break;
            }
            default: return fail(p, "bad escape");
            }
            continue;
        }
        size_t n = utf8_seq((const unsigned char *)p->t + p->pos, p->len - p->pos);
        if (n == 0) return fail(p, "invalid UTF-8 in a string");
        memcpy(out + o, p->t + p->pos, n);
        o += n;
        p->pos += n;
    }
    out[o] = '\0';
    p->arena_used += o + 1;
    jv *v = &p->d->v[node];
    v->s = out;
    v->len = o;
    return 0;
}

static int parse_number(parser *p)
{
    size_t s = p->pos;
    if (p->pos < p->len && p->t[p->pos] == '-') p->pos++;
    if (p->pos >= p->len) return fail(p, "bad number");
    if (p->t[p->pos] == '0') p->pos++;
    else if (p->t[p->pos] >= '1' && p->t[p->pos] <= '9')
        while (p->pos < p->len && p->t[p->pos] >= '0' && p->t[p->pos] <= '9') p->pos++;
    else return fail(p, "bad number");
    if (p->pos < p->len && p->t[p->pos] == '.') {
        p->pos++;
        size_t d = p->pos;
        while (p->pos < p->len && p->t[p->pos] >= '0' && p->t[p->pos] <= '9') p->pos++;
        if (p->pos == d) return fail(p, "bad number");
    }
    if (p->pos < p->len && (p->t[p->pos] == 'e' || p->t[p->pos] == 'E')) {
        p->pos++;
        if (p->pos < p->len && (p->t[p->pos] == '+' || p->t[p->pos] == '-')) p->pos++;
        size_t d = p->pos;
        while (p->pos < p->len && p->t[p->pos] >= '0' && p->t[p->pos] <= '9') p->pos++;
        if (p->pos == d) return fail(p, "bad number");
    }
    return p->pos > s ? 0 : -1;
}

static int literal(parser *p, const char *word)
{
    size_t n = strlen(word);
    if (p->len - p->pos < n || memcmp(p->t + p->pos, word, n) != 0)
        return fail(p, "unexpected character");
    p->pos += n;
    return 0;
}

static int parse_value(parser *p, int depth);

static int parse_container(parser *p, long node, int depth, int is_obj)
{
    char close = is_obj ? '}' : ']';
    p->pos++;
    skip_ws(p);
    if (p->pos < p->len && p->t[p->pos] == close) {
        p->pos++;
        return 0;
    }
    for (;;) {
        skip_ws(p);
        if (is_obj) {
            if (p->pos >= p->len || p->t[p->pos] != '"') return fail(p, "expected a member name");
            long k = new_node(p, JV_STR);
            if (k < 0 || parse_string(p, k) != 0) return -1;
            p->d->v[k].end = (uint32_t)p->d->n;
            p->d->v[k].src_len = p->pos - p->d->v[k].src;
            skip_ws(p);
            if (p->pos >= p->len || p->t[p->pos] != ':') return fail(p, "expected ':'");
            p->pos++;
        }
        if (parse_value(p, depth + 1) != 0) return -1;
        p->d->v[node].n++;
        skip_ws(p);
        if (p->pos >= p->len) return fail(p, "unterminated %s", is_obj ? "object" : "array");
        if (p->t[p->pos] == ',') {
            p->pos++;
            continue;
        }
        if (p->t[p->pos] == close) {
            p->pos++;
            return 0;
        }
        return fail(p, "expected ',' or '%c'", close);
    }
}

static int parse_value(parser *p, int depth)
{
    if (depth > JIN_MAX_DEPTH) return fail(p, "nested deeper than %d", JIN_MAX_DEPTH);
    skip_ws(p);
    if (p->pos >= p->len) return fail(p, "expected a value");
    char c = p->t[p->pos];
    long node;
    int rc;
    switch (c) {
    case '{':
    case '[':
        if ((node = new_node(p, c == '{' ? JV_OBJ : JV_ARR)) < 0) return -1;
        rc = parse_container(p, node, depth, c == '{');
        break;
    case '"':
        if ((node = new_node(p, JV_STR)) < 0) return -1;
        rc = parse_string(p, node);
        break;
    case 't':
        if ((node = new_node(p, JV_TRUE)) < 0) return -1;
        rc = literal(p, "true");
        break;
    case 'f':
        if ((node = new_node(p, JV_FALSE)) < 0) return -1;
        rc = literal(p, "false");
        break;
    case 'n':
        if ((node = new_node(p, JV_NULL)) < 0) return -1;
        rc = literal(p, "null");
        break;
    default:
        if (c != '-' && (c < '0' || c > '9')) return fail(p, "unexpected character");
        if ((node = new_node(p, JV_NUM)) < 0) return -1;
        rc = parse_number(p);
    }
    if (rc != 0) return -1;
    p->d->v[node].end = (uint32_t)p->d->n;
    p->d->v[node].src_len = p->pos - p->d->v[node].src;
    return 0;
}

int jdoc_parse(jdoc *d, const char *text, size_t len, size_t max_nodes, char *err, size_t errlen)
{
    memset(d, 0, sizeof *d);
    if (err && errlen) err[0] = '\0';
    parser p = {text, len, 0, d, max_nodes > UINT32_MAX - 1 ? UINT32_MAX - 1 : max_nodes, 0,
                err, errlen};
    if (!text) return fail(&p, "no body");
    /* Decoded strings fit in the text's bytes plus one NUL each (at most
     * one string per two source bytes, "" being the shortest). */
    d->arena = malloc(len + len / 2 + 1);
    if (!d->arena) return fail(&p, "out of memory");
    if (parse_value(&p, 1) != 0) return -1;
    skip_ws(&p);
    if (p.pos != len) return fail(&p, "trailing bytes after the value");
    return 0;
}

void jdoc_free(jdoc *d)
{
    if (!d) return;
    free(d->v);
    free(d->arena);
    memset(d, 0, sizeof *d);
}

long jdoc_member(const jdoc *d, size_t obj, const char *name)
{
    if (obj >= d->n || d->v[obj].type != JV_OBJ) return -1;
    size_t nl = strlen(name), i = obj + 1;
    for (uint32_t k = 0; k < d->v[obj].n; k++) {
        const jv *key = &d->v[i];
        size_t val = i + 1;
        if (key->len == nl && memcmp(key->s, name, nl) == 0) return (long)val;
        i = d->v[val].end;
    }
    return -1;
}
