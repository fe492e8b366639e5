use super::*;

fn limits() -> Limits {
    Limits::default()
}

fn frame(words: &[&[u8]]) -> Vec<u8> {
    let mut v = format!("*{}\r\n", words.len()).into_bytes();
    for w in words {
        v.extend_from_slice(format!("${}\r\n", w.len()).as_bytes());
        v.extend_from_slice(w);
        v.extend_from_slice(b"\r\n");
    }
    v
}

fn decode_one(buf: &[u8]) -> (String, usize) {
    let mut d = RespDecoder::default();
    match d.decode(buf, &limits()) {
        Decoded::Frame { value, consumed } => (format!("{value:?}"), consumed),
        Decoded::Invalid { error, fatal, .. } => (format!("invalid({fatal}): {}", error.0), 0),
        Decoded::Incomplete { .. } => ("incomplete".into(), 0),
        Decoded::Skip { consumed } => ("skip".into(), consumed),
    }
}

fn parse(words: &[&str]) -> String {
    let words: Vec<&[u8]> = words.iter().map(|w| w.as_bytes()).collect();
    decode_one(&frame(&words)).0
}

#[test]
fn multibulk_roundtrip_and_partial_input() {
    let buf = frame(&[b"SET", b"key", b"va\r\nlue"]);
    for cut in 0..buf.len() {
        let mut d = RespDecoder::default();
        assert!(
            matches!(d.decode(&buf[..cut], &limits()), Decoded::Incomplete { .. }),
            "cut at {cut}"
        );
    }
    let (req, consumed) = decode_one(&buf);
    assert_eq!(consumed, buf.len());
    assert!(req.contains("key: [107, 101, 121]"), "{req}");
    // The decoder resumes where it stopped instead of re-parsing.
    let mut d = RespDecoder::default();
    assert!(matches!(
        d.decode(&buf[..20], &limits()),
        Decoded::Incomplete { .. }
    ));
    assert!(matches!(d.decode(&buf, &limits()), Decoded::Frame { .. }));
}

#[test]
fn pipelined_frames_decode_in_order() {
    let mut buf = frame(&[b"GET", b"a"]);
    buf.extend(frame(&[b"GET", b"b"]));
    let mut d = RespDecoder::default();
    let Decoded::Frame { consumed, .. } = d.decode(&buf, &limits()) else {
        panic!()
    };
    let Decoded::Frame { value, .. } = d.decode(&buf[consumed..], &limits()) else {
        panic!()
    };
    assert!(matches!(value, Request::Get(b"b")));
}

#[test]
fn malformed_frames_are_fatal_with_redis_texts() {
    let cases: &[(&[u8], &str)] = &[
        (b"*abc\r\n", "invalid multibulk length"),
        (b"*99999999999\r\n", "invalid multibulk length"),
        (b"*1\r\n$-5\r\n", "invalid bulk length"),
        (b"*1\r\n$9999999999\r\n", "invalid bulk length"),
        (b"*1\r\n$x\r\n", "invalid bulk length"),
        (b"*1\r\n:5\r\n", "expected '$', got ':'"),
        (b"*2\r\n*1\r\n", "expected '$', got '*'"),
        (b"*1\r\n$3\r\nabcXY", "bulk string not terminated by CRLF"),
        (
            b"*111111111111111111111111111111111111111",
            "too big mbulk count string",
        ),
    ];
    for (input, msg) in cases {
        let (got, _) = decode_one(input);
        assert_eq!(
            got,
            format!("invalid(true): ERR Protocol error: {msg}"),
            "{:?}",
            String::from_utf8_lossy(input)
        );
    }
}

#[test]
fn oversized_bulks_are_refused_from_the_header() {
    let l = Limits {
        max_value: 100,
        max_key: 10,
        max_discard: 0,
        ..Limits::default()
    };
    let mut d = RespDecoder::default();
    // Only the header has arrived: the refusal must not wait for (or buffer) the body.
    assert!(matches!(
        d.decode(b"*2\r\n$3\r\nGET\r\n$101\r\n", &l),
        Decoded::Invalid { fatal: true, .. }
    ));
    let mut d = RespDecoder::default();
    let l = Limits {
        max_args: 3,
        ..Limits::default()
    };
    assert!(matches!(
        d.decode(b"*4\r\n", &l),
        Decoded::Invalid { fatal: true, .. }
    ));
}

#[test]
fn empty_and_inline_requests() {
    assert_eq!(decode_one(b"*0\r\n"), ("skip".into(), 4));
    assert_eq!(decode_one(b"*-1\r\n"), ("skip".into(), 5));
    assert_eq!(decode_one(b"\r\n"), ("skip".into(), 2));
    let (req, n) = decode_one(b"GET  foo\r\n");
    assert_eq!((req.as_str(), n), ("Get([102, 111, 111])", 10));
}

#[test]
fn integers_follow_redis_string2ll() {
    assert_eq!(parse_i64(b"0"), Some(0));
    assert_eq!(parse_i64(b"-12"), Some(-12));
    assert_eq!(parse_i64(b"9223372036854775807"), Some(i64::MAX));
    assert_eq!(parse_i64(b"-9223372036854775808"), Some(i64::MIN));
    for bad in [
        &b""[..],
        b"+1",
        b" 1",
        b"1 ",
        b"01",
        b"-0",
        b"9223372036854775808",
        b"1.0",
        b"-",
    ] {
        assert_eq!(parse_i64(bad), None, "{:?}", String::from_utf8_lossy(bad));
    }
}

#[test]
fn unknown_commands_and_arity_use_redis_shapes() {
    assert_eq!(
        parse(&["FOO", "a", "b"]),
        r#"Error("ERR unknown command 'FOO', with args beginning with: 'a' 'b' ")"#
    );
    assert_eq!(
        parse(&["foo"]),
        r#"Error("ERR unknown command 'foo', with args beginning with: ")"#
    );
    assert_eq!(
        parse(&["GET"]),
        r#"Error("ERR wrong number of arguments for 'get' command")"#
    );
    assert_eq!(
        parse(&["get", "a", "b"]),
        r#"Error("ERR wrong number of arguments for 'get' command")"#
    );
    assert_eq!(
        parse(&["MSET", "a"]),
        r#"Error("ERR wrong number of arguments for 'mset' command")"#
    );
    assert_eq!(
        parse(&["MSET", "a", "1", "b"]),
        r#"Error("ERR wrong number of arguments for 'mset' command")"#
    );
    assert_eq!(
        parse(&["CLIENT", "FOO"]),
        r#"Error("ERR unknown subcommand 'FOO'. Try CLIENT HELP.")"#
    );
}

#[test]
fn set_options() {
    assert!(
        parse(&["SET", "k", "v", "EX", "10", "NX", "GET"])
            .contains("expire: Some(Seconds(10)), cond: IfAbsent, keep_ttl: false, get: true")
    );
    assert!(parse(&["set", "k", "v", "pxat", "99"]).contains("UnixMillis(99)"));
    assert!(parse(&["SET", "k", "v", "KEEPTTL", "XX"]).contains("cond: IfPresent, keep_ttl: true"));
    for bad in [
        &["SET", "k", "v", "NX", "XX"][..],
        &["SET", "k", "v", "EX", "1", "PX", "1"],
        &["SET", "k", "v", "EX", "1", "KEEPTTL"],
        &["SET", "k", "v", "EX"],
        &["SET", "k", "v", "BOGUS"],
    ] {
        assert_eq!(parse(bad), r#"Error("ERR syntax error")"#, "{bad:?}");
    }
    assert_eq!(
        parse(&["SET", "k", "v", "EX", "x"]),
        r#"Error("ERR value is not an integer or out of range")"#
    );
    assert_eq!(
        parse(&["SET", "k", "v", "EX", "0"]),
        r#"Error("ERR invalid expire time in 'set' command")"#
    );
    assert_eq!(
        parse(&["SETEX", "k", "-1", "v"]),
        r#"Error("ERR invalid expire time in 'setex' command")"#
    );
    assert_eq!(
        parse(&["GETEX", "k", "PERSIST", "EX", "1"]),
        r#"Error("ERR syntax error")"#
    );
}

#[test]
fn expire_options() {
    assert!(
        parse(&["EXPIRE", "k", "10", "gt", "XX"])
            .contains("nx: false, xx: true, gt: true, lt: false")
    );
    assert_eq!(
        parse(&["EXPIRE", "k", "10", "NX", "XX"]),
        r#"Error("ERR NX and XX, GT or LT options at the same time are not compatible")"#
    );
    assert_eq!(
        parse(&["PEXPIRE", "k", "10", "GT", "LT"]),
        r#"Error("ERR GT and LT options at the same time are not compatible")"#
    );
    assert_eq!(
        parse(&["EXPIRE", "k", "10", "ZZ"]),
        r#"Error("ERR Unsupported option ZZ")"#
    );
    assert_eq!(
        parse(&["EXPIRE", "k", "ten"]),
        r#"Error("ERR value is not an integer or out of range")"#
    );
}

#[test]
fn scan_and_misc() {
    assert!(
        parse(&["SCAN", "0", "MATCH", "a*", "COUNT", "5"])
            .contains("cursor: 0, pattern: Some([97, 42]), count: 5")
    );
    assert_eq!(parse(&["SCAN", "x"]), r#"Error("ERR invalid cursor")"#);
    assert_eq!(
        parse(&["SCAN", "0", "COUNT", "0"]),
        r#"Error("ERR syntax error")"#
    );
    assert_eq!(
        parse(&["DECRBY", "k", "-9223372036854775808"]),
        r#"Error("ERR decrement would overflow")"#
    );
    assert_eq!(
        parse(&["SELECT", "x"]),
        r#"Error("ERR value is not an integer or out of range")"#
    );
    assert_eq!(
        parse(&["HELLO", "three"]),
        r#"Error("ERR Protocol version is not an integer or out of range")"#
    );
}

#[test]
fn key_length_limit_applies_to_every_key() {
    let l = Limits {
        max_key: 4,
        ..Limits::default()
    };
    let buf = frame(&[b"MGET", b"ok", b"toolong"]);
    let mut d = RespDecoder::default();
    let Decoded::Frame {
        value: Request::Error(e),
        ..
    } = d.decode(&buf, &l)
    else {
        panic!()
    };
    assert_eq!(e, "ERR key too long (max 4 bytes)");
}

#[test]
fn encodings_for_both_versions() {
    let enc = |r, v3| {
        let mut out = Vec::new();
        encode(r, v3, &mut out);
        String::from_utf8(out).unwrap()
    };
    assert_eq!(enc(Response::Stored, false), "+OK\r\n");
    assert_eq!(enc(Response::Bulk(b"hi"), false), "$2\r\nhi\r\n");
    assert_eq!(enc(Response::Nil, false), "$-1\r\n");
    assert_eq!(enc(Response::Nil, true), "_\r\n");
    assert_eq!(enc(Response::Map(2), false), "*4\r\n");
    assert_eq!(enc(Response::Map(2), true), "%2\r\n");
    assert_eq!(enc(Response::Double(1.5), true), ",1.5\r\n");
    assert_eq!(enc(Response::Double(1.5), false), "$3\r\n1.5\r\n");
    assert_eq!(enc(Response::Verbatim(b"a"), true), "=5\r\ntxt:a\r\n");
    assert_eq!(enc(Response::Error("ERR x\r\ny"), false), "-ERR x  y\r\n");
    assert_eq!(
        enc(Response::NoAuth, false),
        "-NOAUTH Authentication required.\r\n"
    );
    assert_eq!(enc(Response::Int(-3), false), ":-3\r\n");
}

#[test]
fn command_table_is_consistent() {
    let mut names: Vec<&str> = COMMANDS.iter().map(|c| c.name).collect();
    assert!(
        names.is_sorted(),
        "COMMANDS must stay sorted for binary search"
    );
    names.sort();
    let n = names.len();
    names.dedup();
    assert_eq!(names.len(), n, "command names are unique");
    for c in COMMANDS {
        assert_eq!(c.name, c.name.to_ascii_lowercase());
        assert!(c.name.len() <= 24);
        assert!(std::ptr::eq(command_spec(c.name.as_bytes()).unwrap(), c));
    }
}

#[test]
fn every_try_help_hint_names_a_help_that_parses() {
    // Any command that answers an unknown subcommand with "Try X HELP." must accept X HELP.
    let mut hints = 0;
    for c in COMMANDS {
        let reply = parse(&[c.name, "no-such-subcommand"]);
        let Some(at) = reply.find("Try ") else {
            continue;
        };
        let hint = &reply[at + 4..];
        let hint = &hint[..hint.find('.').unwrap()];
        let words: Vec<&str> = hint.split(' ').collect();
        assert_eq!(words.len(), 2, "{reply}");
        assert_eq!(words[1], "HELP", "{reply}");
        let help = parse(&words);
        assert!(!help.starts_with("Error"), "{hint} -> {help}");
        assert!(!help.starts_with("invalid"), "{hint} -> {help}");
        hints += 1;
    }
    assert_eq!(
        hints, 5,
        "CLIENT, COMMAND, CONFIG, FUNCTION and OBJECT have subcommands"
    );
}

#[test]
fn client_list_names_every_command() {
    // CLIENT LIST's cmd= for a typical call of every command, as Redis names it; aliases
    // that share a request show the request's name (as DECR shows incrby).
    let calls: &[(&[&str], &str)] = &[
        (&["APPEND", "k", "v"], "append"),
        (&["AUTH", "pw"], "auth"),
        (&["BITCOUNT", "k"], "bitcount"),
        (&["BITPOS", "k", "1"], "bitpos"),
        (&["CLIENT", "LIST"], "client|list"),
        (&["COMMAND", "DOCS"], "command|docs"),
        (&["CONFIG", "GET", "port"], "config|get"),
        (&["COPY", "a", "b"], "copy"),
        (&["DBSIZE"], "dbsize"),
        (&["DECR", "k"], "incrby"),
        (&["DECRBY", "k", "2"], "incrby"),
        (&["DEL", "k"], "del"),
        (&["ECHO", "m"], "echo"),
        (&["EXISTS", "k"], "exists"),
        (&["EXPIRE", "k", "1"], "expire"),
        (&["EXPIREAT", "k", "1"], "expireat"),
        (&["EXPIRETIME", "k"], "expiretime"),
        (&["FLUSHALL"], "flushall"),
        (&["FLUSHDB"], "flushall"),
        (&["FUNCTION", "FLUSH"], "function|flush"),
        (&["FUNCTION", "HELP"], "function|help"),
        (&["GET", "k"], "get"),
        (&["GETBIT", "k", "1"], "getbit"),
        (&["GETDEL", "k"], "getdel"),
        (&["GETEX", "k"], "getex"),
        (&["GETRANGE", "k", "0", "1"], "getrange"),
        (&["GETSET", "k", "v"], "set"),
        (&["HELLO"], "hello"),
        (&["INCR", "k"], "incrby"),
        (&["INCRBY", "k", "2"], "incrby"),
        (&["INCRBYFLOAT", "k", "1.5"], "incrbyfloat"),
        (&["INFO"], "info"),
        (&["KEYS", "*"], "keys"),
        (&["LCS", "a", "b"], "lcs"),
        (&["MGET", "k"], "mget"),
        (&["MSET", "k", "v"], "mset"),
        (&["MSETNX", "k", "v"], "msetnx"),
        (&["OBJECT", "ENCODING", "k"], "object|encoding"),
        (&["OBJECT", "REFCOUNT", "k"], "object|refcount"),
        (&["OBJECT", "IDLETIME", "k"], "object|idletime"),
        (&["OBJECT", "FREQ", "k"], "object|freq"),
        (&["OBJECT", "HELP"], "object|help"),
        (&["PERSIST", "k"], "persist"),
        (&["PEXPIRE", "k", "1"], "pexpire"),
        (&["PEXPIREAT", "k", "1"], "pexpireat"),
        (&["PEXPIRETIME", "k"], "pexpiretime"),
        (&["PING"], "ping"),
        (&["PSETEX", "k", "1", "v"], "setex"),
        (&["PTTL", "k"], "pttl"),
        (&["QUIT"], "quit"),
        (&["RANDOMKEY"], "randomkey"),
        (&["RENAME", "a", "b"], "rename"),
        (&["RENAMENX", "a", "b"], "renamenx"),
        (&["SCAN", "0"], "scan"),
        (&["SELECT", "0"], "select"),
        (&["SET", "k", "v"], "set"),
        (&["SETBIT", "k", "1", "1"], "setbit"),
        (&["SETEX", "k", "1", "v"], "setex"),
        (&["SETNX", "k", "v"], "setnx"),
        (&["SETRANGE", "k", "1", "v"], "setrange"),
        (&["STRLEN", "k"], "strlen"),
        (&["SUBSTR", "k", "0", "1"], "getrange"),
        (&["TIME"], "time"),
        (&["TOUCH", "k"], "touch"),
        (&["TTL", "k"], "ttl"),
        (&["TYPE", "k"], "type"),
        (&["UNLINK", "k"], "del"),
        (&["SAVE"], "save"),
        (&["BGSAVE"], "bgsave"),
        (&["LASTSAVE"], "lastsave"),
    ];
    for c in COMMANDS {
        assert!(
            calls.iter().any(|(w, _)| w[0].eq_ignore_ascii_case(c.name)),
            "{} has no CLIENT LIST name check",
            c.name
        );
    }
    for (words, name) in calls {
        let words: Vec<&[u8]> = words.iter().map(|w| w.as_bytes()).collect();
        let buf = frame(&words);
        let mut d = RespDecoder::default();
        let Decoded::Frame { value, .. } = d.decode(&buf, &limits()) else {
            panic!("{words:?} did not decode");
        };
        let shown = crate::protocol::REQUEST_NAMES[value.name_index(false) as usize];
        assert_eq!(shown, *name, "{value:?}");
    }
}

#[test]
fn client_list_and_kill_follow_redis() {
    assert_eq!(
        parse(&["CLIENT", "LIST"]),
        "Client(List { ids: [], normal: true })"
    );
    assert_eq!(
        parse(&["client", "list", "type", "pubsub", "id", "3", "4"]),
        "Client(List { ids: [3, 4], normal: false })"
    );
    assert_eq!(
        parse(&["CLIENT", "LIST", "ID", "x"]),
        r#"Error("ERR Invalid client ID")"#
    );
    assert_eq!(
        parse(&["CLIENT", "LIST", "TYPE", "foo"]),
        r#"Error("ERR Unknown client type 'foo'")"#
    );
    assert_eq!(
        parse(&["CLIENT", "LIST", "foo"]),
        r#"Error("ERR syntax error")"#
    );
    let old = parse(&["CLIENT", "KILL", "1.2.3.4:5"]);
    assert!(
        old.contains("old_form: true") && old.contains("skip_me: false"),
        "{old}"
    );
    let new = parse(&["CLIENT", "KILL", "ID", "7", "SKIPME", "no"]);
    assert!(
        new.contains("old_form: false, id: Some(7)") && new.contains("skip_me: false"),
        "{new}"
    );
    assert!(parse(&["CLIENT", "KILL", "ADDR", "1.2.3.4:5"]).contains("skip_me: true"));
    for (args, error) in [
        (&["ID", "0"][..], "ERR client-id should be greater than 0"),
        (&["ID", "x"], "ERR client-id should be greater than 0"),
        (&["FOO", "bar"], "ERR syntax error"),
        (&["SKIPME", "maybe"], "ERR syntax error"),
        (&["ID", "1", "ADDR"], "ERR syntax error"),
        (&["TYPE", "x"], "ERR Unknown client type 'x'"),
    ] {
        let mut words = vec!["CLIENT", "KILL"];
        words.extend_from_slice(args);
        assert_eq!(parse(&words), format!("Error({error:?})"), "{args:?}");
    }
    assert_eq!(
        parse(&["CLIENT", "KILL"]),
        r#"Error("ERR wrong number of arguments for 'client|kill' command")"#
    );
    assert_eq!(parse(&["CLIENT", "HELP"]), "Client(Help)");
    assert_eq!(
        parse(&["CLIENT", "HELP", "x"]),
        r#"Error("ERR wrong number of arguments for 'client|help' command")"#
    );
}

/// Feeds `stream` in pieces of `step` bytes the way the connection does (dropping what each
/// result consumed) and describes every result but `Incomplete`.
fn feed(stream: &[u8], step: usize, l: &Limits) -> Vec<String> {
    let mut d = RespDecoder::default();
    let mut out = Vec::new();
    let (mut start, mut end) = (0, 0);
    while start < stream.len() {
        end = (end + step).min(stream.len());
        loop {
            if start == end {
                break;
            }
            match d.decode(&stream[start..end], l) {
                Decoded::Incomplete { .. } => break,
                Decoded::Skip { consumed } => {
                    out.push("skip".to_string());
                    start += consumed;
                }
                Decoded::Frame { value, consumed } => {
                    out.push(format!("{value:?}"));
                    start += consumed;
                }
                Decoded::Invalid {
                    error,
                    consumed,
                    fatal,
                } => {
                    out.push(format!("invalid({fatal}): {}", error.0));
                    if fatal {
                        return out;
                    }
                    start += consumed;
                }
            }
        }
        if end == stream.len() && start < end {
            break;
        }
    }
    out
}

#[test]
fn oversized_bulks_are_skipped_and_the_connection_goes_on() {
    let l = Limits {
        max_value: 100,
        max_key: 10,
        ..Limits::default()
    };
    let mut stream = frame(&[b"SET", b"k", &[b'v'; 1000], b"EX", b"10"]);
    stream.extend(frame(&[b"PING"]));
    for step in [1, 7, 64, stream.len()] {
        let events = feed(&stream, step, &l);
        let (skips, rest): (Vec<&String>, Vec<&String>) = events.iter().partition(|e| *e == "skip");
        assert_eq!(
            rest,
            [
                "invalid(false): ERR value too long (max 100 bytes)",
                "Ping(None)"
            ],
            "step {step}"
        );
        // The skipped bytes are dropped as they arrive, not buffered until the end.
        if step < 100 {
            assert!(skips.len() > 5, "step {step}: {skips:?}");
        }
    }
}

#[test]
fn requests_over_the_request_limit_are_skipped_too() {
    let l = Limits {
        max_value: 100,
        max_key: 10,
        max_request: 150,
        ..Limits::default()
    };
    let mut stream = frame(&[b"MSET", b"a", &[b'1'; 90], b"b", &[b'2'; 90]]);
    stream.extend(frame(&[b"GET", b"a"]));
    assert_eq!(
        feed(&stream, stream.len(), &l),
        [
            "invalid(false): ERR request too large (max 150 bytes)",
            "Get([97])"
        ]
    );
}

#[test]
fn skipping_is_bounded_and_checks_the_framing() {
    let l = Limits {
        max_value: 100,
        max_key: 10,
        max_discard: 1000,
        ..Limits::default()
    };
    // A bulk past the skip bound cannot be trusted: close.
    let events = feed(b"*2\r\n$3\r\nGET\r\n$5000\r\n", 4, &l);
    assert_eq!(
        events,
        ["invalid(true): ERR Protocol error: invalid bulk length"]
    );
    // So is a request whose later bulks take it past the bound.
    let mut stream = b"*3\r\n$3\r\nSET\r\n$500\r\n".to_vec();
    stream.extend([b'x'; 500]);
    stream.extend(b"\r\n$600\r\n");
    let events = feed(&stream, 3, &l);
    assert_eq!(
        events.last().unwrap(),
        "invalid(true): ERR Protocol error: request too large"
    );
    // A skipped bulk must still end with CRLF.
    let mut stream = b"*2\r\n$3\r\nGET\r\n$200\r\n".to_vec();
    stream.extend([b'x'; 202]);
    let events = feed(&stream, 50, &l);
    assert_eq!(
        events.last().unwrap(),
        "invalid(true): ERR Protocol error: bulk string not terminated by CRLF"
    );
}

#[test]
fn new_string_and_key_commands_parse_with_redis_errors() {
    assert_eq!(
        parse(&["GETRANGE", "k", "0", "-1"]),
        "GetRange([107], 0, -1)"
    );
    assert_eq!(parse(&["substr", "k", "1", "2"]), "GetRange([107], 1, 2)");
    assert_eq!(
        parse(&["GETRANGE", "k", "x", "1"]),
        r#"Error("ERR value is not an integer or out of range")"#
    );
    assert_eq!(
        parse(&["SETRANGE", "k", "3", "v"]),
        "SetRange([107], 3, [118])"
    );
    assert_eq!(
        parse(&["SETRANGE", "k", "-1", "v"]),
        r#"Error("ERR offset is out of range")"#
    );
    assert_eq!(parse(&["SETBIT", "k", "7", "1"]), "SetBit([107], 7, true)");
    for (off, bit) in [("-1", "1"), ("x", "1"), ("8589934592", "1")] {
        assert_eq!(
            parse(&["SETBIT", "k", off, bit]),
            r#"Error("ERR bit offset is not an integer or out of range")"#
        );
    }
    for bit in ["2", "-1", "x"] {
        assert_eq!(
            parse(&["SETBIT", "k", "0", bit]),
            r#"Error("ERR bit is not an integer or out of range")"#
        );
    }
    assert_eq!(parse(&["BITCOUNT", "k"]), "BitCount([107], Whole)");
    assert_eq!(
        parse(&["BITCOUNT", "k", "1", "2", "BIT"]),
        "BitCount([107], Span { start: 1, end: Some(2), bits: true })"
    );
    // An empty negative range answers 0 before the unit is looked at, as in Redis.
    assert_eq!(
        parse(&["BITCOUNT", "k", "-1", "-2", "FOO"]),
        "BitCount([107], Span { start: -1, end: Some(-2), bits: false })"
    );
    assert_eq!(
        parse(&["BITCOUNT", "k", "0", "1", "FOO"]),
        r#"BitCount([107], Invalid("ERR syntax error"))"#
    );
    assert_eq!(
        parse(&["BITCOUNT", "k", "0"]),
        r#"BitCount([107], Invalid("ERR syntax error"))"#
    );
    assert_eq!(
        parse(&["BITPOS", "k", "2"]),
        r#"Error("ERR The bit argument must be 1 or 0.")"#
    );
    assert_eq!(
        parse(&["BITPOS", "k", "1", "2", "x", "FOO"]),
        r#"BitPos([107], true, Invalid("ERR syntax error"))"#
    );
    assert_eq!(
        parse(&["LCS", "a", "b", "LEN", "IDX"]),
        r#"Error("ERR If you want both the length and indexes, please just use IDX.")"#
    );
    assert_eq!(
        parse(&["LCS", "a", "b", "IDX", "MINMATCHLEN", "-4", "WITHMATCHLEN"]),
        "Lcs([97], [98], Idx { min_len: 0, with_len: true })"
    );
    assert_eq!(
        parse(&["COPY", "a", "b", "DB", "0", "REPLACE"]),
        "Copy([97], [98], true)"
    );
    assert_eq!(
        parse(&["COPY", "a", "b", "DB", "3"]),
        r#"Error("ERR DB index is out of range")"#
    );
    assert_eq!(
        parse(&["COPY", "a", "a"]),
        r#"Error("ERR source and destination objects are the same")"#
    );
    assert_eq!(parse(&["RENAMENX", "a", "b"]), "Rename([97], [98], true)");
    assert_eq!(parse(&["PEXPIRETIME", "a"]), "ExpireTime([97], true)");
    assert_eq!(
        parse(&["OBJECT", "encoding", "a"]),
        "Object(Encoding([97]))"
    );
    assert_eq!(
        parse(&["OBJECT", "ENCODING"]),
        r#"Error("ERR wrong number of arguments for 'object|encoding' command")"#
    );
    assert_eq!(
        parse(&["OBJECT", "foo"]),
        r#"Error("ERR unknown subcommand 'foo'. Try OBJECT HELP.")"#
    );
    assert_eq!(parse(&["FUNCTION", "FLUSH", "async"]), "Function(Flush)");
    assert_eq!(
        parse(&["FUNCTION", "FLUSH", "later"]),
        r#"Error("ERR FUNCTION FLUSH only supports SYNC|ASYNC option")"#
    );
}

/// `decode_hot` takes only what `decode` would decode to the same plain GET or SET, with the
/// same length, and leaves everything else to it; cut anywhere, with other bytes after the cut.
#[test]
fn hot_frames_mean_what_decode_makes_of_them() {
    let limits = Limits {
        max_key: 8,
        max_value: 16,
        ..Limits::default()
    };
    let mut inputs: Vec<Vec<u8>> = [
        &[&b"GET"[..], b"k"][..],
        &[b"get", b"key12345"],
        &[b"gEt", b""],
        &[b"GET", b"key123456"], // key over the limit
        &[b"SET", b"k", b"v"],
        &[b"set", b"", b""],
        &[b"Set", b"key", b"0123456789abcdef"],
        &[b"SET", b"key", b"0123456789abcdefg"], // value over the limit
        &[b"SET", b"k", b"v", b"EX", b"10"],
        &[b"GET", b"k", b"extra"],
        &[b"SET", b"k"],
        &[b"DEL", b"k"],
        &[b"GEX", b"k"],
        &[b"SETX", b"k", b"v"],
    ]
    .iter()
    .map(|w| frame(w))
    .collect();
    inputs.push(b"*2\r\n$3\r\nGET\r\n$01\r\nk\r\n".to_vec()); // leading zero
    inputs.push(b"*2\r\n$3\r\nGET\r\n$1\r\nkX\n".to_vec()); // no CRLF after the key
    inputs.push(b"*2\r\n$3\r\nGET\r\n$-1\r\n".to_vec());
    inputs.push(b"*2\r\n$3\r\nG\x00T\r\n$1\r\nk\r\n".to_vec());
    inputs.push(b"GET k\r\n".to_vec()); // inline
    let mut hot = Vec::new();
    for input in &inputs {
        for cut in 0..=input.len() {
            let mut buf = input[..cut].to_vec();
            buf.extend_from_slice(b"*1\r\n$4\r\nPING\r\n"); // what follows is not taken
            let d = RespDecoder::default();
            let Some((h, consumed)) = d.decode_hot(&buf, &limits) else {
                continue;
            };
            if cut == input.len() {
                hot.push(String::from_utf8_lossy(input).into_owned());
            }
            let mut d = RespDecoder::default();
            let Decoded::Frame { value, consumed: c } = d.decode(&buf, &limits) else {
                panic!("decode does not make a frame of {input:?}");
            };
            assert_eq!(c, consumed, "{input:?}");
            match (h, value) {
                (Hot::Get(k), Request::Get(key)) => assert_eq!(k, key),
                (
                    Hot::Set(k, v),
                    Request::Set {
                        kind: SetKind::Set,
                        key,
                        value,
                        expire: None,
                        cond: SetCond::Always,
                        keep_ttl: false,
                        get: false,
                    },
                ) => assert_eq!((k, v), (key, value)),
                (h, r) => panic!("{input:?}: hot {h:?}, decoded {r:?}"),
            }
        }
    }
    let want: Vec<String> = inputs[..7]
        .iter()
        .filter(|i| !i.windows(9).any(|w| w == b"key123456"))
        .map(|i| String::from_utf8_lossy(i).into_owned())
        .collect();
    assert_eq!(want.len(), 6);
    assert_eq!(
        hot, want,
        "the plain GETs and SETs within the limits are hot"
    );

    // Never in the middle of a request the decoder has begun.
    let mut d = RespDecoder::default();
    let whole = frame(&[b"GET", b"k"]);
    assert!(matches!(
        d.decode(&whole[..6], &limits),
        Decoded::Incomplete { .. }
    ));
    assert!(d.decode_hot(&whole, &limits).is_none());
}
