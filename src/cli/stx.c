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
    "  streams                           streams with streamtx groups, and their lag\n"
    "  info STREAM                       length, ids and consumer groups of a stream\n"
    "  create STREAM --partitions P      create a partitioned stream (--grow: raise P)\n"
    "  members STREAM GROUP              live members of a partitioned stream's group\n"
    "  produce STREAM FIELD=VALUE...     add an entry (optionally idempotent)\n"
    "  tail STREAM                       print entries as they arrive\n"
    "  replay STREAM --from X --to Y     print the entries between two positions\n"
    "  pending STREAM GROUP              entries delivered to a group, not acknowledged\n"
    "  dlq list STREAM GROUP             dead-lettered entries of a group\n"
    "  dlq redrive STREAM GROUP [ID...]  move dead-lettered entries back to the stream\n"
    "  state get STREAM GROUP KEY        one state value, decoded from msgpack to JSON\n"
    "  state dump STREAM GROUP           every state value of a group\n"
    "  reset STREAM GROUP --to POSITION  move a group to another position\n"
    "  group delete STREAM GROUP         delete a group and every key of it\n"
    "  trim STREAM --safe                trim entries every group has processed\n"
    "  archive STREAM --pg URL           copy the stream into PostgreSQL, exactly once\n"
    "  relay STREAM GROUP                forward a group's outbox to its targets\n"
    "  health                            server version, scripts, persistence\n"
    "  top [STREAM [GROUP]]              live view of groups and their processors\n"
    "  serve                             HTTP gateway: produce, history, live SSE and\n"
    "                                    WebSocket, /metrics, web console\n"
    "  version                           as --version\n"
    "  help [COMMAND]                    this text, or a command's\n"
    "Run 'stx COMMAND --help' for the options of a command.\n"
    "\n"
    "Global options (before or after the command):\n"
    "  --json      print one JSON document on stdout (tail: one JSON object per\n"
    "              line); errors become one JSON object on stderr:\n"
    "              {\"error\":..,\"command\":..,\"code\":..,\"exit\":N}\n"
    "  --help      this text, or a command's (stx COMMAND --help)\n"
    "  --version   the version of stx and of the streamtx library it runs with\n"
    "  --          end of options: later words are arguments even when they\n"
    "              start with '-'\n"
    "\n"
    "Positions (where reset, tail and replay start or stop), one grammar:\n"
    "  beginning, -, 0      the start of the stream\n"
    "  end, $, +            the end, after the last entry\n"
    "  MS-SEQ, MS           an entry id (MS alone: that whole millisecond)\n"
    "  RFC 3339 time        2026-11-22T10:00:00Z, 2026-11-22T11:00:00.250+01:00\n"
    "  @MS                  a time in milliseconds since the Unix epoch\n"
    "  DURATION             that long ago: 30s, 30m, 1h, 2d, 1w, 1h30m\n"
    "Lists (pending, dlq list) show 100 rows unless given another limit.\n"
    "\n"
    "Exit codes:\n"
    "  0  success\n"
    "  1  runtime error: Redis or connection failure; health: server not healthy\n"
    "  2  usage error or bad input: unknown command or option, missing argument,\n"
    "     bad id, position, number or duration\n"
    "  3  not found: unknown stream, group, state key or dead letter\n"
    "  4  wrong type: a key holds another Redis type than expected\n"
    "  5  conflict: idempotency key already used with other fields\n"
    "  6  window expired: entries asked for were trimmed from the stream\n"
    "  7  declined: the answer at a confirmation prompt was no; nothing changed\n"
    "Errors are one line on stderr: \"stx: COMMAND: message\" (JSON with --json).\n"
    "A TLS option that the library does not know is a usage error (exit 2).\n";

static int cmd_version(cli *c, int argc, char **argv);
static int cmd_help(cli *c, int argc, char **argv);

static const struct command {
    const char *name;
    int (*run)(cli *c, int argc, char **argv);
} commands[] = {
    {"info", cmd_info},       {"produce", cmd_produce}, {"tail", cmd_tail},
    {"replay", cmd_replay},   {"pending", cmd_pending}, {"dlq", cmd_dlq},
    {"state", cmd_state},     {"reset", cmd_reset},     {"trim", cmd_trim},
    {"health", cmd_health},   {"top", cmd_top},         {"streams", cmd_streams},
    {"group", cmd_group},     {"version", cmd_version}, {"help", cmd_help},
    {"create", cmd_create},   {"members", cmd_members}, {"relay", cmd_relay},
    {"archive", cmd_archive},
    {"serve", cmd_serve},
};

#define NCOMMANDS (sizeof commands / sizeof commands[0])

static int cmd_version(cli *c, int argc, char **argv)
{
    int npos, rc;
    if ((rc = cli_parse(c, argc, argv, NULL, 0, 0, 0, &npos,
                        "usage: stx version\n\nThe version of stx and of the streamtx library "
                        "it runs with (as stx --version).\n")) != 0)
        return rc;
    cli_print_version();
    return 0;
}

/* stx help [COMMAND]: the command's own --help. */
static int cmd_help(cli *c, int argc, char **argv)
{
    if (argc > 0 && (strcmp(argv[0], "--help") == 0 || strcmp(argv[0], "-h") == 0)) {
        cli_help("usage: stx help [COMMAND]\n\nThe usage text of stx, or a command's (as stx "
                 "COMMAND --help).\n");
        return 0;
    }
    if (argc == 0) {
        cli_help(usage);
        return 0;
    }
    for (size_t k = 0; k < NCOMMANDS; k++)
        if (strcmp(argv[0], commands[k].name) == 0 && commands[k].run != cmd_help) {
            char help_word[] = "--help";
            char *args[3] = {argv[0], help_word, NULL};
            c->sub = commands[k].name;
            /* dlq and state take a subcommand first: "help dlq list". */
            if (argc > 1 && argv[1][0] != '-') {
                char *sub_args[3] = {argv[1], help_word, NULL};
                return commands[k].run(c, 2, sub_args);
            }
            return commands[k].run(c, 1, args + 1);
        }
    return cli_fail(c, CLI_EXIT_USAGE, "unknown command '%s' (see stx --help)", argv[0]);
}

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
        return cli_fail(&c, CLI_EXIT_USAGE, "missing COMMAND (see stx --help)");

    const struct command *cmd = NULL;
    for (size_t k = 0; k < NCOMMANDS; k++)
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
