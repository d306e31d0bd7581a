/* The stx command-line tool: what its subcommands share. */
#ifndef STX_CLI_H
#define STX_CLI_H

#include <stddef.h>
#include <stdint.h>
#include <stdio.h>

#include "json.h"
#include "streamtx.h"

/* Exit codes, documented in `stx --help`. */
enum {
    CLI_EXIT_OK = 0,
    CLI_EXIT_RUNTIME = 1,   /* Redis or connection error, anything unexpected */
    CLI_EXIT_USAGE = 2,     /* bad arguments or input */
    CLI_EXIT_NOTFOUND = 3,  /* unknown stream, group or key */
    CLI_EXIT_WRONGTYPE = 4, /* a key holds the wrong Redis type */
    CLI_EXIT_CONFLICT = 5,  /* idempotency key reused with other content */
    CLI_EXIT_WINDOW = 6,    /* the requested entries were trimmed away */
    CLI_EXIT_DECLINED = 7   /* "no" at a confirmation prompt: nothing changed */
};

/* The default number of rows of a list (pending, dlq list). */
#define CLI_LIST_LIMIT 100

#define STX_DEFAULT_URL "redis://127.0.0.1:6379"

/* Connection settings beyond --url, each mapped to a configuration key of
 * the library.  Set only when given (option or environment), so that a
 * library without a key is asked for it only by those who use it. */
enum {
    CLI_TLS,            /* --tls: tls = 1 */
    CLI_TLS_CA_FILE,    /* --tls-ca-file, $STX_TLS_CA_FILE: tls_ca_file */
    CLI_TLS_CA_DIR,     /* --tls-ca-dir, $STX_TLS_CA_DIR: tls_ca_dir */
    CLI_TLS_CERT_FILE,  /* --tls-cert-file, $STX_TLS_CERT_FILE: tls_cert_file */
    CLI_TLS_KEY_FILE,   /* --tls-key-file, $STX_TLS_KEY_FILE: tls_key_file */
    CLI_TLS_SERVER_NAME, /* --tls-server-name, $STX_TLS_SERVER_NAME: tls_server_name */
    CLI_TLS_INSECURE,   /* --tls-insecure, $STX_TLS_INSECURE=1: tls_verify = 0 */
    CLI_NSETTINGS
};

typedef struct cli_setting {
    const char *value;      /* NULL: not given */
    const char *from;       /* "--tls-ca-file" or "$STX_TLS_CA_FILE", for messages */
} cli_setting;

/* One run of the tool. */
typedef struct cli {
    const char *sub;        /* subcommand, for messages ("info", "dlq list") */
    const char *url;        /* --url, $STX_URL or the default */
    int json;               /* --json */
    long command_timeout_ms; /* 0: the library's default */
    cli_setting set[CLI_NSETTINGS];
    stx_client *client;     /* opened by cli_connect(), freed by main */
} cli;

/* The connection options and their environment variables: what --url and
 * CLI_TLS* read (main calls it before parsing the options). */
void cli_init(cli *c);
/* The --help text of every command that connects, after its own. */
extern const char cli_connection_help[];
/* "stx X.Y.Z" (as compiled) and "streamtx library X.Y.Z" (stx_version())
 * on stdout. */
void cli_print_version(void);
/* Print help followed by cli_connection_help on stdout. */
void cli_help(const char *help);
/* Print "stx: SUB: MESSAGE" as one line on stderr (newlines and control
 * bytes in the message are escaped) and return code.  With --json the line
 * is {"error":MESSAGE,"command":SUB,"code":NAME,"exit":code}. */
int cli_fail(const cli *c, int code, const char *fmt, ...)
#if defined(__GNUC__)
    __attribute__((format(printf, 3, 4)))
#endif
    ;
/* "stx: SUB: warning: MESSAGE" on stderr. */
void cli_warn(const cli *c, const char *fmt, ...)
#if defined(__GNUC__)
    __attribute__((format(printf, 2, 3)))
#endif
    ;
/* Exit code of an STX_* code. */
int cli_exit_code(int rc);
/* Report the failure rc of a library call: what (may be NULL) followed by
 * the client's message or, without one, stx_strerror(rc).  Returns the
 * exit code. */
int cli_fail_stx(const cli *c, int rc, const char *what);
/* A stream-level failure: not found (exit 3), wrong type (exit 4), else as
 * cli_fail_stx(). */
int cli_fail_stream(const cli *c, int rc, const char *stream);
/* "stream 'S' has no group 'G'" (exit 3): the one wording of a missing
 * stream or group in the commands that take both. */
int cli_fail_nogroup(const cli *c, const char *stream, const char *group);
/* 0 when the stream exists and has the group; else the exit code after
 * the message (cli_fail_nogroup(), or a wrong type or Redis error). */
int cli_group_check(cli *c, const char *stream, const char *group);

/* Connect c->client to c->url.  0 or an exit code (message printed). */
int cli_connect(cli *c);
/* Report the failure rc of cli_client_open() (its message err) as
 * cli_connect() does; returns the exit code. */
int cli_fail_connect(const cli *c, int rc, const char *err);
/* err of cli_client_open() without the operation's name. */
const char *cli_connect_reason(const char *err);
/* Open a new client for c->url without printing anything: an STX_* code,
 * the reason in err.  *out is set as stx_client_new() sets it. */
int cli_client_open(const cli *c, stx_client **out, char *err, size_t errlen);

/* ------------------------------------------------------------------ */
/* argument parsing                                                     */

/* One option of a subcommand.  value is NULL until seen; a flag (has_arg
 * 0) gets "1". */
typedef struct cli_opt {
    const char *name;       /* "--count" */
    int has_arg;
    const char *value;
} cli_opt;

/* Parse args (the words after the subcommand) with getopt_long against
 * opts plus the global options (--url, --json, the TLS options, --help).
 * Options may come before, after or between positionals, as --name value
 * or --name=value; "--" ends them; names must be spelled in full.
 * Positionals are moved to the front of argv and counted in *npos.
 * Returns 0, -1 when --help was given (help printed: exit 0), or an exit
 * code after printing a usage error.  min_pos/max_pos bound the number of
 * positionals (max_pos < 0: no bound). */
int cli_parse(cli *c, int argc, char **argv, cli_opt *opts, size_t nopts, int min_pos,
              int max_pos, int *npos, const char *help);
/* main's options before the command: the global ones and --version.
 * *cmd gets the index of the command word in argv (argc when none).
 * 0, -1 after --help or --version, or an exit code. */
int cli_parse_main(cli *c, int argc, char **argv, const char *help, int *cmd);
/* A non-negative integer option; 0 or an exit code (message printed). */
int cli_opt_ll(const cli *c, const cli_opt *o, long long min, long long *out);

/* ------------------------------------------------------------------ */
/* ids, times and durations                                             */

typedef struct cli_id {
    uint64_t ms, seq;
    int has_seq;            /* "MS" alone leaves it 0 */
} cli_id;

/* "MS-SEQ" or "MS" (decimal, no sign).  0 or -1. */
int cli_parse_id(const char *s, cli_id *out);
/* A duration: one or more NUMBER UNIT pairs, units ms, s, m, h, d, w
 * ("7d", "1h30m").  0 or -1. */
int cli_parse_duration(const char *s, int64_t *ms);

/* Parse s, the value of option opt ("--to"), as a position of the one
 * grammar (stx_position_parse(), durations from now).  0, or
 * CLI_EXIT_USAGE after a message that lists the grammar. */
int cli_position(const cli *c, const char *opt, const char *s, stx_position *out);
/* Resolve a position into the bound that stx_read_range() and stx_tail()
 * take, written to out (cap >= 48): is_end 0, the exclusive cursor before
 * the first entry to include (stx_position_after(): "0-0" for the start,
 * "$" for the end); is_end 1, the last id to include
 * (stx_position_until(): "+" for the end).  0 or CLI_EXIT_USAGE. */
int cli_point(const cli *c, const char *opt, const char *s, int is_end, char *out,
              size_t cap);

/* Current time in milliseconds since the epoch. */
int64_t cli_now_ms(void);

/* ------------------------------------------------------------------ */
/* output                                                               */

/* A table printed with aligned columns (two spaces apart). */
typedef struct table {
    size_t ncols, ncells, cap;
    char **cells;
} table;

void tbl_init(table *t, size_t ncols);
void tbl_free(table *t);
/* Add the next cell (copied; escaped with jb_human_str). */
void tbl_cell(table *t, const char *s);
void tbl_celln(table *t, const void *s, size_t n);
/* Add text that was escaped already (copied as it is). */
void tbl_cell_escaped(table *t, const char *s);
void tbl_cellf(table *t, const char *fmt, ...)
#if defined(__GNUC__)
    __attribute__((format(printf, 2, 3)))
#endif
    ;
void tbl_print(const table *t, FILE *f);

/* Append the entry as a human line: "ID field=value ..." (logfmt quoting,
 * no newline). */
void out_entry_line(jbuf *b, const stx_msg *m);
/* Write the entry as a JSON object {"id":...,"fields":{...}}. */
void out_entry_json(jw *w, const stx_msg *m);
/* The same with "partition" first (partition >= 0). */
void out_entry_json_partition(jw *w, const stx_msg *m, int partition);

/* Flush stdout; 0 or an exit code (write error reported). */
int cli_finish(const cli *c);

/* ------------------------------------------------------------------ */
/* subcommands: each gets the words after its name                      */

int cmd_info(cli *c, int argc, char **argv);
/* partitions.c: stx create, stx members, and the views of a partitioned
 * stream that info, replay and tail switch to. */
int cmd_create(cli *c, int argc, char **argv);
int cmd_members(cli *c, int argc, char **argv);
int cli_info_partitioned(cli *c, const char *stream, unsigned n);
int cli_replay_partitioned(cli *c, const char *stream, const char *after, const char *to,
                           long long limit);
int cli_tail_partitioned(cli *c, const char *stream, unsigned n, const char *after,
                         long long limit, long long block_ms);
int cmd_produce(cli *c, int argc, char **argv);
int cmd_tail(cli *c, int argc, char **argv);
int cmd_replay(cli *c, int argc, char **argv);
int cmd_pending(cli *c, int argc, char **argv);
int cmd_dlq(cli *c, int argc, char **argv);
int cmd_state(cli *c, int argc, char **argv);
int cmd_reset(cli *c, int argc, char **argv);
int cmd_trim(cli *c, int argc, char **argv);
/* relay.c: stx relay; and the outbox of (stream, group) when it is not
 * empty, as two JSON keys into w (outbox_length, outbox_age_ms) or, with w
 * NULL, a row of t (STREAM GROUP OUTBOX OLDEST). */
int cmd_relay(cli *c, int argc, char **argv);
void cli_outbox_note(cli *c, const char *stream, const char *group, jw *w, table *t);
int cmd_health(cli *c, int argc, char **argv);
int cmd_top(cli *c, int argc, char **argv);

/* A live processor as a JSON object (stx top, stx info); now_ms gives its
 * heartbeat's age. */
void cli_live_json(jw *w, const stx_live_processor *p, long long now_ms);

int cmd_streams(cli *c, int argc, char **argv);

/* stx archive (src/cli/archive.c). */
int cmd_archive(cli *c, int argc, char **argv);
/* The failure of an archive option in a stx built without the archive
 * library (exit 2). */
int cli_no_archive(const cli *c, const char *opt);
#ifdef STX_HAVE_ARCHIVE
/* What replay, trim and info use of the archive. */
#include "streamtx_archive.h"
/* Open the archive at url; 0 or an exit code (message printed). */
int cli_archive_open(cli *c, const char *url, stx_archive **out);
/* Report the failure rc of an archive call; returns the exit code. */
int cli_archive_fail(cli *c, const stx_archive *a, int rc);
#endif
/* src/serve/serve.c: the HTTP gateway. */
int cmd_serve(cli *c, int argc, char **argv);
int cmd_group(cli *c, int argc, char **argv);

/* Ask on the terminal (stderr, stdin); 1 when the answer is yes. */
int cli_confirm(const char *question);

#endif
