//! The table of live connections: what `CLIENT LIST` shows and `CLIENT KILL` acts on, and how
//! shutdown wakes the connections waiting for input without every read having to poll a
//! cancellation future (`shutdown(SHUT_RD)` makes a pending read return end-of-stream; a busy
//! connection sees the flag after its current batch).
//!
//! Cost: the table's lock is taken when a connection opens or closes and by CLIENT LIST/KILL,
//! never per request. What changes per request (last command, last activity) lives in the
//! connection's own [`ClientInfo`] as relaxed atomics written once per batch, by the
//! connection only, so no other core is involved.

use std::collections::HashMap;
use std::net::SocketAddr;
use std::os::fd::{AsRawFd, RawFd};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU8, AtomicU64, Ordering};

use parking_lot::Mutex;
use tokio::net::TcpStream;

/// Milliseconds on a coarse monotonic clock (a few ms resolution, a few ns to read), for ages
/// and idle times in whole seconds.
pub fn coarse_now_ms() -> u64 {
    let mut ts = libc::timespec {
        tv_sec: 0,
        tv_nsec: 0,
    };
    // SAFETY: clock_gettime writes one timespec through the pointer, which points at `ts`.
    unsafe {
        libc::clock_gettime(libc::CLOCK_MONOTONIC_COARSE, &mut ts);
    }
    ts.tv_sec as u64 * 1000 + ts.tv_nsec as u64 / 1_000_000
}

/// One connection as CLIENT LIST and CLIENT INFO show it.
#[derive(Debug)]
pub struct ClientInfo {
    /// Connection id (CLIENT ID), unique for the server's life.
    pub id: u64,
    /// The client's address.
    pub addr: SocketAddr,
    /// Our address the client connected to.
    pub laddr: SocketAddr,
    /// The socket, while registered (-1 for a connection outside any registry).
    fd: RawFd,
    created_ms: u64,
    /// Last activity (coarse ms), written by the connection once per batch.
    last_active_ms: AtomicU64,
    /// Index into [`crate::protocol::REQUEST_NAMES`] of the last command run.
    last_cmd: AtomicU8,
    /// 0 = line protocol, 2 or 3 = RESP version.
    resp: AtomicU8,
    /// CLIENT KILL chose it: it is closing and no longer listed or killable.
    killed: AtomicBool,
    /// CLIENT SETNAME / HELLO SETNAME, and CLIENT SETINFO's library name and version; set by
    /// rare commands, so a lock of this connection's own is fine.
    names: Mutex<Names>,
}

#[derive(Debug, Default)]
struct Names {
    name: Option<Box<[u8]>>,
    lib_name: Option<Box<[u8]>>,
    lib_ver: Option<Box<[u8]>>,
}

impl ClientInfo {
    /// A connection's entry; `fd` is the socket the registry may shut down.
    fn new(id: u64, addr: SocketAddr, laddr: SocketAddr, fd: RawFd) -> ClientInfo {
        let now = coarse_now_ms();
        ClientInfo {
            id,
            addr,
            laddr,
            fd,
            created_ms: now,
            last_active_ms: AtomicU64::new(now),
            last_cmd: AtomicU8::new(0),
            resp: AtomicU8::new(0),
            killed: AtomicBool::new(false),
            names: Mutex::new(Names::default()),
        }
    }

    /// An entry for a session that is not a registered connection (tests, fuzzing).
    pub fn detached(id: u64, addr: SocketAddr) -> Arc<ClientInfo> {
        Arc::new(ClientInfo::new(id, addr, addr, -1))
    }

    /// Records that the connection ran a batch whose last command was `cmd` (an index into
    /// [`crate::protocol::REQUEST_NAMES`]; 0 keeps the previous one). Two relaxed stores.
    #[inline]
    pub fn touch(&self, cmd: u8) {
        self.last_active_ms
            .store(coarse_now_ms(), Ordering::Relaxed);
        if cmd != 0 {
            self.last_cmd.store(cmd, Ordering::Relaxed);
        }
    }

    /// Notes the protocol: 0 = line protocol, 2 or 3 = RESP version.
    pub fn set_resp(&self, version: u8) {
        self.resp.store(version, Ordering::Relaxed);
    }

    /// The connection name, if set.
    pub fn name(&self) -> Option<Box<[u8]>> {
        self.names.lock().name.clone()
    }

    /// Sets or clears the connection name.
    pub fn set_name(&self, name: Option<&[u8]>) {
        self.names.lock().name = name.map(Into::into);
    }

    /// Sets CLIENT SETINFO's library name (`name` = true) or version.
    pub fn set_lib(&self, name: bool, value: &[u8]) {
        let mut n = self.names.lock();
        let slot = if name {
            &mut n.lib_name
        } else {
            &mut n.lib_ver
        };
        *slot = (!value.is_empty()).then(|| value.into());
    }

    /// Seconds since the connection opened.
    pub fn age_secs(&self) -> u64 {
        coarse_now_ms().saturating_sub(self.created_ms) / 1000
    }

    /// Seconds since its last command (or since it opened).
    pub fn idle_secs(&self) -> u64 {
        coarse_now_ms().saturating_sub(self.last_active_ms.load(Ordering::Relaxed)) / 1000
    }

    /// The line CLIENT LIST and CLIENT INFO show for this connection, in Redis's format and
    /// field order, with the fields kvcache has. `current` names the command being run when
    /// the connection describes itself (Redis shows `cmd=client|list` for the caller).
    pub fn describe(&self, current: Option<&str>) -> String {
        let names = self.names.lock();
        let text = |v: &Option<Box<[u8]>>| {
            String::from_utf8_lossy(v.as_deref().unwrap_or_default()).into_owned()
        };
        let resp = self.resp.load(Ordering::Relaxed);
        let cmd = current.unwrap_or_else(|| {
            crate::protocol::REQUEST_NAMES
                .get(self.last_cmd.load(Ordering::Relaxed) as usize)
                .copied()
                .unwrap_or("NULL")
        });
        format!(
            "id={} addr={} laddr={} fd={} name={} age={} idle={} flags=N db=0 sub=0 psub=0 ssub=0 \
             multi=-1 cmd={cmd} user=default redir=-1 resp={resp} lib-name={} lib-ver={} proto={}\n",
            self.id,
            self.addr,
            self.laddr,
            self.fd,
            text(&names.name),
            self.age_secs(),
            self.idle_secs(),
            text(&names.lib_name),
            text(&names.lib_ver),
            if resp == 0 { "line" } else { "resp" },
        )
    }
}

/// The connections being served and whether shutdown has begun.
#[derive(Debug, Default)]
pub struct Registry {
    clients: Mutex<HashMap<u64, Arc<ClientInfo>>>,
    shutting_down: AtomicBool,
}

/// Keeps a connection registered; dropping it deregisters (before the socket closes).
pub(super) struct Registration<'r> {
    registry: &'r Registry,
    /// The connection's entry, shared with its session.
    pub(super) info: Arc<ClientInfo>,
}

impl Registry {
    /// Registers a connection; `None` if shutdown has already begun.
    pub(super) fn register<'r>(
        &'r self,
        id: u64,
        stream: &TcpStream,
        peer: SocketAddr,
    ) -> Option<Registration<'r>> {
        let laddr = stream.local_addr().unwrap_or(peer);
        let info = Arc::new(ClientInfo::new(id, peer, laddr, stream.as_raw_fd()));
        let mut clients = self.clients.lock();
        if self.shutting_down.load(Ordering::Acquire) {
            return None;
        }
        clients.insert(id, Arc::clone(&info));
        Some(Registration {
            registry: self,
            info,
        })
    }

    /// Whether shutdown has begun (cheap: checked once per read).
    #[inline]
    pub(super) fn shutting_down(&self) -> bool {
        self.shutting_down.load(Ordering::Relaxed)
    }

    /// Marks shutdown and shuts the read side of every registered socket.
    pub(super) fn shut_down_reads(&self) {
        let clients = self.clients.lock();
        self.shutting_down.store(true, Ordering::Release);
        for c in clients.values() {
            shutdown_socket(c.fd, libc::SHUT_RD);
        }
    }

    /// Every live connection, oldest first (those being closed by CLIENT KILL left out).
    pub fn list(&self) -> Vec<Arc<ClientInfo>> {
        let mut v: Vec<_> = self
            .clients
            .lock()
            .values()
            .filter(|c| !c.killed.load(Ordering::Relaxed))
            .cloned()
            .collect();
        v.sort_by_key(|c| c.id);
        v
    }

    /// Closes every live connection `matches` accepts, except the caller (`caller` = its id),
    /// which the caller closes itself after replying. Returns how many others were closed and
    /// whether the caller matched. A connection idle in a read sees end-of-stream at once;
    /// a busy one fails its next write. Killed connections leave the list at once, though
    /// their tasks take a moment to finish.
    pub fn kill(&self, matches: impl Fn(&ClientInfo) -> bool, caller: u64) -> (usize, bool) {
        let clients = self.clients.lock();
        let (mut killed, mut me) = (0, false);
        let live = clients
            .values()
            .filter(|c| !c.killed.load(Ordering::Relaxed) && matches(c));
        for c in live {
            if c.id == caller {
                me = true;
            } else {
                c.killed.store(true, Ordering::Relaxed);
                shutdown_socket(c.fd, libc::SHUT_RDWR);
                killed += 1;
            }
        }
        (killed, me)
    }

    /// Marks the caller of a CLIENT KILL that chose itself as closing (it closes after its
    /// reply).
    pub fn mark_killed(&self, c: &ClientInfo) {
        let _clients = self.clients.lock();
        c.killed.store(true, Ordering::Relaxed);
    }
}

/// Shuts down (part of) a registered socket. Called with the registry's lock held.
fn shutdown_socket(fd: RawFd, how: libc::c_int) {
    if fd < 0 {
        return;
    }
    // SAFETY: `fd` belongs to a live connection: a connection deregisters under the registry's
    // lock (held by our caller) before its socket is closed, so the descriptor cannot have been
    // reused. shutdown(2) touches no memory of ours.
    unsafe {
        libc::shutdown(fd, how);
    }
}

impl Drop for Registration<'_> {
    fn drop(&mut self) {
        self.registry.clients.lock().remove(&self.info.id);
    }
}
