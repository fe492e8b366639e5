//! Shared driving code for the fuzz targets: a feed loop that calls a decoder the way the
//! server's connection loop does (same buffer discipline, same use of `need`), the checks every
//! decoded event must pass, and a RESP reply parser for checking what `cmd::execute` writes.

use kvcache::protocol::memcache::McDecoder;
use kvcache::protocol::resp::RespDecoder;
use kvcache::protocol::text::LineDecoder;
use kvcache::protocol::{Decoded, Limits, ObjectCmd, Request};

/// The fuzz input split into fixed parameter bytes and the byte stream to decode.
pub struct Input<'a> {
    head: [u8; 16],
    used: usize,
    /// What a client would send.
    pub stream: &'a [u8],
}

impl<'a> Input<'a> {
    /// Takes the first `params` bytes (at most 16) as parameters, zero-padded if short.
    pub fn new(data: &'a [u8], params: usize) -> Self {
        let n = data.len().min(params.min(16));
        let mut head = [0u8; 16];
        head[..n].copy_from_slice(&data[..n]);
        Input {
            head,
            used: 0,
            stream: &data[n..],
        }
    }

    /// The next parameter byte.
    pub fn byte(&mut self) -> u8 {
        let b = self.head[self.used % 16];
        self.used += 1;
        b
    }

    /// The next two parameter bytes as a little-endian number.
    pub fn u16(&mut self) -> u16 {
        u16::from_le_bytes([self.byte(), self.byte()])
    }
}

/// One decoder result, reduced to what must not depend on how the input was chunked.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Event {
    /// A request (its debug form) and the bytes it used.
    Frame(String, usize),
    /// Discarded bytes.
    Skip(usize),
    /// An error; a fatal one discards "whatever is buffered", so its length is not compared.
    Invalid {
        /// Error text.
        error: String,
        /// Bytes skipped (non-fatal only).
        consumed: Option<usize>,
    },
}

/// A decoder as the connection loop drives it.
pub trait Decoder {
    /// Decodes the front of `buf` and hands the result to `f` (the request borrows the decoder).
    fn decode_with<R>(&mut self, buf: &[u8], f: impl FnOnce(Decoded<Request<'_>>) -> R) -> R;
}

/// The line protocol's decoder with its line limit.
pub struct Text {
    /// The decoder.
    pub decoder: LineDecoder,
    /// `--max-line`.
    pub max_line: usize,
}

impl Decoder for Text {
    fn decode_with<R>(&mut self, buf: &[u8], f: impl FnOnce(Decoded<Request<'_>>) -> R) -> R {
        f(self.decoder.decode(buf, self.max_line))
    }
}

/// The RESP decoder with its limits.
pub struct Resp {
    /// The decoder.
    pub decoder: RespDecoder,
    /// The limits it enforces.
    pub limits: Limits,
}

impl Decoder for Resp {
    fn decode_with<R>(&mut self, buf: &[u8], f: impl FnOnce(Decoded<Request<'_>>) -> R) -> R {
        f(self.decoder.decode(buf, &self.limits))
    }
}

/// The memcached decoder with its limits (only `max_line` and `max_value` apply).
pub struct Memcache {
    /// The decoder.
    pub decoder: McDecoder,
    /// The limits it enforces.
    pub limits: Limits,
}

impl Decoder for Memcache {
    fn decode_with<R>(&mut self, buf: &[u8], f: impl FnOnce(Decoded<Request<'_>>) -> R) -> R {
        f(self.decoder.decode(buf, &self.limits))
    }
}

/// What the feed loop hands the caller for each frame: the request and its raw bytes.
pub type OnFrame<'f> = dyn FnMut(Request<'_>, &[u8]) -> bool + 'f;

/// Feeds `stream` to `dec` as the connection loop does, with the bytes arriving in pieces that
/// end at `cuts` (ascending; the last should be `stream.len()`). Between pieces the decoder is
/// only called again once `need` bytes are buffered. Checks the decoder contract on every call
/// and returns the events; `on_frame` sees every frame and returns false to stop (QUIT).
pub fn feed<D: Decoder>(
    dec: &mut D,
    stream: &[u8],
    cuts: &[usize],
    on_frame: &mut OnFrame<'_>,
) -> Vec<Event> {
    let mut events = Vec::new();
    let mut start = 0;
    let mut need = 0;
    for &end in cuts {
        let end = end.clamp(start, stream.len());
        loop {
            let avail = end - start;
            if avail == 0 || avail < need {
                break;
            }
            let input = &stream[start..end];
            let (event, next_need, go_on) = dec.decode_with(input, |d| match d {
                Decoded::Incomplete { need } => {
                    if let Some(n) = need {
                        assert!(n > avail, "need {n} with {avail} bytes buffered");
                    }
                    (None, need.unwrap_or(0), true)
                }
                Decoded::Skip { consumed } => {
                    assert!(
                        consumed > 0 && consumed <= avail,
                        "skip {consumed} of {avail}"
                    );
                    (Some(Event::Skip(consumed)), 0, true)
                }
                Decoded::Frame { value, consumed } => {
                    assert!(
                        consumed > 0 && consumed <= avail,
                        "frame {consumed} of {avail}"
                    );
                    let event = Event::Frame(format!("{value:?}"), consumed);
                    let go_on = on_frame(value, &input[..consumed]);
                    (Some(event), 0, go_on)
                }
                Decoded::Invalid {
                    error,
                    consumed,
                    fatal,
                } => {
                    assert!(consumed <= avail, "invalid {consumed} of {avail}");
                    assert!(
                        fatal || consumed > 0,
                        "a non-fatal error must make progress"
                    );
                    let consumed = (!fatal).then_some(consumed);
                    let e = Event::Invalid {
                        error: error.0,
                        consumed,
                    };
                    (Some(e), 0, !fatal)
                }
            });
            let Some(event) = event else {
                need = next_need;
                break;
            };
            start += match &event {
                Event::Frame(_, n) | Event::Skip(n) => *n,
                Event::Invalid { consumed, .. } => consumed.unwrap_or(avail),
            };
            need = 0;
            push_event(&mut events, event);
            if !go_on {
                return events;
            }
        }
    }
    events
}

/// Appends an event, merging runs of skipped bytes (and a skip run into the error that ends
/// it): the decoder drops an over-limit request in as many pieces as the input arrived in, and
/// only the total may not depend on the chunking. A fatal error discards whatever is buffered,
/// so the run before it is dropped with it.
fn push_event(events: &mut Vec<Event>, event: Event) {
    match (event, events.last_mut()) {
        (fatal @ Event::Invalid { consumed: None, .. }, Some(Event::Skip(_))) => {
            events.pop();
            events.push(fatal);
        }
        (Event::Skip(n), Some(Event::Skip(m))) => *m += n,
        (
            Event::Invalid {
                error,
                consumed: Some(c),
            },
            Some(Event::Skip(m)),
        ) => {
            let total = *m + c;
            events.pop();
            events.push(Event::Invalid {
                error,
                consumed: Some(total),
            });
        }
        (event, _) => events.push(event),
    }
}

/// The keys a request names, for checking the decoder's key limit.
pub fn keys<'a>(r: &Request<'a>) -> Vec<&'a [u8]> {
    match *r {
        Request::Get(k)
        | Request::Delete(k)
        | Request::Exists(k)
        | Request::GetDel(k)
        | Request::GetEx(k, _)
        | Request::Append(k, _)
        | Request::StrLen(k)
        | Request::IncrBy(k, _)
        | Request::Type(k)
        | Request::Expire(k, ..)
        | Request::Ttl(k, _)
        | Request::Persist(k)
        | Request::GetRange(k, ..)
        | Request::SetRange(k, ..)
        | Request::GetBit(k, _)
        | Request::SetBit(k, ..)
        | Request::BitCount(k, _)
        | Request::BitPos(k, ..)
        | Request::IncrByFloat(k, _)
        | Request::ExpireTime(k, _) => vec![k],
        Request::Rename(a, b, _) | Request::Copy(a, b, _) | Request::Lcs(a, b, _) => vec![a, b],
        Request::Object(
            ObjectCmd::Encoding(k)
            | ObjectCmd::RefCount(k)
            | ObjectCmd::IdleTime(k)
            | ObjectCmd::Freq(k),
        ) => vec![k],
        Request::Set { key, .. } => vec![key],
        Request::ExistsMany(a) | Request::Del(a) | Request::MGet(a) => a.iter().collect(),
        Request::MSet(a) | Request::MSetNx(a) => a.iter().step_by(2).collect(),
        _ => Vec::new(),
    }
}

/// The values a request carries.
pub fn values<'a>(r: &Request<'a>) -> Vec<&'a [u8]> {
    match *r {
        Request::Set { value, .. } => vec![value],
        Request::Append(_, v) | Request::SetRange(_, _, v) => vec![v],
        Request::MSet(a) | Request::MSetNx(a) => a.iter().skip(1).step_by(2).collect(),
        _ => Vec::new(),
    }
}

/// Splits one RESP request (multibulk or inline) independently of the decoder under test:
/// its arguments and the bytes it spans, or `None` if these bytes are not one whole request.
pub fn split_request(frame: &[u8]) -> Option<(Vec<&[u8]>, usize)> {
    fn line(buf: &[u8], pos: usize) -> Option<(&[u8], usize)> {
        let nl = buf[pos..].iter().position(|&b| b == b'\n')? + pos;
        let l = buf[pos..nl].strip_suffix(b"\r")?;
        Some((l, nl + 1))
    }
    if frame.first() == Some(&b'*') {
        let (h, mut pos) = line(frame, 0)?;
        let n: usize = std::str::from_utf8(&h[1..]).ok()?.parse().ok()?;
        let mut args = Vec::new();
        for _ in 0..n {
            let (h, p) = line(frame, pos)?;
            if h.first() != Some(&b'$') {
                return None;
            }
            let len: usize = std::str::from_utf8(&h[1..]).ok()?.parse().ok()?;
            let arg = frame.get(p..p + len)?;
            if frame.get(p + len..p + len + 2)? != b"\r\n" {
                return None;
            }
            args.push(arg);
            pos = p + len + 2;
        }
        Some((args, pos))
    } else {
        let nl = frame.iter().position(|&b| b == b'\n')?;
        let l = &frame[..nl];
        let l = l.strip_suffix(b"\r").unwrap_or(l);
        let args = l
            .split(|&b| b == b' ' || b == b'\t')
            .filter(|w| !w.is_empty())
            .collect();
        Some((args, nl + 1))
    }
}

/// Parses one complete RESP2/RESP3 value at `pos`, returning the position after it.
pub fn resp_value(buf: &[u8], pos: usize, depth: usize) -> Result<usize, String> {
    fn line(buf: &[u8], pos: usize) -> Result<(&[u8], usize), String> {
        let rest = &buf[pos..];
        let cr = rest
            .windows(2)
            .position(|w| w == b"\r\n")
            .ok_or_else(|| format!("unterminated line at {pos}"))?;
        let l = &rest[..cr];
        if l.contains(&b'\r') || l.contains(&b'\n') {
            return Err(format!("CR or LF inside a line at {pos}"));
        }
        Ok((l, pos + cr + 2))
    }
    fn int(l: &[u8]) -> Result<i64, String> {
        std::str::from_utf8(l)
            .ok()
            .and_then(|s| s.parse().ok())
            .ok_or_else(|| format!("bad integer {:?}", String::from_utf8_lossy(l)))
    }
    if depth > 64 {
        return Err("nesting too deep".into());
    }
    let tag = *buf.get(pos).ok_or("missing value")?;
    let (l, next) = line(buf, pos + 1)?;
    match tag {
        b'+' | b'-' => Ok(next),
        b':' => int(l).map(|_| next),
        b'_' if l.is_empty() => Ok(next),
        b'#' if l == b"t" || l == b"f" => Ok(next),
        b',' => {
            let s = std::str::from_utf8(l).map_err(|e| e.to_string())?;
            match s {
                "inf" | "-inf" | "nan" => Ok(next),
                _ => s.parse::<f64>().map(|_| next).map_err(|e| e.to_string()),
            }
        }
        b'$' | b'=' => {
            let n = int(l)?;
            if n == -1 && tag == b'$' {
                return Ok(next);
            }
            let n = usize::try_from(n).map_err(|_| "negative length")?;
            if tag == b'=' && (n < 4 || buf.get(next + 3) != Some(&b':')) {
                return Err("verbatim string without a format".into());
            }
            if buf.get(next + n..next + n + 2) != Some(b"\r\n") {
                return Err(format!("bulk of {n} not terminated at {next}"));
            }
            Ok(next + n + 2)
        }
        b'*' | b'~' | b'%' => {
            let n = int(l)?;
            if n == -1 && tag == b'*' {
                return Ok(next);
            }
            let n = usize::try_from(n).map_err(|_| "negative count")?;
            let n = if tag == b'%' { 2 * n } else { n };
            let mut p = next;
            for _ in 0..n {
                p = resp_value(buf, p, depth + 1)?;
            }
            Ok(p)
        }
        t => Err(format!("unknown type byte {t:#x} at {pos}")),
    }
}

/// Asserts that `out` is exactly one complete RESP value.
pub fn assert_one_resp_value(out: &[u8]) {
    match resp_value(out, 0, 0) {
        Ok(end) if end == out.len() => {}
        Ok(end) => panic!(
            "{} bytes after the reply: {:?}",
            out.len() - end,
            String::from_utf8_lossy(out)
        ),
        Err(e) => panic!("malformed reply ({e}): {:?}", String::from_utf8_lossy(out)),
    }
}

/// Asserts that `out` is exactly one line-protocol reply line.
pub fn assert_one_text_line(out: &[u8]) {
    let text = String::from_utf8_lossy(out);
    assert!(
        out.ends_with(b"\n"),
        "reply not newline-terminated: {text:?}"
    );
    assert_eq!(
        out.iter().filter(|&&b| b == b'\n').count(),
        1,
        "more than one line: {text:?}"
    );
    assert!(
        out.starts_with(b"OK") || out.starts_with(b"ERROR "),
        "reply neither OK nor ERROR: {text:?}"
    );
}
