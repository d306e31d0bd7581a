/* stx produce STREAM FIELD=VALUE... */
#include <stdlib.h>
#include <string.h>

#include "cli.h"

static const char help[] =
    "usage: stx produce STREAM FIELD=VALUE... [--idempotency-key K] [--maxlen N]\n"
    "                   [--json]\n"
    "\n"
    "Add one entry to STREAM and print its id.  Each FIELD=VALUE is split at its\n"
    "first '='; the value may be empty or hold further '=' signs.\n"
    "\n"
    "  --idempotency-key K  add the entry only once for K: a repeated call with the\n"
    "                       same fields prints the first id followed by\n"
    "                       \"duplicate\"; the same key with other fields fails\n"
    "                       with exit code 5\n"
    "  --maxlen N           trim the stream to about N entries (XADD MAXLEN ~ N)\n"
    "\n"
    "Output: ID, or \"ID duplicate\".  --json: {\"id\":\"...\",\"duplicate\":false}\n"
    "Exit codes: 4 when STREAM is not a stream, 5 on an idempotency conflict.\n";

int cmd_produce(cli *c, int argc, char **argv)
{
    cli_opt opts[] = {{"--idempotency-key", 1, NULL}, {"--maxlen", 1, NULL}};
    int npos, rc;
    if ((rc = cli_parse(c, argc, argv, opts, 2, 2, -1, &npos, help)) != 0)
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
        jw_obj_end(&w);
        jw_print(&w, stdout);
        jw_free(&w);
    } else {
        printf("%s%s\n", res.id, res.duplicate ? " duplicate" : "");
    }
    return 0;
}
