#!/usr/bin/env bash
# Turn two callgrind profiles of "stx_bench callgrind" into instructions
# per message (called by bench/run.sh).
#
#   bench/callgrind_report.sh WHOLE.out POLL.out MESSAGES
#
# WHOLE.out: the whole program (process start, connect, stx_processor_start,
#            the poll loop, teardown).
# POLL.out:  the same run recorded with --toggle-collect=stx_processor_poll,
#            so it holds only what happens inside stx_processor_poll().
# Inclusive costs come from callgrind_annotate --inclusive=yes.  Time spent
# blocked in read()/write() is not an instruction, so it never shows up.
# hiredis is counted as redisAppendCommandArgv (formatting a command into
# the output buffer) + redisGetReply (sending the buffer, reading, parsing
# replies into objects) + freeReplyObject; redisCommandArgv is exactly the
# first two, whichever way the library calls them.
set -euo pipefail

whole=$1
poll=$2
messages=$3

tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
callgrind_annotate --inclusive=yes --threshold=100 "$whole" >"$tmp/whole"
callgrind_annotate --inclusive=yes --threshold=100 "$poll" >"$tmp/poll"

# inclusive Ir of one function (exact name) in an annotation, 0 when absent
incl() {
  awk -v fn="$2" '
    !found && index($0, ":" fn " [") && $1 ~ /^[0-9,]+$/ { gsub(",", "", $1); v = $1; found = 1 }
    END { print found ? v : 0 }' "$1"
}
total() {
  awk '/PROGRAM TOTALS/ && !found { gsub(",", "", $1); v = $1; found = 1 } END { print v + 0 }' "$1"
}

whole_ir=$(total "$tmp/whole")
poll_ir=$(total "$tmp/poll")
get_reply=$(incl "$tmp/poll" redisGetReply)
append=$(incl "$tmp/poll" redisAppendCommandArgv)
free_reply=$(incl "$tmp/poll" freeReplyObject)
handler=$(incl "$tmp/poll" inv_handle)
# The library parses replies with hiredis' reader (redisReaderFeed copies
# the bytes in, redisReaderGetReply parses them and calls the library's
# reply builder, src/reply.c, which is counted with it).
reader=$(( $(incl "$tmp/poll" redisReaderGetReply) + $(incl "$tmp/poll" redisReaderFeed) ))
malloc_ir=$(( $(incl "$tmp/poll" malloc) + $(incl "$tmp/poll" calloc) + $(incl "$tmp/poll" realloc) + $(incl "$tmp/poll" free) ))

awk -v n="$messages" -v whole="$whole_ir" -v poll="$poll_ir" -v gr="$get_reply" \
  -v app="$append" -v fr="$free_reply" -v rd="$reader" -v h="$handler" -v mem="$malloc_ir" '
  BEGIN {
    printf "# whole program: %.0f instructions per message (includes process start, connect,\n", whole / n
    printf "#   stx_processor_start and teardown, all divided by the %d messages)\n", n
    printf "# inside stx_processor_poll: %.0f per message, of which\n", poll / n
    printf "#   hiredis redisGetReply (send, read, parse replies):   %6.0f\n", gr / n
    printf "#   hiredis redisAppendCommandArgv (format commands):      %4.0f\n", app / n
    printf "#   hiredis freeReplyObject:                              %5.0f\n", fr / n
    printf "#   hiredis reader (parsing replies, with reply.c):       %5.0f\n", rd / n
    printf "#   the rest (library code, the handler, libc it calls):  %5.0f\n", (poll - app - gr - fr - rd) / n
    printf "#     of which the handler inv_handle with its stx_txn_* calls: %.0f\n", h / n
    printf "#   malloc/calloc/realloc/free anywhere in poll:           %5.0f\n", mem / n
    printf "# callgrind_ir_per_msg = inside poll minus redisGetReply = %.0f\n", (poll - gr) / n
    printf "callgrind_messages_profiled=%d\n", n
    printf "callgrind_total_ir_per_msg=%.0f\n", whole / n
    printf "callgrind_poll_ir_per_msg=%.0f\n", poll / n
    printf "callgrind_ir_per_msg=%.0f\n", (poll - gr) / n
    printf "callgrind_hiredis_ir_per_msg=%.0f\n", (app + gr + fr + rd) / n
    printf "callgrind_lib_only_ir_per_msg=%.0f\n", (poll - app - gr - fr - rd) / n
    printf "callgrind_handler_ir_per_msg=%.0f\n", h / n
    printf "callgrind_malloc_ir_per_msg=%.0f\n", mem / n
  }'
