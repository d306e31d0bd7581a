#!/usr/bin/env bash
# The web console in a real browser (tests/browser/console.mjs): a private
# redis-server, stx serve on a free port, a stream with a streamtx group and
# two dead letters, then headless Chromium driven by playwright-core.
#
#   tests/browser/run.sh BUILD_DIR SOURCE_DIR
#
# Needs chromium, node and npm (Debian: chromium, nodejs, npm); without them
# it prints why and exits 77 (ctest: skipped).  playwright-core is installed
# from npm into BUILD_DIR/browser the first time.  The screenshot is
# BUILD_DIR/browser/console.png.
set -euo pipefail
build=$1
src=$2
for tool in node npm; do
  command -v "$tool" >/dev/null 2>&1 || { echo "browser test skipped: no $tool"; exit 77; }
done
[ -x "${CHROMIUM:-/usr/bin/chromium}" ] || { echo "browser test skipped: no chromium"; exit 77; }

die() { echo "browser: $*" >&2; exit 1; }
tmp=$(mktemp -d)
redis_pid=
serve_pid=
cleanup() {
  [ -n "$serve_pid" ] && kill "$serve_pid" 2>/dev/null && wait "$serve_pid" 2>/dev/null
  [ -n "$redis_pid" ] && kill "$redis_pid" 2>/dev/null && wait "$redis_pid" 2>/dev/null
  rm -rf "$tmp"
}
trap cleanup EXIT
# shellcheck source=scripts/redis.sh
. "$src/scripts/redis.sh"
start_redis
url=redis://127.0.0.1:$PORT

mkdir -p "$build/browser"
if [ ! -d "$build/browser/node_modules/playwright-core" ]; then
  # The npm registry out of reach is the machine's problem, not the
  # console's: skipped, and said so.
  (cd "$build/browser" && npm install --no-audit --no-fund --silent playwright-core@1 >/dev/null) ||
    { echo "browser test skipped: npm install playwright-core failed (no registry?)"; exit 77; }
fi

# A stream processed by a streamtx group (the counter example), with lag,
# and two dead letters of that group.
"$build/produce" --url "$url" --stream orders --count 30 >/dev/null
"$build/counter" run --url "$url" --stream orders --group counter --exit-when-idle >/dev/null 2>&1
"$build/produce" --url "$url" --stream orders --count 5 --prefix late- >/dev/null
dlq='{orders}:stx:6:orders:counter:dlq'
redis-cli -p "$PORT" XADD "$dlq" '*' stx.fields 2 type order.created key o-91 \
  stx.source_stream orders stx.group counter stx.source_id 1-3 stx.reason handler_failed \
  stx.error "sku 'kiwi' is not in the catalogue" stx.attempts 3 stx.failed_at 1 >/dev/null
redis-cli -p "$PORT" XADD "$dlq" '*' stx.fields 2 type order.created key o-97 \
  stx.source_stream orders stx.group counter stx.source_id 1-9 stx.reason max_deliveries \
  stx.error "timeout talking to pricing" stx.attempts 5 stx.failed_at 2 >/dev/null

"$build/stx" --url "$url" serve --listen 127.0.0.1:0 >"$tmp/serve.out" 2>"$tmp/serve.err" &
serve_pid=$!
for _ in $(seq 1 100); do
  grep -q '^listening on' "$tmp/serve.out" 2>/dev/null && break
  sleep 0.05
done
base=$(sed -n 's/^listening on //p' "$tmp/serve.out")
[ -n "$base" ] || die "stx serve did not start: $(cat "$tmp/serve.err")"

(cd "$build/browser" && node "$src/tests/browser/console.mjs" "$base" "$build/browser/console.png")
[ "$(redis-cli -p "$PORT" XLEN "$dlq")" = 1 ] || die "the redrive did not move exactly one dead letter"
echo "1 passed, 0 failed"
