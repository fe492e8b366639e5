#!/usr/bin/env bash
# What a Redis user types in the first hour, with the real redis-cli against kvcache: `help SET`
# and `help CLIENT KILL` (built from COMMAND DOCS; redis-cli aborts on a malformed reply),
# CLIENT LIST showing a line-protocol connection held open by the real nc, CLIENT KILL closing
# it while it sits idle, and CLIENT HELP. Expects target/release/kvcache-server; installs
# redis-tools and netcat-openbsd if they are missing.
set -euo pipefail
cd "$(dirname "$0")/../.."
BIN=target/release/kvcache-server
WORK=$(mktemp -d /tmp/kvcache-habits.XXXXXX)
PIDS=()
cleanup() {
  for p in "${PIDS[@]}"; do kill "$p" 2>/dev/null || true; done
  wait 2>/dev/null || true
  rm -rf "$WORK"
}
trap cleanup EXIT

need=()
for p in redis-tools netcat-openbsd python3; do dpkg -s "$p" >/dev/null 2>&1 || need+=("$p"); done
if [ "${#need[@]}" -gt 0 ]; then
  ${SUDO:-} apt-get update -qq
  DEBIAN_FRONTEND=noninteractive ${SUDO:-} apt-get install -y -qq "${need[@]}" >/dev/null
fi
fail() { echo "FAIL $*" >&2; exit 1; }

# shellcheck source=scripts/lib.sh
source scripts/lib.sh
KV=$(free_port)
"$BIN" --host 127.0.0.1 --port "$KV" >"$WORK/kv.log" 2>&1 &
PIDS+=($!)
wait_port "$KV"

echo "--- redis-cli help, from COMMAND DOCS"
# redis-cli prints help with colours; strip them.
help=$(printf 'help set\nhelp client kill\nhelp mset\n' | redis-cli -p "$KV" | sed 's/\x1b\[[0-9;]*m//g' | tr -d '\r')
for want in \
  "SET key value [NX|XX] [GET] [EX seconds|PX milliseconds|EXAT unix-time-seconds|PXAT unix-time-milliseconds|KEEPTTL]" \
  "CLIENT KILL ip:port|filter value [filter value ...]" \
  "MSET key value [key value ...]" \
  "group: connection"; do
  grep -qF "$want" <<<"$help" || fail "redis-cli help lacks '$want':
$help"
done

echo "--- CLIENT LIST shows an idle line-protocol connection; CLIENT KILL closes it"
# An nc that sends one command, then sits idle until the server closes the connection: its
# input is a FIFO that a sleeping process keeps open.
mkfifo "$WORK/nc.in"
sleep 120 >"$WORK/nc.in" &
PIDS+=($!)
nc 127.0.0.1 "$KV" <"$WORK/nc.in" >"$WORK/nc.out" &
NC=$!
PIDS+=("$NC")
printf 'PUT k v\n' >"$WORK/nc.in"
id=""
for _ in $(seq 1 100); do
  id=$(redis-cli -p "$KV" CLIENT LIST | awk '/proto=line/ && /cmd=put/ {sub("id=", "", $1); print $1}')
  [ -n "$id" ] && break
  sleep 0.1
done
[ -n "$id" ] || fail "CLIENT LIST never showed the nc connection: $(redis-cli -p "$KV" CLIENT LIST)"
[ "$(redis-cli -p "$KV" CLIENT KILL ID "$id")" = 1 ] || fail "CLIENT KILL ID $id did not report 1"
# The server has closed its end (a FIN, as Redis does; nc, its input still open, only notices
# when it next writes): a command typed now gets no answer, and nc ends.
printf 'PING\n' >"$WORK/nc.in"
for _ in $(seq 1 50); do
  kill -0 "$NC" 2>/dev/null || break
  sleep 0.1
done
kill -0 "$NC" 2>/dev/null && fail "nc is still connected after CLIENT KILL"
redis-cli -p "$KV" CLIENT LIST | grep -q "id=$id " && fail "connection $id is still listed after CLIENT KILL"
[ "$(cat "$WORK/nc.out")" = "OK stored" ] || fail "nc saw: $(cat "$WORK/nc.out")"
[ "$(redis-cli -p "$KV" CLIENT KILL 127.0.0.1:1)" = "ERR No such client" ] || fail "old-form CLIENT KILL"

echo "--- CLIENT HELP, COMMAND HELP, CONFIG HELP answer the hints errors give"
for c in CLIENT COMMAND CONFIG; do
  hint=$(redis-cli -p "$KV" "$c" NOPE)
  [ "$hint" = "ERR unknown subcommand 'NOPE'. Try $c HELP." ] || fail "$c NOPE said: $hint"
  redis-cli -p "$KV" "$c" HELP | head -1 | grep -q "^$c <subcommand>" || fail "$c HELP"
done
echo "redis-habits suite passed"
