#!/usr/bin/env bash
# Issue 12: kvcache over TLS against real peers: redis-cli --tls, redis-py with ssl=True,
# openssl s_client for the line protocol, redis-benchmark --tls, kvcache's own tools; mutual
# TLS; plain text and stalled handshakes on the TLS port; certificate reload on SIGHUP.
# Certificates come from scripts/tls-certs.sh (openssl), made fresh for every run.
# Expects target/release/kvcache-{server,cli,bench}; installs redis-tools, openssl and a
# redis-py venv under /tmp if they are missing.
set -euo pipefail
cd "$(dirname "$0")/../.."
BIN=target/release
WORK=$(mktemp -d /tmp/kvcache-tls.XXXXXX)
PIDS=()
cleanup() {
  for p in "${PIDS[@]}"; do kill "$p" 2>/dev/null || true; done
  wait 2>/dev/null || true
  rm -rf "$WORK"
}
trap cleanup EXIT

need=()
for p in redis-tools openssl; do dpkg -s "$p" >/dev/null 2>&1 || need+=("$p"); done
if [ "${#need[@]}" -gt 0 ]; then
  ${SUDO:-} apt-get update -qq && DEBIAN_FRONTEND=noninteractive ${SUDO:-} apt-get install -y -qq "${need[@]}" >/dev/null
fi
VENV=/tmp/kvcache-venv
if ! "$VENV/bin/python" -c 'import redis' 2>/dev/null; then
  python3 -m venv "$VENV"
  "$VENV/bin/pip" install -q redis
fi

# shellcheck source=scripts/lib.sh
source scripts/lib.sh
fail() { echo "FAIL $*" >&2; exit 1; }
expect() { # expected actual what
  [ "$1" = "$2" ] || { printf 'FAIL %s: expected %q, got %q\n' "$3" "$1" "$2" >&2; exit 1; }
}

CERTS=$WORK/certs
scripts/tls-certs.sh "$CERTS"
CA=$CERTS/ca.crt
rcli() { redis-cli --tls --cacert "$CA" -p "$@"; }
# Starts a TLS-only server on PORT (args: port [extra flags]); waits until it answers.
start_tls() {
  local port=$1
  shift
  "$BIN/kvcache-server" --host 127.0.0.1 --port 0 --tls-port "$port" \
    --tls-cert-file "$CERTS/server.crt" --tls-key-file "$CERTS/server.key" "$@" \
    >"$WORK/kv-$port.log" 2>&1 &
  PIDS+=($!)
  for _ in $(seq 1 100); do
    grep -q 'kvcache-server listening' "$WORK/kv-$port.log" && return 0
    sleep 0.1
  done
  cat "$WORK/kv-$port.log" >&2
  fail "server on TLS port $port did not start"
}

TP=$(free_port)
start_tls "$TP" --request-timeout 2
KV_PID=${PIDS[-1]}
grep -q 'address=off' "$WORK/kv-$TP.log" || fail "--port 0 with --tls-port should serve TLS only"

echo "--- redis-cli --tls"
expect OK "$(rcli "$TP" SET greeting hello EX 60)" "SET over TLS"
expect hello "$(rcli "$TP" GET greeting)" "GET over TLS"
expect 60 "$(rcli "$TP" TTL greeting)" "TTL over TLS"
expect PONG "$(rcli "$TP" PING)" "PING over TLS"
# shellcheck disable=SC2016 # RESP length prefixes, not expansions
for i in $(seq 1 300); do printf '*3\r\n$3\r\nSET\r\n$%d\r\npiped:%d\r\n$2\r\nok\r\n' "$((6 + ${#i}))" "$i"; done |
  rcli "$TP" --pipe >"$WORK/pipe.out"
grep -q 'errors: 0, replies: 300' "$WORK/pipe.out" || fail "redis-cli --pipe over TLS: $(cat "$WORK/pipe.out")"
expect ok "$(rcli "$TP" GET piped:300)" "redis-cli --pipe over TLS"
[ "$(redis-cli -p "$TP" PING 2>/dev/null)" = PONG ] && fail "plain redis-cli got an answer from the TLS port"

echo "--- openssl s_client, line protocol"
out=$(printf 'GET greeting\nPUT fromline v1\nGET fromline\nQUIT\n' |
  timeout 10 openssl s_client -quiet -connect "127.0.0.1:$TP" -CAfile "$CA" -verify_return_error 2>/dev/null)
expect "$(printf 'OK hello\nOK stored\nOK v1')" "$out" "line protocol over openssl s_client"
expect v1 "$(rcli "$TP" GET fromline)" "RESP reads what the line protocol wrote over TLS"
for v in -tls1_2 -tls1_3; do
  out=$(printf 'PING\nQUIT\n' | timeout 10 openssl s_client -quiet "$v" -connect "127.0.0.1:$TP" -CAfile "$CA" 2>/dev/null)
  expect "OK PONG" "$out" "openssl s_client $v"
done
if printf 'PING\nQUIT\n' | timeout 10 openssl s_client -quiet -tls1_1 -connect "127.0.0.1:$TP" >/dev/null 2>&1; then
  fail "TLS 1.1 was accepted"
fi

echo "--- redis-py ssl=True"
KVCACHE_TLS_PORT=$TP KVCACHE_TLS_DIR=$CERTS "$VENV/bin/python" -m unittest tests/peers/test_redis_py_tls.py

echo "--- kvcache-cli and kvcache-bench --tls"
expect "OK hello" "$("$BIN/kvcache-cli" --port "$TP" --tls --cacert "$CA" GET greeting)" "kvcache-cli --tls"
"$BIN/kvcache-bench" --host 127.0.0.1 --port "$TP" --tls --cacert "$CA" -c 10 -r 2000 -P 8 >"$WORK/bench.out" ||
  { cat "$WORK/bench.out"; fail "kvcache-bench --tls"; }

echo "--- redis-benchmark --tls"
out=$(redis-benchmark --tls --cacert "$CA" -p "$TP" -n 20000 -c 20 -t ping_mbulk,set,get,incr --csv 2>&1)
echo "$out"
for t in PING_MBULK SET GET INCR; do
  grep -q "^\"$t\"," <<<"$out" || fail "redis-benchmark --tls did not complete $t"
done
grep -qi error <<<"$out" && fail "redis-benchmark --tls reported errors"
redis-benchmark --tls --cacert "$CA" -p "$TP" -n 20000 -c 20 -P 16 -t set,get --csv >/dev/null

echo "--- hostile clients on the TLS port"
printf 'PING\r\n' | timeout 5 nc -q 2 127.0.0.1 "$TP" >"$WORK/plain.out" || true
grep -q PONG "$WORK/plain.out" && fail "plain text on the TLS port was answered"
# Silent connections: the handshake deadline (the 2 s request timeout) closes them.
for _ in $(seq 1 5); do
  (exec 3<>"/dev/tcp/127.0.0.1/$TP"; sleep 30) >/dev/null 2>&1 &
  PIDS+=($!)
done
sleep 0.5
expect PONG "$(rcli "$TP" PING)" "served while handshakes stall"
sleep 2.5
st=$(rcli "$TP" INFO stats)
# Two clear-text clients so far: plain redis-cli above and nc here.
grep -q '^kvcache_tls_not_tls_closed_connections:2' <<<"$st" || fail "plain text not counted: $st"
grep -q '^kvcache_tls_handshake_timeouts:5' <<<"$st" || fail "stalled handshakes not counted: $st"

echo "--- mutual TLS"
MP=$(free_port)
start_tls "$MP" --tls-ca-cert-file "$CA"
expect OK "$(rcli "$MP" --cert "$CERTS/client.crt" --key "$CERTS/client.key" SET m 1)" "redis-cli with a client certificate"
[ "$(rcli "$MP" GET m 2>/dev/null)" = 1 ] && fail "a client without a certificate was served"
KVCACHE_TLS_PORT=$TP KVCACHE_MTLS_PORT=$MP KVCACHE_TLS_DIR=$CERTS \
  "$VENV/bin/python" -m unittest tests.peers.test_redis_py_tls.MutualTls
expect OK "$("$BIN/kvcache-cli" --port "$MP" --tls --cacert "$CA" --cert "$CERTS/client.crt" --key "$CERTS/client.key" PING | cut -c1-2)" "kvcache-cli with a client certificate"
OTHER=$WORK/other
scripts/tls-certs.sh "$OTHER"
[ "$(rcli "$MP" --cert "$OTHER/client.crt" --key "$OTHER/client.key" GET m 2>/dev/null)" = 1 ] &&
  fail "a client certificate from another CA was accepted"
# redis-cli without a certificate, redis-py without one (it retries), the other CA's client.
rejected=$(rcli "$MP" --cert "$CERTS/client.crt" --key "$CERTS/client.key" INFO stats |
  tr -d '\r' | sed -n 's/^kvcache_tls_client_cert_rejected://p')
[ "${rejected:-0}" -ge 3 ] || fail "client certificate refusals not counted (${rejected:-none})"

echo "--- certificate reload on SIGHUP"
serial() {
  openssl s_client -connect "127.0.0.1:$TP" -CAfile "$CA" </dev/null 2>/dev/null | openssl x509 -noout -serial
}
before=$(serial)
# A new certificate from the same CA, written over the old files.
NEW=$WORK/new
mkdir -p "$NEW"
cp "$CERTS/ca.crt" "$CERTS/ca.key" "$NEW/"
openssl genpkey -algorithm EC -pkeyopt ec_paramgen_curve:P-256 -out "$NEW/server.key" 2>/dev/null
openssl req -new -key "$NEW/server.key" -subj "/CN=kvcache renewed" -out "$NEW/server.csr"
printf 'subjectAltName=DNS:localhost,IP:127.0.0.1\nextendedKeyUsage=serverAuth\n' >"$NEW/ext"
openssl x509 -req -in "$NEW/server.csr" -CA "$NEW/ca.crt" -CAkey "$NEW/ca.key" -CAcreateserial \
  -extfile "$NEW/ext" -days 30 -out "$NEW/server.crt" 2>/dev/null
cp "$NEW/server.key" "$CERTS/server.key"
cp "$NEW/server.crt" "$CERTS/server.crt"
kill -HUP "$KV_PID"
for _ in $(seq 1 50); do grep -q 'TLS certificate reloaded' "$WORK/kv-$TP.log" && break; sleep 0.1; done
after=$(serial)
[ "$before" != "$after" ] || fail "SIGHUP did not change the certificate ($before)"
expect "$(openssl x509 -noout -serial -in "$NEW/server.crt")" "$after" "new connections get the new certificate"
echo "not a certificate" >"$CERTS/server.crt"
kill -HUP "$KV_PID"
for _ in $(seq 1 50); do grep -q 'reload refused' "$WORK/kv-$TP.log" && break; sleep 0.1; done
grep -q 'reload refused' "$WORK/kv-$TP.log" || fail "a bad certificate was not refused"
expect "$after" "$(serial)" "the old certificate stays after a bad reload"
expect hello "$(rcli "$TP" GET greeting)" "still serving"

echo "--- start-up errors"
set +e
msg=$("$BIN/kvcache-server" --port 0 --tls-port "$(free_port)" --tls-cert-file "$CERTS/server.crt" --tls-key-file "$CERTS/server.key" 2>&1)
code=$?
set -e
expect 2 "$code" "exit status for a bad certificate file"
expect 1 "$(wc -l <<<"$msg")" "one line for a bad certificate file"
grep -q '^kvcache-server: invalid tls_cert_file' <<<"$msg" || fail "unexpected message: $msg"
echo "tls: all passed"
