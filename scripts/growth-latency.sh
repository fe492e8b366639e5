#!/usr/bin/env bash
# Latency while the store grows: a probe client sends one GET every 0.5 ms on its own
# connection (timed from its scheduled send time) while
#   redis-benchmark -t set -n N -c 50 -d 64 -r 10N -P 32
# fills the server with up to N new keys. kvcache and Redis run side by side in the same run,
# alternating, each round on a fresh server; prints fill time, probe p50/p99/p99.9/max and the
# RSS at the end, and the median of each over the rounds.
#
#   scripts/growth-latency.sh [ROUNDS] [N ...]     (defaults: 2 rounds; N = 1000000 4000000 16000000)
#
# Needs target/release/kvcache-server, target/release/examples/probe (cargo build --release
# --example probe), redis-server and redis-benchmark. Set KVCACHE_BIN to measure another build,
# OLD_BIN to add an older kvcache build as a third column (before/after in one run), and
# KVCACHE_ARGS for extra server flags (e.g. "--threads 1", one worker as Redis has).
# PROBE_SLOW_US=T makes the probe print every request slower than T us to stderr.
set -euo pipefail
cd "$(dirname "$0")/.."
# shellcheck source=scripts/lib.sh
source scripts/lib.sh
ROUNDS=${1:-2}
shift || true
SIZES=("$@")
[ "${#SIZES[@]}" -gt 0 ] || SIZES=(1000000 4000000 16000000)
BIN=${KVCACHE_BIN:-target/release/kvcache-server}
PROBE=${PROBE_BIN:-target/release/examples/probe}
WORK=$(mktemp -d)
PID=""
trap '[ -n "$PID" ] && kill "$PID" 2>/dev/null; rm -rf "$WORK"' EXIT
[ -x "$PROBE" ] || { echo "build the probe first: cargo build --release --example probe" >&2; exit 2; }

start() { # server port -> sets PID
  # shellcheck disable=SC2086 # KVCACHE_ARGS is a list of flags
  case $1 in
    kvcache) "$BIN" --host 127.0.0.1 --port "$2" --max-memory 0 ${KVCACHE_ARGS:-} >"$WORK/server.log" 2>&1 & ;;
    kvcache-old) "$OLD_BIN" --host 127.0.0.1 --port "$2" --max-memory 0 >"$WORK/server.log" 2>&1 & ;;
    redis) redis-server --port "$2" --bind 127.0.0.1 --save '' --appendonly no >"$WORK/server.log" 2>&1 & ;;
  esac
  PID=$!
  wait_port "$2"
}

rss_mib() { awk '/^VmRSS/ {printf "%.0f", $2 / 1024}' "/proc/$1/status"; }

one() { # server n -> "fill_s p50 p99 p999 max rss"
  local server=$1 n=$2 port probe_out t0 t1
  port=$(free_port)
  start "$server" "$port"
  probe_out="$WORK/probe.out"
  # The probe runs until its stdin closes: hold it open with a pipe we close after the fill.
  exec 3> >("$PROBE" "127.0.0.1:$port" 500 0 >"$probe_out")
  sleep 0.5
  t0=$(date +%s.%N)
  redis-benchmark -p "$port" -t set -n "$n" -c 50 -d 64 -r $((10 * n)) -P 32 -q >/dev/null 2>&1
  t1=$(date +%s.%N)
  exec 3>&-
  sleep 0.5
  local rss
  rss=$(rss_mib "$PID")
  kill "$PID"
  wait "$PID" 2>/dev/null || true
  PID=""
  local p50 p99 p999 max
  p50=$(grep -o 'p50_us=[0-9]*' "$probe_out" | cut -d= -f2)
  p99=$(grep -o 'p99_us=[0-9]*' "$probe_out" | cut -d= -f2)
  p999=$(grep -o 'p999_us=[0-9]*' "$probe_out" | cut -d= -f2)
  max=$(grep -o 'max_us=[0-9]*' "$probe_out" | cut -d= -f2)
  echo "$(echo "$t1 - $t0" | bc -l) $p50 $p99 $p999 $max $rss"
}

echo "kvcache: $("$BIN" --version 2>/dev/null || echo "$BIN"); redis: $(redis-server --version | cut -d' ' -f3)"
printf '%-8s %9s %6s %9s %9s %9s %9s %8s\n' server N round fill_s p50_ms p99_ms p999_ms max_ms
SERVERS=(kvcache redis)
[ -n "${OLD_BIN:-}" ] && SERVERS=(kvcache kvcache-old redis)
for n in "${SIZES[@]}"; do
  for round in $(seq 1 "$ROUNDS"); do
    for server in "${SERVERS[@]}"; do
      read -r fill p50 p99 p999 max rss < <(one "$server" "$n")
      echo "$server $n $fill $p50 $p99 $p999 $max $rss" >>"$WORK/results"
      printf '%-8s %9s %6s %9.1f %9.2f %9.2f %9.2f %9.2f %8s\n' "$server" "$n" "$round" "$fill" \
        "$(echo "$p50 / 1000" | bc -l)" "$(echo "$p99 / 1000" | bc -l)" \
        "$(echo "$p999 / 1000" | bc -l)" "$(echo "$max / 1000" | bc -l)" "${rss}MiB"
    done
  done
done

echo
echo "medians over $ROUNDS rounds (markdown):"
echo "| server | N | fill s | probe p50 ms | p99 ms | p99.9 ms | max ms | RSS MiB |"
echo "|---|---:|---:|---:|---:|---:|---:|---:|"
for n in "${SIZES[@]}"; do
  for server in "${SERVERS[@]}"; do
    col() { awk -v s="$server" -v n="$n" -v c="$1" '$1 == s && $2 == n {print $c}' "$WORK/results" | median; }
    printf '| %s | %s | %.1f | %.2f | %.2f | %.2f | %.2f | %.0f |\n' "$server" "$n" "$(col 3)" \
      "$(echo "$(col 4) / 1000" | bc -l)" "$(echo "$(col 5) / 1000" | bc -l)" \
      "$(echo "$(col 6) / 1000" | bc -l)" "$(echo "$(col 7) / 1000" | bc -l)" "$(col 8)"
  done
done
