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
    assert_eq!(hints, 3, "CLIENT, COMMAND and CONFIG have subcommands");
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
