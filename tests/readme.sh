#!/usr/bin/env bash
# The README's runnable blocks, run in order as a user would paste them.
#
#   tests/readme.sh BUILD_DIR SOURCE_DIR [EXTRA_CFLAGS]
#
# A fenced block preceded by an HTML comment line is runnable:
#   <!-- doctest -->               ```sh block: each line (command) must
#                                  exit 0 and print something
#   <!-- doctest: quiet -->        ```sh block: each line must exit 0
#   <!-- doctest: c FILE -->       ```c block: written to FILE and built into
#                                  the program FILE without .c (next to it)
#   <!-- doctest: c FILE compile -->  ```c block: compiled only (-c)
# The shell blocks share one bash process (set -euo pipefail), so what one
# sets (STX_URL from scripts/redis.sh) the next sees; one command per line.  They run in a
# temporary directory holding `build` (BUILD_DIR) and `scripts` (the
# repository's), with BUILD_DIR first on PATH (for `stx`).  The private
# Redis the README starts is stopped at the end whatever happens.
# EXTRA_CFLAGS: the sanitizer flags of a sanitizer build.
set -euo pipefail

build=$(cd "$1" && pwd)
src=$(cd "$2" && pwd)
extra_cflags=${3:-}
tmp=$(mktemp -d /tmp/stx-readme-XXXXXX)
die() {
  echo "readme test: $*" >&2
  exit 1
}
# shellcheck disable=SC2317 # called by the EXIT trap
cleanup() {
  if [ -f "$tmp/env" ]; then
    # shellcheck disable=SC1091
    (. "$tmp/env" && [ -n "${STX_REDIS_DIR:-}" ] && "$src/scripts/redis.sh" stop "$STX_REDIS_DIR") 2>/dev/null || true
  fi
  rm -rf "$tmp"
}
trap cleanup EXIT

work=$tmp/work
mkdir -p "$work"
ln -s "$build" "$work/build"
ln -s "$src/scripts" "$work/scripts"

# --- extract ----------------------------------------------------------------
# One line per block into $tmp/blocks: KIND N LINE ARGS..., the body in $tmp/block.N.
awk -v dir="$tmp" '
  /^<!-- doctest(:[^>]*)? -->$/ {
    spec = $0; sub(/^<!-- doctest:? */, "", spec); sub(/ *-->$/, "", spec)
    want = 1; mline = NR; next
  }
  want && /^```/ {
    lang = substr($0, 4); n++; body = dir "/block." n
    printf "%s %d %d %s\n", lang, n, mline, spec > (dir "/blocks")
    printf "" > body
    inblock = 1; want = 0; next
  }
  want && !/^[[:space:]]*$/ { printf "README.md:%d: doctest marker not followed by a fence\n", mline > "/dev/stderr"; bad = 1; want = 0 }
  inblock && /^```$/ { inblock = 0; close(body); next }
  inblock { print > body }
  END { exit bad }' "$src/README.md" || die "bad markers"
[ -s "$tmp/blocks" ] || die "no runnable block found in README.md"

# --- build the C blocks ------------------------------------------------------
# TODO(pkg): once the package rules land (streamtx.pc), compile as the README
# says: cmake --install "$build" --prefix "$tmp/prefix", then
# PKG_CONFIG_PATH=<prefix>/lib/pkgconfig and $(pkg-config --cflags --libs streamtx).
# Until then: the build tree's header and static library, and its dependencies.
read -r -a deps <<<"$(pkg-config --libs hiredis msgpack lmdb openssl 2>/dev/null ||
  pkg-config --libs hiredis msgpack-c lmdb openssl)"
read -r -a extra <<<"$extra_cflags"
cc_flags=(-std=c11 -Wall -Wextra -Werror -I"$src/include" "${extra[@]}")
while read -r lang n line spec; do
  [ "$lang" = c ] || continue
  read -r -a words <<<"$spec"
  set -- "${words[@]}"
  if [ "${1:-}" != c ] || [ -z "${2:-}" ]; then die "README.md:$line: a c block needs 'doctest: c FILE'"; fi
  cp "$tmp/block.$n" "$work/$2"
  if [ "${3:-}" = compile ]; then
    cc "${cc_flags[@]}" -Wno-unused-function -c "$work/$2" -o "$work/${2%.c}.o" ||
      die "README.md:$line: $2 does not compile"
  else
    cc "${cc_flags[@]}" "$work/$2" -o "$work/${2%.c}" "$build/libstreamtx.a" "${deps[@]}" ||
      die "README.md:$line: $2 does not build"
  fi
  echo "README.md:$line: built $2"
done <"$tmp/blocks"

# --- run the shell blocks ----------------------------------------------------
# shellcheck disable=SC2016 # the driver's lines are written, not expanded, here
# Line by line, each sourced alone so that set -e stops at the first failing
# command and the message names its README line.  A line (not blank, not a
# comment) of a "doctest" block must print something: every command the
# README shows gives the reader data.
{
  echo 'set -euo pipefail'
  echo 'current=; out=/dev/null'
  echo 'trap '"'"'rc=$?; if [ $rc != 0 ]; then cat "$out" "$out.err" 2>/dev/null; echo "readme test: README.md:$current failed (status $rc)" >&2; fi'"'"' EXIT'
  echo "cd '$work'"
  echo "export PATH='$build':\$PATH"
  echo 'unset STX_URL STX_REDIS_DIR'
  while read -r lang n line spec; do
    case $lang in sh | bash) ;; *) continue ;; esac
    k=0
    while IFS= read -r cmd || [ -n "$cmd" ]; do
      k=$((k + 1))
      case $cmd in '' | '#'*) continue ;; esac
      at=$((line + 1 + k))
      printf '%s\n' "$cmd" >"$tmp/line.$at"
      echo "current=$at; out='$tmp/out.$at'"
      echo "echo '\$ $(printf '%s' "$cmd" | sed "s/'/'\\\\''/g")'"
      echo ". '$tmp/line.$at' >\"\$out\" 2>\"\$out.err\""
      echo 'cat "$out" "$out.err"'
      if [ "$spec" != quiet ]; then
        echo 'grep -q "[^[:space:]]" "$out" "$out.err" || { echo "readme test: README.md:$current printed nothing" >&2; exit 1; }'
      fi
      echo "declare -p STX_URL STX_REDIS_DIR 2>/dev/null | sed 's/^declare -x/export/' >'$tmp/env' || true"
    done <"$tmp/block.$n"
  done <"$tmp/blocks"
  echo "echo '--- all README blocks ran'"
} >"$tmp/driver.sh"
bash "$tmp/driver.sh"
