#!/usr/bin/env bash
# Server CPU per request against the floor: the store-less epoll responder
# (examples/floor.rs), kvcache (default: per-core; --threads 1; --runtime shared) and Redis, same run,
# alternating round by round, medians. CPU is the server process's utime+stime from
# /proc/PID/stat over the workload, divided by the requests it answered; on loopback most of
# it is the kernel's, which is why the floor is the yardstick.
#
#   scripts/floor-compare.sh [ROUNDS] [REQUESTS]     (defaults: 5 rounds, 200000 requests)
#
# Workloads: redis-benchmark -c 100 -d 64 -r 100000 for GET P=1, SET P=1 and GET+SET P=16
# (GET after the keys were stored); and the line protocol under light load: kvcache-bench with
# 100 connections each waiting for its reply at 7,000 requests/s in total (Redis has no line
# protocol: "-"). Needs target/release/{kvcache-server,kvcache-bench,examples/floor},
# redis-server and redis-benchmark.
set -euo pipefail
cd "$(dirname "$0")/.."
# shellcheck source=scripts/lib.sh
source scripts/lib.sh
ROUNDS=${1:-5}
N=${2:-200000}
BIN=${KVCACHE_BIN:-target/release/kvcache-server}
BENCH=${BENCH:-target/release/kvcache-bench}
FLOOR=${FLOOR_BIN:-target/release/examples/floor}
HZ=$(getconf CLK_TCK)
WORK=$(mktemp -d)
PID=""
trap '[ -n "$PID" ] && kill "$PID" 2>/dev/null; rm -rf "$WORK"' EXIT
for f in "$BIN" "$BENCH" "$FLOOR"; do
  [ -x "$f" ] || { echo "missing $f (cargo build --release --examples)" >&2; exit 2; }
done

ticks() { awk '{print $14 + $15}' "/proc/$1/stat"; }

start() { # server port
  case $1 in
    floor) "$FLOOR" "$2" >"$WORK/server.log" 2>&1 & ;;
    kvcache) "$BIN" --host 127.0.0.1 --port "$2" >"$WORK/server.log" 2>&1 & ;;
    kvcache-1t) "$BIN" --host 127.0.0.1 --port "$2" --threads 1 >"$WORK/server.log" 2>&1 & ;;
    kvcache-shared) "$BIN" --host 127.0.0.1 --port "$2" --runtime shared >"$WORK/server.log" 2>&1 & ;;
    redis) redis-server --port "$2" --bind 127.0.0.1 --save '' --appendonly no >"$WORK/server.log" 2>&1 & ;;
  esac
  PID=$!
  wait_port "$2"
}

# us of server CPU per request for one workload: prints the number.
measure() { # port workload
  local port=$1 w=$2 t0 t1 n
  case $w in
    get1 | get16) redis-benchmark -p "$port" -c 100 -d 64 -r 100000 -n "$N" -P 16 -t set -q >/dev/null 2>&1 ;;
  esac
  t0=$(ticks "$PID")
  case $w in
    get1) redis-benchmark -p "$port" -c 100 -d 64 -r 100000 -n "$N" -P 1 -t get -q >/dev/null 2>&1; n=$N ;;
    set1) redis-benchmark -p "$port" -c 100 -d 64 -r 100000 -n "$N" -P 1 -t set -q >/dev/null 2>&1; n=$N ;;
    get16) redis-benchmark -p "$port" -c 100 -d 64 -r 100000 -n $((4 * N)) -P 16 -t set,get -q >/dev/null 2>&1; n=$((8 * N)) ;;
    text)
      "$BENCH" --host 127.0.0.1 --port "$port" --protocol text --connections 100 --rate 7000 \
        --duration 6 --output "$WORK/text.json" >/dev/null 2>&1 || true
      n=$(sed -n 's/^  "successful_requests": \([0-9]*\),$/\1/p' "$WORK/text.json") ;;
  esac
  t1=$(ticks "$PID")
  echo "($t1 - $t0) * 1000000 / $HZ / $n" | bc -l
}

SERVERS=(floor kvcache kvcache-1t kvcache-shared redis)
WORKLOADS=(get1 set1 get16 text)
for round in $(seq 1 "$ROUNDS"); do
  for server in "${SERVERS[@]}"; do
    port=$(free_port)
    start "$server" "$port"
    for w in "${WORKLOADS[@]}"; do
      if [ "$server" = redis ] && [ "$w" = text ]; then continue; fi
      us=$(measure "$port" "$w")
      echo "$server $w $us" >>"$WORK/results"
      printf 'round %d %-10s %-6s %8.2f us/request\n' "$round" "$server" "$w" "$us"
    done
    kill "$PID"
    wait "$PID" 2>/dev/null || true
    PID=""
  done
done

med() { awk -v s="$1" -v w="$2" '$1 == s && $2 == w {print $3}' "$WORK/results" | median; }
echo
echo "server CPU per request, medians of $ROUNDS alternating rounds (us):"
echo "| workload | floor | kvcache | kvcache 1 thread | kvcache shared runtime | Redis | kvcache / floor | 1 thread / floor | shared / floor | Redis / floor |"
echo "|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|"
for w in "${WORKLOADS[@]}"; do
  f=$(med floor "$w"); k=$(med kvcache "$w"); k1=$(med kvcache-1t "$w"); ks=$(med kvcache-shared "$w")
  if [ "$w" = text ]; then r="-"; rr="-"; else r=$(printf '%.2f' "$(med redis "$w")"); rr=$(printf '%.2f' "$(echo "$r / $f" | bc -l)"); fi
  label=$(case $w in get1) echo "GET, P=1" ;; set1) echo "SET, P=1" ;; get16) echo "GET+SET, P=16" ;; text) echo "text, 100 conns waiting, 7k req/s" ;; esac)
  printf '| %s | %.2f | %.2f | %.2f | %.2f | %s | %.2f | %.2f | %.2f | %s |\n' "$label" "$f" "$k" "$k1" "$ks" "$r" \
    "$(echo "$k / $f" | bc -l)" "$(echo "$k1 / $f" | bc -l)" "$(echo "$ks / $f" | bc -l)" "$rr"
done
