/* Bearer tokens with scopes.  The token file holds hashes, not tokens:
 *
 *   # one token a line: its SHA-256 in hex, then its scopes
 *   sha256:9f86d0...0f00a08 read,produce
 *   sha256:60303a...a1b2c3d admin
 *
 * (printf %s "$TOKEN" | sha256sum gives the hex).  A request presents
 * "Authorization: Bearer TOKEN" (or ?access_token=TOKEN, for EventSource
 * and WebSocket clients that cannot set headers); its SHA-256 is compared
 * with every hash in constant time.  admin includes read and produce. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include <openssl/crypto.h>
#include <openssl/sha.h>

#include "serve.h"

static int hexval(char c)
{
    if (c >= '0' && c <= '9') return c - '0';
    if (c >= 'a' && c <= 'f') return c - 'a' + 10;
    if (c >= 'A' && c <= 'F') return c - 'A' + 10;
    return -1;
}

int auth_load(server *srv, const char *file, char *err, size_t errlen)
{
    FILE *f = fopen(file, "r");
    if (!f) {
        snprintf(err, errlen, "cannot open the token file %s", file);
        return -1;
    }
    char line[1024];
    int lineno = 0, rc = 0;
    while (fgets(line, sizeof line, f)) {
        lineno++;
        char *p = line;
        while (*p == ' ' || *p == '\t') p++;
        if (*p == '#' || *p == '\n' || *p == '\0') continue;
        char hex[80], scopes[200];
        if (sscanf(p, "sha256:%79s %199s", hex, scopes) != 2 || strlen(hex) != 64) {
            snprintf(err, errlen, "%s:%d: expected 'sha256:HEX64 SCOPE[,SCOPE...]'", file, lineno);
            rc = -1;
            break;
        }
        token t;
        memset(&t, 0, sizeof t);
        for (int i = 0; i < 32 && rc == 0; i++) {
            int hi = hexval(hex[2 * i]), lo = hexval(hex[2 * i + 1]);
            if (hi < 0 || lo < 0) {
                snprintf(err, errlen, "%s:%d: the hash is not hex", file, lineno);
                rc = -1;
            }
            t.hash[i] = (unsigned char)(hi << 4 | lo);
        }
        for (char *s = strtok(scopes, ","); rc == 0 && s; s = strtok(NULL, ",")) {
            if (strcmp(s, "read") == 0) t.scopes |= SCOPE_READ;
            else if (strcmp(s, "produce") == 0) t.scopes |= SCOPE_PRODUCE;
            else if (strcmp(s, "admin") == 0) t.scopes |= SCOPE_READ | SCOPE_PRODUCE | SCOPE_ADMIN;
            else {
                snprintf(err, errlen, "%s:%d: unknown scope '%s' (read, produce, admin)", file,
                         lineno, s);
                rc = -1;
            }
        }
        if (rc != 0) break;
        token *nt = realloc(srv->tokens, (srv->ntokens + 1) * sizeof *nt);
        if (!nt) {
            snprintf(err, errlen, "out of memory");
            rc = -1;
            break;
        }
        srv->tokens = nt;
        srv->tokens[srv->ntokens++] = t;
    }
    fclose(f);
    if (rc == 0 && srv->ntokens == 0) {
        snprintf(err, errlen, "%s holds no token", file);
        rc = -1;
    }
    return rc;
}

int auth_check(server *srv, session *s, unsigned need)
{
    if (!srv->o.token_file) return 0;
    char hdr[600], tok[600] = "";
    const char *t = NULL;
    if (lws_hdr_copy(s->wsi, hdr, sizeof hdr, WSI_TOKEN_HTTP_AUTHORIZATION) > 0) {
        if (strncasecmp(hdr, "Bearer ", 7) == 0) t = hdr + 7;
    } else if (serve_query(s->wsi, "access_token=", tok, sizeof tok)) {
        t = tok;
    }
    if (!t || !*t) {
        serve_error(s, 401, "unauthorized", NULL, "a bearer token is required");
        return 401;
    }
    unsigned char h[32];
    SHA256((const unsigned char *)t, strlen(t), h);
    unsigned scopes = 0;
    int found = 0;
    for (size_t i = 0; i < srv->ntokens; i++)
        if (CRYPTO_memcmp(h, srv->tokens[i].hash, 32) == 0) {
            scopes |= srv->tokens[i].scopes;
            found = 1;
        }
    if (!found) {
        serve_error(s, 401, "unauthorized", NULL, "unknown token");
        return 401;
    }
    if ((scopes & need) != need) {
        serve_error(s, 403, "forbidden", NULL, "the token lacks the %s scope",
                    need == SCOPE_ADMIN ? "admin" : need == SCOPE_PRODUCE ? "produce" : "read");
        return 403;
    }
    return 0;
}
