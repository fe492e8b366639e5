#!/usr/bin/env bash
# kvcache vs Redis 7, both over TLS, on this machine: throughput and server CPU per request with
# redis-benchmark --tls at pipeline 1 and 16, then the rate of new TLS connections (full
# handshakes) each server sustains. Rounds alternate which server goes first; the table shows
# medians over the rounds.
#
#   scripts/tls-compare.sh [ROUNDS] [REQUESTS]     (defaults: 5 rounds, 200000 requests a run)
#
# Server CPU is utime+stime from /proc/PID/stat over each run, in microseconds per request (per
# connection for the handshake runs). The load generator runs on the same machine: pin it away
# from the servers on a larger box (TASKSET_SERVER="taskset -c 0", TASKSET_CLIENT="taskset -c 1-3")
# or the comparison measures the contention as much as the servers. Environment: CLIENTS (50),
# HANDSHAKES (connections per handshake run, 3000), KVCACHE_BIN, KVCACHE_THREADS (server worker
# threads; default: the server's own, one per CPU).
set -euo pipefail
ROUNDS=${1:-5}
N=${2:-200000}
C=${CLIENTS:-50}
HS=${HANDSHAKES:-3000}
BIN=${KVCACHE_BIN:-target/release/kvcache-server}
TS_SERVER=${TASKSET_SERVER:-}
TS_CLIENT=${TASKSET_CLIENT:-}
cd "$(dirname "$0")/.."
# shellcheck source=scripts/lib.sh
source scripts/lib.sh
for tool in redis-server redis-benchmark redis-cli openssl; do
  command -v "$tool" >/dev/null || { echo "$0: $tool is needed (apt-get install redis-server redis-tools openssl)" >&2; exit 1; }
done
[ -x "$BIN" ] || { echo "$0: $BIN missing: cargo build --release" >&2; exit 1; }

WORK=$(mktemp -d)
PIDS=()
cleanup() {
  for p in "${PIDS[@]}"; do kill "$p" 2>/dev/null || true; done
  wait 2>/dev/null || true
  rm -rf "$WORK"
}
trap cleanup EXIT
bash scripts/tls-certs.sh "$WORK/certs" >/dev/null
CERT=$WORK/certs/server.crt KEY=$WORK/certs/server.key CA=$WORK/certs/ca.crt
TICK=$(getconf CLK_TCK)

wait_tls() { # port
  for _ in $(seq 1 100); do
    redis-cli --tls --cacert "$CA" -p "$1" PING >/dev/null 2>&1 && return 0
    sleep 0.1
  done
  echo "nothing answers on TLS port $1" >&2
  return 1
}

KP=$(free_port)
threads=()
[ -z "${KVCACHE_THREADS:-}" ] || threads=(--threads "$KVCACHE_THREADS")
# shellcheck disable=SC2086 # TS_SERVER is a command prefix, split on purpose
$TS_SERVER "$BIN" --host 127.0.0.1 --port 0 --tls-port "$KP" --tls-cert-file "$CERT" --tls-key-file "$KEY" \
  --max-memory 0 ${threads[@]+"${threads[@]}"} >"$WORK/kvcache.log" 2>&1 &
KV_PID=$!
PIDS+=("$KV_PID")
RP=$(free_port)
# shellcheck disable=SC2086
$TS_SERVER redis-server --port 0 --tls-port "$RP" --bind 127.0.0.1 --save '' --appendonly no \
  --tls-cert-file "$CERT" --tls-key-file "$KEY" --tls-ca-cert-file "$CA" --tls-auth-clients no \
  >"$WORK/redis.log" 2>&1 &
REDIS_PID=$!
PIDS+=("$REDIS_PID")
wait_tls "$KP"
wait_tls "$RP"

cpu_ticks() { # pid -> utime + stime (fields 14 and 15; the name field may hold spaces)
  sed 's/.*) //' "/proc/$1/stat" | awk '{print $12 + $13}'
}

# One throughput run: appends "rps cpu_us_per_request" to $WORK/<server>-P<p>-<test>.
run() { # server port pid pipeline
  local name=$1 port=$2 pid=$3 p=$4 before after out t rps
  before=$(cpu_ticks "$pid")
  # shellcheck disable=SC2086
  out=$($TS_CLIENT redis-benchmark --tls --cacert "$CA" -p "$port" -c "$C" -n "$N" -P "$p" -r 100000 -d 64 \
    -t set,get --csv 2>/dev/null)
  after=$(cpu_ticks "$pid")
  for t in SET GET; do
    rps=$(grep "^\"$t\"" <<<"$out" | cut -d, -f2 | tr -d '"')
    echo "$rps $(echo "($after - $before) * 1000000 / $TICK / (2 * $N)" | bc -l)" >>"$WORK/$name-P$p-$t"
  done
}

# Handshakes: redis-benchmark -k 0 opens a new connection (full TLS handshake) for every PING.
handshakes() { # server port pid
  local name=$1 port=$2 pid=$3 before after out
  before=$(cpu_ticks "$pid")
  # shellcheck disable=SC2086
  out=$($TS_CLIENT redis-benchmark --tls --cacert "$CA" -p "$port" -c 10 -n "$HS" -k 0 -t ping_mbulk --csv 2>/dev/null)
  after=$(cpu_ticks "$pid")
  echo "$(grep '^"PING_MBULK"' <<<"$out" | cut -d, -f2 | tr -d '"') $(echo "($after - $before) * 1000000 / $TICK / $HS" | bc -l)" \
    >>"$WORK/$name-handshake"
}

echo "kvcache $("$BIN" --version | awk '{print $2}') vs $(redis-server --version | awk '{print $3}') over TLS;" \
  "$ROUNDS rounds, $N requests per run, $C connections, 64-byte values" >&2
for r in $(seq 1 "$ROUNDS"); do
  if ((r % 2)); then order=(kvcache redis); else order=(redis kvcache); fi
  for p in 1 16; do
    for s in "${order[@]}"; do
      if [ "$s" = kvcache ]; then run kvcache "$KP" "$KV_PID" "$p"; else run redis "$RP" "$REDIS_PID" "$p"; fi
    done
  done
  for s in "${order[@]}"; do
    if [ "$s" = kvcache ]; then handshakes kvcache "$KP" "$KV_PID"; else handshakes redis "$RP" "$REDIS_PID"; fi
  done
  echo "round $r of $ROUNDS done" >&2
done

col() { cut -d' ' -f"$2" "$1" | median; }
printf '\n%-9s %-4s %-4s %12s %14s %12s\n' server P test rps "cpu us/req" "vs redis"
for p in 1 16; do
  for t in SET GET; do
    for s in kvcache redis; do
      f=$WORK/$s-P$p-$t
      ratio=$(echo "$(col "$f" 1) / $(col "$WORK/redis-P$p-$t" 1)" | bc -l)
      printf '%-9s %-4s %-4s %12.0f %14.2f %11.2fx\n' "$s" "$p" "$t" "$(col "$f" 1)" "$(col "$f" 2)" "$ratio"
    done
  done
done
printf '\n%-9s %20s %22s\n' server "handshakes/s" "cpu us/handshake"
for s in kvcache redis; do
  printf '%-9s %20.0f %22.0f\n' "$s" "$(col "$WORK/$s-handshake" 1)" "$(col "$WORK/$s-handshake" 2)"
done
