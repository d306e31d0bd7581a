/* stx create STREAM --partitions P, stx members STREAM GROUP, and the
 * partitioned views of stx info, stx replay and stx tail. */
#include <signal.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "cli.h"

static const char create_help[] =
    "usage: stx create STREAM --partitions P [--grow] [--json]\n"
    "\n"
    "Create the partitioned stream STREAM with P partitions (1 to 1024): its\n"
    "metadata only; partition i is the stream {STREAM#i}, which appears with its\n"
    "first entry.  Creating it again with the same P does nothing.  With --grow,\n"
    "raise the partition count of an existing stream to P: keys then map to\n"
    "other partitions (crc32(key) % P; see README \"Scaling out\"); running\n"
    "members serve the new partitions from their next lease renewal.  Shrinking\n"
    "is refused.\n"
    "\n"
    "  --partitions P  the partition count\n"
    "  --grow          raise the count of an existing stream\n"
    "\n"
    "Output: \"STREAM: P partitions\".  --json: {\"stream\":..,\"partitions\":P}\n"
    "Exit codes: 2 for a bad count or name, or a count below the current one\n"
    "(--grow); 3 when --grow finds no such stream; 5 when STREAM exists with\n"
    "another count.\n";

int cmd_create(cli *c, int argc, char **argv)
{
    cli_opt opts[] = {{"--partitions", 1, NULL}, {"--grow", 0, NULL}};
    int npos, rc;
    if ((rc = cli_parse(c, argc, argv, opts, 2, 1, 1, &npos, create_help)) != 0)
        return rc;
    if (!opts[0].value)
        return cli_fail(c, CLI_EXIT_USAGE, "missing --partitions P");
    long long p = 0;
    if ((rc = cli_opt_ll(c, &opts[0], 1, &p)) != 0)
        return rc;
    if (p > 1024)
        return cli_fail(c, CLI_EXIT_USAGE, "--partitions %lld: at most 1024", p);
    const char *stream = argv[0];
    if ((rc = cli_connect(c)) != 0)
        return rc;
    rc = opts[1].value ? stx_stream_grow(c->client, stream, (unsigned)p)
                       : stx_stream_create(c->client, stream, (unsigned)p);
    if (rc == STX_EINVAL)
        return cli_fail(c, CLI_EXIT_USAGE, "%s", stx_client_errmsg(c->client));
    if (rc == STX_ECONFLICT)
        return cli_fail(c, CLI_EXIT_CONFLICT, "%s", stx_client_errmsg(c->client));
    if (rc != STX_OK)
        return cli_fail_stx(c, rc, NULL);
    if (c->json) {
        jw w;
        jw_init(&w);
        jw_obj(&w);
        jw_key(&w, "stream");
        jw_str(&w, stream);
        jw_key(&w, "partitions");
        jw_i64(&w, p);
        jw_obj_end(&w);
        jw_print(&w, stdout);
        jw_free(&w);
    } else {
        printf("%s: %lld partitions\n", stream, p);
    }
    return 0;
}

/* ---- reading Redis through stx_client_call ------------------------------ */

static stx_reply *call(cli *c, size_t argc, const char *const *argv)
{
    stx_reply *r = NULL;
    if (stx_client_call(c->client, argc, argv, NULL, &r) != STX_OK) return NULL;
    return r;
}

/* Redis' clock in ms (the clock leases and members are written with). */
static long long redis_now(cli *c)
{
    const char *argv[] = {"TIME"};
    stx_reply *r = call(c, 1, argv);
    long long now = -1;
    if (r && stx_reply_count(r) == 2)
        now = atoll(stx_reply_string(stx_reply_at(r, 0), NULL)) * 1000 +
              atoll(stx_reply_string(stx_reply_at(r, 1), NULL)) / 1000;
    stx_reply_free(r);
    return now;
}

typedef struct lease_view {
    char owner[128];            /* "" when free or expired */
    long long expires_in_ms;    /* -1 when free or expired */
    unsigned long long epoch;   /* last epoch the owner recorded */
} lease_view;

static void lease_of(cli *c, const char *part, const char *group, long long now, lease_view *v)
{
    memset(v, 0, sizeof *v);
    v->expires_in_ms = -1;
    char key[1024];
    if (stx_key_name(key, sizeof key, part, group, "lease") < 0) return;
    const char *argv[] = {"HMGET", key, "owner", "expires_ms", "epoch"};
    stx_reply *r = call(c, 5, argv);
    const char *owner = stx_reply_string(stx_reply_at(r, 0), NULL);
    const char *exp = stx_reply_string(stx_reply_at(r, 1), NULL);
    const char *ep = stx_reply_string(stx_reply_at(r, 2), NULL);
    if (owner && *owner && exp && atoll(exp) > now) {
        snprintf(v->owner, sizeof v->owner, "%s", owner);
        v->expires_in_ms = atoll(exp) - now;
    }
    if (ep) v->epoch = strtoull(ep, NULL, 10);
    stx_reply_free(r);
}

/* ---- stx info for a partitioned stream ---------------------------------- */

int cli_info_partitioned(cli *c, const char *stream, unsigned n)
{
    long long now = redis_now(c);
    /* On a cluster each partition's node is a column; on one Redis there
     * is nothing to show. */
    char node[320], first[1100];
    stx_partition_name(first, sizeof first, stream, 0);
    int cluster = stx_client_node_of(c->client, first, strlen(first), node, sizeof node) != STX_ESTATE;
    jw w;
    jw_init(&w);
    table t;
    size_t ncol = cluster ? 10 : 9;
    tbl_init(&t, ncol);
    static const char *const heads[] = {"PARTITION", "NODE",    "LENGTH", "GROUP", "OFFSET",
                                        "LAG",       "PENDING", "EPOCH",  "OWNER", "LEASE"};
    for (size_t k = 0; k < 10; k++)
        if (k != 1 || cluster) tbl_cell(&t, heads[k]);
    table ot; /* outboxes that are not empty */
    tbl_init(&ot, 4);
    static const char *const oheads[] = {"STREAM", "GROUP", "OUTBOX", "OLDEST"};
    for (size_t k = 0; k < 4; k++) tbl_cell(&ot, oheads[k]);
    if (c->json) {
        jw_obj(&w);
        jw_key(&w, "stream");
        jw_str(&w, stream);
        jw_key(&w, "partitions");
        jw_i64(&w, n);
        jw_key(&w, "parts");
        jw_arr(&w);
    }
    int rc = 0;
    for (unsigned i = 0; i < n && rc == 0; i++) {
        char part[1100];
        stx_partition_name(part, sizeof part, stream, i);
        stx_stream_info *info = NULL;
        int got = stx_stream_info_get(c->client, part, &info);
        if (got != STX_OK && got != STX_ENOTFOUND) {
            rc = cli_fail_stx(c, got, part);
            break;
        }
        if (!cluster || stx_client_node_of(c->client, part, strlen(part), node, sizeof node) < 0)
            snprintf(node, sizeof node, "%s", cluster ? "?" : "");
        if (c->json) {
            jw_obj(&w);
            jw_key(&w, "partition");
            jw_i64(&w, i);
            jw_key(&w, "stream");
            jw_str(&w, part);
            jw_key(&w, "node");
            if (cluster) jw_str(&w, node);
            else jw_null(&w);
            jw_key(&w, "length");
            jw_i64(&w, info ? info->length : 0);
            jw_key(&w, "last_id");
            if (info && info->last_id[0]) jw_str(&w, info->last_id);
            else jw_null(&w);
            jw_key(&w, "groups");
            jw_arr(&w);
        }
        size_t ng = info ? info->ngroups : 0;
        if (ng == 0 && !c->json) {
            tbl_cellf(&t, "%u", i);
            if (cluster) tbl_cell(&t, node);
            tbl_cellf(&t, "%lld", info ? info->length : 0);
            for (int k = 0; k < 7; k++) tbl_cell(&t, "-");
        }
        for (size_t g = 0; g < ng; g++) {
            const stx_group_info *gi = &info->groups[g];
            lease_view lv;
            lease_of(c, part, gi->name, now, &lv);
            if (c->json) {
                jw_obj(&w);
                jw_key(&w, "name");
                jw_str(&w, gi->name);
                jw_key(&w, "offset");
                jw_str(&w, gi->offset[0] ? gi->offset : NULL);
                jw_key(&w, "lag");
                if (gi->lag < 0) jw_null(&w);
                else jw_i64(&w, gi->lag);
                jw_key(&w, "pending");
                jw_i64(&w, gi->pending);
                jw_key(&w, "epoch");
                jw_u64(&w, gi->epoch);
                jw_key(&w, "owner");
                jw_str(&w, lv.owner[0] ? lv.owner : NULL);
                jw_key(&w, "lease_expires_in_ms");
                if (lv.expires_in_ms < 0) jw_null(&w);
                else jw_i64(&w, lv.expires_in_ms);
                cli_outbox_note(c, part, gi->name, &w, NULL);
                jw_obj_end(&w);
            } else {
                tbl_cellf(&t, "%u", i);
                if (cluster) tbl_cell(&t, node);
                tbl_cellf(&t, "%lld", info->length);
                tbl_cell(&t, gi->name);
                tbl_cell(&t, gi->offset[0] ? gi->offset : "-");
                if (gi->lag < 0) tbl_cell(&t, "?");
                else tbl_cellf(&t, "%lld", gi->lag);
                tbl_cellf(&t, "%lld", gi->pending);
                tbl_cellf(&t, "%llu", gi->epoch);
                tbl_cell(&t, lv.owner[0] ? lv.owner : "-");
                if (lv.expires_in_ms < 0) tbl_cell(&t, "-");
                else tbl_cellf(&t, "%lldms", lv.expires_in_ms);
                cli_outbox_note(c, part, gi->name, NULL, &ot);
            }
        }
        if (c->json) {
            jw_arr_end(&w);
            jw_obj_end(&w);
        }
        stx_stream_info_free(info);
    }
    if (rc == 0) {
        if (c->json) {
            jw_arr_end(&w);
            jw_obj_end(&w);
            jw_print(&w, stdout);
        } else {
            printf("stream %s: %u partitions\n\n", stream, n);
            tbl_print(&t, stdout);
            if (ot.ncells > 4) {
                fputc('\n', stdout);
                tbl_print(&ot, stdout);
            }
        }
    }
    tbl_free(&ot);
    tbl_free(&t);
    jw_free(&w);
    return rc;
}

/* ---- stx members ----------------------------------------------------------- */

static const char members_help[] =
    "usage: stx members STREAM GROUP [--json]\n"
    "\n"
    "The live members of GROUP of the partitioned stream STREAM (those whose\n"
    "heartbeat has not run out by Redis' clock): member id, host and pid, time\n"
    "left, and the partitions whose lease it holds.\n"
    "\n"
    "Output: one row per member.  --json: {\"stream\":..,\"group\":..,\"partitions\":P,\n"
    "\"members\":[{\"id\":..,\"host_pid\":..,\"expires_in_ms\":..,\"partitions\":[..]}],\n"
    "\"unowned\":[..]} (partitions with no live lease).\n"
    "Exit codes: 3 when STREAM is not a partitioned stream.\n";

int cmd_members(cli *c, int argc, char **argv)
{
    int npos, rc;
    if ((rc = cli_parse(c, argc, argv, NULL, 0, 2, 2, &npos, members_help)) != 0)
        return rc;
    const char *stream = argv[0], *group = argv[1];
    if ((rc = cli_connect(c)) != 0)
        return rc;
    unsigned n = 0;
    rc = stx_stream_partitions(c->client, stream, &n);
    if (rc != STX_OK) return cli_fail_stream(c, rc, stream);
    char key[1100];
    if (stx_key_name(key, sizeof key, stream, group, "members") < 0)
        return cli_fail(c, CLI_EXIT_USAGE, "bad stream or group name");
    long long now = redis_now(c);
    const char *argv2[] = {"HGETALL", key};
    stx_reply *r = call(c, 2, argv2);
    if (!r || stx_reply_type_of(r) != STX_REPLY_ARRAY) {
        stx_reply_free(r);
        return cli_fail_stx(c, STX_EREDIS, "reading the member hash");
    }
    lease_view *lv = calloc(n, sizeof *lv);
    if (!lv) {
        stx_reply_free(r);
        return cli_fail(c, CLI_EXIT_RUNTIME, "out of memory");
    }
    for (unsigned i = 0; i < n; i++) {
        char part[1100];
        stx_partition_name(part, sizeof part, stream, i);
        lease_of(c, part, group, now, &lv[i]);
    }
    jw w;
    jw_init(&w);
    table t;
    tbl_init(&t, 4);
    static const char *const heads[] = {"MEMBER", "HOST PID", "EXPIRES", "PARTITIONS"};
    for (size_t k = 0; k < 4; k++) tbl_cell(&t, heads[k]);
    if (c->json) {
        jw_obj(&w);
        jw_key(&w, "stream");
        jw_str(&w, stream);
        jw_key(&w, "group");
        jw_str(&w, group);
        jw_key(&w, "partitions");
        jw_i64(&w, n);
        jw_key(&w, "members");
        jw_arr(&w);
    }
    for (size_t k = 0; k + 1 < stx_reply_count(r); k += 2) {
        const char *id = stx_reply_string(stx_reply_at(r, k), NULL);
        const char *v = stx_reply_string(stx_reply_at(r, k + 1), NULL);
        if (!id || !v) continue;
        long long exp = atoll(v);
        if (exp <= now) continue;
        const char *sp = strchr(v, ' ');
        const char *hostpid = sp ? sp + 1 : "";
        jbuf parts;
        jb_init(&parts);
        if (c->json) {
            jw_obj(&w);
            jw_key(&w, "id");
            jw_str(&w, id);
            jw_key(&w, "host_pid");
            jw_str(&w, hostpid);
            jw_key(&w, "expires_in_ms");
            jw_i64(&w, exp - now);
            jw_key(&w, "partitions");
            jw_arr(&w);
        }
        for (unsigned i = 0; i < n; i++)
            if (strcmp(lv[i].owner, id) == 0) {
                if (c->json) {
                    jw_i64(&w, i);
                } else {
                    char num[16];
                    snprintf(num, sizeof num, "%s%u", parts.len ? "," : "", i);
                    jb_puts(&parts, num);
                }
            }
        if (c->json) {
            jw_arr_end(&w);
            jw_obj_end(&w);
        } else {
            tbl_cell(&t, id);
            tbl_cell(&t, hostpid);
            tbl_cellf(&t, "%lldms", exp - now);
            tbl_cell(&t, parts.len ? parts.p : "-");
        }
        jb_free(&parts);
    }
    if (c->json) {
        jw_arr_end(&w);
        jw_key(&w, "unowned");
        jw_arr(&w);
        for (unsigned i = 0; i < n; i++)
            if (!lv[i].owner[0]) jw_i64(&w, i);
        jw_arr_end(&w);
        jw_obj_end(&w);
        jw_print(&w, stdout);
    } else {
        tbl_print(&t, stdout);
        int any = 0;
        for (unsigned i = 0; i < n; i++)
            if (!lv[i].owner[0]) {
                printf("%s%u", any ? "," : "unowned partitions: ", i);
                any = 1;
            }
        if (any) putchar('\n');
    }
    tbl_free(&t);
    jw_free(&w);
    free(lv);
    stx_reply_free(r);
    return 0;
}

/* ---- replay and tail over all partitions --------------------------------- */

/* As out_entry_json(), with the partition first. */
static void entry_json(jw *w, const stx_msg *m)
{
    out_entry_json_partition(w, m, stx_msg_partition(m));
}

static void print_entry(cli *c, jw *w, const stx_msg *m, int ndjson)
{
    if (c->json) {
        entry_json(w, m);
        if (ndjson) jw_print(w, stdout);
    } else {
        jb_puts(&w->b, "[");
        char num[16];
        snprintf(num, sizeof num, "%d", stx_msg_partition(m));
        jb_puts(&w->b, num);
        jb_puts(&w->b, "] ");
        out_entry_line(&w->b, m);
        jb_putc(&w->b, '\n');
    }
}

int cli_replay_partitioned(cli *c, const char *stream, const char *after, const char *to,
                           long long limit)
{
    char cursor[64];
    snprintf(cursor, sizeof cursor, "%s", strcmp(after, "$") == 0 ? "" : after);
    jw w;
    jw_init(&w);
    if (c->json) {
        jw_obj(&w);
        jw_key(&w, "stream");
        jw_str(&w, stream);
        jw_key(&w, "after");
        jw_str(&w, after);
        jw_key(&w, "to_id");
        jw_str(&w, to);
        jw_key(&w, "entries");
        jw_arr(&w);
    }
    long long got = 0;
    while (cursor[0]) { /* "$": nothing is after the end */
        size_t page = 1000;
        if (limit > 0 && (unsigned long long)(limit - got) < page) page = (size_t)(limit - got);
        stx_entries *e = NULL;
        int rc = stx_read_range_all(c->client, stream, cursor, strcmp(to, "+") ? to : NULL, page, &e);
        if (rc != STX_OK) {
            jw_free(&w);
            if (rc == STX_EWINDOW_EXPIRED) return cli_fail_stx(c, rc, "window expired");
            return cli_fail_stx(c, rc, stream);
        }
        size_t n = stx_entries_count(e);
        for (size_t i = 0; i < n && (limit == 0 || got < limit); i++, got++)
            print_entry(c, &w, stx_entries_at(e, i), 0);
        snprintf(cursor, sizeof cursor, "%s", stx_entries_last_id(e));
        stx_entries_free(e);
        jw_flush(&w, stdout);
        if (n < page || (limit > 0 && got >= limit)) break;
    }
    if (c->json) {
        jw_arr_end(&w);
        jw_obj_end(&w);
        jw_print(&w, stdout);
    }
    jw_free(&w);
    return 0;
}

static volatile sig_atomic_t tail_stop;

static void on_tail_signal(int sig)
{
    (void)sig;
    tail_stop = 1;
}

/* One cursor per partition: entries of different partitions are not
 * ordered by id as they are added (each partition's ids rise on their
 * own), so a single cursor could skip an entry that arrives late in a
 * partition whose ids lag.  Each round reads every partition from its
 * cursor and prints what came, merged by id. */
int cli_tail_partitioned(cli *c, const char *stream, unsigned n, const char *after,
                         long long limit, long long block_ms)
{
    char (*cur)[64] = calloc(n, sizeof *cur);
    stx_entries **got = calloc(n, sizeof *got);
    size_t *at = calloc(n, sizeof *at);
    if (!cur || !got || !at) {
        free(cur);
        free(got);
        free(at);
        return cli_fail(c, CLI_EXIT_RUNTIME, "out of memory");
    }
    struct sigaction sa;
    memset(&sa, 0, sizeof sa);
    sa.sa_handler = on_tail_signal;
    sigaction(SIGINT, &sa, NULL);
    sigaction(SIGTERM, &sa, NULL);
    int rc = 0;
    for (unsigned i = 0; i < n; i++) {
        char part[1100];
        stx_partition_name(part, sizeof part, stream, i);
        snprintf(cur[i], sizeof cur[i], "%s", after);
        if (strcmp(after, "$") == 0) {
            stx_stream_info *info = NULL;
            int irc = stx_stream_info_get(c->client, part, &info);
            snprintf(cur[i], sizeof cur[i], "%s",
                     irc == STX_OK && info->last_id[0] ? info->last_id : "0-0");
            stx_stream_info_free(info);
        }
    }
    jw w;
    jw_init(&w);
    long long printed = 0, idle_ms = 0;
    while (!tail_stop && rc == 0 && (limit == 0 || printed < limit)) {
        size_t total = 0;
        for (unsigned i = 0; i < n && rc == 0; i++) {
            char part[1100];
            stx_partition_name(part, sizeof part, stream, i);
            at[i] = 0;
            int r = stx_read_range(c->client, part, cur[i], NULL, 100, &got[i]);
            if (r == STX_EWINDOW_EXPIRED) rc = cli_fail_stx(c, r, "window expired");
            else if (r != STX_OK) rc = cli_fail_stx(c, r, part);
            else total += stx_entries_count(got[i]);
        }
        for (;;) {
            unsigned best = n;
            for (unsigned i = 0; i < n; i++) {
                if (!got[i] || at[i] >= stx_entries_count(got[i])) continue;
                if (best == n) {
                    best = i;
                    continue;
                }
                unsigned long long am, as, bm, bs;
                sscanf(stx_msg_id(stx_entries_at(got[i], at[i])), "%llu-%llu", &am, &as);
                sscanf(stx_msg_id(stx_entries_at(got[best], at[best])), "%llu-%llu", &bm, &bs);
                if (am < bm || (am == bm && as < bs)) best = i;
            }
            if (best == n || (limit > 0 && printed >= limit)) break;
            const stx_msg *m = stx_entries_at(got[best], at[best]++);
            print_entry(c, &w, m, 1);
            snprintf(cur[best], sizeof cur[best], "%s", stx_msg_id(m));
            printed++;
        }
        for (unsigned i = 0; i < n; i++) {
            stx_entries_free(got[i]);
            got[i] = NULL;
        }
        jw_flush(&w, stdout);
        if (total == 0) {
            if (block_ms > 0 && idle_ms >= block_ms) break;
            struct timespec ts = {0, 100 * 1000000L};
            nanosleep(&ts, NULL);
            idle_ms += 100;
        } else {
            idle_ms = 0;
        }
    }
    jw_free(&w);
    free(cur);
    free(got);
    free(at);
    return rc;
}
