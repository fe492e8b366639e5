//! The line protocol, rule by rule, against the real server over TCP. The whole suite runs
//! twice: with one shard and with many, so sharding can never change what a client sees.

mod common;

use common::{Client, TestServer};
use kvcache::config::Config;

fn server(shards: usize) -> TestServer {
    TestServer::start(Config {
        shards,
        ..Config::default()
    })
}

fn conformance(shards: usize) {
    let s = server(shards);
    let mut c = s.client();
    basic_commands(&mut c);
    case_and_whitespace(&mut c);
    errors_keep_the_connection(&mut c);
    limits(&mut c);
    ttl_rules(&mut c);
    ping_and_stats(&mut c);
    quit_semantics(&s);
}

#[test]
fn conformance_one_shard() {
    conformance(1);
}

#[test]
fn conformance_many_shards() {
    conformance(16);
}

fn basic_commands(c: &mut Client) {
    assert_eq!(c.cmd("GET nothing"), "ERROR key not found");
    assert_eq!(c.cmd("PUT foo bar"), "OK stored");
    assert_eq!(c.cmd("GET foo"), "OK bar");
    assert_eq!(c.cmd("EXISTS foo"), "OK 1");
    assert_eq!(c.cmd("PUT foo baz"), "OK stored");
    assert_eq!(c.cmd("GET foo"), "OK baz");
    assert_eq!(c.cmd("DELETE foo"), "OK deleted");
    assert_eq!(c.cmd("DELETE foo"), "ERROR key not found");
    assert_eq!(c.cmd("EXISTS foo"), "OK 0");
    assert_eq!(c.cmd("GET foo"), "ERROR key not found");
    // Every printable character is allowed in keys and values.
    let all: String = (0x21u8..=0x7E).map(char::from).collect();
    assert_eq!(c.cmd(&format!("PUT {all} {all}")), "OK stored");
    assert_eq!(c.cmd(&format!("GET {all}")), format!("OK {all}"));
}

fn case_and_whitespace(c: &mut Client) {
    assert_eq!(c.cmd("put Key Value"), "OK stored");
    assert_eq!(c.cmd("gEt Key"), "OK Value");
    assert_eq!(
        c.cmd("GET key"),
        "ERROR key not found",
        "keys are case-sensitive"
    );
    assert_eq!(c.cmd("  \t GET \t\t Key  \t"), "OK Value");
    c.send(b"GET Key\r\n");
    assert_eq!(c.line(), "OK Value", "trailing CR is stripped");
    assert_eq!(c.cmd("exists Key"), "OK 1");
    assert_eq!(c.cmd("Delete Key"), "OK deleted");
}

fn errors_keep_the_connection(c: &mut Client) {
    let known = "(commands: PUT GET DELETE EXISTS PING STATS AUTH SAVE QUIT)";
    assert_eq!(c.cmd(""), "ERROR empty command");
    assert_eq!(c.cmd("   "), "ERROR empty command");
    assert_eq!(
        c.cmd("FOO bar"),
        format!("ERROR unknown command 'FOO' {known}")
    );
    assert_eq!(c.cmd("foo"), format!("ERROR unknown command 'FOO' {known}"));
    assert_eq!(
        c.cmd("GET"),
        "ERROR wrong number of arguments for 'GET' (got 0 arguments; usage: GET <key>)"
    );
    assert_eq!(
        c.cmd("GET a b"),
        "ERROR wrong number of arguments for 'GET' (got 2 arguments; usage: GET <key>; keys cannot contain spaces)"
    );
    assert_eq!(
        c.cmd("PUT a"),
        "ERROR wrong number of arguments for 'PUT' (got 1 argument; usage: PUT <key> <value> [ttl])"
    );
    assert_eq!(
        c.cmd("PUT a b 10 x"),
        "ERROR wrong number of arguments for 'PUT' (got 4 arguments; usage: PUT <key> <value> [ttl]; values cannot contain spaces)"
    );
    assert_eq!(
        c.cmd("DELETE"),
        "ERROR wrong number of arguments for 'DELETE' (got 0 arguments; usage: DELETE <key>)"
    );
    assert_eq!(
        c.cmd("EXISTS a b"),
        "ERROR wrong number of arguments for 'EXISTS' (got 2 arguments; usage: EXISTS <key>; keys cannot contain spaces)"
    );
    // The case from the first-hour report: a value with a space in it.
    assert_eq!(
        c.cmd("PUT k one two"),
        "ERROR invalid ttl 'two' (0..2147483647 seconds; values cannot contain spaces)"
    );
    // A rejected PUT stores nothing.
    assert_eq!(
        c.cmd("PUT rejected v -5"),
        "ERROR invalid ttl '-5' (0..2147483647 seconds; negative TTLs are not allowed, 0 means no expiry)"
    );
    assert_eq!(c.cmd("EXISTS rejected"), "OK 0");
    c.send(b"PUT bin v\x01x\n");
    assert_eq!(
        c.line(),
        "ERROR invalid value 'v?x' (printable ASCII only; byte 0x01 at offset 1)"
    );
    c.send(b"PUT k\xc3\xa9 v\n");
    assert_eq!(
        c.line(),
        "ERROR invalid key 'k??' (printable ASCII only; byte 0xc3 at offset 1)"
    );
    assert_eq!(c.cmd("EXISTS bin"), "OK 0");
    assert_eq!(c.cmd("PING"), "OK PONG", "still usable after errors");
}

fn limits(c: &mut Client) {
    let k256 = "k".repeat(256);
    let v256 = "v".repeat(256);
    assert_eq!(c.cmd(&format!("PUT {k256} {v256}")), "OK stored");
    assert_eq!(c.cmd(&format!("GET {k256}")), format!("OK {v256}"));
    let key_too_long = "ERROR key too long 'kkkkkkkkkkkkkkkk...' (257 bytes; max 256 bytes)";
    assert_eq!(c.cmd(&format!("PUT {k256}k v")), key_too_long);
    assert_eq!(
        c.cmd(&format!("PUT k {v256}v")),
        "ERROR value too long 'vvvvvvvvvvvvvvvv...' (257 bytes; max 256 bytes)"
    );
    assert_eq!(c.cmd(&format!("GET {k256}k")), key_too_long);
    assert_eq!(c.cmd(&format!("DELETE {k256}k")), key_too_long);
    assert_eq!(c.cmd(&format!("EXISTS {k256}k")), key_too_long);
}

fn ttl_rules(c: &mut Client) {
    let rule = "0..2147483647 seconds";
    for (bad, why) in [
        ("-1", "negative TTLs are not allowed, 0 means no expiry"),
        ("+1", "whole seconds in plain digits"),
        ("1.0", "whole seconds in plain digits"),
        ("x", "values cannot contain spaces"),
        ("1e3", "whole seconds in plain digits"),
        ("2147483648", "too large"),
        ("99999999999", "too large"),
        ("99999999999999999999", "too large"),
        ("0x1", "whole seconds in plain digits"),
    ] {
        let reply = c.cmd(&format!("PUT t v {bad}"));
        assert_eq!(
            reply,
            format!("ERROR invalid ttl '{bad}' ({rule}; {why})"),
            "ttl {bad}"
        );
        // Clients written against the original match on this prefix.
        assert!(reply.starts_with("ERROR invalid ttl"));
    }
    assert_eq!(c.cmd("PUT t v 2147483647"), "OK stored");
    assert_eq!(c.cmd("PUT t v 0"), "OK stored", "0 means no expiry");
    assert_eq!(c.cmd("GET t"), "OK v");
}

fn ping_and_stats(c: &mut Client) {
    assert_eq!(c.cmd("PING"), "OK PONG");
    assert_eq!(c.cmd("ping"), "OK PONG");
    let line = c.cmd("STATS");
    let fields: Vec<&str> = line
        .strip_prefix("OK ")
        .unwrap()
        .split(' ')
        .map(|kv| kv.split_once('=').unwrap().0)
        .collect();
    assert_eq!(
        fields,
        [
            "keys",
            "memory",
            "hits",
            "misses",
            "evictions",
            "expired",
            "connections",
            "uptime",
            "rss",
            "mem_fragmentation_ratio"
        ]
    );
    assert!(
        line.split(' ')
            .skip(1)
            .all(|kv| kv.split_once('=').unwrap().1.parse::<f64>().is_ok())
    );
}

fn quit_semantics(s: &TestServer) {
    let mut c = s.client();
    // Replies before QUIT are flushed; commands after it in the same batch do not run.
    c.send(b"PUT q1 a\nGET q1\nQUIT\nPUT q2 b\n");
    assert_eq!(c.line(), "OK stored");
    assert_eq!(c.line(), "OK a");
    assert!(c.closed_within(std::time::Duration::from_secs(3)));
    let mut d = s.client();
    assert_eq!(d.cmd("EXISTS q2"), "OK 0");
    assert_eq!(d.cmd("EXISTS q1"), "OK 1");
    // QUIT takes no arguments, and lowercase works.
    assert_eq!(
        d.cmd("QUIT now"),
        "ERROR wrong number of arguments for 'QUIT' (got 1 argument; usage: QUIT)"
    );
    d.send(b"quit\n");
    assert!(d.closed_within(std::time::Duration::from_secs(3)));
}

#[test]
fn original_example_session() {
    let s = TestServer::default();
    let mut c = s.client();
    c.send(b"PUT foo bar 60\nGET foo\nQUIT\n");
    assert_eq!(c.line(), "OK stored");
    assert_eq!(c.line(), "OK bar");
    assert!(c.closed_within(std::time::Duration::from_secs(3)));
}

#[test]
fn pipelined_batches_are_answered_in_order() {
    let s = TestServer::default();
    let mut c = s.client();
    let mut batch = String::new();
    for i in 0..500 {
        batch.push_str(&format!(
            "PUT k{i} v{i}\nGET k{i}\nEXISTS k{i}\nGET missing{i}\n"
        ));
    }
    c.send(batch.as_bytes());
    for i in 0..500 {
        assert_eq!(c.line(), "OK stored");
        assert_eq!(c.line(), format!("OK v{i}"));
        assert_eq!(c.line(), "OK 1");
        assert_eq!(c.line(), "ERROR key not found");
    }
}

#[test]
fn requests_split_across_reads_are_reassembled() {
    let s = TestServer::default();
    let mut c = s.client();
    for chunk in [&b"PU"[..], b"T sp", b"lit val", b"ue\r", b"\nGET split\n"] {
        c.send(chunk);
        std::thread::sleep(std::time::Duration::from_millis(20));
    }
    assert_eq!(c.line(), "OK stored");
    assert_eq!(c.line(), "OK value");
}

#[test]
fn a_small_batch_cap_changes_nothing_a_client_sees() {
    let s = TestServer::start(Config {
        max_batch: 2,
        ..Config::default()
    });
    let mut c = s.client();
    let mut batch = String::new();
    for i in 0..300 {
        batch.push_str(&format!("PUT k{i} v{i}\nGET k{i}\n"));
    }
    batch.push_str("QUIT\nPUT after quit\n");
    c.send(batch.as_bytes());
    for i in 0..300 {
        assert_eq!(c.line(), "OK stored");
        assert_eq!(c.line(), format!("OK v{i}"));
    }
    assert!(c.closed_within(std::time::Duration::from_secs(3)));
    assert_eq!(s.client().cmd("EXISTS after"), "OK 0");
}
