/* Byte buffers, JSON writing and text escaping for the stx tool.
 *
 * The JSON writer is our own rather than a library's: the Debian JSON
 * libraries (json-c, jansson, cJSON, yyjson) build a tree in memory and
 * hold numbers as int64_t or double, so a msgpack uint64 above INT64_MAX
 * cannot be written exactly, and they take strings as NUL-terminated
 * UTF-8, so state keys and values with NUL bytes or invalid UTF-8 cannot
 * be written at all.  This writer streams (a state dump of any size is
 * written page by page), writes integers of both ranges as they are and
 * maps any byte string to valid JSON (see jb_json_str()).  The growable
 * buffer under it is a stdio memory stream (open_memstream). */
#include "json.h"

#include <stdarg.h>
#include <stdlib.h>
#include <string.h>

static void out_of_memory(void)
{
    fputs("stx: out of memory\n", stderr);
    exit(1);
}

void jb_init(jbuf *b)
{
    b->p = NULL;
    b->len = 0;
    b->f = NULL;
}

void jb_free(jbuf *b)
{
    free(jb_take(b));
}

char *jb_take(jbuf *b)
{
    if (b->f)
        fclose(b->f); /* updates p and len a last time */
    char *p = b->p;
    jb_init(b);
    return p;
}

/* The stream, opened on the first write. */
static FILE *jb_stream(jbuf *b)
{
    if (!b->f && !(b->f = open_memstream(&b->p, &b->len)))
        out_of_memory();
    return b->f;
}

/* After each write: p and len are current (a memory stream updates them
 * on fflush), and a failed write (out of memory) ends the program. */
static void jb_sync(jbuf *b)
{
    if (fflush(b->f) != 0 || ferror(b->f))
        out_of_memory();
}

void jb_reset(jbuf *b)
{
    jb_truncate(b, 0);
}

void jb_truncate(jbuf *b, size_t len)
{
    if (!b->f || len >= b->len)
        return;
    /* The size of a memory stream is its position after fflush; the NUL
     * is ours to put back. */
    if (fseeko(b->f, (off_t)len, SEEK_SET) != 0)
        out_of_memory();
    jb_sync(b);
    b->p[b->len] = '\0';
}

void jb_put(jbuf *b, const void *s, size_t n)
{
    FILE *f = jb_stream(b);
    if (n && fwrite(s, 1, n, f) != n)
        out_of_memory();
    jb_sync(b);
}

void jb_putc(jbuf *b, char ch)
{
    jb_put(b, &ch, 1);
}

void jb_puts(jbuf *b, const char *s)
{
    jb_put(b, s, strlen(s));
}

void jb_printf(jbuf *b, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    int n = vfprintf(jb_stream(b), fmt, ap);
    va_end(ap);
    if (n < 0)
        out_of_memory();
    jb_sync(b);
}

int jb_write(const jbuf *b, FILE *f)
{
    if (b->len && fwrite(b->p, 1, b->len, f) != b->len)
        return -1;
    return 0;
}

/* Length of the valid UTF-8 sequence at s (n bytes left), or 0 when the
 * byte at s does not start one (overlong forms, surrogates and code points
 * above U+10FFFF are invalid). */
static size_t utf8_seq(const unsigned char *s, size_t n)
{
    unsigned char c = s[0];
    if (c < 0x80)
        return 1;
    size_t len;
    unsigned char lo = 0x80, hi = 0xbf; /* bounds of the second byte */
    if (c >= 0xc2 && c <= 0xdf) {
        len = 2;
    } else if (c >= 0xe0 && c <= 0xef) {
        len = 3;
        if (c == 0xe0)
            lo = 0xa0;
        else if (c == 0xed)
            hi = 0x9f;
    } else if (c >= 0xf0 && c <= 0xf4) {
        len = 4;
        if (c == 0xf0)
            lo = 0x90;
        else if (c == 0xf4)
            hi = 0x8f;
    } else {
        return 0;
    }
    if (n < len || s[1] < lo || s[1] > hi)
        return 0;
    for (size_t i = 2; i < len; i++)
        if (s[i] < 0x80 || s[i] > 0xbf)
            return 0;
    return len;
}

static const char hexdig[] = "0123456789abcdef";

void jb_json_str(jbuf *b, const void *str, size_t n)
{
    const unsigned char *s = str;
    jb_putc(b, '"');
    size_t i = 0;
    while (i < n) {
        unsigned char c = s[i];
        size_t run = utf8_seq(s + i, n - i);
        if (run > 1) {
            jb_put(b, s + i, run);
            i += run;
            continue;
        }
        i++;
        switch (c) {
        case '"': jb_puts(b, "\\\""); continue;
        case '\\': jb_puts(b, "\\\\"); continue;
        case '\n': jb_puts(b, "\\n"); continue;
        case '\r': jb_puts(b, "\\r"); continue;
        case '\t': jb_puts(b, "\\t"); continue;
        case '\b': jb_puts(b, "\\b"); continue;
        case '\f': jb_puts(b, "\\f"); continue;
        default: break;
        }
        if (run == 1 && c >= 0x20 && c != 0x7f) {
            jb_putc(b, (char)c);
        } else {
            char esc[6] = {'\\', 'u', '0', '0', hexdig[c >> 4], hexdig[c & 15]};
            jb_put(b, esc, sizeof esc);
        }
    }
    jb_putc(b, '"');
}

void jb_base64(jbuf *b, const void *data, size_t n)
{
    static const char tab[] =
        "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
    const unsigned char *s = data;
    size_t i = 0;
    char out[4];
    for (; n - i >= 3; i += 3) {
        unsigned v = (unsigned)s[i] << 16 | (unsigned)s[i + 1] << 8 | s[i + 2];
        out[0] = tab[v >> 18];
        out[1] = tab[(v >> 12) & 63];
        out[2] = tab[(v >> 6) & 63];
        out[3] = tab[v & 63];
        jb_put(b, out, 4);
    }
    if (n - i == 1) {
        unsigned v = (unsigned)s[i] << 16;
        out[0] = tab[v >> 18];
        out[1] = tab[(v >> 12) & 63];
        out[2] = out[3] = '=';
        jb_put(b, out, 4);
    } else if (n - i == 2) {
        unsigned v = (unsigned)s[i] << 16 | (unsigned)s[i + 1] << 8;
        out[0] = tab[v >> 18];
        out[1] = tab[(v >> 12) & 63];
        out[2] = tab[(v >> 6) & 63];
        out[3] = '=';
        jb_put(b, out, 4);
    }
}

void jb_human_str(jbuf *b, const void *str, size_t n, int quote)
{
    const unsigned char *s = str;
    int quoted = 0;
    if (quote) {
        quoted = n == 0;
        for (size_t i = 0; i < n && !quoted; i++)
            quoted = s[i] == ' ' || s[i] == '=' || s[i] == '"';
    }
    if (quoted)
        jb_putc(b, '"');
    size_t i = 0;
    while (i < n) {
        unsigned char c = s[i];
        size_t run = utf8_seq(s + i, n - i);
        if (run > 1) {
            jb_put(b, s + i, run);
            i += run;
            continue;
        }
        i++;
        if (c == '\\')
            jb_puts(b, "\\\\");
        else if (c == '"' && quoted)
            jb_puts(b, "\\\"");
        else if (c == '\n')
            jb_puts(b, "\\n");
        else if (c == '\r')
            jb_puts(b, "\\r");
        else if (c == '\t')
            jb_puts(b, "\\t");
        else if (run == 1 && c >= 0x20 && c != 0x7f)
            jb_putc(b, (char)c);
        else {
            char esc[4] = {'\\', 'x', hexdig[c >> 4], hexdig[c & 15]};
            jb_put(b, esc, sizeof esc);
        }
    }
    if (quoted)
        jb_putc(b, '"');
}

/* ------------------------------------------------------------------ */
/* the JSON writer                                                      */

void jw_init(jw *w)
{
    memset(w, 0, sizeof *w);
    jb_init(&w->b);
}

void jw_free(jw *w)
{
    jb_free(&w->b);
}

void jw_value_prefix(jw *w)
{
    if (w->after_key) {
        w->after_key = 0;
        return;
    }
    if (w->depth > 0) {
        if (w->count[w->depth - 1])
            jb_putc(&w->b, ',');
        w->count[w->depth - 1] = 1;
    }
}

static void jw_open(jw *w, char ch)
{
    jw_value_prefix(w);
    jb_putc(&w->b, ch);
    if (w->depth >= JW_MAX_DEPTH) {
        /* The tool's own documents are shallow; deeper is a bug. */
        fputs("stx: internal error: JSON nesting too deep\n", stderr);
        abort();
    }
    w->count[w->depth++] = 0;
}

static void jw_close(jw *w, char ch)
{
    if (w->depth > 0)
        w->depth--;
    w->after_key = 0;
    jb_putc(&w->b, ch);
}

void jw_obj(jw *w) { jw_open(w, '{'); }
void jw_obj_end(jw *w) { jw_close(w, '}'); }
void jw_arr(jw *w) { jw_open(w, '['); }
void jw_arr_end(jw *w) { jw_close(w, ']'); }

void jw_keyn(jw *w, const void *key, size_t n)
{
    jw_value_prefix(w);
    jb_json_str(&w->b, key, n);
    jb_putc(&w->b, ':');
    w->after_key = 1;
}

void jw_key(jw *w, const char *key)
{
    jw_keyn(w, key, strlen(key));
}

void jw_strn(jw *w, const void *s, size_t n)
{
    jw_value_prefix(w);
    jb_json_str(&w->b, s, n);
}

void jw_str(jw *w, const char *s)
{
    if (!s) {
        jw_null(w);
        return;
    }
    jw_strn(w, s, strlen(s));
}

void jw_i64(jw *w, long long v)
{
    jw_value_prefix(w);
    jb_printf(&w->b, "%lld", v);
}

void jw_u64(jw *w, unsigned long long v)
{
    jw_value_prefix(w);
    jb_printf(&w->b, "%llu", v);
}

void jw_bool(jw *w, int v)
{
    jw_value_prefix(w);
    jb_puts(&w->b, v ? "true" : "false");
}

void jw_null(jw *w)
{
    jw_value_prefix(w);
    jb_puts(&w->b, "null");
}

void jw_raw(jw *w, const char *text, size_t n)
{
    jw_value_prefix(w);
    jb_put(&w->b, text, n);
}

int jw_print(jw *w, FILE *f)
{
    jb_putc(&w->b, '\n');
    int rc = jb_write(&w->b, f);
    jb_reset(&w->b);
    w->depth = 0;
    w->after_key = 0;
    return rc;
}

int jw_flush(jw *w, FILE *f)
{
    int rc = jb_write(&w->b, f);
    jb_reset(&w->b);
    return rc;
}
