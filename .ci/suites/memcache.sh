#!/usr/bin/env bash
# kvcache's memcache port against real memcached peers: memccapable (libmemcached's conformance
# tool, ASCII tests) against memcached 1.6 and kvcache in the same run, a byte-for-byte
# differential against memcached, the pymemcache client suite, the memcached protocol over TLS
# (openssl s_client), and three kvcache nodes behind nutcracker's memcache pool.
# Expects target/release/kvcache-server; installs memcached, libmemcached-tools, nutcracker,
# openssl, netcat and a pymemcache venv under /tmp if they are missing.
set -euo pipefail
cd "$(dirname "$0")/../.."
BIN=target/release/kvcache-server
WORK=$(mktemp -d /tmp/kvcache-memcache.XXXXXX)
PIDS=()
cleanup() {
  for p in "${PIDS[@]}"; do kill "$p" 2>/dev/null || true; done
  wait 2>/dev/null || true
  rm -rf "$WORK"
}
trap cleanup EXIT

need=()
for p in memcached libmemcached-tools nutcracker openssl python3-venv netcat-openbsd; do
  dpkg -s "$p" >/dev/null 2>&1 || need+=("$p")
done
if [ "${#need[@]}" -gt 0 ]; then
  ${SUDO:-} apt-get update -qq && DEBIAN_FRONTEND=noninteractive ${SUDO:-} apt-get install -y -qq "${need[@]}" >/dev/null
fi
VENV=/tmp/kvcache-mc-venv
if ! "$VENV/bin/python" -c 'import pymemcache' 2>/dev/null; then
  python3 -m venv "$VENV"
  "$VENV/bin/pip" install -q 'pymemcache==4.0.0'
fi
CAPABLE=$(command -v memccapable || command -v memcapable)

# shellcheck source=scripts/lib.sh
source scripts/lib.sh
wait_mc() { # port: until something answers memcached's "version"
  local port=$1
  for _ in $(seq 1 100); do
    if { exec 3<>"/dev/tcp/127.0.0.1/$port"; } 2>/dev/null; then
      printf 'version\r\n' >&3
      if IFS= read -r -t 2 reply <&3 && [[ $reply == VERSION* ]]; then
        exec 3>&-
        return 0
      fi
      exec 3>&-
    fi
    sleep 0.1
  done
  echo "nothing answers memcached's version on port $port" >&2
  return 1
}
start_kv() { # memcache-port [extra args...]
  local port=$1; shift
  "$BIN" --host 127.0.0.1 --port 0 --memcache-port "$port" "$@" >"$WORK/kv-$port.log" 2>&1 &
  PIDS+=($!)
  wait_mc "$port"
}
expect() { # expected actual what
  if [ "$1" != "$2" ]; then
    printf 'FAIL %s: expected %q, got %q\n' "$3" "$1" "$2" >&2
    exit 1
  fi
}

KV=$(free_port); KVR=$(free_port)
"$BIN" --host 127.0.0.1 --port "$KVR" --memcache-port "$KV" --max-value-size 1mb >"$WORK/kv.log" 2>&1 &
PIDS+=($!)
wait_mc "$KV"
MC=$(free_port)
memcached -l 127.0.0.1 -p "$MC" -U 0 -t 2 -m 64 -u nobody >"$WORK/memcached.log" 2>&1 &
PIDS+=($!)
wait_mc "$MC"
echo "memcached $(memcached -V | awk '{print $2}') on $MC, kvcache memcache port $KV"

echo "--- memccapable -a (ASCII conformance)"
for target in "memcached:$MC" "kvcache:$KV"; do
  name=${target%%:*}; port=${target#*:}
  if ! out=$(timeout 120 "$CAPABLE" -a -h 127.0.0.1 -p "$port" 2>&1); then
    echo "$out"; echo "FAIL memccapable against $name" >&2; exit 1
  fi
  passed=$(grep -c '\[pass\]' <<<"$out" || true)
  failed=$(grep -c '\[FAIL\]' <<<"$out" || true)
  echo "$name: $passed passed, $failed failed ($(tail -1 <<<"$out"))"
  grep -q '^All tests passed' <<<"$out" || { echo "$out"; exit 1; }
done

echo "--- differential test against memcached (byte for byte, CAS masked)"
python3 tests/peers/memcache_differential.py "$MC" "$KV"

echo "--- pymemcache $("$VENV/bin/python" -c 'import pymemcache; print(pymemcache.__version__)')"
# (pipefail: a failing suite fails this script)
KVCACHE_MC_PORT=$KV KVCACHE_PORT=$KVR "$VENV/bin/python" -m unittest -v tests/peers/test_pymemcache.py 2>&1 | tail -20

echo "--- the memcached protocol over TLS (openssl s_client)"
CERTS="$WORK/certs"
scripts/tls-certs.sh "$CERTS" >/dev/null 2>&1
KVT=$(free_port); KVTP=$(free_port)
"$BIN" --host 127.0.0.1 --port "$KVTP" --memcache-tls-port "$KVT" \
  --tls-cert-file "$CERTS/server.crt" --tls-key-file "$CERTS/server.key" >"$WORK/kv-tls.log" 2>&1 &
PIDS+=($!)
for _ in $(seq 1 100); do nc -z 127.0.0.1 "$KVT" 2>/dev/null && break; sleep 0.1; done
out=$(printf 'set tls 3 0 5\r\nhello\r\nget tls\r\nquit\r\n' |
  timeout 10 openssl s_client -quiet -connect "127.0.0.1:$KVT" -CAfile "$CERTS/ca.crt" -verify_return_error 2>/dev/null | tr -d '\r')
expect "$(printf 'STORED\nVALUE tls 3 5\nhello\nEND')" "$out" "set/get over TLS"
echo "set and get over TLS: ok"

echo "--- three kvcache nodes behind nutcracker's memcache pool"
N1=$(free_port); N2=$(free_port); N3=$(free_port); PROXY=$(free_port); STATS=$(free_port)
start_kv "$N1"; start_kv "$N2"; start_kv "$N3"; N3_PID=${PIDS[-1]}
cat >"$WORK/nutcracker.yml" <<YML
kvcache_memcache:
  listen: 127.0.0.1:$PROXY
  hash: md5
  distribution: ketama
  auto_eject_hosts: true
  server_failure_limit: 1
  server_retry_timeout: 600000
  timeout: 1000
  preconnect: true
  servers:
    - 127.0.0.1:$N1:1 kv1
    - 127.0.0.1:$N2:1 kv2
    - 127.0.0.1:$N3:1 kv3
YML
nutcracker -t -c "$WORK/nutcracker.yml" >/dev/null 2>&1
nutcracker -c "$WORK/nutcracker.yml" -s "$STATS" -a 127.0.0.1 -o "$WORK/nutcracker.log" &
PIDS+=($!)
for _ in $(seq 1 100); do nc -z 127.0.0.1 "$PROXY" 2>/dev/null && break; sleep 0.1; done
"$VENV/bin/python" - "$PROXY" "$N1" "$N2" "$N3" "$N3_PID" <<'PY'
import os, signal, sys, time
from pymemcache.client.base import Client
proxy, nodes, n3_pid = int(sys.argv[1]), [int(p) for p in sys.argv[2:5]], int(sys.argv[5])
c = Client(("127.0.0.1", proxy), default_noreply=False, connect_timeout=5, timeout=5)
keys = [f"key:{i}" for i in range(600)]
for k in keys:
    assert c.set(k, f"value-{k}".encode()), k
# Multi-gets are split per node by the proxy and merged.
got = c.get_many(keys[:100])
assert len(got) == 100, len(got)
held = []
for p in nodes:
    n = Client(("127.0.0.1", p), default_noreply=False, timeout=5)
    items = int(n.stats()[b"curr_items"])
    print(f"node {p} holds {items} keys")
    assert items > 50, f"node {p} holds only {items} of 600 keys"
    held.append({k for k in keys if n.get(k) is not None})
    n.close()
assert sum(len(h) for h in held) == 600, [len(h) for h in held]
survivors = held[0] | held[1]
print(f"stopping node 3; {len(survivors)} keys live on nodes 1 and 2")
os.kill(n3_pid, signal.SIGTERM)
time.sleep(0.5)
# Let the proxy notice the dead node (requests hashing to it fail and eject it).
for k in keys[:50]:
    try:
        c.get(k)
    except Exception:
        c.close()
ok = 0
for k in sorted(survivors):
    for attempt in range(3):
        try:
            if c.get(k) == f"value-{k}".encode():
                ok += 1
            break
        except Exception:
            c.close()
assert ok == len(survivors), f"{ok} of {len(survivors)} surviving keys readable"
print(f"all {ok} keys on surviving nodes readable through nutcracker after losing a node")
# The lost node's keys are now plain misses (the ring routes them to the survivors), and a
# client can refill them there.
lost = [k for k in keys if k not in survivors]
misses = sum(1 for k in lost if c.get(k) is None)
assert misses == len(lost), f"{misses} of {len(lost)} lost keys answer as misses"
for k in lost:
    assert c.set(k, b"refilled"), k
assert all(c.get(k) == b"refilled" for k in lost)
print(f"the {len(lost)} keys of the lost node miss, and refill on the survivors")
PY
echo "memcache peers: all passed"
