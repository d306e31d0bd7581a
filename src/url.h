/* Where a Redis node is and how to reach it: parsing of redis://,
 * rediss://, unix:// and redis+unix:// URLs, plus the TLS settings that go
 * with the address (set through the configuration keys tls_*). */
#ifndef STX_URL_H
#define STX_URL_H

#include <stddef.h>

/* TLS settings of a connection; empty strings are unset. */
typedef struct stx_tls_opts {
    char ca_file[1024];         /* PEM bundle of trusted CAs; "" with ca_dir "": system store */
    char ca_dir[1024];          /* OpenSSL hashed CA directory */
    char cert_file[1024];       /* client certificate chain (PEM) */
    char key_file[1024];        /* its private key (PEM) */
    char server_name[256];      /* SNI and the name checked; "": the URL's host */
    int verify;                 /* 1 (default): check the chain and the host name */
} stx_tls_opts;

typedef struct stx_url {
    char host[256];
    int port;
    int db;
    char user[256];
    char password[512];
    char path[108];             /* Unix socket path (sun_path size); "" for TCP */
    int tls;                    /* 1: TLS (rediss://, or the tls key) */
    stx_tls_opts tls_opts;
    /* Redis Cluster: further seed nodes, "host:port[,host:port...]", from
     * the URL (redis://h1:7000,h2:7001) and from the cluster_nodes key. */
    char seeds[1024];
    char nodes[1024];
    int cluster;                /* STX_CLUSTER_AUTO (default), _ON or _OFF */
} stx_url;

/* url.cluster: AUTO detects a cluster with one CLUSTER INFO at connect. */
enum { STX_CLUSTER_AUTO = 0, STX_CLUSTER_ON = 1, STX_CLUSTER_OFF = 2 };

/* Parse url into *out (defaults: port 6379, db 0, no user or password, TLS
 * off except for rediss://, tls_opts.verify 1).  Accepted forms:
 *   redis://[[user]:password@]host[:port][,host[:port]...][/db]
 *   rediss://... (the same, with TLS)
 *   unix://[[user]:password@]/path/to/redis.sock[?db=N]
 *   redis+unix://... (the same as unix://)
 * Percent-escapes in user and password are decoded; an IPv6 host is written
 * in brackets.  STX_OK or STX_EINVAL with the reason in err. */
int stx_url_parse(const char *url, stx_url *out, char *err, size_t errlen);

/* Check a list "host[:port][,host[:port]...]" (cluster seeds) and copy it
 * into out (cap bytes), ports made explicit (6379 when absent).  STX_OK or
 * STX_EINVAL with the reason in err. */
int stx_url_parse_nodes(const char *list, size_t len, char *out, size_t cap, char *err,
                        size_t errlen);

/* "host:port" or "unix:PATH" for messages. */
void stx_url_where(const stx_url *u, char *buf, size_t cap);

#endif
