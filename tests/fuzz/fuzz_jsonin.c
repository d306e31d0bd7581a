/* Fuzz the request-body reader of stx serve: arbitrary bytes through the
 * bounded JSON parser, and every parsed object or array element through
 * the event mapper, with the parse tree's invariants checked. */
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "serve/event.h"
#include "serve/jsonin.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

static int utf8_ok(const unsigned char *s, size_t n)
{
    for (size_t i = 0; i < n;) {
        unsigned c = s[i];
        size_t len = c < 0x80 ? 1 : (c & 0xE0) == 0xC0 ? 2 : (c & 0xF0) == 0xE0 ? 3 : (c & 0xF8) == 0xF0 ? 4 : 0;
        if (!len || i + len > n) return 0;
        for (size_t j = 1; j < len; j++)
            if ((s[i + j] & 0xC0) != 0x80) return 0;
        i += len;
    }
    return 1;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    const char *text = (const char *)data;
    jdoc d;
    char err[200];
    if (jdoc_parse(&d, text, size, 4096, err, sizeof err) != 0) {
        if (!err[0]) __builtin_trap(); /* every refusal says why */
        jdoc_free(&d);
        return 0;
    }
    for (size_t i = 0; i < d.n; i++) {
        const jv *v = &d.v[i];
        if (v->end <= i || v->end > d.n) __builtin_trap();
        if (v->src + v->src_len > size) __builtin_trap();
        if (v->type == JV_STR && (!v->s || v->s[v->len] != '\0' ||
                                  !utf8_ok((const unsigned char *)v->s, v->len)))
            __builtin_trap();
    }
    if (d.v[0].end != d.n) __builtin_trap();
    size_t first = d.v[0].type == JV_ARR ? 1 : 0, count = d.v[0].type == JV_ARR ? d.v[0].n : 1;
    ev_fields ev = {0};
    for (size_t k = 0, node = first; k < count; k++, node = d.v[node].end) {
        if (serve_event_fields(&d, node, text, &ev, err, sizeof err) != 0) {
            if (!err[0]) __builtin_trap();
            continue;
        }
        if (ev.n == 0) __builtin_trap();
        for (size_t j = 0; j < ev.n; j++) {
            volatile char sink = 0;
            for (size_t b = 0; b < ev.f[j].name_len; b++) sink ^= ev.f[j].name[b];
            for (size_t b = 0; b < ev.f[j].value_len; b++) sink ^= ev.f[j].value[b];
            (void)sink;
        }
    }
    free(ev.f);
    jdoc_free(&d);
    return 0;
}
