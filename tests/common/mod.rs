//! Shared test support: a real kvcache server on an ephemeral port, run in-process on its own
//! thread and runtime, stopped (gracefully) when dropped.

#![allow(dead_code)]

use std::net::TcpListener as StdListener;
use std::sync::mpsc;
use std::thread::JoinHandle;

use kvcache::config::Config;
use kvcache::server::Server;

/// A running server; `port` is where it listens on 127.0.0.1.
pub struct TestServer {
    /// The bound port.
    pub port: u16,
    shutdown: Option<tokio::sync::oneshot::Sender<()>>,
    thread: Option<JoinHandle<()>>,
}

impl TestServer {
    /// A server with the default settings.
    pub fn start() -> TestServer {
        TestServer::with(|_| {})
    }

    /// A server with settings adjusted by `tweak`.
    pub fn with(tweak: impl FnOnce(&mut Config)) -> TestServer {
        let mut config = Config {
            port: 0,
            host: "127.0.0.1".into(),
            ..Config::default()
        };
        tweak(&mut config);
        let (port_tx, port_rx) = mpsc::channel();
        let (stop_tx, stop_rx) = tokio::sync::oneshot::channel::<()>();
        let thread = std::thread::spawn(move || {
            let rt = tokio::runtime::Builder::new_multi_thread()
                .worker_threads(2)
                .enable_all()
                .build()
                .expect("runtime");
            rt.block_on(async move {
                let listener = tokio::net::TcpListener::bind(("127.0.0.1", 0))
                    .await
                    .expect("bind");
                port_tx
                    .send(listener.local_addr().expect("addr").port())
                    .expect("send port");
                let server = Server::new(config);
                server
                    .run(listener, async {
                        let _ = stop_rx.await;
                    })
                    .await;
            });
        });
        let port = port_rx.recv().expect("server thread started");
        TestServer {
            port,
            shutdown: Some(stop_tx),
            thread: Some(thread),
        }
    }

    /// Stops the server and waits until it has closed every connection.
    pub fn stop(&mut self) {
        if let Some(tx) = self.shutdown.take() {
            let _ = tx.send(());
        }
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

impl Drop for TestServer {
    fn drop(&mut self) {
        self.stop();
    }
}

/// A port on 127.0.0.1 that nothing listens on (bound, then released).
pub fn closed_port() -> u16 {
    let l = StdListener::bind("127.0.0.1:0").expect("bind");
    let port = l.local_addr().expect("addr").port();
    drop(l);
    port
}
