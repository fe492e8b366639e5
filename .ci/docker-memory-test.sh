#!/usr/bin/env bash
# The memory cap under a container limit: the kv-cache image (built by docker-test.sh) runs with
# `docker run --memory 256m` and no --max-memory, so kvcache takes its cap from the cgroup
# (3/4 of the limit less 8 MiB). A flood of writes far beyond the limit must evict, not get the
# container OOM-killed, and the server must answer afterwards. Run by ship.sh after
# docker-test.sh. Needs a running Docker Engine and redis-tools (redis-cli, redis-benchmark).
set -euo pipefail
repo=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
cd "$repo"
image=${KVCACHE_IMAGE:-kv-cache}
name=kvcache-ci-memory-$$
log() { printf '[docker-memory-test] %s\n' "$*" >&2; }
die() { log "FAIL: $*"; exit 1; }
cleanup() { docker rm -f "$name" >/dev/null 2>&1 || true; }
trap cleanup EXIT
# shellcheck source=scripts/lib.sh
source "$repo/scripts/lib.sh"

docker image inspect "$image" >/dev/null 2>&1 || die "no $image image: run .ci/docker-test.sh first"
port=$(free_port)
docker run -d --name "$name" --memory 256m --memory-swap 256m -p "127.0.0.1:$port:7171" "$image" >/dev/null
wait_port "$port" 100 || die "the container does not answer"

cap=$(redis-cli -p "$port" CONFIG GET maxmemory | tail -1)
want=$(((256 << 20) * 3 / 4 - (8 << 20)))
[ "$cap" = "$want" ] || die "maxmemory is $cap, expected $want (3/4 of 256 MiB less 8 MiB)"
docker logs "$name" 2>&1 | grep -q "cgroup memory limit" || die "the cgroup-derived cap is not logged"
log "ok: maxmemory $cap from the 256 MiB cgroup limit"

# About 1.2 GB of writes into 256 MiB: small values first, then a shift to large ones.
redis-benchmark -p "$port" -t set -n 2000000 -d 200 -r 100000000 -P 32 -c 20 -q >/dev/null
redis-benchmark -p "$port" -t set -n 300000 -d 2000 -r 100000000 -P 16 -c 20 -q >/dev/null
state=$(docker inspect -f '{{.State.Running}} {{.State.OOMKilled}}' "$name")
[ "$state" = "true false" ] || die "after the flood the container is running/oom-killed: $state"
log "ok: still running, not OOM-killed"

[ "$(redis-cli -p "$port" SET after-flood yes)" = OK ] || die "SET after the flood"
[ "$(redis-cli -p "$port" GET after-flood)" = yes ] || die "GET after the flood"
evicted=$(redis-cli -p "$port" INFO stats | tr -d '\r' | sed -n 's/^evicted_keys://p')
rss=$(redis-cli -p "$port" INFO memory | tr -d '\r' | sed -n 's/^used_memory_rss://p')
[ "${evicted:-0}" -gt 0 ] || die "nothing was evicted: the flood did not reach the cap"
[ "$rss" -lt $((256 << 20)) ] || die "RSS $rss is not under the limit"
log "ok: serves after the flood; evicted $evicted keys; RSS $((rss >> 20)) MiB of a 256 MiB limit"
