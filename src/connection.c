/* The session: one connection to one Redis node.
 *
 * Why the socket is ours and hiredis is only the codec.  Debian's hiredis
 * 0.14 has no TLS, no Unix-socket options beyond the path, no allocation
 * bounds (it aborts when malloc fails, and an "*N" header makes it allocate
 * N pointers at once) and timeouts only as SO_RCVTIMEO/SO_SNDTIMEO.  Newer
 * hiredis has hiredis_ssl, but not on the systems we ship to.  So this file
 * owns the stream:
 *   - TCP (getaddrinfo, non-blocking connect bounded by connect_timeout_ms)
 *     or a Unix domain socket;
 *   - TLS with OpenSSL 3 through memory BIOs: OpenSSL only encrypts and
 *     decrypts, every byte goes through our send()/recv() with poll(), so
 *     the same timeouts hold for TLS and plain streams, and send() uses
 *     MSG_NOSIGNAL (a peer gone away is STX_ECONN, never SIGPIPE);
 *   - hiredis as the RESP codec only: redisFormatCommandArgv() builds a
 *     command, a redisReader parses replies into the usual redisReply
 *     objects (which the rest of the library already walks).
 * Between the socket and the reader sits a gate that reads the RESP headers
 * of incoming bytes first (see "Bounded replies").
 *
 * State: closed (ctx NULL) or open (ctx set).  Any I/O failure, timeout,
 * protocol error or bound exceeded closes the session: a stream that lost
 * its place in the RESP conversation is never reused (as hiredis says of a
 * context after an error).  There is no global state: OpenSSL 3 initialises
 * itself, each open builds its own SSL_CTX, so one process may hold
 * sessions to many nodes (the cluster layer puts one per node).
 *
 * Timeouts are as hiredis had them: each wait for the socket (to send, to
 * read) may last command_timeout_ms (or what stx_conn_set_timeout() set);
 * connecting, including the TLS handshake, must finish within
 * connect_timeout_ms.  A command timeout gives STX_ETIMEOUT, a broken
 * stream STX_ECONN, both closing the session. */
#include "connection.h"
#include "reply.h"

#include <errno.h>
#include <fcntl.h>
#include <netdb.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <poll.h>
#include <stdarg.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <arpa/inet.h>
#include <time.h>
#include <unistd.h>

#include <openssl/err.h>
#include <openssl/ssl.h>
#include <openssl/x509v3.h>

#include "cluster.h"
#include "streamtx.h"

/* ------------------------------------------------------------------ */
/* Bounded replies
 *
 * hiredis 0.14 allocates what a header announces: "*2147483647\r\n" is a
 * 16 GiB pointer array before one element arrived, and it calls abort()
 * when malloc fails.  So every byte read from the server passes this gate
 * before the reader sees it.  The gate follows the RESP framing (type byte,
 * header line, bulk payload, array nesting) without building anything, and
 * adds up, for the reply being read, an estimate of what the reader will
 * allocate: GATE_OBJ bytes per element, plus each bulk string's length,
 * plus 8 bytes per announced array slot, plus status/error/integer line
 * lengths.  A header that would take the sum over max_reply_bytes is
 * refused before it is fed, so the reader never allocates for it; the
 * session closes with STX_EREDIS and a message naming the header.  The sum
 * starts again at each complete top-level reply (pipelined replies are
 * bounded one by one).  The default bound (STX_CONN_MAX_REPLY_BYTES, 1 GiB)
 * is above any reply the library asks for (batches are cut by
 * max_batch_bytes, a string value is at most 512 MiB in Redis), so only a
 * broken or hostile server meets it. */

#define GATE_OBJ 64         /* a redisReply (48 bytes) and its malloc overhead */
#define GATE_DEPTH 16       /* hiredis itself refuses nesting deeper than 7 */

enum { G_TYPE, G_LINE, G_BULK };
enum { GATE_BOUND = -1, GATE_PROTOCOL = -2 };

typedef struct gate {
    int state;
    char type;
    int neg, digits, bad;
    unsigned long long num;
    unsigned long long bulk_left;
    long long remaining[GATE_DEPTH]; /* elements still to come at each level */
    int depth;
    unsigned long long cost;
    unsigned long long max;
    unsigned long long seen;         /* bytes seen on this connection */
} gate;

/* One element finished: count it off its arrays; a finished top-level
 * reply resets the estimate. */
static void gate_element_done(gate *g)
{
    while (g->depth > 0) {
        if (--g->remaining[g->depth - 1] > 0) return;
        g->depth--;
    }
    g->cost = 0;
}

/* what names the element for the message: "an element", "a status or
 * error line", or NULL for the header just read (g->type, g->num), which is
 * described only when refused: formatting it for every header would cost
 * more than parsing the reply. */
static int gate_add(gate *g, unsigned long long n, char *why, size_t cap, const char *what)
{
    if (n > g->max || g->cost > g->max - n) {
        char header[64];
        if (!what) {
            snprintf(header, sizeof header, "%s of %llu",
                     g->type == '$' ? "a bulk string" : "an array", g->num);
            what = header;
        }
        snprintf(why, cap,
                 "reply refused: %s would take the reply over its bound of %llu bytes "
                 "(broken or hostile server?)",
                 what, g->max);
        return -1;
    }
    g->cost += n;
    return 0;
}

/* 0; GATE_BOUND (over the bound) or GATE_PROTOCOL (not RESP) with the
 * reason in why: then the bytes must not reach the reader. */
static int gate_feed(gate *g, const unsigned char *p, size_t n, char *why, size_t cap)
{
    for (size_t i = 0; i < n; i++, g->seen++) {
        unsigned char ch = p[i];
        switch (g->state) {
        case G_TYPE:
            if (ch != '+' && ch != '-' && ch != ':' && ch != '$' && ch != '*') {
                if (g->seen == 0 && (ch == 0x15 || ch == 0x16))
                    snprintf(why, cap, "the server answered with TLS: this port speaks TLS "
                                       "(use rediss:// or set tls to 1)");
                else
                    snprintf(why, cap, "protocol error: byte 0x%02x where a reply type was "
                                       "expected (not a Redis server?)", ch);
                return GATE_PROTOCOL;
            }
            g->type = (char)ch;
            g->state = G_LINE;
            g->neg = g->digits = g->bad = 0;
            g->num = 0;
            if (gate_add(g, GATE_OBJ, why, cap, "an element") != 0) return -1;
            break;
        case G_LINE:
            if (g->type == '$' || g->type == '*') {
                if (ch == '\r') break;
                if (ch == '\n') {
                    if (g->bad || g->digits == 0) {
                            snprintf(why, cap, "protocol error: malformed %c length", g->type);
                        return GATE_PROTOCOL;
                    }
                    g->state = G_TYPE;
                    if (g->neg || g->num == 0) { /* nil or empty */
                        if (g->type == '$' && !g->neg) {
                            g->state = G_BULK;
                            g->bulk_left = 2;
                        } else {
                            gate_element_done(g);
                        }
                        break;
                    }
                    if (g->type == '$') {
                        if (gate_add(g, g->num + 1, why, cap, NULL) != 0) return -1;
                        g->state = G_BULK;
                        g->bulk_left = g->num + 2;
                    } else {
                        /* num <= 10^18, so num * 8 cannot overflow */
                        if (gate_add(g, g->num * 8, why, cap, NULL) != 0) return -1;
                        if (g->depth == GATE_DEPTH) {
                            snprintf(why, cap, "reply refused: arrays nested deeper than %d",
                                     GATE_DEPTH);
                            return GATE_BOUND;
                        }
                        g->remaining[g->depth++] = (long long)g->num;
                    }
                    break;
                }
                if (ch == '-' && g->digits == 0 && !g->neg) g->neg = 1;
                else if (ch >= '0' && ch <= '9' && g->digits < 18) {
                    g->num = g->num * 10 + (unsigned)(ch - '0');
                    g->digits++;
                } else g->bad = 1;
                break;
            }
            /* +, -, ': a line of text, counted up to its '\n' at once */
            {
                const unsigned char *nl = memchr(p + i, '\n', n - i);
                size_t text = nl ? (size_t)(nl - (p + i)) : n - i;
                if (text && gate_add(g, text, why, cap, "a status or error line") != 0)
                    return -1;
                if (!nl) {
                    i += text - 1;
                    g->seen += text - 1;
                    break;
                }
                i += text;
                g->seen += text;
                g->state = G_TYPE;
                gate_element_done(g);
            }
            break;
        case G_BULK: {
            size_t take = n - i;
            if (take > g->bulk_left) take = (size_t)g->bulk_left;
            g->bulk_left -= take;
            i += take - 1;
            g->seen += take - 1;
            if (g->bulk_left == 0) {
                g->state = G_TYPE;
                gate_element_done(g);
            }
            break;
        }
        }
    }
    return 0;
}

/* ------------------------------------------------------------------ */
/* the session                                                         */

struct stx_session {
    int fd;
    SSL_CTX *ssl_ctx;
    SSL *ssl;
    BIO *rbio, *wbio;           /* owned by ssl: network bytes in and out */
    redisReader *reader;
    stx_reply_builder builder;  /* the reader's objects: reply.h */
    char *out;                  /* commands appended, not yet sent */
    size_t out_len, out_cap;
    long timeout_ms;
    gate gate;
    int replies;                /* replies read: 0 means the server never answered */
    char where[300];
};

static int64_t now_ms(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

/* 1 ready, 0 timed out, -1 error (errno). */
static int wait_fd(int fd, short events, long timeout_ms)
{
    struct pollfd pfd = {fd, events, 0};
    for (;;) {
        int64_t start = now_ms();
        int n = poll(&pfd, 1, timeout_ms > INT32_MAX ? INT32_MAX : (int)timeout_ms);
        if (n > 0) return 1;
        if (n == 0) return 0;
        if (errno != EINTR) return -1;
        timeout_ms -= (long)(now_ms() - start);
        if (timeout_ms < 0) timeout_ms = 0;
    }
}

static long left_of(int64_t deadline)
{
    int64_t left = deadline - now_ms();
    return left > 0 ? (long)left : 0;
}

static void session_free(stx_session *s)
{
    if (!s) return;
    if (s->ssl) SSL_free(s->ssl); /* frees the BIOs */
    if (s->ssl_ctx) SSL_CTX_free(s->ssl_ctx);
    if (s->fd >= 0) close(s->fd);
    if (s->reader) redisReaderFree(s->reader);
    free(s->out);
    free(s);
}

void stx_conn_init(stx_conn *c, const stx_url *url, long connect_timeout_ms,
                   long command_timeout_ms)
{
    memset(c, 0, sizeof *c);
    c->url = *url;
    c->connect_timeout_ms = connect_timeout_ms;
    c->command_timeout_ms = command_timeout_ms;
    c->max_reply_bytes = STX_CONN_MAX_REPLY_BYTES;
}

void stx_conn_close(stx_conn *c)
{
    if (c->cluster) {
        stx_cluster_close(c);
        return;
    }
    session_free(c->ctx);
    c->ctx = NULL;
}

/* Fail with code and a message; closes the session (a stream that failed
 * is not reused). */
static int fail_close(stx_conn *c, int code, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));
static int fail_close(stx_conn *c, int code, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(c->err, sizeof c->err, fmt, ap);
    va_end(ap);
    stx_conn_close(c);
    return code;
}

/* The OpenSSL error queue as text (emptied). */
static void ssl_errors(char *buf, size_t cap)
{
    unsigned long e;
    size_t o = 0;
    buf[0] = '\0';
    while ((e = ERR_get_error()) != 0) {
        const char *r = ERR_reason_error_string(e);
        char code[32];
        if (!r) {
            snprintf(code, sizeof code, "error %lx", e);
            r = code;
        }
        if (o < cap) o += (size_t)snprintf(buf + o, cap - o, "%s%s", o ? "; " : "", r);
    }
    if (!buf[0]) snprintf(buf, cap, "unknown TLS error");
}

/* ------------------------------------------------------------------ */
/* bytes in and out                                                    */

enum { IO_OK = 1, IO_EOF = 0, IO_ERR = -1, IO_TIMEOUT = -2, IO_TLS = -3 };

/* Send all of buf on the socket. */
static int send_all(stx_session *s, const char *buf, size_t len, long timeout_ms)
{
    while (len) {
        ssize_t n = send(s->fd, buf, len, MSG_NOSIGNAL);
        if (n > 0) {
            buf += n;
            len -= (size_t)n;
            continue;
        }
        if (n < 0 && errno == EINTR) continue;
        if (n < 0 && (errno == EAGAIN || errno == EWOULDBLOCK)) {
            int w = wait_fd(s->fd, POLLOUT, timeout_ms);
            if (w == 0) return IO_TIMEOUT;
            if (w < 0) return IO_ERR;
            continue;
        }
        return IO_ERR;
    }
    return IO_OK;
}

/* Receive some bytes from the socket into buf. */
static int recv_some(stx_session *s, char *buf, size_t cap, size_t *got, long timeout_ms)
{
    for (;;) {
        ssize_t n = recv(s->fd, buf, cap, 0);
        if (n > 0) {
            *got = (size_t)n;
            return IO_OK;
        }
        if (n == 0) return IO_EOF;
        if (errno == EINTR) continue;
        if (errno == EAGAIN || errno == EWOULDBLOCK) {
            int w = wait_fd(s->fd, POLLIN, timeout_ms);
            if (w == 0) return IO_TIMEOUT;
            if (w < 0) return IO_ERR;
            continue;
        }
        return IO_ERR;
    }
}

/* Send what TLS has written into its outgoing memory BIO. */
static int tls_flush(stx_session *s, long timeout_ms)
{
    char buf[16384];
    int n;
    while ((n = BIO_read(s->wbio, buf, sizeof buf)) > 0) {
        int rc = send_all(s, buf, (size_t)n, timeout_ms);
        if (rc != IO_OK) return rc;
    }
    return IO_OK;
}

/* Move bytes from the socket into TLS's incoming memory BIO. */
static int tls_pull(stx_session *s, long timeout_ms)
{
    char buf[16384];
    size_t got;
    int rc = recv_some(s, buf, sizeof buf, &got, timeout_ms);
    if (rc != IO_OK) return rc;
    return BIO_write(s->rbio, buf, (int)got) == (int)got ? IO_OK : IO_TLS;
}

static int io_write(stx_session *s, const char *buf, size_t len, long timeout_ms)
{
    if (!s->ssl) return send_all(s, buf, len, timeout_ms);
    while (len) {
        int chunk = len > (1u << 20) ? 1 << 20 : (int)len;
        int n = SSL_write(s->ssl, buf, chunk);
        if (n <= 0) return IO_TLS;
        int rc = tls_flush(s, timeout_ms);
        if (rc != IO_OK) return rc;
        buf += n;
        len -= (size_t)n;
    }
    return IO_OK;
}

static int io_read(stx_session *s, char *buf, size_t cap, size_t *got, long timeout_ms)
{
    if (!s->ssl) return recv_some(s, buf, cap, got, timeout_ms);
    for (;;) {
        ERR_clear_error();
        int n = SSL_read(s->ssl, buf, (int)cap);
        if (n > 0) {
            *got = (size_t)n;
            return IO_OK;
        }
        int e = SSL_get_error(s->ssl, n);
        if (e == SSL_ERROR_ZERO_RETURN) return IO_EOF;
        if (e != SSL_ERROR_WANT_READ && e != SSL_ERROR_WANT_WRITE) {
            if (e == SSL_ERROR_SYSCALL && ERR_peek_error() == 0) return IO_EOF;
            return IO_TLS;
        }
        int rc = tls_flush(s, timeout_ms); /* e.g. a key update to answer */
        if (rc != IO_OK) return rc;
        if (e == SSL_ERROR_WANT_READ && (rc = tls_pull(s, timeout_ms)) != IO_OK) return rc;
    }
}

/* ------------------------------------------------------------------ */
/* connecting                                                          */

static int set_nonblocking(int fd)
{
    int fl = fcntl(fd, F_GETFL);
    return fl < 0 || fcntl(fd, F_SETFL, fl | O_NONBLOCK) < 0 ? -1 : 0;
}

/* connect() a non-blocking socket within the deadline: 0 or errno. */
static int connect_fd(int fd, const struct sockaddr *sa, socklen_t len, int64_t deadline)
{
    if (connect(fd, sa, len) == 0) return 0;
    if (errno != EINPROGRESS && errno != EAGAIN && errno != EINTR) return errno;
    int w = wait_fd(fd, POLLOUT, left_of(deadline));
    if (w == 0) return ETIMEDOUT;
    if (w < 0) return errno;
    int err = 0;
    socklen_t elen = sizeof err;
    if (getsockopt(fd, SOL_SOCKET, SO_ERROR, &err, &elen) != 0) return errno;
    return err;
}

static int open_socket(stx_conn *c, stx_session *s, int64_t deadline)
{
    if (c->url.path[0]) {
        struct sockaddr_un sa;
        memset(&sa, 0, sizeof sa);
        sa.sun_family = AF_UNIX;
        snprintf(sa.sun_path, sizeof sa.sun_path, "%s", c->url.path);
        s->fd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
        if (s->fd < 0 || set_nonblocking(s->fd) != 0)
            return fail_close(c, STX_ECONN, "cannot connect to %s: %s", s->where, strerror(errno));
        int err = connect_fd(s->fd, (struct sockaddr *)&sa, sizeof sa, deadline);
        if (err)
            return fail_close(c, STX_ECONN, "cannot connect to %s: %s", s->where,
                              err == ETIMEDOUT ? "connect timed out" : strerror(err));
        return STX_OK;
    }
    char port[16];
    snprintf(port, sizeof port, "%d", c->url.port);
    struct addrinfo hints, *res = NULL;
    memset(&hints, 0, sizeof hints);
    hints.ai_family = AF_UNSPEC;
    hints.ai_socktype = SOCK_STREAM;
    int g = getaddrinfo(c->url.host, port, &hints, &res);
    if (g != 0)
        return fail_close(c, STX_ECONN, "cannot connect to %s: cannot resolve '%s': %s",
                          s->where, c->url.host, gai_strerror(g));
    int err = 0;
    for (struct addrinfo *a = res; a; a = a->ai_next) {
        s->fd = socket(a->ai_family, a->ai_socktype | SOCK_CLOEXEC, a->ai_protocol);
        if (s->fd < 0 || set_nonblocking(s->fd) != 0) {
            err = errno;
        } else if ((err = connect_fd(s->fd, a->ai_addr, a->ai_addrlen, deadline)) == 0) {
            break;
        }
        if (s->fd >= 0) close(s->fd);
        s->fd = -1;
        if (err == ETIMEDOUT) break;
    }
    freeaddrinfo(res);
    if (s->fd < 0)
        return fail_close(c, STX_ECONN, "cannot connect to %s: %s", s->where,
                          err == ETIMEDOUT ? "connect timed out" : strerror(err));
    int one = 1;
    setsockopt(s->fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
    return STX_OK;
}

static int is_ip_literal(const char *name)
{
    unsigned char buf[sizeof(struct in6_addr)];
    return inet_pton(AF_INET, name, buf) == 1 || inet_pton(AF_INET6, name, buf) == 1;
}

/* SSL_CTX and SSL for the session, from c->url.tls_opts. */
static int tls_setup(stx_conn *c, stx_session *s, const char *name)
{
    const stx_tls_opts *o = &c->url.tls_opts;
    char why[512];
    ERR_clear_error();
    s->ssl_ctx = SSL_CTX_new(TLS_client_method());
    if (!s->ssl_ctx) return fail_close(c, STX_ENOMEM, "%s: cannot create a TLS context", s->where);
    SSL_CTX_set_min_proto_version(s->ssl_ctx, TLS1_2_VERSION);
    /* OpenSSL's text for a missing file is "no such file; system lib". */
    const struct {
        const char *key, *path;
    } files[] = {{"tls_ca_file", o->ca_file}, {"tls_ca_dir", o->ca_dir},
                 {"tls_cert_file", o->cert_file}, {"tls_key_file", o->key_file}};
    for (size_t i = 0; i < sizeof files / sizeof files[0]; i++)
        if (files[i].path[0] && access(files[i].path, R_OK) != 0)
            return fail_close(c, STX_ETLS, "TLS: cannot read %s '%.400s': %s", files[i].key,
                              files[i].path, strerror(errno));
    if (o->verify) {
        SSL_CTX_set_verify(s->ssl_ctx, SSL_VERIFY_PEER, NULL);
        int ok = o->ca_file[0] || o->ca_dir[0]
                     ? SSL_CTX_load_verify_locations(s->ssl_ctx, o->ca_file[0] ? o->ca_file : NULL,
                                                     o->ca_dir[0] ? o->ca_dir : NULL)
                     : SSL_CTX_set_default_verify_paths(s->ssl_ctx);
        if (ok != 1) {
            ssl_errors(why, sizeof why);
            return fail_close(c, STX_ETLS, "TLS: cannot load the CA certificates (tls_ca_file "
                              "'%.300s', tls_ca_dir '%.300s'): %s", o->ca_file, o->ca_dir, why);
        }
    } else {
        SSL_CTX_set_verify(s->ssl_ctx, SSL_VERIFY_NONE, NULL);
    }
    if (!o->cert_file[0] != !o->key_file[0])
        return fail_close(c, STX_ETLS, "TLS: tls_cert_file and tls_key_file go together: "
                          "set both or neither");
    if (o->cert_file[0]) {
        if (SSL_CTX_use_certificate_chain_file(s->ssl_ctx, o->cert_file) != 1) {
            ssl_errors(why, sizeof why);
            return fail_close(c, STX_ETLS, "TLS: cannot load tls_cert_file '%.400s': %s",
                              o->cert_file, why);
        }
        if (SSL_CTX_use_PrivateKey_file(s->ssl_ctx, o->key_file, SSL_FILETYPE_PEM) != 1 ||
            SSL_CTX_check_private_key(s->ssl_ctx) != 1) {
            ssl_errors(why, sizeof why);
            return fail_close(c, STX_ETLS, "TLS: cannot use tls_key_file '%.400s': %s",
                              o->key_file, why);
        }
    }
    s->ssl = SSL_new(s->ssl_ctx);
    s->rbio = BIO_new(BIO_s_mem());
    s->wbio = BIO_new(BIO_s_mem());
    if (!s->ssl || !s->rbio || !s->wbio) {
        BIO_free(s->rbio);
        BIO_free(s->wbio);
        s->rbio = s->wbio = NULL;
        return fail_close(c, STX_ENOMEM, "%s: out of memory", s->where);
    }
    SSL_set_bio(s->ssl, s->rbio, s->wbio);
    SSL_set_connect_state(s->ssl);
    int ip = is_ip_literal(name);
    /* SNI carries host names only (RFC 6066), never addresses. */
    if (!ip && SSL_set_tlsext_host_name(s->ssl, name) != 1)
        return fail_close(c, STX_ETLS, "TLS: server name '%.200s' refused", name);
    if (o->verify) {
        X509_VERIFY_PARAM *param = SSL_get0_param(s->ssl);
        X509_VERIFY_PARAM_set_hostflags(param, X509_CHECK_FLAG_NO_PARTIAL_WILDCARDS);
        int ok = ip ? X509_VERIFY_PARAM_set1_ip_asc(param, name)
                    : X509_VERIFY_PARAM_set1_host(param, name, 0);
        if (ok != 1)
            return fail_close(c, STX_ETLS, "TLS: cannot check the server name '%.200s'", name);
    }
    return STX_OK;
}

/* A hint for a TLS failure text, or "". */
static const char *tls_hint(const char *why)
{
    if (strstr(why, "wrong version number") || strstr(why, "packet length too long") ||
        strstr(why, "record layer failure") || strstr(why, "unknown protocol"))
        return " (the server does not speak TLS on this port? use redis:// for a plain port)";
    if (strstr(why, "certificate required") ||
        (strstr(why, "handshake failure") && strstr(why, "alert")))
        return " (the server requires a client certificate: set tls_cert_file and tls_key_file)";
    return "";
}

static int tls_handshake(stx_conn *c, stx_session *s, const char *name, int64_t deadline)
{
    for (;;) {
        ERR_clear_error();
        int n = SSL_connect(s->ssl);
        int e = n == 1 ? SSL_ERROR_NONE : SSL_get_error(s->ssl, n);
        int rc = tls_flush(s, left_of(deadline));
        if (rc == IO_TIMEOUT)
            return fail_close(c, STX_ECONN, "TLS handshake with %s timed out after %ld ms",
                              s->where, c->connect_timeout_ms);
        if (rc != IO_OK)
            return fail_close(c, STX_ECONN, "TLS handshake with %s: %s", s->where,
                              strerror(errno));
        if (e == SSL_ERROR_NONE) return STX_OK;
        if (e == SSL_ERROR_WANT_READ) {
            rc = tls_pull(s, left_of(deadline));
            if (rc == IO_OK) continue;
            if (rc == IO_TIMEOUT)
                return fail_close(c, STX_ECONN,
                                  "TLS handshake with %s timed out after %ld ms: no TLS answer "
                                  "(a plain, non-TLS port? use redis://)",
                                  s->where, c->connect_timeout_ms);
            return fail_close(c, STX_ECONN,
                              "TLS handshake with %s: %s (the server closed the connection; "
                              "a plain, non-TLS port? use redis://)",
                              s->where, rc == IO_EOF ? "connection closed" : strerror(errno));
        }
        if (e == SSL_ERROR_WANT_WRITE) continue;
        long vr = SSL_get_verify_result(s->ssl);
        char why[512];
        ssl_errors(why, sizeof why);
        if (vr != X509_V_OK) {
            int unknown_ca = vr == X509_V_ERR_UNABLE_TO_GET_ISSUER_CERT_LOCALLY ||
                             vr == X509_V_ERR_SELF_SIGNED_CERT_IN_CHAIN ||
                             vr == X509_V_ERR_DEPTH_ZERO_SELF_SIGNED_CERT ||
                             vr == X509_V_ERR_UNABLE_TO_GET_ISSUER_CERT;
            return fail_close(c, STX_ETLS,
                              "TLS certificate verification of %s failed: %s%s (checked name "
                              "'%.200s'; tls_ca_file '%.200s')",
                              s->where, X509_verify_cert_error_string(vr),
                              unknown_ca ? ": unknown CA, not in tls_ca_file/tls_ca_dir" : "",
                              name, c->url.tls_opts.ca_file);
        }
        return fail_close(c, STX_ETLS, "TLS handshake with %s failed: %s%s", s->where, why,
                          tls_hint(why));
    }
}

/* ------------------------------------------------------------------ */
/* commands and replies                                                */

/* Error replies by their first word.  The ones Redis gives for a command
 * it did not run for now (a write refused, a dataset still loading, a
 * script holding the server, a blocking read cancelled) are
 * STX_EREDIS_REFUSED, which is retriable: nothing was done, the same
 * command may succeed later.  why, when set, goes before Redis's own text
 * in the message: Redis's wording for these does not say what to do. */
static const struct reply_kind {
    const char *prefix;
    int code;
    const char *why;
} reply_kinds[] = {
    {"NOSCRIPT", STX_ENOTFOUND, NULL},
    {"NOGROUP", STX_ENOGROUP, NULL},
    {"WRONGTYPE", STX_EWRONGTYPE, NULL},
    {"NOAUTH", STX_EAUTH, NULL},
    {"WRONGPASS", STX_EAUTH, NULL},
    {"NOPERM", STX_EAUTH, NULL},
    {"OOM", STX_EREDIS_REFUSED, NULL},
    {"MISCONF", STX_EREDIS_REFUSED, NULL},
    {"READONLY", STX_EREDIS_REFUSED, NULL},
    {"NOREPLICAS", STX_EREDIS_REFUSED, "not enough replicas accept writes; retry later"},
    {"LOADING", STX_EREDIS_REFUSED, "Redis is loading its dataset; retry later"},
    {"BUSY", STX_EREDIS_REFUSED, "Redis is busy running a script or function; retry later"},
    {"MASTERDOWN", STX_EREDIS_REFUSED,
     "the replica lost its master and serves no stale data; retry later"},
    {"UNBLOCKED", STX_EREDIS_REFUSED,
     "a blocking read was cancelled (CLIENT UNBLOCK, FLUSHALL or a deleted stream, a role "
     "change); retry"},
};

static const struct reply_kind *reply_kind_of(const char *text)
{
    for (size_t i = 0; i < sizeof reply_kinds / sizeof reply_kinds[0]; i++) {
        size_t n = strlen(reply_kinds[i].prefix);
        if (strncmp(text, reply_kinds[i].prefix, n) == 0 && (text[n] == ' ' || text[n] == '\0'))
            return &reply_kinds[i];
    }
    return NULL;
}

int stx_conn_reply_code(const char *text)
{
    const struct reply_kind *k = text ? reply_kind_of(text) : NULL;
    return k ? k->code : STX_EREDIS;
}

static int check_reply(stx_conn *c, const redisReply *r)
{
    if (r->type != REDIS_REPLY_ERROR) return STX_OK;
    const char *text = r->str ? r->str : "error reply";
    const struct reply_kind *k = reply_kind_of(text);
    if (k && k->why) snprintf(c->err, sizeof c->err, "%s (%.900s)", k->why, text);
    else snprintf(c->err, sizeof c->err, "%s", text);
    return k ? k->code : STX_EREDIS;
}

/* Failure of a send or receive: the code and message, session closed. */
static int io_failure(stx_conn *c, int io, const char *doing)
{
    stx_session *s = c->ctx;
    if (io == IO_TIMEOUT)
        return fail_close(c, STX_ETIMEOUT, "%s: no answer within %ld ms while %s", s->where,
                          s->timeout_ms, doing);
    if (io == IO_TLS) {
        char why[512];
        ssl_errors(why, sizeof why);
        return fail_close(c, STX_ETLS, "%s: TLS failure while %s: %s%s", s->where, doing, why,
                          tls_hint(why));
    }
    /* Before the first reply, a hang-up has a likely cause worth naming. */
    const char *hint = s->replies > 0 ? ""
                       : s->ssl ? " (right after the TLS handshake: did the server refuse our "
                                  "client certificate? set tls_cert_file and tls_key_file)"
                                : " (before any reply: a TLS-only port? use rediss://)";
    if (io == IO_EOF)
        return fail_close(c, STX_ECONN, "%s: connection closed by the server while %s%s",
                          s->where, doing, hint);
    int err = errno;
    return fail_close(c, STX_ECONN, "%s: connection lost while %s: %s%s", s->where, doing,
                      strerror(err), err == ECONNRESET || err == EPIPE ? hint : "");
}

static int flush_out(stx_conn *c)
{
    stx_session *s = c->ctx;
    if (!s->out_len) return STX_OK;
    int io = io_write(s, s->out, s->out_len, s->timeout_ms);
    s->out_len = 0;
    if (io == IO_ERR && s->ssl && (errno == ECONNRESET || errno == EPIPE)) {
        /* A TLS server that refuses us says why in an alert before it
         * hangs up (TLS 1.3 refuses a client certificate only after the
         * handshake): read what arrived, to report the alert. */
        int err = errno;
        char buf[4096];
        size_t got;
        if (io_read(s, buf, sizeof buf, &got, 0) == IO_TLS) io = IO_TLS;
        errno = err;
    }
    return io == IO_OK ? STX_OK : io_failure(c, io, "sending");
}

/* Decimal digits of v into p (no terminator); returns the count. */
static size_t put_decimal(char *p, size_t v)
{
    char tmp[24];
    size_t n = 0;
    do {
        tmp[n++] = (char)('0' + v % 10);
        v /= 10;
    } while (v);
    for (size_t i = 0; i < n; i++) p[i] = tmp[n - 1 - i];
    return n;
}

static size_t decimal_len(size_t v)
{
    size_t n = 1;
    while (v >= 10) {
        v /= 10;
        n++;
    }
    return n;
}

/* The command is written in RESP straight into the output buffer: going
 * through redisFormatCommandArgv would allocate, sprintf each length and
 * copy the whole command once more. */
int stx_conn_append(stx_conn *c, int argc, const char **argv, const size_t *lens)
{
    if (c->cluster) return stx_cluster_append(c, argc, argv, lens);
    if (!c->ctx) {
        snprintf(c->err, sizeof c->err, "not connected");
        return STX_ECONN;
    }
    stx_session *s = c->ctx;
    if (argc <= 0) {
        snprintf(c->err, sizeof c->err, "empty command");
        return STX_EINVAL;
    }
    size_t need = 1 + decimal_len((size_t)argc) + 2;
    for (int i = 0; i < argc; i++) {
        size_t len = lens ? lens[i] : strlen(argv[i]);
        size_t one = 1 + decimal_len(len) + 2 + 2;
        if (len > SIZE_MAX - one || need > SIZE_MAX - one - len)
            return fail_close(c, STX_ENOMEM, "%s: out of memory", s->where);
        need += one + len;
    }
    if (need > s->out_cap - s->out_len) {
        size_t cap = s->out_cap ? s->out_cap : 4096;
        while (cap - s->out_len < need) {
            if (cap > SIZE_MAX / 2) return fail_close(c, STX_ENOMEM, "%s: out of memory", s->where);
            cap *= 2;
        }
        char *out = realloc(s->out, cap);
        if (!out) return fail_close(c, STX_ENOMEM, "%s: out of memory", s->where);
        s->out = out;
        s->out_cap = cap;
    }
    char *w = s->out + s->out_len;
    *w++ = '*';
    w += put_decimal(w, (size_t)argc);
    *w++ = '\r';
    *w++ = '\n';
    for (int i = 0; i < argc; i++) {
        size_t len = lens ? lens[i] : strlen(argv[i]);
        *w++ = '$';
        w += put_decimal(w, len);
        *w++ = '\r';
        *w++ = '\n';
        if (len) memcpy(w, argv[i], len);
        w += len;
        *w++ = '\r';
        *w++ = '\n';
    }
    s->out_len = (size_t)(w - s->out);
    return STX_OK;
}

/* Read the next reply; an error reply is turned into a code unless
 * errors_are_replies. */
static int read_reply(stx_conn *c, redisReply **reply, int errors_are_replies)
{
    *reply = NULL;
    if (!c->ctx) {
        snprintf(c->err, sizeof c->err, "not connected");
        return STX_ECONN;
    }
    stx_session *s = c->ctx;
    int rc = flush_out(c);
    if (rc != STX_OK) return rc;
    char buf[16384];
    for (;;) {
        void *r = NULL;
        if (redisReaderGetReply(s->reader, &r) != REDIS_OK)
            return fail_close(c, STX_ECONN, "%s: %s", s->where, s->reader->errstr);
        if (r) {
            s->replies++;
            rc = errors_are_replies ? STX_OK : check_reply(c, r);
            if (rc != STX_OK) {
                stx_reply_release(r);
                return rc;
            }
            *reply = r;
            return STX_OK;
        }
        size_t got = 0;
        int io = io_read(s, buf, sizeof buf, &got, s->timeout_ms);
        if (io != IO_OK) return io_failure(c, io, "reading a reply");
        char why[300];
        s->gate.max = c->max_reply_bytes;
        int g = gate_feed(&s->gate, (const unsigned char *)buf, got, why, sizeof why);
        if (g != 0)
            return fail_close(c, g == GATE_PROTOCOL ? STX_ECONN : STX_EREDIS, "%s: %s", s->where,
                              why);
        if (redisReaderFeed(s->reader, buf, got) != REDIS_OK)
            return fail_close(c, STX_ENOMEM, "%s: out of memory", s->where);
    }
}

int stx_conn_flush(stx_conn *c)
{
    if (c->cluster) return STX_OK;
    if (!c->ctx) {
        snprintf(c->err, sizeof c->err, "not connected");
        return STX_ECONN;
    }
    return flush_out(c);
}

int stx_conn_read(stx_conn *c, redisReply **reply)
{
    if (c->cluster) return stx_cluster_read(c, reply);
    return read_reply(c, reply, 0);
}

int stx_conn_read_raw(stx_conn *c, redisReply **reply)
{
    return read_reply(c, reply, 1);
}

int stx_conn_check_reply(stx_conn *c, const redisReply *reply)
{
    return check_reply(c, reply);
}

int stx_conn_command(stx_conn *c, redisReply **reply, int argc, const char **argv,
                     const size_t *lens)
{
    *reply = NULL;
    if (c->cluster) return stx_cluster_command(c, reply, argc, argv, lens, 0);
    int rc = stx_conn_append(c, argc, argv, lens);
    return rc == STX_OK ? read_reply(c, reply, 0) : rc;
}

int stx_conn_command_raw(stx_conn *c, redisReply **reply, int argc, const char **argv,
                         const size_t *lens)
{
    *reply = NULL;
    if (c->cluster) return stx_cluster_command(c, reply, argc, argv, lens, 1);
    int rc = stx_conn_append(c, argc, argv, lens);
    return rc == STX_OK ? read_reply(c, reply, 1) : rc;
}

void stx_conn_set_timeout(stx_conn *c, long timeout_ms)
{
    if (c->cluster) {
        stx_cluster_set_timeout(c, timeout_ms);
        return;
    }
    if (c->ctx) c->ctx->timeout_ms = timeout_ms;
}

char *stx_conn_client_name(const char *name)
{
    char *out = strdup(name);
    for (char *c = out; c && *c; c++)
        if ((unsigned char)*c < 0x21 || (unsigned char)*c > 0x7e) *c = '_';
    return out;
}

static int simple(stx_conn *c, int argc, const char **argv)
{
    redisReply *r;
    int rc = stx_conn_command(c, &r, argc, argv, NULL);
    if (r) stx_reply_release(r);
    return rc;
}

/* A setup command failed: keep its code when the connection broke, else
 * give refused_code, with prefix before the reason. */
static int setup_failed(stx_conn *c, int rc, int refused_code, const char *prefix)
{
    char why[sizeof c->err];
    memcpy(why, c->err, sizeof why);
    snprintf(c->err, sizeof c->err, "%.200s: %.700s", prefix, why);
    stx_conn_close(c);
    return rc == STX_ECONN || rc == STX_ETIMEOUT || rc == STX_ETLS || rc == STX_ENOMEM
               ? rc
               : refused_code;
}

int stx_conn_open(stx_conn *c)
{
    if (c->url.cluster != STX_CLUSTER_OFF) return stx_cluster_open(c);
    return stx_conn_open_node(c);
}

int stx_conn_open_node(stx_conn *c)
{
    stx_conn_close(c);
    stx_session *s = calloc(1, sizeof *s);
    if (!s) {
        snprintf(c->err, sizeof c->err, "out of memory");
        return STX_ENOMEM;
    }
    s->fd = -1;
    s->timeout_ms = c->command_timeout_ms;
    stx_url_where(&c->url, s->where, sizeof s->where);
    c->ctx = s;
    stx_reply_builder_init(&s->builder);
    s->reader = redisReaderCreateWithFunctions(&s->builder.fn);
    if (!s->reader) return fail_close(c, STX_ENOMEM, "%s: out of memory", s->where);
    /* hiredis frees an emptied input buffer larger than maxbuf (16 KiB) and
     * grows a new one on the next feed: with 16 KiB reads that is a free,
     * a malloc and a copy per read.  Keep up to 1 MiB between replies. */
    s->reader->maxbuf = 1024 * 1024;
    s->reader->privdata = &s->builder;
    if (c->url.tls && c->url.path[0])
        return fail_close(c, STX_EINVAL, "%s: TLS over a Unix socket is not supported", s->where);
    int64_t deadline = now_ms() + c->connect_timeout_ms;
    int rc = open_socket(c, s, deadline);
    if (rc != STX_OK) return rc;
    if (c->url.tls) {
        const char *name = c->url.tls_opts.server_name[0] ? c->url.tls_opts.server_name
                                                          : c->url.host;
        if ((rc = tls_setup(c, s, name)) != STX_OK) return rc;
        if ((rc = tls_handshake(c, s, name, deadline)) != STX_OK) return rc;
    }
    int sent = 0;
    if (c->url.password[0]) {
        const char *auth[] = {"AUTH", c->url.user, c->url.password};
        if (c->url.user[0]) rc = simple(c, 3, auth);
        else {
            auth[1] = c->url.password;
            rc = simple(c, 2, auth);
        }
        if (rc != STX_OK) {
            char prefix[400];
            snprintf(prefix, sizeof prefix, "AUTH refused by %s", s->where);
            return setup_failed(c, rc, STX_EAUTH, prefix);
        }
        sent = 1;
    }
    if (c->name && *c->name) {
        /* Named, so operators (and tests) can find and kill it. */
        char *name = stx_conn_client_name(c->name);
        if (!name) return fail_close(c, STX_ENOMEM, "out of memory");
        const char *setname[] = {"CLIENT", "SETNAME", name};
        rc = simple(c, 3, setname);
        free(name);
        if (rc != STX_OK) {
            stx_conn_close(c);
            return rc;
        }
        sent = 1;
    }
    if (c->url.db) {
        char db[16];
        snprintf(db, sizeof db, "%d", c->url.db);
        const char *sel[] = {"SELECT", db};
        rc = simple(c, 2, sel);
        if (rc != STX_OK) {
            char prefix[64];
            snprintf(prefix, sizeof prefix, "SELECT %d refused", c->url.db);
            return setup_failed(c, rc, STX_EAUTH, prefix);
        }
        sent = 1;
    }
    if (!sent) {
        /* One round trip proves the other end speaks RESP (and, over TLS,
         * accepted us: TLS 1.3 refuses a client certificate only after the
         * client's handshake is done), so an open that succeeds means a
         * usable session and a wrong port fails here, clearly. */
        const char *ping[] = {"PING"};
        rc = simple(c, 1, ping);
        /* Any reply will do, an error one too (-LOADING, -NOAUTH): the
         * server speaks RESP; the command that follows meets the error as
         * it would have without this PING. */
        if (!c->ctx) return rc;
    }
    return STX_OK;
}
