//! RESP2/RESP3 framing and the Redis command subset kvcache speaks.
//!
//! A request is a multibulk (`*N\r\n` then N bulk strings) or, as in Redis, an inline line of
//! space-separated words. Lengths are checked against [`Limits`] before anything is buffered:
//! a bad or oversized header gets `-ERR Protocol error: ...` and the connection closes, because
//! the stream cannot be trusted after a corrupt length. Command syntax errors (arity, options,
//! numbers) are ordinary replies and the connection goes on. Error texts follow Redis 7.

use super::{
    Args, BitRange, ClientCmd, CommandCmd, Decoded, ExpireCond, ExpireSpec, FunctionCmd, GetExMode,
    Hot, KillFilter, LcsMode, Limits, ObjectCmd, ProtocolError, Request, Response, SetCond,
    SetKind,
};

/// Incremental RESP request decoder. It keeps the spans of the arguments parsed so far, so a
/// large request arriving in pieces is parsed once, not once per read.
#[derive(Debug, Default)]
pub struct RespDecoder {
    spans: Vec<(u32, u32)>,
    /// Parse position inside the current request.
    pos: usize,
    /// Arguments still to read of the current multibulk; `None` before its header.
    remaining: Option<usize>,
    /// The previous call returned a request borrowing `spans`; reset before parsing on.
    done: bool,
    /// An over-limit request being skipped.
    discard: Option<Discard>,
}

/// What is left of an over-limit request the decoder is skipping (a bulk longer than the value
/// limit, or a request longer than the request limit). The stream stays in sync because every
/// bulk states its length up front, so the connection survives with an error reply instead of
/// being closed, as long as the whole request stays within [`Limits::max_discard`].
#[derive(Debug)]
struct Discard {
    /// Bytes of the current bulk still to skip.
    data: usize,
    /// Whether the CRLF closing the current bulk is still to come.
    crlf: bool,
    /// Bulks after the current one.
    args: usize,
    /// Bytes of the request skipped or parsed so far.
    total: usize,
    /// The error answered once the whole request has gone by.
    error: String,
}

fn protocol_error(msg: &str, consumed: usize) -> Decoded<Request<'static>> {
    Decoded::Invalid {
        error: ProtocolError::new(format!("ERR Protocol error: {msg}")),
        consumed,
        fatal: true,
    }
}

/// Longest `*N` or `$N` header line accepted (Redis allows 64 KiB; no valid length needs more).
const MAX_HEADER: usize = 32;

impl RespDecoder {
    /// Decodes the request at the front of `buf`.
    pub fn decode<'a>(&'a mut self, buf: &'a [u8], limits: &Limits) -> Decoded<Request<'a>> {
        if self.done {
            self.reset();
        }
        if buf.is_empty() {
            return Decoded::Incomplete { need: None };
        }
        if self.discard.is_some() {
            return self.skip(buf, 0, limits);
        }
        if self.remaining.is_none() && buf[0] != b'*' {
            return self.decode_inline(buf, limits);
        }
        if self.remaining.is_none() {
            if let Some(consumed) = fast_frame(buf, &mut self.spans, limits) {
                self.done = true;
                let args = Args::new(buf, &self.spans);
                let value = match hot_command(args, limits) {
                    Some(r) => r,
                    None => parse_command(args, limits),
                };
                return Decoded::Frame { value, consumed };
            }
            // The general path starts from the beginning with no spans.
            self.spans.clear();
        }
        match self.decode_multibulk(buf, limits) {
            Step::Done => {}
            Step::Empty(consumed) => {
                // `*0` / `*-1`: nothing to run and nothing to answer, as in Redis.
                self.reset();
                return Decoded::Skip { consumed };
            }
            Step::Out(d) => return d,
            Step::Discard(pos) => return self.skip(buf, pos, limits),
        }
        self.done = true;
        let consumed = self.pos;
        let args = Args::new(buf, &self.spans);
        Decoded::Frame {
            value: parse_command(args, limits),
            consumed,
        }
    }

    /// A plain `GET key` or `SET key value` whole at the front of `buf`, and the bytes it
    /// takes; `None` for anything else (other commands, options, a split request, a key or
    /// value over the limits), which [`decode`](Self::decode) then handles and answers as
    /// usual. Only between requests: never in the middle of one being parsed or skipped.
    #[inline]
    pub fn decode_hot<'a>(&self, buf: &'a [u8], limits: &Limits) -> Option<(Hot<'a>, usize)> {
        // After a returned frame (`done`) the next `decode` resets; before a header nothing is
        // kept. Either way the buffer starts at a request boundary.
        if self.discard.is_some() || !(self.done || self.remaining.is_none()) {
            return None;
        }
        hot_frame(buf, limits)
    }

    fn reset(&mut self) {
        self.spans.clear();
        self.pos = 0;
        self.remaining = None;
        self.done = false;
    }

    fn decode_multibulk(&mut self, buf: &[u8], limits: &Limits) -> Step {
        if self.remaining.is_none() {
            let Some((n, next)) = read_header(buf, 0) else {
                return if buf.len() > MAX_HEADER {
                    Step::Out(protocol_error("too big mbulk count string", buf.len()))
                } else {
                    Step::Out(Decoded::Incomplete { need: None })
                };
            };
            let Some(n) = n else {
                return Step::Out(protocol_error("invalid multibulk length", buf.len()));
            };
            if n <= 0 {
                return Step::Empty(next);
            }
            if n as usize > limits.max_args {
                return Step::Out(protocol_error("invalid multibulk length", buf.len()));
            }
            self.remaining = Some(n as usize);
            self.spans.reserve((n as usize).min(1024));
            self.pos = next;
        }
        while self.remaining != Some(0) {
            let pos = self.pos;
            if pos >= buf.len() {
                return Step::Out(Decoded::Incomplete {
                    need: Some(pos + 1),
                });
            }
            if buf[pos] != b'$' {
                let got = buf[pos] as char;
                let got = if got.is_ascii_graphic() { got } else { '?' };
                return Step::Out(protocol_error(
                    &format!("expected '$', got '{got}'"),
                    buf.len(),
                ));
            }
            let Some((len, start)) = read_header(buf, pos) else {
                return if buf.len() - pos > MAX_HEADER {
                    Step::Out(protocol_error("too big bulk count string", buf.len()))
                } else {
                    Step::Out(Decoded::Incomplete { need: None })
                };
            };
            let max_arg = limits.max_value.max(limits.max_key);
            let len = match len {
                Some(len) if len >= 0 && len as usize <= max_arg => len as usize,
                // Too long but plausible: skip the request and keep the connection.
                Some(len)
                    if len >= 0 && (start as u64 + len as u64 + 2) <= limits.max_discard as u64 =>
                {
                    return self.begin_discard(
                        start,
                        len as usize,
                        format!("ERR value too long (max {max_arg} bytes)"),
                    );
                }
                _ => return Step::Out(protocol_error("invalid bulk length", buf.len())),
            };
            let end = start + len;
            if end + 2 > limits.max_request {
                if end + 2 <= limits.max_discard {
                    return self.begin_discard(
                        start,
                        len,
                        format!("ERR request too large (max {} bytes)", limits.max_request),
                    );
                }
                return Step::Out(protocol_error("request too large", buf.len()));
            }
            if buf.len() < end + 2 {
                return Step::Out(Decoded::Incomplete {
                    need: Some(end + 2),
                });
            }
            if &buf[end..end + 2] != b"\r\n" {
                return Step::Out(protocol_error(
                    "bulk string not terminated by CRLF",
                    buf.len(),
                ));
            }
            self.spans.push((start as u32, end as u32));
            self.pos = end + 2;
            self.remaining = self.remaining.map(|r| r - 1);
        }
        Step::Done
    }

    /// Starts skipping the request whose bulk of `len` bytes starts at `start`.
    fn begin_discard(&mut self, start: usize, len: usize, error: String) -> Step {
        let args = self.remaining.map_or(0, |r| r - 1);
        self.spans.clear();
        self.pos = 0;
        self.remaining = None;
        self.discard = Some(Discard {
            data: len,
            crlf: true,
            args,
            total: start,
            error,
        });
        Step::Discard(start)
    }

    /// Skips what is buffered of the discarded request from `pos` on (the bytes before `pos`
    /// belong to it too); answers its error once all of it has gone by.
    fn skip(&mut self, buf: &[u8], mut pos: usize, limits: &Limits) -> Decoded<Request<'static>> {
        let partial = |pos: usize, need: Option<usize>| {
            if pos > 0 {
                Decoded::Skip { consumed: pos }
            } else {
                Decoded::Incomplete { need }
            }
        };
        loop {
            let Some(d) = self.discard.as_mut() else {
                unreachable!("skip() runs only while discarding");
            };
            if d.data > 0 {
                let n = d.data.min(buf.len() - pos);
                d.data -= n;
                d.total += n;
                pos += n;
                if d.data > 0 {
                    return partial(pos, None);
                }
            }
            if d.crlf {
                if buf.len() - pos < 2 {
                    return partial(pos, Some(pos + 2));
                }
                if &buf[pos..pos + 2] != b"\r\n" {
                    self.discard = None;
                    return protocol_error("bulk string not terminated by CRLF", buf.len());
                }
                pos += 2;
                d.total += 2;
                d.crlf = false;
            }
            if d.args == 0 {
                let error = std::mem::take(&mut d.error);
                self.discard = None;
                return Decoded::Invalid {
                    error: ProtocolError(error),
                    consumed: pos,
                    fatal: false,
                };
            }
            if pos >= buf.len() {
                return partial(pos, None);
            }
            if buf[pos] != b'$' {
                self.discard = None;
                let got = buf[pos] as char;
                let got = if got.is_ascii_graphic() { got } else { '?' };
                return protocol_error(&format!("expected '$', got '{got}'"), buf.len());
            }
            let Some((len, next)) = read_header(buf, pos) else {
                if buf.len() - pos > MAX_HEADER {
                    self.discard = None;
                    return protocol_error("too big bulk count string", buf.len());
                }
                return partial(pos, None);
            };
            match len {
                Some(len)
                    if len >= 0
                        && (d.total + (next - pos)) as u64 + len as u64 + 2
                            <= limits.max_discard as u64 =>
                {
                    d.total += next - pos;
                    d.data = len as usize;
                    d.crlf = true;
                    d.args -= 1;
                    pos = next;
                }
                Some(len) if len >= 0 => {
                    self.discard = None;
                    return protocol_error("request too large", buf.len());
                }
                _ => {
                    self.discard = None;
                    return protocol_error("invalid bulk length", buf.len());
                }
            }
        }
    }

    fn decode_inline<'a>(&'a mut self, buf: &'a [u8], limits: &Limits) -> Decoded<Request<'a>> {
        let Some(nl) = memchr::memchr(b'\n', &buf[..buf.len().min(limits.max_line + 1)]) else {
            if buf.len() > limits.max_line {
                return protocol_error("too big inline request", buf.len());
            }
            return Decoded::Incomplete {
                need: Some(buf.len() + 1),
            };
        };
        let line = &buf[..nl];
        let line = line.strip_suffix(b"\r").unwrap_or(line);
        let mut i = 0;
        while i < line.len() {
            while i < line.len() && (line[i] == b' ' || line[i] == b'\t') {
                i += 1;
            }
            let start = i;
            while i < line.len() && line[i] != b' ' && line[i] != b'\t' {
                i += 1;
            }
            if i > start {
                self.spans.push((start as u32, i as u32));
            }
        }
        self.done = true;
        if self.spans.is_empty() {
            return Decoded::Skip { consumed: nl + 1 };
        }
        if self.spans.len() > limits.max_args {
            return protocol_error("invalid multibulk length", buf.len());
        }
        Decoded::Frame {
            value: parse_command(Args::new(buf, &self.spans), limits),
            consumed: nl + 1,
        }
    }
}

enum Step {
    Done,
    Empty(usize),
    Out(Decoded<Request<'static>>),
    /// An over-limit bulk starts at this position: skip the request from there.
    Discard(usize),
}

/// The common case in one pass: a complete multibulk of 1-9 arguments with plain lengths, all
/// within the limits, at the front of `buf`. Fills `spans` and returns the bytes it spans, or
/// `None` for anything else (incomplete, oversized, malformed, unusual headers), which the
/// general, incremental path then handles from the start with its exact errors.
#[inline]
fn fast_frame(buf: &[u8], spans: &mut Vec<(u32, u32)>, limits: &Limits) -> Option<usize> {
    let n = buf.get(1)?.wrapping_sub(b'0') as usize;
    if !(1..=9).contains(&n) || n > limits.max_args || buf.get(2..4)? != b"\r\n" {
        return None;
    }
    let max_len = limits.max_value.max(limits.max_key);
    let mut pos = 4;
    spans.clear();
    for _ in 0..n {
        if *buf.get(pos)? != b'$' {
            return None;
        }
        let mut i = pos + 1;
        let mut len = 0usize;
        loop {
            let d = buf.get(i)?.wrapping_sub(b'0');
            if d > 9 {
                break;
            }
            len = len * 10 + d as usize;
            i += 1;
            if i - pos > 10 {
                return None;
            }
        }
        let digits = i - pos - 1;
        if digits == 0 || (digits > 1 && buf[pos + 1] == b'0') || buf.get(i..i + 2)? != b"\r\n" {
            return None;
        }
        let start = i + 2;
        let end = start + len;
        if len > max_len || end + 2 > limits.max_request || buf.get(end..end + 2)? != b"\r\n" {
            return None;
        }
        spans.push((start as u32, end as u32));
        pos = end + 2;
    }
    Some(pos)
}

/// `*2\r\n$3\r\nGET\r\n$N\r\nkey\r\n` or the same with `*3`, `SET` and a value bulk (command
/// names in any case), checked byte for byte with the limits [`fast_frame`] applies.
#[inline]
fn hot_frame<'a>(buf: &'a [u8], limits: &Limits) -> Option<(Hot<'a>, usize)> {
    let head: &[u8; 13] = buf.get(..13)?.try_into().ok()?;
    if head[0] != b'*' || head[2..8] != *b"\r\n$3\r\n" || head[11..13] != *b"\r\n" {
        return None;
    }
    // `| 0x20` lower-cases a letter; only `G`/`g` (and so on) map to the letters compared.
    let name = [head[8] | 0x20, head[9] | 0x20, head[10] | 0x20];
    let (key, next) = bulk_at(buf, 13, limits.max_key)?;
    let (hot, end) = match (head[1], &name) {
        (b'2', b"get") => (Hot::Get(&buf[key]), next),
        (b'3', b"set") => {
            let (value, end) = bulk_at(buf, next, limits.max_value)?;
            (Hot::Set(&buf[key], &buf[value]), end)
        }
        _ => return None,
    };
    (end <= limits.max_request).then_some((hot, end))
}

/// The `$N\r\n...\r\n` bulk at `pos` if it is whole, its length (plain digits, no leading zero)
/// at most `max`: its bytes and the position after it.
#[inline]
fn bulk_at(buf: &[u8], pos: usize, max: usize) -> Option<(std::ops::Range<usize>, usize)> {
    let w: &[u8; 4] = buf.get(pos..pos + 4)?.try_into().ok()?;
    let digit = |b: u8| {
        let d = b.wrapping_sub(b'0');
        (d <= 9).then_some(d as usize)
    };
    // Keys and small values have one- or two-digit lengths: read those straight from the
    // first four bytes, and only longer ones digit by digit.
    let (len, cr) = match (w[0], w[2], w[3]) {
        (b'$', b'\r', _) => (digit(w[1])?, pos + 2),
        (b'$', _, b'\r') if w[1] != b'0' => (digit(w[1])? * 10 + digit(w[2])?, pos + 3),
        (b'$', _, _) => long_bulk_len(buf, pos)?,
        _ => return None,
    };
    let start = cr + 2;
    let end = start + len;
    if len > max || buf.get(cr..start)? != b"\r\n" || buf.get(end..end + 2)? != b"\r\n" {
        return None;
    }
    Some((start..end, end + 2))
}

/// The length of a bulk at `pos` with three or more digits (none leading zero, at most 9) and
/// where its `\r` is.
fn long_bulk_len(buf: &[u8], pos: usize) -> Option<(usize, usize)> {
    let mut i = pos + 1;
    let mut len = 0usize;
    while let Some(d) = buf.get(i).map(|b| b.wrapping_sub(b'0')).filter(|d| *d <= 9) {
        len = len * 10 + d as usize;
        i += 1;
        if i - pos > 10 {
            return None;
        }
    }
    (i - pos > 3 && buf[pos + 1] != b'0').then_some((len, i))
}

/// Reads a `*N\r\n` / `$N\r\n` header at `pos`. `None` = incomplete; `Some((None, _))` = not a
/// valid number; otherwise the number and the position after the line.
#[inline]
fn read_header(buf: &[u8], pos: usize) -> Option<(Option<i64>, usize)> {
    // Fast path, nearly every header: 1-18 plain digits, no leading zero, then CRLF. Parses
    // while scanning; anything else (sign, zero, junk, incomplete) takes the careful path.
    let mut i = pos + 1;
    let mut n: i64 = 0;
    while let Some(&b) = buf.get(i) {
        let d = b.wrapping_sub(b'0');
        if d > 9 {
            break;
        }
        n = n * 10 + d as i64;
        i += 1;
        if i - pos > 18 {
            break;
        }
    }
    let digits = i - pos - 1;
    if digits > 0
        && digits <= 18
        && buf[pos + 1] != b'0'
        && buf.get(i) == Some(&b'\r')
        && buf.get(i + 1) == Some(&b'\n')
    {
        return Some((Some(n), i + 2));
    }
    read_header_slow(buf, pos)
}

fn read_header_slow(buf: &[u8], pos: usize) -> Option<(Option<i64>, usize)> {
    let end = buf.len().min(pos + MAX_HEADER + 1);
    let body = &buf[pos + 1..end];
    // Headers are short: a plain scan beats setting up memchr.
    let cr = body.iter().position(|&b| b == b'\r' || b == b'\n')?;
    if body[cr] != b'\r' {
        return Some((None, pos + 1 + cr + 1)); // a bare \n: not a valid header
    }
    if cr + 1 >= body.len() {
        return None; // the \n has not arrived yet
    }
    if body[cr + 1] != b'\n' {
        return Some((None, pos + 1 + cr + 1));
    }
    Some((parse_i64(&body[..cr]), pos + 1 + cr + 2))
}

/// Parses an integer the way Redis's `string2ll` does: optional `-`, no `+`, no spaces, no
/// leading zeros, within `i64`.
pub fn parse_i64(s: &[u8]) -> Option<i64> {
    let (neg, digits) = match s.first()? {
        b'-' => (true, &s[1..]),
        _ => (false, s),
    };
    // 19 digits always fit in a u64; i64 never needs more.
    if digits.is_empty() || digits.len() > 19 || (digits[0] == b'0' && digits.len() > 1) {
        return None;
    }
    let mut n: u64 = 0;
    for &d in digits {
        let v = d.wrapping_sub(b'0');
        if v > 9 {
            return None;
        }
        n = n * 10 + v as u64;
    }
    if neg {
        // "-0" is not a canonical integer for Redis; i64::MIN is allowed.
        if n == 0 || n > i64::MAX as u64 + 1 {
            return None;
        }
        Some((n as i64).wrapping_neg())
    } else {
        i64::try_from(n).ok()
    }
}

const NOT_INT: &str = "ERR value is not an integer or out of range";
const SYNTAX: &str = "ERR syntax error";

fn err(msg: impl Into<String>) -> Request<'static> {
    Request::Error(msg.into())
}

fn arity_error(name: &str) -> Request<'static> {
    err(format!(
        "ERR wrong number of arguments for '{name}' command"
    ))
}

/// Redis arity: positive = exact argument count (with the name), negative = at least that many.
fn arity_ok(arity: i32, argc: usize) -> bool {
    if arity >= 0 {
        argc == arity as usize
    } else {
        argc >= arity.unsigned_abs() as usize
    }
}

/// One row of the command table: name, Redis arity, flags, first key, last key, key step.
pub struct CommandSpec {
    /// Lower-case name.
    pub name: &'static str,
    /// Redis arity (negative = minimum).
    pub arity: i32,
    /// Redis command flags.
    pub flags: &'static [&'static str],
    /// Position of the first key (0 = none).
    pub first_key: i32,
    /// Position of the last key (-1 = last argument).
    pub last_key: i32,
    /// Step between keys.
    pub step: i32,
    /// One-line summary for COMMAND DOCS.
    pub summary: &'static str,
    /// Redis group for COMMAND DOCS.
    pub group: &'static str,
}

macro_rules! spec {
    ($name:literal, $arity:expr, [$($flag:literal),*], $first:expr, $last:expr, $step:expr, $group:literal, $summary:literal) => {
        CommandSpec { name: $name, arity: $arity, flags: &[$($flag),*], first_key: $first, last_key: $last, step: $step, summary: $summary, group: $group }
    };
}

/// Every command kvcache answers over RESP, for COMMAND and for arity checks (sorted by name,
/// which is the order COMMAND lists them in).
#[rustfmt::skip]
pub static COMMANDS: &[CommandSpec] = &[
    spec!("append", 3, ["write", "denyoom", "fast"], 1, 1, 1, "string", "Appends a string to the value of a key. Creates the key if it doesn't exist."),
    spec!("auth", -2, ["noscript", "loading", "stale", "fast", "no_auth"], 0, 0, 0, "connection", "Authenticates the connection."),
    spec!("bgsave", -1, ["admin", "noscript", "no_async_loading"], 0, 0, 0, "server", "Asynchronously saves the database(s) to disk."),
    spec!("bitcount", -2, ["readonly"], 1, 1, 1, "bitmap", "Counts the number of set bits (population counting) in a string."),
    spec!("bitpos", -3, ["readonly"], 1, 1, 1, "bitmap", "Finds the first set (1) or clear (0) bit in a string."),
    spec!("client", -2, ["noscript", "loading", "stale"], 0, 0, 0, "connection", "A container for client connection commands."),
    spec!("command", -1, ["loading", "stale"], 0, 0, 0, "server", "Returns detailed information about all commands."),
    spec!("config", -2, ["admin", "noscript", "loading", "stale"], 0, 0, 0, "server", "A container for server configuration commands."),
    spec!("copy", -3, ["write", "denyoom"], 1, 2, 1, "generic", "Copies the value of a key to a new key."),
    spec!("dbsize", 1, ["readonly", "fast"], 0, 0, 0, "server", "Returns the number of keys in the database."),
    spec!("decr", 2, ["write", "denyoom", "fast"], 1, 1, 1, "string", "Decrements the integer value of a key by one. Uses 0 as initial value if the key doesn't exist."),
    spec!("decrby", 3, ["write", "denyoom", "fast"], 1, 1, 1, "string", "Decrements a number from the integer value of a key. Uses 0 as initial value if the key doesn't exist."),
    spec!("del", -2, ["write"], 1, -1, 1, "generic", "Deletes one or more keys."),
    spec!("echo", 2, ["fast"], 0, 0, 0, "connection", "Returns the given string."),
    spec!("exists", -2, ["readonly", "fast"], 1, -1, 1, "generic", "Determines whether one or more keys exist."),
    spec!("expire", -3, ["write", "fast"], 1, 1, 1, "generic", "Sets the expiration time of a key in seconds."),
    spec!("expireat", -3, ["write", "fast"], 1, 1, 1, "generic", "Sets the expiration time of a key to a Unix timestamp."),
    spec!("expiretime", 2, ["readonly", "fast"], 1, 1, 1, "generic", "Returns the expiration time of a key as a Unix timestamp."),
    spec!("flushall", -1, ["write"], 0, 0, 0, "server", "Removes all keys from all databases."),
    spec!("flushdb", -1, ["write"], 0, 0, 0, "server", "Remove all keys from the current database."),
    spec!("function", -2, [], 0, 0, 0, "scripting", "A container for function commands."),
    spec!("get", 2, ["readonly", "fast"], 1, 1, 1, "string", "Returns the string value of a key."),
    spec!("getbit", 3, ["readonly", "fast"], 1, 1, 1, "bitmap", "Returns a bit value by offset."),
    spec!("getdel", 2, ["write", "fast"], 1, 1, 1, "string", "Returns the string value of a key after deleting the key."),
    spec!("getex", -2, ["write", "fast"], 1, 1, 1, "string", "Returns the string value of a key after setting its expiration time."),
    spec!("getrange", 4, ["readonly"], 1, 1, 1, "string", "Returns a substring of the string stored at a key."),
    spec!("getset", 3, ["write", "denyoom", "fast"], 1, 1, 1, "string", "Returns the previous string value of a key after setting it to a new value."),
    spec!("hello", -1, ["noscript", "loading", "stale", "fast", "no_auth"], 0, 0, 0, "connection", "Handshakes with the Redis server."),
    spec!("incr", 2, ["write", "denyoom", "fast"], 1, 1, 1, "string", "Increments the integer value of a key by one. Uses 0 as initial value if the key doesn't exist."),
    spec!("incrby", 3, ["write", "denyoom", "fast"], 1, 1, 1, "string", "Increments the integer value of a key by a number. Uses 0 as initial value if the key doesn't exist."),
    spec!("incrbyfloat", 3, ["write", "denyoom", "fast"], 1, 1, 1, "string", "Increment the floating point value of a key by a number. Uses 0 as initial value if the key doesn't exist."),
    spec!("info", -1, ["loading", "stale"], 0, 0, 0, "server", "Returns information and statistics about the server."),
    spec!("keys", 2, ["readonly"], 0, 0, 0, "generic", "Returns all key names that match a pattern."),
    spec!("lastsave", 1, ["loading", "stale", "fast"], 0, 0, 0, "server", "Returns the Unix timestamp of the last successful save to disk."),
    spec!("lcs", -3, ["readonly"], 1, 2, 1, "string", "Finds the longest common substring."),
    spec!("mget", -2, ["readonly", "fast"], 1, -1, 1, "string", "Atomically returns the string values of one or more keys."),
    spec!("mset", -3, ["write", "denyoom"], 1, -1, 2, "string", "Atomically creates or modifies the string values of one or more keys."),
    spec!("msetnx", -3, ["write", "denyoom"], 1, -1, 2, "string", "Atomically modifies the string values of one or more keys only when all keys don't exist."),
    spec!("object", -2, [], 0, 0, 0, "generic", "A container for object introspection commands."),
    spec!("persist", 2, ["write", "fast"], 1, 1, 1, "generic", "Removes the expiration time of a key."),
    spec!("pexpire", -3, ["write", "fast"], 1, 1, 1, "generic", "Sets the expiration time of a key in milliseconds."),
    spec!("pexpireat", -3, ["write", "fast"], 1, 1, 1, "generic", "Sets the expiration time of a key to a Unix milliseconds timestamp."),
    spec!("pexpiretime", 2, ["readonly", "fast"], 1, 1, 1, "generic", "Returns the expiration time of a key as a Unix milliseconds timestamp."),
    spec!("ping", -1, ["fast"], 0, 0, 0, "connection", "Returns the server's liveliness response."),
    spec!("psetex", 4, ["write", "denyoom"], 1, 1, 1, "string", "Sets both string value and expiration time in milliseconds of a key. The key is created if it doesn't exist."),
    spec!("pttl", 2, ["readonly", "fast"], 1, 1, 1, "generic", "Returns the expiration time in milliseconds of a key."),
    spec!("quit", -1, ["fast", "no_auth"], 0, 0, 0, "connection", "Closes the connection."),
    spec!("randomkey", 1, ["readonly"], 0, 0, 0, "generic", "Returns a random key name from the database."),
    spec!("rename", 3, ["write"], 1, 2, 1, "generic", "Renames a key and overwrites the destination."),
    spec!("renamenx", 3, ["write", "fast"], 1, 2, 1, "generic", "Renames a key only when the target key name doesn't exist."),
    spec!("save", 1, ["admin", "noscript", "no_async_loading", "no_multi"], 0, 0, 0, "server", "Synchronously saves the database(s) to disk."),
    spec!("scan", -2, ["readonly"], 0, 0, 0, "generic", "Iterates over the key names in the database."),
    spec!("select", 2, ["loading", "stale", "fast"], 0, 0, 0, "connection", "Changes the selected database."),
    spec!("set", -3, ["write", "denyoom"], 1, 1, 1, "string", "Sets the string value of a key, ignoring its type. The key is created if it doesn't exist."),
    spec!("setbit", 4, ["write", "denyoom"], 1, 1, 1, "bitmap", "Sets or clears the bit at offset of the string value. Creates the key if it doesn't exist."),
    spec!("setex", 4, ["write", "denyoom"], 1, 1, 1, "string", "Sets the string value and expiration time of a key. Creates the key if it doesn't exist."),
    spec!("setnx", 3, ["write", "denyoom", "fast"], 1, 1, 1, "string", "Set the string value of a key only when the key doesn't exist."),
    spec!("setrange", 4, ["write", "denyoom"], 1, 1, 1, "string", "Overwrites a part of a string value with another by an offset. Creates the key if it doesn't exist."),
    spec!("strlen", 2, ["readonly", "fast"], 1, 1, 1, "string", "Returns the length of a string value."),
    spec!("substr", 4, ["readonly"], 1, 1, 1, "string", "Returns a substring from string stored at key."),
    spec!("time", 1, ["loading", "stale", "fast"], 0, 0, 0, "server", "Returns the server time."),
    spec!("touch", -2, ["readonly", "fast"], 1, -1, 1, "generic", "Returns the number of existing keys out of those specified after updating the time they were last accessed."),
    spec!("ttl", 2, ["readonly", "fast"], 1, 1, 1, "generic", "Returns the expiration time in seconds of a key."),
    spec!("type", 2, ["readonly", "fast"], 1, 1, 1, "generic", "Determines the type of value stored at a key."),
    spec!("unlink", -2, ["write", "fast"], 1, -1, 1, "generic", "Asynchronously deletes one or more keys."),
];

/// Looks a command up by name, in any letter case.
pub fn command_spec(name: &[u8]) -> Option<&'static CommandSpec> {
    // A hash table over the lower-cased names, built once: one hash of at most 16 bytes and
    // usually one comparison, instead of comparing against every name of the same length.
    const SLOTS: usize = 512;
    static TABLE: std::sync::OnceLock<[u16; SLOTS]> = std::sync::OnceLock::new();
    let table = TABLE.get_or_init(|| {
        let mut t = [0u16; SLOTS];
        for (i, c) in COMMANDS.iter().enumerate() {
            let mut at = name_hash(c.name.as_bytes()) as usize & (SLOTS - 1);
            while t[at] != 0 {
                at = (at + 1) & (SLOTS - 1);
            }
            t[at] = i as u16 + 1;
        }
        t
    });
    if name.is_empty() || name.len() > 16 {
        return None;
    }
    let mut at = name_hash(name) as usize & (SLOTS - 1);
    loop {
        let i = table[at];
        if i == 0 {
            return None;
        }
        let c = &COMMANDS[i as usize - 1];
        if c.name.as_bytes().eq_ignore_ascii_case(name) {
            return Some(c);
        }
        at = (at + 1) & (SLOTS - 1);
    }
}

/// Hash of a command name up to 16 bytes, insensitive to ASCII letter case (`| 0x20` lowers
/// letters; other bytes may collide, which the comparison after the lookup settles).
#[inline]
fn name_hash(name: &[u8]) -> u64 {
    let mut w = [0u8; 16];
    let n = name.len().min(16);
    w[..n].copy_from_slice(&name[..n]);
    let lo = u64::from_le_bytes(w[..8].try_into().expect("8 bytes")) | 0x2020_2020_2020_2020;
    let hi = u64::from_le_bytes(w[8..].try_into().expect("8 bytes")) | 0x2020_2020_2020_2020;
    (lo ^ hi.rotate_left(29) ^ n as u64).wrapping_mul(0x9E37_79B9_7F4A_7C15) >> 40
}

fn unknown_command(args: &Args<'_>) -> Request<'static> {
    let mut rest = String::new();
    for a in args.iter().skip(1) {
        if rest.len() >= 128 {
            break;
        }
        let room = 128 - rest.len();
        let shown = String::from_utf8_lossy(&a[..a.len().min(room)]).into_owned();
        rest.push('\'');
        rest.push_str(&shown);
        rest.push_str("' ");
    }
    let name = String::from_utf8_lossy(&args.get(0)[..args.get(0).len().min(128)]).into_owned();
    err(format!(
        "ERR unknown command '{name}', with args beginning with: {rest}"
    ))
}

/// Most of a cache's traffic, plain `GET key` and `SET key value`, recognised in a few
/// instructions (a small function, so not paying the big parser's stack frame); `None` sends
/// everything else, and any over-long key, to [`parse_command`].
#[inline]
fn hot_command<'a>(args: Args<'a>, limits: &Limits) -> Option<Request<'a>> {
    let name = args.get(0);
    if name.len() != 3 || !(2..=3).contains(&args.len()) {
        return None;
    }
    let lower = [name[0] | 0x20, name[1] | 0x20, name[2] | 0x20];
    let key = args.get(1);
    if key.len() > limits.max_key {
        return None;
    }
    match (&lower, args.len()) {
        (b"get", 2) => Some(Request::Get(key)),
        (b"set", 3) => Some(Request::Set {
            kind: SetKind::Set,
            key,
            value: args.get(2),
            expire: None,
            cond: SetCond::Always,
            keep_ttl: false,
            get: false,
        }),
        _ => None,
    }
}

/// Parses a whole RESP command (name and arguments) into a [`Request`].
pub fn parse_command<'a>(args: Args<'a>, limits: &Limits) -> Request<'a> {
    if let Some(r) = hot_command(args, limits) {
        return r;
    }
    let name = args.get(0);
    let Some(spec) = command_spec(name) else {
        return unknown_command(&args);
    };
    if !arity_ok(spec.arity, args.len()) {
        return arity_error(spec.name);
    }
    let a = |i: usize| args.get(i);
    let key_ok = |k: &[u8]| k.len() <= limits.max_key;
    // Key length is a setting; every keyed command checks it the same way.
    if spec.first_key > 0 {
        let last = if spec.last_key < 0 {
            args.len() - 1
        } else {
            spec.last_key as usize
        };
        let mut i = spec.first_key as usize;
        while i <= last {
            if !key_ok(a(i)) {
                return err(format!("ERR key too long (max {} bytes)", limits.max_key));
            }
            i += spec.step as usize;
        }
    }
    match spec.name {
        "get" => Request::Get(a(1)),
        "set" => parse_set(args),
        "setnx" => Request::Set {
            kind: SetKind::SetNx,
            key: a(1),
            value: a(2),
            expire: None,
            cond: SetCond::IfAbsent,
            keep_ttl: false,
            get: false,
        },
        "setex" | "psetex" => {
            let Some(n) = parse_i64(a(2)) else {
                return err(NOT_INT);
            };
            if n <= 0 {
                return err(format!(
                    "ERR invalid expire time in '{}' command",
                    spec.name
                ));
            }
            Request::Set {
                kind: SetKind::SetEx,
                key: a(1),
                value: a(3),
                expire: Some(if spec.name == "setex" {
                    ExpireSpec::Seconds(n)
                } else {
                    ExpireSpec::Millis(n)
                }),
                cond: SetCond::Always,
                keep_ttl: false,
                get: false,
            }
        }
        "getset" => Request::Set {
            kind: SetKind::Set,
            key: a(1),
            value: a(2),
            expire: None,
            cond: SetCond::Always,
            keep_ttl: false,
            get: true,
        },
        "getdel" => Request::GetDel(a(1)),
        "getex" => parse_getex(args),
        "mget" => Request::MGet(args.skip(1)),
        "mset" | "msetnx" => {
            if args.len().is_multiple_of(2) {
                return arity_error(spec.name);
            }
            if spec.name == "mset" {
                Request::MSet(args.skip(1))
            } else {
                Request::MSetNx(args.skip(1))
            }
        }
        "append" => Request::Append(a(1), a(2)),
        "strlen" => Request::StrLen(a(1)),
        "incr" => Request::IncrBy(a(1), 1),
        "decr" => Request::IncrBy(a(1), -1),
        "incrby" | "decrby" => {
            let Some(n) = parse_i64(a(2)) else {
                return err(NOT_INT);
            };
            if spec.name == "incrby" {
                Request::IncrBy(a(1), n)
            } else if n == i64::MIN {
                err("ERR decrement would overflow")
            } else {
                Request::IncrBy(a(1), -n)
            }
        }
        "del" | "unlink" => Request::Del(args.skip(1)),
        "exists" => Request::ExistsMany(args.skip(1)),
        "touch" => Request::Touch(args.skip(1)),
        "type" => Request::Type(a(1)),
        "expire" | "pexpire" | "expireat" | "pexpireat" => parse_expire(args, spec.name),
        "ttl" => Request::Ttl(a(1), false),
        "pttl" => Request::Ttl(a(1), true),
        "persist" => Request::Persist(a(1)),
        "scan" => parse_scan(args),
        "keys" => Request::Keys(a(1)),
        "randomkey" => Request::RandomKey,
        "dbsize" => Request::DbSize,
        "flushall" | "flushdb" => match args.len() {
            1 => Request::Flush(false),
            2 if a(1).eq_ignore_ascii_case(b"async") => Request::Flush(true),
            2 if a(1).eq_ignore_ascii_case(b"sync") => Request::Flush(false),
            _ => err(SYNTAX),
        },
        "ping" => match args.len() {
            1 => Request::Ping(None),
            2 => Request::Ping(Some(a(1))),
            _ => arity_error("ping"),
        },
        "echo" => Request::Echo(a(1)),
        "quit" => Request::Quit,
        "select" => match parse_i64(a(1)) {
            Some(db) => Request::Select(db),
            None => err(NOT_INT),
        },
        "auth" => match args.len() {
            2 => Request::Auth(None, a(1)),
            3 => Request::Auth(Some(a(1)), a(2)),
            _ => err(SYNTAX),
        },
        "hello" => parse_hello(args),
        "client" => parse_client(args),
        "command" => parse_command_cmd(args),
        "config" => {
            let sub = a(1);
            if sub.eq_ignore_ascii_case(b"get") {
                if args.len() < 3 {
                    return arity_error("config|get");
                }
                Request::ConfigGet(args.skip(2))
            } else if sub.eq_ignore_ascii_case(b"help") {
                if args.len() != 2 {
                    return arity_error("config|help");
                }
                Request::ConfigOther(sub)
            } else if sub.eq_ignore_ascii_case(b"set")
                || sub.eq_ignore_ascii_case(b"resetstat")
                || sub.eq_ignore_ascii_case(b"rewrite")
            {
                Request::ConfigOther(sub)
            } else {
                unknown_subcommand(sub, "CONFIG")
            }
        }
        "info" => Request::Info(args.skip(1)),
        "time" => Request::Time,
        "getrange" | "substr" => match (parse_i64(a(2)), parse_i64(a(3))) {
            (Some(start), Some(end)) => Request::GetRange(a(1), start, end),
            _ => err(NOT_INT),
        },
        "setrange" => match parse_i64(a(2)) {
            Some(offset) if offset >= 0 => Request::SetRange(a(1), offset as u64, a(3)),
            Some(_) => err("ERR offset is out of range"),
            None => err(NOT_INT),
        },
        "getbit" | "setbit" => {
            let Some(offset) = bit_offset(a(2), limits) else {
                return err(BIT_OFFSET);
            };
            if spec.name == "getbit" {
                return Request::GetBit(a(1), offset);
            }
            match parse_i64(a(3)) {
                Some(bit @ (0 | 1)) => Request::SetBit(a(1), offset, bit == 1),
                _ => err("ERR bit is not an integer or out of range"),
            }
        }
        "bitcount" => Request::BitCount(a(1), parse_bitcount_range(args)),
        "bitpos" => match parse_i64(a(2)) {
            Some(bit @ (0 | 1)) => Request::BitPos(a(1), bit == 1, parse_bitpos_range(args)),
            Some(_) => err("ERR The bit argument must be 1 or 0."),
            None => err(NOT_INT),
        },
        "lcs" => parse_lcs(args),
        "incrbyfloat" => Request::IncrByFloat(a(1), a(2)),
        "expiretime" => Request::ExpireTime(a(1), false),
        "pexpiretime" => Request::ExpireTime(a(1), true),
        "rename" => Request::Rename(a(1), a(2), false),
        "renamenx" => Request::Rename(a(1), a(2), true),
        "copy" => parse_copy(args),
        "object" => parse_object(args, limits),
        "function" => parse_function(args),
        "save" => Request::Save,
        "bgsave" => match args.len() {
            1 => Request::BgSave,
            2 if a(1).eq_ignore_ascii_case(b"schedule") => Request::BgSave,
            _ => err(SYNTAX),
        },
        "lastsave" => Request::LastSave,
        _ => unknown_command(&args),
    }
}

const BIT_OFFSET: &str = "ERR bit offset is not an integer or out of range";

/// A GETBIT/SETBIT offset: non-negative and inside the longest value allowed (Redis checks it
/// against `proto-max-bulk-len`, which is our value limit).
fn bit_offset(arg: &[u8], limits: &Limits) -> Option<u64> {
    let n = parse_i64(arg)?;
    (n >= 0 && ((n as u64) >> 3) < limits.max_value as u64).then_some(n as u64)
}

/// `BYTE` / `BIT` after a BITCOUNT or BITPOS range: `Some(true)` for bits, `None` if neither.
fn bit_unit(arg: &[u8]) -> Option<bool> {
    if arg.eq_ignore_ascii_case(b"bit") {
        Some(true)
    } else if arg.eq_ignore_ascii_case(b"byte") {
        Some(false)
    } else {
        None
    }
}

/// BITCOUNT key [start end [BYTE|BIT]], checked in Redis's order: the numbers, then an empty
/// negative range (which answers 0 whatever the unit says), then the unit.
fn parse_bitcount_range(args: Args<'_>) -> BitRange {
    match args.len() {
        2 => BitRange::Whole,
        4 | 5 => {
            let (Some(start), Some(end)) = (parse_i64(args.get(2)), parse_i64(args.get(3))) else {
                return BitRange::Invalid(NOT_INT);
            };
            let bits = if args.len() == 5 && !(start < 0 && end < 0 && start > end) {
                match bit_unit(args.get(4)) {
                    Some(b) => b,
                    None => return BitRange::Invalid(SYNTAX),
                }
            } else {
                false
            };
            BitRange::Span {
                start,
                end: Some(end),
                bits,
            }
        }
        _ => BitRange::Invalid(SYNTAX),
    }
}

/// BITPOS key bit [start [end [BYTE|BIT]]], checked in Redis's order: start, unit, end.
fn parse_bitpos_range(args: Args<'_>) -> BitRange {
    if args.len() == 3 {
        return BitRange::Whole;
    }
    if args.len() > 6 {
        return BitRange::Invalid(SYNTAX);
    }
    let Some(start) = parse_i64(args.get(3)) else {
        return BitRange::Invalid(NOT_INT);
    };
    let bits = if args.len() == 6 {
        match bit_unit(args.get(5)) {
            Some(b) => b,
            None => return BitRange::Invalid(SYNTAX),
        }
    } else {
        false
    };
    let end = if args.len() >= 5 {
        match parse_i64(args.get(4)) {
            Some(e) => Some(e),
            None => return BitRange::Invalid(NOT_INT),
        }
    } else {
        None
    };
    BitRange::Span { start, end, bits }
}

fn parse_lcs(args: Args<'_>) -> Request<'_> {
    let (mut len, mut idx, mut with_len, mut min_len) = (false, false, false, 0u64);
    let mut i = 3;
    while i < args.len() {
        let o = args.get(i);
        if o.eq_ignore_ascii_case(b"idx") {
            idx = true;
        } else if o.eq_ignore_ascii_case(b"len") {
            len = true;
        } else if o.eq_ignore_ascii_case(b"withmatchlen") {
            with_len = true;
        } else if o.eq_ignore_ascii_case(b"minmatchlen") && i + 1 < args.len() {
            match parse_i64(args.get(i + 1)) {
                Some(n) => min_len = n.max(0) as u64,
                None => return err(NOT_INT),
            }
            i += 1;
        } else {
            return err(SYNTAX);
        }
        i += 1;
    }
    if len && idx {
        return err("ERR If you want both the length and indexes, please just use IDX.");
    }
    let mode = if idx {
        LcsMode::Idx { min_len, with_len }
    } else if len {
        LcsMode::Len
    } else {
        LcsMode::String
    };
    Request::Lcs(args.get(1), args.get(2), mode)
}

fn parse_copy(args: Args<'_>) -> Request<'_> {
    let mut replace = false;
    let mut i = 3;
    while i < args.len() {
        let o = args.get(i);
        if o.eq_ignore_ascii_case(b"replace") {
            replace = true;
        } else if o.eq_ignore_ascii_case(b"db") && i + 1 < args.len() {
            match parse_i64(args.get(i + 1)) {
                Some(0) => {}
                Some(db) if i32::try_from(db).is_ok() => {
                    return err("ERR DB index is out of range");
                }
                Some(_) => {
                    return err(
                        "ERR value is out of range, value must between -2147483648 and 2147483647",
                    );
                }
                None => return err(NOT_INT),
            }
            i += 1;
        } else {
            return err(SYNTAX);
        }
        i += 1;
    }
    if args.get(1) == args.get(2) {
        return err("ERR source and destination objects are the same");
    }
    Request::Copy(args.get(1), args.get(2), replace)
}

fn parse_object<'a>(args: Args<'a>, limits: &Limits) -> Request<'a> {
    let sub = args.get(1);
    let is = |s: &[u8]| sub.eq_ignore_ascii_case(s);
    if is(b"help") {
        return if args.len() == 2 {
            Request::Object(ObjectCmd::Help)
        } else {
            arity_error("object|help")
        };
    }
    let (name, make): (&str, fn(&'a [u8]) -> ObjectCmd<'a>) = if is(b"encoding") {
        ("object|encoding", ObjectCmd::Encoding)
    } else if is(b"refcount") {
        ("object|refcount", ObjectCmd::RefCount)
    } else if is(b"idletime") {
        ("object|idletime", ObjectCmd::IdleTime)
    } else if is(b"freq") {
        ("object|freq", ObjectCmd::Freq)
    } else {
        return unknown_subcommand(sub, "OBJECT");
    };
    if args.len() != 3 {
        return arity_error(name);
    }
    let key = args.get(2);
    if key.len() > limits.max_key {
        return err(format!("ERR key too long (max {} bytes)", limits.max_key));
    }
    Request::Object(make(key))
}

fn parse_function(args: Args<'_>) -> Request<'_> {
    let sub = args.get(1);
    if sub.eq_ignore_ascii_case(b"flush") {
        if args.len() > 3 {
            let shown = String::from_utf8_lossy(&sub[..sub.len().min(128)]).into_owned();
            return err(format!(
                "ERR unknown subcommand or wrong number of arguments for '{shown}'. Try FUNCTION HELP."
            ));
        }
        if args.len() == 3
            && !args.get(2).eq_ignore_ascii_case(b"sync")
            && !args.get(2).eq_ignore_ascii_case(b"async")
        {
            return err("ERR FUNCTION FLUSH only supports SYNC|ASYNC option");
        }
        Request::Function(FunctionCmd::Flush)
    } else if sub.eq_ignore_ascii_case(b"help") {
        if args.len() != 2 {
            return arity_error("function|help");
        }
        Request::Function(FunctionCmd::Help)
    } else {
        unknown_subcommand(sub, "FUNCTION")
    }
}

fn unknown_subcommand(sub: &[u8], cmd: &str) -> Request<'static> {
    let shown = String::from_utf8_lossy(&sub[..sub.len().min(128)]).into_owned();
    err(format!("ERR unknown subcommand '{shown}'. Try {cmd} HELP."))
}

/// Parses the argument after an EX/PX/EXAT/PXAT option.
fn expire_arg(opt: &[u8], arg: &[u8], cmd: &str) -> Result<ExpireSpec, Request<'static>> {
    let n = parse_i64(arg).ok_or_else(|| err(NOT_INT))?;
    if n <= 0 {
        return Err(err(format!("ERR invalid expire time in '{cmd}' command")));
    }
    Ok(if opt.eq_ignore_ascii_case(b"ex") {
        ExpireSpec::Seconds(n)
    } else if opt.eq_ignore_ascii_case(b"px") {
        ExpireSpec::Millis(n)
    } else if opt.eq_ignore_ascii_case(b"exat") {
        ExpireSpec::UnixSeconds(n)
    } else {
        ExpireSpec::UnixMillis(n)
    })
}

fn is_expire_opt(o: &[u8]) -> bool {
    [&b"ex"[..], b"px", b"exat", b"pxat"]
        .iter()
        .any(|x| o.eq_ignore_ascii_case(x))
}

fn parse_set(args: Args<'_>) -> Request<'_> {
    let mut expire = None;
    let mut cond = SetCond::Always;
    let mut keep_ttl = false;
    let mut get = false;
    let mut i = 3;
    while i < args.len() {
        let o = args.get(i);
        if o.eq_ignore_ascii_case(b"nx") && cond == SetCond::Always {
            cond = SetCond::IfAbsent;
        } else if o.eq_ignore_ascii_case(b"xx") && cond == SetCond::Always {
            cond = SetCond::IfPresent;
        } else if o.eq_ignore_ascii_case(b"get") {
            get = true;
        } else if o.eq_ignore_ascii_case(b"keepttl") && !keep_ttl && expire.is_none() {
            keep_ttl = true;
        } else if is_expire_opt(o) && expire.is_none() && !keep_ttl && i + 1 < args.len() {
            match expire_arg(o, args.get(i + 1), "set") {
                Ok(e) => expire = Some(e),
                Err(e) => return e,
            }
            i += 1;
        } else {
            return err(SYNTAX);
        }
        i += 1;
    }
    Request::Set {
        kind: SetKind::Set,
        key: args.get(1),
        value: args.get(2),
        expire,
        cond,
        keep_ttl,
        get,
    }
}

fn parse_getex(args: Args<'_>) -> Request<'_> {
    let mut mode = GetExMode::Keep;
    let mut i = 2;
    while i < args.len() {
        let o = args.get(i);
        if o.eq_ignore_ascii_case(b"persist") && mode == GetExMode::Keep {
            mode = GetExMode::Persist;
        } else if is_expire_opt(o) && mode == GetExMode::Keep && i + 1 < args.len() {
            match expire_arg(o, args.get(i + 1), "getex") {
                Ok(e) => mode = GetExMode::Expire(e),
                Err(e) => return e,
            }
            i += 1;
        } else {
            return err(SYNTAX);
        }
        i += 1;
    }
    Request::GetEx(args.get(1), mode)
}

fn parse_expire<'a>(args: Args<'a>, name: &'static str) -> Request<'a> {
    let Some(n) = parse_i64(args.get(2)) else {
        return err(NOT_INT);
    };
    let spec = match name {
        "expire" => ExpireSpec::Seconds(n),
        "pexpire" => ExpireSpec::Millis(n),
        "expireat" => ExpireSpec::UnixSeconds(n),
        _ => ExpireSpec::UnixMillis(n),
    };
    let (mut nx, mut xx, mut gt, mut lt) = (false, false, false, false);
    for o in args.skip(3).iter() {
        if o.eq_ignore_ascii_case(b"nx") {
            nx = true;
        } else if o.eq_ignore_ascii_case(b"xx") {
            xx = true;
        } else if o.eq_ignore_ascii_case(b"gt") {
            gt = true;
        } else if o.eq_ignore_ascii_case(b"lt") {
            lt = true;
        } else {
            return err(format!(
                "ERR Unsupported option {}",
                String::from_utf8_lossy(o)
            ));
        }
    }
    if nx && (xx || gt || lt) {
        return err("ERR NX and XX, GT or LT options at the same time are not compatible");
    }
    if gt && lt {
        return err("ERR GT and LT options at the same time are not compatible");
    }
    let cond = ExpireCond { nx, xx, gt, lt };
    Request::Expire(args.get(1), spec, cond, name)
}

fn parse_scan(args: Args<'_>) -> Request<'_> {
    let cursor = match std::str::from_utf8(args.get(1))
        .ok()
        .and_then(|s| s.parse::<u64>().ok())
    {
        Some(c) => c,
        None => return err("ERR invalid cursor"),
    };
    let mut pattern = None;
    let mut count = 10usize;
    let mut kind = None;
    let mut i = 2;
    while i < args.len() {
        let o = args.get(i);
        if i + 1 >= args.len() {
            return err(SYNTAX);
        }
        let v = args.get(i + 1);
        if o.eq_ignore_ascii_case(b"match") {
            pattern = Some(v);
        } else if o.eq_ignore_ascii_case(b"count") {
            match parse_i64(v) {
                Some(n) if n >= 1 => count = n as usize,
                Some(_) => return err(SYNTAX),
                None => return err(NOT_INT),
            }
        } else if o.eq_ignore_ascii_case(b"type") {
            kind = Some(v);
        } else {
            return err(SYNTAX);
        }
        i += 2;
    }
    Request::Scan {
        cursor,
        pattern,
        count,
        kind,
    }
}

fn parse_hello(args: Args<'_>) -> Request<'_> {
    let mut proto = None;
    let mut auth = None;
    let mut name = None;
    if args.len() >= 2 {
        match parse_i64(args.get(1)) {
            Some(v) => proto = Some(v),
            None => return err("ERR Protocol version is not an integer or out of range"),
        }
        let mut i = 2;
        while i < args.len() {
            let o = args.get(i);
            let left = args.len() - i - 1;
            if o.eq_ignore_ascii_case(b"auth") && left >= 2 {
                auth = Some((args.get(i + 1), args.get(i + 2)));
                i += 3;
            } else if o.eq_ignore_ascii_case(b"setname") && left >= 1 {
                name = Some(args.get(i + 1));
                i += 2;
            } else {
                return err(format!(
                    "ERR Syntax error in HELLO option '{}'",
                    String::from_utf8_lossy(o)
                ));
            }
        }
    }
    Request::Hello { proto, auth, name }
}

fn parse_client(args: Args<'_>) -> Request<'_> {
    let sub = args.get(1);
    let n = args.len();
    let is = |s: &[u8]| sub.eq_ignore_ascii_case(s);
    let cmd = if is(b"setname") {
        if n != 3 {
            return arity_error("client|setname");
        }
        ClientCmd::SetName(args.get(2))
    } else if is(b"getname") {
        if n != 2 {
            return arity_error("client|getname");
        }
        ClientCmd::GetName
    } else if is(b"id") {
        if n != 2 {
            return arity_error("client|id");
        }
        ClientCmd::Id
    } else if is(b"setinfo") {
        if n != 4 {
            return arity_error("client|setinfo");
        }
        let attr = args.get(2);
        let name = attr.eq_ignore_ascii_case(b"lib-name");
        if !name && !attr.eq_ignore_ascii_case(b"lib-ver") {
            return err(format!(
                "ERR Unrecognized option '{}'",
                String::from_utf8_lossy(attr)
            ));
        }
        ClientCmd::SetLib {
            name,
            value: args.get(3),
        }
    } else if is(b"info") {
        if n != 2 {
            return arity_error("client|info");
        }
        ClientCmd::Info
    } else if is(b"list") {
        return parse_client_list(args);
    } else if is(b"kill") {
        if n < 3 {
            return arity_error("client|kill");
        }
        return parse_client_kill(args);
    } else if is(b"help") {
        if n != 2 {
            return arity_error("client|help");
        }
        ClientCmd::Help
    } else {
        return unknown_subcommand(sub, "CLIENT");
    };
    Request::Client(cmd)
}

/// `TYPE` values of CLIENT LIST / KILL: `Some(true)` for normal clients (all of ours),
/// `Some(false)` for kinds that exist in Redis but never here, `None` for unknown words.
fn client_type(t: &[u8]) -> Option<bool> {
    if t.eq_ignore_ascii_case(b"normal") {
        Some(true)
    } else if [&b"master"[..], b"replica", b"slave", b"pubsub"]
        .iter()
        .any(|k| t.eq_ignore_ascii_case(k))
    {
        Some(false)
    } else {
        None
    }
}

fn unknown_client_type(t: &[u8]) -> Request<'static> {
    err(format!(
        "ERR Unknown client type '{}'",
        String::from_utf8_lossy(&t[..t.len().min(128)])
    ))
}

fn parse_client_list(args: Args<'_>) -> Request<'_> {
    let mut ids = Vec::new();
    let mut normal = true;
    let mut i = 2;
    while i < args.len() {
        let o = args.get(i);
        if o.eq_ignore_ascii_case(b"type") && i + 1 < args.len() {
            match client_type(args.get(i + 1)) {
                Some(t) => normal = t,
                None => return unknown_client_type(args.get(i + 1)),
            }
            i += 2;
        } else if o.eq_ignore_ascii_case(b"id") && i + 1 < args.len() {
            // Every remaining argument is an id.
            for a in args.skip(i + 1).iter() {
                match parse_i64(a) {
                    Some(id) if id > 0 => ids.push(id as u64),
                    _ => return err("ERR Invalid client ID"),
                }
            }
            break;
        } else {
            return err(SYNTAX);
        }
    }
    Request::Client(ClientCmd::List { ids, normal })
}

fn parse_client_kill(args: Args<'_>) -> Request<'_> {
    if args.len() == 3 {
        return Request::Client(ClientCmd::Kill(Box::new(KillFilter {
            old_form: true,
            addr: Some(args.get(2)),
            ..KillFilter::default()
        })));
    }
    let mut f = KillFilter {
        skip_me: true,
        ..KillFilter::default()
    };
    let mut i = 2;
    while i < args.len() {
        if i + 1 >= args.len() {
            return err(SYNTAX);
        }
        let (o, v) = (args.get(i), args.get(i + 1));
        let is = |s: &[u8]| o.eq_ignore_ascii_case(s);
        if is(b"id") {
            match parse_i64(v) {
                Some(id) if id > 0 => f.id = Some(id as u64),
                _ => return err("ERR client-id should be greater than 0"),
            }
        } else if is(b"addr") {
            f.addr = Some(v);
        } else if is(b"laddr") {
            f.laddr = Some(v);
        } else if is(b"user") {
            f.user = Some(v);
        } else if is(b"type") {
            match client_type(v) {
                Some(t) => f.normal = Some(t),
                None => return unknown_client_type(v),
            }
        } else if is(b"skipme") {
            if v.eq_ignore_ascii_case(b"yes") {
                f.skip_me = true;
            } else if v.eq_ignore_ascii_case(b"no") {
                f.skip_me = false;
            } else {
                return err(SYNTAX);
            }
        } else if is(b"maxage") {
            match parse_i64(v) {
                Some(age) if age >= 0 => f.max_age = Some(age as u64),
                _ => return err(NOT_INT),
            }
        } else {
            return err(SYNTAX);
        }
        i += 2;
    }
    Request::Client(ClientCmd::Kill(Box::new(f)))
}

fn parse_command_cmd(args: Args<'_>) -> Request<'_> {
    if args.len() == 1 {
        return Request::Command(CommandCmd::All);
    }
    let sub = args.get(1);
    let is = |s: &[u8]| sub.eq_ignore_ascii_case(s);
    if is(b"count") {
        Request::Command(CommandCmd::Count)
    } else if is(b"docs") {
        Request::Command(CommandCmd::Docs(args.skip(2)))
    } else if is(b"info") {
        Request::Command(CommandCmd::Info(args.skip(2)))
    } else if is(b"list") {
        Request::Command(CommandCmd::List)
    } else if is(b"help") {
        if args.len() != 2 {
            return arity_error("command|help");
        }
        Request::Command(CommandCmd::Help)
    } else {
        unknown_subcommand(sub, "COMMAND")
    }
}

/// Appends the RESP rendering of a response (RESP3 types when `resp3`).
pub fn encode(r: Response<'_>, resp3: bool, out: &mut Vec<u8>) {
    match r {
        Response::Ok | Response::Stored | Response::Authenticated | Response::Deleted => {
            out.extend_from_slice(b"+OK\r\n")
        }
        Response::Pong => out.extend_from_slice(b"+PONG\r\n"),
        Response::Simple(s) => line(out, b'+', s.as_bytes()),
        Response::Bulk(v) => bulk(out, b'$', v),
        Response::Nil if resp3 => out.extend_from_slice(b"_\r\n"),
        Response::Nil => out.extend_from_slice(b"$-1\r\n"),
        Response::NilArray if resp3 => out.extend_from_slice(b"_\r\n"),
        Response::NilArray => out.extend_from_slice(b"*-1\r\n"),
        Response::Int(n) => header(out, b':', n),
        Response::Double(d) => {
            let s = format_double(d);
            if resp3 {
                line(out, b',', s.as_bytes());
            } else {
                bulk(out, b'$', s.as_bytes());
            }
        }
        Response::Array(n) => header(out, b'*', n as i64),
        Response::Map(n) if resp3 => header(out, b'%', n as i64),
        Response::Map(n) => header(out, b'*', 2 * n as i64),
        Response::Set(n) if resp3 => header(out, b'~', n as i64),
        Response::Set(n) => header(out, b'*', n as i64),
        Response::Verbatim(v) if resp3 => {
            header(out, b'=', v.len() as i64 + 4);
            out.extend_from_slice(b"txt:");
            out.extend_from_slice(v);
            out.extend_from_slice(b"\r\n");
        }
        Response::Verbatim(v) => bulk(out, b'$', v),
        Response::Error(msg) => {
            out.push(b'-');
            // An error is one line: newlines inside would corrupt the stream.
            out.extend(
                msg.bytes()
                    .map(|b| if b == b'\r' || b == b'\n' { b' ' } else { b }),
            );
            out.extend_from_slice(b"\r\n");
        }
        Response::NoAuth => out.extend_from_slice(b"-NOAUTH Authentication required.\r\n"),
        Response::WrongPass => out.extend_from_slice(
            b"-WRONGPASS invalid username-password pair or user is disabled.\r\n",
        ),
    }
}

fn format_double(d: f64) -> String {
    if d.is_infinite() {
        if d > 0.0 { "inf".into() } else { "-inf".into() }
    } else if d.is_nan() {
        "nan".into()
    } else {
        format!("{d}")
    }
}

#[inline]
fn header(out: &mut Vec<u8>, tag: u8, n: i64) {
    out.push(tag);
    out.extend_from_slice(itoa::Buffer::new().format(n).as_bytes());
    out.extend_from_slice(b"\r\n");
}

#[inline]
fn bulk(out: &mut Vec<u8>, tag: u8, v: &[u8]) {
    let n = v.len();
    out.reserve(n + 16);
    // Most values are under 100 bytes: their header needs no number formatting.
    if n < 10 {
        out.extend_from_slice(&[tag, b'0' + n as u8, b'\r', b'\n']);
    } else if n < 100 {
        out.extend_from_slice(&[
            tag,
            b'0' + (n / 10) as u8,
            b'0' + (n % 10) as u8,
            b'\r',
            b'\n',
        ]);
    } else {
        header(out, tag, n as i64);
    }
    out.extend_from_slice(v);
    out.extend_from_slice(b"\r\n");
}

fn line(out: &mut Vec<u8>, tag: u8, s: &[u8]) {
    out.push(tag);
    out.extend_from_slice(s);
    out.extend_from_slice(b"\r\n");
}

pub mod docs;

#[cfg(test)]
mod tests;
