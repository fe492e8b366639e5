#!/usr/bin/env bash
# kvcache-bench's HTML report in a real browser. Three short runs write reports: a clean run,
# a run whose server goes away mid-way (errors, reconnects, early stop), and kvcache compared
# with redis-server in alternating rounds. Headless Chromium renders each to a PNG with no
# console message at all (the page's Content-Security-Policy turns any network fetch into a
# console error), and tests/peers/check_report.py checks that what the page shows (every chart
# point, summary cell, verdict and parameter) is what the run's JSON says.
# Expects target/release/{kvcache-server,kvcache-bench}; installs chromium, python3,
# redis-server and redis-tools if they are missing. PNGs stay in target/report-ci/ to look at.
set -euo pipefail
cd "$(dirname "$0")/../.."
BIN=target/release
OUT=target/report-ci
WORK=$(mktemp -d /tmp/kvcache-report.XXXXXX)
PIDS=()
cleanup() {
  for p in "${PIDS[@]}"; do kill "$p" 2>/dev/null || true; done
  wait 2>/dev/null || true
  rm -rf "$WORK"
}
trap cleanup EXIT

need=()
# Fonts explicitly: a screenshot without them is unreadable even when every check passes.
for p in chromium fonts-liberation fonts-dejavu-core python3 redis-server redis-tools; do
  dpkg -s "$p" >/dev/null 2>&1 || need+=("$p")
done
if [ "${#need[@]}" -gt 0 ]; then
  ${SUDO:-} apt-get update -qq
  DEBIAN_FRONTEND=noninteractive ${SUDO:-} apt-get install -y -qq "${need[@]}" >/dev/null
fi
for b in kvcache-server kvcache-bench; do
  [ -x "$BIN/$b" ] || { echo "FAIL $BIN/$b is missing: run cargo build --release first" >&2; exit 1; }
done
rm -rf "$OUT" && mkdir -p "$OUT"

# shellcheck source=scripts/lib.sh
source scripts/lib.sh
start_kv() { # port
  "$BIN/kvcache-server" --host 127.0.0.1 --port "$1" >"$WORK/kv-$1.log" 2>&1 &
  PIDS+=($!)
  wait_port "$1"
}

# Chromium, headless, with nothing of its own running in the background; `--no-sandbox`
# because CI containers usually run as root.
browser() {
  timeout 120 chromium --headless --no-sandbox --disable-gpu --hide-scrollbars \
    --disable-background-networking --disable-component-update --disable-sync \
    --disable-default-apps --disable-extensions --no-first-run --mute-audio \
    --user-data-dir="$WORK/chromium-profile" "$@"
}

# Renders NAME.html to a PNG and to a DOM dump, then checks both against NAME.json.
check() { # name
  local name=$1 page="file://$WORK/$1.html"
  browser --enable-logging=stderr --v=0 --window-size=1200,3400 \
    --screenshot="$OUT/$name.png" "$page" >"$WORK/$name.shot.log" 2>&1 || {
    echo "FAIL chromium could not render $name.html" >&2; tail -20 "$WORK/$name.shot.log" >&2; exit 1; }
  browser --enable-logging=stderr --v=0 --dump-dom "$page" >"$WORK/$name.dom" 2>"$WORK/$name.dom.log" || {
    echo "FAIL chromium could not load $name.html" >&2; tail -20 "$WORK/$name.dom.log" >&2; exit 1; }
  # The page logs nothing; any console line is a script error or a blocked fetch.
  if grep -h ':CONSOLE' "$WORK/$name.shot.log" "$WORK/$name.dom.log"; then
    echo "FAIL $name.html wrote to the browser console (above)" >&2
    exit 1
  fi
  local size
  size=$(stat -c %s "$OUT/$name.png")
  if [ "$size" -lt 20000 ]; then
    echo "FAIL $OUT/$name.png is only $size bytes: nothing was drawn" >&2
    exit 1
  fi
  python3 tests/peers/check_report.py "$WORK/$name.dom" "$WORK/$name.html" "$WORK/$name.json"
  echo "ok $name: $OUT/$name.png ($size bytes)"
}

echo "--- a clean run"
KV=$(free_port)
start_kv "$KV"
"$BIN/kvcache-bench" --host 127.0.0.1 --port "$KV" -c 8 -P 4 --duration 3 --keys 5000 \
  -o "$WORK/clean.json" --report "$WORK/clean.html" >"$WORK/clean.out"
check clean

echo "--- a server that goes away mid-run"
GONE=$(free_port)
start_kv "$GONE"
GONE_PID=${PIDS[-1]}
set +e
"$BIN/kvcache-bench" --host 127.0.0.1 --port "$GONE" -c 4 --duration 60 --give-up 2 \
  -o "$WORK/outage.json" --report "$WORK/outage.html" >"$WORK/outage.out" 2>"$WORK/outage.err" &
BENCH=$!
sleep 2
kill "$GONE_PID"
wait "$BENCH"
rc=$?
set -e
if [ "$rc" != 1 ]; then
  echo "FAIL the outage run exited $rc, not 1" >&2; cat "$WORK/outage.out" "$WORK/outage.err" >&2; exit 1
fi
grep -q 'reconnect attempts failed' "$WORK/outage.err" || { echo "FAIL no reconnect status lines" >&2; exit 1; }
if grep -q 'PASS' "$WORK/outage.out"; then echo "FAIL PASS printed for a failed run" >&2; exit 1; fi
check outage

echo "--- kvcache compared with redis-server $(redis-server --version | awk '{print $3}')"
RP=$(free_port)
redis-server --port "$RP" --bind 127.0.0.1 --save '' --appendonly no >"$WORK/redis.log" 2>&1 &
PIDS+=($!)
wait_port "$RP"
"$BIN/kvcache-bench" --host 127.0.0.1 --port "$KV" --compare "127.0.0.1:$RP" --protocol resp \
  --rounds 2 -c 8 -P 4 --duration 2 --keys 5000 \
  -o "$WORK/compare.json" --report "$WORK/compare.html" >"$WORK/compare.out"
check compare

echo "report suite passed; screenshots in $OUT/"
