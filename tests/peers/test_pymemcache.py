"""pymemcache (a widely used Python memcached client) against kvcache's memcache port.

Run: KVCACHE_MC_PORT=11211 [KVCACHE_PORT=7171] python -m unittest tests/peers/test_pymemcache.py
With KVCACHE_PORT (the RESP port of the same server) the cross-protocol test runs too.
"""
import os
import socket
import time
import unittest

from pymemcache.client.base import Client
from pymemcache import serde

PORT = int(os.environ.get("KVCACHE_MC_PORT", "11211"))
RESP_PORT = os.environ.get("KVCACHE_PORT")


def client(**kw):
    return Client(("127.0.0.1", PORT), connect_timeout=5, timeout=5, **kw)


class Basics(unittest.TestCase):
    def setUp(self):
        self.c = client(default_noreply=False)
        self.c.flush_all()

    def tearDown(self):
        self.c.close()

    def test_set_get_delete(self):
        self.assertTrue(self.c.set("k", b"v"))
        self.assertEqual(self.c.get("k"), b"v")
        self.assertTrue(self.c.delete("k"))
        self.assertIsNone(self.c.get("k"))
        self.assertFalse(self.c.delete("k"))
        self.assertEqual(self.c.get("k", default=b"d"), b"d")

    def test_binary_values(self):
        blob = bytes(range(256)) * 40
        self.c.set("blob", blob)
        self.assertEqual(self.c.get("blob"), blob)

    def test_get_many_and_set_many(self):
        failed = self.c.set_many({"a": b"1", "b": b"2", "c": b"3"})
        self.assertEqual(failed, [])
        got = self.c.get_many(["a", "b", "missing", "c"])
        self.assertEqual(got, {"a": b"1", "b": b"2", "c": b"3"})
        self.assertTrue(self.c.delete_many(["a", "b"]))
        self.assertEqual(self.c.get_many(["a", "b", "c"]), {"c": b"3"})

    def test_add_replace_append_prepend(self):
        self.assertTrue(self.c.add("k", b"v"))
        self.assertFalse(self.c.add("k", b"w"))
        self.assertTrue(self.c.replace("k", b"x"))
        self.assertFalse(self.c.replace("nope", b"x"))
        self.assertTrue(self.c.append("k", b"yz"))
        self.assertTrue(self.c.prepend("k", b"<"))
        self.assertEqual(self.c.get("k"), b"<xyz")

    def test_cas(self):
        self.c.set("k", b"v1")
        value, cas = self.c.gets("k")
        self.assertEqual(value, b"v1")
        self.assertTrue(self.c.cas("k", b"v2", cas))
        self.assertFalse(self.c.cas("k", b"v3", cas))  # EXISTS: changed since
        self.assertIsNone(self.c.cas("missing", b"x", cas))  # NOT_FOUND
        self.assertEqual(self.c.get("k"), b"v2")
        many = self.c.gets_many(["k", "missing"])
        self.assertEqual(list(many), ["k"])
        self.assertNotEqual(many["k"][1], cas)

    def test_incr_decr(self):
        self.assertIsNone(self.c.incr("n", 1))
        self.c.set("n", b"10")
        self.assertEqual(self.c.incr("n", 5), 15)
        self.assertEqual(self.c.decr("n", 100), 0)
        self.assertEqual(self.c.incr("n", 2**64 - 1), 2**64 - 1)
        self.assertEqual(self.c.incr("n", 2), 1)

    def test_touch_and_expiry(self):
        self.c.set("t", b"v", expire=100)
        self.assertTrue(self.c.touch("t", expire=1))
        self.assertFalse(self.c.touch("missing", expire=1))
        deadline = time.time() + 10
        while self.c.get("t") is not None:
            self.assertLess(time.time(), deadline, "touched key never expired")
            time.sleep(0.1)
        self.c.set("g", b"v")
        # pymemcache 4 has no gat/gats methods: sent raw over its connection.
        self.assertEqual(self.c.raw_command(b"gat 100 g", b"END\r\n"), b"VALUE g 0 1\r\nv\r\n")
        gats = self.c.raw_command(b"gats 0 g", b"END\r\n")
        self.assertRegex(gats, rb"^VALUE g 0 1 [1-9][0-9]*\r\nv\r\n$")

    def test_noreply(self):
        quiet = client()  # pymemcache's default: noreply for storage commands
        try:
            for i in range(200):
                self.assertTrue(quiet.set(f"nr{i}", str(i).encode()))
            quiet.incr("nr7", 3, noreply=True)
            quiet.delete("nr8", noreply=True)
            self.assertEqual(quiet.get("nr199"), b"199")
            self.assertEqual(quiet.get("nr7"), b"10")
            self.assertIsNone(quiet.get("nr8"))
        finally:
            quiet.close()

    def test_flags_through_a_serde(self):
        c = client(default_noreply=False, serde=serde.pickle_serde)
        try:
            c.set("obj", {"a": [1, 2, 3]})
            c.set("num", 42)
            c.set("text", "hello")
            self.assertEqual(c.get("obj"), {"a": [1, 2, 3]})
            self.assertEqual(c.get("num"), 42)
            self.assertEqual(c.get("text"), "hello")
        finally:
            c.close()
        # The flags the serde chose are stored with the value.
        raw = self.c.raw_command(b"mg num f v", b"\r\n")
        self.assertTrue(raw.startswith(b"VA 2 f"), raw)
        self.assertNotEqual(raw.split(b" ")[2], b"f0")

    def test_stats_version_flush(self):
        self.c.set("k", b"v")
        self.c.get("k")
        stats = self.c.stats()
        for name in (b"curr_items", b"get_hits", b"get_misses", b"cmd_get", b"cmd_set",
                     b"evictions", b"bytes", b"limit_maxbytes", b"curr_connections"):
            self.assertIn(name, stats)
        self.assertGreaterEqual(stats[b"cmd_get"], 1)
        self.assertTrue(self.c.version().startswith(b"1.6"))
        self.assertTrue(self.c.flush_all(noreply=False))
        self.assertIsNone(self.c.get("k"))

    def test_meta_protocol_through_raw_command(self):
        # pymemcache has no meta API; its raw_command sends meta commands over its socket.
        self.assertEqual(self.c.raw_command(b"ms mk 2 T60 F7\r\nhi", b"\r\n"), b"HD")
        self.assertEqual(self.c.raw_command(b"mg mk v f t k", b"\r\nhi\r\n"), b"VA 2 f7 t60 kmk")
        self.assertEqual(self.c.raw_command(b"mg none v", b"\r\n"), b"EN")
        self.assertEqual(self.c.raw_command(b"ma ctr N0 J5 v", b"\r\n5\r\n"), b"VA 1")
        self.assertEqual(self.c.raw_command(b"ma ctr D10 v", b"\r\n15\r\n"), b"VA 2")
        self.assertEqual(self.c.raw_command(b"mn", b"\r\n"), b"MN")


@unittest.skipUnless(RESP_PORT, "needs KVCACHE_PORT (the RESP port of the same server)")
class SameStoreAsResp(unittest.TestCase):
    def resp(self, *args):
        s = socket.create_connection(("127.0.0.1", int(RESP_PORT)), timeout=5)
        req = b"*%d\r\n" % len(args) + b"".join(b"$%d\r\n%s\r\n" % (len(a), a) for a in args)
        s.sendall(req)
        data = b""
        while not data.endswith(b"\r\n") or (data.startswith(b"$") and data.count(b"\r\n") < 2):
            data += s.recv(65536)
        s.close()
        return data

    def test_values_cross_protocols(self):
        c = client(default_noreply=False)
        c.set("x", b"a\r\nb\x00")
        self.assertEqual(self.resp(b"GET", b"x"), b"$5\r\na\r\nb\x00\r\n")
        self.resp(b"SET", b"y", b"from-resp")
        self.assertEqual(c.get("y"), b"from-resp")
        c.close()


if __name__ == "__main__":
    unittest.main()
