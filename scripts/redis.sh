#!/usr/bin/env bash
# shellcheck disable=SC2154,SC2034 # tmp comes from, PORT goes to, the caller
# A private redis-server on a free loopback port, two ways:
#
# As a command, for a shell (the README's examples use it):
#   eval "$(scripts/redis.sh start)"   # prints export STX_URL=... STX_REDIS_DIR=...
#   scripts/redis.sh stop              # stops the server of $STX_REDIS_DIR, removes it
#   scripts/redis.sh --help
# The server runs in its own temporary directory, in the background, until
# stopped (no persistence unless extra redis-server options say so:
# scripts/redis.sh start --appendonly yes).
#
# Sourced, by scripts/demo.sh, bench/run.sh and the tests' scripts: the
# caller defines die() and $tmp (the server's directory) and declares
# redis_pid; start_redis EXTRA-ARGS... sets redis_pid and PORT, trying
# another port when one is taken meanwhile.

port_busy() {
  command -v ss >/dev/null 2>&1 && ss -Hltn "sport = :$1" 2>/dev/null | grep -q .
}

start_redis() {
  local try port deadline pid_seen
  for try in $(seq 1 20); do
    port=$((20000 + RANDOM % 30000))
    if port_busy "$port"; then continue; fi
    redis-server --port "$port" --bind 127.0.0.1 --dir "$tmp" --save "" "$@" \
      --daemonize no --logfile "$tmp/redis.log" --protected-mode no </dev/null >/dev/null 2>&1 &
    redis_pid=$!
    deadline=$(($(date +%s) + 10))
    while [ "$(date +%s)" -le "$deadline" ]; do
      if ! kill -0 "$redis_pid" 2>/dev/null; then
        wait "$redis_pid" 2>/dev/null || true
        redis_pid=
        if grep -q "Address already in use" "$tmp/redis.log" 2>/dev/null; then
          rm -f "$tmp/redis.log"
          continue 2 # port taken meanwhile: next port
        fi
        tail -n 20 "$tmp/redis.log" >&2 2>/dev/null || true
        die "redis-server failed to start (try $try, port $port)"
      fi
      pid_seen=$(redis-cli -h 127.0.0.1 -p "$port" INFO server 2>/dev/null |
        tr -d '\r' | sed -n 's/^process_id://p' || true)
      if [ "$pid_seen" = "$redis_pid" ]; then
        PORT=$port
        return 0
      fi
      sleep 0.05
    done
    tail -n 20 "$tmp/redis.log" >&2 2>/dev/null || true
    die "redis-server on port $port did not answer within 10 s"
  done
  die "no free port found in 20 tries"
}

# --- as a command ------------------------------------------------------------
redis_usage() {
  cat <<'USAGE'
usage: scripts/redis.sh start [REDIS-SERVER-OPTIONS...]
       scripts/redis.sh stop [DIR]
       scripts/redis.sh --help

start: start a private redis-server on a free loopback port, in a new
temporary directory, in the background; print shell lines that set
STX_URL (the stx tool and the examples read it) and STX_REDIS_DIR:
  eval "$(scripts/redis.sh start)"
stop: stop the server started in DIR (default $STX_REDIS_DIR) and remove
its directory.
USAGE
}

redis_main() {
  local cmd=${1:-}
  [ $# -gt 0 ] && shift
  case $cmd in
  start)
    die() {
      echo "redis.sh: $*" >&2
      [ -n "${tmp:-}" ] && rm -rf "$tmp"
      exit 1
    }
    command -v redis-server >/dev/null || die "redis-server not found (scripts/deps.sh demo installs it)"
    tmp=$(mktemp -d /tmp/stx-redis-XXXXXX)
    redis_pid=
    start_redis "$@"
    echo "$redis_pid" >"$tmp/redis.pid"
    echo "export STX_URL=redis://127.0.0.1:$PORT STX_REDIS_DIR=$tmp"
    # To the terminal, not into eval: what runs and how to stop it.
    echo "redis-server pid $redis_pid on port $PORT (dir $tmp); stop it with: scripts/redis.sh stop" >&2
    ;;
  stop)
    local dir=${1:-${STX_REDIS_DIR:-}} pid
    [ -n "$dir" ] || { echo "redis.sh: stop: no DIR and STX_REDIS_DIR is not set" >&2; return 2; }
    [ -f "$dir/redis.pid" ] || { echo "redis.sh: stop: $dir/redis.pid not found" >&2; return 1; }
    pid=$(cat "$dir/redis.pid")
    kill "$pid" 2>/dev/null || true
    for _ in $(seq 1 100); do
      kill -0 "$pid" 2>/dev/null || break
      sleep 0.05
    done
    kill -9 "$pid" 2>/dev/null || true
    rm -rf "$dir"
    echo "redis-server pid $pid stopped (unset STX_URL STX_REDIS_DIR)" >&2
    ;;
  -h | --help | help) redis_usage ;;
  *)
    redis_usage >&2
    return 2
    ;;
  esac
}

# Run as a command, not sourced.
if [ "${BASH_SOURCE[0]}" = "$0" ]; then
  set -euo pipefail
  redis_main "$@"
fi
