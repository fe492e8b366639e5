//! Where requests meet the store: [`execute`] runs one decoded [`Request`] and encodes its
//! reply for the connection's protocol. Nothing else in the crate touches both.
//!
//! One file per command family, each readable on its own:
//! [`strings`] (values: GET, SET, MSET, APPEND, INCR, GETRANGE, SETRANGE, LCS ...), [`bits`]
//! (GETBIT, SETBIT, BITCOUNT, BITPOS), [`keys`] (keyspace and TTL: DEL, EXISTS, EXPIRE, RENAME,
//! COPY, OBJECT, SCAN, KEYS ...), [`server`] (INFO, CONFIG, COMMAND, FUNCTION, STATS, PING ...),
//! [`connection`] (AUTH, HELLO, CLIENT, SELECT, QUIT) and [`persist`] (SAVE, BGSAVE, LASTSAVE);
//! [`memcache`] has the memcached commands (CAS, flags, incr/decr wrap rules, touch, flush_all,
//! stats, meta commands). This file holds what they share and the dispatch, which only decides
//! which family answers.

mod bits;
mod connection;
mod encoding;
mod keys;
mod longdouble;
mod memcache;
mod persist;
mod server;
mod strings;

use std::sync::Arc;

use crate::config::Config;
use crate::protocol::{self, Hot, Proto, Request, Response};
use crate::server::{ClientInfo, Registry};
use crate::snapshot::Snapshots;
use crate::stats::Stats;
use crate::store::{Store, StoreError};

pub use encoding::EncodingNotes;
pub use keys::glob_match;
pub use memcache::{Counts as MemcacheCounts, MEMCACHED_COMPAT_VERSION, Shared as MemcacheShared};
pub use persist::Pending;

/// The version INFO and HELLO report for Redis compatibility (clients gate features on it).
pub const REDIS_COMPAT_VERSION: &str = "7.2.0";

/// Everything a command may need besides its connection: shared by all connections.
pub struct Context {
    /// The data.
    pub store: Arc<Store>,
    /// Server counters.
    pub stats: Arc<Stats>,
    /// Settings (for CONFIG GET, INFO and limits).
    pub config: Arc<Config>,
    /// Live connections (CLIENT LIST, CLIENT KILL).
    pub clients: Arc<Registry>,
    /// How values written by SETRANGE, SETBIT, APPEND and INCRBYFLOAT are encoded in Redis's
    /// terms, for OBJECT ENCODING.
    pub encodings: EncodingNotes,
    /// memcached state shared by connections: meta-protocol item marks, the delayed flush.
    pub memcache: MemcacheShared,
    /// Snapshot settings and save state (SAVE, BGSAVE, LASTSAVE, INFO persistence).
    pub snapshots: Arc<Snapshots>,
}

/// Per-connection state commands read and change.
#[derive(Debug)]
pub struct Session {
    /// Protocol (and RESP version) of the connection.
    pub proto: Proto,
    /// Whether AUTH succeeded (always true without a password).
    pub authenticated: bool,
    /// This connection as CLIENT shows it: id, addresses, name.
    pub client: Arc<ClientInfo>,
    /// memcached command counts not yet added to the server's counters (see [`end_batch`]).
    pub mc: MemcacheCounts,
    /// Writes executed since the connection last reported them (it adds them to the snapshot
    /// change count once per batch, not once per request).
    pub changes: u64,
    /// A SAVE whose reply the connection must wait for ([`Flow::Wait`]).
    pub pending: Option<Pending>,
}

/// Called by the connection after each batch of requests: adds what the batch counted locally
/// to the shared counters (one write per batch rather than per request).
#[inline]
pub fn end_batch(ctx: &Context, s: &mut Session) {
    s.mc.flush(&ctx.stats);
}

/// Whether the connection carries on after a request.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Flow {
    /// Keep reading.
    Continue,
    /// Flush replies and close (QUIT).
    Close,
    /// Flush replies, then wait for [`Session::pending`] and send its reply before the
    /// requests behind it (SAVE).
    Wait,
}

/// Encodes responses for one connection into its output buffer.
struct Reply<'o> {
    proto: Proto,
    out: &'o mut Vec<u8>,
}

impl Reply<'_> {
    #[inline]
    fn send(&mut self, r: Response<'_>) {
        protocol::encode(self.proto, r, self.out);
    }

    fn error(&mut self, msg: &str) {
        self.send(Response::Error(msg));
    }

    fn bulk_str(&mut self, s: &str) {
        self.send(Response::Bulk(s.as_bytes()));
    }
}

const NOT_INT: &str = "ERR value is not an integer or out of range";

fn store_error(e: StoreError) -> &'static str {
    match e {
        StoreError::KeyTooLong => "ERR key too long",
        StoreError::TooLarge => "ERR value too large for max-memory",
        StoreError::Full => "ERR store is full",
    }
}

/// Runs a plain GET or SET that [`RespDecoder::decode_hot`](protocol::resp::RespDecoder::decode_hot)
/// recognised: what [`execute`] does for the same [`Request`], without building one. The
/// connection calls it only once the client is authenticated.
#[inline]
pub fn execute_hot(ctx: &Context, s: &mut Session, hot: Hot<'_>, out: &mut Vec<u8>) {
    debug_assert!(s.authenticated);
    let mut w = Reply {
        proto: s.proto,
        out,
    };
    match hot {
        Hot::Get(key) => strings::get(ctx, &mut w, key),
        Hot::Set(key, value) => {
            s.changes += 1;
            strings::set_plain(ctx, &mut w, key, value);
        }
    }
}

/// Runs one request and appends its reply (if any) to `out`.
pub fn execute(ctx: &Context, s: &mut Session, req: Request<'_>, out: &mut Vec<u8>) -> Flow {
    let mut w = Reply {
        proto: s.proto,
        out,
    };
    if !s.authenticated
        && !matches!(
            req,
            Request::Auth(..)
                | Request::Quit
                | Request::Hello { .. }
                | Request::Error(_)
                | Request::Memcache(_)
        )
    {
        w.send(Response::NoAuth);
        return Flow::Continue;
    }
    s.changes += persist::changes(&req);
    match req {
        // Values.
        Request::Get(key) => strings::get(ctx, &mut w, key),
        Request::Set {
            kind,
            key,
            value,
            expire,
            cond,
            keep_ttl,
            get,
        } => strings::set(ctx, &mut w, kind, key, value, expire, cond, keep_ttl, get),
        Request::GetDel(key) => strings::getdel(ctx, &mut w, key),
        Request::GetEx(key, mode) => strings::getex(ctx, &mut w, key, mode),
        Request::MGet(keys) => strings::mget(ctx, &mut w, keys),
        Request::MSet(pairs) => strings::mset(ctx, &mut w, pairs),
        Request::MSetNx(pairs) => strings::msetnx(ctx, &mut w, pairs),
        Request::Append(key, tail) => strings::append(ctx, &mut w, key, tail),
        Request::StrLen(key) => strings::strlen(ctx, &mut w, key),
        Request::IncrBy(key, by) => strings::incr_by(ctx, &mut w, key, by),
        Request::IncrByFloat(key, by) => strings::incrbyfloat(ctx, &mut w, key, by),
        Request::GetRange(key, start, end) => strings::getrange(ctx, &mut w, key, start, end),
        Request::SetRange(key, offset, value) => strings::setrange(ctx, &mut w, key, offset, value),
        Request::Lcs(a, b, mode) => strings::lcs(ctx, &mut w, a, b, mode),
        // Bits.
        Request::GetBit(key, offset) => bits::getbit(ctx, &mut w, key, offset),
        Request::SetBit(key, offset, on) => bits::setbit(ctx, &mut w, key, offset, on),
        Request::BitCount(key, range) => bits::bitcount(ctx, &mut w, key, range),
        Request::BitPos(key, bit, range) => bits::bitpos(ctx, &mut w, key, bit, range),
        // Keyspace and TTL.
        Request::Delete(key) => keys::delete(ctx, &mut w, key),
        Request::Exists(key) => keys::exists(ctx, &mut w, key),
        Request::ExistsMany(keys) => keys::exists_many(ctx, &mut w, keys),
        Request::Del(keys) => keys::del(ctx, &mut w, keys),
        Request::Touch(keys) => keys::touch(ctx, &mut w, keys),
        Request::Type(key) => keys::type_of(ctx, &mut w, key),
        Request::Expire(key, spec, cond, name) => keys::expire(ctx, &mut w, key, spec, cond, name),
        Request::Ttl(key, millis) => keys::ttl(ctx, &mut w, key, millis),
        Request::Persist(key) => keys::persist(ctx, &mut w, key),
        Request::ExpireTime(key, millis) => keys::expiretime(ctx, &mut w, key, millis),
        Request::Rename(from, to, nx) => keys::rename(ctx, &mut w, from, to, nx),
        Request::Copy(from, to, replace) => keys::copy(ctx, &mut w, from, to, replace),
        Request::Object(cmd) => keys::object(ctx, &mut w, cmd),
        Request::Scan {
            cursor,
            pattern,
            count,
            kind,
        } => keys::scan(ctx, &mut w, cursor, pattern, count, kind),
        Request::Keys(pattern) => keys::keys(ctx, &mut w, pattern),
        Request::RandomKey => keys::random_key(ctx, &mut w),
        Request::DbSize => keys::dbsize(ctx, &mut w),
        Request::Flush(background) => keys::flush(ctx, &mut w, background),
        // Server.
        Request::Ping(msg) => server::ping(&mut w, msg),
        Request::Echo(msg) => w.send(Response::Bulk(msg)),
        Request::Stats => server::stats_line(ctx, &mut w),
        Request::Command(cmd) => server::command(&mut w, cmd),
        Request::ConfigGet(patterns) => server::config_get(ctx, &mut w, patterns),
        Request::ConfigOther(sub) => server::config_other(&mut w, sub),
        Request::Info(sections) => server::info(ctx, &mut w, sections),
        Request::Time => server::time(&mut w),
        Request::Function(cmd) => server::function(&mut w, cmd),
        // Connection.
        Request::Quit => return connection::quit(s, &mut w),
        Request::Auth(user, password) => connection::auth(ctx, s, &mut w, user, password),
        Request::Select(db) => connection::select(&mut w, db),
        Request::Hello { proto, auth, name } => {
            connection::hello(ctx, s, &mut w, proto, auth, name)
        }
        Request::Client(cmd) => return connection::client(ctx, s, &mut w, cmd),
        Request::Error(msg) => w.error(&msg),
        // memcached (its own port): its own replies and authentication.
        Request::Memcache(req) => return memcache::execute(ctx, s, req, w.out),
        // Persistence.
        Request::Save => return persist::save(ctx, s, &mut w),
        Request::BgSave => persist::bgsave(ctx, &mut w),
        Request::LastSave => persist::lastsave(ctx, &mut w),
    }
    Flow::Continue
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::protocol::Args;

    #[test]
    fn mset_values_respect_the_value_limit() {
        // Found by the `commands` fuzz target: an inline MSET (bounded only by --max-line)
        // stored a value longer than --max-value-size.
        let ctx = Context {
            store: Arc::new(Store::default()),
            stats: Arc::new(Stats::default()),
            config: Arc::new(Config {
                max_value_size: 256,
                ..Config::default()
            }),
            clients: Arc::new(Registry::default()),
            encodings: EncodingNotes::default(),
            memcache: Default::default(),
            snapshots: Arc::new(Snapshots::new(None)),
        };
        let mut session = Session {
            proto: Proto::Resp2,
            authenticated: true,
            client: ClientInfo::detached(1, "127.0.0.1:1".parse().unwrap()),
            mc: Default::default(),
            changes: 0,
            pending: None,
        };
        let buf = [b"ab".as_slice(), &[b'x'; 257]].concat();
        let too_long = [(0, 1), (1, 1), (1, 2), (2, 259)];
        let fits = [(0, 1), (1, 2), (1, 2), (2, 258)];
        let mut run = |req: Request<'_>| {
            let mut out = Vec::new();
            execute(&ctx, &mut session, req, &mut out);
            String::from_utf8(out).unwrap()
        };
        let refused = "-ERR value too long (max 256 bytes)\r\n";
        assert_eq!(run(Request::MSet(Args::new(&buf, &too_long))), refused);
        assert_eq!(run(Request::MSetNx(Args::new(&buf, &too_long))), refused);
        assert!(
            ctx.store.is_empty(),
            "nothing is written when one value is too long"
        );
        assert_eq!(run(Request::MSet(Args::new(&buf, &fits))), "+OK\r\n");
        assert_eq!(ctx.store.len(), 2);
    }
}
