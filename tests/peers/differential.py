"""Differential test: the same commands to a real Redis and to kvcache, replies compared byte
for byte (RESP2 and RESP3). Differences by design are listed in EXPECTED_DIFFERENT.

Run: python tests/peers/differential.py REDIS_PORT KVCACHE_PORT
"""

import shlex
import socket
import sys

COMMANDS = r"""
SET k v
GET k
SET k v2 GET
SET k v3 NX
SET k v3 NX GET
SET k v4 XX GET
SET n1 v XX
SET k v EX 0
SET k v EX -1
SET k v EX abc
SET k v PX 100 EX 10
SET k v KEEPTTL EX 10
SET k v EX 10 KEEPTTL
SET k v NX XX
SET k v BOGUS
SET k
SET k v PX 9223372036854775807
SET k v EX 9223372036854775807
SET k v EXAT 1
EXISTS k
SET k v GET GET
GETSET k zz
GETSET nokey zz
SETNX k a
SETNX new a
SETEX k 0 v
SETEX k abc v
SETEX k 10 v
TTL k
PTTL nokey
TTL new
PSETEX k 1500 v
PSETEX k -1 v
GETDEL k
GETDEL k
SET c 10
INCR c
INCRBY c -20
DECR c
DECRBY c 5
INCRBY c 9223372036854775807
INCRBY c abc
INCRBY c 1.5
DECRBY c -9223372036854775808
INCR k2
SET s abc
INCR s
SET big 9223372036854775807
INCR big
SET neg -9223372036854775808
DECR neg
SET lead 007
INCR lead
SET sp " 1"
INCR sp
APPEND s def
APPEND nonex hello
STRLEN s
STRLEN none
MSET a 1 b 2
MSET a
MSET a 1 b
MGET a b nonex
MGET
MSETNX a 1 zz 2
MSETNX x1 1 x2 2
DEL a b nonex
DEL
EXISTS x1 x1 x2 nonex
UNLINK x1
TYPE x2
TYPE nonex
EXPIRE x2 100
EXPIRE x2 50 GT
EXPIRE x2 500 GT
EXPIRE x2 10 LT
EXPIRE x2 10 NX
EXPIRE x2 10 XX
EXPIRE x2 10 NX XX
EXPIRE x2 10 GT LT
EXPIRE x2 10 FOO
EXPIRE x2 abc
EXPIRE nonex 10
PERSIST x2
PERSIST x2
PERSIST nonex
EXPIRE x2 10 XX
EXPIRE x2 10 GT
EXPIRE x2 10 LT
EXPIRE x2 20 XX GT
TTL x2
EXPIRE x2 -1
EXISTS x2
SET e v
PEXPIRE e 100000
EXPIREAT e 99999999999
PEXPIREAT e 1
EXISTS e
EXPIRE k 9223372036854775807
PEXPIRE k 9223372036854775807
GETEX s
GETEX s EX 100
TTL s
GETEX s PERSIST
TTL s
GETEX s EX 0
GETEX s PERSIST EX 10
GETEX s FOO
GETEX nonex
GETEX nonex EX 10
SELECT 0
SELECT x
PING
PING hello
PING a b
ECHO hi
ECHO
FOO bar baz
foo
GET
GET a b
CLIENT SETNAME myname
CLIENT GETNAME
CLIENT SETNAME "bad name"
CLIENT SETNAME ""
CLIENT GETNAME
CLIENT FOO
CLIENT
CONFIG GET maxmemory
CONFIG GET nonexistent
CONFIG FOO
HELLO 4
HELLO abc
HELLO 3 FOO
SCAN abc
SCAN 0 COUNT 0
SCAN 0 COUNT x
SCAN 0 MATCH
SCAN 0 FOO bar
TOUCH k nonex
KEYS nomatch*
FLUSHALL FOO
FLUSHALL ASYNC
DBSIZE
SET a 1
KEYS *
TYPE a
RANDOMKEY
FLUSHDB SYNC
RANDOMKEY
DBSIZE
AUTH pw
AUTH default pw
AUTH user pw
AUTH
"""

EXPECTED_DIFFERENT = set()


class Conn:
    def __init__(self, port):
        self.s = socket.create_connection(("127.0.0.1", port), timeout=5)
        self.buf = b""

    def send(self, args):
        out = b"*%d\r\n" % len(args)
        for a in args:
            a = a.encode() if isinstance(a, str) else a
            out += b"$%d\r\n%s\r\n" % (len(a), a)
        self.s.sendall(out)

    def _fill(self):
        chunk = self.s.recv(65536)
        if not chunk:
            raise EOFError("connection closed")
        self.buf += chunk

    def line(self):
        while b"\r\n" not in self.buf:
            self._fill()
        line, self.buf = self.buf.split(b"\r\n", 1)
        return line

    def value(self):
        line = self.line()
        tag, rest = line[:1], line[1:]
        if tag in b"$=!" and tag:
            n = int(rest)
            if n < 0:
                return line
            while len(self.buf) < n + 2:
                self._fill()
            body, self.buf = self.buf[:n], self.buf[n + 2:]
            return line + b"\r\n" + body
        if tag in b"*~%>" and tag:
            n = int(rest)
            count = 2 * n if tag == b"%" else n
            return line + b"\r\n" + b"\r\n".join(self.value() for _ in range(max(count, 0)))
        return line

    def call(self, args):
        self.send(args)
        return self.value()


def main():
    redis_port, kv_port = int(sys.argv[1]), int(sys.argv[2])
    failures = 0
    total = 0
    for proto in (2, 3):
        a, b = Conn(redis_port), Conn(kv_port)
        if proto == 3:
            a.call(["HELLO", "3"])
            b.call(["HELLO", "3"])
        a.call(["FLUSHALL"])
        b.call(["FLUSHALL"])
        for raw in COMMANDS.strip().splitlines():
            args = shlex.split(raw)
            ra, rb = a.call(args), b.call(args)
            total += 1
            if ra != rb and raw not in EXPECTED_DIFFERENT:
                failures += 1
                print(f"RESP{proto} DIFF: {raw}\n  redis:   {ra!r}\n  kvcache: {rb!r}")
    print(f"{total - failures}/{total} replies identical to Redis")
    return 1 if failures else 0


if __name__ == "__main__":
    sys.exit(main())
