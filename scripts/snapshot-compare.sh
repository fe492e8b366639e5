#!/usr/bin/env bash
# Snapshot save and warm restart, kvcache against Redis (RDB), on the same data.
#
#   scripts/snapshot-compare.sh [ITEMS ...]          default: 1000000 4000000
#
# For each size: both servers get the same N items (16-byte key, 64-byte value of random
# base64 text, a TTL of 1-2 hours) through `redis-cli --pipe`; then, for each server:
#   save_ms   wall time of `SAVE` (Redis: synchronous RDB save; kvcache: SAVE, which waits
#             for its save thread), file_MB the file's size;
#   probe     p50/p99/max of a probe client (examples/probe.rs: one GET every 500 us, open
#             loop, each timed from its send) while the SAVE runs;
#   load_ms   from starting the process to the first +PONG (Redis answers -LOADING until its
#             RDB is in; kvcache accepts only once the snapshot is loaded), and the key count.
# Needs redis-server and redis-cli (apt-get install redis-server), python3, and a quiet
# machine for meaningful numbers. Env: PROBE_INTERVAL_US (500), KEEP=1 keeps the work dir,
# CHECK=1 fails unless every key came back and kvcache's file is the smaller (CI smoke runs),
# KVCACHE_BIN measures another kvcache build.
set -euo pipefail
cd "$(dirname "$0")/.."
# shellcheck source=scripts/lib.sh
source scripts/lib.sh

SIZES=("$@")
[ ${#SIZES[@]} -gt 0 ] || SIZES=(1000000 4000000)
INTERVAL=${PROBE_INTERVAL_US:-500}
WORK=$(mktemp -d /tmp/kvcache-snapcmp.XXXXXX)
PIDS=()
cleanup() {
  for p in "${PIDS[@]}"; do kill "$p" 2>/dev/null || true; done
  wait 2>/dev/null || true
  [ "${KEEP:-0}" = 1 ] || rm -rf "$WORK"
}
trap cleanup EXIT

cargo build --release --quiet --bin kvcache-server
cargo build --release --quiet --example probe
KV=${KVCACHE_BIN:-target/release/kvcache-server}
PROBE=target/release/examples/probe
command -v redis-server >/dev/null || { echo "redis-server is not installed" >&2; exit 1; }

# N SETs in RESP, the same for both servers (seeded).
gen_data() {
  python3 - "$1" "$2" <<'EOF'
import base64, os, random, sys
n, path = int(sys.argv[1]), sys.argv[2]
rnd = random.Random(42)
with open(path, "wb", buffering=1 << 20) as f:
    chunk = []
    for i in range(n):
        key = b"key:%012d" % i                       # 16 bytes
        value = base64.b64encode(rnd.randbytes(48))  # 64 bytes
        ttl = b"%d" % rnd.randint(3_600_000, 7_200_000)
        chunk.append(b"*5\r\n$3\r\nSET\r\n$16\r\n%s\r\n$64\r\n%s\r\n$2\r\nPX\r\n$%d\r\n%s\r\n"
                     % (key, value, len(ttl), ttl))
        if len(chunk) == 10000:
            f.write(b"".join(chunk)); chunk = []
    f.write(b"".join(chunk))
EOF
}

# Starts a server command and prints the milliseconds until it answers PING with +PONG;
# leaves it running (its pid in $WORK/pid).
start_timed() {
  python3 - "$WORK/pid" "$@" <<'EOF'
import socket, subprocess, sys, time
pidfile, cmd = sys.argv[1], sys.argv[2:]
t0 = time.monotonic()
p = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=open(pidfile + ".log", "ab"))
open(pidfile, "w").write(str(p.pid))
port = int(cmd[cmd.index("--port") + 1])
while True:
    if p.poll() is not None:
        sys.exit("server exited early: see " + pidfile + ".log")
    try:
        s = socket.create_connection(("127.0.0.1", port), timeout=600)
        s.sendall(b"*1\r\n$4\r\nPING\r\n")
        r = s.recv(64)
        s.close()
        if r.startswith(b"+PONG"):
            break
    except OSError:
        pass
    time.sleep(0.001)
print(int((time.monotonic() - t0) * 1000))
EOF
}

now_ms() { date +%s%3N; }

# Runs SAVE on PORT with the probe running; prints "save_ms p50 p99 max".
timed_save() {
  local port=$1 fifo="$WORK/probe.fifo" out="$WORK/probe.out"
  rm -f "$fifo"; mkfifo "$fifo"
  "$PROBE" "127.0.0.1:$port" "$INTERVAL" 0 <"$fifo" >"$out" &
  local probe=$!
  exec 3>"$fifo"
  sleep 1 # the probe's baseline before the save
  local t0 t1
  t0=$(now_ms)
  local reply
  reply=$(redis-cli -p "$port" SAVE)
  t1=$(now_ms)
  sleep 0.2
  exec 3>&-
  wait "$probe"
  [ "$reply" = OK ] || { echo "SAVE on port $port answered: $reply" >&2; exit 1; }
  local p50 p99 max
  p50=$(grep -o 'p50_us=[0-9]*' "$out" | cut -d= -f2)
  p99=$(grep -o 'p99_us=[0-9]*' "$out" | cut -d= -f2)
  max=$(grep -o 'max_us=[0-9]*' "$out" | cut -d= -f2)
  echo "$((t1 - t0)) $p50 $p99 $max"
}

ROWS=()
declare -A sizes
smaller=1
for n in "${SIZES[@]}"; do
  data="$WORK/data-$n.resp"
  echo "generating $n items ..." >&2
  gen_data "$n" "$data"
  for server in kvcache redis; do
    dir="$WORK/$server-$n"
    mkdir -p "$dir"
    port=$(free_port)
    if [ "$server" = kvcache ]; then
      cmd=("$KV" --host 127.0.0.1 --port "$port" --max-memory 0 --snapshot-file "$dir/kv.snap")
      file="$dir/kv.snap"
    else
      cmd=(redis-server --port "$port" --bind 127.0.0.1 --dir "$dir" --dbfilename dump.rdb
           --save '' --appendonly no --maxmemory 0)
      file="$dir/dump.rdb"
    fi
    start_timed "${cmd[@]}" >/dev/null
    PIDS+=("$(cat "$WORK/pid")")
    echo "$server: loading $n items ..." >&2
    redis-cli -p "$port" --pipe <"$data" >/dev/null
    keys=$(redis-cli -p "$port" DBSIZE)
    [ "$keys" = "$n" ] || { echo "$server holds $keys keys, expected $n" >&2; exit 1; }
    read -r save_ms p50 p99 max < <(timed_save "$port")
    size=$(stat -c %s "$file")
    pid=$(cat "$WORK/pid")
    if [ "$server" = redis ]; then
      redis-cli -p "$port" SHUTDOWN NOSAVE >/dev/null 2>&1 || true
    else
      kill -TERM "$pid" # saves once more on the way out (not timed)
    fi
    while kill -0 "$pid" 2>/dev/null; do sleep 0.05; done
    load_ms=$(start_timed "${cmd[@]}")
    PIDS+=("$(cat "$WORK/pid")")
    loaded=$(redis-cli -p "$port" DBSIZE)
    [ "$loaded" = "$n" ] || { echo "$server: $loaded keys after the restart, expected $n" >&2; exit 1; }
    sizes[$server]=$size
    pid=$(cat "$WORK/pid")
    kill -KILL "$pid"
    while kill -0 "$pid" 2>/dev/null; do sleep 0.05; done
    ROWS+=("| $n | $server | $save_ms | $(awk -v s="$size" 'BEGIN{printf "%.1f", s/1e6}') | $(awk -v s="$size" -v n="$n" 'BEGIN{printf "%.1f", s/n}') | $load_ms | $loaded | $p50 / $p99 / $max |")
  done
  rm -f "$data"
  echo "$n items: kvcache's file is $((100 * sizes[kvcache] / sizes[redis]))% of Redis's" >&2
  [ "${sizes[kvcache]}" -lt "${sizes[redis]}" ] || smaller=0
done

echo
echo "| items | server | save ms | file MB | bytes/item | load ms (start to first PONG) | keys after restart | probe during SAVE p50/p99/max us |"
echo "|---|---|---|---|---|---|---|---|"
printf '%s\n' "${ROWS[@]}"
if [ "${CHECK:-0}" = 1 ] && [ "$smaller" = 0 ]; then
  echo "FAIL: kvcache's snapshot is not smaller than Redis's RDB file" >&2
  exit 1
fi
