//! Passwords: AUTH on both protocols, HELLO AUTH, the password file and variable.

mod common;

use std::time::Duration;

use common::{BinServer, TestServer, resp_frame};
use kvcache::config::Config;

fn with_password(pw: &str) -> TestServer {
    TestServer::start(Config {
        password: Some(pw.into()),
        ..Config::default()
    })
}

#[test]
fn line_protocol_requires_auth_first() {
    let s = with_password("s3cret");
    let mut c = s.client();
    assert_eq!(c.cmd("GET k"), "ERROR authentication required");
    assert_eq!(c.cmd("PUT k v"), "ERROR authentication required");
    assert_eq!(c.cmd("PING"), "ERROR authentication required");
    assert_eq!(c.cmd("STATS"), "ERROR authentication required");
    assert_eq!(c.cmd("AUTH wrong"), "ERROR invalid password");
    assert_eq!(c.cmd("AUTH s3cre"), "ERROR invalid password");
    assert_eq!(c.cmd("AUTH s3cret!"), "ERROR invalid password");
    assert_eq!(c.cmd("GET k"), "ERROR authentication required");
    assert_eq!(c.cmd("AUTH s3cret"), "OK authenticated");
    assert_eq!(c.cmd("PUT k v"), "OK stored");
    assert_eq!(c.cmd("GET k"), "OK v");
    // QUIT works without authenticating.
    let mut q = s.client();
    q.send(b"QUIT\n");
    assert!(q.closed_within(Duration::from_secs(3)));
}

#[test]
fn resp_answers_noauth_like_redis() {
    let s = with_password("s3cret");
    let mut c = s.client();
    assert_eq!(c.resp(&[b"GET", b"k"]), "-NOAUTH Authentication required.");
    assert_eq!(
        c.resp(&[b"AUTH", b"nope"]),
        "-WRONGPASS invalid username-password pair or user is disabled."
    );
    assert_eq!(
        c.resp(&[b"AUTH", b"admin", b"s3cret"]),
        "-WRONGPASS invalid username-password pair or user is disabled."
    );
    assert!(
        c.resp(&[b"HELLO", b"3"])
            .starts_with("-NOAUTH HELLO must be called with the client already authenticated")
    );
    assert_eq!(c.resp(&[b"AUTH", b"default", b"s3cret"]), "+OK");
    assert_eq!(c.resp(&[b"SET", b"k", b"v"]), "+OK");
    let mut h = s.client();
    let hello = h.resp(&[
        b"HELLO", b"3", b"AUTH", b"default", b"s3cret", b"SETNAME", b"app",
    ]);
    assert!(hello.contains("proto, :3"), "{hello}");
    assert_eq!(h.resp(&[b"CLIENT", b"GETNAME"]), "app");
    assert_eq!(h.resp(&[b"GET", b"k"]), "v");
    let mut bad = s.client();
    assert!(
        bad.resp(&[b"HELLO", b"3", b"AUTH", b"default", b"x"])
            .starts_with("-WRONGPASS")
    );
    assert_eq!(
        bad.resp(&[b"GET", b"k"]),
        "-NOAUTH Authentication required."
    );
}

#[test]
fn unauthenticated_clients_get_tighter_limits() {
    let s = with_password("s3cret");
    let mut c = s.client();
    // Before AUTH a stranger may not make the server buffer a big request (as Redis: few
    // arguments, small bulks).
    c.send(b"*3\r\n$3\r\nSET\r\n$1\r\nk\r\n$100000\r\n");
    assert_eq!(c.line(), "-ERR Protocol error: invalid bulk length");
    assert!(c.closed_within(Duration::from_secs(3)));
    let mut d = s.client();
    d.send(b"*1000\r\n");
    assert_eq!(d.line(), "-ERR Protocol error: invalid multibulk length");
    // After AUTH the normal limits apply.
    let mut e = s.client();
    assert_eq!(e.resp(&[b"AUTH", b"s3cret"]), "+OK");
    assert_eq!(e.resp(&[b"SET", b"k", &[b'v'; 100_000]]), "+OK");
    let mut f = s.client();
    f.send(&resp_frame(&[b"AUTH", b"s3cret"]));
    assert_eq!(f.resp_value(), "+OK");
}

#[test]
fn no_password_means_no_auth() {
    let s = TestServer::default();
    let mut c = s.client();
    assert_eq!(c.cmd("GET k"), "ERROR key not found");
    let reply = c.cmd("AUTH x");
    assert!(
        reply.starts_with("ERROR AUTH <password> called without any password configured"),
        "{reply}"
    );
}

#[test]
fn password_from_file_and_environment() {
    let file = common::TempFile::new("auth", "pw", "from-file\n");
    let s = BinServer::start(&["--password-file", file.as_str()], &[]);
    let mut c = s.client();
    assert_eq!(c.cmd("AUTH from-file"), "OK authenticated");
    let s = BinServer::start(&[], &[("KV_CACHE_PASSWORD", "from-env")]);
    let mut c = s.client();
    assert_eq!(c.cmd("GET x"), "ERROR authentication required");
    assert_eq!(c.cmd("AUTH from-env"), "OK authenticated");
}

#[test]
fn warns_when_open_to_the_network_without_a_password() {
    let (code, _, err) = common::run_server_binary(&["--host", "0.0.0.0", "--port", "70000"], &[]);
    assert_eq!(code, Some(2), "{err}");
    // Started for real on all interfaces, it warns once at start-up.
    let child = std::process::Command::new(env!("CARGO_BIN_EXE_kvcache-server"))
        .args(["--host", "0.0.0.0", "--port", "0"])
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    std::thread::sleep(Duration::from_millis(500));
    unsafe {
        libc::kill(child.id() as i32, libc::SIGTERM);
    }
    let out = child.wait_with_output().unwrap();
    let log = String::from_utf8_lossy(&out.stderr);
    assert!(
        log.contains("no password set and listening beyond loopback"),
        "{log}"
    );
    let quiet = BinServer::start(&["--password", "x"], &[]);
    std::thread::sleep(Duration::from_millis(100));
    assert!(!quiet.stderr.lock().unwrap().contains("no password"));
}
