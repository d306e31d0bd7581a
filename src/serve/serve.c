/* stx serve: the HTTP gateway.
 *
 * Why libwebsockets (Debian's libwebsockets-dev 4.1): one event loop
 * serves plain HTTP, Server-Sent Events and WebSocket, with TLS, and
 * exposes the one call that is safe from another thread
 * (lws_cancel_service()) that the per-stream Redis readers need to wake
 * it.  libmicrohttpd 0.9.75 serves HTTP and long responses well but has no
 * WebSocket in Debian's build, so WebSocket would have needed a second
 * server or a hand-written upgrade path.
 *
 * Threads: the library stays free of them.  This program runs the event
 * loop in the main thread, which answers requests with its own
 * stx_client (blocking calls: Redis on a local network answers in well
 * under a millisecond, and a request waits for it anyway), and one reader
 * thread per stream with live clients (live.c), each with a client of its
 * own.  The loop and the readers share only each stream's ring, under its
 * mutex. */
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "serve.h"

static const char serve_help[] =
    "usage: stx serve [--listen ADDR:PORT] [OPTIONS]\n"
    "\n"
    "Serve streams over HTTP: produce with Idempotency-Key, read history, follow\n"
    "a stream live over Server-Sent Events or WebSocket (resuming after the last\n"
    "entry received), inspect streams, groups and dead letters, /health,\n"
    "/metrics (Prometheus) and a web console at /.  See README \"Gateway\".\n"
    "Redis is the one the global options name (--url, its TLS and auth options).\n"
    "\n"
    "A partitioned stream (see stx create) is served by its name: each\n"
    "POSTed event goes to the partition of its \"key\" (crc32 % P) and\n"
    "a request must fit in one partition (422 batch_spans_partitions); history is\n"
    "merged by id (or ?partition=i); live clients and dead-letter routes name\n"
    "one partition (?partition=i, required), with that partition's ids.\n"
    "\n"
    "Options:\n"
    "  --listen ADDR:PORT   address to listen on (default 127.0.0.1:8080;\n"
    "                       [::1]:8080 for IPv6; port 0: any free port); without\n"
    "                       --token-file only loopback addresses are accepted\n"
    "  --tls-cert FILE      serve HTTPS with this certificate (PEM)\n"
    "  --tls-key FILE       the certificate's private key (PEM)\n"
    "  --token-file FILE    bearer tokens: lines 'sha256:HEX SCOPES' (read,\n"
    "                       produce, admin); every route but / and /health then\n"
    "                       needs a token\n"
    "  --cors ORIGINS       comma-separated origins allowed by CORS ('*': any);\n"
    "                       default: CORS off\n"
    "  --max-body BYTES     largest request body (default 1048576): 413 beyond\n"
    "  --max-batch N        most events in one POST (default 1000): 413 beyond\n"
    "  --max-clients N      most live clients, SSE and WebSocket together\n"
    "                       (default 1000): 503 beyond\n"
    "  --send-buffer N      entries a live client may fall behind the newest\n"
    "                       before it is disconnected as too slow (default 10000)\n"
    "  --heartbeat-ms MS    idle live connections get a heartbeat this often\n"
    "                       (default 15000)\n"
    "  --block-ms MS        how long a stream's reader waits in one XREAD BLOCK\n"
    "                       (default 1000)\n"
    "  --dedup-ttl-ms MS    how long an Idempotency-Key is remembered\n"
    "                       (default 86400000: 24 h)\n"
    "The first line on stdout is 'listening on http[s]://ADDR:PORT'.  SIGINT or\n"
    "SIGTERM stops the server.\n";

static volatile sig_atomic_t stopping;
static struct lws_context *signal_ctx;

static void on_signal(int sig)
{
    (void)sig;
    stopping = 1;
    if (signal_ctx) lws_cancel_service(signal_ctx);
}

static int parse_listen(const char *s, char *host, size_t cap, int *port)
{
    const char *colon;
    if (s[0] == '[') {
        const char *close = strchr(s, ']');
        if (!close || close[1] != ':') return -1;
        if ((size_t)(close - s - 1) >= cap) return -1;
        memcpy(host, s + 1, (size_t)(close - s - 1));
        host[close - s - 1] = '\0';
        colon = close + 1;
    } else {
        colon = strrchr(s, ':');
        if (!colon || (size_t)(colon - s) >= cap) return -1;
        memcpy(host, s, (size_t)(colon - s));
        host[colon - s] = '\0';
    }
    char *end;
    long p = strtol(colon + 1, &end, 10);
    if (!colon[1] || *end || p < 0 || p > 65535 || !host[0]) return -1;
    *port = (int)p;
    return 0;
}

static int is_loopback(const char *host)
{
    return strncmp(host, "127.", 4) == 0 || strcmp(host, "::1") == 0 ||
           strcmp(host, "localhost") == 0;
}

static const struct lws_protocols protocols[] = {
    {"stx", serve_callback, sizeof(session), 0, 0, NULL, 0},
    {NULL, NULL, 0, 0, 0, NULL, 0},
};

int cmd_serve(cli *c, int argc, char **argv)
{
    cli_opt opts[] = {
        {"--listen", 1, NULL},     {"--tls-cert", 1, NULL},     {"--tls-key", 1, NULL},
        {"--token-file", 1, NULL}, {"--cors", 1, NULL},         {"--max-body", 1, NULL},
        {"--max-batch", 1, NULL},  {"--max-clients", 1, NULL},  {"--send-buffer", 1, NULL},
        {"--heartbeat-ms", 1, NULL}, {"--block-ms", 1, NULL},   {"--dedup-ttl-ms", 1, NULL},
    };
    enum { O_LISTEN, O_CERT, O_KEY, O_TOKENS, O_CORS, O_BODY, O_BATCH, O_CLIENTS, O_SENDBUF,
           O_HB, O_BLOCK, O_TTL, O_N };
    int npos, rc;
    if ((rc = cli_parse(c, argc, argv, opts, O_N, 0, 0, &npos, serve_help)) != 0) return rc;
    server *srv = calloc(1, sizeof *srv);
    if (!srv) return cli_fail(c, CLI_EXIT_RUNTIME, "out of memory");
    srv->cli = c;
    serve_opts *o = &srv->o;
    const char *listen = opts[O_LISTEN].value ? opts[O_LISTEN].value : "127.0.0.1:8080";
    if (parse_listen(listen, o->host, sizeof o->host, &o->port) != 0) {
        free(srv);
        return cli_fail(c, CLI_EXIT_USAGE, "--listen: expected ADDR:PORT or [IPV6]:PORT, not '%s'",
                        listen);
    }
    o->tls_cert = opts[O_CERT].value;
    o->tls_key = opts[O_KEY].value;
    o->token_file = opts[O_TOKENS].value;
    o->cors = opts[O_CORS].value;
    o->max_body = 1048576;
    o->max_batch = 1000;
    o->max_clients = 1000;
    o->send_buffer = 10000;
    o->heartbeat_ms = 15000;
    o->block_ms = 1000;
    o->dedup_ttl_ms = 86400000;
    struct {
        int opt;
        long long *v, min, max;
    } nums[] = {
        {O_BODY, &o->max_body, 1, 1LL << 30},      {O_BATCH, &o->max_batch, 1, 100000},
        {O_CLIENTS, &o->max_clients, 1, 1000000},  {O_SENDBUF, &o->send_buffer, 1, 10000000},
        {O_HB, &o->heartbeat_ms, 10, 3600000},     {O_BLOCK, &o->block_ms, 10, 60000},
        {O_TTL, &o->dedup_ttl_ms, 1, 1LL << 40},
    };
    for (size_t i = 0; i < sizeof nums / sizeof nums[0]; i++) {
        if (!opts[nums[i].opt].value) continue;
        if ((rc = cli_opt_ll(c, &opts[nums[i].opt], nums[i].min, nums[i].v)) != 0) {
            free(srv);
            return rc;
        }
        if (*nums[i].v > nums[i].max) {
            free(srv);
            return cli_fail(c, CLI_EXIT_USAGE, "%s: at most %lld", opts[nums[i].opt].name,
                            nums[i].max);
        }
    }
    if (!o->tls_cert != !o->tls_key) {
        free(srv);
        return cli_fail(c, CLI_EXIT_USAGE, "--tls-cert and --tls-key go together");
    }
    if (!o->token_file && !is_loopback(o->host)) {
        rc = cli_fail(c, CLI_EXIT_USAGE,
                      "refusing to listen on %s without --token-file: anyone who reaches it "
                      "could produce and redrive (loopback addresses need no token)",
                      o->host);
        free(srv);
        return rc;
    }
    char err[512];
    if (o->token_file && auth_load(srv, o->token_file, err, sizeof err) != 0) {
        free(srv->tokens);
        free(srv);
        return cli_fail(c, CLI_EXIT_USAGE, "--token-file: %s", err);
    }
    if ((rc = cli_connect(c)) != 0) {
        free(srv->tokens);
        free(srv);
        return rc;
    }
    srv->client = c->client;

    lws_set_log_level(LLL_ERR, NULL);
    struct lws_context_creation_info info;
    memset(&info, 0, sizeof info);
    info.port = o->port;
    info.iface = o->host;
    info.protocols = protocols;
    info.user = srv;
    info.vhost_name = "stx";
    info.max_http_header_data = 8192;
    info.timeout_secs = 30;
    /* HTTP/1.1 only: an SSE stream is then one plain response on its own
     * connection, with nothing of h2's stream timeouts to manage. */
    info.alpn = "http/1.1";
    if (o->tls_cert) {
        info.options |= LWS_SERVER_OPTION_DO_SSL_GLOBAL_INIT;
        info.ssl_cert_filepath = o->tls_cert;
        info.ssl_private_key_filepath = o->tls_key;
    }
    srv->ctx = lws_create_context(&info);
    if (!srv->ctx) {
        free(srv->tokens);
        free(srv);
        return cli_fail(c, CLI_EXIT_RUNTIME, "cannot listen on %s (address in use, or TLS files "
                                             "unreadable)", listen);
    }
    struct lws_vhost *vh = lws_get_vhost_by_name(srv->ctx, "stx");
    int port = vh ? lws_get_vhost_listen_port(vh) : o->port;
    if (strchr(o->host, ':'))
        printf("listening on %s://[%s]:%d\n", o->tls_cert ? "https" : "http", o->host, port);
    else
        printf("listening on %s://%s:%d\n", o->tls_cert ? "https" : "http", o->host, port);
    fflush(stdout);

    signal_ctx = srv->ctx;
    struct sigaction sa;
    memset(&sa, 0, sizeof sa);
    sa.sa_handler = on_signal;
    sigaction(SIGINT, &sa, NULL);
    sigaction(SIGTERM, &sa, NULL);
    signal(SIGPIPE, SIG_IGN);

    lws_sul_schedule(srv->ctx, 0, &srv->hb_timer, live_heartbeat, o->heartbeat_ms * 1000);
    while (!stopping)
        if (lws_service(srv->ctx, 0) < 0) break;

    live_shutdown(srv);
    signal_ctx = NULL;
    lws_context_destroy(srv->ctx);
    free(srv->tokens);
    free(srv);
    return 0;
}
