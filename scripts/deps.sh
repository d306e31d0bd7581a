#!/usr/bin/env bash
# Install the Debian packages streamtx needs, when they are missing.
#
#   scripts/deps.sh [build|demo|package|test]
#
#   build    compiler, CMake and the libraries the library, examples and stx
#            (stx serve: libwebsockets) link
#   demo     build + redis-server and redis-cli (scripts/demo.sh)
#   package  build + dpkg-dev (scripts/package.sh: cpack's dpkg-shlibdeps)
#   test     (default) build + Criterion, redis-server, redis-cli, valgrind,
#            clang and its sanitizer/libFuzzer runtime, postgresql-15 (the
#            archive tests start their own server; no system service is used),
#            promtool (prometheus), chromium, curl and, when node or npm is
#            missing, nodejs and npm (stx serve's browser and TLS tests)
#
# Nothing installed is missing: does nothing (no apt-get update).
# Something missing, running as root: apt-get update + install.
# Something missing, not root: prints the command to run and exits 1.
set -euo pipefail

build_pkgs=(cmake pkg-config gcc make libhiredis-dev libmsgpack-dev liblmdb-dev zlib1g-dev libssl-dev
  libpq-dev libwebsockets-dev)
redis_pkgs=(redis-server redis-tools)
test_pkgs=(libcriterion-dev redis-server redis-tools valgrind clang libclang-rt-14-dev openssl
  postgresql-15 prometheus chromium fonts-dejavu-core curl)

what=${1:-test}
case "$what" in
  build) pkgs=("${build_pkgs[@]}") ;;
  demo) pkgs=("${build_pkgs[@]}" "${redis_pkgs[@]}") ;;
  package) pkgs=("${build_pkgs[@]}" dpkg-dev) ;;
  test) pkgs=("${build_pkgs[@]}" "${test_pkgs[@]}") ;;
  -h | --help)
    sed -n '2,16s/^# \{0,1\}//p' "$0"
    exit 0
    ;;
  *)
    echo "usage: $0 [build|demo|package|test]" >&2
    exit 2
    ;;
esac

missing=()
for p in "${pkgs[@]}"; do
  status=$(dpkg-query -W -f='${db:Status-Status}' "$p" 2>/dev/null || true)
  if [ "$status" != "installed" ]; then
    missing+=("$p")
  fi
done

# The web console's browser test (tests/browser/run.sh) drives Chromium from
# node; a machine may already have node and npm from elsewhere (NodeSource's
# nodejs bundles npm), and Debian's npm would conflict with that: only when
# the commands are missing are Debian's packages added.
if [ "$what" = test ] && ! { command -v node && command -v npm; } >/dev/null 2>&1; then
  missing+=(nodejs npm)
fi

if [ "${#missing[@]}" -eq 0 ]; then
  exit 0
fi

if [ "$(id -u)" -ne 0 ]; then
  echo "deps: missing packages: ${missing[*]}" >&2
  echo "deps: install them with:" >&2
  echo "  sudo apt-get update && sudo apt-get install -y --no-install-recommends ${missing[*]}" >&2
  exit 1
fi

echo "deps: installing ${missing[*]}"
export DEBIAN_FRONTEND=noninteractive
apt-get update
apt-get install -y --no-install-recommends "${missing[@]}"
