//! memcached's text protocol (classic commands and meta commands, as memcached 1.6 defines them
//! in doc/protocol.txt): decoding into [`McRequest`]s, and the reply encoders `cmd` writes with.
//!
//! Rules kept from memcached: command names are lower-case, tokens are separated by spaces,
//! lines end in `\r\n` (a bare `\n` is accepted), keys are at most 250 bytes, a bad command
//! line gets `ERROR` or `CLIENT_ERROR <reason>` and the connection goes on. A storage command's
//! data block is only buffered once its declared length has been checked against
//! `--max-value-size`: a longer one is answered `SERVER_ERROR object too large for cache` and its
//! bytes are discarded as they arrive (never buffered); a data block not followed by `\r\n` is
//! answered `CLIENT_ERROR bad data chunk`, after which decoding resumes right after the
//! declared length plus two bytes, as memcached does. Only a command line longer than
//! `--max-line` closes the connection.

use std::borrow::Cow;

use super::{Decoded, Limits, ProtocolError, Request};

/// Longest key memcached accepts.
pub const KEY_MAX: usize = 250;
/// Longest opaque (`O`) token of a meta command (memcached refuses 32 and more).
pub const OPAQUE_MAX: usize = 31;
/// Relative expiration times above this many seconds (30 days) are absolute unix times.
pub const REALTIME_MAXDELTA: i64 = 60 * 60 * 24 * 30;
/// Most tokens a non-retrieval command line may have (memcached's `MAX_TOKENS` less the end).
const MAX_TOKENS: usize = 23;

/// The retrieval commands.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum GetKind {
    /// `get`
    Get,
    /// `gets`: with CAS uniques.
    Gets,
    /// `gat <exptime>`: get and touch.
    Gat,
    /// `gats <exptime>`: get and touch, with CAS uniques.
    Gats,
}

impl GetKind {
    /// Whether the reply carries CAS uniques.
    pub fn with_cas(self) -> bool {
        matches!(self, GetKind::Gets | GetKind::Gats)
    }
}

/// The storage commands.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum StoreCmd {
    /// `set`: store unconditionally.
    Set,
    /// `add`: only if absent.
    Add,
    /// `replace`: only if present.
    Replace,
    /// `append`: after the existing data.
    Append,
    /// `prepend`: before the existing data.
    Prepend,
    /// `cas`: only if the CAS unique still matches.
    Cas,
}

/// The space-separated keys of a retrieval command, borrowed from the line (already checked).
#[derive(Clone, Copy)]
pub struct Keys<'a>(&'a [u8]);

impl<'a> Keys<'a> {
    /// Every key, in order.
    pub fn iter(&self) -> impl Iterator<Item = &'a [u8]> + 'a {
        tokens(self.0)
    }
}

impl std::fmt::Debug for Keys<'_> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_list()
            .entries(self.iter().map(String::from_utf8_lossy))
            .finish()
    }
}

/// The meta commands.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum MetaCmd {
    /// `mg`: meta get.
    Get,
    /// `ms`: meta set.
    Set,
    /// `md`: meta delete.
    Delete,
    /// `ma`: meta arithmetic.
    Arith,
}

/// The flags of a meta command: the tokens as sent (already checked by the decoder) and which
/// flags are present. Arguments are read from the tokens when asked for, so a request stays
/// small: `Request` is moved for every request of every protocol.
#[derive(Clone, Copy, Default)]
pub struct MetaFlags<'a> {
    /// The flag tokens as sent (space-separated).
    pub tokens: &'a [u8],
}

/// The bit of a flag character (letters only; others are refused by the decoder).
fn flag_bit(c: u8) -> u64 {
    match c {
        b'A'..=b'Z' => 1 << (c - b'A'),
        b'a'..=b'z' => 1 << (26 + c - b'a'),
        _ => 0,
    }
}

impl<'a> MetaFlags<'a> {
    /// The flag characters in request order (the reply lists its flags in this order).
    pub fn order(&self) -> impl Iterator<Item = u8> + 'a {
        tokens(self.tokens).map(|t| t[0])
    }

    /// Whether flag `c` was sent.
    #[inline]
    pub fn has(&self, c: u8) -> bool {
        self.arg(c).is_some()
    }

    /// The argument of flag `c` (the rest of its token), if it was sent.
    pub fn arg(&self, c: u8) -> Option<&'a [u8]> {
        tokens(self.tokens).find(|t| t[0] == c).map(|t| &t[1..])
    }

    fn num(&self, c: u8) -> Option<i64> {
        self.arg(c).and_then(int32)
    }

    fn unum(&self, c: u8) -> Option<u64> {
        self.arg(c).and_then(uint64)
    }

    /// `b`: the key was sent base64-encoded.
    pub fn base64(&self) -> bool {
        self.has(b'b')
    }
    /// `v`: return the value.
    pub fn value(&self) -> bool {
        self.has(b'v')
    }
    /// `q`: no reply for the usual outcome (a miss for mg; stored / deleted for ms, md, ma).
    pub fn quiet(&self) -> bool {
        self.has(b'q')
    }
    /// `u`: do not bump the item in the LRU.
    pub fn no_bump(&self) -> bool {
        self.has(b'u')
    }
    /// `I`: invalidate (md: mark stale; ms: accept an older CAS, storing the item as stale).
    pub fn invalidate(&self) -> bool {
        self.has(b'I')
    }
    /// `k`: return the key.
    pub fn key(&self) -> bool {
        self.has(b'k')
    }
    /// `O`: the opaque token copied to the reply.
    pub fn opaque(&self) -> Option<&'a [u8]> {
        self.arg(b'O')
    }
    /// `N`: vivify on miss with this TTL.
    pub fn vivify(&self) -> Option<i64> {
        self.num(b'N')
    }
    /// `R`: win the recache token if the remaining TTL is below this.
    pub fn recache(&self) -> Option<i64> {
        self.num(b'R')
    }
    /// `T`: new TTL.
    pub fn ttl(&self) -> Option<i64> {
        self.num(b'T')
    }
    /// `C`: compare this CAS unique.
    pub fn compare_cas(&self) -> Option<u64> {
        self.unum(b'C')
    }
    /// `F`: client flags to store.
    pub fn client_flags(&self) -> Option<u32> {
        self.arg(b'F').and_then(uint32)
    }
    /// `M`: mode (ms: `E` add, `A` append, `P` prepend, `R` replace, `S` set; ma: `I`/`+`
    /// increment, `D`/`-` decrement).
    pub fn mode(&self) -> Option<u8> {
        self.arg(b'M').map(|a| a[0])
    }
    /// `D`: arithmetic delta.
    pub fn delta(&self) -> Option<u64> {
        self.unum(b'D')
    }
    /// `J`: initial value of a vivified counter.
    pub fn initial(&self) -> Option<u64> {
        self.unum(b'J')
    }
}

impl std::fmt::Debug for MetaFlags<'_> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "MetaFlags({:?})", String::from_utf8_lossy(self.tokens))
    }
}

/// A decoded memcached request, borrowing from the read buffer.
#[derive(Debug)]
pub enum McRequest<'a> {
    /// `get` / `gets` / `gat` / `gats`.
    Get {
        /// Which command.
        kind: GetKind,
        /// The new expiration time (gat / gats only).
        exptime: i64,
        /// The keys.
        keys: Keys<'a>,
    },
    /// `set` / `add` / `replace` / `append` / `prepend` / `cas`.
    Store {
        /// Which command.
        cmd: StoreCmd,
        /// Key.
        key: &'a [u8],
        /// Client flags.
        flags: u32,
        /// Expiration time as sent.
        exptime: i32,
        /// The data block.
        value: &'a [u8],
        /// The CAS unique (`cas` only).
        cas: u64,
        /// `noreply`.
        noreply: bool,
    },
    /// `delete key [0] [noreply]`.
    Delete {
        /// Key.
        key: &'a [u8],
        /// `noreply`.
        noreply: bool,
    },
    /// `incr` / `decr`.
    Arith {
        /// Key.
        key: &'a [u8],
        /// Increment (true) or decrement.
        incr: bool,
        /// The amount.
        delta: u64,
        /// `noreply`.
        noreply: bool,
    },
    /// `touch key exptime [noreply]`.
    Touch {
        /// Key.
        key: &'a [u8],
        /// New expiration time.
        exptime: i64,
        /// `noreply`.
        noreply: bool,
    },
    /// `flush_all [delay] [noreply]`.
    FlushAll {
        /// Seconds until the flush (0 = now), or an absolute unix time.
        delay: i64,
        /// `noreply`.
        noreply: bool,
    },
    /// `verbosity level [noreply]` (accepted, changes nothing).
    Verbosity {
        /// `noreply`.
        noreply: bool,
    },
    /// `version`.
    Version,
    /// `stats [group]`.
    Stats(Option<&'a [u8]>),
    /// `quit`: close without a reply.
    Quit,
    /// `mg` / `ms` / `md` / `ma`.
    Meta {
        /// Which command.
        cmd: MetaCmd,
        /// The key as sent (base64 with the `b` flag: see [`meta_key`]).
        key: &'a [u8],
        /// Flags.
        flags: MetaFlags<'a>,
        /// The data block (ms only).
        value: &'a [u8],
    },
    /// `mn`: answers `MN`.
    Noop,
    /// A storage command whose data block is over `--max-value-size`: the block is being
    /// discarded; answer `SERVER_ERROR object too large for cache` and (set only) remove the key,
    /// so a stale value does not outlive the failed write (as memcached does).
    TooLarge {
        /// Key (base64 when `base64`).
        key: &'a [u8],
        /// The key was sent base64-encoded (ms with `b`).
        base64: bool,
        /// Whether it was a plain set (set / ms in set mode).
        set: bool,
        /// `noreply` (a meta command's error is always sent).
        noreply: bool,
    },
    /// A data block not followed by `\r\n`: nothing is stored; answer `CLIENT_ERROR bad data
    /// chunk` unless `noreply`.
    BadChunk {
        /// `noreply`.
        noreply: bool,
    },
}

/// Splits on runs of spaces, as memcached's tokenizer does (tabs are part of tokens).
fn tokens(line: &[u8]) -> impl Iterator<Item = &[u8]> {
    line.split(|&b| b == b' ').filter(|t| !t.is_empty())
}

/// Incremental decoder for one memcached connection: remembers how far it has scanned for a
/// newline and how many bytes of a refused data block are still to be discarded.
#[derive(Debug, Default, Clone)]
pub struct McDecoder {
    scanned: usize,
    swallow: usize,
}

/// A decoding failure: the exact reply line (without `\r\n`), and whether the data block that
/// follows the line must be discarded (its length).
struct Fail {
    msg: &'static str,
    swallow: usize,
}

fn fail(msg: &'static str) -> Fail {
    Fail { msg, swallow: 0 }
}

const ERROR: &str = "ERROR";
const BAD_FORMAT: &str = "CLIENT_ERROR bad command line format";

impl McDecoder {
    /// Decodes the first request of `buf` (which starts at a request boundary).
    pub fn decode<'a>(&mut self, buf: &'a [u8], limits: &Limits) -> Decoded<Request<'a>> {
        if self.swallow > 0 {
            let n = self.swallow.min(buf.len());
            self.swallow -= n;
            return Decoded::Skip { consumed: n };
        }
        let limit = buf.len().min(limits.max_line.saturating_add(1));
        let from = self.scanned.min(limit);
        let Some(pos) = memchr::memchr(b'\n', &buf[from..limit]) else {
            if buf.len() > limits.max_line {
                self.scanned = 0;
                return Decoded::Invalid {
                    error: ProtocolError::new("CLIENT_ERROR line too long"),
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
        let header = from + pos + 1;
        let line = &buf[..from + pos];
        let line = line.strip_suffix(b"\r").unwrap_or(line);
        match parse(line, header, buf, limits) {
            Ok(Parsed::Done(req, consumed)) => Decoded::Frame {
                value: Request::Memcache(req),
                consumed,
            },
            Ok(Parsed::NeedData(total)) => Decoded::Incomplete { need: Some(total) },
            Ok(Parsed::Refused(req, swallow)) => {
                self.swallow = swallow;
                Decoded::Frame {
                    value: Request::Memcache(req),
                    consumed: header,
                }
            }
            Err(f) => {
                self.swallow = f.swallow;
                Decoded::Invalid {
                    error: ProtocolError::new(f.msg),
                    consumed: header,
                    fatal: false,
                }
            }
        }
    }
}

enum Parsed<'a> {
    /// A request that used this many bytes.
    Done(McRequest<'a>, usize),
    /// The data block is not all here: the total bytes needed.
    NeedData(usize),
    /// A refused data block: the request after the line, and the bytes to discard after it.
    Refused(McRequest<'a>, usize),
}

/// Parses one command line; `header` is its length with the terminator, `buf` everything
/// buffered (for the data block).
fn parse<'a>(
    line: &'a [u8],
    header: usize,
    buf: &'a [u8],
    limits: &Limits,
) -> Result<Parsed<'a>, Fail> {
    let mut it = tokens(line);
    let Some(name) = it.next() else {
        return Err(fail(ERROR));
    };
    let rest = &line[name.as_ptr() as usize - line.as_ptr() as usize + name.len()..];
    let done = |r| Ok(Parsed::Done(r, header));
    match name {
        b"get" | b"gets" => {
            let keys = check_keys(rest)?;
            let kind = if name == b"get" {
                GetKind::Get
            } else {
                GetKind::Gets
            };
            done(McRequest::Get {
                kind,
                exptime: 0,
                keys,
            })
        }
        b"gat" | b"gats" => {
            let Some(exp) = it.next() else {
                return Err(fail(ERROR));
            };
            let after = &rest[exp.as_ptr() as usize - rest.as_ptr() as usize + exp.len()..];
            let keys = check_keys(after)?;
            let exptime = int32(exp).ok_or(fail("CLIENT_ERROR invalid exptime argument"))?;
            let kind = if name == b"gat" {
                GetKind::Gat
            } else {
                GetKind::Gats
            };
            done(McRequest::Get {
                kind,
                exptime,
                keys,
            })
        }
        b"set" | b"add" | b"replace" | b"append" | b"prepend" | b"cas" => {
            storage(name, rest, header, buf, limits)
        }
        b"delete" => {
            let t = collect(rest)?;
            if t.is_empty() || t.len() > 3 {
                return Err(fail(ERROR));
            }
            let key = check_key(t[0])?;
            let noreply = t.len() > 1 && t[t.len() - 1] == b"noreply";
            let ok = match t.len() {
                1 => true,
                2 => t[1] == b"0" || noreply,
                _ => t[1] == b"0" && noreply,
            };
            if !ok {
                return Err(fail(
                    "CLIENT_ERROR bad command line format.  Usage: delete <key> [noreply]",
                ));
            }
            done(McRequest::Delete { key, noreply })
        }
        b"incr" | b"decr" => {
            let t = collect(rest)?;
            if !(2..=3).contains(&t.len()) {
                return Err(fail(ERROR));
            }
            let key = check_key(t[0])?;
            let delta = uint64(t[1]).ok_or(fail("CLIENT_ERROR invalid numeric delta argument"))?;
            done(McRequest::Arith {
                key,
                incr: name == b"incr",
                delta,
                noreply: t.get(2) == Some(&b"noreply"[..]),
            })
        }
        b"touch" => {
            let t = collect(rest)?;
            if !(2..=3).contains(&t.len()) {
                return Err(fail(ERROR));
            }
            let key = check_key(t[0])?;
            let exptime = int32(t[1]).ok_or(fail("CLIENT_ERROR invalid exptime argument"))?;
            done(McRequest::Touch {
                key,
                exptime,
                noreply: t.get(2) == Some(&b"noreply"[..]),
            })
        }
        b"flush_all" => {
            let t = collect(rest)?;
            if t.len() > 2 {
                return Err(fail(ERROR));
            }
            let noreply = t.last() == Some(&b"noreply"[..]);
            let args = t.len() - usize::from(noreply);
            let delay = if args == 0 {
                0
            } else {
                int32(t[0]).ok_or(fail("CLIENT_ERROR invalid exptime argument"))?
            };
            done(McRequest::FlushAll { delay, noreply })
        }
        b"verbosity" => {
            let t = collect(rest)?;
            if !(1..=2).contains(&t.len()) {
                return Err(fail(ERROR));
            }
            done(McRequest::Verbosity {
                noreply: t.last() == Some(&b"noreply"[..]),
            })
        }
        b"version" => done(McRequest::Version),
        b"quit" => done(McRequest::Quit),
        b"stats" => {
            let t = collect(rest)?;
            done(McRequest::Stats(t.first()))
        }
        b"mn" => done(McRequest::Noop),
        b"mg" | b"ms" | b"md" | b"ma" => meta(name, rest, header, buf, limits),
        _ => Err(fail(ERROR)),
    }
}

/// The tokens of the rest of a line, without allocating: no command but the retrievals (which
/// do not use this) takes more than [`ARGS_MAX`]; more than memcached's token limit is `ERROR`.
fn collect(rest: &[u8]) -> Result<Tokens<'_>, Fail> {
    let mut t = Tokens {
        items: [&[]; ARGS_MAX],
        len: 0,
    };
    for tok in tokens(rest) {
        if t.len >= MAX_TOKENS {
            return Err(fail(ERROR));
        }
        if t.len < ARGS_MAX {
            t.items[t.len] = tok;
        }
        t.len += 1;
    }
    Ok(t)
}

/// Most arguments any non-retrieval command has (`cas key flags exptime bytes unique noreply`).
const ARGS_MAX: usize = 6;

/// The first [`ARGS_MAX`] tokens of a line and how many there were in all.
struct Tokens<'a> {
    items: [&'a [u8]; ARGS_MAX],
    len: usize,
}

impl<'a> Tokens<'a> {
    fn len(&self) -> usize {
        self.len
    }
    fn is_empty(&self) -> bool {
        self.len == 0
    }
    fn first(&self) -> Option<&'a [u8]> {
        (self.len > 0).then(|| self.items[0])
    }
    fn last(&self) -> Option<&'a [u8]> {
        (self.len > 0 && self.len <= ARGS_MAX).then(|| self.items[self.len - 1])
    }
    fn get(&self, i: usize) -> Option<&'a [u8]> {
        (i < self.len.min(ARGS_MAX)).then(|| self.items[i])
    }
}

impl<'a> std::ops::Index<usize> for Tokens<'a> {
    type Output = &'a [u8];
    fn index(&self, i: usize) -> &&'a [u8] {
        &self.items[..self.len.min(ARGS_MAX)][i]
    }
}

fn check_key(k: &[u8]) -> Result<&[u8], Fail> {
    if k.len() > KEY_MAX {
        return Err(fail(BAD_FORMAT));
    }
    Ok(k)
}

fn check_keys(rest: &[u8]) -> Result<Keys<'_>, Fail> {
    let mut n = 0;
    for k in tokens(rest) {
        check_key(k)?;
        n += 1;
    }
    if n == 0 {
        return Err(fail(ERROR));
    }
    Ok(Keys(rest))
}

/// A signed 32-bit decimal (memcached's `safe_strtol`): exptimes, lengths, TTL tokens.
pub fn int32(t: &[u8]) -> Option<i64> {
    let (neg, digits) = match t.first() {
        Some(b'-') => (true, &t[1..]),
        Some(b'+') => (false, &t[1..]),
        _ => (false, t),
    };
    // Range-checked before the sign is applied, so no magnitude can overflow.
    let n = uint64(digits)?;
    if n > 1 << 31 {
        return None;
    }
    let n = if neg { -(n as i64) } else { n as i64 };
    (i32::MIN as i64..=i32::MAX as i64)
        .contains(&n)
        .then_some(n)
}

/// An unsigned 64-bit decimal: digits only (an optional `+`), no overflow.
pub fn uint64(t: &[u8]) -> Option<u64> {
    let t = t.strip_prefix(b"+").unwrap_or(t);
    if t.is_empty() || t.len() > 20 || !t.iter().all(u8::is_ascii_digit) {
        return None;
    }
    t.iter().try_fold(0u64, |n, &d| {
        n.checked_mul(10)?.checked_add((d - b'0') as u64)
    })
}

fn uint32(t: &[u8]) -> Option<u32> {
    uint64(t).and_then(|n| u32::try_from(n).ok())
}

/// The data block after a header of `header` bytes: complete, incomplete, or not terminated.
fn data_block(buf: &[u8], header: usize, len: usize) -> Result<&[u8], Option<usize>> {
    let total = header + len + 2;
    if buf.len() < total {
        return Err(Some(total));
    }
    if &buf[header + len..total] != b"\r\n" {
        return Err(None);
    }
    Ok(&buf[header..header + len])
}

fn storage<'a>(
    name: &[u8],
    rest: &'a [u8],
    header: usize,
    buf: &'a [u8],
    limits: &Limits,
) -> Result<Parsed<'a>, Fail> {
    let cmd = match name {
        b"set" => StoreCmd::Set,
        b"add" => StoreCmd::Add,
        b"replace" => StoreCmd::Replace,
        b"append" => StoreCmd::Append,
        b"prepend" => StoreCmd::Prepend,
        _ => StoreCmd::Cas,
    };
    let t = collect(rest)?;
    let base = if cmd == StoreCmd::Cas { 5 } else { 4 };
    if t.len() != base && t.len() != base + 1 {
        return Err(fail(ERROR));
    }
    let noreply = t.len() == base + 1 && t[base] == b"noreply";
    let key = check_key(t[0])?;
    let flags = uint32(t[1]).ok_or(fail(BAD_FORMAT))?;
    let exptime = int32(t[2]).ok_or(fail(BAD_FORMAT))? as i32;
    let len = int32(t[3]).ok_or(fail(BAD_FORMAT))?;
    let cas = if cmd == StoreCmd::Cas {
        uint64(t[4]).ok_or(fail(BAD_FORMAT))?
    } else {
        0
    };
    if len < 0 {
        return Err(fail(BAD_FORMAT));
    }
    let len = len as usize;
    if len > limits.max_value {
        let req = McRequest::TooLarge {
            key,
            base64: false,
            set: cmd == StoreCmd::Set,
            noreply,
        };
        return Ok(Parsed::Refused(req, len + 2));
    }
    match data_block(buf, header, len) {
        Ok(value) => Ok(Parsed::Done(
            McRequest::Store {
                cmd,
                key,
                flags,
                exptime,
                value,
                cas,
                noreply,
            },
            header + len + 2,
        )),
        Err(Some(total)) => Ok(Parsed::NeedData(total)),
        Err(None) => Ok(Parsed::Done(
            McRequest::BadChunk { noreply },
            header + len + 2,
        )),
    }
}

fn meta<'a>(
    name: &[u8],
    rest: &'a [u8],
    header: usize,
    buf: &'a [u8],
    limits: &Limits,
) -> Result<Parsed<'a>, Fail> {
    let cmd = match name {
        b"mg" => MetaCmd::Get,
        b"ms" => MetaCmd::Set,
        b"md" => MetaCmd::Delete,
        _ => MetaCmd::Arith,
    };
    let mut it = tokens(rest);
    let Some(wire_key) = it.next() else {
        return Err(fail(if cmd == MetaCmd::Set {
            BAD_FORMAT
        } else {
            ERROR
        }));
    };
    if wire_key.len() > KEY_MAX {
        return Err(fail(BAD_FORMAT));
    }
    let mut after = &rest[wire_key.as_ptr() as usize - rest.as_ptr() as usize + wire_key.len()..];
    let mut len = 0usize;
    if cmd == MetaCmd::Set {
        let Some(l) = it.next() else {
            return Err(fail(BAD_FORMAT));
        };
        let n = int32(l).filter(|&n| n >= 0).ok_or(fail(BAD_FORMAT))?;
        len = n as usize;
        after = &after[l.as_ptr() as usize - after.as_ptr() as usize + l.len()..];
    }
    // After the length is known, errors discard the data block (memcached "swallows" it).
    let swallow = if cmd == MetaCmd::Set && len <= limits.max_value {
        len + 2
    } else {
        0
    };
    let flags = meta_flags(after).map_err(|msg| Fail {
        // md and ma parse their flags on their own in memcached, with one wording.
        msg: match cmd {
            MetaCmd::Delete | MetaCmd::Arith => "CLIENT_ERROR invalid or duplicate flag",
            _ => msg,
        },
        swallow,
    })?;
    if flags.base64() && meta_key(wire_key, true).is_none_or(|k| k.is_empty() || k.len() > KEY_MAX)
    {
        return Err(Fail {
            msg: "CLIENT_ERROR error decoding key",
            swallow,
        });
    }
    let key = wire_key;
    if cmd != MetaCmd::Set {
        return Ok(Parsed::Done(
            McRequest::Meta {
                cmd,
                key,
                flags,
                value: &[],
            },
            header,
        ));
    }
    if len > limits.max_value {
        let set = flags.mode().is_none_or(|m| m == b'S' || m == b's');
        let req = McRequest::TooLarge {
            key,
            base64: flags.base64(),
            set,
            noreply: false,
        };
        return Ok(Parsed::Refused(req, len + 2));
    }
    match data_block(buf, header, len) {
        Ok(value) => Ok(Parsed::Done(
            McRequest::Meta {
                cmd,
                key,
                flags,
                value,
            },
            header + len + 2,
        )),
        Err(Some(total)) => Ok(Parsed::NeedData(total)),
        Err(None) => Ok(Parsed::Done(
            McRequest::BadChunk { noreply: false },
            header + len + 2,
        )),
    }
}

/// Parses meta flags; the error is memcached's reply line.
fn meta_flags(text: &[u8]) -> Result<MetaFlags<'_>, &'static str> {
    let mut present = 0u64;
    let bad_token = "CLIENT_ERROR bad token in command line format";
    for t in tokens(text) {
        let c = t[0];
        let arg = &t[1..];
        let bit = flag_bit(c);
        if bit == 0 {
            return Err("CLIENT_ERROR invalid flag");
        }
        if present & bit != 0 {
            return Err("CLIENT_ERROR duplicate flag");
        }
        present |= bit;
        match c {
            // Flags without arguments; P and L are proxy hints.
            b'b' | b'v' | b'q' | b'u' | b'I' | b'k' | b'c' | b'f' | b's' | b't' | b'P' | b'L' => {}
            b'O' => {
                if arg.len() > OPAQUE_MAX {
                    return Err("CLIENT_ERROR opaque token too long");
                }
            }
            b'N' | b'R' | b'T' => {
                int32(arg).ok_or(bad_token)?;
            }
            b'C' | b'D' | b'J' => {
                uint64(arg).ok_or(bad_token)?;
            }
            b'F' => {
                uint32(arg).ok_or(BAD_FORMAT)?;
            }
            b'M' => {
                if arg.len() != 1 {
                    return Err("CLIENT_ERROR incorrect length for M token");
                }
            }
            // Not implemented: h (hit before) and l (last access) need per-item access
            // history the store does not keep; E (explicit CAS) needs a store write that sets
            // a given CAS unique. Refused rather than answered with made-up values.
            _ => return Err("CLIENT_ERROR invalid flag"),
        }
    }
    Ok(MetaFlags { tokens: text })
}

/// A meta command's key: as sent, or base64-decoded with the `b` flag (`None` if malformed).
pub fn meta_key(wire: &[u8], base64: bool) -> Option<Cow<'_, [u8]>> {
    if base64 {
        base64_decode(wire).map(Cow::Owned)
    } else {
        Some(Cow::Borrowed(wire))
    }
}

const B64: &[u8; 64] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";

/// Standard base64 with padding (the `b` flag's key encoding); `None` if malformed.
pub fn base64_decode(s: &[u8]) -> Option<Vec<u8>> {
    if s.is_empty() || !s.len().is_multiple_of(4) {
        return None;
    }
    let mut out = Vec::with_capacity(s.len() / 4 * 3);
    let chunks = s.len() / 4;
    for (i, c) in s.chunks(4).enumerate() {
        let last = i + 1 == chunks;
        let pad = c.iter().rev().take_while(|&&b| b == b'=').count();
        if pad > 2 || (pad > 0 && !last) {
            return None;
        }
        let mut n = 0u32;
        for &b in &c[..4 - pad] {
            let v = B64.iter().position(|&x| x == b)? as u32;
            n = n << 6 | v;
        }
        n <<= 6 * pad as u32;
        let bytes = [(n >> 16) as u8, (n >> 8) as u8, n as u8];
        out.extend_from_slice(&bytes[..3 - pad]);
    }
    Some(out)
}

// ---- Reply encoding -------------------------------------------------------------------------

/// Appends a line and its `\r\n`.
#[inline]
pub fn line(out: &mut Vec<u8>, text: &[u8]) {
    out.extend_from_slice(text);
    out.extend_from_slice(b"\r\n");
}

/// Appends a decimal number.
#[inline]
pub fn number(out: &mut Vec<u8>, n: impl itoa::Integer) {
    out.extend_from_slice(itoa::Buffer::new().format(n).as_bytes());
}

/// Appends `VALUE <key> <flags> <bytes> [<cas>]\r\n<data>\r\n`.
#[inline]
pub fn value(out: &mut Vec<u8>, key: &[u8], flags: u32, data: &[u8], cas: Option<u64>) {
    out.reserve(key.len() + data.len() + 48);
    out.extend_from_slice(b"VALUE ");
    out.extend_from_slice(key);
    out.push(b' ');
    number(out, flags);
    out.push(b' ');
    number(out, data.len());
    if let Some(c) = cas {
        out.push(b' ');
        number(out, c);
    }
    out.extend_from_slice(b"\r\n");
    out.extend_from_slice(data);
    out.extend_from_slice(b"\r\n");
}

/// Appends `END\r\n`, the end of a retrieval reply.
#[inline]
pub fn end(out: &mut Vec<u8>) {
    out.extend_from_slice(b"END\r\n");
}

/// Appends ` <flag><number>` to a meta reply line.
pub fn meta_num(out: &mut Vec<u8>, flag: u8, n: impl itoa::Integer) {
    out.push(b' ');
    out.push(flag);
    number(out, n);
}

/// Appends ` <flag><token>` to a meta reply line.
pub fn meta_token(out: &mut Vec<u8>, flag: u8, token: &[u8]) {
    out.push(b' ');
    out.push(flag);
    out.extend_from_slice(token);
}

/// Renders a protocol-neutral error for a memcached client: messages already worded for
/// memcached (`ERROR`, `CLIENT_ERROR ...`, `SERVER_ERROR ...`) go as they are; others (the
/// connection layer's, such as a request timeout) become `SERVER_ERROR <message>`.
pub fn encode_error(msg: &str, out: &mut Vec<u8>) {
    if msg == "ERROR" || msg.starts_with("CLIENT_ERROR ") || msg.starts_with("SERVER_ERROR ") {
        line(out, msg.as_bytes());
    } else {
        out.extend_from_slice(b"SERVER_ERROR ");
        let text = match msg.split_once(' ') {
            Some((code, rest)) if code.bytes().all(|b| b.is_ascii_uppercase()) => rest,
            _ => msg,
        };
        line(out, text.as_bytes());
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn lim() -> Limits {
        Limits {
            max_value: 1000,
            max_line: 2048,
            ..Limits::default()
        }
    }

    /// Decodes everything in `input` (all of it buffered at once), describing each event.
    fn run(input: &[u8]) -> Vec<String> {
        let mut d = McDecoder::default();
        let mut at = 0;
        let mut out = Vec::new();
        while at < input.len() {
            match d.decode(&input[at..], &lim()) {
                Decoded::Frame { value, consumed } => {
                    let Request::Memcache(r) = value else {
                        panic!("not a memcache request")
                    };
                    out.push(format!("{r:?}"));
                    at += consumed;
                }
                Decoded::Invalid {
                    error,
                    consumed,
                    fatal,
                } => {
                    out.push(format!(
                        "! {}{}",
                        error.0,
                        if fatal { " (fatal)" } else { "" }
                    ));
                    at += consumed;
                }
                Decoded::Skip { consumed } => {
                    out.push(format!("skip {consumed}"));
                    at += consumed;
                }
                Decoded::Incomplete { need } => {
                    out.push(format!("incomplete {need:?}"));
                    break;
                }
            }
        }
        out
    }

    #[test]
    fn storage_commands_read_their_data_block() {
        let r = run(b"set k 5 10 3\r\nabc\r\ncas k 1 0 2 99 noreply\r\nxy\r\n");
        assert_eq!(r.len(), 2);
        assert!(
            r[0].contains("cmd: Set") && r[0].contains("flags: 5") && r[0].contains("[97, 98, 99]")
        );
        assert!(
            r[1].contains("cmd: Cas") && r[1].contains("cas: 99") && r[1].contains("noreply: true")
        );
        // Binary data, \r\n inside included.
        let r = run(b"set k 0 0 4\r\n\r\n\0\xff\r\n");
        assert!(r[0].contains("[13, 10, 0, 255]"), "{r:?}");
    }

    #[test]
    fn a_partial_data_block_asks_for_exactly_the_rest() {
        assert_eq!(run(b"set k 0 0 10\r\nabc"), ["incomplete Some(26)"]);
        assert_eq!(run(b"set k 0 0 10"), ["incomplete Some(13)"]);
    }

    #[test]
    fn bad_data_chunk_resyncs_after_the_declared_length() {
        let r = run(b"set a 0 0 3\r\nabcd\r\nget a\r\n");
        assert_eq!(r[0], "BadChunk { noreply: false }");
        // memcached consumed 3 + 2 bytes: the stray "\n" is an empty command line.
        assert_eq!(r[1], "! ERROR");
        assert!(r[2].starts_with("Get"), "{r:?}");
    }

    #[test]
    fn oversized_values_are_refused_before_buffering() {
        let mut d = McDecoder::default();
        let input = b"set big 0 0 2000000000\r\n";
        match d.decode(input, &lim()) {
            Decoded::Frame { value, consumed } => {
                assert_eq!(consumed, input.len());
                assert!(format!("{value:?}").contains("TooLarge"));
            }
            other => panic!("{other:?}"),
        }
        // The next bytes are discarded as they come, whatever they are.
        match d.decode(b"get x\r\n", &lim()) {
            Decoded::Skip { consumed: 7 } => {}
            other => panic!("{other:?}"),
        }
        assert_eq!(d.swallow, 2_000_000_002 - 7);
    }

    #[test]
    fn command_errors_match_memcached() {
        assert_eq!(run(b"\r\n"), ["! ERROR"]);
        assert_eq!(run(b"GET a\r\n"), ["! ERROR"]);
        assert_eq!(run(b"get\r\n"), ["! ERROR"]);
        assert_eq!(run(b"set a 0 0\r\n"), ["! ERROR"]);
        assert_eq!(run(b"set a x 0 3\r\n"), [format!("! {BAD_FORMAT}")]);
        assert_eq!(run(b"set a 0 0 -1\r\n"), [format!("! {BAD_FORMAT}")]);
        let long = format!("get {}\r\n", "k".repeat(251));
        assert_eq!(run(long.as_bytes()), [format!("! {BAD_FORMAT}")]);
        assert_eq!(
            run(b"incr a x\r\n"),
            ["! CLIENT_ERROR invalid numeric delta argument"]
        );
        assert_eq!(
            run(b"incr a -1\r\n"),
            ["! CLIENT_ERROR invalid numeric delta argument"]
        );
        assert_eq!(
            run(b"touch a x\r\n"),
            ["! CLIENT_ERROR invalid exptime argument"]
        );
        assert!(run(b"delete a 5\r\n")[0].contains("Usage: delete"));
        assert_eq!(
            run(b"delete a 0 noreply\r\n"),
            ["Delete { key: [97], noreply: true }"]
        );
        let r = run(&[b"get ".as_slice(), &[b'a'; 3000], b"\r\n"].concat());
        assert_eq!(r, ["! CLIENT_ERROR line too long (fatal)"]);
    }

    #[test]
    fn meta_flags_parse_and_keep_their_order() {
        let r = run(b"mg key v t c k Oab T30 q\r\n");
        assert_eq!(r.len(), 1);
        let mut d = McDecoder::default();
        let Decoded::Frame { value, .. } = d.decode(b"mg key s v Oxy N30 C5\r\n", &lim()) else {
            panic!()
        };
        let Request::Memcache(McRequest::Meta {
            cmd, key, flags, ..
        }) = value
        else {
            panic!()
        };
        assert_eq!(cmd, MetaCmd::Get);
        assert_eq!(key, b"key");
        assert_eq!(flags.order().collect::<Vec<_>>(), b"svONC");
        assert_eq!((flags.vivify(), flags.compare_cas()), (Some(30), Some(5)));
        assert_eq!(flags.opaque(), Some(&b"xy"[..]));
        assert_eq!(run(b"mg a zz\r\n"), ["! CLIENT_ERROR invalid flag"]);
        assert_eq!(run(b"mg a v v\r\n"), ["! CLIENT_ERROR duplicate flag"]);
        assert_eq!(run(b"mg a h\r\n"), ["! CLIENT_ERROR invalid flag"]);
        assert_eq!(run(b"mg\r\n"), ["! ERROR"]);
        let o = format!("mg a O{}\r\n", "1".repeat(32));
        assert_eq!(run(o.as_bytes()), ["! CLIENT_ERROR opaque token too long"]);
    }

    #[test]
    fn meta_set_errors_discard_the_data_block() {
        let r = run(b"ms a 2 Tx\r\nhi\r\nmn\r\n");
        assert_eq!(
            r,
            [
                "! CLIENT_ERROR bad token in command line format",
                "skip 4",
                "Noop"
            ]
        );
        assert_eq!(
            run(b"ma a Dx\r\n"),
            ["! CLIENT_ERROR invalid or duplicate flag"]
        );
        assert_eq!(run(b"ms a\r\n"), [format!("! {BAD_FORMAT}")]);
        let r = run(b"ms a 2 T5 F3 MA\r\nhi\r\n");
        assert!(
            r[0].contains("cmd: Set") && r[0].contains("[104, 105]"),
            "{r:?}"
        );
    }

    #[test]
    fn base64_keys() {
        assert_eq!(base64_decode(b"YQ==").unwrap(), b"a");
        assert_eq!(base64_decode(b"Zm9vYmFy").unwrap(), b"foobar");
        assert_eq!(base64_decode(b"Zm9vYg==").unwrap(), b"foob");
        assert!(base64_decode(b"a").is_none());
        assert!(base64_decode(b"YQ=a").is_none());
        assert!(base64_decode(b"Y===").is_none());
        let r = run(b"mg YQ== b v\r\n");
        assert!(r[0].contains("key: [89, 81, 61, 61]"), "{r:?}");
        assert_eq!(meta_key(b"YQ==", true).unwrap().as_ref(), b"a");
        assert_eq!(run(b"mg a b\r\n"), ["! CLIENT_ERROR error decoding key"]);
    }

    #[test]
    fn requests_stay_small() {
        // Every request of every protocol is moved through `Request`: the memcached variant
        // must not make it larger than the RESP variants already are (HELLO's 64 bytes).
        assert!(
            std::mem::size_of::<McRequest>() <= 64,
            "{}",
            std::mem::size_of::<McRequest>()
        );
        assert!(
            std::mem::size_of::<Request>() <= 72,
            "{}",
            std::mem::size_of::<Request>()
        );
    }

    #[test]
    fn numbers() {
        assert_eq!(int32(b"-5"), Some(-5));
        assert_eq!(int32(b"2147483648"), None);
        assert_eq!(int32(b"-2147483648"), Some(-2147483648));
        // Found by the memcache_decoder fuzz target: negating i64::MIN overflowed.
        assert_eq!(int32(b"-9223372036854775808"), None);
        assert_eq!(int32(b"-18446744073709551615"), None);
        assert_eq!(uint64(b"18446744073709551615"), Some(u64::MAX));
        assert_eq!(uint64(b"18446744073709551616"), None);
        assert_eq!(uint64(b""), None);
        assert_eq!(uint32(b"4294967296"), None);
    }
}
