//! TLS for both protocols: build the acceptor from the configured PEM files, swap in new
//! files on SIGHUP (a bad set is refused and the old one stays), run each handshake under a
//! deadline, and then move bytes through the rustls session with the same readiness-based
//! reads as the plain path.
//!
//! The interface is small on purpose, so the runtime layout around it can change: [`Tls::load`]
//! at start-up, [`Tls::reload`] (or [`Tls::reload_on_sighup`]), [`Tls::handshake`] per
//! connection, and [`TlsSession`], the connection loop's transport after the handshake.
//!
//! The handshake itself goes through tokio-rustls on a borrowed socket; afterwards the
//! connection drives the `rustls::ServerConnection` directly over the socket's readiness, so
//! the server keeps owning the socket (for the shutdown registry and the lingering close) and
//! an unpipelined client costs one read per request, as on the plain port.

use std::io::{self, BufRead, Read, Write};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use parking_lot::RwLock;
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer};
use rustls::server::WebPkiClientVerifier;
use rustls::{RootCertStore, ServerConfig, ServerConnection};
use tokio::io::Interest;
use tokio::net::TcpStream;
use tokio_rustls::TlsAcceptor;
use tracing::{info, warn};

use crate::config::{Config, ConfigError, bad};
use crate::stats::Stats;

/// Handshake deadline when `--request-timeout` is 0 (no request deadline): a handshake that
/// never finishes must still give its slot back.
pub const HANDSHAKE_TIMEOUT_FALLBACK: Duration = Duration::from_secs(10);
/// A certificate expiring sooner than this is loaded with a warning.
pub const EXPIRY_WARNING: Duration = Duration::from_secs(14 * 86400);

/// The PEM files the acceptor is built from (read again on every reload).
#[derive(Debug, Clone)]
struct Files {
    cert: PathBuf,
    key: PathBuf,
    ca: Option<PathBuf>,
}

/// What was loaded, for the log.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CertInfo {
    /// Certificates in the chain (leaf first).
    pub chain_len: usize,
    /// End of the leaf certificate's validity, Unix seconds.
    pub not_after: u64,
    /// Whether clients must present a certificate (a CA file is set).
    pub client_auth: bool,
}

/// The server's TLS side: the current acceptor (swapped on reload) and where it came from.
pub struct Tls {
    files: Files,
    acceptor: RwLock<TlsAcceptor>,
    handshake_timeout: Duration,
}

/// Why a handshake failed; each kind has its own counter.
#[derive(Debug)]
pub enum HandshakeError {
    /// The client sent something that is not TLS (plain text to the TLS port).
    NotTls(String),
    /// The handshake did not finish within the deadline.
    Timeout(Duration),
    /// Mutual TLS: no client certificate, or one that does not chain to the CA file.
    ClientCert(String),
    /// Anything else (no common version or cipher, reset, the client refusing our certificate).
    Other(String),
}

impl std::fmt::Display for HandshakeError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            HandshakeError::NotTls(e) => write!(f, "not a TLS client: {e}"),
            HandshakeError::Timeout(d) => {
                write!(f, "TLS handshake not finished within {}s", d.as_secs())
            }
            HandshakeError::ClientCert(e) => write!(f, "client certificate refused: {e}"),
            HandshakeError::Other(e) => write!(f, "TLS handshake failed: {e}"),
        }
    }
}

impl HandshakeError {
    /// Adds one to the counter for this kind of failure.
    pub fn count(&self, stats: &Stats) {
        match self {
            HandshakeError::NotTls(_) => stats.tls_not_tls.incr(),
            HandshakeError::Timeout(_) => stats.tls_handshake_timeouts.incr(),
            HandshakeError::ClientCert(_) => stats.tls_client_cert_rejected.incr(),
            HandshakeError::Other(_) => stats.tls_handshake_failures.incr(),
        }
    }

    fn classify(e: io::Error) -> HandshakeError {
        use rustls::Error as E;
        use rustls::InvalidMessage as M;
        let Some(tls) = e.get_ref().and_then(|i| i.downcast_ref::<rustls::Error>()) else {
            return HandshakeError::Other(e.to_string());
        };
        match tls {
            E::InvalidMessage(M::InvalidContentType | M::UnknownProtocolVersion) => {
                HandshakeError::NotTls(tls.to_string())
            }
            E::NoCertificatesPresented | E::InvalidCertificate(_) => {
                HandshakeError::ClientCert(tls.to_string())
            }
            _ => HandshakeError::Other(tls.to_string()),
        }
    }
}

/// The rustls provider: ring, which builds with only a C compiler.
fn provider() -> Arc<rustls::crypto::CryptoProvider> {
    Arc::new(rustls::crypto::ring::default_provider())
}

fn read_file(setting: &str, path: &Path) -> Result<Vec<u8>, ConfigError> {
    std::fs::read(path).map_err(|e| {
        bad(
            setting,
            &path.display().to_string(),
            &format!("cannot be read: {e}"),
        )
    })
}

/// Every certificate in a PEM file; at least one.
fn read_certs(setting: &str, path: &Path) -> Result<Vec<CertificateDer<'static>>, ConfigError> {
    let pem = read_file(setting, path)?;
    let shown = path.display().to_string();
    let certs = CertificateDer::pem_slice_iter(&pem)
        .collect::<Result<Vec<_>, _>>()
        .map_err(|e| bad(setting, &shown, &format!("is not valid PEM: {e}")))?;
    if certs.is_empty() {
        return Err(bad(
            setting,
            &shown,
            "contains no PEM certificate (-----BEGIN CERTIFICATE-----)",
        ));
    }
    Ok(certs)
}

fn now_unix() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_secs())
}

/// Reads and checks the files and builds a server configuration from them.
fn build(files: &Files) -> Result<(Arc<ServerConfig>, CertInfo), ConfigError> {
    let cert_path = files.cert.display().to_string();
    let key_path = files.key.display().to_string();
    let chain = read_certs("tls_cert_file", &files.cert)?;
    let (not_before, not_after) = validity(&chain[0]).ok_or_else(|| {
        bad(
            "tls_cert_file",
            &cert_path,
            "holds a certificate that cannot be parsed",
        )
    })?;
    let now = now_unix();
    if not_after <= now {
        return Err(bad(
            "tls_cert_file",
            &cert_path,
            &format!("holds a certificate that expired on {}", utc(not_after)),
        ));
    }
    if not_before > now {
        warn!(
            "the TLS certificate in {cert_path} is not valid until {}; clients will refuse it until then",
            utc(not_before)
        );
    }
    let key_pem = read_file("tls_key_file", &files.key)?;
    let key = PrivateKeyDer::from_pem_slice(&key_pem).map_err(|e| {
        bad(
            "tls_key_file",
            &key_path,
            &format!("holds no usable PEM private key: {e}"),
        )
    })?;
    let builder = ServerConfig::builder_with_provider(provider())
        .with_protocol_versions(&[&rustls::version::TLS13, &rustls::version::TLS12])
        .map_err(|e| bad("tls_port", "", &e.to_string()))?;
    let builder = match &files.ca {
        None => builder.with_no_client_auth(),
        Some(ca) => {
            let shown = ca.display().to_string();
            let mut roots = RootCertStore::empty();
            for cert in read_certs("tls_ca_cert_file", ca)? {
                roots.add(cert).map_err(|e| {
                    bad(
                        "tls_ca_cert_file",
                        &shown,
                        &format!("holds an unusable CA certificate: {e}"),
                    )
                })?;
            }
            let verifier = WebPkiClientVerifier::builder_with_provider(roots.into(), provider())
                .build()
                .map_err(|e| bad("tls_ca_cert_file", &shown, &e.to_string()))?;
            builder.with_client_cert_verifier(verifier)
        }
    };
    let info = CertInfo {
        chain_len: chain.len(),
        not_after,
        client_auth: files.ca.is_some(),
    };
    let config = builder.with_single_cert(chain, key).map_err(|e| match e {
        rustls::Error::InconsistentKeys(_) => bad(
            "tls_key_file",
            &key_path,
            &format!("does not match the certificate in {cert_path}"),
        ),
        other => bad(
            "tls_key_file",
            &key_path,
            &format!("cannot be used: {other}"),
        ),
    })?;
    Ok((Arc::new(config), info))
}

fn log_loaded(what: &str, files: &Files, info: &CertInfo) {
    let left = info.not_after.saturating_sub(now_unix());
    info!(
        cert = %files.cert.display(),
        expires = %utc(info.not_after),
        chain = info.chain_len,
        client_certificates = if info.client_auth { "required" } else { "off" },
        "{what}"
    );
    if left < EXPIRY_WARNING.as_secs() {
        warn!(
            "the TLS certificate in {} expires in {} days ({}); replace it and send SIGHUP",
            files.cert.display(),
            left / 86400,
            utc(info.not_after)
        );
    }
}

impl Tls {
    /// Loads the certificate, key and (optional) CA from the configured files. Every problem
    /// is a [`ConfigError`] naming the setting, for a one-line start-up error.
    pub fn load(config: &Config) -> Result<Tls, ConfigError> {
        let missing = |name: &str| ConfigError {
            setting: name.into(),
            reason: "is required for TLS".into(),
        };
        let files = Files {
            cert: config
                .tls_cert_file
                .clone()
                .ok_or_else(|| missing("tls_cert_file"))?,
            key: config
                .tls_key_file
                .clone()
                .ok_or_else(|| missing("tls_key_file"))?,
            ca: config.tls_ca_cert_file.clone(),
        };
        let (server_config, info) = build(&files)?;
        log_loaded("TLS certificate loaded", &files, &info);
        let handshake_timeout = match config.request_timeout {
            0 => HANDSHAKE_TIMEOUT_FALLBACK,
            s => Duration::from_secs(s),
        };
        Ok(Tls {
            files,
            acceptor: RwLock::new(TlsAcceptor::from(server_config)),
            handshake_timeout,
        })
    }

    /// Reads the files again; on success new connections use them (open ones keep theirs),
    /// on failure nothing changes. Logs and counts either outcome.
    pub fn reload(&self, stats: &Stats) -> Result<CertInfo, ConfigError> {
        match build(&self.files) {
            Ok((config, info)) => {
                *self.acceptor.write() = TlsAcceptor::from(config);
                stats.tls_reloads.incr();
                log_loaded("TLS certificate reloaded", &self.files, &info);
                Ok(info)
            }
            Err(e) => {
                stats.tls_reload_failures.incr();
                warn!("TLS certificate reload refused, the previous one stays in use: {e}");
                Err(e)
            }
        }
    }

    /// Reloads on every SIGHUP, forever; run it beside the server and drop it to stop.
    pub async fn reload_on_sighup(self: Arc<Self>, stats: Arc<Stats>) {
        let mut hup = match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::hangup()) {
            Ok(s) => s,
            Err(e) => {
                warn!("cannot listen for SIGHUP, certificate reload is off: {e}");
                return std::future::pending().await;
            }
        };
        while hup.recv().await.is_some() {
            info!("SIGHUP: reloading the TLS certificate and key");
            let _ = self.reload(&stats);
        }
    }

    /// The acceptor new connections use now.
    pub fn acceptor(&self) -> TlsAcceptor {
        self.acceptor.read().clone()
    }

    /// How long a handshake may take: the request timeout, or a fixed bound when that is 0.
    pub fn handshake_timeout(&self) -> Duration {
        self.handshake_timeout
    }

    /// Runs the server side of the handshake on `stream` (which stays the caller's), within
    /// the handshake timeout.
    pub async fn handshake(&self, stream: &mut TcpStream) -> Result<TlsSession, HandshakeError> {
        let acceptor = self.acceptor();
        let limit = self.handshake_timeout;
        match tokio::time::timeout(limit, acceptor.accept(stream)).await {
            Err(_) => Err(HandshakeError::Timeout(limit)),
            Ok(Err(e)) => Err(HandshakeError::classify(e)),
            Ok(Ok(tls)) => Ok(TlsSession {
                conn: Box::new(tls.into_inner().1),
            }),
        }
    }
}

/// An established TLS session over a socket the connection owns: records are read and
/// written with the socket's non-blocking calls and its readiness.
pub struct TlsSession {
    conn: Box<ServerConnection>,
}

/// `io::Read` over the socket's non-blocking read, noting whether a read came back short
/// (the socket is drained).
struct SocketReader<'s> {
    stream: &'s TcpStream,
    short: bool,
}

impl Read for SocketReader<'_> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        let n = self.stream.try_read(buf)?;
        self.short = n < buf.len();
        Ok(n)
    }
}

/// `io::Write` over the socket's non-blocking writes.
struct SocketWriter<'s>(&'s TcpStream);

impl Write for SocketWriter<'_> {
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

impl TlsSession {
    /// Moves decrypted bytes rustls holds into `buf`'s spare capacity: `Some(n)` with n > 0,
    /// `Some(0)` at the end of the stream, `None` when there is nothing yet.
    fn take_plaintext(&mut self, buf: &mut Vec<u8>) -> io::Result<Option<usize>> {
        let mut reader = self.conn.reader();
        match reader.fill_buf() {
            Ok([]) => Ok(Some(0)), // close_notify
            Ok(data) => {
                if buf.capacity() == 0 {
                    *buf = super::connection::take_buffer();
                }
                let n = data.len().min(buf.capacity() - buf.len());
                buf.extend_from_slice(&data[..n]);
                reader.consume(n);
                Ok(Some(n))
            }
            Err(e) if e.kind() == io::ErrorKind::WouldBlock => Ok(None),
            // The peer closed the socket without close_notify: end of input all the same.
            Err(e) if e.kind() == io::ErrorKind::UnexpectedEof => Ok(Some(0)),
            Err(e) => Err(e),
        }
    }

    /// Sends every TLS record rustls has queued, waiting for the socket as needed, and gives
    /// up on a peer that accepts nothing for `stall`.
    async fn flush_records(&mut self, stream: &TcpStream, stall: Duration) -> io::Result<()> {
        while self.conn.wants_write() {
            match self.conn.write_tls(&mut SocketWriter(stream)) {
                Ok(0) => return Err(io::ErrorKind::WriteZero.into()),
                Ok(_) => {}
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => {
                    tokio::time::timeout(stall, stream.writable())
                        .await
                        .map_err(|_| {
                            io::Error::new(
                                io::ErrorKind::TimedOut,
                                "client stopped reading replies",
                            )
                        })??;
                }
                Err(e) => return Err(e),
            }
        }
        Ok(())
    }
}

impl super::connection::Transport for TlsSession {
    async fn read(&mut self, stream: &TcpStream, buf: &mut Vec<u8>) -> io::Result<usize> {
        loop {
            if let Some(n) = self.take_plaintext(buf)? {
                return Ok(n);
            }
            if self.conn.wants_write() {
                // Alerts, key updates or tickets rustls wants sent before we wait.
                self.flush_records(stream, super::connection::WRITE_STALL_TIMEOUT)
                    .await?;
            }
            stream.readable().await?;
            // As on the plain path, a short read means the socket is drained, and readiness
            // is cleared through `try_io` with the tick taken before the read.
            let mut drained = None;
            let conn = &mut self.conn;
            let result = stream.try_io(Interest::READABLE, || {
                let mut src = SocketReader {
                    stream,
                    short: false,
                };
                match conn.read_tls(&mut src) {
                    Ok(n) if n > 0 && src.short => {
                        drained = Some(n);
                        Err(io::ErrorKind::WouldBlock.into())
                    }
                    other => other,
                }
            });
            let got = match (result, drained) {
                (_, Some(n)) | (Ok(n), None) => n,
                (Err(e), None) if e.kind() == io::ErrorKind::WouldBlock => {
                    if buf.is_empty() && buf.capacity() > 0 {
                        super::connection::give_buffer(std::mem::take(buf));
                    }
                    continue;
                }
                (Err(e), None) => return Err(e),
            };
            if let Err(e) = self.conn.process_new_packets() {
                // rustls queued an alert saying why; send it if the socket takes it now.
                let _ = self.conn.write_tls(&mut SocketWriter(stream));
                return Err(io::Error::new(io::ErrorKind::InvalidData, e));
            }
            if got == 0 {
                // End of the TCP stream: hand over what was decrypted, then report the end.
                return Ok(self.take_plaintext(buf)?.unwrap_or(0));
            }
        }
    }

    async fn write_all(&mut self, stream: &mut TcpStream, mut data: &[u8]) -> io::Result<()> {
        loop {
            // rustls encrypts into its own queue, up to its buffer limit at a time.
            while !data.is_empty() {
                let n = self.conn.writer().write(data)?;
                if n == 0 {
                    break;
                }
                data = &data[n..];
            }
            self.flush_records(stream, super::connection::WRITE_STALL_TIMEOUT)
                .await?;
            if data.is_empty() {
                return Ok(());
            }
        }
    }

    async fn close(&mut self, stream: &mut TcpStream) {
        self.conn.send_close_notify();
        let _ = self.flush_records(stream, Duration::from_secs(1)).await;
    }
}

/// One DER element at the start of `d`: (tag, contents, the rest).
fn der(d: &[u8]) -> Option<(u8, &[u8], &[u8])> {
    let (&tag, d) = d.split_first()?;
    let (&first, mut d) = d.split_first()?;
    let len = if first < 0x80 {
        first as usize
    } else {
        let n = (first & 0x7f) as usize;
        if n == 0 || n > 4 || d.len() < n {
            return None;
        }
        let len = d[..n].iter().fold(0usize, |l, &b| (l << 8) | b as usize);
        d = &d[n..];
        len
    };
    (d.len() >= len).then(|| (tag, &d[..len], &d[len..]))
}

/// The validity period (notBefore, notAfter) of an X.509 certificate, in Unix seconds.
fn validity(cert: &[u8]) -> Option<(u64, u64)> {
    let (0x30, cert, _) = der(cert)? else {
        return None;
    };
    let (0x30, tbs, _) = der(cert)? else {
        return None;
    };
    let (tag, _, mut rest) = der(tbs)?;
    if tag == 0xa0 {
        rest = der(rest)?.2; // skip the serial number after the explicit version
    }
    let (_, _, rest) = der(rest)?; // signature algorithm
    let (_, _, rest) = der(rest)?; // issuer
    let (0x30, validity, _) = der(rest)? else {
        return None;
    };
    let (t1, before, rest) = der(validity)?;
    let (t2, after, _) = der(rest)?;
    Some((asn1_time(t1, before)?, asn1_time(t2, after)?))
}

/// UTCTime (`YYMMDDHHMMSSZ`, tag 0x17) or GeneralizedTime (`YYYYMMDDHHMMSSZ`, tag 0x18).
fn asn1_time(tag: u8, s: &[u8]) -> Option<u64> {
    let s = std::str::from_utf8(s).ok()?.strip_suffix('Z')?;
    let (year, rest) = match tag {
        0x17 if s.len() == 12 => {
            let yy: i64 = s[..2].parse().ok()?;
            (if yy >= 50 { 1900 + yy } else { 2000 + yy }, &s[2..])
        }
        0x18 if s.len() == 14 => (s[..4].parse().ok()?, &s[4..]),
        _ => return None,
    };
    let field = |i: usize| rest.get(i..i + 2)?.parse::<i64>().ok();
    let (mo, d, h, mi, se) = (field(0)?, field(2)?, field(4)?, field(6)?, field(8)?);
    if !(1..=12).contains(&mo) || !(1..=31).contains(&d) || h > 23 || mi > 59 || se > 60 {
        return None;
    }
    let secs = days_from_civil(year, mo, d) * 86400 + h * 3600 + mi * 60 + se;
    u64::try_from(secs).ok()
}

/// Days since 1970-01-01 of a proleptic Gregorian date (Howard Hinnant's algorithm).
fn days_from_civil(y: i64, m: i64, d: i64) -> i64 {
    let y = if m <= 2 { y - 1 } else { y };
    let era = y.div_euclid(400);
    let yoe = y - era * 400;
    let doy = (153 * (if m > 2 { m - 3 } else { m + 9 }) + 2) / 5 + d - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    era * 146_097 + doe - 719_468
}

/// `YYYY-MM-DD HH:MM:SS UTC` for log lines.
pub fn utc(unix: u64) -> String {
    let days = (unix / 86400) as i64;
    let secs = unix % 86400;
    // Inverse of days_from_civil.
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z - era * 146_097;
    let yoe = (doe - doe / 1460 + doe / 36524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = doy - (153 * mp + 2) / 5 + 1;
    let m = if mp < 10 { mp + 3 } else { mp - 9 };
    let y = yoe + era * 400 + i64::from(m <= 2);
    format!(
        "{y:04}-{m:02}-{d:02} {:02}:{:02}:{:02} UTC",
        secs / 3600,
        secs / 60 % 60,
        secs % 60
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    fn cert_valid(from: (i32, u8, u8), to: (i32, u8, u8)) -> Vec<u8> {
        let mut params = rcgen::CertificateParams::new(vec!["localhost".into()]).unwrap();
        params.not_before = rcgen::date_time_ymd(from.0, from.1, from.2);
        params.not_after = rcgen::date_time_ymd(to.0, to.1, to.2);
        let key = rcgen::KeyPair::generate().unwrap();
        params.self_signed(&key).unwrap().der().to_vec()
    }

    #[test]
    fn reads_validity_from_certificates() {
        // UTCTime before 2050, GeneralizedTime from 2050 on.
        let der = cert_valid((2024, 2, 29), (2049, 12, 31));
        assert_eq!(validity(&der), Some((1_709_164_800, 2_524_521_600)));
        let der = cert_valid((1999, 1, 1), (2051, 3, 1));
        assert_eq!(validity(&der), Some((915_148_800, 2_561_241_600)));
        assert_eq!(validity(b"not a certificate"), None);
        assert_eq!(validity(&der[..40]), None);
    }

    #[test]
    fn dates_round_trip() {
        assert_eq!(utc(0), "1970-01-01 00:00:00 UTC");
        assert_eq!(utc(1_709_164_800 + 3661), "2024-02-29 01:01:01 UTC");
        assert_eq!(days_from_civil(2000, 3, 1), 11_017);
        assert_eq!(asn1_time(0x17, b"491231235959Z"), Some(2_524_607_999));
        assert_eq!(asn1_time(0x17, b"700101000000Z"), Some(0));
        assert_eq!(asn1_time(0x17, b"500101000000Z"), None); // 1950: before 1970
        assert_eq!(asn1_time(0x18, b"20241301000000Z"), None);
        assert_eq!(asn1_time(0x17, b"2412310000Z"), None);
    }
}
