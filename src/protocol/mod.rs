//! Wire protocols: decoding bytes into [`Request`]s and encoding [`Response`]s into bytes.
//!
//! Two protocols share one port: the line protocol of the original KV-Cache ([`text`]) and
//! Redis's RESP2/RESP3 ([`resp`]). Both decode into the same [`Request`] type, and `cmd` answers
//! with the same [`Response`] vocabulary; each protocol renders it its own way. memcached's
//! text and meta protocols ([`memcache`]) have a port of their own (`get k` means different
//! things there); their requests travel as [`Request::Memcache`] and `cmd` writes their replies
//! with the encoders beside the decoder. Nothing here touches sockets or the store.

pub mod memcache;
pub mod resp;
pub mod text;

/// Result of trying to decode one request from the front of a buffer.
#[derive(Debug)]
pub enum Decoded<T> {
    /// Not enough bytes yet; `need` is a lower bound on the total buffered bytes required, when
    /// known, so the caller can skip re-parsing until that much has arrived.
    Incomplete {
        /// Minimum buffer length worth trying again with.
        need: Option<usize>,
    },
    /// A complete request that used `consumed` bytes.
    Frame {
        /// The request.
        value: T,
        /// Bytes it used.
        consumed: usize,
    },
    /// Input that forms no request (a blank line, `*0`), or the part received so far of an
    /// over-limit request being skipped: discard `consumed` bytes, send nothing.
    Skip {
        /// Bytes to discard.
        consumed: usize,
    },
    /// Malformed input: reply with the error; skip `consumed` bytes and go on, or close if `fatal`
    /// (the stream cannot be resynchronised).
    Invalid {
        /// The error to send (protocol-specific wording).
        error: ProtocolError,
        /// Bytes to discard.
        consumed: usize,
        /// Whether the connection must close after the reply.
        fatal: bool,
    },
}

/// A decoding error, already worded for the protocol that found it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ProtocolError(pub String);

impl ProtocolError {
    /// An error with this message.
    pub fn new(msg: impl Into<String>) -> Self {
        ProtocolError(msg.into())
    }
}

/// Size limits the decoders enforce before buffering; they come from the server settings.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Limits {
    /// Longest line-protocol line, and longest RESP inline/header line.
    pub max_line: usize,
    /// Longest key over RESP.
    pub max_key: usize,
    /// Longest value (and so bulk string) over RESP.
    pub max_value: usize,
    /// Most arguments in one RESP command.
    pub max_args: usize,
    /// Most bytes one RESP request may span.
    pub max_request: usize,
    /// Most requests decoded and executed from one read before the replies are flushed and
    /// other connections get a turn.
    pub max_batch: usize,
    /// Most bytes of one over-limit RESP request the decoder skips (answering an error and
    /// keeping the connection) instead of closing; 0 = always close.
    pub max_discard: usize,
}

/// How far past the limits a request may go and still be skipped rather than closed: Redis's
/// default `client-query-buffer-limit`, the most any Redis would accept into one query.
pub const MAX_DISCARD: usize = 1 << 30;

impl Default for Limits {
    fn default() -> Self {
        Limits {
            max_line: 64 * 1024,
            max_key: 16 * 1024,
            max_value: 1024 * 1024,
            max_args: 1024 * 1024,
            max_request: 64 * 1024 * 1024,
            max_batch: 1024,
            max_discard: MAX_DISCARD,
        }
    }
}

impl Limits {
    /// The tighter limits for a connection that has not authenticated yet (as Redis: a few
    /// arguments and small bulks), so a stranger cannot make the server buffer much.
    pub fn unauthenticated(&self) -> Limits {
        Limits {
            max_line: self.max_line.min(16 * 1024),
            max_key: self.max_key.min(16 * 1024),
            max_value: self.max_value.min(16 * 1024),
            max_args: self.max_args.min(10),
            max_request: self.max_request.min(64 * 1024),
            max_batch: self.max_batch,
            // A stranger's oversized request closes the connection, as in Redis.
            max_discard: 0,
        }
    }
}

/// The protocol a connection speaks, decided by its first byte.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Proto {
    /// The KV-Cache line protocol.
    Text,
    /// RESP2 (the Redis default).
    Resp2,
    /// RESP3, after `HELLO 3`.
    Resp3,
    /// memcached's text and meta protocols (the memcache port).
    Memcache,
}

/// The arguments of a RESP command, borrowed from the read buffer.
#[derive(Clone, Copy)]
pub struct Args<'a> {
    buf: &'a [u8],
    spans: &'a [(u32, u32)],
}

impl<'a> Args<'a> {
    /// Arguments at byte ranges `spans` (start, end) of `buf`.
    pub fn new(buf: &'a [u8], spans: &'a [(u32, u32)]) -> Self {
        Args { buf, spans }
    }

    /// Number of arguments.
    pub fn len(&self) -> usize {
        self.spans.len()
    }

    /// Whether there are none.
    pub fn is_empty(&self) -> bool {
        self.spans.is_empty()
    }

    /// Argument `i`.
    pub fn get(&self, i: usize) -> &'a [u8] {
        let (s, e) = self.spans[i];
        &self.buf[s as usize..e as usize]
    }

    /// Arguments from `i` on.
    pub fn skip(&self, i: usize) -> Args<'a> {
        Args {
            buf: self.buf,
            spans: &self.spans[i.min(self.spans.len())..],
        }
    }

    /// All arguments in order.
    pub fn iter(&self) -> impl ExactSizeIterator<Item = &'a [u8]> + 'a {
        let buf = self.buf;
        self.spans
            .iter()
            .map(move |&(s, e)| &buf[s as usize..e as usize])
    }
}

impl std::fmt::Debug for Args<'_> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_list()
            .entries(self.iter().map(String::from_utf8_lossy))
            .finish()
    }
}

/// A relative or absolute expiry as a request states it; `cmd` turns it into a deadline.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ExpireSpec {
    /// Seconds from now.
    Seconds(i64),
    /// Milliseconds from now.
    Millis(i64),
    /// Unix time in seconds.
    UnixSeconds(i64),
    /// Unix time in milliseconds.
    UnixMillis(i64),
}

/// `NX` / `XX` on SET.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SetCond {
    /// Always write.
    Always,
    /// Only if the key does not exist (`NX`).
    IfAbsent,
    /// Only if the key exists (`XX`).
    IfPresent,
}

/// `NX` / `XX` / `GT` / `LT` on the EXPIRE family (XX may combine with GT or LT).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct ExpireCond {
    /// Only if the key has no TTL.
    pub nx: bool,
    /// Only if the key has a TTL.
    pub xx: bool,
    /// Only if the new deadline is later (a key without TTL counts as infinite).
    pub gt: bool,
    /// Only if the new deadline is earlier.
    pub lt: bool,
}

/// Which SET-like command a [`Request::Set`] came from (they differ in replies and checks).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SetKind {
    /// `SET` (and the line protocol's PUT, which replies `OK stored`).
    Set,
    /// `SETNX`: replies 1/0.
    SetNx,
    /// `SETEX` / `PSETEX`.
    SetEx,
}

/// What GETEX does to the TTL.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum GetExMode {
    /// Leave it.
    Keep,
    /// Remove it (`PERSIST`).
    Persist,
    /// Set a new one.
    Expire(ExpireSpec),
}

/// `CLIENT` subcommands.
#[derive(Debug)]
pub enum ClientCmd<'a> {
    /// `CLIENT SETNAME name`
    SetName(&'a [u8]),
    /// `CLIENT GETNAME`
    GetName,
    /// `CLIENT ID`
    Id,
    /// `CLIENT INFO`
    Info,
    /// `CLIENT LIST [TYPE type] [ID id ...]`
    List {
        /// Only these connection ids (empty = all).
        ids: Vec<u64>,
        /// `TYPE`: `false` when the type matches no connection here (master, replica, pubsub).
        normal: bool,
    },
    /// `CLIENT KILL addr` or `CLIENT KILL <filter> <value> ...` (boxed: rare, and it would
    /// otherwise make every `Request` larger to move around).
    Kill(Box<KillFilter<'a>>),
    /// `CLIENT HELP`
    Help,
    /// `CLIENT SETINFO LIB-NAME|LIB-VER value`, with the attribute (true = lib-name) kept.
    SetLib {
        /// Whether it is `LIB-NAME` (else `LIB-VER`).
        name: bool,
        /// The value.
        value: &'a [u8],
    },
}

/// Which connections `CLIENT KILL` closes: all filters must match (as in Redis).
#[derive(Debug, Default, Clone)]
pub struct KillFilter<'a> {
    /// The old form, `CLIENT KILL addr`: replies `+OK` / `-ERR No such client`, may kill the
    /// caller itself.
    pub old_form: bool,
    /// `ID id`
    pub id: Option<u64>,
    /// `ADDR ip:port` (also the old form's address)
    pub addr: Option<&'a [u8]>,
    /// `LADDR ip:port`
    pub laddr: Option<&'a [u8]>,
    /// `USER name` (only `default` exists)
    pub user: Option<&'a [u8]>,
    /// `TYPE t`: `Some(false)` for types no connection here has (master, replica, pubsub).
    pub normal: Option<bool>,
    /// `MAXAGE secs`: connections at least this old.
    pub max_age: Option<u64>,
    /// `SKIPME yes|no`: leave the caller alone (default yes in the new form).
    pub skip_me: bool,
}

/// `COMMAND` subcommands.
#[derive(Debug)]
pub enum CommandCmd<'a> {
    /// `COMMAND`: every command's description.
    All,
    /// `COMMAND COUNT`
    Count,
    /// `COMMAND DOCS [name ...]`
    Docs(Args<'a>),
    /// `COMMAND INFO [name ...]`
    Info(Args<'a>),
    /// `COMMAND LIST`
    List,
    /// `COMMAND HELP`
    Help,
}

/// The optional range of BITCOUNT / BITPOS, parsed by the decoder but applied (errors included)
/// only once the key is found, because Redis answers a missing key before looking at it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum BitRange {
    /// No range: the whole string.
    Whole,
    /// `start [end]` in bytes, or in bits with `BIT`.
    Span {
        /// First byte (or bit); negative counts from the end.
        start: i64,
        /// Last byte (or bit), if given.
        end: Option<i64>,
        /// The `BIT` unit.
        bits: bool,
    },
    /// A bad range: the error to answer when the key exists.
    Invalid(&'static str),
}

/// What LCS answers.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LcsMode {
    /// The common subsequence itself.
    String,
    /// Its length (`LEN`).
    Len,
    /// The matching ranges (`IDX`), with their lengths when `with_len`, skipping ranges shorter
    /// than `min_len`.
    Idx {
        /// `MINMATCHLEN`.
        min_len: u64,
        /// `WITHMATCHLEN`.
        with_len: bool,
    },
}

/// `OBJECT` subcommands.
#[derive(Debug)]
pub enum ObjectCmd<'a> {
    /// `OBJECT ENCODING key`
    Encoding(&'a [u8]),
    /// `OBJECT REFCOUNT key`
    RefCount(&'a [u8]),
    /// `OBJECT IDLETIME key`
    IdleTime(&'a [u8]),
    /// `OBJECT FREQ key`
    Freq(&'a [u8]),
    /// `OBJECT HELP`
    Help,
}

/// `FUNCTION` subcommands (kvcache has no scripting, so its function library is always empty).
#[derive(Debug)]
pub enum FunctionCmd {
    /// `FUNCTION FLUSH [ASYNC|SYNC]`
    Flush,
    /// `FUNCTION HELP`
    Help,
}

/// A plain RESP `GET key` or `SET key value` (no options), recognised straight from the bytes by
/// [`resp::RespDecoder::decode_hot`]: most of a cache's traffic, so it skips building a
/// [`Request`] and the general dispatch. It means exactly what the same command decoded by
/// `decode` means.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Hot<'a> {
    Get(&'a [u8]),
    Set(&'a [u8], &'a [u8]),
}

impl Hot<'_> {
    /// The command's number for CLIENT LIST, the one [`Request::name_index`] gives it over RESP.
    pub fn name_index(&self) -> u8 {
        match self {
            Hot::Set(..) => 2,
            Hot::Get(_) => 5,
        }
    }
}

/// A decoded request, borrowing its bytes from the read buffer. Line-protocol and Redis
/// commands share variants where the store operation is the same; the reply wording comes
/// from the connection's protocol.
#[derive(Debug)]
pub enum Request<'a> {
    /// PUT / SET / SETNX / SETEX / PSETEX.
    Set {
        /// Which command.
        kind: SetKind,
        /// Key.
        key: &'a [u8],
        /// Value.
        value: &'a [u8],
        /// Expiry, if any.
        expire: Option<ExpireSpec>,
        /// NX / XX.
        cond: SetCond,
        /// KEEPTTL.
        keep_ttl: bool,
        /// GET option: reply with the old value.
        get: bool,
    },
    /// GET.
    Get(&'a [u8]),
    /// Line-protocol DELETE (replies `OK deleted` or `ERROR key not found`).
    Delete(&'a [u8]),
    /// Line-protocol EXISTS of one key (peeks, replies `OK 1` / `OK 0`).
    Exists(&'a [u8]),
    /// Redis EXISTS of several keys, counted.
    ExistsMany(Args<'a>),
    /// DEL / UNLINK.
    Del(Args<'a>),
    /// TOUCH: refresh the recency of existing keys.
    Touch(Args<'a>),
    /// GETDEL.
    GetDel(&'a [u8]),
    /// GETEX.
    GetEx(&'a [u8], GetExMode),
    /// MGET.
    MGet(Args<'a>),
    /// MSET (pairs).
    MSet(Args<'a>),
    /// MSETNX (pairs).
    MSetNx(Args<'a>),
    /// APPEND.
    Append(&'a [u8], &'a [u8]),
    /// STRLEN.
    StrLen(&'a [u8]),
    /// INCR / DECR / INCRBY / DECRBY.
    IncrBy(&'a [u8], i64),
    /// TYPE.
    Type(&'a [u8]),
    /// EXPIRE / PEXPIRE / EXPIREAT / PEXPIREAT.
    Expire(&'a [u8], ExpireSpec, ExpireCond, &'static str),
    /// TTL (false) / PTTL (true).
    Ttl(&'a [u8], bool),
    /// PERSIST.
    Persist(&'a [u8]),
    /// SCAN cursor [MATCH pattern] [COUNT n] [TYPE t].
    Scan {
        /// Cursor.
        cursor: u64,
        /// MATCH pattern.
        pattern: Option<&'a [u8]>,
        /// COUNT.
        count: usize,
        /// TYPE filter (only "string" matches anything).
        kind: Option<&'a [u8]>,
    },
    /// KEYS pattern.
    Keys(&'a [u8]),
    /// RANDOMKEY.
    RandomKey,
    /// DBSIZE.
    DbSize,
    /// FLUSHALL / FLUSHDB (`true` = ASYNC).
    Flush(bool),
    /// PING [message].
    Ping(Option<&'a [u8]>),
    /// ECHO.
    Echo(&'a [u8]),
    /// QUIT: reply (RESP) or not (line protocol), then close.
    Quit,
    /// Line-protocol STATS.
    Stats,
    /// AUTH [user] password.
    Auth(Option<&'a [u8]>, &'a [u8]),
    /// SELECT db.
    Select(i64),
    /// HELLO [protover [AUTH user pass] [SETNAME name]].
    Hello {
        /// Requested protocol version.
        proto: Option<i64>,
        /// AUTH user password.
        auth: Option<(&'a [u8], &'a [u8])>,
        /// SETNAME.
        name: Option<&'a [u8]>,
    },
    /// CLIENT ...
    Client(ClientCmd<'a>),
    /// COMMAND ...
    Command(CommandCmd<'a>),
    /// CONFIG GET pattern ...
    ConfigGet(Args<'a>),
    /// CONFIG SET / RESETSTAT / REWRITE: accepted for tooling, reported unsupported.
    ConfigOther(&'a [u8]),
    /// INFO [section ...].
    Info(Args<'a>),
    /// TIME.
    Time,
    /// GETRANGE / SUBSTR key start end.
    GetRange(&'a [u8], i64, i64),
    /// SETRANGE key offset value (offset checked non-negative).
    SetRange(&'a [u8], u64, &'a [u8]),
    /// GETBIT key offset.
    GetBit(&'a [u8], u64),
    /// SETBIT key offset value.
    SetBit(&'a [u8], u64, bool),
    /// BITCOUNT key [start end [BYTE|BIT]].
    BitCount(&'a [u8], BitRange),
    /// BITPOS key bit [start [end [BYTE|BIT]]].
    BitPos(&'a [u8], bool, BitRange),
    /// LCS key1 key2 [LEN] [IDX] [MINMATCHLEN n] [WITHMATCHLEN].
    Lcs(&'a [u8], &'a [u8], LcsMode),
    /// INCRBYFLOAT key increment (the increment is parsed with the stored value, as Redis does).
    IncrByFloat(&'a [u8], &'a [u8]),
    /// EXPIRETIME (false) / PEXPIRETIME (true).
    ExpireTime(&'a [u8], bool),
    /// RENAME (false) / RENAMENX (true) from to.
    Rename(&'a [u8], &'a [u8], bool),
    /// COPY from to [DB 0] [REPLACE] (`true` = REPLACE).
    Copy(&'a [u8], &'a [u8], bool),
    /// OBJECT ...
    Object(ObjectCmd<'a>),
    /// FUNCTION ...
    Function(FunctionCmd),
    /// A command that parsed but cannot run (unknown, wrong arity, bad option): the reply.
    Error(String),
    /// A memcached request (the memcache port only).
    Memcache(memcache::McRequest<'a>),
    /// SAVE: snapshot now; the reply waits for the save.
    Save,
    /// BGSAVE [SCHEDULE]: start a snapshot, reply at once.
    BgSave,
    /// LASTSAVE: unix time of the last successful snapshot.
    LastSave,
}

/// Command names as `CLIENT LIST` shows a connection's last command (`cmd=`), indexed by
/// [`Request::name_index`]; index 0 means "no command yet".
pub const REQUEST_NAMES: &[&str] = &[
    "NULL",
    "put",
    "set",
    "setnx",
    "setex",
    "get",
    "delete",
    "exists",
    "del",
    "getdel",
    "getex",
    "mget",
    "mset",
    "msetnx",
    "append",
    "strlen",
    "incrby",
    "type",
    "expire",
    "pexpire",
    "expireat",
    "pexpireat",
    "ttl",
    "pttl",
    "persist",
    "scan",
    "keys",
    "randomkey",
    "dbsize",
    "flushall",
    "ping",
    "echo",
    "quit",
    "stats",
    "auth",
    "select",
    "hello",
    "client|setname",
    "client|getname",
    "client|id",
    "client|setinfo",
    "client|info",
    "client|list",
    "client|kill",
    "client|help",
    "command",
    "command|count",
    "command|docs",
    "command|info",
    "command|list",
    "command|help",
    "config|get",
    "config",
    "info",
    "time",
    "touch",
    "getrange",
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
    "object|encoding",
    "object|refcount",
    "object|idletime",
    "object|freq",
    "object|help",
    "function|flush",
    "function|help",
    "memcache",
    "save",
    "bgsave",
    "lastsave",
];

impl Request<'_> {
    /// Index into [`REQUEST_NAMES`] of this request's command, for `CLIENT LIST`; 0 for a
    /// request that did not parse (which, as in Redis, does not count as the last command).
    /// A plain match: cheap enough to run for every request.
    pub fn name_index(&self, line_protocol: bool) -> u8 {
        match self {
            Request::Set { kind, .. } => match kind {
                SetKind::Set if line_protocol => 1,
                SetKind::Set => 2,
                SetKind::SetNx => 3,
                SetKind::SetEx => 4,
            },
            Request::Get(_) => 5,
            Request::Delete(_) => 6,
            Request::Exists(_) | Request::ExistsMany(_) => 7,
            Request::Del(_) => 8,
            Request::GetDel(_) => 9,
            Request::GetEx(..) => 10,
            Request::MGet(_) => 11,
            Request::MSet(_) => 12,
            Request::MSetNx(_) => 13,
            Request::Append(..) => 14,
            Request::StrLen(_) => 15,
            Request::IncrBy(..) => 16,
            Request::Type(_) => 17,
            Request::Expire(_, _, _, name) => match *name {
                "pexpire" => 19,
                "expireat" => 20,
                "pexpireat" => 21,
                _ => 18,
            },
            Request::Ttl(_, millis) => 22 + u8::from(*millis),
            Request::Persist(_) => 24,
            Request::Scan { .. } => 25,
            Request::Keys(_) => 26,
            Request::RandomKey => 27,
            Request::DbSize => 28,
            Request::Flush(_) => 29,
            Request::Ping(_) => 30,
            Request::Echo(_) => 31,
            Request::Quit => 32,
            Request::Stats => 33,
            Request::Auth(..) => 34,
            Request::Select(_) => 35,
            Request::Hello { .. } => 36,
            Request::Client(c) => match c {
                ClientCmd::SetName(_) => 37,
                ClientCmd::GetName => 38,
                ClientCmd::Id => 39,
                ClientCmd::SetLib { .. } => 40,
                ClientCmd::Info => 41,
                ClientCmd::List { .. } => 42,
                ClientCmd::Kill(_) => 43,
                ClientCmd::Help => 44,
            },
            Request::Command(c) => match c {
                CommandCmd::All => 45,
                CommandCmd::Count => 46,
                CommandCmd::Docs(_) => 47,
                CommandCmd::Info(_) => 48,
                CommandCmd::List => 49,
                CommandCmd::Help => 50,
            },
            Request::ConfigGet(_) => 51,
            Request::ConfigOther(_) => 52,
            Request::Info(_) => 53,
            Request::Time => 54,
            Request::Touch(_) => 55,
            Request::GetRange(..) => 56,
            Request::SetRange(..) => 57,
            Request::GetBit(..) => 58,
            Request::SetBit(..) => 59,
            Request::BitCount(..) => 60,
            Request::BitPos(..) => 61,
            Request::Lcs(..) => 62,
            Request::IncrByFloat(..) => 63,
            Request::ExpireTime(_, millis) => 64 + u8::from(*millis),
            Request::Rename(_, _, nx) => 66 + u8::from(*nx),
            Request::Copy(..) => 68,
            Request::Object(o) => match o {
                ObjectCmd::Encoding(_) => 69,
                ObjectCmd::RefCount(_) => 70,
                ObjectCmd::IdleTime(_) => 71,
                ObjectCmd::Freq(_) => 72,
                ObjectCmd::Help => 73,
            },
            Request::Function(f) => match f {
                FunctionCmd::Flush => 74,
                FunctionCmd::Help => 75,
            },
            // A memcached connection's commands show as one name in CLIENT LIST.
            Request::Memcache(_) => 76,
            Request::Save => 77,
            Request::BgSave => 78,
            Request::LastSave => 79,
            Request::Error(_) => 0,
        }
    }
}

/// Replies, in a protocol-neutral vocabulary each protocol renders its own way.
#[derive(Debug, Clone, Copy)]
pub enum Response<'a> {
    /// RESP `+OK`; line protocol `OK`.
    Ok,
    /// A write that stored a value: RESP `+OK`, line protocol `OK stored`.
    Stored,
    /// A delete that removed the key: line protocol `OK deleted`.
    Deleted,
    /// Authentication succeeded: RESP `+OK`, line protocol `OK authenticated`.
    Authenticated,
    /// PING's answer: RESP `+PONG`, line protocol `OK PONG`.
    Pong,
    /// A status line: RESP `+text`, line protocol `OK text`.
    Simple(&'a str),
    /// A value: RESP bulk string, line protocol `OK value` (when printable and short).
    Bulk(&'a [u8]),
    /// No value: RESP null, line protocol `ERROR key not found`.
    Nil,
    /// A null array (RESP2 `*-1`).
    NilArray,
    /// An integer: RESP `:n`, line protocol `OK n`.
    Int(i64),
    /// A double: RESP3 `,x`, RESP2 bulk string.
    Double(f64),
    /// Array header of `n` elements; the elements follow as further responses.
    Array(usize),
    /// Map header of `n` pairs (RESP2: array of 2n).
    Map(usize),
    /// Set header (RESP2: array).
    Set(usize),
    /// Verbatim text (RESP3 `=`; RESP2 bulk), as INFO uses.
    Verbatim(&'a [u8]),
    /// An error; `msg` starts with the Redis error code (`ERR ...`, `WRONGPASS ...`). The line
    /// protocol prints `ERROR` and the message without the code.
    Error(&'a str),
    /// Authentication is required first.
    NoAuth,
    /// Wrong password.
    WrongPass,
}

/// Appends the encoding of `r` in protocol `proto` to `out`.
#[inline]
pub fn encode(proto: Proto, r: Response<'_>, out: &mut Vec<u8>) {
    match proto {
        Proto::Text => text::encode(r, out),
        Proto::Resp2 => resp::encode(r, false, out),
        Proto::Resp3 => resp::encode(r, true, out),
        Proto::Memcache => match r {
            Response::Error(msg) => memcache::encode_error(msg, out),
            Response::NoAuth => memcache::line(out, b"CLIENT_ERROR unauthenticated"),
            // memcached commands write their own replies; nothing else reaches this port.
            _ => memcache::line(out, b"SERVER_ERROR unexpected reply"),
        },
    }
}
