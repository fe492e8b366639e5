//! The string, bit and keyspace commands Redis users reach for past GET/SET (GETRANGE, SETRANGE,
//! GETBIT, SETBIT, BITCOUNT, BITPOS, LCS, INCRBYFLOAT, EXPIRETIME, RENAME, COPY, OBJECT,
//! FUNCTION FLUSH), over real TCP with RESP2 and RESP3. Expected replies are Redis 7's; the
//! byte-for-byte comparison with a real redis-server is tests/peers/differential.py.

mod common;

use common::{Client, TestServer};
use kvcache::config::Config;

fn r(c: &mut Client, args: &[&str]) -> String {
    let args: Vec<&[u8]> = args.iter().map(|a| a.as_bytes()).collect();
    c.resp(&args)
}

fn resp3(s: &TestServer) -> Client {
    let mut c = s.client();
    let hello = c.resp(&[b"HELLO", b"3"]);
    assert!(hello.starts_with('['), "{hello}");
    c
}

#[test]
fn getrange_and_substr() {
    let s = TestServer::default();
    let mut c = s.client();
    assert_eq!(r(&mut c, &["GETRANGE", "nokey", "0", "-1"]), "");
    c.send(b"*4\r\n$8\r\nGETRANGE\r\n$5\r\nnokey\r\n$1\r\n0\r\n$2\r\n-1\r\n");
    assert_eq!(c.line(), "$0", "a missing key is an empty bulk, not nil");
    c.line();
    r(&mut c, &["SET", "k", "Hello World"]);
    for (start, end, want) in [
        ("0", "3", "Hell"),
        ("0", "-1", "Hello World"),
        ("-4", "-1", "orld"),
        ("5", "3", ""),
        ("5", "5000", " World"),
        ("-5000", "10000", "Hello World"),
        ("-1", "-5", ""),
        ("0", "4294967297", "Hello World"),
    ] {
        assert_eq!(
            r(&mut c, &["GETRANGE", "k", start, end]),
            want,
            "{start} {end}"
        );
    }
    assert_eq!(r(&mut c, &["SUBSTR", "k", "6", "-1"]), "World");
    r(&mut c, &["SET", "n", "1234"]);
    assert_eq!(r(&mut c, &["GETRANGE", "n", "-3", "-1"]), "234");
    assert_eq!(
        r(&mut c, &["GETRANGE", "k", "a", "1"]),
        "-ERR value is not an integer or out of range"
    );
    assert_eq!(
        r(&mut c, &["GETRANGE", "k", "1"]),
        "-ERR wrong number of arguments for 'getrange' command"
    );
}

#[test]
fn setrange_pads_grows_and_respects_the_value_limit() {
    let s = TestServer::start(Config {
        max_value_size: 4096,
        ..Config::default()
    });
    let mut c = s.client();
    assert_eq!(r(&mut c, &["SETRANGE", "k", "0", ""]), ":0");
    assert_eq!(
        r(&mut c, &["EXISTS", "k"]),
        ":0",
        "an empty write creates nothing"
    );
    assert_eq!(r(&mut c, &["SETRANGE", "k", "1", "foo"]), ":4");
    assert_eq!(r(&mut c, &["GET", "k"]), "\0foo");
    r(&mut c, &["SET", "k", "Hello World", "EX", "100"]);
    assert_eq!(r(&mut c, &["SETRANGE", "k", "6", "Redis"]), ":11");
    assert_eq!(r(&mut c, &["GET", "k"]), "Hello Redis");
    assert_eq!(r(&mut c, &["SETRANGE", "k", "13", "!"]), ":14");
    assert_eq!(r(&mut c, &["GET", "k"]), "Hello Redis\0\0!");
    let ttl: i64 = r(&mut c, &["TTL", "k"])[1..].parse().unwrap();
    assert!((1..=100).contains(&ttl), "SETRANGE keeps the TTL: {ttl}");
    assert_eq!(r(&mut c, &["SETRANGE", "k", "0", ""]), ":14");
    assert_eq!(
        r(&mut c, &["SETRANGE", "k", "-1", "x"]),
        "-ERR offset is out of range"
    );
    assert_eq!(
        r(&mut c, &["SETRANGE", "k", "x", "x"]),
        "-ERR value is not an integer or out of range"
    );
    // The grown string must fit the value limit (Redis's proto-max-bulk-len).
    assert_eq!(r(&mut c, &["SETRANGE", "big", "4095", "x"]), ":4096");
    for offset in ["4096", "9223372036854775807"] {
        assert_eq!(
            r(&mut c, &["SETRANGE", "big", offset, "x"]),
            "-ERR string exceeds maximum allowed size (proto-max-bulk-len)"
        );
    }
    assert_eq!(
        r(&mut c, &["SETRANGE", "new", "4096", "x"]),
        "-ERR string exceeds maximum allowed size (proto-max-bulk-len)"
    );
    assert_eq!(r(&mut c, &["EXISTS", "new"]), ":0");
}

#[test]
fn bits_read_and_write_most_significant_first() {
    let s = TestServer::default();
    let mut c = s.client();
    assert_eq!(r(&mut c, &["GETBIT", "nokey", "100"]), ":0");
    assert_eq!(r(&mut c, &["SETBIT", "k", "1", "1"]), ":0");
    assert_eq!(r(&mut c, &["GET", "k"]), "@"); // 0100_0000
    assert_eq!(r(&mut c, &["SETBIT", "k", "2", "1"]), ":0");
    assert_eq!(r(&mut c, &["GET", "k"]), "`"); // 0110_0000
    assert_eq!(r(&mut c, &["SETBIT", "k", "1", "0"]), ":1");
    assert_eq!(r(&mut c, &["GET", "k"]), " "); // 0010_0000
    assert_eq!(r(&mut c, &["GETBIT", "k", "2"]), ":1");
    assert_eq!(r(&mut c, &["GETBIT", "k", "3"]), ":0");
    assert_eq!(r(&mut c, &["GETBIT", "k", "10000"]), ":0");
    // Setting a 0 still creates (or grows) the string, as in Redis.
    assert_eq!(r(&mut c, &["SETBIT", "z", "15", "0"]), ":0");
    assert_eq!(r(&mut c, &["STRLEN", "z"]), ":2");
    r(&mut c, &["SET", "n", "1"]); // "1" = 0011_0001
    assert_eq!(r(&mut c, &["SETBIT", "n", "6", "1"]), ":0");
    assert_eq!(r(&mut c, &["GET", "n"]), "3");
    for (off, bit, err) in [
        (
            "-1",
            "1",
            "-ERR bit offset is not an integer or out of range",
        ),
        (
            "4294967296",
            "1",
            "-ERR bit offset is not an integer or out of range",
        ),
        ("0", "2", "-ERR bit is not an integer or out of range"),
        ("0", "-1", "-ERR bit is not an integer or out of range"),
    ] {
        assert_eq!(r(&mut c, &["SETBIT", "k", off, bit]), err, "{off} {bit}");
    }
    assert_eq!(
        r(&mut c, &["GETBIT", "k", "x"]),
        "-ERR bit offset is not an integer or out of range"
    );
}

#[test]
fn bitcount_counts_bytes_or_bits() {
    let s = TestServer::default();
    let mut c = s.client();
    r(&mut c, &["SET", "k", "foobar"]);
    for (args, want) in [
        (&["BITCOUNT", "k"][..], ":26"),
        (&["BITCOUNT", "k", "0", "0"], ":4"),
        (&["BITCOUNT", "k", "1", "1"], ":6"),
        (&["BITCOUNT", "k", "1", "1", "BYTE"], ":6"),
        (&["BITCOUNT", "k", "5", "30", "BIT"], ":17"),
        (&["BITCOUNT", "k", "-2", "-1", "bit"], ":1"),
        (&["BITCOUNT", "k", "-1", "-2"], ":0"),
        (&["BITCOUNT", "k", "-1", "-2", "FOO"], ":0"),
        (&["BITCOUNT", "k", "100", "200"], ":0"),
        (&["BITCOUNT", "nokey"], ":0"),
        (&["BITCOUNT", "nokey", "x", "y", "z"], ":0"),
        (&["BITCOUNT", "k", "0"], "-ERR syntax error"),
        (&["BITCOUNT", "k", "0", "1", "FOO"], "-ERR syntax error"),
        (
            &["BITCOUNT", "k", "0", "x"],
            "-ERR value is not an integer or out of range",
        ),
    ] {
        assert_eq!(r(&mut c, args), want, "{args:?}");
    }
}

#[test]
fn bitpos_finds_the_first_set_or_clear_bit() {
    let s = TestServer::default();
    let mut c = s.client();
    c.resp(&[b"SET", b"a", b"\xff\xf0\x00"]);
    c.resp(&[b"SET", b"b", b"\x00\xff\xf0"]);
    c.resp(&[b"SET", b"ones", b"\xff\xff\xff"]);
    for (args, want) in [
        (&["BITPOS", "a", "0"][..], ":12"),
        (&["BITPOS", "b", "1", "0"], ":8"),
        (&["BITPOS", "b", "1", "2"], ":16"),
        (&["BITPOS", "b", "1", "2", "-1", "BYTE"], ":16"),
        (&["BITPOS", "b", "1", "7", "15", "BIT"], ":8"),
        (&["BITPOS", "b", "1", "7", "-3", "BIT"], ":8"),
        // No 0 inside the string: without an end the first bit after it counts ...
        (&["BITPOS", "ones", "0"], ":24"),
        // ... with an explicit end there is none.
        (&["BITPOS", "ones", "0", "0", "-1"], ":-1"),
        (&["BITPOS", "ones", "1", "5", "3"], ":-1"),
        (&["BITPOS", "nokey", "1"], ":-1"),
        (&["BITPOS", "nokey", "0"], ":0"),
        (&["BITPOS", "nokey", "1", "x"], ":-1"),
        (
            &["BITPOS", "b", "2"],
            "-ERR The bit argument must be 1 or 0.",
        ),
        (
            &["BITPOS", "b", "1", "x"],
            "-ERR value is not an integer or out of range",
        ),
        (&["BITPOS", "b", "1", "0", "1", "FOO"], "-ERR syntax error"),
    ] {
        assert_eq!(r(&mut c, args), want, "{args:?}");
    }
    r(&mut c, &["SET", "empty", ""]);
    assert_eq!(r(&mut c, &["BITPOS", "empty", "0"]), ":-1");
}

#[test]
fn incrbyfloat_answers_what_redis_long_double_arithmetic_does() {
    let s = TestServer::default();
    let mut c = s.client();
    r(&mut c, &["SET", "f", "10.50"]);
    assert_eq!(r(&mut c, &["INCRBYFLOAT", "f", "0.1"]), "10.6");
    // As redis-server answers: its long double shows through.
    assert_eq!(
        r(&mut c, &["INCRBYFLOAT", "f", "-5.0e3"]),
        "-4989.39999999999999991"
    );
    r(&mut c, &["SET", "f", "1000000"]);
    assert_eq!(
        r(&mut c, &["INCRBYFLOAT", "f", "0.1"]),
        "1000000.10000000000002274"
    );
    assert_eq!(r(&mut c, &["INCRBYFLOAT", "new", "3"]), "3");
    assert_eq!(r(&mut c, &["GET", "new"]), "3");
    r(&mut c, &["SET", "t", "1", "EX", "100"]);
    r(&mut c, &["INCRBYFLOAT", "t", "1.5"]);
    assert_ne!(r(&mut c, &["TTL", "t"]), ":-1", "INCRBYFLOAT keeps the TTL");
    for (stored, by, err) in [
        ("abc", "1", "-ERR value is not a valid float"),
        ("1", "abc", "-ERR value is not a valid float"),
        ("1", " 1", "-ERR value is not a valid float"),
        ("1 ", "1", "-ERR value is not a valid float"),
        ("1", "nan", "-ERR value is not a valid float"),
        ("1", "1e5000", "-ERR value is not a valid float"),
        ("0", "inf", "-ERR increment would produce NaN or Infinity"),
    ] {
        r(&mut c, &["SET", "x", stored]);
        assert_eq!(r(&mut c, &["INCRBYFLOAT", "x", by]), err, "{stored} + {by}");
        assert_eq!(r(&mut c, &["GET", "x"]), stored, "unchanged after an error");
    }
    r(&mut c, &["DEL", "z"]);
    r(&mut c, &["INCRBYFLOAT", "z", "0.024390243902439025"]);
    assert_eq!(
        r(&mut c, &["INCRBYFLOAT", "z", "-0.024390243902439025"]),
        "0",
        "no negative zero"
    );
}

#[test]
fn lcs_replies_in_both_protocols() {
    let s = TestServer::default();
    let mut c = s.client();
    r(&mut c, &["SET", "a", "ohmytext"]);
    r(&mut c, &["SET", "b", "mynewtext"]);
    assert_eq!(r(&mut c, &["LCS", "a", "b"]), "mytext");
    assert_eq!(r(&mut c, &["LCS", "a", "b", "LEN"]), ":6");
    let idx = "[matches, [[[:4, :7], [:5, :8]], [[:2, :3], [:0, :1]]], len, :6]";
    assert_eq!(r(&mut c, &["LCS", "a", "b", "IDX"]), idx);
    assert_eq!(
        r(
            &mut c,
            &["LCS", "a", "b", "IDX", "MINMATCHLEN", "4", "WITHMATCHLEN"]
        ),
        "[matches, [[[:4, :7], [:5, :8], :4]], len, :6]"
    );
    assert_eq!(r(&mut c, &["LCS", "a", "nokey"]), "");
    assert_eq!(
        r(&mut c, &["LCS", "a", "b", "LEN", "IDX"]),
        "-ERR If you want both the length and indexes, please just use IDX."
    );
    assert_eq!(r(&mut c, &["LCS", "a", "b", "FOO"]), "-ERR syntax error");
    // RESP3 answers IDX with a map.
    let mut c3 = resp3(&s);
    c3.send(&common::resp_frame(&[b"LCS", b"a", b"b", b"IDX"]));
    assert_eq!(c3.line(), "%2");
}

#[test]
fn lcs_table_is_bounded_by_the_value_limit() {
    let s = TestServer::start(Config {
        max_value_size: 1 << 16,
        ..Config::default()
    });
    let mut c = s.client();
    let long = "x".repeat(200);
    r(&mut c, &["SET", "a", &long]);
    r(&mut c, &["SET", "b", &long]);
    assert_eq!(
        r(&mut c, &["LCS", "a", "b", "LEN"]),
        "-ERR Insufficient memory, transient memory for LCS exceeds proto-max-bulk-len"
    );
}

#[test]
fn expiretime_reports_absolute_deadlines() {
    let s = TestServer::default();
    let mut c = s.client();
    r(&mut c, &["SET", "a", "v", "PXAT", "33177117420123"]);
    assert_eq!(r(&mut c, &["PEXPIRETIME", "a"]), ":33177117420123");
    assert_eq!(r(&mut c, &["EXPIRETIME", "a"]), ":33177117420");
    r(&mut c, &["SET", "b", "v", "PXAT", "33177117420500"]);
    assert_eq!(r(&mut c, &["EXPIRETIME", "b"]), ":33177117421", "rounded");
    r(&mut c, &["SET", "p", "v"]);
    assert_eq!(r(&mut c, &["EXPIRETIME", "p"]), ":-1");
    assert_eq!(r(&mut c, &["PEXPIRETIME", "nokey"]), ":-2");
}

#[test]
fn rename_moves_value_and_ttl() {
    let s = TestServer::default();
    let mut c = s.client();
    r(&mut c, &["SET", "a", "1", "PXAT", "33177117420123"]);
    assert_eq!(r(&mut c, &["RENAME", "a", "b"]), "+OK");
    assert_eq!(r(&mut c, &["EXISTS", "a"]), ":0");
    assert_eq!(r(&mut c, &["GET", "b"]), "1");
    assert_eq!(r(&mut c, &["PEXPIRETIME", "b"]), ":33177117420123");
    // The destination's own TTL does not survive.
    r(&mut c, &["SET", "c", "2"]);
    r(&mut c, &["SET", "d", "3", "EX", "100"]);
    assert_eq!(r(&mut c, &["RENAME", "c", "d"]), "+OK");
    assert_eq!(r(&mut c, &["TTL", "d"]), ":-1");
    assert_eq!(r(&mut c, &["GET", "d"]), "2");
    assert_eq!(r(&mut c, &["RENAME", "nokey", "x"]), "-ERR no such key");
    assert_eq!(r(&mut c, &["RENAME", "nokey", "nokey"]), "-ERR no such key");
    assert_eq!(r(&mut c, &["RENAME", "d", "d"]), "+OK");
    assert_eq!(r(&mut c, &["RENAMENX", "d", "d"]), ":0");
    r(&mut c, &["SET", "e", "4"]);
    assert_eq!(r(&mut c, &["RENAMENX", "d", "e"]), ":0");
    assert_eq!(r(&mut c, &["GET", "e"]), "4");
    assert_eq!(r(&mut c, &["RENAMENX", "d", "f"]), ":1");
    assert_eq!(r(&mut c, &["GET", "f"]), "2");
    assert_eq!(r(&mut c, &["EXISTS", "d"]), ":0");
    assert_eq!(r(&mut c, &["RENAMENX", "nokey", "g"]), "-ERR no such key");
}

#[test]
fn copy_duplicates_value_and_ttl() {
    let s = TestServer::default();
    let mut c = s.client();
    r(&mut c, &["SET", "a", "foobar", "PXAT", "33177117420123"]);
    assert_eq!(r(&mut c, &["COPY", "a", "b"]), ":1");
    assert_eq!(r(&mut c, &["GET", "b"]), "foobar");
    assert_eq!(r(&mut c, &["PEXPIRETIME", "b"]), ":33177117420123");
    assert_eq!(r(&mut c, &["GET", "a"]), "foobar");
    r(&mut c, &["SET", "b", "other"]);
    assert_eq!(r(&mut c, &["COPY", "a", "b"]), ":0");
    assert_eq!(r(&mut c, &["GET", "b"]), "other");
    assert_eq!(r(&mut c, &["COPY", "a", "b", "DB", "0", "REPLACE"]), ":1");
    assert_eq!(r(&mut c, &["GET", "b"]), "foobar");
    r(&mut c, &["SET", "p", "v"]);
    r(&mut c, &["COPY", "p", "q"]);
    assert_eq!(r(&mut c, &["TTL", "q"]), ":-1");
    assert_eq!(r(&mut c, &["COPY", "nokey", "z"]), ":0");
    assert_eq!(r(&mut c, &["EXISTS", "z"]), ":0");
    for (args, err) in [
        (
            &["COPY", "a", "a"][..],
            "-ERR source and destination objects are the same",
        ),
        (
            &["COPY", "a", "b", "DB", "1"],
            "-ERR DB index is out of range",
        ),
        (
            &["COPY", "a", "b", "DB", "x"],
            "-ERR value is not an integer or out of range",
        ),
        (&["COPY", "a", "b", "FOO"], "-ERR syntax error"),
    ] {
        assert_eq!(r(&mut c, args), err, "{args:?}");
    }
}

#[test]
fn object_encoding_as_redis_reports_it() {
    let s = TestServer::default();
    let mut c = s.client();
    let enc = |c: &mut Client, k: &str| r(c, &["OBJECT", "ENCODING", k]);
    r(&mut c, &["SET", "i", "1234"]);
    assert_eq!(enc(&mut c, "i"), "int");
    r(&mut c, &["SET", "e", "short"]);
    assert_eq!(enc(&mut c, "e"), "embstr");
    r(&mut c, &["SET", "r", &"x".repeat(45)]);
    assert_eq!(enc(&mut c, "r"), "raw");
    // Writes that change a string in place leave it raw, however short or numeric.
    assert_eq!(r(&mut c, &["SETRANGE", "i", "0", "2"]), ":4");
    assert_eq!(enc(&mut c, "i"), "raw");
    r(&mut c, &["SET", "i", "1234"]);
    r(&mut c, &["SETRANGE", "i", "0", ""]);
    assert_eq!(enc(&mut c, "i"), "int", "an empty SETRANGE changes nothing");
    r(&mut c, &["APPEND", "e", "r"]);
    assert_eq!(enc(&mut c, "e"), "raw");
    r(&mut c, &["SETBIT", "b", "0", "1"]);
    assert_eq!(enc(&mut c, "b"), "raw");
    r(&mut c, &["INCRBYFLOAT", "f", "3"]);
    assert_eq!(enc(&mut c, "f"), "embstr");
    r(&mut c, &["INCR", "n"]);
    assert_eq!(enc(&mut c, "n"), "int");
    // A rename carries the encoding along; a new SET replaces it.
    r(&mut c, &["RENAME", "e", "e2"]);
    assert_eq!(enc(&mut c, "e2"), "raw");
    r(&mut c, &["SET", "e2", "fresh"]);
    assert_eq!(enc(&mut c, "e2"), "embstr");
    assert_eq!(enc(&mut c, "nokey"), "(nil)");
    assert_eq!(r(&mut c, &["OBJECT", "REFCOUNT", "r"]), ":1");
    assert!(
        r(&mut c, &["OBJECT", "FREQ", "r"])
            .starts_with("-ERR An LFU maxmemory policy is not selected")
    );
    assert!(r(&mut c, &["OBJECT", "IDLETIME", "r"]).starts_with("-ERR"));
    let help = r(&mut c, &["OBJECT", "HELP"]);
    assert!(help.starts_with("[+OBJECT <subcommand>"), "{help}");
    assert_eq!(
        r(&mut c, &["OBJECT", "ENCODING"]),
        "-ERR wrong number of arguments for 'object|encoding' command"
    );
    assert_eq!(
        r(&mut c, &["OBJECT", "nope", "x"]),
        "-ERR unknown subcommand 'nope'. Try OBJECT HELP."
    );
    let mut c3 = resp3(&s);
    assert_eq!(r(&mut c3, &["OBJECT", "ENCODING", "nokey"]), "(nil)");
}

#[test]
fn function_flush_answers_for_an_empty_library() {
    let s = TestServer::default();
    let mut c = s.client();
    assert_eq!(r(&mut c, &["FUNCTION", "FLUSH"]), "+OK");
    assert_eq!(r(&mut c, &["FUNCTION", "FLUSH", "ASYNC"]), "+OK");
    assert_eq!(
        r(&mut c, &["FUNCTION", "FLUSH", "NOW"]),
        "-ERR FUNCTION FLUSH only supports SYNC|ASYNC option"
    );
    assert_eq!(
        r(&mut c, &["FUNCTION", "LOAD", "x"]),
        "-ERR unknown subcommand 'LOAD'. Try FUNCTION HELP."
    );
}

#[test]
fn new_commands_are_in_command_and_command_docs() {
    let s = TestServer::default();
    let mut c = s.client();
    for name in [
        "getrange",
        "substr",
        "setrange",
        "getbit",
        "setbit",
        "bitcount",
        "bitpos",
        "lcs",
        "incrbyfloat",
        "expiretime",
        "pexpiretime",
        "rename",
        "renamenx",
        "copy",
        "object",
        "function",
    ] {
        let info = r(&mut c, &["COMMAND", "INFO", name]);
        assert!(info.starts_with(&format!("[[{name}, ")), "{info}");
        let docs = r(&mut c, &["COMMAND", "DOCS", name]);
        assert!(docs.contains("summary"), "{docs}");
    }
}
