/* Output buffers for the stx tool: a growable byte buffer, a JSON writer
 * that places commas itself, text escaping for JSON and for the human
 * formats, base64, and the msgpack -> JSON converter. */
#ifndef STX_CLI_JSON_H
#define STX_CLI_JSON_H

#include <stddef.h>
#include <stdint.h>
#include <stdio.h>

/* A growable byte buffer, always NUL-terminated: a stdio memory stream
 * (open_memstream) whose p and len are kept current after every write.
 * p is NULL before the first write.  Running out of memory ends the
 * program (exit 1, one line on stderr): this is a command-line tool, there
 * is nothing better to do. */
typedef struct jbuf {
    char *p;
    size_t len;
    FILE *f;                        /* NULL before the first write */
} jbuf;

void jb_init(jbuf *b);
void jb_free(jbuf *b);
/* The bytes (NUL-terminated, NULL when nothing was written), now the
 * caller's to free(); b is empty again. */
char *jb_take(jbuf *b);
void jb_reset(jbuf *b);             /* keep the memory, drop the bytes */
void jb_truncate(jbuf *b, size_t len);
void jb_put(jbuf *b, const void *s, size_t n);
void jb_putc(jbuf *b, char ch);
void jb_puts(jbuf *b, const char *s);
void jb_printf(jbuf *b, const char *fmt, ...)
#if defined(__GNUC__)
    __attribute__((format(printf, 2, 3)))
#endif
    ;
/* Write the bytes to f; 0 or -1 (errno set by stdio). */
int jb_write(const jbuf *b, FILE *f);

/* s[0..n) as a quoted JSON string.  Valid UTF-8 passes through; each byte
 * that is not part of a valid UTF-8 sequence is written as \u00XX (the
 * Latin-1 character of that byte value), so any bytes give valid JSON. */
void jb_json_str(jbuf *b, const void *s, size_t n);
/* s[0..n) in base64 (RFC 4648, with padding), unquoted. */
void jb_base64(jbuf *b, const void *s, size_t n);

/* s[0..n) for human output: printable text and valid UTF-8 as they are,
 * backslash as \\, \n \r \t, other control bytes and invalid UTF-8 as \xNN.
 * quote: wrap in double quotes (with \" inside) when the text is empty or
 * holds a space, '=' or '"' (logfmt style); 0 never quotes. */
void jb_human_str(jbuf *b, const void *s, size_t n, int quote);

/* A JSON writer on top of a jbuf: values written inside an array or after
 * an object's key get their separators automatically. */
#define JW_MAX_DEPTH 32
typedef struct jw {
    jbuf b;
    int depth;
    int after_key;                  /* a key was written, its value comes next */
    unsigned char count[JW_MAX_DEPTH]; /* 0: nothing yet written at that level */
} jw;

void jw_init(jw *w);
void jw_free(jw *w);
void jw_obj(jw *w);                 /* { */
void jw_obj_end(jw *w);             /* } */
void jw_arr(jw *w);                 /* [ */
void jw_arr_end(jw *w);             /* ] */
void jw_key(jw *w, const char *key);
void jw_keyn(jw *w, const void *key, size_t n);
void jw_str(jw *w, const char *s);  /* NULL writes null */
void jw_strn(jw *w, const void *s, size_t n);
void jw_i64(jw *w, long long v);
void jw_u64(jw *w, unsigned long long v);
void jw_bool(jw *w, int v);
void jw_null(jw *w);
/* Raw JSON text (one complete value) as the next value. */
void jw_raw(jw *w, const char *text, size_t n);
/* The separator before the next value; after it, the caller appends one
 * complete value to w->b itself (used by the msgpack converter). */
void jw_value_prefix(jw *w);
/* Print the document followed by a newline; resets the writer. */
int jw_print(jw *w, FILE *f);
/* Write what the writer holds so far and empty its buffer, keeping its
 * place in the document (for long arrays written page by page). */
int jw_flush(jw *w, FILE *f);

/* The msgpack -> JSON converter.
 *
 * Appends the JSON text of the msgpack object in buf[0..len) to b.  The
 * bytes are untrusted: they are checked with stx_mp_validate() first (no
 * declared length or count beyond the bytes present, at most MPJ_MAX_DEPTH
 * levels), and only then unpacked with msgpack-c.  Mapping:
 *   nil -> null, bool -> true/false, integers -> numbers (full uint64 and
 *   int64 range), float32/float64 -> %.17g, NaN and infinities -> null,
 *   str -> JSON string (invalid UTF-8 bytes as \u00XX, see jb_json_str),
 *   bin -> {"$bin":"<base64>"}, ext -> {"$ext":TYPE,"$bin":"<base64>"},
 *   array -> array, map -> object; a key that is not a str is written as
 *   the JSON string of its own JSON text (key 1 -> "1", key [1,2] ->
 *   "[1,2]").
 * Bytes that are not exactly one valid msgpack object are written as
 * {"$invalid":"<base64 of all the bytes>"}.
 * Returns 0 for a valid object, -1 when $invalid was written.
 * The depth is the library's own bound for state values, which is also
 * the nesting msgpack-c's unpacker handles (MSGPACK_EMBED_STACK_SIZE). */
#define MPJ_MAX_DEPTH 32
int mp_to_json(jbuf *b, const void *buf, size_t len);

#endif
