"""Byte-for-byte differential test: the same memcached sessions against memcached 1.6 and
against kvcache's memcache port; the replies must be identical once CAS uniques (which differ
by server) are masked. Every session starts from an empty cache (flush_all).

Usage: python3 memcache_differential.py MEMCACHED_PORT KVCACHE_MEMCACHE_PORT
"""
import re
import socket
import sys
import time

# Each session is sent whole (pipelined), and the replies read until `mn`'s "MN" arrives or the
# connection closes; so every session ends with "mn\r\n" unless it quits.
SESSIONS = [
    # storage and retrieval
    b"set a 5 0 3\r\nabc\r\nget a b\r\ngets a\r\nget a a\r\n",
    b"set a 0 0 0\r\n\r\nget a\r\n",
    b"set a 4294967295 0 1\r\nx\r\nget a\r\n",
    b"add a 0 0 1\r\nx\r\nadd a 0 0 1\r\ny\r\nget a\r\n",
    b"replace a 0 0 1\r\nx\r\nset a 0 0 1\r\nx\r\nreplace a 7 0 1\r\ny\r\nget a\r\n",
    b"append a 0 0 1\r\nx\r\nset a 3 0 2\r\nhe\r\nappend a 9 0 3\r\nllo\r\nprepend a 9 0 1\r\n>\r\nget a\r\n",
    b"set a 0 0 1 noreply\r\nx\r\nadd a 0 0 1 noreply\r\ny\r\nget a\r\n",
    b"cas zz 0 0 1 5\r\nx\r\nset a 0 0 1\r\nx\r\ncas a 0 0 1 1\r\ny\r\n",
    b"set k 0 0 4\r\n\r\n\x00\xff\r\nget k\r\n",
    b"get " + b" ".join(b"k%d" % i for i in range(40)) + b"\r\n",
    # expiry
    b"set a 0 -1 1\r\nx\r\nget a\r\nset b 0 1000 1\r\ny\r\nget b\r\n",
    b"set a 0 100 1\r\nx\r\ntouch a 10\r\ntouch zz 10\r\ntouch a -1\r\nget a\r\n",
    b"set a 0 0 1\r\nx\r\ngat 100 a zz\r\ngats 0 zz\r\ngat -1 a\r\nget a\r\n",
    # incr / decr
    b"set n 0 0 2\r\n10\r\nincr n 5\r\ndecr n 100\r\nincr n 18446744073709551615\r\nget n\r\n",
    b"set n 0 0 20\r\n18446744073709551615\r\nincr n 2\r\nincr zz 1\r\n",
    b"set n 0 0 3\r\n 12\r\nincr n 1\r\nset n 0 0 3\r\n12a\r\nincr n 1\r\nincr n x\r\nincr n -1\r\n",
    b"set n 0 0 1\r\n1\r\nincr n 1 noreply\r\nget n\r\n",
    # delete
    b"set a 0 0 1\r\nx\r\ndelete a\r\ndelete a\r\ndelete a 0\r\ndelete a 5\r\ndelete a noreply\r\ndelete\r\ndelete a b c d e\r\n",
    # errors
    b"bogus\r\nGET a\r\nget\r\n\r\nset a 0 0\r\nset a 0 0 -1\r\nset a 0 0 abc\r\n",
    b"set a x 0 3\r\nabc\r\nincr\r\nincr a\r\nincr a 1 2 3\r\ntouch a\r\ngat\r\ngat x a\r\n",
    b"set a 0 0 3\r\nabcd\r\nget a\r\n",
    b"set a 0 0 3\r\nab\r\n\r\nget a\r\n",
    b"set a 0 0 1 noreply\r\nab\r\nget a\r\n",
    b"get " + b"k" * 251 + b"\r\nset " + b"k" * 251 + b" 0 0 1\r\na\r\n",
    b"set a 0 0 1 noreply junk\r\nx\r\nset a 0 0 1 junk\r\nx\r\n",
    b"cas a 0 0 1\r\nx\r\ncas a 0 0 1 x\r\nx\r\n",
    # misc
    b"verbosity 1\r\nverbosity\r\nverbosity 1 2 3\r\nverbosity noreply\r\nverbosity 0 noreply\r\n",
    b"flush_all 0\r\nflush_all x\r\nflush_all noreply\r\nflush_all\r\n",
    b"stats foo\r\nstats noreply\r\n",
    # meta
    b"ms a 2 T0 F5\r\nhi\r\nmg a v f t s k O123 q\r\nmg zz v\r\nmg zz v q\r\nmg zz v k O9\r\n",
    b"ms a 2\r\nhi\r\nmg a\r\nmg a k\r\nmg a v t\r\nmg a q\r\nmg a q v\r\n",
    b"ms b 2 T100\r\nhi\r\nmg b t v\r\nmg b s f\r\n",
    b"ms c 2 MZ\r\nhi\r\nms c 2 ME\r\nhi\r\nms c 2 ME\r\nhi\r\nms c 1 MA\r\n!\r\nmg c v\r\nms d 1 MA\r\nx\r\nms d 1 MR\r\nx\r\nms c 1 MR q\r\nx\r\nms c 1 MP\r\n<\r\nmg c v\r\n",
    b"ms a 1 q k O5\r\nx\r\nmd a q\r\nmd a\r\nmd a q\r\nmd a k Ox\r\n",
    b"ma n\r\nma n N0 J10 v\r\nma n v\r\nma n MD D20 v t\r\nma n D5 q\r\nma n D5 k O1\r\nms a 1\r\nx\r\nma a\r\nma n MZ\r\n",
    b"mg\r\nmg a b c\r\nmg a zz\r\nms a\r\nms a x\r\nms a 2 F-1\r\nhi\r\nms a 2 Fx\r\nhi\r\nmg a v v\r\n",
    b"mg YQ== b v k\r\nms YQ== 1 b\r\nx\r\nmg YQ== b v k\r\nget a\r\n",
    b"mg a O123456789012345678901234567890123 v\r\nmg a O12345678901234567890123456789012 k\r\n",
    b"mg new s v N30 t\r\nmg new v N30 t\r\nms new 1\r\nz\r\nmg new v\r\n",
    b"ms a 1 T100\r\nx\r\nmg a t T0\r\nmg a t\r\nmg a T-1\r\nmg a t\r\n",
    b"ms a 1\r\nx\r\nmd a I T30\r\nmg a v t\r\nmg a v t\r\n",
    b"set x 0 0 1\r\n1\r\nmg x s v t f\r\nma x MI D18446744073709551615 v\r\nma x M+ v\r\nma x M- D7 v\r\n",
    b"mn x\r\n",
    b"mg a Nx\r\nmg a Tx\r\nma a Dx\r\nma a Jx\r\nmd a Cx\r\nmg a Rx\r\nmg a C5x\r\nmg a MSS\r\nms a 1 MSS\r\nx\r\n",
    b"ms a 1 Tx\r\nx\r\nms a 1 Cx\r\nx\r\nms a 1 T1 T1\r\nx\r\nms a 1 zz\r\nx\r\nma a v v\r\nmd a q q\r\nma a zz\r\nmd a zz\r\nmd a Tx\r\nma a Nx\r\n",
    b"ms a 1\r\nx\r\nmg a c\r\nms a 1 C1\r\ny\r\nms zz 1 C1\r\nx\r\nmd a C1\r\nma a C1\r\nmg a v\r\n",
    b"ms a 1 I\r\nx\r\nmd a I\r\nmg a v\r\nmg a v\r\nms a 1\r\ny\r\nmg a v\r\n",
    b"ms a 1 T100\r\nx\r\nmg a v R200 t\r\nmg a v R200 t\r\nmg a v R5\r\n",
    b"ms a 1 c k\r\nx\r\nms a 1 ME c\r\ny\r\nma a c t\r\n",
    b"ms a 3 MS\r\nabcd\r\nmg a v\r\n",
    b"quit\r\nget a\r\n",
]

CAS = [
    (re.compile(rb"^(VALUE \S+ \d+ \d+) \d+\r$", re.M), rb"\1 CAS\r"),
    (re.compile(rb" c\d+"), rb" cCAS"),
]


def session(port, data):
    s = socket.create_connection(("127.0.0.1", port), timeout=5)
    s.sendall(b"flush_all\r\n")
    assert s.recv(100) == b"OK\r\n"
    quits = data.startswith(b"quit")
    s.sendall(data + (b"" if quits else b"mn\r\n"))
    # Every mn in the session answers MN; the last one is ours.
    want_mn = 1 + sum(1 for l in data.split(b"\r\n") if l == b"mn" or l.startswith(b"mn "))
    out = b""
    deadline = time.time() + 5
    while time.time() < deadline:
        try:
            chunk = s.recv(65536)
        except socket.timeout:
            break
        if not chunk:
            out += b"<closed>"
            break
        out += chunk
        if not quits and out.endswith(b"MN\r\n") and out.count(b"MN\r\n") >= want_mn:
            break
    s.close()
    for pattern, repl in CAS:
        out = pattern.sub(repl, out)
    return out


def main():
    mc_port, kv_port = int(sys.argv[1]), int(sys.argv[2])
    failed = 0
    for data in SESSIONS:
        want = session(mc_port, data)
        got = session(kv_port, data)
        if want != got:
            failed += 1
            print("DIFFERS for", data[:200])
            print("  memcached:", want[:600])
            print("  kvcache:  ", got[:600])
    print(f"{len(SESSIONS) - failed} passed, {failed} failed")
    sys.exit(1 if failed else 0)


main()
