#!/usr/bin/env python3
"""Does the memory cap hold for the process? kvcache, Redis and memcached under the same cap,
through workloads that defeat allocators: a shift from small to large values, the reverse, and
a mixed random-size workload with TTL waves. Each server is started fresh per scenario; the
script reports the process's peak RSS (VmHWM) over the cap and how many of the keys written
last are still held (the cache should give the new values the memory).

  python3 scripts/memory-shift.py [--cap-mb 64] [--rounds 1] [--servers kvcache,redis,memcached]

Needs target/release/kvcache-server, redis-server and memcached on PATH.
"""

import argparse
import os
import random
import socket
import subprocess
import sys
import time

BIN = os.environ.get("KVCACHE_BIN", "target/release/kvcache-server")


def free_port():
    s = socket.socket()
    s.bind(("127.0.0.1", 0))
    p = s.getsockname()[1]
    s.close()
    return p


def wait_port(port):
    for _ in range(200):
        try:
            socket.create_connection(("127.0.0.1", port)).close()
            return
        except OSError:
            time.sleep(0.05)
    raise SystemExit(f"nothing listens on {port}")


def start(server, cap_mb, port):
    if server == "kvcache":
        cmd = [BIN, "--host", "127.0.0.1", "--port", str(port), "--max-memory", f"{cap_mb}mb"]
    elif server == "redis":
        cmd = ["redis-server", "--port", str(port), "--bind", "127.0.0.1", "--save", "", "--appendonly", "no",
               "--maxmemory", f"{cap_mb}mb", "--maxmemory-policy", "allkeys-lru"]
    else:
        cmd = ["memcached", "-p", str(port), "-l", "127.0.0.1", "-m", str(cap_mb), "-t", "2", "-u", "nobody", "-U", "0"]
    proc = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    wait_port(port)
    return proc


def status(pid, field):
    with open(f"/proc/{pid}/status") as f:
        for line in f:
            if line.startswith(field + ":"):
                return int(line.split()[1]) * 1024
    return 0


class Conn:
    """A pipelining client for RESP (kvcache, Redis) or the memcached text protocol."""

    def __init__(self, server, port):
        self.mc = server == "memcached"
        self.s = socket.create_connection(("127.0.0.1", port))
        self.buf = b""

    def _recv_until(self, count, marker):
        while self.buf.count(marker) < count:
            chunk = self.s.recv(1 << 20)
            if not chunk:
                raise EOFError
            self.buf += chunk
        # Cut after the count-th marker.
        idx = -1
        for _ in range(count):
            idx = self.buf.index(marker, idx + 1)
        out, self.buf = self.buf[: idx + len(marker)], self.buf[idx + len(marker):]
        return out

    def set_many(self, items, ttl=0):
        """items: list of (key, value, ttl_seconds)."""
        parts = []
        for k, v, t in items:
            if self.mc:
                parts.append(b"set %s 0 %d %d noreply\r\n%s\r\n" % (k, t, len(v), v))
            elif t:
                parts.append(b"*5\r\n$3\r\nSET\r\n$%d\r\n%s\r\n$%d\r\n%s\r\n$2\r\nEX\r\n$%d\r\n%d\r\n"
                             % (len(k), k, len(v), v, len(str(t)), t))
            else:
                parts.append(b"*3\r\n$3\r\nSET\r\n$%d\r\n%s\r\n$%d\r\n%s\r\n" % (len(k), k, len(v), v))
        self.s.sendall(b"".join(parts))
        if self.mc:
            self.s.sendall(b"mn\r\n")
            self._recv_until(1, b"MN\r\n")
        else:
            self._recv_until(len(items), b"\r\n")

    def count_present(self, keys):
        if self.mc:
            n = 0
            for i in range(0, len(keys), 100):
                part = keys[i:i + 100]
                self.s.sendall(b"mg " + b"\r\nmg ".join(part) + b"\r\nmn\r\n")
                out = self._recv_until(1, b"MN\r\n")
                n += out.count(b"HD")
            return n
        n = 0
        for i in range(0, len(keys), 1000):
            part = keys[i:i + 1000]
            self.s.sendall(b"".join(b"*2\r\n$6\r\nEXISTS\r\n$%d\r\n%s\r\n" % (len(k), k) for k in part))
            out = self._recv_until(len(part), b"\r\n")
            n += out.count(b":1\r\n")
        return n


def write(conn, items, batch=2000):
    for i in range(0, len(items), batch):
        conn.set_many(items[i:i + batch])


def scenario_shift(conn, small_n, big_n, small_first):
    small = [(b"small:%010d" % i, b"s" * 40, 0) for i in range(small_n)]
    big = [(b"big:%010d" % i, b"b" * 1000, 0) for i in range(big_n)]
    first, second = (small, big) if small_first else (big, small)
    write(conn, first)
    write(conn, second)
    return conn.count_present([k for k, _, _ in second]), len(second)


def scenario_mixed(conn, writes, space, seed=1):
    rng = random.Random(seed)
    items = []
    for _ in range(writes):
        k = b"mixed:%08d" % rng.randrange(space)
        size = int(10 * (200 ** rng.random()))  # 10 B .. 2 KB, log-uniform
        ttl = rng.choice([0, 0, 1, 2, 3, 5])
        items.append((k, b"m" * size, ttl))
    # Written in waves with pauses, so TTL waves expire while new values arrive.
    wave = len(items) // 6
    for i in range(0, len(items), wave):
        write(conn, items[i:i + wave])
        time.sleep(1.0)
    recent = list({k: 1 for k, _, t in items[-50_000:] if t == 0})
    return conn.count_present(recent), len(recent)


def run(server, scenario, cap_mb, args):
    port = free_port()
    proc = start(server, cap_mb, port)
    try:
        time.sleep(0.3)
        base = status(proc.pid, "VmRSS")
        conn = Conn(server, port)
        if scenario == "small-to-big":
            held, of = scenario_shift(conn, args.small, args.big, True)
        elif scenario == "big-to-small":
            held, of = scenario_shift(conn, args.small, args.big, False)
        else:
            held, of = scenario_mixed(conn, args.mixed, args.mixed // 3)
        peak = status(proc.pid, "VmHWM")
        end = status(proc.pid, "VmRSS")
        return base, peak, end, held, of
    finally:
        proc.terminate()
        proc.wait()


def main():
    p = argparse.ArgumentParser()
    p.add_argument("--cap-mb", type=int, default=64)
    p.add_argument("--rounds", type=int, default=1)
    p.add_argument("--servers", default="kvcache,redis,memcached")
    p.add_argument("--scenarios", default="small-to-big,big-to-small,mixed-ttl")
    p.add_argument("--small", type=int, default=1_000_000, help="40-byte values written")
    p.add_argument("--big", type=int, default=200_000, help="1000-byte values written")
    p.add_argument("--mixed", type=int, default=600_000, help="writes in the mixed scenario")
    a = p.parse_args()
    cap = a.cap_mb << 20
    print(f"cap {a.cap_mb} MiB; peak = VmHWM of the server process; 'held' = keys of the last phase still stored")
    print("| scenario | server | RSS at start MiB | peak RSS MiB | peak / cap | RSS at end MiB | held | of |")
    print("|---|---|---:|---:|---:|---:|---:|---:|")
    for scenario in a.scenarios.split(","):
        for _ in range(a.rounds):
            for server in a.servers.split(","):
                base, peak, end, held, of = run(server, scenario, a.cap_mb, a)
                print(f"| {scenario} | {server} | {base / 2**20:.1f} | {peak / 2**20:.1f} | {peak / cap:.2f} "
                      f"| {end / 2**20:.1f} | {held} | {of} |", flush=True)


if __name__ == "__main__":
    sys.exit(main())
