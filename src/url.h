/* Parsing of redis://[user:password@]host[:port][/db] URLs. */
#ifndef STX_URL_H
#define STX_URL_H

#include <stddef.h>

typedef struct stx_url {
    char host[256];
    int port;
    int db;
    char user[256];
    char password[512];
} stx_url;

/* Parse url into *out (defaults: port 6379, db 0, no user or password).
 * Percent-escapes in user and password are decoded; an IPv6 host is written
 * in brackets.  STX_OK or STX_EINVAL with the reason in err. */
int stx_url_parse(const char *url, stx_url *out, char *err, size_t errlen);

#endif
