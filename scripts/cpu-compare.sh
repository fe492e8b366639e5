#!/usr/bin/env bash
# CPU per request, kvcache vs Redis, counted in instructions by callgrind (repeatable on a
# noisy machine, unlike wall-clock figures). GET runs against 100k stored keys (hits). For each server: run it under callgrind, drive
# N and then 2N requests with redis-benchmark in two separate runs, and report
# (Ir(2N) - Ir(N)) / N: the user-space instructions one request costs, start-up excluded.
#
#   scripts/cpu-compare.sh [N] [pipeline]       (defaults: 100000 requests, -P 16)
set -euo pipefail
N=${1:-100000}
P=${2:-16}
BIN=${KVCACHE_BIN:-target/release/kvcache-server}
WORK=$(mktemp -d)
trap 'rm -rf "$WORK"' EXIT

# shellcheck source=scripts/lib.sh
source "$(dirname "$0")/lib.sh"

run_one() { # name requests test -> instruction count
  local name=$1 n=$2 test=$3 port out pid
  port=$(free_port)
  out="$WORK/$name-$n-$test.cg"
  if [ "$name" = kvcache ]; then
    valgrind --tool=callgrind --callgrind-out-file="$out" "$BIN" --host 127.0.0.1 --port "$port" \
      >"$WORK/log" 2>&1 &
  else
    valgrind --tool=callgrind --callgrind-out-file="$out" redis-server --port "$port" --bind 127.0.0.1 \
      --save '' --appendonly no >"$WORK/log" 2>&1 &
  fi
  pid=$!
  wait_port "$port" 300 # slow under valgrind
  # GET reads keys that exist (a cache's common case), so both runs first store the same
  # 100k keys; the fill cancels out in the difference between the N and 2N runs.
  if [ "$test" = get ]; then
    redis-benchmark -p "$port" -n 200000 -c 10 -P "$P" -t set -d 64 -r 100000 -q >/dev/null 2>&1
  fi
  redis-benchmark -p "$port" -n "$n" -c 10 -P "$P" -t "$test" -d 64 -r 100000 -q >/dev/null 2>&1
  kill -TERM "$pid"
  wait "$pid" 2>/dev/null || true
  # Sum the totals of every thread's file.
  cat "$out"* | awk '/^summary:/ {s += $2} /^totals:/ {t += $2} END {print (t ? t : s)}'
}

printf '%-8s %-5s %14s\n' server test instr/request
for test in get set; do
  for name in kvcache redis; do
    a=$(run_one "$name" "$N" "$test")
    b=$(run_one "$name" $((2 * N)) "$test")
    printf '%-8s %-5s %14.0f\n' "$name" "$test" "$(echo "($b - $a) / $N" | bc -l)"
  done
done
