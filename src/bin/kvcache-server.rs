//! `kvcache-server`: loads settings, binds, loads the snapshot (if any), serves until
//! SIGINT/SIGTERM, saves the snapshot (if configured), exits 0. With TLS, SIGHUP reloads the
//! certificate and key.

use std::process::ExitCode;
use std::time::Duration;

use kvcache::config::{Config, RuntimeLayout};
use kvcache::server::{Server, Tls};
use kvcache::snapshot::Startup;
use tokio::net::TcpListener;
use tracing::{error, info, warn};

fn main() -> ExitCode {
    let config = Config::load();
    init_tracing(&config.log_level);
    // Certificate problems are settings problems: one line naming the setting, exit 2.
    let tls = if config.tls_enabled() {
        match Tls::load(&config) {
            Ok(t) => Some(std::sync::Arc::new(t)),
            Err(e) => {
                eprintln!("kvcache-server: {e}");
                return ExitCode::from(2);
            }
        }
    } else {
        None
    };
    let threads = match config.threads {
        0 => std::thread::available_parallelism().map_or(1, |n| n.get()),
        n => n,
    };
    // Per core: a current-thread runtime here (worker 0) and one per further worker thread,
    // each accepting on its own SO_REUSEPORT socket. Shared: one work-stealing runtime.
    let per_core = config.runtime == RuntimeLayout::PerCore;
    let mut builder = if per_core {
        tokio::runtime::Builder::new_current_thread()
    } else {
        let mut b = tokio::runtime::Builder::new_multi_thread();
        b.worker_threads(threads);
        b
    };
    let runtime = match builder.enable_all().build() {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("kvcache-server: cannot start the runtime: {e}");
            return ExitCode::from(1);
        }
    };
    let workers = if per_core { threads } else { 1 };
    let code = runtime.block_on(serve(config, tls, workers, threads));
    runtime.shutdown_timeout(Duration::from_millis(500));
    code
}

/// Binds `addr` `count` times (with SO_REUSEPORT when more than once, so the kernel spreads
/// new connections over the sockets) or says why not (one line) for the setting `flag`.
fn bind(addr: &str, flag: &str, count: usize) -> Result<Vec<std::net::TcpListener>, ExitCode> {
    let fail = |e: std::io::Error| {
        let hint = match e.kind() {
            std::io::ErrorKind::AddrInUse => &*format!(
                " (another process holds this port: stop it, or choose another with {flag})"
            ),
            std::io::ErrorKind::AddrNotAvailable => {
                " (no local interface has this address: check --host)"
            }
            std::io::ErrorKind::PermissionDenied => {
                " (ports below 1024 need privileges: use a higher port)"
            }
            _ => "",
        };
        eprintln!("kvcache-server: cannot listen on {addr}: {e}{hint}");
        ExitCode::from(1)
    };
    let target: std::net::SocketAddr = match std::net::ToSocketAddrs::to_socket_addrs(addr)
        .map_err(fail)?
        .next()
    {
        Some(a) => a,
        None => {
            eprintln!("kvcache-server: cannot listen on {addr}: no address");
            return Err(ExitCode::from(1));
        }
    };
    if count > 1 && target.port() != 0 {
        // SO_REUSEPORT would let a second kvcache on the same port silently share it: first
        // make sure nobody holds the port, with a plain bind that any holder refuses.
        drop(std::net::TcpListener::bind(target).map_err(fail)?);
    }
    let mut out = Vec::with_capacity(count);
    let mut at = target;
    for _ in 0..count {
        let socket = socket2::Socket::new(
            socket2::Domain::for_address(at),
            socket2::Type::STREAM,
            Some(socket2::Protocol::TCP),
        )
        .map_err(fail)?;
        socket.set_reuse_address(true).map_err(fail)?;
        if count > 1 {
            socket.set_reuse_port(true).map_err(fail)?;
        }
        socket.set_nonblocking(true).map_err(fail)?;
        socket.bind(&at.into()).map_err(fail)?;
        socket.listen(1024).map_err(fail)?;
        let l: std::net::TcpListener = socket.into();
        // Port 0: the first socket chose the port; the others join it.
        at = l.local_addr().map_err(fail)?;
        out.push(l);
    }
    Ok(out)
}

/// One worker's sockets, bound before the runtimes start.
struct Listeners {
    plain: Option<std::net::TcpListener>,
    tls: Option<std::net::TcpListener>,
    memcache: Option<std::net::TcpListener>,
    memcache_tls: Option<std::net::TcpListener>,
}

impl Listeners {
    /// Registers the sockets with the current runtime.
    fn into_tokio(self) -> kvcache::server::Listeners {
        let t = |l: Option<std::net::TcpListener>| {
            l.map(|l| {
                TcpListener::from_std(l).expect("a bound, non-blocking listener inside a runtime")
            })
        };
        kvcache::server::Listeners {
            plain: t(self.plain),
            tls: t(self.tls),
            memcache: t(self.memcache),
            memcache_tls: t(self.memcache_tls),
        }
    }
}

async fn serve(
    config: Config,
    tls: Option<std::sync::Arc<Tls>>,
    workers: usize,
    threads: usize,
) -> ExitCode {
    let mut listeners: Vec<Option<std::net::TcpListener>> = if config.serves_plain() {
        match bind(&config.addr(), "--port / KV_CACHE_PORT", workers) {
            Ok(l) => l.into_iter().map(Some).collect(),
            Err(code) => return code,
        }
    } else {
        (0..workers).map(|_| None).collect()
    };
    let mut tls_listeners: Vec<Option<std::net::TcpListener>> = match &tls {
        Some(_) if config.tls_port != 0 => match bind(
            &config.addr_with_port(config.tls_port),
            "--tls-port / KV_CACHE_TLS_PORT",
            workers,
        ) {
            Ok(l) => l.into_iter().map(Some).collect(),
            Err(code) => return code,
        },
        _ => (0..workers).map(|_| None).collect(),
    };
    let mut mc_listeners: Vec<Option<std::net::TcpListener>> = match config.memcache_port {
        0 => (0..workers).map(|_| None).collect(),
        p => match bind(
            &config.addr_with_port(p),
            "--memcache-port / KV_CACHE_MEMCACHE_PORT",
            workers,
        ) {
            Ok(l) => l.into_iter().map(Some).collect(),
            Err(code) => return code,
        },
    };
    let mut mc_tls_listeners: Vec<Option<std::net::TcpListener>> =
        match (config.memcache_tls_port, &tls) {
            (0, _) | (_, None) => (0..workers).map(|_| None).collect(),
            (p, Some(_)) => match bind(
                &config.addr_with_port(p),
                "--memcache-tls-port / KV_CACHE_MEMCACHE_TLS_PORT",
                workers,
            ) {
                Ok(l) => l.into_iter().map(Some).collect(),
                Err(code) => return code,
            },
        };
    let shown = |l: &Option<std::net::TcpListener>| {
        l.as_ref()
            .and_then(|l| l.local_addr().ok())
            .map_or("off".to_string(), |a| a.to_string())
    };
    let (local, tls_local) = (shown(&listeners[0]), shown(&tls_listeners[0]));
    let (mc_local, mc_tls_local) = (shown(&mc_listeners[0]), shown(&mc_tls_listeners[0]));
    // The snapshot is loaded after binding (a port conflict is reported at once, not after a
    // long load) and before accepting: clients that connect meanwhile wait in the backlog.
    let mut server = Server::new(config.clone());
    if let Err(code) = load_snapshot(&mut server) {
        return code;
    }
    let files = raise_open_files_limit(config.max_connections as u64 + 64);
    if let Some(limit) = config.max_memory_from_cgroup {
        info!(
            cgroup_limit = limit,
            max_memory = config.max_memory,
            "max-memory not set: using 3/4 of the cgroup memory limit, less 8 MiB"
        );
    }
    info!(
        address = %local,
        tls_address = %tls_local,
        memcache_address = %mc_local,
        memcache_tls_address = %mc_tls_local,
        max_connections = config.max_connections,
        max_memory = config.max_memory,
        max_keys = config.max_keys,
        open_files_limit = files,
        threads = threads,
        runtime = %config.runtime.as_str(),
        version = env!("CARGO_PKG_VERSION"),
        "kvcache-server listening"
    );
    if files < config.max_connections as u64 + 16 {
        warn!(
            "open-files limit {files} is below max-connections {}; connections beyond it will fail",
            config.max_connections
        );
    }
    let loopback = |l: &std::net::TcpListener| l.local_addr().is_ok_and(|a| a.ip().is_loopback());
    let open_plain = listeners[0].as_ref().is_some_and(|l| !loopback(l));
    let open_mc = mc_listeners[0].as_ref().is_some_and(|l| !loopback(l));
    let open_tls = (tls_listeners[0].as_ref().is_some_and(|l| !loopback(l))
        || mc_tls_listeners[0].as_ref().is_some_and(|l| !loopback(l)))
        && config.tls_ca_cert_file.is_none();
    if config.password.is_none() && (open_plain || open_mc || open_tls) {
        let at = if open_plain {
            &local
        } else if open_mc {
            &mc_local
        } else {
            &tls_local
        };
        warn!(
            "no password set and listening beyond loopback on {at}: anyone who can reach this port can read and change data (set --password-file)"
        );
    }
    let metrics = if config.metrics_port != 0 {
        let addr = config.addr_with_port(config.metrics_port);
        match TcpListener::bind(&addr).await {
            Ok(l) => {
                info!(address = %addr, "serving Prometheus metrics at /metrics");
                Some(l)
            }
            Err(e) => {
                eprintln!(
                    "kvcache-server: cannot listen on {addr} for metrics (--metrics-port): {e}"
                );
                return ExitCode::from(1);
            }
        }
    } else {
        None
    };
    let server = std::sync::Arc::new(server);
    let (reload_tls, stats) = (tls.clone(), std::sync::Arc::clone(&server.context().stats));
    let reload = async move {
        match reload_tls {
            Some(tls) => tls.reload_on_sighup(stats).await,
            None => std::future::pending().await,
        }
    };
    let metrics = async {
        match metrics {
            Some(l) => server.run_metrics(l).await,
            None => std::future::pending().await,
        }
    };
    // Workers 1.. run on their own threads, each a current-thread runtime serving its own
    // listeners; the signal handler here stops them all.
    let stop = tokio_util::sync::CancellationToken::new();
    let mut others = Vec::new();
    let mut take = |i: usize| Listeners {
        plain: listeners[i].take(),
        tls: tls_listeners[i].take(),
        memcache: mc_listeners[i].take(),
        memcache_tls: mc_tls_listeners[i].take(),
    };
    for i in (1..workers).rev() {
        let mine = take(i);
        let (server, tls, worker_stop) = (server.clone(), tls.clone(), stop.clone());
        let spawned = std::thread::Builder::new()
            .name(format!("kvcache-worker-{i}"))
            .spawn(move || {
                let rt = tokio::runtime::Builder::new_current_thread()
                    .enable_all()
                    .build()
                    .expect("a current-thread runtime");
                rt.block_on(async move {
                    server
                        .run_all(mine.into_tokio(), tls, worker_stop.cancelled())
                        .await
                });
                rt.shutdown_timeout(Duration::from_millis(500));
            });
        match spawned {
            Ok(h) => others.push(h),
            Err(e) => {
                eprintln!("kvcache-server: cannot start worker thread {i}: {e}");
                stop.cancel();
                return ExitCode::from(1);
            }
        }
    }
    let mine = take(0).into_tokio();
    let signal = {
        let stop = stop.clone();
        async move {
            tokio::select! {
                _ = shutdown_signal() => {}
                _ = stop.cancelled() => {}
            }
            stop.cancel();
        }
    };
    tokio::select! {
        _ = server.run_all(mine, tls, signal) => {}
        _ = metrics => { stop.cancel(); }
        _ = reload => { stop.cancel(); }
    }
    stop.cancel();
    for h in others {
        let _ = h.join();
    }
    // Connections have drained: save what they left.
    if let Some(Err(e)) = server.save_snapshot() {
        error!("exiting without a fresh snapshot: {e}");
        return ExitCode::from(1);
    }
    info!("kvcache-server stopped");
    ExitCode::SUCCESS
}

/// Loads the snapshot at start-up and logs what happened; a file that must not be touched
/// (unreadable, or bad with --snapshot-strict) stops start-up with exit code 2.
fn load_snapshot(server: &mut Server) -> Result<(), ExitCode> {
    let file = server
        .context()
        .config
        .snapshot_file
        .as_ref()
        .map(|p| p.display().to_string())
        .unwrap_or_default();
    match server.load_snapshot() {
        Ok(None) => {}
        Ok(Some(Startup::NoFile)) => info!(file, "no snapshot file yet: starting empty"),
        Ok(Some(Startup::Loaded(r))) => info!(
            file,
            keys_loaded = r.loaded,
            skipped_expired = r.expired,
            evicted_by_limits = r.evicted,
            refused_too_large = r.refused,
            bytes = r.bytes,
            took_ms = r.took.as_millis() as u64,
            saved_by = %r.writer,
            "snapshot loaded"
        ),
        Ok(Some(Startup::MovedAside { error: e, to })) => error!(
            "snapshot {file} is unusable ({e}); moved it to {} and starting empty",
            to.display()
        ),
        Err(e) => {
            eprintln!("kvcache-server: {e}");
            return Err(ExitCode::from(2));
        }
    }
    Ok(())
}

/// Resolves on SIGINT or SIGTERM.
async fn shutdown_signal() {
    let ctrl_c = tokio::signal::ctrl_c();
    #[cfg(unix)]
    {
        let mut term =
            match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
                Ok(s) => s,
                Err(_) => {
                    let _ = ctrl_c.await;
                    return;
                }
            };
        tokio::select! {
            _ = ctrl_c => {}
            _ = term.recv() => {}
        }
    }
    #[cfg(not(unix))]
    {
        let _ = ctrl_c.await;
    }
}

fn init_tracing(level: &str) {
    let level = level.parse().unwrap_or(tracing::Level::INFO);
    tracing_subscriber::fmt()
        .with_max_level(level)
        .with_target(false)
        .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr()))
        .with_writer(std::io::stderr)
        .init();
}

/// Raises the soft open-files limit toward `want` (up to the hard limit); returns the result.
fn raise_open_files_limit(want: u64) -> u64 {
    let mut lim = libc::rlimit {
        rlim_cur: 0,
        rlim_max: 0,
    };
    // SAFETY: getrlimit/setrlimit only read/write the struct we pass, which lives on our stack.
    unsafe {
        if libc::getrlimit(libc::RLIMIT_NOFILE, &mut lim) != 0 {
            return 0;
        }
        if lim.rlim_cur < want {
            let target = want.min(lim.rlim_max);
            let new = libc::rlimit {
                rlim_cur: target,
                rlim_max: lim.rlim_max,
            };
            if libc::setrlimit(libc::RLIMIT_NOFILE, &new) == 0 {
                lim.rlim_cur = target;
            }
        }
    }
    lim.rlim_cur
}
