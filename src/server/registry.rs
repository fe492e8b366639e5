//! Open connections, so shutdown can wake the ones waiting for input without every read
//! having to poll a cancellation future: `shutdown(SHUT_RD)` makes a pending read return
//! end-of-stream, and a busy connection sees the flag after its current batch.

use std::collections::HashMap;
use std::os::fd::{AsRawFd, RawFd};
use std::sync::atomic::{AtomicBool, Ordering};

use parking_lot::Mutex;
use tokio::net::TcpStream;

/// The connections being served and whether shutdown has begun.
#[derive(Default)]
pub(super) struct Registry {
    fds: Mutex<HashMap<u64, RawFd>>,
    shutting_down: AtomicBool,
}

/// Keeps a connection registered; dropping it deregisters (before the socket closes).
pub(super) struct Registration<'r> {
    registry: &'r Registry,
    id: u64,
}

impl Registry {
    /// Registers a connection; `None` if shutdown has already begun.
    pub(super) fn register<'r>(&'r self, id: u64, stream: &TcpStream) -> Option<Registration<'r>> {
        let mut fds = self.fds.lock();
        if self.shutting_down.load(Ordering::Acquire) {
            return None;
        }
        fds.insert(id, stream.as_raw_fd());
        Some(Registration { registry: self, id })
    }

    /// Whether shutdown has begun (cheap: checked once per read).
    #[inline]
    pub(super) fn shutting_down(&self) -> bool {
        self.shutting_down.load(Ordering::Relaxed)
    }

    /// Marks shutdown and shuts the read side of every registered socket.
    pub(super) fn shut_down_reads(&self) {
        let fds = self.fds.lock();
        self.shutting_down.store(true, Ordering::Release);
        for &fd in fds.values() {
            // SAFETY: `fd` belongs to a live connection: a connection deregisters under this
            // lock before its socket is closed, so the descriptor cannot have been reused.
            // shutdown(2) touches no memory of ours.
            unsafe {
                libc::shutdown(fd, libc::SHUT_RD);
            }
        }
    }
}

impl Drop for Registration<'_> {
    fn drop(&mut self) {
        self.registry.fds.lock().remove(&self.id);
    }
}
