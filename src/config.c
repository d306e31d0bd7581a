/* Configuration as string keys and values, checked as they are set, in the
 * manner of librdkafka: unknown keys and bad values are refused at once. */
#include "config.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "keys.h"

enum kind {
    K_STRING, K_INT, K_URL, K_HOST, K_PORT, K_DB, K_USER, K_PASSWORD, K_ENUM,
    K_TLS_FLAG,         /* int field of url (tls, tls_opts.verify): 0 or 1 */
    K_TLS_PATH,         /* char[] field of url.tls_opts */
    K_NODES             /* url.nodes: cluster seeds, "host:port,..." */
};

struct key_def {
    const char *name;
    enum kind kind;
    size_t offset;      /* of the char* or long field, for K_STRING / K_INT */
    long min, max;      /* for K_INT */
    const char *const *choices; /* for K_ENUM */
};

static const char *const sync_choices[] = {"data", "full", "none", NULL};
static const char *const level_choices[] = {"debug", "info", "warn", "error", NULL};
static const char *const backoff_choices[] = {"exponential", "linear", "constant", NULL};
/* In the order of STX_CLUSTER_AUTO, _ON, _OFF (url.h). */
static const char *const cluster_choices[] = {"auto", "on", "off", NULL};
static const char *const publish_choices[] = {"direct", "outbox", NULL};

#define STR(field) K_STRING, offsetof(struct stx_config, field), 0, 0, NULL
#define INT(field, lo, hi) K_INT, offsetof(struct stx_config, field), lo, hi, NULL

static const struct key_def keys[] = {
    {"url", K_URL, 0, 0, 0, NULL},
    {"host", K_HOST, 0, 0, 0, NULL},
    {"port", K_PORT, 0, 1, 65535, NULL},
    {"db", K_DB, 0, 0, 1000000, NULL},
    {"user", K_USER, 0, 0, 0, NULL},
    {"password", K_PASSWORD, 0, 0, 0, NULL},
    /* TLS: after url, which sets tls from its scheme (rediss:// is 1). */
    {"tls", K_TLS_FLAG, offsetof(stx_url, tls), 0, 1, NULL},
    {"tls_verify", K_TLS_FLAG, offsetof(stx_url, tls_opts.verify), 0, 1, NULL},
    {"tls_ca_file", K_TLS_PATH, offsetof(stx_url, tls_opts.ca_file), 0, 0, NULL},
    {"tls_ca_dir", K_TLS_PATH, offsetof(stx_url, tls_opts.ca_dir), 0, 0, NULL},
    {"tls_cert_file", K_TLS_PATH, offsetof(stx_url, tls_opts.cert_file), 0, 0, NULL},
    {"tls_key_file", K_TLS_PATH, offsetof(stx_url, tls_opts.key_file), 0, 0, NULL},
    {"tls_server_name", K_TLS_PATH, offsetof(stx_url, tls_opts.server_name), 0, 0, NULL},
    /* Redis Cluster (cluster.c); kept when url is set again. */
    {"cluster", K_ENUM, offsetof(struct stx_config, url.cluster), 0, 0, cluster_choices},
    {"cluster_nodes", K_NODES, 0, 0, 0, NULL},
    {"stream", STR(stream)},
    {"group", STR(group)},
    {"consumer", STR(consumer)},
    {"group_start_id", STR(group_start_id)},
    {"snapshot_dir", STR(snapshot_dir)},
    {"snapshot_sync", K_ENUM, offsetof(struct stx_config, snapshot_sync), 0, 0, sync_choices},
    {"snapshot_map_size_mb", INT(snapshot_map_size_mb, 1, 1048576)},
    {"connect_timeout_ms", INT(connect_timeout_ms, 1, 3600000)},
    {"command_timeout_ms", INT(command_timeout_ms, 1, 3600000)},
    {"block_ms", INT(block_ms, 1, 3600000)},
    {"batch_size", INT(batch_size, 1, 1000)},
    {"batch_delay_ms", INT(batch_delay_ms, 0, 60000)},
    {"pipeline", INT(pipeline, 0, 1)},
    {"overlap", INT(overlap, 0, 1)},
    {"max_key_bytes", INT(max_key_bytes, 1, 512L * 1024 * 1024)},
    {"max_value_bytes", INT(max_value_bytes, 1, 512L * 1024 * 1024)},
    /* Pairs of an entry the handler is given (entries are written by
     * anyone, so this may go far).  A publish is also capped at
     * STX_MAX_PUBLISH_PAIRS (script_limits.h) whatever this says. */
    {"max_fields", INT(max_fields, 1, 1000000)},
    {"max_batch_bytes", INT(max_batch_bytes, 1024, 1L << 40)},
    {"log_level", K_ENUM, offsetof(struct stx_config, log_level), 0, 0, level_choices},
    {"max_deliveries", INT(max_deliveries, 1, 1000000)},
    {"retry_backoff", K_ENUM, offsetof(struct stx_config, retry_backoff), 0, 0, backoff_choices},
    {"retry_base_ms", INT(retry_base_ms, 0, 3600000)},
    {"retry_max_ms", INT(retry_max_ms, 0, 86400000)},
    {"handler_warn_ms", INT(handler_warn_ms, 1, 86400000)},
    {"stats_interval_ms", INT(stats_interval_ms, 0, 3600000)},
    {"client_name", STR(client_name)},
    {"commit_wait_replicas", INT(commit_wait_replicas, 0, 100)},
    {"commit_wait_timeout_ms", INT(commit_wait_timeout_ms, 1, 3600000)},
    {"state_schema_version", INT(state_schema_version, 0, 4294967295L)},
    {"lease_ttl_ms", INT(lease_ttl_ms, 300, 3600000)}, /* members (member.c) */
    /* The outbox and its relay (relay.c). */
    {"publish_mode", K_ENUM, offsetof(struct stx_config, publish_mode), 0, 0, publish_choices},
    {"relay_batch", INT(relay_batch, 1, 100000)},
    {"outbox_max", INT(outbox_max, 1, 1L << 40)},
    {"outbox_warn_ms", INT(outbox_warn_ms, 1, 86400000)},
};

static void set_defaults(struct stx_config *c)
{
    memset(c, 0, sizeof *c);
    strcpy(c->url.host, "127.0.0.1");
    c->url.port = 6379;
    c->url.tls_opts.verify = 1;
    c->snapshot_map_size_mb = 1024;
    c->connect_timeout_ms = 2000;
    c->command_timeout_ms = 5000;
    c->block_ms = 500;
    c->batch_size = 64;
    c->pipeline = 1;
    c->overlap = 1;
    c->max_key_bytes = 64 * 1024;
    c->max_value_bytes = 16L * 1024 * 1024;
    c->max_fields = 1000;
    c->max_batch_bytes = 64L * 1024 * 1024;
    c->log_level = STX_LOG_WARN;
    c->max_deliveries = 5;
    c->retry_base_ms = 100;
    c->retry_max_ms = 30000;
    c->handler_warn_ms = 10000;
    c->stats_interval_ms = 5000;
    c->commit_wait_timeout_ms = 1000;
    c->lease_ttl_ms = 10000;
    c->relay_batch = 256;
    c->outbox_max = 100000;
    c->outbox_warn_ms = 10000;
}

stx_config *stx_config_new(void)
{
    struct stx_config *c = malloc(sizeof *c);
    if (c) set_defaults(c);
    return c;
}

static char **str_field(struct stx_config *c, size_t off)
{
    return (char **)(void *)((char *)c + off);
}

void stx_config_release(struct stx_config *c)
{
    for (size_t i = 0; i < sizeof keys / sizeof keys[0]; i++)
        if (keys[i].kind == K_STRING) {
            free(*str_field(c, keys[i].offset));
            *str_field(c, keys[i].offset) = NULL;
        }
    memset(c->url.password, 0, sizeof c->url.password);
}

void stx_config_free(stx_config *conf)
{
    if (!conf) return;
    stx_config_release(conf);
    free(conf);
}

int stx_config_copy(struct stx_config *dst, const struct stx_config *src)
{
    *dst = *src;
    for (size_t i = 0; i < sizeof keys / sizeof keys[0]; i++) {
        if (keys[i].kind != K_STRING) continue;
        char **d = str_field(dst, keys[i].offset);
        if (*d && !(*d = strdup(*d))) {
            for (size_t j = 0; j < i; j++)
                if (keys[j].kind == K_STRING) free(*str_field(dst, keys[j].offset));
            return STX_ENOMEM;
        }
    }
    return STX_OK;
}

static const struct key_def *find_key(const char *name)
{
    for (size_t i = 0; i < sizeof keys / sizeof keys[0]; i++)
        if (strcmp(keys[i].name, name) == 0) return &keys[i];
    return NULL;
}

static int parse_long(const char *v, long lo, long hi, long *out)
{
    char *end;
    errno = 0;
    long n = strtol(v, &end, 10);
    if (errno || end == v || *end || n < lo || n > hi) return -1;
    *out = n;
    return 0;
}

static int fail(char *errbuf, size_t errlen, const char *fmt, const char *a, long lo, long hi)
{
    if (errbuf && errlen) snprintf(errbuf, errlen, fmt, a, lo, hi);
    return STX_EINVAL;
}

/* What group_start_id stores for a position of the common grammar: "0",
 * "$", or the text itself (an id, a time or a duration ago, resolved when
 * the group is created); NULL for anything else. */
static const char *start_id_value(const char *value)
{
    stx_position p;
    if (stx_position_parse(value, 0, &p) != STX_OK) return NULL;
    if (p.kind == STX_POSITION_BEGINNING) return "0";
    if (p.kind == STX_POSITION_END) return "$";
    return value;
}

static int check_string(const struct key_def *d, const char *value, char *errbuf, size_t errlen)
{
    int may_be_empty = strcmp(d->name, "snapshot_dir") == 0; /* "" turns the snapshot off */
    if (!*value && !may_be_empty) {
        if (errbuf && errlen) snprintf(errbuf, errlen, "%s must not be empty", d->name);
        return STX_EINVAL;
    }
    if (strcmp(d->name, "group_start_id") == 0 && !start_id_value(value)) {
        if (errbuf && errlen)
            snprintf(errbuf, errlen,
                     "group_start_id must be a position (%s), not '%s'", STX_POSITION_GRAMMAR,
                     value);
        return STX_EINVAL;
    }
    return STX_OK;
}

int stx_config_set(stx_config *c, const char *key, const char *value, char *errbuf,
                   size_t errlen)
{
    if (!c || !key || !value) return fail(errbuf, errlen, "%s", "NULL argument", 0, 0);
    const struct key_def *d = find_key(key);
    if (!d) return fail(errbuf, errlen, "unknown configuration key '%s'", key, 0, 0);
    long n;
    char err[256];
    switch (d->kind) {
    case K_URL: {
        stx_url u;
        if (stx_url_parse(value, &u, err, sizeof err) != STX_OK) {
            if (errbuf && errlen) snprintf(errbuf, errlen, "url: %s", err);
            return STX_EINVAL;
        }
        u.tls_opts = c->url.tls_opts; /* the tls_* keys are not part of a URL */
        u.cluster = c->url.cluster;   /* nor are cluster and cluster_nodes */
        memcpy(u.nodes, c->url.nodes, sizeof u.nodes);
        c->url = u;
        return STX_OK;
    }
    case K_HOST:
        if (!*value || strlen(value) >= sizeof c->url.host)
            return fail(errbuf, errlen, "host must be 1 to 255 bytes", NULL, 0, 0);
        strcpy(c->url.host, value);
        c->url.path[0] = '\0'; /* a host means TCP */
        if (!c->url.port) c->url.port = 6379;
        return STX_OK;
    case K_NODES:
        if (!*value) {
            c->url.nodes[0] = '\0';
            return STX_OK;
        }
        if (stx_url_parse_nodes(value, strlen(value), c->url.nodes, sizeof c->url.nodes, err,
                                sizeof err) != STX_OK) {
            c->url.nodes[0] = '\0';
            if (errbuf && errlen) snprintf(errbuf, errlen, "cluster_nodes: %s", err);
            return STX_EINVAL;
        }
        return STX_OK;
    case K_TLS_FLAG:
        if (strcmp(value, "0") != 0 && strcmp(value, "1") != 0) {
            if (errbuf && errlen)
                snprintf(errbuf, errlen, "%s must be 0 or 1, not '%.100s'", d->name, value);
            return STX_EINVAL;
        }
        *(int *)(void *)((char *)&c->url + d->offset) = value[0] == '1';
        return STX_OK;
    case K_TLS_PATH: {
        /* The capacity of the field: every tls_opts path is 1024 bytes but
         * server_name, which is 256. */
        size_t cap = d->offset == offsetof(stx_url, tls_opts.server_name)
                         ? sizeof c->url.tls_opts.server_name
                         : sizeof c->url.tls_opts.ca_file;
        if (strlen(value) >= cap) {
            if (errbuf && errlen)
                snprintf(errbuf, errlen, "%s must be shorter than %zu bytes", d->name, cap);
            return STX_EINVAL;
        }
        strcpy((char *)&c->url + d->offset, value);
        return STX_OK;
    }
    case K_PORT:
    case K_DB:
        if (parse_long(value, d->min, d->max, &n) != 0)
            return fail(errbuf, errlen, "%s must be a number from %ld to %ld", d->name, d->min,
                        d->max);
        if (d->kind == K_PORT) {
            c->url.port = (int)n;
            c->url.path[0] = '\0'; /* a port means TCP */
        }
        else c->url.db = (int)n;
        return STX_OK;
    case K_USER:
    case K_PASSWORD: {
        char *dst = d->kind == K_USER ? c->url.user : c->url.password;
        size_t cap = d->kind == K_USER ? sizeof c->url.user : sizeof c->url.password;
        if (strlen(value) >= cap)
            return fail(errbuf, errlen, "%s is too long", d->name, 0, 0);
        strcpy(dst, value);
        return STX_OK;
    }
    case K_ENUM:
        for (int i = 0; d->choices[i]; i++)
            if (strcmp(d->choices[i], value) == 0) {
                *(int *)(void *)((char *)c + d->offset) = i;
                return STX_OK;
            }
        if (errbuf && errlen)
            snprintf(errbuf, errlen, "%s must be one of %s|%s|%s%s%s, not '%s'", d->name,
                     d->choices[0], d->choices[1], d->choices[2], d->choices[3] ? "|" : "",
                     d->choices[3] ? d->choices[3] : "", value);
        return STX_EINVAL;
    case K_INT:
        if (parse_long(value, d->min, d->max, &n) != 0)
            return fail(errbuf, errlen, "%s must be a number from %ld to %ld", d->name, d->min,
                        d->max);
        *(long *)(void *)((char *)c + d->offset) = n;
        return STX_OK;
    case K_STRING: {
        int rc = check_string(d, value, errbuf, errlen);
        if (rc != STX_OK) return rc;
        /* The grammar's synonyms ("beginning", "end", "-") are stored as
         * the start script spells them. */
        char *copy = strdup(strcmp(d->name, "group_start_id") == 0 ? start_id_value(value) : value);
        if (!copy) return STX_ENOMEM;
        char **f = str_field(c, d->offset);
        free(*f);
        *f = copy;
        if (strcmp(d->name, "snapshot_dir") == 0 && !*copy) {
            free(copy);
            *f = NULL;
        }
        return STX_OK;
    }
    }
    return STX_EINVAL;
}

int stx_config_get(const stx_config *c, const char *key, char *buf, size_t buflen)
{
    const struct key_def *d = c && key ? find_key(key) : NULL;
    if (!d || !buf || !buflen) return STX_EINVAL;
    switch (d->kind) {
    case K_URL: {
        const char *auth = c->url.user[0] || c->url.password[0]
                               ? (c->url.password[0] ? ":***@" : "@")
                               : "";
        if (c->url.path[0])
            snprintf(buf, buflen, "unix://%s%s%s?db=%d", c->url.user, auth, c->url.path,
                     c->url.db);
        else
            snprintf(buf, buflen, "%s://%s%s%s:%d%s%s/%d", c->url.tls ? "rediss" : "redis",
                     c->url.user, auth, c->url.host, c->url.port, c->url.seeds[0] ? "," : "",
                     c->url.seeds, c->url.db);
        break;
    }
    case K_NODES: snprintf(buf, buflen, "%s", c->url.nodes); break;
    case K_TLS_FLAG:
        snprintf(buf, buflen, "%d", *(const int *)(const void *)((const char *)&c->url + d->offset));
        break;
    case K_TLS_PATH: snprintf(buf, buflen, "%s", (const char *)&c->url + d->offset); break;
    case K_HOST: snprintf(buf, buflen, "%s", c->url.host); break;
    case K_PORT: snprintf(buf, buflen, "%d", c->url.port); break;
    case K_DB: snprintf(buf, buflen, "%d", c->url.db); break;
    case K_USER: snprintf(buf, buflen, "%s", c->url.user); break;
    case K_PASSWORD: snprintf(buf, buflen, "%s", c->url.password[0] ? "***" : ""); break;
    case K_ENUM:
        snprintf(buf, buflen, "%s", d->choices[*(const int *)(const void *)((const char *)c + d->offset)]);
        break;
    case K_INT:
        snprintf(buf, buflen, "%ld", *(const long *)(const void *)((const char *)c + d->offset));
        break;
    case K_STRING: {
        const char *s = *(char *const *)(const void *)((const char *)c + d->offset);
        /* An unset group_start_id starts a group at 0 (recover.c): show that. */
        if (!s && d->offset == offsetof(struct stx_config, group_start_id)) s = "0";
        snprintf(buf, buflen, "%s", s ? s : "");
        break;
    }
    }
    return STX_OK;
}

void stx_config_set_handler(stx_config *c, stx_handler_fn handler, void *user_data)
{
    if (!c) return;
    c->handler = handler;
    c->handler_data = user_data;
}

void stx_config_set_migrate(stx_config *c, stx_migrate_fn migrate, void *user_data)
{
    if (!c) return;
    c->migrate = migrate;
    c->migrate_data = user_data;
}

void stx_config_set_history(stx_config *c, stx_history_fn fn, void *user_data)
{
    if (!c) return;
    c->history = fn;
    c->history_data = user_data;
}

void stx_config_set_log(stx_config *c, stx_log_fn log, void *user_data)
{
    if (!c) return;
    c->log = log;
    c->log_data = user_data;
}
