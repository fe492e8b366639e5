//! The network side: accept loop, connection cap, per-connection tasks and graceful shutdown.
//!
//! The caller owns binding and the shutdown signal: [`run`] takes a bound listener and a
//! future that resolves when the server should stop, so tests pass a port-0 listener and a
//! oneshot, and `main` passes SIGINT/SIGTERM.

mod connection;
mod metrics;
mod registry;
pub mod tls;

use registry::Registry;
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
    registry: Arc<Registry>,
    next_id: Arc<AtomicU64>,
    periodic: Option<Periodic>,
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
                encodings: Default::default(),
            }),
            registry: Arc::new(Registry::default()),
            next_id: Arc::new(AtomicU64::new(1)),
            periodic: None,
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
            self.periodic = Some(self.ctx.snapshots.start_periodic(&self.ctx.store, every));
        }
        Ok(Some(outcome))
    }

    /// The shutdown save: stops the periodic saver, waits for a save in progress, then saves
    /// what the store holds now. `None` when snapshots are off.
    pub fn save_snapshot(&mut self) -> Option<Result<SaveReport, String>> {
        self.ctx.snapshots.path()?;
        drop(self.periodic.take());
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
        let tracker = TaskTracker::new();
        tokio::pin!(shutdown);
        let (tls_listener, tls) = tls.unzip();
        loop {
            // Shutdown first; between the two listeners, no preference (a flood on one port
            // must not starve the other).
            let either = async {
                tokio::select! {
                    accepted = accept(&plain) => (accepted, None),
                    accepted = accept(&tls_listener) => (accepted, tls.as_ref()),
                }
            };
            let (accepted, tls) = tokio::select! {
                biased;
                _ = &mut shutdown => break,
                accepted = either => accepted,
            };
            match accepted {
                Ok((stream, peer)) => self.admit(stream, peer, &tracker, tls),
                Err(e) => {
                    // Usually EMFILE: back off instead of spinning on the error.
                    warn!("accept failed: {e}");
                    tokio::time::sleep(Duration::from_millis(50)).await;
                }
            }
        }
        info!(
            connections = self.ctx.stats.connections.get(),
            "shutting down: finishing in-flight requests"
        );
        drop((plain, tls_listener));
        // Connections waiting for input wake up to end-of-stream; busy ones finish their batch,
        // flush, see the flag and stop.
        self.registry.shut_down_reads();
        tracker.close();
        if tokio::time::timeout(SHUTDOWN_GRACE, tracker.wait())
            .await
            .is_err()
        {
            warn!("shutdown grace period over; closing remaining connections");
        }
        info!(
            commands = self.ctx.stats.commands.get(),
            connections_total = self.ctx.stats.connections_total.get(),
            "all connections closed"
        );
    }

    fn admit(
        &self,
        stream: TcpStream,
        peer: std::net::SocketAddr,
        tracker: &TaskTracker,
        tls: Option<&Arc<Tls>>,
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
        let registry = Arc::clone(&self.registry);
        let id = self.next_id.fetch_add(1, Relaxed);
        tracker.spawn(async move {
            debug!(%peer, id, "connection opened");
            let result = connection::serve(&ctx, stream, peer, id, &registry, tls.as_deref()).await;
            ctx.stats.connections.decr();
            match result {
                Ok(()) => debug!(%peer, id, "connection closed"),
                Err(e) => debug!(%peer, id, "connection ended: {e}"),
            }
        });
    }
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
