/* Live processor stats.
 *
 * Where: one hash per (stream, group), the "live" key of the layout in
 * keys.c ("{T}:stx:LEN:STREAM:GROUP:live"), so it sits in the group's slot
 * next to its meta.  A field per processor handle, named by the handle's
 * random id (run_id, 32 hex digits): two processes of one consumer name on
 * one host (the default name is per host) stay apart, and a fenced
 * processor removing its own field never removes its successor's.
 *
 * Why one hash and not a key per processor: a reader (stx top, stx info, a
 * gateway) finds every processor of a group with one HGETALL, without
 * SCAN.  Redis 7.0 has no expiry per hash field, so each field carries its
 * own (at_ms + ttl_ms, by the publisher's clock) and the whole hash is
 * given a PEXPIRE of ttl_ms on every heartbeat: it vanishes once no
 * processor of the group is alive.  A processor that dies leaves its field
 * behind; readers skip it once expired, and the next processor to start
 * removes expired fields (one HGETALL per processor lifetime), so crashes
 * do not make the hash grow.
 *
 * When: from poll() (stx_heartbeat_tick), once per stats_interval_ms, the
 * first at once.  One round trip: MULTI, HSET, PEXPIRE, EXEC pipelined, so
 * the hash never exists without its expiry.  Never per entry, no thread.
 *
 * What: a flat JSON object of numbers and strings (keys in write_json()),
 * readable with redis-cli and by any JSON reader; stx_live_get() parses it
 * back.  Strings escape '"', '\\' and control bytes; other bytes are kept. */
#include "reply.h"
#include "heartbeat.h"

#include <errno.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "client.h"
#include "processor.h"

struct stx_heartbeat {
    char *key;                  /* the group's "live" hash */
    int published;              /* our field may be in the hash */
    int pruned;                 /* expired fields were removed once */
    int left;                   /* stopped or fenced: publish no more */
    int warned;                 /* a failed heartbeat was logged as a warning */
    uint64_t next_us;           /* monotonic time of the next heartbeat */
    uint64_t prev_us;           /* monotonic time of the last one (or of creation) */
    long long started_at_ms;
    stx_stats prev;             /* counters at the last heartbeat */
    uint64_t prev_latency[STX_LATENCY_BUCKETS];
    char host[256];
    char last_error[512];
    long long last_error_at_ms;
};

static long long wall_ms(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_REALTIME, &ts);
    return (long long)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

static stx_heartbeat *hb_get(stx_processor *p)
{
    if (p->hb) return p->hb;
    stx_heartbeat *hb = calloc(1, sizeof *hb);
    if (!hb) return NULL;
    if (!(hb->key = stx_key_alloc(p->conf.stream, p->conf.group, "live"))) {
        free(hb);
        return NULL;
    }
    hb->prev_us = stx_monotonic_us();
    hb->started_at_ms = wall_ms();
    if (gethostname(hb->host, sizeof hb->host - 1) != 0) strcpy(hb->host, "unknown");
    hb->host[sizeof hb->host - 1] = '\0';
    p->hb = hb;
    return hb;
}

void stx_heartbeat_free(stx_heartbeat *hb)
{
    if (!hb) return;
    free(hb->key);
    free(hb);
}

void stx_heartbeat_error(stx_processor *p, int code)
{
    if (p->conf.stats_interval_ms <= 0 || code == STX_OK || code == STX_ESTOPPED) return;
    stx_heartbeat *hb = hb_get(p);
    if (!hb) return;
    snprintf(hb->last_error, sizeof hb->last_error, "%.100s: %.400s", stx_strerror(code), p->errmsg);
    hb->last_error_at_ms = wall_ms();
}

/* ---- the value --------------------------------------------------------- */

static const char *phase_name(stx_phase ph)
{
    static const char *const names[] = {"new",     "epoch_taken", "loaded",
                                        "running", "in_doubt",    "fenced"};
    return (unsigned)ph < sizeof names / sizeof names[0] ? names[ph] : "unknown";
}

static void json_str(FILE *f, const char *key, const char *s)
{
    fprintf(f, ",\"%s\":\"", key);
    for (const unsigned char *c = (const unsigned char *)s; *c; c++) {
        if (*c == '"' || *c == '\\') fprintf(f, "\\%c", *c);
        else if (*c < 0x20) fprintf(f, "\\u%04x", *c);
        else fputc(*c, f);
    }
    fputc('"', f);
}

/* Upper bound of the bucket holding the q-th fraction of the n commits
 * counted in b (the bucket scheme of processor.c), at most max. */
static uint64_t quantile(const uint64_t *b, double q, uint64_t max)
{
    uint64_t total = 0, seen = 0;
    for (unsigned i = 0; i < STX_LATENCY_BUCKETS; i++) total += b[i];
    if (!total) return 0;
    uint64_t want = (uint64_t)(q * (double)total);
    if (want >= total) want = total - 1;
    for (unsigned i = 0; i < STX_LATENCY_BUCKETS; i++) {
        seen += b[i];
        if (seen > want) {
            unsigned lg = (i + 1) / 4, frac = (i + 1) % 4;
            uint64_t hi = lg >= 2 ? ((4u + frac) << (lg - 2)) : ((4u + frac) >> (2 - lg));
            return hi < max ? hi : max;
        }
    }
    return max;
}

/* One field per stx_stats counter, in the JSON and in the parser. */
static const struct { const char *name; size_t off; } counters[] = {
#define C(f) {#f, offsetof(stx_stats, f)}
    C(handled),       C(committed),       C(commits),        C(duplicates),
    C(handler_failures), C(fenced),       C(reconnects),     C(script_reloads),
    C(snapshot_loads), C(redis_loads),    C(state_keys),     C(retries),
    C(dead_lettered), C(slow_handlers),   C(commit_us_p50),  C(commit_us_p99),
    C(commit_us_max), C(commits_unreplicated), C(relayed),  C(relay_refusals),
    C(outbox_len),    C(outbox_age_ms),   C(overlapped),
#undef C
};

static uint64_t *counter(stx_stats *s, size_t i)
{
    return (uint64_t *)(void *)((char *)s + counters[i].off);
}

/* The heartbeat's JSON, malloc'd (NULL when out of memory). */
static char *write_json(stx_processor *p, stx_heartbeat *hb, uint64_t now_us, long long ttl_ms)
{
    char *buf = NULL;
    size_t len = 0;
    FILE *f = open_memstream(&buf, &len);
    if (!f) return NULL;
    stx_stats s;
    stx_processor_stats(p, &s);
    double secs = (double)(now_us - hb->prev_us) / 1e6;
    if (secs <= 0) secs = 1e-9;
    uint64_t lat[STX_LATENCY_BUCKETS];
    for (unsigned i = 0; i < STX_LATENCY_BUCKETS; i++) lat[i] = p->latency[i] - hb->prev_latency[i];

    fprintf(f, "{\"v\":1");
    json_str(f, "id", p->run_id);
    json_str(f, "consumer", p->consumer);
    json_str(f, "host", hb->host);
    fprintf(f, ",\"pid\":%ld", (long)getpid());
    json_str(f, "version", stx_version());
    json_str(f, "phase", phase_name(p->phase));
    fprintf(f, ",\"started_at_ms\":%lld,\"at_ms\":%lld,\"interval_ms\":%ld,\"ttl_ms\":%lld",
            hb->started_at_ms, wall_ms(), p->conf.stats_interval_ms, ttl_ms);
    fprintf(f, ",\"epoch\":%" PRIu64, p->epoch);
    json_str(f, "offset", p->offset_str);
    for (size_t i = 0; i < sizeof counters / sizeof counters[0]; i++)
        fprintf(f, ",\"%s\":%" PRIu64, counters[i].name, *counter(&s, i));
    fprintf(f, ",\"committed_per_s\":%.3f,\"handled_per_s\":%.3f,\"failures_per_s\":%.3f,"
               "\"dead_lettered_per_s\":%.3f",
            (double)(s.committed - hb->prev.committed) / secs,
            (double)(s.handled - hb->prev.handled) / secs,
            (double)(s.handler_failures - hb->prev.handler_failures) / secs,
            (double)(s.dead_lettered - hb->prev.dead_lettered) / secs);
    fprintf(f, ",\"interval_commit_us_p50\":%" PRIu64 ",\"interval_commit_us_p99\":%" PRIu64,
            quantile(lat, 0.50, s.commit_us_max), quantile(lat, 0.99, s.commit_us_max));
    json_str(f, "last_error", hb->last_error);
    fprintf(f, ",\"last_error_at_ms\":%lld}", hb->last_error_at_ms);
    if (fclose(f) != 0) {
        free(buf);
        return NULL;
    }
    hb->prev = s;
    memcpy(hb->prev_latency, p->latency, sizeof hb->prev_latency);
    hb->prev_us = now_us;
    return buf;
}

/* ---- parsing it back ---------------------------------------------------- */

/* A JSON string at *s (after its opening quote) into out (cap bytes, cut
 * when longer); *s moves past the closing quote.  0 or -1. */
static int parse_str(const char **s, const char *end, char *out, size_t cap)
{
    size_t n = 0;
    const char *c = *s;
    while (c < end && *c != '"') {
        unsigned char ch = (unsigned char)*c++;
        if (ch == '\\') {
            if (c >= end) return -1;
            char e = *c++;
            if (e == 'u') {
                if (end - c < 4) return -1;
                unsigned v = 0;
                for (int k = 0; k < 4; k++) {
                    char h = *c++;
                    v = v * 16 + (unsigned)(h >= '0' && h <= '9' ? h - '0'
                                            : h >= 'a' && h <= 'f' ? h - 'a' + 10
                                            : h >= 'A' && h <= 'F' ? h - 'A' + 10 : 99);
                    if (v > 0xffff) return -1;
                }
                if (v > 0xff) v = '?'; /* the writer escapes control bytes only */
                ch = (unsigned char)v;
            } else {
                ch = (unsigned char)(e == 'n' ? '\n' : e == 't' ? '\t' : e == 'r' ? '\r' : e);
            }
        }
        if (n + 1 < cap) out[n++] = (char)ch;
    }
    if (c >= end) return -1;
    if (cap) out[n] = '\0';
    *s = c + 1;
    return 0;
}

static void skip_ws(const char **s, const char *end)
{
    while (*s < end && (**s == ' ' || **s == '\n' || **s == '\t' || **s == '\r')) (*s)++;
}

/* Store one parsed member into lp.  num is the number's text (NULL for a
 * string, whose text is str). */
static int take(stx_live_processor *lp, const char *key, const char *num, const char *str)
{
    struct { const char *name; char *dst; size_t cap; } strs[] = {
        {"id", lp->id, sizeof lp->id},           {"host", lp->host, sizeof lp->host},
        {"version", lp->version, sizeof lp->version}, {"phase", lp->phase, sizeof lp->phase},
        {"offset", lp->offset, sizeof lp->offset},
        {"last_error", lp->last_error, sizeof lp->last_error},
    };
    if (!num) {
        if (strcmp(key, "consumer") == 0) {
            free(lp->consumer);
            return (lp->consumer = strdup(str)) ? 0 : STX_ENOMEM;
        }
        for (size_t i = 0; i < sizeof strs / sizeof strs[0]; i++)
            if (strcmp(key, strs[i].name) == 0) snprintf(strs[i].dst, strs[i].cap, "%s", str);
        return 0;
    }
    struct { const char *name; long long *dst; } lls[] = {
        {"pid", &lp->pid}, {"started_at_ms", &lp->started_at_ms}, {"at_ms", &lp->at_ms},
        {"interval_ms", &lp->interval_ms}, {"ttl_ms", &lp->ttl_ms},
        {"last_error_at_ms", &lp->last_error_at_ms},
    };
    struct { const char *name; double *dst; } dbls[] = {
        {"committed_per_s", &lp->committed_per_s}, {"handled_per_s", &lp->handled_per_s},
        {"failures_per_s", &lp->failures_per_s}, {"dead_lettered_per_s", &lp->dead_lettered_per_s},
    };
    for (size_t i = 0; i < sizeof lls / sizeof lls[0]; i++)
        if (strcmp(key, lls[i].name) == 0) *lls[i].dst = strtoll(num, NULL, 10);
    for (size_t i = 0; i < sizeof dbls / sizeof dbls[0]; i++)
        if (strcmp(key, dbls[i].name) == 0) *dbls[i].dst = strtod(num, NULL);
    for (size_t i = 0; i < sizeof counters / sizeof counters[0]; i++)
        if (strcmp(key, counters[i].name) == 0) *counter(&lp->stats, i) = strtoull(num, NULL, 10);
    if (strcmp(key, "epoch") == 0) lp->epoch = strtoull(num, NULL, 10);
    if (strcmp(key, "interval_commit_us_p50") == 0) lp->interval_commit_us_p50 = strtoull(num, NULL, 10);
    if (strcmp(key, "interval_commit_us_p99") == 0) lp->interval_commit_us_p99 = strtoull(num, NULL, 10);
    return 0;
}

/* Parse one heartbeat (a flat object of strings and numbers) into lp.
 * STX_OK, STX_EDECODE, STX_ENOMEM. */
static int parse_json(const char *s, size_t len, stx_live_processor *lp)
{
    const char *end = s + len;
    char key[64], *str = malloc(len + 64); /* a string, or a number of up to 63 bytes */
    if (!str) return STX_ENOMEM;
    int rc = STX_EDECODE;
    skip_ws(&s, end);
    if (s >= end || *s++ != '{') goto out;
    for (;;) {
        skip_ws(&s, end);
        if (s < end && *s == '}') {
            rc = lp->id[0] && lp->consumer ? STX_OK : STX_EDECODE;
            break;
        }
        if (s >= end || *s++ != '"' || parse_str(&s, end, key, sizeof key) != 0) break;
        skip_ws(&s, end);
        if (s >= end || *s++ != ':') break;
        skip_ws(&s, end);
        if (s < end && *s == '"') {
            s++;
            if (parse_str(&s, end, str, len + 64) != 0) break;
            if ((rc = take(lp, key, NULL, str)) != 0) goto out;
            rc = STX_EDECODE;
        } else {
            size_t n = 0;
            while (s < end && n < 63 && (strchr("+-.eE", *s) || (*s >= '0' && *s <= '9')))
                str[n++] = *s++;
            if (!n) break;
            str[n] = '\0';
            take(lp, key, str, NULL);
        }
        skip_ws(&s, end);
        if (s < end && *s == ',') s++;
    }
out:
    free(str);
    return rc;
}

static void live_processor_clear(stx_live_processor *lp)
{
    free(lp->consumer);
    memset(lp, 0, sizeof *lp);
}

static int expired(const stx_live_processor *lp, long long now_ms)
{
    return lp->at_ms + lp->ttl_ms < now_ms;
}

/* ---- publishing ---------------------------------------------------------- */

static void hb_failed(stx_processor *p, stx_heartbeat *hb, int rc, const char *what)
{
    /* The heartbeat never fails the poll: one warning, then quieter. */
    stx_log(p, hb->warned ? STX_LOG_DEBUG : STX_LOG_WARN, "heartbeat to '%s' not written (%s): %s",
            hb->key, what, p->conn.err[0] ? p->conn.err : stx_strerror(rc));
    hb->warned = 1;
}

/* Remove the fields of processors whose heartbeat expired. */
static void prune(stx_processor *p, stx_heartbeat *hb)
{
    const char *argv[] = {"HGETALL", hb->key};
    redisReply *r;
    if (stx_conn_command(&p->conn, &r, 2, argv, NULL) != STX_OK) return;
    long long now = wall_ms();
    size_t n = 0;
    const char **del = r->type == REDIS_REPLY_ARRAY ? malloc((r->elements / 2 + 2) * sizeof *del) : NULL;
    size_t *lens = del ? malloc((r->elements / 2 + 2) * sizeof *lens) : NULL;
    if (del && lens) {
        del[0] = "HDEL", lens[0] = 4;
        del[1] = hb->key, lens[1] = strlen(hb->key);
        n = 2;
        for (size_t i = 0; i + 1 < r->elements; i += 2) {
            const redisReply *f = r->element[i], *v = r->element[i + 1];
            if (f->type != REDIS_REPLY_STRING || v->type != REDIS_REPLY_STRING) continue;
            stx_live_processor lp = {0};
            int rc = parse_json(v->str, v->len, &lp);
            if (rc == STX_EDECODE || (rc == STX_OK && expired(&lp, now))) {
                del[n] = f->str;
                lens[n++] = f->len;
            }
            live_processor_clear(&lp);
        }
        if (n > 2) {
            redisReply *d;
            if (stx_conn_command(&p->conn, &d, (int)n, del, lens) == STX_OK) stx_reply_release(d);
        }
    }
    free(del);
    free(lens);
    stx_reply_release(r);
}

void stx_heartbeat_tick(stx_processor *p)
{
    if (p->conf.stats_interval_ms <= 0 || !p->conn.ctx) return;
    stx_heartbeat *hb = hb_get(p);
    if (!hb || hb->left) return;
    uint64_t now = stx_monotonic_us();
    if (hb->published && now < hb->next_us) return;
    hb->next_us = now + (uint64_t)p->conf.stats_interval_ms * 1000u;
    if (!hb->pruned) {
        hb->pruned = 1;
        prune(p, hb);
        if (!p->conn.ctx) return;
    }
    long long ttl = 3 * (long long)p->conf.stats_interval_ms + p->conf.block_ms;
    char *json = write_json(p, hb, now, ttl);
    if (!json) return;
    char ttl_s[24];
    snprintf(ttl_s, sizeof ttl_s, "%lld", ttl);
    const char *multi[] = {"MULTI"}, *exec[] = {"EXEC"};
    const char *hset[] = {"HSET", hb->key, p->run_id, json};
    const char *pexpire[] = {"PEXPIRE", hb->key, ttl_s};
    int rc = stx_conn_append(&p->conn, 1, multi, NULL);
    if (rc == STX_OK) rc = stx_conn_append(&p->conn, 4, hset, NULL);
    if (rc == STX_OK) rc = stx_conn_append(&p->conn, 3, pexpire, NULL);
    if (rc == STX_OK) rc = stx_conn_append(&p->conn, 1, exec, NULL);
    free(json);
    if (rc != STX_OK) {
        hb_failed(p, hb, rc, "sending");
        return;
    }
    hb->published = 1;
    int first = STX_OK;
    for (int i = 0; i < 4; i++) {
        redisReply *r = NULL;
        rc = stx_conn_read(&p->conn, &r);
        if (r) stx_reply_release(r);
        if (rc != STX_OK && first == STX_OK) first = rc;
        if (!p->conn.ctx) break; /* closed: the poll's recovery reconnects */
    }
    if (first != STX_OK) hb_failed(p, hb, first, "refused");
}

void stx_heartbeat_leave(stx_processor *p)
{
    stx_heartbeat *hb = p->hb;
    if (!hb || hb->left) return;
    hb->left = 1;
    if (!hb->published || !p->conn.ctx) return;
    const char *argv[] = {"HDEL", hb->key, p->run_id};
    redisReply *r;
    if (stx_conn_command(&p->conn, &r, 3, argv, NULL) == STX_OK) stx_reply_release(r);
    hb->published = 0;
}

/* ---- reading ------------------------------------------------------------- */

static int by_consumer(const void *a, const void *b)
{
    const stx_live_processor *x = a, *y = b;
    int c = strcmp(x->consumer, y->consumer);
    return c ? c : strcmp(x->id, y->id);
}

void stx_live_free(stx_live *l)
{
    if (!l) return;
    for (size_t i = 0; i < l->n; i++) free(l->procs[i].consumer);
    free(l->procs);
    free(l);
}

int stx_live_get(stx_client *c, const char *stream, const char *group, stx_live **out)
{
    if (!c || !stream || !group || !out || !*stream || !*group) return STX_EINVAL;
    int rc = stx_client_ready(c);
    if (rc != STX_OK) return rc;
    char *key = stx_key_alloc(stream, group, "live");
    if (!key) return stx_client_fail(c, STX_ENOMEM, "out of memory");
    const char *argv[] = {"HGETALL", key};
    redisReply *r;
    rc = stx_client_command(c, "live (HGETALL)", &r, 2, argv, NULL);
    free(key);
    if (rc != STX_OK) return rc;
    stx_live *l = calloc(1, sizeof *l);
    if (!l || (r->type == REDIS_REPLY_ARRAY && r->elements &&
               !(l->procs = calloc(r->elements / 2 + 1, sizeof *l->procs)))) {
        free(l);
        stx_reply_release(r);
        return stx_client_fail(c, STX_ENOMEM, "out of memory");
    }
    long long now = wall_ms();
    for (size_t i = 0; r->type == REDIS_REPLY_ARRAY && i + 1 < r->elements; i += 2) {
        const redisReply *v = r->element[i + 1];
        if (v->type != REDIS_REPLY_STRING) continue;
        stx_live_processor *lp = &l->procs[l->n];
        rc = parse_json(v->str, v->len, lp);
        if (rc == STX_ENOMEM) {
            live_processor_clear(lp);
            stx_reply_release(r);
            stx_live_free(l);
            return stx_client_fail(c, STX_ENOMEM, "out of memory");
        }
        if (rc != STX_OK || expired(lp, now)) live_processor_clear(lp);
        else l->n++;
    }
    stx_reply_release(r);
    if (l->n > 1) qsort(l->procs, l->n, sizeof *l->procs, by_consumer);
    *out = l;
    return STX_OK;
}
