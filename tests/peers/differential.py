"""Differential test: the same commands to a real Redis and to kvcache, replies compared byte
for byte (RESP2 and RESP3). Differences by design are listed in EXPECTED_DIFFERENT.

Run: python tests/peers/differential.py REDIS_PORT KVCACHE_PORT
"""

import codecs
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
FLUSHALL
SET s "Hello World"
GETRANGE s 0 3
GETRANGE s -4 -1
GETRANGE s 5 3
GETRANGE s -1 -5
GETRANGE s 0 4294967297
GETRANGE s -5000 10000
GETRANGE nokey 0 -1
GETRANGE s a 1
GETRANGE s 0
SUBSTR s 0 4
SUBSTR s x y
SETRANGE s 6 Redis
GET s
SETRANGE s 20 !
GET s
SETRANGE s -1 x
SETRANGE s abc x
SETRANGE s 0 ""
SETRANGE newr 0 ""
EXISTS newr
SETRANGE newr 3 abc
GET newr
SETRANGE s 536870908 world
SETRANGE s 9223372036854775807 A
SETRANGE s 2147483647 A
SET n 1234
OBJECT ENCODING n
SETRANGE n 0 2
OBJECT ENCODING n
GET n
SET n 1234
SETRANGE n 0 ""
OBJECT ENCODING n
SET emb short
OBJECT ENCODING emb
SET long "aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa"
OBJECT ENCODING long
APPEND emb more
OBJECT ENCODING emb
APPEND newapp 12
OBJECT ENCODING newapp
OBJECT ENCODING nokey
OBJECT REFCOUNT long
OBJECT REFCOUNT nokey
OBJECT FREQ long
OBJECT HELP
OBJECT HELP extra
OBJECT ENCODING
OBJECT FOO bar
OBJECT
DEL bm
SETBIT bm 7 1
GET bm
GETBIT bm 7
GETBIT bm 6
GETBIT bm 100
GETBIT nokey 0
SETBIT bm 7 0
SETBIT bm 100 1
STRLEN bm
SETBIT bm 0 2
SETBIT bm 0 -1
SETBIT bm 0 x
SETBIT bm -1 1
SETBIT bm 4294967296 1
SETBIT bm x 1
GETBIT bm -1
GETBIT bm 4294967296
GETBIT bm abc
SETBIT newbm 3 0
GET newbm
SET b "foobar"
BITCOUNT b
BITCOUNT b 0 0
BITCOUNT b 1 1
BITCOUNT b 1 1 BYTE
BITCOUNT b 5 30 BIT
BITCOUNT b -1 -1
BITCOUNT b -2 -1 BIT
BITCOUNT b -1 -2
BITCOUNT b -1 -2 FOO
BITCOUNT b 0 -1 FOO
BITCOUNT b 0
BITCOUNT b 0 1 BIT extra
BITCOUNT b a 1
BITCOUNT nokey
BITCOUNT nokey 0
BITCOUNT nokey a b
SET p "\xff\xf0\x00"
BITPOS p 0
SET p2 "\x00\xff\xf0"
BITPOS p2 1 0
BITPOS p2 1 2
BITPOS p2 1 2 -1 BYTE
BITPOS p2 1 7 15 BIT
BITPOS p2 1 7 -3 BIT
BITPOS p2 0 1 1
BITPOS p2 0 8 15 BIT
SET ones "\xff\xff\xff"
BITPOS ones 0
BITPOS ones 0 0 -1
BITPOS ones 0 0 -1 BIT
BITPOS ones 1 5 3
BITPOS nokey 1
BITPOS nokey 0
BITPOS nokey 1 abc
BITPOS p2 2
BITPOS p2 x
BITPOS p2 1 x
BITPOS p2 1 0 x
BITPOS p2 1 0 1 FOO
BITPOS p2 1 0 1 BIT extra
SET empty ""
BITPOS empty 0
BITPOS empty 1
BITCOUNT empty
SET f 10.50
INCRBYFLOAT f 0.1
INCRBYFLOAT f -5.0e3
INCRBYFLOAT f 2.0e2
SET f 1000000
INCRBYFLOAT f 0.1
SET f 17179869184
INCRBYFLOAT f 1.5
INCRBYFLOAT f 0.1
OBJECT ENCODING f
SET f 1
INCRBYFLOAT f 2
OBJECT ENCODING f
INCRBYFLOAT f 1e300
INCRBYFLOAT f abc
INCRBYFLOAT f inf
INCRBYFLOAT f -inf
INCRBYFLOAT f nan
INCRBYFLOAT f 1e5000
INCRBYFLOAT f 1e-5000
INCRBYFLOAT f " 1"
INCRBYFLOAT f 0x10
INCRBYFLOAT f ""
SET f "1 "
INCRBYFLOAT f 1
INCRBYFLOAT newf 0.000003814697265625
INCRBYFLOAT neg -5e-18
INCRBYFLOAT f
SET virus1 CACCTTCCCAGGTAACAAACCAACCAACTTTCGATCTCTTGTAGATCTG
SET virus2 ATTAAAGGTTTATACCTTCCCAGGTAACAAACCAACCAACTTTCGATCT
LCS virus1 virus2
LCS virus1 virus2 LEN
LCS virus1 virus2 IDX
LCS virus1 virus2 IDX WITHMATCHLEN
LCS virus1 virus2 IDX WITHMATCHLEN MINMATCHLEN 5
LCS virus1 virus2 IDX MINMATCHLEN -3
LCS virus1 virus2 LEN IDX
LCS virus1 virus2 FOO
LCS virus1 virus2 MINMATCHLEN
LCS virus1 virus2 MINMATCHLEN x
LCS virus1 nokey
LCS nokey nokey2 IDX
LCS virus1
SET t1 v EXAT 33177117420
EXPIRETIME t1
PEXPIRETIME t1
SET t2 v PXAT 33177117420123
EXPIRETIME t2
PEXPIRETIME t2
SET t3 v
EXPIRETIME t3
PEXPIRETIME t3
EXPIRETIME nokey
PEXPIRETIME nokey
EXPIRETIME
SET r1 a EXAT 33177117420
RENAME r1 r2
EXISTS r1
GET r2
PEXPIRETIME r2
RENAME r1 r2
RENAME r2 r2
RENAME nokey nokey
RENAMENX r2 r2
RENAMENX nokey x
SET r3 b
RENAMENX r2 r3
RENAMENX r2 r4
GET r4
SET r5 c EX 100
RENAME r4 r5
TTL r5
RENAME r5
COPY r5 r6
GET r6
COPY r5 r6
COPY r5 r6 REPLACE
COPY r5 r6 DB 0 REPLACE
COPY r5 r6 DB 1
COPY r5 r6 DB x
COPY r5 r6 DB 99999999999
COPY r5 r6 DB
COPY r5 r6 FOO
COPY r5 r5
COPY nokey r7
SET r8 v EXAT 33177117420
COPY r8 r9
PEXPIRETIME r9
COPY r5
FUNCTION FLUSH
FUNCTION FLUSH ASYNC
FUNCTION FLUSH SYNC
FUNCTION FLUSH FOO
FUNCTION FLUSH a b
FUNCTION FOO
FUNCTION
"""

# kvcache has one database: COPY to another one is refused as SELECT of it is.
EXPECTED_DIFFERENT = {"COPY r5 r6 DB 1"}


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
            # "\xNN" inside an argument stands for that byte (bitmaps need non-printable ones).
            args = [codecs.escape_decode(a.encode())[0] if "\\x" in a else a for a in shlex.split(raw)]
            ra, rb = a.call(args), b.call(args)
            total += 1
            if ra != rb and raw not in EXPECTED_DIFFERENT:
                failures += 1
                print(f"RESP{proto} DIFF: {raw}\n  redis:   {ra!r}\n  kvcache: {rb!r}")
    print(f"{total - failures}/{total} replies identical to Redis")
    return 1 if failures else 0


if __name__ == "__main__":
    sys.exit(main())
