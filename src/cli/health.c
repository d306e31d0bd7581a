/* stx health: can streamtx work against this server, and how safely? */
#include "cli.h"

static const char help[] =
    "usage: stx health [--json]\n"
    "\n"
    "Check the server at --url (stx_health_get()):\n"
    "  version      redis_version (INFO server) must be 7 or later\n"
    "  role         a replica refuses writes (warning)\n"
    "  scripts      the library's Lua scripts load (SCRIPT LOAD)\n"
    "  appendonly   persistence: off is a warning, since a restart then loses\n"
    "               the commits made since the last RDB snapshot\n"
    "  appendfsync  always, everysec or no (no is a warning)\n"
    "  eviction     maxmemory with an evicting policy is a warning: streamtx's\n"
    "               offsets and state could be evicted\n"
    "\n"
    "Output: a table CHECK STATUS DETAIL, STATUS being ok, warn or fail.\n"
    "--json prints {\"healthy\":true|false,\"checks\":[{\"check\":..,\"status\":..,\n"
    "\"detail\":..}]}.\n"
    "When the server cannot be reached, --json still prints that object, with\n"
    "one failed check \"connect\" whose detail is the reason.\n"
    "Exit codes: 0 healthy (warnings included), 1 when a check failed or the\n"
    "server cannot be reached.\n";

static const char *status_name(stx_health_status s)
{
    return s == STX_HEALTH_OK ? "ok" : s == STX_HEALTH_WARN ? "warn" : "fail";
}

int cmd_health(cli *c, int argc, char **argv)
{
    int npos, rc;
    if ((rc = cli_parse(c, argc, argv, NULL, 0, 0, 0, &npos, help)) != 0)
        return rc;
    char err[1024];
    if ((rc = cli_client_open(c, &c->client, err, sizeof err)) != STX_OK) {
        stx_client_free(c->client);
        c->client = NULL;
        /* Scripts that ask for JSON get JSON, also when there is no server
         * to ask: one failed check, "connect". */
        if (c->json && rc != STX_EINVAL) {
            jw w;
            jw_init(&w);
            jw_obj(&w);
            jw_key(&w, "healthy");
            jw_bool(&w, 0);
            jw_key(&w, "checks");
            jw_arr(&w);
            jw_obj(&w);
            jw_key(&w, "check");
            jw_str(&w, "connect");
            jw_key(&w, "status");
            jw_str(&w, "fail");
            jw_key(&w, "detail");
            jw_str(&w, cli_connect_reason(err));
            jw_obj_end(&w);
            jw_arr_end(&w);
            jw_obj_end(&w);
            jw_print(&w, stdout);
            jw_free(&w);
        }
        return cli_fail_connect(c, rc, err);
    }
    stx_health *h;
    if ((rc = stx_health_get(c->client, &h)) != STX_OK)
        return cli_fail_stx(c, rc, NULL);

    const stx_health_check *failed = NULL;
    for (size_t i = 0; i < h->nchecks && !failed; i++)
        if (h->checks[i].status == STX_HEALTH_FAIL)
            failed = &h->checks[i];

    if (c->json) {
        jw w;
        jw_init(&w);
        jw_obj(&w);
        jw_key(&w, "healthy");
        jw_bool(&w, h->healthy);
        jw_key(&w, "checks");
        jw_arr(&w);
        for (size_t i = 0; i < h->nchecks; i++) {
            jw_obj(&w);
            jw_key(&w, "check");
            jw_str(&w, h->checks[i].name);
            jw_key(&w, "status");
            jw_str(&w, status_name(h->checks[i].status));
            jw_key(&w, "detail");
            jw_str(&w, h->checks[i].detail);
            jw_obj_end(&w);
        }
        jw_arr_end(&w);
        jw_obj_end(&w);
        jw_print(&w, stdout);
        jw_free(&w);
    } else {
        table t;
        tbl_init(&t, 3);
        tbl_cell(&t, "CHECK");
        tbl_cell(&t, "STATUS");
        tbl_cell(&t, "DETAIL");
        for (size_t i = 0; i < h->nchecks; i++) {
            tbl_cell(&t, h->checks[i].name);
            tbl_cell(&t, status_name(h->checks[i].status));
            tbl_cell(&t, h->checks[i].detail);
        }
        tbl_print(&t, stdout);
        tbl_free(&t);
    }
    if (failed)
        rc = cli_fail(c, CLI_EXIT_RUNTIME, "unhealthy: %s: %s", failed->name, failed->detail);
    stx_health_free(h);
    return rc;
}
