//! Connection drivers: one task per connection keeps up to `pipeline` requests in flight,
//! writing and reading the socket as it becomes ready (so a deep pipeline cannot deadlock),
//! with reused buffers and no allocation per request.
//!
//! Timing: in closed-loop mode a request is timed from when it is written; in rate mode
//! (open loop) each request has a scheduled send time on a fixed grid and is timed from
//! that, so a stalled server is charged for the requests it delayed (no coordinated
//! omission). A request with no reply within the timeout fails, and so does everything else
//! in flight on that connection, which is then reopened (the replies would be out of step).
//!
//! A connection that cannot be reopened is retried with a growing pause; those attempts are
//! counted as reconnect failures, never as requests, so an unreachable server produces no
//! throughput and no latency samples. [`Health`] tells the main thread how long the server
//! has been unreachable, and the main thread tells every driver to stop.
//!
//! Over TLS the same loop runs: [`Link`] drives the rustls session by hand over the socket's
//! readiness, so TLS and plain runs differ only in the encryption.

use std::cell::RefCell;
use std::collections::VecDeque;
use std::io;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering::Relaxed};
use std::time::{Duration, Instant};

use std::io::{Read, Write};

use kvcache::client::{Client, Protocol, Reply, Stream, TlsConnector, parse_reply};
use tokio::io::Interest;
use tokio::net::TcpStream;

use crate::report::{Outcome, Recorder};
use crate::workload::{Op, Workload};

/// First pause between attempts to reopen a lost connection; it doubles up to
/// [`RECONNECT_BACKOFF_MAX`].
const RECONNECT_BACKOFF: Duration = Duration::from_millis(100);
/// Longest pause between reconnect attempts.
const RECONNECT_BACKOFF_MAX: Duration = Duration::from_millis(800);

/// Whether the server is reachable, shared by every driver of a round and the main thread.
/// Touched only when a connection breaks or reopens, never per request.
#[derive(Debug)]
pub struct Health {
    /// When the current outage began (ms since `epoch`, plus one; 0 = none): the first failed
    /// reconnect after which no connection has opened.
    outage_since: AtomicU64,
    /// Failed reconnect attempts in this round.
    pub reconnect_failures: AtomicU64,
    /// The last reconnect error, for the status line.
    pub last_error: parking_lot::Mutex<Option<String>>,
    /// Set by the main thread: every driver stops.
    stop: AtomicBool,
    epoch: Instant,
}

impl Default for Health {
    fn default() -> Self {
        Health {
            outage_since: AtomicU64::new(0),
            reconnect_failures: AtomicU64::new(0),
            last_error: parking_lot::Mutex::new(None),
            stop: AtomicBool::new(false),
            epoch: Instant::now(),
        }
    }
}

impl Health {
    fn reconnect_failed(&self, error: &str) {
        let now = self.epoch.elapsed().as_millis() as u64 + 1;
        let _ = self.outage_since.compare_exchange(0, now, Relaxed, Relaxed);
        self.reconnect_failures.fetch_add(1, Relaxed);
        *self.last_error.lock() = Some(error.to_string());
    }

    fn connected(&self) {
        self.outage_since.store(0, Relaxed);
    }

    /// How long the server has been unreachable, if it is.
    pub fn outage(&self) -> Option<Duration> {
        match self.outage_since.load(Relaxed) {
            0 => None,
            since => Some(
                self.epoch
                    .elapsed()
                    .saturating_sub(Duration::from_millis(since - 1)),
            ),
        }
    }

    /// Tells every driver to stop.
    pub fn stop(&self) {
        self.stop.store(true, Relaxed);
    }

    /// Whether the run is stopping.
    pub fn stopped(&self) -> bool {
        self.stop.load(Relaxed)
    }
}
/// Rate mode sends a request up to this early: tokio's timers tick in milliseconds, and a
/// request sent late would be charged the timer's lateness.
const SEND_SLACK: Duration = Duration::from_millis(1);
/// Initial read buffer; it grows only if one reply is larger.
const READ_BUFFER: usize = 64 * 1024;

/// How much a connection sends.
#[derive(Debug, Clone, Copy)]
pub enum Limit {
    /// This many counted requests per connection.
    Requests(u64),
    /// Until this long after the measured part began.
    Duration(Duration),
}

/// Settings every driver of a run shares.
#[derive(Clone)]
pub struct DriverSpec {
    /// Server host.
    pub host: String,
    /// Server port.
    pub port: u16,
    /// Wire protocol.
    pub protocol: Protocol,
    /// Requests in flight per connection.
    pub pipeline: usize,
    /// Per-request (and connect) timeout.
    pub timeout: Duration,
    /// Password to send with AUTH on every connection.
    pub password: Option<String>,
    /// How much each connection sends.
    pub limit: Limit,
    /// Open loop: the run-wide request rate (requests/s); None = closed loop.
    pub rate: Option<f64>,
    /// Connections in the run (to spread the rate over them).
    pub connections: u64,
    /// Reachability of the server, shared with the main thread (fresh for every round).
    pub health: Arc<Health>,
    /// Connect over TLS with this connector.
    pub tls: Option<TlsConnector>,
}

/// A driver's connection: the socket, with a TLS session driven over its readiness when the
/// run is over TLS.
pub enum Link {
    /// Clear text.
    Plain(TcpStream),
    /// TLS: records are read and written with the socket's non-blocking calls.
    Tls(TcpStream, Box<rustls::ClientConnection>),
}

/// `io::Read` / `io::Write` over a socket's non-blocking calls, for rustls.
struct Socket<'s>(&'s TcpStream);

impl Read for Socket<'_> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        self.0.try_read(buf)
    }
}

impl Write for Socket<'_> {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        self.0.try_write(buf)
    }

    fn write_vectored(&mut self, bufs: &[io::IoSlice<'_>]) -> io::Result<usize> {
        self.0.try_write_vectored(bufs)
    }

    fn flush(&mut self) -> io::Result<()> {
        Ok(())
    }
}

impl Link {
    fn from_stream(stream: Stream) -> Link {
        match stream {
            Stream::Plain(s) => Link::Plain(s),
            Stream::Tls(s) => {
                let (tcp, conn) = s.into_inner();
                Link::Tls(tcp, Box::new(conn))
            }
        }
    }

    fn tcp(&self) -> &TcpStream {
        match self {
            Link::Plain(s) | Link::Tls(s, _) => s,
        }
    }

    /// Whether encrypted records are waiting for the socket to take them.
    fn wants_write(&self) -> bool {
        matches!(self, Link::Tls(_, c) if c.wants_write())
    }

    /// Sends queued TLS records until the socket would block.
    fn flush_records(&mut self) -> io::Result<()> {
        if let Link::Tls(tcp, conn) = self {
            while conn.wants_write() {
                match conn.write_tls(&mut Socket(tcp)) {
                    Ok(_) => {}
                    Err(e) if e.kind() == io::ErrorKind::WouldBlock => break,
                    Err(e) => return Err(e),
                }
            }
        }
        Ok(())
    }

    /// Non-blocking write of request bytes; `WouldBlock` when nothing was taken.
    fn try_write(&mut self, data: &[u8]) -> io::Result<usize> {
        match self {
            Link::Plain(s) => s.try_write(data),
            Link::Tls(_, conn) => {
                let mut n = conn.writer().write(data)?;
                self.flush_records()?;
                if n == 0 {
                    // rustls's queue was full; it may have drained into the socket now.
                    let Link::Tls(_, conn) = self else {
                        unreachable!()
                    };
                    n = conn.writer().write(data)?;
                    self.flush_records()?;
                }
                if n == 0 {
                    Err(io::ErrorKind::WouldBlock.into())
                } else {
                    Ok(n)
                }
            }
        }
    }

    /// Non-blocking read of reply bytes: 0 at end of stream, `WouldBlock` when none yet.
    fn try_read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        let (tcp, conn) = match self {
            Link::Plain(s) => return s.try_read(buf),
            Link::Tls(tcp, conn) => (tcp, conn),
        };
        loop {
            match conn.reader().read(buf) {
                Ok(n) => return Ok(n),
                Err(e) if e.kind() == io::ErrorKind::UnexpectedEof => return Ok(0),
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => {}
                Err(e) => return Err(e),
            }
            let n = conn.read_tls(&mut Socket(tcp))?;
            conn.process_new_packets()
                .map_err(|e| io::Error::new(io::ErrorKind::InvalidData, e))?;
            if n == 0 {
                return match conn.reader().read(buf) {
                    Ok(n) => Ok(n),
                    Err(e) if e.kind() == io::ErrorKind::WouldBlock => Ok(0),
                    Err(e) if e.kind() == io::ErrorKind::UnexpectedEof => Ok(0),
                    Err(e) => Err(e),
                };
            }
        }
    }
}

/// When the load starts and when counting starts (after the warm-up).
#[derive(Debug, Clone, Copy)]
pub struct Clock {
    /// First scheduled send.
    pub start: Instant,
    /// Requests timed from before this are not counted.
    pub measure_start: Instant,
}

/// Opens one connection: connect (and TLS handshake) within the timeout, then AUTH when a
/// password is set.
pub async fn open(spec: &DriverSpec) -> Result<Link, String> {
    let mut c = Client::connect_with(
        &spec.host,
        spec.port,
        spec.protocol,
        spec.timeout,
        spec.tls.as_ref(),
    )
    .await
    .map_err(|e| e.to_string())?;
    if let Some(pw) = &spec.password {
        match c.auth(pw).await {
            Ok(Ok(())) => {}
            Ok(Err(reason)) => return Err(format!("authentication failed: {reason}")),
            Err(e) => return Err(e.to_string()),
        }
    }
    Ok(Link::from_stream(c.into_stream()))
}

/// What a reply means for the request it answers.
fn outcome(op: Op, reply: &Reply<'_>) -> Outcome {
    match (op, reply) {
        (Op::Put, Reply::Ok(_)) => Outcome::Success { hit: None },
        (Op::Get { .. }, Reply::Ok(_) | Reply::Bulk(_)) => Outcome::Success { hit: Some(true) },
        (Op::Get { .. }, Reply::Nil) => Outcome::Success { hit: Some(false) },
        _ => Outcome::Failed,
    }
}

#[derive(Debug, Clone, Copy)]
struct InFlight {
    op: Op,
    /// Where latency is measured from (the scheduled time in rate mode).
    timed_from: Instant,
    /// Its slot: the scheduled time in rate mode, else the send time.
    slot: Instant,
    /// When it was written (the timeout runs from here).
    sent: Instant,
    /// False for warm-up requests.
    counted: bool,
}

/// Why the socket has to be dropped.
enum Broken {
    Io(io::Error),
    Closed,
    Protocol(String),
    Timeout,
    /// The main thread stopped the run.
    Stopped,
}

impl Broken {
    fn describe(&self, timeout: Duration) -> String {
        match self {
            Broken::Io(e) => format!("connection error: {e}"),
            Broken::Closed => "the server closed the connection".into(),
            Broken::Protocol(e) => format!("malformed reply: {e}"),
            Broken::Timeout => format!("no reply within {} s", timeout.as_secs_f64()),
            Broken::Stopped => "no reply before the run stopped".into(),
        }
    }
}

/// A failed reply, described for the report.
fn describe_reply(reply: &Reply<'_>) -> String {
    match reply {
        Reply::Error(e) => format!("error reply: {}", String::from_utf8_lossy(e)),
        other => format!("unexpected reply: {other:?}"),
    }
}

/// One connection's state between socket events.
struct Driver<'a> {
    spec: &'a DriverSpec,
    clock: Clock,
    workload: Workload,
    recorder: &'a RefCell<Recorder>,
    progress: &'a AtomicU64,
    inflight: VecDeque<InFlight>,
    wbuf: Vec<u8>,
    wpos: usize,
    rbuf: Vec<u8>,
    rstart: usize,
    rlen: usize,
    /// Counted requests still to send (count mode); u64::MAX in duration mode.
    remaining: u64,
    /// Duration mode: no request is scheduled at or after this.
    end: Option<Instant>,
    /// Rate mode: time between this connection's requests, and the next slot.
    interval: Option<Duration>,
    next_send: Instant,
}

impl Driver<'_> {
    fn done_sending(&self) -> bool {
        self.remaining == 0
    }

    /// Encodes new requests while the window has room and the schedule allows.
    fn issue(&mut self, now: Instant) {
        while self.inflight.len() < self.spec.pipeline && self.remaining > 0 {
            let scheduled = match self.interval {
                Some(_) if self.next_send > now + SEND_SLACK => break,
                Some(_) => self.next_send,
                None => now,
            };
            if self.end.is_some_and(|end| scheduled >= end) {
                self.remaining = 0;
                break;
            }
            // Sent a little early (timer granularity): time from the actual send. Sent late
            // (window full, server behind): time from the schedule.
            let timed_from = scheduled.min(now);
            let counted = scheduled >= self.clock.measure_start;
            let op = self.workload.next_request(&mut self.wbuf);
            self.inflight.push_back(InFlight {
                op,
                timed_from,
                slot: scheduled,
                sent: now,
                counted,
            });
            if counted && self.end.is_none() {
                self.remaining -= 1;
            }
            if let Some(iv) = self.interval {
                self.next_send += iv;
            }
        }
    }

    /// Writes as much pending output as the socket takes.
    fn flush(&mut self, stream: &mut Link) -> Result<(), Broken> {
        stream.flush_records().map_err(Broken::Io)?;
        while self.wpos < self.wbuf.len() {
            match stream.try_write(&self.wbuf[self.wpos..]) {
                Ok(0) => return Err(Broken::Io(io::ErrorKind::WriteZero.into())),
                Ok(n) => self.wpos += n,
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => break,
                Err(e) => return Err(Broken::Io(e)),
            }
        }
        if self.wpos == self.wbuf.len() {
            self.wbuf.clear();
            self.wpos = 0;
        }
        Ok(())
    }

    /// Reads what the socket has and settles every complete reply.
    fn receive(&mut self, stream: &mut Link) -> Result<(), Broken> {
        loop {
            if self.rlen == self.rbuf.len() {
                if self.rstart > 0 {
                    self.rbuf.copy_within(self.rstart..self.rlen, 0);
                    self.rlen -= self.rstart;
                    self.rstart = 0;
                } else {
                    // One reply larger than the buffer.
                    self.rbuf.resize(self.rbuf.len() * 2, 0);
                }
            }
            match stream.try_read(&mut self.rbuf[self.rlen..]) {
                Ok(0) => {
                    self.settle()?;
                    return Err(Broken::Closed);
                }
                Ok(n) => {
                    self.rlen += n;
                    let filled = self.rlen == self.rbuf.len();
                    self.settle()?;
                    if self.inflight.is_empty() && !filled {
                        // Every reply owed has arrived and a server sends nothing unasked,
                        // so the socket is drained: mark it unreadable without the read
                        // that would return WouldBlock (one syscall less per round trip).
                        // (Not over TLS: the server may have sent records of its own, such
                        // as session tickets, that are still unread.)
                        if let Link::Plain(s) = stream {
                            let _ = s.try_io(Interest::READABLE, || {
                                Err::<(), _>(io::ErrorKind::WouldBlock.into())
                            });
                            return Ok(());
                        }
                    }
                }
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => break,
                Err(e) => return Err(Broken::Io(e)),
            }
        }
        self.settle()
    }

    /// Matches buffered replies to the oldest requests in flight and records them.
    fn settle(&mut self) -> Result<(), Broken> {
        let now = Instant::now();
        let mut settled = 0u64;
        let mut rec = self.recorder.borrow_mut();
        let result = loop {
            let buf = &self.rbuf[self.rstart..self.rlen];
            match parse_reply(self.spec.protocol, buf) {
                Ok(Some((reply, used))) => {
                    let Some(req) = self.inflight.pop_front() else {
                        break Err(Broken::Protocol("reply to no request".into()));
                    };
                    if req.counted {
                        let outcome = outcome(req.op, &reply);
                        if outcome == Outcome::Failed {
                            rec.note_error(|| describe_reply(&reply));
                        }
                        rec.record(req.op, outcome, req.timed_from, req.slot, now);
                        settled += 1;
                    }
                    self.rstart += used;
                }
                Ok(None) => break Ok(()),
                Err(e) => break Err(Broken::Protocol(e.to_string())),
            }
        };
        drop(rec);
        if self.rstart == self.rlen {
            self.rstart = 0;
            self.rlen = 0;
        }
        if settled > 0 {
            self.progress.fetch_add(settled, Relaxed);
        }
        result
    }

    /// Fails everything in flight (the connection is being dropped) and resets the buffers.
    fn fail_inflight(&mut self, why: &Broken) {
        let now = Instant::now();
        let timed_out = matches!(why, Broken::Timeout);
        if self.inflight.iter().any(|r| r.counted) {
            let timeout = self.spec.timeout;
            self.recorder
                .borrow_mut()
                .note_error(|| why.describe(timeout));
        }
        let outcome = if timed_out {
            Outcome::TimedOut
        } else {
            Outcome::Failed
        };
        let mut rec = self.recorder.borrow_mut();
        let mut n = 0;
        for req in self.inflight.drain(..) {
            if req.counted {
                rec.record(req.op, outcome, req.timed_from, req.slot, now);
                n += 1;
            }
        }
        drop(rec);
        self.progress.fetch_add(n, Relaxed);
        self.wbuf.clear();
        self.wpos = 0;
        self.rstart = 0;
        self.rlen = 0;
    }

    /// Counts the requests this connection will never send (count mode, run stopped).
    fn give_up(&mut self) {
        if self.end.is_none() && self.remaining > 0 {
            self.recorder.borrow_mut().counters.not_sent += self.remaining;
            self.progress.fetch_add(self.remaining, Relaxed);
            self.remaining = 0;
        }
    }

    /// Serves one socket until the work is done (Ok) or the socket breaks (Err).
    async fn run_socket(&mut self, stream: &mut Link) -> Result<(), Broken> {
        let timeout = self.spec.timeout;
        let far = tokio::time::Instant::now() + Duration::from_secs(86400 * 365);
        // The timeout timer is armed for the oldest request and re-armed only when it fires
        // (deadlines only move forward), so it costs nothing per request.
        let timeout_timer = tokio::time::sleep_until(far);
        let send_timer = tokio::time::sleep_until(far);
        tokio::pin!(timeout_timer, send_timer);
        let mut timer_armed = false;
        loop {
            if self.spec.health.stopped() {
                return Err(Broken::Stopped);
            }
            let now = Instant::now();
            self.issue(now);
            self.flush(stream)?;
            if self.done_sending() && self.inflight.is_empty() {
                return Ok(());
            }
            if let Some(oldest) = self.inflight.front() {
                if now.duration_since(oldest.sent) >= timeout {
                    return Err(Broken::Timeout);
                }
                if !timer_armed {
                    timeout_timer
                        .as_mut()
                        .reset(tokio::time::Instant::from_std(oldest.sent + timeout));
                    timer_armed = true;
                }
            }
            let wait_to_send = self.interval.is_some()
                && !self.done_sending()
                && self.inflight.len() < self.spec.pipeline;
            if wait_to_send {
                let wake = self
                    .next_send
                    .checked_sub(SEND_SLACK)
                    .unwrap_or(self.next_send);
                send_timer
                    .as_mut()
                    .reset(tokio::time::Instant::from_std(wake));
            }
            let interest = if self.wpos < self.wbuf.len() || stream.wants_write() {
                Interest::READABLE | Interest::WRITABLE
            } else {
                Interest::READABLE
            };
            tokio::select! {
                biased;
                ready = stream.tcp().ready(interest) => {
                    let ready = ready.map_err(Broken::Io)?;
                    if ready.is_readable() || ready.is_read_closed() {
                        self.receive(stream)?;
                    }
                    if ready.is_writable() {
                        self.flush(stream)?;
                    }
                }
                _ = &mut timeout_timer, if timer_armed => timer_armed = false,
                _ = &mut send_timer, if wait_to_send => {}
            }
        }
    }
}

/// Runs one connection's share of the load on `stream`, reopening the connection after
/// errors, and records every request in `recorder`.
#[allow(clippy::too_many_arguments)]
pub async fn drive(
    mut stream: Link,
    spec: &DriverSpec,
    index: u64,
    workload: Workload,
    clock: Clock,
    recorder: &RefCell<Recorder>,
    progress: &AtomicU64,
) {
    let (remaining, end) = match spec.limit {
        Limit::Requests(n) => (n, None),
        Limit::Duration(d) => (u64::MAX, Some(clock.measure_start + d)),
    };
    // Rate mode: the run-wide grid start + k/rate is dealt round-robin to the connections.
    let (interval, next_send) = match spec.rate {
        Some(rate) => (
            Some(Duration::from_secs_f64(spec.connections as f64 / rate)),
            clock.start + Duration::from_secs_f64(index as f64 / rate),
        ),
        None => (None, clock.start),
    };
    let mut d = Driver {
        spec,
        clock,
        workload,
        recorder,
        progress,
        inflight: VecDeque::with_capacity(spec.pipeline),
        wbuf: Vec::with_capacity(4096),
        wpos: 0,
        rbuf: vec![0; READ_BUFFER],
        rstart: 0,
        rlen: 0,
        remaining,
        end,
        interval,
        next_send,
    };
    let health = &spec.health;
    loop {
        match d.run_socket(&mut stream).await {
            Ok(()) => return,
            Err(broken) => {
                d.fail_inflight(&broken);
                drop(stream);
            }
        }
        // Reopen with a growing pause. Failed attempts are reconnect failures, not requests:
        // nothing was sent, so they are neither throughput nor latency. The main thread
        // stops the run once the server has been unreachable for --give-up seconds.
        let mut backoff = RECONNECT_BACKOFF;
        stream = loop {
            if health.stopped() {
                d.give_up();
                return;
            }
            if d.done_sending() || d.end.is_some_and(|end| Instant::now() >= end) {
                return;
            }
            match open(spec).await {
                Ok(s) => {
                    health.connected();
                    break s;
                }
                Err(e) => {
                    health.reconnect_failed(&e);
                    {
                        let mut rec = d.recorder.borrow_mut();
                        rec.note_error(|| e.clone());
                        rec.reconnect_failed(Instant::now());
                    }
                    tokio::time::sleep(backoff).await;
                    backoff = (backoff * 2).min(RECONNECT_BACKOFF_MAX);
                }
            }
        };
    }
}

/// Opens `count` connections concurrently (within the current thread) and returns them in
/// order, or the first error.
pub async fn open_all(spec: &DriverSpec, count: usize) -> Result<Vec<Link>, String> {
    let mut pending = Vec::with_capacity(count);
    for _ in 0..count {
        let spec = spec.clone();
        pending.push(tokio::task::spawn_local(async move { open(&spec).await }));
    }
    let mut streams = Vec::with_capacity(count);
    for p in pending {
        match p.await {
            Ok(Ok(s)) => streams.push(s),
            Ok(Err(e)) => return Err(e),
            Err(e) => return Err(format!("connection task failed: {e}")),
        }
    }
    Ok(streams)
}
