#!/usr/bin/env python3
"""Measures what hostile clients cost a normal one: PING round-trip latency (p50/p99/max) of a
well-behaved client, and the server's RSS, first alone and then while each attack runs.

  target/release/kvcache-server --host 127.0.0.1 --port 7171 --max-memory 64mb &
  python3 scripts/hostile-effects.py --port 7171

Attacks: 500 slowloris connections holding half a request; a client pipelining GETs of a
256-byte value without reading any reply; 2,000 idle connections; a unique-key flood of
600,000 PUTs (3x the 64 MiB cap); a 4 MiB line with no newline, repeated.
"""

import argparse
import socket
import subprocess
import threading
import time


def rss(port):
    out = subprocess.run(["ss", "-ltnpH", f"sport = :{port}"], capture_output=True, text=True).stdout
    pid = int(out.split("pid=")[1].split(",")[0])
    with open(f"/proc/{pid}/statm") as f:
        return int(f.read().split()[1]) * 4096


def probe(port, seconds=3.0):
    s = socket.create_connection(("127.0.0.1", port))
    s.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
    lat = []
    end = time.time() + seconds
    while time.time() < end:
        t = time.perf_counter()
        s.sendall(b"PING\n")
        buf = b""
        while not buf.endswith(b"\n"):
            buf += s.recv(64)
        lat.append((time.perf_counter() - t) * 1000)
        time.sleep(0.002)
    s.close()
    lat.sort()
    return lat[len(lat) // 2], lat[int(len(lat) * 0.99)], lat[-1], len(lat)


def report(name, port, base_rss):
    p50, p99, mx, n = probe(port)
    print(f"{name:34s} PING p50 {p50:6.3f} ms  p99 {p99:6.3f} ms  max {mx:7.3f} ms  ({n} pings)  "
          f"RSS {rss(port) / 2**20:6.1f} MiB (+{(rss(port) - base_rss) / 2**20:5.1f})")


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--port", type=int, default=7171)
    a = ap.parse_args()
    port = a.port
    base = rss(port)
    report("alone", port, base)

    loris = []
    for i in range(500):
        c = socket.create_connection(("127.0.0.1", port))
        c.sendall(b"PUT half-a-request" if i % 2 else b"*3\r\n$3\r\nSET\r\n$1\r\nk")
        loris.append(c)
    report("500 slowloris connections", port, base)
    for c in loris:
        c.close()

    s = socket.create_connection(("127.0.0.1", port))
    s.sendall(b"PUT big " + b"v" * 256 + b"\n")
    s.recv(100)
    hog = socket.create_connection(("127.0.0.1", port))
    hog.settimeout(2)
    sent = 0
    try:
        chunk = b"GET big\n" * 8192
        while sent < 200 << 20:
            sent += hog.send(chunk)
    except (socket.timeout, BlockingIOError):
        pass
    report(f"pipeliner not reading ({sent >> 20} MiB sent)", port, base)
    hog.close()

    idle = [socket.create_connection(("127.0.0.1", port)) for _ in range(2000)]
    report("2,000 idle connections", port, base)
    for c in idle:
        c.close()

    def flood():
        f = socket.create_connection(("127.0.0.1", port))
        value = b"v" * 200
        for start in range(0, 600_000, 2000):
            f.sendall(b"".join(b"PUT flood:%010d %s\n" % (i, value) for i in range(start, start + 2000)))
            need = 2000 * len(b"OK stored\n")
            got = 0
            while got < need:
                got += len(f.recv(1 << 20))
        f.close()

    t = threading.Thread(target=flood)
    t.start()
    report("unique-key flood (during)", port, base)
    t.join()
    report("unique-key flood (after, 3x cap)", port, base)

    def long_lines():
        for _ in range(20):
            try:
                c = socket.create_connection(("127.0.0.1", port))
                c.sendall(b"a" * (4 << 20))
                c.close()
            except OSError:
                pass

    t = threading.Thread(target=long_lines)
    t.start()
    report("4 MiB lines without newline", port, base)
    t.join()


if __name__ == "__main__":
    main()
