#!/usr/bin/env bash
# Benchmarks of streamtx (see bench/README.md).  From any directory:
#
#   bench/run.sh
#
# Builds Release into build-bench/, starts a private redis-server on a free
# loopback port in a temporary directory (no persistence: --save "" and
# --appendonly no, so the figures are of the library and Redis, not of a
# disk), runs the bench modes, prints a summary table and key=value lines,
# stops Redis and removes the directory.
#
# Environment (defaults in brackets):
#   BENCH_MESSAGES [200000]         messages per throughput figure (summed over rounds)
#   BENCH_ROUNDS [10]               interleaved rounds per throughput figure
#   BENCH_NAIVE_MESSAGES [20000]    messages of the naive baseline
#   BENCH_STATE_KEYS [1000000]      keys of the large state
#   BENCH_LATENCY_RATE [5000]       messages/s in the light-load latency run
#   BENCH_LATENCY_SECONDS [10]      length of each latency run (light, 50% and 90%
#                                   of the library's batch-128 throughput of "compare")
#   BENCH_DRAIN_MESSAGES [100000]   entries of the pending-drain phase
#   BENCH_OUTBOX_MESSAGES [50000]   entries of the outbox phase (summed over 5 rounds)
#   BENCH_CALLGRIND_MESSAGES [20000] messages of the callgrind run (0 skips it)
#   BENCH_PARTITION_MESSAGES [100000] entries per configuration of the partitions phase
#   BENCH_PARTITION_ROUNDS [3]      interleaved rounds of the partitions phase (medians)
#   BENCH_ONLY                      comma-separated subset of
#                                   compare,state,latency,drain,outbox,callgrind,partitions
#
# The partitions phase also starts a Redis Cluster of 3 masters (no
# replicas) on loopback, each node in a directory under the same temporary
# directory, and removes it afterwards.
set -euo pipefail

cd "$(dirname "${BASH_SOURCE[0]}")/.."
root=$(pwd)

messages=${BENCH_MESSAGES:-200000}
rounds=${BENCH_ROUNDS:-10}
naive_messages=${BENCH_NAIVE_MESSAGES:-20000}
state_keys=${BENCH_STATE_KEYS:-1000000}
latency_rate=${BENCH_LATENCY_RATE:-5000}
latency_seconds=${BENCH_LATENCY_SECONDS:-10}
cg_messages=${BENCH_CALLGRIND_MESSAGES:-20000}
drain_messages=${BENCH_DRAIN_MESSAGES:-100000}
outbox_messages=${BENCH_OUTBOX_MESSAGES:-50000}
part_messages=${BENCH_PARTITION_MESSAGES:-100000}
part_rounds=${BENCH_PARTITION_ROUNDS:-3}
only=${BENCH_ONLY:-compare,state,latency,drain,outbox,callgrind,partitions}

die() {
  echo "bench/run.sh: $*" >&2
  exit 1
}
wanted() { [[ ",$only," == *",$1,"* ]]; }

for tool in cmake redis-server redis-cli; do
  command -v "$tool" >/dev/null || die "$tool not found (scripts/deps.sh build; apt-get install redis-server)"
done

# --- build -----------------------------------------------------------------
echo "=== build (Release, build-bench/)"
cmake -S "$root" -B "$root/build-bench" -DCMAKE_BUILD_TYPE=Release -DSTX_BUILD_TESTS=OFF \
  -DSTX_BUILD_EXAMPLES=OFF -DSTX_BUILD_BENCH=ON \
  -DCMAKE_C_FLAGS="-Wno-error=format-truncation" >/dev/null # gcc -O2 false positive in src/
cmake --build "$root/build-bench" -j"$(nproc 2>/dev/null || echo 2)" --target stx_bench >/dev/null
bin=$root/build-bench/bench/stx_bench
[ -x "$bin" ] || die "$bin was not built"

# --- private redis-server --------------------------------------------------
tmp=$(mktemp -d /tmp/stx-bench-XXXXXX)
redis_pid=
cluster_pids=()
results=$tmp/results

# shellcheck disable=SC2317 # called by the EXIT trap
cleanup() {
  local p
  for p in "${cluster_pids[@]}"; do
    kill "$p" 2>/dev/null || true
    wait "$p" 2>/dev/null || true
  done
  if [ -n "$redis_pid" ]; then
    kill "$redis_pid" 2>/dev/null || true
    wait "$redis_pid" 2>/dev/null || true
  fi
  rm -rf "$tmp"
}
trap cleanup EXIT
trap 'exit 130' INT TERM

# shellcheck source=scripts/redis.sh
. "$root/scripts/redis.sh"

start_redis --appendonly no --latency-monitor-threshold 10
redis_version=$(redis-server --version | sed -n 's/.*v=\([^ ]*\).*/\1/p')
echo "=== redis-server $redis_version on 127.0.0.1:$PORT, dir $tmp"
echo "    persistence off (--save \"\" --appendonly no): the bench measures the library"
echo "    against Redis, not against a disk"
echo "    machine: $(nproc) cores, load average $(cut -d' ' -f1-3 /proc/loadavg) at start"
commit=$(git -C "$root" rev-parse --short=12 HEAD 2>/dev/null || echo unknown)
dirty=$(git -C "$root" status --porcelain --untracked-files=no 2>/dev/null | grep -q . && echo "+changes" || true)
bench_date=$(date -u +%Y-%m-%dT%H:%M:%SZ)
cpu0_all=$(head -1 /proc/stat)
echo "    commit $commit$dirty, $bench_date"
{
  echo "commit=$commit$dirty"
  echo "date=$bench_date"
  echo "redis_version=$redis_version"
  echo "cores=$(nproc)"
  echo "loadavg_start=$(cut -d' ' -f1 /proc/loadavg)"
} >"$results"

rcli() { redis-cli -h 127.0.0.1 -p "$PORT" "$@"; }

# CPU steal (time the hypervisor gave to others) between two /proc/stat
# "cpu" lines, in percent of all CPU time.
steal_pct() {
  printf '%s\n%s\n' "$1" "$2" | awk '
    { for (i = 2; i <= 9; i++) if (NR == 1) x[i] = $i; else d[i] = $i - x[i] }
    END { t = 0; for (i = 2; i <= 9; i++) t += d[i]; printf "%.0f", t ? 100 * d[9] / t : 0 }'
}
# The slowest "fast-command" (O(1) command) Redis saw since LATENCY RESET, in
# ms (0: none over the 10 ms threshold).  A slow O(1) command means the
# machine stalled Redis, not that the work was slow.
fast_command_max_ms() {
  rcli LATENCY LATEST | awk '{ l[NR] = $0 } END { m = 0; for (i = 1; i <= NR; i++) if (l[i] == "fast-command") m = l[i + 3]; print m + 0 }'
}

# phase NAME TITLE COMMAND...: one phase; key=value lines go to $results.
phase() {
  local name=$1 title=$2 t0 c0 c1 st fm
  shift 2
  echo
  echo "=== $title"
  t0=$(date +%s)
  c0=$(head -1 /proc/stat)
  rcli LATENCY RESET >/dev/null
  "$@"
  c1=$(head -1 /proc/stat)
  st=$(steal_pct "$c0" "$c1")
  fm=$(fast_command_max_ms)
  echo "    ($(($(date +%s) - t0)) s; CPU steal ${st}%; slowest O(1) Redis command ${fm} ms)"
  echo "steal_pct_$name=$st" >>"$results"
  echo "redis_fast_command_max_ms_$name=$fm" >>"$results"
}
mode() { "$bin" "$@" --port "$PORT" --tmpdir "$tmp" | tee -a "$results" | sed -n 's/^# /  /p'; }

if wanted compare; then
  phase compare "throughput: library vs limit (batch 1, 16, 128) vs naive, $rounds interleaved rounds" \
    mode compare --messages "$messages" --naive-messages "$naive_messages" --rounds "$rounds"
fi
if wanted state; then
  phase state "state size, restart and memory ($state_keys keys)" \
    mode state --messages "$messages" --state-keys "$state_keys" --rounds "$rounds"
fi
# latency_run TAG RATE: one latency run whose keys are renamed TAG_...
latency_run() {
  "$bin" latency --rate "$2" --seconds "$latency_seconds" --port "$PORT" --tmpdir "$tmp" |
    sed -e "s/^latency_/lat_$1_/; s/^e2e_latency_/lat_$1_e2e_/" | tee -a "$results" |
    sed -n 's/^# /  /p'
}
if wanted latency; then
  phase latency "commit latency at $latency_rate msgs/s for $latency_seconds s" \
    mode latency --rate "$latency_rate" --seconds "$latency_seconds"
  max=$(sed -n 's/^lib_msgs_per_s_b128=//p' "$results" | tail -1)
  if [ -n "$max" ]; then
    for pct in 50 90; do
      phase latency$pct "latency under load: $pct% of $max msgs/s (library batch 128 max), $latency_seconds s" \
        latency_run "p$pct" $((max * pct / 100))
    done
  else
    echo "=== latency under load: skipped (needs the compare phase for the maximum)"
  fi
fi
if wanted drain; then
  phase drain "pending drain: $drain_messages entries pending under a dead consumer, and the processor's own after a restart" \
    mode drain --messages "$drain_messages"
fi
if wanted outbox; then
  phase outbox "outbox: a publish per entry through the outbox and relay against a same-slot publish, $outbox_messages entries each" \
    mode outbox --messages "$outbox_messages" --rounds 5
fi

# Two runs of the same prepared stream: the whole program, then only what
# happens inside stx_processor_poll().  Instruction counts do not depend on
# the load of the machine.
callgrind_phase() {
  "$bin" callgrind-prepare --port "$PORT" --messages "$cg_messages"
  valgrind --tool=callgrind --callgrind-out-file="$tmp/cg.whole" \
    "$bin" callgrind --port "$PORT" --messages "$cg_messages" --batch 128 \
    >"$tmp/cg.whole.log" 2>&1 || { cat "$tmp/cg.whole.log" >&2; die "callgrind run failed"; }
  "$bin" callgrind-prepare --port "$PORT" --messages "$cg_messages"
  valgrind --tool=callgrind --callgrind-out-file="$tmp/cg.poll" \
    --toggle-collect=stx_processor_poll \
    "$bin" callgrind --port "$PORT" --messages "$cg_messages" --batch 128 \
    >"$tmp/cg.poll.log" 2>&1 || { cat "$tmp/cg.poll.log" >&2; die "callgrind run failed"; }
  "$root/bench/callgrind_report.sh" "$tmp/cg.whole" "$tmp/cg.poll" "$cg_messages" |
    tee -a "$results" | sed -n 's/^# /  /p'
}
if wanted callgrind && [ "$cg_messages" -gt 0 ]; then
  if ! command -v valgrind >/dev/null || ! command -v callgrind_annotate >/dev/null; then
    echo
    echo "=== callgrind: skipped, valgrind is not installed (apt-get install valgrind)"
    echo "callgrind_skipped=valgrind_not_installed" >>"$results"
  else
    phase callgrind "callgrind: instructions per message, $cg_messages messages, batch 128" \
      callgrind_phase
  fi
fi

# A Redis Cluster of 3 masters on loopback (no replicas: the bench measures
# the routing and the spread of partitions over nodes, not failover); sets
# cluster_ports "P1,P2,P3".  Each node needs its port + 10000 free (bus).
start_cluster() {
  local i port pid ports=() dir deadline ok
  for i in 1 2 3; do
    for _ in $(seq 1 20); do
      port=$((20000 + RANDOM % 30000))
      if port_busy "$port" || port_busy $((port + 10000)); then continue; fi
      dir=$tmp/cluster$i
      mkdir -p "$dir"
      redis-server --port "$port" --bind 127.0.0.1 --dir "$dir" --save "" --appendonly no \
        --cluster-enabled yes --cluster-config-file nodes.conf --cluster-node-timeout 2000 \
        --daemonize no --logfile "$dir/redis.log" --protected-mode no </dev/null >/dev/null 2>&1 &
      pid=$!
      deadline=$(($(date +%s) + 10))
      until redis-cli -h 127.0.0.1 -p "$port" PING 2>/dev/null | grep -q PONG; do
        # A port (or its bus port + 10000) taken meanwhile: another port.
        kill -0 "$pid" 2>/dev/null || { wait "$pid" 2>/dev/null || true; continue 2; }
        [ "$(date +%s)" -le "$deadline" ] || die "cluster node on port $port did not start"
        sleep 0.05
      done
      cluster_pids+=("$pid")
      ports+=("$port")
      break
    done
  done
  [ "${#ports[@]}" -eq 3 ] || die "no free ports for the cluster"
  redis-cli --cluster create "127.0.0.1:${ports[0]}" "127.0.0.1:${ports[1]}" \
    "127.0.0.1:${ports[2]}" --cluster-replicas 0 --cluster-yes >"$tmp/cluster-create.log" 2>&1 ||
    { cat "$tmp/cluster-create.log" >&2; die "redis-cli --cluster create failed"; }
  deadline=$(($(date +%s) + 30))
  while :; do
    ok=0
    for port in "${ports[@]}"; do
      redis-cli -h 127.0.0.1 -p "$port" CLUSTER INFO | grep -q 'cluster_state:ok' && ok=$((ok + 1))
    done
    [ "$ok" -eq 3 ] && break
    [ "$(date +%s)" -le "$deadline" ] || die "the cluster did not reach cluster_state:ok"
    sleep 0.1
  done
  cluster_ports=$(IFS=,; echo "${ports[*]}")
}
partitions_phase() {
  start_cluster
  echo "    cluster of 3 masters on 127.0.0.1:${cluster_ports//,/, } (no replicas)"
  mode partitions --messages "$part_messages" --rounds "$part_rounds" --cluster-ports "$cluster_ports"
}
if wanted partitions; then
  phase partitions "partitioned streams: 1, 2, 4, 8 partitions x 1, 2 member processes, one Redis and a 3-master cluster, $part_messages entries each, $part_rounds rounds" \
    partitions_phase
fi

echo "loadavg_end=$(cut -d' ' -f1 /proc/loadavg)" >>"$results"
echo "steal_pct_all=$(steal_pct "$cpu0_all" "$(head -1 /proc/stat)")" >>"$results"

# --- summary ---------------------------------------------------------------
echo
echo "=== summary (commit $commit$dirty, $bench_date)"
echo "    Ratios compare contenders run in alternating rounds on the same Redis;"
echo "    absolute numbers move by 30% or more between runs on a shared machine."
awk -F= '
  /^[a-z_0-9]+=/ { v[$1] = substr($0, length($1) + 2) }
  function has(k) { return k in v }
  function row(label, val, tgt) { printf "  %-46s %18s   %s\n", label, val, tgt }
  function num(k, fmt) { return has(k) ? sprintf(fmt, v[k]) : "-" }
  function spread(k) {
    return has(k "_round_min") ? sprintf("%.2f-%.2f", v[k "_round_min"], v[k "_round_max"]) : "-"
  }
  # target(k, op, bound, text): "met" / "NOT met" / "not measured"
  function target(k, op, bound, text,   x, ok) {
    if (!has(k)) return text ": not measured"
    x = v[k] + 0
    ok = (op == ">=") ? (x >= bound) : (x < bound)
    return text ": " (ok ? "met" : "NOT met")
  }
  END {
    row("figure", "value", "target")
    for (b = 1; b <= 128; b *= (b == 1 ? 16 : 8)) {
      row("library msgs/s, batch " b, num("lib_msgs_per_s_b" b, "%d"), "")
      row("limit msgs/s, batch " b, num("limit_msgs_per_s_b" b, "%d"), "")
      row("library / limit, batch " b, num("ratio_to_limit_b" b, "%.2f"),
          b == 128 ? target("ratio_to_limit_b128", ">=", 0.85, ">= 0.85") : "")
      row("  per round: median (min-max)", num("ratio_to_limit_b" b "_round_median", "%.2f") \
          " (" spread("ratio_to_limit_b" b) ")", "")
      row("  Redis CPU per message, limit / library", num("redis_cpu_ratio_b" b, "%.2f"), "")
    }
    row("publish-heavy library msgs/s, batch 128", num("lib_msgs_per_s_heavy_b128", "%d"), "")
    row("publish-heavy limit msgs/s, batch 128", num("limit_msgs_per_s_heavy_b128", "%d"), "")
    row("publish-heavy library / limit, batch 128", num("ratio_to_limit_heavy_b128", "%.2f"),
        target("ratio_to_limit_heavy_b128", ">=", 0.8, ">= 0.8"))
    row("  Redis CPU per message, limit / library", num("redis_cpu_ratio_heavy_b128", "%.2f"), "")
    row("Lua itself per msg, library / limit b128 (us)",
        num("lib_redis_us_per_msg_script_only_b128", "%.2f") " / " \
        num("limit_redis_us_per_msg_script_only_b128", "%.2f"), "")
    row("naive (reference design) msgs/s", num("naive_msgs_per_s", "%d"), "")
    row("speedup over naive (library b128 / naive)", num("speedup_over_naive", "%.1fx"), "")
    row("  per round: median", num("speedup_over_naive_round_median", "%.1fx"), "")
    row("  reference: limit b128 / naive", num("limit_speedup_over_naive", "%.1fx"), "")
    row("msgs/s, 10 state keys, batch 128", num("state_10_msgs_per_s", "%d"), "")
    row("msgs/s, " num("state_big_keys", "%d") " state keys, batch 128",
        num("state_big_msgs_per_s", "%d"), "")
    row("state size ratio (big / 10 keys)", num("state_size_ratio", "%.2f"),
        target("state_size_ratio", ">=", 0.8, ">= 0.8"))
    row("  per round: median", num("state_size_ratio_round_median", "%.2f"), "")
    row("  control: big state, entries on 10 keys", num("state_big_hot10_msgs_per_s", "%d"), "")
    row("restart, state from Redis (s, median of 3)", num("restart_redis_s", "%.3f"), "")
    row("restart, state from LMDB snapshot (s, median)", num("restart_lmdb_s", "%.3f"), "")
    row("LMDB restart speedup", num("lmdb_restart_speedup", "%.1fx"),
        target("lmdb_restart_speedup", ">=", 5, ">= 5x"))
    row("resident memory per state key (bytes)", num("rss_bytes_per_key", "%.0f"), "")
    row("commit latency p50 at " num("latency_rate_msgs_per_s", "%d") " msgs/s (us)",
        num("latency_p50_us", "%d"), "")
    row("commit latency p99 (us)", num("latency_p99_us", "%d"),
        target("latency_p99_us", "<", 2000, "< 2000 us"))
    row("end-to-end latency p50 / p99 (us)",
        num("e2e_latency_p50_us", "%d") " / " num("e2e_latency_p99_us", "%d"), "")
    for (q = 50; q <= 90; q += 40) {
      t = "lat_p" q "_"
      row("under load " q "%: rate, avg batch", num(t "rate_msgs_per_s", "%d") ", " \
          num(t "avg_batch", "%.1f"), "")
      row("  commit p50 / p99 / max (us)", num(t "p50_us", "%d") " / " num(t "p99_us", "%d") \
          " / " num(t "max_us", "%d"), "")
      row("  end-to-end p50 / p99 / max (us)", num(t "e2e_p50_us", "%d") " / " \
          num(t "e2e_p99_us", "%d") " / " num(t "e2e_max_us", "%d"), "")
    }
    row("pending drain, dead consumer (msgs/s)", num("drain_claimed_msgs_per_s", "%d"), "")
    row("pending drain, own after restart (msgs/s)", num("drain_own_msgs_per_s", "%d"), "")
    row("fresh, same run (msgs/s)", num("drain_fresh_msgs_per_s", "%d"), "")
    row("drain / fresh, dead consumer", num("drain_claimed_ratio", "%.2f"),
        target("drain_claimed_ratio", ">=", 0.5, ">= 0.5"))
    row("drain / fresh, own after restart", num("drain_own_ratio", "%.2f"),
        target("drain_own_ratio", ">=", 0.5, ">= 0.5"))
    row("limit with overlap / limit b128, inventory / publish-heavy",
        num("overlap_gain_b128", "%.2f") " / " num("overlap_gain_heavy_b128", "%.2f"), "")
    row("library / library with overlap off b128, inventory / publish-heavy",
        num("lib_overlap_gain_b128", "%.2f") " / " num("lib_overlap_gain_heavy_b128", "%.2f"), "")
    row("library / limit with overlap b128, inventory / publish-heavy",
        num("ratio_to_overlap_limit_b128", "%.2f") " / " \
        num("ratio_to_overlap_limit_heavy_b128", "%.2f"), "")
    row("publish direct / through outbox (msgs/s)", num("outbox_direct_msgs_per_s", "%d") " / " \
        num("outbox_msgs_per_s", "%d"), "")
    row("outbox overhead per publish (us wall)", num("outbox_overhead_us_per_publish", "%.2f"), "")
    row("  machine: 1 ms sleep overshoot p99 / max (us)",
        num("latency_hiccup_p99_us", "%d") " / " num("latency_hiccup_max_us", "%d"), "")
    row("instructions/msg in poll minus redisGetReply", num("callgrind_ir_per_msg", "%d"), "")
    row("instructions/msg, whole program", num("callgrind_total_ir_per_msg", "%d"), "")
    row("instructions/msg, library code only", num("callgrind_lib_only_ir_per_msg", "%d"), "")
    row("instructions/msg, hiredis reader (RESP parsing)", num("callgrind_hiredis_ir_per_msg", "%d"), "")
    for (p = 1; p <= 8; p *= 2)
      for (m = 1; m <= 2; m++) {
        k = "_p" p "_m" m
        row("partitions " p ", members " m ": single / cluster msgs/s",
            num("part_single" k "_msgs_per_s", "%d") " / " num("part_cluster" k "_msgs_per_s", "%d"), "")
        row("  Redis CPU us/entry single / cluster (all nodes)",
            num("part_single" k "_redis_us_per_msg", "%.2f") " / " \
            num("part_cluster" k "_redis_us_per_msg", "%.2f"), "")
      }
    row("commit measured, date", v["commit"] ", " v["date"], "")
    row("host: CPU steal over the whole run", num("steal_pct_all", "%d%%"), "")
    split("compare state latency latency50 latency90 drain outbox callgrind partitions", ph, " ")
    for (i = 1; i <= 9; i++)
      if (has("steal_pct_" ph[i]))
        row("host: CPU steal / slowest O(1) cmd, " ph[i],
            v["steal_pct_" ph[i]] "% / " v["redis_fast_command_max_ms_" ph[i]] " ms", "")
    bad = ""
    for (k in v) if (k ~ /verified/ && v[k] != "yes") bad = bad " " k
    if (has("restart_lmdb_used_snapshot") && v["restart_lmdb_used_snapshot"] != "yes")
      bad = bad " restart_lmdb_used_snapshot"
    if (bad != "") printf "\n  WARNING: results differ from the model in:%s\n", bad
    else printf "\n  every run left exactly the state and alerts that the model predicts\n"
  }' "$results"

# machine-readable: the key=value lines, then one line per target
echo
echo "=== key=value"
grep -E '^[a-z_0-9]+=' "$results"
awk -F= '
  /^[a-z_0-9]+=/ { v[$1] = $2 }
  function t(name, k, op, bound,   ok) {
    if (!(k in v)) { print "target_" name "=not_measured"; return }
    ok = (op == ">=") ? (v[k] + 0 >= bound) : (v[k] + 0 < bound)
    print "target_" name "=" (ok ? "met" : "not_met")
  }
  END {
    t("ratio_to_limit_b128", "ratio_to_limit_b128", ">=", 0.85)
    t("ratio_to_limit_heavy_b128", "ratio_to_limit_heavy_b128", ">=", 0.8)
    t("drain_claimed_ratio", "drain_claimed_ratio", ">=", 0.5)
    t("drain_own_ratio", "drain_own_ratio", ">=", 0.5)
    t("state_size_ratio", "state_size_ratio", ">=", 0.8)
    t("lmdb_restart_speedup", "lmdb_restart_speedup", ">=", 5)
    t("latency_p99_under_2ms", "latency_p99_us", "<", 2000)
  }' "$results"
