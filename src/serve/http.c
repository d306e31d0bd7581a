/* The one protocol callback of the gateway: plain HTTP requests (routing,
 * request bodies, responses written when the socket is writable), and the
 * SSE and WebSocket connections that live.c feeds. */
#include <errno.h>
#include <stdarg.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "serve.h"

#define CHUNK 16384

int64_t serve_now_us(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (int64_t)ts.tv_sec * 1000000 + ts.tv_nsec / 1000;
}

int serve_query(struct lws *wsi, const char *name, char *buf, int cap)
{
    /* lws 4.1 copies each "name=value" fragment it looks at into the
     * buffer (also when none matches) and points into it. */
    char tmp[1024];
    const char *v = lws_get_urlarg_by_name(wsi, name, tmp, (int)sizeof tmp);
    if (!v || strlen(v) >= (size_t)cap) return 0;
    memmove(buf, v, strlen(v) + 1);
    return 1;
}

server *serve_of(struct lws *wsi)
{
    return lws_context_user(lws_get_context(wsi));
}

void serve_respond(session *s, int status, const char *ctype, char *body, size_t len)
{
    free(s->resp);
    s->status = status;
    s->ctype = ctype;
    s->resp = body;
    s->resp_len = body ? len : 0;
    s->resp_off = 0;
}

void serve_error(session *s, int status, const char *code, const char *extra_json,
                 const char *fmt, ...)
{
    char msg[1024];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(msg, sizeof msg, fmt, ap);
    va_end(ap);
    jw w;
    jw_init(&w);
    jw_obj(&w);
    jw_key(&w, "error");
    jw_str(&w, code);
    jw_key(&w, "message");
    jw_str(&w, msg);
    jw_obj_end(&w);
    size_t len = w.b.len;
    char *body = jb_take(&w.b);
    if (extra_json && *extra_json && len >= 2) {
        /* Splice ,extra before the closing brace. */
        size_t el = strlen(extra_json);
        char *b2 = malloc(len + el + 2);
        if (b2) {
            memcpy(b2, body, len - 1);
            b2[len - 1] = ',';
            memcpy(b2 + len, extra_json, el);
            b2[len + el] = '}';
            b2[len + el + 1] = '\0';
            free(body);
            body = b2;
            len += el + 1;
        }
    }
    jw_free(&w);
    serve_respond(s, status, "application/json", body, len);
}

void serve_stx_error(server *srv, session *s, int rc, const char *what)
{
    const char *msg = srv->client ? stx_client_errmsg(srv->client) : "";
    if (!msg || !*msg) msg = stx_strerror(rc);
    switch (rc) {
    case STX_EINVAL:
    case STX_EINVALID_CURSOR: serve_error(s, 400, "bad_request", NULL, "%s: %s", what, msg); break;
    case STX_ENOTFOUND:
    case STX_ENOGROUP: serve_error(s, 404, "not_found", NULL, "%s: %s", what, msg); break;
    case STX_EWRONGTYPE: serve_error(s, 409, "wrong_type", NULL, "%s: %s", what, msg); break;
    case STX_ECONFLICT: serve_error(s, 422, "idempotency_conflict", NULL, "%s: %s", what, msg); break;
    case STX_ELIMIT: serve_error(s, 413, "too_large", NULL, "%s: %s", what, msg); break;
    case STX_ECONN:
    case STX_ETIMEOUT:
    case STX_EREDIS_REFUSED:
        serve_error(s, 503, "unavailable", NULL, "%s: %s", what, msg);
        break;
    default: serve_error(s, 500, "internal", NULL, "%s: %s", what, msg);
    }
}

/* ------------------------------------------------------------------ */
/* routing                                                              */

/* Split the path into at most max segments (copies, NUL-terminated, in
 * buf); the number of segments, or -1 for too many or an empty one. */
static int split_path(const char *path, char *buf, size_t cap, char **seg, int max)
{
    size_t n = strlen(path);
    if (n + 1 > cap) return -1;
    memcpy(buf, path, n + 1);
    int k = 0;
    char *p = buf;
    if (*p == '/') p++;
    if (!*p) return 0;
    while (p) {
        if (k == max) return -1;
        char *slash = strchr(p, '/');
        if (slash) *slash = '\0';
        if (!*p) return -1;
        seg[k++] = p;
        p = slash ? slash + 1 : NULL;
    }
    return k;
}

/* Stream and group names: valid UTF-8 without control characters. */
/* The stream a live client or a dead-letter route works on: stream
 * itself, or for a partitioned stream the partition named by ?partition=
 * (required: ids are unique per partition only, and a merged live view
 * would need a resume cursor of one id per partition, so a client follows
 * each partition it wants, with that partition's ids).  0, or -1 after
 * setting the response (and, for WebSocket, a close reason in why). */
static int one_stream_name(server *srv, session *s, const char *stream, char *out, size_t cap,
                            char *why, size_t whycap)
{
    unsigned parts = 0, i = 0;
    int has;
    if (serve_partitions(srv, s, stream, &parts) != 0) {
        if (why) snprintf(why, whycap, "cannot read the partition count");
        return -1;
    }
    if ((has = serve_partition_arg(s, parts, &i)) < 0) {
        if (why) snprintf(why, whycap, parts ? "partition is 0 to %u" : "not a partitioned stream",
                          parts ? parts - 1 : 0);
        return -1;
    }
    if (parts == 0) {
        snprintf(out, cap, "%s", stream);
        return 0;
    }
    if (!has) {
        serve_error(s, 400, "partition_required", NULL,
                    "'%.200s' has %u partitions: name one with ?partition=0 to %u (ids are ids "
                    "of that partition)",
                    stream, parts, parts - 1);
        if (why) snprintf(why, whycap, "partition_required: add ?partition=0 to %u", parts - 1);
        return -1;
    }
    if (stx_partition_name(out, cap, stream, i) < 0) {
        serve_error(s, 400, "bad_name", NULL, "no partition name for '%.200s'", stream);
        if (why) snprintf(why, whycap, "bad stream name");
        return -1;
    }
    return 0;
}

static int name_ok(const char *s)
{
    const unsigned char *p = (const unsigned char *)s;
    size_t n = strlen(s);
    if (n == 0 || n > 1024) return 0;
    for (size_t i = 0; i < n;) {
        unsigned c = p[i];
        if (c < 0x20 || c == 0x7f) return 0;
        if (c < 0x80) {
            i++;
            continue;
        }
        size_t len = (c & 0xE0) == 0xC0 ? 2 : (c & 0xF0) == 0xE0 ? 3 : (c & 0xF8) == 0xF0 ? 4 : 0;
        if (!len || i + len > n) return 0;
        unsigned cp = c & (len == 2 ? 0x1F : len == 3 ? 0x0F : 0x07);
        for (size_t j = 1; j < len; j++) {
            if ((p[i + j] & 0xC0) != 0x80) return 0;
            cp = (cp << 6) | (p[i + j] & 0x3F);
        }
        if ((len == 2 && cp < 0x80) || (len == 3 && cp < 0x800) || (len == 4 && cp < 0x10000) ||
            cp > 0x10FFFF || (cp >= 0xD800 && cp <= 0xDFFF))
            return 0;
        i += len;
    }
    return 1;
}

static int custom_header(struct lws *wsi, const char *name, char *buf, int cap)
{
    int nl = (int)strlen(name);
    int len = lws_hdr_custom_length(wsi, name, nl);
    if (len < 0) return -1;
    if (len >= cap) return -2;
    if (lws_hdr_custom_copy(wsi, buf, cap, name, nl) < 0) return -1;
    return len;
}

static void cors_origin(server *srv, session *s)
{
    s->allow_origin[0] = '\0';
    if (!srv->o.cors) return;
    char origin[256];
    if (lws_hdr_copy(s->wsi, origin, sizeof origin, WSI_TOKEN_ORIGIN) <= 0) return;
    size_t ol = strlen(origin);
    for (const char *p = srv->o.cors; *p;) {
        const char *comma = strchr(p, ',');
        size_t n = comma ? (size_t)(comma - p) : strlen(p);
        if ((n == 1 && *p == '*') || (n == ol && memcmp(p, origin, n) == 0)) {
            memcpy(s->allow_origin, origin, ol + 1);
            return;
        }
        p += n + (comma ? 1 : 0);
    }
}

/* Route a request whose body (if any) is complete. */
static void dispatch(server *srv, session *s)
{
    char buf[4096], *seg[8];
    int n = split_path(s->uri ? s->uri : "/", buf, sizeof buf, seg, 8);
    s->rt = R_OTHER;
    if (s->is_options) {
        serve_respond(s, 204, "text/plain", NULL, 0);
        return;
    }
    if (n < 0) {
        serve_error(s, 404, "not_found", NULL, "no such route");
        return;
    }
    int get = !s->is_post;
    if (n == 0 || (n >= 1 && strcmp(seg[0], "console") == 0)) {
        s->rt = R_CONSOLE;
        if (!get) goto method;
        serve_console(srv, s, n == 0 ? "index.html" : n == 2 ? seg[1] : "");
        return;
    }
    if (n == 1 && strcmp(seg[0], "health") == 0) {
        s->rt = R_HEALTH;
        if (!get) goto method;
        serve_health(srv, s);
        return;
    }
    if (n == 1 && strcmp(seg[0], "metrics") == 0) {
        s->rt = R_METRICS;
        if (!get) goto method;
        if (auth_check(srv, s, SCOPE_READ)) return;
        serve_metrics(srv, s);
        return;
    }
    if (n < 2 || strcmp(seg[0], "v1") != 0 || strcmp(seg[1], "streams") != 0) {
        serve_error(s, 404, "not_found", NULL, "no such route");
        return;
    }
    if (n == 2) {
        s->rt = R_STREAMS;
        if (!get) goto method;
        if (auth_check(srv, s, SCOPE_READ)) return;
        serve_streams(srv, s);
        return;
    }
    const char *stream = seg[2];
    if (!name_ok(stream)) {
        serve_error(s, 400, "bad_name", NULL,
                    "a stream name is 1 to 1024 bytes of UTF-8 without control characters");
        return;
    }
    if (n == 3) {
        s->rt = R_STREAM;
        if (!get) goto method;
        if (auth_check(srv, s, SCOPE_READ)) return;
        serve_stream_info(srv, s, stream);
        return;
    }
    if (n == 4 && strcmp(seg[3], "events") == 0) {
        s->rt = get ? R_EVENTS : R_PRODUCE;
        if (get) {
            if (auth_check(srv, s, SCOPE_READ)) return;
            serve_events(srv, s, stream);
            return;
        }
        if (auth_check(srv, s, SCOPE_PRODUCE)) return;
        if (s->body_too_big) {
            serve_error(s, 413, "body_too_large", NULL, "the body is larger than %lld bytes",
                        srv->o.max_body);
            s->close_after = 1;
            return;
        }
        char key[512];
        int kl = custom_header(s->wsi, "idempotency-key:", key, sizeof key);
        if (kl == -2 || kl == 0) {
            serve_error(s, 400, "bad_idempotency_key", NULL,
                        "Idempotency-Key must be 1 to 511 bytes");
            return;
        }
        serve_produce(srv, s, stream, kl > 0 ? key : NULL);
        return;
    }
    if (n == 4 && strcmp(seg[3], "live") == 0) {
        s->rt = R_LIVE;
        if (!get) goto method;
        if (auth_check(srv, s, SCOPE_READ)) return;
        char last[64] = "";
        int ll = custom_header(s->wsi, "last-event-id:", last, sizeof last);
        if (ll == -2) {
            serve_error(s, 400, "bad_cursor", NULL, "Last-Event-ID is not an entry id");
            return;
        }
        if (ll <= 0 && !serve_query(s->wsi, "last_event_id=", last, sizeof last))
            last[0] = '\0';
        char bl[16];
        long backlog = 0;
        if (serve_query(s->wsi, "backlog=", bl, sizeof bl)) {
            char *end;
            backlog = strtol(bl, &end, 10);
            if (!bl[0] || *end || backlog < 0 || backlog > 1000) {
                serve_error(s, 400, "bad_backlog", NULL, "backlog is 0 to 1000 entries");
                return;
            }
        }
        char pname[1100];
        if (one_stream_name(srv, s, stream, pname, sizeof pname, NULL, 0) != 0) return;
        live_open(srv, s, pname, last[0] ? last : NULL, backlog);
        return;
    }
    if (n == 4 && strcmp(seg[3], "ws") == 0) {
        s->rt = R_WS;
        serve_error(s, 426, "upgrade_required", NULL,
                    "this route speaks WebSocket (Upgrade: websocket)");
        return;
    }
    if ((n == 6 || n == 7) && strcmp(seg[3], "groups") == 0 && strcmp(seg[5], "dlq") == 0) {
        const char *group = seg[4];
        if (!name_ok(group)) {
            serve_error(s, 400, "bad_name", NULL,
                        "a group name is 1 to 1024 bytes of UTF-8 without control characters");
            return;
        }
        char pname[1100];
        if (n == 6) {
            s->rt = R_DLQ;
            if (!get) goto method;
            if (auth_check(srv, s, SCOPE_READ)) return;
            if (one_stream_name(srv, s, stream, pname, sizeof pname, NULL, 0) != 0) return;
            serve_dlq(srv, s, pname, group);
            return;
        }
        if (strcmp(seg[6], "redrive") == 0) {
            s->rt = R_REDRIVE;
            if (get) goto method;
            if (auth_check(srv, s, SCOPE_ADMIN)) return;
            if (one_stream_name(srv, s, stream, pname, sizeof pname, NULL, 0) != 0) return;
            serve_redrive(srv, s, pname, group);
            return;
        }
    }
    serve_error(s, 404, "not_found", NULL, "no such route");
    return;
method:
    serve_error(s, 405, "method_not_allowed", NULL, "method not allowed on this route");
}

/* Headers, then the body in chunks, one write per writable callback. */
static int write_response(server *srv, session *s)
{
    unsigned char buf[LWS_PRE + CHUNK], *start = buf + LWS_PRE, *p = start,
                                        *end = buf + sizeof buf - 1;
    if (!s->headers_sent) {
        if (lws_add_http_common_headers(s->wsi, (unsigned)s->status, s->ctype ? s->ctype : "text/plain",
                                        s->resp_len, &p, end))
            return -1;
        if (s->replayed &&
            lws_add_http_header_by_name(s->wsi, (const unsigned char *)"idempotent-replayed:",
                                        (const unsigned char *)"true", 4, &p, end))
            return -1;
        if (s->allow_origin[0]) {
            if (lws_add_http_header_by_name(s->wsi,
                                            (const unsigned char *)"access-control-allow-origin:",
                                            (const unsigned char *)s->allow_origin,
                                            (int)strlen(s->allow_origin), &p, end) ||
                lws_add_http_header_by_name(s->wsi, (const unsigned char *)"vary:",
                                            (const unsigned char *)"Origin", 6, &p, end))
                return -1;
            if (s->is_options) {
                static const char methods[] = "GET, POST, OPTIONS";
                static const char heads[] = "Authorization, Content-Type, Idempotency-Key, Last-Event-ID";
                if (lws_add_http_header_by_name(s->wsi,
                                                (const unsigned char *)"access-control-allow-methods:",
                                                (const unsigned char *)methods, (int)strlen(methods),
                                                &p, end) ||
                    lws_add_http_header_by_name(s->wsi,
                                                (const unsigned char *)"access-control-allow-headers:",
                                                (const unsigned char *)heads, (int)strlen(heads), &p,
                                                end))
                    return -1;
            }
        }
        if (s->status == 401 &&
            lws_add_http_header_by_name(s->wsi, (const unsigned char *)"www-authenticate:",
                                        (const unsigned char *)"Bearer", 6, &p, end))
            return -1;
        if (lws_add_http_header_by_name(s->wsi, (const unsigned char *)"cache-control:",
                                        (const unsigned char *)"no-store", 8, &p, end))
            return -1;
        if (lws_finalize_write_http_header(s->wsi, start, &p, end)) return -1;
        s->headers_sent = 1;
        metrics_record(srv, s->rt, s->status, (double)(serve_now_us() - s->started_us) / 1e6);
        if (s->resp_len == 0) goto done;
        lws_callback_on_writable(s->wsi);
        return 0;
    }
    size_t left = s->resp_len - s->resp_off, n = left < CHUNK ? left : CHUNK;
    memcpy(start, s->resp + s->resp_off, n);
    s->resp_off += n;
    int final = s->resp_off == s->resp_len;
    if (lws_write(s->wsi, start, n, final ? LWS_WRITE_HTTP_FINAL : LWS_WRITE_HTTP) != (int)n)
        return -1;
    if (!final) {
        lws_callback_on_writable(s->wsi);
        return 0;
    }
done:
    if (s->close_after) return -1;
    if (lws_http_transaction_completed(s->wsi)) return -1;
    return 0;
}

static void session_reset(session *s)
{
    free(s->body);
    free(s->uri);
    free(s->resp);
    free(s->pending);
    struct lws *wsi = s->wsi;
    memset(s, 0, sizeof *s);
    s->wsi = wsi;
}

static void start_request(server *srv, session *s, struct lws *wsi)
{
    session_reset(s);
    s->wsi = wsi;
    s->started_us = serve_now_us();
    char uri[4096];
    int n;
    if ((n = lws_hdr_copy(wsi, uri, sizeof uri, WSI_TOKEN_GET_URI)) > 0) {
    } else if ((n = lws_hdr_copy(wsi, uri, sizeof uri, WSI_TOKEN_POST_URI)) > 0) {
        s->is_post = 1;
    } else if ((n = lws_hdr_copy(wsi, uri, sizeof uri, WSI_TOKEN_OPTIONS_URI)) > 0) {
        s->is_options = 1;
    } else {
        n = 0;
        uri[0] = '\0';
    }
    s->uri = strdup(uri);
    cors_origin(srv, s);
}

int serve_callback(struct lws *wsi, enum lws_callback_reasons reason, void *user, void *in,
                   size_t len)
{
    session *s = user;
    server *srv = serve_of(wsi);
    switch (reason) {
    case LWS_CALLBACK_HTTP: {
        start_request(srv, s, wsi);
        if (!s->uri[0] && !s->is_post && !s->is_options) {
            /* PUT, DELETE, PATCH, HEAD ...: lws names each token; none is ours. */
            serve_error(s, 405, "method_not_allowed", NULL, "GET, POST and OPTIONS only");
            s->close_after = 1;
            lws_callback_on_writable(wsi);
            return 0;
        }
        if (s->is_post) {
            char cl[32] = "";
            if (lws_hdr_copy(wsi, cl, sizeof cl, WSI_TOKEN_HTTP_CONTENT_LENGTH) > 0 &&
                strtoll(cl, NULL, 10) > srv->o.max_body) {
                s->body_too_big = 1;
                dispatch(srv, s);
                s->close_after = 1;
                lws_callback_on_writable(wsi);
                return 0;
            }
            /* lws calls BODY_COMPLETION only after body bytes: a POST
             * without any is complete now. */
            if (lws_hdr_total_length(wsi, WSI_TOKEN_HTTP_CONTENT_LENGTH) <= 0 ||
                strtoll(cl, NULL, 10) == 0) {
                if (lws_hdr_total_length(wsi, WSI_TOKEN_HTTP_TRANSFER_ENCODING) > 0) {
                    serve_error(s, 411, "length_required", NULL,
                                "send the body with a Content-Length");
                    s->close_after = 1;
                } else {
                    dispatch(srv, s);
                }
                lws_callback_on_writable(wsi);
            }
            return 0; /* the body comes next */
        }
        dispatch(srv, s);
        if (s->kind == S_SSE) return 0;
        lws_callback_on_writable(wsi);
        return 0;
    }
    case LWS_CALLBACK_HTTP_BODY:
        if (s->status || len == 0) return 0; /* answered already (413), or nothing */
        if (s->body_too_big || s->body_len + len > (size_t)srv->o.max_body) {
            s->body_too_big = 1;
            return 0;
        }
        {
            char *b = realloc(s->body, s->body_len + len + 1);
            if (!b) return -1;
            memcpy(b + s->body_len, in, len);
            s->body = b;
            s->body_len += len;
            b[s->body_len] = '\0';
        }
        return 0;
    case LWS_CALLBACK_HTTP_BODY_COMPLETION:
        if (s->status) return 0;
        dispatch(srv, s);
        lws_callback_on_writable(wsi);
        return 0;
    case LWS_CALLBACK_HTTP_WRITEABLE:
        if (s->kind == S_SSE) {
            live_writable(srv, s);
            return s->closing == 2 ? -1 : 0;
        }
        if (!s->status) return 0;
        return write_response(srv, s);
    case LWS_CALLBACK_CLOSED_HTTP:
    case LWS_CALLBACK_HTTP_DROP_PROTOCOL:
        /* A connection cut before its response goes without CLOSED_HTTP:
         * DROP_PROTOCOL comes before lws frees the session either way. */
        if (!s) return 0;
        if (s->ls) live_close(srv, s);
        session_reset(s);
        return 0;

    /* WebSocket */
    case LWS_CALLBACK_FILTER_PROTOCOL_CONNECTION:
        start_request(srv, s, wsi);
        s->rt = R_WS;
        if (auth_check(srv, s, SCOPE_READ)) {
            metrics_record(srv, R_WS, s->status, 0);
            session_reset(s);
            return -1;
        }
        return 0;
    case LWS_CALLBACK_ESTABLISHED: {
        char buf[4096], *seg[8], last[64];
        int n = split_path(s->uri ? s->uri : "", buf, sizeof buf, seg, 8);
        s->wsi = wsi;
        if (n != 4 || strcmp(seg[0], "v1") || strcmp(seg[1], "streams") || strcmp(seg[3], "ws") ||
            !name_ok(seg[2])) {
            lws_close_reason(wsi, LWS_CLOSE_STATUS_POLICY_VIOLATION,
                             (unsigned char *)"no such route", 13);
            metrics_record(srv, R_WS, 404, 0);
            return -1;
        }
        if (!serve_query(wsi, "last_event_id=", last, sizeof last)) last[0] = '\0';
        s->kind = S_WS;
        char bl[16];
        long backlog = serve_query(wsi, "backlog=", bl, sizeof bl) ? strtol(bl, NULL, 10) : 0;
        if (backlog < 0 || backlog > 1000) backlog = 0;
        char pname[1100], why[124] = "";
        int rc = one_stream_name(srv, s, seg[2], pname, sizeof pname, why, sizeof why);
        if (rc == 0) rc = live_open(srv, s, pname, last[0] ? last : NULL, backlog);
        metrics_record(srv, R_WS, rc == 0 ? 101 : s->status,
                       (double)(serve_now_us() - s->started_us) / 1e6);
        if (rc != 0) {
            if (!why[0])
                snprintf(why, sizeof why, "%s",
                         s->status == 503 ? "too many live clients" : "bad last_event_id");
            lws_close_reason(wsi, (enum lws_close_status)(s->status == 503 ? 1013 : 4400),
                             (unsigned char *)why, strlen(why));
            return -1;
        }
        return 0;
    }
    case LWS_CALLBACK_SERVER_WRITEABLE:
        if (s->kind != S_WS) return 0;
        live_writable(srv, s);
        return s->closing == 2 ? -1 : 0;
    case LWS_CALLBACK_RECEIVE:
        return 0; /* clients have nothing to say; pings are answered by lws */
    case LWS_CALLBACK_CLOSED:
    case LWS_CALLBACK_WS_SERVER_DROP_PROTOCOL:
        if (!s) return 0;
        if (s->ls) live_close(srv, s);
        session_reset(s);
        return 0;

    case LWS_CALLBACK_EVENT_WAIT_CANCELLED:
        live_wakeup(srv);
        return 0;
    default:
        break;
    }
    return lws_callback_http_dummy(wsi, reason, user, in, len);
}
