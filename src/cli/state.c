/* stx state get STREAM GROUP KEY, stx state dump STREAM GROUP */
#include <stdlib.h>
#include <string.h>

#include "cli.h"

static const char help[] =
    "usage: stx state get STREAM GROUP KEY [--json]\n"
    "       stx state dump STREAM GROUP [--json]\n"
    "\n"
    "The committed state of (STREAM, GROUP) as stored in Redis, each value\n"
    "decoded from msgpack to JSON.  dump lists every key, sorted by key bytes.\n"
    "\n"
    "Output: one line per key, KEY<TAB>JSON, with tabs, newlines, backslashes,\n"
    "other control bytes and invalid UTF-8 in KEY escaped (\\t \\n \\\\ \\xNN).\n"
    "--json: get prints {\"key\":KEY,\"value\":JSON}; dump prints one object\n"
    "{KEY:JSON,...}.\n"
    "\n"
    "msgpack to JSON: nil, booleans, integers, arrays and maps as in JSON;\n"
    "floats with 17 significant digits, NaN and infinities as null; str as a\n"
    "JSON string in which each byte that is not valid UTF-8 appears as \\u00XX\n"
    "(the Latin-1 character of that byte; the same for keys); bin as\n"
    "{\"$bin\":\"BASE64\"}; ext as {\"$ext\":TYPE,\"$bin\":\"BASE64\"}; a map key that\n"
    "is not a str becomes the JSON string of its JSON text (1 -> \"1\").  A value\n"
    "that is not valid msgpack is shown as {\"$invalid\":\"BASE64\"} with a warning\n"
    "on stderr; the exit code stays 0.\n"
    "\n"
    "Exit codes: 3 when the key (get) or the stream or group (dump) does not\n"
    "exist, 4 when the state key of the group is not a hash.\n";

static void warn_invalid(cli *c, const void *key, size_t key_len)
{
    jbuf k;
    jb_init(&k);
    jb_human_str(&k, key, key_len, 0);
    cli_warn(c, "the value of key '%s' is not valid msgpack; shown as {\"$invalid\":...}",
             k.p ? k.p : "");
    jb_free(&k);
}

static int state_failed(cli *c, int rc, const char *stream, const char *group)
{
    if (rc == STX_EWRONGTYPE)
        return cli_fail(c, CLI_EXIT_WRONGTYPE, "the state key of '%s'/'%s' is not a hash", stream,
                        group);
    return cli_fail_stx(c, rc, NULL);
}

static int state_get(cli *c, int argc, char **argv)
{
    int npos, rc;
    if ((rc = cli_parse(c, argc, argv, NULL, 0, 3, 3, &npos, help)) != 0)
        return rc;
    const char *stream = argv[0], *group = argv[1], *key = argv[2];
    if ((rc = cli_connect(c)) != 0)
        return rc;
    void *value = NULL;
    size_t len = 0;
    rc = stx_state_read(c->client, stream, group, key, strlen(key), &value, &len);
    if (rc == STX_ENOTFOUND)
        return cli_fail(c, CLI_EXIT_NOTFOUND, "no state key '%s' for stream '%s', group '%s'",
                        key, stream, group);
    if (rc != STX_OK) {
        free(value);
        return state_failed(c, rc, stream, group);
    }
    jw w;
    jw_init(&w);
    if (c->json) {
        jw_obj(&w);
        jw_key(&w, "key");
        jw_str(&w, key);
        jw_key(&w, "value");
        jw_value_prefix(&w);
    } else {
        jb_human_str(&w.b, key, strlen(key), 0);
        jb_putc(&w.b, '\t');
    }
    if (mp_to_json(&w.b, value, len) != 0)
        warn_invalid(c, key, strlen(key));
    if (c->json)
        jw_obj_end(&w);
    jw_print(&w, stdout);
    jw_free(&w);
    free(value);
    return 0;
}

typedef struct kv {
    char *key;
    size_t key_len;
    char *json; /* the value as JSON text */
    size_t json_len;
} kv;

typedef struct dump_ctx {
    cli *c;
    kv *items;
    size_t n, cap;
} dump_ctx;

static int collect(void *ud, const void *key, size_t key_len, const void *value,
                   size_t value_len)
{
    dump_ctx *d = ud;
    if (d->n == d->cap) {
        size_t cap = d->cap ? 2 * d->cap : 64;
        kv *items = realloc(d->items, cap * sizeof *items);
        if (!items)
            return STX_ENOMEM;
        d->items = items;
        d->cap = cap;
    }
    kv *it = &d->items[d->n];
    jbuf v;
    jb_init(&v);
    if (mp_to_json(&v, value, value_len) != 0)
        warn_invalid(d->c, key, key_len);
    it->key = malloc(key_len + 1);
    if (!it->key) {
        jb_free(&v);
        return STX_ENOMEM;
    }
    if (key_len)
        memcpy(it->key, key, key_len);
    it->key[key_len] = '\0';
    it->key_len = key_len;
    it->json_len = v.len;
    it->json = jb_take(&v);
    d->n++;
    return 0;
}

static int kv_cmp(const void *a, const void *b)
{
    const kv *x = a, *y = b;
    size_t n = x->key_len < y->key_len ? x->key_len : y->key_len;
    int r = n ? memcmp(x->key, y->key, n) : 0;
    if (r)
        return r;
    return (x->key_len > y->key_len) - (x->key_len < y->key_len);
}

/* An empty state: say so when the stream or the group does not exist. */
static int check_exists(cli *c, const char *stream, const char *group)
{
    return cli_group_check(c, stream, group);
}

static int state_dump(cli *c, int argc, char **argv)
{
    int npos, rc;
    if ((rc = cli_parse(c, argc, argv, NULL, 0, 2, 2, &npos, help)) != 0)
        return rc;
    const char *stream = argv[0], *group = argv[1];
    if ((rc = cli_connect(c)) != 0)
        return rc;
    dump_ctx d = {c, NULL, 0, 0};
    rc = stx_state_scan(c->client, stream, group, collect, &d);
    int code = 0;
    if (rc == STX_ENOMEM)
        code = cli_fail(c, CLI_EXIT_RUNTIME, "out of memory");
    else if (rc != STX_OK)
        code = state_failed(c, rc, stream, group);
    else if (d.n == 0)
        code = check_exists(c, stream, group);
    if (code == 0) {
        if (d.n > 1)
            qsort(d.items, d.n, sizeof *d.items, kv_cmp);
        jw w;
        jw_init(&w);
        if (c->json)
            jw_obj(&w);
        for (size_t i = 0; i < d.n; i++) {
            if (c->json) {
                jw_keyn(&w, d.items[i].key, d.items[i].key_len);
                jw_raw(&w, d.items[i].json, d.items[i].json_len);
            } else {
                jb_human_str(&w.b, d.items[i].key, d.items[i].key_len, 0);
                jb_putc(&w.b, '\t');
                jb_put(&w.b, d.items[i].json, d.items[i].json_len);
                jb_putc(&w.b, '\n');
            }
        }
        if (c->json) {
            jw_obj_end(&w);
            jw_print(&w, stdout);
        } else {
            jw_flush(&w, stdout);
        }
        jw_free(&w);
    }
    for (size_t i = 0; i < d.n; i++) {
        free(d.items[i].key);
        free(d.items[i].json);
    }
    free(d.items);
    return code;
}

int cmd_state(cli *c, int argc, char **argv)
{
    if (argc >= 1 && strcmp(argv[0], "get") == 0) {
        c->sub = "state get";
        return state_get(c, argc - 1, argv + 1);
    }
    if (argc >= 1 && strcmp(argv[0], "dump") == 0) {
        c->sub = "state dump";
        return state_dump(c, argc - 1, argv + 1);
    }
    if (argc >= 1 && (strcmp(argv[0], "--help") == 0 || strcmp(argv[0], "-h") == 0)) {
        cli_help(help);
        return -1;
    }
    if (argc == 0)
        return cli_fail(c, CLI_EXIT_USAGE, "missing subcommand: get or dump (see stx state --help)");
    return cli_fail(c, CLI_EXIT_USAGE, "unknown subcommand '%s': expected get or dump", argv[0]);
}
