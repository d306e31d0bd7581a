/*
 * counter: count the entries of a stream per value of one of their fields.
 *
 *   counter run --stream clicks --group per-page --field page
 *   counter report --stream clicks --group per-page
 *
 * Each count is a state key (the field's value) holding a msgpack integer,
 * raised with stx_txn_incr().  The increment commits together with the
 * acknowledgement and the stream offset, so after any crash or restart each
 * entry has been counted exactly once.  "report" reads the committed counts
 * with a plain client: the state is an ordinary Redis hash.
 */
#include <stdio.h>
#include <string.h>

#include "common.h"
#include "streamtx.h"

#define NO_KEY "(none)"

static const char usage[] =
    "usage: counter run --stream S --group G [--field NAME] [options]\n"
    "       counter report --stream S --group G [--url URL]\n"
    "\n"
    "run: count the entries of stream S (consumer group G) per value of the\n"
    "field NAME (default \"key\"); entries without it count under \"" NO_KEY "\".\n"
    "report: print \"KEY COUNT\" lines, sorted by key, from the committed state.\n"
    "\n" EX_COMMON_HELP
    "  --field NAME       field whose value is the key (run only)\n"
    "\n"
    "Exit status: 0 stopped or idle, 1 error, 2 usage error, 3 fenced.\n";

/*
 * Everything the handler does goes through txn, and it may run more than
 * once for one entry (after a crash or a failed commit): a C counter here
 * would count a retried entry twice; stx_txn_incr() does not.
 */
static int handle(const stx_msg *msg, stx_txn *txn, void *user_data)
{
    const char *field = user_data;
    size_t len = 0;
    const char *key = stx_msg_get(msg, field, &len);
    if (!key || len == 0) {
        key = NO_KEY;
        len = strlen(NO_KEY);
    }
    /* STX_OK is STX_HANDLER_OK; an error code passes through as the verdict
     * (STX_ENOMEM: retry; STX_ETYPE, a value that is not an integer: fail). */
    return stx_txn_incr(txn, key, len, 1, NULL);
}

int main(int argc, char **argv)
{
    static const char *const commands[] = {"run", "report", NULL}, *const own[] = {"--field", NULL};
    ex_args a;
    int status = ex_parse(&a, "counter", usage, commands, own, argc, argv);
    if (status >= 0) return status;
    if (a.command == 1) return ex_report(&a, ex_print_i64);
    return ex_run(&a, handle, (void *)(a.own[0] ? a.own[0] : "key"), NULL);
}
