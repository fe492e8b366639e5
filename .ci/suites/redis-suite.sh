#!/usr/bin/env bash
# Redis's own TCL test suite against kvcache: the units type/string, type/incr, expire and
# keyspace of Redis 7.0.15 (Debian bookworm's `redis` source package, the same version as its
# redis-server), in external-server mode. Fails on any failing test that is not listed in
# tests/redis-suite/expected-failures.txt, and on a harness crash; a listed test that passes is
# reported ("now passing, remove from the list") without failing.
#
# Expects target/release/kvcache-server. Installs tcl, dpkg-dev and redis-tools if missing.
# The source is fetched with `apt-get source` through a private copy of the apt sources with
# deb-src enabled (the system's apt configuration is not touched) and cached under
# $REDIS_SUITE_CACHE (default /tmp/kvcache-redis-suite), so a re-run starts in seconds.
# REDIS_SUITE_AGAINST_REDIS=1 also runs the same units against redis-server, as a reference.
set -euo pipefail
cd "$(dirname "$0")/../.."
ROOT=$(pwd)
BIN=$ROOT/target/release/kvcache-server
EXPECTED=$ROOT/tests/redis-suite/expected-failures.txt
VERSION=7.0.15
CACHE=${REDIS_SUITE_CACHE:-/tmp/kvcache-redis-suite}
SRC=$CACHE/redis-$VERSION
WORK=$(mktemp -d /tmp/kvcache-redis-suite-run.XXXXXX)
PIDS=()
cleanup() {
  for p in "${PIDS[@]}"; do kill "$p" 2>/dev/null || true; done
  wait 2>/dev/null || true
  rm -rf "$WORK"
}
trap cleanup EXIT
say() { printf '[redis-suite] %s\n' "$*"; }

[ -x "$BIN" ] || { echo "redis-suite: $BIN missing (cargo build --release first)" >&2; exit 1; }

need=()
command -v tclsh >/dev/null 2>&1 || need+=(tcl)
command -v dpkg-source >/dev/null 2>&1 || need+=(dpkg-dev)
command -v redis-cli >/dev/null 2>&1 || need+=(redis-tools)
if [ "${#need[@]}" -gt 0 ]; then
  say "installing ${need[*]}"
  ${SUDO:-} apt-get update -qq
  DEBIAN_FRONTEND=noninteractive ${SUDO:-} apt-get install -y -qq "${need[@]}" >/dev/null
fi

if [ ! -x "$SRC/runtest" ]; then
  say "fetching Debian's redis source package"
  mkdir -p "$CACHE/apt/sources.list.d" "$CACHE/apt/lists/partial" "$CACHE/download"
  # A copy of the bookworm entries with deb-src added, in both apt formats.
  for f in /etc/apt/sources.list.d/*.sources; do
    [ -e "$f" ] || continue
    grep -q '^Suites:.*bookworm' "$f" || continue
    sed 's/^Types: deb$/Types: deb deb-src/' "$f" >"$CACHE/apt/sources.list.d/$(basename "$f")"
  done
  for f in /etc/apt/sources.list /etc/apt/sources.list.d/*.list; do
    [ -e "$f" ] || continue
    grep -E '^deb .*bookworm' "$f" | sed 's/^deb /deb-src /' >>"$CACHE/apt/sources.list.d/deb-src.list" || true
  done
  apt_opts=(-o "Dir::Etc::SourceList=/dev/null" -o "Dir::Etc::SourceParts=$CACHE/apt/sources.list.d"
            -o "Dir::State::Lists=$CACHE/apt/lists" -o "APT::Sandbox::User=root")
  apt-get "${apt_opts[@]}" update -qq
  (cd "$CACHE/download" && rm -f ./*.dsc && apt-get "${apt_opts[@]}" source --download-only -qq redis)
  dsc=$(ls "$CACHE"/download/redis_*.dsc)
  case "$dsc" in
    */redis_$VERSION-*) ;;
    *) echo "redis-suite: expected the redis $VERSION source package, apt offers $(basename "$dsc")" >&2; exit 1 ;;
  esac
  rm -rf "$SRC.tmp"
  # Unpacks with Debian's patches applied (some add tests), as the packaged redis-server has them.
  dpkg-source --no-check -x "$dsc" "$SRC.tmp" >/dev/null
  mkdir -p "$SRC"
  mv "$SRC.tmp/runtest" "$SRC.tmp/tests" "$SRC/"
  rm -rf "$SRC.tmp"
fi

# shellcheck source=scripts/lib.sh
source scripts/lib.sh

UNITS=(--single unit/type/string --single unit/expire --single unit/keyspace --single unit/type/incr)
TAGS=(--tags -needs:debug --tags -needs:repl --tags -needs:config-maxmemory --tags -needs:save --tags -cluster:skip)

run_suite() { # port output-file
  # runtest writes its logs under tests/tmp of the tree it runs from: run a private copy.
  local tree=$WORK/tree-$1
  cp -r "$SRC" "$tree"
  (cd "$tree" && timeout 600 ./runtest --host 127.0.0.1 --port "$1" --singledb --durable \
     "${UNITS[@]}" "${TAGS[@]}") >"$2.raw" 2>&1 || true
  sed 's/\x1b\[[0-9;]*m//g' "$2.raw" >"$2"
}

if [ "${REDIS_SUITE_AGAINST_REDIS:-0}" = 1 ]; then
  RP=$(free_port)
  redis-server --port "$RP" --bind 127.0.0.1 --save '' --appendonly no >"$WORK/redis.log" 2>&1 &
  PIDS+=($!)
  wait_port "$RP"
  run_suite "$RP" "$WORK/redis.out"
  say "redis-server: $(grep -c '^\[ok\]' "$WORK/redis.out") ok, $(grep -c '^\[err\]' "$WORK/redis.out") failing"
fi

# --max-key-size 65535: one keyspace test uses a 50000-byte key; kvcache's default key limit is
# 16 KiB and its store holds keys up to 65535 bytes. Everything else runs with the defaults.
KP=$(free_port)
"$BIN" --host 127.0.0.1 --port "$KP" --max-key-size 65535 >"$WORK/kvcache.log" 2>&1 &
PIDS+=($!)
wait_port "$KP"
say "running units type/string, expire, keyspace, type/incr against kvcache"
START=$(date +%s)
run_suite "$KP" "$WORK/kv.out"
say "took $(( $(date +%s) - START ))s"

out=$WORK/kv.out
if grep -q '^\[exception\]' "$out" || [ "$(grep -c '^\[[0-9]*/4 done\]' "$out")" != 4 ]; then
  echo "redis-suite: the test harness did not complete all four units:" >&2
  grep -A20 '^\[exception\]' "$out" >&2 || tail -40 "$out" >&2
  exit 1
fi

grep '^\[ok\]: ' "$out" | sed -E 's/^\[ok\]: (.*) \([0-9]+ ms\)$/\1/' | sort -u >"$WORK/passed"
grep '^\[err\]: ' "$out" | sed -E 's/^\[err\]: (.*) in tests\/[^ ]*$/\1/' | sort -u >"$WORK/failed"
grep -v '^#' "$EXPECTED" | grep -v '^[[:space:]]*$' | sed 's/ :: .*$//' | sort -u >"$WORK/expected"

unexpected=$(comm -23 "$WORK/failed" "$WORK/expected")
now_passing=$(comm -12 "$WORK/passed" "$WORK/expected")
not_run=$(comm -23 "$WORK/expected" <(sort -u "$WORK/passed" "$WORK/failed"))
if [ -n "$now_passing" ]; then
  while IFS= read -r t; do say "now passing, remove from the list: $t"; done <<<"$now_passing"
fi
if [ -n "$not_run" ]; then
  while IFS= read -r t; do say "listed but not run (renamed upstream?): $t"; done <<<"$not_run"
fi
say "kvcache: $(grep -c '^\[ok\]' "$out") tests ok, $(grep -c '^\[err\]' "$out") failing ($(comm -12 "$WORK/failed" "$WORK/expected" | wc -l) of them expected)"
if [ -n "$unexpected" ]; then
  echo "redis-suite: FAILED, tests failing that are not in tests/redis-suite/expected-failures.txt:" >&2
  while IFS= read -r t; do
    echo "  $t" >&2
    # The harness's account of the failure follows its [err] line.
    grep -F -A8 "[err]: $t in " "$out" | sed 's/^/      /' >&2
  done <<<"$unexpected"
  exit 1
fi
say "passed"
