/* The web console: placeholder until the page lands. */
#include <stdlib.h>
#include <string.h>

#include "serve.h"

void serve_console(server *srv, session *s, const char *path)
{
    (void)srv;
    if (strcmp(path, "index.html") != 0) {
        serve_error(s, 404, "not_found", NULL, "no such page");
        return;
    }
    static const char page[] = "<!doctype html><title>streamtx</title><p>streamtx gateway</p>\n";
    serve_respond(s, 200, "text/html; charset=utf-8", strdup(page), sizeof page - 1);
}
