//! The KV-Cache line protocol: `PUT key value [ttl]`, `GET`, `DELETE`, `EXISTS`, `QUIT`, plus
//! `PING`, `STATS`, `AUTH` and `SAVE`. One request per `\n`-terminated line, one reply line each.
//!
//! Rules: a trailing `\r` is stripped; tokens are separated by runs of spaces or tabs; command
//! names are case-insensitive; keys and values are 1-256 bytes of printable ASCII (0x21-0x7E);
//! a TTL is decimal digits, 0..=2147483647 seconds, 0 meaning none. A bad line gets one
//! `ERROR <reason>` and the connection goes on; only a line over the length limit closes it.

use super::{Decoded, ExpireSpec, ProtocolError, Request, Response, SetCond, SetKind};

/// Longest key or value the line protocol accepts.
pub const MAX_TOKEN: usize = 256;
/// Largest TTL in seconds.
pub const MAX_TTL: u64 = 2_147_483_647;

/// Incremental line splitter: remembers how far it has looked for a newline, so a long line
/// arriving in many small reads is scanned once, not once per read.
#[derive(Debug, Default, Clone)]
pub struct LineDecoder {
    scanned: usize,
}

impl LineDecoder {
    /// Decodes the first line of `buf` (which starts at a request boundary).
    pub fn decode<'a>(&mut self, buf: &'a [u8], max_line: usize) -> Decoded<Request<'a>> {
        let limit = buf.len().min(max_line.saturating_add(1));
        let from = self.scanned.min(limit);
        let Some(pos) = memchr::memchr(b'\n', &buf[from..limit]) else {
            if buf.len() > max_line {
                self.scanned = 0;
                return Decoded::Invalid {
                    error: ProtocolError::new(format!("line too long (max {max_line} bytes)")),
                    consumed: buf.len(),
                    fatal: true,
                };
            }
            self.scanned = limit;
            return Decoded::Incomplete {
                need: Some(buf.len() + 1),
            };
        };
        self.scanned = 0;
        let end = from + pos;
        let consumed = end + 1;
        let line = &buf[..end];
        let line = line.strip_suffix(b"\r").unwrap_or(line);
        match parse_line(line) {
            Ok(value) => Decoded::Frame { value, consumed },
            Err(error) => Decoded::Invalid {
                error,
                consumed,
                fatal: false,
            },
        }
    }
}

fn is_sep(b: u8) -> bool {
    b == b' ' || b == b'\t'
}

/// The line protocol's commands with their syntax and a one-line summary, in the order
/// `kvcache-cli help` lists them; arity errors quote the syntax as the rule broken.
pub const COMMANDS: &[(&str, &str, &str)] = &[
    (
        "PUT",
        "PUT <key> <value> [ttl]",
        "store a value; ttl in seconds, 0 or none = no expiry",
    ),
    ("GET", "GET <key>", "read a value"),
    ("DELETE", "DELETE <key>", "remove a key"),
    (
        "EXISTS",
        "EXISTS <key>",
        "OK 1 if the key exists, OK 0 if not",
    ),
    ("PING", "PING", "check the server answers (OK PONG)"),
    (
        "STATS",
        "STATS",
        "keys, memory, hits, misses, evictions, connections, uptime, rss",
    ),
    (
        "AUTH",
        "AUTH <password>",
        "authenticate, when the server has a password",
    ),
    (
        "SAVE",
        "SAVE",
        "write the snapshot now (with --snapshot-file): OK saved <n> keys",
    ),
    ("QUIT", "QUIT", "close the connection (no reply)"),
];

/// The syntax of a command from [`COMMANDS`] by its upper-case name.
fn usage(name: &str) -> &'static str {
    COMMANDS
        .iter()
        .find(|(n, _, _)| *n == name)
        .map_or("", |(_, syntax, _)| syntax)
}

/// Parses one line (without its terminator).
pub fn parse_line(line: &[u8]) -> Result<Request<'_>, ProtocolError> {
    let mut tokens = line.split(|&b| is_sep(b)).filter(|t| !t.is_empty());
    let Some(name) = tokens.next() else {
        return Err(ProtocolError::new("empty command"));
    };
    // At most three arguments are ever valid; count the rest without keeping them.
    let mut args: [&[u8]; 3] = [&[]; 3];
    let mut argc = 0usize;
    for t in tokens {
        if argc < 3 {
            args[argc] = t;
        }
        argc += 1;
    }
    let arity = |name: &str, ok: bool| -> Result<(), ProtocolError> {
        if ok {
            return Ok(());
        }
        let syntax = usage(name);
        // Too many tokens after a key or value almost always means a space inside one.
        let hint = match name {
            "PUT" if argc > 3 => "; values cannot contain spaces",
            "GET" | "DELETE" | "EXISTS" if argc > 1 => "; keys cannot contain spaces",
            _ => "",
        };
        let got = match argc {
            1 => "1 argument".to_string(),
            n => format!("{n} arguments"),
        };
        Err(ProtocolError::new(format!(
            "wrong number of arguments for '{name}' (got {got}; usage: {syntax}{hint})"
        )))
    };
    let request = if name.eq_ignore_ascii_case(b"GET") {
        arity("GET", argc == 1)?;
        Request::Get(check_token(args[0], "key")?)
    } else if name.eq_ignore_ascii_case(b"PUT") {
        arity("PUT", argc == 2 || argc == 3)?;
        let key = check_token(args[0], "key")?;
        let value = check_token(args[1], "value")?;
        let ttl = if argc == 3 { parse_ttl(args[2])? } else { 0 };
        Request::Set {
            kind: SetKind::Set,
            key,
            value,
            expire: (ttl > 0).then_some(ExpireSpec::Seconds(ttl as i64)),
            cond: SetCond::Always,
            keep_ttl: false,
            get: false,
        }
    } else if name.eq_ignore_ascii_case(b"DELETE") {
        arity("DELETE", argc == 1)?;
        Request::Delete(check_token(args[0], "key")?)
    } else if name.eq_ignore_ascii_case(b"EXISTS") {
        arity("EXISTS", argc == 1)?;
        Request::Exists(check_token(args[0], "key")?)
    } else if name.eq_ignore_ascii_case(b"QUIT") {
        arity("QUIT", argc == 0)?;
        Request::Quit
    } else if name.eq_ignore_ascii_case(b"PING") {
        arity("PING", argc == 0)?;
        Request::Ping(None)
    } else if name.eq_ignore_ascii_case(b"STATS") {
        arity("STATS", argc == 0)?;
        Request::Stats
    } else if name.eq_ignore_ascii_case(b"AUTH") {
        arity("AUTH", argc == 1)?;
        Request::Auth(None, args[0])
    } else if name.eq_ignore_ascii_case(b"SAVE") {
        arity("SAVE", argc == 0)?;
        Request::Save
    } else {
        let known: Vec<&str> = COMMANDS.iter().map(|(n, _, _)| *n).collect();
        return Err(ProtocolError::new(format!(
            "unknown command '{}' (commands: {})",
            display_name(name),
            known.join(" ")
        )));
    };
    Ok(request)
}

/// The command name as echoed in errors: upper-cased, unprintable bytes shown as `?`, cut to
/// 64 characters so a hostile line cannot make the reply large.
fn display_name(name: &[u8]) -> String {
    let mut s: String = name
        .iter()
        .take(64)
        .map(|&b| {
            if (0x21..=0x7E).contains(&b) {
                b.to_ascii_uppercase() as char
            } else {
                '?'
            }
        })
        .collect();
    if name.len() > 64 {
        s.push_str("...");
    }
    s
}

/// A token as quoted in errors: unprintable bytes shown as `?`, cut to `max` characters.
fn display_token(t: &[u8], max: usize) -> String {
    let mut s: String = t
        .iter()
        .take(max)
        .map(|&b| if is_printable(b) { b as char } else { '?' })
        .collect();
    if t.len() > max {
        s.push_str("...");
    }
    s
}

/// Whether `b` is a byte the line protocol allows in keys and values.
#[inline]
pub fn is_printable(b: u8) -> bool {
    (0x21..=0x7E).contains(&b)
}

/// Whether every byte is printable ASCII; branch-free so it vectorizes.
#[inline]
fn all_printable(t: &[u8]) -> bool {
    t.iter()
        .fold(true, |ok, &b| ok & (b.wrapping_sub(0x21) < 0x5E))
}

/// Whether a stored value can be sent as a line-protocol value.
#[inline]
pub fn is_representable(v: &[u8]) -> bool {
    !v.is_empty() && v.len() <= MAX_TOKEN && all_printable(v)
}

fn check_token<'a>(t: &'a [u8], what: &str) -> Result<&'a [u8], ProtocolError> {
    if t.len() > MAX_TOKEN {
        return Err(ProtocolError::new(format!(
            "{what} too long '{}' ({} bytes; max {MAX_TOKEN} bytes)",
            display_token(t, 16),
            t.len()
        )));
    }
    if !all_printable(t) {
        let at = t.iter().position(|&b| !is_printable(b)).unwrap_or(0);
        return Err(ProtocolError::new(format!(
            "invalid {what} '{}' (printable ASCII only; byte 0x{:02x} at offset {at})",
            display_token(t, 64),
            t[at]
        )));
    }
    Ok(t)
}

fn parse_ttl(t: &[u8]) -> Result<u64, ProtocolError> {
    let rule = format!("0..{MAX_TTL} seconds");
    let invalid = |why: &str| {
        ProtocolError::new(format!(
            "invalid ttl '{}' ({rule}{why})",
            display_token(t, 32)
        ))
    };
    let digits = |s: &[u8]| !s.is_empty() && s.iter().all(u8::is_ascii_digit);
    if digits(t) {
        // Leading zeros are allowed, so the length alone says nothing about the size.
        let n = t.iter().try_fold(0u64, |n, &d| {
            n.checked_mul(10)?.checked_add((d - b'0') as u64)
        });
        return match n {
            Some(n) if n <= MAX_TTL => Ok(n),
            _ => Err(invalid("; too large")),
        };
    }
    if t.first() == Some(&b'-') && digits(&t[1..]) {
        return Err(invalid(
            "; negative TTLs are not allowed, 0 means no expiry",
        ));
    }
    if t.first()
        .is_some_and(|&b| b.is_ascii_digit() || b == b'+' || b == b'.')
    {
        return Err(invalid("; whole seconds in plain digits"));
    }
    // A word where the TTL goes is usually the second word of a value with a space in it.
    Err(invalid("; values cannot contain spaces"))
}

/// Appends the line-protocol rendering of a response.
pub fn encode(r: Response<'_>, out: &mut Vec<u8>) {
    match r {
        Response::Ok => out.extend_from_slice(b"OK\n"),
        Response::Stored => out.extend_from_slice(b"OK stored\n"),
        Response::Deleted => out.extend_from_slice(b"OK deleted\n"),
        Response::Authenticated => out.extend_from_slice(b"OK authenticated\n"),
        Response::Pong => out.extend_from_slice(b"OK PONG\n"),
        Response::Simple(s) => ok_line(out, s.as_bytes()),
        Response::Bulk(v) | Response::Verbatim(v) => {
            if is_representable(v) {
                ok_line(out, v);
            } else {
                out.extend_from_slice(b"ERROR value not representable in the text protocol\n");
            }
        }
        Response::Nil | Response::NilArray => out.extend_from_slice(b"ERROR key not found\n"),
        Response::Int(n) => {
            out.extend_from_slice(b"OK ");
            out.extend_from_slice(itoa::Buffer::new().format(n).as_bytes());
            out.push(b'\n');
        }
        Response::Double(d) => ok_line(out, format!("{d}").as_bytes()),
        // Aggregates never answer a line-protocol command.
        Response::Array(_) | Response::Map(_) | Response::Set(_) => {}
        Response::Error(msg) => {
            out.extend_from_slice(b"ERROR ");
            out.extend_from_slice(strip_code(msg).as_bytes());
            out.push(b'\n');
        }
        Response::NoAuth => out.extend_from_slice(b"ERROR authentication required\n"),
        Response::WrongPass => out.extend_from_slice(b"ERROR invalid password\n"),
    }
}

/// Drops a leading Redis error code (`ERR `, `NOPERM `...) from an error message.
fn strip_code(msg: &str) -> &str {
    match msg.split_once(' ') {
        Some((code, rest)) if !code.is_empty() && code.bytes().all(|b| b.is_ascii_uppercase()) => {
            rest
        }
        _ => msg,
    }
}

fn ok_line(out: &mut Vec<u8>, body: &[u8]) {
    out.reserve(body.len() + 4);
    out.extend_from_slice(b"OK ");
    out.extend_from_slice(body);
    out.push(b'\n');
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(line: &str) -> Result<Request<'_>, String> {
        parse_line(line.as_bytes()).map_err(|e| e.0)
    }

    fn err(line: &str) -> String {
        parse(line).unwrap_err()
    }

    #[test]
    fn put_get_delete_exists() {
        match parse("PUT foo bar").unwrap() {
            Request::Set {
                key, value, expire, ..
            } => {
                assert_eq!((key, value, expire), (&b"foo"[..], &b"bar"[..], None));
            }
            r => panic!("{r:?}"),
        }
        match parse("put foo bar 60").unwrap() {
            Request::Set { expire, .. } => assert_eq!(expire, Some(ExpireSpec::Seconds(60))),
            r => panic!("{r:?}"),
        }
        match parse("PUT foo bar 0").unwrap() {
            Request::Set { expire, .. } => assert_eq!(expire, None),
            r => panic!("{r:?}"),
        }
        assert!(matches!(parse("gEt foo"), Ok(Request::Get(b"foo"))));
        assert!(matches!(parse("DELETE Foo"), Ok(Request::Delete(b"Foo"))));
        assert!(matches!(parse("exists k"), Ok(Request::Exists(b"k"))));
        assert!(matches!(parse("QUIT"), Ok(Request::Quit)));
        assert!(matches!(parse("ping"), Ok(Request::Ping(None))));
        assert!(matches!(parse("STATS"), Ok(Request::Stats)));
        assert!(matches!(
            parse("AUTH secret"),
            Ok(Request::Auth(None, b"secret"))
        ));
        assert!(matches!(parse("save"), Ok(Request::Save)));
        assert_eq!(
            err("SAVE now"),
            "wrong number of arguments for 'SAVE' (got 1 argument; usage: SAVE)"
        );
    }

    #[test]
    fn whitespace_rules() {
        assert!(matches!(
            parse("  \tGET \t  foo\t "),
            Ok(Request::Get(b"foo"))
        ));
        assert_eq!(err(""), "empty command");
        assert_eq!(err(" \t "), "empty command");
        // A vertical tab is not a separator, so it makes the key invalid.
        assert_eq!(
            err("GET a\x0bb"),
            "invalid key 'a?b' (printable ASCII only; byte 0x0b at offset 1)"
        );
    }

    #[test]
    fn arity_errors_name_the_command_and_its_usage() {
        assert_eq!(
            err("GET"),
            "wrong number of arguments for 'GET' (got 0 arguments; usage: GET <key>)"
        );
        assert_eq!(
            err("get a b"),
            "wrong number of arguments for 'GET' (got 2 arguments; usage: GET <key>; keys cannot contain spaces)"
        );
        assert_eq!(
            err("PUT a"),
            "wrong number of arguments for 'PUT' (got 1 argument; usage: PUT <key> <value> [ttl])"
        );
        assert_eq!(
            err("PUT k one two three"),
            "wrong number of arguments for 'PUT' (got 4 arguments; usage: PUT <key> <value> [ttl]; values cannot contain spaces)"
        );
        assert_eq!(
            err("DELETE"),
            "wrong number of arguments for 'DELETE' (got 0 arguments; usage: DELETE <key>)"
        );
        assert_eq!(
            err("EXISTS a b"),
            "wrong number of arguments for 'EXISTS' (got 2 arguments; usage: EXISTS <key>; keys cannot contain spaces)"
        );
        assert_eq!(
            err("QUIT now"),
            "wrong number of arguments for 'QUIT' (got 1 argument; usage: QUIT)"
        );
        assert_eq!(
            err("auth"),
            "wrong number of arguments for 'AUTH' (got 0 arguments; usage: AUTH <password>)"
        );
        let known = "(commands: PUT GET DELETE EXISTS PING STATS AUTH SAVE QUIT)";
        assert_eq!(err("foo bar"), format!("unknown command 'FOO' {known}"));
        assert_eq!(err("fo\x01o"), format!("unknown command 'FO?O' {known}"));
        let long = "x".repeat(1000);
        assert_eq!(
            err(&long).len(),
            format!("unknown command '' {known}").len() + 64 + 3
        );
        // Every error keeps the seed's prefix, which clients match on.
        for line in ["GET", "PUT a", "PUT a b c d", "QUIT x", "PING x", "STATS x"] {
            assert!(
                err(line).starts_with("wrong number of arguments for '"),
                "{line}"
            );
        }
    }

    #[test]
    fn every_listed_command_is_known() {
        for (name, syntax, summary) in COMMANDS {
            assert!(syntax.starts_with(name) && !summary.is_empty());
            let e = parse(name).err().unwrap_or_default();
            assert!(!e.starts_with("unknown command"), "{name}: {e}");
        }
    }

    #[test]
    fn key_value_and_ttl_limits() {
        let k256 = "k".repeat(256);
        assert!(parse(&format!("PUT {k256} {k256}")).is_ok());
        assert_eq!(
            err(&format!("PUT {k256}x v")),
            "key too long 'kkkkkkkkkkkkkkkk...' (257 bytes; max 256 bytes)"
        );
        assert_eq!(
            err(&format!("PUT k {k256}x")),
            "value too long 'kkkkkkkkkkkkkkkk...' (257 bytes; max 256 bytes)"
        );
        assert!(err(&format!("GET {k256}x")).starts_with("key too long '"));
        assert_eq!(
            err("PUT k v\x7f"),
            "invalid value 'v?' (printable ASCII only; byte 0x7f at offset 1)"
        );
        assert_eq!(
            err("PUT k\u{e9} v"),
            "invalid key 'k??' (printable ASCII only; byte 0xc3 at offset 1)"
        );
        let rule = "0..2147483647 seconds";
        for (bad, why) in [
            ("two", "values cannot contain spaces"),
            ("abc", "values cannot contain spaces"),
            ("-1", "negative TTLs are not allowed, 0 means no expiry"),
            ("-0", "negative TTLs are not allowed, 0 means no expiry"),
            ("2147483648", "too large"),
            ("99999999999", "too large"),
            ("99999999999999999999999", "too large"),
            ("+5", "whole seconds in plain digits"),
            ("1.5", "whole seconds in plain digits"),
            ("1e3", "whole seconds in plain digits"),
            ("0x10", "whole seconds in plain digits"),
            ("-x", "values cannot contain spaces"),
        ] {
            assert_eq!(
                err(&format!("PUT k v {bad}")),
                format!("invalid ttl '{bad}' ({rule}; {why})"),
                "ttl {bad}"
            );
        }
        match parse("PUT k v 2147483647").unwrap() {
            Request::Set { expire, .. } => {
                assert_eq!(expire, Some(ExpireSpec::Seconds(2147483647)))
            }
            r => panic!("{r:?}"),
        }
        assert!(parse("PUT k v 0000000005").is_ok());
        assert!(parse("PUT k v 000000000000000000000000000005").is_ok());
    }

    #[test]
    fn decoder_frames_lines_and_strips_cr() {
        let mut d = LineDecoder::default();
        let buf = b"GET a\r\nGET b\nGET";
        let Decoded::Frame {
            value: Request::Get(k),
            consumed,
        } = d.decode(buf, 100)
        else {
            panic!()
        };
        assert_eq!((k, consumed), (&b"a"[..], 7));
        let Decoded::Frame {
            value: Request::Get(k),
            consumed,
        } = d.decode(&buf[7..], 100)
        else {
            panic!()
        };
        assert_eq!((k, consumed), (&b"b"[..], 6));
        assert!(matches!(
            d.decode(&buf[13..], 100),
            Decoded::Incomplete { .. }
        ));
        // A value with an embedded \r is invalid, not silently cut.
        let Decoded::Invalid {
            error,
            fatal,
            consumed,
        } = d.decode(b"PUT k v\rx\n", 100)
        else {
            panic!()
        };
        assert_eq!(
            (error.0.as_str(), fatal, consumed),
            (
                "invalid value 'v?x' (printable ASCII only; byte 0x0d at offset 1)",
                false,
                10
            )
        );
    }

    #[test]
    fn overlong_lines_are_fatal_at_the_limit() {
        let mut d = LineDecoder::default();
        let line = vec![b'a'; 10];
        assert!(matches!(d.decode(&line, 10), Decoded::Incomplete { .. }));
        let line = vec![b'a'; 11];
        let Decoded::Invalid { error, fatal, .. } = d.decode(&line, 10) else {
            panic!()
        };
        assert_eq!(
            (error.0.as_str(), fatal),
            ("line too long (max 10 bytes)", true)
        );
        // Exactly max_line bytes before the newline is fine.
        let mut ok = b"GET ".to_vec();
        ok.extend(std::iter::repeat_n(b'k', 6));
        ok.push(b'\n');
        assert!(matches!(d.decode(&ok, 10), Decoded::Frame { .. }));
        // The incremental scan finds a newline that arrives later.
        let mut d = LineDecoder::default();
        assert!(matches!(
            d.decode(b"GET aaaa", 100),
            Decoded::Incomplete { .. }
        ));
        assert!(matches!(
            d.decode(b"GET aaaa\n", 100),
            Decoded::Frame { .. }
        ));
    }

    #[test]
    fn encoding() {
        let enc = |r| {
            let mut out = Vec::new();
            encode(r, &mut out);
            String::from_utf8(out).unwrap()
        };
        assert_eq!(enc(Response::Stored), "OK stored\n");
        assert_eq!(enc(Response::Bulk(b"bar")), "OK bar\n");
        assert_eq!(
            enc(Response::Bulk(b"has space")),
            "ERROR value not representable in the text protocol\n"
        );
        assert_eq!(
            enc(Response::Bulk(b"")),
            "ERROR value not representable in the text protocol\n"
        );
        assert_eq!(
            enc(Response::Bulk(&[b'x'; 257])),
            "ERROR value not representable in the text protocol\n"
        );
        assert_eq!(enc(Response::Nil), "ERROR key not found\n");
        assert_eq!(enc(Response::Deleted), "OK deleted\n");
        assert_eq!(enc(Response::Int(1)), "OK 1\n");
        assert_eq!(enc(Response::Pong), "OK PONG\n");
        assert_eq!(
            enc(Response::Error("ERR invalid ttl")),
            "ERROR invalid ttl\n"
        );
        assert_eq!(enc(Response::NoAuth), "ERROR authentication required\n");
    }
}
