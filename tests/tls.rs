//! TLS (issue 12): both protocols over TLS, mutual TLS, hostile clients on the TLS port,
//! certificate reload on SIGHUP (the real binary), start-up errors, and the tools' --tls
//! options. Every certificate and key is generated here by rcgen into a temporary directory;
//! none is committed.

mod common;

use std::io::{BufRead, BufReader, Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use common::resp_frame;
use kvcache::config::Config;
use kvcache::server::{Server, Tls};
use rcgen::{
    BasicConstraints, CertificateParams, DnType, ExtendedKeyUsagePurpose, IsCa, Issuer, KeyPair,
    KeyUsagePurpose,
};
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer, ServerName};

// ---------------------------------------------------------------------------------------
// Certificates

/// A directory of generated PEM files, removed on drop.
struct Pki {
    dir: PathBuf,
}

/// A certificate authority that can sign server and client certificates.
struct Ca {
    issuer: Issuer<'static, KeyPair>,
    pem: String,
}

fn unix_now() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .as_secs()
}

/// A certificate time `secs` after the Unix epoch (rcgen's time type is not re-exported).
macro_rules! at_unix {
    ($secs:expr) => {
        rcgen::date_time_ymd(1970, 1, 1) + Duration::from_secs($secs)
    };
}

impl Ca {
    fn new(name: &str) -> Ca {
        let mut params = CertificateParams::new(Vec::<String>::new()).unwrap();
        params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
        params.distinguished_name.push(DnType::CommonName, name);
        params.key_usages = vec![KeyUsagePurpose::KeyCertSign, KeyUsagePurpose::CrlSign];
        let key = KeyPair::generate().unwrap();
        let pem = params.self_signed(&key).unwrap().pem();
        Ca {
            issuer: Issuer::new(params, key),
            pem,
        }
    }

    /// A leaf certificate for `name` valid from a day ago until `not_after` (Unix seconds):
    /// (certificate PEM, key PEM, certificate DER).
    fn leaf(&self, name: &str, server: bool, not_after: u64) -> (String, String, Vec<u8>) {
        let sans = if server {
            vec!["localhost".to_string(), "127.0.0.1".to_string()]
        } else {
            Vec::new()
        };
        let mut params = CertificateParams::new(sans).unwrap();
        params.distinguished_name.push(DnType::CommonName, name);
        params.not_before = at_unix!(unix_now() - 86400);
        params.not_after = at_unix!(not_after);
        params.extended_key_usages = vec![if server {
            ExtendedKeyUsagePurpose::ServerAuth
        } else {
            ExtendedKeyUsagePurpose::ClientAuth
        }];
        let key = KeyPair::generate().unwrap();
        let cert = params.signed_by(&key, &self.issuer).unwrap();
        (cert.pem(), key.serialize_pem(), cert.der().to_vec())
    }
}

impl Pki {
    fn new(tag: &str) -> Pki {
        let dir = std::env::temp_dir().join(format!("kvcache-tls-{tag}-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).unwrap();
        Pki { dir }
    }

    fn write(&self, name: &str, contents: &str) -> PathBuf {
        let path = self.dir.join(name);
        // Write-then-rename, as a deploy tool would, so a reload never sees half a file.
        let tmp = self.dir.join(format!(".{name}.tmp"));
        std::fs::write(&tmp, contents).unwrap();
        std::fs::rename(&tmp, &path).unwrap();
        path
    }
}

impl Drop for Pki {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

/// A CA and a server certificate signed by it, written out: (pki, ca, paths).
struct ServerFiles {
    pki: Pki,
    ca: Ca,
    ca_file: PathBuf,
    cert_file: PathBuf,
    key_file: PathBuf,
    cert_der: Vec<u8>,
}

fn server_files(tag: &str) -> ServerFiles {
    let pki = Pki::new(tag);
    let ca = Ca::new("kvcache test CA");
    let (cert, key, cert_der) = ca.leaf("kvcache test server", true, unix_now() + 30 * 86400);
    ServerFiles {
        ca_file: pki.write("ca.crt", &ca.pem),
        cert_file: pki.write("server.crt", &cert),
        key_file: pki.write("server.key", &key),
        pki,
        ca,
        cert_der,
    }
}

fn s(p: &Path) -> &str {
    p.to_str().unwrap()
}

// ---------------------------------------------------------------------------------------
// A blocking TLS client

fn client_config(ca_pem: &str, client: Option<(&str, &str)>) -> Arc<rustls::ClientConfig> {
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let mut roots = rustls::RootCertStore::empty();
    for c in CertificateDer::pem_slice_iter(ca_pem.as_bytes()) {
        roots.add(c.unwrap()).unwrap();
    }
    let builder = rustls::ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .unwrap()
        .with_root_certificates(roots);
    let config = match client {
        None => builder.with_no_client_auth(),
        Some((cert, key)) => builder
            .with_client_auth_cert(
                CertificateDer::pem_slice_iter(cert.as_bytes())
                    .map(|c| c.unwrap())
                    .collect(),
                PrivateKeyDer::from_pem_slice(key.as_bytes()).unwrap(),
            )
            .unwrap(),
    };
    Arc::new(config)
}

type TlsStream = rustls::StreamOwned<rustls::ClientConnection, TcpStream>;

/// Line and RESP requests over TLS, with a read timeout so a missing reply fails the test.
struct TlsClient {
    reader: BufReader<TlsStream>,
}

impl TlsClient {
    /// Connects and completes the handshake (an `Err` if the server refuses it).
    fn try_connect(addr: SocketAddr, config: Arc<rustls::ClientConfig>) -> std::io::Result<Self> {
        let tcp = TcpStream::connect_timeout(&addr, Duration::from_secs(5))?;
        tcp.set_read_timeout(Some(Duration::from_secs(10)))?;
        let conn =
            rustls::ClientConnection::new(config, ServerName::try_from("localhost").unwrap())
                .unwrap();
        let mut stream = rustls::StreamOwned::new(conn, tcp);
        while stream.conn.is_handshaking() {
            stream.conn.complete_io(&mut stream.sock)?;
        }
        Ok(TlsClient {
            reader: BufReader::new(stream),
        })
    }

    fn connect(addr: SocketAddr, config: Arc<rustls::ClientConfig>) -> Self {
        Self::try_connect(addr, config).expect("TLS handshake")
    }

    fn send(&mut self, bytes: &[u8]) -> std::io::Result<()> {
        let s = self.reader.get_mut();
        s.write_all(bytes)?;
        s.flush()
    }

    fn try_line(&mut self) -> std::io::Result<String> {
        let mut buf = Vec::new();
        let n = self.reader.read_until(b'\n', &mut buf)?;
        if n == 0 {
            return Err(std::io::ErrorKind::UnexpectedEof.into());
        }
        let text = String::from_utf8(buf).unwrap();
        Ok(text.trim_end_matches(['\r', '\n']).to_string())
    }

    fn line(&mut self) -> String {
        self.try_line().expect("reply line")
    }

    fn cmd(&mut self, line: &str) -> String {
        self.send(format!("{line}\n").as_bytes()).unwrap();
        self.line()
    }

    /// The leaf certificate the server presented.
    fn server_cert(&self) -> Vec<u8> {
        self.reader.get_ref().conn.peer_certificates().unwrap()[0].to_vec()
    }

    /// A request/reply round trip fails (the server refused or dropped the session).
    fn refused(&mut self) -> bool {
        self.send(b"PING\n").is_err() || self.try_line().is_err()
    }
}

// ---------------------------------------------------------------------------------------
// The server, in process

/// A server in this process serving a plain and a TLS listener, both on port 0.
struct TlsServer {
    plain: SocketAddr,
    tls: SocketAddr,
    stop: Option<tokio::sync::oneshot::Sender<()>>,
    thread: Option<std::thread::JoinHandle<()>>,
}

impl TlsServer {
    fn start(files: &ServerFiles, tweak: impl FnOnce(&mut Config)) -> TlsServer {
        let mut config = Config {
            host: "127.0.0.1".into(),
            // Any non-zero port marks TLS as on; the listeners below are what is served.
            tls_port: 1,
            tls_cert_file: Some(files.cert_file.clone()),
            tls_key_file: Some(files.key_file.clone()),
            ..Config::default()
        };
        tweak(&mut config);
        let tls = Arc::new(Tls::load(&config).expect("TLS files load"));
        let (addr_tx, addr_rx) = std::sync::mpsc::channel();
        let (stop_tx, stop_rx) = tokio::sync::oneshot::channel::<()>();
        let thread = std::thread::spawn(move || {
            let rt = tokio::runtime::Builder::new_multi_thread()
                .worker_threads(2)
                .enable_all()
                .build()
                .unwrap();
            rt.block_on(async move {
                let plain = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
                let secure = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
                addr_tx
                    .send((plain.local_addr().unwrap(), secure.local_addr().unwrap()))
                    .unwrap();
                let server = Server::new(config);
                server
                    .run_listeners(Some(plain), Some((secure, tls)), async {
                        let _ = stop_rx.await;
                    })
                    .await;
            });
        });
        let (plain, tls) = addr_rx.recv_timeout(Duration::from_secs(10)).unwrap();
        TlsServer {
            plain,
            tls,
            stop: Some(stop_tx),
            thread: Some(thread),
        }
    }
}

impl Drop for TlsServer {
    fn drop(&mut self) {
        if let Some(tx) = self.stop.take() {
            let _ = tx.send(());
        }
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

/// The integer `name=value` fields of the line protocol's STATS (the fragmentation ratio, a
/// decimal, is left out).
fn stats(c: &mut TlsClient) -> std::collections::HashMap<String, u64> {
    let line = c.cmd("STATS");
    line.strip_prefix("OK ")
        .unwrap()
        .split(' ')
        .filter_map(|kv| {
            let (k, v) = kv.split_once('=').unwrap();
            v.parse().ok().map(|v| (k.to_string(), v))
        })
        .collect()
}

// ---------------------------------------------------------------------------------------
// Tests

#[test]
fn both_protocols_work_over_tls_and_share_data_with_the_plain_port() {
    let files = server_files("protocols");
    let server = TlsServer::start(&files, |_| {});
    let config = client_config(&files.ca.pem, None);
    let mut c = TlsClient::connect(server.tls, config.clone());
    assert_eq!(c.server_cert(), files.cert_der);
    // The line protocol, detected from the first decrypted byte.
    assert_eq!(c.cmd("PUT greeting hello"), "OK stored");
    assert_eq!(c.cmd("GET greeting"), "OK hello");
    assert_eq!(c.cmd("GET missing"), "ERROR key not found");
    // A pipelined batch in one write gets every reply, in order.
    let batch: String = (0..200)
        .map(|i| format!("PUT k{i} v{i}\nGET k{i}\n"))
        .collect();
    c.send(batch.as_bytes()).unwrap();
    for i in 0..200 {
        assert_eq!(c.line(), "OK stored");
        assert_eq!(c.line(), format!("OK v{i}"));
    }
    // RESP on another TLS connection; a value larger than one TLS record (16 KiB).
    let mut r = TlsClient::connect(server.tls, config);
    r.send(&resp_frame(&[b"GET", b"greeting"])).unwrap();
    assert_eq!(r.line(), "$5");
    assert_eq!(r.line(), "hello");
    let big = vec![b'x'; 100_000];
    r.send(&resp_frame(&[b"SET", b"big", &big])).unwrap();
    assert_eq!(r.line(), "+OK");
    r.send(&resp_frame(&[b"GET", b"big"])).unwrap();
    assert_eq!(r.line(), "$100000");
    assert_eq!(r.line().len(), 100_000);
    // The plain port sees the same data.
    let mut plain = common::Client::connect(server.plain);
    assert_eq!(plain.cmd("GET greeting"), "OK hello");
    assert_eq!(plain.cmd("GET k199"), "OK v199");
    // QUIT over TLS: the session ends cleanly (close_notify, then EOF).
    c.send(b"PING\nQUIT\n").unwrap();
    assert_eq!(c.line(), "OK PONG");
    let mut rest = Vec::new();
    assert_eq!(c.reader.read_to_end(&mut rest).unwrap(), 0);
    // STATS and INFO count TLS.
    let st = stats(&mut TlsClient::connect(
        server.tls,
        client_config(&files.ca.pem, None),
    ));
    assert!(st["tls_handshakes"] >= 2, "{st:?}");
    r.send(&resp_frame(&[b"INFO", b"stats"])).unwrap();
    let head = r.line();
    let len: usize = head[1..].parse().unwrap();
    let mut body = vec![0; len + 2];
    r.reader.read_exact(&mut body).unwrap();
    let info = String::from_utf8(body).unwrap();
    assert!(info.contains("kvcache_tls_handshakes:"), "{info}");
    assert!(
        info.contains("kvcache_tls_client_cert_rejected:0"),
        "{info}"
    );
}

#[test]
fn client_list_shows_tls_connections_and_client_kill_closes_them() {
    let files = server_files("clients");
    let server = TlsServer::start(&files, |_| {});
    let config = client_config(&files.ca.pem, None);
    // A line-protocol client over TLS, idle after one command.
    let mut idle = TlsClient::connect(server.tls, config.clone());
    assert_eq!(idle.cmd("PUT k v"), "OK stored");
    // A RESP client over TLS describes itself: its local address is the TLS port.
    let mut r = TlsClient::connect(server.tls, config);
    r.send(&resp_frame(&[b"CLIENT", b"INFO"])).unwrap();
    let len: usize = r.line()[1..].parse().unwrap();
    let mut body = vec![0; len + 2];
    r.reader.read_exact(&mut body).unwrap();
    let me = String::from_utf8(body).unwrap();
    assert!(me.contains(&format!(" laddr={} ", server.tls)), "{me}");
    assert!(me.contains(" cmd=client|info "), "{me}");
    // The plain port lists both TLS connections, the idle one with its last command.
    let mut plain = common::Client::connect(server.plain);
    let list = plain.resp(&[b"CLIENT", b"LIST"]);
    let tls_lines: Vec<&str> = list
        .lines()
        .filter(|l| l.contains(&format!(" laddr={} ", server.tls)))
        .collect();
    assert_eq!(tls_lines.len(), 2, "{list}");
    let line = tls_lines
        .iter()
        .find(|l| l.contains(" cmd=put ") && l.contains(" proto=line"))
        .unwrap_or_else(|| panic!("idle TLS connection not listed: {list}"));
    let id = line
        .split(' ')
        .find_map(|f| f.strip_prefix("id="))
        .unwrap()
        .to_string();
    // CLIENT KILL from the plain port closes the TLS connection while it waits for input.
    assert_eq!(
        plain.resp(&[b"CLIENT", b"KILL", b"ID", id.as_bytes()]),
        ":1"
    );
    assert!(idle.refused(), "the killed TLS connection still answers");
    let list = plain.resp(&[b"CLIENT", b"LIST"]);
    assert!(!list.contains(&format!("id={id} ")), "{list}");
    // The other TLS connection is untouched.
    r.send(&resp_frame(&[b"PING"])).unwrap();
    assert_eq!(r.line(), "+PONG");
}

#[test]
fn mutual_tls_accepts_clients_of_the_ca_and_refuses_the_rest() {
    let files = server_files("mtls");
    let server = TlsServer::start(&files, |c| {
        c.tls_ca_cert_file = Some(files.ca_file.clone());
    });
    let far = unix_now() + 30 * 86400;
    let (cert, key, _) = files.ca.leaf("good client", false, far);
    let stranger = Ca::new("some other CA");
    let (bad_cert, bad_key, _) = stranger.leaf("bad client", false, far);

    let mut good = TlsClient::connect(
        server.tls,
        client_config(&files.ca.pem, Some((&cert, &key))),
    );
    assert_eq!(good.cmd("PUT who good"), "OK stored");

    // No client certificate: refused (at the handshake, or at the first read under TLS 1.3).
    let anonymous = TlsClient::try_connect(server.tls, client_config(&files.ca.pem, None));
    assert!(anonymous.map_or(true, |mut c| c.refused()));
    // A certificate from another CA: refused too.
    let stranger_client = TlsClient::try_connect(
        server.tls,
        client_config(&files.ca.pem, Some((&bad_cert, &bad_key))),
    );
    assert!(stranger_client.map_or(true, |mut c| c.refused()));

    // The good client never noticed, and both refusals were counted.
    assert_eq!(good.cmd("GET who"), "OK good");
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let st = stats(&mut good);
        if st["tls_client_cert_rejected"] == 2 {
            break;
        }
        assert!(Instant::now() < deadline, "{st:?}");
        std::thread::sleep(Duration::from_millis(20));
    }
}

#[test]
fn hostile_clients_on_the_tls_port_are_closed_and_counted_without_hurting_others() {
    let files = server_files("hostile");
    let server = TlsServer::start(&files, |c| c.request_timeout = 1);
    let config = client_config(&files.ca.pem, None);
    let mut good = TlsClient::connect(server.tls, config.clone());
    assert_eq!(good.cmd("PUT k v"), "OK stored");

    // Plain text to the TLS port: closed (after at most a TLS alert), never answered.
    let mut plain_text = common::Client::connect(server.tls);
    plain_text.send(b"PING\r\n");
    let mut got = Vec::new();
    let _ = plain_text.stream.read_to_end(&mut got);
    assert!(!String::from_utf8_lossy(&got).contains("PONG"), "{got:?}");
    // Handshakes that never finish: silence, and half a ClientHello.
    let mut silent: Vec<common::Client> = (0..20)
        .map(|_| common::Client::connect(server.tls))
        .collect();
    let mut half = common::Client::connect(server.tls);
    half.send(&[0x16, 0x03, 0x01, 0x02, 0x00, 0x01]);
    // Meanwhile others are served, over TLS and in the clear.
    for i in 0..50 {
        assert_eq!(good.cmd("GET k"), "OK v", "request {i}");
    }
    let mut fresh = TlsClient::connect(server.tls, config);
    assert_eq!(fresh.cmd("GET k"), "OK v");
    assert_eq!(common::Client::connect(server.plain).cmd("GET k"), "OK v");
    // The stalled handshakes are cut at the 1 s request timeout.
    for c in silent.iter_mut().chain([&mut half]) {
        assert!(c.closed_within(Duration::from_secs(10)));
    }
    let st = stats(&mut good);
    assert_eq!(st["tls_not_tls_closed_connections"], 1, "{st:?}");
    assert_eq!(st["tls_handshake_timeouts"], 21, "{st:?}");
    assert_eq!(st["tls_handshakes"], 2, "{st:?}");
}

// ---------------------------------------------------------------------------------------
// The real binary

/// `kvcache-server` serving TLS only (`--port 0 --tls-port P`), killed on drop.
struct TlsBin {
    child: Child,
    addr: SocketAddr,
    log: Arc<Mutex<String>>,
}

impl TlsBin {
    /// Starts on a free TLS port, retrying if another test took the port first.
    fn start(files: &ServerFiles, extra: &[&str]) -> TlsBin {
        for _ in 0..10 {
            let port = common::free_port().to_string();
            let mut child = Command::new(env!("CARGO_BIN_EXE_kvcache-server"))
                .args(["--host", "127.0.0.1", "--port", "0", "--tls-port", &port])
                .args(["--tls-cert-file", s(&files.cert_file)])
                .args(["--tls-key-file", s(&files.key_file)])
                .args(extra)
                .stdin(Stdio::null())
                .stdout(Stdio::null())
                .stderr(Stdio::piped())
                .spawn()
                .unwrap();
            let log = Arc::new(Mutex::new(String::new()));
            let mut pipe = child.stderr.take().unwrap();
            let sink = log.clone();
            std::thread::spawn(move || {
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
            loop {
                let text = log.lock().unwrap().clone();
                if let Some(addr) = text
                    .lines()
                    .find(|l| l.contains("kvcache-server listening"))
                    .and_then(|l| l.split(" tls_address=").nth(1))
                    .and_then(|v| v.split_whitespace().next())
                {
                    assert!(text.contains(" address=off "), "{text}");
                    return TlsBin {
                        child,
                        addr: addr.parse().unwrap(),
                        log,
                    };
                }
                if let Ok(Some(_)) = child.try_wait() {
                    assert!(text.contains("cannot listen"), "server failed: {text}");
                    break; // the port was taken meanwhile: try another
                }
                assert!(Instant::now() < deadline, "server did not start: {text}");
                std::thread::sleep(Duration::from_millis(10));
            }
        }
        panic!("no free port found");
    }

    /// Sends SIGHUP and waits until the log has one more line containing `marker`.
    fn hup_and_wait_for(&self, marker: &str) {
        let before = self.log.lock().unwrap().matches(marker).count();
        // SAFETY: kill(2) on our own child's pid.
        unsafe {
            libc::kill(self.child.id() as i32, libc::SIGHUP);
        }
        let deadline = Instant::now() + Duration::from_secs(10);
        while self.log.lock().unwrap().matches(marker).count() == before {
            assert!(
                Instant::now() < deadline,
                "no '{marker}' in: {}",
                self.log.lock().unwrap()
            );
            std::thread::sleep(Duration::from_millis(10));
        }
    }
}

impl Drop for TlsBin {
    fn drop(&mut self) {
        if std::thread::panicking() {
            eprintln!("--- kvcache-server log ---\n{}", self.log.lock().unwrap());
        }
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

#[test]
fn sighup_reloads_the_certificate_for_new_connections_and_refuses_bad_files() {
    let files = server_files("reload");
    let server = TlsBin::start(&files, &[]);
    let config = client_config(&files.ca.pem, None);
    let mut old = TlsClient::connect(server.addr, config.clone());
    assert_eq!(old.server_cert(), files.cert_der);
    assert_eq!(old.cmd("PUT k v"), "OK stored");

    // A renewed certificate (new key too), swapped in on disk, then SIGHUP.
    let (cert, key, renewed_der) = files
        .ca
        .leaf("renewed server", true, unix_now() + 60 * 86400);
    files.pki.write("server.key", &key);
    files.pki.write("server.crt", &cert);
    server.hup_and_wait_for("TLS certificate reloaded");
    let mut new = TlsClient::connect(server.addr, config.clone());
    assert_eq!(new.server_cert(), renewed_der);
    // The connection opened before the reload carries on.
    assert_eq!(old.cmd("GET k"), "OK v");

    // Bad files are refused and the renewed certificate stays in use.
    let (other_cert, _, _) = files.ca.leaf("mismatch", true, unix_now() + 60 * 86400);
    files.pki.write("server.crt", &other_cert); // does not match server.key
    server.hup_and_wait_for("TLS certificate reload refused");
    assert!(
        server
            .log
            .lock()
            .unwrap()
            .contains("does not match the certificate")
    );
    files.pki.write("server.crt", "not a certificate\n");
    server.hup_and_wait_for("TLS certificate reload refused");
    let mut after = TlsClient::connect(server.addr, config);
    assert_eq!(after.server_cert(), renewed_der);
    let st = stats(&mut after);
    assert_eq!(st["tls_certificate_reloads"], 1, "{st:?}");
    assert_eq!(st["tls_certificate_reload_failures"], 2, "{st:?}");
    assert_eq!(old.cmd("GET k"), "OK v");
    assert_eq!(new.cmd("GET k"), "OK v");
}

#[test]
fn certificate_problems_stop_start_up_with_one_line_and_exit_2() {
    let files = server_files("startup");
    let run = |cert: &Path, key: &Path, extra: &[&str]| {
        let mut args = vec![
            "--host",
            "127.0.0.1",
            "--port",
            "0",
            "--tls-port",
            "1",
            "--tls-cert-file",
            s(cert),
            "--tls-key-file",
            s(key),
        ];
        args.extend_from_slice(extra);
        let (code, _, stderr) = common::run_server_binary(&args, &[]);
        assert_eq!(code, Some(2), "{stderr}");
        let lines: Vec<&str> = stderr
            .lines()
            .filter(|l| l.starts_with("kvcache-server: "))
            .collect();
        assert_eq!(lines.len(), 1, "{stderr}");
        lines[0].to_string()
    };
    let missing = files.pki.dir.join("nope.crt");
    let e = run(&missing, &files.key_file, &[]);
    assert!(
        e.starts_with(
            "kvcache-server: invalid tls_cert_file (--tls-cert-file / KV_CACHE_TLS_CERT_FILE): "
        ),
        "{e}"
    );
    assert!(e.contains("cannot be read"), "{e}");
    // Unreadable (a directory: root reads any file, but not a directory as one).
    let e = run(&files.cert_file, &files.pki.dir, &[]);
    assert!(
        e.contains("invalid tls_key_file") && e.contains("cannot be read"),
        "{e}"
    );
    let garbage = files.pki.write("garbage.pem", "hello\n");
    let e = run(&garbage, &files.key_file, &[]);
    assert!(e.contains("contains no PEM certificate"), "{e}");
    let e = run(&files.cert_file, &garbage, &[]);
    assert!(
        e.contains("invalid tls_key_file") && e.contains("no usable PEM private key"),
        "{e}"
    );
    // A key that belongs to another certificate.
    let (_, other_key, _) = files.ca.leaf("other", true, unix_now() + 86400 * 30);
    let other_key = files.pki.write("other.key", &other_key);
    let e = run(&files.cert_file, &other_key, &[]);
    assert!(
        e.contains("invalid tls_key_file") && e.contains("does not match the certificate"),
        "{e}"
    );
    // An expired certificate.
    let mut params = CertificateParams::new(vec!["localhost".to_string()]).unwrap();
    params.not_before = at_unix!(unix_now() - 10 * 86400);
    params.not_after = at_unix!(unix_now() - 86400);
    let key = KeyPair::generate().unwrap();
    let expired = files
        .pki
        .write("expired.crt", &params.self_signed(&key).unwrap().pem());
    let expired_key = files.pki.write("expired.key", &key.serialize_pem());
    let e = run(&expired, &expired_key, &[]);
    assert!(
        e.contains("invalid tls_cert_file") && e.contains("expired on"),
        "{e}"
    );
    // A CA file that holds no certificate.
    let e = run(
        &files.cert_file,
        &files.key_file,
        &["--tls-ca-cert-file", s(&garbage)],
    );
    assert!(e.contains("invalid tls_ca_cert_file"), "{e}");
    // TLS settings that do not go together.
    let (code, _, stderr) = common::run_server_binary(&["--tls-port", "6380"], &[]);
    assert_eq!(code, Some(2));
    assert_eq!(
        stderr.trim(),
        "kvcache-server: invalid tls_cert_file (--tls-cert-file / KV_CACHE_TLS_CERT_FILE): is required with tls_port 6380"
    );
    let (code, _, stderr) =
        common::run_server_binary(&[], &[("KV_CACHE_TLS_CERT_FILE", s(&files.cert_file))]);
    assert_eq!(code, Some(2));
    assert!(stderr.contains("tls_port is 0 (off)"), "{stderr}");
}

#[test]
fn a_certificate_close_to_expiry_starts_with_a_warning() {
    let pki = Pki::new("expiring");
    let ca = Ca::new("kvcache test CA");
    let (cert, key, _) = ca.leaf("short-lived", true, unix_now() + 5 * 86400);
    let files = ServerFiles {
        ca_file: pki.write("ca.crt", &ca.pem),
        cert_file: pki.write("server.crt", &cert),
        key_file: pki.write("server.key", &key),
        pki,
        ca,
        cert_der: Vec::new(),
    };
    let server = TlsBin::start(&files, &[]);
    let log = server.log.lock().unwrap().clone();
    assert!(
        log.contains("WARN") && log.contains("expires in 4 days")
            || log.contains("expires in 5 days"),
        "{log}"
    );
    let mut c = TlsClient::connect(server.addr, client_config(&files.ca.pem, None));
    assert_eq!(c.cmd("PING"), "OK PONG");
}

#[test]
fn the_tools_speak_tls() {
    let files = server_files("tools");
    let server = TlsServer::start(&files, |c| c.tls_ca_cert_file = Some(files.ca_file.clone()));
    let (cert, key, _) = files.ca.leaf("cli", false, unix_now() + 30 * 86400);
    let cert = files.pki.write("client.crt", &cert);
    let key = files.pki.write("client.key", &key);
    let port = server.tls.port().to_string();
    let cli = |args: &[&str]| {
        let out = Command::new(env!("CARGO_BIN_EXE_kvcache-cli"))
            .args(["--host", "127.0.0.1", "--port", &port])
            .args(args)
            .env_remove("KV_CACHE_PASSWORD")
            .output()
            .unwrap();
        (
            out.status.code(),
            String::from_utf8_lossy(&out.stdout).trim().to_string(),
            String::from_utf8_lossy(&out.stderr).trim().to_string(),
        )
    };
    let mtls = [
        "--tls",
        "--cacert",
        s(&files.ca_file),
        "--cert",
        s(&cert),
        "--key",
        s(&key),
    ];
    let (code, out, err) = cli(&[&mtls[..], &["PUT", "tool", "works"]].concat());
    assert_eq!((code, out.as_str()), (Some(0), "OK stored"), "{err}");
    let (code, out, _) = cli(&[&mtls[..], &["GET", "tool"]].concat());
    assert_eq!((code, out.as_str()), (Some(0), "OK works"));
    // --insecure skips verifying the server, not presenting our certificate.
    let insecure = [
        "--tls",
        "--insecure",
        "--cert",
        s(&cert),
        "--key",
        s(&key),
        "GET",
        "tool",
    ];
    assert_eq!(cli(&insecure).1, "OK works");
    // Without our CA the server is not trusted: exit 2 and a line saying why.
    let (code, _, err) = cli(&["--tls", "--cert", s(&cert), "--key", s(&key), "PING"]);
    assert_eq!(code, Some(2), "{err}");
    assert!(
        err.starts_with("kvcache-cli: TLS: handshake with 127.0.0.1:"),
        "{err}"
    );
    // Without a client certificate the server refuses us.
    let (code, _, err) = cli(&["--tls", "--cacert", s(&files.ca_file), "PING"]);
    assert_eq!(code, Some(2), "{err}");
    let (code, _, err) = cli(&["--cacert", s(&files.ca_file), "PING"]);
    assert_eq!(code, Some(2), "--cacert without --tls: {err}");

    // Piped lines over TLS.
    let mut child = Command::new(env!("CARGO_BIN_EXE_kvcache-cli"))
        .args(["--host", "127.0.0.1", "--port", &port])
        .args(mtls)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .spawn()
        .unwrap();
    child
        .stdin
        .take()
        .unwrap()
        .write_all(b"PUT a 1\nGET a\nGET tool\n")
        .unwrap();
    let out = child.wait_with_output().unwrap();
    assert_eq!(out.status.code(), Some(0));
    assert_eq!(
        String::from_utf8_lossy(&out.stdout),
        "OK stored\nOK 1\nOK works\n"
    );

    // kvcache-bench over TLS, both protocols.
    for proto in ["text", "resp"] {
        let json = files.pki.dir.join(format!("bench-{proto}.json"));
        let out = Command::new(env!("CARGO_BIN_EXE_kvcache-bench"))
            .args([
                "--host",
                "127.0.0.1",
                "--port",
                &port,
                "-c",
                "4",
                "-r",
                "500",
                "-P",
                "8",
            ])
            .args(["--protocol", proto, "-o", s(&json)])
            .args(mtls)
            .output()
            .unwrap();
        assert_eq!(
            out.status.code(),
            Some(0),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
        let stdout = String::from_utf8_lossy(&out.stdout);
        assert!(stdout.contains("over TLS"), "{stdout}");
        let v: serde_json::Value = serde_json::from_slice(&std::fs::read(&json).unwrap()).unwrap();
        assert_eq!(v["tls"], true);
        assert_eq!(v["successful_requests"], 2000);
    }
}
