//! The Prometheus endpoint, scraped over real HTTP.

mod common;

use std::io::{Read, Write};
use std::net::TcpStream;

use common::{BinServer, free_port};

fn http_get(port: u16, path: &str) -> String {
    let mut s = TcpStream::connect(("127.0.0.1", port)).unwrap();
    write!(s, "GET {path} HTTP/1.1\r\nHost: localhost\r\n\r\n").unwrap();
    let mut out = String::new();
    s.read_to_string(&mut out).unwrap();
    out
}

#[test]
fn metrics_endpoint_reports_the_counters() {
    let mport = free_port();
    let s = BinServer::start(&["--metrics-port", &mport.to_string()], &[]);
    let mut c = s.client();
    assert_eq!(c.cmd("PUT a 1"), "OK stored");
    assert_eq!(c.cmd("GET a"), "OK 1");
    assert_eq!(c.cmd("GET b"), "ERROR key not found");
    let reply = http_get(mport, "/metrics");
    assert!(reply.starts_with("HTTP/1.1 200 OK\r\n"), "{reply}");
    assert!(reply.contains("Content-Type: text/plain; version=0.0.4"));
    for line in [
        "kvcache_keys 1",
        "kvcache_keyspace_hits_total 1",
        "kvcache_keyspace_misses_total 1",
        "kvcache_connected_clients 1",
        "kvcache_commands_processed_total 3",
        "kvcache_connections_received_total 1",
        // The old names, kept one release as deprecated aliases.
        "kvcache_total_commands_processed_total 3",
        "kvcache_total_connections_received_total 1",
        "# TYPE kvcache_evicted_keys_total counter",
        "kvcache_max_memory_bytes 1073741824",
    ] {
        assert!(reply.contains(line), "missing {line:?} in {reply}");
    }
    assert!(http_get(mport, "/").starts_with("HTTP/1.1 404"));
}

#[test]
fn metrics_are_off_by_default() {
    let s = BinServer::start(&["--debug"], &[]);
    std::thread::sleep(std::time::Duration::from_millis(100));
    assert!(!s.stderr.lock().unwrap().contains("metrics"));
}
