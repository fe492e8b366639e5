//! A store-less responder: answers every request without storing anything, to measure how
//! much load `kvcache-bench` itself can generate (its ceiling on this machine).
//!
//! Line protocol: `PUT ...` -> `OK stored`, `GET ...` -> `OK <64-byte value>`, anything else
//! -> `OK`. RESP: `SET` -> `+OK`, `GET` -> a 64-byte bulk string, anything else -> `+OK`.
//! Like kvcache it decodes every complete request in the buffer and answers with one write.
//!
//! ```text
//! cargo run --release --example null_responder -- --port 7390
//! kvcache-bench --port 7390
//! ```

use std::io;

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};

const VALUE: &[u8; 64] = b"0123456789abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ01";

/// Parses one RESP command (array of bulk strings) at the start of `buf`: its name and
/// length, or None when incomplete. Malformed input is an error.
fn resp_command(buf: &[u8]) -> io::Result<Option<(&[u8], usize)>> {
    let bad = || io::Error::new(io::ErrorKind::InvalidData, "malformed RESP request");
    let line = |at: usize| -> io::Result<Option<(usize, usize)>> {
        let Some(end) = memchr::memchr(b'\n', &buf[at..]) else {
            return Ok(None);
        };
        let text = &buf[at + 1..at + end];
        let text = text.strip_suffix(b"\r").ok_or_else(bad)?;
        let n = std::str::from_utf8(text)
            .ok()
            .and_then(|t| t.parse().ok())
            .ok_or_else(bad)?;
        Ok(Some((n, at + end + 1)))
    };
    if buf.first() != Some(&b'*') {
        return Err(bad());
    }
    let Some((count, mut at)) = line(0)? else {
        return Ok(None);
    };
    let mut name: &[u8] = b"";
    for i in 0..count {
        if at >= buf.len() {
            return Ok(None);
        }
        if buf[at] != b'$' {
            return Err(bad());
        }
        let Some((len, body)) = line(at)? else {
            return Ok(None);
        };
        if buf.len() < body + len + 2 {
            return Ok(None);
        }
        if i == 0 {
            name = &buf[body..body + len];
        }
        at = body + len + 2;
    }
    Ok(Some((name, at)))
}

/// Appends the reply to every complete request in `buf`; returns the bytes consumed.
fn answer(buf: &[u8], out: &mut Vec<u8>) -> io::Result<usize> {
    let mut at = 0;
    while at < buf.len() {
        if buf[at] == b'*' {
            let Some((name, used)) = resp_command(&buf[at..])? else {
                break;
            };
            if name.eq_ignore_ascii_case(b"GET") {
                out.extend_from_slice(b"$64\r\n");
                out.extend_from_slice(VALUE);
                out.extend_from_slice(b"\r\n");
            } else {
                out.extend_from_slice(b"+OK\r\n");
            }
            at += used;
        } else {
            let Some(end) = memchr::memchr(b'\n', &buf[at..]) else {
                break;
            };
            let line = &buf[at..at + end];
            if line.len() >= 4 && line[..4].eq_ignore_ascii_case(b"PUT ") {
                out.extend_from_slice(b"OK stored\n");
            } else if line.len() >= 4 && line[..4].eq_ignore_ascii_case(b"GET ") {
                out.extend_from_slice(b"OK ");
                out.extend_from_slice(VALUE);
                out.push(b'\n');
            } else {
                out.extend_from_slice(b"OK\n");
            }
            at += end + 1;
        }
    }
    Ok(at)
}

async fn serve(mut stream: TcpStream) -> io::Result<()> {
    stream.set_nodelay(true)?;
    let mut buf = Vec::with_capacity(64 * 1024);
    let mut out = Vec::with_capacity(64 * 1024);
    loop {
        if buf.capacity() - buf.len() < 16 * 1024 {
            buf.reserve(16 * 1024);
        }
        if stream.read_buf(&mut buf).await? == 0 {
            return Ok(());
        }
        let used = answer(&buf, &mut out)?;
        buf.drain(..used);
        if !out.is_empty() {
            stream.write_all(&out).await?;
            out.clear();
        }
    }
}

#[tokio::main]
async fn main() -> io::Result<()> {
    let mut port = 7390u16;
    let mut args = std::env::args().skip(1);
    while let Some(a) = args.next() {
        match (a.as_str(), args.next()) {
            ("--port", Some(p)) => {
                port = p
                    .parse()
                    .map_err(|_| io::Error::other(format!("bad port {p}")))?
            }
            _ => {
                eprintln!("usage: null_responder [--port PORT]");
                std::process::exit(2);
            }
        }
    }
    let listener = TcpListener::bind(("127.0.0.1", port)).await?;
    eprintln!("null responder listening on {}", listener.local_addr()?);
    loop {
        let (stream, _) = listener.accept().await?;
        tokio::spawn(async move {
            let _ = serve(stream).await;
        });
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn answers_both_protocols() {
        let mut out = Vec::new();
        let input = b"PUT a b\nGET a\nPING\n*3\r\n$3\r\nSET\r\n$1\r\nk\r\n$1\r\nv\r\n*2\r\n$3\r\nGET\r\n$1\r\nk\r\n*2\r\n$3";
        let used = answer(input, &mut out).unwrap();
        let expect = [
            &b"OK stored\nOK "[..],
            VALUE,
            b"\nOK\n+OK\r\n$64\r\n",
            VALUE,
            b"\r\n",
        ]
        .concat();
        assert_eq!(out, expect);
        assert_eq!(&input[used..], b"*2\r\n$3");
    }
}
