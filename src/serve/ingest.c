/* POST /v1/streams/{stream}/events: one event or a batch, with an
 * optional Idempotency-Key.
 *
 * The key is per request, not per entry: the first request with a key
 * adds its entries and remembers key -> (SHA-1 of the body, their ids) in
 * the same script as the XADDs, so a retry cannot add twice, whatever
 * failed in between; the same key with the same body bytes answers 200
 * with the same ids; with another body, 422.  The key lives in the
 * stream's cluster slot ("{T}:stx-http-idem:LEN:STREAM:KEY", T the
 * stream's hash tag as stx_key_name() derives it).
 *
 * A partitioned stream (stx_stream_create()) takes each event to the
 * partition of its "key" field, crc32(key) % P as stx_produce_keyed()
 * does.  A request is still one all-or-nothing unit, and one Lua script
 * may touch only one Cluster slot, so a request's events must all go to
 * one partition: keyless events follow the keyed ones, else the
 * Idempotency-Key's partition (crc32(Idempotency-Key) % P), else the
 * partitions in turn; a batch whose keys fall into two partitions is
 * refused whole (422 batch_spans_partitions), never half-added.
 *
 * The Idempotency-Key of a partitioned stream is exact across partitions:
 * its record lives in its home partition h = crc32(Idempotency-Key) % P.
 * When the request's partition p is h, the produce script keeps the
 * record as above.  When p differs, a claim script first stores
 * "SHA-1\n@p" in h (or finds it: the same SHA-1 goes on to p, another is
 * 422), then the produce script runs in p with a record of its own there;
 * a crash between the two leaves a claim that the retry completes, so
 * the entries are still added exactly once. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "event.h"
#include "jsonin.h"
#include "serve.h"


static const char produce_lua[] =
    "#!lua\n"
    "local t = redis.call('TYPE', KEYS[1]).ok\n"
    "if t ~= 'none' and t ~= 'stream' then return {'WRONGTYPE', t} end\n"
    "local hash\n"
    "if KEYS[2] then\n"
    "  hash = redis.sha1hex(ARGV[1])\n"
    "  local kt = redis.call('TYPE', KEYS[2]).ok\n"
    "  if kt == 'string' then\n"
    "    local h, ids = string.match(redis.call('GET', KEYS[2]), '^(%x+)\\n(.*)$')\n"
    "    if h ~= hash or string.sub(ids or '', 1, 1) == '@' then return {'CONFLICT', ids or ''} end\n"
    "    local out = {'REPLAY'}\n"
    "    for id in string.gmatch(ids, '[^ ]+') do out[#out + 1] = id end\n"
    "    return out\n"
    "  elseif kt ~= 'none' then return {'WRONGTYPE', kt} end\n"
    "end\n"
    "local n, pos, out = tonumber(ARGV[3]), 4, {'OK'}\n"
    "for i = 1, n do\n"
    "  local nf = tonumber(ARGV[pos])\n"
    "  local args = {'XADD', KEYS[1], '*'}\n"
    "  for j = 1, 2 * nf do args[3 + j] = ARGV[pos + j] end\n"
    "  out[#out + 1] = redis.call(unpack(args))\n"
    "  pos = pos + 1 + 2 * nf\n"
    "end\n"
    "if KEYS[2] then\n"
    "  redis.call('SET', KEYS[2], hash .. '\\n' .. table.concat(out, ' ', 2), 'PX', ARGV[2])\n"
    "end\n"
    "return out\n";

/* The home record of an Idempotency-Key whose request goes to another
 * partition: KEYS[1] the record, ARGV[1] the body, ARGV[2] the TTL,
 * ARGV[3] the partition.  {'CLAIMED'} (new or the same body again) or
 * {'CONFLICT', what the record names}. */
static const char claim_lua[] =
    "#!lua\n"
    "local hash = redis.sha1hex(ARGV[1])\n"
    "local kt = redis.call('TYPE', KEYS[1]).ok\n"
    "if kt == 'string' then\n"
    "  local h, ids = string.match(redis.call('GET', KEYS[1]), '^(%x+)\\n(.*)$')\n"
    "  if h == hash and ids == '@' .. ARGV[3] then return {'CLAIMED'} end\n"
    "  return {'CONFLICT', ids or ''}\n"
    "elseif kt ~= 'none' then return {'WRONGTYPE', kt} end\n"
    "redis.call('SET', KEYS[1], hash .. '\\n@' .. ARGV[3], 'PX', ARGV[2])\n"
    "return {'CLAIMED'}\n";

/* The idempotency key's name, malloc'd; NULL on failure. */
static char *idem_key_name(const char *stream, const char *key, size_t *len)
{
    size_t sl = strlen(stream), kl = strlen(key), cap = 2 * sl + 64;
    char *meta = malloc(cap);
    if (!meta) return NULL;
    if (stx_key_name(meta, cap, stream, "g", "meta") < 0) {
        free(meta);
        return NULL;
    }
    char *close = strchr(meta, '}');
    if (!close) {
        free(meta);
        return NULL;
    }
    size_t tl = (size_t)(close - meta) + 1, n = tl + sl + kl + 48;
    char *out = malloc(n);
    if (out) {
        int w = snprintf(out, n, "%.*s:stx-http-idem:%zu:%s:%s", (int)tl, meta, sl, stream, key);
        *len = (size_t)w;
    }
    free(meta);
    return out;
}

/* EVALSHA, then EVAL when Redis does not know the script (first use,
 * restart, failover, SCRIPT FLUSH). */
static int run_script(server *srv, const char *script, char cached[41], size_t argc,
                      const char **argv, size_t *lens, stx_reply **out)
{
    static const char sha_hint[] = "NOSCRIPT";
    char sha[41];
    {
        /* The SHA-1 of the script, asked of Redis once per process. */
        if (!cached[0]) {
            const char *a[] = {"SCRIPT", "LOAD", script};
            stx_reply *r = NULL;
            int rc = stx_client_call(srv->client, 3, a, NULL, &r);
            if (rc != STX_OK) return rc;
            size_t l;
            const char *s = stx_reply_string(r, &l);
            if (stx_reply_type_of(r) == STX_REPLY_STRING && l == 40) memcpy(cached, s, 41);
            stx_reply_free(r);
            if (!cached[0]) return STX_EREDIS;
        }
        memcpy(sha, cached, 41);
    }
    argv[0] = "EVALSHA";
    argv[1] = sha;
    lens[0] = 7;
    lens[1] = 40;
    int rc = stx_client_call(srv->client, argc, argv, lens, out);
    if (rc != STX_OK) return rc;
    size_t l;
    const char *s = stx_reply_string(*out, &l);
    if (stx_reply_type_of(*out) == STX_REPLY_ERROR && l >= 8 && memcmp(s, sha_hint, 8) == 0) {
        stx_reply_free(*out);
        *out = NULL;
        argv[0] = "EVAL";
        argv[1] = script;
        lens[0] = 4;
        lens[1] = strlen(script);
        rc = stx_client_call(srv->client, argc, argv, lens, out);
    }
    return rc;
}

/* The value of event e's "key" field, or NULL. */
static const stx_field *event_key(const ev_fields *e)
{
    for (size_t j = 0; j < e->n; j++)
        if (e->f[j].name_len == 3 && memcmp(e->f[j].name, "key", 3) == 0) return &e->f[j];
    return NULL;
}

static int clip(const stx_field *f)
{
    return f->value_len > 100 ? 100 : (int)f->value_len;
}

/* The one partition of a request's events (see the top of this file),
 * and the claim in the Idempotency-Key's home partition when that is
 * another one: 0, or -1 after setting s's response. */
static int route_partition(server *srv, session *s, const char *stream, const ev_fields *evs,
                           size_t nev, const char *idem_key, unsigned parts, unsigned *part)
{
    long first = -1;
    for (size_t i = 0; i < nev; i++) {
        const stx_field *k = event_key(&evs[i]);
        if (!k) continue;
        int p = stx_partition_of(k->value, k->value_len, parts);
        if (p < 0) {
            serve_error(s, 500, "internal", NULL, "bad partition count %u", parts);
            return -1;
        }
        if (first < 0) {
            first = (long)i;
            *part = (unsigned)p;
        } else if ((unsigned)p != *part) {
            serve_error(s, 422, "batch_spans_partitions", NULL,
                        "event %ld (key '%.*s') goes to partition %u and event %zu (key "
                        "'%.*s') to partition %d; a batch is all or nothing only within one "
                        "partition: send one request per partition; nothing was added",
                        first, clip(event_key(&evs[first])), event_key(&evs[first])->value,
                        *part, i, clip(k), k->value, p);
            return -1;
        }
    }
    if (!idem_key) {
        if (first < 0) *part = srv->spread++ % parts;
        return 0;
    }
    unsigned home = stx_partition_hash(idem_key, strlen(idem_key)) % parts;
    if (first < 0) *part = home;
    if (*part == home) return 0;
    size_t cap = strlen(stream) + 16, idem_len = 0;
    char *hname = malloc(cap), *idem = NULL, pstr[16];
    stx_reply *r = NULL;
    int ret = -1;
    if (!hname || stx_partition_name(hname, cap, stream, home) < 0 ||
        !(idem = idem_key_name(hname, idem_key, &idem_len))) {
        serve_error(s, 500, "internal", NULL, "out of memory");
        goto out;
    }
    snprintf(pstr, sizeof pstr, "%u", *part);
    char ttl[32];
    snprintf(ttl, sizeof ttl, "%lld", srv->o.dedup_ttl_ms);
    const char *argv[] = {NULL, NULL, "1", idem, s->body, ttl, pstr};
    size_t lens[] = {0, 0, 1, idem_len, s->body_len, strlen(ttl), strlen(pstr)};
    int rc = run_script(srv, claim_lua, srv->claim_sha, 7, argv, lens, &r);
    if (rc != STX_OK) {
        serve_stx_error(srv, s, rc, "produce (nothing was added; retrying with the same "
                                    "Idempotency-Key is safe)");
        goto out;
    }
    const char *t = stx_reply_string(stx_reply_at(r, 0), NULL);
    if (stx_reply_type_of(r) == STX_REPLY_ERROR) {
        serve_error(s, 503, "redis_error", NULL, "%s", stx_reply_string(r, NULL));
    } else if (t && strcmp(t, "CLAIMED") == 0) {
        ret = 0;
    } else if (t && strcmp(t, "CONFLICT") == 0) {
        const char *what = stx_reply_string(stx_reply_at(r, 1), NULL);
        serve_error(s, 422, "idempotency_conflict", NULL,
                    "Idempotency-Key '%.200s' was used with another body (for %s%s); nothing was "
                    "added",
                    idem_key, what && what[0] == '@' ? "partition " : "",
                    what && *what ? what + (what[0] == '@') : "?");
    } else if (t && strcmp(t, "WRONGTYPE") == 0) {
        serve_error(s, 409, "wrong_type", NULL, "key '%s' is not a string", idem);
    } else {
        serve_error(s, 500, "internal", NULL, "unexpected reply from Redis");
    }
out:
    stx_reply_free(r);
    free(idem);
    free(hname);
    return ret;
}

void serve_produce(server *srv, session *s, const char *stream, const char *idem_key)
{
    jdoc d;
    char err[300];
    ev_fields *evs = NULL;
    size_t nev = 0;
    const char **argv = NULL;
    size_t *lens = NULL;
    char *idem = NULL, ttl[32], count[32], (*nf)[16] = NULL;
    char *pname = NULL; /* the partition's stream, for a partitioned stream */
    unsigned parts = 0, part = 0;
    stx_reply *r = NULL;

    if (!s->body || s->body_len == 0) {
        serve_error(s, 400, "bad_json", NULL, "the body is empty: send a JSON event or array");
        return;
    }
    if (jdoc_parse(&d, s->body, s->body_len, (size_t)srv->o.max_batch * 2 * (EVENT_MAX_FIELDS + 1) + 1,
                   err, sizeof err) != 0) {
        serve_error(s, 400, "bad_json", NULL, "%s", err);
        goto out;
    }
    int batch = d.v[0].type == JV_ARR;
    nev = batch ? d.v[0].n : 1;
    if (batch && nev == 0) {
        serve_error(s, 400, "bad_request", NULL, "an empty batch");
        goto out;
    }
    if ((long long)nev > srv->o.max_batch) {
        serve_error(s, 413, "batch_too_large", NULL, "a batch holds at most %lld events",
                    srv->o.max_batch);
        goto out;
    }
    evs = calloc(nev, sizeof *evs);
    nf = calloc(nev, sizeof *nf);
    if (!evs || !nf) {
        serve_error(s, 500, "internal", NULL, "out of memory");
        goto out;
    }
    size_t node = batch ? 1 : 0, nargs = 8; /* EVALSHA sha numkeys stream idem body ttl n */
    for (size_t i = 0; i < nev; i++) {
        if (serve_event_fields(&d, node, s->body, &evs[i], err, sizeof err) != 0) {
            if (batch)
                serve_error(s, 400, "bad_event", NULL, "event %zu: %s; nothing was added", i, err);
            else
                serve_error(s, 400, "bad_event", NULL, "%s", err);
            goto out;
        }
        nargs += 1 + 2 * evs[i].n;
        node = d.v[node].end;
    }
    if (serve_partitions(srv, s, stream, &parts) != 0) goto out;
    if (parts > 0) {
        if (route_partition(srv, s, stream, evs, nev, idem_key, parts, &part) != 0) goto out;
        size_t cap = strlen(stream) + 16;
        if (!(pname = malloc(cap)) || stx_partition_name(pname, cap, stream, part) < 0) {
            free(pname);
            serve_error(s, 500, "internal", NULL, "out of memory");
            goto out;
        }
        stream = pname;
    }
    size_t idem_len = 0;
    if (idem_key && !(idem = idem_key_name(stream, idem_key, &idem_len))) {
        serve_error(s, 500, "internal", NULL, "out of memory");
        goto out;
    }
    /* EVALSHA sha numkeys stream [idem] body ttl n (nf name value ...)... */
    argv = calloc(nargs + 1, sizeof *argv);
    lens = calloc(nargs + 1, sizeof *lens);
    if (!argv || !lens) {
        serve_error(s, 500, "internal", NULL, "out of memory");
        goto out;
    }
    size_t a = 2;
    argv[a] = idem ? "2" : "1", lens[a++] = 1;
    argv[a] = stream, lens[a++] = strlen(stream);
    if (idem) argv[a] = idem, lens[a++] = idem_len;
    argv[a] = s->body, lens[a++] = s->body_len;
    snprintf(ttl, sizeof ttl, "%lld", srv->o.dedup_ttl_ms);
    argv[a] = ttl, lens[a++] = strlen(ttl);
    snprintf(count, sizeof count, "%zu", nev);
    argv[a] = count, lens[a++] = strlen(count);
    for (size_t i = 0; i < nev; i++) {
        snprintf(nf[i], sizeof nf[i], "%zu", evs[i].n);
        argv[a] = nf[i], lens[a++] = strlen(nf[i]);
        for (size_t j = 0; j < evs[i].n; j++) {
            argv[a] = evs[i].f[j].name, lens[a++] = evs[i].f[j].name_len;
            argv[a] = evs[i].f[j].value, lens[a++] = evs[i].f[j].value_len;
        }
    }
    int rc = run_script(srv, produce_lua, srv->produce_sha, a, argv, lens, &r);
    if (rc != STX_OK) {
        serve_stx_error(srv, s, rc, idem ? "produce (the outcome is unknown; retrying with the same "
                                           "Idempotency-Key is safe)"
                                         : "produce (the outcome is unknown)");
        goto out;
    }
    size_t tl = 0;
    const stx_reply *tag = stx_reply_at(r, 0);
    const char *t = stx_reply_string(tag, &tl);
    if (stx_reply_type_of(r) == STX_REPLY_ERROR) {
        serve_error(s, 503, "redis_error", NULL, "%s", stx_reply_string(r, NULL));
        goto out;
    }
    if (!t) {
        serve_error(s, 500, "internal", NULL, "unexpected reply from Redis");
        goto out;
    }
    if (strcmp(t, "WRONGTYPE") == 0) {
        serve_error(s, 409, "wrong_type", NULL, "key '%s' is not a stream", stream);
        goto out;
    }
    if (strcmp(t, "CONFLICT") == 0) {
        const char *ids = stx_reply_string(stx_reply_at(r, 1), NULL);
        serve_error(s, 422, "idempotency_conflict", NULL,
                    "Idempotency-Key '%.200s' was used with another body (for %s%s); nothing was "
                    "added",
                    idem_key, ids && ids[0] == '@' ? "partition " : "",
                    ids && *ids ? ids + (ids[0] == '@') : "?");
        goto out;
    }
    int replay = strcmp(t, "REPLAY") == 0;
    size_t nids = stx_reply_count(r) - 1;
    if ((!replay && strcmp(t, "OK") != 0) || nids == 0 || (!replay && nids != nev)) {
        serve_error(s, 500, "internal", NULL, "unexpected reply from Redis");
        goto out;
    }
    jw w;
    jw_init(&w);
    jw_obj(&w);
    if (batch) {
        jw_key(&w, "ids");
        jw_arr(&w);
    } else {
        jw_key(&w, "id");
    }
    for (size_t i = 0; i < nids; i++) jw_str(&w, stx_reply_string(stx_reply_at(r, i + 1), NULL));
    if (batch) jw_arr_end(&w);
    if (parts > 0) { /* a request is one partition: this covers every id */
        jw_key(&w, "partition");
        jw_u64(&w, part);
    }
    jw_obj_end(&w);
    size_t len = w.b.len;
    serve_respond(s, replay ? 200 : 201, "application/json", jb_take(&w.b), len);
    jw_free(&w);
    s->replayed = replay;
out:
    stx_reply_free(r);
    for (size_t i = 0; evs && i < nev; i++) free(evs[i].f);
    free(evs);
    free(nf);
    free(argv);
    free(lens);
    free(idem);
    free(pname);
    jdoc_free(&d);
}
