#!/usr/bin/env bash
# Exactly-once under kill -9: the inventory example against a private Redis.
#
#   scripts/demo.sh
#
# 1. builds build/inventory, starts redis-server (AOF, appendfsync always)
#    on a free loopback port in a temporary directory;
# 2. generates DEMO_MESSAGES sales/restock entries over 20 SKUs from a fixed
#    seed and computes, in the same order, the final stock of every SKU and
#    the low-stock alerts that must be published (stock crossing from above
#    the threshold to at or below it);
# 3. writes the entries to the stream "sales" in small batches while
#    `inventory run` processes them, SIGKILLing it at random moments
#    (at least DEMO_KILLS times) and restarting it each time;
# 4. lets one last `inventory run --exit-when-idle` finish the backlog;
# 5. checks: every SKU's stock, the alerts (count, no duplicate causation_id,
#    each alert for the right entry with the right stock), no pending entries,
#    and that kills hit work in flight: a kill counts as one when the group
#    held entries delivered but not committed (XPENDING) as the process died.
#    The entries are written at a pace that spreads them over the kills,
#    every other kill waits for entries in flight, and a run where no kill
#    hit work in flight fails: it would prove nothing.
#
# Exits 0 when everything matches, 1 otherwise.  Always stops its
# redis-server and removes its temporary directory.
#
# Environment:
#   DEMO_MESSAGES  number of entries (default 5000)
#   DEMO_KILLS     minimum number of kill -9 (default 6)
#   DEMO_SEED      seed of the generator (default 42)
#   DEMO_BATCH     entries per write batch (default 100)
#   INVENTORY      inventory binary to use (default build/inventory, built)
set -euo pipefail

case ${1:-} in
'') ;;
-h | --help | help)
  # The comment block above, without its leading "# ".
  sed -n '2,/^set -euo/{/^set -euo/d;s/^# \{0,1\}//;p}' "${BASH_SOURCE[0]}"
  exit 0
  ;;
*)
  echo "demo: unknown argument: $1 (try --help)" >&2
  exit 2
  ;;
esac

cd "$(dirname "${BASH_SOURCE[0]}")/.."

messages=${DEMO_MESSAGES:-5000}
kills=${DEMO_KILLS:-6}
seed=${DEMO_SEED:-42}
batch=${DEMO_BATCH:-100}
skus=20
threshold=10
initial=100
stream=sales
group=inventory
alerts=alerts
t_start=$(date +%s)

die() {
  echo "demo: $*" >&2
  exit 1
}

for v in messages kills seed batch; do
  case ${!v} in '' | *[!0-9]*) die "DEMO_${v^^} must be a non-negative integer" ;; esac
done
if [ "$messages" -eq 0 ] || [ "$batch" -eq 0 ]; then
  die "DEMO_MESSAGES and DEMO_BATCH must be > 0"
fi

# --- build -----------------------------------------------------------------
if [ -z "${INVENTORY:-}" ]; then
  scripts/deps.sh demo
  if [ ! -f build/CMakeCache.txt ]; then
    tests=OFF # the test suite needs Criterion, which the demo does not install
    if pkg-config --exists criterion 2>/dev/null; then tests=ON; fi
    cmake -S . -B build -DCMAKE_BUILD_TYPE=RelWithDebInfo -DSTX_BUILD_TESTS="$tests" >/dev/null
  fi
  cmake --build build -j"$(nproc 2>/dev/null || echo 2)" --target inventory
  INVENTORY=build/inventory
else
  for tool in redis-server redis-cli; do
    command -v "$tool" >/dev/null || die "$tool not found (scripts/deps.sh demo installs it)"
  done
fi
[ -x "$INVENTORY" ] || die "$INVENTORY is not an executable"

# --- private redis-server --------------------------------------------------
tmp=$(mktemp -d /tmp/stx-demo-XXXXXX)
redis_pid=
inv_pid=
producer_pid=

# shellcheck disable=SC2317 # called by the EXIT trap
cleanup() {
  local p
  for p in "$producer_pid" "$inv_pid" "$redis_pid"; do
    if [ -n "$p" ]; then
      kill -9 "$p" 2>/dev/null || true
      wait "$p" 2>/dev/null || true
    fi
  done
  rm -rf "$tmp"
}
trap cleanup EXIT
trap 'exit 130' INT TERM

# shellcheck source=scripts/redis.sh
. "$(dirname "${BASH_SOURCE[0]}")/redis.sh"

start_redis --appendonly yes --appendfsync always
url="redis://127.0.0.1:$PORT"
rcli() { redis-cli -h 127.0.0.1 -p "$PORT" "$@"; }
echo "redis-server pid $redis_pid on $url (AOF, appendfsync always), dir $tmp"

# --- data and expectations -------------------------------------------------
# Sales of 1..5 units; restocks of 20..60 units, more likely once a SKU is
# at or below the threshold (and always when it is sold out), so stocks hover
# around the threshold and cross it often: about 1 entry in 14 is a restock.
awk -v seed="$seed" -v n="$messages" -v skus="$skus" -v threshold="$threshold" \
  -v initial="$initial" 'BEGIN {
    srand(seed)
    for (s = 1; s <= skus; s++) stock[s] = initial
    for (i = 1; i <= n; i++) {
      s = 1 + int(rand() * skus)
      p = stock[s] <= threshold ? 0.3 : 0.05
      if (stock[s] == 0 || rand() < p) {
        type = "restock"; q = 20 + int(rand() * 41); stock[s] += q
      } else {
        type = "sale"; q = 1 + int(rand() * 5); if (q > stock[s]) q = stock[s]
        stock[s] -= q
      }
      printf "%s sku-%02d %d\n", type, s, q
    }
  }' >"$tmp/entries"

# The inventory rules applied to the entries, in order: final stock per SKU
# and one alert per crossing from > threshold to <= threshold (line number,
# SKU, stock after the entry).
awk -v threshold="$threshold" -v initial="$initial" \
  -v stockfile="$tmp/expected_stock" -v alertfile="$tmp/expected_alerts" '
  {
    if (!($2 in stock)) stock[$2] = initial
    before = stock[$2]
    if ($1 == "restock") stock[$2] += $3; else stock[$2] -= $3
    if (before > threshold && stock[$2] <= threshold)
      print NR, $2, stock[$2] > alertfile
  }
  END {
    for (s in stock) print s, stock[s] | "sort > \"" stockfile "\""
    printf "" > alertfile
  }' "$tmp/entries"
expected_alerts=$(wc -l <"$tmp/expected_alerts")

# RESP for redis-cli --pipe, in batches of $batch entries.
mkdir "$tmp/batches"
awk -v batch="$batch" -v dir="$tmp/batches" -v stream="$stream" '
  function bulk(s) { return "$" length(s) "\r\n" s "\r\n" }
  {
    f = sprintf("%s/%06d", dir, int((NR - 1) / batch))
    if (f != last) { if (last != "") close(last); last = f }
    printf "*9\r\n%s%s%s%s%s%s%s%s%s", bulk("XADD"), bulk(stream), bulk("*"),
      bulk("type"), bulk($1), bulk("sku"), bulk($2), bulk("qty"), bulk($3) > f
  }' "$tmp/entries"

printf 'generated %d entries over %d SKUs (seed %d): %d restocks, %d alerts expected\n' \
  "$messages" "$skus" "$seed" "$(grep -c '^restock' "$tmp/entries" || true)" "$expected_alerts"

# The group reads the stream from its first entry, whoever creates it first.
rcli XGROUP CREATE "$stream" "$group" 0 MKSTREAM >/dev/null

produce() {
  local f out
  for f in "$tmp"/batches/*; do
    out=$(redis-cli -h 127.0.0.1 -p "$PORT" --pipe <"$f" 2>&1) || {
      echo "$out" >&2
      return 1
    }
    case $out in *"errors: 0,"*) ;; *)
      echo "$out" >&2
      return 1
      ;;
    esac
    sleep "$pace"
  done
}

progress() {
  # entries-read and pending of the group (Redis 7 XINFO GROUPS)
  rcli XINFO GROUPS "$stream" 2>/dev/null | tr -d '\r' |
    awk 'prev == "entries-read" { r = $0 } prev == "pending" { p = $0 } { prev = $0 }
         END { printf "read %s, pending %s", r, p }' || true
}

# --- process under kill -9 -------------------------------------------------
inv_args=(--url "$url" --stream "$stream" --group "$group" --alerts "$alerts"
  --threshold "$threshold" --initial "$initial")

# Spread the writes over about the time the kills take (0.25 s each), so
# that kills land while entries are in flight.
nbatches=$(((messages + batch - 1) / batch))
pace=$(awk -v k="$kills" -v n="$nbatches" 'BEGIN { p = k * 0.25 / n; if (p < 0.02) p = 0.02; printf "%.3f", p }')
produce &
producer_pid=$!
inflight=0

killed=0
while :; do
  "$INVENTORY" run "${inv_args[@]}" >>"$tmp/inventory.log" 2>&1 &
  inv_pid=$!
  ms=$((50 + RANDOM % 351))
  sleep "$(printf '0.%03d' "$ms")"
  # Every other kill waits (up to about 2 s) for entries in flight: the
  # process is stopped (SIGSTOP) at a random moment and, if entries are
  # pending then, killed there, between a read and its commit; else it goes
  # on (SIGCONT) and is stopped again a few ms later.  (A batch is read and
  # committed within a millisecond or two: looking first and stopping
  # after would mostly come too late.)
  if [ $((killed % 2)) = 1 ] && [ -n "$producer_pid" ] && kill -0 "$producer_pid" 2>/dev/null; then
    for _ in $(seq 1 200); do
      kill -STOP "$inv_pid"
      [ "$(rcli XPENDING "$stream" "$group" 2>/dev/null | head -n 1)" -gt 0 ] 2>/dev/null && break
      kill -CONT "$inv_pid"
      sleep "0.00$((1 + RANDOM % 9))"
    done
  fi
  if ! kill -0 "$inv_pid" 2>/dev/null; then
    rc=0
    wait "$inv_pid" 2>/dev/null || rc=$?
    inv_pid=
    tail -n 20 "$tmp/inventory.log" >&2
    die "inventory run exited with status $rc before it was killed"
  fi
  kill -9 "$inv_pid"
  wait "$inv_pid" 2>/dev/null || true
  inv_pid=
  killed=$((killed + 1))
  held=$(rcli XPENDING "$stream" "$group" 2>/dev/null | head -n 1 || true)
  what="nothing in flight"
  if [ "${held:-0}" -gt 0 ] 2>/dev/null; then
    inflight=$((inflight + 1))
    what="$held entries in flight"
  fi
  printf 'kill -9 #%d after %3d ms: %s (%s)\n' "$killed" "$ms" "$what" "$(progress)"
  if [ -n "$producer_pid" ] && ! kill -0 "$producer_pid" 2>/dev/null; then
    rc=0
    wait "$producer_pid" || rc=$?
    producer_pid=
    [ "$rc" -eq 0 ] || die "writing the entries to Redis failed"
  fi
  if [ "$killed" -ge "$kills" ] && [ -z "$producer_pid" ]; then break; fi
done

echo "final run with --exit-when-idle"
rc=0
timeout 300 "$INVENTORY" run "${inv_args[@]}" --exit-when-idle >>"$tmp/inventory.log" 2>&1 || rc=$?
if [ "$rc" -ne 0 ]; then
  tail -n 20 "$tmp/inventory.log" >&2
  die "final inventory run exited with status $rc"
fi

# --- checks ----------------------------------------------------------------
ok=1
"$INVENTORY" report --url "$url" --stream "$stream" --group "$group" >"$tmp/report" ||
  die "inventory report failed"

echo
awk -v reportfile="$tmp/report" '
  BEGIN {
    while ((getline line < reportfile) > 0) {
      split(line, f, " ")
      if (f[1] != "") got[f[1]] = f[2]
    }
    printf "%-8s %7s %9s  %s\n", "SKU", "stock", "expected", ""
  }
  {
    st = ($1 in got) ? got[$1] : "-"
    res = (st == $2) ? "ok" : "MISMATCH"
    if (res != "ok") bad = 1
    printf "%-8s %7s %9s  %s\n", $1, st, $2, res
    delete got[$1]
  }
  END {
    for (s in got) { printf "%-8s %7s %9s  %s\n", s, got[s], "-", "MISMATCH"; bad = 1 }
    exit bad
  }' "$tmp/expected_stock" || ok=0

# Source entry ids, in stream order, and the alerts as "causation_id sku stock"
# (redis-cli prints an empty array as an empty line).
rcli EVAL "local r = redis.call('XRANGE', KEYS[1], '-', '+')
  local out = {}
  for i, e in ipairs(r) do out[i] = e[1] end
  return out" 1 "$stream" | sed '/^$/d' >"$tmp/ids"
rcli EVAL "local r = redis.call('XRANGE', KEYS[1], '-', '+')
  local out = {}
  for i, e in ipairs(r) do
    local f = {}
    for j = 1, #e[2], 2 do f[e[2][j]] = e[2][j + 1] end
    out[i] = (f.causation_id or '?') .. ' ' .. (f.sku or '?') .. ' ' .. (f.stock or '?')
  end
  return out" 1 "$alerts" | sed '/^$/d' | sort >"$tmp/got_alerts"
awk 'NR == FNR { id[NR] = $1; next } { print id[$1], $2, $3 }' \
  "$tmp/ids" "$tmp/expected_alerts" | sort >"$tmp/want_alerts"

n_entries=$(wc -l <"$tmp/ids")
n_alerts=$(rcli XLEN "$alerts")
duplicates=$(cut -d' ' -f1 "$tmp/got_alerts" | uniq -d | wc -l)
wrong=$(comm -3 "$tmp/got_alerts" "$tmp/want_alerts" | wc -l)
pending=$(rcli XPENDING "$stream" "$group" | head -n 1)

check() { # label value expected
  local res=ok
  if [ "$2" != "$3" ]; then
    res=MISMATCH
    ok=0
  fi
  printf '%-34s %7s %9s  %s\n' "$1" "$2" "$3" "$res"
}
echo
check "entries in $stream" "$n_entries" "$messages"
check "alerts (XLEN $alerts)" "$n_alerts" "$expected_alerts"
check "duplicate causation_id" "$duplicates" 0
check "alerts not matching an expected one" "$wrong" 0
check "pending entries (XPENDING)" "$pending" 0
inflight_ok=yes
if [ "$inflight" -eq 0 ]; then
  inflight_ok=no
  ok=0
fi
check "some kill hit work in flight" "$inflight_ok" yes
echo
printf 'inventory killed %d times, %d of them with entries in flight; total %ds\n' \
  "$killed" "$inflight" $(($(date +%s) - t_start))

if [ "$ok" = 1 ]; then
  echo "RESULT: exactly once: every stock and every alert as expected"
  exit 0
fi
echo "RESULT: MISMATCH (inventory log tail follows)"
tail -n 20 "$tmp/inventory.log" || true
exit 1
