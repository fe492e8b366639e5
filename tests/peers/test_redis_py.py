"""kvcache driven by redis-py, the most used Redis client library.

Run: KVCACHE_PORT=7171 python -m unittest tests/peers/test_redis_py.py
"""

import os
import time
import unittest

import redis

PORT = int(os.environ.get("KVCACHE_PORT", "7171"))
HOST = os.environ.get("KVCACHE_HOST", "127.0.0.1")


def client(**kw):
    return redis.Redis(host=HOST, port=PORT, socket_timeout=10, **kw)


class PlainCommands(unittest.TestCase):
    def setUp(self):
        self.r = client()
        self.r.flushall()

    def test_set_get_delete(self):
        r = self.r
        self.assertTrue(r.set("k", "v"))
        self.assertEqual(r.get("k"), b"v")
        self.assertEqual(r.exists("k", "k", "missing"), 2)
        self.assertEqual(r.type("k"), b"string")
        self.assertEqual(r.delete("k", "missing"), 1)
        self.assertIsNone(r.get("k"))
        self.assertEqual(r.dbsize(), 0)

    def test_set_options(self):
        r = self.r
        self.assertTrue(r.set("ex", "v", ex=100))
        self.assertTrue(95 <= r.ttl("ex") <= 100)
        self.assertTrue(r.set("px", "v", px=50_000))
        self.assertTrue(45_000 <= r.pttl("px") <= 50_000)
        self.assertIsNone(r.set("ex", "other", nx=True))
        self.assertEqual(r.get("ex"), b"v")
        self.assertTrue(r.set("ex", "new", xx=True))
        self.assertEqual(r.ttl("ex"), -1, "SET without KEEPTTL clears the TTL")
        self.assertIsNone(r.set("absent", "v", xx=True))
        self.assertEqual(r.exists("absent"), 0)
        self.assertTrue(r.set("nx", "v", nx=True))
        r.set("keep", "v", ex=100)
        r.set("keep", "w", keepttl=True)
        self.assertGreater(r.ttl("keep"), 90)
        self.assertEqual(r.set("keep", "x", get=True), b"w")
        self.assertEqual(r.ttl("nokey"), -2)
        self.assertEqual(r.ttl("nx"), -1)

    def test_ttl_expiry(self):
        r = self.r
        r.set("short", "v", px=200)
        self.assertEqual(r.get("short"), b"v")
        time.sleep(0.35)
        self.assertIsNone(r.get("short"))
        r.set("e", "v")
        self.assertTrue(r.expire("e", 100))
        self.assertTrue(r.persist("e"))
        self.assertEqual(r.ttl("e"), -1)
        self.assertTrue(r.pexpireat("e", int(time.time() * 1000) + 60_000))
        self.assertTrue(55 <= r.ttl("e") <= 60)

    def test_counters(self):
        r = self.r
        self.assertEqual(r.incr("c"), 1)
        self.assertEqual(r.incrby("c", 41), 42)
        self.assertEqual(r.decr("c"), 41)
        self.assertEqual(r.decrby("c", 50), -9)
        self.assertEqual(r.get("c"), b"-9")

    def test_mget_mset_append_strlen(self):
        r = self.r
        self.assertTrue(r.mset({"a": "1", "b": "2", "c": "3"}))
        self.assertEqual(r.mget("a", "b", "missing", "c"), [b"1", b"2", None, b"3"])
        self.assertFalse(r.msetnx({"a": "x", "z": "y"}))
        self.assertIsNone(r.get("z"))
        self.assertTrue(r.msetnx({"y": "x", "z": "y"}))
        self.assertEqual(r.append("a", "23"), 3)
        self.assertEqual(r.strlen("a"), 3)
        self.assertEqual(r.getdel("a"), b"123")
        self.assertIsNone(r.get("a"))
        self.assertEqual(r.getex("b", ex=100), b"2")
        self.assertGreater(r.ttl("b"), 90)

    def test_binary_values(self):
        r = self.r
        blob = bytes(range(256)) * 40  # 10 KiB with every byte value
        self.assertTrue(r.set(b"bin\x00key\r\n", blob))
        self.assertEqual(r.get(b"bin\x00key\r\n"), blob)
        self.assertEqual(r.strlen(b"bin\x00key\r\n"), len(blob))
        self.assertTrue(r.set("empty", ""))
        self.assertEqual(r.get("empty"), b"")

    def test_pipeline_of_1000(self):
        r = self.r
        with r.pipeline(transaction=False) as p:
            for i in range(1000):
                p.set(f"p{i}", i)
            results = p.execute()
        self.assertEqual(results, [True] * 1000)
        with r.pipeline(transaction=False) as p:
            for i in range(1000):
                p.get(f"p{i}")
            values = p.execute()
        self.assertEqual(values, [str(i).encode() for i in range(1000)])

    def test_scan_iter(self):
        r = self.r
        for i in range(300):
            r.set(f"user:{i}", i)
            r.set(f"other:{i}", i)
        users = set(r.scan_iter(match="user:*", count=50))
        self.assertEqual(users, {f"user:{i}".encode() for i in range(300)})
        self.assertIsNotNone(r.randomkey())

    def test_info_and_config(self):
        r = self.r
        r.set("k", "v")
        r.get("k")
        r.get("missing")
        info = r.info()
        for field in ("used_memory", "connected_clients", "keyspace_hits", "keyspace_misses",
                      "evicted_keys", "expired_keys", "kvcache_version", "redis_version"):
            self.assertIn(field, info)
        self.assertGreaterEqual(info["keyspace_hits"], 1)
        self.assertEqual(info["db0"]["keys"], 1)
        self.assertEqual(r.info("keyspace")["db0"]["keys"], 1)
        self.assertIn("maxmemory", r.config_get("maxmemory"))
        self.assertEqual(r.config_get("nonexistent-setting"), {})

    def test_client_and_connection_commands(self):
        r = self.r
        self.assertTrue(r.ping())
        self.assertEqual(r.echo("hi"), b"hi")
        self.assertTrue(r.client_setname("worker-1"))
        self.assertEqual(r.client_getname(), "worker-1")
        self.assertIsInstance(r.client_id(), int)
        self.assertGreater(r.command_count(), 30)

    def test_errors_raise_and_the_connection_survives(self):
        r = self.r
        r.set("s", "abc")
        with self.assertRaises(redis.ResponseError) as e:
            r.incr("s")
        self.assertIn("value is not an integer or out of range", str(e.exception))
        with self.assertRaises(redis.ResponseError) as e:
            r.execute_command("NOSUCHCOMMAND", "x")
        self.assertIn("unknown command 'NOSUCHCOMMAND'", str(e.exception))
        with self.assertRaises(redis.ResponseError):
            r.execute_command("GET")
        with self.assertRaises(redis.ResponseError):
            r.execute_command("SET", "k", "v", "EX", "0")
        with self.assertRaises(redis.ResponseError):
            r.execute_command("SELECT", "3")
        self.assertEqual(r.get("s"), b"abc")

    def test_resp3(self):
        r = client(protocol=3)
        r.set("k3", "v")
        self.assertEqual(r.get("k3"), b"v")
        self.assertIsNone(r.get("missing"))
        self.assertEqual(r.mget("k3", "missing"), [b"v", None])
        self.assertTrue(r.ping())

    def test_line_protocol_sees_the_same_data(self):
        import socket

        r = self.r
        r.set("shared", "from-redis")
        r.set("spaced", "has space")
        with socket.create_connection((HOST, PORT), timeout=5) as s:
            s.sendall(b"GET shared\nPUT back from-line\nGET spaced\n")
            data = b""
            while data.count(b"\n") < 3:
                chunk = s.recv(4096)
                if not chunk:
                    break
                data += chunk
        self.assertEqual(
            data.decode().splitlines(),
            ["OK from-redis", "OK stored", "ERROR value not representable in the text protocol"],
        )
        self.assertEqual(r.get("back"), b"from-line")


class Authentication(unittest.TestCase):
    """Runs only when the server was started with KVCACHE_PASSWORD."""

    def setUp(self):
        self.password = os.environ.get("KVCACHE_PASSWORD")
        if not self.password:
            self.skipTest("server has no password")

    def test_auth(self):
        with self.assertRaises(redis.AuthenticationError):
            client().get("x")
        with self.assertRaises(redis.AuthenticationError):
            client(password="wrong").ping()
        r = client(password=self.password)
        self.assertTrue(r.set("secret", "v"))
        r3 = client(password=self.password, protocol=3)
        self.assertEqual(r3.get("secret"), b"v")


if __name__ == "__main__":
    unittest.main()
