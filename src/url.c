/* redis://, rediss://, unix:// and redis+unix:// URL parsing. */
#include "url.h"

#include <ctype.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "streamtx.h"

static int hexval(char c)
{
    if (c >= '0' && c <= '9') return c - '0';
    if (c >= 'a' && c <= 'f') return c - 'a' + 10;
    if (c >= 'A' && c <= 'F') return c - 'A' + 10;
    return -1;
}

/* Copy [s, s+n) into out with %XX decoded; fails on a bad escape, an
 * embedded NUL or when out is too small. */
static int decode_part(const char *s, size_t n, char *out, size_t cap)
{
    size_t o = 0;
    for (size_t i = 0; i < n; i++) {
        int c = (unsigned char)s[i];
        if (c == '%') {
            if (i + 2 >= n) return -1;
            int h = hexval(s[i + 1]), l = hexval(s[i + 2]);
            if (h < 0 || l < 0) return -1;
            c = h * 16 + l;
            i += 2;
        }
        if (c == 0 || o + 1 >= cap) return -1;
        out[o++] = (char)c;
    }
    out[o] = '\0';
    return 0;
}

static int parse_uint(const char *s, size_t n, long max, long *out)
{
    if (n == 0 || n > 9) return -1;
    long v = 0;
    for (size_t i = 0; i < n; i++) {
        if (!isdigit((unsigned char)s[i])) return -1;
        v = v * 10 + (s[i] - '0');
    }
    if (v > max) return -1;
    *out = v;
    return 0;
}

/* [user[:password]@] at p (before limit): decoded into out; *p moves past
 * the '@'.  0 or -1 (message in err). */
static int parse_auth(const char **p, const char *limit, stx_url *out, char *err, size_t errlen)
{
    const char *auth_end = NULL;
    for (const char *q = *p; q < limit; q++)
        if (*q == '@') auth_end = q; /* the last '@' ends the credentials */
    if (!auth_end) return 0;
    const char *colon = memchr(*p, ':', (size_t)(auth_end - *p));
    const char *user_end = colon ? colon : auth_end;
    if (decode_part(*p, (size_t)(user_end - *p), out->user, sizeof out->user) != 0 ||
        (colon && decode_part(colon + 1, (size_t)(auth_end - colon - 1), out->password,
                              sizeof out->password) != 0)) {
        snprintf(err, errlen, "URL has a malformed or too long user or password");
        return -1;
    }
    if (!colon) { /* redis://password@host is the common legacy form */
        memcpy(out->password, out->user, sizeof out->user);
        out->user[0] = '\0';
    }
    *p = auth_end + 1;
    return 0;
}

/* unix://[auth@]/path[?db=N]: p is just after the scheme. */
static int parse_unix(const char *p, stx_url *out, char *err, size_t errlen)
{
    const char *end = p + strlen(p);
    const char *query = memchr(p, '?', (size_t)(end - p));
    const char *path_end = query ? query : end;
    const char *slash = memchr(p, '/', (size_t)(path_end - p));
    if (parse_auth(&p, slash ? slash : path_end, out, err, errlen) != 0) return STX_EINVAL;
    if (*p != '/') {
        snprintf(err, errlen, "unix:// URL needs an absolute socket path, as in "
                              "unix:///run/redis/redis.sock");
        return STX_EINVAL;
    }
    size_t n = (size_t)(path_end - p);
    if (n >= sizeof out->path) {
        snprintf(err, errlen, "unix:// URL socket path is longer than %zu bytes",
                 sizeof out->path - 1);
        return STX_EINVAL;
    }
    if (decode_part(p, n, out->path, sizeof out->path) != 0) {
        snprintf(err, errlen, "unix:// URL has a malformed socket path");
        return STX_EINVAL;
    }
    /* Query: db=N, separated by '&'. */
    for (const char *q = query ? query + 1 : end; q < end;) {
        const char *amp = memchr(q, '&', (size_t)(end - q));
        const char *item_end = amp ? amp : end;
        long v;
        if ((size_t)(item_end - q) > 3 && strncmp(q, "db=", 3) == 0) {
            if (parse_uint(q + 3, (size_t)(item_end - q - 3), 1000000, &v) != 0) {
                snprintf(err, errlen, "unix:// URL db must be a number");
                return STX_EINVAL;
            }
            out->db = (int)v;
        } else if (item_end > q) {
            snprintf(err, errlen, "unix:// URL has an unknown parameter '%.*s' (only db=N)",
                     (int)(item_end - q > 64 ? 64 : item_end - q), q);
            return STX_EINVAL;
        }
        q = item_end + (amp ? 1 : 0);
    }
    snprintf(out->host, sizeof out->host, "localhost");
    out->port = 0;
    return STX_OK;
}

/* host[:port] or [v6]:port in [p, end) into host and *port (left as it
 * is when absent).  0 or -1 (message in err). */
static int parse_hostport(const char *p, const char *end, char *out_host, size_t cap,
                          int *out_port, char *err, size_t errlen)
{
    const char *host = p, *port = NULL;
    size_t host_len;
    if (*p == '[') {
        const char *rb = memchr(p, ']', (size_t)(end - p));
        if (!rb) {
            snprintf(err, errlen, "URL has an unterminated [IPv6] host");
            return -1;
        }
        host = p + 1;
        host_len = (size_t)(rb - host);
        if (rb + 1 < end) {
            if (rb[1] != ':') {
                snprintf(err, errlen, "URL has junk after the [IPv6] host");
                return -1;
            }
            port = rb + 2;
        }
    } else {
        const char *colon = memchr(p, ':', (size_t)(end - p));
        host_len = (size_t)((colon ? colon : end) - p);
        if (colon) port = colon + 1;
    }
    if (host_len == 0 || host_len >= cap) {
        snprintf(err, errlen, "URL has an empty or too long host");
        return -1;
    }
    for (size_t i = 0; i < host_len; i++) {
        unsigned char c = (unsigned char)host[i];
        if (!(isalnum(c) || c == '.' || c == '-' || c == '_' || c == ':')) {
            snprintf(err, errlen, "URL host has an invalid character");
            return -1;
        }
    }
    memcpy(out_host, host, host_len);
    out_host[host_len] = '\0';
    long v;
    if (port) {
        if (parse_uint(port, (size_t)(end - port), 65535, &v) != 0 || v == 0) {
            snprintf(err, errlen, "URL port must be a number from 1 to 65535");
            return -1;
        }
        *out_port = (int)v;
    }
    return 0;
}

int stx_url_parse_nodes(const char *list, size_t len, char *out, size_t cap, char *err,
                        size_t errlen)
{
    size_t o = 0;
    const char *end = list + len;
    if (cap) out[0] = '\0';
    for (const char *p = list; p <= end;) {
        const char *comma = memchr(p, ',', (size_t)(end - p));
        const char *item_end = comma ? comma : end;
        char host[256];
        int port = 6379;
        if (parse_hostport(p, item_end, host, sizeof host, &port, err, errlen) != 0)
            return STX_EINVAL;
        int n = snprintf(out + o, cap - o, strchr(host, ':') ? "%s[%s]:%d" : "%s%s:%d",
                         o ? "," : "", host, port);
        if (n < 0 || (size_t)n >= cap - o) {
            snprintf(err, errlen, "too many cluster nodes (at most %zu bytes)", cap - 1);
            return STX_EINVAL;
        }
        o += (size_t)n;
        if (!comma) break;
        p = comma + 1;
    }
    return STX_OK;
}

int stx_url_parse(const char *url, stx_url *out, char *err, size_t errlen)
{
    static const struct {
        const char *scheme;
        int tls, unix_socket;
    } schemes[] = {
        {"redis://", 0, 0}, {"rediss://", 1, 0}, {"unix://", 0, 1}, {"redis+unix://", 0, 1},
    };
    memset(out, 0, sizeof *out);
    out->port = 6379;
    out->tls_opts.verify = 1;
    size_t which = sizeof schemes / sizeof schemes[0];
    for (size_t i = 0; url && i < sizeof schemes / sizeof schemes[0]; i++)
        if (strncmp(url, schemes[i].scheme, strlen(schemes[i].scheme)) == 0) which = i;
    if (which == sizeof schemes / sizeof schemes[0]) {
        snprintf(err, errlen, "URL must start with redis://, rediss://, unix:// or redis+unix://");
        return STX_EINVAL;
    }
    const char *p = url + strlen(schemes[which].scheme);
    out->tls = schemes[which].tls;
    if (schemes[which].unix_socket) return parse_unix(p, out, err, errlen);
    const char *end = p + strlen(p);
    const char *slash = memchr(p, '/', (size_t)(end - p));
    if (parse_auth(&p, slash ? slash : end, out, err, errlen) != 0) return STX_EINVAL;
    const char *host_end = slash ? slash : end;
    /* redis://h1:7000,h2:7001: the first node is the URL's address, the
     * others are further cluster seeds. */
    const char *comma = memchr(p, ',', (size_t)(host_end - p));
    if (comma && stx_url_parse_nodes(comma + 1, (size_t)(host_end - comma - 1), out->seeds,
                                     sizeof out->seeds, err, errlen) != STX_OK)
        return STX_EINVAL;
    if (parse_hostport(p, comma ? comma : host_end, out->host, sizeof out->host, &out->port,
                       err, errlen) != 0)
        return STX_EINVAL;
    long v;
    if (slash && slash + 1 < end) {
        if (parse_uint(slash + 1, (size_t)(end - slash - 1), 1000000, &v) != 0) {
            snprintf(err, errlen, "URL database must be a number");
            return STX_EINVAL;
        }
        out->db = (int)v;
    }
    return STX_OK;
}

void stx_url_where(const stx_url *u, char *buf, size_t cap)
{
    if (u->path[0]) snprintf(buf, cap, "unix:%s", u->path);
    else if (strchr(u->host, ':')) snprintf(buf, cap, "[%s]:%d", u->host, u->port);
    else snprintf(buf, cap, "%s:%d", u->host, u->port);
}
