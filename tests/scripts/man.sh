#!/usr/bin/env bash
# The man page and the --help texts list the same commands and options.
#
#   tests/scripts/man.sh STX_BINARY MAN_PAGE
#
# Commands: the leading lower-case words of each line under "Commands:" in
# `stx --help` and of each .SS heading of the man page ("dlq list", "info").
# Options: every option of `stx --help` must be in the man page's OPTIONS
# section and the other way round; every other --option that
# `stx COMMAND --help` mentions must be in the man page's sections of COMMAND
# and the other way round.  The page must also render without warnings.
set -euo pipefail

stx=$1
page=$2
fail=0

# Leading lower-case words of each line of stdin, one line each.
lead_words() { awk '{ s = ""; for (i = 1; i <= NF && $i ~ /^[a-z]+$/; i++) s = s (s ? " " : "") $i; if (s) print s }'; }
options() { grep -o -- '--[a-z][a-z-]*' | sort -u; }
# roff text with \- as -, and without font escapes.
plain() { sed -e 's/\\-/-/g' -e 's/\\f[BIRP]//g' "$page"; }
# The man page's text from `.SS "WORD...` up to the next .SS or .SH.
section() { plain | awk -v w="$1" '/^\.S[SH]/ { on = ($0 ~ "^\\.SS \"" w "( |\")") } on'; }

compare() { # NAME LEFT-LABEL LEFT RIGHT-LABEL RIGHT
  local only_left only_right
  only_left=$(comm -23 <(printf '%s\n' "$3" | sed '/^$/d' | sort -u) <(printf '%s\n' "$5" | sed '/^$/d' | sort -u))
  only_right=$(comm -13 <(printf '%s\n' "$3" | sed '/^$/d' | sort -u) <(printf '%s\n' "$5" | sed '/^$/d' | sort -u))
  if [ -n "$only_left" ]; then
    echo "FAIL $1: only in $2: $(echo $only_left)"
    fail=1
  fi
  if [ -n "$only_right" ]; then
    echo "FAIL $1: only in $4: $(echo $only_right)"
    fail=1
  fi
}

help=$("$stx" --help)
# A command line is "  NAME ARGS    description": the part before the gap.
help_cmds=$(printf '%s\n' "$help" | awk '/^Commands:/ { on = 1; next } /^[^ ]/ { on = 0 } on' |
  sed -e 's/^ *//' -e 's/  .*//' | lead_words)
man_cmds=$(plain | sed -n 's/^\.SS "\(.*\)"$/\1/p' | lead_words)
[ -n "$help_cmds" ] || { echo "FAIL: no commands found in stx --help"; exit 1; }
compare commands "stx --help" "$help_cmds" "the man page" "$man_cmds"

# Global and connection options: `stx --help` outside its list of commands,
# against the man page's OPTIONS section.
global=$(printf '%s\n' "$help" | awk '/^Commands:/ { skip = 1; next } /^[^ ]/ { skip = 0 } !skip' | options)
man_global=$(plain | awk '/^\.SH/ { on = ($0 ~ /^\.SH OPTIONS/) } on' | options)
compare "global options" "stx --help" "$global" "the man page's OPTIONS" "$man_global"

# Options of each command (dlq list and dlq redrive share `stx dlq --help`),
# without the global and connection options that every --help repeats.
for cmd in $(printf '%s\n' "$help_cmds" | awk '{ print $1 }' | sort -u); do
  h=$("$stx" "$cmd" --help | options | grep -Fxv -f <(printf '%s\n' "$global") || true)
  m=$(section "$cmd" | options | grep -Fxv -f <(printf '%s\n' "$global") || true)
  compare "$cmd options" "stx $cmd --help" "$h" "the man page" "$m"
done

if command -v groff >/dev/null 2>&1; then
  warnings=$(groff -man -ww -z "$page" 2>&1 || true)
  if [ -n "$warnings" ]; then
    echo "FAIL: groff warnings:"
    echo "$warnings"
    fail=1
  fi
fi

if [ "$fail" -eq 0 ]; then
  echo "man page and --help agree: $(printf '%s\n' "$help_cmds" | wc -l) commands"
fi
exit "$fail"
