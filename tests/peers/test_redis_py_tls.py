"""kvcache over TLS driven by redis-py (ssl=True), with and without client certificates.

Run: KVCACHE_TLS_PORT=7172 KVCACHE_TLS_DIR=certs [KVCACHE_MTLS_PORT=7173] \
     python -m unittest tests/peers/test_redis_py_tls.py
where certs holds ca.crt, client.crt and client.key (scripts/tls-certs.sh makes them).
"""

import os
import ssl
import unittest

import redis

HOST = os.environ.get("KVCACHE_HOST", "127.0.0.1")
PORT = int(os.environ.get("KVCACHE_TLS_PORT", "7172"))
MTLS_PORT = os.environ.get("KVCACHE_MTLS_PORT")
DIR = os.environ.get("KVCACHE_TLS_DIR", "certs")
CA = os.path.join(DIR, "ca.crt")


def client(port=PORT, **kw):
    return redis.Redis(
        host=HOST,
        port=port,
        ssl=True,
        ssl_ca_certs=CA,
        ssl_cert_reqs="required",
        socket_timeout=10,
        **kw,
    )


class OverTls(unittest.TestCase):
    def test_commands_and_pipeline(self):
        r = client()
        self.assertTrue(r.ping())
        self.assertTrue(r.set("tls:k", "v", ex=100))
        self.assertEqual(r.get("tls:k"), b"v")
        self.assertTrue(95 <= r.ttl("tls:k") <= 100)
        big = b"x" * 200_000  # spans many TLS records
        self.assertTrue(r.set("tls:big", big))
        self.assertEqual(r.get("tls:big"), big)
        p = r.pipeline(transaction=False)
        for i in range(500):
            p.set(f"tls:p{i}", i)
        for i in range(500):
            p.get(f"tls:p{i}")
        out = p.execute()
        self.assertEqual(out[:500], [True] * 500)
        self.assertEqual(out[500:], [str(i).encode() for i in range(500)])
        info = r.info("stats")
        self.assertGreaterEqual(info["kvcache_tls_handshakes"], 1)

    def test_hostname_is_checked(self):
        # The certificate names localhost and 127.0.0.1: a check against it passes...
        self.assertTrue(client(ssl_check_hostname=True).ping())

    def test_untrusted_server_is_refused(self):
        r = redis.Redis(
            host=HOST, port=PORT, ssl=True, ssl_cert_reqs="required", socket_timeout=5
        )  # system CAs only: our throwaway CA is not among them
        with self.assertRaises(redis.exceptions.ConnectionError):
            r.ping()

    def test_tls_1_3_and_1_2(self):
        for version in (ssl.TLSVersion.TLSv1_3, ssl.TLSVersion.TLSv1_2):
            r = client(ssl_min_version=version)
            self.assertTrue(r.ping())


@unittest.skipUnless(MTLS_PORT, "KVCACHE_MTLS_PORT not set")
class MutualTls(unittest.TestCase):
    def test_client_certificate_required(self):
        port = int(MTLS_PORT)
        r = client(
            port,
            ssl_certfile=os.path.join(DIR, "client.crt"),
            ssl_keyfile=os.path.join(DIR, "client.key"),
        )
        self.assertTrue(r.set("mtls", "yes"))
        self.assertEqual(r.get("mtls"), b"yes")
        with self.assertRaises(redis.exceptions.ConnectionError):
            client(port).ping()


if __name__ == "__main__":
    unittest.main()
