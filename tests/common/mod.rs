//! Test harness: the real server on a port-0 listener (in-process or as the real binary) and a
//! small blocking TCP client that speaks raw bytes.
#![allow(dead_code)]

use std::io::{BufRead, BufReader, Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use kvcache::config::Config;
use kvcache::server::Server;

/// A server running in this process on its own runtime thread; stopped on drop.
pub struct TestServer {
    pub addr: SocketAddr,
    /// The bound port on 127.0.0.1.
    pub port: u16,
    /// The memcache port's address, when started with [`TestServer::start_memcache`].
    pub mc_addr: Option<SocketAddr>,
    stop: Option<tokio::sync::oneshot::Sender<()>>,
    thread: Option<std::thread::JoinHandle<()>>,
}

impl TestServer {
    pub fn start(config: Config) -> TestServer {
        TestServer::start_with(config, false)
    }

    /// A server that also serves the memcached protocols on a port of its own.
    pub fn start_memcache(config: Config) -> TestServer {
        TestServer::start_with(config, true)
    }

    fn start_with(mut config: Config, memcache: bool) -> TestServer {
        config.host = "127.0.0.1".into();
        config.port = 0;
        let (addr_tx, addr_rx) = std::sync::mpsc::channel();
        let (stop_tx, stop_rx) = tokio::sync::oneshot::channel::<()>();
        let thread = std::thread::spawn(move || {
            let rt = tokio::runtime::Builder::new_multi_thread()
                .worker_threads(2)
                .enable_all()
                .build()
                .unwrap();
            rt.block_on(async move {
                let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
                let mc = if memcache {
                    Some(tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap())
                } else {
                    None
                };
                let mc_addr = mc.as_ref().map(|l| l.local_addr().unwrap());
                addr_tx
                    .send((listener.local_addr().unwrap(), mc_addr))
                    .unwrap();
                let server = Server::new(config);
                let listeners = kvcache::server::Listeners {
                    plain: Some(listener),
                    memcache: mc,
                    ..Default::default()
                };
                server
                    .run_all(listeners, None, async {
                        let _ = stop_rx.await;
                    })
                    .await;
            });
        });
        let (addr, mc_addr) = addr_rx
            .recv_timeout(Duration::from_secs(10))
            .expect("server started");
        TestServer {
            addr,
            port: addr.port(),
            mc_addr,
            stop: Some(stop_tx),
            thread: Some(thread),
        }
    }

    pub fn default() -> TestServer {
        TestServer::start(Config::default())
    }

    /// A server with the defaults adjusted by `tweak`.
    pub fn with(tweak: impl FnOnce(&mut Config)) -> TestServer {
        let mut config = Config::default();
        tweak(&mut config);
        TestServer::start(config)
    }

    pub fn client(&self) -> Client {
        Client::connect(self.addr)
    }

    /// A client of the memcache port.
    pub fn mc(&self) -> Client {
        Client::connect(self.mc_addr.expect("started with start_memcache"))
    }

    /// Stops the server and waits for it (graceful shutdown included).
    pub fn stop(&mut self) {
        if let Some(tx) = self.stop.take() {
            let _ = tx.send(());
        }
        if let Some(t) = self.thread.take() {
            t.join().unwrap();
        }
    }
}

impl Drop for TestServer {
    fn drop(&mut self) {
        self.stop();
    }
}

/// A blocking client with a read timeout, so a missing reply fails the test instead of hanging.
pub struct Client {
    pub stream: TcpStream,
    reader: BufReader<TcpStream>,
}

impl Client {
    pub fn connect(addr: SocketAddr) -> Client {
        let stream = TcpStream::connect_timeout(&addr, Duration::from_secs(5)).expect("connect");
        stream
            .set_read_timeout(Some(Duration::from_secs(10)))
            .unwrap();
        stream.set_nodelay(true).unwrap();
        let reader = BufReader::new(stream.try_clone().unwrap());
        Client { stream, reader }
    }

    pub fn send(&mut self, bytes: &[u8]) {
        self.stream.write_all(bytes).expect("send");
    }

    /// Reads one `\n`-terminated line, without the terminator (and a `\r` before it).
    pub fn line(&mut self) -> String {
        let mut buf = Vec::new();
        let n = self
            .reader
            .read_until(b'\n', &mut buf)
            .expect("read reply line");
        assert!(n > 0, "connection closed while a reply was expected");
        assert_eq!(
            buf.pop(),
            Some(b'\n'),
            "reply not newline-terminated: {buf:?}"
        );
        if buf.last() == Some(&b'\r') {
            buf.pop();
        }
        String::from_utf8(buf).expect("utf-8 reply")
    }

    /// Sends one line-protocol command and returns the reply line.
    pub fn cmd(&mut self, line: &str) -> String {
        self.send(format!("{line}\n").as_bytes());
        self.line()
    }

    /// Reads exactly `n` bytes.
    pub fn bytes(&mut self, n: usize) -> Vec<u8> {
        let mut buf = vec![0; n];
        self.reader.read_exact(&mut buf).expect("read bytes");
        buf
    }

    /// Whether the server closes the connection (EOF or reset) within `within`, ignoring any
    /// bytes still arriving.
    pub fn closed_within(&mut self, within: Duration) -> bool {
        let deadline = Instant::now() + within;
        self.stream
            .set_read_timeout(Some(Duration::from_millis(100)))
            .unwrap();
        let mut buf = [0u8; 4096];
        while Instant::now() < deadline {
            match self.reader.read(&mut buf) {
                Ok(0) => return true,
                Ok(_) => {}
                Err(e)
                    if e.kind() == std::io::ErrorKind::WouldBlock
                        || e.kind() == std::io::ErrorKind::TimedOut => {}
                Err(_) => return true,
            }
        }
        false
    }

    /// Sends a RESP command and returns the raw reply (one complete RESP value).
    pub fn resp(&mut self, args: &[&[u8]]) -> String {
        self.send(&resp_frame(args));
        self.resp_value()
    }

    /// Reads one RESP value and renders it compactly (arrays as `[a, b]`, nil as `(nil)`).
    pub fn resp_value(&mut self) -> String {
        let line = self.line();
        let (tag, rest) = line.split_at(1);
        match tag {
            "+" | "-" | ":" | "," | "(" | "#" => line,
            "_" => "(nil)".into(),
            "$" | "=" | "!" => {
                let n: i64 = rest.parse().unwrap();
                if n < 0 {
                    return "(nil)".into();
                }
                let body = self.bytes(n as usize + 2);
                String::from_utf8_lossy(&body[..n as usize]).into_owned()
            }
            "*" | "~" | "%" | ">" => {
                let n: i64 = rest.parse().unwrap();
                if n < 0 {
                    return "(nil)".into();
                }
                let count = if tag == "%" { 2 * n } else { n };
                let items: Vec<String> = (0..count).map(|_| self.resp_value()).collect();
                format!("[{}]", items.join(", "))
            }
            _ => panic!("unexpected RESP reply {line:?}"),
        }
    }
}

/// Encodes a RESP multibulk request.
pub fn resp_frame(args: &[&[u8]]) -> Vec<u8> {
    let mut v = format!("*{}\r\n", args.len()).into_bytes();
    for a in args {
        v.extend_from_slice(format!("${}\r\n", a.len()).as_bytes());
        v.extend_from_slice(a);
        v.extend_from_slice(b"\r\n");
    }
    v
}

/// The real `kvcache-server` binary, started with `args` on a free port; killed on drop.
pub struct BinServer {
    pub child: Child,
    pub addr: SocketAddr,
    pub stderr: std::sync::Arc<std::sync::Mutex<String>>,
    stderr_reader: Option<std::thread::JoinHandle<()>>,
}

/// A port on 127.0.0.1 that nothing listens on (bound, then released).
pub fn closed_port() -> u16 {
    free_port()
}

pub fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

impl BinServer {
    /// Starts the binary on port 0 and learns the real port from its start-up log line. (Picking
    /// a free port first and passing it races with other tests doing the same: a second server
    /// would fail to bind, and its test would quietly talk to the first one.)
    pub fn start(args: &[&str], envs: &[(&str, &str)]) -> BinServer {
        let mut cmd = Command::new(env!("CARGO_BIN_EXE_kvcache-server"));
        cmd.args(["--host", "127.0.0.1", "--port", "0"])
            .args(args)
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::piped());
        for (k, v) in envs {
            cmd.env(k, v);
        }
        let mut child = cmd.spawn().expect("spawn kvcache-server");
        let stderr = std::sync::Arc::new(std::sync::Mutex::new(String::new()));
        let mut pipe = child.stderr.take().unwrap();
        let sink = stderr.clone();
        let stderr_reader = std::thread::spawn(move || {
            let mut buf = [0u8; 4096];
            while let Ok(n) = pipe.read(&mut buf) {
                if n == 0 {
                    break;
                }
                sink.lock()
                    .unwrap()
                    .push_str(&String::from_utf8_lossy(&buf[..n]));
            }
        });
        let deadline = Instant::now() + Duration::from_secs(10);
        let addr: SocketAddr = loop {
            let log = stderr.lock().unwrap().clone();
            if let Some(addr) = startup_field(&log, "address") {
                break addr.parse().expect("listening address");
            }
            if let Ok(Some(status)) = child.try_wait() {
                panic!("server exited early with {status}: {log}");
            }
            assert!(Instant::now() < deadline, "server did not start: {log}");
            std::thread::sleep(Duration::from_millis(10));
        };
        BinServer {
            child,
            addr,
            stderr,
            stderr_reader: Some(stderr_reader),
        }
    }

    pub fn client(&self) -> Client {
        Client::connect(self.addr)
    }

    /// Everything the server wrote to stderr so far.
    pub fn stderr(&self) -> String {
        self.stderr.lock().unwrap().clone()
    }

    /// A `name=value` field of the `kvcache-server listening` start-up line.
    pub fn startup_field(&self, name: &str) -> String {
        let log = self.stderr.lock().unwrap().clone();
        startup_field(&log, name)
            .unwrap_or_else(|| panic!("no {name}= in the start-up line: {log}"))
            .to_string()
    }

    /// Sends a signal and waits for exit; returns (exit code, time taken).
    pub fn signal_and_wait(&mut self, sig: i32) -> (Option<i32>, Duration) {
        let started = Instant::now();
        unsafe {
            libc::kill(self.child.id() as i32, sig);
        }
        let deadline = Instant::now() + Duration::from_secs(15);
        loop {
            if let Some(status) = self.child.try_wait().unwrap() {
                let took = started.elapsed();
                // Collect everything the server logged before it exited.
                if let Some(r) = self.stderr_reader.take() {
                    let _ = r.join();
                }
                return (status.code(), took);
            }
            assert!(
                Instant::now() < deadline,
                "server did not exit after signal {sig}"
            );
            std::thread::sleep(Duration::from_millis(10));
        }
    }
}

impl Drop for BinServer {
    fn drop(&mut self) {
        if std::thread::panicking() {
            let exited = self.child.try_wait().ok().flatten();
            eprintln!(
                "--- kvcache-server log (process {}) ---\n{}",
                exited.map_or("still running".to_string(), |s| format!("exited with {s}")),
                self.stderr.lock().unwrap()
            );
        }
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Runs the server binary to completion (for start-up errors) and returns (code, stdout, stderr).
pub fn run_server_binary(args: &[&str], envs: &[(&str, &str)]) -> (Option<i32>, String, String) {
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_kvcache-server"));
    cmd.args(args).stdin(Stdio::null());
    for (k, v) in envs {
        cmd.env(k, v);
    }
    let out = cmd.output().expect("run kvcache-server");
    (
        out.status.code(),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

/// Parses `STATS` output into (name, value) pairs of its integer fields (the fragmentation
/// ratio, a decimal, is left out).
pub fn stats(c: &mut Client) -> std::collections::HashMap<String, u64> {
    let line = c.cmd("STATS");
    let body = line
        .strip_prefix("OK ")
        .unwrap_or_else(|| panic!("bad STATS reply {line}"));
    body.split(' ')
        .filter_map(|kv| {
            let (k, v) = kv.split_once('=').unwrap();
            v.parse().ok().map(|v| (k.to_string(), v))
        })
        .collect()
}

/// Lifts this test process's open-files limit to its hard maximum (capped at 65536) for
/// tests that hold many connections.
pub fn raise_fd_limit() {
    // SAFETY: plain libc calls on a local struct.
    unsafe {
        let mut lim = libc::rlimit {
            rlim_cur: 0,
            rlim_max: 0,
        };
        libc::getrlimit(libc::RLIMIT_NOFILE, &mut lim);
        lim.rlim_cur = lim.rlim_max.min(65536);
        libc::setrlimit(libc::RLIMIT_NOFILE, &lim);
    }
}

/// The value of field `name` on the `kvcache-server listening` line of a server log.
fn startup_field<'l>(log: &'l str, name: &str) -> Option<&'l str> {
    log.lines()
        .find(|l| l.contains("kvcache-server listening"))
        .and_then(|l| l.split(&format!(" {name}=")).nth(1))
        .and_then(|v| v.split_whitespace().next())
}

/// A file in a directory of its own under the system temp dir; both go when it is dropped.
pub struct TempFile {
    dir: std::path::PathBuf,
    pub path: std::path::PathBuf,
}

impl TempFile {
    /// `tag` keeps the directories of tests running at the same time apart.
    pub fn new(tag: &str, name: &str, contents: &str) -> TempFile {
        let dir = std::env::temp_dir().join(format!("kvcache-{tag}-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let path = dir.join(name);
        std::fs::write(&path, contents).unwrap();
        TempFile { dir, path }
    }

    pub fn as_str(&self) -> &str {
        self.path.to_str().unwrap()
    }
}

impl Drop for TempFile {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}
