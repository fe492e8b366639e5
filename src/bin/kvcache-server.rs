//! `kvcache-server`: loads settings, binds, loads the snapshot (if any), serves until
//! SIGINT/SIGTERM, saves the snapshot (if configured), exits 0. With TLS, SIGHUP reloads the
//! certificate and key.

use std::process::ExitCode;
use std::time::Duration;

use kvcache::config::Config;
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
    let mut builder = tokio::runtime::Builder::new_multi_thread();
    if config.threads != 0 {
        builder.worker_threads(config.threads);
    }
    let runtime = match builder.enable_all().build() {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("kvcache-server: cannot start the runtime: {e}");
            return ExitCode::from(1);
        }
    };
    let code = runtime.block_on(serve(config, tls));
    runtime.shutdown_timeout(Duration::from_millis(500));
    code
}

/// Binds `addr` or says why not (one line) for the setting `flag`.
async fn bind(addr: &str, flag: &str) -> Result<TcpListener, ExitCode> {
    match TcpListener::bind(addr).await {
        Ok(l) => Ok(l),
        Err(e) => {
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
            Err(ExitCode::from(1))
        }
    }
}

async fn serve(config: Config, tls: Option<std::sync::Arc<Tls>>) -> ExitCode {
    let listener = if config.serves_plain() {
        match bind(&config.addr(), "--port / KV_CACHE_PORT").await {
            Ok(l) => Some(l),
            Err(code) => return code,
        }
    } else {
        None
    };
    let tls_listener = match &tls {
        Some(_) => match bind(
            &config.addr_with_port(config.tls_port),
            "--tls-port / KV_CACHE_TLS_PORT",
        )
        .await
        {
            Ok(l) => Some(l),
            Err(code) => return code,
        },
        None => None,
    };
    let shown = |l: &Option<TcpListener>| {
        l.as_ref()
            .and_then(|l| l.local_addr().ok())
            .map_or("off".to_string(), |a| a.to_string())
    };
    let (local, tls_local) = (shown(&listener), shown(&tls_listener));
    // The snapshot is loaded after binding (a port conflict is reported at once, not after a
    // long load) and before accepting: clients that connect meanwhile wait in the backlog.
    let mut server = Server::new(config.clone());
    if let Err(code) = load_snapshot(&mut server) {
        return code;
    }
    let files = raise_open_files_limit(config.max_connections as u64 + 64);
    info!(
        address = %local,
        tls_address = %tls_local,
        max_connections = config.max_connections,
        max_memory = config.max_memory,
        max_keys = config.max_keys,
        open_files_limit = files,
        threads = tokio::runtime::Handle::current().metrics().num_workers(),
        version = env!("CARGO_PKG_VERSION"),
        "kvcache-server listening"
    );
    if files < config.max_connections as u64 + 16 {
        warn!(
            "open-files limit {files} is below max-connections {}; connections beyond it will fail",
            config.max_connections
        );
    }
    let loopback = |l: &TcpListener| l.local_addr().is_ok_and(|a| a.ip().is_loopback());
    let open_plain = listener.as_ref().is_some_and(|l| !loopback(l));
    let open_tls =
        tls_listener.as_ref().is_some_and(|l| !loopback(l)) && config.tls_ca_cert_file.is_none();
    if config.password.is_none() && (open_plain || open_tls) {
        let at = if open_plain { &local } else { &tls_local };
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
    let tls_listener = tls_listener.zip(tls);
    tokio::select! {
        _ = server.run_listeners(listener, tls_listener, shutdown_signal()) => {}
        _ = metrics => {}
        _ = reload => {}
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
