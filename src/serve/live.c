/* Live clients (SSE and WebSocket) and the one reader per stream.
 *
 * Each stream with live clients has one reader thread with its own Redis
 * client, blocked in XREAD (stx_tail) after the last id it has seen: Redis
 * sees one blocking reader per stream however many clients watch it.  The
 * reader appends what it reads, rendered once as JSON, to the stream's
 * ring (a window of the latest send_buffer entries, contiguous after
 * base_id) and wakes the event loop (lws_cancel_service(), the one lws call
 * that is safe from another thread); the loop then asks every client of
 * the stream for a write.
 *
 * A client keeps its own position: the id of the last entry it was sent
 * (cursor) and, once it has joined the ring, the ring sequence of the next
 * entry.  A client that resumes from an id older than base_id reads the
 * history with stx_read_range() from its cursor first, page by page, and
 * joins the ring once its cursor reaches base_id: it then starts at the
 * first ring entry after its cursor (entries the reader pushes later that
 * the history page already held are skipped by id), so nothing is sent
 * twice and nothing is skipped.  A client whose next entry has left the ring fell more than
 * send_buffer entries behind: it is disconnected with a reason, and memory
 * stays bounded by the ring and one pending page per client.
 *
 * Closing: an expired cursor gets one "window_expired" SSE event (or
 * WebSocket close code 4410) before the close; a slow client gets
 * "too_slow" (4413); a reader that cannot continue (entries it had not read
 * yet were trimmed) closes its clients with "window_expired" too. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "serve.h"

#define PAGE_ENTRIES 200
#define PAGE_BYTES (64 * 1024)
#define WS_CLOSE_EXPIRED 4410
#define WS_CLOSE_SLOW 4413
#define WS_CLOSE_ERROR 1011

typedef struct ring_entry {
    char id[48];
    char *json;
    size_t len;
} ring_entry;

typedef struct live_stream {
    server *srv;
    char *name;
    pthread_t thread;
    pthread_mutex_t mu;
    /* under mu */
    ring_entry *ring;
    size_t cap;
    uint64_t first_seq, next_seq;
    char base_id[48];
    int stop, finished, broken;
    char err[256];
    /* event loop only */
    session *clients;
    size_t nclients;
    struct live_stream *next;
} live_stream;

static void sleep_ms(long ms)
{
    struct timespec ts = {ms / 1000, (ms % 1000) * 1000000L};
    nanosleep(&ts, NULL);
}

static void *reader_main(void *arg)
{
    live_stream *ls = arg;
    server *srv = ls->srv;
    stx_client *c = NULL;
    char cursor[48], err[300];
    pthread_mutex_lock(&ls->mu);
    memcpy(cursor, ls->base_id, sizeof cursor);
    pthread_mutex_unlock(&ls->mu);
    for (;;) {
        pthread_mutex_lock(&ls->mu);
        int stop = ls->stop;
        pthread_mutex_unlock(&ls->mu);
        if (stop) break;
        if (!c) {
            if (cli_client_open(srv->cli, &c, err, sizeof err) != STX_OK) {
                stx_client_free(c);
                c = NULL;
                pthread_mutex_lock(&ls->mu);
                snprintf(ls->err, sizeof ls->err, "%.200s", err);
                pthread_mutex_unlock(&ls->mu);
                sleep_ms(200);
                continue;
            }
        }
        stx_entries *e = NULL;
        int rc = stx_tail(c, ls->name, cursor, (long)srv->o.block_ms, PAGE_ENTRIES, &e);
        if (rc == STX_EWINDOW_EXPIRED) {
            pthread_mutex_lock(&ls->mu);
            ls->broken = 1;
            snprintf(ls->err, sizeof ls->err, "%s", stx_client_errmsg(c));
            pthread_mutex_unlock(&ls->mu);
            stx_entries_free(e);
            break;
        }
        if (rc != STX_OK) {
            pthread_mutex_lock(&ls->mu);
            snprintf(ls->err, sizeof ls->err, "%s", stx_client_errmsg(c));
            pthread_mutex_unlock(&ls->mu);
            stx_entries_free(e);
            sleep_ms(200); /* the client reconnects on its next call */
            continue;
        }
        size_t n = stx_entries_count(e);
        if (n == 0) {
            stx_entries_free(e);
            continue;
        }
        ring_entry *fresh = calloc(n, sizeof *fresh);
        for (size_t i = 0; fresh && i < n; i++) {
            const stx_msg *m = stx_entries_at(e, i);
            jw w;
            jw_init(&w);
            serve_entry_json(&w, m);
            snprintf(fresh[i].id, sizeof fresh[i].id, "%s", stx_msg_id(m));
            fresh[i].len = w.b.len;
            fresh[i].json = jb_take(&w.b);
            jw_free(&w);
        }
        if (!fresh) {
            stx_entries_free(e);
            sleep_ms(100); /* out of memory: read the same page again */
            continue;
        }
        snprintf(cursor, sizeof cursor, "%s", stx_entries_last_id(e));
        stx_entries_free(e);
        pthread_mutex_lock(&ls->mu);
        ls->err[0] = '\0';
        for (size_t i = 0; i < n; i++) {
            if (ls->next_seq - ls->first_seq == ls->cap) {
                ring_entry *old = &ls->ring[ls->first_seq % ls->cap];
                memcpy(ls->base_id, old->id, sizeof ls->base_id);
                free(old->json);
                ls->first_seq++;
            }
            ls->ring[ls->next_seq % ls->cap] = fresh[i];
            ls->next_seq++;
        }
        pthread_mutex_unlock(&ls->mu);
        free(fresh);
        lws_cancel_service(srv->ctx);
    }
    stx_client_free(c);
    pthread_mutex_lock(&ls->mu);
    ls->finished = 1;
    pthread_mutex_unlock(&ls->mu);
    lws_cancel_service(srv->ctx);
    return NULL;
}

static void stream_free(live_stream *ls)
{
    for (uint64_t q = ls->first_seq; q < ls->next_seq; q++) free(ls->ring[q % ls->cap].json);
    free(ls->ring);
    free(ls->name);
    pthread_mutex_destroy(&ls->mu);
    free(ls);
}

/* The last id of the stream now ("0-0" when empty or absent). */
static int stream_last_id(server *srv, const char *stream, char *out, size_t cap)
{
    const char *argv[] = {"XREVRANGE", stream, "+", "-", "COUNT", "1"};
    stx_reply *r = NULL;
    int rc = stx_client_call(srv->client, 6, argv, NULL, &r);
    if (rc != STX_OK) return rc;
    if (stx_reply_type_of(r) == STX_REPLY_ERROR) {
        stx_reply_free(r);
        return STX_EWRONGTYPE;
    }
    const char *id = stx_reply_string(stx_reply_at(stx_reply_at(r, 0), 0), NULL);
    snprintf(out, cap, "%s", id ? id : "0-0");
    stx_reply_free(r);
    return STX_OK;
}

static live_stream *stream_get(server *srv, const char *name, int *rc)
{
    for (live_stream *ls = srv->streams; ls; ls = ls->next) {
        pthread_mutex_lock(&ls->mu);
        int gone = ls->stop || ls->finished;
        pthread_mutex_unlock(&ls->mu);
        if (!gone && strcmp(ls->name, name) == 0) return ls;
    }
    live_stream *ls = calloc(1, sizeof *ls);
    if (!ls) {
        *rc = STX_ENOMEM;
        return NULL;
    }
    ls->srv = srv;
    ls->cap = (size_t)srv->o.send_buffer;
    ls->name = strdup(name);
    ls->ring = calloc(ls->cap, sizeof *ls->ring);
    pthread_mutex_init(&ls->mu, NULL);
    if (!ls->name || !ls->ring) {
        stream_free(ls);
        *rc = STX_ENOMEM;
        return NULL;
    }
    if ((*rc = stream_last_id(srv, name, ls->base_id, sizeof ls->base_id)) != STX_OK) {
        stream_free(ls);
        return NULL;
    }
    if (pthread_create(&ls->thread, NULL, reader_main, ls) != 0) {
        stream_free(ls);
        *rc = STX_ENOMEM;
        return NULL;
    }
    ls->next = srv->streams;
    srv->streams = ls;
    return ls;
}

size_t live_reader_count(const server *srv)
{
    size_t n = 0;
    for (live_stream *ls = srv->streams; ls; ls = ls->next) n++;
    return n;
}

static int sse_headers(server *srv, session *s)
{
    unsigned char buf[LWS_PRE + 2048], *start = buf + LWS_PRE, *p = start, *end = buf + sizeof buf - 1;
    if (lws_add_http_common_headers(s->wsi, 200, "text/event-stream", LWS_ILLEGAL_HTTP_CONTENT_LEN, &p,
                                    end) ||
        lws_add_http_header_by_name(s->wsi, (const unsigned char *)"cache-control:",
                                    (const unsigned char *)"no-store", 8, &p, end) ||
        lws_add_http_header_by_name(s->wsi, (const unsigned char *)"x-accel-buffering:",
                                    (const unsigned char *)"no", 2, &p, end))
        return -1;
    if (s->allow_origin[0] &&
        lws_add_http_header_by_name(s->wsi, (const unsigned char *)"access-control-allow-origin:",
                                    (const unsigned char *)s->allow_origin,
                                    (int)strlen(s->allow_origin), &p, end))
        return -1;
    if (lws_finalize_write_http_header(s->wsi, start, &p, end)) return -1;
    (void)srv;
    return 0;
}

/* The cursor just before the backlog-th newest entry: 1 when there is one. */
static int backlog_cursor(server *srv, const char *stream, long backlog, char *out, size_t cap)
{
    char count[24];
    snprintf(count, sizeof count, "%ld", backlog);
    const char *argv[] = {"XREVRANGE", stream, "+", "-", "COUNT", count};
    stx_reply *r = NULL;
    if (stx_client_call(srv->client, 6, argv, NULL, &r) != STX_OK) return 0;
    size_t n = stx_reply_count(r);
    const char *oldest = n ? stx_reply_string(stx_reply_at(stx_reply_at(r, n - 1), 0), NULL) : NULL;
    uint64_t ms, seq;
    int ok = oldest && serve_parse_id(oldest, &ms, &seq) == 0 && (ms || seq);
    if (ok) {
        if (seq) seq--;
        else ms--, seq = UINT64_MAX;
        snprintf(out, cap, "%llu-%llu", (unsigned long long)ms, (unsigned long long)seq);
    }
    stx_reply_free(r);
    return ok;
}

int live_open(server *srv, session *s, const char *stream, const char *last_id, long backlog)
{
    uint64_t ms, seq;
    if (last_id && serve_parse_id(last_id, &ms, &seq) != 0) {
        serve_error(s, 400, "bad_cursor", NULL,
                    "Last-Event-ID / last_event_id is an entry id (MS-SEQ), not '%.60s'", last_id);
        return -1;
    }
    if ((long long)(srv->sse_clients + srv->ws_clients) >= srv->o.max_clients) {
        srv->m.rejected_clients++;
        serve_error(s, 503, "too_many_clients", NULL, "the server has %lld live clients already",
                    srv->o.max_clients);
        return -1;
    }
    int rc = STX_OK;
    live_stream *ls = stream_get(srv, stream, &rc);
    if (!ls) {
        serve_stx_error(srv, s, rc, "live");
        return -1;
    }
    if (s->kind != S_WS) {
        s->kind = S_SSE;
        if (sse_headers(srv, s) != 0) {
            if (ls->nclients == 0) { /* a reader started for nobody */
                pthread_mutex_lock(&ls->mu);
                ls->stop = 1;
                pthread_mutex_unlock(&ls->mu);
            }
            return -1;
        }
        metrics_record(srv, R_LIVE, 200, (double)(serve_now_us() - s->started_us) / 1e6);
        srv->sse_clients++;
    } else {
        srv->ws_clients++;
    }
    s->ls = ls;
    s->next_live = ls->clients;
    ls->clients = s;
    ls->nclients++;
    if (last_id) {
        snprintf(s->cursor, sizeof s->cursor, "%llu-%llu", (unsigned long long)ms,
                 (unsigned long long)seq);
        s->joined = 0;
    } else if (backlog > 0 && backlog_cursor(srv, stream, backlog, s->cursor, sizeof s->cursor)) {
        s->joined = 0;
    } else {
        pthread_mutex_lock(&ls->mu);
        s->next_seq = ls->next_seq;
        s->joined = 1;
        pthread_mutex_unlock(&ls->mu);
    }
    lws_callback_on_writable(s->wsi);
    return 0;
}

void live_close(server *srv, session *s)
{
    live_stream *ls = s->ls;
    if (!ls) return;
    for (session **pp = &ls->clients; *pp; pp = &(*pp)->next_live)
        if (*pp == s) {
            *pp = s->next_live;
            break;
        }
    ls->nclients--;
    if (s->kind == S_SSE) srv->sse_clients--;
    else srv->ws_clients--;
    s->ls = NULL;
    if (ls->nclients == 0) {
        pthread_mutex_lock(&ls->mu);
        ls->stop = 1;
        pthread_mutex_unlock(&ls->mu);
    }
}

static void set_closing(session *s, int code, const char *fmt, const char *arg)
{
    if (s->closing) return;
    s->closing = 1;
    s->close_code = code;
    snprintf(s->close_reason, sizeof s->close_reason, fmt, arg);
    lws_callback_on_writable(s->wsi);
}

/* Append one entry to the pending page in the client's framing. */
static void page_add(session *s, jbuf *b, const char *id, const char *json, size_t len)
{
    if (s->kind == S_SSE) {
        jb_printf(b, "id: %s\ndata: ", id);
        jb_put(b, json, len);
        jb_puts(b, "\n\n");
    } else {
        uint32_t l = (uint32_t)len;
        jb_put(b, &l, sizeof l);
        jb_put(b, json, len);
    }
}

static void page_set(session *s, jbuf *b)
{
    free(s->pending);
    s->pending_len = b->len;
    s->pending = jb_take(b);
    s->pending_off = 0;
}

/* One write: the next WebSocket frame, or the whole SSE page. */
static int write_unit(session *s)
{
    const char *src;
    size_t n;
    if (s->kind == S_SSE) {
        src = s->pending + s->pending_off;
        n = s->pending_len - s->pending_off;
    } else {
        uint32_t l;
        memcpy(&l, s->pending + s->pending_off, sizeof l);
        src = s->pending + s->pending_off + sizeof l;
        n = l;
    }
    unsigned char *buf = malloc(LWS_PRE + n + 1);
    if (!buf) return -1;
    memcpy(buf + LWS_PRE, src, n);
    int w = lws_write(s->wsi, buf + LWS_PRE, n, s->kind == S_SSE ? LWS_WRITE_HTTP : LWS_WRITE_TEXT);
    free(buf);
    if (w < (int)n) return -1;
    s->pending_off += s->kind == S_SSE ? n : n + sizeof(uint32_t);
    if (s->pending_off >= s->pending_len) {
        free(s->pending);
        s->pending = NULL;
        s->pending_len = s->pending_off = 0;
    }
    /* Pending frames go one per callback; a wakeup that came meanwhile
     * found the client busy, so look at the ring again either way. */
    lws_callback_on_writable(s->wsi);
    return 0;
}

static void send_close(session *s)
{
    s->closing = 2;
    if (s->kind == S_SSE) {
        const char *ev = s->close_code == WS_CLOSE_EXPIRED ? "window_expired"
                         : s->close_code == WS_CLOSE_SLOW  ? "too_slow"
                                                            : "error";
        jw w;
        jw_init(&w);
        jw_obj(&w);
        jw_key(&w, "error");
        jw_str(&w, ev);
        jw_key(&w, "message");
        jw_str(&w, s->close_reason);
        jw_obj_end(&w);
        jbuf b;
        jb_init(&b);
        jb_printf(&b, "event: %s\ndata: %s\n\n", ev, w.b.p);
        jw_free(&w);
        unsigned char *buf = malloc(LWS_PRE + b.len);
        if (buf) {
            memcpy(buf + LWS_PRE, b.p, b.len);
            lws_write(s->wsi, buf + LWS_PRE, b.len, LWS_WRITE_HTTP);
            free(buf);
        }
        jb_free(&b);
    } else {
        size_t n = strlen(s->close_reason);
        if (n > 120) n = 120;
        lws_close_reason(s->wsi, (enum lws_close_status)s->close_code, (unsigned char *)s->close_reason,
                         n);
    }
}

/* Join the ring when the cursor has reached base_id (or force: the
 * history holds nothing after the cursor).  Under ls->mu. */
static int try_join(live_stream *ls, session *s, int force)
{
    if (!force && serve_id_cmp(s->cursor, ls->base_id) < 0) return 0;
    uint64_t q = ls->first_seq;
    while (q < ls->next_seq && serve_id_cmp(ls->ring[q % ls->cap].id, s->cursor) <= 0) q++;
    s->next_seq = q;
    s->joined = 1;
    return 1;
}

void live_writable(server *srv, session *s)
{
    live_stream *ls = s->ls;
    if (s->closing == 2) return;
    if (s->pending) {
        if (write_unit(s) != 0) s->closing = 2;
        return;
    }
    if (s->closing == 1 || !ls) {
        send_close(s);
        return;
    }
    jbuf b;
    jb_init(&b);
    if (!s->joined) {
        pthread_mutex_lock(&ls->mu);
        int joined = try_join(ls, s, 0);
        pthread_mutex_unlock(&ls->mu);
        if (!joined) {
            stx_entries *e = NULL;
            int rc = stx_read_range(srv->client, ls->name, s->cursor, NULL, PAGE_ENTRIES, &e);
            if (rc == STX_EWINDOW_EXPIRED) {
                stx_stream_info *info = NULL;
                char oldest[48] = "";
                if (stx_stream_info_get(srv->client, ls->name, &info) == STX_OK)
                    snprintf(oldest, sizeof oldest, "%s", info->first_id);
                stx_stream_info_free(info);
                stx_entries_free(e);
                s->closing = 1;
                s->close_code = WS_CLOSE_EXPIRED;
                snprintf(s->close_reason, sizeof s->close_reason,
                         "window_expired: entries after %s were trimmed; oldest %s", s->cursor,
                         oldest);
                send_close(s);
                return;
            }
            if (rc != STX_OK) {
                stx_entries_free(e);
                s->closing = 1;
                s->close_code = WS_CLOSE_ERROR;
                snprintf(s->close_reason, sizeof s->close_reason, "history: %s",
                         stx_client_errmsg(srv->client));
                send_close(s);
                return;
            }
            size_t n = stx_entries_count(e);
            if (n == 0) {
                pthread_mutex_lock(&ls->mu);
                try_join(ls, s, 1);
                pthread_mutex_unlock(&ls->mu);
            } else {
                for (size_t i = 0; i < n; i++) {
                    const stx_msg *m = stx_entries_at(e, i);
                    jw w;
                    jw_init(&w);
                    serve_entry_json(&w, m);
                    page_add(s, &b, stx_msg_id(m), w.b.p, w.b.len);
                    jw_free(&w);
                }
                snprintf(s->cursor, sizeof s->cursor, "%s", stx_entries_last_id(e));
                stx_entries_free(e);
                page_set(s, &b);
                if (write_unit(s) != 0) s->closing = 2;
                lws_callback_on_writable(s->wsi); /* more history, or the ring */
                return;
            }
            stx_entries_free(e);
        }
    }
    pthread_mutex_lock(&ls->mu);
    int slow = s->next_seq < ls->first_seq;
    size_t bytes = 0;
    while (!slow && s->next_seq < ls->next_seq && bytes < PAGE_BYTES) {
        ring_entry *re = &ls->ring[s->next_seq % ls->cap];
        /* A client that joined from history may have read past what the
         * reader had pushed when it joined: those entries come through
         * the ring later and are skipped here. */
        if (serve_id_cmp(re->id, s->cursor) <= 0) {
            s->next_seq++;
            continue;
        }
        page_add(s, &b, re->id, re->json, re->len);
        memcpy(s->cursor, re->id, sizeof s->cursor);
        bytes += re->len;
        s->next_seq++;
    }
    int more = s->next_seq < ls->next_seq;
    pthread_mutex_unlock(&ls->mu);
    if (slow) {
        jb_free(&b);
        srv->m.dropped_slow++;
        s->closing = 1;
        s->close_code = WS_CLOSE_SLOW;
        snprintf(s->close_reason, sizeof s->close_reason,
                 "too_slow: fell more than %lld entries behind after %s", srv->o.send_buffer,
                 s->cursor);
        send_close(s);
        return;
    }
    if (b.len) {
        page_set(s, &b);
        if (write_unit(s) != 0) s->closing = 2;
        if (more) lws_callback_on_writable(s->wsi);
        return;
    }
    jb_free(&b);
    if (s->heartbeat_due) {
        s->heartbeat_due = 0;
        if (s->kind == S_SSE) {
            static const char hb[] = ": heartbeat\n\n";
            unsigned char buf[LWS_PRE + sizeof hb];
            memcpy(buf + LWS_PRE, hb, sizeof hb - 1);
            if (lws_write(s->wsi, buf + LWS_PRE, sizeof hb - 1, LWS_WRITE_HTTP) < (int)sizeof hb - 1)
                s->closing = 2;
        } else {
            unsigned char buf[LWS_PRE + 1];
            if (lws_write(s->wsi, buf + LWS_PRE, 0, LWS_WRITE_PING) < 0) s->closing = 2;
        }
    }
}

void live_wakeup(server *srv)
{
    for (live_stream **pp = &srv->streams; *pp;) {
        live_stream *ls = *pp;
        pthread_mutex_lock(&ls->mu);
        uint64_t first = ls->first_seq, next = ls->next_seq;
        int finished = ls->finished, broken = ls->broken;
        char err[256];
        memcpy(err, ls->err, sizeof err);
        pthread_mutex_unlock(&ls->mu);
        for (session *s = ls->clients; s; s = s->next_live) {
            if (broken) {
                set_closing(s, WS_CLOSE_EXPIRED, "window_expired: %s", err);
                continue;
            }
            if (!s->joined || s->next_seq < next) lws_callback_on_writable(s->wsi);
            if (s->joined && s->next_seq < first && !s->closing) {
                /* Behind the ring: a stalled socket may never become
                 * writable again, so it also gets a deadline. */
                lws_callback_on_writable(s->wsi);
                lws_set_timeout(s->wsi, PENDING_TIMEOUT_USER_OK, 5);
            }
        }
        if (finished && ls->nclients == 0) {
            pthread_join(ls->thread, NULL);
            *pp = ls->next;
            stream_free(ls);
            continue;
        }
        pp = &ls->next;
    }
}

void live_heartbeat(lws_sorted_usec_list_t *sul)
{
    server *srv = lws_container_of(sul, server, hb_timer);
    for (live_stream *ls = srv->streams; ls; ls = ls->next)
        for (session *s = ls->clients; s; s = s->next_live) {
            s->heartbeat_due = 1;
            lws_callback_on_writable(s->wsi);
        }
    lws_sul_schedule(srv->ctx, 0, &srv->hb_timer, live_heartbeat, srv->o.heartbeat_ms * 1000);
}

void live_shutdown(server *srv)
{
    for (live_stream *ls = srv->streams; ls; ls = ls->next) {
        pthread_mutex_lock(&ls->mu);
        ls->stop = 1;
        pthread_mutex_unlock(&ls->mu);
    }
    while (srv->streams) {
        live_stream *ls = srv->streams;
        pthread_join(ls->thread, NULL);
        /* The context is destroyed after this: its close callbacks must
         * not find the stream. */
        for (session *s = ls->clients; s; s = s->next_live) s->ls = NULL;
        srv->streams = ls->next;
        stream_free(ls);
    }
}
