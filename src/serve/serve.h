/* stx serve: what the files of the gateway share.  One event loop
 * (libwebsockets) owns every HTTP, SSE and WebSocket connection and one
 * Redis client for requests; each stream with live clients has one reader
 * thread with a Redis client of its own (live.c). */
#ifndef STX_SERVE_H
#define STX_SERVE_H

#include <pthread.h>
#include <stddef.h>
#include <stdint.h>

#include <libwebsockets.h>

#include "cli.h"
#include "json.h"
#include "streamtx.h"

/* Routes, for metrics labels. */
typedef enum route {
    R_CONSOLE, R_HEALTH, R_METRICS, R_STREAMS, R_STREAM, R_PRODUCE, R_EVENTS, R_LIVE, R_WS,
    R_DLQ, R_REDRIVE, R_OTHER, R_NROUTES
} route;

#define SERVE_NBUCKETS 10
#define SERVE_MAX_STATUS 16

/* Scopes of a bearer token. */
enum { SCOPE_READ = 1, SCOPE_PRODUCE = 2, SCOPE_ADMIN = 4 };

typedef struct token {
    unsigned char hash[32]; /* SHA-256 of the token */
    unsigned scopes;
} token;

typedef struct serve_opts {
    char host[256];
    int port;
    const char *tls_cert, *tls_key;
    const char *token_file;
    const char *cors;               /* comma-separated origins, NULL: off */
    long long max_body;             /* bytes */
    long long max_batch;            /* events per request */
    long long max_clients;          /* live clients (SSE + WebSocket) */
    long long send_buffer;          /* entries a live client may fall behind */
    long long heartbeat_ms;
    long long block_ms;             /* reader threads' XREAD BLOCK */
    long long dedup_ttl_ms;
    const char *port_file;          /* write the bound port there (tests) */
} serve_opts;

struct live_stream;

/* Per-connection data (lws zeroes it; buffers are freed on close). */
typedef enum sess_kind { S_HTTP = 0, S_SSE, S_WS } sess_kind;

typedef struct session {
    struct lws *wsi;
    sess_kind kind;
    route rt;
    int64_t started_us;
    /* request */
    int is_post, is_options;
    char *body;
    size_t body_len;
    int body_too_big;
    char *uri;                      /* the path, decoded by lws */
    /* response */
    int status;
    const char *ctype;
    char *resp;
    size_t resp_len, resp_off;
    int headers_sent;
    int replayed;                   /* Idempotent-Replayed: true */
    int close_after;
    char allow_origin[256];
    /* live */
    struct live_stream *ls;
    struct session *next_live;      /* in ls's client list */
    char cursor[48];                /* last id sent (or the resume point) */
    int joined;                     /* reading from the stream's shared ring */
    uint64_t next_seq;              /* next ring entry to send */
    int heartbeat_due;
    int closing;                    /* send the close event/frame, then close */
    int close_code;
    char close_reason[200];
    char *pending;                  /* WebSocket frames still to send */
    size_t pending_len, pending_off;
} session;

typedef struct metrics {
    unsigned long long count[R_NROUTES][SERVE_MAX_STATUS];
    int status_code[R_NROUTES][SERVE_MAX_STATUS];
    unsigned long long bucket[R_NROUTES][SERVE_NBUCKETS];
    unsigned long long lat_count[R_NROUTES];
    double lat_sum[R_NROUTES];
    unsigned long long dropped_slow, rejected_clients;
} metrics;

typedef struct server {
    cli *cli;
    serve_opts o;
    struct lws_context *ctx;
    stx_client *client;             /* the event loop's requests */
    token *tokens;
    size_t ntokens;
    struct live_stream *streams;    /* live readers, by stream */
    size_t sse_clients, ws_clients;
    metrics m;
    lws_sorted_usec_list_t hb_timer;
    char produce_sha[41], claim_sha[41]; /* ingest.c's scripts, as Redis knows them */
    unsigned spread;                /* keyless requests to a partitioned stream go round */
    volatile int stop;
} server;

/* http.c: the protocol callback (HTTP, SSE and WebSocket). */
int serve_callback(struct lws *wsi, enum lws_callback_reasons reason, void *user, void *in,
                   size_t len);
server *serve_of(struct lws *wsi);
/* Query argument name ("after="), urldecoded, into buf: 1 when present. */
int serve_query(struct lws *wsi, const char *name, char *buf, int cap);
/* Set s's response: status, content type (static), body (taken). */
void serve_respond(session *s, int status, const char *ctype, char *body, size_t len);
/* A JSON error body {"error":code,"message":...} plus extra raw members. */
void serve_error(session *s, int status, const char *code, const char *extra_json,
                 const char *fmt, ...)
#if defined(__GNUC__)
    __attribute__((format(printf, 5, 6)))
#endif
    ;
/* The error of a library call as an HTTP status and JSON error. */
void serve_stx_error(server *srv, session *s, int rc, const char *what);
int64_t serve_now_us(void);

/* ingest.c: POST /v1/streams/{stream}/events. */
void serve_produce(server *srv, session *s, const char *stream, const char *idem_key);

/* The partition count of stream into *partitions (0: not partitioned):
 * 0, or -1 after setting s's response to the error. */
int serve_partitions(server *srv, session *s, const char *stream, unsigned *partitions);
/* ?partition=i of a stream of partitions partitions: 1 with *i, 0 when
 * absent, -1 after setting s's response to a 400. */
int serve_partition_arg(session *s, unsigned partitions, unsigned *i);

/* history.c: the read-only and admin routes. */
void serve_events(server *srv, session *s, const char *stream);
void serve_streams(server *srv, session *s);
void serve_stream_info(server *srv, session *s, const char *stream);
void serve_dlq(server *srv, session *s, const char *stream, const char *group);
void serve_redrive(server *srv, session *s, const char *stream, const char *group);
/* Parse an id "MS-SEQ" or "MS" (as MS-0... MS-max with is_end) into ms, seq. */
int serve_parse_id(const char *s, uint64_t *ms, uint64_t *seq);
int serve_id_cmp(const char *a, const char *b);
/* Write an entry as JSON {"id":..,"fields":{..}}. */
void serve_entry_json(jw *w, const stx_msg *m);

/* live.c: SSE and WebSocket clients, one reader thread per stream. */
/* backlog > 0 without last_id: start with the backlog newest entries. */
int live_open(server *srv, session *s, const char *stream, const char *last_id, long backlog);
void live_writable(server *srv, session *s);
void live_close(server *srv, session *s);
void live_wakeup(server *srv);      /* readers have news (EVENT_WAIT_CANCELLED) */
void live_heartbeat(lws_sorted_usec_list_t *sul);
void live_shutdown(server *srv);
size_t live_reader_count(const server *srv);

/* metrics.c: /health and /metrics. */
void serve_health(server *srv, session *s);
void serve_metrics(server *srv, session *s);
void metrics_record(server *srv, route rt, int status, double seconds);

/* console.c: the web console. */
void serve_console(server *srv, session *s, const char *path);

/* auth.c: bearer tokens. */
int auth_load(server *srv, const char *file, char *err, size_t errlen);
/* 0 when allowed; else the status (401/403) after setting the response. */
int auth_check(server *srv, session *s, unsigned need);

#endif
