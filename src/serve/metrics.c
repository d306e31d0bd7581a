/* GET /health (the library's checks, 503 when Redis cannot be reached or
 * a check fails) and GET /metrics (Prometheus text exposition 0.0.4). */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "serve.h"

static const char *const route_names[R_NROUTES] = {
    "console", "health", "metrics", "streams", "stream", "produce",
    "events",  "live",   "ws",      "dlq",     "redrive", "other"};
static const double buckets[SERVE_NBUCKETS] = {0.0005, 0.001, 0.0025, 0.005, 0.01,
                                              0.025,  0.05,  0.1,    0.5,   1.0};

void metrics_record(server *srv, route rt, int status, double seconds)
{
    metrics *m = &srv->m;
    for (int i = 0; i < SERVE_MAX_STATUS; i++) {
        if (m->status_code[rt][i] == status || m->status_code[rt][i] == 0) {
            m->status_code[rt][i] = status;
            m->count[rt][i]++;
            break;
        }
    }
    for (int b = 0; b < SERVE_NBUCKETS; b++)
        if (seconds <= buckets[b]) m->bucket[rt][b]++;
    m->lat_count[rt]++;
    m->lat_sum[rt] += seconds;
}

static long long now_ms(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_REALTIME, &ts);
    return (long long)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

void serve_health(server *srv, session *s)
{
    stx_health *h = NULL;
    int rc = stx_health_get(srv->client, &h);
    jw w;
    jw_init(&w);
    jw_obj(&w);
    int status;
    if (rc != STX_OK) {
        status = 503;
        jw_key(&w, "status");
        jw_str(&w, "fail");
        jw_key(&w, "checks");
        jw_arr(&w);
        jw_obj(&w);
        jw_key(&w, "name");
        jw_str(&w, "redis");
        jw_key(&w, "status");
        jw_str(&w, "fail");
        jw_key(&w, "detail");
        jw_str(&w, *stx_client_errmsg(srv->client) ? stx_client_errmsg(srv->client)
                                                    : stx_strerror(rc));
        jw_obj_end(&w);
        jw_arr_end(&w);
    } else {
        int warn = 0;
        for (size_t i = 0; i < h->nchecks; i++) warn |= h->checks[i].status == STX_HEALTH_WARN;
        status = h->healthy ? 200 : 503;
        jw_key(&w, "status");
        jw_str(&w, !h->healthy ? "fail" : warn ? "warn" : "ok");
        jw_key(&w, "checks");
        jw_arr(&w);
        jw_obj(&w);
        jw_key(&w, "name");
        jw_str(&w, "redis");
        jw_key(&w, "status");
        jw_str(&w, "ok");
        jw_key(&w, "detail");
        jw_str(&w, "reachable");
        jw_obj_end(&w);
        for (size_t i = 0; i < h->nchecks; i++) {
            static const char *const st[] = {"ok", "warn", "fail"};
            jw_obj(&w);
            jw_key(&w, "name");
            jw_str(&w, h->checks[i].name);
            jw_key(&w, "status");
            jw_str(&w, st[h->checks[i].status]);
            jw_key(&w, "detail");
            jw_str(&w, h->checks[i].detail);
            jw_obj_end(&w);
        }
        jw_arr_end(&w);
    }
    jw_obj_end(&w);
    stx_health_free(h);
    size_t len = w.b.len;
    serve_respond(s, status, "application/json", jb_take(&w.b), len);
    jw_free(&w);
}

/* A label value: backslash, double quote and newline escaped. */
static void label(jbuf *b, const char *v)
{
    for (; *v; v++) {
        if (*v == '\\') jb_puts(b, "\\\\");
        else if (*v == '"') jb_puts(b, "\\\"");
        else if (*v == '\n') jb_puts(b, "\\n");
        else jb_putc(b, *v);
    }
}

static void head(jbuf *b, const char *name, const char *type, const char *help)
{
    jb_printf(b, "# HELP %s %s\n# TYPE %s %s\n", name, help, name, type);
}

static double id_age_s(const char *id, long long now)
{
    unsigned long long ms = strtoull(id, NULL, 10);
    return ms && (long long)ms < now ? (double)(now - (long long)ms) / 1000.0 : 0.0;
}

int serve_scan_streams(server *srv, char ***out, size_t *n);

typedef struct gsample {
    char *stream, *group;
    long long lag, pending, dlq;
    unsigned long long epoch;
    double oldest_pending_s;
} gsample;

void serve_metrics(server *srv, session *s)
{
    jbuf b;
    jb_init(&b);
    long long now = now_ms();
    char **names = NULL;
    size_t n = 0;
    int up = serve_scan_streams(srv, &names, &n) == STX_OK;
    head(&b, "stx_redis_up", "gauge", "1 when the gateway's last SCAN of Redis succeeded.");
    jb_printf(&b, "stx_redis_up %d\n", up);

    stx_stream_info **infos = calloc(n ? n : 1, sizeof *infos);
    gsample *gs = NULL;
    size_t ngs = 0, gcap = 0;
    for (size_t i = 0; infos && i < n; i++) {
        if (stx_stream_info_get(srv->client, names[i], &infos[i]) != STX_OK) {
            stx_stream_info_free(infos[i]);
            infos[i] = NULL;
            continue;
        }
        for (size_t g = 0; g < infos[i]->ngroups; g++) {
            const stx_group_info *gi = &infos[i]->groups[g];
            if (ngs == gcap) {
                gcap = gcap ? 2 * gcap : 16;
                gsample *p = realloc(gs, gcap * sizeof *p);
                if (!p) break;
                gs = p;
            }
            gsample *x = &gs[ngs++];
            x->stream = names[i];
            x->group = gi->name;
            x->lag = gi->lag;
            x->pending = gi->pending;
            x->dlq = gi->dlq_length;
            x->epoch = gi->epoch;
            x->oldest_pending_s = 0;
            stx_pending *p = NULL;
            if (gi->pending > 0 && stx_pending_get(srv->client, names[i], gi->name, 1, &p) == STX_OK &&
                p->min_id[0])
                x->oldest_pending_s = id_age_s(p->min_id, now);
            stx_pending_free(p);
        }
    }
    head(&b, "stx_stream_length", "gauge", "Entries in the stream.");
    for (size_t i = 0; i < n; i++)
        if (infos && infos[i]) {
            jb_puts(&b, "stx_stream_length{stream=\"");
            label(&b, names[i]);
            jb_printf(&b, "\"} %lld\n", infos[i]->length);
        }
    head(&b, "stx_stream_last_entry_age_seconds", "gauge",
         "Seconds since the time of the stream's last entry id.");
    for (size_t i = 0; i < n; i++)
        if (infos && infos[i] && infos[i]->last_id[0]) {
            jb_puts(&b, "stx_stream_last_entry_age_seconds{stream=\"");
            label(&b, names[i]);
            jb_printf(&b, "\"} %.3f\n", id_age_s(infos[i]->last_id, now));
        }
    static const struct {
        const char *name, *help;
    } gm[] = {
        {"stx_group_lag", "Entries not yet delivered to the group (-1: unknown)."},
        {"stx_group_pending", "Entries delivered to the group and not acknowledged."},
        {"stx_group_oldest_pending_age_seconds", "Age of the oldest pending entry's id."},
        {"stx_group_dlq_length", "Dead-letter entries of the group."},
        {"stx_group_epoch", "Epoch of the group's processor (0: not a streamtx group)."},
    };
    for (size_t k = 0; k < sizeof gm / sizeof gm[0]; k++) {
        head(&b, gm[k].name, "gauge", gm[k].help);
        for (size_t i = 0; i < ngs; i++) {
            jb_printf(&b, "%s{stream=\"", gm[k].name);
            label(&b, gs[i].stream);
            jb_puts(&b, "\",group=\"");
            label(&b, gs[i].group);
            jb_puts(&b, "\"} ");
            switch (k) {
            case 0: jb_printf(&b, "%lld\n", gs[i].lag); break;
            case 1: jb_printf(&b, "%lld\n", gs[i].pending); break;
            case 2: jb_printf(&b, "%.3f\n", gs[i].oldest_pending_s); break;
            case 3: jb_printf(&b, "%lld\n", gs[i].dlq); break;
            default: jb_printf(&b, "%llu\n", gs[i].epoch);
            }
        }
    }
    free(gs);
    for (size_t i = 0; i < n; i++) {
        if (infos) stx_stream_info_free(infos[i]);
        free(names[i]);
    }
    free(infos);
    free(names);

    /* This request is counted once its headers go out: it is not here. */
    const metrics *m = &srv->m;
    head(&b, "stx_http_requests_total", "counter", "HTTP requests answered, by route and status.");
    for (int r = 0; r < R_NROUTES; r++)
        for (int i = 0; i < SERVE_MAX_STATUS && m->status_code[r][i]; i++)
            jb_printf(&b, "stx_http_requests_total{route=\"%s\",status=\"%d\"} %llu\n",
                      route_names[r], m->status_code[r][i], m->count[r][i]);
    head(&b, "stx_http_request_duration_seconds", "histogram",
         "Time from a request's headers to its response's headers.");
    for (int r = 0; r < R_NROUTES; r++) {
        if (!m->lat_count[r]) continue;
        for (int k = 0; k < SERVE_NBUCKETS; k++)
            jb_printf(&b, "stx_http_request_duration_seconds_bucket{route=\"%s\",le=\"%g\"} %llu\n",
                      route_names[r], buckets[k], m->bucket[r][k]);
        jb_printf(&b, "stx_http_request_duration_seconds_bucket{route=\"%s\",le=\"+Inf\"} %llu\n",
                  route_names[r], m->lat_count[r]);
        jb_printf(&b, "stx_http_request_duration_seconds_sum{route=\"%s\"} %.6f\n", route_names[r],
                  m->lat_sum[r]);
        jb_printf(&b, "stx_http_request_duration_seconds_count{route=\"%s\"} %llu\n",
                  route_names[r], m->lat_count[r]);
    }
    head(&b, "stx_live_clients", "gauge", "Connected live clients, by kind.");
    jb_printf(&b, "stx_live_clients{kind=\"sse\"} %zu\nstx_live_clients{kind=\"websocket\"} %zu\n",
              srv->sse_clients, srv->ws_clients);
    head(&b, "stx_live_readers", "gauge", "Redis readers of live streams (one per stream).");
    jb_printf(&b, "stx_live_readers %zu\n", live_reader_count(srv));
    head(&b, "stx_live_dropped_slow_clients_total", "counter",
         "Live clients disconnected for falling behind the send buffer.");
    jb_printf(&b, "stx_live_dropped_slow_clients_total %llu\n", m->dropped_slow);
    head(&b, "stx_live_rejected_clients_total", "counter",
         "Live clients refused because the server had max-clients already.");
    jb_printf(&b, "stx_live_rejected_clients_total %llu\n", m->rejected_clients);
    size_t len = b.len;
    serve_respond(s, 200, "text/plain; version=0.0.4; charset=utf-8", jb_take(&b), len);
    jb_free(&b);
}
