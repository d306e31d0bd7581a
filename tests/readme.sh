#!/usr/bin/env bash
# The README's runnable blocks, run in order as a user would paste them.
#
#   tests/readme.sh BUILD_DIR SOURCE_DIR [EXTRA_CFLAGS]
#
# A fenced block preceded by an HTML comment line is runnable:
#   <!-- doctest -->               ```sh block: each line (command) must
#                                  exit 0 and print something
#   <!-- doctest: quiet -->        ```sh block: each line must exit 0
#   <!-- doctest: c FILE write -->    ```c block: written to FILE, for the
#                                  shell blocks after it to build
#   <!-- doctest: c FILE compile -->  ```c block: compiled only (-c)
# A command that prints nothing when it works (cc) is exempt from "print".
# The build is installed into a temporary prefix first; the blocks find it
# as a reader finds an install in /usr/local: pkg-config (PKG_CONFIG_PATH),
# the loader (LD_LIBRARY_PATH, as after ldconfig), stx (PATH).
# The shell blocks share one bash process (set -euo pipefail), so what one
# sets (STX_URL from scripts/redis.sh) the next sees; one command per line.  They run in a
# temporary directory holding `build` (BUILD_DIR) and `scripts` (the
# repository's).  The private
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

# --- install, then the C blocks ---------------------------------------------
prefix=$tmp/prefix
cmake --install "$build" --prefix "$prefix" >"$tmp/install.log" || {
  cat "$tmp/install.log"
  die "cmake --install failed"
}
pc=$(find "$prefix" -name streamtx.pc)
[ -n "$pc" ] || die "no streamtx.pc installed"
libdir=$(dirname "$(dirname "$pc")")
export PKG_CONFIG_PATH=$libdir/pkgconfig LD_LIBRARY_PATH=$libdir${LD_LIBRARY_PATH:+:$LD_LIBRARY_PATH}
read -r -a extra <<<"$extra_cflags"
while read -r lang n line spec; do
  [ "$lang" = c ] || continue
  read -r -a words <<<"$spec"
  set -- "${words[@]}"
  if [ "${1:-}" != c ] || [ -z "${2:-}" ]; then die "README.md:$line: a c block needs 'doctest: c FILE write|compile'"; fi
  cp "$tmp/block.$n" "$work/$2"
  case ${3:-} in
  write) ;;
  compile)
    read -r -a flags <<<"$(pkg-config --cflags streamtx msgpack 2>/dev/null || pkg-config --cflags streamtx msgpack-c)"
    cc -std=c11 -Wall -Wextra -Werror -Wno-unused-function "${extra[@]}" "${flags[@]}" \
      -c "$work/$2" -o "$work/${2%.c}.o" || die "README.md:$line: $2 does not compile"
    echo "README.md:$line: $2 compiles"
    ;;
  *) die "README.md:$line: 'doctest: c $2' wants write or compile" ;;
  esac
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
  echo "export PATH='$prefix/bin':\$PATH"
  # The sanitizer flags of this build, which its library needs in a program.
  echo "cc() { command cc -std=c11 -Wall -Wextra -Werror $extra_cflags \"\$@\"; }"
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
      if [ "$spec" != quiet ] && [ "${cmd#cc }" = "$cmd" ]; then
        echo 'grep -q "[^[:space:]]" "$out" "$out.err" || { echo "readme test: README.md:$current printed nothing" >&2; exit 1; }'
      fi
      echo "declare -p STX_URL STX_REDIS_DIR 2>/dev/null | sed 's/^declare -x/export/' >'$tmp/env' || true"
    done <"$tmp/block.$n"
  done <"$tmp/blocks"
  echo "echo '--- all README blocks ran'"
} >"$tmp/driver.sh"
bash "$tmp/driver.sh"
