#!/usr/bin/env bash
# Soak test: kvcache-bench for N minutes against one server, with TTLs expiring, LRU evictions
# under a memory cap, and both protocols at once; then checks that no request failed and that
# the server's RSS stayed flat once the cap was reached.
#
#   scripts/soak.sh [minutes]        (default 10; CI runs a short one)
#
# Needs target/release/kvcache-server and target/release/kvcache-bench (cargo build --release).
set -euo pipefail
cd "$(dirname "$0")/.."
# shellcheck source=scripts/lib.sh
source scripts/lib.sh
MINUTES=${1:-10}
SECS=$(awk -v m="$MINUTES" 'BEGIN { printf "%d", m * 60 }')
MAXMEM=${SOAK_MAX_MEMORY:-64mb}
OUT=${SOAK_OUT:-$(mktemp -d /tmp/kvcache-soak.XXXXXX)}
SERVER=target/release/kvcache-server
BENCH=target/release/kvcache-bench
mkdir -p "$OUT"
PORT=$(free_port)

"$SERVER" --host 127.0.0.1 --port "$PORT" --max-memory "$MAXMEM" >"$OUT/server.log" 2>&1 &
SERVER_PID=$!
trap 'kill "$SERVER_PID" 2>/dev/null || true' EXIT
for _ in $(seq 1 100); do
  (exec 3<>"/dev/tcp/127.0.0.1/$PORT") 2>/dev/null && break
  sleep 0.1
done

rss() { awk '{ print $2 * 4096 }' "/proc/$SERVER_PID/statm"; }
echo "soak: ${MINUTES} min against 127.0.0.1:$PORT, --max-memory $MAXMEM, results in $OUT"

# Text protocol: every PUT a new key with a 5 s TTL (expiry churn). RESP: new keys, no TTL
# (eviction churn). Both pipelined so the memory cap is reached within the first minute.
"$BENCH" --host 127.0.0.1 --port "$PORT" --protocol text --connections 50 --pipeline 8 \
  --duration "$SECS" --ttl 5 --ratio 0.5 --output "$OUT/text.json" >"$OUT/text.txt" 2>&1 &
TEXT_PID=$!
"$BENCH" --host 127.0.0.1 --port "$PORT" --protocol resp --connections 50 --pipeline 8 \
  --duration "$SECS" --ratio 0.6 --value-size 200 --output "$OUT/resp.json" >"$OUT/resp.txt" 2>&1 &
RESP_PID=$!

: >"$OUT/rss.tsv"
start=$(date +%s)
while kill -0 "$TEXT_PID" 2>/dev/null || kill -0 "$RESP_PID" 2>/dev/null; do
  printf '%s\t%s\n' "$(( $(date +%s) - start ))" "$(rss)" >>"$OUT/rss.tsv"
  sleep 5
done
text_rc=0; resp_rc=0
wait "$TEXT_PID" || text_rc=$?
wait "$RESP_PID" || resp_rc=$?
printf 'STATS: '; printf 'STATS\nQUIT\n' | nc -q1 127.0.0.1 "$PORT" || true

python3 - "$OUT" "$text_rc" "$resp_rc" <<'PY'
import json, sys
out, text_rc, resp_rc = sys.argv[1], int(sys.argv[2]), int(sys.argv[3])
ok = True
for name in ("text", "resp"):
    try:
        r = json.load(open(f"{out}/{name}.json"))
    except Exception as e:
        print(f"FAIL {name}: no report ({e})"); ok = False; continue
    print(f"{name}: {r['total_requests']} requests, {r['failed_requests']} failed, "
          f"{r['requests_per_second']:.0f} req/s, p99 {r['latency_p99']:.2f} ms, p99.9 {r['latency_p999']:.2f} ms, "
          f"hit rate {100 * r['cache_hits'] / max(1, r['cache_hits'] + r['cache_misses']):.1f}%")
    if r["failed_requests"] != 0:
        print(f"FAIL {name}: {r['failed_requests']} failed requests"); ok = False
rows = [tuple(map(int, l.split())) for l in open(f"{out}/rss.tsv") if l.strip()]
if len(rows) >= 4:
    half = rows[len(rows) // 2:]
    lo, hi = min(r for _, r in half), max(r for _, r in half)
    print(f"rss: start {rows[0][1] >> 20} MiB, second half {lo >> 20}-{hi >> 20} MiB, end {rows[-1][1] >> 20} MiB")
    # Flat: over the second half RSS moves by less than 10% (plus 4 MiB of allocator slack).
    if hi - lo > hi * 0.10 + (4 << 20):
        print("FAIL rss kept growing in the second half"); ok = False
else:
    print("rss: run too short to judge flatness")
sys.exit(0 if ok else 1)
PY
