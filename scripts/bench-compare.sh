#!/usr/bin/env bash
# Compares kvcache-bench runs against several servers on this machine, alternating targets
# round by round (a shared 2-core machine is noisy) and printing the median of each.
#
#   scripts/bench-compare.sh [ROUNDS] [BENCH ARGS...]
#
# Targets come from TARGETS, "name:port:protocol" separated by spaces, for example
#   TARGETS="null:7390:text kvcache:7301:text kvcache:7301:resp redis:6390:resp"
# The servers must already be running. Raw JSON goes to $OUT (default: a temp directory).
set -euo pipefail
cd "$(dirname "$0")/.."
# shellcheck source=scripts/lib.sh
source scripts/lib.sh

rounds=${1:-5}
shift || true
BENCH=${BENCH:-target/release/kvcache-bench}
TARGETS=${TARGETS:-"null:7390:text kvcache:7301:text kvcache:7301:resp redis:6390:resp"}
OUT=${OUT:-$(mktemp -d)}
mkdir -p "$OUT"

field() { sed -n "s/^  \"$2\": \\([0-9.]*\\),\$/\\1/p" "$1"; }

for round in $(seq 1 "$rounds"); do
    for t in $TARGETS; do
        IFS=: read -r name port proto <<<"$t"
        file="$OUT/$name-$proto-$round.json"
        "$BENCH" --host 127.0.0.1 --port "$port" --protocol "$proto" "$@" --output "$file" >/dev/null
        printf '%-8s %-5s round %d: %10.0f req/s  p50 %.3f ms  p99 %.3f ms  failed %s\n' \
            "$name" "$proto" "$round" "$(field "$file" requests_per_second)" \
            "$(field "$file" latency_median)" "$(field "$file" latency_p99)" \
            "$(field "$file" failed_requests)"
    done
done

echo
echo "Medians over $rounds rounds (bench args: $*):"
for t in $TARGETS; do
    IFS=: read -r name port proto <<<"$t"
    files=("$OUT/$name-$proto-"*.json)
    rps=$(for f in "${files[@]}"; do field "$f" requests_per_second; done | median)
    p50=$(for f in "${files[@]}"; do field "$f" latency_median; done | median)
    p99=$(for f in "${files[@]}"; do field "$f" latency_p99; done | median)
    printf '  %-8s %-5s %10.0f req/s   p50 %.3f ms   p99 %.3f ms\n' "$name" "$proto" "$rps" "$p50" "$p99"
done
echo "Raw results: $OUT"
