#!/usr/bin/env bash
# Run the whole streamtx test suite (works from any directory).
#
#   scripts/test.sh
#
# 1. scripts/deps.sh test (installs missing Debian packages when root)
# 2. build/       plain RelWithDebInfo build, then its ctest suite
# 3. build-asan/  Debug + AddressSanitizer/UndefinedBehaviorSanitizer, ctest
# 4. build-fuzz/  clang + libFuzzer targets, each run for STX_FUZZ_SECONDS
#                 (default 30; 0 skips; skipped when clang or
#                 tests/fuzz/CMakeLists.txt is missing)
# 5. valgrind: the core suites of the plain build again under valgrind
#    (STX_VALGRIND=0 skips it; STX_VALGRIND=all runs every test binary,
#    including the fault suites, which take much longer under valgrind)
#
# The tests start their own redis-server processes (redis-server >= 7 must
# be installed); nothing has to be running.  Exits non-zero when any stage
# fails; all test stages run even after one of them failed.
set -euo pipefail

cd "$(dirname "${BASH_SOURCE[0]}")/.."
root=$(pwd)

jobs=$(nproc 2>/dev/null || echo 2)
fuzz_seconds=${STX_FUZZ_SECONDS:-30}
valgrind_on=${STX_VALGRIND:-1}
# The suites that run the library in-process; the crash and fault suites
# fork workers and kill them on timers, which valgrind's slowdown distorts.
valgrind_core="test_processor test_badinput test_reliability test_codec test_snapshot test_producer test_reader test_admin test_router test_misuse test_statemap test_history"
t_start=$(date +%s)

summary=()
failed=0

note() { printf '\n=== %s\n' "$*"; }

# record NAME STATUS SECONDS
record() { summary+=("$(printf '%-32s %-7s %5ss' "$1" "$2" "$3")"); }

# stage NAME COMMAND... : run COMMAND, record ok/FAIL, return its status.
stage() {
  local name=$1 t0 rc=0
  shift
  note "$name"
  t0=$(date +%s)
  "$@" || rc=$?
  if [ "$rc" -eq 0 ]; then
    record "$name" ok $(($(date +%s) - t0))
  else
    record "$name" FAIL $(($(date +%s) - t0))
    failed=1
  fi
  return "$rc"
}

print_summary() {
  local total=$(($(date +%s) - t_start))
  printf '\n=== summary\n'
  local line
  for line in "${summary[@]}"; do
    printf '  %s\n' "$line"
  done
  printf '  total time %dm%02ds\n' $((total / 60)) $((total % 60))
  if [ "$failed" -ne 0 ]; then
    printf '  RESULT: FAILED\n'
  else
    printf '  RESULT: all passed\n'
  fi
}

# A build that fails ends the run: nothing after it can be tested.
build_or_die() {
  if ! stage "$@"; then
    print_summary
    exit 1
  fi
}

# shellcheck disable=SC2317 # the functions below are run through stage()
configure_and_build() {
  local dir=$1
  shift
  cmake -S "$root" -B "$root/$dir" "$@" && cmake --build "$root/$dir" -j"$jobs"
}

# Fuzz targets are registered by tests/fuzz/CMakeLists.txt (add_test fuzz_*).
# shellcheck disable=SC2317
configure_and_build_fuzz() {
  CC=clang configure_and_build build-fuzz -DSTX_FUZZ=ON \
    -DSTX_BUILD_EXAMPLES=OFF -DSTX_BUILD_BENCH=OFF -DSTX_FUZZ_SECONDS="$fuzz_seconds"
}

# --- prerequisites -------------------------------------------------------
note "dependencies"
bash scripts/deps.sh test

redis_version=$(redis-server --version | sed -n 's/.* v=\([0-9][0-9.]*\).*/\1/p')
redis_major=${redis_version%%.*}
if [ -z "$redis_major" ] || [ "$redis_major" -lt 7 ]; then
  echo "test.sh: redis-server ${redis_version:-(unknown version)} found at $(command -v redis-server);" \
    "the tests need Redis 7 or newer." >&2
  exit 1
fi
echo "redis-server $redis_version, $jobs cores"

# --- builds and tests ----------------------------------------------------
# Explicit, so that a tree configured earlier with other options (e.g. by
# scripts/demo.sh without Criterion) is brought back to the full build.
all_on=(-DSTX_BUILD_TESTS=ON -DSTX_BUILD_EXAMPLES=ON -DSTX_BUILD_BENCH=ON -DSTX_FUZZ=OFF)
build_or_die "build (RelWithDebInfo)" \
  configure_and_build build -DCMAKE_BUILD_TYPE=RelWithDebInfo -DSTX_SANITIZE=OFF "${all_on[@]}"
build_or_die "build-asan (Debug, ASan+UBSan)" \
  configure_and_build build-asan -DCMAKE_BUILD_TYPE=Debug -DSTX_SANITIZE=ON "${all_on[@]}"

# Test programs run side by side (-j): each starts its own servers on free
# ports and asserts outcomes, not timings.
stage "tests (build)" ctest --test-dir build -j"$jobs" --output-on-failure --no-tests=error || true
stage "tests (build-asan)" env \
  ASAN_OPTIONS=detect_leaks=1:abort_on_error=0 \
  UBSAN_OPTIONS=print_stacktrace=1:halt_on_error=1 \
  ctest --test-dir build-asan -j"$jobs" --output-on-failure --no-tests=error || true

# --- fuzzing -------------------------------------------------------------
if [ "$fuzz_seconds" = 0 ]; then
  echo "fuzzing skipped (STX_FUZZ_SECONDS=0)"
  record "fuzz" skipped 0
elif ! command -v clang >/dev/null 2>&1; then
  echo "fuzzing skipped: clang not found"
  record "fuzz" skipped 0
elif [ ! -f tests/fuzz/CMakeLists.txt ]; then
  echo "fuzzing skipped: tests/fuzz/CMakeLists.txt does not exist yet"
  record "fuzz" skipped 0
else
  # Builds the whole tree with clang (a second compiler's warnings on every
  # file), then runs only the fuzz_* tests.  A failure here does not stop the
  # valgrind stage.
  if stage "build-fuzz (clang, libFuzzer)" configure_and_build_fuzz; then
    stage "fuzz (${fuzz_seconds}s per target)" \
      ctest --test-dir build-fuzz -R '^fuzz_' -j"$jobs" --output-on-failure --no-tests=error || true
  fi
fi

# --- valgrind ------------------------------------------------------------
# A loop rather than `ctest -T memcheck`: the project calls enable_testing()
# without include(CTest), so there is no memcheck configuration, and each
# binary needs `--jobs 1` (one Criterion worker at a time) instead of the
# `--jobs 2` registered with add_test.  Criterion runs every test in a child
# process, so valgrind follows children (--trace-children=yes) but skips the
# redis-server processes the tests start.  A child's errors do not change
# the binary's exit status, hence the "ERROR SUMMARY" check on the log.
# One binary under valgrind; its verdict goes to build/valgrind/NAME.status.
# shellcheck disable=SC2317
valgrind_one() {
  local name=$1 bin=build/$1 log=build/valgrind/$1.log
  if valgrind --trace-children=yes \
    --trace-children-skip='*/redis-server,*/redis-cli,*/redis-benchmark' \
    --error-exitcode=1 --leak-check=full --errors-for-leak-kinds=definite \
    "$bin" --jobs 1 >"$log" 2>&1 &&
    ! grep -Eq 'ERROR SUMMARY: [1-9]|Failing: [1-9]|Crashing: [1-9]' "$log"; then
    echo ok >"build/valgrind/$name.status"
  else
    echo FAIL >"build/valgrind/$name.status"
  fi
}

# The binaries run $jobs at a time (valgrind runs a program on one core);
# the verdicts are printed in order once all are done.
# shellcheck disable=SC2317
run_valgrind() {
  local rc=0 name
  mkdir -p build/valgrind
  rm -f build/valgrind/*.status
  local names=$valgrind_core
  if [ "$valgrind_on" = all ]; then
    names=$(for src in tests/test_*.c; do basename "$src" .c; done)
  fi
  for name in $names; do
    if [ ! -x "build/$name" ]; then
      echo "valgrind: build/$name not built" >&2
      rc=1
      continue
    fi
    valgrind_one "$name" &
    while [ "$(jobs -rp | wc -l)" -ge "$jobs" ]; do
      wait -n || true
    done
  done
  wait || true
  for name in $names; do
    [ -x "build/$name" ] || continue
    if [ "$(cat "build/valgrind/$name.status" 2>/dev/null)" = ok ]; then
      echo "valgrind $name ... ok"
    else
      echo "valgrind $name ... FAIL (log: build/valgrind/$name.log)"
      grep -E 'ERROR SUMMARY: [1-9]|^\[(FAIL|----)\]|Synthesis' "build/valgrind/$name.log" | head -40 || true
      rc=1
    fi
  done
  return "$rc"
}

if [ "$valgrind_on" != 0 ]; then
  stage "valgrind (build)" run_valgrind || true
fi

print_summary
exit "$failed"
