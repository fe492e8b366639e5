//! One client connection: read what is available, decode every complete request, execute them
//! in order, and send all their replies with one write.
//!
//! Memory per connection is bounded: the read buffer never holds more than one request past
//! the decoder limits, and the server stops reading while unsent replies exceed the output
//! limit (backpressure for clients that pipeline without reading). Batches are capped so one
//! busy connection cannot starve the others on its worker thread.
//!
//! The loop is generic over a [`Transport`]: [`Plain`] reads and writes the socket directly;
//! `tls::TlsSession` goes through a rustls session over the same socket. Each is compiled
//! separately, so the plain path carries no TLS cost.

use std::io;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use tokio::time::Instant;

use tokio::io::{AsyncWriteExt, Interest};
use tokio::net::TcpStream;

use crate::cmd::{self, Context, Flow, Session};
use crate::protocol::memcache::McDecoder;
use crate::protocol::resp::RespDecoder;
use crate::protocol::text::LineDecoder;
use crate::protocol::{self, Decoded, Limits, Proto, Response};

/// Read buffer size for ordinary traffic; buffers grown beyond this by a large request are
/// released once it is done.
const READ_CHUNK: usize = 16 * 1024;
/// Most read-buffer room reserved ahead of the bytes arriving, beyond what is already buffered.
const RESERVE_AHEAD: usize = 1 << 20;
/// A write buffer grown beyond this by a large reply is released once the reply is sent.
const WBUF_KEEP: usize = 16 * 1024;
/// Memory a TLS session holds beyond a plain connection (rustls's record buffers and state),
/// from the RSS of 1,000 idle sessions.
const TLS_SESSION_BYTES: usize = 5 * 1024;
/// A client that accepts no reply bytes for this long is disconnected.
pub(super) const WRITE_STALL_TIMEOUT: Duration = Duration::from_secs(60);

/// How the connection loop moves bytes over its socket: directly, or through TLS.
pub(super) trait Transport {
    /// Waits for input and appends what is available to `buf`'s spare capacity (taking a
    /// pooled buffer if `buf` has none); 0 means the client has finished sending.
    async fn read(&mut self, stream: &TcpStream, buf: &mut Vec<u8>) -> io::Result<usize>;
    /// Sends all of `data`, giving up on a client that accepts nothing for
    /// [`WRITE_STALL_TIMEOUT`].
    async fn write_all(&mut self, stream: &mut TcpStream, data: &[u8]) -> io::Result<()>;
    /// Ends the session before the socket's FIN (TLS: close_notify).
    async fn close(&mut self, stream: &mut TcpStream);
}

/// The plain transport: the socket itself.
pub(super) struct Plain;

impl Transport for Plain {
    #[inline]
    async fn read(&mut self, stream: &TcpStream, buf: &mut Vec<u8>) -> io::Result<usize> {
        read_some(stream, buf).await
    }

    #[inline]
    async fn write_all(&mut self, stream: &mut TcpStream, data: &[u8]) -> io::Result<()> {
        write_all(stream, data).await
    }

    async fn close(&mut self, _stream: &mut TcpStream) {}
}

enum Decoder {
    /// No byte seen yet: the first one picks the protocol.
    Undecided,
    Text(LineDecoder),
    Resp(RespDecoder),
    /// The memcache port: memcached's protocols from the first byte.
    Memcache(McDecoder),
}

/// What processing the buffered input ended with.
enum Step {
    /// Everything complete was executed; read more.
    NeedInput,
    /// Replies must go out first (output limit or batch cap), then carry on with the buffer.
    Flush,
    /// Flush and close.
    Close,
    /// Flush, then wait for the session's pending reply (SAVE) and carry on.
    Wait,
}

/// Keeps the store's count of connection-buffer bytes in step with this connection.
struct BufferAccount<'c> {
    ctx: &'c Context,
    reported: usize,
}

impl BufferAccount<'_> {
    fn update(&mut self, now: usize) {
        if now != self.reported {
            external_delta(&self.ctx.store, now as isize - self.reported as isize);
            self.reported = now;
        }
    }
}

/// Changes of connection-buffer bytes are summed per worker thread and handed to the store's
/// shared counter only once they reach this much: an unpipelined request takes a pooled buffer
/// and gives it back, and telling the store each time would write a shared cache line twice
/// per request. The store's figure is then off by at most this much per worker thread.
const EXTERNAL_BATCH: isize = 64 * 1024;

thread_local! {
    /// This thread's unreported buffer-byte change, and the store it belongs to.
    static EXTERNAL: std::cell::RefCell<Option<(std::sync::Arc<crate::store::Store>, isize)>> =
        const { std::cell::RefCell::new(None) };
}

fn external_delta(store: &std::sync::Arc<crate::store::Store>, delta: isize) {
    EXTERNAL.with(|cell| {
        let mut slot = cell.borrow_mut();
        match slot.as_mut() {
            Some((s, pending)) if std::sync::Arc::ptr_eq(s, store) => {
                *pending += delta;
                if pending.abs() >= EXTERNAL_BATCH {
                    s.adjust_external(*pending);
                    *pending = 0;
                }
            }
            _ => {
                // Another server in this process (tests) or the first change on this thread.
                if let Some((old, pending)) = slot.take() {
                    old.adjust_external(pending);
                }
                *slot = Some((store.clone(), delta));
            }
        }
    })
}

impl Drop for BufferAccount<'_> {
    fn drop(&mut self) {
        self.update(0);
    }
}

struct Conn<'c> {
    ctx: &'c Context,
    session: Session,
    decoder: Decoder,
    limits: Limits,
    unauth_limits: Limits,
    rbuf: Vec<u8>,
    /// Start of unconsumed input in `rbuf`.
    start: usize,
    /// Bytes (from `start`) the decoder needs before it is worth calling again.
    need: usize,
    wbuf: Vec<u8>,
    /// Requests completed so far; a change means the client is making progress.
    completed: u64,
}

/// Serves one connection until the client leaves, an error closes it, or shutdown. With
/// `tls`, the TLS handshake comes first (under its deadline); a failed one is counted and
/// ends the connection.
pub(super) async fn serve(
    ctx: &Context,
    mut stream: TcpStream,
    peer: SocketAddr,
    id: u64,
    tls: Option<&super::tls::Tls>,
    wire: super::Wire,
) -> io::Result<()> {
    let registry = &*ctx.clients;
    // Dropped before `stream` (declared after it), so the registry never holds a closed fd.
    // Registered before any handshake, so shutdown (and CLIENT KILL) also ends handshakes in
    // progress, and TLS connections are listed and killable like plain ones.
    let Some(registration) = registry.register(id, &stream, peer) else {
        return Ok(()); // the server began shutting down while this connection was admitted
    };
    let _ = stream.set_nodelay(true);
    let keepalive = socket2::TcpKeepalive::new().with_time(Duration::from_secs(300));
    let _ = socket2::SockRef::from(&stream).set_tcp_keepalive(&keepalive);
    match tls {
        None => run(ctx, &mut stream, registry, &registration.info, Plain, wire).await,
        Some(tls) => match tls.handshake(&mut stream).await {
            Ok(session) => {
                ctx.stats.tls_handshakes.incr();
                // rustls's buffers and state are outside our read and write buffers: count them
                // against --max-memory too (measured: about 5 KiB per idle session).
                let mut session_memory = BufferAccount { ctx, reported: 0 };
                session_memory.update(TLS_SESSION_BYTES);
                run(
                    ctx,
                    &mut stream,
                    registry,
                    &registration.info,
                    session,
                    wire,
                )
                .await
            }
            Err(e) => {
                e.count(&ctx.stats);
                tracing::debug!(%peer, id, "{e}");
                Ok(())
            }
        },
    }
}

/// The request loop over an established transport.
async fn run<T: Transport>(
    ctx: &Context,
    stream: &mut TcpStream,
    registry: &super::Registry,
    client: &Arc<super::ClientInfo>,
    mut transport: T,
    wire: super::Wire,
) -> io::Result<()> {
    let limits = ctx.config.limits();
    let (proto, decoder) = match wire {
        super::Wire::Auto => (Proto::Text, Decoder::Undecided),
        super::Wire::Memcache => (Proto::Memcache, Decoder::Memcache(McDecoder::default())),
    };
    let mut conn = Conn {
        ctx,
        session: Session {
            proto,
            authenticated: ctx.config.password.is_none(),
            client: Arc::clone(client),
            mc: Default::default(),
            changes: 0,
            pending: None,
        },
        decoder,
        limits,
        unauth_limits: limits.unauthenticated(),
        rbuf: Vec::new(),
        start: 0,
        need: 0,
        wbuf: Vec::new(),
        completed: 0,
    };
    let mut completed_before = 0;
    let mut account = BufferAccount { ctx, reported: 0 };
    let idle = match ctx.config.idle_timeout {
        0 => None,
        s => Some(Duration::from_secs(s)),
    };
    let request_timeout = match ctx.config.request_timeout {
        0 => None,
        s => Some(Duration::from_secs(s)),
    };
    // When the oldest incomplete request started arriving (slowloris defence).
    let mut partial_since: Option<Instant> = None;
    loop {
        let step = conn.process();
        account.update(conn.rbuf.capacity() + conn.wbuf.capacity());
        if !conn.wbuf.is_empty() {
            transport.write_all(stream, &conn.wbuf).await?;
            conn.wbuf.clear();
            if conn.wbuf.capacity() > WBUF_KEEP {
                conn.wbuf = Vec::new();
            }
        }
        match step {
            Step::Close => {
                transport.close(stream).await;
                linger_close(stream, true).await;
                return Ok(());
            }
            Step::Flush => {
                tokio::task::yield_now().await;
                continue;
            }
            Step::Wait => {
                conn.finish_pending().await;
                continue;
            }
            Step::NeedInput => {}
        }
        conn.make_room();
        account.update(conn.rbuf.capacity() + conn.wbuf.capacity());
        // The clock for an incomplete request restarts whenever a request completes, so a
        // client streaming a long pipeline is never mistaken for a stalled one.
        if conn.rbuf.is_empty() || conn.completed != completed_before {
            partial_since = None;
        }
        completed_before = conn.completed;
        let mut request_deadline = None;
        let mut deadline = None;
        if idle.is_some() || (request_timeout.is_some() && !conn.rbuf.is_empty()) {
            let now = Instant::now();
            if !conn.rbuf.is_empty() {
                partial_since = partial_since.or(Some(now));
            }
            request_deadline = partial_since.zip(request_timeout).map(|(t, d)| t + d);
            deadline = match (idle.map(|d| now + d), request_deadline) {
                (Some(a), Some(b)) => Some(a.min(b)),
                (a, b) => a.or(b),
            };
        }
        let read = async {
            let read = transport.read(stream, &mut conn.rbuf);
            match deadline {
                Some(at) => tokio::time::timeout_at(at, read).await,
                None => Ok(read.await),
            }
        };
        let n = match read.await {
            Ok(r) => r?,
            Err(_) if request_deadline.is_some_and(|d| Instant::now() >= d) => {
                ctx.stats.request_timeouts.incr();
                let mut out = Vec::new();
                protocol::encode(
                    conn.session.proto,
                    Response::Error("ERR request timeout"),
                    &mut out,
                );
                let _ = tokio::time::timeout(Duration::from_secs(1), async {
                    transport.write_all(stream, &out).await?;
                    transport.close(stream).await;
                    io::Result::Ok(())
                })
                .await;
                return Ok(());
            }
            Err(_) => {
                ctx.stats.idle_closed.incr();
                transport.close(stream).await;
                return Ok(());
            }
        };
        if n == 0 {
            transport.close(stream).await;
            return Ok(());
        }
        if registry.shutting_down() {
            // Answer what was read with this last read (the batch in hand), then stop.
            if let Step::Wait = conn.process() {
                conn.finish_pending().await;
            }
            if !conn.wbuf.is_empty() {
                transport.write_all(stream, &conn.wbuf).await?;
            }
            transport.close(stream).await;
            linger_close(stream, false).await;
            return Ok(());
        }
    }
}

/// Closes after a final reply so the client gets to read it. Closing a socket that still
/// has unread input makes the kernel reset the connection, which can destroy replies still in
/// flight (a client streaming an oversized line would never see `ERROR line too long`). So:
/// send FIN after the replies, and if `drain` allows, read and discard until the client closes
/// its side; a client that does not within a second (or whose input was shut at shutdown) is
/// reset once every reply byte has been acknowledged, so a client still writing fails at once
/// instead of stalling against a closed window.
async fn linger_close(stream: &mut TcpStream, drain: bool) {
    let _ = stream.shutdown().await;
    let deadline = Instant::now() + Duration::from_secs(1);
    if drain {
        let eof = tokio::time::timeout_at(deadline, async {
            // On the heap: an array here would sit in every connection's task for its whole
            // life, since this future is part of `serve`'s state machine.
            let mut scratch = vec![0u8; 8192];
            let mut discarded = 0usize;
            while discarded < 8 << 20 {
                match tokio::io::AsyncReadExt::read(stream, &mut scratch).await {
                    Ok(0) | Err(_) => return true,
                    Ok(n) => discarded += n,
                }
            }
            false
        })
        .await;
        if eof == Ok(true) {
            return;
        }
    }
    while unacknowledged_bytes(stream) > 0 && Instant::now() < deadline {
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    let _ = socket2::SockRef::from(&*stream).set_linger(Some(Duration::ZERO));
}

/// Bytes written to the socket that the peer has not acknowledged yet (Linux `SIOCOUTQ`).
fn unacknowledged_bytes(stream: &TcpStream) -> i32 {
    use std::os::fd::AsRawFd;
    let mut n: libc::c_int = 0;
    // SAFETY: TIOCOUTQ writes one c_int through the pointer, which points at `n` on our stack;
    // the fd is open for the duration of the call because `stream` is borrowed.
    let rc = unsafe { libc::ioctl(stream.as_raw_fd(), libc::TIOCOUTQ, &mut n) };
    if rc == 0 { n } else { 0 }
}

/// Reads what is available into the spare capacity of `buf`. A short read means the socket is
/// drained, so its cached readiness is cleared now instead of by a later read that fails with
/// `WouldBlock`: one syscall saved per request for unpipelined clients. The clearing goes
/// through `try_io`, which uses the readiness tick taken *before* the read, so data arriving
/// meanwhile is never lost.
async fn read_some(stream: &TcpStream, buf: &mut Vec<u8>) -> io::Result<usize> {
    loop {
        stream.readable().await?;
        if buf.capacity() == 0 {
            *buf = take_buffer();
        }
        let spare = buf.capacity() - buf.len();
        let mut drained = None;
        let result = stream.try_io(Interest::READABLE, || match stream.try_read_buf(buf) {
            Ok(n) if n > 0 && n < spare => {
                drained = Some(n);
                Err(io::ErrorKind::WouldBlock.into())
            }
            other => other,
        });
        match (result, drained) {
            (_, Some(n)) => return Ok(n),
            (Ok(n), None) => return Ok(n),
            (Err(e), None) if e.kind() == io::ErrorKind::WouldBlock => {
                // Woken with nothing to read (a new socket starts out marked readable): do
                // not keep a buffer while waiting, or every idle connection holds one.
                if buf.is_empty() {
                    give_buffer(std::mem::take(buf));
                }
            }
            (Err(e), None) => return Err(e),
        }
    }
}

thread_local! {
    /// Empty read buffers of connections that are waiting for input, reused by whichever
    /// connection on this thread becomes readable next.
    static BUFFERS: std::cell::RefCell<Vec<Vec<u8>>> = const { std::cell::RefCell::new(Vec::new()) };
}

/// Buffers kept per thread; beyond this, returned buffers are freed.
const POOL_LIMIT: usize = 64;
/// Largest buffer worth pooling; bigger ones were grown for one large request.
const POOLED_MAX: usize = 64 * 1024;

/// A read buffer from this thread's pool, or a new one.
pub(super) fn take_buffer() -> Vec<u8> {
    BUFFERS
        .with(|p| p.borrow_mut().pop())
        .unwrap_or_else(|| Vec::with_capacity(READ_CHUNK))
}

/// Returns an empty read buffer to this thread's pool (or frees it).
pub(super) fn give_buffer(mut buf: Vec<u8>) {
    if !(READ_CHUNK..=POOLED_MAX).contains(&buf.capacity()) {
        return; // never allocated, or grown for a large request: let it go
    }
    buf.clear();
    BUFFERS.with(|p| {
        let mut pool = p.borrow_mut();
        if pool.len() < POOL_LIMIT {
            pool.push(buf);
        }
    });
}

/// Writes everything, but gives up on a peer that accepts nothing for [`WRITE_STALL_TIMEOUT`].
async fn write_all(stream: &mut TcpStream, mut data: &[u8]) -> io::Result<()> {
    while !data.is_empty() {
        match tokio::time::timeout(WRITE_STALL_TIMEOUT, stream.write(data)).await {
            Ok(Ok(0)) => return Err(io::ErrorKind::WriteZero.into()),
            Ok(Ok(n)) => data = &data[n..],
            Ok(Err(e)) => return Err(e),
            Err(_) => {
                return Err(io::Error::new(
                    io::ErrorKind::TimedOut,
                    "client stopped reading replies",
                ));
            }
        }
    }
    Ok(())
}

impl Conn<'_> {
    /// After a command: whether to stop and flush, because the unsent replies passed the
    /// output limit or the batch cap is reached.
    #[inline]
    fn batch_full(&self, executed: u64) -> Option<Step> {
        if self.wbuf.len() >= self.ctx.config.output_limit {
            self.ctx.stats.output_stalls.incr();
            return Some(Step::Flush);
        }
        (executed as usize >= self.limits.max_batch).then_some(Step::Flush)
    }

    /// Decodes and executes every complete request in the buffer (up to the batch cap).
    fn process(&mut self) -> Step {
        let mut executed = 0u64;
        // The last command's name, published once per batch for CLIENT LIST.
        let mut last_cmd = 0u8;
        let step = loop {
            let avail = self.rbuf.len() - self.start;
            if avail == 0 || avail < self.need {
                break Step::NeedInput;
            }
            if let Decoder::Undecided = self.decoder {
                if self.rbuf[self.start] == b'*' {
                    self.decoder = Decoder::Resp(RespDecoder::default());
                    self.session.proto = Proto::Resp2;
                    self.session.client.set_resp(2);
                } else {
                    self.decoder = Decoder::Text(LineDecoder::default());
                }
            }
            let limits = if self.session.authenticated {
                &self.limits
            } else {
                &self.unauth_limits
            };
            let input = &self.rbuf[self.start..];
            // Plain GET and SET, most of the traffic, skip building a `Request`.
            if self.session.authenticated
                && let Decoder::Resp(d) = &self.decoder
                && let Some((hot, consumed)) = d.decode_hot(input, limits)
            {
                self.need = 0;
                executed += 1;
                self.completed += 1;
                last_cmd = hot.name_index();
                cmd::execute_hot(self.ctx, &mut self.session, hot, &mut self.wbuf);
                self.start += consumed;
                if let Some(step) = self.batch_full(executed) {
                    break step;
                }
                continue;
            }
            let decoded = match &mut self.decoder {
                Decoder::Text(d) => d.decode(input, limits.max_line),
                Decoder::Resp(d) => d.decode(input, limits),
                Decoder::Memcache(d) => d.decode(input, limits),
                Decoder::Undecided => unreachable!("decided above"),
            };
            match decoded {
                Decoded::Incomplete { need } => {
                    self.need = need.unwrap_or(0);
                    break Step::NeedInput;
                }
                Decoded::Skip { consumed } => {
                    self.completed += 1;
                    self.start += consumed;
                    self.need = 0;
                }
                Decoded::Frame { value, consumed } => {
                    self.need = 0;
                    executed += 1;
                    self.completed += 1;
                    let name = value.name_index(self.session.proto == Proto::Text);
                    if name != 0 {
                        last_cmd = name;
                    }
                    let flow = cmd::execute(self.ctx, &mut self.session, value, &mut self.wbuf);
                    self.start += consumed;
                    match flow {
                        Flow::Continue => {}
                        Flow::Close => break Step::Close,
                        Flow::Wait => break Step::Wait,
                    }
                    if let Some(step) = self.batch_full(executed) {
                        break step;
                    }
                }
                Decoded::Invalid {
                    error,
                    consumed,
                    fatal,
                } => {
                    self.need = 0;
                    self.completed += 1;
                    self.ctx.stats.protocol_errors.incr();
                    protocol::encode(
                        self.session.proto,
                        Response::Error(&error.0),
                        &mut self.wbuf,
                    );
                    self.start += consumed;
                    if fatal {
                        self.ctx.stats.oversize_closed.incr();
                        break Step::Close;
                    }
                }
            }
        };
        if executed > 0 {
            self.ctx.stats.commands.add(executed);
            self.session.client.touch(last_cmd);
            cmd::end_batch(self.ctx, &mut self.session);
        }
        if self.session.changes > 0 {
            self.ctx.snapshots.add_changes(self.session.changes);
            self.session.changes = 0;
        }
        step
    }

    /// Waits for the reply a request left pending (SAVE) and appends it.
    async fn finish_pending(&mut self) {
        if let Some(p) = self.session.pending.take() {
            p.finish(self.session.proto, &mut self.wbuf).await;
        }
    }

    /// Drops consumed input and makes sure the next read has room: when the buffer is full, it
    /// grows by what the decoder says the current request still needs, but by at most
    /// [`RESERVE_AHEAD`] or the bytes already buffered, so it grows with what actually arrives
    /// (a declared 500 MB bulk reserves nothing big until the bytes come) while a large value
    /// still needs only a few doublings.
    fn make_room(&mut self) {
        if self.start == self.rbuf.len() {
            // Nothing pending: hand the buffer to this thread's pool while the connection
            // waits, so idle connections hold no read buffer at all.
            self.start = 0;
            give_buffer(std::mem::take(&mut self.rbuf));
            return;
        } else if self.start > 0 {
            self.rbuf.drain(..self.start);
            self.start = 0;
        }
        // Grow only once the spare room is (nearly) used up, so a large value costs a few
        // doublings rather than a reallocation per read.
        if self.rbuf.capacity() - self.rbuf.len() < READ_CHUNK / 4 {
            let grow = self
                .need
                .saturating_sub(self.rbuf.len())
                .min(self.rbuf.len().max(RESERVE_AHEAD))
                .max(READ_CHUNK);
            self.rbuf.reserve_exact(grow);
        }
    }
}
