//! The floor: what a server that does no work at all costs the kernel per request. A single
//! thread, one `epoll` set, non-blocking sockets, no runtime and no store: every complete request
//! in a read gets a canned reply, and all replies of a read go out in one `write`.
//!
//! RESP: `GET`-like requests (anything whose name starts with G or g) get a 64-byte bulk string,
//! everything else `+OK`. Line protocol: `GET` -> `OK <64 bytes>`, anything else `OK stored`.
//! The first byte of a connection picks the protocol, as in kvcache.
//!
//! `cargo run --release --example floor -- PORT` (prints `listening port=PORT` when ready).
//! `scripts/floor-compare.sh` runs it beside kvcache and Redis and compares CPU per request.

use std::collections::HashMap;
use std::io::{self, Read, Write};
use std::net::{TcpListener, TcpStream};
use std::os::fd::{AsRawFd, RawFd};

const VALUE: &[u8; 64] = b"0123456789abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ01";

struct Conn {
    stream: TcpStream,
    buf: Vec<u8>,
    out: Vec<u8>,
    /// Undecided until the first byte; then RESP or not.
    resp: Option<bool>,
}

/// Answers every complete request at the front of `buf`; returns the bytes consumed.
fn answer(buf: &[u8], resp: bool, out: &mut Vec<u8>) -> usize {
    let mut at = 0;
    loop {
        let rest = &buf[at..];
        if rest.is_empty() {
            return at;
        }
        if !resp {
            let Some(nl) = memchr::memchr(b'\n', rest) else {
                return at;
            };
            if rest[0] == b'G' || rest[0] == b'g' {
                out.extend_from_slice(b"OK ");
                out.extend_from_slice(VALUE);
                out.push(b'\n');
            } else {
                out.extend_from_slice(b"OK stored\n");
            }
            at += nl + 1;
            continue;
        }
        // RESP: *N\r\n then N times $len\r\n<bytes>\r\n. Skip it without looking inside.
        let Some((n, mut pos)) = number(rest, 0) else {
            return at;
        };
        let mut first = None;
        for _ in 0..n {
            let Some((len, start)) = number(rest, pos) else {
                return at;
            };
            if rest.len() < start + len + 2 {
                return at;
            }
            first.get_or_insert(rest.get(start).copied().unwrap_or(0));
            pos = start + len + 2;
        }
        if matches!(first, Some(b'G' | b'g')) {
            out.extend_from_slice(b"$64\r\n");
            out.extend_from_slice(VALUE);
            out.extend_from_slice(b"\r\n");
        } else {
            out.extend_from_slice(b"+OK\r\n");
        }
        at += pos;
    }
}

/// Reads `*N\r\n` or `$N\r\n` at `pos`: the number and the position after the line.
fn number(b: &[u8], pos: usize) -> Option<(usize, usize)> {
    let nl = memchr::memchr(b'\n', b.get(pos..)?)?;
    let digits = &b[pos + 1..pos + nl - 1];
    let n = digits
        .iter()
        .fold(0usize, |n, d| n * 10 + (d.wrapping_sub(b'0')) as usize);
    Some((n, pos + nl + 1))
}

fn epoll_ctl(ep: RawFd, op: i32, fd: RawFd, events: u32) -> io::Result<()> {
    let mut ev = libc::epoll_event {
        events,
        u64: fd as u64,
    };
    // SAFETY: `ev` lives across the call; `ep` and `fd` are descriptors we own.
    if unsafe { libc::epoll_ctl(ep, op, fd, &mut ev) } < 0 {
        return Err(io::Error::last_os_error());
    }
    Ok(())
}

fn main() -> io::Result<()> {
    let port: u16 = std::env::args()
        .nth(1)
        .map_or(7399, |p| p.parse().expect("port"));
    let listener = TcpListener::bind(("127.0.0.1", port))?;
    listener.set_nonblocking(true)?;
    println!("listening port={}", listener.local_addr()?.port());
    // SAFETY: creates a new descriptor; checked below.
    let ep = unsafe { libc::epoll_create1(0) };
    if ep < 0 {
        return Err(io::Error::last_os_error());
    }
    let lfd = listener.as_raw_fd();
    epoll_ctl(ep, libc::EPOLL_CTL_ADD, lfd, libc::EPOLLIN as u32)?;
    let mut conns: HashMap<RawFd, Conn> = HashMap::new();
    let mut events = vec![libc::epoll_event { events: 0, u64: 0 }; 256];
    let mut chunk = vec![0u8; 64 * 1024];
    loop {
        // SAFETY: `events` has room for its length in entries.
        let n = unsafe { libc::epoll_wait(ep, events.as_mut_ptr(), events.len() as i32, -1) };
        if n < 0 {
            let e = io::Error::last_os_error();
            if e.kind() == io::ErrorKind::Interrupted {
                continue;
            }
            return Err(e);
        }
        for ev in &events[..n as usize] {
            let fd = ev.u64 as RawFd;
            if fd == lfd {
                while let Ok((stream, _)) = listener.accept() {
                    stream.set_nonblocking(true)?;
                    stream.set_nodelay(true)?;
                    let cfd = stream.as_raw_fd();
                    epoll_ctl(ep, libc::EPOLL_CTL_ADD, cfd, libc::EPOLLIN as u32)?;
                    conns.insert(
                        cfd,
                        Conn {
                            stream,
                            buf: Vec::new(),
                            out: Vec::new(),
                            resp: None,
                        },
                    );
                }
                continue;
            }
            let Some(c) = conns.get_mut(&fd) else {
                continue;
            };
            let mut closed = false;
            loop {
                match c.stream.read(&mut chunk) {
                    Ok(0) => {
                        closed = true;
                        break;
                    }
                    Ok(k) => {
                        c.buf.extend_from_slice(&chunk[..k]);
                        if k < chunk.len() {
                            break; // drained: skip the read that would return EAGAIN
                        }
                    }
                    Err(e) if e.kind() == io::ErrorKind::WouldBlock => break,
                    Err(_) => {
                        closed = true;
                        break;
                    }
                }
            }
            if !c.buf.is_empty() {
                let resp = *c.resp.get_or_insert(c.buf[0] == b'*');
                let used = answer(&c.buf, resp, &mut c.out);
                c.buf.drain(..used);
                if !c.out.is_empty() {
                    // Replies are small; a client that stops reading is not this tool's concern,
                    // so a short write is finished with blocking writes.
                    c.stream.set_nonblocking(false)?;
                    let _ = c.stream.write_all(&c.out);
                    c.stream.set_nonblocking(true)?;
                    c.out.clear();
                }
            }
            if closed {
                let _ = epoll_ctl(ep, libc::EPOLL_CTL_DEL, fd, 0);
                conns.remove(&fd);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn answers_complete_requests_and_keeps_partial_ones() {
        let mut out = Vec::new();
        let req = b"*2\r\n$3\r\nGET\r\n$1\r\nk\r\n*3\r\n$3\r\nSET\r\n$1\r\nk\r\n$1\r\nv\r\n*2\r\n$3\r\nGE";
        let used = answer(req, true, &mut out);
        assert_eq!(&req[used..], b"*2\r\n$3\r\nGE");
        assert_eq!(out, [b"$64\r\n".as_slice(), VALUE, b"\r\n+OK\r\n"].concat());
        out.clear();
        assert_eq!(answer(b"GET a\nPUT a b\nGE", false, &mut out), 14);
        assert_eq!(out, [b"OK ".as_slice(), VALUE, b"\nOK stored\n"].concat());
    }
}
