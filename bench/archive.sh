#!/usr/bin/env bash
# Archive throughput (bench/README.md): entries/s of stx_archive_run() into
# PostgreSQL, and its ratio to one raw COPY of the same rows.  From any
# directory:
#
#   bench/archive.sh
#
# Builds Release into build-bench/, starts a private redis-server (no
# persistence) and a private PostgreSQL 15 (initdb in a temporary
# directory, a free loopback port, fsync on as by default), runs
# stx_bench_archive, prints key=value lines, stops both and removes the
# directory.  As root, PostgreSQL runs as the user postgres.
#
# Environment (defaults in brackets):
#   BENCH_ARCHIVE_ENTRIES [100000]  entries archived
#   BENCH_ARCHIVE_BATCH [500]       entries per batch (one transaction each)
#   PG_BINDIR [/usr/lib/postgresql/15/bin]
set -euo pipefail

cd "$(dirname "${BASH_SOURCE[0]}")/.."
root=$(pwd)
entries=${BENCH_ARCHIVE_ENTRIES:-100000}
batch=${BENCH_ARCHIVE_BATCH:-500}
pgbin=${PG_BINDIR:-/usr/lib/postgresql/15/bin}

die() {
  echo "bench/archive.sh: $*" >&2
  exit 1
}
for tool in cmake redis-server redis-cli "$pgbin/initdb" "$pgbin/pg_ctl"; do
  command -v "$tool" >/dev/null || die "$tool not found (scripts/deps.sh test)"
done
as_pg() { if [ "$(id -u)" -eq 0 ]; then runuser -u postgres -- "$@"; else "$@"; fi; }
free_port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'; }

echo "=== build (Release, build-bench/)"
cmake -S "$root" -B "$root/build-bench" -DCMAKE_BUILD_TYPE=Release -DSTX_BUILD_TESTS=OFF \
  -DSTX_BUILD_EXAMPLES=OFF -DSTX_BUILD_BENCH=ON \
  -DCMAKE_C_FLAGS="-Wno-error=format-truncation" >/dev/null
cmake --build "$root/build-bench" -j2 --target stx_bench_archive >/dev/null
bin=$root/build-bench/bench/stx_bench_archive
[ -x "$bin" ] || die "$bin was not built"

tmp=$(mktemp -d /tmp/stx-bench-archive-XXXXXX)
redis_pid=
cleanup() {
  [ -n "$redis_pid" ] && kill "$redis_pid" 2>/dev/null || true
  [ -f "$tmp/pg/postmaster.pid" ] && as_pg "$pgbin/pg_ctl" -D "$tmp/pg" -m fast stop >/dev/null 2>&1 || true
  rm -rf "$tmp"
}
trap cleanup EXIT
trap 'exit 130' INT TERM

rport=$(free_port)
redis-server --port "$rport" --bind 127.0.0.1 --save "" --appendonly no --dir "$tmp" \
  --logfile "$tmp/redis.log" &
redis_pid=$!
mkdir "$tmp/pg"
[ "$(id -u)" -eq 0 ] && chown postgres "$tmp" "$tmp/pg"
as_pg "$pgbin/initdb" -D "$tmp/pg" -U stx --auth=trust -E UTF8 --locale=C >/dev/null
pport=$(free_port)
as_pg "$pgbin/pg_ctl" -D "$tmp/pg" -l "$tmp/pg/log" -w -o \
  "-p $pport -c listen_addresses=127.0.0.1 -c unix_socket_directories=''" start >/dev/null
for _ in $(seq 50); do redis-cli -p "$rport" ping >/dev/null 2>&1 && break; sleep 0.1; done

echo "=== $entries entries, batches of $batch; redis-server $(redis-server --version | sed -n 's/.*v=\([^ ]*\).*/\1/p'), PostgreSQL $("$pgbin/postgres" --version | awk '{print $3}')"
"$bin" "redis://127.0.0.1:$rport" "postgresql://stx@127.0.0.1:$pport/postgres" "$entries" "$batch"
