/* The relay: forwards the outbox of one (stream, group) to the publish
 * targets, exactly once.  The same step runs inside the processor that owns
 * the stream (after its commits, a bounded number of entries per poll) and
 * in stx_outbox_relay() for operators (`stx relay`).
 *
 * Why exactly once.  The outbox is a stream: its ids grow in commit order.
 * For each target, the target's relayed hash (in the target's slot) holds
 * the id of the last outbox entry appended to it from this outbox, and
 * lua/relay.lua appends an entry only when its id is above that mark,
 * moving the mark in the same script.  An entry is deleted from the outbox
 * only after that script answered (appended or skipped: either way the
 * target holds it).  So a relay that dies after the append and before the
 * delete, or a zombie relay that replays an old range, appends nothing
 * twice, however long it was away: no expiry is involved.
 *
 * Why each target's entries go in order.  The mark can only skip what is
 * below it, so a target's entries must reach it in outbox order: a step
 * reads the outbox from its start, groups each page's entries by target in
 * order, and a target that refused (wrong type, out of memory, full) is
 * skipped for the rest of the step, so none of its later entries can pass
 * an earlier one.  Its entries wait in the outbox; the other targets go on. */
#include "relay.h"

#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "client.h"
#include "keys.h"
#include "processor.h"
#include "reply.h"
#include "streamtx.h"

struct stx_blocked {
    char *target;
    uint64_t retry_at_us;
    long delay_ms;
    int skip;                   /* in the current step */
};

/* The delay before a refusing target is tried again: doubles to 30 s. */
#define RETRY_FIRST_MS 500
#define RETRY_MAX_MS 30000
/* Pages of the outbox one step may read, in units of its budget. */
#define SCAN_PAGES 4

static uint64_t mono_us(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (uint64_t)ts.tv_sec * 1000000u + (uint64_t)ts.tv_nsec / 1000u;
}

static uint64_t wall_ms(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_REALTIME, &ts);
    return (uint64_t)ts.tv_sec * 1000u + (uint64_t)ts.tv_nsec / 1000000u;
}

stx_relay *stx_relay_new(const char *stream, const char *group)
{
    stx_relay *r = calloc(1, sizeof *r);
    if (!r) return NULL;
    if (!(r->outbox = stx_key_alloc(stream, group, "outbox"))) {
        free(r);
        return NULL;
    }
    return r;
}

void stx_relay_free(stx_relay *r)
{
    if (!r) return;
    for (size_t i = 0; i < r->nblocked; i++) free(r->blocked[i].target);
    free(r->blocked);
    free(r->outbox);
    free(r);
}

static struct stx_blocked *find_blocked(stx_relay *r, const char *target, size_t len)
{
    for (size_t i = 0; i < r->nblocked; i++)
        if (strlen(r->blocked[i].target) == len && memcmp(r->blocked[i].target, target, len) == 0)
            return &r->blocked[i];
    return NULL;
}

/* Block target for the rest of this step and until its retry time.  -1
 * when it cannot be recorded: the step must then end, or a later entry of
 * the target could pass the refused ones (and the mark would skip them). */
static int block(stx_relay *r, const char *target, size_t len)
{
    struct stx_blocked *b = find_blocked(r, target, len);
    if (!b) {
        struct stx_blocked *v = realloc(r->blocked, (r->nblocked + 1) * sizeof *v);
        if (!v) return -1;
        r->blocked = v;
        char *t = malloc(len + 1);
        if (!t) return -1;
        memcpy(t, target, len);
        t[len] = '\0';
        b = &r->blocked[r->nblocked++];
        *b = (struct stx_blocked){t, 0, 0, 0};
    }
    b->delay_ms = b->delay_ms ? (b->delay_ms * 2 > RETRY_MAX_MS ? RETRY_MAX_MS : b->delay_ms * 2)
                              : RETRY_FIRST_MS;
    b->retry_at_us = mono_us() + (uint64_t)b->delay_ms * 1000u;
    b->skip = 1;
    return 0;
}

static void unblock(stx_relay *r, const char *target, size_t len)
{
    struct stx_blocked *b = find_blocked(r, target, len);
    if (!b) return;
    free(b->target);
    *b = r->blocked[--r->nblocked];
}

/* An outbox entry: [id, [stx-target, T, stx-source, S, stx-source-id, I,
 * name, value, ...]].  Sets *target and the index of its first own pair;
 * 0 when it is not one. */
static int parse_entry(const redisReply *e, const redisReply **target)
{
    if (e->type != REDIS_REPLY_ARRAY || e->elements != 2) return 0;
    const redisReply *id = e->element[0], *f = e->element[1];
    if (id->type != REDIS_REPLY_STRING || f->type != REDIS_REPLY_ARRAY || f->elements < 8 ||
        f->elements % 2)
        return 0;
    for (size_t i = 0; i < f->elements; i++)
        if (f->element[i]->type != REDIS_REPLY_STRING) return 0;
    if (strcmp(f->element[0]->str, STX_OUTBOX_TARGET) != 0 || f->element[1]->len == 0 ||
        (f->elements - 6) / 2 > 3000)
        return 0;
    *target = f->element[1];
    return 1;
}

typedef struct ids {
    char (*v)[STX_ID_MAX];
    size_t n, cap;
} ids;

static int ids_add(ids *d, const char *id, size_t len)
{
    if (len >= STX_ID_MAX) return -1;
    if (d->n == d->cap) {
        size_t cap = d->cap ? 2 * d->cap : 64;
        char(*v)[STX_ID_MAX] = realloc(d->v, cap * sizeof *v);
        if (!v) return -1;
        d->v = v;
        d->cap = cap;
    }
    memcpy(d->v[d->n], id, len);
    d->v[d->n++][len] = '\0';
    return 0;
}

static void note(stx_relay_note_fn fn, void *ctx, int level, stx_relay *r)
{
    if (fn) fn(ctx, level, r->err);
}

/* Relay the entries of page (from index at) whose target is t, in order. */
static int relay_target(stx_relay *r, stx_conn *c, stx_scripts *sc, stx_argv *a,
                        const redisReply *page, size_t at, const redisReply *t, ids *done,
                        size_t *sent, stx_relay_note_fn fn, void *ctx)
{
    char *relayed = stx_key_alloc_relayed(t->str);
    if (!relayed) return STX_ENOMEM;
    stx_argv_reset(a);
    for (int i = 0; i < 3; i++) stx_argv_add_ref(a, "", 0);
    stx_argv_add_ref(a, t->str, t->len);
    stx_argv_add_ref(a, relayed, strlen(relayed));
    stx_argv_add_ref(a, r->outbox, strlen(r->outbox));
    size_t n_at = a->n;
    stx_argv_add_ref(a, "", 0); /* n, set below */
    size_t n = 0, first_done = done->n;
    for (size_t i = at; i < page->elements; i++) {
        const redisReply *e = page->element[i], *et;
        if (!parse_entry(e, &et) || et->len != t->len || memcmp(et->str, t->str, t->len) != 0)
            continue;
        const redisReply *f = e->element[1];
        stx_argv_add_ref(a, e->element[0]->str, e->element[0]->len);
        stx_argv_add_u64(a, (f->elements - 6) / 2);
        for (size_t k = 6; k < f->elements; k++)
            stx_argv_add_ref(a, f->element[k]->str, f->element[k]->len);
        if (ids_add(done, e->element[0]->str, e->element[0]->len) != 0) {
            free(relayed);
            done->n = first_done;
            return STX_ENOMEM;
        }
        n++;
    }
    char nbuf[24];
    snprintf(nbuf, sizeof nbuf, "%zu", n);
    a->v[n_at] = nbuf;
    a->len[n_at] = strlen(nbuf);
    redisReply *rep = NULL;
    int rc = a->failed ? STX_ENOMEM : stx_script_run(sc, c, STX_SCRIPT_RELAY, a, 2, &rep);
    stx_argv_reset(a);
    free(relayed);
    if (rc == STX_ECONN || rc == STX_ETIMEOUT || !c->ctx) {
        done->n = first_done;
        return rc;
    }
    const char *status = rc == STX_OK && rep && rep->type == REDIS_REPLY_ARRAY && rep->elements >= 1 &&
                                 rep->element[0]->type == REDIS_REPLY_STRING
                             ? rep->element[0]->str
                             : NULL;
    if (status && strcmp(status, "OK") == 0 && rep->elements >= 3 &&
        rep->element[1]->type == REDIS_REPLY_INTEGER) {
        r->relayed += (uint64_t)rep->element[1]->integer;
        *sent += n;
        unblock(r, t->str, t->len);
        stx_reply_release(rep);
        return STX_OK;
    }
    /* Refused, nothing written: this target waits, the others go on. */
    done->n = first_done;
    r->refusals++;
    if (status && strcmp(status, "WRONGTYPE") == 0 && rep->elements >= 3)
        snprintf(r->err, sizeof r->err,
                 "outbox '%.150s': target '%.150s' holds a %.20s, not a stream; its %zu entries "
                 "wait in the outbox", r->outbox, t->str, rep->element[2]->str ? rep->element[2]->str : "?", n);
    else if (status && strcmp(status, "FULL") == 0)
        snprintf(r->err, sizeof r->err,
                 "outbox '%.150s': target '%.150s' has the highest possible last id and takes no "
                 "entry; its %zu entries wait in the outbox", r->outbox, t->str, n);
    else
        snprintf(r->err, sizeof r->err, "outbox '%.150s': target '%.150s' refused %zu entries: %.200s",
                 r->outbox, t->str, n,
                 rc != STX_OK ? c->err
                 : status && rep->elements >= 2 && rep->element[1]->type == REDIS_REPLY_STRING
                     ? rep->element[1]->str
                     : "unexpected reply");
    stx_reply_release(rep);
    int first = !find_blocked(r, t->str, t->len);
    if (block(r, t->str, t->len) != 0) return STX_ENOMEM;
    note(fn, ctx, first ? 2 : 0, r); /* warn once per blocking; debug while it lasts */
    return STX_OK;
}

static int command(stx_conn *c, redisReply **rep, int argc, const char **argv)
{
    size_t lens[8];
    for (int i = 0; i < argc; i++) lens[i] = strlen(argv[i]);
    return stx_conn_command(c, rep, argc, argv, lens);
}

/* Delete the confirmed entries, then read the outbox's length and the id
 * of its oldest entry: one pipeline, every command on the outbox's key.
 * prefix: the confirmed entries are every entry from the outbox's start up
 * to the highest of them (nothing was held back); XTRIM MINID then removes
 * them in whole nodes, cheaper than XDEL of each id, and safe: an entry
 * added since has a higher id (XADD * only grows), and one another relay
 * deleted meanwhile is not there to trim. */
static int finish(stx_relay *r, stx_conn *c, const ids *done, int prefix)
{
    size_t sent = 0;
    stx_id top = {0, 0};
    for (size_t i = 0; prefix && i < done->n; i++) {
        stx_id id;
        if (stx_id_parse(done->v[i], strlen(done->v[i]), &id) != 0) prefix = 0;
        else if (stx_id_cmp(id, top) > 0) top = id;
    }
    if (prefix && done->n && top.seq < UINT64_MAX) {
        char minid[STX_ID_MAX];
        top.seq++;
        stx_id_format(top, minid);
        const char *argv[] = {"XTRIM", r->outbox, "MINID", minid};
        size_t lens[] = {5, strlen(r->outbox), 5, strlen(minid)};
        int rc = stx_conn_append(c, 4, argv, lens);
        if (rc != STX_OK) {
            stx_conn_close(c);
            return rc;
        }
        sent = 1;
    }
    int trimmed = sent == 1;
    for (size_t i = 0; i < done->n && !trimmed;) {
        size_t n = done->n - i > 500 ? 500 : done->n - i;
        const char **argv = malloc((n + 2) * sizeof *argv);
        size_t *lens = malloc((n + 2) * sizeof *lens);
        int rc = argv && lens ? STX_OK : STX_ENOMEM;
        if (rc == STX_OK) {
            argv[0] = "XDEL";
            argv[1] = r->outbox;
            for (size_t k = 0; k < n; k++) argv[2 + k] = done->v[i + k];
            for (size_t k = 0; k < n + 2; k++) lens[k] = strlen(argv[k]);
            rc = stx_conn_append(c, (int)(n + 2), argv, lens);
        }
        free(argv);
        free(lens);
        if (rc != STX_OK) {
            stx_conn_close(c); /* nothing half-sent stays on it; the caller reconnects */
            return rc;
        }
        sent++;
        i += n;
    }
    const char *xlen[] = {"XLEN", r->outbox};
    const char *first[] = {"XRANGE", r->outbox, "-", "+", "COUNT", "1"};
    size_t xlen_lens[2] = {4, strlen(r->outbox)};
    size_t first_lens[6] = {6, strlen(r->outbox), 1, 1, 5, 1};
    int rc = stx_conn_append(c, 2, xlen, xlen_lens);
    if (rc == STX_OK) rc = stx_conn_append(c, 6, first, first_lens);
    if (rc != STX_OK) {
        stx_conn_close(c);
        return rc;
    }
    redisReply *rep[2] = {NULL, NULL};
    int bad = STX_OK;
    for (size_t k = 0; k < sent; k++) {
        redisReply *d = NULL;
        int x = stx_conn_read(c, &d);
        if (x == STX_OK) stx_reply_release(d);
        else if (bad == STX_OK) bad = x;
        if (x == STX_ECONN || x == STX_ETIMEOUT) return x;
    }
    for (int k = 0; k < 2; k++) {
        int x = stx_conn_read(c, &rep[k]);
        if (x != STX_OK) {
            if (bad == STX_OK) bad = x;
            rep[k] = NULL;
            if (x == STX_ECONN || x == STX_ETIMEOUT) {
                stx_reply_release(rep[0]);
                return x;
            }
        }
    }
    if (bad == STX_OK && rep[0]->type == REDIS_REPLY_INTEGER)
        r->len = rep[0]->integer > 0 ? (uint64_t)rep[0]->integer : 0;
    r->age_ms = 0;
    const redisReply *f = rep[1];
    if (bad == STX_OK && f->type == REDIS_REPLY_ARRAY && f->elements == 1 &&
        f->element[0]->type == REDIS_REPLY_ARRAY && f->element[0]->elements >= 1 &&
        f->element[0]->element[0]->type == REDIS_REPLY_STRING) {
        stx_id id;
        const redisReply *s = f->element[0]->element[0];
        uint64_t now = wall_ms();
        if (stx_id_parse(s->str, s->len, &id) == 0 && id.ms < now) r->age_ms = now - id.ms;
    }
    stx_reply_release(rep[0]);
    stx_reply_release(rep[1]);
    return bad;
}

int stx_relay_step(stx_relay *r, stx_conn *c, stx_scripts *sc, stx_argv *a, long budget,
                   size_t *forwarded, stx_relay_note_fn fn, void *ctx)
{
    if (forwarded) *forwarded = 0;
    uint64_t now = mono_us();
    for (size_t i = 0; i < r->nblocked; i++) r->blocked[i].skip = r->blocked[i].retry_at_us > now;
    size_t sent = 0, scanned = 0, malformed = 0;
    int prefix = 1; /* every entry read so far was confirmed */
    ids done = {NULL, 0, 0};
    char start[STX_ID_MAX + 1] = "-";
    char count[24];
    snprintf(count, sizeof count, "%ld", budget);
    int rc = STX_OK;
    while ((long)sent < budget && scanned < (size_t)budget * SCAN_PAGES) {
        redisReply *page;
        rc = command(c, &page, 6, (const char *[]){"XRANGE", r->outbox, start, "+", "COUNT", count});
        if (rc != STX_OK) break;
        if (page->type != REDIS_REPLY_ARRAY || page->elements == 0) {
            stx_reply_release(page);
            break;
        }
        /* Each target of the page once, at its first entry, in order. */
        for (size_t i = 0; i < page->elements && rc == STX_OK; i++) {
            const redisReply *t;
            if (!parse_entry(page->element[i], &t)) {
                malformed++;
                prefix = 0;
                continue;
            }
            int earlier = 0;
            for (size_t k = 0; k < i && !earlier; k++) {
                const redisReply *tk;
                earlier = parse_entry(page->element[k], &tk) && tk->len == t->len &&
                          memcmp(tk->str, t->str, t->len) == 0;
            }
            if (earlier) continue;
            struct stx_blocked *b = find_blocked(r, t->str, t->len);
            if (b && b->skip) {
                prefix = 0;
                continue;
            }
            uint64_t refusals = r->refusals;
            rc = relay_target(r, c, sc, a, page, i, t, &done, &sent, fn, ctx);
            if (r->refusals != refusals) prefix = 0;
        }
        scanned += page->elements;
        size_t got = page->elements;
        const redisReply *last = page->element[got - 1];
        if (last->type == REDIS_REPLY_ARRAY && last->elements >= 1 &&
            last->element[0]->type == REDIS_REPLY_STRING && last->element[0]->len < STX_ID_MAX)
            snprintf(start, sizeof start, "(%s", last->element[0]->str);
        else
            got = 0; /* cannot go on past it */
        stx_reply_release(page);
        if (rc != STX_OK || got < (size_t)budget) break;
    }
    if (malformed) {
        snprintf(r->err, sizeof r->err, "outbox '%.200s': %zu entries are not outbox entries "
                 "(no %s field first); they are left where they are", r->outbox, malformed,
                 STX_OUTBOX_TARGET);
        note(fn, ctx, 2, r);
    }
    if (rc == STX_OK) rc = finish(r, c, &done, prefix);
    free(done.v);
    if (forwarded) *forwarded = sent;
    return rc;
}

/* ---- inside the processor --------------------------------------------- */

/* An empty outbox is looked at again after this long: entries an earlier
 * owner of the stream left are relayed even when this one publishes none. */
#define IDLE_CHECK_US 1000000u

static void pnote(void *ctx, int level, const char *msg)
{
    stx_log(ctx, (stx_log_level)level, "%s", msg);
}

static int relaying(const stx_processor *p)
{
    return p->conf.publish_mode == 1 || p->conn.cluster != NULL;
}

int stx_outbox_at_max(const stx_processor *p)
{
    return p->relay && p->relay->len >= (uint64_t)p->conf.outbox_max;
}

int stx_outbox_owed(const stx_processor *p)
{
    return p->relay && (p->relay->len >= (uint64_t)p->conf.outbox_max ||
                        p->relay->len >= (uint64_t)p->conf.relay_batch);
}

int stx_outbox_full(stx_processor *p)
{
    if (!p->relay || p->relay->len < (uint64_t)p->conf.outbox_max) return 0;
    uint64_t now = stx_monotonic_us();
    if (now - p->relay->warned_us >= 10000000u || !p->relay->warned_us) {
        p->relay->warned_us = now;
        stx_log(p, STX_LOG_WARN, "outbox '%s' holds %" PRIu64 " entries (outbox_max %ld), the "
                "oldest %" PRIu64 " ms old: reading is paused until the relay catches up%s%s",
                p->relay->outbox, p->relay->len, p->conf.outbox_max, p->relay->age_ms,
                p->relay->err[0] ? "; last refusal: " : "", p->relay->err);
    }
    stx_sleep_ms(p, p->conf.block_ms < 100 ? p->conf.block_ms : 100);
    p->relay->next_check_us = 0;
    return 1;
}

void stx_outbox_poll(stx_processor *p)
{
    if (p->phase != STX_PHASE_RUNNING || !p->conn.ctx || !relaying(p)) return;
    if (!p->relay && !(p->relay = stx_relay_new(p->conf.stream, p->conf.group))) return;
    stx_relay *r = p->relay;
    uint64_t now = stx_monotonic_us();
    if (r->len == 0 && now < r->next_check_us) return;
    uint64_t relayed = r->relayed, refusals = r->refusals;
    int rc = stx_relay_step(r, &p->conn, &p->scripts, &p->argv, p->conf.relay_batch, NULL, pnote, p);
    p->stats.relayed += r->relayed - relayed;
    p->stats.relay_refusals += r->refusals - refusals;
    p->stats.outbox_len = r->len;
    p->stats.outbox_age_ms = r->age_ms;
    if (rc != STX_OK) {
        /* The next poll's recovery reconnects; the marks make a repeat harmless. */
        stx_log(p, STX_LOG_DEBUG, "relay of outbox '%s': %s", r->outbox, p->conn.err);
        r->next_check_us = 0;
        return;
    }
    r->next_check_us = r->len ? 0 : now + IDLE_CHECK_US;
    if (r->age_ms > (uint64_t)p->conf.outbox_warn_ms &&
        (now - r->warned_us >= 10000000u || !r->warned_us)) {
        r->warned_us = now;
        stx_log(p, STX_LOG_WARN, "outbox '%s': %" PRIu64 " entries, the oldest %" PRIu64
                " ms old (outbox_warn_ms %ld)%s%s", r->outbox, r->len, r->age_ms,
                p->conf.outbox_warn_ms, r->err[0] ? "; last refusal: " : "", r->err);
    }
}

void stx_outbox_committed(stx_processor *p, size_t n)
{
    if (!n) return;
    if (!p->relay && !(p->relay = stx_relay_new(p->conf.stream, p->conf.group))) return;
    p->relay->len += n; /* until the relay reads it: the pause sees new entries at once */
    p->relay->next_check_us = 0;
}

/* ---- for operators ------------------------------------------------------ */

static void cnote(void *ctx, int level, const char *msg)
{
    if (level >= STX_LOG_WARN) snprintf(((stx_client *)ctx)->errmsg, sizeof ((stx_client *)ctx)->errmsg, "%s", msg);
}

int stx_outbox_relay(stx_client *c, const char *stream, const char *group, long long max_entries,
                     stx_outbox_info *out)
{
    if (out) memset(out, 0, sizeof *out);
    if (!c || !stream || !group || !*stream || !*group || max_entries < 0) return STX_EINVAL;
    int rc = stx_client_ready(c);
    if (rc != STX_OK) return rc;
    stx_relay *r = stx_relay_new(stream, group);
    if (!r) return stx_client_fail(c, STX_ENOMEM, "out of memory");
    long long left = max_entries;
    do {
        long budget = max_entries == 0 ? 1 : left > 256 ? 256 : (long)left;
        size_t sent = 0;
        if (max_entries == 0) { /* only the length and age */
            ids none = {NULL, 0, 0};
            rc = finish(r, &c->conn, &none, 0);
            break;
        }
        rc = stx_relay_step(r, &c->conn, &c->scripts, &c->argv, budget, &sent, cnote, c);
        left -= (long long)sent;
        if (rc != STX_OK || sent == 0) break;
    } while (left > 0);
    stx_argv_reset(&c->argv);
    if (out) {
        out->relayed = r->relayed;
        out->refusals = r->refusals;
        out->length = r->len;
        out->oldest_age_ms = r->age_ms;
    }
    if (rc != STX_OK) rc = stx_client_fail(c, rc, "relay of '%.200s': %s", r->outbox, c->conn.err);
    else if (r->refusals) rc = STX_OK; /* errmsg names the last refusal */
    stx_relay_free(r);
    return rc;
}
