//! The network side: accept loop, connection cap, per-connection tasks and graceful shutdown.
//!
//! The caller owns binding and the shutdown signal: [`run`] takes a bound listener and a
//! future that resolves when the server should stop, so tests pass a port-0 listener and a
//! oneshot, and `main` passes SIGINT/SIGTERM.

mod connection;
mod metrics;
mod registry;
pub mod tls;

pub use registry::{ClientInfo, Registry, coarse_now_ms};
pub use tls::Tls;

use std::future::Future;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering::Relaxed};
use std::time::Duration;

use tokio::io::AsyncWriteExt;
use tokio::net::{TcpListener, TcpStream};
use tokio_util::task::TaskTracker;
use tracing::{debug, info, warn};

use crate::cmd::Context;
use crate::config::Config;
use crate::snapshot::{self, Periodic, SaveReport, Snapshots, Startup, StartupError};
use crate::stats::Stats;
use crate::store::{Store, Sweeper, default_shards};

/// How long shutdown waits for connections to finish their batch and flush.
pub const SHUTDOWN_GRACE: Duration = Duration::from_secs(4);
/// Interval of the background expiry sweep.
const SWEEP_INTERVAL: Duration = Duration::from_millis(100);

/// A configured server: the store, counters and settings, ready to serve listeners.
pub struct Server {
    ctx: Arc<Context>,
    next_id: Arc<AtomicU64>,
    /// Workers whose accept loops have not closed their listeners yet (see `run_all`).
    accepting: std::sync::atomic::AtomicUsize,
    /// Workers still serving connections: the last one to finish logs the final counts.
    serving: std::sync::atomic::AtomicUsize,
    /// The periodic saver, stopped by the shutdown save (a lock only so that save can run on a
    /// shared `Server`).
    periodic: parking_lot::Mutex<Option<Periodic>>,
    _sweeper: Sweeper,
}

impl Server {
    /// Creates the store (and its background sweeper) from the settings.
    pub fn new(config: Config) -> Server {
        let shards = if config.shards == 0 {
            default_shards()
        } else {
            config.shards
        };
        let store = Arc::new(
            Store::builder()
                .shards(shards)
                .max_keys(config.max_keys)
                .max_memory(config.max_memory)
                .build(),
        );
        let sweeper = store.start_sweeper(SWEEP_INTERVAL);
        Server {
            ctx: Arc::new(Context {
                store,
                stats: Arc::new(Stats::default()),
                snapshots: Arc::new(Snapshots::new(config.snapshot_file.clone())),
                config: Arc::new(config),
                clients: Arc::new(Registry::default()),
                encodings: Default::default(),
                memcache: Default::default(),
            }),
            next_id: Arc::new(AtomicU64::new(1)),
            accepting: std::sync::atomic::AtomicUsize::new(0),
            serving: std::sync::atomic::AtomicUsize::new(0),
            periodic: parking_lot::Mutex::new(None),
            _sweeper: sweeper,
        }
    }

    /// Loads the snapshot file, if one is configured and exists, then starts the periodic
    /// saver (`--snapshot-interval`). Call before serving: a periodic save must never write
    /// before the old file was read.
    pub fn load_snapshot(&mut self) -> Result<Option<Startup>, StartupError> {
        let Some(path) = self.ctx.config.snapshot_file.clone() else {
            return Ok(None);
        };
        let outcome =
            snapshot::load_at_startup(&self.ctx.store, &path, self.ctx.config.snapshot_strict)?;
        if let Startup::Loaded(r) = &outcome {
            self.ctx.snapshots.record_load(r.clone());
        }
        if self.ctx.config.snapshot_interval > 0 {
            let every = Duration::from_secs(self.ctx.config.snapshot_interval);
            *self.periodic.lock() = Some(self.ctx.snapshots.start_periodic(&self.ctx.store, every));
        }
        Ok(Some(outcome))
    }

    /// The shutdown save: stops the periodic saver, waits for a save in progress, then saves
    /// what the store holds now. `None` when snapshots are off.
    pub fn save_snapshot(&self) -> Option<Result<SaveReport, String>> {
        self.ctx.snapshots.path()?;
        drop(self.periodic.lock().take());
        Some(self.ctx.snapshots.save_now(&self.ctx.store))
    }

    /// The shared context (store, stats, config).
    pub fn context(&self) -> &Arc<Context> {
        &self.ctx
    }

    /// Serves Prometheus metrics (`GET /metrics`) on `listener`; runs until dropped, so run it
    /// beside [`Server::run`] and drop it when that returns.
    pub async fn run_metrics(&self, listener: TcpListener) {
        metrics::serve(listener, Arc::clone(&self.ctx)).await
    }

    /// Serves `listener` until `shutdown` resolves, then stops accepting, lets every connection
    /// finish the batch in hand and flush, and returns (after at most [`SHUTDOWN_GRACE`]).
    pub async fn run(&self, listener: TcpListener, shutdown: impl Future<Output = ()>) {
        self.run_listeners(Some(listener), None, shutdown).await
    }

    /// Like [`Server::run`], over a plain listener, a TLS listener (with the [`Tls`] that
    /// handshakes its connections), or both; the connection cap and shutdown cover both.
    pub async fn run_listeners(
        &self,
        plain: Option<TcpListener>,
        tls: Option<(TcpListener, Arc<Tls>)>,
        shutdown: impl Future<Output = ()>,
    ) {
        let (tls_listener, tls) = tls.unzip();
        let listeners = Listeners {
            plain,
            tls: tls_listener,
            ..Listeners::default()
        };
        self.run_all(listeners, tls, shutdown).await
    }

    /// Serves every listener given until `shutdown` resolves: the RESP / line-protocol ports
    /// (plain and TLS) and the memcached ports (plain and TLS). `tls` handshakes the
    /// connections of both TLS listeners. The connection cap and shutdown cover them all.
    pub async fn run_all(
        &self,
        listeners: Listeners,
        tls: Option<Arc<Tls>>,
        shutdown: impl Future<Output = ()>,
    ) {
        let tracker = TaskTracker::new();
        self.accepting
            .fetch_add(1, std::sync::atomic::Ordering::SeqCst);
        self.serving
            .fetch_add(1, std::sync::atomic::Ordering::SeqCst);
        tokio::pin!(shutdown);
        let Listeners {
            plain,
            tls: tls_listener,
            memcache,
            memcache_tls,
        } = listeners;
        let tls_listener = tls_listener.filter(|_| tls.is_some());
        let memcache_tls = memcache_tls.filter(|_| tls.is_some());
        loop {
            // Shutdown first; between the listeners, no preference (a flood on one port must
            // not starve the others).
            let any = async {
                tokio::select! {
                    accepted = accept(&plain) => (accepted, None, Wire::Auto),
                    accepted = accept(&tls_listener) => (accepted, tls.as_ref(), Wire::Auto),
                    accepted = accept(&memcache) => (accepted, None, Wire::Memcache),
                    accepted = accept(&memcache_tls) => (accepted, tls.as_ref(), Wire::Memcache),
                }
            };
            let (accepted, tls, wire) = tokio::select! {
                biased;
                _ = &mut shutdown => break,
                accepted = any => accepted,
            };
            match accepted {
                Ok((stream, peer)) => self.admit(stream, peer, &tracker, tls, wire),
                Err(e) => {
                    // Usually EMFILE: back off instead of spinning on the error.
                    warn!("accept failed: {e}");
                    tokio::time::sleep(Duration::from_millis(50)).await;
                }
            }
        }
        drop((plain, tls_listener, memcache, memcache_tls));
        // Every worker closes its listeners before any connection is told to stop (the
        // registry is shared): otherwise a client cut off here could reconnect through another
        // worker's SO_REUSEPORT listener that is still open and lose a second request to the
        // same shutdown. Bounded, in case a worker is stuck. The last to close says so once.
        if self
            .accepting
            .fetch_sub(1, std::sync::atomic::Ordering::SeqCst)
            == 1
        {
            info!(
                connections = self.ctx.stats.connections.get(),
                "shutting down: finishing in-flight requests"
            );
        } else {
            let deadline = tokio::time::Instant::now() + Duration::from_secs(1);
            while self.accepting.load(std::sync::atomic::Ordering::SeqCst) > 0
                && tokio::time::Instant::now() < deadline
            {
                tokio::time::sleep(Duration::from_millis(2)).await;
            }
        }
        // Connections waiting for input wake up to end-of-stream; busy ones finish their batch,
        // flush, see the flag and stop.
        self.ctx.clients.shut_down_reads();
        tracker.close();
        if tokio::time::timeout(SHUTDOWN_GRACE, tracker.wait())
            .await
            .is_err()
        {
            warn!("shutdown grace period over; closing remaining connections");
        }
        // Counted server-wide, so only once every worker's connections are done are the
        // figures final: the last worker logs them (tests and operators read this line).
        if self
            .serving
            .fetch_sub(1, std::sync::atomic::Ordering::SeqCst)
            == 1
        {
            info!(
                commands = self.ctx.stats.commands.get(),
                connections_total = self.ctx.stats.connections_total.get(),
                "all connections closed"
            );
        } else {
            debug!("this worker's connections closed; waiting for the others");
        }
    }

    fn admit(
        &self,
        stream: TcpStream,
        peer: std::net::SocketAddr,
        tracker: &TaskTracker,
        tls: Option<&Arc<Tls>>,
        wire: Wire,
    ) {
        let stats = &self.ctx.stats;
        if stats.connections.get() >= self.ctx.config.max_connections as u64 {
            stats.connections_rejected.incr();
            debug!(%peer, "connection refused: at max-connections");
            if tls.is_none() {
                tracker.spawn(reject(stream));
            } // a TLS client could not read a clear-text reason: just close
            return;
        }
        let tls = tls.cloned();
        stats.connections.incr();
        stats.connections_total.incr();
        let ctx = Arc::clone(&self.ctx);
        let id = self.next_id.fetch_add(1, Relaxed);
        tracker.spawn(async move {
            debug!(%peer, id, "connection opened");
            let result = connection::serve(&ctx, stream, peer, id, tls.as_deref(), wire).await;
            ctx.stats.connections.decr();
            match result {
                Ok(()) => debug!(%peer, id, "connection closed"),
                Err(e) => debug!(%peer, id, "connection ended: {e}"),
            }
        });
    }
}

/// The listeners a server can serve; any may be absent.
#[derive(Debug, Default)]
pub struct Listeners {
    /// RESP and the line protocol (the first byte decides).
    pub plain: Option<TcpListener>,
    /// RESP and the line protocol over TLS.
    pub tls: Option<TcpListener>,
    /// memcached's text and meta protocols.
    pub memcache: Option<TcpListener>,
    /// memcached's protocols over TLS.
    pub memcache_tls: Option<TcpListener>,
}

/// Which protocols a connection speaks, decided by the port it came in on.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Wire {
    /// RESP or the line protocol, chosen by the first byte.
    Auto,
    /// memcached's protocols from the first byte.
    Memcache,
}

/// Accepts from `listener`, or waits forever when there is none.
async fn accept(
    listener: &Option<TcpListener>,
) -> std::io::Result<(TcpStream, std::net::SocketAddr)> {
    match listener {
        Some(l) => l.accept().await,
        None => std::future::pending().await,
    }
}

/// Tells a client over the cap why it is being closed. Bounded in time so a stalled peer
/// cannot hold the slot.
async fn reject(mut stream: TcpStream) {
    let _ = tokio::time::timeout(Duration::from_secs(1), async {
        let _ = stream.write_all(b"ERROR too many connections\n").await;
        let _ = stream.shutdown().await;
    })
    .await;
}
