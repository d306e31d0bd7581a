/*
 * What the examples share, so that each example is its handler and little
 * else: the command line (--url or $STX_URL, --stream, --group, --consumer,
 * --snapshot, --log-level, --exit-when-idle, plus an example's own
 * options), the processor's run loop, and a sorted report of the state.
 * Uses only streamtx.h; copy it along with an example.
 */
#ifndef EXAMPLES_COMMON_H
#define EXAMPLES_COMMON_H

#include <stddef.h>

#include "streamtx.h"

#define EX_DEFAULT_URL "redis://127.0.0.1:6379"
#define EX_MAX_OWN 4

/* Error messages quote input bytes; keep a hostile value from flooding the log. */
#define EX_SHOWN(len) ((int)((len) > 64 ? 64 : (len)))

typedef struct ex_args {
    const char *prog;                 /* for messages: "counter" */
    int command;                      /* index of argv[1] in the commands given */
    const char *url;                  /* --url, else $STX_URL, else EX_DEFAULT_URL */
    const char *stream, *group;       /* required */
    const char *consumer, *snapshot;  /* optional (NULL) */
    const char *log_level;            /* optional: debug, info, warn, error */
    int exit_when_idle;
    const char *own[EX_MAX_OWN];      /* values of the example's own options, or NULL */
} ex_args;

/* The options every example takes, for its usage text. */
#define EX_COMMON_HELP                                                                     \
    "  --url URL          Redis to use (default $STX_URL, else " EX_DEFAULT_URL ")\n"      \
    "  --stream S         input stream (required)\n"                                       \
    "  --group G          consumer group, created if missing; names the state (required)\n" \
    "  --consumer NAME    consumer name within the group (default: chosen by the library)\n" \
    "  --snapshot DIR     keep an LMDB snapshot of the state in DIR for fast restarts\n"   \
    "  --log-level L      debug, info, warn (default) or error\n"                          \
    "  --exit-when-idle   stop once a poll finds no new entries; print a summary\n"       \
    "  --help             show this text\n"

/* Parse the command line: argv[1] is one of commands (NULL-terminated; its
 * index goes to a->command), then options; commands NULL: options only.  own: the names of the
 * example's own options that take a value ("--field"), NULL-terminated, at
 * most EX_MAX_OWN; their values land in a->own[] in that order.  usage:
 * printed for --help.  Returns -1 to go on, else the exit status to return:
 * 0 after --help, 2 for a usage error (already reported). */
int ex_parse(ex_args *a, const char *prog, const char *usage, const char *const *commands,
             const char *const *own, int argc, char **argv);

/* Run handler over a->stream and a->group until SIGINT or SIGTERM, or, with
 * --exit-when-idle, until a poll finds nothing new; then print one line:
 * "PROG: handled N, committed N, duplicates N, dead-lettered N".  conf_kv:
 * extra configuration pairs, NULL-terminated, or NULL.  Returns the exit
 * status: 0 stopped or idle, 1 error, 2 bad configuration, 3 fenced. */
int ex_run(const ex_args *a, stx_handler_fn handler, void *user_data, const char *const *conf_kv);

/* Print every committed state key of (a->stream, a->group), sorted by key,
 * as the key's bytes, a space, then what print_value writes for the value
 * (msgpack), then a newline.  print_value returns STX_OK or an error code,
 * which stops the report.  Returns the exit status: 0, 1, or 3 when
 * the stream has no such group. */
int ex_report(const ex_args *a, int (*print_value)(const void *value, size_t len));
/* A print_value for msgpack integers. */
int ex_print_i64(const void *value, size_t len);

#endif
