#!/usr/bin/env python3
"""RSS per item of kvcache, Redis and memcached for the same data, measured over the network.

Stores N items (16-byte key, 64-byte value, 1-hour TTL) in each running server and reports
the growth of the server process's RSS divided by N. Start the servers first, e.g.:

  target/release/kvcache-server --port 7171 --max-memory 0 &
  redis-server --port 6379 --save '' --appendonly no &
  memcached -p 11211 -m 4096 &
  python3 scripts/memory-compare.py --items 1000000 \
      --kvcache 7171 --redis 6379 --memcached 11211

--kvcache-memcache PORT loads kvcache over its memcache port (kvcache-server --memcache-port),
with exactly the requests memcached gets.
"""

import argparse
import socket
import subprocess


def rss_of_port(port):
    out = subprocess.run(["ss", "-ltnpH", f"sport = :{port}"], capture_output=True, text=True).stdout
    pid = int(out.split("pid=")[1].split(",")[0])
    with open(f"/proc/{pid}/statm") as f:
        return int(f.read().split()[1]) * 4096, pid


def keys(n):
    for i in range(n):
        yield b"key:%012d" % i  # 16 bytes


VALUE = b"v" * 64


def drain(sock, expect_bytes):
    got = 0
    while got < expect_bytes:
        chunk = sock.recv(1 << 20)
        if not chunk:
            raise EOFError
        got += len(chunk)


def load(port, n, encode, reply_len, batch=10000):
    s = socket.create_connection(("127.0.0.1", port))
    ks = list(keys(n))
    for start in range(0, n, batch):
        part = ks[start:start + batch]
        s.sendall(b"".join(encode(k) for k in part))
        if reply_len:
            drain(s, reply_len * len(part))
    if not reply_len:
        # memcached noreply: a final round trip makes sure everything was processed
        s.sendall(b"version\r\n")
        s.recv(100)
    s.close()


def measure(name, port, n, encode, reply_len):
    before, pid = rss_of_port(port)
    load(port, n, encode, reply_len)
    after, _ = rss_of_port(port)
    per = (after - before) / n
    print(f"{name:10s} pid={pid:<7d} rss_growth={(after - before) / 2**20:8.1f} MiB  bytes_per_item={per:6.1f}")
    return per


def main():
    p = argparse.ArgumentParser()
    p.add_argument("--items", type=int, default=1_000_000)
    p.add_argument("--kvcache", type=int)
    p.add_argument("--redis", type=int)
    p.add_argument("--memcached", type=int)
    p.add_argument("--kvcache-memcache", type=int, help="kvcache's memcache port")
    a = p.parse_args()
    if a.kvcache:
        measure("kvcache", a.kvcache, a.items, lambda k: b"PUT %s %s 3600\n" % (k, VALUE), len(b"OK stored\n"))
    if a.redis:
        measure(
            "redis",
            a.redis,
            a.items,
            lambda k: b"*5\r\n$3\r\nSET\r\n$16\r\n%s\r\n$64\r\n%s\r\n$2\r\nEX\r\n$4\r\n3600\r\n" % (k, VALUE),
            len(b"+OK\r\n"),
        )
    memcache_set = lambda k: b"set %s 0 3600 64 noreply\r\n%s\r\n" % (k, VALUE)  # noqa: E731
    if a.kvcache_memcache:
        measure("kvcache-mc", a.kvcache_memcache, a.items, memcache_set, 0)
    if a.memcached:
        measure("memcached", a.memcached, a.items, memcache_set, 0)


if __name__ == "__main__":
    main()
