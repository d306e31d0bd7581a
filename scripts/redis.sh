# shellcheck shell=bash disable=SC2154,SC2034 # tmp comes from, PORT goes to, the caller
# Sourced by scripts/demo.sh and bench/run.sh: start a private redis-server
# on a free loopback port.  The caller defines die() and $tmp (the server's
# directory) and declares redis_pid; start_redis EXTRA-ARGS... sets
# redis_pid and PORT, trying another port when one is taken meanwhile.

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
