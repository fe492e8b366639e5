//! The async client shared by `kvcache-cli`, `kvcache-bench` and the tests: connecting with a
//! deadline, line-protocol and RESP request encoding, a reply parser for both, and pipelining.
//!
//! The encoders and [`parse_reply`] are plain functions over byte buffers so that the load
//! generator can drive its own sockets with them; [`Client`] wraps them for request/reply use.
//! Connections are plain TCP or TLS ([`TlsOptions`] -> [`Stream`]).

use std::io;
use std::path::PathBuf;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Duration;

use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer, ServerName};
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt, ReadBuf};
use tokio::net::TcpStream;
pub use tokio_rustls::TlsConnector;

/// How long the tools wait for a connection or a reply unless told otherwise.
pub const DEFAULT_TIMEOUT: Duration = Duration::from_secs(5);

/// Deepest RESP aggregate [`parse_reply`] descends into before calling the reply malformed.
const MAX_DEPTH: usize = 32;

/// Which wire protocol a connection speaks.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum Protocol {
    /// The KV-Cache line protocol (`PUT k v`, `GET k`; replies `OK ...` / `ERROR ...`).
    Text,
    /// Redis RESP2 (`SET`/`GET` as arrays of bulk strings), as spoken by kvcache and Redis.
    Resp,
    /// memcached's text protocol (`set`/`get`), as spoken by kvcache's memcache port and memcached.
    Memcache,
}

impl Protocol {
    /// The lower-case name used on the command line and in reports.
    pub fn name(self) -> &'static str {
        match self {
            Protocol::Text => "text",
            Protocol::Resp => "resp",
            Protocol::Memcache => "memcache",
        }
    }
}

/// Why a client operation failed; the messages are written to be shown to a user as they are.
#[derive(Debug, thiserror::Error)]
pub enum ClientError {
    /// The host name did not resolve to any address.
    #[error("cannot resolve {addr}: {reason}")]
    Resolve {
        /// `host:port` as given.
        addr: String,
        /// The resolver's explanation.
        reason: String,
    },
    /// Every address of the host refused or failed the connection.
    #[error("cannot connect to {addr}: {source}")]
    Connect {
        /// `host:port` as given.
        addr: String,
        /// The last connection error.
        source: io::Error,
    },
    /// No connection was established within the deadline.
    #[error("cannot connect to {addr}: timed out after {}", fmt_secs(*.timeout))]
    ConnectTimeout {
        /// `host:port` as given.
        addr: String,
        /// The deadline that passed.
        timeout: Duration,
    },
    /// No complete reply arrived within the deadline.
    #[error("no reply from the server within {}", fmt_secs(*.0))]
    Timeout(Duration),
    /// The server closed the connection before replying.
    #[error("the server closed the connection")]
    Closed,
    /// A read or write failed (reset, broken pipe, ...).
    #[error("connection error: {0}")]
    Io(#[from] io::Error),
    /// The server sent bytes that are not a valid reply.
    #[error("malformed reply from the server: {0}")]
    Protocol(String),
    /// TLS could not be set up (unreadable certificate files) or the handshake failed.
    #[error("TLS: {0}")]
    Tls(String),
}

impl ClientError {
    /// Whether the error means the connection is unusable or was never made (as opposed to a
    /// malformed reply); the CLI maps these to its "connection" exit code.
    pub fn is_connection(&self) -> bool {
        !matches!(self, ClientError::Protocol(_))
    }
}

fn fmt_secs(d: Duration) -> String {
    format!("{}s", d.as_secs_f64())
}

/// Formats `host:port`, bracketing bare IPv6 addresses.
pub fn addr_string(host: &str, port: u16) -> String {
    if host.contains(':') && !host.starts_with('[') {
        format!("[{host}]:{port}")
    } else {
        format!("{host}:{port}")
    }
}

/// The address to connect to for a host setting shared with the server: `KV_CACHE_HOST` may
/// hold the server's listen address, and "every interface" (`0.0.0.0`, `::`, empty) means
/// this machine to a client.
pub fn connect_host(host: &str) -> &str {
    match host.trim() {
        "" | "0.0.0.0" => "127.0.0.1",
        "::" | "[::]" => "::1",
        _ => host,
    }
}

/// Parses a port for the tools (`--port`, `KV_CACHE_PORT`): 1 to 65535, with an error that
/// names the rule (a negative number is a value here, not a flag).
pub fn parse_port(s: &str) -> Result<u16, String> {
    match s.trim().parse::<i64>() {
        Ok(n) if (1..=65535).contains(&n) => Ok(n as u16),
        Ok(_) => Err(format!("'{s}' is out of range (expected 1 to 65535)")),
        Err(_) => Err(format!("'{s}' is not a port number (expected 1 to 65535)")),
    }
}

/// Resolves `host` and connects to the first address that accepts, all within `timeout`
/// (`Duration::ZERO` = no deadline). The socket gets `TCP_NODELAY`: every tool here sends
/// small requests and waits for their replies.
pub async fn connect(host: &str, port: u16, timeout: Duration) -> Result<TcpStream, ClientError> {
    let addr = addr_string(host, port);
    let attempt = async {
        let host = host.trim_start_matches('[').trim_end_matches(']');
        let addrs: Vec<_> = tokio::net::lookup_host((host, port))
            .await
            .map_err(|e| ClientError::Resolve {
                addr: addr.clone(),
                reason: e.to_string(),
            })?
            .collect();
        let mut last = None;
        for a in addrs {
            match TcpStream::connect(a).await {
                Ok(stream) => {
                    stream.set_nodelay(true)?;
                    return Ok(stream);
                }
                Err(e) => last = Some(e),
            }
        }
        Err(match last {
            Some(source) => ClientError::Connect {
                addr: addr.clone(),
                source,
            },
            None => ClientError::Resolve {
                addr: addr.clone(),
                reason: "no addresses found".into(),
            },
        })
    };
    if timeout.is_zero() {
        return attempt.await;
    }
    match tokio::time::timeout(timeout, attempt).await {
        Ok(r) => r,
        Err(_) => Err(ClientError::ConnectTimeout {
            addr: addr.clone(),
            timeout,
        }),
    }
}

/// TLS settings for a client connection, as the tools' `--tls` options give them.
#[derive(Debug, Clone, Default)]
pub struct TlsOptions {
    /// CA certificates (PEM) to verify the server with; default: the system's CA bundle.
    pub ca_file: Option<PathBuf>,
    /// Client certificate chain (PEM) for servers that require one (mutual TLS).
    pub cert_file: Option<PathBuf>,
    /// The client certificate's private key (PEM).
    pub key_file: Option<PathBuf>,
    /// Accept any server certificate (encryption without authentication: testing only).
    pub insecure: bool,
}

/// The tools' TLS flags (`kvcache-cli`, `kvcache-bench`), named as in redis-cli.
#[derive(Debug, Clone, Default, clap::Args)]
pub struct TlsArgs {
    /// Connect over TLS (to the server's --tls-port)
    #[arg(long)]
    pub tls: bool,
    /// CA certificate file (PEM) to verify the server with [default: the system's CA bundle]
    #[arg(long, value_name = "FILE", requires = "tls")]
    pub cacert: Option<PathBuf>,
    /// Client certificate (PEM), for servers that require one (--tls-ca-cert-file)
    #[arg(long, value_name = "FILE", requires_all = ["tls", "key"])]
    pub cert: Option<PathBuf>,
    /// Private key of the client certificate (PEM)
    #[arg(long, value_name = "FILE", requires_all = ["tls", "cert"])]
    pub key: Option<PathBuf>,
    /// Do not verify the server's certificate (still encrypted, but anyone can pose as the server)
    #[arg(long, requires = "tls")]
    pub insecure: bool,
}

impl TlsArgs {
    /// The connector these flags ask for, or `None` without `--tls`.
    pub fn connector(&self) -> Result<Option<TlsConnector>, ClientError> {
        if !self.tls {
            return Ok(None);
        }
        TlsOptions {
            ca_file: self.cacert.clone(),
            cert_file: self.cert.clone(),
            key_file: self.key.clone(),
            insecure: self.insecure,
        }
        .connector()
        .map(Some)
    }
}

/// Where distributions keep the system CA bundle (the list openssl-probe uses, in short).
const SYSTEM_CA_FILES: &[&str] = &[
    "/etc/ssl/certs/ca-certificates.crt",
    "/etc/pki/tls/certs/ca-bundle.crt",
    "/etc/ssl/ca-bundle.pem",
    "/etc/ssl/cert.pem",
    "/usr/local/etc/openssl/cert.pem",
];

fn tls_error(what: &str, path: &std::path::Path, e: impl std::fmt::Display) -> ClientError {
    ClientError::Tls(format!("{what} {}: {e}", path.display()))
}

fn pem_certs(
    what: &str,
    path: &std::path::Path,
) -> Result<Vec<CertificateDer<'static>>, ClientError> {
    let pem = std::fs::read(path).map_err(|e| tls_error(what, path, e))?;
    let certs = CertificateDer::pem_slice_iter(&pem)
        .collect::<Result<Vec<_>, _>>()
        .map_err(|e| tls_error(what, path, e))?;
    if certs.is_empty() {
        return Err(tls_error(what, path, "no PEM certificate in the file"));
    }
    Ok(certs)
}

impl TlsOptions {
    /// Builds the connector (TLS 1.2 and 1.3, rustls with ring): trusts `ca_file` or the
    /// system bundle, presents the client certificate when one is given.
    pub fn connector(&self) -> Result<TlsConnector, ClientError> {
        let provider = Arc::new(rustls::crypto::ring::default_provider());
        let builder = rustls::ClientConfig::builder_with_provider(provider.clone())
            .with_protocol_versions(&[&rustls::version::TLS13, &rustls::version::TLS12])
            .map_err(|e| ClientError::Tls(e.to_string()))?;
        let builder = if self.insecure {
            builder
                .dangerous()
                .with_custom_certificate_verifier(Arc::new(AnyServerCert(provider)))
        } else {
            let ca = match &self.ca_file {
                Some(path) => path.clone(),
                None => std::env::var_os("SSL_CERT_FILE")
                    .map(PathBuf::from)
                    .or_else(|| {
                        SYSTEM_CA_FILES
                            .iter()
                            .map(PathBuf::from)
                            .find(|p| p.exists())
                    })
                    .ok_or_else(|| {
                        ClientError::Tls(
                            "no system CA bundle found: pass --cacert FILE (or --insecure)".into(),
                        )
                    })?,
            };
            let mut roots = rustls::RootCertStore::empty();
            let (added, _ignored) = roots.add_parsable_certificates(pem_certs("CA file", &ca)?);
            if added == 0 {
                return Err(tls_error("CA file", &ca, "no usable CA certificate"));
            }
            builder.with_root_certificates(roots)
        };
        let config = match (&self.cert_file, &self.key_file) {
            (Some(cert), Some(key)) => {
                let chain = pem_certs("client certificate", cert)?;
                let pem = std::fs::read(key).map_err(|e| tls_error("client key", key, e))?;
                let key_der = PrivateKeyDer::from_pem_slice(&pem)
                    .map_err(|e| tls_error("client key", key, e))?;
                builder
                    .with_client_auth_cert(chain, key_der)
                    .map_err(|e| tls_error("client key", key, e))?
            }
            (None, None) => builder.with_no_client_auth(),
            _ => {
                return Err(ClientError::Tls(
                    "--cert and --key go together: give both or neither".into(),
                ));
            }
        };
        Ok(TlsConnector::from(Arc::new(config)))
    }
}

/// `--insecure`: any certificate is accepted, but handshake signatures are still checked.
#[derive(Debug)]
struct AnyServerCert(Arc<rustls::crypto::CryptoProvider>);

impl rustls::client::danger::ServerCertVerifier for AnyServerCert {
    fn verify_server_cert(
        &self,
        _end_entity: &CertificateDer<'_>,
        _intermediates: &[CertificateDer<'_>],
        _server_name: &ServerName<'_>,
        _ocsp_response: &[u8],
        _now: rustls::pki_types::UnixTime,
    ) -> Result<rustls::client::danger::ServerCertVerified, rustls::Error> {
        Ok(rustls::client::danger::ServerCertVerified::assertion())
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &rustls::DigitallySignedStruct,
    ) -> Result<rustls::client::danger::HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls12_signature(
            message,
            cert,
            dss,
            &self.0.signature_verification_algorithms,
        )
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &rustls::DigitallySignedStruct,
    ) -> Result<rustls::client::danger::HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls13_signature(
            message,
            cert,
            dss,
            &self.0.signature_verification_algorithms,
        )
    }

    fn supported_verify_schemes(&self) -> Vec<rustls::SignatureScheme> {
        self.0.signature_verification_algorithms.supported_schemes()
    }
}

/// A client connection: plain TCP, or TLS over it.
#[derive(Debug)]
pub enum Stream {
    /// Clear text.
    Plain(TcpStream),
    /// TLS (boxed: the session state is large).
    Tls(Box<tokio_rustls::client::TlsStream<TcpStream>>),
}

impl Stream {
    /// The TCP socket underneath.
    pub fn tcp(&self) -> &TcpStream {
        match self {
            Stream::Plain(s) => s,
            Stream::Tls(s) => s.get_ref().0,
        }
    }
}

impl AsyncRead for Stream {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        match self.get_mut() {
            Stream::Plain(s) => Pin::new(s).poll_read(cx, buf),
            Stream::Tls(s) => Pin::new(s.as_mut()).poll_read(cx, buf),
        }
    }
}

impl AsyncWrite for Stream {
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        match self.get_mut() {
            Stream::Plain(s) => Pin::new(s).poll_write(cx, buf),
            Stream::Tls(s) => Pin::new(s.as_mut()).poll_write(cx, buf),
        }
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        match self.get_mut() {
            Stream::Plain(s) => Pin::new(s).poll_flush(cx),
            Stream::Tls(s) => Pin::new(s.as_mut()).poll_flush(cx),
        }
    }

    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        match self.get_mut() {
            Stream::Plain(s) => Pin::new(s).poll_shutdown(cx),
            Stream::Tls(s) => Pin::new(s.as_mut()).poll_shutdown(cx),
        }
    }
}

/// Connects (see [`connect`]) and, with a connector, runs the TLS handshake, all within
/// `timeout`. The server's certificate must name `host` (a DNS name or an IP address).
pub async fn connect_stream(
    host: &str,
    port: u16,
    timeout: Duration,
    tls: Option<&TlsConnector>,
) -> Result<Stream, ClientError> {
    let Some(connector) = tls else {
        return Ok(Stream::Plain(connect(host, port, timeout).await?));
    };
    let started = std::time::Instant::now();
    let tcp = connect(host, port, timeout).await?;
    let bare = host.trim_start_matches('[').trim_end_matches(']');
    let name = ServerName::try_from(bare.to_string()).map_err(|e| {
        ClientError::Tls(format!(
            "{host} cannot be checked against a certificate: {e}"
        ))
    })?;
    let handshake = connector.connect(name, tcp);
    let result = if timeout.is_zero() {
        handshake.await
    } else {
        let left = timeout.saturating_sub(started.elapsed());
        tokio::time::timeout(left, handshake).await.map_err(|_| {
            ClientError::Tls(format!(
                "handshake not finished within {}",
                fmt_secs(timeout)
            ))
        })?
    };
    let stream = result.map_err(|e| {
        ClientError::Tls(format!("handshake with {}: {e}", addr_string(host, port)))
    })?;
    Ok(Stream::Tls(Box::new(stream)))
}

/// One reply, borrowed from the read buffer, in terms both protocols share.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Reply<'a> {
    /// Line protocol `OK <text>` (the text after `OK `, possibly empty) or a RESP simple string.
    Ok(&'a [u8]),
    /// A RESP bulk string (a GET hit over RESP).
    Bulk(&'a [u8]),
    /// A RESP integer.
    Int(i64),
    /// No such key: RESP null, or the line protocol's `ERROR key not found`.
    Nil,
    /// `ERROR <reason>` (the reason) or a RESP error (the whole message, code included).
    Error(&'a [u8]),
    /// A RESP array, map, set or push with this many elements (already consumed, not kept).
    Aggregate(usize),
}

impl Reply<'_> {
    /// Whether the request succeeded as far as a load generator is concerned: anything but
    /// an error (a miss is a successful answer).
    pub fn is_success(&self) -> bool {
        !matches!(self, Reply::Error(_))
    }
}

/// Parses the first reply in `buf`: `Ok(None)` until it is complete, else the reply and the
/// number of bytes it took. Line-protocol replies never fail to parse (any line is a reply);
/// malformed RESP is an error, since the stream cannot be resynchronised.
pub fn parse_reply(proto: Protocol, buf: &[u8]) -> Result<Option<(Reply<'_>, usize)>, ClientError> {
    match proto {
        Protocol::Text => Ok(parse_line_reply(buf)),
        Protocol::Resp => parse_resp(buf, 0),
        Protocol::Memcache => parse_memcache(buf),
    }
}

/// Parses one memcached reply to `set` or `get` (one key): `STORED` and other status lines are
/// [`Reply::Ok`], a hit (`VALUE ... END`) is [`Reply::Bulk`], `END` alone or `NOT_FOUND` is
/// [`Reply::Nil`], `ERROR` / `CLIENT_ERROR` / `SERVER_ERROR` are [`Reply::Error`].
fn parse_memcache(buf: &[u8]) -> Result<Option<(Reply<'_>, usize)>, ClientError> {
    let Some(end) = memchr::memchr(b'\n', buf) else {
        return Ok(None);
    };
    let line = &buf[..end];
    let line = line.strip_suffix(b"\r").unwrap_or(line);
    let next = end + 1;
    if let Some(rest) = line.strip_prefix(b"VALUE ") {
        let len: usize = rest
            .split(|&b| b == b' ')
            .nth(2)
            .and_then(|n| std::str::from_utf8(n).ok()?.parse().ok())
            .ok_or_else(|| ClientError::Protocol("VALUE line without a length".into()))?;
        if buf.len() < next + len + 2 + 5 {
            return Ok(None);
        }
        if &buf[next + len..next + len + 7] != b"\r\nEND\r\n" {
            return Err(ClientError::Protocol(
                "VALUE data not followed by END (a multi-key reply?)".into(),
            ));
        }
        return Ok(Some((Reply::Bulk(&buf[next..next + len]), next + len + 7)));
    }
    let reply = match line {
        b"END" | b"NOT_FOUND" => Reply::Nil,
        b"ERROR" => Reply::Error(line),
        _ if line.starts_with(b"CLIENT_ERROR ") || line.starts_with(b"SERVER_ERROR ") => {
            Reply::Error(line)
        }
        _ => Reply::Ok(line),
    };
    Ok(Some((reply, next)))
}

/// Splits off the first line-protocol reply (without its `\n` or `\r\n`).
pub fn parse_line_reply(buf: &[u8]) -> Option<(Reply<'_>, usize)> {
    let end = memchr::memchr(b'\n', buf)?;
    let line = &buf[..end];
    let line = line.strip_suffix(b"\r").unwrap_or(line);
    Some((classify_line(line), end + 1))
}

/// Interprets one line-protocol reply line.
pub fn classify_line(line: &[u8]) -> Reply<'_> {
    if line == b"ERROR key not found" {
        Reply::Nil
    } else if line == b"OK" {
        Reply::Ok(b"")
    } else if let Some(rest) = line.strip_prefix(b"OK ") {
        Reply::Ok(rest)
    } else if let Some(rest) = line.strip_prefix(b"ERROR ") {
        Reply::Error(rest)
    } else {
        Reply::Error(line)
    }
}

fn resp_line(buf: &[u8]) -> Option<(&[u8], usize)> {
    let end = memchr::memchr(b'\n', buf)?;
    let line = &buf[..end];
    Some((line.strip_suffix(b"\r").unwrap_or(line), end + 1))
}

fn resp_int(s: &[u8]) -> Result<i64, ClientError> {
    std::str::from_utf8(s)
        .ok()
        .and_then(|s| s.parse().ok())
        .ok_or_else(|| {
            ClientError::Protocol(format!("bad number {:?}", String::from_utf8_lossy(s)))
        })
}

fn parse_resp(buf: &[u8], depth: usize) -> Result<Option<(Reply<'_>, usize)>, ClientError> {
    let Some(&kind) = buf.first() else {
        return Ok(None);
    };
    let Some((line, head)) = resp_line(&buf[1..]) else {
        return Ok(None);
    };
    let head = head + 1;
    let reply = match kind {
        b'+' => Reply::Ok(line),
        b'-' => Reply::Error(line),
        b':' => Reply::Int(resp_int(line)?),
        b'_' => Reply::Nil,
        b'#' | b',' | b'(' => Reply::Ok(line),
        b'$' | b'=' | b'!' => {
            let n = resp_int(line)?;
            if n < 0 {
                return Ok(Some((Reply::Nil, head)));
            }
            let n = n as usize;
            if buf.len() < head + n + 2 {
                return Ok(None);
            }
            if &buf[head + n..head + n + 2] != b"\r\n" {
                return Err(ClientError::Protocol(
                    "bulk string not followed by CRLF".into(),
                ));
            }
            let body = &buf[head..head + n];
            let reply = if kind == b'!' {
                Reply::Error(body)
            } else {
                Reply::Bulk(body)
            };
            return Ok(Some((reply, head + n + 2)));
        }
        b'*' | b'~' | b'>' | b'%' | b'|' => {
            let n = resp_int(line)?;
            if n < 0 {
                return Ok(Some((Reply::Nil, head)));
            }
            if depth >= MAX_DEPTH {
                return Err(ClientError::Protocol("aggregate nested too deeply".into()));
            }
            let elements = if matches!(kind, b'%' | b'|') {
                n as usize * 2
            } else {
                n as usize
            };
            let mut at = head;
            for _ in 0..elements {
                match parse_resp(&buf[at..], depth + 1)? {
                    Some((_, used)) => at += used,
                    None => return Ok(None),
                }
            }
            if kind == b'|' {
                // An attribute annotates the reply that follows it.
                return match parse_resp(&buf[at..], depth + 1)? {
                    Some((r, used)) => Ok(Some((r, at + used))),
                    None => Ok(None),
                };
            }
            return Ok(Some((Reply::Aggregate(n as usize), at)));
        }
        other => {
            return Err(ClientError::Protocol(format!(
                "unexpected type byte {:?}",
                other as char
            )));
        }
    };
    Ok(Some((reply, head)))
}

/// Appends one RESP command (an array of bulk strings).
pub fn encode_resp(args: &[&[u8]], out: &mut Vec<u8>) {
    let mut num = itoa::Buffer::new();
    out.push(b'*');
    out.extend_from_slice(num.format(args.len()).as_bytes());
    out.extend_from_slice(b"\r\n");
    for a in args {
        out.push(b'$');
        out.extend_from_slice(num.format(a.len()).as_bytes());
        out.extend_from_slice(b"\r\n");
        out.extend_from_slice(a);
        out.extend_from_slice(b"\r\n");
    }
}

/// Appends a store request: `PUT key value [ttl]` or `SET key value [EX ttl]`. A `ttl` of 0
/// means none.
pub fn encode_put(proto: Protocol, key: &[u8], value: &[u8], ttl: u64, out: &mut Vec<u8>) {
    let mut num = itoa::Buffer::new();
    match proto {
        Protocol::Text => {
            out.extend_from_slice(b"PUT ");
            out.extend_from_slice(key);
            out.push(b' ');
            out.extend_from_slice(value);
            if ttl > 0 {
                out.push(b' ');
                out.extend_from_slice(num.format(ttl).as_bytes());
            }
            out.push(b'\n');
        }
        Protocol::Resp if ttl > 0 => {
            encode_resp(
                &[b"SET", key, value, b"EX", num.format(ttl).as_bytes()],
                out,
            );
        }
        Protocol::Resp => encode_resp(&[b"SET", key, value], out),
        Protocol::Memcache => {
            out.extend_from_slice(b"set ");
            out.extend_from_slice(key);
            out.extend_from_slice(b" 0 ");
            out.extend_from_slice(num.format(ttl).as_bytes());
            out.push(b' ');
            out.extend_from_slice(num.format(value.len()).as_bytes());
            out.extend_from_slice(b"\r\n");
            out.extend_from_slice(value);
            out.extend_from_slice(b"\r\n");
        }
    }
}

/// Appends a lookup: `GET key` in either protocol.
pub fn encode_get(proto: Protocol, key: &[u8], out: &mut Vec<u8>) {
    match proto {
        Protocol::Text => {
            out.extend_from_slice(b"GET ");
            out.extend_from_slice(key);
            out.push(b'\n');
        }
        Protocol::Resp => encode_resp(&[b"GET", key], out),
        Protocol::Memcache => {
            out.extend_from_slice(b"get ");
            out.extend_from_slice(key);
            out.extend_from_slice(b"\r\n");
        }
    }
}

/// An owned copy of a [`Reply`], for callers that keep replies past the next read.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum OwnedReply {
    /// See [`Reply::Ok`].
    Ok(Vec<u8>),
    /// See [`Reply::Bulk`].
    Bulk(Vec<u8>),
    /// See [`Reply::Int`].
    Int(i64),
    /// See [`Reply::Nil`].
    Nil,
    /// See [`Reply::Error`].
    Error(Vec<u8>),
    /// See [`Reply::Aggregate`].
    Aggregate(usize),
}

impl From<Reply<'_>> for OwnedReply {
    fn from(r: Reply<'_>) -> Self {
        match r {
            Reply::Ok(s) => OwnedReply::Ok(s.to_vec()),
            Reply::Bulk(s) => OwnedReply::Bulk(s.to_vec()),
            Reply::Int(n) => OwnedReply::Int(n),
            Reply::Nil => OwnedReply::Nil,
            Reply::Error(s) => OwnedReply::Error(s.to_vec()),
            Reply::Aggregate(n) => OwnedReply::Aggregate(n),
        }
    }
}

/// A connection with a read buffer: send requests, read replies one at a time or pipelined.
#[derive(Debug)]
pub struct Client {
    stream: Stream,
    proto: Protocol,
    buf: Vec<u8>,
    /// Start of unconsumed bytes in `buf`.
    start: usize,
    timeout: Duration,
}

impl Client {
    /// Connects (see [`connect`]); `timeout` also bounds every later wait for a reply
    /// (`Duration::ZERO` = wait forever).
    pub async fn connect(
        host: &str,
        port: u16,
        proto: Protocol,
        timeout: Duration,
    ) -> Result<Client, ClientError> {
        Client::connect_with(host, port, proto, timeout, None).await
    }

    /// Like [`Client::connect`], over TLS when given a connector (see [`connect_stream`]).
    pub async fn connect_with(
        host: &str,
        port: u16,
        proto: Protocol,
        timeout: Duration,
        tls: Option<&TlsConnector>,
    ) -> Result<Client, ClientError> {
        let stream = connect_stream(host, port, timeout, tls).await?;
        Ok(Client::from_stream(stream, proto, timeout))
    }

    /// Wraps an already connected stream.
    pub fn from_stream(stream: impl Into<Stream>, proto: Protocol, timeout: Duration) -> Client {
        Client {
            stream: stream.into(),
            proto,
            buf: Vec::with_capacity(4096),
            start: 0,
            timeout,
        }
    }

    /// The protocol this client encodes and parses.
    pub fn protocol(&self) -> Protocol {
        self.proto
    }

    /// Writes raw request bytes as they are.
    pub async fn send_raw(&mut self, bytes: &[u8]) -> Result<(), ClientError> {
        self.stream.write_all(bytes).await?;
        Ok(())
    }

    /// Sends one line-protocol line (a `\n` is appended).
    pub async fn send_line(&mut self, line: &[u8]) -> Result<(), ClientError> {
        let mut out = Vec::with_capacity(line.len() + 1);
        out.extend_from_slice(line);
        out.push(b'\n');
        self.send_raw(&out).await
    }

    /// Reads more bytes into the buffer, within the reply deadline.
    async fn fill(&mut self) -> Result<(), ClientError> {
        if self.start > 0 && self.start == self.buf.len() {
            self.buf.clear();
            self.start = 0;
        } else if self.start > 4096 {
            self.buf.drain(..self.start);
            self.start = 0;
        }
        self.buf.reserve(4096);
        let read = self.stream.read_buf(&mut self.buf);
        let n = if self.timeout.is_zero() {
            read.await?
        } else {
            tokio::time::timeout(self.timeout, read)
                .await
                .map_err(|_| ClientError::Timeout(self.timeout))??
        };
        if n == 0 {
            return Err(ClientError::Closed);
        }
        Ok(())
    }

    /// Reads one raw line-protocol reply line (without its line ending), whatever it says.
    pub async fn read_line(&mut self) -> Result<Vec<u8>, ClientError> {
        loop {
            let avail = &self.buf[self.start..];
            if let Some(end) = memchr::memchr(b'\n', avail) {
                let line = &avail[..end];
                let line = line.strip_suffix(b"\r").unwrap_or(line).to_vec();
                self.start += end + 1;
                return Ok(line);
            }
            self.fill().await?;
        }
    }

    /// Reads one reply in this client's protocol.
    pub async fn read_reply(&mut self) -> Result<OwnedReply, ClientError> {
        loop {
            if let Some((reply, used)) = parse_reply(self.proto, &self.buf[self.start..])? {
                let owned = reply.into();
                self.start += used;
                return Ok(owned);
            }
            self.fill().await?;
        }
    }

    /// Sends one line and returns the reply line: the CLI's request/reply step.
    pub async fn command_line(&mut self, line: &[u8]) -> Result<Vec<u8>, ClientError> {
        self.send_line(line).await?;
        self.read_line().await
    }

    /// Sends one RESP command and returns its reply.
    pub async fn command_resp(&mut self, args: &[&[u8]]) -> Result<OwnedReply, ClientError> {
        let mut out = Vec::new();
        encode_resp(args, &mut out);
        self.send_raw(&out).await?;
        self.read_reply().await
    }

    /// Authenticates with `AUTH <password>` in this client's protocol; a refusal comes back
    /// as `Ok(Err(message))` so callers can show the server's words.
    pub async fn auth(&mut self, password: &str) -> Result<Result<(), String>, ClientError> {
        let reply = match self.proto {
            Protocol::Text => {
                let mut line = b"AUTH ".to_vec();
                line.extend_from_slice(password.as_bytes());
                self.send_line(&line).await?;
                self.read_reply().await?
            }
            Protocol::Resp => self.command_resp(&[b"AUTH", password.as_bytes()]).await?,
            // memcached's text-protocol authentication: a set whose data is "user password".
            Protocol::Memcache => {
                let mut req = Vec::new();
                let cred = format!("default {password}");
                encode_put(Protocol::Memcache, b"auth", cred.as_bytes(), 0, &mut req);
                self.send_raw(&req).await?;
                self.read_reply().await?
            }
        };
        Ok(match reply {
            OwnedReply::Ok(_) => Ok(()),
            OwnedReply::Error(e) => Err(String::from_utf8_lossy(&e).into_owned()),
            other => Err(format!("unexpected reply {other:?}")),
        })
    }

    /// Sends all `requests` (already encoded, back to back) while reading their `count`
    /// replies, so a deep pipeline cannot deadlock on full socket buffers.
    pub async fn pipeline(
        &mut self,
        requests: &[u8],
        count: usize,
    ) -> Result<Vec<OwnedReply>, ClientError> {
        let proto = self.proto;
        self.pipeline_with(requests, count, |buf| {
            Ok(parse_reply(proto, buf)?.map(|(r, used)| (OwnedReply::from(r), used)))
        })
        .await
    }

    /// Sends several line-protocol lines at once and returns their raw reply lines in order.
    pub async fn pipeline_lines(&mut self, lines: &[&str]) -> Result<Vec<Vec<u8>>, ClientError> {
        let mut out = Vec::new();
        for l in lines {
            out.extend_from_slice(l.as_bytes());
            out.push(b'\n');
        }
        self.pipeline_with(&out, lines.len(), |buf| {
            Ok(memchr::memchr(b'\n', buf).map(|end| {
                let line = &buf[..end];
                (line.strip_suffix(b"\r").unwrap_or(line).to_vec(), end + 1)
            }))
        })
        .await
    }

    async fn pipeline_with<T>(
        &mut self,
        requests: &[u8],
        count: usize,
        parse: impl Fn(&[u8]) -> Result<Option<(T, usize)>, ClientError>,
    ) -> Result<Vec<T>, ClientError> {
        let (mut reader, mut writer) = tokio::io::split(&mut self.stream);
        let write = async {
            writer.write_all(requests).await?;
            Ok::<(), ClientError>(())
        };
        let timeout = self.timeout;
        let buf = &mut self.buf;
        let start = &mut self.start;
        let read = async {
            let mut replies = Vec::with_capacity(count);
            loop {
                while replies.len() < count {
                    match parse(&buf[*start..])? {
                        Some((r, used)) => {
                            replies.push(r);
                            *start += used;
                        }
                        None => break,
                    }
                }
                if replies.len() == count {
                    return Ok(replies);
                }
                buf.drain(..*start);
                *start = 0;
                buf.reserve(16 * 1024);
                let n = if timeout.is_zero() {
                    reader.read_buf(buf).await?
                } else {
                    tokio::time::timeout(timeout, reader.read_buf(buf))
                        .await
                        .map_err(|_| ClientError::Timeout(timeout))??
                };
                if n == 0 {
                    return Err(ClientError::Closed);
                }
            }
        };
        let (w, r) = tokio::join!(write, read);
        w?;
        r
    }

    /// Shuts down the sending side (the server then sees end of input) and waits, within the
    /// reply deadline, until it closes the connection, returning whatever it still sent.
    pub async fn finish(mut self) -> Result<Vec<u8>, ClientError> {
        self.stream.shutdown().await?;
        loop {
            match self.fill().await {
                Ok(()) => {}
                Err(ClientError::Closed) => return Ok(self.buf[self.start..].to_vec()),
                Err(e) => return Err(e),
            }
        }
    }

    /// The underlying stream, for callers that drive the socket themselves.
    pub fn into_stream(self) -> Stream {
        self.stream
    }
}

impl From<TcpStream> for Stream {
    fn from(s: TcpStream) -> Stream {
        Stream::Plain(s)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn memcache_requests_and_replies() {
        let mut out = Vec::new();
        encode_put(Protocol::Memcache, b"k", b"v\r\n", 30, &mut out);
        encode_get(Protocol::Memcache, b"k", &mut out);
        assert_eq!(out, b"set k 0 30 3\r\nv\r\n\r\nget k\r\n");
        let p = |b: &'static [u8]| parse_reply(Protocol::Memcache, b).unwrap();
        assert_eq!(p(b"STORED\r\n"), Some((Reply::Ok(b"STORED"), 8)));
        assert_eq!(p(b"END\r\n"), Some((Reply::Nil, 5)));
        assert_eq!(
            p(b"VALUE k 0 3\r\na\r\n\r\nEND\r\nX"),
            Some((Reply::Bulk(b"a\r\n"), 23))
        );
        assert_eq!(p(b"VALUE k 0 3\r\na\r\n\r\nEN"), None);
        assert_eq!(
            p(b"SERVER_ERROR x\r\n"),
            Some((Reply::Error(b"SERVER_ERROR x"), 16))
        );
        assert!(parse_reply(Protocol::Memcache, b"VALUE k 0 1\r\na\r\nVALUE").is_err());
    }

    fn resp(buf: &[u8]) -> Option<(Reply<'_>, usize)> {
        parse_reply(Protocol::Resp, buf).unwrap()
    }

    #[test]
    fn line_replies() {
        assert_eq!(
            parse_line_reply(b"OK stored\n"),
            Some((Reply::Ok(b"stored"), 10))
        );
        assert_eq!(
            parse_line_reply(b"OK bar\r\nOK"),
            Some((Reply::Ok(b"bar"), 8))
        );
        assert_eq!(parse_line_reply(b"OK\n"), Some((Reply::Ok(b""), 3)));
        assert_eq!(
            parse_line_reply(b"ERROR key not found\n"),
            Some((Reply::Nil, 20))
        );
        assert_eq!(
            parse_line_reply(b"ERROR invalid ttl\n"),
            Some((Reply::Error(b"invalid ttl"), 18))
        );
        assert_eq!(parse_line_reply(b"OK partial"), None);
        assert_eq!(
            parse_line_reply(b"weird\n"),
            Some((Reply::Error(b"weird"), 6))
        );
    }

    #[test]
    fn resp_replies() {
        assert_eq!(resp(b"+OK\r\n"), Some((Reply::Ok(b"OK"), 5)));
        assert_eq!(resp(b"-ERR no\r\n"), Some((Reply::Error(b"ERR no"), 9)));
        assert_eq!(resp(b":42\r\n"), Some((Reply::Int(42), 5)));
        assert_eq!(resp(b"$3\r\nbar\r\n"), Some((Reply::Bulk(b"bar"), 9)));
        assert_eq!(resp(b"$-1\r\n"), Some((Reply::Nil, 5)));
        assert_eq!(resp(b"_\r\n"), Some((Reply::Nil, 3)));
        assert_eq!(resp(b"$0\r\n\r\n"), Some((Reply::Bulk(b""), 6)));
        assert_eq!(
            resp(b"*2\r\n$1\r\na\r\n:1\r\n+x"),
            Some((Reply::Aggregate(2), 15))
        );
        assert_eq!(resp(b"%1\r\n+a\r\n+b\r\n"), Some((Reply::Aggregate(1), 12)));
        for partial in [
            &b""[..],
            b"+OK",
            b"+OK\r",
            b"$3\r\nba",
            b"$3\r\nbar\r",
            b"*2\r\n$1\r\na\r\n",
        ] {
            assert_eq!(resp(partial), None, "{partial:?}");
        }
        assert!(parse_reply(Protocol::Resp, b"?x\r\n").is_err());
        assert!(parse_reply(Protocol::Resp, b"$3\r\nbarXY").is_err());
        assert!(parse_reply(Protocol::Resp, b":x\r\n").is_err());
        let deep = "*1\r\n".repeat(MAX_DEPTH + 2);
        assert!(parse_reply(Protocol::Resp, deep.as_bytes()).is_err());
    }

    #[test]
    fn encoders() {
        let mut out = Vec::new();
        encode_put(Protocol::Text, b"k", b"v", 0, &mut out);
        encode_put(Protocol::Text, b"k", b"v", 60, &mut out);
        encode_get(Protocol::Text, b"k", &mut out);
        assert_eq!(out, b"PUT k v\nPUT k v 60\nGET k\n");
        out.clear();
        encode_put(Protocol::Resp, b"k", b"v", 0, &mut out);
        assert_eq!(out, b"*3\r\n$3\r\nSET\r\n$1\r\nk\r\n$1\r\nv\r\n");
        out.clear();
        encode_put(Protocol::Resp, b"k", b"v", 7, &mut out);
        assert_eq!(
            out,
            b"*5\r\n$3\r\nSET\r\n$1\r\nk\r\n$1\r\nv\r\n$2\r\nEX\r\n$1\r\n7\r\n"
        );
        out.clear();
        encode_get(Protocol::Resp, b"key", &mut out);
        assert_eq!(out, b"*2\r\n$3\r\nGET\r\n$3\r\nkey\r\n");
    }

    #[test]
    fn addresses() {
        assert_eq!(addr_string("localhost", 7171), "localhost:7171");
        assert_eq!(addr_string("::1", 7171), "[::1]:7171");
        assert_eq!(addr_string("[::1]", 7171), "[::1]:7171");
    }
}
