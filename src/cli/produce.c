/* stx produce STREAM FIELD=VALUE... */
#include <stdlib.h>
#include <string.h>

#include "cli.h"

static const char help[] =
    "usage: stx produce STREAM FIELD=VALUE... [--key K] [--idempotency-key K]\n"
    "                   [--maxlen N] [--json]\n"
    "\n"
    "Add one entry to STREAM and print its id.  Each FIELD=VALUE is split at its\n"
    "first '='; the value may be empty or hold further '=' signs.\n"
    "\n"
    "  --idempotency-key K  add the entry only once for K: a repeated call with the\n"
    "                       same fields prints the first id followed by\n"
    "                       \"duplicate\"; the same key with other fields fails\n"
    "                       with exit code 5\n"
    "  --maxlen N           trim the stream to about N entries (XADD MAXLEN ~ N)\n"
    "  --key K              the message key of a partitioned stream (stx create):\n"
    "                       the entry goes to partition crc32(K) % P; without\n"
    "                       --key, to crc32(idempotency key) % P, else to the\n"
    "                       partitions in turn\n"
    "\n"
    "Output: ID, or \"ID duplicate\"; for a partitioned stream \"ID partition N\".\n"
    "--json: {\"id\":\"...\",\"duplicate\":false} (and \"partition\":N)\n"
    "Exit codes: 3 for --key when STREAM is not partitioned, 4 when STREAM is not\n"
    "a stream, 5 on an idempotency conflict.\n";

int cmd_produce(cli *c, int argc, char **argv)
{
    cli_opt opts[] = {{"--idempotency-key", 1, NULL}, {"--maxlen", 1, NULL}, {"--key", 1, NULL}};
    int npos, rc;
    if ((rc = cli_parse(c, argc, argv, opts, 3, 2, -1, &npos, help)) != 0)
        return rc;
    stx_produce_opts po;
    memset(&po, 0, sizeof po);
    po.idempotency_key = opts[0].value;
    if (opts[1].value && (rc = cli_opt_ll(c, &opts[1], 1, &po.maxlen)) != 0)
        return rc;

    const char *stream = argv[0];
    size_t nfields = (size_t)npos - 1;
    stx_field *fields = calloc(nfields, sizeof *fields);
    if (!fields)
        return cli_fail(c, CLI_EXIT_RUNTIME, "out of memory");
    for (size_t i = 0; i < nfields; i++) {
        const char *a = argv[i + 1];
        const char *eq = strchr(a, '=');
        if (!eq) {
            free(fields);
            return cli_fail(c, CLI_EXIT_USAGE, "bad field '%s': expected FIELD=VALUE", a);
        }
        fields[i].name = a;
        fields[i].name_len = (size_t)(eq - a);
        fields[i].value = eq + 1;
        fields[i].value_len = strlen(eq + 1);
    }
    if ((rc = cli_connect(c)) != 0) {
        free(fields);
        return rc;
    }
    stx_produce_result res;
    memset(&res, 0, sizeof res);
    unsigned nparts = 0, partition = 0;
    int partitioned = stx_stream_partitions(c->client, stream, &nparts) == STX_OK;
    if (opts[2].value && !partitioned) {
        free(fields);
        return cli_fail(c, CLI_EXIT_NOTFOUND, "--key: '%s' is not a partitioned stream (stx create)",
                        stream);
    }
    if (partitioned)
        rc = stx_produce_keyed(c->client, stream, opts[2].value,
                               opts[2].value ? strlen(opts[2].value) : 0, fields, nfields, &po,
                               &res, &partition);
    else
        rc = stx_produce(c->client, stream, fields, nfields, &po, &res);
    free(fields);
    if (rc == STX_EWRONGTYPE)
        return cli_fail(c, CLI_EXIT_WRONGTYPE, "key '%s' is not a stream", stream);
    if (rc == STX_ECONFLICT)
        return cli_fail(c, CLI_EXIT_CONFLICT,
                        "idempotency key '%s' was already used with different fields",
                        po.idempotency_key ? po.idempotency_key : "");
    if (rc != STX_OK)
        return cli_fail_stx(c, rc, NULL);
    if (c->json) {
        jw w;
        jw_init(&w);
        jw_obj(&w);
        jw_key(&w, "id");
        jw_str(&w, res.id);
        jw_key(&w, "duplicate");
        jw_bool(&w, res.duplicate);
        if (partitioned) {
            jw_key(&w, "partition");
            jw_i64(&w, partition);
        }
        jw_obj_end(&w);
        jw_print(&w, stdout);
        jw_free(&w);
    } else {
        printf("%s%s", res.id, res.duplicate ? " duplicate" : "");
        if (partitioned)
            printf(" partition %u", partition);
        putchar('\n');
    }
    return 0;
}
