/* The web console: one page (src/serve/console.html: HTML, CSS and
 * JavaScript, nothing fetched from elsewhere) embedded in the binary at
 * build time.  It uses the gateway's own routes: /health, /v1/streams
 * (polled), the live tail over SSE, dead letters and their redrive. */
#include <stdlib.h>
#include <string.h>

#include "serve.h"

extern const unsigned char console_html[];
extern const size_t console_html_len;

void serve_console(server *srv, session *s, const char *path)
{
    (void)srv;
    if (strcmp(path, "index.html") != 0) {
        serve_error(s, 404, "not_found", NULL, "no such page");
        return;
    }
    char *page = malloc(console_html_len);
    if (!page) {
        serve_error(s, 500, "internal", NULL, "out of memory");
        return;
    }
    memcpy(page, console_html, console_html_len);
    serve_respond(s, 200, "text/html; charset=utf-8", page, console_html_len);
}
