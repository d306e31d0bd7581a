/* stx: the streamtx command-line tool.  Global options, dispatch to the
 * subcommands (one file per group), exit codes. */
#include <string.h>

#include "cli.h"

static const char usage[] =
    "usage: stx [--url URL] [--tls...] [--json] COMMAND [ARGS...]\n"
    "\n"
    "Inspect and operate streams processed with streamtx.\n"
    "\n"
    "Commands:\n"
    "  info STREAM                       length, ids and consumer groups of a stream\n"
    "  produce STREAM FIELD=VALUE...     add an entry (optionally idempotent)\n"
    "  tail STREAM                       print entries as they arrive\n"
    "  replay STREAM --from X --to Y     print the entries of an id or time range\n"
    "  pending STREAM GROUP              entries delivered to a group, not acknowledged\n"
    "  dlq list STREAM GROUP             dead-lettered entries of a group\n"
    "  dlq redrive STREAM GROUP [ID...]  move dead-lettered entries back to the stream\n"
    "  state get STREAM GROUP KEY        one state value, decoded from msgpack to JSON\n"
    "  state dump STREAM GROUP           every state value of a group\n"
    "  reset STREAM GROUP --to POSITION  move a group to another position\n"
    "  trim STREAM --safe                trim entries every group has processed\n"
    "  health                            server version, scripts, persistence\n"
    "  top [STREAM [GROUP]]              live view of groups and their processors\n"
    "Run 'stx COMMAND --help' for the options of a command.\n"
    "\n"
    "Global options (before or after the command):\n"
    "  --json      print one JSON document on stdout (tail: one JSON object per line)\n"
    "  --help      this text, or a command's (stx COMMAND --help)\n"
    "  --version   the version of stx and of the streamtx library\n"
    "  --          end of options: later words are arguments even when they\n"
    "              start with '-'\n"
    "\n"
    "Ids are MS-SEQ (or MS); times are ISO-8601 UTC: 2026-11-22T10:00:00Z, with an\n"
    "optional .mmm before the Z.\n"
    "\n"
    "Exit codes:\n"
    "  0  success\n"
    "  1  runtime error: Redis or connection failure; health: server not healthy\n"
    "  2  usage error or bad input: unknown command or option, missing argument,\n"
    "     bad id, time, number or duration\n"
    "  3  not found: unknown stream, group or state key\n"
    "  4  wrong type: a key holds another Redis type than expected\n"
    "  5  conflict: idempotency key already used with other fields\n"
    "  6  window expired: entries asked for were trimmed from the stream\n"
    "Errors are one line on stderr: \"stx: COMMAND: message\".\n"
    "A TLS option that the library does not know is a usage error (exit 2).\n";

static const struct command {
    const char *name;
    int (*run)(cli *c, int argc, char **argv);
} commands[] = {
    {"info", cmd_info},       {"produce", cmd_produce}, {"tail", cmd_tail},
    {"replay", cmd_replay},   {"pending", cmd_pending}, {"dlq", cmd_dlq},
    {"state", cmd_state},     {"reset", cmd_reset},     {"trim", cmd_trim},
    {"health", cmd_health},   {"top", cmd_top},
};

int main(int argc, char **argv)
{
    cli c;
    cli_init(&c);

    /* Global options before the command. */
    int i, rc = cli_parse_main(&c, argc, argv, usage, &i);
    if (rc == -1)
        return cli_finish(&c);
    if (rc != 0)
        return rc;
    if (i >= argc)
        return cli_fail(&c, CLI_EXIT_USAGE, "missing command (see stx --help)");

    const struct command *cmd = NULL;
    for (size_t k = 0; k < sizeof commands / sizeof commands[0]; k++)
        if (strcmp(argv[i], commands[k].name) == 0)
            cmd = &commands[k];
    if (!cmd) {
        c.sub = argv[i];
        return cli_fail(&c, CLI_EXIT_USAGE, "unknown command (see stx --help)");
    }
    c.sub = cmd->name;
    rc = cmd->run(&c, argc - i - 1, argv + i + 1);
    stx_client_free(c.client);
    c.client = NULL;
    if (rc < 0) /* --help */
        rc = 0;
    int frc = cli_finish(&c);
    return rc ? rc : frc;
}
