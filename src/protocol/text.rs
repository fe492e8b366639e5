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
                    error: ProtocolError::new("line too long"),
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
    let upper = display_name(name);
    let arity = |ok: bool| -> Result<(), ProtocolError> {
        if ok {
            Ok(())
        } else {
            Err(ProtocolError::new(format!(
                "wrong number of arguments for '{upper}'"
            )))
        }
    };
    let request = if name.eq_ignore_ascii_case(b"GET") {
        arity(argc == 1)?;
        Request::Get(check_token(args[0], "key")?)
    } else if name.eq_ignore_ascii_case(b"PUT") {
        arity(argc == 2 || argc == 3)?;
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
        arity(argc == 1)?;
        Request::Delete(check_token(args[0], "key")?)
    } else if name.eq_ignore_ascii_case(b"EXISTS") {
        arity(argc == 1)?;
        Request::Exists(check_token(args[0], "key")?)
    } else if name.eq_ignore_ascii_case(b"QUIT") {
        arity(argc == 0)?;
        Request::Quit
    } else if name.eq_ignore_ascii_case(b"PING") {
        arity(argc == 0)?;
        Request::Ping(None)
    } else if name.eq_ignore_ascii_case(b"STATS") {
        arity(argc == 0)?;
        Request::Stats
    } else if name.eq_ignore_ascii_case(b"AUTH") {
        arity(argc == 1)?;
        Request::Auth(None, args[0])
    } else if name.eq_ignore_ascii_case(b"SAVE") {
        arity(argc == 0)?;
        Request::Save
    } else {
        return Err(ProtocolError::new(format!(
            "unknown command '{}'",
            display_name(name)
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
            "{what} too long (max {MAX_TOKEN} bytes)"
        )));
    }
    if !all_printable(t) {
        return Err(ProtocolError::new(format!(
            "invalid {what} (printable ASCII only)"
        )));
    }
    Ok(t)
}

fn parse_ttl(t: &[u8]) -> Result<u64, ProtocolError> {
    let invalid = || ProtocolError::new("invalid ttl");
    if t.is_empty() || t.len() > 10 || !t.iter().all(u8::is_ascii_digit) {
        return Err(invalid());
    }
    let n = t.iter().fold(0u64, |n, &d| n * 10 + (d - b'0') as u64);
    if n > MAX_TTL {
        return Err(invalid());
    }
    Ok(n)
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
        assert_eq!(err("SAVE now"), "wrong number of arguments for 'SAVE'");
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
        assert_eq!(err("GET a\x0bb"), "invalid key (printable ASCII only)");
    }

    #[test]
    fn arity_errors_name_the_command() {
        assert_eq!(err("GET"), "wrong number of arguments for 'GET'");
        assert_eq!(err("get a b"), "wrong number of arguments for 'GET'");
        assert_eq!(err("PUT a"), "wrong number of arguments for 'PUT'");
        assert_eq!(err("PUT a b 1 2"), "wrong number of arguments for 'PUT'");
        assert_eq!(err("DELETE"), "wrong number of arguments for 'DELETE'");
        assert_eq!(err("EXISTS a b"), "wrong number of arguments for 'EXISTS'");
        assert_eq!(err("QUIT now"), "wrong number of arguments for 'QUIT'");
        assert_eq!(err("foo bar"), "unknown command 'FOO'");
        assert_eq!(err("fo\x01o"), "unknown command 'FO?O'");
        let long = "x".repeat(1000);
        assert_eq!(err(&long).len(), "unknown command ''".len() + 64 + 3);
    }

    #[test]
    fn key_value_and_ttl_limits() {
        let k256 = "k".repeat(256);
        assert!(parse(&format!("PUT {k256} {k256}")).is_ok());
        assert_eq!(
            err(&format!("PUT {k256}x v")),
            "key too long (max 256 bytes)"
        );
        assert_eq!(
            err(&format!("PUT k {k256}x")),
            "value too long (max 256 bytes)"
        );
        assert_eq!(err(&format!("GET {k256}x")), "key too long (max 256 bytes)");
        assert_eq!(err("PUT k v\x7f"), "invalid value (printable ASCII only)");
        assert_eq!(err("PUT k\u{e9} v"), "invalid key (printable ASCII only)");
        for bad in [
            "-1",
            "+5",
            "1.5",
            "abc",
            "2147483648",
            "99999999999",
            "1e3",
            "0x10",
        ] {
            assert_eq!(err(&format!("PUT k v {bad}")), "invalid ttl", "ttl {bad}");
        }
        match parse("PUT k v 2147483647").unwrap() {
            Request::Set { expire, .. } => {
                assert_eq!(expire, Some(ExpireSpec::Seconds(2147483647)))
            }
            r => panic!("{r:?}"),
        }
        assert!(parse("PUT k v 0000000005").is_ok());
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
            ("invalid value (printable ASCII only)", false, 10)
        );
    }

    #[test]
    fn overlong_lines_are_fatal_at_the_limit() {
        let mut d = LineDecoder::default();
        let line = vec![b'a'; 10];
        assert!(matches!(d.decode(&line, 10), Decoded::Incomplete { .. }));
        let line = vec![b'a'; 11];
        assert!(matches!(
            d.decode(&line, 10),
            Decoded::Invalid { fatal: true, .. }
        ));
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
