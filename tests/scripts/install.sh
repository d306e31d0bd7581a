#!/usr/bin/env bash
# Install the build into a temporary prefix and use it as a user would:
# the README's API-tour program, built once with pkg-config and once with a
# CMake project using find_package(streamtx CONFIG), both linked against
# the shared library, each run against a private redis-server until it has
# handled 100 entries, then stopped with SIGTERM: it must exit 0 having
# counted them (the state hash) and published the milestone.
#
#   tests/scripts/install.sh BUILD_DIR SOURCE_DIR [EXTRA_CFLAGS]
#
# EXTRA_CFLAGS: the sanitizer flags of a sanitizer build (its library needs
# its runtime in the program too).  The program is extracted from README.md
# (the C block of "## API tour"), so the README's program is the one tested.
set -euo pipefail

build=$(cd "$1" && pwd)
src=$(cd "$2" && pwd)
extra_cflags=${3:-}
tmp=$(mktemp -d /tmp/stx-install-XXXXXX)
redis_pid=
prog_pid=

die() {
  echo "install test: $*" >&2
  exit 1
}
# shellcheck disable=SC2317 # called by the EXIT trap
cleanup() {
  [ -n "$prog_pid" ] && kill -9 "$prog_pid" 2>/dev/null
  [ -n "$redis_pid" ] && kill "$redis_pid" 2>/dev/null && wait "$redis_pid" 2>/dev/null
  rm -rf "$tmp"
}
trap cleanup EXIT
# shellcheck source=../../scripts/redis.sh
. "$src/scripts/redis.sh"

# --- install -------------------------------------------------------------
prefix=$tmp/prefix
cmake --install "$build" --prefix "$prefix" >"$tmp/install.log" || {
  cat "$tmp/install.log"
  die "cmake --install failed"
}
pc=$(find "$prefix" -name streamtx.pc)
[ -n "$pc" ] || die "no streamtx.pc installed"
libdir=$(dirname "$(dirname "$pc")")
for f in "$prefix/include/streamtx.h" "$libdir/libstreamtx.so.0" "$libdir/libstreamtx.so" \
  "$libdir/libstreamtx.a" "$libdir/cmake/streamtx/streamtxConfig.cmake" \
  "$libdir/cmake/streamtx/streamtxConfigVersion.cmake" "$prefix/bin/stx" \
  "$prefix/share/man/man1/stx.1"; do
  [ -e "$f" ] || die "not installed: ${f#"$prefix"/}"
done
echo "installed into $prefix: $(cd "$prefix" && find . -type f -o -type l | sort | tr '\n' ' ')"

# --- the README's program ------------------------------------------------
awk '/^## API tour/ { tour = 1 } tour && /^```c$/ { code = 1; next } code && /^```$/ { exit }
     code { print }' "$src/README.md" >"$tmp/count.c"
grep -q 'int main' "$tmp/count.c" || die "no C program found under README.md's API tour"
start_redis --appendonly no
url=redis://127.0.0.1:$PORT
grep -q 'redis://127.0.0.1:6379' "$tmp/count.c" || die "the README's program no longer uses redis://127.0.0.1:6379"
sed -i "s|redis://127.0.0.1:6379|$url|" "$tmp/count.c"

# pkg-config
export PKG_CONFIG_PATH=$libdir/pkgconfig
read -r -a pc_flags <<<"$(pkg-config --cflags --libs streamtx)"
echo "pkg-config --cflags --libs streamtx: ${pc_flags[*]}"
# shellcheck disable=SC2086 # extra_cflags is a list of flags
cc -std=c11 -Wall -Wextra -Werror $extra_cflags -o "$tmp/count_pc" "$tmp/count.c" \
  "${pc_flags[@]}" -Wl,-rpath,"$libdir"

# find_package
mkdir -p "$tmp/proj"
cp "$tmp/count.c" "$tmp/proj/count.c"
cat >"$tmp/proj/CMakeLists.txt" <<'CM'
cmake_minimum_required(VERSION 3.18)
project(tour C)
find_package(streamtx CONFIG REQUIRED)
add_executable(count count.c)
target_link_libraries(count PRIVATE streamtx::streamtx)
CM
cmake -S "$tmp/proj" -B "$tmp/proj/build" -DCMAKE_PREFIX_PATH="$prefix" \
  -DCMAKE_C_FLAGS="$extra_cflags" -DCMAKE_EXE_LINKER_FLAGS="$extra_cflags" \
  -DCMAKE_BUILD_TYPE=Debug >"$tmp/proj.log" 2>&1 || {
  cat "$tmp/proj.log"
  die "configuring the find_package project failed"
}
cmake --build "$tmp/proj/build" >>"$tmp/proj.log" 2>&1 || {
  cat "$tmp/proj.log"
  die "building the find_package project failed"
}

# --- run each against the server -----------------------------------------
# The program's group is fixed ("counter"); both runs share it, so the
# second starts where the first stopped: 100 more entries, count 200.
run_and_check() { # NAME BINARY WANT_COUNT
  local name=$1 bin=$2 want=$3 n lag info key resolved rc=0 count
  readelf -d "$bin" | grep -q 'NEEDED.*\[libstreamtx\.so\.0\]' ||
    die "$name: not linked against libstreamtx.so.0"
  resolved=$(ldd "$bin" | awk '/libstreamtx\.so\.0/ { print $3 }')
  [ "$resolved" = "$libdir/libstreamtx.so.0" ] || die "$name: libstreamtx.so.0 resolves to '$resolved'"
  "$bin" >"$tmp/$name.out" 2>&1 &
  prog_pid=$!
  for i in $(seq 1 100); do
    printf 'XADD clicks * user alice n %s\n' "$i"
  done | redis-cli -p "$PORT" >/dev/null
  for _ in $(seq 1 200); do
    info=$(redis-cli -p "$PORT" XINFO GROUPS clicks 2>/dev/null || true)
    n=$(printf '%s\n' "$info" | awk 'p { print; exit } /^pending$/ { p = 1 }')
    lag=$(printf '%s\n' "$info" | awk 'p { print; exit } /^lag$/ { p = 1 }')
    [ "${n:-1}" = 0 ] && [ "${lag:-1}" = 0 ] && break
    sleep 0.05
  done
  kill -TERM "$prog_pid"
  wait "$prog_pid" || rc=$?
  prog_pid=
  if [ -s "$tmp/$name.out" ]; then sed "s/^/  $name: /" "$tmp/$name.out"; fi
  [ "$rc" -eq 0 ] || die "$name exited with status $rc"
  key=$(redis-cli -p "$PORT" --scan --pattern '*:stx:*counter:state' | head -n 1)
  [ -n "$key" ] || die "$name: no state key found"
  count=$(redis-cli -p "$PORT" HGET "$key" alice | head -c -1 | od -An -tx1 | tr -d ' \n') # without redis-cli's newline
  echo "$name: exit 0, state alice = 0x$count (msgpack)"
  [ "$count" = "$want" ] || die "$name: count of alice is msgpack $count, want $want"
}

run_and_check pkg-config "$tmp/count_pc" 64 # 100 as msgpack
[ "$(redis-cli -p "$PORT" XLEN milestones)" = 1 ] || die "pkg-config: no milestone published"
run_and_check find_package "$tmp/proj/build/count" ccc8 # 200 as msgpack
[ "$(redis-cli -p "$PORT" XLEN milestones)" = 1 ] || die "find_package: a second milestone"
echo "install test: both programs built against the installed shared library and ran"
