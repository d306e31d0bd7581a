/* The router: a handler that dispatches on the entry's "type" field to
 * every handler whose pattern matches, all in the one transaction. */
#include <stdlib.h>
#include <string.h>

#include "text.h"
#include "streamtx.h"

struct route {
    char *pattern;
    stx_handler_fn handler;
    void *user_data;
};

struct stx_router {
    struct route *routes;
    size_t n, cap;
    int unmatched_fail;
};

stx_router *stx_router_new(void)
{
    return calloc(1, sizeof(stx_router));
}

void stx_router_free(stx_router *r)
{
    if (!r) return;
    for (size_t i = 0; i < r->n; i++) free(r->routes[i].pattern);
    free(r->routes);
    free(r);
}

int stx_router_add(stx_router *r, const char *pattern, stx_handler_fn handler, void *user_data)
{
    if (!r || !pattern || !handler) return STX_EINVAL;
    if (r->n == r->cap) {
        size_t cap = r->cap ? 2 * r->cap : 8;
        struct route *v = realloc(r->routes, cap * sizeof *v);
        if (!v) return STX_ENOMEM;
        r->routes = v;
        r->cap = cap;
    }
    char *copy = strdup(pattern);
    if (!copy) return STX_ENOMEM;
    r->routes[r->n++] = (struct route){copy, handler, user_data};
    return STX_OK;
}

void stx_router_set_unmatched_fail(stx_router *r, int fail)
{
    if (r) r->unmatched_fail = fail != 0;
}

/* Glob match of the bytes text[0..len) against pattern: '*' matches any
 * run of bytes (the empty one too), '?' exactly one byte, anything else
 * itself.  Iterative with one backtrack point (the last '*'), so time is
 * O(len * strlen(pattern)) at worst and the stack does not grow. */
static int glob_match(const char *pattern, const char *text, size_t len)
{
    const char *p = pattern;
    size_t t = 0;
    const char *star = NULL; /* pattern position after the last '*' */
    size_t star_t = 0;       /* text position that '*' is matched up to */
    while (t < len) {
        if (*p == '*') {
            star = ++p;
            star_t = t;
        } else if (*p && (*p == '?' || *p == text[t])) {
            p++;
            t++;
        } else if (star) {
            p = star;        /* let the last '*' take one more byte */
            t = ++star_t;
        } else {
            return 0;
        }
    }
    while (*p == '*') p++;
    return *p == '\0';
}

/* An entry without a "type" field is matched as the empty type: "*"
 * takes it, "order.*" does not. */
int stx_router_handle(const stx_msg *msg, stx_txn *txn, void *router)
{
    stx_router *r = router;
    /* No router, no message, or a message outside its handler call (its id
     * reads as NULL): nothing to dispatch on.  txn is passed on as it is. */
    const char *id = stx_msg_id(msg);
    if (!r || !id) return STX_HANDLER_FAIL;
    size_t len = 0;
    const char *type = stx_msg_get(msg, STX_FIELD_TYPE, &len);
    if (!type) type = "";
    int matched = 0;
    for (size_t i = 0; i < r->n; i++) {
        if (!glob_match(r->routes[i].pattern, type, len)) continue;
        matched = 1;
        int verdict = r->routes[i].handler(msg, txn, r->routes[i].user_data);
        /* The first failure decides: nothing of this entry is written, so
         * the handlers after it need not run. */
        if (verdict != STX_HANDLER_OK) return verdict;
    }
    if (matched || !r->unmatched_fail) return STX_HANDLER_OK;
    char shown[256];
    stx_printable(type, len, shown, sizeof shown);
    stx_txn_fail(txn, "no route for type '%s' of entry %s", shown, id);
    return STX_HANDLER_FAIL;
}
