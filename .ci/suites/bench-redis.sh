#!/usr/bin/env bash
# Runs a short `kvcache-bench --protocol resp` against a real Redis and fails if any request
# failed. Expects target/release/kvcache-bench (cargo build --release); installs
# redis-server (Debian) when missing; starts it on a free loopback port and stops it after.
set -euo pipefail
cd "$(dirname "$0")/../.."

BENCH=${BENCH:-target/release/kvcache-bench}
if [ ! -x "$BENCH" ]; then
    echo "bench-redis: $BENCH is missing; run cargo build --release first" >&2
    exit 1
fi
if ! command -v redis-server >/dev/null 2>&1 || ! command -v redis-cli >/dev/null 2>&1; then
    echo "bench-redis: installing redis-server"
    export DEBIAN_FRONTEND=noninteractive
    apt-get update -qq >/dev/null
    apt-get install -y -qq redis-server >/dev/null
fi

workdir=$(mktemp -d)
redis_pid=""
cleanup() {
    if [ -n "$redis_pid" ] && kill -0 "$redis_pid" 2>/dev/null; then
        kill "$redis_pid" 2>/dev/null || true
        wait "$redis_pid" 2>/dev/null || true
    fi
    rm -rf "$workdir"
}
trap cleanup EXIT

# Start Redis on a free port: a taken port makes redis-server exit, so try another.
port=""
for _ in $(seq 1 20); do
    candidate=$((20000 + RANDOM % 20000))
    redis-server --port "$candidate" --bind 127.0.0.1 --save '' --appendonly no \
        --dir "$workdir" --daemonize no >"$workdir/redis.log" 2>&1 &
    redis_pid=$!
    for _ in $(seq 1 50); do
        if [ "$(redis-cli -p "$candidate" ping 2>/dev/null)" = "PONG" ]; then
            port=$candidate
            break 2
        fi
        kill -0 "$redis_pid" 2>/dev/null || break
        sleep 0.1
    done
    kill "$redis_pid" 2>/dev/null || true
    wait "$redis_pid" 2>/dev/null || true
    redis_pid=""
done
if [ -z "$port" ]; then
    echo "bench-redis: could not start redis-server" >&2
    cat "$workdir/redis.log" >&2 || true
    exit 1
fi
echo "bench-redis: $(redis-server --version | cut -d' ' -f1-3) on 127.0.0.1:$port"

out="$workdir/bench.json"
status=0
"$BENCH" --host 127.0.0.1 --port "$port" --protocol resp \
    --connections 20 --requests 500 --pipeline 4 --ttl 60 --output "$out" || status=$?
if [ "$status" -ne 0 ]; then
    echo "bench-redis: kvcache-bench exited with status $status" >&2
    exit 1
fi
if ! grep -q '"failed_requests": 0,' "$out" || ! grep -q '"total_requests": 10000,' "$out"; then
    echo "bench-redis: unexpected results:" >&2
    cat "$out" >&2
    exit 1
fi
echo "bench-redis: OK (10,000 requests against Redis, no failures)"
